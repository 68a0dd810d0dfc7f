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

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use repod::Server;

mod chat;
use chat::{Chat, Player};

/// Serves `GET` requests for files under `root`, one connection at a time.
fn serve_files(listener: TcpListener, root: PathBuf) {
    for stream in listener.incoming().flatten() {
        if let Err(e) = serve_file(stream, &root) {
            eprintln!("http: {e}");
        }
    }
}

fn serve_file(mut stream: TcpStream, root: &Path) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // The rest of the head is not needed; read it so the browser sees a clean close.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let path = if path == "/" { "/chat.html" } else { path };
    // Only plain components: no `..`, no absolute paths out of the web folder.
    let relative = Path::new(path.trim_start_matches('/'));
    let safe = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    let file = root.join(relative);
    let body = match (method, safe) {
        ("GET", true) => std::fs::read(&file).ok(),
        _ => None,
    };
    let Some(body) = body else {
        let msg = b"not found\n";
        write!(
            stream,
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            msg.len()
        )?;
        return stream.write_all(msg);
    };
    let kind = match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css",
        Some("png") => "image/png",
        _ => "text/plain; charset=utf-8",
    };
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(&body)
}

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
        .spawn(move || serve_files(http, root))?;

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
