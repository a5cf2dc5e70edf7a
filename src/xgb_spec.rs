//! `rask xgb --spec xgb.toml`: train XGBoost without code.
//!
//! ```toml
//! [data]
//! x = "X.npy"            # a .npy file, a folder or a glob of chunk files
//! y = "y.npy"
//! eval_x = "Xv.npy"      # optional evaluation set (early stopping watches it)
//! eval_y = "yv.npy"
//!
//! [params]               # XGBoost's own parameter names, passed to libxgboost
//! objective = "binary:logistic"
//! tree_method = "hist"
//! max_depth = 6
//! eta = 0.3
//! eval_metric = ["logloss", "auc"]   # the last one is the one early stopping watches
//!
//! [train]
//! rounds = 100
//! early_stopping_rounds = 10   # optional; needs eval_x and eval_y
//! scheduler = "local:2"        # optional: "local:N" or "host:port" trains on a
//!                              # cluster (one XGBoost gang member per worker
//!                              # holding data); absent, "sync" or "threads": here
//! checkpoint_every = 10        # optional, on a cluster: restart from the last
//!                              # checkpoint when a worker dies
//!
//! [output]
//! dir = "xgb-results"    # model.json, XGBoost's JSON (Python's xgboost loads it)
//! ```
//!
//! Without a cluster, training runs in this process.
//! Strict like every spec: unknown keys and wrongly typed values are errors
//! naming the key; XGBoost's own errors name the parameter.

use std::path::{Path, PathBuf};

use rask_core::array::Array;

use crate::glm_spec::array;
use crate::spec::{scheduler_spec, table, Ctx, SchedulerSpec, SpecError};

/// A parsed `rask xgb` spec.
pub struct XgbSpec {
    /// Features.
    pub x: Array<f64>,
    /// Labels.
    pub y: Array<f64>,
    /// The evaluation set, if any.
    pub eval: Option<(Array<f64>, Array<f64>)>,
    /// XGBoost parameters, in order (a list gives one entry per value).
    pub params: Vec<(String, String)>,
    /// Boosting rounds.
    pub rounds: usize,
    /// Stop when the watched metric has not improved for this many rounds.
    pub early_stopping_rounds: Option<usize>,
    /// Where to train: a cluster (`local:N`, an address) or this process.
    pub scheduler: SchedulerSpec,
    /// Checkpoint interval on a cluster.
    pub checkpoint_every: Option<usize>,
    /// Output folder.
    pub out_dir: PathBuf,
}

/// A TOML value as XGBoost's parameter string.
fn param_value(ctx: &Ctx<'_>, key: &str, v: &toml::Value) -> Result<Vec<String>, SpecError> {
    Ok(match v {
        toml::Value::String(s) => vec![s.clone()],
        toml::Value::Integer(i) => vec![i.to_string()],
        toml::Value::Float(f) => vec![f.to_string()],
        toml::Value::Boolean(b) => vec![u8::from(*b).to_string()],
        toml::Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                if matches!(item, toml::Value::Array(_) | toml::Value::Table(_)) {
                    return Err(ctx.err(key, "a list of plain values expected"));
                }
                out.extend(param_value(ctx, key, item)?);
            }
            out
        }
        _ => return Err(ctx.err(key, "a string, number, boolean or list of them expected")),
    })
}

/// Reads and checks a `rask xgb` spec.
pub fn load(path: &Path) -> Result<XgbSpec, SpecError> {
    let file = path.display().to_string();
    let base = path.parent().unwrap_or(Path::new("."));
    let ctx = Ctx { file: &file, base };
    let root = ctx.read(path)?;
    ctx.keys(&root, "", &["data", "params", "train", "output"])?;
    let empty = toml::Table::new();

    let data = table(&ctx, &root, "data")?
        .ok_or_else(|| ctx.err("data", "missing: give x and y (.npy files or chunk folders)"))?;
    ctx.keys(data, "data", &["x", "y", "eval_x", "eval_y"])?;
    let rows = 100_000;
    let x = array(&ctx, "data.x", ctx.str(data, "x", "data")?, 2, rows)?;
    let y = array(&ctx, "data.y", ctx.str(data, "y", "data")?, 1, rows)?;
    if x.shape()[0] != y.shape()[0] {
        return Err(ctx.err("data.y", format!("{} rows, but x has {}", y.shape()[0], x.shape()[0])));
    }
    let eval = match (ctx.opt_str(data, "eval_x", "data")?, ctx.opt_str(data, "eval_y", "data")?) {
        (Some(ex), Some(ey)) => {
            let ex = array(&ctx, "data.eval_x", ex, 2, rows)?;
            let ey = array(&ctx, "data.eval_y", ey, 1, rows)?;
            if ex.shape()[1] != x.shape()[1] || ex.shape()[0] != ey.shape()[0] {
                return Err(ctx.err(
                    "data.eval_x",
                    format!(
                        "shape {:?} with eval_y {:?}, but x is {:?}",
                        ex.shape(),
                        ey.shape(),
                        x.shape()
                    ),
                ));
            }
            Some((ex, ey))
        }
        (None, None) => None,
        _ => return Err(ctx.err("data", "give both eval_x and eval_y, or neither")),
    };

    let p = table(&ctx, &root, "params")?.unwrap_or(&empty);
    let mut params = Vec::new();
    for (k, v) in p {
        for value in param_value(&ctx, &format!("params.{k}"), v)? {
            params.push((k.clone(), value));
        }
    }

    let t = table(&ctx, &root, "train")?.unwrap_or(&empty);
    ctx.keys(t, "train", &["rounds", "early_stopping_rounds", "scheduler", "checkpoint_every"])?;
    let scheduler = scheduler_spec(&ctx, t.get("scheduler"), "train.scheduler")?;
    let on_cluster = matches!(scheduler, SchedulerSpec::Local(_) | SchedulerSpec::Address(_));
    let checkpoint_every = match ctx.opt_int(t, "checkpoint_every", "train")? {
        None => None,
        Some(_) if !on_cluster => {
            return Err(ctx.err(
                "train.checkpoint_every",
                "checkpoints guard training on a cluster: set train.scheduler to \"local:N\" or host:port",
            ))
        }
        Some(n) if n >= 1 => Some(n as usize),
        Some(_) => return Err(ctx.err("train.checkpoint_every", "expected an integer >= 1")),
    };
    let rounds = match ctx.opt_int(t, "rounds", "train")? {
        None => 100,
        Some(n) if n >= 1 => n as usize,
        Some(_) => return Err(ctx.err("train.rounds", "expected an integer >= 1")),
    };
    let early_stopping_rounds = match ctx.opt_int(t, "early_stopping_rounds", "train")? {
        None => None,
        Some(_) if eval.is_none() => {
            return Err(ctx.err(
                "train.early_stopping_rounds",
                "early stopping watches the evaluation set: give data.eval_x and data.eval_y",
            ))
        }
        Some(n) if n >= 1 => Some(n as usize),
        Some(_) => return Err(ctx.err("train.early_stopping_rounds", "expected an integer >= 1")),
    };

    let o = table(&ctx, &root, "output")?.unwrap_or(&empty);
    ctx.keys(o, "output", &["dir"])?;
    let out_dir = ctx.path(ctx.opt_str(o, "dir", "output")?.unwrap_or("xgb-results"));
    Ok(XgbSpec {
        x,
        y,
        eval,
        params,
        rounds,
        early_stopping_rounds,
        scheduler,
        checkpoint_every,
        out_dir,
    })
}
