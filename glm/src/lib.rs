#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod chunk;
pub mod chunked;
pub mod data;
pub mod error;
pub mod estimators;
pub mod family;
mod kernel;
pub mod penalty;
pub mod scaling;
pub mod solve;

pub use error::GlmError;
pub use family::{Family, Pointwise};
pub use penalty::{Penalty, PenaltyError};
pub use scaling::Parameterization;
