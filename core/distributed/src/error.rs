//! Errors of the distributed runtime.

use rask_core::{GraphError, Key};

use crate::scheduler::TaskFailure;

/// What can go wrong talking to or inside a cluster.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DistError {
    /// The scheduler could not be reached in time.
    #[error("could not reach the scheduler at {addr} within {timeout_s:.1} s: {message}; is `rask scheduler` running there and the address right?")]
    Unreachable {
        /// The address tried.
        addr: String,
        /// The timeout.
        timeout_s: f64,
        /// The last connection error.
        message: String,
    },
    /// The peer speaks another protocol version, or refused the session.
    #[error("refused by {peer}: {reason}")]
    Refused {
        /// Who refused.
        peer: String,
        /// Their reason.
        reason: String,
    },
    /// The connection broke.
    #[error("connection to {peer} lost: {message}")]
    Disconnected {
        /// The peer.
        peer: String,
        /// What happened.
        message: String,
    },
    /// A malformed message.
    #[error("protocol error: {message}")]
    Protocol {
        /// What was wrong.
        message: String,
    },
    /// The scheduler rejected a request.
    #[error("the scheduler rejected the request: {message}")]
    Rejected {
        /// Its reason.
        message: String,
    },
    /// A task failed on the cluster.
    #[error("{0}")]
    Task(TaskFailure),
    /// A graph that cannot run on a cluster.
    #[error("task {key} cannot run on a cluster: {reason}")]
    Unsupported {
        /// The task.
        key: Key,
        /// Why, and what to do.
        reason: String,
    },
    /// A malformed graph.
    #[error(transparent)]
    Graph(GraphError),
    /// Fetching a value failed.
    #[error("could not fetch {key} from {addr}: {message}")]
    Fetch {
        /// The key.
        key: Key,
        /// The worker.
        addr: String,
        /// What happened.
        message: String,
    },
    /// Starting or stopping processes failed.
    #[error("{message}")]
    Process {
        /// What failed, with the command.
        message: String,
    },
    /// A value did not decode as the requested type.
    #[error("value of {key}: {message}")]
    Value {
        /// The key.
        key: Key,
        /// The decoding error.
        message: String,
    },
}
