//! W5 `w5_xgb`: gradient-boosted trees on the `xgb` data set (500 000 × 20;
//! see `../shared/peers/README.md`): `tree_method=hist`, `max_depth=6`,
//! `eta=0.3`, `binary:logistic`, logloss and AUC evaluated on the training
//! set every round, 100 rounds, through the real libxgboost in this process
//! with `nthread=2` (the peers' single-process configuration). `seconds`
//! covers the DMatrix construction and the training, as the peers' does;
//! loading the `.npy` files does not.
//!
//! The distributed line (the peers' xgboost.dask configuration): a
//! LocalCluster of 2 `rask` worker processes × 1 thread, X and y read from
//! the `.npy` files as 10 row blocks of 50 000 on the workers and persisted
//! there before timing; `seconds` covers `DistDMatrix` construction (on the
//! persisted blocks) and `xgboost::dist::train`, with the training set as
//! the evaluation set.

use std::path::Path;

use ndarray::{ArrayView1, ArrayView2};
use rask_core::array::npy::from_npy;
use rask_core::array::ChunkSpec;
use rask_integrations::xgboost::dist::{self, DistDMatrix};
use rask_integrations::xgboost::{dmatrix, train, Booster, DMatrix, XgbError};
use rask_ml::metrics::roc_auc;
use serde_json::{json, Map, Value};

use super::{measure, record, BenchEnv, BenchError};

const ROUNDS: usize = 100;

fn err(e: impl std::fmt::Display) -> BenchError {
    BenchError::Cluster { message: e.to_string() }
}

/// The peers' w5 parameters (XGBoost's names).
const PARAMS: [(&str, &str); 7] = [
    ("tree_method", "hist"),
    ("max_depth", "6"),
    ("eta", "0.3"),
    ("objective", "binary:logistic"),
    ("eval_metric", "logloss"),
    ("eval_metric", "auc"),
    ("nthread", "2"),
];

/// One training run, evaluated on the training set every round as the
/// peers' `evals=[(dtrain, 'train')]`: the booster, its DMatrix and the last
/// round's evaluation line.
fn run_once(x: ArrayView2<'_, f64>, y: &[f64]) -> Result<(Booster, DMatrix, String), XgbError> {
    let d = dmatrix(x, Some(y), 2)?;
    let trained = train(&d, &[(&d, "train")], &PARAMS, ROUNDS, None, |_| {})?;
    Ok((trained.booster, d, trained.last_eval))
}

/// `train-<metric>:<value>` out of an evaluation line.
fn metric(line: &str, name: &str) -> Option<f64> {
    line.split('\t').find_map(|f| f.strip_prefix(&format!("train-{name}:"))?.parse().ok())
}

/// Mean log-loss with probabilities clipped to [1e-15, 1 − 1e-15], as the
/// peers' `np_logloss` (`rask_ml::metrics::log_loss` clips at machine epsilon).
fn logloss(y: &[f64], p: &[f32]) -> f64 {
    let total: f64 = y
        .iter()
        .zip(p)
        .map(|(&t, &q)| {
            let q = f64::from(q).clamp(1e-15, 1.0 - 1e-15);
            -(t * q.ln() + (1.0 - t) * (1.0 - q).ln())
        })
        .sum();
    total / y.len() as f64
}

/// Runs w5: the single-process line, then the distributed one on a
/// LocalCluster started from `binary`.
pub fn run(
    env: &BenchEnv,
    data: &Path,
    binary: &Path,
    out: &mut dyn FnMut(Value),
) -> Result<(), BenchError> {
    let dir = data.join("xgb");
    let x = rask_core::npy::read_f64(&dir.join("X.npy")).map_err(err)?;
    let y = rask_core::npy::read_f64(&dir.join("y.npy")).map_err(err)?;
    let (rows, cols) = match x.shape[..] {
        [r, c] if y.shape == [r] => (r, c),
        _ => return Err(err(format!("X {:?} and y {:?} do not match", x.shape, y.shape))),
    };
    let xv = ArrayView2::from_shape((rows, cols), &x.data).map_err(err)?;
    // Every repeat builds its DMatrix from the f64 rows, as the peers' DMatrix(X, y) does.
    let mut first: Option<String> = None;
    let mut wrong = None;
    let (sec, runs, last) = measure(env.repeats, || {
        let r = run_once(xv, &y.data);
        match &r {
            // Every repeat is checked: the same model each time, and a fit.
            Ok((_, _, line)) => match (&first, metric(line, "logloss")) {
                (_, None) => {
                    wrong.get_or_insert(format!("no train-logloss in {line:?}"));
                }
                (Some(f), _) if f != line => {
                    wrong.get_or_insert(format!("repeats differ: {f:?} then {line:?}"));
                }
                (_, Some(l)) if !(l < 0.6) => {
                    wrong.get_or_insert(format!("train logloss {l}"));
                }
                _ => {
                    first.get_or_insert(line.clone());
                }
            },
            Err(e) => {
                wrong.get_or_insert(e.to_string());
            }
        }
        r
    });
    checked(wrong, "the same model every repeat, train logloss < 0.6")?;
    let (booster, d, line) =
        last.into_iter().next_back().ok_or_else(|| err("no repeat ran"))?.map_err(err)?;
    let (p, _) = booster.predict(&d, false).map_err(err)?;
    let config = json!({
        "tree_method": "hist", "max_depth": 6, "eta": 0.3, "objective": "binary:logistic",
        "eval_metric": ["logloss", "auc"], "rounds": ROUNDS, "nthread": 2,
        "xgboost_library": "libxgboost.so of xgboost-cpu 3.2.0, through rask::xgboost",
    });
    let mut m = Map::new();
    m.insert("train_logloss".into(), json!(metric(&line, "logloss")));
    m.insert("train_auc".into(), json!(metric(&line, "auc")));
    let p64: Vec<f64> = p.iter().map(|&v| f64::from(v)).collect();
    let auc = roc_auc(ArrayView1::from(&y.data), ArrayView1::from(&p64)).map_err(err)?;
    m.insert("train_logloss_recomputed".into(), json!(logloss(&y.data, &p)));
    m.insert("train_auc_recomputed".into(), json!(auc));
    m.insert("n_trees".into(), json!(booster.rounds().map_err(err)?));
    m.insert("note".into(), json!("single process through the C API"));
    let native = metric(&line, "logloss");
    out(record("w5_xgb", config, sec, &runs, m));
    run_distributed(env, &dir, binary, &y.data, native.unwrap_or(f64::NAN), xv, out)
}

/// The distributed line; every repeat's train log-loss must be within 5e-3
/// of the single-process one (`native`).
fn run_distributed(
    env: &BenchEnv,
    dir: &Path,
    binary: &Path,
    y: &[f64],
    native: f64,
    xv: ArrayView2<'_, f64>,
    out: &mut dyn FnMut(Value),
) -> Result<(), BenchError> {
    let (_cluster, client) = super::bench_cluster(binary)?;
    let rows = y.len();
    let row_chunks = ChunkSpec::Explicit(vec![block_rows(rows)]);
    let x = from_npy::<f64>(
        dir.join("X.npy"),
        ChunkSpec::Explicit(vec![block_rows(rows), vec![xv.ncols()]]),
    )
    .map_err(err)?;
    let ya = from_npy::<f64>(dir.join("y.npy"), row_chunks).map_err(err)?;
    // Read and persisted on the workers before timing, as the peers persist theirs.
    let persisted = DistDMatrix::new(&client, &x, &ya).map_err(err)?;
    let params: Vec<(String, String)> = PARAMS
        .iter()
        .filter(|(k, _)| *k != "nthread")
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut wrong = None;
    let (sec, runs, last) = measure(env.repeats, || {
        let r = DistDMatrix::new(&client, &x, &ya)
            .and_then(|d| dist::train(&client, &params, &d, ROUNDS, &[(&d, "train")], None));
        match &r {
            Ok(t) => match metric(&t.last_eval, "logloss") {
                Some(l) if (l - native).abs() <= 5e-3 => {}
                other => {
                    wrong.get_or_insert(format!("train logloss {other:?}, native {native}"));
                }
            },
            Err(e) => {
                wrong.get_or_insert(e.to_string());
            }
        }
        r
    });
    checked(wrong, "every repeat's train logloss within 5e-3 of the single process's")?;
    drop(persisted);
    let t = last.into_iter().next_back().ok_or_else(|| err("no repeat ran"))?.map_err(err)?;
    let d = dmatrix(xv, None, 2).map_err(err)?;
    let (p, _) = t.booster.predict(&d, false).map_err(err)?;
    let config = json!({
        "tree_method": "hist", "max_depth": 6, "eta": 0.3, "objective": "binary:logistic",
        "eval_metric": ["logloss", "auc"], "rounds": ROUNDS, "scheduler": "distributed",
        "n_workers": 2, "threads_per_worker": 1, "processes": true, "chunk_rows": 50_000,
        "ranks": t.ranks,
        "xgboost_library": "libxgboost.so of xgboost-cpu 3.2.0, through rask::xgboost::dist",
    });
    let mut m = Map::new();
    m.insert("train_logloss".into(), json!(metric(&t.last_eval, "logloss")));
    m.insert("train_auc".into(), json!(metric(&t.last_eval, "auc")));
    let p64: Vec<f64> = p.iter().map(|&v| f64::from(v)).collect();
    let auc = roc_auc(ArrayView1::from(y), ArrayView1::from(&p64)).map_err(err)?;
    m.insert("train_logloss_recomputed".into(), json!(logloss(y, &p)));
    m.insert("train_auc_recomputed".into(), json!(auc));
    m.insert("n_trees".into(), json!(t.booster.rounds().map_err(err)?));
    m.insert("native_train_logloss".into(), json!(native));
    m.insert(
        "note".into(),
        json!("gang of one XGBoost member per worker on the blocks it holds; quantile DMatrix built from the blocks in place; tracker in the client; X/y persisted before timing as the peers' are"),
    );
    out(record("w5_xgb", config, sec, &runs, m));
    Ok(())
}

/// The first wrong repeat, if any, as the benchmark's error.
fn checked(wrong: Option<String>, expected: &str) -> Result<(), BenchError> {
    match wrong {
        Some(got) => {
            Err(BenchError::WrongResult { workload: "w5_xgb", got, expected: expected.into() })
        }
        None => Ok(()),
    }
}

/// The peers' 50 000-row blocks.
fn block_rows(rows: usize) -> Vec<usize> {
    let mut v = vec![50_000; rows / 50_000];
    if rows % 50_000 > 0 {
        v.push(rows % 50_000);
    }
    v
}
