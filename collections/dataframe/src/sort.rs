//! Sorting one partition by several columns (nulls last, stable).
//!
//! polars' multi-column sort encodes every row; sorting by the first column
//! alone is much faster. So the rows are sorted by the first key with
//! polars, then each run of equal first keys is ordered by the remaining
//! keys in place: for numbers, by order-preserving integer codes of their
//! values. Runs are short when the first key has many distinct values (the
//! usual case); otherwise this costs about what a sort per key costs.
//! Keys of other types fall back to stable single-column sorts from the
//! last key to the first.

use polars::prelude::*;

/// `df` sorted by `by` (`desc[i]` for key `i`; missing entries ascend),
/// nulls last, equal rows in their input order.
pub fn sort_frame(df: DataFrame, by: &[String], desc: &[bool]) -> PolarsResult<DataFrame> {
    let d = |i: usize| desc.get(i).copied().unwrap_or(false);
    if df.height() < 2 || by.is_empty() {
        return Ok(df);
    }
    let numeric = by.iter().skip(1).all(|c| {
        df.column(c)
            .map(|c| c.dtype().is_primitive_numeric() || c.dtype().is_bool())
            .unwrap_or(false)
    });
    if by.len() > 1 && !numeric {
        return lsd(df, by, &d);
    }
    let first = df.column(&by[0])?.as_materialized_series();
    let first_codes =
        if first.dtype().is_primitive_numeric() { Some(ordered(first, d(0))?) } else { None };
    let mut sorted_codes = None;
    let mut idx = if let Some(c) = &first_codes {
        let (order, keys) = radix_order(c);
        sorted_codes = Some(keys);
        IdxCa::from_vec("idx".into(), order)
    } else {
        let options = SortOptions::default()
            .with_order_descending(d(0))
            .with_nulls_last(true)
            .with_maintain_order(true);
        first.arg_sort(options)
    };
    if by.len() > 1 {
        idx = break_ties(&df, first, sorted_codes.as_deref(), by, &d, idx)?;
    }
    df.take(&idx)
}

/// Stable single-column sorts from the last key to the first.
fn lsd(mut df: DataFrame, by: &[String], d: &dyn Fn(usize) -> bool) -> PolarsResult<DataFrame> {
    for (i, c) in by.iter().enumerate().rev() {
        let options = SortMultipleOptions::default()
            .with_order_descending(d(i))
            .with_nulls_last(true)
            .with_maintain_order(true);
        df = df.sort([c.as_str()], options)?;
    }
    Ok(df)
}

/// Reorders each run of equal first keys in `idx` by the remaining keys.
/// `sorted_codes` are the first key's codes in sorted order (nulls last,
/// not among them), when it has them.
fn break_ties(
    df: &DataFrame,
    first: &Series,
    sorted_codes: Option<&[u64]>,
    by: &[String],
    d: &dyn Fn(usize) -> bool,
    idx: IdxCa,
) -> PolarsResult<IdxCa> {
    let mut order: Vec<IdxSize> = idx.rechunk().into_no_null_iter().collect();
    let n = order.len();
    let runs = if let Some(c) = sorted_codes {
        // By codes: NaNs tie with each other, and -0.0 with 0.0, as polars
        // compares. The nulls after the codes are one more run.
        let k = c.len();
        let same = (0..n - 1).map(|i| if i + 1 < k { c[i] == c[i + 1] } else { i >= k });
        runs_where(same, n)
    } else {
        let sorted_first = first.take(&idx)?;
        let same = sorted_first.slice(1, n - 1).equal_missing(&sorted_first.slice(0, n - 1))?;
        runs_where(same.iter().map(|e| e.unwrap_or(false)), n)
    };
    if runs.is_empty() {
        return Ok(idx);
    }
    // Codes of the remaining keys, by input row.
    let codes: Vec<Vec<u128>> = by[1..]
        .iter()
        .enumerate()
        .map(|(i, c)| codes(df.column(c)?.as_materialized_series(), d(i + 1)))
        .collect::<PolarsResult<_>>()?;
    // Rows of a run are in input order, so ties broken by row number keep
    // the sort stable.
    if let [only] = codes.as_slice() {
        // One key left (the usual case): each run's (code, row) pairs are
        // gathered once and sorted in cache, not compared through the rows.
        let mut buf: Vec<(u128, IdxSize)> = Vec::new();
        for (a, b) in runs {
            buf.clear();
            buf.extend(order[a..b].iter().map(|&r| (only[r as usize], r)));
            buf.sort_unstable();
            for (o, &(_, r)) in order[a..b].iter_mut().zip(&buf) {
                *o = r;
            }
        }
        return Ok(IdxCa::from_vec("idx".into(), order));
    }
    let mut buf: Vec<IdxSize> = Vec::new();
    for (a, b) in runs {
        buf.clear();
        buf.extend_from_slice(&order[a..b]);
        buf.sort_by(|&x, &y| {
            for c in &codes {
                let o = c[x as usize].cmp(&c[y as usize]);
                if o.is_ne() {
                    return o;
                }
            }
            std::cmp::Ordering::Equal
        });
        order[a..b].copy_from_slice(&buf);
    }
    Ok(IdxCa::from_vec("idx".into(), order))
}

/// The `[start, end)` ranges of two or more equal neighbours, from whether
/// each row equals the next (`same`, `n - 1` of them).
fn runs_where(same: impl Iterator<Item = bool>, n: usize) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start: Option<usize> = None;
    for (i, eq) in same.enumerate() {
        match (eq, start) {
            (true, None) => start = Some(i),
            (false, Some(a)) => {
                runs.push((a, i + 1));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(a) = start {
        runs.push((a, n));
    }
    runs
}

/// Order-preserving codes of each value (`None` for nulls), in the sort's
/// direction; floats by their total order (NaN above every number, as
/// polars sorts; every NaN equal, and -0.0 equal to 0.0).
fn ordered(s: &Series, descending: bool) -> PolarsResult<Vec<Option<u64>>> {
    let dir = |b: u64| if descending { !b } else { b };
    let float = |x: f64| {
        let x = if x.is_nan() { f64::NAN } else { x + 0.0 };
        let b = x.to_bits();
        dir(if b >> 63 == 1 { !b } else { b | (1 << 63) })
    };
    let signed = |x: i64| dir((x as u64) ^ (1 << 63));
    Ok(if s.dtype().is_float() {
        codes_of(s.cast(&DataType::Float64)?.f64()?, float)
    } else if s.dtype().is_unsigned_integer() || s.dtype().is_bool() {
        codes_of(s.cast(&DataType::UInt64)?.u64()?, dir)
    } else {
        codes_of(s.cast(&DataType::Int64)?.i64()?, signed)
    })
}

/// `code` of each value (`None` for nulls); without nulls, the values are
/// read without their validity.
fn codes_of<T: PolarsNumericType>(
    ca: &ChunkedArray<T>,
    code: impl Fn(T::Native) -> u64,
) -> Vec<Option<u64>> {
    match ca.null_count() {
        0 => ca.into_no_null_iter().map(|x| Some(code(x))).collect(),
        _ => ca.iter().map(|v| v.map(&code)).collect(),
    }
}

/// As [`ordered`], with nulls after every value (in either direction).
fn codes(s: &Series, descending: bool) -> PolarsResult<Vec<u128>> {
    Ok(ordered(s, descending)?.into_iter().map(|v| v.map_or(1u128 << 64, u128::from)).collect())
}

/// The rows in the order of their codes, nulls last, ties in input order,
/// and the non-null codes in that order: a least-significant-digit radix
/// sort (stable), skipping the bytes that every code shares.
fn radix_order(codes: &[Option<u64>]) -> (Vec<IdxSize>, Vec<u64>) {
    let mut keys: Vec<u64> = Vec::with_capacity(codes.len());
    let mut idx: Vec<IdxSize> = Vec::with_capacity(codes.len());
    let mut nulls: Vec<IdxSize> = Vec::new();
    for (r, c) in codes.iter().enumerate() {
        match c {
            Some(c) => {
                keys.push(*c);
                idx.push(r as IdxSize);
            }
            None => nulls.push(r as IdxSize),
        }
    }
    let n = keys.len();
    // Sorted as offsets from the smallest code, in 11-bit digits: the
    // digits above the spread of the codes are skipped.
    let (lo, hi) = keys.iter().fold((u64::MAX, 0), |(lo, hi), &k| (lo.min(k), hi.max(k)));
    if n < 2 || lo == hi {
        idx.extend(nulls);
        return (idx, keys);
    }
    const BITS: u32 = 11;
    const RADIX: usize = 1 << BITS;
    let spread = 64 - (hi - lo).leading_zeros();
    let passes = spread.div_ceil(BITS) as usize;
    let digit = |k: u64, p: usize| (((k - lo) >> (BITS as usize * p)) as usize) & (RADIX - 1);
    let mut hist = vec![[0usize; RADIX]; passes];
    for &k in &keys {
        for (p, h) in hist.iter_mut().enumerate() {
            h[digit(k, p)] += 1;
        }
    }
    let (mut keys2, mut idx2) = (vec![0u64; n], vec![0 as IdxSize; n]);
    for (p, h) in hist.iter().enumerate() {
        if h.contains(&n) {
            continue;
        }
        let mut at = [0usize; RADIX];
        let mut sum = 0;
        for (a, &c) in at.iter_mut().zip(h.iter()) {
            *a = sum;
            sum += c;
        }
        for (&k, &i) in keys.iter().zip(&idx) {
            let d = digit(k, p);
            let at = &mut at[d];
            keys2[*at] = k;
            idx2[*at] = i;
            *at += 1;
        }
        std::mem::swap(&mut keys, &mut keys2);
        std::mem::swap(&mut idx, &mut idx2);
    }
    idx.extend(nulls);
    (idx, keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn polars_sort(df: &DataFrame, by: &[&str], desc: &[bool]) -> DataFrame {
        df.sort(
            by.to_vec(),
            SortMultipleOptions::default()
                .with_order_descending_multi(desc.to_vec())
                .with_nulls_last(true)
                .with_maintain_order(true),
        )
        .unwrap()
    }

    #[test]
    fn equals_polars_multi_key_sort() {
        let df = df! {
            "a" => [Some(2.0f64), Some(f64::NAN), None, Some(2.0), Some(1.0), Some(f64::NAN), Some(2.0), None, Some(-0.0), Some(0.0)],
            "b" => [Some(5i64), None, Some(1), Some(-3), Some(7), Some(2), Some(5), Some(1), Some(4), Some(4)],
            "c" => [Some(0.5f32), Some(1.5), Some(f32::NAN), None, Some(-1.0), Some(2.0), Some(0.5), Some(3.0), Some(1.0), Some(1.0)],
            "s" => ["x", "y", "z", "x", "y", "z", "x", "y", "z", "w"],
            "row" => [0u32, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        }
        .unwrap();
        for desc in
            [[false, false, false], [true, false, true], [false, true, false], [true, true, true]]
        {
            for by in [["a", "b", "c"], ["b", "c", "a"], ["a", "s", "b"], ["c", "a", "b"]] {
                let names: Vec<String> = by.iter().map(|s| s.to_string()).collect();
                let got = sort_frame(df.clone(), &names, &desc).unwrap();
                let want = polars_sort(&df, &by, &desc);
                assert!(
                    got.equals_missing(&want),
                    "by {by:?} desc {desc:?}\ngot {got}\nwant {want}"
                );
            }
        }
    }

    #[test]
    fn equals_polars_on_many_ties_and_nulls() {
        // A seeded LCG: few distinct first keys (long runs), nulls in both keys.
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move |m: u64| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) % m
        };
        let n = 5_000;
        let a: Vec<Option<f64>> = (0..n)
            .map(|_| if next(10) == 0 { None } else { Some(next(40) as f64 / 4.0) })
            .collect();
        let b: Vec<Option<i64>> = (0..n)
            .map(|_| if next(20) == 0 { None } else { Some(next(300) as i64 - 150) })
            .collect();
        let all_null: Vec<Option<f64>> = vec![None; n];
        // Codes spread over all 64 bits: every radix digit varies.
        let wide: Vec<Option<f64>> = (0..n)
            .map(|_| Some((next(1 << 31) as f64 - 1e9) * 10f64.powi(next(600) as i32 - 300)))
            .collect();
        let row: Vec<u32> = (0..n as u32).collect();
        let df = df! { "a" => a, "b" => b, "z" => all_null, "w" => wide, "row" => row }.unwrap();
        for desc in [[false, false], [true, false], [false, true], [true, true]] {
            for by in [["a", "b"], ["b", "a"], ["z", "b"], ["b", "z"], ["w", "a"], ["row", "a"]] {
                let names: Vec<String> = by.iter().map(|s| s.to_string()).collect();
                let got = sort_frame(df.clone(), &names, &desc).unwrap();
                let want = polars_sort(&df, &by, &desc);
                assert!(got.equals_missing(&want), "by {by:?} desc {desc:?}");
            }
        }
    }
}
