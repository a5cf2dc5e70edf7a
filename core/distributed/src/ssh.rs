//! `rask ssh HOST1 HOST2 …`: a cluster over OpenSSH, as Dask's `SSHCluster`.
//!
//! The scheduler starts on the first host and workers on the others (on the
//! first too when it is the only host). Each remote process runs under its own
//! `ssh` client with `--stop-when-stdin-closes`: the launcher holds the remote
//! stdin open, so when the launcher stops (Ctrl-C, SIGTERM) or dies, sshd
//! closes that stdin and the remote process exits. Nothing stays behind.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::mpsc;

/// Usage of `rask ssh`.
pub const SSH_USAGE: &str = "\
usage: ssh HOST1 HOST2 … [--scheduler-port N] [--nthreads N] [--nworkers N] [--memory-limit SIZE]
           [--remote-rask PATH] [--listen-all] [--scheduler-file PATH] [--ssh-option OPT]…
           [--token-file PATH] [--tls-ca-file PATH --tls-cert PATH --tls-key PATH] [--timeout SECS]";

/// How `rask ssh` launches a cluster.
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// The scheduler's host, then the workers' hosts (`[user@]host` as ssh takes them).
    pub hosts: Vec<String>,
    /// The scheduler's port on its host (0: any free port).
    pub scheduler_port: u16,
    /// Threads per worker (default: the worker's own default, its cores).
    pub nthreads: Option<usize>,
    /// Worker processes per worker host.
    pub nworkers: usize,
    /// Each worker's memory limit, as `rask worker --memory-limit` takes it.
    pub memory_limit: Option<String>,
    /// The `rask` binary (or a user binary that calls `run_if_subcommand`) on the hosts.
    pub remote_rask: String,
    /// Bind to every interface (for ssh aliases and NAT); the contact address is then
    /// the host's address on its route to the scheduler.
    pub listen_all: bool,
    /// Where to write the scheduler's address for clients (on this machine).
    pub scheduler_file: Option<PathBuf>,
    /// Extra `ssh -o` options (e.g. `Port=2222`, `IdentityFile=…`).
    pub ssh_options: Vec<String>,
    /// Cluster token file (the same path on every host and here).
    pub token_file: Option<PathBuf>,
    /// CA, certificate and key for mutual TLS (the same paths on every host and here).
    pub tls: [Option<PathBuf>; 3],
    /// How long to wait for the scheduler to listen and the workers to connect.
    pub timeout: Duration,
}

impl Default for SshOptions {
    fn default() -> Self {
        SshOptions {
            hosts: Vec::new(),
            scheduler_port: 8786,
            nthreads: None,
            nworkers: 1,
            memory_limit: None,
            remote_rask: std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "rask".into()),
            listen_all: false,
            scheduler_file: None,
            ssh_options: Vec::new(),
            token_file: None,
            tls: Default::default(),
            timeout: Duration::from_secs(60),
        }
    }
}

/// Parses the arguments after `ssh` and runs the cluster until Ctrl-C.
pub fn run(args: &[String]) -> Result<(), String> {
    let opts = parse(args)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(launch(opts, crate::server::shutdown_signal()))
}

fn parse(args: &[String]) -> Result<SshOptions, String> {
    let mut o = SshOptions::default();
    let mut i = 0;
    let value = |i: &mut usize, flag: &str| -> Result<String, String> {
        *i += 1;
        args.get(*i).cloned().ok_or_else(|| format!("{flag} needs a value"))
    };
    let number = |s: String, flag: &str| -> Result<usize, String> {
        s.parse().map_err(|_| format!("{flag} needs a number, not {s:?}"))
    };
    while i < args.len() {
        let flag = args[i].clone();
        match flag.as_str() {
            "--scheduler-port" => {
                o.scheduler_port = value(&mut i, &flag)?
                    .parse()
                    .map_err(|_| "--scheduler-port needs a port number".to_string())?
            }
            "--nthreads" => o.nthreads = Some(number(value(&mut i, &flag)?, &flag)?),
            "--nworkers" => o.nworkers = number(value(&mut i, &flag)?, &flag)?.max(1),
            "--memory-limit" => {
                let v = value(&mut i, &flag)?;
                crate::worker::parse_memory(&v)?;
                o.memory_limit = Some(v);
            }
            "--remote-rask" => o.remote_rask = value(&mut i, &flag)?,
            "--listen-all" => o.listen_all = true,
            "--scheduler-file" => o.scheduler_file = Some(value(&mut i, &flag)?.into()),
            "--ssh-option" => o.ssh_options.push(value(&mut i, &flag)?),
            "--token-file" => o.token_file = Some(value(&mut i, &flag)?.into()),
            "--token" => return Err(crate::auth::TOKEN_ON_COMMAND_LINE.into()),
            "--tls-ca-file" => o.tls[0] = Some(value(&mut i, &flag)?.into()),
            "--tls-cert" => o.tls[1] = Some(value(&mut i, &flag)?.into()),
            "--tls-key" => o.tls[2] = Some(value(&mut i, &flag)?.into()),
            "--timeout" => {
                let secs: f64 = value(&mut i, &flag)?
                    .parse()
                    .map_err(|_| "--timeout needs seconds".to_string())?;
                o.timeout = Duration::from_secs_f64(secs.max(1.0));
            }
            f if f.starts_with('-') => {
                return Err(format!("unknown ssh option {f:?}\n{}", SSH_USAGE))
            }
            host => o.hosts.push(host.to_string()),
        }
        i += 1;
    }
    if o.hosts.is_empty() {
        return Err(format!(
            "ssh needs at least one host: the scheduler's, then the workers'\n{}",
            SSH_USAGE
        ));
    }
    // The same checks the remote processes make, here, before anything starts.
    crate::auth::resolve_token(o.token_file.as_deref())?;
    let [ca, cert, key] = o.tls.clone();
    crate::auth::Tls::from_flags(ca, cert, key)?;
    Ok(o)
}

/// Quotes one argument for the remote shell (ssh joins its arguments into one
/// command line that the remote login shell parses).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+".contains(&b)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The address a process on `host` binds to: the host part of `[user@]host`.
fn bind_host(host: &str, listen_all: bool) -> String {
    if listen_all {
        return "0.0.0.0".into();
    }
    let h = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if h.contains(':') && !h.starts_with('[') {
        format!("[{h}]")
    } else {
        h.to_string()
    }
}

impl SshOptions {
    fn credential_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(t) = &self.token_file {
            a.extend(["--token-file".to_string(), t.display().to_string()]);
        }
        for (flag, path) in ["--tls-ca-file", "--tls-cert", "--tls-key"].iter().zip(&self.tls) {
            if let Some(p) = path {
                a.extend([flag.to_string(), p.display().to_string()]);
            }
        }
        a
    }

    /// The scheduler's command on the first host.
    pub fn scheduler_command(&self) -> Vec<String> {
        let mut c = vec![
            self.remote_rask.clone(),
            "scheduler".into(),
            "--listen".into(),
            format!("{}:{}", bind_host(&self.hosts[0], self.listen_all), self.scheduler_port),
            "--stop-when-stdin-closes".into(),
        ];
        c.extend(self.credential_args());
        c
    }

    /// Worker `index`'s command on `host`.
    pub fn worker_command(&self, host: &str, index: usize, scheduler: &str) -> Vec<String> {
        let name = host.rsplit_once('@').map_or(host, |(_, h)| h);
        let mut c = vec![
            self.remote_rask.clone(),
            "worker".into(),
            scheduler.to_string(),
            "--listen".into(),
            format!("{}:0", bind_host(host, self.listen_all)),
            "--name".into(),
            format!("{name}-{index}"),
            "--stop-when-stdin-closes".into(),
        ];
        if let Some(n) = self.nthreads {
            c.extend(["--nthreads".into(), n.to_string()]);
        }
        if let Some(m) = &self.memory_limit {
            c.extend(["--memory-limit".into(), m.clone()]);
        }
        c.extend(self.credential_args());
        c
    }

    /// The worker hosts: all but the first, or the first when it is alone.
    fn worker_hosts(&self) -> &[String] {
        if self.hosts.len() == 1 {
            &self.hosts
        } else {
            &self.hosts[1..]
        }
    }

    fn ssh(&self, host: &str, remote: &[String]) -> Command {
        let mut c = Command::new("ssh");
        // Never prompt (a password prompt would hang the launcher): fail clearly.
        c.args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=15"]);
        for o in &self.ssh_options {
            c.args(["-o", o]);
        }
        c.arg(host).arg("--");
        c.arg(remote.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" "));
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        c.kill_on_drop(true);
        c
    }
}

/// One remote process: its ssh client's pid and the stdin that keeps it alive.
struct Remote {
    label: String,
    pid: Option<u32>,
    lifeline: Option<ChildStdin>,
}

/// Prints a remote process's output lines with its label in front (on
/// stderr or stdout, as it wrote them), also sending them to `lines`.
fn forward(
    from: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    label: String,
    to_stderr: bool,
    lines: Option<mpsc::UnboundedSender<String>>,
) {
    tokio::spawn(async move {
        let mut r = BufReader::new(from).lines();
        while let Ok(Some(l)) = r.next_line().await {
            if to_stderr {
                eprintln!("[{label}] {l}");
            } else {
                println!("[{label}] {l}");
            }
            if let Some(tx) = &lines {
                let _ = tx.send(l);
            }
        }
    });
}

/// Starts `command` on `host` through ssh; its output lines are printed with
/// the label in front, stdout lines also sent to `lines`; its exit goes to `exits`.
fn start(
    opts: &SshOptions,
    host: &str,
    label: String,
    command: &[String],
    lines: Option<mpsc::UnboundedSender<String>>,
    exits: &mpsc::UnboundedSender<(String, String)>,
) -> Result<Remote, String> {
    let mut child = opts.ssh(host, command).spawn().map_err(|e| {
        format!("cannot run `ssh` to start the {label}: {e}; install the OpenSSH client (apt-get install openssh-client)")
    })?;
    let pid = child.id();
    let lifeline = child.stdin.take();
    if let Some(out) = child.stdout.take() {
        forward(out, label.clone(), false, lines);
    }
    if let Some(err) = child.stderr.take() {
        forward(err, label.clone(), true, None);
    }
    let exits = exits.clone();
    let who = label.clone();
    tokio::spawn(async move {
        let how = match child.wait().await {
            Ok(s) if s.code() == Some(255) => {
                "ssh failed (exit 255: could not connect or authenticate; its message is above)"
                    .to_string()
            }
            Ok(s) => format!("exited with {s}"),
            Err(e) => format!("could not be waited for: {e}"),
        };
        let _ = exits.send((who, how));
    });
    Ok(Remote { label, pid, lifeline })
}

/// Launches the cluster, waits until `shutdown` resolves (or the scheduler
/// exits), then stops every process: workers first, then the scheduler.
pub async fn launch(
    opts: SshOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let (exits_tx, mut exits) = mpsc::unbounded_channel();
    let (lines_tx, mut lines) = mpsc::unbounded_channel();
    let sched_label = format!("scheduler {}", opts.hosts[0]);
    let scheduler = start(
        &opts,
        &opts.hosts[0],
        sched_label.clone(),
        &opts.scheduler_command(),
        Some(lines_tx),
        &exits_tx,
    )?;
    let mut remotes = vec![scheduler];
    // The scheduler prints its contact address once it listens.
    let address = tokio::time::timeout(opts.timeout, async {
        let mut output_open = true;
        loop {
            tokio::select! {
                l = lines.recv(), if output_open => match l {
                    Some(l) => if let Some((_, a)) = l.split_once("contact address ") {
                        return Ok(a.trim().to_string());
                    },
                    None => output_open = false,
                },
                Some((who, how)) = exits.recv() => {
                    return Err((format!("the {who} {how} before it listened"), true));
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        Err((format!("the {sched_label} did not listen within {:?}", opts.timeout), false))
    });
    let address = match address {
        Ok(a) => a,
        Err((e, exited)) => {
            if exited {
                // Its exit is already taken from `exits`: nothing to stop.
                remotes.clear();
            }
            stop(&mut remotes, &mut exits).await;
            return Err(e);
        }
    };
    for host in opts.worker_hosts() {
        for i in 0..opts.nworkers {
            let label = format!("worker {host}-{i}");
            match start(
                &opts,
                host,
                label,
                &opts.worker_command(host, i, &address),
                None,
                &exits_tx,
            ) {
                Ok(r) => remotes.push(r),
                Err(e) => {
                    stop(&mut remotes, &mut exits).await;
                    return Err(e);
                }
            }
        }
    }
    let n_workers = remotes.len() - 1;
    if let Some(path) = &opts.scheduler_file {
        let json = format!(
            "{{\"address\": \"{address}\", \"protocol_version\": {}}}\n",
            crate::protocol::PROTOCOL_VERSION
        );
        if let Err(e) = crate::scheduler_file::write(path, &json) {
            stop(&mut remotes, &mut exits).await;
            return Err(e);
        }
    }
    let ready = wait_for_workers(&opts, &address, n_workers).await;
    match &ready {
        Ok(()) => println!(
            "rask ssh: scheduler at {address}, {n_workers} worker(s) connected; Ctrl-C stops the cluster"
        ),
        Err(e) => eprintln!("rask ssh: {e}; the cluster runs with what connected (Ctrl-C stops it)"),
    }
    tokio::pin!(shutdown);
    let mut live = n_workers;
    let outcome = loop {
        tokio::select! {
            _ = &mut shutdown => break Ok(()),
            Some((who, how)) = exits.recv() => {
                if who == sched_label {
                    break Err(format!("the {who} {how}; stopping the workers"));
                }
                eprintln!("rask ssh: the {who} {how}");
                remotes.retain(|r| r.label != who);
                live -= 1;
                if live == 0 {
                    break Err("every worker exited; stopping the scheduler".to_string());
                }
            }
        }
    };
    println!("rask ssh: stopping {} process(es)", remotes.len());
    stop(&mut remotes, &mut exits).await;
    if let Some(path) = &opts.scheduler_file {
        let _ = std::fs::remove_file(path);
    }
    outcome
}

/// Asks the scheduler (as a client with this launcher's credentials) until
/// `n` workers are connected or the timeout passes.
async fn wait_for_workers(opts: &SshOptions, address: &str, n: usize) -> Result<(), String> {
    let token = crate::auth::resolve_token(opts.token_file.as_deref())?;
    let [ca, cert, key] = opts.tls.clone();
    let tls = crate::auth::Tls::from_flags(ca, cert, key)?;
    let copts = crate::ClientOptions {
        token,
        tls,
        set_as_default: false,
        name: "rask ssh".into(),
        timeout: opts.timeout,
        ..Default::default()
    };
    let (address, timeout) = (address.to_string(), opts.timeout);
    tokio::task::spawn_blocking(move || {
        let c = crate::Client::connect_with(&address, copts).map_err(|e| e.to_string())?;
        c.wait_for_workers(n, timeout).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Stops the processes, last started first: closes each one's stdin (the
/// remote side sees its end and shuts down), waits, and kills the ssh
/// clients that are still there after 10 s.
async fn stop(remotes: &mut Vec<Remote>, exits: &mut mpsc::UnboundedReceiver<(String, String)>) {
    while let Some(mut r) = remotes.pop() {
        r.lifeline.take();
        let gone = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some((who, _)) = exits.recv().await {
                if who == r.label {
                    return;
                }
                remotes.retain(|x| x.label != who);
            }
        })
        .await;
        if gone.is_err() {
            if let Some(pid) = r.pid {
                eprintln!("rask ssh: the {} did not stop within 10 s; killing its ssh", r.label);
                // SAFETY: kill(2) on our own child, which has not been reaped
                // yet (its wait task has not reported).
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_the_remote_shell() {
        assert_eq!(shell_quote("/usr/bin/rask"), "/usr/bin/rask");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn commands_bind_each_host_and_carry_credentials() {
        let o = parse(
            &["root@10.0.0.1", "10.0.0.2", "--nthreads", "3", "--scheduler-port", "0"]
                .map(String::from),
        )
        .unwrap();
        let s = o.scheduler_command();
        assert_eq!(s[1..5], ["scheduler", "--listen", "10.0.0.1:0", "--stop-when-stdin-closes"]);
        let w = o.worker_command(&o.worker_hosts()[0], 0, "10.0.0.1:4000");
        assert_eq!(w[1..5], ["worker", "10.0.0.1:4000", "--listen", "10.0.0.2:0"]);
        assert!(w.windows(2).any(|p| p == ["--nthreads", "3"]));
        assert!(w.windows(2).any(|p| p == ["--name", "10.0.0.2-0"]));
    }

    #[test]
    fn bad_arguments_are_refused_before_anything_starts() {
        assert!(parse(&[]).unwrap_err().contains("at least one host"));
        assert!(parse(&["h".into(), "--token".into(), "x".into()]).unwrap_err().contains("ps"));
        assert!(parse(&["h".into(), "--nthreads".into(), "x".into()])
            .unwrap_err()
            .contains("number"));
        let e = parse(&["h".into(), "--tls-ca-file".into(), "/nope".into()]).unwrap_err();
        assert!(e.contains("tls"), "{e}");
    }
}
