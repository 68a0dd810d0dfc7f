//! Seed 004: limiting players in `on_connect`, and telling the extra ones politely.
//!
//! ```text
//! cargo run --example max_players
//! ```
//!
//! Starts a server for 2 players, connects 3 clients, and shows the third being told `full`.
//! (For a hard transport-level cap instead, see `Config::max_connections`.)

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use repod::{
    msg, ChannelHandler, ChannelId, Client, ClientRoutes, DisconnectReason, Listener, Server,
    ServerCtx, ServerHandler,
};

const MAX_PLAYERS: usize = 2;

#[derive(Default)]
struct GameChannel;

#[derive(Default)]
struct GameServer {
    players: Vec<ChannelId>,
}

impl ChannelHandler for GameChannel {
    type Server = GameServer;
}

impl ServerHandler<GameChannel> for GameServer {
    fn on_connect(
        &mut self,
        ctx: &mut ServerCtx<'_, GameChannel>,
        id: ChannelId,
        addr: SocketAddr,
    ) {
        if self.players.len() >= MAX_PLAYERS {
            println!("[server] {addr} rejected: full");
            ctx.send_to(id, &msg! { "action": "full" });
            ctx.close(id);
            return;
        }
        self.players.push(id);
        ctx.send_to(
            id,
            &msg! { "action": "welcome", "slot": self.players.len() - 1 },
        );
    }

    fn on_disconnect(
        &mut self,
        _: &mut ServerCtx<'_, GameChannel>,
        id: ChannelId,
        _: GameChannel,
        _: &DisconnectReason,
    ) {
        self.players.retain(|p| *p != id);
    }
}

#[derive(Default)]
struct GameClient {
    name: &'static str,
    done: bool,
}

impl Listener for GameClient {
    fn routes(r: &mut ClientRoutes<Self>) {
        r.on("welcome", |me, _, m| {
            println!("[{}] welcome, slot {}", me.name, m.u64("slot")?);
            me.done = true;
            Ok(())
        });
        r.on("full", |me, _, _| {
            println!("[{}] Server is full, try again later.", me.name);
            me.done = true;
            Ok(())
        });
    }
}

fn main() -> std::io::Result<()> {
    let server =
        Server::<GameChannel>::bind("127.0.0.1:0", GameServer::default())?.start_background()?;
    let mut clients = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let mut c = Client::connect(server.local_addr(), GameClient { name, done: false })?;
        // Connect one at a time so the slots are handed out in order.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !c.listener().done && Instant::now() < deadline {
            c.pump_timeout(Duration::from_millis(10));
        }
        clients.push(c);
    }
    server.stop_and_join()?;
    Ok(())
}
