//! `chat_server`'s chat for browsers and terminals at once: one command serves the chat page
//! over HTTP, the chat over WebSocket for the page, and over TCP for `chat_client` (and Python
//! repod clients). Everyone is in the same room.
//!
//! ```text
//! cargo run --example web_chat -- [HOST] [HTTP_PORT] [TCP_PORT] [WS_PORT]
//!                                  [--tls-cert FILE --tls-key FILE]
//!                                  # defaults: 127.0.0.1 8080 5071 5072 (0 picks free ports)
//! cargo run --example chat_client -- 127.0.0.1 5071
//! ```
//!
//! Prints `chat page on http://HOST:HTTP_PORT/chat.html?ws=ws://HOST:WS_PORT/`, then
//! `listening on HOST:TCP_PORT` and `websocket on HOST:WS_PORT`. Open the page in a browser.
//! With `--tls-cert` and `--tls-key` (PEM chain and key) the TCP port speaks TLS and the
//! WebSocket port `wss` (the page URL then says `ws=wss://...`); SIGHUP re-reads the files.
//!
//! The page and `web/repod.js` are files of this repository, served from disk by a few lines
//! of blocking HTTP on their own thread: a stand-in for whatever serves a game's web build in
//! production (a CDN, nginx). The chat itself runs on repod's reactor like any server.

use std::io::{self, Write};
use std::net::TcpListener;
use std::path::Path;

use repod::tls::TlsAcceptor;
use repod::{Listen, Server};

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
    let mut args = Vec::new();
    let (mut tls_cert, mut tls_key) = (None, None);
    let mut argv = std::env::args().skip(1);
    while let Some(arg) = argv.next() {
        match arg.as_str() {
            "--tls-cert" => tls_cert = argv.next(),
            "--tls-key" => tls_key = argv.next(),
            _ => args.push(arg),
        }
    }
    let host = args.first().cloned().unwrap_or_else(|| "127.0.0.1".into());
    let http_port = port(args.get(1), 8080)?;
    let tcp_port = port(args.get(2), 5071)?;
    let ws_port = port(args.get(3), 5072)?;
    let tls = match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => Some(
            TlsAcceptor::from_pem_files(cert, key)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
        ),
        (None, None) => None,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "--tls-cert and --tls-key go together",
            ))
        }
    };
    let listen = |port: u16| match &tls {
        Some(tls) => Listen::on((host.as_str(), port)).tls(tls.clone()),
        None => Listen::on((host.as_str(), port)),
    };
    let scheme = if tls.is_some() { "wss" } else { "ws" };

    let mut server = Server::<Player>::bind(listen(tcp_port), Chat)?;
    let ws = server.listen_ws(listen(ws_port))?;
    let http = TcpListener::bind((host.as_str(), http_port))?;
    let http_addr = http.local_addr()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || web::serve_files(http, root, "/chat.html"))?;

    println!(
        "chat page on http://{host}:{}/chat.html?ws={scheme}://{host}:{}/",
        http_addr.port(),
        ws.port()
    );
    println!("listening on {host}:{}", server.local_addr().port());
    println!("websocket on {host}:{}", ws.port());
    io::stdout().flush()?;
    server.launch()
}
