//! A grid search tunes the registered GLM estimators like any other: `C`,
//! `l1_ratio` and `solver` as data, on the threaded scheduler. Solvers that
//! reach the same optimum get the same fold scores (tolerance 1e-9: the
//! predictions are the same labels), and errors (Newton with an L1 penalty)
//! are recorded per candidate, naming the solvers that take the penalty.

use rask::ml::datasets::make_classification;
use rask::ml::{create, ParamValue};
use rask::search::{grid, Cv, GridSearchCV};
use rask::{ComputeOptions, Scheduler};

#[test]
fn grid_search_tunes_glm_logistic_regression() {
    let (x, y) = make_classification(600, 6, 3, 2, 7);
    let search = GridSearchCV::new(
        create("GlmLogisticRegression").unwrap(),
        vec![grid(vec![
            ("C", vec![ParamValue::F64(0.01), ParamValue::F64(1.0)]),
            ("l1_ratio", vec![ParamValue::F64(0.0), ParamValue::F64(0.5)]),
            (
                "solver",
                vec![
                    ParamValue::Str("lbfgs".into()),
                    ParamValue::Str("proximal_grad".into()),
                    ParamValue::Str("newton".into()),
                ],
            ),
        ])],
    )
    .cv(Cv::Folds(3));
    let result = search.fit_with(&x, &y, &Scheduler::threads_n(2), &ComputeOptions::default());
    let result = result.unwrap();
    let cv = &result.cv_results;
    assert_eq!(cv.params.len(), 12);
    let solver = |c: usize| match &cv.params[c]["solver"] {
        ParamValue::Str(s) => s.clone(),
        other => panic!("{other:?}"),
    };
    for c in 0..12 {
        let l1 = cv.params[c]["l1_ratio"] == ParamValue::F64(0.5);
        match (&cv.errors[c], solver(c).as_str(), l1) {
            (Some(e), "newton", true) => assert!(e.contains("proximal_grad"), "{e}"),
            (None, "newton", true) => panic!("Newton took an L1 penalty"),
            (Some(e), _, _) => panic!("candidate {c} failed: {e}"),
            (None, ..) => {}
        }
    }
    // lbfgs and proximal_grad reach the same optima: the same fold scores.
    let mut pairs = 0;
    for c in (0..12).filter(|&c| solver(c) == "lbfgs") {
        let same = |d: usize| {
            solver(d) == "proximal_grad"
                && cv.params[d]["C"] == cv.params[c]["C"]
                && cv.params[d]["l1_ratio"] == cv.params[c]["l1_ratio"]
        };
        let d = (0..12).find(|&d| same(d)).expect("the matching candidate");
        for f in 0..3 {
            let (a, b) = (cv.split_test[0][c][f], cv.split_test[0][d][f]);
            assert!((a - b).abs() <= 1e-9, "fold {f}: lbfgs {a} vs proximal_grad {b}");
        }
        pairs += 1;
    }
    assert_eq!(pairs, 4);
    assert!(result.best_score > 0.6, "{}", result.best_score);
    let best = result.best_estimator.expect("refitted");
    assert_eq!(best.type_name(), "GlmLogisticRegression");
    assert!(best.score(x.view(), y.view()).unwrap() > 0.6);
}
