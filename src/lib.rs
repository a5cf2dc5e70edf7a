#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub use rask_core::*;

/// Estimators, pipelines, cross-validation and metrics (the `rask-ml` crate).
pub use rask_ml as ml;

pub mod bench;
pub mod demo;
