//! `rask search --spec spec.toml`: a grid or randomized search without code.
//!
//! ```toml
//! [data]                      # .npy files, or csv = "file.csv" with target = "column"
//! x = "X.npy"
//! y = "y.npy"
//!
//! [[steps]]                   # the pipeline, in order
//! name = "scaler"
//! type = "StandardScaler"
//! [[steps]]
//! name = "logreg"
//! type = "LogisticRegression"
//! params = { max_iter = 1000 }   # fixed parameters
//!
//! [grid]                      # or [[grids]] (several), or [distributions] with search.kind = "random"
//! logreg__C = [0.01, 0.1, 1.0]
//!
//! [search]
//! cv = 5                      # or { splitter = "kfold" | "stratified" | "shuffle", n_splits, shuffle, random_state, test_size }
//! scoring = ["accuracy"]
//! refit = true                # or false, or a scorer name
//! error_score = "nan"         # or "raise", or a number
//! scheduler = "threads"       # "sync", "local:N" (a LocalCluster of N workers), or "host:port"
//!
//! [output]
//! dir = "search-results"      # cv_results.json, cv_results.csv, best_estimator.rske
//! ```
//!
//! The spec is strict: unknown keys and values of the wrong type are errors
//! (with a "did you mean" for near misses), and every error names the
//! offending key. The steps always form a pipeline, so parameters are
//! addressed as `step__param` even for a single step, as in scikit-learn.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2};
use rask_ml::model_selection::Splitter;
use rask_ml::{create, Estimator, ParamValue, Pipeline};
use rask_search::{
    Cv, Distribution, ErrorScore, Grid, GridSearchCV, RandomizedSearchCV, Refit, SearchCV,
};
use toml::Value;

use rask_ml::error::did_you_mean;

/// `at.key`, or `key` at the top level.
fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_string()
    } else {
        format!("{at}.{key}")
    }
}

/// A spec error: the file, the key path, and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {message}")]
pub struct SpecError {
    /// The spec file.
    pub file: String,
    /// Dotted path of the offending key (`steps[1].type`).
    pub key: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

/// Where a search runs.
#[derive(Debug, Clone, PartialEq)]
pub enum SchedulerSpec {
    /// In this process, one thread.
    Sync,
    /// In this process, a thread pool.
    Threads,
    /// A LocalCluster of this many worker processes.
    Local(usize),
    /// An existing scheduler at this address.
    Address(String),
}

/// A parsed spec.
pub struct Spec {
    /// Features.
    pub x: Array2<f64>,
    /// Targets.
    pub y: Array1<f64>,
    /// The search, configured.
    pub search: SearchCV,
    /// Where to run it.
    pub scheduler: SchedulerSpec,
    /// Output folder.
    pub out_dir: PathBuf,
}

pub(crate) struct Ctx<'a> {
    pub(crate) file: &'a str,
    pub(crate) base: &'a Path,
}

impl Ctx<'_> {
    pub(crate) fn err(&self, key: impl Into<String>, message: impl Into<String>) -> SpecError {
        SpecError { file: self.file.into(), key: key.into(), message: message.into() }
    }

    /// The spec file's TOML.
    pub(crate) fn read(&self, path: &Path) -> Result<toml::Table, SpecError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| self.err("(file)", format!("cannot read: {e}")))?;
        toml::from_str(&text).map_err(|e| self.err("(syntax)", e.to_string()))
    }

    pub(crate) fn path(&self, v: &str) -> PathBuf {
        let p = Path::new(v);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// Rejects keys of `t` outside `allowed`, with a suggestion for typos.
    pub(crate) fn keys(
        &self,
        t: &toml::Table,
        at: &str,
        allowed: &[&str],
    ) -> Result<(), SpecError> {
        match t.keys().find(|k| !allowed.contains(&k.as_str())) {
            None => Ok(()),
            Some(k) => Err(self.err(
                join(at, k),
                format!(
                    "unknown key{}; {} takes {}",
                    did_you_mean(k, allowed),
                    if at.is_empty() { "the spec" } else { at },
                    allowed.join(", ")
                ),
            )),
        }
    }

    /// An optional value of one TOML type: absent is `None`, another type an error.
    fn opt<'v, T>(
        &self,
        t: &'v toml::Table,
        key: &str,
        at: &str,
        expected: &str,
        get: impl Fn(&'v Value) -> Option<T>,
    ) -> Result<Option<T>, SpecError> {
        match t.get(key) {
            None => Ok(None),
            Some(v) => get(v).map(Some).ok_or_else(|| {
                self.err(join(at, key), format!("expected {expected}, found {}", v.type_str()))
            }),
        }
    }

    pub(crate) fn opt_bool(
        &self,
        t: &toml::Table,
        key: &str,
        at: &str,
    ) -> Result<Option<bool>, SpecError> {
        self.opt(t, key, at, "true or false", Value::as_bool)
    }

    pub(crate) fn opt_int(
        &self,
        t: &toml::Table,
        key: &str,
        at: &str,
    ) -> Result<Option<i64>, SpecError> {
        self.opt(t, key, at, "an integer", Value::as_integer)
    }

    pub(crate) fn opt_float(
        &self,
        t: &toml::Table,
        key: &str,
        at: &str,
    ) -> Result<Option<f64>, SpecError> {
        self.opt(t, key, at, "a number", |v| v.as_float().or(v.as_integer().map(|i| i as f64)))
    }

    pub(crate) fn opt_str<'v>(
        &self,
        t: &'v toml::Table,
        key: &str,
        at: &str,
    ) -> Result<Option<&'v str>, SpecError> {
        self.opt(t, key, at, "a string", Value::as_str)
    }

    pub(crate) fn str<'v>(
        &self,
        t: &'v toml::Table,
        key: &str,
        at: &str,
    ) -> Result<&'v str, SpecError> {
        match t.get(key) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(self.err(
                format!("{at}.{key}"),
                format!("expected a string, found {}", other.type_str()),
            )),
            None => Err(self.err(format!("{at}.{key}"), "missing")),
        }
    }

    fn param(&self, v: &Value, at: &str) -> Result<ParamValue, SpecError> {
        Ok(match v {
            Value::Float(f) => ParamValue::F64(*f),
            Value::Integer(i) => ParamValue::I64(*i),
            Value::Boolean(b) => ParamValue::Bool(*b),
            Value::String(s) if s == "none" => ParamValue::None,
            Value::String(s) => ParamValue::Str(s.clone()),
            other => {
                return Err(self.err(
                    at,
                    format!(
                        "a parameter value must be a number, bool or string, found {}",
                        other.type_str()
                    ),
                ))
            }
        })
    }

    fn grid(&self, t: &toml::Table, at: &str) -> Result<Grid, SpecError> {
        t.iter()
            .map(|(k, v)| match v {
                Value::Array(items) => Ok((
                    k.clone(),
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, x)| self.param(x, &format!("{at}.{k}[{i}]")))
                        .collect::<Result<Vec<_>, _>>()?,
                )),
                other => Err(self.err(
                    format!("{at}.{k}"),
                    format!("expected a list of values, found {}", other.type_str()),
                )),
            })
            .collect()
    }

    fn distribution(&self, v: &Value, at: &str) -> Result<Distribution, SpecError> {
        let pair = |v: &Value, what: &str| -> Result<(f64, f64), SpecError> {
            match v.as_array().map(|a| a.as_slice()) {
                Some([a, b]) => match (
                    a.as_float().or(a.as_integer().map(|i| i as f64)),
                    b.as_float().or(b.as_integer().map(|i| i as f64)),
                ) {
                    (Some(a), Some(b)) => Ok((a, b)),
                    _ => Err(self.err(format!("{at}.{what}"), "expected two numbers [low, high]")),
                },
                _ => Err(self.err(format!("{at}.{what}"), "expected [low, high]")),
            }
        };
        match v {
            Value::Array(items) => Ok(Distribution::Choice(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, x)| self.param(x, &format!("{at}[{i}]")))
                    .collect::<Result<_, _>>()?,
            )),
            Value::Table(t) if t.len() == 1 => {
                let (kind, arg) = t.iter().next().expect("one entry");
                match kind.as_str() {
                    "uniform" => {
                        pair(arg, kind).map(|(low, high)| Distribution::Uniform { low, high })
                    }
                    "loguniform" => {
                        pair(arg, kind).map(|(low, high)| Distribution::LogUniform { low, high })
                    }
                    "randint" => pair(arg, kind).map(|(low, high)| Distribution::RandInt {
                        low: low as i64,
                        high: high as i64,
                    }),
                    "choice" => self.distribution(arg, &format!("{at}.choice")),
                    other => Err(self.err(
                        format!("{at}.{other}"),
                        "unknown distribution; use uniform, loguniform, randint or choice",
                    )),
                }
            }
            _ => Err(self.err(
                at,
                "expected a list of values or { uniform | loguniform | randint = [low, high] }",
            )),
        }
    }
}

/// `threads` (default), `sync`, `local:N` or `host:port`, at `key`.
pub(crate) fn scheduler_spec(
    ctx: &Ctx<'_>,
    value: Option<&Value>,
    key: &str,
) -> Result<SchedulerSpec, SpecError> {
    Ok(match value.map(|v| v.as_str()) {
        None | Some(Some("threads")) => SchedulerSpec::Threads,
        Some(Some("sync")) => SchedulerSpec::Sync,
        Some(Some(l)) if l.starts_with("local:") => SchedulerSpec::Local(
            l["local:".len()..]
                .parse()
                .ok()
                .filter(|n: &usize| *n >= 1)
                .ok_or_else(|| ctx.err(key, "local:N needs N >= 1 workers"))?,
        ),
        Some(Some(addr)) if addr.contains(':') => SchedulerSpec::Address(addr.to_string()),
        _ => {
            return Err(ctx.err(
                key,
                "expected \"threads\", \"sync\", \"local:N\" or a scheduler address host:port",
            ))
        }
    })
}

pub(crate) fn table<'v>(
    ctx: &Ctx<'_>,
    root: &'v toml::Table,
    key: &str,
) -> Result<Option<&'v toml::Table>, SpecError> {
    match root.get(key) {
        None => Ok(None),
        Some(Value::Table(t)) => Ok(Some(t)),
        Some(other) => Err(ctx.err(key, format!("expected a table, found {}", other.type_str()))),
    }
}

/// Reads and checks a spec file.
pub fn load(path: &Path) -> Result<Spec, SpecError> {
    let file = path.display().to_string();
    let base = path.parent().unwrap_or(Path::new("."));
    let ctx = Ctx { file: &file, base };
    let root = ctx.read(path)?;
    ctx.keys(&root, "", &["data", "steps", "grid", "grids", "distributions", "search", "output"])?;

    // [data]
    let data = table(&ctx, &root, "data")?
        .ok_or_else(|| ctx.err("data", "missing: give x/y .npy files or csv + target"))?;
    ctx.keys(data, "data", &["x", "y", "csv", "target"])?;
    let (x, y) = if let Some(csv) = ctx.opt_str(data, "csv", "data")? {
        if data.contains_key("x") || data.contains_key("y") {
            return Err(ctx.err("data", "give either x and y (.npy files) or csv and target"));
        }
        let target = ctx.str(data, "target", "data")?;
        let (x, y, _) = rask_ml::datasets::load_csv_xy(ctx.path(csv), target)
            .map_err(|e| ctx.err("data.csv", e.to_string()))?;
        (x, y)
    } else {
        let xp = ctx.str(data, "x", "data")?;
        let yp = ctx.str(data, "y", "data")?;
        rask_ml::datasets::load_npy_xy(ctx.path(xp), ctx.path(yp))
            .map_err(|e| ctx.err("data", e.to_string()))?
    };

    // [[steps]]
    let steps = match root.get("steps") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(_) => return Err(ctx.err("steps", "expected a non-empty list of [[steps]] tables")),
        None => {
            return Err(ctx.err("steps", "missing: the pipeline, as [[steps]] with name and type"))
        }
    };
    let mut built: Vec<(String, Box<dyn Estimator>)> = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        let at = format!("steps[{i}]");
        let t = s.as_table().ok_or_else(|| ctx.err(&at, "expected a table with name and type"))?;
        ctx.keys(t, &at, &["name", "type", "params"])?;
        let name = ctx.str(t, "name", &at)?;
        let ty = ctx.str(t, "type", &at)?;
        let mut est = create(ty).map_err(|e| ctx.err(format!("{at}.type"), e.to_string()))?;
        if let Some(p) = t.get("params") {
            let p = p
                .as_table()
                .ok_or_else(|| ctx.err(format!("{at}.params"), "expected a table of parameters"))?;
            for (k, v) in p {
                let value = ctx.param(v, &format!("{at}.params.{k}"))?;
                est.set_param(k, value)
                    .map_err(|e| ctx.err(format!("{at}.params.{k}"), e.to_string()))?;
            }
        }
        built.push((name.to_string(), est));
    }
    // Always a pipeline, so parameters are `step__param` however many steps
    // there are (as in scikit-learn).
    let estimator: Box<dyn Estimator> =
        Box::new(Pipeline::new(built).map_err(|e| ctx.err("steps", e.to_string()))?);

    // [search]
    let empty = toml::Table::new();
    let s = table(&ctx, &root, "search")?.unwrap_or(&empty);
    let kind = match ctx.opt_str(s, "kind", "search")? {
        None | Some("grid") => "grid",
        Some("random") => "random",
        Some(other) => {
            return Err(ctx.err(
                "search.kind",
                format!("unknown kind {other:?}; expected \"grid\" or \"random\""),
            ))
        }
    };
    let common =
        ["kind", "cv", "scoring", "refit", "error_score", "return_train_score", "scheduler"];
    if kind == "grid" {
        ctx.keys(s, "search", &common)?;
        if root.contains_key("distributions") {
            return Err(ctx.err("distributions", "only for search.kind = \"random\""));
        }
    } else {
        ctx.keys(s, "search", &[&common[..], &["n_iter", "seed"]].concat())?;
        if root.contains_key("grid") || root.contains_key("grids") {
            return Err(ctx.err("grid", "only for search.kind = \"grid\" (the default)"));
        }
    }
    // Check every parameter name against the estimator before anything runs.
    let check_names = |names: Vec<(String, String)>| -> Result<(), SpecError> {
        let params = estimator.get_params();
        for (at, name) in names {
            if !params.contains_key(&name) {
                let known: Vec<&str> = params.keys().map(String::as_str).collect();
                return Err(ctx.err(
                    at,
                    format!(
                        "unknown parameter {name:?}{}; the pipeline has {}",
                        did_you_mean(&name, &known),
                        known.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    };
    let mut search = if kind == "grid" {
        let grids: Vec<Grid> = match (root.get("grid"), root.get("grids")) {
            (Some(Value::Table(t)), None) => vec![ctx.grid(t, "grid")?],
            (None, Some(Value::Array(a))) => a
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    g.as_table()
                        .ok_or_else(|| ctx.err(format!("grids[{i}]"), "expected a table"))
                        .and_then(|t| ctx.grid(t, &format!("grids[{i}]")))
                })
                .collect::<Result<_, _>>()?,
            (None, None) => {
                return Err(ctx.err("grid", "missing: a grid search needs [grid] or [[grids]]"))
            }
            _ => return Err(ctx.err("grid", "give either [grid] or [[grids]], as tables")),
        };
        check_names(
            grids
                .iter()
                .enumerate()
                .flat_map(|(i, g)| g.keys().map(move |k| (format!("grid[{i}].{k}"), k.clone())))
                .collect(),
        )?;
        GridSearchCV::new(estimator.clone_unfitted(), grids)
    } else {
        let d = table(&ctx, &root, "distributions")?.ok_or_else(|| {
            ctx.err("distributions", "missing: a random search needs [distributions]")
        })?;
        let dists: BTreeMap<String, Distribution> = d
            .iter()
            .map(|(k, v)| Ok((k.clone(), ctx.distribution(v, &format!("distributions.{k}"))?)))
            .collect::<Result<_, SpecError>>()?;
        check_names(dists.keys().map(|k| (format!("distributions.{k}"), k.clone())).collect())?;
        let n_iter = match s.get("n_iter") {
            Some(Value::Integer(n)) if *n > 0 => *n as usize,
            None => 10,
            Some(_) => return Err(ctx.err("search.n_iter", "expected a positive integer")),
        };
        let seed = match s.get("seed") {
            Some(Value::Integer(n)) if *n >= 0 => *n as u64,
            None => 0,
            Some(_) => return Err(ctx.err("search.seed", "expected a non-negative integer")),
        };
        RandomizedSearchCV::new(estimator.clone_unfitted(), dists, n_iter, seed)
    };
    search = match s.get("cv") {
        None => search,
        Some(Value::Integer(k)) if *k >= 2 => search.cv(Cv::Folds(*k as usize)),
        Some(Value::Table(t)) => {
            let at = "search.cv";
            let splitter = ctx.opt_str(t, "splitter", at)?.unwrap_or("kfold");
            let allowed: &[&str] = match splitter {
                "shuffle" => &["splitter", "n_splits", "random_state", "test_size", "train_size"],
                _ => &["splitter", "n_splits", "shuffle", "random_state"],
            };
            ctx.keys(t, at, allowed)?;
            let shuffle = ctx.opt_bool(t, "shuffle", at)?.unwrap_or(false);
            let random_state = match ctx.opt_int(t, "random_state", at)? {
                None => None,
                Some(v) => Some(u32::try_from(v).map_err(|_| {
                    ctx.err("search.cv.random_state", "expected an integer in [0, 4294967295]")
                })?),
            };
            let n_splits = match ctx.opt_int(t, "n_splits", at)? {
                None => 5,
                Some(v) if v >= 1 => v as usize,
                Some(_) => return Err(ctx.err("search.cv.n_splits", "expected an integer >= 1")),
            };
            let splitter = match splitter {
                "kfold" => Splitter::KFold { n_splits, shuffle, random_state },
                "stratified" => Splitter::StratifiedKFold { n_splits, shuffle, random_state },
                "shuffle" => Splitter::ShuffleSplit {
                    n_splits,
                    test_size: ctx.opt_float(t, "test_size", at)?.unwrap_or(0.1),
                    train_size: ctx.opt_float(t, "train_size", at)?,
                    random_state,
                },
                other => {
                    return Err(ctx.err(
                        "search.cv.splitter",
                        format!("unknown splitter {other:?}; use kfold, stratified or shuffle"),
                    ))
                }
            };
            search.cv(Cv::Splitter(splitter))
        }
        Some(_) => {
            return Err(
                ctx.err("search.cv", "expected a number of folds (>= 2) or a splitter table")
            )
        }
    };
    if let Some(v) = s.get("scoring") {
        let names: Vec<String> = match v {
            Value::String(n) => vec![n.clone()],
            Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().map(String::from))
                .collect::<Option<_>>()
                .ok_or_else(|| ctx.err("search.scoring", "expected scorer names"))?,
            _ => return Err(ctx.err("search.scoring", "expected a scorer name or a list of them")),
        };
        for n in &names {
            rask_ml::metrics::check_scorer(n)
                .map_err(|e| ctx.err("search.scoring", e.to_string()))?;
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        search = search.scoring(&refs);
    }
    search = match s.get("refit") {
        None | Some(Value::Boolean(true)) => search.refit(Refit::Best),
        Some(Value::Boolean(false)) => search.refit(Refit::No),
        Some(Value::String(n)) => search.refit(Refit::By(n.clone())),
        Some(_) => return Err(ctx.err("search.refit", "expected true, false or a scorer name")),
    };
    search = match s.get("error_score") {
        None => search,
        Some(Value::String(v)) if v == "raise" => search.error_score(ErrorScore::Raise),
        Some(Value::String(v)) if v == "nan" => search.error_score(ErrorScore::Value(f64::NAN)),
        Some(Value::Float(v)) => search.error_score(ErrorScore::Value(*v)),
        Some(Value::Integer(v)) => search.error_score(ErrorScore::Value(*v as f64)),
        Some(_) => {
            return Err(ctx.err("search.error_score", "expected \"raise\", \"nan\" or a number"))
        }
    };
    if let Some(v) = s.get("return_train_score") {
        search = search.return_train_score(
            v.as_bool()
                .ok_or_else(|| ctx.err("search.return_train_score", "expected true or false"))?,
        );
    }
    let scheduler = scheduler_spec(&ctx, s.get("scheduler"), "search.scheduler")?;
    let out_dir = match table(&ctx, &root, "output")? {
        None => PathBuf::from("search-results"),
        Some(o) => {
            ctx.keys(o, "output", &["dir"])?;
            ctx.opt_str(o, "dir", "output")?
                .map_or(PathBuf::from("search-results"), |d| ctx.path(d))
        }
    };
    // Candidates are checked now, so that a bad grid fails before any work.
    search.candidates().map_err(|e| {
        ctx.err(if kind == "grid" { "grid" } else { "distributions" }, e.to_string())
    })?;
    Ok(Spec { x, y, search, scheduler, out_dir })
}
