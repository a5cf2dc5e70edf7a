//! `dl_train`: the native data-parallel trainer (`rask::dl::train`, feature
//! `burn`), which no peer script covers (the issue asks for Rask's own
//! scaling). One MLP, one generated data set, three lines:
//! - `single_process`: [`train_local`] (burn's ndarray backend, or libtorch
//!   with the `tch` feature; one thread);
//! - `two_workers`: [`train`] on a 2-worker LocalCluster (one thread each),
//!   the data already on the workers, gradients summed by the ring;
//! - `all_reduce_1m`: a model of about 1M parameters on the 2 workers,
//!   reporting the ring's seconds per step.
//!
//! Every repeat is a fresh training from the same seed (no state carries
//! over; the data blocks stay on the workers, as the input). Its loss curve
//! must match the single process within 1e-4 relative, step by step.

use std::path::Path;

use ndarray::Array2;
use rask_core::array::create::from_array;
use rask_integrations::dl::train::{train, train_local, MlpConfig, TrainData, TrainOptions};
use serde_json::{json, Map, Value};

use super::{bench_cluster, measure, record, BenchEnv, BenchError};

const ROWS: usize = 16384;
const FEATURES: usize = 32;
const BATCH: usize = 1024;

fn data() -> (Array2<f64>, Array2<f64>) {
    let mut s: u64 = 7;
    let mut next = || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    };
    let x = Array2::from_shape_fn((ROWS, FEATURES), |_| next());
    let y = Array2::from_shape_fn((ROWS, 1), |(i, _)| {
        let r = x.row(i);
        (2.0 * r[0]).sin() + r[1] * r[2] - 0.5 * r[3] + 0.1 * r[31]
    });
    (x, y)
}

fn options<'a>(steps: usize) -> TrainOptions<'a> {
    TrainOptions { steps, batch_size: BATCH, learning_rate: 0.01, seed: 3, ..Default::default() }
}

fn wrong(got: String, expected: String) -> BenchError {
    BenchError::WrongResult { workload: "dl_train", got, expected }
}

/// The losses agree with the reference within 1e-4 relative, step by step.
fn check(got: &[f32], want: &[f32]) -> Result<(), BenchError> {
    let bad = got.len() != want.len()
        || got.iter().zip(want).any(|(a, b)| (a - b).abs() > 1e-4 * b.abs().max(1e-3));
    if bad {
        return Err(wrong(format!("losses {got:?}"), format!("the single process's {want:?}")));
    }
    Ok(())
}

/// Runs the three lines; the cluster's workers are `binary`.
pub fn run(env: &BenchEnv, binary: &Path, out: &mut dyn FnMut(Value)) -> Result<(), BenchError> {
    let (x, y) = data();
    let config = MlpConfig::new(FEATURES, &[256, 256], 1);
    let steps = 100;
    let fail = |e: rask_integrations::dl::DlError| wrong(e.to_string(), "a training".into());
    let reference = train_local(x.view(), y.view(), &config, options(steps)).map_err(fail)?;
    let base = |mode: &str, config: &MlpConfig, steps: usize| {
        json!({
            "mode": mode,
            "model": format!("MLP {FEATURES}->{:?}->1, ReLU, MSE", config.hidden),
            "params": config.num_params(),
            "rows": ROWS,
            "batch": BATCH,
            "steps": steps,
            "optimizer": "SGD, lr 0.01",
            "backend": format!(
                "burn 0.20 {} + autodiff",
                rask_integrations::dl::train::model::BACKEND
            ),
        })
    };
    let samples = (steps * BATCH) as f64;

    let (sec, runs, results) = measure(env.repeats, || {
        train_local(x.view(), y.view(), &config, options(steps)).map_err(fail)
    });
    for r in results {
        check(&r?.losses, &reference.losses)?;
    }
    let mut m = Map::new();
    m.insert("samples_per_s".into(), json!(samples / sec));
    m.insert("compute_s_per_step".into(), json!(reference.timings[0].0 / steps as f64));
    m.insert("final_loss".into(), json!(reference.losses[steps - 1]));
    out(record("dl_train", base("single_process", &config, steps), sec, &runs, m));
    let single_sec = sec;

    let (_cluster, client) = bench_cluster(binary)?;
    let chunks = vec![vec![ROWS / 8; 8], vec![FEATURES]];
    let xa =
        from_array(&x.clone().into_dyn(), chunks).map_err(|e| wrong(e.to_string(), "X".into()))?;
    let ya = from_array(&y.clone().into_dyn(), vec![vec![ROWS / 8; 8], vec![1]])
        .map_err(|e| wrong(e.to_string(), "y".into()))?;
    let d = TrainData::new(&client, &xa, &ya).map_err(fail)?;
    let (sec, runs, results) =
        measure(env.repeats, || train(&client, &d, &config, options(steps)).map_err(fail));
    let (mut reduce, mut compute, mut inside) = (Vec::new(), Vec::new(), Vec::new());
    for r in results {
        let t = r?;
        if t.world != 2 {
            return Err(wrong(format!("{} members", t.world), "2".into()));
        }
        check(&t.losses, &reference.losses)?;
        reduce.push(t.timings.iter().map(|p| p.1).fold(0.0, f64::max) / steps as f64);
        compute.push(t.timings.iter().map(|p| p.0).fold(0.0, f64::max) / steps as f64);
        inside.push(t.seconds);
    }
    let mut m = Map::new();
    m.insert("samples_per_s".into(), json!(samples / sec));
    m.insert("speedup_vs_single_process".into(), json!(single_sec / sec));
    m.insert("compute_s_per_step".into(), json!(median(&mut compute)));
    m.insert("gang_seconds".into(), json!(median(&mut inside)));
    m.insert("all_reduce_s_per_step".into(), json!(median(&mut reduce)));
    m.insert("final_loss".into(), json!(reference.losses[steps - 1]));
    out(record("dl_train", base("two_workers", &config, steps), sec, &runs, m));

    // About 1M parameters: the ring's cost per step.
    let big = MlpConfig::new(FEATURES, &[1024, 960], 1);
    let big_steps = 10;
    let (sec, runs, results) =
        measure(env.repeats, || train(&client, &d, &big, options(big_steps)).map_err(fail));
    let mut reduce = Vec::new();
    let mut curves = Vec::new();
    for r in results {
        let t = r?;
        reduce.push(t.timings.iter().map(|p| p.1).fold(0.0, f64::max) / big_steps as f64);
        curves.push(t.losses);
    }
    for c in &curves[1..] {
        check(c, &curves[0])?;
    }
    let mut m = Map::new();
    m.insert("all_reduce_s_per_step".into(), json!(median(&mut reduce)));
    m.insert("all_reduce_bytes".into(), json!((big.num_params() + 1) * 4));
    m.insert("samples_per_s".into(), json!((big_steps * BATCH) as f64 / sec));
    out(record("dl_train", base("all_reduce_1m", &big, big_steps), sec, &runs, m));
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}
