//! A client's connection attempt is bounded by `Config::connect_timeout`, whichever step
//! stalls: TCP's connect to an address that drops SYNs, a TLS handshake or a WebSocket upgrade
//! that a peer never answers. Each ends with an `error` event naming the step, in both modes.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use repod::{Config, Connection, Mode};

const LIMIT: Duration = Duration::from_millis(300);

/// Waits for the `error` event; returns its text and how long the attempt took.
fn error_of(url: &str, mode: Mode) -> (String, Duration) {
    let started = Instant::now();
    let cfg = Config::default().connect_timeout(Some(LIMIT));
    let mut conn = Connection::connect_with(url, mode, cfg).expect("connect");
    while started.elapsed() < Duration::from_secs(20) {
        if let Some(m) = conn.recv_timeout(Duration::from_millis(50)) {
            match m.action() {
                "error" => {
                    let text = m.message().str("error").unwrap_or("").to_owned();
                    return (text, started.elapsed());
                }
                other => panic!("{url}: {other} before the error"),
            }
        }
    }
    panic!("{url}: no error within 20 s");
}

/// A peer that accepts connections and never says a word (kept open until dropped).
fn silent_peer() -> (SocketAddr, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let mut held = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let until = Instant::now() + Duration::from_secs(15);
        while Instant::now() < until {
            if let Ok((s, _)) = listener.accept() {
                held.push(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    (addr, t)
}

fn check(url: &str, expect: &str) {
    for mode in [Mode::Stepped, Mode::Background] {
        let (text, took) = error_of(url, mode);
        assert!(text.contains(expect), "{url} {mode:?}: {text:?}");
        assert!(
            took >= LIMIT && took < LIMIT + Duration::from_secs(5),
            "{url} {mode:?}: the error came after {took:?}"
        );
    }
}

#[test]
fn a_websocket_upgrade_nobody_answers_times_out() {
    let (addr, _peer) = silent_peer();
    check(&format!("ws://{addr}/"), "handshake not completed in time");
}

#[cfg(feature = "tls")]
#[test]
fn a_tls_handshake_nobody_answers_times_out() {
    let (addr, _peer) = silent_peer();
    check(
        &format!("tls://127.0.0.1:{}", addr.port()),
        "TLS handshake timed out",
    );
    check(
        &format!("wss://127.0.0.1:{}/", addr.port()),
        "TLS handshake timed out",
    );
}

/// A listening socket whose accept queue is full drops further SYNs, as a black-holed address
/// would: the connect itself never completes.
#[test]
fn a_connect_that_never_completes_times_out() {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    // Fill the queue (never accepted); the kernel completes a handful of handshakes first.
    let mut fillers = Vec::new();
    for _ in 0..8 {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            fillers.push(s);
        }
    }
    match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
        Err(_) => {}
        Ok(_) => panic!("the accept queue did not fill: this kernel accepts past the backlog"),
    }
    check(&addr.to_string(), "connecting timed out");
    drop(fillers);
}
