//! The map step of every solver iteration: one pass over one row chunk,
//! returning sums that combine across chunks by addition (so they reduce in
//! a tree, on any scheduler).
//!
//! The objective of a fit is `(1/W) Σᵢ wᵢ loss(xᵢᵀβ + b, yᵢ) + P(β)` with
//! `W = Σᵢ wᵢ`; a chunk contributes `Σ wᵢ loss`, `Σ wᵢ loss′ xᵢ`,
//! `Σ wᵢ loss′` (for the intercept), `W`, and for Newton steps
//! `Σ wᵢ loss″ [xᵢ 1][xᵢ 1]ᵀ`. The multinomial family has `K` predictors
//! per row: `β` is then `K × p` class-major (`β[c·p + j]`) and the intercept
//! a `K`-vector, and every vector and matrix here grows accordingly.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::family::Family;
use crate::kernel::{self, slice, Rows};

/// Loss and gradient sums of one chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradSums {
    /// `Σ wᵢ loss(ηᵢ, yᵢ)`.
    pub loss: f64,
    /// `Σ wᵢ loss′(ηᵢ, yᵢ) xᵢ`.
    pub grad: Array1<f64>,
    /// `Σ wᵢ loss′(ηᵢ, yᵢ)`: the intercept's gradient (one per predictor).
    pub grad_intercept: Array1<f64>,
    /// `Σ wᵢ`.
    pub weight: f64,
}

impl GradSums {
    /// Adds another chunk's sums (the reduce step).
    pub fn add(&mut self, other: &GradSums) {
        self.loss += other.loss;
        self.grad += &other.grad;
        self.grad_intercept += &other.grad_intercept;
        self.weight += other.weight;
    }
}

/// Gradient and Hessian sums of one chunk, over `[β, b]` (the intercept last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HessSums {
    /// Loss and gradient.
    pub grad: GradSums,
    /// `Σ wᵢ loss″ [xᵢ 1][xᵢ 1]ᵀ`, (p + 1) × (p + 1); for `K` classes
    /// `(Kp + K) × (Kp + K)` in the order `[β, b]`.
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

/// `η = Xβ + b` and `δ = X·d + d_b` of a chunk in one read of X (a line
/// search's ray).
pub fn ray_parts(
    family: Family,
    x: ArrayView2<'_, f64>,
    beta: ArrayView1<'_, f64>,
    b: ArrayView1<'_, f64>,
    d: ArrayView1<'_, f64>,
    d_b: ArrayView1<'_, f64>,
) -> (Array1<f64>, Array1<f64>) {
    let y = Array1::zeros(0);
    let rows = Rows::new(x.reborrow(), y.view(), None);
    let [eta, delta] = kernel::ray(family, &rows, &slice(beta), &slice(b), &slice(d), &slice(d_b));
    (Array1::from(eta), Array1::from(delta))
}

/// The loss sum of a chunk given its `η` (line searches keep `η` and the
/// chunk's `X·direction`, so trying a step needs no pass over `X`).
pub fn loss_sum(
    family: Family,
    eta: ArrayView1<'_, f64>,
    y: ArrayView1<'_, f64>,
    w: Option<ArrayView1<'_, f64>>,
) -> f64 {
    let (eta, y, w) = (slice(eta), slice(y), w.map(slice));
    kernel::loss_along(family, &eta, None, 0.0, &y, w.as_deref())
}

/// The loss sum of a chunk at `η + t·δ` (a line search's trial step).
pub fn loss_along(
    family: Family,
    eta: &[f64],
    delta: &[f64],
    t: f64,
    y: ArrayView1<'_, f64>,
    w: Option<ArrayView1<'_, f64>>,
) -> f64 {
    let (y, w) = (slice(y), w.map(slice));
    kernel::loss_along(family, eta, Some(delta), t, &y, w.as_deref())
}

impl From<kernel::PassSums> for GradSums {
    fn from(s: kernel::PassSums) -> GradSums {
        GradSums {
            loss: s.loss,
            grad: Array1::from(s.grad),
            grad_intercept: Array1::from(s.grad_b),
            weight: s.weight,
        }
    }
}

/// Loss and gradient sums of a chunk at `(β, b)`.
pub fn grad_sums(
    family: Family,
    x: ArrayView2<'_, f64>,
    y: ArrayView1<'_, f64>,
    w: Option<ArrayView1<'_, f64>>,
    beta: ArrayView1<'_, f64>,
    b: ArrayView1<'_, f64>,
) -> GradSums {
    let rows = Rows::new(x.reborrow(), y.reborrow(), w.map(|w| w.reborrow()));
    kernel::pass(family, &rows, &slice(beta), &slice(b), false).into()
}

/// Gradient and Hessian sums of a chunk at `(β, b)`.
pub fn hess_sums(
    family: Family,
    x: ArrayView2<'_, f64>,
    y: ArrayView1<'_, f64>,
    w: Option<ArrayView1<'_, f64>>,
    beta: ArrayView1<'_, f64>,
    b: ArrayView1<'_, f64>,
) -> HessSums {
    let rows = Rows::new(x.reborrow(), y.reborrow(), w.map(|w| w.reborrow()));
    let mut s = kernel::pass(family, &rows, &slice(beta), &slice(b), true);
    let q = (x.ncols() + 1) * family.n_outputs();
    let hessian = Array2::from_shape_vec((q, q), s.hess.take().expect("asked for")).expect("q²");
    HessSums { grad: s.into(), hessian }
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
    /// `v`: the consensus target `[β, b]` (the intercepts last).
    pub target: Vec<f64>,
    /// Where the step starts (the chunk's previous solution), as `v`.
    pub warm: Vec<f64>,
    /// The consensus `z` (as `v`), where the step also sums the
    /// loss and gradient, so checking `z` costs no pass of its own.
    pub consensus: Vec<f64>,
    /// Whether the intercept is fitted (else held at 0).
    pub fit_intercept: bool,
}

/// What ADMM's local step gives back for one chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalResult {
    /// The chunk's new `θ = [β, b]`.
    pub theta: Vec<f64>,
    /// The chunk's loss and gradient sums at the consensus.
    pub at_consensus: GradSums,
}

/// Newton steps per local step: ADMM's subproblems are solved inexactly
/// (on w4, one step per round took as many rounds as two, or as exact solves),
/// each warm-started where the last ended, so the work of one ADMM
/// iteration is a few passes over the chunk, not a solve to full precision.
const LOCAL_NEWTON_STEPS: usize = 1;

/// ADMM's local step on one chunk: Newton steps with Armijo backtracking,
/// from `step.warm`, on `(1/W) Σ wᵢ loss(xᵢᵀβ + b, yᵢ) + (ρ/2) ‖(β, b) − v‖²`
/// (strongly convex through the ρ term), each a Hessian pass and a ray pass
/// (its trial steps then cost no read of X); and the loss and gradient sums
/// at `step.consensus`.
pub fn local_solve(
    x: ArrayView2<'_, f64>,
    y: ArrayView1<'_, f64>,
    w: Option<ArrayView1<'_, f64>>,
    step: &LocalStep,
) -> LocalResult {
    let LocalStep { family, total_weight, rho, fit_intercept, .. } = *step;
    let rows = Rows::new(x.reborrow(), y.reborrow(), w.map(|w| w.reborrow()));
    let k = family.n_outputs();
    let m = x.ncols() * k;
    let q = m + k;
    // The free coordinates: β, and the intercepts when they are fitted.
    let dim = if fit_intercept { q } else { m };
    let z = &step.consensus;
    let at_consensus = kernel::pass(family, &rows, &z[..m], &z[m..], false).into();
    let v = &step.target;
    let mut theta = step.warm.clone();
    if !fit_intercept {
        theta[m..].fill(0.0);
    }
    for _ in 0..LOCAL_NEWTON_STEPS {
        let s = kernel::pass(family, &rows, &theta[..m], &theta[m..], true);
        let h = s.hess.expect("asked for");
        let mut g = Array1::zeros(dim);
        let mut hm = Array2::zeros((dim, dim));
        for a in 0..dim {
            let sum = if a < m { s.grad[a] } else { s.grad_b[a - m] };
            g[a] = sum / total_weight + rho * (theta[a] - v[a]);
            for c in 0..dim {
                hm[[a, c]] = h[a * q + c] / total_weight + if a == c { rho } else { 0.0 };
            }
        }
        let delta = -crate::solve::solve_spd(hm, &g);
        let slope = g.dot(&delta);
        if !(slope < 0.0) {
            break; // at the local minimum to rounding
        }
        let mut d = delta.to_vec();
        d.resize(q, 0.0);
        let [eta, along] = kernel::ray(family, &rows, &theta[..m], &theta[m..], &d[..m], &d[m..]);
        let value = |t: f64| {
            let prox: f64 = (0..dim).map(|a| (theta[a] + t * d[a] - v[a]).powi(2)).sum();
            kernel::loss_along(family, &eta, Some(&along), t, rows.y(), rows.w()) / total_weight
                + 0.5 * rho * prox
        };
        // At t = 0 the loss is the Hessian pass's own.
        let f0 = s.loss / total_weight
            + 0.5 * rho * (0..dim).map(|a| (theta[a] - v[a]).powi(2)).sum::<f64>();
        let mut t = 1.0;
        while t > 1e-10 && value(t) > f0 + 1e-4 * t * slope {
            t *= 0.5;
        }
        if t <= 1e-10 {
            break;
        }
        theta.iter_mut().zip(&d).for_each(|(th, dj)| *th += t * dj);
    }
    LocalResult { theta, at_consensus }
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
                grad_sums(
                    family,
                    x.view(),
                    y.view(),
                    Some(w.view()),
                    beta.view(),
                    ndarray::aview1(&[b]),
                )
            };
            let s = hess_sums(
                family,
                x.view(),
                y.view(),
                Some(w.view()),
                beta.view(),
                ndarray::aview1(&[b]),
            );
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
                let g = if j < 2 { s.grad.grad[j] } else { s.grad.grad_intercept[0] };
                assert!(
                    ((up.loss - down.loss) / (2.0 * h) - g).abs() < 1e-6,
                    "{family:?} grad {j}"
                );
                for k in 0..3 {
                    let (gu, gd) = if k < 2 {
                        (up.grad[k], down.grad[k])
                    } else {
                        (up.grad_intercept[0], down.grad_intercept[0])
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
        let whole = grad_sums(
            Family::Logistic,
            x.view(),
            y.view(),
            Some(w.view()),
            beta.view(),
            ndarray::aview1(&[0.1]),
        );
        let mut parts = grad_sums(
            Family::Logistic,
            x.slice(ndarray::s![..2, ..]),
            y.slice(ndarray::s![..2]),
            Some(w.slice(ndarray::s![..2])),
            beta.view(),
            ndarray::aview1(&[0.1]),
        );
        parts.add(&grad_sums(
            Family::Logistic,
            x.slice(ndarray::s![2.., ..]),
            y.slice(ndarray::s![2..]),
            Some(w.slice(ndarray::s![2..])),
            beta.view(),
            ndarray::aview1(&[0.1]),
        ));
        assert!((whole.loss - parts.loss).abs() < 1e-12);
        assert!((&whole.grad - &parts.grad).iter().all(|d| d.abs() < 1e-12));
        assert_eq!(whole.weight, 7.5);
        let eta = x.dot(&beta) + 0.1;
        assert!(
            (loss_sum(Family::Logistic, eta.view(), y.view(), Some(w.view())) - whole.loss).abs()
                < 1e-12
        );
    }
}
