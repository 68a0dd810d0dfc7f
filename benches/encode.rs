//! Encoding outgoing messages: a typical game-state snapshot (20 fields, nested arrays of
//! positions) and a small chat message, with `msg!` and, for comparison, with `rmpv::Value`
//! (built each time, as a game would from fresh state, and prebuilt: the encoding alone).
//!
//! The output buffer is reused, as a connection's output buffer is. Throughput is reported in
//! encoded bytes.
//!
//! Run: `cargo bench --bench encode -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use repod::{msg, Encode, Message};
use rmpv::Value;

/// The game state a server broadcasts every tick.
struct World {
    tick: u64,
    players: Vec<Player>,
    bullets: Vec<(f32, f32)>,
    pickups: Vec<(i32, i32)>,
}

struct Player {
    id: u32,
    name: String,
    pos: (f32, f32),
    vel: (f32, f32),
    hp: u8,
}

fn world() -> World {
    World {
        tick: 123_456,
        players: (0..8)
            .map(|i| Player {
                id: i,
                name: format!("player{i}"),
                pos: (i as f32 * 10.5, i as f32 * -3.25),
                vel: (1.5, -0.5),
                hp: 100 - i as u8,
            })
            .collect(),
        bullets: (0..16).map(|i| (i as f32, i as f32 * 2.0)).collect(),
        pickups: (0..6).map(|i| (i * 32, i * -16)).collect(),
    }
}

/// The snapshot with `msg!`: 20 top-level fields.
fn encode_state_msg(w: &World, buf: &mut Vec<u8>) {
    let positions: [(f32, f32); 8] = std::array::from_fn(|i| w.players[i].pos);
    let velocities: [(f32, f32); 8] = std::array::from_fn(|i| w.players[i].vel);
    let hps: [u8; 8] = std::array::from_fn(|i| w.players[i].hp);
    let ids: [u32; 8] = std::array::from_fn(|i| w.players[i].id);
    let names: [&str; 8] = std::array::from_fn(|i| w.players[i].name.as_str());
    msg! {
        "action": "state",
        "tick": w.tick,
        "time": w.tick as f64 / 60.0,
        "map": "dust",
        "round": 3,
        "round_time_left": 87.5,
        "score_red": 12,
        "score_blue": 9,
        "paused": false,
        "ids": ids,
        "names": names,
        "positions": positions,
        "velocities": velocities,
        "hp": hps,
        "bullets": &w.bullets[..],
        "pickups": &w.pickups[..],
        "flag": msg! { "x": 512.0, "y": 256.0, "carrier": Some(3u32) },
        "wind": (0.25f32, -0.125f32),
        "events": ["kill", "pickup"],
        "checksum": 0xdead_beefu32,
    }
    .encode(buf);
}

fn pair(p: (f32, f32)) -> Value {
    Value::Array(vec![p.0.into(), p.1.into()])
}

/// The same snapshot built as an `rmpv::Value` tree (same bytes on the wire).
fn state_value(w: &World) -> Value {
    let entries: Vec<(Value, Value)> = vec![
        ("action".into(), "state".into()),
        ("tick".into(), w.tick.into()),
        ("time".into(), (w.tick as f64 / 60.0).into()),
        ("map".into(), "dust".into()),
        ("round".into(), 3.into()),
        ("round_time_left".into(), 87.5.into()),
        ("score_red".into(), 12.into()),
        ("score_blue".into(), 9.into()),
        ("paused".into(), false.into()),
        (
            "ids".into(),
            Value::Array(w.players.iter().map(|p| p.id.into()).collect()),
        ),
        (
            "names".into(),
            Value::Array(w.players.iter().map(|p| p.name.as_str().into()).collect()),
        ),
        (
            "positions".into(),
            Value::Array(w.players.iter().map(|p| pair(p.pos)).collect()),
        ),
        (
            "velocities".into(),
            Value::Array(w.players.iter().map(|p| pair(p.vel)).collect()),
        ),
        (
            "hp".into(),
            Value::Array(w.players.iter().map(|p| p.hp.into()).collect()),
        ),
        (
            "bullets".into(),
            Value::Array(w.bullets.iter().map(|&b| pair(b)).collect()),
        ),
        (
            "pickups".into(),
            Value::Array(
                w.pickups
                    .iter()
                    .map(|&(x, y)| Value::Array(vec![x.into(), y.into()]))
                    .collect(),
            ),
        ),
        (
            "flag".into(),
            Value::Map(vec![
                ("x".into(), 512.0.into()),
                ("y".into(), 256.0.into()),
                ("carrier".into(), 3u32.into()),
            ]),
        ),
        ("wind".into(), pair((0.25, -0.125))),
        (
            "events".into(),
            Value::Array(vec!["kill".into(), "pickup".into()]),
        ),
        ("checksum".into(), 0xdead_beefu32.into()),
    ];
    Value::Map(entries)
}

fn encode_chat_msg(from: &str, text: &str, buf: &mut Vec<u8>) {
    msg! { "action": "chat", "from": from, "text": text }.encode(buf);
}

fn chat_value(from: &str, text: &str) -> Value {
    Value::Map(vec![
        ("action".into(), "chat".into()),
        ("from".into(), from.into()),
        ("text".into(), text.into()),
    ])
}

fn bench_encode(c: &mut Criterion) {
    let w = world();

    let mut reference = Vec::new();
    encode_state_msg(&w, &mut reference);
    let mut via_value = Vec::new();
    state_value(&w).encode(&mut via_value);
    assert_eq!(reference, via_value, "msg! and rmpv must agree");
    let m = Message::parse(&reference).unwrap();
    assert_eq!(m.entries().len(), 20);

    let mut group = c.benchmark_group("encode/game_state");
    group.throughput(Throughput::Bytes(reference.len() as u64));
    let mut buf = Vec::with_capacity(4096);
    group.bench_function("msg", |b| {
        b.iter(|| {
            buf.clear();
            encode_state_msg(black_box(&w), &mut buf);
            buf.len()
        })
    });
    group.bench_function("rmpv_build_and_encode", |b| {
        b.iter(|| {
            buf.clear();
            state_value(black_box(&w)).encode(&mut buf);
            buf.len()
        })
    });
    let prebuilt = state_value(&w);
    group.bench_function("rmpv_encode_prebuilt", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&prebuilt).encode(&mut buf);
            buf.len()
        })
    });
    group.finish();

    let (from, text) = ("Alice", "gg, one more round?");
    let mut reference = Vec::new();
    encode_chat_msg(from, text, &mut reference);
    let mut via_value = Vec::new();
    chat_value(from, text).encode(&mut via_value);
    assert_eq!(reference, via_value);

    let mut group = c.benchmark_group("encode/chat");
    group.throughput(Throughput::Bytes(reference.len() as u64));
    group.bench_function("msg", |b| {
        b.iter(|| {
            buf.clear();
            encode_chat_msg(black_box(from), black_box(text), &mut buf);
            buf.len()
        })
    });
    group.bench_function("rmpv_build_and_encode", |b| {
        b.iter(|| {
            buf.clear();
            chat_value(black_box(from), black_box(text)).encode(&mut buf);
            buf.len()
        })
    });
    let prebuilt = chat_value(from, text);
    group.bench_function("rmpv_encode_prebuilt", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&prebuilt).encode(&mut buf);
            buf.len()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_encode);
criterion_main!(benches);
