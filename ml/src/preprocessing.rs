//! Feature transformers: scalers, one-hot encoding and polynomial features.
//!
//! `MinMaxScaler`'s range is two parameters, `feature_range_min` and
//! `feature_range_max` (scikit-learn's `feature_range` tuple), so that it can
//! be searched over like any other parameter.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::error::MlError;
use crate::estimator::{canonical, FitParams, FittedModel, Kind, Output};
use crate::params::Checked;

/// Column means and population variances in two passes over the rows (each
/// pass adds whole rows, so it vectorizes across columns), with
/// scikit-learn's correction term (`_incremental_mean_and_var`).
fn column_mean_var(x: ArrayView2<'_, f64>) -> (Array1<f64>, Array1<f64>) {
    let x = x.as_standard_layout();
    let (n, p) = x.dim();
    let rows = || x.as_slice().expect("standard layout").chunks_exact(p);
    let mut mean = vec![0.0; p];
    for row in rows() {
        mean.iter_mut().zip(row).for_each(|(m, &v)| *m += v);
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let (mut sq, mut correction) = (vec![0.0; p], vec![0.0; p]);
    for row in rows() {
        for j in 0..p {
            let d = row[j] - mean[j];
            correction[j] += d;
            sq[j] += d * d;
        }
    }
    let var = sq.iter().zip(&correction).map(|(s, c)| (s - c * c / n as f64) / n as f64).collect();
    (Array1::from(mean), Array1::from_vec(var))
}

/// Column minima and maxima in one pass over the rows.
fn column_min_max(x: ArrayView2<'_, f64>) -> (Array1<f64>, Array1<f64>) {
    let x = x.as_standard_layout();
    let p = x.ncols();
    let (mut lo, mut hi) = (vec![f64::INFINITY; p], vec![f64::NEG_INFINITY; p]);
    for row in x.as_slice().expect("standard layout").chunks_exact(p) {
        for j in 0..p {
            lo[j] = lo[j].min(row[j]);
            hi[j] = hi[j].max(row[j]);
        }
    }
    (Array1::from(lo), Array1::from(hi))
}

/// A fitted per-column affine map `x ↦ (x − offset)·scale + shift`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FittedScaler {
    /// Subtracted per column.
    pub offset: Array1<f64>,
    /// Multiplied per column (after the offset).
    pub scale: Array1<f64>,
    /// Added per column at the end.
    pub shift: f64,
}

impl FittedModel for FittedScaler {
    fn n_features(&self) -> usize {
        self.offset.len()
    }
    fn transform(&self, x: ArrayView2<'_, f64>) -> Output<Array2<f64>> {
        // One pass, one allocation.
        let mut out = x.to_owned();
        for mut row in out.rows_mut() {
            ndarray::Zip::from(&mut row)
                .and(&self.offset)
                .and(&self.scale)
                .for_each(|v, &o, &s| *v = (*v - o) * s + self.shift);
        }
        Some(Ok(out))
    }
}

crate::params! {
    /// Hyperparameters of [`StandardScaler`]: `(x − mean) / std` per column
    /// (population std; constant columns are left unscaled).
    pub struct StandardScalerParams for "StandardScaler" {
        /// Subtract the mean.
        with_mean ("with_mean"): bool = true, valid if |_v| true, "true or false";
        /// Divide by the standard deviation.
        with_std ("with_std"): bool = true, valid if |_v| true, "true or false";
    }
}

impl FitParams for StandardScalerParams {
    type Fitted = FittedScaler;

    fn fit(
        params: &Checked<Self>,
        x: ArrayView2<'_, f64>,
        _y: Option<ArrayView1<'_, f64>>,
    ) -> Result<FittedScaler, MlError> {
        let (mean, var) = column_mean_var(x);
        let n = x.nrows() as f64;
        // scikit-learn's `_is_constant_feature` and `_handle_zeros_in_scale`:
        // a (near-)constant column keeps scale 1.
        let scale = ndarray::Zip::from(&var).and(&mean).map_collect(|&v, &m| {
            let bound = n * f64::EPSILON * v + (n * m * f64::EPSILON).powi(2);
            let std = v.sqrt();
            if v <= bound || std < 10.0 * f64::EPSILON {
                1.0
            } else {
                1.0 / std
            }
        });
        let p = x.ncols();
        Ok(FittedScaler {
            offset: if params.with_mean { mean } else { Array1::zeros(p) },
            scale: if params.with_std { scale } else { Array1::ones(p) },
            shift: 0.0,
        })
    }
}

crate::estimator! {
    /// Standardization (see [`StandardScalerParams`]).
    StandardScaler, StandardScalerParams, FittedScaler, "StandardScaler", Kind::Transformer
}

crate::params! {
    /// Hyperparameters of [`MinMaxScaler`]: maps each column's [min, max] onto
    /// [`feature_range_min`, `feature_range_max`].
    pub struct MinMaxScalerParams for "MinMaxScaler" {
        /// Lower end of the output range.
        feature_range_min ("feature_range_min"): f64 = 0.0, valid if |v| v.is_finite(), "a finite number";
        /// Upper end of the output range (must exceed the lower end).
        feature_range_max ("feature_range_max"): f64 = 1.0, valid if |v| v.is_finite(), "a finite number";
    }
}

impl FitParams for MinMaxScalerParams {
    type Fitted = FittedScaler;

    fn fit(
        params: &Checked<Self>,
        x: ArrayView2<'_, f64>,
        _y: Option<ArrayView1<'_, f64>>,
    ) -> Result<FittedScaler, MlError> {
        let (lo, hi) = (params.feature_range_min, params.feature_range_max);
        if lo >= hi {
            return Err(MlError::InvalidParam {
                estimator: "MinMaxScaler".into(),
                param: "feature_range_max".into(),
                value: hi.to_string(),
                expected: format!("a number greater than feature_range_min = {lo}"),
            });
        }
        let (min, max) = column_min_max(x);
        // A constant column (range below 10 eps) is mapped with scale 1, as in scikit-learn.
        let scale = ndarray::Zip::from(&min).and(&max).map_collect(|&a, &b| {
            let range = b - a;
            (hi - lo) / if range < 10.0 * f64::EPSILON { 1.0 } else { range }
        });
        Ok(FittedScaler { offset: min, scale, shift: lo })
    }
}

crate::estimator! {
    /// Min-max scaling (see [`MinMaxScalerParams`]).
    MinMaxScaler, MinMaxScalerParams, FittedScaler, "MinMaxScaler", Kind::Transformer
}

crate::params! {
    /// Hyperparameters of [`OneHotEncoder`]: each column's distinct values
    /// become indicator columns (in sorted order of the values).
    pub struct OneHotEncoderParams for "OneHotEncoder" {
        /// `"error"`: a value not seen at fit is an error; `"ignore"`: it encodes as all zeros.
        handle_unknown ("handle_unknown"): String = "error".to_string(), valid if |v| v == "error" || v == "ignore", "\"error\" or \"ignore\"";
    }
}

/// A fitted one-hot encoder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FittedOneHot {
    /// Sorted categories of each input column.
    pub categories: Vec<Vec<f64>>,
    ignore_unknown: bool,
}

impl FitParams for OneHotEncoderParams {
    type Fitted = FittedOneHot;

    fn fit(
        params: &Checked<Self>,
        x: ArrayView2<'_, f64>,
        _y: Option<ArrayView1<'_, f64>>,
    ) -> Result<FittedOneHot, MlError> {
        let categories = x
            .columns()
            .into_iter()
            .map(|c| {
                let mut v: Vec<f64> = c.iter().map(|&v| canonical(v)).collect();
                v.sort_by(f64::total_cmp);
                v.dedup();
                v
            })
            .collect();
        Ok(FittedOneHot { categories, ignore_unknown: params.handle_unknown == "ignore" })
    }
}

impl FittedOneHot {
    fn encode(&self, x: ArrayView2<'_, f64>) -> Result<Array2<f64>, MlError> {
        let width: usize = self.categories.iter().map(Vec::len).sum();
        let mut out = Array2::zeros((x.nrows(), width));
        let mut base = 0;
        for (j, cats) in self.categories.iter().enumerate() {
            for (i, v) in x.column(j).iter().enumerate() {
                match cats.binary_search_by(|c| c.total_cmp(&canonical(*v))) {
                    Ok(k) => out[[i, base + k]] = 1.0,
                    Err(_) if self.ignore_unknown => {}
                    Err(_) => {
                        return Err(MlError::Labels {
                            estimator: "OneHotEncoder".into(),
                            message: format!(
                                "unknown category {v} in column {j} at row {i} (known: {cats:?}); set handle_unknown=\"ignore\" to encode it as zeros"
                            ),
                        })
                    }
                }
            }
            base += cats.len();
        }
        Ok(out)
    }
}

impl FittedModel for FittedOneHot {
    fn n_features(&self) -> usize {
        self.categories.len()
    }
    fn transform(&self, x: ArrayView2<'_, f64>) -> Output<Array2<f64>> {
        Some(self.encode(x))
    }
}

crate::estimator! {
    /// One-hot encoding (see [`OneHotEncoderParams`]).
    OneHotEncoder, OneHotEncoderParams, FittedOneHot, "OneHotEncoder", Kind::Transformer
}

crate::params! {
    /// Hyperparameters of [`PolynomialFeatures`]: all monomials of the inputs
    /// up to `degree`, in scikit-learn's order (by degree, then lexicographic).
    pub struct PolynomialFeaturesParams for "PolynomialFeatures" {
        /// Highest degree.
        degree ("degree"): i64 = 2, valid if |v| (1..=8).contains(v), "an integer in [1, 8]";
        /// Only products of distinct features.
        interaction_only ("interaction_only"): bool = false, valid if |_v| true, "true or false";
        /// Include the constant column.
        include_bias ("include_bias"): bool = true, valid if |_v| true, "true or false";
    }
}

/// A fitted polynomial expansion: each output column is a product of input columns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FittedPolynomial {
    n_in: usize,
    /// The input columns multiplied for each output column (empty = the bias).
    pub terms: Vec<Vec<usize>>,
}

fn combinations(n: usize, k: usize, with_replacement: bool, out: &mut Vec<Vec<usize>>) {
    fn rec(
        n: usize,
        k: usize,
        start: usize,
        wr: bool,
        cur: &mut Vec<usize>,
        out: &mut Vec<Vec<usize>>,
    ) {
        if cur.len() == k {
            out.push(cur.clone());
            return;
        }
        for i in start..n {
            cur.push(i);
            rec(n, k, if wr { i } else { i + 1 }, wr, cur, out);
            cur.pop();
        }
    }
    rec(n, k, 0, with_replacement, &mut Vec::new(), out);
}

impl FitParams for PolynomialFeaturesParams {
    type Fitted = FittedPolynomial;

    fn fit(
        params: &Checked<Self>,
        x: ArrayView2<'_, f64>,
        _y: Option<ArrayView1<'_, f64>>,
    ) -> Result<FittedPolynomial, MlError> {
        let mut terms = Vec::new();
        let start = if params.include_bias { 0 } else { 1 };
        for d in start..=params.degree as usize {
            combinations(x.ncols(), d, !params.interaction_only, &mut terms);
        }
        Ok(FittedPolynomial { n_in: x.ncols(), terms })
    }
}

impl FittedModel for FittedPolynomial {
    fn n_features(&self) -> usize {
        self.n_in
    }
    fn transform(&self, x: ArrayView2<'_, f64>) -> Output<Array2<f64>> {
        let mut out = Array2::ones((x.nrows(), self.terms.len()));
        for (j, term) in self.terms.iter().enumerate() {
            for &c in term {
                let mut col = out.column_mut(j);
                col *= &x.column(c);
            }
        }
        Some(Ok(out))
    }
}

crate::estimator! {
    /// Polynomial feature expansion (see [`PolynomialFeaturesParams`]).
    PolynomialFeatures, PolynomialFeaturesParams, FittedPolynomial, "PolynomialFeatures", Kind::Transformer
}
