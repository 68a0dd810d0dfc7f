//! Length-prefixed framing, with no sockets and no clocks.
//!
//! ```text
//! +--------------------+---------------------------+
//! | 4 bytes, u32, BE   | N bytes: msgpack payload  |
//! | N = payload length |                           |
//! +--------------------+---------------------------+
//! ```
//!
//! [`FrameDecoder`] is fed whatever a read returned, from one byte to many frames, and hands out
//! each complete payload as a slice. Whole frames are handed out straight from the caller's
//! buffer; only a frame split across reads is copied, into the decoder's own buffer, which grows
//! as bytes arrive (never to the length a peer merely announces) and is released once a large
//! frame is done. An idle connection therefore owns no buffer at all.
//!
//! The announced length is checked against the maximum before a single byte of the frame is
//! stored.
//!
//! ```
//! use repod::frame::{encode_frame, FrameDecoder};
//!
//! let mut wire = Vec::new();
//! encode_frame(&mut wire, b"\x81\xa6action\xa4ping").unwrap();
//! encode_frame(&mut wire, b"\x80").unwrap();
//!
//! let mut decoder = FrameDecoder::new(1024);
//! let mut frames = Vec::new();
//! for byte in wire.chunks(1) {
//!     decoder
//!         .decode(byte, |payload| {
//!             frames.push(payload.to_vec());
//!             std::ops::ControlFlow::Continue(())
//!         })
//!         .unwrap();
//! }
//! assert_eq!(frames, [b"\x81\xa6action\xa4ping".to_vec(), b"\x80".to_vec()]);
//! ```

use std::ops::ControlFlow;

use crate::Error;

/// Size of the length prefix.
pub const HEADER_LEN: usize = 4;

/// A partial frame buffer larger than this is released once its frame is complete, so one big
/// message does not pin memory for the rest of the connection's life.
const KEEP_CAPACITY: usize = 16 * 1024;

/// Incremental decoder of length-prefixed frames.
///
/// See the [module documentation](self) for the buffering strategy.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    /// Bytes of a frame that arrived split across reads (header included).
    partial: Vec<u8>,
    max_frame_len: usize,
}

impl FrameDecoder {
    /// A decoder that rejects frames whose payload is longer than `max_frame_len` bytes.
    pub fn new(max_frame_len: usize) -> Self {
        FrameDecoder {
            partial: Vec::new(),
            max_frame_len,
        }
    }

    /// The maximum payload length this decoder accepts.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Bytes held for a frame that is not complete yet.
    pub fn buffered(&self) -> usize {
        self.partial.len()
    }

    /// Heap memory held by the decoder.
    pub fn capacity(&self) -> usize {
        self.partial.capacity()
    }

    /// Feeds `input` and calls `on_frame` with each complete payload, in order.
    ///
    /// `on_frame` returns [`ControlFlow::Break`] to stop early (the connection was closed by a
    /// handler, say); the rest of `input` is then discarded.
    ///
    /// # Errors
    ///
    /// [`Error::FrameTooLarge`] as soon as a length prefix exceeds the maximum. The decoder is
    /// then in an unspecified state and the connection should be closed.
    pub fn decode<F>(&mut self, mut input: &[u8], mut on_frame: F) -> Result<(), Error>
    where
        F: FnMut(&[u8]) -> ControlFlow<()>,
    {
        if !self.partial.is_empty() {
            // Finish the frame that straddles the previous read first.
            if self.partial.len() < HEADER_LEN {
                let take = (HEADER_LEN - self.partial.len()).min(input.len());
                self.partial.extend_from_slice(&input[..take]);
                input = &input[take..];
                if self.partial.len() < HEADER_LEN {
                    return Ok(());
                }
            }
            let len = self.check_header(&self.partial[..HEADER_LEN])?;
            let missing = HEADER_LEN + len - self.partial.len();
            let take = missing.min(input.len());
            self.partial.extend_from_slice(&input[..take]);
            input = &input[take..];
            if take < missing {
                return Ok(());
            }
            let flow = on_frame(&self.partial[HEADER_LEN..]);
            self.partial.clear();
            if self.partial.capacity() > KEEP_CAPACITY {
                self.partial = Vec::new();
            }
            if flow.is_break() {
                return Ok(());
            }
        }
        // Whole frames straight from the caller's buffer: no copy.
        while input.len() >= HEADER_LEN {
            let len = self.check_header(&input[..HEADER_LEN])?;
            if input.len() < HEADER_LEN + len {
                break;
            }
            let (frame, rest) = input.split_at(HEADER_LEN + len);
            input = rest;
            if on_frame(&frame[HEADER_LEN..]).is_break() {
                return Ok(());
            }
        }
        self.partial.extend_from_slice(input);
        Ok(())
    }

    fn check_header(&self, header: &[u8]) -> Result<usize, Error> {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len > self.max_frame_len {
            return Err(Error::FrameTooLarge {
                len,
                max: self.max_frame_len,
            });
        }
        Ok(len)
    }
}

/// Appends one frame (length prefix and `payload`) to `out`.
///
/// # Errors
///
/// [`Error::FrameTooLarge`] if `payload` does not fit a 32-bit length.
pub fn encode_frame(out: &mut Vec<u8>, payload: &[u8]) -> Result<(), Error> {
    let len = u32::try_from(payload.len()).map_err(|_| Error::FrameTooLarge {
        len: payload.len(),
        max: u32::MAX as usize,
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// The payloads of the whole frames in `framed`, in order; a trailing partial frame is ignored.
/// For buffers this crate framed itself (a handle's messages, a broadcast).
pub(crate) fn payloads(mut framed: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let header = framed.get(..HEADER_LEN)?;
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let payload = framed.get(HEADER_LEN..HEADER_LEN + len)?;
        framed = &framed[HEADER_LEN + len..];
        Some(payload)
    })
}

/// Encodes a frame in place: writes a placeholder prefix, lets `encode` append the payload, then
/// patches the prefix. On error (payload over `max`) `out` is restored to its previous length.
pub(crate) fn encode_frame_with(
    out: &mut Vec<u8>,
    max: usize,
    encode: impl FnOnce(&mut Vec<u8>),
) -> Result<usize, Error> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    encode(out);
    let len = out.len() - start - HEADER_LEN;
    if len > max || len > u32::MAX as usize {
        out.truncate(start);
        return Err(Error::FrameTooLarge { len, max });
    }
    out[start..start + HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(len + HEADER_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames_of(wire: &[u8], chunk: usize, max: usize) -> Result<Vec<Vec<u8>>, Error> {
        let mut d = FrameDecoder::new(max);
        let mut out = Vec::new();
        for c in wire.chunks(chunk.max(1)) {
            d.decode(c, |p| {
                out.push(p.to_vec());
                ControlFlow::Continue(())
            })?;
        }
        Ok(out)
    }

    fn wire(payloads: &[&[u8]]) -> Vec<u8> {
        let mut w = Vec::new();
        for p in payloads {
            encode_frame(&mut w, p).unwrap();
        }
        w
    }

    #[test]
    fn every_chunking_yields_the_same_frames() {
        let big = vec![7u8; 70_000];
        let payloads: Vec<&[u8]> = vec![b"a", b"", b"hello world", &big, b"z"];
        let w = wire(&payloads);
        for chunk in [1, 2, 3, 4, 5, 7, 64, 4096, 65_536, w.len()] {
            let got = frames_of(&w, chunk, 1 << 20).unwrap();
            assert_eq!(got.len(), payloads.len(), "chunk {chunk}");
            for (g, p) in got.iter().zip(&payloads) {
                assert_eq!(g.as_slice(), *p, "chunk {chunk}");
            }
        }
    }

    #[test]
    fn oversize_is_rejected_at_the_header_before_buffering() {
        let mut d = FrameDecoder::new(10);
        let err = d
            .decode(&[0, 0, 0, 11], |_| ControlFlow::Continue(()))
            .unwrap_err();
        assert!(matches!(err, Error::FrameTooLarge { len: 11, max: 10 }));
        // Split header: still rejected before any payload is stored.
        let mut d = FrameDecoder::new(10);
        d.decode(&[0xff, 0xff], |_| ControlFlow::Continue(()))
            .unwrap();
        let err = d
            .decode(&[0xff, 0xff, 1, 2, 3], |_| ControlFlow::Continue(()))
            .unwrap_err();
        assert!(matches!(err, Error::FrameTooLarge { .. }));
        assert!(d.capacity() < 64);
    }

    #[test]
    fn exact_maximum_is_accepted() {
        let w = wire(&[&[1u8; 10]]);
        assert_eq!(frames_of(&w, 3, 10).unwrap().len(), 1);
    }

    #[test]
    fn break_stops_delivery() {
        let w = wire(&[b"1", b"2", b"3"]);
        let mut d = FrameDecoder::new(100);
        let mut n = 0;
        d.decode(&w, |_| {
            n += 1;
            ControlFlow::Break(())
        })
        .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn large_partial_buffer_is_released() {
        let big = vec![1u8; 100_000];
        let w = wire(&[&big]);
        let mut d = FrameDecoder::new(1 << 20);
        for c in w.chunks(1000) {
            d.decode(c, |_| ControlFlow::Continue(())).unwrap();
        }
        assert_eq!(d.buffered(), 0);
        assert_eq!(d.capacity(), 0);
    }

    #[test]
    fn encode_frame_with_rolls_back_oversize() {
        let mut out = vec![9];
        let err = encode_frame_with(&mut out, 3, |b| b.extend_from_slice(b"abcd")).unwrap_err();
        assert!(matches!(err, Error::FrameTooLarge { len: 4, max: 3 }));
        assert_eq!(out, [9]);
        assert_eq!(
            encode_frame_with(&mut out, 3, |b| b.extend_from_slice(b"abc")).unwrap(),
            7
        );
        assert_eq!(out, [9, 0, 0, 0, 3, b'a', b'b', b'c']);
    }
}
