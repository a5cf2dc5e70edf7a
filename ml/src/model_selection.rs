//! Cross-validation splitters and `cross_val_score`.
//!
//! Splits are index-identical to scikit-learn's for the same settings, shuffled
//! ones included: shuffling uses NumPy's legacy `RandomState` (MT19937 seeded
//! with `init_genrand`, Fisher–Yates with masked rejection sampling), which is
//! what scikit-learn's `random_state=<int>` means.

use ndarray::{ArrayView1, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::error::MlError;
use crate::estimator::Estimator;

/// NumPy's legacy `RandomState` generator (MT19937), for scikit-learn-identical shuffles.
#[derive(Clone)]
pub struct NumpyRandomState {
    mt: [u32; 624],
    pos: usize,
}

impl NumpyRandomState {
    /// `np.random.RandomState(seed)`.
    pub fn new(seed: u32) -> Self {
        let mut mt = [0u32; 624];
        mt[0] = seed;
        for i in 1..624 {
            mt[i] =
                1_812_433_253u32.wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_add(i as u32);
        }
        NumpyRandomState { mt, pos: 624 }
    }

    fn twist(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        for i in 0..624 {
            let y = (self.mt[i] & UPPER) | (self.mt[(i + 1) % 624] & LOWER);
            let mut v = self.mt[(i + 397) % 624] ^ (y >> 1);
            if y & 1 == 1 {
                v ^= 0x9908_b0df;
            }
            self.mt[i] = v;
        }
        self.pos = 0;
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        if self.pos >= 624 {
            self.twist();
        }
        let mut y = self.mt[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// A uniform integer in `0..=max` (NumPy's `random_interval`).
    fn interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mut mask = max;
        for s in [1, 2, 4, 8, 16, 32] {
            mask |= mask >> s;
        }
        if max <= u32::MAX as u64 {
            loop {
                let v = (self.next_u32() as u64) & mask;
                if v <= max {
                    return v;
                }
            }
        }
        loop {
            let v = (((self.next_u32() as u64) << 32) | self.next_u32() as u64) & mask;
            if v <= max {
                return v;
            }
        }
    }

    /// `RandomState.shuffle` of a 1-d array.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.interval(i as u64) as usize;
            v.swap(i, j);
        }
    }

    /// `RandomState.permutation(n)`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        self.shuffle(&mut v);
        v
    }
}

/// One split: (train indices, test indices).
pub type Split = (Vec<usize>, Vec<usize>);

/// A cross-validation strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Splitter {
    /// K consecutive folds, optionally shuffled first.
    KFold {
        /// Number of folds (≥ 2).
        n_splits: usize,
        /// Shuffle before splitting.
        shuffle: bool,
        /// Seed of the shuffle (scikit-learn's `random_state`).
        random_state: Option<u32>,
    },
    /// K folds preserving class proportions.
    StratifiedKFold {
        /// Number of folds (≥ 2).
        n_splits: usize,
        /// Shuffle within classes.
        shuffle: bool,
        /// Seed of the shuffle.
        random_state: Option<u32>,
    },
    /// Independent random train/test splits.
    ShuffleSplit {
        /// Number of splits.
        n_splits: usize,
        /// Test fraction (0, 1).
        test_size: f64,
        /// Train fraction; `None` = the rest.
        train_size: Option<f64>,
        /// Seed.
        random_state: Option<u32>,
    },
}

impl Splitter {
    /// `KFold(n_splits)` without shuffling.
    pub fn kfold(n_splits: usize) -> Self {
        Splitter::KFold { n_splits, shuffle: false, random_state: None }
    }

    /// `StratifiedKFold(n_splits)` without shuffling.
    pub fn stratified(n_splits: usize) -> Self {
        Splitter::StratifiedKFold { n_splits, shuffle: false, random_state: None }
    }

    /// scikit-learn's meaning of `cv=<int>`: stratified folds for classifiers, plain folds otherwise.
    pub fn default_for(n_splits: usize, classifier: bool) -> Self {
        if classifier {
            Self::stratified(n_splits)
        } else {
            Self::kfold(n_splits)
        }
    }

    /// Name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Splitter::KFold { .. } => "KFold",
            Splitter::StratifiedKFold { .. } => "StratifiedKFold",
            Splitter::ShuffleSplit { .. } => "ShuffleSplit",
        }
    }

    /// Number of splits it yields.
    pub fn n_splits(&self) -> usize {
        match self {
            Splitter::KFold { n_splits, .. }
            | Splitter::StratifiedKFold { n_splits, .. }
            | Splitter::ShuffleSplit { n_splits, .. } => *n_splits,
        }
    }

    fn err(&self, message: String) -> MlError {
        MlError::Split { splitter: self.name().into(), message }
    }

    fn rng(&self, random_state: Option<u32>) -> NumpyRandomState {
        // Without a seed scikit-learn draws one from the OS; so do we.
        NumpyRandomState::new(
            random_state.unwrap_or_else(|| rask_core::key::unique_token().0 as u32),
        )
    }

    /// The (train, test) index pairs for `n_samples` samples (`y` is needed by stratified splits).
    pub fn split(
        &self,
        n_samples: usize,
        y: Option<ArrayView1<'_, f64>>,
    ) -> Result<Vec<Split>, MlError> {
        match *self {
            Splitter::KFold { n_splits, shuffle, random_state } => {
                self.check_k(n_splits, n_samples)?;
                let mut idx: Vec<usize> = (0..n_samples).collect();
                if shuffle {
                    self.rng(random_state).shuffle(&mut idx);
                }
                let mut fold = vec![0usize; n_samples];
                let mut start = 0;
                for k in 0..n_splits {
                    let size = n_samples / n_splits + usize::from(k < n_samples % n_splits);
                    for &i in &idx[start..start + size] {
                        fold[i] = k;
                    }
                    start += size;
                }
                Ok(masks_to_splits(&fold, n_splits))
            }
            Splitter::StratifiedKFold { n_splits, shuffle, random_state } => {
                self.check_k(n_splits, n_samples)?;
                let y = y.ok_or_else(|| self.err("needs y (class labels) to stratify".into()))?;
                if y.len() != n_samples {
                    return Err(
                        self.err(format!("y has {} labels for {n_samples} samples", y.len()))
                    );
                }
                // Classes numbered by order of first appearance, as scikit-learn does.
                let mut first: Vec<f64> = Vec::new();
                let enc: Vec<usize> = y
                    .iter()
                    .map(|v| match first.iter().position(|c| c == v) {
                        Some(i) => i,
                        None => {
                            first.push(*v);
                            first.len() - 1
                        }
                    })
                    .collect();
                let n_classes = first.len();
                let mut counts = vec![0usize; n_classes];
                enc.iter().for_each(|&c| counts[c] += 1);
                if counts.iter().all(|&c| n_splits > c) {
                    return Err(self.err(format!(
                        "n_splits={n_splits} cannot be greater than the number of members in each class (largest class has {})",
                        counts.iter().max().unwrap_or(&0)
                    )));
                }
                let mut order = enc.clone();
                order.sort_unstable();
                // allocation[f][k]: samples of class k in test fold f (round robin over sorted labels).
                let mut allocation = vec![vec![0usize; n_classes]; n_splits];
                for (i, &c) in order.iter().enumerate() {
                    allocation[i % n_splits][c] += 1;
                }
                let mut rng = shuffle.then(|| self.rng(random_state));
                let mut fold = vec![0usize; n_samples];
                // `k` is a class label, matched against `enc` below, not just an index.
                #[allow(clippy::needless_range_loop)]
                for k in 0..n_classes {
                    let mut folds_for_class: Vec<usize> = (0..n_splits)
                        .flat_map(|f| std::iter::repeat_n(f, allocation[f][k]))
                        .collect();
                    if let Some(rng) = rng.as_mut() {
                        rng.shuffle(&mut folds_for_class);
                    }
                    let mut it = folds_for_class.into_iter();
                    for (i, &c) in enc.iter().enumerate() {
                        if c == k {
                            fold[i] = it.next().expect("allocation covers the class");
                        }
                    }
                }
                Ok(masks_to_splits(&fold, n_splits))
            }
            Splitter::ShuffleSplit { n_splits, test_size, train_size, random_state } => {
                if !(test_size > 0.0 && test_size < 1.0) {
                    return Err(self.err(format!("test_size={test_size} must be in (0, 1)")));
                }
                let n_test = (test_size * n_samples as f64).ceil() as usize;
                let n_train = match train_size {
                    Some(t) => (t * n_samples as f64).floor() as usize,
                    None => n_samples - n_test,
                };
                if n_train == 0 || n_train + n_test > n_samples {
                    return Err(self.err(format!(
                        "with {n_samples} samples, test_size={test_size} and train_size={train_size:?} give {n_train} train and {n_test} test samples"
                    )));
                }
                let mut rng = self.rng(random_state);
                Ok((0..n_splits)
                    .map(|_| {
                        let p = rng.permutation(n_samples);
                        (p[n_test..n_test + n_train].to_vec(), p[..n_test].to_vec())
                    })
                    .collect())
            }
        }
    }

    fn check_k(&self, n_splits: usize, n_samples: usize) -> Result<(), MlError> {
        if n_splits < 2 {
            return Err(self.err(format!("n_splits={n_splits}: at least 2 folds are needed")));
        }
        if n_splits > n_samples {
            return Err(self
                .err(format!("cannot split {n_samples} samples into n_splits={n_splits} folds")));
        }
        Ok(())
    }
}

fn masks_to_splits(fold: &[usize], n_splits: usize) -> Vec<Split> {
    (0..n_splits)
        .map(|k| {
            let (test, train): (Vec<usize>, Vec<usize>) =
                (0..fold.len()).partition(|&i| fold[i] == k);
            (train, test)
        })
        .collect()
}

/// Fits a fresh copy of `est` on each training split and scores it on the test
/// split with the named scorer.
pub fn cross_val_score(
    est: &dyn Estimator,
    x: ArrayView2<'_, f64>,
    y: ArrayView1<'_, f64>,
    cv: &Splitter,
    scoring: &str,
) -> Result<Vec<f64>, MlError> {
    crate::metrics::check_scorer(scoring)?;
    cv.split(x.nrows(), Some(y))?
        .into_iter()
        .map(|(train, test)| {
            let mut m = est.clone_unfitted();
            let (xt, yt) = (x.select(Axis(0), &train), y.select(Axis(0), &train));
            m.fit(xt.view(), Some(yt.view()))?;
            let (xs, ys) = (x.select(Axis(0), &test), y.select(Axis(0), &test));
            crate::metrics::score(scoring, m.as_ref(), xs.view(), ys.view())
        })
        .collect()
}
