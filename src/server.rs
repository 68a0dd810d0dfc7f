//! The server: a listening socket, a channel per connection, handlers per action.
//!
//! The model is Python repod's: a [`Server`] accepts TCP connections and gives each one a
//! channel, whose state is a value of your [`ChannelHandler`] type (the counterpart of a
//! `Channel` subclass). Messages are routed by their `"action"` to the routes the type declares
//! (the counterpart of `Network_{action}` methods), or to
//! [`network_received`](ChannelHandler::network_received). Server-wide state is a value of the
//! handler's [`ChannelHandler::Server`] type, which gets the server's own hooks through
//! [`ServerHandler`].
//!
//! Everything runs on the reactor's one thread: handlers get `&mut` access to their own
//! channel, to the server state, and to every other channel's state through the context, with
//! no locks. Other threads talk to a running server through a [`ServerHandle`].
//!
//! Order of events for a new connection, as in Python repod: the greeting
//! `{"action": "connected"}` is queued to the client, then [`ChannelHandler::on_connect`] runs,
//! then [`ServerHandler::on_connect`]. When a connection ends, for whatever reason:
//! [`ChannelHandler::on_error`] if the reason is an error, then [`ChannelHandler::on_close`],
//! then [`ServerHandler::on_disconnect`], each exactly once.
//!
//! ```no_run
//! use repod::{msg, ChannelCtx, ChannelHandler, HandlerResult, Message, Routes, Server};
//!
//! #[derive(Default)]
//! struct Player {
//!     name: String,
//! }
//!
//! impl ChannelHandler for Player {
//!     type Server = ();
//!
//!     fn routes(r: &mut Routes<Self>) {
//!         r.on("nickname", |me, _ctx, m| {
//!             me.name = m.str("nickname")?.to_owned();
//!             Ok(())
//!         });
//!         r.on("chat", Self::chat);
//!     }
//! }
//!
//! impl Player {
//!     fn chat(&mut self, ctx: &mut ChannelCtx<Self>, m: &Message) -> HandlerResult {
//!         ctx.send_to_all(&msg! { "action": "chat", "text": m.str("text")?, "from": &self.name });
//!         Ok(())
//!     }
//! }
//!
//! fn main() -> std::io::Result<()> {
//!     Server::<Player>::bind("0.0.0.0:5071", ())?.launch()
//! }
//! ```

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::config::{BindAddr, Listen};
use crate::dispatch::{guard, ActionTable};
use crate::encode::Encode;
use crate::frame;
use crate::health::{Health, Vitals, HEARTBEAT};
use crate::reactor::{Driver, Reactor, Remote};
use crate::stats::{ConnStats, CoreCounters, Published, ServerStats};
use crate::{msg, ChannelId, DisconnectReason, Error, HandlerResult, Message, WsOptions};

/// How long a drain begun by SIGTERM may last, unless [`Server::drain_on_sigterm`] says.
pub const DEFAULT_SIGTERM_DRAIN: Duration = Duration::from_secs(30);

/// How often the queued output total is published to [`ServerHandle::health`].
const QUEUED_REFRESH: Duration = Duration::from_millis(100);
/// Health and statistics are published at most this often: a ping-pong at 100k round trips a
/// second then pays for one publication per hundred turns, not one per turn.
const PUBLISH_EVERY: Duration = Duration::from_millis(1);
/// How long figures that a busy turn left unpublished may wait when no turn follows.
const PUBLISH_IDLE: Duration = Duration::from_millis(50);

/// The state and handlers of one connection: the Rust counterpart of a Python `Channel`
/// subclass. See the [module documentation](self).
///
/// Every method has a default, so a type only writes what it handles.
pub trait ChannelHandler: Sized + 'static {
    /// The server-wide state type. Use `()` when there is none.
    type Server: ServerHandler<Self>;

    /// Declares the handler for each action (Python: the `Network_{action}` methods). Called
    /// once when the server is created.
    fn routes(routes: &mut Routes<Self>) {
        let _ = routes;
    }

    /// Messages whose action has no route, including maps with no `"action"` key (seen as
    /// action `""`). The default logs them at debug level.
    fn network_received(
        &mut self,
        ctx: &mut ChannelCtx<'_, Self>,
        msg: &Message<'_>,
    ) -> HandlerResult {
        log::debug!(
            "repod: {:?}: no route for action {:?}",
            ctx.id(),
            msg.action()
        );
        Ok(())
    }

    /// The connection is open and the greeting is queued.
    fn on_connect(&mut self, ctx: &mut ChannelCtx<'_, Self>) {
        let _ = ctx;
    }

    /// The connection ended. `ctx.send` returns 0 from here on. Runs exactly once.
    fn on_close(&mut self, ctx: &mut ChannelCtx<'_, Self>, reason: &DisconnectReason) {
        let _ = (ctx, reason);
    }

    /// The channel's link dropped, and its session waits for the client to resume it
    /// ([`Config::resume_window`](crate::Config::resume_window)): the player is away, not gone.
    /// Messages sent to the channel meanwhile are kept and delivered when it is back; freeze
    /// the avatar or let a bot drive it. `reason` says how the link dropped. Either
    /// [`on_back`](Self::on_back) or [`on_close`](Self::on_close) follows.
    fn on_away(&mut self, ctx: &mut ChannelCtx<'_, Self>, reason: &DisconnectReason) {
        let _ = (ctx, reason);
    }

    /// The channel's session is back on a new link, which may come from another address
    /// ([`ChannelCtx::addr`]). Everything either side sent meanwhile is delivered (once, in
    /// order).
    fn on_back(&mut self, ctx: &mut ChannelCtx<'_, Self>) {
        let _ = ctx;
    }

    /// Something went wrong on this connection: a bad frame (dropped, the connection stays
    /// open), a handler that returned an error or panicked, or a fatal error that is about to
    /// close the connection (see [`Error::is_fatal`]). The default logs it at warn level.
    fn on_error(&mut self, ctx: &mut ChannelCtx<'_, Self>, error: &Error) {
        log::warn!("repod: {:?} ({:?}): {error}", ctx.id(), ctx.addr());
    }
}

/// Server-wide hooks, implemented by the server state type. Every method has a default; `()`
/// implements it for servers with no state of their own.
pub trait ServerHandler<C: ChannelHandler>: Sized + 'static {
    /// A client connected, after its channel's [`ChannelHandler::on_connect`].
    fn on_connect(&mut self, ctx: &mut ServerCtx<'_, C>, id: ChannelId, addr: SocketAddr) {
        let _ = (ctx, id, addr);
    }

    /// A client is gone, after its channel's [`ChannelHandler::on_close`]. The channel's state
    /// is handed over (keep it for a reconnection, or let it drop).
    fn on_disconnect(
        &mut self,
        ctx: &mut ServerCtx<'_, C>,
        id: ChannelId,
        channel: C,
        reason: &DisconnectReason,
    ) {
        let _ = (ctx, id, channel, reason);
    }

    /// A channel is away, after its [`ChannelHandler::on_away`] (see there).
    fn on_away(&mut self, ctx: &mut ServerCtx<'_, C>, id: ChannelId, reason: &DisconnectReason) {
        let _ = (ctx, id, reason);
    }

    /// A channel is back from [`on_away`](Self::on_away), from `addr`, after its
    /// [`ChannelHandler::on_back`].
    fn on_back(&mut self, ctx: &mut ServerCtx<'_, C>, id: ChannelId, addr: SocketAddr) {
        let _ = (ctx, id, addr);
    }

    /// The fixed-rate tick set with [`Server::tick_rate`], on the reactor's thread.
    fn on_tick(&mut self, ctx: &mut ServerCtx<'_, C>) {
        let _ = ctx;
    }

    /// A drain began ([`ServerCtx::drain`], [`ServerHandle::drain`], or SIGTERM under
    /// [`Server::launch`]): no new players will arrive, and the server stops at `deadline` at
    /// the latest. The moment to tell the players, end the match, or save their progress.
    fn on_drain(&mut self, ctx: &mut ServerCtx<'_, C>, deadline: Instant) {
        let _ = (ctx, deadline);
    }

    /// A connection was refused before it became a channel, so no channel hook ran for it: a
    /// missing or invalid PROXY header ([`Error::Proxy`]), a failed WebSocket upgrade
    /// ([`Error::Handshake`]). `addr` is the connection's address (the balancer's, for a bad
    /// PROXY header). For counting and logging; the connection is already closing.
    fn on_refused(&mut self, ctx: &mut ServerCtx<'_, C>, addr: SocketAddr, error: &Error) {
        let _ = (ctx, addr, error);
    }

    /// A WebSocket upgrade request arrived and passed the listener's checks; no channel exists
    /// yet. Admit it, with what the request proves (a user id from a token in the query or a
    /// cookie) for the channel to read with [`ChannelCtx::login`], or refuse it with an HTTP
    /// status: the login at the door (see [`crate::ws::upgrade`]). Default: everyone is
    /// admitted.
    fn on_upgrade(
        &mut self,
        ctx: &mut ServerCtx<'_, C>,
        request: &crate::ws::UpgradeRequest<'_>,
    ) -> crate::ws::Admission {
        let _ = (ctx, request);
        crate::ws::Admission::Accept
    }

    /// SIGHUP under [`Server::launch`] re-read the TLS listeners' certificate and key files
    /// ([`Server::reload_tls`]): `Ok` when new handshakes use the new files, or why not (the
    /// old certificate stays in use). Also logged.
    fn on_tls_reload(&mut self, ctx: &mut ServerCtx<'_, C>, result: Result<(), &Error>) {
        let _ = (ctx, result);
    }
}

impl<C: ChannelHandler> ServerHandler<C> for () {}

type Route<C> =
    Box<dyn Fn(&mut C, &mut ChannelCtx<'_, C>, &Message<'_>) -> HandlerResult + Send + Sync>;

/// The action table of a channel type; see [`ChannelHandler::routes`].
pub struct Routes<C: ChannelHandler> {
    table: ActionTable<Route<C>>,
}

impl<C: ChannelHandler> Routes<C> {
    fn build() -> Self {
        let mut r = Routes {
            table: ActionTable::default(),
        };
        C::routes(&mut r);
        r
    }

    /// Routes messages whose action is `action` to `handler`: a closure or a method such as
    /// `Self::chat` with the signature
    /// `fn(&mut Self, &mut ChannelCtx<Self>, &Message) -> HandlerResult`.
    pub fn on<F>(&mut self, action: &str, handler: F) -> &mut Self
    where
        F: Fn(&mut C, &mut ChannelCtx<'_, C>, &Message<'_>) -> HandlerResult
            + Send
            + Sync
            + 'static,
    {
        self.table.insert(action, Box::new(handler));
        self
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no route is declared.
    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }
}

impl<C: ChannelHandler> fmt::Debug for Routes<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Routes").field(&self.table).finish()
    }
}

/// Channel states by slot. The state of a channel whose handler is running is taken out (its
/// handler holds it as `&mut self`), so the rest can be lent alongside it. Boxed, so that
/// taking it out and putting it back, twice per message, moves a pointer, not the game's state
/// (whose bytes, just put back, would otherwise be read again at the next message before the
/// stores reach the cache: a stall that grows with whatever else the turn writes).
type Channels<C> = Vec<Option<(ChannelId, Box<C>)>>;

#[derive(Debug, Default)]
struct Control {
    stop: bool,
    local_addr: Option<SocketAddr>,
    /// A drain began, and must end by this time.
    drain: Option<Instant>,
    /// A drain was asked for (by a handler, a handle or SIGTERM), to begin after this callback.
    drain_requested: Option<Duration>,
    /// What the server layer counts (dropped frames, handler errors, ticks).
    counters: CoreCounters,
    /// When the figures last went to the `metrics` recorder.
    #[cfg(feature = "metrics")]
    exported: Option<Instant>,
}

/// What server hooks (and, through [`ChannelCtx`], channel handlers) can do: send, broadcast,
/// look at and change other channels, close them, stop the server.
pub struct ServerCtx<'a, C: ChannelHandler> {
    reactor: &'a mut Reactor,
    channels: &'a mut Channels<C>,
    control: &'a mut Control,
}

impl<C: ChannelHandler> fmt::Debug for ServerCtx<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCtx")
            .field("channels", &self.reactor.live())
            .finish_non_exhaustive()
    }
}

impl<C: ChannelHandler> ServerCtx<'_, C> {
    /// Queues `msg` for channel `id`. Returns the bytes queued (length prefix included), or 0
    /// if the channel is closed or the message was refused (see [`try_send_to`](Self::try_send_to)).
    pub fn send_to<E: Encode + ?Sized>(&mut self, id: ChannelId, msg: &E) -> usize {
        self.try_send_to(id, msg).unwrap_or(0)
    }

    /// As [`send_to`](Self::send_to), with the reason when nothing was queued.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`], [`Error::FrameTooLarge`] (over
    /// [`Config::max_frame_len`](crate::Config::max_frame_len)), or [`Error::OutputFull`]
    /// (the slow-reader policy applied).
    pub fn try_send_to<E: Encode + ?Sized>(
        &mut self,
        id: ChannelId,
        msg: &E,
    ) -> Result<usize, Error> {
        self.reactor.send(id, msg)
    }

    /// Sends `msg` to every connected channel, encoding it once. Returns how many channels it
    /// was queued for.
    pub fn send_to_all<E: Encode + ?Sized>(&mut self, msg: &E) -> usize {
        self.reactor.broadcast(msg, |_| true).unwrap_or(0)
    }

    /// Queues `msg` for channel `id` **latest-wins**: a message of the same action queued for
    /// that channel and not yet written is replaced by this one, which goes after everything
    /// queued before it. For state that only matters in its newest version (a snapshot, a
    /// position): on a link slower than the updates, the player gets the present instead of a
    /// backlog. Ordinary messages are never dropped or reordered by it. Returns the bytes
    /// queued, or 0 (see [`try_send_to`](Self::try_send_to)).
    pub fn send_latest_to<E: Encode + ?Sized>(&mut self, id: ChannelId, msg: &E) -> usize {
        self.reactor.send_latest(id, 0, msg).unwrap_or(0)
    }

    /// As [`send_latest_to`](Self::send_latest_to), replacing only a message of the same
    /// action *and* `key` (one key per entity, say: each unit's newest position).
    pub fn send_latest_keyed_to<E: Encode + ?Sized>(
        &mut self,
        id: ChannelId,
        key: u64,
        msg: &E,
    ) -> usize {
        self.reactor.send_latest(id, key, msg).unwrap_or(0)
    }

    /// [`send_latest_to`](Self::send_latest_to) for every connected channel, encoding `msg`
    /// once. Returns how many channels it was queued for.
    pub fn send_to_all_latest<E: Encode + ?Sized>(&mut self, msg: &E) -> usize {
        self.reactor.broadcast_latest(0, msg, |_| true).unwrap_or(0)
    }

    /// [`send_latest_keyed_to`](Self::send_latest_keyed_to) for every connected channel.
    pub fn send_to_all_latest_keyed<E: Encode + ?Sized>(&mut self, key: u64, msg: &E) -> usize {
        self.reactor
            .broadcast_latest(key, msg, |_| true)
            .unwrap_or(0)
    }

    /// Whether channel `id`'s link is slower than what it is sent: the socket refused part of
    /// the last write ([`ConnStats::congested`]). The cue to send that player less.
    pub fn is_congested(&self, id: ChannelId) -> bool {
        self.reactor.conn_stats(id).is_some_and(|s| s.congested)
    }

    /// Sends `msg`, encoded once, to every channel whose state passes `filter`. A channel whose
    /// handler is running right now is not offered to `filter` (its state is the `self` of that
    /// handler, which can `ctx.send` to itself). Returns how many channels it was queued for.
    pub fn send_where<E: Encode + ?Sized>(
        &mut self,
        mut filter: impl FnMut(ChannelId, &C) -> bool,
        msg: &E,
    ) -> usize {
        let channels = &*self.channels;
        self.reactor
            .broadcast(msg, |id| match channels.get(id.slot()) {
                Some(Some((cid, c))) if *cid == id => filter(id, c),
                _ => false,
            })
            .unwrap_or(0)
    }

    /// Every other channel's state, in slot order (the channel whose handler is running is its
    /// `self`, and is not listed).
    pub fn channels(&self) -> impl Iterator<Item = (ChannelId, &C)> + '_ {
        self.channels.iter().flatten().map(|(id, c)| (*id, &**c))
    }

    /// Every other channel's state, mutable.
    pub fn channels_mut(&mut self) -> impl Iterator<Item = (ChannelId, &mut C)> + '_ {
        self.channels
            .iter_mut()
            .flatten()
            .map(|(id, c)| (*id, &mut **c))
    }

    /// The state of channel `id`, unless it is gone (or is the one whose handler is running).
    pub fn channel(&self, id: ChannelId) -> Option<&C> {
        match self.channels.get(id.slot()) {
            Some(Some((cid, c))) if *cid == id => Some(&**c),
            _ => None,
        }
    }

    /// The state of channel `id`, mutable.
    pub fn channel_mut(&mut self, id: ChannelId) -> Option<&mut C> {
        match self.channels.get_mut(id.slot()) {
            Some(Some((cid, c))) if *cid == id => Some(&mut **c),
            _ => None,
        }
    }

    /// Number of connected channels (including one whose handler is running).
    pub fn channel_count(&self) -> usize {
        self.reactor.live()
    }

    /// Whether channel `id` is still connected (an away channel counts: it may come back).
    pub fn is_connected(&self, id: ChannelId) -> bool {
        self.reactor.is_open(id)
    }

    /// Whether channel `id` is away: its link dropped and its session waits for a resume
    /// (see [`ChannelHandler::on_away`]).
    pub fn is_away(&self, id: ChannelId) -> bool {
        self.reactor.is_away(id)
    }

    /// The remote address of channel `id`.
    pub fn addr_of(&self, id: ChannelId) -> Option<SocketAddr> {
        self.reactor.peer_addr(id)
    }

    /// Bytes queued for channel `id` and not yet taken by its socket.
    pub fn queued_bytes(&self, id: ChannelId) -> usize {
        self.reactor.queued(id)
    }

    /// What channel `id` carried so far, and its heartbeat RTT (see [`crate::stats`]).
    /// `None` once the channel is gone.
    pub fn stats_of(&self, id: ChannelId) -> Option<ConnStats> {
        self.reactor.conn_stats(id)
    }

    /// [`stats_of`](Self::stats_of) with [`ConnStats::kernel_unsent`] filled in: the kernel's
    /// unsent bytes, asked through `TCP_INFO` (a netlink query of a few microseconds: ask when
    /// you show it or once a second, not per message).
    pub fn stats_with_kernel_of(&self, id: ChannelId) -> Option<ConnStats> {
        self.reactor.conn_stats_with_kernel(id)
    }

    /// The kernel's smoothed round-trip time of channel `id`'s TCP connection (`TCP_INFO`),
    /// which needs nothing from the client. One netlink query (a few microseconds): ask it
    /// when you show it, not per message.
    ///
    /// # Errors
    ///
    /// `NotConnected` once the channel is gone; `Unsupported` on systems other than Linux.
    pub fn kernel_rtt_of(&self, id: ChannelId) -> io::Result<Duration> {
        self.reactor.kernel_rtt(id)
    }

    /// The server's figures so far, exact as of this moment (a handle's
    /// [`ServerHandle::stats`] sees them as of the reactor's last turn).
    pub fn server_stats(&self) -> ServerStats {
        ServerStats::compose(
            self.reactor.live(),
            self.reactor.counters(),
            &self.control.counters,
        )
    }

    /// Closes channel `id`: what was queued for it is still delivered; its hooks run after the
    /// current handler returns.
    pub fn close(&mut self, id: ChannelId) {
        self.reactor.close(id, DisconnectReason::Closed);
    }

    /// Stops the server once the current handler returns: no more accepts, every channel
    /// closed with [`DisconnectReason::ServerStopped`], queued output flushed within
    /// [`Config::linger`](crate::Config::linger).
    pub fn stop(&mut self) {
        self.control.stop = true;
    }

    /// Begins a drain once the current handler returns: no new players (the listening sockets
    /// close, so a load balancer's health check fails and sends them elsewhere), the connected
    /// ones are served as usual, and the server stops when the last has left or `within` has
    /// passed, whichever is first. [`ServerHandler::on_drain`] runs when it begins. A second
    /// drain can only bring the deadline closer.
    pub fn drain(&mut self, within: Duration) {
        let within = self
            .control
            .drain_requested
            .map_or(within, |w| w.min(within));
        self.control.drain_requested = Some(within);
    }

    /// Whether a drain has begun.
    pub fn is_draining(&self) -> bool {
        self.control.drain.is_some()
    }

    /// What channel `id` was admitted with by [`ServerHandler::on_upgrade`], if it is a `T`.
    pub fn login_of<T: std::any::Any>(&self, id: ChannelId) -> Option<&T> {
        self.reactor.login(id).and_then(|l| l.get())
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.control.local_addr
    }
}

/// What a channel handler gets besides its own state: its id and address, `send` to itself,
/// the server state, and (through `Deref`) everything a [`ServerCtx`] does.
pub struct ChannelCtx<'a, C: ChannelHandler> {
    id: ChannelId,
    server: &'a mut C::Server,
    inner: ServerCtx<'a, C>,
}

impl<C: ChannelHandler> fmt::Debug for ChannelCtx<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelCtx")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<'a, C: ChannelHandler> Deref for ChannelCtx<'a, C> {
    type Target = ServerCtx<'a, C>;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl<C: ChannelHandler> DerefMut for ChannelCtx<'_, C> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

impl<'a, C: ChannelHandler> ChannelCtx<'a, C> {
    /// This channel's id.
    pub fn id(&self) -> ChannelId {
        self.id
    }

    /// What this channel was admitted with by [`ServerHandler::on_upgrade`] (a user id, say),
    /// if it is a `T`; `None` for TCP players and for upgrades admitted without one.
    pub fn login<T: std::any::Any>(&self) -> Option<&T> {
        self.inner.login_of(self.id)
    }

    /// The remote address (Python: `self.addr`).
    pub fn addr(&self) -> SocketAddr {
        // Known from accept until the socket is gone, which is after the last hook.
        self.inner
            .reactor
            .peer_addr(self.id)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Whether this channel is still connected (Python: `is_connected`); an away channel
    /// counts (see [`is_away`](Self::is_away)).
    pub fn is_connected(&self) -> bool {
        self.inner.reactor.is_open(self.id)
    }

    /// Whether this channel is away: its link dropped and its session waits for a resume.
    pub fn is_away(&self) -> bool {
        self.inner.reactor.is_away(self.id)
    }

    /// What this channel carried so far, and its heartbeat RTT; see [`crate::stats`].
    pub fn stats(&self) -> ConnStats {
        let now = Instant::now();
        self.inner
            .reactor
            .conn_stats(self.id)
            .unwrap_or(ConnStats::empty(now))
    }

    /// [`stats`](Self::stats) with [`ConnStats::kernel_unsent`] filled in; see
    /// [`ServerCtx::stats_with_kernel_of`].
    pub fn stats_with_kernel(&self) -> ConnStats {
        let now = Instant::now();
        self.inner
            .reactor
            .conn_stats_with_kernel(self.id)
            .unwrap_or(ConnStats::empty(now))
    }

    /// The kernel's smoothed RTT of this channel's TCP connection; see
    /// [`ServerCtx::kernel_rtt_of`].
    ///
    /// # Errors
    ///
    /// As [`ServerCtx::kernel_rtt_of`].
    pub fn kernel_rtt(&self) -> io::Result<Duration> {
        self.inner.reactor.kernel_rtt(self.id)
    }

    /// Queues `msg` to this channel's client. Returns the bytes queued (length prefix
    /// included), or 0 once the channel is closed (Python: `send`).
    pub fn send<E: Encode + ?Sized>(&mut self, msg: &E) -> usize {
        self.inner.send_to(self.id, msg)
    }

    /// Sends `msg` to this channel latest-wins; see [`ServerCtx::send_latest_to`].
    pub fn send_latest<E: Encode + ?Sized>(&mut self, msg: &E) -> usize {
        self.inner.send_latest_to(self.id, msg)
    }

    /// Sends `msg` to this channel latest-wins by action and `key`; see
    /// [`ServerCtx::send_latest_keyed_to`].
    pub fn send_latest_keyed<E: Encode + ?Sized>(&mut self, key: u64, msg: &E) -> usize {
        self.inner.send_latest_keyed_to(self.id, key, msg)
    }

    /// As [`send`](Self::send), with the reason when nothing was queued.
    ///
    /// # Errors
    ///
    /// As [`ServerCtx::try_send_to`].
    pub fn try_send<E: Encode + ?Sized>(&mut self, msg: &E) -> Result<usize, Error> {
        self.inner.try_send_to(self.id, msg)
    }

    /// Closes this channel after what is queued is delivered.
    pub fn close_self(&mut self) {
        let id = self.id;
        self.inner.close(id);
    }

    /// The server-wide state (Python: `self.server`).
    pub fn server(&mut self) -> &mut C::Server {
        self.server
    }

    /// The server state and the server context at once, for code that needs both.
    pub fn split(&mut self) -> (&mut C::Server, &mut ServerCtx<'a, C>) {
        (self.server, &mut self.inner)
    }
}

struct Tick {
    period: Duration,
    next: Instant,
}

type Factory<C> =
    Box<dyn FnMut(&mut <C as ChannelHandler>::Server, ChannelId, SocketAddr) -> C + Send>;
type Call<C> = Box<dyn FnOnce(&mut <C as ChannelHandler>::Server, &mut ServerCtx<'_, C>) + Send>;

enum Command<C: ChannelHandler> {
    SendTo(ChannelId, Vec<u8>),
    SendToAll(Vec<u8>),
    /// Latest-wins, with its key.
    SendLatestTo(ChannelId, u64, Vec<u8>),
    SendToAllLatest(u64, Vec<u8>),
    Close(ChannelId),
    Stop,
    Drain(Duration),
    Call(Call<C>),
}

struct Mailbox<C: ChannelHandler> {
    commands: Mutex<Vec<Command<C>>>,
    remote: Remote,
    max_frame_len: usize,
    vitals: Vitals,
    stats: Published,
    /// The certificates of the TLS listeners, for a reload from any thread.
    #[cfg(feature = "tls")]
    tls: Mutex<Vec<crate::tls::TlsAcceptor>>,
}

impl<C: ChannelHandler> Mailbox<C> {
    /// Re-reads the certificate files of every TLS listener; the first error, if any (the
    /// others are still reloaded).
    fn reload_tls(&self) -> Result<(), Error> {
        #[cfg(feature = "tls")]
        {
            let acceptors = self.tls.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let mut first_err = None;
            for a in &acceptors {
                if let Err(e) = a.reload() {
                    log::error!("repod: TLS reload failed, keeping the certificate in use: {e}");
                    first_err.get_or_insert(Error::Tls(e));
                }
            }
            if first_err.is_none() && !acceptors.is_empty() {
                log::info!("repod: TLS certificates reloaded");
            }
            first_err.map_or(Ok(()), Err)
        }
        #[cfg(not(feature = "tls"))]
        Ok(())
    }

    /// Remembers a TLS listener's certificate for reloads.
    #[allow(unused_variables)]
    fn add_tls(&self, listen: &Listen) {
        #[cfg(feature = "tls")]
        if let Some(acceptor) = &listen.tls {
            let mut list = self.tls.lock().unwrap_or_else(|p| p.into_inner());
            if !list.iter().any(|a| a.same(acceptor)) {
                list.push(acceptor.clone());
            }
        }
    }

    fn has_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return !self
            .tls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty();
        #[cfg(not(feature = "tls"))]
        false
    }
    fn post(&self, cmd: Command<C>) -> bool {
        let mut q = self.commands.lock().unwrap_or_else(|p| p.into_inner());
        let was_empty = q.is_empty();
        q.push(cmd);
        drop(q);
        // One wakeup per batch of commands, not per command.
        if was_empty {
            self.remote.wake();
        }
        true
    }
}

/// The server's own state, separate from the reactor so both can be borrowed at once.
struct Core<C: ChannelHandler> {
    state: C::Server,
    channels: Channels<C>,
    routes: Routes<C>,
    factory: Factory<C>,
    control: Control,
    tick: Option<Tick>,
    mailbox: Arc<Mailbox<C>>,
    drained: Vec<Command<C>>,
    /// How long a drain begun by SIGTERM may take.
    sigterm_drain: Duration,
    /// When the queued output total was last published, and what it was.
    queued_published: Option<Instant>,
    queued_last: usize,
    /// When health and statistics are next published; `None` before the first turn.
    publish_due: Option<Instant>,
    /// A turn went by without publishing: publish at `publish_due` even if nothing happens.
    publish_pending: bool,
}

impl<C: ChannelHandler> Core<C> {
    /// Begins the drain a handler, a handle or a signal asked for, if any.
    fn begin_drain(&mut self, reactor: &mut Reactor) {
        let Some(within) = self.control.drain_requested.take() else {
            return;
        };
        let deadline = Instant::now() + within;
        if let Some(d) = self.control.drain.as_mut() {
            *d = (*d).min(deadline);
            return;
        }
        log::info!(
            "repod: draining: no new players; stopping when the last leaves, within {within:?}"
        );
        reactor.stop_listening();
        // No listener is left to come back through: away sessions end, drops close.
        reactor.end_sessions();
        self.control.drain = Some(deadline);
        self.mailbox.vitals.set_draining();
        self.mailbox.vitals.set_listening(false);
        let (state, mut ctx) = self.ctx(reactor);
        state.on_drain(&mut ctx, deadline);
    }

    fn ctx<'a>(&'a mut self, reactor: &'a mut Reactor) -> (&'a mut C::Server, ServerCtx<'a, C>) {
        (
            &mut self.state,
            ServerCtx {
                reactor,
                channels: &mut self.channels,
                control: &mut self.control,
            },
        )
    }

    /// Runs `f` with channel `id`'s state taken out and a context over everything else.
    fn with_channel<R>(
        &mut self,
        reactor: &mut Reactor,
        id: ChannelId,
        f: impl FnOnce(&mut C, &mut ChannelCtx<'_, C>, &Routes<C>) -> R,
    ) -> Option<R> {
        let slot = self.channels.get_mut(id.slot())?;
        if !matches!(slot, Some((cid, _)) if *cid == id) {
            return None;
        }
        let (_, mut channel) = slot.take()?;
        let mut ctx = ChannelCtx {
            id,
            server: &mut self.state,
            inner: ServerCtx {
                reactor,
                channels: &mut self.channels,
                control: &mut self.control,
            },
        };
        let r = f(&mut *channel, &mut ctx, &self.routes);
        self.channels[id.slot()] = Some((id, channel));
        Some(r)
    }

    fn run_commands(&mut self, reactor: &mut Reactor) {
        {
            let mut q = self
                .mailbox
                .commands
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            std::mem::swap(&mut *q, &mut self.drained);
        }
        let mut commands = std::mem::take(&mut self.drained);
        for cmd in commands.drain(..) {
            match cmd {
                Command::SendTo(id, framed) => {
                    let _ = reactor.send_framed(id, &framed);
                }
                Command::SendToAll(framed) => {
                    reactor.send_framed_to_all(&framed);
                }
                Command::SendLatestTo(id, key, framed) => {
                    let _ = reactor.send_framed_latest(id, key, &framed);
                }
                Command::SendToAllLatest(key, framed) => {
                    reactor.framed_to_all_latest(key, &framed, &mut |_| true);
                }
                Command::Close(id) => reactor.close(id, DisconnectReason::Closed),
                Command::Stop => self.control.stop = true,
                Command::Drain(within) => {
                    let (_, mut ctx) = self.ctx(reactor);
                    ctx.drain(within);
                }
                Command::Call(f) => {
                    let (state, mut ctx) = self.ctx(reactor);
                    f(state, &mut ctx);
                }
            }
        }
        self.drained = commands;
    }
}

impl<C: ChannelHandler> Core<C> {
    /// Publishes health and statistics for other threads' handles.
    fn publish(&mut self, reactor: &Reactor, now: Instant) {
        self.publish_due = Some(now + PUBLISH_EVERY);
        self.publish_pending = false;
        let vitals = &self.mailbox.vitals;
        vitals.turned(now, reactor.live());
        let stats =
            ServerStats::compose(reactor.live(), reactor.counters(), &self.control.counters);
        self.mailbox.stats.publish(&stats);
        #[cfg(feature = "metrics")]
        if self.control.exported.is_none_or(|t| now >= t + HEARTBEAT) {
            crate::stats::export::record(&stats);
            self.control.exported = Some(now);
        }
        if self
            .queued_published
            .is_none_or(|t| now >= t + QUEUED_REFRESH)
        {
            self.queued_last = reactor.queued_total();
            vitals.set_queued_output(self.queued_last);
            self.queued_published = Some(now);
        }
    }
}

impl<C: ChannelHandler> Driver for Core<C> {
    fn accepted(&mut self, reactor: &mut Reactor, id: ChannelId) {
        let Some(addr) = reactor.peer_addr(id) else {
            return;
        };
        let channel = (self.factory)(&mut self.state, id, addr);
        if self.channels.len() <= id.slot() {
            self.channels.resize_with(id.slot() + 1, || None);
        }
        self.channels[id.slot()] = Some((id, Box::new(channel)));
        // Same order as Python repod: greeting, channel hook, server hook. With sessions on,
        // the reactor greeted already, with the session's token.
        if !reactor.greets() {
            let _ = reactor.send(id, &msg! { "action": "connected" });
        }
        let outcome = self.with_channel(reactor, id, |ch, ctx, _| guard(|| ch.on_connect(ctx)));
        if let Some(Err(panic)) = outcome {
            reactor.close(id, DisconnectReason::Error(Error::HandlerPanic(panic)));
            return;
        }
        let (state, mut ctx) = self.ctx(reactor);
        state.on_connect(&mut ctx, id, addr);
    }

    fn frame(&mut self, reactor: &mut Reactor, id: ChannelId, payload: &[u8]) {
        let max_depth = reactor.config().max_depth;
        let outcome = self.with_channel(reactor, id, |ch, ctx, routes| {
            let msg = match Message::parse_with_depth(payload, max_depth) {
                Ok(m) => m,
                Err(e) => {
                    log::warn!("repod: {id:?}: dropped a frame: {e}");
                    ctx.control.counters.count_drop(&e);
                    return guard(|| ch.on_error(ctx, &e));
                }
            };
            guard(|| {
                let result = match routes.table.get(msg.action_bytes()) {
                    Some(route) => route(ch, ctx, &msg),
                    None => ch.network_received(ctx, &msg),
                };
                if let Err(e) = result {
                    ctx.control.counters.handler_errors += 1;
                    ch.on_error(ctx, &e);
                }
            })
        });
        if let Some(Err(panic)) = outcome {
            log::error!("repod: {id:?}: handler panicked: {panic}; closing the connection");
            reactor.close(id, DisconnectReason::Error(Error::HandlerPanic(panic)));
        }
    }

    fn closed(&mut self, reactor: &mut Reactor, id: ChannelId, reason: DisconnectReason) {
        let outcome = self.with_channel(reactor, id, |ch, ctx, _| {
            guard(|| {
                if let DisconnectReason::Error(e) = &reason {
                    ch.on_error(ctx, e);
                }
                ch.on_close(ctx, &reason);
            })
        });
        if let Some(Err(panic)) = outcome {
            log::error!("repod: {id:?}: on_close panicked: {panic}");
        }
        let Some(Some((_, channel))) = self.channels.get_mut(id.slot()).map(Option::take) else {
            return;
        };
        log::debug!("repod: {id:?} disconnected: {reason}");
        let (state, mut ctx) = self.ctx(reactor);
        state.on_disconnect(&mut ctx, id, *channel, &reason);
    }

    fn away(&mut self, reactor: &mut Reactor, id: ChannelId, reason: &DisconnectReason) {
        let outcome =
            self.with_channel(reactor, id, |ch, ctx, _| guard(|| ch.on_away(ctx, reason)));
        if let Some(Err(panic)) = outcome {
            log::error!("repod: {id:?}: on_away panicked: {panic}");
        }
        let (state, mut ctx) = self.ctx(reactor);
        state.on_away(&mut ctx, id, reason);
    }

    fn back(&mut self, reactor: &mut Reactor, id: ChannelId) {
        let outcome = self.with_channel(reactor, id, |ch, ctx, _| guard(|| ch.on_back(ctx)));
        if let Some(Err(panic)) = outcome {
            log::error!("repod: {id:?}: on_back panicked: {panic}");
        }
        let addr = reactor
            .peer_addr(id)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (state, mut ctx) = self.ctx(reactor);
        state.on_back(&mut ctx, id, addr);
    }

    fn woken(&mut self, reactor: &mut Reactor) {
        self.run_commands(reactor);
    }

    fn upgrade(
        &mut self,
        reactor: &mut Reactor,
        request: &crate::ws::UpgradeRequest<'_>,
    ) -> Result<Option<crate::ws::Login>, u16> {
        let (state, mut ctx) = self.ctx(reactor);
        match guard(|| state.on_upgrade(&mut ctx, request)) {
            Ok(crate::ws::Admission::Accept) => Ok(None),
            Ok(crate::ws::Admission::AcceptAs(login)) => Ok(Some(login)),
            Ok(crate::ws::Admission::Refuse(status)) => Err(status),
            Err(panic) => {
                log::error!("repod: on_upgrade panicked: {panic}");
                Err(500)
            }
        }
    }

    fn refused(&mut self, reactor: &mut Reactor, addr: SocketAddr, error: Error) {
        let (state, mut ctx) = self.ctx(reactor);
        state.on_refused(&mut ctx, addr, &error);
    }

    fn signalled(&mut self, reactor: &mut Reactor, signal: i32) {
        if signal == signal_hook::consts::SIGHUP {
            log::info!("repod: SIGHUP received, reloading TLS certificates");
            let result = self.mailbox.reload_tls();
            let (state, mut ctx) = self.ctx(reactor);
            state.on_tls_reload(&mut ctx, result.as_ref().map(drop));
        } else if signal == signal_hook::consts::SIGTERM {
            log::info!(
                "repod: SIGTERM received, draining for at most {:?}",
                self.sigterm_drain
            );
            self.control.drain_requested = Some(self.sigterm_drain);
            self.begin_drain(reactor);
        } else {
            log::info!("repod: signal {signal} received, stopping");
            self.control.stop = true;
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        // Wake at least once a heartbeat, so `health()` shows a turning reactor; sooner while
        // output was queued, since it is published before the turn's writes and may be stale.
        let refresh = if self.queued_last > 0 {
            QUEUED_REFRESH
        } else {
            HEARTBEAT
        };
        // Before the first turn: at once, so a server that nobody has reached yet is alive too.
        let heartbeat = Some(
            self.queued_published
                .map_or_else(Instant::now, |t| t + refresh),
        );
        // Figures left unpublished by a busy turn go out at most PUBLISH_IDLE later. Not at
        // `publish_due` itself: a timer 1 ms out after every turn measurably slows a ping-pong
        // (BENCHMARKS-HISTORY.md, "RTT"); one 50 ms out only moves later while messages flow, which
        // leaves the reactor's alarm as it was set.
        let publish = self
            .publish_due
            .filter(|_| self.publish_pending)
            .map(|due| due + PUBLISH_IDLE);
        [
            self.tick.as_ref().map(|t| t.next),
            self.control.drain,
            heartbeat,
            publish,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn timers(&mut self, reactor: &mut Reactor, now: Instant) {
        if self.control.drain_requested.is_some() {
            self.begin_drain(reactor);
        }
        if self.publish_due.is_none_or(|due| now >= due) {
            self.publish(reactor, now);
        } else {
            self.publish_pending = true;
        }
        if let Some(deadline) = self.control.drain {
            if reactor.live() == 0 || now >= deadline {
                log::info!(
                    "repod: drain over ({} players left), stopping",
                    reactor.live()
                );
                self.control.stop = true;
            }
        }
        let Some(tick) = self.tick.as_mut() else {
            return;
        };
        if now < tick.next {
            return;
        }
        // The schedule is start + k * period, so ticks do not drift. After a stall of more
        // than a few periods, skip the missed ticks rather than run a burst of them.
        let behind = now.duration_since(tick.next);
        if behind > tick.period * 4 {
            let missed = (behind.as_nanos() / tick.period.as_nanos()) as u32;
            log::warn!("repod: tick is {behind:?} late; skipping {missed} ticks");
            tick.next += tick.period * missed;
        }
        tick.next += tick.period;
        let period = tick.period;
        self.mailbox.vitals.ticked(now);
        let started = Instant::now();
        let (state, mut ctx) = self.ctx(reactor);
        state.on_tick(&mut ctx);
        let took = started.elapsed();
        self.control.counters.count_tick(took, period);
    }
}

/// Binds the first of `listen`'s addresses that can be bound.
fn listen(reactor: &mut Reactor, listen: Listen, ws: Option<WsOptions>) -> io::Result<SocketAddr> {
    let tls = listen.tls_acceptor();
    let addrs = listen
        .addrs
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut last_err = None;
    for a in addrs {
        match reactor.listen(a, ws.clone(), listen.reuse_port, listen.proxy, tls.clone()) {
            Ok(local) => return Ok(local),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind")))
}

/// A game server. See the [module documentation](self).
pub struct Server<C: ChannelHandler> {
    reactor: Reactor,
    core: Core<C>,
    local_addr: SocketAddr,
    ws_addr: Option<SocketAddr>,
}

impl<C: ChannelHandler> fmt::Debug for Server<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("reactor", &self.reactor)
            .field("routes", &self.core.routes)
            .finish_non_exhaustive()
    }
}

impl<C: ChannelHandler + Default> Server<C> {
    /// Binds a server to `addr` (port 0 picks a free port: see
    /// [`local_addr`](Self::local_addr)). Each connection's state starts as `C::default()`.
    ///
    /// # Errors
    ///
    /// The address does not resolve, or cannot be bound.
    pub fn bind(addr: impl BindAddr, state: C::Server) -> io::Result<Self> {
        Self::bind_with(addr, state, |_, _, _| C::default())
    }
}

impl<C: ChannelHandler> Server<C> {
    /// Binds a server whose channel states are made by `factory` (Python: `channel_class`),
    /// which gets the server state, the new channel's id and its address.
    ///
    /// # Errors
    ///
    /// The address does not resolve, or cannot be bound.
    pub fn bind_with(
        addr: impl BindAddr,
        state: C::Server,
        factory: impl FnMut(&mut C::Server, ChannelId, SocketAddr) -> C + Send + 'static,
    ) -> io::Result<Self> {
        let cfg = Config::default();
        let mut reactor = Reactor::new(cfg)?;
        let addr = addr.into_listen();
        let mailbox = Arc::new(Mailbox {
            commands: Mutex::new(Vec::new()),
            remote: reactor.remote(),
            max_frame_len: reactor.config().max_frame_len,
            vitals: Vitals::new(),
            stats: Published::new(),
            #[cfg(feature = "tls")]
            tls: Mutex::new(Vec::new()),
        });
        mailbox.add_tls(&addr);
        let local_addr = listen(&mut reactor, addr, None)?;
        log::info!("repod: listening on {local_addr}");
        Ok(Server {
            reactor,
            core: Core {
                state,
                channels: Vec::new(),
                routes: Routes::build(),
                factory: Box::new(factory),
                control: Control {
                    stop: false,
                    local_addr: Some(local_addr),
                    drain: None,
                    drain_requested: None,
                    counters: CoreCounters::default(),
                    #[cfg(feature = "metrics")]
                    exported: None,
                },
                tick: None,
                mailbox,
                drained: Vec::new(),
                sigterm_drain: DEFAULT_SIGTERM_DRAIN,
                queued_published: None,
                queued_last: 0,
                publish_due: None,
                publish_pending: false,
            },
            local_addr,
            ws_addr: None,
        })
    }

    /// Also accepts players over WebSocket on `addr`, upgrading on the path `/` from pages of
    /// any origin ([`listen_ws_with`](Self::listen_ws_with) sets both). Returns the bound
    /// address (port 0 picks a free port).
    ///
    /// WebSocket players are channels like any other: the same greeting, handlers, hooks,
    /// limits and broadcasts; one binary message carries one msgpack map (see [`crate::ws`]).
    /// WebSocket needs its own port: a repod TCP client waits for the server's greeting before
    /// it sends anything, so a shared port could not tell the two apart by their first bytes.
    ///
    /// ```no_run
    /// # use repod::{ChannelHandler, Routes, Server};
    /// # #[derive(Default)] struct Player;
    /// # impl ChannelHandler for Player { type Server = (); fn routes(_: &mut Routes<Self>) {} }
    /// let mut server = Server::<Player>::bind("0.0.0.0:5071", ())?;
    /// server.listen_ws("0.0.0.0:5072")?; // browsers: new WebSocket("ws://host:5072/")
    /// server.launch()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The address does not resolve, or cannot be bound.
    pub fn listen_ws(&mut self, addr: impl BindAddr) -> io::Result<SocketAddr> {
        self.listen_ws_with(addr, WsOptions::default())
    }

    /// As [`listen_ws`](Self::listen_ws), with a path, an `Origin` allow-list and handshake
    /// limits ([`WsOptions`]).
    ///
    /// # Errors
    ///
    /// The address does not resolve, or cannot be bound.
    pub fn listen_ws_with(
        &mut self,
        addr: impl BindAddr,
        opts: WsOptions,
    ) -> io::Result<SocketAddr> {
        let path = opts.get_path().to_owned();
        let addr = addr.into_listen();
        self.core.mailbox.add_tls(&addr);
        let local = listen(&mut self.reactor, addr, Some(opts))?;
        log::info!("repod: listening for WebSocket on {local}{path}");
        self.ws_addr.get_or_insert(local);
        Ok(local)
    }

    /// The address of the first WebSocket listener, if any.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws_addr
    }

    /// Re-reads the certificate chain and key files of every TLS listener: new handshakes use
    /// the new certificate, connections already open carry on. SIGHUP does this under
    /// [`launch`](Self::launch); [`ServerHandle::reload_tls`] does it from any thread.
    ///
    /// # Errors
    ///
    /// [`Error::Tls`]: a file is missing, is not PEM, or the key does not match; that listener
    /// keeps its certificate.
    pub fn reload_tls(&self) -> Result<(), Error> {
        self.core.mailbox.reload_tls()
    }

    /// Replaces the limits and tuning (see [`Config`]); applies to connections accepted later.
    pub fn config(mut self, cfg: Config) -> Self {
        let max = cfg.max_frame_len;
        self.core
            .mailbox
            .vitals
            .set_max_connections(cfg.max_connections);
        self.reactor.set_config(cfg);
        if let Some(m) = Arc::get_mut(&mut self.core.mailbox) {
            m.max_frame_len = max;
        }
        self
    }

    /// How long a drain begun by SIGTERM under [`launch`](Self::launch) may last (default
    /// 30 s): the orchestrator's grace period, less a margin. SIGINT (Ctrl-C) still stops at
    /// once.
    pub fn drain_on_sigterm(mut self, within: Duration) -> Self {
        self.core.sigterm_drain = within;
        self
    }

    /// Calls [`ServerHandler::on_tick`] `hz` times a second on the reactor's thread, on a fixed
    /// schedule that does not drift. `hz <= 0` turns the tick off.
    pub fn tick_rate(mut self, hz: f64) -> Self {
        self.core.tick = (hz > 0.0 && hz.is_finite()).then(|| {
            let period = Duration::from_secs_f64(1.0 / hz);
            Tick {
                period,
                next: Instant::now() + period,
            }
        });
        self
    }

    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server-wide state.
    pub fn state(&self) -> &C::Server {
        &self.core.state
    }

    /// The server-wide state, mutable.
    pub fn state_mut(&mut self) -> &mut C::Server {
        &mut self.core.state
    }

    /// Number of connected channels.
    pub fn channel_count(&self) -> usize {
        self.reactor.live()
    }

    /// Runs `f` with the server state and a context, outside any handler: for code that steps
    /// the server from its own loop and wants to send or broadcast.
    pub fn with_ctx<R>(&mut self, f: impl FnOnce(&mut C::Server, &mut ServerCtx<'_, C>) -> R) -> R {
        let (state, mut ctx) = self.core.ctx(&mut self.reactor);
        f(state, &mut ctx)
    }

    /// A handle for other threads: send, broadcast, close, stop, or run code on the reactor.
    pub fn handle(&self) -> ServerHandle<C> {
        ServerHandle {
            mailbox: self.core.mailbox.clone(),
            local_addr: self.local_addr,
        }
    }

    /// Runs one turn of the reactor: waits up to `timeout` for network activity or the next
    /// tick (`None`: no limit), then handles everything that is ready. For servers stepped from
    /// the caller's own loop; see [`run`](Self::run) for the rest.
    ///
    /// # Errors
    ///
    /// The poll itself failed (not an error of one connection: those go to the handlers).
    pub fn step(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.reactor.turn(timeout, &mut self.core)
    }

    /// Whether [`ServerCtx::stop`] or [`ServerHandle::stop`] (or a signal, under
    /// [`launch`](Self::launch)) asked the server to stop.
    pub fn is_stop_requested(&self) -> bool {
        self.core.control.stop
    }

    /// Runs in the calling thread until something asks the server to stop, then stops
    /// gracefully (see [`shutdown`](Self::shutdown)).
    ///
    /// # Errors
    ///
    /// The poll failed.
    pub fn run(&mut self) -> io::Result<()> {
        while !self.core.control.stop {
            self.step(None)?;
        }
        self.shutdown()
    }

    /// Runs in the foreground until Ctrl-C (SIGINT) or SIGTERM, then stops gracefully and
    /// returns: the Rust counterpart of Python's `launch()`.
    ///
    /// # Errors
    ///
    /// The signal handlers could not be installed, or the poll failed.
    pub fn launch(mut self) -> io::Result<()> {
        let hangup = self.core.mailbox.has_tls();
        self.reactor.watch_signals(hangup)?;
        self.run()
    }

    /// Stops now: no more accepts; every channel closed with
    /// [`DisconnectReason::ServerStopped`] (hooks called once each); queued output flushed,
    /// waiting at most [`Config::linger`](crate::Config::linger) for slow clients.
    ///
    /// # Errors
    ///
    /// The poll failed.
    pub fn shutdown(&mut self) -> io::Result<()> {
        self.core.control.stop = true;
        self.reactor.stop_listening();
        self.core.mailbox.vitals.set_listening(false);
        // Commands posted before the stop still run (a final broadcast, say).
        self.core.run_commands(&mut self.reactor);
        let ids: Vec<ChannelId> = self.reactor.open_ids().collect();
        for id in ids {
            self.reactor.close(id, DisconnectReason::ServerStopped);
        }
        let deadline = Instant::now() + self.reactor.config().linger + Duration::from_millis(100);
        while self.reactor.sockets() > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let saved = self.core.tick.take();
            let r = self.reactor.turn(Some(deadline - now), &mut self.core);
            self.core.tick = saved;
            r?;
        }
        log::info!("repod: server on {} stopped", self.local_addr);
        self.core.mailbox.vitals.set_stopped();
        Ok(())
    }

    /// Consumes the server, returning its state.
    pub fn into_state(self) -> C::Server {
        self.core.state
    }
}

impl<C> Server<C>
where
    C: ChannelHandler + Send,
    C::Server: Send,
{
    /// Runs the server on its own thread (Python: `start_background()`), for a player who
    /// hosts and plays in one process. The returned value stops and joins it.
    ///
    /// # Errors
    ///
    /// The thread could not be spawned.
    pub fn start_background(mut self) -> io::Result<BackgroundServer<C>> {
        let handle = self.handle();
        let thread = std::thread::Builder::new()
            .name(format!("repod-server-{}", self.local_addr))
            .spawn(move || {
                self.run()?;
                Ok(self.into_state())
            })?;
        Ok(BackgroundServer {
            handle,
            thread: Some(thread),
        })
    }
}

/// A thread-safe handle to a running server: `Send`, `Sync` and cheap to clone. Each call
/// posts a command that the reactor runs on its own thread, in order.
pub struct ServerHandle<C: ChannelHandler> {
    mailbox: Arc<Mailbox<C>>,
    local_addr: SocketAddr,
}

impl<C: ChannelHandler> Clone for ServerHandle<C> {
    fn clone(&self) -> Self {
        ServerHandle {
            mailbox: self.mailbox.clone(),
            local_addr: self.local_addr,
        }
    }
}

impl<C: ChannelHandler> fmt::Debug for ServerHandle<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl<C: ChannelHandler> ServerHandle<C> {
    fn framed<E: Encode + ?Sized>(&self, msg: &E) -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        match frame::encode_frame_with(&mut buf, self.mailbox.max_frame_len, |b| msg.encode(b)) {
            Ok(_) => Some(buf),
            Err(e) => {
                log::error!("repod: not sent: {e}");
                None
            }
        }
    }

    /// Sends `msg` to channel `id` from any thread. Returns the bytes queued; the message is
    /// dropped later if the channel has closed meanwhile.
    pub fn send_to<E: Encode + ?Sized>(&self, id: ChannelId, msg: &E) -> usize {
        let Some(framed) = self.framed(msg) else {
            return 0;
        };
        let n = framed.len();
        self.mailbox.post(Command::SendTo(id, framed));
        n
    }

    /// Sends `msg` to every channel connected when the reactor runs the command.
    pub fn send_to_all<E: Encode + ?Sized>(&self, msg: &E) -> usize {
        let Some(framed) = self.framed(msg) else {
            return 0;
        };
        let n = framed.len();
        self.mailbox.post(Command::SendToAll(framed));
        n
    }

    /// Sends `msg` to channel `id` latest-wins by action and `key` (0 for the action alone),
    /// from any thread; see [`ServerCtx::send_latest_keyed_to`]. Returns the bytes queued.
    pub fn send_latest_to<E: Encode + ?Sized>(&self, id: ChannelId, key: u64, msg: &E) -> usize {
        let Some(framed) = self.framed(msg) else {
            return 0;
        };
        let n = framed.len();
        self.mailbox.post(Command::SendLatestTo(id, key, framed));
        n
    }

    /// Sends `msg` latest-wins by action and `key` (0 for the action alone) to every channel
    /// connected when the reactor runs the command; see [`ServerCtx::send_to_all_latest`].
    pub fn send_to_all_latest<E: Encode + ?Sized>(&self, key: u64, msg: &E) -> usize {
        let Some(framed) = self.framed(msg) else {
            return 0;
        };
        let n = framed.len();
        self.mailbox.post(Command::SendToAllLatest(key, framed));
        n
    }

    /// Closes channel `id` (its queued output is still delivered).
    pub fn close(&self, id: ChannelId) {
        self.mailbox.post(Command::Close(id));
    }

    /// Asks the server to stop gracefully; see [`Server::shutdown`].
    pub fn stop(&self) {
        self.mailbox.post(Command::Stop);
    }

    /// Asks the server to drain: stop accepting at once, serve the connected players, and stop
    /// when the last has left or `within` has passed. See [`ServerCtx::drain`].
    pub fn drain(&self, within: Duration) {
        self.mailbox.post(Command::Drain(within));
    }

    /// The server's health and capacity, read without waiting for the reactor (see
    /// [`crate::health`]).
    pub fn health(&self) -> Health {
        self.mailbox.vitals.read()
    }

    /// The server's figures, read from atomics without waiting for the reactor: they are
    /// published at most once a millisecond, and within 50 ms of any change (an idle
    /// reactor still publishes once a second); see [`crate::stats`].
    pub fn stats(&self) -> ServerStats {
        self.mailbox.stats.snapshot()
    }

    /// Runs `f` on the reactor's thread with the server state and a context: the way to read
    /// or change game state from another thread without a lock.
    pub fn call(&self, f: impl FnOnce(&mut C::Server, &mut ServerCtx<'_, C>) + Send + 'static) {
        self.mailbox.post(Command::Call(Box::new(f)));
    }

    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Re-reads the certificate chain and key files of every TLS listener, on the calling
    /// thread: new handshakes use the new certificate, connections already open carry on.
    /// SIGHUP does the same under [`Server::launch`]. Nothing to do without TLS listeners.
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] with [`TlsError::Config`](crate::tls::TlsError::Config): a file is
    /// missing, is not PEM, or the key does not match; that listener keeps its certificate.
    pub fn reload_tls(&self) -> Result<(), Error> {
        self.mailbox.reload_tls()
    }
}

/// A server running on its own thread; see [`Server::start_background`]. Dropping it stops the
/// server and waits for its thread.
pub struct BackgroundServer<C: ChannelHandler> {
    handle: ServerHandle<C>,
    thread: Option<JoinHandle<io::Result<C::Server>>>,
}

impl<C: ChannelHandler> fmt::Debug for BackgroundServer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackgroundServer")
            .field("local_addr", &self.handle.local_addr)
            .finish_non_exhaustive()
    }
}

impl<C: ChannelHandler> Deref for BackgroundServer<C> {
    type Target = ServerHandle<C>;
    fn deref(&self) -> &ServerHandle<C> {
        &self.handle
    }
}

impl<C: ChannelHandler> BackgroundServer<C> {
    /// A handle to give to other threads.
    pub fn handle(&self) -> ServerHandle<C> {
        self.handle.clone()
    }

    /// Stops the server gracefully and waits for its thread. Returns the final server state.
    ///
    /// # Errors
    ///
    /// The reactor failed, or the server thread panicked (a panic in a server hook).
    pub fn stop_and_join(mut self) -> io::Result<C::Server> {
        self.handle.stop();
        self.join_inner()
    }

    /// Waits for the server to stop by itself (a handler called [`ServerCtx::stop`]).
    ///
    /// # Errors
    ///
    /// As [`stop_and_join`](Self::stop_and_join).
    pub fn join(mut self) -> io::Result<C::Server> {
        self.join_inner()
    }

    fn join_inner(&mut self) -> io::Result<C::Server> {
        let thread = self.thread.take().expect("joined once");
        thread
            .join()
            .map_err(|_| io::Error::other("the server thread panicked"))?
    }
}

impl<C: ChannelHandler> Drop for BackgroundServer<C> {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.handle.stop();
            let _ = t.join();
        }
    }
}
