//! Models as files, and predictions over chunked arrays: one task per row
//! block, run where the block is (on a cluster, on the worker holding it),
//! the model shipped once per graph as one shared value. No tracker: each
//! task loads the booster and predicts its rows.

use std::path::Path;

use ndarray::{ArrayD, ArrayView2, Ix2, IxDyn};
use rask_core::array::{Array, Block, BlockData, ChunkSpec};
use rask_core::Delayed;

use super::estimators::FittedXgb;
use super::ffi::Booster;
use super::predict::{predict, Prediction};
use super::XgbError;

fn view2(b: &Block) -> Result<ArrayView2<'_, f64>, String> {
    match b.data() {
        BlockData::F64(a) => {
            a.view().into_dimensionality::<Ix2>().map_err(|e| format!("X block: {e}"))
        }
        other => Err(format!("X block holds {} data, float64 expected", other.dtype())),
    }
}

rask_core::op! {
    /// XGBoost predictions of one row block of X.
    pub fn xgb_predict_block(x: Block, model: Vec<u8>, output: Prediction) -> Result<Block, String> {
        let out = predict(&model, view2(&x)?, &output).map_err(|e| e.to_string())?;
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
        self.map_rows(x, self.prediction(false))
    }

    /// Class probabilities for chunked `x`: `rows × K`.
    pub fn predict_proba_chunked(&self, x: &Array<f64>) -> Result<Array<f64>, XgbError> {
        if self.classes.is_none() {
            return Err(XgbError::Param {
                name: "predict_proba".into(),
                message: "a regression model has no class probabilities".into(),
            });
        }
        self.map_rows(x, self.prediction(true))
    }

    fn map_rows(&self, x: &Array<f64>, output: Prediction) -> Result<Array<f64>, XgbError> {
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
            Prediction::Proba(k) => (vec![rows.clone(), vec![k]], vec![rows.len(), 1]),
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
