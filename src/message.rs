//! Incoming messages, read in place.
//!
//! A [`Message`] borrows one frame's payload. Building it validates the whole payload once, in
//! a single pass with no allocation: well-formed msgpack, a map at the top, UTF-8 strings,
//! nesting no deeper than the configured maximum, element counts that fit in the bytes present.
//! The `"action"` value is located during that pass. Fields are then read on demand by walking
//! the map, and an owned [`rmpv::Value`] is built only when a handler asks for one.
//!
//! ```
//! use repod::{msg, Encode, Message};
//!
//! let mut payload = Vec::new();
//! msg! { "action": "move", "x": 3.5, "y": -2, "name": "Alice" }.encode(&mut payload);
//!
//! let m = Message::parse(&payload).unwrap();
//! assert_eq!(m.action(), "move");
//! assert_eq!(m.f64("x").unwrap(), 3.5);
//! assert_eq!(m.i64("y").unwrap(), -2);
//! assert_eq!(m.str("name").unwrap(), "Alice");
//! assert!(m.str("missing").is_err());
//! ```

use std::fmt;

use bytes::Bytes;
use rmp::Marker;

use crate::encode::Encode;
use crate::Error;

/// Default maximum nesting of arrays and maps inside a message (the top-level map is level 1).
pub const DEFAULT_MAX_DEPTH: usize = 32;

/// The most nesting any configuration allows. Validation recurses once per level, so this
/// bounds the stack a hostile message can make the reactor use, whatever limit is configured.
pub const MAX_DEPTH_LIMIT: usize = 256;

/// One received message: a validated msgpack map, borrowed from the connection's read buffer.
#[derive(Clone, Copy)]
pub struct Message<'a> {
    payload: &'a [u8],
    /// The action's UTF-8 bytes (checked while validating): kept as bytes so that routing,
    /// which compares bytes, does not decode the string a second time.
    action: &'a [u8],
    has_action: bool,
    layout: Layout,
}

/// Where things are in the top-level map, found while validating.
#[derive(Debug, Clone, Copy, Default)]
struct Layout {
    /// Offset of the first entry (just past the map header).
    body_start: u32,
    /// Number of entries.
    entries: u32,
    /// How many entries have the key "action" (more than one is legal msgpack).
    action_keys: u32,
    /// Byte range of the last "action" entry, key and value.
    action_entry: (u32, u32),
}

impl<'a> Message<'a> {
    /// Validates `payload` with the default nesting limit and returns a view of it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMsgpack`], [`Error::NotAMap`], [`Error::InvalidUtf8`],
    /// [`Error::ActionNotString`] or [`Error::TooDeep`].
    pub fn parse(payload: &'a [u8]) -> Result<Self, Error> {
        Self::parse_with_depth(payload, DEFAULT_MAX_DEPTH)
    }

    /// Validates `payload`, allowing arrays and maps nested `max_depth` levels deep (at most
    /// [`MAX_DEPTH_LIMIT`]).
    ///
    /// # Errors
    ///
    /// As [`Message::parse`].
    pub fn parse_with_depth(payload: &'a [u8], max_depth: usize) -> Result<Self, Error> {
        let max_depth = max_depth.min(MAX_DEPTH_LIMIT);
        let mut v = Validator {
            buf: payload,
            pos: 0,
            max_depth,
        };
        let (marker, _) = v.marker()?;
        if !matches!(marker, Marker::FixMap(_) | Marker::Map16 | Marker::Map32) {
            // Still report broken msgpack as such, rather than as "not a map".
            v.pos = 0;
            v.value(1)?;
            v.finish()?;
            return Err(Error::NotAMap);
        }
        if max_depth == 0 {
            return Err(Error::TooDeep { max: max_depth });
        }
        v.pos = 0;
        let message = Self::scan::<false>(payload, &mut v)?;
        v.finish()?;
        Ok(message)
    }

    /// A view of a payload that [`parse_with_depth`](Self::parse_with_depth) already accepted:
    /// only locates the action, without checking the whole payload again. On a payload that was
    /// not validated, accessors return `None`/errors rather than misbehave.
    pub(crate) fn from_validated(payload: &'a [u8]) -> Self {
        let mut v = Validator {
            buf: payload,
            pos: 0,
            max_depth: MAX_DEPTH_LIMIT,
        };
        Self::scan::<true>(payload, &mut v).unwrap_or(Message {
            payload,
            action: b"",
            has_action: false,
            layout: Layout::default(),
        })
    }

    /// Walks the top-level map once: validates each entry (unless `TRUSTED`), finds the action
    /// and records where its entry lies, so a reply can copy the rest without decoding it.
    fn scan<const TRUSTED: bool>(payload: &'a [u8], v: &mut Validator<'a>) -> Result<Self, Error> {
        let (marker, _) = v.marker()?;
        let entries = match marker {
            Marker::FixMap(n) => n as usize,
            Marker::Map16 => v.len_u16()?,
            Marker::Map32 => v.len_u32()?,
            _ => return Err(Error::NotAMap),
        };
        v.plausible(entries.saturating_mul(2))?;
        let mut layout = Layout {
            body_start: v.pos as u32,
            entries: entries as u32,
            ..Layout::default()
        };
        let mut action = None;
        for _ in 0..entries {
            let key_start = v.pos;
            if TRUSTED {
                v.skip_trusted()?;
            } else {
                v.value(2)?;
            }
            let value_start = v.pos;
            if TRUSTED {
                v.skip_trusted()?;
            } else {
                v.value(2)?;
            }
            // Any str encoding of "action" counts (fixstr is usual; str8 is just as valid).
            if is_action_key(&payload[key_start..value_start]) {
                // Python keeps the last of duplicate keys; so do we.
                action = Some(value_start);
                layout.action_keys += 1;
                layout.action_entry = (key_start as u32, v.pos as u32);
            }
        }
        let action = match action {
            Some(at) => Some(str_body_at(payload, at).ok_or_else(|| Error::ActionNotString)?),
            None => None,
        };
        Ok(Message {
            payload,
            action: action.unwrap_or(b""),
            has_action: action.is_some(),
            layout,
        })
    }

    /// The `"action"` value, or `""` when the map has no `"action"` key.
    pub fn action(&self) -> &'a str {
        // Validation checked these bytes are UTF-8, so this never falls back.
        std::str::from_utf8(self.action).unwrap_or("")
    }

    /// The action's bytes, for the route tables (which compare bytes).
    pub(crate) fn action_bytes(&self) -> &'a [u8] {
        self.action
    }

    /// Whether the map has an `"action"` key.
    pub fn has_action(&self) -> bool {
        self.has_action
    }

    /// The raw msgpack payload (without the length prefix).
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// The whole message as a [`Field`] (a map).
    pub fn as_field(&self) -> Field<'a> {
        Field { raw: self.payload }
    }

    /// The value stored under the string key `key`, if any.
    pub fn get(&self, key: &str) -> Option<Field<'a>> {
        self.as_field().get(key)
    }

    /// Every `(key, value)` entry, in wire order.
    pub fn entries(&self) -> MapIter<'a> {
        self.as_field()
            .entries()
            .expect("a validated message is a map")
    }

    /// The value under `key`, or [`Error::MissingField`].
    ///
    /// # Errors
    ///
    /// [`Error::MissingField`].
    pub fn field(&self, key: &str) -> Result<Field<'a>, Error> {
        self.get(key)
            .ok_or_else(|| Error::MissingField { key: key.into() })
    }

    fn typed<T>(
        &self,
        key: &str,
        expected: &'static str,
        f: impl FnOnce(Field<'a>) -> Option<T>,
    ) -> Result<T, Error> {
        f(self.field(key)?).ok_or_else(|| Error::WrongType {
            key: key.into(),
            expected,
        })
    }

    /// The string under `key`.
    ///
    /// # Errors
    ///
    /// [`Error::MissingField`] or [`Error::WrongType`].
    pub fn str(&self, key: &str) -> Result<&'a str, Error> {
        self.typed(key, "a string", |f| f.as_str())
    }

    /// The bytes (msgpack bin, Python `bytes`) under `key`.
    ///
    /// # Errors
    ///
    /// [`Error::MissingField`] or [`Error::WrongType`].
    pub fn bin(&self, key: &str) -> Result<&'a [u8], Error> {
        self.typed(key, "bytes", |f| f.as_bin())
    }

    /// The boolean under `key`.
    ///
    /// # Errors
    ///
    /// [`Error::MissingField`] or [`Error::WrongType`].
    pub fn bool(&self, key: &str) -> Result<bool, Error> {
        self.typed(key, "a boolean", |f| f.as_bool())
    }

    /// The integer under `key`, if it fits an `i64`.
    ///
    /// # Errors
    ///
    /// [`Error::MissingField`] or [`Error::WrongType`].
    pub fn i64(&self, key: &str) -> Result<i64, Error> {
        self.typed(key, "an i64", |f| f.as_i64())
    }

    /// The integer under `key`, if it fits a `u64`.
    ///
    /// # Errors
    ///
    /// [`Error::MissingField`] or [`Error::WrongType`].
    pub fn u64(&self, key: &str) -> Result<u64, Error> {
        self.typed(key, "a u64", |f| f.as_u64())
    }

    /// The integer under `key`, if it fits an `i32`.
    ///
    /// # Errors
    ///
    /// [`Error::MissingField`] or [`Error::WrongType`].
    pub fn i32(&self, key: &str) -> Result<i32, Error> {
        self.typed(key, "an i32", |f| {
            f.as_i64().and_then(|v| v.try_into().ok())
        })
    }

    /// The integer under `key`, if it fits a `u32`.
    ///
    /// # Errors
    ///
    /// [`Error::MissingField`] or [`Error::WrongType`].
    pub fn u32(&self, key: &str) -> Result<u32, Error> {
        self.typed(key, "a u32", |f| f.as_u64().and_then(|v| v.try_into().ok()))
    }

    /// The number under `key` as an `f64`: floats, and integers as Python's `float(x)` would.
    ///
    /// # Errors
    ///
    /// [`Error::MissingField`] or [`Error::WrongType`].
    pub fn f64(&self, key: &str) -> Result<f64, Error> {
        self.typed(key, "a number", |f| f.as_f64())
    }

    /// The whole message as an owned [`rmpv::Value`] (allocates).
    pub fn to_value(&self) -> rmpv::Value {
        self.as_field().to_value()
    }

    /// Copies the payload into an [`OwnedMessage`] that outlives the read buffer.
    pub fn to_owned(&self) -> OwnedMessage {
        OwnedMessage {
            payload: Bytes::copy_from_slice(self.payload),
        }
    }

    /// Encodes this map again with its action replaced by `action`, copying every other entry
    /// as raw bytes (no decoding, no allocation). Adds the key when the message had none.
    ///
    /// ```
    /// use repod::{msg, Encode, Message};
    /// let mut p = Vec::new();
    /// msg! { "action": "echo", "n": 7 }.encode(&mut p);
    /// let m = Message::parse(&p).unwrap();
    /// let mut reply = Vec::new();
    /// m.with_action("echo_reply").encode(&mut reply);
    /// let r = Message::parse(&reply).unwrap();
    /// assert_eq!((r.action(), r.i64("n").unwrap()), ("echo_reply", 7));
    /// ```
    pub fn with_action<'b>(&self, action: &'b str) -> WithAction<'a, 'b> {
        WithAction {
            message: *self,
            action,
        }
    }
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_value(), f)
    }
}

impl Encode for Message<'_> {
    fn encode(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(self.payload);
    }
}

/// See [`Message::with_action`].
#[derive(Debug, Clone, Copy)]
pub struct WithAction<'a, 'b> {
    message: Message<'a>,
    action: &'b str,
}

impl Encode for WithAction<'_, '_> {
    fn encode(&self, buf: &mut Vec<u8>) {
        let m = &self.message;
        let l = m.layout;
        if l.action_keys <= 1 {
            // The common case: copy everything around the one action entry as two slices.
            crate::encode::write_map_len(buf, l.entries - l.action_keys + 1);
            buf.extend_from_slice(b"\xa6action");
            crate::encode::write_str(buf, self.action);
            let body = l.body_start as usize;
            if l.action_keys == 1 {
                let (a, b) = (l.action_entry.0 as usize, l.action_entry.1 as usize);
                buf.extend_from_slice(&m.payload[body..a]);
                buf.extend_from_slice(&m.payload[b..]);
            } else {
                buf.extend_from_slice(&m.payload[body..]);
            }
            return;
        }
        let is_action = |k: &Field<'_>| k.as_str() == Some("action");
        // Every "action" entry (a peer may send the key twice) is replaced by one.
        let kept = self
            .message
            .entries()
            .filter(|(k, _)| !is_action(k))
            .count();
        crate::encode::write_map_len(buf, (kept + 1) as u32);
        buf.extend_from_slice(b"\xa6action");
        crate::encode::write_str(buf, self.action);
        for (k, v) in self.message.entries() {
            if !is_action(&k) {
                buf.extend_from_slice(k.raw);
                buf.extend_from_slice(v.raw);
            }
        }
    }
}

/// A message that owns its payload: what the low-level [`Connection`](crate::Connection) hands
/// out, and what to keep when a message must outlive its handler.
///
/// The payload is a [`Bytes`]: cloning an `OwnedMessage` shares it (a reference count, no
/// copy), it is `Send` and `Sync`, so a game keeps one, hands it to another thread or forwards
/// it to other players without copying. The messages of one [`Connection::recv_timeout`]
/// batch are slices of one buffer.
///
/// ```
/// use repod::{msg, Encode, OwnedMessage};
///
/// let mut payload = Vec::new();
/// msg! { "action": "move", "x": 3 }.encode(&mut payload);
/// let m = OwnedMessage::parse(payload)?;
/// let kept = m.clone(); // the same bytes, shared
/// assert_eq!(kept.payload().as_ptr(), m.payload().as_ptr());
/// std::thread::spawn(move || assert_eq!(kept.message().i64("x").unwrap(), 3)).join().unwrap();
/// # Ok::<(), repod::Error>(())
/// ```
///
/// [`Connection::recv_timeout`]: crate::Connection::recv_timeout
#[derive(Clone, PartialEq, Eq)]
pub struct OwnedMessage {
    payload: Bytes,
}

impl OwnedMessage {
    /// Validates `payload` and takes it (a `Vec<u8>` or a [`Bytes`], without copying).
    ///
    /// # Errors
    ///
    /// As [`Message::parse`].
    pub fn parse(payload: impl Into<Bytes>) -> Result<Self, Error> {
        let payload = payload.into();
        Message::parse(&payload)?;
        Ok(OwnedMessage { payload })
    }

    /// Takes a payload that was validated already.
    pub(crate) fn from_validated(payload: Bytes) -> Self {
        OwnedMessage { payload }
    }

    /// The payload as a shared [`Bytes`] (cheap to clone, `Send`).
    pub fn payload_bytes(&self) -> &Bytes {
        &self.payload
    }

    /// The payload, as a shared [`Bytes`].
    pub fn into_bytes(self) -> Bytes {
        self.payload
    }

    /// A borrowed view, with every accessor of [`Message`].
    pub fn message(&self) -> Message<'_> {
        Message::from_validated(&self.payload)
    }

    /// The action, or `""`.
    pub fn action(&self) -> &str {
        self.message().action()
    }

    /// The raw msgpack payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The message as an owned [`rmpv::Value`].
    pub fn to_value(&self) -> rmpv::Value {
        self.message().to_value()
    }
}

impl fmt::Debug for OwnedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.message(), f)
    }
}

impl Encode for OwnedMessage {
    fn encode(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.payload);
    }
}

/// One msgpack value inside a validated message, as its raw bytes.
///
/// Accessors return `None` when the value has another type (or, for numbers, does not fit).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    raw: &'a [u8],
}

impl<'a> Field<'a> {
    /// The value's raw msgpack bytes.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    fn marker(&self) -> Marker {
        Marker::from_u8(self.raw[0])
    }

    fn tail(&self, from: usize, n: usize) -> Option<&'a [u8]> {
        self.raw.get(from..from.checked_add(n)?)
    }

    fn be(&self, n: usize) -> Option<u64> {
        let b = self.tail(1, n)?;
        Some(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    /// Whether the value is nil (Python `None`).
    pub fn is_nil(&self) -> bool {
        self.marker() == Marker::Null
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self.marker() {
            Marker::True => Some(true),
            Marker::False => Some(false),
            _ => None,
        }
    }

    /// The integer as an `i128` (covers every msgpack integer), if this is one.
    fn as_int(&self) -> Option<i128> {
        Some(match self.marker() {
            Marker::FixPos(v) => v.into(),
            Marker::FixNeg(v) => v.into(),
            Marker::U8 => self.be(1)?.into(),
            Marker::U16 => self.be(2)?.into(),
            Marker::U32 => self.be(4)?.into(),
            Marker::U64 => self.be(8)?.into(),
            Marker::I8 => (self.be(1)? as u8 as i8).into(),
            Marker::I16 => (self.be(2)? as u16 as i16).into(),
            Marker::I32 => (self.be(4)? as u32 as i32).into(),
            Marker::I64 => (self.be(8)? as i64).into(),
            _ => return None,
        })
    }

    /// The integer, if this is one and it fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_int()?.try_into().ok()
    }

    /// The integer, if this is one and it fits a `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_int()?.try_into().ok()
    }

    /// The number as an `f64`: floats, and integers (as Python's `float(x)` would).
    pub fn as_f64(&self) -> Option<f64> {
        match self.marker() {
            Marker::F32 => Some(f32::from_bits(self.be(4)? as u32).into()),
            Marker::F64 => Some(f64::from_bits(self.be(8)?)),
            _ => self.as_int().map(|v| v as f64),
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&'a str> {
        str_at(self.raw, 0)
    }

    /// The bytes, if this is a msgpack bin (Python `bytes`).
    pub fn as_bin(&self) -> Option<&'a [u8]> {
        let (hdr, len) = match self.marker() {
            Marker::Bin8 => (2, self.be(1)?),
            Marker::Bin16 => (3, self.be(2)?),
            Marker::Bin32 => (5, self.be(4)?),
            _ => return None,
        };
        self.tail(hdr, len as usize)
    }

    /// The elements, if this is an array.
    pub fn elements(&self) -> Option<ArrayIter<'a>> {
        let (hdr, len) = match self.marker() {
            Marker::FixArray(n) => (1, n as u64),
            Marker::Array16 => (3, self.be(2)?),
            Marker::Array32 => (5, self.be(4)?),
            _ => return None,
        };
        Some(ArrayIter {
            rest: self.raw.get(hdr..)?,
            left: len as usize,
        })
    }

    /// The `(key, value)` entries, if this is a map.
    pub fn entries(&self) -> Option<MapIter<'a>> {
        let (hdr, len) = match self.marker() {
            Marker::FixMap(n) => (1, n as u64),
            Marker::Map16 => (3, self.be(2)?),
            Marker::Map32 => (5, self.be(4)?),
            _ => return None,
        };
        Some(MapIter {
            inner: ArrayIter {
                rest: self.raw.get(hdr..)?,
                left: (len as usize).saturating_mul(2),
            },
        })
    }

    /// The value under the string key `key`, if this is a map that has it (the last one wins,
    /// as in Python).
    pub fn get(&self, key: &str) -> Option<Field<'a>> {
        self.entries()?
            .filter(|(k, _)| k.as_str() == Some(key))
            .last()
            .map(|(_, v)| v)
    }

    /// The value as an owned [`rmpv::Value`] (allocates).
    pub fn to_value(&self) -> rmpv::Value {
        // The message was validated (depth included), so this cannot fail; Nil is unreachable.
        rmpv::decode::read_value(&mut &self.raw[..]).unwrap_or(rmpv::Value::Nil)
    }
}

impl fmt::Debug for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_value(), f)
    }
}

impl Encode for Field<'_> {
    fn encode(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(self.raw);
    }
}

/// Iterator over the elements of an array [`Field`].
#[derive(Debug, Clone)]
pub struct ArrayIter<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> Iterator for ArrayIter<'a> {
    type Item = Field<'a>;

    fn next(&mut self) -> Option<Field<'a>> {
        if self.left == 0 {
            return None;
        }
        let len = value_len(self.rest)?;
        let (raw, rest) = self.rest.split_at(len);
        self.rest = rest;
        self.left -= 1;
        Some(Field { raw })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for ArrayIter<'_> {}

/// Iterator over the `(key, value)` entries of a map [`Field`].
#[derive(Debug, Clone)]
pub struct MapIter<'a> {
    inner: ArrayIter<'a>,
}

impl<'a> Iterator for MapIter<'a> {
    type Item = (Field<'a>, Field<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        Some((self.inner.next()?, self.inner.next()?))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.inner.left / 2, Some(self.inner.left / 2))
    }
}

impl ExactSizeIterator for MapIter<'_> {}

/// Whether `raw` (one encoded key) is the string "action", in any msgpack str encoding.
fn is_action_key(raw: &[u8]) -> bool {
    // A fixstr, as every encoder writes it: one 7-byte comparison, no loop over the patterns.
    if let Ok(key) = <&[u8; 7]>::try_from(raw) {
        return key == b"\xa6action";
    }
    match raw {
        [0xd9, 6, rest @ ..] | [0xda, 0, 6, rest @ ..] | [0xdb, 0, 0, 0, 6, rest @ ..] => {
            rest == b"action"
        }
        _ => false,
    }
}

/// The string starting at `pos`, if the value there is a valid UTF-8 msgpack str.
fn str_at(buf: &[u8], pos: usize) -> Option<&str> {
    std::str::from_utf8(str_body_at(buf, pos)?).ok()
}

/// The bytes of the msgpack str starting at `pos`, not checked for UTF-8.
fn str_body_at(buf: &[u8], pos: usize) -> Option<&[u8]> {
    let f = Field {
        raw: buf.get(pos..)?,
    };
    let (hdr, len) = match f.marker() {
        Marker::FixStr(n) => (1, n as u64),
        Marker::Str8 => (2, f.be(1)?),
        Marker::Str16 => (3, f.be(2)?),
        Marker::Str32 => (5, f.be(4)?),
        _ => return None,
    };
    f.tail(hdr, len as usize)
}

/// Length in bytes of the (validated) value at the start of `buf`. `None` on malformed input,
/// which cannot happen inside a validated message.
fn value_len(buf: &[u8]) -> Option<usize> {
    let mut v = Validator {
        buf,
        pos: 0,
        max_depth: usize::MAX,
    };
    v.skip_trusted().ok()?;
    Some(v.pos)
}

/// Whether the `n` bytes at `at` are ASCII, answered with one 8-byte load when `n <= 8` and the
/// buffer holds 8 bytes from `at` (keys and actions are short and rarely end a message); `false`
/// means "not known", and the caller asks the general check.
#[inline(always)]
fn short_ascii(buf: &[u8], at: usize, n: usize) -> bool {
    let Some(word) = buf.get(at..at + 8) else {
        return false;
    };
    if n > 8 {
        return false;
    }
    // The high bit of each of the first `n` bytes (the little-endian low bytes).
    const HIGH_BITS: [u64; 9] = {
        let mut masks = [0u64; 9];
        let mut n = 1;
        while n <= 8 {
            masks[n] = 0x8080_8080_8080_8080 >> (64 - 8 * n);
            n += 1;
        }
        masks
    };
    let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
    word & HIGH_BITS[n] == 0
}

/// What the validator found wrong, kept small (two words) so the validator's results travel in
/// registers; it becomes an [`Error`] once, at the end of a failed parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bad {
    /// The byte offset (for `TooDeep`: the depth limit).
    offset: usize,
    kind: BadKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BadKind {
    Truncated,
    Count,
    Trailing,
    Reserved,
    Utf8,
    TooDeep,
}

impl From<Bad> for Error {
    fn from(b: Bad) -> Error {
        let reason = match b.kind {
            BadKind::Utf8 => return Error::InvalidUtf8 { offset: b.offset },
            BadKind::TooDeep => return Error::TooDeep { max: b.offset },
            BadKind::Truncated => "truncated",
            BadKind::Count => "element count exceeds the bytes present",
            BadKind::Trailing => "trailing bytes after the message",
            BadKind::Reserved => "reserved marker 0xc1",
        };
        Error::InvalidMsgpack {
            offset: b.offset,
            reason,
        }
    }
}

/// Single-pass msgpack validator over an untrusted buffer. Every read is bounds-checked; work is
/// linear in the buffer length because each element consumes at least one byte.
struct Validator<'a> {
    buf: &'a [u8],
    pos: usize,
    max_depth: usize,
}

impl Validator<'_> {
    fn err(&self, kind: BadKind) -> Bad {
        Bad {
            offset: self.pos,
            kind,
        }
    }

    fn marker(&mut self) -> Result<(Marker, usize), Bad> {
        let at = self.pos;
        let b = *self
            .buf
            .get(at)
            .ok_or_else(|| self.err(BadKind::Truncated))?;
        self.pos += 1;
        Ok((Marker::from_u8(b), at))
    }

    fn take(&mut self, n: usize) -> Result<&[u8], Bad> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.err(BadKind::Truncated))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn be(&mut self, n: usize) -> Result<usize, Bad> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0usize, |acc, &x| (acc << 8) | usize::from(x)))
    }

    fn len_u16(&mut self) -> Result<usize, Bad> {
        self.be(2)
    }

    fn len_u32(&mut self) -> Result<usize, Bad> {
        self.be(4)
    }

    /// Each element needs at least one byte: reject counts the rest of the buffer cannot hold,
    /// before looping over them.
    fn plausible(&self, elements: usize) -> Result<(), Bad> {
        if elements > self.buf.len() - self.pos {
            return Err(self.err(BadKind::Count));
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), Bad> {
        if self.pos != self.buf.len() {
            return Err(self.err(BadKind::Trailing));
        }
        Ok(())
    }

    /// Validates one value at nesting `depth` (the top-level map's entries are at depth 2).
    ///
    /// The values game messages are mostly made of (small integers, nil, booleans, short
    /// strings such as every key, fixed-width numbers, short binaries) are checked here, inlined
    /// into the caller's loop; the rest go to the out-of-line [`Validator::any_value`].
    #[inline(always)]
    fn value(&mut self, depth: usize) -> Result<(), Bad> {
        let at = self.pos;
        let Some(&b) = self.buf.get(at) else {
            return Err(self.err(BadKind::Truncated));
        };
        let (body_at, body) = match b {
            0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => (at + 1, 0),
            0xa0..=0xbf => return self.utf8_body(at, at + 1, usize::from(b & 0x1f)),
            0xcc | 0xd0 => (at + 1, 1),
            0xcd | 0xd1 => (at + 1, 2),
            0xca | 0xce | 0xd2 => (at + 1, 4),
            0xcb | 0xcf | 0xd3 => (at + 1, 8),
            0xc4 => match self.buf.get(at + 1) {
                Some(&n) => (at + 2, usize::from(n)),
                None => return Err(self.truncated_at(at + 1)),
            },
            _ => return self.any_value(depth),
        };
        let end = body_at + body;
        if end > self.buf.len() {
            return Err(self.truncated_at(body_at));
        }
        self.pos = end;
        Ok(())
    }

    #[cold]
    fn truncated_at(&self, offset: usize) -> Bad {
        Bad {
            offset,
            kind: BadKind::Truncated,
        }
    }

    /// The `n` bytes at `body_at` are the body of the string whose marker is at `at`: they must
    /// be present and UTF-8.
    #[inline(always)]
    fn utf8_body(&mut self, at: usize, body_at: usize, n: usize) -> Result<(), Bad> {
        let end = body_at + n;
        let Some(s) = self.buf.get(body_at..end) else {
            return Err(self.truncated_at(body_at));
        };
        // Most strings in game messages are ASCII: check that inline before the full decoder.
        if !short_ascii(self.buf, body_at, n) && !s.is_ascii() && std::str::from_utf8(s).is_err() {
            return Err(Bad {
                offset: at,
                kind: BadKind::Utf8,
            });
        }
        self.pos = end;
        Ok(())
    }

    /// Validates any value, arrays and maps included; [`Validator::value`] handles the common
    /// scalars before it gets here.
    #[inline(never)]
    fn any_value(&mut self, depth: usize) -> Result<(), Bad> {
        let (marker, at) = self.marker()?;
        let (children, skip) = match marker {
            Marker::FixPos(_) | Marker::FixNeg(_) | Marker::Null | Marker::True | Marker::False => {
                (0, 0)
            }
            Marker::U8 | Marker::I8 => (0, 1),
            Marker::U16 | Marker::I16 => (0, 2),
            Marker::U32 | Marker::I32 | Marker::F32 => (0, 4),
            Marker::U64 | Marker::I64 | Marker::F64 => (0, 8),
            Marker::FixStr(n) => return self.utf8_body(at, self.pos, n as usize),
            Marker::Str8 => {
                let n = self.be(1)?;
                return self.utf8_body(at, self.pos, n);
            }
            Marker::Str16 => {
                let n = self.be(2)?;
                return self.utf8_body(at, self.pos, n);
            }
            Marker::Str32 => {
                let n = self.be(4)?;
                return self.utf8_body(at, self.pos, n);
            }
            Marker::Bin8 => (0, self.be(1)?),
            Marker::Bin16 => (0, self.be(2)?),
            Marker::Bin32 => (0, self.be(4)?),
            Marker::FixExt1 => (0, 2),
            Marker::FixExt2 => (0, 3),
            Marker::FixExt4 => (0, 5),
            Marker::FixExt8 => (0, 9),
            Marker::FixExt16 => (0, 17),
            Marker::Ext8 => (0, self.be(1)? + 1),
            Marker::Ext16 => (0, self.be(2)? + 1),
            Marker::Ext32 => (0, self.be(4)? + 1),
            Marker::FixArray(n) => (n as usize, 0),
            Marker::Array16 => (self.len_u16()?, 0),
            Marker::Array32 => (self.len_u32()?, 0),
            Marker::FixMap(n) => ((n as usize) * 2, 0),
            Marker::Map16 => (self.len_u16()?.saturating_mul(2), 0),
            Marker::Map32 => (self.len_u32()?.saturating_mul(2), 0),
            Marker::Reserved => {
                self.pos = at;
                return Err(self.err(BadKind::Reserved));
            }
        };
        self.take(skip)?;
        if matches!(
            marker,
            Marker::FixArray(_)
                | Marker::Array16
                | Marker::Array32
                | Marker::FixMap(_)
                | Marker::Map16
                | Marker::Map32
        ) {
            if depth > self.max_depth {
                return Err(Bad {
                    offset: self.max_depth,
                    kind: BadKind::TooDeep,
                });
            }
            self.plausible(children)?;
            for _ in 0..children {
                self.value(depth + 1)?;
            }
        }
        Ok(())
    }

    /// Skips one value of a buffer that was already validated: no UTF-8 or depth checks, and
    /// iterative so that it needs no stack however deep the value is.
    fn skip_trusted(&mut self) -> Result<(), Bad> {
        let mut pending: usize = 1;
        while pending > 0 {
            pending -= 1;
            let (marker, _) = self.marker()?;
            let (children, skip) = match marker {
                Marker::U8 | Marker::I8 => (0, 1),
                Marker::U16 | Marker::I16 => (0, 2),
                Marker::U32 | Marker::I32 | Marker::F32 => (0, 4),
                Marker::U64 | Marker::I64 | Marker::F64 => (0, 8),
                Marker::FixStr(n) => (0, n as usize),
                Marker::Str8 | Marker::Bin8 => (0, self.be(1)?),
                Marker::Str16 | Marker::Bin16 => (0, self.be(2)?),
                Marker::Str32 | Marker::Bin32 => (0, self.be(4)?),
                Marker::FixExt1 => (0, 2),
                Marker::FixExt2 => (0, 3),
                Marker::FixExt4 => (0, 5),
                Marker::FixExt8 => (0, 9),
                Marker::FixExt16 => (0, 17),
                Marker::Ext8 => (0, self.be(1)? + 1),
                Marker::Ext16 => (0, self.be(2)? + 1),
                Marker::Ext32 => (0, self.be(4)? + 1),
                Marker::FixArray(n) => (n as usize, 0),
                Marker::Array16 => (self.be(2)?, 0),
                Marker::Array32 => (self.be(4)?, 0),
                Marker::FixMap(n) => (n as usize * 2, 0),
                Marker::Map16 => (self.be(2)? * 2, 0),
                Marker::Map32 => (self.be(4)?.saturating_mul(2), 0),
                Marker::Reserved => return Err(self.err(BadKind::Reserved)),
                _ => (0, 0),
            };
            self.take(skip)?;
            pending = pending.saturating_add(children);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg;

    fn enc(e: impl Encode) -> Vec<u8> {
        let mut v = Vec::new();
        e.encode(&mut v);
        v
    }

    #[test]
    fn finds_action_and_fields() {
        let p = enc(msg! { "x": 1, "action": "chat", "text": "héllo", "list": [1u8, 2, 3] });
        let m = Message::parse(&p).unwrap();
        assert_eq!(m.action(), "chat");
        assert!(m.has_action());
        assert_eq!(m.str("text").unwrap(), "héllo");
        let list: Vec<u64> = m
            .field("list")
            .unwrap()
            .elements()
            .unwrap()
            .map(|f| f.as_u64().unwrap())
            .collect();
        assert_eq!(list, [1, 2, 3]);
        assert!(matches!(m.str("x"), Err(Error::WrongType { .. })));
        assert!(matches!(m.u32("nope"), Err(Error::MissingField { .. })));
    }

    #[test]
    fn short_ascii_looks_at_exactly_the_string() {
        for n in 0..=8 {
            // A non-ASCII byte right after the string must not count against it.
            let mut buf = vec![b'a'; n];
            buf.extend_from_slice(&[0xff; 8]);
            assert!(short_ascii(&buf, 0, n), "{n} ASCII bytes");
            for bad in 0..n {
                let mut b = buf.clone();
                b[bad] = 0xc3;
                assert!(!short_ascii(&b, 0, n), "byte {bad} of {n}");
            }
        }
        // Too near the end of the buffer, or too long: "not known", the general check decides.
        assert!(!short_ascii(b"abc", 0, 3));
        assert!(!short_ascii(&[b'a'; 20], 0, 9));
    }

    #[test]
    fn no_action_is_empty_string() {
        let p = enc(msg! { "text": "hi" });
        let m = Message::parse(&p).unwrap();
        assert_eq!(m.action(), "");
        assert!(!m.has_action());
    }

    #[test]
    fn error_cases_are_distinct() {
        assert!(matches!(
            Message::parse(b"\x93\x01\x02\x03"),
            Err(Error::NotAMap)
        ));
        assert!(matches!(
            Message::parse(b"\xc1"),
            Err(Error::InvalidMsgpack { .. })
        ));
        assert!(matches!(
            Message::parse(b"\x81\xa1a"),
            Err(Error::InvalidMsgpack { .. })
        ));
        assert!(matches!(
            Message::parse(b"\x80\x00"),
            Err(Error::InvalidMsgpack { .. })
        ));
        assert!(matches!(
            Message::parse(b""),
            Err(Error::InvalidMsgpack { .. })
        ));
        assert!(matches!(
            Message::parse(b"\x81\xa6action\x05"),
            Err(Error::ActionNotString)
        ));
        assert!(matches!(
            Message::parse(b"\x81\xa1a\xa2\xff\xfe"),
            Err(Error::InvalidUtf8 { offset: 3 })
        ));
        // 2^32-1 entries announced in a few bytes: rejected without looping.
        assert!(matches!(
            Message::parse(b"\xdf\xff\xff\xff\xff\x01"),
            Err(Error::InvalidMsgpack { .. })
        ));
    }

    #[test]
    fn from_validated_agrees_with_parse() {
        let payloads: [&[u8]; 5] = [
            b"\x81\xa6action\xa4ping",
            b"\x82\xd9\x06action\xa4echo\xa1n\x01",
            b"\x82\xa6action\x05\xa6action\xa2ok",
            b"\x81\xa1a\x91\x80",
            b"\x80",
        ];
        for p in payloads {
            let (a, b) = (Message::parse(p).unwrap(), Message::from_validated(p));
            assert_eq!(
                (a.action(), a.has_action()),
                (b.action(), b.has_action()),
                "{p:?}"
            );
        }
    }

    #[test]
    fn depth_is_limited() {
        let mut p = b"\x81\xa1a".to_vec();
        p.extend(std::iter::repeat_n(0x91u8, 40));
        p.push(0xc0);
        assert!(matches!(
            Message::parse_with_depth(&p, 10),
            Err(Error::TooDeep { max: 10 })
        ));
        assert!(Message::parse_with_depth(&p, 41).is_ok());
    }

    #[test]
    fn integers_at_every_width() {
        let p = enc(msg! {
            "a": u64::MAX, "b": i64::MIN, "c": -1, "d": 200u8, "e": -200i16, "f": 70000, "g": -70000
        });
        let m = Message::parse(&p).unwrap();
        assert_eq!(m.u64("a").unwrap(), u64::MAX);
        assert!(m.i64("a").is_err());
        assert_eq!(m.i64("b").unwrap(), i64::MIN);
        assert_eq!(m.i64("c").unwrap(), -1);
        assert_eq!(m.u32("d").unwrap(), 200);
        assert_eq!(m.i32("e").unwrap(), -200);
        assert_eq!(m.u64("f").unwrap(), 70000);
        assert_eq!(m.i64("g").unwrap(), -70000);
        assert_eq!(m.f64("g").unwrap(), -70000.0);
        assert_eq!(m.to_value()["a"], rmpv::Value::from(u64::MAX));
    }

    #[test]
    fn with_action_keeps_other_fields_raw() {
        let p = enc(msg! { "action": "echo", "seq": 5, "pos": [1.5, 2.5] });
        let m = Message::parse(&p).unwrap();
        let r = enc(m.with_action("echo_reply"));
        let r = Message::parse(&r).unwrap();
        assert_eq!(r.action(), "echo_reply");
        assert_eq!(r.entries().len(), 3);
        assert_eq!(r.field("pos").unwrap(), m.field("pos").unwrap());
        let p = enc(msg! { "seq": 5 });
        let r = enc(Message::parse(&p).unwrap().with_action("x"));
        let r = Message::parse(&r).unwrap();
        assert_eq!(
            (r.action(), r.u64("seq").unwrap(), r.entries().len()),
            ("x", 5, 2)
        );
    }
}
