//! Every solver, on every penalty it accepts, against scikit-learn's optimum
//! (`tests/fixtures/reference.json`, made by `tests/fixtures/make_fixtures.py`:
//! scikit-learn 1.9.1 fitted to machine-precision stationarity). Tolerance:
//! 1e-4 max-abs on the coefficients and the intercept. Newton and L-BFGS are
//! fitted to a stationarity of 1e-9; the first-order solvers to 1e-7 (a line
//! search on function values cannot certify much less in double precision:
//! the objective changes by ~‖g‖² per step).

use ndarray::{Array1, Array2};
use rask_glm::data::InMemory;
use rask_glm::solve::{fit, Model, Options, Solver};
use rask_glm::{Family, Parameterization};

const TOLERANCE: f64 = 1e-4;

struct Case {
    name: String,
    family: Family,
    param: Parameterization,
    fit_intercept: bool,
    weighted: bool,
    coef: Vec<f64>,
    /// One intercept, or one per class.
    intercepts: Vec<f64>,
}

fn load() -> (Array2<f64>, serde_json::Value, Array1<f64>, Vec<Case>) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/reference.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let rows: Vec<Vec<f64>> = serde_json::from_value(v["X"].clone()).unwrap();
    let x = Array2::from_shape_fn((rows.len(), rows[0].len()), |(i, j)| rows[i][j]);
    let w: Vec<f64> = serde_json::from_value(v["sample_weight"].clone()).unwrap();
    let num = |c: &serde_json::Value, k: &str| c["param"][k].as_f64().unwrap();
    let cases = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_string(),
            family: match c["family"].as_str().unwrap() {
                "logistic" => Family::Logistic,
                "normal" => Family::Normal,
                "poisson" => Family::Poisson,
                other => panic!("family {other}"),
            },
            param: match c["param"]["kind"].as_str().unwrap() {
                "sklearn_logistic" => Parameterization::SklearnLogistic {
                    c: num(c, "C"),
                    l1_ratio: num(c, "l1_ratio"),
                },
                "sklearn_poisson" => Parameterization::SklearnPoisson { alpha: num(c, "alpha") },
                "sklearn_linear" => Parameterization::SklearnLinear,
                "sklearn_ridge" => Parameterization::SklearnRidge { alpha: num(c, "alpha") },
                "sklearn_elasticnet" => Parameterization::SklearnElasticNet {
                    alpha: num(c, "alpha"),
                    l1_ratio: num(c, "l1_ratio"),
                },
                other => panic!("kind {other}"),
            },
            fit_intercept: c["fit_intercept"].as_bool().unwrap(),
            weighted: c["weighted"].as_bool().unwrap(),
            coef: serde_json::from_value(c["coef"].clone()).unwrap(),
            intercepts: vec![c["intercept"].as_f64().unwrap()],
        })
        .chain(v["multinomial"].as_array().unwrap().iter().map(|c| {
            // scikit-learn's coef_ is K × p: flattened, it is class-major.
            let coef: Vec<Vec<f64>> = serde_json::from_value(c["coef"].clone()).unwrap();
            Case {
                name: c["name"].as_str().unwrap().to_string(),
                family: Family::Multinomial { classes: coef.len() },
                param: Parameterization::SklearnLogistic {
                    c: c["C"].as_f64().unwrap(),
                    l1_ratio: c["l1_ratio"].as_f64().unwrap(),
                },
                fit_intercept: c["fit_intercept"].as_bool().unwrap(),
                weighted: c["weighted"].as_bool().unwrap(),
                coef: coef.concat(),
                intercepts: serde_json::from_value(c["intercept"].clone()).unwrap(),
            }
        }))
        .collect();
    (x, v["y"].clone(), Array1::from(w), cases)
}

/// Fits every case with `solver` (skipping penalties it refuses, which must
/// be exactly the L1 ones) and returns the worst max-abs difference.
fn check_solver(solver: Solver, max_iter: usize, tol: f64) {
    let (x, ys, w, cases) = load();
    let mut worst: (f64, String) = (0.0, String::new());
    let mut fitted = 0;
    for case in &cases {
        let y: Vec<f64> = serde_json::from_value(ys[case.family.name()].clone()).unwrap();
        let y = Array1::from(y);
        let weights = case.weighted.then(|| w.view());
        // Chunks of 64 rows: four chunks and a short one, as a chunked array has.
        let data = InMemory::new(case.family, x.view(), y.view(), weights, 64).unwrap();
        let penalty = case.param.penalty(rask_glm::data::GlmData::total_weight(&data)).unwrap();
        let model = Model { family: case.family, penalty, fit_intercept: case.fit_intercept };
        let result = fit(&data, model, solver, Options { max_iter, tol });
        let f = match result {
            Ok(f) => f,
            Err(e) => {
                assert!(
                    !penalty.is_smooth(),
                    "{}: {} refused a smooth penalty: {e}",
                    case.name,
                    solver.name()
                );
                continue;
            }
        };
        fitted += 1;
        assert!(f.converged, "{}: {} did not converge: {f:?}", case.name, solver.name());
        let diff = f
            .coef
            .iter()
            .zip(&case.coef)
            .chain(f.intercepts.iter().zip(&case.intercepts))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(
            diff <= TOLERANCE,
            "{}: {} differs from scikit-learn by {diff:.2e} (coef {:?} vs {:?}, intercepts {} vs {:?})",
            case.name,
            solver.name(),
            f.coef.to_vec(),
            case.coef,
            f.intercepts,
            case.intercepts
        );
        if diff > worst.0 {
            worst = (diff, case.name.clone());
        }
    }
    assert!(fitted > 0);
    eprintln!(
        "{}: {fitted} of {} cases within {TOLERANCE:e} of scikit-learn; worst {:.2e} ({})",
        solver.name(),
        cases.len(),
        worst.0,
        worst.1
    );
}

#[test]
fn newton_matches_scikit_learn() {
    check_solver(Solver::Newton, 200, 1e-9);
}

#[test]
fn lbfgs_matches_scikit_learn() {
    check_solver(Solver::Lbfgs, 20_000, 1e-9);
}

#[test]
fn proximal_grad_matches_scikit_learn() {
    check_solver(Solver::ProximalGrad, 200_000, 1e-7);
}

#[test]
fn gradient_descent_matches_scikit_learn() {
    check_solver(Solver::GradientDescent, 200_000, 1e-7);
}

#[test]
fn admm_matches_scikit_learn() {
    check_solver(Solver::Admm, 100_000, 1e-7);
}
