//! Seed 001's "Host Game": one process runs the server on a background thread and plays as a
//! client of it, from the same game loop.
//!
//! ```text
//! cargo run --example host_and_play
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use repod::{
    msg, ChannelHandler, ChannelId, Client, ClientRoutes, Listener, Routes, Server, ServerCtx,
    ServerHandler,
};

/// Server side: a channel per player, relaying chat to everyone.
#[derive(Default)]
struct GameChannel;

#[derive(Default)]
struct GameServer {
    joined: usize,
}

impl ChannelHandler for GameChannel {
    type Server = GameServer;
    fn routes(r: &mut Routes<Self>) {
        r.on("chat", |_, ctx, m| {
            ctx.send_to_all(&msg! { "action": "chat", "text": m.str("text")? });
            Ok(())
        });
    }
}

impl ServerHandler<GameChannel> for GameServer {
    fn on_connect(
        &mut self,
        ctx: &mut ServerCtx<'_, GameChannel>,
        _id: ChannelId,
        addr: SocketAddr,
    ) {
        self.joined += 1;
        println!("[server] client connected from {addr}");
        ctx.send_to_all(&msg! { "action": "player_joined", "players": self.joined });
    }
}

/// Client side: the host's own player.
struct Player {
    chats: usize,
}

impl Listener for Player {
    fn routes(r: &mut ClientRoutes<Self>) {
        r.on("connected", |_, net, _| {
            println!("[client] connected to my own server");
            net.send(&msg! { "action": "chat", "text": "hello from the host" });
            Ok(())
        });
        r.on("player_joined", |_, _, m| {
            println!("[client] players: {}", m.u64("players")?);
            Ok(())
        });
        r.on("chat", |me, _, m| {
            println!("[client] chat: {}", m.str("text")?);
            me.chats += 1;
            Ok(())
        });
    }
}

fn main() -> std::io::Result<()> {
    // Port 0: the OS picks a free port; the handle tells which.
    let server =
        Server::<GameChannel>::bind("127.0.0.1:0", GameServer::default())?.start_background()?;
    let mut client = Client::connect(server.local_addr(), Player { chats: 0 })?;
    let deadline = Instant::now() + Duration::from_secs(5);
    // The game loop: pump once per frame.
    while client.listener().chats < 1 && Instant::now() < deadline {
        client.pump();
        std::thread::sleep(Duration::from_millis(10));
    }
    let state = server.stop_and_join()?;
    println!("[server] stopped after {} player(s)", state.joined);
    Ok(())
}
