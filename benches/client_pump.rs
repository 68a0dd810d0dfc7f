//! `Client::pump` cost, in both modes.
//!
//! The server is a raw std `TcpListener`/`TcpStream` on the bench thread, so that nothing but
//! the client runs repod code and the server's writes are plain `write_all`s.
//!
//! - `client_pump/idle/{stepped,background}`: a connected client with nothing to do. Stepped:
//!   one `epoll_wait` with a zero timeout. Background: a lock and a buffer swap.
//! - `client_pump/dispatch_100/{stepped,background}`: the server wrote 100 small frames
//!   (untimed); the timed part pumps until all 100 reached the listener's handler. Stepped, that
//!   is epoll, `read`, framing, parsing and dispatch; background, the network thread already
//!   read and validated them, and the pump only dispatches. Only pumps that dispatched
//!   something are timed (in background mode the bench thread pumps, untimed, until the network
//!   thread has queued the batch); the bench prints how many dispatching pumps a batch took
//!   (1: the whole batch was dispatched by one pump).
//!
//! Run: `cargo bench --bench client_pump -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use repod::frame::encode_frame;
use repod::{msg, Client, ClientRoutes, Config, Encode, Listener, Mode};

/// Messages per dispatch batch.
const BATCH: usize = 100;

#[derive(Debug, Default)]
struct Game {
    connected: bool,
    updates: u64,
}

impl Listener for Game {
    fn routes(r: &mut ClientRoutes<Self>) {
        r.on("connected", |me, _net, _m| {
            me.connected = true;
            Ok(())
        });
        r.on("update", |me, _net, m| {
            black_box(m.u64("seq")?);
            me.updates += 1;
            Ok(())
        });
    }
}

struct Rig {
    client: Client<Game>,
    /// The server's end of the connection.
    server: TcpStream,
    batch: Vec<u8>,
    pumps: u64,
    batches: u64,
}

fn frame(m: &impl Encode) -> Vec<u8> {
    let mut payload = Vec::new();
    m.encode(&mut payload);
    let mut out = Vec::new();
    encode_frame(&mut out, &payload).unwrap();
    out
}

impl Rig {
    fn new(mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client =
            Client::connect_with(addr, Game::default(), mode, Config::default()).expect("client");
        let (mut server, _) = listener.accept().unwrap();
        server.set_nodelay(true).unwrap();
        server
            .write_all(&frame(&msg! { "action": "connected" }))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !client.listener().connected {
            assert!(Instant::now() < deadline, "no greeting");
            client.pump_timeout(Duration::from_millis(10));
        }
        let mut batch = Vec::new();
        for i in 0..BATCH {
            batch.extend(frame(
                &msg! { "action": "update", "seq": i as u64, "x": 1.5, "y": -2.5, "hp": 90 },
            ));
        }
        Rig {
            client,
            server,
            batch,
            pumps: 0,
            batches: 0,
        }
    }

    /// Writes one batch (untimed) and times the pumps that dispatch it. Pumps that find
    /// nothing yet (in background mode, the network thread has not queued the batch) are not
    /// timed: they are the wait, not the dispatch.
    fn timed_batch(&mut self) -> Duration {
        let target = self.client.listener().updates + BATCH as u64;
        self.server.write_all(&self.batch).unwrap();
        let mut elapsed = Duration::ZERO;
        while self.client.listener().updates < target {
            let start = Instant::now();
            let n = self.client.pump();
            let t = start.elapsed();
            if n > 0 {
                elapsed += t;
                self.pumps += 1;
            } else {
                std::thread::yield_now();
            }
        }
        self.batches += 1;
        elapsed
    }
}

fn bench_pump(c: &mut Criterion) {
    let mut group = c.benchmark_group("client_pump/idle");
    for (label, mode) in [("stepped", Mode::Stepped), ("background", Mode::Background)] {
        let mut rig = Rig::new(mode);
        group.bench_function(label, |b| b.iter(|| rig.client.pump()));
        assert!(rig.client.is_connected());
    }
    group.finish();

    let mut group = c.benchmark_group("client_pump/dispatch_100");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (label, mode) in [("stepped", Mode::Stepped), ("background", Mode::Background)] {
        let mut rig = Rig::new(mode);
        rig.timed_batch();
        group.bench_function(label, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| rig.timed_batch()).sum());
        });
        eprintln!(
            "client_pump/dispatch_100/{label}: {:.3} dispatching pumps per batch of {BATCH}",
            rig.pumps as f64 / rig.batches as f64
        );
        // Nothing else arrived on the way.
        rig.server.set_nonblocking(true).unwrap();
        assert!(
            matches!(rig.server.read(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        );
    }
    group.finish();
}

criterion_group!(benches, bench_pump);
criterion_main!(benches);
