//! W3 `w3_search`: grid search over StandardScaler → PCA → LogisticRegression
//! on clf_small (see `../shared/peers/README.md`). `seconds` covers the search
//! and the refit; the data is loaded before timing.

use std::path::Path;

use rask_core::{ComputeOptions, Scheduler};
use rask_ml::datasets::load_npy_xy;
use rask_ml::model_selection::Splitter;
use rask_ml::{create, ParamValue, Pipeline};
use rask_search::results::params_json;
use rask_search::{grid, Cv, GridSearchCV, SearchCV, SearchResult};
use serde_json::{json, Map, Value};

use super::{every_repeat, measure_cold, record, BenchEnv, BenchError};

/// scikit-learn's mean test scores on w3 (the peers' reference run), for the accuracy check.
const SKLEARN: &str = include_str!("../../tests/fixtures/search/w3_sklearn.json");

/// The w3 search.
pub fn w3_search() -> Result<SearchCV, BenchError> {
    let ml = |e: rask_ml::MlError| BenchError::Cluster { message: e.to_string() };
    let mut lr = create("LogisticRegression").map_err(ml)?;
    lr.set_param("max_iter", ParamValue::I64(1000)).map_err(ml)?;
    let pipe = Pipeline::of(vec![
        ("scaler", create("StandardScaler").map_err(ml)?),
        ("pca", create("PCA").map_err(ml)?),
        ("logreg", lr),
    ])
    .map_err(ml)?;
    Ok(GridSearchCV::new(
        Box::new(pipe),
        vec![grid(vec![
            ("pca__n_components", [5i64, 10, 20, 30].into_iter().map(ParamValue::I64).collect()),
            (
                "logreg__C",
                [0.001, 0.01, 0.1, 1.0, 10.0, 100.0].into_iter().map(ParamValue::F64).collect(),
            ),
        ])],
    )
    .cv(Cv::Splitter(Splitter::kfold(5)))
    .scoring(&["accuracy"]))
}

fn report(config: Map<String, Value>, sec: f64, runs: &[f64], r: &SearchResult) -> Value {
    let reference: Value = serde_json::from_str(SKLEARN).expect("embedded fixture");
    let means = r.cv_results.mean_test(0);
    let max_diff = reference["mean_test_score"].as_array().map(|w| {
        w.iter()
            .zip(&means)
            .map(|(a, b)| (a.as_f64().unwrap_or(f64::NAN) - b).abs())
            .fold(0.0, f64::max)
    });
    let params: Vec<Value> = r.cv_results.params.iter().map(params_json).collect();
    let mut m = Map::new();
    m.insert("n_candidates".into(), json!(r.cv_results.n_candidates()));
    m.insert("n_splits".into(), json!(r.cv_results.n_splits()));
    m.insert("n_fits".into(), json!(r.cv_results.n_candidates() * r.cv_results.n_splits()));
    m.insert(
        "n_fits_incl_refit".into(),
        json!(r.cv_results.n_candidates() * r.cv_results.n_splits() + 1),
    );
    m.insert("n_tasks".into(), json!(r.n_tasks));
    m.insert("best_params_".into(), params_json(&r.best_params));
    m.insert("best_score_".into(), json!(r.best_score));
    m.insert("params".into(), json!(params));
    m.insert("mean_test_score".into(), json!(means));
    m.insert("max_abs_diff_mean_test_score_vs_sklearn".into(), json!(max_diff));
    record("w3_search", Value::Object(config), sec, runs, m)
}

/// Runs w3 on the threaded scheduler (2 threads, like the peers) or on `scheduler`.
pub fn run(
    env: &BenchEnv,
    data: &Path,
    cluster: Option<&rask_distributed::Client>,
    out: &mut dyn FnMut(Value),
) -> Result<(), BenchError> {
    let dir = data.join("clf_small");
    let (x, y) = load_npy_xy(dir.join("X.npy"), dir.join("y.npy"))
        .map_err(|e| BenchError::Cluster { message: e.to_string() })?;
    let search = w3_search()?;
    let (scheduler, mut config) = match cluster {
        None => {
            let mut c = Map::new();
            c.insert("scheduler".into(), json!("threads"));
            c.insert("num_workers".into(), json!(2));
            (Scheduler::threads_n(2), c)
        }
        Some(client) => {
            let mut c = Map::new();
            c.insert("scheduler".into(), json!("distributed"));
            c.insert("n_workers".into(), json!(2));
            c.insert("threads_per_worker".into(), json!(1));
            c.insert("processes".into(), json!(true));
            c.insert("before_each_repeat".into(), json!("worker fetch caches dropped"));
            (client.scheduler(), c)
        }
    };
    config.insert("system_detail".into(), json!("rask GridSearchCV (prefix-cached graph)"));
    // On a cluster, no worker keeps fetched copies from the previous repeat.
    let reset = || {
        if let Some(c) = cluster {
            let _ = c.drop_worker_caches();
        }
    };
    let (sec, runs, r) = measure_cold(env.repeats, reset, || {
        search.fit_with(&x, &y, &scheduler, &ComputeOptions::new())
    });
    // Every repeat is a fresh search (nothing cached between them) and must
    // give the same scores.
    let r = every_repeat("w3_search", r, |a, b| {
        a.cv_results.split_test == b.cv_results.split_test && a.best_params == b.best_params
    })?;
    out(report(config, sec, &runs, &r));
    Ok(())
}
