//! W5 `w5_xgb`: gradient-boosted trees on the `xgb` data set (500 000 × 20;
//! see `../shared/peers/README.md`): `tree_method=hist`, `max_depth=6`,
//! `eta=0.3`, `binary:logistic`, logloss and AUC evaluated on the training
//! set every round, 100 rounds, through the real libxgboost in this process
//! with `nthread=2` (the peers' single-process configuration). `seconds`
//! covers the DMatrix construction and the training, as the peers' does;
//! loading the `.npy` files does not. Distributed training (the peers'
//! xgboost.dask line) is not built yet.

use std::path::Path;

use ndarray::{ArrayView1, ArrayView2};
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

/// Runs w5 (single process).
pub fn run(env: &BenchEnv, data: &Path, out: &mut dyn FnMut(Value)) -> Result<(), BenchError> {
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
    let p64: Vec<f64> = p.iter().map(|&v| f64::from(v)).collect();
    let auc = roc_auc(ArrayView1::from(&y.data), ArrayView1::from(&p64)).map_err(err)?;
    m.insert("train_logloss_recomputed".into(), json!(logloss(&y.data, &p)));
    m.insert("train_auc_recomputed".into(), json!(auc));
    m.insert("n_trees".into(), json!(booster.rounds().map_err(err)?));
    m.insert(
        "note".into(),
        json!("single process through the C API; distributed training is not built yet (issue 13)"),
    );
    out(record("w5_xgb", config, sec, &runs, m));
    Ok(())
}
