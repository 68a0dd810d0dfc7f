//! The WebSocket opening handshake (RFC 6455 §4): an HTTP/1.1 `GET` with `Upgrade: websocket`,
//! answered `101 Switching Protocols` with `Sec-WebSocket-Accept`.
//!
//! Server side, [`parse_request`] is given everything received so far and returns `Ok(None)`
//! until the request is complete; it then checks the request against the listener's
//! [`WsOptions`] and returns what to answer. Bytes after the request (frames a client sent
//! eagerly) are the caller's to decode. Client side, [`write_request`] and [`parse_response`]
//! do the mirror image.
//!
//! ```
//! use repod::ws::handshake::{parse_request, write_accept, Request};
//! use repod::WsOptions;
//!
//! let req = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
//!             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
//! let Request { len, accept } = parse_request(req, &WsOptions::default()).unwrap().unwrap();
//! assert_eq!(len, req.len());
//! assert_eq!(&accept, b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
//! let mut out = Vec::new();
//! write_accept(&mut out, &accept);
//! assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
//! ```

use std::fmt;

use base64::Engine;
use sha1::{Digest, Sha1};

use super::WsOptions;

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Most headers read from a request or response.
pub(crate) const MAX_HEADERS: usize = 64;

/// Why an opening handshake failed. On a server the client is answered with
/// [`status`](HandshakeError::status) and closed; no channel is ever created for it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The request (or response) did not end within the size limit.
    TooLarge {
        /// The limit ([`WsOptions::max_handshake_len`]).
        max: usize,
    },
    /// The request did not complete within the time limit.
    Timeout,
    /// More headers than the server reads (64).
    TooManyHeaders,
    /// Not well-formed HTTP/1.1.
    Malformed(&'static str),
    /// A method other than `GET`.
    NotGet,
    /// `Upgrade: websocket` or `Connection: Upgrade` is missing: a plain HTTP request.
    NotUpgrade,
    /// `Sec-WebSocket-Version` is missing or not 13.
    BadVersion,
    /// `Sec-WebSocket-Key` is missing or not 16 bytes in base64.
    BadKey,
    /// The request is for a path this listener does not serve.
    WrongPath,
    /// The page's `Origin` is not in the listener's allow-list.
    OriginRejected,
    /// The server stopped listening (it is shutting down) before the upgrade completed.
    Unavailable,
    /// Client side: the server answered with this status instead of 101.
    Refused(u16),
    /// The server's upgrade hook ([`ServerHandler::on_upgrade`](crate::ServerHandler::on_upgrade))
    /// refused the request with this HTTP status.
    Denied(u16),
    /// Client side: the response lacks the upgrade headers or has the wrong
    /// `Sec-WebSocket-Accept`.
    BadAccept,
}

impl HandshakeError {
    /// The HTTP status a server answers this failure with.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::TooLarge { .. } | HandshakeError::TooManyHeaders => 431,
            HandshakeError::Timeout => 408,
            HandshakeError::NotGet => 405,
            HandshakeError::NotUpgrade | HandshakeError::BadVersion => 426,
            HandshakeError::WrongPath => 404,
            HandshakeError::OriginRejected => 403,
            HandshakeError::Unavailable => 503,
            HandshakeError::Denied(status) if (400..600).contains(status) => *status,
            _ => 400,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::TooLarge { max } => write!(f, "handshake longer than {max} bytes"),
            HandshakeError::TooManyHeaders => write!(f, "more than {MAX_HEADERS} headers"),
            HandshakeError::Timeout => f.write_str("handshake not completed in time"),
            HandshakeError::Malformed(why) => write!(f, "malformed handshake: {why}"),
            HandshakeError::NotGet => f.write_str("upgrade request is not a GET"),
            HandshakeError::NotUpgrade => f.write_str("not a WebSocket upgrade request"),
            HandshakeError::BadVersion => f.write_str("Sec-WebSocket-Version is not 13"),
            HandshakeError::BadKey => f.write_str("missing or invalid Sec-WebSocket-Key"),
            HandshakeError::WrongPath => f.write_str("no WebSocket endpoint at this path"),
            HandshakeError::OriginRejected => f.write_str("origin not allowed"),
            HandshakeError::Unavailable => f.write_str("server shutting down"),
            HandshakeError::Refused(s) => write!(f, "server refused the upgrade with status {s}"),
            HandshakeError::Denied(s) => write!(f, "refused by the server's upgrade hook ({s})"),
            HandshakeError::BadAccept => {
                f.write_str("server sent a wrong or no Sec-WebSocket-Accept")
            }
        }
    }
}

impl std::error::Error for HandshakeError {}

/// An accepted upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Length of the request in the input; what follows it is WebSocket frames.
    pub len: usize,
    /// The `Sec-WebSocket-Accept` value to answer with.
    pub accept: [u8; 28],
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    let digest = sha.finalize();
    let mut out = [0u8; 28];
    base64::engine::general_purpose::STANDARD
        .encode_slice(digest, &mut out)
        .expect("20 bytes are 28 in base64");
    out
}

/// Whether parsing `buf` again could decide anything, given that its last `new` bytes are new:
/// the first bytes (garbage is refused at once), new bytes that no HTTP head may hold (control
/// characters: a TLS hello, binary), or a blank line that may end the head. Only the new bytes
/// are looked at, and a client dribbling a plausible request is not re-parsed on every byte.
pub fn worth_parsing(buf: &[u8], new: usize) -> bool {
    if buf.len() == new {
        return true;
    }
    let fresh = &buf[buf.len() - new..];
    if fresh
        .iter()
        .any(|&b| b < 0x20 && !matches!(b, b'\t' | b'\r' | b'\n') || b == 0x7f)
    {
        return true;
    }
    let from = buf.len().saturating_sub(new + 3);
    buf[from..].windows(2).any(|w| w == b"\n\n" || w == b"\n\r")
}

/// Parses and checks an upgrade request at the start of `buf`: `Ok(None)` while incomplete.
///
/// # Errors
///
/// The first reason to refuse it; answer with [`write_reject`] and close.
pub fn parse_request(buf: &[u8], opts: &WsOptions) -> Result<Option<Request>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > opts.max_handshake_len => {
            return Err(HandshakeError::TooLarge {
                max: opts.max_handshake_len,
            })
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooManyHeaders),
        Err(e) => return Err(HandshakeError::Malformed(http_error(e))),
    };
    if len > opts.max_handshake_len {
        return Err(HandshakeError::TooLarge {
            max: opts.max_handshake_len,
        });
    }
    if req.version != Some(1) {
        return Err(HandshakeError::Malformed("not HTTP/1.1"));
    }
    if req.method != Some("GET") {
        return Err(HandshakeError::NotGet);
    }
    let path = req.path.unwrap_or("");
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    if path != opts.path {
        return Err(HandshakeError::WrongPath);
    }
    let mut upgrade = false;
    let mut connection = false;
    let mut version = false;
    let mut key = None;
    let mut origin = None;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= has_token(h.value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection |= has_token(h.value, "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            version = trim(h.value) == b"13";
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            key = Some(trim(h.value));
        } else if name.eq_ignore_ascii_case("origin") {
            origin = Some(trim(h.value));
        }
    }
    if !upgrade || !connection {
        return Err(HandshakeError::NotUpgrade);
    }
    if !version {
        return Err(HandshakeError::BadVersion);
    }
    let key = key.ok_or(HandshakeError::BadKey)?;
    let mut raw = [0u8; 18];
    match base64::engine::general_purpose::STANDARD.decode_slice(key, &mut raw) {
        Ok(16) => {}
        _ => return Err(HandshakeError::BadKey),
    }
    if let (Some(allowed), Some(origin)) = (&opts.allowed_origins, origin) {
        if !allowed
            .iter()
            .any(|a| a.as_bytes().eq_ignore_ascii_case(origin))
        {
            return Err(HandshakeError::OriginRejected);
        }
    }
    Ok(Some(Request {
        len,
        accept: accept_key(key),
    }))
}

/// Appends the `101 Switching Protocols` answer.
pub fn write_accept(out: &mut Vec<u8>, accept: &[u8; 28]) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept);
    out.extend_from_slice(b"\r\n\r\n");
}

/// Appends the HTTP answer to a refused upgrade: its status, and the reason as the body.
pub fn write_reject(out: &mut Vec<u8>, err: &HandshakeError) {
    let status = err.status();
    let text = match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        429 => "Too Many Requests",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let body = err.to_string();
    let extra = match status {
        426 => "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
        405 => "Allow: GET\r\n",
        _ => "",
    };
    let head = format!(
        "HTTP/1.1 {status} {text}\r\n{extra}Content-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len() + 1
    );
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body.as_bytes());
    out.push(b'\n');
}

/// A parsed `ws://host[:port][/path]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// Host name or address, without brackets for IPv6.
    pub host: String,
    /// Port (80 if the URL has none).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl WsUrl {
    /// Parses `url` if it starts with `ws://`; `None` for anything else (a plain address).
    ///
    /// # Errors
    ///
    /// `wss://` (see [`parse_with_tls`](Self::parse_with_tls)), or a malformed `ws://` URL.
    ///
    /// ```
    /// use repod::ws::WsUrl;
    /// let u = WsUrl::parse("ws://[::1]:5072/game?room=2").unwrap().unwrap();
    /// assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("::1", 5072, "/game?room=2"));
    /// assert_eq!(WsUrl::parse("127.0.0.1:5071").unwrap(), None);
    /// ```
    pub fn parse(url: &str) -> Result<Option<WsUrl>, String> {
        match Self::parse_with_tls(url)? {
            Some((_, true)) => Err(format!("{url}: a wss:// URL where ws:// was expected")),
            Some((u, false)) => Ok(Some(u)),
            None => Ok(None),
        }
    }

    /// Parses `url` if it starts with `ws://` or `wss://`, and says whether it is `wss://`
    /// (the port defaults to 80 or 443); `None` for anything else (a plain address).
    ///
    /// # Errors
    ///
    /// A malformed URL.
    ///
    /// ```
    /// use repod::ws::WsUrl;
    /// let (u, tls) = WsUrl::parse_with_tls("wss://game.example/play").unwrap().unwrap();
    /// assert_eq!((u.host.as_str(), u.port, u.path.as_str(), tls), ("game.example", 443, "/play", true));
    /// ```
    pub fn parse_with_tls(url: &str) -> Result<Option<(WsUrl, bool)>, String> {
        let lower = url.get(..6).map(str::to_ascii_lowercase);
        let (tls, rest, default_port) = if lower.as_deref() == Some("wss://") {
            (true, &url[6..], 443)
        } else if lower.as_deref().map(|s| &s[..5]) == Some("ws://") {
            (false, &url[5..], 80)
        } else {
            return Ok(None);
        };
        Self::parse_rest(url, rest, default_port).map(|u| Some((u, tls)))
    }

    fn parse_rest(url: &str, rest: &str, default_port: u16) -> Result<WsUrl, String> {
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_owned()),
        };
        let bad = || format!("{url}: not a valid WebSocket URL");
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad)?;
            match after.strip_prefix(':') {
                Some(p) => (h, p.parse().map_err(|_| bad())?),
                None if after.is_empty() => (h, default_port),
                None => return Err(bad()),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().map_err(|_| bad())?),
                None => (authority, default_port),
            }
        };
        if host.is_empty() || host.contains(['@', ' ']) {
            return Err(bad());
        }
        Ok(WsUrl {
            host: host.to_owned(),
            port,
            path,
        })
    }

    /// The `Host` header value.
    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// A fresh `Sec-WebSocket-Key` (16 random bytes in base64).
pub fn client_key() -> [u8; 24] {
    let mut raw = [0u8; 16];
    if getrandom::fill(&mut raw).is_err() {
        let mut keys = super::MaskKeys::from_os();
        for c in raw.chunks_mut(4) {
            c.copy_from_slice(&keys.next_key());
        }
    }
    let mut key = [0u8; 24];
    base64::engine::general_purpose::STANDARD
        .encode_slice(raw, &mut key)
        .expect("16 bytes are 24 in base64");
    key
}

/// Appends a client's upgrade request for `url` with `key`.
pub fn write_request(out: &mut Vec<u8>, url: &WsUrl, key: &[u8; 24]) {
    let head = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ",
        url.path,
        url.host_header()
    );
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(b"\r\n\r\n");
}

/// Parses the server's answer at the start of `buf`: `Ok(None)` while incomplete, else the
/// length of the response (frames may follow it in `buf`).
///
/// # Errors
///
/// Any answer but a `101` with the upgrade headers and the right `Sec-WebSocket-Accept`.
pub fn parse_response(
    buf: &[u8],
    key: &[u8; 24],
    max_len: usize,
) -> Result<Option<usize>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        // The same limit whether the answer arrives whole or in pieces.
        Ok(httparse::Status::Complete(n)) if n > max_len => {
            return Err(HandshakeError::TooLarge { max: max_len })
        }
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > max_len => {
            return Err(HandshakeError::TooLarge { max: max_len })
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HandshakeError::Malformed(http_error(e))),
    };
    if resp.code != Some(101) {
        return Err(HandshakeError::Refused(resp.code.unwrap_or(0)));
    }
    let expected = accept_key(key);
    let (mut upgrade, mut connection, mut accept) = (false, false, false);
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade |= has_token(h.value, "websocket");
        } else if h.name.eq_ignore_ascii_case("connection") {
            connection |= has_token(h.value, "upgrade");
        } else if h.name.eq_ignore_ascii_case("sec-websocket-accept") {
            accept = trim(h.value) == expected;
        }
    }
    if upgrade && connection && accept {
        Ok(Some(len))
    } else {
        Err(HandshakeError::BadAccept)
    }
}

/// Whether a comma-separated header value holds `token` (ASCII case-insensitive).
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &v[start..end]
}

fn http_error(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn request(path: &str, extra: &str) -> Vec<u8> {
        format!(
            "GET {path} HTTP/1.1\r\nHost: example.com\r\nUpgrade: WebSocket\r\n\
             Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n\
             Sec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn rfc_example_is_accepted_at_any_split() {
        let req = request("/?x=1", "Origin: http://example.com\r\n");
        let opts = WsOptions::default();
        for cut in 0..req.len() {
            assert_eq!(parse_request(&req[..cut], &opts), Ok(None), "cut {cut}");
        }
        let mut with_frame = req.clone();
        with_frame.extend_from_slice(b"\x82\x80abcd");
        let r = parse_request(&with_frame, &opts).unwrap().unwrap();
        assert_eq!(r.len, req.len());
        assert_eq!(&r.accept, b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn refusals_have_distinct_errors_and_statuses() {
        let opts = WsOptions::default().allowed_origins(["https://game.example"]);
        let check = |req: &[u8], err: HandshakeError, status: u16| {
            assert_eq!(parse_request(req, &opts), Err(err.clone()));
            assert_eq!(err.status(), status);
            let mut out = Vec::new();
            write_reject(&mut out, &err);
            assert!(out.starts_with(format!("HTTP/1.1 {status} ").as_bytes()));
        };
        check(
            &request("/", "Origin: https://evil.example\r\n"),
            HandshakeError::OriginRejected,
            403,
        );
        assert!(
            parse_request(&request("/", "Origin: HTTPS://GAME.example\r\n"), &opts)
                .unwrap()
                .is_some()
        );
        check(&request("/other", ""), HandshakeError::WrongPath, 404);
        check(
            b"POST / HTTP/1.1\r\nHost: x\r\n\r\n",
            HandshakeError::NotGet,
            405,
        );
        check(
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            HandshakeError::NotUpgrade,
            426,
        );
        let v12 = String::from_utf8(request("/", ""))
            .unwrap()
            .replace("Version: 13", "Version: 12");
        check(v12.as_bytes(), HandshakeError::BadVersion, 426);
        let badkey = String::from_utf8(request("/", ""))
            .unwrap()
            .replace(KEY, "c2hvcnQ=");
        check(badkey.as_bytes(), HandshakeError::BadKey, 400);
        check(
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
            HandshakeError::Malformed("invalid token"),
            400,
        );
        check(
            b"GET / HTTP/1.0\r\n\r\n",
            HandshakeError::Malformed("not HTTP/1.1"),
            400,
        );
        let big = request("/", &format!("Cookie: {}\r\n", "a".repeat(20_000)));
        check(&big, HandshakeError::TooLarge { max: DEFAULT_MAX }, 431);
    }

    const DEFAULT_MAX: usize = super::super::DEFAULT_MAX_HANDSHAKE_LEN;

    #[test]
    fn an_endless_head_is_refused_at_the_limit() {
        let opts = WsOptions::default().max_handshake_len(100);
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        head.extend_from_slice(&[b'a'; 90]);
        assert_eq!(
            parse_request(&head, &opts),
            Err(HandshakeError::TooLarge { max: 100 })
        );
    }

    #[test]
    fn client_request_and_response_round_trip() {
        let url = WsUrl::parse("ws://127.0.0.1:5072/game").unwrap().unwrap();
        let key = client_key();
        let mut req = Vec::new();
        write_request(&mut req, &url, &key);
        let opts = WsOptions::default().path("/game");
        let r = parse_request(&req, &opts).unwrap().unwrap();
        let mut resp = Vec::new();
        write_accept(&mut resp, &r.accept);
        let n = resp.len();
        resp.extend_from_slice(b"\x82\x01x");
        assert_eq!(parse_response(&resp, &key, 4096), Ok(Some(n)));
        assert_eq!(parse_response(&resp[..n - 1], &key, 4096), Ok(None));
        let other = client_key();
        assert_eq!(
            parse_response(&resp, &other, 4096),
            Err(HandshakeError::BadAccept)
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 404 Not Found\r\n\r\n", &key, 4096),
            Err(HandshakeError::Refused(404))
        );
    }

    #[test]
    fn urls() {
        let u = WsUrl::parse("WS://localhost").unwrap().unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("localhost", 80, "/")
        );
        assert_eq!(u.host_header(), "localhost");
        let u = WsUrl::parse("ws://h:1?q").unwrap().unwrap();
        assert_eq!(u.path, "/?q");
        assert!(WsUrl::parse("wss://h/").is_err());
        assert!(WsUrl::parse("ws://h:notaport/").is_err());
        assert!(WsUrl::parse("ws://:80/").is_err());
        assert_eq!(WsUrl::parse("[::1]:80").unwrap(), None);
    }

    #[test]
    fn completeness_scan_sees_only_new_bytes() {
        assert!(worth_parsing(b"GET / HTTP/1.1\r\n\r\n", 1));
        assert!(!worth_parsing(b"GET / HTTP/1.1\r\nHost: x", 3));
        assert!(worth_parsing(b"GET", 3), "the first bytes");
        assert!(worth_parsing(b"GET \x16\x03", 2), "binary");
    }
}
