//! The client over real loopback TCP, in both modes: events, routing, sends queued while
//! connecting, refused connects, server stop.

mod common;

use std::time::{Duration, Instant};

use common::PATIENCE;
use repod::{
    msg, ChannelHandler, Client, ClientCtx, ClientRoutes, Connection, HandlerResult, Listener,
    Message, Mode, Routes, Server,
};

#[derive(Default)]
struct Echo;

impl ChannelHandler for Echo {
    type Server = ();
    fn routes(r: &mut Routes<Self>) {
        r.on("echo", |_, ctx, m| {
            ctx.send(&m.with_action("echo_reply"));
            Ok(())
        });
    }
}

fn server() -> repod::BackgroundServer<Echo> {
    Server::<Echo>::bind("127.0.0.1:0", ())
        .unwrap()
        .start_background()
        .unwrap()
}

/// Records every event in order as `action` or `action:detail`.
#[derive(Default)]
struct Recorder {
    seen: Vec<String>,
    replies: Vec<u64>,
}

impl Listener for Recorder {
    fn routes(r: &mut ClientRoutes<Self>) {
        r.on("connected", |me, net, _| {
            me.seen.push("connected".into());
            // Answering from inside a handler works, and leaves with the pump's one write.
            net.send(&msg! { "action": "echo", "n": 100 });
            Ok(())
        });
        r.on("socketConnect", |me, _, _| {
            me.seen.push("socketConnect".into());
            Ok(())
        });
        r.on("error", |me, _, m| {
            me.seen.push(format!("error:{}", m.str("error")?));
            Ok(())
        });
        r.on("disconnected", |me, _, m| {
            me.seen.push(format!("disconnected:{}", m.str("reason")?));
            Ok(())
        });
        r.on("echo_reply", |me, _, m| {
            me.replies.push(m.u64("n")?);
            Ok(())
        });
    }

    fn network_received(&mut self, _: &mut ClientCtx<'_>, m: &Message<'_>) -> HandlerResult {
        self.seen.push(format!("other:{}", m.action()));
        Ok(())
    }
}

fn pump_until(client: &mut Client<Recorder>, what: &str, cond: impl Fn(&Recorder) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond(client.listener()) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            client.listener().seen
        );
        client.pump_timeout(Duration::from_millis(5));
    }
}

fn events_and_echo(mode: Mode) {
    let server = server();
    let mut client = Client::connect_with(
        server.local_addr(),
        Recorder::default(),
        mode,
        Default::default(),
    )
    .unwrap();
    // Sent before the connection is up: queued, delivered once it is.
    assert!(client.send(&msg! { "action": "echo", "n": 1 }) > 0);
    pump_until(&mut client, "replies", |r| r.replies.len() == 2);
    assert_eq!(client.listener().replies, [1, 100]);
    assert_eq!(client.listener().seen, ["socketConnect", "connected"]);
    for n in 2..50 {
        client.send(&msg! { "action": "echo", "n": n });
    }
    pump_until(&mut client, "49 more replies", |r| r.replies.len() == 50);
    let expected: Vec<u64> = [1, 100].into_iter().chain(2..50).collect();
    assert_eq!(client.listener().replies, expected);
    // The server stops: the client is told once.
    drop(server);
    pump_until(&mut client, "disconnected", |r| r.seen.len() == 3);
    assert_eq!(client.listener().seen[2], "disconnected:closed by peer");
    assert!(!client.is_connected());
    assert_eq!(client.send(&msg! { "action": "echo" }), 0);
    client.pump_timeout(Duration::from_millis(50));
    assert_eq!(
        client.listener().seen.len(),
        3,
        "{:?}",
        client.listener().seen
    );
}

#[test]
fn stepped_client_events_and_echo() {
    events_and_echo(Mode::Stepped);
}

#[test]
fn background_client_events_and_echo() {
    events_and_echo(Mode::Background);
}

fn refused(mode: Mode) {
    // A port with nothing listening: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut client = Client::connect_with(
        ("127.0.0.1", port),
        Recorder::default(),
        mode,
        Default::default(),
    )
    .unwrap();
    pump_until(&mut client, "error", |r| !r.seen.is_empty());
    let seen = &client.listener().seen;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].starts_with("error:") && seen[0].to_lowercase().contains("refused"),
        "{seen:?}"
    );
    assert!(!client.is_connected());
    client.pump_timeout(Duration::from_millis(50));
    assert_eq!(
        client.listener().seen.len(),
        1,
        "no disconnected after a failed connect"
    );
}

#[test]
fn stepped_refused_connect_is_an_error_event() {
    refused(Mode::Stepped);
}

#[test]
fn background_refused_connect_is_an_error_event() {
    refused(Mode::Background);
}

#[test]
fn client_close_sends_queued_then_disconnects() {
    let server = server();
    for mode in [Mode::Stepped, Mode::Background] {
        let mut client = Client::connect_with(
            server.local_addr(),
            Recorder::default(),
            mode,
            Default::default(),
        )
        .unwrap();
        pump_until(&mut client, "connected", |r| r.replies.len() == 1);
        client.close();
        assert_eq!(client.send(&msg! { "action": "echo" }), 0);
        pump_until(&mut client, "disconnected", |r| r.seen.len() == 3);
        assert_eq!(client.listener().seen[2], "disconnected:closed locally");
    }
}

#[test]
fn low_level_connection_receives_everything() {
    let server = server();
    for mode in [Mode::Stepped, Mode::Background] {
        let mut conn =
            Connection::connect_with(server.local_addr(), mode, Default::default()).unwrap();
        for n in 0..1000u32 {
            conn.send(&msg! { "action": "echo", "n": n });
        }
        let mut actions = Vec::new();
        let mut n = 0;
        while n < 1000 {
            let m = conn.recv_timeout(PATIENCE).expect("message");
            if m.action() == "echo_reply" {
                assert_eq!(m.message().u64("n").unwrap(), n);
                n += 1;
            } else {
                actions.push(m.action().to_owned());
            }
        }
        assert_eq!(actions, ["socketConnect", "connected"]);
        conn.close();
        let last = conn.recv_timeout(PATIENCE).expect("disconnected");
        assert_eq!(last.action(), "disconnected");
    }
}

#[test]
fn pump_without_thread_does_nothing_until_called() {
    let server = server();
    let mut client = Client::connect(server.local_addr(), Recorder::default()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // Nothing was dispatched behind the game's back.
    assert!(client.listener().seen.is_empty());
    pump_until(&mut client, "connected", |r| r.seen.len() == 2);
}

#[test]
fn handler_panic_is_reported_not_propagated() {
    struct Panicky(Vec<String>);
    impl Listener for Panicky {
        fn routes(r: &mut ClientRoutes<Self>) {
            r.on("connected", |_, _, _| panic!("boom"));
        }
        fn on_error(&mut self, _: &mut ClientCtx<'_>, e: &repod::Error) {
            self.0.push(e.to_string());
        }
    }
    let server = server();
    let mut client = Client::connect(server.local_addr(), Panicky(Vec::new())).unwrap();
    let deadline = Instant::now() + PATIENCE;
    while client.listener().0.is_empty() {
        assert!(Instant::now() < deadline);
        client.pump_timeout(Duration::from_millis(5));
    }
    assert_eq!(client.listener().0, ["handler panicked: boom"]);
}
