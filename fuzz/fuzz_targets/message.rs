//! Arbitrary bytes as one payload: `Message::parse` never panics, accepts exactly what a
//! reference decoder (rmpv and repod's rules) accepts, and for valid maps every accessor,
//! `entries`, `to_value` and the `with_action` round trip agree with the reference.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    repod::fuzzing::message(data);
});
