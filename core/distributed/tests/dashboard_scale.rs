//! The dashboard's update at scale: 200 workers and a 1-million-task graph in
//! the scheduler's state. An update (snapshot + JSON) must not grow with the
//! graph: the test compares its bytes with a 10,000-task graph's and bounds
//! them; it reports bytes and build time (no wall-time assertion).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use rask_core::key::Token;
use rask_core::Key;
use rask_distributed::dashboard::{prometheus_text, snapshot};
use rask_distributed::scheduler::*;

const PREFIXES: u128 = 50;

fn state_with(workers: u64, tasks: u128) -> SchedulerState {
    let mut s =
        SchedulerState::new(SchedulerConfig { log_capacity: 0, ..SchedulerConfig::default() });
    let ops: Arc<BTreeSet<String>> = Arc::new(["inc".to_string()].into());
    for w in 0..workers {
        s.handle(
            Event::WorkerJoined {
                worker: WorkerId(w),
                name: format!("w{w}"),
                addr: format!("10.0.{}.{}:9000", w / 250, w % 250),
                nthreads: 4,
                memory_limit: 8 << 30,
                ops: ops.clone(),
                resources: BTreeMap::new(),
            },
            0,
        );
    }
    let keys: Vec<Key> =
        (0..tasks).map(|i| Key::new(format!("prefix{}", i % PREFIXES), Token(i))).collect();
    let specs: Vec<TaskSpec> = keys
        .iter()
        .map(|k| TaskSpec {
            key: k.clone(),
            op: "inc".into(),
            payload: Arc::new(vec![]),
            deps: vec![],
            priority: 0,
            graph_order: 0,
            retries: 0,
            workers: vec![],
            allow_other_workers: false,
            resources: vec![],
            gang: None,
        })
        .collect();
    let out =
        s.handle(Event::GraphSubmitted { client: ClientId(1), tasks: specs, wanted: keys }, 1);
    // Finish what was sent, so the stream and the groups have data.
    let mut now = 2;
    for c in out {
        if let Command::Compute { worker, key, .. } = c {
            now += 1;
            s.handle(Event::TaskFinished { worker, key, nbytes: 8, micros: 1500 }, now);
        }
    }
    s
}

#[test]
fn an_update_costs_what_the_page_shows_not_the_graph() {
    let small = state_with(200, 10_000);
    let small_json = serde_json::to_string(&snapshot::build(&small, 0, 1)).unwrap();
    drop(small);

    let t = Instant::now();
    let big = state_with(200, 1_000_000);
    let setup = t.elapsed();
    let t = Instant::now();
    let snap = snapshot::build(&big, 0, 1);
    let json = serde_json::to_string(&snap).unwrap();
    let build = t.elapsed();
    let t = Instant::now();
    let metrics = prometheus_text(&snap);
    let render = t.elapsed();
    // The graph page: a million tasks are shown as their groups.
    let t = Instant::now();
    let graph = snapshot::graph(&big);
    let graph_json = serde_json::to_string(&graph).unwrap();
    let graph_time = t.elapsed();
    assert_eq!((graph.kind, graph.nodes.len(), graph.tasks), ("groups", 50, 1_000_000));
    let worker = snapshot::worker_info(&big, 7).expect("worker 7");
    assert!(worker.processing.len() <= snapshot::WORKER_KEYS_SHOWN);
    assert!(worker.holding.len() <= snapshot::WORKER_KEYS_SHOWN);
    assert_eq!(worker.row.name, "w7");

    assert_eq!(snap.workers.len(), 200);
    assert_eq!(snap.totals.iter().sum::<u64>(), 1_000_000);
    assert_eq!(snap.groups.len(), PREFIXES as usize);
    assert!(snap.stream.len() <= snapshot::MAX_STREAM);
    // The same page, the same size: 100x the tasks changes the bytes only
    // through the digits of the counts.
    let ratio = json.len() as f64 / small_json.len() as f64;
    assert!(ratio < 1.25, "1M tasks: {} bytes, 10k tasks: {} bytes", json.len(), small_json.len());
    assert!(json.len() < 512 << 10, "an update of {} bytes", json.len());
    eprintln!(
        "dashboard update with 200 workers and 1,000,000 tasks: {} bytes of JSON ({} for 10,000 tasks), \
         built and serialized in {:.2} ms, /metrics rendered in {:.2} ms ({} bytes), graph page {:.2} ms ({} bytes); \
         state set up in {:.1} s",
        json.len(),
        small_json.len(),
        build.as_secs_f64() * 1e3,
        render.as_secs_f64() * 1e3,
        metrics.len(),
        graph_time.as_secs_f64() * 1e3,
        graph_json.len(),
        setup.as_secs_f64()
    );
}
