//! One connection's receive path without sockets: bytes in, through the frame decoder, message
//! validation, the route table and handlers that read fields and encode replies, to reply
//! frames out. Every reply must be a valid frame and message.
//!
//! Input: three settings bytes (chunking, depth, frame limit; see
//! `repod::fuzzing::Settings::split`), then the byte stream.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    repod::fuzzing::receive_path(data);
});
