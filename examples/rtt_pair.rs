//! Paired ping-pong RTT of several echo servers, measured in one process, turn and turn about.
//!
//! ```text
//! cargo run --release --example rtt_pair -- ADDR_A ADDR_B [ADDR_C ...] [--secs 20] [--block 500]
//! ```
//!
//! One blocking TCP connection per server. The probe sends `--block` echo requests to the first
//! server, one at a time (each waits for its reply), then `--block` to the next, and so on,
//! reversing the order every round, until `--secs` pass. Every round trip is timed to the
//! nanosecond and kept, so p50 is exact (no histogram buckets).
//!
//! Why not one server after another, a fresh run each (`benches/rtt_rotation.sh`)? On a shared
//! virtual machine the round trip drifts by ±10% from one second to the next, far more than the
//! 1–3% a change in the server's code makes. Blocks of a few milliseconds put both servers in
//! the same state of the machine; the median over blocks of the per-block ratio then resolves
//! well under 1%.
//!
//! Where a server stands in the argument list still moves its ratio by about half a percent
//! (the same binary twice reads 0.994–1.000): for a verdict, run both orders and count every
//! adjacent pairing (BENCHMARKS.md, "Paired RTT").
//!
//! Prints per server: the round trips, exact p50, p99 and mean; then, for each server after the
//! first, the median of the per-block p50 ratios against the first with its interquartile range,
//! and the ratio of the overall p50s. The requests are the load generator's `echo` maps (64
//! payload bytes), so `echo_server` answers `echo_reply` and the raw floor echoes them unchanged.
//! Pin servers and probe on one CPU (`taskset -c 0`) so no round trip waits for another vCPU to
//! wake up (`benches/rtt_pair.sh` does).

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Appends the 4-byte length prefix and the map `{"action": "echo", "seq", "t", "payload"}`.
fn push_echo(out: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    const VEC_WRITE: &str = "writing to a Vec cannot fail";
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    rmp::encode::write_map_len(out, 4).expect(VEC_WRITE);
    rmp::encode::write_str(out, "action").expect(VEC_WRITE);
    rmp::encode::write_str(out, "echo").expect(VEC_WRITE);
    rmp::encode::write_str(out, "seq").expect(VEC_WRITE);
    rmp::encode::write_uint(out, seq).expect(VEC_WRITE);
    rmp::encode::write_str(out, "t").expect(VEC_WRITE);
    rmp::encode::write_uint(out, 1 << 40).expect(VEC_WRITE);
    rmp::encode::write_str(out, "payload").expect(VEC_WRITE);
    rmp::encode::write_bin(out, payload).expect(VEC_WRITE);
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Reads one whole frame into `buf`.
fn read_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut head = [0; 4];
    stream.read_exact(&mut head)?;
    buf.resize(u32::from_be_bytes(head) as usize, 0);
    stream.read_exact(buf)
}

struct Server {
    addr: String,
    stream: TcpStream,
    /// Every round trip, in nanoseconds.
    rtts: Vec<u64>,
    /// The p50 of each block.
    block_p50: Vec<u64>,
}

fn p50(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() -> io::Result<()> {
    let mut addrs = Vec::new();
    let mut secs = 20.0;
    let mut block = 500usize;
    let mut args = std::env::args().skip(1);
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, why.to_string());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--secs" => {
                secs = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| bad("--secs needs a number"))?
            }
            "--block" => {
                block = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .filter(|&b| b > 0)
                    .ok_or_else(|| bad("--block needs a positive number"))?
            }
            _ => addrs.push(a),
        }
    }
    if addrs.len() < 2 {
        return Err(bad(
            "usage: rtt_pair ADDR_A ADDR_B [ADDR ...] [--secs S] [--block N]",
        ));
    }
    let mut servers = Vec::new();
    let mut frame = Vec::new();
    for addr in addrs {
        let sock = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| bad("address does not resolve"))?;
        let mut stream = TcpStream::connect(sock)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        read_frame(&mut stream, &mut frame)?; // the greeting
        servers.push(Server {
            addr,
            stream,
            rtts: Vec::with_capacity(1 << 22),
            block_p50: Vec::new(),
        });
    }

    let payload = [0x5a; 64];
    let mut request = Vec::with_capacity(128);
    let mut scratch = Vec::with_capacity(block);
    let mut seq = 0u64;
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut round = 0usize;
    while Instant::now() < end {
        let n = servers.len();
        for k in 0..n {
            let s = &mut servers[if round % 2 == 0 { k } else { n - 1 - k }];
            scratch.clear();
            for _ in 0..block {
                seq += 1;
                request.clear();
                push_echo(&mut request, seq, &payload);
                let t0 = Instant::now();
                s.stream.write_all(&request)?;
                read_frame(&mut s.stream, &mut frame)?;
                scratch.push(t0.elapsed().as_nanos() as u64);
            }
            s.rtts.extend_from_slice(&scratch);
            s.block_p50.push(p50(&mut scratch));
        }
        round += 1;
    }

    println!("{round} rounds of {block} round trips per server");
    for s in &mut servers {
        let mean = s.rtts.iter().sum::<u64>() as f64 / s.rtts.len() as f64;
        let n = s.rtts.len();
        let median = p50(&mut s.rtts); // sorts them
        println!(
            "{}: {} round trips, p50 {:.3} us, p99 {:.3} us, mean {:.3} us",
            s.addr,
            n,
            median as f64 / 1e3,
            s.rtts[n * 99 / 100] as f64 / 1e3,
            mean / 1e3
        );
    }
    let base_p50 = servers[0].rtts[servers[0].rtts.len() / 2] as f64;
    for s in &servers[1..] {
        let mut ratios: Vec<f64> = s
            .block_p50
            .iter()
            .zip(&servers[0].block_p50)
            .map(|(&b, &a)| b as f64 / a as f64)
            .collect();
        ratios.sort_by(f64::total_cmp);
        println!(
            "RATIO {} / {}: block p50 ratio median {:.4} [IQR {:.4}-{:.4}], overall p50 ratio {:.4}",
            s.addr,
            servers[0].addr,
            quantile(&ratios, 0.5),
            quantile(&ratios, 0.25),
            quantile(&ratios, 0.75),
            s.rtts[s.rtts.len() / 2] as f64 / base_p50
        );
    }
    Ok(())
}
