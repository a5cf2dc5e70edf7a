//! [`GlmData`] over chunked arrays: every pass is a task graph (one task per
//! row block, then a tree of sums) run on a [`Scheduler`], so a fit runs on
//! `Sync`, `Threads` or a cluster unchanged, and blocks backed by files are
//! read inside their tasks (data larger than memory streams through).
//!
//! A line search's ray keeps each block's `η` and `δ` as persisted task
//! outputs (on a cluster they stay on the workers that made them), so each
//! trial step is a small graph over those vectors, not a pass over X.

use ndarray::{Array1, ArrayView1, ArrayView2, Ix1, Ix2};
use rask_core::array::{Array, Block};
use rask_core::{ComputeOptions, Delayed, Scheduler};
use serde::{Deserialize, Serialize};

use crate::chunk::{
    check_rows, grad_sums, hess_sums, local_solve, loss_along, GradSums, HessSums, LocalResult,
    LocalStep, RowProblem,
};
use crate::data::{gather_local, AdmmRound, GlmData, Ray};
use crate::error::GlmError;
use crate::family::Family;

/// Sums combined this many at a time (a tree of depth log₈ of the block count).
const SPLIT_EVERY: usize = 8;

fn view2(b: &Block) -> Result<ArrayView2<'_, f64>, String> {
    match b.data() {
        rask_core::array::BlockData::F64(a) => {
            a.view().into_dimensionality::<Ix2>().map_err(|e| format!("X block: {e}"))
        }
        other => Err(format!("X block holds {} data, float64 expected", other.dtype())),
    }
}

fn view1<'a>(b: &'a Block, what: &str) -> Result<ArrayView1<'a, f64>, String> {
    match b.data() {
        rask_core::array::BlockData::F64(a) => {
            a.view().into_dimensionality::<Ix1>().map_err(|e| format!("{what} block: {e}"))
        }
        other => Err(format!("{what} block holds {} data, float64 expected", other.dtype())),
    }
}

/// What checking one row block found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockCheck {
    /// Rows in the block.
    pub rows: usize,
    /// `Σ wᵢ` of the block.
    pub weight: f64,
    /// The first invalid row (counted from the block's first).
    pub problem: Option<RowProblem>,
}

/// A block's `η` and `δ` for a line search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RayBlock {
    eta: Array1<f64>,
    delta: Array1<f64>,
}

rask_core::op! {
    /// Checks one row block: finite X, targets valid for the family, weights >= 0.
    pub fn glm_check_block(x: Block, y: Block, w: Vec<Block>, family: Family) -> Result<BlockCheck, String> {
        let (x, y) = (view2(&x)?, view1(&y, "y")?);
        let w = w.first().map(|w| view1(w, "sample_weight")).transpose()?;
        let weight = w.map_or(y.len() as f64, |w| w.sum());
        Ok(BlockCheck { rows: x.nrows(), weight, problem: check_rows(family, x, y, w) })
    }

    /// Loss and gradient sums of one row block.
    pub fn glm_grad_block(x: Block, y: Block, w: Vec<Block>, beta: Vec<f64>, b: Vec<f64>, family: Family) -> Result<GradSums, String> {
        let w = w.first().map(|w| view1(w, "sample_weight")).transpose()?;
        Ok(grad_sums(family, view2(&x)?, view1(&y, "y")?, w, ArrayView1::from(&beta), ArrayView1::from(&b)))
    }

    /// Gradient and Hessian sums of one row block.
    pub fn glm_hess_block(x: Block, y: Block, w: Vec<Block>, beta: Vec<f64>, b: Vec<f64>, family: Family) -> Result<HessSums, String> {
        let w = w.first().map(|w| view1(w, "sample_weight")).transpose()?;
        Ok(hess_sums(family, view2(&x)?, view1(&y, "y")?, w, ArrayView1::from(&beta), ArrayView1::from(&b)))
    }

    /// `η = Xβ + b` and `δ = X·d + d_b` of one row block.
    pub fn glm_ray_block(x: Block, beta: Vec<f64>, b: Vec<f64>, d: Vec<f64>, d_b: Vec<f64>, family: Family) -> Result<RayBlock, String> {
        let (eta, delta) = crate::chunk::ray_parts(
            family,
            view2(&x)?,
            ArrayView1::from(&beta),
            ArrayView1::from(&b),
            ArrayView1::from(&d),
            ArrayView1::from(&d_b),
        );
        Ok(RayBlock { eta, delta })
    }

    /// The loss sum of one block at step `t` along its ray.
    pub fn glm_ray_loss(ray: RayBlock, y: Block, w: Vec<Block>, t: f64, family: Family) -> Result<f64, String> {
        let w = w.first().map(|w| view1(w, "sample_weight")).transpose()?;
        let (eta, delta) = (ray.eta.as_slice().expect("owned"), ray.delta.as_slice().expect("owned"));
        Ok(loss_along(family, eta, delta, t, view1(&y, "y")?, w))
    }

    /// ADMM's local step on one row block (see `chunk::local_solve`).
    pub fn glm_admm_local(x: Block, y: Block, w: Vec<Block>, step: LocalStep) -> Result<LocalResult, String> {
        let w = w.first().map(|w| view1(w, "sample_weight")).transpose()?;
        Ok(local_solve(view2(&x)?, view1(&y, "y")?, w, &step))
    }

    /// Adds block checks.
    pub fn glm_sum_checks(parts: Vec<BlockCheck>) -> BlockCheck {
        let mut rows = 0;
        let mut weight = 0.0;
        let mut problem = None;
        for p in parts {
            if problem.is_none() {
                problem = p.problem.map(|q| RowProblem { row: rows + q.row, ..q });
            }
            rows += p.rows;
            weight += p.weight;
        }
        BlockCheck { rows, weight, problem }
    }

    /// Adds gradient sums.
    pub fn glm_sum_grads(parts: Vec<GradSums>) -> GradSums {
        let mut it = parts.into_iter();
        let mut total = it.next().expect("a tree node has parts");
        it.for_each(|p| total.add(&p));
        total
    }

    /// Adds Hessian sums.
    pub fn glm_sum_hess(parts: Vec<HessSums>) -> HessSums {
        let mut it = parts.into_iter();
        let mut total = it.next().expect("a tree node has parts");
        it.for_each(|p| total.add(&p));
        total
    }

    /// Adds numbers.
    pub fn glm_sum_f64(parts: Vec<f64>) -> f64 {
        parts.iter().sum()
    }
}

/// Sums `parts` in a tree of `combine` tasks.
fn tree<T>(
    mut parts: Vec<Delayed<T>>,
    combine: impl Fn(Vec<Delayed<T>>) -> Delayed<T>,
) -> Delayed<T>
where
    Delayed<T>: Clone,
{
    while parts.len() > 1 {
        parts = parts
            .chunks(SPLIT_EVERY)
            .map(|c| if c.len() == 1 { c[0].clone() } else { combine(c.to_vec()) })
            .collect();
    }
    parts.pop().expect("at least one block")
}

/// Row blocks of X, y and the weights, with the scheduler that runs the passes.
pub struct Chunked {
    x: Vec<Delayed<Block>>,
    y: Vec<Delayed<Block>>,
    w: Option<Vec<Delayed<Block>>>,
    n_features: usize,
    n_rows: usize,
    total_weight: f64,
    scheduler: Scheduler,
    options: ComputeOptions,
}

fn compute_err(e: impl std::fmt::Display) -> GlmError {
    GlmError::Compute { message: e.to_string() }
}

impl Chunked {
    /// X (2-d, rows × features) and y (and weights, 1-d) chunked alike by rows;
    /// X's columns are joined into one block per row chunk, and y and the
    /// weights are rechunked to X's row chunks. One checking pass runs now.
    pub fn new(
        family: Family,
        x: &Array<f64>,
        y: &Array<f64>,
        w: Option<&Array<f64>>,
        scheduler: Scheduler,
    ) -> Result<Chunked, GlmError> {
        let shape_err =
            |what: &str, message: String| GlmError::Shape { what: what.into(), message };
        if x.ndim() != 2 {
            return Err(shape_err(
                "X",
                format!("must be 2-d (rows x features), is {}-d", x.ndim()),
            ));
        }
        let (n, p) = (x.shape()[0], x.shape()[1]);
        let rows = x.chunks()[0].clone();
        let x = x
            .rechunk(rask_core::array::ChunkSpec::Explicit(vec![rows.clone(), vec![p]]))
            .map_err(|e| shape_err("X", e.to_string()))?;
        let one_d = |a: &Array<f64>, what: &str| -> Result<Vec<Delayed<Block>>, GlmError> {
            if a.shape() != [n] {
                return Err(shape_err(what, format!("shape {:?}, but X has {n} rows", a.shape())));
            }
            let a = a
                .rechunk(rask_core::array::ChunkSpec::Explicit(vec![rows.clone()]))
                .map_err(|e| shape_err(what, e.to_string()))?;
            Ok(a.blocks().iter().cloned().collect())
        };
        let yb = one_d(y, "y")?;
        let wb = w.map(|w| one_d(w, "sample_weight")).transpose()?;
        if rows.contains(&0) {
            return Err(shape_err("X", "has an empty row chunk; rechunk it".into()));
        }
        let data = Chunked {
            x: x.blocks().iter().cloned().collect(),
            y: yb,
            w: wb,
            n_features: p,
            n_rows: n,
            total_weight: 0.0,
            scheduler,
            options: ComputeOptions::default(),
        };
        let check = data.pass(
            |i| glm_check_block(&data.x[i], &data.y[i], data.weights(i), family),
            glm_sum_checks,
        )?;
        if let Some(RowProblem { what, row, message }) = check.problem {
            return Err(GlmError::Input { what, row, message });
        }
        if !(check.weight > 0.0) {
            return Err(GlmError::Input {
                what: "sample_weight".into(),
                row: 0,
                message: "all weights are 0".into(),
            });
        }
        Ok(Chunked { total_weight: check.weight, ..data })
    }

    /// One task per row block, summed in a tree, run on the scheduler.
    fn pass<S: Clone + Send + Sync + serde::de::DeserializeOwned + 'static>(
        &self,
        per_block: impl Fn(usize) -> Delayed<S>,
        combine: impl Fn(Vec<Delayed<S>>) -> Delayed<S>,
    ) -> Result<S, GlmError> {
        let parts = (0..self.x.len()).map(per_block).collect();
        tree(parts, combine).compute_with(&self.scheduler, &self.options).map_err(compute_err)
    }

    fn weights(&self, i: usize) -> Vec<Delayed<Block>> {
        self.w.as_ref().map(|w| vec![w[i].clone()]).unwrap_or_default()
    }
}

struct ChunkedRay<'a> {
    data: &'a Chunked,
    blocks: Vec<Delayed<RayBlock>>,
}

impl Ray for ChunkedRay<'_> {
    fn loss_at(&self, family: Family, t: f64) -> Result<f64, GlmError> {
        let d = self.data;
        d.pass(|i| glm_ray_loss(&self.blocks[i], &d.y[i], d.weights(i), t, family), glm_sum_f64)
    }
}

impl GlmData for Chunked {
    fn n_features(&self) -> usize {
        self.n_features
    }

    fn n_rows(&self) -> usize {
        self.n_rows
    }

    fn total_weight(&self) -> f64 {
        self.total_weight
    }

    fn n_chunks(&self) -> usize {
        self.x.len()
    }

    fn local_solves(
        &self,
        round: &AdmmRound<'_>,
    ) -> Result<(Vec<Array1<f64>>, GradSums), GlmError> {
        let steps: Vec<rask_core::AnyDelayed> = (0..self.x.len())
            .map(|i| {
                let step = round.step(i, self.total_weight);
                glm_admm_local(&self.x[i], &self.y[i], self.weights(i), step).erase()
            })
            .collect();
        let results = rask_core::delayed::compute_many(&steps, &self.scheduler, &self.options)
            .map_err(compute_err)?
            .into_iter()
            .map(|v| v.take::<LocalResult>().map_err(compute_err))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(gather_local(results))
    }

    fn grad(
        &self,
        family: Family,
        beta: ArrayView1<'_, f64>,
        b: ArrayView1<'_, f64>,
    ) -> Result<GradSums, GlmError> {
        let (beta, b) = (beta.to_vec(), b.to_vec());
        self.pass(
            |i| {
                let (x, y, w) = (&self.x[i], &self.y[i], self.weights(i));
                glm_grad_block(x, y, w, beta.clone(), b.clone(), family)
            },
            glm_sum_grads,
        )
    }

    fn hess(
        &self,
        family: Family,
        beta: ArrayView1<'_, f64>,
        b: ArrayView1<'_, f64>,
    ) -> Result<HessSums, GlmError> {
        let (beta, b) = (beta.to_vec(), b.to_vec());
        self.pass(
            |i| {
                let (x, y, w) = (&self.x[i], &self.y[i], self.weights(i));
                glm_hess_block(x, y, w, beta.clone(), b.clone(), family)
            },
            glm_sum_hess,
        )
    }

    fn ray(
        &self,
        family: Family,
        beta: ArrayView1<'_, f64>,
        b: ArrayView1<'_, f64>,
        direction: ArrayView1<'_, f64>,
        direction_b: ArrayView1<'_, f64>,
    ) -> Result<Box<dyn Ray + '_>, GlmError> {
        let (beta, b) = (beta.to_vec(), b.to_vec());
        let (d, d_b) = (direction.to_vec(), direction_b.to_vec());
        let blocks: Vec<_> = self
            .x
            .iter()
            .map(|x| glm_ray_block(x, beta.clone(), b.clone(), d.clone(), d_b.clone(), family))
            .collect();
        let kept = rask_core::delayed::persist_many(&blocks, &self.scheduler, &self.options)
            .map_err(compute_err)?;
        Ok(Box::new(ChunkedRay { data: self, blocks: kept }))
    }
}
