//! A grid search over a scaler → PCA → logistic-regression pipeline, on the
//! threaded scheduler or, with `--cluster`, on a LocalCluster of 2 worker
//! processes. Each distinct pipeline prefix is fitted once per fold.
//!
//! ```sh
//! cargo run --release --example grid_search            # threads
//! cargo build --release && cargo run --release --example grid_search -- --cluster
//! ```

use std::sync::Arc;

use rask::ml::datasets::make_classification;
use rask::ml::{create, ParamValue, Pipeline};
use rask::search::{grid, Cv, GridSearchCV};
use rask::{ComputeOptions, Progress, Scheduler};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (x, y) = make_classification(5_000, 20, 6, 2, 42);
    let pipe = Pipeline::of(vec![
        ("scaler", create("StandardScaler")?),
        ("pca", create("PCA")?),
        ("logreg", create("LogisticRegression")?),
    ])?;
    let search = GridSearchCV::new(
        Box::new(pipe),
        vec![grid(vec![
            (
                "pca__n_components",
                vec![ParamValue::I64(3), ParamValue::I64(6), ParamValue::I64(12)],
            ),
            (
                "logreg__C",
                vec![
                    ParamValue::F64(0.01),
                    ParamValue::F64(0.1),
                    ParamValue::F64(1.0),
                    ParamValue::F64(10.0),
                ],
            ),
        ])],
    )
    .cv(Cv::Folds(5))
    .scoring(&["accuracy", "roc_auc"]);

    let cluster = if std::env::args().any(|a| a == "--cluster") {
        Some(rask::LocalCluster::new(2, 1)?)
    } else {
        None
    };
    let scheduler = match &cluster {
        Some(c) => c.client()?.scheduler(),
        None => Scheduler::threads(),
    };
    let opts = ComputeOptions::new().with_callback(Arc::new(Progress::new()));
    let result = search.fit_with(&x, &y, &scheduler, &opts)?;
    println!("{}", result.cv_results);
    println!(
        "best: {:?} (accuracy {:.4}); {} graph nodes for 60 fits",
        result.best_params, result.best_score, result.n_tasks
    );
    std::fs::write("grid_search_results.csv", result.cv_results.to_csv())?;
    println!("wrote grid_search_results.csv");
    Ok(())
}
