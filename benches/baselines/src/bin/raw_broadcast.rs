//! Raw-socket floor for the fan-out scenario: no msgpack parsing at all.
//!
//! `raw_broadcast HOST PORT`
//!
//! A single-threaded mio event loop that sends the greeting frame
//! (`{"action":"connected"}`) on accept and then writes every complete
//! length-prefixed frame any client sends to **every** connected client, the
//! sender included, the way the echo protocol's `broadcast` is delivered.
//!
//! The one change to a frame: loadgen counts only `broadcast_reply` deliveries,
//! so a payload that starts with a fixmap header followed by
//! `"action": "broadcast"` (the bytes `\xa6action\xa9broadcast`, which is what
//! loadgen, or any msgpack encoder writing `action` first, sends) has that
//! string replaced by `broadcast_reply` (`\xafbroadcast_reply`) and its length
//! prefix grown by 6. That is a prefix comparison and a splice, not parsing;
//! every other frame (an `echo` included) goes to everyone unchanged.
//!
//! What makes it a floor: one shared 256 KiB read buffer; the frames that the
//! reads of one readiness event complete are assembled (rewritten where
//! needed) once into a shared batch, which is appended to every connection's
//! output `Vec`; at the end of each turn of the event loop (one `poll` and its
//! events) every connection with new output gets one `write` of all of it;
//! what the socket does not take (`WouldBlock`) stays queued for its next
//! writable event. TCP_NODELAY; per-connection state is two byte vectors, an
//! offset and a flag.
//!
//! Slow readers: a connection with more than 64 MiB of unsent output is closed
//! (a broadcast cannot wait for its slowest receiver); loadgen never gets near.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const LISTENER: Token = Token(usize::MAX);
const READ_BUF: usize = 256 * 1024;
/// Close a connection that has this much unsent output queued.
const MAX_UNSENT: usize = 64 * 1024 * 1024;
/// Frames larger than this close the connection.
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// `{"action":"connected"}` as a frame: 4-byte BE length, then msgpack.
const GREETING: &[u8] = b"\x00\x00\x00\x12\x81\xa6action\xa9connected";
/// After the one-byte fixmap header: `"action"`, `"broadcast"`.
const BROADCAST: &[u8] = b"\xa6action\xa9broadcast";
/// What replaces it: `"action"`, `"broadcast_reply"`.
const BROADCAST_REPLY: &[u8] = b"\xa6action\xafbroadcast_reply";

struct Conn {
    stream: TcpStream,
    /// Bytes of an incomplete frame carried over between reads.
    pending: Vec<u8>,
    /// Output not written yet; `wbuf[wpos..]` is unsent.
    wbuf: Vec<u8>,
    wpos: usize,
    /// In the `dirty` list: has output appended this turn.
    dirty: bool,
}

impl Conn {
    fn unsent(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Write as much of the queued output as the socket takes.
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
}

/// Append every complete frame at the start of `buf` to `out`, rewriting
/// `broadcast` to `broadcast_reply`; returns the bytes consumed, or `None` if
/// a frame announces more than `MAX_FRAME` bytes.
fn take_frames(buf: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    let mut pos = 0;
    while buf.len() - pos >= 4 {
        let len = u32::from_be_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]) as usize;
        if len > MAX_FRAME {
            return None;
        }
        if buf.len() - pos - 4 < len {
            break;
        }
        let payload = &buf[pos + 4..pos + 4 + len];
        // A fixmap header (0x80..=0x8f), then `"action": "broadcast"`.
        if payload.len() > BROADCAST.len()
            && payload[0] & 0xf0 == 0x80
            && payload[1..].starts_with(BROADCAST)
        {
            let grown = (len + BROADCAST_REPLY.len() - BROADCAST.len()) as u32;
            out.extend_from_slice(&grown.to_be_bytes());
            out.push(payload[0]);
            out.extend_from_slice(BROADCAST_REPLY);
            out.extend_from_slice(&payload[1 + BROADCAST.len()..]);
        } else {
            out.extend_from_slice(&buf[pos..pos + 4 + len]);
        }
        pos += 4 + len;
    }
    Some(pos)
}

/// Read what `conn` has and append its complete frames to `batch`. Returns
/// `Ok(true)` when the peer closed.
fn read_frames(
    conn: &mut Conn,
    scratch: &mut [u8],
    batch: &mut Vec<u8>,
    drain_fully: bool,
) -> io::Result<bool> {
    let bad = || io::Error::new(ErrorKind::InvalidData, "frame too large");
    loop {
        let n = match conn.stream.read(scratch) {
            Ok(0) => return Ok(true),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if conn.pending.is_empty() {
            let c = take_frames(&scratch[..n], batch).ok_or_else(bad)?;
            conn.pending.extend_from_slice(&scratch[c..n]);
        } else {
            conn.pending.extend_from_slice(&scratch[..n]);
            let c = take_frames(&conn.pending, batch).ok_or_else(bad)?;
            conn.pending.drain(..c);
        }
        // Edge-triggered epoll signals again when more data arrives, so a
        // short read means the socket is drained (unless EOF is pending).
        if n < scratch.len() && !drain_fully {
            return Ok(false);
        }
    }
}

/// Queue `data` on connection `idx` and put it in the `dirty` list.
fn queue(conn: &mut Conn, idx: usize, data: &[u8], dirty: &mut Vec<usize>) {
    // Drop what was written already once it outweighs what was not, so a
    // queue that never empties does not grow without bound.
    if conn.wpos > 0 && conn.wpos >= conn.unsent() {
        conn.wbuf.drain(..conn.wpos);
        conn.wpos = 0;
    }
    conn.wbuf.extend_from_slice(data);
    if !conn.dirty {
        conn.dirty = true;
        dirty.push(idx);
    }
}

fn close(poll: &Poll, conns: &mut [Option<Conn>], free: &mut Vec<usize>, idx: usize) {
    if let Some(mut conn) = conns[idx].take() {
        let _ = poll.registry().deregister(&mut conn.stream);
        free.push(idx);
    }
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 2 {
        eprintln!("usage: raw_broadcast HOST PORT");
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
    // Frames completed by one read, ready to go to everybody.
    let mut batch: Vec<u8> = Vec::new();
    // Connections with output appended this turn, each once.
    let mut dirty: Vec<usize> = Vec::new();
    let mut closing: Vec<usize> = Vec::new();

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
                    if poll
                        .registry()
                        .register(
                            &mut stream,
                            Token(idx),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .is_err()
                    {
                        free.push(idx);
                        continue;
                    }
                    let mut conn = Conn {
                        stream,
                        pending: Vec::new(),
                        wbuf: Vec::new(),
                        wpos: 0,
                        dirty: false,
                    };
                    queue(&mut conn, idx, GREETING, &mut dirty);
                    conns[idx] = Some(conn);
                }
                continue;
            }

            let idx = event.token().0;
            let Some(conn) = conns.get_mut(idx).and_then(Option::as_mut) else {
                continue;
            };
            // Output left over from an earlier turn; this turn's new output
            // is written below, once, with everything else.
            if event.is_writable() && !conn.dirty && conn.unsent() > 0 && conn.flush().is_err() {
                close(&poll, &mut conns, &mut free, idx);
                continue;
            }
            if !event.is_readable() {
                continue;
            }
            let drain = event.is_read_closed() || event.is_error();
            batch.clear();
            let closed = read_frames(conn, &mut scratch, &mut batch, drain).unwrap_or(true);
            if !batch.is_empty() {
                for (i, slot) in conns.iter_mut().enumerate() {
                    if let Some(c) = slot {
                        queue(c, i, &batch, &mut dirty);
                    }
                }
            }
            if closed {
                close(&poll, &mut conns, &mut free, idx);
            }
        }

        // End of the turn: one write per connection with new output.
        for idx in dirty.drain(..) {
            let Some(conn) = conns.get_mut(idx).and_then(Option::as_mut) else {
                continue;
            };
            if !conn.dirty {
                continue;
            }
            conn.dirty = false;
            if conn.flush().is_err() || conn.unsent() > MAX_UNSENT {
                closing.push(idx);
            }
        }
        for idx in closing.drain(..) {
            close(&poll, &mut conns, &mut free, idx);
        }
    }
}
