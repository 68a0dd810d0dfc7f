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
//! The WebSocket layer ([`crate::ws`]) is sans-IO as well: [`websocket`] runs its frame decoder
//! against a plain reference decoder ([`reference_ws_decode`]) and its handshake parsers at
//! every prefix of their input.
//!
//! Every invariant is an `assert!`: a panic here is a bug for the fuzzer to report.

use std::ops::ControlFlow;

use crate::dispatch::ActionTable;
use crate::encode::Encode;
use crate::frame::{self, FrameDecoder, HEADER_LEN};
use crate::message::Field;
use crate::ws::handshake::{self, HandshakeError};
use crate::ws::{encode_close, encode_frame, MaskKeys, Opcode, Role, WsDecoder, WsEvent};
use crate::{msg, Bin, Error, HandlerResult, Message, WsError, WsOptions};

/// A PROXY protocol header: arbitrary bytes (after one settings byte, the v2 cap) parsed at
/// every prefix, as the reactor does while they arrive. Once a prefix decides (a header or a
/// refusal), every longer one decides the same; a header never exceeds its cap, and its
/// length and client address match a plain reference reading of the bytes.
pub fn proxy_header(data: &[u8]) -> Option<crate::proxy::ProxyHeader> {
    use crate::proxy::{self, ProxyError};
    let (&setting, stream) = data.split_first()?;
    let max = 52 + setting as usize * 8;
    let mut first: Option<Result<Option<proxy::ProxyHeader>, ProxyError>> = None;
    for k in 1..=stream.len() {
        let r = proxy::parse(&stream[..k], max);
        match &first {
            None if r == Ok(None) => {
                assert!(k < proxy::V1_MAX_LEN.max(max), "undecided past every cap")
            }
            None => first = Some(r),
            Some(f) => assert_eq!(&r, f, "prefix {k} changed the answer"),
        }
    }
    let header = match first {
        Some(Ok(Some(h))) => h,
        _ => return None,
    };
    assert!(header.len <= stream.len());
    assert_eq!(
        header,
        reference_proxy(&stream[..header.len]),
        "the reference disagrees"
    );
    if stream.starts_with(b"PROXY ") {
        assert!(header.len <= proxy::V1_MAX_LEN);
    } else {
        assert!(header.len <= max);
    }
    Some(header)
}

/// A plain reading of a header the parser accepted: v1 split on spaces, v2 by byte offsets.
fn reference_proxy(header: &[u8]) -> crate::proxy::ProxyHeader {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    let source = if let Some(line) = header.strip_prefix(b"PROXY ") {
        let line = std::str::from_utf8(line).expect("v1 is text");
        let fields: Vec<&str> = line.trim_end_matches("\r\n").split(' ').collect();
        match fields[0] {
            "UNKNOWN" => None,
            "TCP4" | "TCP6" => {
                let ip: IpAddr = fields[1].parse().expect("a source address");
                let port: u16 = fields[3].parse().expect("a source port");
                Some(SocketAddr::new(ip, port))
            }
            other => panic!("accepted protocol {other:?}"),
        }
    } else {
        assert_eq!(
            header.len(),
            16 + u16::from_be_bytes([header[14], header[15]]) as usize
        );
        match (header[12] & 0x0f, header[13] >> 4) {
            (0, _) | (1, 0) => None,
            (1, 1) => {
                let ip = Ipv4Addr::new(header[16], header[17], header[18], header[19]);
                Some(SocketAddr::new(
                    ip.into(),
                    u16::from_be_bytes([header[24], header[25]]),
                ))
            }
            (1, 2) => {
                let octets: [u8; 16] = header[16..32].try_into().unwrap();
                let ip = Ipv6Addr::from(octets);
                Some(SocketAddr::new(
                    ip.into(),
                    u16::from_be_bytes([header[48], header[49]]),
                ))
            }
            other => panic!("accepted command and family {other:?}"),
        }
    };
    crate::proxy::ProxyHeader {
        len: header.len(),
        source,
    }
}

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
    // A session's look at a message's layout, a word at once, agrees with its walk.
    assert_eq!(
        crate::session::is_ordinary(data),
        crate::session::is_ordinary_laid_out_otherwise(data)
    );
    if let (true, Ok(m)) = (crate::session::is_ordinary(data), &parsed) {
        // (A key repeated: the parse takes the last, the look the first.)
        let actions = m.entries().filter(|(k, _)| k.as_str() == Some("action"));
        if actions.count() == 1 {
            assert!(!m.action().is_empty() && !m.action().starts_with(['_', 'r']));
        }
    }
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

// ---------------------------------------------------------------------------------------------
// WebSocket: the `websocket` target.
// ---------------------------------------------------------------------------------------------

/// What the `websocket` target does with its input, taken from the first three bytes (see
/// [`WsSettings::split`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsSettings {
    /// How the byte stream is cut into reads, as [`Settings::chunking`].
    pub chunking: u8,
    /// Which end decodes: a server (frames must be masked) or a client (none may be).
    pub role: Role,
    /// The stream starts with an HTTP head: an upgrade request (server) or its answer
    /// (client); frames follow it once it is accepted.
    pub handshake: bool,
    /// Server: the listener's path is `/game` (else `/`).
    pub game_path: bool,
    /// Server: only `http://good.example` may connect (an `Origin` allow-list).
    pub origin_list: bool,
    /// Re-encoded messages are cut into fragments, with pings between them.
    pub fragment: bool,
    /// [`WsOptions::max_handshake_len`]; also the client's bound on the answer.
    pub max_handshake_len: usize,
    /// Largest message ([`Config::max_frame_len`](crate::Config::max_frame_len)).
    pub max_message_len: usize,
}

impl WsSettings {
    /// Splits a fuzzer input into settings and the byte stream. Byte 0: chunking. Byte 1, bit
    /// 0: client role; bit 1: an HTTP head first; bit 2: path `/game`; bit 3: an origin
    /// allow-list; bit 4: fragment when re-encoding; bits 5-7: `n`, the handshake limit is
    /// `64 << n` bytes (0: the default 16 KiB). Byte 2: the message limit in units of 16 bytes
    /// (0: the default 8 MiB). Inputs shorter than three bytes use the defaults.
    pub fn split(data: &[u8]) -> (WsSettings, &[u8]) {
        let (c, f, m, rest) = match data {
            [c, f, m, rest @ ..] => (*c, *f, *m, rest),
            _ => (0, 0, 0, data),
        };
        let settings = WsSettings {
            chunking: c,
            role: if f & 1 != 0 {
                Role::Client
            } else {
                Role::Server
            },
            handshake: f & 2 != 0,
            game_path: f & 4 != 0,
            origin_list: f & 8 != 0,
            fragment: f & 16 != 0,
            max_handshake_len: match f >> 5 {
                0 => crate::ws::DEFAULT_MAX_HANDSHAKE_LEN,
                n => 64 << n,
            },
            max_message_len: match m {
                0 => crate::config::DEFAULT_MAX_FRAME_LEN,
                n => usize::from(n) * 16,
            },
        };
        (settings, rest)
    }

    /// The listener's options.
    pub fn options(&self) -> WsOptions {
        let mut o = WsOptions::default()
            .path(if self.game_path { "/game" } else { "/" })
            .max_handshake_len(self.max_handshake_len);
        if self.origin_list {
            o = o.allowed_origins(["http://good.example"]);
        }
        o
    }

    fn chunks(&self, len: usize) -> Vec<usize> {
        Settings {
            chunking: self.chunking,
            max_depth: 1,
            max_frame_len: 0,
        }
        .chunks(len)
    }
}

/// The key a fuzzed client sent, for the answers it parses (RFC 6455's example).
pub const WS_FUZZ_KEY: &[u8; 24] = b"dGhlIHNhbXBsZSBub25jZQ==";

/// A decoded WebSocket event, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsOwned {
    /// A binary message.
    Binary(Vec<u8>),
    /// A text message.
    Text(String),
    /// A ping.
    Ping(Vec<u8>),
    /// A pong.
    Pong(Vec<u8>),
    /// A close frame: its code and reason.
    Close(Option<u16>, String),
}

impl WsOwned {
    fn of(e: &WsEvent<'_>) -> WsOwned {
        match *e {
            WsEvent::Binary(b) => WsOwned::Binary(b.to_vec()),
            WsEvent::Text(t) => WsOwned::Text(t.to_owned()),
            WsEvent::Ping(b) => WsOwned::Ping(b.to_vec()),
            WsEvent::Pong(b) => WsOwned::Pong(b.to_vec()),
            WsEvent::Close { code, reason } => WsOwned::Close(code, reason.to_owned()),
        }
    }
}

/// What the `websocket` target saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WsOutcome {
    /// The HTTP head was accepted (always false without [`WsSettings::handshake`]).
    pub upgraded: bool,
    /// The HTTP head was refused, with this status (server) or error (client).
    pub refused: Option<String>,
    /// Events decoded from the frames.
    pub events: Vec<WsOwned>,
    /// The protocol violation that ended decoding, if any.
    pub error: Option<WsError>,
}

/// The `websocket` target.
///
/// Without [`WsSettings::handshake`], the stream is frames: it is decoded by a [`WsDecoder`]
/// once as one read and once cut into reads as the settings say, and both must give the same
/// events and the same error as [`reference_ws_decode`], a plain whole-buffer decoder written
/// separately from RFC 6455; no data message may exceed the limit, the decoder's memory must
/// follow the bytes that arrived (never an announced length), it must hold exactly the
/// unconsumed tail, `Break` must stop delivery, and the events, re-encoded with
/// [`encode_frame`] / [`encode_close`] (fragmented, with pings between fragments, when the
/// settings say so), must decode to themselves.
///
/// With it, the stream starts with an HTTP head, checked at every prefix by
/// [`check_request_prefixes`] (server) or [`check_response_prefixes`] (client); the frames
/// after an accepted head are then checked as above.
///
/// # Panics
///
/// When one of those invariants breaks.
pub fn websocket(data: &[u8]) -> WsOutcome {
    let (settings, stream) = WsSettings::split(data);
    let mut outcome = WsOutcome::default();
    let frames = if !settings.handshake {
        stream
    } else {
        let accepted = match settings.role {
            Role::Server => check_request_prefixes(stream, &settings.options(), &settings)
                .map(|r| r.map(|r| r.len)),
            Role::Client => {
                check_response_prefixes(stream, WS_FUZZ_KEY, settings.max_handshake_len)
            }
        };
        match accepted {
            Ok(Some(len)) => {
                outcome.upgraded = true;
                &stream[len..]
            }
            Ok(None) => return outcome,
            Err(e) => {
                outcome.refused = Some(e.to_string());
                return outcome;
            }
        }
    };
    let (events, error) = check_ws_frames(&settings, frames);
    outcome.events = events;
    outcome.error = error;
    outcome
}

/// One run of a [`WsDecoder`] over `stream` cut into `reads`: the events, the error, the bytes
/// it holds at the end, its largest heap use, and whether it decoded a close frame.
struct WsRun {
    events: Vec<WsOwned>,
    result: Result<(), WsError>,
    buffered: usize,
    peak_capacity: usize,
    closed: bool,
}

fn run_ws_decoder(role: Role, max: usize, stream: &[u8], reads: &[usize]) -> WsRun {
    let mut decoder = WsDecoder::new(role, max);
    let mut events = Vec::new();
    let mut result = Ok(());
    let mut offset = 0;
    let mut peak_capacity = 0;
    for &n in reads {
        // The decoder unmasks in place: give it a copy, as the reactor gives its read buffer.
        let mut read = stream[offset..offset + n].to_vec();
        offset += n;
        result = decoder.decode(&mut read, |e| {
            events.push(WsOwned::of(&e));
            ControlFlow::Continue(())
        });
        peak_capacity = peak_capacity.max(decoder.capacity());
        if result.is_err() {
            break;
        }
    }
    WsRun {
        events,
        result,
        buffered: decoder.buffered(),
        peak_capacity,
        closed: decoder.is_closed(),
    }
}

/// The frame checks of [`websocket`] on `stream`; returns the events and the error.
fn check_ws_frames(settings: &WsSettings, stream: &[u8]) -> (Vec<WsOwned>, Option<WsError>) {
    let (role, max) = (settings.role, settings.max_message_len);
    let whole = run_ws_decoder(role, max, stream, &[stream.len()]);
    let chunked = run_ws_decoder(role, max, stream, &settings.chunks(stream.len()));
    let reference = reference_ws_decode(role, max, stream);
    assert_eq!(whole.events, reference.events, "whole: events");
    assert_eq!(whole.result.clone().err(), reference.error, "whole: error");
    assert_eq!(chunked.events, reference.events, "chunked: events");
    assert_eq!(
        chunked.result.clone().err(),
        reference.error,
        "chunked: error"
    );
    assert_eq!(whole.closed, reference.closed);
    assert_eq!(chunked.closed, reference.closed);
    for e in &reference.events {
        match e {
            WsOwned::Binary(b) => assert!(b.len() <= max, "message of {} over {max}", b.len()),
            WsOwned::Text(t) => assert!(t.len() <= max, "message of {} over {max}", t.len()),
            WsOwned::Ping(b) | WsOwned::Pong(b) => assert!(b.len() <= 125),
            WsOwned::Close(_, r) => assert!(r.len() <= 123),
        }
    }
    if reference.error.is_none() && !reference.closed {
        // Exactly the unconsumed tail and the fragments so far are held.
        let held = reference.tail + reference.fragment_len;
        assert_eq!(whole.buffered, held, "whole: bytes held");
        assert_eq!(chunked.buffered, held, "chunked: bytes held");
    }
    // Memory follows the bytes that arrived, never an announced length: each of the two
    // buffers holds at most what was read, and a Vec at most doubles what it holds.
    for (run, what) in [(&whole, "whole"), (&chunked, "chunked")] {
        assert!(
            run.peak_capacity <= 4 * stream.len() + 64,
            "{what}: decoder capacity {} for {} bytes of input",
            run.peak_capacity,
            stream.len()
        );
    }
    // Break stops delivery at once.
    let mut decoder = WsDecoder::new(role, max);
    let mut first = None;
    let mut offset = 0;
    for n in settings.chunks(stream.len()) {
        let mut read = stream[offset..offset + n].to_vec();
        offset += n;
        let r = decoder.decode(&mut read, |e| {
            assert!(first.is_none(), "an event delivered after Break");
            first = Some(WsOwned::of(&e));
            ControlFlow::Break(())
        });
        if r.is_err() || first.is_some() {
            break;
        }
    }
    assert_eq!(first.as_ref(), reference.events.first());
    check_ws_reencode(settings, &reference.events);
    (reference.events, reference.error)
}

/// The events, encoded again as the other end would send them, decode to themselves; the
/// in-place binary encoder writes what [`encode_frame`] writes.
fn check_ws_reencode(settings: &WsSettings, events: &[WsOwned]) {
    let mut keys = MaskKeys::new(u64::from(settings.chunking) + 1);
    let mut key = || match settings.role {
        Role::Server => Some(keys.next_key()),
        Role::Client => None,
    };
    let mut cut = u32::from(settings.chunking) | 0x100;
    let mut wire = Vec::new();
    for e in events {
        let (op, payload) = match e {
            WsOwned::Binary(b) => (Opcode::Binary, &b[..]),
            WsOwned::Text(t) => (Opcode::Text, t.as_bytes()),
            WsOwned::Ping(b) => (Opcode::Ping, &b[..]),
            WsOwned::Pong(b) => (Opcode::Pong, &b[..]),
            WsOwned::Close(Some(code), reason) => {
                encode_close(&mut wire, *code, reason, key());
                continue;
            }
            WsOwned::Close(None, _) => (Opcode::Close, &b""[..]),
        };
        let data = matches!(op, Opcode::Binary | Opcode::Text);
        if data && settings.fragment && !payload.is_empty() {
            // Fragments of pseudo-random sizes, a ping between each two.
            let mut rest = payload;
            let mut op = op;
            while !rest.is_empty() {
                cut ^= cut << 13;
                cut ^= cut >> 17;
                cut ^= cut << 5;
                let n = (1 + (cut % 64) as usize).min(rest.len());
                let (piece, tail) = rest.split_at(n);
                encode_frame(&mut wire, op, tail.is_empty(), piece, key());
                if !tail.is_empty() {
                    encode_frame(&mut wire, Opcode::Ping, true, b"between", key());
                }
                rest = tail;
                op = Opcode::Continuation;
            }
            continue;
        }
        let mask = key();
        let before = wire.len();
        encode_frame(&mut wire, op, true, payload, mask);
        if op == Opcode::Binary {
            let mut other = Vec::new();
            let n = crate::ws::codec::encode_binary_with(
                &mut other,
                settings.max_message_len,
                mask,
                |b| b.extend_from_slice(payload),
            )
            .expect("a decoded message is within the limit");
            assert_eq!(n, other.len());
            assert_eq!(
                other[..],
                wire[before..],
                "encode_binary_with and encode_frame"
            );
        }
    }
    let again = run_ws_decoder(
        settings.role,
        settings.max_message_len,
        &wire,
        &[wire.len()],
    );
    assert_eq!(again.result, Ok(()), "re-encoded events fail to decode");
    // The pings put between fragments are not compared (an original one may look the same).
    let between = WsOwned::Ping(b"between".to_vec());
    let kept = |e: &&WsOwned| !(settings.fragment && **e == between);
    let got: Vec<&WsOwned> = again.events.iter().filter(kept).collect();
    let want: Vec<&WsOwned> = events.iter().filter(kept).collect();
    assert_eq!(got, want, "re-encoded events decode differently");
}

/// What [`reference_ws_decode`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WsReference {
    /// Complete messages and control frames, in order.
    pub events: Vec<WsOwned>,
    /// The first violation.
    pub error: Option<WsError>,
    /// A close frame was decoded (nothing after it is).
    pub closed: bool,
    /// Bytes after the last complete frame.
    pub tail: usize,
    /// Payload bytes of an unfinished fragmented message.
    pub fragment_len: usize,
}

/// A plain, whole-buffer WebSocket decoder written from RFC 6455 and repod's documented rules,
/// to check [`WsDecoder`] against: it walks `data` frame by frame, checks each header field in
/// the order the bytes arrive (so a violation is reported even when the frame is incomplete),
/// unmasks a byte at a time, and joins fragments in a fresh vector.
///
/// The rules: no reserved bits (no extension is negotiated); opcodes 0-2 and 8-10 only;
/// control frames final and at most 125 bytes; a continuation only inside a fragmented message
/// and a new message only outside one; every frame masked from a client and none from a server;
/// a 64-bit length with its top bit clear; a data message, counted over its fragments, at most
/// `max` bytes (checked on the length, before the payload); text UTF-8, and a fragmented text
/// message rejected as soon as a fragment shows it cannot be UTF-8; a close payload empty or a
/// valid status code (1000-1003, 1007-1014, 3000-4999) and a UTF-8 reason; nothing after a close.
pub fn reference_ws_decode(role: Role, max: usize, data: &[u8]) -> WsReference {
    let mut r = WsReference::default();
    // The fragmented message in progress: whether it is text, and its payload so far.
    let mut fragmented: Option<(bool, Vec<u8>)> = None;
    let mut pos = 0;
    let fail = |mut r: WsReference, e: WsError| {
        r.error = Some(e);
        r
    };
    loop {
        let rest = &data[pos..];
        r.tail = rest.len();
        r.fragment_len = fragmented.as_ref().map_or(0, |(_, m)| m.len());
        let Some(&b0) = rest.first() else {
            return r;
        };
        let fin = b0 & 0x80 != 0;
        let op = b0 & 0x0f;
        if b0 & 0x70 != 0 {
            return fail(r, WsError::ReservedBits);
        }
        if !matches!(op, 0x0..=0x2 | 0x8..=0xa) {
            return fail(r, WsError::UnknownOpcode(op));
        }
        let control = op >= 0x8;
        if control && !fin {
            return fail(r, WsError::FragmentedControl);
        }
        if op == 0x0 && fragmented.is_none() {
            return fail(r, WsError::UnexpectedContinuation);
        }
        if (op == 0x1 || op == 0x2) && fragmented.is_some() {
            return fail(r, WsError::ExpectedContinuation);
        }
        let Some(&b1) = rest.get(1) else {
            return r;
        };
        let masked = b1 & 0x80 != 0;
        if role == Role::Server && !masked {
            return fail(r, WsError::Unmasked);
        }
        if role == Role::Client && masked {
            return fail(r, WsError::Masked);
        }
        let len7 = b1 & 0x7f;
        if control && len7 > 125 {
            return fail(r, WsError::ControlTooLong(usize::from(len7)));
        }
        let (len, mut at) = match len7 {
            126 => {
                let Some(b) = rest.get(2..4) else { return r };
                (u64::from(b[0]) << 8 | u64::from(b[1]), 4)
            }
            127 => {
                let Some(b) = rest.get(2..10) else { return r };
                let len = b.iter().fold(0u64, |acc, &x| acc << 8 | u64::from(x));
                if len >= 1 << 63 {
                    return fail(r, WsError::BadLength);
                }
                (len, 10)
            }
            n => (u64::from(n), 2),
        };
        if !control {
            let before = match (op, &fragmented) {
                (0x0, Some((_, m))) => m.len() as u64,
                _ => 0,
            };
            if before + len > max as u64 {
                return fail(
                    r,
                    WsError::TooLarge {
                        len: before + len,
                        max,
                    },
                );
            }
        }
        let mut key = [0u8; 4];
        if masked {
            let Some(k) = rest.get(at..at + 4) else {
                return r;
            };
            key.copy_from_slice(k);
            at += 4;
        }
        let len = len as usize; // at most max, or 125
        let Some(raw) = rest.get(at..at + len) else {
            return r;
        };
        let payload: Vec<u8> = raw
            .iter()
            .enumerate()
            .map(|(i, &b)| b ^ key[i % 4])
            .collect();
        pos += at + len;
        let utf8 = |b: Vec<u8>| String::from_utf8(b).map_err(|_| WsError::InvalidUtf8);
        match op {
            0x9 => r.events.push(WsOwned::Ping(payload)),
            0xa => r.events.push(WsOwned::Pong(payload)),
            0x8 => {
                let close = match payload.len() {
                    0 => WsOwned::Close(None, String::new()),
                    1 => return fail(r, WsError::BadClosePayload),
                    _ => {
                        let code = u16::from(payload[0]) << 8 | u16::from(payload[1]);
                        let valid = (1000..=1003).contains(&code)
                            || (1007..=1014).contains(&code)
                            || (3000..=4999).contains(&code);
                        if !valid {
                            return fail(r, WsError::BadCloseCode(code));
                        }
                        match utf8(payload[2..].to_vec()) {
                            Ok(reason) => WsOwned::Close(Some(code), reason),
                            Err(e) => return fail(r, e),
                        }
                    }
                };
                r.events.push(close);
                r.closed = true;
                r.tail = data.len() - pos;
                r.fragment_len = fragmented.as_ref().map_or(0, |(_, m)| m.len());
                return r;
            }
            0x1 | 0x2 if fin => {
                if op == 0x1 {
                    match utf8(payload) {
                        Ok(t) => r.events.push(WsOwned::Text(t)),
                        Err(e) => return fail(r, e),
                    }
                } else {
                    r.events.push(WsOwned::Binary(payload));
                }
            }
            _ => {
                let (text, mut message) = fragmented.take().unwrap_or((op == 0x1, Vec::new()));
                message.extend_from_slice(&payload);
                if text {
                    // Invalid so far, or (at the end) unfinished: not UTF-8.
                    if let Err(e) = std::str::from_utf8(&message) {
                        if fin || e.error_len().is_some() {
                            return fail(r, WsError::InvalidUtf8);
                        }
                    }
                }
                if !fin {
                    fragmented = Some((text, message));
                } else if text {
                    r.events
                        .push(WsOwned::Text(utf8(message).expect("checked")));
                } else {
                    r.events.push(WsOwned::Binary(message));
                }
            }
        }
    }
}

/// Parses `stream` as an upgrade request at every prefix, as a server receiving it a byte at a
/// time would, and checks that the answer, once there is one, never changes (except that a
/// head still unfinished past the limit, refused as too large, may show a syntax error further
/// on); that a request is complete exactly at its last byte; that the reactor, which parses
/// only when [`handshake::worth_parsing`] or the limit says so, reaches the same answer for
/// a valid request under the settings' chunking; and that every answer is a valid HTTP
/// response (a refusal carries its status, an acceptance the right `Sec-WebSocket-Accept`).
/// Returns the answer for the whole stream.
///
/// # Panics
///
/// When one of those invariants breaks.
pub fn check_request_prefixes(
    stream: &[u8],
    opts: &WsOptions,
    settings: &WsSettings,
) -> Result<Option<handshake::Request>, HandshakeError> {
    let max = settings.max_handshake_len;
    let mut first: Option<(usize, Result<Option<handshake::Request>, HandshakeError>)> = None;
    for k in 0..=stream.len() {
        let r = handshake::parse_request(&stream[..k], opts);
        match &first {
            None if r == Ok(None) => {}
            None => {
                if let Ok(Some(req)) = &r {
                    assert_eq!(req.len, k, "a request completes at its last byte");
                    assert!(req.len <= max);
                }
                first = Some((k, r));
            }
            Some((_, f)) => assert!(
                r == *f
                    || matches!(
                        (f, &r),
                        (
                            Err(HandshakeError::TooLarge { .. }),
                            Err(HandshakeError::Malformed(_) | HandshakeError::TooManyHeaders)
                        )
                    ),
                "prefix {k}: {r:?}, after {f:?}"
            ),
        }
        if first.is_none() {
            assert!(k <= max, "undecided past the limit");
        }
    }
    let whole = handshake::parse_request(stream, opts);
    if let Ok(Some(req)) = &whole {
        // What the upgrade hook is shown of an accepted request: every accessor on attacker
        // bytes, none may panic, and each answer lies within the request.
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
        crate::ws::upgrade::with_request(&stream[..req.len], peer, |r| {
            // The listener checked the path, query aside.
            assert_eq!(r.path(), opts.get_path());
            let q = r.query().unwrap_or("");
            for pair in q.split('&').take(8) {
                let name = pair.split_once('=').map_or(pair, |(k, _)| k);
                if let Some(v) = r.query_param(name) {
                    assert!(q.contains(v));
                }
            }
            let _ = r.header("origin");
            let _ = r.cookie("session");
            assert!(r.headers().count() <= 64);
        });
    }
    // The reactor's gate: parse when the new bytes may end the head, or past the limit.
    let mut head = Vec::new();
    let mut seen = Ok(None);
    let mut offset = 0;
    for n in settings.chunks(stream.len()) {
        head.extend_from_slice(&stream[offset..offset + n]);
        offset += n;
        if handshake::worth_parsing(&head, n) || head.len() > opts.max_handshake_len {
            seen = handshake::parse_request(&head, opts);
            if seen != Ok(None) {
                break;
            }
        }
    }
    match (&first, &seen) {
        (Some((_, Ok(Some(a)))), b) => {
            assert_eq!(Ok(Some(a.clone())), *b, "the gate hid a request")
        }
        (_, Ok(None)) => assert!(
            stream.len() <= max,
            "the reactor is undecided past the limit"
        ),
        (Some((_, f)), b) => assert!(
            f == b
                || matches!(
                    (f, b),
                    (
                        Err(HandshakeError::TooLarge { .. }),
                        Err(HandshakeError::Malformed(_) | HandshakeError::TooManyHeaders)
                    )
                ),
            "the reactor answers {b:?}, the first answer was {f:?}"
        ),
        (None, b) => panic!("the reactor answers {b:?} where no prefix did"),
    }
    match &whole {
        Ok(Some(req)) => {
            let key = last_header(&stream[..req.len], "sec-websocket-key")
                .expect("an accepted request has a key");
            let key: [u8; 24] = key.try_into().expect("a valid key is 24 bytes");
            let mut resp = Vec::new();
            handshake::write_accept(&mut resp, &req.accept);
            let n = resp.len();
            resp.extend_from_slice(&stream[req.len..]);
            assert_eq!(handshake::parse_response(&resp, &key, 1 << 16), Ok(Some(n)));
        }
        Ok(None) => {}
        Err(e) => {
            let status = e.status();
            assert!((400..500).contains(&status), "{e}: status {status}");
            assert!(!e.to_string().is_empty());
            let mut resp = Vec::new();
            handshake::write_reject(&mut resp, e);
            assert_eq!(
                handshake::parse_response(&resp, WS_FUZZ_KEY, 1 << 16),
                Err(HandshakeError::Refused(status))
            );
        }
    }
    whole
}

/// The trimmed value of the last header called `name` in an HTTP request head.
fn last_header<'a>(head: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(head).ok()?;
    let v = req
        .headers
        .iter()
        .rev()
        .find(|h| h.name.eq_ignore_ascii_case(name))?
        .value;
    let start = v.iter().position(|b| !b.is_ascii_whitespace())?;
    let end = v.iter().rposition(|b| !b.is_ascii_whitespace())? + 1;
    Some(&v[start..end])
}

/// Parses `stream` as a server's answer to a request with `key`, at every prefix: the answer,
/// once there is one, never changes (a head too large may show a syntax error further on), and
/// an accepted answer completes exactly at its last byte. Returns the answer for the whole
/// stream: the length of the head when it is a valid `101`.
///
/// # Panics
///
/// When one of those invariants breaks.
pub fn check_response_prefixes(
    stream: &[u8],
    key: &[u8; 24],
    max: usize,
) -> Result<Option<usize>, HandshakeError> {
    let mut first = None;
    for k in 0..=stream.len() {
        let r = handshake::parse_response(&stream[..k], key, max);
        match &first {
            None if r == Ok(None) => assert!(k <= max, "undecided past the limit"),
            None => {
                if let Ok(Some(n)) = r {
                    assert_eq!(n, k, "an answer completes at its last byte");
                }
                first = Some(r);
            }
            Some(f) => assert!(
                r == *f
                    || matches!(
                        (f, &r),
                        (
                            Err(HandshakeError::TooLarge { .. }),
                            Err(HandshakeError::Malformed(_) | HandshakeError::TooManyHeaders)
                        )
                    ),
                "prefix {k}: {r:?}, after {f:?}"
            ),
        }
    }
    handshake::parse_response(stream, key, max)
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
        out.extend(ws_seeds());
        out.extend(proxy_seeds());
        out
    }

    /// Settings byte 1 for the `websocket` target.
    const CLIENT: u8 = 1;
    const HANDSHAKE: u8 = 2;
    const GAME_PATH: u8 = 4;
    const ORIGIN_LIST: u8 = 8;
    const FRAGMENT: u8 = 16;

    /// A valid upgrade request for `path`, with `extra` header lines.
    fn ws_request(path: &str, extra: &str) -> Vec<u8> {
        format!(
            "GET {path} HTTP/1.1\r\nHost: localhost:5072\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\
             {extra}\r\n",
            std::str::from_utf8(WS_FUZZ_KEY).unwrap()
        )
        .into_bytes()
    }

    /// One frame of every kind, and fragmented messages, as `role`'s peer sends them.
    fn ws_frames(role: Role) -> Vec<u8> {
        let mut keys = MaskKeys::new(5);
        let mut key = || (role == Role::Server).then(|| keys.next_key());
        let mut w = Vec::new();
        let echo = {
            let mut p = Vec::new();
            msg! { "action": "echo", "text": "h\u{e9}llo" }.encode(&mut p);
            p
        };
        encode_frame(&mut w, Opcode::Binary, true, &echo, key());
        encode_frame(&mut w, Opcode::Binary, true, b"", key());
        encode_frame(&mut w, Opcode::Text, true, "h\u{e9}llo".as_bytes(), key());
        encode_frame(&mut w, Opcode::Ping, true, b"are you there", key());
        encode_frame(&mut w, Opcode::Pong, true, b"", key());
        encode_frame(&mut w, Opcode::Binary, false, &echo[..3], key());
        encode_frame(&mut w, Opcode::Ping, true, b"between", key());
        encode_frame(&mut w, Opcode::Continuation, false, b"", key());
        encode_frame(&mut w, Opcode::Continuation, true, &echo[3..], key());
        encode_frame(&mut w, Opcode::Text, false, b"\xe2\x82", key());
        encode_frame(&mut w, Opcode::Continuation, true, b"\xac", key());
        encode_frame(&mut w, Opcode::Binary, true, &[0xa5; 300], key());
        // A 64-bit length for a short payload (not minimal, but well-formed).
        let k = key();
        let mut h = vec![0x82, 127 | if k.is_some() { 0x80 } else { 0 }];
        h.extend_from_slice(&5u64.to_be_bytes());
        let mut payload = *b"\x81\xa1a\x01\xc0";
        if let Some(k) = k {
            h.extend_from_slice(&k);
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= k[i % 4];
            }
        }
        w.extend_from_slice(&h);
        w.extend_from_slice(&payload);
        encode_close(&mut w, 1000, "bye", key());
        w
    }

    /// The `websocket` seeds: frames in both roles and several chunkings, each violation, and
    /// handshakes (accepted, refused, too large, answers).
    /// PROXY headers of every kind, each followed by a repod frame; the first byte is the v2
    /// cap setting (52 + 8 * it).
    fn proxy_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
        let frame = b"\0\0\0\x01\x80";
        let v2 = |cmd: u8, fam: u8, body: &[u8]| {
            let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
            h.push(0x20 | cmd);
            h.push(fam);
            h.extend_from_slice(&(body.len() as u16).to_be_bytes());
            h.extend_from_slice(body);
            h
        };
        let v4 = [203, 0, 113, 7, 192, 0, 2, 1, 0xdc, 0x04, 0x13, 0xcf];
        let ip6 = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
        let mut v6 = [0u8; 36];
        v6[..16].copy_from_slice(&ip6("2001:db8::7"));
        v6[16..32].copy_from_slice(&ip6("2001:db8::1"));
        v6[32..].copy_from_slice(&[0xdc, 0x04, 0x13, 0xcf]);
        let tlvs = [&v4[..], &[0x01, 0, 2, b'h', b'2', 0x04, 0, 1, 0]].concat();
        let headers: Vec<(&str, Vec<u8>)> = vec![
            (
                "v1_tcp4",
                b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 5071\r\n".to_vec(),
            ),
            (
                "v1_tcp6",
                b"PROXY TCP6 2001:db8::7 2001:db8::1 56324 5071\r\n".to_vec(),
            ),
            ("v1_unknown", b"PROXY UNKNOWN\r\n".to_vec()),
            ("v2_tcp4", v2(1, 0x11, &v4)),
            ("v2_tcp6", v2(1, 0x21, &v6)),
            ("v2_tlvs", v2(1, 0x11, &tlvs)),
            ("v2_local", v2(0, 0x00, &[])),
            ("v2_unix", v2(1, 0x31, &[0; 216])),
            ("v2_oversized", v2(1, 0x11, &[0; 600])),
            ("garbage", b"GET / HTTP/1.1\r\n".to_vec()),
        ];
        headers
            .into_iter()
            .map(|(name, h)| {
                let mut data = vec![60];
                data.extend_from_slice(&h);
                data.extend_from_slice(frame);
                ("proxy_header", format!("rs_{name}"), data)
            })
            .collect()
    }

    #[test]
    fn proxy_seeds_decode_as_they_say() {
        let got: Vec<Option<std::net::SocketAddr>> = proxy_seeds()
            .iter()
            .map(|(_, _, data)| proxy_header(data).and_then(|h| h.source))
            .collect();
        let v4: std::net::SocketAddr = "203.0.113.7:56324".parse().unwrap();
        let v6: std::net::SocketAddr = "[2001:db8::7]:56324".parse().unwrap();
        assert_eq!(
            got,
            [
                Some(v4),
                Some(v6),
                None,
                Some(v4),
                Some(v6),
                Some(v4),
                None,
                None,
                None,
                None
            ]
        );
        let accepted: Vec<bool> = proxy_seeds()
            .iter()
            .map(|(_, _, data)| proxy_header(data).is_some())
            .collect();
        assert_eq!(
            accepted,
            [true, true, true, true, true, true, true, false, false, false]
        );
    }

    fn ws_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
        let with = |c: u8, f: u8, m: u8, body: &[u8]| [&[c, f, m][..], body].concat();
        let server = ws_frames(Role::Server);
        let client = ws_frames(Role::Client);
        let mut out = vec![
            ("frames", with(0, 0, 0, &server)),
            ("bytewise", with(1, 0, 0, &server)),
            ("chunked", with(13, FRAGMENT, 0, &server)),
            ("client", with(7, CLIENT | FRAGMENT, 0, &client)),
            ("partial", with(3, 0, 0, &server[..server.len() - 4])),
        ];
        let mut keys = MaskKeys::new(9);
        let mut masked = |frames: &[(Opcode, bool, &[u8])]| {
            let mut w = Vec::new();
            for (op, fin, p) in frames {
                encode_frame(&mut w, *op, *fin, p, Some(keys.next_key()));
            }
            w
        };
        let mut oversize = masked(&[(Opcode::Ping, true, b"ok")]);
        oversize.extend(masked(&[(Opcode::Binary, true, &[0; 100])]));
        out.push(("oversize", with(5, 0, 4, &oversize)));
        let mut endless = masked(&[(Opcode::Binary, false, &[1; 30])]);
        for _ in 0..4 {
            endless.extend(masked(&[(Opcode::Continuation, false, &[2; 30])]));
        }
        out.push(("endless_fragments", with(2, 0, 6, &endless)));
        let mut flood = Vec::new();
        for i in 0..50u8 {
            flood.extend(masked(&[(Opcode::Ping, true, &[i; 7])]));
        }
        out.push(("ping_flood", with(0, 0, 0, &flood)));
        let violations: Vec<(&str, Vec<u8>)> = vec![
            ("unmasked", {
                let mut w = Vec::new();
                encode_frame(&mut w, Opcode::Binary, true, b"x", None);
                w
            }),
            ("len63", {
                let mut h = vec![0x82, 0xff];
                h.extend_from_slice(&(1u64 << 63).to_be_bytes());
                h
            }),
            ("rsv1", vec![0xc2, 0x80, 0, 0, 0, 0]),
            ("opcode3", vec![0x83, 0x80, 0, 0, 0, 0]),
            ("fragmented_ping", masked(&[(Opcode::Ping, false, b"p")])),
            ("long_ping", masked(&[(Opcode::Ping, true, &[0; 126])])),
            (
                "lone_continuation",
                masked(&[(Opcode::Continuation, true, b"x")]),
            ),
            (
                "two_messages",
                masked(&[(Opcode::Binary, false, b"a"), (Opcode::Text, true, b"b")]),
            ),
            ("bad_text", masked(&[(Opcode::Text, true, b"caf\xc3(")])),
            (
                "bad_text_fragment",
                masked(&[
                    (Opcode::Text, false, b"ok"),
                    (Opcode::Continuation, true, b"\xe2\x82"),
                ]),
            ),
            (
                "bad_reason",
                masked(&[(Opcode::Close, true, b"\x03\xe8\xff")]),
            ),
            ("close_1005", masked(&[(Opcode::Close, true, b"\x03\xed")])),
            ("close_one_byte", masked(&[(Opcode::Close, true, b"\x03")])),
        ];
        for (name, bytes) in violations {
            let mut s = masked(&[(Opcode::Pong, true, b"first")]);
            s.extend(bytes);
            out.push((name, with(0, 0, 0, &s)));
        }
        let upgrade = [
            ws_request("/", "Origin: http://good.example\r\n"),
            server.clone(),
        ]
        .concat();
        out.push(("upgrade", with(0, HANDSHAKE, 0, &upgrade)));
        out.push((
            "upgrade_chunked",
            with(3, HANDSHAKE | FRAGMENT, 0, &upgrade),
        ));
        let game = [
            ws_request("/game?room=1", "Origin: HTTP://GOOD.example\r\n"),
            server,
        ]
        .concat();
        out.push((
            "upgrade_game",
            with(11, HANDSHAKE | GAME_PATH | ORIGIN_LIST, 0, &game),
        ));
        let evil = ws_request("/", "Origin: http://evil.example\r\n");
        out.push((
            "upgrade_evil_origin",
            with(0, HANDSHAKE | ORIGIN_LIST, 0, &evil),
        ));
        let cookie = ws_request("/", &format!("Cookie: {}\r\n", "a".repeat(300)));
        out.push(("upgrade_too_large", with(2, HANDSHAKE | 2 << 5, 0, &cookie)));
        let v12 = String::from_utf8(ws_request("/", ""))
            .unwrap()
            .replace(": 13", ": 12");
        out.push(("upgrade_v12", with(0, HANDSHAKE, 0, v12.as_bytes())));
        out.push((
            "upgrade_post",
            with(0, HANDSHAKE, 0, b"POST / HTTP/1.1\r\nHost: x\r\n\r\n"),
        ));
        out.push((
            "tls_hello",
            with(
                0,
                HANDSHAKE,
                0,
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            ),
        ));
        let mut answer = Vec::new();
        handshake::write_accept(&mut answer, &handshake::accept_key(WS_FUZZ_KEY));
        answer.extend_from_slice(&client);
        out.push(("answer", with(0, HANDSHAKE | CLIENT, 0, &answer)));
        out.push(("answer_bytewise", with(1, HANDSHAKE | CLIENT, 0, &answer)));
        let mut refusal = Vec::new();
        handshake::write_reject(&mut refusal, &HandshakeError::WrongPath);
        out.push(("answer_404", with(0, HANDSHAKE | CLIENT, 0, &refusal)));
        out.into_iter()
            .map(|(name, bytes)| ("websocket", format!("rs_{name}"), bytes))
            .collect()
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
                "websocket" => {
                    websocket(data);
                }
                "proxy_header" => {
                    proxy_header(data);
                }
                _ => {
                    receive_path(data);
                }
            }
        }
        for target in [
            "frame_decoder",
            "message",
            "receive_path",
            "websocket",
            "proxy_header",
        ] {
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
    fn websocket_seeds_do_what_they_say() {
        let seeds: std::collections::HashMap<String, Vec<u8>> = ws_seeds()
            .into_iter()
            .map(|(_, name, bytes)| (name, bytes))
            .collect();
        let run = |name: &str| websocket(&seeds[&format!("rs_{name}")]);
        let frames = run("frames");
        assert_eq!(frames.error, None);
        assert_eq!(frames.events.len(), 11, "{:?}", frames.events);
        assert_eq!(frames.events[2], WsOwned::Text("h\u{e9}llo".into()));
        assert_eq!(frames.events[7], WsOwned::Text("\u{20ac}".into()));
        assert_eq!(frames.events[10], WsOwned::Close(Some(1000), "bye".into()));
        for name in ["bytewise", "chunked"] {
            assert_eq!(run(name), frames, "{name}");
        }
        assert_eq!(run("client").events, frames.events);
        assert_eq!(run("partial").events.len(), 10);
        let upgraded = run("upgrade");
        assert!(upgraded.upgraded);
        assert_eq!(upgraded.events, frames.events);
        assert_eq!(run("upgrade_chunked"), upgraded);
        assert_eq!(run("upgrade_game"), upgraded);
        assert_eq!(run("answer").events, frames.events);
        assert_eq!(run("answer_bytewise").events, frames.events);
        assert_eq!(run("ping_flood").events.len(), 50);
        let refused = |name: &str| run(name).refused.unwrap_or_default();
        assert!(refused("upgrade_evil_origin").contains("origin"));
        assert!(refused("upgrade_too_large").contains("longer than 256"));
        assert!(refused("upgrade_v12").contains("Version"));
        assert!(refused("upgrade_post").contains("GET"));
        assert!(refused("answer_404").contains("404"));
        // The parser refuses it from its first byte (the reactor only asks it once a blank
        // line or the size limit arrives).
        assert!(refused("tls_hello").contains("malformed"));
        let error = |name: &str| run(name).error;
        assert_eq!(
            error("oversize"),
            Some(WsError::TooLarge { len: 100, max: 64 })
        );
        assert_eq!(
            error("endless_fragments"),
            Some(WsError::TooLarge { len: 120, max: 96 })
        );
        for (name, e) in [
            ("unmasked", WsError::Unmasked),
            ("len63", WsError::BadLength),
            ("rsv1", WsError::ReservedBits),
            ("opcode3", WsError::UnknownOpcode(3)),
            ("fragmented_ping", WsError::FragmentedControl),
            ("long_ping", WsError::ControlTooLong(126)),
            ("lone_continuation", WsError::UnexpectedContinuation),
            ("two_messages", WsError::ExpectedContinuation),
            ("bad_text", WsError::InvalidUtf8),
            ("bad_text_fragment", WsError::InvalidUtf8),
            ("bad_reason", WsError::InvalidUtf8),
            ("close_1005", WsError::BadCloseCode(1005)),
            ("close_one_byte", WsError::BadClosePayload),
        ] {
            let o = run(name);
            assert_eq!(o.events, [WsOwned::Pong(b"first".to_vec())], "{name}");
            assert_eq!(o.error, Some(e), "{name}");
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
