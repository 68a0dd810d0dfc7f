//! Typed messages with serde (cargo feature `serde`, on by default).
//!
//! Describe a message as a Rust type, derive `Serialize` and `Deserialize`, and the wire stays
//! the one Python repod speaks: a msgpack map with its fields by name.
//!
//! - **Receive** one type with [`Message::decode`], borrowing strings and bytes from the frame;
//!   route an action to a typed handler with [`Routes::on_msg`] / [`ClientRoutes::on_msg`];
//!   route every variant of one enum, each variant an action, with [`Routes::on_enum`] /
//!   [`ClientRoutes::on_enum`], and write one `match`.
//! - **Send** any `T: Serialize` wrapped in [`Typed`]: `ctx.send(&Typed(&reply))`. It is encoded
//!   straight into the connection's output buffer, behind the length prefix, with no
//!   intermediate `Vec`; `send_to_all(&Typed(&x))` encodes once, like any message.
//! - A map that does not fit the type reaches `on_error` as [`Error::Decode`], naming the field;
//!   the frame is dropped and the connection stays.
//!
//! ```
//! use repod::{Encode, Message, Typed};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! #[serde(rename_all = "snake_case")] // each variant's name is its action
//! enum ToServer<'a> {
//!     Nickname { nickname: &'a str },
//!     Chat { text: &'a str },
//! }
//!
//! let mut payload = Vec::new();
//! Typed(&ToServer::Chat { text: "hi" }).encode(&mut payload);
//! // Exactly what Python writes: msgpack.packb({"action": "chat", "text": "hi"})
//! assert_eq!(payload, b"\x82\xa6action\xa4chat\xa4text\xa2hi");
//!
//! let m = Message::parse(&payload).unwrap();
//! assert_eq!(m.decode::<ToServer>().unwrap(), ToServer::Chat { text: "hi" });
//! ```
//!
//! ## Enums: the variant is the action
//!
//! A message is a map with an `"action"` key, so an enum at the top of a message is read and
//! written in the one way that fits: the variant's name (renames applied) is the action, and
//! its fields sit beside it in the same map. A **plain enum** (no `tag`) does this with repod's
//! help and allocates nothing: on receipt the action is already known, so the variant comes
//! from it and the fields are read straight from the frame; `Typed` writes the action first,
//! then the fields. A variant may have named fields (`Chat { text: &'a str }`), hold one
//! struct or map whose entries go beside the action (`Move(Move)`, handy when the same struct
//! also has its own `on_msg` route), or be a unit (`Ping`, just `{"action": "ping"}`). Tuple
//! variants and fields named `action` are refused, with an error saying so.
//!
//! `#[serde(tag = "action")]` produces the same maps through serde's own machinery, and works
//! too: with any serde format, not only through repod, but at the cost of one allocation per
//! decoded message (see below). Only the top level is special: an enum inside a field keeps
//! serde's usual representation.
//!
//! ## The mapping
//!
//! | Rust | msgpack (Python) |
//! |---|---|
//! | struct, struct variant of a message enum | map with the field names as keys (`dict`) |
//! | newtype variant of a message enum holding a struct or map | its entries, beside `"action": name` |
//! | unit variant of a message enum | `{"action": name}` |
//! | `&str`, `String`, `Cow<str>`, `char` | str (`str`) |
//! | `#[serde(with = "serde_bytes")]` `&[u8]`, `Vec<u8>`, `Cow<[u8]>` | bin (`bytes`) |
//! | integers, `f32`, `f64`, `bool` | int in its smallest encoding, float 32 or 64, bool |
//! | `Option<T>` | nil for `None` (`None`); a missing key also reads as `None` |
//! | `Vec<T>`, slices, arrays, tuples | array (`list`) |
//! | `HashMap`, `BTreeMap` | map |
//!
//! Plain `&[u8]` and `Vec<u8>` serialize as arrays of integers, as serde defines them: mark
//! bytes fields `#[serde(with = "serde_bytes")]` (the [`serde_bytes`] crate) so they travel as
//! msgpack bin, which is what Python's `bytes` is. Unknown keys are ignored, so a peer may send
//! more than the type reads.
//!
//! ## What borrows and what allocates
//!
//! Decoding a **struct** reads the frame in place: `&'a str`, `&'a [u8]` (serde_bytes or
//! plain), and `Cow<'a, str>` / `Cow<'a, [u8]>` fields marked `#[serde(borrow)]` point into the
//! read buffer and cost no allocation; `String`, `Vec`, and `Cow` without `#[serde(borrow)]`
//! allocate, as anywhere with serde. A typed echo with borrowed fields allocates nothing per
//! message (`tests/zero_alloc.rs`).
//!
//! A **plain enum** reads like a struct: no allocation beyond what its field types need
//! (`tests/zero_alloc.rs`, a server and a client routing plain enums with `on_enum`). A
//! **`tag = "action"` enum** is decoded through serde's internally tagged path, which buffers
//! the map's entries before it knows the variant: one allocation per message for the buffer,
//! whatever the field types (strings and bytes in it are still borrowed from the frame).
//! Leave the `tag` off where that allocation matters.
//!
//! Typed routes ([`Routes::on_msg`], [`Routes::on_enum`]) hand the handler a value that owns its
//! data (`T: DeserializeOwned`): a route outlives every frame, and Rust cannot name "`Chat<'a>`
//! for the frame's `'a`" in a generic bound. For borrowed fields, decode inside a plain route:
//! `r.on("chat", |me, ctx, m| { let c: Chat = m.decode()?; ... })`.
//!
//! ## Sending errors
//!
//! Encoding into a buffer cannot fail for derived types. A hand-written `Serialize` that returns
//! an error leaves no partial message behind: what it wrote is taken back, an empty map `{}`
//! is sent instead (a map with no action, which Python drops and ours hands to
//! `network_received`), and the error is logged. Check such types with [`Typed::try_encode`].
//!
//! [`Routes::on_msg`]: crate::Routes::on_msg
//! [`Routes::on_enum`]: crate::Routes::on_enum
//! [`ClientRoutes::on_msg`]: crate::ClientRoutes::on_msg
//! [`ClientRoutes::on_enum`]: crate::ClientRoutes::on_enum
//! [`serde_bytes`]: https://docs.rs/serde_bytes

mod action;

use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::client::{ClientCtx, ClientRoutes, Listener};
use crate::encode::Encode;
use crate::server::{ChannelCtx, ChannelHandler, Routes};
use crate::{Error, HandlerResult, Message};

/// A value sent as a msgpack map of its fields by name, through serde.
///
/// Wrap a reference (or a value) to anything that implements [`Serialize`] and send it like any
/// message: `ctx.send(&Typed(&reply))`, `ctx.send_to_all(&Typed(&state))`. Encoding happens
/// when the message is written into the output buffer, behind its length prefix: no
/// intermediate `Vec`, no allocation for derived structs and enums.
///
/// The type should serialize as a map with an `"action"` field for the peer to route it by: a
/// struct with an `action` field (or `#[serde(tag = "action")]`), a map, or an enum whose
/// variants are actions (see [the module documentation](self)).
///
/// ```
/// use repod::{msg, Encode, Typed};
/// use serde::Serialize;
///
/// #[derive(Serialize)]
/// struct Chat<'a> {
///     action: &'static str,
///     text: &'a str,
///     from: &'a str,
/// }
///
/// let (mut typed, mut built) = (Vec::new(), Vec::new());
/// Typed(&Chat { action: "chat", text: "hi", from: "Alice" }).encode(&mut typed);
/// msg! { "action": "chat", "text": "hi", "from": "Alice" }.encode(&mut built);
/// assert_eq!(typed, built); // the same bytes as msg!, and as Python's msgpack.packb
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Typed<T>(pub T);

impl<T: Serialize> Typed<T> {
    /// Encodes the value into `buf`, or returns serde's error with `buf` as it was.
    ///
    /// [`Encode::encode`] does the same, but cannot return the error; see the
    /// [module documentation](self).
    ///
    /// # Errors
    ///
    /// The error the value's `Serialize` implementation returned (derived implementations
    /// return none).
    pub fn try_encode(&self, buf: &mut Vec<u8>) -> Result<(), rmp_serde::encode::Error> {
        let start = buf.len();
        action::encode(buf, &self.0).inspect_err(|_| buf.truncate(start))
    }
}

impl<T: Serialize> Encode for Typed<T> {
    fn encode(&self, buf: &mut Vec<u8>) {
        if let Err(e) = self.try_encode(buf) {
            log::error!(
                "repod: could not serialize a {}: {e}; sending an empty map instead",
                std::any::type_name::<T>()
            );
            let _ = rmp::encode::write_map_len(buf, 0);
        }
    }
}

impl<'a> Message<'a> {
    /// Decodes the message into `T`, borrowing strings and bytes from the frame where `T`'s
    /// fields are references (`&'a str`, `&'a [u8]`, `#[serde(borrow)] Cow<'a, str>`).
    /// Keys `T` does not know are ignored. See the [`typed`](crate::typed) module for the
    /// mapping and for what allocates.
    ///
    /// ```
    /// use repod::{msg, Encode, Message};
    /// use serde::Deserialize;
    ///
    /// #[derive(Deserialize)]
    /// struct Move<'a> {
    ///     x: f64,
    ///     y: f64,
    ///     name: &'a str, // points into the frame
    /// }
    ///
    /// let mut payload = Vec::new();
    /// msg! { "action": "move", "x": 3.5, "y": -2, "name": "Alice" }.encode(&mut payload);
    /// let m = Message::parse(&payload).unwrap();
    /// let mv: Move = m.decode().unwrap();
    /// assert_eq!((mv.x, mv.y, mv.name), (3.5, -2.0, "Alice"));
    ///
    /// let mut payload = Vec::new();
    /// msg! { "action": "move", "x": "left", "y": 0, "name": "Bob" }.encode(&mut payload);
    /// let bad = Message::parse(&payload).unwrap();
    /// match bad.decode::<Move>() {
    ///     Err(repod::Error::Decode { field, .. }) => assert_eq!(field.as_deref(), Some("x")),
    ///     _ => unreachable!(),
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Decode`], naming the field that does not fit.
    pub fn decode<T: Deserialize<'a>>(&self) -> Result<T, Error> {
        let mut de = rmp_serde::Deserializer::from_read_ref(self.payload());
        let routed = action::Routed {
            action: self.action_bytes(),
            de: &mut de,
        };
        match T::deserialize(routed) {
            Ok(v) => Ok(v),
            Err(e) => Err(decode_error::<T>(self, e)),
        }
    }
}

/// Builds the error for a message that did not fit `T`: decodes again, off the fast path, to
/// find where.
#[cold]
#[inline(never)]
fn decode_error<'a, T: Deserialize<'a>>(m: &Message<'a>, first: rmp_serde::decode::Error) -> Error {
    let mut de = rmp_serde::Deserializer::from_read_ref(m.payload());
    let routed = action::Routed {
        action: m.action_bytes(),
        de: &mut de,
    };
    let (path, reason) = match serde_path_to_error::deserialize::<_, T>(routed) {
        Err(e) => (path_in_message(e.path()), e.into_inner().to_string()),
        Ok(_) => (".".to_owned(), first.to_string()),
    };
    let at_root = path == ".";
    let field = if let Some(name) = missing_field(&reason) {
        Some(match at_root {
            true => missing_at_root::<T>(m, name),
            false => format!("{path}.{name}"),
        })
    } else if !at_root {
        Some(path)
    } else if reason.starts_with("unknown variant") {
        Some("action".to_owned())
    } else {
        culprit::<T>(m)
    };
    Error::Decode {
        action: m.action().into(),
        field: field.map(String::into_boxed_str),
        reason: reason.into_boxed_str(),
    }
}

/// The path as the message's sender sees it: a plain enum's variant is the action, not a
/// level of the map, so it is left out.
fn path_in_message(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut segments = path.iter().peekable();
    if let Some(Segment::Enum { .. }) = segments.peek() {
        segments.next();
    }
    let mut out = String::new();
    for segment in segments {
        if !out.is_empty() && !matches!(segment, Segment::Seq { .. }) {
            out.push('.');
        }
        out.push_str(&segment.to_string());
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

/// The field name in serde's "missing field `name`".
fn missing_field(reason: &str) -> Option<&str> {
    reason
        .strip_prefix("missing field `")?
        .strip_suffix('`')
        .filter(|name| !name.contains('`'))
}

/// Messages larger than this, or with more entries, are not searched for the field at fault.
const SEARCH_MAX_BYTES: usize = 64 * 1024;
const SEARCH_MAX_ENTRIES: usize = 32;

/// Finds the top-level key at fault when serde's error carries no path (inside a tagged enum,
/// whose variants serde decodes from a buffered copy it does not track): the first key whose
/// removal changes the error. Bounded, so a hostile message cannot make this costly.
fn culprit<'a, T: Deserialize<'a>>(m: &Message<'a>) -> Option<String> {
    let entries = m.entries().len();
    if entries > SEARCH_MAX_ENTRIES || m.payload().len() > SEARCH_MAX_BYTES {
        return None;
    }
    // Compared with the error through the same path, entries all there: the direct decoder
    // may word the same problem differently.
    let error_without = |skip| {
        T::deserialize(
            Without {
                m: *m,
                skip,
                extra: None,
            }
            .routed(),
        )
        .err()
        .map(|e| e.to_string())
    };
    let baseline = error_without(usize::MAX)?;
    for (skip, (key, _)) in m.entries().enumerate() {
        let Some(name) = key.as_str() else { continue };
        if name == "action" {
            continue;
        }
        if error_without(skip).as_ref() != Some(&baseline) {
            return Some(name.to_owned());
        }
    }
    None
}

/// Where a field serde calls missing, with no path, belongs: at the top level when giving the
/// message that key changes the error; else (a nested struct in a tagged enum) under the first
/// top-level key whose removal changes it.
fn missing_at_root<'a, T: Deserialize<'a>>(m: &Message<'a>, name: &str) -> String {
    let error = |skip, extra| {
        T::deserialize(Without { m: *m, skip, extra }.routed())
            .err()
            .map(|e| e.to_string())
    };
    let baseline = error(usize::MAX, None);
    let changes = |skip, extra| error(skip, extra) != baseline;
    let small = m.entries().len() <= SEARCH_MAX_ENTRIES && m.payload().len() <= SEARCH_MAX_BYTES;
    if !small || changes(usize::MAX, Some(name)) {
        return name.to_owned();
    }
    m.entries()
        .enumerate()
        .filter_map(|(i, (key, _))| Some((i, key.as_str()?)))
        .find(|&(i, key)| key != "action" && changes(i, None))
        .map_or_else(|| name.to_owned(), |(_, key)| format!("{key}.{name}"))
}

/// A message seen without one of its entries (`skip`), or with an extra `key: nil` entry,
/// still borrowing from the frame.
struct Without<'a, 'k> {
    m: Message<'a>,
    skip: usize,
    extra: Option<&'k str>,
}

impl<'a, 'k> Without<'a, 'k> {
    /// As a message, whose action names a plain enum's variant.
    fn routed(self) -> action::Routed<'a, Self> {
        action::Routed {
            action: self.m.action_bytes(),
            de: self,
        }
    }
}

impl<'de> de::Deserializer<'de> for Without<'de, '_> {
    type Error = rmp_serde::decode::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_map(WithoutMap {
            entries: self.m.entries().enumerate(),
            skip: self.skip,
            extra: self.extra,
            value: None,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

struct WithoutMap<'a, 'k> {
    entries: std::iter::Enumerate<crate::message::MapIter<'a>>,
    skip: usize,
    extra: Option<&'k str>,
    value: Option<&'a [u8]>,
}

/// msgpack nil, the value of the extra entry.
const NIL: &[u8] = &[0xc0];

impl<'de> MapAccess<'de> for WithoutMap<'de, '_> {
    type Error = rmp_serde::decode::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let mut next = self.entries.next();
        if next.as_ref().is_some_and(|(i, _)| *i == self.skip) {
            next = self.entries.next();
        }
        let Some((_, (key, value))) = next else {
            return match self.extra.take() {
                Some(key) => {
                    self.value = Some(NIL);
                    seed.deserialize(de::value::StrDeserializer::new(key))
                        .map(Some)
                }
                None => Ok(None),
            };
        };
        self.value = Some(value.raw());
        let mut de = rmp_serde::Deserializer::from_read_ref(key.raw());
        seed.deserialize(&mut de).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let raw = self.value.take().unwrap_or(NIL);
        seed.deserialize(&mut rmp_serde::Deserializer::from_read_ref(raw))
    }
}

/// The actions of a message enum (plain, or `#[serde(tag = "action")]`): its variants' names
/// as serde reads them (renames applied).
///
/// Found by showing the enum's `Deserialize` a message whose action is no variant's name, and
/// keeping the list of expected names serde reports.
///
/// # Panics
///
/// When `T` is not an enum, or is tagged by another key, or has a `#[serde(other)]` variant
/// (then its names cannot be listed).
fn actions_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let name = std::any::type_name::<T>();
    match T::deserialize(Probe) {
        Err(ProbeError::Variants(names)) => names,
        Err(ProbeError::Other(e)) => {
            panic!(
                "repod: on_enum::<{name}>() needs an enum whose variants are actions: a plain \
                 enum, or one with #[serde(tag = \"action\")] ({e})"
            )
        }
        Ok(_) => panic!(
            "repod: on_enum::<{name}>(): the enum accepts any action (a #[serde(other)] \
             variant?), so its routes cannot be listed; use on_msg per action instead"
        ),
    }
}

/// An action no enum has as a variant name.
const PROBE_ACTION: &str = "\u{0}repod: no such action\u{0}";

/// The deserializer that asks an enum for its variants: a map `{"action": PROBE_ACTION}`.
struct Probe;

#[derive(Debug)]
enum ProbeError {
    Variants(&'static [&'static str]),
    Other(String),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::Variants(v) => write!(f, "variants {v:?}"),
            ProbeError::Other(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for ProbeError {}

impl de::Error for ProbeError {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        ProbeError::Other(msg.to_string())
    }

    fn unknown_variant(_: &str, expected: &'static [&'static str]) -> Self {
        ProbeError::Variants(expected)
    }
}

impl<'de> de::Deserializer<'de> for Probe {
    type Error = ProbeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_map(ProbeMap { step: 0 })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        // A plain enum, read as a message would be: the variant from the action.
        visitor.visit_enum(action::ActionEnum {
            action: PROBE_ACTION,
            de: self,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

struct ProbeMap {
    step: u8,
}

impl<'de> MapAccess<'de> for ProbeMap {
    type Error = ProbeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        if self.step > 0 {
            return Ok(None);
        }
        self.step = 1;
        seed.deserialize(de::value::BorrowedStrDeserializer::new("action"))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        seed.deserialize(de::value::BorrowedStrDeserializer::new(PROBE_ACTION))
    }
}

impl<C: ChannelHandler> Routes<C> {
    /// Routes messages whose action is `action` to `handler`, decoded into `T` first. A message
    /// that does not fit `T` reaches [`ChannelHandler::on_error`] as [`Error::Decode`] (the
    /// connection stays); the handler is not called.
    ///
    /// `T` owns its data (see the [`typed`](crate::typed) module); for fields borrowed from the
    /// frame, call [`Message::decode`] in a plain [`on`](Self::on) route.
    ///
    /// ```no_run
    /// use repod::{ChannelHandler, Routes, Server, Typed};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Deserialize)]
    /// struct Chat {
    ///     text: String,
    /// }
    ///
    /// #[derive(Serialize)]
    /// #[serde(tag = "action", rename = "chat")]
    /// struct ChatOut<'a> {
    ///     text: &'a str,
    ///     from: &'a str,
    /// }
    ///
    /// #[derive(Default)]
    /// struct Player {
    ///     name: String,
    /// }
    ///
    /// impl ChannelHandler for Player {
    ///     type Server = ();
    ///
    ///     fn routes(r: &mut Routes<Self>) {
    ///         r.on_msg("chat", |me, ctx, chat: Chat| {
    ///             ctx.send_to_all(&Typed(ChatOut { text: &chat.text, from: &me.name }));
    ///             Ok(())
    ///         });
    ///     }
    /// }
    ///
    /// fn main() -> std::io::Result<()> {
    ///     Server::<Player>::bind("0.0.0.0:5071", ())?.launch()
    /// }
    /// ```
    pub fn on_msg<T, F>(&mut self, action: &str, handler: F) -> &mut Self
    where
        T: DeserializeOwned,
        F: Fn(&mut C, &mut ChannelCtx<'_, C>, T) -> HandlerResult + Send + Sync + 'static,
    {
        self.on(action, move |me, ctx, m| handler(me, ctx, m.decode()?))
    }

    /// Routes every variant of the enum `T` to one `handler`, each variant an action: one
    /// `match` instead of a route per action. `T` is a plain enum (no allocation per message)
    /// or one with `#[serde(tag = "action")]` (one allocation per message); see the
    /// [`typed`](crate::typed) module. Each variant's name (renames applied) becomes a route;
    /// actions that are no variant still go to
    /// [`network_received`](ChannelHandler::network_received), and routes declared with
    /// [`on`](Self::on) or [`on_msg`](Self::on_msg) after this one take precedence for their
    /// action. A message that does not fit its variant reaches
    /// [`ChannelHandler::on_error`] as [`Error::Decode`].
    ///
    /// ```no_run
    /// use repod::{ChannelCtx, ChannelHandler, HandlerResult, Routes, Server, Typed};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Deserialize)]
    /// #[serde(rename_all = "snake_case")]
    /// enum ToServer {
    ///     Nickname { nickname: String },
    ///     Chat { text: String },
    /// }
    ///
    /// #[derive(Serialize)]
    /// #[serde(rename_all = "snake_case")]
    /// enum ToClient<'a> {
    ///     Chat { text: &'a str, from: &'a str },
    /// }
    ///
    /// #[derive(Default)]
    /// struct Player {
    ///     name: String,
    /// }
    ///
    /// impl ChannelHandler for Player {
    ///     type Server = ();
    ///
    ///     fn routes(r: &mut Routes<Self>) {
    ///         r.on_enum(Self::handle);
    ///     }
    /// }
    ///
    /// impl Player {
    ///     fn handle(&mut self, ctx: &mut ChannelCtx<Self>, msg: ToServer) -> HandlerResult {
    ///         match msg {
    ///             ToServer::Nickname { nickname } => self.name = nickname,
    ///             ToServer::Chat { text } => {
    ///                 ctx.send_to_all(&Typed(ToClient::Chat { text: &text, from: &self.name }));
    ///             }
    ///         }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// fn main() -> std::io::Result<()> {
    ///     Server::<Player>::bind("0.0.0.0:5071", ())?.launch()
    /// }
    /// ```
    ///
    /// # Panics
    ///
    /// When `T` is not an enum (or is one tagged by another key than `"action"`), or has a
    /// `#[serde(other)]` variant (which makes the list of its actions unknowable): a mistake
    /// in the code, found when the server is created.
    pub fn on_enum<T, F>(&mut self, handler: F) -> &mut Self
    where
        T: DeserializeOwned,
        F: Fn(&mut C, &mut ChannelCtx<'_, C>, T) -> HandlerResult + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        for action in actions_of::<T>() {
            let handler = Arc::clone(&handler);
            self.on(action, move |me, ctx, m| handler(me, ctx, m.decode()?));
        }
        self
    }
}

impl<L: Listener> ClientRoutes<L> {
    /// Routes messages whose action is `action` to `handler`, decoded into `T` first; the
    /// client's counterpart of [`Routes::on_msg`]. A message that does not fit `T` reaches
    /// [`Listener::on_error`] as [`Error::Decode`].
    ///
    /// ```no_run
    /// use repod::{Client, ClientRoutes, Listener};
    /// use serde::Deserialize;
    ///
    /// #[derive(Deserialize)]
    /// struct Chat {
    ///     text: String,
    ///     from: String,
    /// }
    ///
    /// struct Game;
    ///
    /// impl Listener for Game {
    ///     fn routes(r: &mut ClientRoutes<Self>) {
    ///         r.on_msg("chat", |_me, _net, c: Chat| {
    ///             println!("{}: {}", c.from, c.text);
    ///             Ok(())
    ///         });
    ///     }
    /// }
    ///
    /// let mut client = Client::connect("127.0.0.1:5071", Game)?;
    /// client.pump();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn on_msg<T, F>(&mut self, action: &str, handler: F) -> &mut Self
    where
        T: DeserializeOwned,
        F: Fn(&mut L, &mut ClientCtx<'_>, T) -> HandlerResult + Send + Sync + 'static,
    {
        self.on(action, move |me, ctx, m| handler(me, ctx, m.decode()?))
    }

    /// Routes every variant of the enum `T` to one `handler`, each variant an action; the
    /// client's counterpart of [`Routes::on_enum`]. Connection events are messages too, so
    /// they can be variants (`connected`, `disconnected { reason }`, `error { error }`,
    /// `socketConnect`).
    ///
    /// ```no_run
    /// use repod::{Client, ClientCtx, ClientRoutes, HandlerResult, Listener, Typed};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Deserialize)]
    /// #[serde(rename_all = "snake_case")]
    /// enum ToClient {
    ///     Connected,
    ///     Chat { text: String, from: String },
    ///     Disconnected { reason: String },
    /// }
    ///
    /// #[derive(Serialize)]
    /// #[serde(tag = "action", rename = "nickname")]
    /// struct Nickname<'a> {
    ///     nickname: &'a str,
    /// }
    ///
    /// struct Game {
    ///     running: bool,
    /// }
    ///
    /// impl Listener for Game {
    ///     fn routes(r: &mut ClientRoutes<Self>) {
    ///         r.on_enum(Self::handle);
    ///     }
    /// }
    ///
    /// impl Game {
    ///     fn handle(&mut self, net: &mut ClientCtx, msg: ToClient) -> HandlerResult {
    ///         match msg {
    ///             ToClient::Connected => {
    ///                 net.send(&Typed(Nickname { nickname: "Alice" }));
    ///             }
    ///             ToClient::Chat { text, from } => println!("{from}: {text}"),
    ///             ToClient::Disconnected { reason } => {
    ///                 println!("gone: {reason}");
    ///                 self.running = false;
    ///             }
    ///         }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let mut client = Client::connect("127.0.0.1:5071", Game { running: true })?;
    /// while client.listener().running {
    ///     client.pump();
    /// #   break;
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Panics
    ///
    /// As [`Routes::on_enum`], when the client is created.
    pub fn on_enum<T, F>(&mut self, handler: F) -> &mut Self
    where
        T: DeserializeOwned,
        F: Fn(&mut L, &mut ClientCtx<'_>, T) -> HandlerResult + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        for action in actions_of::<T>() {
            let handler = Arc::clone(&handler);
            self.on(action, move |me, ctx, m| handler(me, ctx, m.decode()?));
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::{msg, Bin};

    fn enc(e: impl Encode) -> Vec<u8> {
        let mut v = Vec::new();
        e.encode(&mut v);
        v
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Chat<'a> {
        action: &'a str,
        text: &'a str,
        #[serde(with = "serde_bytes")]
        raw: &'a [u8],
        #[serde(borrow)]
        note: Cow<'a, str>,
        n: u64,
        hp: i32,
        pos: (f32, f64),
        tag: Option<&'a str>,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    #[serde(tag = "action", rename_all = "snake_case")]
    enum Wire<'a> {
        Ping,
        Chat {
            text: &'a str,
            n: u8,
        },
        #[serde(rename = "socketConnect")]
        SocketConnect,
        Blob {
            #[serde(with = "serde_bytes")]
            data: Vec<u8>,
        },
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(tag = "action", rename_all = "snake_case")]
    enum Owned {
        Chat { text: String, n: u8 },
        Nested { pos: Pos },
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct Pos {
        x: f64,
        y: f64,
    }

    #[test]
    fn struct_encodes_as_msg_does() {
        let chat = Chat {
            action: "chat",
            text: "héllo",
            raw: b"\x00\x01",
            note: Cow::Borrowed("n"),
            n: u64::MAX,
            hp: -3,
            pos: (1.5, -0.25),
            tag: None,
        };
        let built = msg! {
            "action": "chat", "text": "héllo", "raw": Bin(b"\x00\x01"), "note": "n",
            "n": u64::MAX, "hp": -3, "pos": (1.5f32, -0.25f64), "tag": (),
        };
        assert_eq!(enc(Typed(&chat)), enc(built));
    }

    #[test]
    fn struct_decodes_borrowing_from_the_frame() {
        let payload = enc(msg! {
            "action": "chat", "text": "héllo", "raw": Bin(b"\x00\x01"), "note": "n",
            "n": 7, "hp": -3, "pos": (1.5f32, 2), "extra": [1, 2], "tag": "t",
        });
        let m = Message::parse(&payload).unwrap();
        let c: Chat = m.decode().unwrap();
        assert_eq!(
            (c.text, c.raw, c.n, c.hp, c.pos),
            ("héllo", &b"\x00\x01"[..], 7, -3, (1.5, 2.0))
        );
        assert_eq!(c.tag, Some("t"));
        assert!(matches!(c.note, Cow::Borrowed("n")));
        let range = payload.as_ptr_range();
        assert!(range.contains(&c.text.as_ptr()) && range.contains(&c.raw.as_ptr()));
    }

    #[test]
    fn tagged_enum_is_the_flat_map_python_writes() {
        // msgpack.packb({"action": "chat", "text": "hi", "n": 3})
        assert_eq!(
            enc(Typed(Wire::Chat { text: "hi", n: 3 })),
            b"\x83\xa6action\xa4chat\xa4text\xa2hi\xa1n\x03"
        );
        // msgpack.packb({"action": "ping"})
        assert_eq!(enc(Typed(Wire::Ping)), b"\x81\xa6action\xa4ping");
        assert_eq!(
            enc(Typed(Wire::Blob { data: vec![0, 255] })),
            enc(msg! { "action": "blob", "data": Bin(b"\x00\xff") })
        );
        // The action anywhere in the map, as a Python dict may have it.
        let payload = enc(msg! { "text": "hi", "n": 3, "action": "chat" });
        let m = Message::parse(&payload).unwrap();
        assert_eq!(m.decode::<Wire>().unwrap(), Wire::Chat { text: "hi", n: 3 });
        let payload = enc(msg! { "action": "socketConnect" });
        assert_eq!(
            Message::parse(&payload).unwrap().decode::<Wire>().unwrap(),
            Wire::SocketConnect
        );
    }

    /// `Wire`'s twin without `tag`: repod reads and writes the variant as the action.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Plain<'a> {
        Ping,
        Chat {
            text: &'a str,
            n: u8,
        },
        #[serde(rename = "socketConnect")]
        SocketConnect,
        Blob {
            #[serde(with = "serde_bytes")]
            data: Vec<u8>,
        },
        Moved(Pos),
        Scores(std::collections::BTreeMap<&'a str, u32>),
        Flat(Flat),
        Empty(()),
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Flat {
        hp: u8,
        #[serde(flatten)]
        at: Pos,
    }

    impl Serialize for Pos {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeStruct;
            let mut st = s.serialize_struct("Pos", 2)?;
            st.serialize_field("x", &self.x)?;
            st.serialize_field("y", &self.y)?;
            st.end()
        }
    }

    #[test]
    fn plain_enum_is_the_same_flat_map() {
        let cases = [
            (Plain::Ping, enc(Typed(Wire::Ping))),
            (
                Plain::Chat { text: "hi", n: 3 },
                b"\x83\xa6action\xa4chat\xa4text\xa2hi\xa1n\x03".to_vec(),
            ),
            (Plain::SocketConnect, enc(Typed(Wire::SocketConnect))),
            (
                Plain::Blob { data: vec![0, 255] },
                enc(Typed(Wire::Blob { data: vec![0, 255] })),
            ),
            (
                Plain::Moved(Pos { x: 1.5, y: -2.0 }),
                enc(msg! { "action": "moved", "x": 1.5, "y": -2.0 }),
            ),
            (
                Plain::Scores([("ann", 3), ("bob", 300)].into()),
                enc(msg! { "action": "scores", "ann": 3, "bob": 300 }),
            ),
            (Plain::Empty(()), enc(msg! { "action": "empty" })),
        ];
        for (value, wire) in cases {
            let payload = enc(Typed(&value));
            assert_eq!(payload, wire, "{value:?}");
            let m = Message::parse(&payload).unwrap();
            assert_eq!(m.decode::<Plain>().unwrap(), value);
        }
        // A flattened struct is written as a map of unknown length: a 32-bit map header,
        // filled in at the end.
        let flat = Plain::Flat(Flat {
            hp: 9,
            at: Pos { x: 1.0, y: 2.0 },
        });
        let payload = enc(Typed(&flat));
        assert_eq!(&payload[..5], b"\xdf\x00\x00\x00\x04");
        let m = Message::parse(&payload).unwrap();
        assert_eq!((m.action(), m.u64("hp").unwrap()), ("flat", 9));
        assert_eq!(m.decode::<Plain>().unwrap(), flat);
        // The action anywhere in the map; the strings still point into the frame.
        let payload = enc(msg! { "text": "hi", "n": 3, "action": "chat" });
        let m = Message::parse(&payload).unwrap();
        let Plain::Chat { text, n } = m.decode::<Plain>().unwrap() else {
            panic!("not chat")
        };
        assert_eq!((text, n), ("hi", 3));
        assert!(payload.as_ptr_range().contains(&text.as_ptr()));
        // Below the top level, enums keep serde's representation.
        #[derive(Serialize)]
        struct Outer<'a> {
            action: &'a str,
            inner: Plain<'a>,
        }
        let nested = enc(Typed(Outer {
            action: "outer",
            inner: Plain::Ping,
        }));
        assert_eq!(nested, enc(msg! { "action": "outer", "inner": "ping" }));
    }

    #[test]
    fn plain_enum_shapes_without_names_are_refused() {
        #[derive(Serialize, Debug)]
        enum Odd {
            Pair(u8, u8),
            Number(u8),
            Named { action: u8 },
        }
        for (value, says) in [
            (Odd::Pair(1, 2), "variant \"Pair\" holds a tuple"),
            (Odd::Number(1), "variant \"Number\" holds an integer"),
            (Odd::Named { action: 1 }, "has a field named \"action\""),
        ] {
            let mut buf = vec![7];
            let e = Typed(&value).try_encode(&mut buf).unwrap_err();
            assert!(e.to_string().contains(says), "{value:?}: {e}");
            assert_eq!(buf, [7]);
        }
    }

    #[test]
    fn plain_enum_errors_name_the_field() {
        #[derive(Deserialize, Debug)]
        #[serde(rename_all = "snake_case")]
        #[allow(dead_code)]
        enum In {
            Chat { text: String, n: u8 },
            Nested { pos: Pos },
            Moved(Pos),
            Pair(u8, u8),
        }
        let p = enc(msg! { "action": "chat", "n": 1, "text": 5 });
        assert_eq!(decode_err::<In>(&p).0.as_deref(), Some("text"));
        let p = enc(msg! { "action": "chat", "n": 300, "text": "x" });
        assert_eq!(decode_err::<In>(&p).0.as_deref(), Some("n"));
        let p = enc(msg! { "action": "chat", "n": 1 });
        assert_eq!(decode_err::<In>(&p).0.as_deref(), Some("text"));
        let p = enc(msg! { "action": "nested", "pos": msg! { "x": 1 } });
        assert_eq!(decode_err::<In>(&p).0.as_deref(), Some("pos.y"));
        let p = enc(msg! { "action": "nested", "pos": msg! { "x": 1, "y": "up" } });
        assert_eq!(decode_err::<In>(&p).0.as_deref(), Some("pos.y"));
        let p = enc(msg! { "action": "moved", "x": 1 });
        assert_eq!(decode_err::<In>(&p).0.as_deref(), Some("y"));
        let p = enc(msg! { "action": "moved", "x": 1, "y": false });
        assert_eq!(decode_err::<In>(&p).0.as_deref(), Some("y"));
        let p = enc(msg! { "action": "dance" });
        assert_eq!(decode_err::<In>(&p).0.as_deref(), Some("action"));
        let p = enc(msg! { "text": "x" });
        assert_eq!(decode_err::<In>(&p).0.as_deref(), Some("action"));
        let p = enc(msg! { "action": "pair" });
        let (_, reason) = decode_err::<In>(&p);
        assert!(reason.contains("is a tuple"), "{reason}");
    }

    fn decode_err<'a, T: Deserialize<'a> + fmt::Debug>(
        payload: &'a [u8],
    ) -> (Option<String>, String) {
        match Message::parse(payload).unwrap().decode::<T>() {
            Err(Error::Decode {
                field,
                reason,
                action,
            }) => {
                assert!(!action.is_empty() || !Message::parse(payload).unwrap().has_action());
                (field.map(String::from), reason.into())
            }
            other => panic!("expected Error::Decode, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field() {
        let p = enc(
            msg! { "action": "chat", "text": 5, "raw": Bin(b""), "note": "", "n": 1, "hp": 1, "pos": (1, 2) },
        );
        let (field, reason) = decode_err::<Chat>(&p);
        assert_eq!(field.as_deref(), Some("text"), "{reason}");
        let p = enc(
            msg! { "action": "chat", "text": "x", "raw": Bin(b""), "note": "", "hp": 1, "pos": (1, 2) },
        );
        assert_eq!(decode_err::<Chat>(&p).0.as_deref(), Some("n"));
        let p = enc(
            msg! { "action": "chat", "text": "x", "raw": Bin(b""), "note": "", "n": -1, "hp": 1, "pos": (1, 2) },
        );
        assert_eq!(decode_err::<Chat>(&p).0.as_deref(), Some("n"));
        let p = enc(
            msg! { "action": "chat", "text": "x", "raw": Bin(b""), "note": "", "n": 1, "hp": 1, "pos": (1, "y") },
        );
        assert_eq!(decode_err::<Chat>(&p).0.as_deref(), Some("pos[1]"));
        // Inside a tagged enum: serde's own path is lost; the search finds the key.
        let p = enc(msg! { "action": "chat", "n": 1, "text": 5 });
        assert_eq!(decode_err::<Owned>(&p).0.as_deref(), Some("text"));
        let p = enc(msg! { "action": "chat", "n": 300, "text": "x" });
        assert_eq!(decode_err::<Owned>(&p).0.as_deref(), Some("n"));
        let p = enc(msg! { "action": "chat", "n": 1 });
        assert_eq!(decode_err::<Owned>(&p).0.as_deref(), Some("text"));
        let p = enc(msg! { "action": "nested", "pos": msg! { "x": 1 } });
        assert_eq!(decode_err::<Owned>(&p).0.as_deref(), Some("pos.y"));
        let p = enc(msg! { "action": "nested", "pos": msg! { "x": 1, "y": "up" } });
        assert_eq!(decode_err::<Owned>(&p).0.as_deref(), Some("pos"));
        let p = enc(msg! { "action": "dance" });
        assert_eq!(decode_err::<Owned>(&p).0.as_deref(), Some("action"));
        let p = enc(msg! { "text": "x" });
        assert_eq!(decode_err::<Owned>(&p).0.as_deref(), Some("action"));
        // The message as a whole does not fit.
        assert_eq!(decode_err::<u32>(&p).0, None);
        let e = Message::parse(&enc(msg! { "action": "chat", "n": 1, "text": 5 }))
            .unwrap()
            .decode::<Owned>()
            .unwrap_err();
        assert!(!e.is_fatal());
        assert!(
            e.to_string()
                .starts_with("message \"chat\" does not fit its type: field \"text\": "),
            "{e}"
        );
    }

    #[test]
    fn enum_actions_are_listed() {
        assert_eq!(actions_of::<Owned>(), ["chat", "nested"]);
        #[derive(Deserialize)]
        #[serde(tag = "action")]
        #[allow(dead_code)]
        enum Renamed {
            #[serde(rename = "socketConnect")]
            A,
            B {
                x: u8,
            },
        }
        assert_eq!(actions_of::<Renamed>(), ["socketConnect", "B"]);
    }

    #[test]
    fn plain_enum_actions_are_listed() {
        #[derive(Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[allow(dead_code)]
        enum Owned {
            Ping,
            #[serde(rename = "socketConnect")]
            SocketConnect,
            Chat {
                text: String,
            },
            Moved(Pos),
        }
        assert_eq!(
            actions_of::<Owned>(),
            ["ping", "socketConnect", "chat", "moved"]
        );
    }

    #[test]
    #[should_panic(expected = "needs an enum whose variants are actions")]
    fn struct_is_refused() {
        actions_of::<Pos>();
    }

    #[test]
    #[should_panic(expected = "needs an enum whose variants are actions")]
    fn enum_tagged_by_another_key_is_refused() {
        #[derive(Deserialize)]
        #[serde(tag = "type")]
        #[allow(dead_code)]
        enum Other {
            A,
        }
        actions_of::<Other>();
    }

    #[test]
    #[should_panic(expected = "accepts any action")]
    fn catch_all_enum_is_refused() {
        #[derive(Deserialize)]
        #[serde(tag = "action")]
        #[allow(dead_code)]
        enum Open {
            A,
            #[serde(other)]
            Unknown,
        }
        actions_of::<Open>();
    }

    #[test]
    fn failed_serialize_leaves_no_partial_message() {
        struct Bad;
        impl Serialize for Bad {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::{Error as _, SerializeMap};
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("action", "x")?;
                Err(S::Error::custom("no"))
            }
        }
        let mut buf = vec![9];
        assert!(Typed(Bad).try_encode(&mut buf).is_err());
        assert_eq!(buf, [9]);
        Typed(Bad).encode(&mut buf);
        assert_eq!(buf, [9, 0x80]);
    }
}
