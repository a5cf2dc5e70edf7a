//! W4 `w4_glm`: logistic regression without intercept on glm_big (20 chunk
//! files of 100 000 × 20; see `../shared/peers/README.md`), problems `none`
//! and `l2` (λ = 1e4 on the summed loss), every solver, on threads or a
//! LocalCluster. The blocks are loaded and persisted before timing, as the
//! peers persist theirs; each timed fit starts from zero coefficients. An
//! untimed Newton fit to a stationarity of 1e-11 is the tight optimum that
//! `max_abs_diff_vs_tight` is measured against.

use std::path::Path;

use rask_core::array::npy::from_npy_stack;
use rask_core::{ComputeOptions, Scheduler};
use rask_glm::chunked::Chunked;
use rask_glm::data::GlmData;
use rask_glm::solve::{fit, Fit, Model, Options, Solver};
use rask_glm::{Family, Penalty};
use serde_json::{json, Map, Value};

use super::{measure, record, BenchEnv, BenchError};

/// λ of the `l2` problem, on the summed loss.
const LAMBDA: f64 = 1e4;
/// The stationarity every timed fit stops at (the mean-loss gradient's max-abs);
/// at this data's curvature it puts the coefficients within about 1e-5 of the optimum.
const TOL: f64 = 1e-6;

const SOLVERS: [Solver; 5] =
    [Solver::Admm, Solver::Lbfgs, Solver::Newton, Solver::GradientDescent, Solver::ProximalGrad];

fn err(e: impl std::fmt::Display) -> BenchError {
    BenchError::Cluster { message: e.to_string() }
}

/// `W4_ALGOS` (comma-separated solver names, as for the peers) selects solvers; all by default.
fn wanted(name: &str) -> bool {
    std::env::var("W4_ALGOS").map_or(true, |v| v.split(',').any(|a| a.trim() == name))
}

/// The summed log-loss at `coef` (the peers' `L(b)`), from one more pass.
fn summed_loss(data: &Chunked, coef: &Fit) -> Result<f64, BenchError> {
    Ok(data.grad(Family::Logistic, coef.coef.view(), coef.intercepts.view()).map_err(err)?.loss)
}

/// Runs w4 with `scheduler` (described by `config`).
pub fn run(
    env: &BenchEnv,
    data: &Path,
    scheduler: Scheduler,
    config: Map<String, Value>,
    out: &mut dyn FnMut(Value),
) -> Result<(), BenchError> {
    let dir = data.join("glm_big");
    let opts = ComputeOptions::default();
    let x = from_npy_stack::<f64>(dir.join("X_*.npy")).map_err(err)?;
    let y = from_npy_stack::<f64>(dir.join("y_*.npy")).map_err(err)?;
    let x = x.persist_with(&scheduler, &opts).map_err(err)?;
    let y = y.persist_with(&scheduler, &opts).map_err(err)?;
    let data = Chunked::new(Family::Logistic, &x, &y, None, scheduler).map_err(err)?;
    let n = data.n_rows() as f64;
    for (problem, penalty) in
        [("none", Penalty::NONE), ("l2", Penalty::l2(LAMBDA / n).map_err(err)?)]
    {
        let model = Model { family: Family::Logistic, penalty, fit_intercept: false };
        let tight = fit(&data, model, Solver::Newton, Options { max_iter: 100, tol: 1e-11 })
            .map_err(err)?;
        for solver in SOLVERS.into_iter().filter(|s| wanted(s.name())) {
            let max_iter = if solver == Solver::Admm { 250 } else { 1000 };
            let options = Options { max_iter, tol: TOL };
            let distance = |f: &Fit| {
                f.coef.iter().zip(&tight.coef).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max)
            };
            // Every repeat's result is checked, not only the last one's.
            let mut wrong = None;
            let (sec, runs, last) = measure(env.repeats, || {
                let f = fit(&data, model, solver, options);
                match &f {
                    Ok(f) if !f.converged || distance(f) > 1e-4 => {
                        wrong.get_or_insert(format!(
                            "{} {problem}: converged {}, {:.1e} from the tight optimum",
                            solver.name(),
                            f.converged,
                            distance(f)
                        ));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        wrong.get_or_insert(format!("{} {problem}: {e}", solver.name()));
                    }
                }
                f
            });
            let f =
                last.into_iter().next_back().ok_or_else(|| err("no repeat ran"))?.map_err(err)?;
            if let Some(got) = wrong {
                return Err(BenchError::WrongResult {
                    workload: "w4_glm",
                    got,
                    expected: "a converged fit within 1e-4 of the tight optimum".into(),
                });
            }
            let loss = summed_loss(&data, &f)?;
            let objective = loss + 0.5 * LAMBDA * f.coef.dot(&f.coef) * f64::from(problem == "l2");
            let max_diff = distance(&f);
            let mut cfg = config.clone();
            cfg.insert("algorithm".into(), json!(solver.name()));
            cfg.insert("problem".into(), json!(problem));
            cfg.insert("chunks".into(), json!("20 x (100000, 20)"));
            cfg.insert("normalize".into(), json!(false));
            cfg.insert("tol".into(), json!(TOL));
            cfg.insert("max_iter".into(), json!(max_iter));
            cfg.insert("lamduh".into(), json!(if problem == "l2" { LAMBDA } else { 0.0 }));
            let mut m = Map::new();
            m.insert("iterations".into(), json!(f.n_iter));
            m.insert("converged".into(), json!(f.converged));
            m.insert("stationarity".into(), json!(f.grad_norm));
            m.insert("coef".into(), json!(f.coef.to_vec()));
            m.insert("max_abs_diff_vs_tight".into(), json!(max_diff));
            m.insert("train_logloss".into(), json!(loss / n));
            m.insert("objective".into(), json!(objective));
            m.insert("coef_tight".into(), json!(tight.coef.to_vec()));
            m.insert(
                "note".into(),
                json!("tight optimum: rask Newton to stationarity 1e-11 on the same objective"),
            );
            out(record("w4_glm", Value::Object(cfg), sec, &runs, m));
        }
    }
    Ok(())
}
