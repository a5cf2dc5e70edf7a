//! What solvers read: row chunks of `(X, y, w)`, passed over once per
//! iteration. [`GlmData`] is the interface; [`InMemory`] holds the chunks in
//! this process (a chunked-array source running the same passes as task
//! graphs comes next).

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

use crate::chunk::{
    check_rows, grad_sums, hess_sums, local_solve, loss_along, GradSums, HessSums, LocalResult,
    LocalStep, RowProblem,
};
use crate::error::GlmError;
use crate::family::Family;

/// Row-chunked data a GLM is fitted on.
pub trait GlmData {
    /// Columns of X.
    fn n_features(&self) -> usize;
    /// Rows.
    fn n_rows(&self) -> usize;
    /// `W = Σ wᵢ` (the row count without weights).
    fn total_weight(&self) -> f64;
    /// One pass: loss and gradient sums at `(β, b)` (`b`: one intercept
    /// per linear predictor, see [`Family::n_outputs`]).
    fn grad(
        &self,
        family: Family,
        beta: ArrayView1<'_, f64>,
        b: ArrayView1<'_, f64>,
    ) -> Result<GradSums, GlmError>;
    /// One pass: gradient and Hessian sums at `(β, b)`.
    fn hess(
        &self,
        family: Family,
        beta: ArrayView1<'_, f64>,
        b: ArrayView1<'_, f64>,
    ) -> Result<HessSums, GlmError>;
    /// Row chunks (ADMM keeps one local solution per chunk).
    fn n_chunks(&self) -> usize;
    /// ADMM's local step, one task per chunk (see
    /// [`crate::chunk::local_solve`]): every chunk's new `θᵢ`, and the loss
    /// and gradient sums at the consensus.
    fn local_solves(&self, round: &AdmmRound<'_>)
        -> Result<(Vec<Array1<f64>>, GradSums), GlmError>;
    /// One pass that keeps `η = Xβ + b` and `δ = X·d + d_b` per chunk, so
    /// that the loss along the ray `β + t·d` costs no further pass over X.
    fn ray(
        &self,
        family: Family,
        beta: ArrayView1<'_, f64>,
        b: ArrayView1<'_, f64>,
        direction: ArrayView1<'_, f64>,
        direction_b: ArrayView1<'_, f64>,
    ) -> Result<Box<dyn Ray + '_>, GlmError>;
}

/// One round of ADMM's local steps (see [`GlmData::local_solves`]).
#[derive(Debug, Clone, Copy)]
pub struct AdmmRound<'a> {
    /// The family.
    pub family: Family,
    /// The penalty parameter ρ.
    pub rho: f64,
    /// Each chunk's target `vᵢ = z − uᵢ`, intercept last.
    pub targets: &'a [Array1<f64>],
    /// Each chunk's previous `θᵢ`, intercept last.
    pub warm: &'a [Array1<f64>],
    /// The consensus `z`, intercept last.
    pub consensus: &'a Array1<f64>,
    /// Whether the intercept is fitted.
    pub fit_intercept: bool,
}

impl AdmmRound<'_> {
    /// Chunk `i`'s step.
    pub fn step(&self, i: usize, total_weight: f64) -> LocalStep {
        LocalStep {
            family: self.family,
            total_weight,
            rho: self.rho,
            target: self.targets[i].to_vec(),
            warm: self.warm[i].to_vec(),
            consensus: self.consensus.to_vec(),
            fit_intercept: self.fit_intercept,
        }
    }
}

/// Adds up chunks' local results: their `θᵢ` in order, and the sums at the consensus.
pub fn gather_local(results: Vec<LocalResult>) -> (Vec<Array1<f64>>, GradSums) {
    let mut sums: Option<GradSums> = None;
    let mut thetas = Vec::with_capacity(results.len());
    for r in results {
        match sums.as_mut() {
            Some(s) => s.add(&r.at_consensus),
            None => sums = Some(r.at_consensus),
        }
        thetas.push(Array1::from(r.theta));
    }
    (thetas, sums.expect("at least one chunk"))
}

/// The loss along a ray `β + t·d` (see [`GlmData::ray`]).
pub trait Ray {
    /// `Σ wᵢ loss(ηᵢ + t δᵢ, yᵢ)`.
    fn loss_at(&self, family: Family, t: f64) -> Result<f64, GlmError>;
}

/// One chunk of rows held in memory.
#[derive(Debug, Clone)]
pub struct Chunk {
    x: Array2<f64>,
    y: Array1<f64>,
    w: Option<Array1<f64>>,
}

/// Row chunks held in this process.
#[derive(Debug, Clone)]
pub struct InMemory {
    chunks: Vec<Chunk>,
    n_features: usize,
    total_weight: f64,
}

impl InMemory {
    /// Checks `x`, `y` and the optional weights for `family` and splits them
    /// into chunks of `chunk_rows` rows.
    pub fn new(
        family: Family,
        x: ArrayView2<'_, f64>,
        y: ArrayView1<'_, f64>,
        w: Option<ArrayView1<'_, f64>>,
        chunk_rows: usize,
    ) -> Result<InMemory, GlmError> {
        let (n, p) = x.dim();
        if y.len() != n {
            return Err(GlmError::Shape {
                what: "y".into(),
                message: format!("{} rows, but X has {n}", y.len()),
            });
        }
        if let Some(w) = w {
            if w.len() != n {
                return Err(GlmError::Shape {
                    what: "sample_weight".into(),
                    message: format!("{} rows, but X has {n}", w.len()),
                });
            }
        }
        if n == 0 {
            return Err(GlmError::Shape { what: "X".into(), message: "no rows".into() });
        }
        if let Some(RowProblem { what, row, message }) = check_rows(family, x, y, w) {
            return Err(GlmError::Input { what, row, message });
        }
        let rows = chunk_rows.max(1);
        let chunks = (0..n)
            .step_by(rows)
            .map(|lo| {
                let hi = (lo + rows).min(n);
                Chunk {
                    x: x.slice(ndarray::s![lo..hi, ..]).to_owned(),
                    y: y.slice(ndarray::s![lo..hi]).to_owned(),
                    w: w.map(|w| w.slice(ndarray::s![lo..hi]).to_owned()),
                }
            })
            .collect();
        let total_weight = w.map_or(n as f64, |w| w.sum());
        if !(total_weight > 0.0) {
            return Err(GlmError::Input {
                what: "sample_weight".into(),
                row: 0,
                message: "all weights are 0".into(),
            });
        }
        Ok(InMemory { chunks, n_features: p, total_weight })
    }
}

/// A chunk's sums (`grad_sums` or `hess_sums`).
type ChunkFn<S> = fn(
    Family,
    ArrayView2<'_, f64>,
    ArrayView1<'_, f64>,
    Option<ArrayView1<'_, f64>>,
    ArrayView1<'_, f64>,
    ArrayView1<'_, f64>,
) -> S;

impl InMemory {
    /// The chunks' sums of `chunk_fn`, added in chunk order.
    fn sum_chunks<S>(
        &self,
        family: Family,
        beta: ArrayView1<'_, f64>,
        b: ArrayView1<'_, f64>,
        chunk_fn: ChunkFn<S>,
        add: fn(&mut S, &S),
    ) -> S {
        let mut sums = self.chunks.iter().map(|c| {
            chunk_fn(family, c.x.view(), c.y.view(), c.w.as_ref().map(|w| w.view()), beta, b)
        });
        let mut total = sums.next().expect("at least one chunk");
        sums.for_each(|s| add(&mut total, &s));
        total
    }
}

struct InMemoryRay<'a> {
    data: &'a InMemory,
    eta: Vec<Array1<f64>>,
    delta: Vec<Array1<f64>>,
}

impl Ray for InMemoryRay<'_> {
    fn loss_at(&self, family: Family, t: f64) -> Result<f64, GlmError> {
        Ok(self
            .data
            .chunks
            .iter()
            .zip(self.eta.iter().zip(&self.delta))
            .map(|(c, (eta, delta))| {
                let (eta, delta) =
                    (eta.as_slice().expect("owned"), delta.as_slice().expect("owned"));
                loss_along(family, eta, delta, t, c.y.view(), c.w.as_ref().map(|w| w.view()))
            })
            .sum())
    }
}

impl GlmData for InMemory {
    fn n_features(&self) -> usize {
        self.n_features
    }

    fn n_rows(&self) -> usize {
        self.chunks.iter().map(|c| c.y.len()).sum()
    }

    fn total_weight(&self) -> f64 {
        self.total_weight
    }

    fn n_chunks(&self) -> usize {
        self.chunks.len()
    }

    fn local_solves(
        &self,
        round: &AdmmRound<'_>,
    ) -> Result<(Vec<Array1<f64>>, GradSums), GlmError> {
        let results = self
            .chunks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let step = round.step(i, self.total_weight);
                local_solve(c.x.view(), c.y.view(), c.w.as_ref().map(|w| w.view()), &step)
            })
            .collect();
        Ok(gather_local(results))
    }

    fn grad(
        &self,
        family: Family,
        beta: ArrayView1<'_, f64>,
        b: ArrayView1<'_, f64>,
    ) -> Result<GradSums, GlmError> {
        Ok(self.sum_chunks(family, beta, b, grad_sums, GradSums::add))
    }

    fn hess(
        &self,
        family: Family,
        beta: ArrayView1<'_, f64>,
        b: ArrayView1<'_, f64>,
    ) -> Result<HessSums, GlmError> {
        Ok(self.sum_chunks(family, beta, b, hess_sums, HessSums::add))
    }

    fn ray(
        &self,
        family: Family,
        beta: ArrayView1<'_, f64>,
        b: ArrayView1<'_, f64>,
        direction: ArrayView1<'_, f64>,
        direction_b: ArrayView1<'_, f64>,
    ) -> Result<Box<dyn Ray + '_>, GlmError> {
        let (eta, delta) = self
            .chunks
            .iter()
            .map(|c| crate::chunk::ray_parts(family, c.x.view(), beta, b, direction, direction_b))
            .unzip();
        Ok(Box::new(InMemoryRay { data: self, eta, delta }))
    }
}
