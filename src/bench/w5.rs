//! W5 `w5_xgb`: gradient-boosted trees on the `xgb` data set (500 000 × 20;
//! see `../shared/peers/README.md`): `tree_method=hist`, `max_depth=6`,
//! `eta=0.3`, `binary:logistic`, logloss and AUC evaluated on the training
//! set every round, 100 rounds, through the real libxgboost in this process
//! with `nthread=2` (the peers' single-process configuration). `seconds`
//! covers the DMatrix construction and the training, as the peers' does;
//! loading the `.npy` files does not. Distributed training (the peers'
//! xgboost.dask line) is not built yet.

use std::path::Path;

use rask_integrations::xgboost::{Booster, DMatrix, XgbError};
use serde_json::{json, Map, Value};

use super::{measure, record, BenchEnv, BenchError};

const ROUNDS: usize = 100;

fn err(e: impl std::fmt::Display) -> BenchError {
    BenchError::Cluster { message: e.to_string() }
}

/// One training run: the booster and the last round's evaluation line.
fn train(
    x: &[f32],
    rows: usize,
    cols: usize,
    y: &[f32],
) -> Result<(Booster, DMatrix, String), XgbError> {
    let mut d = DMatrix::from_dense(x, rows, cols, 2)?;
    d.set_info("label", y)?;
    let mut b = Booster::new(&[&d])?;
    for (k, v) in [
        ("tree_method", "hist"),
        ("max_depth", "6"),
        ("eta", "0.3"),
        ("objective", "binary:logistic"),
        ("eval_metric", "logloss"),
        ("eval_metric", "auc"),
        ("nthread", "2"),
    ] {
        b.set_param(k, v)?;
    }
    let mut line = String::new();
    for round in 0..ROUNDS {
        b.update(round, &d)?;
        line = b.eval(round, &[(&d, "train")])?;
    }
    Ok((b, d, line))
}

/// `train-<metric>:<value>` out of an evaluation line.
fn metric(line: &str, name: &str) -> Option<f64> {
    line.split('\t').find_map(|f| f.strip_prefix(&format!("train-{name}:"))?.parse().ok())
}

/// Mean log-loss with probabilities clipped to [1e-15, 1 − 1e-15].
fn logloss(y: &[f32], p: &[f32]) -> f64 {
    let total: f64 = y
        .iter()
        .zip(p)
        .map(|(&t, &q)| {
            let q = f64::from(q).clamp(1e-15, 1.0 - 1e-15);
            -(f64::from(t) * q.ln() + (1.0 - f64::from(t)) * (1.0 - q).ln())
        })
        .sum();
    total / y.len() as f64
}

/// Exact ROC AUC, ties given their average rank.
fn auc(y: &[f32], p: &[f32]) -> f64 {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut ranks = vec![0.0; p.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && p[order[j + 1]] == p[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        order[i..=j].iter().for_each(|&k| ranks[k] = rank);
        i = j + 1;
    }
    let pos = y.iter().filter(|&&t| t == 1.0).count() as f64;
    let neg = y.len() as f64 - pos;
    let sum: f64 = y.iter().zip(&ranks).filter(|(&t, _)| t == 1.0).map(|(_, r)| r).sum();
    (sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

/// Runs w5 (single process).
pub fn run(env: &BenchEnv, data: &Path, out: &mut dyn FnMut(Value)) -> Result<(), BenchError> {
    let dir = data.join("xgb");
    let x = rask_core::npy::read_f64(&dir.join("X.npy")).map_err(err)?;
    let y = rask_core::npy::read_f64(&dir.join("y.npy")).map_err(err)?;
    let (rows, cols) = match x.shape[..] {
        [r, c] if y.shape == [r] => (r, c),
        _ => return Err(err(format!("X {:?} and y {:?} do not match", x.shape, y.shape))),
    };
    let yf: Vec<f32> = y.data.iter().map(|&v| v as f32).collect();
    // Every repeat converts from f64 like the peers' DMatrix(X, y) does.
    let mut first: Option<String> = None;
    let mut wrong = None;
    let (sec, runs, last) = measure(env.repeats, || {
        let xf: Vec<f32> = x.data.iter().map(|&v| v as f32).collect();
        let r = train(&xf, rows, cols, &yf);
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
    if let Some(got) = wrong {
        return Err(BenchError::WrongResult {
            workload: "w5_xgb",
            got,
            expected: "the same model every repeat, train logloss < 0.6".into(),
        });
    }
    let (booster, d, line) = last.map_err(err)?;
    let (p, _) = booster.predict(&d, false).map_err(err)?;
    let config = json!({
        "tree_method": "hist", "max_depth": 6, "eta": 0.3, "objective": "binary:logistic",
        "eval_metric": ["logloss", "auc"], "rounds": ROUNDS, "nthread": 2,
        "xgboost_library": "libxgboost.so of xgboost-cpu 3.2.0, through rask::xgboost",
    });
    let mut m = Map::new();
    m.insert("train_logloss".into(), json!(metric(&line, "logloss")));
    m.insert("train_auc".into(), json!(metric(&line, "auc")));
    m.insert("train_logloss_recomputed".into(), json!(logloss(&yf, &p)));
    m.insert("train_auc_recomputed".into(), json!(auc(&yf, &p)));
    m.insert("n_trees".into(), json!(booster.rounds().map_err(err)?));
    m.insert(
        "note".into(),
        json!("single process through the C API; distributed training is not built yet (issue 13)"),
    );
    out(record("w5_xgb", config, sec, &runs, m));
    Ok(())
}
