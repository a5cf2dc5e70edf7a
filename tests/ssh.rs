//! `rask ssh` against a real OpenSSH server on this machine: an `sshd` that
//! this test starts on a free port of 127.0.0.1–3, with its own host key and
//! an authorized client key, all in a temporary folder. The launcher starts
//! the scheduler on 127.0.0.1 and a worker on each of 127.0.0.2 and
//! 127.0.0.3 (with a cluster token), a client computes a graph there, then
//! SIGINT (Ctrl-C) to the launcher must leave no process behind.
//!
//! Needs `sshd` (openssh-server, which `cargo xtask provision` installs) and
//! root. Where either is missing the test fails when `CI` is set, and
//! otherwise says loudly that it did not run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rask::bench::w1::build_tree;
use rask::distributed::{Client, ClientOptions};
use rask::ComputeOptions;

const SSHD: &str = "/usr/sbin/sshd";
const TOKEN: &str = "ssh-launcher-test-token-0123456789";

/// Kills the child on drop (sshd, or a launcher the test gave up on).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts sshd on `port` of 127.0.0.1–3, trusting `dir/id_ed25519.pub`.
fn start_sshd(dir: &Path, port: u16) -> Guard {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(dir.join("host_key")));
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(dir.join("id_ed25519")));
    std::fs::copy(dir.join("id_ed25519.pub"), dir.join("authorized_keys")).unwrap();
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nListenAddress 127.0.0.2\nListenAddress 127.0.0.3\n\
         HostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\nPidFile {d}/sshd.pid\n\
         StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
         PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nLogLevel ERROR\n",
        d = dir.display()
    );
    std::fs::write(dir.join("sshd_config"), config).unwrap();
    // sshd's privilege separation needs this folder (root owns it).
    std::fs::create_dir_all("/run/sshd").unwrap();
    let child = Command::new(SSHD)
        .args(["-D", "-e", "-f"])
        .arg(dir.join("sshd_config"))
        .stdin(Stdio::null())
        .spawn()
        .expect("sshd starts");
    let guard = Guard(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.3", port)).is_err() {
        assert!(Instant::now() < deadline, "sshd did not listen on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    guard
}

/// Processes whose command line mentions `marker`, as (pid, command line).
fn processes_with(marker: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let line = String::from_utf8_lossy(&raw).replace('\0', " ");
            line.contains(marker).then_some((pid, line))
        })
        .collect()
}

/// sshd's session processes (its children), which must end with their sessions.
fn children_of(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let after: u32 =
                        s.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
                    Some(after == parent)
                })
                .unwrap_or(false)
        })
        .collect()
}

fn cannot_run(why: &str) {
    assert!(std::env::var_os("CI").is_none(), "the rask ssh test cannot run under CI: {why}");
    eprintln!("NOT RUN: rask ssh test: {why}");
}

#[test]
fn rask_ssh_starts_a_cluster_through_sshd_and_ctrl_c_leaves_nothing() {
    if !Path::new(SSHD).exists() {
        return cannot_run(
            "no /usr/sbin/sshd; run `cargo xtask provision` (installs openssh-server)",
        );
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return cannot_run("sshd needs root to start sessions");
    }
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let port = free_port();
    let sshd = start_sshd(dir, port);
    let token_file = dir.join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let scheduler_file = dir.join("scheduler.json");
    let rask = PathBuf::from(env!("CARGO_BIN_EXE_rask"));

    // A host where no sshd listens: a clear error, not a hang.
    let out = Command::new(&rask)
        .args(["ssh", "127.0.0.1", "--scheduler-port", "0", "--timeout", "20"])
        .args(["--ssh-option", &format!("Port={}", free_port())])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("ssh failed") && err.contains("before it listened"), "{err}");
    let mut launcher = Command::new(&rask);
    launcher
        .args(["ssh", "127.0.0.1", "127.0.0.2", "127.0.0.3", "--scheduler-port", "0"])
        .args(["--nthreads", "1", "--timeout", "60", "--remote-rask"])
        .arg(&rask)
        .arg("--scheduler-file")
        .arg(&scheduler_file)
        .arg("--token-file")
        .arg(&token_file)
        .args(["--ssh-option", &format!("Port={port}")])
        .args(["--ssh-option", &format!("IdentityFile={}", dir.join("id_ed25519").display())])
        .args(["--ssh-option", "StrictHostKeyChecking=no"])
        .args(["--ssh-option", "UserKnownHostsFile=/dev/null"])
        .args(["--ssh-option", "LogLevel=ERROR"]);
    let mut launcher = Guard(launcher.spawn().expect("rask ssh starts"));

    // The launcher writes the scheduler file once the scheduler listens.
    let deadline = Instant::now() + Duration::from_secs(60);
    let address = loop {
        if let Ok(text) = std::fs::read_to_string(&scheduler_file) {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            break v["address"].as_str().unwrap().to_string();
        }
        if let Some(status) = launcher.0.try_wait().unwrap() {
            panic!("rask ssh exited early with {status}");
        }
        assert!(Instant::now() < deadline, "no scheduler file within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(address.starts_with("127.0.0.1:"), "scheduler address {address}");
    {
        let client = Client::connect_with(
            &address,
            ClientOptions { token: TOKEN.into(), ..Default::default() },
        )
        .expect("client connects with the token");
        client.wait_for_workers(2, Duration::from_secs(60)).unwrap();
        // Three ssh clients here, three rask processes behind sshd.
        let running = processes_with(&token_file.display().to_string());
        assert!(running.len() >= 6, "{running:?}");
        let mut hosts: Vec<String> = client
            .workers()
            .unwrap()
            .iter()
            .map(|w| w.addr.rsplit_once(':').unwrap().0.to_string())
            .collect();
        hosts.sort();
        assert_eq!(hosts, ["127.0.0.2", "127.0.0.3"], "each worker on its own host address");
        let (tree, _) = build_tree(1000);
        let sum = tree.compute_with(&client.scheduler(), &ComputeOptions::new()).unwrap();
        assert_eq!(sum, 1000 * 1001 / 2);
        // A client without the token is refused.
        let refused = Client::connect_with(
            &address,
            ClientOptions { set_as_default: false, ..Default::default() },
        );
        assert!(refused.is_err());
    }

    // Ctrl-C.
    let pid = launcher.0.id() as i32;
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(s) = launcher.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "rask ssh did not stop within 40 s of SIGINT");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "rask ssh exited with {status}");
    // Nothing left: no scheduler, worker or ssh client, no sshd session.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = processes_with(&token_file.display().to_string());
        let sessions = children_of(sshd.0.id());
        if left.is_empty() && sessions.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left behind after Ctrl-C: {left:?}; sshd sessions {sessions:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!scheduler_file.exists(), "the scheduler file is removed on teardown");
}
