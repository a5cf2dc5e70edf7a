//! The model the native trainer trains, a burn MLP with autodiff (on the
//! ndarray backend, or on libtorch with the `tch` feature), and what
//! data-parallel training needs of it: the
//! gradients as one flat buffer in parameter order (what the ring
//! all-reduces) and back, and the model as bytes (the start and checkpoints).

use burn::backend::Autodiff;
use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::{Linear, Relu};
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// The backend that computes: ndarray, `f32`, one thread.
#[cfg(not(feature = "tch"))]
pub type Inner = burn::backend::NdArray<f32>;
/// The backend that computes: libtorch (tch), `f32`, on the CPU, with
/// libtorch's own intra-op threads (all cores unless `OMP_NUM_THREADS`
/// says otherwise: members sharing a machine compete for them).
#[cfg(feature = "tch")]
pub type Inner = burn::backend::LibTorch<f32>;
/// The backend and its threads, for benchmark records.
pub const BACKEND: &str = if cfg!(feature = "tch") {
    "libtorch via tch (f32, libtorch's intra-op threads)"
} else {
    "ndarray (f32, one thread per process)"
};
/// The backend that trains (with autodiff).
pub type Ad = Autodiff<Inner>;

/// A multilayer perceptron: `inputs → hidden… → outputs`, ReLU between
/// layers, trained on the mean squared error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    /// Features per row.
    pub inputs: usize,
    /// Widths of the hidden layers.
    pub hidden: Vec<usize>,
    /// Targets per row.
    pub outputs: usize,
}

/// The burn module of an [`MlpConfig`].
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    layers: Vec<Linear<B>>,
    act: Relu,
}

impl MlpConfig {
    /// An MLP with these layer widths.
    pub fn new(inputs: usize, hidden: &[usize], outputs: usize) -> MlpConfig {
        MlpConfig { inputs, hidden: hidden.to_vec(), outputs }
    }

    /// Every width must be at least 1.
    pub fn validate(&self) -> Result<(), String> {
        if self.inputs == 0 || self.outputs == 0 || self.hidden.contains(&0) {
            return Err(format!(
                "MlpConfig {{ inputs: {}, hidden: {:?}, outputs: {} }}: every layer needs at least one unit",
                self.inputs, self.hidden, self.outputs
            ));
        }
        Ok(())
    }

    fn widths(&self) -> Vec<usize> {
        let mut w = vec![self.inputs];
        w.extend(&self.hidden);
        w.push(self.outputs);
        w
    }

    /// A freshly initialized model drawn from `seed`: weights and biases
    /// uniform in `±1/sqrt(fan_in)` (burn's and PyTorch's default for
    /// linear layers), from this crate's own generator, so the model does
    /// not depend on burn's global random state (which other threads share).
    pub fn init<B: Backend>(&self, seed: u64) -> Mlp<B> {
        let device = B::Device::default();
        let w = self.widths();
        let layers = w
            .windows(2)
            .enumerate()
            .map(|(i, p)| {
                let k = 1.0 / (p[0] as f32).sqrt();
                let mut draw = uniform(seed, i as u64, k);
                let weight: Vec<f32> = (0..p[0] * p[1]).map(|_| draw()).collect();
                let bias: Vec<f32> = (0..p[1]).map(|_| draw()).collect();
                Linear {
                    weight: Param::from_data(TensorData::new(weight, [p[0], p[1]]), &device),
                    bias: Some(Param::from_data(TensorData::new(bias, [p[1]]), &device)),
                }
            })
            .collect();
        Mlp { layers, act: Relu::new() }
    }

    /// Parameters of the model.
    pub fn num_params(&self) -> usize {
        self.widths().windows(2).map(|p| p[0] * p[1] + p[1]).sum()
    }

    /// The model saved by [`to_bytes`].
    pub fn from_bytes<B: Backend>(&self, bytes: &[u8]) -> Result<Mlp<B>, String> {
        let record = BinBytesRecorder::<FullPrecisionSettings>::default()
            .load::<MlpRecord<B>>(bytes.to_vec(), &B::Device::default())
            .map_err(|e| format!("cannot read the model ({} bytes): {e}", bytes.len()))?;
        let model = self.init::<B>(0).load_record(record);
        if model.num_params() != self.num_params() {
            return Err(format!(
                "the saved model has {} parameters, {self:?} has {}",
                model.num_params(),
                self.num_params()
            ));
        }
        Ok(model)
    }
}

/// Uniform numbers in `±k` (SplitMix64 from `seed` and `stream`).
fn uniform(seed: u64, stream: u64, k: f32) -> impl FnMut() -> f32 {
    let mut state = seed ^ stream.wrapping_mul(0xA24B_AED4_963E_E407) ^ 0x5851_F42D_4C95_7F2D;
    move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let unit = (z >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
        (2.0 * unit - 1.0) * k
    }
}

/// The model as bytes (burn's binary record, full precision).
pub fn to_bytes<B: Backend>(model: &Mlp<B>) -> Result<Vec<u8>, String> {
    BinBytesRecorder::<FullPrecisionSettings>::default()
        .record(model.clone().into_record(), ())
        .map_err(|e| format!("cannot save the model: {e}"))
}

impl<B: Backend> Mlp<B> {
    /// Outputs of rows `x` (n × inputs).
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let last = self.layers.len() - 1;
        let mut h = x;
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(h);
            if i < last {
                h = self.act.forward(h);
            }
        }
        h
    }
}

/// Rows as a tensor: `values` row-major, `n` rows.
pub fn rows<B: Backend>(values: Vec<f32>, n: usize) -> Tensor<B, 2> {
    let width = values.len().checked_div(n).unwrap_or(0);
    Tensor::from_data(TensorData::new(values, [n, width]), &B::Device::default())
}

/// The gradient of the squared error summed over rows `x`, `y` and divided
/// by `denominator`, flattened in parameter order, with that loss. No rows:
/// zeros (a member whose shard has none of this step's rows).
pub fn gradient(
    model: &Mlp<Ad>,
    x: Vec<f32>,
    y: Vec<f32>,
    n: usize,
    denominator: f32,
    out: &mut Vec<f32>,
) -> f32 {
    out.clear();
    if n == 0 {
        out.resize(model.num_params(), 0.0);
        return 0.0;
    }
    let (x, y) = (rows::<Ad>(x, n), rows::<Ad>(y, n));
    let loss = (model.forward(x) - y).powi_scalar(2).sum().div_scalar(denominator);
    let value: f32 = loss.clone().into_scalar();
    let grads = GradientsParams::from_grads(loss.backward(), model);
    let mut flatten = Flatten { grads: &grads, out };
    model.visit(&mut flatten);
    value
}

/// One SGD step with the flat gradient `flat` (all ranks' sum).
pub fn step(
    model: Mlp<Ad>,
    optim: &mut impl Optimizer<Mlp<Ad>, Ad>,
    learning_rate: f64,
    flat: &[f32],
) -> Mlp<Ad> {
    let mut grads = GradientsParams::new();
    let mut unflatten = Unflatten { grads: &mut grads, src: flat, at: 0 };
    model.visit(&mut unflatten);
    optim.step(learning_rate, model, grads)
}

/// Plain SGD (no state: a checkpoint is the model alone).
pub fn sgd() -> impl Optimizer<Mlp<Ad>, Ad> {
    SgdConfig::new().init::<Ad, Mlp<Ad>>()
}

/// Collects each float parameter's gradient (zeros where it has none).
struct Flatten<'a> {
    grads: &'a GradientsParams,
    out: &'a mut Vec<f32>,
}

impl ModuleVisitor<Ad> for Flatten<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<Ad, D>>) {
        match self.grads.get::<<Ad as AutodiffBackend>::InnerBackend, D>(p.id) {
            Some(g) => self.out.extend(g.into_data().iter::<f32>()),
            None => self.out.extend(std::iter::repeat_n(0.0, p.val().shape().num_elements())),
        }
    }
}

/// Registers slices of a flat buffer as the parameters' gradients.
struct Unflatten<'a> {
    grads: &'a mut GradientsParams,
    src: &'a [f32],
    at: usize,
}

impl ModuleVisitor<Ad> for Unflatten<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<Ad, D>>) {
        let shape = p.val().shape();
        let n = shape.num_elements();
        let data = TensorData::new(self.src[self.at..self.at + n].to_vec(), shape);
        self.at += n;
        let t = Tensor::<Inner, D>::from_data(data, &Default::default());
        self.grads.register::<Inner, D>(p.id, t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_gradients_round_trip_and_bytes_restore_the_model() {
        let config = MlpConfig::new(3, &[5], 2);
        assert_eq!(config.num_params(), 3 * 5 + 5 + 5 * 2 + 2);
        let model: Mlp<Ad> = config.init(7);
        assert_eq!(model.num_params(), config.num_params());
        let x: Vec<f32> = (0..12).map(|i| i as f32 / 10.0).collect();
        let y: Vec<f32> = (0..8).map(|i| (i % 3) as f32).collect();
        let mut g = Vec::new();
        let loss = gradient(&model, x.clone(), y.clone(), 4, 4.0, &mut g);
        assert_eq!(g.len(), config.num_params());
        assert!(loss > 0.0 && g.iter().any(|v| *v != 0.0));
        // A step lowers the loss on the same rows.
        let mut optim = sgd();
        let bytes = to_bytes(&model).unwrap();
        let stepped = step(model, &mut optim, 0.05, &g);
        let mut g2 = Vec::new();
        assert!(gradient(&stepped, x.clone(), y.clone(), 4, 4.0, &mut g2) < loss);
        // The saved model gives the same gradient bits.
        let back: Mlp<Ad> = config.from_bytes(&bytes).unwrap();
        let mut g3 = Vec::new();
        assert_eq!(gradient(&back, x, y, 4, 4.0, &mut g3), loss);
        assert_eq!(g3, g);
        // No rows: zeros of the right length.
        let mut z = Vec::new();
        assert_eq!(gradient(&back, Vec::new(), Vec::new(), 0, 1.0, &mut z), 0.0);
        assert!(z.len() == g.len() && z.iter().all(|v| *v == 0.0));
        // Another shape is refused with both counts.
        let err = MlpConfig::new(3, &[6], 2).from_bytes::<Ad>(&bytes).unwrap_err();
        assert!(err.contains("parameters"), "{err}");
        assert!(MlpConfig::new(3, &[0], 2).validate().is_err());
    }
}
