//! `XGBClassifier` and `XGBRegressor`: XGBoost's scikit-learn estimators,
//! registered with their hyperparameters as data (so `GridSearchCV` and
//! `rask search` tune them and workers rebuild them by name). A fit trains
//! in this process through the C API; the fitted model is XGBoost's UBJSON,
//! so it saves, loads and travels as the library's own format.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use rask_ml::estimator::{encode_classes, require_y, FitParams, FittedModel, Kind, Output};
use rask_ml::params::Checked;
use rask_ml::MlError;
use serde::{Deserialize, Serialize};

use super::ffi::Booster;
use super::predict::{predict, raw_predict, Prediction};
use super::train::{dmatrix, train};
use super::XgbError;

/// `rask_ml::params!` with the hyperparameters both estimators share.
macro_rules! xgb_params {
    ($(#[$meta:meta])* pub struct $Params:ident for $est:literal { objective = $objective:literal; }) => {
        rask_ml::params! {
            $(#[$meta])*
            pub struct $Params for $est {
                /// Boosting rounds.
                n_estimators ("n_estimators"): i64 = 100, valid if |v| *v >= 1, "an integer >= 1";
                /// Tree depth at most (0: no limit, with `grow_policy` lossguide).
                max_depth ("max_depth"): i64 = 6, valid if |v| *v >= 0, "an integer >= 0";
                /// Shrinkage per round (XGBoost's `eta`).
                learning_rate ("learning_rate"): f64 = 0.3, valid if |v| *v > 0.0 && v.is_finite(), "a positive number";
                /// Share of rows sampled per tree.
                subsample ("subsample"): f64 = 1.0, valid if |v| *v > 0.0 && *v <= 1.0, "a number in (0, 1]";
                /// Share of columns sampled per tree.
                colsample_bytree ("colsample_bytree"): f64 = 1.0, valid if |v| *v > 0.0 && *v <= 1.0, "a number in (0, 1]";
                /// Hessian weight a child needs at least.
                min_child_weight ("min_child_weight"): f64 = 1.0, valid if |v| *v >= 0.0 && v.is_finite(), "a finite number >= 0";
                /// L2 penalty on leaf weights (XGBoost's `lambda`).
                reg_lambda ("reg_lambda"): f64 = 1.0, valid if |v| *v >= 0.0 && v.is_finite(), "a finite number >= 0";
                /// L1 penalty on leaf weights (XGBoost's `alpha`).
                reg_alpha ("reg_alpha"): f64 = 0.0, valid if |v| *v >= 0.0 && v.is_finite(), "a finite number >= 0";
                /// Histogram bins per feature.
                max_bin ("max_bin"): i64 = 256, valid if |v| *v >= 2, "an integer >= 2";
                /// Tree construction algorithm.
                tree_method ("tree_method"): String = "hist".to_string(), valid if |v| ["hist", "approx", "exact"].contains(&v.as_str()), "hist, approx or exact";
                /// The learning objective (XGBoost's names).
                objective ("objective"): String = $objective.to_string(), valid if |v| !v.is_empty(), "an XGBoost objective";
                /// Evaluation metric (empty: the objective's default).
                eval_metric ("eval_metric"): String = String::new(), valid if |_v| true, "an XGBoost metric name, or empty";
                /// Random seed.
                seed ("seed"): i64 = 0, valid if |_v| true, "an integer";
                /// Threads (0: every core).
                nthread ("nthread"): i64 = 0, valid if |v| *v >= 0, "an integer >= 0";
            }
        }

        impl $Params {
            /// XGBoost's own parameter names and values.
            fn library_params(&self) -> Vec<(&'static str, String)> {
                let mut p = vec![
                    ("max_depth", self.max_depth.to_string()),
                    ("eta", self.learning_rate.to_string()),
                    ("subsample", self.subsample.to_string()),
                    ("colsample_bytree", self.colsample_bytree.to_string()),
                    ("min_child_weight", self.min_child_weight.to_string()),
                    ("lambda", self.reg_lambda.to_string()),
                    ("alpha", self.reg_alpha.to_string()),
                    ("max_bin", self.max_bin.to_string()),
                    ("tree_method", self.tree_method.clone()),
                    ("objective", self.objective.clone()),
                    ("seed", self.seed.to_string()),
                    ("nthread", self.nthread.to_string()),
                ];
                if !self.eval_metric.is_empty() {
                    p.push(("eval_metric", self.eval_metric.clone()));
                }
                p
            }
        }
    };
}

xgb_params! {
    /// Hyperparameters of [`XGBClassifier`] (xgboost's `XGBClassifier`;
    /// more than two classes switch a `binary:` objective to `multi:softprob`).
    pub struct XGBClassifierParams for "XGBClassifier" { objective = "binary:logistic"; }
}

xgb_params! {
    /// Hyperparameters of [`XGBRegressor`] (xgboost's `XGBRegressor`).
    pub struct XGBRegressorParams for "XGBRegressor" { objective = "reg:squarederror"; }
}

/// A trained booster, kept as XGBoost's UBJSON (loaded per prediction call).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedXgb {
    /// The model in XGBoost's UBJSON format.
    pub model: Vec<u8>,
    /// Sorted class labels (classifiers).
    pub classes: Option<Vec<f64>>,
    /// Features seen at fit.
    pub n_features: usize,
}

fn fit_err(estimator: &str, e: XgbError) -> MlError {
    MlError::Fit { estimator: estimator.into(), library: "xgboost".into(), message: e.to_string() }
}

/// Trains `rounds` rounds of `params` on `x` and `labels`; the model as UBJSON.
fn train_model(
    x: ArrayView2<'_, f64>,
    labels: &[f64],
    params: &[(&'static str, String)],
    rounds: i64,
) -> Result<Vec<u8>, XgbError> {
    let d = dmatrix(x, Some(labels), 0)?;
    train(&d, &[], params, rounds as usize, None, |_| {})?.booster.save("ubj")
}

impl FittedXgb {
    /// The model in XGBoost's JSON format (`xgboost.Booster(model_file=...)` reads it).
    pub fn to_json(&self) -> Result<Vec<u8>, XgbError> {
        Booster::load(&self.model)?.save("json")
    }

    /// The library's predictions for `x`: values and shape.
    pub fn raw_predict(&self, x: ArrayView2<'_, f64>) -> Result<(Vec<f32>, Vec<usize>), XgbError> {
        raw_predict(&self.model, x)
    }

    /// What `predict` (or, with `proba`, `predict_proba`) gives for this model.
    pub(crate) fn prediction(&self, proba: bool) -> Prediction {
        match (&self.classes, proba) {
            (Some(c), true) => Prediction::Proba(c.len()),
            (Some(c), false) => Prediction::Class(c.clone()),
            (None, _) => Prediction::Value,
        }
    }
}

impl FittedModel for FittedXgb {
    fn n_features(&self) -> usize {
        self.n_features
    }

    fn predict(&self, x: ArrayView2<'_, f64>) -> Output<Array1<f64>> {
        let out = predict(&self.model, x, &self.prediction(false));
        Some(
            out.map(|a| a.into_dimensionality().expect("one per row"))
                .map_err(|e| fit_err("XGBoost", e)),
        )
    }

    fn predict_proba(&self, x: ArrayView2<'_, f64>) -> Output<Array2<f64>> {
        self.classes.as_ref()?;
        let out = predict(&self.model, x, &self.prediction(true));
        Some(
            out.map(|a| a.into_dimensionality().expect("rows × classes"))
                .map_err(|e| fit_err("XGBClassifier", e)),
        )
    }

    fn classes(&self) -> Option<&[f64]> {
        self.classes.as_deref()
    }
}

impl FitParams for XGBClassifierParams {
    type Fitted = FittedXgb;

    fn fit(
        params: &Checked<Self>,
        x: ArrayView2<'_, f64>,
        y: Option<ArrayView1<'_, f64>>,
    ) -> Result<FittedXgb, MlError> {
        let name = "XGBClassifier";
        let y = require_y(name, y)?;
        let (classes, idx) = encode_classes(name, y)?;
        let labels: Vec<f64> = idx.iter().map(|&i| i as f64).collect();
        let mut lib = params.library_params();
        if classes.len() > 2 {
            if params.objective.starts_with("binary:") {
                lib.retain(|(k, _)| *k != "objective");
                lib.push(("objective", "multi:softprob".into()));
            }
            lib.push(("num_class", classes.len().to_string()));
        }
        let model =
            train_model(x, &labels, &lib, params.n_estimators).map_err(|e| fit_err(name, e))?;
        Ok(FittedXgb { model, classes: Some(classes), n_features: x.ncols() })
    }
}

/// Labels outside the objective's range, found before XGBoost does (its
/// own message names the base score, not the labels).
fn check_labels(estimator: &str, objective: &str, y: ArrayView1<'_, f64>) -> Result<(), MlError> {
    let (ok, range): (fn(f64) -> bool, &str) = match objective {
        o if o.starts_with("binary:") || o == "reg:logistic" => {
            (|v| (0.0..=1.0).contains(&v), "in [0, 1]")
        }
        "count:poisson" | "reg:tweedie" => (|v| v >= 0.0, ">= 0"),
        "reg:gamma" => (|v| v > 0.0, "> 0"),
        _ => return Ok(()),
    };
    match y.iter().position(|&v| !ok(v)) {
        None => Ok(()),
        Some(row) => Err(MlError::Labels {
            estimator: estimator.into(),
            message: format!(
                "objective {objective} needs labels {range}, but row {row} has {}",
                y[row]
            ),
        }),
    }
}

impl FitParams for XGBRegressorParams {
    type Fitted = FittedXgb;

    fn fit(
        params: &Checked<Self>,
        x: ArrayView2<'_, f64>,
        y: Option<ArrayView1<'_, f64>>,
    ) -> Result<FittedXgb, MlError> {
        let name = "XGBRegressor";
        let y = require_y(name, y)?;
        check_labels(name, &params.objective, y)?;
        let labels = y.to_vec();
        let model = train_model(x, &labels, &params.library_params(), params.n_estimators)
            .map_err(|e| fit_err(name, e))?;
        Ok(FittedXgb { model, classes: None, n_features: x.ncols() })
    }
}

rask_ml::estimator!(
    /// Gradient-boosted trees for classification, trained by libxgboost
    /// (see [`XGBClassifierParams`]).
    XGBClassifier, XGBClassifierParams, FittedXgb, "XGBClassifier", Kind::Classifier
);

rask_ml::estimator!(
    /// Gradient-boosted trees for regression, trained by libxgboost (see [`XGBRegressorParams`]).
    XGBRegressor, XGBRegressorParams, FittedXgb, "XGBRegressor", Kind::Regressor
);
