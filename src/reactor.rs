//! The reactor: the only code that touches sockets and mio.
//!
//! One [`mio::Poll`], a [`Slab`] of connection states, a [`mio::Waker`] for commands from other
//! threads. Everything above it (server, client) sees connections as [`ChannelId`]s and sees
//! input as whole frame payloads, through the [`Driver`] callbacks.
//!
//! Per turn ([`Reactor::turn`]):
//! 1. wait for readiness, no longer than the earliest timer;
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

use crate::config::{Config, SlowReaderPolicy};
use crate::encode::Encode;
use crate::frame::{self, FrameDecoder};
use crate::{DisconnectReason, Error};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
const SIGNALS: Token = Token(usize::MAX - 3);

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
    /// Another thread called [`Remote::wake`].
    fn woken(&mut self, _reactor: &mut Reactor) {}
    /// SIGINT or SIGTERM arrived (only after [`Reactor::watch_signals`]).
    fn signalled(&mut self, _reactor: &mut Reactor) {}
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
    Open,
    /// Closed for the application; writing what is queued.
    Flushing,
    /// Output written and FIN sent; discarding input until the peer closes.
    Draining,
}

#[derive(Debug)]
struct Link {
    stream: TcpStream,
    addr: Option<SocketAddr>,
    gen: u32,
    state: State,
    decoder: FrameDecoder,
    out: Vec<u8>,
    out_pos: usize,
    dirty: bool,
    last_rx: Instant,
    close_deadline: Option<Instant>,
}

impl Link {
    fn queued(&self) -> usize {
        self.out.len() - self.out_pos
    }

    fn is_live(&self) -> bool {
        matches!(self.state, State::Open | State::Connecting)
    }
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
    listener: Option<TcpListener>,
    accept_paused_until: Option<Instant>,
    accept_pending: bool,
    links: Slab<Link>,
    next_gen: u32,
    live: usize,
    lingering: usize,
    dirty: Vec<usize>,
    backlog: Vec<usize>,
    closed: VecDeque<(ChannelId, DisconnectReason)>,
    scratch: Vec<u8>,
    shared_frame: Vec<u8>,
    cfg: Config,
    remote: Remote,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    idle_check_at: Option<Instant>,
    linger_check_at: Option<Instant>,
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
        Ok(Reactor {
            poll,
            events: Events::with_capacity(1024),
            ready: Vec::with_capacity(1024),
            listener: None,
            accept_paused_until: None,
            accept_pending: false,
            links: Slab::new(),
            next_gen: 0,
            live: 0,
            lingering: 0,
            dirty: Vec::new(),
            backlog: Vec::new(),
            closed: VecDeque::new(),
            scratch: vec![0; READ_CHUNK],
            shared_frame: Vec::new(),
            cfg,
            remote: Remote { waker },
            signals: None,
            idle_check_at: None,
            linger_check_at: None,
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

    pub(crate) fn listen(&mut self, addr: SocketAddr) -> io::Result<SocketAddr> {
        let mut listener = TcpListener::bind(addr)?;
        self.poll
            .registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let local = listener.local_addr()?;
        self.listener = Some(listener);
        Ok(local)
    }

    /// Stops accepting and closes the listening socket.
    pub(crate) fn stop_listening(&mut self) {
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
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
        self.insert(stream, None, State::Connecting)
    }

    fn insert(
        &mut self,
        mut stream: TcpStream,
        addr: Option<SocketAddr>,
        state: State,
    ) -> io::Result<ChannelId> {
        let entry = self.links.vacant_entry();
        let index = entry.key();
        if index >= LISTENER.0 - 8 || index > u32::MAX as usize {
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
            decoder: FrameDecoder::new(self.cfg.max_frame_len),
            out: Vec::new(),
            out_pos: 0,
            dirty: false,
            last_rx: self.now,
            close_deadline: None,
        });
        self.live += 1;
        if self.idle_check_at.is_none() {
            if let Some(idle) = self.cfg.idle_timeout {
                self.idle_check_at = Some(self.now + idle / 4);
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

    /// Connections open for the application.
    pub(crate) fn live(&self) -> usize {
        self.live
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
        let link = self
            .link_mut(id)
            .filter(|l| l.is_live())
            .ok_or(Error::Closed)?;
        compact(link);
        let before = link.out.len();
        let n = frame::encode_frame_with(&mut link.out, max, |buf| msg.encode(buf))?;
        self.admit(id, before, n)
    }

    /// Queues bytes that are already framed (from another thread's handle).
    pub(crate) fn send_framed(&mut self, id: ChannelId, framed: &[u8]) -> Result<usize, Error> {
        let link = self
            .link_mut(id)
            .filter(|l| l.is_live())
            .ok_or(Error::Closed)?;
        compact(link);
        let before = link.out.len();
        link.out.extend_from_slice(framed);
        self.admit(id, before, framed.len())
    }

    /// Applies the output cap to what was just appended at `before..`, and schedules a write.
    fn admit(&mut self, id: ChannelId, before: usize, n: usize) -> Result<usize, Error> {
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
        framed.clear();
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
                if to(id) && self.send_framed(id, &framed).is_ok() {
                    count += 1;
                }
            }
        }
        self.shared_frame = framed;
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
        let was_connecting = link.state == State::Connecting;
        link.state = State::Flushing;
        link.close_deadline = Some(deadline);
        link.decoder = FrameDecoder::default();
        if was_connecting {
            // Nothing can be written on a socket that never connected.
            link.out = Vec::new();
            link.out_pos = 0;
        }
        self.live -= 1;
        self.lingering += 1;
        if self.linger_check_at.is_none() {
            self.linger_check_at = Some(deadline);
        }
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
            } else {
                self.lingering -= 1;
            }
        }
    }

    /// Runs one turn: waits for readiness at most `timeout` (`None`: until something happens or
    /// a timer is due), then does all the I/O and callbacks that are ready.
    pub(crate) fn turn(
        &mut self,
        timeout: Option<Duration>,
        driver: &mut impl Driver,
    ) -> io::Result<()> {
        let now = Instant::now();
        let busy = !self.backlog.is_empty() || self.accept_pending || !self.closed.is_empty();
        let mut timeout = if busy { Some(Duration::ZERO) } else { timeout };
        let deadlines = [
            driver.next_deadline(),
            self.accept_paused_until,
            self.idle_check_at,
            self.linger_check_at,
        ];
        for d in deadlines.into_iter().flatten() {
            let until = d.saturating_duration_since(now);
            timeout = Some(timeout.map_or(until, |t| t.min(until)));
        }
        match self.poll.poll(&mut self.events, timeout) {
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
                LISTENER => self.accept_all(driver),
                WAKER => driver.woken(self),
                SIGNALS => {
                    if let Some(s) = self.signals.as_mut() {
                        for _ in s.pending() {}
                    }
                    driver.signalled(self);
                }
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
        if flags & WRITABLE != 0 {
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
                if link.queued() > 0 && !link.dirty {
                    link.dirty = true;
                    self.dirty.push(index);
                }
                driver.connected(self, id);
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
        for _ in 0..ACCEPT_BUDGET {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, addr)) => {
                    if self.cfg.max_connections.is_some_and(|max| self.live >= max) {
                        log::warn!("repod: refusing {addr}: connection limit reached");
                        drop(stream);
                        continue;
                    }
                    if self.cfg.nodelay {
                        let _ = stream.set_nodelay(true);
                    }
                    match self.insert(stream, Some(addr), State::Open) {
                        Ok(id) => {
                            log::debug!("repod: accepted {addr} as {id:?}");
                            driver.accepted(self, id);
                            self.deliver_closed(driver);
                        }
                        Err(e) => log::error!("repod: cannot register {addr}: {e}"),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
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
        self.accept_pending = true;
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
                    if state == State::Draining {
                        self.remove(index);
                    } else {
                        log::debug!("repod: {id:?} closed by peer");
                        self.close(id, DisconnectReason::PeerClosed);
                    }
                    break;
                }
                Ok(n) => {
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
                    let mut decoder = std::mem::take(&mut link.decoder);
                    let result = decoder.decode(&scratch[..n], |payload| {
                        driver.frame(self, id, payload);
                        if self.is_open(id) {
                            ControlFlow::Continue(())
                        } else {
                            ControlFlow::Break(())
                        }
                    });
                    match self.link_mut(id) {
                        Some(link) if link.state == State::Open => link.decoder = decoder,
                        _ => break,
                    }
                    if let Err(e) = result {
                        log::warn!("repod: closing {id:?}: {e}");
                        self.close(id, DisconnectReason::Error(e));
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
                    if state == State::Draining {
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
        if self.linger_check_at.is_some_and(|t| now >= t) {
            self.linger_check_at = None;
            let mut expired = Vec::new();
            for (i, l) in &self.links {
                match l.close_deadline {
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
        }
    }

    fn deliver_closed(&mut self, driver: &mut impl Driver) {
        while let Some((id, reason)) = self.closed.pop_front() {
            driver.closed(self, id, reason);
        }
    }

    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &index in &dirty {
            if let Some(link) = self.links.get_mut(index) {
                link.dirty = false;
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
        while link.out_pos < link.out.len() {
            match link.stream.write(&link.out[link.out_pos..]) {
                Ok(0) => {
                    let e = io::Error::from(io::ErrorKind::WriteZero);
                    return self.write_failed(index, e);
                }
                Ok(n) => link.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.write_failed(index, e),
            }
        }
        link.out.clear();
        link.out_pos = 0;
        if link.out.capacity() > KEEP_OUTPUT {
            link.out = Vec::new();
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
        link.out_pos = 0;
    }
}

fn is_resource_exhausted(e: &io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}
