//! Dead peers: heartbeats keep live clients and close silent or frozen ones; a client finds a
//! dead server the same way; the heartbeat RTT is right against a known delay; Python peers
//! tolerate pings (and answer them with the documented two-line handler); a frozen process is
//! found by heartbeats and not by TCP keepalive, since its kernel still answers the probes.
//!
//! Times are scaled down (20-100 ms intervals) so that minutes of heartbeats fit in seconds.
//! The Python tests need the venv of `support/python.rs` (skipped loudly without Python, failed
//! when `CI` is set).

#[path = "support/examples.rs"]
mod examples;
#[path = "support/net.rs"]
mod net;
#[path = "support/proc.rs"]
mod proc;
#[path = "support/python.rs"]
mod python;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use net::{framed, payload, query, wait_for, Ev, Peer, PROMPT};
use proc::Proc;
use repod::{msg, Client, ClientRoutes, Config, Connection, Keepalive, Listener, Message};

fn heartbeat(ms: u64) -> Config {
    Config::default().heartbeat(Some(Duration::from_millis(ms)))
}

/// A client that only counts what reaches its handlers.
#[derive(Default)]
struct Quiet {
    seen: Vec<String>,
    ended: Option<String>,
}

impl Listener for Quiet {
    fn routes(r: &mut ClientRoutes<Self>) {
        r.on("disconnected", |me, _, m| {
            me.ended = Some(m.str("reason").unwrap_or("").to_owned());
            Ok(())
        });
        r.on("error", |me, _, m| {
            me.ended = Some(m.str("error").unwrap_or("").to_owned());
            Ok(())
        });
    }

    fn network_received(
        &mut self,
        _: &mut repod::ClientCtx<'_>,
        m: &Message<'_>,
    ) -> repod::HandlerResult {
        self.seen.push(m.action().to_owned());
        Ok(())
    }
}

#[test]
fn heartbeats_keep_idle_clients_and_close_a_silent_socket() {
    // 100 ms pings, 300 ms timeout: 6 s here is 60 intervals, what a minute is at 1 s. (Not
    // shorter: a CI machine running Chromium beside this can stall a thread for 100 ms.)
    let probe = net::start(heartbeat(100));
    let handle = probe.handle();
    let mut stepped = Client::connect(probe.addr, Quiet::default()).unwrap();
    let background = Connection::connect_background(probe.addr).unwrap();
    let mut silent = Peer::greeted(probe.addr);
    let start = Instant::now();
    // The game loop: one pump per 16 ms frame, nothing else sent.
    while start.elapsed() < Duration::from_secs(6) {
        stepped.pump();
        std::thread::sleep(Duration::from_millis(16));
    }
    assert!(stepped.is_connected(), "{:?}", stepped.listener().ended);
    assert!(background.is_connected());
    assert!(
        stepped
            .listener()
            .seen
            .iter()
            .all(|a| a == "connected" || a == "socketConnect"),
        "pings are not shown to handlers: {:?}",
        stepped.listener().seen
    );
    // The raw socket never answered: it was closed long ago, with the heartbeat's reason.
    assert!(silent.is_closed_within(Duration::from_millis(500)));
    let closes: Vec<_> = probe
        .lock()
        .events
        .iter()
        .filter_map(|e| match e {
            Ev::Close(_, why) => Some(*why),
            _ => None,
        })
        .collect();
    assert_eq!(closes, ["HeartbeatTimeout"]);
    let s = handle.stats();
    assert_eq!(
        (s.connections, s.closed_by.heartbeat_timeout),
        (2, 1),
        "{s:?}"
    );
    // Both live clients have a measured RTT, as the server sees it and as they see it.
    let rtts = query(&handle, |_, ctx| {
        let ids: Vec<_> = ctx.channels().map(|(id, _)| id).collect();
        ids.iter()
            .map(|&id| ctx.stats_of(id).unwrap().rtt)
            .collect::<Vec<_>>()
    });
    assert!(rtts.iter().all(|r| r.is_some()), "{rtts:?}");
    drop(silent);
}

#[test]
fn a_client_finds_a_dead_server() {
    // A "server" that greets and then hangs: the process is alive, the game is not.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let hung = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(&framed(&payload(&msg! { "action": "connected" })))
            .unwrap();
        // Read (and ignore) the client's pings until it gives up on us.
        let mut buf = [0u8; 1024];
        let deadline = Instant::now() + PROMPT;
        s.set_read_timeout(Some(PROMPT)).unwrap();
        while Instant::now() < deadline {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
        false
    });
    let cfg = heartbeat(20);
    let mut client =
        Client::connect_with(addr, Quiet::default(), repod::Mode::Stepped, cfg).unwrap();
    let start = Instant::now();
    while client.listener().ended.is_none() && start.elapsed() < PROMPT {
        client.pump_timeout(Duration::from_millis(10));
    }
    let why = client.listener().ended.clone().expect("the client gave up");
    assert!(why.contains("heartbeat"), "{why}");
    assert!(hung.join().unwrap(), "the client closed its socket");
}

#[test]
fn heartbeat_rtt_includes_a_known_delay() {
    let delay = Duration::from_millis(40);
    let probe = net::start(heartbeat(50));
    let mut peer = Peer::greeted(probe.addr);
    let id = probe.id_of(&mut peer);
    // Answer every ping, 40 ms late.
    let mut answered = 0;
    while answered < 5 {
        let m = peer.recv().expect("a ping");
        let m = m.message();
        if m.action() != "_ping" {
            continue;
        }
        std::thread::sleep(delay);
        peer.send(&msg! { "action": "_pong", "t": m.u64("t").unwrap() });
        answered += 1;
    }
    wait_for("a measured RTT", PROMPT, || {
        query(&probe.handle(), move |_, ctx| ctx.stats_of(id).unwrap().rtt).is_some()
    });
    let (rtt, kernel) = query(&probe.handle(), move |_, ctx| {
        (
            ctx.stats_of(id).unwrap().rtt.unwrap(),
            ctx.kernel_rtt_of(id).unwrap(),
        )
    });
    assert!(rtt >= delay, "{rtt:?} < {delay:?}");
    assert!(rtt < delay + Duration::from_millis(500), "{rtt:?}");
    // The kernel measures the network alone: loopback is far below the peer's delay.
    assert!(kernel < delay, "kernel RTT {kernel:?}");
    assert!(query(&probe.handle(), move |_, ctx| ctx.is_connected(id)));
}

/// Spawns the Python heartbeat client against `addr`.
fn python_client(py: &std::path::Path, addr: std::net::SocketAddr, answer: bool) -> Proc {
    let port = addr.port().to_string();
    let mut args = vec!["127.0.0.1", port.as_str()];
    if answer {
        args.push("answer");
    }
    Proc::python(py, "heartbeat_client.py", &args)
}

#[test]
fn python_peers_tolerate_pings_and_can_answer_them() {
    let Some(py) = python::venv() else { return };
    let probe = net::start(heartbeat(100));
    let handle = probe.handle();

    // A stock Python client: the pings reach network_received, nothing breaks; it does not
    // answer, so after the timeout the server lets it go, and it sees a clean disconnect.
    let mut stock = python_client(py, probe.addr, false);
    stock.expect_word("ping");
    stock.expect_word("event disconnected");
    stock.finish_ok();
    wait_for("the heartbeat close", PROMPT, || {
        handle.stats().closed_by.heartbeat_timeout == 1
    });

    // With the documented handler it stays, through 10 timeouts.
    let mut answering = python_client(py, probe.addr, true);
    answering.expect_word("ping");
    std::thread::sleep(Duration::from_secs(3));
    assert!(answering.is_running());
    assert!(
        answering
            .reports("event")
            .iter()
            .all(|e| e != "disconnected"),
        "{}",
        answering.context()
    );
    let s = handle.stats();
    assert_eq!(
        (s.connections, s.closed_by.heartbeat_timeout),
        (1, 1),
        "{s:?}"
    );
    let rtt = query(&handle, |_, ctx| {
        let id = ctx.channels().next().unwrap().0;
        ctx.stats_of(id).unwrap().rtt
    });
    assert!(rtt.is_some(), "the Python pongs measure the RTT");
}

fn signal(p: &Proc, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &p.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[test]
fn a_frozen_client_is_found_by_heartbeats_not_by_keepalive() {
    let Some(py) = python::venv() else { return };
    // Keepalive alone, aggressive: a vanished host would be dropped after about 3 s.
    let keepalive = Keepalive {
        idle: Duration::from_secs(1),
        interval: Duration::from_secs(1),
        count: 2,
    };
    let kernel_only = net::start(Config::default().keepalive(Some(keepalive)));
    let with_heartbeat = net::start(heartbeat(200).keepalive(Some(keepalive)));

    let mut frozen_a = python_client(py, kernel_only.addr, true);
    frozen_a.expect_word("event connected");
    let mut frozen_b = python_client(py, with_heartbeat.addr, true);
    frozen_b.expect_word("ping"); // it answers while it runs
    wait_for("both connected", PROMPT, || {
        kernel_only.handle().stats().connections == 1
            && with_heartbeat.handle().stats().connections == 1
    });
    signal(&frozen_a, "-STOP");
    signal(&frozen_b, "-STOP");
    let frozen_at = Instant::now();
    // Still there when it froze (asked on the reactor thread: exact, not as of the last turn).
    let at_freeze = query(&with_heartbeat.handle(), |_, ctx| ctx.channel_count());
    assert_eq!(
        at_freeze, 1,
        "the heartbeat client was closed before it froze"
    );

    // Heartbeats: closed within the 600 ms timeout plus an interval (and scheduling slack).
    wait_for("the heartbeat close", PROMPT, || {
        with_heartbeat.handle().stats().closed_by.heartbeat_timeout == 1
    });
    eprintln!("frozen client found after {:?}", frozen_at.elapsed());
    assert_eq!(with_heartbeat.handle().stats().connections, 0);

    // Keepalive: its kernel answers every probe, so after twice its detection time the
    // frozen client still holds its slot.
    std::thread::sleep(Duration::from_secs(6).saturating_sub(frozen_at.elapsed()));
    let s = kernel_only.handle().stats();
    assert_eq!((s.connections, s.closed), (1, 0), "{s:?}");
    kernel_only.assert_served();
    signal(&frozen_a, "-CONT");
    signal(&frozen_b, "-CONT");
}

#[test]
fn heartbeats_work_over_websocket_too() {
    let probe = net::start_with(heartbeat(100), |s| {
        let mut s = s;
        s.listen_ws("127.0.0.1:0").unwrap();
        s
    });
    let url = format!("ws://{}/", probe.ws.unwrap());
    let mut conn =
        Connection::connect_with(url.as_str(), repod::Mode::Stepped, heartbeat(100)).unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        conn.poll(Duration::from_millis(10), |_, m| {
            assert!(
                !m.action().starts_with("_p"),
                "heartbeats are not shown: {m:?}"
            )
        });
    }
    assert!(conn.is_connected());
    let rtt = conn.stats().unwrap().rtt;
    assert!(rtt.is_some_and(|r| r < Duration::from_secs(1)), "{rtt:?}");
    let server_rtt = query(&probe.handle(), |_, ctx| {
        let id = ctx.channels().next().unwrap().0;
        ctx.stats_of(id).unwrap().rtt
    });
    assert!(
        server_rtt.is_some(),
        "the server measured the WebSocket client too"
    );
}
