//! Training in this process: a DMatrix from f64 rows (checked first), and
//! the boosting loop with per-round evaluation and early stopping, shared by
//! the estimators, `rask xgb --spec` and `rask bench w5`.

use ndarray::ArrayView2;

use super::ffi::{Booster, DMatrix};
use super::XgbError;
use rask_ml::error::did_you_mean;

/// `x` (and its labels) as XGBoost's f32 matrix, built with `threads`
/// threads (0: every core). Zero rows and NaN labels are refused here, with
/// the row, before XGBoost sees them.
pub fn dmatrix(
    x: ArrayView2<'_, f64>,
    labels: Option<&[f64]>,
    threads: usize,
) -> Result<DMatrix, XgbError> {
    let data_err = |message: String| XgbError::Param { name: "data".into(), message };
    if x.nrows() == 0 {
        return Err(data_err("X has no rows".into()));
    }
    let data: Vec<f32> = x.as_standard_layout().iter().map(|&v| v as f32).collect();
    let mut d = DMatrix::from_dense(&data, x.nrows(), x.ncols(), threads)?;
    if let Some(labels) = labels {
        if labels.len() != x.nrows() {
            return Err(data_err(format!("{} labels for {} rows of X", labels.len(), x.nrows())));
        }
        if let Some(row) = labels.iter().position(|v| v.is_nan()) {
            return Err(data_err(format!("the label of row {row} is NaN")));
        }
        d.set_info("label", &labels.iter().map(|&v| v as f32).collect::<Vec<_>>())?;
    }
    Ok(d)
}

/// How a training run ended.
pub struct Trained {
    /// The model (after an early stop, the rounds up to the best one).
    pub booster: Booster,
    /// The last round's evaluation line (empty without evaluation sets).
    pub last_eval: String,
    /// After an early stop: the round it stopped at, and the best round
    /// with the watched metric's name and value.
    pub early_stop: Option<(usize, usize, String, f64)>,
}

/// The best round so far of the watched metric: `(round, metric, value)`.
/// Kept in checkpoints, so a restarted run stops where an uninterrupted one would.
pub type Best = Option<(usize, String, f64)>;

/// Boosts `rounds` rounds of `params` on `dtrain`, evaluating `evals` after
/// every round (each line goes to `on_round`). With `early_stopping`, the
/// last metric of the last evaluation set is watched (as xgboost does):
/// training stops when it has not improved for that many rounds, and the
/// model keeps the rounds up to the best one.
pub fn train<K: AsRef<str>, V: AsRef<str>>(
    dtrain: &DMatrix,
    evals: &[(&DMatrix, &str)],
    params: &[(K, V)],
    rounds: usize,
    early_stopping: Option<usize>,
    mut on_round: impl FnMut(&str),
) -> Result<Trained, XgbError> {
    let booster = new_booster(dtrain, evals, params)?;
    boost(booster, dtrain, evals, 0..rounds, early_stopping, None, |_, line, _, _| {
        if !line.is_empty() {
            on_round(line);
        }
        Ok(())
    })
}

/// A booster caching `dtrain` and `evals`, with `params` set.
pub fn new_booster<K: AsRef<str>, V: AsRef<str>>(
    dtrain: &DMatrix,
    evals: &[(&DMatrix, &str)],
    params: &[(K, V)],
) -> Result<Booster, XgbError> {
    let mut cache = vec![dtrain];
    cache.extend(evals.iter().map(|(d, _)| *d));
    let mut booster = Booster::new(&cache)?;
    // As Python's package does: XGBoost then reports parameters it does not
    // use (which `boost` turns into an error).
    booster.set_param("validate_parameters", "1")?;
    for (name, value) in params {
        booster.set_param(name.as_ref(), value.as_ref())?;
    }
    Ok(booster)
}

/// The boosting loop over `rounds` (a range, so a run resumed from a
/// checkpoint continues where it was), with the early-stopping state `best`
/// carried in. After each round `after_round(round, eval line, booster,
/// best)` runs (progress, checkpoints); its error ends training.
pub fn boost(
    mut booster: Booster,
    dtrain: &DMatrix,
    evals: &[(&DMatrix, &str)],
    rounds: std::ops::Range<usize>,
    early_stopping: Option<usize>,
    mut best: Best,
    mut after_round: impl FnMut(usize, &str, &Booster, &Best) -> Result<(), XgbError>,
) -> Result<Trained, XgbError> {
    let watched = evals.last().map(|(_, name)| format!("{name}-"));
    let mut last_eval = String::new();
    let first = rounds.start;
    for round in rounds {
        if round == first {
            // XGBoost configures itself at the first update and only warns
            // about parameters it does not use: here that is an error.
            let (r, log) = super::ffi::capture_log(|| booster.update(round, dtrain));
            r?;
            unused_params(&booster, &log)?;
        } else {
            booster.update(round, dtrain)?;
        }
        if !evals.is_empty() {
            last_eval = booster.eval(round, evals)?;
        }
        if let (Some(_), Some(prefix)) = (early_stopping, &watched) {
            let (name, value) = last_eval
                .split('\t')
                .rev()
                .find_map(|f| f.strip_prefix(prefix.as_str())?.split_once(':'))
                .and_then(|(n, v)| Some((n.to_string(), v.parse::<f64>().ok()?)))
                .ok_or_else(|| XgbError::Param {
                    name: "eval_metric".into(),
                    message: format!("no metric to watch in {last_eval:?}"),
                })?;
            let maximize =
                ["auc", "aucpr", "map", "ndcg", "pre"].iter().any(|m| name.starts_with(m));
            let better = best
                .as_ref()
                .is_none_or(|(_, _, b)| if maximize { value > *b } else { value < *b });
            if better {
                best = Some((round, name, value));
            }
        }
        after_round(round, &last_eval, &booster, &best)?;
        if let (Some(patience), Some((b, ..))) = (early_stopping, &best) {
            if round - b >= patience {
                let (b, name, value) = best.expect("matched above");
                return Ok(Trained {
                    booster: booster.slice(0, b + 1)?,
                    last_eval,
                    early_stop: Some((round, b, name, value)),
                });
            }
        }
    }
    Ok(Trained { booster, last_eval, early_stop: None })
}

/// XGBoost's "Parameters: { "x", "y" } are not used." warning, as an error
/// naming the first such parameter, with the closest name it knows.
fn unused_params(booster: &Booster, log: &[String]) -> Result<(), XgbError> {
    let Some(line) = log.iter().find(|l| l.contains("are not used")) else { return Ok(()) };
    let inside = line.split_once('{').and_then(|(_, r)| r.split_once('}')).map_or("", |(i, _)| i);
    let names: Vec<&str> =
        inside.split(',').map(|n| n.trim().trim_matches('"')).filter(|n| !n.is_empty()).collect();
    let Some(first) = names.first() else { return Ok(()) };
    // Every parameter name XGBoost reports in its configuration.
    let config = booster.config().unwrap_or_default();
    let known: Vec<&str> = config
        .split('"')
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[1].trim_start().starts_with(':'))
        .map(|w| w[0])
        .collect();
    Err(XgbError::Param {
        name: first.to_string(),
        message: format!(
            "XGBoost does not use {} (it only warns); remove {} or check the spelling{}",
            if names.len() == 1 { "this parameter".to_string() } else { format!("{names:?}") },
            if names.len() == 1 { "it" } else { "them" },
            did_you_mean(first, &known)
        ),
    })
}
