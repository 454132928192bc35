//! Byte sources for the harnesses: a reader over fuzzer input, and a seeded generator of such
//! input for the plain `cargo test` runs.
//!
//! This file uses nothing of the crate, so `tests/fuzz_executor.rs` includes it as well.

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

/// xorshift64*: a tiny deterministic generator for the seeded tests.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator; any seed works (zero is mapped to a fixed non-zero state).
    pub fn new(seed: u64) -> Self {
        // SplitMix64 of the seed, so that nearby seeds give unrelated streams.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        XorShift((z ^ (z >> 31)) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A byte string of up to `max_len` bytes, biased towards the values parsers care about
    /// (0, 1, 0xff, small numbers) so that short inputs still reach deep states.
    pub fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = self.below(max_len as u64 + 1) as usize;
        (0..len)
            .map(|_| match self.below(8) {
                0 => 0,
                1 => 0xff,
                2 => 1,
                3 => self.below(16) as u8,
                _ => self.next_u64() as u8,
            })
            .collect()
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

    #[test]
    fn xorshift_is_deterministic() {
        let a: Vec<u64> = (0..4).scan(XorShift::new(7), |r, _| Some(r.next_u64())).collect();
        let b: Vec<u64> = (0..4).scan(XorShift::new(7), |r, _| Some(r.next_u64())).collect();
        assert_eq!(a, b);
        assert_ne!(XorShift::new(0).next_u64(), 0);
    }
}
