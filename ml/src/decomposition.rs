//! Principal component analysis.
//!
//! The components are the eigenvectors of the covariance matrix, computed with
//! linfa-linalg's symmetric eigensolver (`eigh`): scikit-learn's own
//! `covariance_eigh` solver, which its `svd_solver="auto"` picks for tall data
//! (n_samples ≥ 10·n_features). linfa-reduction's `Pca` uses a randomized
//! truncated SVD instead, which is approximate. Signs follow scikit-learn's
//! `svd_flip(u_based_decision=False)`: the largest-magnitude entry of each
//! component is positive, so components compare entry by entry.
//!
//! Fits on identical data share one decomposition: the last few are kept by
//! the content token of X (as Rask's graphs key computations), so a search
//! over `n_components` decomposes each fold's covariance once, and each fit
//! only truncates it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use linfa_linalg::eigh::Eigh;
use ndarray::{s, Array1, Array2, ArrayView1, ArrayView2, Axis, ShapeBuilder};
use rask_core::key::TokenHasher;
use rask_core::Token;
use serde::{Deserialize, Serialize};

use crate::error::MlError;
use crate::estimator::{FitParams, FittedModel, Kind, Output};
use crate::params::Checked;

crate::params! {
    /// Hyperparameters of [`PCA`].
    pub struct PcaParams for "PCA" {
        /// Number of components kept (at most min(n_samples, n_features)); none = all of them.
        n_components ("n_components"): Option<i64> = None, valid if |v| v.is_none_or(|k| k >= 1), "an integer >= 1 or none";
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

    fn fit(
        params: &Checked<Self>,
        x: ArrayView2<'_, f64>,
        _y: Option<ArrayView1<'_, f64>>,
    ) -> Result<FittedPca, MlError> {
        let (n, p) = x.dim();
        let k = params.n_components.map_or(n.min(p), |k| k as usize);
        if k > n.min(p) {
            return Err(MlError::InvalidParam {
                estimator: "PCA".into(),
                param: "n_components".into(),
                value: k.to_string(),
                expected: format!(
                    "at most min(n_samples, n_features) = {} for this data",
                    n.min(p)
                ),
            });
        }
        if n < 2 {
            return Err(MlError::Shape {
                estimator: "PCA".into(),
                message: format!("needs at least 2 samples, got {n}"),
            });
        }
        let d = decompose(x)?;
        let components = d.components.slice(s![..k, ..]).to_owned();
        let explained = d.explained.slice(s![..k]).to_owned();
        let (mean, total_var) = (d.mean.clone(), d.total_var);
        let ratio = if total_var > 0.0 { &explained / total_var } else { Array1::zeros(k) };
        Ok(FittedPca {
            mean,
            components,
            explained_variance: explained,
            explained_variance_ratio: ratio,
            whiten: params.whiten,
        })
    }
}

/// The full eigendecomposition of X's covariance, sorted by decreasing
/// eigenvalue, signs flipped as scikit-learn does.
struct Decomposition {
    mean: Array1<f64>,
    components: Array2<f64>,
    explained: Array1<f64>,
    total_var: f64,
}

/// How many decompositions are kept (each is p×p: small).
const KEPT: usize = 8;

static RECENT: Mutex<VecDeque<(Token, Arc<Decomposition>)>> = Mutex::new(VecDeque::new());

/// Forgets the decompositions kept for reuse (their memory, and the warm
/// start they give the next fit on the same data: benchmarks time cold fits).
pub fn clear_decomposition_cache() {
    RECENT.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// The decomposition of `x`'s covariance, reused when the same data was
/// decomposed recently (hashing X costs far less than the covariance product).
fn decompose(x: ArrayView2<'_, f64>) -> Result<Arc<Decomposition>, MlError> {
    // The token and the column means in one pass over X (256 rows at a
    // time: hashed, then summed while still in cache).
    let (token, mean) = match x.as_slice() {
        Some(data) => {
            let (n, p) = x.dim();
            let mut h = TokenHasher::new();
            h.str("PCA.covariance_eigh").u64(n as u64).u64(p as u64);
            let mut sums = vec![0.0; p];
            for block in data.chunks(256 * p.max(1)) {
                // SAFETY: any f64 slice is a valid byte slice of 8× the length.
                h.bytes(unsafe {
                    std::slice::from_raw_parts(block.as_ptr().cast::<u8>(), size_of_val(block))
                });
                for row in block.chunks_exact(p) {
                    sums.iter_mut().zip(row).for_each(|(s, &v)| *s += v);
                }
            }
            (Some(h.finish()), sums.into_iter().map(|s| s / n as f64).collect())
        }
        None => (None, crate::gram::column_means(x)),
    };
    let recent = |t: &Token| {
        RECENT
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(k, _)| k == t)
            .map(|(_, d)| d.clone())
    };
    if let Some(d) = token.as_ref().and_then(recent) {
        return Ok(d);
    }
    let d = Arc::new(decompose_uncached(x, mean)?);
    if let Some(t) = token {
        let mut kept = RECENT.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back((t, d.clone()));
    }
    Ok(d)
}

fn decompose_uncached(x: ArrayView2<'_, f64>, mean: Array1<f64>) -> Result<Decomposition, MlError> {
    let (n, p) = x.dim();
    // XᵀX − n·m·mᵀ, as scikit-learn's `covariance_eigh` forms it.
    let cov = crate::gram::uncentered_scatter(x, &mean) / (n as f64 - 1.0);
    let total_var: f64 = cov.diag().sum();
    let (vals, vecs) = cov.eigh().map_err(|e| MlError::Fit {
        estimator: "PCA".into(),
        library: "linfa-linalg".into(),
        message: e.to_string(),
    })?;
    let mut order: Vec<usize> = (0..p).collect();
    order.sort_by(|&a, &b| vals[b].total_cmp(&vals[a]));
    let mut components = Array2::zeros((p, p));
    let mut explained = Array1::zeros(p);
    for (r, &c) in order.iter().enumerate() {
        let mut v = vecs.column(c).to_owned();
        let big =
            v.iter().enumerate().fold(0, |b, (i, x)| if x.abs() > v[b].abs() { i } else { b });
        if v[big] < 0.0 {
            v.mapv_inplace(|x| -x);
        }
        components.row_mut(r).assign(&v);
        explained[r] = vals[c].max(0.0);
    }
    Ok(Decomposition { mean, components, explained, total_var })
}

impl FittedModel for FittedPca {
    fn n_features(&self) -> usize {
        self.mean.len()
    }
    fn transform(&self, x: ArrayView2<'_, f64>) -> Output<Array2<f64>> {
        // x·Cᵀ − mean·Cᵀ: no centered copy of x. Column-major output: the
        // estimators that usually follow (logistic regression's solver) read
        // it column by column without a copy.
        let mut z = Array2::zeros((x.nrows(), self.components.nrows()).f());
        ndarray::linalg::general_mat_mul(1.0, &x, &self.components.t(), 0.0, &mut z);
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

#[cfg(test)]
mod tests {
    use ndarray::Array2;

    use super::*;

    #[test]
    fn shared_decomposition_gives_the_same_fits_and_never_a_stale_one() {
        let x = Array2::from_shape_fn((200, 6), |(i, j)| {
            ((i * 7 + j * 13) % 23) as f64 * (j as f64 + 1.0) + (i as f64).sin()
        });
        let small = PcaParams::default()
            .n_components(Some(2))
            .check()
            .unwrap()
            .fit(x.view(), None)
            .unwrap();
        let big = PcaParams::default()
            .n_components(Some(5))
            .check()
            .unwrap()
            .fit(x.view(), None)
            .unwrap();
        assert_eq!(big.components.slice(s![..2, ..]), small.components);
        assert_eq!(
            decompose_uncached(x.view(), crate::gram::column_means(x.view()))
                .unwrap()
                .components
                .slice(s![..5, ..]),
            big.components
        );
        // Other data (one value changed) is decomposed afresh.
        let mut y = x.clone();
        y[[17, 3]] += 1.0;
        let other = PcaParams::default()
            .n_components(Some(5))
            .check()
            .unwrap()
            .fit(y.view(), None)
            .unwrap();
        assert_eq!(
            decompose_uncached(y.view(), crate::gram::column_means(y.view()))
                .unwrap()
                .components
                .slice(s![..5, ..]),
            other.components
        );
        assert_ne!(other.components, big.components);
    }
}
