//! `rask demo`: a Monte Carlo estimate of π as a task graph.
//!
//! `chunks` independent sampling tasks (each a seeded stream of random points)
//! feed a binary tree of additions; the graph runs on the threaded scheduler
//! with a progress bar and a profiler, and the demo writes the profile
//! (`profile.html`) and the graph (`graph.dot`, plus `graph.svg` when Graphviz
//! is installed) into an output folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rask_core::{ComputeError, ComputeOptions, Delayed, Profiler, Progress, Scheduler};

rask_core::op! {
    /// Counts how many of `n` random points of the unit square fall inside the
    /// quarter circle, from the random stream `seed`.
    pub fn sample_hits(seed: u64, n: u64) -> u64 {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
        let mut next = || {
            // splitmix64: small, fast, and good enough for a demo.
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..n).filter(|_| { let (x, y) = (next(), next()); x * x + y * y <= 1.0 }).count() as u64
    }
    /// Adds two counts.
    pub fn add_counts(a: u64, b: u64) -> u64 { a + b }
}

/// Settings of the demo.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Number of sampling tasks.
    pub chunks: u64,
    /// Random points per task.
    pub samples_per_chunk: u64,
    /// Folder for `profile.html` and the graph drawings.
    pub out_dir: PathBuf,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

/// What the demo computed.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// The estimate of π.
    pub pi: f64,
    /// Number of tasks in the graph.
    pub n_tasks: usize,
    /// Wall time of the compute, seconds.
    pub seconds: f64,
    /// Files written.
    pub files: Vec<PathBuf>,
}

/// Pairwise sums down to one value.
pub fn tree_sum(mut level: Vec<Delayed<u64>>) -> Delayed<u64> {
    while level.len() > 1 {
        let mut next: Vec<Delayed<u64>> =
            level.chunks_exact(2).map(|p| add_counts(&p[0], &p[1])).collect();
        if level.len() % 2 == 1 {
            next.push(level.pop().expect("odd length"));
        }
        level = next;
    }
    level.pop().unwrap_or_else(|| rask_core::value(0u64))
}

/// Builds and runs the demo graph.
pub fn run(cfg: &DemoConfig) -> Result<DemoReport, DemoError> {
    let samples: Vec<Delayed<u64>> =
        (0..cfg.chunks).map(|seed| sample_hits(seed, cfg.samples_per_chunk)).collect();
    let hits = tree_sum(samples);
    let graph = hits.graph();
    let n_tasks = graph.len();

    std::fs::create_dir_all(&cfg.out_dir)
        .map_err(|source| DemoError::Io { path: cfg.out_dir.clone(), source })?;
    let profiler = Arc::new(Profiler::new());
    let mut opts = ComputeOptions::new().with_callback(profiler.clone());
    if cfg.progress {
        opts = opts.with_callback(Arc::new(Progress::new()));
    }
    let t = Instant::now();
    let total = hits.compute_with(&Scheduler::threads(), &opts)?;
    let seconds = t.elapsed().as_secs_f64();
    let pi = 4.0 * total as f64 / (cfg.chunks * cfg.samples_per_chunk).max(1) as f64;

    let mut files = Vec::new();
    let profile = cfg.out_dir.join("profile.html");
    profiler
        .write_html(&profile)
        .map_err(|source| DemoError::Io { path: profile.clone(), source })?;
    files.push(profile);
    let dot = cfg.out_dir.join("graph.dot");
    rask_core::graph::visualize(&graph, &dot)?;
    files.push(dot);
    // The SVG is a bonus: only drawn for small graphs, and only if Graphviz is there.
    if n_tasks <= 2000 && has_graphviz() {
        let svg = cfg.out_dir.join("graph.svg");
        rask_core::graph::visualize(&graph, &svg)?;
        files.push(svg);
    }
    Ok(DemoReport { pi, n_tasks, seconds, files })
}

fn has_graphviz() -> bool {
    std::process::Command::new("dot").arg("-V").output().is_ok_and(|o| o.status.success())
}

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// The computation failed.
    #[error(transparent)]
    Compute(#[from] ComputeError),
    /// Writing an output failed.
    #[error("could not write {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Drawing the graph failed.
    #[error(transparent)]
    Visualize(#[from] rask_core::graph::VisualizeError),
}

/// Prints the report the way `rask demo` does.
pub fn print_report(cfg: &DemoConfig, r: &DemoReport) {
    let n = cfg.chunks * cfg.samples_per_chunk;
    println!(
        "π ≈ {:.6}  (error {:.2e}, {} random points)",
        r.pi,
        (r.pi - std::f64::consts::PI).abs(),
        n
    );
    println!(
        "{} tasks on {} threads in {:.3} s ({:.0} points/s)",
        r.n_tasks,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        r.seconds,
        n as f64 / r.seconds
    );
    for f in &r.files {
        println!("wrote {}", display(f));
    }
}

fn display(p: &Path) -> String {
    p.display().to_string()
}
