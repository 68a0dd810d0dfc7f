//! A player that never stops talking: sends a numbered `echo` at a fixed rate to an
//! `echo_server`, checks that every `echo_reply` comes back exactly once and in order, and says
//! when its link drops and when its session is back. Pull the cable (or `ip link set down`)
//! while it runs against `echo_server --resume-secs 30`: it carries on where it was.
//!
//! ```text
//! cargo run --example echo_server -- 127.0.0.1 5071 --resume-secs 30 --heartbeat-ms 300
//! cargo run --example steady_echo -- 127.0.0.1:5071 [--rate 100] [--secs 10] [--heartbeat-ms 300]
//! ```
//!
//! Prints one line per event (`reconnecting N: WHY`, `resumed`, `resume_failed: WHY`), one
//! `progress sent=S received=R` line a second, and at the end `done sent=S received=R
//! resumed=K in_order=true`; exits 0 when every reply arrived once and in order, 1 otherwise.

use std::time::{Duration, Instant};

use repod::{msg, Client, ClientRoutes, Config, Listener};

#[derive(Default)]
struct Steady {
    received: u64,
    in_order: bool,
    resumed: u64,
    ended: Option<String>,
}

impl Listener for Steady {
    fn routes(r: &mut ClientRoutes<Self>) {
        r.on("echo_reply", |me, _, m| {
            let n = m.u64("n")?;
            if n != me.received {
                println!("out of order: reply {n} where {} was due", me.received);
                me.in_order = false;
            }
            me.received = n + 1;
            Ok(())
        });
        r.on("reconnecting", |_, _, m| {
            println!("reconnecting {}: {}", m.u64("attempt")?, m.str("reason")?);
            Ok(())
        });
        r.on("resumed", |me, _, _| {
            me.resumed += 1;
            println!("resumed");
            Ok(())
        });
        r.on("resume_failed", |me, _, m| {
            println!("resume_failed: {}", m.str("reason")?);
            me.in_order = false;
            Ok(())
        });
        r.on("disconnected", |me, _, m| {
            me.ended = Some(m.str("reason")?.to_owned());
            Ok(())
        });
        r.on("error", |me, _, m| {
            me.ended = Some(m.str("error")?.to_owned());
            Ok(())
        });
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:5071".into());
    let (mut rate, mut secs, mut heartbeat_ms) = (100.0f64, 10.0f64, 300u64);
    while let Some(flag) = args.next() {
        let value: f64 = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            eprintln!("{flag} needs a number");
            std::process::exit(2)
        });
        match flag.as_str() {
            "--rate" => rate = value,
            "--secs" => secs = value,
            "--heartbeat-ms" => heartbeat_ms = value as u64,
            _ => {
                eprintln!("unknown flag {flag}");
                std::process::exit(2)
            }
        }
    }
    let beat = Duration::from_millis(heartbeat_ms);
    let cfg = Config::default()
        .heartbeat(Some(beat))
        .connect_timeout(Some(Duration::from_secs(1)));
    let steady = Steady {
        in_order: true,
        ..Steady::default()
    };
    let mut client =
        Client::connect_with(addr.as_str(), steady, repod::Mode::Stepped, cfg).expect("a poller");
    let start = Instant::now();
    let every = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let (mut sent, mut next_send, mut next_report) = (0u64, start, start);
    let stop_sending = start + Duration::from_secs_f64(secs);
    // After the last send, up to 30 s for the replies (a link may be down at that moment).
    let give_up = stop_sending + Duration::from_secs(30);
    loop {
        let now = Instant::now();
        let l = client.listener();
        if l.ended.is_some() || now > give_up || (now >= stop_sending && l.received == sent) {
            break;
        }
        if now >= next_send && now < stop_sending {
            client.send(&msg! { "action": "echo", "n": sent });
            sent += 1;
            next_send += every;
        }
        if now >= next_report {
            println!(
                "progress sent={sent} received={}",
                client.listener().received
            );
            next_report += Duration::from_secs(1);
        }
        client.pump_timeout(every.min(Duration::from_millis(5)));
    }
    let l = client.listener();
    if let Some(why) = &l.ended {
        println!("ended: {why}");
    }
    let ok = l.in_order && l.received == sent && l.ended.is_none();
    println!(
        "done sent={sent} received={} resumed={} in_order={}",
        l.received, l.resumed, l.in_order
    );
    std::process::exit(if ok { 0 } else { 1 });
}
