//! Errors of a computation.

use crate::graph::GraphError;
use crate::key::Key;
use crate::value::ValueError;

/// How a task failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The op returned an error.
    Error,
    /// The op panicked (the panic was caught; the process goes on).
    Panic,
}

/// Why a computation did not produce its results.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ComputeError {
    /// A task's op returned an error or panicked. The other tasks were cancelled.
    #[error("task {key} (op `{op}`) {}: {message}", match .kind { FailureKind::Error => "failed", FailureKind::Panic => "panicked" })]
    TaskFailed {
        /// The failing task.
        key: Key,
        /// Its op.
        op: String,
        /// The op's error message or panic payload.
        message: String,
        /// Error or panic.
        kind: FailureKind,
    },
    /// The graph is malformed (cycle, missing key); nothing ran.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// A result has another type than the one asked for.
    #[error("result {key}: {source}")]
    Output {
        /// The output key.
        key: Key,
        /// The conversion error.
        source: ValueError,
    },
    /// The chosen scheduler cannot run this graph (for example a closure on a distributed cluster).
    #[error("scheduler `{scheduler}` cannot run task {key}: {reason}")]
    Unsupported {
        /// The scheduler's name.
        scheduler: String,
        /// The task it refused.
        key: Key,
        /// Why, and what to do instead.
        reason: String,
    },
}
