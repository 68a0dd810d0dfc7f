//! No heap allocation per message in the steady state: a server echoing (and broadcasting) to
//! many clients, over TCP and over WebSocket, and stepped and background clients doing echo
//! round trips on both transports. With the `serde` feature, a typed echo too: borrowed fields
//! decoded with `Message::decode` and sent with `Typed`, server and client measured.
//!
//! A counting global allocator (the reason this is its own test binary) counts allocation
//! *events* (not time or bytes) made by one thread inside measured regions only: the server's
//! `step` calls, or a client's `send` and `pump` calls. Everything else (the raw peers' reads and
//! writes, building the test batches, the other side of each connection, a background client's
//! network thread, the other tests running in parallel) is not counted: the switch and the count
//! are per thread. After a warm-up that lets every buffer reach its working size, the count must
//! be 0 over 1,000 and over 10,000 messages. Each test first checks that an allocation inside a
//! measured region *is* counted.
//!
//! ## Finding an allocation
//!
//! `REPOD_ALLOC_TRACE=1 cargo test --test zero_alloc -- --nocapture --test-threads=1` prints a
//! backtrace for every counted allocation (warm-up included).

// The counting allocator is the one place that needs `unsafe`: the library forbids it.
#![allow(unsafe_code)]

mod common;

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{RawPeer, PATIENCE};
use repod::frame::{encode_frame, HEADER_LEN};
use repod::ws::handshake::{client_key, parse_response, write_request};
use repod::ws::{MaskKeys, Opcode, WsUrl};
use repod::{
    msg, ChannelHandler, Client, ClientRoutes, Config, Encode, Listener, Message, Mode, Routes,
    Server, ServerHandler,
};

/// The allocation counter.
mod counter {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::backtrace::Backtrace;
    use std::cell::Cell;
    use std::hint::black_box;
    use std::sync::atomic::{AtomicU8, Ordering};

    thread_local! {
        /// Counting is on for this thread.
        static ON: Cell<bool> = const { Cell::new(false) };
        /// Allocations counted on this thread.
        static COUNT: Cell<u64> = const { Cell::new(0) };
        /// Inside the tracing hook: its own allocations are not counted.
        static BUSY: Cell<bool> = const { Cell::new(false) };
    }

    /// `REPOD_ALLOC_TRACE`: 0 unknown yet, 1 off, 2 on. Read outside the allocator.
    static TRACE: AtomicU8 = AtomicU8::new(0);

    /// `System`, counting the calls made by a thread while its counting is on.
    pub struct Counting;

    impl Counting {
        fn note(&self, size: usize) {
            let counting = ON.try_with(Cell::get).unwrap_or(false)
                && !BUSY.try_with(Cell::get).unwrap_or(true);
            if !counting {
                return;
            }
            COUNT.with(|c| c.set(c.get() + 1));
            if TRACE.load(Ordering::Relaxed) == 2 {
                BUSY.with(|b| b.set(true));
                eprintln!(
                    "== allocation of {size} bytes in a measured region:\n{}",
                    Backtrace::force_capture()
                );
                BUSY.with(|b| b.set(false));
            }
        }
    }

    // SAFETY: every call is forwarded to `System` unchanged; counting only touches
    // thread-locals with const initializers and no destructors, which never allocate.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            self.note(layout.size());
            // SAFETY: the caller's contract is passed on as is.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            self.note(layout.size());
            // SAFETY: as above.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            self.note(new_size);
            // SAFETY: as above.
            unsafe { System.realloc(ptr, layout, new_size) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: as above.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    /// Runs `f` with counting on for this thread.
    pub fn measured<R>(f: impl FnOnce() -> R) -> R {
        if TRACE.load(Ordering::Relaxed) == 0 {
            let on = std::env::var_os("REPOD_ALLOC_TRACE").is_some_and(|v| v != "0");
            TRACE.store(if on { 2 } else { 1 }, Ordering::Relaxed);
        }
        ON.with(|on| on.set(true));
        let r = f();
        ON.with(|on| on.set(false));
        r
    }

    /// Allocations counted so far on this thread.
    pub fn total() -> u64 {
        COUNT.with(Cell::get)
    }

    /// Fails unless an allocation inside `measured` is counted.
    pub fn self_check() {
        let before = total();
        measured(|| black_box(Vec::<u8>::with_capacity(black_box(100))));
        assert_eq!(
            total(),
            before + 1,
            "the allocation counter is not counting"
        );
    }
}

#[global_allocator]
static ALLOCATOR: counter::Counting = counter::Counting;

/// Counts the allocations of the measured regions run by `f`.
fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = counter::total();
    f();
    counter::total() - before
}

fn deadline() -> Instant {
    Instant::now() + PATIENCE
}

/// A client of `server` at `addr`, stepped with the server until `connected` says it has its
/// greeting.
fn connect<C: ChannelHandler, L: Listener>(
    server: &mut Server<C>,
    addr: &str,
    listener: L,
    mode: Mode,
    connected: fn(&L) -> bool,
) -> Client<L> {
    let mut client = Client::connect_with(addr, listener, mode, Config::default()).expect("client");
    let until = deadline();
    while !connected(client.listener()) {
        assert!(Instant::now() < until, "no greeting");
        server.step(Some(Duration::from_millis(1))).unwrap();
        client.pump_timeout(Duration::from_millis(1));
    }
    client
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
        // Latest-wins, to one and to all: the replaced-message bookkeeping allocates nothing.
        r.on("latest", |_, ctx, m| {
            ctx.send_latest(&m.with_action("latest_reply"));
            ctx.send_to_all_latest(&m.with_action("latest_all"));
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
    /// A WebSocket client (its replies are WebSocket frames).
    ws: bool,
}

impl Peer {
    fn new(server: &mut Server<Echo>, index: usize, websocket: bool) -> Self {
        let addr = match websocket {
            true => server.ws_addr().expect("a WebSocket listener"),
            false => server.local_addr(),
        };
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut raw = RawPeer { stream };
        let mut keys = MaskKeys::new(index as u64 + 1);
        if websocket {
            let url = WsUrl::parse(&format!("ws://{addr}/")).unwrap().unwrap();
            let key = client_key();
            let mut req = Vec::new();
            write_request(&mut req, &url, &key);
            raw.stream.write_all(&req).unwrap();
            step_until_connected(server, index);
            // The 101, read a byte at a time so the greeting behind it stays in the socket.
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut b = [0u8; 1];
                raw.stream.read_exact(&mut b).expect("the 101");
                head.push(b[0]);
            }
            assert_eq!(parse_response(&head, &key, 4096), Ok(Some(head.len())));
            let mut buf = Vec::new();
            read_payload(&mut raw.stream, true, &mut buf);
            assert_eq!(Message::parse(&buf).unwrap().action(), "connected");
        } else {
            step_until_connected(server, index);
            assert_eq!(raw.recv().action(), "connected");
        }

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
            frame_for(&mut batch, &payload, websocket.then_some(&mut keys));
            ends.push(batch.len());
        }
        let broadcasts = index == 0;
        if broadcasts {
            payload.clear();
            msg! { "action": "broadcast", "text": "hello everyone", "from": name.as_str() }
                .encode(&mut payload);
            frame_for(&mut batch, &payload, websocket.then_some(&mut keys));
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
            ws: websocket,
        }
    }

    /// Reads this round's replies: an `echo_reply` per request, and the round's broadcast.
    fn read_replies(&mut self) {
        let (mut echoes, mut broadcasts) = (0, 0);
        while echoes < PER_ROUND || broadcasts < 1 {
            read_payload(&mut self.stream, self.ws, &mut self.buf);
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

/// Steps the server (unmeasured) until it has `index + 1` channels.
fn step_until_connected(server: &mut Server<Echo>, index: usize) {
    let until = deadline();
    while server.channel_count() <= index {
        assert!(Instant::now() < until, "no accept");
        server.step(Some(Duration::from_millis(10))).unwrap();
    }
}

/// Appends `payload` as a length-prefixed frame, or as a WebSocket binary frame masked with
/// the next of `keys`.
fn frame_for(out: &mut Vec<u8>, payload: &[u8], keys: Option<&mut MaskKeys>) {
    match keys {
        Some(keys) => {
            repod::ws::encode_frame(out, Opcode::Binary, true, payload, Some(keys.next_key()))
        }
        None => encode_frame(out, payload).unwrap(),
    }
}

/// Reads one message's payload into `buf`: a length-prefixed frame, or (`ws`) a server's
/// WebSocket frame, parsed here by hand rather than by the crate's decoder.
fn read_payload(stream: &mut TcpStream, ws: bool, buf: &mut Vec<u8>) {
    let len = if ws {
        let mut h = [0u8; 2];
        stream.read_exact(&mut h).expect("a reply");
        assert_eq!(
            (h[0], h[1] & 0x80),
            (0x82, 0),
            "an unmasked, final, binary frame"
        );
        match h[1] {
            126 => {
                let mut l = [0u8; 2];
                stream.read_exact(&mut l).unwrap();
                u16::from_be_bytes(l) as usize
            }
            127 => {
                let mut l = [0u8; 8];
                stream.read_exact(&mut l).unwrap();
                u64::from_be_bytes(l) as usize
            }
            n => n as usize,
        }
    } else {
        let mut header = [0u8; HEADER_LEN];
        stream.read_exact(&mut header).expect("a reply");
        u32::from_be_bytes(header) as usize
    };
    buf.resize(len, 0);
    stream.read_exact(buf).expect("a reply");
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

/// `CLIENTS` clients echoing; the odd ones over WebSocket when `websocket` is set (so the
/// broadcast goes to both transports).
fn server_echo_allocates_nothing(websocket: bool) {
    counter::self_check();
    let mut server = Server::<Echo>::bind("127.0.0.1:0", Processed(0)).expect("bind");
    if websocket {
        server.listen_ws("127.0.0.1:0").expect("listen_ws");
    }
    let mut peers: Vec<Peer> = (0..CLIENTS)
        .map(|i| Peer::new(&mut server, i, websocket && i % 2 == 1))
        .collect();
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
        "server (websocket: {websocket}): {warm_up} allocations during warm-up ({} echoes), {one} over the next {} \
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

/// Latest-wins sends, to one channel and to all: after a warm-up, round trips in which every
/// reply replaces nothing and every queue empties allocate nothing on the server.
#[test]
fn latest_wins_sends_allocate_nothing() {
    counter::self_check();
    let mut server = Server::<Echo>::bind("127.0.0.1:0", Processed(0)).expect("bind");
    let addr = server.local_addr();
    let mut peers: Vec<RawPeer> = (0..3).map(|_| RawPeer::connect(addr)).collect();
    let until = deadline();
    while server.channel_count() < peers.len() {
        assert!(Instant::now() < until, "not all connected");
        server.step(Some(Duration::from_millis(10))).unwrap();
    }
    for p in &mut peers {
        assert_eq!(p.recv().action(), "connected");
    }
    let mut trips = |server: &mut Server<Echo>, n: u64| {
        for seq in 0..n {
            let target = server.state().0 + 1;
            peers[0].send(&msg! { "action": "latest", "seq": seq });
            step_until(server, target);
            assert_eq!(peers[0].recv().action(), "latest_reply");
            for p in peers.iter_mut() {
                assert_eq!(p.recv().action(), "latest_all");
            }
        }
    };
    // The warm-up covers every size `seq` takes, so each buffer has reached its working size.
    let warm_up = allocations_during(|| trips(&mut server, 1000));
    let one = allocations_during(|| trips(&mut server, 1000));
    println!("latest-wins: {warm_up} allocations during 1,000 warm-up round trips, {one} over the next 1,000");
    assert_eq!(
        one, 0,
        "latest-wins sends allocated (REPOD_ALLOC_TRACE=1 shows where)"
    );
}

#[test]
fn server_echo_to_many_clients_allocates_nothing() {
    server_echo_allocates_nothing(false);
}

#[test]
fn server_echo_to_tcp_and_websocket_clients_allocates_nothing() {
    server_echo_allocates_nothing(true);
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

fn client_round_trips_allocate_nothing(mode: Mode, websocket: bool) {
    let mut server = Server::<Echo>::bind("127.0.0.1:0", Processed(0)).expect("bind");
    let addr = if websocket {
        format!(
            "ws://{}/",
            server.listen_ws("127.0.0.1:0").expect("listen_ws")
        )
    } else {
        server.local_addr().to_string()
    };
    let mut client = connect(&mut server, &addr, Pinger::default(), mode, |p| p.connected);

    let warm_up = allocations_during(|| round_trips(&mut server, &mut client, 1000));
    let one = allocations_during(|| round_trips(&mut server, &mut client, 1000));
    let ten = allocations_during(|| round_trips(&mut server, &mut client, 10_000));
    println!(
        "{mode:?} client (websocket: {websocket}): {warm_up} allocations during 1,000 warm-up round trips, {one} over the \
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
    counter::self_check();
    client_round_trips_allocate_nothing(Mode::Stepped, false);
}

#[test]
fn stepped_websocket_client_round_trips_allocate_nothing() {
    counter::self_check();
    client_round_trips_allocate_nothing(Mode::Stepped, true);
}

/// Background mode: the game thread's `send` and `pump` (the network thread is not counted).
#[test]
fn background_client_round_trips_allocate_nothing_on_the_game_thread() {
    counter::self_check();
    client_round_trips_allocate_nothing(Mode::Background, false);
}

/// Background mode over WebSocket: the game thread's `send` and `pump`.
#[test]
fn background_websocket_client_round_trips_allocate_nothing_on_the_game_thread() {
    counter::self_check();
    client_round_trips_allocate_nothing(Mode::Background, true);
}

// ---------------------------------------------------------------------------------------------
// Typed messages (feature `serde`)

#[cfg(feature = "serde")]
mod typed {
    use std::borrow::Cow;

    use serde::{Deserialize, Serialize};

    use super::*;
    use repod::Typed;

    /// One message type for both directions: strings and bytes borrowed from the frame, numbers
    /// and a fixed-size array read in place.
    #[derive(Serialize, Deserialize)]
    struct Echo<'a> {
        action: &'a str,
        seq: u64,
        name: &'a str,
        #[serde(with = "serde_bytes")]
        raw: &'a [u8],
        #[serde(borrow)]
        note: Cow<'a, str>,
        pos: (f32, f32),
        trail: [(f32, f32); 3],
    }

    /// Echoes `echo` as `echo_reply`, decoding into `Echo` and encoding it back with `Typed`.
    #[derive(Debug, Default)]
    struct TypedEcho;

    impl ChannelHandler for TypedEcho {
        type Server = Processed;

        fn routes(r: &mut Routes<Self>) {
            r.on("echo", |_, ctx, m| {
                let mut e: Echo = m.decode()?;
                assert!(matches!(e.note, Cow::Borrowed(_)));
                e.action = "echo_reply";
                ctx.send(&Typed(&e));
                ctx.server().0 += 1;
                Ok(())
            });
        }

        fn on_error(&mut self, _: &mut repod::ChannelCtx<'_, Self>, error: &repod::Error) {
            panic!("typed echo failed: {error}");
        }
    }

    impl ServerHandler<TypedEcho> for Processed {}

    #[derive(Debug, Default)]
    struct TypedPinger {
        connected: bool,
        replies: u64,
    }

    impl Listener for TypedPinger {
        fn routes(r: &mut ClientRoutes<Self>) {
            r.on("connected", |me, _, _| {
                me.connected = true;
                Ok(())
            });
            r.on("echo_reply", |me, _, m| {
                let e: Echo = m.decode()?;
                black_box((e.name, e.raw, &e.note));
                if e.seq == me.replies && e.name == "player" && e.raw == b"\x00\x01\x02" {
                    me.replies += 1;
                }
                Ok(())
            });
        }
    }

    /// `n` typed round trips, with the client's `send` and `pump` *and* the server's `step`
    /// measured: decode, handler and encode on both sides.
    fn typed_round_trips(server: &mut Server<TypedEcho>, client: &mut Client<TypedPinger>, n: u64) {
        let trail = [(1.5f32, 2.5f32), (3.5, 4.5), (5.5, 6.5)];
        for _ in 0..n {
            let seq = client.listener().replies;
            let handled = server.state().0;
            let sent = counter::measured(|| {
                let e = Echo {
                    action: "echo",
                    seq,
                    name: "player",
                    raw: b"\x00\x01\x02",
                    note: Cow::Borrowed("borrowed"),
                    pos: (seq as f32, -1.0),
                    trail,
                };
                client.send(&Typed(&e))
            });
            assert!(sent > 0);
            let until = deadline();
            counter::measured(|| {
                while server.state().0 == handled && Instant::now() < until {
                    server.step(Some(Duration::from_millis(10))).unwrap();
                }
            });
            assert!(server.state().0 > handled, "the server got nothing");
            counter::measured(|| {
                while client.listener().replies == seq && Instant::now() < until {
                    client.pump_timeout(Duration::from_millis(10));
                }
            });
            assert_eq!(client.listener().replies, seq + 1, "no reply");
        }
    }

    /// A typed echo with borrowed fields (`&str`, `&[u8]`, `Cow`) decoded with
    /// `Message::decode` and sent with `Typed`, on the server and on a stepped client: no
    /// allocation per message.
    #[test]
    fn typed_echo_with_borrowed_fields_allocates_nothing() {
        counter::self_check();
        let mut server = Server::<TypedEcho>::bind("127.0.0.1:0", Processed(0)).expect("bind");
        let addr = server.local_addr().to_string();
        let mut client = connect(
            &mut server,
            &addr,
            TypedPinger::default(),
            Mode::Stepped,
            |p| p.connected,
        );
        let warm_up = allocations_during(|| typed_round_trips(&mut server, &mut client, 1000));
        let one = allocations_during(|| typed_round_trips(&mut server, &mut client, 1000));
        let ten = allocations_during(|| typed_round_trips(&mut server, &mut client, 10_000));
        println!(
            "typed echo (server and stepped client): {warm_up} allocations during 1,000 warm-up \
             round trips, {one} over the next 1,000, {ten} over the next 10,000"
        );
        assert_eq!(
            (one, ten),
            (0, 0),
            "the typed echo allocated in the steady state (run with REPOD_ALLOC_TRACE=1 to see \
             where)"
        );
    }

    #[derive(Serialize, Deserialize)]
    #[serde(tag = "action", rename_all = "snake_case")]
    #[allow(dead_code)]
    enum Tagged<'a> {
        Echo {
            seq: u64,
            name: &'a str,
            #[serde(with = "serde_bytes")]
            raw: &'a [u8],
        },
        Ping,
    }

    /// What a `tag = "action"` enum costs (serde buffers the map before it knows the variant):
    /// counted and bounded, and documented in `repod::typed`. Its strings are still borrowed.
    #[test]
    fn tagged_enum_decode_allocates_once_encode_never() {
        counter::self_check();
        let mut payload = Vec::new();
        msg! { "action": "echo", "seq": 7u64, "name": "player", "raw": repod::Bin(b"\x01") }
            .encode(&mut payload);
        let m = Message::parse(&payload).unwrap();
        let range = payload.as_ptr_range();
        let per_message = allocations_during(|| {
            counter::measured(|| {
                for _ in 0..1000 {
                    match black_box(&m).decode::<Tagged>().unwrap() {
                        Tagged::Echo { name, raw, .. } => {
                            assert!(
                                range.contains(&name.as_ptr()) && range.contains(&raw.as_ptr())
                            );
                        }
                        Tagged::Ping => unreachable!(),
                    }
                }
            })
        }) as f64
            / 1000.0;
        println!("tag = \"action\" enum: {per_message} allocations per decode (fields borrowed)");
        assert!(
            per_message <= 1.0,
            "{per_message} allocations per enum decode"
        );

        // Encoding one costs nothing: serde writes the tag, then the fields, in one pass.
        let mut out = Vec::with_capacity(256);
        let encoded = allocations_during(|| {
            counter::measured(|| {
                for seq in 0..1000u64 {
                    out.clear();
                    Typed(Tagged::Echo {
                        seq,
                        name: "player",
                        raw: b"\x01",
                    })
                    .encode(&mut out);
                }
            })
        });
        assert_eq!(encoded, 0, "encoding a tagged enum allocated");
    }

    /// The same enum without `tag`: repod reads the variant from the action it already found,
    /// and the fields straight from the frame.
    #[derive(Serialize, Deserialize, Debug)]
    #[serde(rename_all = "snake_case")]
    enum Plain<'a> {
        Echo {
            seq: u64,
            name: &'a str,
            #[serde(with = "serde_bytes")]
            raw: &'a [u8],
        },
        Ping,
    }

    /// A plain enum decodes and encodes with no allocation, its strings borrowed.
    #[test]
    fn plain_enum_decode_and_encode_allocate_nothing() {
        counter::self_check();
        let mut payload = Vec::new();
        msg! { "name": "player", "action": "echo", "seq": 7u64, "raw": repod::Bin(b"\x01") }
            .encode(&mut payload);
        let m = Message::parse(&payload).unwrap();
        let range = payload.as_ptr_range();
        let decoded = allocations_during(|| {
            counter::measured(|| {
                for _ in 0..1000 {
                    match black_box(&m).decode::<Plain>().unwrap() {
                        Plain::Echo { seq, name, raw } => {
                            assert_eq!(seq, 7);
                            assert!(
                                range.contains(&name.as_ptr()) && range.contains(&raw.as_ptr())
                            );
                        }
                        Plain::Ping => unreachable!(),
                    }
                }
            })
        });
        assert_eq!(decoded, 0, "decoding a plain enum allocated");
        let mut out = Vec::with_capacity(256);
        let encoded = allocations_during(|| {
            counter::measured(|| {
                for seq in 0..1000u64 {
                    out.clear();
                    Typed(Plain::Echo {
                        seq,
                        name: "player",
                        raw: b"\x01",
                    })
                    .encode(&mut out);
                }
            })
        });
        assert_eq!(encoded, 0, "encoding a plain enum allocated");
        // What Python would write for the same dict.
        let mut python = Vec::new();
        msg! { "action": "echo", "seq": 999u64, "name": "player", "raw": repod::Bin(b"\x01") }
            .encode(&mut python);
        assert_eq!(out, python);
    }

    /// What reaches the server: one enum, routed by `on_enum`.
    #[derive(Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum ToServer {
        Step { seq: u64, dx: i8, dy: i8 },
        Stop,
    }

    /// What the server answers.
    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum ToClient {
        Moved { seq: u64, x: f32, y: f32 },
        Connected,
    }

    #[derive(Debug, Default)]
    struct EnumEcho {
        x: f32,
        y: f32,
    }

    impl ChannelHandler for EnumEcho {
        type Server = Processed;

        fn routes(r: &mut Routes<Self>) {
            r.on_enum(|me: &mut Self, ctx, msg: ToServer| {
                match msg {
                    ToServer::Step { seq, dx, dy } => {
                        me.x += f32::from(dx);
                        me.y += f32::from(dy);
                        let (x, y) = (me.x, me.y);
                        ctx.send(&Typed(ToClient::Moved { seq, x, y }));
                    }
                    ToServer::Stop => ctx.close_self(),
                }
                ctx.server().0 += 1;
                Ok(())
            });
        }

        fn on_error(&mut self, _: &mut repod::ChannelCtx<'_, Self>, error: &repod::Error) {
            panic!("enum echo failed: {error}");
        }
    }

    impl ServerHandler<EnumEcho> for Processed {}

    #[derive(Debug, Default)]
    struct EnumPinger {
        connected: bool,
        replies: u64,
        x: f32,
    }

    impl Listener for EnumPinger {
        fn routes(r: &mut ClientRoutes<Self>) {
            r.on_enum(|me: &mut Self, _, msg: ToClient| {
                match msg {
                    ToClient::Connected => me.connected = true,
                    ToClient::Moved { seq, x, .. } => {
                        if seq == me.replies {
                            me.replies += 1;
                            me.x = x;
                        }
                    }
                }
                Ok(())
            });
        }
    }

    /// `on_enum` on both sides, plain enums both ways, over a real socket: the server's
    /// `step` and the client's `send` and `pump` allocate nothing per message.
    #[test]
    fn plain_enum_routes_allocate_nothing() {
        counter::self_check();
        let mut server = Server::<EnumEcho>::bind("127.0.0.1:0", Processed(0)).expect("bind");
        let addr = server.local_addr().to_string();
        let mut client = connect(
            &mut server,
            &addr,
            EnumPinger::default(),
            Mode::Stepped,
            |p| p.connected,
        );
        let mut round_trips = |n: u64| {
            for _ in 0..n {
                let seq = client.listener().replies;
                let handled = server.state().0;
                let until = deadline();
                counter::measured(|| {
                    #[derive(Serialize)]
                    #[serde(rename_all = "snake_case")]
                    enum Out {
                        Step { seq: u64, dx: i8, dy: i8 },
                    }
                    client.send(&Typed(Out::Step { seq, dx: 1, dy: -1 }));
                    while server.state().0 == handled && Instant::now() < until {
                        server.step(Some(Duration::from_millis(10))).unwrap();
                    }
                    while client.listener().replies == seq && Instant::now() < until {
                        client.pump_timeout(Duration::from_millis(10));
                    }
                });
                assert_eq!(client.listener().replies, seq + 1, "no reply");
            }
        };
        let warm_up = allocations_during(|| round_trips(1000));
        let one = allocations_during(|| round_trips(1000));
        let ten = allocations_during(|| round_trips(10_000));
        println!(
            "plain enum routes: {warm_up} allocations during 1,000 warm-up round trips, {one} \
             over the next 1,000, {ten} over the next 10,000"
        );
        assert_eq!(
            (one, ten),
            (0, 0),
            "plain enum routes allocated in the steady state"
        );
        assert_eq!(client.listener().x, 12_000.0);
    }
}

// ---------------------------------------------------------------------------------------------
// TLS

#[path = "support/examples.rs"]
mod examples;
#[path = "support/proc.rs"]
mod proc;
#[path = "support/tls.rs"]
mod tls;

/// rustls 0.23 copies each record it decrypts into a `Vec` of its own, and builds each record
/// it encrypts in one (its unbuffered API marks in-place decryption as future work): one
/// allocation per record each way, which a round trip of one message pays twice. Everything
/// of repod's own allocates nothing; the trace (`REPOD_ALLOC_TRACE=1`) shows both inside
/// `rustls`.
const RUSTLS_PER_ROUND_TRIP: u64 = 2;

fn tls_round_trips(mode: Mode, websocket: bool) {
    let Some(certs) = tls::certs() else { return };
    let acceptor = repod::TlsAcceptor::from_pem_files(&certs.leaf1.cert, &certs.leaf1.key).unwrap();
    let listen = repod::Listen::on("127.0.0.1:0").tls(acceptor);
    let (mut server, addr) = if websocket {
        let mut server = Server::<Echo>::bind("127.0.0.1:0", Processed(0)).expect("bind");
        let ws = server.listen_ws(listen).expect("listen wss");
        (server, format!("wss://localhost:{}/", ws.port()))
    } else {
        let server = Server::<Echo>::bind(listen, Processed(0)).expect("bind");
        let port = server.local_addr().port();
        (server, format!("tls://localhost:{port}"))
    };
    let cfg = Config::default().tls(repod::TlsConnector::with_ca_file(&certs.ca).unwrap());
    let mut client = Client::connect_with(addr.as_str(), Pinger::default(), mode, cfg).unwrap();
    let until = deadline();
    while !client.listener().connected {
        assert!(Instant::now() < until, "no greeting over TLS");
        server.step(Some(Duration::from_millis(1))).unwrap();
        client.pump_timeout(Duration::from_millis(1));
    }
    let warm_up = allocations_during(|| round_trips(&mut server, &mut client, 1000));
    let one = allocations_during(|| round_trips(&mut server, &mut client, 1000));
    let ten = allocations_during(|| round_trips(&mut server, &mut client, 10_000));
    println!(
        "{mode:?} client over {addr}: {warm_up} allocations during 1,000 warm-up round trips, \
         {one} over the next 1,000, {ten} over the next 10,000"
    );
    assert!(client.is_connected());
    // A background client's TLS runs on its network thread, which is not measured.
    let per_trip = if mode == Mode::Stepped {
        RUSTLS_PER_ROUND_TRIP
    } else {
        0
    };
    assert_eq!(
        (one, ten),
        (per_trip * 1000, per_trip * 10_000),
        "the {mode:?} TLS client allocated other than rustls's record copies (run with \
         REPOD_ALLOC_TRACE=1 to see where)"
    );
}

#[test]
fn stepped_tls_client_round_trips_allocate_only_rustls_records() {
    counter::self_check();
    tls_round_trips(Mode::Stepped, false);
}

#[test]
fn stepped_wss_client_round_trips_allocate_only_rustls_records() {
    counter::self_check();
    tls_round_trips(Mode::Stepped, true);
}

#[test]
fn background_tls_client_round_trips_allocate_nothing_on_the_game_thread() {
    counter::self_check();
    tls_round_trips(Mode::Background, false);
}

// ---------------------------------------------------------------------------------------------
// Sessions (`Config::resume_window`): counting, acknowledgements and keeping output for replay,
// on both sides, server and client measured.

/// `n` echo round trips with the server's steps measured too.
fn round_trips_both_measured(server: &mut Server<Echo>, client: &mut Client<Pinger>, n: u64) {
    for _ in 0..n {
        let seq = client.listener().replies;
        let handled = server.state().0;
        let sent = counter::measured(|| {
            client.send(&msg! { "action": "echo", "seq": seq, "name": "player" })
        });
        assert!(sent > 0);
        let until = deadline();
        while server.state().0 == handled {
            assert!(Instant::now() < until, "the server got nothing");
            counter::measured(|| server.step(Some(Duration::from_millis(10))).unwrap());
        }
        counter::measured(|| {
            while client.listener().replies == seq && Instant::now() < until {
                client.pump_timeout(Duration::from_millis(10));
            }
        });
        assert_eq!(client.listener().replies, seq + 1, "no reply");
    }
}

fn sessions_allocate_nothing(websocket: bool) {
    counter::self_check();
    let mut server = Server::<Echo>::bind("127.0.0.1:0", Processed(0))
        .expect("bind")
        .config(Config::default().resume_window(Some(Duration::from_secs(30))));
    let addr = if websocket {
        format!(
            "ws://{}/",
            server.listen_ws("127.0.0.1:0").expect("listen_ws")
        )
    } else {
        server.local_addr().to_string()
    };
    let mut client = connect(&mut server, &addr, Pinger::default(), Mode::Stepped, |p| {
        p.connected
    });
    let warm_up = allocations_during(|| round_trips_both_measured(&mut server, &mut client, 1000));
    let one = allocations_during(|| round_trips_both_measured(&mut server, &mut client, 1000));
    let ten = allocations_during(|| round_trips_both_measured(&mut server, &mut client, 10_000));
    println!(
        "sessions on (websocket: {websocket}): {warm_up} allocations during 1,000 warm-up round \
         trips, {one} over the next 1,000, {ten} over the next 10,000"
    );
    let stats = server.with_ctx(|_, ctx| ctx.server_stats());
    assert!(client.is_connected());
    assert_eq!(stats.went_away, 0);
    assert_eq!(
        (one, ten),
        (0, 0),
        "sessions allocated in the steady state (run with REPOD_ALLOC_TRACE=1 to see where)"
    );
}

#[test]
fn sessions_on_round_trips_allocate_nothing() {
    sessions_allocate_nothing(false);
}

#[test]
fn sessions_on_websocket_round_trips_allocate_nothing() {
    sessions_allocate_nothing(true);
}
