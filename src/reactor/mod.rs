//! The reactor: the only code that touches sockets and mio.
//!
//! One [`mio::Poll`], a [`Slab`] of connection states, a [`mio::Waker`] for commands from other
//! threads. Everything above it (server, client) sees connections as [`ChannelId`]s and sees
//! input as whole frame payloads, through the [`Driver`] callbacks.
//!
//! Per turn ([`Reactor::turn`]):
//! 1. wait for readiness, no longer than the earliest timer (on Linux a `timerfd` holds that
//!    deadline, so `epoll_wait` itself has no timeout: see `alarm`);
//! 2. accept every pending connection; read every readable connection until the kernel has no
//!    more data or the connection's read budget is spent (the rest is read next turn, so one
//!    fast sender cannot starve the others), and hand each complete frame to the driver;
//! 3. run timers (the driver's tick, idle timeouts, closing connections out of time);
//! 4. write each connection that has new output once: every message queued during the turn
//!    leaves in one syscall.
//!
//! Closing is graceful: a closed connection stops delivering input at once and is reported to
//! the driver once, but its socket lives on until its queued output is written, then sends FIN,
//! then discards input until the peer closes too (closing with unread input would make the
//! kernel send RST, and the peer could lose the tail of what we sent). [`Config::linger`]
//! bounds all of it.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::config::{Config, ProxyOptions, SlowReaderPolicy};
use crate::encode::Encode;
use crate::frame::{self, FrameDecoder};
use crate::heartbeat::{self, Beat};
use crate::msg;
use crate::proxy::ProxyError;
use crate::stats::{ConnStats, Counters};
use crate::ws::codec::{self as wscodec, Opcode};
use crate::ws::handshake::{self, WsUrl};
use crate::ws::{MaskKeys, Role, WsDecoder, WsError, WsEvent, WsOptions};
use crate::{DisconnectReason, Error};

pub(crate) use self::tls::TlsAcceptor;
use self::tls::TlsLayer;

mod accept;
mod alarm;
mod input;
mod output;
mod session;
mod timers;
mod tls;

use self::session::Session;

const WAKER: Token = Token(usize::MAX - 2);
const SIGNALS: Token = Token(usize::MAX - 3);
const ALARM: Token = Token(usize::MAX - 4);
/// Listening sockets take the tokens below this one, counting down.
const FIRST_LISTENER: usize = usize::MAX - 8;
/// Most listening sockets in one reactor.
const MAX_LISTENERS: usize = 32;
/// Connection tokens stay below every reserved token.
const MAX_LINK_INDEX: usize = FIRST_LISTENER - MAX_LISTENERS;

/// Size of the shared read buffer: every connection reads into this one buffer.
const READ_CHUNK: usize = 64 * 1024;
/// An output buffer larger than this is released once fully written.
const KEEP_OUTPUT: usize = 64 * 1024;
/// Plaintext encrypted at a time on a TLS connection (four full records).
const TLS_CHUNK: usize = 64 * 1024;
/// The same while the socket refuses output (`Link::congested`): about what it takes at once
/// under `Config::notsent_lowat`'s default.
const TLS_CHUNK_CONGESTED: usize = 2 * 1024;
/// How long a link stays gated after the kernel last refused it or was found not to have sent
/// what it took.
const GATE_HOLD: Duration = Duration::from_secs(1);
/// How soon a gated link that could not write tries again, when nothing else wakes it.
const GATE_RETRY: Duration = Duration::from_millis(5);
/// How long accepting pauses after the process ran out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Most connections accepted in one turn before the others get served.
const ACCEPT_BUDGET: usize = 1024;

/// Identifies one connection for its whole life. Never reused for a later connection, even when
/// the slot is (a generation counter tells them apart), so a stale id sends nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId {
    index: u32,
    gen: u32,
}

impl ChannelId {
    fn index(self) -> usize {
        self.index as usize
    }

    /// A number unique among the connections alive at one time (the slot index); handy as a
    /// player number or a key in a `Vec`.
    pub fn slot(self) -> usize {
        self.index as usize
    }
}

impl fmt::Debug for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}.{}", self.index, self.gen)
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What the reactor reports to the layer above. Every method runs on the reactor's thread;
/// each may call back into the reactor (send, close, broadcast).
pub(crate) trait Driver {
    /// A connection was accepted and is open.
    fn accepted(&mut self, reactor: &mut Reactor, id: ChannelId);
    /// An outgoing connection completed.
    fn connected(&mut self, _reactor: &mut Reactor, _id: ChannelId) {}
    /// One complete frame arrived.
    fn frame(&mut self, reactor: &mut Reactor, id: ChannelId, payload: &[u8]);
    /// The connection ended; called exactly once per connection.
    fn closed(&mut self, reactor: &mut Reactor, id: ChannelId, reason: DisconnectReason);
    /// A connection was refused before it became a channel (a bad PROXY header, a failed
    /// WebSocket upgrade).
    fn refused(&mut self, _reactor: &mut Reactor, _addr: SocketAddr, _error: Error) {}
    /// A WebSocket upgrade request passed the listener's checks: admit it (with a login for
    /// its channel) or refuse it with an HTTP status. No channel exists yet.
    fn upgrade(
        &mut self,
        _reactor: &mut Reactor,
        _request: &crate::ws::UpgradeRequest<'_>,
    ) -> Result<Option<crate::ws::Login>, u16> {
        Ok(None)
    }
    /// A channel's link dropped and its session waits for its client to resume it.
    fn away(&mut self, _reactor: &mut Reactor, _id: ChannelId, _reason: &DisconnectReason) {}
    /// A session that was away is back, on a new link (the same id).
    fn back(&mut self, _reactor: &mut Reactor, _id: ChannelId) {}
    /// Another thread called [`Remote::wake`].
    fn woken(&mut self, _reactor: &mut Reactor) {}
    /// SIGINT or SIGTERM (the number) arrived (only after [`Reactor::watch_signals`]).
    fn signalled(&mut self, _reactor: &mut Reactor, _signal: i32) {}
    /// The driver's next timer, if any.
    fn next_deadline(&self) -> Option<Instant> {
        None
    }
    /// Called every turn, after I/O, with the turn's time.
    fn timers(&mut self, _reactor: &mut Reactor, _now: Instant) {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    /// Server side: reading the connection's preamble (a PROXY header, a TLS handshake, a
    /// WebSocket upgrade request). Not a channel yet.
    Accepting,
    /// Client side: TCP is up; the TLS handshake or the WebSocket upgrade is going on.
    Upgrading,
    Open,
    /// Closed for the application; writing what is queued.
    Flushing,
    /// Output written and FIN sent; discarding input until the peer closes.
    Draining,
    /// The link dropped, but its session waits for the client to resume it (see
    /// `session.rs`): a channel with no socket, whose output is kept for replay.
    Away,
}

/// How a connection frames its messages, which decides how output is encoded.
#[derive(Debug)]
enum Transport {
    /// 4-byte length prefixes.
    Tcp,
    /// WebSocket, server side: binary frames, unmasked.
    WsServer,
    /// WebSocket, client side: binary frames, each masked with a fresh key.
    WsClient(MaskKeys),
}

impl Transport {
    /// The masking key for the next frame: a fresh one on a WebSocket client, else none.
    fn mask(&mut self) -> Option<[u8; 4]> {
        match self {
            Transport::WsClient(keys) => Some(keys.next_key()),
            _ => None,
        }
    }
}

/// The receive side's state machine for one connection.
#[derive(Debug)]
enum Codec {
    /// Gathering a PROXY protocol header; then `Frames` or `Upgrade`.
    Proxy(Vec<u8>),
    Frames(FrameDecoder),
    /// Gathering a WebSocket upgrade request (server) or its answer (client).
    Upgrade(Box<Upgrade>),
    Ws(WsDecoder),
}

impl Default for Codec {
    fn default() -> Self {
        Codec::Frames(FrameDecoder::default())
    }
}

impl Upgrade {
    /// A server's upgrade, on listener `slot`.
    fn server(slot: usize) -> Upgrade {
        Upgrade {
            head: Vec::new(),
            listener: slot,
            request: Vec::new(),
            key: [0; 24],
        }
    }
}

#[derive(Debug)]
struct Upgrade {
    /// The HTTP head received so far.
    head: Vec<u8>,
    /// Server: which listener's options apply.
    listener: usize,
    /// Client: the request to send once TCP is up, and the key it carries.
    request: Vec<u8>,
    key: [u8; 24],
}

/// One connection. Its layers, from the socket up: an optional PROXY header (`codec` is
/// [`Codec::Proxy`] until it is complete), an optional TLS layer (`tls`), then the framing
/// (`codec`: a WebSocket upgrade then WebSocket frames, or length prefixes). Input climbs them
/// in `input.rs`, output comes down them in `output.rs`; each layer's state machine lives
/// outside the reactor, free of sockets (`crate::proxy`, `crate::tls`, `crate::ws`,
/// `crate::frame`).
#[derive(Debug)]
struct Link {
    stream: TcpStream,
    addr: Option<SocketAddr>,
    gen: u32,
    state: State,
    transport: Transport,
    codec: Codec,
    /// The TLS layer between the socket and the framing, if this connection has one.
    tls: Option<Box<TlsLayer>>,
    /// What the server's upgrade hook admitted this connection with.
    login: Option<Box<crate::ws::Login>>,
    /// The session this link carries, if sessions are on (see `session.rs`).
    session: Option<Box<Session>>,
    out: Vec<u8>,
    out_pos: usize,
    /// Bytes removed from the front of `out` so far: a latest-wins entry's stream offset
    /// minus this is its position in `out` (or it is gone, if negative).
    out_base: u64,
    /// The latest-wins messages queued in `out`, by identity (see `output.rs`).
    latest: Vec<Keyed>,
    /// Latest-wins messages replaced before they were written.
    replaced: u64,
    /// The socket refused part of the output at the last write (its unsent queue is full, to
    /// `Config::notsent_lowat`): the peer's link is slower than what is sent to it.
    congested: bool,
    /// Until then, the link writes only when the kernel has sent everything it took (see
    /// `Reactor::may_write`).
    gated_until: Option<Instant>,
    /// Output past this position waits (a WebSocket client's messages wait for the upgrade).
    out_hold: usize,
    dirty: bool,
    /// A WebSocket close frame is in `out` already.
    close_sent: bool,
    /// Nothing but the first output (a greeting, an upgrade answer) was queued yet: its buffer
    /// is released once written, so a player who never speaks owns no buffer at all.
    fresh: bool,
    last_rx: Instant,
    /// When a closed link is dropped, or when a preamble (PROXY header, upgrade) that has not
    /// completed fails.
    close_deadline: Option<Instant>,
    /// The listener that accepted it (server side).
    listener: usize,
    /// What it carried, for [`ConnStats`].
    bytes_in: u64,
    bytes_out: u64,
    msgs_in: u64,
    msgs_out: u64,
    since: Instant,
    rtt: Option<Duration>,
}

impl Link {
    /// Output not yet handed to the kernel: plaintext messages, and records encrypted but not
    /// written.
    fn queued(&self) -> usize {
        self.out.len() - self.out_pos + self.tls.as_ref().map_or(0, |t| t.pending())
    }

    /// The socket refused output: the link is congested, and gated for a while (see
    /// `Reactor::may_write`).
    fn refused(&mut self, now: Instant) {
        self.congested = true;
        self.gated_until = Some(now + GATE_HOLD);
    }

    /// Everything in `out` was written: it starts over, empty, unless a session keeps some
    /// of it for replay until the peer acknowledges it.
    fn written_all(&mut self) {
        if self
            .session
            .as_ref()
            .is_some_and(|s| s.keep < self.out.len())
        {
            // Nothing written can be replaced any more.
            self.latest.clear();
            return;
        }
        if let Some(s) = self.session.as_deref_mut() {
            s.keep = 0;
        }
        if self.out_hold != usize::MAX {
            // Still held (a WebSocket client's upgrade request went out): what is queued from
            // now on waits for the answer too.
            self.out_hold = 0;
        }
        self.out_base += self.out.len() as u64;
        self.out.clear();
        self.out_pos = 0;
        self.latest.clear();
    }

    /// Removes from the latest-wins list the entry of `ident`, and returns where its message
    /// lies in `out` if the socket has not started taking it.
    fn take_latest(&mut self, ident: u64) -> Option<std::ops::Range<usize>> {
        let i = self.latest.iter().position(|k| k.ident == ident)?;
        let k = self.latest.swap_remove(i);
        let start = k.at.checked_sub(self.out_base)? as usize;
        let end = start + k.len as usize;
        (start >= self.out_pos && end <= self.out.len()).then_some(start..end)
    }

    /// Whether a TLS handshake is still going on (the connection is not a channel yet on a
    /// server, not connected yet on a client).
    fn tls_handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.is_handshaking())
    }

    fn is_live(&self) -> bool {
        matches!(
            self.state,
            State::Open | State::Connecting | State::Upgrading | State::Away
        )
    }

    /// Whether broadcasts reach this link: an open channel, or one away (its messages are
    /// kept for replay). Not a link still waiting to learn whether it resumes a session.
    fn takes_broadcasts(&self) -> bool {
        match self.state {
            State::Open => self.session.as_ref().is_none_or(|s| s.announced),
            State::Away => true,
            _ => false,
        }
    }

    /// No output queued at all, and no buffer left to release.
    fn nothing_to_write(&self) -> bool {
        self.out_pos == self.out.len() && self.tls.as_ref().is_none_or(|t| t.pending() == 0)
    }

    fn is_ws(&self) -> bool {
        !matches!(self.transport, Transport::Tcp)
    }
}

/// Where a latest-wins message lies in a link's output (see `output.rs`).
#[derive(Debug, Clone, Copy)]
struct Keyed {
    /// Its action and key, hashed.
    ident: u64,
    /// Its first byte, as an offset in everything the link ever queued (`Link::out_base`).
    at: u64,
    len: u32,
}

/// One listening socket; `ws` is set for a WebSocket listener, `proxy` when its connections
/// start with a PROXY protocol header.
#[derive(Debug)]
struct Listening {
    socket: TcpListener,
    ws: Option<WsOptions>,
    proxy: Option<ProxyOptions>,
    tls: Option<TlsAcceptor>,
}

/// A thread-safe handle that wakes a reactor blocked in [`Reactor::turn`].
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    waker: Arc<Waker>,
}

impl Remote {
    pub(crate) fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            log::error!("repod: could not wake the reactor: {e}");
        }
    }
}

/// See the [module documentation](self).
pub(crate) struct Reactor {
    poll: Poll,
    events: Events,
    ready: Vec<(Token, u8)>,
    listeners: Vec<Option<Listening>>,
    accept_paused_until: Option<Instant>,
    accept_pending: bool,
    links: Slab<Link>,
    next_gen: u32,
    live: usize,
    lingering: usize,
    /// WebSocket connections still reading their upgrade request.
    accepting: usize,
    dirty: Vec<usize>,
    backlog: Vec<usize>,
    closed: VecDeque<(ChannelId, DisconnectReason)>,
    refused: VecDeque<(SocketAddr, Error)>,
    scratch: Vec<u8>,
    /// What the TLS layer decrypts from one read: the shared plaintext buffer of every TLS
    /// connection, as `scratch` is the shared ciphertext buffer.
    plain: Vec<u8>,
    shared_frame: Vec<u8>,
    /// `shared_frame` as a server's WebSocket frame, made at most once per broadcast.
    shared_ws_frame: Vec<u8>,
    cfg: Config,
    remote: Remote,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    idle_check_at: Option<Instant>,
    linger_check_at: Option<Instant>,
    /// The next heartbeat round (pings out, silent connections closed).
    beat_at: Option<Instant>,
    /// Scratch list of the links a heartbeat round visits, kept to avoid allocating.
    beat_links: Vec<usize>,
    /// Gated links that could not write, and when they try again.
    gated: Vec<usize>,
    /// Sessions that survive a dropped link (see `session.rs`).
    sessions: session::Sessions,
    /// The message being queued is one a session's peer does not count (see `send_uncounted`).
    uncounted: bool,
    gate_retry_at: Option<Instant>,
    /// Wakes the reactor by its earliest deadline, so `poll` needs no timeout (see `alarm`).
    alarm: alarm::Alarm,
    /// Heartbeat stamps are microseconds since this instant.
    epoch: Instant,
    counters: Counters,
    now: Instant,
}

impl fmt::Debug for Reactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reactor")
            .field("connections", &self.live)
            .field("lingering", &self.lingering)
            .finish_non_exhaustive()
    }
}

const READABLE: u8 = 1;
const WRITABLE: u8 = 2;
const HANGUP: u8 = 4;

impl Reactor {
    pub(crate) fn new(cfg: Config) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let alarm = alarm::Alarm::new(poll.registry(), ALARM);
        Ok(Reactor {
            poll,
            events: Events::with_capacity(1024),
            ready: Vec::with_capacity(1024),
            listeners: Vec::new(),
            accept_paused_until: None,
            accept_pending: false,
            links: Slab::new(),
            next_gen: 0,
            live: 0,
            lingering: 0,
            accepting: 0,
            dirty: Vec::new(),
            backlog: Vec::new(),
            closed: VecDeque::new(),
            refused: VecDeque::new(),
            scratch: vec![0; READ_CHUNK],
            plain: Vec::new(),
            shared_frame: Vec::new(),
            shared_ws_frame: Vec::new(),
            cfg,
            remote: Remote { waker },
            signals: None,
            idle_check_at: None,
            linger_check_at: None,
            beat_at: None,
            beat_links: Vec::new(),
            gated: Vec::new(),
            sessions: session::Sessions::default(),
            uncounted: false,
            gate_retry_at: None,
            alarm,
            epoch: Instant::now(),
            counters: Counters::default(),
            now: Instant::now(),
        })
    }

    pub(crate) fn config(&self) -> &Config {
        &self.cfg
    }

    pub(crate) fn set_config(&mut self, cfg: Config) {
        self.cfg = cfg;
    }

    pub(crate) fn remote(&self) -> Remote {
        self.remote.clone()
    }

    fn link(&self, id: ChannelId) -> Option<&Link> {
        self.links.get(id.index()).filter(|l| l.gen == id.gen)
    }

    fn link_mut(&mut self, id: ChannelId) -> Option<&mut Link> {
        self.links.get_mut(id.index()).filter(|l| l.gen == id.gen)
    }

    fn id_of(&self, index: usize) -> ChannelId {
        ChannelId {
            index: index as u32,
            gen: self.links[index].gen,
        }
    }

    /// Whether `id` is open (or still connecting) for the application.
    pub(crate) fn is_open(&self, id: ChannelId) -> bool {
        self.link(id).is_some_and(Link::is_live)
    }

    /// What `id` was admitted with by the upgrade hook.
    pub(crate) fn login(&self, id: ChannelId) -> Option<&crate::ws::Login> {
        self.link(id).and_then(|l| l.login.as_deref())
    }

    pub(crate) fn peer_addr(&self, id: ChannelId) -> Option<SocketAddr> {
        self.link(id).and_then(|l| l.addr)
    }

    pub(crate) fn queued(&self, id: ChannelId) -> usize {
        self.link(id).map_or(0, Link::queued)
    }

    /// What `id` carried so far.
    pub(crate) fn conn_stats(&self, id: ChannelId) -> Option<ConnStats> {
        let l = self.link(id)?;
        Some(ConnStats {
            bytes_in: l.bytes_in,
            bytes_out: l.bytes_out,
            msgs_in: l.msgs_in,
            msgs_out: l.msgs_out,
            queued: l.queued(),
            replaced: l.replaced,
            congested: l.congested,
            kernel_unsent: None,
            connected_since: l.since,
            last_received: l.last_rx,
            rtt: l.rtt,
        })
    }

    /// `id`'s socket addresses, local and remote (not the PROXY header's).
    pub(crate) fn socket_addrs(&self, id: ChannelId) -> Option<(SocketAddr, SocketAddr)> {
        let link = self.link(id)?;
        Some((
            link.stream.local_addr().ok()?,
            link.stream.peer_addr().ok()?,
        ))
    }

    /// The kernel's smoothed RTT of `id`'s TCP connection.
    pub(crate) fn kernel_rtt(&self, id: ChannelId) -> io::Result<Duration> {
        let link = self
            .link(id)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        crate::tcp_info::smoothed_rtt(link.stream.local_addr()?, link.stream.peer_addr()?)
    }

    /// [`conn_stats`](Self::conn_stats) with the kernel's unsent bytes (one `TCP_INFO` query).
    pub(crate) fn conn_stats_with_kernel(&self, id: ChannelId) -> Option<ConnStats> {
        let mut stats = self.conn_stats(id)?;
        let link = self.link(id)?;
        let (local, peer) = (
            link.stream.local_addr().ok()?,
            link.stream.peer_addr().ok()?,
        );
        if let Ok(k) = crate::tcp_info::kernel_tcp(local, peer) {
            stats.kernel_unsent = Some(k.notsent);
        }
        Some(stats)
    }

    /// The reactor's counters since it started.
    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Connections open for the application.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Output queued on every open connection, in bytes (a walk over all connections).
    pub(crate) fn queued_total(&self) -> usize {
        self.links.iter().map(|(_, l)| l.queued()).sum()
    }

    /// Sockets still alive in any state, closing ones included.
    pub(crate) fn sockets(&self) -> usize {
        self.links.len()
    }

    /// The ids of every open connection, in slot order.
    pub(crate) fn open_ids(&self) -> impl Iterator<Item = ChannelId> + '_ {
        self.links
            .iter()
            .filter(|(_, l)| matches!(l.state, State::Open | State::Away))
            .map(|(i, l)| ChannelId {
                index: i as u32,
                gen: l.gen,
            })
    }

    /// Closes `id` for the application now; its queued output is still written. The driver's
    /// `closed` runs once, after the current callback returns.
    pub(crate) fn close(&mut self, id: ChannelId, reason: DisconnectReason) {
        if self.goes_away(id, &reason) {
            self.sessions.events.push_back((id, Some(reason)));
            return;
        }
        let deadline = self.now + self.cfg.linger;
        match self.links.get(id.index()) {
            Some(l) if l.gen == id.gen && l.is_live() => {}
            _ => return,
        };
        self.forget_session(id.index());
        let link = &mut self.links[id.index()];
        let was_away = link.state == State::Away;
        let was_open = link.state == State::Open;
        link.state = State::Flushing;
        link.close_deadline = Some(deadline);
        link.codec = Codec::default();
        if !was_open {
            // Nothing can be written on a socket that never connected or upgraded, or that
            // is gone.
            link.out = Vec::new();
            link.out_pos = 0;
            link.out_hold = usize::MAX;
        } else if link.is_ws() && !link.close_sent {
            // The closing handshake, after everything queued; it bypasses the output cap.
            if let Some(code) = close_code(&reason) {
                let reason_text = match &reason {
                    DisconnectReason::Error(e) => e.to_string(),
                    _ => String::new(),
                };
                let mask = link.transport.mask();
                wscodec::encode_close(&mut link.out, code, &reason_text, mask);
                link.close_sent = true;
            }
        }
        self.live -= 1;
        self.lingering += 1;
        self.counters.count_close(&reason);
        // The earlier of the two: a check scheduled for a later deadline (an upgrade's) must
        // not hold this socket past its linger.
        self.linger_check_at = Some(self.linger_check_at.map_or(deadline, |t| t.min(deadline)));
        if !link.dirty {
            link.dirty = true;
            self.dirty.push(id.index());
        }
        self.closed.push_back((id, reason));
        if was_away {
            self.remove(id.index());
        }
    }

    fn remove(&mut self, index: usize) {
        if let Some(mut link) = self.links.try_remove(index) {
            let _ = self.poll.registry().deregister(&mut link.stream);
            if link.is_live() {
                self.live -= 1;
            } else if link.state == State::Accepting {
                self.accepting -= 1;
            } else {
                self.lingering -= 1;
            }
        }
    }

    /// Refuses a connection that is not a channel yet (a bad PROXY header, a failed WebSocket
    /// upgrade): answers a failed upgrade with its HTTP status, then closes. No channel ever
    /// existed, so no channel hook runs; the log and the driver's `refused` hear of it.
    fn refuse(&mut self, index: usize, err: Error) {
        let deadline = self.now + self.cfg.linger;
        let link = &mut self.links[index];
        if link.state != State::Accepting {
            return;
        }
        let addr = link
            .addr
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        log::warn!("repod: refusing {addr}: {err}");
        if link.tls_handshaking() {
            // Nothing can be said to a peer we share no keys with: it just closes.
            link.tls = None;
            link.out = Vec::new();
            link.out_pos = 0;
        } else if let Error::Handshake(e) = &err {
            handshake::write_reject(&mut link.out, e);
        }
        link.codec = Codec::default();
        link.state = State::Flushing;
        link.close_deadline = Some(deadline);
        self.accepting -= 1;
        self.lingering += 1;
        self.counters.refused += 1;
        self.linger_check_at = Some(self.linger_check_at.map_or(deadline, |t| t.min(deadline)));
        if !link.dirty {
            link.dirty = true;
            self.dirty.push(index);
        }
        self.refused.push_back((addr, err));
    }

    /// Runs one turn: waits for readiness at most `timeout` (`None`: until something happens or
    /// a timer is due), then does all the I/O and callbacks that are ready.
    pub(crate) fn turn(
        &mut self,
        timeout: Option<Duration>,
        driver: &mut impl Driver,
    ) -> io::Result<()> {
        let busy = !self.backlog.is_empty()
            || !self.sessions.events.is_empty()
            || self.accept_pending
            || !self.closed.is_empty()
            || !self.refused.is_empty();
        let mut timeout = if busy { Some(Duration::ZERO) } else { timeout };
        let deadline = [
            driver.next_deadline(),
            self.accept_paused_until,
            self.idle_check_at,
            self.linger_check_at,
            self.beat_at,
            self.gate_retry_at,
            self.session_deadline(),
        ]
        .into_iter()
        .flatten()
        .min();
        if let (Some(d), false) = (deadline, timeout == Some(Duration::ZERO)) {
            if !self.alarm.set(d) {
                let until = d.saturating_duration_since(Instant::now());
                timeout = Some(timeout.map_or(until, |t| t.min(until)));
            }
        }
        let polled = match self.cfg.busy_poll {
            Some(spin) if timeout != Some(Duration::ZERO) => self.spin_then_poll(spin, timeout),
            _ => self.poll.poll(&mut self.events, timeout),
        };
        match polled {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        self.now = Instant::now();
        self.ready.clear();
        for event in self.events.iter() {
            let mut flags = 0;
            if event.is_readable() {
                flags |= READABLE;
            }
            if event.is_writable() {
                flags |= WRITABLE;
            }
            if event.is_error() || event.is_read_closed() || event.is_write_closed() {
                flags |= HANGUP;
            }
            self.ready.push((event.token(), flags));
        }
        for i in 0..self.ready.len() {
            let (token, flags) = self.ready[i];
            match token {
                WAKER => driver.woken(self),
                ALARM => self.alarm.rang(),
                SIGNALS => {
                    while let Some(signal) = self.signals.as_mut().and_then(|s| s.pending().next())
                    {
                        driver.signalled(self, signal);
                    }
                }
                Token(t) if t > MAX_LINK_INDEX => self.accept_all(driver),
                Token(index) => self.ready_link(index, flags, driver),
            }
            self.deliver_closed(driver);
        }
        self.run_backlog(driver);
        self.run_timers(driver);
        self.deliver_closed(driver);
        while !self.dirty.is_empty() {
            self.flush_dirty();
            self.deliver_closed(driver);
        }
        Ok(())
    }

    /// Busy-polls for up to `spin` (non-blocking `epoll_wait`s back to back), then blocks for
    /// what is left of `timeout`: a message that arrives within `spin` is picked up by a thread
    /// that never slept, without the wake-up a sleeping thread costs (several microseconds, far
    /// more on a virtual machine whose idle vCPU halted). See [`Config::busy_poll`].
    fn spin_then_poll(&mut self, spin: Duration, timeout: Option<Duration>) -> io::Result<()> {
        let start = Instant::now();
        let spin = timeout.map_or(spin, |t| t.min(spin));
        loop {
            self.poll.poll(&mut self.events, Some(Duration::ZERO))?;
            if !self.events.is_empty() {
                return Ok(());
            }
            let spun = start.elapsed();
            if spun >= spin {
                let rest = timeout.map(|t| t.saturating_sub(spun));
                return self.poll.poll(&mut self.events, rest);
            }
            std::hint::spin_loop();
        }
    }

    fn ready_link(&mut self, index: usize, flags: u8, driver: &mut impl Driver) {
        let Some(link) = self.links.get(index) else {
            return; // removed earlier in this turn: a stale event
        };
        if link.state == State::Connecting {
            if flags & (WRITABLE | HANGUP) != 0 {
                self.finish_connect(index, driver);
            }
            if self
                .links
                .get(index)
                .is_none_or(|l| l.state == State::Connecting)
            {
                return;
            }
        }
        // Edge-triggered epoll reports writable with every readable edge: with nothing queued
        // (and the greeting's buffer already released) there is nothing to write.
        let link = &self.links[index];
        if flags & WRITABLE != 0
            && !(link.state == State::Open && link.nothing_to_write() && !link.fresh)
        {
            self.flush(index);
        }
        if flags & (READABLE | HANGUP) != 0 {
            self.read(index, driver, flags & HANGUP != 0);
        }
    }

    fn deliver_closed(&mut self, driver: &mut impl Driver) {
        while let Some((id, away)) = self.sessions.events.pop_front() {
            match away {
                Some(reason) => driver.away(self, id, &reason),
                None => driver.back(self, id),
            }
        }
        while let Some((id, reason)) = self.closed.pop_front() {
            driver.closed(self, id, reason);
        }
        while let Some((addr, error)) = self.refused.pop_front() {
            driver.refused(self, addr, error);
        }
    }
}

/// The close status a WebSocket peer is sent when its connection ends for `reason`; `None`
/// when no frame can be written (the socket failed).
fn close_code(reason: &DisconnectReason) -> Option<u16> {
    Some(match reason {
        DisconnectReason::Closed | DisconnectReason::PeerClosed => 1000,
        DisconnectReason::ServerStopped | DisconnectReason::HeartbeatTimeout(_) => 1001,
        DisconnectReason::SessionExpired(_) => return None,
        DisconnectReason::ReplayOverflow { .. } => 1008,
        DisconnectReason::Error(e) => match e {
            Error::Io(_) => return None,
            Error::WebSocket(w) => w.close_code(),
            Error::FrameTooLarge { .. } => 1009,
            Error::OutputFull { .. } | Error::IdleTimeout(_) => 1008,
            _ => 1011,
        },
    })
}
