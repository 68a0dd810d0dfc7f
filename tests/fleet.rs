//! A fleet of repod servers, as it runs in production:
//!
//! - two `echo_server --reuse-port` processes sharing one port, the kernel spreading
//!   connections between them;
//! - health and drain of an in-process server (`ServerHandle::health`, `ServerHandle::drain`,
//!   `ServerHandler::on_drain`);
//! - a real HAProxy (`mode tcp`, `send-proxy-v2`, health checks) in front of two
//!   `echo_server --proxy-protocol` processes: client addresses through the header, direct
//!   connections without one refused, and SIGTERM draining one backend while 40 clients play,
//!   without losing a reply.
//!
//! The HAProxy tests need `/usr/sbin/haproxy` (see `support/haproxy.rs`): without it they print
//! a loud notice and pass, skipped; with `CI` set they fail.

#[path = "support/examples.rs"]
mod examples;
#[path = "support/haproxy.rs"]
mod haproxy;
#[path = "support/net.rs"]
mod net;
#[path = "support/proc.rs"]
mod proc;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use haproxy::{free_port, Haproxy};
use net::{query, start, start_with, wait_for, Ev, Peer, PROMPT};
use proc::Proc;
use repod::{msg, Config, Health};

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Starts `echo_server` with `args`; returns it and the address it printed once bound.
fn echo_server(args: &[&str]) -> (Proc, SocketAddr) {
    let mut p = Proc::example("echo_server", args);
    let rest = p.expect_word("listening"); // "listening on 127.0.0.1:PORT"
    let addr = rest
        .strip_prefix("on ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("echo_server printed {rest:?}"));
    (p, addr)
}

/// A peer over `stream`, with the usual timeouts.
fn peer(stream: TcpStream) -> Peer {
    stream.set_read_timeout(Some(PROMPT)).unwrap();
    stream.set_nodelay(true).unwrap();
    Peer { stream }
}

/// Connects to `to` from `src` (any port), binding the socket before connecting.
fn connect_from(src: IpAddr, to: SocketAddr) -> io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(to), Type::STREAM, None)?;
    s.bind(&SocketAddr::new(src, 0).into())?;
    s.connect(&to.into())?;
    Ok(s.into())
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn send(p: &mut Peer, m: &impl repod::Encode) -> io::Result<()> {
    p.stream.write_all(&net::framed(&net::payload(m)))
}

/// `whoami` on a greeted connection to `echo_server`: the address it has for us, and its pid.
fn whoami(p: &mut Peer) -> io::Result<(SocketAddr, u32)> {
    send(p, &msg! { "action": "whoami" })?;
    let r = p.recv()?;
    let m = r.message();
    if m.action() != "whoami_reply" {
        return Err(other(format!("not a whoami reply: {:?}", r.to_value())));
    }
    let addr = m.str("addr").map_err(other)?.parse().map_err(other)?;
    Ok((addr, m.u64("pid").map_err(other)? as u32))
}

/// A new connection to `to`: greeting, then `whoami`. Returns (our address, the address the
/// server has for us, its pid); an error where a connection through a balancer may fail.
fn try_whoami(to: SocketAddr) -> io::Result<(SocketAddr, SocketAddr, u32)> {
    let mut p = peer(TcpStream::connect(to)?);
    let greeting = p.recv()?;
    if greeting.action() != "connected" {
        return Err(other(format!("first message {:?}", greeting.action())));
    }
    let (seen, pid) = whoami(&mut p)?;
    Ok((p.stream.local_addr()?, seen, pid))
}

/// Waits up to `limit` for `p` to exit; returns its status.
fn exit_within(p: &mut Proc, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = p.child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not exit within {limit:?}\n{}",
            p.name,
            p.context()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// SO_REUSEPORT.

#[test]
fn reuse_port_spreads_connections_over_two_processes() {
    let port = free_port().to_string();
    let args = ["127.0.0.1", port.as_str(), "--reuse-port"];
    let (a, addr) = echo_server(&args);
    let (b, addr_b) = echo_server(&args);
    assert_eq!(addr, addr_b, "both listen on the same port");
    let pids = [a.child.id(), b.child.id()];
    let mut served: BTreeMap<u32, usize> = BTreeMap::new();
    let mut source_ports = BTreeSet::new();
    for _ in 0..200 {
        // Each a new connection from a new ephemeral port: a new 4-tuple for the kernel to hash.
        let mut p = Peer::greeted(addr);
        let local = p.stream.local_addr().unwrap();
        let (seen, pid) = whoami(&mut p).expect("whoami");
        assert_eq!(seen, local, "the server sees our own address");
        source_ports.insert(local.port());
        *served.entry(pid).or_default() += 1;
    }
    assert_eq!(source_ports.len(), 200, "200 distinct source ports");
    assert_eq!(
        served.keys().copied().collect::<Vec<_>>(),
        {
            let mut p = pids.to_vec();
            p.sort();
            p
        },
        "served by exactly the two processes: {served:?}"
    );
    // Linux picks the socket of a SO_REUSEPORT group by a hash of the connection's 4-tuple, so
    // with 200 different source ports each process's share is about binomial(200, 1/2): mean
    // 100, standard deviation about 7. Fewer than 50 is 7 standard deviations out (probability
    // below 1e-12): a failure here means the port is not really shared.
    for (pid, n) in &served {
        assert!(*n >= 50, "process {pid} served only {n} of 200: {served:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Health and drain, in process.

fn health_of(server: &net::Probed) -> Health {
    server.handle().health()
}

#[test]
fn health_shows_connections_listening_turns_and_ticks() {
    let cfg = Config::default().max_connections(Some(10));
    let server = start(cfg);
    let h = health_of(&server);
    assert!(h.listening && !h.draining && !h.stopped, "{h:?}");
    assert_eq!(h.max_connections, Some(10));
    assert_eq!(h.since_last_tick, None, "no tick set");
    let mut peers: Vec<Peer> = (0..3).map(|_| Peer::greeted(server.addr)).collect();
    for (i, p) in peers.iter_mut().enumerate() {
        p.echo(i as u64);
    }
    wait_for("3 connections in health()", PROMPT, || {
        health_of(&server).connections == 3
    });
    let h = health_of(&server);
    assert!(h.is_ready(Duration::from_secs(2)), "{h:?}");
    // Everything was written (the greetings, the echoes): nothing stays queued. (Eventually:
    // see `queued_output_is_fresh_on_an_idle_server` for how late.)
    wait_for("no queued output", PROMPT, || {
        health_of(&server).queued_output == 0
    });
    // Idle for 2.5 s: health() never wakes the reactor (it reads atomics), so a recent turn in
    // every sample means it wakes by itself (at least once a second). The bound, 2 s, leaves
    // a second of slack for a loaded machine.
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(250));
        let h = health_of(&server);
        assert!(
            h.since_last_turn < Duration::from_secs(2),
            "an idle reactor last turned {:?} ago",
            h.since_last_turn
        );
        assert!(h.is_alive(Duration::from_secs(2)), "{h:?}");
        assert_eq!(h.connections, 3);
    }
    // A full server is alive but not ready.
    peers.extend((0..7).map(|_| Peer::greeted(server.addr)));
    wait_for("10 connections", PROMPT, || {
        health_of(&server).connections == 10
    });
    let h = health_of(&server);
    assert!(h.is_alive(Duration::from_secs(2)) && !h.is_ready(Duration::from_secs(2)));
    drop(peers);
    wait_for("0 connections", PROMPT, || {
        health_of(&server).connections == 0
    });

    // With a 20 Hz tick, the last tick is recent.
    let ticking = start_with(Config::default(), |s| s.tick_rate(20.0));
    wait_for("a first tick", PROMPT, || {
        health_of(&ticking).since_last_tick.is_some()
    });
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(100));
        let h = health_of(&ticking);
        let tick = h.since_last_tick.expect("ticked");
        assert!(
            tick < Duration::from_secs(1),
            "last tick {tick:?} ago at 20 Hz"
        );
    }

    // After a stop: stopped, not listening, neither alive nor ready.
    let handle = server.handle();
    server.server.stop_and_join().unwrap();
    let h = handle.health();
    assert!(h.stopped && !h.listening, "{h:?}");
    assert!(!h.is_alive(Duration::from_secs(60)) && !h.is_ready(Duration::from_secs(60)));
}

/// A server nobody has reached yet, with no tick: its reactor still turns by itself, so an
/// orchestrator waiting for the first player does not take it for dead.
#[test]
fn a_server_with_no_players_and_no_tick_is_alive() {
    let server = start(Config::default());
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(500));
        let h = health_of(&server);
        assert!(h.is_alive(Duration::from_secs(2)), "{h:?}");
        assert!(h.is_ready(Duration::from_secs(2)), "{h:?}");
    }
}

#[test]
fn queued_output_is_fresh_on_an_idle_server() {
    // `Health::queued_output` is documented as "output queued for all players and not yet
    // taken by their sockets (refreshed every 100 ms)". Two players connect 150 ms apart (so
    // the second connection's turn is one that refreshes the figure), then the server is idle.
    // Every greeting was written at once (each client has read its own), so within a few
    // refresh periods the figure must be 0.
    let server = start(Config::default());
    let _a = Peer::greeted(server.addr);
    std::thread::sleep(Duration::from_millis(150));
    let _b = Peer::greeted(server.addr);
    let greeted = Instant::now();
    std::thread::sleep(Duration::from_millis(400));
    let h = health_of(&server);
    assert_eq!(
        h.queued_output,
        0,
        "{:?} after both greetings were read, the server idle, health() still shows {} bytes \
         queued ({h:?})",
        greeted.elapsed(),
        h.queued_output
    );
}

/// Each channel's hooks ran exactly once: a connect, and a close and a disconnect for `reason`.
fn assert_hooks_once_each(rec: &net::Record, reason: &str) {
    let ids: Vec<_> = rec
        .events
        .iter()
        .filter_map(|e| match e {
            Ev::Connect(id) => Some(*id),
            _ => None,
        })
        .collect();
    for id in &ids {
        assert_eq!(rec.closes_of(*id), [reason], "{id:?}: {:?}", rec.events);
        assert_eq!(
            rec.disconnects_of(*id),
            [reason],
            "{id:?}: {:?}",
            rec.events
        );
    }
    assert_eq!(rec.events.len(), ids.len() * 3, "{:?}", rec.events);
}

#[test]
fn drain_closes_the_listener_serves_players_and_stops_when_the_last_leaves() {
    let server = start(Config::default());
    let handle = server.handle();
    let mut peers: Vec<Peer> = (0..3).map(|_| Peer::greeted(server.addr)).collect();
    for (i, p) in peers.iter_mut().enumerate() {
        p.echo(i as u64);
    }
    let asked = Instant::now();
    handle.drain(Duration::from_secs(60));
    wait_for("health() shows the drain", PROMPT, || {
        let h = handle.health();
        h.draining && !h.listening
    });
    let h = handle.health();
    assert!(
        !h.stopped && h.is_alive(Duration::from_secs(2)) && !h.is_ready(Duration::from_secs(2)),
        "{h:?}"
    );
    // on_drain ran once, with the deadline asked for.
    let drains = server.lock().drains.clone();
    assert_eq!(drains.len(), 1);
    assert!(drains[0] >= asked + Duration::from_secs(59), "deadline");
    // The listening socket is closed already: a new connection is refused by the kernel.
    match TcpStream::connect(server.addr) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
        other => panic!("a connection during the drain: {other:?}"),
    }
    // The connected players are served as usual.
    for (i, p) in peers.iter_mut().enumerate() {
        p.echo(10 + i as u64);
    }
    // A second drain may bring the deadline closer; it does not run on_drain again.
    handle.drain(Duration::from_secs(50));
    query(&handle, |_, _| ());
    assert_eq!(server.lock().drains.len(), 1);
    // Two players leave: the server goes on for the third.
    let mut last = peers.pop().unwrap();
    drop(peers);
    server.wait("two players gone", |r| r.disconnect_count() == 2);
    last.echo(99);
    assert!(!handle.health().stopped);
    // The last one leaves: the server stops by itself.
    drop(last);
    wait_for("the server stops", PROMPT, || handle.health().stopped);
    server.server.join().expect("the server stopped cleanly");
    assert_hooks_once_each(&server.shared.lock(), "PeerClosed");
    assert_eq!(server.shared.lock().connect_count(), 3);
}

#[test]
fn drain_stops_at_the_deadline_with_players_still_connected() {
    let server = start(Config::default());
    let handle = server.handle();
    let mut peers: Vec<Peer> = (0..2).map(|_| Peer::greeted(server.addr)).collect();
    handle.drain(Duration::from_millis(1500));
    wait_for("the drain begins", PROMPT, || handle.health().draining);
    // Served during the drain.
    for (i, p) in peers.iter_mut().enumerate() {
        p.echo(i as u64);
    }
    let deadline = server.lock().drains[0];
    // The players stay; the server stops at the deadline and closes them.
    for p in &mut peers {
        assert_eq!(
            p.expect_eof(),
            Vec::<Vec<u8>>::new(),
            "nothing more after a stop"
        );
    }
    wait_for("the server stops", Duration::from_secs(10), || {
        handle.health().stopped
    });
    assert!(Instant::now() >= deadline, "stopped before the deadline");
    drop(peers);
    server.server.join().expect("the server stopped cleanly");
    let rec = server.shared.lock();
    assert_eq!(rec.drains.len(), 1);
    assert_eq!(rec.connect_count(), 2);
    assert_hooks_once_each(&rec, "ServerStopped");
}

#[test]
fn drain_of_an_empty_server_stops_it_at_once() {
    let server = start(Config::default());
    let handle = server.handle();
    handle.drain(Duration::from_secs(60));
    wait_for("the server stops", PROMPT, || handle.health().stopped);
    server.server.join().expect("stopped cleanly");
    assert_eq!(server.shared.lock().drains.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Behind HAProxy.

/// Two `echo_server --proxy-protocol` backends behind HAProxy.
struct Fleet {
    haproxy: Haproxy,
    backends: Vec<(Proc, SocketAddr)>,
}

impl Fleet {
    fn start(bin: &std::path::Path) -> Fleet {
        let args = ["127.0.0.1", "0", "--proxy-protocol", "--drain-secs", "60"];
        let backends = vec![echo_server(&args), echo_server(&args)];
        let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.1).collect();
        let haproxy = Haproxy::start(bin, &addrs);
        let fleet = Fleet { haproxy, backends };
        // Both backends take connections through HAProxy (its checks have passed).
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = BTreeSet::new();
        while seen.len() < 2 {
            assert!(
                Instant::now() < deadline,
                "not both backends reachable through HAProxy (saw pids {seen:?})\n{}",
                fleet.context()
            );
            if let Ok((_, _, pid)) = try_whoami(fleet.haproxy.addr) {
                seen.insert(pid);
            }
        }
        fleet
    }

    fn pid(&self, i: usize) -> u32 {
        self.backends[i].0.child.id()
    }

    fn context(&self) -> String {
        let mut s = self.haproxy.context();
        for (p, _) in &self.backends {
            s += &format!("\n{}", p.context());
        }
        s
    }
}

#[test]
fn haproxy_passes_each_clients_source_address() {
    let Some(bin) = haproxy::haproxy() else {
        return;
    };
    let fleet = Fleet::start(&bin);
    let mut pids = BTreeSet::new();
    for last in 2..=6u8 {
        let src = IpAddr::V4(Ipv4Addr::new(127, 0, 0, last));
        for _ in 0..2 {
            let stream = connect_from(src, fleet.haproxy.addr).expect("connect through HAProxy");
            let local = stream.local_addr().unwrap();
            assert_eq!(local.ip(), src);
            let mut p = peer(stream);
            p.expect_greeting();
            let (seen, pid) = whoami(&mut p).expect("whoami");
            assert_eq!(seen, local, "the backend names the client, not HAProxy");
            pids.insert(pid);
        }
    }
    // Round robin over both backends.
    let both: BTreeSet<u32> = [fleet.pid(0), fleet.pid(1)].into();
    assert_eq!(pids, both, "\n{}", fleet.context());
}

#[test]
fn a_backend_closes_a_direct_connection_without_a_header_before_any_greeting() {
    // No HAProxy needed: a client that bypasses the balancer.
    let (_server, addr) = echo_server(&["127.0.0.1", "0", "--proxy-protocol"]);
    // A repod frame first: refused at its first byte.
    let mut p = Peer::connect(addr);
    p.send(&msg! { "action": "whoami" });
    let got = net::read_to_end_within(&mut p.stream, PROMPT);
    assert!(got.is_empty(), "sent {got:?} to a client without a header");
    // A repod client waits for the greeting and sends nothing: closed at the header time limit
    // (5 s by default), again with not one byte.
    let mut q = Peer::connect(addr);
    let got = net::read_to_end_within(&mut q.stream, Duration::from_secs(20));
    assert!(got.is_empty(), "sent {got:?} to a silent client");
    // A client behind a valid header is served, and named by it.
    let header = b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 5071\r\n";
    let mut ok = Peer::greeted_with(addr, header);
    let (seen, _) = whoami(&mut ok).expect("whoami");
    assert_eq!(seen, "203.0.113.9:40000".parse().unwrap());
}

/// What one echoing client did.
#[derive(Debug)]
struct Played {
    pid: u32,
    /// Echo round trips in all, and after SIGTERM was sent.
    echoes: u64,
    after_term: u64,
}

/// A client through HAProxy: greeting, `whoami` (its backend's pid goes to `landed`), then two
/// numbered echoes every ~20 ms, each pair's replies checked in order, until `stop`. Its
/// connection closes when it returns.
fn play(
    to: SocketAddr,
    landed: mpsc::Sender<u32>,
    term: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Result<Played, String> {
    let stream = TcpStream::connect(to).map_err(|e| format!("connect: {e}"))?;
    let mut p = peer(stream);
    let greeting = p.recv().map_err(|e| format!("greeting: {e}"))?;
    if greeting.action() != "connected" {
        return Err(format!("first message {:?}", greeting.action()));
    }
    let (_, pid) = whoami(&mut p).map_err(|e| format!("whoami: {e}"))?;
    let _ = landed.send(pid);
    let (mut seq, mut echoes, mut after_term) = (0u64, 0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        let termed = term.load(Ordering::Relaxed);
        let mut wire = Vec::new();
        for n in [seq, seq + 1] {
            wire.extend(net::framed(&net::payload(
                &msg! { "action": "echo", "seq": n },
            )));
        }
        p.stream
            .write_all(&wire)
            .map_err(|e| format!("backend {pid}: writing echo {seq}: {e}"))?;
        for n in [seq, seq + 1] {
            let r = p
                .recv()
                .map_err(|e| format!("backend {pid}: the reply to echo {n} was lost: {e}"))?;
            let got = r.message().u64("seq").ok();
            if r.action() != "echo_reply" || got != Some(n) {
                return Err(format!(
                    "backend {pid}: expected echo_reply {n}, got {} {got:?}",
                    r.action()
                ));
            }
        }
        seq += 2;
        echoes += 2;
        if termed {
            after_term += 2;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Played {
        pid,
        echoes,
        after_term,
    })
}

#[test]
fn sigterm_drains_a_backend_behind_haproxy_without_losing_a_reply() {
    let Some(bin) = haproxy::haproxy() else {
        return;
    };
    let mut fleet = Fleet::start(&bin);
    let (drained, kept) = (fleet.pid(0), fleet.pid(1)); // g1 and g2 in HAProxy
    let term = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let (landed_tx, landed) = mpsc::channel();
    let clients: Vec<_> = (0..40)
        .map(|_| {
            let (to, tx) = (fleet.haproxy.addr, landed_tx.clone());
            let (term, stop) = (term.clone(), stop.clone());
            std::thread::spawn(move || play(to, tx, term, stop))
        })
        .collect();
    let mut on: BTreeMap<u32, usize> = BTreeMap::new();
    for _ in 0..40 {
        let pid = landed
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("not every client connected\n{}", fleet.context()));
        *on.entry(pid).or_default() += 1;
    }
    // Round robin: 20 each; at least 10 each whatever the order of the checks.
    assert!(
        on.get(&drained).copied().unwrap_or(0) >= 10 && on.get(&kept).copied().unwrap_or(0) >= 10,
        "clients per backend: {on:?}"
    );
    std::thread::sleep(Duration::from_millis(300));

    // SIGTERM to g1 while every client echoes.
    term.store(true, Ordering::Relaxed);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &drained.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -TERM {drained}");
    let termed = Instant::now();
    // Its listening socket closes at once, so HAProxy's checks fail: g1 goes DOWN.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = fleet.haproxy.server_status("g1");
        if s == "DOWN" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "HAProxy still has g1 {s:?}\n{}",
            fleet.context()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let down_after = termed.elapsed();
    assert!(
        fleet.haproxy.server_status("g2").starts_with("UP"),
        "g2 is {}",
        fleet.haproxy.server_status("g2")
    );
    // New connections now land on the other backend only (bounded poll, in case HAProxy's
    // view lags its stats: ten in a row on g2, then ten more that must all be there).
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut streak = 0;
    let mut before_streak = Vec::new();
    while streak < 10 {
        assert!(
            Instant::now() < deadline,
            "new connections still not only on {kept}: {before_streak:?}\n{}",
            fleet.context()
        );
        match try_whoami(fleet.haproxy.addr) {
            Ok((local, seen, pid)) if pid == kept => {
                assert_eq!(seen, local);
                streak += 1;
            }
            other => {
                before_streak.push(format!("{other:?}"));
                streak = 0;
            }
        }
    }
    for _ in 0..10 {
        let (_, _, pid) = try_whoami(fleet.haproxy.addr).expect("a new connection");
        assert_eq!(pid, kept, "a new connection landed on the drained backend");
    }
    // The drained backend still runs and serves its players for a while longer.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        fleet.backends[0].0.is_running(),
        "the draining backend exited with players connected\n{}",
        fleet.context()
    );

    // The players leave: every reply came back, in order, on both backends, before and after.
    stop.store(true, Ordering::Relaxed);
    let mut played = Vec::new();
    for c in clients {
        match c.join().expect("client thread") {
            Ok(p) => played.push(p),
            Err(e) => panic!("a client failed: {e}\n{}", fleet.context()),
        }
    }
    for p in &played {
        assert!(
            p.after_term >= 4,
            "a client of {} echoed only {} times after SIGTERM ({} in all)",
            p.pid,
            p.after_term,
            p.echoes
        );
    }
    // With its last player gone, the drained backend exits, with status 0.
    let left = Instant::now();
    let status = exit_within(&mut fleet.backends[0].0, Duration::from_secs(15));
    eprintln!(
        "clients per backend {on:?}; g1 DOWN {down_after:?} after SIGTERM; new connections \
         before ten in a row on g2: {before_streak:?}; echoes per client {:?}; g1 exited \
         {:?} after its players left",
        played
            .iter()
            .map(|p| (p.echoes, p.after_term))
            .collect::<Vec<_>>(),
        left.elapsed()
    );
    assert!(
        status.success(),
        "the drained backend exited with {status}\n{}",
        fleet.context()
    );
    // The other goes on.
    let (_, _, pid) = try_whoami(fleet.haproxy.addr).expect("served after the drain");
    assert_eq!(pid, kept);
    assert!(fleet.backends[1].0.is_running());
}
