//! The one place that knows the codec (bincode 2.0.1 through serde).
//!
//! Nothing of bincode leaves this module: errors become plain strings that `TaskError` carries.
//! To change codecs (postcard is the usual successor of the unmaintained bincode), change
//! this file.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The most any single decode may claim (1 GiB): a value never exceeds the frame it travels in,
/// so the wire's frame bound is this same number.
pub(crate) const LIMIT: usize = 1 << 30;

fn config() -> impl bincode::config::Config {
    // Varint integers (compact for the small values tasks usually carry), and a hard cap on
    // what any single decode may claim, so a hostile length cannot ask for a huge allocation.
    bincode::config::standard().with_limit::<LIMIT>()
}

/// Appends the encoding of `value` to `out`.
pub(crate) fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
    bincode::serde::encode_into_std_write(value, out, config()).map(drop).map_err(|e| e.to_string())
}

/// Decodes one value from the front of `bytes`; returns it and the number of bytes it used.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), String> {
    bincode::serde::decode_from_slice(bytes, config()).map_err(|e| e.to_string())
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
}

impl<'a> Values<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Values { rest: bytes }
    }

    /// The next value.
    pub(crate) fn next<T: DeserializeOwned>(&mut self) -> Result<T, String> {
        let (value, used) = decode(self.rest)?;
        self.rest = &self.rest[used..];
        Ok(value)
    }

    /// Ok when every byte was used.
    pub(crate) fn finish(self) -> Result<(), String> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(format!("{n} bytes left over after the last value")),
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
        assert_eq!(decode_many::<u32>(&out, 1).unwrap_err(), "1 bytes left over after the last value");
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
