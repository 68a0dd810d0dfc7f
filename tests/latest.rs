//! Latest-wins sends through a real slow reader: a client whose receive window is tiny stops
//! reading while the server sends, 200 times a second, an ordinary `score` and a latest-wins
//! `snap`. When it reads again it gets every score once and in order, and of the snapshots
//! only a few, each newer than the last, the newest last: the ones the link could not carry in
//! time were replaced in the server's queue, not delivered late. The server saw the link
//! congested and counted the replacements.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use repod::{
    msg, ChannelCtx, ChannelHandler, ChannelId, Message, Routes, Server, ServerCtx, ServerHandler,
};

const TICKS: u64 = 300;

#[derive(Default)]
struct Flood {
    target: Option<(ChannelId, u64)>,
    congested_seen: bool,
    replaced: u64,
    /// The most unsent bytes the kernel held, and the most repod's queue held.
    max_kernel_unsent: u32,
    max_queued: usize,
    done: bool,
}

#[derive(Default, Clone)]
struct Shared(Arc<Mutex<Flood>>);

impl ServerHandler<Player> for Shared {
    fn on_tick(&mut self, ctx: &mut ServerCtx<'_, Player>) {
        let mut f = self.0.lock().unwrap();
        let Some((id, n)) = f.target else { return };
        if n == TICKS {
            if let Some(s) = ctx.stats_of(id) {
                f.replaced = s.replaced;
            }
            f.done = true;
            f.target = None;
            return;
        }
        let pad = "s".repeat(2000);
        ctx.send_to(id, &msg! { "action": "score", "n": n });
        ctx.send_latest_to(id, &msg! { "action": "snap", "n": n, "pad": pad.as_str() });
        f.congested_seen |= ctx.is_congested(id);
        if let Some(s) = ctx.stats_with_kernel_of(id) {
            f.max_kernel_unsent = f.max_kernel_unsent.max(s.kernel_unsent.expect("TCP_INFO"));
            f.max_queued = f.max_queued.max(s.queued);
        }
        f.target = Some((id, n + 1));
    }
}

#[derive(Default)]
struct Player;

impl ChannelHandler for Player {
    type Server = Shared;
    fn routes(r: &mut Routes<Self>) {
        r.on("go", |_, ctx: &mut ChannelCtx<'_, Self>, _| {
            let id = ctx.id();
            ctx.server().0.lock().unwrap().target = Some((id, 0));
            Ok(())
        });
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

/// Reads one frame's payload.
fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("frame length");
    let mut p = vec![0; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut p).expect("frame payload");
    p
}

#[test]
fn a_slow_reader_gets_every_ordinary_message_and_only_fresh_snapshots() {
    let shared = Shared::default();
    let server = Server::<Player>::bind("127.0.0.1:0", shared.clone())
        .unwrap()
        .tick_rate(200.0);
    let addr: SocketAddr = server.local_addr();
    let server = server.start_background().unwrap();

    // A tiny receive window, set before connecting so the handshake announces it.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut client: TcpStream = socket.into();
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let greeting = read_frame(&mut client);
    assert_eq!(Message::parse(&greeting).unwrap().action(), "connected");
    let mut go = Vec::new();
    repod::Encode::encode(&msg! { "action": "go" }, &mut go);
    client.write_all(&frame(&go)).unwrap();

    // Not reading while the server sends 300 ticks' worth (1.5 s).
    let until = Instant::now() + Duration::from_secs(20);
    while !shared.0.lock().unwrap().done {
        assert!(Instant::now() < until, "the server did not finish sending");
        std::thread::sleep(Duration::from_millis(50));
    }

    let (mut scores, mut snaps) = (Vec::new(), Vec::new());
    while scores.last() != Some(&(TICKS - 1)) || snaps.last() != Some(&(TICKS - 1)) {
        let p = read_frame(&mut client);
        let m = Message::parse(&p).unwrap();
        match m.action() {
            "score" => scores.push(m.u64("n").unwrap()),
            "snap" => snaps.push(m.u64("n").unwrap()),
            _ => {}
        }
    }
    assert_eq!(
        scores,
        (0..TICKS).collect::<Vec<_>>(),
        "every score, once, in order"
    );
    assert!(
        snaps.windows(2).all(|w| w[0] < w[1]),
        "snapshots only get newer: {snaps:?}"
    );
    let f = shared.0.lock().unwrap();
    eprintln!(
        "{} of {TICKS} snapshots delivered, {} replaced, congested seen: {}; the most unsent \
         in the kernel {} bytes, queued in repod {} bytes",
        snaps.len(),
        f.replaced,
        f.congested_seen,
        f.max_kernel_unsent,
        f.max_queued
    );
    // TCP_NOTSENT_LOWAT (1 byte by default) keeps the kernel's share to about one write; the
    // backlog stays in repod's queue, where replacing works.
    assert!(f.max_kernel_unsent < 64 * 1024, "{}", f.max_kernel_unsent);
    assert!(f.congested_seen, "the server never saw the link congested");
    assert!(
        snaps.len() < TICKS as usize / 2,
        "most stale snapshots were replaced"
    );
    assert_eq!(
        snaps.len() as u64 + f.replaced,
        TICKS,
        "each snapshot delivered or replaced"
    );
    // The lock first: the server's tick takes it, and dropping the server waits for its
    // thread (holding both deadlocked CI once, at a tick between the two).
    drop(f);
    drop(server);
}
