//! The client: submits graphs to a scheduler, holds futures, and moves data
//! to and from workers directly (the scheduler never relays values).
//!
//! A `Client` owns a small tokio runtime, so its API is blocking and can be
//! called from ordinary threads. Creating one makes it the default scheduler
//! for `compute()`, as in Dask; closing it (or dropping the last handle)
//! restores the previous default.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rask_core::{
    ComputeError, ComputeOptions, Data, Delayed, Executor, Graph, KeepAlive, Key, Scheduler, Value,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;

use crate::auth::{AttachToken, Tls};
use crate::error::DistError;
use crate::protocol::{self, pb, Submission, SubmitOptions, MAX_VALUE_BYTES, PROTOCOL_VERSION};
use crate::scheduler::TaskFailure;
use crate::worker::{connect_scheduler, connect_worker, fetch, DataClient};

/// Options of [`Client::connect_with`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Give up connecting after this long.
    pub timeout: Duration,
    /// Shared cluster token (empty = none).
    pub token: String,
    /// Make this client the default scheduler of `compute()`.
    pub set_as_default: bool,
    /// A name for the scheduler's logs.
    pub name: String,
    /// After a failed fetch (the holder died or lost the value), how long to
    /// wait for the value to be recomputed before giving up.
    pub refetch_timeout: Duration,
    /// TLS (mutual: the scheduler and workers check this client's certificate).
    pub tls: Option<Tls>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(10),
            token: String::new(),
            set_as_default: true,
            name: "client".into(),
            refetch_timeout: Duration::from_secs(300),
            tls: None,
        }
    }
}

#[derive(Debug, Clone)]
enum Status {
    Done { addr: String, nbytes: u64 },
    Erred(TaskFailure),
}

#[derive(Default)]
struct State {
    status: HashMap<Key, Status>,
    rejections: Vec<String>,
    replies: HashMap<u64, pb::to_client::Msg>,
    closed: Option<String>,
    n_workers: u32,
    dashboard: String,
}

struct Inner {
    rt: std::mem::ManuallyDrop<tokio::runtime::Runtime>,
    addr: String,
    tx: mpsc::UnboundedSender<pb::ClientMessage>,
    state: Mutex<State>,
    changed: Condvar,
    request: AtomicU64,
    holds: Mutex<HashMap<Key, usize>>,
    was_default: bool,
    scatter_rr: AtomicU64,
    workers: tokio::sync::Mutex<HashMap<String, DataClient>>,
    /// Presents the cluster token to workers' data planes.
    attach: AttachToken,
    tls: Option<Tls>,
    refetch_timeout: Duration,
}

impl Inner {
    fn send(&self, msg: pb::client_message::Msg) -> Result<(), DistError> {
        self.tx.send(pb::ClientMessage { msg: Some(msg) }).map_err(|_| DistError::Disconnected {
            peer: self.addr.clone(),
            message: "client session closed".into(),
        })
    }

    fn hold(&self, key: &Key) {
        *self.holds.lock().unwrap_or_else(|p| p.into_inner()).entry(key.clone()).or_insert(0) += 1;
    }

    /// Drops one hold on `key`; the last one releases it at the scheduler.
    fn unhold(&self, key: &Key) {
        let mut holds = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        let last = match holds.get_mut(key) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                holds.remove(key);
                true
            }
            None => false,
        };
        drop(holds);
        if last {
            self.state.lock().unwrap_or_else(|p| p.into_inner()).status.remove(key);
            let _ = self.send(pb::client_message::Msg::Release(pb::Release {
                keys: vec![protocol::key_to_pb(key)],
            }));
        }
    }

    /// Waits until every key is done or erred (or a rejection / disconnection
    /// arrives, or `timeout` passes).
    fn wait(
        &self,
        keys: &[Key],
        rejections_before: usize,
        timeout: Option<Duration>,
    ) -> Result<(), DistError> {
        self.wait_each(keys, rejections_before, timeout, &mut |_| {})
    }

    /// Like [`Inner::wait`], calling `done` once for each key as it completes.
    fn wait_each(
        &self,
        keys: &[Key],
        rejections_before: usize,
        timeout: Option<Duration>,
        done: &mut dyn FnMut(&Key),
    ) -> Result<(), DistError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut reported = vec![false; keys.len()];
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if st.rejections.len() > rejections_before {
                return Err(DistError::Rejected {
                    message: st.rejections[rejections_before].clone(),
                });
            }
            let mut all = true;
            for (i, k) in keys.iter().enumerate() {
                if st.status.contains_key(k) {
                    if !reported[i] {
                        reported[i] = true;
                        done(k);
                    }
                } else {
                    all = false;
                }
            }
            if all {
                return Ok(());
            }
            if let Some(reason) = &st.closed {
                return Err(DistError::Disconnected {
                    peer: self.addr.clone(),
                    message: reason.clone(),
                });
            }
            let wait = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(DistError::Disconnected {
                            peer: self.addr.clone(),
                            message: "timed out waiting for results".into(),
                        });
                    }
                    (d - now).min(Duration::from_millis(200))
                }
                None => Duration::from_millis(200),
            };
            st = self.changed.wait_timeout(st, wait).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    fn rejections(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).rejections.len()
    }

    /// A key's value envelope, fetched from its holder; waits again when the
    /// holder died (the scheduler recomputes the key and reports it anew).
    /// The first wait is for the computation (as long as it takes); after a
    /// failed fetch the scheduler is told, and the recomputed value is waited
    /// for at most `refetch_timeout`.
    fn fetch_bytes(&self, key: &Key) -> Result<Vec<u8>, DistError> {
        for attempt in 0..20 {
            let limit = (attempt > 0).then_some(self.refetch_timeout);
            self.wait(std::slice::from_ref(key), self.rejections(), limit)?;
            let status =
                self.state.lock().unwrap_or_else(|p| p.into_inner()).status.get(key).cloned();
            match status {
                Some(Status::Erred(f)) => return Err(DistError::Task(f)),
                Some(Status::Done { addr, .. }) => {
                    let got = self.rt.block_on(async {
                        let mut c = self.worker(&addr).await?;
                        let r = fetch(&mut c, key).await;
                        if r.is_err() {
                            self.workers.lock().await.remove(&addr);
                        }
                        r
                    });
                    match got {
                        Ok(bytes) => return Ok(bytes),
                        Err(e) => {
                            tracing::warn!("fetching {key} from {addr} failed ({e}); waiting for it to be recomputed");
                            self.send(pb::client_message::Msg::FetchFailed(pb::FetchFailed {
                                key: Some(protocol::key_to_pb(key)),
                                addr: addr.clone(),
                                error: e.clone(),
                            }))?;
                            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                            if matches!(st.status.get(key), Some(Status::Done { addr: a, .. }) if *a == addr)
                            {
                                st.status.remove(key);
                            }
                            drop(st);
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
                None => {}
            }
        }
        Err(DistError::Fetch {
            key: key.clone(),
            addr: self.addr.clone(),
            message: "holders kept failing".into(),
        })
    }

    /// A (cached) connection to a worker's data server.
    async fn worker(&self, addr: &str) -> Result<DataClient, String> {
        let mut cache = self.workers.lock().await;
        if let Some(c) = cache.get(addr) {
            return Ok(c.clone());
        }
        let c = connect_worker(addr, &self.attach, self.tls.as_ref()).await?;
        cache.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    fn next_request(&self) -> u64 {
        self.request.fetch_add(1, Ordering::Relaxed)
    }

    fn reply(&self, request: u64, timeout: Duration) -> Result<pb::to_client::Msg, DistError> {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(m) = st.replies.remove(&request) {
                return Ok(m);
            }
            if let Some(reason) = &st.closed {
                return Err(DistError::Disconnected {
                    peer: self.addr.clone(),
                    message: reason.clone(),
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(DistError::Disconnected {
                    peer: self.addr.clone(),
                    message: "no reply from the scheduler".into(),
                });
            }
            st = self.changed.wait_timeout(st, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.was_default {
            rask_core::set_default_scheduler(None);
        }
        // The last reference may go away on one of the runtime's own threads,
        // where a blocking shutdown would panic.
        // SAFETY: `rt` is not used after this point.
        let rt = unsafe { std::mem::ManuallyDrop::take(&mut self.rt) };
        rt.shutdown_background();
    }
}

/// A handle on a scheduler.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// A value being computed (or held) on the cluster.
pub struct Future<T> {
    key: Key,
    inner: Arc<Inner>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Future<T> {
    fn clone(&self) -> Self {
        self.inner.hold(&self.key);
        Future { key: self.key.clone(), inner: self.inner.clone(), _t: PhantomData }
    }
}

impl<T> Drop for Future<T> {
    fn drop(&mut self) {
        self.inner.unhold(&self.key);
    }
}

impl<T> std::fmt::Debug for Future<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Future({})", self.key)
    }
}

impl<T: Data> Future<T> {
    /// Its key.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// Whether it is done (in memory) or failed.
    pub fn done(&self) -> bool {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner()).status.contains_key(&self.key)
    }

    /// Waits for the value and fetches it from the worker holding it. A failed
    /// task gives its remote error (key, op, worker, message).
    pub fn result(&self) -> Result<T, DistError> {
        let bytes = self.inner.fetch_bytes(&self.key)?;
        let v = Value::from_envelope(&bytes, MAX_VALUE_BYTES as usize)
            .map_err(|e| DistError::Value { key: self.key.clone(), message: e.to_string() })?;
        v.take_decode::<T>()
            .map_err(|e| DistError::Value { key: self.key.clone(), message: e.to_string() })
    }

    /// Releases the future (the cluster forgets the value once nobody needs it).
    pub fn cancel(self) {
        drop(self)
    }

    /// The value as a `Delayed` argument of later computations on this
    /// cluster: the data stays where it is (keep the future alive meanwhile).
    pub fn as_delayed(&self) -> Delayed<T> {
        rask_core::delayed::external(self.key.clone())
    }
}

/// A future is an argument of later delayed calls: `add(&fut, 1)`.
impl<T: Data> rask_core::IntoArg<T> for &Future<T> {
    fn into_arg(self) -> rask_core::DelayedArg {
        rask_core::IntoArg::<T>::into_arg(self.as_delayed())
    }
}

fn pump(inner: &Arc<Inner>, msg: pb::to_client::Msg) {
    let mut st = inner.state.lock().unwrap_or_else(|p| p.into_inner());
    match msg {
        pb::to_client::Msg::Done(d) => {
            if let Ok(k) = protocol::key_from_pb(d.key) {
                st.status.insert(k, Status::Done { addr: d.addr, nbytes: d.nbytes });
            }
        }
        pb::to_client::Msg::Erred(e) => {
            if let (Ok(k), Ok(f)) =
                (protocol::key_from_pb(e.key), protocol::failure_from_pb(e.failure))
            {
                st.status.insert(k, Status::Erred(f));
            }
        }
        pb::to_client::Msg::Rejected(r) if r.request != 0 => {
            st.replies.insert(r.request, pb::to_client::Msg::Rejected(r));
        }
        pb::to_client::Msg::Rejected(r) => st.rejections.push(r.error),
        pb::to_client::Msg::Accepted(a) => {
            st.replies.insert(a.request, pb::to_client::Msg::Accepted(a));
        }
        pb::to_client::Msg::Refused(r) => st.closed = Some(r.reason),
        pb::to_client::Msg::Welcome(w) => {
            st.n_workers = w.n_workers;
            st.dashboard = w.dashboard;
        }
        m @ pb::to_client::Msg::Workers(pb::WorkersReply { request, .. })
        | m @ pb::to_client::Msg::Dataset(pb::DatasetReply { request, .. })
        | m @ pb::to_client::Msg::Story(pb::StoryReply { request, .. })
        | m @ pb::to_client::Msg::Activity(pb::ActivityReply { request, .. }) => {
            st.replies.insert(request, m);
        }
    }
    drop(st);
    inner.changed.notify_all();
}

/// What a worker looks like from a client.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerInfo {
    /// Name.
    pub name: String,
    /// Data address.
    pub addr: String,
    /// Task slots.
    pub nthreads: u32,
    /// Managed memory (bytes).
    pub memory: u64,
    /// Memory limit (bytes, 0 = none).
    pub memory_limit: u64,
    /// Tasks assigned.
    pub processing: u32,
    /// Keys held.
    pub in_memory: u32,
    /// running / paused / closing.
    pub status: String,
    /// The resources it declared (`--resources GPU=1`), by name.
    pub resources: std::collections::BTreeMap<String, f64>,
}

/// One member of a gang (see [`Client::submit_gang`]).
pub struct GangMember<T> {
    /// The member's task.
    pub task: Delayed<T>,
    /// The worker (name or address) it must run on, if any.
    pub worker: Option<String>,
}

impl Client {
    /// Connects to the scheduler at `addr` (`host:port`) with default options.
    /// The cluster token comes from `$RASK_TOKEN`, TLS from `$RASK_TLS_CA_FILE`,
    /// `$RASK_TLS_CERT` and `$RASK_TLS_KEY`, when they are set.
    pub fn connect(addr: &str) -> Result<Client, DistError> {
        let token =
            crate::auth::token_from_env().map_err(|message| DistError::Process { message })?;
        let tls = Tls::from_env().map_err(|message| DistError::Process { message })?;
        Self::connect_with(addr, ClientOptions { token, tls, ..ClientOptions::default() })
    }

    /// Connects with options (timeout, token, whether to become the default scheduler).
    pub fn connect_with(addr: &str, opts: ClientOptions) -> Result<Client, DistError> {
        let attach =
            AttachToken::new(&opts.token).map_err(|message| DistError::Process { message })?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("rask-client")
            .enable_all()
            .build()
            .map_err(|e| DistError::Process {
                message: format!("cannot start the client runtime: {e}"),
            })?;
        let (tx, rx) = mpsc::unbounded_channel::<pb::ClientMessage>();
        tx.send(pb::ClientMessage {
            msg: Some(pb::client_message::Msg::Hello(pb::ClientHello {
                protocol_version: PROTOCOL_VERSION,
                name: opts.name.clone(),
                token: opts.token.clone(),
            })),
        })
        .expect("receiver alive");
        let timeout = opts.timeout;
        let mut inbound = rt.block_on(async {
            let mut c = connect_scheduler(addr, timeout, opts.tls.as_ref()).await?;
            let fut = c.client_session(UnboundedReceiverStream::new(rx));
            match tokio::time::timeout(timeout, fut).await {
                Ok(Ok(r)) => Ok(r.into_inner()),
                Ok(Err(s)) => Err(DistError::Disconnected {
                    peer: addr.into(),
                    message: s.message().to_string(),
                }),
                Err(_) => Err(DistError::Unreachable {
                    addr: addr.into(),
                    timeout_s: timeout.as_secs_f64(),
                    message: "no answer to the session request".into(),
                }),
            }
        })?;
        let first = rt.block_on(async { tokio::time::timeout(timeout, inbound.next()).await });
        let (n_workers, dashboard) = match first {
            Ok(Some(Ok(pb::ToClient { msg: Some(pb::to_client::Msg::Welcome(w)) }))) => {
                (w.n_workers, w.dashboard)
            }
            Ok(Some(Ok(pb::ToClient { msg: Some(pb::to_client::Msg::Refused(r)) }))) => {
                return Err(DistError::Refused { peer: addr.into(), reason: r.reason })
            }
            other => {
                return Err(DistError::Disconnected {
                    peer: addr.into(),
                    message: format!("no welcome from the scheduler: {other:?}"),
                })
            }
        };
        let inner = Arc::new(Inner {
            rt: std::mem::ManuallyDrop::new(rt),
            addr: addr.into(),
            tx,
            state: Mutex::new(State { n_workers, dashboard, ..State::default() }),
            changed: Condvar::new(),
            request: AtomicU64::new(1),
            holds: Mutex::new(HashMap::new()),
            was_default: opts.set_as_default,
            scatter_rr: AtomicU64::new(0),
            workers: tokio::sync::Mutex::new(HashMap::new()),
            attach,
            tls: opts.tls.clone(),
            refetch_timeout: opts.refetch_timeout,
        });
        let weak = Arc::downgrade(&inner);
        inner.rt.spawn(async move {
            let reason = loop {
                match inbound.next().await {
                    Some(Ok(pb::ToClient { msg: Some(m) })) => match weak.upgrade() {
                        Some(i) => pump(&i, m),
                        None => return,
                    },
                    Some(Ok(_)) => {}
                    Some(Err(s)) => break s.message().to_string(),
                    None => break "the scheduler closed the session".to_string(),
                }
            };
            if let Some(i) = weak.upgrade() {
                i.state.lock().unwrap_or_else(|p| p.into_inner()).closed = Some(reason);
                i.changed.notify_all();
            }
        });
        let client = Client { inner };
        if opts.set_as_default {
            rask_core::set_default_scheduler(Some(client.scheduler()));
        }
        Ok(client)
    }

    /// The scheduler's address.
    pub fn address(&self) -> &str {
        &self.inner.addr
    }

    /// The scheduler's dashboard URL (`None` when it serves none), as
    /// Dask's `Client.dashboard_link`.
    pub fn dashboard_link(&self) -> Option<String> {
        let st = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        (!st.dashboard.is_empty()).then(|| st.dashboard.clone())
    }

    /// This client as a [`Scheduler`] for `compute_with`.
    pub fn scheduler(&self) -> Scheduler {
        Scheduler::Custom(Arc::new(ClientExecutor { inner: Arc::downgrade(&self.inner) }))
    }

    /// Sends a graph and waits for the scheduler's answer (accepted or why not).
    /// The outputs are held by this client from then on (the caller makes futures).
    fn submit_graph(
        &self,
        graph: &Graph,
        outputs: &[Key],
        opts: &SubmitOptions,
    ) -> Result<usize, DistError> {
        let submission = protocol::graph_to_specs(graph, outputs, opts)?;
        self.send_specs(submission, outputs)
    }

    /// Scatters the submission's large values, then sends its tasks (in
    /// parts when they exceed one message) and waits for the scheduler's
    /// answer; see [`Client::submit_graph`].
    fn send_specs(&self, submission: Submission, outputs: &[Key]) -> Result<usize, DistError> {
        // Held until the scheduler has the graph, whose tasks then keep them.
        let mut scattered = Vec::with_capacity(submission.data.len());
        for (key, bytes) in submission.data {
            scattered.push(self.scatter_envelope::<()>(key, bytes)?);
        }
        let before = self.inner.rejections();
        for k in outputs {
            self.inner.hold(k);
        }
        let request = self.inner.next_request();
        let tasks = submission.specs.iter().map(protocol::spec_to_pb).collect();
        let wanted = outputs.iter().map(protocol::key_to_pb).collect();
        let mut sent = Ok(());
        for part in crate::parts::split(tasks, wanted, request) {
            sent = self.inner.send(pb::client_message::Msg::Submit(part));
            if sent.is_err() {
                break;
            }
        }
        let reply = sent.and_then(|()| self.inner.reply(request, Duration::from_secs(600)));
        drop(scattered);
        match reply {
            Ok(pb::to_client::Msg::Accepted(_)) => Ok(before),
            Ok(pb::to_client::Msg::Rejected(r)) => {
                for k in outputs {
                    self.inner.unhold(k);
                }
                Err(DistError::Rejected { message: r.error })
            }
            Ok(other) => {
                Err(DistError::Protocol { message: format!("unexpected reply {other:?}") })
            }
            Err(e) => {
                for k in outputs {
                    self.inner.unhold(k);
                }
                Err(e)
            }
        }
    }

    /// Submits a delayed computation; the future resolves to its value.
    pub fn submit<T: Data>(&self, d: &Delayed<T>) -> Result<Future<T>, DistError> {
        self.submit_with(d, &SubmitOptions::default())
    }

    /// [`Client::submit`] with retries, priority, worker restrictions and resources.
    pub fn submit_with<T: Data>(
        &self,
        d: &Delayed<T>,
        opts: &SubmitOptions,
    ) -> Result<Future<T>, DistError> {
        let key = d.key().clone();
        self.submit_graph(&d.graph(), std::slice::from_ref(&key), opts)?;
        Ok(Future { key, inner: self.inner.clone(), _t: PhantomData })
    }

    /// Submits many computations at once (shared subgraphs are computed once).
    pub fn map<T: Data>(&self, items: &[Delayed<T>]) -> Result<Vec<Future<T>>, DistError> {
        let erased: Vec<rask_core::AnyDelayed> = items.iter().map(Delayed::erase).collect();
        let graph = rask_core::graph_of(&erased);
        let keys: Vec<Key> = items.iter().map(|d| d.key().clone()).collect();
        self.submit_graph(&graph, &keys, &SubmitOptions::default())?;
        Ok(keys
            .into_iter()
            .map(|key| Future { key, inner: self.inner.clone(), _t: PhantomData })
            .collect())
    }

    /// Where a finished future's value lives and its size, as the scheduler
    /// last reported (`None` while it is pending, failed, or being recomputed).
    pub fn who_has<T>(&self, future: &Future<T>) -> Option<(String, u64)> {
        let st = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        match st.status.get(&future.key) {
            Some(Status::Done { addr, nbytes }) => Some((addr.clone(), *nbytes)),
            _ => None,
        }
    }

    /// Submits a gang: the members start together on distinct workers, each
    /// with a free thread, or not at all; a member may be pinned to a worker
    /// (name or address). If any member fails or its worker dies, the others
    /// are cancelled and every member's future fails, naming the rank and
    /// the cause; members are never retried one by one. Each member learns
    /// its rank and the gang's size from its own arguments, which the caller
    /// builds. `id` names the gang and must be new to the scheduler.
    pub fn submit_gang<T: Data>(
        &self,
        id: &str,
        members: &[GangMember<T>],
    ) -> Result<Vec<Future<T>>, DistError> {
        let erased: Vec<rask_core::AnyDelayed> = members.iter().map(|m| m.task.erase()).collect();
        let graph = rask_core::graph_of(&erased);
        let keys: Vec<Key> = members.iter().map(|m| m.task.key().clone()).collect();
        let mut submission = protocol::graph_to_specs(&graph, &keys, &SubmitOptions::default())?;
        let size = members.len() as u32;
        for (rank, m) in members.iter().enumerate() {
            let spec =
                submission.specs.iter_mut().find(|s| &s.key == m.task.key()).ok_or_else(|| {
                    DistError::Protocol {
                        message: format!("gang member {} is not a task", m.task.key()),
                    }
                })?;
            if spec.gang.is_some() {
                return Err(DistError::Protocol {
                    message: format!("gang `{id}` lists {} twice", spec.key),
                });
            }
            spec.gang =
                Some(crate::scheduler::Gang { id: id.to_string(), rank: rank as u32, size });
            spec.workers = m.worker.iter().cloned().collect();
            spec.allow_other_workers = false;
        }
        self.send_specs(submission, &keys)?;
        Ok(keys
            .into_iter()
            .map(|key| Future { key, inner: self.inner.clone(), _t: PhantomData })
            .collect())
    }

    /// Waits for futures and returns their values in order.
    pub fn gather<T: Data>(&self, futures: &[Future<T>]) -> Result<Vec<T>, DistError> {
        futures.iter().map(Future::result).collect()
    }

    /// Waits until every future is done or failed.
    pub fn wait<T>(&self, futures: &[Future<T>]) -> Result<(), DistError> {
        let keys: Vec<Key> = futures.iter().map(|f| f.key.clone()).collect();
        self.inner.wait(&keys, self.inner.rejections(), None)
    }

    /// The futures in the order they complete.
    pub fn as_completed<T>(&self, futures: Vec<Future<T>>) -> impl Iterator<Item = Future<T>> {
        let inner = self.inner.clone();
        let mut pending = futures;
        std::iter::from_fn(move || {
            if pending.is_empty() {
                return None;
            }
            let mut st = inner.state.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(i) = pending.iter().position(|f| st.status.contains_key(&f.key)) {
                    return Some(pending.remove(i));
                }
                if st.closed.is_some() {
                    return Some(pending.remove(0));
                }
                st = inner
                    .changed
                    .wait_timeout(st, Duration::from_millis(200))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        })
    }

    /// Lets a computation finish without keeping its result: the future is
    /// released once the task is done.
    pub fn fire_and_forget<T: Send + 'static>(&self, future: Future<T>) {
        let inner = self.inner.clone();
        std::thread::spawn(move || {
            let _ = inner.wait(
                std::slice::from_ref(&future.key),
                inner.rejections(),
                Some(Duration::from_secs(24 * 3600)),
            );
            drop(future);
        });
    }

    /// The workers connected to the scheduler.
    pub fn workers(&self) -> Result<Vec<WorkerInfo>, DistError> {
        let request = self.inner.next_request();
        self.inner.send(pb::client_message::Msg::ListWorkers(pb::ListWorkers { request }))?;
        match self.inner.reply(request, Duration::from_secs(10))? {
            pb::to_client::Msg::Workers(w) => Ok(w
                .workers
                .into_iter()
                .map(|w| WorkerInfo {
                    name: w.name,
                    addr: w.addr,
                    nthreads: w.nthreads,
                    memory: w.memory,
                    memory_limit: w.memory_limit,
                    processing: w.processing,
                    in_memory: w.in_memory,
                    status: w.status,
                    resources: w.resources.into_iter().collect(),
                })
                .collect()),
            other => Err(DistError::Protocol { message: format!("unexpected reply {other:?}") }),
        }
    }

    /// This machine's address on the route to the scheduler: where workers
    /// can reach a listener the client opens (progress and log channels).
    pub fn reachable_host(&self) -> Result<String, String> {
        let target = self.address().trim_start_matches("http://");
        std::net::UdpSocket::bind("0.0.0.0:0")
            .and_then(|s| s.connect(target).map(|_| s))
            .and_then(|s| s.local_addr())
            .map(|a| a.ip().to_string())
            .map_err(|e| {
                format!("cannot find this machine's address towards the scheduler {target}: {e}")
            })
    }

    /// Waits until at least `n` workers are connected.
    pub fn wait_for_workers(&self, n: usize, timeout: Duration) -> Result<(), DistError> {
        let deadline = Instant::now() + timeout;
        loop {
            let have = self.workers()?.len();
            if have >= n {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(DistError::Process {
                    message: format!("only {have} of {n} workers connected within {timeout:?}"),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Places a value on a worker directly (round robin) and returns a future on it.
    pub fn scatter<T: Data>(&self, value: T) -> Result<Future<T>, DistError> {
        let token = rask_core::tokenize(&value).unwrap_or_else(|_| rask_core::key::unique_token());
        let key = Key::new("scatter", token);
        let bytes = Value::new(value)
            .to_envelope()
            .map_err(|e| DistError::Value { key: key.clone(), message: e.to_string() })?;
        self.scatter_envelope(key, bytes)
    }

    /// Puts an encoded value on a worker (round robin) under `key`, tells the
    /// scheduler, and waits until it has taken the key.
    fn scatter_envelope<T>(&self, key: Key, bytes: Vec<u8>) -> Result<Future<T>, DistError> {
        let workers = self.workers()?;
        if workers.is_empty() {
            return Err(DistError::Process {
                message: "scatter needs at least one connected worker".into(),
            });
        }
        let w = &workers
            [self.inner.scatter_rr.fetch_add(1, Ordering::Relaxed) as usize % workers.len()];
        let nbytes = bytes.len() as u64;
        let addr = w.addr.clone();
        let bytes = Arc::new(bytes);
        self.inner.rt.block_on(async {
            let mut c = self.inner.worker(&addr).await.map_err(|m| DistError::Fetch {
                key: key.clone(),
                addr: addr.clone(),
                message: m,
            })?;
            let chunks = crate::worker::chunks(&key, bytes);
            c.put(tokio_stream::iter(chunks)).await.map_err(|s| DistError::Fetch {
                key: key.clone(),
                addr: addr.clone(),
                message: s.message().to_string(),
            })
        })?;
        self.inner.hold(&key);
        let before = self.inner.rejections();
        self.inner.send(pb::client_message::Msg::Scattered(pb::Scattered {
            key: Some(protocol::key_to_pb(&key)),
            addr,
            nbytes,
        }))?;
        let fut = Future { key: key.clone(), inner: self.inner.clone(), _t: PhantomData };
        self.inner.wait(std::slice::from_ref(&key), before, Some(Duration::from_secs(60)))?;
        Ok(fut)
    }

    /// Makes every worker drop its cache of fetched copies (values fetched
    /// from peers that no task there waits for). Computations submitted
    /// after this call fetch again: benchmarks call it between repeats so
    /// that no repeat reuses another's transfers.
    pub fn drop_worker_caches(&self) -> Result<(), DistError> {
        self.inner.send(pb::client_message::Msg::DropCaches(pb::DropCaches {}))
    }

    /// Hands lines that the members of a launched job printed to the
    /// scheduler, which keeps the most recent ones of its most recent jobs
    /// for the dashboard's logs page (`/api/v1/logs`; see
    /// [`crate::scheduler::logs`]). Lines are cut to
    /// [`crate::scheduler::logs::LINE_BYTES`] here. Send at most a few
    /// hundred lines at a time: a message is bounded by `MAX_MESSAGE_BYTES`.
    pub fn send_logs(
        &self,
        job: &str,
        lines: Vec<crate::scheduler::logs::MemberLine>,
    ) -> Result<(), DistError> {
        use crate::scheduler::logs::{cut, LINE_BYTES};
        let lines = lines
            .into_iter()
            .map(|l| pb::LogLine {
                role: l.role,
                rank: l.rank,
                stderr: l.stderr,
                text: cut(l.text, LINE_BYTES),
            })
            .collect();
        self.inner.send(pb::client_message::Msg::Logs(pb::JobLogs { job: job.into(), lines }))
    }

    /// Publishes a future's value under a name, kept alive until unpublished.
    pub fn publish_dataset<T>(&self, name: &str, future: &Future<T>) -> Result<(), DistError> {
        let request = self.inner.next_request();
        self.inner.send(pb::client_message::Msg::Publish(pb::PublishDataset {
            name: name.into(),
            key: Some(protocol::key_to_pb(&future.key)),
            overwrite: false,
            request,
        }))?;
        match self.inner.reply(request, Duration::from_secs(10))? {
            pb::to_client::Msg::Dataset(d) if d.found => Ok(()),
            pb::to_client::Msg::Dataset(d) => Err(DistError::Rejected { message: d.error }),
            other => Err(DistError::Protocol { message: format!("unexpected reply {other:?}") }),
        }
    }

    /// A future on a published dataset.
    pub fn get_dataset<T: Data>(&self, name: &str) -> Result<Future<T>, DistError> {
        let request = self.inner.next_request();
        self.inner.send(pb::client_message::Msg::GetDataset(pb::GetDataset {
            name: name.into(),
            request,
        }))?;
        let key = match self.inner.reply(request, Duration::from_secs(10))? {
            pb::to_client::Msg::Dataset(d) if d.found => protocol::key_from_pb(d.key)?,
            pb::to_client::Msg::Dataset(d) => return Err(DistError::Rejected { message: d.error }),
            other => {
                return Err(DistError::Protocol { message: format!("unexpected reply {other:?}") })
            }
        };
        self.inner.hold(&key);
        let request = self.inner.next_request();
        self.inner.send(pb::client_message::Msg::Submit(pb::Submit {
            tasks: vec![],
            wanted: vec![protocol::key_to_pb(&key)],
            request,
            more: false,
        }))?;
        self.inner.reply(request, Duration::from_secs(60))?;
        Ok(Future { key, inner: self.inner.clone(), _t: PhantomData })
    }

    /// The scheduler's history of a key (one line per transition).
    pub fn story(&self, key: &Key) -> Result<Vec<String>, DistError> {
        let request = self.inner.next_request();
        self.inner.send(pb::client_message::Msg::Story(pb::Story {
            key: Some(protocol::key_to_pb(key)),
            request,
        }))?;
        match self.inner.reply(request, Duration::from_secs(10))? {
            pb::to_client::Msg::Story(s) => Ok(s.lines),
            other => Err(DistError::Protocol { message: format!("unexpected reply {other:?}") }),
        }
    }

    /// The scheduler's dashboard view as JSON (workers, task groups, totals)
    /// with the task-stream entries numbered `since` or later that it still
    /// keeps (the last 20,000); see [`crate::dashboard::snapshot::Snapshot`].
    pub fn activity(&self, since: u64) -> Result<serde_json::Value, DistError> {
        let request = self.inner.next_request();
        self.inner
            .send(pb::client_message::Msg::Activity(pb::ActivityRequest { request, since }))?;
        match self.inner.reply(request, Duration::from_secs(30))? {
            pb::to_client::Msg::Activity(a) => serde_json::from_str(&a.json)
                .map_err(|e| DistError::Protocol { message: format!("activity: {e}") }),
            other => Err(DistError::Protocol { message: format!("unexpected reply {other:?}") }),
        }
    }

    /// Closes the session (restores the previous default scheduler).
    pub fn close(self) {
        drop(self)
    }
}

/// A client acting as a [`rask_core::Executor`] (what `Client::scheduler` returns).
struct ClientExecutor {
    inner: std::sync::Weak<Inner>,
}

impl ClientExecutor {
    /// The executor's name and its client, unless the client was closed.
    fn client(&self) -> Result<(String, Client), ComputeError> {
        let name = self.name();
        let inner = self.inner.upgrade().ok_or_else(|| ComputeError::Unsupported {
            scheduler: name.clone(),
            key: Key::named("cluster"),
            reason: "the client was closed".into(),
        })?;
        Ok((name, Client { inner }))
    }
}

impl Client {
    /// Submits `graph`, waits until every output is done (progress
    /// callbacks see them complete) and returns futures holding them.
    fn run_graph(
        &self,
        graph: &Graph,
        outputs: &[Key],
        options: &ComputeOptions,
    ) -> Result<Vec<Future<()>>, DistError> {
        let before = self.submit_graph(graph, outputs, &SubmitOptions::default())?;
        let futs: Vec<Future<()>> = outputs
            .iter()
            .map(|k| Future { key: k.clone(), inner: self.inner.clone(), _t: PhantomData })
            .collect();
        let callbacks = &options.callbacks;
        callbacks.iter().for_each(|c| c.on_start(outputs.len()));
        let start = Instant::now();
        let result = self.inner.wait_each(outputs, before, None, &mut |k| {
            let info = rask_core::TaskInfo { key: k, op: "cluster", worker: 0 };
            callbacks.iter().for_each(|c| c.on_task_finish(&info, start, Instant::now(), true));
        });
        callbacks.iter().for_each(|c| c.on_finish(result.is_ok()));
        result?;
        Ok(futs)
    }
}

fn to_compute_error(scheduler: &str, e: DistError) -> ComputeError {
    match e {
        DistError::Task(f) => ComputeError::TaskFailed {
            key: f.key.clone(),
            op: f.op.clone(),
            message: format!(
                "{}{}",
                f.message,
                f.worker.as_ref().map(|w| format!(" (on worker {w})")).unwrap_or_default()
            ),
            kind: match f.kind {
                crate::scheduler::FailureCause::Panic => rask_core::FailureKind::Panic,
                _ => rask_core::FailureKind::Error,
            },
        },
        DistError::Graph(g) => ComputeError::Graph(g),
        DistError::Unsupported { key, reason } => {
            ComputeError::Unsupported { scheduler: scheduler.into(), key, reason }
        }
        other => ComputeError::Unsupported {
            scheduler: scheduler.into(),
            key: Key::named("cluster"),
            reason: other.to_string(),
        },
    }
}

impl Executor for ClientExecutor {
    fn name(&self) -> String {
        match self.inner.upgrade() {
            Some(i) => format!("distributed({})", i.addr),
            None => "distributed(closed)".into(),
        }
    }

    fn persist(
        &self,
        graph: Graph,
        outputs: &[Key],
        options: &ComputeOptions,
    ) -> Result<Option<Vec<KeepAlive>>, ComputeError> {
        let (name, client) = self.client()?;
        let run = || -> Result<Vec<KeepAlive>, DistError> {
            let futs = client.run_graph(&graph, outputs, options)?;
            Ok(futs.into_iter().map(|f| Arc::new(f) as KeepAlive).collect())
        };
        run().map(Some).map_err(|e| to_compute_error(&name, e))
    }

    fn execute(
        &self,
        graph: Graph,
        outputs: &[Key],
        options: &ComputeOptions,
    ) -> Result<Vec<Value>, ComputeError> {
        let (name, client) = self.client()?;
        let run = || -> Result<Vec<Value>, DistError> {
            let futs = client.run_graph(&graph, outputs, options)?;
            futs.iter()
                .map(|f| {
                    let bytes = client.inner.fetch_bytes(&f.key)?;
                    Value::from_envelope(&bytes, MAX_VALUE_BYTES as usize).map_err(|e| {
                        DistError::Value { key: f.key.clone(), message: e.to_string() }
                    })
                })
                .collect()
        };
        run().map_err(|e| to_compute_error(&name, e))
    }
}
