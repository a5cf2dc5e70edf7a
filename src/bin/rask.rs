//! The `rask` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "rask",
    version,
    about = "Parallel and distributed computing for Rust, built for machine learning",
    after_help = "Cluster processes (`rask scheduler --help` for every option):\n  rask scheduler [--listen HOST:PORT] [--contact-address HOST] [--scheduler-file PATH] [--token-file PATH] [--tls-ca-file PATH --tls-cert PATH --tls-key PATH]\n  rask worker ADDR|--scheduler-file PATH [--nthreads N] [--memory-limit 4GiB] [--resources GPU=1] [--name NAME] [--local-dir DIR] [--listen HOST] [--contact-address HOST] [--token-file PATH] [--tls-* …]\n  rask ssh HOST1 HOST2 … [--scheduler-port N] [--nthreads N] [--nworkers N] [--scheduler-file PATH] [--ssh-option OPT]… [--token-file PATH] [--tls-* …]: scheduler on HOST1, workers on the rest, over OpenSSH; Ctrl-C stops them all"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the demo: a grid search on a LocalCluster (or, with --pi, a Monte Carlo estimate of π).
    Demo {
        /// Run the π demo instead (threads, progress bar, profile).
        #[arg(long)]
        pi: bool,
        /// Rows of the search demo's data set.
        #[arg(long, default_value_t = 6000)]
        samples: usize,
        /// Worker processes of the search demo.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// π demo: number of sampling tasks.
        #[arg(long, default_value_t = 400)]
        chunks: u64,
        /// π demo: random points per task.
        #[arg(long, default_value_t = 500_000)]
        samples_per_chunk: u64,
        /// Output folder (cv_results.csv/json, or profile.html and graph drawings).
        #[arg(long, default_value = "rask-demo")]
        out: PathBuf,
        /// Do not draw the progress bar.
        #[arg(long)]
        no_progress: bool,
        /// Keep the cluster and its dashboard up this many seconds after the search.
        #[arg(long, default_value_t = 0.0)]
        linger: f64,
        /// Where the search demo's dashboard listens (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:8787")]
        dashboard_address: String,
    },
    /// Run a peer-comparison workload and print JSON lines (schema of shared/peers/README.md).
    Bench {
        /// Workload: w1 (task overhead), w2 (chunked arrays), w3 (grid search), w4 (GLM),
        /// w5 (XGBoost), w6 (bag word count), w7 (CSV group-by), w8 (Parquet shuffles; `W8_ONLY=<op>` runs one),
        /// w9 (the estimator zoo; `W9_ONLY=<name>` runs one estimator).
        workload: String,
        /// Folder with the peers' generated data (`$PEERS_HOME/data`).
        #[arg(long)]
        data: Option<PathBuf>,
        /// `local` (sync and threads) or `local-cluster` (2 worker processes x 1 thread).
        #[arg(long, default_value = "local")]
        scheduler: String,
    },
    /// Run a grid or randomized search described by a TOML spec (see `rask::spec`).
    Search {
        /// The spec file.
        #[arg(long)]
        spec: PathBuf,
        /// Do not draw the progress bar.
        #[arg(long)]
        no_progress: bool,
    },
    /// Fit a GLM on chunked data described by a TOML spec (see `rask::glm_spec`).
    Glm {
        /// The spec file.
        #[arg(long)]
        spec: PathBuf,
    },
    /// Train XGBoost on data described by a TOML spec (see `rask::xgb_spec`; needs `--features xgboost`).
    Xgb {
        /// The spec file.
        #[arg(long)]
        spec: PathBuf,
    },
    /// List the ops registered in this binary (what a worker built from it can run).
    Ops,
    /// Deep-learning jobs on the workers (`rask::dl`).
    Dl {
        #[command(subcommand)]
        command: DlCommand,
    },
}

#[derive(Subcommand)]
enum DlCommand {
    /// Place a job's members on the workers (free ports, TF_CONFIG, MASTER_ADDR, RANK, …),
    /// run COMMAND on each, stream their lines here, and stop them all when one fails.
    /// Exits with the failed member's code.
    Launch(DlLaunch),
}

#[derive(clap::Args)]
struct DlLaunch {
    /// The scheduler's address (credentials from $RASK_TOKEN and $RASK_TLS_*).
    #[arg(long, conflicts_with_all = ["scheduler_file", "local"])]
    scheduler: Option<String>,
    /// The scheduler file that `rask scheduler --scheduler-file` wrote.
    #[arg(long, conflicts_with = "local")]
    scheduler_file: Option<PathBuf>,
    /// Start a LocalCluster of N worker processes for the job, instead.
    #[arg(long)]
    local: Option<usize>,
    /// Named roles in rank order, e.g. `chief=1,worker=2,ps=1` (TensorFlow).
    #[arg(long, conflicts_with = "world")]
    roles: Option<String>,
    /// A PyTorch-style world of N ranks (default: one rank per worker).
    #[arg(long)]
    world: Option<usize>,
    /// What each member's worker must have, e.g. `GPU=1` (repeatable).
    #[arg(long)]
    resources: Vec<String>,
    /// Also pick a tracker port on rank 0's host (RASK_DL_TRACKER).
    #[arg(long)]
    tracker: bool,
    /// Seconds between stopping a member (SIGTERM) and killing it.
    #[arg(long, default_value_t = 5.0)]
    grace: f64,
    /// The command each member runs, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

fn main() -> ExitCode {
    // `rask scheduler …` and `rask worker …` (shared with user binaries).
    if let Some(code) = rask::distributed::cli::run_if_subcommand() {
        return code;
    }
    let cli = Cli::parse();
    let result: Result<(), Box<dyn std::error::Error>> = match cli.command {
        Command::Demo {
            pi: false,
            samples,
            workers,
            out,
            no_progress,
            linger,
            dashboard_address,
            ..
        } => (|| -> Result<(), Box<dyn std::error::Error>> {
            let cfg = rask::demo_search::SearchDemoConfig {
                samples,
                workers,
                binary: std::env::current_exe()?,
                out_dir: out,
                progress: !no_progress,
                linger: std::time::Duration::from_secs_f64(linger.max(0.0)),
                dashboard: dashboard_address,
            };
            let (r, seconds) = rask::demo_search::run(&cfg)?;
            rask::demo_search::print_report(&cfg, &r, seconds);
            Ok(())
        })(),
        Command::Demo { pi: true, chunks, samples_per_chunk, out, no_progress, .. } => {
            let cfg = rask::demo::DemoConfig {
                chunks,
                samples_per_chunk,
                out_dir: out,
                progress: !no_progress,
            };
            println!(
                "Rask demo: estimating π from {} random points in {} tasks (+ a tree of sums)",
                chunks * samples_per_chunk,
                chunks
            );
            rask::demo::run(&cfg).map(|r| rask::demo::print_report(&cfg, &r)).map_err(Into::into)
        }
        Command::Bench { workload, data, scheduler } => run_bench(&workload, data, &scheduler),
        Command::Glm { spec } => run_glm(&spec),
        Command::Xgb { spec } => run_xgb(&spec),
        Command::Search { spec, no_progress } => run_search(&spec, !no_progress),
        Command::Ops => {
            for name in rask::op::registered_ops() {
                println!("{name}");
            }
            Ok(())
        }
        Command::Dl { command: DlCommand::Launch(args) } => {
            return match run_dl_launch(args) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What keeps a scheduler alive: a LocalCluster and its client, or a client.
type Connection = (Option<rask::distributed::LocalCluster>, Option<rask::Client>);

/// The scheduler a spec names, and what keeps it alive.
fn connect(
    spec: &rask::spec::SchedulerSpec,
) -> Result<(rask::Scheduler, Connection), Box<dyn std::error::Error>> {
    use rask::spec::SchedulerSpec;
    let mut _cluster = None;
    let mut _client = None;
    let scheduler = match spec {
        SchedulerSpec::Sync => rask::Scheduler::Sync,
        SchedulerSpec::Threads => rask::Scheduler::threads(),
        SchedulerSpec::Local(n) => {
            let c =
                rask::distributed::LocalCluster::with_options(rask::distributed::ClusterOptions {
                    n_workers: *n,
                    threads_per_worker: 1,
                    binary: Some(std::env::current_exe()?),
                    ..Default::default()
                })?;
            let client = c.client()?;
            let s = client.scheduler();
            _cluster = Some(c);
            _client = Some(client);
            s
        }
        SchedulerSpec::Address(addr) => {
            let client = rask::Client::connect(addr)?;
            let s = client.scheduler();
            _client = Some(client);
            s
        }
    };
    Ok((scheduler, (_cluster, _client)))
}

/// `rask dl launch`: the job's exit code is the command's.
fn run_dl_launch(args: DlLaunch) -> Result<ExitCode, Box<dyn std::error::Error>> {
    use rask::dl::{launch, start_cluster, DlOptions, LaunchOptions, Roles, Stream};
    use std::io::Write;
    use std::time::Duration;
    // Bad arguments are refused before any process starts.
    let roles = match (&args.roles, args.world) {
        (Some(text), _) => Some(Roles::Named(parse_roles(text)?)),
        (None, Some(n)) => Some(Roles::World(n)),
        (None, None) => None,
    };
    let resources = args
        .resources
        .iter()
        .map(|r| parse_resource(r).map_err(|e| format!("--resources {r:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    if !(args.grace >= 0.0 && args.grace.is_finite()) {
        return Err(format!("--grace {}: give seconds, 0 or more", args.grace).into());
    }
    let _cluster;
    let client = match (&args.scheduler, &args.scheduler_file, args.local) {
        (Some(addr), _, _) => rask::Client::connect(addr)?,
        (_, Some(file), _) => {
            let addr = rask::distributed::scheduler_file::address(file, Duration::from_secs(60))
                .map_err(|e| format!("--scheduler-file {}: {e}", file.display()))?;
            rask::Client::connect(&addr)?
        }
        (_, _, Some(n)) => {
            let c =
                rask::distributed::LocalCluster::with_options(rask::distributed::ClusterOptions {
                    n_workers: n,
                    threads_per_worker: 1,
                    binary: Some(std::env::current_exe()?),
                    ..Default::default()
                })?;
            let client = c.client()?;
            _cluster = c;
            client
        }
        (None, None, None) => {
            return Err("say where the workers are: --scheduler ADDR, --scheduler-file PATH, \
                        or --local N (a LocalCluster of N workers)"
                .into())
        }
    };
    // Default: one rank per worker.
    let roles = match roles {
        Some(r) => r,
        None => Roles::World(client.workers()?.len()),
    };
    let spec = start_cluster(
        &client,
        &roles,
        &DlOptions { resources, tracker: args.tracker, ..DlOptions::default() },
    )?;
    for m in &spec.members {
        eprintln!(
            "rank {} ({} {}) on worker {}, port {}:{}",
            m.rank, m.role, m.index, m.worker, m.host, m.port
        );
    }
    let options = LaunchOptions {
        on_line: Some(Box::new(|role: &str, rank, stream, line: &str| {
            // A closed pipe (`| head`) is not the job's failure.
            let _ = match stream {
                Stream::Stdout => writeln!(std::io::stdout(), "[{role} {rank}] {line}"),
                Stream::Stderr => writeln!(std::io::stderr(), "[{role} {rank}] {line}"),
            };
        })),
        grace: Duration::from_secs_f64(args.grace),
        keep_for_dashboard: true,
        // Ctrl-C ends this process: its members see the connection close and stop.
        cancel: None,
    };
    let report = launch(&client, &spec, &args.command, options)?;
    let codes: Vec<String> = report
        .members
        .iter()
        .map(|m| {
            format!("{} {}: {}", m.role, m.rank, m.code.map_or("stopped".into(), |c| c.to_string()))
        })
        .collect();
    eprintln!("exit codes: {}", codes.join(", "));
    Ok(match report.failed {
        None => ExitCode::SUCCESS,
        Some(f) => {
            eprintln!(
                "error: {} rank {} failed with {}; the others were stopped. Its last lines:",
                f.role,
                f.rank,
                f.code.map_or("no exit code (killed or lost)".into(), |c| format!("exit code {c}"))
            );
            for line in &f.tail {
                eprintln!("  {line}");
            }
            ExitCode::from(
                f.code.and_then(|c| u8::try_from(c).ok()).filter(|&c| c != 0).unwrap_or(1),
            )
        }
    })
}

/// `chief=1,worker=2` into (role, count) pairs, in order.
fn parse_roles(text: &str) -> Result<Vec<(String, usize)>, String> {
    text.split(',')
        .map(|part| {
            let (name, count) = part.split_once('=').ok_or_else(|| {
                format!("--roles {text:?}: {part:?} is not ROLE=COUNT (e.g. chief=1,worker=2)")
            })?;
            let count = count.trim().parse().map_err(|_| {
                format!("--roles {text:?}: the count of {name:?} is not a whole number")
            })?;
            Ok((name.trim().to_string(), count))
        })
        .collect()
}

/// `GPU=1` into a resource and its amount.
fn parse_resource(text: &str) -> Result<(String, f64), String> {
    let (name, amount) = text.split_once('=').ok_or("use NAME=AMOUNT, e.g. GPU=1")?;
    let amount: f64 = amount.trim().parse().map_err(|_| format!("{amount:?} is not a number"))?;
    if !(amount > 0.0 && amount.is_finite()) {
        return Err(format!("the amount of {name} must be positive"));
    }
    Ok((name.trim().to_string(), amount))
}

fn run_search(path: &std::path::Path, progress: bool) -> Result<(), Box<dyn std::error::Error>> {
    let spec = rask::spec::load(path)?;
    let (scheduler, _connection) = connect(&spec.scheduler)?;
    let n = spec.search.candidates()?.len();
    println!(
        "searching {n} candidates on {} rows x {} features ({})",
        spec.x.nrows(),
        spec.x.ncols(),
        scheduler.name()
    );
    let mut opts = rask::ComputeOptions::new();
    if progress {
        opts = opts.with_callback(std::sync::Arc::new(rask::Progress::new()));
    }
    let started = std::time::Instant::now();
    let result = spec.search.fit_with(&spec.x, &spec.y, &scheduler, &opts)?;
    let seconds = started.elapsed().as_secs_f64();
    println!("{}", result.cv_results);
    let params: Vec<String> = result.best_params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("best: {} (score {:.5})", params.join(" "), result.best_score);
    // The search alone: folds, fits, scores and the refit, not loading or writing.
    println!("search time: {seconds:.3} s");
    std::fs::create_dir_all(&spec.out_dir)?;
    std::fs::write(
        spec.out_dir.join("cv_results.json"),
        serde_json::to_string_pretty(&result.cv_results.to_json())?,
    )?;
    std::fs::write(spec.out_dir.join("cv_results.csv"), result.cv_results.to_csv())?;
    if let Some(best) = &result.best_estimator {
        std::fs::write(spec.out_dir.join("best_estimator.rske"), rask::ml::save(best.as_ref())?)?;
    }
    println!(
        "wrote cv_results.json, cv_results.csv{} in {}",
        if result.best_estimator.is_some() { ", best_estimator.rske" } else { "" },
        spec.out_dir.display()
    );
    Ok(())
}

fn run_bench(
    workload: &str,
    data: Option<PathBuf>,
    scheduler: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let target = match scheduler {
        "local" => rask::bench::Target::Local,
        "local-cluster" => rask::bench::Target::LocalCluster { binary: std::env::current_exe()? },
        other => {
            return Err(format!("--scheduler {other:?}: use `local` or `local-cluster`").into())
        }
    };
    if let Some(dir) = &data {
        if !dir.is_dir() {
            return Err(format!(
                "--data {}: not a folder; create the data with `bash ../shared/peers/run_all.sh data` and pass $PEERS_HOME/data",
                dir.display()
            )
            .into());
        }
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; benchmark with `cargo run --release -- bench {workload}`");
    }
    let env = rask::bench::BenchEnv::from_env()?;
    println!("{}", rask::bench::meta_record());
    rask::bench::run(workload, &target, data.as_deref(), &env, &mut |rec| println!("{rec}"))?;
    Ok(())
}

#[cfg(not(feature = "xgboost"))]
fn run_xgb(_: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    Err("this rask was built without XGBoost: rebuild with `--features xgboost` (`cargo xtask provision` installs the library)".into())
}

#[cfg(feature = "xgboost")]
fn run_xgb(path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    use rask::xgboost::{dmatrix, train, DMatrix};
    let spec = rask::xgb_spec::load(path)?;
    if matches!(
        spec.scheduler,
        rask::spec::SchedulerSpec::Local(_) | rask::spec::SchedulerSpec::Address(_)
    ) {
        return run_xgb_cluster(spec);
    }
    let start = std::time::Instant::now();
    let to_dmatrix = |x: &rask::array::Array<f64>,
                      y: &rask::array::Array<f64>|
     -> Result<DMatrix, Box<dyn std::error::Error>> {
        let x = x.compute()?.into_dimensionality::<ndarray::Ix2>()?;
        let labels: Vec<f64> = y.compute()?.iter().copied().collect();
        Ok(dmatrix(x.view(), Some(&labels), 0)?)
    };
    let dtrain = to_dmatrix(&spec.x, &spec.y)?;
    let deval = spec.eval.as_ref().map(|(x, y)| to_dmatrix(x, y)).transpose()?;
    let loaded = start.elapsed().as_secs_f64();
    println!(
        "training {} rounds on {} rows x {} features{}",
        spec.rounds,
        dtrain.rows(),
        dtrain.cols(),
        deval.as_ref().map_or(String::new(), |d| format!(", evaluating on {} rows", d.rows()))
    );
    let mut sets = vec![(&dtrain, "train")];
    sets.extend(deval.as_ref().map(|d| (d, "eval")));
    let fit_start = std::time::Instant::now();
    let trained =
        train(&dtrain, &sets, &spec.params, spec.rounds, spec.early_stopping_rounds, |line| {
            println!("{line}")
        })?;
    let seconds = fit_start.elapsed().as_secs_f64();
    print_early_stop(&trained.early_stop);
    println!("rounds: {}", trained.booster.rounds()?);
    println!("seconds: {seconds:.3} training, {loaded:.3} loading the data");
    write_xgb_model(&spec.out_dir, &trained.booster)
}

/// The line `rask xgb` prints after an early stop.
#[cfg(feature = "xgboost")]
fn print_early_stop(stop: &Option<(usize, usize, String, f64)>) {
    if let Some((round, best, name, value)) = stop {
        println!(
            "stopped after round {round}: eval-{name} best at round {best} ({value}); the model keeps rounds 0..={best}"
        );
    }
}

/// Writes `model.json` (XGBoost JSON) into `dir`.
#[cfg(feature = "xgboost")]
fn write_xgb_model(
    dir: &std::path::Path,
    booster: &rask::xgboost::Booster,
) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let out = dir.join("model.json");
    std::fs::write(&out, booster.save("json")?)?;
    println!("wrote {} (XGBoost JSON)", out.display());
    Ok(())
}

/// `rask xgb` on a cluster: the blocks stay on the workers that read them;
/// one gang member per worker holding data.
#[cfg(feature = "xgboost")]
fn run_xgb_cluster(spec: rask::xgb_spec::XgbSpec) -> Result<(), Box<dyn std::error::Error>> {
    use rask::xgboost::dist::{train_with, DistDMatrix, TrainOptions};
    let (scheduler, (_cluster, client)) = connect(&spec.scheduler)?;
    let client = client.ok_or("a cluster scheduler comes with a client")?;
    let start = std::time::Instant::now();
    let dtrain = DistDMatrix::new(&client, &spec.x, &spec.y)?;
    let deval = spec.eval.as_ref().map(|(x, y)| DistDMatrix::new(&client, x, y)).transpose()?;
    let loaded = start.elapsed().as_secs_f64();
    println!(
        "training {} rounds on {} rows x {} features in {} blocks{} ({})",
        spec.rounds,
        dtrain.rows(),
        dtrain.cols(),
        dtrain.npartitions(),
        deval.as_ref().map_or(String::new(), |d| format!(", evaluating on {} rows", d.rows())),
        scheduler.name()
    );
    let mut evals = vec![(&dtrain, "train".to_string())];
    evals.extend(deval.as_ref().map(|d| (d, "eval".to_string())));
    let options = TrainOptions {
        rounds: spec.rounds,
        evals,
        early_stopping_rounds: spec.early_stopping_rounds,
        checkpoint_every: spec.checkpoint_every,
        on_round: Some(Box::new(|_, line: &str| println!("{line}"))),
        ..TrainOptions::default()
    };
    let fit_start = std::time::Instant::now();
    let trained = train_with(&client, &spec.params, &dtrain, options)?;
    let seconds = fit_start.elapsed().as_secs_f64();
    print_early_stop(&trained.early_stop);
    println!(
        "rounds: {} on {} workers{}",
        trained.booster.rounds()?,
        trained.ranks,
        if trained.restarts > 0 {
            format!(" after {} restart(s) from checkpoints", trained.restarts)
        } else {
            String::new()
        }
    );
    println!("seconds: {seconds:.3} training, {loaded:.3} loading the data");
    write_xgb_model(&spec.out_dir, &trained.booster)
}

fn run_glm(path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    use rask::glm::data::GlmData;
    let spec = rask::glm_spec::load(path)?;
    let (scheduler, _connection) = connect(&spec.scheduler)?;
    let start = std::time::Instant::now();
    let data = rask::glm::chunked::Chunked::new(
        spec.family,
        &spec.x,
        &spec.y,
        spec.sample_weight.as_ref(),
        scheduler.clone(),
    )?;
    let model = spec.model(data.total_weight())?;
    let checked = start.elapsed().as_secs_f64();
    println!(
        "fitting {} ({}) on {} rows x {} features in {} chunks with {} on {}",
        spec.family.name(),
        if model.penalty.strength == 0.0 {
            "no penalty".to_string()
        } else {
            format!("penalty {} with l1_ratio {}", model.penalty.strength, model.penalty.l1_ratio)
        },
        data.n_rows(),
        data.n_features(),
        data.n_chunks(),
        spec.solver.name(),
        scheduler.name()
    );
    let iter = std::cell::Cell::new(0usize);
    let trace = |objective: f64, stationarity: f64| {
        iter.set(iter.get() + 1);
        println!(
            "  iter {:>4}  objective {objective:.10e}  stationarity {stationarity:.3e}",
            iter.get()
        );
    };
    let fit_start = std::time::Instant::now();
    let f = rask::glm::solve::fit_traced(&data, model, spec.solver, spec.options, Some(&trace))?;
    let seconds = fit_start.elapsed().as_secs_f64();
    println!(
        "{} after {} iterations: objective {:.10e}, stationarity {:.3e}",
        if f.converged { "converged" } else { "NOT converged" },
        f.n_iter,
        f.objective,
        f.grad_norm
    );
    // Multinomial coefficients are K × p, one row per class.
    let k = f.intercepts.len();
    let coef: Vec<Vec<f64>> =
        f.coef.to_vec().chunks(f.coef.len() / k).map(<[f64]>::to_vec).collect();
    let coef = if k == 1 { serde_json::json!(coef[0]) } else { serde_json::json!(coef) };
    println!("coef: {coef}");
    println!(
        "intercept: {}",
        if k == 1 {
            serde_json::json!(f.intercept)
        } else {
            serde_json::json!(f.intercepts.to_vec())
        }
    );
    println!("seconds: {seconds:.3} fitting, {checked:.3} loading and checking the data");
    std::fs::create_dir_all(&spec.out_dir)?;
    let model_json = serde_json::json!({
        "family": spec.family.name(),
        "fit_intercept": spec.fit_intercept,
        "penalty": {"strength": model.penalty.strength, "l1_ratio": model.penalty.l1_ratio},
        "solver": spec.solver.name(),
        "classes": k,
        "coef": coef,
        "intercept": if k == 1 { serde_json::json!(f.intercept) } else { serde_json::json!(f.intercepts.to_vec()) },
        "n_iter": f.n_iter,
        "objective": f.objective,
        "stationarity": f.grad_norm,
        "converged": f.converged,
        "seconds": seconds,
    });
    let out = spec.out_dir.join("model.json");
    std::fs::write(&out, serde_json::to_string_pretty(&model_json)?)?;
    println!("wrote {}", out.display());
    Ok(())
}
