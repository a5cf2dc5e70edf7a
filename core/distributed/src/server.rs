//! The scheduler process: gRPC sessions for workers and clients around the
//! pure [`SchedulerState`]. One task owns the state and handles inputs in
//! order; session handlers only translate messages and forward commands.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rask_core::Key;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::dashboard::{DashQuery, Published};
use crate::error::DistError;
use crate::parts::{Assembly, Part};
use crate::protocol::{self, pb, MAX_MESSAGE_BYTES, PROTOCOL_VERSION};
use crate::scheduler::{
    ClientId, Command, Event, SchedulerConfig, SchedulerState, WorkerId, WorkerStatus,
};

/// Settings of a scheduler process.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Interface to bind.
    pub host: String,
    /// Port (0 = any free port).
    pub port: u16,
    /// Write `{"address": "host:port"}` here once listening.
    pub scheduler_file: Option<PathBuf>,
    /// Shared token that workers and clients must present (empty = none; see
    /// [`crate::auth`]).
    pub token: String,
    /// The address written to the scheduler file (`host` or `host:port`);
    /// by default the bind address, or, when binding all interfaces, this
    /// machine's outward address.
    pub contact_address: Option<String>,
    /// TLS for every session (workers and clients must present certificates).
    pub tls: Option<crate::auth::Tls>,
    /// State-machine tuning.
    pub state: SchedulerConfig,
    /// `--dashboard-address`: `HOST:PORT` or `:PORT` (the scheduler's host,
    /// loopback when credentials are set); `None`: no dashboard.
    pub dashboard: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
            port: 8786,
            scheduler_file: None,
            token: String::new(),
            contact_address: None,
            tls: None,
            state: SchedulerConfig::default(),
            dashboard: Some(":8787".into()),
        }
    }
}

/// How many messages a peer may leave unread before it is disconnected.
const MAX_UNREAD: usize = 1 << 20;

/// A peer's outgoing messages. Nothing is ever dropped: a message is queued,
/// or (past [`MAX_UNREAD`] unread ones) the peer is disconnected with the
/// reason, so memory stays bounded and nobody waits for a lost message.
struct Outbox<T> {
    tx: mpsc::UnboundedSender<Result<T, Status>>,
    unread: Arc<std::sync::atomic::AtomicUsize>,
}

impl<T> Clone for Outbox<T> {
    fn clone(&self) -> Self {
        Outbox { tx: self.tx.clone(), unread: self.unread.clone() }
    }
}

type Outgoing<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

impl<T: Send + 'static> Outbox<T> {
    /// An outbox and the response stream that drains it.
    fn new() -> (Self, Outgoing<T>) {
        use std::sync::atomic::Ordering::Relaxed;
        let (tx, rx) = mpsc::unbounded_channel();
        let unread = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = unread.clone();
        let stream = UnboundedReceiverStream::new(rx).map(move |m| {
            counter.fetch_sub(1, Relaxed);
            m
        });
        (Outbox { tx, unread }, Box::pin(stream))
    }

    /// Queues `m`; `false` when the peer is gone or has too much unread.
    fn send(&self, m: Result<T, Status>) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        if self.unread.load(Relaxed) >= MAX_UNREAD {
            return false;
        }
        self.unread.fetch_add(1, Relaxed);
        self.tx.send(m).is_ok()
    }

    /// Queues a last message past the limit (the reason of a disconnection).
    fn last(&self, m: Result<T, Status>) {
        self.unread.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = self.tx.send(m);
    }
}

type WorkerTx = Outbox<pb::ToWorker>;
type ClientTx = Outbox<pb::ToClient>;

enum Input {
    Event(Event),
    Submit { client: ClientId, request: u64, event: Event },
    WorkerConnected { id: WorkerId, tx: WorkerTx },
    ClientConnected { id: ClientId, tx: ClientTx },
    Scattered { client: ClientId, key: Key, addr: String, nbytes: u64 },
    ListWorkers { client: ClientId, request: u64 },
    DropCaches,
    DashboardTick,
    Dash(crate::dashboard::DashQuery),
    Publish { client: ClientId, name: String, key: Key, overwrite: bool, request: u64 },
    GetDataset { client: ClientId, name: String, request: u64 },
    Story { client: ClientId, key: Key, request: u64 },
    Activity { client: ClientId, request: u64, since: u64 },
    Logs { job: String, lines: Vec<crate::scheduler::logs::MemberLine> },
}

/// The client id under which published datasets are kept alive.
const DATASETS: ClientId = ClientId(0);

struct Loop {
    state: SchedulerState,
    workers: HashMap<WorkerId, WorkerTx>,
    clients: HashMap<ClientId, ClientTx>,
    datasets: HashMap<String, Key>,
    start: Instant,
    /// Peers whose outbox overflowed during this input: disconnected after it.
    overflowed: Vec<Peer>,
    /// Where dashboard updates go, and the next task-stream number to send.
    dashboard: Option<(watch::Sender<Arc<Published>>, u64)>,
    /// The dashboard's URL, told to clients.
    dashboard_url: String,
    /// Launched jobs' lines, for the dashboard.
    logs: crate::scheduler::logs::JobLogs,
}

#[derive(Clone, Copy, PartialEq)]
enum Peer {
    Client(ClientId),
    Worker(WorkerId),
}

impl Loop {
    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn send_client(&mut self, client: ClientId, msg: pb::to_client::Msg) {
        if let Some(tx) = self.clients.get(&client) {
            if !tx.send(Ok(pb::ToClient { msg: Some(msg) })) {
                self.overflowed.push(Peer::Client(client));
            }
        }
    }

    fn send_worker(&mut self, worker: WorkerId, msg: pb::to_worker::Msg) {
        if let Some(tx) = self.workers.get(&worker) {
            if !tx.send(Ok(pb::ToWorker { msg: Some(msg) })) {
                self.overflowed.push(Peer::Worker(worker));
            }
        }
    }

    /// Disconnects the peers that stopped reading, telling each why; the
    /// state machine then treats them as gone (a worker's tasks are
    /// rescheduled, a client's keys released).
    fn disconnect_overflowed(&mut self) {
        while let Some(peer) = self.overflowed.pop() {
            let reason = format!(
                "disconnected: more than {MAX_UNREAD} messages from the scheduler were left unread"
            );
            match peer {
                Peer::Client(c) => {
                    if let Some(tx) = self.clients.remove(&c) {
                        tx.last(Err(Status::resource_exhausted(reason)));
                        self.event(Event::ClientLeft { client: c });
                    }
                }
                Peer::Worker(w) => {
                    if let Some(tx) = self.workers.remove(&w) {
                        tx.last(Err(Status::resource_exhausted(reason)));
                        self.event(Event::WorkerLost { worker: w });
                    }
                }
            }
        }
    }

    fn event(&mut self, e: Event) {
        let now = self.now();
        let cmds = self.state.handle(e, now);
        self.dispatch(cmds);
    }

    fn dispatch(&mut self, cmds: Vec<Command>) {
        for c in cmds {
            match c {
                Command::Compute { worker, key, op, payload, deps } => self.send_worker(
                    worker,
                    pb::to_worker::Msg::Compute(pb::Compute {
                        key: Some(protocol::key_to_pb(&key)),
                        op,
                        payload: payload.as_ref().clone(),
                        deps: deps
                            .iter()
                            .map(|(k, a)| pb::DepLocation {
                                key: Some(protocol::key_to_pb(k)),
                                addr: a.clone(),
                            })
                            .collect(),
                    }),
                ),
                Command::FreeKeys { worker, keys } => self.send_worker(
                    worker,
                    pb::to_worker::Msg::Free(pb::FreeKeys {
                        keys: keys.iter().map(protocol::key_to_pb).collect(),
                    }),
                ),
                Command::KeyDone { client, key, addr, nbytes } => self.send_client(
                    client,
                    pb::to_client::Msg::Done(pb::KeyDone {
                        key: Some(protocol::key_to_pb(&key)),
                        addr,
                        nbytes,
                    }),
                ),
                Command::KeyErred { client, key, failure } => self.send_client(
                    client,
                    pb::to_client::Msg::Erred(pb::KeyErred {
                        key: Some(protocol::key_to_pb(&key)),
                        failure: Some(protocol::failure_to_pb(&failure)),
                    }),
                ),
                Command::Reject { client, error } => self.send_client(
                    client,
                    pb::to_client::Msg::Rejected(pb::Rejected { error, request: 0 }),
                ),
                Command::Steal { worker, key } => self.send_worker(
                    worker,
                    pb::to_worker::Msg::Steal(pb::Steal { key: Some(protocol::key_to_pb(&key)) }),
                ),
                Command::CloseWorker { worker } => {
                    self.send_worker(
                        worker,
                        pb::to_worker::Msg::Close(pb::Refused {
                            reason: "no heartbeat within the timeout".into(),
                        }),
                    );
                    self.workers.remove(&worker);
                }
            }
        }
    }

    fn handle(&mut self, input: Input) {
        self.handle_one(input);
        self.disconnect_overflowed();
    }

    fn handle_one(&mut self, input: Input) {
        match input {
            Input::Event(e) => {
                if let Event::WorkerLost { worker } = &e {
                    self.workers.remove(worker);
                }
                if let Event::ClientLeft { client } = &e {
                    self.clients.remove(client);
                }
                self.event(e)
            }
            Input::Submit { client, request, event } => {
                let now = self.now();
                let cmds = self.state.handle(event, now);
                // Every submission gets one answer: its rejection, or an acceptance.
                let rejected = cmds
                    .iter()
                    .any(|c| matches!(c, Command::Reject { client: c2, .. } if *c2 == client));
                let cmds: Vec<Command> = cmds
                    .into_iter()
                    .filter_map(|c| match c {
                        Command::Reject { client: c2, error } if c2 == client => {
                            self.send_client(
                                client,
                                pb::to_client::Msg::Rejected(pb::Rejected { error, request }),
                            );
                            None
                        }
                        other => Some(other),
                    })
                    .collect();
                if !rejected {
                    self.send_client(
                        client,
                        pb::to_client::Msg::Accepted(pb::Accepted { request }),
                    );
                }
                self.dispatch(cmds);
            }
            Input::WorkerConnected { id, tx } => {
                self.workers.insert(id, tx);
            }
            Input::ClientConnected { id, tx } => {
                let n = self.state.workers().len() as u32;
                self.clients.insert(id, tx);
                self.send_client(
                    id,
                    pb::to_client::Msg::Welcome(pb::ClientWelcome {
                        client_id: id.0,
                        n_workers: n,
                        dashboard: self.dashboard_url.clone(),
                    }),
                );
            }
            Input::Scattered { client, key, addr, nbytes } => {
                match self.state.workers().values().find(|w| w.addr == addr).map(|w| w.id) {
                    Some(worker) => {
                        self.event(Event::DataScattered { client, key, worker, nbytes })
                    }
                    None => self.send_client(
                        client,
                        pb::to_client::Msg::Rejected(pb::Rejected {
                            error: format!("scatter of {key}: no worker at {addr}"),
                            request: 0,
                        }),
                    ),
                }
            }
            Input::DashboardTick => {
                if let Some((tx, since)) = &mut self.dashboard {
                    let mut snapshot =
                        crate::dashboard::snapshot::build(&self.state, *since, self.clients.len());
                    snapshot.time_ms = self.start.elapsed().as_millis() as u64;
                    *since = snapshot.stream_next;
                    let json = serde_json::to_string(&snapshot).unwrap_or_default();
                    let _ = tx.send(Arc::new(Published { snapshot, json }));
                }
            }
            Input::Dash(q) => q.answer(&self.state, &self.logs),
            Input::Logs { job, lines } => {
                let now = self.now();
                self.logs.add(&job, lines, now);
            }
            Input::DropCaches => {
                // In order with this client's later submissions: each worker
                // reads it before any task those send.
                let ids: Vec<WorkerId> = self.workers.keys().copied().collect();
                for w in ids {
                    self.send_worker(w, pb::to_worker::Msg::DropCaches(pb::DropCaches {}));
                }
            }
            Input::ListWorkers { client, request } => {
                let workers = self
                    .state
                    .workers()
                    .values()
                    .map(|w| pb::WorkerInfo {
                        name: w.name.clone(),
                        addr: w.addr.clone(),
                        nthreads: w.nthreads as u32,
                        memory: w.memory,
                        memory_limit: w.memory_limit,
                        processing: w.processing.len() as u32,
                        in_memory: w.has_what.len() as u32,
                        status: format!("{:?}", w.status).to_lowercase(),
                        resources: w.resources.clone().into_iter().collect(),
                    })
                    .collect();
                self.send_client(
                    client,
                    pb::to_client::Msg::Workers(pb::WorkersReply { request, workers }),
                );
            }
            Input::Publish { client, name, key, overwrite, request } => {
                let error = if self.datasets.contains_key(&name) && !overwrite {
                    format!("dataset {name:?} already exists; publish with overwrite or unpublish first")
                } else if !self.state.tasks().contains_key(&key) {
                    format!("dataset {name:?}: key {key} is not on the cluster")
                } else {
                    String::new()
                };
                if error.is_empty() {
                    if let Some(old) = self.datasets.insert(name, key.clone()) {
                        self.event(Event::ClientReleased { client: DATASETS, keys: vec![old] });
                    }
                    self.event(Event::GraphSubmitted {
                        client: DATASETS,
                        tasks: vec![],
                        wanted: vec![key.clone()],
                    });
                }
                self.send_client(
                    client,
                    pb::to_client::Msg::Dataset(pb::DatasetReply {
                        request,
                        found: error.is_empty(),
                        key: Some(protocol::key_to_pb(&key)),
                        error,
                    }),
                );
            }
            Input::GetDataset { client, name, request } => {
                let reply = match self.datasets.get(&name) {
                    Some(k) => pb::DatasetReply {
                        request,
                        found: true,
                        key: Some(protocol::key_to_pb(k)),
                        error: String::new(),
                    },
                    None => {
                        let mut known: Vec<&String> = self.datasets.keys().collect();
                        known.sort();
                        pb::DatasetReply {
                            request,
                            found: false,
                            key: None,
                            error: format!("no dataset named {name:?}; published: {known:?}"),
                        }
                    }
                };
                self.send_client(client, pb::to_client::Msg::Dataset(reply));
            }
            Input::Activity { client, request, since } => {
                let mut snapshot = crate::dashboard::snapshot::build_with(
                    &self.state,
                    since,
                    self.clients.len(),
                    crate::scheduler::activity::STREAM_CAPACITY,
                );
                snapshot.time_ms = self.start.elapsed().as_millis() as u64;
                let json = serde_json::to_string(&snapshot).unwrap_or_default();
                self.send_client(
                    client,
                    pb::to_client::Msg::Activity(pb::ActivityReply { request, json }),
                );
            }
            Input::Story { client, key, request } => {
                let lines = self
                    .state
                    .story(&key)
                    .into_iter()
                    .map(|t| format!("{:>8} ms  {} -> {}  ({})", t.at, t.from, t.to, t.reason))
                    .collect();
                self.send_client(
                    client,
                    pb::to_client::Msg::Story(pb::StoryReply { request, lines }),
                );
            }
        }
    }
}

struct Service {
    inputs: mpsc::UnboundedSender<Input>,
    next_id: Arc<std::sync::atomic::AtomicU64>,
    token: String,
}

type WorkerStream = Pin<Box<dyn Stream<Item = Result<pb::ToWorker, Status>> + Send>>;
type ClientStream = Pin<Box<dyn Stream<Item = Result<pb::ToClient, Status>> + Send>>;

const TOKEN_REFUSAL: &str = "wrong or missing cluster token: give every process of the cluster the same token (--token-file PATH or the RASK_TOKEN environment variable)";

fn version_refusal(what: &str, theirs: u32) -> String {
    format!(
        "{what} speaks protocol version {theirs}, this scheduler speaks version {PROTOCOL_VERSION}; run the same Rask version on the scheduler, workers and clients"
    )
}

#[tonic::async_trait]
impl pb::scheduler_server::Scheduler for Service {
    type WorkerSessionStream = WorkerStream;
    type ClientSessionStream = ClientStream;

    async fn worker_session(
        &self,
        req: Request<Streaming<pb::WorkerMessage>>,
    ) -> Result<Response<WorkerStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = Outbox::new();
        let first = inbound.message().await?;
        let reg = match first {
            Some(pb::WorkerMessage { msg: Some(pb::worker_message::Msg::Register(r)) }) => r,
            _ => {
                return Err(Status::invalid_argument(
                    "a worker session must start with RegisterWorker",
                ))
            }
        };
        let refuse = |reason: String| {
            tx.last(Ok(pb::ToWorker {
                msg: Some(pb::to_worker::Msg::Refused(pb::Refused { reason })),
            }));
        };
        if reg.protocol_version != PROTOCOL_VERSION {
            refuse(version_refusal(&format!("worker {}", reg.name), reg.protocol_version));
            return Ok(Response::new(rx));
        }
        if !crate::auth::same_token(&reg.token, &self.token) {
            refuse(TOKEN_REFUSAL.into());
            return Ok(Response::new(rx));
        }
        let id = WorkerId(self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        tx.last(Ok(pb::ToWorker {
            msg: Some(pb::to_worker::Msg::Welcome(pb::WorkerWelcome { worker_id: id.0 })),
        }));
        let inputs = self.inputs.clone();
        let _ = inputs.send(Input::WorkerConnected { id, tx: tx.clone() });
        let _ = inputs.send(Input::Event(Event::WorkerJoined {
            worker: id,
            name: reg.name.clone(),
            addr: reg.addr.clone(),
            nthreads: reg.nthreads as usize,
            memory_limit: reg.memory_limit,
            ops: Arc::new(reg.ops.into_iter().collect::<BTreeSet<_>>()),
            resources: reg.resources.into_iter().collect(),
        }));
        tracing::info!("worker {} joined from {} ({} threads)", reg.name, reg.addr, reg.nthreads);
        tokio::spawn(async move {
            loop {
                let msg = match inbound.message().await {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(s) => {
                        tracing::warn!("worker {} session error: {}", reg.name, s.message());
                        break;
                    }
                };
                let event = match msg.msg {
                    Some(pb::worker_message::Msg::Heartbeat(h)) => {
                        let metrics = crate::scheduler::WorkerMetrics {
                            unmanaged: h.unmanaged,
                            spilled: h.spilled,
                            bytes_in: h.bytes_in,
                            bytes_out: h.bytes_out,
                            cpu_percent: if h.cpu_percent.is_finite() {
                                h.cpu_percent
                            } else {
                                0.0
                            },
                        };
                        let spans = worker_spans(h.spans);
                        let _ = inputs.send(Input::Event(Event::WorkerMetrics {
                            worker: id,
                            metrics,
                            spans,
                        }));
                        Event::Heartbeat { worker: id, memory: h.memory, paused: h.paused }
                    }
                    Some(pb::worker_message::Msg::Finished(f)) => {
                        match protocol::key_from_pb(f.key) {
                            Ok(key) => Event::TaskFinished {
                                worker: id,
                                key,
                                nbytes: f.nbytes,
                                micros: f.duration_us,
                            },
                            Err(_) => continue,
                        }
                    }
                    Some(pb::worker_message::Msg::StealResponse(r)) => {
                        match protocol::key_from_pb(r.key) {
                            Ok(key) => Event::StealResponse { worker: id, key, stolen: r.stolen },
                            Err(_) => continue,
                        }
                    }
                    Some(pb::worker_message::Msg::Failed(f)) => {
                        match (protocol::key_from_pb(f.key), protocol::failure_from_pb(f.failure)) {
                            (Ok(key), Ok(failure)) => {
                                Event::TaskFailed { worker: id, key, failure }
                            }
                            _ => continue,
                        }
                    }
                    Some(pb::worker_message::Msg::Missing(m)) => {
                        match (protocol::key_from_pb(m.key), protocol::key_from_pb(m.missing)) {
                            (Ok(key), Ok(missing)) => {
                                Event::DataMissing { worker: id, key, missing }
                            }
                            _ => continue,
                        }
                    }
                    Some(pb::worker_message::Msg::Closing(_)) => {
                        Event::WorkerClosing { worker: id }
                    }
                    Some(pb::worker_message::Msg::Register(_)) | None => continue,
                };
                if inputs.send(Input::Event(event)).is_err() {
                    return;
                }
            }
            tracing::info!("worker {} left", reg.name);
            let _ = inputs.send(Input::Event(Event::WorkerLost { worker: id }));
        });
        Ok(Response::new(rx))
    }

    async fn client_session(
        &self,
        req: Request<Streaming<pb::ClientMessage>>,
    ) -> Result<Response<ClientStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = Outbox::new();
        let hello = match inbound.message().await? {
            Some(pb::ClientMessage { msg: Some(pb::client_message::Msg::Hello(h)) }) => h,
            _ => {
                return Err(Status::invalid_argument(
                    "a client session must start with ClientHello",
                ))
            }
        };
        let refused = |reason: String| {
            Ok(pb::ToClient { msg: Some(pb::to_client::Msg::Refused(pb::Refused { reason })) })
        };
        if hello.protocol_version != PROTOCOL_VERSION {
            tx.last(refused(version_refusal(
                &format!("client {}", hello.name),
                hello.protocol_version,
            )));
            return Ok(Response::new(rx));
        }
        if !crate::auth::same_token(&hello.token, &self.token) {
            tx.last(refused(TOKEN_REFUSAL.into()));
            return Ok(Response::new(rx));
        }
        let id = ClientId(self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let inputs = self.inputs.clone();
        let _ = inputs.send(Input::ClientConnected { id, tx: tx.clone() });
        tokio::spawn(async move {
            let mut parts = Assembly::default();
            loop {
                let msg = match inbound.message().await {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(s) => {
                        // Oversized or malformed frames end this session only.
                        tracing::warn!("client {} session error: {}", hello.name, s.message());
                        tx.last(Err(s));
                        break;
                    }
                };
                let input = match msg.msg {
                    Some(pb::client_message::Msg::Submit(s)) => match parts.add(s) {
                        Part::Whole { request, tasks, wanted } => Input::Submit {
                            client: id,
                            request,
                            event: Event::GraphSubmitted { client: id, tasks, wanted },
                        },
                        Part::Refused { request, error } => {
                            tx.send(Ok(pb::ToClient {
                                msg: Some(pb::to_client::Msg::Rejected(pb::Rejected {
                                    error,
                                    request,
                                })),
                            }));
                            continue;
                        }
                        Part::Incomplete | Part::Dropped => continue,
                    },
                    Some(pb::client_message::Msg::Release(r)) => {
                        let keys: Vec<Key> = r
                            .keys
                            .into_iter()
                            .filter_map(|k| protocol::key_from_pb(Some(k)).ok())
                            .collect();
                        Input::Event(Event::ClientReleased { client: id, keys })
                    }
                    Some(pb::client_message::Msg::Scattered(s)) => {
                        match protocol::key_from_pb(s.key) {
                            Ok(key) => {
                                Input::Scattered { client: id, key, addr: s.addr, nbytes: s.nbytes }
                            }
                            Err(_) => continue,
                        }
                    }
                    Some(pb::client_message::Msg::DropCaches(_)) => Input::DropCaches,
                    Some(pb::client_message::Msg::ListWorkers(l)) => {
                        Input::ListWorkers { client: id, request: l.request }
                    }
                    Some(pb::client_message::Msg::Publish(p)) => match protocol::key_from_pb(p.key)
                    {
                        Ok(key) => Input::Publish {
                            client: id,
                            name: p.name,
                            key,
                            overwrite: p.overwrite,
                            request: p.request,
                        },
                        Err(_) => continue,
                    },
                    Some(pb::client_message::Msg::GetDataset(g)) => {
                        Input::GetDataset { client: id, name: g.name, request: g.request }
                    }
                    Some(pb::client_message::Msg::FetchFailed(f)) => {
                        match protocol::key_from_pb(f.key) {
                            Ok(key) => Input::Event(Event::ClientFetchFailed {
                                key,
                                addr: f.addr,
                                error: f.error,
                            }),
                            Err(_) => continue,
                        }
                    }
                    Some(pb::client_message::Msg::Story(s)) => match protocol::key_from_pb(s.key) {
                        Ok(key) => Input::Story { client: id, key, request: s.request },
                        Err(_) => continue,
                    },
                    Some(pb::client_message::Msg::Activity(a)) => {
                        Input::Activity { client: id, request: a.request, since: a.since }
                    }
                    Some(pb::client_message::Msg::Logs(l)) => Input::Logs {
                        job: l.job,
                        lines: l
                            .lines
                            .into_iter()
                            .map(|l| crate::scheduler::logs::MemberLine {
                                role: l.role,
                                rank: l.rank,
                                stderr: l.stderr,
                                text: l.text,
                            })
                            .collect(),
                    },
                    Some(pb::client_message::Msg::Hello(_)) | None => continue,
                };
                if inputs.send(input).is_err() {
                    return;
                }
            }
            let _ = inputs.send(Input::Event(Event::ClientLeft { client: id }));
        });
        Ok(Response::new(rx))
    }
}

/// Runs a scheduler until `shutdown` resolves. Prints its address once listening.
pub async fn run_scheduler(
    cfg: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), DistError> {
    // A file left by an earlier scheduler must not send workers there.
    if let Some(path) = &cfg.scheduler_file {
        let _ = std::fs::remove_file(path);
    }
    let listener =
        tokio::net::TcpListener::bind((cfg.host.as_str(), cfg.port)).await.map_err(|e| {
            DistError::Process {
                message: format!("scheduler cannot listen on {}:{}: {e}", cfg.host, cfg.port),
            }
        })?;
    let local: SocketAddr =
        listener.local_addr().map_err(|e| DistError::Process { message: e.to_string() })?;
    // What other machines dial: the contact address, else the bound one, else
    // (bound to all interfaces) this machine's address on its default route.
    let addr = crate::worker::contact_address(
        cfg.contact_address.as_deref(),
        &cfg.host,
        local.port(),
        "8.8.8.8:80",
    )?;
    // The dashboard: bound before the scheduler file is written, which names it.
    let secured = !cfg.token.is_empty() || cfg.tls.is_some();
    let dashboard = match &cfg.dashboard {
        Some(requested) if requested != "none" => Some(
            crate::dashboard::bind(requested, &cfg.host, secured)
                .await
                .map_err(|message| DistError::Process { message })?,
        ),
        _ => None,
    };
    let dashboard_url = dashboard
        .as_ref()
        .map(|(_, d)| d.split(' ').next().unwrap_or("").to_string())
        .unwrap_or_default();
    if let Some(path) = &cfg.scheduler_file {
        let json = format!(
            "{{\"address\": \"{addr}\", \"protocol_version\": {PROTOCOL_VERSION}, \"dashboard\": \"{dashboard_url}\"}}\n"
        );
        crate::scheduler_file::write(path, &json)
            .map_err(|message| DistError::Process { message })?;
    }
    println!("scheduler listening on {}:{}, contact address {addr}", cfg.host, local.port());
    if let Some((_, d)) = &dashboard {
        println!("dashboard at {d}");
    }

    let (inputs, mut rx) = mpsc::unbounded_channel::<Input>();
    let mut lp = Loop {
        state: SchedulerState::new(cfg.state.clone()),
        workers: HashMap::new(),
        clients: HashMap::new(),
        datasets: HashMap::new(),
        start: Instant::now(),
        overflowed: Vec::new(),
        dashboard: None,
        dashboard_url: dashboard_url.clone(),
        logs: Default::default(),
    };
    let mut dashboard_task = None;
    if let Some((listener, _)) = dashboard {
        let first = crate::dashboard::snapshot::build(&lp.state, 0, 0);
        let json = serde_json::to_string(&first).unwrap_or_default();
        let (tx, latest) = watch::channel(Arc::new(Published { snapshot: first, json }));
        lp.dashboard = Some((tx, 0));
        let (queries, mut asked) = mpsc::unbounded_channel::<DashQuery>();
        let forward = inputs.clone();
        tokio::spawn(async move {
            while let Some(q) = asked.recv().await {
                if forward.send(Input::Dash(q)).is_err() {
                    return;
                }
            }
        });
        let ticker = inputs.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(crate::dashboard::UPDATE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                every.tick().await;
                if ticker.send(Input::DashboardTick).is_err() {
                    return;
                }
            }
        });
        let token = cfg.token.clone();
        dashboard_task = Some(tokio::spawn(async move {
            if let Err(e) =
                crate::dashboard::serve(listener, latest, queries, token, std::future::pending())
                    .await
            {
                tracing::warn!("dashboard stopped: {e}");
            }
        }));
    }
    let ticker = inputs.clone();
    let tick = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(1000));
        loop {
            every.tick().await;
            if ticker.send(Input::Event(Event::Tick)).is_err() {
                return;
            }
        }
    });
    let state_loop = tokio::spawn(async move {
        while let Some(input) = rx.recv().await {
            lp.handle(input);
            // Drain what is already queued before yielding (batches bursts).
            while let Ok(more) = rx.try_recv() {
                lp.handle(more);
            }
        }
        // Tell workers that the scheduler is going.
        for (_, tx) in lp.workers.drain() {
            tx.last(Ok(pb::ToWorker {
                msg: Some(pb::to_worker::Msg::Close(pb::Refused {
                    reason: "scheduler shutting down".into(),
                })),
            }));
        }
        let _ = lp.state.workers().values().filter(|w| w.status == WorkerStatus::Running).count();
    });
    let service = Service {
        inputs,
        next_id: Arc::new(std::sync::atomic::AtomicU64::new(1)),
        token: cfg.token.clone(),
    };
    let svc = pb::scheduler_server::SchedulerServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let incoming = crate::worker::nodelay(listener);
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &cfg.tls {
        builder = builder.tls_config(tls.server()).map_err(|e| DistError::Process {
            message: format!("scheduler TLS ({:?}): {}", tls.files, crate::worker::error_chain(&e)),
        })?;
    }
    let result = builder
        .tcp_nodelay(true)
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| DistError::Process { message: format!("scheduler server failed: {e}") });
    tick.abort();
    state_loop.abort();
    if let Some(d) = dashboard_task {
        d.abort();
    }
    result
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// A heartbeat's spans, bounded: at most [`MAX_SPANS`] per heartbeat
/// (a worker sends at most 1,000 single ones and sums the rest), prefixes of
/// at most 256 bytes.
fn worker_spans(spans: Vec<pb::Span>) -> Vec<crate::scheduler::activity::WorkerSpan> {
    use crate::scheduler::activity::{SpanKind, WorkerSpan};
    const MAX_SPANS: usize = 4_096;
    spans
        .into_iter()
        .take(MAX_SPANS)
        .filter(|s| s.prefix.len() <= 256)
        .map(|s| WorkerSpan {
            kind: match pb::span::Kind::try_from(s.kind) {
                Ok(pb::span::Kind::Transfer) => SpanKind::Transfer,
                Ok(pb::span::Kind::DiskWrite) => SpanKind::DiskWrite,
                Ok(pb::span::Kind::DiskRead) => SpanKind::DiskRead,
                Err(_) => SpanKind::Compute,
            },
            prefix: s.prefix,
            start_ago_us: s.start_ago_us,
            duration_us: s.duration_us,
            nbytes: s.nbytes,
            count: s.count,
        })
        .collect()
}
