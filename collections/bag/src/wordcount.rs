//! Word frequencies of a block of text, counted on its bytes: the words are
//! those of `str::split_whitespace` (Unicode `White_Space`; in ASCII, bytes
//! 9–13 and the space).
//!
//! ASCII text takes a fast path. A word of at most 15 bytes with no NUL is
//! packed, zero-padded, into a `u128` key, so a table probe is one integer
//! compare, not a hash of a slice and a `memcmp`. Its end is found sixteen
//! bytes at a time: the first byte below `0x21` (a SWAR compare), checked to
//! be whitespace. Longer words, and words with other control bytes, go
//! through a byte scan; those longer than 15 bytes or holding a NUL are
//! counted in a slice map.

use rustc_hash::FxHashMap;

/// `u128` with every byte 1.
const ONES: u128 = u128::from_le_bytes([1; 16]);
/// The high bit of every byte.
const HIGHS: u128 = ONES << 7;
/// The longest word a packed key holds.
const PACKED_MAX: usize = 15;

/// Whitespace in ASCII, as `char::is_whitespace` (which `split_whitespace` uses).
#[inline(always)]
fn is_space(b: u8) -> bool {
    b == b' ' || (9..=13).contains(&b)
}

/// The frequencies of the words of `text`, sorted by word.
///
/// `text` must be valid UTF-8 (the caller checks it, and names the file and
/// line where it is not).
pub fn word_frequencies(text: &[u8]) -> Vec<(String, u64)> {
    if !text.is_ascii() {
        return unicode_frequencies(text);
    }
    let mut packed = PackedCounts::new();
    let mut long: FxHashMap<&[u8], u64> = FxHashMap::default();
    let n = text.len();
    let mut i = skip_spaces(text, 0);
    while i < n {
        if i + 16 <= n {
            let x = u128::from_le_bytes(text[i..i + 16].try_into().expect("16 bytes"));
            // Bytes below 0x21 (exact for the lowest one, as every byte is ASCII).
            let low = x.wrapping_sub(ONES * 0x21) & !x & HIGHS;
            if low != 0 {
                let len = (low.trailing_zeros() / 8) as usize;
                if len > 0 && is_space(text[i + len]) {
                    packed.add(x & ((1u128 << (8 * len)) - 1), 1);
                    i = skip_spaces(text, i + len + 1);
                    continue;
                }
            }
        }
        let start = i;
        while i < n && !is_space(text[i]) {
            i += 1;
        }
        let word = &text[start..i];
        if word.len() <= PACKED_MAX && !word.contains(&0) {
            packed.add(pack(word), 1);
        } else {
            *long.entry(word).or_insert(0) += 1;
        }
        i = skip_spaces(text, i);
    }
    let mut out: Vec<(String, u64)> = long.into_iter().map(|(w, n)| (ascii(w), n)).collect();
    out.extend(packed.into_iter().map(|(k, n)| (unpack(k), n)));
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Non-ASCII text: `split_whitespace` on borrowed slices.
fn unicode_frequencies(text: &[u8]) -> Vec<(String, u64)> {
    let text = String::from_utf8_lossy(text);
    let mut counts: FxHashMap<&str, u64> = FxHashMap::default();
    for w in text.split_whitespace() {
        *counts.entry(w).or_insert(0) += 1;
    }
    let mut out: Vec<(String, u64)> = counts.into_iter().map(|(w, n)| (w.to_string(), n)).collect();
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    out
}

#[inline(always)]
fn skip_spaces(text: &[u8], mut i: usize) -> usize {
    while i < text.len() && is_space(text[i]) {
        i += 1;
    }
    i
}

/// A word of at most 15 bytes, none of them NUL, zero-padded.
fn pack(word: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    b[..word.len()].copy_from_slice(word);
    u128::from_le_bytes(b)
}

fn unpack(key: u128) -> String {
    let b = key.to_le_bytes();
    let len = b.iter().position(|&x| x == 0).unwrap_or(16);
    ascii(&b[..len])
}

/// ASCII bytes as a string (every byte below 0x80 is one char).
fn ascii(b: &[u8]) -> String {
    b.iter().map(|&c| c as char).collect()
}

/// Counts by packed key: linear probing, keys and counts side by side, key 0
/// marks an empty slot (no packed word is empty).
struct PackedCounts {
    keys: Vec<u128>,
    counts: Vec<u64>,
    len: usize,
    /// 64 minus log2 of the capacity: the slot is the hash's top bits.
    shift: u32,
}

impl PackedCounts {
    fn new() -> Self {
        const BITS: u32 = 12;
        PackedCounts {
            keys: vec![0; 1 << BITS],
            counts: vec![0; 1 << BITS],
            len: 0,
            shift: 64 - BITS,
        }
    }

    #[inline(always)]
    fn slot(&self, key: u128) -> usize {
        let folded = (key as u64) ^ ((key >> 64) as u64).rotate_left(29);
        (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    #[inline(always)]
    fn add(&mut self, key: u128, n: u64) {
        let mask = self.keys.len() - 1;
        let mut p = self.slot(key);
        loop {
            let k = self.keys[p];
            if k == key {
                self.counts[p] += n;
                return;
            }
            if k == 0 {
                self.keys[p] = key;
                self.counts[p] = n;
                self.len += 1;
                if self.len * 2 > self.keys.len() {
                    self.grow();
                }
                return;
            }
            p = (p + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let keys = std::mem::take(&mut self.keys);
        let counts = std::mem::take(&mut self.counts);
        self.keys = vec![0; keys.len() * 2];
        self.counts = vec![0; keys.len() * 2];
        self.shift -= 1;
        self.len = 0;
        for (k, n) in keys.into_iter().zip(counts) {
            if k != 0 {
                self.add(k, n);
            }
        }
    }

    fn into_iter(self) -> impl Iterator<Item = (u128, u64)> {
        self.keys.into_iter().zip(self.counts).filter(|&(k, _)| k != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(text: &str) -> Vec<(String, u64)> {
        let mut m: std::collections::BTreeMap<String, u64> = Default::default();
        for w in text.split_whitespace() {
            *m.entry(w.to_string()).or_insert(0) += 1;
        }
        m.into_iter().collect()
    }

    #[test]
    fn edge_cases_match_split_whitespace() {
        for text in [
            "",
            "   ",
            "a",
            "a b  a\n",
            "exactly15bytes! exactly16bytes!! x\r\nexactly15bytes!",
            "tab\tvt\x0bff\x0ccr\rnl\nend",
            "nul\0in word\0 \0",
            "ctrl\x01word\x1fhere word",
            "a very long word: abcdefghijklmnopqrstuvwxyz0123456789 abcdefghijklmnopqrstuvwxyz0123456789",
            "ünïcode wörds\u{a0}nbsp\u{2003}em\u{3000}ideo wörds",
            "wordatend",
        ] {
            assert_eq!(word_frequencies(text.as_bytes()), reference(text), "{text:?}");
        }
    }

    #[test]
    fn growth_keeps_every_count() {
        let text: String = (0..20_000).map(|i| format!("w{} w{} ", i % 9_000, i % 7)).collect();
        assert_eq!(word_frequencies(text.as_bytes()), reference(&text));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        #[test]
        fn matches_split_whitespace_on_any_text(
            parts in proptest::collection::vec(
                prop_oneof![
                    "[a-z]{1,20}",
                    "[ \t\n\r\x0b\x0c]{1,3}",
                    "[\x00-\x7f]{0,18}",
                    "\\PC{0,4}",
                    Just("\u{a0}".to_string()),
                ],
                0..40,
            )
        ) {
            let text: String = parts.concat();
            prop_assert_eq!(word_frequencies(text.as_bytes()), reference(&text));
        }
    }
}
