//! Load generator for servers that speak the repod wire protocol.
//!
//! Frames are a 4-byte big-endian length followed by a msgpack map with an
//! `"action"` key; a server greets each new connection with
//! `{"action": "connected"}`. The scenarios target the *echo protocol*:
//! `{"action": "echo", ...}` is answered to the sender as `"echo_reply"` with
//! the other fields preserved, and `{"action": "broadcast", ...}` is sent to
//! every connected client as `"broadcast_reply"`.
//!
//! This example deliberately uses only `mio`, `rmp` and `std` (not the
//! `repod` API), so it can load any implementation of the protocol: repod,
//! the baselines in `benches/baselines/`, or the Python library. Over
//! WebSocket (`--ws`, `--url`) it also uses repod's sans-IO codec,
//! `repod::ws` (the upgrade request and response, frame encoding and
//! decoding), which is plain RFC 6455 and talks to any WebSocket server.
//! Over TLS (`--tls`) it uses `rustls` (repod's dependency, feature `tls`)
//! directly, not repod's TLS, so it talks to any TLS server.
//!
//! WebSocket: with `--ws` (or `--url ws://HOST:PORT/PATH`) every scenario
//! runs over WebSocket instead: each connection sends the HTTP upgrade
//! request, checks the `101` answer, then every message is one masked binary
//! frame holding the msgpack map (no length prefix); the server's frames are
//! unmasked binary frames, and its greeting follows the upgrade as on TCP.
//! Pings are answered; a close frame counts as the server closing.
//!
//! TLS: with `--tls` (or `--url wss://HOST:PORT/PATH`) every scenario runs over TLS, and
//! `--tls --ws` is WebSocket over TLS (wss). The client is rustls 0.23 with the crypto
//! provider repod's rustls features select (ring or aws-lc-rs), TLS 1.3 and 1.2 offered, the
//! provider's key exchange groups with X25519 moved first, so that one classical key share is
//! sent whatever the provider's default (`--tls-kx` picks another), and no session
//! resumption (every connection makes a full handshake). It verifies the server's
//! certificate chain for `--tls-name` against the CA certificates of `--tls-ca` (PEM), or
//! against the Mozilla roots without `--tls-ca`. Each connection is a buffered
//! `rustls::ClientConnection` driven by hand over the mio socket: ciphertext is read into the
//! shared buffer, handed to `read_tls`, `process_new_packets` decrypts, and the plaintext goes
//! through the same framing as on TCP; requests go through `writer()` and leave with
//! `write_tls`. The negotiated protocol, cipher suite and key exchange group are printed and
//! added to the `RESULT` line.
//!
//! ```text
//! cargo run --release --example loadgen -- SCENARIO [options]
//!
//! SCENARIOS
//!   rtt         strict ping-pong per client: round trips/s, latency p50/p99/p999
//!   throughput  each client keeps --window echoes in flight: replies/s, MB/s
//!   fanout      client 0 broadcasts --rate times/s; every client counts
//!               deliveries: deliveries/s, loss, delivery latency
//!   conns       open --conns connections, wait for every greeting, report the
//!               server's resident memory growth per connection (--pid)
//!   handshakes  --clients connections in parallel, each closed as soon as its greeting
//!               arrives and replaced by a new one, for --duration: completed handshakes
//!               (greeting received) per second, connect-to-greeting latency, and with
//!               --pid the server's CPU time: handshakes per server CPU second. Meant for
//!               --tls; without it, plain TCP connections per second
//!
//! OPTIONS (defaults in brackets)
//!   --addr HOST:PORT     server address [127.0.0.1:5071]
//!   --duration SECS      measured time [5]
//!   --clients N          connections [rtt 1, throughput 50, fanout 500, handshakes 16]
//!   --size BYTES         bin payload per message [64; fanout 200]
//!   --window W           echoes in flight per client (throughput) [16]
//!   --rate R             broadcasts per second (fanout) [30]
//!   --count N            stop after N requests per client (rtt/throughput) or
//!                        N broadcasts (fanout) even if time remains [unbounded]
//!   --conns N            connections to open (conns) [1000]
//!   --pid PID[,PID...]   server processes whose VmRSS (conns) or CPU time
//!                        (handshakes) is read; several are reported one by one and
//!                        summed (a proxy and the server behind it, say)
//!   --settle-ms MS       wait before reading VmRSS after the last greeting [500]
//!   --warmup N           conns: open, greet and close N connections before the first
//!                        VmRSS reading, so one-time costs (code pages of a TLS library
//!                        touched for the first time, lazily built tables) are not
//!                        counted as per-connection memory [0]
//!   --threads T          client threads, each with its own mio Poll [1]
//!                        (conns always uses one)
//!   --connect-batch B    connections allowed to wait for their greeting at
//!                        once, so small accept backlogs don't overflow [64]
//!   --drain-ms MS        fanout: keep receiving after the last send [1000]
//!   --timeout SECS       limit for connecting and greeting everybody [60]
//!   --sources K          bind connection i to source address 127.0.0.(1 + i % K)
//!                        before connecting, so more connections fit than one
//!                        address's ephemeral ports [conns 4, others 1 = let the
//!                        kernel choose]; needs an IPv4 loopback --addr when K > 1
//!   --source-from IP     first source address instead of 127.0.0.1 (then
//!                        A.B.C.D .. A.B.C.(D+K-1), always bound, also for K = 1).
//!                        A fresh range avoids the TIME_WAIT sockets a previous
//!                        run left on the same addresses: the kernel's search
//!                        for a free port at bind() slows down a lot as they
//!                        pile up (tens of seconds for 15,000 connections)
//!                        (handshakes: a fresh range is needed for every run, as each
//!                        closed connection leaves a TIME_WAIT socket; better leave
//!                        both unset there, so connect() reuses them on loopback)
//!   --raw                count any frame carrying our seq as an echo reply
//!   --session            take the session a server offers (`repod::session`): answer a
//!                        greeting that carries `"session"` with an `_ack`, then acknowledge
//!                        every 32 messages, as repod's clients do (for measuring a server
//!                        with `Config::resume_window` on; other servers are unaffected)
//!   --ws                 speak WebSocket to --addr, path `/`
//!   --url ws://H:P/PATH  speak WebSocket to this URL (sets --addr from H:P);
//!                        wss:// also sets --tls
//!   --tls                speak TLS to --addr (with --ws: wss)
//!   --tls-name NAME      server name sent (SNI) and verified [the --url host if it is
//!                        a name, else localhost]
//!   --tls-ca FILE        PEM file of the CA certificates to trust [Mozilla's roots]
//!   --tls-no-verify      accept any server certificate without checking it or the
//!                        handshake signature: for `handshakes`, so that the client's
//!                        two signature verifications per handshake do not hide the
//!                        server's rate (the server's work is the same). Benchmarks only
//!   --tls-kx GROUP       key exchange group of the key share sent: x25519, p256, p384
//!                        or x25519mlkem768 (aws-lc-rs only); the provider's other
//!                        groups are offered after it [x25519]
//! ```
//!
//! Echo replies are matched by their `seq` field; both `echo_reply` and an
//! unchanged `echo` (what the raw frame-echo baseline sends back) are accepted.
//! Latencies use one monotonic clock (nanoseconds since the program started)
//! that is written into each request as `"t"` and read back from the reply.
//!
//! The output is human readable, followed by one line `RESULT {json}` with the
//! numbers, for scripts that collect medians over several runs.
//!
//! Every client socket has `TCP_NODELAY` set, as a game client would.
//!
//! Over TLS, `wire_mb_per_sec` still counts whole frames as the application sees them
//! (length prefix or WebSocket header + msgpack): TLS record overhead is not included.
//!
//! Limitations: each source address gives at most the kernel's ephemeral port
//! range (about 28 000 on a default Linux `ip_local_port_range`) connections to
//! one server address; `--sources K` multiplies that by K on loopback. One
//! loadgen thread drives all of a thread's sockets, so against very fast
//! servers loadgen itself can be the bottleneck (try `--threads 2`). Only use
//! it against servers on your own machine.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use repod::ws::handshake::{client_key, parse_response, write_request};
use repod::ws::{encode_frame, MaskKeys, Opcode, Role, WsDecoder, WsEvent, WsUrl};
use rmp::Marker;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use socket2::{Domain, Protocol, Socket, Type};

const USAGE: &str =
    "usage: loadgen rtt|throughput|fanout|conns|handshakes [--addr HOST:PORT] [--duration SECS] \
[--clients N] [--size BYTES] [--window W] [--rate R] [--count N] [--conns N] [--pid PID[,PID...]] \
[--settle-ms MS] [--threads T] [--connect-batch B] [--drain-ms MS] [--timeout SECS] [--sources K] [--source-from IP] [--raw] \
[--ws | --url ws[s]://HOST:PORT/PATH] [--tls [--tls-name NAME] [--tls-ca FILE | --tls-no-verify] [--tls-kx x25519|p256|p384|x25519mlkem768]]";

/// Shared read buffer per thread.
const READ_BUF: usize = 256 * 1024;
/// A frame announcing more than this is treated as a protocol error.
const MAX_FRAME: usize = 64 * 1024 * 1024;
/// Largest `101 Switching Protocols` answer accepted (WebSocket).
const MAX_UPGRADE_RESPONSE: usize = 16 * 1024;

// ---------------------------------------------------------------------------
// Clock

static START: OnceLock<Instant> = OnceLock::new();
/// `--session`: take the sessions a server offers.
static SESSIONS: AtomicBool = AtomicBool::new(false);
/// A session acknowledges after this many messages (`repod::session::ACK_EVERY`).
const ACK_EVERY: u64 = 64;

/// Nanoseconds since the program started (monotonic, shared by all threads).
fn now_ns() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

// ---------------------------------------------------------------------------
// Configuration

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Rtt,
    Throughput,
    Fanout,
    Conns,
    Handshakes,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Rtt => "rtt",
            Scenario::Throughput => "throughput",
            Scenario::Fanout => "fanout",
            Scenario::Conns => "conns",
            Scenario::Handshakes => "handshakes",
        }
    }
}

struct Config {
    scenario: Scenario,
    addr: SocketAddr,
    duration: Duration,
    clients: usize,
    size: usize,
    window: usize,
    rate: f64,
    count: u64,
    conns: usize,
    /// Server processes whose memory (conns) or CPU time (handshakes) is read.
    pids: Vec<u32>,
    settle: Duration,
    warmup: usize,
    threads: usize,
    connect_batch: usize,
    drain: Duration,
    timeout: Duration,
    /// Source addresses connections are spread over; empty = kernel's choice.
    sources: Vec<IpAddr>,
    raw: bool,
    /// WebSocket instead of length-prefixed TCP: the URL of the upgrade request.
    ws: Option<WsUrl>,
    /// TLS (`--tls`, `wss://`): the client configuration and the server name verified.
    tls: Option<TlsTarget>,
}

/// What every TLS connection of a run shares.
struct TlsTarget {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    /// Where the trusted CA certificates came from, for the report.
    ca: String,
}

/// `--tls-no-verify`: accepts every certificate and handshake signature unchecked.
#[derive(Debug)]
struct NoVerify(Vec<rustls::SignatureScheme>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.clone()
    }
}

/// The group named by `--tls-kx`.
fn kx_group_named(name: &str) -> Result<rustls::NamedGroup, String> {
    Ok(match name {
        "x25519" => rustls::NamedGroup::X25519,
        "p256" => rustls::NamedGroup::secp256r1,
        "p384" => rustls::NamedGroup::secp384r1,
        "x25519mlkem768" => rustls::NamedGroup::X25519MLKEM768,
        other => {
            return Err(format!(
                "--tls-kx {other:?}: x25519, p256, p384 or x25519mlkem768"
            ))
        }
    })
}

/// rustls's client configuration: the crypto provider repod's features select (its
/// defaults, but for the key exchange group `kx` moved first, so its key share is the one
/// sent), TLS 1.3 and 1.2, the chain verified against `ca` (PEM) or Mozilla's roots, no
/// resumption.
fn tls_client_config(ca: Option<&str>, kx: &str) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in
                CertificateDer::pem_file_iter(path).map_err(|e| format!("--tls-ca {path}: {e}"))?
            {
                let cert = cert.map_err(|e| format!("--tls-ca {path}: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("--tls-ca {path}: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("--tls-ca {path}: no certificate in the file"));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    // The provider of rustls's crate features (ring or aws-lc-rs, as repod enables it).
    let default = ClientConfig::builder()
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    let mut provider = rustls::crypto::CryptoProvider::clone(default.crypto_provider());
    let first = kx_group_named(kx)?;
    if !provider.kx_groups.iter().any(|g| g.name() == first) {
        return Err(format!(
            "--tls-kx {kx}: not offered by this crypto provider"
        ));
    }
    provider.kx_groups.sort_by_key(|g| g.name() != first); // stable: the rest keep their order
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

fn parse_args() -> Result<Config, String> {
    let mut args = std::env::args().skip(1);
    let scenario = match args.next().as_deref() {
        Some("rtt") => Scenario::Rtt,
        Some("throughput") => Scenario::Throughput,
        Some("fanout") => Scenario::Fanout,
        Some("conns") => Scenario::Conns,
        Some("handshakes") => Scenario::Handshakes,
        Some(other) => return Err(format!("unknown scenario {other:?}")),
        None => return Err("missing scenario".into()),
    };
    let mut cfg = Config {
        scenario,
        addr: SocketAddr::from(([127, 0, 0, 1], 5071)),
        duration: Duration::from_secs(5),
        clients: match scenario {
            Scenario::Rtt => 1,
            Scenario::Throughput => 50,
            Scenario::Fanout => 500,
            Scenario::Conns => 0,
            Scenario::Handshakes => 16,
        },
        size: if scenario == Scenario::Fanout {
            200
        } else {
            64
        },
        window: if scenario == Scenario::Throughput {
            16
        } else {
            1
        },
        rate: 30.0,
        count: u64::MAX,
        conns: 1000,
        pids: Vec::new(),
        settle: Duration::from_millis(500),
        warmup: 0,
        threads: 1,
        connect_batch: 64,
        drain: Duration::from_millis(1000),
        timeout: Duration::from_secs(60),
        sources: Vec::new(),
        raw: false,
        ws: None,
        tls: None,
    };
    let mut ws_flag = false;
    let mut tls_flag = false;
    let mut tls_name: Option<String> = None;
    let mut tls_ca: Option<String> = None;
    let mut tls_kx = String::from("x25519");
    let mut tls_no_verify = false;
    let mut sources: Option<usize> = None;
    let mut source_from: Option<Ipv4Addr> = None;
    fn value<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<T, String> {
        let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
        v.parse()
            .map_err(|_| format!("bad value for {flag}: {v:?}"))
    }
    fn secs(flag: &str, v: Option<String>) -> Result<Duration, String> {
        let s: f64 = value(flag, v)?;
        if !(0.0..1e6).contains(&s) {
            return Err(format!("bad value for {flag}: {s}"));
        }
        Ok(Duration::from_secs_f64(s))
    }
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--addr" => {
                let a: String = value(&flag, args.next())?;
                cfg.addr = a
                    .to_socket_addrs()
                    .map_err(|e| format!("--addr {a}: {e}"))?
                    .next()
                    .ok_or_else(|| format!("--addr {a}: no address"))?;
            }
            "--duration" => cfg.duration = secs(&flag, args.next())?,
            "--clients" => cfg.clients = value(&flag, args.next())?,
            "--size" => cfg.size = value(&flag, args.next())?,
            "--window" => cfg.window = value(&flag, args.next())?,
            "--rate" => cfg.rate = value(&flag, args.next())?,
            "--count" => cfg.count = value(&flag, args.next())?,
            "--conns" => cfg.conns = value(&flag, args.next())?,
            "--pid" => {
                let list: String = value(&flag, args.next())?;
                for pid in list.split(',') {
                    cfg.pids.push(
                        pid.trim()
                            .parse()
                            .map_err(|_| format!("bad --pid {list:?}"))?,
                    );
                }
            }
            "--settle-ms" => cfg.settle = Duration::from_millis(value(&flag, args.next())?),
            "--warmup" => cfg.warmup = value(&flag, args.next())?,
            "--threads" => cfg.threads = value(&flag, args.next())?,
            "--connect-batch" => cfg.connect_batch = value(&flag, args.next())?,
            "--drain-ms" => cfg.drain = Duration::from_millis(value(&flag, args.next())?),
            "--timeout" => cfg.timeout = secs(&flag, args.next())?,
            "--sources" => sources = Some(value(&flag, args.next())?),
            "--source-from" => source_from = Some(value(&flag, args.next())?),
            "--raw" => cfg.raw = true,
            "--ws" => ws_flag = true,
            "--session" => SESSIONS.store(true, Ordering::Relaxed),
            "--tls" => tls_flag = true,
            "--tls-name" => tls_name = Some(value(&flag, args.next())?),
            "--tls-ca" => tls_ca = Some(value(&flag, args.next())?),
            "--tls-kx" => tls_kx = value(&flag, args.next())?,
            "--tls-no-verify" => tls_no_verify = true,
            "--url" => {
                let u: String = value(&flag, args.next())?;
                let (url, tls) = WsUrl::parse_with_tls(&u)?
                    .ok_or_else(|| format!("--url {u}: not a ws:// or wss:// URL"))?;
                tls_flag |= tls;
                cfg.addr = (url.host.as_str(), url.port)
                    .to_socket_addrs()
                    .map_err(|e| format!("--url {u}: {e}"))?
                    .next()
                    .ok_or_else(|| format!("--url {u}: no address"))?;
                cfg.ws = Some(url);
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if ws_flag && cfg.ws.is_none() {
        cfg.ws = Some(WsUrl {
            host: cfg.addr.ip().to_string(),
            port: cfg.addr.port(),
            path: "/".into(),
        });
    }
    if tls_flag {
        // The URL's host when it is a name (not an address), else localhost.
        let name = tls_name.unwrap_or_else(|| match &cfg.ws {
            Some(u) if u.host.parse::<IpAddr>().is_err() => u.host.clone(),
            _ => "localhost".into(),
        });
        let mut config = tls_client_config(tls_ca.as_deref(), &tls_kx)?;
        if tls_no_verify {
            let schemes = config
                .crypto_provider()
                .signature_verification_algorithms
                .supported_schemes();
            config
                .dangerous()
                .set_certificate_verifier(Arc::new(NoVerify(schemes)));
        }
        cfg.tls = Some(TlsTarget {
            config: Arc::new(config),
            name: ServerName::try_from(name.clone())
                .map_err(|e| format!("--tls-name {name:?}: {e}"))?,
            ca: if tls_no_verify {
                "none: --tls-no-verify".into()
            } else {
                tls_ca.unwrap_or_else(|| "Mozilla roots".into())
            },
        });
    } else if tls_name.is_some() || tls_ca.is_some() || tls_no_verify {
        return Err(
            "--tls-name, --tls-ca and --tls-no-verify need --tls (or a wss:// --url)".into(),
        );
    }
    if scenario == Scenario::Rtt {
        cfg.window = 1;
    }
    if scenario == Scenario::Conns {
        cfg.threads = 1;
        cfg.clients = cfg.conns;
    }
    if cfg.clients == 0 || cfg.window == 0 || cfg.threads == 0 || cfg.connect_batch == 0 {
        return Err(
            "--clients, --conns, --window, --threads and --connect-batch must be > 0".into(),
        );
    }
    if !(cfg.rate.is_finite() && cfg.rate > 0.0) {
        return Err("--rate must be > 0".into());
    }
    cfg.threads = cfg.threads.min(cfg.clients);
    let loopback_v4 = matches!(cfg.addr.ip(), IpAddr::V4(ip) if ip.is_loopback());
    let k = match sources {
        Some(k) if !(1..=254).contains(&k) => return Err("--sources must be in 1..=254".into()),
        Some(k) if k > 1 && !loopback_v4 => {
            return Err("--sources K > 1 needs an IPv4 loopback --addr (127.x.x.x)".into())
        }
        Some(k) => k,
        None if scenario == Scenario::Conns && loopback_v4 => 4,
        None => 1,
    };
    let [a, b, c, d] = source_from.unwrap_or(Ipv4Addr::new(127, 0, 0, 1)).octets();
    if a != 127 || d == 0 || usize::from(d) + k - 1 > 254 {
        return Err(format!(
            "--source-from {a}.{b}.{c}.{d} with --sources {k}: the addresses must be \
             127.x.y.z with 1 <= z and z + K - 1 <= 254"
        ));
    }
    if k > 1 || source_from.is_some() {
        if !loopback_v4 {
            return Err("--source-from needs an IPv4 loopback --addr".into());
        }
        cfg.sources = (0..k as u8)
            .map(|i| IpAddr::V4(Ipv4Addr::new(a, b, c, d + i)))
            .collect();
    }
    Ok(cfg)
}

// ---------------------------------------------------------------------------
// Latency histogram: log-linear buckets, 64 per power of two (< 1.6 % error).

const SUB_BITS: u32 = 7; // values below 2^7 are exact
const HALF: u64 = 1 << (SUB_BITS - 1);
const BUCKETS: usize = ((64 - SUB_BITS) as usize) * (HALF as usize) + (1 << SUB_BITS);

struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < (1 << SUB_BITS) {
            return v as usize;
        }
        let msb = 63 - v.leading_zeros();
        let shift = msb - (SUB_BITS - 1);
        // `v >> shift` keeps the top SUB_BITS bits: in [HALF, 2 * HALF).
        (shift as usize) * (HALF as usize) + (v >> shift) as usize
    }

    /// Midpoint of the bucket's value range.
    fn value(idx: usize) -> u64 {
        if idx < (1 << SUB_BITS) {
            return idx as u64;
        }
        let shift = (idx / HALF as usize) as u32 - 1;
        let mantissa = (idx % HALF as usize) as u64 + HALF;
        (mantissa << shift) + ((1u64 << shift) >> 1)
    }

    fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// Value at quantile `q` (0..=1), in nanoseconds; 0 when empty.
    fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (idx, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value(idx).min(self.max);
            }
        }
        self.max
    }

    fn us(&self, q: f64) -> f64 {
        self.quantile(q) as f64 / 1000.0
    }
}

// ---------------------------------------------------------------------------
// Messages

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Connected,
    Echo,
    EchoReply,
    Broadcast,
    BroadcastReply,
    /// A session acknowledgement (`_ack`): not counted.
    Ack,
    Other,
}

/// The fields of a received map that loadgen cares about.
#[derive(Clone, Copy)]
struct Msg {
    action: Action,
    seq: Option<u64>,
    t: Option<u64>,
    /// Whole frame including the length prefix (WebSocket: the frame header).
    wire_len: usize,
    /// A greeting that offers a session.
    session: bool,
}

/// A cursor over one msgpack payload; every method returns `None` on
/// malformed or truncated input.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn be(&mut self, n: usize) -> Option<u64> {
        Some(
            self.take(n)?
                .iter()
                .fold(0u64, |acc, &b| (acc << 8) | b as u64),
        )
    }

    fn marker(&mut self) -> Option<Marker> {
        Some(Marker::from_u8(self.take(1)?[0]))
    }

    fn str(&mut self) -> Option<&'a [u8]> {
        let len = match self.marker()? {
            Marker::FixStr(n) => n as usize,
            Marker::Str8 => self.be(1)? as usize,
            Marker::Str16 => self.be(2)? as usize,
            Marker::Str32 => self.be(4)? as usize,
            _ => return None,
        };
        self.take(len)
    }

    fn uint(&mut self) -> Option<u64> {
        match self.marker()? {
            Marker::FixPos(n) => Some(n as u64),
            Marker::U8 | Marker::I8 => self.be(1),
            Marker::U16 | Marker::I16 => self.be(2),
            Marker::U32 | Marker::I32 => self.be(4),
            Marker::U64 | Marker::I64 => self.be(8),
            _ => None,
        }
    }

    /// Skip one complete value (iteratively, so nesting cannot overflow).
    fn skip(&mut self) -> Option<()> {
        let mut remaining: u64 = 1;
        while remaining > 0 {
            remaining -= 1;
            let skip = match self.marker()? {
                Marker::FixPos(_) | Marker::FixNeg(_) => 0,
                Marker::Null | Marker::True | Marker::False | Marker::Reserved => 0,
                Marker::U8 | Marker::I8 => 1,
                Marker::U16 | Marker::I16 => 2,
                Marker::U32 | Marker::I32 | Marker::F32 => 4,
                Marker::U64 | Marker::I64 | Marker::F64 => 8,
                Marker::FixStr(n) => n as usize,
                Marker::Str8 | Marker::Bin8 => self.be(1)? as usize,
                Marker::Str16 | Marker::Bin16 => self.be(2)? as usize,
                Marker::Str32 | Marker::Bin32 => self.be(4)? as usize,
                Marker::FixExt1 => 2,
                Marker::FixExt2 => 3,
                Marker::FixExt4 => 5,
                Marker::FixExt8 => 9,
                Marker::FixExt16 => 17,
                Marker::Ext8 => self.be(1)? as usize + 1,
                Marker::Ext16 => self.be(2)? as usize + 1,
                Marker::Ext32 => self.be(4)? as usize + 1,
                Marker::FixArray(n) => {
                    remaining += n as u64;
                    0
                }
                Marker::Array16 => {
                    remaining += self.be(2)?;
                    0
                }
                Marker::Array32 => {
                    remaining += self.be(4)?;
                    0
                }
                Marker::FixMap(n) => {
                    remaining += 2 * n as u64;
                    0
                }
                Marker::Map16 => {
                    remaining += 2 * self.be(2)?;
                    0
                }
                Marker::Map32 => {
                    remaining += 2 * self.be(4)?;
                    0
                }
            };
            self.take(skip)?;
        }
        Some(())
    }
}

/// Extract action, seq and t from a payload; anything unreadable is `Other`.
fn parse_msg(payload: &[u8]) -> Msg {
    let mut msg = Msg {
        action: Action::Other,
        seq: None,
        t: None,
        wire_len: payload.len() + 4,
        session: false,
    };
    let mut c = Cursor {
        buf: payload,
        pos: 0,
    };
    let entries = match c.marker() {
        Some(Marker::FixMap(n)) => n as u64,
        Some(Marker::Map16) => c.be(2).unwrap_or(0),
        Some(Marker::Map32) => c.be(4).unwrap_or(0),
        _ => return msg,
    };
    for _ in 0..entries {
        let key = match c.str() {
            Some(k) => k,
            None => return msg,
        };
        let ok = match key {
            b"action" => c.str().map(|a| {
                msg.action = match a {
                    b"connected" => Action::Connected,
                    b"echo" => Action::Echo,
                    b"echo_reply" => Action::EchoReply,
                    b"broadcast" => Action::Broadcast,
                    b"broadcast_reply" => Action::BroadcastReply,
                    b"_ack" => Action::Ack,
                    _ => Action::Other,
                }
            }),
            b"seq" => c.uint().map(|v| msg.seq = Some(v)),
            b"t" => c.uint().map(|v| msg.t = Some(v)),
            b"session" => c.skip().map(|()| msg.session = true),
            _ => c.skip(),
        };
        if ok.is_none() {
            return msg;
        }
    }
    msg
}

/// Parse every complete frame at the start of `buf` into `out`; returns the
/// number of bytes consumed.
fn split_frames(buf: &[u8], out: &mut Vec<Msg>) -> io::Result<usize> {
    let mut pos = 0;
    while buf.len() - pos >= 4 {
        let len = u32::from_be_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]) as usize;
        if len > MAX_FRAME {
            return Err(io::Error::new(ErrorKind::InvalidData, "frame too large"));
        }
        if buf.len() - pos - 4 < len {
            break;
        }
        out.push(parse_msg(&buf[pos + 4..pos + 4 + len]));
        pos += 4 + len;
    }
    Ok(pos)
}

/// Append one frame `{"action", "seq", "t", "payload"}` to `out`.
fn push_request(out: &mut Vec<u8>, action: &str, seq: u64, t: u64, payload: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    encode_request(out, action, seq, t, payload);
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Append the msgpack map `{"action", "seq", "t", "payload"}` to `out`.
fn encode_request(out: &mut Vec<u8>, action: &str, seq: u64, t: u64, payload: &[u8]) {
    const VEC_WRITE: &str = "writing to a Vec cannot fail";
    rmp::encode::write_map_len(out, 4).expect(VEC_WRITE);
    rmp::encode::write_str(out, "action").expect(VEC_WRITE);
    rmp::encode::write_str(out, action).expect(VEC_WRITE);
    rmp::encode::write_str(out, "seq").expect(VEC_WRITE);
    rmp::encode::write_uint(out, seq).expect(VEC_WRITE);
    rmp::encode::write_str(out, "t").expect(VEC_WRITE);
    rmp::encode::write_uint(out, t).expect(VEC_WRITE);
    rmp::encode::write_str(out, "payload").expect(VEC_WRITE);
    rmp::encode::write_bin(out, payload).expect(VEC_WRITE);
}

/// Length of the header of an unmasked WebSocket frame with `len` payload bytes.
fn ws_header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=65_535 => 4,
        _ => 10,
    }
}

/// A WebSocket connection's state on top of its TCP stream.
struct WsConn {
    /// `Sec-WebSocket-Key` of the upgrade request, until the `101` answer is checked.
    key: Option<[u8; 24]>,
    /// Frames from the server (the upgrade answer gathers in `Client::pending` before).
    decoder: WsDecoder,
    /// Masking keys of our frames.
    keys: MaskKeys,
    /// The msgpack map of the frame being sent, before it is masked into `wbuf`.
    map: Vec<u8>,
}

impl WsConn {
    /// Queues the upgrade request for `url` in `wbuf`.
    fn start(url: &WsUrl, keys: MaskKeys, wbuf: &mut Vec<u8>) -> Self {
        let key = client_key();
        write_request(wbuf, url, &key);
        WsConn {
            key: Some(key),
            decoder: WsDecoder::new(Role::Client, MAX_FRAME),
            keys,
            map: Vec::new(),
        }
    }

    /// Decodes `input` (frames, after the upgrade) into `out`; pongs for pings go to `wbuf`.
    /// Returns `Ok(true)` once the server sent a close frame.
    fn decode(
        &mut self,
        input: &mut [u8],
        wbuf: &mut Vec<u8>,
        out: &mut Vec<Msg>,
    ) -> io::Result<bool> {
        let WsConn { decoder, keys, .. } = self;
        decoder
            .decode(input, |event| {
                match event {
                    WsEvent::Binary(p) => {
                        let mut m = parse_msg(p);
                        m.wire_len = p.len() + ws_header_len(p.len());
                        out.push(m);
                    }
                    WsEvent::Ping(p) => {
                        encode_frame(wbuf, Opcode::Pong, true, p, Some(keys.next_key()))
                    }
                    WsEvent::Text(_) | WsEvent::Pong(_) | WsEvent::Close { .. } => {}
                }
                ControlFlow::Continue(())
            })
            .map_err(|e| io::Error::new(ErrorKind::InvalidData, format!("websocket: {e}")))?;
        Ok(decoder.is_closed())
    }
}

// ---------------------------------------------------------------------------
// Connections

struct Client {
    stream: TcpStream,
    /// Incomplete frame carried over between reads.
    pending: Vec<u8>,
    /// Queued output; `wbuf[wpos..]` is unsent.
    wbuf: Vec<u8>,
    wpos: usize,
    greeted: bool,
    /// Requests sent / next reply sequence expected (echo scenarios).
    sent: u64,
    expect: u64,
    /// Some: WebSocket (`--ws`); None: length-prefixed frames over TCP.
    ws: Option<Box<WsConn>>,
    /// Some: TLS (`--tls`) under the framing; `wbuf` and `pending` then hold plaintext.
    tls: Option<Box<ClientConnection>>,
    /// `--session`: the server offered a session, and this client took it.
    in_session: bool,
    /// Session messages received, and that count as of the last acknowledgement.
    received: u64,
    ack_sent: u64,
}

/// The negotiated TLS parameters of the first connection that completed its handshake.
static TLS_PARAMS: OnceLock<String> = OnceLock::new();

fn describe_tls(tls: &ClientConnection) -> String {
    let version = tls
        .protocol_version()
        .map_or_else(|| "?".into(), |v| format!("{v:?}"));
    let suite = tls
        .negotiated_cipher_suite()
        .map_or_else(|| "?".into(), |s| format!("{:?}", s.suite()));
    let group = tls
        .negotiated_key_exchange_group()
        .map_or_else(|| "?".into(), |g| format!("{:?}", g.name()));
    format!("{version} {suite} {group}")
}

impl Client {
    /// Queues one request `{"action", "seq", "t", "payload"}`: a length-prefixed frame on TCP,
    /// a masked binary frame on WebSocket.
    fn push_request(&mut self, action: &str, seq: u64, t: u64, payload: &[u8]) {
        match &mut self.ws {
            None => push_request(&mut self.wbuf, action, seq, t, payload),
            Some(ws) => {
                ws.map.clear();
                encode_request(&mut ws.map, action, seq, t, payload);
                let mask = ws.keys.next_key();
                encode_frame(&mut self.wbuf, Opcode::Binary, true, &ws.map, Some(mask));
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(tls) = &mut self.tls {
            // The buffer limit is off: rustls takes all of it (buffered until the handshake
            // is done), encrypted into as few records as it fits.
            if self.wpos < self.wbuf.len() {
                tls.writer().write_all(&self.wbuf[self.wpos..])?;
                self.wbuf.clear();
                self.wpos = 0;
            }
            while tls.wants_write() {
                match tls.write_tls(&mut self.stream) {
                    Ok(0) => return Err(ErrorKind::WriteZero.into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(());
        }
        while self.wpos < self.wbuf.len() {
            match self.stream.write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        Ok(())
    }

    /// Read what is available, pushing complete messages to `out`.
    /// Returns `Ok(true)` if the server closed the connection.
    fn read_into(
        &mut self,
        scratch: &mut [u8],
        drain: bool,
        out: &mut Vec<Msg>,
    ) -> io::Result<bool> {
        if self.tls.is_some() {
            return self.read_tls_into(scratch, drain, out);
        }
        loop {
            let n = match self.stream.read(scratch) {
                Ok(0) => return Ok(true),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if self.input(&mut scratch[..n], out)? {
                return Ok(true);
            }
            // Edge-triggered: a short read means the socket is drained (a new
            // arrival signals again), unless EOF/error must still be read.
            if n < scratch.len() && !drain {
                return Ok(false);
            }
        }
    }

    /// Plaintext from the server (straight from the socket, or decrypted): frames, or the
    /// WebSocket upgrade answer and frames. Returns `Ok(true)` once the server closed.
    #[inline]
    fn input(&mut self, data: &mut [u8], out: &mut Vec<Msg>) -> io::Result<bool> {
        if self.ws.is_some() {
            return self.ws_input(data, out);
        }
        if self.pending.is_empty() {
            let used = split_frames(data, out)?;
            self.pending.extend_from_slice(&data[used..]);
        } else {
            self.pending.extend_from_slice(data);
            let used = split_frames(&self.pending, out)?;
            self.pending.drain(..used);
        }
        Ok(false)
    }

    /// `read_into` over TLS: ciphertext is read from the socket into the first half of
    /// `scratch` (one big read, so a short read still means drained), handed to rustls record
    /// by record, and the plaintext is read out into the second half and goes to `input`.
    /// Whatever rustls wants to send in answer (handshake, alerts) leaves at the end.
    fn read_tls_into(
        &mut self,
        scratch: &mut [u8],
        drain: bool,
        out: &mut Vec<Msg>,
    ) -> io::Result<bool> {
        let (cipher, plain) = scratch.split_at_mut(scratch.len() / 2);
        let mut closed = false;
        while !closed {
            let n = match self.stream.read(cipher) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut rd = &cipher[..n];
            while !rd.is_empty() && !closed {
                let tls = self.tls.as_mut().expect("a TLS client");
                if tls.read_tls(&mut rd)? == 0 {
                    closed = true; // close_notify received: nothing more is read
                    break;
                }
                let state = match tls.process_new_packets() {
                    Ok(state) => state,
                    Err(e) => {
                        let _ = tls.write_tls(&mut self.stream); // the alert, if any
                        return Err(io::Error::new(ErrorKind::InvalidData, format!("tls: {e}")));
                    }
                };
                if TLS_PARAMS.get().is_none() && !tls.is_handshaking() {
                    let _ = TLS_PARAMS.set(describe_tls(tls));
                }
                closed = state.peer_has_closed();
                let mut left = state.plaintext_bytes_to_read();
                while left > 0 {
                    let tls = self.tls.as_mut().expect("a TLS client");
                    let k = tls.reader().read(plain)?;
                    if k == 0 {
                        break;
                    }
                    left = left.saturating_sub(k);
                    if self.input(&mut plain[..k], out)? {
                        closed = true;
                    }
                }
            }
            if n < cipher.len() && !drain {
                break;
            }
        }
        if self.tls.as_ref().is_some_and(|tls| tls.wants_write()) {
            self.flush()?;
        }
        Ok(closed)
    }

    /// Ends a connection the polite way: close_notify over TLS (as much of it as the socket
    /// takes now), then the socket is closed when `self` is dropped.
    fn close(mut self, registry: &mio::Registry) {
        if let Some(tls) = &mut self.tls {
            tls.send_close_notify();
            let _ = self.flush();
        }
        let _ = registry.deregister(&mut self.stream);
    }

    /// WebSocket input: the upgrade answer first (gathered in `pending`, released once
    /// checked), then frames, decoded in place. Returns `Ok(true)` once the server closed.
    fn ws_input(&mut self, input: &mut [u8], out: &mut Vec<Msg>) -> io::Result<bool> {
        let ws = self.ws.as_mut().expect("a WebSocket client");
        let queued = self.wbuf.len();
        let closed = if let Some(key) = ws.key {
            self.pending.extend_from_slice(input);
            let len = match parse_response(&self.pending, &key, MAX_UPGRADE_RESPONSE) {
                Ok(None) => return Ok(false),
                Ok(Some(len)) => len,
                Err(e) => {
                    return Err(io::Error::new(
                        ErrorKind::InvalidData,
                        format!("websocket upgrade: {e}"),
                    ))
                }
            };
            ws.key = None;
            let mut rest = std::mem::take(&mut self.pending);
            ws.decode(&mut rest[len..], &mut self.wbuf, out)?
        } else {
            ws.decode(input, &mut self.wbuf, out)?
        };
        if self.wbuf.len() > queued {
            self.flush()?; // pongs
        }
        Ok(closed)
    }

    /// Handle one readiness event. Returns `Ok(true)` if the peer closed.
    fn service(
        &mut self,
        event: &Event,
        scratch: &mut [u8],
        out: &mut Vec<Msg>,
    ) -> io::Result<bool> {
        if event.is_writable() {
            self.flush()?;
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            let drain = event.is_read_closed() || event.is_error();
            let start = out.len();
            let closed = self.read_into(scratch, drain, out)?;
            // The first acknowledgement (taking the session) goes at once; the others ride
            // with the next requests, as a repod client's leave with its turn's output.
            if SESSIONS.load(Ordering::Relaxed) && self.session_acks(&out[start..]) {
                self.flush()?;
            }
            return Ok(closed);
        }
        Ok(false)
    }

    /// `--session`: takes the session a greeting offers, counts what arrives, and queues the
    /// acknowledgements due. Returns whether the first one (taking the session) was queued,
    /// which is to leave at once.
    fn session_acks(&mut self, msgs: &[Msg]) -> bool {
        let mut due = false;
        for m in msgs {
            match m.action {
                Action::Connected if m.session => {
                    self.in_session = true;
                    due = true;
                }
                Action::Connected | Action::Ack => {}
                _ if self.in_session => self.received += 1,
                _ => {}
            }
        }
        if !self.in_session || !(due || self.received - self.ack_sent >= ACK_EVERY) {
            return false;
        }
        let first = due;
        self.ack_sent = self.received;
        let encode = |map: &mut Vec<u8>, n: u64| {
            const VEC_WRITE: &str = "writing to a Vec cannot fail";
            rmp::encode::write_map_len(map, 2).expect(VEC_WRITE);
            rmp::encode::write_str(map, "action").expect(VEC_WRITE);
            rmp::encode::write_str(map, "_ack").expect(VEC_WRITE);
            rmp::encode::write_str(map, "received").expect(VEC_WRITE);
            rmp::encode::write_uint(map, n).expect(VEC_WRITE);
        };
        match &mut self.ws {
            None => {
                let start = self.wbuf.len();
                self.wbuf.extend_from_slice(&[0; 4]);
                encode(&mut self.wbuf, self.received);
                let len = (self.wbuf.len() - start - 4) as u32;
                self.wbuf[start..start + 4].copy_from_slice(&len.to_be_bytes());
            }
            Some(ws) => {
                ws.map.clear();
                encode(&mut ws.map, self.received);
                let mask = ws.keys.next_key();
                encode_frame(&mut self.wbuf, Opcode::Binary, true, &ws.map, Some(mask));
            }
        }
        first
    }
}

/// `EINPROGRESS`: what a non-blocking `connect` returns while the handshake runs.
#[cfg(target_os = "linux")]
const EINPROGRESS: i32 = 115;
#[cfg(not(target_os = "linux"))]
const EINPROGRESS: i32 = 36; // the BSDs and macOS

/// Start a non-blocking connection to `addr`, bound first to `(source, 0)` if
/// a source address is given; sets `TCP_NODELAY`.
fn start_connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let stream = match source {
        None => TcpStream::connect(addr)?,
        Some(src) => {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
            socket.set_nonblocking(true)?;
            socket
                .bind(&SocketAddr::new(src, 0).into())
                .map_err(|e| io::Error::new(e.kind(), format!("bind {src}:0: {e}")))?;
            match socket.connect(&addr.into()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(EINPROGRESS) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            TcpStream::from_std(std::net::TcpStream::from(socket))
        }
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Starts connection number `i` (which picks its source address) to the server, registered
/// with `token`: TCP connect, then the TLS client (its ClientHello queued) and the WebSocket
/// upgrade request (queued as plaintext), as configured.
fn open_client(
    cfg: &Config,
    i: usize,
    registry: &mio::Registry,
    token: Token,
) -> io::Result<Client> {
    let addr = cfg.addr;
    let source = (!cfg.sources.is_empty()).then(|| cfg.sources[i % cfg.sources.len()]);
    let mut stream = start_connect(addr, source)
        .map_err(|e| io::Error::new(e.kind(), format!("connect #{i} to {addr}: {e}")))?;
    registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
    let tls = match &cfg.tls {
        None => None,
        Some(t) => {
            let mut conn = ClientConnection::new(t.config.clone(), t.name.clone())
                .map_err(|e| io::Error::other(format!("tls: {e}")))?;
            conn.set_buffer_limit(None);
            Some(Box::new(conn))
        }
    };
    let mut wbuf = Vec::new();
    let ws = cfg
        .ws
        .as_ref()
        .map(|url| Box::new(WsConn::start(url, MaskKeys::from_os(), &mut wbuf)));
    Ok(Client {
        stream,
        pending: Vec::new(),
        wbuf,
        wpos: 0,
        greeted: false,
        sent: 0,
        expect: 0,
        ws,
        tls,
        in_session: false,
        received: 0,
        ack_sent: 0,
    })
}

/// One thread's connections and its own `Poll`.
struct Worker {
    poll: Poll,
    events: Events,
    clients: Vec<Client>,
    scratch: Vec<u8>,
    msgs: Vec<Msg>,
}

impl Worker {
    fn new() -> io::Result<Self> {
        Ok(Worker {
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            clients: Vec::new(),
            scratch: vec![0; READ_BUF],
            msgs: Vec::with_capacity(1024),
        })
    }

    fn poll(&mut self, timeout: Duration) -> io::Result<()> {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(()),
            other => other,
        }
    }

    /// Open `n` connections, at most `cfg.connect_batch` waiting for their
    /// greeting at a time, and wait until every one is greeted (over WebSocket:
    /// the upgrade request is queued at once and sent when connected; over TLS,
    /// once the handshake is done).
    fn connect_all(&mut self, cfg: &Config, n: usize, deadline: Instant) -> io::Result<()> {
        let mut greeted = 0;
        while greeted < n {
            while self.clients.len() < n && self.clients.len() - greeted < cfg.connect_batch {
                let i = self.clients.len();
                let client = open_client(cfg, i, self.poll.registry(), Token(i))?;
                self.clients.push(client);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(io::Error::new(
                    ErrorKind::TimedOut,
                    format!("only {greeted} of {n} connections greeted before --timeout"),
                ));
            }
            self.poll((deadline - now).min(Duration::from_millis(100)))?;
            let Worker {
                events,
                clients,
                scratch,
                msgs,
                ..
            } = self;
            for event in events.iter() {
                let idx = event.token().0;
                let client = &mut clients[idx];
                if event.is_writable() && !client.greeted {
                    if let Some(e) = client.stream.take_error()? {
                        return Err(io::Error::new(e.kind(), format!("connection #{idx}: {e}")));
                    }
                }
                msgs.clear();
                let closed = client
                    .service(event, scratch, msgs)
                    .map_err(|e| io::Error::new(e.kind(), format!("connection #{idx}: {e}")))?;
                for m in msgs.iter() {
                    if m.action == Action::Connected && !client.greeted {
                        client.greeted = true;
                        greeted += 1;
                    }
                }
                if closed {
                    return Err(io::Error::new(
                        ErrorKind::ConnectionAborted,
                        format!("connection #{idx} closed by the server during setup"),
                    ));
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Scenarios

#[derive(Default)]
struct Stats {
    /// Echo replies, deliveries, or completed handshakes.
    replies: u64,
    /// handshakes: connections that failed or closed before their greeting.
    errors: u64,
    payload_bytes: u64,
    wire_bytes: u64,
    out_of_order: u64,
    broadcasts_sent: u64,
    elapsed: Duration,
    hist: Option<Histogram>,
    /// handshakes: the first error met, for the report.
    first_error: Option<String>,
}

impl Stats {
    fn merge(&mut self, other: Stats) {
        self.replies += other.replies;
        self.errors += other.errors;
        self.payload_bytes += other.payload_bytes;
        self.wire_bytes += other.wire_bytes;
        self.out_of_order += other.out_of_order;
        self.broadcasts_sent += other.broadcasts_sent;
        self.elapsed = self.elapsed.max(other.elapsed);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        match (&mut self.hist, other.hist) {
            (Some(a), Some(b)) => a.merge(&b),
            (a @ None, b) => *a = b,
            (Some(_), None) => {}
        }
    }
}

fn die(e: impl std::fmt::Display) -> ! {
    eprintln!("loadgen: {e}");
    std::process::exit(1);
}

/// How many of the clients thread `t` drives.
fn thread_share(cfg: &Config, t: usize) -> usize {
    cfg.clients / cfg.threads + usize::from(t < cfg.clients % cfg.threads)
}

/// Run `body` on `cfg.threads` threads, each with its share of the clients,
/// after all of them are connected and greeted; returns the merged stats.
fn run_threads(cfg: &Config, body: fn(&Config, &mut Worker, usize) -> io::Result<Stats>) -> Stats {
    let barrier = Barrier::new(cfg.threads);
    let setup_deadline = Instant::now() + cfg.timeout;
    let connect_start = Instant::now();
    let mut total = Stats::default();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..cfg.threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    let n = thread_share(cfg, t);
                    let mut worker = Worker::new().unwrap_or_else(|e| die(e));
                    if cfg.scenario != Scenario::Handshakes {
                        worker
                            .connect_all(cfg, n, setup_deadline)
                            .unwrap_or_else(|e| die(e));
                    }
                    if barrier.wait().is_leader() {
                        println!(
                            "{} connections greeted in {:.2}s; measuring for {:.1}s",
                            cfg.clients,
                            connect_start.elapsed().as_secs_f64(),
                            cfg.duration.as_secs_f64()
                        );
                    }
                    body(cfg, &mut worker, t).unwrap_or_else(|e| die(e))
                })
            })
            .collect();
        for h in handles {
            total.merge(h.join().unwrap_or_else(|_| die("worker thread panicked")));
        }
    });
    total
}

/// rtt and throughput: each client keeps `cfg.window` echoes in flight.
fn echo_body(cfg: &Config, w: &mut Worker, _thread: usize) -> io::Result<Stats> {
    let payload: Vec<u8> = (0..cfg.size).map(|i| i as u8).collect();
    let mut hist = Histogram::new();
    let mut st = Stats::default();
    let start = Instant::now();
    let end = start + cfg.duration;
    let mut outstanding: u64 = 0;
    for c in w.clients.iter_mut() {
        for _ in 0..(cfg.window as u64).min(cfg.count) {
            c.push_request("echo", c.sent, now_ns(), &payload);
            c.sent += 1;
            outstanding += 1;
        }
        c.flush()?;
    }
    loop {
        let now = Instant::now();
        if now >= end || outstanding == 0 {
            break;
        }
        w.poll(end - now)?;
        let sending = Instant::now() < end;
        let Worker {
            events,
            clients,
            scratch,
            msgs,
            ..
        } = w;
        for event in events.iter() {
            let idx = event.token().0;
            let c = &mut clients[idx];
            msgs.clear();
            let closed = c.service(event, scratch, msgs)?;
            let t_recv = now_ns();
            let mut answered = 0;
            for m in msgs.iter() {
                let is_reply = match m.action {
                    Action::EchoReply | Action::Echo => true,
                    _ => cfg.raw,
                };
                let Some(seq) = m.seq.filter(|_| is_reply) else {
                    continue;
                };
                if seq != c.expect {
                    st.out_of_order += 1;
                }
                c.expect = seq + 1;
                if let Some(t) = m.t {
                    hist.record(t_recv.saturating_sub(t));
                }
                st.replies += 1;
                st.payload_bytes += cfg.size as u64;
                st.wire_bytes += m.wire_len as u64;
                answered += 1;
            }
            outstanding -= answered.min(outstanding);
            if sending {
                let t = now_ns();
                for _ in 0..answered {
                    if c.sent >= cfg.count {
                        break;
                    }
                    c.push_request("echo", c.sent, t, &payload);
                    c.sent += 1;
                    outstanding += 1;
                }
            }
            c.flush()?;
            if closed {
                return Err(io::Error::new(
                    ErrorKind::ConnectionAborted,
                    format!("connection #{idx} closed by the server"),
                ));
            }
        }
    }
    st.elapsed = start
        .elapsed()
        .min(cfg.duration)
        .max(Duration::from_micros(1));
    st.hist = Some(hist);
    Ok(st)
}

/// fanout: client 0 of thread 0 broadcasts at `cfg.rate`; everyone counts.
fn fanout_body(cfg: &Config, w: &mut Worker, thread: usize) -> io::Result<Stats> {
    let payload: Vec<u8> = (0..cfg.size).map(|i| i as u8).collect();
    let mut hist = Histogram::new();
    let mut st = Stats::default();
    let sender = thread == 0;
    let interval = Duration::from_secs_f64(1.0 / cfg.rate);
    let start = Instant::now();
    let end = start + cfg.duration;
    let stop = end + cfg.drain;
    let mut next_send = start;
    loop {
        let now = Instant::now();
        if now >= stop {
            break;
        }
        if sender && now < end && st.broadcasts_sent < cfg.count {
            let c = &mut w.clients[0];
            while next_send <= now && st.broadcasts_sent < cfg.count {
                c.push_request("broadcast", st.broadcasts_sent, now_ns(), &payload);
                st.broadcasts_sent += 1;
                next_send += interval;
            }
            c.flush()?;
        }
        let mut wake = stop;
        if sender && next_send < end && st.broadcasts_sent < cfg.count {
            wake = wake.min(next_send);
        }
        w.poll(wake.saturating_duration_since(Instant::now()))?;
        let Worker {
            events,
            clients,
            scratch,
            msgs,
            ..
        } = w;
        for event in events.iter() {
            let idx = event.token().0;
            let c = &mut clients[idx];
            msgs.clear();
            let closed = c.service(event, scratch, msgs)?;
            let t_recv = now_ns();
            for m in msgs.iter() {
                if m.action == Action::BroadcastReply {
                    st.replies += 1;
                    st.wire_bytes += m.wire_len as u64;
                    st.payload_bytes += cfg.size as u64;
                    if let Some(t) = m.t {
                        hist.record(t_recv.saturating_sub(t));
                    }
                }
            }
            if closed {
                return Err(io::Error::new(
                    ErrorKind::ConnectionAborted,
                    format!("connection #{idx} closed by the server"),
                ));
            }
        }
    }
    st.elapsed = cfg.duration.max(Duration::from_micros(1));
    st.hist = Some(hist);
    Ok(st)
}

fn vm_rss_bytes(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| {
            io::Error::new(
                ErrorKind::InvalidData,
                format!("no VmRSS in /proc/{pid}/status"),
            )
        })
}

/// CPU time (user + system, all threads) of process `pid` so far, in seconds.
fn cpu_secs(pid: u32) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // After the command's closing parenthesis: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    match (tick(11), tick(12)) {
        // USER_HZ is 100 on every Linux architecture this runs on.
        (Some(user), Some(system)) => Ok((user + system) as f64 / 100.0),
        _ => Err(io::Error::new(
            ErrorKind::InvalidData,
            format!("no utime/stime in /proc/{pid}/stat"),
        )),
    }
}

/// handshakes: `thread_share` connections at a time; each one is closed as soon as its
/// greeting arrives (close_notify first over TLS) and replaced by a new one, until
/// `cfg.duration` has passed. A connection that fails or closes before its greeting counts
/// as an error and is replaced too.
fn handshakes_body(cfg: &Config, w: &mut Worker, thread: usize) -> io::Result<Stats> {
    let n = thread_share(cfg, thread);
    let mut hist = Histogram::new();
    let mut st = Stats::default();
    // Each slot: a connection and when it was started (ns).
    let mut slots: Vec<Option<(Client, u64)>> = (0..n).map(|_| None).collect();
    let mut opened = thread; // numbers connections across threads (source address choice)
    let start = Instant::now();
    let end = start + cfg.duration;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let mut unfilled = false;
        for (idx, slot) in slots.iter_mut().enumerate() {
            if slot.is_none() {
                match open_client(cfg, opened, w.poll.registry(), Token(idx)) {
                    Ok(c) => *slot = Some((c, now_ns())),
                    Err(e) => {
                        st.errors += 1;
                        st.first_error.get_or_insert_with(|| e.to_string());
                        unfilled = true;
                    }
                }
                opened += cfg.threads;
            }
        }
        let mut wait = end - now;
        if unfilled {
            wait = wait.min(Duration::from_millis(1)); // out of ports, say: retry soon
        }
        w.poll(wait)?;
        let Worker {
            poll,
            events,
            scratch,
            msgs,
            ..
        } = w;
        for event in events.iter() {
            let idx = event.token().0;
            let Some((c, t0)) = slots.get_mut(idx).and_then(Option::as_mut) else {
                continue;
            };
            msgs.clear();
            let outcome = c.service(event, scratch, msgs);
            let greeted = msgs.iter().any(|m| m.action == Action::Connected);
            match outcome {
                _ if greeted => {
                    st.replies += 1;
                    hist.record(now_ns().saturating_sub(*t0));
                }
                Ok(false) => continue, // handshake (or upgrade) still under way
                Ok(true) => {
                    st.errors += 1;
                    st.first_error
                        .get_or_insert_with(|| "closed by the server before the greeting".into());
                }
                Err(e) => {
                    st.errors += 1;
                    st.first_error.get_or_insert_with(|| e.to_string());
                }
            }
            if let Some((c, _)) = slots[idx].take() {
                c.close(poll.registry());
            }
        }
    }
    for (c, _) in slots.into_iter().flatten() {
        c.close(w.poll.registry()); // unfinished: not counted
    }
    st.elapsed = cfg.duration.max(Duration::from_micros(1));
    st.hist = Some(hist);
    Ok(st)
}

// ---------------------------------------------------------------------------
// Reporting

fn json_f(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "null".into()
    }
}

fn print_latency(label: &str, h: &Histogram) {
    println!(
        "{label} latency us: p50={:.1} p99={:.1} p999={:.1} max={:.1} (n={})",
        h.us(0.50),
        h.us(0.99),
        h.us(0.999),
        h.max as f64 / 1000.0,
        h.total
    );
}

/// The negotiated TLS parameters, if a TLS handshake was completed.
fn print_tls() {
    if let Some(p) = TLS_PARAMS.get() {
        println!("tls: {p}");
    }
}

fn latency_json(h: &Histogram) -> String {
    format!(
        "\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{}",
        json_f(h.us(0.50)),
        json_f(h.us(0.99)),
        json_f(h.us(0.999)),
        json_f(h.max as f64 / 1000.0)
    )
}

/// The end of a RESULT line: `,"transport":"ws","url":"..."` over WebSocket, `"wss"` over
/// WebSocket over TLS, `"tls"` over TLS alone, then for TLS `,"tls":"VERSION SUITE GROUP"` as
/// negotiated; nothing on plain TCP.
fn transport_json(cfg: &Config) -> String {
    let clean = |s: &str| s.replace(['"', '\\'], "");
    let mut out = match (&cfg.ws, &cfg.tls) {
        (None, None) => return String::new(),
        (None, Some(_)) => ",\"transport\":\"tls\"".to_string(),
        (Some(u), tls) => format!(
            ",\"transport\":\"{}\",\"url\":\"{}\"",
            if tls.is_some() { "wss" } else { "ws" },
            clean(&ws_url_text(cfg, u))
        ),
    };
    if let Some(t) = &cfg.tls {
        out += &format!(
            ",\"tls_name\":\"{}\",\"tls\":\"{}\"",
            clean(&t.name.to_str()),
            clean(TLS_PARAMS.get().map_or("no handshake", |p| p.as_str()))
        );
    }
    out
}

fn ws_url_text(cfg: &Config, u: &WsUrl) -> String {
    let scheme = if cfg.tls.is_some() { "wss" } else { "ws" };
    if u.host.contains(':') {
        format!("{scheme}://[{}]:{}{}", u.host, u.port, u.path)
    } else {
        format!("{scheme}://{}:{}{}", u.host, u.port, u.path)
    }
}

fn report_echo(cfg: &Config, st: &Stats) {
    let secs = st.elapsed.as_secs_f64();
    let ops = st.replies as f64 / secs;
    let mb = st.payload_bytes as f64 / secs / 1e6;
    let wire_mb = st.wire_bytes as f64 / secs / 1e6;
    let hist = st.hist.as_ref().expect("echo stats carry a histogram");
    let what = if cfg.scenario == Scenario::Rtt {
        "round trips"
    } else {
        "replies"
    };
    println!("{what}: {} in {secs:.2}s = {ops:.0}/s", st.replies);
    let framing = if cfg.ws.is_some() {
        "WebSocket header + msgpack"
    } else {
        "length prefix + msgpack"
    };
    println!("reply MB/s: payload {mb:.2}, wire {wire_mb:.2} ({framing})");
    print_latency("round-trip", hist);
    print_tls();
    if st.out_of_order > 0 {
        println!("WARNING: {} replies out of sequence", st.out_of_order);
    }
    println!(
        "RESULT {{\"scenario\":\"{}\",\"addr\":\"{}\",\"clients\":{},\"threads\":{},\"window\":{},\"size\":{},\
\"duration\":{},\"ops\":{},\"ops_per_sec\":{},\"mb_per_sec\":{},\"wire_mb_per_sec\":{},{},\"out_of_order\":{}{}}}",
        cfg.scenario.name(),
        cfg.addr,
        cfg.clients,
        cfg.threads,
        cfg.window,
        cfg.size,
        json_f(secs),
        st.replies,
        json_f(ops),
        json_f(mb),
        json_f(wire_mb),
        latency_json(hist),
        st.out_of_order,
        transport_json(cfg)
    );
}

fn report_fanout(cfg: &Config, st: &Stats) {
    let secs = st.elapsed.as_secs_f64();
    let expected = st.broadcasts_sent * cfg.clients as u64;
    let loss = expected.saturating_sub(st.replies);
    let ops = st.replies as f64 / secs;
    let hist = st.hist.as_ref().expect("fanout stats carry a histogram");
    println!(
        "broadcasts sent: {} ({:.1}/s); deliveries: {} of {expected} expected = {ops:.0}/s",
        st.broadcasts_sent,
        st.broadcasts_sent as f64 / secs,
        st.replies
    );
    println!("loss: {loss} (after {} ms drain)", cfg.drain.as_millis());
    print_latency("delivery", hist);
    print_tls();
    println!(
        "RESULT {{\"scenario\":\"fanout\",\"addr\":\"{}\",\"clients\":{},\"threads\":{},\"rate\":{},\"size\":{},\
\"duration\":{},\"sent\":{},\"expected\":{expected},\"received\":{},\"loss\":{loss},\"ops_per_sec\":{},\
\"mb_per_sec\":{},{}{}}}",
        cfg.addr,
        cfg.clients,
        cfg.threads,
        json_f(cfg.rate),
        cfg.size,
        json_f(secs),
        st.broadcasts_sent,
        st.replies,
        json_f(ops),
        json_f(st.payload_bytes as f64 / secs / 1e6),
        latency_json(hist),
        transport_json(cfg)
    );
}

fn run_conns(cfg: &Config) -> io::Result<()> {
    let rss_all =
        || -> io::Result<Vec<u64>> { cfg.pids.iter().map(|&p| vm_rss_bytes(p)).collect() };
    if cfg.warmup > 0 {
        let mut w = Worker::new()?;
        w.connect_all(cfg, cfg.warmup, Instant::now() + cfg.timeout)?;
        for mut c in w.clients.drain(..) {
            let _ = w.poll.registry().deregister(&mut c.stream);
        }
        drop(w);
        std::thread::sleep(cfg.settle);
        println!("{} warm-up connections greeted and closed", cfg.warmup);
    }
    let before_each = rss_all()?;
    let before = (!cfg.pids.is_empty()).then(|| before_each.iter().sum::<u64>());
    if let Some(b) = before {
        println!("server VmRSS before: {:.1} MiB", b as f64 / 1048576.0);
    } else {
        println!("no --pid given: memory growth is not measured");
    }
    let mut w = Worker::new()?;
    let t0 = Instant::now();
    w.connect_all(cfg, cfg.conns, t0 + cfg.timeout)?;
    let connect_secs = t0.elapsed().as_secs_f64();
    println!(
        "{} connections greeted in {connect_secs:.2}s ({:.0}/s)",
        cfg.conns,
        cfg.conns as f64 / connect_secs
    );
    std::thread::sleep(cfg.settle);
    let after_each = rss_all()?;
    let after = (!cfg.pids.is_empty()).then(|| after_each.iter().sum::<u64>());
    let mut each_json = String::new();
    if cfg.pids.len() > 1 {
        let per: Vec<String> = (0..cfg.pids.len())
            .map(|i| {
                let growth = after_each[i] as f64 - before_each[i] as f64;
                println!(
                    "  pid {}: VmRSS {:.1} -> {:.1} MiB = {:.0} bytes/connection (÷ all of them)",
                    cfg.pids[i],
                    before_each[i] as f64 / 1048576.0,
                    after_each[i] as f64 / 1048576.0,
                    growth / cfg.conns as f64
                );
                json_f(growth / cfg.conns as f64)
            })
            .collect();
        let pids: Vec<String> = cfg.pids.iter().map(u32::to_string).collect();
        each_json = format!(
            ",\"pids\":[{}],\"bytes_per_conn_each\":[{}]",
            pids.join(","),
            per.join(",")
        );
    }
    let per_conn = match (before, after) {
        (Some(b), Some(a)) => {
            let per = (a as f64 - b as f64) / cfg.conns as f64;
            println!(
                "server VmRSS after: {:.1} MiB; growth {:.1} MiB = {per:.0} bytes/connection",
                a as f64 / 1048576.0,
                (a as f64 - b as f64) / 1048576.0
            );
            Some(per)
        }
        _ => None,
    };
    let close_start = Instant::now();
    for mut c in w.clients.drain(..) {
        let _ = w.poll.registry().deregister(&mut c.stream);
    }
    println!("closed all in {:.2}s", close_start.elapsed().as_secs_f64());
    print_tls();
    let opt = |v: Option<f64>| v.map_or_else(|| "null".to_string(), json_f);
    println!(
        "RESULT {{\"scenario\":\"conns\",\"addr\":\"{}\",\"conns\":{},\"connect_secs\":{},\
\"conns_per_sec\":{},\"sources\":{},\"rss_before\":{},\"rss_after\":{},\"bytes_per_conn\":{}{}{}}}",
        cfg.addr,
        cfg.conns,
        json_f(connect_secs),
        json_f(cfg.conns as f64 / connect_secs),
        cfg.sources.len().max(1),
        before.map_or_else(|| "null".to_string(), |v| v.to_string()),
        after.map_or_else(|| "null".to_string(), |v| v.to_string()),
        opt(per_conn),
        each_json,
        transport_json(cfg)
    );
    Ok(())
}

/// handshakes: runs the threads, reads the servers' CPU time around them, reports.
fn run_handshakes(cfg: &Config) -> io::Result<()> {
    let cpu_all = || -> io::Result<Vec<f64>> { cfg.pids.iter().map(|&p| cpu_secs(p)).collect() };
    let cpu_before = cpu_all()?;
    let self_before = cpu_secs(std::process::id())?;
    let t0 = Instant::now();
    let st = run_threads(cfg, handshakes_body);
    let wall = t0.elapsed().as_secs_f64();
    let cpu_after = cpu_all()?;
    let self_cpu = cpu_secs(std::process::id())? - self_before;
    let secs = st.elapsed.as_secs_f64();
    let rate = st.replies as f64 / secs;
    let hist = st.hist.as_ref().expect("handshake stats carry a histogram");
    println!(
        "handshakes: {} in {secs:.2}s = {rate:.0}/s; errors {}{}",
        st.replies,
        st.errors,
        st.first_error
            .as_ref()
            .map_or_else(String::new, |e| format!(" (first: {e})"))
    );
    print_latency("connect-to-greeting", hist);
    print_tls();
    println!(
        "loadgen CPU: {self_cpu:.2}s over {wall:.2}s = {:.0}% of a core",
        100.0 * self_cpu / wall
    );
    let mut server_json = String::new();
    if !cfg.pids.is_empty() {
        let each: Vec<f64> = cpu_after
            .iter()
            .zip(&cpu_before)
            .map(|(a, b)| a - b)
            .collect();
        let total: f64 = each.iter().sum();
        for (pid, c) in cfg.pids.iter().zip(&each) {
            println!(
                "server pid {pid} CPU: {c:.2}s = {:.0}% of a core",
                100.0 * c / wall
            );
        }
        let per_cpu_sec = if total > 0.0 {
            st.replies as f64 / total
        } else {
            f64::NAN
        };
        println!(
            "server CPU: {total:.2}s over {wall:.2}s = {:.0}% of a core; {per_cpu_sec:.0} handshakes per server CPU second",
            100.0 * total / wall
        );
        let each: Vec<String> = each.iter().map(|&c| json_f(c)).collect();
        server_json = format!(
            ",\"server_cpu_secs\":{},\"server_cpu_secs_each\":[{}],\"server_cpu_util\":{},\"ops_per_server_cpu_sec\":{}",
            json_f(total),
            each.join(","),
            json_f(total / wall),
            json_f(per_cpu_sec)
        );
    }
    println!(
        "RESULT {{\"scenario\":\"handshakes\",\"addr\":\"{}\",\"clients\":{},\"threads\":{},\"duration\":{},\
\"ops\":{},\"ops_per_sec\":{},\"errors\":{},{},\"client_cpu_secs\":{},\"wall_secs\":{}{}{}}}",
        cfg.addr,
        cfg.clients,
        cfg.threads,
        json_f(secs),
        st.replies,
        json_f(rate),
        st.errors,
        latency_json(hist),
        json_f(self_cpu),
        json_f(wall),
        server_json,
        transport_json(cfg)
    );
    if st.replies == 0 {
        return Err(io::Error::other("no handshake completed"));
    }
    Ok(())
}

fn main() {
    START.get_or_init(Instant::now);
    let cfg = match parse_args() {
        Ok(cfg) => cfg,
        Err(e) => {
            if e.is_empty() {
                println!("{USAGE}");
                std::process::exit(0);
            }
            eprintln!("loadgen: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    if cfg.scenario == Scenario::Conns {
        println!(
            "scenario=conns addr={} conns={} sources={} from {}",
            cfg.addr,
            cfg.conns,
            cfg.sources.len().max(1),
            cfg.sources
                .first()
                .map_or_else(|| "the kernel".to_string(), |ip| ip.to_string())
        );
    } else {
        println!(
            "scenario={} addr={} clients={} threads={} size={} duration={:.1}s",
            cfg.scenario.name(),
            cfg.addr,
            cfg.clients,
            cfg.threads,
            cfg.size,
            cfg.duration.as_secs_f64()
        );
    }
    if let Some(u) = &cfg.ws {
        println!("transport=websocket url={}", ws_url_text(&cfg, u));
    }
    if let Some(t) = &cfg.tls {
        println!("transport=tls name={} ca={}", t.name.to_str(), t.ca);
    }
    match cfg.scenario {
        Scenario::Rtt | Scenario::Throughput => {
            let st = run_threads(&cfg, echo_body);
            report_echo(&cfg, &st);
        }
        Scenario::Fanout => {
            let st = run_threads(&cfg, fanout_body);
            report_fanout(&cfg, &st);
        }
        Scenario::Conns => run_conns(&cfg).unwrap_or_else(|e| die(e)),
        Scenario::Handshakes => run_handshakes(&cfg).unwrap_or_else(|e| die(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_round_trip() {
        for v in [
            0u64,
            1,
            127,
            128,
            129,
            1000,
            123_456,
            9_999_999_999,
            u64::MAX / 3,
        ] {
            let idx = Histogram::index(v);
            assert!(idx < BUCKETS);
            let mid = Histogram::value(idx);
            let err = (mid as f64 - v as f64).abs() / (v.max(1) as f64);
            assert!(err < 0.016, "v={v} idx={idx} mid={mid}");
        }
        let mut h = Histogram::new();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 - 500_000.0).abs() / 500_000.0 < 0.016);
    }

    #[test]
    fn request_parses_back() {
        let mut buf = Vec::new();
        push_request(&mut buf, "echo", 300, 1 << 40, &[7; 70]);
        let mut out = Vec::new();
        let used = split_frames(&buf, &mut out).unwrap();
        assert_eq!(used, buf.len());
        assert_eq!(out.len(), 1);
        assert!(out[0].action == Action::Echo);
        assert_eq!(out[0].seq, Some(300));
        assert_eq!(out[0].t, Some(1 << 40));
        assert_eq!(out[0].wire_len, buf.len());
    }

    #[test]
    fn websocket_requests_and_replies_round_trip() {
        use repod::ws::handshake::{parse_request, write_accept};

        let url = WsUrl::parse("ws://127.0.0.1:5072/").unwrap().unwrap();
        let mut wire = Vec::new();
        let mut ws = WsConn::start(&url, MaskKeys::new(1), &mut wire);
        // The server's side of the upgrade, as repod's reactor does it.
        let req = parse_request(&wire, &repod::WsOptions::default())
            .unwrap()
            .unwrap();
        assert_eq!(req.len, wire.len());
        let mut answer = Vec::new();
        write_accept(&mut answer, &req.accept);
        let key = ws.key.take().unwrap();
        assert_eq!(
            parse_response(&answer, &key, MAX_UPGRADE_RESPONSE),
            Ok(Some(answer.len()))
        );

        // Our requests: one masked binary frame per map, no length prefix.
        let mut client = Vec::new();
        for (seq, size) in [(7u64, 64usize), (8, 200), (9, 70_000)] {
            ws.map.clear();
            encode_request(&mut ws.map, "echo", seq, 1 << 33, &vec![3; size]);
            encode_frame(
                &mut client,
                Opcode::Binary,
                true,
                &ws.map,
                Some(ws.keys.next_key()),
            );
        }
        let mut server = WsDecoder::new(Role::Server, MAX_FRAME);
        let mut got = Vec::new();
        server
            .decode(&mut client, |e| {
                if let WsEvent::Binary(p) = e {
                    let m = parse_msg(p);
                    got.push((m.seq, m.t));
                    // The reply: unmasked, as a server sends it.
                    let mut reply = Vec::new();
                    encode_frame(&mut reply, Opcode::Binary, true, p, None);
                    got.push((Some(reply.len() as u64), None));
                }
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(got.len(), 6);
        assert_eq!(got[0], (Some(7), Some(1 << 33)));
        assert_eq!(got[4], (Some(9), Some(1 << 33)));

        // Replies split at every point decode to the same messages, with their wire lengths;
        // a ping is answered with a masked pong.
        let mut replies = Vec::new();
        let mut lens = Vec::new();
        for seq in [1u64, 2] {
            let mut map = Vec::new();
            encode_request(&mut map, "echo_reply", seq, 5, &[1; 150]);
            encode_frame(&mut replies, Opcode::Binary, true, &map, None);
            lens.push(replies.len() - lens.iter().sum::<usize>());
        }
        encode_frame(&mut replies, Opcode::Ping, true, b"hi", None);
        for cut in 0..replies.len() {
            let mut ws = WsConn::start(&url, MaskKeys::new(2), &mut Vec::new());
            ws.key = None;
            let (mut out, mut pong) = (Vec::new(), Vec::new());
            let (a, b) = replies.split_at(cut);
            ws.decode(&mut a.to_vec(), &mut pong, &mut out).unwrap();
            ws.decode(&mut b.to_vec(), &mut pong, &mut out).unwrap();
            assert_eq!(out.len(), 2, "cut {cut}");
            assert!(out.iter().all(|m| m.action == Action::EchoReply));
            assert_eq!(out[1].seq, Some(2));
            assert_eq!(out.iter().map(|m| m.wire_len).collect::<Vec<_>>(), lens);
            assert_eq!(pong[0], 0x8a);
            assert_eq!(pong[1], 0x80 | 2);
        }
    }
}
