//! The GLMs as estimators of the ML layer, registered with their
//! hyperparameters as data (so `GridSearchCV` tunes `C`, `alpha`, `l1_ratio`
//! and `solver`, and pipelines and cluster workers rebuild them by name):
//!
//! | estimator | family | parameters (scikit-learn's meaning) |
//! |---|---|---|
//! | [`GlmLogisticRegression`] | logistic, or multinomial for more than 2 classes | `C`, `l1_ratio` as `LogisticRegression` (λ = 1/(C·W)) |
//! | [`GlmLinearRegression`] | normal | `alpha`, `l1_ratio` as `ElasticNet` (λ = α on the mean loss; `alpha = 0` is `LinearRegression`; `Ridge(alpha=a)` is `alpha = a/n, l1_ratio = 0`) |
//! | [`GlmPoissonRegressor`] | Poisson | `alpha` as `PoissonRegressor`, plus `l1_ratio` (glum's) |
//!
//! All take `fit_intercept`, `solver` (any of the five), `max_iter`, `tol`
//! (the stationarity measure of [`crate::solve`]) and `chunk_rows` (rows per
//! chunk of in-memory data).
//!
//! **Why they are not the ML layer's `LogisticRegression`, `Ridge`, ...:**
//! those are in-memory estimators with scikit-learn's default solvers and
//! tolerances (`rask-ml` cannot depend on this crate, which builds on it).
//! These fit the same objectives, to the same optima (a test holds them to
//! 1e-4 of each other), with any solver, and also on chunked arrays on any
//! scheduler ([`GlmLogisticRegression::fit_chunked`]); their fitted model
//! predicts and scores chunked arrays block by block, returning chunked
//! arrays (dask-ml's `ParallelPostFit`).

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Ix2};
use rask_core::array::{Array, Block, ChunkSpec};
use rask_core::{ComputeOptions, Delayed, Scheduler};
use rask_ml::estimator::{argmax, encode_classes, require_y, FitParams, FittedModel, Kind, Output};
use rask_ml::params::Checked;
use rask_ml::MlError;
use serde::{Deserialize, Serialize};

use crate::chunked::Chunked;
use crate::data::{GlmData, InMemory};
use crate::error::GlmError;
use crate::family::Family;
use crate::scaling::Parameterization;
use crate::solve::{fit, Fit, Model, Options, Solver};

/// The most classes a chunked fit infers from its labels.
const MAX_CLASSES: usize = 10_000;

const SOLVERS: &str = "gradient_descent, proximal_grad, newton, lbfgs or admm";

fn known_solver(name: &str) -> bool {
    Solver::from_name(name).is_some()
}

/// `rask_ml::params!` with the parameters every GLM estimator shares
/// appended to its own, and the `spec` that reads them: the family, and the
/// parameterization built from the parameters `$p`.
macro_rules! glm_params {
    (
        $(#[$meta:meta])* pub struct $Params:ident for $est:literal {
            family = $family:expr;
            parameterization = |$p:ident| $param:expr;
            $($own:tt)*
        }
    ) => {
        impl $Params {
            fn spec(&self) -> Spec<'_> {
                let $p = self;
                Spec {
                    estimator: $est,
                    family: $family,
                    parameterization: $param,
                    fit_intercept: self.fit_intercept,
                    solver: &self.solver,
                    max_iter: self.max_iter,
                    tol: self.tol,
                    chunk_rows: self.chunk_rows,
                }
            }
        }

        rask_ml::params! {
            $(#[$meta])*
            pub struct $Params for $est {
                $($own)*
                /// Fit an unpenalized intercept.
                fit_intercept ("fit_intercept"): bool = true, valid if |_v| true, "true or false";
                /// The solver.
                solver ("solver"): String = "lbfgs".to_string(), valid if |v| known_solver(v), "gradient_descent, proximal_grad, newton, lbfgs or admm";
                /// Iterations at most.
                max_iter ("max_iter"): i64 = 1000, valid if |v| *v >= 1, "an integer >= 1";
                /// Stop when the stationarity measure is at most this.
                tol ("tol"): f64 = 1e-6, valid if |v| *v > 0.0, "a positive number";
                /// Rows per chunk of in-memory data (ADMM keeps one local model per chunk).
                chunk_rows ("chunk_rows"): i64 = 100_000, valid if |v| *v >= 1, "an integer >= 1";
            }
        }
    };
}

glm_params! {
    /// Hyperparameters of [`GlmLogisticRegression`]: scikit-learn's
    /// `LogisticRegression(C, l1_ratio)` objective: binary, or multinomial
    /// (softmax) for more than two classes.
    pub struct GlmLogisticRegressionParams for "GlmLogisticRegression" {
        family = Family::Logistic;
        parameterization = |p| Parameterization::SklearnLogistic { c: p.c, l1_ratio: p.l1_ratio };
        /// Inverse regularization strength (scikit-learn's `C`).
        c ("C"): f64 = 1.0, valid if |v| *v > 0.0 && v.is_finite(), "a positive finite number";
        /// The L1 share of the penalty (0: ridge, 1: lasso).
        l1_ratio ("l1_ratio"): f64 = 0.0, valid if |v| (0.0..=1.0).contains(v), "a number in [0, 1]";
    }
}

glm_params! {
    /// Hyperparameters of [`GlmLinearRegression`]: scikit-learn's
    /// `ElasticNet(alpha, l1_ratio)` objective (`alpha = 0`: least squares).
    pub struct GlmLinearRegressionParams for "GlmLinearRegression" {
        family = Family::Normal;
        parameterization = |p| Parameterization::SklearnElasticNet { alpha: p.alpha, l1_ratio: p.l1_ratio };
        /// Penalty strength on the mean loss.
        alpha ("alpha"): f64 = 0.0, valid if |v| *v >= 0.0 && v.is_finite(), "a finite number >= 0";
        /// The L1 share of the penalty.
        l1_ratio ("l1_ratio"): f64 = 0.0, valid if |v| (0.0..=1.0).contains(v), "a number in [0, 1]";
    }
}

glm_params! {
    /// Hyperparameters of [`GlmPoissonRegressor`]: scikit-learn's
    /// `PoissonRegressor(alpha)` objective, with glum's `l1_ratio`.
    pub struct GlmPoissonRegressorParams for "GlmPoissonRegressor" {
        family = Family::Poisson;
        parameterization = |p| Parameterization::Glum { alpha: p.alpha, l1_ratio: p.l1_ratio };
        /// Penalty strength on the mean loss.
        alpha ("alpha"): f64 = 1.0, valid if |v| *v >= 0.0 && v.is_finite(), "a finite number >= 0";
        /// The L1 share of the penalty.
        l1_ratio ("l1_ratio"): f64 = 0.0, valid if |v| (0.0..=1.0).contains(v), "a number in [0, 1]";
    }
}

/// What every GLM estimator's parameters say, whatever their names.
struct Spec<'a> {
    estimator: &'static str,
    family: Family,
    parameterization: Parameterization,
    fit_intercept: bool,
    solver: &'a str,
    max_iter: i64,
    tol: f64,
    chunk_rows: i64,
}

impl Spec<'_> {
    fn err(&self, e: GlmError) -> MlError {
        MlError::Fit {
            estimator: self.estimator.into(),
            library: "rask-glm".into(),
            message: e.to_string(),
        }
    }

    /// Fits on `data` (in memory or chunked).
    fn fit(&self, data: &dyn GlmData, classes: Option<Vec<f64>>) -> Result<FittedGlm, MlError> {
        let solver = Solver::from_name(self.solver).ok_or_else(|| MlError::InvalidParam {
            estimator: self.estimator.into(),
            param: "solver".into(),
            value: self.solver.into(),
            expected: SOLVERS.into(),
        })?;
        let penalty =
            self.parameterization.penalty(data.total_weight()).map_err(|e| self.err(e.into()))?;
        let model = Model { family: self.family, penalty, fit_intercept: self.fit_intercept };
        let options = Options { max_iter: self.max_iter as usize, tol: self.tol };
        let f = fit(data, model, solver, options).map_err(|e| self.err(e))?;
        Ok(FittedGlm::new(self.family, classes, f))
    }

    /// Fits on in-memory `x` and `y` (labels already encoded for logistic).
    fn fit_memory(
        &self,
        x: ArrayView2<'_, f64>,
        y: ArrayView1<'_, f64>,
        classes: Option<Vec<f64>>,
    ) -> Result<FittedGlm, MlError> {
        let data = InMemory::new(self.family, x, y, None, self.chunk_rows as usize)
            .map_err(|e| self.err(e))?;
        self.fit(&data, classes)
    }

    /// Fits on chunked arrays on `scheduler`.
    fn fit_chunked(
        &self,
        x: &Array<f64>,
        y: &Array<f64>,
        scheduler: Scheduler,
        classes: Option<Vec<f64>>,
    ) -> Result<FittedGlm, MlError> {
        let data = Chunked::new(self.family, x, y, None, scheduler).map_err(|e| self.err(e))?;
        self.fit(&data, classes)
    }
}

/// A fitted GLM (any of the three estimators).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedGlm {
    /// The family.
    pub family: Family,
    /// The class labels of a logistic model, sorted (binary: `classes[1]`
    /// is the positive class; more: the multinomial family).
    pub classes: Option<Vec<f64>>,
    /// The coefficients (`K × p` class-major for the multinomial family).
    pub coef: Array1<f64>,
    /// The intercepts (one, or one per class; 0 without them).
    pub intercepts: Array1<f64>,
    /// Iterations the solver ran.
    pub n_iter: usize,
    /// Whether it reached its tolerance.
    pub converged: bool,
    /// The objective at the end.
    pub objective: f64,
}

impl FittedGlm {
    fn new(family: Family, classes: Option<Vec<f64>>, f: Fit) -> FittedGlm {
        FittedGlm {
            family,
            classes,
            coef: f.coef,
            intercepts: f.intercepts,
            n_iter: f.n_iter,
            converged: f.converged,
            objective: f.objective,
        }
    }

    /// What a prediction of this model is.
    fn output(&self, proba: bool) -> Prediction {
        match (&self.classes, proba) {
            (Some(c), true) => Prediction::Proba(c.len()),
            (Some(c), false) => Prediction::Class(c.clone()),
            (None, _) => Prediction::Mean(self.family),
        }
    }

    /// The number of features.
    fn features(&self) -> usize {
        self.coef.len() / self.intercepts.len()
    }

    /// Predictions for chunked `x`, block by block: a chunked array with
    /// `x`'s row chunks (class labels for a classifier, means otherwise).
    pub fn predict_chunked(&self, x: &Array<f64>) -> Result<Array<f64>, GlmError> {
        self.map_rows(x, self.output(false))
    }

    /// Class probabilities for chunked `x` (logistic models): `n × 2`, columns
    /// in the order of `classes`.
    pub fn predict_proba_chunked(&self, x: &Array<f64>) -> Result<Array<f64>, GlmError> {
        if self.classes.is_none() {
            return Err(GlmError::Shape {
                what: "predict_proba".into(),
                message: "only a logistic model has class probabilities".into(),
            });
        }
        self.map_rows(x, self.output(true))
    }

    /// The default score on chunked `x` and `y`, as a sum over blocks run on
    /// `scheduler`: accuracy (logistic), R² (normal), D² (Poisson, the share
    /// of deviance explained, as scikit-learn's `PoissonRegressor.score`).
    pub fn score_chunked(
        &self,
        x: &Array<f64>,
        y: &Array<f64>,
        scheduler: &Scheduler,
    ) -> Result<f64, GlmError> {
        let x = self.row_blocks(x)?;
        let rows = x.chunks()[0].clone();
        if y.shape() != [x.shape()[0]] {
            return Err(GlmError::Shape {
                what: "y".into(),
                message: format!("shape {:?}, but X has {} rows", y.shape(), x.shape()[0]),
            });
        }
        let y = y
            .rechunk(ChunkSpec::Explicit(vec![rows]))
            .map_err(|e| GlmError::Shape { what: "y".into(), message: e.to_string() })?;
        let parts: Vec<Delayed<ScoreSums>> = x
            .blocks()
            .iter()
            .zip(y.blocks().iter())
            .map(|(xb, yb)| {
                let (coef, b) = (self.coef.to_vec(), self.intercepts.to_vec());
                glm_score_block(xb, yb, coef, b, self.output(false))
            })
            .collect();
        let all = rask_core::collect(parts);
        let sums = glm_sum_scores(all)
            .compute_with(scheduler, &ComputeOptions::default())
            .map_err(|e| GlmError::Compute { message: e.to_string() })?;
        Ok(sums.score(self.family))
    }

    /// `x` with one column chunk (rows stay as they are), checked against the model.
    fn row_blocks(&self, x: &Array<f64>) -> Result<Array<f64>, GlmError> {
        let p = self.features();
        if x.ndim() != 2 || x.shape()[1] != p {
            return Err(GlmError::Shape {
                what: "X".into(),
                message: format!("shape {:?}, but the model has {p} features", x.shape()),
            });
        }
        x.rechunk(ChunkSpec::Explicit(vec![x.chunks()[0].clone(), vec![p]]))
            .map_err(|e| GlmError::Shape { what: "X".into(), message: e.to_string() })
    }

    fn map_rows(&self, x: &Array<f64>, what: Prediction) -> Result<Array<f64>, GlmError> {
        let x = self.row_blocks(x)?;
        let rows = x.chunks()[0].clone();
        let blocks: Vec<Delayed<Block>> = x
            .blocks()
            .iter()
            .map(|b| {
                let (coef, intercepts) = (self.coef.to_vec(), self.intercepts.to_vec());
                glm_predict_block(b, coef, intercepts, what.clone())
            })
            .collect();
        let (chunks, shape) = match what {
            Prediction::Proba(k) => (vec![rows.clone(), vec![k]], vec![rows.len(), 1]),
            _ => (vec![rows.clone()], vec![rows.len()]),
        };
        let grid = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&shape), blocks)
            .expect("one block per row chunk");
        Ok(Array::from_blocks(format!("predict({})", x.name()), chunks, grid))
    }
}

/// What a prediction block holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Prediction {
    /// The mean (the family's inverse link of η).
    Mean(Family),
    /// The most probable class's label (of these sorted labels).
    Class(Vec<f64>),
    /// The probabilities of this many classes.
    Proba(usize),
}

impl Prediction {
    /// The family the prediction comes from.
    fn family(&self) -> Family {
        let classes = match self {
            Prediction::Mean(family) => return *family,
            Prediction::Class(labels) => labels.len(),
            Prediction::Proba(k) => *k,
        };
        if classes == 2 {
            Family::Logistic
        } else {
            Family::Multinomial { classes }
        }
    }
}

/// The linear predictors of `x`: `n × k` (`coef` class-major).
fn linear(x: ArrayView2<'_, f64>, coef: &[f64], b: &[f64]) -> Array2<f64> {
    let k = b.len();
    let p = coef.len() / k;
    let w = ArrayView2::from_shape((k, p), coef).expect("k × p coefficients");
    x.dot(&w.t()) + ArrayView1::from(b)
}

/// Class probabilities from linear predictors (binary: one column, the positive class's).
fn probabilities(eta: &Array2<f64>) -> Array2<f64> {
    if eta.ncols() == 1 {
        let mut out = Array2::zeros((eta.nrows(), 2));
        for (i, &e) in eta.column(0).iter().enumerate() {
            let p = Family::Logistic.mean(e);
            out[[i, 0]] = 1.0 - p;
            out[[i, 1]] = p;
        }
        return out;
    }
    let mut out = eta.clone();
    for mut row in out.rows_mut() {
        let top = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        row.mapv_inplace(|v| (v - top).exp());
        let total = row.sum();
        row /= total;
    }
    out
}

/// Predictions of rows of `x`: `n × 1`, or `n × K` probabilities.
fn predict_rows(x: ArrayView2<'_, f64>, coef: &[f64], b: &[f64], what: &Prediction) -> Array2<f64> {
    let eta = linear(x, coef, b);
    match what {
        Prediction::Mean(family) => eta.mapv(|e| family.mean(e)),
        Prediction::Class(labels) => {
            let proba = probabilities(&eta);
            Array1::from_iter(proba.rows().into_iter().map(|r| labels[argmax(r)]))
                .insert_axis(ndarray::Axis(1))
        }
        Prediction::Proba(_) => probabilities(&eta),
    }
}

/// Sums of one block that the scores are made of.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreSums {
    n: f64,
    correct: f64,
    sum_y: f64,
    sum_y2: f64,
    sse: f64,
    /// `Σ 2 (y log(y/μ) − (y − μ))`: the Poisson deviance of the model.
    deviance: f64,
    /// `Σ y log y` (0 log 0 = 0): with `Σ y` it gives the null deviance.
    sum_ylogy: f64,
}

impl ScoreSums {
    fn add(&mut self, o: &ScoreSums) {
        self.n += o.n;
        self.correct += o.correct;
        self.sum_y += o.sum_y;
        self.sum_y2 += o.sum_y2;
        self.sse += o.sse;
        self.deviance += o.deviance;
        self.sum_ylogy += o.sum_ylogy;
    }

    fn score(&self, family: Family) -> f64 {
        let mean = self.sum_y / self.n;
        match family {
            Family::Logistic | Family::Multinomial { .. } => self.correct / self.n,
            Family::Normal => 1.0 - self.sse / (self.sum_y2 - self.n * mean * mean),
            Family::Poisson => {
                // Null deviance Σ 2 (y log(y/ȳ) − (y − ȳ)) = 2 (Σ y log y − log ȳ Σ y).
                let null = 2.0 * (self.sum_ylogy - mean.ln() * self.sum_y);
                1.0 - self.deviance / null
            }
        }
    }

    fn of(y: ArrayView1<'_, f64>, pred: ArrayView1<'_, f64>, family: Family) -> ScoreSums {
        let mut s = ScoreSums { n: y.len() as f64, ..ScoreSums::default() };
        for (&t, &p) in y.iter().zip(pred) {
            s.sum_y += t;
            s.sum_y2 += t * t;
            s.correct += f64::from(t == p);
            s.sse += (t - p) * (t - p);
            let ylogy = if t > 0.0 { t * t.ln() } else { 0.0 };
            if family == Family::Poisson {
                s.sum_ylogy += ylogy;
                s.deviance += 2.0 * (ylogy - t * p.ln() - (t - p));
            }
        }
        s
    }
}

fn view2(b: &Block) -> Result<ArrayView2<'_, f64>, String> {
    match b.data() {
        rask_core::array::BlockData::F64(a) => {
            a.view().into_dimensionality::<Ix2>().map_err(|e| format!("X block: {e}"))
        }
        other => Err(format!("X block holds {} data, float64 expected", other.dtype())),
    }
}

rask_core::op! {
    /// Predictions of one row block of X.
    pub fn glm_predict_block(x: Block, coef: Vec<f64>, intercepts: Vec<f64>, what: Prediction) -> Result<Block, String> {
        let out = predict_rows(view2(&x)?, &coef, &intercepts, &what);
        Ok(match what {
            Prediction::Proba(_) => Block::from_array(out.into_dyn()),
            _ => Block::from_array(out.column(0).to_owned().into_dyn()),
        })
    }

    /// Score sums of one row block.
    pub fn glm_score_block(x: Block, y: Block, coef: Vec<f64>, intercepts: Vec<f64>, what: Prediction) -> Result<ScoreSums, String> {
        let x = view2(&x)?;
        let y = match y.data() {
            rask_core::array::BlockData::F64(a) => a.view().into_dimensionality::<ndarray::Ix1>().map_err(|e| format!("y block: {e}"))?,
            other => return Err(format!("y block holds {} data, float64 expected", other.dtype())),
        };
        let pred = predict_rows(x, &coef, &intercepts, &what);
        Ok(ScoreSums::of(y, pred.column(0), what.family()))
    }

    /// Adds score sums.
    pub fn glm_sum_scores(parts: Vec<ScoreSums>) -> ScoreSums {
        let mut total = ScoreSums::default();
        parts.iter().for_each(|p| total.add(p));
        total
    }
}

impl FittedModel for FittedGlm {
    fn n_features(&self) -> usize {
        self.features()
    }

    fn predict(&self, x: ArrayView2<'_, f64>) -> Output<Array1<f64>> {
        let coef = self.coef.as_slice().expect("owned");
        let b = self.intercepts.as_slice().expect("owned");
        let out = predict_rows(x, coef, b, &self.output(false));
        Some(Ok(out.column(0).to_owned()))
    }

    fn predict_proba(&self, x: ArrayView2<'_, f64>) -> Output<Array2<f64>> {
        self.classes.as_ref()?;
        let coef = self.coef.as_slice().expect("owned");
        let b = self.intercepts.as_slice().expect("owned");
        Some(Ok(predict_rows(x, coef, b, &self.output(true))))
    }

    fn classes(&self) -> Option<&[f64]> {
        self.classes.as_deref()
    }

    fn custom_score(&self, x: ArrayView2<'_, f64>, y: Option<ArrayView1<'_, f64>>) -> Option<f64> {
        // Poisson models score by D², as scikit-learn's PoissonRegressor.
        if self.family != Family::Poisson {
            return None;
        }
        let mu = self.predict(x)?.ok()?;
        Some(ScoreSums::of(y?, mu.view(), Family::Poisson).score(Family::Poisson))
    }
}

impl FitParams for GlmLogisticRegressionParams {
    type Fitted = FittedGlm;

    fn fit(
        params: &Checked<Self>,
        x: ArrayView2<'_, f64>,
        y: Option<ArrayView1<'_, f64>>,
    ) -> Result<FittedGlm, MlError> {
        let name = "GlmLogisticRegression";
        let y = require_y(name, y)?;
        let (classes, idx) = encode_classes(name, y)?;
        // Two classes: the logistic family; more: the multinomial one.
        let family = logistic_family(classes.len());
        let index = Array1::from_iter(idx.iter().map(|&i| i as f64));
        Spec { family, ..params.spec() }.fit_memory(x, index.view(), Some(classes))
    }
}

/// The family of a logistic model of `classes` classes.
fn logistic_family(classes: usize) -> Family {
    if classes == 2 {
        Family::Logistic
    } else {
        Family::Multinomial { classes }
    }
}

/// `FitParams` of a regressor: the targets as they are.
macro_rules! regressor_fit {
    ($Params:ident, $est:literal) => {
        impl FitParams for $Params {
            type Fitted = FittedGlm;

            fn fit(
                params: &Checked<Self>,
                x: ArrayView2<'_, f64>,
                y: Option<ArrayView1<'_, f64>>,
            ) -> Result<FittedGlm, MlError> {
                let y = require_y($est, y)?;
                params.spec().fit_memory(x, y, None)
            }
        }
    };
}

regressor_fit!(GlmLinearRegressionParams, "GlmLinearRegression");
regressor_fit!(GlmPoissonRegressorParams, "GlmPoissonRegressor");

rask_ml::estimator!(
    /// Logistic regression on chunked data with any of the five solvers
    /// (see [`GlmLogisticRegressionParams`] and the module docs).
    GlmLogisticRegression, GlmLogisticRegressionParams, FittedGlm, "GlmLogisticRegression", Kind::Classifier
);

rask_ml::estimator!(
    /// Least squares with an elastic-net penalty on chunked data (see
    /// [`GlmLinearRegressionParams`]).
    GlmLinearRegression, GlmLinearRegressionParams, FittedGlm, "GlmLinearRegression", Kind::Regressor
);

rask_ml::estimator!(
    /// Poisson regression (log link) on chunked data (see [`GlmPoissonRegressorParams`]).
    GlmPoissonRegressor, GlmPoissonRegressorParams, FittedGlm, "GlmPoissonRegressor", Kind::Regressor
);

macro_rules! chunked_fit {
    ($Name:ident, $Params:ident, $labels:literal) => {
        impl $Name {
            #[doc = concat!("Fits on chunked `x` (rows × features) and `y` on `scheduler`: the passes run as task graphs, so data larger than memory streams from its files and a cluster fits where the data is. ", $labels)]
            pub fn fit_chunked(
                &mut self,
                x: &Array<f64>,
                y: &Array<f64>,
                scheduler: Scheduler,
            ) -> Result<&FittedGlm, MlError> {
                self.fitted = None;
                let params: Checked<$Params> = Checked::new(self.params.clone())?;
                let mut spec = params.spec();
                let mut classes = None;
                if spec.family == Family::Logistic {
                    // Class indices 0..K: K from the largest label (one
                    // reduction over y; the data checks reject the rest).
                    let top = y
                        .max(&[])
                        .and_then(|m| m.compute_with(&scheduler, &rask_core::ComputeOptions::default()))
                        .map_err(|e| spec.err(GlmError::Compute { message: e.to_string() }))?;
                    let top = top.iter().next().copied().unwrap_or(1.0).max(1.0);
                    if top >= MAX_CLASSES as f64 {
                        return Err(MlError::Labels {
                            estimator: spec.estimator.into(),
                            message: format!(
                                "the largest label is {top}; labels of chunked data are class indices 0..K with K <= {MAX_CLASSES}"
                            ),
                        });
                    }
                    let k = top as usize + 1;
                    spec.family = logistic_family(k);
                    classes = Some((0..k).map(|c| c as f64).collect());
                }
                let fitted = spec.fit_chunked(x, y, scheduler, classes)?;
                Ok(self.fitted.insert(fitted))
            }
        }
    };
}

chunked_fit!(
    GlmLogisticRegression,
    GlmLogisticRegressionParams,
    "Labels must be class indices 0, 1, ..., K − 1 (the classes are then `[0, ..., K − 1]`; K > 2 fits the multinomial family)."
);
chunked_fit!(GlmLinearRegression, GlmLinearRegressionParams, "");
chunked_fit!(GlmPoissonRegressor, GlmPoissonRegressorParams, "Targets must be counts (>= 0).");
