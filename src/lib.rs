#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub use rask_core::*;

pub mod bench;
pub mod demo;
