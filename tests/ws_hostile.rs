//! Broken and malicious WebSocket peers against a server that also serves TCP: garbage and
//! oversized upgrade requests, a slow handshake, foreign origins, every framing violation, a
//! peer that never answers our close, a ping flood.
//!
//! Each case must close only its own connection, with the right HTTP status (before the
//! upgrade) or WebSocket close code and reason (after it), reach `on_error` as
//! `Error::WebSocket` when a channel exists, create no channel when the upgrade is refused, and
//! leave everyone else served: TCP and WebSocket players connected before the case keep
//! echoing throughout ([`Players`]), and fresh clients of both kinds are served after it
//! ([`assert_all_served`]).

#[path = "support/net.rs"]
mod net;
#[allow(dead_code)]
#[path = "support/ws.rs"]
mod ws;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use net::{start_with, Peer, Probed, Rng, PROMPT};
use repod::ws::{encode_frame, Opcode};
use repod::{msg, ChannelId, Config, WsOptions};
use ws::{Refusal, WsPeer};

/// The key of every hand-written upgrade request (RFC 6455's example).
const KEY: &[u8; 24] = b"dGhlIHNhbXBsZSBub25jZQ==";

fn cfg() -> Config {
    Config::default().linger(Duration::from_secs(1))
}

fn ws_server(cfg: Config, opts: WsOptions) -> Probed {
    start_with(cfg, move |mut s| {
        s.listen_ws_with("127.0.0.1:0", opts).expect("listen_ws");
        s
    })
}

/// A valid upgrade request for `path` with `extra` header lines (each ending in CRLF).
fn upgrade(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n",
        std::str::from_utf8(KEY).unwrap()
    )
}

/// One echo round trip over WebSocket.
fn ws_echo(peer: &mut WsPeer, seq: u64) {
    peer.send(&msg! { "action": "echo", "seq": seq });
    let r = peer.recv();
    assert_eq!(r.action(), "echo_reply");
    assert_eq!(r.message().u64("seq").unwrap(), seq);
}

/// A WebSocket player, upgraded and greeted.
fn ws_greeted(s: &Probed) -> WsPeer {
    let mut p = WsPeer::connect(s.ws.unwrap(), "/");
    assert_eq!(p.recv().action(), "connected");
    p
}

/// The channel a WebSocket peer is (asks `whoami`, looks the slot up among connected ids).
fn ws_id_of(s: &Probed, peer: &mut WsPeer) -> ChannelId {
    peer.send(&msg! { "action": "whoami" });
    let reply = peer.recv();
    assert_eq!(reply.action(), "you");
    let slot = reply.message().u64("slot").unwrap() as usize;
    let id = net::query(&s.handle(), move |_, ctx| {
        ctx.channels()
            .map(|(id, _)| id)
            .find(|id| id.slot() == slot)
    });
    id.expect("the channel is connected")
}

/// A brand-new TCP client and a brand-new WebSocket client are both greeted and echoed.
fn assert_all_served(s: &Probed) {
    s.assert_served();
    let start = Instant::now();
    let mut p = ws_greeted(s);
    ws_echo(&mut p, 424_242);
    assert!(start.elapsed() < PROMPT, "a fresh WebSocket client waited");
}

/// A TCP player and a WebSocket player, connected before a test abuses the server, echoing in
/// turn on their own thread until [`finish`](Players::finish).
struct Players {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(u64, Duration)>,
}

impl Players {
    fn start(s: &Probed) -> Players {
        let mut tcp = Peer::greeted(s.addr);
        let mut web = ws_greeted(s);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut n, mut worst) = (0u64, Duration::ZERO);
            while !flag.load(Ordering::Relaxed) || n < 3 {
                let t = Instant::now();
                tcp.echo(n);
                ws_echo(&mut web, n);
                worst = worst.max(t.elapsed());
                n += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            (n, worst)
        });
        Players { stop, thread }
    }

    fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let (n, worst) = self.thread.join().expect("a connected player failed");
        println!("players: {n} echo pairs, the slowest took {worst:?}");
        assert!(
            worst < Duration::from_secs(2),
            "a connected player waited {worst:?} for an echo"
        );
    }
}

// --- The opening handshake -----------------------------------------------------------------

/// Sends `request` on a new connection to the WebSocket port: the server must answer `status`
/// with `text` in the answer, close, and create no channel.
fn refused(s: &Probed, what: &str, request: &[u8], status: u16, text: &str) {
    let before = s.lock().connect_count();
    let start = Instant::now();
    let r: Refusal = match WsPeer::upgrade_raw(s.ws.unwrap(), request, KEY) {
        Ok(_) => panic!("{what}: upgraded"),
        Err(r) => r,
    };
    assert!(start.elapsed() < PROMPT, "{what}: answered late");
    assert_eq!(r.status, status, "{what}: {}", r.text);
    assert!(r.text.contains(text), "{what}: no {text:?} in {:?}", r.text);
    assert!(r.text.contains("\r\nConnection: close\r\n"), "{what}");
    assert_eq!(
        s.lock().connect_count(),
        before,
        "{what}: a channel was made"
    );
}

#[test]
fn bad_upgrade_requests_get_their_status_and_no_channel() {
    let s = ws_server(cfg(), WsOptions::default());
    let players = Players::start(&s);
    let mut rng = Rng(0x5eed);
    let mut random: Vec<u8> = (0..300).map(|_| rng.next_u64() as u8).collect();
    random[0] = 0x01; // not a token character, whatever the seed
    random.extend_from_slice(b"\r\n\r\n");
    let good = upgrade("/", "");
    let v12 = good.replace("Version: 13", "Version: 12");
    let no_key = good.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
    let short_key = good.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=");
    let http10 = good.replace("HTTP/1.1", "HTTP/1.0");
    let post = good.replace("GET", "POST");
    let h2c = good.replace("Upgrade: websocket", "Upgrade: h2c");
    let no_connection = good.replace("Connection: Upgrade\r\n", "");
    let wrong_path = upgrade("/elsewhere", "");
    let cases: &[(&str, &[u8], u16, &str)] = &[
        ("random bytes", &random, 400, "malformed handshake"),
        (
            "a TLS ClientHello, then a blank line",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
            400,
            "malformed handshake",
        ),
        ("HTTP/1.0", http10.as_bytes(), 400, "not HTTP/1.1"),
        ("POST", post.as_bytes(), 405, "\r\nAllow: GET\r\n"),
        (
            "no Sec-WebSocket-Key",
            no_key.as_bytes(),
            400,
            "Sec-WebSocket-Key",
        ),
        (
            "a short key",
            short_key.as_bytes(),
            400,
            "Sec-WebSocket-Key",
        ),
        (
            "version 12",
            v12.as_bytes(),
            426,
            "\r\nSec-WebSocket-Version: 13\r\n",
        ),
        (
            "wrong path",
            wrong_path.as_bytes(),
            404,
            "no WebSocket endpoint",
        ),
        (
            "a plain GET",
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
            426,
            "not a WebSocket upgrade",
        ),
        (
            "Upgrade: h2c",
            h2c.as_bytes(),
            426,
            "not a WebSocket upgrade",
        ),
        (
            "no Connection: Upgrade",
            no_connection.as_bytes(),
            426,
            "not a WebSocket upgrade",
        ),
    ];
    for &(what, request, status, text) in cases {
        refused(&s, what, request, status, text);
        assert_all_served(&s);
    }
    players.finish();
    assert_all_served(&s);
}

/// A TLS ClientHello (a `wss://` client at a `ws://` port) or random bytes hold no blank line:
/// no HTTP request can ever be read from them, and the server can tell from the first bytes.
/// They should be answered `400` at once, not held until the handshake timeout (10 s here,
/// the default) and answered `408`.
#[test]
fn garbage_without_a_blank_line_is_refused_at_once() {
    let s = ws_server(cfg(), WsOptions::default());
    let players = Players::start(&s);
    let mut rng = Rng(0xc1a5);
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| match rng.next_u64() as u8 {
                b'\n' => b'.',
                b => b,
            })
            .collect()
    };
    // A TLS 1.2/1.3 ClientHello for "localhost": record header, handshake header, version,
    // random, session id, cipher suites, compression, and an SNI extension.
    let sni = b"\x00\x00\x00\x0e\x00\x0c\x00\x00\x09localhost";
    let mut body = b"\x03\x03".to_vec();
    body.extend_from_slice(&noise(32));
    body.push(32);
    body.extend_from_slice(&noise(32));
    body.extend_from_slice(b"\x00\x04\x13\x01\xc0\x2f\x01\x00");
    body.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    body.extend_from_slice(sni);
    let mut hello = vec![0x16, 0x03, 0x01];
    hello.extend_from_slice(&(body.len() as u16 + 4).to_be_bytes());
    hello.extend_from_slice(&[0x01, 0x00]);
    hello.extend_from_slice(&(body.len() as u16).to_be_bytes());
    hello.extend_from_slice(&body);
    let mut random = noise(600);
    random[0] = 0x01;
    for (what, request) in [("a TLS ClientHello", hello), ("random bytes", random)] {
        refused(&s, what, &request, 400, "malformed handshake");
        assert_all_served(&s);
    }
    players.finish();
}

#[test]
fn oversized_upgrade_requests_get_431() {
    let s = ws_server(cfg(), WsOptions::default());
    let players = Players::start(&s);
    let cookie = upgrade("/", &format!("Cookie: {}\r\n", "a".repeat(20 * 1024)));
    // One header line that never ends: far more than the limit, and no newline at all.
    let mut endless = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Endless: ".to_vec();
    endless.resize(256 * 1024, b'a');
    let many: String = (0..100).map(|i| format!("X-Header-{i}: {i}\r\n")).collect();
    let many = upgrade("/", &many);
    let cases: &[(&str, &[u8], &str)] = &[
        (
            "a 20 KiB cookie",
            cookie.as_bytes(),
            "longer than 16384 bytes",
        ),
        (
            "an endless header line",
            &endless,
            "longer than 16384 bytes",
        ),
        ("100 headers", many.as_bytes(), "more than 64 headers"),
    ];
    for &(what, request, why) in cases {
        refused(&s, what, request, 431, why);
        assert_all_served(&s);
    }
    players.finish();
}

/// One byte every 300 ms: answered `408` and closed at the handshake timeout (1 s here), long
/// before the request could be complete.
#[test]
fn a_one_byte_at_a_time_handshake_times_out_with_408() {
    let opts = WsOptions::default().handshake_timeout(Duration::from_secs(1));
    let s = ws_server(cfg(), opts);
    let players = Players::start(&s);
    let request = upgrade("/", "");
    let mut stream = TcpStream::connect(s.ws.unwrap()).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let start = Instant::now();
    let mut answer = Vec::new();
    let mut sent = 0;
    let mut buf = [0u8; 1024];
    while answer.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(1) + PROMPT,
            "no answer to a slow handshake"
        );
        assert!(sent < request.len(), "the whole request went out");
        stream.write_all(&request.as_bytes()[sent..=sent]).unwrap();
        sent += 1;
        match stream.read(&mut buf) {
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    stream.set_read_timeout(Some(PROMPT)).unwrap();
    stream
        .read_to_end(&mut answer)
        .expect("closed after the 408");
    let took = start.elapsed();
    let text = String::from_utf8_lossy(&answer);
    println!("answered after {sent} bytes and {took:?}");
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(text.contains("not completed in time"), "{text}");
    assert!(took < Duration::from_secs(1) + PROMPT);
    assert_eq!(s.lock().connect_count(), 2, "only the two players");
    players.finish();
    assert_all_served(&s);
}

#[test]
fn origin_allow_list() {
    let opts = WsOptions::default().allowed_origins(["http://good.example"]);
    let s = ws_server(cfg(), opts);
    let players = Players::start(&s);
    for origin in [
        "http://evil.example",
        "http://good.example.evil.example",
        "https://good.example",
        "null",
    ] {
        let req = upgrade("/", &format!("Origin: {origin}\r\n"));
        refused(&s, origin, req.as_bytes(), 403, "origin not allowed");
    }
    // The listed origin (in any case), and a native client without an Origin: upgraded.
    for extra in [
        "Origin: http://good.example\r\n",
        "Origin: HTTP://Good.Example\r\n",
        "",
    ] {
        let req = upgrade("/", extra);
        let Ok(mut p) = WsPeer::upgrade_raw(s.ws.unwrap(), req.as_bytes(), KEY) else {
            panic!("refused: {extra:?}");
        };
        assert_eq!(p.recv().action(), "connected");
        ws_echo(&mut p, 1);
    }
    players.finish();
    assert_all_served(&s);
}

// --- Framing violations after the upgrade --------------------------------------------------

/// The largest message in the framing tests.
const MAX: usize = 1024;

/// A masked frame with a fixed key.
fn frame(op: Opcode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut w = Vec::new();
    encode_frame(&mut w, op, fin, payload, Some([0x37, 0xfa, 0x21, 0x3d]));
    w
}

/// A frame header by hand: first byte, then the mask bit and length fields as given, then a
/// masking key; no payload.
fn header(b0: u8, len: &[u8]) -> Vec<u8> {
    let mut h = vec![b0];
    h.extend_from_slice(len);
    h.extend_from_slice(&[1, 2, 3, 4]);
    h
}

/// After a clean upgrade and one echo, `bytes` must make the server send a close frame with
/// `code` and, as its reason, the `on_error` text (which contains `text`), then end the
/// stream; the channel's hooks see `Error::WebSocket` once each.
fn violation(s: &Probed, what: &str, bytes: &[u8], code: u16, text: &str) {
    let mut p = ws_greeted(s);
    let id = ws_id_of(s, &mut p);
    ws_echo(&mut p, 1);
    p.send_raw(bytes);
    let (op, body) = p.next().unwrap_or_else(|| panic!("{what}: no close frame"));
    assert_eq!(op, Opcode::Close, "{what}: {body:?}");
    let got = u16::from_be_bytes([body[0], body[1]]);
    let reason = String::from_utf8(body[2..].to_vec()).unwrap();
    assert_eq!(got, code, "{what}: closed with {got} {reason:?}");
    assert_eq!(p.next(), None, "{what}: the stream ends after the close");
    s.wait(what, |r| !r.disconnects_of(id).is_empty());
    let r = s.lock();
    let errors = r.errors_of(id);
    assert_eq!(errors.len(), 1, "{what}: {errors:?}");
    let (kind, error) = &errors[0];
    assert_eq!(*kind, "WebSocket", "{what}");
    assert!(error.contains(text), "{what}: {error:?} lacks {text:?}");
    assert_eq!(&reason, error, "{what}: the close reason is the error");
    assert_eq!(r.closes_of(id), ["WebSocket"], "{what}");
    assert_eq!(r.disconnects_of(id), ["WebSocket"], "{what}");
}

#[test]
fn framing_violations_close_with_their_codes() {
    let s = ws_server(cfg().max_frame_len(MAX), WsOptions::default());
    let players = Players::start(&s);
    let mut unmasked = Vec::new();
    encode_frame(&mut unmasked, Opcode::Binary, true, b"\x80", None);
    let mut endless = frame(Opcode::Binary, false, &[0; 100]);
    for _ in 0..30 {
        endless.extend(frame(Opcode::Continuation, false, &[0; 100]));
    }
    let mut two_messages = frame(Opcode::Binary, false, b"\x81");
    two_messages.extend(frame(Opcode::Binary, true, b"\xa1a"));
    let mut split_bad_text = frame(Opcode::Text, false, b"caf\xc3");
    split_bad_text.extend(frame(Opcode::Continuation, true, b"("));
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("an unmasked frame", unmasked, 1002, "unmasked frame"),
        (
            "a 64-bit length of 2^63",
            header(0x82, &[0xff, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            1002,
            "64-bit length",
        ),
        (
            "a message over the maximum, header only (16-bit length)",
            header(0x82, &[0xfe, 0x04, 0x01]),
            1009,
            "message of 1025 bytes exceeds the maximum of 1024",
        ),
        (
            "a message over the maximum, header only (64-bit length)",
            header(0x82, &[0xff, 0, 0, 1, 0, 0, 0, 0, 0]),
            1009,
            "exceeds the maximum of 1024",
        ),
        (
            "fragments that never end",
            endless,
            1009,
            "message of 1100 bytes exceeds the maximum of 1024",
        ),
        (
            "a ping of 126 bytes",
            frame(Opcode::Ping, true, &[b'p'; 126]),
            1002,
            "control frame of 126 bytes",
        ),
        (
            "a close of 200 bytes",
            frame(Opcode::Close, true, &[b'c'; 200]),
            1002,
            "control frame of 126 bytes", // the 7-bit length field says 126: 16 bits follow
        ),
        (
            "a fragmented ping",
            frame(Opcode::Ping, false, b"p"),
            1002,
            "fragmented control frame",
        ),
        ("RSV1", header(0xc2, &[0x80]), 1002, "reserved bits"),
        ("RSV2", header(0xa2, &[0x80]), 1002, "reserved bits"),
        ("RSV3", header(0x92, &[0x80]), 1002, "reserved bits"),
        (
            "opcode 3",
            header(0x83, &[0x80]),
            1002,
            "reserved opcode 0x3",
        ),
        (
            "opcode 0xb",
            header(0x8b, &[0x80]),
            1002,
            "reserved opcode 0xb",
        ),
        (
            "invalid UTF-8 in a text frame",
            frame(Opcode::Text, true, b"caf\xc3("),
            1007,
            "not UTF-8",
        ),
        (
            "invalid UTF-8 in a text fragment",
            split_bad_text,
            1007,
            "not UTF-8",
        ),
        (
            "invalid UTF-8 in a close reason",
            frame(Opcode::Close, true, b"\x03\xe8bye \xff"),
            1007,
            "not UTF-8",
        ),
        (
            "close code 1005",
            frame(Opcode::Close, true, &1005u16.to_be_bytes()),
            1002,
            "invalid status 1005",
        ),
        (
            "close code 1006",
            frame(Opcode::Close, true, &1006u16.to_be_bytes()),
            1002,
            "invalid status 1006",
        ),
        (
            "close code 999",
            frame(Opcode::Close, true, &999u16.to_be_bytes()),
            1002,
            "invalid status 999",
        ),
        (
            "close code 2999",
            frame(Opcode::Close, true, &2999u16.to_be_bytes()),
            1002,
            "invalid status 2999",
        ),
        (
            "a one-byte close payload",
            frame(Opcode::Close, true, b"\x03"),
            1002,
            "one-byte payload",
        ),
        (
            "a continuation with nothing to continue",
            frame(Opcode::Continuation, true, b"\x80"),
            1002,
            "nothing to continue",
        ),
        (
            "a new message inside a fragmented one",
            two_messages,
            1002,
            "new message inside a fragmented message",
        ),
    ];
    for (what, bytes, code, text) in &cases {
        violation(&s, what, bytes, *code, text);
        assert_all_served(&s);
    }
    players.finish();
    assert_all_served(&s);
}

/// A message over the maximum is refused on its header: the server closes with 1009 without
/// waiting for (or reading into memory) the payload the header announced.
#[test]
fn an_oversize_message_is_refused_before_its_payload() {
    let s = ws_server(cfg().max_frame_len(MAX), WsOptions::default());
    let players = Players::start(&s);
    let mut p = ws_greeted(&s);
    // 1 GiB announced; only the header and 10 bytes are ever sent.
    let mut bytes = header(0x82, &[0xff, 0, 0, 0, 0, 0x40, 0, 0, 0]);
    bytes.extend_from_slice(&[0; 10]);
    p.send_raw(&bytes);
    let (op, body) = p.next().expect("a close frame");
    assert_eq!(
        (op, &body[..2]),
        (Opcode::Close, &1009u16.to_be_bytes()[..])
    );
    assert_eq!(p.next(), None);
    players.finish();
    assert_all_served(&s);
}

// --- The closing handshake ------------------------------------------------------------------

/// After a protocol error the server sends its close frame and FIN, then waits for the peer to
/// close as well, at most `Config::linger`. Returns how long after its close frame the server
/// dropped the socket, as seen by a peer that never answers: the peer keeps writing a byte now
/// and then (discarded while the server still drains), and the kernel answers with a reset
/// once the server's socket is gone.
fn silent_peer_is_dropped(s: &Probed, linger: Duration) -> Duration {
    let mut p = ws_greeted(s);
    let id = ws_id_of(s, &mut p);
    p.send_raw(&frame(Opcode::Ping, false, b"fragmented ping"));
    let (op, body) = p.next().expect("a close frame");
    let closed_at = Instant::now();
    assert_eq!(
        (op, &body[..2]),
        (Opcode::Close, &1002u16.to_be_bytes()[..])
    );
    assert_eq!(p.next(), None, "the server's FIN follows its close frame");
    s.wait("the hooks", |r| r.disconnects_of(id) == ["WebSocket"]);
    // The peer neither answers the close nor closes its socket.
    p.stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 64];
    loop {
        let waited = closed_at.elapsed();
        assert!(
            waited < linger + PROMPT,
            "the server still holds the socket {waited:?} after closing (linger {linger:?})"
        );
        if let Err(e) = p.stream.write_all(b"x") {
            assert!(
                matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset),
                "write: {e}"
            );
            return waited;
        }
        match p.stream.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("{n} bytes after the server's FIN"),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return waited,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// With a handshake timeout (500 ms) shorter than the linger (1 s).
#[test]
fn a_peer_that_never_answers_our_close_is_dropped_after_linger() {
    let linger = Duration::from_secs(1);
    let opts = WsOptions::default().handshake_timeout(Duration::from_millis(500));
    let s = ws_server(cfg().linger(linger), opts);
    let players = Players::start(&s);
    let took = silent_peer_is_dropped(&s, linger);
    println!("dropped {took:?} after the close frame");
    players.finish();
    assert_all_served(&s);
}

/// The same with the default handshake timeout (10 s), longer than the linger (1 s), and
/// another client connected to the WebSocket port that has not sent its upgrade request yet (a
/// browser's preconnect, say). Neither its handshake deadline nor that of the closed peer's
/// own upgrade (completed long ago) may postpone dropping the closed connection past
/// `Config::linger`.
#[test]
fn linger_is_kept_when_the_handshake_timeout_is_longer() {
    let linger = Duration::from_secs(1);
    let s = ws_server(cfg().linger(linger), WsOptions::default());
    let players = Players::start(&s);
    let pending = TcpStream::connect(s.ws.unwrap()).unwrap();
    let took = silent_peer_is_dropped(&s, linger);
    println!("dropped {took:?} after the close frame");
    drop(pending);
    players.finish();
    assert_all_served(&s);
}

// --- Control frames ---------------------------------------------------------------------------

/// Thousands of pings in one burst, with a message and unsolicited pongs among them: every ping
/// is answered with a pong carrying its payload, in order, the echo reply in its place, and
/// the connection stays open.
#[test]
fn a_ping_flood_is_answered_in_order() {
    let s = ws_server(cfg(), WsOptions::default());
    let players = Players::start(&s);
    let mut p = ws_greeted(&s);
    let id = ws_id_of(&s, &mut p);
    let count = 10_000usize;
    let payload = |i: usize| -> Vec<u8> {
        let mut v = format!("ping {i} ").into_bytes();
        v.resize(v.len() + i % 110, b'.');
        v
    };
    let mut burst = Vec::new();
    for i in 0..count {
        burst.extend(frame(Opcode::Ping, true, &payload(i)));
        if i % 1000 == 0 {
            burst.extend(frame(Opcode::Pong, true, b"unsolicited"));
        }
        if i == count / 2 {
            let m = net::payload(&msg! { "action": "echo", "seq": 99 });
            burst.extend(frame(Opcode::Binary, true, &m));
        }
    }
    let writer = {
        let mut stream = p.stream.try_clone().unwrap();
        std::thread::spawn(move || stream.write_all(&burst).unwrap())
    };
    for i in 0..count {
        let (op, body) = p.next().unwrap_or_else(|| panic!("closed after {i} pongs"));
        assert_eq!(op, Opcode::Pong, "after {i} pongs: {body:?}");
        assert_eq!(body, payload(i), "pong {i}");
        if i == count / 2 {
            let r = p.recv();
            assert_eq!(
                (r.action(), r.message().u64("seq").unwrap()),
                ("echo_reply", 99)
            );
        }
    }
    writer.join().unwrap();
    ws_echo(&mut p, 100);
    assert!(s.lock().disconnects_of(id).is_empty());
    assert!(s.lock().errors_of(id).is_empty());
    players.finish();
    assert_all_served(&s);
}
