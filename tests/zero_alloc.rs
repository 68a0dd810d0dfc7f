//! No heap allocation per message in the steady state: a server echoing (and broadcasting) to
//! many clients, and stepped and background clients doing echo round trips.
//!
//! Each test counts allocation *events* (not time or bytes) made by the test thread inside
//! measured regions only: the server's `step` calls, or a client's `send` and `pump` calls.
//! Everything else (the raw peers' reads and writes, building the test batches, the other side
//! of each connection, a background client's network thread) runs outside them. After a
//! warm-up that lets every buffer reach its working size, the count must be 0 over 1,000 and
//! over 10,000 messages.
//!
//! ## How allocations are counted
//!
//! The package forbids `unsafe` code in every target (`unsafe_code = "forbid"` in Cargo.toml),
//! and a `#[global_allocator]` needs an `unsafe impl GlobalAlloc`. So the counter lives outside
//! the Rust code: a tiny C shim, compiled with `cc` at test time and loaded with `LD_PRELOAD`
//! into a child run of this same test binary, wraps `malloc`, `calloc`, `realloc`,
//! `posix_memalign`, `aligned_alloc` and `memalign` (everything Rust's `System` allocator calls
//! on Linux) and counts the calls made by a thread while that thread has counting switched on.
//! The test switches counting on and off, and asks for the total, with requests of magic sizes
//! (`Vec::try_reserve_exact` of about 140 TB plus a command number), which the shim answers
//! with "out of memory" without allocating. Each test first checks that an allocation inside a
//! measured region *is* counted, so a shim that failed to load cannot pass for zero.
//!
//! Linux with glibc only; elsewhere the tests say so and pass.
//!
//! ## Finding an allocation
//!
//! `REPOD_ALLOC_TRACE=1 cargo test --test zero_alloc -- --nocapture` makes the shim print a
//! backtrace for every counted allocation (frames as `binary(+offset)`; resolve them with
//! `addr2line -Cfpe <binary> <offset>`).

mod common;

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{RawPeer, PATIENCE};
use repod::frame::{encode_frame, HEADER_LEN};
use repod::{
    msg, ChannelHandler, Client, ClientRoutes, Config, Encode, Listener, Message, Mode, Routes,
    Server, ServerHandler,
};

/// Set in the child process that runs a scenario with the shim loaded.
const CHILD: &str = "REPOD_ZERO_ALLOC_CHILD";
/// Where the shim writes its total when asked.
const COUNT_FILE: &str = "REPOD_ALLOC_COUNT_FILE";

/// The allocation counter, seen from the Rust side. Only meaningful in the child.
mod counter {
    use std::hint::black_box;

    /// No real allocation request is this large (about 140 TB); the shim treats
    /// `MAGIC + command` as a command.
    const MAGIC: usize = 0x7ff0_0000_0000;
    const ON: usize = 1;
    const OFF: usize = 2;
    const DUMP: usize = 3;

    fn command(cmd: usize) {
        let mut v: Vec<u8> = Vec::new();
        let r = v.try_reserve_exact(black_box(MAGIC + cmd));
        black_box(&mut v);
        assert!(r.is_err(), "a magic-size request succeeded");
    }

    /// Runs `f` with counting on for this thread.
    pub fn measured<R>(f: impl FnOnce() -> R) -> R {
        command(ON);
        let r = f();
        command(OFF);
        r
    }

    /// Allocations counted so far, process-wide. Call outside `measured`.
    pub fn total() -> u64 {
        command(DUMP);
        let path = std::env::var(super::COUNT_FILE).expect("count file");
        let text = std::fs::read_to_string(path).expect("the shim wrote no count");
        text.trim().parse().expect("a count")
    }

    /// Fails unless an allocation inside `measured` is counted.
    pub fn self_check() {
        let before = total();
        measured(|| black_box(Vec::<u8>::with_capacity(black_box(100))));
        let after = total();
        assert!(
            after > before,
            "the allocation counter is not counting (is the shim loaded?)"
        );
    }
}

const SHIM_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

#define MAGIC ((size_t)0x7ff000000000ULL)

static __thread int counting __attribute__((tls_model("initial-exec")));
static __thread int busy __attribute__((tls_model("initial-exec")));
static unsigned long long total;

static void dump(void) {
    const char *path = getenv("REPOD_ALLOC_COUNT_FILE");
    if (!path) return;
    char text[32];
    int n = snprintf(text, sizeof text, "%llu\n", __atomic_load_n(&total, __ATOMIC_SEQ_CST));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return;
    if (write(fd, text, n) != n) {}
    close(fd);
}

/* A request of size MAGIC + command is a command, answered with "out of memory". */
static int command(size_t size) {
    if (size <= MAGIC || size > MAGIC + 3) return 0;
    busy = 1;
    switch (size - MAGIC) {
    case 1: counting = 1; break;
    case 2: counting = 0; break;
    case 3: dump(); break;
    }
    busy = 0;
    return 1;
}

static void note(const char *what, size_t size) {
    if (!counting || busy) return;
    __atomic_fetch_add(&total, 1, __ATOMIC_SEQ_CST);
    if (getenv("REPOD_ALLOC_TRACE")) {
        busy = 1;
        char line[96];
        int n = snprintf(line, sizeof line, "== counted %s(%zu) at:\n", what, size);
        if (write(2, line, n) != n) {}
        void *frames[64];
        int depth = backtrace(frames, 64);
        backtrace_symbols_fd(frames, depth, 2);
        busy = 0;
    }
}

void *malloc(size_t size) {
    if (command(size)) { errno = ENOMEM; return NULL; }
    note("malloc", size);
    return __libc_malloc(size);
}

void *calloc(size_t n, size_t size) {
    note("calloc", n * size);
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t size) {
    note("realloc", size);
    return __libc_realloc(p, size);
}

int posix_memalign(void **out, size_t align, size_t size) {
    note("posix_memalign", size);
    void *p = __libc_memalign(align, size);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

void *aligned_alloc(size_t align, size_t size) {
    note("aligned_alloc", size);
    return __libc_memalign(align, size);
}

void *memalign(size_t align, size_t size) {
    note("memalign", size);
    return __libc_memalign(align, size);
}
"#;

/// Builds the shim once per test process; returns the path of the shared object.
fn shim() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let pid = std::process::id();
        let src = dir.join(format!("repod_alloc_count.{pid}.c"));
        let tmp = dir.join(format!("repod_alloc_count.{pid}.so"));
        let so = dir.join("repod_alloc_count.so");
        std::fs::write(&src, SHIM_C).expect("write the shim source");
        let out = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
            .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
            .arg(&tmp)
            .arg(&src)
            .output()
            .expect("run cc (needed to build the allocation counter)");
        assert!(
            out.status.success(),
            "cc failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_file(&src);
        // Atomic, so concurrent test processes never load a half-written file.
        std::fs::rename(&tmp, &so).expect("install the shim");
        so
    })
}

/// In the parent: runs test `name` again in a child process with the shim loaded, checks it
/// passed, and returns `true` (the caller returns). In the child: returns `false` (the caller
/// runs the scenario).
fn ran_in_child(name: &str) -> bool {
    if std::env::var_os(CHILD).is_some() {
        counter::self_check();
        return false;
    }
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        println!("{name}: skipped (the allocation counter needs Linux with glibc)");
        return true;
    }
    let count_file = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("repod_alloc_count.{}.{name}", std::process::id()));
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env(COUNT_FILE, &count_file)
        .env("LD_PRELOAD", shim())
        .output()
        .expect("run the child test");
    let _ = std::fs::remove_file(&count_file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(out.status.success(), "{name} failed in the child process");
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test named {name}"
    );
    true
}

/// Counts the allocations of the measured regions run by `f`.
fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = counter::total();
    f();
    counter::total() - before
}

fn deadline() -> Instant {
    Instant::now() + PATIENCE
}

// ---------------------------------------------------------------------------------------------
// The server

/// Messages the server's handlers processed.
#[derive(Debug, Default)]
struct Processed(u64);

/// The echo server of `examples/echo_server.rs`, counting what it handles.
#[derive(Debug, Default)]
struct Echo;

impl ChannelHandler for Echo {
    type Server = Processed;

    fn routes(r: &mut Routes<Self>) {
        r.on("echo", |_, ctx, m| {
            ctx.send(&m.with_action("echo_reply"));
            ctx.server().0 += 1;
            Ok(())
        });
        r.on("broadcast", |_, ctx, m| {
            ctx.send_to_all(&m.with_action("broadcast_reply"));
            ctx.server().0 += 1;
            Ok(())
        });
    }
}

impl ServerHandler<Echo> for Processed {}

const CLIENTS: usize = 50;
/// Echo requests per client per round.
const PER_ROUND: usize = 20;

/// A raw client and the bytes it sends each round.
struct Peer {
    stream: TcpStream,
    batch: Vec<u8>,
    /// Where the batch is cut in two writes: inside a frame, so the server sees a frame split
    /// across reads.
    split: usize,
    /// Complete frames before `split`.
    frames_before_split: u64,
    frames: u64,
    /// Whether the batch ends with a `broadcast`.
    broadcasts: bool,
    buf: Vec<u8>,
}

impl Peer {
    fn new(server: &mut Server<Echo>, index: usize) -> Self {
        let addr = server.local_addr();
        let stream = TcpStream::connect(addr).expect("connect");
        let until = deadline();
        while server.channel_count() <= index {
            assert!(Instant::now() < until, "no accept");
            server.step(Some(Duration::from_millis(10))).unwrap();
        }
        let mut raw = RawPeer { stream };
        raw.stream.set_nodelay(true).unwrap();
        raw.stream.set_read_timeout(Some(PATIENCE)).unwrap();
        assert_eq!(raw.recv().action(), "connected");

        let mut batch = Vec::new();
        let mut ends = Vec::new();
        let mut payload = Vec::new();
        let name = format!("player{index}");
        for seq in 0..PER_ROUND {
            payload.clear();
            // Sizes vary from message to message, and from client to client.
            let trail: Vec<(f32, f32)> = (0..(seq + index) % 7).map(|i| (i as f32, 0.5)).collect();
            msg! {
                "action": "echo",
                "seq": seq as u64,
                "name": name.as_str(),
                "pos": (index as f32 * 1.5, seq as f32 * -0.25),
                "trail": &trail[..],
            }
            .encode(&mut payload);
            encode_frame(&mut batch, &payload).unwrap();
            ends.push(batch.len());
        }
        let broadcasts = index == 0;
        if broadcasts {
            payload.clear();
            msg! { "action": "broadcast", "text": "hello everyone", "from": name.as_str() }
                .encode(&mut payload);
            encode_frame(&mut batch, &payload).unwrap();
            ends.push(batch.len());
        }
        // Cut 3 bytes into the frame after the middle one (inside its header or payload,
        // depending on the client).
        let middle = ends[ends.len() / 2 - 1];
        let split = middle + 1 + index % 5;
        let frames_before_split = ends.iter().filter(|&&e| e <= split).count() as u64;
        Peer {
            stream: raw.stream,
            split,
            frames_before_split,
            frames: ends.len() as u64,
            broadcasts,
            batch,
            buf: Vec::new(),
        }
    }

    /// Reads this round's replies: an `echo_reply` per request, and the round's broadcast.
    fn read_replies(&mut self) {
        let (mut echoes, mut broadcasts) = (0, 0);
        while echoes < PER_ROUND || broadcasts < 1 {
            let mut header = [0u8; HEADER_LEN];
            self.stream.read_exact(&mut header).expect("a reply");
            self.buf.resize(u32::from_be_bytes(header) as usize, 0);
            self.stream.read_exact(&mut self.buf).expect("a reply");
            let m = Message::parse(&self.buf).expect("a valid reply");
            match m.action() {
                "echo_reply" => {
                    assert_eq!(m.u64("seq").unwrap(), echoes as u64, "in order");
                    echoes += 1;
                }
                "broadcast_reply" => broadcasts += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!((echoes, broadcasts), (PER_ROUND, 1));
    }
}

/// Steps the server, measured, until its handlers have processed `target` messages in all.
fn step_until(server: &mut Server<Echo>, target: u64) {
    let until = deadline();
    counter::measured(|| {
        while server.state().0 < target {
            if Instant::now() > until {
                break;
            }
            server.step(Some(Duration::from_millis(10))).unwrap();
        }
    });
    assert_eq!(server.state().0, target, "the server is stuck");
}

/// One round: every client sends its batch in two writes (split inside a frame), the server
/// handles each half, then every client reads its replies.
fn round(server: &mut Server<Echo>, peers: &mut [Peer]) {
    let start = server.state().0;
    for p in peers.iter_mut() {
        p.stream.write_all(&p.batch[..p.split]).unwrap();
    }
    let first: u64 = peers.iter().map(|p| p.frames_before_split).sum();
    step_until(server, start + first);
    for p in peers.iter_mut() {
        p.stream.write_all(&p.batch[p.split..]).unwrap();
    }
    let all: u64 = peers.iter().map(|p| p.frames).sum();
    step_until(server, start + all);
    for p in peers.iter_mut() {
        p.read_replies();
    }
}

#[test]
fn server_echo_to_many_clients_allocates_nothing() {
    if ran_in_child("server_echo_to_many_clients_allocates_nothing") {
        return;
    }
    let mut server = Server::<Echo>::bind("127.0.0.1:0", Processed(0)).expect("bind");
    let mut peers: Vec<Peer> = (0..CLIENTS).map(|i| Peer::new(&mut server, i)).collect();
    assert_eq!(peers.iter().filter(|p| p.broadcasts).count(), 1);

    // Warm-up: 1,000 echoes per client.
    let warm_up = allocations_during(|| {
        for _ in 0..1000 / PER_ROUND {
            round(&mut server, &mut peers);
        }
    });
    let echoes = |rounds: usize| rounds * CLIENTS * PER_ROUND;
    let one = allocations_during(|| round(&mut server, &mut peers));
    let ten = allocations_during(|| {
        for _ in 0..10 {
            round(&mut server, &mut peers);
        }
    });
    println!(
        "server: {warm_up} allocations during warm-up ({} echoes), {one} over the next {} \
         echoes, {ten} over the next {}",
        echoes(1000 / PER_ROUND),
        echoes(1),
        echoes(10)
    );
    assert_eq!(server.channel_count(), CLIENTS);
    assert_eq!(
        (one, ten),
        (0, 0),
        "the server allocated in the steady state (run with REPOD_ALLOC_TRACE=1 to see where)"
    );
}

// ---------------------------------------------------------------------------------------------
// Clients

/// A client that counts the replies to its echoes.
#[derive(Debug, Default)]
struct Pinger {
    connected: bool,
    replies: u64,
}

impl Listener for Pinger {
    fn routes(r: &mut ClientRoutes<Self>) {
        r.on("connected", |me, _net, _m| {
            me.connected = true;
            Ok(())
        });
        r.on("echo_reply", |me, _net, m| {
            black_box(m.str("name")?);
            // In order, once each.
            if m.u64("seq")? == me.replies {
                me.replies += 1;
            }
            Ok(())
        });
    }
}

/// `n` echo round trips; only the client's `send` and `pump` calls are measured. The server
/// runs on this thread too, unmeasured.
fn round_trips(server: &mut Server<Echo>, client: &mut Client<Pinger>, n: u64) {
    let trail = [(1.5f32, 2.5f32), (3.5, 4.5), (5.5, 6.5)];
    for _ in 0..n {
        let seq = client.listener().replies;
        let handled = server.state().0;
        let sent = counter::measured(|| {
            client.send(&msg! {
                "action": "echo",
                "seq": seq,
                "name": "player",
                "trail": &trail[..(seq % 4) as usize],
            })
        });
        assert!(sent > 0);
        let until = deadline();
        while server.state().0 == handled {
            assert!(Instant::now() < until, "the server got nothing");
            server.step(Some(Duration::from_millis(10))).unwrap();
        }
        counter::measured(|| {
            while client.listener().replies == seq && Instant::now() < until {
                client.pump_timeout(Duration::from_millis(10));
            }
        });
        assert_eq!(client.listener().replies, seq + 1, "no reply");
    }
}

fn client_round_trips_allocate_nothing(mode: Mode) {
    let mut server = Server::<Echo>::bind("127.0.0.1:0", Processed(0)).expect("bind");
    let mut client = Client::connect_with(
        server.local_addr(),
        Pinger::default(),
        mode,
        Config::default(),
    )
    .expect("client");
    let until = deadline();
    while !client.listener().connected {
        assert!(Instant::now() < until, "no greeting");
        server.step(Some(Duration::from_millis(1))).unwrap();
        client.pump_timeout(Duration::from_millis(1));
    }

    let warm_up = allocations_during(|| round_trips(&mut server, &mut client, 1000));
    let one = allocations_during(|| round_trips(&mut server, &mut client, 1000));
    let ten = allocations_during(|| round_trips(&mut server, &mut client, 10_000));
    println!(
        "{mode:?} client: {warm_up} allocations during 1,000 warm-up round trips, {one} over the \
         next 1,000, {ten} over the next 10,000"
    );
    assert!(client.is_connected());
    assert_eq!(
        (one, ten),
        (0, 0),
        "the {mode:?} client allocated in the steady state (run with REPOD_ALLOC_TRACE=1 to see \
         where)"
    );
}

#[test]
fn stepped_client_round_trips_allocate_nothing() {
    if ran_in_child("stepped_client_round_trips_allocate_nothing") {
        return;
    }
    client_round_trips_allocate_nothing(Mode::Stepped);
}

/// Background mode: the game thread's `send` and `pump` (the network thread is not counted).
#[test]
fn background_client_round_trips_allocate_nothing_on_the_game_thread() {
    if ran_in_child("background_client_round_trips_allocate_nothing_on_the_game_thread") {
        return;
    }
    client_round_trips_allocate_nothing(Mode::Background);
}
