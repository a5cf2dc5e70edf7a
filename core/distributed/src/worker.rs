//! The worker process: runs tasks the scheduler assigns, serves its results to
//! peers and clients (the data plane), and keeps memory under its limit by
//! spilling least-recently-used results to disk.
//!
//! Values are stored as their wire envelopes (`Value::to_envelope`), so a
//! result is serialized once, when it is produced; sending, spilling and
//! counting memory all use those bytes.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rask_core::{Key, Value};
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::error::DistError;
use crate::protocol::{
    self, pb, CHUNK_BYTES, MAX_MESSAGE_BYTES, MAX_VALUE_BYTES, PROTOCOL_VERSION,
};

/// Built-in op of data nodes: returns its literal argument.
pub const LITERAL_OP: &str = "rask::literal";
/// Built-in op of alias nodes: returns its dependency's value.
pub const IDENTITY_OP: &str = "rask::identity";

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
    /// Shared cluster token (empty = none).
    pub token: String,
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
        }
    }
}

enum Slot {
    Memory { bytes: Arc<Vec<u8>>, last_used: u64 },
    Disk { path: PathBuf },
}

/// Results held by this worker, in memory or spilled.
struct Store {
    slots: HashMap<Key, Slot>,
    in_memory: u64,
    clock: u64,
    dir: PathBuf,
    spill_seq: u64,
    target: u64,
}

impl Store {
    fn get(&mut self, key: &Key) -> Result<Option<Arc<Vec<u8>>>, String> {
        self.clock += 1;
        match self.slots.get_mut(key) {
            None => Ok(None),
            Some(Slot::Memory { bytes, last_used }) => {
                *last_used = self.clock;
                Ok(Some(bytes.clone()))
            }
            Some(Slot::Disk { path, .. }) => {
                // Read back from disk; it stays spilled (memory is what we lack).
                let bytes = std::fs::read(&*path).map_err(|e| {
                    format!("cannot read spilled {key} from {}: {e}", path.display())
                })?;
                Ok(Some(Arc::new(bytes)))
            }
        }
    }

    fn put(&mut self, key: Key, bytes: Arc<Vec<u8>>) {
        self.remove(&key);
        self.clock += 1;
        self.in_memory += bytes.len() as u64;
        self.slots.insert(key, Slot::Memory { bytes, last_used: self.clock });
        self.spill();
    }

    fn remove(&mut self, key: &Key) {
        match self.slots.remove(key) {
            Some(Slot::Memory { bytes, .. }) => self.in_memory -= bytes.len() as u64,
            Some(Slot::Disk { path, .. }) => {
                let _ = std::fs::remove_file(path);
            }
            None => {}
        }
    }

    /// Spills least-recently-used values until memory is under the target.
    fn spill(&mut self) {
        if self.target == 0 {
            return;
        }
        while self.in_memory > self.target {
            let victim = self
                .slots
                .iter()
                .filter_map(|(k, s)| match s {
                    Slot::Memory { last_used, .. } => Some((*last_used, k.clone())),
                    Slot::Disk { .. } => None,
                })
                .min();
            let Some((_, key)) = victim else { break };
            let Some(Slot::Memory { bytes, .. }) = self.slots.get(&key) else { break };
            self.spill_seq += 1;
            let path = self.dir.join(format!("{}.rskv", self.spill_seq));
            if let Err(e) = std::fs::create_dir_all(&self.dir)
                .and_then(|()| std::fs::write(&path, bytes.as_slice()))
            {
                tracing::error!(
                    "cannot spill {key} to {}: {e}; keeping it in memory",
                    path.display()
                );
                break;
            }
            let len = bytes.len() as u64;
            self.in_memory -= len;
            eprintln!("spilled {key} ({len} bytes) to {}", path.display());
            self.slots.insert(key, Slot::Disk { path });
        }
    }

    fn spilled_count(&self) -> usize {
        self.slots.values().filter(|s| matches!(s, Slot::Disk { .. })).count()
    }
}

/// A bounded cache of values by key, least recently used out first, sized by
/// the byte lengths given to `put`. Two per worker: copies of other workers'
/// values fetched for tasks here (keys are content tokens, so a copy never
/// goes stale), and this worker's own outputs as in-process values, so a
/// later task here uses the value itself instead of decoding its serialized
/// copy (the store keeps the bytes, the source of truth for peers, spilling
/// and memory accounting).
struct Lru<V: Clone> {
    entries: HashMap<Key, (V, u64, u64)>,
    bytes: u64,
    capacity: u64,
    clock: u64,
}

impl<V: Clone> Lru<V> {
    fn new(capacity: u64) -> Self {
        Lru { entries: HashMap::new(), bytes: 0, capacity, clock: 0 }
    }

    fn get(&mut self, key: &Key) -> Option<V> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(key).map(|(v, _, used)| {
            *used = clock;
            v.clone()
        })
    }

    fn put(&mut self, key: Key, value: V, len: u64) {
        if len > self.capacity {
            return;
        }
        self.remove(&key);
        while self.bytes + len > self.capacity {
            let Some(oldest) =
                self.entries.iter().min_by_key(|(_, (_, _, used))| *used).map(|(k, _)| k.clone())
            else {
                break;
            };
            self.remove(&oldest);
        }
        self.clock += 1;
        self.bytes += len;
        self.entries.insert(key, (value, len, self.clock));
    }

    fn remove(&mut self, key: &Key) {
        if let Some((_, len, _)) = self.entries.remove(key) {
            self.bytes -= len;
        }
    }
}

struct Shared {
    store: Mutex<Store>,
    fetched: Mutex<Lru<Arc<Vec<u8>>>>,
    live: Mutex<Lru<Value>>,
    paused: AtomicBool,
    pause_bytes: u64,
    slots: Semaphore,
    outbox: mpsc::Sender<pb::WorkerMessage>,
    peers: tokio::sync::Mutex<
        HashMap<String, pb::worker_client::WorkerClient<tonic::transport::Channel>>,
    >,
    name: String,
    in_flight: AtomicU64,
}

impl Shared {
    fn update_pause(&self) {
        if self.pause_bytes == 0 {
            return;
        }
        let in_memory = self.store.lock().unwrap_or_else(|p| p.into_inner()).in_memory;
        let paused = in_memory > self.pause_bytes;
        if self.paused.swap(paused, Ordering::AcqRel) != paused {
            eprintln!(
                "worker {} {} (managed memory {in_memory} bytes)",
                self.name,
                if paused { "paused" } else { "resumed" }
            );
        }
    }

    async fn send(&self, msg: pb::worker_message::Msg) {
        // The scheduler session ending closes the channel; the session loop reports that.
        let _ = self.outbox.send(pb::WorkerMessage { msg: Some(msg) }).await;
    }
}

/// Fetches a value's envelope from the worker at `addr`.
pub(crate) async fn fetch(
    client: &mut pb::worker_client::WorkerClient<tonic::transport::Channel>,
    key: &Key,
) -> Result<Vec<u8>, String> {
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
            total = Some(chunk.total_len);
            buf.reserve_exact(chunk.total_len as usize);
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

/// Connects to a worker's data server.
pub(crate) async fn connect_worker(
    addr: &str,
) -> Result<pb::worker_client::WorkerClient<tonic::transport::Channel>, String> {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| format!("{e}"))?;
    Ok(pb::worker_client::WorkerClient::new(ch)
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
        let bytes = self
            .shared
            .store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .map_err(Status::internal)?
            .ok_or_else(|| {
                Status::not_found(format!("worker {} does not hold {key}", self.shared.name))
            })?;
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
        let mut buf = Vec::with_capacity(total);
        buf.extend_from_slice(&first.data);
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
        self.shared.store.lock().unwrap_or_else(|p| p.into_inner()).put(key, Arc::new(buf));
        self.shared.update_pause();
        Ok(Response::new(pb::PutReply { nbytes: total as u64 }))
    }
}

fn failure(
    key: &Key,
    op: &str,
    worker: &str,
    message: String,
    cause: pb::failure::Cause,
) -> pb::worker_message::Msg {
    pb::worker_message::Msg::Failed(pb::TaskFailed {
        key: Some(protocol::key_to_pb(key)),
        failure: Some(pb::Failure {
            key: Some(protocol::key_to_pb(key)),
            op: op.to_string(),
            message,
            worker: worker.to_string(),
            cause: cause as i32,
        }),
    })
}

/// Runs one op on resolved inputs (blocking; called on a worker thread), and
/// returns its output both as a value and serialized.
fn run_op(
    op: &str,
    payload: &[u8],
    deps: HashMap<Key, Arc<Vec<u8>>>,
    live: HashMap<Key, Value>,
) -> Result<(Value, Vec<u8>), (String, pb::failure::Cause)> {
    let args = protocol::decode_payload(payload)
        .map_err(|e| (e.to_string(), pb::failure::Cause::Worker))?;
    let mut get = |k: &Key| {
        live.get(k).cloned().or_else(|| {
            deps.get(k).and_then(|b| Value::from_envelope(b, MAX_VALUE_BYTES as usize).ok())
        })
    };
    let values =
        protocol::resolve_args(args, &mut get).map_err(|e| (e, pb::failure::Cause::Worker))?;
    let out = match op {
        LITERAL_OP | IDENTITY_OP => values
            .into_iter()
            .next()
            .ok_or(("missing argument".to_string(), pb::failure::Cause::Worker))?,
        _ => {
            let entry = rask_core::op::lookup(op).ok_or_else(|| {
                (
                    format!("op `{op}` is not registered in this worker's binary"),
                    pb::failure::Cause::Worker,
                )
            })?;
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (entry.func)(values))) {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => return Err((e.to_string(), pb::failure::Cause::Error)),
                Err(p) => {
                    let msg = p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "panic".into());
                    return Err((msg, pb::failure::Cause::Panic));
                }
            }
        }
    };
    let bytes = out
        .to_envelope()
        .map_err(|e| (format!("result cannot be serialized: {e}"), pb::failure::Cause::Worker))?;
    Ok((out, bytes))
}

async fn compute(shared: Arc<Shared>, c: pb::Compute) {
    let Ok(key) = protocol::key_from_pb(c.key) else { return };
    shared.in_flight.fetch_add(1, Ordering::AcqRel);
    // Gather inputs: local ones from the store, the rest from their holders.
    let mut deps: HashMap<Key, Arc<Vec<u8>>> = HashMap::new();
    let mut live: HashMap<Key, Value> = HashMap::new();
    for d in c.deps {
        let Ok(dk) = protocol::key_from_pb(d.key) else { continue };
        if let Some(v) = shared.live.lock().unwrap_or_else(|p| p.into_inner()).get(&dk) {
            live.insert(dk, v);
            continue;
        }
        let local = shared.store.lock().unwrap_or_else(|p| p.into_inner()).get(&dk);
        let cached = shared.fetched.lock().unwrap_or_else(|p| p.into_inner()).get(&dk);
        let bytes = match (local, cached) {
            (Ok(Some(b)), _) | (_, Some(b)) => Ok(b),
            _ if d.addr.is_empty() => Err("no holder".to_string()),
            _ => {
                let mut peers = shared.peers.lock().await;
                let client = match peers.get(&d.addr) {
                    Some(c) => Ok(c.clone()),
                    None => connect_worker(&d.addr).await.inspect(|c| {
                        peers.insert(d.addr.clone(), c.clone());
                    }),
                };
                drop(peers);
                match client {
                    Ok(mut cl) => fetch(&mut cl, &dk).await.map(Arc::new).inspect(|b| {
                        shared.fetched.lock().unwrap_or_else(|p| p.into_inner()).put(
                            dk.clone(),
                            b.clone(),
                            b.len() as u64,
                        );
                    }),
                    Err(e) => Err(e),
                }
            }
        };
        match bytes {
            Ok(b) => {
                deps.insert(dk, b);
            }
            Err(e) => {
                tracing::warn!("{}: cannot get {dk} for {key} from {}: {e}", shared.name, d.addr);
                shared.peers.lock().await.remove(&d.addr);
                let msg = pb::worker_message::Msg::Missing(pb::DataMissing {
                    key: Some(protocol::key_to_pb(&key)),
                    missing: Some(protocol::key_to_pb(&dk)),
                });
                shared.send(msg).await;
                shared.in_flight.fetch_sub(1, Ordering::AcqRel);
                return;
            }
        }
    }
    // Wait for a slot, and while paused.
    let permit = shared.slots.acquire().await.expect("semaphore never closes");
    while shared.paused.load(Ordering::Acquire) {
        shared.update_pause();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let op = c.op.clone();
    let payload = c.payload;
    let result = tokio::task::spawn_blocking(move || run_op(&op, &payload, deps, live)).await;
    drop(permit);
    let msg = match result {
        Ok(Ok((value, bytes))) => {
            let nbytes = bytes.len() as u64;
            shared.live.lock().unwrap_or_else(|p| p.into_inner()).put(key.clone(), value, nbytes);
            shared
                .store
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .put(key.clone(), Arc::new(bytes));
            shared.update_pause();
            pb::worker_message::Msg::Finished(pb::TaskFinished {
                key: Some(protocol::key_to_pb(&key)),
                nbytes,
            })
        }
        Ok(Err((message, cause))) => failure(&key, &c.op, &shared.name, message, cause),
        Err(e) => failure(
            &key,
            &c.op,
            &shared.name,
            format!("worker thread failed: {e}"),
            pb::failure::Cause::Worker,
        ),
    };
    shared.send(msg).await;
    shared.in_flight.fetch_sub(1, Ordering::AcqRel);
}

/// Connects to the scheduler, retrying until `timeout`.
pub(crate) async fn connect_scheduler(
    addr: &str,
    timeout: Duration,
) -> Result<pb::scheduler_client::SchedulerClient<tonic::transport::Channel>, DistError> {
    let start = Instant::now();
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| DistError::Unreachable {
            addr: addr.into(),
            timeout_s: 0.0,
            message: e.to_string(),
        })?
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
                return Err(DistError::Unreachable {
                    addr: addr.into(),
                    timeout_s: timeout.as_secs_f64(),
                    message: format!(
                        "{e}: {}",
                        std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default()
                    ),
                })
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
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
    let addr = format!("{}:{}", cfg.host, local.port());
    let name = cfg.name.clone().unwrap_or_else(|| addr.clone());
    let dir = cfg.local_dir.join(format!("worker-{}-{}", std::process::id(), local.port()));
    let (out_tx, out_rx) = mpsc::channel::<pb::WorkerMessage>(1024);
    let limit = cfg.memory_limit;
    let shared = Arc::new(Shared {
        store: Mutex::new(Store {
            slots: HashMap::new(),
            in_memory: 0,
            clock: 0,
            dir: dir.clone(),
            spill_seq: 0,
            target: (limit as f64 * cfg.target_fraction) as u64,
        }),
        // A tenth of the memory limit (256 MiB without one) for fetched copies.
        fetched: Mutex::new(Lru::new(if limit > 0 { limit / 10 } else { 256 << 20 })),
        // A quarter of the memory limit (512 MiB without one) for live outputs.
        live: Mutex::new(Lru::new(if limit > 0 { limit / 4 } else { 512 << 20 })),
        paused: AtomicBool::new(false),
        pause_bytes: (limit as f64 * cfg.pause_fraction) as u64,
        slots: Semaphore::new(cfg.nthreads.max(1)),
        outbox: out_tx,
        peers: tokio::sync::Mutex::new(HashMap::new()),
        name: name.clone(),
        in_flight: AtomicU64::new(0),
    });

    let data = pb::worker_server::WorkerServer::new(DataService { shared: shared.clone() })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let incoming = nodelay(listener);
    let server = tokio::spawn(
        tonic::transport::Server::builder().add_service(data).serve_with_incoming(incoming),
    );

    let mut client = connect_scheduler(&cfg.scheduler, cfg.connect_timeout).await?;
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
    shared.send(pb::worker_message::Msg::Register(register)).await;
    let mut inbound = client
        .worker_session(ReceiverStream::new(out_rx))
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

    let hb_shared = shared.clone();
    let hb_every = cfg.heartbeat;
    let heartbeat = tokio::spawn(async move {
        let mut tick = tokio::time::interval(hb_every);
        loop {
            tick.tick().await;
            let memory = hb_shared.store.lock().unwrap_or_else(|p| p.into_inner()).in_memory;
            let paused = hb_shared.paused.load(Ordering::Acquire);
            hb_shared
                .send(pb::worker_message::Msg::Heartbeat(pb::Heartbeat { memory, paused }))
                .await;
        }
    });

    tokio::pin!(shutdown);
    let result = loop {
        tokio::select! {
            _ = &mut shutdown => {
                // Leave cleanly: no new tasks, finish what runs (briefly), go.
                shared.send(pb::worker_message::Msg::Closing(pb::Closing {})).await;
                let deadline = Instant::now() + Duration::from_secs(10);
                while shared.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                break Ok(());
            }
            msg = inbound.next() => match msg {
                Some(Ok(pb::ToWorker { msg: Some(m) })) => match m {
                    pb::to_worker::Msg::Compute(c) => {
                        tokio::spawn(compute(shared.clone(), c));
                    }
                    pb::to_worker::Msg::Free(f) => {
                        let mut store = shared.store.lock().unwrap_or_else(|p| p.into_inner());
                        let mut live = shared.live.lock().unwrap_or_else(|p| p.into_inner());
                        for k in f.keys {
                            if let Ok(k) = protocol::key_from_pb(Some(k)) {
                                store.remove(&k);
                                live.remove(&k);
                            }
                        }
                        drop((store, live));
                        shared.update_pause();
                    }
                    pb::to_worker::Msg::Close(r) | pb::to_worker::Msg::Refused(r) => {
                        break Err(DistError::Refused { peer: cfg.scheduler.clone(), reason: r.reason });
                    }
                    pb::to_worker::Msg::Welcome(_) => {}
                },
                Some(Ok(pb::ToWorker { msg: None })) => {}
                Some(Err(s)) => break Err(DistError::Disconnected { peer: cfg.scheduler.clone(), message: s.message().to_string() }),
                None => break Err(DistError::Disconnected { peer: cfg.scheduler.clone(), message: "scheduler closed the session".into() }),
            }
        }
    };
    heartbeat.abort();
    server.abort();
    let spilled = shared.store.lock().unwrap_or_else(|p| p.into_inner()).spilled_count();
    if spilled > 0 {
        tracing::info!("{name}: {spilled} values were spilled");
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_values_stay_within_capacity_least_recently_used_first() {
        let mut live = Lru::new(100);
        let key = |i: u64| Key::new("v", rask_core::tokenize(&i).unwrap());
        live.put(key(1), Value::new(1u64), 40);
        live.put(key(2), Value::new(2u64), 40);
        assert!(live.get(&key(1)).is_some()); // 1 is now more recent than 2
        live.put(key(3), Value::new(3u64), 40);
        assert!(live.get(&key(2)).is_none(), "the least recently used value goes first");
        assert_eq!(live.get(&key(1)).unwrap().take::<u64>().unwrap(), 1);
        assert_eq!(live.bytes, 80);
        live.put(key(4), Value::new(4u64), 101);
        assert!(live.get(&key(4)).is_none(), "a value over the capacity is not kept");
        live.remove(&key(1));
        live.remove(&key(3));
        assert_eq!((live.bytes, live.entries.len()), (0, 0));
    }
}
