#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod chunk;
pub mod family;
pub mod penalty;
pub mod scaling;

pub use family::{Family, Pointwise};
pub use penalty::{Penalty, PenaltyError};
pub use scaling::Parameterization;
