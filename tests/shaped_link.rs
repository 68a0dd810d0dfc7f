//! Fresh state on slow links: an arena spectator behind a link slower than the game's updates
//! must stay near the present instead of falling further and further behind.
//!
//! Each test builds a shaped link (`support/shaped.rs`): the server's side of a veth pair
//! limited to 32 kbit/s (4 KB/s) behind a 2,000-byte bfifo, well under the ~7.5 KB/s of
//! snapshots that `arena_server --bots 64` sends every spectator. In the server's namespace run
//! the arena and a FAST spectator (`snapshot_lag`, over loopback: not shaped); in the far
//! namespace a SLOW spectator, through the shaped link. Both print every snapshot's tick with
//! its arrival time on the machine's wall clock (the same in every namespace), for 30 s.
//!
//! The lag of tick T is the slow arrival of T minus its fast arrival (ticks the fast spectator
//! did not get are skipped). Over the last half of the run, the targets:
//!
//! - the slow spectator's p99 lag is at most 500 ms, and so is the lag of its last snapshot;
//! - its connection stayed open to the end (no slow-reader disconnect);
//! - the fast spectator still gets at least 27 snapshots a second (of 30).
//!
//! Every figure is printed (`cargo test --test shaped_link -- --nocapture` shows them on
//! success too). One test over TCP, one over WebSocket; they take one at a time (the figures
//! are timings), about 35 s each.
//!
//! Needs root (`ip netns`, `tc`); skips loudly without, fails when `CI` is set.

#[path = "support/examples.rs"]
mod examples;
#[path = "support/proc.rs"]
mod proc;
#[path = "support/shaped.rs"]
mod shaped;

use std::fmt;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use proc::Proc;
use shaped::ShapedLink;

/// The shaped rate of the server-to-far direction, and the bfifo's limit in bytes.
const RATE: &str = "32kbit";
const QUEUE_BYTES: u32 = 2000;
/// Computer players: 64 make ~7.5 KB/s of snapshots, about twice what the link carries.
const BOTS: &str = "64";
/// How long both spectators watch.
const SECONDS: u64 = 30;
/// The targets.
const MAX_P99_LAG_MS: f64 = 500.0;
const MAX_END_LAG_MS: f64 = 500.0;
const MIN_FAST_SNAPS_PER_S: f64 = 27.0;

/// The tests measure time: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// What one run measured.
#[derive(Debug)]
struct Figures {
    transport: &'static str,
    /// p99 and maximum of the slow spectator's lag over the last half, in ms.
    p99_lag_ms: f64,
    max_lag_ms: f64,
    /// The lag of the slow spectator's last snapshot, in ms.
    end_lag_ms: f64,
    /// Slow snapshots whose lag was measured in the last half.
    lag_samples: usize,
    /// Whether the slow spectator printed `done` (its connection stayed open to the end).
    slow_open: bool,
    /// Its `closed REASON` line, if any.
    slow_closed: Option<String>,
    /// Snapshots per second in the last half.
    fast_snaps_per_s: f64,
    slow_snaps_per_s: f64,
    /// Totals over the whole run.
    fast_snaps: usize,
    slow_snaps: usize,
    fast_done: String,
    slow_done: String,
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: slow p99 lag {:.0} ms (max {:.0} ms, {} samples) over the last half, lag at end \
             {:.0} ms, slow connection {}, fast {:.1} snaps/s, slow {:.1} snaps/s (last half); \
             fast {} snaps [{}], slow {} snaps [{}]",
            self.transport,
            self.p99_lag_ms,
            self.max_lag_ms,
            self.lag_samples,
            self.end_lag_ms,
            match &self.slow_closed {
                None if self.slow_open => "open".to_owned(),
                None => "ended without `done`".to_owned(),
                Some(reason) => format!("closed ({reason})"),
            },
            self.fast_snaps_per_s,
            self.slow_snaps_per_s,
            self.fast_snaps,
            self.fast_done,
            self.slow_snaps,
            self.slow_done,
        )
    }
}

/// `snap T MICROS` lines of a spectator, as (tick, arrival in µs since the epoch).
fn snaps(p: &Proc) -> Vec<(u32, i64)> {
    p.reports("snap")
        .iter()
        .map(|l| {
            let (t, us) = l
                .split_once(' ')
                .unwrap_or_else(|| panic!("{}: bad line {l:?}", p.name));
            (t.parse().expect("tick"), us.trim().parse().expect("micros"))
        })
        .collect()
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_micros() as i64
}

/// The p-th percentile (nearest rank) of sorted `v`.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs the arena, a fast and a slow spectator, and computes the figures. `None` when the
/// shaped link cannot be made here (and `CI` is unset).
fn measure(ws: bool) -> Option<Figures> {
    let transport = if ws { "WebSocket" } else { "TCP" };
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let arena = examples::path("arena_server");
    let spectator = examples::path("snapshot_lag");
    // Declared first, dropped last: the processes in the namespaces are killed before the
    // namespaces go, on success and while a failure unwinds alike.
    let link = ShapedLink::create_or_skip(
        &format!("the shaped-link test over {transport}"),
        RATE,
        QUEUE_BYTES,
    )?;
    eprintln!(
        "{transport}: server {} in {}, far {} in {}, {} {RATE} behind a {QUEUE_BYTES}-byte bfifo",
        link.server_ip, link.server_ns, link.far_ip, link.far_ns, link.server_link
    );

    let bind = format!("{}:0", link.server_ip);
    let mut server =
        link.spawn_server_side("arena_server", &arena, &["--bind", &bind, "--bots", BOTS]);
    // "terminal: cargo run --example arena_client -- 10.214.N.1:PORT"
    let terminal = server.expect_word("terminal:");
    let tcp = terminal
        .split_whitespace()
        .last()
        .expect("an address")
        .to_owned();
    // "browser:  http://10.214.N.1:PORT/arena.html?ws=ws://10.214.N.1:PORT/"
    let browser = server.expect_word("browser:");
    let ws_url = browser
        .split_once("?ws=")
        .map(|(_, url)| url.trim().to_owned())
        .unwrap_or_else(|| panic!("no ws= in {browser:?}"));
    let addr = if ws { ws_url } else { tcp };
    eprintln!("{transport}: spectators connect to {addr}");

    let secs = SECONDS.to_string();
    let args = [addr.as_str(), "--seconds", &secs];
    let start = now_us();
    let mut fast = link.spawn_server_side("fast snapshot_lag", &spectator, &args);
    let mut slow = link.spawn_far_side("slow snapshot_lag", &spectator, &args);
    // Each exits by itself after SECONDS (`finish` waits up to a minute more).
    let fast_status = fast.finish();
    let slow_status = slow.finish();
    assert!(
        server.is_running(),
        "the arena stopped during the run\n{}",
        server.context()
    );
    assert!(
        fast_status.success(),
        "the fast spectator failed ({fast_status})\n{}",
        fast.context()
    );
    eprintln!(
        "{transport}: shaped qdisc after the run:\n{}",
        link.qdisc_stats()
    );

    let (fast_snaps, slow_snaps) = (snaps(&fast), snaps(&slow));
    let fast_at: std::collections::HashMap<u32, i64> = fast_snaps.iter().copied().collect();
    let half_us = (SECONDS * 1_000_000 / 2) as i64;
    let mid = start + half_us;
    let lag_ms = |&(t, at): &(u32, i64)| fast_at.get(&t).map(|f| (at - f) as f64 / 1e3);
    let mut lags: Vec<f64> = slow_snaps
        .iter()
        .filter(|s| s.1 >= mid)
        .filter_map(lag_ms)
        .collect();
    lags.sort_by(f64::total_cmp);
    // The last snapshot the slow spectator got (whose tick the fast one also got).
    let end_lag_ms = slow_snaps
        .iter()
        .rev()
        .find_map(lag_ms)
        .unwrap_or(f64::INFINITY);
    let per_s =
        |v: &[(u32, i64)]| v.iter().filter(|s| s.1 >= mid).count() as f64 / (SECONDS as f64 / 2.0);
    let done = |p: &Proc| p.reports("done").pop().unwrap_or_default();
    let figures = Figures {
        transport,
        p99_lag_ms: if lags.is_empty() {
            f64::INFINITY
        } else {
            percentile(&lags, 99.0)
        },
        max_lag_ms: lags.last().copied().unwrap_or(f64::INFINITY),
        end_lag_ms,
        lag_samples: lags.len(),
        slow_open: slow_status.success() && !slow.reports("done").is_empty(),
        slow_closed: slow.reports("closed").pop(),
        fast_snaps_per_s: per_s(&fast_snaps),
        slow_snaps_per_s: per_s(&slow_snaps),
        fast_snaps: fast_snaps.len(),
        slow_snaps: slow_snaps.len(),
        fast_done: done(&fast),
        slow_done: done(&slow),
    };
    eprintln!("{figures}");
    // The lag's course, for the record: its median in each 5 s of the run.
    let mut course = Vec::new();
    for k in 0..(SECONDS / 5) as i64 {
        let (from, to) = (start + k * 5_000_000, start + (k + 1) * 5_000_000);
        let mut v: Vec<f64> = slow_snaps
            .iter()
            .filter(|s| (from..to).contains(&s.1))
            .filter_map(lag_ms)
            .collect();
        v.sort_by(f64::total_cmp);
        course.push(if v.is_empty() {
            "-".to_owned()
        } else {
            format!("{:.0}", percentile(&v, 50.0))
        });
    }
    eprintln!(
        "{transport}: slow lag median per 5 s (ms): {}",
        course.join(" ")
    );
    Some(figures)
}

fn check(f: &Figures) {
    assert!(
        f.slow_open,
        "{}: the slow spectator's connection did not stay open: {f}",
        f.transport
    );
    assert!(
        f.fast_snaps_per_s >= MIN_FAST_SNAPS_PER_S,
        "{}: the fast spectator got {:.1} snapshots/s, under {MIN_FAST_SNAPS_PER_S}: {f}",
        f.transport,
        f.fast_snaps_per_s
    );
    assert!(
        f.p99_lag_ms <= MAX_P99_LAG_MS,
        "{}: the slow spectator's p99 lag over the last half is {:.0} ms, over \
         {MAX_P99_LAG_MS} ms: {f}",
        f.transport,
        f.p99_lag_ms
    );
    assert!(
        f.end_lag_ms <= MAX_END_LAG_MS,
        "{}: the slow spectator's lag at the end is {:.0} ms, over {MAX_END_LAG_MS} ms: {f}",
        f.transport,
        f.end_lag_ms
    );
}

#[test]
fn a_tcp_spectator_on_a_slow_link_stays_near_the_present() {
    if let Some(f) = measure(false) {
        check(&f);
    }
}

#[test]
fn a_websocket_spectator_on_a_slow_link_stays_near_the_present() {
    if let Some(f) = measure(true) {
        check(&f);
    }
}

/// The lag statistics themselves, on made-up arrivals.
#[test]
fn percentiles_are_nearest_rank() {
    let v: Vec<f64> = (1..=200).map(f64::from).collect();
    assert_eq!(percentile(&v, 99.0), 198.0);
    assert_eq!(percentile(&v, 50.0), 100.0);
    assert_eq!(percentile(&[7.0], 99.0), 7.0);
}
