//! `rask demo` (the README's first command): a grid search over a scaler → PCA
//! → logistic-regression pipeline on a LocalCluster of worker processes, with
//! a progress bar, the ranked results table, and `cv_results.{csv,json}`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use rask_core::{ComputeOptions, Progress};
use rask_distributed::{ClientOptions, ClusterOptions, LocalCluster};
use rask_ml::datasets::make_classification;
use rask_ml::{create, ParamValue, Pipeline};
use rask_search::{grid, Cv, GridSearchCV, SearchResult};

/// Settings of the search demo.
#[derive(Debug, Clone)]
pub struct SearchDemoConfig {
    /// Rows of the generated data set.
    pub samples: usize,
    /// Worker processes.
    pub workers: usize,
    /// The binary run as scheduler and workers (the `rask` executable).
    pub binary: PathBuf,
    /// Folder for `cv_results.csv` and `cv_results.json`.
    pub out_dir: PathBuf,
    /// Draw the progress bar.
    pub progress: bool,
    /// Keep the cluster (and its dashboard) up this long after the search.
    pub linger: std::time::Duration,
    /// Where the dashboard listens (`HOST:PORT`; port 0: any free one).
    pub dashboard: String,
}

/// Runs the demo; returns the search result and the seconds it took.
pub fn run(cfg: &SearchDemoConfig) -> Result<(SearchResult, f64), Box<dyn std::error::Error>> {
    let (x, y) = make_classification(cfg.samples, 20, 6, 2, 7);
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
            ("logreg__C", [0.001, 0.01, 0.1, 1.0, 10.0].into_iter().map(ParamValue::F64).collect()),
        ])],
    )
    .cv(Cv::Folds(5))
    .scoring(&["accuracy", "roc_auc"]);
    println!("starting a LocalCluster: 1 scheduler + {} worker processes", cfg.workers);
    let cluster = LocalCluster::with_options(ClusterOptions {
        n_workers: cfg.workers,
        threads_per_worker: 1,
        binary: Some(cfg.binary.clone()),
        dashboard: Some(cfg.dashboard.clone()),
        ..ClusterOptions::default()
    })?;
    println!("scheduler at {} (logs in {})", cluster.address(), cluster.log_dir().display());
    if let Some(url) = cluster.dashboard_link() {
        println!("dashboard: {url}");
    }
    let client = rask_distributed::Client::connect_with(
        cluster.address(),
        ClientOptions { set_as_default: false, ..Default::default() },
    )?;
    println!(
        "grid search: {} candidates x 5 folds on {} rows (StandardScaler -> PCA -> LogisticRegression)",
        search.candidates()?.len(),
        cfg.samples
    );
    let mut opts = ComputeOptions::new();
    if cfg.progress {
        opts = opts.with_callback(Arc::new(Progress::new()));
    }
    let t = Instant::now();
    let result = search.fit_with(&x, &y, &client.scheduler(), &opts)?;
    let seconds = t.elapsed().as_secs_f64();
    std::fs::create_dir_all(&cfg.out_dir)?;
    std::fs::write(cfg.out_dir.join("cv_results.csv"), result.cv_results.to_csv())?;
    std::fs::write(
        cfg.out_dir.join("cv_results.json"),
        serde_json::to_string_pretty(&result.cv_results.to_json())?,
    )?;
    if !cfg.linger.is_zero() {
        println!(
            "keeping the cluster up for {:.0} s (--linger): {}",
            cfg.linger.as_secs_f64(),
            cluster.dashboard_link().unwrap_or("no dashboard")
        );
        std::thread::sleep(cfg.linger);
    }
    Ok((result, seconds))
}

/// Prints the results the way `rask demo` does.
pub fn print_report(cfg: &SearchDemoConfig, r: &SearchResult, seconds: f64) {
    println!("\n{}", r.cv_results);
    let params: Vec<String> = r.best_params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("best: {} (mean accuracy {:.4})", params.join(" "), r.best_score);
    println!(
        "{} fits in {:.2} s; the graph had {} tasks: each scaler/PCA prefix fitted once per fold",
        r.cv_results.n_candidates() * r.cv_results.n_splits(),
        seconds,
        r.n_tasks
    );
    println!("wrote {} and cv_results.json", cfg.out_dir.join("cv_results.csv").display());
}
