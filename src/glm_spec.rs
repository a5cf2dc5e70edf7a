//! `rask glm --spec glm.toml`: fit a GLM on chunked data without code.
//!
//! ```toml
//! [data]
//! x = "X_*.npy"          # a .npy file (cut into row chunks), a folder or a glob of chunk files
//! y = "y_*.npy"
//! sample_weight = "w.npy"   # optional
//! chunk_rows = 100000    # row chunks of a single .npy file (default 100000)
//!
//! [model]
//! family = "logistic"    # logistic | normal | poisson | multinomial
//! # classes = 3          # multinomial only: labels are 0, 1, ..., classes - 1
//! fit_intercept = true
//! C = 1.0                # scikit-learn's LogisticRegression(C, l1_ratio) ...
//! # alpha = 0.1         # ... or glum's / ElasticNet's / PoissonRegressor's alpha; neither: no penalty
//! l1_ratio = 0.0
//!
//! [solver]
//! name = "lbfgs"         # gradient_descent | proximal_grad | newton | lbfgs | admm
//! max_iter = 1000
//! tol = 1e-8
//! scheduler = "threads"  # sync | local:N | host:port
//!
//! [output]
//! dir = "glm-results"    # model.json
//! ```
//!
//! Strict like every spec: unknown keys and wrongly typed values are errors
//! naming the key.

use std::path::{Path, PathBuf};

use rask_core::array::npy::{from_npy, from_npy_stack};
use rask_core::array::Array;
use rask_glm::solve::{Model, Options, Solver};
use rask_glm::{Family, Parameterization};

use crate::spec::{scheduler_spec, table, Ctx, SchedulerSpec, SpecError};

/// A parsed `rask glm` spec.
pub struct GlmSpec {
    /// Features, chunked by rows.
    pub x: Array<f64>,
    /// Targets.
    pub y: Array<f64>,
    /// Optional sample weights.
    pub sample_weight: Option<Array<f64>>,
    /// Family and intercept (the penalty follows from the data's total weight).
    pub family: Family,
    /// Whether to fit an intercept.
    pub fit_intercept: bool,
    /// The regularization as its library spells it.
    pub parameterization: Parameterization,
    /// The solver.
    pub solver: Solver,
    /// When to stop.
    pub options: Options,
    /// Where to run.
    pub scheduler: SchedulerSpec,
    /// Output folder.
    pub out_dir: PathBuf,
}

impl GlmSpec {
    /// The model, once the data's total weight is known.
    pub fn model(&self, total_weight: f64) -> Result<Model, rask_glm::GlmError> {
        let penalty = self.parameterization.penalty(total_weight)?;
        Ok(Model { family: self.family, penalty, fit_intercept: self.fit_intercept })
    }
}

/// A 2-d or 1-d array spec value: a `.npy` file (cut into row chunks), a
/// folder or a glob of chunk files.
pub(crate) fn array(
    ctx: &Ctx<'_>,
    key: &str,
    value: &str,
    ndim: usize,
    chunk_rows: usize,
) -> Result<Array<f64>, SpecError> {
    let path = ctx.path(value);
    let file = path.is_file() && path.extension().is_some_and(|e| e == "npy");
    let a = if file {
        let chunks: Vec<usize> =
            std::iter::once(chunk_rows).chain(std::iter::repeat_n(usize::MAX, ndim - 1)).collect();
        let header = rask_core::npy::read_header(&path).map_err(|e| ctx.err(key, e.to_string()))?;
        let chunks: Vec<usize> =
            chunks.iter().zip(&header.shape).map(|(&c, &n)| c.min(n).max(1)).collect();
        from_npy::<f64>(&path, chunks.as_slice())
    } else {
        from_npy_stack::<f64>(&path)
    }
    .map_err(|e| ctx.err(key, e.to_string()))?;
    if a.ndim() != ndim {
        return Err(ctx.err(key, format!("must be {ndim}-d, is {}-d", a.ndim())));
    }
    Ok(a)
}

/// Reads and checks a `rask glm` spec (the data's headers are read; the data
/// itself is read by the fit's tasks).
pub fn load(path: &Path) -> Result<GlmSpec, SpecError> {
    let file = path.display().to_string();
    let base = path.parent().unwrap_or(Path::new("."));
    let ctx = Ctx { file: &file, base };
    let root = ctx.read(path)?;
    ctx.keys(&root, "", &["data", "model", "solver", "output"])?;
    let empty = toml::Table::new();

    let data = table(&ctx, &root, "data")?
        .ok_or_else(|| ctx.err("data", "missing: give x and y (.npy files or chunk folders)"))?;
    ctx.keys(data, "data", &["x", "y", "sample_weight", "chunk_rows"])?;
    let chunk_rows = match ctx.opt_int(data, "chunk_rows", "data")? {
        None => 100_000,
        Some(n) if n >= 1 => n as usize,
        Some(_) => return Err(ctx.err("data.chunk_rows", "expected an integer >= 1")),
    };
    let x = array(&ctx, "data.x", ctx.str(data, "x", "data")?, 2, chunk_rows)?;
    let y = array(&ctx, "data.y", ctx.str(data, "y", "data")?, 1, chunk_rows)?;
    let sample_weight = ctx
        .opt_str(data, "sample_weight", "data")?
        .map(|w| array(&ctx, "data.sample_weight", w, 1, chunk_rows))
        .transpose()?;

    let m = table(&ctx, &root, "model")?.unwrap_or(&empty);
    ctx.keys(m, "model", &["family", "classes", "fit_intercept", "C", "alpha", "l1_ratio"])?;
    let classes = ctx.opt_int(m, "classes", "model")?;
    let family = match (ctx.opt_str(m, "family", "model")?.unwrap_or("logistic"), classes) {
        ("multinomial", Some(k)) if k >= 2 => Family::Multinomial { classes: k as usize },
        ("multinomial", _) => {
            return Err(ctx.err(
                "model.classes",
                "the multinomial family needs classes = K >= 2 (labels 0, 1, ..., K - 1)",
            ))
        }
        (_, Some(_)) => {
            return Err(ctx.err("model.classes", "classes is for the multinomial family only"))
        }
        ("logistic", None) => Family::Logistic,
        ("normal", None) => Family::Normal,
        ("poisson", None) => Family::Poisson,
        (other, None) => {
            return Err(ctx.err(
                "model.family",
                format!("unknown family {other:?}; use logistic, normal, poisson or multinomial"),
            ))
        }
    };
    let fit_intercept = ctx.opt_bool(m, "fit_intercept", "model")?.unwrap_or(true);
    let l1_ratio = ctx.opt_float(m, "l1_ratio", "model")?.unwrap_or(0.0);
    let parameterization =
        match (ctx.opt_float(m, "C", "model")?, ctx.opt_float(m, "alpha", "model")?) {
            (Some(_), Some(_)) => {
                return Err(ctx.err("model", "give C (scikit-learn's) or alpha (glum's), not both"))
            }
            (Some(_), None) if family.is_scalar() && family != Family::Logistic => {
                return Err(ctx.err(
                    "model.C",
                    format!(
                        "C is LogisticRegression's parameter; the {} family takes alpha",
                        family.name()
                    ),
                ))
            }
            (Some(c), None) => Parameterization::SklearnLogistic { c, l1_ratio },
            (None, Some(alpha)) => Parameterization::Glum { alpha, l1_ratio },
            (None, None) => Parameterization::Glum { alpha: 0.0, l1_ratio: 0.0 },
        };
    // Checked now, against a unit weight: the values' validity does not depend on it.
    parameterization.penalty(1.0).map_err(|e| ctx.err("model", e.to_string()))?;

    let s = table(&ctx, &root, "solver")?.unwrap_or(&empty);
    ctx.keys(s, "solver", &["name", "max_iter", "tol", "scheduler"])?;
    let names = Solver::ALL.map(|s| s.name());
    let name = ctx.opt_str(s, "name", "solver")?.unwrap_or("lbfgs");
    let solver = Solver::from_name(name).ok_or_else(|| {
        ctx.err(
            "solver.name",
            format!(
                "unknown solver {name:?}{}; use {}",
                rask_ml::error::did_you_mean(name, &names),
                names.join(", ")
            ),
        )
    })?;
    let max_iter = match ctx.opt_int(s, "max_iter", "solver")? {
        None => 1000,
        Some(n) if n >= 1 => n as usize,
        Some(_) => return Err(ctx.err("solver.max_iter", "expected an integer >= 1")),
    };
    let tol = match ctx.opt_float(s, "tol", "solver")? {
        None => 1e-8,
        Some(t) if t > 0.0 => t,
        Some(_) => return Err(ctx.err("solver.tol", "expected a number > 0")),
    };
    let scheduler = scheduler_spec(&ctx, s.get("scheduler"), "solver.scheduler")?;
    let out_dir = match table(&ctx, &root, "output")? {
        None => PathBuf::from("glm-results"),
        Some(o) => {
            ctx.keys(o, "output", &["dir"])?;
            ctx.opt_str(o, "dir", "output")?.map_or(PathBuf::from("glm-results"), |d| ctx.path(d))
        }
    };
    Ok(GlmSpec {
        x,
        y,
        sample_weight,
        family,
        fit_intercept,
        parameterization,
        solver,
        options: Options { max_iter, tol },
        scheduler,
        out_dir,
    })
}
