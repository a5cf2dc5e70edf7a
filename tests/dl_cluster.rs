//! `rask::dl::start_cluster` on a 2-worker LocalCluster (separate
//! processes): one member per worker, ports that each worker checked free,
//! TensorFlow and PyTorch environments, and clear refusals of jobs the
//! cluster cannot hold.

use std::path::PathBuf;

use rask::distributed::{ClusterOptions, LocalCluster};
use rask::dl::{start_cluster, DlError, DlOptions, Roles};

/// A LocalCluster of two worker processes with these extra worker arguments.
fn two_workers(worker_args: &[&str]) -> LocalCluster {
    LocalCluster::with_options(ClusterOptions {
        n_workers: 2,
        threads_per_worker: 1,
        binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_rask"))),
        worker_args: worker_args.iter().map(|a| a.to_string()).collect(),
        ..ClusterOptions::default()
    })
    .expect("cluster starts")
}

#[test]
fn start_cluster_places_members_and_builds_their_environments() {
    let cluster = two_workers(&["--resources", "GPU=1"]);
    let client = cluster.client().unwrap();
    let gpu =
        DlOptions { resources: vec![("GPU".into(), 1.0)], tracker: true, ..DlOptions::default() };

    // A PyTorch-style world of 2.
    let spec = start_cluster(&client, &Roles::World(2), &gpu).unwrap();
    assert_eq!(spec.world_size(), 2);
    let (a, b) = (&spec.members[0], &spec.members[1]);
    assert_ne!(a.worker, b.worker, "one member per worker");
    let workers: Vec<String> = client.workers().unwrap().into_iter().map(|w| w.addr).collect();
    assert!(workers.contains(&a.worker) && workers.contains(&b.worker));
    for (rank, m) in spec.members.iter().enumerate() {
        assert_eq!(m.env["RANK"], rank.to_string());
        assert_eq!(m.env["WORLD_SIZE"], "2");
        assert_eq!(m.env["MASTER_ADDR"], a.host);
        assert_eq!(m.env["MASTER_PORT"], a.port.to_string());
        // Both workers are on this host: local ranks 0 and 1 of 2, node 0.
        assert_eq!(m.env["LOCAL_RANK"], rank.to_string());
        assert_eq!(m.env["LOCAL_WORLD_SIZE"], "2");
        assert_eq!(m.env["NODE_RANK"], "0");
        // The port was released for the training process: it binds.
        std::net::TcpListener::bind((m.host.as_str(), m.port)).expect("the member's port binds");
    }
    let tracker = spec.tracker.clone().expect("a tracker was asked for");
    assert!(tracker.starts_with(&format!("{}:", a.host)), "{tracker}");
    assert_ne!(tracker, format!("{}:{}", a.host, a.port));

    // TensorFlow roles.
    let roles = Roles::named([("chief", 1), ("worker", 1)]);
    let spec = start_cluster(&client, &roles, &DlOptions::default()).unwrap();
    let tf: Vec<serde_json::Value> =
        spec.members.iter().map(|m| serde_json::from_str(&m.env["TF_CONFIG"]).unwrap()).collect();
    assert_eq!(tf[0]["task"], serde_json::json!({"type": "chief", "index": 0}));
    assert_eq!(tf[1]["task"], serde_json::json!({"type": "worker", "index": 0}));
    assert_eq!(tf[0]["cluster"], tf[1]["cluster"]);
    let chief = format!("{}:{}", spec.members[0].host, spec.members[0].port);
    assert_eq!(tf[1]["cluster"]["chief"][0], chief.as_str());

    // Jobs the cluster cannot hold are refused, saying why.
    let e = start_cluster(&client, &Roles::World(3), &DlOptions::default()).unwrap_err();
    assert!(matches!(e, DlError::Cluster { .. }) && e.to_string().contains("3 members"), "{e}");
    let two_gpus = DlOptions { resources: vec![("GPU".into(), 2.0)], ..DlOptions::default() };
    let e = start_cluster(&client, &Roles::World(1), &two_gpus).unwrap_err();
    assert!(e.to_string().contains("GPU"), "{e}");
}

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

/// Whether `pid` runs: a zombie has exited (an orphan's new parent may
/// not reap it).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).is_ok_and(|s| {
        s.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

#[test]
fn launch_streams_logs_and_fails_as_a_unit() {
    use rask::dl::{launch, LaunchOptions, Stream};
    let cluster = two_workers(&[]);
    let client = cluster.client().unwrap();
    let spec = start_cluster(&client, &Roles::World(2), &DlOptions::default()).unwrap();

    // Every member runs with its environment; every line reaches the client.
    let mut lines: Vec<(String, usize, Stream, String)> = Vec::new();
    let options = LaunchOptions {
        on_line: Some(Box::new(|role: &str, rank, s, line: &str| {
            lines.push((role.to_string(), rank, s, line.to_string()))
        })),
        ..LaunchOptions::default()
    };
    let script =
        "echo \"rank=$RANK world=$WORLD_SIZE master=$MASTER_ADDR:$MASTER_PORT\"; echo note >&2";
    let report = launch(&client, &spec, &sh(script), options).unwrap();
    assert!(report.failed.is_none(), "{:?}", report.failed);
    assert_eq!(report.members.iter().map(|m| m.code).collect::<Vec<_>>(), [Some(0), Some(0)]);
    let master = format!("{}:{}", spec.members[0].host, spec.members[0].port);
    for rank in 0..2 {
        let want = format!("rank={rank} world=2 master={master}");
        assert!(
            lines.iter().any(|l| l.1 == rank && l.2 == Stream::Stdout && l.3 == want),
            "{want} not in {lines:?}"
        );
        assert!(lines.iter().any(|l| l.1 == rank && l.2 == Stream::Stderr && l.3 == "note"));
    }

    // Rank 1 fails: rank 0 (and the process it started) is stopped, and the
    // report names rank 1, its code and its last lines.
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "echo $$ > {d}/sh.$RANK; sleep 120 & echo $! > {d}/sleep.$RANK; \
         if [ \"$RANK\" = 1 ]; then echo boom >&2; exit 3; fi; wait",
        d = dir.path().display()
    );
    let options = LaunchOptions {
        on_line: Some(Box::new(|_: &str, _, _, _: &str| {})),
        ..LaunchOptions::default()
    };
    let report = launch(&client, &spec, &sh(&script), options).unwrap();
    let failed = report.failed.expect("rank 1 failed");
    assert_eq!((failed.role.as_str(), failed.rank, failed.code), ("worker", 1, Some(3)));
    assert!(failed.tail.iter().any(|l| l == "boom"), "{:?}", failed.tail);
    assert_ne!(report.members[0].code, Some(0), "rank 0 was stopped");
    for f in ["sh.0", "sleep.0", "sh.1", "sleep.1"] {
        let pid = std::fs::read_to_string(dir.path().join(f)).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while alive(&pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(!alive(&pid), "{f} (pid {}) is still running", pid.trim());
    }

    // The client cancels: once both members have started, every member is
    // stopped, none counts as failed, and no process is left.
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "sleep 120 & echo $! > {d}/sleep.$RANK; echo started; wait",
        d = dir.path().display()
    );
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = std::cell::Cell::new(0);
    let options = LaunchOptions {
        on_line: Some(Box::new(|_: &str, _, _, line: &str| {
            if line == "started" {
                started.set(started.get() + 1);
                if started.get() == 2 {
                    cancel.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
        })),
        cancel: Some(cancel.clone()),
        ..LaunchOptions::default()
    };
    let began = std::time::Instant::now();
    let report = launch(&client, &spec, &sh(&script), options).unwrap();
    assert!(report.cancelled && report.failed.is_none(), "{report:?}");
    assert!(report.members.iter().all(|m| m.code != Some(0)), "{report:?}");
    assert!(
        began.elapsed() < std::time::Duration::from_secs(60),
        "the cancel took {:?}",
        began.elapsed()
    );
    for f in ["sleep.0", "sleep.1"] {
        let pid = std::fs::read_to_string(dir.path().join(f)).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while alive(&pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(!alive(&pid), "{f} (pid {}) is still running after the cancel", pid.trim());
    }
}

#[test]
fn the_cli_launches_a_job_and_exits_with_the_failed_members_code() {
    let rask = || std::process::Command::new(env!("CARGO_BIN_EXE_rask"));
    let out = rask()
        .args(["dl", "launch", "--local", "2", "--roles", "chief=1,worker=1", "--"])
        .args(sh("echo \"$RASK_DL_ROLE $RANK of $WORLD_SIZE\"; echo warn >&2"))
        .output()
        .unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // Each line is prefixed by role and rank, on the stream it was written to.
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines.sort();
    assert_eq!(lines, ["[chief 0] chief 0 of 2", "[worker 1] worker 1 of 2"], "{stderr}");
    assert!(stderr.contains("[chief 0] warn") && stderr.contains("[worker 1] warn"), "{stderr}");
    assert!(stderr.contains("exit codes: chief 0: 0, worker 1: 0"), "{stderr}");

    // Rank 1 fails: the CLI says who, with its last lines, and exits with its code.
    let out = rask()
        .args(["dl", "launch", "--local", "2", "--grace", "1", "--"])
        .args(sh("if [ \"$RANK\" = 1 ]; then echo boom >&2; exit 4; fi; sleep 120"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("worker rank 1 failed with exit code 4"), "{stderr}");
    assert!(stderr.contains("\n  boom"), "{stderr}");

    // Bad input is refused before anything runs.
    for (args, says) in [
        (vec!["--local", "1", "--roles", "chief"], "is not ROLE=COUNT"),
        (vec!["--local", "1", "--resources", "GPU"], "NAME=AMOUNT"),
        (vec!["--world", "1"], "--scheduler ADDR, --scheduler-file PATH, or --local N"),
        (vec!["--local", "1", "--world", "3"], "3 members"),
    ] {
        let out = rask().args(["dl", "launch"]).args(&args).args(["--", "true"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// Every process below `root`, from /proc's parent links.
fn descendants(root: u32) -> Vec<u32> {
    let parent = |pid: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // After the command's `(name)`: state, then the parent's pid.
        stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
    };
    let all: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        let children: Vec<u32> =
            all.iter().copied().filter(|&c| parent(c) == Some(p) && !found.contains(&c)).collect();
        found.extend(children);
        i += 1;
    }
    found.split_off(1)
}

#[test]
fn a_sigkilled_cli_leaves_no_process_behind() {
    // The CLI's LocalCluster (scheduler, workers) and the members' commands
    // all go when the CLI dies without a chance to clean up.
    let dir = tempfile::tempdir().unwrap();
    let mut cli = std::process::Command::new(env!("CARGO_BIN_EXE_rask"))
        .args(["dl", "launch", "--local", "2", "--"])
        .args(sh(&format!("echo $$ > {}/m.$RANK; sleep 120", dir.path().display())))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !(dir.path().join("m.0").exists() && dir.path().join("m.1").exists()) {
        assert!(std::time::Instant::now() < deadline, "the members did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let below = descendants(cli.id());
    // Scheduler, two workers, two shells and their sleeps.
    assert!(below.len() >= 7, "{below:?}");
    cli.kill().unwrap();
    cli.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let left = || below.iter().filter(|p| alive(&p.to_string())).copied().collect::<Vec<_>>();
    while !left().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(left().is_empty(), "still running after the CLI's SIGKILL: {:?}", left());
}

#[test]
fn a_killed_worker_takes_its_members_children_along() {
    use rask::dl::{launch, LaunchOptions};
    let mut cluster = two_workers(&[]);
    let client = cluster.client().unwrap();
    let spec = start_cluster(&client, &Roles::World(2), &DlOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Each member's shell starts a child of its own (a grandchild of the worker).
    let script = format!("sleep 120 & echo $! > {}/sleep.$RANK; wait", dir.path().display());
    let d = dir.path().to_path_buf();
    let killer = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !(d.join("sleep.0").exists() && d.join("sleep.1").exists()) {
            assert!(std::time::Instant::now() < deadline, "the members did not start");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        let pids: Vec<String> = (0..2)
            .map(|r| std::fs::read_to_string(d.join(format!("sleep.{r}"))).unwrap())
            .collect();
        cluster.kill_worker(0).unwrap();
        (pids, cluster)
    });
    let options = LaunchOptions {
        on_line: Some(Box::new(|_: &str, _, _, _: &str| {})),
        ..LaunchOptions::default()
    };
    let report = launch(&client, &spec, &sh(&script), options).unwrap();
    let (pids, _cluster) = killer.join().unwrap();
    assert!(report.failed.is_some(), "a member's worker died: {report:?}");
    // The dead worker's member and its child are gone, and so is the other
    // member's (stopped as a unit).
    for pid in &pids {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(!alive(pid), "sleep (pid {}) outlived its killed worker", pid.trim());
    }
}

/// The native trainer (`rask::dl::train`, feature `burn`) on real worker
/// processes, checked against the same training on one process.
#[cfg(feature = "burn")]
mod native {
    use std::process::Command;
    use std::time::Duration;

    use ndarray::{Array2, Axis};
    use rask::array::create::from_array;
    use rask::dl::train::{train, train_local, MlpConfig, TrainData, TrainOptions};

    /// A smooth target of 8 features (seeded, no RNG crate needed).
    fn data(rows: usize) -> (Array2<f64>, Array2<f64>) {
        let mut s: u64 = 42;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        };
        let x = Array2::from_shape_fn((rows, 8), |_| next());
        let y = Array2::from_shape_fn((rows, 1), |(i, _)| {
            let r = x.row(i);
            (2.0 * r[0]).sin() + r[1] * r[2] - 0.5 * r[3] + 0.1 * r[7]
        });
        (x, y)
    }

    fn on_cluster(
        client: &rask::distributed::Client,
        x: &Array2<f64>,
        y: &Array2<f64>,
    ) -> TrainData {
        let blocks = vec![x.nrows() / 8; 8];
        let xa = from_array(&x.clone().into_dyn(), vec![blocks.clone(), vec![x.ncols()]]).unwrap();
        let ya = from_array(&y.clone().into_dyn(), vec![blocks, vec![1]]).unwrap();
        TrainData::new(client, &xa, &ya).unwrap()
    }

    fn options<'a>(steps: usize) -> TrainOptions<'a> {
        TrainOptions {
            steps,
            batch_size: 128,
            learning_rate: 0.05,
            seed: 11,
            ..TrainOptions::default()
        }
    }

    /// Loss curves agree step by step within `rel` (float additions run in
    /// another order: member sums, then the ring's).
    fn same_curve(got: &[f32], want: &[f32], rel: f32) {
        assert_eq!(got.len(), want.len());
        let mut worst = 0f32;
        for (t, (a, b)) in got.iter().zip(want).enumerate() {
            let d = (a - b).abs() / b.abs().max(1e-3);
            assert!(d <= rel, "step {t}: {a} vs {b} (single process)");
            worst = worst.max(d);
        }
        eprintln!("{} steps, largest relative difference from one process: {worst:.2e}", got.len());
    }

    #[test]
    fn two_workers_follow_the_single_process_loss_curve() {
        let (x, y) = data(4000);
        let config = MlpConfig::new(8, &[32, 32], 1);
        let local = train_local(x.view(), y.view(), &config, options(80)).unwrap();
        let cluster = super::two_workers(&[]);
        let client = cluster.client().unwrap();
        let d = on_cluster(&client, &x, &y);
        let mut seen = Vec::new();
        let mut o = options(80);
        o.on_step = Some(Box::new(|t, loss| seen.push((t, loss))));
        let t = train(&client, &d, &config, o).unwrap();
        assert_eq!(t.world, 2, "one member per worker");
        eprintln!(
            "loss {:.4} -> {:.4} on 2 workers, single process {:.4} -> {:.4}",
            t.losses[0], t.losses[79], local.losses[0], local.losses[79]
        );
        // Tolerance: 1e-5 relative per step.
        same_curve(&t.losses, &local.losses, 1e-5);
        let tail: f32 = t.losses[70..].iter().sum::<f32>() / 10.0;
        assert!(tail < 0.5 * t.losses[0], "the loss fell: {} -> {tail}", t.losses[0]);
        // Progress reached the client, step by step.
        assert_eq!(seen.len(), 80);
        assert!(seen.iter().zip(&t.losses).enumerate().all(|(i, ((s, l), w))| *s == i && l == w));
        // Both models predict alike.
        let (pa, pb) = (t.predict(x.view()).unwrap(), local.predict(x.view()).unwrap());
        let diff = (&pa - &pb).mapv(f64::abs).fold(0.0f64, |m, v| m.max(*v));
        assert!(diff < 1e-3, "predictions differ by {diff}");
        // Both members computed; rank 0's share is about half the rows.
        assert_eq!(t.timings.len(), 2);

        // Checkpoints to a file: a 40-step training writes them (the last at
        // step 30; the end's model is the result), and the same training of
        // 80 steps resumes from the file, on the same curve.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mlp.ckpt");
        let to_file = |steps: usize| {
            let mut o = options(steps);
            o.checkpoint_every = Some(10);
            o.checkpoint_path = Some(path.clone());
            o
        };
        train(&client, &d, &config, to_file(40)).unwrap();
        assert!(path.is_file());
        let resumed_at = std::cell::Cell::new(None);
        let mut o = to_file(80);
        o.on_step = Some(Box::new(|t, _| {
            resumed_at.set(resumed_at.get().or(Some(t)));
        }));
        let r = train(&client, &d, &config, o).unwrap();
        assert_eq!(resumed_at.get(), Some(30), "resumed from the file's step 30");
        same_curve(&r.losses, &local.losses, 1e-5);
        // Another training's file is refused, and so is a path without
        // checkpoints.
        let mut other = to_file(80);
        other.seed = 12;
        let err = train(&client, &d, &config, other).err().unwrap().to_string();
        assert!(
            err.contains("not a checkpoint of this training") && err.contains("seed 11"),
            "{err}"
        );
        let mut no_every = to_file(80);
        no_every.checkpoint_every = None;
        let err = train(&client, &d, &config, no_every).err().unwrap().to_string();
        assert!(err.contains("checkpoint_every"), "{err}");
        std::fs::write(&path, b"not a checkpoint").unwrap();
        let err = train(&client, &d, &config, to_file(80)).err().unwrap().to_string();
        assert!(err.contains("unreadable"), "{err}");

        // Bad input: named, before anything runs.
        let mut bad = options(5);
        bad.batch_size = 0;
        let err = train(&client, &d, &config, bad).err().unwrap().to_string();
        assert!(err.contains("batch_size"), "{err}");
        let err =
            train(&client, &d, &MlpConfig::new(7, &[4], 1), options(5)).err().unwrap().to_string();
        assert!(err.contains("8 features"), "{err}");
        let err = t.predict(x.view().split_at(Axis(1), 4).0).err().unwrap().to_string();
        assert!(err.contains("4 features"), "{err}");
    }

    #[test]
    fn a_sigkilled_worker_resumes_from_the_checkpoint_on_the_survivor() {
        let (x, y) = data(4000);
        let config = MlpConfig::new(8, &[64, 64], 1);
        let steps = 400;
        let local = train_local(x.view(), y.view(), &config, options(steps)).unwrap();
        let cluster = super::two_workers(&[]);
        let client = cluster.client().unwrap();
        let d = on_cluster(&client, &x, &y);
        let victim = cluster.worker_pids()[1].unwrap();
        let killed = std::cell::Cell::new(false);
        let mut o = options(steps);
        o.checkpoint_every = Some(10);
        o.timeout_s = 20;
        o.on_step = Some(Box::new(|t, _| {
            if t == 40 && !killed.replace(true) {
                Command::new("kill").arg("-9").arg(victim.to_string()).status().unwrap();
            }
        }));
        let t = train(&client, &d, &config, o).unwrap();
        assert!(killed.get());
        eprintln!(
            "{} restart(s); finished on {} member(s) in {:.2} s, loss {:.4} -> {:.4}",
            t.restarts,
            t.world,
            t.seconds,
            t.losses[0],
            t.losses[steps - 1]
        );
        assert_eq!(t.restarts, 1);
        assert_eq!(t.world, 1, "the survivor finished alone");
        // The rows of a step do not depend on who holds them: the curve
        // after the restart is the uninterrupted one.
        same_curve(&t.losses, &local.losses, 1e-5);
        let _ = client.wait_for_workers(1, Duration::from_secs(5));
    }
}
