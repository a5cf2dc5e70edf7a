//! What the dashboard shows, kept by the state machine as it changes: task
//! counts per prefix (task group) and state, compute time, result bytes,
//! transfers and disk I/O per prefix, which groups feed which, the recent
//! task stream (runs, transfers, spills) and the recent failures.
//!
//! Every update is O(1) (a transition moves one count), and a snapshot costs
//! what it shows (workers, groups, new stream entries), never the graph's size.

use std::collections::VecDeque;

use rask_core::key::Token;
use rask_core::Key;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

/// A key's unambiguous name in URLs: `prefix-<32 hex digits>[.i.j…]`.
pub fn key_id(k: &Key) -> String {
    let mut s = format!("{}-{:032x}", k.prefix(), k.token().0);
    for i in k.index() {
        s.push('.');
        s.push_str(&i.to_string());
    }
    s
}

/// Parses [`key_id`]'s format.
pub fn parse_key_id(s: &str) -> Option<Key> {
    let (prefix, rest) = s.rsplit_once('-')?;
    let hex = rest.get(..32)?;
    let token = u128::from_str_radix(hex, 16).ok()?;
    let index: Vec<u32> = match rest.get(32..)? {
        "" => Vec::new(),
        tail => {
            tail.strip_prefix('.')?.split('.').map(|i| i.parse().ok()).collect::<Option<_>>()?
        }
    };
    Some(Key::new(prefix, Token(token)).with_index(index))
}

/// The task states counted, in the order of [`GroupStats::counts`].
pub const STATES: [&str; 6] = ["released", "waiting", "queued", "processing", "memory", "erred"];
/// Recent task runs kept for the task stream.
pub const STREAM_CAPACITY: usize = 20_000;
/// Recent failures kept for the failures page.
pub const FAILURES_CAPACITY: usize = 200;
/// Groups kept once all their tasks are forgotten (the oldest empty ones go first).
const EMPTY_GROUPS_KEPT: usize = 500;
/// The furthest back a worker's span may start (a bad clock or message).
const SPAN_AGO_MAX_US: u64 = 600_000_000;

/// What a task-stream entry shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SpanKind {
    /// A task ran.
    #[default]
    Compute,
    /// A value moved from one worker to another.
    Transfer,
    /// A value was spilled to disk.
    DiskWrite,
    /// A spilled value was read back for a task.
    DiskRead,
}

impl SpanKind {
    fn is_compute(&self) -> bool {
        *self == SpanKind::Compute
    }
}

/// Work a worker reports with its heartbeat besides running tasks.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerSpan {
    /// Transfer or disk I/O.
    pub kind: SpanKind,
    /// The prefix of the value's key.
    pub prefix: String,
    /// How long before the heartbeat it started (µs).
    pub start_ago_us: u64,
    /// How long it took (µs; the sum, when `count` > 0).
    pub duration_us: u64,
    /// Bytes moved (the sum, when `count` > 0).
    pub nbytes: u64,
    /// 0: one span, drawn in the stream; n > 0: n spans summed, counted only.
    pub count: u64,
}

/// One task group: the tasks sharing a key prefix (usually an op's name).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct GroupStats {
    /// Tasks in each state of [`STATES`].
    pub counts: [u64; 6],
    /// Run time of the finished tasks, in µs (as their workers measured it).
    pub compute_us: u64,
    /// Finished tasks.
    pub finished: u64,
    /// Finished since the group last had no tasks (a computation's progress).
    pub done: u64,
    /// Bytes of their results.
    pub nbytes: u64,
    /// Tasks that erred (their own failure, not an input's).
    pub failed: u64,
    /// Time spent moving values of this prefix between workers (µs).
    pub transfer_us: u64,
    /// Bytes of those moves.
    pub transfer_bytes: u64,
    /// How many moves.
    pub transfers: u64,
    /// Time spent spilling values of this prefix to disk and reading them back (µs).
    pub disk_us: u64,
    /// Bytes written to disk.
    pub disk_write_bytes: u64,
    /// Bytes read back from disk.
    pub disk_read_bytes: u64,
    /// Prefixes of the groups whose tasks this one's tasks depend on.
    #[serde(skip)]
    pub inputs: FxHashSet<String>,
    /// When the group last changed (ms, scheduler time): which empty group
    /// goes first, and the order of finished groups on the page.
    #[serde(skip)]
    pub touched: u64,
    /// The order groups appeared in (the order of active groups on the page).
    #[serde(skip)]
    pub created: u64,
}

/// One run in the task stream.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StreamEntry {
    /// Increasing number (clients ask for what came after the last one they saw).
    pub seq: u64,
    /// The worker's id.
    pub worker: u64,
    /// The task's prefix (of the value moved, for a transfer or disk I/O).
    pub prefix: String,
    /// A run, a transfer or disk I/O (left out for a run).
    #[serde(skip_serializing_if = "SpanKind::is_compute")]
    pub kind: SpanKind,
    /// Start and stop, ms of scheduler time (stop = when it was reported).
    pub start_ms: f64,
    /// See `start_ms`.
    pub stop_ms: f64,
}

/// One failure, as the failures page lists it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FailureEntry {
    /// The key, as `Key::name` prints it.
    pub key: String,
    /// The op.
    pub op: String,
    /// The remote error (or panic message).
    pub message: String,
    /// The worker it ran on, when known.
    pub worker: Option<String>,
    /// Why: `error`, `panic`, `killed worker` or `worker`.
    pub cause: String,
    /// When (ms, scheduler time).
    pub at_ms: u64,
}

/// The aggregates.
#[derive(Debug, Default)]
pub struct Activity {
    groups: FxHashMap<String, GroupStats>,
    totals: [u64; 6],
    stream: VecDeque<StreamEntry>,
    next_seq: u64,
    failures: VecDeque<FailureEntry>,
    failures_total: u64,
    groups_created: u64,
}

impl Activity {
    fn group(&mut self, prefix: &str) -> &mut GroupStats {
        if !self.groups.contains_key(prefix) {
            self.groups_created += 1;
            let created = self.groups_created;
            self.groups.insert(prefix.to_string(), GroupStats { created, ..Default::default() });
        }
        self.groups.get_mut(prefix).expect("inserted above")
    }

    /// A task of `prefix` appeared in state `to` (an index of [`STATES`]).
    pub fn added(&mut self, prefix: &str, to: usize, now: u64) {
        let g = self.group(prefix);
        g.counts[to] += 1;
        g.touched = now;
        self.totals[to] += 1;
    }

    /// A task of `prefix` left state `from` for state `to`.
    pub fn moved(&mut self, prefix: &str, from: usize, to: usize, now: u64) {
        if from == to {
            return;
        }
        let g = self.group(prefix);
        g.counts[from] = g.counts[from].saturating_sub(1);
        g.counts[to] += 1;
        g.touched = now;
        self.totals[from] = self.totals[from].saturating_sub(1);
        self.totals[to] += 1;
    }

    /// A task of `prefix` in state `from` was forgotten.
    pub fn removed(&mut self, prefix: &str, from: usize, now: u64) {
        self.totals[from] = self.totals[from].saturating_sub(1);
        let g = self.group(prefix);
        g.counts[from] = g.counts[from].saturating_sub(1);
        g.touched = now;
        if g.counts.iter().all(|&c| c == 0) {
            // The computation is over (its results were released): the next
            // one's progress starts from nothing.
            g.done = 0;
            if self.groups.len() > EMPTY_GROUPS_KEPT {
                self.drop_oldest_empty_group();
            }
        }
    }

    fn drop_oldest_empty_group(&mut self) {
        let oldest = self
            .groups
            .iter()
            .filter(|(_, g)| g.counts.iter().all(|&c| c == 0))
            .min_by_key(|(_, g)| g.touched)
            .map(|(p, _)| p.clone());
        if let Some(p) = oldest {
            self.groups.remove(&p);
        }
    }

    /// A task of `prefix` finished on `worker` after `micros` of compute.
    pub fn ran(&mut self, worker: u64, prefix: &str, micros: u64, nbytes: u64, now: u64) {
        let g = self.group(prefix);
        g.compute_us += micros;
        g.finished += 1;
        g.done += 1;
        g.nbytes += nbytes;
        let stop = now as f64;
        self.push_stream(worker, prefix, SpanKind::Compute, stop - micros as f64 / 1000.0, stop);
    }

    fn push_stream(&mut self, worker: u64, prefix: &str, kind: SpanKind, start: f64, stop: f64) {
        if self.stream.len() >= STREAM_CAPACITY {
            self.stream.pop_front();
        }
        self.stream.push_back(StreamEntry {
            seq: self.next_seq,
            worker,
            prefix: prefix.to_string(),
            kind,
            start_ms: start.max(0.0),
            stop_ms: stop.max(0.0),
        });
        self.next_seq += 1;
    }

    /// A task of group `to` depends on one of group `from`.
    pub fn linked(&mut self, from: &str, to: &str) {
        if from == to {
            return;
        }
        if let Some(g) = self.groups.get_mut(to) {
            if !g.inputs.contains(from) {
                g.inputs.insert(from.to_string());
            }
        }
    }

    /// A worker's transfers and disk I/O since its last heartbeat. Spans of
    /// prefixes the scheduler has no group for are ignored (a worker only
    /// moves values the scheduler knows; this keeps a bad message from
    /// growing the groups).
    pub fn worker_spans(&mut self, worker: u64, spans: &[WorkerSpan], now: u64) {
        for s in spans {
            let Some(g) = self.groups.get_mut(&s.prefix) else { continue };
            let count = s.count.max(1);
            match s.kind {
                SpanKind::Compute => continue,
                SpanKind::Transfer => {
                    g.transfer_us += s.duration_us;
                    g.transfer_bytes += s.nbytes;
                    g.transfers += count;
                }
                SpanKind::DiskWrite => {
                    g.disk_us += s.duration_us;
                    g.disk_write_bytes += s.nbytes;
                }
                SpanKind::DiskRead => {
                    g.disk_us += s.duration_us;
                    g.disk_read_bytes += s.nbytes;
                }
            }
            if s.count == 0 {
                let ago = s.start_ago_us.min(SPAN_AGO_MAX_US) as f64 / 1000.0;
                let start = now as f64 - ago;
                let stop = (start + s.duration_us as f64 / 1000.0).min(now as f64);
                self.push_stream(worker, &s.prefix, s.kind, start, stop);
            }
        }
    }

    /// A task failed on its own account.
    pub fn failed(&mut self, prefix: &str, entry: FailureEntry) {
        self.group(prefix).failed += 1;
        self.failures_total += 1;
        if self.failures.len() >= FAILURES_CAPACITY {
            self.failures.pop_front();
        }
        self.failures.push_back(entry);
    }

    /// Tasks per state, over all groups.
    pub fn totals(&self) -> [u64; 6] {
        self.totals
    }

    /// The groups, by prefix.
    pub fn groups(&self) -> &FxHashMap<String, GroupStats> {
        &self.groups
    }

    /// Stream entries numbered `since` or later, at most `limit` (the newest).
    pub fn stream_since(&self, since: u64, limit: usize) -> Vec<StreamEntry> {
        let first = self.stream.front().map_or(0, |e| e.seq);
        let skip = since.saturating_sub(first) as usize;
        let n = self.stream.len().saturating_sub(skip);
        self.stream.iter().skip(skip + n.saturating_sub(limit)).cloned().collect()
    }

    /// The number the next stream entry gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The most recent failures, oldest first.
    pub fn failures(&self) -> &VecDeque<FailureEntry> {
        &self.failures
    }

    /// Failures since the scheduler started.
    pub fn failures_total(&self) -> u64 {
        self.failures_total
    }

    /// Checks the counts against a recount of the tasks' states
    /// (`(prefix, state index)` of every task).
    pub fn check(&self, tasks: impl Iterator<Item = (String, usize)>) -> Result<(), String> {
        let mut want: FxHashMap<String, [u64; 6]> = FxHashMap::default();
        let mut totals = [0u64; 6];
        for (p, s) in tasks {
            want.entry(p).or_default()[s] += 1;
            totals[s] += 1;
        }
        if totals != self.totals {
            return Err(format!("activity totals {:?}, recount {totals:?}", self.totals));
        }
        for (p, g) in &self.groups {
            let w = want.get(p).copied().unwrap_or_default();
            if w != g.counts {
                return Err(format!("group {p}: counts {:?}, recount {w:?}", g.counts));
            }
        }
        if let Some(p) = want.keys().find(|p| !self.groups.contains_key(*p)) {
            return Err(format!("group {p} has tasks but no counts"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_round_trip() {
        for k in [
            Key::new("inc", Token(0x0123_4567_89ab_cdef_0011_2233_4455_6677)),
            Key::new("a-b-c", Token(u128::MAX)).with_index(vec![3, 14]),
            Key::new("rask::literal", Token(1)),
        ] {
            let id = key_id(&k);
            let back = parse_key_id(&id).unwrap();
            assert_eq!(
                (back.prefix(), back.token(), back.index()),
                (k.prefix(), k.token(), k.index()),
                "{id}"
            );
        }
        assert!(parse_key_id("nope").is_none());
        assert!(parse_key_id("x-123").is_none());
        assert!(parse_key_id(&format!("x-{}.a", "0".repeat(32))).is_none());
    }

    #[test]
    fn counts_follow_transitions() {
        let mut a = Activity::default();
        a.added("inc", 0, 1);
        a.moved("inc", 0, 2, 2);
        a.moved("inc", 2, 3, 3);
        a.ran(1, "inc", 1500, 8, 10);
        a.moved("inc", 3, 4, 10);
        assert_eq!(a.totals(), [0, 0, 0, 0, 1, 0]);
        let g = &a.groups()["inc"];
        assert_eq!((g.compute_us, g.finished, g.nbytes), (1500, 1, 8));
        let s = a.stream_since(0, 10);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].start_ms, s[0].stop_ms), (8.5, 10.0));
        a.removed("inc", 4, 11);
        assert_eq!(a.totals(), [0; 6]);
        a.check(std::iter::empty()).unwrap();
    }

    #[test]
    fn the_stream_is_bounded_and_read_from_a_sequence_number() {
        let mut a = Activity::default();
        for i in 0..(STREAM_CAPACITY as u64 + 10) {
            a.ran(0, "p", 1, 1, i);
        }
        assert_eq!(a.stream_since(0, usize::MAX).len(), STREAM_CAPACITY);
        let tail = a.stream_since(a.next_seq() - 3, 100);
        assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), {
            let n = a.next_seq();
            vec![n - 3, n - 2, n - 1]
        });
        assert_eq!(a.stream_since(0, 5).len(), 5, "the newest 5");
        assert!(a.stream_since(a.next_seq(), 5).is_empty());
    }

    #[test]
    fn transfers_and_spills_are_counted_per_prefix_and_drawn_once() {
        let mut a = Activity::default();
        a.added("load", 4, 0);
        let span = |kind, count| WorkerSpan {
            kind,
            prefix: "load".into(),
            start_ago_us: 30_000,
            duration_us: 10_000,
            nbytes: 1 << 20,
            count,
        };
        a.worker_spans(
            3,
            &[
                span(SpanKind::Transfer, 0),
                span(SpanKind::Transfer, 5),
                span(SpanKind::DiskWrite, 0),
                span(SpanKind::DiskRead, 0),
                WorkerSpan { prefix: "unknown".into(), ..span(SpanKind::Transfer, 0) },
            ],
            1000,
        );
        let g = &a.groups()["load"];
        assert_eq!((g.transfers, g.transfer_us, g.transfer_bytes), (6, 20_000, 2 << 20));
        assert_eq!((g.disk_us, g.disk_write_bytes, g.disk_read_bytes), (20_000, 1 << 20, 1 << 20));
        assert!(!a.groups().contains_key("unknown"), "a span cannot make a group");
        let s = a.stream_since(0, 10);
        let kinds: Vec<SpanKind> = s.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [SpanKind::Transfer, SpanKind::DiskWrite, SpanKind::DiskRead]);
        assert_eq!((s[0].worker, s[0].start_ms, s[0].stop_ms), (3, 970.0, 980.0));
        let json = serde_json::to_string(&s[0]).unwrap();
        assert!(json.contains(r#""kind":"transfer""#), "{json}");
    }

    #[test]
    fn group_links_follow_dependencies_between_prefixes() {
        let mut a = Activity::default();
        a.added("load", 0, 0);
        a.added("sum", 0, 0);
        a.linked("load", "sum");
        a.linked("sum", "sum");
        a.linked("load", "missing");
        assert_eq!(a.groups()["sum"].inputs.iter().collect::<Vec<_>>(), ["load"]);
        assert!(a.groups()["load"].inputs.is_empty());
    }

    #[test]
    fn empty_groups_are_bounded() {
        let mut a = Activity::default();
        for i in 0..(EMPTY_GROUPS_KEPT + 50) {
            let p = format!("g{i}");
            a.added(&p, 0, i as u64);
            a.removed(&p, 0, i as u64);
        }
        assert!(a.groups().len() <= EMPTY_GROUPS_KEPT + 1);
    }
}
