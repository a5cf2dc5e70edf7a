//! One member of a native training gang, as it runs on a worker: its row
//! blocks become a shard, it joins the ring of its peers, trains, and (rank
//! 0) streams each step's loss and, every few steps, a checkpoint to the
//! client.

use std::net::TcpListener;
use std::time::Duration;

use rask_core::array::{Block, BlockData};
use serde::{Deserialize, Serialize};

use super::model::{self, Ad, MlpConfig};
use super::run::{self, Plan, Shard};
use crate::dl::ring::{Ring, RingOptions};
use crate::gang::report::Reporter;

/// The model after `step` steps and the loss curve up to it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Steps done.
    pub step: usize,
    /// The model ([`model::to_bytes`]).
    pub model: Vec<u8>,
    /// The loss of every step so far.
    pub losses: Vec<f32>,
}

/// What one member is told (everything but its blocks).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberJob {
    /// The gang's id (each attempt has its own).
    pub gang: String,
    /// This member's rank.
    pub rank: usize,
    /// Every member's ring address (`host:port`), by rank.
    pub ring: Vec<String>,
    /// The ring's secret.
    pub secret: [u8; 16],
    /// The first global row of each of this member's blocks.
    pub first_rows: Vec<usize>,
    /// The model's shape.
    pub config: MlpConfig,
    /// The model to start from.
    pub model: Vec<u8>,
    /// Losses of the steps before `start`.
    pub losses: Vec<f32>,
    /// The first step to run.
    pub start: usize,
    /// Rows, batch, steps, learning rate, seed.
    pub total_rows: usize,
    /// Rows per step over all members.
    pub batch_size: usize,
    /// Steps in all.
    pub steps: usize,
    /// SGD's learning rate.
    pub learning_rate: f64,
    /// Seeds the row order.
    pub seed: u64,
    /// Send a checkpoint every k steps (rank 0).
    pub checkpoint_every: Option<usize>,
    /// The client's progress listener and its nonce (rank 0 only).
    pub report: Option<(String, [u8; 16])>,
    /// Bounds the ring's waits (seconds).
    pub timeout_s: u64,
}

/// What a member returns.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberResult {
    /// The trained model (rank 0), else empty.
    pub model: Vec<u8>,
    /// The loss of every step (rank 0), else empty.
    pub losses: Vec<f32>,
    /// Seconds computing.
    pub compute_s: f64,
    /// Seconds in the all-reduce.
    pub all_reduce_s: f64,
    /// Rows trained on by this member.
    pub rows: usize,
}

rask_core::op! {
    /// One member of a native (burn) training gang (see `dl::train`).
    pub fn dl_train_member(xs: Vec<Block>, ys: Vec<Block>, job: MemberJob) -> Result<MemberResult, String> {
        run_member(xs, ys, &job)
    }
}

/// Row-major `f32` values of a float64 block of `ndim` 1 or 2.
fn values(b: &Block, what: &str, rank: usize) -> Result<(Vec<f32>, usize, usize), String> {
    match b.data() {
        BlockData::F64(a) if a.ndim() == 2 || a.ndim() == 1 => {
            let rows = a.shape()[0];
            let cols = if a.ndim() == 2 { a.shape()[1] } else { 1 };
            Ok((a.iter().map(|v| *v as f32).collect(), rows, cols))
        }
        BlockData::F64(a) => {
            Err(format!("gang member {rank}: a {what} block of shape {:?}", a.shape()))
        }
        other => Err(format!(
            "gang member {rank}: a {what} block holds {} data, float64 expected",
            other.dtype()
        )),
    }
}

fn run_member(xs: Vec<Block>, ys: Vec<Block>, job: &MemberJob) -> Result<MemberResult, String> {
    let rank = job.rank;
    if xs.len() != ys.len() || xs.len() != job.first_rows.len() {
        return Err(format!(
            "gang member {rank}: {} X blocks, {} y blocks, {} offsets",
            xs.len(),
            ys.len(),
            job.first_rows.len()
        ));
    }
    let mut blocks = Vec::with_capacity(xs.len());
    for ((x, y), &first) in xs.iter().zip(&ys).zip(&job.first_rows) {
        let (xv, rows, cols) = values(x, "X", rank)?;
        let (yv, yrows, ycols) = values(y, "y", rank)?;
        if cols != job.config.inputs || ycols != job.config.outputs || yrows != rows {
            return Err(format!(
                "gang member {rank}: rows {first}..{}: X is {rows} × {cols} and y {yrows} × {ycols}, the model takes {} inputs and {} outputs",
                first + rows,
                job.config.inputs,
                job.config.outputs
            ));
        }
        blocks.push((first, xv, yv));
    }
    blocks.sort_by_key(|b| b.0);
    let shard = Shard { blocks, inputs: job.config.inputs, outputs: job.config.outputs };

    let model = job.config.from_bytes::<Ad>(&job.model)?;
    let timeout = Duration::from_secs(job.timeout_s);
    let addr = &job.ring[rank];
    let listener = TcpListener::bind(addr.as_str())
        .map_err(|e| format!("gang member {rank}: cannot listen on {addr} for the ring: {e}"))?;
    let options = RingOptions { secret: job.secret, connect_timeout: timeout, io_timeout: timeout };
    let mut ring = Ring::join(rank, &job.ring, &listener, &options).map_err(|e| e.to_string())?;
    drop(listener);

    let mut reporter = job.report.as_ref().map(|(a, nonce)| Reporter::connect(a, nonce));
    let mut losses = job.losses.clone();
    let plan = Plan {
        total_rows: job.total_rows,
        batch_size: job.batch_size,
        steps: job.steps,
        learning_rate: job.learning_rate,
        seed: job.seed,
    };
    let (model, timing) =
        run::train(model, &job.config, &shard, &plan, job.start, Some(&mut ring), |t, loss, m| {
            losses.push(loss);
            if let Some(r) = reporter.as_mut() {
                r.round(t, &format!("{loss:?}"));
                if job.checkpoint_every.is_some_and(|k| (t + 1) % k == 0) && t + 1 < job.steps {
                    let c = Checkpoint {
                        step: t + 1,
                        model: model::to_bytes(m)?,
                        losses: losses.clone(),
                    };
                    r.checkpoint(&c);
                }
            }
            Ok(())
        })?;
    let first = rank == 0;
    Ok(MemberResult {
        model: if first { model::to_bytes(&model)? } else { Vec::new() },
        losses: if first { losses } else { Vec::new() },
        compute_s: timing.compute_s,
        all_reduce_s: timing.all_reduce_s,
        rows: timing.rows,
    })
}
