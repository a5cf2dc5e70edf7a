//! The registered ops every dataframe task runs, so that a cluster's workers
//! (which find ops by name) run dataframe graphs. Each op is a thin wrapper:
//! the work is polars'.

use polars::prelude::*;
use rask_core::array::Block;

use crate::frame::{Frame, Wire};
use crate::groupby::AggPlan;
use crate::io::CsvSpec;
use crate::Step;

rask_core::list_item!(u64);

fn err(e: PolarsError) -> String {
    e.to_string()
}

/// Concatenates partitions in order (their schemas match by construction).
pub(crate) fn concat_frames(frames: Vec<Frame>) -> PolarsResult<polars::prelude::DataFrame> {
    let mut it = frames.into_iter();
    let Some(Frame(mut first)) = it.next() else { return Ok(polars::prelude::DataFrame::empty()) };
    for Frame(df) in it {
        first.vstack_mut_owned(df)?;
    }
    Ok(first)
}

rask_core::op! {
    /// The lines of a CSV file that start in bytes `[start, end)`.
    pub fn read_csv_block(path: String, start: u64, end: u64, spec: CsvSpec) -> Result<Frame, String> {
        crate::io::read_csv_block(&path, start, end, &spec)
    }

    /// Rows `[offset, offset + len)` of a Parquet file, projected and filtered.
    pub fn read_parquet_part(path: String, offset: u64, len: u64, columns: Option<Vec<String>>, filter: Option<Wire<Expr>>) -> Result<Frame, String> {
        crate::io::read_parquet_part(&path, offset, len, columns, filter.map(|w| w.0))
    }

    /// A bag partition of JSON records as a frame of `schema`'s columns (`partition`: its number, for errors).
    pub fn json_records(rows: Vec<rask_bag::Json>, schema: Wire<SchemaRef>, partition: u64) -> Result<Frame, String> {
        crate::from_bag::records_frame(&rows, &schema.0, partition)
    }

    /// Runs per-partition steps (filter, with_columns, select, …) as one polars plan.
    pub fn apply(frame: Frame, steps: Wire<Vec<Step>>) -> Result<Frame, String> {
        crate::apply_steps(frame.0, &steps.0).map(Frame).map_err(err)
    }

    /// Concatenates partitions.
    pub fn concat(frames: Vec<Frame>) -> Result<Frame, String> {
        let mut df = concat_frames(frames).map_err(err)?;
        df.rechunk_mut();
        Ok(Frame(df))
    }

    /// The number of rows of a partition.
    pub fn height(frame: Frame) -> u64 {
        frame.0.height() as u64
    }

    /// Adds up counts.
    pub fn total(counts: Vec<u64>) -> u64 {
        counts.into_iter().sum()
    }

    /// The partial aggregation of one partition.
    pub fn agg_partial(frame: Frame, plan: Wire<AggPlan>) -> Result<Frame, String> {
        plan.0.partial(frame.0).map(Frame).map_err(err)
    }

    /// Each row as its own partial aggregation (the keys and the partial columns).
    pub fn agg_lift(frame: Frame, plan: Wire<AggPlan>) -> Result<Frame, String> {
        plan.0.lift(frame.0).map(Frame).map_err(err)
    }

    /// Merges partial aggregations.
    pub fn agg_combine(frames: Vec<Frame>, plan: Wire<AggPlan>) -> Result<Frame, String> {
        let df = concat_frames(frames).map_err(err)?;
        plan.0.combine(df).map(Frame).map_err(err)
    }

    /// Merges partial aggregations (or a group's rows) into the result.
    pub fn agg_finish(frames: Vec<Frame>, plan: Wire<AggPlan>) -> Result<Frame, String> {
        let df = concat_frames(frames).map_err(err)?;
        let df = plan.0.combine(df).map_err(err)?;
        plan.0.finish(df).map(Frame).map_err(err)
    }

    /// Splits a partition into `n` pieces by the hash of `keys`: equal keys,
    /// in any partition, land in the piece of the same index.
    pub fn hash_split(frame: Frame, keys: Wire<Vec<Expr>>, n: u64) -> Result<Vec<Frame>, String> {
        crate::shuffle::hash_split(frame.0, &keys.0, n as usize).map_err(err)
    }

    /// Splits a partition into `n` pieces by ranges of its first sort
    /// column: piece `i` holds the rows between boundaries `i - 1` and `i`.
    pub fn range_split(frame: Frame, by: String, boundaries: Frame, descending: bool, n: u64) -> Result<Vec<Frame>, String> {
        crate::shuffle::range_split(frame.0, &by, &boundaries.0, descending, n as usize).map_err(err)
    }

    /// `n - 1` sort boundaries of column `by` from the samples of every partition.
    pub fn sort_boundaries(samples: Vec<Frame>, by: String, n: u64, descending: bool) -> Result<Frame, String> {
        let all = concat_frames(samples).map_err(err)?;
        crate::shuffle::sort_boundaries(all, &by, n as usize, descending).map(Frame).map_err(err)
    }

    /// Piece `j` of a split partition.
    pub fn piece(pieces: Vec<Frame>, j: u64) -> Result<Frame, String> {
        let n = pieces.len();
        pieces.into_iter().nth(j as usize).ok_or_else(|| format!("piece {j} of a split into {n}"))
    }

    /// Evenly spaced values of `column` (sorted), to choose sort boundaries.
    pub fn sample_column(frame: Frame, column: String, k: u64) -> Result<Frame, String> {
        crate::shuffle::sample_column(frame.0, &column, k as usize).map_err(err)
    }

    /// Values of `column` at even row strides (a sample for sort boundaries).
    pub fn stride_sample(frame: Frame, column: String, k: u64) -> Result<Frame, String> {
        crate::shuffle::stride_sample(frame.0, &column, k as usize).map_err(err)
    }

    /// Evenly spaced values of `column` with the rows each stands for (quantile sketches).
    pub fn sketch_column(frame: Frame, column: String, k: u64) -> Result<Frame, String> {
        crate::shuffle::sketch_column(frame.0, &column, k as usize).map_err(err)
    }

    /// Joins two partitions.
    pub fn join(left: Frame, right: Frame, spec: Wire<crate::JoinSpec>) -> Result<Frame, String> {
        spec.0.run(left.0, right.0).map(Frame).map_err(err)
    }

    /// Row slice `i` of `n` near-equal slices of a frame of `total` rows.
    pub fn slice(frame: Frame, total: u64, i: u64, n: u64) -> Frame {
        let (a, b) = (total * i / n, total * (i + 1) / n);
        Frame(frame.0.slice(a as i64, (b - a) as usize))
    }

    /// The first `n` rows.
    pub fn head(frame: Frame, n: u64) -> Frame {
        Frame(frame.0.head(Some(n as usize)))
    }

    /// The last `n` rows.
    pub fn tail(frame: Frame, n: u64) -> Frame {
        Frame(frame.0.tail(Some(n as usize)))
    }

    /// Writes a partition as Parquet.
    pub fn write_parquet(frame: Frame, path: String) -> Result<u64, String> {
        crate::io::write_parquet(frame, &path)
    }

    /// Writes a partition as CSV.
    pub fn write_csv(frame: Frame, path: String) -> Result<u64, String> {
        crate::io::write_csv(frame, &path)
    }

    /// The columns of a partition as a row-major `f64` block (nulls are
    /// NaN); 1-D when `flat` (one column).
    pub fn to_block(frame: Frame, columns: Vec<String>, flat: bool) -> Result<Block, String> {
        crate::to_block(&frame.0, &columns, flat).map_err(err)
    }
}
