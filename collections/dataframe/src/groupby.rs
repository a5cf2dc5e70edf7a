//! Group-by aggregations split into three stages, as dask.dataframe's
//! `aca` (apply-concat-apply) does:
//!
//! - `partial`, per input partition: a group-by whose aggregations are
//!   decomposable parts (sums, counts, minima, …);
//! - `combine`, over concatenated partials: a group-by merging the parts
//!   (run in a tree, or once per output partition after a shuffle);
//! - `finish`: a select turning the parts into the asked-for columns, with
//!   the dtypes polars gives the same aggregation on one frame.
//!
//! Aggregations with no such split (median, n_unique, arbitrary
//! expressions) run whole, after a shuffle that brings every group's rows
//! together.

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::fastagg::{group_fold, Fold};

/// How one group-by runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AggPlan {
    /// The grouping expressions, as given.
    pub keys: Vec<Expr>,
    /// The output names of the keys.
    pub key_names: Vec<String>,
    /// The aggregations, as given (the whole-group path).
    pub aggs: Vec<Expr>,
    /// The decomposed stages, when every aggregation decomposes.
    pub split: Option<Split>,
    /// Sort the result by its keys.
    pub sort: bool,
}

/// The three stages of a decomposed group-by.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Split {
    /// Per input partition, grouped by `keys`.
    pub partial: Vec<Expr>,
    /// Row by row, the same columns as `partial` for a group of one row
    /// (selected beside the keys): what is shuffled when `split_out` > 1.
    pub lift: Vec<Expr>,
    /// Over concatenated partials, grouped by the key columns.
    pub combine: Vec<Expr>,
    /// Over the combined frame: the asked-for columns.
    pub finish: Vec<Expr>,
    /// `combine` as plain folds of the partial columns, when every part is
    /// a sum, minimum or maximum (the direct kernel can run it).
    pub folds: Option<Vec<(String, Fold)>>,
}

impl AggPlan {
    /// Plans `aggs` grouped by `keys` over frames of `schema`; the output
    /// schema says what the aggregation gives on one frame (and validates it:
    /// a missing column is an error naming the available ones).
    pub fn new(
        keys: Vec<Expr>,
        aggs: Vec<Expr>,
        schema: &Schema,
        sort: bool,
    ) -> PolarsResult<(AggPlan, SchemaRef)> {
        let empty = polars::prelude::DataFrame::empty_with_schema(schema).lazy();
        let mut lf = if keys.is_empty() {
            empty.select(aggs.clone())
        } else {
            empty.group_by(keys.clone()).agg(aggs.clone())
        };
        let out = lf.collect_schema()?;
        let key_names: Vec<String> =
            out.iter_names().take(keys.len()).map(|n| n.to_string()).collect();
        let agg_fields: Vec<(String, DataType)> =
            out.iter().skip(keys.len()).map(|(n, d)| (n.to_string(), d.clone())).collect();
        let split = decompose(&aggs, &agg_fields);
        Ok((AggPlan { keys, key_names, aggs, split, sort }, out))
    }

    /// The key columns (after the partial stage).
    pub fn key_cols(&self) -> Vec<Expr> {
        self.key_names.iter().map(|k| col(k.as_str())).collect()
    }

    /// `aggs` grouped by `keys`, or over the whole frame when there are none.
    fn grouped(&self, lf: LazyFrame, keys: Vec<Expr>, aggs: Vec<Expr>) -> LazyFrame {
        if self.key_names.is_empty() {
            lf.select(aggs)
        } else {
            lf.group_by(keys).agg(aggs)
        }
    }

    /// Per input partition: the partial aggregation (or the rows themselves
    /// when the plan does not decompose).
    pub fn partial(
        &self,
        df: polars::prelude::DataFrame,
    ) -> PolarsResult<polars::prelude::DataFrame> {
        match &self.split {
            Some(s) if self.foldable() => {
                // The partial of a frame is the combine of its rows, lifted.
                let schema = self
                    .grouped(empty_like(&df), self.keys.clone(), s.partial.clone())
                    .collect_schema()?;
                let lifted = self.lift(df)?;
                match self.fold(&lifted, &schema) {
                    Some(out) => out,
                    None => {
                        self.grouped(lifted.lazy(), self.key_cols(), s.combine.clone()).collect()
                    }
                }
            }
            Some(s) => self.grouped(df.lazy(), self.keys.clone(), s.partial.clone()).collect(),
            None => Ok(df),
        }
    }

    /// Whether the direct kernel may run this plan's combine (keys, folds).
    fn foldable(&self) -> bool {
        !self.key_names.is_empty() && self.split.as_ref().is_some_and(|s| s.folds.is_some())
    }

    /// The combine of `df` (key and partial columns) by the direct kernel,
    /// cast to `schema`; `None` when its columns' types do not suit it.
    fn fold(
        &self,
        df: &polars::prelude::DataFrame,
        schema: &Schema,
    ) -> Option<PolarsResult<polars::prelude::DataFrame>> {
        let folds = self.split.as_ref()?.folds.as_ref()?;
        group_fold(df, &self.key_names, folds, schema)
    }

    /// Per input partition, row by row: the keys and each row's partial
    /// (a cheap projection: no group-by), to be shuffled and combined.
    pub fn lift(&self, df: polars::prelude::DataFrame) -> PolarsResult<polars::prelude::DataFrame> {
        match &self.split {
            Some(s) => {
                let mut cols: Vec<Expr> = self
                    .keys
                    .iter()
                    .zip(&self.key_names)
                    .map(|(k, n)| k.clone().alias(n.as_str()))
                    .collect();
                cols.extend(s.lift.iter().cloned());
                df.lazy().select(cols).collect()
            }
            None => Ok(df),
        }
    }

    /// Merges concatenated partials into one partial per group.
    pub fn combine(
        &self,
        df: polars::prelude::DataFrame,
    ) -> PolarsResult<polars::prelude::DataFrame> {
        match &self.split {
            Some(s) => {
                if self.foldable() {
                    let schema = self
                        .grouped(empty_like(&df), self.key_cols(), s.combine.clone())
                        .collect_schema()?;
                    if let Some(out) = self.fold(&df, &schema) {
                        return out;
                    }
                }
                self.grouped(df.lazy(), self.key_cols(), s.combine.clone()).collect()
            }
            None => Ok(df),
        }
    }

    /// The result from combined partials (or from all of a group's rows).
    pub fn finish(
        &self,
        df: polars::prelude::DataFrame,
    ) -> PolarsResult<polars::prelude::DataFrame> {
        let lf = match &self.split {
            Some(s) => {
                let mut cols = self.key_cols();
                cols.extend(s.finish.iter().cloned());
                df.lazy().select(cols)
            }
            None => self.grouped(df.lazy(), self.keys.clone(), self.aggs.clone()),
        };
        let lf = if self.sort && !self.key_names.is_empty() {
            lf.sort(
                self.key_names.iter().map(String::as_str).collect::<Vec<_>>(),
                SortMultipleOptions::default().with_nulls_last(true),
            )
        } else {
            lf
        };
        lf.collect()
    }
}

/// An empty lazy frame with `df`'s columns (to ask polars for a schema).
fn empty_like(df: &polars::prelude::DataFrame) -> LazyFrame {
    df.clear().lazy()
}

/// The stages of `aggs`, when every one is a plain aggregation with a split.
fn decompose(aggs: &[Expr], fields: &[(String, DataType)]) -> Option<Split> {
    let mut s = Split {
        partial: Vec::new(),
        lift: Vec::new(),
        combine: Vec::new(),
        finish: Vec::new(),
        folds: Some(Vec::new()),
    };
    // Records that the part `name` combines by `fold` (or, with `None`, that
    // some part needs polars' expressions).
    let fold = |s: &mut Split, name: String, fold: Option<Fold>| match (fold, &mut s.folds) {
        (Some(f), Some(v)) => v.push((name, f)),
        _ => s.folds = None,
    };
    let one = || lit(1u32).cast(IDX_DTYPE);
    let present = |x: &Expr| x.clone().is_not_null().cast(IDX_DTYPE);
    for (i, (agg, (name, dtype))) in aggs.iter().zip(fields).enumerate() {
        let p = |part: &str| format!("__rask_{i}_{part}");
        let c = |part: &str| col(p(part).as_str());
        let mut inner = agg;
        while let Expr::Alias(e, _) = inner {
            inner = e;
        }
        let finish = match inner {
            Expr::Len => {
                s.partial.push(len().alias(p("n")));
                s.lift.push(one().alias(p("n")));
                s.combine.push(c("n").sum());
                fold(&mut s, p("n"), Some(Fold::Sum));
                c("n")
            }
            Expr::Agg(a) => match a {
                AggExpr::Sum(x) => {
                    s.partial.push(x.as_ref().clone().sum().alias(p("s")));
                    s.lift.push(x.as_ref().clone().alias(p("s")));
                    s.combine.push(c("s").sum());
                    fold(&mut s, p("s"), Some(Fold::Sum));
                    c("s")
                }
                AggExpr::Count { input, include_nulls } => {
                    let n = if *include_nulls {
                        input.as_ref().clone().len()
                    } else {
                        input.as_ref().clone().count()
                    };
                    s.partial.push(n.alias(p("n")));
                    s.lift.push(if *include_nulls { one() } else { present(input) }.alias(p("n")));
                    s.combine.push(c("n").sum());
                    fold(&mut s, p("n"), Some(Fold::Sum));
                    c("n")
                }
                AggExpr::Min { input, propagate_nans } => {
                    let x = input.as_ref().clone();
                    s.partial.push(
                        if *propagate_nans { x.clone().nan_min() } else { x.clone().min() }
                            .alias(p("m")),
                    );
                    s.lift.push(x.alias(p("m")));
                    s.combine.push(if *propagate_nans { c("m").nan_min() } else { c("m").min() });
                    fold(&mut s, p("m"), (!*propagate_nans).then_some(Fold::Min));
                    c("m")
                }
                AggExpr::Max { input, propagate_nans } => {
                    let x = input.as_ref().clone();
                    s.partial.push(
                        if *propagate_nans { x.clone().nan_max() } else { x.clone().max() }
                            .alias(p("m")),
                    );
                    s.lift.push(x.alias(p("m")));
                    s.combine.push(if *propagate_nans { c("m").nan_max() } else { c("m").max() });
                    fold(&mut s, p("m"), (!*propagate_nans).then_some(Fold::Max));
                    c("m")
                }
                AggExpr::First(x) => {
                    s.partial.push(x.as_ref().clone().first().alias(p("f")));
                    s.lift.push(x.as_ref().clone().alias(p("f")));
                    s.combine.push(c("f").first());
                    fold(&mut s, p("f"), None);
                    c("f")
                }
                AggExpr::Last(x) => {
                    s.partial.push(x.as_ref().clone().last().alias(p("l")));
                    s.lift.push(x.as_ref().clone().alias(p("l")));
                    s.combine.push(c("l").last());
                    fold(&mut s, p("l"), None);
                    c("l")
                }
                AggExpr::Mean(x) => {
                    let x = x.as_ref().clone().cast(DataType::Float64);
                    s.partial.push(x.clone().sum().alias(p("s")));
                    s.partial.push(x.clone().count().alias(p("n")));
                    s.lift.push(x.clone().alias(p("s")));
                    s.lift.push(present(&x).alias(p("n")));
                    s.combine.push(c("s").sum());
                    s.combine.push(c("n").sum());
                    fold(&mut s, p("s"), Some(Fold::Sum));
                    fold(&mut s, p("n"), Some(Fold::Sum));
                    when(c("n").gt(lit(0)))
                        .then(c("s") / c("n").cast(DataType::Float64))
                        .otherwise(lit(NULL))
                }
                AggExpr::Var(x, ddof) | AggExpr::Std(x, ddof) => {
                    let x = x.as_ref().clone().cast(DataType::Float64);
                    let n_f = || c("n").cast(DataType::Float64);
                    s.partial.push(x.clone().count().alias(p("n")));
                    s.partial.push(x.clone().sum().alias(p("s")));
                    // The group's squared deviations from its own mean.
                    let n_x = x.clone().count().cast(DataType::Float64);
                    s.partial.push((x.clone().var(0) * n_x).fill_null(lit(0.0)).alias(p("m2")));
                    s.lift.push(present(&x).alias(p("n")));
                    s.lift.push(x.clone().alias(p("s")));
                    s.lift.push(lit(0.0).alias(p("m2")));
                    fold(&mut s, p("m2"), None);
                    s.combine.push(c("n").sum());
                    s.combine.push(c("s").sum());
                    // Chan et al.: M2 = Σ M2ᵢ + Σ nᵢ (meanᵢ − mean)², each
                    // partial's mean against the merged one (no Σx² cancellation).
                    let mean_i = c("s") / n_f();
                    let mean = c("s").sum() / n_f().sum();
                    let shift = when(c("n").gt(lit(0)))
                        .then(n_f() * (mean_i - mean).pow(2))
                        .otherwise(lit(0.0));
                    s.combine.push((c("m2") + shift).sum().alias(p("m2")));
                    let var = when(n_f().gt(lit(*ddof as f64)))
                        .then(c("m2") / (n_f() - lit(*ddof as f64)))
                        .otherwise(lit(NULL));
                    if matches!(a, AggExpr::Std(..)) {
                        var.sqrt()
                    } else {
                        var
                    }
                }
                _ => return None,
            },
            _ => return None,
        };
        s.finish.push(finish.cast(dtype.clone()).alias(name.as_str()));
    }
    Some(s)
}
