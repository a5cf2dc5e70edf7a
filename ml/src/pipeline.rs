//! Pipelines: named steps, each a transformer except possibly the last.
//!
//! A pipeline is itself an [`Estimator`]: its parameters are its steps'
//! parameters addressed as `step__param` (scikit-learn's convention), so a
//! search treats a pipeline like any other estimator.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

use crate::error::MlError;
use crate::estimator::{self, Estimator, Kind};
use crate::params::{ParamValue, Params};

/// A chain of named estimators.
#[derive(Debug, Clone)]
pub struct Pipeline {
    steps: Vec<(String, Box<dyn Estimator>)>,
}

const NAME: &str = "Pipeline";

impl Pipeline {
    /// A pipeline of `(name, estimator)` steps. Names must be unique, non-empty
    /// and free of `__`; every step but the last must be a transformer.
    pub fn new(steps: Vec<(String, Box<dyn Estimator>)>) -> Result<Self, MlError> {
        let bad = |message: String| MlError::Shape { estimator: NAME.into(), message };
        if steps.is_empty() {
            return Err(bad("a pipeline needs at least one step".into()));
        }
        for (i, (name, step)) in steps.iter().enumerate() {
            if name.is_empty() || name.contains("__") {
                return Err(bad(format!(
                    "step name {name:?} must be non-empty and must not contain \"__\""
                )));
            }
            if steps[..i].iter().any(|(n, _)| n == name) {
                return Err(bad(format!("step name {name:?} is used twice")));
            }
            if i + 1 < steps.len() && step.kind() != Kind::Transformer {
                return Err(bad(format!(
                    "step {name:?} ({}) is not a transformer; only the last step may be a classifier, regressor or clusterer",
                    step.type_name()
                )));
            }
        }
        Ok(Pipeline { steps })
    }

    /// Builds a pipeline from `(name, estimator)` pairs.
    pub fn of(steps: Vec<(&str, Box<dyn Estimator>)>) -> Result<Self, MlError> {
        Self::new(steps.into_iter().map(|(n, e)| (n.to_string(), e)).collect())
    }

    /// The steps.
    pub fn steps(&self) -> &[(String, Box<dyn Estimator>)] {
        &self.steps
    }

    /// One step by name.
    pub fn step(&self, name: &str) -> Option<&dyn Estimator> {
        self.steps.iter().find(|(n, _)| n == name).map(|(_, e)| e.as_ref())
    }

    fn last(&self) -> Result<&dyn Estimator, MlError> {
        self.steps.last().map(|(_, e)| e.as_ref()).ok_or_else(|| MlError::Shape {
            estimator: NAME.into(),
            message: "the pipeline has no steps; build it with Pipeline::new".into(),
        })
    }

    /// `x` through every step but the last.
    pub fn transform_prefix(&self, x: ArrayView2<'_, f64>) -> Result<Array2<f64>, MlError> {
        let mut cur = x.to_owned();
        for (_, step) in &self.steps[..self.steps.len().saturating_sub(1)] {
            cur = step.transform(cur.view())?;
        }
        Ok(cur)
    }
}

impl Estimator for Pipeline {
    fn type_name(&self) -> &'static str {
        NAME
    }
    fn kind(&self) -> Kind {
        self.last().map_or(Kind::Transformer, |e| e.kind())
    }
    fn get_params(&self) -> Params {
        let mut p = Params::new();
        for (name, step) in &self.steps {
            for (k, v) in step.get_params() {
                p.insert(format!("{name}__{k}"), v);
            }
        }
        p
    }
    fn set_param(&mut self, name: &str, value: ParamValue) -> Result<(), MlError> {
        let unknown = || MlError::UnknownParam {
            estimator: NAME.into(),
            param: name.into(),
            known: self.get_params().into_keys().collect(),
        };
        let (step, param) = name.split_once("__").ok_or_else(unknown)?;
        let Some(i) = self.steps.iter().position(|(n, _)| n == step) else {
            return Err(unknown());
        };
        self.steps[i].1.set_param(param, value)?;
        // Later steps were fitted on the old output of this one.
        for (_, s) in &mut self.steps[i + 1..] {
            if s.is_fitted() {
                *s = s.clone_unfitted();
            }
        }
        Ok(())
    }
    fn fit(
        &mut self,
        x: ArrayView2<'_, f64>,
        y: Option<ArrayView1<'_, f64>>,
    ) -> Result<(), MlError> {
        self.last()?;
        estimator::check_xy(NAME, x, y)?;
        let n = self.steps.len();
        let mut cur = x.to_owned();
        for (i, (_, step)) in self.steps.iter_mut().enumerate() {
            step.fit(cur.view(), y)?;
            if i + 1 < n {
                cur = step.transform(cur.view())?;
            }
        }
        Ok(())
    }
    fn is_fitted(&self) -> bool {
        !self.steps.is_empty() && self.steps.iter().all(|(_, s)| s.is_fitted())
    }
    fn predict(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>, MlError> {
        self.last()?.predict(self.transform_prefix(x)?.view())
    }
    fn predict_proba(&self, x: ArrayView2<'_, f64>) -> Result<Array2<f64>, MlError> {
        self.last()?.predict_proba(self.transform_prefix(x)?.view())
    }
    fn transform(&self, x: ArrayView2<'_, f64>) -> Result<Array2<f64>, MlError> {
        self.last()?.transform(self.transform_prefix(x)?.view())
    }
    fn classes(&self) -> Option<Vec<f64>> {
        self.last().ok()?.classes()
    }
    fn score(&self, x: ArrayView2<'_, f64>, y: ArrayView1<'_, f64>) -> Result<f64, MlError> {
        self.last()?.score(self.transform_prefix(x)?.view(), y)
    }
    fn clone_unfitted(&self) -> Box<dyn Estimator> {
        Box::new(Pipeline {
            steps: self.steps.iter().map(|(n, s)| (n.clone(), s.clone_unfitted())).collect(),
        })
    }
    fn clone_box(&self) -> Box<dyn Estimator> {
        Box::new(self.clone())
    }
    fn pipeline_steps(&self) -> Option<&[(String, Box<dyn Estimator>)]> {
        Some(&self.steps)
    }
    fn state(&self) -> Result<Vec<u8>, MlError> {
        let steps: Vec<(String, Vec<u8>)> = self
            .steps
            .iter()
            .map(|(n, s)| Ok((n.clone(), estimator::save(s.as_ref())?)))
            .collect::<Result<_, MlError>>()?;
        estimator::encode_state(NAME, &steps)
    }
}

inventory::submit! {
    estimator::EstimatorEntry {
        name: NAME,
        create: || Box::new(Pipeline { steps: Vec::new() }),
        load: |bytes| {
            let steps: Vec<(String, Vec<u8>)> = estimator::decode_state(NAME, bytes)?;
            let steps = steps
                .into_iter()
                .map(|(n, b)| Ok((n, estimator::load(&b)?)))
                .collect::<Result<Vec<_>, MlError>>()?;
            Ok(Box::new(Pipeline::new(steps)?))
        },
    }
}
