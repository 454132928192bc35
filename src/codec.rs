//! The one place that knows the codec (bincode 2.0.1 through serde).
//!
//! Nothing of bincode leaves this module: errors become plain strings that `TaskError` carries.
//! To change codecs (postcard is the usual successor of the unmaintained bincode), change
//! this file.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::process::wire::MAX_FRAME;

fn config() -> impl bincode::config::Config {
    // Varint integers (compact for the small values tasks usually carry), and a hard cap on
    // what any single decode may claim, so a hostile length cannot ask for a huge allocation.
    bincode::config::standard().with_limit::<MAX_FRAME>()
}

/// Appends the encoding of `value` to `out`.
pub(crate) fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
    bincode::serde::encode_into_std_write(value, out, config()).map(drop).map_err(|e| e.to_string())
}

/// Decodes one value from the front of `bytes`; returns it and the number of bytes it used.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), String> {
    bincode::serde::decode_from_slice(bytes, config()).map_err(|e| e.to_string())
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
    fn a_huge_claimed_length_is_refused_without_allocating_it() {
        // A Vec<u8> claiming u64::MAX elements in 10 bytes.
        let mut bytes = vec![253u8];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode::<Vec<u8>>(&bytes).is_err());
    }
}
