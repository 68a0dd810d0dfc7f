//! Statistics: what each connection and the whole server carried, for operators and for games.
//!
//! Per connection, [`ConnStats`]: bytes and messages each way, queued output, when it connected
//! and last received something, and its round-trip time measured by heartbeats
//! ([`Config::heartbeat`](crate::Config::heartbeat)). Read it from a handler with
//! [`ChannelCtx::stats`](crate::ChannelCtx::stats) or
//! [`ServerCtx::stats_of`](crate::ServerCtx::stats_of), and on a client with
//! [`Client::stats`](crate::Client::stats). The kernel's own smoothed RTT of the TCP connection
//! (`TCP_INFO`, Linux) needs no protocol support from the peer:
//! [`ChannelCtx::kernel_rtt`](crate::ChannelCtx::kernel_rtt) and
//! [`Client::kernel_rtt`](crate::Client::kernel_rtt).
//!
//! Per server, [`ServerStats`]: connections open, accepted, refused and closed by reason, frames
//! dropped by error kind, messages and bytes each way, ticks, their duration and overruns. The
//! reactor counts in plain integers on its own thread and publishes them in atomics at most
//! once a millisecond, and within 50 ms of any change, so
//! [`ServerHandle::stats`](crate::ServerHandle::stats) reads them from any thread without a
//! lock, and counting costs the reactor no atomic read-modify-write per message.
//!
//! What is counted:
//! - a *message* is a frame: the greeting, heartbeats and every message of a broadcast count
//!   once per connection they are queued for (out) or arrive from (in);
//! - *bytes* are wire bytes as the socket took them or gave them: length prefixes, WebSocket
//!   headers and the HTTP upgrade included;
//! - messages out are counted when queued, bytes out when written: after the output drains,
//!   both describe the same traffic.
//!
//! ```no_run
//! # use repod::{ChannelHandler, Routes, Server};
//! # #[derive(Default)] struct Player;
//! # impl ChannelHandler for Player { type Server = (); fn routes(_: &mut Routes<Self>) {} }
//! use std::time::Duration;
//!
//! let server = Server::<Player>::bind("0.0.0.0:5071", ())?.start_background()?;
//! let handle = server.handle();
//! std::thread::spawn(move || loop {
//!     let s = handle.stats();
//!     println!(
//!         "{} players, {} msgs in, {} msgs out, {} tick overruns",
//!         s.connections, s.msgs_in, s.msgs_out, s.tick_overruns
//!     );
//!     std::thread::sleep(Duration::from_secs(10));
//! });
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::{DisconnectReason, Error};

/// What one connection carried. A copy, taken when asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnStats {
    /// Wire bytes received.
    pub bytes_in: u64,
    /// Wire bytes written to the socket.
    pub bytes_out: u64,
    /// Frames received (heartbeats included).
    pub msgs_in: u64,
    /// Frames queued (the greeting and heartbeats included).
    pub msgs_out: u64,
    /// Bytes queued and not yet taken by the socket: messages in repod's queue (and, over TLS,
    /// records not yet written).
    pub queued: usize,
    /// Latest-wins messages ([`ChannelCtx::send_latest`](crate::ChannelCtx::send_latest))
    /// replaced by a newer one of the same action and key before they were written.
    pub replaced: u64,
    /// The socket did not take everything at the last write: the kernel's unsent queue is full
    /// (bounded by [`Config::notsent_lowat`](crate::Config::notsent_lowat)), so the player's
    /// link is slower than what the game sends it. The cue to send that player less (a lower
    /// update rate, less detail); latest-wins messages already keep only the newest.
    pub congested: bool,
    /// Bytes the kernel holds for this connection and has not sent yet (its part of the
    /// backlog, next to [`queued`](Self::queued), repod's part): from `TCP_INFO`, one netlink
    /// query, so only [`ServerCtx::stats_with_kernel_of`](crate::ServerCtx::stats_with_kernel_of)
    /// and [`ChannelCtx::stats_with_kernel`](crate::ChannelCtx::stats_with_kernel) fill it in
    /// (Linux); `None` otherwise.
    pub kernel_unsent: Option<u32>,
    /// When the connection was accepted (or, on a client, when the connect began).
    pub connected_since: Instant,
    /// When the last bytes arrived from the peer.
    pub last_received: Instant,
    /// The latest round-trip time measured by a heartbeat, if heartbeats are on and one came
    /// back. It includes the time the peer took to answer: a client that pumps once a frame
    /// answers up to a frame late, which is the latency the game really sees.
    pub rtt: Option<Duration>,
}

impl ConnStats {
    /// Nothing carried, as of `now`: a connection that is already gone.
    pub(crate) fn empty(now: Instant) -> Self {
        ConnStats {
            bytes_in: 0,
            bytes_out: 0,
            msgs_in: 0,
            msgs_out: 0,
            queued: 0,
            replaced: 0,
            congested: false,
            kernel_unsent: None,
            connected_since: now,
            last_received: now,
            rtt: None,
        }
    }
}

/// Connections closed, by reason. The sum is [`ServerStats::closed`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClosedCounts {
    /// The peer closed its side.
    pub peer_closed: u64,
    /// The application closed it (or a handle did).
    pub closed_locally: u64,
    /// The server stopped or finished draining.
    pub server_stopped: u64,
    /// Heartbeats went unanswered ([`DisconnectReason::HeartbeatTimeout`]).
    pub heartbeat_timeout: u64,
    /// Nothing arrived within [`Config::idle_timeout`](crate::Config::idle_timeout).
    pub idle_timeout: u64,
    /// The peer read too slowly ([`Error::OutputFull`] under the disconnect policy).
    pub slow_reader: u64,
    /// The socket failed: reset, timed out (keepalive, `TCP_USER_TIMEOUT`), broken pipe.
    pub io_error: u64,
    /// The peer broke the protocol: a frame over the limit, a WebSocket violation.
    pub protocol_error: u64,
    /// A handler panicked.
    pub handler_panic: u64,
    /// A session away past its window, or over its replay bound
    /// ([`DisconnectReason::SessionExpired`], [`DisconnectReason::ReplayOverflow`]).
    pub session_ended: u64,
}

/// Frames dropped (the connection stays) because they could not be read as a message, by
/// error kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DroppedCounts {
    /// [`Error::InvalidMsgpack`].
    pub invalid_msgpack: u64,
    /// [`Error::NotAMap`].
    pub not_a_map: u64,
    /// [`Error::InvalidUtf8`].
    pub invalid_utf8: u64,
    /// [`Error::ActionNotString`].
    pub action_not_string: u64,
    /// [`Error::TooDeep`].
    pub too_deep: u64,
}

impl DroppedCounts {
    /// Every dropped frame.
    pub fn total(&self) -> u64 {
        self.invalid_msgpack
            + self.not_a_map
            + self.invalid_utf8
            + self.action_not_string
            + self.too_deep
    }
}

/// What a server carried since it started. See the [module documentation](self).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Connections open now (channels; connections still in their PROXY header or WebSocket
    /// upgrade are not channels yet).
    pub connections: u64,
    /// Connections that became channels.
    pub accepted: u64,
    /// Connections refused before they became channels (a bad PROXY header, a failed
    /// WebSocket upgrade).
    pub refused: u64,
    /// Channels closed, for any reason.
    pub closed: u64,
    /// [`closed`](Self::closed) by reason.
    pub closed_by: ClosedCounts,
    /// Frames dropped, by error kind.
    pub dropped: DroppedCounts,
    /// Handlers that returned an error (a missing field, [`Error::handler`]...).
    pub handler_errors: u64,
    /// Frames received.
    pub msgs_in: u64,
    /// Frames queued.
    pub msgs_out: u64,
    /// Wire bytes received.
    pub bytes_in: u64,
    /// Wire bytes written.
    pub bytes_out: u64,
    /// Ticks run.
    pub ticks: u64,
    /// Ticks whose handler took longer than the tick period.
    pub tick_overruns: u64,
    /// How long the last tick's handler took.
    pub last_tick: Duration,
    /// The longest tick so far.
    pub max_tick: Duration,
    /// Time spent in tick handlers, in total.
    pub tick_time: Duration,
    /// Times a channel's link dropped and its session went away
    /// ([`Config::resume_window`](crate::Config::resume_window)).
    pub went_away: u64,
    /// Times a session was resumed on a new link.
    pub resumed: u64,
}

impl fmt::Display for ServerStats {
    /// The line `echo_server --stats-secs` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "conns={} accepted={} closed={} msgs_in={} msgs_out={} bytes_in={} bytes_out={}",
            self.connections,
            self.accepted,
            self.closed,
            self.msgs_in,
            self.msgs_out,
            self.bytes_in,
            self.bytes_out
        )
    }
}

/// The reactor's counters, on its own thread.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counters {
    pub(crate) accepted: u64,
    pub(crate) refused: u64,
    pub(crate) closed: ClosedCounts,
    pub(crate) msgs_in: u64,
    pub(crate) msgs_out: u64,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) went_away: u64,
    pub(crate) resumed: u64,
}

impl Counters {
    /// Counts one channel closed for `reason`.
    pub(crate) fn count_close(&mut self, reason: &DisconnectReason) {
        let c = &mut self.closed;
        let slot = match reason {
            DisconnectReason::PeerClosed => &mut c.peer_closed,
            DisconnectReason::Closed => &mut c.closed_locally,
            DisconnectReason::ServerStopped => &mut c.server_stopped,
            DisconnectReason::HeartbeatTimeout(_) => &mut c.heartbeat_timeout,
            DisconnectReason::SessionExpired(_) | DisconnectReason::ReplayOverflow { .. } => {
                &mut c.session_ended
            }
            DisconnectReason::Error(e) => match e {
                Error::IdleTimeout(_) => &mut c.idle_timeout,
                Error::OutputFull { .. } => &mut c.slow_reader,
                Error::Io(_) | Error::Closed => &mut c.io_error,
                Error::HandlerPanic(_) => &mut c.handler_panic,
                _ => &mut c.protocol_error,
            },
        };
        *slot += 1;
    }
}

impl ServerStats {
    /// The figures of a server whose reactor counted `r`, whose server layer counted `c`, with
    /// `connections` channels open.
    pub(crate) fn compose(connections: usize, r: &Counters, c: &CoreCounters) -> ServerStats {
        ServerStats {
            connections: connections as u64,
            accepted: r.accepted,
            refused: r.refused,
            closed: {
                let k = &r.closed;
                k.peer_closed
                    + k.closed_locally
                    + k.server_stopped
                    + k.heartbeat_timeout
                    + k.idle_timeout
                    + k.slow_reader
                    + k.io_error
                    + k.protocol_error
                    + k.handler_panic
                    + k.session_ended
            },
            closed_by: r.closed,
            dropped: c.dropped,
            handler_errors: c.handler_errors,
            msgs_in: r.msgs_in,
            msgs_out: r.msgs_out,
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
            ticks: c.ticks,
            tick_overruns: c.tick_overruns,
            last_tick: c.last_tick,
            max_tick: c.max_tick,
            tick_time: c.tick_time,
            went_away: r.went_away,
            resumed: r.resumed,
        }
    }
}

/// The server layer's counters: what only it sees (frames it could not parse, ticks).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CoreCounters {
    pub(crate) dropped: DroppedCounts,
    pub(crate) handler_errors: u64,
    pub(crate) ticks: u64,
    pub(crate) tick_overruns: u64,
    pub(crate) last_tick: Duration,
    pub(crate) max_tick: Duration,
    pub(crate) tick_time: Duration,
}

impl CoreCounters {
    /// Counts a frame dropped for `e`.
    pub(crate) fn count_drop(&mut self, e: &Error) {
        let d = &mut self.dropped;
        match e {
            Error::InvalidMsgpack { .. } => d.invalid_msgpack += 1,
            Error::NotAMap => d.not_a_map += 1,
            Error::InvalidUtf8 { .. } => d.invalid_utf8 += 1,
            Error::ActionNotString => d.action_not_string += 1,
            Error::TooDeep { .. } => d.too_deep += 1,
            _ => d.invalid_msgpack += 1,
        }
    }

    /// Counts one tick whose handler took `took`, against its `period`.
    pub(crate) fn count_tick(&mut self, took: Duration, period: Duration) {
        self.ticks += 1;
        self.last_tick = took;
        self.max_tick = self.max_tick.max(took);
        self.tick_time += took;
        if took > period {
            self.tick_overruns += 1;
        }
    }
}

/// Number of published values: keep in step with `publish` and `snapshot`.
const SLOTS: usize = 30;

/// The published copy, read by handles on other threads.
#[derive(Debug)]
pub(crate) struct Published {
    slots: [AtomicU64; SLOTS],
}

impl Published {
    pub(crate) fn new() -> Self {
        Published {
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Stores the current figures: plain stores, no read-modify-write.
    pub(crate) fn publish(&self, s: &ServerStats) {
        let cl = &s.closed_by;
        let d = &s.dropped;
        let values: [u64; SLOTS] = [
            s.connections,
            s.accepted,
            s.refused,
            cl.peer_closed,
            cl.closed_locally,
            cl.server_stopped,
            cl.heartbeat_timeout,
            cl.idle_timeout,
            cl.slow_reader,
            cl.io_error,
            cl.protocol_error,
            cl.handler_panic,
            d.invalid_msgpack,
            d.not_a_map,
            d.invalid_utf8,
            d.action_not_string,
            d.too_deep,
            s.handler_errors,
            s.msgs_in,
            s.msgs_out,
            s.bytes_in,
            s.bytes_out,
            s.ticks,
            s.tick_overruns,
            nanos(s.last_tick),
            nanos(s.max_tick),
            nanos(s.tick_time),
            cl.session_ended,
            s.went_away,
            s.resumed,
        ];
        for (slot, v) in self.slots.iter().zip(values) {
            slot.store(v, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> ServerStats {
        let v: [u64; SLOTS] = std::array::from_fn(|i| self.slots[i].load(Ordering::Relaxed));
        let closed_by = ClosedCounts {
            peer_closed: v[3],
            closed_locally: v[4],
            server_stopped: v[5],
            heartbeat_timeout: v[6],
            idle_timeout: v[7],
            slow_reader: v[8],
            io_error: v[9],
            protocol_error: v[10],
            handler_panic: v[11],
            session_ended: v[27],
        };
        ServerStats {
            connections: v[0],
            accepted: v[1],
            refused: v[2],
            closed: v[3..12].iter().sum::<u64>() + v[27],
            went_away: v[28],
            resumed: v[29],
            closed_by,
            dropped: DroppedCounts {
                invalid_msgpack: v[12],
                not_a_map: v[13],
                invalid_utf8: v[14],
                action_not_string: v[15],
                too_deep: v[16],
            },
            handler_errors: v[17],
            msgs_in: v[18],
            msgs_out: v[19],
            bytes_in: v[20],
            bytes_out: v[21],
            ticks: v[22],
            tick_overruns: v[23],
            last_tick: Duration::from_nanos(v[24]),
            max_tick: Duration::from_nanos(v[25]),
            tick_time: Duration::from_nanos(v[26]),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

/// Exports [`ServerStats`] through the [`metrics`] facade (feature `metrics`).
#[cfg(feature = "metrics")]
pub(crate) mod export {
    use super::ServerStats;
    use metrics::{counter, gauge};

    /// Sets every repod metric to `s` (counters as absolute values, so nothing is counted
    /// twice however often this runs). Runs on the reactor thread, once a second.
    pub(crate) fn record(s: &ServerStats) {
        gauge!("repod_connections").set(s.connections as f64);
        counter!("repod_accepted_total").absolute(s.accepted);
        counter!("repod_refused_total").absolute(s.refused);
        let c = &s.closed_by;
        for (reason, v) in [
            ("peer_closed", c.peer_closed),
            ("closed_locally", c.closed_locally),
            ("server_stopped", c.server_stopped),
            ("heartbeat_timeout", c.heartbeat_timeout),
            ("idle_timeout", c.idle_timeout),
            ("slow_reader", c.slow_reader),
            ("io_error", c.io_error),
            ("protocol_error", c.protocol_error),
            ("handler_panic", c.handler_panic),
            ("session_ended", c.session_ended),
        ] {
            counter!("repod_closed_total", "reason" => reason).absolute(v);
        }
        let d = &s.dropped;
        for (kind, v) in [
            ("invalid_msgpack", d.invalid_msgpack),
            ("not_a_map", d.not_a_map),
            ("invalid_utf8", d.invalid_utf8),
            ("action_not_string", d.action_not_string),
            ("too_deep", d.too_deep),
        ] {
            counter!("repod_frames_dropped_total", "kind" => kind).absolute(v);
        }
        counter!("repod_handler_errors_total").absolute(s.handler_errors);
        counter!("repod_messages_in_total").absolute(s.msgs_in);
        counter!("repod_messages_out_total").absolute(s.msgs_out);
        counter!("repod_bytes_in_total").absolute(s.bytes_in);
        counter!("repod_bytes_out_total").absolute(s.bytes_out);
        counter!("repod_ticks_total").absolute(s.ticks);
        counter!("repod_tick_overruns_total").absolute(s.tick_overruns);
        gauge!("repod_last_tick_seconds").set(s.last_tick.as_secs_f64());
        gauge!("repod_max_tick_seconds").set(s.max_tick.as_secs_f64());
    }
}
