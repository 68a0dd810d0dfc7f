//! Arbitrary bytes, cut into arbitrary reads, through `FrameDecoder`: the same frames as one
//! read, none over the limit, no more than the input, the tail kept, `Break` obeyed.
//!
//! Input: three settings bytes (chunking, depth, frame limit; see
//! `repod::fuzzing::Settings::split`), then the byte stream.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    repod::fuzzing::frame_decoder(data);
});
