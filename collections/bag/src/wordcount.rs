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
//! counted in a map of string slices, as are the words of non-ASCII text.

use rustc_hash::FxHashMap;

/// `u128` with every byte 1.
const ONES: u128 = u128::from_le_bytes([1; 16]);
/// The high bit of every byte.
const HIGHS: u128 = ONES << 7;
/// The longest word a packed key holds.
const PACKED_MAX: usize = 15;

/// Whitespace in ASCII, as `char::is_whitespace` (which `split_whitespace` uses).
#[inline(always)]
pub(crate) fn is_space(b: u8) -> bool {
    b == b' ' || (9..=13).contains(&b)
}

/// The frequencies of the words of `text`, sorted by word.
pub fn word_frequencies(text: &str) -> Vec<(String, u64)> {
    let mut counts = WordCounts::default();
    counts.add(text);
    counts.into_sorted()
}

/// Word counts over any number of texts (the words of each, as
/// `split_whitespace` gives them; no word spans two texts).
#[derive(Default)]
pub struct WordCounts<'a> {
    packed: PackedCounts,
    /// Words no packed key holds: over 15 bytes, with a NUL, or not ASCII.
    other: FxHashMap<&'a str, u64>,
}

impl<'a> WordCounts<'a> {
    /// Counts the words of `text`.
    pub fn add(&mut self, text: &'a str) {
        if !text.is_ascii() {
            for w in text.split_whitespace() {
                self.word(w);
            }
            return;
        }
        let b = text.as_bytes();
        let n = b.len();
        let mut i = skip_spaces(b, 0);
        while i < n {
            if i + 16 <= n {
                let x = u128::from_le_bytes(b[i..i + 16].try_into().expect("16 bytes"));
                // Bytes below 0x21 (exact for the lowest one, as every byte is ASCII).
                let low = x.wrapping_sub(ONES * 0x21) & !x & HIGHS;
                if low != 0 {
                    let len = (low.trailing_zeros() / 8) as usize;
                    if len > 0 && is_space(b[i + len]) {
                        self.packed.add(x & ((1u128 << (8 * len)) - 1), 1);
                        i = skip_spaces(b, i + len + 1);
                        continue;
                    }
                }
            }
            let start = i;
            while i < n && !is_space(b[i]) {
                i += 1;
            }
            // ASCII: every byte is a character boundary.
            self.word(&text[start..i]);
            i = skip_spaces(b, i);
        }
    }

    #[inline]
    fn word(&mut self, w: &'a str) {
        let b = w.as_bytes();
        if b.len() <= PACKED_MAX && b.is_ascii() && !b.contains(&0) {
            self.packed.add(pack(b), 1);
        } else {
            *self.other.entry(w).or_insert(0) += 1;
        }
    }

    /// Each word with its count, sorted by word.
    pub fn into_sorted(self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> =
            self.other.into_iter().map(|(w, n)| (w.to_string(), n)).collect();
        out.extend(self.packed.into_iter().map(|(k, n)| (unpack(k), n)));
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out
    }
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

/// The ASCII word of a packed key (every byte below 0x80 is one char).
fn unpack(key: u128) -> String {
    key.to_le_bytes().iter().take_while(|&&c| c != 0).map(|&c| c as char).collect()
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

impl Default for PackedCounts {
    fn default() -> Self {
        const BITS: u32 = 12;
        PackedCounts {
            keys: vec![0; 1 << BITS],
            counts: vec![0; 1 << BITS],
            len: 0,
            shift: 64 - BITS,
        }
    }
}

impl PackedCounts {
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
            assert_eq!(word_frequencies(text), reference(text), "{text:?}");
        }
    }

    #[test]
    fn counts_over_several_texts_merge_ascii_and_unicode_words() {
        let texts = ["a word", "wörd a", "word\tlong-word-over-fifteen-bytes a"];
        let mut counts = WordCounts::default();
        for t in texts {
            counts.add(t);
        }
        assert_eq!(counts.into_sorted(), reference(&texts.join("\n")));
    }

    #[test]
    fn growth_keeps_every_count() {
        let text: String = (0..20_000).map(|i| format!("w{} w{} ", i % 9_000, i % 7)).collect();
        assert_eq!(word_frequencies(&text), reference(&text));
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
            prop_assert_eq!(word_frequencies(&text), reference(&text));
        }
    }
}
