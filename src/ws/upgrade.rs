//! Login at the door: a server's hook sees each WebSocket upgrade request before any channel
//! exists, and accepts it (with what it learned, say a user id) or refuses it with an HTTP
//! status.
//!
//! Browsers cannot set headers on a WebSocket, so a page logs in with a token in the URL's query
//! (`new WebSocket("wss://host/?token=...")`) or with a cookie of the site; native clients may
//! also send `Authorization`. The hook is
//! [`ServerHandler::on_upgrade`](crate::ServerHandler::on_upgrade); what it accepts with
//! reaches the channel through [`ChannelCtx::login`](crate::ChannelCtx::login).
//!
//! ```
//! use repod::ws::{Admission, UpgradeRequest};
//! use repod::{ChannelCtx, ChannelHandler, Routes, ServerCtx, ServerHandler};
//!
//! struct Lobby {
//!     tokens: std::collections::HashMap<String, u64>, // token -> user id
//! }
//!
//! #[derive(Default)]
//! struct Player {
//!     user: Option<u64>,
//! }
//!
//! impl ServerHandler<Player> for Lobby {
//!     fn on_upgrade(&mut self, _: &mut ServerCtx<'_, Player>, req: &UpgradeRequest<'_>) -> Admission {
//!         let token = req.query_param("token").or_else(|| req.cookie("session"));
//!         match token.and_then(|t| self.tokens.get(t)) {
//!             Some(&user) => Admission::accept_as(user),
//!             None => Admission::Refuse(401),
//!         }
//!     }
//! }
//!
//! impl ChannelHandler for Player {
//!     type Server = Lobby;
//!     fn routes(_: &mut Routes<Self>) {}
//!     fn on_connect(&mut self, ctx: &mut ChannelCtx<'_, Self>) {
//!         self.user = ctx.login::<u64>().copied();
//!     }
//! }
//! # let _ = repod::Server::<Player>::bind("127.0.0.1:0", Lobby { tokens: Default::default() });
//! ```
//!
//! TCP players have no upgrade request: they log in with their first message (see the
//! README's "Serving over TLS").

use std::any::Any;
use std::fmt;
use std::net::SocketAddr;

/// A WebSocket upgrade request, as the server's hook sees it: already checked to be a valid
/// upgrade for this listener (method, path, version, key, origin).
pub struct UpgradeRequest<'a> {
    pub(crate) target: &'a str,
    pub(crate) headers: &'a [httparse::Header<'a>],
    pub(crate) peer: SocketAddr,
}

impl fmt::Debug for UpgradeRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpgradeRequest")
            .field("path", &self.path())
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl<'a> UpgradeRequest<'a> {
    /// The path, without the query (`/play`).
    pub fn path(&self) -> &'a str {
        self.target.split_once('?').map_or(self.target, |(p, _)| p)
    }

    /// The query, without the `?` (`token=abc&room=2`), if any.
    pub fn query(&self) -> Option<&'a str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// The value of the first query parameter called `name`, as sent: not percent-decoded
    /// (tokens are usually URL-safe; decode it yourself if yours is not).
    pub fn query_param(&self, name: &str) -> Option<&'a str> {
        self.query()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then_some(v)
        })
    }

    /// The first header called `name` (case-insensitive), if it is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    }

    /// Every header, name and raw value, in the order received.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + '_ {
        self.headers.iter().map(|h| (h.name, h.value))
    }

    /// The value of the cookie called `name`, from the `Cookie` headers.
    pub fn cookie(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
            .filter_map(|h| std::str::from_utf8(h.value).ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| {
                let (k, v) = c.trim().split_once('=')?;
                (k == name).then_some(v)
            })
    }

    /// The client's address (the PROXY header's, behind a balancer that sends one).
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }
}

/// What the upgrade hook decided.
#[derive(Debug)]
#[non_exhaustive]
pub enum Admission {
    /// Let the player in.
    Accept,
    /// Let the player in, and give its channel this [`Login`].
    AcceptAs(Login),
    /// Answer with this HTTP status (401, 403, 429, 503...) and close; no channel is made.
    Refuse(u16),
}

impl Admission {
    /// Accepts, with `value` for the channel ([`ChannelCtx::login`](crate::ChannelCtx::login)).
    pub fn accept_as<T: Any + Send + Sync>(value: T) -> Admission {
        Admission::AcceptAs(Login(Box::new(value)))
    }
}

/// What a player was admitted with (a user id, a session): any `Send + Sync` value, read back
/// by its type.
pub struct Login(Box<dyn Any + Send + Sync>);

impl Login {
    /// The value, if it is a `T`.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Login(..)")
    }
}

/// Parses the complete request head `head` (already checked by
/// [`parse_request`](super::handshake::parse_request)) and shows it to `f`.
pub(crate) fn with_request<R>(
    head: &[u8],
    peer: SocketAddr,
    f: impl FnOnce(&UpgradeRequest<'_>) -> R,
) -> R {
    let mut headers = [httparse::EMPTY_HEADER; super::handshake::MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    // Parsed successfully once already: the same bytes parse the same way.
    let _ = req.parse(head);
    let view = UpgradeRequest {
        target: req.path.unwrap_or("/"),
        headers: req.headers,
        peer,
    };
    f(&view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_cookies_and_headers() {
        let head = b"GET /play?room=2&token=abc%3D HTTP/1.1\r\nHost: x\r\n\
            Cookie: a=1; session=s3cr3t\r\nAuthorization: Bearer t0k\r\n\r\n";
        let peer = SocketAddr::from(([127, 0, 0, 9], 4000));
        with_request(head, peer, |r| {
            assert_eq!(r.path(), "/play");
            assert_eq!(r.query(), Some("room=2&token=abc%3D"));
            assert_eq!(r.query_param("token"), Some("abc%3D"));
            assert_eq!(r.query_param("missing"), None);
            assert_eq!(r.cookie("session"), Some("s3cr3t"));
            assert_eq!(r.cookie("b"), None);
            assert_eq!(r.header("authorization"), Some("Bearer t0k"));
            assert_eq!(r.peer_addr(), peer);
            assert_eq!(r.headers().count(), 3);
        });
        let login = match Admission::accept_as(42u64) {
            Admission::AcceptAs(l) => l,
            other => panic!("{other:?}"),
        };
        assert_eq!(login.get::<u64>(), Some(&42));
        assert_eq!(login.get::<u32>(), None);
    }
}
