//! Limits and tuning shared by servers and clients.
//!
//! Every limit has a default that is safe on the open internet; see each method. A server takes
//! its [`Config`] through [`Server::config`](crate::Server::config), a client through
//! [`Connection::connect_with`](crate::Connection::connect_with).
//!
//! ```
//! use std::time::Duration;
//! let cfg = repod::Config::default()
//!     .max_frame_len(1 << 20)
//!     .idle_timeout(Some(Duration::from_secs(30)))
//!     .max_connections(Some(64));
//! assert_eq!(cfg.get_max_frame_len(), 1 << 20);
//! ```

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// What happens when a peer does not read fast enough and its queued output would pass
/// [`Config::max_queued_output`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SlowReaderPolicy {
    /// Close the connection with [`Error::OutputFull`](crate::Error::OutputFull) (the default):
    /// a player who cannot keep up would see a stale game anyway, and every other player keeps
    /// the server's full attention.
    #[default]
    Disconnect,
    /// Refuse the message: `send` returns 0 and the connection stays open. For streams where a
    /// newer message replaces an older one (state snapshots), a dropped message costs nothing.
    DropMessage,
}

/// The default [`Config::notsent_lowat`]: 1 byte.
pub const DEFAULT_NOTSENT_LOWAT: u32 = 1;

/// Limits and tuning for connections. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) max_frame_len: usize,
    pub(crate) max_depth: usize,
    pub(crate) max_queued_output: usize,
    pub(crate) slow_reader: SlowReaderPolicy,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) linger: Duration,
    pub(crate) read_budget: usize,
    pub(crate) nodelay: bool,
    pub(crate) keepalive: Option<Keepalive>,
    pub(crate) user_timeout: Option<Duration>,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) notsent_lowat: Option<u32>,
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) heartbeat_timeout: Option<Duration>,
    pub(crate) busy_poll: Option<Duration>,
    pub(crate) resume_window: Option<Duration>,
    pub(crate) resume_buffer: usize,
    pub(crate) reconnect: Option<Reconnect>,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::TlsConnector>,
}

/// TCP keepalive: after `idle` without traffic, the kernel probes the peer every `interval`, and
/// declares the connection dead after `count` unanswered probes. A dead connection then fails
/// with [`Error::Io`](crate::Error::Io) (`TimedOut`), at most `idle + interval * count` after
/// the peer vanished. It needs nothing from the peer, so it works with every client, Python's
/// included; but a frozen process whose kernel still answers (`SIGSTOP`, a hung game) passes
/// it: heartbeats ([`Config::heartbeat`]) find that one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe.
    pub idle: Duration,
    /// Time between probes.
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped.
    pub count: u32,
}

impl Keepalive {
    /// Probes after `idle`, then every `idle / 3` (at least a second), three times: a vanished
    /// peer is found within about twice `idle`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let k = repod::Keepalive::after(Duration::from_secs(30));
    /// assert_eq!((k.interval, k.count), (Duration::from_secs(10), 3));
    /// ```
    pub fn after(idle: Duration) -> Self {
        Keepalive {
            idle,
            interval: (idle / 3).max(Duration::from_secs(1)),
            count: 3,
        }
    }
}

/// Default bound on what one session keeps for replay: 1 MiB.
pub const DEFAULT_RESUME_BUFFER: usize = 1 << 20;

/// How a client reconnects after its link dropped, when the server offered a session (see
/// [`crate::session`]): attempts after `first_delay`, doubling up to `max_delay`, each delay
/// scaled by a random factor between 0.5 and 1.5 (so that thousands of players cut off by one
/// router do not all come back in the same millisecond), until `give_up_after` has passed
/// since the drop. Each attempt is bounded by [`Config::connect_timeout`].
///
/// ```
/// use std::time::Duration;
/// let r = repod::Reconnect::default();
/// assert_eq!(r.first_delay, Duration::from_millis(100));
/// assert_eq!(r.max_delay, Duration::from_secs(5));
/// assert_eq!(r.give_up_after, Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnect {
    /// Delay before the first attempt.
    pub first_delay: Duration,
    /// Longest delay between two attempts.
    pub max_delay: Duration,
    /// The client stops trying this long after the drop, and reports `disconnected`.
    pub give_up_after: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            give_up_after: Duration::from_secs(60),
        }
    }
}

impl Reconnect {
    /// The delay before attempt `attempt` (1 for the first), before jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let doubling = 1u32 << attempt.saturating_sub(1).min(16);
        self.first_delay
            .saturating_mul(doubling)
            .min(self.max_delay)
    }
}

/// Default maximum payload length of one frame: 8 MiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 8 << 20;
/// Default maximum output queued for one connection: 16 MiB.
pub const DEFAULT_MAX_QUEUED_OUTPUT: usize = 16 << 20;

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            max_depth: crate::message::DEFAULT_MAX_DEPTH,
            max_queued_output: DEFAULT_MAX_QUEUED_OUTPUT,
            slow_reader: SlowReaderPolicy::Disconnect,
            idle_timeout: None,
            max_connections: None,
            linger: Duration::from_secs(5),
            read_budget: 256 * 1024,
            nodelay: true,
            keepalive: None,
            user_timeout: None,
            connect_timeout: Some(Duration::from_secs(10)),
            notsent_lowat: Some(DEFAULT_NOTSENT_LOWAT),
            heartbeat: None,
            heartbeat_timeout: None,
            busy_poll: None,
            resume_window: None,
            resume_buffer: DEFAULT_RESUME_BUFFER,
            reconnect: Some(Reconnect::default()),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl Config {
    /// Largest payload accepted in one frame, checked on the length prefix before anything is
    /// buffered; a larger announcement closes the connection with
    /// [`Error::FrameTooLarge`](crate::Error::FrameTooLarge). Outgoing messages over it are
    /// refused by `send`. Default 8 MiB ([`DEFAULT_MAX_FRAME_LEN`]).
    pub fn max_frame_len(mut self, bytes: usize) -> Self {
        self.max_frame_len = bytes.min(u32::MAX as usize);
        self
    }

    /// Deepest nesting of arrays and maps in a message (the message map itself is level 1).
    /// Default 32; capped at [`MAX_DEPTH_LIMIT`](crate::message::MAX_DEPTH_LIMIT).
    pub fn max_depth(mut self, levels: usize) -> Self {
        self.max_depth = levels.clamp(1, crate::message::MAX_DEPTH_LIMIT);
        self
    }

    /// Most bytes queued for one connection and not yet taken by its socket. Memory for output
    /// is bounded by this times the number of connections. A single message is always accepted
    /// into an empty queue (if it is within [`max_frame_len`](Self::max_frame_len)).
    /// Default 16 MiB ([`DEFAULT_MAX_QUEUED_OUTPUT`]).
    pub fn max_queued_output(mut self, bytes: usize) -> Self {
        self.max_queued_output = bytes;
        self
    }

    /// What to do when [`max_queued_output`](Self::max_queued_output) would be passed. Default
    /// [`SlowReaderPolicy::Disconnect`].
    pub fn slow_reader(mut self, policy: SlowReaderPolicy) -> Self {
        self.slow_reader = policy;
        self
    }

    /// Close a connection that has received nothing for this long, with
    /// [`Error::IdleTimeout`](crate::Error::IdleTimeout). Default `None` (no timeout); checked
    /// with a resolution of a quarter of the timeout.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Most simultaneous connections a server accepts; one more is accepted and closed at once,
    /// with a log line. Default `None`: as in Python repod, the limit is the application's
    /// choice (see the `max_players` example for the polite, in-game way).
    pub fn max_connections(mut self, max: Option<usize>) -> Self {
        self.max_connections = max;
        self
    }

    /// How long a closed connection may keep flushing its queued output before its socket is
    /// dropped; also the bound on a server's graceful stop. Default 5 s.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Bytes read from one connection per readiness event before the reactor turns to the
    /// others, so one fast sender cannot starve the rest. Default 256 KiB.
    pub fn read_budget(mut self, bytes: usize) -> Self {
        self.read_budget = bytes.max(1);
        self
    }

    /// Set `TCP_NODELAY` on every connection (default `true`: games send small messages that
    /// must not wait for Nagle's algorithm).
    pub fn nodelay(mut self, on: bool) -> Self {
        self.nodelay = on;
        self
    }

    /// TCP keepalive on every connection (see [`Keepalive`]). Default `None`: the operating
    /// system's default, which on Linux is off unless the application asks (and then probes
    /// only after two hours).
    ///
    /// ```
    /// use std::time::Duration;
    /// use repod::{Config, Keepalive};
    /// let cfg = Config::default()
    ///     .keepalive(Some(Keepalive::after(Duration::from_secs(20))))
    ///     .tcp_user_timeout(Some(Duration::from_secs(30)));
    /// # drop(cfg);
    /// ```
    pub fn keepalive(mut self, keepalive: Option<Keepalive>) -> Self {
        self.keepalive = keepalive;
        self
    }

    /// `TCP_NOTSENT_LOWAT` (Linux): the most bytes the kernel keeps queued on a
    /// connection that it has not sent yet. Past it the socket takes no more, and what the game
    /// sends waits in repod's queue, where a latest-wins message
    /// ([`ChannelCtx::send_latest`](crate::ChannelCtx::send_latest)) can still be replaced by a
    /// newer one; the reactor refills the kernel as it sends (on writable events). Without
    /// it, on a link slower than the game's updates, the kernel's send buffer holds seconds of
    /// stale data that nothing can take back.
    ///
    /// Default 1 byte ([`DEFAULT_NOTSENT_LOWAT`]): the kernel takes one more write only when
    /// everything before it was handed to the network, so the choice of what to send is made
    /// in repod's queue at the last moment. Data in flight (sent, not yet acknowledged) is not
    /// limited, so throughput is still the congestion window's: a write still takes a whole
    /// segment batch (up to 64 KiB); it only costs one more wake-up per batch the kernel sends.
    /// `None` leaves the system's setting (unlimited). Ignored where the option does not exist.
    pub fn notsent_lowat(mut self, bytes: Option<u32>) -> Self {
        self.notsent_lowat = bytes;
        self
    }

    /// For clients: the longest a connection may take to be established: TCP connected, then
    /// the TLS handshake and the WebSocket upgrade if any. Past it the attempt ends with an
    /// `error` event: [`Error::Io`](crate::Error::Io) (`TimedOut`) while TCP connects,
    /// [`Error::Tls`](crate::Error::Tls) (`TlsError::Timeout`) during the TLS handshake,
    /// [`Error::Handshake`](crate::Error::Handshake) (`Timeout`) during the upgrade. Without
    /// it an address that drops packets (a black hole) keeps a connect waiting for the
    /// system's SYN retries, about two minutes on Linux. Default 10 s; `None` waits as long as
    /// the system does.
    pub fn connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// For servers: offer every connection a session that survives a dropped link for
    /// `window` (see [`crate::session`]). A player whose link drops is *away*
    /// ([`ChannelHandler::on_away`](crate::ChannelHandler::on_away)) rather than gone: its
    /// channel and state stay, messages sent to it are kept, and when its client resumes
    /// within the window ([`on_back`](crate::ChannelHandler::on_back)) each side replays
    /// what the other missed, so every message is handled once, in order. Past the window the
    /// channel closes with [`DisconnectReason::SessionExpired`](crate::DisconnectReason).
    /// Default `None`: off, and the wire is exactly Python repod's.
    pub fn resume_window(mut self, window: Option<Duration>) -> Self {
        self.resume_window = window;
        self
    }

    /// Most bytes one session keeps for replay: messages sent and not yet acknowledged by
    /// the peer, plus those queued while it is away. Past it the session cannot be replayed
    /// any more: a server's channel closes with
    /// [`DisconnectReason::ReplayOverflow`](crate::DisconnectReason), a client gives up its
    /// session. Default 1 MiB ([`DEFAULT_RESUME_BUFFER`]).
    pub fn resume_buffer(mut self, bytes: usize) -> Self {
        self.resume_buffer = bytes;
        self
    }

    /// For clients: whether and how to reconnect and resume after the link dropped, when the
    /// server offered a session. Default: on, with [`Reconnect::default`]. `None` switches it
    /// off: the client then ignores the session and ends at the first drop, as before.
    pub fn reconnect(mut self, policy: Option<Reconnect>) -> Self {
        self.reconnect = policy;
        self
    }

    /// `TCP_USER_TIMEOUT` (Linux): the longest sent data may stay unacknowledged before the
    /// kernel drops the connection ([`Error::Io`](crate::Error::Io), `TimedOut`). Keepalive
    /// finds a vanished peer while the connection is quiet; this finds it while we are
    /// writing to it, when keepalive stays silent and retransmissions would otherwise go on for
    /// about fifteen minutes. Default `None` (the system's behaviour). Ignored elsewhere than
    /// Linux.
    pub fn tcp_user_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.user_timeout = timeout;
        self
    }

    /// Heartbeats: send every connection a ping each `interval`, and close one from which
    /// nothing arrived within [`heartbeat_timeout`](Self::heartbeat_timeout) (three intervals
    /// unless set) with
    /// [`DisconnectReason::HeartbeatTimeout`](crate::DisconnectReason::HeartbeatTimeout).
    /// Measures each connection's RTT ([`ConnStats::rtt`](crate::ConnStats::rtt)). Default
    /// `None`. Repod peers answer by themselves; Python repod peers need a two-line handler, see
    /// [`heartbeat`](crate::heartbeat). A silent peer is found between the timeout and the
    /// timeout plus one interval after its last message.
    ///
    /// ```
    /// use std::time::Duration;
    /// let cfg = repod::Config::default().heartbeat(Some(Duration::from_secs(1)));
    /// assert_eq!(cfg.get_heartbeat_timeout(), Some(Duration::from_secs(3)));
    /// ```
    pub fn heartbeat(mut self, interval: Option<Duration>) -> Self {
        self.heartbeat = interval.map(|i| i.max(Duration::from_millis(1)));
        self
    }

    /// How long a connection may stay silent while heartbeats are on. Default three
    /// [`heartbeat`](Self::heartbeat) intervals.
    pub fn heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.heartbeat_timeout = Some(timeout);
        self
    }

    /// Busy-poll: before the reactor sleeps, it polls without blocking for up to `spin`, so a
    /// message that arrives meanwhile is handled by a thread that is already running. This
    /// saves the wake-up of a sleeping thread on every message (microseconds; tens of them on a
    /// virtual machine whose idle vCPU halted) at the price of CPU: while messages keep coming
    /// less than `spin` apart, the reactor's core runs at 100% even when it has little to do;
    /// an idle server still sleeps, `spin` after its last message. Default `None` (off): for
    /// latency-critical servers on a dedicated core, with `spin` around 50 µs. BENCHMARKS-HISTORY.md
    /// has the figures.
    ///
    /// ```
    /// use std::time::Duration;
    /// let cfg = repod::Config::default().busy_poll(Some(Duration::from_micros(50)));
    /// # drop(cfg);
    /// ```
    pub fn busy_poll(mut self, spin: Option<Duration>) -> Self {
        self.busy_poll = spin;
        self
    }

    /// For clients: whom a `tls://` or `wss://` connection trusts (default: Mozilla's root
    /// certificates; a private fleet or a test gives its own CA,
    /// [`TlsConnector::with_ca_file`](crate::tls::TlsConnector::with_ca_file)). Servers take
    /// their certificate per listener, with [`Listen::tls`].
    #[cfg(feature = "tls")]
    pub fn tls(mut self, connector: crate::tls::TlsConnector) -> Self {
        self.tls = Some(connector);
        self
    }

    /// See [`heartbeat_timeout`](Self::heartbeat_timeout); `None` while heartbeats are off.
    pub fn get_heartbeat_timeout(&self) -> Option<Duration> {
        let interval = self.heartbeat?;
        Some(self.heartbeat_timeout.unwrap_or(interval * 3))
    }

    /// See [`max_frame_len`](Self::max_frame_len).
    pub fn get_max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// See [`max_queued_output`](Self::max_queued_output).
    pub fn get_max_queued_output(&self) -> usize {
        self.max_queued_output
    }

    /// See [`idle_timeout`](Self::idle_timeout).
    pub fn get_idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }
}

/// Where a server listens, and how: the address, plus options for the socket
/// ([`reuse_port`](Listen::reuse_port)) and for what every connection must send first
/// ([`proxy_protocol`](Listen::proxy_protocol)).
///
/// Anything [`ToSocketAddrs`] takes (`"0.0.0.0:5071"`, `("host", port)`, a `SocketAddr`) is a
/// `Listen` with no options, so `Server::bind` and `Server::listen_ws` take either.
///
/// ```no_run
/// use repod::{Listen, Server};
/// # #[derive(Default)] struct Player;
/// # impl repod::ChannelHandler for Player { type Server = (); fn routes(_: &mut repod::Routes<Self>) {} }
/// // One of several processes sharing port 5071 behind HAProxy (`send-proxy-v2`).
/// let server = Server::<Player>::bind(
///     Listen::on("0.0.0.0:5071").reuse_port(true).proxy_protocol(true),
///     (),
/// )?;
/// server.launch()?; // SIGTERM drains; see `Server::drain_on_sigterm`
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Listen {
    pub(crate) addrs: Result<Vec<SocketAddr>, String>,
    pub(crate) reuse_port: bool,
    pub(crate) proxy: Option<ProxyOptions>,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::TlsAcceptor>,
}

/// What a listener requiring the PROXY protocol accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProxyOptions {
    pub(crate) timeout: Duration,
    pub(crate) max_len: usize,
}

impl Listen {
    /// Listens on `addr` (port 0 picks a free port); the first address it resolves to that can
    /// be bound is used.
    pub fn on(addr: impl ToSocketAddrs) -> Self {
        let addrs = addr
            .to_socket_addrs()
            .map(Iterator::collect)
            .map_err(|e| e.to_string());
        Listen {
            addrs,
            reuse_port: false,
            proxy: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Speak TLS on this listener, with `acceptor`'s certificate: repod over TLS for
    /// `Server::bind`, `wss` for `Server::listen_ws`. With
    /// [`proxy_protocol`](Self::proxy_protocol) the PROXY header comes first, in clear, as a
    /// balancer passing TLS through sends it. See [`crate::tls`].
    #[cfg(feature = "tls")]
    pub fn tls(mut self, acceptor: crate::tls::TlsAcceptor) -> Self {
        self.tls = Some(acceptor);
        self
    }

    /// The listener's TLS acceptor, as the reactor takes it (a type with no values without
    /// the `tls` feature).
    pub(crate) fn tls_acceptor(&self) -> Option<crate::reactor::TlsAcceptor> {
        #[cfg(feature = "tls")]
        return self.tls.clone();
        #[cfg(not(feature = "tls"))]
        None
    }

    /// Set `SO_REUSEPORT` (Linux, the BSDs, macOS) before binding, so several processes, or
    /// several threads each running its own `Server`, listen on the same port and the kernel
    /// spreads new connections among them. Every socket sharing the port must set it.
    /// Default off.
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.reuse_port = on;
        self
    }

    /// Require a PROXY protocol header (v1 or v2; see [`crate::proxy`]) at the start of every
    /// connection, as a load balancer with `send-proxy` / `send-proxy-v2` sends: the client
    /// address in it becomes the channel's address. A connection without a valid header is
    /// closed before any greeting. Only turn this on behind a balancer: anyone who can reach
    /// the port directly can claim any address. Default off.
    pub fn proxy_protocol(mut self, on: bool) -> Self {
        self.proxy = on.then_some(self.proxy.unwrap_or(ProxyOptions {
            timeout: Duration::from_secs(5),
            max_len: crate::proxy::DEFAULT_MAX_HEADER_LEN,
        }));
        self
    }

    /// With [`proxy_protocol`](Self::proxy_protocol): most time from accepting a connection to
    /// its complete header (default 5 s), and the largest v2 header accepted, TLVs included
    /// (default 1 KiB; v1 headers are at most 107 bytes by the spec).
    pub fn proxy_limits(mut self, timeout: Duration, max_header_len: usize) -> Self {
        if let Some(p) = self.proxy.as_mut() {
            p.timeout = timeout;
            p.max_len = max_header_len.max(16 + 36);
        }
        self
    }
}

/// An address to listen on: a [`Listen`], or anything [`ToSocketAddrs`] takes.
pub trait BindAddr {
    /// The address with its options.
    fn into_listen(self) -> Listen;
}

impl BindAddr for Listen {
    fn into_listen(self) -> Listen {
        self
    }
}

impl<T: ToSocketAddrs> BindAddr for T {
    fn into_listen(self) -> Listen {
        Listen::on(self)
    }
}
