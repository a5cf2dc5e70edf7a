#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub use rask_core::*;

/// Estimators, pipelines, cross-validation and metrics (the `rask-ml` crate).
pub use rask_ml as ml;

/// Hyperparameter search with pipeline-prefix caching (the `rask-search` crate).
pub use rask_search as search;

/// Generalized linear models over row chunks (the `rask-glm` crate; in progress).
pub use rask_glm as glm;
/// XGBoost through the real libxgboost (feature `xgboost`).
#[cfg(feature = "xgboost")]
pub use rask_integrations::xgboost;

/// Deep-learning clusters on the workers: roles, ports and environments
/// (`TF_CONFIG`, PyTorch's `MASTER_ADDR`/`RANK`/…) (the `rask-integrations` crate's `dl`).
pub use rask_integrations::dl;

/// Bags: partitioned collections of serde values, text and JSON lines (the `rask-bag` crate).
pub use rask_bag as bag;
/// Dataframes: partitioned polars DataFrames, CSV and Parquet, group-bys, merges and sorts (the `rask-dataframe` crate).
pub use rask_dataframe as dataframe;

/// Scheduler, workers, client and LocalCluster (the `rask-distributed` crate).
pub use rask_distributed as distributed;
pub use rask_distributed::{Client, LocalCluster};

pub mod bench;
pub mod demo;
pub mod demo_search;
pub mod glm_spec;
pub mod ops;
pub mod spec;
#[cfg(feature = "xgboost")]
pub mod xgb_spec;
