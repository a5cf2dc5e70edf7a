//! Random numbers for array blocks: the wyrand generator (the one `fastrand`
//! uses; it passes BigCrush and PractRand) and a 256-layer ziggurat for
//! normals (Marsaglia and Tsang 2000, in Doornik's 2005 form). The layer
//! index and the uniform come from separate bits of one draw.
//!
//! Each block has its own generator, seeded from a hash of the array's seed
//! and the block index. A block's numbers therefore depend on nothing else.

use std::sync::OnceLock;

/// wyrand: a 64-bit counter passed through a 128-bit multiply-xor.
#[derive(Debug, Clone)]
pub struct WyRand(u64);

impl WyRand {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        WyRand(seed)
    }

    /// The next 64 random bits.
    #[inline(always)]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0).wrapping_mul(u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db));
        (t as u64) ^ ((t >> 64) as u64)
    }

    /// Uniform on [0, 1), 53 bits.
    #[inline(always)]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform on (0, 1): safe to take the logarithm of.
    fn open01(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
    }
}

/// Start of the tail and area of each layer for 256 layers (Marsaglia and Tsang).
const R: f64 = 3.654_152_885_361_009;
const V: f64 = 0.004_928_673_233_99;

struct Ziggurat {
    /// Layer edges: x[0] = V / f(R) (the base layer with its tail), x[1] = R, x[256] = 0.
    x: [f64; 257],
    /// x[i + 1] / x[i]: below this, a point of layer i is inside the curve.
    ratio: [f64; 256],
}

fn density(x: f64) -> f64 {
    (-0.5 * x * x).exp()
}

fn ziggurat() -> &'static Ziggurat {
    static Z: OnceLock<Ziggurat> = OnceLock::new();
    Z.get_or_init(|| {
        let mut x = [0.0; 257];
        x[0] = V / density(R);
        x[1] = R;
        for i in 1..255 {
            x[i + 1] = (-2.0 * (V / x[i] + density(x[i])).ln()).sqrt();
        }
        let mut ratio = [0.0; 256];
        for i in 0..256 {
            ratio[i] = x[i + 1] / x[i];
        }
        Ziggurat { x, ratio }
    })
}

impl Ziggurat {
    /// Layer (low 8 bits) and signed uniform on [-1, 1) (top 54 bits) of one draw.
    #[inline(always)]
    fn split(r: u64) -> (usize, f64) {
        ((r & 0xff) as usize, ((r >> 10) as i64) as f64 * (1.0 / (1u64 << 53) as f64) - 1.0)
    }

    #[inline(always)]
    fn sample(&self, rng: &mut WyRand) -> f64 {
        let (i, u) = Self::split(rng.next_u64());
        if u.abs() < self.ratio[i] {
            u * self.x[i]
        } else {
            self.rare(rng, i, u)
        }
    }

    /// The tail and the wedges (about 1% of draws).
    #[cold]
    #[inline(never)]
    fn rare(&self, rng: &mut WyRand, mut i: usize, mut u: f64) -> f64 {
        loop {
            if u.abs() < self.ratio[i] {
                return u * self.x[i];
            }
            if i == 0 {
                // Marsaglia's tail method beyond R.
                loop {
                    let x = -rng.open01().ln() / R;
                    let y = -rng.open01().ln();
                    if y + y >= x * x {
                        return if u < 0.0 { -(R + x) } else { R + x };
                    }
                }
            }
            let x = u * self.x[i];
            let f0 = (-0.5 * (self.x[i] * self.x[i] - x * x)).exp();
            let f1 = (-0.5 * (self.x[i + 1] * self.x[i + 1] - x * x)).exp();
            if f1 + rng.next_f64() * (f0 - f1) < 1.0 {
                return x;
            }
            (i, u) = Self::split(rng.next_u64());
        }
    }
}

/// `n` normal numbers with `mean` and `std`.
pub fn normals(rng: &mut WyRand, n: usize, mean: f64, std: f64) -> Vec<f64> {
    let z = ziggurat();
    (0..n).map(|_| mean + std * z.sample(rng)).collect()
}

/// `n` numbers uniform on `[low, high)`.
pub fn uniforms(rng: &mut WyRand, n: usize, low: f64, high: f64) -> Vec<f64> {
    (0..n).map(|_| low + (high - low) * rng.next_f64()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Φ(x).
    fn normal_cdf(x: f64) -> f64 {
        0.5 * erfc(-x / std::f64::consts::SQRT_2)
    }

    /// erfc with relative error below 1.2e-7 (Numerical Recipes' erfcc),
    /// ample for a KS bound of 1e-3.
    fn erfc(x: f64) -> f64 {
        let z = x.abs();
        let t = 1.0 / (1.0 + 0.5 * z);
        let r = t
            * (-z * z - 1.265_512_23
                + t * (1.000_023_68
                    + t * (0.374_091_96
                        + t * (0.096_784_18
                            + t * (-0.186_288_06
                                + t * (0.278_868_07
                                    + t * (-1.135_203_98
                                        + t * (1.488_515_87
                                            + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
                .exp();
        if x >= 0.0 {
            r
        } else {
            2.0 - r
        }
    }

    #[test]
    fn normals_follow_the_normal_distribution() {
        let n = 2_000_000;
        let mut xs = normals(&mut WyRand::new(42), n, 0.0, 1.0);
        let nf = n as f64;
        let mean = xs.iter().sum::<f64>() / nf;
        let var = xs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / nf;
        let skew = xs.iter().map(|v| (v - mean).powi(3)).sum::<f64>() / nf;
        let kurt = xs.iter().map(|v| (v - mean).powi(4)).sum::<f64>() / nf;
        // Five standard errors: sqrt(1/n), sqrt(2/n), sqrt(6/n), sqrt(24/n) ≈ 7e-4, 1e-3, 1.7e-3, 3.5e-3.
        assert!(mean.abs() < 5.0 * (1.0 / nf).sqrt(), "mean {mean}");
        assert!((var - 1.0).abs() < 5.0 * (2.0 / nf).sqrt(), "var {var}");
        assert!(skew.abs() < 5.0 * (6.0 / nf).sqrt(), "skew {skew}");
        assert!((kurt - 3.0).abs() < 5.0 * (24.0 / nf).sqrt(), "kurtosis {kurt}");
        // Tails: beyond the base layer's edge R and far out (the tail method).
        for (cut, p) in [(R, 2.0 * (1.0 - normal_cdf(R))), (4.5, 2.0 * (1.0 - normal_cdf(4.5)))] {
            let k = xs.iter().filter(|v| v.abs() > cut).count() as f64;
            let sd = (nf * p).sqrt();
            assert!(
                (k - nf * p).abs() < 5.0 * sd + 1.0,
                "|z| > {cut}: {k} draws, expected {}",
                nf * p
            );
        }
        // Kolmogorov-Smirnov against Φ: the 1% critical value is 1.63 / sqrt(n).
        xs.sort_by(f64::total_cmp);
        let d = xs
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let f = normal_cdf(v);
                (f - i as f64 / nf).abs().max(((i + 1) as f64 / nf - f).abs())
            })
            .fold(0.0, f64::max);
        assert!(d < 1.63 / nf.sqrt(), "KS distance {d}");
    }

    #[test]
    fn uniforms_are_uniform_and_seeds_differ() {
        let n = 1_000_000;
        let xs = uniforms(&mut WyRand::new(7), n, -2.0, 3.0);
        assert!(xs.iter().all(|&v| (-2.0..3.0).contains(&v)));
        let mean = xs.iter().sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 5.0 * (25.0 / 12.0 / n as f64).sqrt(), "mean {mean}");
        let mut deciles = [0usize; 10];
        xs.iter().for_each(|&v| deciles[(((v + 2.0) / 5.0 * 10.0) as usize).min(9)] += 1);
        // Chi-square with 9 degrees of freedom: 21.67 is the 1% critical value.
        let e = n as f64 / 10.0;
        let chi2: f64 = deciles.iter().map(|&k| (k as f64 - e).powi(2) / e).sum();
        assert!(chi2 < 21.67, "chi2 {chi2}, deciles {deciles:?}");
        assert_ne!(WyRand::new(1).next_u64(), WyRand::new(2).next_u64());
    }
}
