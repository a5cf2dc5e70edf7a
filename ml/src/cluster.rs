//! k-means clustering as scikit-learn's: greedy k-means++ initialization,
//! Lloyd iterations with distances from one matrix product per iteration,
//! the tolerance relative to the features' mean variance.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
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
        /// Independent runs with different seeds; the lowest inertia wins (scikit-learn's `"auto"` with k-means++ is 1).
        n_init ("n_init"): i64 = 1, valid if |v| *v >= 1, "an integer >= 1";
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
        let x = x.as_standard_layout();
        let mut rng = Xoshiro256Plus::seed_from_u64(params.random_state as u64);
        // scikit-learn's tolerance: relative to the mean variance of the features.
        let tol = params.tol * x.var_axis(Axis(0), 0.0).mean().unwrap_or(0.0);
        let x_sq: Array1<f64> = x.rows().into_iter().map(|r| r.dot(&r)).collect();
        let mut best: Option<FittedKMeans> = None;
        for _ in 0..params.n_init {
            let init = plus_plus(x.view(), &x_sq, k, &mut rng);
            let fit = lloyd(x.view(), &x_sq, init, params.max_iter as usize, tol);
            if best.as_ref().is_none_or(|b| fit.inertia < b.inertia) {
                best = Some(fit);
            }
        }
        Ok(best.expect("n_init >= 1"))
    }
}

/// Squared distances of every row to every centre (n × k), through
/// `‖x‖² − 2x·c + ‖c‖²` with one matrix product, clipped at 0.
fn distances(x: ArrayView2<'_, f64>, x_sq: &Array1<f64>, c: &Array2<f64>) -> Array2<f64> {
    let c_sq: Array1<f64> = c.rows().into_iter().map(|r| r.dot(&r)).collect();
    let mut d = x.dot(&c.t());
    for (i, mut row) in d.rows_mut().into_iter().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (x_sq[i] - 2.0 * *v + c_sq[j]).max(0.0);
        }
    }
    d
}

/// scikit-learn's greedy k-means++: each new centre is the best of
/// `2 + ln k` candidates drawn in proportion to the squared distance to the
/// centres so far.
fn plus_plus(
    x: ArrayView2<'_, f64>,
    x_sq: &Array1<f64>,
    k: usize,
    rng: &mut Xoshiro256Plus,
) -> Array2<f64> {
    use rand_xoshiro::rand_core::RngCore;
    let (n, p) = x.dim();
    let uniform = |rng: &mut Xoshiro256Plus| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let trials = 2 + (k as f64).ln() as usize;
    let mut centres = Array2::<f64>::zeros((k, p));
    let first = (rng.next_u64() % n as u64) as usize;
    centres.row_mut(0).assign(&x.row(first));
    let mut closest =
        distances(x, x_sq, &centres.slice(ndarray::s![..1, ..]).to_owned()).column(0).to_owned();
    let mut potential = closest.sum();
    for c in 1..k {
        let mut cumulative = closest.clone();
        cumulative.accumulate_axis_inplace(Axis(0), |&prev, cur| *cur += prev);
        let ids: Vec<usize> = (0..trials)
            .map(|_| {
                let r = uniform(rng) * potential;
                cumulative.as_slice().expect("contiguous").partition_point(|&v| v < r).min(n - 1)
            })
            .collect();
        let candidates = x.select(Axis(0), &ids);
        let d = distances(x, x_sq, &candidates);
        let mut best = (f64::INFINITY, 0usize);
        for t in 0..trials {
            let pot: f64 = closest.iter().zip(d.column(t)).map(|(a, b)| a.min(*b)).sum();
            if pot < best.0 {
                best = (pot, t);
            }
        }
        let t = best.1;
        closest.zip_mut_with(&d.column(t), |a, &b| *a = a.min(b));
        potential = best.0;
        centres.row_mut(c).assign(&candidates.row(t));
    }
    centres
}

/// Lloyd iterations until the centres move less than `tol` (summed squared
/// shift) or `max_iter`; then the final assignment and inertia. An empty
/// cluster takes the row farthest from its centre, as scikit-learn relocates.
fn lloyd(
    x: ArrayView2<'_, f64>,
    x_sq: &Array1<f64>,
    mut centres: Array2<f64>,
    max_iter: usize,
    tol: f64,
) -> FittedKMeans {
    let (n, p) = x.dim();
    let k = centres.nrows();
    let xs = x.as_slice().expect("standard layout");
    let mut nearest = vec![(0usize, 0.0f64); n];
    for _ in 0..max_iter {
        let (mut sums, mut counts) = assign_and_sum(xs, p, x_sq, &centres, &mut nearest);
        for j in 0..k {
            if counts[j] == 0 {
                let far =
                    (0..n).max_by(|&a, &b| nearest[a].1.total_cmp(&nearest[b].1)).expect("rows");
                // The row leaves its cluster for the empty one.
                let from = nearest[far].0;
                if counts[from] > 1 {
                    sums.row_mut(from).scaled_add(-1.0, &x.row(far));
                    counts[from] -= 1;
                }
                sums.row_mut(j).assign(&x.row(far));
                nearest[far] = (j, 0.0);
                counts[j] = 1;
            }
        }
        for (mut row, &c) in sums.rows_mut().into_iter().zip(&counts) {
            row.mapv_inplace(|v| v / c as f64);
        }
        let shift: f64 = (&sums - &centres).mapv(|v| v * v).sum();
        centres = sums;
        if shift <= tol {
            break;
        }
    }
    let inertia = distances(x, x_sq, &centres)
        .rows()
        .into_iter()
        .map(|r| r[crate::estimator::argmin_row(r)])
        .sum();
    FittedKMeans { centroids: centres, inertia }
}

/// One Lloyd step's E and half its M: each row's nearest centre (by
/// `‖c‖² − 2x·c`, as `‖x‖²` is common) and squared distance, and each
/// centre's sum and count of rows, without a matrix product's packing.
fn assign_and_sum(
    xs: &[f64],
    p: usize,
    x_sq: &Array1<f64>,
    centres: &Array2<f64>,
    nearest: &mut [(usize, f64)],
) -> (Array2<f64>, Vec<usize>) {
    #[cfg(target_arch = "x86_64")]
    if rask_core::fastmath::has_avx2_fma() {
        // SAFETY: the CPU has the features this copy is compiled for.
        return unsafe { assign_and_sum_avx2(xs, p, x_sq, centres, nearest) };
    }
    assign_and_sum_with::<false>(xs, p, x_sq, centres, nearest)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn assign_and_sum_avx2(
    xs: &[f64],
    p: usize,
    x_sq: &Array1<f64>,
    centres: &Array2<f64>,
    nearest: &mut [(usize, f64)],
) -> (Array2<f64>, Vec<usize>) {
    assign_and_sum_with::<true>(xs, p, x_sq, centres, nearest)
}

/// Rows per register tile.
const TILE_ROWS: usize = 4;
/// Centres per register tile (padded with centres at infinite distance).
const TILE_CENTRES: usize = 8;

#[inline(always)]
fn assign_and_sum_with<const FMA: bool>(
    xs: &[f64],
    p: usize,
    x_sq: &Array1<f64>,
    centres: &Array2<f64>,
    nearest: &mut [(usize, f64)],
) -> (Array2<f64>, Vec<usize>) {
    // A GEMM-style register tile: 4 rows × 8 centres of dot products stay in
    // registers while the features stream past, then each row's nearest
    // centre is read off the tile. Centres are stored per tile as p × 8.
    let k = centres.nrows();
    let tiles = k.div_ceil(TILE_CENTRES);
    let mut ct = vec![0.0f64; tiles * p * TILE_CENTRES];
    let mut c_sq = vec![f64::INFINITY; tiles * TILE_CENTRES];
    for (j, c) in centres.rows().into_iter().enumerate() {
        let (t, l) = (j / TILE_CENTRES, j % TILE_CENTRES);
        for (f, &v) in c.iter().enumerate() {
            ct[(t * p + f) * TILE_CENTRES + l] = v;
        }
        c_sq[j] = c.dot(&c);
    }
    let mut sums = vec![0.0f64; k * p];
    let mut counts = vec![0usize; k];
    let n = xs.len() / p;
    let mut padded = vec![0.0f64; TILE_ROWS * p];
    for start in (0..n).step_by(TILE_ROWS) {
        let m = TILE_ROWS.min(n - start);
        let rows: &[f64] = if m == TILE_ROWS {
            &xs[start * p..(start + TILE_ROWS) * p]
        } else {
            padded[..m * p].copy_from_slice(&xs[start * p..(start + m) * p]);
            &padded
        };
        let mut best = [(0usize, f64::INFINITY); TILE_ROWS];
        for t in 0..tiles {
            let mut acc = [[0.0f64; TILE_CENTRES]; TILE_ROWS];
            let tile = &ct[t * p * TILE_CENTRES..(t + 1) * p * TILE_CENTRES];
            let (r0, rest) = rows.split_at(p);
            let (r1, rest) = rest.split_at(p);
            let (r2, r3) = rest.split_at(p);
            for (f, cv) in tile.chunks_exact(TILE_CENTRES).enumerate() {
                let cv: &[f64; TILE_CENTRES] = cv.try_into().expect("a tile row");
                let a = [r0[f], r1[f], r2[f], r3[f]];
                for r in 0..TILE_ROWS {
                    for l in 0..TILE_CENTRES {
                        acc[r][l] = if FMA {
                            cv[l].mul_add(a[r], acc[r][l])
                        } else {
                            acc[r][l] + cv[l] * a[r]
                        };
                    }
                }
            }
            for r in 0..TILE_ROWS {
                for l in 0..TILE_CENTRES {
                    let d = c_sq[t * TILE_CENTRES + l] - 2.0 * acc[r][l];
                    if d < best[r].1 {
                        best[r] = (t * TILE_CENTRES + l, d);
                    }
                }
            }
        }
        for (r, &(j, d)) in best.iter().enumerate().take(m) {
            let i = start + r;
            nearest[i] = (j, (d + x_sq[i]).max(0.0));
            counts[j] += 1;
            for (s, v) in sums[j * p..(j + 1) * p].iter_mut().zip(&xs[i * p..(i + 1) * p]) {
                *s += v;
            }
        }
    }
    (Array2::from_shape_vec((k, p), sums).expect("k × p"), counts)
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
