//! A raw WebSocket client for tests: the handshake and frames by hand, through the crate's own
//! sans-IO codec (`repod::ws`), so a test can send anything (unmasked frames, bad lengths, text)
//! and see exactly what the server answers.
//!
//! Include with `#[path = "support/ws.rs"] mod ws;` next to `support/net.rs` (as `net`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::ControlFlow;

use repod::ws::codec::encode_close;
use repod::ws::handshake::{client_key, parse_response, write_request};
use repod::ws::{encode_frame, MaskKeys, Opcode, Role, WsDecoder, WsEvent, WsUrl};
use repod::OwnedMessage;

use crate::net::{self, PROMPT};

/// A raw WebSocket client: handshake and frames by hand, with the crate's codec.
pub struct WsPeer {
    /// The socket, for tests that write raw bytes.
    pub stream: TcpStream,
    decoder: WsDecoder,
    keys: MaskKeys,
    /// Decoded events not yet taken: (opcode, payload); a close is (Close, code bytes + reason).
    inbox: std::collections::VecDeque<(Opcode, Vec<u8>)>,
}

impl WsPeer {
    /// Connects and upgrades on `path`; panics if the server refuses.
    pub fn connect(addr: SocketAddr, path: &str) -> WsPeer {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(PROMPT)).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut peer = WsPeer {
            stream,
            decoder: WsDecoder::new(Role::Client, 64 << 20),
            keys: MaskKeys::new(11),
            inbox: Default::default(),
        };
        let url = WsUrl::parse(&format!("ws://{addr}{path}"))
            .unwrap()
            .unwrap();
        let key = client_key();
        let mut req = Vec::new();
        write_request(&mut req, &url, &key);
        peer.stream.write_all(&req).unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = peer.stream.read(&mut buf).expect("upgrade answer");
            assert!(
                n > 0,
                "closed during the upgrade: {}",
                String::from_utf8_lossy(&head)
            );
            head.extend_from_slice(&buf[..n]);
            if let Some(len) = parse_response(&head, &key, 1 << 16).expect("101") {
                let mut rest = head.split_off(len);
                peer.feed(&mut rest);
                return peer;
            }
        }
    }

    /// Sends `request` as it is (any bytes) and reads the answer. A `101` that accepts `key`
    /// gives the upgraded peer; any other answer is read to the end of the stream and returned
    /// as [`Refusal`].
    pub fn upgrade_raw(
        addr: SocketAddr,
        request: &[u8],
        key: &[u8; 24],
    ) -> Result<WsPeer, Refusal> {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(PROMPT)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream.write_all(request).unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream
                .read(&mut buf)
                .unwrap_or_else(|e| panic!("no answer to the upgrade within {PROMPT:?}: {e}"));
            assert!(
                n > 0,
                "closed with no complete answer: {}",
                String::from_utf8_lossy(&head)
            );
            head.extend_from_slice(&buf[..n]);
            match parse_response(&head, key, 1 << 16) {
                Ok(None) => {}
                Ok(Some(len)) => {
                    let mut rest = head.split_off(len);
                    let mut peer = WsPeer::from_stream(stream);
                    peer.feed(&mut rest);
                    return Ok(peer);
                }
                Err(_) => return Err(Refusal::read_rest(stream, head)),
            }
        }
    }

    /// A peer on an already-upgraded socket.
    fn from_stream(stream: TcpStream) -> WsPeer {
        WsPeer {
            stream,
            decoder: WsDecoder::new(Role::Client, 64 << 20),
            keys: MaskKeys::new(11),
            inbox: Default::default(),
        }
    }

    /// Writes raw bytes (a hand-made frame, a header without its payload...).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    fn feed(&mut self, bytes: &mut [u8]) {
        let inbox = &mut self.inbox;
        self.decoder
            .decode(bytes, |ev| {
                inbox.push_back(match ev {
                    WsEvent::Binary(b) => (Opcode::Binary, b.to_vec()),
                    WsEvent::Text(t) => (Opcode::Text, t.as_bytes().to_vec()),
                    WsEvent::Ping(b) => (Opcode::Ping, b.to_vec()),
                    WsEvent::Pong(b) => (Opcode::Pong, b.to_vec()),
                    WsEvent::Close { code, reason } => {
                        let mut v = code.map_or(vec![], |c| c.to_be_bytes().to_vec());
                        v.extend_from_slice(reason.as_bytes());
                        (Opcode::Close, v)
                    }
                });
                ControlFlow::Continue(())
            })
            .expect("valid frames from the server");
    }

    /// The next frame from the server; `None` at end of stream.
    pub fn next(&mut self) -> Option<(Opcode, Vec<u8>)> {
        let mut buf = [0u8; 65536];
        while self.inbox.is_empty() {
            let n = self.stream.read(&mut buf).expect("read");
            if n == 0 {
                return None;
            }
            self.feed(&mut buf[..n]);
        }
        self.inbox.pop_front()
    }

    /// The next frame, which must be a binary message holding a valid repod message.
    pub fn recv(&mut self) -> OwnedMessage {
        let (op, payload) = self.next().expect("a frame");
        assert_eq!(op, Opcode::Binary, "payload {payload:?}");
        OwnedMessage::parse(payload).expect("a valid message")
    }

    /// Sends one masked frame.
    pub fn send_frame(&mut self, op: Opcode, fin: bool, payload: &[u8]) {
        let mut w = Vec::new();
        encode_frame(&mut w, op, fin, payload, Some(self.keys.next_key()));
        self.stream.write_all(&w).unwrap();
    }

    /// Sends `m` as one binary message.
    pub fn send(&mut self, m: &impl repod::Encode) {
        self.send_frame(Opcode::Binary, true, &net::payload(m));
    }

    /// Sends a close frame with `code`.
    pub fn send_close(&mut self, code: u16) {
        let mut w = Vec::new();
        encode_close(&mut w, code, "", Some(self.keys.next_key()));
        self.stream.write_all(&w).unwrap();
    }
}

/// A refused upgrade: the server's whole answer, read to the end of the stream.
#[derive(Debug)]
pub struct Refusal {
    /// The HTTP status.
    pub status: u16,
    /// The head and body, as text.
    pub text: String,
}

impl Refusal {
    fn read_rest(mut stream: TcpStream, mut got: Vec<u8>) -> Refusal {
        // Bounded by the socket's read timeout: the server must close after its answer.
        stream
            .read_to_end(&mut got)
            .expect("the server closes after refusing");
        let text = String::from_utf8_lossy(&got).into_owned();
        let status = text
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP/1.1 answer: {text:?}"));
        Refusal { status, text }
    }
}
