//! The per-partition halves of a shuffle: split one partition into pieces
//! (by key hash, or by ranges of a sort column); the pieces of one index,
//! from every partition, then make one output partition.

use polars::prelude::*;

use crate::frame::Frame;

const PART: &str = "__rask_part";

/// Fixed seeds: every process must send equal keys to the same piece.
const SEEDS: [u64; 4] = [0x5241_534b, 0x9e37_79b9_7f4a_7c15, 0xc2b2_ae3d_27d4_eb4f, 0x1656_67b1];

/// Splits `df` into `n` pieces by the hash of `keys`.
pub fn hash_split(df: DataFrame, keys: &[Expr], n: usize) -> PolarsResult<Vec<Frame>> {
    if n <= 1 {
        return Ok(vec![Frame(df)]);
    }
    // One u64 per row: the key columns' hashes, mixed.
    let mut h: Option<Expr> = None;
    for (i, k) in keys.iter().enumerate() {
        let hi = k.clone().hash(SEEDS[0] + i as u64, SEEDS[1], SEEDS[2], SEEDS[3]);
        h = Some(match h {
            None => hi,
            Some(prev) => (prev.xor(hi)).hash(SEEDS[0], SEEDS[1], SEEDS[2], SEEDS[3]),
        });
    }
    let h = h.unwrap_or_else(|| lit(0u64));
    let part = (h % lit(n as u64)).cast(DataType::UInt32).alias(PART);
    let part = df.clone().lazy().select([part]).collect()?;
    let part = part.column(PART)?.as_materialized_series().rechunk();
    let part: Vec<u32> = part.u32()?.into_no_null_iter().collect();
    split_by_index(&df, &part, n)
}

/// Splits `df` into `n` pieces by each row's piece index (`part[r] < n`),
/// keeping the rows' order within a piece: the rows ordered by piece in
/// one gather (a counting sort of the indices), then a zero-copy slice per
/// piece.
fn split_by_index(df: &DataFrame, part: &[u32], n: usize) -> PolarsResult<Vec<Frame>> {
    let mut start = vec![0usize; n + 1];
    for &p in part {
        start[(p as usize).min(n - 1) + 1] += 1;
    }
    for i in 0..n {
        start[i + 1] += start[i];
    }
    let mut next = start.clone();
    let mut order: Vec<IdxSize> = vec![0; part.len()];
    for (r, &p) in part.iter().enumerate() {
        let p = (p as usize).min(n - 1);
        order[next[p]] = r as IdxSize;
        next[p] += 1;
    }
    let sorted = df.take(&IdxCa::from_vec("idx".into(), order))?;
    Ok((0..n).map(|i| Frame(sorted.slice(start[i] as i64, start[i + 1] - start[i]))).collect())
}

/// Splits `with` (= `df` plus a `PART` column of piece indices) into `n`
/// pieces with `df`'s schema.
fn split_by_part(df: &DataFrame, with: DataFrame, n: usize) -> PolarsResult<Vec<Frame>> {
    let part = with.column(PART)?.as_materialized_series().rechunk();
    let part: Vec<u32> = part.u32()?.into_no_null_iter().collect();
    split_by_index(df, &part, n)
}

/// Splits `df` into `boundaries.height() + 1` pieces by `by`: piece `i`
/// holds the rows whose value is above `i` boundaries (below, when
/// descending). Equal values land in one piece; nulls in the last.
pub fn range_split(
    df: DataFrame,
    by: &str,
    boundaries: &DataFrame,
    descending: bool,
    pieces: usize,
) -> PolarsResult<Vec<Frame>> {
    let mut out = range_split_by(df, by, boundaries, descending)?;
    // Fewer boundaries than asked (little data): the last pieces are empty.
    let empty = out[0].0.clear();
    while out.len() < pieces {
        out.push(Frame(empty.clone()));
    }
    Ok(out)
}

/// `n - 1` boundaries from a sample of column `by`: its values at the
/// `i / n` quantiles, in the sort's direction (fewer when the sample is empty).
pub fn sort_boundaries(
    sample: DataFrame,
    by: &str,
    n: usize,
    descending: bool,
) -> PolarsResult<DataFrame> {
    let sorted = sample.sort([by], SortMultipleOptions::default())?;
    let m = sorted.height();
    let idx: Vec<IdxSize> =
        if m == 0 { Vec::new() } else { (1..n).map(|i| ((i * m) / n) as IdxSize).collect() };
    let bounds = sorted.take(&IdxCa::from_vec("i".into(), idx))?;
    Ok(if descending { bounds.reverse() } else { bounds })
}

fn range_split_by(
    df: DataFrame,
    by: &str,
    boundaries: &DataFrame,
    descending: bool,
) -> PolarsResult<Vec<Frame>> {
    let b = boundaries.column(by)?.as_materialized_series().clone();
    let n = b.len() + 1;
    if n == 1 {
        return Ok(vec![Frame(df)]);
    }
    let s = df.column(by)?.as_materialized_series().clone();
    // Numbers: a binary search per row, then one gather per piece.
    let idx: Option<Vec<u32>> = if s.dtype().is_integer() {
        let (v, bs) = (s.cast(&DataType::Int64)?, b.cast(&DataType::Int64)?);
        let bs: Vec<i64> = bs.i64()?.iter().flatten().collect();
        Some(piece_of(v.i64()?.iter(), &bs, descending, n, |a, b| a.cmp(b)))
    } else if s.dtype().is_float() {
        let (v, bs) = (s.cast(&DataType::Float64)?, b.cast(&DataType::Float64)?);
        let bs: Vec<f64> = bs.f64()?.iter().flatten().map(canonical).collect();
        // NaN sorts last, as in polars (total order). Values polars counts
        // as equal (-0.0 and 0.0; every NaN) must land in one piece.
        let values = v.f64()?.iter().map(|v| v.map(canonical));
        Some(piece_of(values, &bs, descending, n, |a, b| a.total_cmp(b)))
    } else {
        None
    };
    if let Some(idx) = idx {
        return split_by_index(&df, &idx, n);
    }
    // Other types (strings, dates): polars' comparisons.
    let mut idx: Expr = lit(0u32);
    for i in 0..b.len() {
        let v = b.get(i)?.into_static();
        let bound = lit(Scalar::new(b.dtype().clone(), v));
        let past = if descending { col(by).lt(bound) } else { col(by).gt(bound) };
        idx = idx + past.cast(DataType::UInt32);
    }
    let idx = idx.fill_null(lit((n - 1) as u32)).alias(PART);
    let with = df.clone().lazy().with_column(idx).collect()?;
    split_by_part(&df, with, n)
}

/// One representative of the floats polars' group-bys and joins treat as
/// equal: 0.0 for -0.0, one NaN for all.
fn canonical(x: f64) -> f64 {
    if x.is_nan() {
        f64::NAN
    } else {
        x + 0.0
    }
}

/// Each value's piece: how many boundaries it is past (nulls: the last piece).
fn piece_of<T: Copy>(
    values: impl Iterator<Item = Option<T>>,
    bounds: &[T],
    descending: bool,
    n: usize,
    cmp: impl Fn(&T, &T) -> std::cmp::Ordering,
) -> Vec<u32> {
    use std::cmp::Ordering::{Greater, Less};
    let past = if descending { Greater } else { Less };
    // Few boundaries: count them without branches (a binary search
    // mispredicts about every other step on random data).
    let linear = bounds.len() <= 32;
    values
        .map(|v| match v {
            None => (n - 1) as u32,
            Some(v) if linear => bounds.iter().map(|b| (cmp(b, &v) == past) as u32).sum(),
            Some(v) => bounds.partition_point(|b| cmp(b, &v) == past) as u32,
        })
        .collect()
}

/// `k` evenly spaced values of `column`, sorted, nulls dropped.
pub fn sample_column(df: DataFrame, column: &str, k: usize) -> PolarsResult<Frame> {
    let s = df.lazy().select([col(column).drop_nulls().sort(SortOptions::default())]).collect()?;
    let n = s.height();
    if n == 0 || k == 0 {
        return Ok(Frame(s.clear()));
    }
    let take: Vec<IdxSize> = (0..k).map(|i| ((i * n) / k) as IdxSize).collect();
    let idx = IdxCa::from_vec("idx".into(), take);
    Ok(Frame(s.take(&idx)?))
}

/// Up to `k` evenly spaced values of `column` (sorted, nulls dropped) as
/// `value` (f64), each with the `weight` of the rows it stands for.
pub fn sketch_column(df: DataFrame, column: &str, k: usize) -> PolarsResult<Frame> {
    let n = df.column(column)?.len() - df.column(column)?.null_count();
    let Frame(s) = sample_column(df, column, k.min(n))?;
    let taken = s.height();
    let values = s.column(column)?.cast(&DataType::Float64)?;
    let w = if taken == 0 { 0.0 } else { n as f64 / taken as f64 };
    let out = DataFrame::new_infer_height(vec![
        values.with_name("value".into()),
        Column::new("weight".into(), vec![w; taken]),
    ])?;
    Ok(Frame(out))
}

/// `k` rows of `column` at even strides (not sorted first: a sample for
/// sort boundaries, O(k)), nulls dropped.
pub fn stride_sample(df: DataFrame, column: &str, k: usize) -> PolarsResult<Frame> {
    let n = df.height();
    let c = df.column(column)?;
    if n == 0 || k == 0 {
        return Ok(Frame(DataFrame::new_infer_height(vec![c.clear()])?));
    }
    let take: Vec<IdxSize> = (0..k.min(n)).map(|i| ((i * n) / k.min(n)) as IdxSize).collect();
    let picked = c.take(&IdxCa::from_vec("idx".into(), take))?.drop_nulls();
    Ok(Frame(DataFrame::new_infer_height(vec![picked])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_polars_counts_equal_land_in_one_piece() {
        let keys = [-0.0, 0.0, f64::NAN, -f64::NAN, 1.0, -1.0];
        let df = DataFrame::new_infer_height(vec![Column::new("k".into(), keys)]).unwrap();
        for bound in [-0.0, 0.0] {
            let b = DataFrame::new_infer_height(vec![Column::new("k".into(), [bound])]).unwrap();
            let pieces = range_split(df.clone(), "k", &b, false, 2).unwrap();
            let piece = |x: f64| {
                pieces
                    .iter()
                    .position(|p| {
                        p.0.column("k")
                            .unwrap()
                            .f64()
                            .unwrap()
                            .iter()
                            .flatten()
                            .any(|v| v.to_bits() == x.to_bits())
                    })
                    .unwrap()
            };
            assert_eq!(piece(-0.0), piece(0.0), "bound {bound:?}");
            assert_eq!(piece(f64::NAN), piece(-f64::NAN));
            assert_eq!((piece(-1.0), piece(1.0)), (0, 1));
        }
    }
}
