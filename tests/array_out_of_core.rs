//! Out-of-core streaming: a reduction over chunk files totalling more than
//! four times a memory budget, with the peak of resident block bytes (every
//! block alive in this process, counted by `Block`) held under the budget.
//! Its own test binary, so no other test's blocks share the counters.

use rask::array::create::standard_normal;
use rask::array::npy::from_npy_stack;
use rask::array::{block_memory, reset_peak};
use rask::{ComputeOptions, Scheduler};

const MIB: i64 = 1 << 20;

#[test]
fn reduction_streams_chunk_files_four_times_the_memory_budget() {
    let budget = 64 * MIB;
    let (rows, cols, files) = (2048usize, 1024usize, 18usize); // 16 MiB per file, 288 MiB in all
    let dir = tempfile::tempdir().unwrap();
    let x = standard_normal(11, &[rows * files, cols], [rows, cols]).unwrap();
    reset_peak();
    x.to_npy_stack(dir.path()).unwrap();
    let on_disk: u64 =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert!(on_disk as i64 >= 4 * budget, "{on_disk} bytes on disk");
    assert!(
        block_memory().peak_bytes <= budget,
        "writing held {} MiB of blocks",
        block_memory().peak_bytes / MIB
    );

    let threads = Scheduler::Threads { workers: 2 };
    let opts = ComputeOptions::default();
    reset_peak();
    let lazy = from_npy_stack::<f64>(dir.path()).unwrap();
    assert_eq!(lazy.npartitions(), files);
    let col_sums = lazy.sum(&[0]).unwrap().compute_with(&threads, &opts).unwrap();
    let peak = block_memory().peak_bytes;
    assert!(
        peak <= budget,
        "the reduction held {} MiB of blocks at once (budget {} MiB)",
        peak / MIB,
        budget / MIB
    );
    assert!(peak >= 16 * MIB, "at least one 16 MiB block was resident ({} MiB)", peak / MIB);

    // The same numbers as the sums of the generated array (computed without files).
    let want = x.sum(&[0]).unwrap().compute_with(&threads, &opts).unwrap();
    for (g, w) in col_sums.iter().zip(want.iter()) {
        assert!((g - w).abs() <= 1e-12 * w.abs().max(1.0), "{g} vs {w}");
    }
    let std = lazy.std(&[], 0.0).unwrap().compute_with(&threads, &opts).unwrap()[[]];
    assert!((std - 1.0).abs() < 1e-3, "std {std}");
    assert_eq!(block_memory().live_blocks, 0, "no block outlives the computations");
}
