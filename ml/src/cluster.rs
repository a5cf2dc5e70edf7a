//! k-means clustering (linfa-clustering; k-means++ initialization, Lloyd iterations).

use linfa::prelude::*;
use linfa_clustering::KMeans as LinfaKMeans;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;
use serde::{Deserialize, Serialize};

use crate::error::MlError;
use crate::estimator::{FitParams, FittedModel, Kind, Output};
use crate::params::Checked;

crate::params! {
    /// Hyperparameters of [`KMeans`].
    pub struct KMeansParams for "KMeans" {
        /// Number of clusters.
        n_clusters ("n_clusters"): i64 = 8, valid if |v| *v >= 1, "an integer >= 1";
        /// Independent runs with different seeds; the lowest inertia wins.
        n_init ("n_init"): i64 = 10, valid if |v| *v >= 1, "an integer >= 1";
        /// Maximum iterations of one run.
        max_iter ("max_iter"): i64 = 300, valid if |v| *v >= 1, "an integer >= 1";
        /// Convergence tolerance on centroid movement.
        tol ("tol"): f64 = 1e-4, valid if |v| *v > 0.0, "a positive number";
        /// Seed of the initialization.
        random_state ("random_state"): i64 = 0, valid if |v| *v >= 0, "an integer >= 0";
    }
}

/// A fitted k-means model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FittedKMeans {
    /// Cluster centres, one per row.
    pub centroids: Array2<f64>,
    /// Sum of squared distances of the training samples to their centre.
    pub inertia: f64,
}

impl FitParams for KMeansParams {
    type Fitted = FittedKMeans;

    fn fit(
        params: &Checked<Self>,
        x: ArrayView2<'_, f64>,
        _y: Option<ArrayView1<'_, f64>>,
    ) -> Result<FittedKMeans, MlError> {
        let k = params.n_clusters as usize;
        if k > x.nrows() {
            return Err(MlError::InvalidParam {
                estimator: "KMeans".into(),
                param: "n_clusters".into(),
                value: k.to_string(),
                expected: format!("at most the number of samples ({})", x.nrows()),
            });
        }
        let rng = Xoshiro256Plus::seed_from_u64(params.random_state as u64);
        let model = LinfaKMeans::params_with_rng(k, rng)
            .n_runs(params.n_init as usize)
            .max_n_iterations(params.max_iter as u64)
            .tolerance(params.tol)
            .fit(&DatasetBase::from(x.to_owned()))
            .map_err(|e| MlError::Fit {
                estimator: "KMeans".into(),
                library: "linfa-clustering".into(),
                message: e.to_string(),
            })?;
        let centroids = model.centroids().clone();
        let inertia = assign(&centroids, x).1;
        Ok(FittedKMeans { centroids, inertia })
    }
}

/// Nearest centre of each row, and the total squared distance.
fn assign(c: &Array2<f64>, x: ArrayView2<'_, f64>) -> (Array1<f64>, f64) {
    let mut total = 0.0;
    let labels = x
        .rows()
        .into_iter()
        .map(|r| {
            let (best, d) = c
                .rows()
                .into_iter()
                .enumerate()
                .map(|(j, cr)| {
                    (j, r.iter().zip(cr.iter()).map(|(a, b)| (a - b) * (a - b)).sum::<f64>())
                })
                .fold((0, f64::INFINITY), |b, (j, d)| if d < b.1 { (j, d) } else { b });
            total += d;
            best as f64
        })
        .collect();
    (labels, total)
}

impl FittedModel for FittedKMeans {
    fn n_features(&self) -> usize {
        self.centroids.ncols()
    }
    fn predict(&self, x: ArrayView2<'_, f64>) -> Output<Array1<f64>> {
        Some(Ok(assign(&self.centroids, x).0))
    }
    fn transform(&self, x: ArrayView2<'_, f64>) -> Output<Array2<f64>> {
        let mut out = Array2::zeros((x.nrows(), self.centroids.nrows()));
        for (i, r) in x.rows().into_iter().enumerate() {
            for (j, c) in self.centroids.rows().into_iter().enumerate() {
                out[[i, j]] =
                    r.iter().zip(c.iter()).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
            }
        }
        Some(Ok(out))
    }
    /// scikit-learn's `KMeans.score`: minus the inertia on `x`.
    fn custom_score(&self, x: ArrayView2<'_, f64>, _y: Option<ArrayView1<'_, f64>>) -> Option<f64> {
        Some(-assign(&self.centroids, x).1)
    }
}

crate::estimator! {
    /// k-means clustering (see [`KMeansParams`]).
    KMeans, KMeansParams, FittedKMeans, "KMeans", Kind::Clusterer
}
