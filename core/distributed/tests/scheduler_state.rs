//! The scheduler state machine without any network: events in, exact commands
//! out, invariants checked after every step.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use rask_core::Key;
use rask_distributed::scheduler::*;

const C: ClientId = ClientId(1);

fn k(name: &str) -> Key {
    Key::named(name)
}

fn spec(name: &str, deps: &[&str]) -> TaskSpec {
    TaskSpec {
        key: k(name),
        op: "inc".into(),
        payload: Arc::new(vec![]),
        deps: deps.iter().map(|d| k(d)).collect(),
        priority: 0,
        graph_order: 0,
        retries: 0,
        workers: vec![],
        allow_other_workers: false,
        gang: None,
        resources: vec![],
    }
}

struct Env {
    s: SchedulerState,
    now: u64,
}

impl Env {
    fn new() -> Self {
        Env { s: SchedulerState::new(SchedulerConfig::default()), now: 0 }
    }

    fn with(config: SchedulerConfig) -> Self {
        Env { s: SchedulerState::new(config), now: 0 }
    }

    fn ev(&mut self, e: Event) -> Vec<Command> {
        self.now += 1;
        let out = self.s.handle(e, self.now);
        self.s.check_invariants().unwrap_or_else(|v| panic!("invariant broken: {v}"));
        out
    }

    fn worker(&mut self, id: u64, nthreads: usize) -> Vec<Command> {
        let ops: BTreeSet<String> = ["inc".to_string(), "boom".to_string()].into();
        self.ev(Event::WorkerJoined {
            worker: WorkerId(id),
            name: format!("w{id}"),
            addr: format!("127.0.0.1:{}", 9000 + id),
            nthreads,
            memory_limit: 0,
            ops: Arc::new(ops),
            resources: BTreeMap::new(),
        })
    }

    fn submit(&mut self, tasks: Vec<TaskSpec>, wanted: &[&str]) -> Vec<Command> {
        self.ev(Event::GraphSubmitted {
            client: C,
            tasks,
            wanted: wanted.iter().map(|w| k(w)).collect(),
        })
    }

    fn finish(&mut self, w: u64, key: &str, nbytes: u64) -> Vec<Command> {
        self.ev(Event::TaskFinished { worker: WorkerId(w), key: k(key), nbytes, micros: 0 })
    }
}

fn computes(cmds: &[Command]) -> Vec<(u64, Key)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Compute { worker, key, .. } => Some((worker.0, key.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn chain_runs_in_order_and_frees_intermediates() {
    let mut e = Env::new();
    assert!(e.worker(1, 1).is_empty());
    let out = e.submit(vec![spec("a", &[]), spec("b", &["a"])], &["b"]);
    assert_eq!(computes(&out), vec![(1, k("a"))]);
    let out = e.finish(1, "a", 8);
    assert_eq!(
        out,
        vec![Command::Compute {
            worker: WorkerId(1),
            key: k("b"),
            op: "inc".into(),
            payload: Arc::new(vec![]),
            deps: vec![(k("a"), "127.0.0.1:9001".into())],
        }]
    );
    let out = e.finish(1, "b", 8);
    assert_eq!(
        out,
        vec![
            Command::KeyDone { client: C, key: k("b"), addr: "127.0.0.1:9001".into(), nbytes: 8 },
            Command::FreeKeys { worker: WorkerId(1), keys: vec![k("a")] },
        ]
    );
    // Releasing the future frees the result too.
    let out = e.ev(Event::ClientReleased { client: C, keys: vec![k("b")] });
    assert_eq!(out, vec![Command::FreeKeys { worker: WorkerId(1), keys: vec![k("b")] }]);
    assert!(e.s.tasks().is_empty());
    let story: Vec<&str> = e.s.story(&k("b")).iter().map(|t| t.to).collect();
    assert_eq!(story, vec!["waiting", "queued", "processing", "memory", "released", "forgotten"]);
}

/// `n` root tasks whose keys share `prefix` (as a graph's keys share their op's name).
fn roots(prefix: &str, n: u128) -> (Vec<TaskSpec>, Vec<Key>) {
    let keys: Vec<Key> = (0..n).map(|i| Key::new(prefix, rask_core::key::Token(i))).collect();
    let tasks = keys
        .iter()
        .map(|key| {
            let mut s = spec("x", &[]);
            s.key = key.clone();
            s
        })
        .collect();
    (tasks, keys)
}

#[test]
fn roots_are_queued_not_pushed_all_at_once() {
    let mut e = Env::new();
    e.worker(1, 2);
    let (tasks, wanted) = roots("r", 100);
    let out = e.ev(Event::GraphSubmitted { client: C, tasks, wanted });
    // Untimed tasks count as long: one per thread.
    assert_eq!(computes(&out).len(), 2);
    // Once their prefix is known to be short: 2 threads x saturation 8 = 16 in flight.
    let (_, first) = computes(&out)[0].clone();
    let out = e.ev(Event::TaskFinished { worker: WorkerId(1), key: first, nbytes: 1, micros: 100 });
    assert_eq!(computes(&out).len(), 15, "16 in flight once the prefix is short");
    let (_, next) = computes(&out)[0].clone();
    let out = e.ev(Event::TaskFinished { worker: WorkerId(1), key: next, nbytes: 1, micros: 100 });
    assert_eq!(computes(&out).len(), 1, "one slot freed, one task sent");
}

#[test]
fn long_tasks_do_not_queue_behind_each_other() {
    // Two workers of one thread; a prefix known to take 1 s. Each worker gets
    // one task at a time, so when one finishes early the next task goes to
    // whichever worker is free, not behind the other's long task.
    let mut e = Env::new();
    e.worker(1, 1);
    e.worker(2, 1);
    let (tasks, wanted) = roots("long", 6);
    let out = e.ev(Event::GraphSubmitted { client: C, tasks, wanted });
    let sent = computes(&out);
    assert_eq!(sent.len(), 2, "{sent:?}");
    let out = e.ev(Event::TaskFinished {
        worker: WorkerId(sent[0].0),
        key: sent[0].1.clone(),
        nbytes: 1,
        micros: 1_000_000,
    });
    assert_eq!(computes(&out).len(), 1, "one task for the freed thread, none queued");
    assert!(e.s.workers().values().all(|w| w.processing.len() == 1));
    // Short work queues (up to the saturation) behind short work.
    let (tasks, wanted) = roots("short", 40);
    e.ev(Event::GraphSubmitted { client: C, tasks, wanted });
    // Both threads busy with long tasks: nothing more is sent, short or not.
    assert!(e.s.workers().values().all(|w| w.processing.len() == 1));
    // The long ones finish (the rest of them first: they were submitted
    // first); untimed short tasks go one per thread, and once one is known
    // to be short they queue up to the saturation.
    while let Some((key, w)) = processing(&e).into_iter().find(|(k, _)| k.prefix() == "long") {
        e.ev(Event::TaskFinished { worker: w, key, nbytes: 1, micros: 1_000_000 });
    }
    assert!(e.s.workers().values().all(|w| w.processing.len() == 1), "untimed: one each");
    let (key, w) = processing(&e)[0].clone();
    e.ev(Event::TaskFinished { worker: w, key, nbytes: 1, micros: 50 });
    assert!(e.s.workers().values().any(|w| w.processing.len() > 1), "short tasks queue");
}

fn steals(cmds: &[Command]) -> Vec<(u64, Key)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Steal { worker, key } => Some((worker.0, key.clone())),
            _ => None,
        })
        .collect()
}

/// One worker of one thread holding `n` tasks of 8 ms (one running, the
/// rest queued there), nothing left in the scheduler's queue.
fn one_busy_worker(prefix: &str, n: u128, micros: u64) -> Env {
    let mut e = Env::new();
    e.worker(1, 1);
    let (tasks, wanted) = roots(prefix, n + 1);
    let out = e.ev(Event::GraphSubmitted { client: C, tasks, wanted });
    let (_, first) = computes(&out)[0].clone();
    e.ev(Event::TaskFinished { worker: WorkerId(1), key: first, nbytes: 1, micros });
    assert_eq!(e.s.workers()[&WorkerId(1)].processing.len() as u128, n, "all on w1");
    e
}

#[test]
fn an_idle_worker_steals_unstarted_work() {
    // w1 holds 3 tasks of 8 ms (within its 20 ms backlog); w2 joins idle.
    let mut e = one_busy_worker("mid", 3, 8_000);
    let out = e.worker(2, 1);
    let asked = steals(&out);
    assert_eq!(asked.len(), 1, "one idle thread, one steal: {out:?}");
    assert_eq!(asked[0].0, 1);
    // w1 gives it up: it goes straight to w2.
    let out =
        e.ev(Event::StealResponse { worker: WorkerId(1), key: asked[0].1.clone(), stolen: true });
    assert_eq!(computes(&out), vec![(2, asked[0].1.clone())]);
    assert_eq!(e.s.workers()[&WorkerId(1)].processing.len(), 2);
    assert!(e.s.story(&asked[0].1).iter().any(|t| t.reason.contains("stolen from worker 1")));
}

#[test]
fn a_refused_or_stale_steal_changes_nothing() {
    let mut e = one_busy_worker("mid", 3, 8_000);
    let out = e.worker(2, 1);
    let (_, key) = steals(&out)[0].clone();
    // Already running on w1: it keeps it, and the next steal asks for another task.
    let out = e.ev(Event::StealResponse { worker: WorkerId(1), key: key.clone(), stolen: false });
    assert!(computes(&out).iter().all(|(_, k)| *k != key));
    assert!(matches!(e.s.tasks()[&key].state, TaskState::Processing { worker: WorkerId(1) }));
    let again = steals(&out);
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].1, key, "a refused task is not asked for again");
    // A repeated or unknown answer is ignored.
    let out = e.ev(Event::StealResponse { worker: WorkerId(1), key: key.clone(), stolen: true });
    assert!(computes(&out).iter().all(|(_, k)| *k != key));
    let out = e.ev(Event::StealResponse { worker: WorkerId(2), key: k("nope"), stolen: true });
    assert!(computes(&out).is_empty());
}

#[test]
fn short_or_pinned_tasks_are_not_stolen() {
    // 1 ms tasks: a steal's round trip costs more than waiting.
    let mut e = one_busy_worker("short", 3, 1_000);
    assert!(steals(&e.worker(2, 1)).is_empty());
    // Pinned to w1 without allow_other_workers.
    let mut e = Env::new();
    e.worker(1, 1);
    let (mut tasks, wanted) = roots("pinned", 4);
    for t in &mut tasks {
        t.workers = vec!["w1".into()];
    }
    let out = e.ev(Event::GraphSubmitted { client: C, tasks, wanted });
    let (_, first) = computes(&out)[0].clone();
    e.ev(Event::TaskFinished { worker: WorkerId(1), key: first, nbytes: 1, micros: 8_000 });
    assert!(steals(&e.worker(2, 1)).is_empty());
}

#[test]
fn a_task_whose_inputs_cost_more_to_move_than_to_wait_stays() {
    // Each task reads a 10 MB input held by w1: 100 ms to move at 100 MB/s,
    // for 8 ms of work. Not worth stealing.
    let mut e = Env::new();
    e.worker(1, 1);
    let mut tasks = vec![spec("big", &[])];
    let (more, _) = roots("mid", 4);
    for mut t in more {
        t.deps = vec![k("big")];
        tasks.push(t);
    }
    let keys: Vec<Key> = tasks[1..].iter().map(|t| t.key.clone()).collect();
    e.ev(Event::GraphSubmitted { client: C, tasks, wanted: keys });
    e.finish(1, "big", 10_000_000);
    let (key, w) = processing(&e)[0].clone();
    e.ev(Event::TaskFinished { worker: w, key, nbytes: 1, micros: 8_000 });
    assert!(e.s.workers()[&WorkerId(1)].processing.len() > 1);
    assert!(steals(&e.worker(2, 1)).is_empty());
}

#[test]
fn placement_prefers_the_worker_holding_the_big_input() {
    let mut e = Env::new();
    e.worker(1, 1);
    e.worker(2, 1);
    let mut a = spec("a", &[]);
    a.workers = vec!["w1".into()];
    let mut b = spec("b", &[]);
    b.workers = vec!["w2".into()];
    let out = e.submit(vec![a, b, spec("c", &["a", "b"])], &["c"]);
    assert_eq!(computes(&out), vec![(1, k("a")), (2, k("b"))]);
    e.finish(1, "a", 1_000_000);
    let out = e.finish(2, "b", 10);
    assert_eq!(computes(&out), vec![(1, k("c"))], "c runs where the 1 MB input is");
}

#[test]
fn a_task_waits_for_the_busy_worker_holding_its_big_input() {
    // w1 holds a 20 MB split (200 ms to move at 100 MB/s) and is busy with a
    // 50 ms task; w2 is idle. The piece of the split waits for w1, while a
    // task with a small input goes to w2 at once.
    let mut e = Env::new();
    e.worker(1, 1);
    e.worker(2, 1);
    let mut split = spec("split", &[]);
    split.workers = vec!["w1".into()];
    e.submit(vec![split], &["split"]);
    e.finish(1, "split", 20_000_000);
    let mut small = spec("small", &[]);
    small.workers = vec!["w1".into()];
    e.submit(vec![small], &["small"]);
    e.finish(1, "small", 1_000);
    // A 50 ms task keeps w1 full (its prefix timed by a first one).
    let busy = |i: u32| {
        let mut t = spec("busy", &[]);
        t.key = k("busy").with_index(vec![i]);
        t.workers = vec!["w1".into()];
        t
    };
    for i in 0..2 {
        let t = busy(i);
        let key = t.key.clone();
        let out =
            e.ev(Event::GraphSubmitted { client: C, tasks: vec![t], wanted: vec![key.clone()] });
        assert_eq!(computes(&out), vec![(1, key.clone())]);
        if i == 0 {
            e.ev(Event::TaskFinished { worker: WorkerId(1), key, nbytes: 1, micros: 50_000 });
        }
    }
    let out = e.submit(vec![spec("piece", &["split"]), spec("use", &["small"])], &["piece", "use"]);
    assert_eq!(computes(&out), vec![(2, k("use"))], "only the small input moves");
    let out = e.ev(Event::TaskFinished {
        worker: WorkerId(1),
        key: k("busy").with_index(vec![1]),
        nbytes: 1,
        micros: 50_000,
    });
    assert_eq!(computes(&out), vec![(1, k("piece"))], "the piece runs where the split is");
}

#[test]
fn resources_and_restrictions_are_honoured() {
    let mut e = Env::new();
    e.worker(1, 4);
    e.ev(Event::WorkerJoined {
        worker: WorkerId(2),
        name: "gpu".into(),
        addr: "127.0.0.1:9002".into(),
        nthreads: 4,
        memory_limit: 0,
        ops: Arc::new(["inc".to_string()].into()),
        resources: [("GPU".to_string(), 1.0)].into(),
    });
    let mut g1 = spec("g1", &[]);
    g1.resources = vec![("GPU".into(), 1.0)];
    let mut g2 = spec("g2", &[]);
    g2.resources = vec![("GPU".into(), 1.0)];
    let out = e.submit(vec![g1, g2], &["g1", "g2"]);
    // One GPU: one task at a time, only on the GPU worker.
    assert_eq!(computes(&out), vec![(2, k("g1"))]);
    let out = e.finish(2, "g1", 1);
    assert_eq!(computes(&out), vec![(2, k("g2"))]);
    // A restriction to a missing worker with allow_other_workers runs elsewhere.
    let mut r = spec("r", &[]);
    r.workers = vec!["nowhere".into()];
    r.allow_other_workers = true;
    assert_eq!(computes(&e.submit(vec![r], &["r"])).len(), 1);
}

#[test]
fn failures_are_retried_then_reported() {
    let mut e = Env::new();
    e.worker(1, 1);
    let mut a = spec("a", &[]);
    a.retries = 1;
    e.submit(vec![a, spec("b", &["a"])], &["b"]);
    let failure = TaskFailure {
        key: k("a"),
        op: "inc".into(),
        message: "boom".into(),
        worker: Some("w1".into()),
        kind: FailureCause::Error,
    };
    let out =
        e.ev(Event::TaskFailed { worker: WorkerId(1), key: k("a"), failure: failure.clone() });
    assert_eq!(computes(&out), vec![(1, k("a"))], "retried once");
    let out =
        e.ev(Event::TaskFailed { worker: WorkerId(1), key: k("a"), failure: failure.clone() });
    assert_eq!(out, vec![Command::KeyErred { client: C, key: k("b"), failure }]);
    assert!(e.s.story(&k("a")).iter().any(|t| t.reason.contains("retrying")));
}

/// Found by `random_dags_with_faults_finish`: a task running on one worker
/// loses its input with another worker, then fails and is retried. The retry
/// must wait for the input to be recomputed, not queue without it.
#[test]
fn a_retry_whose_input_was_lost_meanwhile_waits_for_it() {
    let mut e = Env::new();
    e.worker(1, 1);
    e.worker(2, 1);
    let mut a = spec("a", &[]);
    a.workers = vec!["w1".into()];
    a.allow_other_workers = true;
    let mut b = spec("b", &["a"]);
    b.workers = vec!["w2".into()];
    b.retries = 1;
    e.submit(vec![a, b], &["b"]);
    e.finish(1, "a", 8);
    // b runs on w2; w1, the only holder of a, dies (a new w3 joins).
    e.ev(Event::WorkerLost { worker: WorkerId(1) });
    e.worker(3, 1);
    assert!(matches!(e.s.tasks()[&k("b")].state, TaskState::Processing { worker: WorkerId(2) }));
    let failure = TaskFailure {
        key: k("b"),
        op: "inc".into(),
        message: "boom".into(),
        worker: None,
        kind: FailureCause::Error,
    };
    let out = e.ev(Event::TaskFailed { worker: WorkerId(2), key: k("b"), failure });
    assert!(computes(&out).is_empty(), "{out:?}");
    assert_eq!(e.s.tasks()[&k("b")].state, TaskState::Waiting { unfinished: 1 });
    // a is recomputed elsewhere (its pin is loose).
    let a_on = match e.s.tasks()[&k("a")].state {
        TaskState::Processing { worker } => worker.0,
        ref s => panic!("a is {s:?}"),
    };
    let out = e.finish(a_on, "a", 8);
    assert_eq!(computes(&out), vec![(2, k("b"))], "b retried once a is back");
}

#[test]
fn lost_worker_results_are_recomputed_from_lineage() {
    let mut e = Env::new();
    e.worker(1, 1);
    e.worker(2, 1);
    e.submit(vec![spec("a", &[]), spec("b", &["a"]), spec("c", &["b"])], &["c"]);
    let a_on = match e.s.tasks()[&k("a")].state {
        TaskState::Processing { worker } => worker.0,
        ref s => panic!("a is {s:?}"),
    };
    e.finish(a_on, "a", 8);
    let b_on = match e.s.tasks()[&k("b")].state {
        TaskState::Processing { worker } => worker.0,
        ref s => panic!("b is {s:?}"),
    };
    e.finish(b_on, "b", 8);
    // c is processing; now the worker holding b dies.
    let c_on = match e.s.tasks()[&k("c")].state {
        TaskState::Processing { worker } => worker.0,
        ref s => panic!("c is {s:?}"),
    };
    let other = if c_on == 1 { 2 } else { 1 };
    let out = e.ev(Event::WorkerLost { worker: WorkerId(c_on) });
    // c was processing there: everything it needs is recomputed on the survivor.
    let recomputed: Vec<Key> = computes(&out)
        .into_iter()
        .map(|(w, key)| {
            assert_eq!(w, other);
            key
        })
        .collect();
    assert!(!recomputed.is_empty());
    // Drive the recomputation to the end.
    let mut pending = recomputed;
    let mut done = false;
    while let Some(key) = pending.pop() {
        let out = e.ev(Event::TaskFinished { worker: WorkerId(other), key, nbytes: 8, micros: 0 });
        pending.extend(computes(&out).into_iter().map(|(_, key)| key));
        done |= out.iter().any(|c| matches!(c, Command::KeyDone { key, .. } if *key == k("c")));
    }
    assert!(done, "c was computed again");
}

#[test]
fn missing_dependency_data_sends_the_task_back() {
    let mut e = Env::new();
    e.worker(1, 1);
    e.worker(2, 1);
    let mut a = spec("a", &[]);
    a.workers = vec!["w1".into()];
    let mut b = spec("b", &["a"]);
    b.workers = vec!["w2".into()];
    e.submit(vec![a, b], &["b"]);
    let out = e.finish(1, "a", 8);
    assert_eq!(computes(&out), vec![(2, k("b"))]);
    // w2 could not fetch a from w1: a is recomputed, then b again.
    let out = e.ev(Event::DataMissing { worker: WorkerId(2), key: k("b"), missing: k("a") });
    assert_eq!(computes(&out), vec![(1, k("a"))]);
    let out = e.finish(1, "a", 8);
    assert_eq!(computes(&out), vec![(2, k("b"))]);
}

#[test]
fn a_task_that_kills_its_workers_is_marked_erred() {
    let mut e = Env::new();
    for w in 1..=4 {
        e.worker(w, 1);
    }
    e.submit(vec![spec("poison", &[])], &["poison"]);
    let mut last = Vec::new();
    for _ in 0..3 {
        let on = match e.s.tasks()[&k("poison")].state {
            TaskState::Processing { worker } => worker,
            ref s => panic!("poison is {s:?}"),
        };
        last = e.ev(Event::WorkerLost { worker: on });
    }
    match &last[..] {
        [Command::KeyErred { key, failure, .. }] => {
            assert_eq!(key, &k("poison"));
            assert_eq!(failure.kind, FailureCause::KilledWorker);
            assert!(failure.message.contains("3 workers died"), "{}", failure.message);
        }
        other => panic!("expected KeyErred, got {other:?}"),
    }
}

#[test]
fn bad_submissions_are_rejected_with_reasons() {
    let mut e = Env::new();
    e.worker(1, 1);
    let mut t = spec("x", &[]);
    t.op = "my_crate::secret".into();
    let out = e.submit(vec![t], &["x"]);
    match &out[..] {
        [Command::Reject { error, .. }] => {
            assert!(error.contains("`my_crate::secret`") && error.contains("inc"), "{error}")
        }
        other => panic!("{other:?}"),
    }
    let out = e.submit(vec![spec("y", &["ghost"])], &["y"]);
    assert!(matches!(&out[..], [Command::Reject { error, .. }] if error.contains("ghost")));
    assert!(e.s.tasks().is_empty());
}

#[test]
fn silent_workers_time_out() {
    let mut e =
        Env::with(SchedulerConfig { heartbeat_timeout_ms: 10, ..SchedulerConfig::default() });
    e.worker(1, 1);
    e.submit(vec![spec("a", &[])], &["a"]);
    e.now += 100;
    let out = e.ev(Event::Tick);
    assert_eq!(out, vec![Command::CloseWorker { worker: WorkerId(1) }]);
    assert!(matches!(e.s.tasks()[&k("a")].state, TaskState::Queued));
}

// ---------------------------------------------------------------- properties

fn gang(id: &str, size: u32, pins: &[Option<&str>], deps: &[&[&str]]) -> Vec<TaskSpec> {
    (0..size)
        .map(|r| {
            let mut t = spec(&format!("{id}-{r}"), deps.get(r as usize).copied().unwrap_or(&[]));
            t.gang = Some(Gang { id: id.into(), rank: r, size });
            if let Some(Some(w)) = pins.get(r as usize) {
                t.workers = vec![w.to_string()];
            }
            t
        })
        .collect()
}

fn erred(cmds: &[Command]) -> Vec<(Key, String)> {
    let mut v: Vec<(Key, String)> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::KeyErred { key, failure, .. } => Some((key.clone(), failure.message.clone())),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_gang_starts_whole_on_distinct_workers_with_free_threads() {
    let mut e = Env::new();
    e.worker(1, 1);
    e.worker(2, 1);
    // A busy worker: its only thread runs `x`.
    e.submit(vec![spec("x", &[])], &["x"]);
    let out = e.submit(gang("g", 2, &[], &[]), &["g-0", "g-1"]);
    assert!(computes(&out).is_empty(), "one free thread is not enough for a gang of 2");
    let busy = e.s.tasks()[&k("x")].state.clone();
    let TaskState::Processing { worker } = busy else { panic!("x runs") };
    let out = e.ev(Event::TaskFinished { worker, key: k("x"), nbytes: 1, micros: 0 });
    let mut started = computes(&out);
    started.sort();
    assert_eq!(started, vec![(1, k("g-0")), (2, k("g-1"))]);
}

#[test]
fn a_gang_waits_for_all_members_inputs_and_honours_pins() {
    let mut e = Env::new();
    e.worker(1, 2);
    e.worker(2, 2);
    let mut a = spec("a", &[]);
    a.workers = vec!["w2".into()];
    let mut tasks = vec![a];
    tasks.extend(gang("g", 2, &[Some("w2"), Some("w1")], &[&["a"], &[]]));
    let out = e.submit(tasks, &["g-0", "g-1"]);
    assert_eq!(computes(&out), vec![(2, k("a"))], "rank 1 is ready but waits for rank 0's input");
    let mut started = computes(&e.finish(2, "a", 8));
    started.sort();
    assert_eq!(started, vec![(1, k("g-1")), (2, k("g-0"))]);
}

#[test]
fn a_dead_member_fails_the_whole_gang_at_once() {
    let mut e = Env::new();
    e.worker(1, 1);
    e.worker(2, 1);
    e.worker(3, 1);
    let out = e.submit(gang("g", 2, &[Some("w1"), Some("w2")], &[]), &["g-0", "g-1"]);
    assert_eq!(computes(&out).len(), 2);
    let out = e.ev(Event::WorkerLost { worker: WorkerId(2) });
    // The survivor is cancelled on its worker; both members are erred; nothing is retried.
    assert!(out.contains(&Command::FreeKeys { worker: WorkerId(1), keys: vec![k("g-0")] }));
    assert!(computes(&out).is_empty(), "no member is rerun on its own: {out:?}");
    let errs = erred(&out);
    assert_eq!(errs.len(), 2);
    assert!(errs[1].1.contains("rank 1 of gang `g`") && errs[1].1.contains("w2 died"), "{errs:?}");
    let failure = |key: &str| e.s.tasks()[&k(key)].state.clone();
    assert!(
        matches!(failure("g-0"), TaskState::Erred { failure } if failure.kind == FailureCause::KilledWorker)
    );
    // The survivor's late answer is stale and freed.
    let out = e.finish(1, "g-0", 8);
    assert_eq!(out, vec![Command::FreeKeys { worker: WorkerId(1), keys: vec![k("g-0")] }]);
    // A new attempt (a new id) runs on the survivors.
    let out = e.submit(gang("h", 2, &[], &[]), &["h-0", "h-1"]);
    let mut started = computes(&out);
    started.sort();
    assert_eq!(started, vec![(1, k("h-0")), (3, k("h-1"))]);
}

#[test]
fn a_failing_member_is_not_retried_and_takes_the_gang_down() {
    let mut e = Env::new();
    e.worker(1, 1);
    e.worker(2, 1);
    let mut tasks = gang("g", 2, &[], &[]);
    tasks[1].retries = 5;
    tasks.push(spec("after", &["g-0"]));
    e.submit(tasks, &["g-1", "after"]);
    let w = |key: &str| match e.s.tasks()[&k(key)].state {
        TaskState::Processing { worker } => worker,
        ref s => panic!("{key} is {s:?}"),
    };
    let (w0, w1) = (w("g-0"), w("g-1"));
    let failure = TaskFailure {
        key: k("g-1"),
        op: "inc".into(),
        message: "bad parameter".into(),
        worker: None,
        kind: FailureCause::Error,
    };
    let out = e.ev(Event::TaskFailed { worker: w1, key: k("g-1"), failure });
    assert!(out.contains(&Command::FreeKeys { worker: w0, keys: vec![k("g-0")] }));
    let errs = erred(&out);
    assert_eq!(errs.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), vec![k("after"), k("g-1")]);
    assert!(errs[0]
        .1
        .contains("rank 1 of gang `g` (2 members; the others were cancelled): bad parameter"));
}

#[test]
fn gangs_that_cannot_start_are_refused_or_failed() {
    let mut e = Env::new();
    e.worker(1, 4);
    let out = e.submit(gang("g", 2, &[], &[]), &["g-0", "g-1"]);
    assert!(
        matches!(&out[..], [Command::Reject { error, .. }] if error.contains("needs 2 distinct workers, but 1 are connected")),
        "{out:?}"
    );
    e.worker(2, 4);
    let mut half = gang("g", 2, &[], &[]);
    half.pop();
    let out = e.submit(half, &["g-0"]);
    assert!(
        matches!(&out[..], [Command::Reject { error, .. }] if error.contains("submitted whole")),
        "{out:?}"
    );
    // Rank 1's pinned worker leaves before rank 0's input is ready: the gang fails.
    let mut a = spec("a", &[]);
    a.workers = vec!["w1".into()];
    let mut tasks = vec![a];
    tasks.extend(gang("p", 2, &[Some("w1"), Some("w2")], &[&["a"], &[]]));
    e.submit(tasks, &["p-0", "p-1"]);
    e.ev(Event::WorkerLost { worker: WorkerId(2) });
    e.worker(3, 4);
    let out = e.finish(1, "a", 8);
    let errs = erred(&out);
    assert_eq!(errs.len(), 2, "{out:?}");
    assert!(errs[0].1.contains("may run only on w2"), "{errs:?}");
}

#[derive(Debug, Clone)]
enum Step {
    Finish(prop::sample::Index),
    Fail(prop::sample::Index),
    Lose(prop::sample::Index),
    Missing(prop::sample::Index),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => any::<prop::sample::Index>().prop_map(Step::Finish),
        1 => any::<prop::sample::Index>().prop_map(Step::Fail),
        1 => any::<prop::sample::Index>().prop_map(Step::Lose),
        1 => any::<prop::sample::Index>().prop_map(Step::Missing),
    ]
}

fn dag() -> impl Strategy<Value = Vec<Vec<usize>>> {
    (1usize..30).prop_flat_map(|n| {
        (0..n)
            .map(|i| {
                if i == 0 {
                    Just(vec![]).boxed()
                } else {
                    proptest::collection::vec(0..i, 0..3).boxed()
                }
            })
            .collect::<Vec<_>>()
    })
}

fn processing(e: &Env) -> Vec<(Key, WorkerId)> {
    let mut v: Vec<(Key, WorkerId)> =
        e.s.tasks()
            .iter()
            .filter_map(|(k, t)| match t.state {
                TaskState::Processing { worker } => Some((k.clone(), worker)),
                _ => None,
            })
            .collect();
    v.sort();
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_dags_with_faults_finish(dag in dag(), steps in proptest::collection::vec(step(), 0..60), n_workers in 1u64..4, retries in 0u32..2) {
        let mut e = Env::with(SchedulerConfig { allowed_failures: 1000, ..SchedulerConfig::default() });
        let mut next_worker = 1;
        for _ in 0..n_workers {
            e.worker(next_worker, 2);
            next_worker += 1;
        }
        let names: Vec<String> = (0..dag.len()).map(|i| format!("t{i}")).collect();
        let tasks: Vec<TaskSpec> = dag.iter().enumerate().map(|(i, deps)| {
            let deps: Vec<&str> = deps.iter().map(|d| names[*d].as_str()).collect();
            let mut s = spec(&names[i], &deps);
            s.retries = retries;
            s.graph_order = i as u32;
            s
        }).collect();
        // Clients want the last task and a few others.
        let wanted: Vec<&str> = names.iter().enumerate().filter(|(i, _)| *i == dag.len() - 1 || i % 5 == 0).map(|(_, n)| n.as_str()).collect();
        let mut outcome: BTreeMap<Key, &'static str> = BTreeMap::new();
        let record = |out: &[Command], outcome: &mut BTreeMap<Key, &'static str>| {
            for c in out {
                match c {
                    Command::KeyDone { key, .. } => { outcome.insert(key.clone(), "memory"); }
                    Command::KeyErred { key, .. } => { outcome.insert(key.clone(), "erred"); }
                    Command::Reject { error, .. } => panic!("rejected: {error}"),
                    _ => {}
                }
            }
        };
        let out = e.submit(tasks, &wanted);
        record(&out, &mut outcome);
        let failure = |key: &Key| TaskFailure { key: key.clone(), op: "inc".into(), message: "x".into(), worker: None, kind: FailureCause::Error };
        for st in steps {
            let p = processing(&e);
            let out = match st {
                Step::Finish(i) if !p.is_empty() => { let (key, w) = p[i.index(p.len())].clone(); e.ev(Event::TaskFinished { worker: w, key, nbytes: 8, micros: 0 }) }
                Step::Fail(i) if !p.is_empty() => { let (key, w) = p[i.index(p.len())].clone(); e.ev(Event::TaskFailed { worker: w, key: key.clone(), failure: failure(&key) }) }
                Step::Missing(i) if !p.is_empty() => {
                    let (key, w) = p[i.index(p.len())].clone();
                    match e.s.tasks()[&key].spec.deps.first().cloned() {
                        Some(d) => e.ev(Event::DataMissing { worker: w, key, missing: d }),
                        None => vec![],
                    }
                }
                Step::Lose(i) => {
                    let ws: Vec<WorkerId> = e.s.workers().keys().copied().collect();
                    if ws.is_empty() { vec![] } else {
                        let mut out = e.ev(Event::WorkerLost { worker: ws[i.index(ws.len())] });
                        out.extend(e.worker(next_worker, 2));
                        next_worker += 1;
                        out
                    }
                }
                _ => vec![],
            };
            record(&out, &mut outcome);
        }
        // No more faults: finish everything.
        for _ in 0..10_000 {
            let p = processing(&e);
            let Some((key, w)) = p.first().cloned() else { break };
            let out = e.ev(Event::TaskFinished { worker: w, key, nbytes: 8, micros: 0 });
            record(&out, &mut outcome);
        }
        for w in &wanted {
            let key = k(w);
            prop_assert!(outcome.contains_key(&key), "{} ended in neither memory nor erred; state {:?}", w, e.s.tasks().get(&key).map(|t| &t.state));
            let st = &e.s.tasks()[&key].state;
            prop_assert!(matches!(st, TaskState::Memory { .. } | TaskState::Erred { .. }), "{} is {:?}", w, st);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// A gang with an input, other tasks beside it, and random finishes,
    /// failures, missing data and lost workers (each replaced): invariants
    /// hold after every step; members never share a worker; the gang ends
    /// whole: every member in memory, or every unfinished member erred.
    #[test]
    fn gangs_under_faults_end_whole(size in 1u32..4, n_workers in 1u64..5, steps in proptest::collection::vec(step(), 0..50)) {
        let mut e = Env::new();
        let mut next_worker = 1;
        for _ in 0..n_workers {
            e.worker(next_worker, 1);
            next_worker += 1;
        }
        let mut tasks = vec![spec("a", &[]), spec("x", &[]), spec("y", &["x"])];
        tasks.extend(gang("g", size, &[], &[&["a"]]));
        let members: Vec<String> = (0..size).map(|r| format!("g-{r}")).collect();
        let mut wanted: Vec<&str> = members.iter().map(String::as_str).collect();
        wanted.push("y");
        let out = e.submit(tasks, &wanted);
        if u64::from(size) > n_workers {
            prop_assert!(matches!(&out[..], [Command::Reject { .. }]), "{:?}", out);
            return Ok(());
        }
        let failure = |key: &Key| TaskFailure { key: key.clone(), op: "inc".into(), message: "x".into(), worker: None, kind: FailureCause::Error };
        let check_distinct = |e: &Env| -> Result<(), TestCaseError> {
            let on: Vec<WorkerId> = processing(e).into_iter().filter(|(k, _)| k.prefix().starts_with("g-")).map(|(_, w)| w).collect();
            let mut dedup = on.clone();
            dedup.sort();
            dedup.dedup();
            prop_assert_eq!(on.len(), dedup.len(), "two members on one worker");
            Ok(())
        };
        for st in steps {
            let p = processing(&e);
            match st {
                Step::Finish(i) if !p.is_empty() => { let (key, w) = p[i.index(p.len())].clone(); e.ev(Event::TaskFinished { worker: w, key, nbytes: 8, micros: 0 }); }
                Step::Fail(i) if !p.is_empty() => { let (key, w) = p[i.index(p.len())].clone(); e.ev(Event::TaskFailed { worker: w, key: key.clone(), failure: failure(&key) }); }
                Step::Missing(i) if !p.is_empty() => {
                    let (key, w) = p[i.index(p.len())].clone();
                    if let Some(d) = e.s.tasks()[&key].spec.deps.first().cloned() {
                        e.ev(Event::DataMissing { worker: w, key, missing: d });
                    }
                }
                Step::Lose(i) => {
                    let ws: Vec<WorkerId> = e.s.workers().keys().copied().collect();
                    if !ws.is_empty() {
                        e.ev(Event::WorkerLost { worker: ws[i.index(ws.len())] });
                        e.worker(next_worker, 1);
                        next_worker += 1;
                    }
                }
                _ => {}
            }
            check_distinct(&e)?;
        }
        for _ in 0..1000 {
            let p = processing(&e);
            let Some((key, w)) = p.first().cloned() else { break };
            e.ev(Event::TaskFinished { worker: w, key, nbytes: 8, micros: 0 });
        }
        let states: Vec<TaskState> = members.iter().map(|m| e.s.tasks()[&k(m)].state.clone()).collect();
        let all_memory = states.iter().all(|s| matches!(s, TaskState::Memory { .. }));
        let ended = states.iter().all(|s| matches!(s, TaskState::Memory { .. } | TaskState::Erred { .. }));
        let any_erred = states.iter().any(|s| matches!(s, TaskState::Erred { .. }));
        prop_assert!(ended && (all_memory || any_erred), "gang ended as {:?}", states);
    }
}

/// One message a client or a worker could send, over a pool of 8 keys.
#[derive(Debug, Clone)]
enum Message {
    /// A chain of `len` tasks from pool key `first`, by client 1 or 2; the
    /// `variant` byte is the payload, so equal keys may carry other content.
    Submit {
        client: u64,
        first: usize,
        len: usize,
        boom: bool,
        variant: u8,
    },
    /// A value scattered under a pool key, onto a worker (maybe a gone one).
    Scatter {
        client: u64,
        key: usize,
        worker: prop::sample::Index,
    },
    /// Futures dropped (also how a client cancels).
    Release {
        client: u64,
        key: usize,
    },
    /// A task finishes, timed (8 ms, worth stealing) or not.
    Finish(prop::sample::Index, bool),
    Fail(prop::sample::Index),
    Missing(prop::sample::Index),
    Lose(prop::sample::Index),
    /// A steal answer about a processing task, from its worker or another.
    StealAnswer {
        task: prop::sample::Index,
        from_holder: bool,
        stolen: bool,
    },
    Heartbeat {
        worker: prop::sample::Index,
        paused: bool,
    },
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        3 => (1u64..3, 0usize..8, 1usize..4, any::<bool>(), 0u8..2).prop_map(|(client, first, len, boom, variant)| Message::Submit { client, first, len, boom, variant }),
        2 => (1u64..3, 0usize..8, any::<prop::sample::Index>()).prop_map(|(client, key, worker)| Message::Scatter { client, key, worker }),
        2 => (1u64..3, 0usize..8).prop_map(|(client, key)| Message::Release { client, key }),
        4 => (any::<prop::sample::Index>(), any::<bool>()).prop_map(|(i, timed)| Message::Finish(i, timed)),
        1 => any::<prop::sample::Index>().prop_map(Message::Fail),
        2 => (any::<prop::sample::Index>(), any::<bool>(), any::<bool>()).prop_map(|(task, from_holder, stolen)| Message::StealAnswer { task, from_holder, stolen }),
        1 => any::<prop::sample::Index>().prop_map(Message::Missing),
        1 => any::<prop::sample::Index>().prop_map(Message::Lose),
        1 => (any::<prop::sample::Index>(), any::<bool>()).prop_map(|(worker, paused)| Message::Heartbeat { worker, paused }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    /// Random interleavings of client and worker messages: submissions that
    /// reuse keys with other content, scatters onto live and gone workers and
    /// over keys already in the graph, releases, finishes, failures, missing
    /// data, lost workers, steal answers (right and wrong) and heartbeats. The state machine never panics, its
    /// invariants hold after every message, and once the faults stop every
    /// task drains (nothing stays processing forever).
    #[test]
    fn any_message_sequence_keeps_the_invariants(messages in proptest::collection::vec(message(), 1..40)) {
        let mut e = Env::with(SchedulerConfig { allowed_failures: 3, ..SchedulerConfig::default() });
        e.worker(1, 2);
        e.worker(2, 1);
        let mut next_worker = 3;
        let pool: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
        let failure = |key: &Key| TaskFailure { key: key.clone(), op: "inc".into(), message: "x".into(), worker: None, kind: FailureCause::Error };
        for m in messages {
            let p = processing(&e);
            match m {
                Message::Submit { client, first, len, boom, variant } => {
                    let tasks: Vec<TaskSpec> = (0..len).map(|i| {
                        let key = (first + i) % 8;
                        let deps: Vec<&str> = if i == 0 { vec![] } else { vec![pool[(first + i - 1) % 8].as_str()] };
                        let mut s = spec(&pool[key], &deps);
                        s.op = if boom && i == len - 1 { "boom".into() } else { "inc".into() };
                        s.payload = Arc::new(vec![variant]);
                        s
                    }).collect();
                    let wanted = vec![k(&pool[(first + len - 1) % 8])];
                    e.ev(Event::GraphSubmitted { client: ClientId(client), tasks, wanted });
                }
                Message::Scatter { client, key, worker } => {
                    let mut ws: Vec<WorkerId> = e.s.workers().keys().copied().collect();
                    ws.push(WorkerId(999)); // a worker that is gone
                    let worker = ws[worker.index(ws.len())];
                    e.ev(Event::DataScattered { client: ClientId(client), key: k(&pool[key]), worker, nbytes: 8 });
                }
                Message::Release { client, key } => {
                    e.ev(Event::ClientReleased { client: ClientId(client), keys: vec![k(&pool[key])] });
                }
                Message::Finish(i, timed) if !p.is_empty() => {
                    let (key, w) = p[i.index(p.len())].clone();
                    let micros = if timed { 8_000 } else { 0 };
                    e.ev(Event::TaskFinished { worker: w, key, nbytes: 8, micros });
                }
                Message::StealAnswer { task, from_holder, stolen } if !p.is_empty() => {
                    let (key, w) = p[task.index(p.len())].clone();
                    let worker = if from_holder { w } else { WorkerId(w.0 + 1) };
                    e.ev(Event::StealResponse { worker, key, stolen });
                }
                Message::Fail(i) if !p.is_empty() => {
                    let (key, w) = p[i.index(p.len())].clone();
                    e.ev(Event::TaskFailed { worker: w, key: key.clone(), failure: failure(&key) });
                }
                Message::Missing(i) if !p.is_empty() => {
                    let (key, w) = p[i.index(p.len())].clone();
                    if let Some(d) = e.s.tasks()[&key].spec.deps.first().cloned() {
                        e.ev(Event::DataMissing { worker: w, key, missing: d });
                    }
                }
                Message::Lose(i) => {
                    let ws: Vec<WorkerId> = e.s.workers().keys().copied().collect();
                    if !ws.is_empty() {
                        e.ev(Event::WorkerLost { worker: ws[i.index(ws.len())] });
                        e.worker(next_worker, 2);
                        next_worker += 1;
                    }
                }
                Message::Heartbeat { worker, paused } => {
                    let ws: Vec<WorkerId> = e.s.workers().keys().copied().collect();
                    if !ws.is_empty() {
                        e.ev(Event::Heartbeat { worker: ws[worker.index(ws.len())], memory: 0, paused });
                    }
                }
                _ => {}
            }
        }
        // Faults stop, paused workers resume: everything processing drains.
        let ws: Vec<WorkerId> = e.s.workers().keys().copied().collect();
        for w in ws {
            e.ev(Event::Heartbeat { worker: w, memory: 0, paused: false });
        }
        for _ in 0..1_000 {
            let p = processing(&e);
            let Some((key, w)) = p.first().cloned() else { break };
            e.ev(Event::TaskFinished { worker: w, key, nbytes: 8, micros: 0 });
        }
        prop_assert!(processing(&e).is_empty(), "tasks still processing: {:?}", processing(&e));
    }
}

#[test]
fn scattering_over_a_queued_key_is_refused_and_release_forgets_cleanly() {
    // The crash the review found: scatter a key that is queued, then release it.
    let mut e = Env::new();
    e.submit(vec![spec("a", &[])], &["a"]); // no worker yet: a stays queued
    let out = e.ev(Event::DataScattered { client: C, key: k("a"), worker: WorkerId(7), nbytes: 8 });
    assert!(matches!(&out[..], [Command::Reject { .. }]), "{out:?}");
    e.worker(1, 1);
    let out = e.ev(Event::DataScattered { client: C, key: k("a"), worker: WorkerId(1), nbytes: 8 });
    assert!(
        out.iter().any(
            |c| matches!(c, Command::Reject { error, .. } if error.contains("already names a task"))
        ),
        "{out:?}"
    );
    e.ev(Event::ClientReleased { client: C, keys: vec![k("a")] });
    e.worker(2, 1);
    assert!(
        e.s.tasks().is_empty()
            || e.s.tasks().values().all(|t| !matches!(t.state, TaskState::Queued))
    );
}

#[test]
fn a_key_reused_with_other_content_is_refused_not_merged() {
    let mut e = Env::new();
    e.worker(1, 1);
    e.submit(vec![spec("a", &[])], &["a"]);
    let mut other = spec("a", &[]);
    other.payload = Arc::new(vec![1]);
    let out = e.submit(vec![other], &["a"]);
    assert!(
        matches!(&out[..], [Command::Reject { error, .. }] if error.contains("already in the graph as another task")),
        "{out:?}"
    );
    // The same content again is fine (a shared prefix of two searches).
    let out = e.submit(vec![spec("a", &[])], &["a"]);
    assert!(!out.iter().any(|c| matches!(c, Command::Reject { .. })), "{out:?}");
}
