//! The penalty on the coefficients (never on the intercept):
//! `P(β) = λ (ρ‖β‖₁ + (1 − ρ)/2 ‖β‖²)`, with λ ≥ 0 its strength and
//! ρ ∈ [0, 1] the L1 share (0: ridge, 1: lasso, between: elastic net).
//!
//! Solvers use its smooth part (the L2 term: value and gradient) and the
//! exact proximal operator of the whole penalty,
//! `prox_tP(v) = S(v, tλρ) / (1 + tλ(1 − ρ))` with `S` the soft threshold,
//! which is what dask-glm's elastic-net prox should have been (it returns β
//! unchanged).

use serde::{Deserialize, Serialize};

/// An elastic-net penalty; `Penalty::NONE` is no penalty.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Penalty {
    /// Strength λ ≥ 0.
    pub strength: f64,
    /// L1 share ρ ∈ [0, 1].
    pub l1_ratio: f64,
}

/// What is wrong with a penalty.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PenaltyError {
    /// λ is negative or not finite.
    #[error("penalty strength {value} is invalid: it must be a finite number >= 0")]
    Strength {
        /// The value given.
        value: f64,
    },
    /// ρ is outside [0, 1].
    #[error("l1_ratio {value} is invalid: it must be in [0, 1] (0 = L2, 1 = L1)")]
    L1Ratio {
        /// The value given.
        value: f64,
    },
}

impl Penalty {
    /// No penalty.
    pub const NONE: Penalty = Penalty { strength: 0.0, l1_ratio: 0.0 };

    /// `λ ((1 − ρ)/2 ‖β‖² + ρ‖β‖₁)`, checked.
    pub fn new(strength: f64, l1_ratio: f64) -> Result<Penalty, PenaltyError> {
        if !(strength >= 0.0) || !strength.is_finite() {
            return Err(PenaltyError::Strength { value: strength });
        }
        if !(0.0..=1.0).contains(&l1_ratio) {
            return Err(PenaltyError::L1Ratio { value: l1_ratio });
        }
        Ok(Penalty { strength, l1_ratio })
    }

    /// A pure L2 (ridge) penalty `λ/2 ‖β‖²`.
    pub fn l2(strength: f64) -> Result<Penalty, PenaltyError> {
        Penalty::new(strength, 0.0)
    }

    /// A pure L1 (lasso) penalty `λ‖β‖₁`.
    pub fn l1(strength: f64) -> Result<Penalty, PenaltyError> {
        Penalty::new(strength, 1.0)
    }

    /// The L1 coefficient `λρ`.
    pub fn l1_weight(&self) -> f64 {
        self.strength * self.l1_ratio
    }

    /// The L2 coefficient `λ(1 − ρ)`.
    pub fn l2_weight(&self) -> f64 {
        self.strength * (1.0 - self.l1_ratio)
    }

    /// Whether the penalty is smooth (no L1 part): gradient methods apply as they are.
    pub fn is_smooth(&self) -> bool {
        self.l1_weight() == 0.0
    }

    /// `P(β)`.
    pub fn value(&self, beta: &[f64]) -> f64 {
        let (l1, l2) = (self.l1_weight(), self.l2_weight());
        let (abs, sq) = beta.iter().fold((0.0, 0.0), |(a, s), b| (a + b.abs(), s + b * b));
        l1 * abs + 0.5 * l2 * sq
    }

    /// Adds the gradient of the smooth (L2) part at `beta` to `grad`.
    pub fn add_smooth_gradient(&self, beta: &[f64], grad: &mut [f64]) {
        let l2 = self.l2_weight();
        if l2 != 0.0 {
            grad.iter_mut().zip(beta).for_each(|(g, b)| *g += l2 * b);
        }
    }

    /// `prox_{tP}(v)` in place: the minimizer of `‖z − v‖²/2 + t P(z)`, exactly.
    pub fn prox(&self, v: &mut [f64], t: f64) {
        let threshold = t * self.l1_weight();
        let shrink = 1.0 / (1.0 + t * self.l2_weight());
        for x in v.iter_mut() {
            let soft = x.signum() * (x.abs() - threshold).max(0.0);
            *x = soft * shrink;
        }
    }

    /// The minimum-norm subgradient of `loss + P` at `beta`, given the
    /// loss's gradient: the stationarity measure of a penalized fit (zero at
    /// the optimum), written into `out`.
    pub fn optimality(&self, beta: &[f64], loss_grad: &[f64], out: &mut [f64]) {
        let (l1, l2) = (self.l1_weight(), self.l2_weight());
        for ((o, &b), &g) in out.iter_mut().zip(beta).zip(loss_grad) {
            let g = g + l2 * b;
            *o = if b != 0.0 {
                g + l1 * b.signum()
            } else {
                // 0 is optimal along this axis while |g| <= λρ.
                g.signum() * (g.abs() - l1).max(0.0)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The prox minimizes `‖z − v‖²/2 + tP(z)`: no nearby point does better.
    #[test]
    fn prox_is_the_exact_minimizer() {
        let objective = |p: &Penalty, z: &[f64], v: &[f64], t: f64| {
            z.iter().zip(v).map(|(a, b)| 0.5 * (a - b) * (a - b)).sum::<f64>() + t * p.value(z)
        };
        for (strength, ratio) in [(0.0, 0.0), (0.7, 0.0), (0.7, 1.0), (0.7, 0.5), (3.0, 0.2)] {
            let p = Penalty::new(strength, ratio).unwrap();
            let v = [2.0, -0.3, 0.05, -4.0, 0.0];
            let t = 0.8;
            let mut z = v;
            p.prox(&mut z, t);
            let best = objective(&p, &z, &v, t);
            for i in 0..v.len() {
                for step in [1e-4, -1e-4, 1e-2, -1e-2] {
                    let mut w = z;
                    w[i] += step;
                    assert!(objective(&p, &w, &v, t) >= best - 1e-12, "{p:?} coordinate {i}");
                }
            }
        }
    }

    #[test]
    fn elastic_net_prox_soft_thresholds_then_shrinks() {
        let p = Penalty::new(2.0, 0.5).unwrap(); // λρ = 1, λ(1 − ρ) = 1
        let mut v = [3.0, -0.5, -2.5];
        p.prox(&mut v, 1.0);
        assert_eq!(v, [1.0, 0.0, -0.75]);
    }

    #[test]
    fn optimality_is_zero_exactly_at_a_penalized_optimum() {
        // min (β − 3)²/2 + |β| is at β = 2; min (β − 0.5)²/2 + |β| at β = 0.
        let p = Penalty::l1(1.0).unwrap();
        let mut out = [0.0; 2];
        p.optimality(&[2.0, 0.0], &[2.0 - 3.0, 0.0 - 0.5], &mut out);
        assert_eq!(out, [0.0, 0.0]);
        p.optimality(&[1.0, 0.0], &[1.0 - 3.0, 0.0 - 3.0], &mut out);
        assert_eq!(out, [-1.0, -2.0]);
    }

    #[test]
    fn invalid_penalties_are_refused() {
        assert!(matches!(Penalty::new(-1.0, 0.5), Err(PenaltyError::Strength { .. })));
        assert!(matches!(Penalty::new(f64::NAN, 0.5), Err(PenaltyError::Strength { .. })));
        assert!(matches!(Penalty::new(1.0, 1.5), Err(PenaltyError::L1Ratio { .. })));
        assert!(Penalty::NONE.is_smooth() && !Penalty::l1(1.0).unwrap().is_smooth());
    }
}
