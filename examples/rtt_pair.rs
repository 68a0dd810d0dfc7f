//! Paired ping-pong RTT of several echo servers, measured in one process, turn and turn about.
//!
//! ```text
//! cargo run --release --example rtt_pair -- ADDR_A ADDR_B [ADDR_C ...] [--secs 20] [--block 500]
//!                                            [--tls-ca FILE] [--tls-name NAME]
//! ```
//!
//! Each entry is a server and how to reach it:
//!
//! - `HOST:PORT`: length-prefixed frames over TCP;
//! - `tls://HOST:PORT`: the same over TLS;
//! - `ws://HOST:PORT/PATH`: WebSocket, one masked binary frame per request, the server's
//!   unmasked binary frames as replies (no length prefix);
//! - `wss://HOST:PORT/PATH`: WebSocket over TLS.
//!
//! so plain TCP, TLS, WebSocket and wss round trips of one server (or several) pair up in one
//! run. TLS is blocking rustls (`StreamOwned<ClientConnection, TcpStream>`) with the crypto
//! provider of repod's rustls features, TLS 1.3 and 1.2 offered, X25519's key share sent (as
//! `loadgen --tls`), the server's chain verified for `--tls-name` (default: the entry's host if
//! it is a name, else `localhost`) against the CA certificates of `--tls-ca` (PEM; Mozilla's
//! roots without it). The handshake and the upgrade happen before any timing; each TLS entry
//! prints the negotiated protocol, cipher suite and key exchange group.
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
//! adjacent pairing (BENCHMARKS-HISTORY.md, "Paired RTT").
//!
//! Prints per server: the round trips, exact p50, p99 and mean; then, for each server after the
//! first, the median of the per-block p50 ratios against the first with its interquartile range,
//! and the ratio of the overall p50s. The requests are the load generator's `echo` maps (64
//! payload bytes), so `echo_server` answers `echo_reply` and the raw floor echoes them unchanged.
//! Over TLS the round trip includes both ends' record encryption and decryption; over
//! WebSocket, the masking of the request and the frame headers.
//! Pin servers and probe on one CPU (`taskset -c 0`) so no round trip waits for another vCPU to
//! wake up (`benches/rtt_pair.sh` does).

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use repod::ws::handshake::{client_key, parse_response, write_request};
use repod::ws::{encode_frame, MaskKeys, Opcode, WsUrl};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// Appends the 4-byte length prefix and the map `{"action": "echo", "seq", "t", "payload"}`.
fn push_echo(out: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    push_echo_map(out, seq, payload);
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends the map `{"action": "echo", "seq", "t", "payload"}` alone (WebSocket).
fn push_echo_map(out: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    const VEC_WRITE: &str = "writing to a Vec cannot fail";
    rmp::encode::write_map_len(out, 4).expect(VEC_WRITE);
    rmp::encode::write_str(out, "action").expect(VEC_WRITE);
    rmp::encode::write_str(out, "echo").expect(VEC_WRITE);
    rmp::encode::write_str(out, "seq").expect(VEC_WRITE);
    rmp::encode::write_uint(out, seq).expect(VEC_WRITE);
    rmp::encode::write_str(out, "t").expect(VEC_WRITE);
    rmp::encode::write_uint(out, 1 << 40).expect(VEC_WRITE);
    rmp::encode::write_str(out, "payload").expect(VEC_WRITE);
    rmp::encode::write_bin(out, payload).expect(VEC_WRITE);
}

/// Reads one whole frame into `buf`.
fn read_frame(stream: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut head = [0; 4];
    stream.read_exact(&mut head)?;
    buf.resize(u32::from_be_bytes(head) as usize, 0);
    stream.read_exact(buf)
}

/// A blocking connection: plain TCP or TLS.
enum Link {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Link {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Link::Plain(s) => s.read(buf),
            Link::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Link {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Link::Plain(s) => s.write(buf),
            Link::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Link::Plain(s) => s.flush(),
            Link::Tls(s) => s.flush(),
        }
    }
}

/// A WebSocket connection's state on top of its link.
struct Ws {
    keys: MaskKeys,
    /// The msgpack map of the request, before it is masked into a frame.
    map: Vec<u8>,
    /// Bytes read past the upgrade answer, read before the link.
    early: Vec<u8>,
}

/// Reads exactly `buf.len()` bytes, the early bytes first.
fn read_exact_after(link: &mut Link, early: &mut Vec<u8>, buf: &mut [u8]) -> io::Result<()> {
    if early.is_empty() {
        return link.read_exact(buf);
    }
    let k = early.len().min(buf.len());
    buf[..k].copy_from_slice(&early[..k]);
    early.drain(..k);
    link.read_exact(&mut buf[k..])
}

/// Reads the payload of the server's next binary WebSocket message into `buf` (unmasked
/// frames, one per message, as echo servers send them); answers pings on the way.
fn read_ws_message(link: &mut Link, ws: &mut Ws, buf: &mut Vec<u8>) -> io::Result<()> {
    loop {
        let mut head = [0; 2];
        read_exact_after(link, &mut ws.early, &mut head)?;
        let len = match head[1] & 0x7f {
            126 => {
                let mut ext = [0; 2];
                read_exact_after(link, &mut ws.early, &mut ext)?;
                u64::from(u16::from_be_bytes(ext))
            }
            127 => {
                let mut ext = [0; 8];
                read_exact_after(link, &mut ws.early, &mut ext)?;
                u64::from_be_bytes(ext)
            }
            n => u64::from(n),
        };
        let mask = if head[1] & 0x80 != 0 {
            let mut key = [0; 4];
            read_exact_after(link, &mut ws.early, &mut key)?;
            Some(key)
        } else {
            None
        };
        if len > 64 << 20 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "websocket frame too large",
            ));
        }
        buf.resize(len as usize, 0);
        read_exact_after(link, &mut ws.early, buf)?;
        if let Some(key) = mask {
            buf.iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b ^= key[i % 4]);
        }
        match head[0] & 0x0f {
            0x2 => return Ok(()),
            0x8 => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "websocket closed by the server",
                ))
            }
            0x9 => {
                let mut pong = Vec::new();
                encode_frame(&mut pong, Opcode::Pong, true, buf, Some(ws.keys.next_key()));
                link.write_all(&pong)?;
            }
            _ => {} // text, pong: not ours
        }
    }
}

/// The WebSocket upgrade on `link`: the request, then the `101` answer, whatever follows it
/// kept for the first frame.
fn upgrade(link: &mut Link, url: &WsUrl) -> io::Result<Ws> {
    let key = client_key();
    let mut request = Vec::new();
    write_request(&mut request, url, &key);
    link.write_all(&request)?;
    let mut answer = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        let n = link.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed during the websocket upgrade",
            ));
        }
        answer.extend_from_slice(&chunk[..n]);
        match parse_response(&answer, &key, 16 * 1024) {
            Ok(None) => {}
            Ok(Some(len)) => {
                return Ok(Ws {
                    keys: MaskKeys::from_os(),
                    map: Vec::new(),
                    early: answer.split_off(len),
                })
            }
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("websocket upgrade: {e}"),
                ))
            }
        }
    }
}

/// The TLS client: the crypto provider of rustls's features with X25519 moved first (its key
/// share is the one sent), TLS 1.3 and 1.2, the chain verified against `ca` or Mozilla's roots.
fn tls_config(ca: Option<&str>) -> io::Result<Arc<ClientConfig>> {
    let bad = |e: &dyn std::fmt::Display| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("--tls-ca: {e}"))
    };
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
                roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
            if roots.is_empty() {
                return Err(bad(&format!("{path}: no certificate")));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let default = ClientConfig::builder()
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    let mut provider = rustls::crypto::CryptoProvider::clone(default.crypto_provider());
    provider
        .kx_groups
        .sort_by_key(|g| g.name() != rustls::NamedGroup::X25519);
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| io::Error::other(format!("TLS versions: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// One entry of the command line: where the server is and how to reach it.
struct Target {
    /// `HOST:PORT`.
    addr: String,
    tls: bool,
    /// WebSocket: the URL of the upgrade request.
    ws: Option<WsUrl>,
}

fn parse_entry(entry: &str) -> io::Result<Target> {
    let bad = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
    let lower = entry.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("tls://").map(|_| &entry[6..]) {
        return Ok(Target {
            addr: rest.trim_end_matches('/').to_string(),
            tls: true,
            ws: None,
        });
    }
    let Some((url, tls)) =
        WsUrl::parse_with_tls(entry).map_err(|e| bad(format!("{entry}: {e}")))?
    else {
        return Ok(Target {
            addr: entry.to_string(),
            tls: false,
            ws: None,
        });
    };
    let addr = if url.host.contains(':') {
        format!("[{}]:{}", url.host, url.port)
    } else {
        format!("{}:{}", url.host, url.port)
    };
    Ok(Target {
        addr,
        tls,
        ws: Some(url),
    })
}

struct Server {
    addr: String,
    link: Link,
    /// Some: WebSocket framing; None: length-prefixed frames.
    ws: Option<Ws>,
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
    let mut tls_ca: Option<String> = None;
    let mut tls_name: Option<String> = None;
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
            "--tls-ca" => tls_ca = Some(args.next().ok_or_else(|| bad("--tls-ca needs a file"))?),
            "--tls-name" => {
                tls_name = Some(args.next().ok_or_else(|| bad("--tls-name needs a name"))?)
            }
            _ => addrs.push(a),
        }
    }
    if addrs.len() < 2 {
        return Err(bad(
            "usage: rtt_pair ENTRY_A ENTRY_B [ENTRY ...] [--secs S] [--block N] [--tls-ca FILE] \
             [--tls-name NAME], an entry being HOST:PORT, tls://HOST:PORT, ws://HOST:PORT/PATH \
             or wss://HOST:PORT/PATH",
        ));
    }
    let mut tls_config_once = None;
    let mut servers = Vec::new();
    let mut frame = Vec::new();
    for entry in addrs {
        let target = parse_entry(&entry)?;
        let sock = target
            .addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| bad("address does not resolve"))?;
        let stream = TcpStream::connect(sock)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut link = if target.tls {
            let config = match &tls_config_once {
                Some(c) => Arc::clone(c),
                None => Arc::clone(tls_config_once.insert(tls_config(tls_ca.as_deref())?)),
            };
            // The name: --tls-name, else the URL's host if it is a name, else localhost.
            let host = target.ws.as_ref().map(|u| u.host.clone());
            let name = tls_name.clone().unwrap_or_else(|| match host {
                Some(h) if h.parse::<std::net::IpAddr>().is_err() => h,
                _ => "localhost".into(),
            });
            let name = ServerName::try_from(name).map_err(|e| bad(&format!("--tls-name: {e}")))?;
            let conn = ClientConnection::new(config, name)
                .map_err(|e| io::Error::other(format!("{entry}: {e}")))?;
            Link::Tls(Box::new(StreamOwned::new(conn, stream)))
        } else {
            Link::Plain(stream)
        };
        let mut ws = match &target.ws {
            Some(url) => Some(upgrade(&mut link, url)?),
            None => None,
        };
        match &mut ws {
            None => read_frame(&mut link, &mut frame)?, // the greeting
            Some(ws) => read_ws_message(&mut link, ws, &mut frame)?,
        }
        if let Link::Tls(s) = &link {
            let c = &s.conn;
            println!(
                "{entry}: {} {} {}",
                c.protocol_version()
                    .map_or_else(|| "?".into(), |v| format!("{v:?}")),
                c.negotiated_cipher_suite()
                    .map_or_else(|| "?".into(), |s| format!("{:?}", s.suite())),
                c.negotiated_key_exchange_group()
                    .map_or_else(|| "?".into(), |g| format!("{:?}", g.name()))
            );
        }
        servers.push(Server {
            addr: entry,
            link,
            ws,
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
                match &mut s.ws {
                    None => push_echo(&mut request, seq, &payload),
                    Some(ws) => {
                        ws.map.clear();
                        push_echo_map(&mut ws.map, seq, &payload);
                        let key = ws.keys.next_key();
                        encode_frame(&mut request, Opcode::Binary, true, &ws.map, Some(key));
                    }
                }
                let t0 = Instant::now();
                s.link.write_all(&request)?;
                match &mut s.ws {
                    None => read_frame(&mut s.link, &mut frame)?,
                    Some(ws) => read_ws_message(&mut s.link, ws, &mut frame)?,
                }
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
