//! Helpers for the hostile-peer tests (`tests/limits.rs`, `tests/hostile.rs`): a probe server
//! that records every hook call, a raw wire-level peer over blocking std TCP, bounded waits, and
//! a way to run one test in a child process with its own resource limits.
//!
//! Include with `#[path = "support/net.rs"] mod net;`.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use repod::proxy::ProxyError;
use repod::{
    msg, BackgroundServer, Bin, ChannelCtx, ChannelHandler, ChannelId, Config, DisconnectReason,
    Encode, Error, HandlerResult, Listen, Message, OwnedMessage, Routes, Server, ServerCtx,
    ServerHandle, ServerHandler,
};

/// Bound for anything that must happen "promptly", on a loaded 2-core machine.
pub const PROMPT: Duration = Duration::from_secs(5);

/// Polls `cond` until it holds, failing the test after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The name of an error case, for recording and comparing (`Error` is not `Clone`).
pub fn kind(e: &Error) -> &'static str {
    match e {
        Error::Io(_) => "Io",
        Error::FrameTooLarge { .. } => "FrameTooLarge",
        Error::InvalidMsgpack { .. } => "InvalidMsgpack",
        Error::NotAMap => "NotAMap",
        Error::InvalidUtf8 { .. } => "InvalidUtf8",
        Error::ActionNotString => "ActionNotString",
        Error::TooDeep { .. } => "TooDeep",
        Error::MissingField { .. } => "MissingField",
        Error::WrongType { .. } => "WrongType",
        Error::OutputFull { .. } => "OutputFull",
        Error::IdleTimeout(_) => "IdleTimeout",
        Error::HandlerPanic(_) => "HandlerPanic",
        Error::Closed => "Closed",
        Error::Handler(_) => "Handler",
        Error::WebSocket(_) => "WebSocket",
        Error::Handshake(_) => "Handshake",
        Error::Proxy(_) => "Proxy",
        Error::Tls(_) => "Tls",
        _ => "Other",
    }
}

/// The name of a disconnect reason: `PeerClosed`, `Closed`, `ServerStopped`, or the error's
/// [`kind`].
pub fn reason_kind(r: &DisconnectReason) -> &'static str {
    match r {
        DisconnectReason::PeerClosed => "PeerClosed",
        DisconnectReason::Closed => "Closed",
        DisconnectReason::ServerStopped => "ServerStopped",
        DisconnectReason::HeartbeatTimeout(_) => "HeartbeatTimeout",
        DisconnectReason::Error(e) => kind(e),
        _ => "Other",
    }
}

/// One hook call, as the probe server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    /// `ServerHandler::on_connect`.
    Connect(ChannelId),
    /// `ChannelHandler::on_error`: the case and its `Display` text.
    Error(ChannelId, &'static str, String),
    /// `ChannelHandler::on_close`.
    Close(ChannelId, &'static str),
    /// `ServerHandler::on_disconnect`.
    Disconnect(ChannelId, &'static str),
}

/// What the flood tick did for one channel.
#[derive(Debug, Clone, Default)]
pub struct FloodStats {
    /// Messages queued.
    pub sent: u64,
    /// `send` calls refused with `OutputFull` (the `DropMessage` policy).
    pub refused: u64,
    /// Largest `queued_bytes` seen.
    pub max_queued: usize,
    /// The error that stopped the flood, if any.
    pub stopped_by: Option<&'static str>,
}

/// A connection refused before it became a channel (`ServerHandler::on_refused`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The address `on_refused` was given (the socket's: a bad header names no client).
    pub addr: SocketAddr,
    /// The error's [`kind`].
    pub kind: &'static str,
    /// The PROXY protocol case, for `Error::Proxy`.
    pub proxy: Option<ProxyError>,
    /// The error's `Display` text.
    pub text: String,
}

/// Everything the probe server records; shared with the test thread.
#[derive(Debug, Default)]
pub struct Record {
    pub events: Vec<Ev>,
    /// The address `ServerHandler::on_connect` was given, per channel.
    pub addrs: Vec<(ChannelId, SocketAddr)>,
    /// `ServerHandler::on_refused` calls.
    pub refused: Vec<Refusal>,
    /// `ServerHandler::on_drain` calls: the deadline each was given.
    pub drains: Vec<Instant>,
    /// Channels the tick floods, and what happened.
    pub flood: Vec<(ChannelId, FloodStats)>,
    /// Size of each flood message's payload.
    pub flood_size: usize,
    /// Messages per tick and channel.
    pub flood_burst: usize,
}

impl Record {
    pub fn errors_of(&self, id: ChannelId) -> Vec<(&'static str, String)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Ev::Error(i, k, t) if *i == id => Some((*k, t.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn closes_of(&self, id: ChannelId) -> Vec<&'static str> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Ev::Close(i, k) if *i == id => Some(*k),
                _ => None,
            })
            .collect()
    }

    pub fn disconnects_of(&self, id: ChannelId) -> Vec<&'static str> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Ev::Disconnect(i, k) if *i == id => Some(*k),
                _ => None,
            })
            .collect()
    }

    pub fn disconnect_count(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Ev::Disconnect(..)))
            .count()
    }

    pub fn connect_count(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Ev::Connect(..)))
            .count()
    }
}

/// The probe server's state: the record, behind a lock the test thread also holds a clone of.
#[derive(Debug, Clone, Default)]
pub struct Shared(pub Arc<Mutex<Record>>);

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Record> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A channel that answers a few actions and records every hook call:
/// - `echo`: replies with the same map, action `echo_reply`;
/// - `whoami`: replies `{"action": "you", "slot": <slot>}`;
/// - `peer`: replies `{"action": "peer", "addr": "<ctx.addr()>"}` (the PROXY header's address
///   behind a balancer);
/// - `panic`: panics with the `text` field;
/// - `fail`: returns an application error;
/// - `need`: reads the `n` field as an i64 (so a missing or mistyped field reaches `on_error`);
/// - `bulk`: queues `count` messages `{action: "bulk", seq, data: <size bytes>}`, then closes
///   the channel if `close` is true;
/// - `flood`: adds the channel to the tick's flood list;
/// - everything else (no route): ignored.
#[derive(Debug, Default)]
pub struct Probe;

impl ChannelHandler for Probe {
    type Server = Shared;

    fn routes(r: &mut Routes<Self>) {
        r.on("echo", |_, ctx, m| {
            ctx.send(&m.with_action("echo_reply"));
            Ok(())
        });
        r.on("whoami", |_, ctx, _| {
            let slot = ctx.id().slot();
            ctx.send(&msg! { "action": "you", "slot": slot });
            Ok(())
        });
        r.on("peer", |_, ctx, _| {
            let addr = ctx.addr().to_string();
            ctx.send(&msg! { "action": "peer", "addr": addr.as_str() });
            Ok(())
        });
        r.on("panic", |_, _, m| {
            let text = m.str("text").unwrap_or("no text");
            panic!("{text}");
        });
        r.on("fail", |_, _, _| Err(Error::handler("asked to fail")));
        r.on("need", |_, _, m| m.i64("n").map(drop));
        r.on("bulk", Self::bulk);
        r.on("flood", |_, ctx, _| {
            let id = ctx.id();
            ctx.server().lock().flood.push((id, FloodStats::default()));
            Ok(())
        });
    }

    fn on_error(&mut self, ctx: &mut ChannelCtx<'_, Self>, error: &Error) {
        let ev = Ev::Error(ctx.id(), kind(error), error.to_string());
        ctx.server().lock().events.push(ev);
    }

    fn on_close(&mut self, ctx: &mut ChannelCtx<'_, Self>, reason: &DisconnectReason) {
        let ev = Ev::Close(ctx.id(), reason_kind(reason));
        ctx.server().lock().events.push(ev);
    }
}

impl Probe {
    fn bulk(&mut self, ctx: &mut ChannelCtx<'_, Self>, m: &Message<'_>) -> HandlerResult {
        let count = m.u64("count")?;
        let size = m.u64("size")? as usize;
        let data = vec![0xa5u8; size];
        for seq in 0..count {
            if ctx.send(&msg! { "action": "bulk", "seq": seq, "data": Bin(&data) }) == 0 {
                return Err(Error::handler(format!("bulk send {seq} refused")));
            }
        }
        if m.get("close").and_then(|f| f.as_bool()) == Some(true) {
            ctx.close_self();
        }
        Ok(())
    }
}

impl ServerHandler<Probe> for Shared {
    fn on_connect(&mut self, _ctx: &mut ServerCtx<'_, Probe>, id: ChannelId, addr: SocketAddr) {
        let mut rec = self.lock();
        rec.events.push(Ev::Connect(id));
        rec.addrs.push((id, addr));
    }

    fn on_refused(&mut self, _ctx: &mut ServerCtx<'_, Probe>, addr: SocketAddr, error: &Error) {
        let proxy = match error {
            Error::Proxy(p) => Some(p.clone()),
            _ => None,
        };
        self.lock().refused.push(Refusal {
            addr,
            kind: kind(error),
            proxy,
            text: error.to_string(),
        });
    }

    fn on_drain(&mut self, _ctx: &mut ServerCtx<'_, Probe>, deadline: Instant) {
        self.lock().drains.push(deadline);
    }

    fn on_disconnect(
        &mut self,
        _ctx: &mut ServerCtx<'_, Probe>,
        id: ChannelId,
        _channel: Probe,
        reason: &DisconnectReason,
    ) {
        self.lock()
            .events
            .push(Ev::Disconnect(id, reason_kind(reason)));
    }

    fn on_tick(&mut self, ctx: &mut ServerCtx<'_, Probe>) {
        let mut rec = self.lock();
        let (size, burst) = (rec.flood_size, rec.flood_burst.max(1));
        if rec.flood.is_empty() {
            return;
        }
        let data = vec![0x5au8; size];
        for (id, stats) in rec.flood.iter_mut() {
            if stats.stopped_by.is_some() {
                continue;
            }
            for _ in 0..burst {
                let m = msg! { "action": "flood", "seq": stats.sent, "data": Bin(&data) };
                match ctx.try_send_to(*id, &m) {
                    Ok(_) => stats.sent += 1,
                    Err(Error::OutputFull { .. }) if ctx.is_connected(*id) => stats.refused += 1,
                    Err(e) => {
                        stats.stopped_by = Some(kind(&e));
                        break;
                    }
                }
                stats.max_queued = stats.max_queued.max(ctx.queued_bytes(*id));
            }
        }
    }
}

/// A probe server running on its own thread.
pub struct Probed {
    pub server: BackgroundServer<Probe>,
    pub shared: Shared,
    pub addr: SocketAddr,
    /// The WebSocket port, when `start_with` opened one.
    pub ws: Option<SocketAddr>,
}

impl Probed {
    pub fn lock(&self) -> MutexGuard<'_, Record> {
        self.shared.lock()
    }

    pub fn handle(&self) -> ServerHandle<Probe> {
        self.server.handle()
    }

    /// Waits until `cond` holds on the record.
    pub fn wait(&self, what: &str, mut cond: impl FnMut(&Record) -> bool) {
        wait_for(what, PROMPT, || cond(&self.lock()));
    }

    /// The id of the channel a raw peer is talking to (asks the server with `whoami`, then looks
    /// the slot up among the connected ids).
    pub fn id_of(&self, peer: &mut Peer) -> ChannelId {
        peer.send(&msg! { "action": "whoami" });
        let reply = peer.recv().expect("whoami reply");
        let slot = reply.message().u64("slot").expect("slot") as usize;
        let id = query(&self.handle(), move |_, ctx| {
            ctx.channels()
                .map(|(id, _)| id)
                .find(|id| id.slot() == slot)
        });
        id.expect("the channel is connected")
    }

    /// Checks that a brand-new client is greeted and gets an echo back within [`PROMPT`].
    pub fn assert_served(&self) {
        assert_served(self.addr);
    }
}

/// Starts a probe server with `cfg` on a free loopback port.
pub fn start(cfg: Config) -> Probed {
    start_with(cfg, |s| s)
}

/// As [`start`], with a chance to set more options (a tick rate, say).
pub fn start_with(cfg: Config, more: impl FnOnce(Server<Probe>) -> Server<Probe>) -> Probed {
    start_on(Listen::on("127.0.0.1:0"), cfg, more)
}

/// As [`start_with`], listening as `listen` says (a PROXY protocol listener, say).
pub fn start_on(
    listen: Listen,
    cfg: Config,
    more: impl FnOnce(Server<Probe>) -> Server<Probe>,
) -> Probed {
    let shared = Shared::default();
    let server = Server::<Probe>::bind(listen, shared.clone())
        .expect("bind")
        .config(cfg);
    let server = more(server);
    let addr = server.local_addr();
    let ws = server.ws_addr();
    let server = server.start_background().expect("start");
    Probed {
        server,
        shared,
        addr,
        ws,
    }
}

/// Runs `f` on the server's reactor thread and returns its result.
pub fn query<R: Send + 'static>(
    handle: &ServerHandle<Probe>,
    f: impl FnOnce(&mut Shared, &mut ServerCtx<'_, Probe>) -> R + Send + 'static,
) -> R {
    let (tx, rx) = mpsc::channel();
    handle.call(move |state, ctx| {
        let _ = tx.send(f(state, ctx));
    });
    rx.recv_timeout(PROMPT).expect("the server did not answer")
}

/// The payload of `msg`, unframed.
pub fn payload(msg: &impl Encode) -> Vec<u8> {
    let mut p = Vec::new();
    msg.encode(&mut p);
    p
}

/// Frames raw payload bytes.
pub fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// A peer that speaks the wire format by hand over a blocking std socket.
#[derive(Debug)]
pub struct Peer {
    pub stream: TcpStream,
}

impl Peer {
    /// Connects (no greeting read).
    pub fn connect(addr: SocketAddr) -> Peer {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(PROMPT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Peer { stream }
    }

    /// Connects and writes `preamble` (a PROXY protocol header, say) at once, before any
    /// greeting; reads nothing.
    pub fn connect_with(addr: SocketAddr, preamble: &[u8]) -> Peer {
        let mut p = Peer::connect(addr);
        p.send_raw(preamble);
        p
    }

    /// Connects, writes `preamble`, and reads the greeting.
    pub fn greeted_with(addr: SocketAddr, preamble: &[u8]) -> Peer {
        let mut p = Peer::connect_with(addr, preamble);
        p.expect_greeting();
        p
    }

    /// Connects and reads the greeting.
    pub fn greeted(addr: SocketAddr) -> Peer {
        let mut p = Peer::connect(addr);
        p.expect_greeting();
        p
    }

    pub fn expect_greeting(&mut self) {
        let m = self.recv().expect("greeting");
        assert_eq!(m.action(), "connected", "first message is the greeting");
    }

    pub fn send(&mut self, msg: &impl Encode) {
        self.send_payload(&payload(msg));
    }

    pub fn send_payload(&mut self, payload: &[u8]) {
        self.send_raw(&framed(payload));
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Reads one frame's payload. `Ok(None)` at a clean end of stream between frames.
    pub fn recv_payload(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut head = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match self.stream.read(&mut head[got..])? {
                0 if got == 0 => return Ok(None),
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => got += n,
            }
        }
        let len = u32::from_be_bytes(head) as usize;
        let mut body = vec![0; len];
        self.stream.read_exact(&mut body)?;
        Ok(Some(body))
    }

    /// Reads one message; panics on end of stream or a malformed frame.
    pub fn recv(&mut self) -> io::Result<OwnedMessage> {
        let p = self
            .recv_payload()?
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        OwnedMessage::parse(p).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Sends `echo` with `seq` and checks the reply.
    pub fn echo(&mut self, seq: u64) {
        self.send(&msg! { "action": "echo", "seq": seq });
        let r = self.recv().expect("echo reply");
        let m = r.message();
        assert_eq!(m.action(), "echo_reply");
        assert_eq!(m.u64("seq").unwrap(), seq);
    }

    /// Reads until the server closes, returning the payloads read on the way. Fails if the
    /// stream does not end within [`PROMPT`].
    pub fn expect_eof(&mut self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        loop {
            match self.recv_payload() {
                Ok(Some(p)) => frames.push(p),
                Ok(None) => return frames,
                // A reset also ends the stream; what matters is that it ended.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return frames,
                Err(e) => panic!("expected the server to close, got {e}"),
            }
        }
    }

    /// Whether the server has closed this connection (reads with a short timeout; discards
    /// data).
    pub fn is_closed_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let r = self.stream.read(&mut buf);
            self.stream.set_read_timeout(Some(PROMPT)).unwrap();
            match r {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return false
                }
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    pub fn shutdown_write(&self) {
        self.stream.shutdown(Shutdown::Write).unwrap();
    }
}

/// Checks that a brand-new client is greeted and gets an echo back within [`PROMPT`].
pub fn assert_served(addr: SocketAddr) {
    let start = Instant::now();
    let mut p = Peer::greeted(addr);
    p.echo(424242);
    let took = start.elapsed();
    assert!(took < PROMPT, "a fresh client took {took:?} to be served");
}

/// The environment variable that switches a test binary into "child mode" for one test.
pub const CHILD_ENV: &str = "REPOD_TEST_CHILD";

/// Whether this process is the child run of test `name`.
pub fn is_child(name: &str) -> bool {
    std::env::var(CHILD_ENV).is_ok_and(|v| v == name)
}

/// Re-runs test `name` of this binary in a child process, after the shell command `setup`
/// (`ulimit -n 64`, say), so its limits apply to the child only. Panics, with the child's
/// output, if the child fails.
pub fn run_in_child(name: &str, setup: &str) {
    let exe = std::env::current_exe().expect("current_exe");
    let script = format!(
        "{setup} && exec \"$0\" --exact {name} --include-ignored --nocapture --test-threads=1"
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(&exe)
        .env(CHILD_ENV, name)
        .output()
        .expect("spawn the child");
    let text = format!(
        "--- child stdout ---\n{}\n--- child stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "child {name} failed: {}\n{text}",
        out.status
    );
    assert!(
        text.contains("1 passed"),
        "child {name} ran no test (wrong name?)\n{text}"
    );
}

/// Reads the CPU time (user + system) this process has used, from `/proc/self/stat`, through a
/// descriptor opened once: it keeps working when the process is out of descriptors.
#[derive(Debug)]
pub struct CpuClock(std::fs::File);

impl CpuClock {
    pub fn open() -> CpuClock {
        CpuClock(std::fs::File::open("/proc/self/stat").expect("/proc/self/stat"))
    }

    pub fn read(&mut self) -> Duration {
        use std::io::Seek;
        let mut stat = String::new();
        self.0.rewind().unwrap();
        self.0.read_to_string(&mut stat).unwrap();
        // Fields after the command name (in parentheses, and it may hold spaces).
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line: 12 and 13 of `rest`.
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        // The kernel's USER_HZ is 100 on every Linux platform Rust supports.
        Duration::from_millis(ticks * 10)
    }
}

/// A field of `/proc/self/status` in KiB (`VmPeak`, `VmRSS`, ...).
pub fn proc_status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Open file descriptors of this process, and how many of them are numbered below `limit`
/// (`RLIMIT_NOFILE` caps the numbers of new descriptors; an inherited descriptor numbered above
/// it takes no room). Both counts include the one used to list the directory.
pub fn open_fds(limit: usize) -> (usize, usize) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return (0, 0);
    };
    let fds: Vec<usize> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (fds.len(), fds.iter().filter(|&&fd| fd < limit).count())
}

/// A small deterministic random number generator (xorshift64*), so chunkings are reproducible.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
}

/// Reads until the server ends the stream (or resets it); returns every byte read. Fails after
/// `limit`.
pub fn read_to_end_within(stream: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "the server did not close within {limit:?} (read {got:?})"
        );
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return got,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}
