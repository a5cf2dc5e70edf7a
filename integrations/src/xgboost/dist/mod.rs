//! Distributed training on a Rask cluster, where the data already lives.
//!
//! Data flow of [`train_with`]:
//! 1. [`DistDMatrix::new`] submits the row blocks of X, y (and weights,
//!    margins) and keeps their futures: the blocks stay on the workers that
//!    made them.
//! 2. [`plan::assign`] gives each worker the blocks it holds, then moves
//!    blocks from the most to the least loaded worker (by bytes) while that
//!    lowers the maximum. Workers left without a block are not in the gang,
//!    so no member ever builds an empty matrix.
//! 3. XGBoost's tracker starts in this process; one gang member per worker
//!    (pinned there, its blocks as inputs: moved blocks are fetched by the
//!    worker) joins it with task id = its rank, builds a quantile DMatrix by
//!    iterating over its blocks in place, and boosts. Metrics are
//!    all-reduced by XGBoost, so every rank sees the same line and stops
//!    early at the same round.
//! 4. Rank 0 streams each round's line (and, every `checkpoint_every`
//!    rounds, the model) to this process over a TCP connection; the client
//!    returns rank 0's model.
//! 5. The gang fails as a unit (the scheduler cancels the other members at
//!    once), so a dead worker is an error within a bounded time; with
//!    checkpoints, training restarts from the last one on the survivors.

mod member;

pub use crate::gang::plan;
use crate::gang::report;

use std::time::{Duration, Instant};

use rask_core::array::{Array, Block, ChunkSpec};
use rask_core::Delayed;
use rask_distributed::{Client, DistError, Future, GangMember};

use super::ffi::Booster;
use super::XgbError;
pub use member::{Checkpoint, MemberJob, MemberResult};

fn dist_err(e: DistError) -> XgbError {
    XgbError::Cluster { message: e.to_string() }
}

/// One row block of a [`DistDMatrix`], as futures on the cluster.
struct Part {
    x: Future<Block>,
    label: Future<Block>,
    weight: Option<Future<Block>>,
    margin: Option<Future<Block>>,
    rows: usize,
    first_row: usize,
}

/// Training or evaluation rows held by a cluster's workers, block by block
/// (the arrays' row chunks). Built once, used by any number of trainings.
pub struct DistDMatrix {
    parts: Vec<Part>,
    cols: usize,
    rows: usize,
}

impl DistDMatrix {
    /// X (rows × features) and labels, chunked by rows.
    pub fn new(client: &Client, x: &Array<f64>, label: &Array<f64>) -> Result<Self, XgbError> {
        Self::with_info(client, x, label, None, None)
    }

    /// Also per-row weights and base margins (`rows` or `rows × k`). Each
    /// array is rechunked to X's row chunks; the blocks are computed on the
    /// cluster now and stay there.
    pub fn with_info(
        client: &Client,
        x: &Array<f64>,
        label: &Array<f64>,
        weight: Option<&Array<f64>>,
        base_margin: Option<&Array<f64>>,
    ) -> Result<Self, XgbError> {
        let shape_err =
            |name: &str, message: String| XgbError::Param { name: name.into(), message };
        if x.ndim() != 2 {
            return Err(shape_err("X", format!("shape {:?}; X must be 2-D", x.shape())));
        }
        let (rows, cols) = (x.shape()[0], x.shape()[1]);
        if rows == 0 || cols == 0 {
            return Err(shape_err("X", format!("shape {:?}: no rows or no features", x.shape())));
        }
        let row_chunks = x.chunks()[0].clone();
        let x = x
            .rechunk(ChunkSpec::Explicit(vec![row_chunks.clone(), vec![cols]]))
            .map_err(|e| shape_err("X", e.to_string()))?;
        let by_rows = |name: &str, a: &Array<f64>| -> Result<Array<f64>, XgbError> {
            if a.shape()[0] != rows || a.ndim() > 2 {
                return Err(shape_err(
                    name,
                    format!("shape {:?} for X's {rows} rows (X/{name} row mismatch)", a.shape()),
                ));
            }
            let mut spec = vec![row_chunks.clone()];
            if a.ndim() == 2 {
                spec.push(vec![a.shape()[1]]);
            }
            a.rechunk(ChunkSpec::Explicit(spec)).map_err(|e| shape_err(name, e.to_string()))
        };
        if label.ndim() != 1 {
            return Err(shape_err("label", format!("shape {:?}; labels are 1-D", label.shape())));
        }
        let label = by_rows("label", label)?;
        let weight = weight.map(|w| by_rows("weight", w)).transpose()?;
        let margin = base_margin.map(|m| by_rows("base_margin", m)).transpose()?;
        let column =
            |a: &Array<f64>| -> Vec<Delayed<Block>> { a.blocks().iter().cloned().collect() };
        let (xb, lb) = (column(&x), column(&label));
        let wb = weight.as_ref().map(column);
        let mb = margin.as_ref().map(column);
        // One submission for every block (one round trip), then one wait.
        let kept: Vec<usize> = (0..row_chunks.len()).filter(|&i| row_chunks[i] > 0).collect();
        let mut all: Vec<Delayed<Block>> = Vec::new();
        for &i in &kept {
            all.push(xb[i].clone());
            all.push(lb[i].clone());
            all.extend(wb.as_ref().map(|w| w[i].clone()));
            all.extend(mb.as_ref().map(|m| m[i].clone()));
        }
        let futures = client.map(&all).map_err(dist_err)?;
        client.wait(&futures).map_err(dist_err)?;
        for f in &futures {
            if client.who_has(f).is_none() {
                // Failed: its result says why.
                f.result().map_err(dist_err)?;
            }
        }
        let mut futures = futures.into_iter();
        let mut next = || futures.next().expect("one future per submitted block");
        let mut parts = Vec::with_capacity(kept.len());
        for &i in &kept {
            parts.push(Part {
                x: next(),
                label: next(),
                weight: wb.as_ref().map(|_| next()),
                margin: mb.as_ref().map(|_| next()),
                rows: row_chunks[i],
                first_row: row_chunks[..i].iter().sum(),
            });
        }
        Ok(DistDMatrix { parts, cols, rows })
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row blocks.
    pub fn npartitions(&self) -> usize {
        self.parts.len()
    }

    /// Each block's holder (`None` while it is being recomputed) and bytes.
    fn holders(&self, client: &Client) -> Vec<(Option<String>, u64)> {
        crate::gang::holders(
            client,
            self.parts.iter().map(|p| (&p.x, (p.rows * self.cols * 8) as u64)),
        )
    }
}

/// A callback on each round's evaluation line: `(round, line)`.
pub type OnRound<'a> = Box<dyn FnMut(usize, &str) + 'a>;

/// Options of [`train_with`] beyond XGBoost's own parameters.
pub struct TrainOptions<'a> {
    /// Boosting rounds.
    pub rounds: usize,
    /// Evaluation sets and their names (the last one's last metric is
    /// watched by early stopping).
    pub evals: Vec<(&'a DistDMatrix, String)>,
    /// Stop after this many rounds without improvement.
    pub early_stopping_rounds: Option<usize>,
    /// Send the model to this process every k rounds; when a worker dies,
    /// training restarts from the last checkpoint on the survivors.
    pub checkpoint_every: Option<usize>,
    /// Restarts allowed (with `checkpoint_every`).
    pub max_restarts: usize,
    /// Bounds XGBoost's network waits inside the gang (bootstrap, a silent
    /// peer), in seconds.
    pub timeout_s: u64,
    /// Called with each round's evaluation line as rank 0 reports it.
    pub on_round: Option<OnRound<'a>>,
}

impl Default for TrainOptions<'_> {
    fn default() -> Self {
        TrainOptions {
            rounds: 10,
            evals: Vec::new(),
            early_stopping_rounds: None,
            checkpoint_every: None,
            max_restarts: 3,
            timeout_s: 120,
            on_round: None,
        }
    }
}

/// The outcome of a distributed training.
pub struct DistTrained {
    /// The model (after an early stop, the rounds up to the best one).
    pub booster: Booster,
    /// The last round's evaluation line.
    pub last_eval: String,
    /// After an early stop: the round it stopped at, the best round, the metric and its value.
    pub early_stop: Option<(usize, usize, String, f64)>,
    /// Gang members of the attempt that finished.
    pub ranks: usize,
    /// Restarts after lost workers.
    pub restarts: usize,
}

impl DistTrained {
    /// The model for predictions, locally or over chunked arrays on the
    /// workers (`predict_chunked`: one task per row block, no tracker).
    /// `classes` are the labels of a classifier's outputs (`None`: XGBoost's
    /// own values, e.g. probabilities of `binary:logistic`).
    pub fn fitted(&self, classes: Option<Vec<f64>>) -> Result<super::FittedXgb, XgbError> {
        Ok(super::FittedXgb {
            model: self.booster.save("ubj")?,
            classes,
            n_features: self.booster.num_features()?,
        })
    }
}

/// Distributed training with xgboost.dask's signature: `params` as XGBoost
/// names them, `rounds`, evaluation sets, early stopping.
pub fn train(
    client: &Client,
    params: &[(String, String)],
    dtrain: &DistDMatrix,
    rounds: usize,
    evals: &[(&DistDMatrix, &str)],
    early_stopping_rounds: Option<usize>,
) -> Result<DistTrained, XgbError> {
    let options = TrainOptions {
        rounds,
        evals: evals.iter().map(|(d, n)| (*d, n.to_string())).collect(),
        early_stopping_rounds,
        ..TrainOptions::default()
    };
    train_with(client, params, dtrain, options)
}

/// Distributed training (see the module docs for the data flow).
pub fn train_with(
    client: &Client,
    params: &[(String, String)],
    dtrain: &DistDMatrix,
    mut options: TrainOptions<'_>,
) -> Result<DistTrained, XgbError> {
    for (d, name) in &options.evals {
        if d.cols != dtrain.cols {
            return Err(XgbError::Param {
                name: format!("evals[{name}]"),
                message: format!("{} features, the training data has {}", d.cols, dtrain.cols),
            });
        }
    }
    if options.checkpoint_every == Some(0) {
        return Err(XgbError::Param {
            name: "checkpoint_every".into(),
            message: "must be at least 1".into(),
        });
    }
    let host = client.reachable_host().map_err(|message| XgbError::Cluster { message })?;
    let mut resume: Option<Checkpoint> = None;
    let mut restarts = 0;
    loop {
        match attempt(client, params, dtrain, &mut options, &host, resume.clone(), restarts) {
            Ok(mut trained) => {
                trained.restarts = restarts;
                return Ok(trained);
            }
            Err(Failed { error, worker_lost, checkpoint }) => {
                if checkpoint.is_some() {
                    resume = checkpoint;
                }
                let can_restart = options.checkpoint_every.is_some()
                    && worker_lost
                    && restarts < options.max_restarts;
                if !can_restart {
                    return Err(error);
                }
                restarts += 1;
                tracing::warn!(
                    "xgboost: a worker was lost ({error}); restart {restarts} from round {}",
                    resume.as_ref().map_or(0, |c| c.rounds_done)
                );
            }
        }
    }
}

struct Failed {
    error: XgbError,
    worker_lost: bool,
    checkpoint: Option<Checkpoint>,
}

fn attempt(
    client: &Client,
    params: &[(String, String)],
    dtrain: &DistDMatrix,
    options: &mut TrainOptions<'_>,
    host: &str,
    resume: Option<Checkpoint>,
    attempt_no: usize,
) -> Result<DistTrained, Failed> {
    let fail = |error: XgbError| Failed { error, worker_lost: false, checkpoint: None };
    let workers: Vec<(String, u32)> = client
        .workers()
        .map_err(|e| fail(dist_err(e)))?
        .into_iter()
        .filter(|w| w.status == "running")
        .map(|w| (w.addr, w.nthreads))
        .collect();
    if workers.is_empty() {
        return Err(fail(XgbError::Cluster { message: "no running worker".into() }));
    }
    let names: Vec<String> = workers.iter().map(|(a, _)| a.clone()).collect();
    let ranks = plan::assign(&dtrain.holders(client), &names);
    let world = ranks.len();
    // Evaluation blocks go to the same ranks, spread by bytes; the training
    // set as an evaluation set is the training matrix itself.
    let is_train: Vec<bool> = options.evals.iter().map(|(d, _)| std::ptr::eq(*d, dtrain)).collect();
    let rank_addrs: Vec<String> = ranks.iter().map(|r| r.0.clone()).collect();
    // Per evaluation set and rank: (block, rows of it) to evaluate. With
    // fewer blocks than ranks, every rank takes its share of every block's
    // rows instead, so no rank evaluates an empty matrix.
    type Share = Vec<(usize, Option<(usize, usize)>)>;
    let mut eval_ranks: Vec<Vec<Share>> = Vec::with_capacity(options.evals.len());
    for ((d, name), &same) in options.evals.iter().zip(&is_train) {
        if same {
            eval_ranks.push(vec![Vec::new(); world]);
            continue;
        }
        let spread = plan::spread(&d.holders(client), &rank_addrs);
        if spread.iter().all(|b| !b.is_empty()) {
            eval_ranks.push(
                spread.into_iter().map(|b| b.into_iter().map(|i| (i, None)).collect()).collect(),
            );
            continue;
        }
        let shares: Vec<Share> = (0..world)
            .map(|r| {
                d.parts
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (i, (p.rows * r / world, p.rows * (r + 1) / world)))
                    .filter(|(_, (a, b))| b > a)
                    .map(|(i, range)| (i, Some(range)))
                    .collect()
            })
            .collect();
        if let Some(r) = shares.iter().position(Vec::is_empty) {
            return Err(fail(XgbError::Param {
                name: format!("evals[{name}]"),
                message: format!(
                    "{} rows cannot be shared by {world} gang members (rank {r} would have none)",
                    d.rows
                ),
            }));
        }
        eval_ranks.push(shares);
    }
    let (tracker, port) =
        super::ffi::Tracker::start(host, world, options.timeout_s).map_err(fail)?;
    let uri = host.to_string();
    let reports = report::Listener::<Checkpoint>::start(host)
        .map_err(|message| fail(XgbError::Cluster { message }))?;
    let gang_id = format!("xgboost-{}-{attempt_no}", rask_core::key::unique_token().0);
    let mut members = Vec::with_capacity(world);
    for (rank, (addr, blocks)) in ranks.iter().enumerate() {
        let nthread = workers.iter().find(|(a, _)| a == addr).map_or(1, |w| w.1.max(1) as usize);
        let mut sets: Vec<(&DistDMatrix, Share)> =
            vec![(dtrain, blocks.iter().map(|&i| (i, None)).collect())];
        for (e, (d, _)) in options.evals.iter().enumerate() {
            sets.push((d, eval_ranks[e][rank].clone()));
        }
        let pick = |f: &dyn Fn(&Part) -> Option<&Future<Block>>| -> Vec<Delayed<Block>> {
            sets.iter()
                .flat_map(|(d, share)| {
                    share.iter().filter_map(|&(i, _)| f(&d.parts[i]).map(Future::as_delayed))
                })
                .collect()
        };
        let job = MemberJob {
            gang: gang_id.clone(),
            tracker_uri: uri.clone(),
            tracker_port: port,
            rank,
            world,
            params: params.to_vec(),
            nthread,
            rounds: options.rounds,
            early_stopping: options.early_stopping_rounds,
            counts: sets.iter().map(|(_, idx)| idx.len()).collect(),
            eval_names: options.evals.iter().map(|(_, n)| n.clone()).collect(),
            eval_is_train: is_train.clone(),
            first_rows: sets
                .iter()
                .flat_map(|(d, share)| share.iter().map(|&(i, _)| d.parts[i].first_row))
                .collect(),
            ranges: sets.iter().flat_map(|(_, share)| share.iter().map(|&(_, r)| r)).collect(),
            has_weight: sets.iter().all(|(d, _)| d.parts.iter().all(|p| p.weight.is_some())),
            has_margin: sets.iter().all(|(d, _)| d.parts.iter().all(|p| p.margin.is_some())),
            resume: resume.clone(),
            checkpoint_every: options.checkpoint_every,
            report: (rank == 0).then(|| reports.address()),
            timeout_s: options.timeout_s,
        };
        let task = member::xgb_gang_train(
            pick(&|p| Some(&p.x)),
            pick(&|p| Some(&p.label)),
            if job.has_weight { pick(&|p| p.weight.as_ref()) } else { Vec::new() },
            if job.has_margin { pick(&|p| p.margin.as_ref()) } else { Vec::new() },
            job,
        );
        members.push(GangMember { task, worker: Some(addr.clone()) });
    }
    let futures = client.submit_gang(&gang_id, &members).map_err(|e| fail(dist_err(e)))?;
    // Wait for the gang, passing rank 0's lines on as they come.
    let started = Instant::now();
    loop {
        for (round, line) in reports.take_lines() {
            if let Some(f) = options.on_round.as_mut() {
                f(round, &line);
            }
        }
        if futures.iter().all(|f| f.done()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for (round, line) in reports.take_lines() {
        if let Some(f) = options.on_round.as_mut() {
            f(round, &line);
        }
    }
    let results: Vec<Result<MemberResult, DistError>> =
        futures.iter().map(Future::result).collect();
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        let message = e.to_string();
        let killed = matches!(e, DistError::Task(f) if f.kind == rask_distributed::scheduler::FailureCause::KilledWorker);
        // A killed worker may surface first as its peer's network error: ask
        // the scheduler which members' workers are still there (when a
        // restart depends on it, give it a moment to notice the death).
        let patience = if killed || options.checkpoint_every.is_none() { 0 } else { 20 };
        let mut gone: Vec<&String> = Vec::new();
        for i in 0..=patience {
            let live =
                client.workers().map(|ws| ws.into_iter().map(|w| w.addr).collect::<Vec<_>>());
            let live = live.unwrap_or_default();
            gone = ranks.iter().map(|r| &r.0).filter(|a| !live.contains(a)).collect();
            if !gone.is_empty() || i == patience {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // The tracker may wait for members that will never say goodbye:
        // free it off this thread.
        std::thread::spawn(move || drop(tracker));
        let lost = killed || !gone.is_empty();
        let error = XgbError::Cluster {
            message: format!(
                "distributed training failed after {:.1} s: {message}{}",
                started.elapsed().as_secs_f64(),
                if gone.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (worker(s) {} left the cluster)",
                        gone.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                    )
                }
            ),
        };
        return Err(Failed { error, worker_lost: lost, checkpoint: reports.take_checkpoint() });
    }
    let _ = tracker.wait(options.timeout_s);
    std::thread::spawn(move || drop(tracker));
    let first = results.into_iter().next().expect("a gang has a rank 0");
    let first = first.map_err(|e| fail(dist_err(e)))?;
    let booster = Booster::load(&first.model).map_err(fail)?;
    Ok(DistTrained {
        booster,
        last_eval: first.last_eval,
        early_stop: first.early_stop,
        ranks: world,
        restarts: 0,
    })
}
