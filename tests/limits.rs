//! Every limit of `Config`, enforced against a real peer over loopback TCP.
//!
//! Each test ends by checking that a brand-new client is still greeted and answered promptly:
//! a limit that protects one connection by stalling the server protects nothing.

#[path = "support/net.rs"]
mod net;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use net::{Peer, PROMPT};
use repod::{msg, Bin, Config, SlowReaderPolicy};

/// The tests' base configuration: a short linger, so that a connection the test leaves open
/// does not hold up the server's stop for long.
fn cfg() -> Config {
    Config::default().linger(Duration::from_secs(1))
}

/// A frame `{"action": "echo", "seq": seq, "deep": [[[ ... nil ... ]]]}` with `arrays` nested
/// arrays: the message nests `arrays + 1` levels deep.
fn nested_echo(seq: u8, arrays: usize) -> Vec<u8> {
    let mut p = b"\x83\xa6action\xa4echo\xa3seq".to_vec();
    p.push(seq); // positive fixint
    p.extend_from_slice(b"\xa4deep");
    p.extend(std::iter::repeat_n(0x91u8, arrays));
    p.push(0xc0);
    p
}

#[test]
fn oversize_prefix_closes_before_the_body_is_sent() {
    let s = net::start(cfg().max_frame_len(1024));
    for (announced, split) in [(1025u32, false), (u32::MAX, false), (1 << 20, true)] {
        let mut p = Peer::greeted(s.addr);
        let id = s.id_of(&mut p);
        let head = announced.to_be_bytes();
        if split {
            // The prefix arrives in two pieces: still judged on the whole prefix, still no body.
            p.send_raw(&head[..2]);
            std::thread::sleep(Duration::from_millis(20));
            p.send_raw(&head[2..]);
        } else {
            p.send_raw(&head);
        }
        // Not one byte of the body: the server must decide on the prefix alone.
        let start = Instant::now();
        let frames = p.expect_eof();
        assert!(frames.is_empty(), "nothing is sent after the greeting");
        assert!(start.elapsed() < PROMPT);
        s.wait("the disconnect", |r| !r.disconnects_of(id).is_empty());
        let r = s.lock();
        let errors = r.errors_of(id);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "FrameTooLarge");
        assert!(
            errors[0].1.contains(&announced.to_string()) && errors[0].1.contains("1024"),
            "the error names the announced length and the maximum: {}",
            errors[0].1
        );
        assert_eq!(r.closes_of(id), ["FrameTooLarge"]);
        assert_eq!(r.disconnects_of(id), ["FrameTooLarge"]);
    }
    s.assert_served();
}

#[test]
fn frame_of_exactly_the_maximum_is_accepted() {
    let s = net::start(cfg().max_frame_len(1024));
    let mut p = Peer::greeted(s.addr);
    let id = s.id_of(&mut p);
    // {"action": "need", "n": 1, "pad": <bin>} sized to exactly 1024 bytes; "need" sends nothing.
    let head = net::payload(&msg! { "action": "need", "n": 1, "pad": Bin(&[]) });
    // An empty bin8 is `c4 00`; a bin16 header is 3 bytes.
    let pad = 1024 - (head.len() - 2) - 3;
    let payload = net::payload(&msg! { "action": "need", "n": 1, "pad": Bin(&vec![7; pad]) });
    assert_eq!(payload.len(), 1024);
    p.send_payload(&payload);
    p.echo(1);
    assert!(s.lock().errors_of(id).is_empty());
    s.assert_served();
}

#[test]
fn too_deep_drops_the_frame_and_keeps_the_connection() {
    let s = net::start(cfg().max_depth(8));
    let mut p = Peer::greeted(s.addr);
    let id = s.id_of(&mut p);
    // Exactly at the limit: the map is level 1, seven arrays make eight levels.
    p.send_payload(&nested_echo(1, 7));
    let r = p.recv().unwrap();
    assert_eq!(r.message().u64("seq").unwrap(), 1);
    // One level more: dropped with TooDeep, the connection stays.
    p.send_payload(&nested_echo(2, 8));
    p.echo(3);
    // Far deeper than any stack could recurse: still a clean TooDeep.
    p.send_payload(&nested_echo(4, 1_000_000));
    p.echo(5);
    let errors = s.lock().errors_of(id);
    let kinds: Vec<_> = errors.iter().map(|e| e.0).collect();
    assert_eq!(kinds, ["TooDeep", "TooDeep"], "{errors:?}");
    assert!(errors[0].1.contains('8'), "{}", errors[0].1);
    assert!(s.lock().closes_of(id).is_empty());
    s.assert_served();
}

#[test]
fn default_depth_limit_protects_the_stack() {
    // The default configuration, with a message nested 2 million levels deep.
    let s = net::start(cfg());
    let mut p = Peer::greeted(s.addr);
    let id = s.id_of(&mut p);
    p.send_payload(&nested_echo(1, 2_000_000));
    p.echo(2);
    assert_eq!(s.lock().errors_of(id)[0].0, "TooDeep");
    s.assert_served();
}

/// Validation recurses once per nesting level, so a depth limit raised without bound would
/// let one peer overflow the reactor thread's stack (at 100 000 levels; a few hundred in a debug
/// build) and abort the whole process, every player with it. The limit is capped; run in a
/// child process, so an abort would be observed rather than suffered.
#[test]
fn raised_depth_limit_cannot_overflow_the_stack() {
    const NAME: &str = "raised_depth_limit_cannot_overflow_the_stack";
    if !net::is_child(NAME) {
        net::run_in_child(NAME, "true");
        return;
    }
    let s = net::start(cfg().max_depth(100_000));
    let mut p = Peer::greeted(s.addr);
    // Within the limit the application asked for: answered, or dropped as too deep if the
    // limit is capped; either way the server is still there.
    for arrays in [255, 1_000, 99_999] {
        p.send_payload(&nested_echo(1, arrays));
        p.send(&msg! { "action": "echo", "seq": 2 });
        // The reply to the deep echo, if it was answered, then ours.
        loop {
            let f = p.recv_payload().unwrap().expect("a reply");
            let m = repod::Message::parse_with_depth(&f, 300).unwrap();
            if m.u64("seq").unwrap() == 2 {
                break;
            }
        }
    }
    s.assert_served();
}

/// Element counts and lengths announced far beyond the bytes present. Run in a child process
/// whose address space is capped at 1 GiB, so an allocation sized from an announced count
/// (2^32 entries of anything) aborts the child and fails the test.
#[test]
fn huge_announced_counts_allocate_nothing() {
    if !net::is_child("huge_announced_counts_allocate_nothing") {
        net::run_in_child(
            "huge_announced_counts_allocate_nothing",
            "ulimit -v 1048576",
        );
        return;
    }
    let s = net::start(cfg());
    let mut p = Peer::greeted(s.addr);
    let id = s.id_of(&mut p);
    let peak_before = net::proc_status_kib("VmPeak");
    let cases: &[&[u8]] = &[
        // A map announcing 2^32-1 entries, in a 10-byte frame.
        b"\xdf\xff\xff\xff\xff\xa1a\x01\xa1b",
        // The same inside a valid top-level map, for arrays and maps.
        b"\x81\xa1a\xdd\xff\xff\xff\xff\x01\x02",
        b"\x81\xa1a\xdf\xff\xff\xff\xff\x01\x02",
        b"\x81\xa1a\xde\xff\xff\x01\x02",
        // Strings, bins and exts announcing 4 GiB.
        b"\x81\xa1a\xdb\xff\xff\xff\xffabc",
        b"\x81\xa1a\xc6\xff\xff\xff\xffabc",
        b"\x81\xa1a\xc9\xff\xff\xff\xff\x01abc",
        // A top-level map16 of 65535 entries, with two present.
        b"\xde\xff\xff\xa1a\x01\xa1b\x02",
    ];
    for (i, case) in cases.iter().enumerate() {
        p.send_payload(case);
        p.echo(i as u64);
    }
    let errors = s.lock().errors_of(id);
    assert_eq!(errors.len(), cases.len(), "{errors:?}");
    for e in &errors {
        assert_eq!(e.0, "InvalidMsgpack", "{errors:?}");
    }
    let grown = net::proc_status_kib("VmPeak").saturating_sub(peak_before);
    assert!(grown < 256 * 1024, "peak address space grew by {grown} KiB");
    s.assert_served();
}

/// Floods a client that never reads; returns (server, peer, its channel id).
fn flood(policy: SlowReaderPolicy) -> (net::Probed, Peer, repod::ChannelId) {
    let cfg = cfg()
        .max_queued_output(64 * 1024)
        .slow_reader(policy)
        .linger(Duration::from_millis(500));
    let s = net::start_with(cfg, |srv| srv.tick_rate(1000.0));
    {
        let mut r = s.lock();
        r.flood_size = 16 * 1024;
        r.flood_burst = 3;
    }
    let mut p = Peer::greeted(s.addr);
    let id = s.id_of(&mut p);
    p.send(&msg! { "action": "flood" });
    (s, p, id)
}

#[test]
fn slow_reader_is_disconnected_with_output_full() {
    let (s, mut p, id) = flood(SlowReaderPolicy::Disconnect);
    // Never read: the kernel's buffers fill, then the queue, then the server gives up.
    wait_for_flood_end(&s, id);
    // The tick saw the refusal; the close hooks run once the tick has returned.
    s.wait("the disconnect hooks", |r| !r.disconnects_of(id).is_empty());
    let r = s.lock();
    let (_, stats) = r.flood.iter().find(|(i, _)| *i == id).unwrap();
    assert_eq!(stats.stopped_by, Some("OutputFull"), "{stats:?}");
    assert!(stats.sent > 10, "{stats:?}");
    assert!(
        stats.max_queued <= 64 * 1024,
        "queued output stays under the cap: {stats:?}"
    );
    let errors = r.errors_of(id);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, "OutputFull");
    assert_eq!(r.closes_of(id), ["OutputFull"]);
    assert_eq!(r.disconnects_of(id), ["OutputFull"]);
    drop(r);
    // What did arrive is whole frames, in order. The server gives up on the socket after the
    // linger time, so the stream may end in the middle of a frame.
    std::thread::sleep(Duration::from_millis(700));
    let mut expected = 0u64;
    while let Ok(Some(frame)) = p.recv_payload() {
        let m = repod::Message::parse(&frame).unwrap();
        assert_eq!(m.u64("seq").unwrap(), expected);
        expected += 1;
    }
    assert!(expected > 0);
    s.assert_served();
}

fn wait_for_flood_end(s: &net::Probed, id: repod::ChannelId) {
    s.wait("the flood to be stopped", |r| {
        r.flood
            .iter()
            .any(|(i, st)| *i == id && st.stopped_by.is_some())
    });
}

#[test]
fn slow_reader_with_drop_message_keeps_the_connection() {
    let (s, mut p, id) = flood(SlowReaderPolicy::DropMessage);
    s.wait("refused sends", |r| {
        r.flood.iter().any(|(i, st)| *i == id && st.refused >= 20)
    });
    {
        let r = s.lock();
        let (_, stats) = r.flood.iter().find(|(i, _)| *i == id).unwrap();
        assert_eq!(stats.stopped_by, None, "{stats:?}");
        assert!(stats.max_queued <= 64 * 1024, "{stats:?}");
        assert!(r.errors_of(id).is_empty(), "{:?}", r.errors_of(id));
        assert!(r.closes_of(id).is_empty());
    }
    // The client wakes up and reads: a gap-free sequence of whole frames (refused messages were
    // never queued), and the connection still answers.
    p.send(&msg! { "action": "echo", "seq": 99 });
    let mut expected = 0u64;
    loop {
        let m = p.recv().expect("a frame");
        let m = m.message();
        if m.action() == "echo_reply" {
            assert_eq!(m.u64("seq").unwrap(), 99);
            break;
        }
        assert_eq!(m.action(), "flood");
        assert_eq!(m.u64("seq").unwrap(), expected);
        expected += 1;
    }
    assert!(expected > 0);
    assert!(s.lock().closes_of(id).is_empty());
    drop(p);
    s.assert_served();
}

#[test]
fn idle_timeout_closes_a_silent_client_and_spares_an_active_one() {
    let idle = Duration::from_millis(300);
    let s = net::start(cfg().idle_timeout(Some(idle)));
    let mut active = Peer::greeted(s.addr);
    let active_id = s.id_of(&mut active);
    let start = Instant::now();
    let mut silent = Peer::greeted(s.addr);
    let silent_id = {
        // The silent client's id, without making it talk.
        let known = active_id;
        s.wait("the silent client's connect", |r| r.connect_count() == 2);
        let r = s.lock();
        r.events
            .iter()
            .find_map(|e| match e {
                net::Ev::Connect(i) if *i != known => Some(*i),
                _ => None,
            })
            .unwrap()
    };
    let closer = std::thread::spawn(move || {
        let closed = silent.is_closed_within(Duration::from_secs(3));
        (closed, start.elapsed())
    });
    // The active client talks every 100 ms for three timeouts' worth.
    for seq in 0..10 {
        active.echo(seq);
        std::thread::sleep(Duration::from_millis(100));
    }
    let (closed, after) = closer.join().unwrap();
    assert!(closed, "the silent client was not closed");
    assert!(
        after >= idle - Duration::from_millis(20) && after < Duration::from_secs(2),
        "closed after {after:?}"
    );
    let r = s.lock();
    assert_eq!(r.errors_of(silent_id)[0].0, "IdleTimeout");
    assert_eq!(r.closes_of(silent_id), ["IdleTimeout"]);
    assert!(r.closes_of(active_id).is_empty(), "the active client stays");
    drop(r);
    s.assert_served();
}

#[test]
fn max_connections_refuses_the_extra_one_and_recovers() {
    let s = net::start(cfg().max_connections(Some(3)));
    let mut a = Peer::greeted(s.addr);
    let mut b = Peer::greeted(s.addr);
    let mut c = Peer::greeted(s.addr);
    // The fourth is accepted and closed at once, with no greeting and no hooks.
    let mut d = Peer::connect(s.addr);
    assert!(
        d.expect_eof().is_empty(),
        "no greeting for a refused client"
    );
    for (i, p) in [&mut a, &mut b, &mut c].into_iter().enumerate() {
        p.echo(i as u64);
    }
    assert_eq!(s.lock().connect_count(), 3);
    // One leaves: a newcomer is accepted.
    drop(a);
    s.wait("a's disconnect", |r| r.disconnect_count() == 1);
    let mut e = Peer::greeted(s.addr);
    e.echo(4);
    // Full again.
    assert!(Peer::connect(s.addr).expect_eof().is_empty());
    drop(b);
    s.wait("b's disconnect", |r| r.disconnect_count() == 2);
    s.assert_served();
    assert_eq!(s.lock().connect_count(), 5);
    let _ = (c, e);
}

/// Runs in a child process with `ulimit -n 64`: opens connections until the process is out of
/// descriptors. The server must neither crash nor spin while `accept` fails, and must accept
/// again once descriptors are free.
#[test]
fn accept_out_of_descriptors_backs_off_and_recovers() {
    const NAME: &str = "accept_out_of_descriptors_backs_off_and_recovers";
    if !net::is_child(NAME) {
        net::run_in_child(NAME, "ulimit -n 64");
        return;
    }
    let s = net::start(cfg());
    let mut clock = net::CpuClock::open();
    // Each connection costs two descriptors, the client's then the server's. For the last
    // client socket to be the one that takes the last descriptor (leaving its connection
    // waiting in the backlog), the number of free descriptors must be odd: fix the parity
    // with a spare descriptor. (`open_fds` itself holds one while counting.)
    let used = net::open_fds(64).1 - 1;
    println!("{used} descriptors in use before the test");
    let _spacer = ((64 - used) % 2 == 0).then(|| std::fs::File::open("/dev/null").unwrap());
    let mut greeted = Vec::new();
    let mut pending = Vec::new();
    // Open until socket() itself fails. Each served connection costs two descriptors; the
    // last one that gets a client socket cannot be accepted.
    loop {
        let stream = match TcpStream::connect(s.addr) {
            Ok(st) => st,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(24), "EMFILE expected: {e}");
                break;
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut p = Peer { stream };
        match p.recv() {
            Ok(m) => {
                assert_eq!(m.action(), "connected");
                greeted.push(p);
            }
            Err(_) => pending.push(p),
        }
        assert!(greeted.len() < 100, "the descriptor limit is not in force");
    }
    println!("{} greeted, {} pending", greeted.len(), pending.len(),);
    assert!(
        !pending.is_empty(),
        "some connection must be waiting in the backlog"
    );
    // The server keeps failing to accept: it must not spin meanwhile.
    let cpu0 = clock.read();
    std::thread::sleep(Duration::from_secs(1));
    let spent = clock.read() - cpu0;
    println!("{spent:?} of CPU in 1 s");
    assert!(
        spent < Duration::from_millis(300),
        "busy loop: {spent:?} of CPU in 1 s"
    );
    // Everyone already connected is still served.
    for (i, p) in greeted.iter_mut().enumerate().take(5) {
        p.echo(i as u64);
    }
    // Free descriptors: the pending clients are accepted and greeted.
    greeted.truncate(greeted.len() - 6);
    for p in &mut pending {
        p.stream.set_read_timeout(Some(PROMPT)).unwrap();
        p.expect_greeting();
        p.echo(7);
    }
    // And a newcomer too (descriptors permitting, which they now are).
    drop(pending);
    std::thread::sleep(Duration::from_millis(100));
    net::assert_served(s.addr);
}

/// Thousands of simultaneous connections, each greeted and each answered, then every
/// disconnect reported.
#[test]
fn three_thousand_connections() {
    const N: usize = 3000;
    let s = net::start(cfg());
    // Connect in batches, letting the server accept each batch before the next: the listen
    // backlog is mio's 128, and a connect that finds it full waits out the kernel's 1 s SYN
    // retransmission timer (a debug build accepts more slowly than a client connects).
    let mut peers = Vec::with_capacity(N);
    for batch in 0..N / 100 {
        for _ in 0..100 {
            let stream = TcpStream::connect(s.addr).expect("connect");
            stream.set_read_timeout(Some(PROMPT)).unwrap();
            peers.push(Peer { stream });
        }
        s.wait("the batch's accepts", |r| {
            r.connect_count() == (batch + 1) * 100
        });
    }
    assert_eq!(peers.len(), N);
    for p in &mut peers {
        p.expect_greeting();
    }
    s.wait("every connect hook", |r| r.connect_count() == N);
    // Everyone sends before anyone reads: the server handles them as one big batch.
    let requests: Vec<Vec<u8>> = (0..N)
        .map(|i| net::framed(&net::payload(&msg! { "action": "echo", "seq": i })))
        .collect();
    for (p, req) in peers.iter_mut().zip(&requests) {
        p.stream.write_all(req).unwrap();
    }
    for (i, p) in peers.iter_mut().enumerate() {
        let m = p.recv().expect("echo reply");
        assert_eq!(m.message().u64("seq").unwrap(), i as u64);
    }
    let count = net::query(&s.handle(), |_, ctx| ctx.channel_count());
    assert_eq!(count, N);
    drop(peers);
    s.wait("every disconnect hook", |r| r.disconnect_count() == N);
    let r = s.lock();
    let peer_closed = r
        .events
        .iter()
        .filter(|e| matches!(e, net::Ev::Disconnect(_, "PeerClosed")))
        .count();
    assert_eq!(peer_closed, N);
    drop(r);
    s.assert_served();
}
