//! Outgoing messages, encoded straight into a connection's output buffer.
//!
//! Anything that implements [`Encode`] can be sent. The [`msg!`](crate::msg) macro builds a map
//! from literal keys and Rust values with no intermediate tree and no allocation: the values are
//! evaluated where the macro is written (so `?` works inside it), and encoded when the message is
//! written into the output buffer.
//!
//! ```
//! use repod::{msg, Encode, Message};
//!
//! let team = 3u32;
//! let names = ["ann", "bob"];
//! let m = msg! {
//!     "action": "team_joined",
//!     "team_id": team,
//!     "players": &names[..],
//!     "spawn": msg! { "x": 10.0, "y": 20.0 },
//!     "note": None::<&str>,
//! };
//! let mut buf = Vec::new();
//! m.encode(&mut buf);
//! let back = Message::parse(&buf).unwrap();
//! assert_eq!(back.u32("team_id").unwrap(), 3);
//! assert!(back.field("note").unwrap().is_nil());
//! ```
//!
//! A dynamic [`rmpv::Value`] map is sent as it is; [`Bin`] marks bytes that must travel as
//! msgpack bin (Python `bytes`) rather than an array of integers.

/// A value that can write itself as msgpack.
///
/// Encoding into a `Vec<u8>` cannot fail, so neither can this.
pub trait Encode {
    /// Appends the msgpack encoding of `self` to `buf`.
    fn encode(&self, buf: &mut Vec<u8>);
}

impl<T: Encode + ?Sized> Encode for &T {
    fn encode(&self, buf: &mut Vec<u8>) {
        (**self).encode(buf)
    }
}

impl<T: Encode + ?Sized> Encode for Box<T> {
    fn encode(&self, buf: &mut Vec<u8>) {
        (**self).encode(buf)
    }
}

impl Encode for str {
    fn encode(&self, buf: &mut Vec<u8>) {
        write_str(buf, self);
    }
}

/// Appends `s` as a msgpack str: the bytes `rmp::encode::write_str` writes, without its generic
/// fallible writer, which costs about 50 instructions a string on the path of every reply (keys
/// and actions are short strings). Like rmp, a length beyond `u32::MAX` is not representable;
/// no frame can carry one.
#[inline]
pub(crate) fn write_str(buf: &mut Vec<u8>, s: &str) {
    let n = s.len();
    if n < 32 {
        buf.push(0xa0 | n as u8);
    } else if n < 0x100 {
        buf.extend_from_slice(&[0xd9, n as u8]);
    } else if n < 0x1_0000 {
        buf.push(0xda);
        buf.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        buf.push(0xdb);
        buf.extend_from_slice(&(n as u32).to_be_bytes());
    }
    buf.extend_from_slice(s.as_bytes());
}

/// Appends a msgpack map header for `n` entries (what `rmp::encode::write_map_len` writes).
#[inline]
pub(crate) fn write_map_len(buf: &mut Vec<u8>, n: u32) {
    if n < 16 {
        buf.push(0x80 | n as u8);
    } else if n < 0x1_0000 {
        buf.push(0xde);
        buf.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        buf.push(0xdf);
        buf.extend_from_slice(&n.to_be_bytes());
    }
}

impl Encode for String {
    fn encode(&self, buf: &mut Vec<u8>) {
        self.as_str().encode(buf)
    }
}

impl Encode for bool {
    fn encode(&self, buf: &mut Vec<u8>) {
        let _ = rmp::encode::write_bool(buf, *self);
    }
}

impl Encode for () {
    fn encode(&self, buf: &mut Vec<u8>) {
        let _ = rmp::encode::write_nil(buf);
    }
}

macro_rules! encode_uint {
    ($($t:ty),*) => {$(
        impl Encode for $t {
            fn encode(&self, buf: &mut Vec<u8>) {
                let _ = rmp::encode::write_uint(buf, *self as u64);
            }
        }
    )*};
}
encode_uint!(u8, u16, u32, u64, usize);

macro_rules! encode_sint {
    ($($t:ty),*) => {$(
        impl Encode for $t {
            fn encode(&self, buf: &mut Vec<u8>) {
                // Smallest representation, unsigned markers for non-negative values: what
                // Python's msgpack writes too.
                let _ = rmp::encode::write_sint(buf, *self as i64);
            }
        }
    )*};
}
encode_sint!(i8, i16, i32, i64, isize);

impl Encode for f32 {
    fn encode(&self, buf: &mut Vec<u8>) {
        let _ = rmp::encode::write_f32(buf, *self);
    }
}

impl Encode for f64 {
    fn encode(&self, buf: &mut Vec<u8>) {
        let _ = rmp::encode::write_f64(buf, *self);
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encode(&self, buf: &mut Vec<u8>) {
        match self {
            Some(v) => v.encode(buf),
            None => ().encode(buf),
        }
    }
}

impl<T: Encode> Encode for [T] {
    fn encode(&self, buf: &mut Vec<u8>) {
        let _ = rmp::encode::write_array_len(buf, self.len() as u32);
        for v in self {
            v.encode(buf);
        }
    }
}

impl<T: Encode, const N: usize> Encode for [T; N] {
    fn encode(&self, buf: &mut Vec<u8>) {
        self[..].encode(buf)
    }
}

impl<T: Encode> Encode for Vec<T> {
    fn encode(&self, buf: &mut Vec<u8>) {
        self[..].encode(buf)
    }
}

macro_rules! encode_tuple {
    ($n:expr; $($name:ident . $idx:tt),+) => {
        /// Tuples encode as arrays, for heterogeneous lists such as `(x, y, "label")`.
        impl<$($name: Encode),+> Encode for ($($name,)+) {
            fn encode(&self, buf: &mut Vec<u8>) {
                let _ = rmp::encode::write_array_len(buf, $n);
                $(self.$idx.encode(buf);)+
            }
        }
    };
}
encode_tuple!(1; A.0);
encode_tuple!(2; A.0, B.1);
encode_tuple!(3; A.0, B.1, C.2);
encode_tuple!(4; A.0, B.1, C.2, D.3);
encode_tuple!(5; A.0, B.1, C.2, D.3, E.4);
encode_tuple!(6; A.0, B.1, C.2, D.3, E.4, F.5);

impl Encode for rmpv::Value {
    fn encode(&self, buf: &mut Vec<u8>) {
        let _ = rmpv::encode::write_value(buf, self);
    }
}

impl Encode for rmpv::ValueRef<'_> {
    fn encode(&self, buf: &mut Vec<u8>) {
        let _ = rmpv::encode::write_value_ref(buf, self);
    }
}

/// Bytes sent as msgpack bin (Python `bytes`), not as an array of integers.
///
/// ```
/// use repod::{msg, Bin, Encode, Message};
/// let mut buf = Vec::new();
/// msg! { "action": "blob", "data": Bin(b"\x00\x01") }.encode(&mut buf);
/// assert_eq!(Message::parse(&buf).unwrap().bin("data").unwrap(), b"\x00\x01");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bin<'a>(pub &'a [u8]);

impl Encode for Bin<'_> {
    fn encode(&self, buf: &mut Vec<u8>) {
        let _ = rmp::encode::write_bin(buf, self.0);
    }
}

/// A map under construction: what [`msg!`](crate::msg) expands to.
///
/// Entries are kept as a nested tuple list of borrowed or owned values, so building one does
/// not allocate and the entry count is known when the map header is written.
#[derive(Debug, Clone, Copy)]
pub struct MapMsg<L> {
    len: u32,
    entries: L,
}

impl MapMsg<()> {
    /// An empty map.
    pub fn new() -> Self {
        MapMsg {
            len: 0,
            entries: (),
        }
    }
}

impl Default for MapMsg<()> {
    fn default() -> Self {
        Self::new()
    }
}

impl<L: Entries> MapMsg<L> {
    /// Adds an entry. Keys are usually string literals; any [`Encode`] works (Python unpacks
    /// with `strict_map_key=False`, so integer keys are fine).
    pub fn with<K: Encode, V: Encode>(self, key: K, value: V) -> MapMsg<(L, K, V)> {
        MapMsg {
            len: self.len + 1,
            entries: (self.entries, key, value),
        }
    }
}

impl<L: Entries> Encode for MapMsg<L> {
    fn encode(&self, buf: &mut Vec<u8>) {
        write_map_len(buf, self.len);
        self.entries.encode_entries(buf);
    }
}

/// The entry list of a [`MapMsg`]. Implemented for `()` and `(Entries, K, V)`.
pub trait Entries {
    /// Encodes every entry, first added first.
    fn encode_entries(&self, buf: &mut Vec<u8>);
}

impl Entries for () {
    fn encode_entries(&self, _: &mut Vec<u8>) {}
}

impl<L: Entries, K: Encode, V: Encode> Entries for (L, K, V) {
    fn encode_entries(&self, buf: &mut Vec<u8>) {
        self.0.encode_entries(buf);
        self.1.encode(buf);
        self.2.encode(buf);
    }
}

/// Builds a msgpack map to send, without allocating.
///
/// ```
/// use repod::msg;
/// let text = String::from("hi");
/// let chat = msg! { "action": "chat", "text": &text, "from": "Alice", "hp": 97 };
/// # let _ = chat;
/// ```
///
/// Values are evaluated in order where the macro is written; each must implement
/// [`Encode`](crate::Encode). Nest `msg!` for inner maps; use slices, arrays, `Vec`s or tuples
/// for arrays.
#[macro_export]
macro_rules! msg {
    ($($key:tt : $value:expr),* $(,)?) => {
        $crate::MapMsg::new()$(.with($key, $value))*
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(e: impl Encode) -> Vec<u8> {
        let mut v = Vec::new();
        e.encode(&mut v);
        v
    }

    #[test]
    fn str_and_map_headers_are_the_bytes_rmp_writes() {
        for n in [0, 1, 31, 32, 255, 256, 65_535, 65_536, 70_000] {
            let s = "x".repeat(n);
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            write_str(&mut ours, &s);
            rmp::encode::write_str(&mut theirs, &s).unwrap();
            assert_eq!(ours, theirs, "str of {n} bytes");
        }
        for n in [0, 1, 15, 16, 65_535, 65_536, u32::MAX] {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            write_map_len(&mut ours, n);
            rmp::encode::write_map_len(&mut theirs, n).unwrap();
            assert_eq!(ours, theirs, "map of {n} entries");
        }
    }

    #[test]
    fn msg_matches_python_bytes() {
        // msgpack.packb({"action": "connected"}, use_bin_type=True)
        assert_eq!(
            enc(msg! { "action": "connected" }),
            b"\x81\xa6action\xa9connected"
        );
        // msgpack.packb({"a": -1, "b": 255, "c": 1.5, "d": None, "e": b"\x01"}, use_bin_type=True)
        assert_eq!(
            enc(msg! { "a": -1, "b": 255, "c": 1.5, "d": (), "e": Bin(b"\x01") }),
            b"\x85\xa1a\xff\xa1b\xcc\xff\xa1c\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00\xa1d\xc0\xa1e\xc4\x01\x01"
        );
    }

    #[test]
    fn value_and_macro_agree() {
        let v = rmpv::Value::Map(vec![
            ("action".into(), "x".into()),
            ("n".into(), rmpv::Value::from(-5)),
            ("l".into(), rmpv::Value::Array(vec![1.into(), "a".into()])),
        ]);
        assert_eq!(enc(&v), enc(msg! { "action": "x", "n": -5, "l": (1, "a") }));
    }
}
