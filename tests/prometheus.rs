//! The `metrics` feature: a server's figures reach whatever recorder the application installed.
//! Here the recorder is Prometheus's, as in `examples/prometheus.rs`, and the scrape page must
//! show the traffic a client really exchanged.
//!
//! Runs with `cargo test --features metrics --test prometheus` (CI does); without the feature
//! this file is empty.
#![cfg(feature = "metrics")]

#[path = "support/net.rs"]
mod net;

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use net::{wait_for, Peer};
use repod::{msg, Config};

/// The value of the sample `name` (a full series name, labels included) on the page.
fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn the_scrape_page_shows_the_traffic() {
    let recorder = PrometheusBuilder::new().install_recorder().unwrap();
    let probe = net::start(Config::default());
    let mut peer = Peer::greeted(probe.addr);
    for seq in 0..10u64 {
        peer.echo(seq);
    }
    peer.send_payload(b"\xc1"); // dropped: not msgpack
    let mut other = Peer::greeted(probe.addr);
    other.echo(1);
    drop(other);
    let handle = probe.handle();
    wait_for("the close", net::PROMPT, || handle.stats().closed == 1);
    let want = handle.stats();
    // Exported once a second from the reactor thread.
    wait_for("the export", Duration::from_secs(10), || {
        let page = recorder.render();
        sample(&page, "repod_messages_in_total") == Some(want.msgs_in as f64)
            && sample(&page, "repod_closed_total{reason=\"peer_closed\"}") == Some(1.0)
    });
    let page = recorder.render();
    for (name, value) in [
        ("repod_connections", 1.0),
        ("repod_accepted_total", 2.0),
        ("repod_messages_in_total", want.msgs_in as f64),
        ("repod_messages_out_total", want.msgs_out as f64),
        ("repod_bytes_in_total", want.bytes_in as f64),
        ("repod_bytes_out_total", want.bytes_out as f64),
        ("repod_frames_dropped_total{kind=\"invalid_msgpack\"}", 1.0),
        ("repod_closed_total{reason=\"heartbeat_timeout\"}", 0.0),
    ] {
        assert_eq!(sample(&page, name), Some(value), "{name} in\n{page}");
    }
    assert_eq!(want.msgs_in, 10 + 1 + 1, "{want:?}");
    peer.send(&msg! { "action": "echo", "seq": 99u8 });
}
