//! Support vector classifiers (linfa-svm's SMO solver).
//!
//! linfa-svm solves binary problems; more classes are handled one-vs-one with
//! voting, as scikit-learn's `SVC` does (ties go to the smaller class).
//! `LinearSVC` here is the linear-kernel SVC (hinge loss, SMO); scikit-learn's
//! `LinearSVC` minimizes the squared hinge loss with liblinear, so its
//! coefficients differ slightly while predictions agree on all but
//! near-boundary points (the reference test states the tolerance).

use linfa::prelude::*;
use linfa_svm::Svm;
use ndarray::{Array1, ArrayView1, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::error::MlError;
use crate::estimator::{encode_classes, require_y, FitParams, FittedModel, Kind, Output};
use crate::params::Checked;

/// The kernel of a fitted machine.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum Kernel {
    Linear,
    Rbf { gamma: f64 },
}

/// One binary machine of a (possibly one-vs-one) SVC.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Machine {
    /// Indices of the two classes it separates (the first is the positive one).
    pair: (usize, usize),
    svm: Svm<f64, bool>,
}

/// A fitted support vector classifier.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FittedSvc {
    classes: Vec<f64>,
    machines: Vec<Machine>,
    n_features: usize,
}

fn fit_svc(
    name: &str,
    x: ArrayView2<'_, f64>,
    y: ArrayView1<'_, f64>,
    c: f64,
    kernel: Kernel,
    tol: f64,
) -> Result<FittedSvc, MlError> {
    let (classes, idx) = encode_classes(name, y)?;
    let k = classes.len();
    let mut machines = Vec::new();
    for a in 0..k {
        for b in a + 1..k {
            let rows: Vec<usize> = (0..idx.len()).filter(|&i| idx[i] == a || idx[i] == b).collect();
            let xs = x.select(Axis(0), &rows);
            let ts: Array1<bool> = rows.iter().map(|&i| idx[i] == a).collect();
            let params = Svm::<f64, bool>::params().pos_neg_weights(c, c).eps(tol);
            let params = match kernel {
                Kernel::Linear => params.linear_kernel(),
                // linfa's Gaussian kernel is exp(-‖x−x'‖²/eps): eps = 1/γ.
                Kernel::Rbf { gamma } => params.gaussian_kernel(1.0 / gamma),
            };
            let svm = params.fit(&Dataset::new(xs, ts)).map_err(|e| MlError::Fit {
                estimator: name.into(),
                library: "linfa-svm".into(),
                message: e.to_string(),
            })?;
            machines.push(Machine { pair: (a, b), svm });
        }
    }
    Ok(FittedSvc { classes, machines, n_features: x.ncols() })
}

impl FittedModel for FittedSvc {
    fn n_features(&self) -> usize {
        self.n_features
    }
    fn predict(&self, x: ArrayView2<'_, f64>) -> Output<Array1<f64>> {
        let k = self.classes.len();
        let mut votes = ndarray::Array2::<u32>::zeros((x.nrows(), k));
        for m in &self.machines {
            let pred: Array1<bool> = m.svm.predict(&x);
            for (i, &p) in pred.iter().enumerate() {
                votes[[i, if p { m.pair.0 } else { m.pair.1 }]] += 1;
            }
        }
        Some(Ok(votes
            .rows()
            .into_iter()
            .map(|r| {
                let best = r.iter().enumerate().fold(0, |b, (i, &v)| if v > r[b] { i } else { b });
                self.classes[best]
            })
            .collect()))
    }
    fn classes(&self) -> Option<&[f64]> {
        Some(&self.classes)
    }
}

crate::params! {
    /// Hyperparameters of [`SVC`]: kernel support vector classification.
    pub struct SvcParams for "SVC" {
        /// Penalty of margin violations.
        c ("C"): f64 = 1.0, valid if |v| *v > 0.0 && v.is_finite(), "a positive finite number";
        /// `"rbf"` or `"linear"`.
        kernel ("kernel"): String = "rbf".to_string(), valid if |v| v == "rbf" || v == "linear", "\"rbf\" or \"linear\"";
        /// RBF width γ in exp(−γ‖x−x'‖²); none = scikit-learn's `"scale"`, 1 / (n_features · Var(X)).
        gamma ("gamma"): Option<f64> = None, valid if |v| v.is_none_or(|g| g > 0.0 && g.is_finite()), "a positive number or none (\"scale\")";
        /// Solver tolerance.
        tol ("tol"): f64 = 1e-3, valid if |v| *v > 0.0, "a positive number";
    }
}

impl FitParams for SvcParams {
    type Fitted = FittedSvc;

    fn fit(
        params: &Checked<Self>,
        x: ArrayView2<'_, f64>,
        y: Option<ArrayView1<'_, f64>>,
    ) -> Result<FittedSvc, MlError> {
        let y = require_y("SVC", y)?;
        let kernel = if params.kernel == "linear" {
            Kernel::Linear
        } else {
            let gamma = params.gamma.unwrap_or_else(|| {
                let var = x.var(0.0);
                if var > 0.0 {
                    1.0 / (x.ncols() as f64 * var)
                } else {
                    1.0
                }
            });
            Kernel::Rbf { gamma }
        };
        fit_svc("SVC", x, y, params.c, kernel, params.tol)
    }
}

crate::estimator! {
    /// Kernel SVM classifier (see [`SvcParams`]).
    SVC, SvcParams, FittedSvc, "SVC", Kind::Classifier
}

crate::params! {
    /// Hyperparameters of [`LinearSVC`]: linear support vector classification.
    pub struct LinearSvcParams for "LinearSVC" {
        /// Penalty of margin violations.
        c ("C"): f64 = 1.0, valid if |v| *v > 0.0 && v.is_finite(), "a positive finite number";
        /// Solver tolerance.
        tol ("tol"): f64 = 1e-3, valid if |v| *v > 0.0, "a positive number";
    }
}

impl FitParams for LinearSvcParams {
    type Fitted = FittedSvc;

    fn fit(
        params: &Checked<Self>,
        x: ArrayView2<'_, f64>,
        y: Option<ArrayView1<'_, f64>>,
    ) -> Result<FittedSvc, MlError> {
        let y = require_y("LinearSVC", y)?;
        fit_svc("LinearSVC", x, y, params.c, Kernel::Linear, params.tol)
    }
}

crate::estimator! {
    /// Linear SVM classifier (see [`LinearSvcParams`]).
    LinearSVC, LinearSvcParams, FittedSvc, "LinearSVC", Kind::Classifier
}
