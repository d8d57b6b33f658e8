//! A hasher for the short keys the rules look up, a word at a time.
//!
//! Why: std's default `SipHash` through WASM cost ~700 instructions per known-object lookup
//! (`(kind, key)`, ~4 per VM: 2.9k of ~74k per VM), each of its rounds a few dozen instructions
//! with interruption checks. This one mixes each 8-byte word with a multiply (as rustc's
//! `FxHasher` does). It is not keyed: for sets built from NetBox's own objects (a set whose keys
//! were chosen to collide would be slower to search, never wrong: equality still decides).

use std::hash::{BuildHasherDefault, Hasher};

/// `BuildHasher` for [`WordHasher`].
pub(crate) type BuildWordHasher = BuildHasherDefault<WordHasher>;

/// The multiplier of rustc's `FxHasher` (an odd constant with well-spread bits).
const K: u64 = 0xf135_7aea_2e62_a9c5;

/// Mixes each 8-byte word into the state with a rotate, xor and multiply.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WordHasher {
    hash: u64,
}

impl WordHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for WordHasher {
    /// Whole words, then the tail as one word read overlapping the last (or, under 8 bytes,
    /// from overlapping halves): no byte loop and no `copy_from_slice` (through WASM a
    /// `memory.copy`, a host call), and every byte counts. The length goes in too.
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let half = |at: usize| {
            u64::from(u32::from_le_bytes(
                bytes[at..at + 4].try_into().expect("4 bytes"),
            ))
        };
        if n >= 8 {
            let mut at = 0;
            while at + 8 <= n {
                self.add(word(at));
                at += 8;
            }
            if at < n {
                self.add(word(n - 8));
            }
        } else if n >= 4 {
            self.add(half(0) | half(n - 4) << 32);
        } else if n > 0 {
            let byte = |at: usize| u64::from(bytes[at]);
            self.add(byte(0) | byte(n / 2) << 8 | byte(n - 1) << 16);
        }
        self.add(n as u64);
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    /// The product's high bits are its best mixed: rotated down for the table's bucket index
    /// (its low bits), as rustc-hash does.
    #[inline]
    fn finish(&self) -> u64 {
        self.hash.rotate_left(26)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::{BuildHasher, Hash};

    use super::*;

    fn hash<T: Hash>(v: T) -> u64 {
        BuildWordHasher::default().hash_one(v)
    }

    #[test]
    fn equal_values_hash_equal_and_near_ones_apart() {
        assert_eq!(hash(("site", "pve-a")), hash(("site", "pve-a")));
        // Zero padding, word boundaries and the split between the two texts all count.
        let near = [
            ("", ""),
            ("a", ""),
            ("", "a"),
            ("a\0", ""),
            ("ab", "c"),
            ("a", "bc"),
            ("abcdefgh", ""),
            ("abcdefg", "h"),
            ("abcdefgh", "i"),
            ("abcdefghi", ""),
        ];
        let hashes: HashSet<u64> = near.iter().map(|&p| hash(p)).collect();
        assert_eq!(hashes.len(), near.len(), "{near:?}");
    }

    #[test]
    fn a_set_finds_exactly_its_members() {
        // Keys differing in one byte at every position up to past two words.
        let keys: Vec<String> = (0..20)
            .flat_map(|len| (0..len).map(move |at| (len, at)))
            .map(|(len, at)| {
                let mut k = vec![b'k'; len];
                k[at] = b'x';
                String::from_utf8(k).unwrap()
            })
            .collect();
        let mut set: HashSet<(&str, &str), BuildWordHasher> = HashSet::default();
        for (i, k) in keys.iter().enumerate() {
            if i % 2 == 0 {
                set.insert(("tag", k.as_str()));
            }
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(set.contains(&("tag", k.as_str())), i % 2 == 0, "{k:?}");
            assert!(!set.contains(&("site", k.as_str())), "{k:?}");
        }
    }
}
