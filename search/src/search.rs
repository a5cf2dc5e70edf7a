//! `GridSearchCV` and `RandomizedSearchCV`: a search is one task graph.
//!
//! For each candidate and fold the graph has a chain `split_fold →
//! fit_transform(step 0) → … → fit_score(last step)`. Every node is a
//! registered op whose key is the content token of its inputs: the previous
//! node's key and the step's saved configuration. So a pipeline prefix such
//! as `scaler → pca(n_components=10)` on fold 3 has one key, whichever
//! candidate it belongs to, and the graph holds — and runs — it once.

use std::collections::BTreeMap;

use ndarray::{Array1, Array2};
use rask_core::{ComputeOptions, Delayed, Scheduler};
use rask_ml::model_selection::Splitter;
use rask_ml::{save, Estimator, Kind, MlError, ParamValue, Params};

use crate::error::SearchError;
use crate::ops::{
    fit_score, fit_transform, split_fold, FoldScore, ScoreSpec, SearchData, StepSpec,
};
use crate::results::CvResults;
use crate::space::{expand_grids, sample, Distribution, Grid};

/// What to do when a candidate fails.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ErrorScore {
    /// Stop the search with the error.
    Raise,
    /// Record the error and give the candidate this score (may be NaN).
    Value(f64),
}

/// Which scorer picks the refitted model.
#[derive(Debug, Clone, PartialEq)]
pub enum Refit {
    /// Refit the best candidate of the first scorer.
    Best,
    /// Refit the best candidate of this scorer.
    By(String),
    /// Do not refit.
    No,
}

/// Cross-validation of a search.
#[derive(Debug, Clone, PartialEq)]
pub enum Cv {
    /// scikit-learn's `cv=<int>`: stratified folds for classifiers, plain folds otherwise.
    Folds(usize),
    /// An explicit splitter.
    Splitter(Splitter),
}

#[derive(Debug, Clone)]
enum Space {
    Grid(Vec<Grid>),
    Random { dists: BTreeMap<String, Distribution>, n_iter: usize, seed: u64 },
}

/// A hyperparameter search over an estimator or pipeline.
#[derive(Debug, Clone)]
pub struct SearchCV {
    estimator: Box<dyn Estimator>,
    space: Space,
    cv: Cv,
    scoring: Vec<String>,
    refit: Refit,
    error_score: ErrorScore,
    return_train_score: bool,
}

/// Exhaustive search over parameter grids.
pub struct GridSearchCV;

impl GridSearchCV {
    /// A search of `estimator` over every combination of each grid (scikit-learn's
    /// `param_grid`, a list of dicts).
    #[allow(clippy::new_ret_no_self)]
    pub fn new(estimator: Box<dyn Estimator>, grids: Vec<Grid>) -> SearchCV {
        SearchCV::with_space(estimator, Space::Grid(grids))
    }
}

/// Search over `n_iter` candidates drawn from distributions.
pub struct RandomizedSearchCV;

impl RandomizedSearchCV {
    /// A search of `estimator` over `n_iter` draws from `dists`, seeded by `seed`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(
        estimator: Box<dyn Estimator>,
        dists: BTreeMap<String, Distribution>,
        n_iter: usize,
        seed: u64,
    ) -> SearchCV {
        SearchCV::with_space(estimator, Space::Random { dists, n_iter, seed })
    }
}

/// What a search found.
#[derive(Debug)]
pub struct SearchResult {
    /// The per-candidate table.
    pub cv_results: CvResults,
    /// Index of the best candidate (by the refit scorer).
    pub best_index: usize,
    /// Its parameters.
    pub best_params: Params,
    /// Its mean test score.
    pub best_score: f64,
    /// The best candidate refitted on all the data (unless `Refit::No`).
    pub best_estimator: Option<Box<dyn Estimator>>,
    /// Graph nodes of the search (after sharing identical prefixes).
    pub n_tasks: usize,
}

impl SearchCV {
    fn with_space(estimator: Box<dyn Estimator>, space: Space) -> Self {
        SearchCV {
            estimator,
            space,
            cv: Cv::Folds(5),
            scoring: Vec::new(),
            refit: Refit::Best,
            error_score: ErrorScore::Value(f64::NAN),
            return_train_score: false,
        }
    }

    /// Cross-validation: a number of folds, or a splitter.
    pub fn cv(mut self, cv: Cv) -> Self {
        self.cv = cv;
        self
    }

    /// Scorer names (empty: accuracy for classifiers, R² for regressors).
    pub fn scoring(mut self, scorers: &[&str]) -> Self {
        self.scoring = scorers.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Which scorer picks the refitted model, or no refit.
    pub fn refit(mut self, refit: Refit) -> Self {
        self.refit = refit;
        self
    }

    /// What a failing candidate scores.
    pub fn error_score(mut self, e: ErrorScore) -> Self {
        self.error_score = e;
        self
    }

    /// Also record train scores.
    pub fn return_train_score(mut self, yes: bool) -> Self {
        self.return_train_score = yes;
        self
    }

    fn scorers(&self) -> Result<Vec<String>, SearchError> {
        let s = if self.scoring.is_empty() {
            vec![match self.estimator.kind() {
                Kind::Regressor => "r2".to_string(),
                _ => "accuracy".to_string(),
            }]
        } else {
            self.scoring.clone()
        };
        for name in &s {
            rask_ml::metrics::check_scorer(name)?;
        }
        Ok(s)
    }

    fn splitter(&self) -> Splitter {
        let s = match &self.cv {
            Cv::Folds(k) => Splitter::default_for(*k, self.estimator.kind() == Kind::Classifier),
            Cv::Splitter(s) => s.clone(),
        };
        // An unseeded shuffle must still split the same way in every task.
        match s {
            Splitter::KFold { n_splits, shuffle: true, random_state: None } => Splitter::KFold {
                n_splits,
                shuffle: true,
                random_state: Some(rask_core::key::unique_token().0 as u32),
            },
            Splitter::StratifiedKFold { n_splits, shuffle: true, random_state: None } => {
                Splitter::StratifiedKFold {
                    n_splits,
                    shuffle: true,
                    random_state: Some(rask_core::key::unique_token().0 as u32),
                }
            }
            Splitter::ShuffleSplit { n_splits, test_size, train_size, random_state: None } => {
                Splitter::ShuffleSplit {
                    n_splits,
                    test_size,
                    train_size,
                    random_state: Some(rask_core::key::unique_token().0 as u32),
                }
            }
            other => other,
        }
    }

    /// The candidates, in order.
    pub fn candidates(&self) -> Result<Vec<Params>, SearchError> {
        match &self.space {
            Space::Grid(g) => expand_grids(g),
            Space::Random { dists, n_iter, seed } => sample(dists, *n_iter, *seed),
        }
    }

    /// Runs the search on the current default scheduler.
    pub fn fit(&self, x: &Array2<f64>, y: &Array1<f64>) -> Result<SearchResult, SearchError> {
        self.fit_with(x, y, &rask_core::default_scheduler(), &ComputeOptions::new())
    }

    /// Runs the search on `scheduler` (local threads, sync, or a cluster's client).
    pub fn fit_with(
        &self,
        x: &Array2<f64>,
        y: &Array1<f64>,
        scheduler: &Scheduler,
        options: &ComputeOptions,
    ) -> Result<SearchResult, SearchError> {
        rask_ml::estimator::check_xy("SearchCV", x.view(), Some(y.view()))?;
        let scorers = self.scorers()?;
        let refit_scorer = match &self.refit {
            Refit::Best | Refit::No => 0,
            Refit::By(name) => {
                scorers.iter().position(|s| s == name).ok_or_else(|| SearchError::Space {
                    message: format!("refit scorer {name:?} is not among the scorers {scorers:?}"),
                })?
            }
        };
        let candidates = self.candidates()?;
        if candidates.is_empty() {
            return Err(SearchError::Space { message: "the search has no candidates".into() });
        }
        let cv = self.splitter();
        let n_splits = cv.n_splits();
        // Check the split once here, for a clear error before any task runs.
        cv.split(x.nrows(), Some(y.view()))?;
        let raise = self.error_score == ErrorScore::Raise;
        let spec = ScoreSpec {
            scorers: scorers.clone(),
            train: self.return_train_score,
            error_score: match self.error_score {
                ErrorScore::Raise => None,
                ErrorScore::Value(v) => Some(v),
            },
        };

        let data = rask_core::value(SearchData { x: x.clone(), y: y.clone() });
        let folds: Vec<Delayed<crate::ops::Fold>> =
            (0..n_splits as u32).map(|f| split_fold(&data, cv.clone(), f)).collect();
        let mut scores: Vec<Option<Vec<Delayed<FoldScore>>>> = Vec::with_capacity(candidates.len());
        let mut config_errors: Vec<Option<String>> = Vec::with_capacity(candidates.len());
        for (i, params) in candidates.iter().enumerate() {
            match self.configure(params) {
                Ok(steps) => {
                    let (last, prefix) = steps.split_last().expect("at least one step");
                    let nodes = folds
                        .iter()
                        .map(|fold| {
                            let mut node = fold.clone();
                            for s in prefix {
                                node = fit_transform(node, s.clone(), raise);
                            }
                            fit_score(node, last.clone(), spec.clone())
                        })
                        .collect();
                    scores.push(Some(nodes));
                    config_errors.push(None);
                }
                Err(e) if raise => {
                    return Err(SearchError::Candidate {
                        index: i,
                        params: fmt_params(params),
                        source: e,
                    });
                }
                Err(e) => {
                    scores.push(None);
                    config_errors.push(Some(e.to_string()));
                }
            }
        }
        let all: Vec<rask_core::AnyDelayed> =
            scores.iter().flatten().flatten().map(Delayed::erase).collect();
        let graph = rask_core::graph_of(&all);
        let n_tasks = graph.len();
        let keys: Vec<rask_core::Key> = all.iter().map(|d| d.key().clone()).collect();
        let values = scheduler.execute(graph, &keys, options)?;
        let mut results = values.into_iter().map(|v| {
            v.take_decode::<FoldScore>().map_err(|source| {
                SearchError::Compute(rask_core::ComputeError::Output {
                    key: rask_core::Key::named("fit_score"),
                    source,
                })
            })
        });

        let n_s = scorers.len();
        let mut cv_results = CvResults {
            params: candidates.clone(),
            scorers: scorers.clone(),
            split_test: vec![Vec::new(); n_s],
            split_train: if self.return_train_score { vec![Vec::new(); n_s] } else { Vec::new() },
            fit_time: Vec::new(),
            score_time: Vec::new(),
            errors: Vec::new(),
        };
        let fallback = match self.error_score {
            ErrorScore::Value(v) => v,
            ErrorScore::Raise => f64::NAN,
        };
        for (c, nodes) in scores.iter().enumerate() {
            let fold_scores: Vec<FoldScore> = match nodes {
                Some(n) => (0..n.len())
                    .map(|_| results.next().expect("one result per node"))
                    .collect::<Result<_, _>>()?,
                None => (0..n_splits)
                    .map(|_| FoldScore {
                        test: vec![fallback; n_s],
                        train: if self.return_train_score { vec![fallback; n_s] } else { vec![] },
                        fit_time: 0.0,
                        score_time: 0.0,
                        error: config_errors[c].clone(),
                    })
                    .collect(),
            };
            for s in 0..n_s {
                cv_results.split_test[s].push(fold_scores.iter().map(|f| f.test[s]).collect());
                if self.return_train_score {
                    cv_results.split_train[s]
                        .push(fold_scores.iter().map(|f| f.train[s]).collect());
                }
            }
            cv_results.fit_time.push(fold_scores.iter().map(|f| f.fit_time).collect());
            cv_results.score_time.push(fold_scores.iter().map(|f| f.score_time).collect());
            cv_results.errors.push(fold_scores.iter().find_map(|f| f.error.clone()));
        }
        let best_index = cv_results.best_index(refit_scorer);
        let best_score = cv_results.mean_test(refit_scorer)[best_index];
        let best_params = candidates[best_index].clone();
        let best_estimator = match self.refit {
            Refit::No => None,
            _ => {
                let mut est = self.estimator.clone_unfitted();
                for (k, v) in &best_params {
                    est.set_param(k, v.clone())?;
                }
                est.fit(x.view(), Some(y.view()))?;
                Some(est)
            }
        };
        Ok(SearchResult {
            cv_results,
            best_index,
            best_params,
            best_score,
            best_estimator,
            n_tasks,
        })
    }

    /// The candidate's steps as saved configurations (one step for a plain estimator).
    fn configure(&self, params: &Params) -> Result<Vec<StepSpec>, MlError> {
        let mut est = self.estimator.clone_unfitted();
        for (k, v) in params {
            est.set_param(k, v.clone())?;
        }
        match est.pipeline_steps() {
            Some(steps) => steps.iter().map(|(_, s)| Ok(StepSpec(save(s.as_ref())?))).collect(),
            None => Ok(vec![StepSpec(save(est.as_ref())?)]),
        }
    }
}

fn fmt_params(p: &Params) -> String {
    let items: Vec<String> = p.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", items.join(", "))
}

/// A grid from `(name, values)` pairs.
pub fn grid(entries: Vec<(&str, Vec<ParamValue>)>) -> Grid {
    entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}
