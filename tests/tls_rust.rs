//! TLS between repod's own server and client, in one process: `tls://` and `wss://` with a
//! private CA, a certificate for another name refused with a distinct error, reload through
//! `ServerHandle::reload_tls`, and a plaintext peer on a TLS port refused while a TLS player
//! carries on. Certificates come from the `openssl` CLI at test time (`support/tls.rs`); the
//! peers no one here wrote (Python, OpenSSL, Chromium, HAProxy) are in `tls.rs`.

#[path = "support/examples.rs"]
mod examples;
#[path = "support/net.rs"]
mod net;
#[path = "support/proc.rs"]
mod proc;
#[path = "support/python.rs"]
mod python;
#[path = "support/tls.rs"]
mod tls;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use net::{start_on, Probed};
use repod::tls::{TlsAcceptor, TlsConnector};
use repod::{msg, Config, Connection, Listen, Mode, OwnedMessage, WsOptions};

const WAIT: Duration = Duration::from_secs(30);

/// A probe server with a TLS TCP listener and a `wss` listener, both with `leaf`.
fn tls_server(acceptor: &TlsAcceptor) -> Probed {
    let acceptor2 = acceptor.clone();
    start_on(
        Listen::on("127.0.0.1:0").tls(acceptor.clone()),
        Config::default(),
        move |mut s| {
            s.listen_ws_with(
                Listen::on("127.0.0.1:0").tls(acceptor2),
                WsOptions::default(),
            )
            .expect("listen wss");
            s
        },
    )
}

fn client_cfg(certs: &tls::Certs) -> Config {
    Config::default().tls(TlsConnector::with_ca_file(&certs.ca).expect("CA file"))
}

/// Receives until a message of `action` arrives (events included), or panics after [`WAIT`].
fn recv_action(conn: &mut Connection, action: &str) -> OwnedMessage {
    let until = Instant::now() + WAIT;
    let mut seen = Vec::new();
    while Instant::now() < until {
        if let Some(m) = conn.recv_timeout(Duration::from_millis(100)) {
            let a = m.action().to_owned();
            if a == action {
                return m;
            }
            let text = m.message().str("error").unwrap_or("").to_owned();
            seen.push(format!("{a} {text}"));
        }
    }
    panic!("no {action:?} within {WAIT:?}; saw {seen:?}");
}

/// A new TLS player is greeted and echoed: the server is still serving.
fn assert_tls_served(server: &Probed, certs: &tls::Certs) {
    let url = format!("tls://127.0.0.1:{}", server.addr.port());
    let mut conn =
        Connection::connect_with(url.as_str(), Mode::Stepped, client_cfg(certs)).unwrap();
    recv_action(&mut conn, "connected");
    conn.send(&msg! { "action": "echo", "served": true });
    recv_action(&mut conn, "echo_reply");
}

fn echo_over(url: &str, certs: &tls::Certs, mode: Mode) {
    let mut conn = Connection::connect_with(url, mode, client_cfg(certs)).expect("connect");
    recv_action(&mut conn, "socketConnect");
    recv_action(&mut conn, "connected");
    for i in 0..50u32 {
        conn.send(&msg! { "action": "echo", "i": i, "pad": "x".repeat(i as usize * 100).as_str() });
        let reply = recv_action(&mut conn, "echo_reply");
        assert_eq!(reply.message().u64("i").unwrap(), u64::from(i));
    }
    // A message larger than a TLS record (16 KiB) crosses several records both ways.
    let big = "y".repeat(100_000);
    conn.send(&msg! { "action": "echo", "big": big.as_str() });
    let reply = recv_action(&mut conn, "echo_reply");
    assert_eq!(reply.message().str("big").unwrap(), big);
    conn.close();
}

#[test]
fn rust_client_echoes_over_tls_and_wss_with_a_private_ca() {
    let Some(certs) = tls::certs() else { return };
    let acceptor = TlsAcceptor::from_pem_files(&certs.leaf1.cert, &certs.leaf1.key).unwrap();
    let server = tls_server(&acceptor);
    let port = server.addr.port();
    let ws_port = server.ws.unwrap().port();
    for mode in [Mode::Stepped, Mode::Background] {
        echo_over(&format!("tls://localhost:{port}"), certs, mode);
        echo_over(&format!("tls://127.0.0.1:{port}"), certs, mode);
        echo_over(&format!("wss://localhost:{ws_port}/"), certs, mode);
    }
    assert_tls_served(&server, certs);
}

#[test]
fn a_certificate_for_another_name_is_refused_with_a_tls_error() {
    let Some(certs) = tls::certs() else { return };
    let acceptor = TlsAcceptor::from_pem_files(&certs.other.cert, &certs.other.key).unwrap();
    let server = tls_server(&acceptor);
    for url in [
        format!("tls://localhost:{}", server.addr.port()),
        format!("wss://localhost:{}/", server.ws.unwrap().port()),
    ] {
        let mut conn =
            Connection::connect_with(url.as_str(), Mode::Stepped, client_cfg(certs)).unwrap();
        let err = recv_action(&mut conn, "error");
        let text = err.message().str("error").unwrap().to_owned();
        assert!(
            text.starts_with("TLS certificate refused") && text.contains("not valid for name"),
            "{url}: {text}"
        );
        assert!(!conn.is_connected());
    }
    // A client trusting only Mozilla's roots refuses the private CA itself.
    let url = format!("tls://localhost:{}", server.addr.port());
    let mut conn =
        Connection::connect_with(url.as_str(), Mode::Stepped, Config::default()).unwrap();
    let text = recv_action(&mut conn, "error")
        .message()
        .str("error")
        .unwrap()
        .to_owned();
    assert!(
        text.starts_with("TLS certificate refused") && text.contains("UnknownIssuer"),
        "{text}"
    );
}

#[test]
fn reload_through_the_handle_changes_new_handshakes_only() {
    let Some(certs) = tls::certs() else { return };
    let dir = tls::tempdir("tls-reload-rust");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::copy(&certs.leaf1.cert, &cert).unwrap();
    std::fs::copy(&certs.leaf1.key, &key).unwrap();
    let acceptor = TlsAcceptor::from_pem_files(&cert, &key).unwrap();
    let server = tls_server(&acceptor);
    let url = format!("tls://localhost:{}", server.addr.port());
    let mut old = Connection::connect_with(url.as_str(), Mode::Stepped, client_cfg(certs)).unwrap();
    recv_action(&mut old, "connected");
    // The subject line of the certificate a new handshake gets.
    let served = |certs: &tls::Certs| -> String {
        let out = tls::s_client(certs, &server.addr.to_string(), "localhost", &[]);
        assert!(out.ok, "{}", out.output);
        out.subject.unwrap_or_default()
    };
    assert!(served(certs).contains(certs.leaf1.cn));

    std::fs::copy(&certs.leaf2.cert, &cert).unwrap();
    std::fs::copy(&certs.leaf2.key, &key).unwrap();
    server.handle().reload_tls().expect("reload");
    assert!(served(certs).contains(certs.leaf2.cn));

    // A broken file: the reload fails with a TLS configuration error, leaf2 stays.
    std::fs::copy(&certs.broken, &cert).unwrap();
    let err = server.handle().reload_tls().unwrap_err();
    assert!(
        matches!(err, repod::Error::Tls(repod::TlsError::Config(_))),
        "{err}"
    );
    assert!(served(certs).contains(certs.leaf2.cn));
    // A key that does not match the certificate is refused the same way.
    std::fs::copy(&certs.leaf1.cert, &cert).unwrap();
    std::fs::copy(&certs.leaf2.key, &key).unwrap();
    assert!(server.handle().reload_tls().is_err());
    assert!(served(certs).contains(certs.leaf2.cn));

    // The connection made before every reload still echoes.
    old.send(&msg! { "action": "echo", "n": 1 });
    assert_eq!(
        recv_action(&mut old, "echo_reply")
            .message()
            .u64("n")
            .unwrap(),
        1
    );
    assert_tls_served(&server, certs);
}

#[test]
fn a_plaintext_peer_on_a_tls_port_is_refused_and_the_others_carry_on() {
    let Some(certs) = tls::certs() else { return };
    let acceptor = TlsAcceptor::from_pem_files(&certs.leaf1.cert, &certs.leaf1.key).unwrap();
    let server = tls_server(&acceptor);
    let url = format!("tls://localhost:{}", server.addr.port());
    let mut good =
        Connection::connect_with(url.as_str(), Mode::Stepped, client_cfg(certs)).unwrap();
    recv_action(&mut good, "connected");

    // A repod client without TLS: its first frame is not a TLS record.
    let mut plain = TcpStream::connect(server.addr).unwrap();
    plain.set_read_timeout(Some(WAIT)).unwrap();
    plain
        .write_all(&net::framed(&net::payload(&msg! { "action": "echo" })))
        .unwrap();
    let mut buf = Vec::new();
    // Closed without a greeting, nothing in clear.
    let _ = plain.read_to_end(&mut buf);
    assert!(
        !buf.windows(9).any(|w| w == b"connected"),
        "plaintext greeting leaked: {buf:?}"
    );
    server.wait("the refusal reaches on_refused", |r| {
        r.refused.iter().any(|f| f.text.starts_with("TLS failed"))
    });

    good.send(&msg! { "action": "echo", "n": 2 });
    assert_eq!(
        recv_action(&mut good, "echo_reply")
            .message()
            .u64("n")
            .unwrap(),
        2
    );
    assert_tls_served(&server, certs);
}

mod login {
    use super::*;
    use repod::ws::{Admission, UpgradeRequest};
    use repod::{ChannelCtx, ChannelHandler, Routes, Server, ServerCtx, ServerHandler};

    /// Tokens and session cookies a lobby service issued: token -> user id.
    pub struct Lobby;

    impl ServerHandler<Player> for Lobby {
        fn on_upgrade(
            &mut self,
            _: &mut ServerCtx<'_, Player>,
            req: &UpgradeRequest<'_>,
        ) -> Admission {
            let token = req.query_param("token").or_else(|| req.cookie("session"));
            match token {
                Some("alice-token") => Admission::accept_as(1001u64),
                Some("bob-cookie") => Admission::accept_as(1002u64),
                Some("banned") => Admission::Refuse(403),
                _ => Admission::Refuse(401),
            }
        }
    }

    #[derive(Default)]
    pub struct Player {
        user: Option<u64>,
    }

    impl ChannelHandler for Player {
        type Server = Lobby;
        fn routes(r: &mut Routes<Self>) {
            r.on("whoami", |me, ctx, _| {
                let from_ctx = ctx.login::<u64>().copied().unwrap_or(0);
                ctx.send(&msg! { "action": "you", "user": me.user.unwrap_or(0), "ctx": from_ctx });
                Ok(())
            });
        }
        fn on_connect(&mut self, ctx: &mut ChannelCtx<'_, Self>) {
            self.user = ctx.login::<u64>().copied();
        }
    }

    /// Sends a raw upgrade request with `extra` headers to a plain `ws` listener; the status.
    fn raw_status(addr: std::net::SocketAddr, target: &str, extra: &str) -> u16 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        write!(
            s,
            "GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
        )
        .unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).unwrap();
        std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
    }

    #[test]
    fn the_upgrade_hook_admits_by_token_or_cookie_and_refuses_with_a_status() {
        let Some(certs) = tls::certs() else { return };
        let acceptor = TlsAcceptor::from_pem_files(&certs.leaf1.cert, &certs.leaf1.key).unwrap();
        let mut server = Server::<Player>::bind("127.0.0.1:0", Lobby).unwrap();
        let wss = server
            .listen_ws(Listen::on("127.0.0.1:0").tls(acceptor))
            .unwrap();
        let ws = server.listen_ws("127.0.0.1:0").unwrap();
        let server = server.start_background().unwrap();

        // A browser's way: the token in the query, over wss.
        let url = format!("wss://localhost:{}/?token=alice-token", wss.port());
        let mut conn =
            Connection::connect_with(url.as_str(), Mode::Stepped, client_cfg(certs)).unwrap();
        recv_action(&mut conn, "connected");
        conn.send(&msg! { "action": "whoami" });
        let you = recv_action(&mut conn, "you");
        assert_eq!(you.message().u64("user").unwrap(), 1001);
        assert_eq!(you.message().u64("ctx").unwrap(), 1001);

        // No token: 401, and the Rust client says so.
        let url = format!("wss://localhost:{}/", wss.port());
        let mut conn =
            Connection::connect_with(url.as_str(), Mode::Stepped, client_cfg(certs)).unwrap();
        let text = recv_action(&mut conn, "error")
            .message()
            .str("error")
            .unwrap()
            .to_owned();
        assert!(text.contains("401"), "{text}");

        // A cookie, and the statuses the hook chose, on the plain listener.
        assert_eq!(
            raw_status(ws, "/", "Cookie: theme=dark; session=bob-cookie\r\n"),
            101
        );
        assert_eq!(raw_status(ws, "/?token=banned", ""), 403);
        assert_eq!(raw_status(ws, "/", ""), 401);
        drop(server);
    }
}

/// Heartbeats, statistics and the connection cap behave over TLS as in clear: the server's pings
/// and the client's pongs travel encrypted and measure an RTT, the figures count the
/// connection's traffic (wire bytes: ciphertext), and a player over the cap is turned away
/// before its handshake while the others carry on.
#[test]
fn heartbeats_statistics_and_the_connection_cap_over_tls() {
    let Some(certs) = tls::certs() else { return };
    let acceptor = TlsAcceptor::from_pem_files(&certs.leaf1.cert, &certs.leaf1.key).unwrap();
    let cfg = Config::default()
        .heartbeat(Some(Duration::from_millis(100)))
        .max_connections(Some(2));
    let server = start_on(Listen::on("127.0.0.1:0").tls(acceptor), cfg, |s| s);
    let url = format!("tls://localhost:{}", server.addr.port());
    let mut a =
        Connection::connect_with(url.as_str(), Mode::Background, client_cfg(certs)).unwrap();
    recv_action(&mut a, "connected");
    let mut b =
        Connection::connect_with(url.as_str(), Mode::Background, client_cfg(certs)).unwrap();
    recv_action(&mut b, "connected");

    // Over the cap: closed at accept, so the handshake fails and no channel is made.
    let mut c = Connection::connect_with(url.as_str(), Mode::Stepped, client_cfg(certs)).unwrap();
    let text = recv_action(&mut c, "error")
        .message()
        .str("error")
        .unwrap()
        .to_owned();
    assert!(!text.is_empty());
    // Asked on the reactor thread, which has turned `c` away by now: a handle's figures are
    // published as of a recent turn and may not count `b` yet.
    let connections = net::query(&server.handle(), |_, ctx| ctx.server_stats().connections);
    assert_eq!(connections, 2);

    // Several heartbeat rounds: the server measured each player's RTT through TLS, and nobody
    // was closed for silence (the clients answer the pings by themselves).
    std::thread::sleep(Duration::from_millis(600));
    a.send(&msg! { "action": "echo", "n": 3 });
    assert_eq!(
        recv_action(&mut a, "echo_reply")
            .message()
            .u64("n")
            .unwrap(),
        3
    );
    let stats = net::query(&server.handle(), |_, ctx| {
        let ids: Vec<_> = ctx.channels().map(|(id, _)| id).collect();
        ids.iter()
            .map(|&id| ctx.stats_of(id).unwrap())
            .collect::<Vec<_>>()
    });
    assert_eq!(stats.len(), 2, "both players still connected");
    for s in &stats {
        assert!(s.rtt.is_some(), "no RTT measured over TLS: {s:?}");
        // The greeting and at least four pings out; pongs in.
        assert!(s.msgs_out >= 5 && s.msgs_in >= 4, "{s:?}");
        // Wire bytes: every message costs a record header and tag on top of its frame.
        assert!(s.bytes_out > s.msgs_out * 22, "{s:?}");
    }
    // On the reactor thread, like the figures above (a handle's are a turn or so late).
    let totals = net::query(&server.handle(), |_, ctx| ctx.server_stats());
    assert!(totals.bytes_in > 0 && totals.msgs_in >= 8, "{totals:?}");
    drop((a, b));
}

/// After a real handshake (Python's `ssl` over memory BIOs, `tests/python/tls_raw.py`), bytes
/// that break TLS reach the channel's hooks as `Error::Tls`, not as a clean close: a record cut
/// short by the end of the stream, bytes that are no record, a record that does not decrypt.
#[test]
fn broken_records_reach_the_hooks_as_tls_errors() {
    let Some(certs) = tls::certs() else { return };
    let Some(py) = python::venv() else { return };
    let acceptor = TlsAcceptor::from_pem_files(&certs.leaf1.cert, &certs.leaf1.key).unwrap();
    let server = tls_server(&acceptor);
    let port = server.addr.port().to_string();
    let ca = certs.ca.to_str().unwrap();
    for mode in ["truncated", "garbage", "bad_mac"] {
        let before = server.lock().disconnect_count();
        let mut raw = proc::Proc::python(py, "tls_raw.py", &["127.0.0.1", &port, ca, mode]);
        raw.expect_word("greeted");
        raw.expect_word("bad");
        raw.expect_within("closed", WAIT);
        server.wait("the close reaches the hooks", |r| {
            r.disconnect_count() > before
        });
        let rec = server.lock();
        let last = rec.events.iter().rev().find_map(|e| match e {
            net::Ev::Close(_, kind) => Some(*kind),
            _ => None,
        });
        assert_eq!(last, Some("Tls"), "{mode}: {:?}", rec.events);
    }
    assert_tls_served(&server, certs);
}
