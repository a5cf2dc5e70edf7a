//! Submissions in parts: a graph larger than one gRPC message travels as
//! several `Submit`s with one request id, `more` set on all but the last. The
//! client splits ([`split`]); the scheduler's session reassembles ([`Assembly`])
//! and hands the state machine one submission, so validation and scheduling
//! see the whole graph at once and nothing runs before the last part is in.

use std::collections::{HashMap, HashSet};

use prost::Message;
use rask_core::Key;

use crate::protocol::{self, pb};
use crate::scheduler::TaskSpec;

/// Target encoded size of one part (well below `MAX_MESSAGE_BYTES`).
pub const PART_BYTES: usize = 16 << 20;
/// Most encoded bytes of unfinished submissions one client session may hold.
pub const MAX_OPEN_BYTES: usize = 2 << 30;
/// Most refused-but-unfinished requests remembered per session.
const MAX_REFUSED: usize = 1024;

/// Splits a submission into messages of about [`PART_BYTES`] each. The wanted
/// keys travel with the last part. One task larger than a part goes alone.
pub fn split(tasks: Vec<pb::TaskSpec>, wanted: Vec<pb::Key>, request: u64) -> Vec<pb::Submit> {
    let mut parts = Vec::new();
    let mut part = Vec::new();
    let mut bytes = 0;
    for t in tasks {
        let len = t.encoded_len() + 4;
        if bytes + len > PART_BYTES && !part.is_empty() {
            parts.push(std::mem::take(&mut part));
            bytes = 0;
        }
        bytes += len;
        part.push(t);
    }
    parts.push(part);
    let last = parts.len() - 1;
    let mut wanted = Some(wanted);
    parts
        .into_iter()
        .enumerate()
        .map(|(i, tasks)| pb::Submit {
            tasks,
            wanted: if i == last { wanted.take().unwrap_or_default() } else { Vec::new() },
            request,
            more: i != last,
        })
        .collect()
}

/// What one `Submit` message amounts to.
#[derive(Debug)]
pub enum Part {
    /// More parts of this request are to come.
    Incomplete,
    /// The whole submission.
    Whole {
        /// Its request id.
        request: u64,
        /// All its tasks.
        tasks: Vec<TaskSpec>,
        /// The keys the client holds.
        wanted: Vec<Key>,
    },
    /// The submission is refused (answer the client once).
    Refused {
        /// Its request id.
        request: u64,
        /// Why.
        error: String,
    },
    /// A later part of an already refused submission: ignored.
    Dropped,
}

/// One client session's unfinished submissions.
#[derive(Default)]
pub struct Assembly {
    open: HashMap<u64, (Vec<TaskSpec>, Vec<Key>, usize)>,
    refused: HashSet<u64>,
    open_bytes: usize,
}

impl Assembly {
    /// Takes one `Submit` message.
    pub fn add(&mut self, s: pb::Submit) -> Part {
        let request = s.request;
        if self.refused.contains(&request) {
            if !s.more {
                self.refused.remove(&request);
            }
            return Part::Dropped;
        }
        let bytes = s.encoded_len();
        let more = s.more;
        let tasks: Result<Vec<_>, _> = s.tasks.into_iter().map(protocol::spec_from_pb).collect();
        let wanted: Result<Vec<_>, _> =
            s.wanted.into_iter().map(|k| protocol::key_from_pb(Some(k))).collect();
        let (tasks, wanted) = match (tasks, wanted) {
            (Ok(t), Ok(w)) => (t, w),
            (Err(e), _) | (_, Err(e)) => {
                return self.refuse(request, more, format!("malformed submission: {e}"))
            }
        };
        if !more && !self.open.contains_key(&request) {
            return Part::Whole { request, tasks, wanted };
        }
        if self.open_bytes + bytes > MAX_OPEN_BYTES {
            return self.refuse(
                request,
                more,
                format!(
                    "submission refused: its parts (with this session's other unfinished ones) exceed {MAX_OPEN_BYTES} bytes; split the work into several computations"
                ),
            );
        }
        self.open_bytes += bytes;
        let entry = self.open.entry(request).or_default();
        entry.0.extend(tasks);
        entry.1.extend(wanted);
        entry.2 += bytes;
        if more {
            return Part::Incomplete;
        }
        let (tasks, wanted, bytes) = self.open.remove(&request).unwrap_or_default();
        self.open_bytes -= bytes;
        Part::Whole { request, tasks, wanted }
    }

    fn refuse(&mut self, request: u64, more: bool, error: String) -> Part {
        if let Some((_, _, bytes)) = self.open.remove(&request) {
            self.open_bytes -= bytes;
        }
        if more {
            // A hostile client could open refused requests without end; past
            // the limit the oldest memory of them goes (their later parts
            // would then be refused again, as incomplete graphs).
            if self.refused.len() >= MAX_REFUSED {
                self.refused.clear();
            }
            self.refused.insert(request);
        }
        Part::Refused { request, error }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rask_core::key::Token;
    use std::sync::Arc;

    fn spec(i: u64, payload: usize) -> pb::TaskSpec {
        protocol::spec_to_pb(&TaskSpec {
            key: Key::new("t", Token(i as u128)),
            op: "op".into(),
            payload: Arc::new(vec![7; payload]),
            deps: vec![],
            priority: 0,
            graph_order: i as u32,
            retries: 0,
            workers: vec![],
            allow_other_workers: false,
            resources: vec![],
            gang: None,
        })
    }

    #[test]
    fn split_then_assemble_is_the_same_submission() {
        let tasks: Vec<_> = (0..40).map(|i| spec(i, 1 << 20)).collect();
        let wanted = vec![tasks[39].key.clone().unwrap()];
        let parts = split(tasks, wanted, 9);
        assert!(parts.len() >= 3, "{} parts", parts.len());
        assert!(parts.iter().all(|p| p.encoded_len() <= PART_BYTES + (2 << 20)));
        assert!(parts[..parts.len() - 1].iter().all(|p| p.more && p.wanted.is_empty()));
        let mut a = Assembly::default();
        let n = parts.len();
        for (i, p) in parts.into_iter().enumerate() {
            match a.add(p) {
                Part::Incomplete => assert!(i < n - 1),
                Part::Whole { request, tasks, wanted } => {
                    assert_eq!(i, n - 1);
                    assert_eq!(request, 9);
                    assert_eq!(tasks.len(), 40);
                    assert_eq!(wanted.len(), 1);
                    assert!(tasks.iter().enumerate().all(|(j, t)| t.graph_order == j as u32));
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(a.open_bytes, 0);
        assert!(a.open.is_empty());
    }

    #[test]
    fn interleaved_requests_stay_apart() {
        let mut a = Assembly::default();
        let p =
            |r, more, i| pb::Submit { tasks: vec![spec(i, 10)], wanted: vec![], request: r, more };
        assert!(matches!(a.add(p(1, true, 0)), Part::Incomplete));
        assert!(matches!(a.add(p(2, true, 1)), Part::Incomplete));
        match a.add(p(1, false, 2)) {
            Part::Whole { request: 1, tasks, .. } => assert_eq!(tasks.len(), 2),
            other => panic!("{other:?}"),
        }
        match a.add(p(2, false, 3)) {
            Part::Whole { request: 2, tasks, .. } => assert_eq!(tasks.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_malformed_part_refuses_the_request_once() {
        let mut a = Assembly::default();
        let good = pb::Submit { tasks: vec![spec(0, 10)], wanted: vec![], request: 5, more: true };
        let mut bad_task = spec(1, 10);
        bad_task.key.as_mut().unwrap().token = vec![1, 2, 3];
        let bad = pb::Submit { tasks: vec![bad_task], wanted: vec![], request: 5, more: true };
        let last = pb::Submit { tasks: vec![spec(2, 10)], wanted: vec![], request: 5, more: false };
        assert!(matches!(a.add(good), Part::Incomplete));
        match a.add(bad) {
            Part::Refused { request: 5, error } => assert!(error.contains("16"), "{error}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(a.add(last), Part::Dropped));
        assert_eq!(a.open_bytes, 0);
        assert!(a.refused.is_empty());
    }

    #[test]
    fn open_parts_are_bounded() {
        let mut a = Assembly { open_bytes: MAX_OPEN_BYTES - 5, ..Default::default() };
        let p = pb::Submit { tasks: vec![spec(0, 100)], wanted: vec![], request: 1, more: true };
        match a.add(p) {
            Part::Refused { error, .. } => assert!(error.contains("exceed"), "{error}"),
            other => panic!("{other:?}"),
        }
    }
}
