//! Server behaviour over real loopback TCP: greeting order, routing and fallback, hooks called
//! once, send after close, broadcast, framing under any chunking, big messages, stop, tick.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::thread::ThreadId;
use std::time::Duration;

use common::{query, wait_until, RawPeer, PATIENCE};
use repod::{
    msg, Bin, ChannelCtx, ChannelHandler, ChannelId, DisconnectReason, Error, HandlerResult,
    Message, Routes, Server, ServerCtx, ServerHandler,
};

#[derive(Default)]
struct Log {
    events: Vec<String>,
    sends_after_close: Vec<usize>,
    ticks: u32,
    tick_threads: Vec<ThreadId>,
    reactor_thread: Option<ThreadId>,
}

#[derive(Default)]
struct Chan {
    name: String,
}

impl ChannelHandler for Chan {
    type Server = Log;

    fn routes(r: &mut Routes<Self>) {
        r.on("echo", |_, ctx, m| {
            ctx.send(&m.with_action("echo_reply"));
            Ok(())
        });
        r.on("name", |me, ctx, m| {
            me.name = m.str("name")?.to_owned();
            ctx.send(&msg! { "action": "named", "name": &me.name });
            Ok(())
        });
        r.on("shout", |me, ctx, m| {
            let n = ctx
                .send_to_all(&msg! { "action": "heard", "text": m.str("text")?, "from": &me.name });
            ctx.server().events.push(format!("shout reached {n}"));
            Ok(())
        });
        r.on("bye", |_, ctx, _| {
            ctx.send(&msg! { "action": "goodbye" });
            ctx.close_self();
            let after = ctx.send(&msg! { "action": "never" });
            ctx.server().sends_after_close.push(after);
            Ok(())
        });
        r.on("stop", |_, ctx, _| {
            ctx.stop();
            Ok(())
        });
        r.on("fail", |_, _, m| {
            m.u32("missing")?;
            Ok(())
        });
    }

    fn network_received(
        &mut self,
        ctx: &mut ChannelCtx<'_, Self>,
        m: &Message<'_>,
    ) -> HandlerResult {
        let text = format!("fallback {:?} has_action={}", m.action(), m.has_action());
        ctx.server().events.push(text);
        ctx.send(&msg! { "action": "unhandled", "was": m.action() });
        Ok(())
    }

    fn on_connect(&mut self, ctx: &mut ChannelCtx<'_, Self>) {
        ctx.send(&msg! { "action": "from_channel_on_connect" });
        let id = ctx.id();
        ctx.server()
            .events
            .push(format!("channel on_connect {id:?}"));
    }

    fn on_close(&mut self, ctx: &mut ChannelCtx<'_, Self>, reason: &DisconnectReason) {
        let after = ctx.send(&msg! { "action": "never" });
        let id = ctx.id();
        let connected = ctx.is_connected();
        let log = ctx.server();
        log.sends_after_close.push(after);
        log.events.push(format!(
            "channel on_close {id:?} {reason} connected={connected}"
        ));
    }

    fn on_error(&mut self, ctx: &mut ChannelCtx<'_, Self>, error: &Error) {
        let id = ctx.id();
        ctx.server()
            .events
            .push(format!("channel on_error {id:?} {error}"));
    }
}

impl ServerHandler<Chan> for Log {
    fn on_connect(&mut self, ctx: &mut ServerCtx<'_, Chan>, id: ChannelId, addr: SocketAddr) {
        self.reactor_thread = Some(std::thread::current().id());
        assert!(addr.ip().is_loopback());
        ctx.send_to(
            id,
            &msg! { "action": "from_server_on_connect", "count": ctx.channel_count() },
        );
        self.events.push(format!("server on_connect {id:?}"));
    }

    fn on_disconnect(
        &mut self,
        _ctx: &mut ServerCtx<'_, Chan>,
        id: ChannelId,
        _c: Chan,
        reason: &DisconnectReason,
    ) {
        self.events
            .push(format!("server on_disconnect {id:?} {reason}"));
    }

    fn on_tick(&mut self, _ctx: &mut ServerCtx<'_, Chan>) {
        self.ticks += 1;
        self.tick_threads.push(std::thread::current().id());
    }
}

fn start() -> repod::BackgroundServer<Chan> {
    Server::<Chan>::bind("127.0.0.1:0", Log::default())
        .unwrap()
        .start_background()
        .unwrap()
}

fn events(server: &repod::BackgroundServer<Chan>) -> Vec<String> {
    query(server, |log, _| log.events.clone())
}

fn count(events: &[String], needle: &str) -> usize {
    events.iter().filter(|e| e.contains(needle)).count()
}

#[test]
fn greeting_then_channel_hook_then_server_hook() {
    let server = start();
    let mut p = RawPeer::connect(server.local_addr());
    assert_eq!(p.recv().action(), "connected");
    assert_eq!(p.recv().action(), "from_channel_on_connect");
    let m = p.recv();
    assert_eq!(m.action(), "from_server_on_connect");
    assert_eq!(m.message().u64("count").unwrap(), 1);
    let ev = events(&server);
    assert!(ev[0].starts_with("channel on_connect"), "{ev:?}");
    assert!(ev[1].starts_with("server on_connect"), "{ev:?}");
}

#[test]
fn routes_fallback_and_missing_action() {
    let server = start();
    let mut p = RawPeer::greeted(server.local_addr());
    p.recv();
    p.recv();
    p.send(&msg! { "action": "echo", "n": 1 });
    let r = p.recv();
    assert_eq!(
        (r.action(), r.message().u64("n").unwrap()),
        ("echo_reply", 1)
    );
    p.send(&msg! { "action": "no_such_action" });
    assert_eq!(p.recv().message().str("was").unwrap(), "no_such_action");
    p.send(&msg! { "text": "no action at all" });
    let r = p.recv();
    assert_eq!(
        (r.action(), r.message().str("was").unwrap()),
        ("unhandled", "")
    );
    let ev = events(&server);
    assert_eq!(
        count(&ev, "fallback \"no_such_action\" has_action=true"),
        1,
        "{ev:?}"
    );
    assert_eq!(count(&ev, "fallback \"\" has_action=false"), 1, "{ev:?}");
}

#[test]
fn handler_error_reaches_on_error_and_connection_stays() {
    let server = start();
    let mut p = RawPeer::greeted(server.local_addr());
    p.recv();
    p.recv();
    p.send(&msg! { "action": "fail" });
    p.send(&msg! { "action": "echo", "n": 2 });
    assert_eq!(p.recv().action(), "echo_reply");
    let ev = events(&server);
    assert_eq!(count(&ev, "on_error"), 1, "{ev:?}");
    assert_eq!(count(&ev, "missing field \"missing\""), 1, "{ev:?}");
}

#[test]
fn hooks_run_exactly_once_and_send_after_close_is_zero() {
    let server = start();
    let addr = server.local_addr();
    // 1: the client closes (after reading everything, or the kernel would send a reset).
    let mut p = RawPeer::greeted(addr);
    p.recv();
    p.recv();
    drop(p);
    // 2: the channel closes itself after a last message, which must still arrive.
    let mut p2 = RawPeer::greeted(addr);
    p2.send(&msg! { "action": "bye" });
    let rest: Vec<String> = p2
        .recv_until_eof()
        .iter()
        .map(|m| m.action().to_owned())
        .collect();
    assert_eq!(
        rest,
        [
            "from_channel_on_connect",
            "from_server_on_connect",
            "goodbye"
        ]
    );
    wait_until("both disconnects", || {
        count(&events(&server), "server on_disconnect") == 2
    });
    // Give any duplicate hook a chance to show up before counting.
    std::thread::sleep(Duration::from_millis(100));
    let ev = events(&server);
    assert_eq!(count(&ev, "channel on_close"), 2, "{ev:?}");
    assert_eq!(count(&ev, "server on_disconnect"), 2, "{ev:?}");
    assert_eq!(count(&ev, "closed by peer connected=false"), 1, "{ev:?}");
    assert_eq!(count(&ev, "closed locally connected=false"), 1, "{ev:?}");
    // on_close comes before on_disconnect for each channel.
    let close = ev
        .iter()
        .position(|e| e.starts_with("channel on_close"))
        .unwrap();
    let disc = ev
        .iter()
        .position(|e| e.starts_with("server on_disconnect"))
        .unwrap();
    assert!(close < disc, "{ev:?}");
    let sends = query(&server, |log, _| log.sends_after_close.clone());
    assert_eq!(sends, [0, 0, 0]);
}

#[test]
fn broadcast_reaches_every_client_once() {
    let server = start();
    let addr = server.local_addr();
    let mut peers: Vec<RawPeer> = (0..20).map(|_| RawPeer::greeted(addr)).collect();
    for p in &mut peers {
        p.recv();
        p.recv();
    }
    peers[0].send(&msg! { "action": "name", "name": "ann" });
    assert_eq!(peers[0].recv().action(), "named");
    peers[0].send(&msg! { "action": "shout", "text": "hello all" });
    for p in &mut peers {
        let m = p.recv();
        assert_eq!(m.action(), "heard");
        assert_eq!(m.message().str("text").unwrap(), "hello all");
        assert_eq!(m.message().str("from").unwrap(), "ann");
    }
    assert_eq!(count(&events(&server), "shout reached 20"), 1);
}

#[test]
fn one_byte_at_a_time() {
    let server = start();
    let mut p = RawPeer::greeted(server.local_addr());
    p.recv();
    p.recv();
    let mut wire = Vec::new();
    for i in 0..20u32 {
        wire.extend(common::frame(
            &msg! { "action": "echo", "i": i, "pad": "x".repeat(i as usize * 7) },
        ));
    }
    for b in &wire {
        p.stream.write_all(std::slice::from_ref(b)).unwrap();
    }
    for i in 0..20u64 {
        let m = p.recv();
        assert_eq!(
            (m.action(), m.message().u64("i").unwrap()),
            ("echo_reply", i)
        );
    }
}

#[test]
fn thousands_of_frames_in_one_write_arrive_in_order() {
    let server = start();
    let mut p = RawPeer::greeted(server.local_addr());
    p.recv();
    p.recv();
    let mut wire = Vec::new();
    for i in 0..5000u32 {
        wire.extend(common::frame(&msg! { "action": "echo", "i": i }));
    }
    let mut writer = p.stream.try_clone().unwrap();
    let t = std::thread::spawn(move || writer.write_all(&wire).unwrap());
    for i in 0..5000u64 {
        assert_eq!(p.recv().message().u64("i").unwrap(), i);
    }
    t.join().unwrap();
}

#[test]
fn four_mib_message_round_trips() {
    let server = start();
    let mut p = RawPeer::greeted(server.local_addr());
    p.recv();
    p.recv();
    let blob: Vec<u8> = (0..4 << 20).map(|i: u32| (i * 31 % 251) as u8).collect();
    let mut writer = p.stream.try_clone().unwrap();
    let sent = blob.clone();
    let t = std::thread::spawn(move || {
        writer
            .write_all(&common::frame(
                &msg! { "action": "echo", "blob": Bin(&sent) },
            ))
            .unwrap()
    });
    let m = p.recv();
    assert_eq!(m.message().bin("blob").unwrap(), &blob[..]);
    t.join().unwrap();
}

#[test]
fn stop_from_a_handler_closes_everyone_once_and_flushes() {
    let server = start();
    let addr = server.local_addr();
    let mut a = RawPeer::greeted(addr);
    let mut b = RawPeer::greeted(addr);
    a.send(&msg! { "action": "echo", "n": 1 });
    a.send(&msg! { "action": "stop" });
    let a_rest: Vec<String> = a
        .recv_until_eof()
        .iter()
        .map(|m| m.action().to_owned())
        .collect();
    assert_eq!(
        a_rest,
        [
            "from_channel_on_connect",
            "from_server_on_connect",
            "echo_reply"
        ]
    );
    assert_eq!(b.recv_until_eof().len(), 2);
    let log = server.join().unwrap();
    assert_eq!(
        count(&log.events, "server stopped connected=false"),
        2,
        "{:?}",
        log.events
    );
    assert_eq!(
        count(&log.events, "server on_disconnect"),
        2,
        "{:?}",
        log.events
    );
}

#[test]
fn tick_runs_on_the_reactor_thread() {
    let server = Server::<Chan>::bind("127.0.0.1:0", Log::default())
        .unwrap()
        .tick_rate(200.0)
        .start_background()
        .unwrap();
    let _p = RawPeer::greeted(server.local_addr());
    wait_until("20 ticks", || query(&server, |log, _| log.ticks) >= 20);
    let log = server.stop_and_join().unwrap();
    let reactor = log.reactor_thread.expect("on_connect ran");
    assert_ne!(reactor, std::thread::current().id());
    assert!(log.tick_threads.iter().all(|t| *t == reactor));
}

#[test]
fn stepped_server_in_the_callers_loop() {
    let mut server = Server::<Chan>::bind("127.0.0.1:0", Log::default()).unwrap();
    let addr = server.local_addr();
    let client = std::thread::spawn(move || {
        let mut p = RawPeer::greeted(addr);
        p.recv();
        p.recv();
        p.send(&msg! { "action": "echo", "n": 9 });
        p.recv().message().u64("n").unwrap()
    });
    let deadline = std::time::Instant::now() + PATIENCE;
    while !client.is_finished() {
        assert!(std::time::Instant::now() < deadline);
        server.step(Some(Duration::from_millis(10))).unwrap();
    }
    assert_eq!(client.join().unwrap(), 9);
    // Sending from outside any handler.
    let n = server.with_ctx(|_, ctx| ctx.send_to_all(&msg! { "action": "x" }));
    assert!(n <= 1);
}

#[test]
fn handle_sends_from_another_thread() {
    let server = start();
    let mut p = RawPeer::greeted(server.local_addr());
    p.recv();
    p.recv();
    let id = query(&server, |_, ctx| {
        ctx.channels().next().map(|(id, _)| id).unwrap()
    });
    let handle = server.handle();
    std::thread::spawn(move || {
        assert!(handle.send_to(id, &msg! { "action": "direct" }) > 0);
        assert!(handle.send_to_all(&msg! { "action": "everyone" }) > 0);
    })
    .join()
    .unwrap();
    assert_eq!(p.recv().action(), "direct");
    assert_eq!(p.recv().action(), "everyone");
    server.close(id);
    assert!(p.recv_until_eof().is_empty());
}

#[test]
fn stale_channel_id_sends_nothing() {
    let server = start();
    let addr = server.local_addr();
    let p = RawPeer::greeted(addr);
    let old = query(&server, |_, ctx| {
        ctx.channels().next().map(|(id, _)| id).unwrap()
    });
    drop(p);
    wait_until("disconnect", || {
        query(&server, |_, ctx| ctx.channel_count()) == 0
    });
    let _q = RawPeer::greeted(addr);
    let sent = query(&server, move |_, ctx| {
        ctx.send_to(old, &msg! { "action": "stale" })
    });
    assert_eq!(sent, 0);
}
