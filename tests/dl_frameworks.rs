//! Real frameworks on a 2-worker LocalCluster (separate processes), through
//! `rask::dl::start_cluster` and `rask::dl::launch`:
//! - TensorFlow: a Keras model trained under MultiWorkerMirroredStrategy
//!   (`tests/fixtures/dl/tf_train.py`), in the virtualenv that
//!   `cargo xtask provision` builds (`RASK_TF_PYTHON`);
//! - a PyTorch-style rendezvous on MASTER_ADDR:MASTER_PORT
//!   (`tests/fixtures/dl/rendezvous.py`, plain sockets: torch is not
//!   installable in CI).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rask::distributed::{Client, ClusterOptions, LocalCluster};
use rask::dl::{launch, start_cluster, DlOptions, LaunchOptions, LaunchReport, Roles, Stream};

/// One test at a time: TensorFlow members take both cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dl").join(name).display().to_string()
}

/// TensorFlow's Python, or `None` (and why) outside CI when it is missing.
fn tf_python() -> Option<String> {
    let python = std::env::var_os("RASK_TF_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/rask/tf-venv/bin/python")
    });
    if python.is_file() {
        return Some(python.display().to_string());
    }
    let why = format!(
        "{} is missing: `cargo xtask provision` builds TensorFlow's virtualenv",
        python.display()
    );
    assert!(std::env::var_os("CI").is_none(), "{why}");
    eprintln!("skipped: {why}");
    None
}

fn cluster() -> (LocalCluster, Client) {
    let cluster = LocalCluster::with_options(ClusterOptions {
        n_workers: 2,
        threads_per_worker: 1,
        binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_rask"))),
        ..ClusterOptions::default()
    })
    .expect("cluster starts");
    let client = cluster.client().unwrap();
    (cluster, client)
}

type Lines = Vec<(usize, Stream, String)>;

/// Launches `command` on `spec`, keeping every line that reaches the client.
fn run(client: &Client, spec: &rask::dl::ClusterSpec, command: &[String]) -> (LaunchReport, Lines) {
    let mut lines = Vec::new();
    let options = LaunchOptions {
        on_line: Some(Box::new(|_: &str, rank, stream, line: &str| {
            lines.push((rank, stream, line.to_string()))
        })),
        ..LaunchOptions::default()
    };
    let report = launch(client, spec, command, options).expect("launch runs");
    (report, lines)
}

fn stdout_of(lines: &Lines, rank: usize, prefix: &str) -> Option<String> {
    lines
        .iter()
        .find(|(r, s, l)| *r == rank && *s == Stream::Stdout && l.starts_with(prefix))
        .map(|(_, _, l)| l[prefix.len()..].to_string())
}

#[test]
fn tensorflow_trains_under_multi_worker_mirrored_strategy() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(python) = tf_python() else { return };
    let (_cluster, client) = cluster();
    let spec = start_cluster(&client, &Roles::named([("worker", 2)]), &DlOptions::default())
        .expect("two members");
    let (report, lines) = run(&client, &spec, &[python.clone(), fixture("tf_train.py")]);
    let logs = || format!("{:?}\n{lines:#?}", report.failed);
    assert!(report.failed.is_none(), "{}", logs());
    assert_eq!(report.members.iter().map(|m| m.code).collect::<Vec<_>>(), [Some(0), Some(0)]);

    let mut curves = Vec::new();
    for rank in 0..2 {
        // Each member joined a world of 2 as its own task.
        let joined = stdout_of(&lines, rank, "member ").unwrap_or_else(|| panic!("{}", logs()));
        assert_eq!(joined, format!("type=worker index={rank} world=2"), "{}", logs());
        let losses: Vec<f64> = stdout_of(&lines, rank, "losses ")
            .unwrap_or_else(|| panic!("{}", logs()))
            .split(' ')
            .map(|v| v.parse().unwrap())
            .collect();
        assert_eq!(losses.len(), 4);
        assert!(losses[3] < 0.5 * losses[0], "the loss did not fall: {losses:?}");
        curves.push(losses);
    }
    // Gradients were all-reduced: both replicas hold the same model.
    assert_eq!(curves[0], curves[1]);
    // TensorFlow's own log lines (stderr) reached the client too.
    assert!(lines.iter().any(|(_, s, l)| *s == Stream::Stderr && l.contains("grpc")), "{}", logs());

    // A member that fails mid-training brings the job down as a unit; its
    // peer, blocked in a collective, is stopped rather than left waiting.
    let failing =
        ["env".to_string(), "TF_TRAIN_FAIL_INDEX=1".to_string(), python, fixture("tf_train.py")];
    let (report, lines) = run(&client, &spec, &failing);
    let failed = report.failed.clone().unwrap_or_else(|| panic!("no failure: {lines:#?}"));
    assert_eq!((failed.role.as_str(), failed.rank, failed.code), ("worker", 1, Some(7)));
    assert!(failed.tail.iter().any(|l| l.contains("failing on purpose")), "{:?}", failed.tail);
    assert_ne!(report.members[0].code, Some(0), "rank 0 was stopped: {report:?}");
}

#[test]
fn a_pytorch_style_world_agrees_on_its_members() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_cluster, client) = cluster();
    let spec = start_cluster(&client, &Roles::World(2), &DlOptions::default()).unwrap();
    let python = tf_python().unwrap_or_else(|| "python3".into());
    let (report, lines) = run(&client, &spec, &[python, fixture("rendezvous.py")]);
    assert!(report.failed.is_none(), "{:?}\n{lines:#?}", report.failed);
    for rank in 0..2 {
        let said = stdout_of(&lines, rank, &format!("rank {rank} "));
        assert_eq!(said.as_deref(), Some("agreed on world 0,1 of size 2"), "{lines:#?}");
    }
}
