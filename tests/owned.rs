//! Owned messages are `Bytes` slices: the messages a `Connection` receives together share one
//! buffer (in background mode, the network thread's own, uncopied), clone without copying, and
//! cross threads.

#[path = "support/net.rs"]
mod net;

use std::time::{Duration, Instant};

use net::PROMPT;
use repod::{msg, Config, Connection, Mode, OwnedMessage};

/// Receives until `n` messages named `bulk` arrived.
fn bulk(conn: &mut Connection, n: usize) -> Vec<OwnedMessage> {
    let mut got = Vec::new();
    let deadline = Instant::now() + PROMPT;
    while got.len() < n && Instant::now() < deadline {
        if let Some(m) = conn.recv_timeout(Duration::from_millis(50)) {
            if m.action() == "bulk" {
                got.push(m);
            }
        }
    }
    assert_eq!(got.len(), n, "bulk messages received");
    got
}

#[test]
fn messages_received_together_share_one_buffer() {
    let probe = net::start(Config::default());
    for mode in [Mode::Background, Mode::Stepped] {
        let mut conn = Connection::connect_with(probe.addr, mode, Config::default()).unwrap();
        // Ten messages queued by one handler leave in one write and arrive in one read.
        conn.send(&msg! { "action": "bulk", "count": 10, "size": 8 });
        let got = bulk(&mut conn, 10);
        // In background mode each payload still sits behind its length prefix in the network
        // thread's buffer; in stepped mode they were copied out of the read buffer together.
        let gap = if mode == Mode::Background { 4 } else { 0 };
        let mut adjacent = 0;
        for pair in got.windows(2) {
            let (a, b) = (pair[0].payload(), pair[1].payload());
            if a.as_ptr() as usize + a.len() + gap == b.as_ptr() as usize {
                adjacent += 1;
            }
        }
        // A read may split the burst in two; the messages of each part share a buffer.
        assert!(
            adjacent >= 8,
            "{mode:?}: only {adjacent} of 9 neighbours share a buffer"
        );
        for (seq, m) in got.iter().enumerate() {
            assert_eq!(m.message().u64("seq").unwrap(), seq as u64);
        }

        // A clone shares the payload; a message crosses threads as it is.
        let kept = got[3].clone();
        assert_eq!(kept.payload().as_ptr(), got[3].payload().as_ptr());
        let seq = std::thread::spawn(move || kept.message().u64("seq").unwrap())
            .join()
            .unwrap();
        assert_eq!(seq, 3);
        let bytes = got[5].clone().into_bytes();
        assert_eq!(OwnedMessage::parse(bytes).unwrap(), got[5]);
        conn.close();
    }
}
