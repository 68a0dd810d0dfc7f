//! Action routing cost with 1, 10 and 100 registered actions.
//!
//! - `routing/end_to_end/{1,10,100}`: a real [`Server`] stepped on the bench thread; a raw std
//!   `TcpStream` client writes a batch of 100 small messages (untimed), then the timed part steps
//!   the server with a zero timeout until every message reached its handler. This is the whole
//!   path of a message: epoll, `read`, framing, `Message::parse`, route lookup, handler call.
//!   The batch cycles through every registered action, so every route is hit.
//! - `routing/step_idle`: one `step(Some(ZERO))` with nothing to do, the fixed syscall cost of
//!   a turn (for reading the numbers above).
//! - `routing/model/{1,10,100}`: no I/O. The route table is private to the server, so this is a
//!   replica of it (an `FxHashMap<Box<str>, Box<dyn Fn>>` as in `src/dispatch.rs`): parse each
//!   message and call its handler through the table.
//! - `routing/model_lookup_only/{1,10,100}`: the same on messages parsed beforehand: the lookup
//!   (hashing the action in place) and the call alone.
//!
//! Throughput is in messages.
//!
//! Run: `cargo bench --bench routing -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use repod::frame::encode_frame;
use repod::{
    msg, ChannelHandler, Encode, Error, HandlerResult, Message, Routes, Server, ServerHandler,
};
use rustc_hash::FxHashMap;

/// Messages per timed batch.
const BATCH: usize = 100;

/// Action names of varied length and shared prefixes, as a game's would be.
fn action_names(n: usize) -> Vec<String> {
    const STEMS: [&str; 10] = [
        "move",
        "chat",
        "shoot",
        "player_joined",
        "inventory_update",
        "ping",
        "ready",
        "select_team",
        "use_item",
        "vote_kick",
    ];
    (0..n)
        .map(|i| {
            if i < STEMS.len() {
                STEMS[i].to_owned()
            } else {
                format!("{}_{}", STEMS[i % STEMS.len()], i / STEMS.len())
            }
        })
        .collect()
}

/// Server state: how many messages reached a route.
#[derive(Debug, Default)]
struct Count(u64);

/// A channel type with `N` routes, each counting its messages.
#[derive(Debug, Default)]
struct Routed<const N: usize>;

impl<const N: usize> ChannelHandler for Routed<N> {
    type Server = Count;

    fn routes(r: &mut Routes<Self>) {
        for name in action_names(N) {
            r.on(&name, |_me, ctx, m| {
                black_box(m);
                ctx.server().0 += 1;
                Ok(())
            });
        }
    }
}

impl<const N: usize> ServerHandler<Routed<N>> for Count {}

/// `BATCH` framed messages cycling through the first `n` action names.
fn batch(n: usize) -> Vec<u8> {
    let names = action_names(n);
    let mut wire = Vec::new();
    let mut payload = Vec::new();
    for i in 0..BATCH {
        payload.clear();
        msg! { "action": names[i % n].as_str(), "seq": i as u32, "x": 1.5, "y": -2.5 }
            .encode(&mut payload);
        encode_frame(&mut wire, &payload).unwrap();
    }
    wire
}

struct Rig<const N: usize> {
    server: Server<Routed<N>>,
    peer: TcpStream,
    wire: Vec<u8>,
}

impl<const N: usize> Rig<N> {
    fn new() -> Self {
        let mut server = Server::<Routed<N>>::bind("127.0.0.1:0", Count(0)).expect("bind");
        let mut peer = TcpStream::connect(server.local_addr()).expect("connect");
        peer.set_nodelay(true).unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.channel_count() == 0 {
            assert!(Instant::now() < deadline, "no accept");
            server.step(Some(Duration::from_millis(10))).unwrap();
        }
        // The greeting.
        let mut header = [0u8; 4];
        peer.read_exact(&mut header).unwrap();
        let mut greeting = vec![0u8; u32::from_be_bytes(header) as usize];
        peer.read_exact(&mut greeting).unwrap();
        assert_eq!(Message::parse(&greeting).unwrap().action(), "connected");
        Rig {
            server,
            peer,
            wire: batch(N),
        }
    }

    /// Writes one batch (untimed), then times the steps that route all of it.
    fn timed_batch(&mut self) -> Duration {
        let target = self.server.state().0 + BATCH as u64;
        self.peer.write_all(&self.wire).unwrap();
        let start = Instant::now();
        while self.server.state().0 < target {
            self.server.step(Some(Duration::ZERO)).unwrap();
        }
        start.elapsed()
    }
}

fn end_to_end<const N: usize>(c: &mut Criterion) {
    let mut rig = Rig::<N>::new();
    rig.timed_batch();
    let mut group = c.benchmark_group("routing/end_to_end");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(BenchmarkId::from_parameter(N), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| rig.timed_batch()).sum());
    });
    group.finish();
}

fn step_idle(c: &mut Criterion) {
    let mut rig = Rig::<1>::new();
    c.bench_function("routing/step_idle", |b| {
        b.iter(|| rig.server.step(Some(Duration::ZERO)).unwrap());
    });
}

type ModelRoute = Box<dyn Fn(&mut u64, &Message<'_>) -> HandlerResult + Send + Sync>;

/// The payloads of `batch(n)`, without their length prefixes.
fn payloads(n: usize) -> Vec<Vec<u8>> {
    let wire = batch(n);
    let mut rest = &wire[..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        out.push(rest[4..4 + len].to_vec());
        rest = &rest[4 + len..];
    }
    out
}

fn model<const N: usize>(c: &mut Criterion) {
    let mut table: FxHashMap<Box<str>, ModelRoute> = FxHashMap::default();
    for name in action_names(N) {
        table.insert(
            name.into(),
            Box::new(|count: &mut u64, m: &Message<'_>| {
                black_box(m);
                *count += 1;
                Ok::<(), Error>(())
            }),
        );
    }
    let payloads = payloads(N);
    let mut count = 0u64;
    let mut group = c.benchmark_group("routing/model");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(BenchmarkId::from_parameter(N), |b| {
        b.iter(|| {
            for p in &payloads {
                let m = Message::parse(black_box(p)).unwrap();
                match table.get(m.action()) {
                    Some(route) => route(&mut count, &m).unwrap(),
                    None => unreachable!(),
                }
            }
        });
    });
    group.finish();

    // The lookup and call alone, on messages parsed beforehand.
    let parsed: Vec<Message<'_>> = payloads
        .iter()
        .map(|p| Message::parse(p).unwrap())
        .collect();
    let mut group = c.benchmark_group("routing/model_lookup_only");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(BenchmarkId::from_parameter(N), |b| {
        b.iter(|| {
            for m in black_box(&parsed) {
                match table.get(m.action()) {
                    Some(route) => route(&mut count, m).unwrap(),
                    None => unreachable!(),
                }
            }
        });
    });
    group.finish();
    assert!(count > 0);
}

fn bench_routing(c: &mut Criterion) {
    end_to_end::<1>(c);
    end_to_end::<10>(c);
    end_to_end::<100>(c);
    step_idle(c);
    model::<1>(c);
    model::<10>(c);
    model::<100>(c);
}

criterion_group!(benches, bench_routing);
criterion_main!(benches);
