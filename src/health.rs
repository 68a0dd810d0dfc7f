//! Health and capacity of a running server, readable from any thread without locking it.
//!
//! A fleet's orchestrator or load balancer asks two questions of a game server process: is it
//! alive (not merely: does the thread exist, but: is its reactor turning and its tick firing),
//! and how full is it. The reactor publishes the answers in atomics at most once a millisecond,
//! and wakes at least once a second to do so, so
//! [`ServerHandle::health`](crate::ServerHandle::health) reads
//! them from an HTTP health endpoint, an Agones SDK loop or a watchdog thread at no cost to the
//! game.
//!
//! ```no_run
//! # use repod::{ChannelHandler, Routes, Server};
//! # #[derive(Default)] struct Player;
//! # impl ChannelHandler for Player { type Server = (); fn routes(_: &mut Routes<Self>) {} }
//! use std::time::Duration;
//!
//! let server = Server::<Player>::bind("0.0.0.0:5071", ())?.tick_rate(30.0).start_background()?;
//! let handle = server.handle();
//! std::thread::spawn(move || loop {
//!     let health = handle.health();
//!     if !health.is_alive(Duration::from_secs(2)) {
//!         eprintln!("reactor stalled: last turn {:?} ago", health.since_last_turn);
//!     }
//!     println!("{} players, {} bytes queued", health.connections, health.queued_output);
//!     std::thread::sleep(Duration::from_secs(5));
//! });
//! # Ok::<(), std::io::Error>(())
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The longest the reactor sleeps while anyone may read its health.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);

const NEVER: u64 = u64::MAX;

/// What the reactor publishes; shared with every handle.
#[derive(Debug)]
pub(crate) struct Vitals {
    base: Instant,
    last_turn: AtomicU64,
    last_tick: AtomicU64,
    connections: AtomicUsize,
    max_connections: AtomicUsize,
    queued_output: AtomicUsize,
    listening: AtomicBool,
    draining: AtomicBool,
    stopped: AtomicBool,
}

impl Vitals {
    pub(crate) fn new() -> Self {
        Vitals {
            base: Instant::now(),
            last_turn: AtomicU64::new(0),
            last_tick: AtomicU64::new(NEVER),
            connections: AtomicUsize::new(0),
            max_connections: AtomicUsize::new(usize::MAX),
            queued_output: AtomicUsize::new(0),
            listening: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_nanos() as u64
    }

    pub(crate) fn turned(&self, now: Instant, connections: usize) {
        self.last_turn.store(self.nanos(now), Ordering::Relaxed);
        self.connections.store(connections, Ordering::Relaxed);
    }

    pub(crate) fn ticked(&self, now: Instant) {
        self.last_tick.store(self.nanos(now), Ordering::Relaxed);
    }

    pub(crate) fn set_queued_output(&self, bytes: usize) {
        self.queued_output.store(bytes, Ordering::Relaxed);
    }

    pub(crate) fn set_max_connections(&self, max: Option<usize>) {
        self.max_connections
            .store(max.unwrap_or(usize::MAX), Ordering::Relaxed);
    }

    pub(crate) fn set_listening(&self, on: bool) {
        self.listening.store(on, Ordering::Relaxed);
    }

    pub(crate) fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub(crate) fn set_stopped(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.listening.store(false, Ordering::Relaxed);
    }

    pub(crate) fn read(&self) -> Health {
        let now = self.nanos(Instant::now());
        let ago = |t: u64| Duration::from_nanos(now.saturating_sub(t));
        let tick = self.last_tick.load(Ordering::Relaxed);
        let max = self.max_connections.load(Ordering::Relaxed);
        Health {
            since_last_turn: ago(self.last_turn.load(Ordering::Relaxed)),
            since_last_tick: (tick != NEVER).then(|| ago(tick)),
            connections: self.connections.load(Ordering::Relaxed),
            max_connections: (max != usize::MAX).then_some(max),
            queued_output: self.queued_output.load(Ordering::Relaxed),
            listening: self.listening.load(Ordering::Relaxed),
            draining: self.draining.load(Ordering::Relaxed),
            stopped: self.stopped.load(Ordering::Relaxed),
        }
    }
}

/// A server's health and capacity at one moment. See the [module documentation](self).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// Time since the reactor last finished a turn. A running reactor turns at least once a
    /// second, so more than that means it is stuck (a handler that blocks, a busy loop).
    pub since_last_turn: Duration,
    /// Time since the last tick ran, if the server has a tick and it has run.
    pub since_last_tick: Option<Duration>,
    /// Players connected (channels open).
    pub connections: usize,
    /// [`Config::max_connections`](crate::Config::max_connections), if set.
    pub max_connections: Option<usize>,
    /// Output queued for all players and not yet taken by their sockets, in bytes (refreshed
    /// every 100 ms while any is queued, at least every second otherwise).
    pub queued_output: usize,
    /// The server accepts new players (false once a drain or a stop began).
    pub listening: bool,
    /// A drain began: no new players; the server stops when the last one leaves.
    pub draining: bool,
    /// The server has stopped.
    pub stopped: bool,
}

impl Health {
    /// Whether the reactor is running and turned within `within` (2 s is a good bound: it
    /// turns at least once a second when healthy).
    pub fn is_alive(&self, within: Duration) -> bool {
        !self.stopped && self.since_last_turn <= within
    }

    /// Whether a load balancer should send new players here: alive, listening, and below
    /// the connection cap.
    pub fn is_ready(&self, within: Duration) -> bool {
        self.is_alive(within)
            && self.listening
            && self
                .max_connections
                .is_none_or(|max| self.connections < max)
    }
}
