//! Typed messages (cargo feature `serde`) against the untyped API they sit on.
//!
//! - decode: a chat message and a 10-field move message read with the in-place `Message`
//!   accessors (`m.str("text")`...) and decoded into a struct with borrowed fields
//!   (`m.decode::<Chat>()`), into a struct owning its strings, and into a
//!   `#[serde(tag = "action")]` enum (serde's buffered, internally tagged path) and into the
//!   same enum without the tag (repod reads the variant from the action);
//! - encode: the same messages written with `msg!` and with `Typed(&value)`, struct and enum,
//!   into a reused output buffer as a connection's.
//!
//! Every decode case starts from the validated `Message` (validation is the same for both and
//! is measured by the `frame_decode` bench).
//!
//! Run: `cargo bench --bench typed -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use repod::{msg, Encode, HandlerResult, Message, Typed};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Chat<'a> {
    action: &'a str,
    text: &'a str,
    from: &'a str,
}

#[derive(Deserialize)]
struct ChatOwned {
    text: String,
    from: String,
}

#[derive(Serialize, Deserialize)]
struct Move<'a> {
    action: &'a str,
    seq: u64,
    name: &'a str,
    x: f32,
    y: f32,
    vx: f32,
    vy: f32,
    facing: f32,
    firing: bool,
    hp: u8,
}

/// The protocol as one enum, twice: tagged by serde, and plain (tagged by repod).
macro_rules! to_server {
    ($name:ident $(, $tag:literal)?) => {
        #[derive(Serialize, Deserialize)]
        #[serde($(tag = $tag,)? rename_all = "snake_case")]
        enum $name<'a> {
            Chat {
                text: &'a str,
                from: &'a str,
            },
            Move {
                seq: u64,
                name: &'a str,
                x: f32,
                y: f32,
                vx: f32,
                vy: f32,
                facing: f32,
                firing: bool,
                hp: u8,
            },
        }
    };
}

to_server!(ToServer, "action");
to_server!(Plain);

/// Decode and encode benches for one of the two enums.
macro_rules! enum_benches {
    (decode $g:ident, $m:ident, $label:literal, $E:ident) => {
        $g.bench_function(concat!("chat/", $label), |b| {
            b.iter(|| match black_box(&$m).decode::<$E>().unwrap() {
                $E::Chat { text, from } => (text.len() + from.len()) as f64,
                $E::Move { seq, x, .. } => seq as f64 + x as f64,
            })
        });
    };
    (decode_move $g:ident, $m:ident, $label:literal, $E:ident) => {
        $g.bench_function(concat!("move/", $label), |b| {
            b.iter(|| match black_box(&$m).decode::<$E>().unwrap() {
                $E::Move { seq, x, .. } => seq as f64 + x as f64,
                $E::Chat { .. } => 0.0,
            })
        });
    };
    (encode_chat $g:ident, $buf:ident, $label:literal, $E:ident) => {
        $g.bench_function(concat!("chat/", $label), |b| {
            b.iter(|| {
                $buf.clear();
                Typed($E::Chat {
                    text: black_box(TEXT),
                    from: "Alice",
                })
                .encode(&mut $buf);
                $buf.len()
            })
        });
    };
    (encode_move $g:ident, $buf:ident, $label:literal, $E:ident) => {
        $g.bench_function(concat!("move/", $label), |b| {
            b.iter(|| {
                $buf.clear();
                Typed($E::Move {
                    seq: black_box(123_456),
                    name: "player7",
                    x: 10.5,
                    y: -3.25,
                    vx: 1.5,
                    vy: -0.5,
                    facing: 0.75,
                    firing: true,
                    hp: 97,
                })
                .encode(&mut $buf);
                $buf.len()
            })
        });
    };
}

const TEXT: &str = "gg, one more round?";

fn chat_payload() -> Vec<u8> {
    let mut p = Vec::new();
    msg! { "action": "chat", "text": TEXT, "from": "Alice" }.encode(&mut p);
    p
}

fn move_payload() -> Vec<u8> {
    let mut p = Vec::new();
    msg! {
        "action": "move", "seq": 123_456u64, "name": "player7", "x": 10.5f32, "y": -3.25f32,
        "vx": 1.5f32, "vy": -0.5f32, "facing": 0.75f32, "firing": true, "hp": 97u8,
    }
    .encode(&mut p);
    p
}

fn accessors_chat(m: &Message<'_>) -> Result<usize, repod::Error> {
    Ok(m.str("text")?.len() + m.str("from")?.len())
}

fn accessors_move(m: &Message<'_>) -> Result<f64, repod::Error> {
    let mut sum = m.u64("seq")? as f64 + m.str("name")?.len() as f64;
    for k in ["x", "y", "vx", "vy", "facing"] {
        sum += m.f64(k)?;
    }
    Ok(sum + m.bool("firing")? as u8 as f64 + m.u32("hp")? as f64)
}

fn decode(c: &mut Criterion) {
    let chat = chat_payload();
    let mv = move_payload();
    let mut g = c.benchmark_group("typed_decode");

    let m = Message::parse(&chat).unwrap();
    g.throughput(Throughput::Bytes(chat.len() as u64));
    g.bench_function("chat/accessors", |b| {
        b.iter(|| accessors_chat(black_box(&m)).unwrap())
    });
    g.bench_function("chat/struct_borrowed", |b| {
        b.iter(|| {
            let c: Chat = black_box(&m).decode().unwrap();
            c.text.len() + c.from.len()
        })
    });
    g.bench_function("chat/struct_owned", |b| {
        b.iter(|| {
            let c: ChatOwned = black_box(&m).decode().unwrap();
            c.text.len() + c.from.len()
        })
    });
    enum_benches!(decode g, m, "tagged_enum", ToServer);
    enum_benches!(decode g, m, "plain_enum", Plain);

    let m = Message::parse(&mv).unwrap();
    g.throughput(Throughput::Bytes(mv.len() as u64));
    g.bench_function("move/accessors", |b| {
        b.iter(|| accessors_move(black_box(&m)).unwrap())
    });
    g.bench_function("move/struct_borrowed", |b| {
        b.iter(|| {
            let v: Move = black_box(&m).decode().unwrap();
            v.seq as f64 + v.x as f64 + v.name.len() as f64
        })
    });
    enum_benches!(decode_move g, m, "tagged_enum", ToServer);
    enum_benches!(decode_move g, m, "plain_enum", Plain);
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("typed_encode");
    let mut buf = Vec::with_capacity(4096);

    g.throughput(Throughput::Bytes(chat_payload().len() as u64));
    g.bench_function("chat/msg", |b| {
        b.iter(|| {
            buf.clear();
            msg! { "action": "chat", "text": black_box(TEXT), "from": "Alice" }.encode(&mut buf);
            buf.len()
        })
    });
    g.bench_function("chat/typed_struct", |b| {
        b.iter(|| {
            buf.clear();
            let c = Chat {
                action: "chat",
                text: black_box(TEXT),
                from: "Alice",
            };
            Typed(&c).encode(&mut buf);
            buf.len()
        })
    });
    enum_benches!(encode_chat g, buf, "typed_enum", ToServer);
    enum_benches!(encode_chat g, buf, "plain_enum", Plain);

    g.throughput(Throughput::Bytes(move_payload().len() as u64));
    g.bench_function("move/msg", |b| {
        b.iter(|| {
            buf.clear();
            msg! {
                "action": "move", "seq": black_box(123_456u64), "name": "player7", "x": 10.5f32,
                "y": -3.25f32, "vx": 1.5f32, "vy": -0.5f32, "facing": 0.75f32, "firing": true,
                "hp": 97u8,
            }
            .encode(&mut buf);
            buf.len()
        })
    });
    g.bench_function("move/typed_struct", |b| {
        b.iter(|| {
            buf.clear();
            let v = Move {
                action: "move",
                seq: black_box(123_456),
                name: "player7",
                x: 10.5,
                y: -3.25,
                vx: 1.5,
                vy: -0.5,
                facing: 0.75,
                firing: true,
                hp: 97,
            };
            Typed(&v).encode(&mut buf);
            buf.len()
        })
    });
    enum_benches!(encode_move g, buf, "typed_enum", ToServer);
    enum_benches!(encode_move g, buf, "plain_enum", Plain);
    g.finish();
}

/// The encodings compared above must be the same bytes, or the comparison means nothing.
fn check_same_bytes() -> HandlerResult {
    let mut typed = Vec::new();
    Typed(ToServer::Chat {
        text: TEXT,
        from: "Alice",
    })
    .encode(&mut typed);
    assert_eq!(typed, chat_payload());
    typed.clear();
    Typed(Plain::Chat {
        text: TEXT,
        from: "Alice",
    })
    .encode(&mut typed);
    assert_eq!(typed, chat_payload());
    typed.clear();
    let m = move_payload();
    let v: Move = Message::parse(&m)?.decode()?;
    Typed(&v).encode(&mut typed);
    assert_eq!(typed, m);
    Ok(())
}

fn benches(c: &mut Criterion) {
    check_same_bytes().expect("typed and msg! encodings agree");
    decode(c);
    encode(c);
}

criterion_group!(typed, benches);
criterion_main!(typed);
