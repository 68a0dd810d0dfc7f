//! A TCP proxy whose links a test can kill: for tests of session resume, which need "a link
//! that dies under pipelined traffic" and a client that reconnects through the same address.
//!
//! [`CutProxy::start`] listens on `127.0.0.1:0`; each client it accepts gets its own connection
//! to the upstream address and bytes are pumped both ways as they come. [`CutProxy::cut`] resets
//! every open link: both the client and the upstream see a TCP RST (`ECONNRESET`), never a FIN,
//! and whatever the proxy held in between is lost, as when a NAT drops its mapping or a mobile
//! link goes away. [`CutProxy::set_blackhole`] keeps the links up but forwards nothing, as a
//! link that silently stops carrying packets.
//!
//! One mio thread owns every socket, each as exactly one file descriptor (no `try_clone`), so
//! the `close` that follows `SO_LINGER {on, 0}` is the last one and the kernel sends the RST
//! there and then: by the time `cut` returns, both peers have been sent theirs.
//!
//! Include with `#[path = "support/cut.rs"] mod cut;`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use socket2::SockRef;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Link `id` has tokens `FIRST_LINK + 2 * id` (client side) and the next (upstream side); ids
/// are never reused, so an event for a link already closed finds nothing.
const FIRST_LINK: usize = 2;
/// What a link holds per direction before it stops reading: the sender's kernel buffers take
/// the rest, as they would on a real congested path.
const HELD: usize = 64 * 1024;
/// The upstream is a test server on loopback: a connect that takes longer has failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What the test thread asks of the proxy's thread. Answers come back on the enclosed sender,
/// so each call returns only once the proxy has done it.
enum Command {
    Cut(Sender<usize>),
    Blackhole(bool, Sender<()>),
    Stop,
}

/// A proxy between test clients and one upstream address; stops on drop.
#[derive(Debug)]
pub struct CutProxy {
    addr: SocketAddr,
    commands: Sender<Command>,
    waker: Waker,
    links: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl CutProxy {
    /// Listens on `127.0.0.1:0` and forwards every client it accepts to `upstream`.
    ///
    /// # Errors
    ///
    /// The listener or the poller could not be made.
    pub fn start(upstream: SocketAddr) -> io::Result<CutProxy> {
        let mut listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let addr = listener.local_addr()?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let (commands, inbox) = mpsc::channel();
        let links = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let mut reactor = Reactor {
            poll,
            listener,
            upstream,
            links: HashMap::new(),
            next_id: 0,
            blackhole: false,
            open: links.clone(),
            accepted: accepted.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("cut-proxy".into())
            .spawn(move || reactor.run(&inbox))?;
        Ok(CutProxy {
            addr,
            commands,
            waker,
            links,
            accepted,
            thread: Some(thread),
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Resets both sides of every link open now, including clients whose `connect` has
    /// returned but that the proxy had not accepted yet, and returns how many links that was.
    /// New clients are accepted afterwards as before.
    pub fn cut(&self) -> usize {
        self.ask(Command::Cut)
    }

    /// While on, links (existing and new) forward nothing either way; bytes wait in the
    /// proxy and in the kernels' buffers until it is turned off.
    pub fn set_blackhole(&self, on: bool) {
        self.ask(|done| Command::Blackhole(on, done))
    }

    /// The links open now.
    pub fn links(&self) -> usize {
        self.links.load(Ordering::SeqCst)
    }

    /// Every client accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn ask<T>(&self, command: impl FnOnce(Sender<T>) -> Command) -> T {
        let (answer, reply) = mpsc::channel();
        self.commands
            .send(command(answer))
            .expect("cut proxy thread ended");
        self.waker.wake().expect("waking the cut proxy");
        // The thread drops the sender if it dies, so this cannot hang on a dead proxy.
        reply.recv().expect("cut proxy thread ended")
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            // A panic in the thread has been printed already; a second one here would abort.
            let _ = thread.join();
        }
    }
}

/// One client and its upstream connection. Index 0 is the client side, 1 the upstream side.
struct Link {
    sockets: [TcpStream; 2],
    /// `held[i]`: bytes read from side `i`, not yet written to the other side.
    held: [Vec<u8>; 2],
    /// Side `i` sent its FIN.
    eof: [bool; 2],
    /// That FIN was passed on (the other side's write half is shut).
    passed: [bool; 2],
}

enum Pumped {
    Open,
    /// Both directions ended with a FIN: close normally.
    Done,
    /// A side failed (reset, most likely): reset the other too, as the path would.
    Failed,
}

impl Link {
    /// Moves bytes both ways until nothing moves. The sockets are edge-triggered, so this
    /// stops only on `WouldBlock`, a full `held`, or an end: each of those has an event or a
    /// call of `pump` that resumes it.
    fn pump(&mut self) -> Pumped {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let mut moved = false;
            for from in 0..2 {
                let to = 1 - from;
                while !self.held[from].is_empty() {
                    match self.sockets[to].write(&self.held[from]) {
                        Ok(0) => return Pumped::Failed,
                        Ok(n) => {
                            self.held[from].drain(..n);
                            moved = true;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => return Pumped::Failed,
                    }
                }
                if self.eof[from] && self.held[from].is_empty() && !self.passed[from] {
                    let _ = self.sockets[to].shutdown(Shutdown::Write);
                    self.passed[from] = true;
                }
                if !self.eof[from] && self.held[from].len() < HELD {
                    let room = (HELD - self.held[from].len()).min(chunk.len());
                    match self.sockets[from].read(&mut chunk[..room]) {
                        Ok(0) => self.eof[from] = true,
                        Ok(n) => self.held[from].extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => return Pumped::Failed,
                    }
                    moved = true;
                }
            }
            if self.passed == [true, true] {
                return Pumped::Done;
            }
            if !moved {
                return Pumped::Open;
            }
        }
    }

    /// Closes both sockets with a RST: with a zero linger, the `close` of a socket's only
    /// descriptor (the drop) sends a RST and discards both its queues, instead of a FIN.
    fn reset(self) {
        for socket in &self.sockets {
            let _ = SockRef::from(socket).set_linger(Some(Duration::ZERO));
        }
    }
}

struct Reactor {
    poll: Poll,
    listener: TcpListener,
    upstream: SocketAddr,
    links: HashMap<usize, Link>,
    next_id: usize,
    blackhole: bool,
    open: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
}

impl Reactor {
    fn run(&mut self, inbox: &Receiver<Command>) {
        let mut events = Events::with_capacity(256);
        loop {
            if let Err(e) = self.poll.poll(&mut events, None) {
                assert_eq!(e.kind(), ErrorKind::Interrupted, "cut proxy poll: {e}");
            }
            for event in &events {
                match event.token() {
                    LISTENER => self.accept_all(),
                    WAKER => {}
                    Token(t) => self.pump((t - FIRST_LINK) / 2),
                }
            }
            while let Ok(command) = inbox.try_recv() {
                match command {
                    Command::Cut(answer) => {
                        // A client whose connect returned is connected, accepted or not: it
                        // must be cut too, or a test would race the accept.
                        self.accept_all();
                        let cut = self.links.len();
                        for (_, link) in self.links.drain() {
                            link.reset();
                        }
                        self.open.store(0, Ordering::SeqCst);
                        let _ = answer.send(cut);
                    }
                    Command::Blackhole(on, done) => {
                        self.blackhole = on;
                        if !on {
                            // Readiness seen during the blackhole was consumed unanswered.
                            let ids: Vec<usize> = self.links.keys().copied().collect();
                            ids.into_iter().for_each(|id| self.pump(id));
                        }
                        let _ = done.send(());
                    }
                    Command::Stop => return,
                }
            }
        }
    }

    fn accept_all(&mut self) {
        loop {
            let client = match self.listener.accept() {
                Ok((client, _)) => client,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                // A client that reset before the accept: nothing to forward.
                Err(e) if e.kind() == ErrorKind::ConnectionAborted => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // Out of descriptors, say: retrying at once would spin; the test fails anyway.
                Err(_) => return,
            };
            self.accepted.fetch_add(1, Ordering::SeqCst);
            // A blocking connect keeps the upstream side simple: it is on loopback, and a link
            // whose upstream refused is reset at once, which the client sees as the link dying.
            let upstream = std::net::TcpStream::connect_timeout(&self.upstream, CONNECT_TIMEOUT)
                .and_then(|s| s.set_nonblocking(true).map(|()| TcpStream::from_std(s)));
            let upstream = match upstream {
                Ok(upstream) => upstream,
                Err(_) => {
                    let _ = SockRef::from(&client).set_linger(Some(Duration::ZERO));
                    continue;
                }
            };
            let mut link = Link {
                sockets: [client, upstream],
                held: [Vec::new(), Vec::new()],
                eof: [false; 2],
                passed: [false; 2],
            };
            let id = self.next_id;
            self.next_id += 1;
            for (side, socket) in link.sockets.iter_mut().enumerate() {
                // Pipelined small messages must not wait for Nagle.
                let _ = socket.set_nodelay(true);
                let token = Token(FIRST_LINK + 2 * id + side);
                let interest = Interest::READABLE | Interest::WRITABLE;
                self.poll
                    .registry()
                    .register(socket, token, interest)
                    .expect("registering a cut proxy socket");
            }
            self.links.insert(id, link);
            self.open.store(self.links.len(), Ordering::SeqCst);
        }
    }

    fn pump(&mut self, id: usize) {
        if self.blackhole {
            return;
        }
        let Some(link) = self.links.get_mut(&id) else {
            return;
        };
        match link.pump() {
            Pumped::Open => return,
            Pumped::Done => drop(self.links.remove(&id)),
            Pumped::Failed => self.links.remove(&id).into_iter().for_each(Link::reset),
        }
        self.open.store(self.links.len(), Ordering::SeqCst);
    }
}
