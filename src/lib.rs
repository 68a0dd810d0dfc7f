//! # repod: networking for multiplayer games
//!
//! Length-prefixed msgpack maps over TCP (and WebSocket, for browsers), routed by their
//! `"action"` key to one handler per action, on a single-threaded [mio] reactor. Wire-compatible with Python repod 0.1.2
//! (PyPI `repodnet`), a successor of PodSixNet: Python clients and servers talk to ours
//! unchanged.
//!
//! A server keeps the game, every player's state and every socket on one thread, with no
//! locks: handlers get `&mut` to their own channel, to the server state, and to the other
//! channels. A client is pumped from the game's frame loop, with or without a thread.
//!
//! ## Server
//!
//! ```no_run
//! use repod::{msg, ChannelHandler, Routes, Server};
//!
//! #[derive(Default)]
//! struct Player {
//!     nickname: String,
//! }
//!
//! impl ChannelHandler for Player {
//!     type Server = (); // server-wide state; see `ServerHandler`
//!
//!     fn routes(r: &mut Routes<Self>) {
//!         // Python: def Network_nickname(self, data)
//!         r.on("nickname", |me, _ctx, m| {
//!             me.nickname = m.str("nickname")?.to_owned();
//!             Ok(())
//!         });
//!         r.on("chat", |me, ctx, m| {
//!             ctx.send_to_all(&msg! { "action": "chat", "text": m.str("text")?, "from": &me.nickname });
//!             Ok(())
//!         });
//!     }
//! }
//!
//! fn main() -> std::io::Result<()> {
//!     Server::<Player>::bind("0.0.0.0:5071", ())?.launch() // until Ctrl-C, then a clean stop
//! }
//! ```
//!
//! ## Client
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
//!             net.send(&msg! { "action": "nickname", "nickname": "Alice" });
//!             Ok(())
//!         });
//!         r.on("chat", |_me, _net, m| {
//!             println!("{}: {}", m.str("from")?, m.str("text")?);
//!             Ok(())
//!         });
//!         r.on("disconnected", |me, _net, _m| {
//!             me.running = false;
//!             Ok(())
//!         });
//!     }
//! }
//!
//! let mut client = Client::connect("127.0.0.1:5071", Game { running: true })?; // returns at once
//! while client.listener().running {
//!     client.pump(); // no thread: the socket advances here
//!     // update(); render();
//! #   break;
//! }
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! ## Modules
//!
//! - [`frame`]: the length-prefix codec, with no I/O;
//! - [`message`]: reading a received map in place; [`encode`]: writing one with [`msg!`];
//! - [`server`]: [`Server`], [`ChannelHandler`], [`ServerHandler`] and their contexts;
//! - [`client`]: [`Client`] with a [`Listener`], and the low-level [`Connection`];
//! - [`config`]: limits (frame size, output per connection, idle timeout, connections);
//! - [`ws`]: WebSocket for browser players (the upgrade and the frame codec, with no I/O), served
//!   by [`Server::listen_ws`] and spoken by the client for `ws://` addresses;
//! - `tls` (feature `tls`): repod over TLS and `wss` on the same reactor, with rustls; TLS
//!   listeners ([`Listen::tls`]), `tls://` and `wss://` clients, certificate reload;
//! - [`ws::upgrade`]: login at the door, a hook on each WebSocket upgrade request
//!   ([`ServerHandler::on_upgrade`]);
//! - [`proxy`]: the PROXY protocol header, for servers behind a load balancer
//!   ([`Listen::proxy_protocol`]); [`health`]: liveness and capacity for orchestrators;
//! - [`heartbeat`]: finding peers that vanished without closing; [`stats`]: traffic, round-trip
//!   times and tick timing, per connection and per server (exported to the `metrics` facade
//!   with the feature of that name);
//! - `typed` (feature `serde`): messages as Rust types, received with `Message::decode` and
//!   typed routes, sent with `Typed`.
//!
//! ## Cargo features
//!
//! - `serde` (**on by default**): typed messages through serde and `rmp-serde`; see the `typed`
//!   module. On by default because describing messages as types is how Rust code is expected
//!   to use the library (the README teaches it), and it costs little: `serde` without its
//!   derive macros, `rmp-serde` (the rmp family repod already uses for msgpack), and
//!   `serde_path_to_error` (used only to name the field of a decode error), all small and
//!   without build-time code generation. Nothing about the wire or the untyped API depends on
//!   it: `default-features = false` builds the library without serde.
//! - `tls` (**on by default**): TLS listeners and clients through rustls's unbuffered API with
//!   the aws-lc-rs provider (see the `tls` module for why). On by default because players on the
//!   internet need it (browsers on `https://` pages refuse plain `ws://`);
//!   `default-features = false` leaves it and its C build (aws-lc) out of LAN-only builds.
//! - `metrics`: server statistics exported through the `metrics` facade (see [`stats`]).
//! - `agones`: only for the `agones_server` example.
//!
//! The reactor is private: it is the only code that touches sockets.
//!
//! ## Logging
//!
//! Diagnostics go through the [`log`] crate and are silent unless the application installs a
//! logger.

#![warn(missing_docs, missing_debug_implementations)]
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

pub mod client;
pub mod config;
mod dispatch;
pub mod encode;
mod error;
pub mod frame;
// Entry points for the fuzz targets in `fuzz/`: compiled only for them (cargo-fuzz passes
// `--cfg fuzzing` to every crate it builds) and for this crate's own unit tests.
#[cfg(any(fuzzing, test))]
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod heartbeat;
pub mod message;
pub mod proxy;
mod reactor;
pub mod server;
pub mod session;
pub mod stats;
mod tcp_info;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "serde")]
pub mod typed;
pub mod ws;

pub use bytes::Bytes;
pub use client::{Client, ClientCtx, ClientRoutes, Connection, Listener, Mode, ServerAddr};
pub use config::{BindAddr, Config, Keepalive, Listen, Reconnect, SlowReaderPolicy};
pub use encode::{Bin, Encode, Entries, MapMsg};
pub use error::{DisconnectReason, Error, HandlerResult};
pub use health::Health;
pub use message::{Field, Message, OwnedMessage};
pub use reactor::ChannelId;
pub use server::{
    BackgroundServer, ChannelCtx, ChannelHandler, Routes, Server, ServerCtx, ServerHandle,
    ServerHandler,
};
pub use stats::{ConnStats, ServerStats};
#[cfg(feature = "tls")]
pub use tls::{TlsAcceptor, TlsConnector, TlsError};
#[cfg(feature = "serde")]
pub use typed::Typed;
pub use ws::{WsError, WsOptions};

/// The README's examples, compiled as doc tests so the quick start cannot rot. Its typed
/// messages section needs the `serde` feature.
#[cfg(all(doctest, feature = "serde"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
