//! `LocalCluster`: a scheduler and worker *processes* on loopback, torn down on
//! drop, and stopped when the process that started them dies (their stdin
//! is a pipe it holds).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::{Client, ClientOptions};
use crate::error::DistError;

/// Settings of a [`LocalCluster`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Worker processes.
    pub n_workers: usize,
    /// Threads per worker.
    pub threads_per_worker: usize,
    /// Per-worker memory limit (`"512MiB"`), none by default.
    pub memory_limit: Option<String>,
    /// The executable run as `BIN scheduler …` and `BIN worker …`: a binary
    /// that registers the ops the graphs use (the `rask` CLI knows the built-in
    /// ones; a user binary calls [`crate::cli::run_if_subcommand`] first thing
    /// in `main`). Default: `$RASK_BIN`, else `rask` next to this executable or
    /// one folder up (cargo's `target/*/deps`), else `rask` on the `PATH`.
    pub binary: Option<PathBuf>,
    /// Extra arguments for every worker.
    pub worker_args: Vec<String>,
    /// How long to wait for everything to start.
    pub startup_timeout: Duration,
    /// The cluster token (see [`crate::auth`]): handed to the processes in
    /// their environment, never on their command lines. `None`: whatever
    /// `$RASK_TOKEN` this process has (none when unset).
    pub token: Option<String>,
    /// Mutual TLS on every connection: the cluster CA, and one certificate
    /// and key that every process (scheduler, workers, this client) presents;
    /// it must name `127.0.0.1`.
    pub tls: Option<crate::auth::TlsFiles>,
    /// Where the scheduler serves its dashboard (`HOST:PORT`); `None`: no
    /// dashboard. Default `127.0.0.1:0`: loopback, any free port
    /// ([`LocalCluster::dashboard_link`] says which).
    pub dashboard: Option<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            n_workers: 2,
            threads_per_worker: 1,
            memory_limit: None,
            binary: None,
            worker_args: Vec::new(),
            startup_timeout: Duration::from_secs(30),
            token: None,
            tls: None,
            dashboard: Some("127.0.0.1:0".into()),
        }
    }
}

/// A scheduler and workers as child processes of this one.
pub struct LocalCluster {
    addr: String,
    binary: PathBuf,
    dir: PathBuf,
    scheduler: Child,
    workers: Vec<Option<Child>>,
    opts: ClusterOptions,
    dashboard: Option<String>,
}

fn find_binary() -> Result<PathBuf, DistError> {
    if let Some(b) = std::env::var_os("RASK_BIN") {
        return Ok(PathBuf::from(b));
    }
    let exe = std::env::current_exe().map_err(|e| DistError::Process { message: e.to_string() })?;
    let name = format!("rask{}", std::env::consts::EXE_SUFFIX);
    for dir in exe.ancestors().skip(1).take(2) {
        let cand = dir.join(&name);
        if cand.is_file() {
            return Ok(cand);
        }
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for p in std::env::split_paths(&paths) {
            let cand = p.join(&name);
            if cand.is_file() {
                return Ok(cand);
            }
        }
    }
    Err(DistError::Process {
        message: "cannot find the `rask` binary for the cluster processes: build it (`cargo build`), set RASK_BIN, or pass ClusterOptions::binary".into(),
    })
}

fn log_file(dir: &Path, name: &str) -> Result<Stdio, DistError> {
    let f = std::fs::File::create(dir.join(name))
        .map_err(|e| DistError::Process { message: format!("cannot create {name}: {e}") })?;
    Ok(Stdio::from(f))
}

/// The TLS flags of a cluster process.
fn tls_args(files: &Option<crate::auth::TlsFiles>) -> Vec<std::ffi::OsString> {
    match files {
        None => Vec::new(),
        Some(f) => vec![
            "--tls-ca-file".into(),
            f.ca.clone().into(),
            "--tls-cert".into(),
            f.cert.clone().into(),
            "--tls-key".into(),
            f.key.clone().into(),
        ],
    }
}

impl LocalCluster {
    /// `n_workers` worker processes with `threads_per_worker` threads each.
    pub fn new(n_workers: usize, threads_per_worker: usize) -> Result<Self, DistError> {
        Self::with_options(ClusterOptions {
            n_workers,
            threads_per_worker,
            ..ClusterOptions::default()
        })
    }

    /// A cluster with explicit options.
    pub fn with_options(opts: ClusterOptions) -> Result<Self, DistError> {
        let binary = match &opts.binary {
            Some(b) => b.clone(),
            None => find_binary()?,
        };
        let dir = std::env::temp_dir().join(format!(
            "rask-cluster-{}-{}",
            std::process::id(),
            rask_core::key::unique_token()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| DistError::Process {
            message: format!("cannot create {}: {e}", dir.display()),
        })?;
        let token = match &opts.token {
            Some(t) => {
                crate::auth::check_token(t, "ClusterOptions::token")
                    .map_err(|message| DistError::Process { message })?;
                t.clone()
            }
            None => {
                crate::auth::token_from_env().map_err(|message| DistError::Process { message })?
            }
        };
        let opts = ClusterOptions { token: Some(token.clone()), ..opts };
        let tls = match &opts.tls {
            Some(files) => Some(
                crate::auth::Tls::load(files.clone())
                    .map_err(|message| DistError::Process { message })?,
            ),
            None => None,
        };
        let file = dir.join("scheduler.json");
        let scheduler = Command::new(&binary)
            .args(["scheduler", "--listen", "127.0.0.1:0", "--scheduler-file"])
            .arg(&file)
            .args(["--dashboard-address", opts.dashboard.as_deref().unwrap_or("none")])
            .args(tls_args(&opts.tls))
            .env(crate::auth::TOKEN_ENV, &token)
            // Its stdin is a pipe this process holds: when this process
            // dies, even by SIGKILL, the pipe closes and the scheduler stops.
            .arg("--stop-when-stdin-closes")
            .stdin(Stdio::piped())
            .stdout(log_file(&dir, "scheduler.log")?)
            .stderr(log_file(&dir, "scheduler.err")?)
            .spawn()
            .map_err(|e| DistError::Process {
                message: format!("cannot start {} scheduler: {e}", binary.display()),
            })?;
        let mut cluster = LocalCluster {
            addr: String::new(),
            binary,
            dir,
            scheduler,
            workers: Vec::new(),
            opts: opts.clone(),
            dashboard: None,
        };
        let deadline = Instant::now() + opts.startup_timeout;
        cluster.addr = loop {
            if let Ok(text) = std::fs::read_to_string(&file) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                    if let Some(a) = v["address"].as_str() {
                        cluster.dashboard =
                            v["dashboard"].as_str().filter(|d| !d.is_empty()).map(String::from);
                        break a.to_string();
                    }
                }
            }
            if let Ok(Some(status)) = cluster.scheduler.try_wait() {
                return Err(DistError::Process {
                    message: format!(
                        "the scheduler exited with {status}; see {}",
                        cluster.dir.join("scheduler.err").display()
                    ),
                });
            }
            if Instant::now() >= deadline {
                return Err(DistError::Process {
                    message: "the scheduler did not start in time".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for _ in 0..opts.n_workers {
            cluster.add_worker()?;
        }
        let client = Client::connect_with(
            &cluster.addr,
            ClientOptions { set_as_default: false, token, tls, ..ClientOptions::default() },
        )?;
        client.wait_for_workers(opts.n_workers, opts.startup_timeout)?;
        Ok(cluster)
    }

    /// Starts one more worker process; returns its index.
    pub fn add_worker(&mut self) -> Result<usize, DistError> {
        let i = self.workers.len();
        let mut cmd = Command::new(&self.binary);
        cmd.arg("worker")
            .arg(&self.addr)
            .args([
                "--nthreads",
                &self.opts.threads_per_worker.to_string(),
                "--name",
                &format!("local-{i}"),
            ])
            .arg("--local-dir")
            .arg(&self.dir);
        if let Some(m) = &self.opts.memory_limit {
            cmd.args(["--memory-limit", m]);
        }
        cmd.args(&self.opts.worker_args);
        cmd.env(crate::auth::TOKEN_ENV, self.opts.token.as_deref().unwrap_or(""));
        cmd.args(tls_args(&self.opts.tls));
        // As the scheduler: the worker stops when this process is gone.
        cmd.arg("--stop-when-stdin-closes");
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(log_file(&self.dir, &format!("worker-{i}.log"))?)
            .stderr(log_file(&self.dir, &format!("worker-{i}.err"))?)
            .spawn()
            .map_err(|e| DistError::Process {
                message: format!("cannot start {} worker: {e}", self.binary.display()),
            })?;
        self.workers.push(Some(child));
        Ok(i)
    }

    /// The scheduler's address.
    pub fn address(&self) -> &str {
        &self.addr
    }

    /// The dashboard's URL, when the scheduler serves one.
    pub fn dashboard_link(&self) -> Option<&str> {
        self.dashboard.as_deref()
    }

    /// Folder with the processes' logs and spill files.
    pub fn log_dir(&self) -> &Path {
        &self.dir
    }

    /// A client connected to this cluster (and made the default scheduler).
    pub fn client(&self) -> Result<Client, DistError> {
        Client::connect_with(&self.addr, self.client_options()?)
    }

    /// Client options carrying this cluster's credentials (token, TLS).
    pub fn client_options(&self) -> Result<ClientOptions, DistError> {
        let token = self.opts.token.clone().unwrap_or_default();
        let tls = match &self.opts.tls {
            Some(files) => Some(
                crate::auth::Tls::load(files.clone())
                    .map_err(|message| DistError::Process { message })?,
            ),
            None => None,
        };
        Ok(ClientOptions { token, tls, ..ClientOptions::default() })
    }

    /// The scheduler's process id.
    pub fn scheduler_pid(&self) -> u32 {
        self.scheduler.id()
    }

    /// Process ids of the live workers, by index.
    pub fn worker_pids(&self) -> Vec<Option<u32>> {
        self.workers.iter().map(|w| w.as_ref().map(Child::id)).collect()
    }

    /// Kills worker `i` with SIGKILL (no goodbye: its data is lost).
    pub fn kill_worker(&mut self, i: usize) -> Result<(), DistError> {
        match self.workers.get_mut(i).and_then(Option::take) {
            Some(mut c) => {
                c.kill()
                    .map_err(|e| DistError::Process { message: format!("kill worker {i}: {e}") })?;
                let _ = c.wait();
                Ok(())
            }
            None => Err(DistError::Process { message: format!("no live worker {i}") }),
        }
    }

    /// Stops worker `i` with SIGTERM (it leaves cleanly) and waits for it.
    pub fn stop_worker(&mut self, i: usize) -> Result<(), DistError> {
        match self.workers.get_mut(i).and_then(Option::take) {
            Some(mut c) => {
                terminate(&mut c, Duration::from_secs(15));
                Ok(())
            }
            None => Err(DistError::Process { message: format!("no live worker {i}") }),
        }
    }
}

/// SIGTERM, then SIGKILL after `grace`.
fn terminate(c: &mut Child, grace: Duration) {
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(c.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    let _ = c.wait();
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for w in self.workers.iter_mut().filter_map(Option::take) {
            let mut w = w;
            terminate(&mut w, Duration::from_secs(5));
        }
        terminate(&mut self.scheduler, Duration::from_secs(5));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
