//! A real-time arena for terminal and browser players in one match: move, collect gems, bump.
//!
//! ```text
//! cargo run --example arena_server -- [--bind HOST:PORT] [--bots N] [--report-secs N]
//!                                        [--tls-cert FILE --tls-key FILE]
//! cargo run --example arena_client -- HOST:PORT      # a terminal player
//! ```
//!
//! Prints where to connect: the TCP address for `arena_client`, and the page for browsers
//! (served by this process over HTTP, playing over WebSocket):
//!
//! ```text
//! terminal: cargo run --example arena_client -- 127.0.0.1:5080
//! browser:  http://127.0.0.1:5082/arena.html?ws=ws://127.0.0.1:5081/
//! ```
//!
//! The server is authoritative and runs on the reactor's thread with no lock: inputs arrive
//! as messages and are stored, the 30 Hz tick steps the simulation (`arena/sim.rs`, which
//! knows nothing of the network) and broadcasts one snapshot to everyone, encoded once and
//! latest-wins (a slow link gets the newest, not a backlog). A
//! client that connects and never sends `join` is a spectator. The protocol is in
//! `arena/proto.rs`.
//!
//! Sessions are on (`Config::resume_window`, 30 s; see `repod::session`): a player whose link
//! drops is away, its dot stands still and keeps its score, and its client (terminal or
//! browser) reconnects by itself and carries on. Heartbeats (1 s) find links that died
//! silently.
//!
//! - `--bind HOST:PORT`: TCP on PORT, WebSocket on PORT+1, the page on PORT+2 (PORT 0: three
//!   free ports). Default `127.0.0.1:5080`; `0.0.0.0:5080` for a LAN.
//! - `--bots N`: computer players, so one person can try it alone.
//! - `--tls-cert FILE --tls-key FILE`: TCP players over TLS (`arena_client tls://HOST:PORT`)
//!   and browsers over `wss`, with this certificate chain and key (PEM); SIGHUP re-reads them.
//!   The page itself is still served over plain HTTP by this example.
//! - `--report-secs N`: every N seconds, one line `report: players=A conns=B ticks=C
//!   tick_avg_us=D tick_max_us=E overruns=F bytes_per_client_per_s=G` (the figures of
//!   BENCHMARKS-HISTORY.md).

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use repod::tls::TlsAcceptor;
use repod::{
    ChannelCtx, ChannelHandler, ChannelId, Config, DisconnectReason, HandlerResult, Listen, Routes,
    Server, ServerCtx, ServerHandler,
};

#[path = "arena/proto.rs"]
mod proto;
#[path = "arena/sim.rs"]
mod sim;
mod web;

use proto::ToServer;
use sim::{Input, World};

/// One connection: a spectator until it joins.
#[derive(Debug, Default)]
struct Seat {
    player: Option<u8>,
}

/// The match, and the snapshot buffers reused every tick.
struct Arena {
    world: World,
    players: Vec<u8>,
    gems: Vec<u8>,
    scores: Vec<u8>,
}

/// Scores go out at most this often (in ticks): twice a second is plenty for a score board.
const SCORES_EVERY: u32 = 15;

impl ChannelHandler for Seat {
    type Server = Arena;

    fn routes(r: &mut Routes<Self>) {
        // One route per variant of `ToServer`, and one `match`.
        r.on_enum(Self::handle);
    }
}

impl Seat {
    fn handle(&mut self, ctx: &mut ChannelCtx<'_, Self>, m: ToServer) -> HandlerResult {
        match (m, self.player) {
            (ToServer::Join { name }, None) => {
                let Some(id) = ctx.server().world.join(&name, false) else {
                    return Err(repod::Error::handler("the arena is full"));
                };
                self.player = Some(id);
                ctx.send(&repod::msg! { "action": "welcome", "id": id });
            }
            (ToServer::Input { dx, dy }, Some(id)) => {
                ctx.server().world.set_input(id, Input::clamped(dx, dy));
            }
            // A second join, or input from a spectator: nothing to do.
            _ => {}
        }
        Ok(())
    }
}

impl ServerHandler<Seat> for Arena {
    fn on_connect(&mut self, ctx: &mut ServerCtx<'_, Seat>, id: ChannelId, _addr: SocketAddr) {
        // Newcomers learn the names and scores at once; positions come with the next tick.
        ctx.send_to(id, &proto::board(&self.world));
    }

    fn on_away(&mut self, ctx: &mut ServerCtx<'_, Seat>, id: ChannelId, _: &DisconnectReason) {
        // The dot stands still until its player is back; it keeps its place and its score.
        if let Some(player) = ctx.channel(id).and_then(|seat| seat.player) {
            self.world.set_input(player, Input::clamped(0, 0));
        }
    }

    fn on_disconnect(
        &mut self,
        _ctx: &mut ServerCtx<'_, Seat>,
        _id: ChannelId,
        seat: Seat,
        _reason: &DisconnectReason,
    ) {
        if let Some(id) = seat.player {
            self.world.leave(id);
        }
    }

    fn on_tick(&mut self, ctx: &mut ServerCtx<'_, Seat>) {
        self.world.step();
        proto::snapshot_bytes(&self.world, &mut self.players, &mut self.gems);
        // Latest-wins: a player whose link is slower than 30 snapshots a second gets the newest
        // one the moment the link can take it, not a backlog of stale ones (names and scores
        // below stay ordinary messages: each of them counts). The clients interpolate between
        // the last two snapshots they got, over the time between their arrivals, so skipped
        // ticks only make a longer, still smooth, step.
        ctx.send_to_all_latest(&proto::snapshot(self.world.tick, &self.players, &self.gems));
        if std::mem::take(&mut self.world.roster_changed) {
            self.world.scores_changed = false; // the board carries them
            ctx.send_to_all(&proto::board(&self.world));
        } else if self.world.scores_changed && self.world.tick % SCORES_EVERY == 0 {
            self.world.scores_changed = false;
            proto::scores_bytes(&self.world, &mut self.scores);
            ctx.send_to_all(&proto::scores(&self.scores));
        }
    }
}

fn usage(why: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!(
            "{why}\nusage: arena_server [--bind HOST:PORT] [--bots N] [--report-secs N] \
             [--tls-cert FILE --tls-key FILE]"
        ),
    )
}

fn main() -> std::io::Result<()> {
    let (mut bind, mut bots, mut report) = ("127.0.0.1:5080".to_owned(), 0usize, None);
    let (mut tls_cert, mut tls_key) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| usage(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--bind" => bind = value()?,
            "--tls-cert" => tls_cert = Some(value()?),
            "--tls-key" => tls_key = Some(value()?),
            "--bots" => {
                bots = value()?
                    .parse()
                    .map_err(|e| usage(&format!("--bots: {e}")))?
            }
            "--report-secs" => {
                let secs: f64 = value()?.parse().map_err(|e| usage(&format!("{e}")))?;
                report = Some(Duration::from_secs_f64(secs.max(0.1)));
            }
            other => return Err(usage(&format!("unknown argument {other}"))),
        }
    }
    let addr: SocketAddr = bind
        .parse()
        .map_err(|e| usage(&format!("--bind {bind}: {e}")))?;
    let next = |a: SocketAddr, k: u16| {
        let port = if a.port() == 0 { 0 } else { a.port() + k };
        SocketAddr::new(a.ip(), port)
    };

    let mut world = World::new(0x5eed);
    for i in 0..bots {
        world.join(&format!("bot{}", i + 1), true);
    }
    let arena = Arena {
        world,
        players: Vec::new(),
        gems: Vec::new(),
        scores: Vec::new(),
    };
    let tls = match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => {
            Some(TlsAcceptor::from_pem_files(cert, key).map_err(|e| usage(&e.to_string()))?)
        }
        (None, None) => None,
        _ => return Err(usage("--tls-cert and --tls-key go together")),
    };
    let listen = |a: SocketAddr| match &tls {
        Some(tls) => Listen::on(a).tls(tls.clone()),
        None => Listen::on(a),
    };
    let mut server = Server::<Seat>::bind(listen(addr), arena)?
        .tick_rate(f64::from(sim::TICK_HZ))
        .config(
            Config::default()
                .resume_window(Some(Duration::from_secs(30)))
                .heartbeat(Some(Duration::from_secs(1))),
        );
    let tcp = server.local_addr();
    let ws = server.listen_ws(listen(next(addr, 1)))?;
    let (tcp_scheme, ws_scheme) = if tls.is_some() {
        ("tls://", "wss")
    } else {
        ("", "ws")
    };
    let http = TcpListener::bind(next(addr, 2))?;
    let page = http.local_addr()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || web::serve_files(http, root, "/arena.html"))?;
    println!("arena: {} Hz, {bots} bots", sim::TICK_HZ);
    println!("terminal: cargo run --example arena_client -- {tcp_scheme}{tcp}");
    println!("browser:  http://{page}/arena.html?ws={ws_scheme}://{ws}/");

    if let Some(every) = report {
        let handle = server.handle();
        std::thread::spawn(move || {
            let mut last = (Instant::now(), handle.stats());
            loop {
                std::thread::sleep(every);
                let (now, s) = (Instant::now(), handle.stats());
                let (t0, s0) = &last;
                let secs = now.duration_since(*t0).as_secs_f64();
                let ticks = s.ticks - s0.ticks;
                let tick_time = s.tick_time.saturating_sub(s0.tick_time);
                let avg = tick_time.as_secs_f64() * 1e6 / ticks.max(1) as f64;
                let per_client =
                    (s.bytes_out - s0.bytes_out) as f64 / secs / s.connections.max(1) as f64;
                println!(
                    "report: conns={} ticks={ticks} tick_avg_us={avg:.0} tick_max_us={} overruns={} \
                     bytes_per_client_per_s={per_client:.0}",
                    s.connections,
                    s.max_tick.as_micros(),
                    s.tick_overruns - s0.tick_overruns,
                );
                last = (now, s);
            }
        });
    }
    server.launch()
}
