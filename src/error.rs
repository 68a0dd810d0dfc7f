//! The crate's error type, and the reason a connection ended.
//!
//! One [`Error`] enum covers everything a handler can be told about: a frame that could not be
//! decoded, a field a handler asked for that is missing, a limit a peer exceeded, an I/O failure.
//! Each case says what happened in terms a game server can act on (log it, kick the player,
//! ignore it). [`DisconnectReason`] is what `on_close` and `on_disconnect` receive.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::proxy::ProxyError;
use crate::ws::{HandshakeError, WsError};

/// What a handler returns: `Ok(())`, or an error that is passed to the `on_error` hook.
///
/// Handlers use `?` on [`Message`](crate::Message) accessors, so a missing or mistyped field is
/// reported instead of panicking.
pub type HandlerResult = Result<(), Error>;

/// Everything that can go wrong in repod.
///
/// Frame-level cases ([`InvalidMsgpack`](Error::InvalidMsgpack), [`NotAMap`](Error::NotAMap),
/// [`InvalidUtf8`](Error::InvalidUtf8), [`ActionNotString`](Error::ActionNotString),
/// [`TooDeep`](Error::TooDeep)) drop the one frame and keep the connection: the length prefix
/// still delimits the stream, so nothing else is lost. [`FrameTooLarge`](Error::FrameTooLarge),
/// [`OutputFull`](Error::OutputFull), [`IdleTimeout`](Error::IdleTimeout),
/// [`HandlerPanic`](Error::HandlerPanic) and [`Io`](Error::Io) close the connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The socket failed: reset by the peer, broken pipe, refused connect, and so on.
    Io(io::Error),
    /// A length prefix announced a frame larger than the configured maximum. Closes the
    /// connection: the stream cannot be trusted past this point.
    FrameTooLarge {
        /// The length the peer announced.
        len: usize,
        /// The configured maximum ([`Config::max_frame_len`](crate::Config::max_frame_len)).
        max: usize,
    },
    /// The payload is not well-formed msgpack (truncated, a reserved marker, trailing bytes).
    InvalidMsgpack {
        /// Byte offset inside the payload where decoding failed.
        offset: usize,
        /// What was wrong there.
        reason: &'static str,
    },
    /// The payload is valid msgpack, but its top-level value is not a map.
    NotAMap,
    /// A msgpack string holds bytes that are not UTF-8 (Python decodes with `raw=False`).
    InvalidUtf8 {
        /// Byte offset of the string inside the payload.
        offset: usize,
    },
    /// The map has an `"action"` key whose value is not a string.
    ActionNotString,
    /// Arrays and maps are nested deeper than [`Config::max_depth`](crate::Config::max_depth).
    TooDeep {
        /// The configured maximum.
        max: usize,
    },
    /// A handler asked for a field the message does not have.
    MissingField {
        /// The key that was looked up.
        key: Box<str>,
    },
    /// A handler asked for a field with a type it does not have (or a number out of range).
    WrongType {
        /// The key that was looked up.
        key: Box<str>,
        /// The type that was asked for.
        expected: &'static str,
    },
    /// A message does not fit the type it was decoded into ([`Message::decode`](crate::Message),
    /// a typed route; cargo feature `serde`): a missing field, a field of the wrong type, an
    /// unknown variant. Like [`MissingField`](Error::MissingField), the frame is dropped and the
    /// connection stays.
    Decode {
        /// The message's action (`""` when it has none).
        action: Box<str>,
        /// Which field: a top-level key (`text`), a path into nested values (`pos.x`,
        /// `trail[2]`), `action` for an unknown variant of an enum; `None` when the message as a
        /// whole does not fit (the type is not a struct, a map or a tagged enum) or the field
        /// could not be told.
        field: Option<Box<str>>,
        /// What did not fit, in serde's words (`invalid type: integer `5`, expected a string`).
        reason: Box<str>,
    },
    /// The connection's queued output exceeded
    /// [`Config::max_queued_output`](crate::Config::max_queued_output): the peer does not read
    /// fast enough. Closes the connection.
    OutputFull {
        /// Bytes that would have been queued.
        queued: usize,
        /// The configured maximum.
        max: usize,
    },
    /// Nothing was received for longer than [`Config::idle_timeout`](crate::Config::idle_timeout).
    IdleTimeout(Duration),
    /// A handler panicked; the message is the panic's payload. Closes that one connection.
    HandlerPanic(String),
    /// The connection is closed (or not yet connected and can no longer connect).
    Closed,
    /// An error raised by application code, see [`Error::handler`].
    Handler(Box<dyn std::error::Error + Send + Sync>),
    /// A WebSocket peer broke the protocol (an unmasked frame, a text message, a bad close
    /// frame...). Closes the connection with the status [`WsError::close_code`] gives.
    WebSocket(WsError),
    /// A WebSocket opening handshake failed. On a server no channel exists yet, so this reaches
    /// the log and [`ServerHandler::on_refused`](crate::ServerHandler::on_refused); on a client
    /// it ends the connection attempt (an `error` event).
    Handshake(HandshakeError),
    /// A connection to a listener that requires the PROXY protocol did not start with a valid
    /// header. No channel exists yet, so this reaches the log and
    /// [`ServerHandler::on_refused`](crate::ServerHandler::on_refused).
    Proxy(ProxyError),
    /// TLS failed: the handshake (a plaintext or silent peer on a TLS port, no common version),
    /// the server's certificate (on a client: see [`TlsError::Certificate`](crate::tls::TlsError::Certificate)), or a record
    /// after it. Before the handshake finished no channel exists, so on a server this reaches
    /// the log and [`ServerHandler::on_refused`](crate::ServerHandler::on_refused); on a
    /// client it is an `error` event.
    #[cfg(feature = "tls")]
    Tls(crate::tls::TlsError),
    /// A peer broke the session protocol (see [`crate::session`]): it acknowledged messages it
    /// was never sent. Closes the connection.
    Session(Box<str>),
    /// A client could not get its session back after a drop (see [`crate::session`]): the
    /// server answered `resume_failed` with this reason (the session expired, or could not
    /// be replayed), or the client gave up reconnecting. What the session kept for replay is
    /// lost, and the application hears so.
    ResumeFailed(Box<str>),
}

impl Error {
    /// Wraps an application error so a handler can return it with `?` or `Err(..)`.
    ///
    /// ```
    /// let e = repod::Error::handler("player is not in a team");
    /// assert_eq!(e.to_string(), "handler error: player is not in a team");
    /// ```
    pub fn handler(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Error::Handler(e.into())
    }

    /// Whether this error ends the connection it happened on (as opposed to dropping one frame
    /// or being a handler's own failure).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Error::Io(_)
                | Error::FrameTooLarge { .. }
                | Error::OutputFull { .. }
                | Error::IdleTimeout(_)
                | Error::HandlerPanic(_)
                | Error::Closed
                | Error::WebSocket(_)
                | Error::Handshake(_)
                | Error::Proxy(_)
                | Error::Session(_)
                | Error::ResumeFailed(_)
        ) || self.is_tls()
    }

    #[cfg(feature = "tls")]
    fn is_tls(&self) -> bool {
        matches!(self, Error::Tls(_))
    }

    #[cfg(not(feature = "tls"))]
    fn is_tls(&self) -> bool {
        false
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "i/o error: {e}"),
            Error::FrameTooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the maximum of {max}")
            }
            Error::InvalidMsgpack { offset, reason } => {
                write!(f, "invalid msgpack at byte {offset}: {reason}")
            }
            Error::NotAMap => f.write_str("message is not a msgpack map"),
            Error::InvalidUtf8 { offset } => write!(f, "string at byte {offset} is not UTF-8"),
            Error::ActionNotString => f.write_str("\"action\" is not a string"),
            Error::TooDeep { max } => write!(f, "nesting deeper than {max} levels"),
            Error::MissingField { key } => write!(f, "missing field {key:?}"),
            Error::WrongType { key, expected } => write!(f, "field {key:?} is not {expected}"),
            Error::Decode {
                action,
                field,
                reason,
            } => {
                write!(f, "message {action:?} does not fit its type: ")?;
                match field {
                    Some(field) => write!(f, "field {field:?}: {reason}"),
                    None => f.write_str(reason),
                }
            }
            Error::OutputFull { queued, max } => write!(
                f,
                "peer too slow: {queued} bytes of output queued, the maximum is {max}"
            ),
            Error::IdleTimeout(d) => write!(f, "nothing received for {:.1} s", d.as_secs_f64()),
            Error::HandlerPanic(m) => write!(f, "handler panicked: {m}"),
            Error::Closed => f.write_str("connection closed"),
            Error::Handler(e) => write!(f, "handler error: {e}"),
            Error::Session(why) => write!(f, "session protocol broken: {why}"),
            Error::ResumeFailed(why) => write!(f, "session could not be resumed: {why}"),
            Error::WebSocket(e) => write!(f, "websocket: {e}"),
            Error::Handshake(e) => write!(f, "websocket handshake: {e}"),
            Error::Proxy(e) => fmt::Display::fmt(e, f),
            #[cfg(feature = "tls")]
            Error::Tls(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Handler(e) => Some(&**e),
            Error::WebSocket(e) => Some(e),
            Error::Handshake(e) => Some(e),
            Error::Proxy(e) => Some(e),
            #[cfg(feature = "tls")]
            Error::Tls(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(feature = "tls")]
impl From<crate::tls::TlsError> for Error {
    fn from(e: crate::tls::TlsError) -> Self {
        Error::Tls(e)
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// Why a connection ended. Given to `on_close` and `on_disconnect`, exactly once per connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The peer closed its side (end of stream). Everything it sent before was handled and the
    /// answers queued before the close are still delivered.
    PeerClosed,
    /// This side called `close()`. Queued output is still delivered.
    Closed,
    /// The server is stopping. Queued output is still delivered, within
    /// [`Config::linger`](crate::Config::linger).
    ServerStopped,
    /// Heartbeats were on ([`Config::heartbeat`](crate::Config::heartbeat)) and nothing at
    /// all arrived from the peer for this long: it vanished without closing (its network went
    /// away, its process froze). Queued output is dropped after
    /// [`Config::linger`](crate::Config::linger), since no one is reading it.
    HeartbeatTimeout(Duration),
    /// A fatal error: see [`Error::is_fatal`].
    Error(Error),
    /// The channel's session was away ([`Config::resume_window`](crate::Config::resume_window))
    /// for its whole window, and no client resumed it. It was away for this long.
    SessionExpired(Duration),
    /// The channel's session kept more for replay than
    /// [`Config::resume_buffer`](crate::Config::resume_buffer) allows (`kept` bytes, over
    /// `max`): it could not be replayed whole, so it ended rather than lose messages silently.
    ReplayOverflow {
        /// Bytes kept when it ended.
        kept: usize,
        /// The bound.
        max: usize,
    },
}

impl DisconnectReason {
    /// The error, when the connection ended because of one.
    pub fn error(&self) -> Option<&Error> {
        match self {
            DisconnectReason::Error(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::PeerClosed => f.write_str("closed by peer"),
            DisconnectReason::Closed => f.write_str("closed locally"),
            DisconnectReason::ServerStopped => f.write_str("server stopped"),
            DisconnectReason::HeartbeatTimeout(d) => {
                write!(f, "no answer to heartbeats for {:.1} s", d.as_secs_f64())
            }
            DisconnectReason::Error(e) => fmt::Display::fmt(e, f),
            DisconnectReason::SessionExpired(d) => {
                write!(f, "session expired after {:.1} s away", d.as_secs_f64())
            }
            DisconnectReason::ReplayOverflow { kept, max } => {
                write!(
                    f,
                    "session kept {kept} bytes for replay, over its bound of {max}"
                )
            }
        }
    }
}
