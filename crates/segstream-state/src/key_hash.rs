//! The hash of a state key in the in-memory maps (the changes held until a checkpoint,
//! the read cache): keys are short byte strings looked up once or more per row, where
//! std's SipHash costs more than the look-up itself. This is the multiply-rotate hash of
//! rustc's `FxHasher`, eight bytes at a time, started from a per-process random seed (so
//! the layout of a map is not the same in every process), with a final mix so the high
//! bits hashbrown uses for its control bytes depend on every byte of the key.

use std::hash::{BuildHasher, Hasher};

const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// Builds [`KeyHasher`]s with this process's seed.
#[derive(Clone, Copy, Debug)]
pub struct KeyHash {
    seed: u64,
}

impl Default for KeyHash {
    fn default() -> Self {
        Self { seed: std::collections::hash_map::RandomState::new().build_hasher().finish() }
    }
}

impl BuildHasher for KeyHash {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(self.seed)
    }
}

pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut hash = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            hash = (hash.rotate_left(5) ^ word).wrapping_mul(K);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            hash = (hash.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        self.0 = hash;
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0.rotate_left(5) ^ n as u64).wrapping_mul(K);
    }

    #[inline]
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys that differ in one byte anywhere, or only in length, hash apart.
    #[test]
    fn keys_differing_anywhere_hash_apart() {
        let hash = KeyHash::default();
        let of = |key: &[u8]| hash.hash_one(key);
        let base = b"\x00\x00\x00\x00\x00\x00\x00\x07user-000123".to_vec();
        let mut seen = std::collections::HashSet::new();
        assert!(seen.insert(of(&base)));
        for i in 0..base.len() {
            let mut other = base.clone();
            other[i] ^= 1;
            assert!(seen.insert(of(&other)), "byte {i}");
        }
        assert!(seen.insert(of(&base[..base.len() - 1])));
        assert!(seen.insert(of(&[base.as_slice(), &[0]].concat())), "a trailing zero byte");
    }
}
