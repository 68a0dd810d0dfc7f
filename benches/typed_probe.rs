//! A fixed amount of typed work, for counting instructions rather than timing them: on this
//! shared machine criterion's figures for the same build move by ±30% between runs, while
//! callgrind's count is the same every time.
//!
//! ```sh
//! cargo bench --bench typed_probe --no-run
//! for case in parse struct enum encode msg; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/deps/typed_probe-* $case 100000 2>&1 | grep Collected
//! done   # instructions ÷ 100,000 = per message (process start-up included, ~0.2M)
//! ```
//!
//! Cases, each per message: `parse` validates a 4-entry chat and reads its action; `struct`
//! also decodes it into a struct with borrowed fields; `enum` into a plain message enum;
//! `encode` writes a plain-enum chat and a 10-field move alternately with `Typed`; `msg`
//! writes the same two maps with `msg!`. Run by
//! `cargo bench` with no arguments, it does a short pass of each and prints nothing else.

use repod::{msg, Encode, Message, Typed};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[allow(dead_code)]
struct Chat<'a> {
    text: &'a str,
    to: u32,
    team: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum Plain<'a> {
    Chat {
        text: &'a str,
        to: u32,
        team: bool,
    },
    Move {
        x: f32,
        y: f32,
        z: f32,
        vx: f32,
        vy: f32,
        vz: f32,
        yaw: f32,
        pitch: f32,
        seq: u64,
        tag: &'a str,
    },
}

const CHAT: Plain<'static> = Plain::Chat {
    text: "hello there",
    to: 7,
    team: true,
};

const MOVE: Plain<'static> = Plain::Move {
    x: 1.0,
    y: 2.0,
    z: 3.0,
    vx: 0.5,
    vy: 0.25,
    vz: 0.0,
    yaw: 1.5,
    pitch: 0.1,
    seq: 12345,
    tag: "run",
};

// Each case is its own function, never inlined, so that one case's code does not change how
// the compiler arranges another's (a shared loop moved one count by 20% between builds).

#[inline(never)]
fn parse(frame: &[u8], n: usize) -> usize {
    (0..n)
        .map(|_| {
            Message::parse(std::hint::black_box(frame))
                .expect("valid")
                .action()
                .len()
        })
        .sum()
}

#[inline(never)]
fn decode_struct(frame: &[u8], n: usize) -> usize {
    (0..n)
        .map(|_| {
            let m = Message::parse(std::hint::black_box(frame)).expect("valid");
            usize::from(m.decode::<Chat>().is_ok())
        })
        .sum()
}

#[inline(never)]
fn decode_enum(frame: &[u8], n: usize) -> usize {
    (0..n)
        .map(|_| {
            let m = Message::parse(std::hint::black_box(frame)).expect("valid");
            usize::from(m.decode::<Plain>().is_ok())
        })
        .sum()
}

#[inline(never)]
fn encode_typed(n: usize) -> usize {
    let mut out = Vec::with_capacity(256);
    (0..n)
        .map(|i| {
            out.clear();
            Typed(if i % 2 == 0 { &CHAT } else { &MOVE }).encode(&mut out);
            std::hint::black_box(&out).len()
        })
        .sum()
}

#[inline(never)]
fn encode_msg(n: usize) -> usize {
    let mut out = Vec::with_capacity(256);
    (0..n)
        .map(|i| {
            out.clear();
            if i % 2 == 0 {
                msg! { "action": "chat", "text": "hello there", "to": 7u32, "team": true }
                    .encode(&mut out);
            } else {
                msg! {
                    "action": "move", "x": 1.0f32, "y": 2.0f32, "z": 3.0f32, "vx": 0.5f32,
                    "vy": 0.25f32, "vz": 0.0f32, "yaw": 1.5f32, "pitch": 0.1f32, "seq": 12345u64,
                    "tag": "run"
                }
                .encode(&mut out);
            }
            std::hint::black_box(&out).len()
        })
        .sum()
}

fn run(case: &str, n: usize) -> usize {
    let mut frame = Vec::new();
    msg! { "action": "chat", "text": "hello there", "to": 7u32, "team": true }.encode(&mut frame);
    match case {
        "parse" => parse(&frame, n),
        "struct" => decode_struct(&frame, n),
        "enum" => decode_enum(&frame, n),
        "encode" => encode_typed(n),
        "msg" => encode_msg(n),
        other => panic!("unknown case {other:?}: parse, struct, enum, encode or msg"),
    }
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    match args.next() {
        Some(case) => {
            let n = args.next().map_or(100_000, |s| s.parse().expect("a count"));
            println!("{}", run(&case, n));
        }
        None => {
            for case in ["parse", "struct", "enum", "encode", "msg"] {
                assert!(run(case, 1_000) > 0, "{case}");
            }
        }
    }
}
