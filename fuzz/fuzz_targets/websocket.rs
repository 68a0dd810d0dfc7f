//! WebSocket without sockets: arbitrary bytes, cut into arbitrary reads, through `WsDecoder` in
//! either role, checked against a plain whole-buffer reference decoder (same events, same
//! error, messages within the limit, memory following the bytes that arrived, `Break` obeyed,
//! events re-encoded decode to themselves); optionally preceded by an HTTP upgrade request (or
//! its answer) parsed at every prefix, with the frames after an accepted head decoded as above.
//!
//! Input: three settings bytes (chunking; role, handshake and option flags; message limit; see
//! `repod::fuzzing::WsSettings::split`), then the byte stream.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    repod::fuzzing::websocket(data);
});
