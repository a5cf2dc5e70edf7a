//! W7 `w7_dataframe`: CSV group-by over `data/table/*.csv` (10 files,
//! 1,000,000 rows; see `../shared/peers/README.md`): `read_csv` (one
//! partition per file, as `dd.read_csv`), then in one computation
//! `g1 = group_by(key).agg(value: sum, mean, count)` and
//! `g2 = group_by(category).agg(value: mean)`, timed with the file reads.
//! The checksums are the peers' (g1 sorted by key, g2 by category), checked
//! on every repeat.

use std::path::Path;

use rask_core::with_scheduler;
use rask_dataframe::polars::prelude::*;
use rask_dataframe::{compute_frames, read_csv, CsvOptions};
use serde_json::{json, Map, Value};

use super::{every_repeat, measure, record, BenchEnv, BenchError};

/// The peers' checksums of one run.
#[derive(Debug, Clone)]
struct Checksums {
    g1_n_groups: u64,
    g1_sum_of_sums: f64,
    g1_sum_of_means: f64,
    g1_sum_of_counts: u64,
    g1_weighted: f64,
    g2_means: Vec<(String, f64)>,
}

impl Checksums {
    fn close(&self, o: &Checksums) -> bool {
        let near = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-300);
        self.g1_n_groups == o.g1_n_groups
            && self.g1_sum_of_counts == o.g1_sum_of_counts
            && near(self.g1_sum_of_sums, o.g1_sum_of_sums)
            && near(self.g1_sum_of_means, o.g1_sum_of_means)
            && near(self.g1_weighted, o.g1_weighted)
            && self.g2_means.len() == o.g2_means.len()
            && self.g2_means.iter().zip(&o.g2_means).all(|(a, b)| a.0 == b.0 && near(a.1, b.1))
    }
}

fn col_f64(df: &DataFrame, c: &str) -> PolarsResult<Vec<f64>> {
    Ok(df
        .column(c)?
        .cast(&DataType::Float64)?
        .f64()?
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect())
}

fn one_run(data: &Path) -> Result<Checksums, String> {
    let pattern = data.join("table/*.csv").display().to_string();
    let options = CsvOptions { blocksize: None, ..CsvOptions::default() };
    let df = read_csv(&[&pattern], &options).map_err(|e| e.to_string())?;
    if df.npartitions() != 10 {
        return Err(format!("w7 expects 10 CSV files in {pattern}, found {}", df.npartitions()));
    }
    let g1 = df
        .group_by(["key"])
        .agg([
            col("value").sum().alias("sum"),
            col("value").mean().alias("mean"),
            col("value").count().alias("count"),
        ])
        .map_err(|e| e.to_string())?;
    let g2 = df.group_by(["category"]).agg([col("value").mean()]).map_err(|e| e.to_string())?;
    let out = compute_frames(&[&g1, &g2]).map_err(|e| e.to_string())?;
    let (g1, g2) = (&out[0], &out[1]);
    let err = |e: PolarsError| e.to_string();
    let keys = col_f64(g1, "key").map_err(err)?;
    let sums = col_f64(g1, "sum").map_err(err)?;
    let means = col_f64(g1, "mean").map_err(err)?;
    let counts = col_f64(g1, "count").map_err(err)?;
    let cats: Vec<String> = g2
        .column("category")
        .map_err(err)?
        .str()
        .map_err(err)?
        .iter()
        .map(|s| s.unwrap_or("").to_string())
        .collect();
    let cat_means = col_f64(g2, "value").map_err(err)?;
    Ok(Checksums {
        g1_n_groups: g1.height() as u64,
        g1_sum_of_sums: sums.iter().sum(),
        g1_sum_of_means: means.iter().sum(),
        g1_sum_of_counts: counts.iter().sum::<f64>() as u64,
        g1_weighted: keys.iter().zip(&sums).map(|(k, s)| k * s).sum(),
        g2_means: cats.into_iter().zip(cat_means).collect(),
    })
}

/// Runs W7 on the threads scheduler (one thread per core), or on a 2-worker
/// LocalCluster of `binary`.
pub fn run(
    env: &BenchEnv,
    data: &Path,
    cluster_binary: Option<&Path>,
    out: &mut dyn FnMut(Value),
) -> Result<(), BenchError> {
    let on = super::RunOn::new(cluster_binary)?;
    let (sec, runs, results) =
        measure(env.repeats, || with_scheduler(on.scheduler.clone(), || one_run(data)));
    let cs = every_repeat("w7_dataframe", results, Checksums::close)?;
    let mut m = Map::new();
    m.insert("g1_n_groups".into(), json!(cs.g1_n_groups));
    m.insert("g1_sum_of_sums".into(), json!(cs.g1_sum_of_sums));
    m.insert("g1_sum_of_means".into(), json!(cs.g1_sum_of_means));
    m.insert("g1_sum_of_counts".into(), json!(cs.g1_sum_of_counts));
    m.insert("g1_weighted".into(), json!(cs.g1_weighted));
    m.insert("g2_n_groups".into(), json!(cs.g2_means.len()));
    m.insert("g2_sum_of_means".into(), json!(cs.g2_means.iter().map(|(_, v)| v).sum::<f64>()));
    m.insert(
        "g2_means".into(),
        json!(cs
            .g2_means
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect::<Map<String, Value>>()),
    );
    out(record(
        "w7_dataframe",
        json!({
            "scheduler": on.name,
            "num_workers": on.workers,
            "processes": on.processes,
            "npartitions": 10,
            "polars": "0.55 (Rust crate; features lazy, csv, parquet, ipc, serde-lazy, fmt, dtype-slim, row_hash)",
            "impl": "read_csv (one partition per file, polars' CSV reader per task) -> two group-bys as partial aggregates per partition (g1: sum, count; mean as sum and count), tree-combined; both results in one graph, so each file is read once (as dask.compute(g1, g2))",
        }),
        sec,
        &runs,
        m,
    ));
    Ok(())
}
