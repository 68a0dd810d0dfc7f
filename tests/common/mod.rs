//! Shared helpers for the integration tests: a raw wire-level peer over std TCP, bounded waits,
//! and a way to read a background server's state from the test thread.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use repod::{ChannelHandler, Encode, OwnedMessage, ServerHandle};

/// Generous bound for anything that should happen "promptly" on a loaded 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Polls `cond` until it holds or `PATIENCE` runs out.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `f` on the server's reactor thread and returns its result.
pub fn query<C, R>(
    handle: &ServerHandle<C>,
    f: impl FnOnce(&mut C::Server, &mut repod::ServerCtx<'_, C>) -> R + Send + 'static,
) -> R
where
    C: ChannelHandler,
    R: Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    handle.call(move |state, ctx| {
        let _ = tx.send(f(state, ctx));
    });
    rx.recv_timeout(PATIENCE).expect("server did not answer")
}

/// Encodes `msg` as one frame, with the crate's own framing.
pub fn frame(msg: &impl Encode) -> Vec<u8> {
    let mut payload = Vec::new();
    msg.encode(&mut payload);
    let mut out = Vec::with_capacity(payload.len() + repod::frame::HEADER_LEN);
    repod::frame::encode_frame(&mut out, &payload).expect("test frames fit a u32 length");
    out
}

/// A peer that speaks the wire format by hand over a blocking std socket.
pub struct RawPeer {
    pub stream: TcpStream,
}

impl RawPeer {
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        RawPeer { stream }
    }

    /// Connects and consumes the greeting.
    pub fn greeted(addr: SocketAddr) -> Self {
        let mut p = Self::connect(addr);
        assert_eq!(p.recv().action(), "connected");
        p
    }

    pub fn send(&mut self, msg: &impl Encode) {
        self.stream.write_all(&frame(msg)).expect("write");
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// The next frame, or `None` at end of stream.
    pub fn try_recv(&mut self) -> Option<OwnedMessage> {
        let mut header = [0u8; 4];
        if let Err(e) = self.stream.read_exact(&mut header) {
            assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                ),
                "read failed: {e}"
            );
            return None;
        }
        let mut payload = vec![0u8; u32::from_be_bytes(header) as usize];
        self.stream.read_exact(&mut payload).expect("frame body");
        Some(OwnedMessage::parse(payload).expect("valid message"))
    }

    pub fn recv(&mut self) -> OwnedMessage {
        self.try_recv()
            .expect("connection closed while a message was expected")
    }

    /// Reads until end of stream, returning what arrived.
    pub fn recv_until_eof(&mut self) -> Vec<OwnedMessage> {
        let mut all = Vec::new();
        while let Some(m) = self.try_recv() {
            all.push(m);
        }
        all
    }
}
