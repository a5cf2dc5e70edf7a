//! Errors of a search.

use rask_core::ComputeError;
use rask_ml::MlError;

/// Why a search could not run or finish.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SearchError {
    /// The search space is malformed.
    #[error("search space: {message}")]
    Space {
        /// What is wrong.
        message: String,
    },
    /// A candidate could not be configured or fitted, and `error_score` is "raise".
    #[error("candidate {index} {params}: {source}")]
    Candidate {
        /// Candidate index.
        index: usize,
        /// Its parameters, printed.
        params: String,
        /// The estimator error.
        source: MlError,
    },
    /// An estimator or data error outside a candidate.
    #[error(transparent)]
    Ml(#[from] MlError),
    /// The search graph failed (with `error_score = raise`, a failing fit ends here).
    #[error("the search graph failed: {0}")]
    Compute(#[from] ComputeError),
}
