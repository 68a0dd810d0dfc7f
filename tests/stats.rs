//! Statistics equal the traffic that was really exchanged, byte for byte and frame for frame:
//! per connection (from a handler, from a client), per server (from a handle on another
//! thread), closes by reason, dropped frames by kind, tick overruns; and the kernel's RTT is
//! readable on both sides.

#[path = "support/net.rs"]
mod net;

use std::time::{Duration, Instant};

use net::{framed, payload, query, wait_for, Peer, PROMPT};
use repod::{
    msg, ChannelHandler, Config, ConnStats, Connection, Routes, Server, ServerCtx, ServerHandler,
};

/// Wire bytes of a frame with this payload.
fn wire(payload: &[u8]) -> u64 {
    framed(payload).len() as u64
}

#[test]
fn counters_equal_the_traffic_exactly() {
    let probe = net::start(Config::default());
    let handle = probe.handle();
    let mut peer = Peer::connect(probe.addr);
    let (mut sent, mut sent_bytes) = (0u64, 0u64);
    let (mut got, mut got_bytes) = (0u64, 0u64);
    let mut recv = |peer: &mut Peer| {
        let p = peer.recv_payload().unwrap().expect("a frame");
        got += 1;
        got_bytes += wire(&p);
        p
    };
    recv(&mut peer); // the greeting
    let id = {
        let m = payload(&msg! { "action": "whoami" });
        peer.send_payload(&m);
        sent += 1;
        sent_bytes += wire(&m);
        let reply = recv(&mut peer);
        let slot = repod::Message::parse(&reply).unwrap().u64("slot").unwrap() as usize;
        query(&handle, move |_, ctx| {
            ctx.channels()
                .map(|(id, _)| id)
                .find(|id| id.slot() == slot)
        })
        .expect("connected")
    };
    for seq in 0..25u64 {
        let text = "x".repeat(seq as usize * 7);
        let m = payload(&msg! { "action": "echo", "seq": seq, "text": text.as_str() });
        peer.send_payload(&m);
        sent += 1;
        sent_bytes += wire(&m);
        recv(&mut peer);
    }
    // A frame that is not msgpack (dropped, the connection stays), and a handler that fails.
    for bad in [&b"\xc1"[..], &payload(&msg! { "action": "fail" })[..]] {
        peer.send_payload(bad);
        sent += 1;
        sent_bytes += wire(bad);
    }
    let m = payload(&msg! { "action": "echo", "seq": 99u8 });
    peer.send_payload(&m);
    sent += 1;
    sent_bytes += wire(&m);
    recv(&mut peer);

    let s: ConnStats = query(&handle, move |_, ctx| ctx.stats_of(id)).expect("stats");
    assert_eq!(
        (s.msgs_in, s.bytes_in, s.msgs_out, s.bytes_out, s.queued),
        (sent, sent_bytes, got, got_bytes, 0),
        "per-connection figures against the traffic"
    );
    assert!(s.rtt.is_none(), "no heartbeats, no RTT");
    assert!(s.last_received >= s.connected_since);

    // A handle on another thread sees the same, once the reactor has published its turn.
    wait_for("the published figures", PROMPT, || {
        let t = handle.stats();
        (t.msgs_in, t.bytes_in, t.msgs_out, t.bytes_out) == (sent, sent_bytes, got, got_bytes)
    });
    let t = handle.stats();
    assert_eq!((t.connections, t.accepted, t.closed), (1, 1, 0));
    assert_eq!(t.dropped.invalid_msgpack, 1, "{t:?}");
    assert_eq!(t.dropped.total(), 1);
    assert_eq!(t.handler_errors, 1);
    assert_eq!(
        t.to_string(),
        format!(
            "conns=1 accepted=1 closed=0 msgs_in={sent} msgs_out={got} bytes_in={sent_bytes} \
             bytes_out={got_bytes}"
        )
    );

    // Closes are counted by reason.
    drop(peer);
    let mut other = Peer::greeted(probe.addr);
    let other_id = probe.id_of(&mut other);
    query(&handle, move |_, ctx| ctx.close(other_id));
    assert!(other.is_closed_within(PROMPT));
    wait_for("two closes", PROMPT, || handle.stats().closed == 2);
    let t = handle.stats();
    assert_eq!((t.connections, t.accepted), (0, 2));
    assert_eq!(
        (t.closed_by.peer_closed, t.closed_by.closed_locally),
        (1, 1)
    );
    // From inside a handler the figures are exact at once.
    let inside = query(&handle, |_, ctx| ctx.server_stats());
    assert_eq!(inside.closed, 2);
    assert_eq!(inside.msgs_in, t.msgs_in);
}

#[test]
fn a_client_counts_what_the_server_counts() {
    let probe = net::start_with(Config::default(), |mut s| {
        s.listen_ws("127.0.0.1:0").unwrap();
        s
    });
    let handle = probe.handle();
    let ws_url = format!("ws://{}/", probe.ws.unwrap());
    // TCP and WebSocket (where both sides count the HTTP upgrade), stepped and background.
    for (background, ws) in [(false, false), (true, false), (false, true), (true, true)] {
        let mode = if background {
            repod::Mode::Background
        } else {
            repod::Mode::Stepped
        };
        let mut conn = if ws {
            Connection::connect_with(ws_url.as_str(), mode, Config::default()).unwrap()
        } else {
            Connection::connect_with(probe.addr, mode, Config::default()).unwrap()
        };
        let mut replies = 0;
        conn.send(&msg! { "action": "whoami" });
        let mut slot = None;
        let deadline = Instant::now() + PROMPT;
        while (slot.is_none() || replies < 20) && Instant::now() < deadline {
            conn.poll(Duration::from_millis(20), |ctx, m| match m.action() {
                "you" => {
                    slot = Some(m.u64("slot").unwrap() as usize);
                    for seq in 0..20u64 {
                        ctx.send(&msg! { "action": "echo", "seq": seq });
                    }
                }
                "echo_reply" => replies += 1,
                _ => {}
            });
        }
        assert_eq!(replies, 20);
        let slot = slot.unwrap();
        let id = query(&handle, move |_, ctx| {
            ctx.channels()
                .map(|(id, _)| id)
                .find(|id| id.slot() == slot)
        })
        .unwrap();
        let server_side = query(&handle, move |_, ctx| ctx.stats_of(id)).unwrap();
        // The background thread publishes once per turn; a stepped client is exact at once.
        wait_for("the client's figures", PROMPT, || {
            conn.poll(Duration::from_millis(5), |_, _| {});
            let c = conn.stats().expect("client stats");
            // Local events (socketConnect) are not frames and are not counted.
            (c.msgs_in, c.bytes_in, c.msgs_out, c.bytes_out)
                == (
                    server_side.msgs_out,
                    server_side.bytes_out,
                    server_side.msgs_in,
                    server_side.bytes_in,
                )
        });
        let kernel = conn.kernel_rtt().expect("the kernel's RTT, client side");
        assert!(kernel < Duration::from_secs(1), "{kernel:?}");
        let server_kernel = query(&handle, move |_, ctx| ctx.kernel_rtt_of(id));
        let server_kernel = server_kernel.expect("the kernel's RTT, server side");
        assert!(server_kernel < Duration::from_secs(1), "{server_kernel:?}");
        conn.close();
    }
}

/// A server whose tick sleeps past its 10 ms period every third tick.
#[derive(Default)]
struct Slow;

#[derive(Default)]
struct Ticks(u64);

impl ChannelHandler for Slow {
    type Server = Ticks;
    fn routes(_: &mut Routes<Self>) {}
}

impl ServerHandler<Slow> for Ticks {
    fn on_tick(&mut self, _ctx: &mut ServerCtx<'_, Slow>) {
        self.0 += 1;
        if self.0 % 3 == 0 {
            std::thread::sleep(Duration::from_millis(15));
        }
    }
}

#[test]
fn ticks_that_outlast_their_period_are_overruns() {
    let server = Server::<Slow>::bind("127.0.0.1:0", Ticks(0))
        .unwrap()
        .tick_rate(100.0)
        .start_background()
        .unwrap();
    let handle = server.handle();
    wait_for("30 ticks", PROMPT, || handle.stats().ticks >= 30);
    let ticks = server.stop_and_join().unwrap().0;
    let s = handle.stats();
    assert!(s.ticks <= ticks && s.ticks >= 30, "{s:?}");
    // Every sleeping tick overran; others may too on a busy machine, but never more than all.
    assert!(s.tick_overruns >= s.ticks / 3, "{s:?}");
    assert!(s.tick_overruns <= s.ticks, "{s:?}");
    assert!(s.max_tick >= Duration::from_millis(15), "{s:?}");
    assert!(s.tick_time >= Duration::from_millis(15) * (s.ticks / 3) as u32);
}

#[test]
fn a_busy_polling_server_serves_and_stops_like_any_other() {
    let cfg = Config::default().busy_poll(Some(Duration::from_micros(50)));
    let probe = net::start(cfg);
    let mut peer = Peer::greeted(probe.addr);
    for seq in 0..200 {
        peer.echo(seq);
    }
    // Idle long enough to stop spinning and sleep, then wake up for the next message.
    std::thread::sleep(Duration::from_millis(50));
    peer.echo(1000);
    let handle = probe.handle();
    wait_for("the published figures", PROMPT, || {
        handle.stats().msgs_in == 201
    });
    drop(peer);
    probe.server.stop_and_join().unwrap();
}
