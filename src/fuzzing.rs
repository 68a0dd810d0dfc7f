//! Entry points for the fuzz targets in `fuzz/` (not part of the public API).
//!
//! The wire layer knows nothing of sockets, so one connection's whole receive path runs here on
//! a byte slice: bytes go through the real [`FrameDecoder`], each frame through
//! [`Message::parse_with_depth`], then a small route table (the server's own `ActionTable`) picks
//! a handler that reads fields the way game code does and encodes its reply with the crate's
//! encoder ([`msg!`](crate::msg), [`Message::with_action`], [`rmpv::Value`]), framed as the
//! reactor frames it. What the reactor adds on top is socket I/O and timing, which the
//! loopback tests in `tests/` cover.
//!
//! Every invariant is an `assert!`: a panic here is a bug for the fuzzer to report.

use std::ops::ControlFlow;

use crate::dispatch::ActionTable;
use crate::encode::Encode;
use crate::frame::{self, FrameDecoder, HEADER_LEN};
use crate::message::Field;
use crate::{msg, Bin, Error, HandlerResult, Message};

/// What one run of [`receive_path`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Complete frames decoded.
    pub frames: usize,
    /// Their payload bytes, in total.
    pub payload_bytes: usize,
    /// Frames routed to a handler.
    pub routed: usize,
    /// Valid messages with no route (the `network_received` fallback).
    pub fallback: usize,
    /// Frames dropped because they failed validation.
    pub dropped: usize,
    /// Handlers that returned an error (a missing or mistyped field).
    pub handler_errors: usize,
    /// The connection was closed: by a length prefix over the maximum, or by the `quit` action.
    pub closed: bool,
    /// The reply frames, as they would have been queued for the socket.
    pub replies: Vec<u8>,
}

/// The settings a run uses, taken from the first bytes of the fuzzer's input.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How the input is cut into reads: 0 = one read, 1 = one byte per read, `n` = reads of
    /// pseudo-random sizes in `1..=n`.
    pub chunking: u8,
    /// [`Config::max_depth`](crate::Config::max_depth).
    pub max_depth: usize,
    /// [`Config::max_frame_len`](crate::Config::max_frame_len).
    pub max_frame_len: usize,
}

impl Settings {
    /// Splits a fuzzer input into settings and the byte stream: three header bytes (chunking,
    /// depth, frame limit in units of 64 bytes, 0 meaning the default 8 MiB).
    pub fn split(data: &[u8]) -> (Settings, &[u8]) {
        match data {
            [c, d, f, rest @ ..] => (
                Settings {
                    chunking: *c,
                    max_depth: 1 + usize::from(*d % 40),
                    max_frame_len: match *f {
                        0 => crate::config::DEFAULT_MAX_FRAME_LEN,
                        n => usize::from(n) * 64,
                    },
                },
                rest,
            ),
            _ => (
                Settings {
                    chunking: 0,
                    max_depth: crate::message::DEFAULT_MAX_DEPTH,
                    max_frame_len: crate::config::DEFAULT_MAX_FRAME_LEN,
                },
                data,
            ),
        }
    }

    /// The sizes of the successive reads of an `len`-byte stream.
    pub fn chunks(&self, len: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut left = len;
        let mut seed = u32::from(self.chunking).wrapping_mul(2_654_435_761) | 1;
        while left > 0 {
            let n = match self.chunking {
                0 => left,
                1 => 1,
                max => {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    1 + (seed % u32::from(max)) as usize
                }
            };
            let n = n.min(left);
            out.push(n);
            left -= n;
        }
        out
    }
}

/// The state of one connection, as a game's channel type would hold it.
#[derive(Debug, Default)]
struct Player {
    name: String,
    x: f64,
    y: f64,
    team: u32,
    messages: u64,
}

/// Where handlers write their replies: framed, with the limit the reactor applies to sends.
struct Out<'a> {
    buf: &'a mut Vec<u8>,
    max_frame_len: usize,
    quit: bool,
}

impl Out<'_> {
    fn send<E: Encode + ?Sized>(&mut self, msg: &E) {
        let before = self.buf.len();
        match frame::encode_frame_with(self.buf, self.max_frame_len, |b| msg.encode(b)) {
            Ok(n) => assert_eq!(self.buf.len(), before + n),
            // An oversize reply is refused and leaves nothing behind.
            Err(Error::FrameTooLarge { .. }) => assert_eq!(self.buf.len(), before),
            Err(e) => panic!("unexpected send error: {e}"),
        }
    }
}

type Handler = fn(&mut Player, &mut Out<'_>, &Message<'_>) -> HandlerResult;

fn routes() -> ActionTable<Handler> {
    let mut t: ActionTable<Handler> = ActionTable::default();
    t.insert("echo", |_, out, m| {
        out.send(&m.with_action("echo_reply"));
        Ok(())
    });
    t.insert("move", |me, out, m| {
        me.x = m.f64("x")?;
        me.y = m.f64("y")?;
        let dx = m.i32("dx").unwrap_or(0);
        let dy = m.i64("dy").unwrap_or(0);
        out.send(&msg! { "action": "moved", "x": me.x, "y": me.y, "d": (dx, dy) });
        Ok(())
    });
    t.insert("join", |me, out, m| {
        me.name = m.str("name")?.to_owned();
        me.team = m.u32("team")?;
        let ready = m.bool("ready").unwrap_or(false);
        let seq = m.u64("seq").unwrap_or(0);
        out.send(&msg! {
            "action": "joined", "name": &me.name, "team": me.team, "ready": ready, "seq": seq,
            "players": [&me.name[..], "bot"], "spawn": msg! { "x": me.x, "y": me.y },
        });
        Ok(())
    });
    t.insert("chat", |me, out, m| {
        let text = m.str("text")?;
        let blob = m.bin("blob").unwrap_or(&[]);
        out.send(&msg! {
            "action": "chat", "from": &me.name, "text": text, "blob": Bin(blob),
            "n": me.messages, "none": None::<u8>,
        });
        Ok(())
    });
    t.insert("state", |_, out, m| {
        // The owned route: an rmpv::Value, re-encoded as it is.
        let v = m.to_value();
        assert!(v.is_map(), "a message's value is a map: {v}");
        out.send(&v);
        Ok(())
    });
    t.insert("walk", |_, out, m| {
        let mut count = 0u64;
        walk(m.as_field(), &mut count);
        out.send(&msg! { "action": "walked", "values": count });
        Ok(())
    });
    t.insert("quit", |_, out, _| {
        out.send(&msg! { "action": "bye" });
        out.quit = true;
        Ok(())
    });
    t
}

/// Calls every accessor on `f` and on everything inside it.
fn walk(f: Field<'_>, count: &mut u64) {
    *count += 1;
    assert!(!f.raw().is_empty());
    let _ = (f.is_nil(), f.as_bool(), f.as_i64(), f.as_u64(), f.as_f64());
    let _ = (f.as_str(), f.as_bin());
    if let Some(items) = f.elements() {
        let n = items.len();
        let mut seen = 0;
        for item in items {
            walk(item, count);
            seen += 1;
        }
        assert_eq!(seen, n, "an array yields as many items as it announces");
    }
    if let Some(entries) = f.entries() {
        let n = entries.len();
        let mut seen = 0;
        for (k, v) in entries {
            walk(k, count);
            walk(v, count);
            if let Some(key) = k.as_str() {
                assert!(f.get(key).is_some(), "a key present is found");
            }
            seen += 1;
        }
        assert_eq!(seen, n, "a map yields as many entries as it announces");
    }
}

/// Runs one connection's receive path over `data` (see the [module documentation](self)):
/// settings from the first three bytes ([`Settings::split`]), then the byte stream, cut into
/// reads as the settings say.
///
/// # Panics
///
/// When an invariant breaks: a frame over the limit, more payload than input, a validation
/// error that is not a frame-level case, a reply that is not a valid frame and message.
pub fn receive_path(data: &[u8]) -> Outcome {
    let (settings, stream) = Settings::split(data);
    run(settings, stream)
}

/// [`receive_path`] with explicit settings.
///
/// # Panics
///
/// As [`receive_path`].
pub fn run(settings: Settings, stream: &[u8]) -> Outcome {
    let routes = routes();
    let mut decoder = FrameDecoder::new(settings.max_frame_len);
    let mut player = Player::default();
    let mut outcome = Outcome::default();
    let mut replies = Vec::new();
    let mut offset = 0;
    let mut quit = false;
    for n in settings.chunks(stream.len()) {
        let read = &stream[offset..offset + n];
        offset += n;
        let result = decoder.decode(read, |payload| {
            outcome.frames += 1;
            outcome.payload_bytes += payload.len();
            assert!(
                payload.len() <= settings.max_frame_len,
                "frame over the limit"
            );
            let mut out = Out {
                buf: &mut replies,
                max_frame_len: settings.max_frame_len,
                quit: false,
            };
            match Message::parse_with_depth(payload, settings.max_depth) {
                Ok(m) => {
                    player.messages += 1;
                    let result = match routes.get(m.action()) {
                        Some(handler) => {
                            outcome.routed += 1;
                            handler(&mut player, &mut out, &m)
                        }
                        None => {
                            outcome.fallback += 1;
                            out.send(&msg! { "action": "unknown", "was": m.action() });
                            Ok(())
                        }
                    };
                    if let Err(e) = result {
                        assert!(
                            matches!(e, Error::MissingField { .. } | Error::WrongType { .. }),
                            "handlers only fail on fields: {e}"
                        );
                        outcome.handler_errors += 1;
                    }
                }
                Err(e) => {
                    assert!(!e.is_fatal(), "a bad payload only drops its frame: {e}");
                    assert!(!e.to_string().is_empty());
                    outcome.dropped += 1;
                }
            }
            if out.quit {
                quit = true;
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        match result {
            Ok(()) if quit => {
                outcome.closed = true;
                break;
            }
            Ok(()) => {}
            Err(e) => {
                assert!(
                    matches!(e, Error::FrameTooLarge { len, max } if len > max && max == settings.max_frame_len),
                    "the decoder only fails on an oversize prefix: {e}"
                );
                outcome.closed = true;
                break;
            }
        }
    }
    assert!(
        outcome.payload_bytes + outcome.frames * HEADER_LEN <= stream.len(),
        "more frame bytes than input"
    );
    assert!(decoder.buffered() <= HEADER_LEN + settings.max_frame_len);
    check_replies(&replies, &settings);
    outcome.replies = replies;
    outcome
}

/// Every reply is a whole frame within the limit, and a valid message with an action.
fn check_replies(replies: &[u8], settings: &Settings) {
    let mut decoder = FrameDecoder::new(settings.max_frame_len);
    let mut count = 0;
    decoder
        .decode(replies, |payload| {
            count += 1;
            // Replies nest at most one level deeper than the request they answer.
            let m = Message::parse_with_depth(payload, settings.max_depth + 1)
                .unwrap_or_else(|e| panic!("reply {count} is not a valid message: {e}"));
            assert!(m.has_action(), "reply {count} has no action");
            ControlFlow::Continue(())
        })
        .expect("replies are within the frame limit");
    assert_eq!(decoder.buffered(), 0, "replies are whole frames");
}

/// The `frame_decoder` target: decodes `data` (after the [`Settings`] bytes) once as one read
/// and once cut into reads as the settings say, and checks that both give the same frames and
/// the same outcome, that no frame exceeds the limit, that the frames account for no more than
/// the input (re-encoding them gives back exactly the bytes consumed), that the decoder holds
/// only the unconsumed tail, and that stopping after the first frame stops delivery.
///
/// # Panics
///
/// When one of those invariants breaks.
pub fn frame_decoder(data: &[u8]) -> usize {
    let (settings, stream) = Settings::split(data);
    let max = settings.max_frame_len;
    let collect = |reads: &[usize]| {
        let mut decoder = FrameDecoder::new(max);
        let mut frames: Vec<Vec<u8>> = Vec::new();
        let mut result = Ok(());
        let mut offset = 0;
        let mut peak_capacity = 0;
        for &n in reads {
            result = decoder.decode(&stream[offset..offset + n], |payload| {
                assert!(
                    payload.len() <= max,
                    "frame of {} over {max}",
                    payload.len()
                );
                frames.push(payload.to_vec());
                ControlFlow::Continue(())
            });
            offset += n;
            peak_capacity = peak_capacity.max(decoder.capacity());
            if result.is_err() {
                break;
            }
        }
        // The partial buffer grows with what arrived, never to an announced length.
        assert!(
            peak_capacity <= 2 * (HEADER_LEN + max).max(16 * 1024),
            "decoder capacity {peak_capacity} for frames of at most {max}"
        );
        (frames, result.map(|()| decoder.buffered()))
    };
    let (whole, whole_result) = collect(&[stream.len()]);
    let (chunked, chunked_result) = collect(&settings.chunks(stream.len()));
    assert_eq!(whole, chunked, "chunking changed the frames");
    let mut wire = Vec::new();
    for f in &whole {
        frame::encode_frame(&mut wire, f).expect("a decoded frame re-encodes");
    }
    assert!(wire.len() <= stream.len(), "more frame bytes than input");
    assert_eq!(
        wire[..],
        stream[..wire.len()],
        "frames are the input's prefix"
    );
    match (&whole_result, &chunked_result) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b);
            assert_eq!(*a, stream.len() - wire.len(), "the decoder holds the tail");
        }
        (
            Err(Error::FrameTooLarge { len: a, max: m }),
            Err(Error::FrameTooLarge { len: b, .. }),
        ) => {
            assert_eq!(a, b, "the same prefix is rejected");
            assert!(*a > max && *m == max);
            // The rejected prefix is the one right after the last frame.
            let at = wire.len();
            let prefix = u32::from_be_bytes(stream[at..at + HEADER_LEN].try_into().unwrap());
            assert_eq!(prefix as usize, *a);
        }
        (a, b) => panic!("whole: {a:?}, chunked: {b:?}"),
    }
    // Break stops delivery at once (the rest of that read is discarded).
    let mut decoder = FrameDecoder::new(max);
    let mut first = None;
    let mut offset = 0;
    for n in settings.chunks(stream.len()) {
        let r = decoder.decode(&stream[offset..offset + n], |payload| {
            assert!(first.is_none(), "a frame delivered after Break");
            first = Some(payload.to_vec());
            ControlFlow::Break(())
        });
        offset += n;
        if r.is_err() || first.is_some() {
            break;
        }
    }
    assert_eq!(first.as_ref(), whole.first());
    whole.len()
}

/// The `message` target: [`Message::parse`] never panics, rejects exactly what a reference
/// decoder (rmpv plus repod's rules: a map at the top, UTF-8 strings, at most
/// [`DEFAULT_MAX_DEPTH`](crate::message::DEFAULT_MAX_DEPTH) levels, string `"action"` values)
/// rejects, and for valid maps every accessor agrees with the reference ([`check_message`]).
///
/// # Panics
///
/// When parsing and the reference disagree, or an accessor misbehaves.
pub fn message(data: &[u8]) -> bool {
    let depth = crate::message::DEFAULT_MAX_DEPTH;
    let parsed = Message::parse(data);
    let reference = reference_decode(data, depth);
    match (&parsed, &reference) {
        (Ok(m), Some(v)) => check_message(m, v),
        (Err(e), None) => {
            assert!(!e.is_fatal(), "a bad payload only drops its frame: {e}");
            assert!(!e.to_string().is_empty());
        }
        (Ok(m), None) => panic!("accepted, but the reference rejects it: {m:?}"),
        (Err(e), Some(v)) => panic!("rejected ({e}), but the reference accepts {v}"),
    }
    // A tighter depth limit never accepts more.
    if let Ok(m) = Message::parse_with_depth(data, 2) {
        assert!(parsed.is_ok());
        assert_eq!(m.action(), parsed.as_ref().unwrap().action());
    }
    parsed.is_ok()
}

/// What repod should accept, decided with rmpv: one whole map, UTF-8 strings, nesting within
/// `max_depth`, and an `"action"` value that is a string (the last one, when the key repeats:
/// Python builds a dict, where the last one wins).
fn reference_decode(data: &[u8], max_depth: usize) -> Option<rmpv::Value> {
    fn ok(v: &rmpv::Value, depth: usize, max: usize) -> bool {
        match v {
            rmpv::Value::String(s) => s.is_str(),
            rmpv::Value::Array(items) => {
                depth <= max && items.iter().all(|i| ok(i, depth + 1, max))
            }
            rmpv::Value::Map(entries) => {
                depth <= max
                    && entries
                        .iter()
                        .all(|(k, v)| ok(k, depth + 1, max) && ok(v, depth + 1, max))
            }
            _ => true,
        }
    }
    let mut rest = data;
    let v = rmpv::decode::read_value(&mut rest).ok()?;
    if has_reserved_marker(data) {
        return None; // rmpv reads 0xc1 as nil; msgpack (and Python) reject it
    }
    let entries = v.as_map()?;
    let fine = rest.is_empty()
        && ok(&v, 1, max_depth)
        && entries
            .iter()
            .rev()
            .find(|(k, _)| k.as_str() == Some("action"))
            .is_none_or(|(_, v)| v.is_str());
    fine.then_some(v)
}

/// Whether the one msgpack value at the start of `data` (well-formed otherwise: rmpv read it)
/// holds the reserved marker 0xc1 anywhere.
fn has_reserved_marker(data: &[u8]) -> bool {
    use rmp::Marker;
    let be = |at: usize, n: usize| -> usize {
        data[at..at + n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    let (mut pos, mut pending) = (0usize, 1usize);
    while pending > 0 {
        pending -= 1;
        let marker = Marker::from_u8(data[pos]);
        pos += 1;
        let (children, skip) = match marker {
            Marker::Reserved => return true,
            Marker::U8 | Marker::I8 => (0, 1),
            Marker::U16 | Marker::I16 => (0, 2),
            Marker::U32 | Marker::I32 | Marker::F32 => (0, 4),
            Marker::U64 | Marker::I64 | Marker::F64 => (0, 8),
            Marker::FixStr(n) => (0, usize::from(n)),
            Marker::Str8 | Marker::Bin8 => (0, 1 + be(pos, 1)),
            Marker::Str16 | Marker::Bin16 => (0, 2 + be(pos, 2)),
            Marker::Str32 | Marker::Bin32 => (0, 4 + be(pos, 4)),
            Marker::FixExt1 => (0, 2),
            Marker::FixExt2 => (0, 3),
            Marker::FixExt4 => (0, 5),
            Marker::FixExt8 => (0, 9),
            Marker::FixExt16 => (0, 17),
            Marker::Ext8 => (0, 2 + be(pos, 1)),
            Marker::Ext16 => (0, 3 + be(pos, 2)),
            Marker::Ext32 => (0, 5 + be(pos, 4)),
            Marker::FixArray(n) => (usize::from(n), 0),
            Marker::Array16 => (be(pos, 2), 2),
            Marker::Array32 => (be(pos, 4), 4),
            Marker::FixMap(n) => (2 * usize::from(n), 0),
            Marker::Map16 => (2 * be(pos, 2), 2),
            Marker::Map32 => (2 * be(pos, 4), 4),
            _ => (0, 0),
        };
        pos += skip;
        pending += children;
    }
    false
}

/// Checks every accessor of a valid message against `reference`, its value as rmpv decodes
/// it: entries, typed getters, the action, `to_value`, `to_owned`, and the `with_action`
/// round trip.
///
/// # Panics
///
/// When an accessor disagrees with the reference.
pub fn check_message(m: &Message<'_>, reference: &rmpv::Value) {
    let ref_entries = reference.as_map().expect("a map");
    assert_same(&m.to_value(), reference, "to_value");
    assert_eq!(m.entries().len(), ref_entries.len());
    let mut walked = 0;
    walk(m.as_field(), &mut walked);
    for ((k, v), (rk, rv)) in m.entries().zip(ref_entries) {
        assert_same(&k.to_value(), rk, "key");
        check_field(v, rv);
        let Some(key) = rk.as_str() else { continue };
        // Lookups find the last entry with a key, as Python's dict does.
        let last = ref_entries
            .iter()
            .rev()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
            .unwrap();
        let got = m.get(key).expect("a present key is found");
        assert_same(&got.to_value(), last, key);
        assert_eq!(m.str(key).ok(), last.as_str());
        assert_eq!(m.bool(key).ok(), last.as_bool());
        assert_eq!(m.i64(key).ok(), last.as_i64());
        assert_eq!(m.u64(key).ok(), last.as_u64());
        assert_eq!(
            m.i32(key).ok(),
            last.as_i64().and_then(|n| n.try_into().ok())
        );
        assert_eq!(
            m.u32(key).ok(),
            last.as_u64().and_then(|n| n.try_into().ok())
        );
        let bin = match last {
            rmpv::Value::Binary(b) => Some(&b[..]),
            _ => None,
        };
        assert_eq!(m.bin(key).ok(), bin);
        assert_eq!(
            m.f64(key).ok().map(f64::to_bits),
            last.as_f64().map(f64::to_bits)
        );
        assert!(m.field(key).is_ok());
    }
    // The action: the last "action" key's value, or "" when there is none.
    let action = ref_entries
        .iter()
        .rev()
        .find(|(k, _)| k.as_str() == Some("action"))
        .map(|(_, v)| v.as_str().expect("checked by the reference"));
    assert_eq!(m.has_action(), action.is_some(), "has_action");
    assert_eq!(m.action(), action.unwrap_or(""), "action");
    assert!(m.get("\u{0}no such key\u{0}").is_none());
    assert!(matches!(
        m.str("\u{0}no such key\u{0}"),
        Err(Error::MissingField { .. })
    ));
    // The owned copy is the same message.
    let owned = m.to_owned();
    assert_eq!(owned.payload(), m.payload());
    assert_same(&owned.to_value(), reference, "owned");
    assert_eq!(owned.action(), m.action());
    let _ = format!("{m:?} {owned:?}");
    // with_action: the action replaced (or added), every other entry kept, in order.
    for new_action in ["", "fuzz", "a longer action name than thirty-one bytes"] {
        let mut buf = Vec::new();
        m.with_action(new_action).encode(&mut buf);
        let r = Message::parse_with_depth(&buf, usize::MAX)
            .unwrap_or_else(|e| panic!("with_action({new_action:?}) is not valid: {e}"));
        assert_eq!(r.action(), new_action);
        assert!(r.has_action());
        let others: Vec<_> = ref_entries
            .iter()
            .filter(|(k, _)| k.as_str() != Some("action"))
            .collect();
        let got = r.to_value();
        let got = got.as_map().unwrap();
        assert_eq!(got.len(), others.len() + 1);
        assert_eq!(got[0].0.as_str(), Some("action"));
        for ((gk, gv), (rk, rv)) in got[1..].iter().zip(others) {
            assert_same(gk, rk, "with_action key");
            assert_same(gv, rv, "with_action value");
        }
    }
}

/// Equal values, NaNs included: compared by their canonical encoding.
fn assert_same(a: &rmpv::Value, b: &rmpv::Value, what: &str) {
    if a != b {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        a.encode(&mut x);
        b.encode(&mut y);
        assert_eq!(x, y, "{what}: {a} != {b}");
    }
}

/// One field against its reference value, recursively.
fn check_field(f: Field<'_>, r: &rmpv::Value) {
    assert_same(&f.to_value(), r, "field");
    assert_eq!(f.is_nil(), r.is_nil());
    assert_eq!(f.as_bool(), r.as_bool());
    assert_eq!(f.as_i64(), r.as_i64());
    assert_eq!(f.as_u64(), r.as_u64());
    assert_eq!(f.as_f64().map(f64::to_bits), r.as_f64().map(f64::to_bits));
    assert_eq!(f.as_str(), r.as_str());
    match (f.elements(), r.as_array()) {
        (Some(items), Some(ritems)) => {
            assert_eq!(items.len(), ritems.len());
            for (i, ri) in items.zip(ritems) {
                check_field(i, ri);
            }
        }
        (None, None) => {}
        (a, b) => panic!("elements: {a:?} vs {b:?}"),
    }
    match (f.entries(), r.as_map()) {
        (Some(entries), Some(rentries)) => {
            assert_eq!(entries.len(), rentries.len());
            for ((k, v), (rk, rv)) in entries.zip(rentries) {
                check_field(k, rk);
                check_field(v, rv);
            }
        }
        (None, None) => {}
        (a, b) => panic!("entries: {a:?} vs {b:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(msgs: &[&dyn Encode]) -> Vec<u8> {
        let mut s = Vec::new();
        for m in msgs {
            let mut p = Vec::new();
            m.encode(&mut p);
            frame::encode_frame(&mut s, &p).unwrap();
        }
        s
    }

    #[test]
    fn every_route_runs_and_replies() {
        let s = stream(&[
            &msg! { "action": "join", "name": "ann", "team": 2, "ready": true },
            &msg! { "action": "move", "x": 1.5, "y": -2, "dx": 3 },
            &msg! { "action": "chat", "text": "hi", "blob": Bin(b"\x00") },
            &msg! { "action": "echo", "seq": 1 },
            &msg! { "action": "state", "list": [1, 2] },
            &msg! { "action": "walk", "m": msg! { "a": ((), true) } },
            &msg! { "action": "other" },
            &msg! { "action": "move" },
            &msg! { "action": "quit" },
            &msg! { "action": "echo", "seq": 2 },
        ]);
        for chunking in [0, 1, 2, 7, 200] {
            let settings = Settings {
                chunking,
                max_depth: 32,
                max_frame_len: 1024,
            };
            let o = run(settings, &s);
            assert_eq!(o.frames, 9, "the frame after quit is not handled");
            assert_eq!((o.routed, o.fallback, o.handler_errors), (8, 1, 1));
            assert!(o.closed);
        }
    }

    /// The seed corpus made with repod's own encoder: (target, name, bytes).
    fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
        fn enc(m: &dyn Encode) -> Vec<u8> {
            let mut p = Vec::new();
            m.encode(&mut p);
            p
        }
        let ext = rmpv::Value::Map(vec![
            ("action".into(), "state".into()),
            ("ext".into(), rmpv::Value::Ext(5, vec![1, 2, 3, 4])),
            ("f32".into(), rmpv::Value::F32(-0.5)),
            (rmpv::Value::from(-7), rmpv::Value::Binary(vec![0; 300])),
        ]);
        let good: Vec<Vec<u8>> = vec![
            enc(&msg! { "action": "join", "name": "ann", "team": 2, "ready": true, "seq": 9 }),
            enc(&msg! { "action": "move", "x": 1.5, "y": -2, "dx": 3, "dy": i64::MIN }),
            enc(&msg! { "action": "chat", "text": "h\u{e9}llo", "blob": Bin(&[0, 255]) }),
            enc(&msg! { "action": "echo", "seq": u64::MAX, "pos": (1.0f32, -1, "x") }),
            enc(&msg! { "action": "walk", "m": msg! { "a": ((), true, [1u8, 2]) }, 3: 4 }),
            enc(&msg! { "action": "nobody", "text": "x".repeat(40) }),
            enc(&msg! { "text": "no action" }),
            enc(&ext),
            b"\xdf\x00\x00\x00\x01\xa6action\xda\x00\x04echo".to_vec(),
        ];
        let bad: Vec<Vec<u8>> = vec![
            b"\xc1".to_vec(),
            b"".to_vec(),
            b"\x93\x01\x02\x03".to_vec(),
            b"\x81\xa1s\xa2\xff\xfe".to_vec(),
            b"\x81\xa6action\x05".to_vec(),
            b"\xdf\xff\xff\xff\xff\xa1a\x01\xa1b".to_vec(),
            [b"\x81\xa1d".as_slice(), &[0x91; 40], b"\xc0"].concat(),
        ];
        let mut out = Vec::new();
        for (i, p) in good.iter().chain(&bad).enumerate() {
            out.push(("message", format!("rs_{i}"), p.clone()));
        }
        let mut stream = Vec::new();
        for p in good.iter().chain(&bad) {
            frame::encode_frame(&mut stream, p).unwrap();
        }
        let quit = enc(&msg! { "action": "quit" });
        let mut with_quit = Vec::new();
        frame::encode_frame(&mut with_quit, &quit).unwrap();
        with_quit.extend_from_slice(&stream);
        let mut oversize = stream.clone();
        oversize.extend_from_slice(&[0, 0, 0x20, 0, 1, 2, 3]);
        for (target, settings) in [
            ("frame_decoder", [0u8, 31, 0]),
            ("receive_path", [0, 31, 0]),
        ] {
            let with = |s: [u8; 3], body: &[u8]| [s.as_slice(), body].concat();
            out.push((target, "rs_stream".into(), with(settings, &stream)));
            out.push((target, "rs_bytewise".into(), with([1, 31, 0], &stream)));
            out.push((target, "rs_chunked".into(), with([13, 4, 0], &stream)));
            out.push((target, "rs_oversize".into(), with([9, 31, 8], &oversize)));
            out.push((target, "rs_quit".into(), with([2, 31, 0], &with_quit)));
            out.push((
                target,
                "rs_partial".into(),
                with([0, 31, 0], &stream[..stream.len() - 3]),
            ));
        }
        out
    }

    fn corpus_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
    }

    /// Rewrites the `rs_*` seeds of `fuzz/corpus` (the `py_*` ones come from
    /// `fuzz/make_python_seeds.py`).
    #[test]
    #[ignore = "writes files: run by hand after changing the seeds"]
    fn regenerate_seed_corpus() {
        for (target, name, bytes) in seeds() {
            let dir = corpus_dir().join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("{name}.bin")), bytes).unwrap();
        }
    }

    /// Every seed in the corpus (and any reproducer added there) passes its target's checks,
    /// so `cargo test` covers them without a nightly toolchain.
    #[test]
    fn seed_corpus_passes() {
        fn check(target: &str, data: &[u8]) {
            match target {
                "frame_decoder" => {
                    frame_decoder(data);
                }
                "message" => {
                    message(data);
                }
                _ => {
                    receive_path(data);
                }
            }
        }
        for target in ["frame_decoder", "message", "receive_path"] {
            let Ok(dir) = std::fs::read_dir(corpus_dir().join(target)) else {
                continue; // not in a packaged crate
            };
            for entry in dir {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                let r = std::panic::catch_unwind(|| check(target, &data));
                assert!(r.is_ok(), "{} fails", path.display());
            }
        }
        for (target, _, data) in seeds() {
            check(target, &data);
        }
    }

    #[test]
    fn bad_input_is_dropped_or_closes() {
        let mut s = Vec::new();
        frame::encode_frame(&mut s, b"\xc1").unwrap();
        frame::encode_frame(&mut s, b"\x91\x01").unwrap();
        s.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
        let o = receive_path(&[[3, 31, 1].as_slice(), &s].concat());
        assert_eq!((o.frames, o.dropped), (2, 2));
        assert!(o.closed);
        assert!(o.replies.is_empty());
        // Too short for settings: defaults.
        assert_eq!(receive_path(b"\x00"), Outcome::default());
    }
}
