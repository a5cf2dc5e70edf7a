//! The one error type of rask-glm.

use crate::penalty::PenaltyError;

/// Why a GLM fit could not run. Every variant names what is wrong and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum GlmError {
    /// Inputs of mismatched or empty shape.
    #[error("{what}: {message}")]
    Shape {
        /// Which input (`X`, `y`, `sample_weight`).
        what: String,
        /// What is wrong.
        message: String,
    },
    /// An invalid value in an input.
    #[error("{what}, row {row}: {message}")]
    Input {
        /// Which input.
        what: String,
        /// The first offending row.
        row: usize,
        /// What is wrong with it.
        message: String,
    },
    /// An invalid penalty.
    #[error(transparent)]
    Penalty(#[from] PenaltyError),
    /// A solver asked for a penalty it cannot handle.
    #[error("solver `{solver}` cannot fit {what}: {hint}")]
    Unsupported {
        /// The solver.
        solver: &'static str,
        /// What it was asked to fit.
        what: String,
        /// Which solver to use instead.
        hint: &'static str,
    },
    /// Invalid solver options.
    #[error("invalid solver option `{option}` = {value}: {expected}")]
    Option {
        /// The option.
        option: &'static str,
        /// Its value.
        value: String,
        /// What is valid.
        expected: &'static str,
    },
    /// A pass over chunked data failed (a task, a file, the cluster).
    #[error("a pass over the data failed: {message}")]
    Compute {
        /// The scheduler's error.
        message: String,
    },
}
