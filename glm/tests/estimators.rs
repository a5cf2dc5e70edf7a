//! The registered GLM estimators: created by name with parameters as data,
//! they reach scikit-learn's optima (`tests/fixtures/reference.json`, the
//! unweighted cases; tolerance 1e-4 max-abs, as `reference.rs`), agree with
//! the ML layer's in-memory `LogisticRegression` (1e-4), and fit, predict and
//! score chunked arrays exactly as they do in-memory data (1e-10; the same
//! chunks and the same order of sums).

use ndarray::{Array1, Array2, Axis};
use rask_core::array::create::from_array;
use rask_core::Scheduler;
use rask_glm::estimators::{GlmLinearRegression, GlmLogisticRegression, GlmPoissonRegressor};
use rask_ml::estimator::{create, load, save};
use rask_ml::{Estimator, ParamValue};

const TOLERANCE: f64 = 1e-4;

fn fixtures() -> (Array2<f64>, serde_json::Value, serde_json::Value) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/reference.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let rows: Vec<Vec<f64>> = serde_json::from_value(v["X"].clone()).unwrap();
    let x = Array2::from_shape_fn((rows.len(), rows[0].len()), |(i, j)| rows[i][j]);
    (x, v["y"].clone(), v["cases"].clone())
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// The estimator of a fixture case, through the registry, with its parameters
/// set by name (as a search does), or `None` for cases no estimator covers
/// (sample weights, and scikit-learn's Ridge scaling).
fn estimator_for(case: &serde_json::Value, solver: &str) -> Option<Box<dyn Estimator>> {
    if case["weighted"].as_bool().unwrap() {
        return None;
    }
    let p = &case["param"];
    let (name, params): (&str, Vec<(&str, f64)>) = match p["kind"].as_str().unwrap() {
        "sklearn_logistic" => (
            "GlmLogisticRegression",
            vec![("C", p["C"].as_f64()?), ("l1_ratio", p["l1_ratio"].as_f64()?)],
        ),
        "sklearn_poisson" => ("GlmPoissonRegressor", vec![("alpha", p["alpha"].as_f64()?)]),
        "sklearn_linear" => ("GlmLinearRegression", vec![("alpha", 0.0)]),
        "sklearn_elasticnet" => (
            "GlmLinearRegression",
            vec![("alpha", p["alpha"].as_f64()?), ("l1_ratio", p["l1_ratio"].as_f64()?)],
        ),
        _ => return None,
    };
    let mut e = create(name).unwrap();
    for (k, v) in params {
        e.set_param(k, ParamValue::F64(v)).unwrap();
    }
    e.set_param("fit_intercept", ParamValue::Bool(case["fit_intercept"].as_bool().unwrap()))
        .unwrap();
    e.set_param("solver", ParamValue::Str(solver.into())).unwrap();
    e.set_param("tol", ParamValue::F64(1e-9)).unwrap();
    e.set_param("chunk_rows", ParamValue::I64(64)).unwrap();
    Some(e)
}

#[test]
fn registered_estimators_reach_scikit_learns_optima() {
    let (x, ys, cases) = fixtures();
    let mut checked = 0;
    for case in cases.as_array().unwrap() {
        for solver in ["newton", "lbfgs"] {
            let Some(mut e) = estimator_for(case, solver) else { continue };
            let l1 = case["param"]["l1_ratio"].as_f64().unwrap_or(0.0) > 0.0;
            if l1 && solver == "newton" {
                continue;
            }
            let y: Vec<f64> =
                serde_json::from_value(ys[case["family"].as_str().unwrap()].clone()).unwrap();
            let y = Array1::from(y);
            e.fit(x.view(), Some(y.view())).unwrap();
            let want: Vec<f64> = serde_json::from_value(case["coef"].clone()).unwrap();
            let b = case["intercept"].as_f64().unwrap();
            // The linear predictor at the unit vectors and at 0 gives coef and intercept.
            let (coef, intercept) = linear_part(e.as_ref(), x.ncols(), case);
            let d = max_diff(&coef, &want).max((intercept - b).abs());
            assert!(d <= TOLERANCE, "{} with {solver}: {d:e} from scikit-learn", case["name"]);
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} fits checked");
}

/// Recovers coef and intercept from predictions (the estimator's public face):
/// η(0) = b and η(eⱼ) − η(0) = βⱼ, with η read through the inverse link.
fn linear_part(e: &dyn Estimator, p: usize, case: &serde_json::Value) -> (Vec<f64>, f64) {
    let mut pts = Array2::<f64>::zeros((p + 1, p));
    for j in 0..p {
        pts[[j + 1, j]] = 1.0;
    }
    let eta: Vec<f64> = match case["family"].as_str().unwrap() {
        "logistic" => {
            let proba = e.predict_proba(pts.view()).unwrap();
            proba.column(1).iter().map(|q| (q / (1.0 - q)).ln()).collect()
        }
        "poisson" => e.predict(pts.view()).unwrap().iter().map(|m| m.ln()).collect(),
        _ => e.predict(pts.view()).unwrap().to_vec(),
    };
    ((1..=p).map(|j| eta[j] - eta[0]).collect(), eta[0])
}

/// Three classes: the multinomial family, against scikit-learn's
/// multinomial `LogisticRegression` (the fixtures' `multinomial` cases
/// without weights), through the registry, with every solver that takes
/// the penalty; compared as probabilities at X (the intercepts are free up
/// to a common shift), tolerance 1e-4.
#[test]
fn glm_logistic_regression_is_multinomial_with_three_classes() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/reference.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let (x, ys, _) = fixtures();
    let y = Array1::from(serde_json::from_value::<Vec<f64>>(ys["multinomial"].clone()).unwrap());
    let mut checked = 0;
    for case in v["multinomial"].as_array().unwrap() {
        if case["weighted"].as_bool().unwrap() {
            continue;
        }
        let l1 = case["l1_ratio"].as_f64().unwrap();
        for solver in ["lbfgs", "newton", "proximal_grad"] {
            if l1 > 0.0 && solver == "newton" {
                continue;
            }
            let mut e = create("GlmLogisticRegression").unwrap();
            e.set_param("C", ParamValue::F64(case["C"].as_f64().unwrap())).unwrap();
            e.set_param("l1_ratio", ParamValue::F64(l1)).unwrap();
            let fi = case["fit_intercept"].as_bool().unwrap();
            e.set_param("fit_intercept", ParamValue::Bool(fi)).unwrap();
            e.set_param("solver", ParamValue::Str(solver.into())).unwrap();
            e.set_param("tol", ParamValue::F64(1e-9)).unwrap();
            e.set_param("max_iter", ParamValue::I64(100_000)).unwrap();
            e.fit(x.view(), Some(y.view())).unwrap();
            assert_eq!(e.classes().unwrap(), vec![0.0, 1.0, 2.0]);
            let coef: Vec<Vec<f64>> = serde_json::from_value(case["coef"].clone()).unwrap();
            let b: Vec<f64> = serde_json::from_value(case["intercept"].clone()).unwrap();
            let want = Array2::from_shape_fn((x.nrows(), 3), |(i, c)| {
                let eta =
                    |c: usize| b[c] + coef[c].iter().zip(x.row(i)).map(|(w, v)| w * v).sum::<f64>();
                let top = (0..3).map(eta).fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = (0..3).map(|d| (eta(d) - top).exp()).sum();
                (eta(c) - top).exp() / z
            });
            let got = e.predict_proba(x.view()).unwrap();
            let d = (&got - &want).iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(d <= TOLERANCE, "{} with {solver}: probabilities {d:e} apart", case["name"]);
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked}");
}

#[test]
fn the_glm_and_the_ml_layers_logistic_regressions_agree() {
    let (x, ys, _) = fixtures();
    let y: Vec<f64> = serde_json::from_value(ys["logistic"].clone()).unwrap();
    let y = Array1::from(y);
    for c in [0.01, 1.0, 100.0] {
        let mut glm = create("GlmLogisticRegression").unwrap();
        let mut ml = create("LogisticRegression").unwrap();
        for e in [&mut glm, &mut ml] {
            e.set_param("C", ParamValue::F64(c)).unwrap();
            e.set_param("tol", ParamValue::F64(1e-10)).unwrap();
        }
        ml.set_param("max_iter", ParamValue::I64(10_000)).unwrap();
        glm.fit(x.view(), Some(y.view())).unwrap();
        ml.fit(x.view(), Some(y.view())).unwrap();
        let a = glm.predict_proba(x.view()).unwrap();
        let b = ml.predict_proba(x.view()).unwrap();
        let d = (&a - &b).iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(d <= TOLERANCE, "C = {c}: probabilities differ by {d:e}");
        assert_eq!(glm.predict(x.view()).unwrap(), ml.predict(x.view()).unwrap());
    }
}

/// Fits `$Type` in memory and on the chunked arrays (same chunks, `Sync`),
/// and compares the fits, the predictions and the scores.
macro_rules! same_in_memory_and_chunked {
    ($Type:ty, $params:expr, $x:expr, $xa:expr, $y:expr, $proba:expr) => {{
        let (x, xa, y) = ($x, $xa, $y);
        let ya = from_array(&y.clone().into_dyn(), 64).unwrap();
        let params = $params;
        let mut memory = <$Type>::with_params(params.clone());
        Estimator::fit(&mut memory, x.view(), Some(y.view())).unwrap();
        // Saved and loaded (as a worker would get it), it predicts the same.
        let loaded = load(&save(&memory).unwrap()).unwrap();
        assert_eq!(
            loaded.predict(x.view()).unwrap(),
            Estimator::predict(&memory, x.view()).unwrap()
        );
        let mut chunked = <$Type>::with_params(params);
        let fc = chunked.fit_chunked(&xa, &ya, Scheduler::Sync).unwrap().clone();
        let fm = memory.fitted().unwrap();
        let d = max_diff(fc.coef.as_slice().unwrap(), fm.coef.as_slice().unwrap());
        let db = max_diff(fc.intercepts.as_slice().unwrap(), fm.intercepts.as_slice().unwrap());
        assert!(d <= 1e-10 && db <= 1e-10, "fits differ: {d:e}, intercepts {db:e}");
        let pc = fc.predict_chunked(&xa).unwrap().compute().unwrap();
        let pm = Estimator::predict(&memory, x.view()).unwrap();
        assert_eq!(pc.shape(), [x.nrows()]);
        let d = pc.iter().zip(&pm).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(d <= 1e-10, "predictions differ by {d:e}");
        if $proba > 0 {
            let qc = fc.predict_proba_chunked(&xa).unwrap().compute().unwrap();
            let qm = Estimator::predict_proba(&memory, x.view()).unwrap();
            assert_eq!(qc.shape(), [x.nrows(), $proba]);
            let d = qc.iter().zip(&qm).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(d <= 1e-10, "probabilities differ by {d:e}");
        } else {
            assert!(fc.predict_proba_chunked(&xa).is_err(), "only classifiers have probabilities");
        }
        let sc = fc.score_chunked(&xa, &ya, &Scheduler::Sync).unwrap();
        let sm = Estimator::score(&memory, x.view(), y.view()).unwrap();
        assert!((sc - sm).abs() <= 1e-10, "scores differ: {sc} vs {sm}");
        sm
    }};
}

#[test]
fn chunked_fits_predictions_and_scores_equal_in_memory_ones() {
    use rask_glm::estimators::{
        GlmLinearRegressionParams, GlmLogisticRegressionParams, GlmPoissonRegressorParams,
    };
    let (x, ys, _) = fixtures();
    let xa = from_array(&x.clone().into_dyn(), [64, 5]).unwrap();
    let y = |family: &str| {
        Array1::from(serde_json::from_value::<Vec<f64>>(ys[family].clone()).unwrap())
    };
    let newton = |s: &str| (s.to_string(), 1e-10, 64);
    let (solver, tol, rows) = newton("newton");
    let accuracy = same_in_memory_and_chunked!(
        GlmLogisticRegression,
        GlmLogisticRegressionParams::default().solver(solver.clone()).tol(tol).chunk_rows(rows),
        &x,
        &xa,
        y("logistic"),
        2
    );
    assert!(accuracy > 0.6 && accuracy <= 1.0, "accuracy {accuracy}");
    let r2 = same_in_memory_and_chunked!(
        GlmLinearRegression,
        GlmLinearRegressionParams::default().solver(solver.clone()).tol(tol).chunk_rows(rows),
        &x,
        &xa,
        y("normal"),
        0
    );
    assert!(r2 > 0.0 && r2 <= 1.0, "R² {r2}");
    let d2 = same_in_memory_and_chunked!(
        GlmPoissonRegressor,
        GlmPoissonRegressorParams::default().alpha(0.01).solver(solver).tol(tol).chunk_rows(rows),
        &x,
        &xa,
        y("poisson"),
        0
    );
    assert!(d2 > 0.0 && d2 <= 1.0, "D² {d2}");
    let accuracy3 = same_in_memory_and_chunked!(
        GlmLogisticRegression,
        GlmLogisticRegressionParams::default().solver("newton".into()).tol(tol).chunk_rows(rows),
        &x,
        &xa,
        y("multinomial"),
        3
    );
    assert!(accuracy3 > 0.4 && accuracy3 <= 1.0, "accuracy {accuracy3}");
}

#[test]
fn bad_parameters_and_labels_are_named() {
    let mut e = create("GlmLogisticRegression").unwrap();
    let err = e.set_param("solver", ParamValue::Str("newtn".into())).unwrap_err().to_string();
    assert!(err.contains("solver") && err.contains("lbfgs"), "{err}");
    let err = e.set_param("C", ParamValue::F64(-1.0)).unwrap_err().to_string();
    assert!(err.contains("C") && err.contains("positive"), "{err}");
    let x = Array2::from_shape_fn((6, 2), |(i, j)| (i * 2 + j) as f64);
    let fractional = Array1::from(vec![0.0, 1.0, 0.5, 0.0, 1.0, 2.0]);
    let err = e.fit(x.view(), Some(fractional.view())).unwrap_err().to_string();
    assert!(err.contains("integers"), "{err}");
    // An L1 penalty with Newton: the error names the solvers that take it.
    e.set_param("l1_ratio", ParamValue::F64(1.0)).unwrap();
    e.set_param("solver", ParamValue::Str("newton".into())).unwrap();
    let two = Array1::from(vec![0.0, 1.0, 0.0, 1.0, 1.0, 0.0]);
    let err = e.fit(x.view(), Some(two.view())).unwrap_err().to_string();
    assert!(err.contains("proximal_grad"), "{err}");
    // Negative counts for Poisson name the row.
    let mut p = create("GlmPoissonRegressor").unwrap();
    let neg = Array1::from(vec![1.0, 2.0, -1.0, 0.0, 3.0, 1.0]);
    let err = p.fit(x.view(), Some(neg.view())).unwrap_err().to_string();
    assert!(err.contains("row 2") || err.contains(">= 0"), "{err}");
    let _ = Axis(0);
}
