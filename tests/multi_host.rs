//! A real multi-host cluster on one machine, as the README's multi-machine
//! section deploys it: network namespaces joined by veth links to a bridge
//! (in a namespace of its own), the scheduler in one, a worker in each of two
//! others, the client in a fourth; mutual TLS and a token on every
//! connection. The addresses (10.233.7.0/24) exist only inside the
//! namespaces this test creates, and it contacts no other address.
//!
//! Needs root (`ip netns`). Where namespaces cannot be created the test
//! fails when `CI` is set, and otherwise says loudly that it did not run.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rask::bench::w1::inc;
use rask::distributed::auth::{Tls, TlsFiles};
use rask::distributed::{Client, ClientOptions};
use rask::ml::{create, ParamValue};
use rask::search::{grid, Cv, GridSearchCV};
use rask::ComputeOptions;

const SUBNET: &str = "10.233.7";
const TOKEN: &str = "multi-host-test-token-0123456789";

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The namespaces and links of one test run; removed on drop.
struct Net {
    hub: String,
    nodes: Vec<String>,
}

impl Net {
    fn create(n: usize) -> Result<Net, String> {
        let tag = std::process::id() % 100_000;
        let mut net = Net { hub: format!("rask{tag}-hub"), nodes: Vec::new() };
        ip(&["netns", "add", &net.hub])?;
        ip(&["-n", &net.hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &net.hub, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let ns = format!("rask{tag}-n{i}");
            ip(&["netns", "add", &ns])?;
            net.nodes.push(ns.clone());
            let (a, b) = (format!("rk{tag}a{i}"), format!("rk{tag}b{i}"));
            ip(&["link", "add", &a, "type", "veth", "peer", "name", &b])?;
            ip(&["link", "set", &a, "netns", &ns])?;
            ip(&["link", "set", &b, "netns", &net.hub])?;
            ip(&["-n", &net.hub, "link", "set", &b, "master", "br0"])?;
            ip(&["-n", &net.hub, "link", "set", &b, "up"])?;
            ip(&["-n", &ns, "addr", "add", &format!("{}/24", addr(i)), "dev", &a])?;
            ip(&["-n", &ns, "link", "set", &a, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// `program args…` inside node `i`'s namespace.
    fn command(&self, i: usize, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.nodes[i]]).arg(program);
        c
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth ends inside it (and so their peers).
        for ns in self.nodes.iter().chain(std::iter::once(&self.hub)) {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

fn addr(i: usize) -> String {
    format!("{SUBNET}.{}", i + 1)
}

/// Processes killed (and reaped) on drop, so a failing test leaves none behind.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// On a failing test, prints the cluster processes' logs, which live in a
/// temporary directory that goes with the test.
struct LogsOnPanic<'a>(&'a Path);

impl Drop for LogsOnPanic<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for name in ["scheduler.err", "w1.err", "w2.err", "scheduler.out", "w1.out", "w2.out"] {
            let text = std::fs::read_to_string(self.0.join(name)).unwrap_or_default();
            eprintln!("----- {name} -----\n{text}");
        }
    }
}

#[path = "common/tls.rs"]
mod tls;

/// A CA and one certificate naming every node's address, as PEM files.
fn certificates(dir: &Path, name: &str, n: usize) -> TlsFiles {
    tls::certificates(dir, name, &(0..n).map(addr).collect::<Vec<_>>())
}

fn tls_args(f: &TlsFiles) -> Vec<PathBuf> {
    vec![
        "--tls-ca-file".into(),
        f.ca.clone(),
        "--tls-cert".into(),
        f.cert.clone(),
        "--tls-key".into(),
        f.key.clone(),
    ]
}

/// Runs `f` on a thread moved into namespace `ns` (threads it starts, such as
/// a client's runtime, inherit the namespace).
fn in_namespace<R: Send + 'static>(ns: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("namespace file");
        // SAFETY: setns on this thread only, with a namespace file we opened.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns({path}): {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("the client thread panicked")
}

#[test]
fn a_tls_cluster_across_network_namespaces() {
    let net = match Net::create(4) {
        Ok(n) => n,
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("CI must run the multi-host test, but namespaces cannot be created: {e}")
        }
        Err(e) => {
            eprintln!("\n*** NOT RUN: a_tls_cluster_across_network_namespaces needs root and `ip netns` ({e}) ***\n");
            return;
        }
    };
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_rask"));
    let dir = tempfile::tempdir().unwrap();
    let tls = certificates(dir.path(), "cluster", 4);
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let log = |name: &str| Stdio::from(std::fs::File::create(dir.path().join(name)).unwrap());
    let mut procs = Procs(Vec::new());
    let _logs = LogsOnPanic(dir.path());

    // The README's recipe: the scheduler binds every interface and tells its
    // address; a worker names its own; the other finds it from its route.
    let sched_file = dir.path().join("scheduler.json");
    procs.0.push(
        net.command(0, &bin)
            .args(["scheduler", "--listen", "0.0.0.0:8786", "--contact-address", &addr(0)])
            .arg("--scheduler-file")
            .arg(&sched_file)
            .arg("--token-file")
            .arg(&token_file)
            .args(tls_args(&tls))
            .stdout(log("scheduler.out"))
            .stderr(log("scheduler.err"))
            .spawn()
            .unwrap(),
    );
    let scheduler = format!("{}:8786", addr(0));
    procs.0.push(
        net.command(1, &bin)
            .args(["worker", &scheduler, "--listen", "0.0.0.0", "--contact-address", &addr(1)])
            .args(["--nthreads", "1", "--name", "w1", "--token-file"])
            .arg(&token_file)
            .args(tls_args(&tls))
            .stdout(log("w1.out"))
            .stderr(log("w1.err"))
            .spawn()
            .unwrap(),
    );
    procs.0.push(
        net.command(2, &bin)
            .args(["worker", "--scheduler-file"])
            .arg(&sched_file)
            .args(["--listen", "0.0.0.0", "--nthreads", "1", "--name", "w2", "--token-file"])
            .arg(&token_file)
            .args(tls_args(&tls))
            .stdout(log("w2.out"))
            .stderr(log("w2.err"))
            .spawn()
            .unwrap(),
    );
    let file: serde_json::Value =
        serde_json::from_str(&wait_for_file(&sched_file, Duration::from_secs(30))).unwrap();
    assert_eq!(file["address"], scheduler, "the scheduler file names the contact address");

    // A client in the fourth namespace: a delayed graph and a search.
    let client_ns = net.nodes[3].clone();
    let files = tls.clone();
    let sched = scheduler.clone();
    let workers = in_namespace(&client_ns, move || {
        let client = Client::connect_with(
            &sched,
            ClientOptions {
                token: TOKEN.into(),
                tls: Some(Tls::load(files).unwrap()),
                timeout: Duration::from_secs(30),
                ..ClientOptions::default()
            },
        )
        .expect("the client connects over TLS");
        client.wait_for_workers(2, Duration::from_secs(60)).unwrap();
        let total = rask::ops::sum_i64((0..100).map(inc).collect::<Vec<_>>());
        assert_eq!(total.compute().unwrap(), 5050);
        let (x, y) = rask::ml::datasets::make_classification(300, 6, 4, 2, 3);
        let search = || {
            let mut lr = create("LogisticRegression").unwrap();
            lr.set_param("max_iter", ParamValue::I64(500)).unwrap();
            GridSearchCV::new(
                lr,
                vec![grid(vec![("C", vec![ParamValue::F64(0.1), ParamValue::F64(10.0)])])],
            )
            .cv(Cv::Folds(3))
            .scoring(&["accuracy"])
        };
        let remote =
            search().fit_with(&x, &y, &client.scheduler(), &ComputeOptions::new()).unwrap();
        let local = search().fit(&x, &y).unwrap();
        assert_eq!(remote.cv_results.split_test, local.cv_results.split_test);
        let mut addrs: Vec<String> =
            client.workers().unwrap().into_iter().map(|w| w.addr).collect();
        addrs.sort();
        addrs
    });
    // Each worker is dialled at its own namespace's address: one named, one routed.
    assert_eq!(workers.len(), 2);
    assert!(workers[0].starts_with(&format!("{}:", addr(1))), "{workers:?}");
    assert!(workers[1].starts_with(&format!("{}:", addr(2))), "{workers:?}");

    // A client with the wrong token is refused, and told why.
    let (files, sched) = (tls.clone(), scheduler.clone());
    let err = in_namespace(&client_ns, move || {
        Client::connect_with(
            &sched,
            ClientOptions {
                token: "wrong-token-0123456789".into(),
                tls: Some(Tls::load(files).unwrap()),
                set_as_default: false,
                ..ClientOptions::default()
            },
        )
        .err()
        .map(|e| e.to_string())
    });
    assert!(
        err.as_deref().is_some_and(|e| e.contains("wrong or missing cluster token")),
        "{err:?}"
    );

    // A raw TCP peer gets nothing from a worker's port.
    let worker_addr = workers[0].clone();
    let got = in_namespace(&client_ns, move || {
        let mut s = std::net::TcpStream::connect(&worker_addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ =
            s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00");
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        got
    });
    assert!(got.len() < 64, "a raw peer got {} bytes back", got.len());

    // A worker of another CA is refused in the handshake, and says so.
    let other = certificates(dir.path(), "other", 4);
    let out = net
        .command(1, &bin)
        .args(["worker", &scheduler, "--listen", "0.0.0.0", "--contact-address", &addr(1)])
        .args(["--connect-timeout", "3", "--token-file"])
        .arg(&token_file)
        .args(tls_args(&other))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a worker of another CA joined: {stderr}");
    assert!(stderr.contains("TLS"), "{stderr}");
    drop(procs);
    drop(net);
}

fn wait_for_file(path: &Path, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(t) = std::fs::read_to_string(path) {
            if !t.is_empty() {
                return t;
            }
        }
        assert!(Instant::now() < deadline, "{} did not appear", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}
