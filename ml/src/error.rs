//! The one error type of the ML layer.

/// Why an estimator call failed. Every variant names the estimator (by its
/// registered type name) and says what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MlError {
    /// A hyperparameter value is out of its valid range or of the wrong type.
    #[error("{estimator}: invalid value {value} for parameter `{param}`: expected {expected}")]
    InvalidParam {
        /// Estimator type name.
        estimator: String,
        /// Parameter name.
        param: String,
        /// The rejected value.
        value: String,
        /// The valid range or type.
        expected: String,
    },
    /// No such hyperparameter.
    #[error("{estimator}: unknown parameter `{param}`; valid parameters are: {}", .known.join(", "))]
    UnknownParam {
        /// Estimator type name.
        estimator: String,
        /// The unknown name.
        param: String,
        /// The parameters it has.
        known: Vec<String>,
    },
    /// A method that needs a fitted model was called before `fit`.
    #[error("{estimator}: `{method}` called before `fit`; fit the estimator first")]
    NotFitted {
        /// Estimator type name.
        estimator: String,
        /// The method called.
        method: String,
    },
    /// The estimator has no such method (e.g. `predict_proba` of a regressor).
    #[error("{estimator} does not support `{method}`")]
    NotSupported {
        /// Estimator type name.
        estimator: String,
        /// The method called.
        method: String,
    },
    /// Inputs of inconsistent shapes (X and y lengths, empty data, …).
    #[error("{estimator}: {message}")]
    Shape {
        /// Estimator (or function) name.
        estimator: String,
        /// What does not fit, with the sizes.
        message: String,
    },
    /// `predict`/`transform` got another number of features than `fit` saw.
    #[error(
        "{estimator}: X has {got} features, but the estimator was fitted with {expected} features"
    )]
    FeatureCount {
        /// Estimator type name.
        estimator: String,
        /// Features seen at fit.
        expected: usize,
        /// Features given now.
        got: usize,
    },
    /// NaN or infinity in the input.
    #[error("{estimator}: {what} contains {value} at row {row}, column {col}; remove or impute non-finite values first")]
    NonFinite {
        /// Estimator type name.
        estimator: String,
        /// `X` or `y`.
        what: String,
        /// The value (NaN, inf, -inf).
        value: f64,
        /// Its row.
        row: usize,
        /// Its column (0 for y).
        col: usize,
    },
    /// Labels unsuitable for the estimator (one class only, non-integer classes, …).
    #[error("{estimator}: {message}")]
    Labels {
        /// Estimator type name.
        estimator: String,
        /// What is wrong.
        message: String,
    },
    /// The underlying library failed to fit.
    #[error("{estimator}: fitting failed in {library}: {message}")]
    Fit {
        /// Estimator type name.
        estimator: String,
        /// linfa / smartcore crate.
        library: String,
        /// The library's message.
        message: String,
    },
    /// No estimator is registered under this type name.
    #[error("no estimator is registered as `{name}`; registered: {}", .known.join(", "))]
    UnknownEstimator {
        /// The name asked for.
        name: String,
        /// Registered names.
        known: Vec<String>,
    },
    /// Saving or loading a model failed.
    #[error("serialization of {estimator}: {message}")]
    Serialization {
        /// Estimator type name (or `unknown`).
        estimator: String,
        /// What failed.
        message: String,
    },
    /// Reading a data file failed.
    #[error("{path}: {message}")]
    Data {
        /// The file.
        path: String,
        /// What is wrong, with the position where known.
        message: String,
    },
    /// No scorer of this name.
    #[error("unknown scorer `{name}`; valid scorers are: {}", .known.join(", "))]
    UnknownScorer {
        /// The name asked for.
        name: String,
        /// Valid names.
        known: Vec<String>,
    },
    /// A cross-validation splitter cannot split this data as configured.
    #[error("{splitter}: {message}")]
    Split {
        /// Splitter name (KFold, StratifiedKFold, ShuffleSplit).
        splitter: String,
        /// What is wrong.
        message: String,
    },
}
