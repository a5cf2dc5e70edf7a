//! The map step of every solver iteration: one pass over one row chunk,
//! returning sums that combine across chunks by addition (so they reduce in
//! a tree, on any scheduler).
//!
//! The objective of a fit is `(1/W) Σᵢ wᵢ loss(xᵢᵀβ + b, yᵢ) + P(β)` with
//! `W = Σᵢ wᵢ`; a chunk contributes `Σ wᵢ loss`, `Σ wᵢ loss′ xᵢ`,
//! `Σ wᵢ loss′` (for the intercept), `W`, and for Newton steps
//! `Σ wᵢ loss″ [xᵢ 1][xᵢ 1]ᵀ`.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::family::Family;

/// Loss and gradient sums of one chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradSums {
    /// `Σ wᵢ loss(ηᵢ, yᵢ)`.
    pub loss: f64,
    /// `Σ wᵢ loss′(ηᵢ, yᵢ) xᵢ`.
    pub grad: Array1<f64>,
    /// `Σ wᵢ loss′(ηᵢ, yᵢ)`: the intercept's gradient.
    pub grad_intercept: f64,
    /// `Σ wᵢ`.
    pub weight: f64,
}

impl GradSums {
    /// Adds another chunk's sums (the reduce step).
    pub fn add(&mut self, other: &GradSums) {
        self.loss += other.loss;
        self.grad += &other.grad;
        self.grad_intercept += other.grad_intercept;
        self.weight += other.weight;
    }
}

/// Gradient and Hessian sums of one chunk, over `[β, b]` (the intercept last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HessSums {
    /// Loss and gradient.
    pub grad: GradSums,
    /// `Σ wᵢ loss″ [xᵢ 1][xᵢ 1]ᵀ`, (p + 1) × (p + 1).
    pub hessian: Array2<f64>,
}

impl HessSums {
    /// Adds another chunk's sums.
    pub fn add(&mut self, other: &HessSums) {
        self.grad.add(&other.grad);
        self.hessian += &other.hessian;
    }
}

/// The first invalid row of a chunk: which input, the row within the chunk, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowProblem {
    /// `X`, `y` or `sample_weight`.
    pub what: String,
    /// The row, counted from the chunk's first.
    pub row: usize,
    /// What is wrong with it.
    pub message: String,
}

/// Checks a chunk's rows: X finite, targets valid for `family`, weights
/// finite and >= 0 (in that order); the first problem found, if any.
pub fn check_rows(
    family: Family,
    x: ArrayView2<'_, f64>,
    y: ArrayView1<'_, f64>,
    w: Option<ArrayView1<'_, f64>>,
) -> Option<RowProblem> {
    let problem = |what: &str, row, message| Some(RowProblem { what: what.into(), row, message });
    if let Some(((i, j), v)) = x.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return problem("X", i, format!("column {j} is {v} (NaN and infinity are not data)"));
    }
    if let Some((i, why)) =
        y.iter().enumerate().find_map(|(i, &v)| family.check_target(v).map(|why| (i, why)))
    {
        return problem("y", i, format!("{} is invalid: {why}", y[i]));
    }
    let w = w?;
    let i = w.iter().position(|v| !(v.is_finite() && *v >= 0.0))?;
    problem("sample_weight", i, format!("{} is not a finite weight >= 0", w[i]))
}

/// `η = Xβ + b` of a chunk.
pub fn linear_predictor(x: ArrayView2<'_, f64>, beta: ArrayView1<'_, f64>, b: f64) -> Array1<f64> {
    let mut eta = x.dot(&beta);
    eta += b;
    eta
}

/// `η = Xβ + b` and `δ = X·d + d_b` of a chunk in one read of X (a line
/// search's ray).
pub fn ray_parts(
    x: ArrayView2<'_, f64>,
    beta: ArrayView1<'_, f64>,
    b: f64,
    d: ArrayView1<'_, f64>,
    d_b: f64,
) -> (Array1<f64>, Array1<f64>) {
    let mut both = Array2::<f64>::zeros((x.ncols(), 2));
    both.column_mut(0).assign(&beta);
    both.column_mut(1).assign(&d);
    let m = x.dot(&both);
    (&m.column(0) + b, &m.column(1) + d_b)
}

/// The loss sum of a chunk given its `η` (line searches keep `η` and the
/// chunk's `X·direction`, so trying a step needs no pass over `X`).
pub fn loss_sum(
    family: Family,
    eta: ArrayView1<'_, f64>,
    y: ArrayView1<'_, f64>,
    w: Option<ArrayView1<'_, f64>>,
) -> f64 {
    match w {
        None => eta.iter().zip(y).map(|(&e, &t)| family.loss(e, t)).sum(),
        Some(w) => eta.iter().zip(y).zip(w).map(|((&e, &t), &wi)| wi * family.loss(e, t)).sum(),
    }
}

/// Loss and gradient sums of a chunk at `(β, b)`.
pub fn grad_sums(
    family: Family,
    x: ArrayView2<'_, f64>,
    y: ArrayView1<'_, f64>,
    w: Option<ArrayView1<'_, f64>>,
    beta: ArrayView1<'_, f64>,
    b: f64,
) -> GradSums {
    // A panel of rows at a time: η, the residuals and Xᵀr while the panel is
    // in cache, so X is read from memory once per pass.
    const PANEL: usize = 512;
    let (n, p) = x.dim();
    let mut total =
        GradSums { loss: 0.0, grad: Array1::zeros(p), grad_intercept: 0.0, weight: 0.0 };
    for start in (0..n).step_by(PANEL) {
        let end = (start + PANEL).min(n);
        let rows = ndarray::s![start..end];
        let xp = x.slice(ndarray::s![start..end, ..]);
        let eta = linear_predictor(xp, beta, b);
        let part = grad_sums_at(family, xp, y.slice(rows), w.map(|w| w.slice_move(rows)), &eta);
        total.add(&part);
    }
    total
}

/// [`grad_sums`] given the chunk's `η` (a Hessian pass computes it once for both).
fn grad_sums_at(
    family: Family,
    x: ArrayView2<'_, f64>,
    y: ArrayView1<'_, f64>,
    w: Option<ArrayView1<'_, f64>>,
    eta: &Array1<f64>,
) -> GradSums {
    let mut loss = 0.0;
    let mut weight = 0.0;
    // r = w · loss′, then Xᵀr: one pass for η, one for the gradient.
    let r: Array1<f64> = eta
        .iter()
        .zip(y)
        .enumerate()
        .map(|(i, (&e, &t))| {
            let wi = w.map_or(1.0, |w| w[i]);
            let p = family.pointwise(e, t);
            loss += wi * p.loss;
            weight += wi;
            wi * p.d1
        })
        .collect();
    GradSums { loss, grad: x.t().dot(&r), grad_intercept: r.sum(), weight }
}

/// Gradient and Hessian sums of a chunk at `(β, b)`.
pub fn hess_sums(
    family: Family,
    x: ArrayView2<'_, f64>,
    y: ArrayView1<'_, f64>,
    w: Option<ArrayView1<'_, f64>>,
    beta: ArrayView1<'_, f64>,
    b: f64,
) -> HessSums {
    let eta = linear_predictor(x, beta, b);
    let grad = grad_sums_at(family, x, y, w, &eta);
    let (n, p) = x.dim();
    // [X 1] scaled by √(w · loss″), a panel of rows at a time (it stays in
    // cache), each panel's Gram matrix added to the Hessian.
    const PANEL: usize = 256;
    let mut hessian = Array2::<f64>::zeros((p + 1, p + 1));
    let mut panel = Array2::<f64>::zeros((PANEL.min(n).max(1), p + 1));
    for start in (0..n).step_by(PANEL) {
        let rows = PANEL.min(n - start);
        for k in 0..rows {
            let i = start + k;
            let wi = w.map_or(1.0, |w| w[i]);
            let s = (wi * family.pointwise(eta[i], y[i]).d2).sqrt();
            let mut out = panel.row_mut(k);
            for (o, &v) in out.iter_mut().zip(x.row(i)) {
                *o = v * s;
            }
            out[p] = s;
        }
        let used = panel.slice(ndarray::s![..rows, ..]);
        ndarray::linalg::general_mat_mul(1.0, &used.t(), &used, 1.0, &mut hessian);
    }
    HessSums { grad, hessian }
}

/// The inputs of ADMM's local step on one chunk (see [`local_solve`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalStep {
    /// The family.
    pub family: Family,
    /// `W`, the whole data's total weight.
    pub total_weight: f64,
    /// The penalty parameter ρ.
    pub rho: f64,
    /// `v`: the consensus target, intercept last.
    pub target: Vec<f64>,
    /// Where Newton starts (the chunk's previous solution), intercept last.
    pub warm: Vec<f64>,
    /// Whether the intercept is fitted (else held at 0).
    pub fit_intercept: bool,
}

/// ADMM's local step on one chunk: the minimizer of
/// `(1/W) Σ wᵢ loss(xᵢᵀβ + b, yᵢ) + (ρ/2) ‖(β, b) − v‖²`, by Newton steps
/// with backtracking from `step.warm`, to machine precision: the ρ term makes
/// the problem strongly convex, so a few steps suffice.
pub fn local_solve(
    x: ArrayView2<'_, f64>,
    y: ArrayView1<'_, f64>,
    w: Option<ArrayView1<'_, f64>>,
    step: &LocalStep,
) -> Array1<f64> {
    let LocalStep { family, total_weight, rho, fit_intercept, .. } = *step;
    let v = ArrayView1::from(&step.target);
    let p = x.ncols();
    let dim = if fit_intercept { p + 1 } else { p };
    let value = |theta: &Array1<f64>| {
        let b = if fit_intercept { theta[p] } else { 0.0 };
        let eta = linear_predictor(x, theta.slice(ndarray::s![..p]), b);
        let d = theta - &v;
        loss_sum(family, eta.view(), y, w) / total_weight + 0.5 * rho * d.dot(&d)
    };
    let mut theta = Array1::from(step.warm.clone());
    if !fit_intercept {
        theta[p] = 0.0;
    }
    let mut f = value(&theta);
    for _ in 0..100 {
        let b = if fit_intercept { theta[p] } else { 0.0 };
        let s = hess_sums(family, x, y, w, theta.slice(ndarray::s![..p]), b);
        let mut g = Array1::zeros(dim);
        g.slice_mut(ndarray::s![..p]).assign(&(&s.grad.grad / total_weight));
        if fit_intercept {
            g[p] = s.grad.grad_intercept / total_weight;
        }
        let diff = theta.slice(ndarray::s![..dim]).to_owned() - v.slice(ndarray::s![..dim]);
        g = g + diff * rho;
        let mut h = s.hessian.slice(ndarray::s![..dim, ..dim]).to_owned() / total_weight;
        for k in 0..dim {
            h[[k, k]] += rho;
        }
        let delta = crate::solve::solve_spd(h, &g);
        let slope = -g.dot(&delta);
        let mut t = 1.0;
        let mut improved = false;
        for _ in 0..50 {
            let mut trial = theta.clone();
            trial.slice_mut(ndarray::s![..dim]).scaled_add(-t, &delta);
            let ft = value(&trial);
            if ft <= f + 1e-4 * t * slope {
                improved = ft < f;
                theta = trial;
                f = ft;
                break;
            }
            t *= 0.5;
        }
        let size = delta.iter().fold(0.0f64, |m, v| m.max(v.abs())) * t;
        if !improved || size <= 1e-14 * theta.iter().fold(1.0f64, |m, v| m.max(v.abs())) {
            break;
        }
    }
    theta
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn data() -> (Array2<f64>, Array1<f64>, Array1<f64>) {
        let x = array![[0.5, -1.0], [1.5, 0.2], [-0.3, 0.8], [2.0, -0.5], [0.1, 0.1]];
        let y = array![1.0, 0.0, 1.0, 1.0, 0.0];
        let w = array![1.0, 2.0, 0.5, 1.0, 3.0];
        (x, y, w)
    }

    /// Gradient and Hessian agree with central differences of the loss sum.
    #[test]
    fn sums_match_finite_differences() {
        let (x, y, w) = data();
        let h = 1e-6;
        for family in [Family::Logistic, Family::Normal, Family::Poisson] {
            let beta = array![0.3, -0.2];
            let b = 0.1;
            let at = |beta: &Array1<f64>, b: f64| {
                grad_sums(family, x.view(), y.view(), Some(w.view()), beta.view(), b)
            };
            let s = hess_sums(family, x.view(), y.view(), Some(w.view()), beta.view(), b);
            assert_eq!(s.grad, at(&beta, b));
            for j in 0..3 {
                let shift = |d: f64| {
                    let (mut bb, mut ib) = (beta.clone(), b);
                    if j < 2 {
                        bb[j] += d
                    } else {
                        ib += d
                    }
                    at(&bb, ib)
                };
                let (up, down) = (shift(h), shift(-h));
                let g = if j < 2 { s.grad.grad[j] } else { s.grad.grad_intercept };
                assert!(
                    ((up.loss - down.loss) / (2.0 * h) - g).abs() < 1e-6,
                    "{family:?} grad {j}"
                );
                for k in 0..3 {
                    let (gu, gd) = if k < 2 {
                        (up.grad[k], down.grad[k])
                    } else {
                        (up.grad_intercept, down.grad_intercept)
                    };
                    let fd = (gu - gd) / (2.0 * h);
                    assert!((fd - s.hessian[[j, k]]).abs() < 1e-5, "{family:?} hess {j},{k}");
                }
            }
        }
    }

    #[test]
    fn chunk_sums_add_up_to_the_whole() {
        let (x, y, w) = data();
        let beta = array![0.3, -0.2];
        let whole =
            grad_sums(Family::Logistic, x.view(), y.view(), Some(w.view()), beta.view(), 0.1);
        let mut parts = grad_sums(
            Family::Logistic,
            x.slice(ndarray::s![..2, ..]),
            y.slice(ndarray::s![..2]),
            Some(w.slice(ndarray::s![..2])),
            beta.view(),
            0.1,
        );
        parts.add(&grad_sums(
            Family::Logistic,
            x.slice(ndarray::s![2.., ..]),
            y.slice(ndarray::s![2..]),
            Some(w.slice(ndarray::s![2..])),
            beta.view(),
            0.1,
        ));
        assert!((whole.loss - parts.loss).abs() < 1e-12);
        assert!((&whole.grad - &parts.grad).iter().all(|d| d.abs() < 1e-12));
        assert_eq!(whole.weight, 7.5);
        let eta = linear_predictor(x.view(), beta.view(), 0.1);
        assert!(
            (loss_sum(Family::Logistic, eta.view(), y.view(), Some(w.view())) - whole.loss).abs()
                < 1e-12
        );
    }
}
