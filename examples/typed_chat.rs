//! The chat of `chat_server` and `chat_client`, with typed messages (cargo feature `serde`): the
//! protocol is two enums, each handled by one `match`, and the bytes on the wire are the same,
//! so this server and this client mix with the untyped ones and with Python's.
//!
//! ```text
//! cargo run --example typed_chat -- server [HOST] [PORT]   # defaults: 127.0.0.1 5071
//! cargo run --example typed_chat -- client [HOST] [PORT]   # in other terminals
//! ```
//!
//! The server prints `listening on HOST:PORT` once bound (port 0 picks a free port) and stops
//! cleanly on Ctrl-C. The client reads the nickname, then messages, from standard input. The
//! protocol is described in `chat_server.rs`.
//!
//! Receiving: `Routes::on_enum` routes every variant of `ToServer` (and, on the client,
//! `ToClient`, connection events included) to one handler. Sending: `Typed(value)` encodes a
//! variant straight into the output buffer; `Cow` fields let the server send borrowed text and
//! the client read owned text with one type.

use std::borrow::Cow;
use std::io::{self, BufRead, Write};
use std::sync::mpsc::{self, TryRecvError};
use std::time::{Duration, Instant};

use repod::{
    ChannelCtx, ChannelHandler, ChannelId, Client, ClientCtx, ClientRoutes, DisconnectReason,
    HandlerResult, Listener, Routes, Server, ServerCtx, ServerHandler, Typed,
};
use serde::{Deserialize, Serialize};

const MAX_NICKNAME_CHARS: usize = 20;
const MAX_MESSAGE_CHARS: usize = 500;

/// Client to server. A missing field reads as empty, and is refused as such.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ToServer {
    Nickname {
        #[serde(default)]
        nickname: String,
    },
    Message {
        #[serde(default)]
        text: String,
    },
}

/// Server to client, connection events included. `Cow`: the server sends borrowed text, the
/// client decodes owned text (`ToClient<'static>`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ToClient<'a> {
    /// The server's greeting.
    Connected,
    NameChanged {
        old_name: Cow<'a, str>,
        new_name: Cow<'a, str>,
    },
    System {
        text: Cow<'a, str>,
    },
    Players {
        list: Vec<Cow<'a, str>>,
    },
    Message {
        text: Cow<'a, str>,
        nickname: Cow<'a, str>,
    },
    /// The server refused something (`message`), or the connection failed (`error`, a local
    /// event).
    Error {
        message: Option<Cow<'a, str>>,
        error: Option<Cow<'a, str>>,
    },
    /// A local event: the connection ended.
    Disconnected,
}

// ---------------------------------------------------------------------------------------------
// The server

#[derive(Debug, Default)]
struct Player {
    nickname: Option<String>,
}

#[derive(Debug, Default)]
struct Chat;

impl ChannelHandler for Player {
    type Server = Chat;

    fn routes(r: &mut Routes<Self>) {
        r.on_enum(Self::handle);
    }
}

impl Player {
    fn name(&self) -> &str {
        self.nickname.as_deref().unwrap_or("Anonymous")
    }

    fn handle(&mut self, ctx: &mut ChannelCtx<'_, Self>, msg: ToServer) -> HandlerResult {
        match msg {
            ToServer::Nickname { nickname } => {
                let nickname = nickname.trim();
                if nickname.is_empty() || nickname.chars().count() > MAX_NICKNAME_CHARS {
                    refuse(ctx, "Invalid nickname");
                    return Ok(());
                }
                let text = match &self.nickname {
                    Some(old) => format!("{old} is now known as {nickname}"),
                    None => format!("{nickname} joined"),
                };
                ctx.send_to_all(&Typed(ToClient::NameChanged {
                    old_name: self.name().into(),
                    new_name: nickname.into(),
                }));
                self.nickname = Some(nickname.to_owned());
                ctx.send_to_all(&Typed(ToClient::System { text: text.into() }));
                let list = players(ctx, Some(self));
                ctx.send_to_all(&Typed(ToClient::Players { list }));
            }
            ToServer::Message { text } => {
                let text = text.trim();
                if text.is_empty() || text.chars().count() > MAX_MESSAGE_CHARS {
                    refuse(ctx, "Invalid message");
                    return Ok(());
                }
                ctx.send_to_all(&Typed(ToClient::Message {
                    text: text.into(),
                    nickname: self.name().into(),
                }));
            }
        }
        Ok(())
    }
}

/// Sends `error {"message": text}` to the sender only.
fn refuse(ctx: &mut ChannelCtx<'_, Player>, text: &str) {
    ctx.send(&Typed(ToClient::Error {
        message: Some(text.into()),
        error: None,
    }));
}

impl ServerHandler<Player> for Chat {
    fn on_disconnect(
        &mut self,
        ctx: &mut ServerCtx<'_, Player>,
        _: ChannelId,
        player: Player,
        _: &DisconnectReason,
    ) {
        if let Some(name) = &player.nickname {
            let text = format!("{name} left");
            ctx.send_to_all(&Typed(ToClient::System { text: text.into() }));
            let list = players(ctx, None);
            ctx.send_to_all(&Typed(ToClient::Players { list }));
        }
    }
}

/// The chosen nicknames, sorted (copied: the list is sent through the context it is read from).
fn players(ctx: &ServerCtx<'_, Player>, me: Option<&Player>) -> Vec<Cow<'static, str>> {
    let mut names: Vec<Cow<'static, str>> = ctx
        .channels()
        .map(|(_, p)| p)
        .chain(me)
        .filter_map(|p| p.nickname.clone().map(Cow::Owned))
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------------------------
// The client

/// How often the main loop pumps the network.
const FRAME: Duration = Duration::from_millis(10);
/// How long to keep showing answers after the end of input.
const GRACE: Duration = Duration::from_millis(300);

fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[derive(Debug)]
struct ChatClient {
    running: bool,
}

impl Listener for ChatClient {
    fn routes(r: &mut ClientRoutes<Self>) {
        r.on_enum(Self::handle);
    }
}

impl ChatClient {
    fn handle(&mut self, _: &mut ClientCtx<'_>, msg: ToClient<'static>) -> HandlerResult {
        match msg {
            ToClient::Connected => say("Connected to server!"),
            ToClient::NameChanged { .. } => {}
            ToClient::System { text } => say(&format!("SYSTEM: {text}")),
            ToClient::Players { list } => say(&format!("Players: {}", list.join(", "))),
            ToClient::Message { text, nickname } => say(&format!("{nickname}: {text}")),
            ToClient::Error {
                error: Some(reason),
                ..
            } => {
                // The connection failed.
                say(&format!("Error: {reason}"));
                self.running = false;
            }
            ToClient::Error { message, .. } => say(&format!(
                "Error: {}",
                message.as_deref().unwrap_or("Unknown error")
            )),
            ToClient::Disconnected => {
                say("Disconnected from server");
                self.running = false;
            }
        }
        Ok(())
    }
}

fn client(host: &str, port: u16) -> io::Result<()> {
    let mut client = Client::connect((host, port), ChatClient { running: true })?;
    say("Chat client started");
    let (lines_tx, lines) = mpsc::channel::<Option<String>>();
    std::thread::spawn(move || {
        for line in io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(Some(line)).is_err() {
                return;
            }
        }
        let _ = lines_tx.send(None);
    });

    say("Enter your nickname:");
    let mut have_nickname = false;
    let mut input_ended: Option<Instant> = None;
    while client.listener().running {
        loop {
            match lines.try_recv() {
                Ok(Some(nickname)) if !have_nickname => {
                    client.send(&Typed(ToServer::Nickname { nickname }));
                    have_nickname = true;
                    say("Type your messages (Ctrl-D to quit):");
                }
                Ok(Some(text)) => {
                    if !text.is_empty() {
                        client.send(&Typed(ToServer::Message { text }));
                    }
                }
                Ok(None) | Err(TryRecvError::Disconnected) => {
                    input_ended.get_or_insert_with(Instant::now);
                    break;
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        client.pump();
        if input_ended.is_some_and(|t| t.elapsed() >= GRACE) {
            break;
        }
        std::thread::sleep(FRAME);
    }
    if client.listener().running {
        client.close();
        let deadline = Instant::now() + Duration::from_secs(2);
        while client.listener().running && Instant::now() < deadline {
            client.pump();
            std::thread::sleep(FRAME);
        }
    }
    Ok(())
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let role = args.next().unwrap_or_default();
    let host = args.next().unwrap_or_else(|| "127.0.0.1".into());
    let port: u16 = args
        .next()
        .map_or(Ok(5071), |p| p.parse())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("bad port: {e}")))?;
    match role.as_str() {
        "server" => {
            let server = Server::<Player>::bind((host.as_str(), port), Chat)?;
            say(&format!(
                "listening on {host}:{}",
                server.local_addr().port()
            ));
            server.launch()
        }
        "client" => client(&host, port),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "usage: typed_chat server|client [HOST] [PORT]",
        )),
    }
}
