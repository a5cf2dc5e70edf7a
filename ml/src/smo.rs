//! libsvm's solver for the C-SVC dual, as scikit-learn's `SVC` runs it:
//!
//! ```text
//! min ½ αᵀQα − eᵀα   subject to 0 ≤ α ≤ C, yᵀα = 0,   Q_ij = y_i y_j K(x_i, x_j)
//! ```
//!
//! SMO with libsvm's second-order working-set selection (Fan, Chen & Lin,
//! JMLR 2005), its stopping rule (the maximal violating pair closer than
//! `tol`), its analytic two-variable update with clipping, and its bias (the
//! mean of `y·G` over free variables). Kernel columns are computed on demand
//! and kept in an LRU cache of `cache_size` MB, stored as `f32` as libsvm
//! stores them. libsvm's shrinking heuristic is left out: on w9's problem it
//! changes neither the iterates nor scikit-learn's time (3,295 iterations with
//! and without).

use ndarray::{Array2, ArrayView2};
use rask_core::fastmath::{exp_nonpositive, has_avx2_fma};
use serde::{Deserialize, Serialize};

/// libsvm's floor for a non-positive curvature.
const TAU: f64 = 1e-12;

/// A kernel function, with its parameters resolved.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) enum Kernel {
    /// `x·x'`.
    Linear,
    /// `exp(−γ‖x−x'‖²)`.
    Rbf { gamma: f64 },
    /// `(γ x·x' + coef0)^degree`.
    Poly { gamma: f64, coef0: f64, degree: i32 },
    /// `tanh(γ x·x' + coef0)`.
    Sigmoid { gamma: f64, coef0: f64 },
}

impl Kernel {
    /// The kernel value from a dot product and the two squared norms.
    #[inline]
    pub(crate) fn value(&self, dot: f64, sq_a: f64, sq_b: f64) -> f64 {
        match *self {
            Kernel::Linear => dot,
            Kernel::Rbf { gamma } => (-gamma * (sq_a + sq_b - 2.0 * dot)).exp(),
            Kernel::Poly { gamma, coef0, degree } => (gamma * dot + coef0).powi(degree),
            Kernel::Sigmoid { gamma, coef0 } => (gamma * dot + coef0).tanh(),
        }
    }
}

impl Kernel {
    /// Turns dot products `x_a·x_b` into kernel values in place, given the
    /// norms `‖x_a‖²` and `‖x_b‖²` of each pair (a loop that vectorizes; the
    /// exponential is `fastmath`'s, within 4 ulp of libm's).
    #[inline(always)]
    fn apply<const FMA: bool>(&self, dots: &mut [f64], sq_a: f64, sq_b: &[f64]) {
        match *self {
            Kernel::Linear => {}
            Kernel::Rbf { gamma } => {
                for (v, &sb) in dots.iter_mut().zip(sq_b) {
                    *v = exp_nonpositive::<FMA>(-gamma * (sq_a + sb - 2.0 * *v));
                }
            }
            _ => dots.iter_mut().zip(sq_b).for_each(|(v, &sb)| *v = self.value(*v, sq_a, sb)),
        }
    }

    /// [`Self::apply`], compiled for AVX2 and FMA where the CPU has them.
    fn apply_fast(&self, dots: &mut [f64], sq_a: f64, sq_b: &[f64]) {
        #[cfg(target_arch = "x86_64")]
        if has_avx2_fma() {
            // SAFETY: the CPU has the features this copy is compiled for.
            return unsafe { self.apply_avx2(dots, sq_a, sq_b) };
        }
        self.apply::<false>(dots, sq_a, sq_b)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn apply_avx2(&self, dots: &mut [f64], sq_a: f64, sq_b: &[f64]) {
        self.apply::<true>(dots, sq_a, sq_b)
    }
}

/// `a·b` with four accumulators, so the loop vectorizes.
#[inline]
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Squared norm of every row.
pub(crate) fn row_norms(x: ArrayView2<'_, f64>) -> Vec<f64> {
    x.rows().into_iter().map(|r| r.dot(&r)).collect()
}

/// Columns of Q, computed on demand and kept while they fit in the budget
/// (least recently used out first).
struct QColumns<'a> {
    /// Rows of X (row-major), for `x_i`.
    x: &'a [f64],
    /// X by column, so a kernel column is `d` vectorized axpy passes.
    xt: Vec<f64>,
    d: usize,
    sq: Vec<f64>,
    y: &'a [f64],
    kernel: Kernel,
    cols: Vec<Option<Box<[f32]>>>,
    last_used: Vec<u64>,
    cached: Vec<usize>,
    clock: u64,
    budget: usize,
    /// Scratch for one column in f64.
    work: Vec<f64>,
}

impl<'a> QColumns<'a> {
    fn new(x: &'a [f64], d: usize, y: &'a [f64], kernel: Kernel, cache_bytes: usize) -> Self {
        let n = y.len();
        let sq = x.chunks_exact(d.max(1)).map(|r| dot(r, r)).collect();
        let mut xt = vec![0.0; n * d];
        for (i, row) in x.chunks_exact(d.max(1)).enumerate() {
            for (f, &v) in row.iter().enumerate() {
                xt[f * n + i] = v;
            }
        }
        // At least two columns, whatever the budget: a step needs Q_i and Q_j.
        let budget = (cache_bytes / (4 * n).max(1)).max(2);
        QColumns {
            x,
            xt,
            d,
            sq,
            y,
            kernel,
            cols: vec![None; n],
            last_used: vec![0; n],
            cached: Vec::new(),
            clock: 0,
            budget,
            work: vec![0.0; n],
        }
    }

    fn row(&self, i: usize) -> &[f64] {
        &self.x[i * self.d..(i + 1) * self.d]
    }

    /// `Q_ii` in full precision (libsvm's `QD`).
    fn diagonal(&self) -> Vec<f64> {
        (0..self.y.len()).map(|i| self.kernel.value(self.sq[i], self.sq[i], self.sq[i])).collect()
    }

    /// Makes column `i` present, evicting the least recently used column
    /// other than `keep` when the cache is full.
    fn ensure(&mut self, i: usize, keep: usize) {
        self.clock += 1;
        self.last_used[i] = self.clock;
        if self.cols[i].is_some() {
            return;
        }
        if self.cached.len() >= self.budget {
            let (pos, _) = self
                .cached
                .iter()
                .enumerate()
                .filter(|(_, &c)| c != keep)
                .min_by_key(|(_, &c)| self.last_used[c])
                .expect("the cache holds at least two columns");
            let old = self.cached.swap_remove(pos);
            self.cols[old] = None;
        }
        let mut work = std::mem::take(&mut self.work);
        self.dots(i, &mut work);
        self.kernel.apply_fast(&mut work, self.sq[i], &self.sq);
        let yi = self.y[i];
        let col: Box<[f32]> =
            work.iter().zip(self.y).map(|(&v, &yk)| (yi * yk * v) as f32).collect();
        self.work = work;
        self.cols[i] = Some(col);
        self.cached.push(i);
    }

    /// `x_i·x_k` for every k.
    fn dots(&self, i: usize, out: &mut [f64]) {
        #[cfg(target_arch = "x86_64")]
        if has_avx2_fma() {
            // SAFETY: the CPU has the features this copy is compiled for.
            return unsafe { self.dots_avx2(i, out) };
        }
        self.dots_with::<false>(i, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dots_avx2(&self, i: usize, out: &mut [f64]) {
        self.dots_with::<true>(i, out)
    }

    /// Blocks of rows small enough that the partial sums stay in L1.
    #[inline(always)]
    fn dots_with<const FMA: bool>(&self, i: usize, out: &mut [f64]) {
        const BLOCK: usize = 512;
        let (n, xi) = (self.y.len(), self.row(i));
        for start in (0..n).step_by(BLOCK) {
            let acc = &mut out[start..(start + BLOCK).min(n)];
            acc.fill(0.0);
            for (f, &a) in xi.iter().enumerate() {
                let col = &self.xt[f * n + start..f * n + start + acc.len()];
                for (s, &v) in acc.iter_mut().zip(col) {
                    *s = if FMA { v.mul_add(a, *s) } else { *s + v * a };
                }
            }
        }
    }

    fn get(&self, i: usize) -> &[f32] {
        self.cols[i].as_deref().expect("column ensured")
    }
}

/// The solver's answer for one binary problem.
pub(crate) struct Solution {
    /// The dual variables, one per training row.
    pub alpha: Vec<f64>,
    /// The decision function is `Σ αᵢ yᵢ K(xᵢ, x) − rho`.
    pub rho: f64,
    /// Working-set steps taken.
    pub iterations: usize,
}

/// Settings of one solve.
pub(crate) struct Settings {
    pub c: f64,
    pub tol: f64,
    pub kernel: Kernel,
    pub cache_bytes: usize,
    /// `None`: libsvm's own cap, max(10⁷, 100·n).
    pub max_iter: Option<usize>,
}

/// Solves the C-SVC dual on `x` (rows, standard layout) with labels `y` of ±1.
pub(crate) fn solve(x: ArrayView2<'_, f64>, y: &[f64], s: &Settings) -> Solution {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has the features this copy is compiled for.
        return unsafe { solve_avx2(x, y, s) };
    }
    solve_with(x, y, s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn solve_avx2(x: ArrayView2<'_, f64>, y: &[f64], s: &Settings) -> Solution {
    solve_with(x, y, s)
}

#[inline(always)]
fn solve_with(x: ArrayView2<'_, f64>, y: &[f64], s: &Settings) -> Solution {
    let n = y.len();
    let x = x.as_standard_layout();
    let d = x.ncols();
    let flat = x.as_slice().expect("standard layout");
    let mut q = QColumns::new(flat, d, y, s.kernel, s.cache_bytes);
    let qd = q.diagonal();
    let c = s.c;
    let mut alpha = vec![0.0; n];
    // G = Qα − e.
    let mut g = vec![-1.0; n];
    let max_iter = s.max_iter.unwrap_or_else(|| (100 * n).max(10_000_000));
    let mut iterations = 0;
    while iterations < max_iter {
        let Some((i, j)) = select_working_set(&mut q, &qd, y, &alpha, &g, c, s.tol) else {
            break;
        };
        iterations += 1;
        q.ensure(i, j);
        q.ensure(j, i);
        let (qi, qj) = (q.get(i), q.get(j));
        let (old_i, old_j) = (alpha[i], alpha[j]);
        if y[i] != y[j] {
            let quad = positive(qd[i] + qd[j] + 2.0 * qi[j] as f64);
            let delta = (-g[i] - g[j]) / quad;
            let diff = alpha[i] - alpha[j];
            alpha[i] += delta;
            alpha[j] += delta;
            if diff > 0.0 {
                if alpha[j] < 0.0 {
                    alpha[j] = 0.0;
                    alpha[i] = diff;
                }
            } else if alpha[i] < 0.0 {
                alpha[i] = 0.0;
                alpha[j] = -diff;
            }
            if diff > 0.0 {
                if alpha[i] > c {
                    alpha[i] = c;
                    alpha[j] = c - diff;
                }
            } else if alpha[j] > c {
                alpha[j] = c;
                alpha[i] = c + diff;
            }
        } else {
            let quad = positive(qd[i] + qd[j] - 2.0 * qi[j] as f64);
            let delta = (g[i] - g[j]) / quad;
            let sum = alpha[i] + alpha[j];
            alpha[i] -= delta;
            alpha[j] += delta;
            if sum > c {
                if alpha[i] > c {
                    alpha[i] = c;
                    alpha[j] = sum - c;
                }
            } else if alpha[j] < 0.0 {
                alpha[j] = 0.0;
                alpha[i] = sum;
            }
            if sum > c {
                if alpha[j] > c {
                    alpha[j] = c;
                    alpha[i] = sum - c;
                }
            } else if alpha[i] < 0.0 {
                alpha[i] = 0.0;
                alpha[j] = sum;
            }
        }
        let (di, dj) = (alpha[i] - old_i, alpha[j] - old_j);
        for ((gk, &a), &b) in g.iter_mut().zip(qi).zip(qj) {
            *gk += a as f64 * di + b as f64 * dj;
        }
    }
    Solution { rho: rho(y, &alpha, &g, c), alpha, iterations }
}

fn positive(quad: f64) -> f64 {
    if quad > 0.0 {
        quad
    } else {
        TAU
    }
}

/// libsvm's WSS3: `i` maximally violates optimality among variables that can
/// move up (in `y·α`); `j` gives the largest second-order decrease with `i`.
/// `None` once the violation is below `tol`.
#[inline(always)]
fn select_working_set(
    q: &mut QColumns<'_>,
    qd: &[f64],
    y: &[f64],
    alpha: &[f64],
    g: &[f64],
    c: f64,
    tol: f64,
) -> Option<(usize, usize)> {
    let mut gmax = f64::NEG_INFINITY;
    let mut i = None;
    for t in 0..y.len() {
        let v = if y[t] > 0.0 {
            (alpha[t] < c).then_some(-g[t])
        } else {
            (alpha[t] > 0.0).then_some(g[t])
        };
        if let Some(v) = v {
            if v >= gmax {
                gmax = v;
                i = Some(t);
            }
        }
    }
    let i = i?;
    q.ensure(i, i);
    let qi = q.get(i);
    let mut gmax2 = f64::NEG_INFINITY;
    let mut best = f64::INFINITY;
    let mut j = None;
    for t in 0..y.len() {
        let (grad_diff, quad) = if y[t] > 0.0 {
            if alpha[t] <= 0.0 {
                continue;
            }
            gmax2 = gmax2.max(g[t]);
            (gmax + g[t], qd[i] + qd[t] - 2.0 * y[i] * qi[t] as f64)
        } else {
            if alpha[t] >= c {
                continue;
            }
            gmax2 = gmax2.max(-g[t]);
            (gmax - g[t], qd[i] + qd[t] + 2.0 * y[i] * qi[t] as f64)
        };
        if grad_diff > 0.0 {
            let obj = -(grad_diff * grad_diff) / positive(quad);
            if obj <= best {
                best = obj;
                j = Some(t);
            }
        }
    }
    if gmax + gmax2 < tol {
        return None;
    }
    j.map(|j| (i, j))
}

/// libsvm's bias: the mean of `y·G` over free variables, or the middle of
/// its feasible interval when none is free.
fn rho(y: &[f64], alpha: &[f64], g: &[f64], c: f64) -> f64 {
    let (mut ub, mut lb) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut free, mut sum) = (0usize, 0.0);
    for t in 0..y.len() {
        let yg = y[t] * g[t];
        if alpha[t] >= c {
            if y[t] < 0.0 {
                ub = ub.min(yg);
            } else {
                lb = lb.max(yg);
            }
        } else if alpha[t] <= 0.0 {
            if y[t] > 0.0 {
                ub = ub.min(yg);
            } else {
                lb = lb.max(yg);
            }
        } else {
            free += 1;
            sum += yg;
        }
    }
    if free > 0 {
        sum / free as f64
    } else {
        (ub + lb) / 2.0
    }
}

/// Kernel values between rows of `a` and rows of `b` (`a.nrows() × b.nrows()`),
/// through one matrix product.
pub(crate) fn kernel_matrix(
    kernel: Kernel,
    a: ArrayView2<'_, f64>,
    b: ArrayView2<'_, f64>,
    sq_b: &[f64],
) -> Array2<f64> {
    let mut k = a.dot(&b.t());
    let sq_a = row_norms(a);
    for (mut row, &sa) in k.rows_mut().into_iter().zip(&sq_a) {
        kernel.apply_fast(row.as_slice_mut().expect("a fresh product is contiguous"), sa, sq_b);
    }
    k
}
