//! W8 `w8_shuffle`: shuffles over `data/sales` (10 Parquet files, 10M rows;
//! 1M customers; see `../shared/peers/README.md`), three operations, each
//! timed separately with its Parquet reads:
//! - `hc_groupby`: `group_by(customer).agg(amount.sum())`, ~1M groups, with
//!   `split_out = 8` (as the peers' dask);
//! - `merge_agg`: inner merge with the customers (one file of 1M rows, too
//!   many to broadcast: both sides are hash-shuffled into 10), then
//!   `group_by([segment, region]).agg(amount.mean())` and the joined row
//!   count, in one graph;
//! - `sort`: sort by `[amount, id]` (sampled quantile boundaries, range
//!   split, sort per range: a radix sort of `amount`, ties by `id`), then the ids of the first and last 5 rows, the
//!   row count, the min and max amount, from per-partition heads and tails
//!   (as dask's `head(npartitions=-1)` and `tail`): the sorted rows stay in
//!   the workers.
//!
//! Checksums are the peers'; every repeat's are checked.

use std::path::Path;

use rask_core::{with_scheduler, Delayed};
use rask_dataframe::polars::prelude::*;
use rask_dataframe::{compute_frames, ops, read_parquet, Frame, How, ParquetOptions};
use serde_json::{json, Map, Value};

use super::{every_repeat, measure, record, BenchEnv, BenchError};

/// One operation's checksums, as JSON fields (floats compared to 1e-9).
type Checks = Map<String, Value>;

fn same(a: &Checks, b: &Checks) -> bool {
    a.len() == b.len()
        && a.iter().all(|(k, x)| match (x, &b[k]) {
            (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
                let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
                (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
            }
            (x, y) => x == y,
        })
}

fn f64s(df: &DataFrame, c: &str) -> PolarsResult<Vec<f64>> {
    Ok(df
        .column(c)?
        .cast(&DataType::Float64)?
        .f64()?
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect())
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn sales(data: &Path, columns: Option<&[&str]>) -> Result<rask_dataframe::DataFrame, String> {
    let pattern = data.join("sales/part_*.parquet").display().to_string();
    let options = ParquetOptions {
        columns: columns.map(|c| c.iter().map(|s| s.to_string()).collect()),
        ..ParquetOptions::default()
    };
    let df = read_parquet(&[&pattern], &options).map_err(|e| {
        format!("w8 needs the peers' sales data ({e}); generate it with gen_data.py --only sales")
    })?;
    if df.npartitions() != 10 {
        return Err(format!(
            "w8 expects 10 Parquet files in {pattern}, found {}",
            df.npartitions()
        ));
    }
    Ok(df)
}

fn hc_groupby(data: &Path) -> Result<Checks, String> {
    let df = sales(data, Some(&["customer", "amount"]))?;
    let g = df
        .group_by(["customer"])
        .split_out(8)
        .sort(false)
        .agg([col("amount").sum()])
        .map_err(err)?;
    let g = g.compute().map_err(err)?;
    let customer = f64s(&g, "customer").map_err(err)?;
    let sums = f64s(&g, "amount").map_err(err)?;
    // Summed in key order, as the peers sum a sorted index.
    let mut pairs: Vec<(f64, f64)> = customer.into_iter().zip(sums).collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut m = Map::new();
    m.insert("n_groups".into(), json!(pairs.len()));
    m.insert("sum_of_sums".into(), json!(pairs.iter().map(|p| p.1).sum::<f64>()));
    m.insert("weighted".into(), json!(pairs.iter().map(|p| p.0 * p.1).sum::<f64>() / 1e6));
    Ok(m)
}

fn merge_agg(data: &Path) -> Result<Checks, String> {
    let df = sales(data, Some(&["customer", "amount"]))?;
    let cust = data.join("sales/customers.parquet").display().to_string();
    let c = read_parquet(&[&cust], &ParquetOptions::default()).map_err(err)?;
    let j = df.merge(&c, &["customer"], &["customer"], How::Inner).map_err(err)?;
    let g = j.group_by(["segment", "region"]).agg([col("amount").mean()]).map_err(err)?;
    let n = j.agg([len().alias("n")]).map_err(err)?;
    let out = compute_frames(&[&g, &n]).map_err(err)?;
    let means = f64s(&out[0], "amount").map_err(err)?;
    let rows = f64s(&out[1], "n").map_err(err)?;
    let mut m = Map::new();
    m.insert("n_groups".into(), json!(means.len()));
    m.insert("sum_of_means".into(), json!(means.iter().sum::<f64>()));
    m.insert("n_rows_joined".into(), json!(rows.first().copied().unwrap_or(0.0) as u64));
    Ok(m)
}

fn sort(data: &Path) -> Result<Checks, String> {
    let df = sales(data, None)?;
    let s = df.sort(&["amount", "id"], &[false]).map_err(err)?;
    let parts = s.partitions();
    // Per partition: its first 5 rows, its last 5, its length.
    let heads: Vec<Delayed<Frame>> = parts.iter().map(|p| ops::head(p, 5)).collect();
    let tails: Vec<Delayed<Frame>> = parts.iter().map(|p| ops::tail(p, 5)).collect();
    let lens: Vec<Delayed<u64>> = parts.iter().map(ops::height).collect();
    let mut all: Vec<rask_core::AnyDelayed> = heads.iter().map(Delayed::erase).collect();
    all.extend(tails.iter().map(Delayed::erase));
    all.extend(lens.iter().map(Delayed::erase));
    let values = rask_core::compute_many(
        &all,
        &rask_core::default_scheduler(),
        &rask_core::ComputeOptions::default(),
    )
    .map_err(err)?;
    let k = parts.len();
    let mut frames = Vec::with_capacity(2 * k);
    let mut n = 0u64;
    for (i, v) in values.into_iter().enumerate() {
        if i < 2 * k {
            frames.push(v.take_decode::<Frame>().map_err(err)?.0);
        } else {
            n += v.take_decode::<u64>().map_err(err)?;
        }
    }
    let (heads, tails) = frames.split_at(k);
    let mut first: Vec<(f64, f64)> = Vec::new();
    for h in heads {
        first.extend(f64s(h, "id").map_err(err)?.into_iter().zip(f64s(h, "amount").map_err(err)?));
    }
    let mut last: Vec<(f64, f64)> = Vec::new();
    for t in tails {
        last.extend(f64s(t, "id").map_err(err)?.into_iter().zip(f64s(t, "amount").map_err(err)?));
    }
    first.truncate(5);
    let last = &last[last.len().saturating_sub(5)..];
    let mut m = Map::new();
    m.insert("n_rows".into(), json!(n));
    m.insert("first5_ids".into(), json!(first.iter().map(|p| p.0 as i64).collect::<Vec<_>>()));
    m.insert("last5_ids".into(), json!(last.iter().map(|p| p.0 as i64).collect::<Vec<_>>()));
    m.insert("min_amount".into(), json!(first.first().map(|p| p.1)));
    m.insert("max_amount".into(), json!(last.last().map(|p| p.1)));
    Ok(m)
}

/// Runs W8's three operations on the threads scheduler (one thread per
/// core), or on a 2-worker LocalCluster of `binary`. `W8_ONLY=<op>` runs
/// one operation; `W8_REPORT_DIR` writes a performance report of each.
pub fn run(
    env: &BenchEnv,
    data: &Path,
    cluster_binary: Option<&Path>,
    out: &mut dyn FnMut(Value),
) -> Result<(), BenchError> {
    let on = super::RunOn::new(cluster_binary)?;
    type Op = fn(&Path) -> Result<Checks, String>;
    let ops: [(&str, Op, &str); 3] = [
        ("hc_groupby", hc_groupby, "read_parquet (customer, amount) -> rows lifted to partials -> hash split into 8 (one gather, then slices) -> concat + combine per piece (one-pass integer-key group-by kernel)"),
        ("merge_agg", merge_agg, "read_parquet -> merge: sales and the customers (one file of 1M rows: too many to broadcast) both hash-split into 10, joined pair by pair -> group_by(segment, region) mean as partial sum/count tree, and len, in one graph"),
        ("sort", sort, "read_parquet -> 100 amounts per partition at even strides -> boundaries (tasks of the same graph: each file is read once; dask computes its divisions first) -> 10 ranges split per partition (binary search per row) -> concat + sort per range (LSD radix sort of amount's order-preserving codes, then each run of equal amounts ordered by id) -> per-partition head(5), tail(5) and len"),
    ];
    let only = std::env::var("W8_ONLY").ok();
    for (op, f, how) in ops {
        if only.as_deref().is_some_and(|o| o != op) {
            continue;
        }
        let report = std::env::var_os("W8_REPORT_DIR");
        let (sec, runs, results) = measure(env.repeats, || {
            with_scheduler(on.scheduler.clone(), || match &report {
                // Where the time goes: a performance report per repeat (the last one stays).
                Some(dir) => on
                    .report(&Path::new(dir).join(format!("w8-{op}-{}.html", on.name)), || {
                        f(data)
                    })?,
                None => f(data),
            })
        });
        let m = every_repeat("w8_shuffle", results, same)?;
        out(record(
            "w8_shuffle",
            json!({
                "op": op,
                "scheduler": on.name,
                "num_workers": on.workers,
                "processes": on.processes,
                "npartitions": 10,
                "impl": how,
            }),
            sec,
            &runs,
            m,
        ));
    }
    Ok(())
}
