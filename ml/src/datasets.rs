//! Loading `(X, y)` from `.npy` and CSV files, and seeded synthetic data sets.

use std::path::Path;

use ndarray::{Array1, Array2, Axis};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::error::MlError;

fn data_err(path: &Path, message: impl Into<String>) -> MlError {
    MlError::Data { path: path.display().to_string(), message: message.into() }
}

/// The folder of one of the peers' data sets (`../shared/peers/gen_data.py`),
/// if generated: looked up in `$PEERS_DATA`, `$PEERS_HOME/data`, then
/// `~/.cache/rask-peers/data`.
pub fn peers_dataset(name: &str) -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    let mut roots = Vec::new();
    if let Some(d) = std::env::var_os("PEERS_DATA") {
        roots.push(PathBuf::from(d));
    }
    if let Some(h) = std::env::var_os("PEERS_HOME") {
        roots.push(PathBuf::from(h).join("data"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        roots.push(PathBuf::from(h).join(".cache/rask-peers/data"));
    }
    roots.into_iter().map(|d| d.join(name)).find(|d| d.is_dir())
}

/// An array read from a `.npy` file: its shape and values as f64, row-major.
pub use rask_core::npy::F64Array as NpyArray;

/// Reads a `.npy` file (format 1.0–3.0; bool, integer or float dtypes in
/// either byte order; C or Fortran order), converting to f64 in C order.
pub fn read_npy(path: impl AsRef<Path>) -> Result<NpyArray, MlError> {
    let path = path.as_ref();
    rask_core::npy::read_f64(path).map_err(|e| data_err(path, e.to_string()))
}

/// Parses the bytes of a `.npy` file (see [`read_npy`]).
pub fn parse_npy(bytes: &[u8]) -> Result<NpyArray, String> {
    rask_core::npy::decode_f64(bytes).map_err(|e| e.to_string())
}

/// Loads `X` (2-d) and `y` (1-d) from two `.npy` files.
pub fn load_npy_xy(
    x_path: impl AsRef<Path>,
    y_path: impl AsRef<Path>,
) -> Result<(Array2<f64>, Array1<f64>), MlError> {
    let (xp, yp) = (x_path.as_ref(), y_path.as_ref());
    let x = read_npy(xp)?;
    if x.shape.len() != 2 {
        return Err(data_err(xp, format!("X must be 2-dimensional, got shape {:?}", x.shape)));
    }
    let y = read_npy(yp)?;
    if y.shape.len() != 1 {
        return Err(data_err(yp, format!("y must be 1-dimensional, got shape {:?}", y.shape)));
    }
    if y.shape[0] != x.shape[0] {
        return Err(data_err(
            yp,
            format!("y has {} rows but X ({}) has {}", y.shape[0], xp.display(), x.shape[0]),
        ));
    }
    let x = Array2::from_shape_vec((x.shape[0], x.shape[1]), x.data).expect("shape checked");
    Ok((x, Array1::from(y.data)))
}

/// Features, targets and feature names read from a CSV file.
pub type CsvData = (Array2<f64>, Array1<f64>, Vec<String>);

/// Loads a CSV file with a header line: every column but `target` becomes a
/// feature. Returns `(X, y, feature names)`. Values must parse as numbers.
pub fn load_csv_xy(path: impl AsRef<Path>, target: &str) -> Result<CsvData, MlError> {
    let path = path.as_ref();
    let text =
        std::fs::read_to_string(path).map_err(|e| data_err(path, format!("cannot read: {e}")))?;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let (_, header) =
        lines.next().ok_or_else(|| data_err(path, "empty file: expected a header line"))?;
    let names: Vec<String> =
        header.split(',').map(|s| s.trim().trim_matches('"').to_string()).collect();
    let t = names.iter().position(|n| n == target).ok_or_else(|| {
        data_err(path, format!("no column named {target:?}; columns are {}", names.join(", ")))
    })?;
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    let mut rows = 0;
    for (ln, line) in lines {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != names.len() {
            return Err(data_err(
                path,
                format!("line {}: {} fields, the header has {}", ln + 1, fields.len(), names.len()),
            ));
        }
        for (j, f) in fields.iter().enumerate() {
            let v: f64 = f.trim().parse().map_err(|_| {
                data_err(
                    path,
                    format!(
                        "line {}, column {:?}: {:?} is not a number",
                        ln + 1,
                        names[j],
                        f.trim()
                    ),
                )
            })?;
            if j == t {
                ys.push(v);
            } else {
                xs.push(v);
            }
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(data_err(path, "no data rows after the header"));
    }
    let mut feature_names = names;
    feature_names.remove(t);
    let x =
        Array2::from_shape_vec((rows, feature_names.len()), xs).expect("rows have equal length");
    Ok((x, Array1::from(ys), feature_names))
}

fn normal(rng: &mut impl Rng) -> f64 {
    // Box–Muller.
    let u1: f64 = rng.gen::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// A seeded classification problem in the spirit of scikit-learn's
/// `make_classification`: `n_informative` features carry Gaussian clusters
/// (one per class, centres on hypercube vertices two units apart), the other
/// features are noise, and 1% of labels are flipped. Not bit-identical to
/// scikit-learn's generator.
pub fn make_classification(
    n_samples: usize,
    n_features: usize,
    n_informative: usize,
    n_classes: usize,
    seed: u64,
) -> (Array2<f64>, Array1<f64>) {
    let n_informative = n_informative.clamp(1, n_features.max(1));
    let n_classes = n_classes.max(2);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let centres: Vec<Vec<f64>> = (0..n_classes)
        .map(|_| (0..n_informative).map(|_| if rng.gen::<bool>() { 1.0 } else { -1.0 }).collect())
        .collect();
    let mut x = Array2::zeros((n_samples, n_features));
    let mut y = Array1::zeros(n_samples);
    for i in 0..n_samples {
        let c = i % n_classes;
        for j in 0..n_features {
            x[[i, j]] = normal(&mut rng) + if j < n_informative { centres[c][j] } else { 0.0 };
        }
        y[i] = if rng.gen::<f64>() < 0.01 { rng.gen_range(0..n_classes) as f64 } else { c as f64 };
    }
    // Shuffle the rows so that classes are not in blocks.
    let mut order: Vec<usize> = (0..n_samples).collect();
    for i in (1..n_samples).rev() {
        order.swap(i, rng.gen_range(0..=i));
    }
    (x.select(Axis(0), &order), y.select(Axis(0), &order))
}

/// A seeded linear regression problem: `y = X·w + noise·ε` with `w` drawn
/// uniformly in [0, 100) on the first `n_informative` features (zero elsewhere).
pub fn make_regression(
    n_samples: usize,
    n_features: usize,
    n_informative: usize,
    noise: f64,
    seed: u64,
) -> (Array2<f64>, Array1<f64>, Array1<f64>) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let x = Array2::from_shape_simple_fn((n_samples, n_features), || normal(&mut rng));
    let w: Array1<f64> = (0..n_features)
        .map(|j| if j < n_informative { 100.0 * rng.gen::<f64>() } else { 0.0 })
        .collect();
    let y = x.dot(&w) + Array1::from_shape_simple_fn(n_samples, || noise * normal(&mut rng));
    (x, y, w)
}
