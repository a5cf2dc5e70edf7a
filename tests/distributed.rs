//! The distributed runtime as real processes on loopback: a `rask scheduler`
//! and `rask worker` processes started by `LocalCluster`, clients in this
//! process. Faults are deterministic: a worker is killed at a chosen point.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rask::bench::w1::{add, build_tree, inc};
use rask::distributed::protocol::{pb, PROTOCOL_VERSION};
use rask::distributed::{
    Client, ClientOptions, ClusterOptions, DistError, LocalCluster, SubmitOptions,
};
use rask::ops::{checksum, fail_times, make_bytes, sleep_then, sum_i64};
use rask::{ComputeError, ComputeOptions, Delayed};

// Clients set the process-wide default scheduler: run these tests one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn cluster(n: usize, threads: usize) -> LocalCluster {
    LocalCluster::with_options(ClusterOptions {
        n_workers: n,
        threads_per_worker: threads,
        binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_rask"))),
        ..ClusterOptions::default()
    })
    .expect("cluster starts")
}

/// Runs `f` with a watchdog: a hung cluster fails the test instead of hanging CI.
fn within<R: Send + 'static>(secs: u64, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs)).expect("distributed computation hung")
}

rask::op! {
    /// An op only this test binary knows: the `rask` workers do not.
    pub fn only_in_tests(x: i64) -> i64 { x * 7 }
}

#[test]
fn delayed_graph_computes_on_a_cluster() {
    let _g = serial();
    let c = cluster(2, 1);
    let client = c.client().unwrap();
    assert_eq!(client.workers().unwrap().len(), 2);
    within(60, move || {
        // The client is the default scheduler: plain compute() runs on the cluster.
        let (tree, n) = build_tree(1000);
        assert_eq!(n, 1999);
        assert_eq!(tree.compute().unwrap(), 500_500);
        // Futures, map, gather, as_completed.
        let f = client.submit(&add(inc(1), inc(2))).unwrap();
        assert_eq!(f.result().unwrap(), 5);
        let many: Vec<Delayed<i64>> = (0..20).map(|i| inc(inc(i))).collect();
        let futs = client.map(&many).unwrap();
        assert_eq!(client.gather(&futs).unwrap(), (2..22).collect::<Vec<i64>>());
        let done: Vec<i64> = client.as_completed(futs).map(|f| f.result().unwrap()).collect();
        assert_eq!(done.len(), 20);
        let total = sum_i64(many.clone());
        assert_eq!(client.submit(&total).unwrap().result().unwrap(), (2..22).sum::<i64>());
        // Datasets outlive the future that made them.
        let f = client.submit(&inc(41)).unwrap();
        client.publish_dataset("answer", &f).unwrap();
        drop(f);
        let g = client.get_dataset::<i64>("answer").unwrap();
        assert_eq!(g.result().unwrap(), 42);
        assert!(client
            .get_dataset::<i64>("nope")
            .unwrap_err()
            .to_string()
            .contains("no dataset named"));
        // The scheduler explains what happened to a key.
        let story = client.story(g.key()).unwrap();
        assert!(story.iter().any(|l| l.contains("memory")), "{story:?}");
    });
}

#[test]
fn arrays_compute_on_a_cluster() {
    use rask::array::create::standard_normal;
    use rask::array::index::Sel;
    use rask::array::ops::BinOp;
    use rask::Scheduler;
    let _g = serial();
    let c = cluster(2, 1);
    let client = c.client().unwrap();
    within(120, move || {
        let sync = |a: &rask::array::Array<f64>| {
            a.compute_with(&Scheduler::Sync, &ComputeOptions::default()).unwrap()
        };
        let x = standard_normal(1, &[600, 400], [200, 150]).unwrap();
        // A fused chain, reduced where it runs; a fused chain computed whole.
        let chain = &(&x * 2.0).exp() - 1.0;
        let m = chain.mean(&[0]).unwrap();
        assert_eq!(m.compute().unwrap(), sync(&m), "fused reduction on the workers");
        let story = client.story(m.blocks().iter().next().unwrap().key()).unwrap();
        assert!(story.iter().any(|l| l.contains("assigned to worker")), "{story:?}");
        let w = rask::array::elementwise::where_(
            &x.compare_scalar(0.0, BinOp::Gt),
            &chain,
            &x.abs().sqrt(),
        )
        .unwrap();
        assert_eq!(w.compute().unwrap(), sync(&w), "fused where");
        // The symmetric product's corner, and a tree reduction of a transpose sum.
        let g = x.matmul(&x.t()).unwrap().slice(&[Sel::range(0, 300), Sel::range(0, 300)]).unwrap();
        assert_eq!(g.compute().unwrap(), sync(&g), "matmul corner");
        let st = (&x.t() + &x.t()).unwrap().var(&[1], 1.0).unwrap();
        assert_eq!(st.compute().unwrap(), sync(&st));
        // Persisted on the cluster, then used again.
        let kept = chain.persist().unwrap();
        let (again, want) =
            (kept.sum(&[]).unwrap().compute().unwrap()[[]], sync(&chain.sum(&[]).unwrap())[[]]);
        // Stored blocks are summed whole, fused ones slab by slab: 1e-12 relative.
        assert!((again - want).abs() <= 1e-12 * want.abs(), "{again} vs {want}");
    });
}

#[test]
fn futures_are_arguments_of_later_submits() {
    let _g = serial();
    let c = cluster(2, 1);
    let client = c.client().unwrap();
    within(60, move || {
        let f = client.submit(&make_bytes(1 << 20, 9)).unwrap();
        // The 1 MiB value stays on its worker; the next task reads it there.
        let g = client.submit(&checksum(&f)).unwrap();
        assert_eq!(g.result().unwrap(), checksum::call(make_bytes::call(1 << 20, 9)));
        let a = client.submit(&inc(1)).unwrap();
        let b = client.submit(&add(&a, inc(10))).unwrap();
        assert_eq!(b.result().unwrap(), 13);
        // Local schedulers cannot use cluster data.
        let err =
            add(&a, 1).compute_with(&rask::Scheduler::Sync, &ComputeOptions::new()).unwrap_err();
        assert!(err.to_string().contains("lives on a cluster"), "{err}");
        // A released future cannot be used any more: the scheduler says so.
        let key = a.key().clone();
        let stale = rask::external::<i64>(key);
        drop(a);
        drop(b);
        std::thread::sleep(Duration::from_millis(200));
        let err = client.submit(&add(stale, 1)).unwrap_err().to_string();
        assert!(err.contains("neither in the submitted graph nor known"), "{err}");
    });
}

#[test]
fn several_clients_share_a_scheduler() {
    let _g = serial();
    let c = cluster(2, 2);
    let addr = c.address().to_string();
    within(60, move || {
        let handles: Vec<_> = (0..3)
            .map(|t| {
                let addr = addr.clone();
                std::thread::spawn(move || {
                    let client = Client::connect_with(
                        &addr,
                        ClientOptions { set_as_default: false, ..ClientOptions::default() },
                    )
                    .unwrap();
                    let futs =
                        client.map(&(0..50).map(|i| inc(i * 10 + t)).collect::<Vec<_>>()).unwrap();
                    client.gather(&futs).unwrap().iter().sum::<i64>()
                })
            })
            .collect();
        for (t, h) in handles.into_iter().enumerate() {
            let want: i64 = (0..50).map(|i| i * 10 + t as i64 + 1).sum();
            assert_eq!(h.join().unwrap(), want);
        }
    });
}

#[test]
fn scatter_and_gather_256_mib() {
    let _g = serial();
    let c = cluster(2, 1);
    let client = c.client().unwrap();
    within(120, move || {
        let data: Vec<u8> =
            (0..256u64 << 20).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let want = checksum::call(data.clone());
        let t = Instant::now();
        let f = client.scatter(data).unwrap();
        let back: Vec<u8> = f.result().unwrap();
        eprintln!("256 MiB scatter + gather in {:.2} s", t.elapsed().as_secs_f64());
        assert_eq!(back.len(), 256 << 20);
        assert_eq!(checksum::call(back), want);
        // A task on the worker consumes the scattered value where it lives.
        let remote = client.submit(&checksum(make_bytes(1 << 20, 3))).unwrap();
        assert_eq!(remote.result().unwrap(), checksum::call(make_bytes::call(1 << 20, 3)));
    });
}

#[test]
fn killed_worker_results_are_recomputed() {
    let _g = serial();
    let mut c = cluster(3, 1);
    let client = c.client().unwrap();
    // 60 slow tasks summed in a tree: kill a worker while they run.
    let leaves: Vec<Delayed<i64>> = (0..60).map(|i| sleep_then(40, i)).collect();
    let mut level = leaves;
    while level.len() > 1 {
        let mut next: Vec<Delayed<i64>> =
            level.chunks_exact(2).map(|p| add(&p[0], &p[1])).collect();
        if level.len() % 2 == 1 {
            next.push(level.pop().unwrap());
        }
        level = next;
    }
    let root = level.pop().unwrap();
    let fut = client.submit(&root).unwrap();
    // 60 tasks of 40 ms on 3 single-thread workers take at least 800 ms.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!fut.done(), "the computation must still be running when the worker dies");
    c.kill_worker(1).unwrap();
    let r = within(120, move || fut.result());
    assert_eq!(r.unwrap(), (0..60).sum::<i64>());
    assert_eq!(client.workers().unwrap().len(), 2);
}

#[test]
fn retries_then_remote_errors() {
    let _g = serial();
    let c = cluster(2, 1);
    let client = c.client().unwrap();
    let dir = std::env::temp_dir().join(format!("rask-retries-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let counter = dir.join("a").display().to_string();
    within(60, move || {
        // Fails twice, succeeds on the third run: retries = 2 is enough.
        let flaky = fail_times(counter.clone(), 2, 99);
        let f = client
            .submit_with(&flaky, &SubmitOptions { retries: 2, ..SubmitOptions::default() })
            .unwrap();
        assert_eq!(f.result().unwrap(), 99);
        // Without retries the remote error comes back with key, op, worker and message.
        let counter2 = dir.join("b").display().to_string();
        let flaky = fail_times(counter2, 5, 1);
        let f = client.submit(&flaky).unwrap();
        match f.result().unwrap_err() {
            DistError::Task(failure) => {
                assert_eq!(&failure.key, flaky.key());
                assert_eq!(failure.op, "rask::ops::test_ops::fail_times");
                assert_eq!(failure.message, "flaky failure 1 of 5");
                assert!(
                    failure.worker.as_deref().is_some_and(|w| w.starts_with("local-")),
                    "{failure:?}"
                );
            }
            other => panic!("expected a task failure, got {other}"),
        }
        // Through compute(): a ComputeError naming the key and op.
        let err = fail_times(dir.join("c").display().to_string(), 5, 1).compute().unwrap_err();
        assert!(
            matches!(err, ComputeError::TaskFailed { .. })
                && err.to_string().contains("fail_times"),
            "{err}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    });
}

#[test]
fn a_task_that_kills_workers_is_marked_erred() {
    let _g = serial();
    let c = cluster(4, 1);
    let client = c.client().unwrap();
    within(120, move || {
        let f = client.submit(&rask::ops::abort_process(1)).unwrap();
        match f.result().unwrap_err() {
            DistError::Task(failure) => {
                assert!(failure.message.contains("3 workers died"), "{failure:?}")
            }
            other => panic!("{other}"),
        }
        // The last worker still works.
        assert_eq!(client.submit(&inc(1)).unwrap().result().unwrap(), 2);
    });
}

#[test]
fn unknown_ops_and_closures_are_rejected_at_submit() {
    let _g = serial();
    let c = cluster(1, 1);
    let client = c.client().unwrap();
    within(60, move || {
        let err = client.submit(&only_in_tests(3)).unwrap_err().to_string();
        assert!(
            err.contains("distributed::only_in_tests") && err.contains("no connected worker knows"),
            "{err}"
        );
        let closure = rask::delayed("my_closure", |x: i64| x + 1).call((1,));
        let err = closure.compute().unwrap_err().to_string();
        assert!(err.contains("my_closure") && err.contains("closure"), "{err}");
        // The scheduler is fine afterwards.
        assert_eq!(inc(1).compute().unwrap(), 2);
    });
}

#[test]
fn other_protocol_versions_are_refused() {
    let _g = serial();
    let c = cluster(1, 1);
    let addr = c.address().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let mut s =
            pb::scheduler_client::SchedulerClient::connect(format!("http://{addr}")).await.unwrap();
        let hello = pb::ClientMessage {
            msg: Some(pb::client_message::Msg::Hello(pb::ClientHello {
                protocol_version: 999,
                name: "old".into(),
                token: String::new(),
            })),
        };
        let mut inbound =
            s.client_session(tokio_stream::iter(vec![hello])).await.unwrap().into_inner();
        match inbound.message().await.unwrap() {
            Some(pb::ToClient { msg: Some(pb::to_client::Msg::Refused(r)) }) => {
                assert!(
                    r.reason.contains("999")
                        && r.reason.contains(&format!("version {PROTOCOL_VERSION}")),
                    "{}",
                    r.reason
                );
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        let reg = pb::WorkerMessage {
            msg: Some(pb::worker_message::Msg::Register(pb::RegisterWorker {
                protocol_version: 0,
                name: "old-worker".into(),
                ..Default::default()
            })),
        };
        let mut inbound =
            s.worker_session(tokio_stream::iter(vec![reg])).await.unwrap().into_inner();
        match inbound.message().await.unwrap() {
            Some(pb::ToWorker { msg: Some(pb::to_worker::Msg::Refused(r)) }) => {
                assert!(r.reason.contains("version 0"), "{}", r.reason)
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    });
    // An oversized message (one 80 MiB task spec, which a Client would have
    // scattered) ends that session only; the scheduler keeps serving.
    let addr = c.address().to_string();
    rt.block_on(async move {
        let mut s =
            pb::scheduler_client::SchedulerClient::connect(format!("http://{addr}")).await.unwrap();
        let msgs = vec![
            pb::ClientMessage {
                msg: Some(pb::client_message::Msg::Hello(pb::ClientHello {
                    protocol_version: PROTOCOL_VERSION,
                    name: "huge".into(),
                    token: String::new(),
                })),
            },
            pb::ClientMessage {
                msg: Some(pb::client_message::Msg::Submit(pb::Submit {
                    tasks: vec![pb::TaskSpec {
                        op: "rask::literal".into(),
                        payload: vec![7u8; 80 << 20],
                        ..Default::default()
                    }],
                    ..Default::default()
                })),
            },
        ];
        let mut inbound = s.client_session(tokio_stream::iter(msgs)).await.unwrap().into_inner();
        let mut refused = false;
        while let Some(m) = inbound.message().await.transpose() {
            if let Err(status) = m {
                assert!(status.message().contains("message"), "{status:?}");
                refused = true;
                break;
            }
        }
        assert!(refused, "an 80 MiB message must be refused");
    });
    let client = Client::connect_with(
        c.address(),
        ClientOptions { set_as_default: false, ..ClientOptions::default() },
    )
    .unwrap();
    assert_eq!(client.submit(&inc(1)).unwrap().result().unwrap(), 2);
}

#[test]
fn spills_to_disk_under_a_small_memory_limit() {
    let _g = serial();
    let c = LocalCluster::with_options(ClusterOptions {
        n_workers: 1,
        threads_per_worker: 1,
        memory_limit: Some("64MiB".into()),
        binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_rask"))),
        ..ClusterOptions::default()
    })
    .unwrap();
    let client = c.client().unwrap();
    let log = c.log_dir().join("worker-0.err");
    within(120, move || {
        // 24 values of 8 MiB (192 MiB) held at once: most must go to disk.
        let parts: Vec<Delayed<Vec<u8>>> = (0..24).map(|i| make_bytes(8 << 20, i)).collect();
        let futs = client.map(&parts).unwrap();
        client.wait(&futs).unwrap();
        let info = &client.workers().unwrap()[0];
        assert!(info.memory <= 64 << 20, "managed memory {} over the limit", info.memory);
        for (i, f) in futs.iter().enumerate() {
            let v = f.result().unwrap();
            assert_eq!(
                checksum::call(v),
                checksum::call(make_bytes::call(8 << 20, i as u64)),
                "part {i}"
            );
        }
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.matches("spilled").count() >= 10, "{text}");
    });
    // The dashboard counts the spill writes per prefix (from the worker's
    // heartbeat spans) and draws them in the task stream.
    let url = c.dashboard_link().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let counts = http::get(&format!("{url}api/v1/tasks/counts")).json();
        let written = counts["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["prefix"] == "make_bytes")
            .and_then(|g| g["disk_write_bytes"].as_u64())
            .unwrap_or(0);
        if written >= 10 * (8 << 20) {
            let activity = c.client().unwrap().activity(0).unwrap();
            let writes = activity["stream"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["kind"] == "disk-write" && e["prefix"] == "make_bytes")
                .count();
            assert!(writes >= 10, "{writes} disk writes in the task stream");
            break;
        }
        assert!(Instant::now() < deadline, "the dashboard counted {written} bytes spilled");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn sigterm_worker_leaves_and_work_continues() {
    let _g = serial();
    let mut c = cluster(2, 1);
    let client = c.client().unwrap();
    let leaves: Vec<Delayed<i64>> = (0..30).map(|i| sleep_then(30, i)).collect();
    let fut = client.submit(&sum_i64(leaves)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    c.stop_worker(0).unwrap();
    assert_eq!(within(60, move || fut.result()).unwrap(), (0..30).sum::<i64>());
}

#[test]
fn unreachable_scheduler_times_out_with_a_clear_error() {
    // The watchdog only catches a hang; the client gives up after its own 500 ms timeout.
    let err = within(60, || {
        Client::connect_with(
            "127.0.0.1:1",
            ClientOptions {
                timeout: Duration::from_millis(500),
                set_as_default: false,
                ..ClientOptions::default()
            },
        )
        .err()
        .expect("nothing listens on port 1")
    });
    let msg = err.to_string();
    assert!(msg.contains("127.0.0.1:1") && msg.contains("could not reach"), "{msg}");
}

#[test]
fn a_cluster_token_guards_every_endpoint() {
    let _g = serial();
    const TOKEN: &str = "0123456789abcdef-test-token";
    let c = LocalCluster::with_options(ClusterOptions {
        n_workers: 2,
        threads_per_worker: 1,
        binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_rask"))),
        token: Some(TOKEN.into()),
        ..ClusterOptions::default()
    })
    .expect("cluster starts");
    // With the token: graphs, scatter and gather (the workers' data plane) work.
    let client = c.client().unwrap();
    within(60, move || {
        assert_eq!(inc(1).compute().unwrap(), 2);
        let f = client.scatter(vec![1u8, 2, 3]).unwrap();
        assert_eq!(f.result().unwrap(), vec![1u8, 2, 3]);
        assert_eq!(
            client.submit(&checksum(make_bytes(1000, 1))).unwrap().result().unwrap(),
            checksum::call(make_bytes::call(1000, 1))
        );
    });
    // A client with a wrong token, or none, is refused with the reason.
    for token in ["wrong-token-0123456789", ""] {
        let err = Client::connect_with(
            c.address(),
            ClientOptions {
                token: token.into(),
                set_as_default: false,
                ..ClientOptions::default()
            },
        )
        .err()
        .expect("refused");
        assert!(err.to_string().contains("wrong or missing cluster token"), "{err}");
    }
    // A worker's data plane serves nothing without the token: Get and Put are
    // refused before the request is read.
    let admin = c.client().unwrap();
    let worker = admin.workers().unwrap()[0].addr.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let mut w =
            pb::worker_client::WorkerClient::connect(format!("http://{worker}")).await.unwrap();
        let key = rask::Key::named("anything");
        let err = w
            .get(pb::GetData {
                protocol_version: PROTOCOL_VERSION,
                key: Some(rask::distributed::protocol::key_to_pb(&key)),
            })
            .await
            .expect_err("refused");
        assert_eq!(err.code(), tonic_code_unauthenticated(), "{err:?}");
        assert!(err.message().contains("no cluster token"), "{}", err.message());
        let chunk = pb::DataChunk {
            key: Some(rask::distributed::protocol::key_to_pb(&key)),
            total_len: 1 << 40,
            data: vec![0; 16],
            protocol_version: PROTOCOL_VERSION,
        };
        let err = w.put(tokio_stream::iter(vec![chunk])).await.expect_err("refused");
        assert!(err.message().contains("no cluster token"), "{}", err.message());
    });
    // The command line refuses a token argument (ps would show it to everyone).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rask"))
        .args(["scheduler", "--token", "0123456789abcdef"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--token-file"), "{stderr}");
}

/// tonic's `Unauthenticated` code, without a direct tonic dependency.
fn tonic_code_unauthenticated() -> rask::distributed::protocol::StatusCode {
    rask::distributed::protocol::StatusCode::Unauthenticated
}

#[path = "common/tls.rs"]
mod tls;

#[path = "common/http.rs"]
#[allow(dead_code)]
mod http;

/// A CA, and a certificate for 127.0.0.1 signed by it: PEM files in `dir`.
fn tls_files(dir: &std::path::Path, name: &str) -> rask::distributed::auth::TlsFiles {
    tls::certificates(dir, name, &["127.0.0.1".to_string(), "localhost".to_string()])
}

#[test]
fn mutual_tls_on_every_connection() {
    use rask::distributed::auth::Tls;
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let files = tls_files(dir.path(), "cluster");
    let c = LocalCluster::with_options(ClusterOptions {
        n_workers: 2,
        threads_per_worker: 1,
        binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_rask"))),
        tls: Some(files.clone()),
        token: Some("0123456789abcdef-tls-test".into()),
        ..ClusterOptions::default()
    })
    .expect("a TLS cluster starts");
    // Scheduler sessions, worker-to-worker transfers and client fetches all run over TLS.
    let client = c.client().unwrap();
    within(60, move || {
        let a = client.submit(&make_bytes(100_000, 5)).unwrap();
        let b = client.submit(&checksum(&a)).unwrap();
        assert_eq!(b.result().unwrap(), checksum::call(make_bytes::call(100_000, 5)));
        let s = client.scatter(vec![9u8; 1000]).unwrap();
        assert_eq!(s.result().unwrap(), vec![9u8; 1000]);
    });
    // A client of another CA is refused in the handshake, and says so.
    let other = tls_files(dir.path(), "other");
    let err = Client::connect_with(
        c.address(),
        ClientOptions {
            tls: Some(Tls::load(other).unwrap()),
            token: "0123456789abcdef-tls-test".into(),
            timeout: Duration::from_secs(3),
            set_as_default: false,
            ..ClientOptions::default()
        },
    )
    .err()
    .expect("refused");
    assert!(err.to_string().contains("TLS"), "{err}");
    // A client without TLS gets nowhere either.
    let err = Client::connect_with(
        c.address(),
        ClientOptions {
            token: "0123456789abcdef-tls-test".into(),
            timeout: Duration::from_secs(3),
            set_as_default: false,
            ..ClientOptions::default()
        },
    )
    .err()
    .expect("refused");
    assert!(!err.to_string().is_empty());
    // Raw bytes to a worker's port get no data back, only the end of the connection.
    let admin = c.client().unwrap();
    let worker = admin.workers().unwrap()[0].addr.clone();
    let mut s = std::net::TcpStream::connect(&worker).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    use std::io::{Read, Write};
    let _ = s.write_all(b"GET /rask.v1.Worker/Get HTTP/1.1\r\nHost: x\r\n\r\n\x00\x00\x00");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(!got.windows(4).any(|w| w == [9, 9, 9, 9]), "a raw peer got data: {got:?}");
    assert!(got.len() < 64, "a raw peer got {} bytes", got.len());
}

#[test]
fn skewed_task_durations_finish_near_the_ideal_makespan() {
    // 200 tasks on 3 one-thread workers; every 20th takes 100x longer (1 s
    // against 10 ms). A worker holds one task per thread while tasks are long
    // (or not yet timed), so an idle worker never waits behind a busy one.
    let _g = serial();
    let c = cluster(3, 1);
    let client = c.client().unwrap();
    let durations: Vec<u64> = (0..200).map(|i| if i % 20 == 19 { 1000 } else { 10 }).collect();
    let total: u64 = durations.iter().sum();
    let ideal_ms = (total as f64 / 3.0).max(1000.0);
    let tasks: Vec<Delayed<i64>> =
        durations.iter().enumerate().map(|(i, &ms)| sleep_then(ms, i as i64)).collect();
    let start = Instant::now();
    let sum = within(120, move || client.submit(&sum_i64(tasks)).unwrap().result().unwrap());
    let took_ms = start.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(sum, (0..200).sum::<i64>());
    let ratio = took_ms / ideal_ms;
    eprintln!(
        "skewed load: {took_ms:.0} ms for an ideal makespan of {ideal_ms:.0} ms ({} ms of work on 3 workers): {ratio:.2}x",
        total
    );
    assert!(ratio <= 1.3, "{ratio:.2}x the ideal makespan");
}

/// Work stealing over the wire: two 15 ms tasks pinned to local-0 (with
/// `allow_other_workers`) queue there, one behind the other, while local-1
/// idles; the scheduler asks local-0 for the queued one, local-0 gives it
/// up, and it runs on local-1. The scheduler's story of the key says so.
#[test]
fn an_idle_worker_steals_queued_work_over_the_wire() {
    let _g = serial();
    let c = cluster(2, 1);
    let client = c.client().unwrap();
    within(120, move || {
        // Time the prefix first: 15 ms, so a second task may queue behind a running one.
        assert_eq!(client.submit(&sleep_then(15, -1)).unwrap().result().unwrap(), -1);
        let pin = SubmitOptions {
            workers: vec!["local-0".into()],
            allow_other_workers: true,
            ..SubmitOptions::default()
        };
        let workers = client.workers().unwrap();
        let local1 = workers.iter().find(|w| w.name == "local-1").unwrap().addr.clone();
        let mut stolen = 0;
        for round in 0..10i64 {
            let a = client.submit_with(&sleep_then(15, 2 * round), &pin).unwrap();
            let b = client.submit_with(&sleep_then(15, 2 * round + 1), &pin).unwrap();
            assert_eq!((a.result().unwrap(), b.result().unwrap()), (2 * round, 2 * round + 1));
            for f in [&a, &b] {
                let story = client.story(f.key()).unwrap();
                if story.iter().any(|l| l.contains("stolen from worker")) {
                    stolen += 1;
                    let (holder, _) = client.who_has(f).unwrap();
                    assert_eq!(holder, local1, "a stolen task runs on the idle worker");
                }
            }
        }
        eprintln!("{stolen} of 20 pinned tasks were stolen by the idle worker");
        assert!(stolen >= 1, "no task was stolen");
    });
}

/// Resident memory of a process, in bytes (Linux).
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[test]
fn ten_thousand_malformed_frames_leave_scheduler_and_worker_serving() {
    use std::io::Write;
    let _g = serial();
    let c = cluster(1, 1);
    let client = c.client().unwrap();
    let worker = client.workers().unwrap()[0].addr.clone();
    let sched = c.address().to_string();
    let pids = [c.scheduler_pid(), c.worker_pids()[0].unwrap()];
    assert_eq!(client.submit(&inc(1)).unwrap().result().unwrap(), 2);
    let before = pids.map(rss_bytes);
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    // 8,000 raw frames over TCP, half to each: garbage; a preface then random
    // frames; a preface then a frame that announces 16 MiB and stops.
    for i in 0..8_000u64 {
        let target = if i % 2 == 0 { &sched } else { &worker };
        let mut bytes: Vec<u8> = match i % 3 {
            0 => (0..1 + next() % 2048).map(|_| next() as u8).collect(),
            1 => {
                let mut b = PREFACE.to_vec();
                b.extend((0..next() % 512).map(|_| next() as u8));
                b
            }
            _ => {
                let mut b = PREFACE.to_vec();
                b.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // empty SETTINGS
                b.extend_from_slice(&[0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1]); // DATA, 16 MiB announced
                b
            }
        };
        bytes.truncate(4096);
        if let Ok(mut s) = std::net::TcpStream::connect(target) {
            let _ = s.write_all(&bytes);
        }
    }
    // 2,000 malformed protocol messages: puts that announce 1 TiB or more data
    // than they send, gets of another protocol version, submissions with bad keys.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (w, s) = (worker.clone(), sched.clone());
    rt.block_on(async move {
        let mut data =
            pb::worker_client::WorkerClient::connect(format!("http://{w}")).await.unwrap();
        let mut sc =
            pb::scheduler_client::SchedulerClient::connect(format!("http://{s}")).await.unwrap();
        let key = rask::distributed::protocol::key_to_pb(&rask::Key::named("fuzz"));
        for i in 0..2_000u64 {
            match i % 4 {
                0 => {
                    let chunk = pb::DataChunk {
                        key: Some(key.clone()),
                        total_len: 1 << 40,
                        data: vec![1; 8],
                        protocol_version: PROTOCOL_VERSION,
                    };
                    assert!(data.put(tokio_stream::iter(vec![chunk])).await.is_err());
                }
                1 => {
                    let chunk = pb::DataChunk {
                        key: Some(key.clone()),
                        total_len: 4,
                        data: vec![1; 64],
                        protocol_version: PROTOCOL_VERSION,
                    };
                    assert!(data.put(tokio_stream::iter(vec![chunk])).await.is_err());
                }
                2 => {
                    let get = pb::GetData { protocol_version: 0, key: Some(key.clone()) };
                    assert!(data.get(get).await.is_err());
                }
                _ => {
                    let bad_key =
                        pb::Key { prefix: "x".into(), token: vec![1, 2, 3], index: vec![] };
                    let msgs = vec![
                        pb::ClientMessage {
                            msg: Some(pb::client_message::Msg::Hello(pb::ClientHello {
                                protocol_version: PROTOCOL_VERSION,
                                name: "fuzz".into(),
                                token: String::new(),
                            })),
                        },
                        pb::ClientMessage {
                            msg: Some(pb::client_message::Msg::Submit(pb::Submit {
                                tasks: vec![pb::TaskSpec {
                                    key: Some(bad_key.clone()),
                                    op: "nope".into(),
                                    ..Default::default()
                                }],
                                wanted: vec![bad_key],
                                request: i,
                                more: false,
                            })),
                        },
                    ];
                    let mut inbound =
                        sc.client_session(tokio_stream::iter(msgs)).await.unwrap().into_inner();
                    let _ = inbound.message().await; // welcome (or refusal)
                }
            }
        }
    });
    // Both still serve, and their memory stayed bounded.
    let client = c.client().unwrap();
    within(60, move || {
        assert_eq!(client.submit(&inc(41)).unwrap().result().unwrap(), 42);
        let f = client.scatter(vec![3u8; 1000]).unwrap();
        assert_eq!(f.result().unwrap(), vec![3u8; 1000]);
    });
    let after = pids.map(rss_bytes);
    for (i, name) in ["scheduler", "worker"].iter().enumerate() {
        let grew = after[i].saturating_sub(before[i]);
        eprintln!(
            "{name}: resident {} MiB before, {} MiB after 10,000 malformed frames",
            before[i] >> 20,
            after[i] >> 20
        );
        assert!(grew < 128 << 20, "{name} grew by {} MiB", grew >> 20);
    }
}

/// A graph of 2 million tasks (a tree sum over a million leaves) is larger
/// than one gRPC message: the client sends it in parts, the scheduler takes
/// it as one submission, and the cluster computes the right sum.
#[test]
fn a_two_million_task_graph_is_submitted_in_parts() {
    use rask::distributed::protocol::{graph_to_specs, spec_to_pb, MAX_MESSAGE_BYTES};
    let _g = serial();
    let c = cluster(2, 1);
    let client = c.client().unwrap();
    within(900, move || {
        let n_leaves = 1_000_000usize;
        let t = Instant::now();
        let (tree, n_tasks) = build_tree(n_leaves);
        assert_eq!(n_tasks, 1_999_999);
        let built = t.elapsed();
        // The graph really exceeds one message.
        let graph = rask::graph_of(&[tree.erase()]);
        let sub = graph_to_specs(&graph, &[tree.key().clone()], &SubmitOptions::default()).unwrap();
        let wire: usize =
            sub.specs.iter().map(|s| prost::Message::encoded_len(&spec_to_pb(s))).sum();
        assert!(wire > MAX_MESSAGE_BYTES, "{wire} bytes fit one message");
        drop((graph, sub));
        let t = Instant::now();
        let sum = tree.compute_with(&client.scheduler(), &ComputeOptions::new()).unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(sum, (n_leaves as i64) * (n_leaves as i64 + 1) / 2);
        eprintln!(
            "2M-task tree ({} MiB of task specs): built in {:.1} s, computed in {secs:.1} s ({:.0} tasks/s)",
            wire >> 20,
            built.as_secs_f64(),
            n_tasks as f64 / secs
        );
    });
}

/// A literal of 80 MiB (more than one message) goes to a worker by scatter,
/// referenced by key: the graph carries no bulk data. The same data in a
/// second computation is not sent twice to the scheduler's graph.
#[test]
fn large_literals_travel_by_scatter() {
    let _g = serial();
    let c = cluster(2, 1);
    let client = c.client().unwrap();
    within(300, move || {
        let data: Vec<u8> = (0..80u64 << 20).map(|i| (i.wrapping_mul(40503) >> 7) as u8).collect();
        let want = checksum::call(data.clone());
        // A data node, and the same bytes as an inline argument of an op.
        let node = rask::value(data.clone());
        assert_eq!(
            checksum(&node).compute_with(&client.scheduler(), &ComputeOptions::new()).unwrap(),
            want
        );
        let inline = checksum(data);
        let f = client.submit(&inline).unwrap();
        assert_eq!(f.result().unwrap(), want);
    });
}

/// A search over 77 MiB of data (100,000 × 96 floats) runs on a cluster:
/// the data goes to a worker by scatter, not inside the graph, and the
/// scores equal the threaded scheduler's.
#[test]
fn a_search_over_more_than_64_mib_runs_on_a_cluster() {
    use rask::ml::model_selection::Splitter;
    use rask::ml::{create, ParamValue};
    use rask::search::{grid, Cv, GridSearchCV};
    let _g = serial();
    let c = cluster(2, 1);
    let client = c.client().unwrap();
    within(600, move || {
        let (n, p) = (100_000usize, 96usize);
        let mut s = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let x = ndarray::Array2::from_shape_simple_fn((n, p), &mut next);
        let w: Vec<f64> = (0..p).map(|j| (j as f64 * 0.37).sin()).collect();
        let y = ndarray::Array1::from_shape_fn(n, |i| {
            x.row(i).iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() + 0.1 * next()
        });
        assert!(x.len() * 8 > 64 << 20);
        let search = || {
            GridSearchCV::new(
                create("Ridge").unwrap(),
                vec![grid(vec![("alpha", vec![ParamValue::F64(0.1), ParamValue::F64(100.0)])])],
            )
            .cv(Cv::Splitter(Splitter::kfold(2)))
            .refit(rask::search::Refit::No)
        };
        let local = search()
            .fit_with(&x, &y, &rask::Scheduler::threads_n(2), &ComputeOptions::new())
            .unwrap();
        let t = Instant::now();
        let dist = search().fit_with(&x, &y, &client.scheduler(), &ComputeOptions::new()).unwrap();
        eprintln!("77 MiB search on the cluster in {:.1} s", t.elapsed().as_secs_f64());
        assert_eq!(dist.cv_results.split_test, local.cv_results.split_test);
        let scores: Vec<f64> =
            dist.cv_results.split_test.iter().flatten().flatten().copied().collect();
        assert_eq!(scores.len(), 4);
        assert!(scores.iter().all(|s| *s > 0.9), "R² {scores:?}");
    });
}
