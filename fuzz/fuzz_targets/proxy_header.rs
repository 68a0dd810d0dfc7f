//! The PROXY protocol header (v1 and v2) as the reactor reads it: arbitrary bytes parsed at
//! every prefix must decide once and for all, within the caps, and agree with a plain
//! reference reading of the accepted header.
//!
//! Input: one settings byte (the v2 cap: 52 + 8 * it), then the byte stream.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    repod::fuzzing::proxy_header(data);
});
