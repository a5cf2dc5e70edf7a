//! Dataframes: partitioned polars `DataFrame`s, as `dask.dataframe`.
//!
//! A [`DataFrame`] is a list of partitions, each a lazily computed polars
//! `DataFrame` (a [`Delayed`]`<`[`Frame`]`>`), with the schema they share.
//! The API speaks polars: [`filter`](DataFrame::filter),
//! [`with_columns`](DataFrame::with_columns) and
//! [`select`](DataFrame::select) take polars expressions, and
//! [`group_by`](DataFrame::group_by)`(..).agg(..)` takes polars
//! aggregations. Every step is checked against the schema when the graph is
//! built, so a missing column fails at once, naming the columns there are.
//!
//! How the work is split:
//! - per-partition steps are fused into one polars plan per partition (one
//!   task each, optimised by polars as a whole);
//! - group-bys reduce partial aggregations in a tree (few groups) or hash-
//!   shuffle them into `split_out` partitions (many groups);
//! - [`merge`](DataFrame::merge) broadcasts a one-partition side, else
//!   hash-shuffles both sides; [`sort`](DataFrame::sort) splits by sampled
//!   quantiles.
//!
//! Every task is a registered op, so a dataframe graph runs on Sync,
//! Threads or a cluster alike; on a cluster, partitions move between
//! workers (and to spill files) as Arrow IPC.

#![warn(missing_docs)]

pub mod fastagg;
pub mod frame;
pub mod from_bag;
pub mod groupby;
pub mod io;
pub mod ops;
mod project;
pub mod prune;
pub mod shuffle;
pub mod sort;

use polars::prelude::{
    col, Expr, IntoLazy, JoinArgs, JoinCoalesce, JoinType, LazyFrame, PolarsError, PolarsResult,
    Schema, SchemaRef, SortMultipleOptions, UniqueKeepStrategy,
};
use rask_core::array::{Array, Block};
use rask_core::{ComputeError, Delayed};
use serde::{Deserialize, Serialize};

pub use frame::{Frame, Wire};
pub use from_bag::BagToDataFrame;
pub use groupby::AggPlan;
pub use io::{read_csv, read_parquet, CsvOptions, ParquetOptions};
pub use polars;

/// Partial results merged per task in tree reductions.
pub const SPLIT_EVERY: usize = 8;

/// A one-partition side of a merge with at most this many rows is
/// broadcast (see [`DataFrame::merge`]).
pub const BROADCAST_ROWS: u64 = 200_000;

/// What building or computing a dataframe can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A glob pattern matched no file.
    #[error("no file matches {pattern:?}: check the path (globs: *, ?, [..])")]
    NoFiles {
        /// The pattern.
        pattern: String,
    },
    /// A glob pattern is malformed.
    #[error("bad glob pattern {pattern:?}: {message}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// Why.
        message: String,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// A CSV file could not be parsed.
    #[error("cannot parse CSV {path}{}: {message}", line.map(|l| format!(" at line {l}")).unwrap_or_default())]
    Csv {
        /// The file.
        path: String,
        /// The line, when known.
        line: Option<u64>,
        /// Why.
        message: String,
    },
    /// A Parquet file could not be read.
    #[error("cannot read Parquet {path}: {message}")]
    Parquet {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// A file's columns differ from the first file's.
    #[error("{path}: {message}; every file of a dataframe must have the same columns and types")]
    SchemaMismatch {
        /// The file that differs.
        path: String,
        /// Which column, how.
        message: String,
    },
    /// A column that is not there.
    #[error("no column {column:?}; the columns are {available:?}")]
    MissingColumn {
        /// The column asked for.
        column: String,
        /// The columns there are.
        available: Vec<String>,
    },
    /// An expression or step that polars rejects on this schema.
    #[error("{message}; the frame's columns are {available:?}")]
    Plan {
        /// Polars' message.
        message: String,
        /// The columns there are.
        available: Vec<String>,
    },
    /// Merge keys of different types.
    #[error("merge keys differ in type: {left:?} is {left_type} on the left but {right:?} is {right_type} on the right; cast one side first (with_columns)")]
    KeyTypes {
        /// The left key.
        left: String,
        /// Its type.
        left_type: String,
        /// The right key.
        right: String,
        /// Its type.
        right_type: String,
    },
    /// An invalid parameter.
    #[error("{message}")]
    Invalid {
        /// What and how to fix it.
        message: String,
    },
    /// A task failed, or the scheduler did.
    #[error(transparent)]
    Compute(#[from] ComputeError),
    /// Polars failed on the caller's side (assembling results).
    #[error("{0}")]
    Polars(#[from] PolarsError),
}

/// One per-partition step; consecutive steps run as one polars plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Step {
    /// Keep the rows where the predicate holds.
    Filter(Expr),
    /// Add or replace columns.
    WithColumns(Vec<Expr>),
    /// Keep (or compute) these columns.
    Select(Vec<Expr>),
    /// Drop duplicate rows (over these columns, or all), keeping any one.
    Unique(Option<Vec<String>>),
    /// Sort by these columns (descending flags alongside).
    Sort(Vec<String>, Vec<bool>),
}

/// Runs `steps` over `df`: runs of steps as one lazy plan each; a sort
/// eagerly, by [`sort::sort_frame`] (the first key with polars, ties by the
/// rest in place). Polars' lazy multi-column sort encodes every row first
/// and is about 10x slower here.
pub fn apply_steps(
    df: polars::prelude::DataFrame,
    steps: &[Step],
) -> PolarsResult<polars::prelude::DataFrame> {
    let mut df = df;
    let mut run: Vec<Step> = Vec::new();
    for step in steps {
        match step {
            Step::Sort(by, desc) => {
                if !run.is_empty() {
                    df = plan_steps(df.lazy(), &run).collect()?;
                    run.clear();
                }
                df = sort::sort_frame(df, by, desc)?;
            }
            other => run.push(other.clone()),
        }
    }
    if !run.is_empty() {
        df = plan_steps(df.lazy(), &run).collect()?;
    }
    Ok(df)
}

fn plan_steps(mut lf: LazyFrame, steps: &[Step]) -> LazyFrame {
    for s in steps {
        lf = match s {
            Step::Filter(p) => lf.filter(p.clone()),
            Step::WithColumns(e) => lf.with_columns(e.clone()),
            Step::Select(e) => lf.select(e.clone()),
            Step::Unique(subset) => lf.unique_generic(
                subset.as_ref().map(|s| s.iter().map(|c| col(c.as_str())).collect()),
                UniqueKeepStrategy::Any,
            ),
            // For the schema only: `apply_steps` runs sorts eagerly.
            Step::Sort(by, desc) => lf.sort(
                by.iter().map(String::as_str).collect::<Vec<_>>(),
                SortMultipleOptions::default().with_order_descending_multi(desc.clone()),
            ),
        };
    }
    lf
}

/// Whether `column` leaves `step` with the values it had (so that ranges of
/// it still hold): filters, sorts and dedups keep rows whole; `with_columns`
/// must not redefine it, and `select` must pass it through.
fn step_keeps_column(step: &Step, column: &str) -> bool {
    // An expression without one output name (`all()`, `cols([..])`, a
    // selector) may write the column: counted as writing it.
    let named =
        |e: &Expr| polars_plan::utils::expr_output_name(e).map_or(true, |n| n.as_str() == column);
    match step {
        Step::Filter(_) | Step::Sort(..) | Step::Unique(_) => true,
        Step::WithColumns(exprs) => !exprs.iter().any(named),
        Step::Select(exprs) => {
            exprs.iter().any(|e| matches!(e, Expr::Column(c) if c.as_str() == column))
                && exprs.iter().filter(|e| named(e)).count() == 1
        }
    }
}

fn names(schema: &Schema) -> Vec<String> {
    schema.iter_names().map(|n| n.to_string()).collect()
}

/// The schema `lf` (a plan over an empty frame of `input`) gives, or the
/// error polars reports, with the input's columns.
pub(crate) fn plan_schema(lf: LazyFrame, input: &Schema) -> Result<SchemaRef, FrameError> {
    let mut lf = lf;
    lf.collect_schema()
        .map_err(|e| FrameError::Plan { message: e.to_string(), available: names(input) })
}

fn empty(schema: &Schema) -> polars::prelude::DataFrame {
    polars::prelude::DataFrame::empty_with_schema(schema)
}

/// A partitioned polars dataframe.
#[derive(Clone)]
pub struct DataFrame {
    /// The partitions before `steps`.
    base: Vec<Delayed<Frame>>,
    /// Per-partition steps not yet turned into tasks (fused into one).
    steps: Vec<Step>,
    /// The schema after `steps`.
    schema: SchemaRef,
    /// Rows per partition, when known without computing.
    pub(crate) lengths: Option<Vec<u64>>,
    /// The value ranges of the partitions, when known ([`DataFrame::set_index`]).
    divisions: Option<Divisions>,
}

/// Where a range-partitioned frame's partitions split, as Dask's
/// `divisions`: partition `i` holds the rows whose `column` lies in
/// `(bounds[i - 1], bounds[i]]`; the first partition has no lower bound,
/// and the last no upper bound and the nulls. Rows are sorted by `column`
/// within each partition right after [`DataFrame::set_index`]; later steps
/// keep the ranges but not necessarily the order.
#[derive(Clone, Debug)]
pub struct Divisions {
    /// The column the partitions are ranges of.
    pub column: String,
    /// `npartitions - 1` ascending boundaries, of the column's type.
    pub bounds: polars::prelude::Series,
}

impl std::fmt::Debug for DataFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataFrame({} partitions, columns {:?})", self.base.len(), names(&self.schema))
    }
}

/// A dataframe of `df` cut into `npartitions` row ranges of near-equal length.
pub fn from_polars(
    df: polars::prelude::DataFrame,
    npartitions: usize,
) -> Result<DataFrame, FrameError> {
    if npartitions == 0 {
        return Err(FrameError::Invalid {
            message: "from_polars: npartitions must be at least 1".into(),
        });
    }
    let n = df.height();
    let k = npartitions.min(n.max(1));
    let schema = df.schema().clone();
    let mut parts = Vec::with_capacity(k);
    let mut lengths = Vec::with_capacity(k);
    for i in 0..k {
        let (a, b) = ((n * i) / k, (n * (i + 1)) / k);
        parts.push(rask_core::value(Frame(df.slice(a as i64, b - a))));
        lengths.push((b - a) as u64);
    }
    let mut out = DataFrame::from_parts(parts, schema);
    out.lengths = Some(lengths);
    Ok(out)
}

impl DataFrame {
    /// A dataframe of the given partitions, which must all have `schema`.
    pub fn from_parts(parts: Vec<Delayed<Frame>>, schema: SchemaRef) -> Self {
        DataFrame { base: parts, steps: Vec::new(), schema, lengths: None, divisions: None }
    }

    /// The schema of every partition.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The column names.
    pub fn columns(&self) -> Vec<String> {
        names(&self.schema)
    }

    /// How many partitions.
    pub fn npartitions(&self) -> usize {
        self.base.len()
    }

    /// The partitions, as tasks (pending per-partition steps fused into one task each).
    pub fn partitions(&self) -> Vec<Delayed<Frame>> {
        if self.steps.is_empty() {
            return self.base.clone();
        }
        let steps = Wire(self.steps.clone());
        self.base.iter().map(|p| ops::apply(p, steps.clone())).collect()
    }

    /// The partitions' value ranges, when known ([`DataFrame::set_index`]).
    pub fn divisions(&self) -> Option<&Divisions> {
        self.divisions.as_ref()
    }

    fn with_step(&self, step: Step, keeps_rows: bool) -> Result<DataFrame, FrameError> {
        let lf = plan_steps(empty(&self.schema).lazy(), std::slice::from_ref(&step));
        let schema = plan_schema(lf, &self.schema)?;
        let divisions = self.divisions.clone().filter(|d| step_keeps_column(&step, &d.column));
        let mut steps = self.steps.clone();
        steps.push(step);
        Ok(DataFrame {
            base: self.base.clone(),
            steps,
            schema,
            lengths: if keeps_rows { self.lengths.clone() } else { None },
            divisions,
        })
    }

    /// The rows where `predicate` holds.
    pub fn filter(&self, predicate: Expr) -> Result<DataFrame, FrameError> {
        self.with_step(Step::Filter(predicate), false)
    }

    /// Adds or replaces columns (row-wise expressions: each partition alone).
    pub fn with_columns(
        &self,
        exprs: impl IntoIterator<Item = Expr>,
    ) -> Result<DataFrame, FrameError> {
        self.with_step(Step::WithColumns(exprs.into_iter().collect()), true)
    }

    /// Keeps or computes columns, per partition (an aggregation here gives
    /// one row per partition; [`agg`](DataFrame::agg) aggregates all rows).
    pub fn select(&self, exprs: impl IntoIterator<Item = Expr>) -> Result<DataFrame, FrameError> {
        self.with_step(Step::Select(exprs.into_iter().collect()), false)
    }

    /// Applies a registered op `Frame -> Frame` to every partition; `schema`
    /// is what it returns (checked when the partitions are computed is up to
    /// the op).
    pub fn map_partitions(
        &self,
        f: impl Fn(Delayed<Frame>) -> Delayed<Frame>,
        schema: SchemaRef,
    ) -> DataFrame {
        DataFrame::from_parts(self.partitions().into_iter().map(f).collect(), schema)
    }

    /// The number of rows.
    pub fn len(&self) -> Delayed<u64> {
        // `with_step` drops the lengths at any step that changes rows.
        if let Some(l) = &self.lengths {
            return rask_core::value(l.iter().sum::<u64>());
        }
        let heights: Vec<Delayed<u64>> = self.partitions().iter().map(ops::height).collect();
        tree(heights, ops::total)
    }

    /// Whether the dataframe has no partitions (no rows by construction).
    pub fn is_empty(&self) -> bool {
        self.base.is_empty()
    }

    /// The first `n` rows (computes partitions from the first until it has them).
    pub fn head(&self, n: usize) -> Result<polars::prelude::DataFrame, FrameError> {
        let mut out = empty(&self.schema);
        for p in self.partitions() {
            if out.height() >= n {
                break;
            }
            let Frame(df) = ops::head(p, (n - out.height()) as u64).compute()?;
            out.vstack_mut_owned(df)?;
        }
        Ok(out)
    }

    /// Computes every partition and concatenates them, in order.
    pub fn compute(&self) -> Result<polars::prelude::DataFrame, FrameError> {
        Ok(compute_frames(&[self])?.pop().expect("one frame asked, one returned"))
    }

    /// Groups by `keys` (column names or expressions).
    pub fn group_by<E: Into<Expr>>(&self, keys: impl IntoIterator<Item = E>) -> GroupBy {
        GroupBy {
            df: self.clone(),
            keys: keys.into_iter().map(Into::into).collect(),
            split_out: 1,
            sort: true,
        }
    }

    /// Aggregations over all rows (polars' `select` of aggregations): a
    /// one-row frame, from partial aggregates reduced in a tree.
    pub fn agg(&self, aggs: impl IntoIterator<Item = Expr>) -> Result<DataFrame, FrameError> {
        GroupBy { df: self.clone(), keys: Vec::new(), split_out: 1, sort: false }.agg(aggs)
    }

    /// Summary statistics of the numeric columns, as polars' `describe`: a
    /// `statistic` column (count, null_count, mean, std, min, 25%, 50%, 75%,
    /// max) and one column per numeric column. Count, mean, std, min and max
    /// are exact (a tree of partial aggregates); the quartiles are
    /// approximate, as Dask's: merged from 101 evenly spaced values of each
    /// sorted partition, weighted by the partition's length (exact for
    /// partitions of up to 101 rows).
    pub fn describe(&self) -> Result<polars::prelude::DataFrame, FrameError> {
        use polars::prelude::{len, DataType, NamedFrom, Series};
        let cols: Vec<String> = self
            .schema
            .iter()
            .filter(|(_, d)| d.is_primitive_numeric())
            .map(|(n, _)| n.to_string())
            .collect();
        if cols.is_empty() {
            return Err(FrameError::Invalid {
                message: format!("describe: no numeric column among {:?}", self.columns()),
            });
        }
        let mut aggs = vec![len().alias("__rows")];
        for c in &cols {
            let x = col(c.as_str()).cast(DataType::Float64);
            aggs.push(x.clone().count().alias(format!("{c}__count")));
            aggs.push(x.clone().mean().alias(format!("{c}__mean")));
            aggs.push(x.clone().std(1).alias(format!("{c}__std")));
            aggs.push(x.clone().min().alias(format!("{c}__min")));
            aggs.push(x.max().alias(format!("{c}__max")));
        }
        let stats = self.agg(aggs)?;
        let parts = self.partitions();
        let sketches: Vec<Vec<Delayed<Frame>>> = cols
            .iter()
            .map(|c| parts.iter().map(|p| ops::sketch_column(p, c.clone(), 101)).collect())
            .collect();
        let mut all: Vec<rask_core::AnyDelayed> =
            stats.partitions().iter().map(Delayed::erase).collect();
        all.extend(sketches.iter().flatten().map(Delayed::erase));
        let values = rask_core::compute_many(
            &all,
            &rask_core::default_scheduler(),
            &rask_core::ComputeOptions::default(),
        )?;
        let mut it = values.into_iter().zip(&all);
        let mut take = || -> Result<polars::prelude::DataFrame, FrameError> {
            let (v, d) = it.next().expect("one value per task");
            Ok(v.take_decode::<Frame>()
                .map_err(|source| ComputeError::Output { key: d.key().clone(), source })?
                .0)
        };
        let stats = take()?;
        let get = |name: &str| -> Result<Option<f64>, FrameError> {
            Ok(stats.column(name)?.cast(&DataType::Float64)?.f64()?.get(0))
        };
        let rows = get("__rows")?.unwrap_or(0.0);
        let mut columns = vec![Series::new(
            "statistic".into(),
            ["count", "null_count", "mean", "std", "min", "25%", "50%", "75%", "max"],
        )
        .into()];
        for c in &cols {
            let count = get(&format!("{c}__count"))?.unwrap_or(0.0);
            // Each partition's (up to) 101 values, each standing for an equal share of its non-null rows.
            let mut weighted: Vec<(f64, f64)> = Vec::new();
            for _ in 0..parts.len() {
                let sketch = take()?;
                let v = sketch.column("value")?.f64()?.clone();
                let w = sketch.column("weight")?.f64()?.clone();
                weighted.extend(v.iter().zip(w.iter()).filter_map(|(v, w)| Some((v?, w?))));
            }
            let q = weighted_quantiles(weighted, &[0.25, 0.5, 0.75]);
            let values = [
                Some(count),
                Some(rows - count),
                get(&format!("{c}__mean"))?,
                get(&format!("{c}__std"))?,
                get(&format!("{c}__min"))?,
                q[0],
                q[1],
                q[2],
                get(&format!("{c}__max"))?,
            ];
            columns.push(Series::new(c.as_str().into(), values).into());
        }
        Ok(polars::prelude::DataFrame::new_infer_height(columns)?)
    }

    /// Each distinct value of `column` with how often it occurs (`count`),
    /// most frequent first (ties by value), as pandas' `value_counts`.
    pub fn value_counts(&self, column: &str) -> Result<DataFrame, FrameError> {
        let counts =
            self.group_by([column]).sort(false).agg([polars::prelude::len().alias("count")])?;
        counts.with_step(Step::Sort(vec!["count".into(), column.into()], vec![true, false]), true)
    }

    /// The rows with duplicates dropped (over `subset`, or all columns); any
    /// one of each set of duplicates is kept, rows come in no set order.
    pub fn drop_duplicates(&self, subset: Option<Vec<String>>) -> Result<DataFrame, FrameError> {
        let local = self.with_step(Step::Unique(subset.clone()), false)?;
        let keys: Vec<Expr> = match &subset {
            Some(s) => s.iter().map(|c| col(c.as_str())).collect(),
            None => self.columns().iter().map(|c| col(c.as_str())).collect(),
        };
        let n = self.npartitions().max(1);
        let shuffled = local.hash_shuffle(&keys, n);
        DataFrame::from_parts(shuffled, local.schema.clone()).with_step(Step::Unique(subset), false)
    }

    /// The number of distinct values of `column` (nulls count as one value).
    pub fn nunique(&self, column: &str) -> Result<Delayed<u64>, FrameError> {
        Ok(self.select([col(column)])?.drop_duplicates(None)?.len())
    }

    /// Hash-shuffles the partitions into `n` by `keys`: the pieces of one
    /// index, from every partition, concatenated.
    fn hash_shuffle(&self, keys: &[Expr], n: usize) -> Vec<Delayed<Frame>> {
        let keys = Wire(keys.to_vec());
        let splits: Vec<Delayed<Vec<Frame>>> =
            self.partitions().iter().map(|p| ops::hash_split(p, keys.clone(), n as u64)).collect();
        (0..n)
            .map(|j| {
                let pieces: Vec<Delayed<Frame>> =
                    splits.iter().map(|s| ops::piece(s, j as u64)).collect();
                ops::concat(pieces)
            })
            .collect()
    }

    /// `n` partitions of near-equal rows (partitions are split or
    /// concatenated; the row order is kept).
    pub fn repartition(&self, n: usize) -> Result<DataFrame, FrameError> {
        if n == 0 {
            return Err(FrameError::Invalid {
                message: "repartition: n must be at least 1".into(),
            });
        }
        let parts = self.partitions();
        let out: Vec<Delayed<Frame>> = if n <= parts.len() {
            // Concatenate runs of neighbours.
            (0..n)
                .map(|i| {
                    let (a, b) = ((parts.len() * i) / n, (parts.len() * (i + 1)) / n);
                    ops::concat(parts[a..b].to_vec())
                })
                .collect()
        } else {
            // Cut the whole into n slices by row (one concat; each slice a task).
            let all = ops::concat(parts);
            let total = ops::height(&all);
            (0..n).map(|i| ops::slice(&all, &total, i as u64, n as u64)).collect()
        };
        Ok(DataFrame::from_parts(out, self.schema.clone()))
    }

    /// Joins with `other` on `left_on` = `right_on` (`how`: inner, left,
    /// right or full, as pandas' inner, left, right and outer; keys
    /// coalesced). A right side of one partition is broadcast to every left
    /// partition (inner and left joins) when it is small ([`BROADCAST_ROWS`], or a quarter of a left
    /// partition) or of unknown length. Sides with known
    /// [`divisions`](DataFrame::divisions) on a single key are joined
    /// partition by partition, and a side without them is range-split to
    /// match the other's (the result keeps the divisions). Otherwise both
    /// sides are hash-shuffled on their keys into as many partitions as the
    /// larger has.
    pub fn merge(
        &self,
        other: &DataFrame,
        left_on: &[&str],
        right_on: &[&str],
        how: How,
    ) -> Result<DataFrame, FrameError> {
        if left_on.is_empty() || left_on.len() != right_on.len() {
            return Err(FrameError::Invalid {
                message: format!("merge: left_on {left_on:?} and right_on {right_on:?} must name the same, non-zero number of columns"),
            });
        }
        for (l, r) in left_on.iter().zip(right_on) {
            let lt = self.schema.get(l).ok_or_else(|| FrameError::MissingColumn {
                column: l.to_string(),
                available: self.columns(),
            })?;
            let rt = other.schema.get(r).ok_or_else(|| FrameError::MissingColumn {
                column: r.to_string(),
                available: other.columns(),
            })?;
            if lt != rt {
                return Err(FrameError::KeyTypes {
                    left: l.to_string(),
                    left_type: lt.to_string(),
                    right: r.to_string(),
                    right_type: rt.to_string(),
                });
            }
        }
        let spec = JoinSpec {
            left_on: left_on.iter().map(|s| s.to_string()).collect(),
            right_on: right_on.iter().map(|s| s.to_string()).collect(),
            how,
        };
        let schema = spec
            .run(empty(&self.schema), empty(&other.schema))
            .map_err(|e| FrameError::Plan { message: e.to_string(), available: self.columns() })?
            .schema()
            .clone();
        let wire = Wire(spec.clone());
        // Known ranges of a single key: the sides are range-split alike
        // (only the side whose ranges are unknown moves), partition by
        // partition, and the result keeps the ranges.
        let ranges = |d: &DataFrame, key: &str| {
            d.divisions.as_ref().filter(|v| left_on.len() == 1 && v.column == key).cloned()
        };
        let (lr, rr) = (ranges(self, left_on[0]), ranges(other, right_on[0]));
        let same = matches!((&lr, &rr), (Some(a), Some(b)) if a.bounds.equals_missing(&b.bounds));
        let join = |l: Vec<Delayed<Frame>>, r: Vec<Delayed<Frame>>| -> Vec<Delayed<Frame>> {
            l.iter().zip(&r).map(|(l, r)| ops::join(l, r, wire.clone())).collect()
        };
        let (parts, bounds) = if same {
            (join(self.partitions(), other.partitions()), lr.map(|d| d.bounds))
        } else if matches!(how, How::Inner | How::Left) && self.broadcasts(other) {
            let right = other.partitions().pop().expect("one partition");
            let parts =
                self.partitions().iter().map(|l| ops::join(l, &right, wire.clone())).collect();
            (parts, lr.map(|d| d.bounds))
        } else if let Some(d) = lr {
            (join(self.partitions(), other.range_shuffle(right_on[0], &d.bounds)), Some(d.bounds))
        } else if let Some(d) = rr {
            (join(self.range_shuffle(left_on[0], &d.bounds), other.partitions()), Some(d.bounds))
        } else {
            let n = self.npartitions().max(other.npartitions());
            let lk: Vec<Expr> = left_on.iter().map(|c| col(*c)).collect();
            let rk: Vec<Expr> = right_on.iter().map(|c| col(*c)).collect();
            (join(self.hash_shuffle(&lk, n), other.hash_shuffle(&rk, n)), None)
        };
        // The coalesced key keeps the left name, or the right one (polars'
        // right join): the ranges are the key's either way.
        let key = [left_on[0], right_on[0]].into_iter().find(|k| schema.contains(k));
        let divisions = bounds.zip(key).map(|(bounds, k)| Divisions { column: k.into(), bounds });
        let mut out = DataFrame::from_parts(parts, schema);
        out.divisions = divisions;
        Ok(out)
    }

    /// This frame range-split by `column` at `bounds` into `bounds.len() + 1`
    /// partitions (one shuffle; the rows of a range are not sorted).
    fn range_shuffle(&self, column: &str, bounds: &polars::prelude::Series) -> Vec<Delayed<Frame>> {
        let n = bounds.len() + 1;
        let frame = polars::prelude::DataFrame::new_infer_height(vec![bounds
            .clone()
            .with_name(column.into())
            .into()])
        .expect("one column");
        let bounds = rask_core::value(Frame(frame));
        let splits: Vec<Delayed<Vec<Frame>>> = self
            .partitions()
            .iter()
            .map(|p| ops::range_split(p, column.to_string(), &bounds, false, n as u64))
            .collect();
        (0..n)
            .map(|j| {
                ops::concat(splits.iter().map(|s| ops::piece(s, j as u64)).collect::<Vec<_>>())
            })
            .collect()
    }

    /// Range-partitioned and sorted by `column`, with known
    /// [`divisions`](DataFrame::divisions), as Dask's `set_index` (polars has
    /// no index: `column` stays a column). The boundaries are quantiles of a
    /// sample of every partition, computed now (the data is read once for
    /// them and again for the result, as in Dask); give them with
    /// [`set_index_with`](DataFrame::set_index_with) to skip that pass.
    /// Merges on `column` with frames of the same divisions need no shuffle,
    /// and with any other frame shuffle only that one.
    pub fn set_index(&self, column: &str) -> Result<DataFrame, FrameError> {
        self.column_type(column)?;
        let samples: Vec<Delayed<Frame>> = self
            .partitions()
            .iter()
            .map(|p| ops::stride_sample(p, column.to_string(), 100))
            .collect();
        let n = self.npartitions() as u64;
        let bounds = ops::sort_boundaries(samples, column.to_string(), n, false).compute()?;
        let bounds = bounds.0.column(column)?.as_materialized_series().clone();
        self.set_index_with(column, bounds)
    }

    /// [`set_index`](DataFrame::set_index) with the boundaries given:
    /// `divisions` (ascending, no nulls, of the column's type) split the
    /// rows into `divisions.len() + 1` partitions.
    pub fn set_index_with(
        &self,
        column: &str,
        divisions: polars::prelude::Series,
    ) -> Result<DataFrame, FrameError> {
        let dtype = self.column_type(column)?;
        let bad = |why: String| FrameError::Invalid {
            message: format!("set_index_with({column:?}): the divisions {why}"),
        };
        if divisions.dtype() != &dtype {
            return Err(bad(format!(
                "are {} but the column is {dtype}; cast them",
                divisions.dtype()
            )));
        }
        if divisions.null_count() > 0 {
            return Err(bad("hold a null".into()));
        }
        if !divisions.sort(Default::default())?.equals_missing(&divisions) {
            return Err(bad("are not in ascending order".into()));
        }
        let parts = self.range_shuffle(column, &divisions);
        let sort = Step::Sort(vec![column.to_string()], vec![false]);
        let mut out = DataFrame::from_parts(parts, self.schema.clone()).with_step(sort, true)?;
        out.divisions = Some(Divisions { column: column.to_string(), bounds: divisions });
        Ok(out)
    }

    fn column_type(&self, column: &str) -> Result<polars::prelude::DataType, FrameError> {
        self.schema.get(column).cloned().ok_or_else(|| FrameError::MissingColumn {
            column: column.to_string(),
            available: self.columns(),
        })
    }

    /// Whether a merge sends all of `other` (one partition) to each of
    /// this frame's partitions rather than shuffling both: when `other` is
    /// small, or of unknown length (a one-partition result, as Dask
    /// assumes). A large one would have its hash table built once per
    /// partition, more work than shuffling it (1M rows against 10
    /// partitions of 1M: about 3x).
    fn broadcasts(&self, other: &DataFrame) -> bool {
        if other.npartitions() != 1 {
            return false;
        }
        let (Some(r), Some(l)) = (&other.lengths, &self.lengths) else { return true };
        let right: u64 = r.iter().sum();
        let per_left = l.iter().sum::<u64>() / l.len().max(1) as u64;
        right <= BROADCAST_ROWS || right.saturating_mul(4) <= per_left || self.npartitions() == 1
    }

    /// Sorted by `by` (`descending` per column), across partitions: each
    /// partition is split by ranges of the first column, with boundaries
    /// at quantiles sampled from every partition, then each range is
    /// sorted. The boundaries are tasks of the same graph (Dask computes
    /// its divisions first, reading the data twice), so nothing is computed
    /// here and each partition is read once. Ties of the first column stay
    /// in one partition, so the order is total.
    pub fn sort(&self, by: &[&str], descending: &[bool]) -> Result<DataFrame, FrameError> {
        if by.is_empty() || (descending.len() != by.len() && descending.len() != 1) {
            return Err(FrameError::Invalid {
                message: format!("sort: give at least one column, and one descending flag per column or one for all (got {} for {by:?})", descending.len()),
            });
        }
        for c in by {
            if self.schema.get(c).is_none() {
                return Err(FrameError::MissingColumn {
                    column: c.to_string(),
                    available: self.columns(),
                });
            }
        }
        let desc: Vec<bool> =
            if descending.len() == 1 { vec![descending[0]; by.len()] } else { descending.to_vec() };
        let parts = self.partitions();
        let n = parts.len();
        let sort_step = Step::Sort(by.iter().map(|s| s.to_string()).collect(), desc.clone());
        // Already ranges of the first key (set_index): sort within each.
        let ranged = self.divisions.as_ref().is_some_and(|d| d.column == by[0]) && !desc[0];
        if n <= 1 || ranged {
            return self.with_step(sort_step, true);
        }
        // Boundaries: n - 1 quantiles of the first column from 100 rows per
        // partition, taken at even strides (no sort of the partition), in
        // the same graph: each partition is read once, for its sample and
        // for its split.
        let first = by[0].to_string();
        let samples: Vec<Delayed<Frame>> =
            parts.iter().map(|p| ops::stride_sample(p, first.clone(), 100)).collect();
        let bounds = ops::sort_boundaries(samples, first.clone(), n as u64, desc[0]);
        let splits: Vec<Delayed<Vec<Frame>>> = parts
            .iter()
            .map(|p| ops::range_split(p, first.clone(), &bounds, desc[0], n as u64))
            .collect();
        let out: Vec<Delayed<Frame>> = (0..n)
            .map(|j| {
                ops::concat(splits.iter().map(|s| ops::piece(s, j as u64)).collect::<Vec<_>>())
            })
            .collect();
        DataFrame::from_parts(out, self.schema.clone()).with_step(sort_step, true)
    }

    /// Writes every partition to `dir/part.<i>.parquet`; the rows written.
    pub fn to_parquet(&self, dir: impl AsRef<std::path::Path>) -> Result<Delayed<u64>, FrameError> {
        self.write(dir.as_ref(), "parquet", |p, path| ops::write_parquet(p, path))
    }

    /// Writes every partition to `dir/part.<i>.csv` (with a header); the rows written.
    pub fn to_csv(&self, dir: impl AsRef<std::path::Path>) -> Result<Delayed<u64>, FrameError> {
        self.write(dir.as_ref(), "csv", |p, path| ops::write_csv(p, path))
    }

    fn write(
        &self,
        dir: &std::path::Path,
        ext: &str,
        w: impl Fn(&Delayed<Frame>, String) -> Delayed<u64>,
    ) -> Result<Delayed<u64>, FrameError> {
        std::fs::create_dir_all(dir).map_err(|e| FrameError::Io {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        let dir = std::path::absolute(dir).map_err(|e| FrameError::Io {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        let parts = self.partitions();
        // Zero-padded, so that the files sort (and read back) in partition order.
        let width = parts.len().saturating_sub(1).to_string().len();
        let written: Vec<Delayed<u64>> = parts
            .iter()
            .enumerate()
            .map(|(i, p)| w(p, dir.join(format!("part.{i:0width$}.{ext}")).display().to_string()))
            .collect();
        Ok(tree(written, ops::total))
    }

    /// The numeric `columns` (all numeric columns when `None`) as a lazy
    /// `f64` array of rows x columns, one row chunk per partition (nulls are
    /// NaN). Partition lengths are computed first when not known (as
    /// `to_dask_array(lengths=True)` does).
    pub fn to_array(&self, columns: Option<&[&str]>) -> Result<Array<f64>, FrameError> {
        let cols = self.numeric_columns(columns)?;
        let parts = self.partitions();
        let lengths = self.partition_lengths(&parts)?;
        Ok(matrix(&parts, cols, lengths))
    }

    /// `columns` (all numeric ones when `None`), each checked to exist and
    /// be numeric.
    fn numeric_columns(&self, columns: Option<&[&str]>) -> Result<Vec<String>, FrameError> {
        let cols: Vec<String> = match columns {
            Some(c) => c.iter().map(|s| s.to_string()).collect(),
            None => self
                .schema
                .iter()
                .filter(|(_, d)| d.is_primitive_numeric() || d.is_bool())
                .map(|(n, _)| n.to_string())
                .collect(),
        };
        for c in &cols {
            match self.schema.get(c) {
                None => return Err(FrameError::MissingColumn { column: c.clone(), available: self.columns() }),
                Some(d) if !(d.is_primitive_numeric() || d.is_bool()) => {
                    return Err(FrameError::Invalid { message: format!("to_array: column {c:?} is {d}, not numeric; select numeric columns or cast them") })
                }
                _ => {}
            }
        }
        Ok(cols)
    }

    /// One numeric column as a lazy 1-D `f64` array, one chunk per
    /// partition (a target `y` beside [`to_array`](DataFrame::to_array)'s `X`).
    pub fn column_to_array(&self, column: &str) -> Result<Array<f64>, FrameError> {
        self.check_numeric_column(column)?;
        let parts = self.partitions();
        let lengths = self.partition_lengths(&parts)?;
        Ok(vector(&parts, column, lengths))
    }

    /// Features and target for a GLM, a search or XGBoost: `x_columns` as a
    /// 2-D array (as [`to_array`](Self::to_array)) and `y_column` as a 1-D
    /// array (as [`column_to_array`](Self::column_to_array)), chunked alike.
    /// Unknown partition lengths are computed once for both (calling the
    /// two separately computes them twice).
    pub fn to_xy(
        &self,
        x_columns: &[&str],
        y_column: &str,
    ) -> Result<(Array<f64>, Array<f64>), FrameError> {
        // Checks the columns before anything is computed.
        let cols = self.numeric_columns(Some(x_columns))?;
        self.check_numeric_column(y_column)?;
        let parts = self.partitions();
        let lengths = self.partition_lengths(&parts)?;
        Ok((matrix(&parts, cols, lengths.clone()), vector(&parts, y_column, lengths)))
    }

    fn check_numeric_column(&self, column: &str) -> Result<(), FrameError> {
        match self.schema.get(column) {
            None => {
                return Err(FrameError::MissingColumn {
                    column: column.into(),
                    available: self.columns(),
                })
            }
            Some(d) if !(d.is_primitive_numeric() || d.is_bool()) => {
                return Err(FrameError::Invalid {
                    message: format!(
                        "column_to_array: column {column:?} is {d}, not numeric; cast it first"
                    ),
                })
            }
            _ => {}
        }
        Ok(())
    }

    /// Rows per partition: known, or computed now.
    fn partition_lengths(&self, parts: &[Delayed<Frame>]) -> Result<Vec<usize>, FrameError> {
        // `with_step` drops the lengths at any step that changes rows.
        if let Some(l) = &self.lengths {
            return Ok(l.iter().map(|&n| n as usize).collect());
        }
        let heights: Vec<rask_core::AnyDelayed> =
            parts.iter().map(|p| ops::height(p).erase()).collect();
        let values = rask_core::compute_many(
            &heights,
            &rask_core::default_scheduler(),
            &rask_core::ComputeOptions::default(),
        )?;
        let mut out = Vec::with_capacity(heights.len());
        for (v, h) in values.into_iter().zip(&heights) {
            let n = v
                .take_decode::<u64>()
                .map_err(|source| ComputeError::Output { key: h.key().clone(), source })?;
            out.push(n as usize);
        }
        Ok(out)
    }
}

/// The rows of `df`'s `columns` as a row-major `f64` block (1-D when `flat`).
pub(crate) fn to_block(
    df: &polars::prelude::DataFrame,
    columns: &[String],
    flat: bool,
) -> PolarsResult<Block> {
    let (n, p) = (df.height(), columns.len());
    let mut data = vec![0f64; n * p];
    for (j, c) in columns.iter().enumerate() {
        let s = df.column(c)?.cast(&polars::prelude::DataType::Float64)?;
        let ca = s.f64()?;
        for (i, v) in ca.iter().enumerate() {
            data[i * p + j] = v.unwrap_or(f64::NAN);
        }
    }
    let a = if flat {
        ndarray::Array1::from_vec(data).into_dyn()
    } else {
        ndarray::Array2::from_shape_vec((n, p), data).expect("n x p values").into_dyn()
    };
    Ok(Block::from_array(a))
}

/// A merge's kind, as pandas names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum How {
    /// Rows with a match on both sides.
    Inner,
    /// Every left row, matched or not.
    Left,
    /// Every right row, matched or not.
    Right,
    /// Every row of either side (pandas' `outer`).
    Full,
}

/// A join of two partitions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JoinSpec {
    /// Left key columns.
    pub left_on: Vec<String>,
    /// Right key columns.
    pub right_on: Vec<String>,
    /// The kind.
    pub how: How,
}

impl JoinSpec {
    /// Joins `left` with `right`.
    pub fn run(
        &self,
        left: polars::prelude::DataFrame,
        right: polars::prelude::DataFrame,
    ) -> PolarsResult<polars::prelude::DataFrame> {
        let how = match self.how {
            How::Inner => JoinType::Inner,
            How::Left => JoinType::Left,
            How::Right => JoinType::Right,
            How::Full => JoinType::Full,
        };
        let args = JoinArgs::new(how).with_coalesce(JoinCoalesce::CoalesceColumns);
        let l: Vec<Expr> = self.left_on.iter().map(|c| col(c.as_str())).collect();
        let r: Vec<Expr> = self.right_on.iter().map(|c| col(c.as_str())).collect();
        left.lazy().join(right.lazy(), l, r, args).collect()
    }
}

/// A pending group-by: [`agg`](GroupBy::agg) builds it.
#[derive(Clone, Debug)]
pub struct GroupBy {
    df: DataFrame,
    keys: Vec<Expr>,
    split_out: usize,
    sort: bool,
}

impl GroupBy {
    /// Output partitions (default 1: a tree reduction into one partition).
    /// Above 1, partial aggregates are hash-shuffled by key into that many
    /// partitions: for many groups, as Dask's `split_out`.
    pub fn split_out(mut self, n: usize) -> Self {
        self.split_out = n;
        self
    }

    /// Sort the groups by key (default: yes, as pandas; with `split_out`
    /// above 1, each output partition is sorted).
    pub fn sort(mut self, sort: bool) -> Self {
        self.sort = sort;
        self
    }

    /// The frame's divisions when the only key is their column (by name).
    fn by_divisions(&self) -> Option<Divisions> {
        let d = self.df.divisions.as_ref()?;
        matches!(&self.keys[..], [Expr::Column(c)] if c.as_str() == d.column).then(|| d.clone())
    }

    /// The aggregations (polars expressions: `col("x").sum()`, `len()`, …),
    /// one row per group. Grouped by the column of the frame's
    /// [`divisions`](DataFrame::divisions), each partition groups on its own
    /// (no tree, no shuffle; `split_out` does not apply) and the result keeps
    /// the divisions. Sum, count, len, min, max, first, last, mean, var
    /// and std run as partial aggregations merged in a tree (or shuffled);
    /// anything else runs on each group's rows after a shuffle.
    pub fn agg(&self, aggs: impl IntoIterator<Item = Expr>) -> Result<DataFrame, FrameError> {
        if self.split_out == 0 {
            return Err(FrameError::Invalid {
                message: "group_by: split_out must be at least 1".into(),
            });
        }
        let (plan, schema) =
            AggPlan::new(self.keys.clone(), aggs.into_iter().collect(), &self.df.schema, self.sort)
                .map_err(|e| FrameError::Plan {
                    message: e.to_string(),
                    available: self.df.columns(),
                })?;
        let split = plan.split.is_some();
        let wire = Wire(plan.clone());
        let parts = self.df.partitions();
        if let Some(d) = self.by_divisions() {
            // Every group lies in one partition: each groups on its own
            // (lifted rows group once), and the result keeps the ranges.
            let out = parts
                .iter()
                .map(|p| {
                    let rows = if split { ops::agg_lift(p, wire.clone()) } else { p.clone() };
                    ops::agg_finish(vec![rows], wire.clone())
                })
                .collect();
            let mut out = DataFrame::from_parts(out, schema);
            out.divisions = Some(d);
            return Ok(out);
        }
        // Few groups (one output): each partition's partial aggregate, merged
        // in a tree. Many groups (`split_out` > 1): a partial aggregate of a
        // high-cardinality key reduces little and costs a full group-by of
        // the partition, so each row is lifted into its own partial (a
        // projection of the needed columns) and the rows are shuffled; each
        // output partition then groups once, over a key range a fraction the
        // size (about 3x less work on W8's 1M keys).
        let partials: Vec<Delayed<Frame>> = match (split, self.split_out) {
            (true, 1) => parts.iter().map(|p| ops::agg_partial(p, wire.clone())).collect(),
            (true, _) => parts.iter().map(|p| ops::agg_lift(p, wire.clone())).collect(),
            (false, _) => parts,
        };
        let out: Vec<Delayed<Frame>> = if self.split_out == 1 {
            // Combine in a tree; the root finishes.
            let mut level = partials;
            while level.len() > SPLIT_EVERY && split {
                level = level
                    .chunks(SPLIT_EVERY)
                    .map(|c| ops::agg_combine(c.to_vec(), wire.clone()))
                    .collect();
            }
            vec![ops::agg_finish(level, wire.clone())]
        } else {
            let keys = if split { plan.key_cols() } else { plan.keys.clone() };
            let shuffled =
                DataFrame::from_parts(partials, schema.clone()).hash_shuffle(&keys, self.split_out);
            shuffled.iter().map(|p| ops::agg_finish(vec![p.clone()], wire.clone())).collect()
        };
        Ok(DataFrame::from_parts(out, schema))
    }
}

/// Merges `level` in groups of [`SPLIT_EVERY`] until one value is left.
fn tree<A>(
    mut level: Vec<Delayed<A>>,
    merge: impl Fn(Vec<Delayed<A>>) -> Delayed<A>,
) -> Delayed<A> {
    if level.is_empty() {
        return merge(Vec::new());
    }
    while level.len() > 1 {
        level = level.chunks(SPLIT_EVERY).map(|c| merge(c.to_vec())).collect();
    }
    level.pop().expect("one value left")
}

/// Row-chunked `f64` blocks of `cols`, one per partition of `lengths` rows.
fn matrix(parts: &[Delayed<Frame>], cols: Vec<String>, lengths: Vec<usize>) -> Array<f64> {
    let n = cols.len();
    let blocks: Vec<Delayed<Block>> =
        parts.iter().map(|p| ops::to_block(p, cols.clone(), false)).collect();
    let grid = ndarray::Array2::from_shape_vec((blocks.len(), 1), blocks)
        .expect("n x 1 blocks")
        .into_dyn();
    Array::from_blocks("dataframe", vec![lengths, vec![n]], grid)
}

/// One column as 1-D `f64` blocks, one per partition of `lengths` rows.
fn vector(parts: &[Delayed<Frame>], column: &str, lengths: Vec<usize>) -> Array<f64> {
    let blocks: Vec<Delayed<Block>> =
        parts.iter().map(|p| ops::to_block(p, vec![column.to_string()], true)).collect();
    let grid = ndarray::Array1::from_vec(blocks).into_dyn();
    Array::from_blocks(column, vec![lengths], grid)
}

/// Computes several dataframes in one graph (shared tasks run once: two
/// group-bys of one CSV read it once) and concatenates each one's partitions.
pub fn compute_frames(
    frames: &[&DataFrame],
) -> Result<Vec<polars::prelude::DataFrame>, FrameError> {
    let parts: Vec<Vec<Delayed<Frame>>> = frames.iter().map(|f| f.partitions()).collect();
    let erased: Vec<rask_core::AnyDelayed> = parts.iter().flatten().map(Delayed::erase).collect();
    let keys: Vec<rask_core::Key> = erased.iter().map(|d| d.key().clone()).collect();
    let mut graph = rask_core::delayed::graph_of(&erased);
    project::project_reads(&mut graph, &keys);
    let mut values = rask_core::default_scheduler()
        .execute(graph, &keys, &rask_core::ComputeOptions::default())?
        .into_iter();
    let mut out = Vec::with_capacity(frames.len());
    for (f, ps) in frames.iter().zip(&parts) {
        let mut frames = Vec::with_capacity(ps.len());
        for p in ps {
            let v = values.next().expect("one value per partition");
            let frame = v
                .take_decode::<Frame>()
                .map_err(|source| ComputeError::Output { key: p.key().clone(), source })?;
            frames.push(frame);
        }
        let df = if frames.is_empty() { empty(&f.schema) } else { ops::concat_frames(frames)? };
        out.push(df);
    }
    Ok(out)
}

/// Quantiles of weighted values, linear between neighbours. The value
/// `i` (sorted) sits at the weight before it over the weight before the
/// last: with unit weights, `i / (n - 1)`, pandas' default.
fn weighted_quantiles(mut v: Vec<(f64, f64)>, qs: &[f64]) -> Vec<Option<f64>> {
    if v.is_empty() {
        return vec![None; qs.len()];
    }
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let span: f64 = v[..v.len() - 1].iter().map(|p| p.1).sum();
    if span <= 0.0 {
        return vec![Some(v[0].0); qs.len()];
    }
    let mut pos = Vec::with_capacity(v.len());
    let mut acc = 0.0;
    for (_, w) in &v {
        pos.push(acc / span);
        acc += w;
    }
    qs.iter()
        .map(|&q| {
            let i = pos.partition_point(|&p| p < q);
            Some(if i == 0 {
                v[0].0
            } else if i == v.len() {
                v[v.len() - 1].0
            } else {
                let (p0, p1) = (pos[i - 1], pos[i]);
                let t = if p1 > p0 { (q - p0) / (p1 - p0) } else { 0.0 };
                v[i - 1].0 + t * (v[i].0 - v[i - 1].0)
            })
        })
        .collect()
}
