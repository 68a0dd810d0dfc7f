//! `send_to_all` of one 200-byte message to 1,000 channels.
//!
//! A [`Server`] stepped on the bench thread, with 1,000 raw std `TcpStream` clients connected
//! over loopback. Throughput is in channels, so criterion's `elem/s` is channels per second and
//! the time divided by 1,000 is the cost per channel.
//!
//! - `broadcast/1000_channels/queue`: `server.with_ctx(|_, ctx| ctx.send_to_all(&msg))` alone:
//!   encoding once, copying the frame into each output buffer (no syscalls). The flush runs
//!   untimed.
//! - `broadcast/1000_channels/queue_and_flush`: the same followed by
//!   `server.step(Some(Duration::ZERO))`, which writes every output buffer: 1,000 `write`s.
//!
//! Between iterations (untimed), the clients' sockets are drained with non-blocking reads so
//! no buffer fills.
//!
//! Run: `cargo bench --bench broadcast -- --warm-up-time 1 --measurement-time 3`

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use repod::frame::HEADER_LEN;
use repod::{msg, Bin, ChannelHandler, Encode, Server};

const CHANNELS: usize = 1000;
/// Payload size of the broadcast message.
const MESSAGE_LEN: usize = 200;
/// Broadcasts between two drains of the client sockets.
const DRAIN_EVERY: u64 = 32;

/// A channel with no routes: the clients never send anything.
#[derive(Debug, Default)]
struct Quiet;

impl ChannelHandler for Quiet {
    type Server = ();
}

struct Rig {
    server: Server<Quiet>,
    clients: Vec<TcpStream>,
    scratch: Vec<u8>,
}

impl Rig {
    fn new() -> Self {
        let mut server = Server::<Quiet>::bind("127.0.0.1:0", ()).expect("bind");
        let addr = server.local_addr();
        let mut clients = Vec::with_capacity(CHANNELS);
        let deadline = Instant::now() + Duration::from_secs(60);
        // Connect in batches, well under the listen backlog, accepting in between.
        while clients.len() < CHANNELS {
            let n = (CHANNELS - clients.len()).min(100);
            for _ in 0..n {
                clients.push(TcpStream::connect(addr).expect("connect"));
            }
            while server.channel_count() < clients.len() {
                assert!(Instant::now() < deadline, "accepts are too slow");
                server.step(Some(Duration::from_millis(10))).unwrap();
            }
        }
        for c in &clients {
            c.set_nonblocking(true).unwrap();
        }
        let mut rig = Rig {
            server,
            clients,
            scratch: vec![0; 64 * 1024],
        };
        // The greetings.
        let greeting = frame_len(&msg! { "action": "connected" });
        assert_eq!(rig.drain(), CHANNELS * greeting);
        rig
    }

    /// Reads everything the clients have received; returns the byte count.
    fn drain(&mut self) -> usize {
        let mut total = 0;
        for c in &mut self.clients {
            loop {
                match c.read(&mut self.scratch) {
                    Ok(0) => panic!("the server closed a client"),
                    Ok(n) => total += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => panic!("client read: {e}"),
                }
            }
        }
        total
    }

    fn flush(&mut self) {
        self.server.step(Some(Duration::ZERO)).unwrap();
    }
}

fn frame_len(m: &impl Encode) -> usize {
    let mut payload = Vec::new();
    m.encode(&mut payload);
    HEADER_LEN + payload.len()
}

fn bench_broadcast(c: &mut Criterion) {
    let mut rig = Rig::new();

    // A 200-byte message: an action, a tick, and a blob padding it to size.
    let base = frame_len(&msg! { "action": "state", "tick": 1000u32, "blob": Bin(&[]) });
    let blob = vec![7u8; MESSAGE_LEN + HEADER_LEN - base]; // bin8: a 2-byte header up to 255
    let message = msg! { "action": "state", "tick": 1000u32, "blob": Bin(&blob) };
    let framed = frame_len(&message);
    assert_eq!(framed, MESSAGE_LEN + HEADER_LEN);

    // Check the setup once: every channel receives the message.
    let sent = rig.server.with_ctx(|_, ctx| ctx.send_to_all(&message));
    assert_eq!(sent, CHANNELS);
    rig.flush();
    assert_eq!(rig.drain(), CHANNELS * framed);

    let mut group = c.benchmark_group("broadcast/1000_channels");
    group.throughput(Throughput::Elements(CHANNELS as u64));
    group.bench_function("queue", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for i in 0..iters {
                let start = Instant::now();
                let n = rig.server.with_ctx(|_, ctx| ctx.send_to_all(&message));
                elapsed += start.elapsed();
                debug_assert_eq!(n, CHANNELS);
                rig.flush();
                if i % DRAIN_EVERY == DRAIN_EVERY - 1 {
                    rig.drain();
                }
            }
            rig.drain();
            elapsed
        });
    });
    group.bench_function("queue_and_flush", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for i in 0..iters {
                let start = Instant::now();
                rig.server.with_ctx(|_, ctx| ctx.send_to_all(&message));
                rig.flush();
                elapsed += start.elapsed();
                if i % DRAIN_EVERY == DRAIN_EVERY - 1 {
                    rig.drain();
                }
            }
            rig.drain();
            elapsed
        });
    });
    group.finish();

    // Nothing was lost or refused on the way.
    assert_eq!(rig.server.channel_count(), CHANNELS);
    rig.server.with_ctx(|_, ctx| ctx.send_to_all(&message));
    rig.flush();
    assert_eq!(rig.drain(), CHANNELS * framed);
}

criterion_group!(benches, bench_broadcast);
criterion_main!(benches);
