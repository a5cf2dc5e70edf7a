//! The worker's bookkeeping as a pure state machine ([`WorkerState`]); the
//! async shell in `mod.rs` holds the bytes and carries out the commands.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use rask_core::Key;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::scheduler::{FailureCause, TaskFailure, Transition};

/// Limits and tuning of a worker's state machine.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `name` | `"worker"` | named in failures (`TaskFailure::worker`) |
/// | `nthreads` | 1 | tasks executing at once |
/// | `target_bytes` | 0 | spill least recently used values above this much memory (0 = never) |
/// | `pause_bytes` | 0 | start nothing new above this much memory (0 = never) |
/// | `fetch_cache_bytes` | 256 MiB | bound of the fetched copies no task here waits for |
/// | `live_bytes` | 512 MiB | bound of the in-process values of this worker's own outputs |
/// | `log_capacity` | 100 000 | transitions kept for `story` (0 = none, and no reasons formatted) |
#[derive(Clone, Debug)]
pub struct WorkerStateConfig {
    /// The worker's name.
    pub name: String,
    /// Task slots.
    pub nthreads: usize,
    /// Spill above this many bytes of managed memory (0 = never).
    pub target_bytes: u64,
    /// Pause above this many bytes of memory (0 = never).
    pub pause_bytes: u64,
    /// Bound of the cache of fetched copies (copies tasks here wait for are not in it).
    pub fetch_cache_bytes: u64,
    /// Bound of the live values kept of this worker's own outputs.
    pub live_bytes: u64,
    /// Transitions kept for `story` (0 = none).
    pub log_capacity: usize,
}

impl Default for WorkerStateConfig {
    fn default() -> Self {
        WorkerStateConfig {
            name: "worker".into(),
            nthreads: 1,
            target_bytes: 0,
            pause_bytes: 0,
            fetch_cache_bytes: 256 << 20,
            live_bytes: 512 << 20,
            log_capacity: 100_000,
        }
    }
}

impl WorkerStateConfig {
    /// The byte limits that follow from a memory limit (0 = none): spill above
    /// `target_fraction` of it, pause above `pause_fraction`, a tenth of it for
    /// fetched copies and a quarter for live values (256 MiB and 512 MiB without a limit).
    pub fn with_memory_limit(self, limit: u64, target_fraction: f64, pause_fraction: f64) -> Self {
        if limit == 0 {
            return WorkerStateConfig { target_bytes: 0, pause_bytes: 0, ..self };
        }
        WorkerStateConfig {
            target_bytes: (limit as f64 * target_fraction) as u64,
            pause_bytes: (limit as f64 * pause_fraction) as u64,
            fetch_cache_bytes: limit / 10,
            live_bytes: limit / 4,
            ..self
        }
    }
}

/// Where a task that runs on this worker is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerTaskState {
    /// Waiting for `missing` inputs to arrive from peers.
    Waiting {
        /// Inputs in flight.
        missing: usize,
    },
    /// Every input is here; waiting for a thread slot (or for the worker to resume).
    Ready,
    /// Running on a thread.
    Executing,
    /// Running, but freed meanwhile: its result is dropped, nothing is reported.
    Cancelled,
}

impl WorkerTaskState {
    /// The state's name, as the story shows it.
    pub fn name(&self) -> &'static str {
        match self {
            WorkerTaskState::Waiting { .. } => "waiting",
            WorkerTaskState::Ready => "ready",
            WorkerTaskState::Executing => "executing",
            WorkerTaskState::Cancelled => "cancelled",
        }
    }
}

/// The worker's record of a task the scheduler gave it.
#[derive(Clone, Debug)]
pub struct WorkerTask {
    /// Where it is.
    pub state: WorkerTaskState,
    /// Its op.
    pub op: Arc<str>,
    /// Its inputs (distinct keys); emptied when it starts executing.
    pub deps: Vec<Key>,
    /// Higher runs first.
    pub priority: i32,
    payload: Arc<Vec<u8>>,
    seq: u64,
}

/// Where a value on this worker is. The bytes themselves stay in the I/O
/// shell; this is their bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataState {
    /// Being fetched from a peer.
    Flight {
        /// The data address of the peer asked now.
        from: String,
        /// Other holders the scheduler named, asked in turn if that fetch fails.
        candidates: Vec<String>,
    },
    /// A copy fetched from a peer, for tasks here (in the bounded fetch cache
    /// once no task here waits for it).
    Fetched {
        /// Its size.
        nbytes: u64,
    },
    /// In memory, managed: this worker's own output or a value put by a client.
    Memory {
        /// Its size.
        nbytes: u64,
    },
    /// Managed, spilled to disk.
    Disk {
        /// Its size.
        nbytes: u64,
    },
}

impl DataState {
    /// The state's name, as the story shows it.
    pub fn name(&self) -> &'static str {
        match self {
            DataState::Flight { .. } => "flight",
            DataState::Fetched { .. } => "fetched",
            DataState::Memory { .. } => "memory",
            DataState::Disk { .. } => "disk",
        }
    }

    /// Whether the value is on this worker (memory, disk or a fetched copy).
    pub fn is_local(&self) -> bool {
        !matches!(self, DataState::Flight { .. })
    }

    fn nbytes(&self) -> u64 {
        match self {
            DataState::Flight { .. } => 0,
            DataState::Fetched { nbytes }
            | DataState::Memory { nbytes }
            | DataState::Disk { nbytes } => *nbytes,
        }
    }
}

/// The worker's record of a value: its own output, a value put by a client,
/// or a copy of a peer's value.
#[derive(Clone, Debug)]
pub struct WorkerData {
    /// Where it is.
    pub state: DataState,
    /// Tasks here (waiting or ready) that need it: while there are any, it stays.
    pub dependents: FxHashSet<Key>,
    /// The scheduler counts on it being here (own output or put), until freed.
    pub wanted: bool,
    /// Whether the shell keeps its in-process value (own outputs only).
    pub live: bool,
    /// LRU stamp (memory, fetch cache, live values).
    tick: u64,
}

/// Inputs of the worker's state machine.
#[derive(Clone, Debug)]
pub enum WorkerEvent {
    /// The scheduler assigns a task.
    Compute {
        /// The task.
        key: Key,
        /// Its op.
        op: String,
        /// Its encoded arguments (opaque here).
        payload: Arc<Vec<u8>>,
        /// Its inputs and where each is (empty address: nowhere).
        deps: Vec<(Key, String)>,
        /// Higher runs first (the wire does not carry one yet: 0).
        priority: i32,
    },
    /// A fetch finished; the bytes come with the event (the shell stores
    /// them just before handling it).
    DataArrived {
        /// The value.
        key: Key,
        /// Its size.
        nbytes: u64,
    },
    /// A fetch failed.
    FetchFailed {
        /// The value.
        key: Key,
        /// The peer asked.
        from: String,
        /// What went wrong.
        message: String,
    },
    /// A task ran; its output (bytes and value) comes with the event.
    ExecuteDone {
        /// The task.
        key: Key,
        /// Size of its serialized output.
        nbytes: u64,
    },
    /// A task failed.
    ExecuteFailed {
        /// The task.
        key: Key,
        /// What went wrong.
        message: String,
        /// What kind of failure.
        cause: FailureCause,
    },
    /// A client put a value here (scatter); the bytes come with the event.
    Put {
        /// The value.
        key: Key,
        /// Its size.
        nbytes: u64,
    },
    /// A peer or client read a value (it becomes the most recently used).
    Served {
        /// The value.
        key: Key,
    },
    /// Writing a value to disk failed; it is still in memory.
    SpillFailed {
        /// The value.
        key: Key,
        /// What went wrong.
        message: String,
    },
    /// Memory measured outside the managed values (process memory); it
    /// counts towards the spill and pause thresholds.
    MemoryMeasured {
        /// The process's memory in bytes.
        process: u64,
    },
    /// The scheduler no longer needs these keys here.
    Free {
        /// The keys.
        keys: Vec<Key>,
    },
    /// The scheduler asks for a task back.
    Steal {
        /// The task.
        key: Key,
    },
    /// Drop every fetched copy no task here waits for (the fetch cache).
    DropCache,
    /// The worker is leaving: it accepts no new tasks.
    Closing,
}

/// Outputs of the worker's state machine, for the shell to carry out in order.
#[derive(Clone, Debug, PartialEq)]
pub enum WorkerCommand {
    /// Fetch a value from a peer, then report `DataArrived` or `FetchFailed`
    /// (with this `from`).
    Fetch {
        /// The value.
        key: Key,
        /// The peer's data address.
        from: String,
    },
    /// Run a task on a thread. Every input is local: take them when carrying
    /// this out, before the commands after it (which may drop some).
    Execute {
        /// The task.
        key: Key,
        /// Its op.
        op: Arc<str>,
        /// Its encoded arguments.
        payload: Arc<Vec<u8>>,
        /// Its inputs.
        deps: Vec<Key>,
    },
    /// Write a value to disk, then free its memory (it stays readable until
    /// the write is done); report `SpillFailed` if that fails.
    Spill {
        /// The value.
        key: Key,
    },
    /// Forget a value: bytes, file and in-process value.
    Drop {
        /// The value.
        key: Key,
    },
    /// Forget only the in-process value (the bytes stay).
    DropValue {
        /// The value.
        key: Key,
    },
    /// Tell the scheduler a task's output is here.
    TaskFinished {
        /// The task.
        key: Key,
        /// Size of its output.
        nbytes: u64,
    },
    /// Tell the scheduler a task failed.
    TaskFailed {
        /// The task.
        key: Key,
        /// Why.
        failure: TaskFailure,
    },
    /// Tell the scheduler an input could not be had; the task is dropped here.
    DataMissing {
        /// The task.
        key: Key,
        /// The input.
        missing: Key,
    },
    /// Answer a steal request.
    StealResponse {
        /// The task.
        key: Key,
        /// Whether it was given back (it was not executing yet).
        stolen: bool,
    },
}

/// Ready queue order: higher priority first, then arrival (`seq` is unique).
type ReadyKey = (Reverse<i32>, u64);

/// An LRU order: values by their unique tick, least recently used first.
type Lru = BTreeMap<u64, Key>;

/// The worker's bookkeeping, as a pure state machine: [`WorkerState::handle`]
/// takes a [`WorkerEvent`] and the time and returns [`WorkerCommand`]s. No
/// I/O, no locks, no clocks: the bytes and threads belong to the shell.
///
/// Tasks (`WorkerTask::state`):
///
/// ```text
///   Compute ──► Waiting ── inputs here ──► Ready ── slot free, not paused ──► Executing
///                  │                                                        │    ▲
///     fetch failed │                                                   Free │    │ Compute
///                  ▼                                                        ▼    │
///       (DataMissing, forgotten)                                          Cancelled
///
///   Waiting, Ready ── Free / Steal ──► (forgotten)
///   Executing ── done / failed ──► (TaskFinished / TaskFailed reported, forgotten)
///   Cancelled ── done / failed ──► (forgotten; the output only serves tasks here)
/// ```
///
/// Values (`WorkerData::state`):
///
/// ```text
///   needed here ──► Flight ── arrived ──► Fetched ── no task waits, LRU over bound ──► (dropped)
///                     │  │                    │
///   every holder      │  └── computed/put ──┐ │ computed or put here (promoted)
///   named failed      ▼       new output ───┤ ▼
///                (forgotten)                Memory ── LRU above target ──► Disk
///                                            ▲  │                           │
///                                            │  └── freed, no task waits ───┴──► (dropped)
///                                            └─────────── spill failed ─────┘
/// ```
///
/// A failed fetch stays in `Flight` and asks the next holder a task here
/// named; only when none is left are the tasks waiting for it reported missing.
///
/// A key has at most one task record and one value record (a task can run
/// while a copy of its output is being fetched; whichever arrives first is
/// kept). The shell keeps the bytes it already holds for a key: it stores
/// fetched, computed or put bytes only where it holds none, and only when it
/// hands the event that brings them to [`WorkerState::handle`] (never
/// earlier: a `Drop` carried out in between would lose them).
pub struct WorkerState {
    config: WorkerStateConfig,
    tasks: FxHashMap<Key, WorkerTask>,
    data: FxHashMap<Key, WorkerData>,
    ready: BTreeMap<ReadyKey, Key>,
    executing: usize,
    memory_lru: Lru,
    cache_lru: Lru,
    live_lru: Lru,
    oversized: Vec<Key>,
    managed: u64,
    cache_bytes: u64,
    pinned_bytes: u64,
    live_bytes: u64,
    unmanaged: u64,
    /// Bytes of values spilled to disk.
    disk_bytes: u64,
    paused: bool,
    closing: bool,
    spill_failed: bool,
    tick: u64,
    seq: u64,
    log: VecDeque<Transition>,
    now: u64,
    out: Vec<WorkerCommand>,
}

impl fmt::Debug for WorkerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerState")
            .field("tasks", &self.tasks.len())
            .field("data", &self.data.len())
            .field("executing", &self.executing)
            .field("managed", &self.managed)
            .field("paused", &self.paused)
            .finish()
    }
}

impl WorkerState {
    /// An empty worker.
    pub fn new(config: WorkerStateConfig) -> Self {
        WorkerState {
            config: WorkerStateConfig { nthreads: config.nthreads.max(1), ..config },
            tasks: FxHashMap::default(),
            data: FxHashMap::default(),
            ready: BTreeMap::new(),
            executing: 0,
            memory_lru: Lru::new(),
            cache_lru: Lru::new(),
            live_lru: Lru::new(),
            oversized: Vec::new(),
            managed: 0,
            cache_bytes: 0,
            pinned_bytes: 0,
            live_bytes: 0,
            unmanaged: 0,
            disk_bytes: 0,
            paused: false,
            closing: false,
            spill_failed: false,
            tick: 0,
            seq: 0,
            log: VecDeque::new(),
            now: 0,
            out: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &WorkerStateConfig {
        &self.config
    }

    /// Tasks assigned here and not finished.
    pub fn tasks(&self) -> &FxHashMap<Key, WorkerTask> {
        &self.tasks
    }

    /// Values here or on their way.
    pub fn data(&self) -> &FxHashMap<Key, WorkerData> {
        &self.data
    }

    /// Managed memory: bytes of own outputs and put values in memory.
    pub fn memory(&self) -> u64 {
        self.managed
    }

    /// Bytes of fetched copies in the bounded cache (no task here waits for them).
    pub fn fetch_cache_bytes(&self) -> u64 {
        self.cache_bytes
    }

    /// Whether memory is over the pause threshold (nothing new starts).
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// Tasks executing (including cancelled ones still running).
    pub fn executing(&self) -> usize {
        self.executing
    }

    /// Memory of the process beyond the managed values (last measured).
    pub fn unmanaged(&self) -> u64 {
        self.unmanaged
    }

    /// Bytes of the values spilled to disk.
    pub fn spilled_bytes(&self) -> u64 {
        self.disk_bytes
    }

    /// Values spilled to disk.
    pub fn spilled(&self) -> usize {
        self.data.values().filter(|d| matches!(d.state, DataState::Disk { .. })).count()
    }

    /// The recorded history of `key`.
    pub fn story(&self, key: &Key) -> Vec<Transition> {
        self.log.iter().filter(|t| &t.key == key).cloned().collect()
    }

    /// Processes one event at time `now` (ms) and returns what to do.
    pub fn handle(&mut self, event: WorkerEvent, now: u64) -> Vec<WorkerCommand> {
        let mut out = Vec::new();
        self.handle_into(event, now, &mut out);
        out
    }

    /// As [`WorkerState::handle`], appending the commands to `out` (a buffer
    /// the caller reuses: no allocation per event).
    pub fn handle_into(&mut self, event: WorkerEvent, now: u64, out: &mut Vec<WorkerCommand>) {
        self.now = now;
        let mut may_spill = true;
        match event {
            WorkerEvent::Compute { key, op, payload, deps, priority } => {
                self.compute(key, op, payload, deps, priority)
            }
            WorkerEvent::DataArrived { key, nbytes } => self.data_arrived(key, nbytes),
            WorkerEvent::FetchFailed { key, from, message } => {
                self.fetch_failed(key, &from, &message)
            }
            WorkerEvent::ExecuteDone { key, nbytes } => self.execute_done(key, nbytes),
            WorkerEvent::ExecuteFailed { key, message, cause } => {
                self.execute_failed(key, message, cause)
            }
            WorkerEvent::Put { key, nbytes } => {
                self.make_managed(&key, nbytes, "put by a client");
            }
            WorkerEvent::Served { key } => self.touch(&key),
            WorkerEvent::SpillFailed { key, message } => {
                may_spill = false;
                self.spill_failed = true;
                if let Some(DataState::Disk { nbytes }) = self.data.get(&key).map(|d| &d.state) {
                    let nbytes = *nbytes;
                    let why = self.why(|| format!("spill failed: {message}"));
                    self.set_data_state(&key, DataState::Memory { nbytes }, why);
                }
            }
            WorkerEvent::MemoryMeasured { process } => {
                self.unmanaged = process.saturating_sub(self.managed)
            }
            WorkerEvent::Free { keys } => {
                for k in keys {
                    self.free(k);
                }
            }
            WorkerEvent::Steal { key } => {
                let stolen = matches!(
                    self.tasks.get(&key).map(|t| &t.state),
                    Some(WorkerTaskState::Waiting { .. } | WorkerTaskState::Ready)
                );
                if stolen {
                    self.forget_task(&key, "stolen");
                }
                self.out.push(WorkerCommand::StealResponse { key, stolen });
            }
            WorkerEvent::DropCache => {
                let bound = std::mem::replace(&mut self.config.fetch_cache_bytes, 0);
                self.evict_cache();
                self.config.fetch_cache_bytes = bound;
            }
            WorkerEvent::Closing => self.closing = true,
        }
        if may_spill {
            self.spill();
        }
        self.paused =
            self.config.pause_bytes > 0 && self.managed + self.unmanaged > self.config.pause_bytes;
        self.schedule();
        // Last: starting tasks releases the copies they waited for.
        self.evict_cache();
        out.append(&mut self.out);
    }

    /// A reason for the story, formatted only when the story is kept.
    fn why(&self, reason: impl FnOnce() -> String) -> Cow<'static, str> {
        if self.config.log_capacity == 0 {
            Cow::Borrowed("")
        } else {
            Cow::Owned(reason())
        }
    }

    fn record(
        &mut self,
        key: &Key,
        from: &'static str,
        to: &'static str,
        reason: Cow<'static, str>,
    ) {
        if self.config.log_capacity == 0 {
            return;
        }
        if self.log.len() >= self.config.log_capacity {
            self.log.pop_front();
        }
        self.log.push_back(Transition { key: key.clone(), from, to, reason, at: self.now });
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    // ------------------------------------------------------------ tasks

    fn compute(
        &mut self,
        key: Key,
        op: String,
        payload: Arc<Vec<u8>>,
        deps: Vec<(Key, String)>,
        priority: i32,
    ) {
        if self.closing {
            // The scheduler gives it to another worker once this one has left.
            return;
        }
        if let Some(t) = self.tasks.get(&key) {
            if t.state == WorkerTaskState::Cancelled {
                self.set_task_state(&key, WorkerTaskState::Executing, "computed again");
            }
            // Already here: one run, one report.
            return;
        }
        if let Some(d) = self.data.get(&key) {
            match d.state {
                DataState::Memory { nbytes } | DataState::Disk { nbytes } => {
                    self.data.get_mut(&key).expect("checked above").wanted = true;
                    self.out.push(WorkerCommand::TaskFinished { key, nbytes });
                    return;
                }
                DataState::Fetched { nbytes } => {
                    self.make_managed(&key, nbytes, "computed elsewhere, copy here");
                    self.out.push(WorkerCommand::TaskFinished { key, nbytes });
                    return;
                }
                // Run it anyway; the copy in flight is kept only if it arrives first.
                DataState::Flight { .. } => {}
            }
        }
        // An input that is neither here, nor on its way, nor anywhere cannot be had.
        if let Some((missing, _)) =
            deps.iter().find(|(d, from)| from.is_empty() && !self.data.contains_key(d))
        {
            let missing = missing.clone();
            self.out.push(WorkerCommand::DataMissing { key, missing });
            return;
        }
        let mut waiting_for = 0;
        let mut dep_keys = Vec::with_capacity(deps.len());
        for (d, from) in deps {
            match self.data.get_mut(&d) {
                Some(e) => {
                    // Joining a fetch: a holder named now is asked if the one asked fails.
                    if let DataState::Flight { from: asked, candidates } = &mut e.state {
                        if !from.is_empty() && *asked != from && !candidates.contains(&from) {
                            candidates.push(from);
                        }
                    }
                    let local = e.state.is_local();
                    if !self.add_dependent(&d, &key) {
                        continue; // listed twice
                    }
                    if !local {
                        waiting_for += 1;
                    }
                }
                None => {
                    waiting_for += 1;
                    let tick = self.next_tick();
                    let mut dependents = FxHashSet::default();
                    dependents.insert(key.clone());
                    self.data.insert(
                        d.clone(),
                        WorkerData {
                            state: DataState::Flight { from: from.clone(), candidates: Vec::new() },
                            dependents,
                            wanted: false,
                            live: false,
                            tick,
                        },
                    );
                    let why = self.why(|| format!("needed by {key}"));
                    self.record(&d, "new", "flight", why);
                    self.out.push(WorkerCommand::Fetch { key: d.clone(), from });
                }
            }
            dep_keys.push(d);
        }
        self.seq += 1;
        let state = if waiting_for == 0 {
            self.ready.insert((Reverse(priority), self.seq), key.clone());
            WorkerTaskState::Ready
        } else {
            WorkerTaskState::Waiting { missing: waiting_for }
        };
        self.record(&key, "new", state.name(), Cow::Borrowed("compute"));
        self.tasks.insert(
            key,
            WorkerTask {
                state,
                op: Arc::from(op),
                deps: dep_keys,
                priority,
                payload,
                seq: self.seq,
            },
        );
    }

    fn set_task_state(
        &mut self,
        key: &Key,
        to: WorkerTaskState,
        reason: impl Into<Cow<'static, str>>,
    ) {
        let Some(t) = self.tasks.get_mut(key) else { return };
        let from = t.state.name();
        if t.state == WorkerTaskState::Ready {
            self.ready.remove(&(Reverse(t.priority), t.seq));
        }
        if to == WorkerTaskState::Ready {
            self.ready.insert((Reverse(t.priority), t.seq), key.clone());
        }
        let to_name = to.name();
        t.state = to;
        self.record(key, from, to_name, reason.into());
    }

    /// Removes a task that has not started, releasing its inputs.
    fn forget_task(&mut self, key: &Key, reason: &'static str) {
        let Some(t) = self.tasks.remove(key) else { return };
        match t.state {
            WorkerTaskState::Ready => {
                self.ready.remove(&(Reverse(t.priority), t.seq));
            }
            WorkerTaskState::Executing | WorkerTaskState::Cancelled => {
                self.executing -= 1;
            }
            WorkerTaskState::Waiting { .. } => {}
        }
        self.record(key, t.state.name(), "forgotten", Cow::Borrowed(reason));
        for d in &t.deps {
            self.remove_dependent(d, key);
        }
    }

    /// Starts ready tasks while slots are free and the worker is not paused.
    fn schedule(&mut self) {
        while !self.paused && self.executing < self.config.nthreads {
            let Some((_, key)) = self.ready.pop_first() else { break };
            let t = self.tasks.get_mut(&key).expect("ready tasks exist");
            t.state = WorkerTaskState::Executing;
            let deps = std::mem::take(&mut t.deps);
            let payload = t.payload.clone();
            let op = t.op.clone();
            self.executing += 1;
            self.record(&key, "ready", "executing", Cow::Borrowed("slot free"));
            for d in &deps {
                self.touch(d);
            }
            let at = self.out.len();
            for d in &deps {
                self.remove_dependent(d, &key);
            }
            // Before the drops that releasing the inputs caused: the shell
            // takes the inputs first.
            self.out.insert(at, WorkerCommand::Execute { key, op, payload, deps });
        }
    }

    fn execute_done(&mut self, key: Key, nbytes: u64) {
        let state = self.tasks.get(&key).map(|t| t.state.clone());
        match state {
            Some(WorkerTaskState::Executing) => {
                self.tasks.remove(&key);
                self.executing -= 1;
                self.record(&key, "executing", "finished", Cow::Borrowed("executed"));
                let nbytes = self.make_managed(&key, nbytes, "executed");
                self.out.push(WorkerCommand::TaskFinished { key: key.clone(), nbytes });
                self.keep_value(&key);
            }
            Some(WorkerTaskState::Cancelled) => {
                self.tasks.remove(&key);
                self.executing -= 1;
                self.record(&key, "cancelled", "forgotten", Cow::Borrowed("executed, not needed"));
                self.unneeded_output(&key, nbytes);
            }
            // No run of ours (a bug in the shell): keep nothing new.
            Some(WorkerTaskState::Waiting { .. } | WorkerTaskState::Ready) | None => {
                self.unneeded_output(&key, nbytes);
            }
        }
    }

    /// The output of a run nobody wants: it serves tasks here that wait for
    /// it as a fetched copy would, else it goes.
    fn unneeded_output(&mut self, key: &Key, nbytes: u64) {
        match self.data.get(key).map(|d| &d.state) {
            None => self.out.push(WorkerCommand::Drop { key: key.clone() }),
            Some(DataState::Flight { .. }) => {
                self.set_data_state(key, DataState::Fetched { nbytes }, "executed");
                self.out.push(WorkerCommand::DropValue { key: key.clone() });
            }
            Some(_) => {
                if !self.data[key].live {
                    self.out.push(WorkerCommand::DropValue { key: key.clone() });
                }
            }
        }
    }

    fn execute_failed(&mut self, key: Key, message: String, cause: FailureCause) {
        let Some(t) = self.tasks.get(&key) else { return };
        match t.state {
            WorkerTaskState::Executing => {
                let op = t.op.to_string();
                self.forget_task(&key, "failed");
                let failure = TaskFailure {
                    key: key.clone(),
                    op,
                    message,
                    worker: Some(self.config.name.clone()),
                    kind: cause,
                };
                self.out.push(WorkerCommand::TaskFailed { key, failure });
            }
            WorkerTaskState::Cancelled => self.forget_task(&key, "failed, not needed"),
            WorkerTaskState::Waiting { .. } | WorkerTaskState::Ready => {}
        }
    }

    fn free(&mut self, key: Key) {
        match self.tasks.get(&key).map(|t| &t.state) {
            Some(WorkerTaskState::Waiting { .. } | WorkerTaskState::Ready) => {
                self.forget_task(&key, "freed")
            }
            Some(WorkerTaskState::Executing) => {
                self.set_task_state(&key, WorkerTaskState::Cancelled, "freed while executing")
            }
            Some(WorkerTaskState::Cancelled) | None => {}
        }
        let Some(d) = self.data.get_mut(&key) else { return };
        if !d.state.is_local() {
            return; // the fetch goes on; the copy lands in the cache
        }
        d.wanted = false;
        if d.dependents.is_empty() {
            self.drop_data(&key, "freed");
        }
    }

    // ------------------------------------------------------------ values

    /// Leaves the accounting of `key`'s current state (before a change).
    fn leave(&mut self, key: &Key) {
        let d = &self.data[key];
        match d.state {
            DataState::Memory { nbytes } => {
                self.managed -= nbytes;
                self.memory_lru.remove(&d.tick);
            }
            DataState::Fetched { nbytes } if d.dependents.is_empty() => {
                self.cache_bytes -= nbytes;
                self.cache_lru.remove(&d.tick);
            }
            DataState::Fetched { nbytes } => self.pinned_bytes -= nbytes,
            DataState::Disk { nbytes } => self.disk_bytes -= nbytes,
            DataState::Flight { .. } => {}
        }
    }

    /// Enters the accounting of `key`'s current state (after a change).
    fn enter(&mut self, key: &Key) {
        let d = &self.data[key];
        match d.state {
            DataState::Memory { nbytes } => {
                self.managed += nbytes;
                self.memory_lru.insert(d.tick, key.clone());
            }
            DataState::Fetched { nbytes } if d.dependents.is_empty() => {
                self.cache_bytes += nbytes;
                self.cache_lru.insert(d.tick, key.clone());
                if nbytes > self.config.fetch_cache_bytes {
                    self.oversized.push(key.clone());
                }
            }
            DataState::Fetched { nbytes } => self.pinned_bytes += nbytes,
            DataState::Disk { nbytes } => self.disk_bytes += nbytes,
            DataState::Flight { .. } => {}
        }
    }

    /// Moves a value to `to`; when it arrives, the tasks waiting for it are told.
    fn set_data_state(&mut self, key: &Key, to: DataState, reason: impl Into<Cow<'static, str>>) {
        self.leave(key);
        let tick = self.next_tick();
        let d = self.data.get_mut(key).expect("set_data_state of a known value");
        let from = d.state.name();
        let arrived = !d.state.is_local() && to.is_local();
        let to_name = to.name();
        d.state = to;
        let old = std::mem::replace(&mut d.tick, tick);
        if d.live {
            retick(&mut self.live_lru, old, tick);
        }
        self.enter(key);
        self.record(key, from, to_name, reason.into());
        if arrived {
            // Taken out while the tasks are told (which does not look at it).
            let d = self.data.get_mut(key).expect("known");
            let dependents = std::mem::take(&mut d.dependents);
            for t in &dependents {
                if let Some(WorkerTaskState::Waiting { missing }) =
                    self.tasks.get(t).map(|t| t.state.clone())
                {
                    let to = if missing <= 1 {
                        WorkerTaskState::Ready
                    } else {
                        WorkerTaskState::Waiting { missing: missing - 1 }
                    };
                    let why = self.why(|| format!("input {key} arrived"));
                    self.set_task_state(t, to, why);
                }
            }
            self.data.get_mut(key).expect("known").dependents = dependents;
        }
    }

    /// Makes `key` a managed value (own output or put), creating it or
    /// promoting a copy; returns its size (the bytes the shell kept).
    fn make_managed(&mut self, key: &Key, nbytes: u64, reason: &'static str) -> u64 {
        let Some(d) = self.data.get(key) else {
            let tick = self.next_tick();
            self.data.insert(
                key.clone(),
                WorkerData {
                    state: DataState::Memory { nbytes },
                    dependents: FxHashSet::default(),
                    wanted: true,
                    live: false,
                    tick,
                },
            );
            self.enter(key);
            self.record(key, "new", "memory", Cow::Borrowed(reason));
            return nbytes;
        };
        let kept = match d.state {
            DataState::Flight { .. } => nbytes,
            DataState::Fetched { nbytes: n }
            | DataState::Memory { nbytes: n }
            | DataState::Disk { nbytes: n } => n,
        };
        if matches!(d.state, DataState::Flight { .. } | DataState::Fetched { .. }) {
            self.set_data_state(key, DataState::Memory { nbytes: kept }, reason);
        } else {
            self.touch(key);
        }
        self.data.get_mut(key).expect("known").wanted = true;
        kept
    }

    /// Keeps the in-process value of a fresh output while it fits, dropping the
    /// least recently used others.
    fn keep_value(&mut self, key: &Key) {
        let d = &self.data[key];
        if d.live {
            return;
        }
        let nbytes = d.state.nbytes();
        if nbytes > self.config.live_bytes {
            self.out.push(WorkerCommand::DropValue { key: key.clone() });
            return;
        }
        while self.live_bytes + nbytes > self.config.live_bytes {
            let Some((_, victim)) = self.live_lru.pop_first() else { break };
            let v = self.data.get_mut(&victim).expect("live values are known");
            v.live = false;
            self.live_bytes -= v.state.nbytes();
            self.out.push(WorkerCommand::DropValue { key: victim });
        }
        let d = self.data.get_mut(key).expect("known");
        d.live = true;
        self.live_bytes += nbytes;
        self.live_lru.insert(d.tick, key.clone());
    }

    /// Makes `key` the most recently used value (moving it within its LRU
    /// orders, without cloning its key).
    fn touch(&mut self, key: &Key) {
        let tick = self.next_tick();
        let Some(d) = self.data.get_mut(key) else { return };
        let old = std::mem::replace(&mut d.tick, tick);
        match d.state {
            DataState::Memory { .. } => retick(&mut self.memory_lru, old, tick),
            DataState::Fetched { .. } if d.dependents.is_empty() => {
                retick(&mut self.cache_lru, old, tick)
            }
            DataState::Fetched { .. } | DataState::Flight { .. } | DataState::Disk { .. } => {}
        }
        if d.live {
            retick(&mut self.live_lru, old, tick);
        }
    }

    /// `task` needs `key`; false if it was listed already. A copy's first
    /// dependent takes it out of the fetch cache (it is pinned).
    fn add_dependent(&mut self, key: &Key, task: &Key) -> bool {
        let d = self.data.get_mut(key).expect("known");
        if !(d.dependents.is_empty() && matches!(d.state, DataState::Fetched { .. })) {
            return d.dependents.insert(task.clone());
        }
        self.leave(key);
        self.data.get_mut(key).expect("known").dependents.insert(task.clone());
        self.enter(key);
        true
    }

    /// `task` no longer needs `key`: an unwanted value nobody here waits for
    /// goes; a copy nobody here waits for enters the fetch cache.
    fn remove_dependent(&mut self, key: &Key, task: &Key) {
        let Some(d) = self.data.get_mut(key) else { return };
        let last = d.dependents.len() == 1 && d.dependents.contains(task);
        if last && matches!(d.state, DataState::Fetched { .. }) {
            self.leave(key);
            self.data.get_mut(key).expect("known").dependents.clear();
            self.enter(key);
            return;
        }
        if !d.dependents.remove(task) {
            return;
        }
        let unneeded = d.dependents.is_empty()
            && !d.wanted
            && matches!(d.state, DataState::Memory { .. } | DataState::Disk { .. });
        if unneeded {
            self.drop_data(key, "freed, no task here needs it");
        }
    }

    fn drop_data(&mut self, key: &Key, reason: &'static str) {
        if !self.data.contains_key(key) {
            return;
        }
        self.leave(key);
        let d = self.data.remove(key).expect("checked above");
        if d.live {
            self.live_bytes -= d.state.nbytes();
            self.live_lru.remove(&d.tick);
        }
        self.record(key, d.state.name(), "forgotten", Cow::Borrowed(reason));
        self.out.push(WorkerCommand::Drop { key: key.clone() });
    }

    fn data_arrived(&mut self, key: Key, nbytes: u64) {
        match self.data.get(&key).map(|d| &d.state) {
            Some(DataState::Flight { .. }) => {
                self.set_data_state(&key, DataState::Fetched { nbytes }, "fetched")
            }
            // Computed or put meanwhile: the shell kept the bytes it had.
            Some(_) => {}
            None => self.out.push(WorkerCommand::Drop { key }),
        }
    }

    /// A fetch failed: the next holder named is asked; when none is left,
    /// the tasks waiting for the value are dropped as missing an input.
    fn fetch_failed(&mut self, key: Key, from: &str, message: &str) {
        let Some(d) = self.data.get_mut(&key) else { return };
        let DataState::Flight { from: asked, candidates } = &mut d.state else {
            return; // here already by other means
        };
        if asked != from {
            // A fetch for an earlier record of the value; the one asked now is still out.
            return;
        }
        if !candidates.is_empty() {
            let next = candidates.remove(0);
            asked.clone_from(&next);
            let why = self.why(|| format!("fetch from {from} failed: {message}; asking {next}"));
            self.record(&key, "flight", "flight", why);
            self.out.push(WorkerCommand::Fetch { key, from: next });
            return;
        }
        let d = self.data.remove(&key).expect("checked above");
        let why = self.why(|| format!("fetch from {from} failed: {message}"));
        self.record(&key, "flight", "forgotten", why);
        // Reported in the order the tasks came, not the set's.
        let mut dependents: Vec<(u64, Key)> = d
            .dependents
            .into_iter()
            .map(|t| (self.tasks.get(&t).map_or(0, |t| t.seq), t))
            .collect();
        dependents.sort_unstable_by_key(|(seq, _)| *seq);
        for (_, task) in dependents {
            self.out.push(WorkerCommand::DataMissing { key: task.clone(), missing: key.clone() });
            self.forget_task(&task, "an input is missing");
        }
    }

    /// Drops least recently used copies while the fetch cache is over its bound.
    fn evict_cache(&mut self) {
        // A copy larger than the whole cache goes without pushing others out.
        for key in std::mem::take(&mut self.oversized) {
            if self.data.get(&key).is_some_and(|d| {
                d.dependents.is_empty() && matches!(d.state, DataState::Fetched { .. })
            }) {
                self.drop_data(&key, "larger than the fetch cache");
            }
        }
        while self.cache_bytes > self.config.fetch_cache_bytes {
            // Out of the order already; `leave` finds it gone.
            let Some((_, key)) = self.cache_lru.pop_first() else { break };
            self.drop_data(&key, "fetch cache full");
        }
    }

    /// Spills least recently used values while memory is over the target.
    fn spill(&mut self) {
        self.spill_failed = false;
        if self.config.target_bytes == 0 {
            return;
        }
        while self.managed + self.unmanaged > self.config.target_bytes {
            // Out of the order already; `leave` finds it gone.
            let Some((_, key)) = self.memory_lru.pop_first() else { break };
            let nbytes = self.data[&key].state.nbytes();
            self.set_data_state(&key, DataState::Disk { nbytes }, "memory above target");
            self.out.push(WorkerCommand::Spill { key });
        }
    }

    /// Checks the internal invariants; returns a description of the first violation.
    pub fn check_invariants(&self) -> Result<(), String> {
        let (mut managed, mut cache, mut pinned, mut live, mut disk) = (0, 0, 0, 0, 0);
        let mut memory_n = 0;
        let mut cache_n = 0;
        for (k, d) in &self.data {
            match d.state {
                DataState::Memory { nbytes } => {
                    managed += nbytes;
                    memory_n += 1;
                    if self.memory_lru.get(&d.tick) != Some(k) {
                        return Err(format!("{k} in memory but not in the memory LRU"));
                    }
                }
                DataState::Fetched { nbytes } if d.dependents.is_empty() => {
                    cache += nbytes;
                    cache_n += 1;
                    if self.cache_lru.get(&d.tick) != Some(k) {
                        return Err(format!("{k} fetched, unpinned, not in the cache LRU"));
                    }
                }
                DataState::Fetched { nbytes } => pinned += nbytes,
                DataState::Disk { nbytes } => disk += nbytes,
                DataState::Flight { .. } => {}
            }
            if d.wanted && !matches!(d.state, DataState::Memory { .. } | DataState::Disk { .. }) {
                return Err(format!("{k} wanted but {}", d.state.name()));
            }
            if !d.wanted
                && d.dependents.is_empty()
                && matches!(d.state, DataState::Memory { .. } | DataState::Disk { .. })
            {
                return Err(format!("{k} {} but neither wanted nor needed", d.state.name()));
            }
            if d.live {
                if !matches!(d.state, DataState::Memory { .. } | DataState::Disk { .. }) {
                    return Err(format!("{k} has a live value but is {}", d.state.name()));
                }
                live += d.state.nbytes();
                if self.live_lru.get(&d.tick) != Some(k) {
                    return Err(format!("{k} live but not in the live LRU"));
                }
            }
            for t in &d.dependents {
                let Some(task) = self.tasks.get(t) else {
                    return Err(format!("{k} lists unknown dependent {t}"));
                };
                if !matches!(task.state, WorkerTaskState::Waiting { .. } | WorkerTaskState::Ready)
                    || !task.deps.contains(k)
                {
                    return Err(format!("{k} lists {t} ({}) as dependent", task.state.name()));
                }
            }
        }
        if memory_n != self.memory_lru.len() || cache_n != self.cache_lru.len() {
            return Err(format!(
                "LRU sizes: memory {} for {memory_n} values, cache {} for {cache_n}",
                self.memory_lru.len(),
                self.cache_lru.len()
            ));
        }
        if (managed, cache, pinned, live)
            != (self.managed, self.cache_bytes, self.pinned_bytes, self.live_bytes)
        {
            return Err(format!(
                "accounting (managed, cache, pinned, live) = {:?}, sums = {:?}",
                (self.managed, self.cache_bytes, self.pinned_bytes, self.live_bytes),
                (managed, cache, pinned, live)
            ));
        }
        if disk != self.disk_bytes {
            return Err(format!("{} spilled bytes counted, {disk} on disk", self.disk_bytes));
        }
        if self.live_lru.len() != self.data.values().filter(|d| d.live).count() {
            return Err("live LRU lists values that are not live".into());
        }
        if self.cache_bytes > self.config.fetch_cache_bytes {
            return Err(format!(
                "fetch cache holds {} bytes, bound {}",
                self.cache_bytes, self.config.fetch_cache_bytes
            ));
        }
        if self.live_bytes > self.config.live_bytes {
            return Err(format!(
                "{} live bytes, bound {}",
                self.live_bytes, self.config.live_bytes
            ));
        }
        let (mut ready, mut executing) = (0, 0);
        for (k, t) in &self.tasks {
            match t.state {
                WorkerTaskState::Waiting { missing } => {
                    let in_flight = t
                        .deps
                        .iter()
                        .filter(|d| self.data.get(*d).is_some_and(|e| !e.state.is_local()))
                        .count();
                    if missing == 0 || missing != in_flight {
                        return Err(format!("{k} waits for {missing}, {in_flight} in flight"));
                    }
                }
                WorkerTaskState::Ready => {
                    ready += 1;
                    if self.ready.get(&(Reverse(t.priority), t.seq)) != Some(k) {
                        return Err(format!("{k} ready but not queued"));
                    }
                    if let Some(d) = t
                        .deps
                        .iter()
                        .find(|d| !self.data.get(*d).is_some_and(|e| e.state.is_local()))
                    {
                        return Err(format!("{k} ready but input {d} is not here"));
                    }
                }
                WorkerTaskState::Executing | WorkerTaskState::Cancelled => executing += 1,
            }
            for d in &t.deps {
                if !self.data.get(d).is_some_and(|e| e.dependents.contains(k)) {
                    return Err(format!("{k} needs {d}, which does not list it"));
                }
            }
        }
        if ready != self.ready.len() || executing != self.executing {
            return Err(format!(
                "{ready} ready / {} queued, {executing} executing / {} counted",
                self.ready.len(),
                self.executing
            ));
        }
        if self.executing > self.config.nthreads {
            return Err(format!(
                "{} executing on {} threads",
                self.executing, self.config.nthreads
            ));
        }
        if !self.paused && self.executing < self.config.nthreads && !self.ready.is_empty() {
            return Err("a slot is free, a task is ready, nothing starts".into());
        }
        let memory = self.managed + self.unmanaged;
        if self.paused != (self.config.pause_bytes > 0 && memory > self.config.pause_bytes) {
            return Err(format!("paused = {} at {memory} bytes", self.paused));
        }
        if !self.spill_failed
            && self.config.target_bytes > 0
            && memory > self.config.target_bytes
            && !self.memory_lru.is_empty()
        {
            return Err(format!("{memory} bytes over the target, values left in memory"));
        }
        Ok(())
    }
}

/// Moves an LRU entry from tick `old` to tick `new`, if it is there.
fn retick(lru: &mut Lru, old: u64, new: u64) {
    if let Some(key) = lru.remove(&old) {
        lru.insert(new, key);
    }
}
