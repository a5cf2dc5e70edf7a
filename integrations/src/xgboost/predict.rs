//! The one prediction path: in-memory rows (the estimators) and each row
//! block of a chunked array (the `xgb_predict_block` op) both come here.

use ndarray::{Array1, Array2, ArrayD, ArrayView2};
use rask_ml::estimator::argmax;
use serde::{Deserialize, Serialize};

use super::ffi::Booster;
use super::train::dmatrix;
use super::XgbError;

/// What a prediction holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Prediction {
    /// XGBoost's value per row (regression).
    Value,
    /// Class probabilities, `rows × K`.
    Proba(usize),
    /// The most probable class's label (of these sorted labels).
    Class(Vec<f64>),
}

/// The library's predictions of `model` (XGBoost UBJSON or JSON) for `x`:
/// values and their shape.
pub fn raw_predict(
    model: &[u8],
    x: ArrayView2<'_, f64>,
) -> Result<(Vec<f32>, Vec<usize>), XgbError> {
    Booster::load(model)?.predict(&dmatrix(x, None, 0)?, false)
}

fn outputs_error(shape: &[usize], wanted: &str) -> XgbError {
    XgbError::Param {
        name: "objective".into(),
        message: format!("gives outputs of shape {shape:?}, {wanted}"),
    }
}

/// `what` for rows `x`: `n` values or labels, or `n × K` probabilities.
pub fn predict(
    model: &[u8],
    x: ArrayView2<'_, f64>,
    what: &Prediction,
) -> Result<ArrayD<f64>, XgbError> {
    let (values, shape) = raw_predict(model, x)?;
    let n = x.nrows();
    let proba = |k: usize| -> Result<Array2<f64>, XgbError> {
        match shape[..] {
            [_, c] if c == k => {
                Ok(Array2::from_shape_fn((n, k), |(i, j)| f64::from(values[i * k + j])))
            }
            // Binary objectives give P(class 1) per row.
            [_] if k == 2 => Ok(Array2::from_shape_fn((n, 2), |(i, j)| {
                let p = f64::from(values[i]);
                if j == 1 {
                    p
                } else {
                    1.0 - p
                }
            })),
            _ => Err(outputs_error(&shape, &format!("{k} class probabilities per row expected"))),
        }
    };
    Ok(match what {
        Prediction::Value => {
            if shape.len() != 1 {
                return Err(outputs_error(
                    &shape,
                    "one value per row expected; use XGBClassifier for multi-class objectives",
                ));
            }
            Array1::from_iter(values.iter().map(|&v| f64::from(v))).into_dyn()
        }
        Prediction::Proba(k) => proba(*k)?.into_dyn(),
        Prediction::Class(labels) => {
            let p = proba(labels.len())?;
            Array1::from_iter(p.rows().into_iter().map(|r| labels[argmax(r)])).into_dyn()
        }
    })
}
