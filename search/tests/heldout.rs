//! The held-out-style regression pipeline of issue 18: StandardScaler →
//! PolynomialFeatures(2) → Ridge(α ∈ {0.1, 10, 1000}), shuffled 5-fold CV
//! (random_state 0) on 2,000 × 8 rows, against scikit-learn's
//! `GridSearchCV` on the same rows (`tests/fixtures/ml/heldout_pipeline.json`,
//! made by `make_fixtures.py`). Tolerance 1e-8 on every split's R²: the
//! same folds, closed-form Ridge on both sides.

use ndarray::{Array1, Array2};
use rask_ml::model_selection::Splitter;
use rask_ml::{create, ParamValue, Pipeline};
use rask_search::{grid, Cv, GridSearchCV};
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/ml/heldout_pipeline.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture file")).expect("JSON")
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
}

#[test]
fn the_polynomial_ridge_pipeline_scores_as_scikit_learn() {
    let f = fixture();
    let rows: Vec<Vec<f64>> = f["X"].as_array().unwrap().iter().map(numbers).collect();
    let x = Array2::from_shape_vec((rows.len(), rows[0].len()), rows.concat()).unwrap();
    let y = Array1::from(numbers(&f["y"]));
    let pipe = Pipeline::of(vec![
        ("scale", create("StandardScaler").unwrap()),
        ("poly", create("PolynomialFeatures").unwrap()),
        ("ridge", create("Ridge").unwrap()),
    ])
    .unwrap();
    let alphas: Vec<ParamValue> = numbers(&f["alphas"]).into_iter().map(ParamValue::F64).collect();
    let r = GridSearchCV::new(Box::new(pipe), vec![grid(vec![("ridge__alpha", alphas)])])
        .cv(Cv::Splitter(Splitter::KFold { n_splits: 5, shuffle: true, random_state: Some(0) }))
        .scoring(&["r2"])
        .fit(&x, &y)
        .unwrap();
    let want: Vec<Vec<f64>> = f["split_test"].as_array().unwrap().iter().map(numbers).collect();
    let got = &r.cv_results.split_test[0];
    assert_eq!(got.len(), 3);
    for (c, (g, w)) in got.iter().zip(&want).enumerate() {
        for (s, (a, b)) in g.iter().zip(w).enumerate() {
            assert!((a - b).abs() <= 1e-8, "candidate {c} split {s}: {a} vs scikit-learn {b}");
        }
    }
}
