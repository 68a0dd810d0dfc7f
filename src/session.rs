//! Sessions that survive a dropped link: the wire, as plain functions on message bytes.
//!
//! A server with a resume window ([`Config::resume_window`](crate::Config::resume_window))
//! offers every connection a session, and a client that speaks sessions (repod's
//! [`Client`](crate::Client) and `web/repod.js`) takes it. When the link then drops (a reset,
//! a timeout, an error: not a close), the server keeps the channel *away* instead of closing
//! it, and the client reconnects and resumes: each side replays what the other one did not
//! receive, so across any number of drops every message is handled once, in order.
//!
//! All of it is ordinary repod messages, so a client in any language can implement it:
//!
//! | message | direction | meaning |
//! |---|---|---|
//! | `{"action": "connected", "session": TOKEN}` | server → client | the greeting; TOKEN is 32 hex digits (128 random bits). A client that knows nothing of sessions ignores the key. |
//! | `{"action": "_ack", "received": n}` | both | "I have received n of your session messages". A client sends its first ack at once on the greeting: that is how it asks for the session. |
//! | `{"action": "resume", "session": TOKEN, "received": n}` | client → server | the first message on a new link, after a drop |
//! | `{"action": "resumed", "received": m, "session": TOKEN}` | server → client | the session is back on this link; the server replays after your n-th message, you replay after your m-th; use the new TOKEN from now on |
//! | `{"action": "resume_failed", "reason": TEXT}` | server → client | unknown or expired session, or one that can no longer be replayed; the link goes on as the new session of its own greeting |
//!
//! **Counting.** Each side counts the session messages it received from the other. The
//! greeting and the control messages (`_ack`, `resume`, `resumed`, `resume_failed`, and the
//! heartbeats `_ping` and `_pong`) are never counted; everything else is, in order. The server
//! counts a client's messages from the start of the link; the client counts the server's from
//! after the greeting.
//!
//! **Acknowledgements.** Each side acknowledges, cumulatively, after [`ACK_EVERY`] messages or
//! at most [`ACK_DELAY`] after the first unacknowledged one, whichever comes first (repod's
//! timer runs on from the first message after an ack round, so under steady traffic an ack by
//! time can come sooner than that). (How often is each
//! side's own choice: the other side only releases what an ack covers. An ack costs about what
//! a message does: going from every 32 to every 64 messages gained about 2% of pipelined
//! throughput, BENCHMARKS-HISTORY.md; `web/repod.js` acknowledges every 32.) An ack lets the
//! other side release what it kept for replay. The server sends acks only to a client that has
//! sent one: a peer that never asked for sessions (Python repod) gets nothing new but the
//! greeting's extra key.
//!
//! **Drop or close.** A reset, a read or write error, or a heartbeat or keepalive timeout is a
//! drop: the session waits for its client. The end of the stream (a FIN: the peer's system
//! closed the socket, whether or not a WebSocket close frame or TLS `close_notify` came first)
//! is a close, and ends the session: a process that exits, a tab that closes, leaves at once.

use std::time::Duration;

use crate::message::Message;

/// The action of an acknowledgement.
pub const ACK: &str = "_ack";
/// The action a client resumes a session with, as its first message on a new link.
pub const RESUME: &str = "resume";
/// The action of a successful resume's answer.
pub const RESUMED: &str = "resumed";
/// The action of a failed resume's answer, and of the client's event for it.
pub const RESUME_FAILED: &str = "resume_failed";
/// The action of the client's event before each reconnection attempt.
pub const RECONNECTING: &str = "reconnecting";

/// A side acknowledges at the latest after this many messages.
pub const ACK_EVERY: u64 = 64;
/// A side acknowledges at the latest this long after the first message it has not yet
/// acknowledged.
pub const ACK_DELAY: Duration = Duration::from_millis(200);

/// A session token: 32 lowercase hex digits.
pub(crate) type Token = [u8; 32];

/// A fresh token: 128 bits from the operating system's random source.
pub(crate) fn new_token() -> Token {
    let mut raw = [0u8; 16];
    if getrandom::fill(&mut raw).is_err() {
        // No random source at all is not something a server can go on without safely.
        panic!("repod: the operating system's random source failed");
    }
    let mut token = [0u8; 32];
    for (i, b) in raw.iter().enumerate() {
        token[2 * i] = HEX[(b >> 4) as usize];
        token[2 * i + 1] = HEX[(b & 15) as usize];
    }
    token
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A token received on the wire, if it has the form of one.
pub(crate) fn parse_token(s: &str) -> Option<Token> {
    let b = s.as_bytes();
    if b.len() != 32 || !b.iter().all(|c| HEX.contains(c)) {
        return None;
    }
    let mut t = [0u8; 32];
    t.copy_from_slice(b);
    Some(t)
}

/// A session control message, recognised in a frame's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control<'a> {
    /// `_ack`: the peer received this many of our session messages.
    Ack(u64),
    /// `resume`: a client asks for its session back.
    Resume {
        /// The session's token, as sent (checked by the caller).
        token: &'a str,
        /// The session messages the client received.
        received: u64,
    },
    /// `resumed`: the server gave the session back.
    Resumed {
        /// The client's session messages the server received.
        received: u64,
        /// The token to use from now on.
        token: &'a str,
    },
    /// `resume_failed`, with the server's reason.
    ResumeFailed(&'a str),
    /// A control message whose fields are missing or wrong.
    Malformed(&'static str),
}

/// Control messages are short: a longer frame is never one, and costs no parsing here.
const MAX_CONTROL_LEN: usize = 256;

/// Whether `payload` is certainly an ordinary message: neither a session control message nor a
/// heartbeat. Both kinds have actions that begin with `_` or `r`, so a message whose `"action"`
/// is its first key (every message of repod's, of Python repod's and of repod.js) is told by one
/// byte of it, with one look for both kinds instead of one each. `false` means "look closer"
/// ([`classify`], [`crate::heartbeat::classify`]).
#[inline(always)]
pub(crate) fn is_ordinary(payload: &[u8]) -> bool {
    // The layout of nearly every message, a small map whose first key is "action" and whose
    // action is a short string, is told by one word and two bytes; any other, by the walk.
    if let Some(head) = payload.first_chunk::<10>() {
        let (word, [marker, first]) = (
            u64::from_le_bytes(*head.first_chunk().unwrap()),
            [head[8], head[9]],
        );
        if word & !0x0f == u64::from_le_bytes(*b"\x80\xa6action")
            && marker & 0xe0 == 0xa0
            && payload.len() >= 9 + usize::from(marker & 0x1f)
        {
            return marker != 0xa0 && first != b'_' && first != b'r';
        }
    }
    is_ordinary_laid_out_otherwise(payload)
}

#[inline(never)]
pub(crate) fn is_ordinary_laid_out_otherwise(payload: &[u8]) -> bool {
    matches!(
        leading_action(payload).and_then(<[u8]>::first),
        Some(&b) if b != b'_' && b != b'r'
    )
}

/// Recognises a session control message. Ordinary messages pay a length check and a look at
/// their first key (a scan of the payload when `"action"` is not first), not a parse.
pub(crate) fn classify(payload: &[u8]) -> Option<Control<'_>> {
    if payload.len() > MAX_CONTROL_LEN {
        return None;
    }
    if let Some(n) = ack_as_written(payload) {
        return Some(Control::Ack(n));
    }
    match leading_action(payload) {
        Some(action) if !is_control_action(action) => return None,
        Some(_) => {}
        None if !might_be_control(payload) => return None,
        None => {}
    }
    let m = Message::parse(payload).ok()?;
    let received = || m.u64("received").ok();
    Some(match m.action() {
        ACK => received().map_or(
            Control::Malformed("_ack without \"received\""),
            Control::Ack,
        ),
        RESUME => match (m.str("session"), received()) {
            (Ok(token), Some(received)) => Control::Resume { token, received },
            _ => Control::Malformed("resume without \"session\" and \"received\""),
        },
        RESUMED => match (m.str("session"), received()) {
            (Ok(token), Some(received)) => Control::Resumed { received, token },
            _ => Control::Malformed("resumed without \"session\" and \"received\""),
        },
        RESUME_FAILED => Control::ResumeFailed(m.str("reason").unwrap_or("")),
        _ => return None,
    })
}

/// The count of an acknowledgement laid out as repod, repod.js and msgpack encoders in general
/// write it, `{"action": "_ack", "received": n}` in that order with `n` an unsigned integer, read
/// without a parse; `None` for anything else (which [`classify`] then parses). One arrives per
/// [`ACK_EVERY`] messages, so its parse showed in the cost of a session's every message.
fn ack_as_written(payload: &[u8]) -> Option<u64> {
    let rest = payload.strip_prefix(b"\x82\xa6action\xa4_ack\xa8received")?;
    let (&marker, rest) = rest.split_first()?;
    let (n, len) = match marker {
        0x00..=0x7f => (u64::from(marker), 0),
        0xcc => (u64::from(*rest.first()?), 1),
        0xcd => (
            u64::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?)),
            2,
        ),
        0xce => (
            u64::from(u32::from_be_bytes(rest.get(..4)?.try_into().ok()?)),
            4,
        ),
        0xcf => (u64::from_be_bytes(rest.get(..8)?.try_into().ok()?), 8),
        _ => return None,
    };
    (rest.len() == len).then_some(n)
}

/// Whether `action` is one of the session's control actions (first byte first: ordinary
/// actions are told apart without a comparison).
#[inline]
fn is_control_action(action: &[u8]) -> bool {
    match action.first() {
        Some(b'_') => action == ACK.as_bytes(),
        Some(b'r') => {
            action == RESUME.as_bytes()
                || action == RESUMED.as_bytes()
                || action == RESUME_FAILED.as_bytes()
        }
        _ => false,
    }
}

/// The action of a message whose first key is `"action"` (as repod, repod.js and most
/// encoders write it), read without parsing the message; `None` when the payload is laid out
/// otherwise (then the caller looks harder). Whatever it returns is the message's action if
/// the message is valid at all.
#[inline]
pub(crate) fn leading_action(payload: &[u8]) -> Option<&[u8]> {
    let rest = match *payload.first()? {
        0x80..=0x8f => &payload[1..],
        0xde => payload.get(3..)?,
        0xdf => payload.get(5..)?,
        _ => return None,
    };
    let rest = rest.strip_prefix(b"\xa6action")?;
    let (&marker, rest) = rest.split_first()?;
    match marker {
        0xa0..=0xbf => rest.get(..usize::from(marker & 0x1f)),
        0xd9 => {
            let (&len, rest) = rest.split_first()?;
            rest.get(..usize::from(len))
        }
        _ => None,
    }
}

fn might_be_control(payload: &[u8]) -> bool {
    payload.windows(4).any(|w| w == b"_ack" || w == b"resu")
}

/// Whether a message of ours is one the peer counts: not a session control message, not a
/// heartbeat. Used on our own output, to find where the peer's n-th message ends.
#[inline(always)]
pub(crate) fn is_counted(payload: &[u8]) -> bool {
    is_ordinary(payload) || is_counted_unless_control(payload)
}

/// [`is_counted`] for what is not certainly ordinary.
#[inline(never)]
fn is_counted_unless_control(payload: &[u8]) -> bool {
    if let Some(action) = leading_action(payload) {
        // Our own messages are well formed, so their action decides, as it does for the peer
        // on receipt; no parse.
        return !(is_control_action(action) && payload.len() <= MAX_CONTROL_LEN)
            && crate::heartbeat::classify(payload).is_none();
    }
    classify(payload).is_none() && crate::heartbeat::classify(payload).is_none()
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
    fn tokens_are_32_hex_digits_and_differ() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        let s = std::str::from_utf8(&a).unwrap();
        assert_eq!(parse_token(s), Some(a));
        assert_eq!(parse_token("abc"), None);
        assert_eq!(parse_token(&"G".repeat(32)), None);
    }

    #[test]
    fn an_acknowledgement_read_as_written_agrees_with_its_parse() {
        let parsed = |b: &[u8]| Message::parse(b).unwrap().u64("received").unwrap();
        for n in [
            0,
            1,
            127,
            128,
            255,
            256,
            65_535,
            65_536,
            u64::from(u32::MAX),
            u64::from(u32::MAX) + 1,
            u64::MAX,
        ] {
            let b = bytes(&msg! { "action": "_ack", "received": n });
            assert_eq!(ack_as_written(&b), Some(n), "{n}");
            assert_eq!(parsed(&b), n);
            // Wider than needed, as some encoders write: the same count.
            let mut wide = b"\x82\xa6action\xa4_ack\xa8received\xcf".to_vec();
            wide.extend_from_slice(&n.to_be_bytes());
            assert_eq!(ack_as_written(&wide), Some(n));
            assert_eq!(parsed(&wide), n);
            assert_eq!(classify(&wide), Some(Control::Ack(n)));
        }
        // Anything else is left to the parse, which still reads it.
        let reordered = bytes(&msg! { "received": 5u64, "action": "_ack" });
        assert_eq!(ack_as_written(&reordered), None);
        assert_eq!(classify(&reordered), Some(Control::Ack(5)));
        let mut longer = bytes(&msg! { "action": "_ack", "received": 5u64 });
        longer.push(0xc0);
        assert_eq!(ack_as_written(&longer), None, "a trailing byte");
        let cut = bytes(&msg! { "action": "_ack", "received": 300u64 });
        assert_eq!(ack_as_written(&cut[..cut.len() - 1]), None, "a short count");
        let signed = b"\x82\xa6action\xa4_ack\xa8received\xd0\x05";
        assert_eq!(ack_as_written(signed), None);
    }

    #[test]
    fn recognises_control_messages() {
        let t = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            classify(&bytes(&msg! { "action": "_ack", "received": 7u64 })),
            Some(Control::Ack(7))
        );
        assert_eq!(
            classify(&bytes(
                &msg! { "received": 3u64, "session": t, "action": "resume" }
            )),
            Some(Control::Resume {
                token: t,
                received: 3
            })
        );
        assert_eq!(
            classify(&bytes(
                &msg! { "action": "resumed", "received": 0u64, "session": t }
            )),
            Some(Control::Resumed {
                received: 0,
                token: t
            })
        );
        assert_eq!(
            classify(&bytes(
                &msg! { "action": "resume_failed", "reason": "expired" }
            )),
            Some(Control::ResumeFailed("expired"))
        );
        assert!(matches!(
            classify(&bytes(&msg! { "action": "_ack" })),
            Some(Control::Malformed(_))
        ));
    }

    #[test]
    fn the_leading_action_is_read_without_parsing() {
        assert_eq!(
            leading_action(&bytes(&msg! { "action": "move", "x": 1 })),
            Some(&b"move"[..])
        );
        assert_eq!(
            leading_action(&bytes(&msg! { "x": 1, "action": "move" })),
            None
        );
        let long = "a".repeat(40);
        assert_eq!(
            leading_action(&bytes(&msg! { "action": long.as_str() })),
            Some(long.as_bytes())
        );
        assert_eq!(leading_action(b"\x81\xa6action\xa4_ac"), None, "cut short");
        // Not first: found by the scan.
        assert_eq!(
            classify(&bytes(&msg! { "received": 2u8, "action": "_ack" })),
            Some(Control::Ack(2))
        );
    }

    #[test]
    fn ordinary_messages_are_counted() {
        for m in [
            bytes(&msg! { "action": "chat", "text": "_ack resume" }),
            bytes(&msg! { "action": "resumes" }),
            bytes(&msg! { "action": "back" }),
        ] {
            assert_eq!(classify(&m), None);
            assert!(is_counted(&m));
        }
        assert!(!is_counted(&bytes(&msg! { "action": "_ping", "t": 1u8 })));
        assert!(!is_counted(&bytes(
            &msg! { "action": "_ack", "received": 1u8 }
        )));
        let long = "x".repeat(300);
        assert!(is_counted(&bytes(
            &msg! { "action": "_ack", "pad": long.as_str() }
        )));
    }

    #[test]
    fn one_byte_of_the_action_tells_most_messages_ordinary() {
        assert!(is_ordinary(&bytes(&msg! { "action": "move", "x": 1 })));
        assert!(is_ordinary(&bytes(
            &msg! { "action": "chat", "text": "_ack" }
        )));
        // Actions that begin like a control message or a heartbeat's need a closer look, and
        // so does a message whose action is not its first key, or that has none.
        for m in [
            bytes(&msg! { "action": "_ack", "received": 1u8 }),
            bytes(&msg! { "action": "_ping" }),
            bytes(&msg! { "action": "resume" }),
            bytes(&msg! { "action": "ready" }),
            bytes(&msg! { "action": "" }),
            bytes(&msg! { "x": 1, "action": "move" }),
            bytes(&msg! { "x": 1 }),
            Vec::new(),
        ] {
            assert!(!is_ordinary(&m), "{m:?}");
        }
        // "ready" is still counted, after the closer look.
        assert!(is_counted(&bytes(&msg! { "action": "ready" })));
    }

    /// The word-at-once look of the usual layout agrees with the walk on every message and on
    /// every prefix of one (a truncated action among them), whatever its action's length.
    #[test]
    fn the_usual_layout_read_at_once_agrees_with_the_walk() {
        let mut payloads = Vec::new();
        for action in [
            "", "a", "_", "r", "mv", "move", "_ack", "resume", "x", "ready",
        ] {
            payloads.push(bytes(&msg! { "action": action }));
            payloads.push(bytes(&msg! { "action": action, "x": 1 }));
        }
        for len in [7, 8, 30, 31, 32, 200] {
            let action = "m".repeat(len);
            payloads.push(bytes(&msg! { "action": action.as_str(), "n": 2 }));
        }
        // A map of 16 entries or more has another header; a key first that is not "action".
        let mut wide = vec![0xde, 0, 16, 0xa6];
        wide.extend_from_slice(b"action\xa4move");
        payloads.push(wide);
        payloads.push(bytes(&msg! { "actiox": "move" }));
        for p in &payloads {
            for end in 0..=p.len() {
                let q = &p[..end];
                assert_eq!(is_ordinary(q), is_ordinary_laid_out_otherwise(q), "{q:?}");
            }
        }
    }
}
