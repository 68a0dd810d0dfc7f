//! WebSocket players on the same reactor as TCP players: the Rust client over `ws://`, mixed
//! broadcasts, the greeting and hook order, text messages and the close handshake.
//!
//! Raw peers here speak WebSocket through repod's own sans-IO codec (`repod::ws`); the
//! independent peers (Python `websockets`, Autobahn, Chromium) are in `ws_interop.rs`,
//! `autobahn.rs` and `browser.rs`.

#[path = "support/net.rs"]
mod net;
#[allow(dead_code)]
#[path = "support/ws.rs"]
mod ws;

use std::time::Duration;

use net::{start_with, Ev, PROMPT};
use repod::ws::Opcode;
use repod::{msg, Client, ClientRoutes, Config, Connection, Listener, Mode};
use ws::WsPeer;

fn ws_server() -> net::Probed {
    start_with(Config::default(), |mut s| {
        s.listen_ws("127.0.0.1:0").expect("listen_ws");
        s
    })
}

#[test]
fn raw_websocket_peer_is_greeted_echoed_and_closed_cleanly() {
    let server = ws_server();
    let ws = server.ws.unwrap();
    let mut peer = WsPeer::connect(ws, "/");
    assert_eq!(peer.recv().action(), "connected");
    peer.send(&msg! { "action": "echo", "n": 7, "s": "h\u{e9}" });
    let reply = peer.recv();
    assert_eq!(reply.action(), "echo_reply");
    assert_eq!(reply.message().u64("n").unwrap(), 7);
    assert_eq!(reply.message().str("s").unwrap(), "h\u{e9}");
    // A ping between messages is answered in order.
    peer.send_frame(Opcode::Ping, true, b"are you there");
    assert_eq!(peer.next(), Some((Opcode::Pong, b"are you there".to_vec())));
    // Our close is answered with the same status, then the server closes TCP.
    peer.send_close(1000);
    assert_eq!(
        peer.next(),
        Some((Opcode::Close, 1000u16.to_be_bytes().to_vec()))
    );
    assert_eq!(peer.next(), None);
    server.wait("the close reaches the hooks", |r| {
        r.events
            .iter()
            .any(|e| matches!(e, Ev::Disconnect(_, "PeerClosed")))
    });
    server.assert_served();
}

struct Chat {
    log: Vec<String>,
}

impl Listener for Chat {
    fn routes(r: &mut ClientRoutes<Self>) {
        for action in [
            "socketConnect",
            "connected",
            "echo_reply",
            "disconnected",
            "error",
        ] {
            r.on(action, move |me, _, m| {
                let extra = m.str("reason").or_else(|_| m.str("error")).unwrap_or("");
                me.log
                    .push(format!("{action} {extra}").trim_end().to_owned());
                Ok(())
            });
        }
    }
}

fn pump_until(client: &mut Client<Chat>, what: &str, mut done: impl FnMut(&Chat) -> bool) {
    net::wait_for(what, PROMPT, || {
        client.pump_timeout(Duration::from_millis(20));
        done(client.listener())
    });
}

#[test]
fn rust_client_over_websocket_has_the_same_events_in_both_modes() {
    let server = ws_server();
    let url = format!("ws://{}/", server.ws.unwrap());
    for mode in [Mode::Stepped, Mode::Background] {
        let chat = Chat { log: vec![] };
        let mut client = Client::connect_with(url.as_str(), chat, mode, Config::default()).unwrap();
        // Sent before the upgrade: held, then delivered.
        client.send(&msg! { "action": "echo", "early": true });
        pump_until(&mut client, "echo", |c| c.log.len() >= 3);
        assert_eq!(
            client.listener().log,
            ["socketConnect", "connected", "echo_reply"],
            "{mode:?}"
        );
        client.close();
        pump_until(&mut client, "disconnected", |c| c.log.len() >= 4);
        assert_eq!(
            client.listener().log[3],
            "disconnected closed locally",
            "{mode:?}"
        );
    }
    server.wait("both clients' hooks ran", |r| {
        r.events
            .iter()
            .filter(|e| matches!(e, Ev::Disconnect(..)))
            .count()
            == 2
    });
}

#[test]
fn a_refused_upgrade_is_an_error_event_for_the_rust_client() {
    let server = ws_server();
    let url = format!("ws://{}/not-here", server.ws.unwrap());
    let mut client = Client::connect(url.as_str(), Chat { log: vec![] }).unwrap();
    pump_until(&mut client, "error", |c| !c.log.is_empty());
    let log = &client.listener().log;
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(
        log[0].starts_with("error") && log[0].contains("404"),
        "{log:?}"
    );
    // No channel was ever made for it.
    assert_eq!(server.lock().events, []);
    server.assert_served();
}

#[test]
fn broadcasts_reach_tcp_and_websocket_players_alike() {
    let server = ws_server();
    let ws = server.ws.unwrap();
    let mut tcp = net::Peer::greeted(server.addr);
    let mut web = WsPeer::connect(ws, "/?room=1");
    assert_eq!(web.recv().action(), "connected");
    let mut conn = Connection::connect(format!("ws://{ws}/")).unwrap();
    let greeting = conn.recv_timeout(PROMPT).expect("socketConnect");
    assert_eq!(greeting.action(), "socketConnect");
    assert_eq!(conn.recv_timeout(PROMPT).unwrap().action(), "connected");
    // From the TCP side, via the server's handle (which frames for TCP): everyone gets it.
    server
        .handle()
        .send_to_all(&msg! { "action": "news", "n": 1 });
    assert_eq!(tcp.recv().unwrap().action(), "news");
    assert_eq!(web.recv().action(), "news");
    assert_eq!(conn.recv_timeout(PROMPT).unwrap().action(), "news");
    // From inside a handler, encoded once and framed once per transport.
    net::query(&server.handle(), |_, ctx| {
        ctx.send_to_all(&msg! { "action": "news", "n": 2 });
    });
    for m in [
        tcp.recv().unwrap(),
        web.recv(),
        conn.recv_timeout(PROMPT).unwrap(),
    ] {
        assert_eq!((m.action(), m.message().u64("n").unwrap()), ("news", 2));
    }
}

#[test]
fn a_text_message_closes_with_1003_and_reaches_on_error() {
    let server = ws_server();
    let mut peer = WsPeer::connect(server.ws.unwrap(), "/");
    assert_eq!(peer.recv().action(), "connected");
    peer.send_frame(Opcode::Text, true, b"{\"action\":\"echo\"}");
    let (op, body) = peer.next().expect("a close frame");
    assert_eq!(op, Opcode::Close);
    assert_eq!(u16::from_be_bytes([body[0], body[1]]), 1003);
    assert_eq!(peer.next(), None);
    server.wait("on_error with the text case", |r| {
        r.events
            .iter()
            .any(|e| matches!(e, Ev::Error(_, "WebSocket", t) if t.contains("text")))
    });
    server.assert_served();
}

#[test]
fn server_close_and_stop_send_close_frames() {
    let server = ws_server();
    let mut a = WsPeer::connect(server.ws.unwrap(), "/");
    assert_eq!(a.recv().action(), "connected");
    let mut b = WsPeer::connect(server.ws.unwrap(), "/");
    assert_eq!(b.recv().action(), "connected");
    let ids = net::query(&server.handle(), |_, ctx| {
        ctx.channels().map(|(id, _)| id).collect::<Vec<_>>()
    });
    server.handle().close(ids[0]);
    let (op, body) = a.next().unwrap();
    assert_eq!(
        (op, &body[..2]),
        (Opcode::Close, &1000u16.to_be_bytes()[..])
    );
    server.server.stop_and_join().unwrap();
    let (op, body) = b.next().unwrap();
    assert_eq!(
        (op, &body[..2]),
        (Opcode::Close, &1001u16.to_be_bytes()[..])
    );
}

#[test]
fn an_upgrade_in_progress_at_stop_is_refused_with_503() {
    use std::io::{Read, Write};
    let server = ws_server();
    let mut half = std::net::TcpStream::connect(server.ws.unwrap()).unwrap();
    half.set_read_timeout(Some(PROMPT)).unwrap();
    half.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    // The server has the connection (it answers a whoami over TCP after reading ours).
    let mut tcp = net::Peer::greeted(server.addr);
    tcp.echo(1);
    server.server.stop_and_join().unwrap();
    let mut answer = String::new();
    half.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer:?}");
}
