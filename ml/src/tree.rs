//! Trees and forests on Rask's own CART (the `cart` module): scikit-learn's
//! split rule and defaults, grown on columns sorted once per fit.
//!
//! - `DecisionTreeClassifier` / `DecisionTreeRegressor`: every feature is
//!   tried at every node by default, so the tree equals scikit-learn's except
//!   where two splits tie exactly (scikit-learn breaks ties by its random
//!   feature order, Rask by its own).
//! - `RandomForestClassifier` / `RandomForestRegressor`: bootstrap samples as
//!   integer weights, `max_features` of `"sqrt"` (classification) and `1.0`
//!   (regression) as in scikit-learn ≥ 1.1, trees grown on `n_jobs` threads.
//!   Each tree's random stream depends only on `random_state` and the tree's
//!   index, so the forest is the same for every `n_jobs`.
//!
//! `random_state` defaults to 0 rather than scikit-learn's `None` (unseeded):
//! search caches fits by their parameters' content, which needs a fit to be a
//! function of its parameters.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use crate::cart::{self, Columns, Limits, Target, Tree};
use crate::error::MlError;
use crate::estimator::{encode_classes, require_y, FitParams, FittedModel, Kind, Output};
use crate::params::{Checked, ParamType, ParamValue};

/// How many features a split may try: scikit-learn's `max_features`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum MaxFeatures {
    /// All features (`None`).
    All,
    /// `max(1, ⌊√p⌋)` (`"sqrt"`).
    Sqrt,
    /// `max(1, ⌊log₂ p⌋)` (`"log2"`).
    Log2,
    /// This many (an integer, at most p).
    Count(i64),
    /// `max(1, ⌊fraction·p⌋)` (a float in (0, 1]).
    Fraction(f64),
}

impl MaxFeatures {
    fn is_valid(&self) -> bool {
        match *self {
            MaxFeatures::Count(k) => k >= 1,
            MaxFeatures::Fraction(f) => f > 0.0 && f <= 1.0,
            _ => true,
        }
    }

    /// The number of features for `p` columns.
    fn resolve(&self, estimator: &str, p: usize) -> Result<usize, MlError> {
        let at_least_one = |k: f64| (k.floor() as usize).max(1);
        Ok(match *self {
            MaxFeatures::All => p,
            MaxFeatures::Sqrt => at_least_one((p as f64).sqrt()),
            MaxFeatures::Log2 => at_least_one((p as f64).log2()),
            MaxFeatures::Fraction(f) => at_least_one(f * p as f64),
            MaxFeatures::Count(k) if k as usize <= p => k as usize,
            MaxFeatures::Count(k) => {
                return Err(MlError::InvalidParam {
                    estimator: estimator.into(),
                    param: "max_features".into(),
                    value: k.to_string(),
                    expected: format!("at most the number of features ({p})"),
                })
            }
        })
    }
}

impl ParamType for MaxFeatures {
    fn from_param(v: &ParamValue) -> Option<Self> {
        Some(match v {
            ParamValue::None => MaxFeatures::All,
            ParamValue::Str(s) if s == "sqrt" => MaxFeatures::Sqrt,
            ParamValue::Str(s) if s == "log2" => MaxFeatures::Log2,
            ParamValue::I64(k) => MaxFeatures::Count(*k),
            ParamValue::F64(f) => MaxFeatures::Fraction(*f),
            _ => return None,
        })
    }
    fn to_param(&self) -> ParamValue {
        match *self {
            MaxFeatures::All => ParamValue::None,
            MaxFeatures::Sqrt => ParamValue::Str("sqrt".into()),
            MaxFeatures::Log2 => ParamValue::Str("log2".into()),
            MaxFeatures::Count(k) => ParamValue::I64(k),
            MaxFeatures::Fraction(f) => ParamValue::F64(f),
        }
    }
}

/// The growth limits shared by every tree estimator's parameters.
fn limits(
    estimator: &str,
    max_depth: Option<i64>,
    min_samples_split: i64,
    min_samples_leaf: i64,
    min_impurity_decrease: f64,
    max_features: MaxFeatures,
    p: usize,
) -> Result<Limits, MlError> {
    Ok(Limits {
        max_depth: max_depth.map_or(usize::MAX, |d| d as usize),
        min_samples_split: min_samples_split as usize,
        min_samples_leaf: min_samples_leaf as usize,
        min_impurity_decrease,
        max_features: max_features.resolve(estimator, p)?,
    })
}

/// Class labels as `u32` indices for the CART target.
fn class_target(
    estimator: &str,
    y: Option<ArrayView1<'_, f64>>,
) -> Result<(Vec<f64>, Vec<u32>), MlError> {
    let (classes, idx) = encode_classes(estimator, require_y(estimator, y)?)?;
    Ok((classes, idx.into_iter().map(|i| i as u32).collect()))
}

/// Threads for `n_jobs` (scikit-learn's convention: none = 1, -1 = all cores,
/// -2 = all but one, …).
fn threads(n_jobs: Option<i64>) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
    match n_jobs {
        None => 1,
        Some(k) if k > 0 => k as usize,
        Some(k) => (cores + 1 + k).max(1) as usize,
    }
}

/// Runs `work(i)` for `i in 0..n` on `threads` threads; results in index order.
fn parallel_map<T: Send>(n: usize, threads: usize, work: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = threads.clamp(1, n.max(1));
    if threads == 1 {
        return (0..n).map(work).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, T)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= n {
                            return mine;
                        }
                        mine.push((i, work(i)));
                    }
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("a tree worker thread panicked")).collect()
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, t)| t).collect()
}

/// Sums the leaf values of `trees` for every row of `x`, rows split over threads.
fn sum_leaves(trees: &[Tree], x: ArrayView2<'_, f64>, width: usize, n_jobs: usize) -> Array2<f64> {
    const BLOCK: usize = 256;
    let n = x.nrows();
    let blocks = parallel_map(n.div_ceil(BLOCK), n_jobs, |b| {
        let rows = b * BLOCK..((b + 1) * BLOCK).min(n);
        let mut out = Array2::<f64>::zeros((rows.len(), width));
        // Tree-major: one tree's nodes stay in cache across the block's rows.
        for tree in trees {
            for (r, i) in rows.clone().enumerate() {
                let row = x.row(i);
                let v = tree.leaf_values(|f| row[f]);
                out.row_mut(r).iter_mut().zip(v).for_each(|(a, v)| *a += v);
            }
        }
        out
    });
    let mut out = Array2::<f64>::zeros((n, width));
    for (b, block) in blocks.into_iter().enumerate() {
        let start = b * BLOCK;
        out.slice_mut(ndarray::s![start..start + block.nrows(), ..]).assign(&block);
    }
    out
}

/// Labels from probability rows (the first class of the highest probability).
fn argmax_labels(p: &Array2<f64>, classes: &[f64]) -> Array1<f64> {
    p.rows()
        .into_iter()
        .map(|r| {
            let best = r.iter().enumerate().fold(0, |b, (k, &v)| if v > r[b] { k } else { b });
            classes[best]
        })
        .collect()
}

/// Rows scaled to sum to one.
fn proportions(mut p: Array2<f64>) -> Array2<f64> {
    for mut r in p.rows_mut() {
        let total: f64 = r.sum();
        if total > 0.0 {
            r /= total;
        }
    }
    p
}

// ---------------------------------------------------------------- single trees

crate::params! {
    /// Hyperparameters of [`DecisionTreeClassifier`].
    pub struct DecisionTreeParams for "DecisionTreeClassifier" {
        /// `"gini"`, or `"entropy"` / `"log_loss"` (the same criterion).
        criterion ("criterion"): String = "gini".to_string(), valid if |v| ["gini", "entropy", "log_loss"].contains(&v.as_str()), "\"gini\", \"entropy\" or \"log_loss\"";
        /// Maximum depth; none = unlimited.
        max_depth ("max_depth"): Option<i64> = None, valid if |v| v.is_none_or(|d| d >= 1), "an integer >= 1 or none";
        /// Minimum samples to split a node.
        min_samples_split ("min_samples_split"): i64 = 2, valid if |v| *v >= 2, "an integer >= 2";
        /// Minimum samples in a leaf.
        min_samples_leaf ("min_samples_leaf"): i64 = 1, valid if |v| *v >= 1, "an integer >= 1";
        /// Minimum weighted impurity decrease of a split.
        min_impurity_decrease ("min_impurity_decrease"): f64 = 0.0, valid if |v| *v >= 0.0, "a number >= 0";
        /// Features tried per split.
        max_features ("max_features"): MaxFeatures = MaxFeatures::All, valid if |v| v.is_valid(), "none, \"sqrt\", \"log2\", an integer >= 1 or a float in (0, 1]";
        /// Seed of the feature order.
        random_state ("random_state"): i64 = 0, valid if |v| *v >= 0, "an integer >= 0";
    }
}

crate::params! {
    /// Hyperparameters of [`DecisionTreeRegressor`].
    pub struct DecisionTreeRegressorParams for "DecisionTreeRegressor" {
        /// `"squared_error"`.
        criterion ("criterion"): String = "squared_error".to_string(), valid if |v| v == "squared_error", "\"squared_error\"";
        /// Maximum depth; none = unlimited.
        max_depth ("max_depth"): Option<i64> = None, valid if |v| v.is_none_or(|d| d >= 1), "an integer >= 1 or none";
        /// Minimum samples to split a node.
        min_samples_split ("min_samples_split"): i64 = 2, valid if |v| *v >= 2, "an integer >= 2";
        /// Minimum samples in a leaf.
        min_samples_leaf ("min_samples_leaf"): i64 = 1, valid if |v| *v >= 1, "an integer >= 1";
        /// Minimum weighted impurity decrease of a split.
        min_impurity_decrease ("min_impurity_decrease"): f64 = 0.0, valid if |v| *v >= 0.0, "a number >= 0";
        /// Features tried per split.
        max_features ("max_features"): MaxFeatures = MaxFeatures::All, valid if |v| v.is_valid(), "none, \"sqrt\", \"log2\", an integer >= 1 or a float in (0, 1]";
        /// Seed of the feature order.
        random_state ("random_state"): i64 = 0, valid if |v| *v >= 0, "an integer >= 0";
    }
}

/// A fitted decision tree classifier (leaves hold class weights).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FittedTree {
    classes: Vec<f64>,
    tree: Tree,
    n_features: usize,
}

impl FittedTree {
    /// Number of nodes (scikit-learn's `tree_.node_count`).
    pub fn node_count(&self) -> usize {
        self.tree.node_count()
    }
    /// Depth of the tree (scikit-learn's `get_depth()`).
    pub fn depth(&self) -> usize {
        self.tree.depth()
    }
    /// Each node's `(feature, threshold)` in scikit-learn's node order
    /// (depth first, left child first); `None` for a leaf.
    pub fn splits(&self) -> Vec<Option<(usize, f64)>> {
        self.tree.splits()
    }
}

impl FitParams for DecisionTreeParams {
    type Fitted = FittedTree;

    fn fit(
        params: &Checked<Self>,
        x: ArrayView2<'_, f64>,
        y: Option<ArrayView1<'_, f64>>,
    ) -> Result<FittedTree, MlError> {
        let name = "DecisionTreeClassifier";
        let (classes, y) = class_target(name, y)?;
        let limits = params.limits_for(name, x.ncols())?;
        let target = Target::Classes {
            y: &y,
            n_classes: classes.len(),
            entropy: params.criterion != "gini",
        };
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(params.random_state as u64);
        let tree = cart::grow(&Columns::new(x), &target, &vec![1.0; x.nrows()], &limits, &mut rng);
        Ok(FittedTree { classes, tree, n_features: x.ncols() })
    }
}

impl FittedModel for FittedTree {
    fn n_features(&self) -> usize {
        self.n_features
    }
    fn predict(&self, x: ArrayView2<'_, f64>) -> Output<Array1<f64>> {
        let p = sum_leaves(std::slice::from_ref(&self.tree), x, self.classes.len(), 1);
        Some(Ok(argmax_labels(&p, &self.classes)))
    }
    fn predict_proba(&self, x: ArrayView2<'_, f64>) -> Output<Array2<f64>> {
        let p = sum_leaves(std::slice::from_ref(&self.tree), x, self.classes.len(), 1);
        Some(Ok(proportions(p)))
    }
    fn classes(&self) -> Option<&[f64]> {
        Some(&self.classes)
    }
}

crate::estimator! {
    /// Decision tree classifier (see [`DecisionTreeParams`]).
    DecisionTreeClassifier, DecisionTreeParams, FittedTree, "DecisionTreeClassifier", Kind::Classifier
}

/// A fitted decision tree regressor (leaves hold means).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FittedTreeRegressor {
    tree: Tree,
    n_features: usize,
}

impl FittedTreeRegressor {
    /// Number of nodes (scikit-learn's `tree_.node_count`).
    pub fn node_count(&self) -> usize {
        self.tree.node_count()
    }
    /// Each node's `(feature, threshold)` in scikit-learn's node order; `None` for a leaf.
    pub fn splits(&self) -> Vec<Option<(usize, f64)>> {
        self.tree.splits()
    }
}

impl FitParams for DecisionTreeRegressorParams {
    type Fitted = FittedTreeRegressor;

    fn fit(
        params: &Checked<Self>,
        x: ArrayView2<'_, f64>,
        y: Option<ArrayView1<'_, f64>>,
    ) -> Result<FittedTreeRegressor, MlError> {
        let name = "DecisionTreeRegressor";
        let y = require_y(name, y)?.to_vec();
        let limits = params.limits_for(name, x.ncols())?;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(params.random_state as u64);
        let tree = cart::grow(
            &Columns::new(x),
            &Target::Values(&y),
            &vec![1.0; x.nrows()],
            &limits,
            &mut rng,
        );
        Ok(FittedTreeRegressor { tree, n_features: x.ncols() })
    }
}

impl FittedModel for FittedTreeRegressor {
    fn n_features(&self) -> usize {
        self.n_features
    }
    fn predict(&self, x: ArrayView2<'_, f64>) -> Output<Array1<f64>> {
        let p = sum_leaves(std::slice::from_ref(&self.tree), x, 1, 1);
        Some(Ok(p.column(0).to_owned()))
    }
}

crate::estimator! {
    /// Decision tree regressor (see [`DecisionTreeRegressorParams`]).
    DecisionTreeRegressor, DecisionTreeRegressorParams, FittedTreeRegressor, "DecisionTreeRegressor", Kind::Regressor
}

// ---------------------------------------------------------------- forests

crate::params! {
    /// Hyperparameters of [`RandomForestClassifier`].
    pub struct ForestClassifierParams for "RandomForestClassifier" {
        /// Number of trees.
        n_estimators ("n_estimators"): i64 = 100, valid if |v| (1..=100_000).contains(v), "an integer in [1, 100000]";
        /// `"gini"`, or `"entropy"` / `"log_loss"` (the same criterion).
        criterion ("criterion"): String = "gini".to_string(), valid if |v| ["gini", "entropy", "log_loss"].contains(&v.as_str()), "\"gini\", \"entropy\" or \"log_loss\"";
        /// Maximum depth; none = unlimited.
        max_depth ("max_depth"): Option<i64> = None, valid if |v| v.is_none_or(|d| d >= 1), "an integer >= 1 or none";
        /// Minimum samples to split a node.
        min_samples_split ("min_samples_split"): i64 = 2, valid if |v| *v >= 2, "an integer >= 2";
        /// Minimum samples in a leaf.
        min_samples_leaf ("min_samples_leaf"): i64 = 1, valid if |v| *v >= 1, "an integer >= 1";
        /// Minimum weighted impurity decrease of a split.
        min_impurity_decrease ("min_impurity_decrease"): f64 = 0.0, valid if |v| *v >= 0.0, "a number >= 0";
        /// Features tried per split.
        max_features ("max_features"): MaxFeatures = MaxFeatures::Sqrt, valid if |v| v.is_valid(), "none, \"sqrt\", \"log2\", an integer >= 1 or a float in (0, 1]";
        /// Whether each tree sees a bootstrap sample (else all samples).
        bootstrap ("bootstrap"): bool = true, valid if |_v| true, "true or false";
        /// Seed of the bootstrap and feature sampling.
        random_state ("random_state"): i64 = 0, valid if |v| *v >= 0, "an integer >= 0";
        /// Threads growing trees: none = 1, -1 = all cores.
        n_jobs ("n_jobs"): Option<i64> = None, valid if |v| *v != Some(0), "none, an integer >= 1, or -1 for all cores";
    }
}

crate::params! {
    /// Hyperparameters of [`RandomForestRegressor`].
    pub struct ForestRegressorParams for "RandomForestRegressor" {
        /// Number of trees.
        n_estimators ("n_estimators"): i64 = 100, valid if |v| (1..=100_000).contains(v), "an integer in [1, 100000]";
        /// `"squared_error"`.
        criterion ("criterion"): String = "squared_error".to_string(), valid if |v| v == "squared_error", "\"squared_error\"";
        /// Maximum depth; none = unlimited.
        max_depth ("max_depth"): Option<i64> = None, valid if |v| v.is_none_or(|d| d >= 1), "an integer >= 1 or none";
        /// Minimum samples to split a node.
        min_samples_split ("min_samples_split"): i64 = 2, valid if |v| *v >= 2, "an integer >= 2";
        /// Minimum samples in a leaf.
        min_samples_leaf ("min_samples_leaf"): i64 = 1, valid if |v| *v >= 1, "an integer >= 1";
        /// Minimum weighted impurity decrease of a split.
        min_impurity_decrease ("min_impurity_decrease"): f64 = 0.0, valid if |v| *v >= 0.0, "a number >= 0";
        /// Features tried per split.
        max_features ("max_features"): MaxFeatures = MaxFeatures::Fraction(1.0), valid if |v| v.is_valid(), "none, \"sqrt\", \"log2\", an integer >= 1 or a float in (0, 1]";
        /// Whether each tree sees a bootstrap sample (else all samples).
        bootstrap ("bootstrap"): bool = true, valid if |_v| true, "true or false";
        /// Seed of the bootstrap and feature sampling.
        random_state ("random_state"): i64 = 0, valid if |v| *v >= 0, "an integer >= 0";
        /// Threads growing trees: none = 1, -1 = all cores.
        n_jobs ("n_jobs"): Option<i64> = None, valid if |v| *v != Some(0), "none, an integer >= 1, or -1 for all cores";
    }
}

/// The growth limits from the parameters every tree estimator shares.
macro_rules! tree_limits {
    ($($P:ty),*) => {$(
        impl $P {
            fn limits_for(&self, name: &str, p: usize) -> Result<Limits, MlError> {
                limits(
                    name,
                    self.max_depth,
                    self.min_samples_split,
                    self.min_samples_leaf,
                    self.min_impurity_decrease,
                    self.max_features,
                    p,
                )
            }
        }
    )*};
}

tree_limits!(
    DecisionTreeParams,
    DecisionTreeRegressorParams,
    ForestClassifierParams,
    ForestRegressorParams
);

/// The forest plan from the parameters both forests share.
macro_rules! forest_plan {
    ($($P:ty),*) => {$(
        impl $P {
            fn plan(&self, name: &str, p: usize) -> Result<ForestPlan, MlError> {
                Ok(ForestPlan {
                    n_trees: self.n_estimators as usize,
                    bootstrap: self.bootstrap,
                    random_state: self.random_state,
                    threads: threads(self.n_jobs),
                    limits: self.limits_for(name, p)?,
                })
            }
        }
    )*};
}

forest_plan!(ForestClassifierParams, ForestRegressorParams);

/// What a forest needs besides its target.
struct ForestPlan {
    n_trees: usize,
    bootstrap: bool,
    random_state: i64,
    threads: usize,
    limits: Limits,
}

/// Grows `plan.n_trees` trees; tree `t` draws from a stream seeded by
/// `(random_state, t)` only.
fn grow_forest(x: ArrayView2<'_, f64>, target: &Target<'_>, plan: &ForestPlan) -> Vec<Tree> {
    let cols = Columns::new(x);
    let n = x.nrows();
    parallel_map(plan.n_trees, plan.threads, |t| {
        let seed = (plan.random_state as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ t as u64;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let weights = if plan.bootstrap {
            let mut counts = vec![0.0; n];
            for _ in 0..n {
                counts[rng.gen_range(0..n)] += 1.0;
            }
            counts
        } else {
            vec![1.0; n]
        };
        cart::grow(&cols, target, &weights, &plan.limits, &mut rng)
    })
}

/// A fitted random forest classifier: trees whose leaves hold class proportions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FittedForestClassifier {
    classes: Vec<f64>,
    trees: Vec<Tree>,
    n_features: usize,
    threads: usize,
}

impl FittedForestClassifier {
    /// Number of trees.
    pub fn n_trees(&self) -> usize {
        self.trees.len()
    }
}

impl FitParams for ForestClassifierParams {
    type Fitted = FittedForestClassifier;

    fn fit(
        params: &Checked<Self>,
        x: ArrayView2<'_, f64>,
        y: Option<ArrayView1<'_, f64>>,
    ) -> Result<FittedForestClassifier, MlError> {
        let name = "RandomForestClassifier";
        let (classes, y) = class_target(name, y)?;
        let plan = params.plan(name, x.ncols())?;
        let target = Target::Classes {
            y: &y,
            n_classes: classes.len(),
            entropy: params.criterion != "gini",
        };
        let mut trees = grow_forest(x, &target, &plan);
        trees.iter_mut().for_each(Tree::normalize);
        Ok(FittedForestClassifier { classes, trees, n_features: x.ncols(), threads: plan.threads })
    }
}

impl FittedForestClassifier {
    fn proba(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        sum_leaves(&self.trees, x, self.classes.len(), self.threads) / self.trees.len() as f64
    }
}

impl FittedModel for FittedForestClassifier {
    fn n_features(&self) -> usize {
        self.n_features
    }
    fn predict(&self, x: ArrayView2<'_, f64>) -> Output<Array1<f64>> {
        Some(Ok(argmax_labels(&self.proba(x), &self.classes)))
    }
    fn predict_proba(&self, x: ArrayView2<'_, f64>) -> Output<Array2<f64>> {
        Some(Ok(self.proba(x)))
    }
    fn classes(&self) -> Option<&[f64]> {
        Some(&self.classes)
    }
}

crate::estimator! {
    /// Random forest classifier (see [`ForestClassifierParams`]).
    RandomForestClassifier, ForestClassifierParams, FittedForestClassifier, "RandomForestClassifier", Kind::Classifier
}

/// A fitted random forest regressor: trees whose leaves hold means.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FittedForestRegressor {
    trees: Vec<Tree>,
    n_features: usize,
    threads: usize,
}

impl FitParams for ForestRegressorParams {
    type Fitted = FittedForestRegressor;

    fn fit(
        params: &Checked<Self>,
        x: ArrayView2<'_, f64>,
        y: Option<ArrayView1<'_, f64>>,
    ) -> Result<FittedForestRegressor, MlError> {
        let name = "RandomForestRegressor";
        let y = require_y(name, y)?.to_vec();
        let plan = params.plan(name, x.ncols())?;
        let trees = grow_forest(x, &Target::Values(&y), &plan);
        Ok(FittedForestRegressor { trees, n_features: x.ncols(), threads: plan.threads })
    }
}

impl FittedModel for FittedForestRegressor {
    fn n_features(&self) -> usize {
        self.n_features
    }
    fn predict(&self, x: ArrayView2<'_, f64>) -> Output<Array1<f64>> {
        let sum = sum_leaves(&self.trees, x, 1, self.threads);
        Some(Ok(sum.column(0).mapv(|v| v / self.trees.len() as f64)))
    }
}

crate::estimator! {
    /// Random forest regressor (see [`ForestRegressorParams`]).
    RandomForestRegressor, ForestRegressorParams, FittedForestRegressor, "RandomForestRegressor", Kind::Regressor
}
