//! The benchmark target: answers `echo` to its sender as `echo_reply`, sends `broadcast` to
//! every client as `broadcast_reply`, answers `whoami` with the client's address and the
//! process id; ignores every other action.
//!
//! ```text
//! cargo run --release --example echo_server -- 127.0.0.1 5071 [--ws 5072]
//! ```
//!
//! Prints `listening on HOST:PORT` once bound and, with `--ws WSPORT`, `websocket on
//! HOST:WSPORT` once the WebSocket port is bound too (port 0 picks a free port; the real one is
//! printed). TCP and WebSocket clients share one world: a broadcast reaches both. Stops on
//! Ctrl-C or SIGTERM.

use std::net::SocketAddr;

use repod::{msg, ChannelCtx, ChannelHandler, Routes, Server};

struct Echo {
    addr: SocketAddr,
}

impl ChannelHandler for Echo {
    type Server = ();

    fn routes(r: &mut Routes<Self>) {
        // The reply copies every other field as raw bytes: no decoding, no allocation.
        r.on("echo", |_, ctx, m| {
            ctx.send(&m.with_action("echo_reply"));
            Ok(())
        });
        r.on("broadcast", |_, ctx, m| {
            ctx.send_to_all(&m.with_action("broadcast_reply"));
            Ok(())
        });
        r.on("whoami", |me, ctx: &mut ChannelCtx<'_, Self>, _| {
            let addr = me.addr.to_string();
            ctx.send(&msg! { "action": "whoami_reply", "addr": addr.as_str(), "pid": std::process::id() });
            Ok(())
        });
    }
}

fn usage(why: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("{why}\nusage: echo_server [HOST [PORT]] [--ws WSPORT]"),
    )
}

fn main() -> std::io::Result<()> {
    let mut positional = Vec::new();
    let mut ws_port = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--ws" => {
                let p = args.next().ok_or_else(|| usage("--ws needs a port"))?;
                ws_port = Some(
                    p.parse::<u16>()
                        .map_err(|e| usage(&format!("bad port: {e}")))?,
                );
            }
            _ => positional.push(arg),
        }
    }
    let host = positional
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1".into());
    let port: u16 = match positional.get(1) {
        Some(p) => p.parse().map_err(|e| usage(&format!("bad port: {e}")))?,
        None => 5071,
    };
    // The address `on_connect` saw, kept for `whoami`.
    let mut server =
        Server::<Echo>::bind_with((host.as_str(), port), (), |_, _, addr| Echo { addr })?;
    println!("listening on {host}:{}", server.local_addr().port());
    if let Some(ws_port) = ws_port {
        let bound = server.listen_ws((host.as_str(), ws_port))?;
        println!("websocket on {host}:{}", bound.port());
    }
    server.launch()
}
