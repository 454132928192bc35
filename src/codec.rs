//! The one place that knows the codec (bincode 2.0.1 through serde).
//!
//! Nothing of bincode leaves this module: errors become plain strings that `TaskError` carries.
//! To change codecs (postcard is the usual successor of the unmaintained bincode), change
//! this file.
//!
//! The format is not self-describing: it writes values one after another with no field names,
//! type tags or lengths of structs, so a type's `Deserialize` must read exactly what its
//! `Serialize` wrote, guided by the type alone. Serde constructs that ask the data what comes
//! next (`untagged` and internally tagged enums, `flatten`, `serde_json::Value`) or that write
//! something other than what is read back (`skip_serializing_if`) fail here while the same
//! task works on threads. The errors name the type and the construct and say what to write
//! instead ([`explain_encode`], [`explain_decode`]); the `Task` docs list them for users.

use crate::oob;
use bincode::error::{DecodeError, EncodeError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::any::type_name;
use std::cell::RefCell;

/// The most any single decode may claim (1 GiB): a value never exceeds the frame it travels in,
/// so the wire's frame bound is this same number.
pub(crate) const LIMIT: usize = 1 << 30;

fn config() -> impl bincode::config::Config {
    // Varint integers (compact for the small values tasks usually carry), and a hard cap on
    // what any single decode may claim, so a hostile length cannot ask for a huge allocation.
    bincode::config::standard().with_limit::<LIMIT>()
}

/// Appends the encoding of `value` to `out`.
///
/// Inside an out-of-band context (`bytes::oob::encoding`) a large [`Bytes`](crate::Bytes)
/// registers its segment there instead of being written inline.
pub(crate) fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
    oob::in_codec(|| bincode::serde::encode_into_std_write(value, out, config()))
        .map(drop)
        .map_err(|e| explain_encode(&place::<T>(encode_failure_path(value)), e))
}

/// Decodes one value from the front of `bytes`; returns it and the number of bytes it used.
/// An out-of-band [`Bytes`](crate::Bytes) takes its segment from the context
/// `bytes::oob::decoding` set.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), String> {
    oob::in_codec(|| bincode::serde::decode_from_slice(bytes, config()))
        .map_err(|e| explain_decode(&decode_place::<T>(decode_failure_path::<T>(bytes)), e))
}

// ===== what went wrong, and where =====

/// "`my::Task`", or "`my::Task` (at `config.mode`)" when the failure was inside it.
fn place<T: ?Sized>(path: Option<String>) -> String {
    match path {
        Some(path) => format!("`{}` (at `{path}`)", type_name::<T>()),
        None => format!("`{}`", type_name::<T>()),
    }
}

/// As [`place`], for decoding: the format reads structs as sequences, so the path numbers
/// fields as it numbers elements (`[1]` is the second field), and says so.
fn decode_place<T>(path: Option<String>) -> String {
    match path {
        Some(path) => format!("`{}` (at `{path}`, fields and elements numbered from 0)", type_name::<T>()),
        None => place::<T>(None),
    }
}

/// Where in `value` encoding fails: it is encoded once more, through serde_path_to_error's
/// tracking serializer, into nothing. Only after a failure, so the usual path pays nothing.
fn encode_failure_path<T: Serialize + ?Sized>(value: &T) -> Option<String> {
    /// `value`, whose serialization records where it failed.
    struct Tracked<'a, T: ?Sized>(&'a T, RefCell<Option<String>>);
    impl<T: Serialize + ?Sized> Serialize for Tracked<'_, T> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serde_path_to_error::serialize(self.0, serializer).map_err(|e| {
                *self.1.borrow_mut() = Some(e.path().to_string());
                e.into_inner()
            })
        }
    }
    let tracked = Tracked(value, RefCell::new(None));
    // Inline only: this pass must not make segments.
    let _ = oob::encoding(false, || {
        oob::in_codec(|| bincode::serde::encode_into_std_write(&tracked, &mut std::io::sink(), config()))
    });
    tracked.1.into_inner().filter(|path| path != ".")
}

/// Where in a `T` decoding `bytes` fails, found the same way as [`encode_failure_path`].
fn decode_failure_path<T: DeserializeOwned>(bytes: &[u8]) -> Option<String> {
    let reader = bincode::de::read::SliceReader::new(bytes);
    let mut decoder = bincode::serde::OwnedSerdeDecoder::from_reader(reader, config());
    let error = oob::in_codec(|| serde_path_to_error::deserialize::<_, T>(decoder.as_deserializer())).err()?;
    Some(error.path().to_string()).filter(|path| path != ".")
}

/// The way out offered by every message about a construct the format cannot carry.
const THREADS: &str = "or run the task with Backend::Threads, which does not encode it";

/// An encoding error of a value; `ty` is its type and where in it the error came up. Says what
/// to do where the type is the cause.
fn explain_encode(ty: &str, e: EncodeError) -> String {
    use bincode::serde::EncodeError as Serde;
    match e {
        EncodeError::Serde(Serde::SequenceMustHaveLength) => format!(
            "{ty} cannot be encoded for a worker process: part of it writes a map or sequence without saying \
             its length first, as `#[serde(flatten)]` does (or `collect_seq`/`collect_map` over an iterator of \
             unknown length); the process codec is not self-describing and needs the length. Spell the \
             flattened fields out in the struct (or collect into a Vec first), {THREADS} ({e})"
        ),
        other => format!("{ty} could not be encoded: {other}"),
    }
}

/// A decoding error of a value; `ty` is its type and where in it the error came up. The bytes were encoded from the same type by the
/// same binary (frames are checked on the way), so a failure means the type's `Serialize` and
/// `Deserialize` do not agree on a format without field names or tags: say which constructs do
/// that, and what to write instead.
fn explain_decode(ty: &str, e: DecodeError) -> String {
    use bincode::serde::DecodeError as Serde;
    match e {
        DecodeError::Serde(Serde::AnyNotSupported | Serde::IgnoredAnyNotSupported) => format!(
            "{ty} cannot be decoded in another process: part of it asks the data what type comes next \
             (`deserialize_any`), as `#[serde(untagged)]` and internally tagged `#[serde(tag = \"..\")]` enums, \
             `#[serde(flatten)]` and `serde_json::Value` do, and the process codec stores no type tags. Use an \
             externally tagged enum (serde's default: no `untagged`, no `tag`), spell flattened fields out, \
             carry JSON as a String, {THREADS} ({e})"
        ),
        DecodeError::Serde(Serde::IdentifierNotSupported) => format!(
            "{ty} cannot be decoded in another process: part of it reads field or variant names \
             (`deserialize_identifier`), as adjacently tagged `#[serde(tag = \"..\", content = \"..\")]` enums \
             and `#[serde(flatten)]` do, and the process codec stores no names. Use an externally tagged enum \
             (serde's default), spell flattened fields out, {THREADS} ({e})"
        ),
        DecodeError::LimitExceeded => format!("{ty} claims more than the {} MiB a value may hold ({e})", LIMIT >> 20),
        other => format!(
            "{ty} did not decode from the bytes it was encoded to: its Serialize writes something other than \
             what its Deserialize reads, as `#[serde(skip_serializing_if = \"..\")]`, `#[serde(skip_serializing)]` \
             (without `skip_deserializing`) or a hand-written impl do; the process codec is not self-describing, \
             so every field must be written every time (an Option as None, not left out), {THREADS} ({other})"
        ),
    }
}

/// Decodes exactly one value: bytes left over after it are an error.
pub(crate) fn decode_exact<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut values = Values::new(bytes);
    let value = values.next()?;
    values.finish()?;
    Ok(value)
}

/// Decodes `count` consecutive values that fill `bytes` exactly.
pub(crate) fn decode_many<T: DeserializeOwned>(bytes: &[u8], count: usize) -> Result<Vec<T>, String> {
    let mut values = Values::new(bytes);
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        out.push(values.next()?);
    }
    values.finish()?;
    Ok(out)
}

/// Consecutive values read off a buffer one at a time (a worker decodes a batch's arguments as
/// it runs them); [`Values::finish`] checks that nothing is left over.
pub(crate) struct Values<'a> {
    rest: &'a [u8],
    /// The type of the last value read, for the message about bytes left over.
    last: Option<&'static str>,
}

impl<'a> Values<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Values { rest: bytes, last: None }
    }

    /// The next value.
    pub(crate) fn next<T: DeserializeOwned>(&mut self) -> Result<T, String> {
        let (value, used) = decode(self.rest)?;
        self.rest = &self.rest[used..];
        self.last = Some(type_name::<T>());
        Ok(value)
    }

    /// Ok when every byte was used.
    pub(crate) fn finish(self) -> Result<(), String> {
        match (self.rest.len(), self.last) {
            (0, _) => Ok(()),
            (n, None) => Err(format!("{n} bytes left over where no value was expected")),
            (n, Some(ty)) => Err(format!(
                "{n} bytes left over after the last `{ty}`: its Deserialize reads less than its Serialize \
                 writes, as `#[serde(skip_deserializing)]` (without `skip_serializing`) or a hand-written impl \
                 do; the process codec is not self-describing, so both must agree field by field, {THREADS}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors_are_strings() {
        let mut out = Vec::new();
        encode_into(&(7u64, "seven".to_string()), &mut out).unwrap();
        let ((n, s), used): ((u64, String), usize) = decode(&out).unwrap();
        assert_eq!((n, s.as_str(), used), (7, "seven", out.len()));
        let err = decode::<(u64, String)>(&out[..3]).unwrap_err();
        assert!(!err.is_empty());
    }

    #[test]
    fn exact_and_many_refuse_leftovers() {
        let mut out = Vec::new();
        encode_into(&1u32, &mut out).unwrap();
        encode_into(&2u32, &mut out).unwrap();
        assert_eq!(decode_many::<u32>(&out, 2).unwrap(), vec![1, 2]);
        let leftover = decode_many::<u32>(&out, 1).unwrap_err();
        assert!(leftover.starts_with("1 bytes left over after the last `u32`"), "{leftover}");
        assert_eq!(decode_many::<u32>(&out, 0).unwrap_err(), "2 bytes left over where no value was expected");
        assert!(decode_exact::<u32>(&out).is_err());
        assert_eq!(decode_exact::<u32>(&out[..1]).unwrap(), 1);
        assert!(decode_many::<u32>(&out, 3).is_err(), "too few values");
    }

    #[test]
    fn a_huge_claimed_length_is_refused_without_allocating_it() {
        // A Vec<u8> claiming u64::MAX elements in 10 bytes.
        let mut bytes = vec![253u8];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode::<Vec<u8>>(&bytes).is_err());
    }
}

/// What a type the format cannot carry is told, construct by construct: the message names the
/// type, the construct and what to write instead. The `Task` docs list the same constructs.
#[cfg(test)]
mod not_self_describing {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug)]
    #[serde(untagged)]
    enum Untagged {
        Number(u32),
        Text(String),
    }

    #[derive(Serialize, Deserialize, Debug)]
    #[serde(tag = "kind")]
    enum InternallyTagged {
        Circle { r: u32 },
    }

    #[derive(Serialize, Deserialize, Debug)]
    #[serde(tag = "t", content = "c")]
    enum AdjacentlyTagged {
        Number(u32),
    }

    #[derive(Serialize, Deserialize, Debug)]
    struct Inner {
        x: u32,
    }

    #[derive(Serialize, Deserialize, Debug)]
    struct Flattened {
        #[serde(flatten)]
        inner: Inner,
    }

    #[derive(Serialize, Deserialize, Debug)]
    struct Skipping {
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<u32>,
        count: u32,
    }

    #[derive(Serialize, Deserialize, Debug)]
    struct SkipsOnRead {
        #[serde(skip_deserializing)]
        cache: u32,
    }

    /// Encodes `value` and decodes it back: the first error.
    fn round_trip<T: Serialize + DeserializeOwned>(value: &T) -> String {
        let mut out = Vec::new();
        match encode_into(value, &mut out) {
            Err(e) => e,
            Ok(()) => decode_exact::<T>(&out).err().expect("this type cannot round-trip"),
        }
    }

    fn assert_says(message: &str, ty: &str, words: &[&str]) {
        assert!(message.contains(&format!("`{ty}`")), "the type must be named: {message}");
        for word in words.iter().chain(&["Backend::Threads"]) {
            assert!(message.contains(word), "{word:?} missing from: {message}");
        }
    }

    #[test]
    fn untagged_and_internally_tagged_enums_and_json_values_need_deserialize_any() {
        let ty = type_name::<Untagged>();
        assert_says(&round_trip(&Untagged::Number(1)), ty, &["#[serde(untagged)]", "externally tagged enum"]);
        let ty = type_name::<InternallyTagged>();
        assert_says(&round_trip(&InternallyTagged::Circle { r: 1 }), ty, &["internally tagged", "`tag`"]);
        let value = serde_json::json!({"a": [1, 2]});
        assert_says(&round_trip(&value), "serde_json::value::Value", &["serde_json::Value", "JSON as a String"]);
    }

    #[test]
    fn adjacently_tagged_enums_need_identifiers() {
        let message = round_trip(&AdjacentlyTagged::Number(3));
        assert_says(&message, type_name::<AdjacentlyTagged>(), &["adjacently tagged", "externally tagged enum"]);
    }

    #[test]
    fn flatten_fails_to_encode() {
        let message = round_trip(&Flattened { inner: Inner { x: 1 } });
        assert_says(&message, type_name::<Flattened>(), &["#[serde(flatten)]", "Spell the flattened fields out"]);
    }

    #[test]
    fn skipped_fields_do_not_decode_back() {
        for count in [0, 1, 5, 300] {
            let message = round_trip(&Skipping { note: None, count });
            assert_says(&message, type_name::<Skipping>(), &["skip_serializing_if", "an Option as None"]);
        }
        let message = round_trip(&SkipsOnRead { cache: 7 });
        assert_says(&message, type_name::<SkipsOnRead>(), &["skip_deserializing"]);
    }

    #[test]
    fn what_the_format_does_carry_round_trips() {
        // The alternatives the messages offer: externally tagged enums, fields spelt out,
        // every field written, JSON as a String.
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        enum Shape {
            Circle { r: u32 },
            Label(String),
        }
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Instead {
            shape: Shape,
            x: u32,
            note: Option<u32>,
            json: String,
        }
        let value = Instead { shape: Shape::Circle { r: 2 }, x: 1, note: None, json: r#"{"a":1}"#.into() };
        let mut out = Vec::new();
        encode_into(&value, &mut out).unwrap();
        assert_eq!(decode_exact::<Instead>(&out).unwrap(), value);
        let label = Instead { shape: Shape::Label("l".into()), ..value };
        out.clear();
        encode_into(&label, &mut out).unwrap();
        assert_eq!(decode_exact::<Instead>(&out).unwrap(), label);
    }
}
