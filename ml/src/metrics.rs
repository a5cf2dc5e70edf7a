//! Metrics and scorers, computed as scikit-learn computes them (tested to 1e-12
//! against its outputs).

use ndarray::{ArrayView1, ArrayView2};

use crate::error::MlError;
use crate::estimator::{canonical, Estimator};

fn sorted_labels(a: ArrayView1<'_, f64>, b: ArrayView1<'_, f64>) -> Vec<f64> {
    let mut l: Vec<f64> = a.iter().chain(b.iter()).map(|&v| canonical(v)).collect();
    l.sort_by(f64::total_cmp);
    l.dedup();
    l
}

/// Fraction of exact matches.
pub fn accuracy(y_true: ArrayView1<'_, f64>, y_pred: ArrayView1<'_, f64>) -> f64 {
    let n = y_true.len();
    if n == 0 {
        return f64::NAN;
    }
    y_true.iter().zip(y_pred.iter()).filter(|(a, b)| a == b).count() as f64 / n as f64
}

/// Per-class (true positives, predicted count, true count) over the union of labels.
fn class_counts(
    y_true: ArrayView1<'_, f64>,
    y_pred: ArrayView1<'_, f64>,
) -> (Vec<f64>, Vec<[f64; 3]>) {
    let labels = sorted_labels(y_true, y_pred);
    let idx =
        |v: &f64| labels.binary_search_by(|c| c.total_cmp(&canonical(*v))).expect("label in union");
    let mut counts = vec![[0.0; 3]; labels.len()];
    for (t, p) in y_true.iter().zip(y_pred.iter()) {
        let (ti, pi) = (idx(t), idx(p));
        counts[ti][2] += 1.0;
        counts[pi][1] += 1.0;
        if ti == pi {
            counts[ti][0] += 1.0;
        }
    }
    (labels, counts)
}

/// Mean of the per-class recalls (classes present in `y_true`).
pub fn balanced_accuracy(y_true: ArrayView1<'_, f64>, y_pred: ArrayView1<'_, f64>) -> f64 {
    let (_, counts) = class_counts(y_true, y_pred);
    let recalls: Vec<f64> = counts.iter().filter(|c| c[2] > 0.0).map(|c| c[0] / c[2]).collect();
    recalls.iter().sum::<f64>() / recalls.len() as f64
}

/// How precision, recall and F1 combine over classes (scikit-learn's `average`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Average {
    /// The score of the positive class only.
    Binary {
        /// The positive label.
        pos_label: f64,
    },
    /// Unweighted mean over classes.
    Macro,
    /// Mean weighted by class support.
    Weighted,
    /// Global counts.
    Micro,
}

/// Precision, recall and F1 (zero where undefined, as scikit-learn's `zero_division=0`).
pub fn precision_recall_f1(
    y_true: ArrayView1<'_, f64>,
    y_pred: ArrayView1<'_, f64>,
    average: Average,
) -> (f64, f64, f64) {
    let (labels, counts) = class_counts(y_true, y_pred);
    let div = |a: f64, b: f64| if b == 0.0 { 0.0 } else { a / b };
    let prf = |tp: f64, pred: f64, truth: f64| {
        let p = div(tp, pred);
        let r = div(tp, truth);
        // scikit-learn computes F1 as 2·tp / (pred + truth).
        (p, r, div(2.0 * tp, pred + truth))
    };
    match average {
        Average::Binary { pos_label } => match labels.iter().position(|&l| l == pos_label) {
            Some(i) => prf(counts[i][0], counts[i][1], counts[i][2]),
            None => (0.0, 0.0, 0.0),
        },
        Average::Micro => {
            let tp: f64 = counts.iter().map(|c| c[0]).sum();
            let pred: f64 = counts.iter().map(|c| c[1]).sum();
            let truth: f64 = counts.iter().map(|c| c[2]).sum();
            prf(tp, pred, truth)
        }
        Average::Macro | Average::Weighted => {
            let per: Vec<((f64, f64, f64), f64)> =
                counts.iter().map(|c| (prf(c[0], c[1], c[2]), c[2])).collect();
            let weights: Vec<f64> = match average {
                Average::Macro => vec![1.0; per.len()],
                _ => per.iter().map(|(_, s)| *s).collect(),
            };
            let total: f64 = weights.iter().sum();
            let avg = |f: fn(&(f64, f64, f64)) -> f64| {
                per.iter().zip(&weights).map(|(p, w)| f(&p.0) * w).sum::<f64>() / total
            };
            (avg(|t| t.0), avg(|t| t.1), avg(|t| t.2))
        }
    }
}

/// Area under the ROC curve of a binary problem: `y_true` holds two labels (the
/// larger is positive), `score` the positive class's score. Ties count one half.
pub fn roc_auc(y_true: ArrayView1<'_, f64>, score: ArrayView1<'_, f64>) -> Result<f64, MlError> {
    let labels = sorted_labels(y_true, y_true);
    if labels.len() != 2 {
        return Err(MlError::Labels {
            estimator: "roc_auc".into(),
            message: format!("ROC AUC needs exactly 2 classes in y_true, found {}", labels.len()),
        });
    }
    let pos = labels[1];
    // Average ranks of the scores (ties share their mean rank).
    let mut order: Vec<usize> = (0..score.len()).collect();
    order.sort_by(|&a, &b| score[a].total_cmp(&score[b]));
    let mut ranks = vec![0.0; score.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && score[order[j + 1]] == score[order[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = r;
        }
        i = j + 1;
    }
    let n_pos = y_true.iter().filter(|&&v| v == pos).count() as f64;
    let n_neg = y_true.len() as f64 - n_pos;
    let rank_sum: f64 = y_true.iter().zip(&ranks).filter(|(&t, _)| t == pos).map(|(_, r)| r).sum();
    Ok((rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg))
}

/// Mean cross-entropy of probabilities `proba` (n × classes, columns in the order
/// of `classes`), clipped to `[eps, 1 - eps]` with `eps` the f64 machine epsilon.
pub fn log_loss(
    y_true: ArrayView1<'_, f64>,
    proba: ArrayView2<'_, f64>,
    classes: &[f64],
) -> Result<f64, MlError> {
    if proba.ncols() != classes.len() || proba.nrows() != y_true.len() {
        return Err(MlError::Shape {
            estimator: "log_loss".into(),
            message: format!(
                "probabilities have shape ({}, {}) for {} samples and {} classes",
                proba.nrows(),
                proba.ncols(),
                y_true.len(),
                classes.len()
            ),
        });
    }
    let eps = f64::EPSILON;
    let mut total = 0.0;
    for (i, t) in y_true.iter().enumerate() {
        let c = classes.iter().position(|c| c == t).ok_or_else(|| MlError::Labels {
            estimator: "log_loss".into(),
            message: format!(
                "y_true contains label {t}, which is not among the classes {classes:?}"
            ),
        })?;
        total -= proba[[i, c]].clamp(eps, 1.0 - eps).ln();
    }
    Ok(total / y_true.len() as f64)
}

/// Coefficient of determination.
pub fn r2(y_true: ArrayView1<'_, f64>, y_pred: ArrayView1<'_, f64>) -> f64 {
    let mean = y_true.mean().unwrap_or(f64::NAN);
    let ss_res: f64 = y_true.iter().zip(y_pred.iter()).map(|(t, p)| (t - p) * (t - p)).sum();
    let ss_tot: f64 = y_true.iter().map(|t| (t - mean) * (t - mean)).sum();
    if ss_tot == 0.0 {
        // scikit-learn: perfect predictions score 1, others 0, for a constant target.
        return if ss_res == 0.0 { 1.0 } else { 0.0 };
    }
    1.0 - ss_res / ss_tot
}

/// Mean squared error.
pub fn mean_squared_error(y_true: ArrayView1<'_, f64>, y_pred: ArrayView1<'_, f64>) -> f64 {
    y_true.iter().zip(y_pred.iter()).map(|(t, p)| (t - p) * (t - p)).sum::<f64>()
        / y_true.len() as f64
}

/// Mean absolute error.
pub fn mean_absolute_error(y_true: ArrayView1<'_, f64>, y_pred: ArrayView1<'_, f64>) -> f64 {
    y_true.iter().zip(y_pred.iter()).map(|(t, p)| (t - p).abs()).sum::<f64>() / y_true.len() as f64
}

/// Scorer names, as in scikit-learn (greater is better).
pub const SCORERS: &[&str] = &[
    "accuracy",
    "balanced_accuracy",
    "f1",
    "f1_macro",
    "precision",
    "recall",
    "roc_auc",
    "neg_log_loss",
    "r2",
    "neg_mean_squared_error",
    "neg_mean_absolute_error",
];

/// Checks that `name` is a scorer.
pub fn check_scorer(name: &str) -> Result<(), MlError> {
    if SCORERS.contains(&name) {
        Ok(())
    } else {
        Err(MlError::UnknownScorer {
            name: name.into(),
            known: SCORERS.iter().map(|s| s.to_string()).collect(),
        })
    }
}

/// Scores a fitted estimator on `(x, y)` with the named scorer.
pub fn score(
    name: &str,
    est: &dyn Estimator,
    x: ArrayView2<'_, f64>,
    y: ArrayView1<'_, f64>,
) -> Result<f64, MlError> {
    check_scorer(name)?;
    let pos_label = || est.classes().and_then(|c| c.last().copied()).unwrap_or(1.0);
    Ok(match name {
        "accuracy" => accuracy(y, est.predict(x)?.view()),
        "balanced_accuracy" => balanced_accuracy(y, est.predict(x)?.view()),
        "f1" => {
            precision_recall_f1(
                y,
                est.predict(x)?.view(),
                Average::Binary { pos_label: pos_label() },
            )
            .2
        }
        "f1_macro" => precision_recall_f1(y, est.predict(x)?.view(), Average::Macro).2,
        "precision" => {
            precision_recall_f1(
                y,
                est.predict(x)?.view(),
                Average::Binary { pos_label: pos_label() },
            )
            .0
        }
        "recall" => {
            precision_recall_f1(
                y,
                est.predict(x)?.view(),
                Average::Binary { pos_label: pos_label() },
            )
            .1
        }
        "roc_auc" => {
            let p = est.predict_proba(x)?;
            roc_auc(y, p.column(p.ncols() - 1))?
        }
        "neg_log_loss" => {
            let classes = est.classes().ok_or_else(|| MlError::NotSupported {
                estimator: est.type_name().into(),
                method: "neg_log_loss (needs a classifier)".into(),
            })?;
            -log_loss(y, est.predict_proba(x)?.view(), &classes)?
        }
        "r2" => r2(y, est.predict(x)?.view()),
        "neg_mean_squared_error" => -mean_squared_error(y, est.predict(x)?.view()),
        "neg_mean_absolute_error" => -mean_absolute_error(y, est.predict(x)?.view()),
        _ => unreachable!("checked above"),
    })
}
