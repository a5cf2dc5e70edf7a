//! A native data-parallel trainer: a burn MLP (ndarray backend, autodiff)
//! trained on the row blocks of chunked arrays where they live, feature
//! `burn`.
//!
//! Data flow of [`train`]:
//! 1. [`TrainData::new`] computes the row blocks of X and y on the cluster
//!    and keeps their futures: the blocks stay on the workers that made them.
//! 2. Each attempt gives every worker the blocks it holds
//!    ([`gang::plan::assign`](crate::gang::plan::assign)), has each chosen
//!    worker check a port free for its member, and starts one gang member per
//!    worker, pinned there with its blocks as inputs.
//! 3. The members form a ring over direct TCP connections
//!    ([`ring`](crate::dl::ring)). Each step, a member computes the gradient
//!    of its share of the global batch, the ring sums the gradients (and the
//!    loss) so every replica applies the same update; the scheduler and the
//!    client never see them.
//! 4. Rank 0 streams each step's loss, and every `checkpoint_every` steps
//!    the model, to the client, which also writes it to `checkpoint_path`
//!    when one is given (and a later training with that path resumes from
//!    it).
//! 5. The gang fails as a unit. When a worker was lost, training restarts
//!    from the last checkpoint on the survivors; a step's rows do not depend
//!    on who holds them (see [`run`]), so the loss curve continues as if
//!    nothing had happened.

pub mod member;
pub mod model;
pub mod run;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ndarray::{Array2, ArrayView2};
use rask_core::array::{Array, Block, ChunkSpec};
use rask_core::Delayed;
use rask_distributed::{Client, DistError, Future, GangMember};

use super::DlError;
use crate::gang::{plan, report};
pub use member::{Checkpoint, MemberJob, MemberResult};
pub use model::{Mlp, MlpConfig};

/// One row block on the cluster.
struct Part {
    x: Future<Block>,
    y: Future<Block>,
    rows: usize,
    first_row: usize,
}

/// Training rows held by a cluster's workers, block by block (X's row
/// chunks). Built once, used by any number of trainings.
pub struct TrainData {
    parts: Vec<Part>,
    inputs: usize,
    outputs: usize,
    rows: usize,
}

fn invalid(message: String) -> DlError {
    DlError::Invalid { message }
}

impl TrainData {
    /// X (rows × features) and y (rows, or rows × targets), chunked by rows;
    /// y is rechunked to X's row chunks. The blocks are computed on the
    /// cluster now and stay there.
    pub fn new(client: &Client, x: &Array<f64>, y: &Array<f64>) -> Result<TrainData, DlError> {
        if x.ndim() != 2 || x.shape()[0] == 0 || x.shape()[1] == 0 {
            return Err(invalid(format!(
                "X of shape {:?}: X must be 2-D with rows and features",
                x.shape()
            )));
        }
        let (rows, inputs) = (x.shape()[0], x.shape()[1]);
        if y.shape()[0] != rows || y.ndim() > 2 {
            return Err(invalid(format!(
                "y of shape {:?} for X's {rows} rows: y must be 1-D or 2-D with one row per X row",
                y.shape()
            )));
        }
        let outputs = if y.ndim() == 2 { y.shape()[1] } else { 1 };
        let row_chunks = x.chunks()[0].clone();
        let x = x
            .rechunk(ChunkSpec::Explicit(vec![row_chunks.clone(), vec![inputs]]))
            .map_err(|e| invalid(format!("X: {e}")))?;
        let mut spec = vec![row_chunks.clone()];
        if y.ndim() == 2 {
            spec.push(vec![outputs]);
        }
        let y = y.rechunk(ChunkSpec::Explicit(spec)).map_err(|e| invalid(format!("y: {e}")))?;
        let kept: Vec<usize> = (0..row_chunks.len()).filter(|&i| row_chunks[i] > 0).collect();
        let (xb, yb): (Vec<Delayed<Block>>, Vec<Delayed<Block>>) =
            (x.blocks().iter().cloned().collect(), y.blocks().iter().cloned().collect());
        let all: Vec<Delayed<Block>> =
            kept.iter().flat_map(|&i| [xb[i].clone(), yb[i].clone()]).collect();
        let futures = client.map(&all)?;
        client.wait(&futures)?;
        for f in &futures {
            if client.who_has(f).is_none() {
                f.result()?; // failed: its result says why
            }
        }
        let mut futures = futures.into_iter();
        let mut parts = Vec::with_capacity(kept.len());
        for &i in &kept {
            let (x, y) = (futures.next().expect("X future"), futures.next().expect("y future"));
            parts.push(Part { x, y, rows: row_chunks[i], first_row: row_chunks[..i].iter().sum() });
        }
        Ok(TrainData { parts, inputs, outputs, rows })
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    fn holders(&self, client: &Client) -> Vec<(Option<String>, u64)> {
        crate::gang::holders(
            client,
            self.parts.iter().map(|p| (&p.x, (p.rows * self.inputs * 8) as u64)),
        )
    }
}

/// A callback on each step's loss: `(step, loss)`.
pub type OnStep<'a> = Box<dyn FnMut(usize, f32) + 'a>;

/// How to train.
pub struct TrainOptions<'a> {
    /// Steps (updates).
    pub steps: usize,
    /// Rows per step, over all members.
    pub batch_size: usize,
    /// SGD's learning rate.
    pub learning_rate: f64,
    /// Seeds the initial model and the row order.
    pub seed: u64,
    /// Send the model to this process every k steps; when a worker dies,
    /// training restarts from the last checkpoint on the survivors.
    pub checkpoint_every: Option<usize>,
    /// Also write each checkpoint that reaches this process to this file
    /// (replaced whole, by rename). When the file exists at the start, the
    /// training resumes from it: a training whose client died goes on from
    /// there with the same data, model shape and options. A file of
    /// another training (model shape, seed, batch size, rows) is refused.
    /// [`train`] only: [`train_local`] keeps no checkpoints.
    pub checkpoint_path: Option<PathBuf>,
    /// Restarts allowed (with `checkpoint_every`).
    pub max_restarts: usize,
    /// Bounds the ring's waits (a silent or dead peer), in seconds.
    pub timeout_s: u64,
    /// Called with each step's loss as rank 0 reports it. After a restart,
    /// the steps from the checkpoint on are reported again (the final
    /// [`Trained::losses`] holds each step once).
    pub on_step: Option<OnStep<'a>>,
}

impl Default for TrainOptions<'_> {
    fn default() -> Self {
        TrainOptions {
            steps: 100,
            batch_size: 64,
            learning_rate: 0.01,
            seed: 0,
            checkpoint_every: None,
            checkpoint_path: None,
            max_restarts: 3,
            timeout_s: 60,
            on_step: None,
        }
    }
}

impl TrainOptions<'_> {
    fn check(&self, rows: usize) -> Result<(), DlError> {
        if self.batch_size == 0 || self.batch_size > rows {
            return Err(invalid(format!(
                "batch_size {}: must be between 1 and the {rows} rows",
                self.batch_size
            )));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(invalid(format!(
                "learning_rate {}: must be a positive number",
                self.learning_rate
            )));
        }
        if self.checkpoint_every == Some(0) {
            return Err(invalid("checkpoint_every: must be at least 1".into()));
        }
        if self.checkpoint_path.is_some() && self.checkpoint_every.is_none() {
            return Err(invalid(
                "checkpoint_path needs checkpoint_every (how often to write it)".into(),
            ));
        }
        Ok(())
    }
}

/// A checkpoint file: the checkpoint and what it was a checkpoint of.
/// Written from a borrowed checkpoint (`C = &Checkpoint`: no copy of the
/// model), read into an owned one; both encode alike.
#[derive(serde::Serialize, serde::Deserialize)]
struct CheckpointFile<C> {
    /// What wrote it, and its format.
    magic: String,
    config: MlpConfig,
    seed: u64,
    batch_size: usize,
    rows: usize,
    checkpoint: C,
}

const CHECKPOINT_MAGIC: &str = "rask dl::train checkpoint v1";

impl CheckpointFile<&Checkpoint> {
    /// Writes `path` whole: a temporary file beside it, then a rename.
    fn write(&self, path: &Path) -> Result<(), DlError> {
        let io = |e: std::io::Error| {
            invalid(format!("cannot write the checkpoint to {}: {e}", path.display()))
        };
        let bytes = postcard::to_stdvec(self).map_err(|e| invalid(e.to_string()))?;
        let tmp = path.with_extension("partial");
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

impl CheckpointFile<Checkpoint> {
    /// The checkpoint in `path` if the file exists, checked against this training.
    fn resume(
        path: &Path,
        config: &MlpConfig,
        options: &TrainOptions<'_>,
        rows: usize,
    ) -> Result<Option<Checkpoint>, DlError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(invalid(format!("cannot read {}: {e}", path.display()))),
        };
        let bad = |why: String| {
            invalid(format!(
                "{} is not a checkpoint of this training ({why}): remove it, or give another checkpoint_path",
                path.display()
            ))
        };
        let file: CheckpointFile<Checkpoint> =
            postcard::from_bytes(&bytes).map_err(|e| bad(format!("unreadable: {e}")))?;
        if file.magic != CHECKPOINT_MAGIC {
            return Err(bad("not written by dl::train".into()));
        }
        let ours = (config, options.seed, options.batch_size, rows);
        let theirs = (&file.config, file.seed, file.batch_size, file.rows);
        if ours != theirs {
            return Err(bad(format!(
                "it has model {:?}, seed {}, batch {}, {} rows; this one {:?}, {}, {}, {}",
                theirs.0, theirs.1, theirs.2, theirs.3, ours.0, ours.1, ours.2, ours.3
            )));
        }
        let c = file.checkpoint;
        if c.step > options.steps || c.losses.len() != c.step {
            return Err(bad(format!(
                "step {} with {} losses, of {} steps",
                c.step,
                c.losses.len(),
                options.steps
            )));
        }
        config
            .from_bytes::<model::Inner>(&c.model)
            .map_err(|e| bad(format!("its model does not load: {e}")))?;
        Ok(Some(c))
    }
}

/// A trained model and how the training went.
pub struct Trained {
    /// The model's shape.
    pub config: MlpConfig,
    /// The model ([`model::to_bytes`]).
    pub model: Vec<u8>,
    /// The loss of each step (of the batch it trained on).
    pub losses: Vec<f32>,
    /// Gang members of the attempt that finished (1: a single process).
    pub world: usize,
    /// Restarts after lost workers.
    pub restarts: usize,
    /// Wall time of the attempt that finished (seconds).
    pub seconds: f64,
    /// Per member of that attempt: seconds computing, seconds in the all-reduce.
    pub timings: Vec<(f64, f64)>,
}

impl Trained {
    /// The model's outputs for rows `x` (rows × inputs).
    pub fn predict(&self, x: ArrayView2<f64>) -> Result<Array2<f64>, DlError> {
        if x.ncols() != self.config.inputs {
            return Err(invalid(format!(
                "X has {} features, the model takes {}",
                x.ncols(),
                self.config.inputs
            )));
        }
        let m: Mlp<model::Inner> = self.config.from_bytes(&self.model).map_err(invalid)?;
        let n = x.nrows();
        let out = m.forward(model::rows(x.iter().map(|v| *v as f32).collect(), n));
        let values: Vec<f64> = out.into_data().iter::<f32>().map(f64::from).collect();
        Array2::from_shape_vec((n, self.config.outputs), values)
            .map_err(|e| invalid(format!("prediction shape: {e}")))
    }
}

/// Trains on one process, with the same row order and steps as [`train`]
/// on a cluster (the reference a cluster's loss curve is checked against).
pub fn train_local(
    x: ArrayView2<f64>,
    y: ArrayView2<f64>,
    config: &MlpConfig,
    mut options: TrainOptions<'_>,
) -> Result<Trained, DlError> {
    config.validate().map_err(invalid)?;
    options.check(x.nrows())?;
    if x.ncols() != config.inputs || y.ncols() != config.outputs || y.nrows() != x.nrows() {
        return Err(invalid(format!(
            "X is {:?} and y {:?}; the model takes {} inputs and {} outputs",
            x.shape(),
            y.shape(),
            config.inputs,
            config.outputs
        )));
    }
    let f32s = |a: ArrayView2<f64>| a.iter().map(|v| *v as f32).collect::<Vec<f32>>();
    let shard = run::Shard {
        blocks: vec![(0, f32s(x), f32s(y))],
        inputs: config.inputs,
        outputs: config.outputs,
    };
    let model = config.init::<model::Ad>(options.seed);
    let plan = plan_of(&options, x.nrows());
    let started = Instant::now();
    let mut losses = Vec::with_capacity(options.steps);
    let (model, timing) = run::train(model, config, &shard, &plan, 0, None, |t, loss, _| {
        losses.push(loss);
        if let Some(f) = options.on_step.as_mut() {
            f(t, loss);
        }
        Ok(())
    })
    .map_err(invalid)?;
    Ok(Trained {
        config: config.clone(),
        model: model::to_bytes(&model).map_err(invalid)?,
        losses,
        world: 1,
        restarts: 0,
        seconds: started.elapsed().as_secs_f64(),
        timings: vec![(timing.compute_s, timing.all_reduce_s)],
    })
}

fn plan_of(options: &TrainOptions<'_>, rows: usize) -> run::Plan {
    run::Plan {
        total_rows: rows,
        batch_size: options.batch_size,
        steps: options.steps,
        learning_rate: options.learning_rate,
        seed: options.seed,
    }
}

/// Trains on the cluster where `data` lives (see the module docs).
pub fn train(
    client: &Client,
    data: &TrainData,
    config: &MlpConfig,
    mut options: TrainOptions<'_>,
) -> Result<Trained, DlError> {
    config.validate().map_err(invalid)?;
    options.check(data.rows)?;
    if data.inputs != config.inputs || data.outputs != config.outputs {
        return Err(invalid(format!(
            "the data has {} features and {} targets; the model takes {} and {}",
            data.inputs, data.outputs, config.inputs, config.outputs
        )));
    }
    let host = client.reachable_host().map_err(|message| DlError::Cluster { message })?;
    let resumed = match &options.checkpoint_path {
        Some(path) => CheckpointFile::resume(path, config, &options, data.rows)?,
        None => None,
    };
    let mut resume = match resumed {
        Some(c) => c,
        None => {
            let start =
                model::to_bytes(&config.init::<model::Ad>(options.seed)).map_err(invalid)?;
            Checkpoint { step: 0, model: start, losses: Vec::new() }
        }
    };
    let mut restarts = 0;
    loop {
        match attempt(client, data, config, &mut options, &host, &resume, restarts) {
            Ok(mut trained) => {
                trained.restarts = restarts;
                return Ok(trained);
            }
            Err(Failed { error, worker_lost, checkpoint }) => {
                if let Some(c) = checkpoint {
                    resume = c;
                }
                if !(options.checkpoint_every.is_some()
                    && worker_lost
                    && restarts < options.max_restarts)
                {
                    return Err(error);
                }
                restarts += 1;
                tracing::warn!(
                    "dl::train: a worker was lost ({error}); restart {restarts} from step {}",
                    resume.step
                );
            }
        }
    }
}

struct Failed {
    error: DlError,
    worker_lost: bool,
    checkpoint: Option<Checkpoint>,
}

/// `host:port`, with brackets for an IPv6 host.
fn join_host(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn attempt(
    client: &Client,
    data: &TrainData,
    config: &MlpConfig,
    options: &mut TrainOptions<'_>,
    host: &str,
    resume: &Checkpoint,
    attempt_no: usize,
) -> Result<Trained, Failed> {
    let fail = |error: DlError| Failed { error, worker_lost: false, checkpoint: None };
    let workers: Vec<rask_distributed::WorkerInfo> = client
        .workers()
        .map_err(|e| fail(e.into()))?
        .into_iter()
        .filter(|w| w.status == "running")
        .collect();
    if workers.is_empty() {
        return Err(fail(DlError::Cluster { message: "no running worker".into() }));
    }
    let names: Vec<String> = workers.iter().map(|w| w.addr.clone()).collect();
    let ranks = plan::assign(&data.holders(client), &names);
    let world = ranks.len();
    let chosen: Vec<rask_distributed::WorkerInfo> = ranks
        .iter()
        .map(|(addr, _)| workers.iter().find(|w| &w.addr == addr).expect("assigned").clone())
        .collect();
    let timeout = Duration::from_secs(options.timeout_s);
    let ports = super::probe_ports(client, &chosen, false, timeout).map_err(fail)?;
    let ring: Vec<String> =
        chosen.iter().zip(&ports).map(|(w, p)| join_host(&super::host_of(&w.addr), p[0])).collect();
    let reports = report::Listener::<Checkpoint>::start(host)
        .map_err(|message| fail(DlError::Cluster { message }))?;
    let gang_id = format!("dl-train-{}-{attempt_no}", rask_core::key::unique_token().0);
    let secret = rask_core::key::unique_token().0.to_le_bytes();
    let members: Vec<GangMember<MemberResult>> = ranks
        .iter()
        .enumerate()
        .map(|(rank, (addr, blocks))| {
            let job = MemberJob {
                gang: gang_id.clone(),
                rank,
                ring: ring.clone(),
                secret,
                first_rows: blocks.iter().map(|&i| data.parts[i].first_row).collect(),
                config: config.clone(),
                model: resume.model.clone(),
                losses: resume.losses.clone(),
                start: resume.step,
                total_rows: data.rows,
                batch_size: options.batch_size,
                steps: options.steps,
                learning_rate: options.learning_rate,
                seed: options.seed,
                checkpoint_every: options.checkpoint_every,
                report: (rank == 0).then(|| reports.address()),
                timeout_s: options.timeout_s,
            };
            let xs: Vec<Delayed<Block>> =
                blocks.iter().map(|&i| data.parts[i].x.as_delayed()).collect();
            let ys: Vec<Delayed<Block>> =
                blocks.iter().map(|&i| data.parts[i].y.as_delayed()).collect();
            GangMember { task: member::dl_train_member(xs, ys, job), worker: Some(addr.clone()) }
        })
        .collect();
    let started = Instant::now();
    let futures = client.submit_gang(&gang_id, &members).map_err(|e| fail(e.into()))?;
    // The newest checkpoint, written to the checkpoint file as it arrives.
    let mut newest: Option<Checkpoint> = None;
    let mut pass_on = |options: &mut TrainOptions<'_>| -> Result<(), DlError> {
        for (step, line) in reports.take_lines() {
            if let (Some(f), Ok(loss)) = (options.on_step.as_mut(), line.parse::<f32>()) {
                f(step, loss);
            }
        }
        if let Some(c) = reports.take_checkpoint() {
            if let Some(path) = &options.checkpoint_path {
                CheckpointFile {
                    magic: CHECKPOINT_MAGIC.into(),
                    config: config.clone(),
                    seed: options.seed,
                    batch_size: options.batch_size,
                    rows: data.rows,
                    checkpoint: &c,
                }
                .write(path)?;
            }
            newest = Some(c);
        }
        Ok(())
    };
    while !futures.iter().all(|f| f.done()) {
        pass_on(options).map_err(fail)?;
        std::thread::sleep(Duration::from_millis(10));
    }
    pass_on(options).map_err(fail)?;
    let results: Vec<Result<MemberResult, DistError>> =
        futures.iter().map(Future::result).collect();
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        let killed = matches!(e, DistError::Task(f) if f.kind == rask_distributed::scheduler::FailureCause::KilledWorker);
        // A killed worker may surface first as its peer's ring error: ask
        // the scheduler whose workers are still there (giving it a moment
        // to notice the death when a restart depends on it).
        let patience = if killed || options.checkpoint_every.is_none() { 0 } else { 50 };
        let mut gone: Vec<String> = Vec::new();
        for i in 0..=patience {
            let live: Vec<String> = client
                .workers()
                .map(|ws| ws.into_iter().map(|w| w.addr).collect())
                .unwrap_or_default();
            gone = ranks.iter().map(|r| r.0.clone()).filter(|a| !live.contains(a)).collect();
            if !gone.is_empty() || i == patience {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let left = if gone.is_empty() {
            String::new()
        } else {
            format!(" (worker(s) {} left the cluster)", gone.join(", "))
        };
        let error = DlError::Cluster {
            message: format!(
                "training failed after {:.1} s: {e}{left}",
                started.elapsed().as_secs_f64()
            ),
        };
        return Err(Failed {
            error,
            worker_lost: killed || !gone.is_empty(),
            checkpoint: reports.take_checkpoint().or(newest),
        });
    }
    let seconds = started.elapsed().as_secs_f64();
    let results: Vec<MemberResult> = results.into_iter().map(|r| r.expect("checked")).collect();
    let timings = results.iter().map(|r| (r.compute_s, r.all_reduce_s)).collect();
    let first = results.into_iter().next().expect("a gang has a rank 0");
    Ok(Trained {
        config: config.clone(),
        model: first.model,
        losses: first.losses,
        world,
        restarts: 0,
        seconds,
        timings,
    })
}
