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

use repod::Server;

mod chat;
use chat::{Chat, Player};

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
