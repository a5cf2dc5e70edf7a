//! GridSearchCV / RandomizedSearchCV behaviour: scheduler independence,
//! prefix caching visible in the graph, error handling, results tables.

use std::collections::BTreeMap;

use ndarray::{Array1, Array2};
use rask_core::{ComputeOptions, Scheduler};
use rask_ml::datasets::make_classification;
use rask_ml::{create, ParamValue, Pipeline};
use rask_search::{
    grid, Cv, Distribution, ErrorScore, GridSearchCV, RandomizedSearchCV, Refit, SearchCV,
    SearchError,
};

fn data() -> (Array2<f64>, Array1<f64>) {
    make_classification(240, 8, 4, 2, 3)
}

fn pipeline() -> Box<dyn rask_ml::Estimator> {
    Box::new(
        Pipeline::of(vec![
            ("scale", create("StandardScaler").unwrap()),
            ("pca", create("PCA").unwrap()),
            ("logreg", create("LogisticRegression").unwrap()),
        ])
        .unwrap(),
    )
}

fn search() -> SearchCV {
    GridSearchCV::new(
        pipeline(),
        vec![grid(vec![
            ("pca__n_components", vec![ParamValue::I64(2), ParamValue::I64(4), ParamValue::I64(6)]),
            ("logreg__C", vec![ParamValue::F64(0.01), ParamValue::F64(1.0)]),
        ])],
    )
    .cv(Cv::Folds(3))
}

#[test]
fn identical_scores_on_every_local_scheduler() {
    let (x, y) = data();
    let s = search().scoring(&["accuracy", "neg_log_loss"]).refit(Refit::By("neg_log_loss".into()));
    let a = s.fit_with(&x, &y, &Scheduler::Sync, &ComputeOptions::new()).unwrap();
    let b = s.fit_with(&x, &y, &Scheduler::threads_n(2), &ComputeOptions::new()).unwrap();
    assert_eq!(a.cv_results.split_test, b.cv_results.split_test);
    assert_eq!(a.best_index, b.best_index);
    assert_eq!(a.cv_results.n_candidates(), 6);
    assert!(a.best_estimator.is_some());
    // Best by log-loss: the refit scorer decides.
    let ll = a.cv_results.mean_test(1);
    assert!(ll.iter().all(|v| *v <= ll[a.best_index] + 1e-12));
}

#[test]
fn shared_prefixes_are_one_node_each() {
    let (x, y) = data();
    let r = search().fit(&x, &y).unwrap();
    // 1 data node + 3 fold splits + 3 scaler fits + 9 PCA fits + 18 final fits.
    assert_eq!(r.n_tasks, 1 + 3 + 3 + 9 + 18);
}

#[test]
fn results_table_has_sklearns_columns() {
    let (x, y) = data();
    let r = search().return_train_score(true).fit(&x, &y).unwrap();
    let json = r.cv_results.to_json();
    for col in [
        "params",
        "param_logreg__C",
        "param_pca__n_components",
        "split0_test_score",
        "split2_test_score",
        "mean_test_score",
        "std_test_score",
        "rank_test_score",
        "mean_fit_time",
        "std_fit_time",
        "mean_score_time",
        "split0_train_score",
        "mean_train_score",
    ] {
        assert_eq!(json[col].as_array().map(Vec::len), Some(6), "column {col}");
    }
    let ranks: Vec<u64> =
        json["rank_test_score"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(ranks[r.best_index], 1);
    let csv = r.cv_results.to_csv();
    assert_eq!(csv.lines().count(), 7);
    assert!(csv.lines().next().unwrap().contains("mean_test_score"));
    let table = r.cv_results.to_string();
    assert!(table.lines().nth(1).unwrap().trim_start().starts_with('1'), "{table}");
    assert_eq!(r.best_params, r.cv_results.params[r.best_index]);
}

#[test]
fn failing_candidates_record_the_error_and_the_search_completes() {
    let (x, y) = data();
    // n_components 0 is refused at configuration, 20 > 8 features fails at fit.
    let g = grid(vec![(
        "pca__n_components",
        vec![ParamValue::I64(0), ParamValue::I64(3), ParamValue::I64(20)],
    )]);
    let r = GridSearchCV::new(pipeline(), vec![g.clone()])
        .cv(Cv::Folds(3))
        .error_score(ErrorScore::Value(-1.0))
        .fit(&x, &y)
        .unwrap();
    let m = r.cv_results.mean_test(0);
    assert_eq!(m[0], -1.0);
    assert_eq!(m[2], -1.0);
    assert!(m[1] > 0.5);
    assert_eq!(r.best_index, 1);
    assert!(r.cv_results.errors[0].as_deref().unwrap().contains("n_components"));
    assert!(r.cv_results.errors[2].as_deref().unwrap().contains("at most"));
    assert!(r.cv_results.errors[1].is_none());
    // With "raise" the first failure stops the search with its error.
    let err = GridSearchCV::new(pipeline(), vec![g])
        .cv(Cv::Folds(3))
        .error_score(ErrorScore::Raise)
        .fit(&x, &y)
        .unwrap_err();
    assert!(matches!(err, SearchError::Candidate { index: 0, .. }), "{err}");
    // NaN (the default) ranks failing candidates last.
    let g = grid(vec![("pca__n_components", vec![ParamValue::I64(20), ParamValue::I64(3)])]);
    let r = GridSearchCV::new(pipeline(), vec![g]).cv(Cv::Folds(3)).fit(&x, &y).unwrap();
    assert_eq!(r.cv_results.rank_test(0), vec![2, 1]);
}

#[test]
fn randomized_search_draws_reproducible_candidates() {
    let (x, y) = data();
    let mut d = BTreeMap::new();
    d.insert("logreg__C".to_string(), Distribution::LogUniform { low: 1e-3, high: 1e2 });
    d.insert("pca__n_components".to_string(), Distribution::RandInt { low: 2, high: 7 });
    let s = RandomizedSearchCV::new(pipeline(), d, 5, 42).cv(Cv::Folds(3));
    let a = s.fit(&x, &y).unwrap();
    let b = s.fit(&x, &y).unwrap();
    assert_eq!(a.cv_results.params, b.cv_results.params);
    assert_eq!(a.cv_results.split_test, b.cv_results.split_test);
    assert_eq!(a.cv_results.n_candidates(), 5);
}

#[test]
fn bad_search_settings_are_clear_errors() {
    let (x, y) = data();
    let err = search().scoring(&["acuracy"]).fit(&x, &y).unwrap_err().to_string();
    assert!(err.contains("unknown scorer `acuracy`"), "{err}");
    let err = search().refit(Refit::By("f1".into())).fit(&x, &y).unwrap_err().to_string();
    assert!(err.contains("refit scorer \"f1\""), "{err}");
    let err = search().cv(Cv::Folds(1)).fit(&x, &y).unwrap_err().to_string();
    assert!(err.contains("at least 2"), "{err}");
    let short = y.slice(ndarray::s![..10]).to_owned();
    assert!(search().fit(&x, &short).is_err());
}
