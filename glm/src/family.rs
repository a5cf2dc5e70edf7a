//! GLM families with their canonical links: the per-row loss of a linear
//! predictor `η = xᵀβ + b` against a target `y`, and its first two
//! derivatives in `η`, which every solver is built from.
//!
//! | family | link | loss(η, y) | d/dη | d²/dη² | y must be |
//! |---|---|---|---|---|---|
//! | `Logistic` | logit | `log(1 + e^η) − yη` | `σ(η) − y` | `σ(η)(1 − σ(η))` | 0 or 1 |
//! | `Normal` | identity | `(η − y)² / 2` | `η − y` | `1` | finite |
//! | `Poisson` | log | `e^η − yη` | `e^η − y` | `e^η` | ≥ 0 |
//!
//! | `Multinomial { classes: K }` | softmax | `log Σ_c e^{η_c} − η_y` over `K` predictors | `p_c − [c = y]` | `p_c([c = d] − p_d)` | 0, 1, …, K − 1 |
//!
//! The losses are the negative log-likelihoods up to terms that do not
//! depend on `η` (for Poisson, scikit-learn's half deviance minus
//! `y log y − y`), so every solver reaches the same optimum as scikit-learn.
//! The multinomial family has one linear predictor per class (scikit-learn's
//! full parameterization: every class's coefficients are penalized), so its
//! loss is over a vector; the row functions here are for the scalar families.

use rask_core::fastmath::sigmoid;
use serde::{Deserialize, Serialize};

/// A GLM family (distribution and canonical link).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Family {
    /// Bernoulli targets in {0, 1}, logit link.
    Logistic,
    /// Gaussian targets, identity link (least squares).
    Normal,
    /// Counts (any y ≥ 0), log link.
    Poisson,
    /// Class indices `0..classes`, softmax over one predictor per class.
    Multinomial {
        /// The number of classes (at least 2).
        classes: usize,
    },
}

/// The loss of one row and its derivatives in `η`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pointwise {
    /// The loss.
    pub loss: f64,
    /// Its first derivative in `η`.
    pub d1: f64,
    /// Its second derivative in `η` (the IRLS weight).
    pub d2: f64,
}

/// Why the row functions refuse the multinomial family (callers dispatch on
/// [`Family::is_scalar`] first).
const VECTOR: &str =
    "the multinomial loss is over a vector of predictors: callers use the softmax kernels";

/// `log(1 + e^x)` without overflow or loss of precision for large `|x|`.
fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

impl Family {
    /// The family's name as specs and errors spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Family::Logistic => "logistic",
            Family::Normal => "normal",
            Family::Poisson => "poisson",
            Family::Multinomial { .. } => "multinomial",
        }
    }

    /// Linear predictors per row: the classes for multinomial, else 1.
    pub fn n_outputs(&self) -> usize {
        match self {
            Family::Multinomial { classes } => *classes,
            _ => 1,
        }
    }

    /// Whether the loss is over one predictor per row (every family but multinomial).
    pub fn is_scalar(&self) -> bool {
        self.n_outputs() == 1
    }

    /// The loss of one row and its derivatives.
    pub fn pointwise(&self, eta: f64, y: f64) -> Pointwise {
        match self {
            Family::Logistic => {
                let p = sigmoid(eta);
                Pointwise { loss: softplus(eta) - y * eta, d1: p - y, d2: p * (1.0 - p) }
            }
            Family::Normal => {
                let r = eta - y;
                Pointwise { loss: 0.5 * r * r, d1: r, d2: 1.0 }
            }
            Family::Poisson => {
                let mu = eta.exp();
                Pointwise { loss: mu - y * eta, d1: mu - y, d2: mu }
            }
            Family::Multinomial { .. } => unreachable!("{VECTOR}"),
        }
    }

    /// The loss of one row alone (cheaper where no derivative is needed: line searches).
    pub fn loss(&self, eta: f64, y: f64) -> f64 {
        match self {
            Family::Logistic => softplus(eta) - y * eta,
            Family::Normal => 0.5 * (eta - y) * (eta - y),
            Family::Poisson => eta.exp() - y * eta,
            Family::Multinomial { .. } => unreachable!("{VECTOR}"),
        }
    }

    /// The mean of `y` given `η` (the inverse link): a probability, the
    /// value itself, or a rate.
    pub fn mean(&self, eta: f64) -> f64 {
        match self {
            Family::Logistic => sigmoid(eta),
            Family::Normal => eta,
            Family::Poisson => eta.exp(),
            Family::Multinomial { .. } => unreachable!("{VECTOR}"),
        }
    }

    /// Why `y` is not a valid target of this family, if it is not.
    pub fn check_target(&self, y: f64) -> Option<&'static str> {
        if !y.is_finite() {
            return Some("targets must be finite (no NaN or infinity)");
        }
        match self {
            Family::Logistic if y != 0.0 && y != 1.0 => {
                Some("logistic targets must be 0 or 1 (encode the two classes first)")
            }
            Family::Poisson if y < 0.0 => Some("Poisson targets are counts and must be >= 0"),
            Family::Multinomial { classes } if y.fract() != 0.0 || y < 0.0 || y >= *classes as f64 => {
                Some("multinomial targets are class indices 0, 1, ..., classes - 1 (encode the classes first)")
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The derivatives agree with central differences of the loss.
    #[test]
    fn derivatives_match_finite_differences() {
        let h = 1e-5;
        for family in [Family::Logistic, Family::Normal, Family::Poisson] {
            for &(eta, y) in &[(-3.0f64, 0.0f64), (0.0, 1.0), (0.7, 1.0), (2.5, 0.0), (1.2, 3.0)] {
                let y = if family == Family::Logistic { y.min(1.0) } else { y };
                let p = family.pointwise(eta, y);
                let d1 = (family.loss(eta + h, y) - family.loss(eta - h, y)) / (2.0 * h);
                let d2 =
                    (family.pointwise(eta + h, y).d1 - family.pointwise(eta - h, y).d1) / (2.0 * h);
                assert!((p.d1 - d1).abs() < 1e-6, "{family:?} d1 at {eta}: {} vs {d1}", p.d1);
                assert!((p.d2 - d2).abs() < 1e-6, "{family:?} d2 at {eta}: {} vs {d2}", p.d2);
                assert_eq!(p.loss, family.loss(eta, y));
            }
        }
    }

    #[test]
    fn logistic_loss_is_stable_for_large_margins() {
        let f = Family::Logistic;
        assert_eq!(f.loss(800.0, 1.0), 0.0);
        assert!((f.loss(-800.0, 1.0) - 800.0).abs() < 1e-9);
        assert!((f.loss(40.0, 0.0) - 40.0).abs() < 1e-12);
        assert!(f.pointwise(-800.0, 0.0).d2 >= 0.0);
        assert!((f.mean(0.0) - 0.5).abs() < 1e-15);
    }

    #[test]
    fn targets_are_checked_per_family() {
        assert!(Family::Logistic.check_target(2.0).is_some());
        assert!(Family::Logistic.check_target(1.0).is_none());
        assert!(Family::Poisson.check_target(-1.0).is_some());
        assert!(Family::Poisson.check_target(0.0).is_none());
        assert!(Family::Normal.check_target(f64::NAN).is_some());
        assert!(Family::Normal.check_target(-7.5).is_none());
    }
}
