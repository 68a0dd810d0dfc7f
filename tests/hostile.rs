//! Broken and malicious peers over loopback TCP: bad frames, panicking handlers, resets,
//! half-closes, slow readers, odd chunkings. The server must report each problem to the right
//! hook, confine it to the one connection, lose nothing it promised to deliver, and keep
//! serving everyone else.

#[path = "support/net.rs"]
mod net;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use net::{Peer, Rng};
use repod::{msg, Config, Message};

fn cfg() -> Config {
    Config::default().linger(Duration::from_secs(1))
}

/// A well-behaved client that echoes in a loop on its own thread while a test abuses the
/// server; `finish` returns how many round trips it made and the slowest one.
struct Bystander {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(u64, Duration)>,
}

impl Bystander {
    fn start(addr: std::net::SocketAddr) -> Bystander {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let mut p = Peer::greeted(addr);
        let thread = std::thread::spawn(move || {
            let (mut n, mut worst) = (0u64, Duration::ZERO);
            while !flag.load(Ordering::Relaxed) || n < 3 {
                let t = Instant::now();
                p.echo(n);
                worst = worst.max(t.elapsed());
                n += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            (n, worst)
        });
        Bystander { stop, thread }
    }

    fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let (n, worst) = self.thread.join().expect("the bystander failed");
        println!("bystander: {n} echoes, the slowest took {worst:?}");
        assert!(n >= 3);
        assert!(
            worst < Duration::from_secs(2),
            "a bystander waited {worst:?} for an echo"
        );
    }
}

/// Each bad frame reaches `on_error` as its own case, drops only itself, and leaves the
/// connection (and every other connection) working. The oversize frame, last, closes it.
#[test]
fn bad_frames_reach_on_error_as_distinct_cases() {
    let s = net::start(cfg().max_frame_len(64 * 1024));
    let bystander = Bystander::start(s.addr);
    let mut p = Peer::greeted(s.addr);
    let id = s.id_of(&mut p);
    let cases: &[(&[u8], &str)] = &[
        // Not msgpack at all, or broken msgpack.
        (b"\xc1", "InvalidMsgpack"),
        (b"", "InvalidMsgpack"),
        (b"\x82\xa6action\xa4echo", "InvalidMsgpack"), // truncated: one entry missing
        (b"\x81\xa6action\xa4echo\x01", "InvalidMsgpack"), // trailing byte
        (b"\x80\x80", "InvalidMsgpack"),               // two maps in one frame
        (b"\x81\xa6action\xa5echo", "InvalidMsgpack"), // string runs past the end
        (b"\x81\xa1a\xd4\x01", "InvalidMsgpack"),      // fixext1 missing its byte
        (b"\x81\xa1a\xc1", "InvalidMsgpack"),          // reserved marker inside
        (b"\x91\xc1", "InvalidMsgpack"),               // broken and not a map: broken wins
        // Valid msgpack, but not a map.
        (b"\x93\x01\x02\x03", "NotAMap"),
        (b"\xa4echo", "NotAMap"),
        (b"\xc0", "NotAMap"),
        (b"\x2a", "NotAMap"),
        // Strings that are not UTF-8: in a value, in a key, in the action, overlong, surrogate.
        (b"\x82\xa6action\xa4echo\xa1s\xa2\xff\xfe", "InvalidUtf8"),
        (b"\x82\xa6action\xa4echo\xa2\xff\xfe\x01", "InvalidUtf8"),
        (b"\x81\xa6action\xa4ech\xff", "InvalidUtf8"),
        (b"\x81\xa1s\xa2\xc0\x80", "InvalidUtf8"),
        (b"\x81\xa1s\xa3\xed\xa0\x80", "InvalidUtf8"),
        (b"\x81\xa1s\x91\xd9\x01\x80", "InvalidUtf8"), // str8, nested in an array
        // An action that is not a string.
        (b"\x81\xa6action\x05", "ActionNotString"),
        (b"\x81\xa6action\xc0", "ActionNotString"),
        (b"\x81\xa6action\xc4\x04echo", "ActionNotString"), // bytes, not str
        (b"\x81\xa6action\x91\xa4echo", "ActionNotString"),
    ];
    // Too deep (default limit 32).
    let mut deep = b"\x82\xa6action\xa4echo\xa1d".to_vec();
    deep.extend_from_slice(&[0x91; 40]);
    deep.push(0xc0);
    let mut expected: Vec<&str> = Vec::new();
    for (i, (payload, kind)) in cases.iter().enumerate() {
        p.send_payload(payload);
        p.echo(i as u64);
        expected.push(kind);
    }
    p.send_payload(&deep);
    p.echo(1000);
    expected.push("TooDeep");
    // Handler-level errors: the frame was fine, the handler said no.
    p.send(&msg! { "action": "need" });
    p.send(&msg! { "action": "need", "n": "seven" });
    p.send(&msg! { "action": "fail" });
    p.echo(1001);
    expected.extend(["MissingField", "WrongType", "Handler"]);
    {
        let r = s.lock();
        let got: Vec<&str> = r.errors_of(id).iter().map(|e| e.0).collect();
        assert_eq!(got, expected);
        assert!(r.closes_of(id).is_empty(), "the connection stays open");
    }
    // Oversize: the one frame error that closes the connection.
    p.send_raw(&(64 * 1024 + 1u32).to_be_bytes());
    assert!(p.expect_eof().is_empty());
    s.wait("the close", |r| !r.disconnects_of(id).is_empty());
    {
        let r = s.lock();
        assert_eq!(r.errors_of(id).last().unwrap().0, "FrameTooLarge");
        assert_eq!(r.closes_of(id), ["FrameTooLarge"]);
    }
    bystander.finish();
    s.assert_served();
}

/// Messages that are unusual but valid are handled as a Python peer would handle them.
#[test]
fn odd_but_valid_messages() {
    let s = net::start(cfg());
    let mut p = Peer::greeted(s.addr);
    let id = s.id_of(&mut p);
    // No action: goes to the fallback (ignored by the probe), no error.
    p.send(&msg! { "text": "hi" });
    // An empty map.
    p.send_payload(b"\x80");
    // Non-string keys (Python unpacks with strict_map_key=False).
    p.send(&msg! { 1: 2, "action": "echo", "seq": 5, (): true });
    let r = p.recv().unwrap();
    assert_eq!(r.message().u64("seq").unwrap(), 5);
    // Keys and values of every msgpack type, ext included, and a map32 header for a small map.
    let mut payload = b"\xdf\x00\x00\x00\x04\xa6action\xa4echo\xa3seq\x06".to_vec();
    payload.extend_from_slice(b"\xa1e\xd6\x05\x01\x02\x03\x04"); // fixext4
    payload.extend_from_slice(b"\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00\xc2"); // 1.0: false
    p.send_payload(&payload);
    let r = p.recv().unwrap();
    assert_eq!(r.message().u64("seq").unwrap(), 6);
    assert_eq!(r.message().entries().len(), 4);
    // An action that no route knows, with an empty action string.
    p.send(&msg! { "action": "" });
    p.send(&msg! { "action": "no such route" });
    p.echo(7);
    let errors = s.lock().errors_of(id);
    assert!(errors.is_empty(), "{errors:?}");
    s.assert_served();
}

/// A map whose `"action"` key is encoded as str8 rather than fixstr is the same map to every
/// msgpack decoder (Python's included, which routes it to `Network_echo`), so it is routed by
/// that action. (Regression: keys were once compared with the fixstr bytes only.)
#[test]
fn action_key_encoded_as_str8_is_routed() {
    let s = net::start(cfg());
    let mut p = Peer::greeted(s.addr);
    p.send_payload(b"\x82\xd9\x06action\xa4echo\xa3seq\x09");
    let r = p
        .recv_payload()
        .unwrap()
        .expect("an echo_reply: the message is an echo");
    let m = Message::parse(&r).expect("the reply is valid msgpack");
    assert_eq!((m.action(), m.u64("seq").unwrap()), ("echo_reply", 9));
    s.assert_served();
}

/// A map with the `"action"` key twice (msgpack allows it; Python keeps the last). The echo
/// reply built by `with_action` must still be valid msgpack: a peer must not be able to make the
/// server send (or broadcast) malformed frames. (Regression: the entry count was once wrong.)
#[test]
fn duplicate_action_keys_still_echo_valid_msgpack() {
    let s = net::start(cfg());
    let mut p = Peer::greeted(s.addr);
    p.send_payload(b"\x83\xa6action\xa4nope\xa6action\xa4echo\xa3seq\x03");
    let r = p.recv_payload().unwrap().expect("a reply");
    let m = Message::parse(&r).expect("the reply is valid msgpack");
    assert_eq!((m.action(), m.u64("seq").unwrap()), ("echo_reply", 3));
    assert_eq!(m.entries().len(), 2);
    s.assert_served();
}

/// With the key twice, Python's dict keeps the last value: `{"action": 5, "action": "echo"}`
/// is an echo to a Python server, and to repod. (Regression: every `"action"` value was once
/// required to be a string.)
#[test]
fn duplicate_action_keys_last_one_wins() {
    let s = net::start(cfg());
    let mut p = Peer::greeted(s.addr);
    let id = s.id_of(&mut p);
    p.send_payload(b"\x83\xa6action\x05\xa6action\xa4echo\xa3seq\x04");
    p.send(&msg! { "action": "echo", "seq": 5 });
    let r = p.recv().unwrap();
    assert_eq!(
        r.message().u64("seq").unwrap(),
        4,
        "the first message is an echo"
    );
    assert!(s.lock().errors_of(id).is_empty());
    s.assert_served();
}

#[test]
fn handler_panic_closes_only_that_channel() {
    let s = net::start(cfg());
    let bystander = Bystander::start(s.addr);
    let mut other = Peer::greeted(s.addr);
    let mut p = Peer::greeted(s.addr);
    let id = s.id_of(&mut p);
    p.send(&msg! { "action": "echo", "seq": 1 });
    p.send(&msg! { "action": "panic", "text": "boom in the handler" });
    // Sent in the same write as the panic: must not be handled after it.
    p.send(&msg! { "action": "echo", "seq": 2 });
    let frames = p.expect_eof();
    assert_eq!(frames.len(), 1, "only the reply to the first echo arrives");
    s.wait("the close", |r| !r.disconnects_of(id).is_empty());
    {
        let r = s.lock();
        let errors = r.errors_of(id);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "HandlerPanic");
        assert!(
            errors[0].1.contains("boom in the handler"),
            "{}",
            errors[0].1
        );
        assert_eq!(r.closes_of(id), ["HandlerPanic"]);
        assert_eq!(r.disconnects_of(id), ["HandlerPanic"]);
    }
    other.echo(3);
    bystander.finish();
    s.assert_served();
}

/// Resets: closing a socket with unread data makes the kernel send RST instead of FIN. The
/// server sees a reset on read, or on a write to a connection that is already gone.
#[test]
fn peer_resets_never_bring_the_server_down() {
    let s = net::start(cfg());
    let bystander = Bystander::start(s.addr);
    let rounds = 30;
    for i in 0..rounds {
        let mut p = Peer::connect(s.addr);
        match i % 3 {
            // Never reads the greeting, sends requests, closes: RST with replies in flight.
            0 => {
                for seq in 0..20 {
                    p.send(&msg! { "action": "echo", "seq": seq });
                }
            }
            // Asks for 2 MiB and resets while the server is writing it.
            1 => {
                p.expect_greeting();
                p.send(&msg! { "action": "bulk", "count": 32, "size": 65536 });
                let _ = p.recv_payload();
            }
            // Resets in the middle of a frame.
            _ => {
                p.send_raw(&[0, 0, 1, 0, 0x81]);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
        drop(p);
    }
    s.wait("every disconnect", |r| r.disconnect_count() == rounds);
    {
        let r = s.lock();
        for ev in &r.events {
            if let net::Ev::Disconnect(_, why) = ev {
                assert!(
                    ["Io", "PeerClosed"].contains(why),
                    "unexpected reason {why}"
                );
            }
        }
    }
    bystander.finish();
    s.assert_served();
}

/// A client that sends its requests and then shuts down its writing side still gets every
/// reply; then the server closes.
#[test]
fn half_close_gets_every_reply_then_the_close() {
    let s = net::start(cfg());
    let mut p = Peer::greeted(s.addr);
    let id = s.id_of(&mut p);
    let mut batch = Vec::new();
    for seq in 0..200u64 {
        batch.extend(net::framed(&net::payload(
            &msg! { "action": "echo", "seq": seq, "pad": "x".repeat(seq as usize * 10) },
        )));
    }
    p.send_raw(&batch);
    p.shutdown_write();
    let frames = p.expect_eof();
    assert_eq!(frames.len(), 200);
    for (seq, f) in frames.iter().enumerate() {
        assert_eq!(Message::parse(f).unwrap().u64("seq").unwrap(), seq as u64);
    }
    s.wait("the close", |r| !r.disconnects_of(id).is_empty());
    assert_eq!(s.lock().closes_of(id), ["PeerClosed"]);
    assert!(s.lock().errors_of(id).is_empty());
    s.assert_served();
}

/// `close()` right after queueing several MiB: all of it arrives before the end of stream,
/// even though the client reads slowly at first.
#[test]
fn close_after_send_delivers_everything() {
    let s = net::start(Config::default());
    let mut p = Peer::greeted(s.addr);
    let id = s.id_of(&mut p);
    let (count, size) = (96u64, 64 * 1024);
    p.send(&msg! { "action": "bulk", "count": count, "size": size, "close": true });
    s.wait("the close", |r| !r.closes_of(id).is_empty());
    // Slow: 16 KiB every 5 ms for a while (the kernel's buffers fill and the server waits).
    let mut wire = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    for _ in 0..120 {
        let n = p.stream.read(&mut buf).unwrap();
        wire.extend_from_slice(&buf[..n]);
        std::thread::sleep(Duration::from_millis(5));
    }
    // Then fast, to the end of stream.
    p.stream.read_to_end(&mut wire).unwrap();
    let mut rest = &wire[..];
    let mut seq = 0;
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let m = Message::parse(&rest[4..4 + len]).unwrap();
        assert_eq!(m.u64("seq").unwrap(), seq);
        assert_eq!(m.bin("data").unwrap().len(), size);
        rest = &rest[4 + len..];
        seq += 1;
    }
    assert_eq!(seq, count, "every queued message arrived");
    assert_eq!(s.lock().closes_of(id), ["Closed"]);
    s.assert_served();
}

/// `stop()` flushes every channel's queued output before closing it.
#[test]
fn stop_flushes_every_channel() {
    let s = net::start(Config::default().max_queued_output(64 << 20));
    let (count, size) = (128u64, 128 * 1024); // 16 MiB each
    let mut peers: Vec<Peer> = (0..3).map(|_| Peer::greeted(s.addr)).collect();
    for p in &mut peers {
        p.send(&msg! { "action": "bulk", "count": count, "size": size });
        // The first message proves the handler ran; the rest waits in queues and buffers.
        let first = p.recv().unwrap();
        assert_eq!(first.message().u64("seq").unwrap(), 0);
    }
    let queued = net::query(&s.handle(), |_, ctx| {
        let ids: Vec<_> = ctx.channels().map(|(id, _)| id).collect();
        ids.iter().map(|id| ctx.queued_bytes(*id)).sum::<usize>()
    });
    assert!(queued > 0, "the test needs output still queued at the stop");
    let net::Probed {
        server,
        shared,
        addr,
        ..
    } = s;
    let stopper = std::thread::spawn(move || server.stop_and_join().map(drop));
    for p in &mut peers {
        let mut seq = 1;
        for f in p.expect_eof() {
            let m = Message::parse(&f).unwrap();
            assert_eq!(m.u64("seq").unwrap(), seq);
            seq += 1;
        }
        assert_eq!(seq, count, "every queued message arrived");
    }
    drop(peers);
    stopper.join().unwrap().unwrap();
    // The listener is gone with the server.
    assert!(TcpStream::connect(addr).is_err());
    let r = shared.lock();
    assert_eq!(r.disconnect_count(), 3);
    for ev in &r.events {
        if let net::Ev::Close(_, why) = ev {
            assert_eq!(*why, "ServerStopped");
        }
    }
}

/// Frames written in every chunking, one byte at a time included, are answered in order.
#[test]
fn order_is_kept_under_every_chunking() {
    let s = net::start(cfg());
    let mut writers = Vec::new();
    // (largest chunk, frames, largest padding)
    for (seed, (max_chunk, frames, max_pad)) in [
        (1, 60, 40),
        (7, 300, 600),
        (300, 300, 3000),
        (70_000, 100, 200_000),
    ]
    .into_iter()
    .enumerate()
    {
        let addr = s.addr;
        writers.push(std::thread::spawn(move || {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (seed as u64 + 1));
            let mut p = Peer::greeted(addr);
            let mut wire = Vec::new();
            let mut pads = Vec::new();
            for seq in 0..frames {
                let pad = rng.range(0, max_pad);
                pads.push(pad);
                let bytes = vec![1; pad];
                let m = msg! { "action": "echo", "seq": seq, "pad": repod::Bin(&bytes) };
                wire.extend(net::framed(&net::payload(&m)));
            }
            let mut w = p.stream.try_clone().unwrap();
            let writer = std::thread::spawn(move || {
                let mut rng = Rng(rng.0 ^ 0xdead_beef);
                let mut rest = &wire[..];
                let mut n = 0;
                while !rest.is_empty() {
                    let k = rng.range(1, max_chunk).min(rest.len());
                    w.write_all(&rest[..k]).unwrap();
                    rest = &rest[k..];
                    n += 1;
                    if n % 64 == 0 {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
            });
            for (seq, pad) in pads.iter().enumerate() {
                let r = p.recv().unwrap();
                let m = r.message();
                assert_eq!(m.u64("seq").unwrap(), seq as u64);
                assert_eq!(m.bin("pad").unwrap().len(), *pad);
            }
            writer.join().unwrap();
        }));
    }
    for w in writers {
        w.join().expect("a chunked writer failed");
    }
    assert!(s
        .lock()
        .events
        .iter()
        .all(|e| !matches!(e, net::Ev::Error(..))));
    s.assert_served();
}

/// A peer announces an oversize frame and then streams its "body" anyway, as fast as it can.
/// The server closes the connection at the prefix; the flood that follows must not take the
/// reactor away from the other clients.
#[test]
fn oversize_prefix_followed_by_a_body_flood() {
    let s = net::start(cfg().max_frame_len(1024));
    let bystander = Bystander::start(s.addr);
    let p = Peer::greeted(s.addr);
    let mut w = p.stream.try_clone().unwrap();
    let flooding = std::thread::spawn(move || {
        let junk = vec![0x42u8; 256 * 1024];
        let _ = w.write_all(&u32::MAX.to_be_bytes());
        let start = Instant::now();
        let mut sent = 0usize;
        while start.elapsed() < Duration::from_secs(4) {
            match w.write(&junk) {
                Ok(n) => sent += n,
                // The server gave up on us, once its linger time ran out.
                Err(e) => return (sent, Some((start.elapsed(), e.kind()))),
            }
        }
        (sent, None)
    });
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        net::assert_served(s.addr);
    }
    let (sent, ended) = flooding.join().unwrap();
    println!("the flood pushed {} MiB, ended: {ended:?}", sent >> 20);
    // The server discards what follows the bad prefix only until its linger time (1 s) is up.
    let (after, _) = ended.expect("the server never gave up on the flooding peer");
    assert!(after < Duration::from_secs(3), "flooded for {after:?}");
    drop(p.stream.shutdown(std::net::Shutdown::Both));
    bystander.finish();
    s.assert_served();
}

/// Random garbage frames (valid lengths, random payloads) from several peers at once: every
/// one is either handled or reported, and every connection keeps working.
#[test]
fn random_frames_from_many_peers() {
    let s = net::start(cfg());
    let bystander = Bystander::start(s.addr);
    let workers: Vec<_> = (0..6u64)
        .map(|k| {
            let addr = s.addr;
            std::thread::spawn(move || {
                let mut rng = Rng(0x1234_5678 + k * 7919);
                let mut p = Peer::greeted(addr);
                for round in 0..150u64 {
                    let len = rng.range(0, 64);
                    let mut payload: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
                    // Make some of them start like a map, to get past the first check.
                    if round % 2 == 0 && !payload.is_empty() {
                        payload[0] = 0x80 | (payload[0] & 0x0f);
                    }
                    p.send_payload(&payload);
                    if round % 10 == 0 {
                        p.echo(round);
                    }
                }
                // Replies to garbage that happened to be an echo may precede ours: skip them.
                p.send(&msg! { "action": "echo", "seq": 1_000_000 });
                loop {
                    let r = p.recv().unwrap();
                    if r.message().u64("seq").ok() == Some(1_000_000) {
                        break;
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a garbage sender failed");
    }
    // Nobody was disconnected by the server: the peers left by themselves.
    s.wait("every disconnect", |r| r.disconnect_count() == 6);
    let r = s.lock();
    for ev in &r.events {
        if let net::Ev::Disconnect(_, why) = ev {
            assert_eq!(*why, "PeerClosed");
        }
    }
    drop(r);
    bystander.finish();
    s.assert_served();
}

/// Slowloris: many peers that send part of a frame and then nothing. They cost the server a
/// few bytes each and do not slow anyone down; they are reported as closed by the peer, with
/// no error, when they leave.
#[test]
fn partial_frames_cost_little_and_end_cleanly() {
    let s = net::start(cfg());
    let mut peers = Vec::new();
    for i in 0..200u32 {
        let mut p = Peer::greeted(s.addr);
        match i % 4 {
            0 => p.send_raw(&[0]),
            1 => p.send_raw(&[0, 0, 0x10]),
            2 => p.send_raw(&(1u32 << 20).to_be_bytes()),
            _ => p.send_raw(&[0, 0, 0, 9, 0x81, 0xa1]),
        }
        peers.push(p);
    }
    s.assert_served();
    drop(peers);
    s.wait("every disconnect", |r| r.disconnect_count() == 201);
    let r = s.lock();
    assert!(r.events.iter().all(|e| !matches!(e, net::Ev::Error(..))));
    drop(r);
    s.assert_served();
}

/// Connections that come and go as fast as possible: each is reported once, open and closed.
#[test]
fn connect_storm() {
    let s = net::start(cfg());
    let n = 500;
    for i in 0..n {
        let st = TcpStream::connect(s.addr).unwrap();
        if i % 2 == 0 {
            let _ = st.shutdown(std::net::Shutdown::Both);
        }
    }
    s.wait("every disconnect", |r| {
        r.connect_count() == n && r.disconnect_count() == n
    });
    s.assert_served();
}
