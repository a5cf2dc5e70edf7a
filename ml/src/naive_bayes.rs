//! Gaussian naive Bayes, as scikit-learn's `GaussianNB`: per-class means
//! and variances (two passes over each class's rows), every variance
//! increased by `var_smoothing` times the largest feature variance, class
//! priors from the counts, and the joint log-likelihood for predictions.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::error::MlError;
use crate::estimator::{argmax, encode_classes, require_y, FitParams, FittedModel, Kind, Output};
use crate::params::Checked;

crate::params! {
    /// Hyperparameters of [`GaussianNB`].
    pub struct GaussianNbParams for "GaussianNB" {
        /// Share of the largest feature variance added to every variance, for stability.
        var_smoothing ("var_smoothing"): f64 = 1e-9, valid if |v| *v >= 0.0, "a number >= 0";
    }
}

/// A fitted Gaussian naive Bayes model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FittedGaussianNb {
    /// Sorted class labels.
    pub classes: Vec<f64>,
    /// Per-class feature means (scikit-learn's `theta_`).
    pub theta: Array2<f64>,
    /// Per-class feature variances, smoothed (`var_`).
    pub var: Array2<f64>,
    /// Class priors (`class_prior_`).
    pub prior: Array1<f64>,
}

impl FitParams for GaussianNbParams {
    type Fitted = FittedGaussianNb;

    fn fit(
        params: &Checked<Self>,
        x: ArrayView2<'_, f64>,
        y: Option<ArrayView1<'_, f64>>,
    ) -> Result<FittedGaussianNb, MlError> {
        let name = "GaussianNB";
        let (classes, idx) = encode_classes(name, require_y(name, y)?)?;
        let (n, p) = x.dim();
        let k = classes.len();
        let mut counts = vec![0usize; k];
        let mut theta = Array2::<f64>::zeros((k, p));
        for (row, &c) in x.rows().into_iter().zip(&idx) {
            counts[c] += 1;
            theta.row_mut(c).scaled_add(1.0, &row);
        }
        for (mut t, &c) in theta.rows_mut().into_iter().zip(&counts) {
            t /= c as f64;
        }
        let mut var = Array2::<f64>::zeros((k, p));
        let all_mean = x.mean_axis(Axis(0)).expect("checked non-empty");
        let mut all_var = Array1::<f64>::zeros(p);
        for (row, &c) in x.rows().into_iter().zip(&idx) {
            let mut v = var.row_mut(c);
            let t = theta.row(c);
            for j in 0..p {
                let d = row[j] - t[j];
                v[j] += d * d;
                let e = row[j] - all_mean[j];
                all_var[j] += e * e;
            }
        }
        let epsilon = params.var_smoothing * all_var.fold(0.0f64, |m, &v| m.max(v / n as f64));
        for (mut v, &c) in var.rows_mut().into_iter().zip(&counts) {
            v.mapv_inplace(|s| s / c as f64 + epsilon);
        }
        let prior = counts.iter().map(|&c| c as f64 / n as f64).collect();
        Ok(FittedGaussianNb { classes, theta, var, prior })
    }
}

impl FittedGaussianNb {
    /// scikit-learn's `_joint_log_likelihood`: `ln P(c) + Σⱼ ln N(xⱼ; θ_cj, σ²_cj)`.
    fn joint_log_likelihood(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        let k = self.classes.len();
        let mut out = Array2::<f64>::zeros((x.nrows(), k));
        for c in 0..k {
            let (t, v) = (self.theta.row(c), self.var.row(c));
            let norm: f64 =
                -0.5 * v.iter().map(|s| (2.0 * std::f64::consts::PI * s).ln()).sum::<f64>();
            let inv: Vec<f64> = v.iter().map(|s| 1.0 / s).collect();
            let base = self.prior[c].ln() + norm;
            for (i, row) in x.rows().into_iter().enumerate() {
                let q: f64 =
                    row.iter().zip(t).zip(&inv).map(|((a, m), iv)| (a - m) * (a - m) * iv).sum();
                out[[i, c]] = base - 0.5 * q;
            }
        }
        out
    }
}

impl FittedModel for FittedGaussianNb {
    fn n_features(&self) -> usize {
        self.theta.ncols()
    }
    fn predict(&self, x: ArrayView2<'_, f64>) -> Output<Array1<f64>> {
        let jll = self.joint_log_likelihood(x);
        Some(Ok(jll.rows().into_iter().map(|r| self.classes[argmax(r)]).collect()))
    }
    fn predict_proba(&self, x: ArrayView2<'_, f64>) -> Output<Array2<f64>> {
        let mut p = self.joint_log_likelihood(x);
        crate::estimator::softmax_rows(&mut p);
        Some(Ok(p))
    }
    fn classes(&self) -> Option<&[f64]> {
        Some(&self.classes)
    }
}

crate::estimator! {
    /// Gaussian naive Bayes classifier (see [`GaussianNbParams`]).
    GaussianNB, GaussianNbParams, FittedGaussianNb, "GaussianNB", Kind::Classifier
}
