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
