//! The client: a low-level [`Connection`], and the [`Client`] that dispatches to a
//! [`Listener`] (Python's `ConnectionListener`).
//!
//! Two modes, chosen when connecting:
//! - [`Mode::Stepped`]: no thread at all. The network advances exactly when the game calls
//!   [`Client::pump`], which reads the socket with a zero timeout, dispatches what arrived, and
//!   writes what the handlers sent, in one syscall.
//! - [`Mode::Background`]: the reactor runs on its own thread and only queues; `pump` hands the
//!   queued messages to the handlers on the game's thread (Python repod's model).
//!
//! Connection events arrive as messages, routed like any other, so Python code ports line for
//! line:
//!
//! | action          | when                                                                  |
//! |-----------------|-----------------------------------------------------------------------|
//! | `socketConnect` | the connection is established: TCP connected (and, over WebSocket, the upgrade accepted); generated locally |
//! | `connected`     | the server's greeting arrived: once per connection                    |
//! | `error`         | connecting failed, or the server sent a frame that had to be dropped; `"error"` holds the text |
//! | `disconnected`  | the connection ended after it was established; `"reason"` says why    |
//! | `reconnecting`  | sessions ([`crate::session`]): the link dropped; attempt `"attempt"` (1, 2...) follows after a backoff; `"reason"` says why |
//! | `resumed`       | the session is back on a new link: nothing sent either way was lost or doubled |
//! | `resume_failed` | the session could not be resumed (`"reason"`): what it kept is lost; a `connected` for the new session follows |
//!
//! When the server offers a session ([`Config::resume_window`](crate::Config::resume_window)),
//! the client takes it and, after a dropped link (a reset, an error, a heartbeat timeout),
//! reconnects by itself with the [`Reconnect`] policy of
//! [`Config::reconnect`](crate::Config::reconnect), in both modes; `send` keeps working
//! meanwhile (the messages wait, within [`Config::resume_buffer`](crate::Config::resume_buffer)),
//! and [`Client::is_connected`] stays true. The end of the stream from the server is a close,
//! not a drop: `disconnected`.
//!
//! Python's client generates `connected` itself on TCP connect *and* receives the server's
//! greeting, so its handlers see `connected` twice. Ours generates only `socketConnect` and lets
//! the greeting through: one `connected` per connection, meaning the server has set up the
//! channel. `send` works before that: messages sent while connecting are queued and delivered
//! once the connection is up.
//!
//! The address is a TCP address (`"host:port"`) or a WebSocket URL (`"ws://host:port/path"`,
//! for a server's [`listen_ws`](crate::Server::listen_ws) port); see [`ServerAddr`]. Events,
//! sends and limits are the same on both.
//!
//! ```no_run
//! use repod::{msg, Client, ClientRoutes, Listener};
//!
//! struct Game {
//!     running: bool,
//! }
//!
//! impl Listener for Game {
//!     fn routes(r: &mut ClientRoutes<Self>) {
//!         r.on("connected", |_me, net, _m| {
//!             net.send(&msg! { "action": "join", "name": "Guest" });
//!             Ok(())
//!         });
//!         r.on("error", |me, _net, m| {
//!             eprintln!("error: {}", m.str("error")?);
//!             me.running = false;
//!             Ok(())
//!         });
//!         r.on("disconnected", |me, _net, _m| {
//!             me.running = false;
//!             Ok(())
//!         });
//!     }
//! }
//!
//! let mut client = Client::connect("127.0.0.1:5071", Game { running: true })?;
//! while client.listener().running {
//!     client.pump(); // advance the socket, dispatch everything that arrived
//!     // update(); render();
//!     std::thread::sleep(std::time::Duration::from_millis(10));
//! }
//! # Ok::<(), std::io::Error>(())
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use crate::config::{Config, Reconnect};
use crate::dispatch::{guard, ActionTable};
use crate::encode::Encode;
use crate::frame::{self, HEADER_LEN};
use crate::reactor::{Driver, Reactor, Remote};
use crate::session;
use crate::stats::ConnStats;
use crate::ws::WsUrl;
use crate::{msg, ChannelId, DisconnectReason, Error, HandlerResult, Message, OwnedMessage};

/// Where the client's reactor runs. See the [module documentation](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// No thread: `pump` advances the socket.
    #[default]
    Stepped,
    /// A background thread runs the socket; `pump` dispatches what it queued.
    Background,
}

const CONNECTING: u8 = 0;
const OPEN: u8 = 1;
const CLOSED: u8 = 2;

/// What a client handler can do with its connection.
pub struct ClientCtx<'a> {
    link: LinkRef<'a>,
}

enum LinkRef<'a> {
    Stepped(&'a mut Reactor, Option<ChannelId>),
    Background(&'a Shared),
}

impl fmt::Debug for ClientCtx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCtx")
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl ClientCtx<'_> {
    /// Queues `msg` for the server. Returns the bytes queued (length prefix included), or 0
    /// once the connection is closed (Python: `send`). Handlers' sends leave together, in one
    /// write, when the pump finishes.
    pub fn send<E: Encode + ?Sized>(&mut self, msg: &E) -> usize {
        self.try_send(msg).unwrap_or(0)
    }

    /// As [`send`](Self::send), with the reason when nothing was queued.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`], [`Error::FrameTooLarge`] or [`Error::OutputFull`].
    pub fn try_send<E: Encode + ?Sized>(&mut self, msg: &E) -> Result<usize, Error> {
        match &mut self.link {
            LinkRef::Stepped(reactor, Some(id)) => reactor.send(*id, msg),
            LinkRef::Stepped(_, None) => Err(Error::Closed),
            LinkRef::Background(shared) => shared.send(msg),
        }
    }

    /// Whether the connection is open (or still connecting).
    pub fn is_connected(&self) -> bool {
        match &self.link {
            LinkRef::Stepped(reactor, Some(id)) => reactor.is_open(*id),
            LinkRef::Stepped(_, None) => false,
            LinkRef::Background(shared) => shared.status() != CLOSED,
        }
    }

    /// What the connection carried so far, and its heartbeat RTT; see [`crate::stats`].
    /// `None` before a connection attempt exists. In [`Mode::Background`], as of the network
    /// thread's last turn.
    pub fn stats(&self) -> Option<ConnStats> {
        match &self.link {
            LinkRef::Stepped(reactor, id) => id.and_then(|id| reactor.conn_stats(id)),
            LinkRef::Background(shared) => shared.stats.read(),
        }
    }

    /// Closes the connection after what is queued is delivered. A `disconnected` event
    /// follows.
    pub fn close(&mut self) {
        match &mut self.link {
            LinkRef::Stepped(reactor, Some(id)) => reactor.close(*id, DisconnectReason::Closed),
            LinkRef::Stepped(_, None) => {}
            LinkRef::Background(shared) => shared.request_close(),
        }
    }
}

/// Builds the payload of a locally generated event.
fn event(buf: &mut Vec<u8>, action: &str, key: &str, text: Option<&str>) {
    buf.clear();
    match text {
        Some(t) => msg! { "action": action, key: t }.encode(buf),
        None => msg! { "action": action }.encode(buf),
    }
}

/// Tracks what the application has been told, so each event is generated once.
#[derive(Debug, Default)]
struct Status {
    established: bool,
    ended: bool,
}

impl Status {
    /// The payload of the event for the end of the connection.
    fn end_event(&mut self, buf: &mut Vec<u8>, reason: &DisconnectReason) {
        self.ended = true;
        if self.established {
            event(buf, "disconnected", "reason", Some(&reason.to_string()));
        } else {
            let text = match reason {
                DisconnectReason::Error(Error::Io(e)) => e.to_string(),
                other => other.to_string(),
            };
            event(buf, "error", "error", Some(&text));
        }
    }
}

/// A client's session: which link carries it, and reconnecting after a drop (see
/// [`crate::session`]). Shared by both modes' drivers; the events it produces for the
/// application are length-prefixed frames in `events`, which each driver hands over its way.
#[derive(Debug)]
struct Resume {
    /// The link the application talks to.
    id: Option<ChannelId>,
    /// Where to reconnect.
    endpoint: Option<Endpoint>,
    policy: Option<Reconnect>,
    /// The first frame on `id` is the greeting, which says whether a session is offered.
    greeted: bool,
    /// A reconnection attempt in progress: its link.
    attempt_link: Option<ChannelId>,
    /// When that attempt must have its answer (`Config::connect_timeout` after it began).
    attempt_deadline: Option<Instant>,
    attempt: u32,
    next_at: Option<Instant>,
    away_since: Option<Instant>,
    /// Why the link dropped, for the events.
    why: String,
    /// The new link's own greeting, held until the server answered the resume.
    held_greeting: Vec<u8>,
    /// An old link whose session could not be resumed: its end is no `disconnected`.
    abandoned: Option<ChannelId>,
    events: Vec<u8>,
}

impl Resume {
    fn new(endpoint: Option<Endpoint>, policy: Option<Reconnect>) -> Resume {
        Resume {
            id: None,
            endpoint,
            policy,
            greeted: false,
            attempt_link: None,
            attempt_deadline: None,
            attempt: 0,
            next_at: None,
            away_since: None,
            why: String::new(),
            held_greeting: Vec::new(),
            abandoned: None,
            events: Vec::new(),
        }
    }

    fn push_event<E: Encode + ?Sized>(&mut self, msg: &E) {
        let _ = frame::encode_frame_with(&mut self.events, usize::MAX, |b| msg.encode(b));
    }

    /// The application's link is up.
    fn connected(&mut self, reactor: &mut Reactor, id: ChannelId) {
        if self.policy.is_some() {
            // Kept from now on: messages sent before the greeting belong to its session.
            reactor.keep_output(id);
        }
    }

    /// A frame for the application's link: the first is the greeting, which may offer a
    /// session. Returns whether it goes on to the application.
    fn frame(&mut self, reactor: &mut Reactor, id: ChannelId, payload: &[u8]) -> bool {
        if Some(id) == self.attempt_link {
            self.answer(reactor, id, payload);
            return false;
        }
        if !self.greeted && Some(id) == self.id {
            self.greeted = true;
            if self.policy.is_some() {
                let token = Message::parse(payload)
                    .ok()
                    .filter(|m| m.action() == "connected")
                    .and_then(|m| m.str("session").ok().map(str::to_owned));
                reactor.greeted(id, token.as_deref());
            }
        }
        true
    }

    /// A frame on a reconnection's link: its greeting, then the answer to the resume.
    fn answer(&mut self, reactor: &mut Reactor, new: ChannelId, payload: &[u8]) {
        let Ok(m) = Message::parse(payload) else {
            return;
        };
        let Some(old) = self.id else {
            return;
        };
        match m.action() {
            "connected" => {
                self.held_greeting.clear();
                self.held_greeting.extend_from_slice(payload);
            }
            session::RESUMED => {
                let received = m.u64("received").unwrap_or(u64::MAX);
                let token = m.str("session").unwrap_or("");
                if reactor.adopt(new, old, received, token) {
                    log::info!(
                        "repod: session resumed on {new:?} after {} attempts",
                        self.attempt
                    );
                    self.id = Some(new);
                    self.attempt_link = None;
                    self.attempt = 0;
                    self.away_since = None;
                    self.push_event(&msg! { "action": session::RESUMED });
                } else {
                    self.failed(
                        reactor,
                        new,
                        "the server's count does not match what was sent",
                    );
                }
            }
            session::RESUME_FAILED => {
                let reason = m.str("reason").unwrap_or("").to_owned();
                self.failed(reactor, new, &reason);
            }
            other => log::debug!("repod: ignored {other:?} before the resume's answer"),
        }
    }

    /// The session could not be resumed: what it kept is lost (the application hears so), and
    /// the new link goes on as the new session of its own greeting.
    fn failed(&mut self, reactor: &mut Reactor, new: ChannelId, reason: &str) {
        log::warn!("repod: session could not be resumed: {reason}");
        if let Some(old) = self.id {
            self.abandoned = Some(old);
            let why: Box<str> = reason.into();
            reactor.close(old, DisconnectReason::Error(Error::ResumeFailed(why)));
        }
        self.id = Some(new);
        self.attempt_link = None;
        self.attempt = 0;
        self.away_since = None;
        let greeting = std::mem::take(&mut self.held_greeting);
        let token = Message::parse(&greeting)
            .ok()
            .and_then(|m| m.str("session").ok().map(str::to_owned));
        reactor.greeted(new, token.as_deref());
        self.push_event(&msg! { "action": session::RESUME_FAILED, "reason": reason });
        let _ = frame::encode_frame(&mut self.events, &greeting);
    }

    /// The application's link dropped; its session waits: reconnect.
    fn away(&mut self, now: Instant, id: ChannelId, reason: &DisconnectReason) {
        if Some(id) != self.id {
            return;
        }
        log::info!("repod: link dropped ({reason}); reconnecting");
        self.why = reason.to_string();
        self.away_since = Some(now);
        self.attempt = 0;
        self.schedule(now);
    }

    /// The next attempt, after a backoff with jitter; or giving up.
    fn schedule(&mut self, now: Instant) {
        let (Some(policy), Some(since)) = (self.policy, self.away_since) else {
            return;
        };
        if now >= since + policy.give_up_after {
            self.next_at = Some(now); // `timers` gives up
            return;
        }
        self.attempt += 1;
        let delay = policy.delay(self.attempt).mul_f64(jitter());
        self.next_at = Some(now + delay);
        let (attempt, why) = (self.attempt, std::mem::take(&mut self.why));
        self.push_event(
            &msg! { "action": session::RECONNECTING, "attempt": attempt, "reason": why.as_str() },
        );
        self.why = why;
    }

    /// Returns true when a link's end is part of resuming, not the application's business.
    fn closed(&mut self, now: Instant, id: ChannelId, reason: &DisconnectReason) -> bool {
        if Some(id) == self.abandoned {
            self.abandoned = None;
            return true;
        }
        if Some(id) == self.attempt_link {
            log::info!(
                "repod: reconnection attempt {} failed: {reason}",
                self.attempt
            );
            self.attempt_link = None;
            self.why = reason.to_string();
            self.schedule(now);
            return true;
        }
        false
    }

    fn deadline(&self) -> Option<Instant> {
        match self.attempt_link {
            Some(_) => self.attempt_deadline,
            None => self.next_at,
        }
    }

    /// Starts the attempt that is due, or gives up; ends an attempt that got no answer.
    fn timers(&mut self, reactor: &mut Reactor, now: Instant) {
        if let (Some(link), Some(deadline)) = (self.attempt_link, self.attempt_deadline) {
            if now >= deadline {
                // Connected, maybe, but no answer to the resume: a black hole, or a server that
                // hangs. Its end schedules the next attempt.
                let e = io::Error::new(io::ErrorKind::TimedOut, "no answer to the resume in time");
                reactor.close(link, DisconnectReason::Error(Error::Io(e)));
            }
            return;
        }
        if self.next_at.is_none_or(|t| now < t) {
            return;
        }
        self.next_at = None;
        let (Some(old), Some(policy), Some(since)) = (self.id, self.policy, self.away_since) else {
            return;
        };
        if !reactor.is_away(old) {
            return;
        }
        if now >= since + policy.give_up_after {
            let why = format!(
                "gave up reconnecting after {} attempts in {:.1} s: {}",
                self.attempt,
                (now - since).as_secs_f64(),
                self.why
            );
            log::warn!("repod: {why}");
            reactor.close(
                old,
                DisconnectReason::Error(Error::ResumeFailed(why.into())),
            );
            return;
        }
        let (Some(endpoint), Some(token)) = (self.endpoint.clone(), reactor.session_token(old))
        else {
            return;
        };
        let received = reactor.session_received(old);
        match connect(reactor, endpoint) {
            Ok(new) => {
                let token = std::str::from_utf8(&token).unwrap_or("");
                let _ = reactor.send(
                    new,
                    &msg! { "action": session::RESUME, "session": token, "received": received },
                );
                self.attempt_link = Some(new);
                let limit = reactor.config().connect_timeout;
                self.attempt_deadline = Some(now + limit.unwrap_or(Duration::from_secs(10)));
            }
            Err(e) => {
                self.why = e.to_string();
                self.schedule(now);
            }
        }
    }

    /// The application closes: a reconnection in progress ends too.
    fn close(&mut self, reactor: &mut Reactor) {
        if let Some(link) = self.attempt_link.take() {
            reactor.close(link, DisconnectReason::Closed);
        }
        self.next_at = None;
        self.policy = None;
    }
}

/// A random factor between 0.5 and 1.5, so clients cut off together do not come back together.
fn jitter() -> f64 {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    0.5 + u32::from_le_bytes(b) as f64 / u32::MAX as f64
}

/// The driver of a stepped connection: hands messages straight to the caller's closure.
struct StepDriver<'f, F> {
    deliver: &'f mut F,
    status: &'f mut Status,
    event: &'f mut Vec<u8>,
    resume: &'f mut Resume,
    max_depth: usize,
    count: usize,
}

impl<F: FnMut(&mut ClientCtx<'_>, &Message<'_>)> StepDriver<'_, F> {
    fn emit(&mut self, reactor: &mut Reactor, id: Option<ChannelId>, payload: &[u8]) {
        if let Ok(m) = Message::parse_with_depth(payload, usize::MAX) {
            let mut ctx = ClientCtx {
                link: LinkRef::Stepped(reactor, id),
            };
            (self.deliver)(&mut ctx, &m);
            self.count += 1;
        }
    }

    fn emit_event(&mut self, reactor: &mut Reactor, id: Option<ChannelId>) {
        let ev = std::mem::take(self.event);
        self.emit(reactor, id, &ev);
        *self.event = ev;
    }

    /// Hands the session's events (reconnecting, resumed...) to the application.
    fn emit_resume_events(&mut self, reactor: &mut Reactor) {
        if self.resume.events.is_empty() {
            return;
        }
        let mut events = std::mem::take(&mut self.resume.events);
        let id = self.resume.id;
        for payload in frame::payloads(&events) {
            self.emit(reactor, id, payload);
        }
        events.clear();
        if self.resume.events.is_empty() {
            self.resume.events = events;
        }
    }
}

impl<F: FnMut(&mut ClientCtx<'_>, &Message<'_>)> Driver for StepDriver<'_, F> {
    fn accepted(&mut self, _: &mut Reactor, _: ChannelId) {}

    fn connected(&mut self, reactor: &mut Reactor, id: ChannelId) {
        if Some(id) == self.resume.attempt_link {
            return; // a reconnection: the application hears how the resume went
        }
        self.status.established = true;
        self.resume.connected(reactor, id);
        event(self.event, "socketConnect", "", None);
        self.emit_event(reactor, Some(id));
    }

    fn frame(&mut self, reactor: &mut Reactor, id: ChannelId, payload: &[u8]) {
        if !self.resume.frame(reactor, id, payload) {
            return self.emit_resume_events(reactor);
        }
        match Message::parse_with_depth(payload, self.max_depth) {
            Ok(m) => {
                let mut ctx = ClientCtx {
                    link: LinkRef::Stepped(reactor, Some(id)),
                };
                (self.deliver)(&mut ctx, &m);
                self.count += 1;
            }
            Err(e) => {
                log::warn!("repod: dropped a frame from the server: {e}");
                event(self.event, "error", "error", Some(&e.to_string()));
                self.emit_event(reactor, Some(id));
            }
        }
    }

    fn closed(&mut self, reactor: &mut Reactor, id: ChannelId, reason: DisconnectReason) {
        if self.resume.closed(Instant::now(), id, &reason) {
            return self.emit_resume_events(reactor);
        }
        log::debug!("repod: client connection {id:?} ended: {reason}");
        self.resume.close(reactor);
        self.status.end_event(self.event, &reason);
        self.emit_event(reactor, None);
    }

    fn away(&mut self, reactor: &mut Reactor, id: ChannelId, reason: &DisconnectReason) {
        self.resume.away(Instant::now(), id, reason);
        self.emit_resume_events(reactor);
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.resume.deadline()
    }

    fn timers(&mut self, reactor: &mut Reactor, now: Instant) {
        self.resume.timers(reactor, now);
        self.emit_resume_events(reactor);
    }
}

/// State shared between a background connection's thread and its owner.
struct Shared {
    /// Complete frames (length prefix included) waiting for `pump`.
    inbox: Mutex<Vec<u8>>,
    arrived: Condvar,
    /// Frames the application sent, waiting for the reactor thread.
    outbox: Mutex<Vec<u8>>,
    close_requested: std::sync::atomic::AtomicBool,
    status: AtomicU8,
    remote: Remote,
    max_frame_len: usize,
    max_queued_output: usize,
    /// The connection's figures, published by the network thread once per turn.
    stats: SharedStats,
    /// The socket's own addresses, once connected (for the kernel's RTT).
    addrs: OnceLock<(SocketAddr, SocketAddr)>,
}

/// A [`ConnStats`] in atomics, for a background connection.
#[derive(Debug)]
struct SharedStats {
    base: Instant,
    /// 0 until the first publication.
    values: [AtomicU64; 7],
}

const NO_RTT: u64 = u64::MAX;

impl SharedStats {
    fn new() -> Self {
        SharedStats {
            base: Instant::now(),
            values: Default::default(),
        }
    }

    fn publish(&self, s: &ConnStats) {
        let nanos = |t: Instant| t.saturating_duration_since(self.base).as_nanos() as u64;
        let rtt = s.rtt.map_or(NO_RTT, |d| d.as_nanos() as u64);
        let values = [
            s.bytes_in,
            s.bytes_out,
            s.msgs_in,
            s.msgs_out,
            s.queued as u64,
            nanos(s.last_received),
            rtt,
        ];
        for (slot, v) in self.values.iter().zip(values) {
            slot.store(v, Ordering::Relaxed);
        }
    }

    fn read(&self) -> Option<ConnStats> {
        let v: [u64; 7] = std::array::from_fn(|i| self.values[i].load(Ordering::Relaxed));
        let mut s = ConnStats::empty(self.base);
        s.bytes_in = v[0];
        s.bytes_out = v[1];
        s.msgs_in = v[2];
        s.msgs_out = v[3];
        s.queued = v[4] as usize;
        s.last_received = self.base + Duration::from_nanos(v[5]);
        s.rtt = (v[6] != NO_RTT && v[6] != 0).then(|| Duration::from_nanos(v[6]));
        Some(s)
    }
}

impl Shared {
    fn status(&self) -> u8 {
        self.status.load(Ordering::Acquire)
    }

    fn send<E: Encode + ?Sized>(&self, msg: &E) -> Result<usize, Error> {
        if self.status() == CLOSED || self.close_requested.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let mut out = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
        let was_empty = out.is_empty();
        let before = out.len();
        let n = frame::encode_frame_with(&mut out, self.max_frame_len, |b| msg.encode(b))?;
        if out.len() > self.max_queued_output && before > 0 {
            out.truncate(before);
            return Err(Error::OutputFull {
                queued: before + n,
                max: self.max_queued_output,
            });
        }
        drop(out);
        if was_empty {
            self.remote.wake();
        }
        Ok(n)
    }

    fn request_close(&self) {
        self.close_requested.store(true, Ordering::Release);
        self.remote.wake();
    }

    fn push_inbox(&self, frames: &mut Vec<u8>) {
        if frames.is_empty() {
            return;
        }
        let mut inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        if inbox.is_empty() {
            // Hand over the whole buffer and keep the (empty) old one: no copy.
            std::mem::swap(&mut *inbox, frames);
        } else {
            inbox.extend_from_slice(frames);
            frames.clear();
        }
        drop(inbox);
        self.arrived.notify_all();
    }
}

/// The driver of the background thread: queues frames for `pump`.
struct QueueDriver {
    shared: Arc<Shared>,
    resume: Resume,
    status: Status,
    pending: Vec<u8>,
    event: Vec<u8>,
    max_depth: usize,
}

impl QueueDriver {
    fn queue(&mut self, payload: &[u8]) {
        let _ = frame::encode_frame(&mut self.pending, payload);
    }

    fn queue_event(&mut self) {
        let ev = std::mem::take(&mut self.event);
        self.queue(&ev);
        self.event = ev;
    }

    /// Queues the session's events (reconnecting, resumed...) for `pump`.
    fn queue_resume_events(&mut self) {
        if !self.resume.events.is_empty() {
            self.pending.extend_from_slice(&self.resume.events);
            self.resume.events.clear();
        }
    }
}

impl Driver for QueueDriver {
    fn accepted(&mut self, _: &mut Reactor, _: ChannelId) {}

    fn connected(&mut self, reactor: &mut Reactor, id: ChannelId) {
        if Some(id) == self.resume.attempt_link {
            return; // a reconnection: the application hears how the resume went
        }
        self.resume.connected(reactor, id);
        self.status.established = true;
        self.shared.status.store(OPEN, Ordering::Release);
        if let Some(addrs) = reactor.socket_addrs(id) {
            let _ = self.shared.addrs.set(addrs);
        }
        event(&mut self.event, "socketConnect", "", None);
        self.queue_event();
        // Sends made while connecting were held by the reactor already; nothing else to do.
    }

    fn frame(&mut self, reactor: &mut Reactor, id: ChannelId, payload: &[u8]) {
        if !self.resume.frame(reactor, id, payload) {
            return self.queue_resume_events();
        }
        // Validated here, on the network thread, so `pump` only dispatches.
        match Message::parse_with_depth(payload, self.max_depth) {
            Ok(_) => self.queue(payload),
            Err(e) => {
                log::warn!("repod: dropped a frame from the server: {e}");
                event(&mut self.event, "error", "error", Some(&e.to_string()));
                self.queue_event();
            }
        }
    }

    fn closed(&mut self, reactor: &mut Reactor, id: ChannelId, reason: DisconnectReason) {
        if self.resume.closed(Instant::now(), id, &reason) {
            return self.queue_resume_events();
        }
        log::debug!("repod: client connection {id:?} ended: {reason}");
        self.resume.close(reactor);
        self.shared.status.store(CLOSED, Ordering::Release);
        self.status.end_event(&mut self.event, &reason);
        self.queue_event();
    }

    fn woken(&mut self, reactor: &mut Reactor) {
        let mut out = self.shared.outbox.lock().unwrap_or_else(|p| p.into_inner());
        if !out.is_empty() {
            if let Some(id) = self.resume.id {
                let _ = reactor.send_framed(id, &out);
            }
            out.clear();
        }
        drop(out);
        if self.shared.close_requested.load(Ordering::Acquire) {
            self.resume.close(reactor);
            if let Some(id) = self.resume.id {
                reactor.close(id, DisconnectReason::Closed);
            }
        }
    }

    fn away(&mut self, _: &mut Reactor, id: ChannelId, reason: &DisconnectReason) {
        self.resume.away(Instant::now(), id, reason);
        self.queue_resume_events();
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.resume.deadline()
    }

    fn timers(&mut self, reactor: &mut Reactor, now: Instant) {
        self.resume.timers(reactor, now);
        self.queue_resume_events();
        // Once per turn, after all reads: hand everything over under one lock.
        self.shared.push_inbox(&mut self.pending);
        if let Some(s) = self.resume.id.and_then(|id| reactor.conn_stats(id)) {
            self.shared.stats.publish(&s);
        }
    }
}

/// Starts connecting `reactor` to `endpoint`.
fn connect(reactor: &mut Reactor, endpoint: Endpoint) -> io::Result<ChannelId> {
    #[cfg(feature = "tls")]
    let connector = || reactor.config().tls.clone().unwrap_or_default();
    match endpoint {
        Endpoint::Tcp(a) => reactor.connect(a),
        Endpoint::Ws(a, url) => reactor.connect_ws(a, &url),
        #[cfg(feature = "tls")]
        Endpoint::Tls(a, host) => {
            let tls = connector();
            reactor.connect_tls(a, &host, &tls, None)
        }
        #[cfg(feature = "tls")]
        Endpoint::Wss(a, url) => {
            let tls = connector();
            reactor.connect_tls(a, &url.host, &tls, Some(&url))
        }
        #[cfg(not(feature = "tls"))]
        Endpoint::Tls(..) | Endpoint::Wss(..) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "tls:// and wss:// need repod's `tls` feature",
        )),
    }
}

fn resolve(addr: impl ToSocketAddrs) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing"))
}

/// A resolved place to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Endpoint {
    /// A repod server's TCP port: length-prefixed frames.
    Tcp(SocketAddr),
    /// A repod server's WebSocket port, and the URL to upgrade to.
    Ws(SocketAddr, WsUrl),
    /// A repod server's TLS port (`tls://host:port`), and the name its certificate must carry.
    Tls(SocketAddr, String),
    /// A repod server's WebSocket-over-TLS port (`wss://host:port/path`); the URL's host is the
    /// name its certificate must carry.
    Wss(SocketAddr, WsUrl),
}

/// Where a client connects: a TCP address in any form [`ToSocketAddrs`] takes (`"host:port"`,
/// `("host", port)`, a [`SocketAddr`]...), a WebSocket URL, `"ws://host:port/path"`, or, with
/// the `tls` feature (default), `"tls://host:port"` (repod over TLS) or
/// `"wss://host:port/path"`. TLS checks the server's certificate against the host name, with
/// the roots of [`Config::tls`](crate::Config::tls) (by default Mozilla's).
///
/// ```
/// use repod::client::{Endpoint, ServerAddr};
/// assert!(matches!("127.0.0.1:5071".endpoint()?, Endpoint::Tcp(_)));
/// assert!(matches!("ws://127.0.0.1:5072/".endpoint()?, Endpoint::Ws(..)));
/// assert!(matches!("tls://localhost:5071".endpoint()?, Endpoint::Tls(_, host) if host == "localhost"));
/// assert!(matches!("wss://127.0.0.1:5072/".endpoint()?, Endpoint::Wss(..)));
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait ServerAddr {
    /// Resolves the address (a DNS lookup for a host name).
    ///
    /// # Errors
    ///
    /// The name does not resolve, or the URL is malformed.
    fn endpoint(&self) -> io::Result<Endpoint>;
}

impl ServerAddr for str {
    fn endpoint(&self) -> io::Result<Endpoint> {
        let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
        let scheme = self.get(..6).map(str::to_ascii_lowercase);
        if scheme.as_deref() == Some("tls://") {
            // The same authority as a URL's: host:port, [v6]:port; the port is required.
            let authority = self[6..].trim_end_matches('/');
            let (url, _) = WsUrl::parse_with_tls(&format!("ws://{authority}/"))
                .map_err(invalid)?
                .filter(|(u, _)| authority.ends_with(&format!(":{}", u.port)))
                .ok_or_else(|| invalid(format!("{self}: expected tls://host:port")))?;
            return Ok(Endpoint::Tls(
                resolve((url.host.as_str(), url.port))?,
                url.host,
            ));
        }
        match WsUrl::parse_with_tls(self).map_err(invalid)? {
            Some((url, false)) => Ok(Endpoint::Ws(resolve((url.host.as_str(), url.port))?, url)),
            Some((url, true)) => Ok(Endpoint::Wss(resolve((url.host.as_str(), url.port))?, url)),
            None => Ok(Endpoint::Tcp(resolve(self)?)),
        }
    }
}

impl ServerAddr for String {
    fn endpoint(&self) -> io::Result<Endpoint> {
        self.as_str().endpoint()
    }
}

impl ServerAddr for Endpoint {
    fn endpoint(&self) -> io::Result<Endpoint> {
        Ok(self.clone())
    }
}

impl<T: ServerAddr + ?Sized> ServerAddr for &T {
    fn endpoint(&self) -> io::Result<Endpoint> {
        (**self).endpoint()
    }
}

macro_rules! tcp_server_addr {
    ($($t:ty),*) => {$(
        impl ServerAddr for $t {
            fn endpoint(&self) -> io::Result<Endpoint> {
                resolve(self).map(Endpoint::Tcp)
            }
        }
    )*};
}

tcp_server_addr!(
    SocketAddr,
    std::net::SocketAddrV4,
    std::net::SocketAddrV6,
    (std::net::IpAddr, u16),
    (std::net::Ipv4Addr, u16),
    (std::net::Ipv6Addr, u16),
    (&str, u16),
    (String, u16)
);

struct Stepped {
    reactor: Reactor,
    resume: Resume,
    status: Status,
    event: Vec<u8>,
    /// An event produced outside a pump (a connect that failed at once).
    early: Option<Vec<u8>>,
}

struct Background {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    local: Vec<u8>,
}

enum Inner {
    Stepped(Box<Stepped>),
    Background(Background),
}

/// A low-level client connection (Python's `Client`): connect, send, receive, close.
///
/// ```no_run
/// use std::time::Duration;
/// use repod::{msg, Connection};
///
/// let mut conn = Connection::connect("127.0.0.1:5071")?;
/// conn.send(&msg! { "action": "hello", "name": "Alice" });
/// while let Some(m) = conn.recv_timeout(Duration::from_secs(1)) {
///     println!("received {m:?}");
/// }
/// conn.close();
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Connection {
    inner: Inner,
    queue: VecDeque<OwnedMessage>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field(
                "mode",
                &match self.inner {
                    Inner::Stepped(_) => Mode::Stepped,
                    Inner::Background(_) => Mode::Background,
                },
            )
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl Connection {
    /// Starts connecting in [`Mode::Stepped`] and returns at once. The outcome arrives as a
    /// `socketConnect` or an `error` message.
    ///
    /// # Errors
    ///
    /// Only when the poller cannot be created; connection failures arrive as `error` messages.
    pub fn connect(addr: impl ServerAddr) -> io::Result<Self> {
        Self::connect_with(addr, Mode::Stepped, Config::default())
    }

    /// Starts connecting with a reactor on a background thread ([`Mode::Background`]).
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect), or the thread could not be spawned.
    pub fn connect_background(addr: impl ServerAddr) -> io::Result<Self> {
        Self::connect_with(addr, Mode::Background, Config::default())
    }

    /// Starts connecting in the given mode, with the given limits.
    ///
    /// # Errors
    ///
    /// As [`connect_background`](Self::connect_background).
    pub fn connect_with(addr: impl ServerAddr, mode: Mode, cfg: Config) -> io::Result<Self> {
        let policy = cfg.reconnect;
        let mut reactor = Reactor::new(cfg)?;
        let endpoint = addr.endpoint();
        let resume = Resume::new(endpoint.as_ref().ok().cloned(), policy);
        let id = endpoint.and_then(|e| connect(&mut reactor, e));
        let inner = match mode {
            Mode::Stepped => {
                let mut s = Stepped {
                    reactor,
                    resume,
                    status: Status::default(),
                    event: Vec::new(),
                    early: None,
                };
                match id {
                    Ok(id) => s.resume.id = Some(id),
                    Err(e) => {
                        log::warn!("repod: connect failed: {e}");
                        let mut ev = Vec::new();
                        s.status
                            .end_event(&mut ev, &DisconnectReason::Error(Error::Io(e)));
                        s.early = Some(ev);
                    }
                }
                Inner::Stepped(Box::new(s))
            }
            Mode::Background => {
                let cfg = reactor.config().clone();
                let shared = Arc::new(Shared {
                    inbox: Mutex::new(Vec::new()),
                    arrived: Condvar::new(),
                    outbox: Mutex::new(Vec::new()),
                    close_requested: Default::default(),
                    status: AtomicU8::new(CONNECTING),
                    remote: reactor.remote(),
                    max_frame_len: cfg.max_frame_len,
                    max_queued_output: cfg.max_queued_output,
                    stats: SharedStats::new(),
                    addrs: OnceLock::new(),
                });
                let mut driver = QueueDriver {
                    shared: shared.clone(),
                    resume,
                    status: Status::default(),
                    pending: Vec::new(),
                    event: Vec::new(),
                    max_depth: cfg.max_depth,
                };
                let thread = match id {
                    Ok(id) => {
                        driver.resume.id = Some(id);
                        Some(
                            std::thread::Builder::new()
                                .name("repod-client".into())
                                .spawn(move || run_background(reactor, driver))?,
                        )
                    }
                    Err(e) => {
                        log::warn!("repod: connect failed: {e}");
                        shared.status.store(CLOSED, Ordering::Release);
                        driver
                            .status
                            .end_event(&mut driver.event, &DisconnectReason::Error(Error::Io(e)));
                        driver.queue_event();
                        shared.push_inbox(&mut driver.pending);
                        None
                    }
                };
                Inner::Background(Background {
                    shared,
                    thread,
                    local: Vec::new(),
                })
            }
        };
        Ok(Connection {
            inner,
            queue: VecDeque::new(),
        })
    }

    /// Queues `msg` for the server; returns the bytes queued (length prefix included), or 0
    /// once the connection is closed. Works while connecting: the message leaves once the
    /// connection is up. Outside a pump the message is written at once.
    pub fn send<E: Encode + ?Sized>(&mut self, msg: &E) -> usize {
        self.try_send(msg).unwrap_or(0)
    }

    /// As [`send`](Self::send), with the reason when nothing was queued.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`], [`Error::FrameTooLarge`] or [`Error::OutputFull`].
    pub fn try_send<E: Encode + ?Sized>(&mut self, msg: &E) -> Result<usize, Error> {
        match &mut self.inner {
            Inner::Stepped(s) => {
                let id = s.resume.id.ok_or(Error::Closed)?;
                let n = s.reactor.send(id, msg)?;
                // Outside a pump nothing else would write it before the next frame.
                s.reactor.flush_now(id);
                Ok(n)
            }
            Inner::Background(b) => b.shared.send(msg),
        }
    }

    /// Whether the connection is open or still connecting.
    pub fn is_connected(&self) -> bool {
        match &self.inner {
            Inner::Stepped(s) => s.resume.id.is_some_and(|id| s.reactor.is_open(id)),
            Inner::Background(b) => b.shared.status() != CLOSED,
        }
    }

    /// What the connection carried so far, and its heartbeat RTT (with
    /// [`Config::heartbeat`](crate::Config::heartbeat)); see [`crate::stats`]. `None` when no
    /// connection attempt exists (the address did not resolve). In [`Mode::Background`], as of
    /// the network thread's last turn.
    pub fn stats(&self) -> Option<ConnStats> {
        match &self.inner {
            Inner::Stepped(s) => s.resume.id.and_then(|id| s.reactor.conn_stats(id)),
            Inner::Background(b) => b.shared.stats.read(),
        }
    }

    /// The kernel's smoothed round-trip time of the TCP connection (`TCP_INFO`, through one
    /// netlink query): no protocol support needed from the server. Ask when you show it, not
    /// per frame.
    ///
    /// # Errors
    ///
    /// `NotConnected` before the connection is up or after it is gone; `Unsupported` on
    /// systems other than Linux.
    pub fn kernel_rtt(&self) -> io::Result<Duration> {
        match &self.inner {
            Inner::Stepped(s) => match s.resume.id {
                Some(id) => s.reactor.kernel_rtt(id),
                None => Err(io::ErrorKind::NotConnected.into()),
            },
            Inner::Background(b) => match (b.shared.addrs.get(), b.shared.status()) {
                (Some(&(local, peer)), OPEN) => crate::tcp_info::smoothed_rtt(local, peer),
                _ => Err(io::ErrorKind::NotConnected.into()),
            },
        }
    }

    /// Closes the connection after what was sent is delivered. A `disconnected` message
    /// follows (the next pump, in stepped mode).
    pub fn close(&mut self) {
        match &mut self.inner {
            Inner::Stepped(s) => {
                s.resume.close(&mut s.reactor);
                if let Some(id) = s.resume.id {
                    s.reactor.close(id, DisconnectReason::Closed);
                }
            }
            Inner::Background(b) => b.shared.request_close(),
        }
    }

    /// Advances the connection, waiting at most `timeout` for something to arrive, and calls
    /// `f` with every message (events included) that arrived, in order. Returns how many.
    ///
    /// In stepped mode this is where the socket is read and written; in background mode it
    /// dispatches what the network thread queued.
    pub fn poll<F>(&mut self, timeout: Duration, mut f: F) -> usize
    where
        F: FnMut(&mut ClientCtx<'_>, &Message<'_>),
    {
        let mut count = 0;
        while let Some(m) = self.queue.pop_front() {
            let mut ctx = self.ctx();
            f(&mut ctx, &m.message());
            count += 1;
        }
        match &mut self.inner {
            Inner::Stepped(s) => count + s.poll(timeout, &mut f),
            Inner::Background(b) => count + b.poll(timeout, &mut f),
        }
    }

    fn ctx(&mut self) -> ClientCtx<'_> {
        match &mut self.inner {
            Inner::Stepped(s) => ClientCtx {
                link: LinkRef::Stepped(&mut s.reactor, s.resume.id),
            },
            Inner::Background(b) => ClientCtx {
                link: LinkRef::Background(&b.shared),
            },
        }
    }

    /// The next message, waiting at most `timeout`.
    ///
    /// The messages that arrive together share one buffer: in [`Mode::Background`] it is the
    /// very buffer the network thread filled (no copy at all); in [`Mode::Stepped`] they are
    /// copied once, together, out of the read buffer. Each [`OwnedMessage`] is a slice of it,
    /// cheap to clone and `Send`. Games that handle messages in place use
    /// [`poll`](Self::poll) or a [`Client`], which allocate nothing.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<OwnedMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.queue.pop_front() {
                return Some(m);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match &mut self.inner {
                Inner::Stepped(s) => {
                    let mut batch = BytesMut::new();
                    let mut ends: SmallVec<[usize; 16]> = SmallVec::new();
                    s.poll(left, &mut |_: &mut ClientCtx<'_>, m: &Message<'_>| {
                        batch.extend_from_slice(m.payload());
                        ends.push(batch.len());
                    });
                    let batch = batch.freeze();
                    let mut start = 0;
                    for end in ends {
                        let payload = batch.slice(start..end);
                        self.queue.push_back(OwnedMessage::from_validated(payload));
                        start = end;
                    }
                }
                Inner::Background(b) => {
                    let queue = &mut self.queue;
                    b.take_batch(left, |m| queue.push_back(m));
                }
            }
            if self.queue.is_empty() && Instant::now() >= deadline {
                return None;
            }
        }
    }

    /// The next message if one is queued or readable right now.
    pub fn try_recv(&mut self) -> Option<OwnedMessage> {
        self.recv_timeout(Duration::ZERO)
    }
}

impl Stepped {
    fn poll<F>(&mut self, timeout: Duration, f: &mut F) -> usize
    where
        F: FnMut(&mut ClientCtx<'_>, &Message<'_>),
    {
        if let Some(ev) = self.early.take() {
            if let Ok(m) = Message::parse(&ev) {
                f(
                    &mut ClientCtx {
                        link: LinkRef::Stepped(&mut self.reactor, None),
                    },
                    &m,
                );
            }
            return 1;
        }
        // After the end, the socket may still be flushing what was sent before `close`.
        if self.status.ended && self.reactor.sockets() == 0 {
            if !timeout.is_zero() {
                std::thread::sleep(timeout);
            }
            return 0;
        }
        let mut driver = StepDriver {
            deliver: f,
            status: &mut self.status,
            event: &mut self.event,
            resume: &mut self.resume,
            max_depth: self.reactor.config().max_depth,
            count: 0,
        };
        if let Err(e) = self.reactor.turn(Some(timeout), &mut driver) {
            log::error!("repod: client poll failed: {e}");
        }
        driver.count
    }
}

impl Background {
    /// Waits at most `timeout` for what the network thread queued, and hands every message of
    /// it to `f` as a slice of the network thread's own buffer: no copy.
    fn take_batch(&mut self, timeout: Duration, mut f: impl FnMut(OwnedMessage)) {
        // The buffer becomes the messages' storage; the network thread starts a new one.
        if !self.take_inbox(timeout) {
            return;
        }
        let batch = Bytes::from(std::mem::take(&mut self.local));
        let mut at = 0;
        while batch.len() - at >= HEADER_LEN {
            let head = [batch[at], batch[at + 1], batch[at + 2], batch[at + 3]];
            let len = u32::from_be_bytes(head) as usize;
            let start = at + HEADER_LEN;
            // Validated on the network thread before it was queued.
            f(OwnedMessage::from_validated(
                batch.slice(start..start + len),
            ));
            at = start + len;
        }
    }

    /// Waits at most `timeout` for the network thread's frames and swaps its buffer with
    /// `local`: it fills one while the game reads the other. False when nothing came.
    fn take_inbox(&mut self, timeout: Duration) -> bool {
        let mut inbox = self.shared.inbox.lock().unwrap_or_else(|p| p.into_inner());
        if inbox.is_empty() && !timeout.is_zero() {
            inbox = self
                .shared
                .arrived
                .wait_timeout_while(inbox, timeout, |i| i.is_empty())
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if inbox.is_empty() {
            return false;
        }
        std::mem::swap(&mut *inbox, &mut self.local);
        true
    }

    fn poll<F>(&mut self, timeout: Duration, f: &mut F) -> usize
    where
        F: FnMut(&mut ClientCtx<'_>, &Message<'_>),
    {
        self.take_inbox(timeout);
        let mut count = 0;
        let mut rest = &self.local[..];
        let mut ctx = ClientCtx {
            link: LinkRef::Background(&self.shared),
        };
        while rest.len() >= HEADER_LEN {
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let payload = &rest[HEADER_LEN..HEADER_LEN + len];
            rest = &rest[HEADER_LEN + len..];
            // Validated on the network thread before it was queued.
            f(&mut ctx, &Message::from_validated(payload));
            count += 1;
        }
        self.local.clear();
        count
    }
}

fn run_background(mut reactor: Reactor, mut driver: QueueDriver) {
    loop {
        if let Err(e) = reactor.turn(None, &mut driver) {
            log::error!("repod: client reactor failed: {e}");
            if let Some(id) = driver.resume.id {
                reactor.close(id, DisconnectReason::Error(Error::Io(e)));
            }
        }
        if driver.status.ended && reactor.sockets() == 0 {
            driver.shared.push_inbox(&mut driver.pending);
            return;
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Inner::Background(b) = &mut self.inner {
            b.shared.request_close();
            if let Some(t) = b.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// A client's handlers: the Rust counterpart of a Python `ConnectionListener` subclass.
///
/// Declare routes per action, events included (`connected`, `socketConnect`, `error`,
/// `disconnected`; see the [module documentation](self)).
pub trait Listener: Sized + 'static {
    /// Declares the handler for each action (Python: `Network_{action}` methods).
    fn routes(routes: &mut ClientRoutes<Self>) {
        let _ = routes;
    }

    /// Messages whose action has no route (Python: `network_received`). The default logs them
    /// at debug level.
    fn network_received(&mut self, ctx: &mut ClientCtx<'_>, msg: &Message<'_>) -> HandlerResult {
        let _ = ctx;
        log::debug!("repod: client: no route for action {:?}", msg.action());
        Ok(())
    }

    /// A handler returned an error (or panicked: the panic is caught and reported here). The
    /// default logs it at warn level.
    fn on_error(&mut self, ctx: &mut ClientCtx<'_>, error: &Error) {
        let _ = ctx;
        log::warn!("repod: client handler failed: {error}");
    }
}

type ClientRoute<L> =
    Box<dyn Fn(&mut L, &mut ClientCtx<'_>, &Message<'_>) -> HandlerResult + Send + Sync>;

/// The action table of a [`Listener`].
pub struct ClientRoutes<L> {
    table: ActionTable<ClientRoute<L>>,
}

impl<L> fmt::Debug for ClientRoutes<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ClientRoutes").field(&self.table).finish()
    }
}

impl<L: Listener> ClientRoutes<L> {
    /// Routes messages whose action is `action` to `handler`.
    pub fn on<F>(&mut self, action: &str, handler: F) -> &mut Self
    where
        F: Fn(&mut L, &mut ClientCtx<'_>, &Message<'_>) -> HandlerResult + Send + Sync + 'static,
    {
        self.table.insert(action, Box::new(handler));
        self
    }
}

/// A client that dispatches messages to a [`Listener`] when the game calls
/// [`pump`](Client::pump). See the [module documentation](self).
pub struct Client<L: Listener> {
    conn: Connection,
    listener: L,
    routes: ClientRoutes<L>,
}

impl<L: Listener + fmt::Debug> fmt::Debug for Client<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("conn", &self.conn)
            .field("listener", &self.listener)
            .finish()
    }
}

impl<L: Listener> Client<L> {
    /// Connects in [`Mode::Stepped`] (no thread) and returns at once (Python: `connect`).
    ///
    /// # Errors
    ///
    /// Only when the poller cannot be created; connection failures arrive as `error`.
    pub fn connect(addr: impl ServerAddr, listener: L) -> io::Result<Self> {
        Self::connect_with(addr, listener, Mode::Stepped, Config::default())
    }

    /// Connects with the network on a background thread ([`Mode::Background`]).
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect), or the thread could not be spawned.
    pub fn connect_background(addr: impl ServerAddr, listener: L) -> io::Result<Self> {
        Self::connect_with(addr, listener, Mode::Background, Config::default())
    }

    /// Connects in the given mode with the given limits.
    ///
    /// # Errors
    ///
    /// As [`connect_background`](Self::connect_background).
    pub fn connect_with(
        addr: impl ServerAddr,
        listener: L,
        mode: Mode,
        cfg: Config,
    ) -> io::Result<Self> {
        let mut routes = ClientRoutes {
            table: ActionTable::default(),
        };
        L::routes(&mut routes);
        Ok(Client {
            conn: Connection::connect_with(addr, mode, cfg)?,
            listener,
            routes,
        })
    }

    /// Dispatches every message that has arrived to the listener's handlers, on this thread;
    /// returns how many. In stepped mode this is also when the socket is read and written.
    /// Call it once per frame.
    pub fn pump(&mut self) -> usize {
        self.pump_timeout(Duration::ZERO)
    }

    /// As [`pump`](Self::pump), but waits up to `timeout` for the first message when none is
    /// there yet: for tools and tests that have no frame loop.
    pub fn pump_timeout(&mut self, timeout: Duration) -> usize {
        let Client {
            conn,
            listener,
            routes,
        } = self;
        conn.poll(timeout, |ctx, m| {
            let outcome = guard(|| {
                let r = match routes.table.get(m.action_bytes()) {
                    Some(route) => route(listener, ctx, m),
                    None => listener.network_received(ctx, m),
                };
                if let Err(e) = r {
                    listener.on_error(ctx, &e);
                }
            });
            if let Err(panic) = outcome {
                listener.on_error(ctx, &Error::HandlerPanic(panic));
            }
        })
    }

    /// Sends `msg` to the server (Python: `send`): the bytes queued, or 0 once closed.
    pub fn send<E: Encode + ?Sized>(&mut self, msg: &E) -> usize {
        self.conn.send(msg)
    }

    /// Closes the connection; `disconnected` follows.
    pub fn close(&mut self) {
        self.conn.close()
    }

    /// Whether the connection is open or still connecting.
    pub fn is_connected(&self) -> bool {
        self.conn.is_connected()
    }

    /// What the connection carried, and its heartbeat RTT; see [`Connection::stats`].
    pub fn stats(&self) -> Option<ConnStats> {
        self.conn.stats()
    }

    /// The kernel's smoothed RTT of the connection; see [`Connection::kernel_rtt`].
    ///
    /// # Errors
    ///
    /// As [`Connection::kernel_rtt`].
    pub fn kernel_rtt(&self) -> io::Result<Duration> {
        self.conn.kernel_rtt()
    }

    /// The listener.
    pub fn listener(&self) -> &L {
        &self.listener
    }

    /// The listener, mutable.
    pub fn listener_mut(&mut self) -> &mut L {
        &mut self.listener
    }

    /// The underlying connection (Python: `connection`).
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }
}
