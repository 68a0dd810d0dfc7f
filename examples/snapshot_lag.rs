//! A spectator that timestamps every arena snapshot, to measure how far behind the present a
//! client is (the harness of `tests/shaped_link.rs` and `benches/shaped_link.sh`).
//!
//! ```text
//! cargo run --example arena_server -- --bots 64            # in one terminal
//! cargo run --example snapshot_lag -- 127.0.0.1:5080 [--seconds S] [--ws]
//! cargo run --example snapshot_lag -- ws://127.0.0.1:5081/  # over WebSocket
//! ```
//!
//! It connects with a [`Connection`] and never sends `join`, so the arena treats it as a
//! spectator and sends it every snapshot. For each `snap` message it prints one line
//!
//! ```text
//! snap T MICROS
//! ```
//!
//! where `T` is the snapshot's tick (its `t` field) and `MICROS` the wall-clock time it arrived
//! (`SystemTime`, microseconds since the Unix epoch). The wall clock is the same in every
//! network namespace of a machine, so two spectators on the two sides of a shaped link can be
//! compared tick by tick: the lag of tick `T` is the slow one's arrival minus the fast one's.
//!
//! After `--seconds S` (default 30) it prints `done snaps=N bytes_in=B` (`B` from
//! [`ConnStats`](repod::ConnStats)) and exits 0. If the connection fails or ends before that,
//! it prints `closed REASON` and exits 1.
//!
//! - `ADDR`: `HOST:PORT` (the arena's TCP port), or a `ws://HOST:PORT/` URL (its WebSocket port).
//! - `--ws`: `HOST:PORT` is the WebSocket port: the same as `ws://HOST:PORT/`.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use repod::Connection;

fn usage(why: &str) -> ! {
    eprintln!("{why}\nusage: snapshot_lag ADDR [--seconds S] [--ws]");
    std::process::exit(2);
}

fn main() -> std::io::Result<()> {
    let (mut addr, mut seconds, mut ws) = (None, 30.0f64, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                let v = args
                    .next()
                    .unwrap_or_else(|| usage("--seconds needs a value"));
                seconds = v
                    .parse()
                    .unwrap_or_else(|e| usage(&format!("--seconds {v}: {e}")));
            }
            "--ws" => ws = true,
            other if addr.is_none() && !other.starts_with("--") => addr = Some(other.to_owned()),
            other => usage(&format!("unexpected argument {other}")),
        }
    }
    let mut addr = addr.unwrap_or_else(|| usage("ADDR is missing"));
    if ws && !addr.contains("://") {
        addr = format!("ws://{addr}/");
    }

    let mut conn = Connection::connect(addr.as_str())?;
    let end = Instant::now() + Duration::from_secs_f64(seconds.max(0.0));
    let mut out = std::io::stdout().lock();
    let (mut snaps, mut stats, mut closed) = (0u64, None, None);
    while closed.is_none() {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        conn.poll(left.min(Duration::from_millis(100)), |_, m| {
            match m.action() {
                "snap" => {
                    let micros = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_micros());
                    let tick = m.u32("t").unwrap_or(u32::MAX);
                    let _ = writeln!(out, "snap {tick} {micros}");
                    snaps += 1;
                }
                "error" => closed = Some(m.str("error").unwrap_or("?").to_owned()),
                "disconnected" => closed = Some(m.str("reason").unwrap_or("?").to_owned()),
                _ => {}
            }
        });
        out.flush()?;
        // Kept from the last turn the connection was open: a closed one has no statistics.
        stats = conn.stats().or(stats);
    }
    if let Some(reason) = closed {
        writeln!(out, "closed {reason}")?;
        out.flush()?;
        std::process::exit(1);
    }
    let bytes_in = stats.map_or(0, |s| s.bytes_in);
    writeln!(out, "done snaps={snaps} bytes_in={bytes_in}")?;
    out.flush()?;
    conn.close();
    Ok(())
}
