//! The worker state machine without any I/O: events in, exact commands out,
//! invariants checked after every step; then random event sequences against
//! a model of the shell that holds the bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use rask_core::Key;
use rask_distributed::scheduler::{FailureCause, TaskFailure};
use rask_distributed::worker::*;

use WorkerCommand as C;

const P: &str = "127.0.0.1:9001";
const Q: &str = "127.0.0.1:9002";

fn k(name: &str) -> Key {
    Key::named(name)
}

struct Env {
    s: WorkerState,
    now: u64,
}

impl Env {
    fn new() -> Self {
        Env::with(WorkerStateConfig { name: "w".into(), nthreads: 2, ..Default::default() })
    }

    fn with(config: WorkerStateConfig) -> Self {
        Env { s: WorkerState::new(config), now: 0 }
    }

    fn ev(&mut self, e: WorkerEvent) -> Vec<WorkerCommand> {
        self.now += 1;
        let out = self.s.handle(e, self.now);
        self.s.check_invariants().unwrap_or_else(|v| panic!("invariant broken: {v}"));
        out
    }

    fn compute_p(&mut self, key: &str, deps: &[(&str, &str)], priority: i32) -> Vec<WorkerCommand> {
        self.ev(WorkerEvent::Compute {
            key: k(key),
            op: "inc".into(),
            payload: Arc::new(vec![]),
            deps: deps.iter().map(|(d, from)| (k(d), from.to_string())).collect(),
            priority,
        })
    }

    fn compute(&mut self, key: &str, deps: &[(&str, &str)]) -> Vec<WorkerCommand> {
        self.compute_p(key, deps, 0)
    }

    fn done(&mut self, key: &str, nbytes: u64) -> Vec<WorkerCommand> {
        self.ev(WorkerEvent::ExecuteDone { key: k(key), nbytes })
    }

    fn arrived(&mut self, key: &str, nbytes: u64) -> Vec<WorkerCommand> {
        self.ev(WorkerEvent::DataArrived { key: k(key), nbytes })
    }

    fn put(&mut self, key: &str, nbytes: u64) -> Vec<WorkerCommand> {
        self.ev(WorkerEvent::Put { key: k(key), nbytes })
    }

    fn fetch_failed(&mut self, key: &str, from: &str) -> Vec<WorkerCommand> {
        self.ev(WorkerEvent::FetchFailed { key: k(key), from: from.into(), message: "gone".into() })
    }

    fn free(&mut self, keys: &[&str]) -> Vec<WorkerCommand> {
        self.ev(WorkerEvent::Free { keys: keys.iter().map(|x| k(x)).collect() })
    }

    fn state_of(&self, key: &str) -> Option<&'static str> {
        self.s.data().get(&k(key)).map(|d| d.state.name())
    }
}

fn exec(key: &str, deps: &[&str]) -> WorkerCommand {
    C::Execute {
        key: k(key),
        op: Arc::from("inc"),
        payload: Arc::new(vec![]),
        deps: deps.iter().map(|d| k(d)).collect(),
    }
}

fn fetch(key: &str, from: &str) -> WorkerCommand {
    C::Fetch { key: k(key), from: from.into() }
}

fn finished(key: &str, nbytes: u64) -> WorkerCommand {
    C::TaskFinished { key: k(key), nbytes }
}

fn drop_(key: &str) -> WorkerCommand {
    C::Drop { key: k(key) }
}

fn spill(key: &str) -> WorkerCommand {
    C::Spill { key: k(key) }
}

#[test]
fn a_task_without_inputs_runs_at_once_and_reports() {
    let mut e = Env::new();
    assert_eq!(e.compute("a", &[]), vec![exec("a", &[])]);
    assert_eq!(e.done("a", 8), vec![finished("a", 8)]);
    assert_eq!(e.s.memory(), 8);
    assert!(e.s.tasks().is_empty());
    let story: Vec<(&str, &str)> = e.s.story(&k("a")).iter().map(|t| (t.from, t.to)).collect();
    assert_eq!(
        story,
        vec![
            ("new", "ready"),
            ("ready", "executing"),
            ("executing", "finished"),
            ("new", "memory")
        ]
    );
}

#[test]
fn local_inputs_need_no_fetch() {
    let mut e = Env::new();
    assert_eq!(e.put("x", 10), vec![]);
    assert_eq!(e.compute("a", &[("x", P)]), vec![exec("a", &["x"])]);
}

#[test]
fn remote_inputs_are_fetched_then_the_task_runs() {
    let mut e = Env::new();
    assert_eq!(e.compute("a", &[("x", P), ("y", Q)]), vec![fetch("x", P), fetch("y", Q)]);
    assert_eq!(e.s.tasks()[&k("a")].state, WorkerTaskState::Waiting { missing: 2 });
    assert_eq!(e.arrived("x", 5), vec![]);
    assert_eq!(e.arrived("y", 5), vec![exec("a", &["x", "y"])]);
    // No task waits for the copies any more: they are in the bounded cache.
    assert_eq!(e.s.fetch_cache_bytes(), 10);
    assert_eq!(e.s.memory(), 0, "fetched copies are not managed memory");
}

#[test]
fn two_tasks_needing_one_remote_value_fetch_it_once() {
    let mut e = Env::new();
    assert_eq!(e.compute("a", &[("x", P)]), vec![fetch("x", P)]);
    assert_eq!(e.compute("b", &[("x", P)]), vec![]);
    assert_eq!(e.arrived("x", 5), vec![exec("a", &["x"]), exec("b", &["x"])]);
}

#[test]
fn an_input_listed_twice_is_fetched_and_passed_once() {
    let mut e = Env::new();
    assert_eq!(e.compute("a", &[("x", P), ("x", P)]), vec![fetch("x", P)]);
    assert_eq!(e.arrived("x", 5), vec![exec("a", &["x"])]);
}

#[test]
fn a_failed_fetch_reports_data_missing_and_drops_the_task() {
    let mut e = Env::new();
    assert_eq!(e.compute("a", &[("x", P), ("y", Q)]), vec![fetch("x", P), fetch("y", Q)]);
    let out = e.ev(WorkerEvent::FetchFailed {
        key: k("x"),
        from: P.into(),
        message: "connection refused".into(),
    });
    assert_eq!(out, vec![C::DataMissing { key: k("a"), missing: k("x") }]);
    assert!(e.s.tasks().is_empty());
    // The other input still arrives, into the cache; a retry fetches only x.
    assert_eq!(e.arrived("y", 5), vec![]);
    assert_eq!(e.compute("a", &[("x", Q), ("y", Q)]), vec![fetch("x", Q)]);
}

#[test]
fn a_failed_fetch_asks_the_next_holder_a_task_named() {
    let mut e = Env::new();
    assert_eq!(e.compute("a", &[("x", P)]), vec![fetch("x", P)]);
    assert_eq!(e.compute("b", &[("x", Q)]), vec![], "joins the fetch; Q is kept in reserve");
    assert_eq!(e.fetch_failed("x", P), vec![fetch("x", Q)], "not missing: Q may have it");
    assert_eq!(e.s.tasks()[&k("b")].state, WorkerTaskState::Waiting { missing: 1 });
    assert_eq!(e.arrived("x", 5), vec![exec("a", &["x"]), exec("b", &["x"])]);
}

#[test]
fn data_is_missing_once_every_holder_named_failed() {
    let mut e = Env::new();
    assert_eq!(e.compute("a", &[("x", P)]), vec![fetch("x", P)]);
    assert_eq!(e.compute("b", &[("x", Q)]), vec![]);
    assert_eq!(e.compute("c", &[("x", Q)]), vec![]);
    assert_eq!(e.compute("d", &[("x", P), ("y", Q)]), vec![fetch("y", Q)]);
    assert_eq!(e.fetch_failed("x", P), vec![fetch("x", Q)], "P is not asked again, Q once");
    let missing = |t: &str| C::DataMissing { key: k(t), missing: k("x") };
    assert_eq!(
        e.fetch_failed("x", Q),
        vec![missing("a"), missing("b"), missing("c"), missing("d")],
        "in the order the tasks came"
    );
    assert!(e.s.tasks().is_empty());
    assert_eq!(e.arrived("y", 5), vec![], "into the cache");
}

#[test]
fn a_failure_of_an_earlier_fetch_does_not_fail_the_current_one() {
    let mut e = Env::new();
    assert_eq!(e.compute("t", &[("x", P)]), vec![fetch("x", P)]);
    assert_eq!(e.compute("x", &[]), vec![exec("x", &[])]);
    assert_eq!(e.done("x", 8), vec![finished("x", 8), exec("t", &["x"])]);
    assert_eq!(e.free(&["x"]), vec![drop_("x")]);
    // Needed again while the fetch from P is still out: asked from Q this time.
    assert_eq!(e.compute("u", &[("x", Q)]), vec![fetch("x", Q)]);
    assert_eq!(e.fetch_failed("x", P), vec![], "the fetch from Q is still out");
    assert_eq!(e.arrived("x", 8), vec![exec("u", &["x"])]);
}

#[test]
fn without_a_log_no_story_is_kept() {
    let mut e = Env::with(WorkerStateConfig { log_capacity: 0, ..Default::default() });
    e.compute("t", &[("x", P)]);
    e.arrived("x", 4);
    assert_eq!(e.done("t", 1), vec![finished("t", 1)]);
    assert!(e.s.story(&k("t")).is_empty() && e.s.story(&k("x")).is_empty());
}

#[test]
fn an_input_without_a_holder_is_missing_at_once() {
    let mut e = Env::new();
    let out = e.compute("a", &[("y", P), ("x", "")]);
    assert_eq!(out, vec![C::DataMissing { key: k("a"), missing: k("x") }]);
    assert!(e.s.tasks().is_empty() && e.s.data().is_empty(), "nothing fetched, nothing kept");
}

#[test]
fn one_thread_runs_one_task_at_a_time_in_arrival_order() {
    let mut e = Env::with(WorkerStateConfig { nthreads: 1, ..Default::default() });
    assert_eq!(e.compute("a", &[]), vec![exec("a", &[])]);
    assert_eq!(e.compute("b", &[]), vec![]);
    assert_eq!(e.compute("c", &[]), vec![]);
    assert_eq!(e.done("a", 1), vec![finished("a", 1), exec("b", &[])]);
    assert_eq!(e.done("b", 1), vec![finished("b", 1), exec("c", &[])]);
}

#[test]
fn higher_priority_runs_first() {
    let mut e = Env::with(WorkerStateConfig { nthreads: 1, ..Default::default() });
    assert_eq!(e.compute("a", &[]), vec![exec("a", &[])]);
    assert_eq!(e.compute_p("b", &[], 0), vec![]);
    assert_eq!(e.compute_p("c", &[], 5), vec![]);
    assert_eq!(e.done("a", 1), vec![finished("a", 1), exec("c", &[])]);
}

#[test]
fn paused_above_the_pause_threshold_until_memory_drops() {
    let mut e = Env::with(WorkerStateConfig { pause_bytes: 100, ..Default::default() });
    assert_eq!(e.put("x", 150), vec![]);
    assert!(e.s.paused());
    assert_eq!(e.compute("a", &[]), vec![], "nothing starts while paused");
    assert_eq!(e.free(&["x"]), vec![drop_("x"), exec("a", &[])]);
    assert!(!e.s.paused());
}

#[test]
fn spills_least_recently_used_first() {
    let mut e = Env::with(WorkerStateConfig { target_bytes: 100, ..Default::default() });
    assert_eq!(e.put("a", 40), vec![]);
    assert_eq!(e.put("b", 40), vec![]);
    assert_eq!(e.ev(WorkerEvent::Served { key: k("a") }), vec![], "a is now more recent");
    assert_eq!(e.put("c", 40), vec![spill("b")]);
    assert_eq!(e.s.memory(), 80);
    assert_eq!(e.put("d", 50), vec![spill("a")], "c (40) and d (50) fit");
    assert_eq!((e.state_of("a"), e.state_of("d")), (Some("disk"), Some("memory")));
    // A spilled value is still local: a task uses it without fetching.
    assert_eq!(e.compute("t", &[("b", P)]), vec![exec("t", &["b"])]);
}

#[test]
fn a_failed_spill_keeps_the_value_in_memory() {
    let mut e = Env::with(WorkerStateConfig { target_bytes: 100, ..Default::default() });
    assert_eq!(e.put("a", 80), vec![]);
    assert_eq!(e.put("b", 80), vec![spill("a")]);
    let out = e.ev(WorkerEvent::SpillFailed { key: k("a"), message: "disk full".into() });
    assert_eq!(out, vec![], "no new spill in answer to a failed one");
    assert_eq!((e.s.memory(), e.state_of("a")), (160, Some("memory")));
    // Next time the least recently used is b (a came back to memory last).
    assert_eq!(e.put("c", 10), vec![spill("b")]);
}

#[test]
fn freeing_values_in_memory_and_on_disk_drops_them() {
    let mut e = Env::with(WorkerStateConfig { target_bytes: 100, ..Default::default() });
    e.put("a", 80);
    assert_eq!(e.put("b", 80), vec![spill("a")]);
    assert_eq!(e.free(&["a", "b", "unknown"]), vec![drop_("a"), drop_("b")]);
    assert_eq!(e.s.memory(), 0);
    assert!(e.s.data().is_empty());
}

#[test]
fn freeing_a_value_in_flight_lets_the_fetch_finish() {
    let mut e = Env::new();
    assert_eq!(e.compute("t", &[("x", P)]), vec![fetch("x", P)]);
    assert_eq!(e.free(&["x"]), vec![]);
    assert_eq!(e.arrived("x", 5), vec![exec("t", &["x"])]);
}

#[test]
fn freeing_an_input_a_ready_task_needs_keeps_it_until_the_task_starts() {
    let mut e = Env::with(WorkerStateConfig { nthreads: 1, ..Default::default() });
    e.put("x", 10);
    assert_eq!(e.compute("a", &[]), vec![exec("a", &[])]);
    assert_eq!(e.compute("b", &[("x", P)]), vec![]);
    assert_eq!(e.free(&["x"]), vec![], "b still needs x");
    assert_eq!(e.done("a", 1), vec![finished("a", 1), exec("b", &["x"]), drop_("x")]);
}

#[test]
fn freeing_a_running_task_drops_its_result_unreported() {
    let mut e = Env::new();
    assert_eq!(e.compute("a", &[]), vec![exec("a", &[])]);
    assert_eq!(e.free(&["a"]), vec![]);
    assert_eq!(e.s.tasks()[&k("a")].state, WorkerTaskState::Cancelled);
    assert_eq!(e.done("a", 8), vec![drop_("a")]);
    assert_eq!(e.s.executing(), 0);
    assert!(e.s.data().is_empty());
}

#[test]
fn a_freed_running_task_computed_again_reports_once() {
    let mut e = Env::new();
    e.compute("a", &[]);
    e.free(&["a"]);
    assert_eq!(e.compute("a", &[]), vec![], "the run in progress serves");
    assert_eq!(e.done("a", 8), vec![finished("a", 8)]);
}

#[test]
fn freeing_a_waiting_task_forgets_it_and_its_copy_goes_to_the_cache() {
    let mut e = Env::new();
    assert_eq!(e.compute("a", &[("x", P)]), vec![fetch("x", P)]);
    assert_eq!(e.free(&["a"]), vec![]);
    assert!(e.s.tasks().is_empty());
    assert_eq!(e.arrived("x", 7), vec![]);
    assert_eq!(e.s.fetch_cache_bytes(), 7);
}

#[test]
fn steal_of_a_waiting_task_gives_it_back() {
    let mut e = Env::new();
    e.compute("a", &[("x", P)]);
    let out = e.ev(WorkerEvent::Steal { key: k("a") });
    assert_eq!(out, vec![C::StealResponse { key: k("a"), stolen: true }]);
    assert!(e.s.tasks().is_empty());
}

#[test]
fn steal_of_a_ready_task_gives_it_back() {
    let mut e = Env::with(WorkerStateConfig { nthreads: 1, ..Default::default() });
    e.compute("a", &[]);
    assert_eq!(e.compute("b", &[]), vec![]);
    let out = e.ev(WorkerEvent::Steal { key: k("b") });
    assert_eq!(out, vec![C::StealResponse { key: k("b"), stolen: true }]);
    assert_eq!(e.done("a", 1), vec![finished("a", 1)], "b does not run here");
}

#[test]
fn steal_of_an_executing_task_is_refused() {
    let mut e = Env::new();
    e.compute("a", &[]);
    let out = e.ev(WorkerEvent::Steal { key: k("a") });
    assert_eq!(out, vec![C::StealResponse { key: k("a"), stolen: false }]);
    assert_eq!(e.done("a", 1), vec![finished("a", 1)]);
}

#[test]
fn a_duplicate_compute_runs_once() {
    let mut e = Env::new();
    assert_eq!(e.compute("a", &[]), vec![exec("a", &[])]);
    assert_eq!(e.compute("a", &[]), vec![]);
    assert_eq!(e.done("a", 3), vec![finished("a", 3)]);
    assert_eq!(e.compute("a", &[]), vec![finished("a", 3)], "already here: reported at once");
}

#[test]
fn a_fetched_copy_computed_here_again_is_promoted() {
    let mut e = Env::new();
    e.compute("t", &[("x", P)]);
    e.arrived("x", 4);
    assert_eq!(e.compute("x", &[]), vec![finished("x", 4)]);
    assert_eq!((e.state_of("x"), e.s.memory(), e.s.fetch_cache_bytes()), (Some("memory"), 4, 0));
}

#[test]
fn an_execution_failure_is_reported() {
    let mut e = Env::new();
    e.compute("a", &[]);
    let out = e.ev(WorkerEvent::ExecuteFailed {
        key: k("a"),
        message: "boom".into(),
        cause: FailureCause::Error,
    });
    let failure = TaskFailure {
        key: k("a"),
        op: "inc".into(),
        message: "boom".into(),
        worker: Some("w".into()),
        kind: FailureCause::Error,
    };
    assert_eq!(out, vec![C::TaskFailed { key: k("a"), failure }]);
    assert!(e.s.tasks().is_empty() && e.s.data().is_empty());
}

#[test]
fn the_fetch_cache_keeps_within_its_bound_least_recently_used_out() {
    let mut e =
        Env::with(WorkerStateConfig { nthreads: 2, fetch_cache_bytes: 100, ..Default::default() });
    e.compute("t1", &[("x", P)]);
    assert_eq!(e.arrived("x", 60), vec![exec("t1", &["x"])]);
    e.compute("t2", &[("y", P)]);
    assert_eq!(e.arrived("y", 60), vec![exec("t2", &["y"]), drop_("x")]);
    assert_eq!(e.s.fetch_cache_bytes(), 60);
    // A copy larger than the whole cache is used, then dropped.
    e.done("t1", 1);
    e.compute("t3", &[("z", P)]);
    assert_eq!(e.arrived("z", 150), vec![exec("t3", &["z"]), drop_("z")]);
}

#[test]
fn dropping_the_cache_keeps_the_copies_tasks_wait_for() {
    let mut e = Env::with(WorkerStateConfig { nthreads: 1, ..Default::default() });
    e.compute("t1", &[("x", P)]);
    assert_eq!(e.arrived("x", 60), vec![exec("t1", &["x"])]);
    e.done("t1", 1);
    assert_eq!(e.s.fetch_cache_bytes(), 60, "x is cached once t1 is done");
    assert_eq!(e.compute("a", &[]), vec![exec("a", &[])]);
    e.compute("b", &[("y", P)]);
    assert_eq!(e.arrived("y", 50), vec![], "b waits for the thread; y is pinned");
    assert_eq!(e.ev(WorkerEvent::DropCache), vec![drop_("x")]);
    assert_eq!(e.s.fetch_cache_bytes(), 0);
    assert!(e.done("a", 1).contains(&exec("b", &["y"])), "y is still here for b");
}

#[test]
fn copies_tasks_wait_for_are_never_evicted() {
    let mut e =
        Env::with(WorkerStateConfig { nthreads: 1, fetch_cache_bytes: 10, ..Default::default() });
    assert_eq!(e.compute("a", &[]), vec![exec("a", &[])]);
    e.compute("b", &[("x", P)]);
    assert_eq!(e.arrived("x", 50), vec![], "b is ready, no slot; x stays over the bound");
    assert_eq!(e.s.fetch_cache_bytes(), 0, "pinned copies are not cache");
    assert_eq!(e.done("a", 1), vec![finished("a", 1), exec("b", &["x"]), drop_("x")]);
}

#[test]
fn live_values_are_bounded_least_recently_used_out() {
    let mut e = Env::with(WorkerStateConfig { live_bytes: 100, ..Default::default() });
    e.compute("a", &[]);
    assert_eq!(e.done("a", 60), vec![finished("a", 60)]);
    e.compute("b", &[]);
    assert_eq!(e.done("b", 60), vec![finished("b", 60), C::DropValue { key: k("a") }]);
    e.compute("c", &[]);
    assert_eq!(e.done("c", 150), vec![finished("c", 150), C::DropValue { key: k("c") }]);
    assert!(e.s.data()[&k("b")].live && !e.s.data()[&k("a")].live);
}

#[test]
fn closing_accepts_no_new_task_but_finishes_running_ones() {
    let mut e = Env::new();
    assert_eq!(e.compute("a", &[]), vec![exec("a", &[])]);
    assert_eq!(e.ev(WorkerEvent::Closing), vec![]);
    assert_eq!(e.compute("b", &[]), vec![]);
    assert_eq!(e.done("a", 2), vec![finished("a", 2)]);
    assert!(e.s.tasks().is_empty());
}

#[test]
fn measured_process_memory_spills_and_pauses() {
    let mut e =
        Env::with(WorkerStateConfig { target_bytes: 100, pause_bytes: 200, ..Default::default() });
    assert_eq!(e.put("a", 50), vec![]);
    assert_eq!(e.ev(WorkerEvent::MemoryMeasured { process: 300 }), vec![spill("a")]);
    assert!(e.s.paused());
    assert_eq!(e.compute("b", &[]), vec![]);
    assert_eq!(e.ev(WorkerEvent::MemoryMeasured { process: 10 }), vec![exec("b", &[])]);
}

#[test]
fn a_task_run_here_while_its_copy_is_in_flight_wins() {
    let mut e = Env::new();
    assert_eq!(e.compute("t", &[("a", P)]), vec![fetch("a", P)]);
    assert_eq!(e.compute("a", &[]), vec![exec("a", &[])]);
    assert_eq!(e.done("a", 8), vec![finished("a", 8), exec("t", &["a"])]);
    assert_eq!(e.arrived("a", 8), vec![], "the shell kept its own bytes");
    assert_eq!(e.state_of("a"), Some("memory"));
}

#[test]
fn a_copy_arriving_after_its_value_was_freed_is_dropped() {
    let mut e = Env::new();
    e.compute("t", &[("x", P)]);
    e.compute("x", &[]);
    assert_eq!(e.done("x", 8), vec![finished("x", 8), exec("t", &["x"])]);
    assert_eq!(e.free(&["x"]), vec![drop_("x")]);
    assert_eq!(e.arrived("x", 8), vec![drop_("x")]);
    assert!(e.s.data().is_empty());
}

// ---------------------------------------------------------------- properties

const KEYS: usize = 8;

fn key(i: usize) -> Key {
    k(&format!("k{i}"))
}

/// Every copy of a key has the same content, so the same size.
fn size(i: usize) -> u64 {
    10 + 17 * i as u64
}

fn index_of(key: &Key) -> usize {
    (0..KEYS).find(|i| &self::key(*i) == key).expect("pool key")
}

#[derive(Debug, Clone)]
enum Step {
    Compute { key: usize, deps: Vec<usize>, holder: u8, priority: i32 },
    Arrive(prop::sample::Index),
    FetchFail(prop::sample::Index),
    Done(prop::sample::Index),
    Fail(prop::sample::Index),
    Put(usize),
    Free(Vec<usize>),
    Steal(usize),
    Served(usize),
    Measure(u64),
    SpillDone(prop::sample::Index),
    SpillsFail,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        10 => (0..KEYS, prop::collection::vec(0..KEYS, 0..3), 0u8..10, 0i32..3).prop_map(
            |(key, deps, holder, priority)| Step::Compute { key, deps, holder, priority }
        ),
        5 => any::<prop::sample::Index>().prop_map(Step::Arrive),
        2 => any::<prop::sample::Index>().prop_map(Step::FetchFail),
        5 => any::<prop::sample::Index>().prop_map(Step::Done),
        1 => any::<prop::sample::Index>().prop_map(Step::Fail),
        2 => (0..KEYS).prop_map(Step::Put),
        2 => prop::collection::vec(0..KEYS, 1..3).prop_map(Step::Free),
        1 => (0..KEYS).prop_map(Step::Steal),
        1 => (0..KEYS).prop_map(Step::Served),
        1 => (0u64..300).prop_map(Step::Measure),
        3 => any::<prop::sample::Index>().prop_map(Step::SpillDone),
        1 => Just(Step::SpillsFail),
    ]
}

/// Pausing only with a spill target: then spilling always brings memory back
/// under the pause threshold once measured memory is low, so every task ends.
fn config() -> impl Strategy<Value = WorkerStateConfig> {
    (1usize..4, prop::option::of(60u64..200), prop::option::of(100u64..400), 0u64..120, 0u64..120)
        .prop_map(|(nthreads, target, pause_extra, cache, live)| WorkerStateConfig {
            name: "w".into(),
            nthreads,
            target_bytes: target.unwrap_or(0),
            pause_bytes: match (target, pause_extra) {
                (Some(t), Some(x)) => t + 50 + x,
                _ => 0,
            },
            fetch_cache_bytes: cache,
            live_bytes: live,
            log_capacity: 50,
        })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Where {
    Memory,
    /// In memory, being written to disk.
    Spilling,
    Disk,
}

/// A model of the shell: what it holds, what runs, which fetches and spill
/// writes are out, and which keys the scheduler awaits a report for.
///
/// As the real shell, it stores the bytes an event brings only when it hands
/// that event to the state machine: a `Drop` carried out before then would
/// lose them, and `agrees` would see the state machine count on bytes the
/// shell does not have.
#[derive(Default)]
struct Shell {
    held: BTreeMap<Key, Where>,
    values: BTreeSet<Key>,
    fetches: Vec<(Key, String)>,
    running: Vec<Key>,
    spills: Vec<Key>,
    spills_fail: bool,
    closing: bool,
    /// The report ledger: keys with an accepted Compute and no report yet
    /// (one report is owed, however many Computes; none once freed or stolen).
    owed: BTreeSet<Key>,
}

impl Shell {
    /// What the shell does as it hands `e` to the state machine.
    fn deliver(&mut self, e: &WorkerEvent) {
        match e {
            WorkerEvent::DataArrived { key, .. } | WorkerEvent::Put { key, .. } => {
                self.store(key, false)
            }
            WorkerEvent::ExecuteDone { key, .. } => self.store(key, true),
            WorkerEvent::Compute { key, .. } if !self.closing => {
                self.owed.insert(key.clone());
            }
            WorkerEvent::Free { keys } => {
                for k in keys {
                    self.owed.remove(k);
                }
            }
            WorkerEvent::Closing => self.closing = true,
            _ => {}
        }
    }

    fn store(&mut self, key: &Key, value: bool) {
        self.held.entry(key.clone()).or_insert(Where::Memory);
        if value {
            self.values.insert(key.clone());
        }
    }

    fn report(&mut self, key: &Key, what: &str) -> Result<(), String> {
        if self.owed.remove(key) {
            Ok(())
        } else {
            Err(format!("{what} of {key}, which no accepted Compute awaits (a second report?)"))
        }
    }

    /// Carries out commands as the real shell does.
    fn carry_out(&mut self, s: &WorkerState, cmds: Vec<WorkerCommand>) -> Result<(), String> {
        for c in cmds {
            match c {
                C::Fetch { key, from } => {
                    if self.held.contains_key(&key) {
                        return Err(format!("fetch of {key}, which is here"));
                    }
                    if from.is_empty() {
                        return Err(format!("fetch of {key} from nowhere"));
                    }
                    self.fetches.push((key, from));
                }
                C::Execute { key, deps, .. } => {
                    if let Some(d) = deps.iter().find(|d| !self.held.contains_key(*d)) {
                        return Err(format!("{key} executed before its input {d} is here"));
                    }
                    if self.running.contains(&key) {
                        return Err(format!("{key} executed twice at once"));
                    }
                    if s.paused() {
                        return Err(format!("{key} executed while paused"));
                    }
                    self.running.push(key);
                }
                C::Spill { key } => match self.held.get(&key) {
                    Some(Where::Memory) => {
                        self.held.insert(key.clone(), Where::Spilling);
                        self.spills.push(key);
                    }
                    other => return Err(format!("spill of {key} held as {other:?}")),
                },
                C::Drop { key } => {
                    self.held.remove(&key);
                    self.values.remove(&key);
                    // A write still out finds the value gone and discards its file.
                    self.spills.retain(|k| *k != key);
                }
                C::DropValue { key } => {
                    self.values.remove(&key);
                }
                C::TaskFinished { key, nbytes } => {
                    if !self.held.contains_key(&key) {
                        return Err(format!("{key} reported finished but not held"));
                    }
                    if nbytes != size(index_of(&key)) {
                        return Err(format!("{key} reported with {nbytes} bytes"));
                    }
                    self.report(&key, "TaskFinished")?;
                }
                C::TaskFailed { key, .. } => self.report(&key, "TaskFailed")?,
                C::DataMissing { key, .. } => self.report(&key, "DataMissing")?,
                C::StealResponse { key, stolen } => {
                    if stolen {
                        self.owed.remove(&key);
                    }
                }
            }
        }
        Ok(())
    }

    /// The shell holds bytes exactly for the values the state machine says are
    /// here, on disk (or being written) exactly when it says so, in-process
    /// values exactly for the live ones, runs exactly its executing tasks, has
    /// a fetch out from the holder asked for each value in flight, and owes a
    /// report exactly for the tasks not cancelled.
    fn agrees(&self, s: &WorkerState) -> Result<(), String> {
        let local: BTreeMap<Key, Where> = s
            .data()
            .iter()
            .filter_map(|(k, d)| match d.state {
                DataState::Flight { .. } => None,
                DataState::Disk { .. } => Some((k.clone(), Where::Disk)),
                DataState::Fetched { .. } | DataState::Memory { .. } => {
                    Some((k.clone(), Where::Memory))
                }
            })
            .collect();
        let held: BTreeMap<Key, Where> = self
            .held
            .iter()
            .map(|(k, w)| (k.clone(), if *w == Where::Spilling { Where::Disk } else { *w }))
            .collect();
        if local != held {
            return Err(format!("state machine {local:?}, shell {:?}", self.held));
        }
        let live: BTreeSet<Key> =
            s.data().iter().filter(|(_, d)| d.live).map(|(k, _)| k.clone()).collect();
        if live != self.values {
            return Err(format!("live {live:?}, shell values {:?}", self.values));
        }
        let mut executing: Vec<Key> = s
            .tasks()
            .iter()
            .filter(|(_, t)| {
                matches!(t.state, WorkerTaskState::Executing | WorkerTaskState::Cancelled)
            })
            .map(|(k, _)| k.clone())
            .collect();
        executing.sort();
        let mut running = self.running.clone();
        running.sort();
        if executing != running {
            return Err(format!("executing {executing:?}, running {running:?}"));
        }
        for (k, d) in s.data() {
            if let DataState::Flight { from, .. } = &d.state {
                if !self.fetches.iter().any(|(f, a)| f == k && a == from) {
                    return Err(format!("{k} in flight from {from} without a fetch from there"));
                }
            }
        }
        let awaited: BTreeSet<Key> = s
            .tasks()
            .iter()
            .filter(|(_, t)| t.state != WorkerTaskState::Cancelled)
            .map(|(k, _)| k.clone())
            .collect();
        if awaited != self.owed {
            return Err(format!("tasks awaited {awaited:?}, reports owed {:?}", self.owed));
        }
        Ok(())
    }
}

fn event_for(shell: &mut Shell, st: Step) -> Option<WorkerEvent> {
    fn pick<T>(v: &mut Vec<T>, i: prop::sample::Index) -> Option<T> {
        (!v.is_empty()).then(|| v.swap_remove(i.index(v.len())))
    }
    Some(match st {
        Step::Compute { key: i, deps, holder, priority } => {
            let deps = deps
                .into_iter()
                .filter(|d| *d != i)
                .map(|d| {
                    let from = match holder {
                        0 => String::new(),
                        h if h % 2 == 1 => P.to_string(),
                        _ => Q.to_string(),
                    };
                    (key(d), from)
                })
                .collect();
            WorkerEvent::Compute {
                key: key(i),
                op: "inc".into(),
                payload: Arc::new(vec![]),
                deps,
                priority,
            }
        }
        Step::Arrive(i) => {
            let (key, _) = pick(&mut shell.fetches, i)?;
            WorkerEvent::DataArrived { nbytes: size(index_of(&key)), key }
        }
        Step::FetchFail(i) => {
            let (key, from) = pick(&mut shell.fetches, i)?;
            WorkerEvent::FetchFailed { key, from, message: "gone".into() }
        }
        Step::Done(i) => {
            let key = pick(&mut shell.running, i)?;
            WorkerEvent::ExecuteDone { nbytes: size(index_of(&key)), key }
        }
        Step::Fail(i) => {
            let key = pick(&mut shell.running, i)?;
            WorkerEvent::ExecuteFailed { key, message: "boom".into(), cause: FailureCause::Error }
        }
        Step::Put(i) => WorkerEvent::Put { key: key(i), nbytes: size(i) },
        Step::Free(keys) => WorkerEvent::Free { keys: keys.into_iter().map(key).collect() },
        Step::Steal(i) => WorkerEvent::Steal { key: key(i) },
        Step::Served(i) => WorkerEvent::Served { key: key(i) },
        Step::Measure(process) => WorkerEvent::MemoryMeasured { process },
        Step::SpillDone(i) => {
            let key = pick(&mut shell.spills, i)?;
            return spill_done(shell, key);
        }
        Step::SpillsFail => {
            shell.spills_fail = !shell.spills_fail;
            return None;
        }
    })
}

/// A spill write finishes: the file replaces the bytes, or the failure is reported.
fn spill_done(shell: &mut Shell, key: Key) -> Option<WorkerEvent> {
    if shell.spills_fail {
        shell.held.insert(key.clone(), Where::Memory);
        Some(WorkerEvent::SpillFailed { key, message: "disk full".into() })
    } else {
        shell.held.insert(key, Where::Disk);
        None
    }
}

fn run(s: &mut WorkerState, shell: &mut Shell, event: WorkerEvent, now: u64) -> Result<(), String> {
    shell.deliver(&event);
    let out = s.handle(event, now);
    shell.carry_out(s, out)?;
    s.check_invariants()?;
    shell.agrees(s)
}

/// Runs random steps, then lets every spill write succeed, every fetch arrive
/// and every run finish; then no task may be left and no report owed.
fn random_sequence(
    config: WorkerStateConfig,
    steps: Vec<Step>,
    close_at: Option<usize>,
) -> Result<(), TestCaseError> {
    let mut s = WorkerState::new(config);
    let mut shell = Shell::default();
    let mut now = 0;
    for (i, st) in steps.into_iter().enumerate() {
        now += 1;
        if close_at == Some(i) {
            run(&mut s, &mut shell, WorkerEvent::Closing, now).map_err(TestCaseError::fail)?;
        }
        let Some(e) = event_for(&mut shell, st) else { continue };
        let desc = format!("{e:?}");
        run(&mut s, &mut shell, e, now)
            .map_err(|v| TestCaseError::fail(format!("after {desc}: {v}")))?;
    }
    // No more faults, and memory outside the managed values is low again.
    shell.spills_fail = false;
    now += 1;
    run(&mut s, &mut shell, WorkerEvent::MemoryMeasured { process: 0 }, now)
        .map_err(TestCaseError::fail)?;
    for _ in 0..1000 {
        now += 1;
        let e = if let Some(key) = shell.spills.pop() {
            spill_done(&mut shell, key);
            continue;
        } else if let Some((key, _)) = shell.fetches.pop() {
            WorkerEvent::DataArrived { nbytes: size(index_of(&key)), key }
        } else if let Some(key) = shell.running.pop() {
            WorkerEvent::ExecuteDone { nbytes: size(index_of(&key)), key }
        } else {
            break;
        };
        run(&mut s, &mut shell, e, now).map_err(TestCaseError::fail)?;
    }
    let left: Vec<&Key> = s.tasks().keys().collect();
    prop_assert!(left.is_empty(), "tasks left (paused: {}): {:?}", s.paused(), left);
    prop_assert!(shell.owed.is_empty(), "reports never sent: {:?}", shell.owed);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn random_event_sequences_keep_the_invariants(
        config in config(),
        steps in prop::collection::vec(step(), 0..80),
        close_at in prop::option::of(0usize..100),
    ) {
        random_sequence(config, steps, close_at)?;
    }
}
