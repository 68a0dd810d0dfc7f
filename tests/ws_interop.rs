//! repod over WebSocket against an independent client: `echo_server --ws` (the example) driven
//! by the Python `websockets` package (`tests/python/ws_client.py`, with `msgpack`), next to
//! plain TCP peers, so that broadcasts cross transports both ways.
//!
//! The Python client runs in the venv that `support/python.rs` creates under the target
//! directory (pinned `websockets` and `msgpack`). Without a Python >= 3.12 the tests print a
//! loud notice and pass, skipped; with `CI` set they fail instead.
//!
//! The TCP peers here are raw sockets (a 4-byte big-endian length, then the msgpack map), with
//! `rmpv` to build and read maps: nothing of repod's own client is involved, so both sides of
//! the server are checked by code that does not share its implementation.
//!
//! Every child process is killed when its guard drops (a failing test included), and the
//! Python client also exits when its stdin closes. Every wait is bounded.
//!
//! `REPOD_EXAMPLE_ECHO_SERVER=/path/to/program` tests another server instead of the example
//! (one with the same arguments and output), to check the harness or compare.

#[path = "support/examples.rs"]
mod examples;
#[path = "support/proc.rs"]
mod proc;
#[path = "support/python.rs"]
mod python;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use proc::{port_of, short, Proc, WAIT};
use rmpv::Value;

/// Bound on the whole every-type exchange (about 5 MB each way, checked in Python).
const ECHO_ALL_WAIT: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

/// `echo_server 127.0.0.1 0 --ws 0`, once both its ports are bound.
struct EchoServer {
    proc: Proc,
    tcp_port: u16,
    ws_port: u16,
}

impl EchoServer {
    fn start() -> EchoServer {
        let mut cmd = Command::new(examples::path("echo_server"));
        cmd.args(["127.0.0.1", "0", "--ws", "0"]);
        let mut proc = Proc::spawn("echo_server", cmd);
        let tcp_port = port_of(&proc.expect_word("listening on"));
        let ws_port = port_of(&proc.expect_word("websocket on"));
        EchoServer {
            proc,
            tcp_port,
            ws_port,
        }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.ws_port)
    }

    /// A Python `websockets` client, connected and greeted; returns it with its local port.
    fn ws_client(&self, py: &Path) -> (Proc, u16) {
        let mut client = Proc::python(py, "ws_client.py", &[&self.url()]);
        let connected = client.expect_word("connected");
        let port = connected
            .split(' ')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in `connected {connected}`"));
        (client, port)
    }

    fn tcp_peer(&self) -> TcpPeer {
        TcpPeer::connect(self.tcp_port)
    }

    /// Panics with the server's output if it is no longer running.
    fn assert_running(&mut self) {
        assert!(
            self.proc.is_running(),
            "echo_server exited\n{}",
            self.proc.context()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// A raw TCP peer: 4-byte big-endian length, then a msgpack map
// ---------------------------------------------------------------------------------------------

struct TcpPeer {
    stream: TcpStream,
}

impl TcpPeer {
    /// Connects and reads the greeting, which must be `{"action": "connected"}`.
    fn connect(port: u16) -> TcpPeer {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting over TCP");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        let mut peer = TcpPeer { stream };
        let greeting = peer.recv();
        assert_eq!(
            decode(&greeting),
            map(vec![(s("action"), s("connected"))]),
            "the TCP greeting"
        );
        peer
    }

    fn send(&mut self, payload: &[u8]) {
        let len = u32::try_from(payload.len()).expect("small frame");
        let mut frame = len.to_be_bytes().to_vec();
        frame.extend_from_slice(payload);
        self.stream.write_all(&frame).expect("sending over TCP");
    }

    /// The next frame's payload.
    fn recv(&mut self) -> Vec<u8> {
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .expect("reading a length prefix over TCP");
        let mut payload = vec![0u8; u32::from_be_bytes(len) as usize];
        self.stream
            .read_exact(&mut payload)
            .expect("reading a frame over TCP");
        payload
    }
}

impl Drop for TcpPeer {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
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

fn encode(v: &Value) -> Vec<u8> {
    let mut buf = Vec::new();
    rmpv::encode::write_value(&mut buf, v).expect("encoding to a Vec");
    buf
}

fn decode(payload: &[u8]) -> Value {
    let mut rest = payload;
    let v = rmpv::decode::read_value(&mut rest).unwrap_or_else(|e| {
        panic!(
            "not msgpack ({e}): {:02x?}",
            &payload[..payload.len().min(64)]
        )
    });
    assert!(rest.is_empty(), "{} bytes after the map", rest.len());
    v
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(hex: &str) -> Vec<u8> {
    assert!(hex.len() % 2 == 0, "odd hex length: {}", short(hex));
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// `m` with every `"action"` entry replaced by one `"action": action` (order aside).
fn fields_except_action(m: &Value) -> Vec<(Value, Value)> {
    let Value::Map(entries) = m else {
        panic!("not a map: {m}")
    };
    entries
        .iter()
        .filter(|(k, _)| k.as_str() != Some("action"))
        .cloned()
        .collect()
}

/// Asserts that `got` is `sent` with its action replaced by `action`: the same fields, in any
/// order (values have no NaN here, so `==` is exact).
fn assert_reply(what: &str, sent: &Value, got: &[u8], action: &str) {
    let got_value = decode(got);
    let got_action = got_value.as_map().and_then(|m| {
        m.iter()
            .find(|(k, _)| k.as_str() == Some("action"))
            .map(|(_, v)| v.clone())
    });
    assert_eq!(
        got_action,
        Some(s(action)),
        "{what}: the action of {got_value}"
    );
    let want = fields_except_action(sent);
    let have = fields_except_action(&got_value);
    let missing: Vec<_> = want.iter().filter(|e| !have.contains(e)).collect();
    let extra: Vec<_> = have.iter().filter(|e| !want.contains(e)).collect();
    assert!(
        missing.is_empty() && extra.is_empty() && want.len() == have.len(),
        "{what}: fields differ\n  missing: {missing:?}\n  unexpected: {extra:?}"
    );
}

/// A broadcast carrying a mix of types (no NaN, so maps compare with `==`).
fn broadcast_map(from: &str, n: u64) -> Value {
    map(vec![
        (s("action"), s("broadcast")),
        (s("from"), s(from)),
        (s("n"), Value::from(n)),
        (s("text"), s("héllo ✓ 日本語 🎮")),
        (s("neg"), Value::from(i64::MIN)),
        (s("big"), Value::from(u64::MAX)),
        (s("f64"), Value::F64(-0.5)),
        (s("f32"), Value::F32(1.25)),
        (s("nil"), Value::Nil),
        (s("flag"), Value::from(true)),
        (s("bin"), Value::from((0..=255u8).collect::<Vec<u8>>())),
        (
            s("list"),
            Value::Array(vec![1.into(), s("two"), Value::Array(vec![])]),
        ),
        (
            s("nested"),
            map(vec![
                (Value::from(7), s("int key")),
                (Value::Nil, Value::from(-1)),
                (Value::Binary(b"k".to_vec()), map(vec![])),
            ]),
        ),
        (s("ext"), Value::Ext(42, b"ext data".to_vec())),
        (s("pad"), s(&"p".repeat(70_000))),
    ])
}

/// The names of `echo_cases()` in `tests/python/ws_client.py`, in order: keep the two in step.
const ECHO_CASES: &[&str] = &[
    "nil_and_bools",
    "int_edges",
    "int_fields",
    "floats",
    "float32",
    "wide_encodings",
    "strings",
    "long_string",
    "bytes",
    "bytes_2mib",
    "arrays",
    "maps",
    "ext",
    "top_level_odd_keys",
    "action_not_first",
    "action_only",
    "everything",
];

/// What the Python client received next (`recv`), as bytes.
fn ws_recv(client: &mut Proc) -> Vec<u8> {
    client.write_line("recv");
    from_hex(&client.expect_word("recv"))
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn ws_client_round_trips_every_msgpack_type() {
    let Some(py) = python::venv() else { return };
    let mut server = EchoServer::start();
    let (mut client, _) = server.ws_client(py);
    client.write_line("echo_all");
    let count = client.expect_within("echo_all_ok", ECHO_ALL_WAIT);
    let oks: Vec<&str> = client
        .seen
        .iter()
        .filter_map(|l| l.strip_prefix("echo_ok ")?.split(' ').next())
        .collect();
    assert_eq!(
        oks,
        ECHO_CASES,
        "the echo cases that passed\n{}",
        client.context()
    );
    assert_eq!(count, ECHO_CASES.len().to_string());

    client.write_line("ping");
    client.expect_word("pong");
    client.write_line("close");
    let closed = client.expect_word("closed");
    assert!(
        closed.starts_with("1000 ") || closed == "1000",
        "a normal close answered with `{closed}`\n{}",
        client.context()
    );
    server.assert_running();
}

#[test]
fn ws_client_burst_arrives_complete_and_in_order() {
    let Some(py) = python::venv() else { return };
    let mut server = EchoServer::start();
    let (mut client, _) = server.ws_client(py);
    client.write_line("burst 5000");
    client.expect_word("burst_ok");
    server.assert_running();
}

#[test]
fn ws_whoami_reports_client_address_and_server_pid() {
    let Some(py) = python::venv() else { return };
    let mut server = EchoServer::start();
    let (mut client, local_port) = server.ws_client(py);
    let whoami = encode(&map(vec![(s("action"), s("whoami"))]));
    client.write_line(&format!("send {}", to_hex(&whoami)));
    client.expect_word("sent");
    let reply = decode(&ws_recv(&mut client));
    let field = |key: &str| {
        reply
            .as_map()
            .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(key)))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {key:?} in {reply}"))
    };
    assert_eq!(field("action"), s("whoami_reply"), "{reply}");
    assert_eq!(
        field("addr"),
        s(&format!("127.0.0.1:{local_port}")),
        "whoami over WebSocket: the client's address as the server saw it ({reply})"
    );
    assert_eq!(
        field("pid").as_u64(),
        Some(u64::from(server.proc.child.id())),
        "the server's pid ({reply})"
    );

    // And over TCP, for comparison: the same reply shape, with the TCP peer's address.
    let mut tcp = server.tcp_peer();
    let tcp_local = tcp.stream.local_addr().unwrap();
    tcp.send(&whoami);
    let want = map(vec![
        (s("action"), s("whoami")),
        (s("addr"), s(&tcp_local.to_string())),
        (s("pid"), Value::from(server.proc.child.id())),
    ]);
    assert_reply("whoami over TCP", &want, &tcp.recv(), "whoami_reply");
    server.assert_running();
}

#[test]
fn broadcasts_cross_transports_both_ways() {
    let Some(py) = python::venv() else { return };
    let mut server = EchoServer::start();
    // The greeting has arrived on each connection, so the server has them all when the first
    // broadcast is sent.
    let mut tcp = server.tcp_peer();
    let (mut ws_a, _) = server.ws_client(py);
    let (mut ws_b, _) = server.ws_client(py);

    // TCP -> every client.
    let from_tcp = broadcast_map("tcp", 1);
    tcp.send(&encode(&from_tcp));
    let tcp_copy = tcp.recv();
    assert_reply(
        "TCP broadcast, to TCP",
        &from_tcp,
        &tcp_copy,
        "broadcast_reply",
    );
    for (name, ws) in [("ws_a", &mut ws_a), ("ws_b", &mut ws_b)] {
        let got = ws_recv(ws);
        assert_reply(
            &format!("TCP broadcast, to {name} over WebSocket"),
            &from_tcp,
            &got,
            "broadcast_reply",
        );
        assert!(
            got == tcp_copy,
            "TCP broadcast: {name} got other bytes than the TCP client (same values)"
        );
    }

    // WebSocket -> every client.
    let from_ws = broadcast_map("ws_a", 2);
    ws_a.write_line(&format!("send {}", to_hex(&encode(&from_ws))));
    ws_a.expect_word("sent");
    let tcp_copy = tcp.recv();
    assert_reply(
        "WebSocket broadcast, to TCP",
        &from_ws,
        &tcp_copy,
        "broadcast_reply",
    );
    for (name, ws) in [("ws_a", &mut ws_a), ("ws_b", &mut ws_b)] {
        let got = ws_recv(ws);
        assert_reply(
            &format!("WebSocket broadcast, to {name}"),
            &from_ws,
            &got,
            "broadcast_reply",
        );
        assert!(
            got == tcp_copy,
            "WebSocket broadcast: {name} got other bytes than the TCP client (same values)"
        );
    }

    // And an echo still goes to its sender only: the next message each client gets is its own.
    let echo = map(vec![(s("action"), s("echo")), (s("who"), s("tcp"))]);
    tcp.send(&encode(&echo));
    assert_reply("TCP echo", &echo, &tcp.recv(), "echo_reply");
    let echo_b = map(vec![(s("action"), s("echo")), (s("who"), s("ws_b"))]);
    ws_b.write_line(&format!("send {}", to_hex(&encode(&echo_b))));
    ws_b.expect_word("sent");
    assert_reply("WebSocket echo", &echo_b, &ws_recv(&mut ws_b), "echo_reply");
    let last = map(vec![
        (s("action"), s("broadcast")),
        (s("last"), Value::from(true)),
    ]);
    tcp.send(&encode(&last));
    assert_reply("last broadcast", &last, &tcp.recv(), "broadcast_reply");
    assert_reply(
        "last broadcast, to ws_a",
        &last,
        &ws_recv(&mut ws_a),
        "broadcast_reply",
    );
    server.assert_running();
}

#[test]
fn ws_text_message_is_refused_with_1003() {
    let Some(py) = python::venv() else { return };
    let mut server = EchoServer::start();
    let (mut client, _) = server.ws_client(py);
    client.write_line("text");
    let closed = client.expect_word("closed");
    assert!(
        closed.starts_with("1003 ") || closed == "1003",
        "a text message: expected close code 1003, got `{closed}`\n{}",
        client.context()
    );
    // The server goes on serving.
    let (mut other, _) = server.ws_client(py);
    other.write_line("burst 10");
    other.expect_word("burst_ok");
    server.assert_running();
}

#[test]
fn ws_upgrade_on_another_path_is_refused() {
    let Some(py) = python::venv() else { return };
    let mut server = EchoServer::start();
    let url = format!("ws://127.0.0.1:{}/not-here", server.ws_port);
    let mut client = Proc::python(py, "ws_client.py", &[&url, "--expect-reject"]);
    let status = client.expect_word("rejected");
    assert!(
        status.starts_with('4'),
        "an upgrade on another path: HTTP {status}\n{}",
        client.context()
    );
    client.finish_ok();
    server.assert_running();
}
