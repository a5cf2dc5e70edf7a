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
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::DistError;
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
    /// Shared token that workers and clients must present (empty = none).
    pub token: String,
    /// State-machine tuning.
    pub state: SchedulerConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
            port: 8786,
            scheduler_file: None,
            token: String::new(),
            state: SchedulerConfig::default(),
        }
    }
}

type WorkerTx = mpsc::Sender<Result<pb::ToWorker, Status>>;
type ClientTx = mpsc::Sender<Result<pb::ToClient, Status>>;

enum Input {
    Event(Event),
    Submit { client: ClientId, request: u64, event: Event },
    WorkerConnected { id: WorkerId, tx: WorkerTx },
    ClientConnected { id: ClientId, tx: ClientTx },
    Scattered { client: ClientId, key: Key, addr: String, nbytes: u64 },
    ListWorkers { client: ClientId, request: u64 },
    Publish { client: ClientId, name: String, key: Key, overwrite: bool, request: u64 },
    GetDataset { client: ClientId, name: String, request: u64 },
    Story { client: ClientId, key: Key, request: u64 },
}

/// The client id under which published datasets are kept alive.
const DATASETS: ClientId = ClientId(0);

struct Loop {
    state: SchedulerState,
    workers: HashMap<WorkerId, WorkerTx>,
    clients: HashMap<ClientId, ClientTx>,
    datasets: HashMap<String, Key>,
    start: Instant,
}

impl Loop {
    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn to_client(&self, client: ClientId, msg: pb::to_client::Msg) {
        if let Some(tx) = self.clients.get(&client) {
            // A full or closed channel means the client is slow or gone; its session end reports that.
            let _ = tx.try_send(Ok(pb::ToClient { msg: Some(msg) }));
        }
    }

    fn to_worker(&self, worker: WorkerId, msg: pb::to_worker::Msg) {
        if let Some(tx) = self.workers.get(&worker) {
            let _ = tx.try_send(Ok(pb::ToWorker { msg: Some(msg) }));
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
                Command::Compute { worker, key, op, payload, deps } => self.to_worker(
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
                Command::FreeKeys { worker, keys } => self.to_worker(
                    worker,
                    pb::to_worker::Msg::Free(pb::FreeKeys {
                        keys: keys.iter().map(protocol::key_to_pb).collect(),
                    }),
                ),
                Command::KeyDone { client, key, addr, nbytes } => self.to_client(
                    client,
                    pb::to_client::Msg::Done(pb::KeyDone {
                        key: Some(protocol::key_to_pb(&key)),
                        addr,
                        nbytes,
                    }),
                ),
                Command::KeyErred { client, key, failure } => self.to_client(
                    client,
                    pb::to_client::Msg::Erred(pb::KeyErred {
                        key: Some(protocol::key_to_pb(&key)),
                        failure: Some(protocol::failure_to_pb(&failure)),
                    }),
                ),
                Command::Reject { client, error } => self.to_client(
                    client,
                    pb::to_client::Msg::Rejected(pb::Rejected { error, request: 0 }),
                ),
                Command::CloseWorker { worker } => {
                    self.to_worker(
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
                            self.to_client(
                                client,
                                pb::to_client::Msg::Rejected(pb::Rejected { error, request }),
                            );
                            None
                        }
                        other => Some(other),
                    })
                    .collect();
                if !rejected {
                    self.to_client(client, pb::to_client::Msg::Accepted(pb::Accepted { request }));
                }
                self.dispatch(cmds);
            }
            Input::WorkerConnected { id, tx } => {
                self.workers.insert(id, tx);
            }
            Input::ClientConnected { id, tx } => {
                let n = self.state.workers().len() as u32;
                self.clients.insert(id, tx);
                self.to_client(
                    id,
                    pb::to_client::Msg::Welcome(pb::ClientWelcome {
                        client_id: id.0,
                        n_workers: n,
                    }),
                );
            }
            Input::Scattered { client, key, addr, nbytes } => {
                match self.state.workers().values().find(|w| w.addr == addr).map(|w| w.id) {
                    Some(worker) => {
                        self.event(Event::DataScattered { client, key, worker, nbytes })
                    }
                    None => self.to_client(
                        client,
                        pb::to_client::Msg::Rejected(pb::Rejected {
                            error: format!("scatter of {key}: no worker at {addr}"),
                            request: 0,
                        }),
                    ),
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
                    })
                    .collect();
                self.to_client(
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
                self.to_client(
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
                self.to_client(client, pb::to_client::Msg::Dataset(reply));
            }
            Input::Story { client, key, request } => {
                let lines = self
                    .state
                    .story(&key)
                    .into_iter()
                    .map(|t| format!("{:>8} ms  {} -> {}  ({})", t.at, t.from, t.to, t.reason))
                    .collect();
                self.to_client(
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
        let (tx, rx) = mpsc::channel(4096);
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
            let tx = tx.clone();
            async move {
                let _ = tx
                    .send(Ok(pb::ToWorker {
                        msg: Some(pb::to_worker::Msg::Refused(pb::Refused { reason })),
                    }))
                    .await;
            }
        };
        if reg.protocol_version != PROTOCOL_VERSION {
            refuse(version_refusal(&format!("worker {}", reg.name), reg.protocol_version)).await;
            return Ok(Response::new(Box::pin(ReceiverStream::new(rx))));
        }
        if reg.token != self.token {
            refuse("wrong or missing cluster token".into()).await;
            return Ok(Response::new(Box::pin(ReceiverStream::new(rx))));
        }
        let id = WorkerId(self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let _ = tx
            .send(Ok(pb::ToWorker {
                msg: Some(pb::to_worker::Msg::Welcome(pb::WorkerWelcome { worker_id: id.0 })),
            }))
            .await;
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
                        Event::Heartbeat { worker: id, memory: h.memory, paused: h.paused }
                    }
                    Some(pb::worker_message::Msg::Finished(f)) => {
                        match protocol::key_from_pb(f.key) {
                            Ok(key) => Event::TaskFinished { worker: id, key, nbytes: f.nbytes },
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
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn client_session(
        &self,
        req: Request<Streaming<pb::ClientMessage>>,
    ) -> Result<Response<ClientStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(1 << 16);
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
            let _ = tx
                .send(refused(version_refusal(
                    &format!("client {}", hello.name),
                    hello.protocol_version,
                )))
                .await;
            return Ok(Response::new(Box::pin(ReceiverStream::new(rx))));
        }
        if hello.token != self.token {
            let _ = tx.send(refused("wrong or missing cluster token".into())).await;
            return Ok(Response::new(Box::pin(ReceiverStream::new(rx))));
        }
        let id = ClientId(self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let inputs = self.inputs.clone();
        let _ = inputs.send(Input::ClientConnected { id, tx: tx.clone() });
        tokio::spawn(async move {
            loop {
                let msg = match inbound.message().await {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(s) => {
                        // Oversized or malformed frames end this session only.
                        tracing::warn!("client {} session error: {}", hello.name, s.message());
                        let _ = tx.try_send(Err(s));
                        break;
                    }
                };
                let input = match msg.msg {
                    Some(pb::client_message::Msg::Submit(s)) => {
                        let tasks: Result<Vec<_>, _> =
                            s.tasks.into_iter().map(protocol::spec_from_pb).collect();
                        let wanted: Result<Vec<_>, _> =
                            s.wanted.into_iter().map(|k| protocol::key_from_pb(Some(k))).collect();
                        match (tasks, wanted) {
                            (Ok(tasks), Ok(wanted)) => Input::Submit {
                                client: id,
                                request: s.request,
                                event: Event::GraphSubmitted { client: id, tasks, wanted },
                            },
                            (Err(e), _) | (_, Err(e)) => {
                                let _ = tx.try_send(Ok(pb::ToClient {
                                    msg: Some(pb::to_client::Msg::Rejected(pb::Rejected {
                                        error: format!("malformed submission: {e}"),
                                        request: s.request,
                                    })),
                                }));
                                continue;
                            }
                        }
                    }
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
                    Some(pb::client_message::Msg::Story(s)) => match protocol::key_from_pb(s.key) {
                        Ok(key) => Input::Story { client: id, key, request: s.request },
                        Err(_) => continue,
                    },
                    Some(pb::client_message::Msg::Hello(_)) | None => continue,
                };
                if inputs.send(input).is_err() {
                    return;
                }
            }
            let _ = inputs.send(Input::Event(Event::ClientLeft { client: id }));
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Runs a scheduler until `shutdown` resolves. Prints its address once listening.
pub async fn run_scheduler(
    cfg: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), DistError> {
    let listener =
        tokio::net::TcpListener::bind((cfg.host.as_str(), cfg.port)).await.map_err(|e| {
            DistError::Process {
                message: format!("scheduler cannot listen on {}:{}: {e}", cfg.host, cfg.port),
            }
        })?;
    let local: SocketAddr =
        listener.local_addr().map_err(|e| DistError::Process { message: e.to_string() })?;
    let addr = format!("{}:{}", cfg.host, local.port());
    if let Some(path) = &cfg.scheduler_file {
        let json =
            format!("{{\"address\": \"{addr}\", \"protocol_version\": {PROTOCOL_VERSION}}}\n");
        std::fs::write(path, json).map_err(|e| DistError::Process {
            message: format!("cannot write the scheduler file {}: {e}", path.display()),
        })?;
    }
    println!("scheduler listening on {addr}");

    let (inputs, mut rx) = mpsc::unbounded_channel::<Input>();
    let mut lp = Loop {
        state: SchedulerState::new(cfg.state.clone()),
        workers: HashMap::new(),
        clients: HashMap::new(),
        datasets: HashMap::new(),
        start: Instant::now(),
    };
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
            let _ = tx.try_send(Ok(pb::ToWorker {
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
    let result = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| DistError::Process { message: format!("scheduler server failed: {e}") });
    tick.abort();
    state_loop.abort();
    result
}
