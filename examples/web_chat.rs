//! `chat_server`'s chat for browsers and terminals at once: one command serves the chat page
//! over HTTP, the chat over WebSocket for the page, and over TCP for `chat_client` (and Python
//! repod clients). Everyone is in the same room.
//!
//! ```text
//! cargo run --example web_chat -- [HOST] [HTTP_PORT] [TCP_PORT] [WS_PORT]
//!                                  # defaults: 127.0.0.1 8080 5071 5072 (0 picks free ports)
//! cargo run --example chat_client -- 127.0.0.1 5071
//! ```
//!
//! Prints `chat page on http://HOST:HTTP_PORT/chat.html?ws=ws://HOST:WS_PORT/`, then
//! `listening on HOST:TCP_PORT` and `websocket on HOST:WS_PORT`. Open the page in a browser.
//!
//! The page and `web/repod.js` are files of this repository, served from disk by a few lines
//! of blocking HTTP on their own thread: a stand-in for whatever serves a game's web build in
//! production (a CDN, nginx). The chat itself runs on repod's reactor like any server.

use std::io::{self, Write};
use std::net::TcpListener;
use std::path::Path;

use repod::Server;

mod chat;
mod web;
use chat::{Chat, Player};

fn port(arg: Option<&String>, default: u16) -> io::Result<u16> {
    match arg {
        Some(p) => p.parse().map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("bad port {p:?}: {e}"))
        }),
        None => Ok(default),
    }
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let host = args.first().cloned().unwrap_or_else(|| "127.0.0.1".into());
    let http_port = port(args.get(1), 8080)?;
    let tcp_port = port(args.get(2), 5071)?;
    let ws_port = port(args.get(3), 5072)?;

    let mut server = Server::<Player>::bind((host.as_str(), tcp_port), Chat)?;
    let ws = server.listen_ws((host.as_str(), ws_port))?;
    let http = TcpListener::bind((host.as_str(), http_port))?;
    let http_addr = http.local_addr()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || web::serve_files(http, root, "/chat.html"))?;

    println!(
        "chat page on http://{host}:{}/chat.html?ws=ws://{host}:{}/",
        http_addr.port(),
        ws.port()
    );
    println!("listening on {host}:{}", server.local_addr().port());
    println!("websocket on {host}:{}", ws.port());
    io::stdout().flush()?;
    server.launch()
}
