//! scikit-learn's and glum's parameters, mapped onto the one objective that
//! every solver minimizes:
//!
//! `f(β, b) = (1/W) Σᵢ wᵢ loss(xᵢᵀβ + b, yᵢ) + λ (ρ‖β‖₁ + (1 − ρ)/2 ‖β‖²)`,
//! with `W = Σᵢ wᵢ` (the row count without weights) and `loss` of
//! [`Family`](crate::Family). Dividing a peer's objective by a positive
//! constant does not move its optimum, so each maps to a [`Penalty`]:
//!
//! | model | its objective | λ | ρ |
//! |---|---|---|---|
//! | scikit-learn `LogisticRegression(C, l1_ratio)` | `C Σ wᵢ loss + ρ‖β‖₁ + (1 − ρ)/2 ‖β‖²` | `1 / (C W)` | `l1_ratio` |
//! | scikit-learn `LinearRegression` | `Σ wᵢ (yᵢ − ηᵢ)²` | 0 | — |
//! | scikit-learn `Ridge(alpha)` | `Σ wᵢ (yᵢ − ηᵢ)² + α‖β‖²` (a sum, no ½) | `α / W` | 0 |
//! | scikit-learn `Lasso(alpha)`, `ElasticNet(alpha, l1_ratio)` | `(1/2W) Σ wᵢ (yᵢ − ηᵢ)² + αρ‖β‖₁ + α(1 − ρ)/2 ‖β‖²` | `α` | `l1_ratio` (1 for Lasso) |
//! | scikit-learn `PoissonRegressor(alpha)` | `(1/2W) Σ wᵢ deviance + α/2 ‖β‖²` | `α` | 0 |
//! | glum `GeneralizedLinearRegressor(alpha, l1_ratio)` | `(1/2W) Σ wᵢ deviance + αρ‖β‖₁ + α(1 − ρ)/2 ‖β‖²` | `α` | `l1_ratio` |
//!
//! (Half the deviance is the family's loss up to terms free of β, so the
//! deviance forms are the same objective.) The intercept is never penalized.

use crate::penalty::{Penalty, PenaltyError};

/// A model's regularization as its library spells it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Parameterization {
    /// scikit-learn `LogisticRegression(C, l1_ratio)`; `C = ∞` is no penalty.
    SklearnLogistic {
        /// Inverse strength, > 0.
        c: f64,
        /// L1 share in [0, 1].
        l1_ratio: f64,
    },
    /// scikit-learn `LinearRegression`: no penalty.
    SklearnLinear,
    /// scikit-learn `Ridge(alpha)`.
    SklearnRidge {
        /// Strength, >= 0.
        alpha: f64,
    },
    /// scikit-learn `Lasso(alpha)` (`l1_ratio` 1) or `ElasticNet(alpha, l1_ratio)`.
    SklearnElasticNet {
        /// Strength, >= 0.
        alpha: f64,
        /// L1 share in [0, 1].
        l1_ratio: f64,
    },
    /// scikit-learn `PoissonRegressor(alpha)`.
    SklearnPoisson {
        /// Strength, >= 0.
        alpha: f64,
    },
    /// glum `GeneralizedLinearRegressor(alpha, l1_ratio)`, any family.
    Glum {
        /// Strength, >= 0.
        alpha: f64,
        /// L1 share in [0, 1].
        l1_ratio: f64,
    },
}

impl Parameterization {
    /// The penalty of the common objective, for data of total weight `total_weight`.
    pub fn penalty(&self, total_weight: f64) -> Result<Penalty, PenaltyError> {
        match *self {
            Parameterization::SklearnLogistic { c, l1_ratio } => {
                if !(c > 0.0) {
                    return Err(PenaltyError::Strength { value: c });
                }
                Penalty::new(1.0 / (c * total_weight), l1_ratio)
            }
            Parameterization::SklearnLinear => Ok(Penalty::NONE),
            Parameterization::SklearnRidge { alpha } => Penalty::l2(alpha / total_weight),
            Parameterization::SklearnElasticNet { alpha, l1_ratio }
            | Parameterization::Glum { alpha, l1_ratio } => Penalty::new(alpha, l1_ratio),
            Parameterization::SklearnPoisson { alpha } => Penalty::l2(alpha),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Family;

    /// Each library's own objective is a positive multiple of the common one
    /// (plus a constant): checked at several points, the ratio of differences
    /// is the same, so the optima coincide.
    #[test]
    fn each_objective_is_a_multiple_of_the_common_one() {
        let x = [0.5, -1.0, 1.5, 0.2, -0.3, 0.8, 2.0];
        let y = [1.0, 0.0, 1.0, 1.0, 0.0, 2.0, 0.0];
        let w = [1.0, 2.0, 0.5, 1.0, 3.0, 1.0, 0.5];
        let total: f64 = w.iter().sum();
        let common = |family: Family, p: &Penalty, beta: f64| {
            let fit: f64 = (0..x.len()).map(|i| w[i] * family.loss(x[i] * beta, y[i])).sum();
            fit / total + p.value(&[beta])
        };
        let sq =
            |beta: f64| -> f64 { (0..x.len()).map(|i| w[i] * (y[i] - x[i] * beta).powi(2)).sum() };
        let yl = |i: usize| y[i].min(1.0);
        let logloss = |beta: f64| -> f64 {
            (0..x.len()).map(|i| w[i] * Family::Logistic.loss(x[i] * beta, yl(i))).sum()
        };
        let half_dev = |beta: f64| -> f64 {
            (0..x.len())
                .map(|i| {
                    let mu = (x[i] * beta).exp();
                    let ylogy = if y[i] > 0.0 { y[i] * (y[i] / mu).ln() } else { 0.0 };
                    w[i] * (ylogy - y[i] + mu)
                })
                .sum()
        };
        type Case<'a> = (Parameterization, Family, Box<dyn Fn(f64) -> f64 + 'a>);
        let cases: Vec<Case<'_>> = vec![
            (
                Parameterization::SklearnLogistic { c: 0.7, l1_ratio: 0.3 },
                Family::Logistic,
                Box::new(|b: f64| 0.7 * logloss(b) + 0.3 * b.abs() + 0.35 * b * b),
            ),
            (
                Parameterization::SklearnRidge { alpha: 2.0 },
                Family::Normal,
                Box::new(|b| sq(b) + 2.0 * b * b),
            ),
            (
                Parameterization::SklearnElasticNet { alpha: 0.4, l1_ratio: 0.6 },
                Family::Normal,
                Box::new(|b: f64| sq(b) / (2.0 * total) + 0.24 * b.abs() + 0.08 * b * b),
            ),
            (
                Parameterization::SklearnPoisson { alpha: 0.5 },
                Family::Poisson,
                Box::new(|b: f64| half_dev(b) / total + 0.25 * b * b),
            ),
        ];
        for (param, family, theirs) in cases {
            let p = param.penalty(total).unwrap();
            let ours = |b: f64| {
                if family == Family::Logistic {
                    logloss(b) / total + p.value(&[b])
                } else {
                    common(family, &p, b)
                }
            };
            let points = [-0.8, -0.1, 0.3, 1.1];
            let ratio =
                (theirs(points[1]) - theirs(points[0])) / (ours(points[1]) - ours(points[0]));
            assert!(ratio > 0.0, "{param:?}");
            for pair in points.windows(2) {
                let r = (theirs(pair[1]) - theirs(pair[0])) / (ours(pair[1]) - ours(pair[0]));
                assert!((r - ratio).abs() < 1e-9 * ratio.abs(), "{param:?}: {r} vs {ratio}");
            }
        }
    }

    #[test]
    fn invalid_parameters_are_refused() {
        let bad_c = Parameterization::SklearnLogistic { c: 0.0, l1_ratio: 0.0 };
        assert!(bad_c.penalty(10.0).is_err());
        assert!(Parameterization::Glum { alpha: 1.0, l1_ratio: 2.0 }.penalty(10.0).is_err());
        assert_eq!(Parameterization::SklearnLinear.penalty(10.0).unwrap(), Penalty::NONE);
    }
}
