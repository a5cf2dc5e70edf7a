//! Content-addressed keys and tokenization.
//!
//! A [`Key`] names one node of a task graph: a human-readable prefix (usually the
//! op name), a 128-bit content [`Token`], and an optional block index for chunks
//! of a collection (`("sum-3fa1…", 2, 0)`). The same op applied to the same
//! inputs yields the same token in every process and every build, so graphs
//! built independently merge and deduplicate by construction.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

/// A 128-bit content hash (XXH3-128), stable across processes, platforms and builds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Token(pub u128);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Token {
    /// The first 16 hex digits: enough to tell keys apart by eye.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", (self.0 >> 64) as u64)
    }
}

/// Streaming builder of a [`Token`]. Feed it the parts that define a computation.
pub struct TokenHasher(Xxh3);

impl Default for TokenHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenHasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        TokenHasher(Xxh3::new())
    }

    /// Adds raw bytes, length-prefixed so that `("ab","c")` and `("a","bc")` differ.
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update(&(bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    /// Adds a string (length-prefixed).
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    /// Adds a 64-bit integer.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.update(&v.to_le_bytes());
        self
    }

    /// Adds another token.
    pub fn token(&mut self, t: Token) -> &mut Self {
        self.0.update(&t.0.to_le_bytes());
        self
    }

    /// Adds a key (its token and block index; the prefix is derived from the same content).
    pub fn key(&mut self, k: &Key) -> &mut Self {
        self.token(k.token);
        self.u64(k.index.len() as u64);
        for &i in k.index.iter() {
            self.u64(i as u64);
        }
        self
    }

    /// Adds the serde encoding of a value (postcard, streamed without allocating).
    pub fn serde<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<&mut Self, postcard::Error> {
        // Mark the start so that adjacent values cannot run into each other.
        self.0.update(b"\x01serde");
        let flavor = HashFlavor(&mut self.0);
        postcard::serialize_with_flavor(value, flavor)?;
        Ok(self)
    }

    /// The token of everything fed so far.
    pub fn finish(&self) -> Token {
        Token(self.0.digest128())
    }
}

/// A postcard output "flavor" that feeds bytes into the hasher instead of a buffer.
struct HashFlavor<'a>(&'a mut Xxh3);

impl postcard::ser_flavors::Flavor for HashFlavor<'_> {
    type Output = ();

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.update(&[data]);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.update(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// The content token of any serializable value, tagged with its type name so that
/// `1u32` and `1u64` (same postcard bytes) get different tokens.
pub fn tokenize<T: Serialize + ?Sized>(value: &T) -> Result<Token, postcard::Error> {
    let mut h = TokenHasher::new();
    h.str(std::any::type_name::<T>());
    h.serde(value)?;
    Ok(h.finish())
}

/// A token that no other computation shares (for impure tasks and closures):
/// a per-process random seed combined with a counter.
pub fn unique_token() -> Token {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static SEED: OnceLock<u128> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        // RandomState is seeded from the OS; mix in time and pid for good measure.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        std::process::id().hash(&mut h);
        std::time::SystemTime::now().hash(&mut h);
        let a = h.finish();
        let b = std::collections::hash_map::RandomState::new().hash_one(a);
        ((a as u128) << 64) | b as u128
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut h = TokenHasher::new();
    h.token(Token(seed)).u64(n);
    h.finish()
}

use std::hash::BuildHasher;

/// The name of one node of a task graph.
///
/// Equality and hashing use the token and the block index only (the prefix is a
/// label derived from the same content), which keeps hash maps of keys fast.
#[derive(Clone, Serialize, Deserialize)]
pub struct Key {
    prefix: Arc<str>,
    token: Token,
    index: Vec<u32>,
}

impl Key {
    /// A key with the given label prefix and content token.
    pub fn new(prefix: impl Into<Arc<str>>, token: Token) -> Self {
        Key { prefix: prefix.into(), token, index: Vec::new() }
    }

    /// A key whose token is the hash of `name` itself: for hand-written graphs
    /// (`Key::named("x")`). Two `Key::named` with the same name are the same key.
    pub fn named(name: &str) -> Self {
        let mut h = TokenHasher::new();
        h.str("rask::Key::named").str(name);
        Key { prefix: Arc::from(name), token: h.finish(), index: Vec::new() }
    }

    /// The same key with a block index (one chunk of a collection).
    pub fn with_index(mut self, index: impl Into<Vec<u32>>) -> Self {
        self.index = index.into();
        self
    }

    /// The label part (usually the op name).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The content token.
    pub fn token(&self) -> Token {
        self.token
    }

    /// The block index (empty when the key is not a chunk).
    pub fn index(&self) -> &[u32] {
        &self.index
    }

    /// The `prefix-token` name without the block index.
    pub fn name(&self) -> String {
        format!("{}-{}", self.prefix, self.token)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.token == other.token && self.index == other.index
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Truncating the token is fine for hashing: it is already uniformly distributed.
        state.write_u64(self.token.0 as u64);
        if !self.index.is_empty() {
            self.index.hash(state);
        }
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    /// Ordered by label first (readable listings), then token, then block index.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.prefix
            .cmp(&other.prefix)
            .then(self.token.cmp(&other.token))
            .then_with(|| self.index.cmp(&other.index))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.index.is_empty() {
            write!(f, "{}-{}", self.prefix, self.token)
        } else {
            write!(f, "(\"{}-{}\"", self.prefix, self.token)?;
            for i in &self.index {
                write!(f, ", {i}")?;
            }
            write!(f, ")")
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_depend_on_content_and_type() {
        assert_eq!(tokenize(&(1u64, "a")).unwrap(), tokenize(&(1u64, "a")).unwrap());
        assert_ne!(tokenize(&(1u64, "a")).unwrap(), tokenize(&(2u64, "a")).unwrap());
        assert_ne!(tokenize(&1u32).unwrap(), tokenize(&1u64).unwrap());
    }

    #[test]
    fn tokens_are_stable_across_builds() {
        // A fixed value: if this changes, keys differ between Rask versions, and
        // processes of two versions would not share keys.
        assert_eq!(tokenize(&42i64).unwrap().0, 0x8978190e9d60564b46ebc2d69539ff42);
        let mut h = TokenHasher::new();
        h.str("abc");
        assert_eq!(h.finish(), {
            let mut h = TokenHasher::new();
            h.str("abc");
            h.finish()
        });
        let mut a = TokenHasher::new();
        a.str("ab").str("c");
        let mut b = TokenHasher::new();
        b.str("a").str("bc");
        assert_ne!(a.finish(), b.finish());
    }

    #[test]
    fn unique_tokens_differ() {
        assert_ne!(unique_token(), unique_token());
    }

    #[test]
    fn key_display_and_equality() {
        let k = Key::named("x");
        assert_eq!(k, Key::named("x"));
        assert_ne!(k, Key::named("y"));
        let b = k.clone().with_index(vec![2, 0]);
        assert_ne!(k, b);
        assert!(b.to_string().starts_with("(\"x-"));
        assert!(b.to_string().ends_with(", 2, 0)"));
    }
}
