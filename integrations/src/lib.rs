#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

#[cfg(feature = "dl")]
pub mod dl;
#[cfg(any(feature = "xgboost", feature = "burn"))]
pub mod gang;
#[cfg(feature = "xgboost")]
pub mod xgboost;
