//! The wire edge: generated protobuf types and their conversions to the
//! runtime's own types. Nothing outside this module touches `pb` types except
//! the thin gRPC handlers.

use std::collections::BTreeMap;
use std::sync::Arc;

use rask_core::graph::{Arg, Node};
use rask_core::key::Token;
use rask_core::{Graph, Key, Value};
use serde::{Deserialize, Serialize};

use crate::error::DistError;
use crate::scheduler::{FailureCause, Gang, TaskFailure, TaskSpec};

/// Generated protobuf messages and services.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("rask.v1");
}

/// This build's protocol version. Peers of another version are refused.
/// Version 2: the cluster token on the workers' data plane, `FetchFailed`.
/// Version 3: submissions in parts (`Submit.more`), work stealing (`Steal`).
pub const PROTOCOL_VERSION: u32 = 3;

/// gRPC status codes (the data plane's refusals carry `Unauthenticated`).
pub use tonic::Code as StatusCode;
/// Largest gRPC message accepted (bulk data travels in chunks below this).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;
/// Chunk size of values on the data plane.
pub const CHUNK_BYTES: usize = 4 << 20;
/// Largest value a worker or client accepts (bounds allocations from the wire).
pub const MAX_VALUE_BYTES: u64 = 64 << 30;
/// Built-in op of data nodes: returns its literal argument.
pub const LITERAL_OP: &str = "rask::literal";
/// Built-in op of alias nodes: returns its dependency's value.
pub const IDENTITY_OP: &str = "rask::identity";

/// Converts a key to the wire.
pub fn key_to_pb(k: &Key) -> pb::Key {
    pb::Key {
        prefix: k.prefix().to_string(),
        token: k.token().0.to_le_bytes().to_vec(),
        index: k.index().to_vec(),
    }
}

/// Converts a key from the wire.
pub fn key_from_pb(k: Option<pb::Key>) -> Result<Key, DistError> {
    let k = k.ok_or_else(|| DistError::Protocol { message: "message without a key".into() })?;
    let token: [u8; 16] = k.token.as_slice().try_into().map_err(|_| DistError::Protocol {
        message: format!("key token of {} bytes, expected 16", k.token.len()),
    })?;
    Ok(Key::new(k.prefix, Token(u128::from_le_bytes(token))).with_index(k.index))
}

/// Converts a failure to the wire.
pub fn failure_to_pb(f: &TaskFailure) -> pb::Failure {
    pb::Failure {
        key: Some(key_to_pb(&f.key)),
        op: f.op.clone(),
        message: f.message.clone(),
        worker: f.worker.clone().unwrap_or_default(),
        cause: match f.kind {
            FailureCause::Error => pb::failure::Cause::Error,
            FailureCause::Panic => pb::failure::Cause::Panic,
            FailureCause::KilledWorker => pb::failure::Cause::KilledWorker,
            FailureCause::Worker => pb::failure::Cause::Worker,
        } as i32,
    }
}

/// Converts a failure from the wire.
pub fn failure_from_pb(f: Option<pb::Failure>) -> Result<TaskFailure, DistError> {
    let f = f.ok_or_else(|| DistError::Protocol { message: "message without a failure".into() })?;
    let kind = match pb::failure::Cause::try_from(f.cause).unwrap_or(pb::failure::Cause::Worker) {
        pb::failure::Cause::Error => FailureCause::Error,
        pb::failure::Cause::Panic => FailureCause::Panic,
        pb::failure::Cause::KilledWorker => FailureCause::KilledWorker,
        pb::failure::Cause::Worker => FailureCause::Worker,
    };
    Ok(TaskFailure {
        key: key_from_pb(f.key)?,
        op: f.op,
        message: f.message,
        worker: (!f.worker.is_empty()).then_some(f.worker),
        kind,
    })
}

/// Converts a task spec to the wire.
pub fn spec_to_pb(s: &TaskSpec) -> pb::TaskSpec {
    pb::TaskSpec {
        key: Some(key_to_pb(&s.key)),
        op: s.op.clone(),
        payload: s.payload.as_ref().clone(),
        deps: s.deps.iter().map(key_to_pb).collect(),
        priority: s.priority,
        graph_order: s.graph_order,
        retries: s.retries,
        workers: s.workers.clone(),
        allow_other_workers: s.allow_other_workers,
        resources: s.resources.iter().cloned().collect(),
        gang: s.gang.as_ref().map(|g| pb::Gang { id: g.id.clone(), rank: g.rank, size: g.size }),
    }
}

/// Converts a task spec from the wire.
pub fn spec_from_pb(s: pb::TaskSpec) -> Result<TaskSpec, DistError> {
    Ok(TaskSpec {
        key: key_from_pb(s.key)?,
        op: s.op,
        payload: Arc::new(s.payload),
        deps: s.deps.into_iter().map(|d| key_from_pb(Some(d))).collect::<Result<_, _>>()?,
        priority: s.priority,
        graph_order: s.graph_order,
        retries: s.retries,
        workers: s.workers,
        allow_other_workers: s.allow_other_workers,
        resources: s.resources.into_iter().collect::<BTreeMap<_, _>>().into_iter().collect(),
        gang: s.gang.map(|g| Gang { id: g.id, rank: g.rank, size: g.size }),
    })
}

/// A task's arguments as they travel: references to keys, encoded literals, lists.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WireArg {
    /// The value of another key.
    Key(Key),
    /// A literal, as a value envelope.
    Literal(Vec<u8>),
    /// A nested list (at most [`MAX_NESTING`] deep).
    List(Nested),
}

/// How deeply argument lists may nest. Decoding is recursive, so a payload
/// nested a million levels deep would overflow a worker's stack; past this
/// depth it is refused instead.
pub const MAX_NESTING: usize = 64;

thread_local! {
    static DECODE_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Set when a decode stopped at the depth limit (postcard keeps no
    /// custom error message, so the reason travels here).
    static TOO_DEEP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The items of a nested argument list; decoding counts the nesting depth.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Nested(pub Vec<WireArg>);

impl<'de> Deserialize<'de> for Nested {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let depth = DECODE_DEPTH.with(|c| c.get()) + 1;
        if depth > MAX_NESTING {
            TOO_DEEP.with(|c| c.set(true));
            return Err(serde::de::Error::custom(format!(
                "argument lists nested more than {MAX_NESTING} deep"
            )));
        }
        DECODE_DEPTH.with(|c| c.set(depth));
        let items = Vec::<WireArg>::deserialize(d);
        DECODE_DEPTH.with(|c| c.set(depth - 1));
        items.map(Nested)
    }
}

/// Literals larger than this leave the graph: the client scatters them to a
/// worker and the task refers to them by key (as Dask advises with
/// `client.scatter`), so a graph message never carries bulk data.
pub const LARGE_DATA_BYTES: usize = 1 << 20;

/// Encodes an argument; large literals are moved to `data` and referenced by
/// a content key, which is added to `deps`.
fn wire_arg(
    arg: &Arg,
    key: &Key,
    data: &mut Vec<(Key, Vec<u8>)>,
    deps: &mut Vec<Key>,
) -> Result<WireArg, DistError> {
    Ok(match arg {
        Arg::Key(k) => WireArg::Key(k.clone()),
        Arg::Literal(v) => {
            let bytes = v.to_envelope().map_err(|e| DistError::Unsupported {
                key: key.clone(),
                reason: format!("a literal argument cannot be sent to workers: {e}"),
            })?;
            if bytes.len() > LARGE_DATA_BYTES {
                let data_key =
                    Key::new("literal", rask_core::key::TokenHasher::new().bytes(&bytes).finish());
                deps.push(data_key.clone());
                data.push((data_key.clone(), bytes));
                WireArg::Key(data_key)
            } else {
                WireArg::Literal(bytes)
            }
        }
        Arg::List(items) => WireArg::List(Nested(
            items.iter().map(|a| wire_arg(a, key, data, deps)).collect::<Result<_, _>>()?,
        )),
    })
}

/// Options applied to every task of a submission.
#[derive(Debug, Clone, Default)]
pub struct SubmitOptions {
    /// Retries of a failing task.
    pub retries: u32,
    /// Priority (higher first).
    pub priority: i32,
    /// Restrict to these worker names or addresses.
    pub workers: Vec<String>,
    /// With `workers`: run elsewhere when they are unavailable.
    pub allow_other_workers: bool,
    /// Resources each task holds while running.
    pub resources: Vec<(String, f64)>,
}

/// A graph ready for the cluster: task specs, and the large values they
/// read, which travel by scatter instead of inside the graph.
#[derive(Debug, Default)]
pub struct Submission {
    /// The tasks.
    pub specs: Vec<TaskSpec>,
    /// Values of more than [`LARGE_DATA_BYTES`] as envelopes, by key: data
    /// nodes, and literal arguments hoisted out of their tasks.
    pub data: Vec<(Key, Vec<u8>)>,
}

/// Turns a graph into task specs for the cluster. Closures and values without
/// a serde encoding cannot leave the process: they are rejected here, naming the op.
/// `remote` keys are already on the cluster (futures) and need no node.
pub fn graph_to_specs(
    graph: &Graph,
    outputs: &[Key],
    opts: &SubmitOptions,
) -> Result<Submission, DistError> {
    // Cycles and dangling keys are refused here, before anything is sent.
    graph.validate(outputs).map_err(DistError::Graph)?;
    // Only what the outputs need.
    let culled = rask_core::graph::cull(graph, outputs);
    let order = rask_core::graph::order(&culled).map_err(DistError::Graph)?;
    let mut out = Submission { specs: Vec::with_capacity(culled.len()), data: Vec::new() };
    for key in culled.sorted_keys() {
        let node = culled.get(&key).expect("sorted_keys come from the graph");
        let mut deps: Vec<Key> = node.dependencies();
        let (op, args) = match node {
            Node::Task(t) => {
                if !t.op.is_registered() {
                    return Err(DistError::Unsupported {
                        key: key.clone(),
                        reason: format!(
                            "op `{}` is a closure, which cannot run in another process; declare it with `rask::op!` so workers can run it by name",
                            t.op.name()
                        ),
                    });
                }
                let args = t
                    .args
                    .iter()
                    .map(|a| wire_arg(a, &key, &mut out.data, &mut deps))
                    .collect::<Result<Vec<_>, _>>()?;
                (t.op.name().to_string(), args)
            }
            // Values held by the cluster (futures) are already there.
            Node::External => continue,
            Node::Data(v) => {
                let bytes = v.to_envelope().map_err(|e| DistError::Unsupported {
                    key: key.clone(),
                    reason: format!("a data node cannot be sent to workers: {e}"),
                })?;
                if bytes.len() > LARGE_DATA_BYTES {
                    out.data.push((key.clone(), bytes));
                    continue;
                }
                (LITERAL_OP.to_string(), vec![WireArg::Literal(bytes)])
            }
            Node::Alias(target) => (IDENTITY_OP.to_string(), vec![WireArg::Key(target.clone())]),
            Node::Fused(_) => {
                return Err(DistError::Unsupported {
                    key: key.clone(),
                    reason: "fused nodes run on local schedulers only; compute without `fuse`"
                        .into(),
                })
            }
        };
        let payload = postcard::to_stdvec(&args)
            .map_err(|e| DistError::Protocol { message: e.to_string() })?;
        out.specs.push(TaskSpec {
            key: key.clone(),
            op,
            payload: Arc::new(payload),
            deps,
            priority: opts.priority,
            graph_order: order.get(&key).copied().unwrap_or(0),
            retries: opts.retries,
            workers: opts.workers.clone(),
            allow_other_workers: opts.allow_other_workers,
            resources: opts.resources.clone(),
            gang: None,
        });
    }
    // The same large literal in many tasks is scattered once.
    let mut seen = std::collections::HashSet::new();
    out.data.retain(|(k, _)| seen.insert(k.clone()));
    Ok(out)
}

/// Decodes a task payload (nesting bounded by [`MAX_NESTING`]).
pub fn decode_payload(bytes: &[u8]) -> Result<Vec<WireArg>, DistError> {
    DECODE_DEPTH.with(|c| c.set(0));
    TOO_DEEP.with(|c| c.set(false));
    postcard::from_bytes(bytes).map_err(|e| {
        let message = if TOO_DEEP.with(|c| c.get()) {
            format!("task payload refused: argument lists nested more than {MAX_NESTING} deep")
        } else {
            format!("malformed task payload: {e}")
        };
        DistError::Protocol { message }
    })
}

/// Resolves wire arguments into values, looking keys up with `get`.
pub fn resolve_args(
    args: Vec<WireArg>,
    get: &mut dyn FnMut(&Key) -> Option<Value>,
) -> Result<Vec<Value>, String> {
    args.into_iter()
        .map(|a| match a {
            WireArg::Key(k) => {
                get(&k).ok_or_else(|| format!("dependency {k} is not on this worker"))
            }
            WireArg::Literal(bytes) => {
                Value::from_envelope(&bytes, MAX_VALUE_BYTES as usize).map_err(|e| e.to_string())
            }
            WireArg::List(Nested(items)) => resolve_args(items, get).map(Value::list),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> Vec<WireArg> {
        let mut arg = WireArg::Literal(vec![]);
        for _ in 0..depth {
            arg = WireArg::List(Nested(vec![arg]));
        }
        vec![arg]
    }

    #[test]
    fn nesting_is_bounded_when_decoding() {
        let ok = postcard::to_stdvec(&nested(MAX_NESTING)).unwrap();
        assert!(decode_payload(&ok).is_ok());
        let deep = postcard::to_stdvec(&nested(MAX_NESTING + 1)).unwrap();
        let err = decode_payload(&deep).unwrap_err().to_string();
        assert!(err.contains("nested more than 64 deep"), "{err}");
        // A hostile payload: a million nested one-item lists (variant 2, length 1),
        // built by hand (encoding it recursively would overflow this stack too).
        let mut hostile = vec![1u8];
        for _ in 0..1_000_000 {
            hostile.extend_from_slice(&[2, 1]);
        }
        hostile.extend_from_slice(&[1, 0]);
        assert!(decode_payload(&hostile).unwrap_err().to_string().contains("nested more than"));
        // The depth counter is per decode: a refused payload leaves none behind.
        assert!(decode_payload(&ok).is_ok());
    }
}
