//! Least squares through the Gram matrix, for the linear regressors.
//!
//! One pass over X builds the centered Gram matrix `XcᵀXc` and `Xcᵀyc`
//! (row blocks centered in a small buffer that stays in cache, so no
//! centered copy of X is made). Everything after is p × p:
//! * `LinearRegression`: Cholesky, or, when X is rank deficient, the
//!   minimum-norm solution through the eigendecomposition (what
//!   scikit-learn's `lstsq` returns);
//! * `Ridge`: Cholesky of `G + αI` (scikit-learn's `auto` for dense X);
//! * `Lasso` / `ElasticNet`: scikit-learn's coordinate descent on the Gram
//!   matrix (`enet_coordinate_descent_gram`: the same cyclic updates and
//!   duality-gap stopping rule, so the same iterates as its default
//!   X-based solver), each sweep O(p²) instead of O(np).

use linfa_linalg::eigh::EighInto;
use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array1, Array2, ArrayView1, ArrayView2, Axis};

/// Rows centered per block.
const BLOCK: usize = 512;

/// The sufficient statistics of a least-squares problem.
pub(crate) struct Centered {
    /// `XcᵀXc` (p × p).
    pub gram: Array2<f64>,
    /// `Xcᵀyc`.
    pub xty: Array1<f64>,
    /// `ycᵀyc`.
    pub yty: f64,
    /// Column means of X (with an intercept).
    pub x_mean: Option<Array1<f64>>,
    /// Mean of y (0 without an intercept).
    pub y_mean: f64,
    /// Rows.
    pub n: usize,
}

/// Gram matrix and `Xᵀy`, of centered data when `fit_intercept`.
pub(crate) fn centered(
    x: ArrayView2<'_, f64>,
    y: ArrayView1<'_, f64>,
    fit_intercept: bool,
) -> Centered {
    let n = x.nrows();
    let (x_mean, y_mean) = if fit_intercept {
        (Some(column_means(x)), y.mean().expect("checked non-empty"))
    } else {
        (None, 0.0)
    };
    let (gram, xty, yty) = products(x, x_mean.as_ref(), Some((y, y_mean)));
    Centered { gram, xty, yty, x_mean, y_mean, n }
}

/// Column bands of the Gram matrix's upper triangle, each computed from its
/// diagonal block rightwards: three bands (2/3 of the full product's work)
/// for 36 columns or more, two (3/4) from 12, else one. More, smaller
/// products measured slower on w9's 50 columns (each packs its operands).
fn bands(p: usize) -> impl Iterator<Item = (usize, usize)> {
    let q = if p >= 36 {
        3
    } else if p >= 12 {
        2
    } else {
        1
    };
    (0..q).map(move |a| (a * p / q, (a + 1) * p / q))
}

/// The first `rows` rows of a standard-layout buffer.
fn bs_rows(buf: &Array2<f64>, rows: usize, p: usize) -> std::slice::ChunksExact<'_, f64> {
    buf.as_slice().expect("a fresh buffer")[..rows * p].chunks_exact(p)
}

/// Column means, summing whole rows (a loop that vectorizes across columns).
pub(crate) fn column_means(x: ArrayView2<'_, f64>) -> Array1<f64> {
    let Some(xs) = x.as_slice() else {
        return x.mean_axis(Axis(0)).expect("checked non-empty");
    };
    let (n, p) = x.dim();
    let mut sums = vec![0.0; p];
    for row in xs.chunks_exact(p) {
        sums.iter_mut().zip(row).for_each(|(s, &v)| *s += v);
    }
    sums.into_iter().map(|s| s / n as f64).collect()
}

/// `XᵀX − n·m·mᵀ` for column means `m`: the centered Gram matrix without a
/// centered copy, as scikit-learn's PCA (`covariance_eigh`) forms it. Cheaper
/// than centering a copy of X first (one pass fewer), at the cost of cancellation when
/// a column's mean dwarfs its spread (relative error ~ ε·(mean/std)²).
pub(crate) fn uncentered_scatter(x: ArrayView2<'_, f64>, mean: &Array1<f64>) -> Array2<f64> {
    let p = x.ncols();
    let mut gram = Array2::<f64>::zeros((p, p));
    for (lo, hi) in bands(p) {
        let (band, right) = (x.slice(s![.., lo..hi]), x.slice(s![.., lo..]));
        general_mat_mul(1.0, &band.t(), &right, 0.0, &mut gram.slice_mut(s![lo..hi, lo..]));
    }
    symmetrize(&mut gram);
    let n = x.nrows() as f64;
    for i in 0..p {
        for j in 0..p {
            gram[[i, j]] -= n * mean[i] * mean[j];
        }
    }
    gram
}

/// The blocked pass: `XcᵀXc`, and with `y` also `Xcᵀyc` and `ycᵀyc`.
fn products(
    x: ArrayView2<'_, f64>,
    x_mean: Option<&Array1<f64>>,
    y: Option<(ArrayView1<'_, f64>, f64)>,
) -> (Array2<f64>, Array1<f64>, f64) {
    let (n, p) = x.dim();
    let mut gram = Array2::<f64>::zeros((p, p));
    let mut xty = Array1::<f64>::zeros(p);
    let mut yty = 0.0;
    let mut buf = Array2::<f64>::zeros((BLOCK.min(n), p));
    let mut yb = Array1::<f64>::zeros(BLOCK.min(n));
    let mut start = 0;
    while start < n {
        let end = (start + BLOCK).min(n);
        let rows = end - start;
        let xb = x.slice(s![start..end, ..]);
        let bs = &mut buf.as_slice_mut().expect("a fresh buffer")[..rows * p];
        match (x_mean.and_then(|m| m.as_slice()), xb.as_slice()) {
            // Copy and center in one pass over contiguous rows.
            (Some(m), Some(xs)) => {
                for (br, xr) in bs.chunks_exact_mut(p).zip(xs.chunks_exact(p)) {
                    for ((b, &x), &m) in br.iter_mut().zip(xr).zip(m) {
                        *b = x - m;
                    }
                }
            }
            _ => {
                let mut b = buf.slice_mut(s![..rows, ..]);
                b.assign(&xb);
                if let Some(m) = x_mean {
                    b -= m;
                }
            }
        }
        let b = buf.slice(s![..rows, ..]);
        // The upper triangle, a band of rows at a time (each band from its
        // diagonal block rightwards): (q+1)/2q of the full product's work.
        for (lo, hi) in bands(p) {
            let band = b.slice(s![.., lo..hi]);
            let right = b.slice(s![.., lo..]);
            general_mat_mul(1.0, &band.t(), &right, 1.0, &mut gram.slice_mut(s![lo..hi, lo..]));
        }
        if let Some((y, y_mean)) = y {
            let mut yv = yb.slice_mut(s![..rows]);
            yv.assign(&y.slice(s![start..end]));
            yv -= y_mean;
            let yv = &yb.as_slice().expect("a fresh buffer")[..rows];
            // Xcᵀyc row by row (vectorizes across columns; a transposed
            // matrix-vector product would stride through the block).
            let acc = xty.as_slice_mut().expect("a fresh vector");
            for (br, &yr) in bs_rows(&buf, rows, p).zip(yv) {
                acc.iter_mut().zip(br).for_each(|(a, &b)| *a += b * yr);
            }
            yty += yv.iter().map(|v| v * v).sum::<f64>();
        }
        start = end;
    }
    symmetrize(&mut gram);
    (gram, xty, yty)
}

/// Fills the lower triangle of a Gram matrix computed by [`bands`]: below
/// the diagonal blocks it mirrors the upper triangle; within a diagonal
/// block the two triangles come from separate sums, so it averages them and
/// the matrix is exactly symmetric.
fn symmetrize(gram: &mut Array2<f64>) {
    let p = gram.nrows();
    let band_of = |i: usize| bands(p).position(|(lo, hi)| (lo..hi).contains(&i));
    for i in 0..p {
        for j in 0..i {
            let v = if band_of(i) == band_of(j) {
                0.5 * (gram[[i, j]] + gram[[j, i]])
            } else {
                gram[[j, i]]
            };
            gram[[i, j]] = v;
            gram[[j, i]] = v;
        }
    }
}

impl Centered {
    /// The intercept that goes with `coef`.
    pub fn intercept(&self, coef: &Array1<f64>) -> f64 {
        match &self.x_mean {
            Some(m) => self.y_mean - m.dot(coef),
            None => 0.0,
        }
    }
}

/// Solves `a·x = b` for symmetric positive definite `a` by Cholesky; `None`
/// when a pivot is not clearly positive (relative to the largest diagonal
/// entry), i.e. the matrix is singular or too ill-conditioned for it.
pub(crate) fn cholesky_solve(a: &Array2<f64>, b: &Array1<f64>) -> Option<Array1<f64>> {
    let p = a.nrows();
    let scale = (0..p).map(|i| a[[i, i]].abs()).fold(0.0, f64::max);
    let floor = scale * 1e-12;
    let mut l = Array2::<f64>::zeros((p, p));
    for j in 0..p {
        let mut d = a[[j, j]];
        for k in 0..j {
            d -= l[[j, k]] * l[[j, k]];
        }
        if !(d > floor) {
            return None;
        }
        let d = d.sqrt();
        l[[j, j]] = d;
        for i in j + 1..p {
            let mut v = a[[i, j]];
            for k in 0..j {
                v -= l[[i, k]] * l[[j, k]];
            }
            l[[i, j]] = v / d;
        }
    }
    let mut z = b.clone();
    for i in 0..p {
        let mut v = z[i];
        for k in 0..i {
            v -= l[[i, k]] * z[k];
        }
        z[i] = v / l[[i, i]];
    }
    for i in (0..p).rev() {
        let mut v = z[i];
        for k in i + 1..p {
            v -= l[[k, i]] * z[k];
        }
        z[i] = v / l[[i, i]];
    }
    Some(z)
}

/// The minimum-norm least-squares solution from the Gram matrix: the
/// pseudo-inverse through its eigendecomposition, dropping directions whose
/// singular value is below `eps · max(n, p)` of the largest (LAPACK's
/// `gelsd` default in `lstsq`).
pub(crate) fn min_norm_solve(c: &Centered) -> Result<Array1<f64>, String> {
    let p = c.gram.nrows();
    let (vals, vecs) = c.gram.clone().eigh_into().map_err(|e| e.to_string())?;
    let top = vals.iter().copied().fold(0.0, f64::max);
    let rcond = f64::EPSILON * c.n.max(p) as f64;
    let mut coef = Array1::<f64>::zeros(p);
    for (j, &lambda) in vals.iter().enumerate() {
        if lambda > rcond * rcond * top && lambda > 0.0 {
            let v = vecs.column(j);
            coef.scaled_add(v.dot(&c.xty) / lambda, &v);
        }
    }
    Ok(coef)
}

/// scikit-learn's `enet_coordinate_descent_gram`: minimizes
/// `½wᵀGw − qᵀw + l1‖w‖₁ + ½·l2‖w‖²` (the summed squared loss, so
/// `l1 = α·ρ·n`, `l2 = α(1−ρ)·n`), cyclic updates, and the duality gap
/// checked when the largest update is below `tol` of the largest weight;
/// it stops when the gap is below `tol · yᵀy`, or after `max_iter` sweeps
/// (where scikit-learn warns that it did not converge).
pub(crate) fn enet_cd(c: &Centered, l1: f64, l2: f64, max_iter: usize, tol: f64) -> Array1<f64> {
    let p = c.gram.nrows();
    let g = &c.gram;
    let q = &c.xty;
    let mut w = Array1::<f64>::zeros(p);
    let mut h = Array1::<f64>::zeros(p); // G·w
    let gap_tol = tol * c.yty;
    for n_iter in 0..max_iter {
        let mut w_max = 0.0f64;
        let mut d_w_max = 0.0f64;
        for j in 0..p {
            let gjj = g[[j, j]];
            if gjj == 0.0 {
                continue;
            }
            let w_old = w[j];
            let row = g.row(j);
            if w_old != 0.0 {
                h.scaled_add(-w_old, &row);
            }
            let tmp = q[j] - h[j];
            let w_new = tmp.signum() * (tmp.abs() - l1).max(0.0) / (gjj + l2);
            w[j] = w_new;
            if w_new != 0.0 {
                h.scaled_add(w_new, &row);
            }
            d_w_max = d_w_max.max((w_new - w_old).abs());
            w_max = w_max.max(w_new.abs());
        }
        if w_max == 0.0 || d_w_max / w_max < tol || n_iter + 1 == max_iter {
            let q_dot_w = q.dot(&w);
            let r_norm2 = (c.yty + w.dot(&h) - 2.0 * q_dot_w).max(0.0);
            let dual_norm = (0..p).map(|j| (q[j] - h[j] - l2 * w[j]).abs()).fold(0.0, f64::max);
            let w_norm2 = w.dot(&w);
            let (constant, a_norm2) = if dual_norm > l1 {
                let cst = l1 / dual_norm;
                (cst, r_norm2 * cst * cst)
            } else {
                (1.0, r_norm2)
            };
            let mut gap = 0.5 * (r_norm2 + a_norm2);
            let l1_norm: f64 = w.iter().map(|v| v.abs()).sum();
            gap += l1 * l1_norm - constant * (c.yty - q_dot_w)
                + 0.5 * l2 * (1.0 + constant * constant) * w_norm2;
            if gap < gap_tol {
                break;
            }
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn cholesky_and_min_norm_agree_on_a_full_rank_problem() {
        let x = array![[1.0, 2.0], [3.0, 1.0], [0.5, 4.0], [2.0, 2.5]];
        let y = array![1.0, 2.0, 0.5, 1.5];
        let c = centered(x.view(), y.view(), true);
        let a = cholesky_solve(&c.gram, &c.xty).unwrap();
        let b = min_norm_solve(&c).unwrap();
        assert!((&a - &b).iter().all(|d| d.abs() < 1e-12), "{a} {b}");
        // The centered Gram matrix equals the explicit one.
        let xc = &x - &x.mean_axis(Axis(0)).unwrap();
        assert!((&xc.t().dot(&xc) - &c.gram).iter().all(|d| d.abs() < 1e-12));
    }

    #[test]
    fn a_duplicated_column_is_rank_deficient_and_gets_the_minimum_norm_solution() {
        let x = array![[1.0, 1.0], [2.0, 2.0], [4.0, 4.0]];
        let y = array![2.0, 4.0, 8.0];
        let c = centered(x.view(), y.view(), false);
        assert!(cholesky_solve(&c.gram, &c.xty).is_none());
        let w = min_norm_solve(&c).unwrap();
        assert!((w[0] - 1.0).abs() < 1e-10 && (w[1] - 1.0).abs() < 1e-10, "{w}");
    }
}
