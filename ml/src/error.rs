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
    #[error(
        "{estimator}: unknown parameter `{param}`{}; valid parameters are: {}",
        did_you_mean(.param, .known),
        .known.join(", ")
    )]
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
    #[error(
        "no estimator is registered as `{name}`{}; registered: {}",
        did_you_mean(.name, .known),
        .known.join(", ")
    )]
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

/// `"; did you mean `x`?"` when one of `known` is close to `name` (by edit
/// distance, or equal but for case), else `""`.
pub fn did_you_mean<S: AsRef<str>>(name: &str, known: &[S]) -> String {
    closest(name, known).map(|k| format!("; did you mean `{k}`?")).unwrap_or_default()
}

/// The name in `known` closest to `name`, if it is close enough to be a typo.
pub fn closest<'a, S: AsRef<str>>(name: &str, known: &'a [S]) -> Option<&'a str> {
    let lower = name.to_lowercase();
    let limit = (name.chars().count() / 3).max(2);
    known
        .iter()
        .map(AsRef::as_ref)
        .map(|k| {
            (
                if k.to_lowercase() == lower {
                    0
                } else {
                    edit_distance(&lower, &k.to_lowercase())
                },
                k,
            )
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance (insertions, deletions, substitutions), by chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_and_case_only() {
        let known = ["LogisticRegression", "LinearRegression", "StandardScaler"];
        assert_eq!(closest("LogisticRegresion", &known), Some("LogisticRegression"));
        assert_eq!(closest("standardscaler", &known), Some("StandardScaler"));
        assert_eq!(closest("KMeans", &known), None);
        let params = ["logreg__C", "logreg__tol", "pca__n_components"];
        assert_eq!(closest("logreg__c", &params), Some("logreg__C"));
        assert_eq!(closest("pca__n_component", &params), Some("pca__n_components"));
        assert_eq!(did_you_mean("xyz", &params), "");
    }
}
