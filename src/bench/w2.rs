//! W2 `w2_array`: chunked array operations (see `../shared/peers/README.md`):
//! a W2_N × W2_N standard-normal array in W2_CHUNK² blocks on the threads
//! scheduler: `gen` (persist), `sum_t` ((x + xᵀ).mean(axis 0) on the persisted
//! x), `matmul` ((x @ xᵀ)[:M, :M]) and `sum_t_lazy` (generation included).
//! It also measures the machine's memory bandwidth with a STREAM-like triad
//! and reports each elementwise+reduction run as a fraction of it.

use std::time::Instant;

use ndarray::{ArrayD, Ix1, Ix2};
use serde_json::{json, Map, Value};

use super::{close_arrays, env_usize, every_repeat, measure, record, BenchEnv, BenchError};
use rask_core::array::create::standard_normal;
use rask_core::array::index::Sel;
use rask_core::array::{Array, ArrayError};
use rask_core::{ComputeOptions, Scheduler};

fn err(e: ArrayError) -> BenchError {
    match e {
        ArrayError::Compute(source) => {
            BenchError::Compute { workload: "w2_array", source: *source }
        }
        other => BenchError::Cluster { message: other.to_string() },
    }
}

/// Best-of-5 triad `a = b + s·c` over 3 × 64 Mi doubles split across `threads`
/// (STREAM counts 24 bytes per element: two reads, one write).
pub fn stream_triad(threads: usize) -> f64 {
    let n = 1usize << 26;
    let (mut a, b, c) = (vec![0.0f64; n], vec![1.0f64; n], vec![2.0f64; n]);
    let part = n.div_ceil(threads);
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        std::thread::scope(|s| {
            for ((a, b), c) in a.chunks_mut(part).zip(b.chunks(part)).zip(c.chunks(part)) {
                s.spawn(move || {
                    for ((x, &y), &z) in a.iter_mut().zip(b).zip(c) {
                        *x = y + 3.0 * z;
                    }
                });
            }
        });
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(&a);
    24.0 * n as f64 / best / 1e9
}

fn sum_t(x: &Array<f64>) -> Result<Array<f64>, ArrayError> {
    x.add(&x.t())?.mean(&[0])
}

fn sum_t_quality(v: &ArrayD<f64>, n: usize) -> Map<String, Value> {
    let v = v.view().into_dimensionality::<Ix1>().expect("1-d");
    let mean = v.mean().unwrap_or(f64::NAN);
    let std = v.std(0.0);
    let mut m = Map::new();
    m.insert("result_len".into(), json!(v.len()));
    m.insert("result_mean".into(), json!(mean));
    m.insert("result_std_times_sqrt_n_over_2".into(), json!(std * (n as f64 / 2.0).sqrt()));
    m
}

fn matmul_quality(g: &ArrayD<f64>, n: usize) -> Map<String, Value> {
    let g = g.view().into_dimensionality::<Ix2>().expect("2-d");
    let k = g.nrows();
    let trace: f64 = g.diag().sum();
    let off: Vec<f64> = g.indexed_iter().filter(|((i, j), _)| i != j).map(|(_, &v)| v).collect();
    let mean = off.iter().sum::<f64>() / off.len().max(1) as f64;
    let std =
        (off.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / off.len().max(1) as f64).sqrt();
    let asym = g.indexed_iter().map(|((i, j), &v)| (v - g[[j, i]]).abs()).fold(0.0, f64::max);
    let mut m = Map::new();
    m.insert("result_shape".into(), json!([k, g.ncols()]));
    m.insert("trace_over_n_times_cols".into(), json!(trace / (k as f64 * n as f64)));
    m.insert("offdiag_std_over_sqrt_cols".into(), json!(std / (n as f64).sqrt()));
    m.insert("symmetric_max_abs".into(), json!(asym));
    m
}

/// Runs W2 on the threads scheduler.
pub fn run(env: &BenchEnv, out: &mut dyn FnMut(Value)) -> Result<(), BenchError> {
    let n = env_usize("W2_N", 20000)?;
    let chunk = env_usize("W2_CHUNK", 2000)?.max(1);
    let mm = env_usize("W2_MATMUL_N", 4000)?.min(n);
    let workers = std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1);
    let threads = Scheduler::Threads { workers };
    let opts = ComputeOptions::default();
    let base = |op: &str| {
        let mut c = Map::new();
        c.insert("n".into(), json!(n));
        c.insert("chunks".into(), json!([chunk, chunk]));
        c.insert("scheduler".into(), json!("threads"));
        c.insert("num_workers".into(), json!(workers));
        c.insert("op".into(), json!(op));
        c
    };

    let triad = stream_triad(workers);
    let mut m = Map::new();
    m.insert("gbytes_per_s".into(), json!(triad));
    m.insert(
        "note".into(),
        json!("STREAM-like triad a = b + s*c, 3 x 512 MiB, best of 5, 24 bytes per element"),
    );
    out(record("w2_array", Value::Object(base("stream_triad")), 0.0, &[], m));

    let x_lazy = standard_normal(0, &[n, n], [chunk, chunk]).map_err(err)?;
    let mut kept: Option<Array<f64>> = None;
    let (sec, runs, persisted) = measure(env.repeats, || -> Result<(), BenchError> {
        kept = None;
        kept = Some(x_lazy.persist_with(&threads, &opts).map_err(err)?);
        Ok(())
    });
    persisted.into_iter().collect::<Result<Vec<()>, _>>()?;
    let x = kept.ok_or_else(|| BenchError::Cluster { message: "persist failed".into() })?;
    let mut m = Map::new();
    m.insert("gbytes".into(), json!((n * n * 8) as f64 / 1e9));
    out(record("w2_array", Value::Object(base("gen")), sec, &runs, m));

    // sum_t reads x twice (x and its transpose): 16 n² bytes.
    let touched = 16.0 * (n * n) as f64 / 1e9;
    let (sec, runs, v) =
        measure(env.repeats, || sum_t(&x).and_then(|e| e.compute_with(&threads, &opts)));
    let v = every_repeat("w2_array", v, close_arrays)?;
    let mut m = sum_t_quality(&v, n);
    m.insert("gbytes_per_s".into(), json!(touched / sec));
    m.insert("fraction_of_triad".into(), json!(touched / sec / triad));
    let mut cfg = base("sum_t");
    cfg.insert("expr".into(), json!("(x + x.T).mean(axis=0)"));
    out(record("w2_array", Value::Object(cfg), sec, &runs, m));

    let product = || -> Result<ArrayD<f64>, ArrayError> {
        x.matmul(&x.t())?
            .slice(&[Sel::range(0, mm as i64), Sel::range(0, mm as i64)])?
            .compute_with(&threads, &opts)
    };
    let (sec, runs, g) = measure(env.repeats, product);
    let g = every_repeat("w2_array", g, close_arrays)?;
    let mut m = matmul_quality(&g, n);
    m.insert("gflops_nominal".into(), json!(2.0 * (mm * mm) as f64 * n as f64 / sec / 1e9));
    let mut cfg = base("matmul");
    cfg.insert("expr".into(), json!(format!("(x @ x.T)[:{mm}, :{mm}]")));
    out(record("w2_array", Value::Object(cfg), sec, &runs, m));
    drop(g);
    drop(x);

    let (sec, runs, v) =
        measure(env.repeats, || sum_t(&x_lazy).and_then(|e| e.compute_with(&threads, &opts)));
    let v = every_repeat("w2_array", v, close_arrays)?;
    let mut m = sum_t_quality(&v, n);
    m.insert("gbytes_per_s".into(), json!(touched / sec));
    let mut cfg = base("sum_t_lazy");
    cfg.insert("expr".into(), json!("(x + x.T).mean(axis=0) incl. generation"));
    out(record("w2_array", Value::Object(cfg), sec, &runs, m));
    Ok(())
}
