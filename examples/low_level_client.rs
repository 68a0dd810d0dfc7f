//! Seed 000's low-level client: connect, send, read the receive queue by hand, close.
//!
//! ```text
//! cargo run --example echo_server -- 127.0.0.1 5071 &
//! cargo run --example low_level_client -- 127.0.0.1:5071
//! ```

use std::time::Duration;

use repod::{msg, Connection};

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5071".into());
    // The network runs on a background thread, as in Python's `start_background()`.
    let mut client = Connection::connect_background(addr.as_str())?;
    client.send(&msg! { "action": "echo", "name": "Alice" });
    client.send(&msg! { "action": "ping" });
    // Read whatever arrives for a second.
    while let Some(m) = client.recv_timeout(Duration::from_secs(1)) {
        println!("Received: {m:?}");
        if m.action() == "error" {
            break;
        }
    }
    client.close();
    Ok(())
}
