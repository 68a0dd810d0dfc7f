//! The chat of `chat_server` (seed 003's nickname-validating server), shared by the
//! `chat_server` and `web_chat` examples: the protocol is described in `chat_server.rs`.

use repod::{
    msg, ChannelCtx, ChannelHandler, ChannelId, DisconnectReason, HandlerResult, Message, Routes,
    ServerCtx, ServerHandler,
};

const MAX_NICKNAME_CHARS: usize = 20;
const MAX_MESSAGE_CHARS: usize = 500;

/// One connection: seed 003's `GameChannel`.
#[derive(Debug, Default)]
pub struct Player {
    /// `None` until the player chooses a valid nickname.
    nickname: Option<String>,
}

/// The server-wide hooks: seed 003's `GameServer`. The chat needs no state of its own: the
/// player list is the channels' states.
#[derive(Debug, Default)]
pub struct Chat;

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
