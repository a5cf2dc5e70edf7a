//! The `scheduler` and `worker` commands, shared by the `rask` CLI and by user
//! binaries that register their own ops: call [`run_if_subcommand`] first
//! thing in `main`, and `LocalCluster` (or `rask`-style deployment scripts)
//! can run that binary as scheduler and workers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::error::DistError;
use crate::server::{run_scheduler, ServerConfig};
use crate::worker::{run_worker, WorkerConfig};

/// Usage of the two commands.
pub const USAGE: &str = "\
usage:
  scheduler [--listen HOST[:PORT]] [--contact-address HOST[:PORT]] [--scheduler-file PATH]
            [--dashboard-address [HOST]:PORT|none]
            [--token-file PATH] [--tls-ca-file PATH --tls-cert PATH --tls-key PATH]
  worker ADDR|--scheduler-file PATH [--nthreads N] [--memory-limit 4GiB] [--resources GPU=1,FPGA=2]
         [--name NAME] [--local-dir DIR] [--listen HOST[:PORT]] [--contact-address HOST[:PORT]]
         [--token-file PATH] [--tls-ca-file PATH --tls-cert PATH --tls-key PATH]
         [--connect-timeout SECS]
  ssh HOST1 HOST2 … [--scheduler-port N] [--nthreads N] [--nworkers N] [--memory-limit SIZE]
      [--remote-rask PATH] [--listen-all] [--scheduler-file PATH] [--ssh-option OPT]…
      [--token-file PATH] [--tls-ca-file PATH --tls-cert PATH --tls-key PATH]

  --listen            interface (and port) to bind; the scheduler's default is 127.0.0.1:8786,
                      a worker's 127.0.0.1 and any free port (--host/--port set them apart)
  --contact-address   the address other machines dial, written to the scheduler file and
                      sent to the scheduler; by default the bind address, or, when binding
                      0.0.0.0, this machine's address on its route to the scheduler
  --token-file        file holding the cluster token; else $RASK_TOKEN; every process of a
                      cluster needs the same one (never pass a token on the command line)
  --tls-*             mutual TLS on every connection: the cluster CA, and this process's
                      certificate (naming the host others dial it at) and key, all PEM
  --stop-when-stdin-closes  exit when stdin ends (what `rask ssh` starts remotely)
  --dashboard-address the dashboard's address, default :8787 (the scheduler's host; loopback
                      when a token or TLS is set; another port if 8787 is taken); `none` disables it;
                      with a token the dashboard asks for it (?token=… once, or a Bearer header)

  ssh starts a scheduler on HOST1 and workers on the other hosts (HOST1 too if it is the
  only one) over OpenSSH, and stops them all on Ctrl-C. Credential files must exist at
  the same paths on every host; --remote-rask defaults to this binary's path.";

/// The flags both commands take: where to listen, what to advertise, and
/// the credentials.
struct NetFlags {
    /// `--stop-when-stdin-closes`: the launcher's connection is the process's
    /// lifeline (`rask ssh` keeps the remote stdin open while it runs).
    stdin_lifeline: bool,
    host: String,
    port: u16,
    contact_address: Option<String>,
    token_file: Option<PathBuf>,
    tls: [Option<PathBuf>; 3],
}

impl NetFlags {
    fn new(host: &str, port: u16) -> Self {
        NetFlags {
            stdin_lifeline: false,
            host: host.to_string(),
            port,
            contact_address: None,
            token_file: None,
            tls: Default::default(),
        }
    }

    /// Takes the flag at `args[*i]` (and its value) if it is one of these;
    /// `false` for other flags.
    fn parse(&mut self, args: &[String], i: &mut usize) -> Result<bool, String> {
        let flag = args[*i].clone();
        match flag.as_str() {
            "--host" => self.host = value(args, i, &flag)?.into(),
            "--port" => {
                self.port = value(args, i, &flag)?
                    .parse()
                    .map_err(|_| "--port needs a number".to_string())?
            }
            "--listen" => {
                let (host, port) = split_listen(value(args, i, &flag)?)?;
                self.host = host;
                self.port = port.unwrap_or(self.port);
            }
            "--contact-address" => self.contact_address = Some(value(args, i, &flag)?.into()),
            "--stop-when-stdin-closes" => self.stdin_lifeline = true,
            "--token-file" => self.token_file = Some(PathBuf::from(value(args, i, &flag)?)),
            "--token" => return Err(crate::auth::TOKEN_ON_COMMAND_LINE.into()),
            "--tls-ca-file" => self.tls[0] = Some(PathBuf::from(value(args, i, &flag)?)),
            "--tls-cert" => self.tls[1] = Some(PathBuf::from(value(args, i, &flag)?)),
            "--tls-key" => self.tls[2] = Some(PathBuf::from(value(args, i, &flag)?)),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The token (file, else `$RASK_TOKEN`) and the TLS material (all three files or none).
    fn credentials(&self) -> Result<(String, Option<crate::auth::Tls>), String> {
        let token = crate::auth::resolve_token(self.token_file.as_deref())?;
        let [ca, cert, key] = self.tls.clone();
        Ok((token, crate::auth::Tls::from_flags(ca, cert, key)?))
    }
}

/// Splits `HOST[:PORT]` (IPv6 in brackets) for `--listen`.
fn split_listen(s: &str) -> Result<(String, Option<u16>), String> {
    if let Ok(a) = s.parse::<std::net::SocketAddr>() {
        return Ok((a.ip().to_string(), Some(a.port())));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => {
            let port = p.parse().map_err(|_| format!("--listen {s:?}: {p:?} is not a port"))?;
            Ok((h.to_string(), Some(port)))
        }
        _ => Ok((s.trim_matches(|c| c == '[' || c == ']').to_string(), None)),
    }
}

pub use crate::worker::parse_memory;

/// Parses `GPU=1,MEM=2.5` into resources.
pub fn parse_resources(s: &str) -> Result<BTreeMap<String, f64>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| format!("resource {p:?} must look like NAME=AMOUNT"))?;
            let v: f64 =
                v.trim().parse().map_err(|_| format!("resource {p:?}: {v:?} is not a number"))?;
            Ok((k.trim().to_string(), v))
        })
        .collect()
}

fn read_scheduler_file(path: &str) -> Result<String, String> {
    // Workers may start before the scheduler wrote the file: wait for it.
    crate::scheduler_file::address(std::path::Path::new(path), Duration::from_secs(60))
}

/// Resolves on Ctrl-C or SIGTERM, or (with `stdin_lifeline`) when stdin
/// reaches its end: sshd closes a remote command's stdin when the launcher's
/// connection goes, so a launched process never outlives its launcher.
async fn shutdown(stdin_lifeline: bool) {
    if !stdin_lifeline {
        return crate::server::shutdown_signal().await;
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 256];
        let mut stdin = std::io::stdin().lock();
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(());
    });
    tokio::select! {
        _ = crate::server::shutdown_signal() => {}
        _ = rx => eprintln!("stdin closed (the launcher is gone): shutting down"),
    }
}

fn value<'a>(args: &'a [String], i: &mut usize, flag: &str) -> Result<&'a str, String> {
    *i += 1;
    args.get(*i).map(String::as_str).ok_or_else(|| format!("{flag} needs a value"))
}

/// Parses and runs `scheduler …` or `worker …` (the arguments after the command name).
pub fn run(command: &str, args: &[String]) -> Result<(), String> {
    // One event-loop thread: the scheduler is one state machine, and a worker's
    // ops run on blocking threads anyway; fewer threads, fewer context switches.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    match command {
        "scheduler" => {
            let mut cfg = ServerConfig::default();
            let mut net = NetFlags::new(&cfg.host, cfg.port);
            let mut i = 0;
            while i < args.len() {
                if net.parse(args, &mut i)? {
                    i += 1;
                    continue;
                }
                match args[i].as_str() {
                    "--scheduler-file" => {
                        cfg.scheduler_file =
                            Some(PathBuf::from(value(args, &mut i, "--scheduler-file")?))
                    }
                    "--dashboard-address" => {
                        cfg.dashboard = Some(value(args, &mut i, "--dashboard-address")?.into())
                    }
                    other => return Err(format!("unknown scheduler option {other:?}\n{USAGE}")),
                }
                i += 1;
            }
            let (host, port) = (net.host.clone(), net.port);
            (cfg.host, cfg.port, cfg.contact_address) = (host, port, net.contact_address.clone());
            (cfg.token, cfg.tls) = net.credentials()?;
            rt.block_on(run_scheduler(cfg, shutdown(net.stdin_lifeline)))
                .map_err(|e: DistError| e.to_string())
        }
        "worker" => {
            let mut cfg = WorkerConfig::default();
            let mut scheduler: Option<String> = None;
            let mut net = NetFlags::new(&cfg.host, cfg.port);
            let mut i = 0;
            while i < args.len() {
                if net.parse(args, &mut i)? {
                    i += 1;
                    continue;
                }
                match args[i].as_str() {
                    "--scheduler-file" => {
                        scheduler =
                            Some(read_scheduler_file(value(args, &mut i, "--scheduler-file")?)?)
                    }
                    "--nthreads" => {
                        cfg.nthreads = value(args, &mut i, "--nthreads")?
                            .parse()
                            .map_err(|_| "--nthreads needs a number".to_string())?
                    }
                    "--memory-limit" => {
                        cfg.memory_limit = parse_memory(value(args, &mut i, "--memory-limit")?)?
                    }
                    "--resources" => {
                        cfg.resources = parse_resources(value(args, &mut i, "--resources")?)?
                    }
                    "--name" => cfg.name = Some(value(args, &mut i, "--name")?.into()),
                    "--local-dir" => {
                        cfg.local_dir = PathBuf::from(value(args, &mut i, "--local-dir")?)
                    }
                    "--connect-timeout" => {
                        let secs: f64 = value(args, &mut i, "--connect-timeout")?
                            .parse()
                            .map_err(|_| "--connect-timeout needs seconds".to_string())?;
                        cfg.connect_timeout = Duration::from_secs_f64(secs.max(0.1));
                    }
                    a if !a.starts_with("--") && scheduler.is_none() => {
                        scheduler = Some(a.to_string())
                    }
                    other => return Err(format!("unknown worker option {other:?}\n{USAGE}")),
                }
                i += 1;
            }
            cfg.scheduler = scheduler.ok_or_else(|| {
                format!("worker needs the scheduler address or --scheduler-file\n{USAGE}")
            })?;
            let (host, port) = (net.host.clone(), net.port);
            (cfg.host, cfg.port, cfg.contact_address) = (host, port, net.contact_address.clone());
            (cfg.token, cfg.tls) = net.credentials()?;
            rt.block_on(run_worker(cfg, shutdown(net.stdin_lifeline))).map_err(|e| e.to_string())
        }
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    }
}

/// If this process was started as `BIN scheduler …` or `BIN worker …`, runs
/// that and returns the exit code; otherwise returns `None`.
pub fn run_if_subcommand() -> Option<ExitCode> {
    let args: Vec<String> = std::env::args().collect();
    let cmd = args.get(1)?;
    if cmd != "scheduler" && cmd != "worker" && cmd != "ssh" {
        return None;
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Some(ExitCode::SUCCESS);
    }
    let result = if cmd == "ssh" { crate::ssh::run(&args[2..]) } else { run(cmd, &args[2..]) };
    Some(match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    })
}
