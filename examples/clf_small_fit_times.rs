//! Fit times of LogisticRegression and PCA on the peers' clf_small data (20000 × 50),
//! for comparison with scikit-learn on the same machine:
//!
//! ```sh
//! cargo run --release --example clf_small_fit_times -- ~/.cache/rask-peers/data/clf_small
//! ```

use std::time::Instant;

use rask::ml::datasets::load_npy_xy;
use rask::ml::decomposition::{PcaParams, PCA};
use rask::ml::linear_model::{LogisticRegression, LogisticRegressionParams};
use rask::ml::Estimator;

fn median_time(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[runs / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir =
        std::env::args().nth(1).ok_or("usage: clf_small_fit_times DIR (the clf_small folder)")?;
    let dir = std::path::PathBuf::from(dir);
    let (x, y) = load_npy_xy(dir.join("X.npy"), dir.join("y.npy"))?;
    for c in [0.01, 1.0, 100.0] {
        let t = median_time(5, || {
            let mut m = LogisticRegression::with_params(
                LogisticRegressionParams::default().c(c).max_iter(1000),
            );
            m.fit(x.view(), Some(y.view())).expect("fit");
        });
        println!("{{\"model\": \"LogisticRegression\", \"C\": {c}, \"seconds\": {t:.5}}}");
    }
    for k in [5, 30] {
        let t = median_time(5, || {
            let mut m = PCA::with_params(PcaParams::default().n_components(Some(k)));
            m.fit(x.view(), None).expect("fit");
        });
        println!("{{\"model\": \"PCA\", \"n_components\": {k}, \"seconds\": {t:.5}}}");
    }
    Ok(())
}
