//! The harnesses' input: a reader that turns fuzzer bytes into numbers (any input is a valid
//! program). The seeded `cargo test` runs make such bytes with [`crate::rng::XorShift`].
//!
//! This file uses nothing of the crate, so the public-API harness (`tests/harness/`) and the
//! `executor` fuzz target include it as well.

/// Reads numbers off the front of a byte string; once the bytes run out every read is zero, so
/// any input (including the empty one) is a valid program.
#[derive(Clone, Debug)]
pub struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data }
    }

    /// True when every byte was read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Bytes not yet read.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// The next byte (0 once the input is exhausted).
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next little-endian `u16`.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// The next little-endian `u32`.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    /// The next little-endian `u64`.
    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        if n <= 256 {
            self.byte() as usize % n
        } else {
            self.u32() as usize % n
        }
    }

    /// Up to `max` bytes (the length is read first).
    pub fn slice(&mut self, max: usize) -> &'a [u8] {
        let want = self.below(max + 1).min(self.data.len());
        let (head, rest) = self.data.split_at(want);
        self.data = rest;
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_reads_little_endian_and_then_zeros() {
        let mut b = Bytes::new(&[1, 2, 3, 4, 5]);
        assert_eq!(b.u16(), 0x0201);
        assert_eq!(b.u32(), 0x0005_0403);
        assert!(b.is_empty());
        assert_eq!(b.u64(), 0);
    }
}
