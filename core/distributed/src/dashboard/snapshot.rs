//! The dashboard's view of the scheduler, built from the state machine's
//! incremental aggregates. Its size is what the page shows: one row per worker
//! (histograms take over above [`HISTOGRAM_ABOVE`] workers in the page), the
//! busiest [`MAX_GROUPS`] task groups, and the stream entries since the last
//! snapshot (at most [`MAX_STREAM`]); never proportional to the graph.

use std::collections::BTreeMap;

use rask_core::Key;
use serde::Serialize;

pub use crate::scheduler::activity::{key_id, parse_key_id};
use crate::scheduler::activity::{FailureEntry, StreamEntry, STATES};
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
    let workers = state
        .workers()
        .values()
        .map(|w| WorkerRow {
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
        })
        .collect();
    let mut groups: Vec<GroupRow> = activity
        .groups()
        .iter()
        .map(|(p, g)| GroupRow {
            prefix: p.clone(),
            counts: g.counts,
            compute_seconds: g.compute_us as f64 / 1e6,
            finished: g.finished,
            done: g.done,
            nbytes: g.nbytes,
            failed: g.failed,
        })
        .collect();
    let live = |g: &GroupRow| g.counts[..4].iter().sum::<u64>();
    groups.sort_by(|a, b| {
        live(b)
            .cmp(&live(a))
            .then(b.compute_seconds.total_cmp(&a.compute_seconds))
            .then_with(|| a.prefix.cmp(&b.prefix))
    });
    let groups_omitted = groups.len().saturating_sub(MAX_GROUPS);
    groups.truncate(MAX_GROUPS);
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
