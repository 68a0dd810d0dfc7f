//! One connection's TLS layer, sans-IO: ciphertext in, plaintext out, and the reverse. No
//! sockets, no clocks; the reactor moves the bytes.
//!
//! It drives rustls's unbuffered API, which works on buffers the caller owns. The reactor
//! reads every connection into one shared buffer; records are decrypted where they lie, and
//! only the tail of a record cut by the end of a read is kept here, until the rest arrives. An
//! idle connection therefore holds no buffer at all: only rustls's own state.
//!
//! rustls 0.23 still copies each decrypted record into a `Vec` of its own, and each encrypted
//! record through one (its code marks in-place decryption as future work): one allocation per
//! record in each direction, which repod's batching keeps to one per read and one per write
//! rather than one per message.

use std::sync::Arc;

use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::ServerName;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use rustls::{ClientConfig, ServerConfig};

use super::TlsError;

/// Room reserved for a record's header, padding and tag beyond its plaintext.
const RECORD_OVERHEAD: usize = 64;
/// Most plaintext in one record.
const MAX_FRAGMENT: usize = 16 * 1024;
/// A partial record kept between reads is at most this long: the largest record TLS allows
/// (2^14 + 2048 bytes of payload, and its header). Handshake messages spanning records are
/// bounded by rustls itself.
const MAX_KEPT: usize = 64 * 1024;

enum Side {
    Server(UnbufferedServerConnection),
    Client(UnbufferedClientConnection),
}

/// What [`Session::receive`] found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Received {
    /// The peer sent `close_notify`: it sends nothing more.
    pub(crate) peer_closed: bool,
}

/// See the [module documentation](self).
pub(crate) struct Session {
    side: Side,
    /// Ciphertext received but not yet processed: the start of a record, or handshake
    /// records rustls holds spans of until a whole handshake message has arrived.
    kept: Vec<u8>,
    /// `close_notify` was written.
    closed: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("handshaking", &self.is_handshaking())
            .field("kept", &self.kept.len())
            .finish_non_exhaustive()
    }
}

/// Runs `$body` with `$c` bound to the connection of either side (their states are generic
/// over the side, their constructors and `process_tls_records` are not).
macro_rules! either {
    ($side:expr, $c:ident => $body:expr) => {
        match $side {
            Side::Server($c) => $body,
            Side::Client($c) => $body,
        }
    };
}

impl Session {
    /// The server side of a new connection.
    pub(crate) fn server(config: Arc<ServerConfig>) -> Result<Session, TlsError> {
        let conn = UnbufferedServerConnection::new(config).map_err(TlsError::from)?;
        Ok(Session {
            side: Side::Server(conn),
            kept: Vec::new(),
            closed: false,
        })
    }

    /// The client side of a new connection to `name`. Its first flight (ClientHello) is
    /// appended to `out` at once.
    pub(crate) fn client(
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        out: &mut Vec<u8>,
    ) -> Result<Session, TlsError> {
        let conn = UnbufferedClientConnection::new(config, name).map_err(TlsError::from)?;
        let mut s = Session {
            side: Side::Client(conn),
            kept: Vec::new(),
            closed: false,
        };
        let mut plain = Vec::new();
        s.process(None, &mut plain, out)?;
        Ok(s)
    }

    /// Whether the handshake is still going on.
    pub(crate) fn is_handshaking(&self) -> bool {
        either!(&self.side, c => c.is_handshaking())
    }

    /// Whether part of a record is waiting for the rest: a peer that closes now cut a record.
    pub(crate) fn in_record(&self) -> bool {
        !self.kept.is_empty()
    }

    /// Processes ciphertext just read: application data is appended to `plain`, anything the
    /// session must send (handshake flights, alerts, tickets) to `out`. `incoming` may be
    /// decrypted in place. What it leaves unfinished is kept for the next call.
    pub(crate) fn receive(
        &mut self,
        incoming: &mut [u8],
        plain: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<Received, TlsError> {
        if self.kept.is_empty() {
            // The common case: records arrived whole, and are processed where they were read.
            let (consumed, received) = self.process(Some(incoming), plain, out)?;
            let rest = &incoming[consumed..];
            if !rest.is_empty() {
                if rest.len() > MAX_KEPT {
                    return Err(TlsError::Protocol("record too large".into()));
                }
                self.kept.extend_from_slice(rest);
            }
            Ok(received)
        } else {
            let mut kept = std::mem::take(&mut self.kept);
            kept.extend_from_slice(incoming);
            let result = self.process(Some(&mut kept), plain, out);
            if let Ok((consumed, _)) = &result {
                kept.drain(..*consumed);
                if kept.len() > MAX_KEPT {
                    return Err(TlsError::Protocol("record too large".into()));
                }
            }
            // Released once empty: an idle connection keeps no buffer.
            if !kept.is_empty() {
                self.kept = kept;
            }
            result.map(|(_, r)| r)
        }
    }

    /// Encrypts `data` into `out` as application data records. Returns `false`, encrypting
    /// nothing, while the handshake has not finished.
    pub(crate) fn encrypt(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<bool, TlsError> {
        if data.is_empty() || self.closed {
            return Ok(!self.is_handshaking());
        }
        self.write(Write::Data(data), out)
    }

    /// Appends `close_notify` to `out`, once; nothing while the handshake is going on (the
    /// connection just closes then).
    pub(crate) fn close_notify(&mut self, out: &mut Vec<u8>) -> Result<(), TlsError> {
        if self.closed || self.is_handshaking() {
            return Ok(());
        }
        self.closed = true;
        self.write(Write::CloseNotify, out).map(drop)
    }

    /// Brings the connection to its "may write" state, first encoding whatever it has to send
    /// (a key update, a ticket) into `out`, then writes `what`. What is kept unprocessed goes
    /// in again: rustls's handshake spans point into it.
    fn write(&mut self, what: Write<'_>, out: &mut Vec<u8>) -> Result<bool, TlsError> {
        let mut kept = std::mem::take(&mut self.kept);
        let result = loop {
            let (discard, step) = either!(&mut self.side, c => {
                let UnbufferedStatus { discard, state } = c.process_tls_records(&mut kept[..]);
                let step = match state {
                    Err(e) => Err(TlsError::from(e)),
                    Ok(ConnectionState::WriteTraffic(mut w)) => {
                        let start = out.len();
                        let room = match what {
                            Write::Data(d) => d.len() + d.len().div_ceil(MAX_FRAGMENT) * RECORD_OVERHEAD,
                            Write::CloseNotify => RECORD_OVERHEAD,
                        };
                        out.resize(start + room, 0);
                        loop {
                            let r = match what {
                                Write::Data(d) => w.encrypt(d, &mut out[start..]),
                                Write::CloseNotify => w.queue_close_notify(&mut out[start..]),
                            };
                            match r {
                                Ok(n) => {
                                    out.truncate(start + n);
                                    break Ok(Step::Done(true));
                                }
                                Err(EncryptError::InsufficientSize(s)) => {
                                    out.resize(start + s.required_size, 0);
                                }
                                Err(e) => {
                                    out.truncate(start);
                                    break Err(TlsError::Protocol(e.to_string()));
                                }
                            }
                        }
                    }
                    Ok(ConnectionState::EncodeTlsData(mut e)) => {
                        encode(out, |buf| e.encode(buf)).map(|()| Step::Again)
                    }
                    Ok(ConnectionState::TransmitTlsData(t)) => {
                        t.done();
                        Ok(Step::Again)
                    }
                    // Still handshaking, or closed: nothing can be written now.
                    Ok(_) => Ok(Step::Done(false)),
                };
                (discard, step)
            });
            kept.drain(..discard);
            match step {
                Ok(Step::Again) => continue,
                Ok(Step::Done(wrote)) => break Ok(wrote),
                Err(e) => break Err(e),
            }
        };
        self.kept = kept;
        result
    }

    /// Processes records until rustls needs more input (or, with `None`, only produces what it
    /// has to send). Returns how many bytes of `incoming` are done with.
    fn process(
        &mut self,
        mut incoming: Option<&mut [u8]>,
        plain: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(usize, Received), TlsError> {
        let mut consumed = 0;
        let mut received = Received::default();
        let mut empty = [0u8; 0];
        loop {
            let buf: &mut [u8] = match incoming.as_deref_mut() {
                Some(b) => &mut b[consumed..],
                None => &mut empty,
            };
            let (discard, step) = either!(&mut self.side, c => {
                let UnbufferedStatus { mut discard, state } = c.process_tls_records(buf);
                let state = match state {
                    Ok(state) => state,
                    Err(e) => {
                        self.alert(out);
                        return Err(TlsError::from(e));
                    }
                };
                let step = match state {
                    ConnectionState::ReadTraffic(mut r) => {
                        while let Some(record) = r.next_record() {
                            let record = match record {
                                Ok(record) => record,
                                Err(e) => {
                                    drop(r);
                                    self.alert(out);
                                    return Err(TlsError::from(e));
                                }
                            };
                            discard += record.discard;
                            plain.extend_from_slice(record.payload);
                        }
                        Step::Again
                    }
                    ConnectionState::EncodeTlsData(mut e) => {
                        encode(out, |buf| e.encode(buf))?;
                        Step::Again
                    }
                    ConnectionState::TransmitTlsData(t) => {
                        // The reactor writes `out` as soon as this call returns.
                        t.done();
                        Step::Again
                    }
                    ConnectionState::PeerClosed => {
                        received.peer_closed = true;
                        Step::Again
                    }
                    // Early data is never enabled, so never offered.
                    ConnectionState::ReadEarlyData(_) => Step::Done(false),
                    // Waiting for more input, or able to write: either way, this input is done.
                    _ => Step::Done(false),
                };
                (discard, step)
            });
            consumed += discard;
            if let Step::Done(_) = step {
                return Ok((consumed, received));
            }
        }
    }
}

impl Session {
    /// After an error, encodes the fatal alert rustls queued for the peer (`bad_record_mac`,
    /// `unexpected_message`, `protocol_version`...) into `out`, so the peer learns why. One
    /// call only: rustls hands out what it queued before looking at input again.
    fn alert(&mut self, out: &mut Vec<u8>) {
        either!(&mut self.side, c => {
            let UnbufferedStatus { state, .. } = c.process_tls_records(&mut []);
            if let Ok(ConnectionState::EncodeTlsData(mut e)) = state {
                let _ = encode(out, |buf| e.encode(buf));
            }
        });
    }
}

enum Step {
    Again,
    Done(bool),
}

#[derive(Clone, Copy)]
enum Write<'a> {
    Data(&'a [u8]),
    CloseNotify,
}

/// Appends what `encode` writes (a handshake record) to `out`, growing it by exactly the
/// record's size: asked first with no room, rustls says how much it needs (a guess reserved per
/// record grew a handshake's buffer past the size of its flight).
fn encode(
    out: &mut Vec<u8>,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
) -> Result<(), TlsError> {
    let start = out.len();
    loop {
        match encode(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(s)) => out.resize(start + s.required_size, 0),
            Err(EncodeError::AlreadyEncoded) => {
                out.truncate(start);
                return Ok(());
            }
        }
    }
}
