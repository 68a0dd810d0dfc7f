//! Arbitrary bytes as one payload: `Message::parse` never panics, accepts exactly what a
//! reference decoder (rmpv and repod's rules) accepts, and for valid maps every accessor,
//! `entries`, `to_value` and the `with_action` round trip agree with the reference.
//!
//! Typed decoding too: a valid message decoded into a plain enum (repod reads the variant from
//! the action) and into its `#[serde(tag = "action")]` twin (serde buffers the map) never
//! panics, and both agree, value or error, wherever serde's tagging is defined: one `"action"`
//! key, and every key a string or bytes (serde's buffered map refuses other keys, an integer
//! such as 363 included, as field names; repod's plain enums ignore them as unknown fields).
#![no_main]

use libfuzzer_sys::fuzz_target;
use repod::Message;
use serde::Deserialize;

/// One protocol, every variant shape: named fields, a struct held, a unit; borrowed strings
/// and bytes, numbers, options, a nested struct.
macro_rules! protocol {
    ($name:ident $(, $tag:literal)?) => {
        #[derive(Deserialize, Debug)]
        #[serde($(tag = $tag,)? rename_all = "snake_case")]
        #[allow(dead_code)]
        enum $name<'a> {
            A {
                x: i64,
                s: Option<&'a str>,
            },
            B(Inner<'a>),
            C,
            D {
                #[serde(with = "serde_bytes")]
                b: &'a [u8],
                f: f64,
                #[serde(default)]
                v: Vec<u8>,
            },
        }
    };
}

protocol!(Plain);
protocol!(Tagged, "action");

#[derive(Deserialize, Debug)]
#[allow(dead_code)]
struct Inner<'a> {
    x: u8,
    s: &'a str,
    at: Option<Pos>,
}

#[derive(Deserialize, Debug)]
#[allow(dead_code)]
struct Pos {
    x: f32,
    y: f32,
}

fn check_typed(m: &Message<'_>) {
    let plain = m.decode::<Plain>();
    let tagged = m.decode::<Tagged>();
    let actions = m
        .entries()
        .filter(|(k, _)| k.as_str() == Some("action"))
        .count();
    let other_key = m
        .entries()
        .any(|(k, _)| k.as_str().is_none() && k.as_bin().is_none());
    if actions != 1 || other_key {
        return;
    }
    match (&plain, &tagged) {
        // Compared by their Debug text: NaN is then equal to itself.
        (Ok(p), Ok(t)) => assert_eq!(format!("{p:?}"), format!("{t:?}")),
        (Err(_), Err(_)) => {}
        _ => panic!("plain {plain:?} but tagged {tagged:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    if repod::fuzzing::message(data) {
        check_typed(&Message::parse(data).expect("accepted above"));
    }
});
