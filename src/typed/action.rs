//! Plain enums as messages: the variant is the action.
//!
//! A message is a map with an `"action"` key, so an enum at the top of a message has one
//! sensible wire form: the variant's name as the action, the variant's fields beside it
//! (`{"action": "chat", "text": "hi"}`). serde's `#[serde(tag = "action")]` writes that form,
//! but reads it by buffering every entry of the map before it knows the variant: one
//! allocation per message. Here the action is already known (the frame was validated and its
//! action found before any handler runs), so a plain enum (no `tag`) is read straight from the
//! frame: the variant from the action, its fields from the map, strings still borrowed. Writing
//! goes through the same rmp-serde serializer, with the variant's name put in front as the
//! action; everything below the top level is rmp-serde's own business.
//!
//! Only the top level is touched: an enum inside a field keeps serde's usual representation.

use std::fmt;

use rmp_serde::config::{DefaultConfig, StructMapConfig};
use rmp_serde::encode::Error as EncodeError;
use serde::de::{
    self, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, VariantAccess, Visitor,
};
use serde::ser::{self, Serialize};

/// The serializer `Typed` has always used: rmp-serde, structs as maps with their field names.
type Rmp<'b> = rmp_serde::Serializer<&'b mut Vec<u8>, StructMapConfig<DefaultConfig>>;

/// Serializes `value` into `buf` as a message: a top-level enum variant becomes a map with the
/// variant's name as its `"action"`; anything else is written as rmp-serde writes it.
pub(super) fn encode<T: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    value: &T,
) -> Result<(), EncodeError> {
    let mut rmp = rmp_serde::Serializer::new(buf).with_struct_map();
    value.serialize(TopSer(&mut rmp))
}

/// Writes the head of a message whose action is `action`: a map header for `fields` entries
/// plus the action, then the action.
fn head(rmp: &mut Rmp<'_>, fields: usize, action: &str) -> Result<(), EncodeError> {
    let len = u32::try_from(fields + 1).map_err(|_| {
        <EncodeError as ser::Error>::custom("a message has at most 2^32 - 1 fields")
    })?;
    let buf: &mut Vec<u8> = rmp.get_mut();
    crate::encode::write_map_len(buf, len);
    crate::encode::write_str(buf, "action");
    crate::encode::write_str(buf, action);
    Ok(())
}

fn not_a_map(action: &str, what: &str) -> EncodeError {
    <EncodeError as ser::Error>::custom(format_args!(
        "variant \"{action}\" holds {what}: a variant of a message enum has named fields, or \
         holds one struct or map whose entries go beside the action"
    ))
}

/// The top of a message: variants are intercepted, everything else goes to rmp-serde.
struct TopSer<'s, 'b>(&'s mut Rmp<'b>);

/// The serializer types of rmp-serde for `&mut Rmp`.
type RmpSer<'s, 'b> = &'s mut Rmp<'b>;

macro_rules! forward_ser {
    ($($method:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {$(
        #[inline]
        fn $method(self, $($arg: $ty),*) -> Result<$ret, EncodeError> {
            ser::Serializer::$method(self.0, $($arg),*)
        }
    )*};
}

impl<'s, 'b> ser::Serializer for TopSer<'s, 'b> {
    type Ok = ();
    type Error = EncodeError;
    type SerializeSeq = <RmpSer<'s, 'b> as ser::Serializer>::SerializeSeq;
    type SerializeTuple = <RmpSer<'s, 'b> as ser::Serializer>::SerializeTuple;
    type SerializeTupleStruct = <RmpSer<'s, 'b> as ser::Serializer>::SerializeTupleStruct;
    type SerializeTupleVariant = ser::Impossible<(), EncodeError>;
    type SerializeMap = <RmpSer<'s, 'b> as ser::Serializer>::SerializeMap;
    type SerializeStruct = <RmpSer<'s, 'b> as ser::Serializer>::SerializeStruct;
    type SerializeStructVariant = Fields<'s, 'b>;

    forward_ser! {
        serialize_bool(v: bool) -> ();
        serialize_i8(v: i8) -> ();
        serialize_i16(v: i16) -> ();
        serialize_i32(v: i32) -> ();
        serialize_i64(v: i64) -> ();
        serialize_i128(v: i128) -> ();
        serialize_u8(v: u8) -> ();
        serialize_u16(v: u16) -> ();
        serialize_u32(v: u32) -> ();
        serialize_u64(v: u64) -> ();
        serialize_u128(v: u128) -> ();
        serialize_f32(v: f32) -> ();
        serialize_f64(v: f64) -> ();
        serialize_char(v: char) -> ();
        serialize_str(v: &str) -> ();
        serialize_bytes(v: &[u8]) -> ();
        serialize_none() -> ();
        serialize_unit() -> ();
        serialize_unit_struct(name: &'static str) -> ();
        serialize_seq(len: Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(len: usize) -> Self::SerializeTuple;
        serialize_tuple_struct(name: &'static str, len: usize) -> Self::SerializeTupleStruct;
        serialize_map(len: Option<usize>) -> Self::SerializeMap;
        serialize_struct(name: &'static str, len: usize) -> Self::SerializeStruct;
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), EncodeError> {
        ser::Serializer::serialize_some(self.0, value)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        ser::Serializer::serialize_newtype_struct(self.0, name, value)
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), EncodeError> {
        head(self.0, 0, variant)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        value.serialize(BesideAction {
            rmp: self.0,
            action: variant,
        })
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, EncodeError> {
        Err(not_a_map(variant, "a tuple"))
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Fields<'s, 'b>, EncodeError> {
        head(self.0, len, variant)?;
        Ok(Fields(self.0))
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// Named fields after the action: the entries of a struct variant, or of the struct a newtype
/// variant holds.
pub(super) struct Fields<'s, 'b>(&'s mut Rmp<'b>);

impl Fields<'_, '_> {
    #[inline]
    fn field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        if key == "action" {
            // The action is the variant's name; a second "action" key would make the map
            // ambiguous (Python keeps the last one, we the first).
            return Err(<EncodeError as ser::Error>::custom(
                "a variant of a message enum has a field named \"action\"; the variant's name is the action",
            ));
        }
        crate::encode::write_str(self.0.get_mut(), key);
        value.serialize(&mut *self.0)
    }
}

impl ser::SerializeStruct for Fields<'_, '_> {
    type Ok = ();
    type Error = EncodeError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        self.field(key, value)
    }

    fn end(self) -> Result<(), EncodeError> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for Fields<'_, '_> {
    type Ok = ();
    type Error = EncodeError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        self.field(key, value)
    }

    fn end(self) -> Result<(), EncodeError> {
        Ok(())
    }
}

/// The entries of a map a newtype variant holds, after the action. A map of unknown length
/// (`#[serde(flatten)]` writes one) gets a 32-bit length, filled in at the end: valid msgpack,
/// not the shortest form, and no buffer on the side.
pub(super) struct Entries<'s, 'b> {
    rmp: &'s mut Rmp<'b>,
    /// Where the 32-bit length goes, and the entries written so far.
    unsized_at: Option<usize>,
    count: u32,
}

impl ser::SerializeMap for Entries<'_, '_> {
    type Ok = ();
    type Error = EncodeError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), EncodeError> {
        self.count += 1;
        key.serialize(&mut *self.rmp)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        value.serialize(&mut *self.rmp)
    }

    fn end(self) -> Result<(), EncodeError> {
        if let Some(at) = self.unsized_at {
            let len = self.count + 1;
            self.rmp.get_mut()[at + 1..at + 5].copy_from_slice(&len.to_be_bytes());
        }
        Ok(())
    }
}

/// The value a newtype variant holds: a struct or a map, whose entries go beside the action.
struct BesideAction<'s, 'b> {
    rmp: &'s mut Rmp<'b>,
    action: &'static str,
}

macro_rules! refuse_ser {
    ($($method:ident($($ty:ty),*) as $what:literal;)*) => {$(
        fn $method(self, $(_: $ty),*) -> Result<(), EncodeError> {
            Err(not_a_map(self.action, $what))
        }
    )*};
}

impl<'s, 'b> ser::Serializer for BesideAction<'s, 'b> {
    type Ok = ();
    type Error = EncodeError;
    type SerializeSeq = ser::Impossible<(), EncodeError>;
    type SerializeTuple = ser::Impossible<(), EncodeError>;
    type SerializeTupleStruct = ser::Impossible<(), EncodeError>;
    type SerializeTupleVariant = ser::Impossible<(), EncodeError>;
    type SerializeMap = Entries<'s, 'b>;
    type SerializeStruct = Fields<'s, 'b>;
    type SerializeStructVariant = ser::Impossible<(), EncodeError>;

    refuse_ser! {
        serialize_bool(bool) as "a bool";
        serialize_i8(i8) as "an integer";
        serialize_i16(i16) as "an integer";
        serialize_i32(i32) as "an integer";
        serialize_i64(i64) as "an integer";
        serialize_i128(i128) as "an integer";
        serialize_u8(u8) as "an integer";
        serialize_u16(u16) as "an integer";
        serialize_u32(u32) as "an integer";
        serialize_u64(u64) as "an integer";
        serialize_u128(u128) as "an integer";
        serialize_f32(f32) as "a float";
        serialize_f64(f64) as "a float";
        serialize_char(char) as "a char";
        serialize_str(&str) as "a string";
        serialize_bytes(&[u8]) as "bytes";
        serialize_none() as "an Option";
        serialize_unit_variant(&'static str, u32, &'static str) as "an enum";
    }

    fn serialize_unit(self) -> Result<(), EncodeError> {
        head(self.rmp, 0, self.action)
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<(), EncodeError> {
        head(self.rmp, 0, self.action)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), EncodeError> {
        Err(not_a_map(self.action, "an Option"))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), EncodeError> {
        Err(not_a_map(self.action, "an enum"))
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, EncodeError> {
        Err(not_a_map(self.action, "a sequence"))
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, EncodeError> {
        Err(not_a_map(self.action, "a tuple"))
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, EncodeError> {
        Err(not_a_map(self.action, "a tuple struct"))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, EncodeError> {
        Err(not_a_map(self.action, "an enum"))
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Entries<'s, 'b>, EncodeError> {
        let unsized_at = match len {
            Some(len) => {
                head(self.rmp, len, self.action)?;
                None
            }
            None => {
                let buf = self.rmp.get_mut();
                let at = buf.len();
                // map 32 with its length to come; the action is the first entry.
                buf.extend_from_slice(&[0xdf, 0, 0, 0, 0]);
                crate::encode::write_str(buf, "action");
                crate::encode::write_str(buf, self.action);
                Some(at)
            }
        };
        Ok(Entries {
            rmp: self.rmp,
            unsized_at,
            count: 0,
        })
    }

    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Fields<'s, 'b>, EncodeError> {
        head(self.rmp, len, self.action)?;
        Ok(Fields(self.rmp))
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, EncodeError> {
        Err(not_a_map(self.action, "an enum"))
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// A deserializer for a whole message whose action is known: a top-level enum reads its
/// variant from the action and its fields from the map; everything else goes to `de`.
pub(super) struct Routed<'a, D> {
    /// The action's bytes, UTF-8 since the message was validated; made a `str` only for an
    /// enum, so decoding a struct costs nothing for it.
    pub(super) action: &'a [u8],
    pub(super) de: D,
}

macro_rules! forward_de {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            self.de.$method($($arg,)* visitor)
        }
    )*};
}

/// The methods both wrappers hand to the deserializer they wrap, untouched.
macro_rules! forward_de_common {
    () => {
        forward_de! {
            deserialize_any();
            deserialize_bool();
            deserialize_i8();
            deserialize_i16();
            deserialize_i32();
            deserialize_i64();
            deserialize_i128();
            deserialize_u8();
            deserialize_u16();
            deserialize_u32();
            deserialize_u64();
            deserialize_u128();
            deserialize_f32();
            deserialize_f64();
            deserialize_char();
            deserialize_str();
            deserialize_string();
            deserialize_bytes();
            deserialize_byte_buf();
            deserialize_option();
            deserialize_seq();
            deserialize_tuple(len: usize);
            deserialize_tuple_struct(name: &'static str, len: usize);
            deserialize_identifier();
            deserialize_ignored_any();
        }
    };
}

impl<'de, D: de::Deserializer<'de>> de::Deserializer<'de> for Routed<'_, D> {
    type Error = D::Error;

    forward_de! {
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
    }
    forward_de_common!();

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        visitor.visit_enum(ActionEnum {
            action: std::str::from_utf8(self.action).unwrap_or(""),
            de: self.de,
        })
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

/// The variant named by the action, its content the map without the action.
pub(super) struct ActionEnum<'a, D> {
    pub(super) action: &'a str,
    pub(super) de: D,
}

impl<'de, D: de::Deserializer<'de>> EnumAccess<'de> for ActionEnum<'_, D> {
    type Error = D::Error;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self), D::Error> {
        let variant = seed.deserialize(de::value::StrDeserializer::<D::Error>::new(self.action))?;
        Ok((variant, self))
    }
}

impl<'de, D: de::Deserializer<'de>> VariantAccess<'de> for ActionEnum<'_, D> {
    type Error = D::Error;

    fn unit_variant(self) -> Result<(), D::Error> {
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, D::Error> {
        seed.deserialize(WithoutAction { de: self.de })
    }

    fn tuple_variant<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value, D::Error> {
        Err(de::Error::custom(TupleVariant(self.action)))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        de::Deserializer::deserialize_struct(WithoutAction { de: self.de }, "", fields, visitor)
    }
}

/// The map of a message seen without its `"action"` entry: the variant's content, which
/// `Typed` wrote beside the action. So a variant holding a map gets back the entries it sent,
/// and one with `#[serde(deny_unknown_fields)]` is not refused for the action.
struct WithoutAction<D> {
    de: D,
}

impl<'de, D: de::Deserializer<'de>> de::Deserializer<'de> for WithoutAction<D> {
    type Error = D::Error;

    forward_de! {
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
    }
    forward_de_common!();

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        visitor.visit_newtype_struct(self)
    }

    // A unit, written as the action alone; other keys are ignored as a struct ignores them.
    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        visitor.visit_unit()
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.de.deserialize_map(SkipAction(visitor))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.de
            .deserialize_struct(name, fields, SkipAction(visitor))
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

/// Hands the visitor the map without its `"action"` entry.
struct SkipAction<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for SkipAction<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(SkipActionMap(map))
    }
}

struct SkipActionMap<A>(A);

impl<'de, A: MapAccess<'de>> MapAccess<'de> for SkipActionMap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            return match self.0.next_key::<Key<'de>>()? {
                None => Ok(None),
                Some(Key::Str("action")) => {
                    self.0.next_value::<de::IgnoredAny>()?;
                    continue;
                }
                Some(Key::Str(key)) => seed
                    .deserialize(de::value::BorrowedStrDeserializer::new(key))
                    .map(Some),
                Some(Key::Bytes(key)) => seed
                    .deserialize(de::value::BorrowedBytesDeserializer::new(key))
                    .map(Some),
                Some(Key::Unsigned(key)) => seed.deserialize(key.into_deserializer()).map(Some),
                Some(Key::Signed(key)) => seed.deserialize(key.into_deserializer()).map(Some),
                Some(Key::Float(key)) => seed.deserialize(key.into_deserializer()).map(Some),
                Some(Key::Bool(key)) => seed.deserialize(key.into_deserializer()).map(Some),
                Some(Key::Nil) => seed.deserialize(().into_deserializer()).map(Some),
            };
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.0.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint().map(|n| n.saturating_sub(1))
    }
}

/// A key of a variant's map, seen to find the action: any msgpack scalar. (Python's msgpack
/// reads only string and bytes keys; an array or map as a key is refused with a clear error.)
enum Key<'de> {
    Str(&'de str),
    Bytes(&'de [u8]),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Bool(bool),
    Nil,
}

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key that is a string, bytes, a number, a bool or nil")
            }

            fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Key<'de>, E> {
                Ok(Key::Bytes(v))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Key<'de>, E> {
                Ok(Key::Float(v))
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Key<'de>, E> {
                Ok(Key::Bool(v))
            }

            fn visit_unit<E: de::Error>(self) -> Result<Key<'de>, E> {
                Ok(Key::Nil)
            }

            fn visit_none<E: de::Error>(self) -> Result<Key<'de>, E> {
                Ok(Key::Nil)
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Str(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Key<'de>, E> {
                Ok(Key::Unsigned(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Key<'de>, E> {
                Ok(Key::Signed(v))
            }
        }

        de.deserialize_any(KeyVisitor)
    }
}

struct TupleVariant<'a>(&'a str);

impl fmt::Display for TupleVariant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "variant \"{}\" is a tuple; a message's fields have names (use named fields, or a \
             variant holding one struct)",
            self.0
        )
    }
}
