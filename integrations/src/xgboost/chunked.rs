//! Models as files, and predictions over chunked arrays: one task per row
//! block, run where the block is (on a cluster, on the worker holding it),
//! the model shipped once per graph as one shared value. No tracker: each
//! task loads the booster and predicts its rows.

use std::path::Path;

use ndarray::{ArrayD, ArrayView2, Ix2, IxDyn};
use rask_core::array::{Array, Block, BlockData, ChunkSpec};
use rask_core::Delayed;
use serde::{Deserialize, Serialize};

use super::estimators::FittedXgb;
use super::ffi::Booster;
use super::XgbError;

/// What a prediction block holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Output {
    /// XGBoost's value per row (regression).
    Value,
    /// Class probabilities, `rows × K`.
    Proba(usize),
    /// The most probable class's label (of these sorted labels).
    Class(Vec<f64>),
}

fn view2(b: &Block) -> Result<ArrayView2<'_, f64>, String> {
    match b.data() {
        BlockData::F64(a) => {
            a.view().into_dimensionality::<Ix2>().map_err(|e| format!("X block: {e}"))
        }
        other => Err(format!("X block holds {} data, float64 expected", other.dtype())),
    }
}

/// Predictions of rows `x` by `model` (XGBoost UBJSON or JSON).
fn predict_rows(
    x: ArrayView2<'_, f64>,
    model: &[u8],
    output: &Output,
) -> Result<ArrayD<f64>, XgbError> {
    let fitted = FittedXgb { model: model.to_vec(), classes: None, n_features: x.ncols() };
    let (values, shape) = fitted.raw_predict(x)?;
    let n = x.nrows();
    let proba = |k: usize| -> Vec<f64> {
        if shape.len() == 2 {
            values.iter().map(|&v| f64::from(v)).collect()
        } else {
            // Binary: P(class 1) per row.
            values.iter().flat_map(|&p| [1.0 - f64::from(p), f64::from(p)]).take(n * k).collect()
        }
    };
    Ok(match output {
        Output::Value => {
            ArrayD::from_shape_vec(IxDyn(&[n]), values.iter().map(|&v| f64::from(v)).collect())
                .expect("one value per row")
        }
        Output::Proba(k) => {
            ArrayD::from_shape_vec(IxDyn(&[n, *k]), proba(*k)).map_err(|_| XgbError::Param {
                name: "objective".into(),
                message: format!("gives {shape:?} outputs for {k} classes"),
            })?
        }
        Output::Class(labels) => {
            let k = labels.len();
            let p = proba(k);
            if p.len() != n * k {
                return Err(XgbError::Param {
                    name: "objective".into(),
                    message: format!("gives {shape:?} outputs for {k} classes"),
                });
            }
            let best = p.chunks_exact(k).map(|r| {
                labels[r.iter().enumerate().fold(0, |m, (i, v)| if *v > r[m] { i } else { m })]
            });
            ArrayD::from_shape_vec(IxDyn(&[n]), best.collect()).expect("one label per row")
        }
    })
}

rask_core::op! {
    /// XGBoost predictions of one row block of X.
    pub fn xgb_predict_block(x: Block, model: Vec<u8>, output: Output) -> Result<Block, String> {
        let out = predict_rows(view2(&x)?, &model, &output).map_err(|e| e.to_string())?;
        Ok(Block::from_array(out))
    }
}

impl FittedXgb {
    /// Writes the model to `path` in XGBoost's format for its extension:
    /// `.json` (JSON) or `.ubj` (Universal Binary JSON).
    pub fn save_model(&self, path: &Path) -> Result<(), XgbError> {
        let bytes = match format_of(path)? {
            "json" => self.to_json()?,
            _ => self.model.clone(),
        };
        std::fs::write(path, bytes)
            .map_err(|e| XgbError::Io { path: path.display().to_string(), message: e.to_string() })
    }

    /// Reads a model that XGBoost (Rask's or Python's) saved as `.json` or
    /// `.ubj`; `classes` are the class labels of a classifier.
    pub fn load_model(path: &Path, classes: Option<Vec<f64>>) -> Result<FittedXgb, XgbError> {
        format_of(path)?;
        let io = |e: std::io::Error| XgbError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let booster = Booster::load(&std::fs::read(path).map_err(io)?)?;
        Ok(FittedXgb { model: booster.save("ubj")?, classes, n_features: booster.num_features()? })
    }

    /// Predictions for chunked `x`, block by block where the blocks are:
    /// a chunked array with `x`'s row chunks (class labels for a classifier).
    pub fn predict_chunked(&self, x: &Array<f64>) -> Result<Array<f64>, XgbError> {
        let output = match &self.classes {
            Some(c) => Output::Class(c.clone()),
            None => Output::Value,
        };
        self.map_rows(x, output)
    }

    /// Class probabilities for chunked `x`: `rows × K`.
    pub fn predict_proba_chunked(&self, x: &Array<f64>) -> Result<Array<f64>, XgbError> {
        let k = self.classes.as_ref().map(Vec::len).ok_or_else(|| XgbError::Param {
            name: "predict_proba".into(),
            message: "a regression model has no class probabilities".into(),
        })?;
        self.map_rows(x, Output::Proba(k))
    }

    fn map_rows(&self, x: &Array<f64>, output: Output) -> Result<Array<f64>, XgbError> {
        let p = self.n_features;
        let shape_err = |message: String| XgbError::Param { name: "X".into(), message };
        if x.ndim() != 2 || x.shape()[1] != p {
            return Err(shape_err(format!(
                "shape {:?}, but the model has {p} features",
                x.shape()
            )));
        }
        let rows = x.chunks()[0].clone();
        let x = x
            .rechunk(ChunkSpec::Explicit(vec![rows.clone(), vec![p]]))
            .map_err(|e| shape_err(e.to_string()))?;
        // One node holds the model; every block task refers to it.
        let model: Delayed<Vec<u8>> = rask_core::value(self.model.clone());
        let blocks: Vec<Delayed<Block>> =
            x.blocks().iter().map(|b| xgb_predict_block(b, &model, output.clone())).collect();
        let (chunks, grid) = match output {
            Output::Proba(k) => (vec![rows.clone(), vec![k]], vec![rows.len(), 1]),
            _ => (vec![rows.clone()], vec![rows.len()]),
        };
        let grid = ArrayD::from_shape_vec(IxDyn(&grid), blocks).expect("one block per row chunk");
        Ok(Array::from_blocks(format!("xgb_predict({})", x.name()), chunks, grid))
    }
}

/// `json` or `ubj`, from a model file's extension.
fn format_of(path: &Path) -> Result<&'static str, XgbError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => Ok("json"),
        Some("ubj") => Ok("ubj"),
        _ => Err(XgbError::Io {
            path: path.display().to_string(),
            message: "a model file is `.json` or `.ubj` (XGBoost's formats)".into(),
        }),
    }
}
