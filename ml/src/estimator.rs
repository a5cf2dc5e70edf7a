//! The two layers of every estimator.
//!
//! **Typed** (linfa style): a `FooParams` value (built with its builder methods,
//! validated by `check`) implements [`FitParams`], whose `fit` returns a
//! `FittedFoo` implementing [`FittedModel`] (predict / transform / …).
//!
//! **Dynamic** (for pipelines and search): the `Foo` wrapper — params plus an
//! optional fitted model — implements the object-safe [`Estimator`]: hyperparameters
//! by name, `fit`, `predict`, `score`, `clone_unfitted`, and serialization
//! through the registry of type names ([`save`], [`load`], [`create`]), so a
//! process that never saw the value can rebuild it.

use std::fmt;

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use rask_core::key::{Token, TokenHasher};

use crate::error::MlError;
use crate::params::{params_token_into, CheckParams, Checked, ParamValue, Params};

/// What an estimator is for (decides its default `score`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Predicts classes; scored by accuracy.
    Classifier,
    /// Predicts numbers; scored by R².
    Regressor,
    /// Transforms features.
    Transformer,
    /// Assigns clusters.
    Clusterer,
}

/// Typed fitting (the linfa-style layer): checked parameters in, fitted model out.
/// Implemented on the parameter type; called as `params.check()?.fit(x, y)`.
pub trait FitParams: CheckParams + Sized {
    /// The fitted model.
    type Fitted: FittedModel;
    /// Fits on `x` (n_samples × n_features) and, for supervised models, `y`.
    /// Inputs are already checked for shape and finiteness by the caller.
    fn fit(
        params: &Checked<Self>,
        x: ArrayView2<'_, f64>,
        y: Option<ArrayView1<'_, f64>>,
    ) -> Result<Self::Fitted, MlError>;
}

/// The result of a fitted model's method: `None` when the model does not support it.
pub type Output<T> = Option<Result<T, MlError>>;

/// What a fitted model can do. Unsupported methods return `None` (the dynamic
/// layer turns that into [`MlError::NotSupported`]).
pub trait FittedModel {
    /// Number of features seen at fit.
    fn n_features(&self) -> usize;
    /// Predictions (class labels for classifiers).
    fn predict(&self, _x: ArrayView2<'_, f64>) -> Output<Array1<f64>> {
        None
    }
    /// Class probabilities, columns in the order of `classes`.
    fn predict_proba(&self, _x: ArrayView2<'_, f64>) -> Output<Array2<f64>> {
        None
    }
    /// Transformed features.
    fn transform(&self, _x: ArrayView2<'_, f64>) -> Output<Array2<f64>> {
        None
    }
    /// Class labels, sorted (classifiers).
    fn classes(&self) -> Option<&[f64]> {
        None
    }
    /// A model-specific score (e.g. KMeans' negative inertia); `None` uses the kind's default.
    fn custom_score(
        &self,
        _x: ArrayView2<'_, f64>,
        _y: Option<ArrayView1<'_, f64>>,
    ) -> Option<f64> {
        None
    }
}

/// The object-safe estimator interface used by pipelines, search and workers.
pub trait Estimator: Send + Sync + fmt::Debug + 'static {
    /// The registered type name (`"LogisticRegression"`).
    fn type_name(&self) -> &'static str;
    /// Classifier, regressor, transformer or clusterer.
    fn kind(&self) -> Kind;
    /// Hyperparameters by name.
    fn get_params(&self) -> Params;
    /// Sets one hyperparameter (validated); forgets any fitted model.
    fn set_param(&mut self, name: &str, value: ParamValue) -> Result<(), MlError>;
    /// Fits on `x` and, for supervised estimators, `y`.
    fn fit(
        &mut self,
        x: ArrayView2<'_, f64>,
        y: Option<ArrayView1<'_, f64>>,
    ) -> Result<(), MlError>;
    /// Whether `fit` has succeeded.
    fn is_fitted(&self) -> bool;
    /// Predictions.
    fn predict(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>, MlError>;
    /// Class probabilities (classifiers).
    fn predict_proba(&self, x: ArrayView2<'_, f64>) -> Result<Array2<f64>, MlError>;
    /// Transformed features (transformers).
    fn transform(&self, x: ArrayView2<'_, f64>) -> Result<Array2<f64>, MlError>;
    /// Class labels seen at fit (classifiers).
    fn classes(&self) -> Option<Vec<f64>>;
    /// The default score: accuracy (classifiers), R² (regressors), or the model's own.
    fn score(&self, x: ArrayView2<'_, f64>, y: ArrayView1<'_, f64>) -> Result<f64, MlError>;
    /// The same estimator with the same hyperparameters, unfitted.
    fn clone_unfitted(&self) -> Box<dyn Estimator>;
    /// A full copy, fitted state included.
    fn clone_box(&self) -> Box<dyn Estimator>;
    /// The serde encoding of this estimator (its registry entry decodes it).
    fn state(&self) -> Result<Vec<u8>, MlError>;
    /// The named steps, when this estimator is a pipeline.
    fn pipeline_steps(&self) -> Option<&[(String, Box<dyn Estimator>)]> {
        None
    }
}

impl Clone for Box<dyn Estimator> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

/// The content token of an estimator's type and hyperparameters (not of its
/// fitted state): the key of "this configuration" in search graphs.
pub fn config_token(est: &dyn Estimator) -> Token {
    let mut h = TokenHasher::new();
    config_token_into(est, &mut h);
    h.finish()
}

/// Feeds an estimator's type and hyperparameters into a token.
pub fn config_token_into(est: &dyn Estimator, h: &mut TokenHasher) {
    h.str(est.type_name());
    params_token_into(&est.get_params(), h);
}

// ---------------------------------------------------------------- checks

/// Checks that `x` is non-empty and finite.
pub fn check_x(estimator: &str, x: ArrayView2<'_, f64>) -> Result<(), MlError> {
    if x.nrows() == 0 || x.ncols() == 0 {
        return Err(MlError::Shape {
            estimator: estimator.into(),
            message: format!(
                "X has shape ({}, {}); at least one sample and one feature are needed",
                x.nrows(),
                x.ncols()
            ),
        });
    }
    // Fast path: a vectorizable scan; locate the culprit only when there is one.
    let all_finite = match x.as_slice_memory_order() {
        Some(s) => {
            // v·0 is 0 for finite v and NaN otherwise; eight lanes vectorize.
            let mut lanes = [0.0f64; 8];
            let chunks = s.chunks_exact(8);
            let tail = chunks.remainder().iter().fold(0.0, |a, v| a + v * 0.0);
            for c in chunks {
                for k in 0..8 {
                    lanes[k] += c[k] * 0.0;
                }
            }
            (lanes.iter().sum::<f64>() + tail).is_finite()
        }
        None => x.iter().all(|v| v.is_finite()),
    };
    if all_finite {
        return Ok(());
    }
    let ((row, col), &value) =
        x.indexed_iter().find(|(_, v)| !v.is_finite()).expect("a non-finite value exists");
    Err(MlError::NonFinite { estimator: estimator.into(), what: "X".into(), value, row, col })
}

/// Checks `x`, and `y` when given: same number of samples, finite values.
pub fn check_xy(
    estimator: &str,
    x: ArrayView2<'_, f64>,
    y: Option<ArrayView1<'_, f64>>,
) -> Result<(), MlError> {
    check_x(estimator, x)?;
    match y {
        Some(y) => check_y(estimator, x.nrows(), y),
        None => Ok(()),
    }
}

/// Checks that `y` has `n` finite values.
pub fn check_y(estimator: &str, n: usize, y: ArrayView1<'_, f64>) -> Result<(), MlError> {
    if y.len() != n {
        return Err(MlError::Shape {
            estimator: estimator.into(),
            message: format!(
                "X has {n} samples but y has {}; they must have the same length",
                y.len()
            ),
        });
    }
    match y.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(row) => Err(MlError::NonFinite {
            estimator: estimator.into(),
            what: "y".into(),
            value: y[row],
            row,
            col: 0,
        }),
    }
}

/// `y`, required by supervised estimators.
pub fn require_y<'a>(
    estimator: &str,
    y: Option<ArrayView1<'a, f64>>,
) -> Result<ArrayView1<'a, f64>, MlError> {
    y.ok_or_else(|| MlError::Shape {
        estimator: estimator.into(),
        message: "y is required for a supervised estimator".into(),
    })
}

/// `-0.0` as `0.0`, so that labels and categories compare by value under `total_cmp`.
pub fn canonical(v: f64) -> f64 {
    if v == 0.0 {
        0.0
    } else {
        v
    }
}

/// Sorted distinct class labels of `y`, and each sample's class index. Labels must
/// be integers (as floats) and there must be at least two classes.
pub fn encode_classes(
    estimator: &str,
    y: ArrayView1<'_, f64>,
) -> Result<(Vec<f64>, Vec<usize>), MlError> {
    if let Some((row, &v)) = y.iter().enumerate().find(|(_, v)| v.fract() != 0.0) {
        return Err(MlError::Labels {
            estimator: estimator.into(),
            message: format!("class labels must be integers, found {v} at row {row}; use a regressor for continuous targets"),
        });
    }
    let mut classes: Vec<f64> = y.iter().map(|&v| canonical(v)).collect();
    classes.sort_by(f64::total_cmp);
    classes.dedup();
    if classes.len() < 2 {
        return Err(MlError::Labels {
            estimator: estimator.into(),
            message: format!("needs samples of at least 2 classes, got only {:?}", classes),
        });
    }
    let idx = y
        .iter()
        .map(|&v| {
            classes.binary_search_by(|c| c.total_cmp(&canonical(v))).expect("label is a class")
        })
        .collect();
    Ok((classes, idx))
}

/// Each row of scores turned into probabilities in place (a stable softmax:
/// the row's maximum is subtracted before exponentiating).
pub fn softmax_rows(p: &mut ndarray::Array2<f64>) {
    for mut row in p.rows_mut() {
        let m = row.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        row.mapv_inplace(|v| (v - m).exp());
        let s = row.sum();
        row /= s;
    }
}

/// The index of the smallest entry of a row (the first on ties).
pub fn argmin_row(r: ArrayView1<'_, f64>) -> usize {
    let mut best = 0;
    for (i, &v) in r.iter().enumerate() {
        if v < r[best] {
            best = i;
        }
    }
    best
}

/// Index of the largest value (the first on ties, as NumPy's argmax): the
/// predicted class of a row of scores or probabilities.
pub fn argmax(r: ArrayView1<'_, f64>) -> usize {
    let mut best = 0;
    for (i, &v) in r.iter().enumerate() {
        if v > r[best] {
            best = i;
        }
    }
    best
}

// ---------------------------------------------------------------- registry

/// A registry entry: how to create and load an estimator by type name.
pub struct EstimatorEntry {
    /// Registered type name.
    pub name: &'static str,
    /// A default-configured, unfitted instance.
    pub create: fn() -> Box<dyn Estimator>,
    /// Decodes [`Estimator::state`].
    pub load: LoadFn,
}

/// Decodes an estimator from its saved state.
pub type LoadFn = fn(&[u8]) -> Result<Box<dyn Estimator>, MlError>;

inventory::collect!(EstimatorEntry);

fn entry(name: &str) -> Result<&'static EstimatorEntry, MlError> {
    inventory::iter::<EstimatorEntry>.into_iter().find(|e| e.name == name).ok_or_else(|| {
        MlError::UnknownEstimator { name: name.into(), known: registered_estimators() }
    })
}

/// Registered type names, sorted.
pub fn registered_estimators() -> Vec<String> {
    let mut v: Vec<String> =
        inventory::iter::<EstimatorEntry>.into_iter().map(|e| e.name.to_string()).collect();
    v.sort();
    v
}

/// A default-configured estimator by type name (`create("PCA")`).
pub fn create(name: &str) -> Result<Box<dyn Estimator>, MlError> {
    Ok((entry(name)?.create)())
}

const MAGIC: &[u8; 4] = b"RSKE";
const VERSION: u8 = 1;

/// Serializes an estimator, fitted or not: a versioned envelope of its type name and state.
pub fn save(est: &dyn Estimator) -> Result<Vec<u8>, MlError> {
    let state = est.state()?;
    let name = est.type_name().as_bytes();
    let mut out = Vec::with_capacity(state.len() + name.len() + 16);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&(name.len() as u32).to_le_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(&state);
    Ok(out)
}

/// Rebuilds an estimator saved by [`save`] (in this or another process).
pub fn load(bytes: &[u8]) -> Result<Box<dyn Estimator>, MlError> {
    let bad = |message: String| MlError::Serialization { estimator: "unknown".into(), message };
    if bytes.len() < 9 || &bytes[..4] != MAGIC {
        return Err(bad("not a saved Rask estimator (missing `RSKE` magic bytes)".into()));
    }
    if bytes[4] != VERSION {
        return Err(bad(format!(
            "saved with format version {}, this build reads version {VERSION}",
            bytes[4]
        )));
    }
    let n = u32::from_le_bytes(bytes[5..9].try_into().expect("4 bytes")) as usize;
    let name = bytes.get(9..9 + n).ok_or_else(|| bad("truncated type name".into()))?;
    let name = std::str::from_utf8(name).map_err(|_| bad("type name is not UTF-8".into()))?;
    (entry(name)?.load)(&bytes[9 + n..])
}

/// Encodes a value with postcard, naming the estimator on failure.
pub fn encode_state<T: serde::Serialize>(estimator: &str, value: &T) -> Result<Vec<u8>, MlError> {
    postcard::to_stdvec(value)
        .map_err(|e| MlError::Serialization { estimator: estimator.into(), message: e.to_string() })
}

/// Decodes a value encoded by [`encode_state`].
pub fn decode_state<T: serde::de::DeserializeOwned>(
    estimator: &str,
    bytes: &[u8],
) -> Result<T, MlError> {
    postcard::from_bytes(bytes)
        .map_err(|e| MlError::Serialization { estimator: estimator.into(), message: e.to_string() })
}

/// Defines the dynamic wrapper `$Name { params, fitted }` of a typed estimator,
/// implements [`Estimator`] for it from its `FitParams`/`FittedModel` impls, and
/// registers it under `$name`.
#[macro_export]
macro_rules! estimator {
    (
        $(#[$meta:meta])*
        $Name:ident, $Params:ty, $Fitted:ty, $name:literal, $kind:expr
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
        pub struct $Name {
            /// The hyperparameters.
            pub params: $Params,
            fitted: Option<$Fitted>,
        }

        impl $Name {
            /// A default-configured, unfitted estimator.
            pub fn new() -> Self {
                Self::default()
            }

            /// An unfitted estimator with these hyperparameters.
            pub fn with_params(params: $Params) -> Self {
                Self { params, fitted: None }
            }

            /// The fitted model, if `fit` has succeeded.
            pub fn fitted(&self) -> Option<&$Fitted> {
                self.fitted.as_ref()
            }

            fn model(&self, method: &str) -> Result<&$Fitted, $crate::MlError> {
                self.fitted.as_ref().ok_or_else(|| $crate::MlError::NotFitted {
                    estimator: $name.to_string(),
                    method: method.to_string(),
                })
            }

            fn checked(&self, method: &str, x: ndarray::ArrayView2<'_, f64>) -> Result<&$Fitted, $crate::MlError> {
                let m = self.model(method)?;
                $crate::estimator::check_x($name, x)?;
                let expected = $crate::FittedModel::n_features(m);
                if x.ncols() != expected {
                    return Err($crate::MlError::FeatureCount { estimator: $name.to_string(), expected, got: x.ncols() });
                }
                Ok(m)
            }
        }

        impl $crate::Estimator for $Name {
            fn type_name(&self) -> &'static str {
                $name
            }
            fn kind(&self) -> $crate::Kind {
                $kind
            }
            fn get_params(&self) -> $crate::Params {
                self.params.get_params()
            }
            fn set_param(&mut self, name: &str, value: $crate::ParamValue) -> Result<(), $crate::MlError> {
                self.params.set_param(name, value)?;
                self.fitted = None;
                Ok(())
            }
            fn fit(
                &mut self,
                x: ndarray::ArrayView2<'_, f64>,
                y: Option<ndarray::ArrayView1<'_, f64>>,
            ) -> Result<(), $crate::MlError> {
                self.fitted = None;
                let params = $crate::params::Checked::new(self.params.clone())?;
                $crate::estimator::check_xy($name, x, y)?;
                self.fitted = Some(params.fit(x, y)?);
                Ok(())
            }
            fn is_fitted(&self) -> bool {
                self.fitted.is_some()
            }
            fn predict(&self, x: ndarray::ArrayView2<'_, f64>) -> Result<ndarray::Array1<f64>, $crate::MlError> {
                let m = self.checked("predict", x)?;
                $crate::FittedModel::predict(m, x).unwrap_or_else(|| Err($crate::MlError::NotSupported {
                    estimator: $name.to_string(),
                    method: "predict".to_string(),
                }))
            }
            fn predict_proba(&self, x: ndarray::ArrayView2<'_, f64>) -> Result<ndarray::Array2<f64>, $crate::MlError> {
                let m = self.checked("predict_proba", x)?;
                $crate::FittedModel::predict_proba(m, x).unwrap_or_else(|| Err($crate::MlError::NotSupported {
                    estimator: $name.to_string(),
                    method: "predict_proba".to_string(),
                }))
            }
            fn transform(&self, x: ndarray::ArrayView2<'_, f64>) -> Result<ndarray::Array2<f64>, $crate::MlError> {
                let m = self.checked("transform", x)?;
                $crate::FittedModel::transform(m, x).unwrap_or_else(|| Err($crate::MlError::NotSupported {
                    estimator: $name.to_string(),
                    method: "transform".to_string(),
                }))
            }
            fn classes(&self) -> Option<Vec<f64>> {
                self.fitted.as_ref().and_then(|m| $crate::FittedModel::classes(m).map(|c| c.to_vec()))
            }
            fn score(&self, x: ndarray::ArrayView2<'_, f64>, y: ndarray::ArrayView1<'_, f64>) -> Result<f64, $crate::MlError> {
                // X is checked once (here or by `predict`); y here.
                let m = self.checked("score", x)?;
                $crate::estimator::check_y($name, x.nrows(), y)?;
                if let Some(s) = $crate::FittedModel::custom_score(m, x, Some(y)) {
                    return Ok(s);
                }
                $crate::estimator::default_score(self, m, x, y)
            }
            fn clone_unfitted(&self) -> Box<dyn $crate::Estimator> {
                Box::new(Self::with_params(self.params.clone()))
            }
            fn clone_box(&self) -> Box<dyn $crate::Estimator> {
                Box::new(self.clone())
            }
            fn state(&self) -> Result<Vec<u8>, $crate::MlError> {
                $crate::estimator::encode_state($name, self)
            }
        }

        $crate::inventory::submit! {
            $crate::estimator::EstimatorEntry {
                name: $name,
                create: || Box::new(<$Name>::default()),
                load: |bytes| {
                    let e: $Name = $crate::estimator::decode_state($name, bytes)?;
                    Ok(Box::new(e))
                },
            }
        }
    };
}

/// The default score of a fitted model on checked inputs: accuracy for
/// classifiers, R² for regressors.
pub fn default_score<M: FittedModel>(
    est: &dyn Estimator,
    m: &M,
    x: ArrayView2<'_, f64>,
    y: ArrayView1<'_, f64>,
) -> Result<f64, MlError> {
    let unsupported =
        || MlError::NotSupported { estimator: est.type_name().into(), method: "score".into() };
    let pred = || m.predict(x).unwrap_or_else(|| Err(unsupported()));
    match est.kind() {
        Kind::Classifier => Ok(crate::metrics::accuracy(y, pred()?.view())),
        Kind::Regressor => Ok(crate::metrics::r2(y, pred()?.view())),
        Kind::Transformer | Kind::Clusterer => Err(unsupported()),
    }
}
