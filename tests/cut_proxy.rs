//! The cutting proxy of `support/cut.rs`, checked against plain std TCP peers on loopback:
//! bytes go through both ways, `cut` makes both the client and the upstream see a reset (not
//! an end of stream), also with megabytes in flight, clients reconnect through it afterwards,
//! and a blackhole holds bytes until it is lifted.

#[path = "support/cut.rs"]
mod cut;

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cut::CutProxy;

/// Bound for anything that must happen promptly, on a loaded 2-core machine.
const PROMPT: Duration = Duration::from_secs(3);

/// An upstream server on a thread: each connection runs `serve` on a thread of its own, and
/// how it ended (`Ok` for the peer's FIN, else the error's kind) comes out of `ends`.
struct Upstream {
    addr: SocketAddr,
    ends: Receiver<Result<(), ErrorKind>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    fn start(serve: fn(&mut TcpStream) -> io::Result<()>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (report, ends) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let (Ok(mut stream), report) = (stream, report.clone()) else {
                    continue;
                };
                std::thread::spawn(move || {
                    let end = serve(&mut stream).map_err(|e| e.kind());
                    let _ = report.send(end);
                });
            }
        });
        Upstream {
            addr,
            ends,
            stop,
            thread: Some(thread),
        }
    }

    fn next_end(&self) -> Result<(), ErrorKind> {
        self.ends
            .recv_timeout(PROMPT)
            .expect("no upstream connection ended")
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // `accept` blocks: a connection of our own wakes it to see the flag.
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn echo(stream: &mut TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf)? {
            0 => return Ok(()),
            n => stream.write_all(&buf[..n])?,
        }
    }
}

fn flood(stream: &mut TcpStream) -> io::Result<()> {
    let block = [0x55u8; 16 * 1024];
    loop {
        stream.write_all(&block)?;
    }
}

fn client(proxy: &CutProxy) -> TcpStream {
    let stream = TcpStream::connect(proxy.addr()).unwrap();
    stream.set_read_timeout(Some(PROMPT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Sends `bytes` and expects them back.
fn round_trip(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).unwrap();
    let mut back = vec![0; bytes.len()];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(back, bytes);
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PROMPT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn cut_resets_both_sides_and_clients_reconnect() {
    let upstream = Upstream::start(echo);
    let proxy = CutProxy::start(upstream.addr).unwrap();

    let mut first = client(&proxy);
    round_trip(&mut first, b"hello");
    // One byte at a time, each waiting for its echo: the proxy adds no batching delay.
    let started = Instant::now();
    for i in 0..200u8 {
        round_trip(&mut first, &[i]);
    }
    let per_trip = started.elapsed() / 200;
    eprintln!("round trip through the proxy: {per_trip:?}");
    assert!(per_trip < Duration::from_millis(20), "{per_trip:?}");
    assert_eq!((proxy.links(), proxy.accepted()), (1, 1));

    assert_eq!(proxy.cut(), 1);
    assert_eq!(proxy.links(), 0);
    let mut buf = [0u8; 16];
    let read = first.read(&mut buf);
    assert_eq!(
        read.as_ref().map_err(io::Error::kind),
        Err(ErrorKind::ConnectionReset),
        "the client must see a reset, not an end of stream: {read:?}"
    );
    assert_eq!(upstream.next_end(), Err(ErrorKind::ConnectionReset));

    let mut second = client(&proxy);
    round_trip(&mut second, b"again");
    assert_eq!((proxy.links(), proxy.accepted()), (1, 2));

    // A graceful close still goes through as one, and the link goes away.
    drop(second);
    assert_eq!(upstream.next_end(), Ok(()));
    wait_for("the closed link to go", || proxy.links() == 0);
    assert_eq!(proxy.cut(), 0);
}

#[test]
fn cut_under_traffic_is_a_reset_on_both_sides() {
    let upstream = Upstream::start(flood);
    let proxy = CutProxy::start(upstream.addr).unwrap();
    let mut victim = client(&proxy);
    let mut buf = vec![0u8; 64 * 1024];
    victim.read_exact(&mut buf).unwrap();
    // Let every buffer on the way fill up: the proxy's, and the kernels' on both sides.
    std::thread::sleep(Duration::from_millis(100));

    assert_eq!(proxy.cut(), 1);
    assert_eq!(upstream.next_end(), Err(ErrorKind::ConnectionReset));
    // What reached the client's kernel before the reset is still read, then the reset.
    let deadline = Instant::now() + PROMPT;
    let end = loop {
        assert!(Instant::now() < deadline, "the client still reads");
        match victim.read(&mut buf) {
            Ok(0) => panic!("the client saw an end of stream, not a reset"),
            Ok(_) => {}
            Err(e) => break e.kind(),
        }
    };
    assert_eq!(end, ErrorKind::ConnectionReset);
}

#[test]
fn blackhole_holds_bytes_until_lifted() {
    let upstream = Upstream::start(echo);
    let proxy = CutProxy::start(upstream.addr).unwrap();
    let mut before = client(&proxy);
    round_trip(&mut before, b"up");

    proxy.set_blackhole(true);
    let mut during = client(&proxy);
    wait_for("the second client to be linked", || proxy.links() == 2);
    let mut buf = [0u8; 16];
    for stream in [&mut before, &mut during] {
        stream.write_all(b"held").unwrap();
    }
    for stream in [&mut before, &mut during] {
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let read = stream.read(&mut buf);
        let kind = read.as_ref().map_err(io::Error::kind);
        assert!(
            matches!(kind, Err(ErrorKind::WouldBlock | ErrorKind::TimedOut)),
            "bytes crossed the blackhole: {read:?}"
        );
    }

    proxy.set_blackhole(false);
    for stream in [&mut before, &mut during] {
        stream.set_read_timeout(Some(PROMPT)).unwrap();
        stream.read_exact(&mut buf[..4]).unwrap();
        assert_eq!(&buf[..4], b"held");
        round_trip(stream, b"flowing");
    }
    assert_eq!((proxy.links(), proxy.accepted()), (2, 2));
}
