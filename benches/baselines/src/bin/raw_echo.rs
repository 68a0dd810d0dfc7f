//! Raw-socket floor for the echo protocol: no msgpack at all.
//!
//! `raw_echo HOST PORT`
//!
//! A single-threaded mio event loop that sends the greeting frame
//! (`{"action":"connected"}`) on accept and then echoes every complete
//! length-prefixed frame back to its sender **unchanged** (so an `echo`
//! request comes back with `"action": "echo"`, not `"echo_reply"`; loadgen
//! matches replies by sequence number and accepts both). It does not parse
//! payloads, so it does **not** implement `broadcast`: a broadcast frame is
//! simply echoed to its sender, and the `fanout` scenario is meaningless
//! against it.
//!
//! What makes it a floor: one shared 256 KiB read buffer, a single `read` per
//! readiness event when it does not fill the buffer, complete frames written
//! straight from the read buffer with one `write` (copied into a per-connection
//! buffer only when the socket would block), TCP_NODELAY, and per-connection
//! state reduced to two byte vectors.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const LISTENER: Token = Token(usize::MAX);
const READ_BUF: usize = 256 * 1024;
/// Stop reading from a peer that has this much unsent output queued.
const HIGH_WATER: usize = 4 * 1024 * 1024;
/// Frames larger than this close the connection.
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// `{"action":"connected"}` as a frame: 4-byte BE length, then msgpack.
const GREETING: &[u8] = b"\x00\x00\x00\x12\x81\xa6action\xa9connected";

struct Conn {
    stream: TcpStream,
    /// Bytes of an incomplete frame carried over between reads.
    pending: Vec<u8>,
    /// Output the socket did not take yet; `wbuf[wpos..]` is unsent.
    wbuf: Vec<u8>,
    wpos: usize,
    read_paused: bool,
}

/// Length of the longest prefix of `buf` made of complete frames, or `None`
/// if a frame announces more than `MAX_FRAME` bytes.
fn complete_prefix(buf: &[u8]) -> Option<usize> {
    let mut pos = 0;
    while buf.len() - pos >= 4 {
        let len = u32::from_be_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]) as usize;
        if len > MAX_FRAME {
            return None;
        }
        if buf.len() - pos - 4 < len {
            break;
        }
        pos += 4 + len;
    }
    Some(pos)
}

impl Conn {
    fn unsent(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Write `data`, directly if nothing is queued, keeping what the socket
    /// does not take.
    fn send(&mut self, mut data: &[u8]) -> io::Result<()> {
        if self.unsent() == 0 {
            while !data.is_empty() {
                match self.stream.write(data) {
                    Ok(n) => data = &data[n..],
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.wbuf.extend_from_slice(data);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        while self.wpos < self.wbuf.len() {
            match self.stream.write(&self.wbuf[self.wpos..]) {
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

    /// Read what is available and echo complete frames. Returns `Ok(true)`
    /// when the peer closed.
    fn on_readable(&mut self, scratch: &mut [u8], drain_fully: bool) -> io::Result<bool> {
        loop {
            if self.unsent() > HIGH_WATER {
                self.read_paused = true;
                return Ok(false);
            }
            let n = match self.stream.read(scratch) {
                Ok(0) => return Ok(true),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let bad = || io::Error::new(ErrorKind::InvalidData, "frame too large");
            if self.pending.is_empty() {
                let c = complete_prefix(&scratch[..n]).ok_or_else(bad)?;
                self.send(&scratch[..c])?;
                self.pending.extend_from_slice(&scratch[c..n]);
            } else {
                self.pending.extend_from_slice(&scratch[..n]);
                let c = complete_prefix(&self.pending).ok_or_else(bad)?;
                if c > 0 {
                    let pending = std::mem::take(&mut self.pending);
                    self.send(&pending[..c])?;
                    self.pending = pending;
                    self.pending.drain(..c);
                }
            }
            // Edge-triggered epoll signals again when more data arrives, so a
            // short read means the socket is drained (unless EOF is pending).
            if n < scratch.len() && !drain_fully {
                return Ok(false);
            }
        }
    }
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 2 {
        eprintln!("usage: raw_echo HOST PORT");
        std::process::exit(2);
    }
    let port: u16 = args[1].parse().expect("PORT must be a number");
    let addr: SocketAddr = (args[0].as_str(), port)
        .to_socket_addrs()?
        .next()
        .expect("HOST must resolve");

    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(addr)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    println!("listening on {}:{}", args[0], port);
    io::stdout().flush()?;

    let mut events = Events::with_capacity(1024);
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut scratch = vec![0u8; READ_BUF];

    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                loop {
                    let (mut stream, _) = match listener.accept() {
                        Ok(pair) => pair,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => {
                            // EMFILE etc.: the listener stays readable and
                            // edge-triggered; try again on the next event.
                            eprintln!("accept error: {e}");
                            break;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let idx = free.pop().unwrap_or_else(|| {
                        conns.push(None);
                        conns.len() - 1
                    });
                    poll.registry().register(
                        &mut stream,
                        Token(idx),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    let mut conn = Conn {
                        stream,
                        pending: Vec::new(),
                        wbuf: Vec::new(),
                        wpos: 0,
                        read_paused: false,
                    };
                    if conn.send(GREETING).is_ok() {
                        conns[idx] = Some(conn);
                    } else {
                        let _ = poll.registry().deregister(&mut conn.stream);
                        free.push(idx);
                    }
                }
                continue;
            }

            let idx = event.token().0;
            let Some(conn) = conns.get_mut(idx).and_then(Option::as_mut) else {
                continue;
            };
            let mut close = false;
            if event.is_writable() && conn.unsent() > 0 {
                match conn.flush() {
                    Ok(()) if conn.read_paused && conn.unsent() == 0 => {
                        conn.read_paused = false;
                        close = conn.on_readable(&mut scratch, true).unwrap_or(true);
                    }
                    Ok(()) => {}
                    Err(_) => close = true,
                }
            }
            if !close && event.is_readable() && !conn.read_paused {
                let drain = event.is_read_closed() || event.is_error();
                close = conn.on_readable(&mut scratch, drain).unwrap_or(true);
            }
            if close {
                if let Some(mut conn) = conns[idx].take() {
                    let _ = poll.registry().deregister(&mut conn.stream);
                }
                free.push(idx);
            }
        }
    }
}
