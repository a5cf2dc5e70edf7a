//! Out of core: a Newton fit over `.npy` chunk files four times a block
//! budget gives the in-memory coefficients, while the peak of resident block
//! bytes (every `Block` alive in this process, counted, not timed) stays
//! under the budget. Its own test binary, so no other test's blocks share
//! the counters.

use rask_core::array::create::standard_normal;
use rask_core::array::npy::from_npy_stack;
use rask_core::array::ops::BinOp;
use rask_core::array::{block_memory, reset_peak};
use rask_core::{ComputeOptions, Scheduler};
use rask_glm::chunked::Chunked;
use rask_glm::data::InMemory;
use rask_glm::solve::{fit, Model, Options, Solver};
use rask_glm::{Family, Penalty};

const MIB: i64 = 1 << 20;

#[test]
fn a_fit_streams_chunk_files_four_times_the_block_budget() {
    let budget = 24 * MIB;
    let (rows, cols, files) = (65_536usize, 16usize, 12usize); // 8 MiB of X per file, 96 MiB in all
    let n = rows * files;
    let dir = std::env::temp_dir().join(format!("rask-glm-ooc-{}", std::process::id()));
    let x = standard_normal(21, &[n, cols], [rows, cols]).unwrap();
    // Targets that depend on X: 1 where the row sum plus noise is positive.
    let noise = standard_normal(22, &[n], rows).unwrap();
    let score = (&(&x.sum(&[1]).unwrap() * 0.3) + &noise).unwrap();
    let y = score.compare_scalar(0.0, BinOp::Gt).cast::<f64>();
    x.to_npy_stack(dir.join("x")).unwrap();
    y.to_npy_stack(dir.join("y")).unwrap();
    let on_disk: u64 = std::fs::read_dir(dir.join("x"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(on_disk as i64 >= 4 * budget, "{on_disk} bytes on disk");

    let model = Model {
        family: Family::Logistic,
        penalty: Penalty::l2(1e-4).unwrap(),
        fit_intercept: true,
    };
    let options = Options { max_iter: 50, tol: 1e-8 };
    reset_peak();
    let xf = from_npy_stack::<f64>(dir.join("x")).unwrap();
    let yf = from_npy_stack::<f64>(dir.join("y")).unwrap();
    let files_data = Chunked::new(Family::Logistic, &xf, &yf, None, Scheduler::Sync).unwrap();
    let streamed = fit(&files_data, model, Solver::Newton, options).unwrap();
    let peak = block_memory().peak_bytes;
    assert!(streamed.converged, "{streamed:?}");
    assert!(
        peak <= budget,
        "the fit held {} MiB of blocks at once (budget {} MiB)",
        peak / MIB,
        budget / MIB
    );
    assert!(peak >= 8 * MIB, "at least one 8 MiB block was resident ({} MiB)", peak / MIB);
    eprintln!(
        "peak {:.1} MiB of blocks for {} MiB of X files, {} Newton iterations",
        peak as f64 / MIB as f64,
        on_disk >> 20,
        streamed.n_iter
    );

    // The same fit with all of X in memory.
    let opts = ComputeOptions::default();
    let xm = x.compute_with(&Scheduler::Sync, &opts).unwrap();
    let ym = y.compute_with(&Scheduler::Sync, &opts).unwrap();
    let xm = xm.into_dimensionality::<ndarray::Ix2>().unwrap();
    let ym = ym.into_dimensionality::<ndarray::Ix1>().unwrap();
    let memory = InMemory::new(Family::Logistic, xm.view(), ym.view(), None, rows).unwrap();
    let whole = fit(&memory, model, Solver::Newton, options).unwrap();
    let diff = streamed
        .coef
        .iter()
        .zip(&whole.coef)
        .map(|(a, b)| (a - b).abs())
        .fold((streamed.intercept - whole.intercept).abs(), f64::max);
    assert!(diff <= 1e-9, "streamed and in-memory fits differ by {diff:e}");
    assert!(streamed.coef.iter().all(|c| (c - 0.3 * 1.7).abs() < 0.2), "{:?}", streamed.coef);
    std::fs::remove_dir_all(dir).unwrap();
}
