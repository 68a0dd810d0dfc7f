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

mod alarm;

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
    /// Server side of a WebSocket: reading the upgrade request. Not a channel yet.
    Accepting,
    /// Client side of a WebSocket: upgrade request sent, reading the answer.
    Upgrading,
    Open,
    /// Closed for the application; writing what is queued.
    Flushing,
    /// Output written and FIN sent; discarding input until the peer closes.
    Draining,
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

#[derive(Debug)]
struct Link {
    stream: TcpStream,
    addr: Option<SocketAddr>,
    gen: u32,
    state: State,
    transport: Transport,
    codec: Codec,
    out: Vec<u8>,
    out_pos: usize,
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
    fn queued(&self) -> usize {
        self.out.len() - self.out_pos
    }

    fn is_live(&self) -> bool {
        matches!(
            self.state,
            State::Open | State::Connecting | State::Upgrading
        )
    }

    fn is_ws(&self) -> bool {
        !matches!(self.transport, Transport::Tcp)
    }
}

/// One listening socket; `ws` is set for a WebSocket listener, `proxy` when its connections
/// start with a PROXY protocol header.
#[derive(Debug)]
struct Listening {
    socket: TcpListener,
    ws: Option<WsOptions>,
    proxy: Option<ProxyOptions>,
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
            shared_frame: Vec::new(),
            shared_ws_frame: Vec::new(),
            cfg,
            remote: Remote { waker },
            signals: None,
            idle_check_at: None,
            linger_check_at: None,
            beat_at: None,
            beat_links: Vec::new(),
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

    /// Listens on `addr`: for length-prefixed TCP, or for WebSocket upgrades when `ws` is set;
    /// with `SO_REUSEPORT` if asked; requiring a PROXY header first if `proxy` is set.
    pub(crate) fn listen(
        &mut self,
        addr: SocketAddr,
        ws: Option<WsOptions>,
        reuse_port: bool,
        proxy: Option<ProxyOptions>,
    ) -> io::Result<SocketAddr> {
        let slot = self.listeners.iter().position(Option::is_none);
        let slot = slot.unwrap_or(self.listeners.len());
        if slot >= MAX_LISTENERS {
            return Err(io::Error::other("too many listening sockets"));
        }
        let mut socket = if reuse_port {
            bind_reuse_port(addr)?
        } else {
            TcpListener::bind(addr)?
        };
        self.poll.registry().register(
            &mut socket,
            Token(FIRST_LISTENER - slot),
            Interest::READABLE,
        )?;
        let local = socket.local_addr()?;
        if slot == self.listeners.len() {
            self.listeners.push(None);
        }
        self.listeners[slot] = Some(Listening { socket, ws, proxy });
        Ok(local)
    }

    /// Stops accepting and closes every listening socket; upgrades still in progress are
    /// refused (503), since their players would arrive in a server that is going away.
    pub(crate) fn stop_listening(&mut self) {
        for l in self.listeners.iter_mut() {
            if let Some(mut l) = l.take() {
                let _ = self.poll.registry().deregister(&mut l.socket);
            }
        }
        if self.accepting > 0 {
            let upgrading: Vec<usize> = self
                .links
                .iter()
                .filter(|(_, l)| l.state == State::Accepting)
                .map(|(i, _)| i)
                .collect();
            for i in upgrading {
                let err = match self.links[i].codec {
                    Codec::Proxy(_) => Error::Proxy(ProxyError::Unavailable),
                    _ => Error::Handshake(handshake::HandshakeError::Unavailable),
                };
                self.refuse(i, err);
            }
        }
    }

    pub(crate) fn watch_signals(&mut self) -> io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook_mio::v1_0::Signals::new([SIGINT, SIGTERM])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Starts a non-blocking connect. Completion or failure is reported through the driver.
    pub(crate) fn connect(&mut self, addr: SocketAddr) -> io::Result<ChannelId> {
        let stream = TcpStream::connect(addr)?;
        let codec = Codec::Frames(FrameDecoder::new(self.cfg.max_frame_len));
        self.insert(stream, None, State::Connecting, Transport::Tcp, codec)
    }

    /// Starts a non-blocking connect to a WebSocket server at `addr`; the upgrade to `url`
    /// follows once TCP is up, and the driver hears `connected` only when it succeeded.
    pub(crate) fn connect_ws(&mut self, addr: SocketAddr, url: &WsUrl) -> io::Result<ChannelId> {
        let stream = TcpStream::connect(addr)?;
        let key = handshake::client_key();
        let mut request = Vec::new();
        handshake::write_request(&mut request, url, &key);
        let upgrade = Upgrade {
            head: Vec::new(),
            listener: 0,
            request,
            key,
        };
        let transport = Transport::WsClient(MaskKeys::from_os());
        let codec = Codec::Upgrade(Box::new(upgrade));
        self.insert(stream, None, State::Connecting, transport, codec)
    }

    fn insert(
        &mut self,
        mut stream: TcpStream,
        addr: Option<SocketAddr>,
        state: State,
        transport: Transport,
        codec: Codec,
    ) -> io::Result<ChannelId> {
        let entry = self.links.vacant_entry();
        let index = entry.key();
        set_socket_options(&self.cfg, &stream);
        if index >= MAX_LINK_INDEX || index > u32::MAX as usize {
            return Err(io::Error::other("too many connections"));
        }
        // Edge-triggered, both directions, once: no re-registration syscalls later.
        self.poll.registry().register(
            &mut stream,
            Token(index),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.next_gen = self.next_gen.wrapping_add(1);
        let gen = self.next_gen;
        entry.insert(Link {
            stream,
            addr,
            gen,
            state,
            transport,
            codec,
            out: Vec::new(),
            out_pos: 0,
            out_hold: usize::MAX,
            dirty: false,
            close_sent: false,
            fresh: true,
            listener: 0,
            last_rx: self.now,
            close_deadline: None,
            bytes_in: 0,
            bytes_out: 0,
            msgs_in: 0,
            msgs_out: 0,
            since: self.now,
            rtt: None,
        });
        if state == State::Accepting {
            self.accepting += 1;
        } else {
            self.live += 1;
        }
        if self.idle_check_at.is_none() {
            if let Some(idle) = self.cfg.idle_timeout {
                self.idle_check_at = Some(self.now + idle / 4);
            }
        }
        if self.beat_at.is_none() {
            if let Some(interval) = self.cfg.heartbeat {
                self.beat_at = Some(self.now + interval);
            }
        }
        Ok(ChannelId {
            index: index as u32,
            gen,
        })
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
            .filter(|(_, l)| l.state == State::Open)
            .map(|(i, l)| ChannelId {
                index: i as u32,
                gen: l.gen,
            })
    }

    /// Encodes `msg` as one frame into `id`'s output buffer. Returns the bytes queued.
    pub(crate) fn send<E: Encode + ?Sized>(
        &mut self,
        id: ChannelId,
        msg: &E,
    ) -> Result<usize, Error> {
        let max = self.cfg.max_frame_len;
        self.queue(id, 1, |out, transport| {
            let encode = |buf: &mut Vec<u8>| msg.encode(buf);
            match transport {
                Transport::Tcp => frame::encode_frame_with(out, max, encode).map(drop),
                ws => wscodec::encode_binary_with(out, max, ws.mask(), encode)
                    .map(drop)
                    .map_err(|len| Error::FrameTooLarge { len, max }),
            }
        })
    }

    /// Queues bytes that are already length-prefixed frames (from another thread's handle, or
    /// a broadcast), re-framed for a WebSocket connection.
    pub(crate) fn send_framed(&mut self, id: ChannelId, framed: &[u8]) -> Result<usize, Error> {
        let msgs = frame::payloads(framed).count() as u64;
        self.queue(id, msgs, |out, transport| {
            match transport {
                Transport::Tcp => out.extend_from_slice(framed),
                ws => {
                    for payload in frame::payloads(framed) {
                        wscodec::encode_frame(out, Opcode::Binary, true, payload, ws.mask());
                    }
                }
            }
            Ok(())
        })
    }

    /// Queues already length-prefixed frames for every open connection (a handle's broadcast),
    /// walking the table in place rather than collecting the ids first. Returns how many
    /// connections took them.
    pub(crate) fn send_framed_to_all(&mut self, framed: &[u8]) -> usize {
        let mut count = 0;
        for index in 0..self.links.capacity() {
            if self.links.get(index).is_none_or(|l| l.state != State::Open) {
                continue;
            }
            let id = self.id_of(index);
            if self.send_framed(id, framed).is_ok() {
                count += 1;
            }
        }
        count
    }

    /// Queues one message already framed for this connection's transport.
    fn send_raw(&mut self, id: ChannelId, bytes: &[u8]) -> Result<usize, Error> {
        self.queue(id, 1, |out, _| {
            out.extend_from_slice(bytes);
            Ok(())
        })
    }

    /// Lets `write` append `msgs` messages to the output of `id` (open or still connecting),
    /// then applies the output cap to what it appended. Returns the bytes queued.
    fn queue(
        &mut self,
        id: ChannelId,
        msgs: u64,
        write: impl FnOnce(&mut Vec<u8>, &mut Transport) -> Result<(), Error>,
    ) -> Result<usize, Error> {
        let link = self
            .link_mut(id)
            .filter(|l| l.is_live())
            .ok_or_else(|| Error::Closed)?;
        compact(link);
        let before = link.out.len();
        write(&mut link.out, &mut link.transport)?;
        let n = link.out.len() - before;
        self.admit(id, before, n, msgs)
    }

    /// Applies the output cap to what was just appended at `before..` (`msgs` messages), and
    /// schedules a write.
    fn admit(&mut self, id: ChannelId, before: usize, n: usize, msgs: u64) -> Result<usize, Error> {
        let (max, policy) = (self.cfg.max_queued_output, self.cfg.slow_reader);
        let link = &mut self.links[id.index()];
        let queued = link.queued();
        // One message is always accepted into an empty queue, so the cap cannot make a
        // message of up to max_frame_len unsendable.
        if queued > max && before > link.out_pos {
            link.out.truncate(before);
            let err = Error::OutputFull { queued, max };
            if policy == SlowReaderPolicy::Disconnect {
                log::warn!(
                    "repod: closing {:?} ({id:?}): {err}",
                    link.addr.map(|a| a.to_string()).unwrap_or_default()
                );
                self.close(
                    id,
                    DisconnectReason::Error(Error::OutputFull { queued, max }),
                );
            }
            return Err(err);
        }
        link.msgs_out += msgs;
        self.counters.msgs_out += msgs;
        if !link.dirty && link.state != State::Connecting {
            link.dirty = true;
            self.dirty.push(id.index());
        }
        Ok(n)
    }

    /// Writes `id`'s queued output now instead of at the end of the turn.
    pub(crate) fn flush_now(&mut self, id: ChannelId) {
        if let Some(link) = self.link_mut(id) {
            if link.state == State::Open && link.queued() > 0 {
                self.flush(id.index());
            }
        }
    }

    /// Sends one message to every open connection that `to` accepts, encoding it once.
    /// Returns how many connections it was queued for.
    pub(crate) fn broadcast<E: Encode + ?Sized>(
        &mut self,
        msg: &E,
        mut to: impl FnMut(ChannelId) -> bool,
    ) -> Result<usize, Error> {
        let mut framed = std::mem::take(&mut self.shared_frame);
        let mut ws_framed = std::mem::take(&mut self.shared_ws_frame);
        framed.clear();
        ws_framed.clear();
        let r = frame::encode_frame_with(&mut framed, self.cfg.max_frame_len, |b| msg.encode(b));
        let mut count = 0;
        if r.is_ok() {
            for index in 0..self.links.capacity() {
                let Some(link) = self.links.get(index) else {
                    continue;
                };
                if link.state != State::Open {
                    continue;
                }
                let id = self.id_of(index);
                if !to(id) {
                    continue;
                }
                // Encoded once; framed at most once more, for every WebSocket player at once.
                let sent = match link.transport {
                    Transport::Tcp => self.send_raw(id, &framed),
                    Transport::WsServer => {
                        if ws_framed.is_empty() {
                            let payload = &framed[frame::HEADER_LEN..];
                            wscodec::encode_frame(
                                &mut ws_framed,
                                Opcode::Binary,
                                true,
                                payload,
                                None,
                            );
                        }
                        self.send_raw(id, &ws_framed)
                    }
                    Transport::WsClient(_) => self.send_framed(id, &framed),
                };
                if sent.is_ok() {
                    count += 1;
                }
            }
        }
        self.shared_frame = framed;
        self.shared_ws_frame = ws_framed;
        r.map(|_| count)
    }

    /// Closes `id` for the application now; its queued output is still written. The driver's
    /// `closed` runs once, after the current callback returns.
    pub(crate) fn close(&mut self, id: ChannelId, reason: DisconnectReason) {
        let deadline = self.now + self.cfg.linger;
        let link = match self.links.get_mut(id.index()) {
            Some(l) if l.gen == id.gen && l.is_live() => l,
            _ => return,
        };
        let was_open = link.state == State::Open;
        link.state = State::Flushing;
        link.close_deadline = Some(deadline);
        link.codec = Codec::default();
        if !was_open {
            // Nothing can be written on a socket that never connected or upgraded.
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
        if let Error::Handshake(e) = &err {
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

    /// The upgrade time limit of listener `slot`.
    fn handshake_timeout(&self, slot: usize) -> Duration {
        self.listeners
            .get(slot)
            .and_then(Option::as_ref)
            .and_then(|l| l.ws.as_ref())
            .map_or(Duration::from_secs(10), |o| o.handshake_timeout)
    }

    /// Runs one turn: waits for readiness at most `timeout` (`None`: until something happens or
    /// a timer is due), then does all the I/O and callbacks that are ready.
    pub(crate) fn turn(
        &mut self,
        timeout: Option<Duration>,
        driver: &mut impl Driver,
    ) -> io::Result<()> {
        let busy = !self.backlog.is_empty()
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
            && !(link.state == State::Open && link.out.is_empty() && !link.fresh)
        {
            self.flush(index);
        }
        if flags & (READABLE | HANGUP) != 0 {
            self.read(index, driver, flags & HANGUP != 0);
        }
    }

    fn finish_connect(&mut self, index: usize, driver: &mut impl Driver) {
        let id = self.id_of(index);
        let link = &mut self.links[index];
        let result = match link.stream.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => link.stream.peer_addr(),
        };
        match result {
            Ok(addr) => {
                link.addr = Some(addr);
                link.state = State::Open;
                link.last_rx = self.now;
                if self.cfg.nodelay {
                    let _ = link.stream.set_nodelay(true);
                }
                if let Codec::Upgrade(up) = &mut link.codec {
                    // The request goes first; messages sent meanwhile wait for the answer.
                    let request = std::mem::take(&mut up.request);
                    link.out_hold = request.len();
                    link.out.splice(0..0, request);
                    link.state = State::Upgrading;
                }
                if link.queued() > 0 && !link.dirty {
                    link.dirty = true;
                    self.dirty.push(index);
                }
                if link.state == State::Open {
                    driver.connected(self, id);
                }
            }
            // A spurious wakeup: still connecting.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
            Err(e) => self.close(id, DisconnectReason::Error(Error::Io(e))),
        }
    }

    fn accept_all(&mut self, driver: &mut impl Driver) {
        self.accept_pending = false;
        if self.accept_paused_until.is_some() {
            return;
        }
        let mut budget = ACCEPT_BUDGET;
        for slot in 0..self.listeners.len() {
            loop {
                if budget == 0 {
                    self.accept_pending = true;
                    return;
                }
                let Some(listener) = self.listeners[slot].as_ref() else {
                    break;
                };
                let (is_ws, proxy) = (listener.ws.is_some(), listener.proxy);
                match listener.socket.accept() {
                    Ok((stream, addr)) => {
                        budget -= 1;
                        self.accept_one(stream, addr, slot, is_ws, proxy, driver);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if is_resource_exhausted(&e) => {
                        // Out of descriptors or memory: the pending connection stays in the
                        // backlog. Retrying at once would spin; retry after a pause instead.
                        log::error!(
                            "repod: accept failed ({e}); pausing accepts for {ACCEPT_BACKOFF:?}"
                        );
                        self.accept_paused_until = Some(self.now + ACCEPT_BACKOFF);
                        return;
                    }
                    // The peer gave up before we accepted (ECONNABORTED and the like).
                    Err(e) => log::debug!("repod: accept: {e}"),
                }
            }
        }
    }

    fn accept_one(
        &mut self,
        stream: TcpStream,
        addr: SocketAddr,
        slot: usize,
        is_ws: bool,
        proxy: Option<ProxyOptions>,
        driver: &mut impl Driver,
    ) {
        let count = self.live + self.accepting;
        if self.cfg.max_connections.is_some_and(|max| count >= max) {
            log::warn!("repod: refusing {addr}: connection limit reached");
            return;
        }
        if self.cfg.nodelay {
            let _ = stream.set_nodelay(true);
        }
        if is_ws || proxy.is_some() {
            // Not a channel yet: a PROXY header, a WebSocket upgrade or both come first.
            let transport = if is_ws {
                Transport::WsServer
            } else {
                Transport::Tcp
            };
            let (codec, timeout) = match proxy {
                Some(p) => (Codec::Proxy(Vec::new()), p.timeout),
                None => (
                    Codec::Upgrade(Box::new(Upgrade::server(slot))),
                    self.handshake_timeout(slot),
                ),
            };
            match self.insert(stream, Some(addr), State::Accepting, transport, codec) {
                Ok(id) => {
                    log::debug!("repod: accepted {addr} as {id:?}, awaiting its preamble");
                    let link = &mut self.links[id.index()];
                    link.listener = slot;
                    let deadline = self.now + timeout;
                    link.close_deadline = Some(deadline);
                    self.linger_check_at =
                        Some(self.linger_check_at.map_or(deadline, |t| t.min(deadline)));
                }
                Err(e) => log::error!("repod: cannot register {addr}: {e}"),
            }
            return;
        }
        let codec = Codec::Frames(FrameDecoder::new(self.cfg.max_frame_len));
        match self.insert(stream, Some(addr), State::Open, Transport::Tcp, codec) {
            Ok(id) => {
                log::debug!("repod: accepted {addr} as {id:?}");
                self.counters.accepted += 1;
                driver.accepted(self, id);
                self.deliver_closed(driver);
            }
            Err(e) => log::error!("repod: cannot register {addr}: {e}"),
        }
    }

    fn read(&mut self, index: usize, driver: &mut impl Driver, hangup: bool) {
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut budget = self.cfg.read_budget;
        while let Some(link) = self.links.get_mut(index) {
            let id = ChannelId {
                index: index as u32,
                gen: link.gen,
            };
            let state = link.state;
            if state == State::Flushing || state == State::Connecting {
                break; // reading resumes in Draining, after our output is out
            }
            match link.stream.read(&mut scratch) {
                Ok(0) => {
                    // No channel exists for a connection that never upgraded: just drop it.
                    if matches!(state, State::Draining | State::Accepting) {
                        self.remove(index);
                    } else {
                        log::debug!("repod: {id:?} closed by peer");
                        self.close(id, DisconnectReason::PeerClosed);
                    }
                    break;
                }
                Ok(n) => {
                    link.bytes_in += n as u64;
                    self.counters.bytes_in += n as u64;
                    if state == State::Draining {
                        // Discarded input still costs reads: charge the budget so a peer that
                        // streams after being closed cannot monopolise the reactor.
                        budget = budget.saturating_sub(n);
                        if budget == 0 {
                            self.backlog.push(index);
                            break;
                        }
                        continue;
                    }
                    link.last_rx = self.now;
                    if !self.input(index, id, &mut scratch[..n], driver) {
                        break;
                    }
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        self.backlog.push(index);
                        break;
                    }
                    // A short read emptied the socket: skip the read that would only say
                    // WouldBlock. Linux's epoll reports new data with a new edge regardless;
                    // but a FIN that came with this data has had its edge, so read on to it.
                    if cfg!(target_os = "linux") && n < scratch.len() && !hangup {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if matches!(state, State::Draining | State::Accepting) {
                        self.remove(index);
                    } else {
                        log::debug!("repod: {id:?} read error: {e}");
                        self.close(id, DisconnectReason::Error(Error::Io(e)));
                    }
                    break;
                }
            }
        }
        self.scratch = scratch;
        // Answer this connection now rather than after every other ready connection was read:
        // all the replies to what this read brought still leave in one write, and the peer gets
        // them a whole turn earlier. Output for other connections waits for the end of the turn.
        if let Some(link) = self.links.get(index) {
            if link.state == State::Open && link.queued() > 0 {
                self.flush(index);
            }
        }
    }

    /// Hands bytes read from link `index` to its codec, and what they complete to the driver.
    /// Returns whether the link still reads input for the application.
    fn input(
        &mut self,
        index: usize,
        id: ChannelId,
        bytes: &mut [u8],
        driver: &mut impl Driver,
    ) -> bool {
        let mut codec = std::mem::take(&mut self.links[index].codec);
        // Frames are counted once per read, not with a lookup of the link per frame.
        let mut frames = 0u64;
        let result = match &mut codec {
            Codec::Frames(decoder) => decoder.decode(bytes, |payload| {
                frames += 1;
                self.deliver(id, payload, driver);
                if self.is_open(id) {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                }
            }),
            Codec::Ws(decoder) => self.ws_input(id, decoder, bytes, &mut frames, driver),
            Codec::Upgrade(_) => {
                let Codec::Upgrade(up) = codec else {
                    unreachable!("matched above")
                };
                return self.upgrade_input(index, id, up, bytes, driver);
            }
            Codec::Proxy(_) => {
                let Codec::Proxy(head) = codec else {
                    unreachable!("matched above")
                };
                return self.proxy_input(index, id, head, bytes, driver);
            }
        };
        self.counters.msgs_in += frames;
        let link = self.links.get_mut(index).filter(|l| l.gen == id.gen);
        if let Some(link) = link {
            link.msgs_in += frames;
            if link.state == State::Open {
                link.codec = codec;
            } else {
                return false;
            }
        } else {
            return false;
        }
        if let Err(e) = result {
            log::warn!("repod: closing {id:?}: {e}");
            self.close(id, DisconnectReason::Error(e));
            return false;
        }
        true
    }

    /// One received frame: a heartbeat is answered or measured here, anything else goes to the
    /// driver.
    fn deliver(&mut self, id: ChannelId, payload: &[u8], driver: &mut impl Driver) {
        match heartbeat::classify(payload) {
            None => driver.frame(self, id, payload),
            Some(Beat::Ping(stamp)) => {
                let _ = match stamp {
                    Some(t) => self.send(id, &msg! { "action": heartbeat::PONG, "t": t }),
                    None => self.send(id, &msg! { "action": heartbeat::PONG }),
                };
            }
            Some(Beat::Pong(stamp)) => {
                // Only our own stamps make sense; anything else (from the future, or garbage)
                // is not a measurement.
                let sent = stamp.and_then(|t| self.epoch.checked_add(Duration::from_micros(t)));
                let rtt = sent.and_then(|s| self.now.checked_duration_since(s));
                if let (Some(rtt), Some(link)) = (rtt, self.link_mut(id)) {
                    link.rtt = Some(rtt);
                }
            }
        }
    }

    fn ws_input(
        &mut self,
        id: ChannelId,
        decoder: &mut WsDecoder,
        bytes: &mut [u8],
        frames: &mut u64,
        driver: &mut impl Driver,
    ) -> Result<(), Error> {
        let mut refused = None;
        let result = decoder.decode(bytes, |event| match event {
            WsEvent::Binary(payload) => {
                *frames += 1;
                self.deliver(id, payload, driver);
                if self.is_open(id) {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                }
            }
            WsEvent::Text(_) => {
                refused = Some(WsError::TextMessage);
                ControlFlow::Break(())
            }
            WsEvent::Ping(payload) => {
                self.send_control(id, Opcode::Pong, payload);
                ControlFlow::Continue(())
            }
            WsEvent::Pong(_) => ControlFlow::Continue(()),
            WsEvent::Close { code, reason } => {
                log::debug!("repod: {id:?} sent close {code:?} {reason:?}");
                // Answer with the same status (none for none), then close for the application.
                let status = code.map(u16::to_be_bytes);
                let payload = status.as_ref().map_or(&[][..], |s| &s[..]);
                self.send_control(id, Opcode::Close, payload);
                if let Some(link) = self.link_mut(id) {
                    link.close_sent = true;
                }
                self.close(id, DisconnectReason::PeerClosed);
                ControlFlow::Break(())
            }
        });
        match refused {
            Some(e) => Err(Error::WebSocket(e)),
            None => result.map_err(Error::WebSocket),
        }
    }

    /// Queues a control frame (a pong, a close answer) under the usual output cap.
    fn send_control(&mut self, id: ChannelId, opcode: Opcode, payload: &[u8]) {
        // A control frame is not a message.
        let _ = self.queue(id, 0, |out, transport| {
            wscodec::encode_frame(out, opcode, true, payload, transport.mask());
            Ok(())
        });
    }

    /// Bytes of a PROXY protocol header. Once it is complete the connection is from the client
    /// it names, and goes on to its WebSocket upgrade or becomes a channel.
    fn proxy_input(
        &mut self,
        index: usize,
        id: ChannelId,
        mut head: Vec<u8>,
        bytes: &mut [u8],
        driver: &mut impl Driver,
    ) -> bool {
        let slot = self.links[index].listener;
        let max_len = self.listeners[slot]
            .as_ref()
            .and_then(|l| l.proxy)
            .map_or(crate::proxy::DEFAULT_MAX_HEADER_LEN, |p| p.max_len);
        // Most headers arrive whole in one read: parse them where they lie.
        let parsed = if head.is_empty() {
            crate::proxy::parse(bytes, max_len)
        } else {
            head.extend_from_slice(bytes);
            crate::proxy::parse(&head, max_len)
        };
        let header = match parsed {
            Ok(Some(h)) => h,
            Ok(None) => {
                if head.is_empty() {
                    head.extend_from_slice(bytes);
                }
                self.links[index].codec = Codec::Proxy(head);
                return true;
            }
            Err(e) => {
                self.refuse(index, Error::Proxy(e));
                return false;
            }
        };
        let link = &mut self.links[index];
        if let Some(source) = header.source {
            log::debug!(
                "repod: {id:?} is {source} (PROXY header from {:?})",
                link.addr
            );
            link.addr = Some(source);
        }
        let rest = if head.is_empty() {
            &mut bytes[header.len..]
        } else {
            &mut head[header.len..]
        };
        if link.is_ws() {
            let deadline = self.now + self.handshake_timeout(slot);
            let link = &mut self.links[index];
            link.close_deadline = Some(deadline);
            self.linger_check_at = Some(self.linger_check_at.map_or(deadline, |t| t.min(deadline)));
            let up = Box::new(Upgrade::server(slot));
            return self.upgrade_input(index, id, up, rest, driver);
        }
        link.codec = Codec::Frames(FrameDecoder::new(self.cfg.max_frame_len));
        link.state = State::Open;
        link.close_deadline = None;
        link.last_rx = self.now;
        self.accepting -= 1;
        self.live += 1;
        self.counters.accepted += 1;
        driver.accepted(self, id);
        rest.is_empty() || !self.is_open(id) || self.input(index, id, rest, driver)
    }

    /// Bytes of a WebSocket upgrade: the request on a server, the answer on a client.
    fn upgrade_input(
        &mut self,
        index: usize,
        id: ChannelId,
        mut up: Box<Upgrade>,
        bytes: &[u8],
        driver: &mut impl Driver,
    ) -> bool {
        up.head.extend_from_slice(bytes);
        let max_frame_len = self.cfg.max_frame_len;
        if self.links[index].state == State::Accepting {
            let opts = self.listeners.get(up.listener).and_then(|l| l.as_ref());
            let Some(opts) = opts.and_then(|l| l.ws.as_ref()) else {
                // The listener was closed (the server is stopping): no new players.
                self.refuse(
                    index,
                    Error::Handshake(handshake::HandshakeError::Unavailable),
                );
                return false;
            };
            let complete = handshake::worth_parsing(&up.head, bytes.len());
            if !complete && up.head.len() <= opts.max_handshake_len {
                self.links[index].codec = Codec::Upgrade(up);
                return true;
            }
            let request = match handshake::parse_request(&up.head, opts) {
                Ok(Some(r)) => r,
                Ok(None) => {
                    self.links[index].codec = Codec::Upgrade(up);
                    return true;
                }
                Err(e) => {
                    self.refuse(index, Error::Handshake(e));
                    return false;
                }
            };
            let link = &mut self.links[index];
            handshake::write_accept(&mut link.out, &request.accept);
            link.codec = Codec::Ws(WsDecoder::new(Role::Server, max_frame_len));
            link.state = State::Open;
            link.close_deadline = None;
            link.last_rx = self.now;
            if !link.dirty {
                link.dirty = true;
                self.dirty.push(index);
            }
            self.accepting -= 1;
            self.live += 1;
            self.counters.accepted += 1;
            log::debug!("repod: {id:?} upgraded to WebSocket");
            driver.accepted(self, id);
            // Frames the client sent right behind its request.
            let rest = &mut up.head[request.len..];
            rest.is_empty() || !self.is_open(id) || self.input(index, id, rest, driver)
        } else {
            match handshake::parse_response(&up.head, &up.key, handshake_max()) {
                Ok(Some(len)) => {
                    let link = &mut self.links[index];
                    link.codec = Codec::Ws(WsDecoder::new(Role::Client, max_frame_len));
                    link.state = State::Open;
                    link.out_hold = usize::MAX;
                    if link.queued() > 0 && !link.dirty {
                        link.dirty = true;
                        self.dirty.push(index);
                    }
                    driver.connected(self, id);
                    // The server's first frames (its greeting) often share the answer's segment.
                    let rest = &mut up.head[len..];
                    rest.is_empty() || !self.is_open(id) || self.input(index, id, rest, driver)
                }
                Ok(None) => {
                    self.links[index].codec = Codec::Upgrade(up);
                    true
                }
                Err(e) => {
                    log::warn!("repod: {id:?}: WebSocket upgrade failed: {e}");
                    self.close(id, DisconnectReason::Error(Error::Handshake(e)));
                    false
                }
            }
        }
    }

    fn run_backlog(&mut self, driver: &mut impl Driver) {
        if self.backlog.is_empty() {
            return;
        }
        let backlog = std::mem::take(&mut self.backlog);
        for &index in &backlog {
            self.read(index, driver, true);
            self.deliver_closed(driver);
        }
        // Keep the allocation; `read` may have queued new work meanwhile.
        let mut backlog = backlog;
        backlog.clear();
        backlog.append(&mut self.backlog);
        self.backlog = backlog;
        if self.accept_pending {
            self.accept_all(driver);
        }
    }

    fn run_timers(&mut self, driver: &mut impl Driver) {
        let now = self.now;
        if self.accept_pending {
            self.accept_all(driver);
        }
        if self.accept_paused_until.is_some_and(|t| now >= t) {
            self.accept_paused_until = None;
            self.accept_all(driver);
        }
        driver.timers(self, now);
        if let (Some(at), Some(idle)) = (self.idle_check_at, self.cfg.idle_timeout) {
            if now >= at {
                let mut expired = Vec::new();
                for (i, l) in &self.links {
                    if l.state == State::Open && now.duration_since(l.last_rx) >= idle {
                        expired.push(i);
                    }
                }
                for i in expired {
                    let id = self.id_of(i);
                    log::info!("repod: closing {id:?}: idle for {idle:?}");
                    self.close(id, DisconnectReason::Error(Error::IdleTimeout(idle)));
                }
                self.idle_check_at = Some(now + idle / 4);
            }
        }
        if self.beat_at.is_some_and(|t| now >= t) {
            self.heartbeat_round(now);
        }
        if self.linger_check_at.is_some_and(|t| now >= t) {
            self.linger_check_at = None;
            let mut expired = Vec::new();
            let mut upgrades_late = Vec::new();
            for (i, l) in &self.links {
                match l.close_deadline {
                    Some(d) if l.state == State::Accepting && now >= d => upgrades_late.push(i),
                    Some(d) if !l.is_live() && now >= d => expired.push(i),
                    Some(d) if !l.is_live() => {
                        self.linger_check_at =
                            Some(self.linger_check_at.map_or(d, |t: Instant| t.min(d)));
                    }
                    _ => {}
                }
            }
            for i in expired {
                log::debug!("repod: dropping {:?}: linger time is up", self.id_of(i));
                self.remove(i);
            }
            for i in upgrades_late {
                let err = match self.links[i].codec {
                    Codec::Proxy(_) => Error::Proxy(ProxyError::Timeout),
                    _ => Error::Handshake(handshake::HandshakeError::Timeout),
                };
                self.refuse(i, err);
            }
        }
    }

    /// Closes the connections that stayed silent past the heartbeat timeout, and pings the
    /// others.
    fn heartbeat_round(&mut self, now: Instant) {
        let (Some(interval), Some(timeout)) =
            (self.cfg.heartbeat, self.cfg.get_heartbeat_timeout())
        else {
            self.beat_at = None;
            return;
        };
        self.beat_at = Some(now + interval);
        let mut links = std::mem::take(&mut self.beat_links);
        links.clear();
        links.extend(
            self.links
                .iter()
                .filter(|(_, l)| l.state == State::Open)
                .map(|(i, _)| i),
        );
        let stamp = now.saturating_duration_since(self.epoch).as_micros() as u64;
        for &i in &links {
            let id = self.id_of(i);
            let silent = now.saturating_duration_since(self.links[i].last_rx);
            if silent >= timeout {
                log::info!("repod: closing {id:?}: nothing received for {silent:?}");
                self.close(id, DisconnectReason::HeartbeatTimeout(silent));
            } else {
                let _ = self.send(id, &msg! { "action": heartbeat::PING, "t": stamp });
            }
        }
        self.beat_links = links;
    }

    fn deliver_closed(&mut self, driver: &mut impl Driver) {
        while let Some((id, reason)) = self.closed.pop_front() {
            driver.closed(self, id, reason);
        }
        while let Some((addr, error)) = self.refused.pop_front() {
            driver.refused(self, addr, error);
        }
    }

    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &index in &dirty {
            if let Some(link) = self.links.get_mut(index) {
                link.dirty = false;
                // Often written already, right after the read that caused it.
                if link.state == State::Open && link.out.is_empty() {
                    continue;
                }
                self.flush(index);
            }
        }
        dirty.clear();
        dirty.append(&mut self.dirty);
        self.dirty = dirty;
    }

    /// Writes as much queued output as the socket takes, in as few syscalls as it allows.
    fn flush(&mut self, index: usize) {
        let link = &mut self.links[index];
        if matches!(link.state, State::Connecting | State::Draining) {
            return;
        }
        let end = link.out.len().min(link.out_hold);
        while link.out_pos < end {
            match link.stream.write(&link.out[link.out_pos..end]) {
                Ok(0) => {
                    let e = io::Error::from(io::ErrorKind::WriteZero);
                    return self.write_failed(index, e);
                }
                Ok(n) => {
                    link.out_pos += n;
                    link.bytes_out += n as u64;
                    self.counters.bytes_out += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.write_failed(index, e),
            }
        }
        if link.out_pos < link.out.len() {
            return; // held back until the upgrade completes
        }
        link.out.clear();
        link.out_pos = 0;
        if link.out.capacity() > KEEP_OUTPUT || (link.fresh && link.state == State::Open) {
            link.out = Vec::new();
            link.fresh = false;
        }
        if link.state == State::Flushing {
            // Everything is out: send FIN, then read until the peer closes as well.
            let _ = link.stream.shutdown(Shutdown::Write);
            link.state = State::Draining;
            self.backlog.push(index);
        }
    }

    fn write_failed(&mut self, index: usize, e: io::Error) {
        let id = self.id_of(index);
        let link = &mut self.links[index];
        link.out = Vec::new();
        link.out_pos = 0;
        if link.is_live() {
            log::debug!("repod: {id:?} write error: {e}");
            self.close(id, DisconnectReason::Error(Error::Io(e)));
        } else {
            self.remove(index);
        }
    }
}

/// Drops already-written bytes from the front of a large output buffer.
fn compact(link: &mut Link) {
    if link.out_pos == link.out.len() {
        link.out.clear();
        link.out_pos = 0;
    } else if link.out_pos >= KEEP_OUTPUT && link.out_pos * 2 >= link.out.len() {
        link.out.drain(..link.out_pos);
        if link.out_hold != usize::MAX {
            link.out_hold -= link.out_pos;
        }
        link.out_pos = 0;
    }
}

/// The close status a WebSocket peer is sent when its connection ends for `reason`; `None`
/// when no frame can be written (the socket failed).
fn close_code(reason: &DisconnectReason) -> Option<u16> {
    Some(match reason {
        DisconnectReason::Closed | DisconnectReason::PeerClosed => 1000,
        DisconnectReason::ServerStopped | DisconnectReason::HeartbeatTimeout(_) => 1001,
        DisconnectReason::Error(e) => match e {
            Error::Io(_) => return None,
            Error::WebSocket(w) => w.close_code(),
            Error::FrameTooLarge { .. } => 1009,
            Error::OutputFull { .. } | Error::IdleTimeout(_) => 1008,
            _ => 1011,
        },
    })
}

/// Bound on a server's upgrade answer, read by a client.
fn handshake_max() -> usize {
    crate::ws::DEFAULT_MAX_HANDSHAKE_LEN
}

/// A listening socket with `SO_REUSEPORT` (and `SO_REUSEADDR`, as `TcpListener::bind` sets).
fn bind_reuse_port(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    socket.set_reuse_port(true)?;
    #[cfg(not(all(unix, not(any(target_os = "solaris", target_os = "illumos")))))]
    return Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "SO_REUSEPORT is not available on this platform",
    ));
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Keepalive and `TCP_USER_TIMEOUT`, as configured. A failure is logged, not fatal: the
/// connection works, only without the early detection of a dead peer.
fn set_socket_options(cfg: &Config, stream: &TcpStream) {
    let socket = socket2::SockRef::from(stream);
    if let Some(k) = cfg.keepalive {
        let params = socket2::TcpKeepalive::new()
            .with_time(k.idle)
            .with_interval(k.interval)
            .with_retries(k.count);
        if let Err(e) = socket.set_tcp_keepalive(&params) {
            log::warn!("repod: cannot set TCP keepalive: {e}");
        }
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(t) = cfg.user_timeout {
        if let Err(e) = socket.set_tcp_user_timeout(Some(t)) {
            log::warn!("repod: cannot set TCP_USER_TIMEOUT: {e}");
        }
    }
}

fn is_resource_exhausted(e: &io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}
