use super::activity;
use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::Arc;

use rask_core::Key;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

/// A worker, as the scheduler numbers it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct WorkerId(pub u64);

/// A client session, as the scheduler numbers it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct ClientId(pub u64);

/// Why a task failed, as the client finally sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFailure {
    /// The task that failed first (for dependency failures: the root cause).
    pub key: Key,
    /// Its op.
    pub op: String,
    /// What went wrong.
    pub message: String,
    /// The worker it ran on, if any.
    pub worker: Option<String>,
    /// What kind of failure.
    pub kind: FailureCause,
}

/// Kinds of task failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureCause {
    /// The op returned an error.
    Error,
    /// The op panicked.
    Panic,
    /// Workers died while running it, too many times.
    KilledWorker,
    /// The worker could not decode its inputs or run its op.
    Worker,
}

impl FailureCause {
    /// A word for it (dashboards, logs).
    pub fn name(&self) -> &'static str {
        match self {
            FailureCause::Error => "error",
            FailureCause::Panic => "panic",
            FailureCause::KilledWorker => "killed worker",
            FailureCause::Worker => "worker",
        }
    }
}

impl fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            FailureCause::Error => "failed",
            FailureCause::Panic => "panicked",
            FailureCause::KilledWorker => "killed its workers",
            FailureCause::Worker => "could not run",
        };
        write!(f, "task {} (op `{}`) {what}", self.key, self.op)?;
        if let Some(w) = &self.worker {
            write!(f, " on worker {w}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// One task as a client submits it. The payload (op arguments) is opaque here.
#[derive(Clone, Debug)]
pub struct TaskSpec {
    /// The key.
    pub key: Key,
    /// Registered op name (`data` for scattered values).
    pub op: String,
    /// Encoded arguments, passed to the worker untouched.
    pub payload: Arc<Vec<u8>>,
    /// Keys this task needs.
    pub deps: Vec<Key>,
    /// User priority: higher runs first.
    pub priority: i32,
    /// Position in the client's static order (lower runs first within a graph).
    pub graph_order: u32,
    /// How many times a failing run is retried.
    pub retries: u32,
    /// Worker names or addresses the task may run on (empty = any).
    pub workers: Vec<String>,
    /// With `workers`: may still run elsewhere when none of them is available.
    pub allow_other_workers: bool,
    /// Abstract resources the task holds while running (`GPU` = 1).
    pub resources: Vec<(String, f64)>,
    /// Membership of a gang: tasks that start together on distinct workers
    /// and fail as a unit.
    pub gang: Option<Gang>,
}

/// A task's place in a gang: `size` tasks (ranks `0..size`, one submission)
/// that the scheduler starts together on `size` distinct workers, each with a
/// free thread, or not at all. They are never retried one by one: when a
/// member fails or its worker dies, the others are cancelled and every
/// member is erred, so the caller learns at once and may start a new gang.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Gang {
    /// Names the gang; unique among the gangs the scheduler holds.
    pub id: String,
    /// This member's rank, `0..size`.
    pub rank: u32,
    /// Members.
    pub size: u32,
}

/// Where a task is.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskState {
    /// Known, not scheduled (nobody asked, or its result was lost).
    Released,
    /// Waiting for `unfinished` dependencies to be in memory.
    Waiting {
        /// Dependencies not in memory yet.
        unfinished: usize,
    },
    /// Ready; waiting for a free worker slot.
    Queued,
    /// Running on a worker.
    Processing {
        /// The worker.
        worker: WorkerId,
    },
    /// Done; the value lives on a worker.
    Memory {
        /// The worker holding it.
        worker: WorkerId,
        /// Its size in bytes.
        nbytes: u64,
    },
    /// Failed for good.
    Erred {
        /// Why.
        failure: TaskFailure,
    },
}

impl TaskState {
    /// Its index in [`activity::STATES`].
    pub fn index(&self) -> usize {
        match self {
            TaskState::Released => 0,
            TaskState::Waiting { .. } => 1,
            TaskState::Queued => 2,
            TaskState::Processing { .. } => 3,
            TaskState::Memory { .. } => 4,
            TaskState::Erred { .. } => 5,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            TaskState::Released => "released",
            TaskState::Waiting { .. } => "waiting",
            TaskState::Queued => "queued",
            TaskState::Processing { .. } => "processing",
            TaskState::Memory { .. } => "memory",
            TaskState::Erred { .. } => "erred",
        }
    }
}

/// The scheduler's record of a task.
#[derive(Clone, Debug)]
pub struct SchedTask {
    /// What to run.
    pub spec: TaskSpec,
    /// Where it is.
    pub state: TaskState,
    /// Tasks that need this one.
    pub dependents: FxHashSet<Key>,
    /// Clients holding a future on it.
    pub who_wants: BTreeSet<ClientId>,
    /// Submission counter (FIFO between graphs).
    generation: u64,
    retries_left: u32,
    /// Workers that died while running it.
    pub suspicious: u32,
}

/// A worker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerStatus {
    /// Accepts tasks.
    Running,
    /// Over its memory pause threshold: runs nothing new.
    Paused,
    /// Leaving: gets no new tasks.
    Closing,
}

/// The scheduler's record of a worker.
#[derive(Clone, Debug)]
pub struct SchedWorker {
    /// Its id.
    pub id: WorkerId,
    /// Its name (`--name`, defaults to the address).
    pub name: String,
    /// Its data address (`host:port`).
    pub addr: String,
    /// Task slots.
    pub nthreads: usize,
    /// Memory limit in bytes (0 = none).
    pub memory_limit: u64,
    /// Running, paused or closing.
    pub status: WorkerStatus,
    /// Tasks assigned to it.
    pub processing: BTreeSet<Key>,
    /// Keys whose value it holds.
    pub has_what: FxHashSet<Key>,
    /// Ops it can run.
    pub ops: Arc<BTreeSet<String>>,
    /// Resources it offers.
    pub resources: BTreeMap<String, f64>,
    used_resources: BTreeMap<String, f64>,
    /// Last message time (ms).
    pub last_seen: u64,
    /// Last reported managed memory (bytes).
    pub memory: u64,
    /// Last reported figures for the dashboard.
    pub metrics: WorkerMetrics,
}

/// A worker's figures from its heartbeats, for the dashboard and `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WorkerMetrics {
    /// Process memory beyond the managed values (bytes).
    pub unmanaged: u64,
    /// Values spilled to disk (bytes).
    pub spilled: u64,
    /// Bytes fetched from peers since it started.
    pub bytes_in: u64,
    /// Bytes served to peers and clients since it started.
    pub bytes_out: u64,
    /// CPU use over the last heartbeat interval (percent of one core).
    pub cpu_percent: f64,
}

/// Inputs of the state machine.
#[derive(Clone, Debug)]
pub enum Event {
    /// A worker connected.
    WorkerJoined {
        /// Its id (chosen by the I/O layer).
        worker: WorkerId,
        /// Its name.
        name: String,
        /// Its data address.
        addr: String,
        /// Task slots.
        nthreads: usize,
        /// Memory limit (bytes, 0 = none).
        memory_limit: u64,
        /// Ops it knows.
        ops: Arc<BTreeSet<String>>,
        /// Resources it offers.
        resources: BTreeMap<String, f64>,
    },
    /// A worker disconnected or stopped answering; its data is gone.
    WorkerLost {
        /// Which.
        worker: WorkerId,
    },
    /// A worker announced it is leaving (no new tasks; its data stays until it goes).
    WorkerClosing {
        /// Which.
        worker: WorkerId,
    },
    /// A worker reported in.
    Heartbeat {
        /// Which.
        worker: WorkerId,
        /// Managed memory in bytes.
        memory: u64,
        /// Whether it paused itself (memory over the pause threshold).
        paused: bool,
    },
    /// A worker's figures for the dashboard (sent with its heartbeat).
    WorkerMetrics {
        /// Which.
        worker: WorkerId,
        /// The figures.
        metrics: WorkerMetrics,
        /// Its transfers and disk I/O since its last heartbeat.
        spans: Vec<activity::WorkerSpan>,
    },
    /// A client submitted tasks and asks for `wanted`.
    GraphSubmitted {
        /// Which client.
        client: ClientId,
        /// The tasks (dependencies first or in any order).
        tasks: Vec<TaskSpec>,
        /// Keys the client holds futures for.
        wanted: Vec<Key>,
    },
    /// A client placed a value on a worker itself (scatter).
    DataScattered {
        /// Which client.
        client: ClientId,
        /// The value's key.
        key: Key,
        /// Where it is.
        worker: WorkerId,
        /// Its size.
        nbytes: u64,
    },
    /// A task finished on a worker.
    TaskFinished {
        /// The worker.
        worker: WorkerId,
        /// The task.
        key: Key,
        /// Size of the result.
        nbytes: u64,
        /// How long it ran, in microseconds (0: not measured).
        micros: u64,
    },
    /// A task failed on a worker.
    TaskFailed {
        /// The worker.
        worker: WorkerId,
        /// The task.
        key: Key,
        /// What happened.
        failure: TaskFailure,
    },
    /// A worker could not fetch a dependency of a task from its holder.
    DataMissing {
        /// The worker that tried.
        worker: WorkerId,
        /// The task it was preparing.
        key: Key,
        /// The dependency it could not get.
        missing: Key,
    },
    /// A client could not fetch a value from the worker at `addr`.
    ClientFetchFailed {
        /// The value.
        key: Key,
        /// The worker it was told to fetch from.
        addr: String,
        /// What went wrong.
        error: String,
    },
    /// A client dropped its futures on these keys.
    ClientReleased {
        /// Which client.
        client: ClientId,
        /// The keys.
        keys: Vec<Key>,
    },
    /// A client disconnected.
    ClientLeft {
        /// Which client.
        client: ClientId,
    },
    /// A worker's answer to a [`Command::Steal`]: whether it gave the task up
    /// (it had not started it) or keeps it (running, done or unknown).
    StealResponse {
        /// The worker asked.
        worker: WorkerId,
        /// The task.
        key: Key,
        /// Given up: the scheduler places it again.
        stolen: bool,
    },
    /// Time passes (heartbeat timeouts are checked).
    Tick,
}

/// Outputs of the state machine.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Run a task on a worker.
    Compute {
        /// The worker.
        worker: WorkerId,
        /// The task.
        key: Key,
        /// Its op.
        op: String,
        /// Its encoded arguments.
        payload: Arc<Vec<u8>>,
        /// Where each dependency is (key, holder address).
        deps: Vec<(Key, String)>,
    },
    /// Drop these keys' values on a worker.
    FreeKeys {
        /// The worker.
        worker: WorkerId,
        /// The keys.
        keys: Vec<Key>,
    },
    /// Tell a client that a key it wants is in memory, and where.
    KeyDone {
        /// The client.
        client: ClientId,
        /// The key.
        key: Key,
        /// The holder's data address.
        addr: String,
        /// Size in bytes.
        nbytes: u64,
    },
    /// Tell a client that a key it wants failed.
    KeyErred {
        /// The client.
        client: ClientId,
        /// The key.
        key: Key,
        /// Why.
        failure: TaskFailure,
    },
    /// Refuse a client's request.
    Reject {
        /// The client.
        client: ClientId,
        /// Why, and what to do.
        error: String,
    },
    /// Ask a worker to give back a task it has not started (work stealing).
    Steal {
        /// The worker holding the task.
        worker: WorkerId,
        /// The task.
        key: Key,
    },
    /// Disconnect a worker that stopped answering.
    CloseWorker {
        /// The worker.
        worker: WorkerId,
    },
}

/// One line of a key's history.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// The key.
    pub key: Key,
    /// State before.
    pub from: &'static str,
    /// State after.
    pub to: &'static str,
    /// Why.
    pub reason: Cow<'static, str>,
    /// When (ms, the time passed to `handle`).
    pub at: u64,
}

/// Tuning of the state machine.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Tasks in flight per worker thread (the rest wait at the scheduler).
    pub saturation: f64,
    /// Declare a silent worker lost after this many ms (0 = never).
    pub heartbeat_timeout_ms: u64,
    /// Deaths of workers running a task before it is marked erred.
    pub allowed_failures: u32,
    /// Transitions kept for `story`.
    pub log_capacity: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            saturation: 8.0,
            heartbeat_timeout_ms: 30_000,
            allowed_failures: 3,
            log_capacity: 200_000,
        }
    }
}

type ReadyKey = (Reverse<i32>, u64, u32, Key);

/// Work a worker may have queued beyond its threads, per thread (µs).
const BACKLOG_PER_THREAD_US: u64 = 20_000;
/// What a task of a prefix never timed is assumed to take (µs).
const UNTIMED_US: u64 = 500_000;
/// Tasks expected to run shorter than this are never stolen (µs): the round
/// trip of a steal costs more than waiting.
const MIN_STEAL_US: u64 = 5_000;
/// A task waits for a busy worker holding its inputs only when moving them
/// elsewhere would take at least this long (µs); cheaper moves never wait.
const MIN_WAIT_FOR_DATA_US: u64 = 1_000;
/// Assumed transfer rate between workers for stealing decisions, in bytes
/// per µs (100 MB/s, Dask's default bandwidth estimate).
const STEAL_BYTES_PER_US: u64 = 100;

/// The whole scheduler state.
pub struct SchedulerState {
    config: SchedulerConfig,
    tasks: FxHashMap<Key, SchedTask>,
    workers: BTreeMap<WorkerId, SchedWorker>,
    ready: BTreeSet<ReadyKey>,
    /// Gang id → member keys by rank.
    gangs: FxHashMap<String, Vec<Key>>,
    /// Key prefix → (total µs, count) of reported run times.
    durations: FxHashMap<String, (u64, u32)>,
    /// Steal requests in flight: task → the worker asked to give it up.
    steals: FxHashMap<Key, WorkerId>,
    /// Tasks their worker refused to give up (already running): never asked again.
    unstealable: FxHashSet<Key>,
    /// What the dashboard shows, kept up to date transition by transition.
    activity: activity::Activity,
    /// When the last `Tick` was handled (ms): a long gap is a stall here.
    last_tick: u64,
    generation: u64,
    log: VecDeque<Transition>,
    now: u64,
    out: Vec<Command>,
}

fn ready_key(t: &SchedTask) -> ReadyKey {
    (Reverse(t.spec.priority), t.generation, t.spec.graph_order, t.spec.key.clone())
}

impl SchedulerState {
    /// An empty scheduler.
    pub fn new(config: SchedulerConfig) -> Self {
        SchedulerState {
            config,
            tasks: FxHashMap::default(),
            workers: BTreeMap::new(),
            ready: BTreeSet::new(),
            gangs: FxHashMap::default(),
            durations: FxHashMap::default(),
            steals: FxHashMap::default(),
            unstealable: FxHashSet::default(),
            activity: activity::Activity::default(),
            last_tick: 0,
            generation: 0,
            log: VecDeque::new(),
            now: 0,
            out: Vec::new(),
        }
    }

    /// The tasks.
    pub fn tasks(&self) -> &FxHashMap<Key, SchedTask> {
        &self.tasks
    }

    /// The time of the last event (ms, as passed to `handle`).
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The dashboard's aggregates (task groups, stream, failures).
    pub fn activity(&self) -> &activity::Activity {
        &self.activity
    }

    /// The workers.
    pub fn workers(&self) -> &BTreeMap<WorkerId, SchedWorker> {
        &self.workers
    }

    /// The recorded history of `key`.
    pub fn story(&self, key: &Key) -> Vec<Transition> {
        self.log.iter().filter(|t| &t.key == key).cloned().collect()
    }

    /// Processes one event at time `now` (ms) and returns what to do.
    pub fn handle(&mut self, event: Event, now: u64) -> Vec<Command> {
        self.now = now;
        match event {
            Event::WorkerJoined { worker, name, addr, nthreads, memory_limit, ops, resources } => {
                self.workers.insert(
                    worker,
                    SchedWorker {
                        id: worker,
                        name,
                        addr,
                        nthreads: nthreads.max(1),
                        memory_limit,
                        status: WorkerStatus::Running,
                        processing: BTreeSet::new(),
                        has_what: FxHashSet::default(),
                        ops,
                        resources,
                        used_resources: BTreeMap::new(),
                        last_seen: now,
                        memory: 0,
                        metrics: WorkerMetrics::default(),
                    },
                );
            }
            Event::WorkerLost { worker } => self.remove_worker(worker),
            Event::WorkerClosing { worker } => {
                if let Some(w) = self.workers.get_mut(&worker) {
                    w.status = WorkerStatus::Closing;
                    w.last_seen = now;
                }
            }
            Event::Heartbeat { worker, memory, paused } => {
                if let Some(w) = self.workers.get_mut(&worker) {
                    w.last_seen = now;
                    w.memory = memory;
                    if w.status != WorkerStatus::Closing {
                        w.status =
                            if paused { WorkerStatus::Paused } else { WorkerStatus::Running };
                    }
                }
            }
            Event::WorkerMetrics { worker, metrics, spans } => {
                if let Some(w) = self.workers.get_mut(&worker) {
                    w.metrics = metrics;
                    self.activity.worker_spans(worker.0, &spans, now);
                }
            }
            Event::GraphSubmitted { client, tasks, wanted } => self.submit(client, tasks, wanted),
            Event::DataScattered { client, key, worker, nbytes } => {
                self.scattered(client, key, worker, nbytes)
            }
            Event::StealResponse { worker, key, stolen } => {
                self.steal_answered(worker, key, stolen)
            }
            Event::TaskFinished { worker, key, nbytes, micros } => {
                if micros > 0 {
                    self.timed(&key, micros);
                }
                self.finished(worker, key, nbytes, micros)
            }
            Event::TaskFailed { worker, key, failure } => self.failed(worker, key, failure),
            Event::DataMissing { worker, key, missing } => self.data_missing(worker, key, missing),
            Event::ClientFetchFailed { key, addr, error } => {
                self.client_fetch_failed(key, &addr, &error)
            }
            Event::ClientReleased { client, keys } => {
                for k in keys {
                    if let Some(t) = self.tasks.get_mut(&k) {
                        t.who_wants.remove(&client);
                    }
                    self.maybe_forget(&k);
                }
            }
            Event::ClientLeft { client } => {
                let keys: Vec<Key> = self
                    .tasks
                    .iter()
                    .filter(|(_, t)| t.who_wants.contains(&client))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in keys {
                    if let Some(t) = self.tasks.get_mut(&k) {
                        t.who_wants.remove(&client);
                    }
                    self.maybe_forget(&k);
                }
            }
            Event::Tick => {
                // Ticks come about once a second. A longer gap means this
                // scheduler was busy (a huge submission), so its peers'
                // heartbeats could not be read: count silence from now.
                let stalled = self.last_tick > 0
                    && now.saturating_sub(self.last_tick) > self.config.heartbeat_timeout_ms / 4;
                self.last_tick = now;
                if stalled {
                    for w in self.workers.values_mut() {
                        w.last_seen = w.last_seen.max(now);
                    }
                } else if self.config.heartbeat_timeout_ms > 0 {
                    let dead: Vec<WorkerId> = self
                        .workers
                        .values()
                        .filter(|w| {
                            now.saturating_sub(w.last_seen) > self.config.heartbeat_timeout_ms
                        })
                        .map(|w| w.id)
                        .collect();
                    for w in dead {
                        self.out.push(Command::CloseWorker { worker: w });
                        self.remove_worker(w);
                    }
                }
            }
        }
        self.schedule();
        self.balance();
        std::mem::take(&mut self.out)
    }

    fn set_state(&mut self, key: &Key, to: TaskState, reason: impl Into<Cow<'static, str>>) {
        let Some(t) = self.tasks.get_mut(key) else { return };
        let from = t.state.name();
        if matches!(t.state, TaskState::Queued) {
            let rk = ready_key(t);
            self.ready.remove(&rk);
        }
        if matches!(to, TaskState::Queued) {
            self.ready.insert(ready_key(t));
        }
        if matches!(t.state, TaskState::Processing { .. }) {
            if !self.steals.is_empty() {
                self.steals.remove(key);
            }
            if !self.unstealable.is_empty() {
                self.unstealable.remove(key);
            }
        }
        let to_name = to.name();
        let (from_i, to_i) = (t.state.index(), to.index());
        if let TaskState::Erred { failure } = &to {
            if failure.key == *key {
                let entry = activity::FailureEntry {
                    key: activity::key_id(key),
                    op: failure.op.clone(),
                    message: failure.message.clone(),
                    worker: failure.worker.clone(),
                    cause: failure.kind.name().to_string(),
                    at_ms: self.now,
                };
                self.activity.failed(key.prefix(), entry);
            }
        }
        self.activity.moved(key.prefix(), from_i, to_i, self.now);
        t.state = to;
        if self.config.log_capacity > 0 {
            if self.log.len() >= self.config.log_capacity {
                self.log.pop_front();
            }
            self.log.push_back(Transition {
                key: key.clone(),
                from,
                to: to_name,
                reason: reason.into(),
                at: self.now,
            });
        }
    }

    /// Ops that no connected worker knows (empty when no worker is connected yet).
    fn unknown_ops(&self, tasks: &[TaskSpec]) -> Vec<String> {
        if self.workers.is_empty() {
            return Vec::new();
        }
        let mut missing: BTreeSet<String> = BTreeSet::new();
        for t in tasks {
            if t.op != DATA_OP && !self.workers.values().any(|w| w.ops.contains(&t.op)) {
                missing.insert(t.op.clone());
            }
        }
        missing.into_iter().collect()
    }

    /// Gangs must arrive whole (ranks `0..size`, one submission, a fresh id),
    /// and the cluster must have enough workers to start them.
    fn check_gangs(&self, tasks: &[TaskSpec]) -> Result<(), String> {
        let mut gangs: BTreeMap<&str, (u32, Vec<u32>)> = BTreeMap::new();
        for t in tasks {
            let Some(g) = &t.gang else { continue };
            let entry = gangs.entry(&g.id).or_insert((g.size, Vec::new()));
            if entry.0 != g.size {
                return Err(format!(
                    "gang `{}`: members disagree on its size ({} and {})",
                    g.id, entry.0, g.size
                ));
            }
            entry.1.push(g.rank);
        }
        let running = self.workers.values().filter(|w| w.status != WorkerStatus::Closing).count();
        for (id, (size, mut ranks)) in gangs {
            if self.gangs.contains_key(id) {
                return Err(format!(
                    "gang `{id}` already exists; give each gang (and each new attempt) its own id"
                ));
            }
            ranks.sort_unstable();
            if size == 0 || ranks != (0..size).collect::<Vec<_>>() {
                return Err(format!(
                    "gang `{id}` of size {size} must be submitted whole, with ranks 0..{size} once each (got ranks {ranks:?})"
                ));
            }
            if size as usize > running {
                return Err(format!(
                    "gang `{id}` needs {size} distinct workers, but {running} are connected; start more workers or make the gang smaller"
                ));
            }
        }
        Ok(())
    }

    /// Cancels every member of `key`'s gang that has not finished and marks
    /// it erred with `failure` (running members are freed on their workers,
    /// which drop their results).
    fn fail_gang(&mut self, key: &Key, failure: TaskFailure, reason: &str) {
        let Some(id) = self.tasks.get(key).and_then(|t| t.spec.gang.as_ref()).map(|g| g.id.clone())
        else {
            return;
        };
        let members = self.gangs.get(&id).cloned().unwrap_or_default();
        let mut erred = Vec::new();
        for m in members {
            let Some(t) = self.tasks.get(&m) else { continue };
            match t.state.clone() {
                TaskState::Processing { worker } => {
                    if let Some(w) = self.workers.get_mut(&worker) {
                        w.processing.remove(&m);
                    }
                    self.release_resources(worker, &m);
                    if self.workers.contains_key(&worker) {
                        self.out.push(Command::FreeKeys { worker, keys: vec![m.clone()] });
                    }
                }
                TaskState::Queued => {
                    self.ready.remove(&ready_key(t));
                }
                TaskState::Waiting { .. } | TaskState::Released => {}
                TaskState::Memory { .. } | TaskState::Erred { .. } => continue,
            }
            self.set_state(&m, TaskState::Erred { failure: failure.clone() }, reason.to_string());
            erred.push(m);
        }
        for m in erred {
            self.propagate_error(&m);
        }
    }

    /// The gang failure that a member's own failure becomes.
    fn gang_failure(&self, key: &Key, failure: TaskFailure) -> TaskFailure {
        match self.tasks.get(key).and_then(|t| t.spec.gang.as_ref()) {
            Some(g) => TaskFailure {
                message: format!(
                    "rank {} of gang `{}` ({} members; the others were cancelled): {}",
                    g.rank, g.id, g.size, failure.message
                ),
                ..failure
            },
            None => failure,
        }
    }

    fn submit(&mut self, client: ClientId, tasks: Vec<TaskSpec>, wanted: Vec<Key>) {
        // Validate before changing anything.
        let new_keys: FxHashSet<&Key> = tasks.iter().map(|t| &t.key).collect();
        for t in &tasks {
            for d in &t.deps {
                if !new_keys.contains(d) && !self.tasks.contains_key(d) {
                    self.out.push(Command::Reject {
                        client,
                        error: format!(
                            "task {} depends on {d}, which is neither in the submitted graph nor known to the scheduler (was it released?)",
                            t.key
                        ),
                    });
                    return;
                }
            }
        }
        for k in &wanted {
            if !new_keys.contains(k) && !self.tasks.contains_key(k) {
                self.out.push(Command::Reject {
                    client,
                    error: format!("requested key {k} is not in the submitted graph"),
                });
                return;
            }
        }
        if let Err(error) = self.check_gangs(&tasks).and_then(|()| self.check_same_content(&tasks))
        {
            self.out.push(Command::Reject { client, error });
            return;
        }
        let unknown = self.unknown_ops(&tasks);
        if !unknown.is_empty() {
            let ops: BTreeSet<String> =
                self.workers.values().flat_map(|w| w.ops.iter().cloned()).collect();
            self.out.push(Command::Reject {
                client,
                error: format!(
                    "no connected worker knows op(s) {}; workers run the ops compiled into their binary (known: {}). Run workers built from a binary that registers these ops",
                    unknown.iter().map(|o| format!("`{o}`")).collect::<Vec<_>>().join(", "),
                    ops.into_iter().collect::<Vec<_>>().join(", ")
                ),
            });
            return;
        }
        self.generation += 1;
        for t in &tasks {
            if let Some(g) = &t.gang {
                let members = self.gangs.entry(g.id.clone()).or_default();
                members.resize(g.size as usize, t.key.clone());
                members[g.rank as usize] = t.key.clone();
            }
        }
        let mut fresh = Vec::new();
        for mut spec in tasks {
            if spec.gang.is_some() {
                // A gang fails as a unit; its caller decides about a new one.
                spec.retries = 0;
            }
            // A dependency used twice is still one dependency.
            let mut seen = FxHashSet::default();
            spec.deps.retain(|d| seen.insert(d.clone()));
            match self.tasks.get(&spec.key) {
                Some(t) if !matches!(t.state, TaskState::Erred { .. }) => continue,
                Some(_) => {
                    // Resubmitting an erred key runs it again.
                    self.set_state(&spec.key, TaskState::Released, "resubmitted");
                }
                None => {}
            }
            let key = spec.key.clone();
            let retries = spec.retries;
            let prev = self.tasks.remove(&key);
            if let Some(p) = &prev {
                self.activity.removed(key.prefix(), p.state.index(), self.now);
            }
            self.activity.added(key.prefix(), 0, self.now);
            for d in &spec.deps {
                self.activity.linked(d.prefix(), key.prefix());
            }
            // A resubmitted (erred) task may name other dependencies now: drop
            // the old edges, or a lost old input would make it wait again.
            if let Some(p) = &prev {
                for d in &p.spec.deps {
                    if let Some(dt) = self.tasks.get_mut(d) {
                        dt.dependents.remove(&key);
                    }
                }
            }
            let dependents = prev.map(|p| p.dependents).unwrap_or_default();
            self.tasks.insert(
                key.clone(),
                SchedTask {
                    spec,
                    state: TaskState::Released,
                    dependents,
                    who_wants: BTreeSet::new(),
                    generation: self.generation,
                    retries_left: retries,
                    suspicious: 0,
                },
            );
            fresh.push(key);
        }
        for k in &fresh {
            let deps = self.tasks[k].spec.deps.clone();
            for d in deps {
                if let Some(dt) = self.tasks.get_mut(&d) {
                    dt.dependents.insert(k.clone());
                }
            }
        }
        for k in &wanted {
            if let Some(t) = self.tasks.get_mut(k) {
                t.who_wants.insert(client);
            }
        }
        self.ensure(&wanted);
        // Keys already done (or failed) are reported at once.
        for k in &wanted {
            match self.tasks.get(k).map(|t| &t.state) {
                Some(TaskState::Memory { worker, nbytes }) => {
                    let addr = self.workers[worker].addr.clone();
                    self.out.push(Command::KeyDone {
                        client,
                        key: k.clone(),
                        addr,
                        nbytes: *nbytes,
                    });
                }
                Some(TaskState::Erred { failure }) => {
                    self.out.push(Command::KeyErred {
                        client,
                        key: k.clone(),
                        failure: failure.clone(),
                    });
                }
                _ => {}
            }
        }
        // Submitted tasks nobody needs are dropped again.
        for k in fresh {
            self.maybe_forget(&k);
        }
    }

    /// Makes sure `keys` (and the released ancestors they need) are on their way
    /// to memory: released tasks become waiting or queued, dependencies first.
    fn ensure(&mut self, keys: &[Key]) {
        // Released ancestors in dependency-first (post) order, iteratively.
        let mut order: Vec<Key> = Vec::new();
        let mut seen: FxHashSet<Key> = FxHashSet::default();
        let mut stack: Vec<(Key, bool)> = keys.iter().rev().map(|k| (k.clone(), false)).collect();
        while let Some((k, expanded)) = stack.pop() {
            if expanded {
                order.push(k);
                continue;
            }
            let Some(t) = self.tasks.get(&k) else { continue };
            if !matches!(t.state, TaskState::Released) || !seen.insert(k.clone()) {
                continue;
            }
            stack.push((k.clone(), true));
            for d in t.spec.deps.iter().rev() {
                stack.push((d.clone(), false));
            }
        }
        for k in order {
            let deps = self.tasks[&k].spec.deps.clone();
            let mut unfinished = 0;
            let mut erred = None;
            for d in &deps {
                match self.tasks.get(d).map(|t| &t.state) {
                    Some(TaskState::Memory { .. }) => {}
                    Some(TaskState::Erred { failure }) => erred = Some(failure.clone()),
                    _ => unfinished += 1,
                }
            }
            if let Some(failure) = erred {
                self.set_state(&k, TaskState::Erred { failure }, "a dependency erred");
                self.propagate_error(&k);
            } else if unfinished == 0 {
                self.set_state(&k, TaskState::Queued, "dependencies in memory");
            } else {
                self.set_state(&k, TaskState::Waiting { unfinished }, "waiting for dependencies");
            }
        }
    }

    /// Keys name content: a submitted task whose key the graph already holds
    /// (not erred) must be the same task: same op, payload and dependencies.
    /// Merging another task under the key would hand its clients the wrong
    /// value, so the whole submission is refused instead.
    fn check_same_content(&self, tasks: &[TaskSpec]) -> Result<(), String> {
        for spec in tasks {
            let Some(t) = self.tasks.get(&spec.key) else { continue };
            if matches!(t.state, TaskState::Erred { .. }) {
                continue;
            }
            let mut seen = FxHashSet::default();
            let deps: Vec<&Key> = spec.deps.iter().filter(|d| seen.insert(*d)).collect();
            let same = t.spec.op == spec.op
                && t.spec.payload == spec.payload
                && t.spec.deps.iter().eq(deps.iter().copied());
            if !same {
                return Err(format!(
                    "key {} is already in the graph as another task (op `{}`, {} payload bytes, {} dependencies; this submission: op `{}`, {} bytes, {} dependencies); keys name a task's content, so give a different task another key",
                    spec.key,
                    t.spec.op,
                    t.spec.payload.len(),
                    t.spec.deps.len(),
                    spec.op,
                    spec.payload.len(),
                    deps.len()
                ));
            }
        }
        Ok(())
    }

    fn scattered(&mut self, client: ClientId, key: Key, worker: WorkerId, nbytes: u64) {
        let Some(addr) = self.workers.get(&worker).map(|w| w.addr.clone()) else {
            self.out.push(Command::Reject {
                client,
                error: format!("scatter of {key}: worker {worker:?} is gone; scatter again"),
            });
            return;
        };
        // A key already in the graph keeps its task: replacing a queued or
        // running task would leave it in the queues and worker sets under a
        // key that a later release forgets.
        if let Some(t) = self.tasks.get_mut(&key) {
            match &t.state {
                TaskState::Released => {}
                TaskState::Memory { worker: held, nbytes: held_bytes } if t.spec.op == DATA_OP => {
                    // The same value scattered again: one copy is enough.
                    let (held, held_bytes) = (*held, *held_bytes);
                    t.who_wants.insert(client);
                    if held != worker {
                        self.out.push(Command::FreeKeys { worker, keys: vec![key.clone()] });
                    }
                    let addr = self.workers.get(&held).map(|w| w.addr.clone()).unwrap_or(addr);
                    self.out.push(Command::KeyDone { client, key, addr, nbytes: held_bytes });
                    return;
                }
                other => {
                    let state = other.name();
                    self.out.push(Command::FreeKeys { worker, keys: vec![key.clone()] });
                    self.out.push(Command::Reject {
                        client,
                        error: format!(
                            "scatter of {key}: the key already names a task of the graph (state {state}); scatter the value under another key"
                        ),
                    });
                    return;
                }
            }
        }
        self.generation += 1;
        let spec = TaskSpec {
            key: key.clone(),
            op: DATA_OP.to_string(),
            payload: Arc::new(Vec::new()),
            deps: Vec::new(),
            priority: 0,
            graph_order: 0,
            retries: 0,
            workers: Vec::new(),
            allow_other_workers: true,
            resources: Vec::new(),
            gang: None,
        };
        let prev = self.tasks.remove(&key);
        if let Some(p) = &prev {
            self.activity.removed(key.prefix(), p.state.index(), self.now);
        }
        self.activity.added(key.prefix(), 0, self.now);
        let dependents = prev.map(|t| t.dependents).unwrap_or_default();
        let mut who_wants = BTreeSet::new();
        who_wants.insert(client);
        self.tasks.insert(
            key.clone(),
            SchedTask {
                spec,
                state: TaskState::Released,
                dependents,
                who_wants,
                generation: self.generation,
                retries_left: 0,
                suspicious: 0,
            },
        );
        self.set_state(&key, TaskState::Memory { worker, nbytes }, "scattered");
        if let Some(w) = self.workers.get_mut(&worker) {
            w.has_what.insert(key.clone());
        }
        self.out.push(Command::KeyDone { client, key, addr, nbytes });
    }

    fn finished(&mut self, worker: WorkerId, key: Key, nbytes: u64, micros: u64) {
        let ours = matches!(self.tasks.get(&key).map(|t| &t.state), Some(TaskState::Processing { worker: w }) if *w == worker);
        if let Some(w) = self.workers.get_mut(&worker) {
            w.processing.remove(&key);
        }
        if !ours {
            // A stale result (the task was reassigned, released or forgotten).
            self.out.push(Command::FreeKeys { worker, keys: vec![key] });
            return;
        }
        self.release_resources(worker, &key);
        self.activity.ran(worker.0, key.prefix(), micros, nbytes, self.now);
        self.set_state(&key, TaskState::Memory { worker, nbytes }, "finished");
        let addr = match self.workers.get_mut(&worker) {
            Some(w) => {
                w.has_what.insert(key.clone());
                w.addr.clone()
            }
            None => String::new(),
        };
        let t = &self.tasks[&key];
        for &c in &t.who_wants {
            self.out.push(Command::KeyDone {
                client: c,
                key: key.clone(),
                addr: addr.clone(),
                nbytes,
            });
        }
        let dependents: Vec<Key> = t.dependents.iter().cloned().collect();
        for d in dependents {
            if let Some(TaskState::Waiting { unfinished }) =
                self.tasks.get(&d).map(|t| t.state.clone())
            {
                if unfinished <= 1 {
                    self.set_state(&d, TaskState::Queued, "last dependency in memory");
                } else {
                    self.set_state(
                        &d,
                        TaskState::Waiting { unfinished: unfinished - 1 },
                        "a dependency in memory",
                    );
                }
            }
        }
        let deps = self.tasks[&key].spec.deps.clone();
        for d in deps {
            self.maybe_forget(&d);
        }
        self.maybe_forget(&key);
    }

    fn failed(&mut self, worker: WorkerId, key: Key, failure: TaskFailure) {
        let ours = matches!(self.tasks.get(&key).map(|t| &t.state), Some(TaskState::Processing { worker: w }) if *w == worker);
        if let Some(w) = self.workers.get_mut(&worker) {
            w.processing.remove(&key);
        }
        if !ours {
            return;
        }
        self.release_resources(worker, &key);
        if self.tasks[&key].spec.gang.is_some() {
            let failure = self.gang_failure(&key, failure);
            self.fail_gang(&key, failure, "a gang member failed");
            return;
        }
        let t = self.tasks.get_mut(&key).expect("checked above");
        if t.retries_left > 0 {
            t.retries_left -= 1;
            let left = t.retries_left;
            let reason =
                format!("retrying after failure ({left} retries left): {}", failure.message);
            self.back_to_ready(&key, reason);
            return;
        }
        self.set_state(&key, TaskState::Erred { failure }, "failed");
        self.propagate_error(&key);
    }

    /// Marks everything downstream of erred `key` erred, and tells the clients.
    fn propagate_error(&mut self, key: &Key) {
        let Some(TaskState::Erred { failure }) = self.tasks.get(key).map(|t| t.state.clone())
        else {
            return;
        };
        let mut stack = vec![key.clone()];
        let mut notify = Vec::new();
        let mut gangs = Vec::new();
        while let Some(k) = stack.pop() {
            let t = &self.tasks[&k];
            if t.spec.gang.is_some() {
                gangs.push(k.clone());
            }
            notify.extend(t.who_wants.iter().map(|&c| (c, k.clone())));
            let dependents: Vec<Key> = t.dependents.iter().cloned().collect();
            for d in dependents {
                let st = self.tasks.get(&d).map(|t| t.state.clone());
                if matches!(
                    st,
                    Some(TaskState::Waiting { .. })
                        | Some(TaskState::Queued)
                        | Some(TaskState::Released)
                ) {
                    self.set_state(
                        &d,
                        TaskState::Erred { failure: failure.clone() },
                        format!("dependency {k} erred"),
                    );
                    stack.push(d);
                }
            }
        }
        for (client, k) in notify {
            self.out.push(Command::KeyErred { client, key: k, failure: failure.clone() });
        }
        // A gang with an erred member can never start (or finish): the rest
        // of it fails too.
        for k in gangs {
            let f = self.gang_failure(&k, failure.clone());
            self.fail_gang(&k, f, "another gang member erred");
        }
    }

    fn data_missing(&mut self, worker: WorkerId, key: Key, missing: Key) {
        // The holder no longer has the value: treat it as lost.
        if let Some(TaskState::Memory { worker: holder, .. }) =
            self.tasks.get(&missing).map(|t| t.state.clone())
        {
            if let Some(w) = self.workers.get_mut(&holder) {
                w.has_what.remove(&missing);
            }
            self.lose(&missing, "holder could not provide it");
        }
        let ours = matches!(self.tasks.get(&key).map(|t| &t.state), Some(TaskState::Processing { worker: w }) if *w == worker);
        if let Some(w) = self.workers.get_mut(&worker) {
            w.processing.remove(&key);
        }
        if ours {
            self.release_resources(worker, &key);
            if let Some(op) =
                self.tasks[&key].spec.gang.as_ref().map(|_| self.tasks[&key].spec.op.clone())
            {
                let failure = TaskFailure {
                    key: key.clone(),
                    op,
                    message: format!("its input {missing} was lost before it started"),
                    worker: self.workers.get(&worker).map(|w| w.addr.clone()),
                    kind: FailureCause::Worker,
                };
                let failure = self.gang_failure(&key, failure);
                self.fail_gang(&key, failure, "a gang member lost an input");
            } else {
                self.set_state(&key, TaskState::Released, format!("dependency {missing} missing"));
            }
        }
        self.ensure_needed();
    }

    /// A client could not get `key` from the worker at `addr`. If that worker
    /// is where the scheduler believes the value is, the value is lost there:
    /// a computed one is recomputed, a scattered one errs (nothing can
    /// recompute it; the client must scatter it again).
    fn client_fetch_failed(&mut self, key: Key, addr: &str, error: &str) {
        let Some(TaskState::Memory { worker, .. }) = self.tasks.get(&key).map(|t| t.state.clone())
        else {
            return;
        };
        if self.workers.get(&worker).is_none_or(|w| w.addr != addr) {
            return; // Stale: the value has moved or been recomputed meanwhile.
        }
        if let Some(w) = self.workers.get_mut(&worker) {
            w.has_what.remove(&key);
        }
        self.out.push(Command::FreeKeys { worker, keys: vec![key.clone()] });
        if self.tasks[&key].spec.op == DATA_OP {
            let failure = TaskFailure {
                key: key.clone(),
                op: DATA_OP.into(),
                message: format!(
                    "the scattered value could not be fetched from {addr} ({error}); scatter it again"
                ),
                worker: Some(addr.to_string()),
                kind: FailureCause::Worker,
            };
            self.set_state(&key, TaskState::Erred { failure }, "scattered value unreachable");
            self.propagate_error(&key);
            return;
        }
        self.lose(&key, "a client could not fetch it from its holder");
        self.ensure_needed();
    }

    fn deps_in_memory(&self, key: &Key) -> bool {
        self.tasks[key]
            .spec
            .deps
            .iter()
            .all(|d| matches!(self.tasks.get(d).map(|t| &t.state), Some(TaskState::Memory { .. })))
    }

    /// Puts a task taken off a worker (a retry, a steal) back in line. A
    /// dependency may have been lost while it ran (a lost value does not
    /// stop its running dependents), so it queues only if every input is
    /// still in memory, and otherwise waits for them again.
    fn back_to_ready(&mut self, key: &Key, reason: impl Into<Cow<'static, str>>) {
        if self.deps_in_memory(key) {
            self.set_state(key, TaskState::Queued, reason);
        } else {
            self.set_state(key, TaskState::Released, reason);
            self.ensure(std::slice::from_ref(key));
        }
    }

    /// A value in memory was lost: its task goes back to released, and tasks
    /// counting on it wait again.
    fn lose(&mut self, key: &Key, reason: &str) {
        if let Some(op) =
            self.tasks[key].spec.gang.as_ref().map(|_| self.tasks[key].spec.op.clone())
        {
            // A gang member cannot be recomputed alone (its peers are done).
            let failure = TaskFailure {
                key: key.clone(),
                op,
                message: format!(
                    "its result was lost ({reason}); a gang is not rerun member by member: submit the gang again"
                ),
                worker: None,
                kind: FailureCause::Worker,
            };
            let failure = self.gang_failure(key, failure);
            self.set_state(key, TaskState::Erred { failure }, reason.to_string());
            self.propagate_error(key);
            return;
        }
        self.set_state(key, TaskState::Released, reason.to_string());
        let dependents: Vec<Key> = self.tasks[key].dependents.iter().cloned().collect();
        for d in dependents {
            match self.tasks.get(&d).map(|t| t.state.clone()) {
                Some(TaskState::Waiting { unfinished }) => self.set_state(
                    &d,
                    TaskState::Waiting { unfinished: unfinished + 1 },
                    format!("dependency {key} lost"),
                ),
                Some(TaskState::Queued) => self.set_state(
                    &d,
                    TaskState::Waiting { unfinished: 1 },
                    format!("dependency {key} lost"),
                ),
                _ => {}
            }
        }
    }

    /// Whether a task's result is needed: a client wants it, or a task on its
    /// way to memory (waiting, queued, processing) depends on it.
    fn needed(&self, t: &SchedTask) -> bool {
        !t.who_wants.is_empty()
            || t.dependents.iter().any(|d| {
                self.tasks.get(d).is_some_and(|dt| {
                    matches!(
                        dt.state,
                        TaskState::Waiting { .. }
                            | TaskState::Queued
                            | TaskState::Processing { .. }
                    )
                })
            })
    }

    /// Recomputes every released task that is still needed; forgets the others.
    fn ensure_needed(&mut self) {
        let released: Vec<Key> = self
            .tasks
            .iter()
            .filter(|(_, t)| matches!(t.state, TaskState::Released))
            .map(|(k, _)| k.clone())
            .collect();
        let (needed, unneeded): (Vec<Key>, Vec<Key>) =
            released.into_iter().partition(|k| self.needed(&self.tasks[k]));
        self.ensure(&needed);
        for k in unneeded {
            self.maybe_forget(&k);
        }
    }

    fn remove_worker(&mut self, worker: WorkerId) {
        let Some(w) = self.workers.remove(&worker) else { return };
        for key in &w.processing {
            let Some(t) = self.tasks.get(key) else { continue };
            if !matches!(t.state, TaskState::Processing { worker: pw } if pw == worker) {
                continue;
            }
            if t.spec.gang.is_some() {
                let failure = TaskFailure {
                    key: key.clone(),
                    op: t.spec.op.clone(),
                    message: format!("its worker {} died", w.name),
                    worker: Some(w.addr.clone()),
                    kind: FailureCause::KilledWorker,
                };
                let failure = self.gang_failure(key, failure);
                self.fail_gang(key, failure, "a gang member's worker died");
                continue;
            }
            let t = self.tasks.get_mut(key).expect("looked up above");
            t.suspicious += 1;
            if t.suspicious >= self.config.allowed_failures {
                let failure = TaskFailure {
                    key: key.clone(),
                    op: t.spec.op.clone(),
                    message: format!(
                        "{} workers died while running this task (last: {}); it is probably what kills them",
                        t.suspicious, w.name
                    ),
                    worker: Some(w.addr.clone()),
                    kind: FailureCause::KilledWorker,
                };
                self.set_state(key, TaskState::Erred { failure }, "killed too many workers");
                self.propagate_error(key);
            } else {
                self.set_state(
                    key,
                    TaskState::Released,
                    format!("worker {} lost while processing", w.name),
                );
            }
        }
        for key in &w.has_what {
            if matches!(self.tasks.get(key).map(|t| &t.state), Some(TaskState::Memory { worker: h, .. }) if *h == worker)
            {
                self.lose(key, &format!("worker {} lost", w.name));
            }
        }
        self.ensure_needed();
    }

    /// Releases `key` when no client wants it and no unfinished task needs it
    /// (its value is freed), and forgets it once nothing depends on it at all:
    /// a released task with dependents stays, so that lost results downstream
    /// can be recomputed from lineage.
    fn maybe_forget(&mut self, key: &Key) {
        let mut stack = vec![key.clone()];
        while let Some(k) = stack.pop() {
            let Some(t) = self.tasks.get(&k) else { continue };
            if self.needed(t) {
                continue;
            }
            match t.state.clone() {
                TaskState::Memory { worker, .. } => {
                    if let Some(w) = self.workers.get_mut(&worker) {
                        w.has_what.remove(&k);
                    }
                    self.out.push(Command::FreeKeys { worker, keys: vec![k.clone()] });
                    self.set_state(&k, TaskState::Released, "no longer needed");
                }
                TaskState::Processing { worker } => {
                    // Let it finish on the worker; its result is dropped as stale.
                    if let Some(w) = self.workers.get_mut(&worker) {
                        w.processing.remove(&k);
                    }
                    self.release_resources(worker, &k);
                    self.set_state(&k, TaskState::Released, "no longer needed");
                }
                TaskState::Waiting { .. } | TaskState::Queued => {
                    self.set_state(&k, TaskState::Released, "no longer needed")
                }
                TaskState::Released | TaskState::Erred { .. } => {}
            }
            let t = &self.tasks[&k];
            if !t.dependents.is_empty() {
                continue;
            }
            let from = t.state.name();
            let from_i = t.state.index();
            let deps = t.spec.deps.clone();
            let gang = t.spec.gang.as_ref().map(|g| g.id.clone());
            self.tasks.remove(&k);
            self.activity.removed(k.prefix(), from_i, self.now);
            if let Some(id) = gang {
                if self
                    .gangs
                    .get(&id)
                    .is_some_and(|m| m.iter().all(|m| !self.tasks.contains_key(m)))
                {
                    self.gangs.remove(&id);
                }
            }
            if self.config.log_capacity > 0 {
                self.log.push_back(Transition {
                    key: k.clone(),
                    from,
                    to: "forgotten",
                    reason: Cow::Borrowed("nothing depends on it"),
                    at: self.now,
                });
                if self.log.len() > self.config.log_capacity {
                    self.log.pop_front();
                }
            }
            for d in deps {
                if let Some(dt) = self.tasks.get_mut(&d) {
                    dt.dependents.remove(&k);
                    stack.push(d);
                }
            }
        }
    }

    fn release_resources(&mut self, worker: WorkerId, key: &Key) {
        let Some(t) = self.tasks.get(key) else { return };
        if let Some(w) = self.workers.get_mut(&worker) {
            for (r, amount) in &t.spec.resources {
                if let Some(u) = w.used_resources.get_mut(r) {
                    *u -= amount;
                }
            }
        }
    }

    fn slots(&self, w: &SchedWorker) -> usize {
        ((w.nthreads as f64) * self.config.saturation).ceil().max(1.0) as usize
    }

    /// Whether `w` takes another task: always while a thread is free; beyond
    /// that (up to `saturation` per thread) only while the work already sent
    /// is short, so that an idle worker never waits while tasks queue behind
    /// a busy one's long ones. Work is the mean run time of each task's
    /// prefix; a prefix never timed counts as long (0.5 s, as Dask assumes).
    fn has_room(&self, w: &SchedWorker) -> bool {
        let n = w.processing.len();
        if n < w.nthreads {
            return true;
        }
        if n >= self.slots(w) {
            return false;
        }
        self.backlog_us(w) <= BACKLOG_PER_THREAD_US * w.nthreads as u64
    }

    /// The expected run time of everything `w` is processing (µs).
    fn backlog_us(&self, w: &SchedWorker) -> u64 {
        w.processing.iter().map(|k| self.expected_us(k)).sum()
    }

    /// When a task sent to `w` now could start, by the expected run times
    /// of what it is processing (µs): 0 while a thread is free.
    fn start_delay_us(&self, w: &SchedWorker) -> u64 {
        if w.processing.len() < w.nthreads {
            0
        } else {
            self.backlog_us(w) / w.nthreads.max(1) as u64
        }
    }

    fn expected_us(&self, key: &Key) -> u64 {
        match self.durations.get(key.prefix()) {
            Some(&(total, count)) if count > 0 => total / count as u64,
            _ => UNTIMED_US,
        }
    }

    /// Records a task's run time under its prefix (a running mean that
    /// halves its weight every 1,024 samples, so it follows changes).
    fn timed(&mut self, key: &Key, micros: u64) {
        if !self.tasks.contains_key(key) {
            return;
        }
        let entry = self.durations.entry(key.prefix().to_string()).or_insert((0, 0));
        if entry.1 >= 1024 {
            *entry = (entry.0 / 2, entry.1 / 2);
        }
        entry.0 += micros;
        entry.1 += 1;
    }

    /// Work stealing. When running workers are idle and nothing is
    /// queued for them, ask busy workers to give back tasks they have not
    /// started, best compute-to-communication ratio first: a task is worth
    /// moving when its expected run time is at least [`MIN_STEAL_US`] and at
    /// least twice the time its inputs take to move (at
    /// [`STEAL_BYTES_PER_US`]). Gang members and tasks pinned to their worker
    /// stay. A task given back is queued again and placed as any other.
    fn balance(&mut self) {
        if !self.ready.is_empty() {
            // Idle threads here mean nothing fits them (restrictions, resources).
            return;
        }
        // Idle workers (nothing assigned), as Dask counts them: a worker with
        // one free thread of several is busy enough, and this keeps the check
        // O(workers) on the hot path of fast graphs.
        let idle: usize = self
            .workers
            .values()
            .filter(|w| w.status == WorkerStatus::Running && w.processing.is_empty())
            .map(|w| w.nthreads)
            .sum();
        let want = idle.saturating_sub(self.steals.len());
        if want == 0 || !self.workers.values().any(|w| w.processing.len() > w.nthreads) {
            return;
        }
        let mut candidates: Vec<(u64, Key, WorkerId)> = Vec::new();
        for w in self.workers.values() {
            if w.processing.len() <= w.nthreads {
                continue;
            }
            for key in &w.processing {
                if self.steals.contains_key(key) || self.unstealable.contains(key) {
                    continue;
                }
                let Some(t) = self.tasks.get(key) else { continue };
                if t.spec.gang.is_some()
                    || (!t.spec.workers.is_empty() && !t.spec.allow_other_workers)
                {
                    continue;
                }
                let compute = self.expected_us(key);
                let bytes: u64 = t
                    .spec
                    .deps
                    .iter()
                    .filter_map(|d| match self.tasks.get(d).map(|t| &t.state) {
                        Some(TaskState::Memory { nbytes, .. }) => Some(*nbytes),
                        _ => None,
                    })
                    .sum();
                let transfer = bytes / STEAL_BYTES_PER_US;
                if compute >= MIN_STEAL_US && transfer * 2 <= compute {
                    // Higher ratio first (compute per µs of transfer, +1 ms latency).
                    let ratio = compute * 1000 / (transfer + 1000);
                    candidates.push((ratio, key.clone(), w.id));
                }
            }
        }
        candidates.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        for (_, key, victim) in candidates.into_iter().take(want) {
            self.steals.insert(key.clone(), victim);
            self.out.push(Command::Steal { worker: victim, key });
        }
    }

    /// A worker answered a steal request.
    fn steal_answered(&mut self, worker: WorkerId, key: Key, stolen: bool) {
        if self.steals.get(&key) != Some(&worker) {
            return; // stale: the task moved on since
        }
        self.steals.remove(&key);
        let ours = matches!(self.tasks.get(&key).map(|t| &t.state),
            Some(TaskState::Processing { worker: w }) if *w == worker);
        if !ours {
            return;
        }
        if !stolen {
            // It runs there: asking again would only repeat the answer.
            self.unstealable.insert(key);
            return;
        }
        if let Some(w) = self.workers.get_mut(&worker) {
            w.processing.remove(&key);
        }
        self.release_resources(worker, &key);
        if !self.deps_in_memory(&key) {
            self.back_to_ready(&key, format!("stolen from worker {}", worker.0));
            return;
        }
        // Straight to an idle thread elsewhere (never back to the victim,
        // which would only be asked again); else queued as usual.
        let spec = &self.tasks[&key].spec;
        let restricted = !spec.workers.is_empty();
        let thief = self
            .workers
            .values()
            .filter(|w| w.id != worker && w.status == WorkerStatus::Running)
            .filter(|w| w.processing.len() < w.nthreads)
            .filter(|w| self.fits(w, spec, restricted) || (restricted && self.fits(w, spec, false)))
            .map(|w| (self.fetch_bytes(spec, w.id), w.processing.len() * 1000 / w.nthreads, w.id))
            .min()
            .map(|(_, _, id)| id);
        match thief {
            Some(thief) => {
                self.assign(key, thief, &format!("stolen from worker {}, assigned", worker.0))
            }
            None => {
                self.set_state(&key, TaskState::Queued, format!("stolen from worker {}", worker.0))
            }
        }
    }

    fn fits(&self, w: &SchedWorker, spec: &TaskSpec, restricted: bool) -> bool {
        if restricted && !spec.workers.iter().any(|n| *n == w.name || *n == w.addr) {
            return false;
        }
        if spec.op != DATA_OP && !w.ops.contains(&spec.op) {
            return false;
        }
        spec.resources.iter().all(|(r, amount)| {
            let total = w.resources.get(r).copied().unwrap_or(0.0);
            let used = w.used_resources.get(r).copied().unwrap_or(0.0);
            total - used >= *amount - 1e-12
        })
    }

    /// Bytes of `spec`'s dependencies that worker `w` would fetch.
    fn fetch_bytes(&self, spec: &TaskSpec, w: WorkerId) -> u64 {
        spec.deps
            .iter()
            .filter_map(|d| match self.tasks.get(d).map(|t| &t.state) {
                Some(TaskState::Memory { worker, nbytes }) if *worker != w => Some(*nbytes),
                _ => None,
            })
            .sum()
    }

    /// Assigns queued tasks to free worker slots (see the module docs).
    fn schedule(&mut self) {
        let mut skipped: Vec<ReadyKey> = Vec::new();
        let mut gangs_tried: FxHashSet<String> = FxHashSet::default();
        loop {
            let any_free = self
                .workers
                .values()
                .any(|w| w.status == WorkerStatus::Running && self.has_room(w));
            if !any_free {
                break;
            }
            let Some(rk) = self.ready.pop_first() else { break };
            let key = rk.3.clone();
            let spec = &self.tasks[&key].spec;
            if let Some(g) = &spec.gang {
                let id = g.id.clone();
                if gangs_tried.insert(id.clone()) {
                    self.ready.insert(rk);
                    self.start_gang(&id);
                } else {
                    skipped.push(rk);
                }
                continue;
            }
            let restricted = !spec.workers.is_empty();
            // Cost on a worker: moving the task's inputs there (at the
            // assumed bandwidth) plus waiting for a thread (µs).
            let cost = |w: &SchedWorker| {
                self.fetch_bytes(spec, w.id) / STEAL_BYTES_PER_US + self.start_delay_us(w)
            };
            let choose = |restricted: bool, room: bool| {
                self.workers
                    .values()
                    .filter(|w| w.status == WorkerStatus::Running && self.has_room(w) == room)
                    .filter(|w| self.fits(w, spec, restricted))
                    .map(|w| (cost(w), w.processing.len() * 1000 / w.nthreads.max(1), w.id))
                    .min()
            };
            let mut restricted_now = restricted;
            let mut pick = choose(restricted, true);
            if pick.is_none() && restricted && spec.allow_other_workers {
                restricted_now = false;
                pick = choose(false, true);
            }
            let Some((best, _, worker)) = pick else {
                skipped.push(rk);
                continue;
            };
            // Inputs worth over a millisecond of transfer wait for a busy
            // worker that would finish the task sooner (it holds them),
            // instead of being dragged to a free one.
            if self.fetch_bytes(spec, worker) / STEAL_BYTES_PER_US >= MIN_WAIT_FOR_DATA_US
                && choose(restricted_now, false).is_some_and(|(busy, _, _)| busy < best)
            {
                skipped.push(rk);
                continue;
            }
            self.assign(key, worker, "assigned");
        }
        self.ready.extend(skipped);
    }

    /// Starts gang `id` when all its members are queued and each can have a
    /// distinct running worker with a free thread (pinned members first);
    /// fails it when that can never happen. Otherwise it waits, whole.
    fn start_gang(&mut self, id: &str) {
        let members = self.gangs.get(id).cloned().unwrap_or_default();
        let queued = members
            .iter()
            .all(|m| matches!(self.tasks.get(m).map(|t| &t.state), Some(TaskState::Queued)));
        if !queued {
            return;
        }
        // Pinned members whose workers are all gone can never start.
        for m in &members {
            let spec = &self.tasks[m].spec;
            if spec.workers.is_empty() || spec.allow_other_workers {
                continue;
            }
            let alive = self
                .workers
                .values()
                .any(|w| w.status != WorkerStatus::Closing && self.fits(w, spec, true));
            if !alive {
                let failure = TaskFailure {
                    key: m.clone(),
                    op: spec.op.clone(),
                    message: format!(
                        "it may run only on {}, and no such worker is connected (or it lacks the op or resources)",
                        spec.workers.join(", ")
                    ),
                    worker: None,
                    kind: FailureCause::Worker,
                };
                let failure = self.gang_failure(m, failure);
                self.fail_gang(m, failure, "a gang member cannot be placed");
                return;
            }
        }
        let usable = self.workers.values().filter(|w| w.status != WorkerStatus::Closing).count();
        if usable < members.len() {
            let m = &members[0];
            let failure = TaskFailure {
                key: m.clone(),
                op: self.tasks[m].spec.op.clone(),
                message: format!(
                    "the gang needs {} distinct workers and only {usable} are left",
                    members.len()
                ),
                worker: None,
                kind: FailureCause::Worker,
            };
            let failure = self.gang_failure(m, failure);
            self.fail_gang(m, failure, "too few workers for the gang");
            return;
        }
        let mut order: Vec<&Key> = members.iter().collect();
        order.sort_by_key(|m| self.tasks[*m].spec.workers.is_empty());
        let mut taken: FxHashSet<WorkerId> = FxHashSet::default();
        let mut plan: Vec<(Key, WorkerId)> = Vec::with_capacity(members.len());
        for m in order {
            let spec = &self.tasks[m].spec;
            let restricted = !spec.workers.is_empty();
            let choose = |restricted: bool| {
                self.workers
                    .values()
                    .filter(|w| {
                        // A whole free thread: a member must not wait behind other tasks
                        // while the rest of its gang waits for it.
                        w.status == WorkerStatus::Running
                            && w.processing.len() < w.nthreads
                            && !taken.contains(&w.id)
                    })
                    .filter(|w| self.fits(w, spec, restricted))
                    .map(|w| (self.fetch_bytes(spec, w.id), w.processing.len(), w.id))
                    .min()
                    .map(|(_, _, id)| id)
            };
            let mut pick = choose(restricted);
            if pick.is_none() && restricted && spec.allow_other_workers {
                pick = choose(false);
            }
            let Some(w) = pick else { return };
            taken.insert(w);
            plan.push((m.clone(), w));
        }
        for (m, w) in plan {
            let rk = ready_key(&self.tasks[&m]);
            self.ready.remove(&rk);
            self.assign(m, w, "gang started");
        }
    }

    /// Sends queued `key` to `worker` (the caller has taken it out of `ready`).
    fn assign(&mut self, key: Key, worker: WorkerId, why: &str) {
        let spec = &self.tasks[&key].spec;
        let deps: Vec<(Key, String)> = spec
            .deps
            .iter()
            .map(|d| {
                let addr = match self.tasks.get(d).map(|t| &t.state) {
                    Some(TaskState::Memory { worker, .. }) => {
                        self.workers.get(worker).map(|w| w.addr.clone())
                    }
                    _ => None,
                };
                (d.clone(), addr.unwrap_or_default())
            })
            .collect();
        let cmd = Command::Compute {
            worker,
            key: key.clone(),
            op: spec.op.clone(),
            payload: spec.payload.clone(),
            deps,
        };
        let resources = spec.resources.clone();
        let w = self.workers.get_mut(&worker).expect("chosen from workers");
        w.processing.insert(key.clone());
        for (r, amount) in resources {
            *w.used_resources.entry(r).or_insert(0.0) += amount;
        }
        let t = self.tasks.get_mut(&key).expect("queued task exists");
        let from = t.state.name();
        self.activity.moved(key.prefix(), t.state.index(), 3, self.now);
        t.state = TaskState::Processing { worker };
        if self.config.log_capacity > 0 {
            self.log.push_back(Transition {
                key: key.clone(),
                from,
                to: "processing",
                reason: Cow::Owned(format!("{why} to worker {}", worker.0)),
                at: self.now,
            });
            if self.log.len() > self.config.log_capacity {
                self.log.pop_front();
            }
        }
        self.out.push(cmd);
    }

    /// Checks the internal invariants; returns a description of the first violation.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.activity
            .check(self.tasks.iter().map(|(k, t)| (k.prefix().to_string(), t.state.index())))?;
        for k in &self.unstealable {
            if !matches!(self.tasks.get(k).map(|t| &t.state), Some(TaskState::Processing { .. })) {
                return Err(format!("{k} marked unstealable but not processing"));
            }
        }
        for (k, victim) in &self.steals {
            if !matches!(self.tasks.get(k).map(|t| &t.state),
                Some(TaskState::Processing { worker }) if worker == victim)
            {
                return Err(format!(
                    "steal of {k} pending, but it is not processing on {victim:?}"
                ));
            }
        }
        let mut queued = 0;
        for (k, t) in &self.tasks {
            match &t.state {
                TaskState::Processing { worker } => {
                    let w = self
                        .workers
                        .get(worker)
                        .ok_or(format!("{k} processing on unknown {worker:?}"))?;
                    if !w.processing.contains(k) {
                        return Err(format!(
                            "{k} processing on {worker:?} but not in its processing set"
                        ));
                    }
                }
                TaskState::Memory { worker, .. } => {
                    let w = self
                        .workers
                        .get(worker)
                        .ok_or(format!("{k} in memory on unknown {worker:?}"))?;
                    if !w.has_what.contains(k) {
                        return Err(format!("{k} in memory on {worker:?} but not in its has_what"));
                    }
                }
                TaskState::Waiting { unfinished } => {
                    let missing = t
                        .spec
                        .deps
                        .iter()
                        .filter(|d| {
                            !matches!(
                                self.tasks.get(*d).map(|t| &t.state),
                                Some(TaskState::Memory { .. })
                            )
                        })
                        .count();
                    if missing != *unfinished || missing == 0 {
                        return Err(format!("{k} waiting on {unfinished} but {missing} dependencies are not in memory"));
                    }
                }
                TaskState::Queued => {
                    queued += 1;
                    if !self.ready.contains(&ready_key(t)) {
                        return Err(format!("{k} queued but not in the ready queue"));
                    }
                    if let Some(d) = t.spec.deps.iter().find(|d| {
                        !matches!(
                            self.tasks.get(*d).map(|t| &t.state),
                            Some(TaskState::Memory { .. })
                        )
                    }) {
                        return Err(format!("{k} queued but dependency {d} is not in memory"));
                    }
                }
                TaskState::Released | TaskState::Erred { .. } => {}
            }
            for d in &t.spec.deps {
                match self.tasks.get(d) {
                    Some(dt) if dt.dependents.contains(k) => {}
                    Some(_) => return Err(format!("{d} does not list its dependent {k}")),
                    None => {
                        return Err(format!("{k} ({}) depends on forgotten {d}", t.state.name()))
                    }
                }
            }
        }
        if queued != self.ready.len() {
            return Err(format!(
                "{} keys in the ready queue, {queued} tasks queued",
                self.ready.len()
            ));
        }
        for w in self.workers.values() {
            for k in &w.processing {
                if !matches!(self.tasks.get(k).map(|t| &t.state), Some(TaskState::Processing { worker }) if *worker == w.id)
                {
                    return Err(format!("{:?} lists {k} as processing", w.id));
                }
            }
            for k in &w.has_what {
                if !matches!(self.tasks.get(k).map(|t| &t.state), Some(TaskState::Memory { worker, .. }) if *worker == w.id)
                {
                    return Err(format!("{:?} lists {k} in has_what", w.id));
                }
            }
        }
        Ok(())
    }
}

/// The op name of scattered data.
pub const DATA_OP: &str = "rask::data";
