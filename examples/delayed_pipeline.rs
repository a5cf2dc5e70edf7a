//! A first task graph: registered ops, a closure, a progress bar and a profile.
//!
//! Run with `cargo run --release --example delayed_pipeline`.

use std::sync::Arc;

use rask::{delayed, ComputeOptions, Delayed, Profiler, Progress, Scheduler};

rask::op! {
    /// Squares a number (stands in for real work).
    pub fn square(x: f64) -> f64 { (0..20_000).fold(x, |acc, _| acc * 0.999_999_9 + 0.000_000_1) * x }
    /// Adds two numbers.
    pub fn add(a: f64, b: f64) -> f64 { a + b }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. Build the graph: nothing runs yet.
    let squares: Vec<Delayed<f64>> = (0..2_000).map(|i| square(i as f64)).collect();
    let mut level = squares;
    while level.len() > 1 {
        let mut next: Vec<Delayed<f64>> =
            level.chunks_exact(2).map(|p| add(&p[0], &p[1])).collect();
        if level.len() % 2 == 1 {
            next.push(level.pop().expect("odd"));
        }
        level = next;
    }
    let total = level.pop().expect("non-empty");
    // Closures work too, on the local schedulers.
    let report = delayed("format", |t: f64| format!("sum of squares ≈ {t:.3e}")).call((&total,));

    // 2. Run it on the threaded scheduler with a progress bar and a profiler.
    let profiler = Arc::new(Profiler::new());
    let opts = ComputeOptions::new()
        .with_callback(Arc::new(Progress::new()))
        .with_callback(profiler.clone());
    println!("{}", report.compute_with(&Scheduler::threads(), &opts)?);

    // 3. Look at what happened.
    profiler.write_html("delayed_pipeline_profile.html")?;
    report.visualize("delayed_pipeline.dot")?;
    println!("wrote delayed_pipeline_profile.html and delayed_pipeline.dot");
    Ok(())
}
