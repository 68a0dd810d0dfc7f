//! A chat-sized echo server whose statistics are scraped by Prometheus.
//!
//! ```text
//! cargo run --example prometheus --features metrics -- [GAME_ADDR] [METRICS_ADDR]
//! curl http://127.0.0.1:9091/metrics
//! ```
//!
//! The library reports through the [`metrics`] facade (feature `metrics`): connections, accepts,
//! closes by reason, dropped frames by kind, messages, bytes, ticks and their overruns. Any
//! recorder plugs in; this one is `metrics-exporter-prometheus`, whose text format is served
//! here by a tiny scrape endpoint on its own thread, so the game's reactor never waits for a
//! scrape. Prints `game on ADDR` and `metrics on http://ADDR/metrics` once both are bound.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use repod::{ChannelHandler, Routes, Server};

#[derive(Default)]
struct Echo;

impl ChannelHandler for Echo {
    type Server = ();

    fn routes(r: &mut Routes<Self>) {
        r.on("echo", |_, ctx, m| {
            ctx.send(&m.with_action("echo_reply"));
            Ok(())
        });
    }
}

/// Answers every request on `listener` with the current scrape page.
fn serve_metrics(listener: TcpListener, metrics: PrometheusHandle) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        // Read the request head; whatever the path, the answer is the scrape page.
        let mut reader = BufReader::new(&stream);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
            line.clear();
        }
        let body = metrics.render();
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let game_addr = args.next().unwrap_or_else(|| "127.0.0.1:5071".into());
    let metrics_addr = args.next().unwrap_or_else(|| "127.0.0.1:9091".into());

    let recorder = PrometheusBuilder::new()
        .install_recorder()
        .map_err(std::io::Error::other)?;
    let server = Server::<Echo>::bind(game_addr.as_str(), ())?.tick_rate(30.0);
    println!("game on {}", server.local_addr());
    let scrape = TcpListener::bind(metrics_addr.as_str())?;
    println!("metrics on http://{}/metrics", scrape.local_addr()?);
    std::thread::spawn(move || serve_metrics(scrape, recorder));
    server.launch()
}
