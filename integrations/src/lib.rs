#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

#[cfg(feature = "xgboost")]
pub mod xgboost;
