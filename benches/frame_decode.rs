//! Frame decoding throughput: `FrameDecoder` plus `Message::parse` of every frame, for frames of
//! 64 B, 1 KiB and 64 KiB (length prefix included), fed whole or in awkward chunks.
//!
//! Each iteration decodes a wire buffer of about 256 KiB (whole frames only, so the decoder ends
//! every iteration empty and is reused); throughput is reported in wire bytes.
//!
//! Run: `cargo bench --bench frame_decode -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::ops::ControlFlow;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use repod::frame::{encode_frame, FrameDecoder, HEADER_LEN};
use repod::{msg, Encode, Message};

/// Bytes of wire data decoded per iteration (rounded to whole frames).
const WIRE_BYTES: usize = 256 * 1024;

/// A game-like payload of exactly `len` bytes: an action, a sequence number, an array of
/// `[x, y]` positions filling about half, and a string padding the rest.
fn payload(len: usize, seq: u32) -> Vec<u8> {
    let positions: Vec<(f32, f32)> = (0..len / 2 / 11)
        .map(|i| (i as f32 * 0.5, -(i as f32)))
        .collect();
    let build = |pad: &str| {
        let mut p = Vec::new();
        msg! { "action": "state", "seq": seq, "pos": &positions[..], "pad": pad }.encode(&mut p);
        p
    };
    // The string header grows with its length (1, 2 or 3 bytes here): try each.
    let base = build("").len();
    for extra_hdr in [0, 1, 2] {
        let Some(n) = len.checked_sub(base + extra_hdr) else {
            continue;
        };
        let p = build(&"x".repeat(n));
        if p.len() == len {
            return p;
        }
    }
    panic!("cannot build a payload of exactly {len} bytes");
}

/// `WIRE_BYTES` worth of frames of `frame_len` bytes each (prefix included).
fn wire(frame_len: usize) -> (Vec<u8>, usize) {
    let count = (WIRE_BYTES / frame_len).max(1);
    let mut w = Vec::with_capacity(count * frame_len);
    for i in 0..count {
        let p = payload(frame_len - HEADER_LEN, i as u32);
        assert!(Message::parse(&p).is_ok());
        encode_frame(&mut w, &p).unwrap();
    }
    assert_eq!(w.len(), count * frame_len);
    (w, count)
}

fn decode_all(decoder: &mut FrameDecoder, wire: &[u8], chunk: usize) -> usize {
    let mut frames = 0;
    for c in wire.chunks(chunk) {
        decoder
            .decode(c, |p| {
                let m = Message::parse(p).expect("valid frame");
                black_box(m.action());
                frames += 1;
                ControlFlow::Continue(())
            })
            .expect("frame within limits");
    }
    frames
}

fn bench_decode(c: &mut Criterion) {
    for (label, frame_len) in [("64B", 64), ("1KiB", 1024), ("64KiB", 64 * 1024)] {
        let (wire, count) = wire(frame_len);
        let mut group = c.benchmark_group(format!("frame_decode/{label}"));
        group.throughput(Throughput::Bytes(wire.len() as u64));
        for (chunking, chunk) in [("whole", wire.len()), ("7B", 7), ("1000B", 1000)] {
            group.bench_with_input(
                BenchmarkId::from_parameter(chunking),
                &chunk,
                |b, &chunk| {
                    let mut decoder = FrameDecoder::new(1 << 20);
                    assert_eq!(decode_all(&mut decoder, &wire, chunk), count);
                    b.iter(|| decode_all(&mut decoder, black_box(&wire), chunk));
                },
            );
        }
        // The framing alone, for comparison: what `Message::parse` adds on top.
        group.bench_function("whole_no_parse", |b| {
            let mut decoder = FrameDecoder::new(1 << 20);
            b.iter(|| {
                let mut n = 0usize;
                decoder
                    .decode(black_box(&wire), |p| {
                        n += black_box(p).len();
                        ControlFlow::Continue(())
                    })
                    .unwrap();
                n
            });
        });
        group.finish();
    }
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);
