//! The scheduler's web dashboard: a page (plain JavaScript, embedded in the
//! binary: no CDN, no build step), live updates over Server-Sent Events, a
//! JSON API and Prometheus metrics.
//!
//! Data flow: the scheduler's event loop builds a [`snapshot::Snapshot`] from
//! its incremental aggregates every [`UPDATE_EVERY`] and publishes it (JSON,
//! serialized once) on a watch channel; every open page reads the latest one.
//! A page costs the scheduler nothing per viewer, and an update costs what it
//! shows, not the graph's size. Lookups of one key or of the failures go to
//! the event loop as queries.

pub mod snapshot;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::WatchStream;
use tokio_stream::StreamExt;

use snapshot::{Snapshot, TaskInfo};

/// How often the scheduler publishes an update.
pub const UPDATE_EVERY: Duration = Duration::from_millis(250);

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");

/// One published update: the snapshot and its JSON, serialized once.
#[derive(Debug)]
pub struct Published {
    /// The snapshot (for `/metrics` and the JSON API).
    pub snapshot: Snapshot,
    /// Its JSON (what the page receives).
    pub json: String,
}

/// A question for the scheduler's event loop.
pub enum DashQuery {
    /// One key's state and story.
    Task(rask_core::Key, oneshot::Sender<Option<TaskInfo>>),
    /// The recent failures, newest first.
    Failures(oneshot::Sender<Vec<crate::scheduler::activity::FailureEntry>>),
    /// The graph page's data.
    Graph(oneshot::Sender<snapshot::GraphView>),
    /// One worker's page, by scheduler id.
    Worker(u64, oneshot::Sender<Option<snapshot::WorkerInfo>>),
    /// Launched jobs, the most recent first, with their kept lines numbered
    /// above a number (0: all).
    Logs(u64, oneshot::Sender<Vec<crate::scheduler::logs::JobLog>>),
}

impl DashQuery {
    /// Answers from the scheduler's state and the jobs' lines (on its event
    /// loop). Each answer is bounded by what its page shows.
    pub fn answer(
        self,
        state: &crate::scheduler::SchedulerState,
        logs: &crate::scheduler::logs::JobLogs,
    ) {
        // A reply nobody waits for any more (the page went) is dropped.
        match self {
            DashQuery::Task(key, reply) => drop(reply.send(snapshot::task_info(state, &key))),
            DashQuery::Failures(reply) => drop(reply.send(snapshot::failures(state))),
            DashQuery::Graph(reply) => drop(reply.send(snapshot::graph(state))),
            DashQuery::Worker(id, reply) => drop(reply.send(snapshot::worker_info(state, id))),
            DashQuery::Logs(since, reply) => drop(reply.send(logs.jobs(since))),
        }
    }
}

/// What the HTTP handlers share.
#[derive(Clone)]
struct App {
    latest: watch::Receiver<Arc<Published>>,
    queries: mpsc::UnboundedSender<DashQuery>,
    token: Arc<String>,
}

/// Serves the dashboard on `listener` until `shutdown` resolves. With a
/// non-empty `token`, every page and API call but `/health` needs it (a
/// Bearer header, or `?token=` once, which sets a cookie).
pub async fn serve(
    listener: tokio::net::TcpListener,
    latest: watch::Receiver<Arc<Published>>,
    queries: mpsc::UnboundedSender<DashQuery>,
    token: String,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = App { latest, queries, token: Arc::new(token) };
    let router = Router::new()
        .route("/", get(|| async { page(INDEX_HTML, "text/html; charset=utf-8") }))
        .route("/app.js", get(|| async { page(APP_JS, "text/javascript; charset=utf-8") }))
        .route("/api/v1/snapshot", get(snapshot_json))
        .route("/api/v1/events", get(events))
        .route("/api/v1/workers", get(workers))
        .route("/api/v1/tasks/counts", get(counts))
        .route("/api/v1/task/{key}", get(task))
        .route("/api/v1/failures", get(failures))
        .route("/api/v1/graph", get(graph))
        .route("/api/v1/worker/{id}", get(worker))
        .route("/api/v1/logs", get(logs))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(app.clone(), check_token))
        .route("/health", get(|| async { "ok" }))
        .with_state(app);
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}

fn page(body: &'static str, kind: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// With a cluster token, a request must carry it: `Authorization: Bearer
/// TOKEN`, the `rask_token` cookie, or `?token=TOKEN` once (which sets the
/// cookie, so the page's own requests carry it). Compared in constant time.
async fn check_token(
    State(app): State<App>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    if app.token.is_empty() {
        return next.run(request).await;
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("rask_token="));
    let query = q.get("token").map(String::as_str);
    let ok = |t: Option<&str>| t.is_some_and(|t| crate::auth::same_token(t, &app.token));
    if ok(bearer) || ok(cookie) {
        return next.run(request).await;
    }
    if ok(query) {
        let mut response = next.run(request).await;
        let cookie = format!("rask_token={}; HttpOnly; SameSite=Strict; Path=/", app.token);
        if let Ok(v) = header::HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
        return response;
    }
    (
        StatusCode::UNAUTHORIZED,
        "this dashboard needs the cluster token: open it with ?token=TOKEN once, or send `Authorization: Bearer TOKEN`",
    )
        .into_response()
}

fn json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn snapshot_json(State(app): State<App>) -> Response {
    json(app.latest.borrow().json.clone())
}

async fn events(
    State(app): State<App>,
) -> Sse<impl tokio_stream::Stream<Item = Result<SseEvent, std::convert::Infallible>>> {
    let stream = WatchStream::new(app.latest.clone())
        .map(|p| Ok(SseEvent::default().event("snapshot").data(p.json.as_str())));
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn workers(State(app): State<App>) -> Response {
    let p = app.latest.borrow().clone();
    json(serde_json::to_string(&p.snapshot.workers).unwrap_or_default())
}

async fn counts(State(app): State<App>) -> Response {
    let p = app.latest.borrow().clone();
    let s = &p.snapshot;
    let by_state: serde_json::Map<String, serde_json::Value> =
        s.states.iter().zip(s.totals).map(|(k, v)| (k.to_string(), v.into())).collect();
    json(serde_json::json!({ "total": by_state, "groups": s.groups }).to_string())
}

async fn task(State(app): State<App>, Path(id): Path<String>) -> Response {
    let Some(key) = snapshot::parse_key_id(&id) else {
        return (
            StatusCode::BAD_REQUEST,
            format!("{id:?} is not a key id (prefix-<32 hex digits>[.i.j])"),
        )
            .into_response();
    };
    match ask(&app, |tx| DashQuery::Task(key, tx)).await {
        Ok(body) if body != "null" => json(body),
        Ok(_) => {
            (StatusCode::NOT_FOUND, format!("the scheduler knows no key {id}")).into_response()
        }
        Err(r) => r,
    }
}

/// Asks the event loop and answers with the reply's JSON.
async fn ask<T: serde::Serialize>(
    app: &App,
    query: impl FnOnce(oneshot::Sender<T>) -> DashQuery,
) -> Result<String, Response> {
    let stopping =
        || (StatusCode::SERVICE_UNAVAILABLE, "the scheduler is stopping").into_response();
    let (tx, rx) = oneshot::channel();
    app.queries.send(query(tx)).map_err(|_| stopping())?;
    let answer = rx.await.map_err(|_| stopping())?;
    Ok(serde_json::to_string(&answer).unwrap_or_default())
}

async fn failures(State(app): State<App>) -> Response {
    match ask(&app, DashQuery::Failures).await {
        Ok(body) => json(body),
        Err(r) => r,
    }
}

/// `?since=N`: only the lines numbered above N (what the page has not got).
async fn logs(
    State(app): State<App>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let since = match q.get("since").map(|s| s.parse::<u64>()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return (StatusCode::BAD_REQUEST, "since must be a line number (0 or more)")
                .into_response()
        }
    };
    match ask(&app, |tx| DashQuery::Logs(since, tx)).await {
        Ok(body) => json(body),
        Err(r) => r,
    }
}

async fn graph(State(app): State<App>) -> Response {
    match ask(&app, DashQuery::Graph).await {
        Ok(body) => json(body),
        Err(r) => r,
    }
}

async fn worker(State(app): State<App>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return (StatusCode::BAD_REQUEST, format!("{id:?} is not a worker id (a number)"))
            .into_response();
    };
    match ask(&app, |tx| DashQuery::Worker(id, tx)).await {
        Ok(body) if body != "null" => json(body),
        Ok(_) => (
            StatusCode::NOT_FOUND,
            format!("no worker {id} is connected (ids are in /api/v1/workers)"),
        )
            .into_response(),
        Err(r) => r,
    }
}

/// Prometheus text format, with Dask's metric names where both have the metric.
async fn metrics(State(app): State<App>) -> Response {
    let p = app.latest.borrow().clone();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        prometheus_text(&p.snapshot),
    )
        .into_response()
}

/// Renders the metrics of a snapshot.
pub fn prometheus_text(s: &Snapshot) -> String {
    use std::fmt::Write;
    let mut text = String::new();
    let section = |text: &mut String, name: &str, kind: &str, help: &str, rows: Vec<String>| {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for r in rows {
            let _ = writeln!(text, "{name}{r}");
        }
    };
    section(
        &mut text,
        "dask_scheduler_workers",
        "gauge",
        "Number of workers connected.",
        vec![format!(" {}", s.workers.len())],
    );
    section(
        &mut text,
        "dask_scheduler_clients",
        "gauge",
        "Number of clients connected.",
        vec![format!(" {}", s.clients)],
    );
    section(
        &mut text,
        "dask_scheduler_tasks",
        "gauge",
        "Number of tasks known by the scheduler, by state.",
        s.states.iter().zip(s.totals).map(|(st, v)| format!("{{state=\"{st}\"}} {v}")).collect(),
    );
    section(
        &mut text,
        "dask_scheduler_tasks_compute_seconds_total",
        "counter",
        "Total time spent computing tasks, by task prefix.",
        s.groups
            .iter()
            .map(|g| {
                format!("{{task_prefix_name=\"{}\"}} {}", escape(&g.prefix), g.compute_seconds)
            })
            .collect(),
    );
    section(
        &mut text,
        "dask_scheduler_prefix_state_totals",
        "gauge",
        "Tasks in each state, by task prefix.",
        s.groups
            .iter()
            .flat_map(|g| {
                s.states.iter().zip(g.counts).map(move |(st, v)| {
                    format!("{{task_prefix_name=\"{}\",state=\"{st}\"}} {v}", escape(&g.prefix))
                })
            })
            .collect(),
    );
    section(
        &mut text,
        "rask_scheduler_tasks_transfer_seconds_total",
        "counter",
        "Time workers spent fetching values from each other, by the values' task prefix.",
        s.groups
            .iter()
            .map(|g| {
                format!("{{task_prefix_name=\"{}\"}} {}", escape(&g.prefix), g.transfer_seconds)
            })
            .collect(),
    );
    section(
        &mut text,
        "rask_scheduler_tasks_transfer_bytes_total",
        "counter",
        "Bytes workers fetched from each other, by the values' task prefix.",
        s.groups
            .iter()
            .map(|g| format!("{{task_prefix_name=\"{}\"}} {}", escape(&g.prefix), g.transfer_bytes))
            .collect(),
    );
    section(
        &mut text,
        "dask_scheduler_tasks_erred_total",
        "counter",
        "Tasks that failed on their own account since the scheduler started.",
        vec![format!(" {}", s.failures_total)],
    );
    section(
        &mut text,
        "dask_worker_memory_bytes",
        "gauge",
        "Memory of each worker, by type (managed values, unmanaged, spilled to disk).",
        s.workers
            .iter()
            .flat_map(|w| {
                [("managed", w.memory), ("unmanaged", w.unmanaged), ("spilled", w.spilled)]
                    .map(|(t, v)| format!("{{worker=\"{}\",type=\"{t}\"}} {v}", escape(&w.name)))
            })
            .collect(),
    );
    let per_worker = |f: &dyn Fn(&snapshot::WorkerRow) -> String| {
        s.workers.iter().map(|w| format!("{{worker=\"{}\"{}", escape(&w.name), f(w))).collect()
    };
    section(
        &mut text,
        "dask_worker_transfer_incoming_bytes_total",
        "counter",
        "Bytes each worker fetched from its peers.",
        per_worker(&|w| format!("}} {}", w.bytes_in)),
    );
    section(
        &mut text,
        "dask_worker_transfer_outgoing_bytes_total",
        "counter",
        "Bytes each worker served to peers and clients.",
        per_worker(&|w| format!("}} {}", w.bytes_out)),
    );
    section(
        &mut text,
        "rask_worker_cpu_percent",
        "gauge",
        "CPU use of each worker process over its last heartbeat interval (percent of one core).",
        per_worker(&|w| format!("}} {}", w.cpu)),
    );
    section(
        &mut text,
        "dask_worker_tasks",
        "gauge",
        "Tasks assigned to each worker (running or queued there).",
        s.workers
            .iter()
            .map(|w| {
                format!("{{worker=\"{}\",state=\"processing\"}} {}", escape(&w.name), w.processing)
            })
            .collect(),
    );
    text
}

fn escape(s: &str) -> String {
    s.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

/// Binds the dashboard. `requested` is `--dashboard-address` (`HOST:PORT`,
/// `:PORT` for the scheduler's host); with credentials configured and no
/// host given, it binds loopback only. A busy port falls back to any free
/// one. Returns the listener and the sentence that says where it is and why.
pub async fn bind(
    requested: &str,
    scheduler_host: &str,
    secured: bool,
) -> Result<(tokio::net::TcpListener, String), String> {
    let (host, port) = match requested.rsplit_once(':') {
        Some((h, p)) => {
            let port: u16 = p
                .parse()
                .map_err(|_| format!("--dashboard-address {requested:?}: {p:?} is not a port"))?;
            (h.trim_matches(|c| c == '[' || c == ']').to_string(), port)
        }
        None => {
            return Err(format!(
                "--dashboard-address {requested:?} needs a port (HOST:PORT or :PORT), or `none`"
            ))
        }
    };
    let (host, why) = if !host.is_empty() {
        (host, "")
    } else if secured {
        ("127.0.0.1".to_string(), " (loopback only, because the cluster has credentials; pass --dashboard-address HOST:PORT to expose it, token required)")
    } else {
        (scheduler_host.to_string(), "")
    };
    let listener = match tokio::net::TcpListener::bind((host.as_str(), port)).await {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && port != 0 => {
            tracing::warn!("dashboard port {port} is in use; using another");
            tokio::net::TcpListener::bind((host.as_str(), 0))
                .await
                .map_err(|e| format!("dashboard cannot listen on {host}: {e}"))?
        }
        Err(e) => return Err(format!("dashboard cannot listen on {host}:{port}: {e}")),
    };
    let local: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
    Ok((listener, format!("http://{local}/{why}")))
}
