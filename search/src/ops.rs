//! The registered ops that a search graph is made of, and the values flowing
//! between them. They are registered by name, so a search graph runs on any
//! scheduler, a cluster's workers included.
//!
//! * `split_fold(data, cv, fold)`: the fold's train and test rows;
//! * `fit_transform(fold, step, raise)`: fits one transformer on the train rows
//!   and transforms both parts: one node per distinct pipeline prefix and fold;
//! * `fit_score(fold, step, spec)`: fits the final estimator and scores it.
//!
//! With `error_score` numeric, failures travel as data (`Fold::error`) so that
//! one bad candidate does not stop the search.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use ndarray::{Array1, Array2, Axis};
use rask_ml::model_selection::Splitter;
use rask_ml::{load, Estimator};
use serde::{Deserialize, Serialize};

/// The data searched over (one node, computed once, shared by every fold).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchData {
    /// Features.
    #[serde(with = "rask_core::raw_array")]
    pub x: Array2<f64>,
    /// Targets.
    #[serde(with = "rask_core::raw_array")]
    pub y: Array1<f64>,
}

/// One fold's data after the pipeline steps fitted so far. The arrays are
/// shared (`Arc`): a prefix's output feeds many candidates, and cloning the
/// value for each of them must not copy the data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fold {
    /// Train features (transformed by the fitted prefix).
    #[serde(with = "rask_core::raw_array::arc")]
    pub x_train: Arc<Array2<f64>>,
    /// Train targets.
    #[serde(with = "rask_core::raw_array::arc")]
    pub y_train: Arc<Array1<f64>>,
    /// Test features (transformed by the fitted prefix).
    #[serde(with = "rask_core::raw_array::arc")]
    pub x_test: Arc<Array2<f64>>,
    /// Test targets.
    #[serde(with = "rask_core::raw_array::arc")]
    pub y_test: Arc<Array1<f64>>,
    /// Seconds spent fitting the prefix.
    pub fit_time: f64,
    /// Why the prefix failed (with a numeric `error_score`).
    pub error: Option<String>,
}

/// An unfitted, configured estimator, as saved bytes (equal configurations are
/// equal bytes, hence equal graph keys).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepSpec(pub Vec<u8>);

/// How to score the final step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoreSpec {
    /// Scorer names.
    pub scorers: Vec<String>,
    /// Also score on the train rows.
    pub train: bool,
    /// `None`: failures fail the search; `Some(v)`: they score `v`.
    pub error_score: Option<f64>,
}

/// The outcome of one candidate on one fold.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FoldScore {
    /// Test score per scorer.
    pub test: Vec<f64>,
    /// Train score per scorer (empty unless asked).
    pub train: Vec<f64>,
    /// Seconds fitting the whole pipeline (prefix included, as if uncached).
    pub fit_time: f64,
    /// Seconds scoring.
    pub score_time: f64,
    /// Why it failed (with a numeric `error_score`).
    pub error: Option<String>,
}

/// Appends `type_name` to the file named by `RASK_FIT_LOG`, if set: the count
/// of fits each step type really executed (tests use it to check caching).
fn log_fit(type_name: &str) {
    if let Some(path) = std::env::var_os("RASK_FIT_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            // One short write per line: O_APPEND keeps lines whole across processes.
            let _ = f.write_all(format!("{type_name}\n").as_bytes());
        }
    }
}

fn step(spec: &StepSpec) -> Result<Box<dyn Estimator>, String> {
    load(&spec.0).map_err(|e| e.to_string())
}

rask_core::op! {
    /// The train and test rows of fold `fold` of `cv`.
    pub fn split_fold(data: SearchData, cv: Splitter, fold: u32) -> Result<Fold, String> {
        let splits = cv.split(data.x.nrows(), Some(data.y.view())).map_err(|e| e.to_string())?;
        let (train, test) = splits.get(fold as usize).ok_or_else(|| format!("fold {fold} of {} does not exist", splits.len()))?;
        Ok(Fold {
            x_train: Arc::new(data.x.select(Axis(0), train)),
            y_train: Arc::new(data.y.select(Axis(0), train)),
            x_test: Arc::new(data.x.select(Axis(0), test)),
            y_test: Arc::new(data.y.select(Axis(0), test)),
            fit_time: 0.0,
            error: None,
        })
    }

    /// Fits a transformer on the fold's train rows; transforms train and test.
    pub fn fit_transform(fold: Fold, spec: StepSpec, raise: bool) -> Result<Fold, String> {
        if fold.error.is_some() {
            return Ok(fold);
        }
        let run = || -> Result<(Array2<f64>, Array2<f64>, f64), String> {
            let mut est = step(&spec)?;
            let t = Instant::now();
            log_fit(est.type_name());
            est.fit(fold.x_train.view(), Some(fold.y_train.view())).map_err(|e| e.to_string())?;
            let xt = est.transform(fold.x_train.view()).map_err(|e| e.to_string())?;
            let fit_time = t.elapsed().as_secs_f64();
            let xs = est.transform(fold.x_test.view()).map_err(|e| e.to_string())?;
            Ok((xt, xs, fit_time))
        };
        match run() {
            Ok((x_train, x_test, t)) => {
                Ok(Fold { x_train: Arc::new(x_train), x_test: Arc::new(x_test), fit_time: fold.fit_time + t, ..fold })
            }
            Err(e) if raise => Err(e),
            Err(e) => Ok(Fold { error: Some(e), ..fold }),
        }
    }

    /// Fits the final estimator on the fold's train rows and scores it.
    pub fn fit_score(fold: Fold, spec: StepSpec, scoring: ScoreSpec) -> Result<FoldScore, String> {
        let failed = |error: String, fit_time: f64| -> Result<FoldScore, String> {
            match scoring.error_score {
                None => Err(error),
                Some(v) => Ok(FoldScore {
                    test: vec![v; scoring.scorers.len()],
                    train: if scoring.train { vec![v; scoring.scorers.len()] } else { vec![] },
                    fit_time,
                    score_time: 0.0,
                    error: Some(error),
                }),
            }
        };
        if let Some(e) = &fold.error {
            return failed(e.clone(), fold.fit_time);
        }
        let mut est = match step(&spec) {
            Ok(e) => e,
            Err(e) => return failed(e, fold.fit_time),
        };
        let t = Instant::now();
        log_fit(est.type_name());
        if let Err(e) = est.fit(fold.x_train.view(), Some(fold.y_train.view())) {
            return failed(e.to_string(), fold.fit_time + t.elapsed().as_secs_f64());
        }
        let fit_time = fold.fit_time + t.elapsed().as_secs_f64();
        let t = Instant::now();
        let score = |x: &Arc<Array2<f64>>, y: &Arc<Array1<f64>>| -> Result<Vec<f64>, String> {
            scoring.scorers.iter().map(|s| rask_ml::metrics::score(s, est.as_ref(), x.view(), y.view()).map_err(|e| e.to_string())).collect()
        };
        let test = match score(&fold.x_test, &fold.y_test) {
            Ok(s) => s,
            Err(e) => return failed(e, fit_time),
        };
        let score_time = t.elapsed().as_secs_f64();
        let train = if scoring.train {
            match score(&fold.x_train, &fold.y_train) {
                Ok(s) => s,
                Err(e) => return failed(e, fit_time),
            }
        } else {
            vec![]
        };
        Ok(FoldScore { test, train, fit_time, score_time, error: None })
    }
}
