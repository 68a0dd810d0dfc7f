//! WebSocket frames: an incremental decoder that unmasks in place, and encoders that write
//! straight into an output buffer.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! | Masking-key (continued)       |          Payload Data         |
//! +-------------------------------- - - - - - - - - - - - - - - - +
//! ```
//!
//! [`WsDecoder`] is fed whatever a read returned, mutably, so a client's masked payload is
//! unmasked where it lies and handed out as a slice: a frame that arrives whole is never copied.
//! Only a frame split across reads is gathered in the decoder's own buffer (grown as bytes
//! arrive, never to an announced length), and only a fragmented message is assembled in a
//! second one. Both are released after a large message, so an idle connection owns no buffer.
//!
//! Every limit is checked as early as the bytes allow: the first two bytes (mask bit, reserved
//! bits, opcode, control frame rules) before the rest of the header arrives, and the length
//! (per frame and summed over fragments) before any payload is stored.
//!
//! ```
//! use std::ops::ControlFlow;
//! use repod::ws::{encode_frame, MaskKeys, Opcode, Role, WsDecoder};
//!
//! let mut wire = Vec::new();
//! let mut keys = MaskKeys::new(42);
//! encode_frame(&mut wire, Opcode::Binary, true, b"\x80", Some(keys.next_key()));
//! encode_frame(&mut wire, Opcode::Ping, true, b"hi", Some(keys.next_key()));
//!
//! let mut decoder = WsDecoder::new(Role::Server, 1024);
//! let mut seen = Vec::new();
//! decoder
//!     .decode(&mut wire, |event| {
//!         seen.push(format!("{event:?}"));
//!         ControlFlow::Continue(())
//!     })
//!     .unwrap();
//! assert_eq!(seen, ["Binary([128])", "Ping([104, 105])"]);
//! ```

use std::ops::ControlFlow;

use super::WsError;

/// A buffer larger than this is released once its frame or message is done.
const KEEP_CAPACITY: usize = 16 * 1024;

/// Longest header: 2 bytes, a 64-bit length and a masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// Which end of the connection the decoder is: it decides which frames must be masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Receives frames from a client: every frame must be masked.
    Server,
    /// Receives frames from a server: no frame may be masked.
    Client,
}

/// A frame's opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// Continues a fragmented message.
    Continuation = 0x0,
    /// A UTF-8 text message (or its first fragment).
    Text = 0x1,
    /// A binary message (or its first fragment): what repod sends.
    Binary = 0x2,
    /// The closing handshake.
    Close = 0x8,
    /// Asks for a pong.
    Ping = 0x9,
    /// Answers a ping.
    Pong = 0xA,
}

impl Opcode {
    fn from_u8(op: u8) -> Option<Opcode> {
        Some(match op {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// What a [`WsDecoder`] hands out: whole messages (fragments already joined) and control frames.
#[derive(Debug, PartialEq, Eq)]
pub enum WsEvent<'a> {
    /// A complete binary message.
    Binary(&'a [u8]),
    /// A complete text message, checked to be UTF-8.
    Text(&'a str),
    /// A ping: answer with a pong carrying the same payload.
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// The peer began (or answered) the closing handshake. Nothing follows it.
    Close {
        /// The status code, if the frame had one.
        code: Option<u16>,
        /// The reason text (may be empty).
        reason: &'a str,
    },
}

/// Incremental decoder of WebSocket frames. See the [module documentation](self).
#[derive(Debug)]
pub struct WsDecoder {
    role: Role,
    max_message_len: usize,
    /// A frame that arrived split across reads, header included.
    partial: Vec<u8>,
    /// The payload so far of a fragmented message.
    message: Vec<u8>,
    /// The opcode of the fragmented message in progress, if any.
    fragmented: Option<Opcode>,
    /// Bytes at the start of `message` known to be valid UTF-8 (text messages only).
    utf8_valid: usize,
    /// A close frame arrived: nothing more is decoded.
    closed: bool,
}

/// A frame header, parsed and checked.
#[derive(Debug, Clone, Copy)]
struct Header {
    fin: bool,
    opcode: Opcode,
    mask: Option<[u8; 4]>,
    header_len: usize,
    payload_len: usize,
}

impl WsDecoder {
    /// A decoder for `role` that rejects messages longer than `max_message_len` bytes.
    pub fn new(role: Role, max_message_len: usize) -> Self {
        WsDecoder {
            role,
            max_message_len,
            partial: Vec::new(),
            message: Vec::new(),
            fragmented: None,
            utf8_valid: 0,
            closed: false,
        }
    }

    /// Heap memory held by the decoder.
    pub fn capacity(&self) -> usize {
        self.partial.capacity() + self.message.capacity()
    }

    /// Bytes held for a frame or a message that is not complete yet.
    pub fn buffered(&self) -> usize {
        self.partial.len() + self.message.len()
    }

    /// Whether a close frame has been decoded.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Feeds `input` and calls `on_event` with each complete message or control frame, in order.
    /// `input` is modified: masked payloads are unmasked where they lie.
    ///
    /// `on_event` returns [`ControlFlow::Break`] to stop early; the rest of `input` is then
    /// discarded. Input after a close frame is discarded too.
    ///
    /// # Errors
    ///
    /// The first protocol violation, as soon as the bytes that show it have arrived. The decoder
    /// is then in an unspecified state; the connection should be closed with
    /// [`WsError::close_code`].
    pub fn decode<F>(&mut self, mut input: &mut [u8], mut on_event: F) -> Result<(), WsError>
    where
        F: FnMut(WsEvent<'_>) -> ControlFlow<()>,
    {
        if self.closed {
            return Ok(());
        }
        if !self.partial.is_empty() {
            let mut partial = std::mem::take(&mut self.partial);
            let result = self.finish_partial(&mut partial, &mut input, &mut on_event);
            match result {
                // Not complete yet: keep gathering.
                Ok(None) => {
                    self.partial = partial;
                    return Ok(());
                }
                Ok(Some(flow)) => {
                    partial.clear();
                    if partial.capacity() <= KEEP_CAPACITY {
                        self.partial = partial;
                    }
                    if flow.is_break() || self.closed {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        }
        // Whole frames straight from the caller's buffer: no copy.
        while input.len() >= 2 {
            let Some(h) = self.parse_header(input)? else {
                break;
            };
            if input.len() - h.header_len < h.payload_len {
                break;
            }
            let (frame, rest) =
                std::mem::take(&mut input).split_at_mut(h.header_len + h.payload_len);
            input = rest;
            let flow = self.frame(h, &mut frame[h.header_len..], &mut on_event)?;
            if flow.is_break() || self.closed {
                return Ok(());
            }
        }
        if !input.is_empty() {
            // Check what can be checked of a split header now, so a violation is not held back
            // until more bytes come.
            if input.len() >= 2 {
                self.parse_header(input)?;
            } else {
                self.check_first_bytes(input[0], None)?;
            }
            self.partial.extend_from_slice(input);
        }
        Ok(())
    }

    /// Completes the frame that straddles reads. `Ok(None)`: still incomplete.
    fn finish_partial<F>(
        &mut self,
        partial: &mut Vec<u8>,
        input: &mut &mut [u8],
        on_event: &mut F,
    ) -> Result<Option<ControlFlow<()>>, WsError>
    where
        F: FnMut(WsEvent<'_>) -> ControlFlow<()>,
    {
        // Gather the header a byte range at a time, checking what each step allows.
        let header = loop {
            if let Some(h) = self.parse_header(partial)? {
                break h;
            }
            let need = if partial.len() < 2 {
                2
            } else {
                header_len(partial[0], partial[1])
            };
            let take = (need - partial.len()).min(input.len());
            if take == 0 {
                return Ok(None);
            }
            let (head, rest) = std::mem::take(input).split_at_mut(take);
            partial.extend_from_slice(head);
            *input = rest;
        };
        let total = header.header_len + header.payload_len;
        let take = (total - partial.len()).min(input.len());
        let (head, rest) = std::mem::take(input).split_at_mut(take);
        partial.extend_from_slice(head);
        *input = rest;
        if partial.len() < total {
            return Ok(None);
        }
        self.frame(header, &mut partial[header.header_len..], on_event)
            .map(Some)
    }

    /// Checks the first header byte, and the second if present, alone.
    fn check_first_bytes(&self, b0: u8, b1: Option<u8>) -> Result<Opcode, WsError> {
        if b0 & 0x70 != 0 {
            return Err(WsError::ReservedBits);
        }
        let opcode = Opcode::from_u8(b0 & 0x0f).ok_or(WsError::UnknownOpcode(b0 & 0x0f))?;
        let fin = b0 & 0x80 != 0;
        if opcode.is_control() && !fin {
            return Err(WsError::FragmentedControl);
        }
        match opcode {
            Opcode::Continuation if self.fragmented.is_none() => {
                return Err(WsError::UnexpectedContinuation)
            }
            Opcode::Text | Opcode::Binary if self.fragmented.is_some() => {
                return Err(WsError::ExpectedContinuation)
            }
            _ => {}
        }
        if let Some(b1) = b1 {
            let masked = b1 & 0x80 != 0;
            match self.role {
                Role::Server if !masked => return Err(WsError::Unmasked),
                Role::Client if masked => return Err(WsError::Masked),
                _ => {}
            }
            let len7 = (b1 & 0x7f) as usize;
            if opcode.is_control() && len7 > 125 {
                return Err(WsError::ControlTooLong(len7));
            }
        }
        Ok(opcode)
    }

    /// Parses and checks a header at the start of `buf`; `Ok(None)` if `buf` does not hold it
    /// all yet (what it holds has been checked).
    fn parse_header(&self, buf: &[u8]) -> Result<Option<Header>, WsError> {
        if buf.len() < 2 {
            if let Some(&b0) = buf.first() {
                self.check_first_bytes(b0, None)?;
            }
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let opcode = self.check_first_bytes(b0, Some(b1))?;
        let header_len = header_len(b0, b1);
        let len7 = b1 & 0x7f;
        let len_end = match len7 {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        if buf.len() < len_end {
            return Ok(None);
        }
        let len: u64 = match len7 {
            126 => u16::from_be_bytes([buf[2], buf[3]]) as u64,
            127 => {
                let l = u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes"));
                if l >> 63 != 0 {
                    return Err(WsError::BadLength);
                }
                l
            }
            n => n as u64,
        };
        if !opcode.is_control() {
            let so_far = if opcode == Opcode::Continuation {
                self.message.len() as u64
            } else {
                0
            };
            let total = so_far.saturating_add(len);
            if total > self.max_message_len as u64 {
                return Err(WsError::TooLarge {
                    len: total,
                    max: self.max_message_len,
                });
            }
        }
        if buf.len() < header_len {
            return Ok(None);
        }
        let mask = (b1 & 0x80 != 0).then(|| {
            let m = &buf[header_len - 4..header_len];
            [m[0], m[1], m[2], m[3]]
        });
        Ok(Some(Header {
            fin: b0 & 0x80 != 0,
            opcode,
            mask,
            header_len,
            // Within max_message_len (data) or 125 (control), so it fits a usize.
            payload_len: len as usize,
        }))
    }

    /// Handles one complete frame whose payload is `payload` (still masked).
    fn frame<F>(
        &mut self,
        h: Header,
        payload: &mut [u8],
        on_event: &mut F,
    ) -> Result<ControlFlow<()>, WsError>
    where
        F: FnMut(WsEvent<'_>) -> ControlFlow<()>,
    {
        if let Some(mask) = h.mask {
            apply_mask(payload, mask);
        }
        Ok(match h.opcode {
            Opcode::Ping => on_event(WsEvent::Ping(payload)),
            Opcode::Pong => on_event(WsEvent::Pong(payload)),
            Opcode::Close => {
                let (code, reason) = parse_close(payload)?;
                self.closed = true;
                on_event(WsEvent::Close { code, reason })
            }
            Opcode::Binary if h.fin => on_event(WsEvent::Binary(payload)),
            Opcode::Text if h.fin => {
                let text = std::str::from_utf8(payload).map_err(|_| WsError::InvalidUtf8)?;
                on_event(WsEvent::Text(text))
            }
            Opcode::Text | Opcode::Binary => {
                self.fragmented = Some(h.opcode);
                self.utf8_valid = 0;
                self.message.extend_from_slice(payload);
                self.check_text_so_far(false)?;
                ControlFlow::Continue(())
            }
            Opcode::Continuation => {
                self.message.extend_from_slice(payload);
                self.check_text_so_far(h.fin)?;
                if !h.fin {
                    return Ok(ControlFlow::Continue(()));
                }
                let kind = self.fragmented.take();
                let message = std::mem::take(&mut self.message);
                let flow = if kind == Some(Opcode::Text) {
                    // Checked by check_text_so_far.
                    let text = std::str::from_utf8(&message).map_err(|_| WsError::InvalidUtf8)?;
                    on_event(WsEvent::Text(text))
                } else {
                    on_event(WsEvent::Binary(&message))
                };
                self.message = message;
                self.message.clear();
                if self.message.capacity() > KEEP_CAPACITY {
                    self.message = Vec::new();
                }
                flow
            }
        })
    }

    /// Fails a fragmented text message as soon as a fragment shows it is not UTF-8, rather than
    /// at its end; a character split between fragments is fine until the last one.
    fn check_text_so_far(&mut self, last: bool) -> Result<(), WsError> {
        if self.fragmented != Some(Opcode::Text) {
            return Ok(());
        }
        match std::str::from_utf8(&self.message[self.utf8_valid..]) {
            Ok(_) => self.utf8_valid = self.message.len(),
            Err(e) if e.error_len().is_none() && !last => self.utf8_valid += e.valid_up_to(),
            Err(_) => return Err(WsError::InvalidUtf8),
        }
        Ok(())
    }
}

/// Header length given its first two bytes.
fn header_len(_b0: u8, b1: u8) -> usize {
    let ext = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 }
}

/// Parses a close frame's payload: nothing, or a status code and a UTF-8 reason.
fn parse_close(payload: &[u8]) -> Result<(Option<u16>, &str), WsError> {
    match payload.len() {
        0 => Ok((None, "")),
        1 => Err(WsError::BadClosePayload),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !is_valid_close_code(code) {
                return Err(WsError::BadCloseCode(code));
            }
            let reason = std::str::from_utf8(&payload[2..]).map_err(|_| WsError::InvalidUtf8)?;
            Ok((Some(code), reason))
        }
    }
}

/// Whether a peer may send `code` in a close frame (RFC 6455 §7.4, and the IANA registry:
/// 1012-1014 were registered later).
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// XORs `payload` with the 4-byte `mask`, eight bytes at a time.
pub fn apply_mask(payload: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let v = u64::from_ne_bytes(chunk.try_into().expect("8 bytes")) ^ wide;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, so the mask is back at its first byte.
    for (b, m) in chunks.into_remainder().iter_mut().zip(mask.iter().cycle()) {
        *b ^= m;
    }
}

/// Writes a header for a frame of `len` payload bytes into `out[..]`; returns its length.
fn write_header(
    out: &mut [u8; MAX_HEADER_LEN],
    opcode: Opcode,
    fin: bool,
    len: usize,
    mask: Option<[u8; 4]>,
) -> usize {
    out[0] = (opcode as u8) | if fin { 0x80 } else { 0 };
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut n = if len < 126 {
        out[1] = mask_bit | len as u8;
        2
    } else if len <= u16::MAX as usize {
        out[1] = mask_bit | 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = mask_bit | 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    if let Some(m) = mask {
        out[n..n + 4].copy_from_slice(&m);
        n += 4;
    }
    n
}

/// Appends one frame to `out`. `mask` is required from a client and forbidden from a server.
pub fn encode_frame(
    out: &mut Vec<u8>,
    opcode: Opcode,
    fin: bool,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    let mut header = [0; MAX_HEADER_LEN];
    let n = write_header(&mut header, opcode, fin, payload.len(), mask);
    out.extend_from_slice(&header[..n]);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(m) = mask {
        apply_mask(&mut out[start..], m);
    }
}

/// Appends a close frame with `code` and `reason` (cut to fit 125 bytes, at a character
/// boundary).
pub fn encode_close(out: &mut Vec<u8>, code: u16, reason: &str, mask: Option<[u8; 4]>) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = [0u8; 125];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    encode_frame(out, Opcode::Close, true, &payload[..2 + end], mask);
}

/// Encodes a binary message in place: reserves a short header, lets `encode` append the
/// payload, then writes the header, moving the payload only when it needs a longer length field
/// (126 bytes and more). Returns the frame's length, or `Err(len)` (with `out` restored) when
/// the payload is over `max`.
pub(crate) fn encode_binary_with(
    out: &mut Vec<u8>,
    max: usize,
    mask: Option<[u8; 4]>,
    encode: impl FnOnce(&mut Vec<u8>),
) -> Result<usize, usize> {
    let start = out.len();
    let short = 2 + if mask.is_some() { 4 } else { 0 };
    out.resize(start + short, 0);
    encode(out);
    let len = out.len() - start - short;
    if len > max {
        out.truncate(start);
        return Err(len);
    }
    let mut header = [0; MAX_HEADER_LEN];
    let n = write_header(&mut header, Opcode::Binary, true, len, mask);
    if n > short {
        let end = out.len();
        out.resize(end + n - short, 0);
        out.copy_within(start + short..end, start + n);
    }
    out[start..start + n].copy_from_slice(&header[..n]);
    if let Some(m) = mask {
        apply_mask(&mut out[start + n..], m);
    }
    Ok(n + len)
}

/// Masking keys for a client's frames: xorshift64* from a random seed.
///
/// RFC 6455 asks for unpredictable keys so that a hostile *script* cannot choose the bytes an
/// intermediary sees; a native client runs no foreign script, so a fast generator seeded from
/// the OS is enough, and no system call is made per frame.
#[derive(Debug, Clone)]
pub struct MaskKeys(u64);

impl MaskKeys {
    /// A generator started from `seed` (0 is replaced: xorshift needs a non-zero state).
    pub fn new(seed: u64) -> Self {
        MaskKeys(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// A generator seeded from the operating system's random source.
    pub fn from_os() -> Self {
        let mut seed = [0u8; 8];
        if getrandom::fill(&mut seed).is_err() {
            // No OS randomness: fall back to the hasher's per-process random keys.
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0);
            seed = h.finish().to_ne_bytes();
        }
        MaskKeys::new(u64::from_ne_bytes(seed))
    }

    /// The next key.
    pub fn next_key(&mut self) -> [u8; 4] {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let b = v.to_be_bytes();
        [b[0], b[1], b[2], b[3]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Ev {
        Bin(Vec<u8>),
        Text(String),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<u16>, String),
    }

    fn events(role: Role, wire: &[u8], chunk: usize, max: usize) -> Result<Vec<Ev>, WsError> {
        let mut d = WsDecoder::new(role, max);
        let mut out = Vec::new();
        for c in wire.chunks(chunk.max(1)) {
            let mut c = c.to_vec();
            d.decode(&mut c, |e| {
                out.push(match e {
                    WsEvent::Binary(b) => Ev::Bin(b.to_vec()),
                    WsEvent::Text(t) => Ev::Text(t.to_owned()),
                    WsEvent::Ping(b) => Ev::Ping(b.to_vec()),
                    WsEvent::Pong(b) => Ev::Pong(b.to_vec()),
                    WsEvent::Close { code, reason } => Ev::Close(code, reason.to_owned()),
                });
                ControlFlow::Continue(())
            })?;
        }
        Ok(out)
    }

    fn masked(frames: &[(Opcode, bool, &[u8])]) -> Vec<u8> {
        let mut keys = MaskKeys::new(7);
        let mut w = Vec::new();
        for (op, fin, p) in frames {
            encode_frame(&mut w, *op, *fin, p, Some(keys.next_key()));
        }
        w
    }

    #[test]
    fn every_chunking_yields_the_same_events() {
        let big = vec![7u8; 70_000];
        let mid = vec![3u8; 300];
        let w = masked(&[
            (Opcode::Binary, true, b"a"),
            (Opcode::Binary, true, b""),
            (Opcode::Text, false, "h\u{e9}".as_bytes()),
            (Opcode::Ping, true, b"p"),
            (Opcode::Continuation, false, b""),
            (Opcode::Continuation, true, "llo \u{1f600}".as_bytes()),
            (Opcode::Binary, true, &big),
            (Opcode::Binary, false, &mid),
            (Opcode::Continuation, true, b"z"),
            (Opcode::Close, true, b"\x03\xe8bye"),
        ]);
        let mut joined = mid.clone();
        joined.push(b'z');
        let expect = vec![
            Ev::Bin(b"a".to_vec()),
            Ev::Bin(vec![]),
            Ev::Ping(b"p".to_vec()),
            Ev::Text("h\u{e9}llo \u{1f600}".into()),
            Ev::Bin(big.clone()),
            Ev::Bin(joined),
            Ev::Close(Some(1000), "bye".into()),
        ];
        for chunk in [1, 2, 3, 5, 7, 13, 64, 4096, 65_536, w.len()] {
            assert_eq!(
                events(Role::Server, &w, chunk, 1 << 20).unwrap(),
                expect,
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn lengths_of_every_width_round_trip() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 100_000] {
            let p: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut w = Vec::new();
            encode_frame(&mut w, Opcode::Binary, true, &p, None);
            let hl = if len < 126 {
                2
            } else if len < 65_536 {
                4
            } else {
                10
            };
            assert_eq!(w.len(), hl + len);
            assert_eq!(
                events(Role::Client, &w, 4096, 1 << 20).unwrap(),
                vec![Ev::Bin(p)]
            );
        }
    }

    #[test]
    fn encode_binary_with_matches_encode_frame() {
        for len in [0, 5, 125, 126, 1000, 65_535, 65_536, 70_000] {
            let p: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            for mask in [None, Some([1, 2, 3, 4])] {
                let mut a = vec![9];
                let n =
                    encode_binary_with(&mut a, 1 << 20, mask, |b| b.extend_from_slice(&p)).unwrap();
                let mut b = vec![9];
                encode_frame(&mut b, Opcode::Binary, true, &p, mask);
                assert_eq!(a, b, "len {len}");
                assert_eq!(n, a.len() - 1);
            }
        }
        let mut out = vec![1, 2];
        assert_eq!(
            encode_binary_with(&mut out, 3, None, |b| b.extend_from_slice(b"abcd")),
            Err(4)
        );
        assert_eq!(out, [1, 2]);
    }

    fn violation(role: Role, wire: &[u8], max: usize) -> WsError {
        // Whole, and a byte at a time: the same error either way.
        let whole = events(role, wire, wire.len(), max).unwrap_err();
        let bytes = events(role, wire, 1, max).unwrap_err();
        assert_eq!(whole, bytes);
        whole
    }

    #[test]
    fn violations_are_caught_with_their_close_codes() {
        let mut unmasked = Vec::new();
        encode_frame(&mut unmasked, Opcode::Binary, true, b"x", None);
        assert_eq!(violation(Role::Server, &unmasked, 100), WsError::Unmasked);
        let m = masked(&[(Opcode::Binary, true, b"x")]);
        assert_eq!(violation(Role::Client, &m, 100), WsError::Masked);
        assert_eq!(
            violation(Role::Server, &[0xc2, 0x80], 100),
            WsError::ReservedBits
        );
        assert_eq!(
            violation(Role::Server, &[0x83, 0x80], 100),
            WsError::UnknownOpcode(3)
        );
        assert_eq!(
            violation(Role::Server, &[0x0b, 0x80], 100),
            WsError::UnknownOpcode(0xb)
        );
        assert_eq!(
            violation(Role::Server, &[0x09, 0x80], 100),
            WsError::FragmentedControl
        );
        assert_eq!(
            violation(Role::Server, &[0x89, 0xfe, 0, 126], 100),
            WsError::ControlTooLong(126)
        );
        assert_eq!(
            violation(Role::Server, &[0x80, 0x80, 0, 0, 0, 0], 100),
            WsError::UnexpectedContinuation
        );
        let two = masked(&[(Opcode::Binary, false, b"a"), (Opcode::Text, true, b"b")]);
        assert_eq!(
            violation(Role::Server, &two, 100),
            WsError::ExpectedContinuation
        );
        let mut huge = vec![0x82, 0xff];
        huge.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(violation(Role::Server, &huge, 100), WsError::BadLength);
        let over = masked(&[(Opcode::Binary, true, &[0; 101])]);
        assert_eq!(
            violation(Role::Server, &over, 100),
            WsError::TooLarge { len: 101, max: 100 }
        );
        let frags = masked(&[
            (Opcode::Binary, false, &[0; 60]),
            (Opcode::Continuation, true, &[0; 41]),
        ]);
        assert_eq!(
            violation(Role::Server, &frags, 100),
            WsError::TooLarge { len: 101, max: 100 }
        );
        let bad_text = masked(&[(Opcode::Text, true, b"\xff")]);
        assert_eq!(
            violation(Role::Server, &bad_text, 100),
            WsError::InvalidUtf8
        );
        let bad_reason = masked(&[(Opcode::Close, true, b"\x03\xe8\xc0\xaf")]);
        assert_eq!(
            violation(Role::Server, &bad_reason, 100),
            WsError::InvalidUtf8
        );
        let one = masked(&[(Opcode::Close, true, b"\x03")]);
        assert_eq!(violation(Role::Server, &one, 100), WsError::BadClosePayload);
        let code = masked(&[(Opcode::Close, true, &1005u16.to_be_bytes())]);
        assert_eq!(
            violation(Role::Server, &code, 100),
            WsError::BadCloseCode(1005)
        );
        assert_eq!(WsError::Unmasked.close_code(), 1002);
        assert_eq!(WsError::InvalidUtf8.close_code(), 1007);
        assert_eq!(WsError::TextMessage.close_code(), 1003);
    }

    #[test]
    fn invalid_utf8_in_a_fragment_fails_before_the_message_ends() {
        let w = masked(&[(Opcode::Text, false, b"ok\xff")]);
        assert_eq!(
            events(Role::Server, &w, w.len(), 100),
            Err(WsError::InvalidUtf8)
        );
        // A character split across fragments is fine.
        let w = masked(&[
            (Opcode::Text, false, b"\xe2\x82"),
            (Opcode::Continuation, true, b"\xac"),
        ]);
        assert_eq!(
            events(Role::Server, &w, 3, 100).unwrap(),
            vec![Ev::Text("\u{20ac}".into())]
        );
        // ... but not at the end of the message.
        let w = masked(&[
            (Opcode::Text, false, b"a"),
            (Opcode::Continuation, true, b"\xe2\x82"),
        ]);
        assert_eq!(events(Role::Server, &w, 3, 100), Err(WsError::InvalidUtf8));
    }

    #[test]
    fn oversize_is_rejected_before_buffering() {
        let mut d = WsDecoder::new(Role::Server, 1000);
        let mut head = vec![0x82, 0xff];
        head.extend_from_slice(&(1u64 << 40).to_be_bytes());
        let err = d
            .decode(&mut head, |_| ControlFlow::Continue(()))
            .unwrap_err();
        assert!(matches!(err, WsError::TooLarge { .. }));
        assert!(d.capacity() < 64);
    }

    #[test]
    fn buffers_are_released_after_large_messages() {
        let big = vec![1u8; 100_000];
        let w = masked(&[
            (Opcode::Binary, false, &big),
            (Opcode::Continuation, true, &big),
        ]);
        let mut d = WsDecoder::new(Role::Server, 1 << 20);
        let mut n = 0;
        for c in w.chunks(1000) {
            d.decode(&mut c.to_vec(), |_| {
                n += 1;
                ControlFlow::Continue(())
            })
            .unwrap();
        }
        assert_eq!(n, 1);
        assert_eq!(d.capacity(), 0);
    }

    #[test]
    fn nothing_is_decoded_after_close_and_break_stops() {
        let w = masked(&[(Opcode::Close, true, b""), (Opcode::Binary, true, b"late")]);
        assert_eq!(
            events(Role::Server, &w, 4, 100).unwrap(),
            vec![Ev::Close(None, String::new())]
        );
        let mut w = masked(&[(Opcode::Binary, true, b"1"), (Opcode::Binary, true, b"2")]);
        let mut d = WsDecoder::new(Role::Server, 100);
        let mut n = 0;
        d.decode(&mut w, |_| {
            n += 1;
            ControlFlow::Break(())
        })
        .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn mask_is_an_involution_at_every_length_and_close_reasons_are_cut() {
        for len in 0..40 {
            let orig: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut p = orig.clone();
            apply_mask(&mut p, [0xde, 0xad, 0xbe, 0xef]);
            for (i, (a, b)) in p.iter().zip(&orig).enumerate() {
                assert_eq!(*a, b ^ [0xde, 0xad, 0xbe, 0xef][i % 4]);
            }
        }
        let mut out = Vec::new();
        encode_close(&mut out, 1001, &"\u{e9}".repeat(100), None);
        assert_eq!(out.len(), 2 + 2 + 122);
        assert_eq!(
            events(Role::Client, &out, 5, 10).unwrap(),
            vec![Ev::Close(Some(1001), "\u{e9}".repeat(61))]
        );
    }
}
