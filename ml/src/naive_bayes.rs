//! Gaussian naive Bayes (linfa-bayes).

use linfa::prelude::*;
use linfa_bayes::GaussianNb;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::error::MlError;
use crate::estimator::{encode_classes, require_y, FitParams, FittedModel, Kind, Output};
use crate::params::Checked;

crate::params! {
    /// Hyperparameters of [`GaussianNB`].
    pub struct GaussianNbParams for "GaussianNB" {
        /// Share of the largest feature variance added to every variance, for stability.
        var_smoothing ("var_smoothing"): f64 = 1e-9, valid if |v| *v >= 0.0, "a number >= 0";
    }
}

/// A fitted Gaussian naive Bayes model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FittedGaussianNb {
    classes: Vec<f64>,
    model: GaussianNb<f64, usize>,
    n_features: usize,
}

impl FitParams for GaussianNbParams {
    type Fitted = FittedGaussianNb;

    fn fit(
        params: &Checked<Self>,
        x: ArrayView2<'_, f64>,
        y: Option<ArrayView1<'_, f64>>,
    ) -> Result<FittedGaussianNb, MlError> {
        let name = "GaussianNB";
        let (classes, idx) = encode_classes(name, require_y(name, y)?)?;
        let model = GaussianNb::params()
            .var_smoothing(params.var_smoothing)
            .fit(&Dataset::new(x.to_owned(), Array1::from(idx)))
            .map_err(|e| MlError::Fit {
                estimator: name.into(),
                library: "linfa-bayes".into(),
                message: e.to_string(),
            })?;
        Ok(FittedGaussianNb { classes, model, n_features: x.ncols() })
    }
}

impl FittedModel for FittedGaussianNb {
    fn n_features(&self) -> usize {
        self.n_features
    }
    fn predict(&self, x: ArrayView2<'_, f64>) -> Output<Array1<f64>> {
        let p: Array1<usize> = self.model.predict(&x);
        Some(Ok(p.mapv(|i| self.classes[i])))
    }
    fn predict_proba(&self, x: ArrayView2<'_, f64>) -> Output<Array2<f64>> {
        use linfa_bayes::NaiveBayes;
        let (p, labels) = self.model.predict_proba(x);
        // linfa orders the columns by its own class map: put them in class order.
        let mut out = Array2::zeros((x.nrows(), self.classes.len()));
        for (col, &&label) in labels.iter().enumerate() {
            out.column_mut(label).assign(&p.column(col));
        }
        Some(Ok(out))
    }
    fn classes(&self) -> Option<&[f64]> {
        Some(&self.classes)
    }
}

crate::estimator! {
    /// Gaussian naive Bayes classifier (see [`GaussianNbParams`]).
    GaussianNB, GaussianNbParams, FittedGaussianNb, "GaussianNB", Kind::Classifier
}
