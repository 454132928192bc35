//! The crate's one pseudo-random generator: the scheduler spreads victim choices with it, and
//! the seeded tests and fuzz harnesses make their inputs with it.
//!
//! This file uses nothing of the crate, so the public-API harness (`tests/fuzz_executor.rs`)
//! includes it as well.

/// xorshift64* (Vigna, "An experimental exploration of Marsaglia's xorshift generators", 2016):
/// a tiny deterministic generator.
#[derive(Clone, Copy, Debug)]
pub(crate) struct XorShift(u64);

impl XorShift {
    /// A generator; any seed works (zero is mapped to a fixed non-zero state).
    pub(crate) fn new(seed: u64) -> Self {
        // SplitMix64 of the seed, so that nearby seeds give unrelated streams.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        XorShift((z ^ (z >> 31)) | 1)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    #[cfg(any(test, fuzzing))]
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A byte string of up to `max_len` bytes, biased towards the values parsers care about
    /// (0, 1, 0xff, small numbers) so that short inputs still reach deep states.
    #[cfg(test)]
    pub(crate) fn bytes(&mut self, max_len: usize) -> Vec<u8> {
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
    fn xorshift_is_deterministic() {
        let a: Vec<u64> = (0..4).scan(XorShift::new(7), |r, _| Some(r.next_u64())).collect();
        let b: Vec<u64> = (0..4).scan(XorShift::new(7), |r, _| Some(r.next_u64())).collect();
        assert_eq!(a, b);
        assert_ne!(XorShift::new(0).next_u64(), 0);
    }
}
