//! The solvers. Each minimizes `f(β, b) = L(β, b)/W + P(β)` (see
//! [`scaling`](crate::scaling)) over a [`GlmData`], one pass over the data per
//! gradient or Hessian, and line searches along rays that keep `Xβ` and
//! `X·d` (no pass per trial step).
//!
//! | solver | penalties | method |
//! |---|---|---|
//! | `GradientDescent` | none, L2 | steepest descent with Armijo backtracking |
//! | `ProximalGrad` | all | FISTA with backtracking on the smooth part's quadratic bound and gradient restarts |
//! | `Newton` | none, L2 | Newton–Cholesky (IRLS) with Armijo backtracking |
//! | `Lbfgs` | all | L-BFGS (10 pairs) with Armijo backtracking; OWL-QN when there is an L1 part |
//! | `Admm` | all | consensus ADMM: one warm-started Newton step per chunk and round (inexact local solves), the penalty's prox on the average, ρ from the starting curvature, then residual balancing |
//!
//! Every fit stops when the stationarity measure (the minimum-norm
//! subgradient of `f`, max-abs over β and b) is at most `tol`, and reports
//! `n_iter`, the objective, that measure and whether it converged; a fit
//! stopped by `max_iter` says so on stderr with those numbers.

use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use crate::data::{AdmmRound, GlmData};
use crate::error::GlmError;
use crate::family::Family;
use crate::penalty::Penalty;

/// Which algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Solver {
    /// Steepest descent with Armijo backtracking.
    GradientDescent,
    /// FISTA (accelerated proximal gradient).
    ProximalGrad,
    /// Newton–Cholesky.
    Newton,
    /// Limited-memory BFGS (OWL-QN with an L1 part).
    Lbfgs,
    /// Consensus ADMM over the row chunks.
    Admm,
}

impl Solver {
    /// Every solver.
    pub const ALL: [Solver; 5] = [
        Solver::GradientDescent,
        Solver::ProximalGrad,
        Solver::Newton,
        Solver::Lbfgs,
        Solver::Admm,
    ];

    /// The solver of a name as [`Solver::name`] spells it.
    pub fn from_name(name: &str) -> Option<Solver> {
        Solver::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The name as dask-glm and specs spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Solver::GradientDescent => "gradient_descent",
            Solver::ProximalGrad => "proximal_grad",
            Solver::Newton => "newton",
            Solver::Lbfgs => "lbfgs",
            Solver::Admm => "admm",
        }
    }
}

/// The model to fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Model {
    /// The family.
    pub family: Family,
    /// The penalty on β.
    pub penalty: Penalty,
    /// Whether to fit an (unpenalized) intercept.
    pub fit_intercept: bool,
}

/// When to stop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// Iterations at most.
    pub max_iter: usize,
    /// Stop when the stationarity measure is at most this.
    pub tol: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options { max_iter: 1000, tol: 1e-8 }
    }
}

/// A fitted GLM and how the fit went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fit {
    /// The coefficients β (multinomial: `K × p` class-major, `coef[c·p + j]`).
    pub coef: Array1<f64>,
    /// The intercept (0 without one; multinomial: the first class's).
    pub intercept: f64,
    /// Every linear predictor's intercept (one, or one per class).
    pub intercepts: Array1<f64>,
    /// Iterations run.
    pub n_iter: usize,
    /// `f(β, b)` at the end.
    pub objective: f64,
    /// The stationarity measure at the end.
    pub grad_norm: f64,
    /// Whether it reached `tol`.
    pub converged: bool,
}

/// The objective's pieces at one point, from one pass.
#[derive(Clone)]
struct Point {
    beta: Array1<f64>,
    /// The intercepts (one per linear predictor).
    b: Array1<f64>,
    /// `L/W` plus the smooth (L2) part of the penalty.
    smooth: f64,
    /// Gradient of `smooth` in β.
    grad: Array1<f64>,
    /// Gradient in b (0 without an intercept).
    grad_b: Array1<f64>,
}

/// Called once per iteration with the objective and the stationarity measure.
pub type Trace<'a> = &'a dyn Fn(f64, f64);

struct Problem<'a> {
    data: &'a dyn GlmData,
    model: Model,
    w: f64,
    trace: Option<Trace<'a>>,
}

impl Problem<'_> {
    /// The smooth part of `f` (all of it when the penalty has no L1 part):
    /// `L/W + λ(1 − ρ)/2 ‖β‖²`, with its gradient.
    fn point(&self, beta: Array1<f64>, b: Array1<f64>) -> Result<Point, GlmError> {
        let s = self.data.grad(self.model.family, beta.view(), b.view())?;
        Ok(self.point_from(beta, b, s))
    }

    /// The point from a pass's sums (a Hessian pass carries them too).
    fn point_from(&self, beta: Array1<f64>, b: Array1<f64>, s: crate::chunk::GradSums) -> Point {
        let l2 = self.model.penalty.l2_weight();
        let smooth = s.loss / self.w + 0.5 * l2 * beta.dot(&beta);
        let mut grad = s.grad / self.w;
        self.model.penalty.add_smooth_gradient(
            beta.as_slice().expect("contiguous"),
            grad.as_slice_mut().expect("contiguous"),
        );
        let grad_b = if self.model.fit_intercept {
            s.grad_intercept / self.w
        } else {
            Array1::zeros(b.len())
        };
        Point { beta, b, smooth, grad, grad_b }
    }

    /// `f` at a point already evaluated.
    fn objective(&self, p: &Point) -> f64 {
        p.smooth + self.model.penalty.l1_weight() * p.beta.iter().map(|v| v.abs()).sum::<f64>()
    }

    /// The stationarity measure at a point.
    /// The stationarity measure at an iterate (reported to the trace).
    fn stationarity(&self, p: &Point) -> f64 {
        let m = self.measure(p);
        if let Some(trace) = self.trace {
            trace(self.objective(p), m);
        }
        m
    }

    /// The stationarity measure at a point.
    fn measure(&self, p: &Point) -> f64 {
        let mut out = vec![0.0; p.beta.len()];
        // The L2 part is already in `grad`: ask for the L1 part alone.
        let l1_only = Penalty { strength: self.model.penalty.l1_weight(), l1_ratio: 1.0 };
        l1_only.optimality(
            p.beta.as_slice().expect("contiguous"),
            p.grad.as_slice().expect("contiguous"),
            &mut out,
        );
        out.iter().chain(&p.grad_b).fold(0.0, |m, v| m.max(v.abs()))
    }

    /// The smooth part along the ray `p + t·(d, d_b)` (one pass to set it up).
    fn along<'r>(
        &'r self,
        p: &'r Point,
        d: &'r Array1<f64>,
        d_b: &Array1<f64>,
    ) -> Result<impl Fn(f64) -> Result<f64, GlmError> + 'r, GlmError> {
        let family = self.model.family;
        let ray = self.data.ray(family, p.beta.view(), p.b.view(), d.view(), d_b.view())?;
        let l2 = self.model.penalty.l2_weight();
        Ok(move |t: f64| {
            let beta = &p.beta + &(d * t);
            Ok(ray.loss_at(self.model.family, t)? / self.w + 0.5 * l2 * beta.dot(&beta))
        })
    }

    fn finish(&self, mut p: Point, n_iter: usize, solver: Solver, options: &Options) -> Fit {
        if p.b.len() > 1 {
            // Softmax intercepts are defined up to a common shift: report
            // them centered, as scikit-learn does (the objective is unchanged).
            let mean = p.b.mean().unwrap_or(0.0);
            p.b -= mean;
        }
        let grad_norm = self.measure(&p);
        let converged = grad_norm <= options.tol;
        let objective = self.objective(&p);
        if !converged {
            eprintln!(
                "rask-glm: {} stopped at max_iter = {} without converging: objective {objective:.6e}, \
                 stationarity {grad_norm:.3e} > tol {:.1e}; raise max_iter or tol",
                solver.name(),
                options.max_iter,
                options.tol
            );
        }
        let intercept = p.b[0];
        Fit { coef: p.beta, intercept, intercepts: p.b, n_iter, objective, grad_norm, converged }
    }
}

const ARMIJO: f64 = 1e-4;

/// A point with an L2 term of weight `l2` added (removed when `l2` is negative).
fn with_l2(p: &Point, l2: f64) -> Point {
    Point {
        beta: p.beta.clone(),
        b: p.b.clone(),
        smooth: p.smooth + 0.5 * l2 * p.beta.dot(&p.beta),
        grad: &p.grad + &(&p.beta * l2),
        grad_b: p.grad_b.clone(),
    }
}

/// Fits `model` on `data` with `solver`.
pub fn fit(
    data: &dyn GlmData,
    model: Model,
    solver: Solver,
    options: Options,
) -> Result<Fit, GlmError> {
    fit_traced(data, model, solver, options, None)
}

/// [`fit`], calling `trace` once per iteration with the objective and the
/// stationarity measure (`rask glm` prints them).
pub fn fit_traced(
    data: &dyn GlmData,
    model: Model,
    solver: Solver,
    options: Options,
    trace: Option<Trace<'_>>,
) -> Result<Fit, GlmError> {
    if options.max_iter == 0 {
        return Err(GlmError::Option {
            option: "max_iter",
            value: "0".into(),
            expected: "an integer >= 1",
        });
    }
    if !(options.tol > 0.0) {
        return Err(GlmError::Option {
            option: "tol",
            value: options.tol.to_string(),
            expected: "a number > 0",
        });
    }
    if !model.penalty.is_smooth()
        && !matches!(solver, Solver::ProximalGrad | Solver::Lbfgs | Solver::Admm)
    {
        return Err(GlmError::Unsupported {
            solver: solver.name(),
            what: format!("an L1 penalty (l1_ratio = {})", model.penalty.l1_ratio),
            hint: "use proximal_grad (the exact elastic-net prox), lbfgs (OWL-QN) or admm",
        });
    }
    if let Family::Multinomial { classes } = model.family {
        if classes < 2 {
            return Err(GlmError::Option {
                option: "classes",
                value: classes.to_string(),
                expected: "at least 2 classes",
            });
        }
    }
    let problem = Problem { data, model, w: data.total_weight(), trace };
    let k = model.family.n_outputs();
    let zero = Array1::zeros(data.n_features() * k);
    match solver {
        // Newton's first pass is a Hessian pass, which carries the gradient too.
        Solver::Newton => newton(&problem, zero, &options),
        // ADMM sums the gradient at its consensus in its local tasks.
        Solver::Admm => admm(&problem, zero, &options),
        _ => {
            let start = problem.point(zero, Array1::zeros(k))?;
            match solver {
                Solver::GradientDescent => gradient_descent(&problem, start, &options),
                Solver::ProximalGrad => proximal_grad(&problem, start, &options),
                _ => lbfgs(&problem, start, &options),
            }
        }
    }
}

/// Backtracks from `t` until `φ(t) ≤ φ(0) + c·t·slope`; `None` when the
/// step underflows (no decrease possible at this precision).
fn armijo(
    phi: impl Fn(f64) -> Result<f64, GlmError>,
    f0: f64,
    slope: f64,
    mut t: f64,
) -> Result<Option<f64>, GlmError> {
    for _ in 0..60 {
        if phi(t)? <= f0 + ARMIJO * t * slope {
            return Ok(Some(t));
        }
        t *= 0.5;
    }
    Ok(None)
}

/// Armijo along `p + t·(d, d_b)` from `t0`, where a trial is a full pass
/// (`eval`) whose result is the next iterate: an accepted first trial costs
/// one pass. After a rejection it backtracks on a ray (one pass, then none
/// per trial) and makes one more pass at the step found. `None` when no step
/// decreases the objective at this precision.
fn search<E>(
    problem: &Problem<'_>,
    p: &Point,
    d: &Array1<f64>,
    d_b: &Array1<f64>,
    slope: f64,
    t0: f64,
    eval: impl Fn(Array1<f64>, Array1<f64>) -> Result<(Point, E), GlmError>,
) -> Result<Option<(f64, Point, E)>, GlmError> {
    let (first, extra) = eval(&p.beta + &(d * t0), &p.b + &(d_b * t0))?;
    if first.smooth <= p.smooth + ARMIJO * t0 * slope {
        return Ok(Some((t0, first, extra)));
    }
    let Some(t) = armijo(problem.along(p, d, d_b)?, p.smooth, slope, t0 * 0.5)? else {
        return Ok(None);
    };
    let (next, extra) = eval(&p.beta + &(d * t), &p.b + &(d_b * t))?;
    Ok(Some((t, next, extra)))
}

/// [`search`] with gradient passes.
fn search_point(
    problem: &Problem<'_>,
    p: &Point,
    d: &Array1<f64>,
    d_b: &Array1<f64>,
    slope: f64,
    t0: f64,
) -> Result<Option<(f64, Point)>, GlmError> {
    let found = search(problem, p, d, d_b, slope, t0, |beta, b| Ok((problem.point(beta, b)?, ())))?;
    Ok(found.map(|(t, q, ())| (t, q)))
}

fn gradient_descent(
    problem: &Problem<'_>,
    mut p: Point,
    options: &Options,
) -> Result<Fit, GlmError> {
    let mut t = 1.0;
    for iter in 0..options.max_iter {
        if problem.stationarity(&p) <= options.tol {
            return Ok(problem.finish(p, iter, Solver::GradientDescent, options));
        }
        let d = -&p.grad;
        let d_b = -&p.grad_b;
        let slope = -(p.grad.dot(&p.grad) + p.grad_b.dot(&p.grad_b));
        match search_point(problem, &p, &d, &d_b, slope, t)? {
            Some((s, next)) => {
                // The next first trial: the Barzilai–Borwein step sᵀy / yᵀy
                // of this step (the inverse curvature along it), else twice this one.
                let (sb, yb) = (&next.beta - &p.beta, &next.grad - &p.grad);
                let (sbi, ybi) = (&next.b - &p.b, &next.grad_b - &p.grad_b);
                let (sy, yy) = (sb.dot(&yb) + sbi.dot(&ybi), yb.dot(&yb) + ybi.dot(&ybi));
                t = if sy > 0.0 && yy > 0.0 { sy / yy } else { 2.0 * s };
                p = next;
            }
            None => return Ok(problem.finish(p, iter, Solver::GradientDescent, options)),
        }
    }
    Ok(problem.finish(p, options.max_iter, Solver::GradientDescent, options))
}

fn proximal_grad(problem: &Problem<'_>, start: Point, options: &Options) -> Result<Fit, GlmError> {
    // The whole penalty goes through the prox; the smooth part is L/W alone.
    let penalty = problem.model.penalty;
    let smooth_only =
        Problem { model: Model { penalty: Penalty::NONE, ..problem.model }, ..*problem };
    let prox_step = |y: &Point, s: f64| -> (Array1<f64>, Array1<f64>) {
        let mut z = &y.beta - &(&y.grad * s);
        penalty.prox(z.as_slice_mut().expect("contiguous"), s);
        (z, &y.b - &(&y.grad_b * s))
    };
    // The start's point without the L2 part: the smooth part alone (no pass).
    let mut x = with_l2(&start, -penalty.l2_weight());
    let mut y = x.clone();
    let (mut theta, mut s) = (1.0f64, 1.0f64);
    for iter in 0..options.max_iter {
        // Backtrack on the quadratic upper bound of the smooth part at y.
        let z = loop {
            let (zb, zi) = prox_step(&y, s);
            let z = smooth_only.point(zb, zi)?;
            let (db, di) = (&z.beta - &y.beta, &z.b - &y.b);
            let step2 = db.dot(&db) + di.dot(&di);
            let bound = y.smooth + y.grad.dot(&db) + y.grad_b.dot(&di) + step2 / (2.0 * s);
            // Near the optimum the function values differ by rounding only;
            // there the curvature along the step decides (as TFOCS does).
            let flat = (z.smooth - y.smooth).abs() <= 1e-12 * y.smooth.abs().max(1.0);
            let curvature = (&z.grad - &y.grad).dot(&db) + (&z.grad_b - &y.grad_b).dot(&di);
            let fits = if flat { curvature <= step2 / s } else { z.smooth <= bound };
            if fits || s < 1e-20 {
                // Let the step grow back (at most twofold) where the
                // curvature along this step allows a longer one.
                if curvature > 0.0 {
                    s = s.max((step2 / curvature).min(2.0 * s));
                }
                break z;
            }
            s *= 0.5;
        };
        // The whole objective's smooth part at z, from z's pass (no new pass).
        let full = with_l2(&z, penalty.l2_weight());
        if problem.stationarity(&full) <= options.tol {
            return Ok(problem.finish(full, iter + 1, Solver::ProximalGrad, options));
        }
        let next_theta = (1.0 + (1.0 + 4.0 * theta * theta).sqrt()) / 2.0;
        let (dz, dzb) = (&z.beta - &x.beta, &z.b - &x.b);
        // Restart the momentum when it points uphill (O'Donoghue and Candès).
        let uphill = (&y.beta - &z.beta).dot(&dz) + (&y.b - &z.b).dot(&dzb) > 0.0;
        let (momentum, theta_next) =
            if uphill { (0.0, 1.0) } else { ((theta - 1.0) / next_theta, next_theta) };
        theta = theta_next;
        // After a restart y is z, whose pass is at hand.
        y = if momentum == 0.0 {
            z.clone()
        } else {
            smooth_only.point(&z.beta + &(&dz * momentum), &z.b + &(&dzb * momentum))?
        };
        x = z;
    }
    let last = with_l2(&x, penalty.l2_weight());
    Ok(problem.finish(last, options.max_iter, Solver::ProximalGrad, options))
}

/// Solves `H d = −g` by Cholesky; a Hessian that is not positive definite
/// (separable data, collinear columns) gets a growing ridge, and the fit
/// goes on with it, saying so on stderr the first time (`warned`).
fn newton_direction(h: Array2<f64>, g: &Array1<f64>, warned: &mut bool) -> Array1<f64> {
    let (x, ridge) = solve_spd_ridge(h, g);
    if ridge > 0.0 && !*warned {
        *warned = true;
        eprintln!(
            "rask-glm: newton: the Hessian is not positive definite (collinear columns, a \
             constant column beside the intercept, or separable classes); added {ridge:.1e} to \
             its diagonal and went on. An L2 penalty (or dropping the redundant columns) makes \
             the optimum unique"
        );
    }
    -x
}

/// Solves `H x = g` for a symmetric `H` by Cholesky, adding a growing ridge
/// while `H` is not positive definite.
pub(crate) fn solve_spd(h: Array2<f64>, g: &Array1<f64>) -> Array1<f64> {
    solve_spd_ridge(h, g).0
}

/// [`solve_spd`], and the ridge it had to add (0 when `H` was positive definite).
fn solve_spd_ridge(mut h: Array2<f64>, g: &Array1<f64>) -> (Array1<f64>, f64) {
    let n = g.len();
    let scale = (0..n).map(|i| h[[i, i]].abs()).fold(0.0, f64::max).max(1e-300);
    let mut ridge = 0.0;
    loop {
        if let Some(l) = cholesky(&h) {
            // L y = g, Lᵀ x = y.
            let mut y = g.clone();
            for i in 0..n {
                for k in 0..i {
                    y[i] -= l[[i, k]] * y[k];
                }
                y[i] /= l[[i, i]];
            }
            for i in (0..n).rev() {
                for k in i + 1..n {
                    y[i] -= l[[k, i]] * y[k];
                }
                y[i] /= l[[i, i]];
            }
            return (y, ridge);
        }
        let add = if ridge == 0.0 { scale * 1e-12 } else { ridge * 9.0 };
        for i in 0..n {
            h[[i, i]] += add;
        }
        ridge += add;
    }
}

/// The lower Cholesky factor, or `None` if `a` is not positive definite.
fn cholesky(a: &Array2<f64>) -> Option<Array2<f64>> {
    let n = a.nrows();
    let mut l = Array2::<f64>::zeros((n, n));
    for j in 0..n {
        let mut d = a[[j, j]];
        for k in 0..j {
            d -= l[[j, k]] * l[[j, k]];
        }
        if !(d > 0.0) {
            return None;
        }
        let d = d.sqrt();
        l[[j, j]] = d;
        for i in j + 1..n {
            let mut s = a[[i, j]];
            for k in 0..j {
                s -= l[[i, k]] * l[[j, k]];
            }
            l[[i, j]] = s / d;
        }
    }
    Some(l)
}

/// Newton–Cholesky: one Hessian pass per iteration, at the trial point of
/// the line search (it carries the loss and gradient too), so an accepted
/// full step costs one pass.
fn newton(problem: &Problem<'_>, zero: Array1<f64>, options: &Options) -> Result<Fit, GlmError> {
    let m = zero.len();
    let k = problem.model.family.n_outputs();
    let with_b = problem.model.fit_intercept;
    let dim = if with_b { m + k } else { m };
    let hess_at = |beta: Array1<f64>, b: Array1<f64>| -> Result<(Point, Array2<f64>), GlmError> {
        let hs = problem.data.hess(problem.model.family, beta.view(), b.view())?;
        Ok((problem.point_from(beta, b, hs.grad), hs.hessian))
    };
    let (mut p, mut hessian) = hess_at(zero, Array1::zeros(k))?;
    let mut warned = false;
    for iter in 0..options.max_iter {
        if problem.stationarity(&p) <= options.tol {
            return Ok(problem.finish(p, iter, Solver::Newton, options));
        }
        let mut h = hessian.slice(ndarray::s![..dim, ..dim]).to_owned() / problem.w;
        for i in 0..m {
            h[[i, i]] += problem.model.penalty.l2_weight();
        }
        if with_b && k > 1 {
            // Softmax intercepts are free up to a common shift (H·1 = 0 on
            // them, and the gradient is orthogonal to it): adding 𝟙𝟙ᵀ/K
            // there makes H definite and leaves the step unchanged.
            for i in m..dim {
                for j in m..dim {
                    h[[i, j]] += 1.0 / k as f64;
                }
            }
        }
        let mut g = Array1::zeros(dim);
        g.slice_mut(ndarray::s![..m]).assign(&p.grad);
        if with_b {
            g.slice_mut(ndarray::s![m..]).assign(&p.grad_b);
        }
        let d_all = newton_direction(h, &g, &mut warned);
        let d = d_all.slice(ndarray::s![..m]).to_owned();
        let d_b = if with_b { d_all.slice(ndarray::s![m..]).to_owned() } else { Array1::zeros(k) };
        match search(problem, &p, &d, &d_b, g.dot(&d_all), 1.0, hess_at)? {
            Some((_, next, h)) => (p, hessian) = (next, h),
            None => return Ok(problem.finish(p, iter, Solver::Newton, options)),
        }
    }
    Ok(problem.finish(p, options.max_iter, Solver::Newton, options))
}

/// The pseudo-gradient of `smooth + λ₁‖β‖₁` (OWL-QN): the gradient where
/// β ≠ 0, and at 0 the one-sided derivative that points downhill, or 0.
fn pseudo_gradient(beta: &Array1<f64>, grad: &Array1<f64>, l1: f64) -> Array1<f64> {
    Array1::from_shape_fn(beta.len(), |i| {
        let (b, g) = (beta[i], grad[i]);
        if b > 0.0 {
            g + l1
        } else if b < 0.0 {
            g - l1
        } else if g + l1 < 0.0 {
            g + l1
        } else if g - l1 > 0.0 {
            g - l1
        } else {
            0.0
        }
    })
}

/// L-BFGS; with an L1 part, OWL-QN (Andrew and Gao, 2007): the quasi-Newton
/// direction of the pseudo-gradient, kept in its orthant, and trial points
/// projected onto that orthant (each a pass over the data, since a projected
/// path is not a ray).
fn lbfgs(problem: &Problem<'_>, mut p: Point, options: &Options) -> Result<Fit, GlmError> {
    const M: usize = 10;
    let nf = p.beta.len();
    let k = p.b.len();
    let with_b = problem.model.fit_intercept;
    let l1 = problem.model.penalty.l1_weight();
    let flat = |beta: &Array1<f64>, b: &Array1<f64>| -> Array1<f64> {
        let mut v = Array1::zeros(if with_b { nf + k } else { nf });
        v.slice_mut(ndarray::s![..nf]).assign(beta);
        if with_b {
            v.slice_mut(ndarray::s![nf..]).assign(b);
        }
        v
    };
    let mut history: std::collections::VecDeque<(Array1<f64>, Array1<f64>, f64)> =
        Default::default();
    for iter in 0..options.max_iter {
        if problem.stationarity(&p) <= options.tol {
            return Ok(problem.finish(p, iter, Solver::Lbfgs, options));
        }
        let g = flat(&p.grad, &p.grad_b);
        // The (pseudo-)gradient the direction is built from.
        let pg = if l1 > 0.0 {
            flat(&pseudo_gradient(&p.beta, &p.grad, l1), &p.grad_b)
        } else {
            g.clone()
        };
        // Two-loop recursion.
        let mut q = pg.clone();
        let mut alphas = Vec::with_capacity(history.len());
        for (s, y, rho) in history.iter().rev() {
            let a = rho * s.dot(&q);
            q = &q - &(y * a);
            alphas.push(a);
        }
        let gamma = history.back().map_or_else(
            || 1.0 / pg.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-300),
            |(s, y, _)| s.dot(y) / y.dot(y),
        );
        let mut r = q * gamma;
        for ((s, y, rho), a) in history.iter().zip(alphas.iter().rev()) {
            let b = rho * y.dot(&r);
            r = &r + &(s * (a - b));
        }
        let mut d_all = -r;
        if l1 > 0.0 {
            // Keep the direction where the pseudo-gradient sends it.
            for i in 0..nf {
                if d_all[i] * pg[i] >= 0.0 {
                    d_all[i] = 0.0;
                }
            }
        }
        let mut slope = pg.dot(&d_all);
        if !(slope < 0.0) {
            // Not a descent direction (curvature lost): restart from steepest descent.
            history.clear();
            d_all = -&pg;
            slope = -pg.dot(&pg);
        }
        let d = d_all.slice(ndarray::s![..nf]).to_owned();
        let d_b = if with_b { d_all.slice(ndarray::s![nf..]).to_owned() } else { Array1::zeros(k) };
        let next = if l1 == 0.0 {
            match search_point(problem, &p, &d, &d_b, slope, 1.0)? {
                Some((_, next)) => next,
                None => return Ok(problem.finish(p, iter, Solver::Lbfgs, options)),
            }
        } else {
            let orthant = Array1::from_shape_fn(nf, |i| {
                if p.beta[i] != 0.0 {
                    p.beta[i].signum()
                } else {
                    -pg[i].signum() * f64::from(pg[i] != 0.0)
                }
            });
            let f0 = problem.objective(&p);
            let mut t = 1.0;
            let mut accepted = None;
            for _ in 0..60 {
                let mut beta = &p.beta + &(&d * t);
                beta.iter_mut().zip(&orthant).for_each(|(b, o)| {
                    if b.signum() != *o || *o == 0.0 {
                        *b = 0.0;
                    }
                });
                let trial = problem.point(beta, &p.b + &(&d_b * t))?;
                let moved = flat(&trial.beta, &trial.b) - flat(&p.beta, &p.b);
                let decrease = pg.dot(&moved);
                let f = problem.objective(&trial);
                // Near the optimum the values differ by rounding only: a step
                // the pseudo-gradient calls downhill is then taken.
                let flat_values = (f - f0).abs() <= 1e-12 * f0.abs().max(1.0);
                if f <= f0 + ARMIJO * decrease || (flat_values && decrease < 0.0) {
                    accepted = Some(trial);
                    break;
                }
                t *= 0.5;
            }
            match accepted {
                Some(trial) => trial,
                None => return Ok(problem.finish(p, iter, Solver::Lbfgs, options)),
            }
        };
        let s = flat(&next.beta, &next.b) - flat(&p.beta, &p.b);
        let y = flat(&next.grad, &next.grad_b) - &g;
        let sy = s.dot(&y);
        if sy > 1e-12 * s.dot(&s).sqrt() * y.dot(&y).sqrt() {
            if history.len() == M {
                history.pop_front();
            }
            history.push_back((s, y, 1.0 / sy));
        }
        p = next;
    }
    Ok(problem.finish(p, options.max_iter, Solver::Lbfgs, options))
}

/// Consensus ADMM (Boyd et al. 2011, §7.1 and §8.2): each chunk `i` keeps
/// its own `θᵢ = (βᵢ, bᵢ)`; all must agree with `z`.
/// - `θᵢ ← argmin Lᵢ(θ)/W + ρ/2 ‖θ − z + uᵢ‖²`, inexactly: a few Newton
///   steps warm-started at the last `θᵢ` (every chunk, one task each);
/// - `z ← prox of P/(Nρ)` at the average of `θᵢ + uᵢ` (the intercept unpenalized);
/// - `uᵢ ← uᵢ + θᵢ − z`; ρ doubles or halves when one residual is 10x the other.
///
/// The local tasks also sum the loss and gradient at `z`, so the stopping
/// test on `z` rides on the next round's pass.
fn admm(problem: &Problem<'_>, zero: Array1<f64>, options: &Options) -> Result<Fit, GlmError> {
    let nf = zero.len();
    let k = problem.model.family.n_outputs();
    let n = problem.data.n_chunks();
    let with_b = problem.model.fit_intercept;
    let penalty = problem.model.penalty;
    // θ = [β, b]: the intercepts after the coefficients.
    let mut z = Array1::<f64>::zeros(nf + k);
    let mut u = vec![Array1::<f64>::zeros(nf + k); n];
    let mut theta = vec![Array1::<f64>::zeros(nf + k); n];
    // ρ starts at a fifth of a chunk's mean curvature at the start (each
    // chunk has about 1/N of the whole's): chunks of one population pull
    // the same way, and a small ρ lets them move fast (on w4, 33 rounds
    // instead of 81 at ρ = 1/N). Residual balancing adapts it from there.
    let dim = if with_b { nf + k } else { nf };
    let h0 = problem.data.hess(problem.model.family, zero.view(), Array1::zeros(k).view())?.hessian;
    let curvature = (0..dim).map(|j| h0[[j, j]]).sum::<f64>() / (dim as f64 * problem.w);
    let mut rho = if curvature > 0.0 { 0.2 * curvature / n as f64 } else { 1.0 / n as f64 };
    for iter in 0..options.max_iter {
        let targets: Vec<Array1<f64>> = u.iter().map(|ui| &z - ui).collect();
        let round = AdmmRound {
            family: problem.model.family,
            rho,
            targets: &targets,
            warm: &theta,
            consensus: &z,
            fit_intercept: with_b,
        };
        let (next, at_z) = problem.data.local_solves(&round)?;
        let (zb, zi) =
            (z.slice(ndarray::s![..nf]).to_owned(), z.slice(ndarray::s![nf..]).to_owned());
        let p = problem.point_from(zb, zi, at_z);
        if problem.stationarity(&p) <= options.tol {
            return Ok(problem.finish(p, iter, Solver::Admm, options));
        }
        theta = next;
        let z_old = z.clone();
        let mut avg = Array1::<f64>::zeros(nf + k);
        for (t, ui) in theta.iter().zip(&u) {
            avg = avg + t + ui;
        }
        avg /= n as f64;
        let mut zb = avg.slice(ndarray::s![..nf]).to_owned();
        penalty.prox(zb.as_slice_mut().expect("contiguous"), 1.0 / (n as f64 * rho));
        z.slice_mut(ndarray::s![..nf]).assign(&zb);
        if with_b {
            z.slice_mut(ndarray::s![nf..]).assign(&avg.slice(ndarray::s![nf..]));
        }
        let mut primal = 0.0;
        for (ui, t) in u.iter_mut().zip(&theta) {
            let r = t - &z;
            primal += r.dot(&r);
            *ui += &r;
        }
        let primal = primal.sqrt();
        let dual = rho * (n as f64).sqrt() * (&z - &z_old).dot(&(&z - &z_old)).sqrt();
        // Residual balancing: the scaled duals u = y/ρ rescale with ρ.
        if primal > 10.0 * dual {
            rho *= 2.0;
            u.iter_mut().for_each(|ui| *ui /= 2.0);
        } else if dual > 10.0 * primal {
            rho /= 2.0;
            u.iter_mut().for_each(|ui| *ui *= 2.0);
        }
    }
    let last = problem
        .point(z.slice(ndarray::s![..nf]).to_owned(), z.slice(ndarray::s![nf..]).to_owned())?;
    Ok(problem.finish(last, options.max_iter, Solver::Admm, options))
}
