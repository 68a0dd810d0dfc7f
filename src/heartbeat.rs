//! Heartbeats: how each side finds out that the other one is gone, and how far away it is.
//!
//! A peer that vanishes without a FIN (Wi-Fi lost, a laptop lid closed, NAT state expired, a
//! process frozen) leaves a connection that looks open forever. With
//! [`Config::heartbeat`](crate::Config::heartbeat) set, the reactor sends every connection a
//! ping message each interval and closes any connection from which nothing at all (a pong or
//! any other message) arrived within the timeout, with
//! [`DisconnectReason::HeartbeatTimeout`](crate::DisconnectReason::HeartbeatTimeout). The
//! pong's delay is the connection's round-trip time, [`ConnStats::rtt`](crate::ConnStats::rtt).
//!
//! The messages are ordinary repod messages, so they cross TCP and WebSocket alike:
//!
//! ```text
//! {"action": "_ping", "t": <u64>}   answered at once by   {"action": "_pong", "t": <same>}
//! ```
//!
//! `t` is the sender's clock in microseconds; the answer only echoes it. Every repod peer in
//! this crate (server, [`Client`](crate::Client), [`Connection`](crate::Connection)) and
//! `web/repod.js` answer pings by themselves, whether or not their own heartbeat is on, and
//! never show `_ping` or `_pong` to the application's handlers.
//!
//! **Python repod** peers do not know these messages: a ping reaches their `Network_ping`
//! handler if it has one (none of ours is called that) or else `network_received`, which
//! ignores it by default. So a Python peer is never disturbed by our pings, but does not answer
//! them either: against Python peers, either keep the heartbeat off (kernel keepalive,
//! [`Config::keepalive`](crate::Config::keepalive), works with every peer) or add the two-line
//! answer to the Python side:
//!
//! ```python
//! def Network__ping(self, data):
//!     self.send({"action": "_pong", "t": data["t"]})
//! ```

use crate::message::Message;

/// The action of a ping.
pub const PING: &str = "_ping";
/// The action of a pong.
pub const PONG: &str = "_pong";

/// A heartbeat message, recognised in a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Beat {
    /// A ping, with the stamp to echo.
    Ping(Option<u64>),
    /// The answer to one of our pings, with our stamp.
    Pong(Option<u64>),
}

/// Heartbeats are tiny: a frame longer than this is never one, and costs no parsing here.
const MAX_BEAT_LEN: usize = 64;

/// Recognises a heartbeat in a frame's payload. Ordinary messages pay a length check and a
/// short scan for the `_p` of `"_ping"`/`"_pong"`, not a parse.
#[inline]
pub(crate) fn classify(payload: &[u8]) -> Option<Beat> {
    if payload.len() > MAX_BEAT_LEN {
        return None;
    }
    classify_short(payload)
}

fn classify_short(payload: &[u8]) -> Option<Beat> {
    match crate::session::leading_action(payload) {
        Some(action) if action != b"_ping" && action != b"_pong" => return None,
        Some(_) => {}
        None if !payload.windows(3).any(|w| w == b"\xa5_p") => return None,
        None => {}
    }
    let m = Message::parse(payload).ok()?;
    let stamp = || m.u64("t").ok();
    match m.action() {
        PING => Some(Beat::Ping(stamp())),
        PONG => Some(Beat::Pong(stamp())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::Encode;
    use crate::msg;

    fn bytes(e: &impl Encode) -> Vec<u8> {
        let mut b = Vec::new();
        e.encode(&mut b);
        b
    }

    #[test]
    fn recognises_pings_and_pongs() {
        let ping = bytes(&msg! { "action": "_ping", "t": 12345u64 });
        assert_eq!(classify(&ping), Some(Beat::Ping(Some(12345))));
        let pong = bytes(&msg! { "t": u64::MAX, "action": "_pong" });
        assert_eq!(classify(&pong), Some(Beat::Pong(Some(u64::MAX))));
        let bare = bytes(&msg! { "action": "_ping" });
        assert_eq!(classify(&bare), Some(Beat::Ping(None)));
    }

    #[test]
    fn ignores_everything_else() {
        for m in [
            bytes(&msg! { "action": "chat", "text": "_pong" }),
            bytes(&msg! { "action": "_pingx", "t": 1u8 }),
            bytes(&msg! { "text": "_ping" }),
            b"\xa5_ping".to_vec(),
            vec![0xc1; 10],
        ] {
            assert_eq!(classify(&m), None, "{m:?}");
        }
        let long = "x".repeat(100);
        assert_eq!(
            classify(&bytes(&msg! { "action": "_ping", "pad": long.as_str() })),
            None
        );
    }
}
