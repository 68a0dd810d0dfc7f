//! Route lookup: the hash map the route table uses, against a linear scan of an inline
//! `SmallVec`, for route tables of typical sizes. Decides whether small tables should scan.
//!
//! `cargo bench --bench route_table`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rustc_hash::FxHashMap;
use smallvec::SmallVec;

/// Action names as games write them: short, some sharing prefixes.
fn names(n: usize) -> Vec<String> {
    let base = [
        "move", "chat", "nickname", "shoot", "join", "leave", "ready", "input", "ping", "pong",
        "spawn", "score", "emote", "vote", "trade", "buy",
    ];
    (0..n)
        .map(|i| match base.get(i) {
            Some(b) => (*b).to_owned(),
            None => format!("action_{i}"),
        })
        .collect()
}

fn lookups(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_table");
    for n in [4usize, 8, 16, 32] {
        let names = names(n);
        let map: FxHashMap<Box<str>, usize> = names
            .iter()
            .enumerate()
            .map(|(i, s)| (s.as_str().into(), i))
            .collect();
        let list: SmallVec<[(Box<str>, usize); 8]> = names
            .iter()
            .enumerate()
            .map(|(i, s)| (s.as_str().into(), i))
            .collect();
        // Every route in turn, as received actions are (copied, as they come from a buffer).
        let queries: Vec<Vec<u8>> = names.iter().map(|s| s.as_bytes().to_vec()).collect();
        group.bench_with_input(BenchmarkId::new("hash", n), &n, |b, _| {
            b.iter(|| {
                let mut sum = 0;
                for q in &queries {
                    let q = std::str::from_utf8(q).unwrap();
                    sum += map.get(black_box(q)).copied().unwrap_or(0);
                }
                sum
            })
        });
        group.bench_with_input(BenchmarkId::new("scan", n), &n, |b, _| {
            b.iter(|| {
                let mut sum = 0;
                for q in &queries {
                    let q = std::str::from_utf8(q).unwrap();
                    let q = black_box(q);
                    sum += list
                        .iter()
                        .find(|(k, _)| k.len() == q.len() && **k == *q)
                        .map_or(0, |(_, v)| *v);
                }
                sum
            })
        });
    }
    group.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
