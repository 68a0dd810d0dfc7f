//! The PROXY protocol on real loopback sockets, against an in-process server whose TCP and
//! WebSocket listeners both require the header (`Listen::proxy_protocol`).
//!
//! Every case checks what the hooks saw (`ServerHandler::on_connect`'s address,
//! `ServerHandler::on_refused` with its `ProxyError`), what the client read (a refused connection
//! reads end of stream and not one byte: no greeting), and ends as every hostile test here does:
//! a bystander connected before the case still echoes, a fresh valid client is served, and no
//! channel exists besides those the case meant to make.
//!
//! Headers are built by hand from the spec (not with the `ppp` crate the server parses them
//! with), so the two are checked against each other.

#[path = "support/net.rs"]
mod net;

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use net::{query, start_on, Peer, Probed, Refusal, PROMPT};
use repod::proxy::ProxyError;
use repod::ws::handshake::{client_key, parse_response, write_request};
use repod::ws::{encode_frame, MaskKeys, Opcode, Role, WsDecoder, WsEvent, WsUrl};
use repod::{msg, Config, Listen, OwnedMessage};

// ---------------------------------------------------------------------------------------------
// Headers, by the spec.

/// The version 2 signature.
const SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A v1 header for a TCP connection from `src` to `dst`.
fn v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    )
    .into_bytes()
}

/// A v2 header: version 2, command `cmd` (0 LOCAL, 1 PROXY), family byte `fam`, then `body`.
fn v2_raw(cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut h = SIG.to_vec();
    h.push(0x20 | cmd);
    h.push(fam);
    h.extend_from_slice(&(body.len() as u16).to_be_bytes());
    h.extend_from_slice(body);
    h
}

/// A v2 PROXY header for TCP from `src` to `dst`, with `tlvs` after the addresses.
fn v2(src: SocketAddr, dst: SocketAddr, tlvs: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    let fam = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            body.extend_from_slice(&s.octets());
            body.extend_from_slice(&d.octets());
            0x11
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            body.extend_from_slice(&s.octets());
            body.extend_from_slice(&d.octets());
            0x21
        }
        _ => panic!("one family for both ends"),
    };
    body.extend_from_slice(&src.port().to_be_bytes());
    body.extend_from_slice(&dst.port().to_be_bytes());
    body.extend_from_slice(tlvs);
    v2_raw(1, fam, &body)
}

/// A v2 LOCAL header (what a balancer's health check sends): no addresses.
fn v2_local() -> Vec<u8> {
    v2_raw(0, 0x00, &[])
}

/// One type-length-value record.
fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
    let mut t = vec![kind];
    t.extend_from_slice(&(value.len() as u16).to_be_bytes());
    t.extend_from_slice(value);
    t
}

/// The TLVs HAProxy and cloud balancers send: ALPN, authority, a unique id, an SSL record with a
/// version sub-TLV, and padding.
fn some_tlvs() -> Vec<u8> {
    let mut ssl = vec![0x01, 0, 0, 0, 0]; // client came over SSL; verify result 0
    ssl.extend(tlv(0x21, b"TLSv1.3"));
    [
        tlv(0x01, b"h2"),
        tlv(0x02, b"play.example.com"),
        tlv(0x05, &[0xab; 32]),
        tlv(0x20, &ssl),
        tlv(0x04, &[0; 7]),
    ]
    .concat()
}

const V4_CLIENT: &str = "203.0.113.7:56324";
const V4_BALANCER: &str = "192.0.2.1:5071";
const V6_CLIENT: &str = "[2001:db8::7]:56324";
const V6_BALANCER: &str = "[2001:db8::1]:5071";

/// Every header the server must accept, with the client address it names.
fn valid_headers() -> Vec<(&'static str, Vec<u8>, SocketAddr)> {
    let (c4, b4, c6, b6) = (
        sa(V4_CLIENT),
        sa(V4_BALANCER),
        sa(V6_CLIENT),
        sa(V6_BALANCER),
    );
    vec![
        ("v1 TCP4", v1(c4, b4), c4),
        ("v1 TCP6", v1(c6, b6), c6),
        ("v2 IPv4", v2(c4, b4, &[]), c4),
        ("v2 IPv6", v2(c6, b6, &[]), c6),
        ("v2 IPv4 with TLVs", v2(c4, b4, &some_tlvs()), c4),
        ("v2 IPv6 with TLVs", v2(c6, b6, &some_tlvs()), c6),
    ]
}

// ---------------------------------------------------------------------------------------------
// The server and the frame every case runs in.

/// A probe server whose TCP and WebSocket listeners require the header, within `timeout` and
/// `max_len` (v2).
fn server(timeout: Duration, max_len: usize) -> Probed {
    let listen = || {
        Listen::on("127.0.0.1:0")
            .proxy_protocol(true)
            .proxy_limits(timeout, max_len)
    };
    start_on(listen(), Config::default(), |mut s| {
        s.listen_ws(listen()).expect("listen_ws");
        s
    })
}

/// One case: a proxy server with a bystander already connected through a valid header.
/// (Fields drop in order: the bystander leaves before the server stops, so the stop does not
/// wait out its linger for it.)
struct Case {
    bystander: Peer,
    bystander_addr: SocketAddr,
    server: Probed,
}

impl Case {
    /// The usual limits: a header must come within 5 s and a v2 header is at most 256 bytes.
    fn new() -> Case {
        Case::with_limits(Duration::from_secs(5), 256)
    }

    fn with_limits(timeout: Duration, max_len: usize) -> Case {
        let server = server(timeout, max_len);
        let bystander_addr = sa("198.51.100.1:1000");
        let mut bystander = Peer::greeted_with(server.addr, &v1(bystander_addr, sa(V4_BALANCER)));
        bystander.echo(1);
        Case {
            server,
            bystander,
            bystander_addr,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Every refusal so far, once the reactor has run everything before this call.
    fn refusals(&self) -> Vec<Refusal> {
        query(&self.server.handle(), |_, _| ());
        self.server.lock().refused.clone()
    }

    /// Waits for the `n`th refusal and returns it.
    fn refusal(&self, n: usize) -> Refusal {
        self.server
            .wait(&format!("refusal #{n}"), |r| r.refused.len() >= n);
        self.server.lock().refused[n - 1].clone()
    }

    /// The address `on_connect` was given for the newest channel.
    fn last_connect_addr(&self) -> SocketAddr {
        self.server.lock().addrs.last().expect("a channel").1
    }

    /// Ends the case: the bystander still echoes (and still has its own address), a fresh
    /// client behind a valid header is served, and the case made exactly `made` channels.
    fn finish(mut self, made: usize) {
        self.bystander.echo(2);
        assert_eq!(peer_addr_of(&mut self.bystander), self.bystander_addr);
        let fresh_addr = sa("198.51.100.2:2000");
        let start = Instant::now();
        let mut fresh = Peer::greeted_with(self.addr(), &v2(fresh_addr, sa(V4_BALANCER), &[]));
        fresh.echo(3);
        assert_eq!(peer_addr_of(&mut fresh), fresh_addr);
        assert!(start.elapsed() < PROMPT, "a fresh client took too long");
        let rec = self.server.lock();
        assert_eq!(
            rec.connect_count(),
            2 + made,
            "channels made (bystander, fresh client, and {made} by the case): {:?}",
            rec.events
        );
    }
}

/// Asks the server (`peer`) which address it has for this connection.
fn peer_addr_of(p: &mut Peer) -> SocketAddr {
    p.send(&msg! { "action": "peer" });
    let reply = p.recv().expect("peer reply");
    assert_eq!(reply.action(), "peer");
    reply.message().str("addr").unwrap().parse().unwrap()
}

/// The server closes `p` before any greeting: it reads end of stream and not one byte. Then
/// `p` closes too (a refused connection lingers on the server until its peer closes).
fn assert_closed_silently(mut p: Peer) {
    let got = net::read_to_end_within(&mut p.stream, PROMPT);
    assert!(got.is_empty(), "the server sent {got:?} before closing");
}

/// Nothing arrives on `p` for a short while (the server is still waiting for the header).
fn assert_nothing_yet(p: &mut Peer) {
    p.stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut b = [0u8; 64];
    match p.stream.read(&mut b) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) => {}
        Ok(0) => panic!("closed while the header was incomplete"),
        Ok(n) => panic!("got {:?} before the header was complete", &b[..n]),
        Err(e) => panic!("read: {e}"),
    }
    p.stream.set_read_timeout(Some(PROMPT)).unwrap();
}

/// Writes `bytes` one at a time, each in its own segment (`TCP_NODELAY`, a short pause), so the
/// server reads the header cut at every byte.
fn dribble(p: &mut Peer, bytes: &[u8]) {
    for b in bytes {
        p.send_raw(std::slice::from_ref(b));
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn refused_proxy(r: &Refusal) -> ProxyError {
    assert_eq!(r.kind, "Proxy", "{r:?}");
    r.proxy.clone().expect("a PROXY error")
}

// ---------------------------------------------------------------------------------------------
// Valid headers.

#[test]
fn v1_and_v2_in_both_families_name_the_client_in_hooks_and_replies() {
    let case = Case::new();
    let headers = valid_headers();
    for (what, header, client) in &headers {
        let mut p = Peer::greeted_with(case.addr(), header);
        assert_eq!(case.last_connect_addr(), *client, "{what}: on_connect");
        assert_eq!(
            peer_addr_of(&mut p),
            *client,
            "{what}: ctx.addr() in a reply"
        );
        p.echo(7);
        let id = case.server.id_of(&mut p);
        let seen = query(&case.server.handle(), move |_, ctx| ctx.addr_of(id));
        assert_eq!(seen, Some(*client), "{what}: ServerCtx::addr_of");
    }
    assert_eq!(case.refusals(), []);
    case.finish(headers.len());
}

#[test]
fn v2_local_v2_unspecified_and_v1_unknown_keep_the_sockets_own_address() {
    let case = Case::new();
    let unspec = v2_raw(1, 0x00, &[]); // PROXY command, family UNSPEC: "use the real addresses"
    let with_tlv = v2_raw(0, 0x00, &tlv(0x04, b"pad")); // LOCAL may carry TLVs too
    let headers: [(&str, Vec<u8>); 4] = [
        ("v2 LOCAL", v2_local()),
        ("v2 LOCAL with a TLV", with_tlv),
        ("v2 PROXY UNSPEC", unspec),
        ("v1 UNKNOWN", b"PROXY UNKNOWN\r\n".to_vec()),
    ];
    for (what, header) in &headers {
        let mut p = Peer::greeted_with(case.addr(), header);
        let own = p.stream.local_addr().unwrap();
        assert_eq!(case.last_connect_addr(), own, "{what}: on_connect");
        assert_eq!(peer_addr_of(&mut p), own, "{what}: ctx.addr()");
        p.echo(8);
    }
    assert_eq!(case.refusals(), []);
    case.finish(headers.len());
}

#[test]
fn a_header_split_at_every_byte_is_reassembled() {
    let case = Case::new();
    let mut headers = valid_headers();
    headers.push(("v2 LOCAL", v2_local(), sa("0.0.0.0:0")));
    let count = headers.len();
    for (what, header, client) in headers {
        let mut p = Peer::connect(case.addr());
        let (head, last) = header.split_at(header.len() - 1);
        dribble(&mut p, head);
        // One byte short: no greeting, no channel, not closed.
        assert_nothing_yet(&mut p);
        p.send_raw(last);
        p.expect_greeting();
        let expected = if what == "v2 LOCAL" {
            p.stream.local_addr().unwrap()
        } else {
            client
        };
        assert_eq!(peer_addr_of(&mut p), expected, "{what}");
        p.echo(9);
    }
    assert_eq!(case.refusals(), []);
    case.finish(count);
}

#[test]
fn frames_in_the_headers_segment_are_handled() {
    let case = Case::new();
    for (what, header, client) in valid_headers() {
        // Header, an echo and a `peer` request, in one write.
        let mut wire = header;
        wire.extend(net::framed(&net::payload(
            &msg! { "action": "echo", "seq": 11 },
        )));
        wire.extend(net::framed(&net::payload(&msg! { "action": "peer" })));
        let mut p = Peer::connect_with(case.addr(), &wire);
        p.expect_greeting();
        let echo = p.recv().expect("echo reply");
        assert_eq!(echo.action(), "echo_reply", "{what}");
        assert_eq!(echo.message().u64("seq").unwrap(), 11, "{what}");
        let peer = p.recv().expect("peer reply");
        assert_eq!(peer.message().str("addr").unwrap(), client.to_string());
    }
    case.finish(valid_headers().len());
}

// ---------------------------------------------------------------------------------------------
// Refusals.

#[test]
fn a_truncated_header_then_close_is_dropped_quietly_without_a_channel() {
    // What the library does: a connection that ends before its header is complete is removed
    // when its end of stream is read, with no `on_refused` call (it is not refused, it left).
    let case = Case::new();
    let c4 = sa(V4_CLIENT);
    let cuts: Vec<(&str, Vec<u8>)> = vec![
        ("nothing at all", vec![]),
        ("v1, first 3 bytes", v1(c4, sa(V4_BALANCER))[..3].to_vec()),
        ("v1, all but LF", {
            let h = v1(c4, sa(V4_BALANCER));
            h[..h.len() - 1].to_vec()
        }),
        ("v2, half the signature", SIG[..6].to_vec()),
        (
            "v2, up to the length",
            v2(c4, sa(V4_BALANCER), &[])[..16].to_vec(),
        ),
        ("v2, addresses cut", {
            let h = v2(c4, sa(V4_BALANCER), &some_tlvs());
            h[..h.len() - 5].to_vec()
        }),
    ];
    for (what, bytes) in &cuts {
        let mut p = Peer::connect_with(case.addr(), bytes);
        p.shutdown_write();
        let got = net::read_to_end_within(&mut p.stream, PROMPT);
        assert!(got.is_empty(), "{what}: the server sent {got:?}");
    }
    assert_eq!(
        case.refusals(),
        [],
        "a connection that ended mid-header is dropped without on_refused"
    );
    case.finish(0);
}

#[test]
fn an_oversized_v2_header_is_refused_on_its_length_field() {
    // Cap 256: 16 bytes of fixed part plus at most 240 of addresses and TLVs.
    let case = Case::new();
    let (c4, b4) = (sa(V4_CLIENT), sa(V4_BALANCER));
    // Exactly at the cap: 12 bytes of addresses + a 3 + 225 byte TLV = 240.
    let at_cap = v2(c4, b4, &tlv(0x04, &[0; 225]));
    assert_eq!(at_cap.len(), 256);
    let mut p = Peer::greeted_with(case.addr(), &at_cap);
    assert_eq!(
        peer_addr_of(&mut p),
        c4,
        "a header of exactly the cap is served"
    );
    drop(p);
    // One byte over: only the fixed 16 bytes are sent, the rest never comes; the length field
    // alone is enough to refuse (the time limit, 5 s, is not what closes it).
    let over = v2(c4, b4, &tlv(0x04, &[0; 226]));
    let p = Peer::connect_with(case.addr(), &over[..16]);
    let own = p.stream.local_addr().unwrap();
    let start = Instant::now();
    assert_closed_silently(p);
    let r = case.refusal(1);
    assert_eq!(refused_proxy(&r), ProxyError::TooLarge { max: 256 });
    assert_eq!(r.addr, own, "on_refused gets the socket's own address");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "refused on the length field, not at the time limit"
    );
    // A huge length field (64 KiB), sent with the whole body: refused all the same.
    let huge = v2(c4, b4, &tlv(0x04, &[0; 65000]));
    let mut p = Peer::connect(case.addr());
    let _ = p.stream.write_all(&huge); // the server may close while we write
    assert_closed_silently(p);
    assert_eq!(
        refused_proxy(&case.refusal(2)),
        ProxyError::TooLarge { max: 256 }
    );
    assert_eq!(case.refusals().len(), 2);
    case.finish(1);
}

#[test]
fn a_v1_header_without_crlf_past_107_bytes_is_refused() {
    let case = Case::new();
    // No CRLF at all, 120 bytes.
    let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 109]].concat();
    let p = Peer::connect_with(case.addr(), &long);
    assert_closed_silently(p);
    assert_eq!(
        refused_proxy(&case.refusal(1)),
        ProxyError::TooLarge { max: 107 }
    );
    // CRLF, but only at bytes 108 and 109.
    let mut late = [b"PROXY TCP4 ".as_slice(), &[b' '; 96]].concat();
    late.extend_from_slice(b"\r\n");
    assert_eq!(late.len(), 109);
    let p = Peer::connect_with(case.addr(), &late);
    assert_closed_silently(p);
    assert_eq!(
        refused_proxy(&case.refusal(2)),
        ProxyError::TooLarge { max: 107 }
    );
    // Dribbled a byte at a time: refused once 107 bytes without CRLF are in.
    let mut p = Peer::connect(case.addr());
    dribble(&mut p, &long[..100]);
    assert_nothing_yet(&mut p);
    p.send_raw(&long[100..]);
    assert_closed_silently(p);
    assert_eq!(
        refused_proxy(&case.refusal(3)),
        ProxyError::TooLarge { max: 107 }
    );
    // A malformed v1 header of legal length.
    let p = Peer::connect_with(case.addr(), b"PROXY TCP4 1.2.3 4.5.6.7 1 2\r\n");
    assert_closed_silently(p);
    assert!(matches!(
        refused_proxy(&case.refusal(4)),
        ProxyError::Invalid(_)
    ));
    assert_eq!(case.refusals().len(), 4);
    case.finish(0);
}

/// Whether a refusal's reason is the one a case expects.
type IsExpected = fn(&ProxyError) -> bool;

#[test]
fn garbage_is_closed_before_any_greeting() {
    let case = Case::new();
    let whoami = net::framed(&net::payload(&msg! { "action": "whoami" }));
    let bad_version = {
        let mut h = v2(sa(V4_CLIENT), sa(V4_BALANCER), &[]);
        h[12] = 0x31; // version 3
        h
    };
    let unix = v2_raw(1, 0x31, &[0u8; 216]); // AF_UNIX: no address to name a player by
    let cases: Vec<(&str, Vec<u8>, IsExpected)> = vec![
        ("a repod frame, no header", whoami, |e| {
            *e == ProxyError::Missing
        }),
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            |e| *e == ProxyError::Missing,
        ),
        ("PROXZ", b"PROXZ TCP4".to_vec(), |e| {
            *e == ProxyError::Missing
        }),
        ("v2, version 3", bad_version, |e| {
            matches!(e, ProxyError::Invalid(_))
        }),
        ("v2, a Unix socket", unix, |e| *e == ProxyError::Unsupported),
    ];
    for (n, (what, bytes, ok)) in cases.iter().enumerate() {
        let p = Peer::connect_with(case.addr(), bytes);
        let own = p.stream.local_addr().unwrap();
        assert_closed_silently(p);
        let r = case.refusal(n + 1);
        assert!(ok(&refused_proxy(&r)), "{what}: {r:?}");
        assert_eq!(r.addr, own, "{what}");
    }
    assert_eq!(case.refusals().len(), cases.len());
    case.finish(0);
}

#[test]
fn a_silent_client_is_closed_at_the_time_limit() {
    // The limit is 1 s; only bounds are checked (closed, well within 10 s), not the time.
    let case = Case::with_limits(Duration::from_secs(1), 256);
    // One client sends nothing; another sends half a header and stops.
    let silent = Peer::connect(case.addr());
    let half = Peer::connect_with(case.addr(), &v2(sa(V4_CLIENT), sa(V4_BALANCER), &[])[..20]);
    let mut own = Vec::new();
    for mut p in [silent, half] {
        own.push(p.stream.local_addr().unwrap());
        let got = net::read_to_end_within(&mut p.stream, Duration::from_secs(10));
        assert!(got.is_empty(), "{got:?}");
    }
    case.refusal(2);
    let refusals = case.refusals();
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    for r in &refusals {
        assert_eq!(refused_proxy(r), ProxyError::Timeout);
        assert!(own.contains(&r.addr), "{r:?} is from one of {own:?}");
    }
    case.finish(0);
}

// ---------------------------------------------------------------------------------------------
// WebSocket behind the header.

/// A raw WebSocket client reading what the server sends.
struct WsRead {
    decoder: WsDecoder,
    inbox: std::collections::VecDeque<OwnedMessage>,
}

impl WsRead {
    fn feed(&mut self, bytes: &mut [u8]) {
        let inbox = &mut self.inbox;
        self.decoder
            .decode(bytes, |ev| {
                match ev {
                    WsEvent::Binary(b) => inbox.push_back(OwnedMessage::parse(b.to_vec()).unwrap()),
                    other => panic!("unexpected {other:?}"),
                }
                ControlFlow::Continue(())
            })
            .expect("valid frames");
    }

    fn recv(&mut self, stream: &mut TcpStream) -> OwnedMessage {
        let mut buf = [0u8; 4096];
        while self.inbox.is_empty() {
            let n = stream.read(&mut buf).expect("read");
            assert!(n > 0, "closed");
            self.feed(&mut buf[..n]);
        }
        self.inbox.pop_front().unwrap()
    }
}

#[test]
fn header_upgrade_and_frames_in_one_write_on_a_websocket_listener() {
    let case = Case::new();
    let ws = case.server.ws.expect("a WebSocket listener");
    let url = WsUrl::parse(&format!("ws://{ws}/")).unwrap().unwrap();
    let mut keys = MaskKeys::new(5);
    let cases = valid_headers()
        .into_iter()
        .map(|(w, h, c)| (w, h, c, false));
    // And once with the header dribbled a byte at a time, the upgrade and frames in one write.
    let (c4, b4) = (sa(V4_CLIENT), sa(V4_BALANCER));
    let dribbled = (
        "v2 IPv4 with TLVs, dribbled",
        v2(c4, b4, &some_tlvs()),
        c4,
        true,
    );
    let count = cases.len() + 1;
    for (what, header, client, dribble_header) in cases.chain([dribbled]) {
        let key = client_key();
        let mut wire = Vec::new();
        write_request(&mut wire, &url, &key);
        for m in [
            net::payload(&msg! { "action": "echo", "seq": 12 }),
            net::payload(&msg! { "action": "peer" }),
        ] {
            encode_frame(&mut wire, Opcode::Binary, true, &m, Some(keys.next_key()));
        }
        let mut p = Peer::connect(ws);
        if dribble_header {
            dribble(&mut p, &header);
        } else {
            wire.splice(0..0, header);
        }
        p.send_raw(&wire);
        let mut stream = p.stream;
        // The 101, then the greeting and both replies.
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        let mut reader = WsRead {
            decoder: WsDecoder::new(Role::Client, 1 << 20),
            inbox: Default::default(),
        };
        loop {
            let n = stream.read(&mut buf).expect("upgrade answer");
            assert!(n > 0, "{what}: closed: {}", String::from_utf8_lossy(&head));
            head.extend_from_slice(&buf[..n]);
            if let Some(len) = parse_response(&head, &key, 1 << 16).expect("101") {
                reader.feed(&mut head[len..]);
                break;
            }
        }
        assert_eq!(reader.recv(&mut stream).action(), "connected", "{what}");
        let echo = reader.recv(&mut stream);
        assert_eq!(echo.action(), "echo_reply", "{what}");
        assert_eq!(echo.message().u64("seq").unwrap(), 12);
        let peer = reader.recv(&mut stream);
        assert_eq!(peer.message().str("addr").unwrap(), client.to_string());
        assert_eq!(case.last_connect_addr(), client, "{what}: on_connect");
        stream.shutdown(Shutdown::Write).unwrap();
    }
    // An upgrade request with no header: closed with no HTTP answer at all.
    let mut p = Peer::connect(ws);
    let mut req = Vec::new();
    write_request(&mut req, &url, &client_key());
    p.send_raw(&req);
    assert_closed_silently(p);
    assert_eq!(refused_proxy(&case.refusal(1)), ProxyError::Missing);
    // A valid header, then an upgrade on a path nobody serves: 404 to the client it names, and
    // on_refused gets that client's address (the header was fine: it is the client's).
    let client = sa(V4_CLIENT);
    let mut p = Peer::connect_with(ws, &v1(client, sa(V4_BALANCER)));
    let mut req = Vec::new();
    let nope = WsUrl::parse(&format!("ws://{ws}/nope")).unwrap().unwrap();
    write_request(&mut req, &nope, &client_key());
    p.send_raw(&req);
    let answer = net::read_to_end_within(&mut p.stream, PROMPT);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 404 "), "{answer:?}");
    let r = case.refusal(2);
    assert_eq!((r.kind, r.addr), ("Handshake", client), "{r:?}");
    drop(p);
    case.finish(count);
}

#[test]
fn a_header_still_coming_when_the_server_drains_is_refused_as_unavailable() {
    let case = Case::new();
    let p = Peer::connect_with(case.addr(), &v2(sa(V4_CLIENT), sa(V4_BALANCER), &[])[..10]);
    let own = p.stream.local_addr().unwrap();
    // The server has accepted it by the time it answers a later message of the bystander.
    let mut bystander = case.bystander;
    bystander.echo(5);
    let handle = case.server.handle();
    handle.drain(Duration::from_secs(60));
    assert_closed_silently(p);
    let r = case.server.lock().refused.clone();
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(refused_proxy(&r[0]), ProxyError::Unavailable);
    assert_eq!(r[0].addr, own);
    // The bystander is still served; new connections are not (the listener is closed), so this
    // case cannot end with a fresh client: the drain ends when the bystander leaves.
    bystander.echo(6);
    assert_eq!(peer_addr_of(&mut bystander), case.bystander_addr);
    match TcpStream::connect(case.server.addr) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
        other => panic!("a connection during the drain: {other:?}"),
    }
    drop(bystander);
    net::wait_for("the drain ends", PROMPT, || handle.health().stopped);
    assert_eq!(case.server.lock().connect_count(), 1);
}
