#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod auth;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod dashboard;
pub mod error;
pub mod parts;
pub mod protocol;
pub mod report;
pub mod scheduler;
pub mod scheduler_file;
pub mod server;
pub mod ssh;
pub mod worker;

pub use client::{Client, ClientOptions, Future, GangMember, WorkerInfo};
pub use cluster::{ClusterOptions, LocalCluster};
pub use error::DistError;
pub use protocol::SubmitOptions;
pub use report::performance_report;
