#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod cart;
pub mod cluster;
pub mod datasets;
pub mod decomposition;
pub mod error;
pub mod estimator;
mod gram;
pub mod linear_model;
mod logistic_lbfgs;
pub mod metrics;
pub mod model_selection;
pub mod naive_bayes;
pub mod neighbors;
pub mod params;
pub mod pipeline;
pub mod preprocessing;
mod smo;
pub mod svm;
pub mod tree;

pub use error::MlError;
pub use estimator::{
    config_token, create, load, registered_estimators, save, Estimator, FitParams, FittedModel,
    Kind,
};
pub use params::{CheckParams, Checked, ParamValue, Params};
pub use pipeline::Pipeline;

#[doc(hidden)]
pub use inventory;
