//! The local schedulers end to end: results, sharing, release of intermediates,
//! failures, and property tests on random DAGs.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use rask_core::graph::{cull, fuse, inline_data, order};
use rask_core::op::ClosureOp;
use rask_core::{
    compute_many, delayed, try_delayed, with_scheduler, Arg, ComputeError, ComputeOptions,
    FailureKind, Graph, GraphError, Key, Node, OpRef, Profiler, Scheduler, Value,
};

rask_core::op! {
    /// Adds one.
    pub fn inc(x: i64) -> i64 { x + 1 }
    /// Adds two numbers.
    pub fn add(a: i64, b: i64) -> i64 { a + b }
    /// Sums a list.
    pub fn total(xs: Vec<i64>) -> i64 { xs.iter().sum() }
    /// Fails on odd input.
    pub fn even_only(x: i64) -> Result<i64, String> {
        if x % 2 == 0 { Ok(x) } else { Err(format!("odd input {x} is not allowed")) }
    }
}

fn schedulers() -> Vec<Scheduler> {
    vec![Scheduler::Sync, Scheduler::threads_n(1), Scheduler::threads_n(2), Scheduler::threads_n(4)]
}

/// Runs `f` on another thread and fails the test if it takes longer than `secs`:
/// a scheduler bug must show up as a failure, never as a hung test run.
fn within<R: Send + 'static>(secs: u64, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs)).expect("computation hung")
}

#[test]
fn delayed_ops_compute_on_every_scheduler() {
    for s in schedulers() {
        let z = add(inc(1), inc(2));
        assert_eq!(z.compute_with(&s, &ComputeOptions::new()).unwrap(), 5, "{s:?}");
        let t = total(vec![inc(1), inc(2), inc(3)]);
        assert_eq!(t.compute_with(&s, &ComputeOptions::new()).unwrap(), 9, "{s:?}");
    }
}

#[test]
fn same_computation_same_key() {
    assert_eq!(add(inc(1), 5).key(), add(inc(1), 5).key());
    assert_ne!(add(inc(1), 5).key(), add(inc(2), 5).key());
    assert_ne!(inc(1).key(), add(1, 0).key());
    assert_eq!(inc(1).key().prefix(), "inc");
    // Closures are impure by default (a fresh key per call), unless marked pure.
    let f = delayed("f", |x: i64| x * 3);
    assert_ne!(f.call((1,)).key(), f.call((1,)).key());
    let p = delayed("p", |x: i64| x * 3).pure();
    assert_eq!(p.call((1,)).key(), p.call((1,)).key());
}

#[test]
fn shared_subgraphs_run_once() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let expensive = delayed("expensive", move |x: i64| {
        c.fetch_add(1, Ordering::SeqCst);
        x * 10
    });
    for s in schedulers() {
        calls.store(0, Ordering::SeqCst);
        let shared = expensive.call((4,));
        let a = shared.map("plus1", |x| x + 1);
        let b = shared.map("plus2", |x| x + 2);
        let out = compute_many(&[a.erase(), b.erase(), shared.erase()], &s, &ComputeOptions::new())
            .unwrap();
        let out: Vec<i64> = out.into_iter().map(|v| v.take::<i64>().unwrap()).collect();
        assert_eq!(out, vec![41, 42, 40]);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{s:?}");
    }
}

#[test]
fn persist_keeps_the_value_and_key() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let x = delayed("counted", move |x: i64| {
        c.fetch_add(1, Ordering::SeqCst);
        x
    })
    .call((7,));
    let p = x.persist().unwrap();
    assert_eq!(p.key(), x.key());
    let y = p.map("double", |v| v * 2);
    assert_eq!(y.compute().unwrap(), 14);
    assert_eq!(y.compute().unwrap(), 14);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn scoped_default_scheduler() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let who = delayed("who", move |_: i64| {
        s2.lock().unwrap().push(std::thread::current().name().map(str::to_string));
    });
    let main_name = std::thread::current().name().map(str::to_string);
    with_scheduler(Scheduler::Sync, || who.call((1,)).compute().unwrap());
    // Sync runs on the calling thread.
    assert_eq!(seen.lock().unwrap().as_slice(), &[main_name]);
    assert_eq!(rask_core::default_scheduler().name(), "threads");
}

// ---------------------------------------------------------------- release

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static BUF_TEST: Mutex<()> = Mutex::new(());

/// A 1 MiB buffer that counts how many of its kind are alive.
struct Buf(Vec<u8>);

impl Buf {
    fn new(fill: u8) -> Self {
        let live = LIVE.fetch_add(1, Ordering::SeqCst) + 1;
        PEAK.fetch_max(live, Ordering::SeqCst);
        Buf(vec![fill; 1 << 20])
    }
}

impl Clone for Buf {
    fn clone(&self) -> Self {
        let live = LIVE.fetch_add(1, Ordering::SeqCst) + 1;
        PEAK.fetch_max(live, Ordering::SeqCst);
        Buf(self.0.clone())
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn chain_of_1mib_buffers_holds_few_alive() {
    let _serial = BUF_TEST.lock().unwrap();
    for s in schedulers() {
        LIVE.store(0, Ordering::SeqCst);
        PEAK.store(0, Ordering::SeqCst);
        let make = delayed("make", |seed: u8| Buf::new(seed));
        let step = delayed("step", |b: Buf| Buf::new(b.0[0].wrapping_add(1)));
        let mut x = make.call((0u8,));
        for _ in 0..1999 {
            x = step.call((x,));
        }
        let sum = x.map("sum", |b: Buf| b.0.iter().map(|&v| v as u64).sum::<u64>());
        let total = sum.compute_with(&s, &ComputeOptions::new()).unwrap();
        // 2,000 tasks: the last buffer holds (1999 mod 256) in every byte.
        assert_eq!(total, (1999u64 % 256) * (1 << 20));
        let peak = PEAK.load(Ordering::SeqCst);
        // One input and one output per running step.
        assert!(peak <= 2, "{s:?}: {peak} buffers of 1 MiB were alive at once");
        drop(sum);
        assert_eq!(LIVE.load(Ordering::SeqCst), 0, "{s:?}: buffers leaked");
    }
}

#[test]
fn running_accumulation_interleaves_producers() {
    // acc_k = merge(make_k, acc_{k-1}): the priorities must not produce every make_k first.
    let _serial = BUF_TEST.lock().unwrap();
    LIVE.store(0, Ordering::SeqCst);
    PEAK.store(0, Ordering::SeqCst);
    let make = delayed("make", |seed: u8| Buf::new(seed));
    let merge = delayed("merge", |a: Buf, b: Buf| Buf::new(a.0[0].wrapping_add(b.0[0])));
    let mut acc = make.call((0u8,));
    for k in 1..2000u32 {
        acc = merge.call((make.call(((k % 7) as u8,)), acc));
    }
    let first = acc.map("first", |b: Buf| b.0[0]);
    let expected = (1..2000u32).map(|k| k % 7).sum::<u32>() % 256;
    assert_eq!(
        first.compute_with(&Scheduler::Sync, &ComputeOptions::new()).unwrap() as u32,
        expected
    );
    let peak = PEAK.load(Ordering::SeqCst);
    assert!(peak <= 3, "{peak} buffers alive at once");
}

// ---------------------------------------------------------------- failures

#[test]
fn erroring_task_names_key_op_and_message() {
    for s in schedulers() {
        let x = add(even_only(3), inc(1));
        let failing_key = even_only(3).key().clone();
        let err = within(30, move || x.compute_with(&s, &ComputeOptions::new()).unwrap_err());
        match &err {
            ComputeError::TaskFailed { key, op, message, kind } => {
                assert_eq!(key, &failing_key);
                assert!(op.ends_with("::even_only"), "{op}");
                assert_eq!(message, "odd input 3 is not allowed");
                assert_eq!(*kind, FailureKind::Error);
            }
            other => panic!("unexpected error {other}"),
        }
        let text = err.to_string();
        assert!(
            text.contains("even_only") && text.contains("odd input 3") && text.contains("failed"),
            "{text}"
        );
    }
}

#[test]
fn panicking_task_fails_the_computation_without_hanging() {
    for s in schedulers() {
        // Many independent tasks alongside the panicking one: the others finish or are cancelled.
        let boom = delayed("boom", |x: i64| -> i64 {
            if x == 37 {
                panic!("boom at {x}");
            }
            x
        });
        let parts: Vec<_> = (0..200).map(|i| boom.call((i,))).collect();
        let all = rask_core::collect(parts).map("sum", |v: Vec<i64>| v.iter().sum::<i64>());
        let err = within(30, move || all.compute_with(&s, &ComputeOptions::new()).unwrap_err());
        match err {
            ComputeError::TaskFailed { op, message, kind, .. } => {
                assert_eq!(op, "boom");
                assert_eq!(message, "boom at 37");
                assert_eq!(kind, FailureKind::Panic);
            }
            other => panic!("unexpected error {other}"),
        }
    }
}

#[test]
fn fallible_closure_error_fails_the_task() {
    let parse = try_delayed("parse", |s: String| s.parse::<i64>());
    let err = parse.call(("x1".to_string(),)).compute().unwrap_err();
    assert!(err.to_string().contains("invalid digit"), "{err}");
    assert_eq!(parse.call(("41".to_string(),)).compute().unwrap(), 41);
}

fn closure(name: &str) -> OpRef {
    OpRef::Closure(Arc::new(ClosureOp::new(name, |args: Vec<Value>| {
        Ok(Value::new(args.into_iter().map(|v| v.take::<i64>().unwrap()).sum::<i64>()))
    })))
}

#[test]
fn cycle_is_rejected_before_running() {
    let (a, b) = (Key::named("a"), Key::named("b"));
    let mut g = Graph::new();
    g.add_task(a.clone(), closure("fa"), vec![Arg::Key(b.clone())]);
    g.add_task(b.clone(), closure("fb"), vec![Arg::Key(a.clone())]);
    for s in schedulers() {
        let g = g.clone();
        let a = a.clone();
        let err = within(30, move || s.execute(g, &[a], &ComputeOptions::new()).unwrap_err());
        assert!(matches!(err, ComputeError::Graph(GraphError::Cycle { .. })), "{err}");
        assert!(err.to_string().contains("cycle"), "{err}");
    }
}

#[test]
fn missing_keys_are_rejected_before_running() {
    let (a, ghost) = (Key::named("a"), Key::named("ghost"));
    let mut g = Graph::new();
    g.add_task(
        a.clone(),
        closure("fa"),
        vec![Arg::Key(ghost.clone()), Arg::Literal(Value::new(1i64))],
    );
    for s in schedulers() {
        let err =
            s.execute(g.clone(), std::slice::from_ref(&a), &ComputeOptions::new()).unwrap_err();
        match &err {
            ComputeError::Graph(GraphError::MissingDependency { key, missing }) => {
                assert_eq!((key, missing), (&a, &ghost));
            }
            other => panic!("unexpected {other}"),
        }
        assert!(err.to_string().contains("not in the graph"), "{err}");
        let err = s.execute(g.clone(), &[Key::named("nope")], &ComputeOptions::new()).unwrap_err();
        assert!(matches!(err, ComputeError::Graph(GraphError::MissingKey { .. })), "{err}");
    }
}

#[test]
fn wrong_output_type_is_an_error() {
    let mut g = Graph::new();
    let k = Key::named("x");
    g.add_data(k.clone(), Value::new(1i64));
    let v = Scheduler::Sync.execute(g, &[k], &ComputeOptions::new()).unwrap().pop().unwrap();
    assert!(v.take::<String>().unwrap_err().to_string().contains("type mismatch"));
}

// ---------------------------------------------------------------- passes

#[test]
fn fuse_merges_linear_chains_and_keeps_results() {
    let mut x = inc(0);
    for _ in 0..9 {
        x = inc(x);
    }
    let y = add(x.clone(), inc(100));
    let g = y.graph();
    assert_eq!(g.len(), 12);
    let fused = fuse(&g, &[y.key().clone()]);
    // The 10-long chain becomes one node; inc(100) and add stay.
    assert_eq!(fused.len(), 3);
    assert!(matches!(fused.get(x.key()), Some(Node::Fused(f)) if f.steps.len() == 10));
    for s in schedulers() {
        let opts = ComputeOptions::new().with_fuse(true);
        assert_eq!(y.compute_with(&s, &opts).unwrap(), 111);
    }
}

#[test]
fn inline_data_substitutes_literals() {
    let v = rask_core::value(20i64);
    let y = add(v.clone(), inc(1));
    let g = y.graph();
    assert!(g.contains(v.key()));
    let inlined = inline_data(&g, &[y.key().clone()]);
    assert!(!inlined.contains(v.key()));
    let out = Scheduler::Sync.execute(inlined, &[y.key().clone()], &ComputeOptions::new()).unwrap();
    assert_eq!(out[0].clone().take::<i64>().unwrap(), 22);
}

#[test]
fn profiler_records_every_task_and_writes_html() {
    let prof = Arc::new(Profiler::new());
    let progress = Arc::new(rask_core::Progress::new());
    let opts = ComputeOptions::new().with_callback(prof.clone()).with_callback(progress.clone());
    let xs: Vec<_> = (0..50).map(inc).collect();
    let t = total(xs);
    assert_eq!(t.compute_with(&Scheduler::threads_n(2), &opts).unwrap(), (1..=50).sum::<i64>());
    let records = prof.records();
    assert_eq!(records.len(), 51);
    assert!(records.iter().all(|r| r.ok && r.end >= r.start && r.worker < 2));
    assert_eq!(progress.position(), 51);
    let dir = std::env::temp_dir().join(format!("rask-prof-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("profile.html");
    prof.write_html(&path).unwrap();
    let html = std::fs::read_to_string(&path).unwrap();
    assert!(html.contains("<svg") && html.contains("51 tasks") && html.contains("::total"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn visualize_writes_dot_and_svg() {
    let y = add(inc(1), inc(2));
    let dot = rask_core::graph::to_dot(&y.graph());
    assert_eq!(dot.matches(" -> ").count(), 2);
    assert!(dot.contains("::inc") && dot.contains("::add"));
    let dir = std::env::temp_dir().join(format!("rask-viz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    y.visualize(dir.join("g.dot")).unwrap();
    assert!(std::fs::read_to_string(dir.join("g.dot")).unwrap().starts_with("digraph"));
    let has_dot = std::process::Command::new("dot").arg("-V").output().is_ok();
    if has_dot {
        y.visualize(dir.join("g.svg")).unwrap();
        assert!(std::fs::read_to_string(dir.join("g.svg")).unwrap().contains("<svg"));
    } else {
        let err = y.visualize(dir.join("g.svg")).unwrap_err();
        assert!(err.to_string().contains("graphviz"), "{err}");
        assert!(std::env::var_os("CI").is_none(), "CI must install graphviz (see .ci/run)");
    }
    assert!(y.visualize(dir.join("g.xyz")).is_err());
    std::fs::remove_dir_all(dir).unwrap();
}

// ---------------------------------------------------------------- properties

/// A random DAG: node i depends on a subset of nodes < i.
fn random_dag() -> impl Strategy<Value = Vec<Vec<usize>>> {
    (1usize..60).prop_flat_map(|n| {
        (0..n)
            .map(|i| {
                if i == 0 {
                    Just(Vec::new()).boxed()
                } else {
                    proptest::collection::vec(0..i, 0..4.min(i + 1)).boxed()
                }
            })
            .collect::<Vec<_>>()
    })
}

struct Probe {
    runs: Vec<AtomicUsize>,
    finished: Vec<AtomicBool>,
    violations: AtomicUsize,
}

fn build(dag: &[Vec<usize>], probe: &Arc<Probe>) -> Graph {
    let mut g = Graph::new();
    for (i, deps) in dag.iter().enumerate() {
        let probe = probe.clone();
        let my_deps = deps.clone();
        let op =
            OpRef::Closure(Arc::new(ClosureOp::new(format!("n{i}"), move |args: Vec<Value>| {
                probe.runs[i].fetch_add(1, Ordering::SeqCst);
                if my_deps.iter().any(|&d| !probe.finished[d].load(Ordering::SeqCst)) {
                    probe.violations.fetch_add(1, Ordering::SeqCst);
                }
                let sum = args
                    .into_iter()
                    .map(|v| v.take::<u64>().unwrap())
                    .fold(i as u64, |acc, x| acc.wrapping_mul(31).wrapping_add(x));
                probe.finished[i].store(true, Ordering::SeqCst);
                Ok(Value::new(sum))
            })));
        let args = deps.iter().map(|&d| Arg::Key(Key::named(&format!("n{d}")))).collect();
        g.add_task(Key::named(&format!("n{i}")), op, args);
    }
    g
}

fn ancestors_brute(dag: &[Vec<usize>], outs: &[usize]) -> Vec<usize> {
    let mut keep = vec![false; dag.len()];
    let mut todo: Vec<usize> = outs.to_vec();
    while let Some(i) = todo.pop() {
        if !keep[i] {
            keep[i] = true;
            todo.extend(&dag[i]);
        }
    }
    (0..dag.len()).filter(|&i| keep[i]).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_dags_sync_and_threads_agree(dag in random_dag(), n_out in 1usize..4, workers in 1usize..5) {
        let n = dag.len();
        let outs: Vec<usize> = (0..n_out).map(|k| n - 1 - (k * 7) % n).collect();
        let out_keys: Vec<Key> = outs.iter().map(|i| Key::named(&format!("n{i}"))).collect();
        let needed = ancestors_brute(&dag, &outs);
        let mut results = Vec::new();
        for s in [Scheduler::Sync, Scheduler::threads_n(workers)] {
            let probe = Arc::new(Probe {
                runs: (0..n).map(|_| AtomicUsize::new(0)).collect(),
                finished: (0..n).map(|_| AtomicBool::new(false)).collect(),
                violations: AtomicUsize::new(0),
            });
            let g = build(&dag, &probe);
            let vals = s.execute(g, &out_keys, &ComputeOptions::new()).unwrap();
            let vals: Vec<u64> = vals.into_iter().map(|v| v.take::<u64>().unwrap()).collect();
            prop_assert_eq!(probe.violations.load(Ordering::SeqCst), 0, "a task ran before a dependency");
            for i in 0..n {
                let expected = usize::from(needed.contains(&i));
                prop_assert_eq!(probe.runs[i].load(Ordering::SeqCst), expected, "node {} ran a wrong number of times", i);
            }
            results.push(vals);
        }
        prop_assert_eq!(&results[0], &results[1]);
    }

    #[test]
    fn cull_keeps_exactly_the_ancestors(dag in random_dag(), picks in proptest::collection::vec(any::<prop::sample::Index>(), 1..4)) {
        let probe = Arc::new(Probe { runs: vec![], finished: vec![], violations: AtomicUsize::new(0) });
        let g = build(&dag, &probe);
        let outs: Vec<usize> = picks.iter().map(|p| p.index(dag.len())).collect();
        let keys: Vec<Key> = outs.iter().map(|i| Key::named(&format!("n{i}"))).collect();
        let culled = cull(&g, &keys);
        let mut got: Vec<Key> = culled.sorted_keys();
        let mut want: Vec<Key> = ancestors_brute(&dag, &outs).iter().map(|i| Key::named(&format!("n{i}"))).collect();
        got.sort();
        want.sort();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn order_is_topological(dag in random_dag()) {
        let probe = Arc::new(Probe { runs: vec![], finished: vec![], violations: AtomicUsize::new(0) });
        let g = build(&dag, &probe);
        let prio = order(&g).unwrap();
        prop_assert_eq!(prio.len(), dag.len());
        for (i, deps) in dag.iter().enumerate() {
            for d in deps {
                let (pd, pi) = (prio[&Key::named(&format!("n{}", d))], prio[&Key::named(&format!("n{}", i))]);
                prop_assert!(pd < pi, "dependency {} after {}", d, i);
            }
        }
    }
}
