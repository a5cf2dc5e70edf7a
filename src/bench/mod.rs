//! The peer-comparison harness behind `rask bench`: each workload of
//! `../shared/peers/README.md` prints one JSON line per configuration, with the
//! same fields as the Python peers, so the two result files join on
//! `(workload, config)`.

#[cfg(feature = "burn")]
pub mod dl;
pub mod w1;
pub mod w2;
pub mod w3;
pub mod w4;
#[cfg(feature = "xgboost")]
pub mod w5;
pub mod w6;
pub mod w7;
pub mod w8;
pub mod w9;

use std::time::Instant;

use rask_core::Scheduler;
use serde_json::{json, Map, Value};

/// Knobs shared with the peer scripts (read from the environment).
#[derive(Debug, Clone)]
pub struct BenchEnv {
    /// `PEERS_REPEATS`: timed repetitions per configuration (`seconds` is their median).
    pub repeats: usize,
}

impl BenchEnv {
    /// Reads the knobs, with the peers' defaults.
    pub fn from_env() -> Result<Self, BenchError> {
        Ok(BenchEnv { repeats: env_usize("PEERS_REPEATS", 3)?.max(1) })
    }
}

/// A benchmark could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// An environment knob is not a number.
    #[error("environment variable {name}={value:?} is not a non-negative integer")]
    BadKnob {
        /// The variable.
        name: String,
        /// Its value.
        value: String,
    },
    /// The workload is not implemented by this build.
    #[error("unknown workload `{name}`; this build implements: {available}")]
    UnknownWorkload {
        /// What was asked.
        name: String,
        /// What exists.
        available: String,
    },
    /// A computation failed.
    #[error("workload {workload}: {source}")]
    Compute {
        /// The workload.
        workload: &'static str,
        /// The failure.
        source: rask_core::ComputeError,
    },
    /// The cluster could not start or failed.
    #[error("cluster: {message}")]
    Cluster {
        /// What happened.
        message: String,
    },
    /// A result was wrong: the benchmark refuses to report a time for it.
    #[error("workload {workload}: wrong result {got}, expected {expected}")]
    WrongResult {
        /// The workload.
        workload: &'static str,
        /// What came out.
        got: String,
        /// What should have.
        expected: String,
    },
}

/// Reads a non-negative integer knob.
pub fn env_usize(name: &str, default: usize) -> Result<usize, BenchError> {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().map_err(|_| BenchError::BadKnob { name: name.into(), value: v }),
        Err(_) => Ok(default),
    }
}

/// The median of `runs` (mean of the middle two for an even count).
pub fn median(runs: &[f64]) -> f64 {
    let mut v = runs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Times `f` `repeats` times; returns the median, every run's seconds, and
/// every run's result, for the caller to check each one.
pub fn measure<R>(repeats: usize, f: impl FnMut() -> R) -> (f64, Vec<f64>, Vec<R>) {
    measure_cold(repeats, || {}, f)
}

/// [`measure`], calling `reset` (untimed) before each repeat: what makes a
/// repeat start cold (dropped worker caches, cleared decomposition caches).
pub fn measure_cold<R>(
    repeats: usize,
    mut reset: impl FnMut(),
    mut f: impl FnMut() -> R,
) -> (f64, Vec<f64>, Vec<R>) {
    let mut runs = Vec::with_capacity(repeats);
    let mut results = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        reset();
        let t = Instant::now();
        let r = f();
        runs.push(round6(t.elapsed().as_secs_f64()));
        results.push(r);
    }
    (median(&runs), runs, results)
}

/// Checks every repeat: each must succeed and agree with the first (by
/// `same`). Returns the first result.
pub fn every_repeat<R, E: std::fmt::Display>(
    workload: &'static str,
    results: Vec<Result<R, E>>,
    same: impl Fn(&R, &R) -> bool,
) -> Result<R, BenchError> {
    let mut first: Option<R> = None;
    for (i, r) in results.into_iter().enumerate() {
        let r = r.map_err(|e| BenchError::WrongResult {
            workload,
            got: format!("repeat {} failed: {e}", i + 1),
            expected: "every repeat to succeed".into(),
        })?;
        match &first {
            None => first = Some(r),
            Some(f) if same(f, &r) => {}
            Some(_) => {
                return Err(BenchError::WrongResult {
                    workload,
                    got: format!("repeat {} differs from the first", i + 1),
                    expected: "the same result in every repeat".into(),
                })
            }
        }
    }
    first.ok_or_else(|| BenchError::WrongResult {
        workload,
        got: "no repeat ran".into(),
        expected: "at least one repeat".into(),
    })
}

/// Arrays equal to within 1e-9 of their largest magnitude (threads may sum in
/// another order from one repeat to the next).
pub fn close_arrays(a: &ndarray::ArrayD<f64>, b: &ndarray::ArrayD<f64>) -> bool {
    let scale = a.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    a.shape() == b.shape() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-9 * scale)
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// The 1-minute load average, as the peers record it.
pub fn loadavg_1m() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let v: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some((v * 100.0).round() / 100.0)
}

/// One result line in the peers' schema; `metrics` are appended after `runs`.
pub fn record(
    workload: &str,
    config: Value,
    seconds: f64,
    runs: &[f64],
    metrics: Map<String, Value>,
) -> Value {
    let mut rec = Map::new();
    rec.insert("workload".into(), json!(workload));
    rec.insert("system".into(), json!("rask"));
    rec.insert("config".into(), config);
    rec.insert("seconds".into(), json!(seconds));
    rec.insert("runs".into(), json!(runs));
    for (k, v) in metrics {
        rec.insert(k, v);
    }
    rec.entry("note").or_insert(Value::Null);
    rec.insert("loadavg_1m_end".into(), json!(loadavg_1m()));
    // Which matrix-product code this build links: OpenBLAS only with the
    // `blas` feature (chunked-array products); otherwise pure-Rust kernels.
    rec.entry("blas_threads").or_insert(Value::Null);
    rec.entry("blas").or_insert(json!(if cfg!(feature = "blas") {
        "openblas (system library, `blas` feature) for chunked-array products; matrixmultiply elsewhere"
    } else {
        "none: matrixmultiply (pure Rust, runtime AVX2/FMA dispatch)"
    }));
    Value::Object(rec)
}

/// The environment record printed before the results (`"workload": "meta"`).
pub fn meta_record() -> Value {
    json!({
        "workload": "meta",
        "system": "rask",
        "rask": env!("CARGO_PKG_VERSION"),
        "ncpu": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "loadavg": std::fs::read_to_string("/proc/loadavg").ok().map(|s| s.split_whitespace().take(3).map(String::from).collect::<Vec<_>>()),
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
    })
}

/// Names of the workloads this build implements.
pub const WORKLOADS: &[&str] = &["w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8", "w9", "dl"];

/// Where a workload runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The in-process schedulers (sync and threads).
    Local,
    /// A LocalCluster of worker processes started from this binary.
    LocalCluster {
        /// The `rask` binary to run as scheduler and workers.
        binary: std::path::PathBuf,
    },
}

/// Runs workload `name`, printing each JSON line to `out` as soon as it is measured.
/// `data` is the peers' data folder (needed by w3).
pub fn run(
    name: &str,
    target: &Target,
    data: Option<&std::path::Path>,
    env: &BenchEnv,
    out: &mut dyn FnMut(Value),
) -> Result<(), BenchError> {
    let need_data = || {
        data.ok_or_else(|| BenchError::Cluster {
            message: format!(
                "workload {name} needs --data DIR (the peers' data, e.g. ~/.cache/rask-peers/data)"
            ),
        })
    };
    match (name, target) {
        ("w1" | "w1_overhead", Target::Local) => w1::run(env, out),
        ("w1" | "w1_overhead", Target::LocalCluster { binary }) => {
            w1::run_cluster(env, binary.clone(), out)
        }
        ("w2" | "w2_array", Target::Local) => w2::run(env, out),
        ("w3" | "w3_search", Target::Local) => w3::run(env, need_data()?, None, out),
        ("w3" | "w3_search", Target::LocalCluster { binary }) => {
            let (_cluster, client) = bench_cluster(binary)?;
            w3::run(env, need_data()?, Some(&client), out)
        }
        ("w4" | "w4_glm", Target::Local) => {
            let mut config = Map::new();
            config.insert("scheduler".into(), json!("threads"));
            config.insert("num_workers".into(), json!(2));
            w4::run(env, need_data()?, Scheduler::threads_n(2), config, out)
        }
        ("w4" | "w4_glm", Target::LocalCluster { binary }) => {
            let (_cluster, client) = bench_cluster(binary)?;
            let mut config = Map::new();
            config.insert("scheduler".into(), json!("distributed"));
            config.insert("n_workers".into(), json!(2));
            config.insert("threads_per_worker".into(), json!(1));
            config.insert("processes".into(), json!(true));
            w4::run(env, need_data()?, client.scheduler(), config, out)
        }
        #[cfg(feature = "xgboost")]
        ("w5" | "w5_xgb", Target::Local) => {
            let binary = std::env::current_exe().map_err(|e| BenchError::Cluster {
                message: format!("cannot find this binary to start workers: {e}"),
            })?;
            w5::run(env, need_data()?, &binary, out)
        }
        #[cfg(feature = "xgboost")]
        ("w5" | "w5_xgb", Target::LocalCluster { binary }) => {
            w5::run(env, need_data()?, binary, out)
        }
        #[cfg(not(feature = "xgboost"))]
        ("w5" | "w5_xgb", _) => Err(BenchError::Cluster {
            message: "w5 needs XGBoost: build with `--features xgboost` (cargo xtask provision \
                      installs the library)"
                .into(),
        }),
        ("w6" | "w6_bag", Target::Local) => w6::run(env, need_data()?, None, out),
        ("w6" | "w6_bag", Target::LocalCluster { binary }) => {
            w6::run(env, need_data()?, Some(binary), out)
        }
        ("w7" | "w7_dataframe", Target::Local) => w7::run(env, need_data()?, None, out),
        ("w7" | "w7_dataframe", Target::LocalCluster { binary }) => {
            w7::run(env, need_data()?, Some(binary), out)
        }
        ("w8" | "w8_shuffle", Target::Local) => w8::run(env, need_data()?, None, out),
        ("w8" | "w8_shuffle", Target::LocalCluster { binary }) => {
            w8::run(env, need_data()?, Some(binary), out)
        }
        ("w9" | "w9_estimators", Target::Local) => {
            let only = std::env::var("W9_ONLY").ok();
            w9::run(env, need_data()?, only.as_deref(), out)
        }
        ("w9" | "w9_estimators", Target::LocalCluster { .. }) => Err(BenchError::Cluster {
            message: "w9 times single estimators in this process; run it without --scheduler"
                .into(),
        }),
        #[cfg(feature = "burn")]
        ("dl" | "dl_train", target) => {
            let binary = match target {
                Target::LocalCluster { binary } => binary.clone(),
                Target::Local => std::env::current_exe().map_err(|e| BenchError::Cluster {
                    message: format!("cannot find this binary to start workers: {e}"),
                })?,
            };
            dl::run(env, &binary, out)
        }
        #[cfg(not(feature = "burn"))]
        ("dl" | "dl_train", _) => Err(BenchError::Cluster {
            message: "dl_train needs the native trainer: build with `--features burn`".into(),
        }),
        (other, _) => {
            Err(BenchError::UnknownWorkload { name: other.into(), available: WORKLOADS.join(", ") })
        }
    }
}

/// TLS for benchmark clusters: the files named by `RASK_TLS_CA_FILE`,
/// `RASK_TLS_CERT` and `RASK_TLS_KEY` (a certificate for 127.0.0.1), if set.
pub(crate) fn bench_tls() -> Result<Option<rask_distributed::auth::TlsFiles>, BenchError> {
    rask_distributed::auth::Tls::from_env()
        .map(|t| t.map(|t| t.files))
        .map_err(|message| BenchError::Cluster { message })
}

/// The dashboard of benchmark clusters: on (as Dask's LocalCluster has its
/// own), unless `RASK_BENCH_DASHBOARD=off`.
pub(crate) fn bench_dashboard() -> Option<String> {
    match std::env::var("RASK_BENCH_DASHBOARD").as_deref() {
        Ok("off") | Ok("none") => None,
        _ => Some("127.0.0.1:0".into()),
    }
}

/// A headless browser viewing a dashboard while a benchmark runs
/// (`RASK_BENCH_BROWSER=/usr/bin/chromium`); killed on drop.
pub(crate) struct Viewer(Option<std::process::Child>);

impl Viewer {
    /// Opens `url` in the browser named by `RASK_BENCH_BROWSER`, if set.
    pub(crate) fn open(url: Option<&str>) -> Result<Viewer, BenchError> {
        let (Ok(browser), Some(url)) = (std::env::var("RASK_BENCH_BROWSER"), url) else {
            return Ok(Viewer(None));
        };
        let profile =
            std::env::temp_dir().join(format!("rask-bench-browser-{}", std::process::id()));
        let child = std::process::Command::new(&browser)
            .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| BenchError::Cluster { message: format!("cannot start {browser}: {e}") })?;
        // Let the page load and subscribe before timing starts.
        std::thread::sleep(std::time::Duration::from_secs(3));
        Ok(Viewer(Some(child)))
    }

    /// Whether a browser is viewing.
    pub(crate) fn active(&self) -> bool {
        self.0.is_some()
    }

    /// CPU seconds the browser has used so far: its process and every
    /// descendant (renderer, GPU and utility processes), from `/proc` (Linux;
    /// 0 elsewhere or without a browser). What the viewer costs the machine.
    pub(crate) fn cpu_seconds(&self) -> f64 {
        let Some(child) = &self.0 else { return 0.0 };
        let Ok(dir) = std::fs::read_dir("/proc") else { return 0.0 };
        // (pid, ppid, utime + stime + cutime + cstime in ticks)
        let procs: Vec<(u32, u32, f64)> = dir
            .flatten()
            .filter_map(|e| {
                let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
                let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
                let ppid: u32 = f.get(1)?.parse().ok()?;
                let ticks: f64 = f.get(11..15)?.iter().filter_map(|t| t.parse::<f64>().ok()).sum();
                Some((pid, ppid, ticks))
            })
            .collect();
        let mut tree = vec![child.id()];
        let mut i = 0;
        while i < tree.len() {
            let parent = tree[i];
            tree.extend(procs.iter().filter(|p| p.1 == parent).map(|p| p.0));
            i += 1;
        }
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        procs.iter().filter(|p| tree.contains(&p.0)).map(|p| p.2).sum::<f64>() / hz
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Where a collection workload (w6-w8) runs: the threads scheduler (one
/// thread per core, as the peers' threads and processes), or a 2-worker
/// LocalCluster of `binary`, kept alive as long as this.
pub(crate) struct RunOn {
    _cluster: Option<(rask_distributed::LocalCluster, rask_distributed::Client)>,
    /// The scheduler to compute on.
    pub scheduler: Scheduler,
    /// `threads` or `distributed`, for the record.
    pub name: &'static str,
    /// Threads, or worker processes.
    pub workers: usize,
    /// Whether the work runs in worker processes.
    pub processes: bool,
}

impl RunOn {
    /// Runs `f`, writing a performance report of it to `path` (the
    /// cluster's, with transfers and spills, or the local schedulers').
    pub(crate) fn report<R>(
        &self,
        path: &std::path::Path,
        f: impl FnOnce() -> R,
    ) -> Result<R, String> {
        match &self._cluster {
            Some((_, client)) => rask_distributed::report::performance_report(client, path, f)
                .map_err(|e| e.to_string()),
            None => rask_core::performance_report(path, f).map_err(|e| e.to_string()),
        }
    }

    pub(crate) fn new(cluster_binary: Option<&std::path::Path>) -> Result<RunOn, BenchError> {
        Ok(match cluster_binary {
            Some(binary) => {
                let (cluster, client) = bench_cluster(binary)?;
                let scheduler = client.scheduler();
                RunOn {
                    _cluster: Some((cluster, client)),
                    scheduler,
                    name: "distributed",
                    workers: 2,
                    processes: true,
                }
            }
            None => {
                let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
                RunOn {
                    _cluster: None,
                    scheduler: Scheduler::Threads { workers },
                    name: "threads",
                    workers,
                    processes: false,
                }
            }
        })
    }
}

/// A LocalCluster of 2 worker processes x 1 thread from `binary`, and a
/// client that is not the process default.
fn bench_cluster(
    binary: &std::path::Path,
) -> Result<(rask_distributed::LocalCluster, rask_distributed::Client), BenchError> {
    let cluster_err =
        |e: rask_distributed::DistError| BenchError::Cluster { message: e.to_string() };
    let cluster = rask_distributed::LocalCluster::with_options(rask_distributed::ClusterOptions {
        n_workers: 2,
        threads_per_worker: 1,
        binary: Some(binary.to_path_buf()),
        tls: bench_tls()?,
        ..Default::default()
    })
    .map_err(cluster_err)?;
    let opts = cluster.client_options().map_err(cluster_err)?;
    let client = rask_distributed::Client::connect_with(
        cluster.address(),
        rask_distributed::ClientOptions { set_as_default: false, ..opts },
    )
    .map_err(cluster_err)?;
    Ok((cluster, client))
}
