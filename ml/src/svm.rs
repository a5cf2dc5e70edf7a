//! Support vector classifiers.
//!
//! `SVC` is libsvm's method, as scikit-learn's: the C-SVC dual solved by SMO
//! with second-order working-set selection and an `f32` kernel cache
//! (the `smo` module), one binary machine per pair of classes (one-vs-one,
//! each pair's rows ordered by class as libsvm groups them), prediction by
//! votes (ties go to the smaller class). `LinearSVC` is liblinear's method, as scikit-learn's:
//! the L2-regularized squared hinge loss, one-vs-rest, the intercept as a
//! regularized constant feature, solved in the primal by Newton steps with
//! liblinear's stopping rule (scikit-learn's `dual="auto"` picks liblinear's
//! primal solver when samples outnumber features; on w9's non-separable
//! data dual coordinate descent did not converge in 1,000 passes).

use ndarray::{s, Array1, Array2, ArrayView1, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::error::MlError;
use crate::estimator::{encode_classes, require_y, FitParams, FittedModel, Kind, Output};
use crate::params::{Checked, ParamType, ParamValue};
use crate::smo::{self, Kernel, Settings};

/// The kernel width γ: scikit-learn's `gamma`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Gamma {
    /// `1 / (n_features · Var(X))` (`"scale"`).
    Scale,
    /// `1 / n_features` (`"auto"`).
    Auto,
    /// This value.
    Value(f64),
}

impl ParamType for Gamma {
    fn from_param(v: &ParamValue) -> Option<Self> {
        match v {
            ParamValue::Str(s) if s == "scale" => Some(Gamma::Scale),
            ParamValue::Str(s) if s == "auto" => Some(Gamma::Auto),
            other => other.as_f64().map(Gamma::Value),
        }
    }
    fn to_param(&self) -> ParamValue {
        match *self {
            Gamma::Scale => ParamValue::Str("scale".into()),
            Gamma::Auto => ParamValue::Str("auto".into()),
            Gamma::Value(g) => ParamValue::F64(g),
        }
    }
}

impl Gamma {
    fn resolve(&self, x: ArrayView2<'_, f64>) -> f64 {
        let p = x.ncols() as f64;
        match *self {
            Gamma::Scale => {
                let var = x.var(0.0);
                if var > 0.0 {
                    1.0 / (p * var)
                } else {
                    1.0
                }
            }
            Gamma::Auto => 1.0 / p,
            Gamma::Value(g) => g,
        }
    }
}

/// One binary machine of the one-vs-one scheme.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Machine {
    /// Class indices it separates; a positive decision votes for the first.
    pair: (usize, usize),
    /// Its support vectors (rows of [`FittedSvc::support_vectors`]) and their `α·y`.
    sv: Vec<u32>,
    coef: Vec<f64>,
    rho: f64,
}

/// A fitted support vector classifier.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FittedSvc {
    classes: Vec<f64>,
    kernel: Kernel,
    /// Rows of X that support any machine, in training order.
    support: Vec<usize>,
    support_vectors: Array2<f64>,
    sv_norms: Vec<f64>,
    machines: Vec<Machine>,
    /// Working-set steps per machine.
    pub n_iter: Vec<usize>,
    n_features: usize,
}

impl FittedSvc {
    /// Indices of the support vectors in the training set, ascending.
    pub fn support(&self) -> &[usize] {
        &self.support
    }

    /// scikit-learn's `decision_function` with `decision_function_shape="ovo"`:
    /// one column per pair of classes `(a, b)`, `a < b`, positive for `a`;
    /// for two classes, one column positive for the second class.
    pub fn decision_function(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        let mut d = self.ovo_decisions(x);
        if self.classes.len() == 2 {
            d.mapv_inplace(|v| -v);
        }
        d
    }

    /// libsvm's decision values, one column per machine, in blocks of rows.
    fn ovo_decisions(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        const BLOCK: usize = 512;
        let mut out = Array2::zeros((x.nrows(), self.machines.len()));
        for start in (0..x.nrows()).step_by(BLOCK) {
            let end = (start + BLOCK).min(x.nrows());
            let k = smo::kernel_matrix(
                self.kernel,
                x.slice(s![start..end, ..]),
                self.support_vectors.view(),
                &self.sv_norms,
            );
            for (m, machine) in self.machines.iter().enumerate() {
                for (r, krow) in k.rows().into_iter().enumerate() {
                    let v: f64 = machine
                        .sv
                        .iter()
                        .zip(&machine.coef)
                        .map(|(&j, &c)| c * krow[j as usize])
                        .sum();
                    out[[start + r, m]] = v - machine.rho;
                }
            }
        }
        out
    }
}

/// SVC's fit settings besides the labels.
struct SvcFit {
    c: f64,
    kernel: Kernel,
    tol: f64,
    cache_bytes: usize,
    max_iter: Option<usize>,
}

fn fit_svc(
    name: &str,
    x: ArrayView2<'_, f64>,
    y: ArrayView1<'_, f64>,
    fit: &SvcFit,
) -> Result<FittedSvc, MlError> {
    let (classes, idx) = encode_classes(name, y)?;
    let k = classes.len();
    let settings = Settings {
        c: fit.c,
        tol: fit.tol,
        kernel: fit.kernel,
        cache_bytes: fit.cache_bytes,
        max_iter: fit.max_iter,
    };
    // Per machine: its training rows (class a's, then class b's, as libsvm
    // groups them) and its solution.
    let mut solved = Vec::new();
    for a in 0..k {
        for b in a + 1..k {
            let rows: Vec<usize> = (0..idx.len())
                .filter(|&i| idx[i] == a)
                .chain((0..idx.len()).filter(|&i| idx[i] == b))
                .collect();
            let xs = x.select(Axis(0), &rows);
            let ys: Vec<f64> = rows.iter().map(|&i| if idx[i] == a { 1.0 } else { -1.0 }).collect();
            let sol = smo::solve(xs.view(), &ys, &settings);
            solved.push(((a, b), rows, ys, sol));
        }
    }
    let mut is_sv = vec![false; x.nrows()];
    for (_, rows, _, sol) in &solved {
        for (&r, &a) in rows.iter().zip(&sol.alpha) {
            is_sv[r] |= a > 0.0;
        }
    }
    let support: Vec<usize> = (0..x.nrows()).filter(|&i| is_sv[i]).collect();
    let mut sv_row = vec![u32::MAX; x.nrows()];
    for (j, &i) in support.iter().enumerate() {
        sv_row[i] = j as u32;
    }
    let support_vectors = x.select(Axis(0), &support);
    let sv_norms = smo::row_norms(support_vectors.view());
    let mut machines = Vec::new();
    let mut n_iter = Vec::new();
    for (pair, rows, ys, sol) in solved {
        let (sv, coef) = rows
            .iter()
            .zip(&ys)
            .zip(&sol.alpha)
            .filter(|(_, &a)| a > 0.0)
            .map(|((&r, &yv), &a)| (sv_row[r], a * yv))
            .unzip();
        machines.push(Machine { pair, sv, coef, rho: sol.rho });
        n_iter.push(sol.iterations);
    }
    Ok(FittedSvc {
        classes,
        kernel: fit.kernel,
        support,
        support_vectors,
        sv_norms,
        machines,
        n_iter,
        n_features: x.ncols(),
    })
}

impl FittedModel for FittedSvc {
    fn n_features(&self) -> usize {
        self.n_features
    }
    fn predict(&self, x: ArrayView2<'_, f64>) -> Output<Array1<f64>> {
        let dec = self.ovo_decisions(x);
        let k = self.classes.len();
        let mut votes = vec![0u32; k];
        Some(Ok(dec
            .rows()
            .into_iter()
            .map(|r| {
                votes.fill(0);
                for (m, &v) in self.machines.iter().zip(r.iter()) {
                    votes[if v > 0.0 { m.pair.0 } else { m.pair.1 }] += 1;
                }
                let best = (0..k).fold(0, |b, i| if votes[i] > votes[b] { i } else { b });
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
        /// `"rbf"`, `"linear"`, `"poly"` or `"sigmoid"`.
        kernel ("kernel"): String = "rbf".to_string(), valid if |v| ["rbf", "linear", "poly", "sigmoid"].contains(&v.as_str()), "\"rbf\", \"linear\", \"poly\" or \"sigmoid\"";
        /// Degree of the polynomial kernel.
        degree ("degree"): i64 = 3, valid if |v| (0..=100).contains(v), "an integer in [0, 100]";
        /// Kernel width γ of rbf, poly and sigmoid.
        gamma ("gamma"): Gamma = Gamma::Scale, valid if |v| match v { Gamma::Value(g) => *g > 0.0 && g.is_finite(), _ => true }, "\"scale\", \"auto\" or a positive number";
        /// Constant term of the poly and sigmoid kernels.
        coef0 ("coef0"): f64 = 0.0, valid if |v| v.is_finite(), "a finite number";
        /// Stop when the maximal violating pair is closer than this.
        tol ("tol"): f64 = 1e-3, valid if |v| *v > 0.0, "a positive number";
        /// Kernel cache per binary machine, in MB.
        cache_size ("cache_size"): f64 = 200.0, valid if |v| *v > 0.0 && v.is_finite(), "a positive number of MB";
        /// Working-set steps per machine; -1 = libsvm's own cap, max(10⁷, 100·n).
        max_iter ("max_iter"): i64 = -1, valid if |v| *v == -1 || *v >= 1, "-1 or an integer >= 1";
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
        let gamma = params.gamma.resolve(x);
        let (coef0, degree) = (params.coef0, params.degree as i32);
        let kernel = match params.kernel.as_str() {
            "linear" => Kernel::Linear,
            "poly" => Kernel::Poly { gamma, coef0, degree },
            "sigmoid" => Kernel::Sigmoid { gamma, coef0 },
            _ => Kernel::Rbf { gamma },
        };
        let fit = SvcFit {
            c: params.c,
            kernel,
            tol: params.tol,
            cache_bytes: (params.cache_size * 1024.0 * 1024.0) as usize,
            max_iter: (params.max_iter > 0).then_some(params.max_iter as usize),
        };
        fit_svc("SVC", x, y, &fit)
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
