//! k-nearest-neighbours classification.
//!
//! Exact brute-force search (scikit-learn's `algorithm="brute"`): distances to
//! every training sample, the `k` nearest by (distance, training index) — the
//! same order scikit-learn's stable sort gives on ties — and majority vote,
//! ties to the smaller class. Brute force is exact and, for the moderate sizes
//! cross-validation sees, as fast as a tree; linfa-nn and smartcore order tied
//! neighbours differently, which changes votes on discrete data.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::error::MlError;
use crate::estimator::{encode_classes, require_y, FitParams, FittedModel, Kind, Output};
use crate::params::Checked;

crate::params! {
    /// Hyperparameters of [`KNeighborsClassifier`].
    pub struct KNeighborsParams for "KNeighborsClassifier" {
        /// Number of neighbours.
        n_neighbors ("n_neighbors"): i64 = 5, valid if |v| *v >= 1, "an integer >= 1";
        /// `"uniform"` votes or `"distance"`-weighted votes.
        weights ("weights"): String = "uniform".to_string(), valid if |v| v == "uniform" || v == "distance", "\"uniform\" or \"distance\"";
    }
}

/// A fitted k-NN classifier (it keeps the training data).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FittedKnn {
    classes: Vec<f64>,
    x: Array2<f64>,
    y: Vec<usize>,
    k: usize,
    distance_weighted: bool,
}

impl FitParams for KNeighborsParams {
    type Fitted = FittedKnn;

    fn fit(
        params: &Checked<Self>,
        x: ArrayView2<'_, f64>,
        y: Option<ArrayView1<'_, f64>>,
    ) -> Result<FittedKnn, MlError> {
        let name = "KNeighborsClassifier";
        let (classes, idx) = encode_classes(name, require_y(name, y)?)?;
        if params.n_neighbors as usize > x.nrows() {
            return Err(MlError::InvalidParam {
                estimator: name.into(),
                param: "n_neighbors".into(),
                value: params.n_neighbors.to_string(),
                expected: format!("at most the number of training samples ({})", x.nrows()),
            });
        }
        Ok(FittedKnn {
            classes,
            x: x.to_owned(),
            y: idx,
            k: params.n_neighbors as usize,
            distance_weighted: params.weights == "distance",
        })
    }
}

impl FittedKnn {
    /// Per-class vote weights of each query row. Candidates come from
    /// blocked squared distances `‖t‖² − 2q·t` (one matrix product per block
    /// of queries, as scikit-learn's brute force); the `k + 8` best are then
    /// measured exactly and the `k` nearest chosen by (distance, index).
    fn votes(&self, q: ArrayView2<'_, f64>) -> Array2<f64> {
        const BLOCK: usize = 32;
        let n = self.x.nrows();
        let mut out = Array2::zeros((q.nrows(), self.classes.len()));
        let t_sq: Vec<f64> = self.x.rows().into_iter().map(|r| r.dot(&r)).collect();
        let m = (self.k + 8).min(n);
        let mut d: Vec<(f64, usize)> = Vec::with_capacity(m + 1);
        let xt = self.x.t();
        let mut start = 0;
        while start < q.nrows() {
            let end = (start + BLOCK).min(q.nrows());
            let g = q.slice(ndarray::s![start..end, ..]).dot(&xt);
            for (r, grow) in g.rows().into_iter().enumerate() {
                let i = start + r;
                let row = q.row(i);
                // The m smallest candidates, kept sorted while scanning.
                d.clear();
                for (j, (&gj, &tj)) in grow.iter().zip(&t_sq).enumerate() {
                    let v = tj - 2.0 * gj;
                    if d.len() < m || v < d[m - 1].0 {
                        let at = d.partition_point(|c| c.0 <= v);
                        if d.len() == m {
                            d.pop();
                        }
                        d.insert(at, (v, j));
                    }
                }
                for c in d.iter_mut() {
                    let t = self.x.row(c.1);
                    c.0 = row.iter().zip(t.iter()).map(|(a, b)| (a - b) * (a - b)).sum();
                }
                d.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                let nearest = &d[..self.k];
                if self.distance_weighted && nearest.iter().any(|(dist, _)| *dist == 0.0) {
                    // Exact matches take all the weight, as in scikit-learn.
                    for &(dist, j) in nearest {
                        if dist == 0.0 {
                            out[[i, self.y[j]]] += 1.0;
                        }
                    }
                    continue;
                }
                for &(dist, j) in nearest {
                    out[[i, self.y[j]]] +=
                        if self.distance_weighted { 1.0 / dist.sqrt() } else { 1.0 };
                }
            }
            start = end;
        }
        out
    }
}

impl FittedModel for FittedKnn {
    fn n_features(&self) -> usize {
        self.x.ncols()
    }
    fn predict(&self, x: ArrayView2<'_, f64>) -> Output<Array1<f64>> {
        let v = self.votes(x);
        Some(Ok(v.rows().into_iter().map(|r| self.classes[crate::estimator::argmax(r)]).collect()))
    }
    fn predict_proba(&self, x: ArrayView2<'_, f64>) -> Output<Array2<f64>> {
        let mut v = self.votes(x);
        for mut r in v.rows_mut() {
            let s = r.sum();
            r /= s;
        }
        Some(Ok(v))
    }
    fn classes(&self) -> Option<&[f64]> {
        Some(&self.classes)
    }
}

crate::estimator! {
    /// k-nearest-neighbours classifier (see [`KNeighborsParams`]).
    KNeighborsClassifier, KNeighborsParams, FittedKnn, "KNeighborsClassifier", Kind::Classifier
}
