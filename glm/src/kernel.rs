//! The per-chunk passes, vectorized. X is read a panel of rows at a time
//! and each panel is transposed into a column-major scratch buffer, so every
//! inner loop runs along rows over contiguous memory: `η = Xβ + b`, the
//! pointwise loss and derivatives, `Xᵀr` and `Xᵀ diag(s) X` all vectorize,
//! and X leaves memory once per pass. Each kernel is compiled twice (plain,
//! and for AVX2 with fused multiply-adds, picked at run time).
//!
//! The logistic loss takes one branch-free `exp` per row and one `ln` per
//! panel lane: `Σ ln(1 + eᵢ)` is the log of a product, and each lane
//! multiplies at most 40 factors in `[1, 2]` (see [`PANEL`]).

use std::borrow::Cow;

use ndarray::{ArrayView1, ArrayView2};
use rask_core::fastmath::{dot, exp_nonpositive, has_avx2_fma};

use crate::family::Family;

/// Rows per panel: a panel of up to ~64 columns and its per-row buffers stay in L2.
const PANEL: usize = 64;
/// Independent accumulators in the vectorized loops.
const LANES: usize = 8;
/// The weights of unweighted rows.
static ONES: [f64; PANEL] = [1.0; PANEL];

/// One chunk's rows as contiguous slices.
pub(crate) struct Rows<'a> {
    x: Cow<'a, [f64]>,
    y: Cow<'a, [f64]>,
    w: Option<Cow<'a, [f64]>>,
    n: usize,
    p: usize,
}

/// A view as a slice (copied when it is not contiguous).
pub(crate) fn slice<'a>(a: ArrayView1<'a, f64>) -> Cow<'a, [f64]> {
    match a.to_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.to_vec()),
    }
}

impl<'a> Rows<'a> {
    /// Borrows the chunk when it is contiguous and row-major (copies it otherwise).
    pub(crate) fn new(
        x: ArrayView2<'a, f64>,
        y: ArrayView1<'a, f64>,
        w: Option<ArrayView1<'a, f64>>,
    ) -> Rows<'a> {
        let (n, p) = x.dim();
        let x = match x.to_slice() {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(x.as_standard_layout().iter().copied().collect()),
        };
        Rows { x, y: slice(y), w: w.map(slice), n, p }
    }

    /// The targets.
    pub(crate) fn y(&self) -> &[f64] {
        &self.y
    }

    /// The weights, if any.
    pub(crate) fn w(&self) -> Option<&[f64]> {
        self.w.as_deref()
    }
}

/// What one pass over a chunk adds up.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PassSums {
    /// `Σ wᵢ loss`.
    pub loss: f64,
    /// `Σ wᵢ loss′ xᵢ`.
    pub grad: Vec<f64>,
    /// `Σ wᵢ loss′` per linear predictor (one, or one per class).
    pub grad_b: Vec<f64>,
    /// `Σ wᵢ`.
    pub weight: f64,
    /// `Σ wᵢ loss″ [xᵢ 1][xᵢ 1]ᵀ`, row-major (p + 1) × (p + 1), when asked
    /// for; for `K` classes, `(Kp + K)²` in the order `[β, b]` (see [`multi_pass`]).
    pub hess: Option<Vec<f64>>,
}

/// Loss and gradient sums (and the Hessian when `hess`) of a chunk at `(β, b)`.
pub(crate) fn pass(
    family: Family,
    rows: &Rows<'_>,
    beta: &[f64],
    b: &[f64],
    hess: bool,
) -> PassSums {
    if !family.is_scalar() {
        return multi_pass(family.n_outputs(), rows, beta, b, hess);
    }
    let b = b[0];
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has the features this copy is compiled for.
        return unsafe { pass_avx2(family, rows, beta, b, hess) };
    }
    pass_with::<false>(family, rows, beta, b, hess)
}

/// `η = Xβ + b` and `δ = X·d + d_b` of a chunk, in one read of X (for `K`
/// classes, `K` values per row).
pub(crate) fn ray(
    family: Family,
    rows: &Rows<'_>,
    beta: &[f64],
    b: &[f64],
    d: &[f64],
    d_b: &[f64],
) -> [Vec<f64>; 2] {
    if !family.is_scalar() {
        return [multi_predict(rows, beta, b), multi_predict(rows, d, d_b)];
    }
    let (b, d_b) = (b[0], d_b[0]);
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: as above.
        return unsafe { ray_avx2(rows, beta, b, d, d_b) };
    }
    ray_with::<false>(rows, beta, b, d, d_b)
}

/// `Σ wᵢ loss(ηᵢ + t·δᵢ, yᵢ)` (`δ` absent: at `η`).
pub(crate) fn loss_along(
    family: Family,
    eta: &[f64],
    delta: Option<&[f64]>,
    t: f64,
    y: &[f64],
    w: Option<&[f64]>,
) -> f64 {
    if !family.is_scalar() {
        return multi_loss(family.n_outputs(), eta, delta, t, y, w);
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: as above.
        return unsafe { loss_along_avx2(family, eta, delta, t, y, w) };
    }
    loss_along_with::<false>(family, eta, delta, t, y, w)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn pass_avx2(family: Family, rows: &Rows<'_>, beta: &[f64], b: f64, hess: bool) -> PassSums {
    pass_with::<true>(family, rows, beta, b, hess)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn ray_avx2(rows: &Rows<'_>, beta: &[f64], b: f64, d: &[f64], d_b: f64) -> [Vec<f64>; 2] {
    ray_with::<true>(rows, beta, b, d, d_b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn loss_along_avx2(
    family: Family,
    eta: &[f64],
    delta: Option<&[f64]>,
    t: f64,
    y: &[f64],
    w: Option<&[f64]>,
) -> f64 {
    loss_along_with::<true>(family, eta, delta, t, y, w)
}

#[inline(always)]
fn fma<const FMA: bool>(a: f64, b: f64, c: f64) -> f64 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// A sum with [`LANES`] accumulators (so it vectorizes).
#[inline(always)]
fn sum(a: &[f64]) -> f64 {
    let mut acc = [0.0f64; LANES];
    let chunks = a.chunks_exact(LANES);
    let tail: f64 = chunks.remainder().iter().sum();
    for c in chunks {
        for k in 0..LANES {
            acc[k] += c[k];
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Copies rows `start..start + m` of row-major `x` (p columns) into `xt`,
/// column `j` at `xt[j·PANEL..]`.
#[inline(always)]
fn transpose(x: &[f64], p: usize, start: usize, m: usize, xt: &mut [f64]) {
    for (i, row) in x[start * p..(start + m) * p].chunks_exact(p).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            xt[j * PANEL + i] = v;
        }
    }
}

/// `z ← c + Σⱼ xt[j]·v[j]` over a transposed panel of `z.len()` rows.
#[inline(always)]
fn predict<const FMA: bool>(xt: &[f64], v: &[f64], c: f64, z: &mut [f64]) {
    let m = z.len();
    z.fill(c);
    for (j, &vj) in v.iter().enumerate() {
        let col = &xt[j * PANEL..j * PANEL + m];
        z.iter_mut().zip(col).for_each(|(zi, &x)| *zi = fma::<FMA>(x, vj, *zi));
    }
}

/// The logistic terms of one row: its share of the loss without the
/// `ln(1 + e)` part, `1 + e` (with `e = exp(−|η|)`), `loss′` and `loss″`.
#[inline(always)]
fn logistic_row<const FMA: bool>(eta: f64, y: f64, w: f64) -> (f64, f64, f64, f64) {
    let e = exp_nonpositive::<FMA>(-eta.abs());
    let one_e = 1.0 + e;
    let inv = 1.0 / one_e;
    let sig = if eta >= 0.0 { inv } else { e * inv };
    (w * (eta.max(0.0) - y * eta), one_e, w * (sig - y), w * sig * (1.0 - sig))
}

/// `Σ wᵢ ln(1 + eᵢ)` from the buffered `1 + eᵢ`: without weights, one `ln`
/// per lane of a panel's product (each factor is in `[1, 2]`).
#[inline(always)]
fn sum_ln(one_e: &[f64], w: Option<&[f64]>) -> f64 {
    match w {
        Some(w) => one_e.iter().zip(w).map(|(v, wi)| wi * v.ln()).sum(),
        None => {
            let mut prod = [1.0f64; LANES];
            let chunks = one_e.chunks_exact(LANES);
            for v in chunks.remainder() {
                prod[0] *= v;
            }
            for c in chunks {
                for k in 0..LANES {
                    prod[k] *= c[k];
                }
            }
            prod.iter().map(|v| v.ln()).sum()
        }
    }
}

/// Replaces `z` (η of a panel) with `wᵢ loss′`, writes `wᵢ loss″` to `d2`,
/// and returns `Σ wᵢ loss`.
#[inline(always)]
fn pointwise<const FMA: bool>(
    family: Family,
    z: &mut [f64],
    y: &[f64],
    w: Option<&[f64]>,
    d2: &mut [f64],
    scratch: &mut [f64],
) -> f64 {
    let m = z.len();
    let weight = |i: usize| w.map_or(1.0, |w| w[i]);
    match family {
        Family::Logistic => {
            let one_e = &mut scratch[..m];
            let ws = w.unwrap_or(&ONES[..m]);
            let mut part = [0.0f64; LANES];
            let body = z
                .chunks_exact_mut(LANES)
                .zip(y.chunks_exact(LANES))
                .zip(ws.chunks_exact(LANES))
                .zip(one_e.chunks_exact_mut(LANES))
                .zip(d2.chunks_exact_mut(LANES));
            for ((((z, y), w), o), d) in body {
                for k in 0..LANES {
                    let (l, one, r, s) = logistic_row::<FMA>(z[k], y[k], w[k]);
                    part[k] += l;
                    (o[k], z[k], d[k]) = (one, r, s);
                }
            }
            for i in m - m % LANES..m {
                let (l, one, r, s) = logistic_row::<FMA>(z[i], y[i], ws[i]);
                part[0] += l;
                (one_e[i], z[i], d2[i]) = (one, r, s);
            }
            part.iter().sum::<f64>() + sum_ln(one_e, w)
        }
        Family::Normal => {
            let mut loss = 0.0;
            for i in 0..m {
                let (r, wi) = (z[i] - y[i], weight(i));
                loss += 0.5 * wi * r * r;
                (z[i], d2[i]) = (wi * r, wi);
            }
            loss
        }
        Family::Poisson => {
            let mut loss = 0.0;
            for i in 0..m {
                let (mu, wi) = (z[i].exp(), weight(i));
                loss += wi * (mu - y[i] * z[i]);
                (z[i], d2[i]) = (wi * (mu - y[i]), wi * mu);
            }
            loss
        }
        Family::Multinomial { .. } => unreachable!("dispatched to the softmax kernels"),
    }
}

#[inline(always)]
fn pass_with<const FMA: bool>(
    family: Family,
    rows: &Rows<'_>,
    beta: &[f64],
    b: f64,
    hess: bool,
) -> PassSums {
    let (n, p) = (rows.n, rows.p);
    let q = p + 1;
    let mut out = PassSums {
        loss: 0.0,
        grad: vec![0.0; p],
        grad_b: vec![0.0],
        weight: 0.0,
        hess: hess.then(|| vec![0.0; q * q]),
    };
    let mut xt = vec![0.0; p * PANEL];
    let (mut z, mut d2, mut scratch) = ([0.0; PANEL], [0.0; PANEL], [0.0; PANEL]);
    for start in (0..n).step_by(PANEL) {
        let m = PANEL.min(n - start);
        transpose(&rows.x, p, start, m, &mut xt);
        let z = &mut z[..m];
        predict::<FMA>(&xt, beta, b, z);
        let y = &rows.y[start..start + m];
        let w = rows.w.as_ref().map(|w| &w[start..start + m]);
        let d2 = &mut d2[..m];
        out.loss += pointwise::<FMA>(family, z, y, w, d2, &mut scratch);
        out.weight += w.map_or(m as f64, sum);
        out.grad_b[0] += sum(z);
        for (j, g) in out.grad.iter_mut().enumerate() {
            *g += dot::<FMA>(&xt[j * PANEL..j * PANEL + m], z);
        }
        if let Some(h) = out.hess.as_mut() {
            // Upper triangle: row j of the Hessian from column j scaled by loss″.
            let scaled = &mut scratch[..m];
            for j in 0..p {
                let col = &xt[j * PANEL..j * PANEL + m];
                scaled.iter_mut().zip(col).zip(d2.iter()).for_each(|((o, &x), &s)| *o = x * s);
                for k in j..p {
                    h[j * q + k] += dot::<FMA>(scaled, &xt[k * PANEL..k * PANEL + m]);
                }
                h[j * q + p] += sum(scaled);
            }
            h[p * q + p] += sum(d2);
        }
    }
    if let Some(h) = out.hess.as_mut() {
        for j in 0..q {
            for k in 0..j {
                h[j * q + k] = h[k * q + j];
            }
        }
    }
    out
}

#[inline(always)]
fn ray_with<const FMA: bool>(
    rows: &Rows<'_>,
    beta: &[f64],
    b: f64,
    d: &[f64],
    d_b: f64,
) -> [Vec<f64>; 2] {
    let (n, p) = (rows.n, rows.p);
    let (mut eta, mut delta) = (vec![0.0; n], vec![0.0; n]);
    let mut xt = vec![0.0; p * PANEL];
    for start in (0..n).step_by(PANEL) {
        let m = PANEL.min(n - start);
        transpose(&rows.x, p, start, m, &mut xt);
        predict::<FMA>(&xt, beta, b, &mut eta[start..start + m]);
        predict::<FMA>(&xt, d, d_b, &mut delta[start..start + m]);
    }
    [eta, delta]
}

#[inline(always)]
fn loss_along_with<const FMA: bool>(
    family: Family,
    eta: &[f64],
    delta: Option<&[f64]>,
    t: f64,
    y: &[f64],
    w: Option<&[f64]>,
) -> f64 {
    let n = eta.len();
    let (mut z, mut d2, mut scratch) = ([0.0; PANEL], [0.0; PANEL], [0.0; PANEL]);
    let mut loss = 0.0;
    for start in (0..n).step_by(PANEL) {
        let m = PANEL.min(n - start);
        let z = &mut z[..m];
        z.copy_from_slice(&eta[start..start + m]);
        if let Some(delta) = delta {
            z.iter_mut()
                .zip(&delta[start..start + m])
                .for_each(|(zi, &di)| *zi = fma::<FMA>(di, t, *zi));
        }
        let w = w.map(|w| &w[start..start + m]);
        loss += pointwise::<FMA>(family, z, &y[start..start + m], w, &mut d2[..m], &mut scratch);
    }
    loss
}

/// `log Σ eᵛ` without overflow.
fn log_sum_exp(v: &[f64]) -> f64 {
    let top = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    top + v.iter().map(|x| (x - top).exp()).sum::<f64>().ln()
}

/// `η = Xβ + b` with `k` predictors per row (row-major `n × k`), `β` class-major.
fn multi_predict(rows: &Rows<'_>, beta: &[f64], b: &[f64]) -> Vec<f64> {
    let (n, p, k) = (rows.n, rows.p, b.len());
    let mut eta = vec![0.0; n * k];
    for (x, e) in rows.x.chunks_exact(p).zip(eta.chunks_exact_mut(k)) {
        for c in 0..k {
            e[c] = b[c] + x.iter().zip(&beta[c * p..(c + 1) * p]).map(|(a, v)| a * v).sum::<f64>();
        }
    }
    eta
}

/// `Σ wᵢ (log Σ_c e^{a_ic} − a_{i,yᵢ})` at `a = η + t·δ` (`k` per row).
fn multi_loss(
    k: usize,
    eta: &[f64],
    delta: Option<&[f64]>,
    t: f64,
    y: &[f64],
    w: Option<&[f64]>,
) -> f64 {
    let mut a = vec![0.0; k];
    let mut loss = 0.0;
    for (i, e) in eta.chunks_exact(k).enumerate() {
        a.copy_from_slice(e);
        if let Some(delta) = delta {
            a.iter_mut().zip(&delta[i * k..(i + 1) * k]).for_each(|(v, d)| *v += t * d);
        }
        let wi = w.map_or(1.0, |w| w[i]);
        loss += wi * (log_sum_exp(&a) - a[y[i] as usize]);
    }
    loss
}

/// The softmax pass: `k` linear predictors per row, `β` class-major
/// (`β[c·p + j]`), the Hessian in the order `[β, b]`:
/// `∂²/∂η_c∂η_d = p_c([c = d] − p_d)` times `x̃x̃ᵀ` with `x̃ = [x, 1]`. Row
/// by row: these problems have few classes and features, so the per-row
/// block is small.
fn multi_pass(k: usize, rows: &Rows<'_>, beta: &[f64], b: &[f64], hess: bool) -> PassSums {
    let p = rows.p;
    let m = k * p;
    let q = m + k;
    let mut out = PassSums {
        loss: 0.0,
        grad: vec![0.0; m],
        grad_b: vec![0.0; k],
        weight: 0.0,
        hess: hess.then(|| vec![0.0; q * q]),
    };
    let at = |c: usize, j: usize| if j < p { c * p + j } else { m + c };
    let eta = multi_predict(rows, beta, b);
    let (mut prob, mut r) = (vec![0.0; k], vec![0.0; k]);
    for (i, (x, e)) in rows.x.chunks_exact(p).zip(eta.chunks_exact(k)).enumerate() {
        let w = rows.w.as_ref().map_or(1.0, |w| w[i]);
        let yi = rows.y[i] as usize;
        let lse = log_sum_exp(e);
        for c in 0..k {
            prob[c] = (e[c] - lse).exp();
            r[c] = w * (prob[c] - f64::from(c == yi));
        }
        out.loss += w * (lse - e[yi]);
        out.weight += w;
        for (c, &rc) in r.iter().enumerate() {
            out.grad_b[c] += rc;
            for (g, &xj) in out.grad[c * p..(c + 1) * p].iter_mut().zip(x) {
                *g += rc * xj;
            }
        }
        if let Some(h) = out.hess.as_mut() {
            let xt = |j: usize| if j < p { x[j] } else { 1.0 };
            for c in 0..k {
                for d in c..k {
                    let s = w * prob[c] * (f64::from(c == d) - prob[d]);
                    for j in 0..=p {
                        let row = at(c, j) * q;
                        let sx = s * xt(j);
                        for l in 0..=p {
                            h[row + at(d, l)] += sx * xt(l);
                        }
                    }
                }
            }
        }
    }
    if let Some(h) = out.hess.as_mut() {
        // The blocks below the diagonal (d < c) are the transposes of those above.
        for c in 0..k {
            for d in c + 1..k {
                for j in 0..=p {
                    for l in 0..=p {
                        h[at(d, l) * q + at(c, j)] = h[at(c, j) * q + at(d, l)];
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernels agree with the scalar definitions of the sums, on a chunk
    /// that ends in a partial panel, with and without weights.
    #[test]
    fn kernels_match_scalar_sums() {
        let (n, p) = (PANEL * 2 + 37, 5);
        let x: Vec<f64> = (0..n * p).map(|k| ((k * 37 % 101) as f64 / 50.0 - 1.0) * 1.7).collect();
        let beta: Vec<f64> = (0..p).map(|j| 0.4 - 0.3 * j as f64).collect();
        let d: Vec<f64> = (0..p).map(|j| 0.1 * j as f64 - 0.2).collect();
        let w: Vec<f64> = (0..n).map(|i| 0.5 + (i % 3) as f64).collect();
        for family in [Family::Logistic, Family::Normal, Family::Poisson] {
            let y: Vec<f64> = (0..n)
                .map(|i| match family {
                    Family::Logistic => (i % 2) as f64,
                    _ => (i % 4) as f64,
                })
                .collect();
            for weights in [None, Some(&w[..])] {
                let xv = ArrayView2::from_shape((n, p), &x).unwrap();
                let rows = Rows::new(xv, ArrayView1::from(&y), weights.map(ArrayView1::from));
                let got = pass(family, &rows, &beta, &[0.3], true);
                let (mut loss, mut grad, mut h) =
                    (0.0, vec![0.0; p + 1], vec![0.0; (p + 1) * (p + 1)]);
                for i in 0..n {
                    let xi: Vec<f64> = x[i * p..(i + 1) * p].iter().copied().chain([1.0]).collect();
                    let eta: f64 = xi[..p].iter().zip(&beta).map(|(a, b)| a * b).sum::<f64>() + 0.3;
                    let wi = weights.map_or(1.0, |w| w[i]);
                    let pw = family.pointwise(eta, y[i]);
                    loss += wi * pw.loss;
                    for j in 0..=p {
                        grad[j] += wi * pw.d1 * xi[j];
                        for k in 0..=p {
                            h[j * (p + 1) + k] += wi * pw.d2 * xi[j] * xi[k];
                        }
                    }
                }
                let close = |a: f64, b: f64| (a - b).abs() <= 1e-10 * b.abs().max(1.0);
                assert!(close(got.loss, loss), "{family:?} loss {} vs {loss}", got.loss);
                for (j, (g, want)) in got.grad.iter().zip(&grad).enumerate() {
                    assert!(close(*g, *want), "{family:?} grad {j}");
                }
                assert!(close(got.grad_b[0], grad[p]));
                let gh = got.hess.unwrap();
                for (k, (g, want)) in gh.iter().zip(&h).enumerate() {
                    assert!(close(*g, *want), "{family:?} hessian {k}");
                }
                let [eta, delta] = ray(family, &rows, &beta, &[0.3], &d, &[-0.1]);
                let t = 0.7;
                let at: Vec<f64> = beta.iter().zip(&d).map(|(b, d)| b + t * d).collect();
                let direct = pass(family, &rows, &at, &[0.3 - 0.1 * t], false).loss;
                let along = loss_along(family, &eta, Some(&delta), t, &y, weights);
                assert!(close(along, direct), "{family:?} ray {along} vs {direct}");
            }
        }
    }

    /// The softmax pass: the gradient and the Hessian agree with central
    /// differences of its loss, and the loss along a ray with a direct pass.
    #[test]
    fn softmax_pass_matches_finite_differences() {
        let (n, p, k) = (37, 3, 3);
        let family = Family::Multinomial { classes: k };
        let x: Vec<f64> = (0..n * p).map(|v| ((v * 29 % 53) as f64 / 26.0 - 1.0) * 1.3).collect();
        let y: Vec<f64> = (0..n).map(|i| (i * 7 % k) as f64).collect();
        let w: Vec<f64> = (0..n).map(|i| 0.5 + (i % 4) as f64 * 0.5).collect();
        let xv = ArrayView2::from_shape((n, p), &x).unwrap();
        let rows = Rows::new(xv, ArrayView1::from(&y), Some(ArrayView1::from(&w)));
        let mut theta: Vec<f64> =
            (0..k * p + k).map(|v| ((v * 5 % 11) as f64 - 5.0) * 0.1).collect();
        let at = |t: &[f64], hess: bool| pass(family, &rows, &t[..k * p], &t[k * p..], hess);
        let s = at(&theta, true);
        let h = s.hess.clone().unwrap();
        let q = k * p + k;
        let grad: Vec<f64> = s.grad.iter().chain(&s.grad_b).copied().collect();
        let eps = 1e-6;
        for a in 0..q {
            let v = theta[a];
            theta[a] = v + eps;
            let up = at(&theta, false);
            theta[a] = v - eps;
            let down = at(&theta, false);
            theta[a] = v;
            assert!(((up.loss - down.loss) / (2.0 * eps) - grad[a]).abs() < 1e-6, "grad {a}");
            let gu: Vec<f64> = up.grad.iter().chain(&up.grad_b).copied().collect();
            let gd: Vec<f64> = down.grad.iter().chain(&down.grad_b).copied().collect();
            for z in 0..q {
                let fd = (gu[z] - gd[z]) / (2.0 * eps);
                assert!(
                    (fd - h[a * q + z]).abs() < 1e-5,
                    "hessian {a},{z}: {fd} vs {}",
                    h[a * q + z]
                );
            }
        }
        let d: Vec<f64> = (0..q).map(|v| 0.05 * v as f64 - 0.3).collect();
        let [eta, delta] =
            ray(family, &rows, &theta[..k * p], &theta[k * p..], &d[..k * p], &d[k * p..]);
        let moved: Vec<f64> = theta.iter().zip(&d).map(|(a, b)| a + 0.4 * b).collect();
        let along = loss_along(family, &eta, Some(&delta), 0.4, &y, Some(&w));
        let direct = at(&moved, false).loss;
        assert!((along - direct).abs() < 1e-10 * direct.abs(), "{along} vs {direct}");
    }
}
