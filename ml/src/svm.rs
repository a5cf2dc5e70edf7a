//! Support vector classifiers.
//!
//! `SVC` uses linfa-svm's SMO solver on binary problems; more classes are
//! handled one-vs-one with voting, as scikit-learn's `SVC` does (ties go to
//! the smaller class). `LinearSVC` is liblinear's method, as scikit-learn's:
//! the L2-regularized squared hinge loss, one-vs-rest, the intercept as a
//! regularized constant feature, solved in the primal by Newton steps with
//! liblinear's stopping rule (scikit-learn's `dual="auto"` picks liblinear's
//! primal solver when samples outnumber features; on w9's non-separable
//! data dual coordinate descent did not converge in 1,000 passes).

use linfa::prelude::*;
use linfa_svm::Svm;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
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
    /// Hyperparameters of [`LinearSVC`]: scikit-learn's `LinearSVC`
    /// (liblinear's L2-regularized squared-hinge loss, one-vs-rest).
    pub struct LinearSvcParams for "LinearSVC" {
        /// Penalty of margin violations.
        c ("C"): f64 = 1.0, valid if |v| *v > 0.0 && v.is_finite(), "a positive finite number";
        /// Stop when the gradient norm falls below this share of its start (liblinear's rule).
        tol ("tol"): f64 = 1e-4, valid if |v| *v > 0.0, "a positive number";
        /// Maximum Newton iterations.
        max_iter ("max_iter"): i64 = 1000, valid if |v| *v >= 1, "an integer >= 1";
        /// Fit an intercept (as liblinear: a constant feature, regularized like the others).
        fit_intercept ("fit_intercept"): bool = true, valid if |_v| true, "true or false";
        /// The constant feature's value.
        intercept_scaling ("intercept_scaling"): f64 = 1.0, valid if |v| *v > 0.0 && v.is_finite(), "a positive finite number";
    }
}

/// A fitted linear SVM: one row of weights per class (one for two classes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FittedLinearSvc {
    /// Sorted class labels.
    pub classes: Vec<f64>,
    /// Weights (one row for a binary problem: the positive class, `classes[1]`).
    pub coef: Array2<f64>,
    /// Intercepts.
    pub intercept: Array1<f64>,
}

/// The L2-loss SVM in the primal, as liblinear's `L2R_L2LOSS_SVC` (which
/// scikit-learn's `dual="auto"` picks when samples outnumber features):
/// `f(w) = ½‖w‖² + C·Σ max(0, 1 − yᵢ·wᵀxᵢ)²`, `x` with the constant feature
/// `bias` when it is positive (its weight last, regularized like the
/// others). Newton steps on the generalized Hessian `I + 2C·X_Iᵀ X_I` (the
/// rows inside the margin; p is small, so it is formed and factored) with a
/// backtracking line search; liblinear's stopping rule
/// `‖∇f‖ ≤ eps·max(min(#pos, #neg), 1)/n · ‖∇f(0)‖`.
fn l2loss_svc_primal(
    x: ArrayView2<'_, f64>,
    y: &[f64],
    c: f64,
    bias: f64,
    eps: f64,
    max_iter: usize,
) -> Array1<f64> {
    use ndarray::linalg::general_mat_mul;
    let (n, p) = x.dim();
    let has_bias = bias > 0.0;
    let d = p + usize::from(has_bias);
    let margins = |w: &Array1<f64>| -> Array1<f64> {
        let mut z = x.dot(&w.slice(ndarray::s![..p]));
        if has_bias {
            z += w[p] * bias;
        }
        z
    };
    let objective = |w: &Array1<f64>, z: &Array1<f64>| -> f64 {
        let loss: f64 = z.iter().zip(y).map(|(&zi, &yi)| (1.0 - yi * zi).max(0.0).powi(2)).sum();
        0.5 * w.dot(w) + c * loss
    };
    // ∇f = w + 2C·Σ_I (zᵢ − yᵢ)·xᵢ over I = {i : yᵢzᵢ < 1}.
    let gradient = |w: &Array1<f64>, z: &Array1<f64>| -> Array1<f64> {
        let mut r = Array1::<f64>::zeros(n);
        for i in 0..n {
            if y[i] * z[i] < 1.0 {
                r[i] = 2.0 * c * (z[i] - y[i]);
            }
        }
        let mut g = w.clone();
        let gx = x.t().dot(&r);
        g.slice_mut(ndarray::s![..p]).scaled_add(1.0, &gx);
        if has_bias {
            g[p] += bias * r.sum();
        }
        g
    };
    let pos = y.iter().filter(|&&v| v > 0.0).count();
    let tol = eps * (pos.min(n - pos).max(1) as f64) / n as f64;
    let mut w = Array1::<f64>::zeros(d);
    let mut z = Array1::<f64>::zeros(n);
    let mut f = objective(&w, &z);
    let mut g = gradient(&w, &z);
    let g0 = g.dot(&g).sqrt();
    const BLOCK: usize = 256;
    let mut buf = Array2::<f64>::zeros((BLOCK, d));
    for _ in 0..max_iter {
        if g.dot(&g).sqrt() <= tol * g0 {
            break;
        }
        // H = I + 2C·X_Iᵀ X_I, the active rows gathered a block at a time.
        let mut h = Array2::<f64>::eye(d);
        let mut filled = 0;
        let flush = |buf: &Array2<f64>, rows: usize, h: &mut Array2<f64>| {
            let b = buf.slice(ndarray::s![..rows, ..]);
            general_mat_mul(2.0 * c, &b.t(), &b, 1.0, h);
        };
        for i in 0..n {
            if y[i] * z[i] < 1.0 {
                let mut row = buf.row_mut(filled);
                row.slice_mut(ndarray::s![..p]).assign(&x.row(i));
                if has_bias {
                    row[p] = bias;
                }
                filled += 1;
                if filled == BLOCK {
                    flush(&buf, filled, &mut h);
                    filled = 0;
                }
            }
        }
        if filled > 0 {
            flush(&buf, filled, &mut h);
        }
        let Some(step) = crate::gram::cholesky_solve(&h, &g.mapv(|v| -v)) else { break };
        // Backtracking along the Newton direction (f is piecewise quadratic).
        let zd = margins(&step);
        let slope = g.dot(&step);
        let mut t = 1.0;
        let mut accepted = false;
        for _ in 0..30 {
            let wt = &w + &(t * &step);
            let zt = &z + &(t * &zd);
            let ft = objective(&wt, &zt);
            if ft <= f + 0.01 * t * slope {
                w = wt;
                z = zt;
                f = ft;
                accepted = true;
                break;
            }
            t *= 0.5;
        }
        if !accepted {
            break;
        }
        g = gradient(&w, &z);
    }
    w
}

impl FitParams for LinearSvcParams {
    type Fitted = FittedLinearSvc;

    fn fit(
        params: &Checked<Self>,
        x: ArrayView2<'_, f64>,
        y: Option<ArrayView1<'_, f64>>,
    ) -> Result<FittedLinearSvc, MlError> {
        let name = "LinearSVC";
        let y = require_y(name, y)?;
        let (classes, idx) = encode_classes(name, y)?;
        let x = x.as_standard_layout();
        let bias = if params.fit_intercept { params.intercept_scaling } else { 0.0 };
        // One-vs-rest; two classes are one problem (classes[1] positive).
        let problems: Vec<usize> =
            if classes.len() == 2 { vec![1] } else { (0..classes.len()).collect() };
        let p = x.ncols();
        let mut coef = Array2::zeros((problems.len(), p));
        let mut intercept = Array1::zeros(problems.len());
        for (r, &k) in problems.iter().enumerate() {
            let signs: Vec<f64> = idx.iter().map(|&i| if i == k { 1.0 } else { -1.0 }).collect();
            let w = l2loss_svc_primal(
                x.view(),
                &signs,
                params.c,
                bias,
                params.tol,
                params.max_iter as usize,
            );
            coef.row_mut(r).assign(&w.slice(ndarray::s![..p]));
            intercept[r] = if bias > 0.0 { w[p] * bias } else { 0.0 };
        }
        Ok(FittedLinearSvc { classes, coef, intercept })
    }
}

impl FittedModel for FittedLinearSvc {
    fn n_features(&self) -> usize {
        self.coef.ncols()
    }
    fn predict(&self, x: ArrayView2<'_, f64>) -> Output<Array1<f64>> {
        let z = x.dot(&self.coef.t()) + &self.intercept;
        Some(Ok(if self.classes.len() == 2 {
            z.column(0).mapv(|v| if v > 0.0 { self.classes[1] } else { self.classes[0] })
        } else {
            z.rows().into_iter().map(|r| self.classes[crate::estimator::argmax(r)]).collect()
        }))
    }
    fn classes(&self) -> Option<&[f64]> {
        Some(&self.classes)
    }
}

crate::estimator! {
    /// Linear SVM classifier (see [`LinearSvcParams`]).
    LinearSVC, LinearSvcParams, FittedLinearSvc, "LinearSVC", Kind::Classifier
}
