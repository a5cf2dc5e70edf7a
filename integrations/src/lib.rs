#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

#[cfg(feature = "dl")]
pub mod dl;
#[cfg(feature = "xgboost")]
pub mod xgboost;
