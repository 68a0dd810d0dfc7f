//! The benchmark target: answers `echo` to its sender as `echo_reply`, and sends `broadcast` to
//! every client as `broadcast_reply`; ignores every other action.
//!
//! ```text
//! cargo run --release --example echo_server -- 127.0.0.1 5071
//! ```
//!
//! Prints `listening on HOST:PORT` once bound. Stops on Ctrl-C.

use repod::{ChannelHandler, Routes, Server};

#[derive(Default)]
struct Echo;

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
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let host = args.next().unwrap_or_else(|| "127.0.0.1".into());
    let port: u16 = args.next().map_or(Ok(5071), |p| p.parse()).map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bad port: {e}"))
    })?;
    let server = Server::<Echo>::bind((host.as_str(), port), ())?;
    println!("listening on {host}:{}", server.local_addr().port());
    server.launch()
}
