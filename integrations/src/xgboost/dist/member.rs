//! One gang member, as it runs on a worker: join XGBoost's collective,
//! build the quantile DMatrix over the local blocks in place, boost.

use std::borrow::Cow;

use rask_core::array::{Block, BlockData};
use serde::{Deserialize, Serialize};

use crate::gang::report::Reporter;
use crate::xgboost::ffi::{Batch, Communicator, DMatrix};
use crate::xgboost::train::{boost, new_booster, Best};

/// The model after `rounds_done` rounds, and early stopping's state then.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Rounds in `model`.
    pub rounds_done: usize,
    /// The booster as UBJSON.
    pub model: Vec<u8>,
    /// The best round so far, its metric and value.
    pub best: Best,
}

/// What one member is told (everything but its blocks).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberJob {
    /// The gang's id (each attempt has its own).
    pub gang: String,
    /// XGBoost's tracker.
    pub tracker_uri: String,
    /// Its port.
    pub tracker_port: u16,
    /// This member's rank; its XGBoost task id, so the tracker ranks it the same.
    pub rank: usize,
    /// Members.
    pub world: usize,
    /// XGBoost's parameters.
    pub params: Vec<(String, String)>,
    /// Threads of this worker (XGBoost's `nthread` unless the params set it).
    pub nthread: usize,
    /// Boosting rounds in all.
    pub rounds: usize,
    /// Early-stopping patience.
    pub early_stopping: Option<usize>,
    /// Blocks per set: training first, then each evaluation set.
    pub counts: Vec<usize>,
    /// Names of the evaluation sets.
    pub eval_names: Vec<String>,
    /// Which evaluation sets are the training set (they pass no blocks and
    /// evaluate the training matrix itself).
    pub eval_is_train: Vec<bool>,
    /// Each block's first row in its set (for messages).
    pub first_rows: Vec<usize>,
    /// The rows of each block to use (`None`: all of them).
    pub ranges: Vec<Option<(usize, usize)>>,
    /// Whether weights are passed (one block per X block).
    pub has_weight: bool,
    /// Whether base margins are passed.
    pub has_margin: bool,
    /// Continue from this checkpoint.
    pub resume: Option<Checkpoint>,
    /// Send a checkpoint every k rounds (rank 0).
    pub checkpoint_every: Option<usize>,
    /// The client's progress listener and its nonce (rank 0 only).
    pub report: Option<(String, [u8; 16])>,
    /// Bounds XGBoost's network waits (seconds).
    pub timeout_s: u64,
}

/// What a member returns (the model only from rank 0).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberResult {
    /// The booster as UBJSON (rank 0), else empty.
    pub model: Vec<u8>,
    /// The last evaluation line.
    pub last_eval: String,
    /// After an early stop: stopped at, best round, metric, value.
    pub early_stop: Option<(usize, usize, String, f64)>,
}

rask_core::op! {
    /// One member of a distributed XGBoost gang (see `xgboost::dist`).
    pub fn xgb_gang_train(xs: Vec<Block>, labels: Vec<Block>, weights: Vec<Block>, margins: Vec<Block>, job: MemberJob) -> Result<MemberResult, String> {
        run(&xs, &labels, &weights, &margins, &job)
    }
}

/// Row-major values (borrowed when the block is contiguous) and their shape.
type Values<'a> = (Cow<'a, [f64]>, Vec<usize>);

/// A block's values, row-major: borrowed when the block is contiguous.
fn values<'a>(b: &'a Block, what: &str, ndim: &[usize]) -> Result<Values<'a>, String> {
    match b.data() {
        BlockData::F64(a) => {
            if !ndim.contains(&a.ndim()) {
                return Err(format!("{what} block of shape {:?}", a.shape()));
            }
            let v = match a.as_slice() {
                Some(s) => Cow::Borrowed(s),
                None => Cow::Owned(a.iter().copied().collect()),
            };
            Ok((v, a.shape().to_vec()))
        }
        other => Err(format!("{what} block holds {} data, float64 expected", other.dtype())),
    }
}

fn run<'a>(
    xs: &'a [Block],
    labels: &'a [Block],
    weights: &'a [Block],
    margins: &'a [Block],
    job: &MemberJob,
) -> Result<MemberResult, String> {
    let n: usize = job.counts.iter().sum();
    let bad = |what: &str, got: usize| {
        format!("gang member {}: {got} {what} blocks for {n} X blocks", job.rank)
    };
    if xs.len() != n || job.first_rows.len() != n || job.ranges.len() != n {
        return Err(bad("X", xs.len()));
    }
    if labels.len() != n {
        return Err(bad("label", labels.len()));
    }
    if job.has_weight && weights.len() != n {
        return Err(bad("weight", weights.len()));
    }
    if job.has_margin && margins.len() != n {
        return Err(bad("base_margin", margins.len()));
    }
    let take =
        |blocks: &'a [Block], what: &str, ndim: &[usize]| -> Result<Vec<Values<'a>>, String> {
            blocks.iter().map(|b| values(b, what, ndim)).collect()
        };
    let x = take(xs, "X", &[2])?;
    let y = take(labels, "label", &[1])?;
    let w = take(weights, "weight", &[1])?;
    let m = take(margins, "base_margin", &[1, 2])?;
    let set_name = |i: usize| -> String {
        let mut acc = 0;
        for (s, &c) in job.counts.iter().enumerate() {
            acc += c;
            if i < acc {
                return if s == 0 {
                    "training set".into()
                } else {
                    format!("evaluation set `{}`", job.eval_names[s - 1])
                };
            }
        }
        "?".into()
    };
    let mut batches = Vec::with_capacity(n);
    for i in 0..n {
        let (rows, cols) = (x[i].1[0], x[i].1[1]);
        let label = &y[i].0;
        if label.len() != rows {
            return Err(format!(
                "{}: a block of {rows} rows has {} labels (X/y row mismatch)",
                set_name(i),
                label.len()
            ));
        }
        let (a, b) = job.ranges[i].unwrap_or((0, rows));
        if a >= b || b > rows {
            return Err(format!("{}: rows {a}..{b} of a block of {rows}", set_name(i)));
        }
        let label = &label[a..b];
        if let Some(r) = label.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "{}: the label of row {} is {} (labels must be finite)",
                set_name(i),
                job.first_rows[i] + a + r,
                label[r]
            ));
        }
        fn per_row(v: &[f64], rows: usize, a: usize, b: usize) -> &[f64] {
            let k = v.len() / rows.max(1);
            &v[a * k..b * k]
        }
        batches.push(Batch {
            x: &x[i].0[a * cols..b * cols],
            rows: b - a,
            cols,
            label: Some(label),
            weight: w.get(i).map(|v| per_row(&v.0, rows, a, b)),
            base_margin: m.get(i).map(|v| per_row(&v.0, rows, a, b)),
        });
    }
    let param = |name: &str| job.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let max_bin: usize = param("max_bin")
        .map_or(Ok(256), str::parse)
        .map_err(|e| format!("xgboost parameter `max_bin`: {e}"))?;
    let nthread = param("nthread").and_then(|v| v.parse().ok()).unwrap_or(job.nthread);
    let err = |e: crate::xgboost::XgbError| e.to_string();

    let comm = Communicator::join(
        &job.tracker_uri,
        job.tracker_port,
        &format!("{:08}", job.rank),
        job.timeout_s,
    )
    .map_err(err)?;
    if comm.rank() != job.rank || comm.world_size() != job.world {
        return Err(format!(
            "XGBoost ranked this member {} of {} (expected {} of {})",
            comm.rank(),
            comm.world_size(),
            job.rank,
            job.world
        ));
    }
    let mut sets: Vec<Option<DMatrix>> = Vec::with_capacity(job.counts.len());
    let mut start = 0;
    for (s, &c) in job.counts.iter().enumerate() {
        if s > 0 && job.eval_is_train.get(s - 1).copied().unwrap_or(false) {
            sets.push(None);
            continue;
        }
        let reference = if s == 0 { None } else { sets[0].as_ref() };
        let d = DMatrix::quantile(&batches[start..start + c], reference, max_bin, nthread)
            .map_err(err)?;
        sets.push(Some(d));
        start += c;
    }
    let dtrain = sets[0].as_ref().expect("the training set is built first");
    let evals: Vec<(&DMatrix, &str)> = sets[1..]
        .iter()
        .zip(&job.eval_names)
        .map(|(d, n)| (d.as_ref().unwrap_or(dtrain), n.as_str()))
        .collect();
    let mut params = job.params.clone();
    if param("nthread").is_none() {
        params.push(("nthread".into(), nthread.to_string()));
    }
    let mut booster = new_booster(dtrain, &evals, &params).map_err(err)?;
    let (first, best) = match &job.resume {
        Some(c) => {
            booster.load_model(&c.model).map_err(err)?;
            (c.rounds_done, c.best.clone())
        }
        None => (0, None),
    };
    let mut reporter =
        job.report.as_ref().filter(|_| job.rank == 0).map(|(a, nonce)| Reporter::connect(a, nonce));
    let trained = boost(
        booster,
        dtrain,
        &evals,
        first..job.rounds,
        job.early_stopping,
        best,
        |round, line, b, best| {
            if let Some(r) = reporter.as_mut() {
                r.round(round, line);
                let done = round + 1;
                if job.checkpoint_every.is_some_and(|k| done % k == 0) && done < job.rounds {
                    r.checkpoint(&Checkpoint {
                        rounds_done: done,
                        model: b.save("ubj")?,
                        best: best.clone(),
                    });
                }
            }
            Ok(())
        },
    )
    .map_err(err)?;
    let model = if job.rank == 0 { trained.booster.save("ubj").map_err(err)? } else { Vec::new() };
    drop(trained.booster);
    drop(evals);
    drop(sets);
    drop(comm);
    Ok(MemberResult { model, last_eval: trained.last_eval, early_stop: trained.early_stop })
}
