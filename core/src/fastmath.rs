//! Branch-free scalar math that the compiler vectorizes when it is called
//! in a loop over a slice: the loss kernels of `rask-ml` and `rask-glm` run
//! on it, compiled twice (plain, and with AVX2 and FMA where the CPU has them;
//! the `FMA` parameter picks fused multiply-adds for the second copy).

/// `exp(x)` for `x ≤ 0`, branch-free so that loops over it vectorize:
/// Cody–Waite reduction `x = k·ln2 + r`, a degree-13 Taylor polynomial on
/// `|r| ≤ ln2/2` (truncation error below 1e-17 relative), and `2^k` built from
/// its bits. Arguments below −708 are clamped (the result is then ~1e-308,
/// which no loss or gradient can tell from the true value).
#[inline(always)]
pub fn exp_nonpositive<const FMA: bool>(x: f64) -> f64 {
    const SHIFT: f64 = 6_755_399_441_055_744.0; // 1.5·2^52: adding it rounds to an integer
    const LN2_HI: f64 = 0.693_147_180_369_123_8;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    let x = x.max(-708.0);
    let kf = x * std::f64::consts::LOG2_E + SHIFT;
    let k = kf - SHIFT;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut p: f64 = 1.0 / 6_227_020_800.0; // 1/13!
    for c in [
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = if FMA { p.mul_add(r, c) } else { p * r + c };
    }
    // The low bits of kf hold k; (k + 1023) << 52 is the bit pattern of 2^k.
    let scale = f64::from_bits(kf.to_bits().wrapping_add(1023) << 52);
    p * scale
}

/// Dot product with eight independent accumulators (so the compiler vectorizes it).
#[inline(always)]
pub fn dot<const FMA: bool>(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] = if FMA { x[k].mul_add(y[k], acc[k]) } else { acc[k] + x[k] * y[k] };
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f64>() + tail
}

/// The logistic function `1 / (1 + e^−x)`, exact for large `|x|` of either
/// sign (no overflow, no cancellation).
#[inline]
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Whether this CPU runs the AVX2 + FMA copies of the kernels.
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_matches_libm() {
        // Relative error at most 4 ulp over the range the loss uses, with and without FMA.
        let mut x = 0.0f64;
        while x > -745.0 {
            let want = x.exp();
            for got in [exp_nonpositive::<false>(x), exp_nonpositive::<true>(x)] {
                if x >= -708.0 {
                    assert!(
                        (got - want).abs() <= 4.0 * f64::EPSILON * want,
                        "exp({x}) = {got}, libm says {want}"
                    );
                } else {
                    assert!(
                        got > 0.0 && got < 1e-307,
                        "exp({x}) clamps to a tiny positive value, got {got}"
                    );
                }
            }
            x -= 0.0137;
        }
    }

    #[test]
    fn dot_matches_a_plain_sum() {
        let a: Vec<f64> = (0..37).map(|i| i as f64 * 0.5 - 3.0).collect();
        let b: Vec<f64> = (0..37).map(|i| 1.0 / (i as f64 + 1.0)).collect();
        let want: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        for got in [dot::<false>(&a, &b), dot::<true>(&a, &b)] {
            assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0));
        }
    }
}
