//! Trees and forests: `DecisionTreeClassifier` (linfa-trees) and the random
//! forests (smartcore).
//!
//! Both libraries grow trees with their own tie-breaking and random streams,
//! so individual splits can differ from scikit-learn's; the reference tests
//! compare accuracy on held-out data with a stated tolerance.

use linfa::prelude::*;
use linfa_trees::{DecisionTree, SplitQuality};
use ndarray::{Array1, ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};
use smartcore::ensemble::random_forest_classifier::{
    RandomForestClassifier as ScForestC, RandomForestClassifierParameters,
};
use smartcore::ensemble::random_forest_regressor::{
    RandomForestRegressor as ScForestR, RandomForestRegressorParameters,
};
use smartcore::linalg::basic::matrix::DenseMatrix;

use crate::error::MlError;
use crate::estimator::{encode_classes, require_y, FitParams, FittedModel, Kind, Output};
use crate::params::Checked;

fn fit_err(estimator: &str, library: &str, e: impl std::fmt::Display) -> MlError {
    MlError::Fit { estimator: estimator.into(), library: library.into(), message: e.to_string() }
}

crate::params! {
    /// Hyperparameters of [`DecisionTreeClassifier`].
    pub struct DecisionTreeParams for "DecisionTreeClassifier" {
        /// `"gini"` or `"entropy"`.
        criterion ("criterion"): String = "gini".to_string(), valid if |v| v == "gini" || v == "entropy", "\"gini\" or \"entropy\"";
        /// Maximum depth; none = unlimited.
        max_depth ("max_depth"): Option<i64> = None, valid if |v| v.is_none_or(|d| d >= 1), "an integer >= 1 or none";
        /// Minimum samples to split a node.
        min_samples_split ("min_samples_split"): i64 = 2, valid if |v| *v >= 2, "an integer >= 2";
        /// Minimum samples in a leaf.
        min_samples_leaf ("min_samples_leaf"): i64 = 1, valid if |v| *v >= 1, "an integer >= 1";
        /// Minimum impurity decrease of a split.
        min_impurity_decrease ("min_impurity_decrease"): f64 = 0.0, valid if |v| *v >= 0.0, "a number >= 0";
    }
}

/// A fitted decision tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FittedTree {
    classes: Vec<f64>,
    tree: DecisionTree<f64, usize>,
    n_features: usize,
}

impl FitParams for DecisionTreeParams {
    type Fitted = FittedTree;

    fn fit(
        params: &Checked<Self>,
        x: ArrayView2<'_, f64>,
        y: Option<ArrayView1<'_, f64>>,
    ) -> Result<FittedTree, MlError> {
        let name = "DecisionTreeClassifier";
        let (classes, idx) = encode_classes(name, require_y(name, y)?)?;
        let quality =
            if params.criterion == "entropy" { SplitQuality::Entropy } else { SplitQuality::Gini };
        let tree = DecisionTree::params()
            .split_quality(quality)
            .max_depth(params.max_depth.map(|d| d as usize))
            .min_weight_split(params.min_samples_split as f32)
            .min_weight_leaf(params.min_samples_leaf as f32)
            // linfa requires at least f64::EPSILON; that smallest value means "any decrease".
            .min_impurity_decrease(params.min_impurity_decrease.max(f64::EPSILON))
            .fit(&Dataset::new(x.to_owned(), Array1::from(idx)))
            .map_err(|e| fit_err(name, "linfa-trees", e))?;
        Ok(FittedTree { classes, tree, n_features: x.ncols() })
    }
}

impl FittedModel for FittedTree {
    fn n_features(&self) -> usize {
        self.n_features
    }
    fn predict(&self, x: ArrayView2<'_, f64>) -> Output<Array1<f64>> {
        let p: Array1<usize> = self.tree.predict(&x);
        Some(Ok(p.mapv(|i| self.classes[i])))
    }
    fn classes(&self) -> Option<&[f64]> {
        Some(&self.classes)
    }
}

crate::estimator! {
    /// Decision tree classifier (see [`DecisionTreeParams`]).
    DecisionTreeClassifier, DecisionTreeParams, FittedTree, "DecisionTreeClassifier", Kind::Classifier
}

fn dense(x: ArrayView2<'_, f64>) -> Result<DenseMatrix<f64>, MlError> {
    DenseMatrix::new(x.nrows(), x.ncols(), x.iter().copied().collect(), false)
        .map_err(|e| fit_err("RandomForest", "smartcore", e))
}

crate::params! {
    /// Hyperparameters of [`RandomForestClassifier`] and [`RandomForestRegressor`].
    pub struct RandomForestParams for "RandomForest" {
        /// Number of trees.
        n_estimators ("n_estimators"): i64 = 100, valid if |v| (1..=65535).contains(v), "an integer in [1, 65535]";
        /// Maximum depth; none = unlimited.
        max_depth ("max_depth"): Option<i64> = None, valid if |v| v.is_none_or(|d| (1..=65535).contains(&d)), "an integer in [1, 65535] or none";
        /// Minimum samples to split a node.
        min_samples_split ("min_samples_split"): i64 = 2, valid if |v| *v >= 2, "an integer >= 2";
        /// Minimum samples in a leaf.
        min_samples_leaf ("min_samples_leaf"): i64 = 1, valid if |v| *v >= 1, "an integer >= 1";
        /// Features tried per split; none = √p for classification, p/3 for regression.
        max_features ("max_features"): Option<i64> = None, valid if |v| v.is_none_or(|m| m >= 1), "an integer >= 1 or none";
        /// Seed of the bootstrap and feature sampling.
        random_state ("random_state"): i64 = 0, valid if |v| *v >= 0, "an integer >= 0";
    }
}

/// Copies a value through its serde encoding (smartcore's forests are not
/// `Clone`; the round trip copies them exactly).
fn clone_via_serde<T: Serialize + serde::de::DeserializeOwned>(v: &T) -> T {
    let bytes = postcard::to_stdvec(v).expect("a fitted forest encodes");
    postcard::from_bytes(&bytes).expect("a fitted forest decodes")
}

/// A newtype over [`RandomForestParams`] (one per estimator, since each has its
/// own `FitParams`), delegating the parameter methods.
macro_rules! forest_params {
    ($(#[$meta:meta])* $Name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
        pub struct $Name(pub RandomForestParams);

        impl crate::params::CheckParams for $Name {
            fn check_params(&self) -> Result<(), MlError> {
                crate::params::CheckParams::check_params(&self.0)
            }
        }

        impl $Name {
            fn get_params(&self) -> crate::Params {
                self.0.get_params()
            }
            fn set_param(&mut self, name: &str, value: crate::ParamValue) -> Result<(), MlError> {
                self.0.set_param(name, value)
            }
        }
    };
}

/// smartcore's forest parameters (two types with the same builder) from ours.
macro_rules! smartcore_params {
    ($Ty:ty, $p:expr, $n_trees:ty) => {{
        let p: &RandomForestParams = $p;
        let params = <$Ty>::default()
            .with_n_trees(p.n_estimators as $n_trees)
            .with_min_samples_leaf(p.min_samples_leaf as usize)
            .with_min_samples_split(p.min_samples_split as usize)
            .with_seed(p.random_state as u64);
        let params = match p.max_depth {
            Some(d) => params.with_max_depth(d as u16),
            None => params,
        };
        match p.max_features {
            Some(m) => params.with_m(m as usize),
            None => params,
        }
    }};
}

/// A fitted random forest classifier.
#[derive(Debug, Serialize, Deserialize)]
pub struct FittedForestClassifier {
    classes: Vec<f64>,
    forest: ScForestC<f64, u32, DenseMatrix<f64>, Vec<u32>>,
    n_features: usize,
}

impl Clone for FittedForestClassifier {
    fn clone(&self) -> Self {
        clone_via_serde(self)
    }
}

forest_params! {
    /// Forest hyperparameters for the classification estimator.
    ForestClassifierParams
}

impl FitParams for ForestClassifierParams {
    type Fitted = FittedForestClassifier;

    fn fit(
        params: &Checked<Self>,
        x: ArrayView2<'_, f64>,
        y: Option<ArrayView1<'_, f64>>,
    ) -> Result<FittedForestClassifier, MlError> {
        let name = "RandomForestClassifier";
        let p = &params.0;
        let (classes, idx) = encode_classes(name, require_y(name, y)?)?;
        let params = smartcore_params!(RandomForestClassifierParameters, p, u16);
        let y: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
        let forest =
            ScForestC::fit(&dense(x)?, &y, params).map_err(|e| fit_err(name, "smartcore", e))?;
        Ok(FittedForestClassifier { classes, forest, n_features: x.ncols() })
    }
}

impl FittedModel for FittedForestClassifier {
    fn n_features(&self) -> usize {
        self.n_features
    }
    fn predict(&self, x: ArrayView2<'_, f64>) -> Output<Array1<f64>> {
        Some(
            dense(x)
                .and_then(|d| {
                    self.forest
                        .predict(&d)
                        .map_err(|e| fit_err("RandomForestClassifier", "smartcore", e))
                })
                .map(|p| p.iter().map(|&i| self.classes[i as usize]).collect()),
        )
    }
    fn classes(&self) -> Option<&[f64]> {
        Some(&self.classes)
    }
}

crate::estimator! {
    /// Random forest classifier (see [`RandomForestParams`]).
    RandomForestClassifier, ForestClassifierParams, FittedForestClassifier, "RandomForestClassifier", Kind::Classifier
}

/// A fitted random forest regressor.
#[derive(Debug, Serialize, Deserialize)]
pub struct FittedForestRegressor {
    forest: ScForestR<f64, f64, DenseMatrix<f64>, Vec<f64>>,
    n_features: usize,
}

impl Clone for FittedForestRegressor {
    fn clone(&self) -> Self {
        clone_via_serde(self)
    }
}

forest_params! {
    /// Forest hyperparameters for the regression estimator.
    ForestRegressorParams
}

impl FitParams for ForestRegressorParams {
    type Fitted = FittedForestRegressor;

    fn fit(
        params: &Checked<Self>,
        x: ArrayView2<'_, f64>,
        y: Option<ArrayView1<'_, f64>>,
    ) -> Result<FittedForestRegressor, MlError> {
        let name = "RandomForestRegressor";
        let p = &params.0;
        let y = require_y(name, y)?;
        let params = smartcore_params!(RandomForestRegressorParameters, p, usize);
        let forest = ScForestR::fit(&dense(x)?, &y.to_vec(), params)
            .map_err(|e| fit_err(name, "smartcore", e))?;
        Ok(FittedForestRegressor { forest, n_features: x.ncols() })
    }
}

impl FittedModel for FittedForestRegressor {
    fn n_features(&self) -> usize {
        self.n_features
    }
    fn predict(&self, x: ArrayView2<'_, f64>) -> Output<Array1<f64>> {
        Some(
            dense(x)
                .and_then(|d| {
                    self.forest
                        .predict(&d)
                        .map_err(|e| fit_err("RandomForestRegressor", "smartcore", e))
                })
                .map(Array1::from),
        )
    }
}

crate::estimator! {
    /// Random forest regressor (see [`RandomForestParams`]).
    RandomForestRegressor, ForestRegressorParams, FittedForestRegressor, "RandomForestRegressor", Kind::Regressor
}
