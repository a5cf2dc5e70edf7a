//! The dashboard's view of the scheduler, built from the state machine's
//! incremental aggregates. Its size is what the page shows: one row per worker
//! (histograms take over above [`HISTOGRAM_ABOVE`] workers in the page), the
//! busiest [`MAX_GROUPS`] task groups, and the stream entries since the last
//! snapshot (at most [`MAX_STREAM`]); never proportional to the graph.

use std::collections::BTreeMap;

use rask_core::Key;
use serde::Serialize;

pub use crate::scheduler::activity::{key_id, parse_key_id};
use crate::scheduler::activity::{FailureEntry, GroupStats, StreamEntry, STATES};
use crate::scheduler::{SchedulerState, WorkerStatus};

/// Task groups sent per snapshot (the ones with live tasks first, then by compute time).
pub const MAX_GROUPS: usize = 200;
/// Stream entries sent per snapshot.
pub const MAX_STREAM: usize = 2_000;
/// Above this many workers the page draws histograms instead of per-worker bars.
pub const HISTOGRAM_ABOVE: usize = 100;

/// One worker's row.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerRow {
    /// Scheduler id (the task stream's lane).
    pub id: u64,
    /// `--name`.
    pub name: String,
    /// Data address.
    pub addr: String,
    /// Threads.
    pub nthreads: usize,
    /// `running`, `paused` or `closing`.
    pub status: &'static str,
    /// Managed memory (bytes, last heartbeat).
    pub memory: u64,
    /// Memory limit (0: none).
    pub memory_limit: u64,
    /// Tasks assigned (running or queued there).
    pub processing: usize,
    /// Keys whose values it holds.
    pub keys: usize,
    /// Process memory beyond the managed values (bytes).
    pub unmanaged: u64,
    /// Spilled to disk (bytes).
    pub spilled: u64,
    /// Bytes fetched from peers since it started.
    pub bytes_in: u64,
    /// Bytes served since it started.
    pub bytes_out: u64,
    /// CPU use (percent of one core, last heartbeat interval).
    pub cpu: f64,
}

/// One task group's row.
#[derive(Debug, Clone, Serialize)]
pub struct GroupRow {
    /// The key prefix.
    pub prefix: String,
    /// Tasks per state, in [`STATES`] order.
    pub counts: [u64; 6],
    /// Compute seconds of finished tasks.
    pub compute_seconds: f64,
    /// Finished tasks.
    pub finished: u64,
    /// Finished since the group last had no tasks (the progress bar's "done").
    pub done: u64,
    /// Result bytes.
    pub nbytes: u64,
    /// Failed tasks.
    pub failed: u64,
    /// Seconds spent moving this prefix's values between workers.
    pub transfer_seconds: f64,
    /// Bytes of those moves.
    pub transfer_bytes: u64,
    /// How many moves.
    pub transfers: u64,
    /// Seconds spent spilling this prefix's values and reading them back.
    pub disk_seconds: f64,
    /// Bytes spilled to disk.
    pub disk_write_bytes: u64,
    /// Bytes read back from disk.
    pub disk_read_bytes: u64,
}

/// Everything one update carries.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Scheduler time (ms since it started).
    pub time_ms: u64,
    /// The state names of `counts` arrays.
    pub states: [&'static str; 6],
    /// Tasks per state.
    pub totals: [u64; 6],
    /// Workers, by id.
    pub workers: Vec<WorkerRow>,
    /// Task groups (at most [`MAX_GROUPS`]).
    pub groups: Vec<GroupRow>,
    /// Groups not sent.
    pub groups_omitted: usize,
    /// Task runs since the previous snapshot.
    pub stream: Vec<StreamEntry>,
    /// The next stream number (ask for entries from here next time).
    pub stream_next: u64,
    /// Failures since the scheduler started.
    pub failures_total: u64,
    /// Connected clients.
    pub clients: usize,
}

fn worker_row(w: &crate::scheduler::SchedWorker) -> WorkerRow {
    WorkerRow {
        id: w.id.0,
        name: w.name.clone(),
        addr: w.addr.clone(),
        nthreads: w.nthreads,
        status: match w.status {
            WorkerStatus::Running => "running",
            WorkerStatus::Paused => "paused",
            WorkerStatus::Closing => "closing",
        },
        memory: w.memory,
        memory_limit: w.memory_limit,
        processing: w.processing.len(),
        keys: w.has_what.len(),
        unmanaged: w.metrics.unmanaged,
        spilled: w.metrics.spilled,
        bytes_in: w.metrics.bytes_in,
        bytes_out: w.metrics.bytes_out,
        cpu: (w.metrics.cpu_percent * 10.0).round() / 10.0,
    }
}

/// Builds a snapshot; `since` is the first stream number not yet sent.
pub fn build(state: &SchedulerState, since: u64, clients: usize) -> Snapshot {
    build_with(state, since, clients, MAX_STREAM)
}

/// [`build`] with at most `max_stream` stream entries (the newest).
pub fn build_with(
    state: &SchedulerState,
    since: u64,
    clients: usize,
    max_stream: usize,
) -> Snapshot {
    let activity = state.activity();
    let workers = state.workers().values().map(worker_row).collect();
    let mut shown: Vec<(&String, &GroupStats)> = activity.groups().iter().collect();
    let groups_omitted = shown.len().saturating_sub(MAX_GROUPS);
    order_groups(&mut shown);
    shown.truncate(MAX_GROUPS);
    let groups = shown
        .into_iter()
        .map(|(p, g)| GroupRow {
            prefix: p.clone(),
            counts: g.counts,
            compute_seconds: g.compute_us as f64 / 1e6,
            finished: g.finished,
            done: g.done,
            nbytes: g.nbytes,
            failed: g.failed,
            transfer_seconds: g.transfer_us as f64 / 1e6,
            transfer_bytes: g.transfer_bytes,
            transfers: g.transfers,
            disk_seconds: g.disk_us as f64 / 1e6,
            disk_write_bytes: g.disk_write_bytes,
            disk_read_bytes: g.disk_read_bytes,
        })
        .collect();
    Snapshot {
        time_ms: state.now(),
        states: STATES,
        totals: activity.totals(),
        workers,
        groups,
        groups_omitted,
        stream: activity.stream_since(since, max_stream),
        stream_next: activity.next_seq(),
        failures_total: activity.failures_total(),
        clients,
    }
}

/// The order groups are shown in (and cut at [`MAX_GROUPS`]): groups with
/// tasks waiting, queued or running first, in the order they appeared (a
/// computation's stages in order); then the others, most recently changed first.
fn order_groups(groups: &mut [(&String, &GroupStats)]) {
    let active = |g: &GroupStats| g.counts[1..4].iter().any(|&c| c > 0);
    groups.sort_by(|(pa, a), (pb, b)| {
        active(b).cmp(&active(a)).then_with(|| {
            if active(a) {
                a.created.cmp(&b.created)
            } else {
                b.touched.cmp(&a.touched).then_with(|| pa.cmp(pb))
            }
        })
    });
}

/// Graphs of at most this many tasks are drawn task by task; larger ones as
/// their task groups.
pub const GRAPH_MAX_TASKS: usize = 1_000;

/// The graph page's data: the tasks and their edges for a small graph, the
/// task groups and theirs above [`GRAPH_MAX_TASKS`]. Its size is bounded
/// either way (at most [`GRAPH_MAX_TASKS`] or [`MAX_GROUPS`] nodes).
#[derive(Debug, Clone, Serialize)]
pub struct GraphView {
    /// `tasks` or `groups`.
    pub kind: &'static str,
    /// Tasks the scheduler holds.
    pub tasks: usize,
    /// The nodes.
    pub nodes: Vec<GraphNode>,
    /// `[from, to]` indexes into `nodes`: `to` depends on `from`.
    pub edges: Vec<[u32; 2]>,
    /// Groups not drawn (beyond [`MAX_GROUPS`]).
    pub omitted: usize,
}

/// A task or a task group.
#[derive(Debug, Clone, Serialize)]
pub struct GraphNode {
    /// A task's [`key_id`] or a group's prefix.
    pub id: String,
    /// The prefix (the colour).
    pub prefix: String,
    /// A task's state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<&'static str>,
    /// A group's tasks per state, in [`STATES`] order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counts: Option<[u64; 6]>,
    /// A group's finished tasks since it last had none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done: Option<u64>,
}

/// The graph page's data (see [`GraphView`]).
pub fn graph(state: &SchedulerState) -> GraphView {
    let tasks = state.tasks();
    if tasks.len() <= GRAPH_MAX_TASKS {
        let mut keys: Vec<&Key> = tasks.keys().collect();
        keys.sort_by_key(|k| tasks[*k].spec.graph_order);
        let index: rustc_hash::FxHashMap<&Key, u32> =
            keys.iter().enumerate().map(|(i, k)| (*k, i as u32)).collect();
        let mut edges = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            for d in &tasks[*k].spec.deps {
                if let Some(&j) = index.get(d) {
                    edges.push([j, i as u32]);
                }
            }
        }
        let nodes = keys
            .iter()
            .map(|k| GraphNode {
                id: key_id(k),
                prefix: k.prefix().to_string(),
                state: Some(STATES[tasks[*k].state.index()]),
                counts: None,
                done: None,
            })
            .collect();
        return GraphView { kind: "tasks", tasks: tasks.len(), nodes, edges, omitted: 0 };
    }
    let groups = state.activity().groups();
    let mut shown: Vec<(&String, &GroupStats)> =
        groups.iter().filter(|(_, g)| g.counts.iter().any(|&c| c > 0)).collect();
    order_groups(&mut shown);
    let omitted = shown.len().saturating_sub(MAX_GROUPS);
    shown.truncate(MAX_GROUPS);
    let index: rustc_hash::FxHashMap<&str, u32> =
        shown.iter().enumerate().map(|(i, (p, _))| (p.as_str(), i as u32)).collect();
    let mut edges = Vec::new();
    for (i, (_, g)) in shown.iter().enumerate() {
        let mut from: Vec<u32> =
            g.inputs.iter().filter_map(|p| index.get(p.as_str()).copied()).collect();
        from.sort_unstable();
        edges.extend(from.into_iter().map(|j| [j, i as u32]));
    }
    let nodes = shown
        .iter()
        .map(|(p, g)| GraphNode {
            id: (*p).clone(),
            prefix: (*p).clone(),
            state: None,
            counts: Some(g.counts),
            done: Some(g.done),
        })
        .collect();
    GraphView { kind: "groups", tasks: tasks.len(), nodes, edges, omitted }
}

/// A worker's page: its row, the tasks it is running or has queued, and
/// some of the keys it holds (each list bounded).
#[derive(Debug, Clone, Serialize)]
pub struct WorkerInfo {
    /// What the workers table shows.
    pub row: WorkerRow,
    /// Tasks assigned to it (at most [`WORKER_KEYS_SHOWN`], by key).
    pub processing: Vec<String>,
    /// Keys it holds (at most [`WORKER_KEYS_SHOWN`]).
    pub holding: Vec<String>,
    /// Resources it offers.
    pub resources: BTreeMap<String, f64>,
    /// Ops it can run.
    pub ops: usize,
    /// When it last reported (ms, scheduler time).
    pub last_seen_ms: u64,
}

/// Keys listed per worker page.
pub const WORKER_KEYS_SHOWN: usize = 100;

/// [`WorkerInfo`] of the worker with scheduler id `id`.
pub fn worker_info(state: &SchedulerState, id: u64) -> Option<WorkerInfo> {
    let w = state.workers().get(&crate::scheduler::WorkerId(id))?;
    Some(WorkerInfo {
        row: worker_row(w),
        processing: w.processing.iter().take(WORKER_KEYS_SHOWN).map(key_id).collect(),
        holding: w.has_what.iter().take(WORKER_KEYS_SHOWN).map(key_id).collect(),
        resources: w.resources.clone(),
        ops: w.ops.len(),
        last_seen_ms: w.last_seen,
    })
}

/// One key's page: its state, where it is, and its story.
#[derive(Debug, Clone, Serialize)]
pub struct TaskInfo {
    /// [`key_id`].
    pub key: String,
    /// Its op.
    pub op: String,
    /// Its state.
    pub state: &'static str,
    /// The worker running or holding it.
    pub worker: Option<String>,
    /// Dependencies and dependents.
    pub dependencies: usize,
    /// See `dependencies`.
    pub dependents: usize,
    /// The failure, when erred.
    pub error: Option<String>,
    /// Its transitions (the scheduler's story), oldest first.
    pub story: Vec<BTreeMap<&'static str, String>>,
}

/// [`TaskInfo`] of `key`, if the scheduler knows it (or has a story of it).
pub fn task_info(state: &SchedulerState, key: &Key) -> Option<TaskInfo> {
    let story: Vec<BTreeMap<&'static str, String>> = state
        .story(key)
        .iter()
        .map(|t| {
            BTreeMap::from([
                ("from", t.from.to_string()),
                ("to", t.to.to_string()),
                ("reason", t.reason.to_string()),
                ("at_ms", t.at.to_string()),
            ])
        })
        .collect();
    let t = state.tasks().get(key);
    if t.is_none() && story.is_empty() {
        return None;
    }
    let worker_name = |id: &crate::scheduler::WorkerId| {
        state.workers().get(id).map(|w| w.name.clone()).or(Some(format!("worker {}", id.0)))
    };
    use crate::scheduler::TaskState;
    Some(TaskInfo {
        key: key_id(key),
        op: t.map(|t| t.spec.op.clone()).unwrap_or_default(),
        state: t.map(|t| STATES[t.state.index()]).unwrap_or("forgotten"),
        worker: t.and_then(|t| match &t.state {
            TaskState::Processing { worker } | TaskState::Memory { worker, .. } => {
                worker_name(worker)
            }
            _ => None,
        }),
        dependencies: t.map_or(0, |t| t.spec.deps.len()),
        dependents: t.map_or(0, |t| t.dependents.len()),
        error: t.and_then(|t| match &t.state {
            TaskState::Erred { failure } => Some(failure.to_string()),
            _ => None,
        }),
        story,
    })
}

/// The recent failures, newest first, with key ids.
pub fn failures(state: &SchedulerState) -> Vec<FailureEntry> {
    state.activity().failures().iter().rev().cloned().collect()
}
