//! Seed 000's complete chat client, in Rust.
//!
//! ```text
//! cargo run --example chat_server -- 127.0.0.1 5071
//! cargo run --example chat_client -- [HOST] [PORT]      # defaults: 127.0.0.1 5071
//! ```
//!
//! The first line typed is the nickname, every later line a message. Prints what seed 000's
//! client prints: `Connected to server!`, `SYSTEM: ...`, `nick: text`, `Players: a, b`,
//! `Error: ...`, `Disconnected from server`. Talks to `examples/chat_server.rs` or to the same
//! server written in Python (`tests/python/chat_server.py`).
//!
//! As in the seed, standard input is read on its own thread, and the main loop (a game's frame
//! loop) pumps the network every 10 ms; the input thread hands lines over through a channel, so
//! the network is only touched from the main loop. Differences from the Python client, on
//! purpose:
//! - `Connected to server!` is printed once: our client sees one `connected` per connection
//!   (Python repod's sees two: its own and the server's greeting).
//! - The nickname can be typed at once: a message sent while connecting is delivered once the
//!   connection is up (Python's `send` returns 0 and drops it).
//! - An `error` sent by the server (`{"message": ...}`, such as `Invalid nickname`) is printed
//!   and the chat goes on; only a connection error (`{"error": ...}`) ends it.
//! - At the end of input (Ctrl-D, or the end of a pipe) it waits a moment for the answers to
//!   what was just sent, closes the connection cleanly and exits.

use std::io::{self, BufRead, Write};
use std::sync::mpsc::{self, TryRecvError};
use std::time::{Duration, Instant};

use repod::{msg, Client, ClientCtx, ClientRoutes, Error, HandlerResult, Listener, Message};

/// How often the main loop pumps the network.
const FRAME: Duration = Duration::from_millis(10);
/// How long to keep showing answers after the end of input.
const GRACE: Duration = Duration::from_millis(300);

/// Prints one line and flushes it at once, so a pipe sees it now.
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
        r.on("connected", |_, _, _| {
            say("Connected to server!");
            Ok(())
        });
        r.on("system", |_, _, m| {
            say(&format!("SYSTEM: {}", m.str("text")?));
            Ok(())
        });
        r.on("message", |_, _, m| {
            say(&format!("{}: {}", m.str("nickname")?, m.str("text")?));
            Ok(())
        });
        r.on("players", Self::players);
        r.on("error", Self::error);
        r.on("disconnected", |me, _, _| {
            say("Disconnected from server");
            me.running = false;
            Ok(())
        });
    }
}

impl ChatClient {
    fn players(&mut self, _: &mut ClientCtx<'_>, m: &Message<'_>) -> HandlerResult {
        let list = m
            .field("list")?
            .elements()
            .ok_or_else(|| Error::handler("players: \"list\" is not a list"))?;
        let names: Vec<&str> = list.filter_map(|f| f.as_str()).collect();
        say(&format!("Players: {}", names.join(", ")));
        Ok(())
    }

    fn error(&mut self, _: &mut ClientCtx<'_>, m: &Message<'_>) -> HandlerResult {
        if let Ok(reason) = m.str("error") {
            // The connection failed.
            say(&format!("Error: {reason}"));
            self.running = false;
        } else {
            // The server refused something; the chat goes on.
            say(&format!(
                "Error: {}",
                m.str("message").unwrap_or("Unknown error")
            ));
        }
        Ok(())
    }
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let host = args.next().unwrap_or_else(|| "127.0.0.1".into());
    let port: u16 = args
        .next()
        .map_or(Ok(5071), |p| p.parse())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("bad port: {e}")))?;

    // Stepped mode: no network thread; `pump` reads and writes the socket.
    let mut client = Client::connect((host.as_str(), port), ChatClient { running: true })?;
    say("Chat client started");

    // Lines typed, then `None` at the end of input.
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
                Ok(Some(line)) if !have_nickname => {
                    client.send(&msg! { "action": "nickname", "nickname": line.as_str() });
                    have_nickname = true;
                    say("Type your messages (Ctrl-D to quit):");
                }
                Ok(Some(line)) => {
                    if !line.is_empty() {
                        client.send(&msg! { "action": "message", "text": line.as_str() });
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
        // End of input: leave cleanly. Everything sent is still delivered before the close.
        client.close();
        let deadline = Instant::now() + Duration::from_secs(2);
        while client.listener().running && Instant::now() < deadline {
            client.pump();
            std::thread::sleep(FRAME);
        }
    }
    Ok(())
}
