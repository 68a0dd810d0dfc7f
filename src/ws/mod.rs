//! WebSocket (RFC 6455) as a repod transport, with no sockets and no clocks.
//!
//! Browsers cannot open TCP sockets, so a server can also listen for WebSocket connections
//! ([`Server::listen_ws`](crate::Server::listen_ws)) and a client can connect to a
//! `ws://host:port/path` URL. Everything above the framing is shared with TCP: the greeting,
//! routing, hooks, limits, [`ChannelId`](crate::ChannelId)s, and broadcasts that reach both kinds
//! of player.
//!
//! ## Wire mapping
//!
//! One WebSocket **binary** message carries exactly one msgpack map: the payload of a TCP frame
//! without its 4-byte length prefix (WebSocket delimits messages itself).
//!
//! ```text
//!  TCP:        [ u32 BE length ][ msgpack map ]
//!  WebSocket:  [ 2..14 byte WebSocket header ][ msgpack map ]   (opcode 0x2, binary)
//! ```
//!
//! Text messages are not part of the protocol: a repod peer that receives one closes the
//! connection with status 1003 ("unsupported data") and [`WsError::TextMessage`]. JSON would need
//! a second encoding of every message, with no way to tell a string from bytes; a browser sends
//! binary with `@msgpack/msgpack` (see `web/repod.js`) just as easily.
//!
//! ## Layers
//!
//! - [`handshake`]: the HTTP/1.1 upgrade, both sides. Requests and responses are parsed with
//!   [`httparse`]; `Sec-WebSocket-Accept` is SHA-1 and base64 from the `sha1` and `base64` crates.
//! - [`codec`]: the frame decoder ([`WsDecoder`]) and encoder. Written here rather than taken
//!   from `tungstenite` because tungstenite's protocol layer owns its read buffer and hands out an
//!   owned message (an allocation) per message, where repod unmasks frames in the reactor's shared
//!   read buffer and hands each payload out in place: an echoed message costs no allocation.
//!
//! The reactor drives them; like [`frame`](crate::frame), both are tested and fuzzed on byte
//! slices alone.

pub mod codec;
pub mod handshake;
pub mod upgrade;

use std::fmt;
use std::time::Duration;

pub use codec::{encode_close, encode_frame, MaskKeys, Opcode, Role, WsDecoder, WsEvent};
pub use handshake::{HandshakeError, WsUrl};
pub use upgrade::{Admission, Login, UpgradeRequest};

/// How a WebSocket listener accepts upgrades. See [`Server::listen_ws_with`](crate::Server::listen_ws_with).
///
/// ```
/// use std::time::Duration;
/// let opts = repod::WsOptions::default()
///     .path("/game")
///     .allowed_origins(["https://play.example.com"])
///     .handshake_timeout(Duration::from_secs(5));
/// assert_eq!(opts.get_path(), "/game");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct WsOptions {
    pub(crate) path: String,
    pub(crate) allowed_origins: Option<Vec<String>>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_handshake_len: usize,
}

/// Default bound on the size of an upgrade request: 16 KiB (browsers send under 2 KiB, cookies
/// included, in the usual case).
pub const DEFAULT_MAX_HANDSHAKE_LEN: usize = 16 * 1024;

impl Default for WsOptions {
    fn default() -> Self {
        WsOptions {
            path: "/".into(),
            allowed_origins: None,
            handshake_timeout: Duration::from_secs(10),
            max_handshake_len: DEFAULT_MAX_HANDSHAKE_LEN,
        }
    }
}

impl fmt::Debug for WsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsOptions")
            .field("path", &self.path)
            .field("allowed_origins", &self.allowed_origins)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_handshake_len", &self.max_handshake_len)
            .finish()
    }
}

impl WsOptions {
    /// The request path upgrades are accepted on (default `/`); a query string is ignored. Any
    /// other path is answered `404 Not Found` with [`HandshakeError::WrongPath`].
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Accept upgrades only from pages of these origins (`scheme://host[:port]`, compared
    /// without regard to ASCII case). Default: any origin.
    ///
    /// A browser always sends the `Origin` of the page that opens a WebSocket and lets a page of
    /// any site connect anywhere, so without this list a page on another site can drive a
    /// logged-in player's connection (cross-site WebSocket hijacking). A request from an origin
    /// not in the list is answered `403 Forbidden` with [`HandshakeError::OriginRejected`].
    /// Requests without an `Origin` header (native clients, which a page cannot impersonate) are
    /// accepted.
    pub fn allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_origins = Some(origins.into_iter().map(Into::into).collect());
        self
    }

    /// Most time from accepting the TCP connection to a complete upgrade request; a slower
    /// client (one byte a second, say) is closed with [`HandshakeError::Timeout`]. Default 10 s.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Largest upgrade request accepted, headers included; a larger one is answered
    /// `431 Request Header Fields Too Large` with [`HandshakeError::TooLarge`]. Default 16 KiB
    /// ([`DEFAULT_MAX_HANDSHAKE_LEN`]).
    pub fn max_handshake_len(mut self, bytes: usize) -> Self {
        self.max_handshake_len = bytes.max(64);
        self
    }

    /// See [`path`](Self::path).
    pub fn get_path(&self) -> &str {
        &self.path
    }
}

/// A WebSocket protocol violation by the peer. Each closes the connection with the status code
/// [`close_code`](WsError::close_code) returns, and reaches `on_error` as
/// [`Error::WebSocket`](crate::Error::WebSocket).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WsError {
    /// A client sent a frame without a mask (RFC 6455 §5.1).
    Unmasked,
    /// A server sent a masked frame (RFC 6455 §5.1).
    Masked,
    /// A reserved bit is set, and no extension was negotiated that defines it.
    ReservedBits,
    /// An opcode RFC 6455 reserves.
    UnknownOpcode(u8),
    /// A close, ping or pong frame without the FIN bit.
    FragmentedControl,
    /// A close, ping or pong frame with more than 125 bytes of payload.
    ControlTooLong(usize),
    /// A continuation frame with no fragmented message to continue.
    UnexpectedContinuation,
    /// A new text or binary message began while a fragmented one was unfinished.
    ExpectedContinuation,
    /// A 64-bit payload length with its most significant bit set.
    BadLength,
    /// A message longer than the maximum, counted over all its fragments and checked on each
    /// frame header before its payload is buffered.
    TooLarge {
        /// Bytes the message would have had with this frame.
        len: u64,
        /// The maximum ([`Config::max_frame_len`](crate::Config::max_frame_len)).
        max: usize,
    },
    /// A text message or a close reason that is not UTF-8.
    InvalidUtf8,
    /// A text message reached a repod peer, whose protocol is binary msgpack only.
    TextMessage,
    /// A close frame with a one-byte payload (a status code takes two).
    BadClosePayload,
    /// A close frame with a status code that may not be sent (RFC 6455 §7.4).
    BadCloseCode(u16),
}

impl WsError {
    /// The close status this violation is answered with: 1002 (protocol error), 1003
    /// (unsupported data), 1007 (invalid payload data) or 1009 (message too big).
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::TextMessage => 1003,
            WsError::InvalidUtf8 => 1007,
            WsError::TooLarge { .. } => 1009,
            _ => 1002,
        }
    }
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WsError::Unmasked => f.write_str("unmasked frame from a client"),
            WsError::Masked => f.write_str("masked frame from a server"),
            WsError::ReservedBits => f.write_str("reserved bits set"),
            WsError::UnknownOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            WsError::FragmentedControl => f.write_str("fragmented control frame"),
            WsError::ControlTooLong(n) => write!(f, "control frame of {n} bytes (maximum 125)"),
            WsError::UnexpectedContinuation => {
                f.write_str("continuation frame with nothing to continue")
            }
            WsError::ExpectedContinuation => f.write_str("new message inside a fragmented message"),
            WsError::BadLength => f.write_str("64-bit length with its top bit set"),
            WsError::TooLarge { len, max } => {
                write!(f, "message of {len} bytes exceeds the maximum of {max}")
            }
            WsError::InvalidUtf8 => f.write_str("text that is not UTF-8"),
            WsError::TextMessage => f.write_str("text message (repod speaks binary msgpack)"),
            WsError::BadClosePayload => f.write_str("close frame with a one-byte payload"),
            WsError::BadCloseCode(c) => write!(f, "close frame with invalid status {c}"),
        }
    }
}

impl std::error::Error for WsError {}
