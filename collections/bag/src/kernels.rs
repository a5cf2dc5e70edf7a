//! The partition-level work of the built-in operations: plain generic
//! functions, registered per element type by
//! [`register_bag_type!`](crate::register_bag_type) and called directly by
//! the closure fallbacks.

use std::hash::Hash;

use rustc_hash::FxHashMap;

/// Joins partitions in order.
pub fn concat<T>(ps: Vec<Vec<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(ps.iter().map(Vec::len).sum());
    for p in ps {
        out.extend(p);
    }
    out
}

/// Every item as a JSON value, through its serde form (a struct becomes an
/// object of its fields).
pub fn to_json<T: serde::Serialize>(p: Vec<T>) -> Result<Vec<crate::Json>, String> {
    p.iter()
        .enumerate()
        .map(|(i, x)| {
            serde_json::to_value(x).map(crate::Json).map_err(|e| {
                format!("to_json: item {i} of the partition has no JSON form: {e} (JSON object keys must be strings)")
            })
        })
        .collect()
}

/// The first `n` items.
pub fn take<T>(mut p: Vec<T>, n: u64) -> Vec<T> {
    p.truncate(n as usize);
    p
}

/// Piece `i` of `k` near-equal pieces (by position) of the partitions joined in order.
pub fn piece<T>(ps: Vec<Vec<T>>, i: u64, k: u64) -> Vec<T> {
    let all = concat(ps);
    let (n, k) = (all.len() as u64, k.max(1));
    let (from, to) = ((n * i / k) as usize, (n * (i + 1) / k).min(n) as usize);
    all.into_iter().skip(from).take(to.saturating_sub(from)).collect()
}

/// Each distinct item with its count, sorted by item (deterministic output).
pub fn frequencies<T: Hash + Eq + Ord>(p: Vec<T>) -> Vec<(T, u64)> {
    let mut counts: FxHashMap<T, u64> = FxHashMap::default();
    for x in p {
        *counts.entry(x).or_insert(0) += 1;
    }
    sorted(counts)
}

/// The frequencies of the whitespace-separated words of `lines` (what
/// `frequencies` of their `split_whitespace` gives), counted on borrowed
/// slices: one string is made per distinct word, not per word.
pub fn word_frequencies(lines: Vec<String>) -> Vec<(String, u64)> {
    let mut counts = crate::wordcount::WordCounts::default();
    for l in &lines {
        counts.add(l);
    }
    counts.into_sorted()
}

/// Sums partial frequencies.
pub fn merge_frequencies<T: Hash + Eq + Ord>(ps: Vec<Vec<(T, u64)>>) -> Vec<(T, u64)> {
    let mut counts: FxHashMap<T, u64> = FxHashMap::default();
    for (x, n) in ps.into_iter().flatten() {
        *counts.entry(x).or_insert(0) += n;
    }
    sorted(counts)
}

fn sorted<T: Ord>(counts: FxHashMap<T, u64>) -> Vec<(T, u64)> {
    let mut v: Vec<(T, u64)> = counts.into_iter().collect();
    v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The distinct items of the partitions, sorted.
pub fn distinct<T: Hash + Eq + Ord>(ps: Vec<Vec<T>>) -> Vec<T> {
    let mut seen: rustc_hash::FxHashSet<T> = Default::default();
    seen.extend(ps.into_iter().flatten());
    let mut v: Vec<T> = seen.into_iter().collect();
    v.sort_unstable();
    v
}

/// The `k` items of the highest counts (ties: the smaller item first).
pub fn most_common<T: Ord>(ps: Vec<Vec<(T, u64)>>, k: u64) -> Vec<(T, u64)> {
    let mut v: Vec<(T, u64)> = ps.into_iter().flatten().collect();
    let k = (k as usize).min(v.len());
    let by_count = |a: &(T, u64), b: &(T, u64)| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0));
    if k < v.len() && k > 0 {
        v.select_nth_unstable_by(k - 1, by_count);
    }
    v.truncate(k);
    v.sort_unstable_by(by_count);
    v
}

/// The `k` largest items, largest first.
pub fn topk<T: Ord>(ps: Vec<Vec<T>>, k: u64) -> Vec<T> {
    let mut v: Vec<T> = ps.into_iter().flatten().collect();
    let k = (k as usize).min(v.len());
    if k < v.len() && k > 0 {
        v.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
    }
    v.truncate(k);
    v.sort_unstable_by(|a, b| b.cmp(a));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_agree_with_a_plain_count() {
        let words: Vec<String> = "b a c a b a".split(' ').map(String::from).collect();
        let f = frequencies(words.clone());
        assert_eq!(f, [("a".into(), 3), ("b".into(), 2), ("c".into(), 1)]);
        let merged = merge_frequencies(vec![f.clone(), f]);
        assert_eq!(merged[0], ("a".to_string(), 6));
        assert_eq!(most_common(vec![merged], 2), [("a".into(), 6), ("b".into(), 4)]);
        assert_eq!(distinct(vec![words.clone(), words]), ["a", "b", "c"]);
        assert_eq!(topk(vec![vec![3, 9, 1], vec![7]], 2), [9, 7]);
        assert_eq!(topk(vec![vec![3]], 5), [3]);
        assert_eq!(piece(vec![vec![1, 2], vec![3, 4, 5]], 0, 1), [1, 2, 3, 4, 5]);
        assert_eq!(piece(vec![vec![1, 2], vec![3, 4, 5]], 1, 2), [3, 4, 5]);
        assert!(piece(vec![vec![1]], 1, 2).len() == 1 && piece(vec![vec![1]], 0, 2).is_empty());
        assert!(most_common::<i64>(vec![], 3).is_empty());
        let lines =
            vec!["b a  c".to_string(), "a\tb a".into(), "".into(), "caf\u{e9} a\u{2003}b".into()];
        let split: Vec<String> =
            lines.iter().flat_map(|l| l.split_whitespace()).map(String::from).collect();
        assert_eq!(word_frequencies(lines), frequencies(split));
    }
}
