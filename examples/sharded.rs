//! One server per core, each on its own thread with its own world, all on one port: every shard
//! sets `SO_REUSEPORT`, and the kernel spreads new connections among them. A shout still reaches
//! every player of every shard.
//!
//! ```text
//! cargo run --release --example sharded -- [HOST:PORT] [SHARDS]
//! ```
//!
//! Defaults: `127.0.0.1:5071`, and as many shards as the machine has cores. Prints `listening on
//! HOST:PORT with N shards` once every shard is bound (port 0 picks a free port; the real one is
//! printed).
//!
//! - `{"action": "shout", "text": T}`: every player of every shard gets
//!   `{"action": "lobby", "text": T, "shard": N}`, N being the shard of the one who shouted.
//! - `{"action": "whoami"}` is answered with `{"action": "whoami_reply", "shard": N, "pid": P}`.
//! - The kernel picks a shard for each connection by a hash of its addresses and ports:
//!   balanced over many connections, not over a few, and blind to how busy each shard is.
//! - Ctrl-C (SIGINT) stops every shard, each flushing what its players have queued; SIGTERM
//!   drains every shard for up to 30 s (see `Server::drain_on_sigterm`). The process exits once
//!   all shards have stopped.
//!
//! # How the shards talk
//!
//! A shard's world lives on its thread alone, with no lock: handlers get `&mut` to it. What
//! crosses shards goes through [`ServerHandle`]s, and each shard's state holds the handles of all
//! the others. A handle is a channel into that shard: it queues a command and wakes the shard's
//! reactor, which runs it on its own thread between two of its handlers. So a shout is sent to
//! the shouter's shard at once, and posted to every other shard with `handle.send_to_all`. For
//! more than relaying (moving a player to another shard, a lobby-wide ranking),
//! `handle.call(|state, ctx| ..)` runs a closure on the other shard with its state, again with no
//! lock. Commands between two shards keep their order; across three they need not: players on
//! shard 2 may see shard 0's shout and shard 1's in either order.
//!
//! # Threads or processes
//!
//! The same layout works with a process per shard (`echo_server --reuse-port`, started N times).
//! Threads share one address space: lobby-wide data costs a handle or an `Arc` to share, and
//! there is one process to deploy and watch. They also share its fate. A panic in a channel
//! handler closes only that player's connection (repod catches it); one that escapes a server
//! hook (`on_tick`, a `call` closure) ends that shard's thread and drops its players; and an
//! abort (a panic under `panic = "abort"`, a stack overflow, running out of memory, a crash in
//! native code, the OOM killer) takes every shard down at once. Prefer separate processes when:
//!
//! - a crash must cost one match, not all of them;
//! - shards must be deployed and restarted independently (a new version rolled out match by
//!   match: with `SO_REUSEPORT` a new process joins the port while the old one drains);
//! - memory must be accounted and limited per match (cgroups, container limits work per
//!   process);
//! - an orchestrator manages one process per match: Agones (see the `agones_server` example)
//!   tracks readiness, health, allocation and shutdown per game server process.

use std::num::NonZeroUsize;

use repod::{msg, ChannelHandler, Listen, Routes, Server, ServerHandle, ServerHandler};

/// A player: no state of its own here; the world is its shard's.
#[derive(Default)]
struct Player;

/// One shard's world.
struct Shard {
    index: usize,
    /// Every other shard, to forward lobby-wide messages to.
    peers: Vec<ServerHandle<Player>>,
}

impl ServerHandler<Player> for Shard {}

impl ChannelHandler for Player {
    type Server = Shard;

    fn routes(r: &mut Routes<Self>) {
        r.on("shout", |_, ctx, m| {
            let (shard, ctx) = ctx.split();
            let lobby = msg! { "action": "lobby", "text": m.str("text")?, "shard": shard.index };
            ctx.send_to_all(&lobby);
            // The other shards' players are theirs to send to, on their own threads.
            for peer in &shard.peers {
                peer.send_to_all(&lobby);
            }
            Ok(())
        });
        r.on("whoami", |_, ctx, _| {
            let shard = ctx.server().index;
            // Every shard answers with the same pid: what tells threads from processes.
            ctx.send(&msg! { "action": "whoami_reply", "shard": shard, "pid": std::process::id() });
            Ok(())
        });
    }
}

fn usage(why: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("{why}\nusage: sharded [HOST:PORT] [SHARDS]"),
    )
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:5071".into());
    let shards = match args.next() {
        Some(n) => n
            .parse::<NonZeroUsize>()
            .map_err(|e| usage(&format!("bad SHARDS {n:?}: {e}")))?,
        None => std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
    }
    .get();

    // Every shard is bound before any runs, so a bind error ends the program before it serves
    // anyone, and every shard knows all its peers before its first player arrives.
    let mut servers: Vec<Server<Player>> = Vec::with_capacity(shards);
    for index in 0..shards {
        // The others bind the first one's address: with port 0, the port it was given.
        let at = match servers.first() {
            Some(first) => Listen::on(first.local_addr()),
            None => Listen::on(addr.as_str()),
        };
        let state = Shard {
            index,
            peers: Vec::new(),
        };
        // Beware: a port held with SO_REUSEPORT by another process of the same user (a
        // forgotten earlier run) is shared, not refused, and gets its share of the players.
        servers.push(Server::bind(at.reuse_port(true), state)?);
    }
    let handles: Vec<ServerHandle<Player>> = servers.iter().map(Server::handle).collect();
    for (index, server) in servers.iter_mut().enumerate() {
        server.state_mut().peers = handles
            .iter()
            .enumerate()
            .filter(|&(other, _)| other != index)
            .map(|(_, handle)| handle.clone())
            .collect();
    }
    drop(handles);
    println!(
        "listening on {} with {shards} shards",
        servers[0].local_addr()
    );

    let threads = servers
        .into_iter()
        .enumerate()
        .map(|(index, server)| {
            // `launch` on every shard: each one sees Ctrl-C and SIGTERM by itself, so no thread
            // has to relay them.
            std::thread::Builder::new()
                .name(format!("shard-{index}"))
                .spawn(move || server.launch())
        })
        .collect::<std::io::Result<Vec<_>>>()?;

    let mut failed = 0;
    for (index, thread) in threads.into_iter().enumerate() {
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("shard {index} failed: {e}");
                failed += 1;
            }
            // The panic message was printed when it happened; the other shards kept serving.
            Err(_) => {
                eprintln!("shard {index} panicked");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(std::io::Error::other(format!(
            "{failed} of {shards} shards failed"
        )));
    }
    println!("all {shards} shards stopped");
    Ok(())
}
