//! A few lines of blocking HTTP that serve the files of `web/` to browsers, shared by the
//! examples with a browser page (`web_chat`, `arena_server`): a stand-in for whatever serves a
//! game's web build in production (a CDN, nginx), on its own thread.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// Serves `GET` requests for files under `root`, one connection at a time.
pub fn serve_files(listener: TcpListener, root: PathBuf, index: &'static str) {
    for stream in listener.incoming().flatten() {
        if let Err(e) = serve_file(stream, &root, index) {
            eprintln!("http: {e}");
        }
    }
}

fn serve_file(mut stream: TcpStream, root: &Path, index: &str) -> io::Result<()> {
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
    let path = if path == "/" { index } else { path };
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
