//! Sessions that survive a dropped link (`repod::session`), through a real proxy that resets
//! both sides of the link on command (`support/cut.rs`): 100 cuts during pipelined traffic in
//! both directions, over TCP and over WebSocket, with the client stepped and on its background
//! thread. Every message of either side is handled exactly once and in order; the server's
//! channel (and its state) is the same one throughout.

#[path = "support/cut.rs"]
mod cut;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cut::CutProxy;
use repod::{
    msg, ChannelCtx, ChannelHandler, ChannelId, Client, ClientRoutes, Config, DisconnectReason,
    Listener, Mode, Reconnect, Routes, Server, ServerCtx, ServerHandler,
};

/// What the server saw, for the test's checks.
#[derive(Debug, Default)]
struct Seen {
    channels: Vec<ChannelId>,
    /// Client messages out of order (duplicates or gaps).
    violations: Vec<String>,
    ups: u64,
    away: u64,
    back: u64,
    closed: Vec<String>,
}

#[derive(Clone, Default)]
struct World(Arc<Mutex<Seen>>);

impl ServerHandler<Peer> for World {
    fn on_connect(&mut self, _: &mut ServerCtx<'_, Peer>, id: ChannelId, _: std::net::SocketAddr) {
        self.0.lock().unwrap().channels.push(id);
    }
    fn on_away(&mut self, _: &mut ServerCtx<'_, Peer>, _: ChannelId, _: &DisconnectReason) {
        self.0.lock().unwrap().away += 1;
    }
    fn on_back(&mut self, _: &mut ServerCtx<'_, Peer>, _: ChannelId, _: std::net::SocketAddr) {
        self.0.lock().unwrap().back += 1;
    }
    fn on_disconnect(
        &mut self,
        _: &mut ServerCtx<'_, Peer>,
        _: ChannelId,
        _: Peer,
        reason: &DisconnectReason,
    ) {
        self.0.lock().unwrap().closed.push(reason.to_string());
    }
    fn on_tick(&mut self, ctx: &mut ServerCtx<'_, Peer>) {
        // Server-initiated traffic, to every channel, away ones included.
        let ids: Vec<ChannelId> = ctx.channels().map(|(id, _)| id).collect();
        for id in ids {
            let n = {
                let p = ctx.channel_mut(id).expect("listed");
                p.ticks += 1;
                p.ticks
            };
            ctx.send_to(id, &msg! { "action": "tick", "n": n });
        }
    }
}

#[derive(Default)]
struct Peer {
    next_up: u64,
    downs: u64,
    ticks: u64,
}

impl ChannelHandler for Peer {
    type Server = World;
    fn routes(r: &mut Routes<Self>) {
        r.on("up", |me, ctx: &mut ChannelCtx<'_, Self>, m| {
            let i = m.u64("i")?;
            if i != me.next_up {
                let v = format!("up {i} where {} was due", me.next_up);
                ctx.server().0.lock().unwrap().violations.push(v);
            }
            me.next_up = i + 1;
            ctx.server().0.lock().unwrap().ups = me.next_up;
            me.downs += 1;
            ctx.send(&msg! { "action": "down", "i": me.downs, "pad": "x".repeat(100).as_str() });
            Ok(())
        });
    }
}

/// The client's view.
#[derive(Default)]
struct Player {
    downs: u64,
    ticks: u64,
    violations: Vec<String>,
    reconnecting: u64,
    /// Outages: `reconnecting` events of a first attempt (later attempts of the same outage
    /// count again in `reconnecting`).
    outages: u64,
    resumed: u64,
    failed: Vec<String>,
    ended: Option<String>,
    connected: u64,
}

impl Listener for Player {
    fn routes(r: &mut ClientRoutes<Self>) {
        r.on("down", |me, _, m| {
            let i = m.u64("i")?;
            if i != me.downs + 1 {
                me.violations.push(format!("down {i} after {}", me.downs));
            }
            me.downs = i;
            Ok(())
        });
        r.on("tick", |me, _, m| {
            let n = m.u64("n")?;
            if n != me.ticks + 1 {
                me.violations.push(format!("tick {n} after {}", me.ticks));
            }
            me.ticks = n;
            Ok(())
        });
        r.on("connected", |me, _, _| {
            me.connected += 1;
            Ok(())
        });
        r.on("reconnecting", |me, _, m| {
            me.reconnecting += 1;
            if m.u64("attempt")? == 1 {
                me.outages += 1;
            }
            Ok(())
        });
        r.on("resumed", |me, _, _| {
            me.resumed += 1;
            Ok(())
        });
        r.on("resume_failed", |me, _, m| {
            me.failed.push(m.str("reason")?.to_owned());
            Ok(())
        });
        r.on("disconnected", |me, _, m| {
            me.ended = Some(m.str("reason")?.to_owned());
            Ok(())
        });
        r.on("error", |me, _, m| {
            me.ended = Some(m.str("error")?.to_owned());
            Ok(())
        });
    }
}

fn quick_reconnect() -> Reconnect {
    Reconnect {
        first_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        give_up_after: Duration::from_secs(20),
    }
}

/// Starts a server with sessions on; returns its TCP and WebSocket addresses.
fn start_server(
    world: World,
) -> (
    repod::server::BackgroundServer<Peer>,
    std::net::SocketAddr,
    std::net::SocketAddr,
) {
    let mut server = Server::<Peer>::bind("127.0.0.1:0", world)
        .expect("bind")
        .config(Config::default().resume_window(Some(Duration::from_secs(30))))
        .tick_rate(200.0);
    let ws = server.listen_ws("127.0.0.1:0").expect("ws");
    let tcp = server.local_addr();
    (server.start_background().expect("start"), tcp, ws)
}

/// `cuts` resets of the link, 20 to 60 ms apart, while the client sends `total` messages
/// pipelined (up to 64 unanswered) and the server ticks at 200 Hz; then every message of
/// both sides must have been handled once, in order.
fn cuts_during_traffic(ws: bool, mode: Mode, cuts: usize, total: u64) {
    let world = World::default();
    let (server, tcp, ws_addr) = start_server(world.clone());
    let proxy = CutProxy::start(if ws { ws_addr } else { tcp }).expect("proxy");
    let addr = if ws {
        format!("ws://{}/", proxy.addr())
    } else {
        proxy.addr().to_string()
    };
    let cfg = Config::default().reconnect(Some(quick_reconnect()));
    let mut client = Client::connect_with(addr.as_str(), Player::default(), mode, cfg).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let cutter = {
        let proxy = Arc::new(proxy);
        let done = done.clone();
        let p = proxy.clone();
        let t = std::thread::spawn(move || {
            let mut made = 0;
            let mut seed = 0x2545_f491_u32;
            std::thread::sleep(Duration::from_millis(100));
            while made < cuts && !done.load(Ordering::Relaxed) {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                std::thread::sleep(Duration::from_millis(20 + u64::from(seed % 40)));
                made += p.cut();
            }
            made
        });
        (t, proxy)
    };
    let mut sent = 0u64;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let l = client.listener();
        if l.ended.is_some() || Instant::now() > deadline {
            break;
        }
        if sent == total && l.downs == total && cutter.0.is_finished() {
            break;
        }
        let window = l.downs + 64;
        while sent < total && sent < window {
            client.send(&msg! { "action": "up", "i": sent });
            sent += 1;
        }
        client.pump_timeout(Duration::from_millis(2));
    }
    done.store(true, Ordering::Relaxed);
    let made = cutter.0.join().unwrap();
    // The last cut may have come after the last answer: let its resume finish. Settled means
    // every outage the client saw has ended in a resume and the server has no channel away,
    // held for a while: right after a cut, one side may not have read its reset yet.
    let settle = Instant::now() + Duration::from_secs(10);
    let mut quiet_since: Option<Instant> = None;
    while Instant::now() < settle {
        let quiet = {
            let l = client.listener();
            let seen = world.0.lock().unwrap();
            l.outages == l.resumed && seen.away == seen.back
        };
        match (quiet, quiet_since) {
            (false, _) => quiet_since = None,
            (true, None) => quiet_since = Some(Instant::now()),
            (true, Some(t)) if t.elapsed() >= Duration::from_millis(300) => break,
            (true, Some(_)) => {}
        }
        client.pump_timeout(Duration::from_millis(5));
    }
    let l = client.listener();
    {
        let seen = world.0.lock().unwrap();
        eprintln!(
            "client: downs {} ticks {} reconnecting {} outages {} resumed {} failed {:?} ended {:?} connected {} violations {:?}\nserver: {seen:?}",
            l.downs, l.ticks, l.reconnecting, l.outages, l.resumed, l.failed, l.ended, l.connected, l.violations
        );
    }
    assert_eq!(l.ended, None, "the client ended");
    assert!(l.violations.is_empty(), "client saw: {:?}", l.violations);
    assert!(l.failed.is_empty(), "resume failed: {:?}", l.failed);
    assert_eq!(
        l.downs, total,
        "every answer arrived (sent {sent}, {made} cuts)"
    );
    assert!(made >= cuts.min(20), "only {made} cuts happened");
    assert_eq!(l.outages, l.resumed, "every outage ended in a resume");
    assert!(
        l.reconnecting >= 1 && l.resumed >= 1,
        "{} reconnecting, {} resumed",
        l.reconnecting,
        l.resumed
    );
    assert_eq!(
        l.connected, 1,
        "one greeting shown: resumes are not new connections"
    );
    assert!(l.ticks > 0);
    let seen = world.0.lock().unwrap();
    assert!(
        seen.violations.is_empty(),
        "server saw: {:?}",
        seen.violations
    );
    assert_eq!(seen.ups, total);
    assert_eq!(
        seen.channels.len(),
        1,
        "one channel, kept across every drop"
    );
    assert_eq!(seen.away, seen.back);
    assert!(seen.closed.is_empty(), "{:?}", seen.closed);
    let (away, back) = (seen.away, seen.back);
    drop(seen);
    // Statistics are published by the server's thread every few milliseconds.
    let mut stats = server.handle().stats();
    let until = Instant::now() + Duration::from_secs(2);
    while (stats.resumed, stats.went_away) != (back, away) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
        stats = server.handle().stats();
    }
    assert_eq!((stats.resumed, stats.went_away), (back, away));
    assert_eq!(stats.connections, 1);
    eprintln!(
        "{made} cuts: {} reconnecting events, {} resumes, server saw {away} away; {} ticks",
        l.reconnecting, l.resumed, l.ticks
    );
    drop(client);
    server.handle().stop();
}

#[test]
fn tcp_100_cuts_stepped() {
    cuts_during_traffic(false, Mode::Stepped, 100, 20_000);
}

#[test]
fn websocket_100_cuts_stepped() {
    cuts_during_traffic(true, Mode::Stepped, 100, 20_000);
}

#[test]
fn tcp_cuts_background() {
    cuts_during_traffic(false, Mode::Background, 30, 5_000);
}

#[test]
fn websocket_cuts_background() {
    cuts_during_traffic(true, Mode::Background, 30, 5_000);
}
