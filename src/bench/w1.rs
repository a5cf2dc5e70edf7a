//! W1 `w1_overhead`: task-scheduling overhead (see `../shared/peers/README.md`).
//!
//! (a) a binary-tree sum over `inc(i)`, i = 0..W1_N_LEAVES (199,999 tasks for
//! 100,000 leaves); (c) a chain of W1_N_CHAIN dependent `inc`. Each graph is built
//! once through the public `Delayed` API (`build_seconds`); `seconds` is the
//! median of the computes, and a compute includes everything `compute()` does:
//! materializing the graph, planning, ordering and running it.

use std::time::Instant;

use serde_json::{json, Map, Value};

use super::{env_usize, measure_cold, record, BenchEnv, BenchError};
use rask_core::{ComputeOptions, Delayed, Scheduler};

rask_core::op! {
    /// `x + 1`.
    pub fn inc(x: i64) -> i64 { x + 1 }
    /// `a + b`.
    pub fn add(a: i64, b: i64) -> i64 { a + b }
}

/// The tree of (a): leaves `inc(i)`, then pairwise `add` level by level (an odd
/// last element is carried up). Returns the root and the number of tasks.
pub fn build_tree(n_leaves: usize) -> (Delayed<i64>, usize) {
    let mut level: Vec<Delayed<i64>> = (0..n_leaves as i64).map(inc).collect();
    let mut n_tasks = level.len();
    while level.len() > 1 {
        let mut next: Vec<Delayed<i64>> =
            level.chunks_exact(2).map(|p| add(&p[0], &p[1])).collect();
        n_tasks += next.len();
        if level.len() % 2 == 1 {
            next.push(level.pop().expect("odd length"));
        }
        level = next;
    }
    (level.pop().expect("at least one leaf"), n_tasks)
}

/// The chain of (c): `x_{k+1} = inc(x_k)`, `x_0 = 0`.
pub fn build_chain(n: usize) -> Delayed<i64> {
    let mut x = inc(0);
    for _ in 1..n {
        x = inc(x);
    }
    x
}

fn scheduler_config(s: &Scheduler) -> Map<String, Value> {
    let mut c = Map::new();
    c.insert("scheduler".into(), json!(s.name()));
    if let Scheduler::Threads { workers } = s {
        c.insert("num_workers".into(), json!(workers));
    }
    c
}

/// Times the computes of `g` (calling `reset` untimed before each) and
/// checks every repeat's result.
fn time_compute(
    env: &BenchEnv,
    g: &Delayed<i64>,
    s: &Scheduler,
    reset: &dyn Fn(),
    expected: i64,
) -> Result<(f64, Vec<f64>, i64), BenchError> {
    let opts = ComputeOptions::new();
    let (sec, runs, results) = measure_cold(env.repeats, reset, || g.compute_with(s, &opts));
    for res in results {
        let res = res.map_err(|source| BenchError::Compute { workload: "w1_overhead", source })?;
        if res != expected {
            return Err(BenchError::WrongResult {
                workload: "w1_overhead",
                got: res.to_string(),
                expected: expected.to_string(),
            });
        }
    }
    Ok((sec, runs, expected))
}

/// Builds the tree of (a), times its compute on `s` and emits the record.
fn tree_part(
    env: &BenchEnv,
    s: &Scheduler,
    reset: &dyn Fn(),
    mut config: Map<String, Value>,
    n_leaves: usize,
    out: &mut dyn FnMut(Value),
) -> Result<(), BenchError> {
    let t = Instant::now();
    let (tree, n_tasks) = build_tree(n_leaves);
    let build = t.elapsed().as_secs_f64();
    let expected = (n_leaves as i64) * (n_leaves as i64 + 1) / 2;
    let (sec, runs, res) = time_compute(env, &tree, s, reset, expected)?;
    config.insert("part".into(), json!("a_tree"));
    config.insert("n_leaves".into(), json!(n_leaves));
    config.insert("n_tasks".into(), json!(n_tasks));
    let mut m = Map::new();
    m.insert("result".into(), json!(res));
    m.insert("correct".into(), json!(res == expected));
    m.insert("tasks_per_second".into(), json!(n_tasks as f64 / sec));
    m.insert("build_seconds".into(), json!(build));
    m.insert("tasks_per_second_incl_build".into(), json!(n_tasks as f64 / (sec + build)));
    out(record("w1_overhead", Value::Object(config), sec, &runs, m));
    Ok(())
}

/// Builds the chain of (c), times its compute on `s` and emits the record.
fn chain_part(
    env: &BenchEnv,
    s: &Scheduler,
    reset: &dyn Fn(),
    mut config: Map<String, Value>,
    n_chain: usize,
    out: &mut dyn FnMut(Value),
) -> Result<(), BenchError> {
    let t = Instant::now();
    let chain = build_chain(n_chain);
    let build = t.elapsed().as_secs_f64();
    let (sec, runs, res) = time_compute(env, &chain, s, reset, n_chain as i64)?;
    config.insert("part".into(), json!("c_chain"));
    config.insert("n_tasks".into(), json!(n_chain));
    let mut m = Map::new();
    m.insert("result".into(), json!(res));
    m.insert("correct".into(), json!(res == n_chain as i64));
    m.insert("tasks_per_second".into(), json!(n_chain as f64 / sec));
    m.insert("us_per_task".into(), json!(sec / n_chain as f64 * 1e6));
    m.insert("build_seconds".into(), json!(build));
    out(record("w1_overhead", Value::Object(config), sec, &runs, m));
    Ok(())
}

/// Runs W1 (a), (b) and (c) on a LocalCluster of 2 worker processes × 1 thread
/// (the peers' distributed configuration), started from `binary`.
pub fn run_cluster(
    env: &BenchEnv,
    binary: std::path::PathBuf,
    out: &mut dyn FnMut(Value),
) -> Result<(), BenchError> {
    use rask_distributed::{ClientOptions, ClusterOptions, LocalCluster};
    let n_leaves = env_usize("W1_N_LEAVES", 100_000)?.max(1);
    let n_chain = env_usize("W1_N_CHAIN", 10_000)?.max(1);
    let n_submit = env_usize("W1_N_SUBMIT", 1_000)?.max(1);
    let cluster_err =
        |e: rask_distributed::DistError| BenchError::Cluster { message: e.to_string() };
    let tls = super::bench_tls()?;
    let with_tls = tls.is_some();
    let cluster = LocalCluster::with_options(ClusterOptions {
        n_workers: 2,
        threads_per_worker: 1,
        binary: Some(binary),
        tls,
        dashboard: super::bench_dashboard(),
        ..ClusterOptions::default()
    })
    .map_err(cluster_err)?;
    let viewer = super::Viewer::open(cluster.dashboard_link())?;
    let opts = cluster.client_options().map_err(cluster_err)?;
    let client = rask_distributed::Client::connect_with(
        cluster.address(),
        ClientOptions { set_as_default: false, ..opts },
    )
    .map_err(cluster_err)?;
    let s = client.scheduler();
    let config = || {
        let mut c = Map::new();
        c.insert("scheduler".into(), json!("distributed"));
        c.insert("n_workers".into(), json!(2));
        c.insert("threads_per_worker".into(), json!(1));
        c.insert("processes".into(), json!(true));
        c.insert("tls".into(), json!(with_tls));
        c.insert("dashboard".into(), json!(cluster.dashboard_link().is_some()));
        c.insert("dashboard_viewer".into(), json!(viewer.active()));
        c.insert("before_each_repeat".into(), json!("worker fetch caches dropped"));
        c
    };

    // Each repeat starts cold: no worker keeps fetched copies from the last one
    // (the scheduler has forgotten its tasks: their futures were released).
    let reset = || {
        let _ = client.drop_worker_caches();
    };
    tree_part(env, &s, &reset, config(), n_leaves, out)?;
    chain_part(env, &s, &reset, config(), n_chain, out)?;

    // (b) sequential submit -> result round trips, after one untimed warm-up batch.
    let roundtrips = || -> Result<(), BenchError> {
        for i in 0..n_submit as i64 {
            let f = client.submit(&inc(i)).map_err(cluster_err)?;
            let r = f.result().map_err(cluster_err)?;
            if r != i + 1 {
                return Err(BenchError::WrongResult {
                    workload: "w1_overhead",
                    got: r.to_string(),
                    expected: (i + 1).to_string(),
                });
            }
        }
        Ok(())
    };
    roundtrips()?;
    let browser_cpu = viewer.cpu_seconds();
    let (sec, runs, results) = measure_cold(env.repeats, reset, roundtrips);
    let browser_cpu = viewer.cpu_seconds() - browser_cpu;
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    let mut c = config();
    c.insert("part".into(), json!("b_submit"));
    c.insert("n_roundtrips".into(), json!(n_submit));
    let mut m = Map::new();
    m.insert("us_per_roundtrip".into(), json!(sec / n_submit as f64 * 1e6));
    m.insert(
        "runs_us_per_roundtrip".into(),
        json!(runs.iter().map(|r| r / n_submit as f64 * 1e6).collect::<Vec<_>>()),
    );
    if viewer.active() {
        // What the viewing browser cost the machine while the round trips ran.
        m.insert("viewer_cpu_seconds".into(), json!(browser_cpu));
        m.insert(
            "viewer_cpu_percent_of_one_core".into(),
            json!(100.0 * browser_cpu / runs.iter().sum::<f64>()),
        );
    }
    out(record("w1_overhead", Value::Object(c), sec, &runs, m));
    drop(viewer);
    drop(client);
    drop(cluster);
    Ok(())
}

/// Runs W1 (a) and (c) on the sync and threaded schedulers.
pub fn run(env: &BenchEnv, out: &mut dyn FnMut(Value)) -> Result<(), BenchError> {
    let n_leaves = env_usize("W1_N_LEAVES", 100_000)?.max(1);
    let n_chain = env_usize("W1_N_CHAIN", 10_000)?.max(1);

    for s in [Scheduler::Sync, Scheduler::threads()] {
        tree_part(env, &s, &|| {}, scheduler_config(&s), n_leaves, out)?;
        chain_part(env, &s, &|| {}, scheduler_config(&s), n_chain, out)?;
    }
    Ok(())
}
