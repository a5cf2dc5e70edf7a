//! XGBoost through the real `libxgboost` (feature `xgboost`): local
//! estimators in the ML registry, models in XGBoost's own JSON and UBJSON
//! formats (which Python's `xgboost.Booster(model_file=...)` reads).
//!
//! The library is the one in the pinned PyPI wheel `xgboost-cpu` 3.2.0:
//! `cargo xtask provision` installs the wheel and links its `lib` folder
//! at `~/.cache/rask/xgboost-lib`; a build finds it there or through
//! `XGBOOST_LIB_DIR`, and binaries carry an rpath to it.

mod chunked;
pub mod dist;
mod estimators;
mod ffi;
mod predict;
mod train;

pub use estimators::{
    FittedXgb, XGBClassifier, XGBClassifierParams, XGBRegressor, XGBRegressorParams,
};
pub use ffi::{Batch, Booster, Communicator, DMatrix, Tracker};
pub use predict::{predict, raw_predict, Prediction};
pub use train::{boost, dmatrix, new_booster, train, Best, Trained};

/// What went wrong in XGBoost, in its own words.
#[derive(Debug, thiserror::Error)]
pub enum XgbError {
    /// A call into the library failed.
    #[error("xgboost: {call} failed: {message}")]
    Library {
        /// The C API function.
        call: String,
        /// XGBoost's message.
        message: String,
    },
    /// A model file that cannot be read or written.
    #[error("xgboost model {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The cluster could not run or finish a distributed training.
    #[error("xgboost on the cluster: {message}")]
    Cluster {
        /// What happened.
        message: String,
    },
    /// A parameter XGBoost refused, or one that cannot be passed to it.
    #[error("xgboost parameter `{name}`: {message}")]
    Param {
        /// The parameter.
        name: String,
        /// Why.
        message: String,
    },
}

impl XgbError {
    /// The same failure, naming the parameter being set.
    fn about(self, name: &str) -> XgbError {
        match self {
            XgbError::Library { message, .. } => XgbError::Param { name: name.into(), message },
            other => other,
        }
    }
}
