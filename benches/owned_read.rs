//! Keeping messages past their handler: copy each kept payload out of a reused `Vec` read
//! buffer (what repod does: `Message::to_owned`), or make the read buffer a `BytesMut` and
//! split every kept frame off it as a shared `Bytes` (no copy).
//!
//! Reads of 64 KiB full of 64-byte messages; the game keeps one message in `KEEP_EVERY` and
//! holds the last 64 it kept (a replay buffer, a chat history). Criterion times a read's worth
//! of messages; before that, a counting allocator reports, for each way, the allocations per
//! read and the heap the 64 kept messages hold alive, which is where the two differ most: a
//! `Bytes` split off a `BytesMut` keeps its whole 64 KiB allocation alive.
//!
//! `cargo bench --bench owned_read`

// The counting allocator is the one place that needs `unsafe`: the library forbids it.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::{Buf, Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// `System`, counting allocations and the bytes alive.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to `System`, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const READ: usize = 64 * 1024;
const PAYLOAD: usize = 64;
const FRAME: usize = 4 + PAYLOAD;
const HELD: usize = 64;

/// One read's bytes: whole frames only, so every read starts at a frame.
fn read_bytes() -> Vec<u8> {
    let mut v = Vec::with_capacity(READ);
    while v.len() + FRAME <= READ {
        v.extend_from_slice(&(PAYLOAD as u32).to_be_bytes());
        v.extend((0..PAYLOAD).map(|i| i as u8));
    }
    v
}

/// The read buffer is a reused `Vec`; a kept message is copied into its own `Bytes`.
struct Copying {
    buf: Vec<u8>,
    held: VecDeque<Bytes>,
    seen: usize,
}

impl Copying {
    fn read(&mut self, input: &[u8], keep_every: usize) {
        self.buf.clear();
        self.buf.extend_from_slice(input); // the socket read
        for frame in self.buf.chunks_exact(FRAME) {
            self.seen += 1;
            if self.seen % keep_every == 0 {
                if self.held.len() == HELD {
                    self.held.pop_front();
                }
                self.held.push_back(Bytes::copy_from_slice(&frame[4..]));
            }
            black_box(&frame[4..]); // the handler
        }
    }
}

/// The read buffer is a `BytesMut`; a kept frame is split off it and frozen (no copy), the
/// others are skipped.
struct Sharing {
    buf: BytesMut,
    held: VecDeque<Bytes>,
    seen: usize,
}

impl Sharing {
    fn read(&mut self, input: &[u8], keep_every: usize) {
        self.buf.reserve(READ);
        self.buf.extend_from_slice(input); // the socket read
        while self.buf.len() >= FRAME {
            self.seen += 1;
            black_box(&self.buf[4..FRAME]); // the handler
            if self.seen % keep_every == 0 {
                if self.held.len() == HELD {
                    self.held.pop_front();
                }
                let frame = self.buf.split_to(FRAME).freeze();
                self.held.push_back(frame.slice(4..));
            } else {
                self.buf.advance(FRAME);
            }
        }
    }
}

/// Allocations per read and heap alive (above `base`), after a warm-up, for one way.
fn footprint(name: &str, keep_every: usize, base: usize, mut read: impl FnMut(usize)) {
    for _ in 0..1000 {
        read(keep_every);
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..1000 {
        read(keep_every);
    }
    let per_read = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / 1000.0;
    println!(
        "owned_read {name} keep 1 in {keep_every}: {per_read:.2} allocations per read, \
         {} KiB alive (read buffer and {HELD} kept messages)",
        (LIVE.load(Ordering::Relaxed) - base) / 1024
    );
}

fn bench(c: &mut Criterion) {
    let input = read_bytes();
    let messages = input.len() / FRAME;
    let mut g = c.benchmark_group("owned_read");
    g.throughput(Throughput::Elements(messages as u64));
    for keep_every in [1usize, 16, 1024] {
        {
            let base = LIVE.load(Ordering::Relaxed);
            let mut copying = Copying {
                buf: Vec::with_capacity(READ),
                held: VecDeque::with_capacity(HELD),
                seen: 0,
            };
            footprint("copy", keep_every, base, |k| copying.read(&input, k));
            g.bench_with_input(
                BenchmarkId::new("copy", keep_every),
                &keep_every,
                |b, &k| b.iter(|| copying.read(&input, k)),
            );
        }
        {
            let base = LIVE.load(Ordering::Relaxed);
            let mut sharing = Sharing {
                buf: BytesMut::with_capacity(READ),
                held: VecDeque::with_capacity(HELD),
                seen: 0,
            };
            footprint("share", keep_every, base, |k| sharing.read(&input, k));
            g.bench_with_input(
                BenchmarkId::new("share", keep_every),
                &keep_every,
                |b, &k| b.iter(|| sharing.read(&input, k)),
            );
        }
    }
    g.finish();
}

criterion_group!(owned_read, bench);
criterion_main!(owned_read);
