//! XGBoost on a 2-worker LocalCluster of `rask` processes (which rebuild the
//! estimator by name and run libxgboost): a grid search over XGBClassifier
//! (max_depth × learning_rate) gives the same fold scores as on the threaded
//! scheduler (tolerance 1e-12: the same library, data and seed; nthread = 1
//! so that no thread race reorders a histogram sum), and predictions over a
//! chunked array run on the workers and equal the in-memory ones.
#![cfg(feature = "xgboost")]

use std::path::PathBuf;

use rask::distributed::{ClusterOptions, LocalCluster};
use rask::ml::datasets::make_classification;
use rask::ml::{create, ParamValue};
use rask::search::{grid, Cv, GridSearchCV};
use rask::xgboost::XGBClassifier;
use rask::{ComputeOptions, Scheduler};

/// A LocalCluster of 2 `rask` worker processes × 1 thread.
fn two_workers() -> LocalCluster {
    LocalCluster::with_options(ClusterOptions {
        n_workers: 2,
        threads_per_worker: 1,
        binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_rask"))),
        ..ClusterOptions::default()
    })
    .expect("cluster starts")
}

#[test]
fn grid_search_over_xgboost_gives_the_same_scores_on_threads_and_a_cluster() {
    let (x, y) = make_classification(400, 6, 4, 2, 11);
    let mut base = create("XGBClassifier").unwrap();
    base.set_param("n_estimators", ParamValue::I64(15)).unwrap();
    base.set_param("nthread", ParamValue::I64(1)).unwrap();
    let search = || {
        GridSearchCV::new(
            base.clone_unfitted(),
            vec![grid(vec![
                ("max_depth", vec![ParamValue::I64(2), ParamValue::I64(4)]),
                ("learning_rate", vec![ParamValue::F64(0.1), ParamValue::F64(0.5)]),
            ])],
        )
        .cv(Cv::Folds(3))
    };
    let opts = ComputeOptions::default();
    let local = search().fit_with(&x, &y, &Scheduler::threads_n(2), &opts).unwrap();
    let cluster = two_workers();
    let client = cluster.client().unwrap();
    let remote = search().fit_with(&x, &y, &client.scheduler(), &opts).unwrap();
    assert_eq!(local.cv_results.params, remote.cv_results.params);
    assert!(local.cv_results.errors.iter().all(Option::is_none), "{:?}", local.cv_results.errors);
    assert!(remote.cv_results.errors.iter().all(Option::is_none), "{:?}", remote.cv_results.errors);
    for (a, b) in local.cv_results.split_test[0].iter().zip(&remote.cv_results.split_test[0]) {
        for (s, t) in a.iter().zip(b) {
            assert!((s - t).abs() <= 1e-12, "threads {s} vs cluster {t}");
        }
    }
    assert_eq!(local.best_params, remote.best_params);
    assert!(local.best_score > 0.7, "{}", local.best_score);
}

#[test]
fn predictions_over_a_chunked_array_run_on_the_workers() {
    let (x, y) = make_classification(300, 4, 3, 2, 5);
    let mut e = XGBClassifier::new();
    rask::ml::Estimator::set_param(&mut e, "n_estimators", ParamValue::I64(10)).unwrap();
    rask::ml::Estimator::fit(&mut e, x.view(), Some(y.view())).unwrap();
    let want = rask::ml::Estimator::predict(&e, x.view()).unwrap();
    let xa = rask::array::create::from_array(&x.clone().into_dyn(), [100, 4]).unwrap();
    let cluster = two_workers();
    let client = cluster.client().unwrap();
    let opts = ComputeOptions::default();
    let got = e.fitted().unwrap().predict_chunked(&xa).unwrap();
    let got = got.compute_with(&client.scheduler(), &opts).unwrap();
    assert_eq!(got.as_slice().unwrap(), want.as_slice().unwrap());
}
