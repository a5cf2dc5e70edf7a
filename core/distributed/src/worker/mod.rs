//! The worker process: runs tasks the scheduler assigns, serves its results to
//! peers and clients (the data plane), and keeps memory under its limit by
//! spilling least-recently-used results to disk.
//!
//! Two layers: [`WorkerState`] (`state.rs`), a pure state machine that keeps
//! the books (which values are here, in memory, on disk or in flight, their
//! sizes and LRU order, the fetch cache, the ready queue, thread slots,
//! pausing), and this thin async shell, which holds the bytes, turns scheduler
//! messages and I/O completions into [`WorkerEvent`]s and carries out the
//! [`WorkerCommand`]s that come back, in order.
//!
//! Only the event loop changes what the shell holds: fetches, task threads
//! and the data server send the bytes they bring inside their message (the
//! `Inbox`), and the loop stores them right before the state machine handles
//! the event, so no command carried out in between can drop them. The loop
//! never waits: reports go to an unbounded outbox, spill writes and file
//! removals run on blocking threads, and the heartbeat has its own task.
//!
//! Values are stored as their wire envelopes (`Value::to_envelope`), so a
//! result is serialized once, when it is produced; sending, spilling and
//! counting memory all use those bytes. The exception is a result whose
//! size is known without encoding it (`Value::size_hint`, e.g. dataframe
//! partitions): it is kept as the value and encoded only when it leaves
//! (served or spilled), so most intermediate results of a shuffle are never
//! encoded. The shell also keeps the in-process values of the worker's own
//! outputs (as long as the state machine keeps them live), so a later task
//! here skips decoding.

mod spans;
mod state;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rask_core::{Key, Value};
use rustc_hash::FxHashMap;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

pub use self::state::{
    DataState, WorkerCommand, WorkerData, WorkerEvent, WorkerState, WorkerStateConfig, WorkerTask,
    WorkerTaskState,
};
use crate::auth::{AttachToken, CheckToken, Tls};
use crate::error::DistError;
use crate::protocol::{
    self, pb, CHUNK_BYTES, MAX_MESSAGE_BYTES, MAX_VALUE_BYTES, PROTOCOL_VERSION,
};
pub use crate::protocol::{IDENTITY_OP, LITERAL_OP};
use crate::scheduler::FailureCause;

/// Settings of a worker process.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Scheduler address (`host:port`).
    pub scheduler: String,
    /// Interface to bind the data server to.
    pub host: String,
    /// Port of the data server (0 = any free port).
    pub port: u16,
    /// Name (defaults to the data address).
    pub name: Option<String>,
    /// Tasks run at once.
    pub nthreads: usize,
    /// Memory limit in bytes (0 = none).
    pub memory_limit: u64,
    /// Abstract resources (`GPU` → 1).
    pub resources: BTreeMap<String, f64>,
    /// Where spilled values go.
    pub local_dir: PathBuf,
    /// Spill above this fraction of the memory limit.
    pub target_fraction: f64,
    /// Pause (run nothing new) above this fraction.
    pub pause_fraction: f64,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// How long to keep trying to reach the scheduler.
    pub connect_timeout: Duration,
    /// Shared cluster token (empty = none; see [`crate::auth`]).
    pub token: String,
    /// The address other machines reach this worker at (`host` or
    /// `host:port`); by default the bind address, or, when binding all
    /// interfaces, the address this machine uses towards the scheduler.
    pub contact_address: Option<String>,
    /// TLS for every connection: to the scheduler, to and from peers and clients.
    pub tls: Option<Tls>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            scheduler: "127.0.0.1:8786".into(),
            host: "127.0.0.1".into(),
            port: 0,
            name: None,
            nthreads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            memory_limit: 0,
            resources: BTreeMap::new(),
            local_dir: std::env::temp_dir().join("rask-worker"),
            target_fraction: 0.6,
            pause_fraction: 0.8,
            heartbeat: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(30),
            token: String::new(),
            contact_address: None,
            tls: None,
        }
    }
}

/// A spilled value's file, deleted when the last holder lets go: a task or a
/// reader that took it can still read it after the value is dropped.
struct SpillFile {
    path: PathBuf,
}

impl Drop for SpillFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A value's bytes as the shell holds them.
enum Held {
    /// In memory; also while being written to disk (readable until the write is done).
    Memory { bytes: Arc<Vec<u8>> },
    /// In memory as the value a task here made, of a type whose size is
    /// known without encoding it ([`Value::size_hint`]): it is encoded only
    /// when it leaves (served to a peer or client, or spilled).
    Lazy { value: Value },
    /// On disk.
    Disk { file: Arc<SpillFile> },
}

/// The bytes and in-process values the state machine keeps the books of.
/// Only the event loop changes them; the data server reads them.
#[derive(Default)]
struct Holdings {
    held: FxHashMap<Key, Held>,
    values: FxHashMap<Key, Value>,
}

/// What reaches the event loop from fetches, task threads, the data server
/// and spill writes. Bytes travel inside the message and the loop stores
/// them right before the state machine handles the event they come with, so
/// no `Drop` carried out in between can lose them.
enum Inbox {
    /// An event that brings no bytes.
    Event { event: WorkerEvent },
    /// A fetch brought a copy.
    Fetched { key: Key, bytes: Arc<Vec<u8>> },
    /// A task ran (`bytes`: its encoding, unless the value is kept lazily).
    Ran { key: Key, bytes: Option<Arc<Vec<u8>>>, nbytes: u64, value: Value, micros: u64 },
    /// A client put a value; `stored` is told once the state machine knows it.
    Put { key: Key, bytes: Arc<Vec<u8>>, stored: oneshot::Sender<()> },
    /// Writing a value to disk finished (`from`: what was written).
    Spilled { key: Key, from: Held, result: Result<SpillFile, String> },
}

/// What the data server, fetches, task threads and the heartbeat share with
/// the event loop.
struct Shared {
    holdings: Mutex<Holdings>,
    inbox: mpsc::UnboundedSender<Inbox>,
    /// Managed memory, as of the last event (for the heartbeat).
    memory: AtomicU64,
    /// Whether paused, as of the last event (for the heartbeat).
    paused: AtomicBool,
    /// Unmanaged and spilled bytes, as of the last event (for the heartbeat).
    unmanaged: AtomicU64,
    spilled: AtomicU64,
    /// Bytes fetched from peers and served to peers and clients, since start.
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// Transfers and disk I/O since the last heartbeat.
    spans: Mutex<spans::SpanLog>,
    name: String,
}

impl Shared {
    fn holdings(&self) -> MutexGuard<'_, Holdings> {
        self.holdings.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, message: Inbox) {
        // Closed only when the event loop is gone, and then nobody cares.
        let _ = self.inbox.send(message);
    }

    fn event(&self, event: WorkerEvent) {
        self.send(Inbox::Event { event });
    }

    fn span(&self, kind: pb::span::Kind, key: &Key, start: Instant, nbytes: u64) {
        let end = Instant::now();
        self.spans.lock().unwrap_or_else(|p| p.into_inner()).record(
            kind,
            key.prefix(),
            start,
            end,
            nbytes,
        );
    }
}

/// An input of a task, as the shell found it when the task started.
enum Input {
    Value(Value),
    Bytes(Arc<Vec<u8>>),
    File(Arc<SpillFile>),
}

/// The event loop's side: the state machine and what carries out its
/// commands. Nothing here waits: reports go to an unbounded outbox, spill
/// writes and file removals run on blocking threads.
struct Shell {
    state: WorkerState,
    shared: Arc<Shared>,
    outbox: mpsc::UnboundedSender<pb::WorkerMessage>,
    peers: Arc<tokio::sync::Mutex<HashMap<String, WorkerClient>>>,
    /// Presents the cluster token to peers.
    attach: AttachToken,
    tls: Option<Tls>,
    dir: PathBuf,
    spill_seq: u64,
    start: Instant,
    paused: bool,
    /// Reused for the commands of each event.
    commands: Vec<WorkerCommand>,
    /// How long each finished task ran, until its report goes out.
    ran_for: FxHashMap<Key, u64>,
}

/// A connection to a worker's data plane that presents the cluster token.
pub(crate) type DataClient = pb::worker_client::WorkerClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, AttachToken>,
>;
type WorkerClient = DataClient;

impl Shell {
    fn send(&self, msg: pb::worker_message::Msg) {
        // The scheduler session ending closes the channel; the session loop reports that.
        let _ = self.outbox.send(pb::WorkerMessage { msg: Some(msg) });
    }

    /// Leaves cleanly: tells the scheduler, accepts no new tasks, and finishes
    /// those it accepted (for at most 10 s).
    async fn close(&mut self, inbox: &mut mpsc::UnboundedReceiver<Inbox>) {
        self.send(pb::worker_message::Msg::Closing(pb::Closing {}));
        self.handle(WorkerEvent::Closing);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !self.state.tasks().is_empty() {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                Some(m) = inbox.recv() => self.receive(m),
            }
        }
    }

    /// Takes one message: stores the bytes it brings, then handles its event.
    fn receive(&mut self, message: Inbox) {
        match message {
            Inbox::Event { event } => self.handle(event),
            Inbox::Fetched { key, bytes } => {
                let nbytes = bytes.len() as u64;
                self.shared.bytes_in.fetch_add(nbytes, Ordering::Relaxed);
                self.store(&key, bytes, None);
                self.handle(WorkerEvent::DataArrived { key, nbytes });
            }
            Inbox::Ran { key, bytes, nbytes, value, micros } => {
                match bytes {
                    Some(bytes) => self.store(&key, bytes, Some(value)),
                    None => {
                        let mut h = self.shared.holdings();
                        h.held.entry(key.clone()).or_insert(Held::Lazy { value: value.clone() });
                        h.values.entry(key.clone()).or_insert(value);
                    }
                }
                self.ran_for.insert(key.clone(), micros);
                self.handle(WorkerEvent::ExecuteDone { key, nbytes });
            }
            Inbox::Put { key, bytes, stored } => {
                let nbytes = bytes.len() as u64;
                self.store(&key, bytes, None);
                self.handle(WorkerEvent::Put { key, nbytes });
                // The client may have gone; the value stays all the same.
                let _ = stored.send(());
            }
            Inbox::Spilled { key, from, result } => self.spilled(key, from, result),
        }
    }

    /// Stores fetched, computed or put bytes (and value) where none are held
    /// yet: what is already held is the same content, and the state machine's
    /// books refer to it.
    fn store(&self, key: &Key, bytes: Arc<Vec<u8>>, value: Option<Value>) {
        let mut h = self.shared.holdings();
        h.held.entry(key.clone()).or_insert(Held::Memory { bytes });
        if let Some(v) = value {
            h.values.entry(key.clone()).or_insert(v);
        }
    }

    /// Runs one event through the state machine and carries out its commands.
    fn handle(&mut self, event: WorkerEvent) {
        let now = self.start.elapsed().as_millis() as u64;
        let mut commands = std::mem::take(&mut self.commands);
        self.state.handle_into(event, now, &mut commands);
        for c in commands.drain(..) {
            self.carry_out(c);
        }
        self.commands = commands;
        self.shared.memory.store(self.state.memory(), Ordering::Relaxed);
        self.shared.unmanaged.store(self.state.unmanaged(), Ordering::Relaxed);
        self.shared.spilled.store(self.state.spilled_bytes(), Ordering::Relaxed);
        if self.state.paused() != self.paused {
            self.paused = self.state.paused();
            self.shared.paused.store(self.paused, Ordering::Relaxed);
            eprintln!(
                "worker {} {} (managed memory {} bytes)",
                self.shared.name,
                if self.paused { "paused" } else { "resumed" },
                self.state.memory()
            );
        }
    }

    fn carry_out(&mut self, c: WorkerCommand) {
        match c {
            WorkerCommand::Fetch { key, from } => {
                tokio::spawn(fetch_input(
                    self.shared.clone(),
                    self.peers.clone(),
                    self.attach.clone(),
                    self.tls.clone(),
                    key,
                    from,
                ));
            }
            WorkerCommand::Execute { key, op, payload, deps } => {
                self.execute(key, op, payload, deps)
            }
            WorkerCommand::Spill { key } => self.spill(key),
            WorkerCommand::Drop { key } => {
                let held = {
                    let mut h = self.shared.holdings();
                    h.values.remove(&key);
                    h.held.remove(&key)
                };
                if let Some(Held::Disk { file }) = held {
                    // The file goes with the last holder, off the event loop.
                    tokio::task::spawn_blocking(move || drop(file));
                }
            }
            WorkerCommand::DropValue { key } => {
                self.shared.holdings().values.remove(&key);
            }
            WorkerCommand::TaskFinished { key, nbytes } => {
                let duration_us = self.ran_for.remove(&key).unwrap_or(0);
                self.send(pb::worker_message::Msg::Finished(pb::TaskFinished {
                    key: Some(protocol::key_to_pb(&key)),
                    nbytes,
                    duration_us,
                }))
            }
            WorkerCommand::TaskFailed { key, failure } => {
                self.send(pb::worker_message::Msg::Failed(pb::TaskFailed {
                    key: Some(protocol::key_to_pb(&key)),
                    failure: Some(protocol::failure_to_pb(&failure)),
                }))
            }
            WorkerCommand::DataMissing { key, missing } => {
                self.send(pb::worker_message::Msg::Missing(pb::DataMissing {
                    key: Some(protocol::key_to_pb(&key)),
                    missing: Some(protocol::key_to_pb(&missing)),
                }))
            }
            WorkerCommand::StealResponse { key, stolen } => {
                self.send(pb::worker_message::Msg::StealResponse(pb::StealResponse {
                    key: Some(protocol::key_to_pb(&key)),
                    stolen,
                }))
            }
        }
    }

    /// Takes the inputs now (command order guarantees they are here; a
    /// spilled one's file is kept by its guard) and runs the op on a blocking
    /// thread, which reports back through the inbox.
    fn execute(&self, key: Key, op: Arc<str>, payload: Arc<Vec<u8>>, deps: Vec<Key>) {
        let inputs: Vec<(Key, Option<Input>)> = {
            let h = self.shared.holdings();
            deps.into_iter()
                .map(|d| {
                    let input = match (h.values.get(&d), h.held.get(&d)) {
                        (Some(v), _) => Some(Input::Value(v.clone())),
                        (None, Some(Held::Memory { bytes })) => Some(Input::Bytes(bytes.clone())),
                        (None, Some(Held::Lazy { value })) => Some(Input::Value(value.clone())),
                        (None, Some(Held::Disk { file })) => Some(Input::File(file.clone())),
                        (None, None) => None,
                    };
                    (d, input)
                })
                .collect()
        };
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run_task(&shared, &op, &payload, inputs)
            }))
            .unwrap_or_else(|p| {
                Err((format!("worker thread failed: {}", panic_message(&*p)), FailureCause::Worker))
            });
            shared.send(match result {
                Ok(Output { value, bytes, nbytes, micros }) => {
                    Inbox::Ran { key, bytes: bytes.map(Arc::new), nbytes, value, micros }
                }
                Err((message, cause)) => {
                    Inbox::Event { event: WorkerEvent::ExecuteFailed { key, message, cause } }
                }
            });
        });
    }

    /// Writes a value to disk on a blocking thread (encoding a lazily kept
    /// one there first); it stays in memory (and readable) until the write
    /// is done.
    fn spill(&mut self, key: Key) {
        let from = match self.shared.holdings().held.get(&key) {
            Some(Held::Memory { bytes }) => Held::Memory { bytes: bytes.clone() },
            Some(Held::Lazy { value }) => Held::Lazy { value: value.clone() },
            Some(Held::Disk { .. }) | None => return,
        };
        self.spill_seq += 1;
        let file = SpillFile { path: self.dir.join(format!("{}.rskv", self.spill_seq)) };
        let dir = self.dir.clone();
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let bytes = match &from {
                Held::Memory { bytes } => Ok(bytes.clone()),
                Held::Lazy { value } => value
                    .to_envelope()
                    .map(Arc::new)
                    .map_err(|e| format!("cannot encode {key} to spill it: {e}")),
                Held::Disk { .. } => Err("already on disk".to_string()),
            };
            let result = bytes.and_then(|bytes| {
                match std::fs::create_dir_all(&dir)
                    .and_then(|()| std::fs::write(&file.path, bytes.as_slice()))
                {
                    Ok(()) => {
                        let n = bytes.len() as u64;
                        shared.span(pb::span::Kind::DiskWrite, &key, started, n);
                        Ok(file)
                    }
                    // The guard removes what was written.
                    Err(e) => Err(format!("cannot write {}: {e}", file.path.display())),
                }
            });
            shared.send(Inbox::Spilled { key, from, result });
        });
    }

    /// A spill write finished: the file replaces what it was written from,
    /// if that is still held (else the value went meanwhile, and the file
    /// goes with its guard). A lazily kept value leaves memory with it.
    fn spilled(&mut self, key: Key, from: Held, result: Result<SpillFile, String>) {
        let mut h = self.shared.holdings();
        let current = match (h.held.get(&key), &from) {
            (Some(Held::Memory { bytes: b }), Held::Memory { bytes }) => Arc::ptr_eq(b, bytes),
            (Some(Held::Lazy { value: v }), Held::Lazy { value }) => v.same(value),
            _ => false,
        };
        match result {
            Ok(file) if current => {
                eprintln!("spilled {key} to {}", file.path.display());
                h.held.insert(key.clone(), Held::Disk { file: Arc::new(file) });
                if matches!(from, Held::Lazy { .. }) {
                    h.values.remove(&key);
                }
            }
            Ok(file) => {
                drop(h);
                tokio::task::spawn_blocking(move || drop(file));
            }
            Err(message) if current => {
                drop(h);
                tracing::error!("cannot spill {key}: {message}; keeping it in memory");
                self.handle(WorkerEvent::SpillFailed { key, message });
            }
            Err(_) => {}
        }
    }
}

/// This process's CPU use between two calls, in percent of one core (Linux
/// `/proc/self/stat`; 0 elsewhere).
#[derive(Default)]
struct CpuMeter {
    last: Option<(Instant, f64)>,
}

impl CpuMeter {
    fn seconds() -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat(5): 12 and 13 after the name.
        let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        Some(ticks / hz)
    }

    fn percent(&mut self) -> f64 {
        let now = Instant::now();
        let Some(cpu) = Self::seconds() else { return 0.0 };
        let p = match self.last {
            Some((t, c)) if now > t => 100.0 * (cpu - c) / (now - t).as_secs_f64(),
            _ => 0.0,
        };
        self.last = Some((now, cpu));
        p.max(0.0)
    }
}

/// Sends a heartbeat every `every` with the figures the event loop last
/// published; on its own task, so that a busy loop does not delay it.
async fn heartbeat(
    shared: Arc<Shared>,
    outbox: mpsc::UnboundedSender<pb::WorkerMessage>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    let mut cpu = CpuMeter::default();
    loop {
        tick.tick().await;
        let msg = pb::worker_message::Msg::Heartbeat(pb::Heartbeat {
            memory: shared.memory.load(Ordering::Relaxed),
            paused: shared.paused.load(Ordering::Relaxed),
            // The process's resident memory beyond the managed values (for
            // the dashboard; spilling and pausing count managed bytes).
            unmanaged: rask_core::diagnostics::report::resident_bytes()
                .saturating_sub(shared.memory.load(Ordering::Relaxed))
                .max(shared.unmanaged.load(Ordering::Relaxed)),
            spilled: shared.spilled.load(Ordering::Relaxed),
            bytes_in: shared.bytes_in.load(Ordering::Relaxed),
            bytes_out: shared.bytes_out.load(Ordering::Relaxed),
            cpu_percent: cpu.percent(),
            spans: shared.spans.lock().unwrap_or_else(|p| p.into_inner()).drain(Instant::now()),
        });
        if outbox.send(pb::WorkerMessage { msg: Some(msg) }).is_err() {
            break;
        }
    }
}

/// Fetches an input from its holder and reports the outcome to the event loop.
async fn fetch_input(
    shared: Arc<Shared>,
    peers: Arc<tokio::sync::Mutex<HashMap<String, WorkerClient>>>,
    attach: AttachToken,
    tls: Option<Tls>,
    key: Key,
    from: String,
) {
    let started = Instant::now();
    let client = {
        let mut p = peers.lock().await;
        match p.get(&from) {
            Some(c) => Ok(c.clone()),
            None => connect_worker(&from, &attach, tls.as_ref()).await.inspect(|c| {
                p.insert(from.clone(), c.clone());
            }),
        }
    };
    let result = match client {
        Ok(mut cl) => fetch(&mut cl, &key).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(bytes) => {
            shared.span(pb::span::Kind::Transfer, &key, started, bytes.len() as u64);
            shared.send(Inbox::Fetched { key, bytes: Arc::new(bytes) })
        }
        Err(message) => {
            tracing::warn!("{}: cannot get {key} from {from}: {message}", shared.name);
            peers.lock().await.remove(&from);
            shared.event(WorkerEvent::FetchFailed { key, from, message });
        }
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// What a task made.
struct Output {
    value: Value,
    /// Its envelope; none when the value is kept lazily.
    bytes: Option<Vec<u8>>,
    nbytes: u64,
    /// Run time (without the disk reads of its inputs).
    micros: u64,
}

/// Reads the inputs a task took (spilled ones from disk) and runs its op.
fn run_task(
    shared: &Shared,
    op: &str,
    payload: &[u8],
    inputs: Vec<(Key, Option<Input>)>,
) -> Result<Output, (String, FailureCause)> {
    let mut deps: HashMap<Key, Arc<Vec<u8>>> = HashMap::new();
    let mut live: HashMap<Key, Value> = HashMap::new();
    for (k, input) in inputs {
        match input {
            Some(Input::Value(v)) => {
                live.insert(k, v);
            }
            Some(Input::Bytes(b)) => {
                deps.insert(k, b);
            }
            Some(Input::File(file)) => {
                let started = Instant::now();
                let b = std::fs::read(&file.path).map_err(|e| {
                    (
                        format!("cannot read spilled {k} from {}: {e}", file.path.display()),
                        FailureCause::Worker,
                    )
                })?;
                shared.span(pb::span::Kind::DiskRead, &k, started, b.len() as u64);
                deps.insert(k, Arc::new(b));
            }
            // Reported by `run_op` as a dependency not on this worker.
            None => {}
        }
    }
    let started = Instant::now();
    let value = run_op(op, payload, deps, live)?;
    let micros = started.elapsed().as_micros().max(1) as u64;
    // A value of known size stays a value until it leaves this worker.
    if let Some(n) = value.size_hint() {
        return Ok(Output { value, bytes: None, nbytes: n as u64, micros });
    }
    let bytes = value
        .to_envelope()
        .map_err(|e| (format!("result cannot be serialized: {e}"), FailureCause::Worker))?;
    let nbytes = bytes.len() as u64;
    Ok(Output { value, bytes: Some(bytes), nbytes, micros })
}

/// Fetches a value's envelope from the worker at `addr`.
pub(crate) async fn fetch(client: &mut DataClient, key: &Key) -> Result<Vec<u8>, String> {
    let mut stream = client
        .get(pb::GetData {
            protocol_version: PROTOCOL_VERSION,
            key: Some(protocol::key_to_pb(key)),
        })
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    let mut buf: Vec<u8> = Vec::new();
    let mut total = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|s| s.message().to_string())?;
        if total.is_none() {
            if chunk.total_len > MAX_VALUE_BYTES {
                return Err(format!(
                    "value of {} bytes exceeds the limit of {MAX_VALUE_BYTES}",
                    chunk.total_len
                ));
            }
            // The buffer grows as chunks arrive: an announced size is not trusted.
            total = Some(chunk.total_len);
        }
        if buf.len() + chunk.data.len() > total.unwrap_or(0) as usize {
            return Err("more data than announced".into());
        }
        buf.extend_from_slice(&chunk.data);
    }
    match total {
        Some(t) if t as usize == buf.len() => Ok(buf),
        Some(t) => Err(format!("stream ended after {} of {t} bytes", buf.len())),
        None => Err("empty stream".into()),
    }
}

/// Accepted connections with Nagle's algorithm off: small messages (task
/// assignments, results) must not wait for delayed ACKs (~40 ms each).
pub(crate) fn nodelay(
    listener: tokio::net::TcpListener,
) -> impl Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|s| {
        let s = s?;
        s.set_nodelay(true)?;
        Ok(s)
    })
}

/// An error with its sources (TLS handshake failures hide the reason there).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Connects to a worker's data server, presenting the cluster token (and
/// this process's certificate, with TLS).
pub(crate) async fn connect_worker(
    addr: &str,
    attach: &AttachToken,
    tls: Option<&Tls>,
) -> Result<DataClient, String> {
    let ch = crate::auth::endpoint(addr, tls)?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| error_chain(&e))?;
    Ok(pb::worker_client::WorkerClient::with_interceptor(ch, attach.clone())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

/// Streams `bytes` as chunks of a value.
pub(crate) fn chunks(key: &Key, bytes: Arc<Vec<u8>>) -> Vec<pb::DataChunk> {
    let total = bytes.len() as u64;
    let mut out: Vec<pb::DataChunk> = bytes
        .chunks(CHUNK_BYTES)
        .enumerate()
        .map(|(i, c)| pb::DataChunk {
            key: (i == 0).then(|| protocol::key_to_pb(key)),
            total_len: total,
            data: c.to_vec(),
            protocol_version: PROTOCOL_VERSION,
        })
        .collect();
    if out.is_empty() {
        out.push(pb::DataChunk {
            key: Some(protocol::key_to_pb(key)),
            total_len: 0,
            data: vec![],
            protocol_version: PROTOCOL_VERSION,
        });
    }
    out
}

struct DataService {
    shared: Arc<Shared>,
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::DataChunk, Status>> + Send>>;

#[tonic::async_trait]
impl pb::worker_server::Worker for DataService {
    type GetStream = ChunkStream;

    async fn get(&self, req: Request<pb::GetData>) -> Result<Response<ChunkStream>, Status> {
        let req = req.into_inner();
        if req.protocol_version != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "protocol version {} refused: this worker speaks version {PROTOCOL_VERSION}",
                req.protocol_version
            )));
        }
        let key =
            protocol::key_from_pb(req.key).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let held = match self.shared.holdings().held.get(&key) {
            Some(Held::Memory { bytes }) => Held::Memory { bytes: bytes.clone() },
            Some(Held::Lazy { value }) => Held::Lazy { value: value.clone() },
            Some(Held::Disk { file }) => Held::Disk { file: file.clone() },
            None => {
                return Err(Status::not_found(format!(
                    "worker {} does not hold {key}",
                    self.shared.name
                )))
            }
        };
        let bytes = match held {
            Held::Memory { bytes } => bytes,
            // Encoded now, off the async threads; not kept (the value is).
            Held::Lazy { value } => {
                let encoded = tokio::task::spawn_blocking(move || value.to_envelope()).await;
                match encoded {
                    Ok(Ok(bytes)) => Arc::new(bytes),
                    Ok(Err(e)) => {
                        return Err(Status::internal(format!("cannot encode {key}: {e}")))
                    }
                    Err(e) => return Err(Status::internal(format!("encoding {key} failed: {e}"))),
                }
            }
            // Read back from disk; it stays spilled (memory is what we lack).
            // The guard keeps the file while it is read, even if the value is dropped.
            Held::Disk { file } => Arc::new(tokio::fs::read(&file.path).await.map_err(|e| {
                let path = file.path.display();
                Status::internal(format!("cannot read spilled {key} from {path}: {e}"))
            })?),
        };
        self.shared.event(WorkerEvent::Served { key: key.clone() });
        self.shared.bytes_out.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        // Chunks are produced lazily so that a 1 GiB value is never copied whole.
        let total = bytes.len();
        let n_chunks = total.div_ceil(CHUNK_BYTES).max(1);
        let stream = tokio_stream::iter(0..n_chunks).map(move |i| {
            let lo = i * CHUNK_BYTES;
            let hi = (lo + CHUNK_BYTES).min(total);
            Ok(pb::DataChunk {
                key: (i == 0).then(|| protocol::key_to_pb(&key)),
                total_len: total as u64,
                data: bytes[lo..hi].to_vec(),
                protocol_version: PROTOCOL_VERSION,
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn put(
        &self,
        req: Request<Streaming<pb::DataChunk>>,
    ) -> Result<Response<pb::PutReply>, Status> {
        let mut stream = req.into_inner();
        let first = stream.message().await?.ok_or_else(|| Status::invalid_argument("empty put"))?;
        if first.protocol_version != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "protocol version {} refused: this worker speaks version {PROTOCOL_VERSION}",
                first.protocol_version
            )));
        }
        let key = protocol::key_from_pb(first.key)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if first.total_len > MAX_VALUE_BYTES {
            return Err(Status::resource_exhausted(format!(
                "value of {} bytes exceeds the limit {MAX_VALUE_BYTES}",
                first.total_len
            )));
        }
        let total = first.total_len as usize;
        // Grows as chunks arrive: the announced size is a limit, not a reservation.
        let mut buf = first.data;
        while let Some(chunk) = stream.message().await? {
            if buf.len() + chunk.data.len() > total {
                return Err(Status::invalid_argument("more data than announced"));
            }
            buf.extend_from_slice(&chunk.data);
        }
        if buf.len() != total {
            return Err(Status::invalid_argument(format!(
                "got {} of {total} announced bytes",
                buf.len()
            )));
        }
        // Refuse garbage before storing it.
        Value::from_envelope(&buf, MAX_VALUE_BYTES as usize)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        // Answered once the event loop has stored it and the state machine knows it.
        let (stored, answer) = oneshot::channel();
        self.shared.send(Inbox::Put { key, bytes: Arc::new(buf), stored });
        answer
            .await
            .map_err(|_| Status::unavailable(format!("worker {} is leaving", self.shared.name)))?;
        Ok(Response::new(pb::PutReply { nbytes: total as u64 }))
    }
}

/// Runs one op on resolved inputs (blocking; called on a worker thread).
fn run_op(
    op: &str,
    payload: &[u8],
    deps: HashMap<Key, Arc<Vec<u8>>>,
    live: HashMap<Key, Value>,
) -> Result<Value, (String, FailureCause)> {
    let args =
        protocol::decode_payload(payload).map_err(|e| (e.to_string(), FailureCause::Worker))?;
    let mut get = |k: &Key| {
        live.get(k).cloned().or_else(|| {
            deps.get(k).and_then(|b| Value::from_envelope(b, MAX_VALUE_BYTES as usize).ok())
        })
    };
    let values = protocol::resolve_args(args, &mut get).map_err(|e| (e, FailureCause::Worker))?;
    let out = match op {
        LITERAL_OP | IDENTITY_OP => values
            .into_iter()
            .next()
            .ok_or(("missing argument".to_string(), FailureCause::Worker))?,
        _ => {
            let entry = rask_core::op::lookup(op).ok_or_else(|| {
                (
                    format!("op `{op}` is not registered in this worker's binary"),
                    FailureCause::Worker,
                )
            })?;
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (entry.func)(values))) {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => return Err((e.to_string(), FailureCause::Error)),
                Err(p) => return Err((panic_message(&*p), FailureCause::Panic)),
            }
        }
    };
    Ok(out)
}

/// Translates a scheduler message into an event (`None`: nothing to do;
/// `Err`: the scheduler ends the session, with its reason).
fn scheduler_event(msg: pb::to_worker::Msg) -> Result<Option<WorkerEvent>, String> {
    Ok(match msg {
        pb::to_worker::Msg::Compute(c) => {
            let Ok(key) = protocol::key_from_pb(c.key) else { return Ok(None) };
            let deps = c
                .deps
                .into_iter()
                .filter_map(|d| protocol::key_from_pb(d.key).ok().map(|k| (k, d.addr)))
                .collect();
            let payload = Arc::new(c.payload);
            Some(WorkerEvent::Compute { key, op: c.op, payload, deps, priority: 0 })
        }
        pb::to_worker::Msg::Free(f) => {
            let keys =
                f.keys.into_iter().filter_map(|k| protocol::key_from_pb(Some(k)).ok()).collect();
            Some(WorkerEvent::Free { keys })
        }
        pb::to_worker::Msg::DropCaches(_) => Some(WorkerEvent::DropCache),
        pb::to_worker::Msg::Steal(st) => {
            let Ok(key) = protocol::key_from_pb(st.key) else { return Ok(None) };
            Some(WorkerEvent::Steal { key })
        }
        pb::to_worker::Msg::Close(r) | pb::to_worker::Msg::Refused(r) => return Err(r.reason),
        pb::to_worker::Msg::Welcome(_) => None,
    })
}

/// Connects to the scheduler, retrying until `timeout`.
pub(crate) async fn connect_scheduler(
    addr: &str,
    timeout: Duration,
    tls: Option<&Tls>,
) -> Result<pb::scheduler_client::SchedulerClient<tonic::transport::Channel>, DistError> {
    let start = Instant::now();
    let endpoint = crate::auth::endpoint(addr, tls)
        .map_err(|message| DistError::Unreachable { addr: addr.into(), timeout_s: 0.0, message })?
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .tcp_nodelay(true);
    loop {
        match endpoint.connect().await {
            Ok(ch) => {
                return Ok(pb::scheduler_client::SchedulerClient::new(ch)
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES))
            }
            Err(e) if start.elapsed() >= timeout => {
                let hint = if tls.is_some() {
                    " (with TLS: check that both sides use the same cluster CA, that this process's certificate is signed by it, and that the scheduler's certificate names the host dialled)"
                } else {
                    ""
                };
                return Err(DistError::Unreachable {
                    addr: addr.into(),
                    timeout_s: timeout.as_secs_f64(),
                    message: format!("{}{hint}", error_chain(&e)),
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The address peers and clients reach a process at: `contact` (a host,
/// which gets the bound port, or `host:port`); else the bound host, unless
/// it is a wildcard (`0.0.0.0`, `::`), which no other machine can dial: then
/// the local address of this machine's route towards `towards`.
pub(crate) fn contact_address(
    contact: Option<&str>,
    host: &str,
    port: u16,
    towards: &str,
) -> Result<String, DistError> {
    if let Some(c) = contact {
        return Ok(
            if c.parse::<SocketAddr>().is_ok()
                || c.rsplit_once(':')
                    .is_some_and(|(h, p)| !h.contains(':') && p.parse::<u16>().is_ok())
            {
                c.to_string()
            } else {
                join_host_port(c, port)
            },
        );
    }
    let wildcard = matches!(host.parse::<std::net::IpAddr>(), Ok(ip) if ip.is_unspecified());
    if !wildcard {
        return Ok(join_host_port(host, port));
    }
    // A connected UDP socket sends nothing; it only asks the kernel for a route.
    let routed = std::net::UdpSocket::bind((host, 0))
        .and_then(|s| s.connect(towards).map(|()| s))
        .and_then(|s| s.local_addr());
    match routed {
        Ok(a) if !a.ip().is_unspecified() => Ok(join_host_port(&a.ip().to_string(), port)),
        _ => Err(DistError::Process {
            message: format!(
                "bound to {host}, which other machines cannot dial, and no route towards {towards} gives a local address; pass --contact-address HOST"
            ),
        }),
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Runs a worker until the scheduler closes it or `shutdown` resolves (then it
/// tells the scheduler it is leaving and waits briefly for running tasks).
pub async fn run_worker(
    cfg: WorkerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), DistError> {
    let listener =
        tokio::net::TcpListener::bind((cfg.host.as_str(), cfg.port)).await.map_err(|e| {
            DistError::Process {
                message: format!("worker cannot listen on {}:{}: {e}", cfg.host, cfg.port),
            }
        })?;
    let local: SocketAddr =
        listener.local_addr().map_err(|e| DistError::Process { message: e.to_string() })?;
    let addr =
        contact_address(cfg.contact_address.as_deref(), &cfg.host, local.port(), &cfg.scheduler)?;
    let attach = AttachToken::new(&cfg.token).map_err(|message| DistError::Process { message })?;
    let name = cfg.name.clone().unwrap_or_else(|| addr.clone());
    let dir = cfg.local_dir.join(format!("worker-{}-{}", std::process::id(), local.port()));
    let (out_tx, out_rx) = mpsc::unbounded_channel::<pb::WorkerMessage>();
    let (inbox_tx, mut inbox) = mpsc::unbounded_channel::<Inbox>();
    let limit = cfg.memory_limit;
    let shared = Arc::new(Shared {
        holdings: Mutex::new(Holdings::default()),
        inbox: inbox_tx,
        memory: AtomicU64::new(0),
        paused: AtomicBool::new(false),
        unmanaged: AtomicU64::new(0),
        spilled: AtomicU64::new(0),
        bytes_in: AtomicU64::new(0),
        bytes_out: AtomicU64::new(0),
        spans: Mutex::new(spans::SpanLog::default()),
        name: name.clone(),
    });
    let state_config = WorkerStateConfig {
        name: name.clone(),
        nthreads: cfg.nthreads.max(1),
        // Nobody reads a worker's story in production; keeping it costs.
        log_capacity: 0,
        ..WorkerStateConfig::default()
    }
    .with_memory_limit(limit, cfg.target_fraction, cfg.pause_fraction);
    let mut shell = Shell {
        state: WorkerState::new(state_config),
        shared: shared.clone(),
        outbox: out_tx.clone(),
        peers: Arc::new(tokio::sync::Mutex::new(HashMap::new())),
        attach,
        tls: cfg.tls.clone(),
        dir: dir.clone(),
        spill_seq: 0,
        start: Instant::now(),
        paused: false,
        commands: Vec::new(),
        ran_for: FxHashMap::default(),
    };

    let data = pb::worker_server::WorkerServer::new(DataService { shared: shared.clone() })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    // Every data-plane request shows the cluster token before it is served.
    let data = tonic::service::interceptor::InterceptedService::new(
        data,
        CheckToken::new(&cfg.token, &name),
    );
    let incoming = nodelay(listener);
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &cfg.tls {
        builder = builder.tls_config(tls.server()).map_err(|e| DistError::Process {
            message: format!("worker TLS ({:?}): {}", tls.files, error_chain(&e)),
        })?;
    }
    let server = tokio::spawn(builder.add_service(data).serve_with_incoming(incoming));

    let mut client =
        connect_scheduler(&cfg.scheduler, cfg.connect_timeout, cfg.tls.as_ref()).await?;
    let mut ops: Vec<String> =
        rask_core::op::registered_ops().into_iter().map(String::from).collect();
    ops.push(LITERAL_OP.into());
    ops.push(IDENTITY_OP.into());
    let register = pb::RegisterWorker {
        protocol_version: PROTOCOL_VERSION,
        name: name.clone(),
        addr: addr.clone(),
        nthreads: cfg.nthreads as u32,
        memory_limit: limit,
        ops,
        resources: cfg.resources.clone().into_iter().collect(),
        token: cfg.token.clone(),
    };
    shell.send(pb::worker_message::Msg::Register(register));
    let mut inbound = client
        .worker_session(UnboundedReceiverStream::new(out_rx))
        .await
        .map_err(|s| DistError::Disconnected {
            peer: cfg.scheduler.clone(),
            message: s.message().to_string(),
        })?
        .into_inner();
    match inbound.next().await {
        Some(Ok(pb::ToWorker { msg: Some(pb::to_worker::Msg::Welcome(w)) })) => {
            tracing::info!(
                "worker {name} at {addr} registered as {} with {}",
                w.worker_id,
                cfg.scheduler
            );
        }
        Some(Ok(pb::ToWorker { msg: Some(pb::to_worker::Msg::Refused(r)) })) => {
            return Err(DistError::Refused { peer: cfg.scheduler.clone(), reason: r.reason })
        }
        other => {
            return Err(DistError::Disconnected {
                peer: cfg.scheduler.clone(),
                message: format!("no welcome: {other:?}"),
            })
        }
    }
    println!("worker {name} listening on {addr}, connected to {}", cfg.scheduler);

    let heartbeat = tokio::spawn(heartbeat(shared.clone(), out_tx, cfg.heartbeat));
    tokio::pin!(shutdown);
    // Biased: I/O completions (a put before the compute that uses it) go
    // before new scheduler messages; the rare shutdown first.
    let result = loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => {
                shell.close(&mut inbox).await;
                break Ok(());
            }
            Some(m) = inbox.recv() => shell.receive(m),
            msg = inbound.next() => {
                let disconnected = |message: String| DistError::Disconnected {
                    peer: cfg.scheduler.clone(),
                    message,
                };
                let msg = match msg {
                    Some(Ok(pb::ToWorker { msg: Some(m) })) => m,
                    Some(Ok(pb::ToWorker { msg: None })) => continue,
                    Some(Err(s)) => break Err(disconnected(s.message().to_string())),
                    None => break Err(disconnected("scheduler closed the session".into())),
                };
                match scheduler_event(msg) {
                    Ok(Some(e)) => shell.handle(e),
                    Ok(None) => {}
                    Err(reason) => {
                        break Err(DistError::Refused { peer: cfg.scheduler.clone(), reason })
                    }
                }
            }
        }
    };
    heartbeat.abort();
    server.abort();
    let spilled = shell.state.spilled();
    if spilled > 0 {
        tracing::info!("{name}: {spilled} values were spilled");
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Parses a memory size: `4GiB`, `512MiB`, `2GB`, `1e9`, `1000000` (bytes).
pub fn parse_memory(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 =
        num.trim().parse().map_err(|_| format!("memory size {s:?}: {num:?} is not a number"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0f64.powi(4),
        u => {
            return Err(format!(
                "memory size {s:?}: unknown unit {u:?} (use B, kB, MB, GB, KiB, MiB, GiB)"
            ))
        }
    };
    if n < 0.0 || !n.is_finite() {
        return Err(format!("memory size {s:?} must be a non-negative number"));
    }
    Ok((n * mult) as u64)
}
