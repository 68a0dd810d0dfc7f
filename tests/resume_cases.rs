//! Each way a resume can fail, and resume with the rest of the server: a bad token, an
//! expired session, a token used again while its session's link is alive, replay over its
//! bound, the PROXY protocol (the client's address changes on resume), and a draining server.
//! Raw sockets speak the wire of `repod::session` where the exact messages matter; the Rust
//! client, through the cutting proxy, where the events do.

#[path = "support/cut.rs"]
mod cut;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cut::CutProxy;
use repod::{
    msg, ChannelHandler, ChannelId, Client, ClientRoutes, Config, DisconnectReason, Encode, Listen,
    Listener, Message, Mode, Reconnect, Routes, Server, ServerCtx, ServerHandler,
};

#[derive(Debug, Default)]
struct Seen {
    connected: Vec<(ChannelId, SocketAddr)>,
    back: Vec<(ChannelId, SocketAddr)>,
    closed: Vec<(ChannelId, String)>,
    echoes: u64,
}

#[derive(Clone, Default)]
struct World(Arc<Mutex<Seen>>);

impl ServerHandler<Echo> for World {
    fn on_connect(&mut self, _: &mut ServerCtx<'_, Echo>, id: ChannelId, addr: SocketAddr) {
        self.0.lock().unwrap().connected.push((id, addr));
    }
    fn on_back(&mut self, _: &mut ServerCtx<'_, Echo>, id: ChannelId, addr: SocketAddr) {
        self.0.lock().unwrap().back.push((id, addr));
    }
    fn on_disconnect(
        &mut self,
        _: &mut ServerCtx<'_, Echo>,
        id: ChannelId,
        _: Echo,
        reason: &DisconnectReason,
    ) {
        let why = match reason {
            DisconnectReason::SessionExpired(_) => "expired".to_owned(),
            DisconnectReason::ReplayOverflow { .. } => "overflow".to_owned(),
            DisconnectReason::ServerStopped => "stopped".to_owned(),
            other => other.to_string(),
        };
        self.0.lock().unwrap().closed.push((id, why));
    }
    fn on_tick(&mut self, ctx: &mut ServerCtx<'_, Echo>) {
        let pad = "t".repeat(200);
        ctx.send_to_all(&msg! { "action": "tick", "pad": pad.as_str() });
    }
}

#[derive(Default)]
struct Echo;

impl ChannelHandler for Echo {
    type Server = World;
    fn routes(r: &mut Routes<Self>) {
        r.on("echo", |_, ctx, m| {
            ctx.server().0.lock().unwrap().echoes += 1;
            ctx.send(&m.with_action("echo_reply"));
            Ok(())
        });
    }
}

fn server(
    cfg: Config,
    listen: Listen,
    ticks: bool,
) -> (repod::server::BackgroundServer<Echo>, World) {
    let world = World::default();
    let mut s = Server::<Echo>::bind_with(listen, world.clone(), |_, _, _| Echo)
        .expect("bind")
        .config(cfg);
    if ticks {
        s = s.tick_rate(100.0);
    }
    (s.start_background().expect("start"), world)
}

fn sessions(window: Duration) -> Config {
    Config::default().resume_window(Some(window))
}

/// A server with sessions on (a 30 s window) on a free port, and its address.
fn session_server() -> (repod::server::BackgroundServer<Echo>, World, SocketAddr) {
    let window = sessions(Duration::from_secs(30));
    let (srv, world) = server(window, Listen::on("127.0.0.1:0"), false);
    let addr = srv.handle().local_addr();
    (srv, world, addr)
}

/// A raw repod peer on a socket, for the exact wire.
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Raw { s, buf: Vec::new() }
    }

    fn with_proxy_header(addr: SocketAddr, source: &str) -> Raw {
        let mut r = Raw::connect(addr);
        let header = format!("PROXY TCP4 {source} 10.9.9.9 40000 5071\r\n");
        r.s.write_all(header.as_bytes()).unwrap();
        r
    }

    fn send(&mut self, m: &impl Encode) {
        let mut payload = Vec::new();
        m.encode(&mut payload);
        let mut f = (payload.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&payload);
        self.s.write_all(&f).unwrap();
    }

    /// The next message, as `(action, the whole message's debug text)`, skipping ticks and
    /// acknowledgements; `None` at the end of the stream.
    fn recv(&mut self) -> Option<(String, String)> {
        loop {
            while self.buf.len() >= 4 {
                let len = u32::from_be_bytes(self.buf[..4].try_into().unwrap()) as usize;
                if self.buf.len() < 4 + len {
                    break;
                }
                let payload: Vec<u8> = self.buf.drain(..4 + len).skip(4).collect();
                let m = Message::parse(&payload).expect("msgpack");
                let action = m.action().to_owned();
                if action == "tick" || action == "_ack" {
                    continue;
                }
                let text = format!("{m:?}");
                return Some((action, text));
            }
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn recv_field(&mut self, action: &str, field: &str) -> String {
        let (a, text) = self
            .recv()
            .unwrap_or_else(|| panic!("stream ended, {action} due"));
        assert_eq!(a, action, "{text}");
        let at = text
            .find(&format!("\"{field}\": "))
            .unwrap_or_else(|| panic!("{field} in {text}"));
        let rest = &text[at + field.len() + 4..];
        let end = rest.find([',', '}']).unwrap();
        rest[..end].trim_matches('"').to_owned()
    }

    /// One `echo` round trip, which must come back.
    fn echo(&mut self, n: i32) {
        self.send(&msg! { "action": "echo", "n": n });
        assert_eq!(self.recv().unwrap().0, "echo_reply");
    }

    /// The link drops: closed with a reset, as a dying network does.
    fn reset(self) {
        socket2::SockRef::from(&self.s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }

    /// A new link that asks for session `token` back, having received `received` of its
    /// messages; its own greeting is read.
    fn resume(addr: SocketAddr, token: &str, received: u64) -> Raw {
        let mut r = Raw::connect(addr);
        r.send(&msg! { "action": "resume", "session": token, "received": received });
        r.recv_field("connected", "session");
        r
    }

    /// Greeting, then the opt-in ack: returns the token.
    fn join(&mut self) -> String {
        let token = self.recv_field("connected", "session");
        self.send(&msg! { "action": "_ack", "received": 0u64 });
        token
    }
}

#[test]
fn a_bad_token_fails_and_the_link_goes_on_as_a_new_session() {
    let (srv, world, addr) = session_server();
    let mut c = Raw::connect(addr);
    c.send(&msg! { "action": "resume", "session": "00112233445566778899aabbccddeeff", "received": 0u64 });
    let greeting_token = c.recv_field("connected", "session");
    assert_eq!(greeting_token.len(), 32);
    let reason = c.recv_field("resume_failed", "reason");
    assert!(reason.contains("unknown"), "{reason}");
    c.echo(1);
    let mut m = Raw::resume(addr, "not a token", 0u64);
    assert!(m
        .recv_field("resume_failed", "reason")
        .contains("malformed"));
    let seen = world.0.lock().unwrap();
    assert_eq!(
        seen.connected.len(),
        2,
        "each link became a channel of its own"
    );
    assert!(seen.back.is_empty());
    drop(seen);
    srv.handle().stop();
}

#[test]
fn a_spent_token_fails_while_the_session_lives_and_a_second_resume_takes_the_link_over() {
    let (srv, world, addr) = session_server();
    let mut a = Raw::connect(addr);
    let t1 = a.join();
    a.echo(1);
    // A second link resumes while the first still looks alive: it takes the session over.
    let mut b = Raw::resume(addr, t1.as_str(), 1u64);
    let t2 = b.recv_field("resumed", "session");
    assert_ne!(t1, t2, "the token rotates");
    assert_eq!(a.recv(), None, "the older link was closed");
    // The client speaks on its new link: it has the new token, and the old one is spent.
    b.echo(2);
    // The spent token again, while the session's link is alive: refused, and the live link
    // is untouched.
    let mut c = Raw::resume(addr, t1.as_str(), 2u64);
    assert!(c.recv_field("resume_failed", "reason").contains("unknown"));
    b.echo(3);
    let seen = world.0.lock().unwrap();
    assert_eq!(seen.back.len(), 1);
    assert_eq!(seen.echoes, 3);
    drop(seen);
    srv.handle().stop();
}

/// The answer to a resume is lost to a second drop: the client never saw its new token, so it
/// resumes with the one it has, and that still works; once the client speaks on a resumed
/// link, the old token is spent.
#[test]
fn a_lost_resumed_answer_leaves_the_old_token_valid_until_the_client_speaks() {
    let (srv, world, addr) = session_server();
    let mut a = Raw::connect(addr);
    let t1 = a.join();
    a.echo(1);
    a.reset();
    // B resumes, and drops before it reads the answer.
    let b = Raw::resume(addr, t1.as_str(), 1u64);
    std::thread::sleep(Duration::from_millis(50));
    b.reset();
    // C, with the token it has: resumed.
    let mut c = Raw::resume(addr, t1.as_str(), 1u64);
    let t3 = c.recv_field("resumed", "session");
    c.echo(2);
    // Now t1 is spent; t3 is the one.
    let mut d = Raw::resume(addr, t1.as_str(), 2u64);
    assert!(d.recv_field("resume_failed", "reason").contains("unknown"));
    assert_ne!(t3, t1);
    let seen = world.0.lock().unwrap();
    assert_eq!(seen.echoes, 2);
    assert_eq!(seen.connected.len(), 2, "one session, and d's own");
    drop(seen);
    srv.handle().stop();
}

/// Latest-wins and sessions: while a player is away, its snapshots keep replacing each other
/// in the kept queue, so the resume replays the newest one only, never a replaced one; every
/// ordinary message is replayed, once, in order.
#[test]
fn a_replaced_latest_wins_message_is_never_replayed() {
    let (srv, world, addr) = session_server();
    let mut a = Raw::connect(addr);
    let t = a.join();
    a.echo(1);
    a.reset();
    wait_for_the_drop(&srv);
    let id = world.0.lock().unwrap().connected[0].0;
    let handle = srv.handle();
    for n in 1..=100u32 {
        handle.send_latest_to(id, 0, &msg! { "action": "snap", "n": n });
        if n % 10 == 0 {
            handle.send_to(id, &msg! { "action": "score", "n": n });
        }
    }
    // Let the reactor run those commands before the resume.
    std::thread::sleep(Duration::from_millis(200));
    let mut b = Raw::resume(addr, t.as_str(), 1u64);
    b.recv_field("resumed", "received");
    let mut got = Vec::new();
    while got.len() < 11 {
        let (action, text) = b.recv().expect("the replay");
        got.push(format!(
            "{action} {}",
            text.split("\"n\": ")
                .nth(1)
                .unwrap_or("?")
                .trim_end_matches('}')
                .trim()
        ));
    }
    // In the order they were sent: snapshot 100 went out before score 100.
    let mut expected: Vec<String> = (1..=9).map(|k| format!("score {}", k * 10)).collect();
    expected.extend(["snap 100".to_owned(), "score 100".to_owned()]);
    assert_eq!(
        got, expected,
        "every score once in order, and of the snapshots the newest only"
    );
    b.send(&msg! { "action": "echo", "n": 2 });
    assert_eq!(
        b.recv().unwrap().0,
        "echo_reply",
        "nothing else was replayed"
    );
    srv.handle().stop();
}

/// A client's address changes on resume (a phone on a new network): the server, behind a
/// PROXY-protocol balancer, sees the new one in `on_back`.
#[test]
fn resume_through_the_proxy_protocol_sees_the_new_address() {
    let listen = Listen::on("127.0.0.1:0").proxy_protocol(true);
    let (srv, world) = server(sessions(Duration::from_secs(30)), listen, false);
    let addr = srv.handle().local_addr();
    let mut a = Raw::with_proxy_header(addr, "10.0.0.1");
    let t = a.join();
    a.echo(1);
    // The link drops with a reset.
    a.reset();
    let mut b = Raw::with_proxy_header(addr, "10.0.0.2");
    b.send(&msg! { "action": "resume", "session": t.as_str(), "received": 1u64 });
    b.recv_field("connected", "session");
    b.recv_field("resumed", "received");
    b.echo(2);
    let seen = world.0.lock().unwrap();
    assert_eq!(seen.connected[0].1.ip().to_string(), "10.0.0.1");
    assert_eq!(seen.back.len(), 1);
    assert_eq!(seen.back[0].0, seen.connected[0].0, "the same channel");
    assert_eq!(seen.back[0].1.ip().to_string(), "10.0.0.2");
    drop(seen);
    srv.handle().stop();
}

#[derive(Default)]
struct Player {
    events: Vec<String>,
    ticks: u64,
}

impl Listener for Player {
    fn routes(r: &mut ClientRoutes<Self>) {
        for action in [
            "connected",
            "reconnecting",
            "resumed",
            "resume_failed",
            "disconnected",
            "error",
        ] {
            r.on(action, move |me: &mut Player, _, m| {
                let detail = m.str("reason").or_else(|_| m.str("error")).unwrap_or("");
                me.events.push(format!("{action} {detail}"));
                Ok(())
            });
        }
        r.on("tick", |me, _, _| {
            me.ticks += 1;
            Ok(())
        });
    }
}

fn client_through(proxy: &CutProxy, mode: Mode) -> Client<Player> {
    let cfg = Config::default()
        .reconnect(Some(Reconnect {
            first_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
            give_up_after: Duration::from_secs(20),
        }))
        .connect_timeout(Some(Duration::from_millis(300)));
    Client::connect_with(proxy.addr(), Player::default(), mode, cfg).unwrap()
}

fn pump_until(client: &mut Client<Player>, what: &str, cond: impl Fn(&Player) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cond(client.listener()) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; events: {:?}",
            client.listener().events
        );
        client.pump_timeout(Duration::from_millis(10));
    }
}

fn has(p: &Player, prefix: &str) -> bool {
    p.events.iter().any(|e| e.starts_with(prefix))
}

/// The link drops and stays down (new connections hang) past the window: the server ends the
/// channel as expired; the client, once through again, gets `resume_failed`, then the new
/// session's `connected`.
#[test]
fn an_expired_session_is_reported_on_both_sides() {
    let (srv, world) = server(
        sessions(Duration::from_millis(300)),
        Listen::on("127.0.0.1:0"),
        false,
    );
    let proxy = CutProxy::start(srv.handle().local_addr()).unwrap();
    let mut client = client_through(&proxy, Mode::Stepped);
    pump_until(&mut client, "connected", |p| has(p, "connected"));
    // Let the client's opt-in ack reach the server before the cut.
    client.send(&msg! { "action": "echo", "n": 1 });
    pump_until(&mut client, "the echo", |_| {
        world.0.lock().unwrap().echoes == 1
    });
    proxy.set_blackhole(true);
    proxy.cut();
    pump_until(&mut client, "reconnecting", |p| has(p, "reconnecting"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while world.0.lock().unwrap().closed.is_empty() && Instant::now() < deadline {
        client.pump_timeout(Duration::from_millis(10));
    }
    proxy.set_blackhole(false);
    pump_until(&mut client, "resume_failed", |p| has(p, "resume_failed"));
    pump_until(&mut client, "the new greeting", |p| {
        p.events
            .iter()
            .filter(|e| e.starts_with("connected"))
            .count()
            == 2
    });
    let events = &client.listener().events;
    let failed = events
        .iter()
        .position(|e| e.starts_with("resume_failed"))
        .unwrap();
    assert!(events[failed].contains("unknown or expired"), "{events:?}");
    assert!(events[failed + 1].starts_with("connected"), "{events:?}");
    let seen = world.0.lock().unwrap();
    assert_eq!(seen.closed[0].1, "expired");
    assert_eq!(
        seen.connected.len(),
        2,
        "the client goes on as a new player"
    );
    drop(seen);
    // The new session works.
    client.send(&msg! { "action": "echo", "n": 2 });
    pump_until(&mut client, "the second echo", |_| {
        world.0.lock().unwrap().echoes == 2
    });
    srv.handle().stop();
}

/// While the client is away the server keeps sending: past `resume_buffer` the session ends
/// (`ReplayOverflow`) rather than drop a message silently, and the client hears
/// `resume_failed`.
#[test]
fn replay_over_its_bound_ends_the_session_and_the_client_hears_so() {
    let cfg = sessions(Duration::from_secs(30)).resume_buffer(8 * 1024);
    let (srv, world) = server(cfg, Listen::on("127.0.0.1:0"), true);
    let proxy = CutProxy::start(srv.handle().local_addr()).unwrap();
    let mut client = client_through(&proxy, Mode::Background);
    pump_until(&mut client, "ticks", |p| p.ticks > 5);
    proxy.set_blackhole(true);
    proxy.cut();
    // 100 ticks a second of 200 bytes: 8 KiB in about half a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    while world.0.lock().unwrap().closed.is_empty() && Instant::now() < deadline {
        client.pump_timeout(Duration::from_millis(10));
    }
    assert_eq!(world.0.lock().unwrap().closed[0].1, "overflow");
    proxy.set_blackhole(false);
    pump_until(&mut client, "resume_failed", |p| has(p, "resume_failed"));
    pump_until(&mut client, "ticks of the new session", |p| {
        p.events
            .iter()
            .filter(|e| e.starts_with("connected"))
            .count()
            == 2
    });
    srv.handle().stop();
}

/// A peer that took its session and reads everything but never acknowledges again: what the
/// server keeps for it, written and unacknowledged, passes `resume_buffer` while the link is
/// up, and the session ends there (`ReplayOverflow`), at a write.
#[test]
fn a_peer_that_never_acknowledges_ends_its_session_at_the_bound() {
    let cfg = sessions(Duration::from_secs(30)).resume_buffer(8 * 1024);
    let (srv, world) = server(cfg, Listen::on("127.0.0.1:0"), true);
    let mut raw = Raw::connect(srv.handle().local_addr());
    raw.join();
    // 100 ticks a second of 200 bytes, all read, none acknowledged: 8 KiB in about half a
    // second, after which the server closes the link.
    let started = Instant::now();
    let mut chunk = [0u8; 4096];
    while let Ok(1..) = raw.s.read(&mut chunk) {
        assert!(started.elapsed() < Duration::from_secs(10), "still open");
    }
    drop(raw);
    let deadline = Instant::now() + Duration::from_secs(5);
    while world.0.lock().unwrap().closed.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let closed = world.0.lock().unwrap().closed.clone();
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0].1, "overflow");
    srv.handle().stop();
}

/// A draining server: its listener is closed, so nobody can come back; sessions away end at
/// once, and a link that drops now closes.
#[test]
fn a_draining_server_ends_away_sessions() {
    let (srv, world) = server(
        sessions(Duration::from_secs(30)),
        Listen::on("127.0.0.1:0"),
        false,
    );
    let proxy = CutProxy::start(srv.handle().local_addr()).unwrap();
    let mut client = client_through(&proxy, Mode::Stepped);
    client.send(&msg! { "action": "echo", "n": 1 });
    pump_until(&mut client, "the echo", |_| {
        world.0.lock().unwrap().echoes == 1
    });
    proxy.set_blackhole(true);
    proxy.cut();
    pump_until(&mut client, "reconnecting", |p| has(p, "reconnecting"));
    // Wait until the server saw the drop (the cut resets its side too).
    wait_for_the_drop(&srv);
    srv.handle().drain(Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(5);
    while world.0.lock().unwrap().closed.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(world.0.lock().unwrap().closed[0].1, "stopped");
}

/// Waits until the server has seen a session's link drop (its statistics are published a few
/// milliseconds after the turn that saw it).
fn wait_for_the_drop(srv: &repod::server::BackgroundServer<Echo>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while srv.handle().stats().went_away == 0 {
        assert!(Instant::now() < deadline, "the server never saw the drop");
        std::thread::sleep(Duration::from_millis(10));
    }
}
