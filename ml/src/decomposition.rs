//! Principal component analysis.
//!
//! The components are the eigenvectors of the covariance matrix, computed with
//! linfa-linalg's symmetric eigensolver (`eigh`): scikit-learn's own
//! `covariance_eigh` solver, which its `svd_solver="auto"` picks for tall data
//! (n_samples ≥ 10·n_features). linfa-reduction's `Pca` uses a randomized
//! truncated SVD instead, which is approximate. Signs follow scikit-learn's
//! `svd_flip(u_based_decision=False)`: the largest-magnitude entry of each
//! component is positive, so components compare entry by entry.

use linfa_linalg::eigh::Eigh;
use ndarray::{s, Array1, Array2, ArrayView1, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::error::MlError;
use crate::estimator::{FitParams, FittedModel, Kind, Output};

crate::params! {
    /// Hyperparameters of [`PCA`].
    pub struct PcaParams for "PCA" {
        /// Number of components kept (at most min(n_samples, n_features)).
        n_components ("n_components"): i64 = 2, valid if |v| *v >= 1, "an integer >= 1";
        /// Scale the projections to unit variance.
        whiten ("whiten"): bool = false, valid if |_v| true, "true or false";
    }
}

/// A fitted PCA.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FittedPca {
    /// Column means of the training data.
    pub mean: Array1<f64>,
    /// Principal axes, one per row, by decreasing explained variance.
    pub components: Array2<f64>,
    /// Variance explained by each component (eigenvalues of the covariance).
    pub explained_variance: Array1<f64>,
    /// Share of the total variance explained by each component.
    pub explained_variance_ratio: Array1<f64>,
    whiten: bool,
}

impl FitParams for PcaParams {
    type Fitted = FittedPca;

    fn fit(&self, x: ArrayView2<'_, f64>, _y: Option<ArrayView1<'_, f64>>) -> Result<FittedPca, MlError> {
        let (n, p) = x.dim();
        let k = self.n_components as usize;
        if k > n.min(p) {
            return Err(MlError::InvalidParam {
                estimator: "PCA".into(),
                param: "n_components".into(),
                value: k.to_string(),
                expected: format!("at most min(n_samples, n_features) = {} for this data", n.min(p)),
            });
        }
        if n < 2 {
            return Err(MlError::Shape { estimator: "PCA".into(), message: format!("needs at least 2 samples, got {n}") });
        }
        let mean = x.mean_axis(Axis(0)).expect("non-empty");
        let centered = &x - &mean;
        let cov = centered.t().dot(&centered) / (n as f64 - 1.0);
        let total_var: f64 = cov.diag().sum();
        let (vals, vecs) = cov.eigh().map_err(|e| MlError::Fit {
            estimator: "PCA".into(),
            library: "linfa-linalg".into(),
            message: e.to_string(),
        })?;
        let mut order: Vec<usize> = (0..p).collect();
        order.sort_by(|&a, &b| vals[b].total_cmp(&vals[a]));
        let mut components = Array2::zeros((k, p));
        let mut explained = Array1::zeros(k);
        for (r, &c) in order[..k].iter().enumerate() {
            let mut v = vecs.column(c).to_owned();
            let big = v.iter().enumerate().fold(0, |b, (i, x)| if x.abs() > v[b].abs() { i } else { b });
            if v[big] < 0.0 {
                v.mapv_inplace(|x| -x);
            }
            components.row_mut(r).assign(&v);
            explained[r] = vals[c].max(0.0);
        }
        let ratio = if total_var > 0.0 { &explained / total_var } else { Array1::zeros(k) };
        Ok(FittedPca { mean, components, explained_variance: explained, explained_variance_ratio: ratio, whiten: self.whiten })
    }
}

impl FittedModel for FittedPca {
    fn n_features(&self) -> usize {
        self.mean.len()
    }
    fn transform(&self, x: ArrayView2<'_, f64>) -> Output<Array2<f64>> {
        // x·Cᵀ − mean·Cᵀ: no centered copy of x.
        let mut z = x.dot(&self.components.t());
        let shift = self.mean.dot(&self.components.t());
        z -= &shift;
        if self.whiten {
            for (mut col, &ev) in z.axis_iter_mut(Axis(1)).zip(self.explained_variance.iter()) {
                col /= ev.max(f64::EPSILON).sqrt();
            }
        }
        Some(Ok(z))
    }
}

impl FittedPca {
    /// Maps projections back to the input space.
    pub fn inverse_transform(&self, z: ArrayView2<'_, f64>) -> Array2<f64> {
        let mut z = z.to_owned();
        if self.whiten {
            for (mut col, &ev) in z.axis_iter_mut(Axis(1)).zip(self.explained_variance.iter()) {
                col *= ev.max(f64::EPSILON).sqrt();
            }
        }
        z.dot(&self.components.slice(s![.., ..])) + &self.mean
    }
}

crate::estimator! {
    /// Principal component analysis (see [`PcaParams`]).
    PCA, PcaParams, FittedPca, "PCA", Kind::Transformer
}
