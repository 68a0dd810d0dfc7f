//! Seed 003's nickname-validating chat server, in Rust, completed with the `system` and
//! `players` messages that seed 000's chat client shows.
//!
//! ```text
//! cargo run --example chat_server -- [HOST] [PORT]      # defaults: 127.0.0.1 5071
//! cargo run --example chat_client -- [HOST] [PORT]      # in other terminals
//! ```
//!
//! Prints `listening on HOST:PORT` once bound (port 0 picks a free port, and the line shows
//! it). Stops cleanly on Ctrl-C. `tests/python/chat_server.py` is the same server written
//! with Python repod; both chat clients (`examples/chat_client.rs` and seed 000's Python one)
//! work with either.
//!
//! Protocol, client to server:
//! - `nickname` `{nickname}`: trimmed, 1 to 20 characters, else `error`
//!   `{"message": "Invalid nickname"}` to the sender only. Then, to everyone: `name_changed`
//!   `{old_name, new_name}`, a `system` `{text}` (`NAME joined` the first time,
//!   `OLD is now known as NEW` after) and `players`.
//! - `message` `{text}`: trimmed, 1 to 500 characters, else `error`
//!   `{"message": "Invalid message"}`. Then, to everyone: `message` `{text, nickname}`
//!   (`Anonymous` until a nickname is chosen).
//!
//! When a player who chose a nickname leaves, the others get `system` `NAME left` and `players`.
//! `players` `{list}` is the chosen nicknames, sorted.

use std::io::Write;

use repod::{
    msg, ChannelCtx, ChannelHandler, ChannelId, DisconnectReason, HandlerResult, Message, Routes,
    Server, ServerCtx, ServerHandler,
};

const MAX_NICKNAME_CHARS: usize = 20;
const MAX_MESSAGE_CHARS: usize = 500;

/// One connection: seed 003's `GameChannel`.
#[derive(Debug, Default)]
struct Player {
    /// `None` until the player chooses a valid nickname.
    nickname: Option<String>,
}

/// The server-wide hooks: seed 003's `GameServer`. The chat needs no state of its own: the
/// player list is the channels' states.
#[derive(Debug, Default)]
struct Chat;

impl ChannelHandler for Player {
    type Server = Chat;

    fn routes(r: &mut Routes<Self>) {
        r.on("nickname", Self::nickname);
        r.on("message", Self::message);
    }
}

impl Player {
    fn name(&self) -> &str {
        self.nickname.as_deref().unwrap_or("Anonymous")
    }

    fn nickname(&mut self, ctx: &mut ChannelCtx<'_, Self>, m: &Message<'_>) -> HandlerResult {
        // A missing or non-string nickname is as invalid as an empty one.
        let nickname = m.str("nickname").unwrap_or_default().trim();
        if nickname.is_empty() || nickname.chars().count() > MAX_NICKNAME_CHARS {
            ctx.send(&msg! { "action": "error", "message": "Invalid nickname" });
            return Ok(());
        }
        let text = match &self.nickname {
            Some(old) => format!("{old} is now known as {nickname}"),
            None => format!("{nickname} joined"),
        };
        ctx.send_to_all(&msg! {
            "action": "name_changed",
            "old_name": self.name(),
            "new_name": nickname,
        });
        self.nickname = Some(nickname.to_owned());
        ctx.send_to_all(&msg! { "action": "system", "text": &text });
        let list = players(ctx, Some(self));
        ctx.send_to_all(&msg! { "action": "players", "list": &list });
        Ok(())
    }

    fn message(&mut self, ctx: &mut ChannelCtx<'_, Self>, m: &Message<'_>) -> HandlerResult {
        let text = m.str("text").unwrap_or_default().trim();
        if text.is_empty() || text.chars().count() > MAX_MESSAGE_CHARS {
            ctx.send(&msg! { "action": "error", "message": "Invalid message" });
            return Ok(());
        }
        ctx.send_to_all(&msg! { "action": "message", "text": text, "nickname": self.name() });
        Ok(())
    }
}

impl ServerHandler<Player> for Chat {
    fn on_disconnect(
        &mut self,
        ctx: &mut ServerCtx<'_, Player>,
        _: ChannelId,
        player: Player,
        _: &DisconnectReason,
    ) {
        // The player's state is handed over and is no longer among `ctx.channels()`.
        if let Some(name) = &player.nickname {
            ctx.send_to_all(&msg! { "action": "system", "text": &format!("{name} left") });
            let list = players(ctx, None);
            ctx.send_to_all(&msg! { "action": "players", "list": &list });
        }
    }
}

/// The chosen nicknames, sorted. `me` is the player whose handler is running, if any: its state
/// is that handler's `self`, not one of `ctx.channels()`.
fn players(ctx: &ServerCtx<'_, Player>, me: Option<&Player>) -> Vec<String> {
    let mut names: Vec<String> = ctx
        .channels()
        .map(|(_, p)| p)
        .chain(me)
        .filter_map(|p| p.nickname.clone())
        .collect();
    names.sort();
    names
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let host = args.next().unwrap_or_else(|| "127.0.0.1".into());
    let port: u16 = args.next().map_or(Ok(5071), |p| p.parse()).map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bad port: {e}"))
    })?;
    let server = Server::<Player>::bind((host.as_str(), port), Chat)?;
    println!("listening on {host}:{}", server.local_addr().port());
    std::io::stdout().flush()?;
    server.launch()
}
