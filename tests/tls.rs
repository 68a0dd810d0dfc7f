//! repod over TLS, black box: `echo_server --tls-cert FILE --tls-key FILE` (the example) driven
//! by clients that share no code with it, over loopback only.
//!
//! - Python's `ssl` (OpenSSL) speaks repod's protocol inside TLS (`tests/python/tls_client.py`),
//!   verifying the server against a private CA made for the run (`support/tls.rs`); the Python
//!   `websockets` client speaks it over `wss://` (`tests/python/ws_client.py`, the one of
//!   `tests/ws_interop.rs`, trusting the CA through `SSL_CERT_FILE`).
//! - `openssl s_client` checks the protocol versions: TLS 1.2 and 1.3 are served, 1.0 and 1.1
//!   are refused.
//! - SIGHUP reloads the certificate: open connections carry on, new handshakes get the new one;
//!   a reload that fails (a broken PEM, a key that does not match) keeps the old one.
//! - A real HAProxy (`mode tcp`, `send-proxy-v2`) passes TLS through to
//!   `echo_server --proxy-protocol`: `whoami` reports the client's own address.
//! - Bad peers, each next to a good TLS client that keeps echoing: plaintext on the TLS ports, a
//!   silent or trickling client (cut at `--tls-handshake-ms`), 1,000 handshakes at once, a
//!   truncated record, bytes that are no record, a record that does not decrypt.
//! - SIGTERM drains over TLS: everything queued reaches the client, then a close_notify.
//! - Headless Chromium runs `web/test.html` against the `wss://` port, verifying the certificate
//!   for real (`--ignore-certificate-errors-spki-list` names our leaf's key and nothing else; a
//!   server with another key fails the page).
//!
//! Tools: `openssl` (for the certificates: every test), Python >= 3.12 (the venv of
//! `support/python.rs`), HAProxy and Chromium (as in `tests/fleet.rs` and `tests/browser.rs`).
//! Without one, the tests that need it print a loud notice and pass, skipped; with `CI` set they
//! fail.
//!
//! `REPOD_EXAMPLE_ECHO_SERVER=/path/to/program` tests another server instead of the example
//! (one with the same arguments and output).

#[path = "support/examples.rs"]
mod examples;
#[path = "support/haproxy.rs"]
mod haproxy;
#[path = "support/proc.rs"]
mod proc;
#[path = "support/python.rs"]
mod python;
#[path = "support/tls.rs"]
mod tls;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use proc::{tests_python_dir, Proc, WAIT};
use tls::{s_client, Certs, Leaf};

/// Bound for what must happen promptly (a close after bad bytes), on a loaded 2-core machine.
const PROMPT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

/// `echo_server 127.0.0.1 0 --ws 0 --tls-cert CERT --tls-key KEY ...`, once both ports are
/// bound. The certificate and key it reads are copies in a directory of its own, which
/// [`install`](Self::install) replaces.
struct TlsServer {
    proc: Proc,
    tcp: SocketAddr,
    ws: SocketAddr,
    cert: PathBuf,
    key: PathBuf,
}

impl TlsServer {
    fn start(leaf: &Leaf, extra: &[&str]) -> TlsServer {
        TlsServer::start_files(&leaf.cert, &leaf.key, extra)
    }

    fn start_files(cert: &Path, key: &Path, extra: &[&str]) -> TlsServer {
        let dir = tls::tempdir("tls-server");
        let (live_cert, live_key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::copy(cert, &live_cert).expect("copying the certificate");
        std::fs::copy(key, &live_key).expect("copying the key");
        let mut args = vec![
            "127.0.0.1",
            "0",
            "--ws",
            "0",
            "--tls-cert",
            live_cert.to_str().expect("UTF-8 path"),
            "--tls-key",
            live_key.to_str().expect("UTF-8 path"),
        ];
        args.extend_from_slice(extra);
        let mut proc = Proc::example("echo_server", &args);
        let tcp = addr_of(&proc.expect_word("listening on"));
        let ws = addr_of(&proc.expect_word("websocket on"));
        TlsServer {
            proc,
            tcp,
            ws,
            cert: live_cert,
            key: live_key,
        }
    }

    /// Replaces the certificate and key files (each by a rename: never half written).
    fn install(&self, cert: &Path, key: &Path) {
        for (from, to) in [(cert, &self.cert), (key, &self.key)] {
            let tmp = to.with_extension("new");
            std::fs::copy(from, &tmp).expect("copying");
            std::fs::rename(&tmp, to).expect("renaming");
        }
    }

    /// Sends `signal` (`HUP`, `TERM`) with `kill`.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.proc.child.id().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} failed: {status}");
    }

    /// SIGHUP, then waits for the reload's verdict; true for `tls reloaded`, false for
    /// `tls reload failed: ...`.
    fn reload(&mut self) -> bool {
        self.signal("HUP");
        let line = self.proc.expect_by_within(
            "`tls reloaded` or `tls reload failed`",
            |l| l == "tls reloaded" || l.starts_with("tls reload failed"),
            WAIT,
        );
        line == "tls reloaded"
    }

    fn assert_running(&mut self) {
        assert!(
            self.proc.is_running(),
            "echo_server exited\n{}",
            self.proc.context()
        );
    }
}

/// `HOST:PORT` as printed.
fn addr_of(text: &str) -> SocketAddr {
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("not an address: {text:?}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

/// What `tls_client.py` printed once connected and greeted.
#[derive(Debug)]
struct Connected {
    local: String,
    version: String,
    serial: String,
    cn: String,
}

/// `tls_client.py` connected to `addr` (through TLS, verifying the CA and `localhost`) and
/// greeted, with `extra` arguments (`--source IP`).
fn tls_client(py: &Path, certs: &Certs, addr: SocketAddr, extra: &[&str]) -> (Proc, Connected) {
    let port = addr.port().to_string();
    let ca = certs.ca.to_str().expect("UTF-8 path");
    let mut args = vec!["127.0.0.1", port.as_str(), "--ca", ca];
    args.extend_from_slice(extra);
    let mut client = Proc::python(py, "tls_client.py", &args);
    let line = client.expect_word("connected");
    let mut parts = line.splitn(4, ' ');
    let mut next = || parts.next().unwrap_or_default().to_owned();
    let connected = Connected {
        local: next(),
        version: next(),
        serial: next(),
        cn: next(),
    };
    (client, connected)
}

/// `echo N` on a `tls_client.py`: N echoes, each reply checked in Python.
fn echo(client: &mut Proc, n: usize) {
    client.write_line(&format!("echo {n}"));
    assert_eq!(client.expect_word("echo_ok"), n.to_string(), "echo {n}");
}

/// `ws_client.py` (of `tests/ws_interop.rs`) on `url`, trusting only the test CA
/// (`SSL_CERT_FILE` is what Python's default context loads); returns it once greeted.
fn wss_client(py: &Path, certs: &Certs, url: &str) -> Proc {
    let mut cmd = Command::new(py);
    cmd.arg("-u")
        .arg("ws_client.py")
        .arg(url)
        .current_dir(tests_python_dir())
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONUTF8", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("SSL_CERT_FILE", &certs.ca)
        .env_remove("SSL_CERT_DIR");
    let mut client = Proc::spawn("python ws_client.py (wss)", cmd);
    client.expect_word("connected");
    client
}

/// The tools every test here needs: the certificates, and for most the Python venv.
fn certs_and_python() -> Option<(&'static Certs, &'static Path)> {
    let certs = tls::certs()?;
    let py = python::venv()?;
    Some((certs, py))
}

/// Reads from `stream` until the server ends the connection, within `limit`. Returns what
/// was read and how it ended (`eof` or `reset`); panics if it is still open.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, &'static str) {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "still open after {limit:?}; received {} bytes: {:02x?}",
            got.len(),
            &got[..got.len().min(64)]
        );
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return (got, "eof"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return (got, "reset"),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("reading: {e}"),
        }
    }
}

/// A repod frame: 4-byte big-endian length, then the payload.
fn framed(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

/// `{"action": "echo", "n": 1}` in msgpack.
const ECHO_MSGPACK: &[u8] = b"\x82\xa6action\xa4echo\xa1n\x01";

// ---------------------------------------------------------------------------------------------
// Good clients
// ---------------------------------------------------------------------------------------------

#[test]
fn python_ssl_client_echoes_100_messages_over_tls() {
    let Some((certs, py)) = certs_and_python() else {
        return;
    };
    let mut server = TlsServer::start(&certs.leaf1, &[]);
    let (mut client, c) = tls_client(py, certs, server.tcp, &[]);
    assert_eq!(c.version, "TLSv1.3", "Python offers 1.3: {c:?}");
    assert_eq!(c.serial, certs.leaf1.serial, "{c:?}");
    assert_eq!(c.cn, certs.leaf1.cn, "{c:?}");
    echo(&mut client, 100);
    client.write_line("whoami");
    assert_eq!(
        client.expect_word("whoami"),
        c.local,
        "the server sees our address"
    );
    echo(&mut client, 100);
    server.assert_running();
}

#[test]
fn rsa_certificate_and_traditional_key_encodings() {
    let Some((certs, py)) = certs_and_python() else {
        return;
    };
    // PKCS#8 RSA, PKCS#1 RSA, SEC1 EC: the encodings `openssl` writes by default or on request.
    for (leaf, key) in [
        (&certs.rsa, &certs.rsa.key),
        (&certs.rsa, &certs.rsa.key_traditional),
        (&certs.leaf1, &certs.leaf1.key_traditional),
    ] {
        let mut server = TlsServer::start_files(&leaf.cert, key, &[]);
        let (mut client, c) = tls_client(py, certs, server.tcp, &[]);
        assert_eq!(c.serial, leaf.serial, "{} with {}", leaf.cn, key.display());
        echo(&mut client, 20);
        for version in ["-tls1_2", "-tls1_3"] {
            let s = s_client(certs, &server.tcp.to_string(), "localhost", &[version]);
            assert!(
                s.ok && s.verified,
                "{version} with {}\n{}",
                key.display(),
                s.output
            );
        }
        server.assert_running();
    }
}

#[test]
fn websockets_client_over_wss() {
    let Some((certs, py)) = certs_and_python() else {
        return;
    };
    let mut server = TlsServer::start(&certs.leaf1, &[]);
    let url = format!("wss://localhost:{}/", server.ws.port());
    let mut ws = wss_client(py, certs, &url);
    ws.write_line("burst 100");
    assert_eq!(ws.expect_word("burst_ok"), "100");
    // Every msgpack type and large messages (about 5 MB each way): many TLS records per frame.
    ws.write_line("echo_all");
    ws.expect_within("echo_all_ok", Duration::from_secs(180));
    ws.write_line("ping");
    ws.expect_word("pong");
    ws.write_line("close");
    assert_eq!(ws.expect_word("closed"), "1000 -", "a normal close");
    // A TLS client on the TCP port at the same time: one world.
    let (mut tcp, _) = tls_client(py, certs, server.tcp, &[]);
    echo(&mut tcp, 10);
    server.assert_running();
}

// ---------------------------------------------------------------------------------------------
// Protocol versions
// ---------------------------------------------------------------------------------------------

#[test]
fn only_tls_1_2_and_1_3_are_served() {
    let Some(certs) = tls::certs() else {
        return;
    };
    let mut server = TlsServer::start(&certs.leaf1, &[]);
    for addr in [server.tcp, server.ws] {
        let addr = addr.to_string();
        for (flag, want) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
            let s = s_client(certs, &addr, "localhost", &[flag]);
            assert!(s.ok, "{flag} refused\n{}", s.output);
            assert_eq!(s.protocol.as_deref(), Some(want), "{}", s.output);
            assert!(s.verified, "the chain did not verify\n{}", s.output);
            assert!(
                s.subject
                    .as_deref()
                    .is_some_and(|l| l.contains(certs.leaf1.cn)),
                "{}",
                s.output
            );
        }
        // OpenSSL 3 only offers TLS 1.0 and 1.1 at security level 0: without it the client
        // would refuse by itself and the server would never be asked.
        for flag in ["-tls1_1", "-tls1"] {
            let s = s_client(
                certs,
                &addr,
                "localhost",
                &[flag, "-cipher", "DEFAULT:@SECLEVEL=0"],
            );
            assert!(!s.ok, "{flag} was accepted\n{}", s.output);
            assert!(
                !s.output.contains("no protocols available"),
                "the client refused by itself: the test proves nothing\n{}",
                s.output
            );
        }
    }
    // Still serving after the refusals.
    let s = s_client(certs, &server.tcp.to_string(), "localhost", &[]);
    assert!(s.ok, "{}", s.output);
    server.assert_running();
}

// ---------------------------------------------------------------------------------------------
// Reload
// ---------------------------------------------------------------------------------------------

/// The serial of the certificate a new handshake on `addr` gets, with `tls_client.py`.
fn serial_of_new_handshake(py: &Path, certs: &Certs, addr: SocketAddr) -> String {
    let (mut c, info) = tls_client(py, certs, addr, &[]);
    echo(&mut c, 5);
    info.serial
}

/// The subject line `openssl s_client` sees on `addr` (the `wss://` port: TLS comes first).
fn subject_of_new_handshake(certs: &Certs, addr: SocketAddr) -> String {
    let s = s_client(certs, &addr.to_string(), "localhost", &[]);
    assert!(s.ok && s.verified, "{}", s.output);
    s.subject.unwrap_or_default()
}

#[test]
fn sighup_reloads_the_certificate_and_open_connections_carry_on() {
    let Some((certs, py)) = certs_and_python() else {
        return;
    };
    let mut server = TlsServer::start(&certs.leaf1, &[]);
    let (mut old, c) = tls_client(py, certs, server.tcp, &[]);
    assert_eq!(c.serial, certs.leaf1.serial);
    echo(&mut old, 10);
    let mut old_ws = wss_client(py, certs, &format!("wss://localhost:{}/", server.ws.port()));

    // The second leaf.
    server.install(&certs.leaf2.cert, &certs.leaf2.key);
    assert!(server.reload(), "{}", server.proc.context());
    echo(&mut old, 10);
    old.write_line("cert");
    assert_eq!(
        old.expect_word("cert"),
        format!("{} {}", certs.leaf1.serial, certs.leaf1.cn),
        "an open connection keeps its session"
    );
    old_ws.write_line("burst 10");
    assert_eq!(old_ws.expect_word("burst_ok"), "10");
    assert_eq!(
        serial_of_new_handshake(py, certs, server.tcp),
        certs.leaf2.serial,
        "a new handshake on the TCP port gets the new certificate"
    );
    let subject = subject_of_new_handshake(certs, server.ws);
    assert!(
        subject.contains(certs.leaf2.cn),
        "a new handshake on the wss port gets the new certificate: {subject}"
    );

    // A broken PEM: the reload fails, the second leaf stays.
    std::fs::copy(&certs.broken, &server.cert).expect("writing the broken PEM");
    assert!(
        !server.reload(),
        "a broken PEM was taken\n{}",
        server.proc.context()
    );
    assert_eq!(
        serial_of_new_handshake(py, certs, server.tcp),
        certs.leaf2.serial,
        "after a failed reload"
    );
    let subject = subject_of_new_handshake(certs, server.ws);
    assert!(
        subject.contains(certs.leaf2.cn),
        "after a failed reload: {subject}"
    );
    echo(&mut old, 10);
    old_ws.write_line("burst 10");
    assert_eq!(old_ws.expect_word("burst_ok"), "10");

    // A failed reload does not stop the next one from working.
    server.install(&certs.leaf1.cert, &certs.leaf1.key);
    assert!(server.reload(), "{}", server.proc.context());
    assert_eq!(
        serial_of_new_handshake(py, certs, server.tcp),
        certs.leaf1.serial,
        "back to the first leaf"
    );
    echo(&mut old, 10);
    server.assert_running();
}

#[test]
fn sighup_with_a_key_that_does_not_match_keeps_the_old_certificate() {
    let Some((certs, py)) = certs_and_python() else {
        return;
    };
    let mut server = TlsServer::start(&certs.leaf1, &[]);
    let (mut old, _) = tls_client(py, certs, server.tcp, &[]);
    // leaf2's certificate with leaf1's key: both parse, but the server could not sign for it.
    server.install(&certs.leaf2.cert, &certs.leaf1.key);
    let reloaded = server.reload();
    let (mut new, c) = tls_client(py, certs, server.tcp, &[]);
    echo(&mut new, 5);
    assert!(
        !reloaded,
        "a certificate and key that do not match were taken (new handshakes get serial {})\n{}",
        c.serial,
        server.proc.context()
    );
    assert_eq!(c.serial, certs.leaf1.serial, "the old certificate stays");
    echo(&mut old, 10);
    server.assert_running();
}

// ---------------------------------------------------------------------------------------------
// HAProxy
// ---------------------------------------------------------------------------------------------

#[test]
fn haproxy_passes_tls_through_with_send_proxy_v2() {
    let Some((certs, py)) = certs_and_python() else {
        return;
    };
    let Some(bin) = haproxy::haproxy() else {
        return;
    };
    let mut server = TlsServer::start(&certs.leaf1, &["--proxy-protocol"]);
    let hap = haproxy::Haproxy::start(&bin, &[server.tcp]);
    // From 127.0.0.7: not HAProxy's own address, so only the PROXY header can tell the server.
    let (mut client, c) = tls_client(py, certs, hap.addr, &["--source", "127.0.0.7"]);
    assert!(c.local.starts_with("127.0.0.7:"), "{c:?}");
    assert_eq!(c.serial, certs.leaf1.serial, "our certificate, end to end");
    client.write_line("whoami");
    let seen = client.expect_word("whoami");
    assert_eq!(
        seen,
        c.local,
        "the server has the client's address from the PROXY header\n{}",
        hap.context()
    );
    echo(&mut client, 100);
    // A second client from another address, at the same time.
    let (mut second, c2) = tls_client(py, certs, hap.addr, &["--source", "127.0.0.9"]);
    second.write_line("whoami");
    assert_eq!(second.expect_word("whoami"), c2.local);
    echo(&mut second, 10);
    echo(&mut client, 10);
    server.assert_running();
}

/// The alternative the README gives: HAProxy terminating TLS (`bind ... ssl crt`) in front of
/// a plain repod port with `send-proxy-v2`. The client speaks TLS to HAProxy, which checks
/// nothing of repod's; repod still learns the client's address from the PROXY header.
#[test]
fn haproxy_terminating_tls_in_front_of_a_plain_port() {
    let Some((certs, py)) = certs_and_python() else {
        return;
    };
    let Some(bin) = haproxy::haproxy() else {
        return;
    };
    let mut plain = Proc::example("echo_server", &["127.0.0.1", "0", "--proxy-protocol"]);
    let backend = addr_of(&plain.expect_word("listening on"));
    // HAProxy takes the certificate and its key in one file.
    let dir = tls::tempdir("haproxy-crt");
    let pem = dir.join("combined.pem");
    let mut combined = std::fs::read(&certs.leaf1.cert).expect("certificate");
    combined.extend(std::fs::read(&certs.leaf1.key).expect("key"));
    std::fs::write(&pem, combined).expect("combined.pem");
    let hap =
        haproxy::Haproxy::start_bind(&bin, &format!(" ssl crt {}", pem.display()), &[backend]);
    let (mut client, c) = tls_client(py, certs, hap.addr, &["--source", "127.0.0.7"]);
    assert_eq!(
        c.serial, certs.leaf1.serial,
        "HAProxy serves our certificate"
    );
    client.write_line("whoami");
    assert_eq!(
        client.expect_word("whoami"),
        c.local,
        "the client's address through HAProxy's PROXY header\n{}",
        hap.context()
    );
    echo(&mut client, 100);
    assert!(plain.is_running(), "{}", plain.context());
}

// ---------------------------------------------------------------------------------------------
// Bad peers, next to a good one
// ---------------------------------------------------------------------------------------------

/// A server with `extra` flags and a good TLS client that has echoed once.
fn server_with_good_client(py: &Path, certs: &Certs, extra: &[&str]) -> (TlsServer, Proc) {
    let server = TlsServer::start(&certs.leaf1, extra);
    let (mut good, _) = tls_client(py, certs, server.tcp, &[]);
    echo(&mut good, 10);
    (server, good)
}

/// The good client still echoes, the server still runs, and a new client is served.
fn still_serving(py: &Path, certs: &Certs, server: &mut TlsServer, good: &mut Proc) {
    echo(good, 50);
    server.assert_running();
    let (mut fresh, _) = tls_client(py, certs, server.tcp, &[]);
    echo(&mut fresh, 10);
}

#[test]
fn plaintext_clients_on_the_tls_ports_are_closed_without_a_greeting() {
    let Some((certs, py)) = certs_and_python() else {
        return;
    };
    let (mut server, mut good) = server_with_good_client(py, certs, &[]);
    // A repod client that speaks first, in plaintext: an echo frame.
    let mut s = TcpStream::connect(server.tcp).expect("connect");
    s.write_all(&framed(ECHO_MSGPACK)).expect("write");
    let (got, how) = read_until_closed(&mut s, PROMPT);
    eprintln!("plaintext repod on the TLS port: {how} after {:02x?}", got);
    assert!(
        got.is_empty() || got[0] == 0x15,
        "only a TLS alert may come back, got ({how}) {:02x?}",
        &got[..got.len().min(64)]
    );
    let text = String::from_utf8_lossy(&got);
    assert!(
        !text.contains("connected") && !text.contains("echo_reply"),
        "{text:?}"
    );
    // A plaintext WebSocket upgrade on the wss port.
    let mut s = TcpStream::connect(server.ws).expect("connect");
    s.write_all(
        format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            server.ws
        )
        .as_bytes(),
    )
    .expect("write");
    let (got, how) = read_until_closed(&mut s, PROMPT);
    eprintln!(
        "plaintext upgrade on the wss port: {how} after {:02x?}",
        got
    );
    assert!(
        got.is_empty() || got[0] == 0x15,
        "only a TLS alert may come back, got ({how}) {:?}",
        String::from_utf8_lossy(&got)
    );
    still_serving(py, certs, &mut server, &mut good);
}

#[test]
fn silent_and_trickling_clients_are_closed_at_the_handshake_deadline() {
    let Some((certs, py)) = certs_and_python() else {
        return;
    };
    let (mut server, mut good) = server_with_good_client(py, certs, &["--tls-handshake-ms", "500"]);
    let limit = Duration::from_millis(500);
    let slack = Duration::from_millis(2500);
    for addr in [server.tcp, server.ws] {
        // Silent: connects and sends nothing (a plaintext repod client waiting for its greeting
        // does just that).
        let start = Instant::now();
        let mut s = TcpStream::connect(addr).expect("connect");
        let (got, how) = read_until_closed(&mut s, limit + slack + PROMPT);
        let took = start.elapsed();
        assert!(
            got.is_empty() || got[0] == 0x15,
            "{addr}: {how} after {:02x?}",
            &got[..got.len().min(64)]
        );
        eprintln!("{addr}: a silent client was closed ({how}) after {took:?}");
        assert!(
            took >= limit - Duration::from_millis(50) && took <= limit + slack,
            "{addr}: a silent client was closed after {took:?} (--tls-handshake-ms 500)"
        );

        // Trickling: a handshake record announcing 512 bytes, then one byte every 50 ms; the
        // deadline runs from accept, whatever arrives.
        let start = Instant::now();
        let mut s = TcpStream::connect(addr).expect("connect");
        s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).expect("write");
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut buf = [0u8; 256];
        let took = loop {
            let closed = match s.read(&mut buf) {
                Ok(0) => true,
                Ok(_) => false, // an alert
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    s.write_all(&[0x01]).is_err()
                }
                Err(_) => true,
            };
            if closed {
                break start.elapsed();
            }
            assert!(
                start.elapsed() < limit + slack + PROMPT,
                "{addr}: a trickling client still open after {:?}",
                start.elapsed()
            );
        };
        eprintln!("{addr}: a trickling client was closed after {took:?}");
        assert!(
            took >= limit - Duration::from_millis(50) && took <= limit + slack,
            "{addr}: a trickling client was closed after {took:?} (--tls-handshake-ms 500)"
        );
    }
    still_serving(py, certs, &mut server, &mut good);
}

#[test]
fn a_thousand_handshakes_at_once() {
    let Some((certs, py)) = certs_and_python() else {
        return;
    };
    let (mut server, mut good) = server_with_good_client(py, certs, &[]);
    let port = server.tcp.port().to_string();
    let ca = certs.ca.to_str().expect("UTF-8 path");
    let mut storm = Proc::python(py, "tls_storm.py", &["127.0.0.1", &port, ca, "1000"]);
    let line = storm.expect_within("storm", Duration::from_secs(240));
    storm.finish();
    let count = |name: &str| -> usize {
        line.split(' ')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
    };
    let (greeted, refused) = (count("greeted"), count("refused"));
    let errors = storm.reports("error").join("\n");
    eprintln!("1000 handshakes at once: {line}\n{errors}");
    assert_eq!(
        (count("timeout"), count("other")),
        (0, 0),
        "every handshake greeted or cleanly refused: {line}\n{errors}\n{}",
        server.proc.context()
    );
    assert_eq!(greeted + refused, 1000, "{line}");
    assert!(greeted >= 500, "most were served: {line}\n{errors}");
    still_serving(py, certs, &mut server, &mut good);
}

/// Runs `tls_raw.py` in `mode` against the server; returns its `closed` line: how the server
/// closed (`eof` or `reset`), after how long, and what it sent after the bad bytes (decrypted:
/// `nothing`, `close_notify`, `alert:<reason>`). No application data may come.
fn raw_after_handshake(py: &Path, certs: &Certs, addr: SocketAddr, mode: &str) -> String {
    let port = addr.port().to_string();
    let ca = certs.ca.to_str().expect("UTF-8 path");
    let mut raw = Proc::python(py, "tls_raw.py", &["127.0.0.1", &port, ca, mode]);
    raw.expect_word("greeted");
    raw.expect_word("bad");
    let closed = raw.expect_within("closed", Duration::from_secs(40));
    let ms: u64 = closed
        .split(' ')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("closed {closed:?}"));
    assert!(
        Duration::from_millis(ms) <= PROMPT,
        "{mode}: the server took {ms} ms to close"
    );
    let what = closed.rsplit(' ').next().unwrap_or_default();
    assert!(
        !what.starts_with("data:"),
        "{mode}: application data came after the bad bytes: {closed}"
    );
    closed
}

#[test]
fn a_truncated_record_closes_that_connection_only() {
    let Some((certs, py)) = certs_and_python() else {
        return;
    };
    let (mut server, mut good) = server_with_good_client(py, certs, &[]);
    let closed = raw_after_handshake(py, certs, server.tcp, "truncated");
    eprintln!("truncated record: closed {closed}");
    still_serving(py, certs, &mut server, &mut good);
}

#[test]
fn bytes_that_are_no_record_close_that_connection_only() {
    let Some((certs, py)) = certs_and_python() else {
        return;
    };
    let (mut server, mut good) = server_with_good_client(py, certs, &[]);
    for mode in ["garbage", "bad_mac"] {
        let closed = raw_after_handshake(py, certs, server.tcp, mode);
        eprintln!("{mode}: closed {closed}");
        echo(&mut good, 10);
    }
    still_serving(py, certs, &mut server, &mut good);
}

// ---------------------------------------------------------------------------------------------
// Drain
// ---------------------------------------------------------------------------------------------

#[test]
fn sigterm_drain_delivers_everything_queued_then_close_notify() {
    let Some((certs, py)) = certs_and_python() else {
        return;
    };
    let mut server = TlsServer::start(&certs.leaf1, &["--drain-secs", "1"]);
    // A 64 KiB receive buffer: little of what follows can wait in the client's kernel.
    let (mut client, _) = tls_client(py, certs, server.tcp, &["--rcvbuf", "65536"]);
    echo(&mut client, 10);
    // About 12 MB of replies, more than the socket buffers hold: when the drain ends (after
    // 1 s), most of it is still queued in the server, as the client reads nothing yet (and it
    // stays under the server's 16 MiB bound on queued output).
    let (n, size) = (750, 16 << 10);
    client.write_line(&format!("send_big {n} {size}"));
    assert_eq!(client.expect_word("sent"), n.to_string());
    server.signal("TERM");
    client.write_line("sleep 2.5");
    client.expect_word("slept");
    // The listening sockets closed at once.
    let refused = TcpStream::connect_timeout(&server.tcp, Duration::from_secs(2));
    assert!(
        refused.is_err(),
        "a new connection was accepted while draining"
    );
    client.write_line(&format!("recv_big {n} {size}"));
    let closed = client.expect_within("closed", WAIT);
    assert_eq!(
        closed,
        "close_notify fin",
        "every reply, then close_notify, then FIN\n{}",
        server.proc.context()
    );
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = server.proc.child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "echo_server did not exit after draining\n{}",
            server.proc.context()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}\n{}", server.proc.context());
}

// ---------------------------------------------------------------------------------------------
// Chromium
// ---------------------------------------------------------------------------------------------

/// `web_chat` on free ports, serving `web/` over HTTP; returns it and its base URL.
fn web_files() -> (Proc, String) {
    let mut server = Proc::example("web_chat", &["127.0.0.1", "0", "0", "0"]);
    let page = server.expect_word("chat page on");
    let base = page
        .split("/chat.html")
        .next()
        .expect("a page URL")
        .to_owned();
    (server, base)
}

#[test]
fn chromium_runs_the_test_page_over_wss() {
    let Some(browser) = proc::chromium() else {
        return;
    };
    let Some(certs) = tls::certs() else {
        return;
    };
    // Heartbeats on, as in tests/browser.rs: the page's clients answer pings by themselves.
    let mut server = TlsServer::start(&certs.leaf1, &["--heartbeat-ms", "100"]);
    let (_files, base) = web_files();
    let spki = certs.spki_sha256_base64(&certs.leaf1.cert);
    let url = format!("{base}/test.html?ws=wss://localhost:{}/", server.ws.port());
    let dom = proc::finish_chromium(
        proc::start_chromium(
            &browser,
            &url,
            &[format!("--ignore-certificate-errors-spki-list={spki}")],
        ),
        || {},
    );
    assert_eq!(
        proc::text_of(&dom, "result"),
        "PASS",
        "test.html reported:\n{dom}"
    );
    assert!(
        dom.matches("class=\"pass\"").count() >= 5,
        "too few checks ran:\n{dom}"
    );
    server.assert_running();
}

#[test]
fn chromium_refuses_a_certificate_whose_key_is_not_trusted() {
    let Some(browser) = proc::chromium() else {
        return;
    };
    let Some(certs) = tls::certs() else {
        return;
    };
    // The control of the test above: Chromium is told to accept leaf1's key only, and the
    // server has leaf2 (the same CA, the same names, another key). The page must fail.
    let mut server = TlsServer::start(&certs.leaf2, &[]);
    let (_files, base) = web_files();
    let spki = certs.spki_sha256_base64(&certs.leaf1.cert);
    assert_ne!(spki, certs.spki_sha256_base64(&certs.leaf2.cert));
    let url = format!(
        "{base}/test.html?ws=wss://localhost:{}/&timeout=5000",
        server.ws.port()
    );
    let dom = proc::finish_chromium(
        proc::start_chromium(
            &browser,
            &url,
            &[format!("--ignore-certificate-errors-spki-list={spki}")],
        ),
        || {},
    );
    let result = proc::text_of(&dom, "result");
    assert!(
        result.starts_with("FAIL"),
        "the page passed against a certificate Chromium should not trust: {result}\n{dom}"
    );
    server.assert_running();
}
