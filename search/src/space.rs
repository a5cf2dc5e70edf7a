//! Search spaces: parameter grids and random distributions, expanded into the
//! ordered list of candidates.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rask_ml::{ParamValue, Params};

use crate::error::SearchError;

/// One grid: parameter name → the values to try.
pub type Grid = BTreeMap<String, Vec<ParamValue>>;

/// The candidates of a list of grids, in scikit-learn's `ParameterGrid` order:
/// grid by grid; within a grid, keys sorted, the last key varying fastest.
pub fn expand_grids(grids: &[Grid]) -> Result<Vec<Params>, SearchError> {
    let mut out = Vec::new();
    for grid in grids {
        if let Some((k, _)) = grid.iter().find(|(_, v)| v.is_empty()) {
            return Err(SearchError::Space {
                message: format!("parameter {k:?} has an empty list of values"),
            });
        }
        let keys: Vec<&String> = grid.keys().collect();
        let total: usize = keys.iter().map(|k| grid[*k].len()).product();
        for mut i in 0..total {
            // Mixed-radix digits of i, the last key being the fastest digit.
            let mut params = Params::new();
            for k in keys.iter().rev() {
                let values = &grid[*k];
                params.insert((*k).clone(), values[i % values.len()].clone());
                i /= values.len();
            }
            out.push(params);
        }
    }
    Ok(out)
}

/// A distribution to sample one parameter from.
#[derive(Debug, Clone, PartialEq)]
pub enum Distribution {
    /// Uniform float in `[low, high)`.
    Uniform {
        /// Lower end.
        low: f64,
        /// Upper end.
        high: f64,
    },
    /// Float whose logarithm is uniform in `[ln low, ln high)`.
    LogUniform {
        /// Lower end (> 0).
        low: f64,
        /// Upper end.
        high: f64,
    },
    /// Integer uniform in `[low, high)`.
    RandInt {
        /// Lower end.
        low: i64,
        /// Upper end (exclusive).
        high: i64,
    },
    /// One of these values, equally likely.
    Choice(Vec<ParamValue>),
}

impl Distribution {
    fn check(&self, name: &str) -> Result<(), SearchError> {
        let bad = |m: String| {
            Err(SearchError::Space { message: format!("distribution of {name:?}: {m}") })
        };
        match self {
            Distribution::Uniform { low, high } if !(low < high) => {
                bad(format!("uniform needs low < high, got [{low}, {high})"))
            }
            Distribution::LogUniform { low, high } if !(*low > 0.0 && low < high) => {
                bad(format!("loguniform needs 0 < low < high, got [{low}, {high})"))
            }
            Distribution::RandInt { low, high } if low >= high => {
                bad(format!("randint needs low < high, got [{low}, {high})"))
            }
            Distribution::Choice(v) if v.is_empty() => {
                bad("choice needs at least one value".into())
            }
            _ => Ok(()),
        }
    }

    fn sample(&self, rng: &mut impl Rng) -> ParamValue {
        match self {
            Distribution::Uniform { low, high } => ParamValue::F64(rng.gen_range(*low..*high)),
            Distribution::LogUniform { low, high } => {
                ParamValue::F64(rng.gen_range(low.ln()..high.ln()).exp())
            }
            Distribution::RandInt { low, high } => ParamValue::I64(rng.gen_range(*low..*high)),
            Distribution::Choice(v) => v[rng.gen_range(0..v.len())].clone(),
        }
    }
}

/// `n_iter` candidates drawn from `dists` with the seeded generator `seed`
/// (parameters drawn in sorted-name order, so the draw is reproducible).
pub fn sample(
    dists: &BTreeMap<String, Distribution>,
    n_iter: usize,
    seed: u64,
) -> Result<Vec<Params>, SearchError> {
    for (name, d) in dists {
        d.check(name)?;
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    Ok((0..n_iter)
        .map(|_| dists.iter().map(|(k, d)| (k.clone(), d.sample(&mut rng))).collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_order_is_sklearns() {
        let mut g = Grid::new();
        g.insert("pca__n_components".into(), vec![5.into(), 10.into()]);
        g.insert("logreg__C".into(), vec![0.1.into(), 1.0.into(), 10.0.into()]);
        let c = expand_grids(&[g]).unwrap();
        assert_eq!(c.len(), 6);
        // Keys sorted: logreg__C outer, pca__n_components inner.
        let pairs: Vec<(f64, i64)> = c
            .iter()
            .map(|p| match (&p["logreg__C"], &p["pca__n_components"]) {
                (ParamValue::F64(c), ParamValue::I64(n)) => (*c, *n),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(pairs, vec![(0.1, 5), (0.1, 10), (1.0, 5), (1.0, 10), (10.0, 5), (10.0, 10)]);
        assert_eq!(expand_grids(&[Grid::new()]).unwrap().len(), 1);
    }

    #[test]
    fn samples_are_seeded_and_in_range() {
        let mut d = BTreeMap::new();
        d.insert("C".to_string(), Distribution::LogUniform { low: 1e-3, high: 1e2 });
        d.insert("k".to_string(), Distribution::RandInt { low: 2, high: 9 });
        let a = sample(&d, 50, 7).unwrap();
        assert_eq!(a, sample(&d, 50, 7).unwrap());
        for p in &a {
            let ParamValue::F64(c) = p["C"] else { panic!() };
            let ParamValue::I64(k) = p["k"] else { panic!() };
            assert!((1e-3..1e2).contains(&c) && (2..9).contains(&k));
        }
        let mut bad = BTreeMap::new();
        bad.insert("C".to_string(), Distribution::LogUniform { low: 0.0, high: 1.0 });
        assert!(sample(&bad, 1, 0).unwrap_err().to_string().contains("0 < low"));
    }
}
