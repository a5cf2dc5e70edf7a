#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod error;
pub mod ops;
pub mod results;
pub mod search;
pub mod space;

pub use error::SearchError;
pub use results::CvResults;
pub use search::{
    grid, Cv, ErrorScore, GridSearchCV, RandomizedSearchCV, Refit, SearchCV, SearchResult,
};
pub use space::{Distribution, Grid};
