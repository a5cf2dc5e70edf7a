//! Linear models: logistic regression (this crate's L-BFGS,
//! `logistic_lbfgs`, binary and multinomial), least squares, ridge, lasso and
//! elastic net (this crate's `gram`).
//!
//! How they relate to scikit-learn:
//! * Logistic regression minimizes `Σ logloss + α/2·‖w‖²` with `α = 1/C`,
//!   which has scikit-learn's optimum (`C·Σ logloss + ½‖w‖²`); it stops when
//!   the largest gradient entry of the mean objective is below `tol`, as
//!   scikit-learn's lbfgs does. Multinomial problems penalize every class's
//!   weights (scikit-learn's full softmax), not the intercepts.
//! * Least squares, Ridge, Lasso and ElasticNet go through the centered
//!   Gram matrix (`gram`): Cholesky for least squares and Ridge (the
//!   minimum-norm solution when X is rank deficient, as `lstsq` gives), and
//!   scikit-learn's own coordinate descent with its duality-gap stopping
//!   rule for the L1 penalties.
//! * One pass over the data per evaluation, loss and gradient together;
//!   linfa-logistic was 4× slower than scikit-learn on binary problems and
//!   3× on w9's multinomial one.
//! * With an intercept, the regressors center X and y and recover the
//!   intercept as `ȳ − x̄·w`, exactly as scikit-learn does.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use rask_core::fastmath::sigmoid;
use serde::{Deserialize, Serialize};

use crate::error::MlError;

use crate::estimator::{argmax, encode_classes, require_y, FitParams, FittedModel, Kind, Output};
use crate::params::Checked;

fn fit_err(estimator: &str, library: &str, e: impl std::fmt::Display) -> MlError {
    MlError::Fit { estimator: estimator.into(), library: library.into(), message: e.to_string() }
}

crate::params! {
    /// Hyperparameters of [`LogisticRegression`]: L2-regularized logistic
    /// regression, binary or multinomial, as scikit-learn's `LogisticRegression`
    /// with the lbfgs solver.
    pub struct LogisticRegressionParams for "LogisticRegression" {
        /// Inverse of the L2 regularization strength (scikit-learn's `C`).
        c ("C"): f64 = 1.0, valid if |v| *v > 0.0 && v.is_finite(), "a positive finite number";
        /// Fit an (unpenalized) intercept.
        fit_intercept ("fit_intercept"): bool = true, valid if |_v| true, "true or false";
        /// Maximum L-BFGS iterations.
        max_iter ("max_iter"): i64 = 100, valid if |v| *v >= 1, "an integer >= 1";
        /// Stop when the gradient norm falls below this.
        tol ("tol"): f64 = 1e-4, valid if |v| *v > 0.0, "a positive number";
    }
}

/// A fitted logistic regression.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FittedLogisticRegression {
    /// Sorted class labels.
    pub classes: Vec<f64>,
    /// Coefficients: one row for binary problems (the positive class, `classes[1]`), one per class otherwise.
    pub coef: Array2<f64>,
    /// Intercepts, one per row of `coef`.
    pub intercept: Array1<f64>,
}

impl FitParams for LogisticRegressionParams {
    type Fitted = FittedLogisticRegression;

    fn fit(
        params: &Checked<Self>,
        x: ArrayView2<'_, f64>,
        y: Option<ArrayView1<'_, f64>>,
    ) -> Result<Self::Fitted, MlError> {
        let name = "LogisticRegression";
        let y = require_y(name, y)?;
        let (classes, idx) = encode_classes(name, y)?;
        let alpha = 1.0 / params.c;
        if classes.len() == 2 {
            // Binary: the fused L-BFGS solver of `logistic_lbfgs` (scikit-learn's
            // objective and stopping rule); classes[1] is the positive class.
            let signs: Vec<f64> = idx.iter().map(|&i| if i == 1 { 1.0 } else { -1.0 }).collect();
            let fit = crate::logistic_lbfgs::fit_binary(
                x,
                &signs,
                alpha,
                params.fit_intercept,
                params.max_iter as usize,
                params.tol,
            );
            Ok(FittedLogisticRegression {
                classes,
                coef: fit.coef.insert_axis(Axis(0)),
                intercept: Array1::from(vec![fit.intercept]),
            })
        } else {
            // Multinomial: the same L-BFGS on scikit-learn's softmax objective.
            let fit = crate::logistic_lbfgs::fit_multinomial(
                x,
                &idx,
                classes.len(),
                alpha,
                params.fit_intercept,
                params.max_iter as usize,
                params.tol,
            );
            Ok(FittedLogisticRegression { classes, coef: fit.coef, intercept: fit.intercept })
        }
    }
}

impl FittedLogisticRegression {
    /// Raw scores `X·coefᵀ + intercept`.
    pub fn decision_function(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        if self.coef.nrows() == 1 {
            // Binary: a matrix-vector product (no GEMM packing for one column).
            let z = x.dot(&self.coef.row(0)) + self.intercept[0];
            return z.insert_axis(Axis(1));
        }
        x.dot(&self.coef.t()) + &self.intercept
    }
}

impl FittedModel for FittedLogisticRegression {
    fn n_features(&self) -> usize {
        self.coef.ncols()
    }

    fn predict_proba(&self, x: ArrayView2<'_, f64>) -> Output<Array2<f64>> {
        let z = self.decision_function(x);
        if self.classes.len() == 2 {
            let mut p = Array2::zeros((x.nrows(), 2));
            for (i, &zi) in z.column(0).iter().enumerate() {
                let q = sigmoid(zi);
                p[[i, 0]] = 1.0 - q;
                p[[i, 1]] = q;
            }
            Some(Ok(p))
        } else {
            let mut p = z;
            crate::estimator::softmax_rows(&mut p);
            Some(Ok(p))
        }
    }

    fn predict(&self, x: ArrayView2<'_, f64>) -> Output<Array1<f64>> {
        let z = self.decision_function(x);
        Some(Ok(if self.classes.len() == 2 {
            z.column(0).mapv(|v| if v > 0.0 { self.classes[1] } else { self.classes[0] })
        } else {
            z.rows().into_iter().map(|r| self.classes[argmax(r)]).collect()
        }))
    }

    fn classes(&self) -> Option<&[f64]> {
        Some(&self.classes)
    }
}

crate::estimator! {
    /// Logistic regression (see [`LogisticRegressionParams`]).
    LogisticRegression, LogisticRegressionParams, FittedLogisticRegression, "LogisticRegression", Kind::Classifier
}

/// A fitted linear model `y = X·coef + intercept`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FittedLinear {
    /// Coefficients.
    pub coef: Array1<f64>,
    /// Intercept (0 without one).
    pub intercept: f64,
}

impl FittedModel for FittedLinear {
    fn n_features(&self) -> usize {
        self.coef.len()
    }
    fn predict(&self, x: ArrayView2<'_, f64>) -> Output<Array1<f64>> {
        Some(Ok(x.dot(&self.coef) + self.intercept))
    }
}

crate::params! {
    /// Hyperparameters of [`LinearRegression`]: ordinary least squares.
    pub struct LinearRegressionParams for "LinearRegression" {
        /// Fit an intercept.
        fit_intercept ("fit_intercept"): bool = true, valid if |_v| true, "true or false";
    }
}

impl FitParams for LinearRegressionParams {
    type Fitted = FittedLinear;

    fn fit(
        params: &Checked<Self>,
        x: ArrayView2<'_, f64>,
        y: Option<ArrayView1<'_, f64>>,
    ) -> Result<FittedLinear, MlError> {
        let name = "LinearRegression";
        let y = require_y(name, y)?;
        let c = crate::gram::centered(x, y, params.fit_intercept);
        let coef = match crate::gram::cholesky_solve(&c.gram, &c.xty) {
            Some(w) => w,
            // Rank deficient: the minimum-norm solution, as lstsq gives.
            None => {
                crate::gram::min_norm_solve(&c).map_err(|e| fit_err(name, "linfa-linalg", e))?
            }
        };
        let intercept = c.intercept(&coef);
        Ok(FittedLinear { coef, intercept })
    }
}

crate::estimator! {
    /// Ordinary least squares (see [`LinearRegressionParams`]).
    LinearRegression, LinearRegressionParams, FittedLinear, "LinearRegression", Kind::Regressor
}

/// The settings of one [`elastic_net`] solve: `1/(2n)‖y − Xw − b‖² + α·(ρ‖w‖₁ + (1−ρ)/2‖w‖²)`.
struct ElasticNetSolve {
    penalty: f64,
    l1_ratio: f64,
    fit_intercept: bool,
    max_iter: i64,
    tol: f64,
}

/// Coordinate descent on the Gram matrix (`gram::enet_cd`), scikit-learn's
/// scaling: `l1 = α·ρ·n`, `l2 = α(1−ρ)·n` on the summed loss.
fn elastic_net(
    x: ArrayView2<'_, f64>,
    y: ArrayView1<'_, f64>,
    solve: ElasticNetSolve,
) -> FittedLinear {
    let ElasticNetSolve { penalty, l1_ratio, fit_intercept, max_iter, tol } = solve;
    let c = crate::gram::centered(x, y, fit_intercept);
    let n = c.n as f64;
    let fit = crate::gram::enet_cd(
        &c,
        penalty * l1_ratio * n,
        penalty * (1.0 - l1_ratio) * n,
        max_iter as usize,
        tol,
    );
    let intercept = c.intercept(&fit);
    FittedLinear { coef: fit, intercept }
}

crate::params! {
    /// Hyperparameters of [`Ridge`]: least squares with an L2 penalty
    /// `‖y − Xw‖² + α‖w‖²` (scikit-learn's `Ridge`).
    pub struct RidgeParams for "Ridge" {
        /// Penalty strength.
        alpha ("alpha"): f64 = 1.0, valid if |v| *v >= 0.0 && v.is_finite(), "a finite number >= 0";
        /// Fit an (unpenalized) intercept.
        fit_intercept ("fit_intercept"): bool = true, valid if |_v| true, "true or false";
        /// Iterations of iterative solvers (scikit-learn's; the Cholesky solve used here has none).
        max_iter ("max_iter"): Option<i64> = None, valid if |v| v.is_none_or(|m| m >= 1), "an integer >= 1 or none";
        /// Tolerance of iterative solvers (scikit-learn's; unused by the Cholesky solve).
        tol ("tol"): f64 = 1e-4, valid if |v| *v > 0.0, "a positive number";
    }
}

impl FitParams for RidgeParams {
    type Fitted = FittedLinear;

    fn fit(
        params: &Checked<Self>,
        x: ArrayView2<'_, f64>,
        y: Option<ArrayView1<'_, f64>>,
    ) -> Result<FittedLinear, MlError> {
        let name = "Ridge";
        let y = require_y(name, y)?;
        // (XcᵀXc + αI)·w = Xcᵀyc by Cholesky (scikit-learn's `auto` for dense X).
        let c = crate::gram::centered(x, y, params.fit_intercept);
        let mut a = c.gram.clone();
        a.diag_mut().mapv_inplace(|d| d + params.alpha);
        let coef = match crate::gram::cholesky_solve(&a, &c.xty) {
            Some(w) => w,
            // α = 0 on rank-deficient X: the minimum-norm least-squares solution.
            None => {
                crate::gram::min_norm_solve(&c).map_err(|e| fit_err(name, "linfa-linalg", e))?
            }
        };
        let intercept = c.intercept(&coef);
        Ok(FittedLinear { coef, intercept })
    }
}

crate::estimator! {
    /// Ridge regression (see [`RidgeParams`]).
    Ridge, RidgeParams, FittedLinear, "Ridge", Kind::Regressor
}

crate::params! {
    /// Hyperparameters of [`Lasso`]: `1/(2n)‖y − Xw‖² + α‖w‖₁` (scikit-learn's `Lasso`).
    pub struct LassoParams for "Lasso" {
        /// Penalty strength.
        alpha ("alpha"): f64 = 1.0, valid if |v| *v >= 0.0 && v.is_finite(), "a finite number >= 0";
        /// Fit an (unpenalized) intercept.
        fit_intercept ("fit_intercept"): bool = true, valid if |_v| true, "true or false";
        /// Maximum coordinate-descent sweeps.
        max_iter ("max_iter"): i64 = 1000, valid if |v| *v >= 1, "an integer >= 1";
        /// Tolerance of the solver (on the duality gap, relative to ‖y‖²).
        tol ("tol"): f64 = 1e-4, valid if |v| *v > 0.0, "a positive number";
    }
}

impl FitParams for LassoParams {
    type Fitted = FittedLinear;

    fn fit(
        params: &Checked<Self>,
        x: ArrayView2<'_, f64>,
        y: Option<ArrayView1<'_, f64>>,
    ) -> Result<FittedLinear, MlError> {
        let y = require_y("Lasso", y)?;
        let (fit_intercept, max_iter, tol) = (params.fit_intercept, params.max_iter, params.tol);
        let solve =
            ElasticNetSolve { penalty: params.alpha, l1_ratio: 1.0, fit_intercept, max_iter, tol };
        Ok(elastic_net(x, y, solve))
    }
}

crate::estimator! {
    /// Lasso regression (see [`LassoParams`]).
    Lasso, LassoParams, FittedLinear, "Lasso", Kind::Regressor
}

crate::params! {
    /// Hyperparameters of [`ElasticNet`]:
    /// `1/(2n)‖y − Xw‖² + α·ρ‖w‖₁ + α(1−ρ)/2·‖w‖²` (scikit-learn's `ElasticNet`).
    pub struct ElasticNetParams for "ElasticNet" {
        /// Penalty strength α.
        alpha ("alpha"): f64 = 1.0, valid if |v| *v >= 0.0 && v.is_finite(), "a finite number >= 0";
        /// Share ρ of the L1 penalty.
        l1_ratio ("l1_ratio"): f64 = 0.5, valid if |v| (0.0..=1.0).contains(v), "a number in [0, 1]";
        /// Fit an (unpenalized) intercept.
        fit_intercept ("fit_intercept"): bool = true, valid if |_v| true, "true or false";
        /// Maximum coordinate-descent sweeps.
        max_iter ("max_iter"): i64 = 1000, valid if |v| *v >= 1, "an integer >= 1";
        /// Tolerance of the solver.
        tol ("tol"): f64 = 1e-4, valid if |v| *v > 0.0, "a positive number";
    }
}

impl FitParams for ElasticNetParams {
    type Fitted = FittedLinear;

    fn fit(
        params: &Checked<Self>,
        x: ArrayView2<'_, f64>,
        y: Option<ArrayView1<'_, f64>>,
    ) -> Result<FittedLinear, MlError> {
        let y = require_y("ElasticNet", y)?;
        let solve = ElasticNetSolve {
            penalty: params.alpha,
            l1_ratio: params.l1_ratio,
            fit_intercept: params.fit_intercept,
            max_iter: params.max_iter,
            tol: params.tol,
        };
        Ok(elastic_net(x, y, solve))
    }
}

crate::estimator! {
    /// Elastic-net regression (see [`ElasticNetParams`]).
    ElasticNet, ElasticNetParams, FittedLinear, "ElasticNet", Kind::Regressor
}
