//! Interoperability with Python repod 0.1.2 (PyPI `repodnet`), the real package, both ways:
//! a Python client against our server, and our client against a Python server.
//!
//! The Python sides are the scripts in `tests/python/`, run in a venv that
//! `support/python.rs` creates under the target directory. Without a Python >= 3.12 the tests
//! print a loud notice and pass, skipped; with `CI` set they fail instead.
//!
//! How the two sides talk: the Rust side drives, through repod messages, a Python peer written
//! with the public API only (`tests/python/puppet.py`: `echo`, `send_values`, `send_burst`, ...).
//! Data comes back over the repod connection itself and is compared here as `rmpv::Value`s; the
//! Python processes only print short status lines (`event connected`, `channel_on_close`, ...)
//! that the tests read from their stdout.
//!
//! Every child process is killed when its guard drops (a failing test included), and the Python
//! scripts also exit when their stdin closes, so nothing outlives the test binary. Every wait is
//! bounded.

#[path = "support/examples.rs"]
mod examples;
#[path = "support/proc.rs"]
mod proc;
#[path = "support/python.rs"]
mod python;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use proc::{short, Proc, WAIT};
use repod::{
    msg, BackgroundServer, Bin, ChannelCtx, ChannelHandler, ChannelId, Client, ClientCtx, Config,
    DisconnectReason, Error, HandlerResult, Listener, Message, Mode, OwnedMessage, Routes, Server,
    ServerCtx, ServerHandle, ServerHandler,
};
use rmpv::Value;

/// Messages in a burst.
const BURST: u64 = 10_000;

/// One mebibyte.
const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

/// A port that was free a moment ago (for a Python server, which takes its port as an argument).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding an ephemeral port")
        .port()
}

/// Starts a Python server script that prints `ready_prefix...` once it listens, retrying with
/// another port if the one picked was taken meanwhile.
fn start_python_server(py: &Path, script: &str, ready_prefix: &str) -> (Proc, SocketAddr) {
    for _ in 0..5 {
        let port = free_port();
        let mut server = Proc::python(py, script, &["127.0.0.1", &port.to_string()]);
        let deadline = Instant::now() + WAIT;
        loop {
            if server.seen.iter().any(|l| l.starts_with(ready_prefix)) {
                server.cursor = server.seen.len();
                return (server, SocketAddr::from(([127, 0, 0, 1], port)));
            }
            if !server.read_line(deadline) {
                break;
            }
        }
        let status = server.finish();
        let ctx = server.context();
        assert!(
            ctx.contains("address already in use"),
            "{script} did not start ({status})\n{ctx}"
        );
    }
    panic!("{script}: no free port after 5 tries");
}

// ---------------------------------------------------------------------------------------------
// The Rust server side: a probe that reports every hook and message to the test thread
// ---------------------------------------------------------------------------------------------

/// Fields are read through `Debug`, in failure messages.
#[allow(dead_code)]
#[derive(Debug)]
enum Ev {
    ChannelConnect(ChannelId),
    ServerConnect(ChannelId, SocketAddr),
    Routed(ChannelId, OwnedMessage),
    Fallback(ChannelId, OwnedMessage),
    ChannelError(ChannelId, String),
    ChannelClose(ChannelId, String),
    ServerDisconnect(ChannelId, String),
}

/// Actions the probe has routes for; everything else reaches `network_received`.
const ROUTED: &[&str] = &[
    "echo_reply",
    "py_values",
    "seq",
    "seq_end",
    "seq_report",
    "after_no_action",
    "after_odd_actions",
];

struct Probe {
    events: Sender<Ev>,
}

#[derive(Default)]
struct ProbeChannel;

fn reason_label(reason: &DisconnectReason) -> String {
    match reason {
        DisconnectReason::PeerClosed => "peer_closed".into(),
        DisconnectReason::Closed => "closed".into(),
        DisconnectReason::ServerStopped => "server_stopped".into(),
        other => format!("error: {other}"),
    }
}

impl ChannelHandler for ProbeChannel {
    type Server = Probe;

    fn routes(r: &mut Routes<Self>) {
        for action in ROUTED {
            r.on(action, |_, ctx, m| {
                let id = ctx.id();
                let _ = ctx.server().events.send(Ev::Routed(id, m.to_owned()));
                Ok(())
            });
        }
    }

    fn network_received(
        &mut self,
        ctx: &mut ChannelCtx<'_, Self>,
        m: &Message<'_>,
    ) -> HandlerResult {
        let id = ctx.id();
        let _ = ctx.server().events.send(Ev::Fallback(id, m.to_owned()));
        Ok(())
    }

    fn on_connect(&mut self, ctx: &mut ChannelCtx<'_, Self>) {
        let id = ctx.id();
        let _ = ctx.server().events.send(Ev::ChannelConnect(id));
    }

    fn on_error(&mut self, ctx: &mut ChannelCtx<'_, Self>, error: &Error) {
        let id = ctx.id();
        let _ = ctx
            .server()
            .events
            .send(Ev::ChannelError(id, error.to_string()));
    }

    fn on_close(&mut self, ctx: &mut ChannelCtx<'_, Self>, reason: &DisconnectReason) {
        let id = ctx.id();
        let _ = ctx
            .server()
            .events
            .send(Ev::ChannelClose(id, reason_label(reason)));
    }
}

impl ServerHandler<ProbeChannel> for Probe {
    fn on_connect(&mut self, _: &mut ServerCtx<'_, ProbeChannel>, id: ChannelId, addr: SocketAddr) {
        let _ = self.events.send(Ev::ServerConnect(id, addr));
    }

    fn on_disconnect(
        &mut self,
        _: &mut ServerCtx<'_, ProbeChannel>,
        id: ChannelId,
        _: ProbeChannel,
        reason: &DisconnectReason,
    ) {
        let _ = self
            .events
            .send(Ev::ServerDisconnect(id, reason_label(reason)));
    }
}

/// Our server on a free port, on its own thread.
struct ProbeServer {
    server: Option<BackgroundServer<ProbeChannel>>,
    handle: ServerHandle<ProbeChannel>,
    events: Receiver<Ev>,
    port: String,
}

impl ProbeServer {
    fn start() -> ProbeServer {
        Self::start_with(repod::Config::default())
    }

    fn start_with(cfg: repod::Config) -> ProbeServer {
        let (tx, events) = mpsc::channel();
        let server = Server::<ProbeChannel>::bind("127.0.0.1:0", Probe { events: tx })
            .expect("bind")
            .config(cfg)
            .start_background()
            .expect("start_background");
        ProbeServer {
            handle: server.handle(),
            port: server.local_addr().port().to_string(),
            server: Some(server),
            events,
        }
    }

    fn next(&self, what: &str) -> Ev {
        self.events
            .recv_timeout(WAIT)
            .unwrap_or_else(|e| panic!("server: waiting for {what}: {e}"))
    }

    /// A new connection: the channel's `on_connect`, then the server's, nothing in between.
    fn expect_connect(&self) -> (ChannelId, SocketAddr) {
        let id = match self.next("on_connect") {
            Ev::ChannelConnect(id) => id,
            other => panic!("expected the channel's on_connect, got {other:?}"),
        };
        match self.next("the server's on_connect") {
            Ev::ServerConnect(i, addr) if i == id => (id, addr),
            other => panic!("expected the server's on_connect for {id:?}, got {other:?}"),
        }
    }

    /// The next event must be a routed message with this action from channel `id`.
    fn expect_routed(&self, id: ChannelId, action: &str) -> OwnedMessage {
        match self.next(action) {
            Ev::Routed(i, m) if i == id && m.action() == action => m,
            other => panic!("expected {action:?} from {id:?}, got {}", short_ev(&other)),
        }
    }

    /// The end of channel `id`: `on_close` then `on_disconnect`, with no `on_error`.
    fn expect_close(&self, id: ChannelId, reason: &str) {
        match self.next("on_close") {
            Ev::ChannelClose(i, r) if i == id && r == reason => {}
            other => panic!("expected on_close({reason}) for {id:?}, got {other:?}"),
        }
        match self.next("on_disconnect") {
            Ev::ServerDisconnect(i, r) if i == id && r == reason => {}
            other => panic!("expected on_disconnect({reason}) for {id:?}, got {other:?}"),
        }
    }

    /// Nothing else happened (an `on_error` after a close, say).
    fn assert_no_more_events(&self) {
        match self.events.recv_timeout(Duration::from_millis(100)) {
            Ok(ev) => panic!("unexpected server event {}", short_ev(&ev)),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
        }
    }

    /// Stops the server gracefully and waits for its thread.
    fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop_and_join().expect("server thread");
        }
    }
}

fn short_ev(ev: &Ev) -> String {
    short(&format!("{ev:?}")).to_owned()
}

// ---------------------------------------------------------------------------------------------
// The Rust client side: a listener that records everything, events included
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Recorder {
    got: Vec<OwnedMessage>,
}

impl Listener for Recorder {
    fn network_received(&mut self, _: &mut ClientCtx<'_>, m: &Message<'_>) -> HandlerResult {
        self.got.push(m.to_owned());
        Ok(())
    }
}

fn connect(addr: SocketAddr, mode: Mode) -> Client<Recorder> {
    Client::connect_with(addr, Recorder::default(), mode, Config::default()).expect("connect")
}

/// Pumps until a message with `action` has arrived (after the first `from` recorded ones);
/// returns its index.
fn pump_until(client: &mut Client<Recorder>, from: usize, action: &str) -> usize {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = &client.listener().got;
        if let Some(i) = got[from.min(got.len())..]
            .iter()
            .position(|m| m.action() == action)
        {
            return from + i;
        }
        assert!(
            Instant::now() < deadline,
            "client: timed out waiting for {action:?}; got {:?}",
            actions(client)
        );
        client.pump_timeout(Duration::from_millis(5));
    }
}

fn actions(client: &Client<Recorder>) -> Vec<String> {
    client
        .listener()
        .got
        .iter()
        .map(|m| m.action().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

fn s(text: &str) -> Value {
    Value::from(text)
}

fn map(entries: Vec<(Value, Value)>) -> Value {
    Value::Map(entries)
}

/// Unsigned integers that need each width: fixint, u8, u16, u32, u64.
fn uints() -> Value {
    let max32 = u64::from(u32::MAX);
    let values = [
        0,
        1,
        127,
        128,
        255,
        256,
        65535,
        65536,
        max32,
        max32 + 1,
        u64::MAX,
    ];
    Value::Array(values.map(Value::from).to_vec())
}

/// Negative integers that need each width: fixint, i8, i16, i32, i64.
fn ints() -> Value {
    let min32 = i64::from(i32::MIN);
    Value::Array(
        [
            -1,
            -32,
            -33,
            -128,
            -129,
            -32768,
            -32769,
            min32,
            min32 - 1,
            i64::MIN,
        ]
        .into_iter()
        .map(Value::from)
        .collect(),
    )
}

/// A message built in Rust with every msgpack type, at every width (the encoder picks the
/// smallest form, so the values are chosen to need each one).
fn rust_values() -> Value {
    let f32s = [
        1.5f32,
        -0.0,
        0.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MIN_POSITIVE,
        f32::MAX,
        1e-45,
    ];
    let f64s = [
        1.5f64,
        -0.0,
        0.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        5e-324,
        f64::MAX,
        0.1,
    ];
    map(vec![
        (s("action"), s("echo")),
        (s("nil"), Value::Nil),
        (s("t"), Value::from(true)),
        (s("f"), Value::from(false)),
        (s("uints"), uints()),
        (s("ints"), ints()),
        (s("f32"), Value::Array(f32s.map(Value::F32).to_vec())),
        (s("f64"), Value::Array(f64s.map(Value::F64).to_vec())),
        (s("text"), s("héllo wörld ✓ 日本語 🎮")),
        (s("empty"), s("")),
        (s("str8"), Value::from("a".repeat(40))),
        (s("str16"), Value::from("é".repeat(300))),
        (s("str32"), Value::from("c".repeat(70_000))),
        (s("bin"), Value::from((0..=255u8).collect::<Vec<u8>>())),
        (s("empty_bin"), Value::from(Vec::<u8>::new())),
        (s("bin16"), Value::from(vec![7u8; 300])),
        (s("bin32"), Value::from(vec![9u8; 70_000])),
        (
            s("array"),
            Value::Array(vec![
                1.into(),
                s("two"),
                Value::Array(vec![3.0f64.into(), Value::Nil]),
                map(vec![(s("four"), 4.into())]),
            ]),
        ),
        (s("empty_array"), Value::Array(vec![])),
        (
            s("array16"),
            Value::Array((0..20u64).map(Value::from).collect()),
        ),
        (
            s("array32"),
            Value::Array((0..70_000u64).map(Value::from).collect()),
        ),
        (s("nested"), nested()),
        (s("empty_map"), map(vec![])),
        (
            s("map16"),
            map((0..20u64)
                .map(|i| (Value::from(format!("k{i}")), Value::from(i)))
                .collect()),
        ),
        (
            s("int_keys"),
            map(vec![
                (1.into(), s("one")),
                ((-2).into(), s("minus two")),
                (u64::MAX.into(), s("max")),
                (0.into(), s("zero")),
            ]),
        ),
        (
            s("mixed_keys"),
            map(vec![
                (s("s"), 1.into()),
                (2.into(), s("two")),
                (Value::Nil, s("nil key")),
                (Value::from(vec![1u8, 2]), s("bin key")),
            ]),
        ),
        (s("ext"), Value::Ext(5, vec![1, 2, 3])),
    ])
}

fn nested() -> Value {
    map(vec![(
        s("a"),
        map(vec![(
            s("b"),
            map(vec![(
                s("c"),
                Value::Array(vec![1.into(), map(vec![(s("d"), s("deep"))])]),
            )]),
        )]),
    )])
}

/// The same message as `python_values()` in `tests/python/puppet.py`.
fn python_values() -> Value {
    let floats = [
        1.5f64,
        -2.25,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        0.0,
        5e-324,
    ];
    map(vec![
        (s("action"), s("py_values")),
        (s("nil"), Value::Nil),
        (s("t"), Value::from(true)),
        (s("f"), Value::from(false)),
        (s("uints"), uints()),
        (s("ints"), ints()),
        (s("floats"), Value::Array(floats.map(Value::F64).to_vec())),
        (s("text"), s("héllo wörld ✓ 日本語 🎮")),
        (s("empty"), s("")),
        (s("bin"), Value::from((0..=255u8).collect::<Vec<u8>>())),
        (s("empty_bin"), Value::from(Vec::<u8>::new())),
        (
            s("list"),
            Value::Array(vec![
                1.into(),
                s("two"),
                Value::Array(vec![3.0f64.into(), Value::Nil]),
                map(vec![(s("four"), 4.into())]),
            ]),
        ),
        (s("empty_list"), Value::Array(vec![])),
        (s("empty_map"), map(vec![])),
        (s("nested"), nested()),
        (
            s("int_keys"),
            map(vec![
                (1.into(), s("one")),
                ((-2).into(), s("minus two")),
                (u64::MAX.into(), s("max")),
            ]),
        ),
        (s("big"), Value::from("x".repeat(MIB))),
    ])
}

/// A message built with the `msg!` macro and the crate's `Encode` impls, as applications do.
fn msg_values_payload() -> Vec<u8> {
    let mut buf = Vec::new();
    repod::Encode::encode(
        &msg! {
            "action": "echo",
            "u64_max": u64::MAX,
            "i64_min": i64::MIN,
            "u8": 200u8,
            "i16": -300i16,
            "f32": 1.25f32,
            "f32_nan": f32::NAN,
            "f64": -0.0f64,
            "text": "ünïcödé ✓",
            "bin": Bin(&[0, 1, 2, 255]),
            "array": [1u32, 2, 3],
            "tuple": (1, "a", 2.5),
            "none": None::<i32>,
            "some": Some("x"),
            "inner": msg! { "k": "v", 7: true },
        },
        &mut buf,
    );
    buf
}

/// A message written by hand with non-canonical widths (`1` as a u64, a 2-byte str32, ...):
/// Python decodes the values and re-encodes them in their smallest form.
fn raw_widths_payload() -> Vec<u8> {
    fn key(buf: &mut Vec<u8>, k: &str) {
        buf.push(0xa0 | k.len() as u8);
        buf.extend_from_slice(k.as_bytes());
    }
    let entries: Vec<(&str, Vec<u8>)> = vec![
        ("action", b"\xa4echo".to_vec()),
        ("u8_1", vec![0xcc, 1]),
        ("u16_1", vec![0xcd, 0, 1]),
        ("u32_1", vec![0xce, 0, 0, 0, 1]),
        ("u64_1", vec![0xcf, 0, 0, 0, 0, 0, 0, 0, 1]),
        ("i8_m1", vec![0xd0, 0xff]),
        ("i16_m1", vec![0xd1, 0xff, 0xff]),
        ("i32_m1", vec![0xd2, 0xff, 0xff, 0xff, 0xff]),
        (
            "i64_m1",
            vec![0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ),
        ("i8_5", vec![0xd0, 5]),
        ("i64_5", vec![0xd3, 0, 0, 0, 0, 0, 0, 0, 5]),
        ("str32_ab", vec![0xdb, 0, 0, 0, 2, b'a', b'b']),
        ("str16_empty", vec![0xda, 0, 0]),
        ("bin32_1", vec![0xc6, 0, 0, 0, 1, 42]),
        ("array32_1", vec![0xdd, 0, 0, 0, 1, 1]),
        ("map32_1", vec![0xdf, 0, 0, 0, 1, 0xa1, b'k', 2]),
        ("f32_half", vec![0xca, 0x3f, 0, 0, 0]),
    ];
    let mut buf = vec![0xdf];
    buf.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for (k, v) in entries {
        key(&mut buf, k);
        buf.extend_from_slice(&v);
    }
    buf
}

/// How Python re-encodes the fields of `raw_widths_payload()`: in their smallest form.
const CANONICAL_WIDTHS: &[(&str, &[u8])] = &[
    ("u64_1", &[0x01]),
    ("u32_1", &[0x01]),
    ("i64_m1", &[0xff]),
    ("i8_5", &[0x05]),
    ("str32_ab", &[0xa2, b'a', b'b']),
    ("bin32_1", &[0xc4, 1, 42]),
    ("array32_1", &[0x91, 0x01]),
    ("map32_1", &[0x81, 0xa1, b'k', 0x02]),
    ("f32_half", &[0xcb, 0x3f, 0xe0, 0, 0, 0, 0, 0, 0]),
];

/// A message of about 1 MiB.
fn big_payload() -> Vec<u8> {
    let blob: Vec<u8> = (0..MIB).map(|i| (i * 7 % 251) as u8).collect();
    let mut buf = Vec::new();
    repod::Encode::encode(&msg! { "action": "echo", "blob": Bin(&blob) }, &mut buf);
    buf
}

fn payload_value(payload: &[u8]) -> Value {
    rmpv::decode::read_value(&mut &payload[..]).expect("valid msgpack")
}

/// `want` with its action replaced: what an `echo` comes back as.
fn as_reply(mut want: Value, action: &str) -> Value {
    if let Value::Map(entries) = &mut want {
        for (k, v) in entries.iter_mut() {
            if k.as_str() == Some("action") {
                *v = Value::from(action);
            }
        }
    }
    want
}

fn same_float(a: f64, b: f64) -> bool {
    // NaN is NaN whatever its payload; otherwise the bits, so -0.0 differs from 0.0.
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

/// Compares values exactly, except that floats compare by bits (NaN equals NaN), and that with
/// `widened` (the value went through Python) every f32 must come back as the f64 of the same
/// value: Python decodes a float32 to a `float` (a double) and packs every `float` as a
/// float64. Without `widened`, an f32 must stay an f32.
fn check_same(path: &str, want: &Value, got: &Value, widened: bool, errors: &mut Vec<String>) {
    let ok = match (want, got) {
        (Value::F32(a), Value::F64(b)) if widened => same_float(f64::from(*a), *b),
        (Value::F32(a), Value::F32(b)) if !widened => same_float(f64::from(*a), f64::from(*b)),
        (Value::F64(a), Value::F64(b)) => same_float(*a, *b),
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                check_same(&format!("{path}[{i}]"), x, y, widened, errors);
            }
            true
        }
        (Value::Map(a), Value::Map(b)) if a.len() == b.len() => {
            for (i, ((ka, va), (kb, vb))) in a.iter().zip(b).enumerate() {
                let label = ka
                    .as_str()
                    .map_or_else(|| format!("<key {i}>"), str::to_owned);
                check_same(&format!("{path}.{label}#key"), ka, kb, widened, errors);
                check_same(&format!("{path}.{label}"), va, vb, widened, errors);
            }
            true
        }
        _ => want == got,
    };
    if !ok {
        errors.push(format!(
            "{path}: want {}, got {}",
            short(&format!("{want:?}")),
            short(&format!("{got:?}"))
        ));
    }
}

/// Asserts `got` is `want`; see `check_same`.
fn assert_same(what: &str, want: &Value, got: &Value, widened: bool) {
    let mut errors = Vec::new();
    check_same("$", want, got, widened, &mut errors);
    assert!(
        errors.is_empty(),
        "{what}: {} differences:\n{}",
        errors.len(),
        errors[..errors.len().min(20)].join("\n")
    );
}

/// The checks every echo of `raw_widths_payload()` must pass.
fn assert_raw_widths_reply(reply: &OwnedMessage) {
    let sent = payload_value(&raw_widths_payload());
    assert_same(
        "hand-encoded widths",
        &as_reply(sent, "echo_reply"),
        &reply.to_value(),
        true,
    );
    let m = reply.message();
    for (key, canonical) in CANONICAL_WIDTHS {
        assert_eq!(
            m.field(key).expect("field").raw(),
            *canonical,
            "Python re-encodes {key} in its smallest form"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Python client -> Rust server
// ---------------------------------------------------------------------------------------------

/// What Python's own client sees for one connection: `connected` twice (its local event, then
/// our server's greeting), `socketConnect` between them, `disconnected` at the end.
const PYTHON_CLIENT_EVENTS: &[&str] = &["connected", "socketConnect", "connected", "disconnected"];

#[test]
fn python_client_connects_and_closes() {
    let Some(py) = python::venv() else { return };
    let server = ProbeServer::start();
    let mut client = Proc::python(py, "client.py", &["127.0.0.1", &server.port]);

    let (id, addr) = server.expect_connect();
    assert!(addr.ip().is_loopback(), "peer address {addr}");
    server
        .handle
        .send_to(id, &msg! { "action": "echo", "k": "v" });
    let reply = server.expect_routed(id, "echo_reply");
    assert_eq!(
        reply.to_value(),
        map(vec![(s("action"), s("echo_reply")), (s("k"), s("v"))])
    );

    // The Python client closes (`self.connection.close()`): our side sees the end of stream.
    server.handle.send_to(id, &msg! { "action": "close" });
    server.expect_close(id, "peer_closed");
    client.finish_ok();
    server.assert_no_more_events();
    assert_eq!(client.reports("event"), PYTHON_CLIENT_EVENTS);
}

/// Sessions on (`Config::resume_window`): the Python client ignores the greeting's extra
/// `session` key, never asks for the session (it sends no `_ack`), and so is sent nothing new:
/// no acknowledgement reaches its handlers, and everything else is as without sessions.
#[test]
fn python_client_is_unaffected_by_sessions() {
    let Some(py) = python::venv() else { return };
    let cfg = repod::Config::default().resume_window(Some(Duration::from_secs(30)));
    let server = ProbeServer::start_with(cfg);
    let mut client = Proc::python(py, "client.py", &["127.0.0.1", &server.port]);
    // A silent client is announced after a short grace (it might have been a resume).
    let (id, _) = server.expect_connect();
    for i in 0..100u32 {
        server
            .handle
            .send_to(id, &msg! { "action": "echo", "i": i });
        let reply = server.expect_routed(id, "echo_reply");
        assert_eq!(
            reply.to_value(),
            map(vec![
                (s("action"), s("echo_reply")),
                (s("i"), Value::from(i))
            ])
        );
    }
    server.handle.send_to(id, &msg! { "action": "close" });
    server.expect_close(id, "peer_closed");
    client.finish_ok();
    server.assert_no_more_events();
    assert_eq!(client.reports("event"), PYTHON_CLIENT_EVENTS);
    assert!(
        client.reports("fallback").is_empty(),
        "the Python client got messages it does not know: {:?}",
        client.reports("fallback")
    );
}

#[test]
fn python_client_sees_rust_server_close_and_stop() {
    let Some(py) = python::venv() else { return };
    let mut server = ProbeServer::start();
    let mut closed = Proc::python(py, "client.py", &["127.0.0.1", &server.port]);
    let (closed_id, _) = server.expect_connect();
    let mut stopped = Proc::python(py, "client.py", &["127.0.0.1", &server.port]);
    let (stopped_id, _) = server.expect_connect();

    // Our server closes one channel.
    server.handle.close(closed_id);
    server.expect_close(closed_id, "closed");
    closed.finish_ok();
    assert_eq!(closed.reports("event"), PYTHON_CLIENT_EVENTS);

    // Our server stops while the other is connected.
    server.stop();
    server.expect_close(stopped_id, "server_stopped");
    stopped.finish_ok();
    assert_eq!(stopped.reports("event"), PYTHON_CLIENT_EVENTS);
    server.assert_no_more_events();
}

#[test]
fn python_client_round_trips_every_type() {
    let Some(py) = python::venv() else { return };
    let server = ProbeServer::start();
    let mut client = Proc::python(py, "client.py", &["127.0.0.1", &server.port]);
    let (id, _) = server.expect_connect();

    // Rust encodes, Python decodes and re-encodes, Rust decodes.
    let values = rust_values();
    server.handle.send_to(id, &values);
    let reply = server.expect_routed(id, "echo_reply");
    assert_same(
        "rmpv values through Python",
        &as_reply(values, "echo_reply"),
        &reply.to_value(),
        true,
    );

    let payload = msg_values_payload();
    server
        .handle
        .send_to(id, &OwnedMessage::parse(payload.clone()).unwrap());
    let reply = server.expect_routed(id, "echo_reply");
    assert_same(
        "msg! values through Python",
        &as_reply(payload_value(&payload), "echo_reply"),
        &reply.to_value(),
        true,
    );

    server
        .handle
        .send_to(id, &OwnedMessage::parse(raw_widths_payload()).unwrap());
    assert_raw_widths_reply(&server.expect_routed(id, "echo_reply"));

    let big = big_payload();
    assert!(big.len() > MIB);
    server
        .handle
        .send_to(id, &OwnedMessage::parse(big.clone()).unwrap());
    let reply = server.expect_routed(id, "echo_reply");
    assert_same(
        "1 MiB message through Python",
        &as_reply(payload_value(&big), "echo_reply"),
        &reply.to_value(),
        true,
    );

    // Python encodes, Rust decodes.
    server.handle.send_to(id, &msg! { "action": "send_values" });
    let got = server.expect_routed(id, "py_values");
    assert_same(
        "values built in Python",
        &python_values(),
        &got.to_value(),
        true,
    );

    server.handle.send_to(id, &msg! { "action": "close" });
    server.expect_close(id, "peer_closed");
    client.finish_ok();
    server.assert_no_more_events();
}

#[test]
fn python_client_bursts_arrive_complete_and_in_order() {
    let Some(py) = python::venv() else { return };
    let server = ProbeServer::start();
    let mut client = Proc::python(py, "client.py", &["127.0.0.1", &server.port]);
    let (id, _) = server.expect_connect();

    // Python -> Rust.
    server
        .handle
        .send_to(id, &msg! { "action": "send_burst", "n": BURST });
    for n in 0..BURST {
        let m = server.expect_routed(id, "seq");
        assert_eq!(m.message().u64("n").unwrap(), n, "message {n} of the burst");
    }
    let end = server.expect_routed(id, "seq_end");
    assert_eq!(end.message().u64("count").unwrap(), BURST);

    // Rust -> Python, in one reactor turn.
    let (sent_tx, sent) = mpsc::channel();
    server.handle.call(move |_, ctx| {
        let mut queued = 0;
        for n in 0..BURST {
            queued += usize::from(ctx.send_to(id, &msg! { "action": "seq", "n": n }) > 0);
        }
        ctx.send_to(id, &msg! { "action": "seq_end" });
        let _ = sent_tx.send(queued);
    });
    assert_eq!(sent.recv_timeout(WAIT).unwrap(), BURST as usize);
    let report = server.expect_routed(id, "seq_report");
    assert_eq!(report.message().u64("count").unwrap(), BURST);
    assert!(report.message().bool("in_order").unwrap());

    server.handle.send_to(id, &msg! { "action": "close" });
    server.expect_close(id, "peer_closed");
    client.finish_ok();
    server.assert_no_more_events();
}

#[test]
fn python_client_map_without_action_reaches_fallback() {
    let Some(py) = python::venv() else { return };
    let server = ProbeServer::start();
    let mut client = Proc::python(py, "client.py", &["127.0.0.1", &server.port]);
    let (id, _) = server.expect_connect();

    server
        .handle
        .send_to(id, &msg! { "action": "send_no_action" });
    match server.next("the map without an action") {
        Ev::Fallback(i, m) if i == id => {
            assert_eq!(m.action(), "");
            assert!(!m.message().has_action());
            assert_eq!(
                m.to_value(),
                map(vec![(s("text"), s("no action here")), (s("n"), 1.into())])
            );
        }
        other => panic!("expected network_received with action \"\", got {other:?}"),
    }
    server.expect_routed(id, "after_no_action");

    server.handle.send_to(id, &msg! { "action": "close" });
    server.expect_close(id, "peer_closed");
    client.finish_ok();
    server.assert_no_more_events();
}

/// Python repod routes any action value (`Network_5`, ...); ours requires a string: the frame is
/// dropped and reported to `on_error`, and the connection goes on.
#[test]
fn python_client_non_string_actions_are_reported_and_dropped() {
    let Some(py) = python::venv() else { return };
    let server = ProbeServer::start();
    let mut client = Proc::python(py, "client.py", &["127.0.0.1", &server.port]);
    let (id, _) = server.expect_connect();

    server
        .handle
        .send_to(id, &msg! { "action": "send_odd_actions" });
    for value in ["5", "b'chat'", "None"] {
        match server.next("on_error") {
            Ev::ChannelError(i, e) if i == id => {
                assert_eq!(e, "\"action\" is not a string", "action {value}");
            }
            other => panic!("expected on_error for action {value}, got {other:?}"),
        }
    }
    server.expect_routed(id, "after_odd_actions");

    server.handle.send_to(id, &msg! { "action": "close" });
    server.expect_close(id, "peer_closed");
    client.finish_ok();
    server.assert_no_more_events();
}

/// Python repod has no frame size limit; ours (`Config::max_frame_len`, 8 MiB by default)
/// closes a connection whose peer announces a larger frame.
#[test]
fn python_client_over_the_frame_limit_is_disconnected() {
    let Some(py) = python::venv() else { return };
    let server = ProbeServer::start();
    let mut client = Proc::python(py, "client.py", &["127.0.0.1", &server.port]);
    let (id, _) = server.expect_connect();

    let n = 9 * MIB;
    server
        .handle
        .send_to(id, &msg! { "action": "send_big", "n": n });
    let error = match server.next("on_error") {
        Ev::ChannelError(i, e) if i == id => e,
        other => panic!("expected on_error, got {other:?}"),
    };
    assert!(
        error.starts_with("frame of ") && error.ends_with(" exceeds the maximum of 8388608"),
        "{error}"
    );
    server.expect_close(id, &format!("error: {error}"));
    client.finish_ok();
    assert_eq!(client.reports("event"), PYTHON_CLIENT_EVENTS);
    server.assert_no_more_events();
}

#[test]
fn send_to_all_reaches_python_and_rust_clients() {
    let Some(py) = python::venv() else { return };
    let mut server = ProbeServer::start();
    let addr: SocketAddr = format!("127.0.0.1:{}", server.port).parse().unwrap();
    let mut pys = [
        Proc::python(py, "client.py", &["127.0.0.1", &server.port]),
        Proc::python(py, "client.py", &["127.0.0.1", &server.port]),
    ];
    let mut rusts = [
        connect(addr, Mode::Stepped),
        connect(addr, Mode::Background),
    ];
    for c in &mut rusts {
        pump_until(c, 0, "connected");
    }
    let mut connected = 0;
    while connected < 4 {
        match server.next("four connections") {
            Ev::ServerConnect(..) => connected += 1,
            Ev::ChannelConnect(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    for p in &mut pys {
        // The greeting has arrived, so the broadcast will come after it.
        p.expect_by("the greeting", |l| l == "event connected");
        p.expect("event connected");
    }

    // From another thread, through the handle; then from the reactor's thread, through a context.
    let texts = ["héllo à tous ✓ (handle)", "héllo à tous ✓ (context)"];
    assert!(
        server
            .handle
            .send_to_all(&msg! { "action": "broadcast", "text": texts[0] })
            > 0
    );
    let (count_tx, count) = mpsc::channel();
    let text = texts[1];
    server.handle.call(move |_, ctx| {
        let n = ctx.send_to_all(&msg! { "action": "broadcast", "text": text });
        let _ = count_tx.send(n);
    });
    assert_eq!(
        count.recv_timeout(WAIT).unwrap(),
        4,
        "queued for 4 channels"
    );

    for p in &mut pys {
        for text in texts {
            p.expect(&format!("broadcast {text}"));
        }
    }
    for c in &mut rusts {
        let first = pump_until(c, 0, "broadcast");
        let second = pump_until(c, first + 1, "broadcast");
        let got: Vec<&str> = [first, second]
            .iter()
            .map(|&i| c.listener().got[i].message().str("text").unwrap())
            .collect();
        assert_eq!(got, texts);
    }

    server.stop();
    for p in &mut pys {
        p.finish_ok();
        assert_eq!(p.reports("event"), PYTHON_CLIENT_EVENTS);
        assert_eq!(p.reports("broadcast").len(), 2);
    }
    for c in &mut rusts {
        pump_until(c, 0, "disconnected");
        let all = actions(c);
        assert_eq!(
            all,
            [
                "socketConnect",
                "connected",
                "broadcast",
                "broadcast",
                "disconnected"
            ]
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Rust client -> Python server
// ---------------------------------------------------------------------------------------------

fn start_python_test_server(py: &Path) -> (Proc, SocketAddr) {
    start_python_server(py, "server.py", "ready")
}

/// The Python server's hooks for a new connection.
fn expect_python_connect(server: &mut Proc) {
    server.expect("channel_on_connect 127.0.0.1");
    server.expect("server_on_connect 127.0.0.1");
}

#[test]
fn rust_client_connects_and_closes() {
    let Some(py) = python::venv() else { return };
    for mode in [Mode::Stepped, Mode::Background] {
        let (mut server, addr) = start_python_test_server(py);
        let mut client = connect(addr, mode);
        // One `connected`: the Python server's greeting. `socketConnect` is ours, before it.
        pump_until(&mut client, 0, "connected");
        assert_eq!(actions(&client), ["socketConnect", "connected"], "{mode:?}");
        expect_python_connect(&mut server);

        assert!(client.send(&msg! { "action": "echo", "k": "v" }) > 0);
        let i = pump_until(&mut client, 0, "echo_reply");
        assert_eq!(
            client.listener().got[i].to_value(),
            map(vec![(s("action"), s("echo_reply")), (s("k"), s("v"))])
        );

        client.close();
        let i = pump_until(&mut client, 0, "disconnected");
        let reason = client.listener().got[i]
            .message()
            .str("reason")
            .unwrap()
            .to_owned();
        assert_eq!(reason, "closed locally", "{mode:?}");
        assert_eq!(
            actions(&client),
            ["socketConnect", "connected", "echo_reply", "disconnected"],
            "{mode:?}"
        );
        assert_eq!(
            client.send(&msg! { "action": "late" }),
            0,
            "send after close"
        );

        server.expect("channel_on_close");
        server.expect("server_on_disconnect");
        server.close_stdin();
        server.finish();
        assert_eq!(
            server.seen,
            [
                "ready",
                "channel_on_connect 127.0.0.1",
                "server_on_connect 127.0.0.1",
                "echo",
                "channel_on_close",
                "server_on_disconnect",
            ],
            "the Python server's hooks ({mode:?})"
        );
    }
}

#[test]
fn rust_client_sees_python_server_stop() {
    let Some(py) = python::venv() else { return };
    for mode in [Mode::Stepped, Mode::Background] {
        let (mut server, addr) = start_python_test_server(py);
        let mut client = connect(addr, mode);
        pump_until(&mut client, 0, "connected");
        expect_python_connect(&mut server);

        // The Python server stops as on Ctrl-C: `launch()` catches the interrupt and stops,
        // closing every channel.
        client.send(&msg! { "action": "shutdown" });
        let i = pump_until(&mut client, 0, "disconnected");
        let reason = client.listener().got[i]
            .message()
            .str("reason")
            .unwrap()
            .to_owned();
        assert_eq!(reason, "closed by peer", "{mode:?}");
        assert_eq!(
            actions(&client),
            ["socketConnect", "connected", "disconnected"],
            "{mode:?}"
        );
        server.expect("stopped");
        server.finish_ok();
        assert_eq!(
            server.seen,
            [
                "ready",
                "channel_on_connect 127.0.0.1",
                "server_on_connect 127.0.0.1",
                "channel_on_close",
                "server_on_disconnect",
                "stopped",
            ],
            "the Python server's hooks ({mode:?})"
        );
    }
}

#[test]
fn rust_client_round_trips_every_type() {
    let Some(py) = python::venv() else { return };
    for mode in [Mode::Stepped, Mode::Background] {
        let (_server, addr) = start_python_test_server(py);
        let mut client = connect(addr, mode);
        let mut from = 0;
        let mut echo = |client: &mut Client<Recorder>, payload: Vec<u8>| {
            assert!(client.send(&OwnedMessage::parse(payload).unwrap()) > 0);
            let i = pump_until(client, from, "echo_reply");
            from = i + 1;
            client.listener().got[i].clone()
        };

        let values = rust_values();
        let mut payload = Vec::new();
        rmpv::encode::write_value(&mut payload, &values).unwrap();
        let reply = echo(&mut client, payload);
        assert_same(
            "rmpv values through Python",
            &as_reply(values, "echo_reply"),
            &reply.to_value(),
            true,
        );

        let payload = msg_values_payload();
        let reply = echo(&mut client, payload.clone());
        assert_same(
            "msg! values through Python",
            &as_reply(payload_value(&payload), "echo_reply"),
            &reply.to_value(),
            true,
        );

        assert_raw_widths_reply(&echo(&mut client, raw_widths_payload()));

        let big = big_payload();
        let reply = echo(&mut client, big.clone());
        assert_same(
            "1 MiB message through Python",
            &as_reply(payload_value(&big), "echo_reply"),
            &reply.to_value(),
            true,
        );

        client.send(&msg! { "action": "send_values" });
        let i = pump_until(&mut client, 0, "py_values");
        assert_same(
            "values built in Python",
            &python_values(),
            &client.listener().got[i].to_value(),
            true,
        );
    }
}

#[test]
fn rust_client_bursts_arrive_complete_and_in_order() {
    let Some(py) = python::venv() else { return };
    for mode in [Mode::Stepped, Mode::Background] {
        let (mut server, addr) = start_python_test_server(py);
        let mut client = connect(addr, mode);

        // Rust -> Python: sent at once, before the connection is even up.
        for n in 0..BURST {
            assert!(
                client.send(&msg! { "action": "seq", "n": n }) > 0,
                "{mode:?}"
            );
        }
        client.send(&msg! { "action": "seq_end" });
        let i = pump_until(&mut client, 0, "seq_report");
        let report = client.listener().got[i].message();
        assert_eq!(report.u64("count").unwrap(), BURST, "{mode:?}");
        assert!(report.bool("in_order").unwrap(), "{mode:?}");
        server.expect(&format!("seq_report {BURST} True"));

        // Python -> Rust.
        client.send(&msg! { "action": "send_burst", "n": BURST });
        let end = pump_until(&mut client, i + 1, "seq_end");
        let got = &client.listener().got[i + 1..end];
        assert_eq!(got.len() as u64, BURST, "{mode:?}");
        for (n, m) in got.iter().enumerate() {
            assert_eq!(m.action(), "seq");
            assert_eq!(m.message().u64("n").unwrap(), n as u64, "{mode:?}");
        }
    }
}

/// Our client has the same frame size limit as our server: a Python server that sends more is
/// disconnected, with the reason.
#[test]
fn rust_client_disconnects_python_server_over_the_frame_limit() {
    let Some(py) = python::venv() else { return };
    for mode in [Mode::Stepped, Mode::Background] {
        let (_server, addr) = start_python_test_server(py);
        let mut client = connect(addr, mode);
        client.send(&msg! { "action": "send_big", "n": 9 * MIB });
        let i = pump_until(&mut client, 0, "disconnected");
        let reason = client.listener().got[i]
            .message()
            .str("reason")
            .unwrap()
            .to_owned();
        assert!(
            reason.starts_with("frame of ") && reason.ends_with(" exceeds the maximum of 8388608"),
            "{mode:?}: {reason}"
        );
        assert_eq!(
            actions(&client),
            ["socketConnect", "connected", "disconnected"],
            "{mode:?}"
        );
    }
}

/// Python repod 0.1.2 drops a map with no `"action"` without calling `network_received`
/// (ours calls it with action `""`, as the seeds document): shown here so the difference is
/// known, and so we notice if a new Python release changes it.
#[test]
fn python_server_drops_map_without_action() {
    let Some(py) = python::venv() else { return };
    let (mut server, addr) = start_python_test_server(py);
    let mut client = connect(addr, Mode::Stepped);
    client.send(&msg! { "text": "no action here" });
    client.send(&msg! { "action": "echo" });
    pump_until(&mut client, 0, "echo_reply");
    server.expect("echo");
    let before: Vec<&String> = server.seen[..server.cursor].iter().collect();
    assert!(
        !before.iter().any(|l| l.starts_with("fallback")),
        "Python called network_received for a map without an action: {before:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The seeds' chat: seed 000's client (Python) and ours, through our server and Python's
// ---------------------------------------------------------------------------------------------

/// Lines a chat client printed, without the prompts (Python's `input()` prompt has no newline,
/// so it may share a line with the next print).
fn chat_transcript(client: &Proc) -> Vec<String> {
    const PROMPTS: [&str; 4] = [
        "Enter your nickname: ",
        "Enter your nickname:",
        "Type your messages (Ctrl+C to quit):",
        "Type your messages (Ctrl-D to quit):",
    ];
    client
        .seen
        .iter()
        .map(|l| PROMPTS.iter().fold(l.clone(), |l, p| l.replace(p, "")))
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty() && l != "Chat client started")
        .collect()
}

/// The chat between seed 000's Python client and two of ours: `chat_client`, or with `typed`
/// the client of `typed_chat` (the same chat with typed messages).
fn chat_conversation(py: &Path, port: u16, typed: bool) {
    let port = port.to_string();
    let args = ["127.0.0.1", port.as_str()];
    let rust_client = || match typed {
        true => Proc::example("typed_chat", &["client", args[0], args[1]]),
        false => Proc::example("chat_client", &args),
    };

    // alice: seed 000's Python client. Its `send` drops messages until the connection is up,
    // so the nickname is typed once it printed `Connected to server!`.
    let mut alice = Proc::python(py, "chat_client.py", &args);
    alice.expect_by("Connected to server!", |l| {
        l.ends_with("Connected to server!")
    });
    alice.write_line("alice");
    alice.expect("SYSTEM: alice joined");
    alice.expect("Players: alice");

    // bob: our client. The nickname is typed at once: it is sent when the connection is up.
    let mut bob = rust_client();
    bob.write_line("bob");
    bob.expect("Players: alice, bob");
    alice.expect("Players: alice, bob");

    alice.write_line("hello from python ✓");
    alice.expect("alice: hello from python ✓");
    bob.expect("alice: hello from python ✓");
    bob.write_line("  hi from rust  ");
    bob.expect("bob: hi from rust");
    alice.expect("bob: hi from rust");
    bob.write_line("   ");
    bob.expect("Error: Invalid message");
    bob.write_line(&"x".repeat(501));
    bob.expect_by("the second error", |l| l == "Error: Invalid message");

    // carol: our client with a nickname that is too long; she chats as Anonymous.
    let mut carol = rust_client();
    carol.write_line("a_nickname_longer_than_20");
    carol.expect("Error: Invalid nickname");
    carol.write_line("still here");
    for c in [&mut alice, &mut bob, &mut carol] {
        c.expect("Anonymous: still here");
    }

    // The end of input: our client closes cleanly and exits.
    carol.close_stdin();
    carol.finish_ok();
    bob.close_stdin();
    bob.finish_ok();
    alice.expect("SYSTEM: bob left");
    alice.expect("Players: alice");
    alice.close_stdin();
    alice.finish_ok();

    assert_eq!(
        chat_transcript(&alice),
        [
            "Connected to server!",
            "Connected to server!",
            "SYSTEM: alice joined",
            "Players: alice",
            "SYSTEM: bob joined",
            "Players: alice, bob",
            "alice: hello from python ✓",
            "bob: hi from rust",
            "Anonymous: still here",
            "SYSTEM: bob left",
            "Players: alice",
        ],
        "alice (Python client)\n{}",
        alice.context()
    );
    assert_eq!(
        chat_transcript(&bob),
        [
            "Connected to server!",
            "SYSTEM: bob joined",
            "Players: alice, bob",
            "alice: hello from python ✓",
            "bob: hi from rust",
            "Error: Invalid message",
            "Error: Invalid message",
            "Anonymous: still here",
            "Disconnected from server",
        ],
        "bob (Rust client)\n{}",
        bob.context()
    );
    assert_eq!(
        chat_transcript(&carol),
        [
            "Connected to server!",
            "Error: Invalid nickname",
            "Anonymous: still here",
            "Disconnected from server",
        ],
        "carol (Rust client)\n{}",
        carol.context()
    );
}

#[test]
fn chat_through_rust_chat_server() {
    let Some(py) = python::venv() else { return };
    let server = Proc::example("chat_server", &["127.0.0.1", "0"]);
    chat_through(py, server, false);
}

/// The typed twin of the chat (`examples/typed_chat.rs`), server and clients, with seed 000's
/// Python client in the room: the same transcript, so the same bytes.
#[cfg(feature = "serde")]
#[test]
fn chat_through_rust_typed_chat_server() {
    let Some(py) = python::venv() else { return };
    let server = Proc::example("typed_chat", &["server", "127.0.0.1", "0"]);
    chat_through(py, server, true);
}

/// The conversation through a Rust chat server that prints `listening on HOST:PORT`.
fn chat_through(py: &Path, mut server: Proc, typed: bool) {
    let line = server.expect_by("listening on", |l| l.starts_with("listening on "));
    let port: u16 = line
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    chat_conversation(py, port, typed);
}

#[test]
fn chat_through_python_chat_server() {
    let Some(py) = python::venv() else { return };
    let (_server, addr) = start_python_server(py, "chat_server.py", "listening on ");
    chat_conversation(py, addr.port(), false);
}

/// The typed chat client against the Python chat server.
#[cfg(feature = "serde")]
#[test]
fn typed_chat_clients_through_python_chat_server() {
    let Some(py) = python::venv() else { return };
    let (_server, addr) = start_python_server(py, "chat_server.py", "listening on ");
    chat_conversation(py, addr.port(), true);
}

// ---------------------------------------------------------------------------------------------
// Typed messages (feature `serde`): structs and enums (plain and `tag = "action"`) through
// Python, both ways
// ---------------------------------------------------------------------------------------------

#[cfg(feature = "serde")]
mod typed {
    use super::*;
    use repod::{ClientRoutes, Typed};
    use serde::{Deserialize, Serialize};

    /// Python: `puppet.typed_values(action)`; keep the two in step (keys, order, values).
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct TypedValues<'a> {
        action: &'a str,
        text: &'a str,
        #[serde(with = "serde_bytes")]
        raw: &'a [u8],
        n: u64,
        hp: i32,
        pos: (f64, f64),
        tags: Vec<&'a str>,
        note: Option<&'a str>,
    }

    fn typed_values(action: &str) -> TypedValues<'_> {
        TypedValues {
            action,
            text: "héllo ✓",
            raw: b"\x00\x01\xff",
            n: u64::MAX,
            hp: -3,
            pos: (1.5, -0.25),
            tags: vec!["red", "blue"],
            note: None,
        }
    }

    /// What Rust sends Python, as one enum (plain: repod writes the variant as the action).
    #[derive(Serialize)]
    #[serde(rename_all = "snake_case")]
    enum ToPython<'a> {
        CheckMove {
            x: f64,
            y: f64,
            who: &'a str,
            #[serde(with = "serde_bytes")]
            raw: &'a [u8],
        },
        CheckPing,
    }

    /// The same through serde's internal tagging: the same bytes.
    #[derive(Serialize)]
    #[serde(tag = "action", rename_all = "snake_case")]
    enum TaggedToPython {
        CheckPing,
    }

    /// What Python sends Rust, routed with `on_enum` (plain: the variant is the action).
    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "snake_case")]
    enum FromPython {
        Move {
            x: f64,
            y: f64,
            who: String,
            #[serde(with = "serde_bytes")]
            raw: Vec<u8>,
        },
        Ping,
    }

    #[derive(Deserialize)]
    struct Verdict {
        what: String,
        ok: bool,
    }

    /// Sends Python the typed messages to check, then asks for its own.
    fn send_all(mut send: impl FnMut(&dyn repod::Encode)) {
        send(&Typed(typed_values("check_typed")));
        send(&Typed(ToPython::CheckMove {
            x: 1.5,
            y: -2.0,
            who: "rust",
            raw: b"\x07",
        }));
        send(&Typed(ToPython::CheckPing));
        send(&Typed(TaggedToPython::CheckPing));
        send(&msg! { "action": "send_typed" });
    }

    /// What both Rust sides must see, in order.
    const EXPECTED: &[&str] = &[
        "verdict struct true",
        "verdict move true",
        "verdict ping true",
        "verdict ping true",
        "typed_values ok",
        "move python 1.5 -2 [8]",
        "ping",
        "error typed field Some(\"x\")",
        "ping",
    ];

    /// The typed handlers, shared by the Rust server's channel and the Rust client.
    fn on_values(m: &Message<'_>) -> Result<String, Error> {
        let v: TypedValues = m.decode()?; // borrowed from the frame
        assert_eq!(v, typed_values("typed_values"));
        Ok("typed_values ok".into())
    }

    fn on_enum(m: FromPython) -> String {
        match m {
            FromPython::Move { x, y, who, raw } => format!("move {who} {x} {y} {raw:?}"),
            FromPython::Ping => "ping".into(),
        }
    }

    fn on_verdict(v: Verdict) -> String {
        format!("verdict {} {}", v.what, v.ok)
    }

    fn on_error(e: &Error) -> String {
        match e {
            Error::Decode { action, field, .. } if &**action == "move" => {
                format!("error typed field {:?}", field.as_deref())
            }
            other => format!("error other {other}"),
        }
    }

    // The Rust server.

    struct TypedProbe {
        events: Sender<String>,
    }

    #[derive(Default)]
    struct TypedChannel;

    impl ChannelHandler for TypedChannel {
        type Server = TypedProbe;

        fn routes(r: &mut Routes<Self>) {
            r.on("typed_values", |_, ctx, m| {
                let ev = on_values(m)?;
                let _ = ctx.server().events.send(ev);
                Ok(())
            });
            r.on_enum(|_, ctx, m: FromPython| {
                let _ = ctx.server().events.send(on_enum(m));
                Ok(())
            });
            r.on_msg("typed_verdict", |_, ctx, v: Verdict| {
                let _ = ctx.server().events.send(on_verdict(v));
                Ok(())
            });
        }

        fn on_error(&mut self, ctx: &mut ChannelCtx<'_, Self>, error: &Error) {
            let _ = ctx.server().events.send(on_error(error));
        }
    }

    impl ServerHandler<TypedChannel> for TypedProbe {
        fn on_connect(
            &mut self,
            _: &mut ServerCtx<'_, TypedChannel>,
            id: ChannelId,
            _: SocketAddr,
        ) {
            let _ = self.events.send(format!("connect {}", id.slot()));
        }
    }

    #[test]
    fn python_client_round_trips_typed_messages() {
        let Some(py) = python::venv() else { return };
        let (tx, events) = mpsc::channel();
        let server = Server::<TypedChannel>::bind("127.0.0.1:0", TypedProbe { events: tx })
            .expect("bind")
            .start_background()
            .expect("start_background");
        let port = server.local_addr().port().to_string();
        let mut client = Proc::python(py, "client.py", &["127.0.0.1", &port]);
        let next = || events.recv_timeout(WAIT).expect("a typed event");
        assert!(next().starts_with("connect"));
        // One client: send_to_all reaches it (and encodes each typed message once).
        let handle = server.handle();
        send_all(|m| {
            assert!(handle.send_to_all(&m) > 0);
        });
        let got: Vec<String> = EXPECTED.iter().map(|_| next()).collect();
        assert_eq!(got, EXPECTED, "{}", client.context());
        // The misfit `move` did not close the connection: the last `ping` came after it.
        handle.send_to_all(&msg! { "action": "close" });
        client.finish_ok();
        server.stop_and_join().expect("server thread");
    }

    // The Rust client.

    #[derive(Default)]
    struct TypedRecorder {
        got: Vec<String>,
    }

    impl Listener for TypedRecorder {
        fn routes(r: &mut ClientRoutes<Self>) {
            r.on("typed_values", |me, _, m| {
                me.got.push(on_values(m)?);
                Ok(())
            });
            r.on_enum(|me, _, m: FromPython| {
                me.got.push(on_enum(m));
                Ok(())
            });
            r.on_msg("typed_verdict", |me, _, v: Verdict| {
                me.got.push(on_verdict(v));
                Ok(())
            });
        }

        fn on_error(&mut self, _: &mut ClientCtx<'_>, error: &Error) {
            self.got.push(on_error(error));
        }
    }

    #[test]
    fn rust_client_round_trips_typed_messages() {
        let Some(py) = python::venv() else { return };
        for mode in [Mode::Stepped, Mode::Background] {
            let (server, addr) = start_python_test_server(py);
            let mut client =
                Client::connect_with(addr, TypedRecorder::default(), mode, Config::default())
                    .expect("connect");
            send_all(|m| {
                assert!(client.send(&m) > 0);
            });
            let deadline = Instant::now() + WAIT;
            while client.listener().got.len() < EXPECTED.len() && Instant::now() < deadline {
                client.pump_timeout(Duration::from_millis(5));
            }
            assert_eq!(
                client.listener().got,
                EXPECTED,
                "{mode:?}\n{}",
                server.context()
            );
            assert!(
                client.is_connected(),
                "{mode:?}: the misfit closed the connection"
            );
        }
    }
}
