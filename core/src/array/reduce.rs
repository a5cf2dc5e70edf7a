//! Reductions along any axes, as trees: each block is reduced to a partial
//! result, partials are combined `split_every` at a time, and a last task
//! turns the combined partial into values. Means and variances combine
//! (count, mean, M2) triples with Chan et al.'s update, which stays accurate
//! where a sum of squares would cancel.

use ndarray::{ArrayD, Axis, Dimension, IxDyn, Zip};

use super::block::{Block, BlockData, Element};
use super::fuse::fused_reduce_partial;
use super::ops::{reduce_combine, reduce_finish, reduce_partial, Partial, Placement, Reduction};
use super::{offsets, Array, ArrayError};
use crate::delayed::Delayed;

/// How many partials one combining task takes (dask's `split_every`).
pub const DEFAULT_SPLIT_EVERY: usize = 8;

fn sum_axes<T: Element + num_traits::Zero + std::ops::Add<Output = T>>(
    a: &ArrayD<T>,
    axes: &[usize],
) -> ArrayD<T> {
    // ndarray's sum_axis adds whole rows when the axis is an outer one.
    let mut out: Option<ArrayD<T>> = None;
    for &ax in axes {
        let src = out.as_ref().map_or(a.view(), |o| o.view());
        out = Some(src.sum_axis(Axis(ax)).insert_axis(Axis(ax)));
    }
    out.unwrap_or_else(|| a.clone())
}

fn fold_axes<T: Element>(
    a: &ArrayD<T>,
    axes: &[usize],
    f: impl Fn(T, T) -> T + Copy,
) -> Result<ArrayD<T>, String> {
    let mut out: Option<ArrayD<T>> = None;
    for &ax in axes {
        let src = out.as_ref().map_or(a.view(), |o| o.view());
        if src.shape()[ax] == 0 {
            return Err("zero-size array: the reduction has no identity".into());
        }
        out = Some(
            src.map_axis(Axis(ax), |lane| lane.iter().skip(1).fold(lane[0], |s, &v| f(s, v)))
                .insert_axis(Axis(ax)),
        );
    }
    Ok(out.unwrap_or_else(|| a.clone()))
}

/// NaN-propagating minimum and maximum (as NumPy's `min`/`max`).
fn pick_min<T: Element>(a: T, b: T) -> T {
    #[allow(clippy::eq_op)]
    let a_nan = a != a;
    if a_nan || a <= b {
        a
    } else {
        b
    }
}

fn pick_max<T: Element>(a: T, b: T) -> T {
    #[allow(clippy::eq_op)]
    let a_nan = a != a;
    if a_nan || a >= b {
        a
    } else {
        b
    }
}

/// Count, means and (when `with_m2`) squared deviations over `axes`.
fn moments(f: &ArrayD<f64>, axes: &[usize], with_m2: bool) -> Partial {
    let n: usize = axes.iter().map(|&ax| f.shape()[ax]).product();
    let mean = sum_axes(f, axes).mapv(|s| s / n.max(1) as f64);
    let m2 = if with_m2 {
        let dev = Zip::from(f).and_broadcast(&mean).map_collect(|&x, &m| (x - m) * (x - m));
        sum_axes(&dev, axes)
    } else {
        ArrayD::zeros(mean.raw_dim())
    };
    Partial::Moments { n: n as f64, mean, m2 }
}

/// Best (value, global index) over `axes` of block `a` at `place`.
fn arg_partial<T: Element>(
    a: &ArrayD<T>,
    axes: &[usize],
    place: &Placement,
    max: bool,
) -> Result<Partial, String> {
    let out_shape: Vec<usize> = a
        .shape()
        .iter()
        .enumerate()
        .map(|(ax, &n)| if axes.contains(&ax) { 1 } else { n })
        .collect();
    let mut val = ArrayD::<f64>::from_elem(IxDyn(&out_shape), f64::NAN);
    let mut idx = ArrayD::<i64>::from_elem(IxDyn(&out_shape), -1);
    // Strides of the reduced axes in the whole array (C order over them).
    let mut strides = vec![0usize; a.ndim()];
    let mut s = 1;
    for &ax in axes.iter().rev() {
        strides[ax] = s;
        s *= place.shape[ax];
    }
    for (i, &v) in a.indexed_iter() {
        let v = v.to_f64();
        let mut o = i.slice().to_vec();
        let mut flat = 0usize;
        for &ax in axes {
            flat += (o[ax] + place.offset[ax]) * strides[ax];
            o[ax] = 0;
        }
        let o = IxDyn(&o);
        let (best, at) = (val[&o], idx[&o]);
        let better =
            at < 0 || (!best.is_nan() && (v.is_nan() || if max { v > best } else { v < best }));
        if better {
            val[&o] = v;
            idx[&o] = flat as i64;
        }
    }
    Ok(Partial::Arg { val, idx })
}

fn bool_of(d: &BlockData) -> Result<ArrayD<bool>, String> {
    match d {
        BlockData::Bool(a) => Ok(a.clone()),
        other => Ok(crate::with_block!(other, |x: T| x.mapv(|v| v.to_f64() != 0.0))),
    }
}

/// `d` itself when it is in standard layout, else a standard-layout copy.
pub(crate) fn standard(d: &BlockData) -> std::borrow::Cow<'_, BlockData> {
    if crate::with_block!(d, |x: T| x.is_standard_layout()) {
        std::borrow::Cow::Borrowed(d)
    } else {
        std::borrow::Cow::Owned(crate::with_block!(d, |x: T| T::wrap(
            x.as_standard_layout().into_owned()
        )))
    }
}

/// A block's partial reduction (reduced axes kept with length 1).
pub(crate) fn partial_of(
    d: &BlockData,
    axes: &[usize],
    kind: Reduction,
    place: &Placement,
) -> Result<Partial, String> {
    if let Some(&bad) = axes.iter().find(|&&ax| ax >= d.shape().len()) {
        return Err(format!("axis {bad} for a block of shape {:?}", d.shape()));
    }
    // Summation order follows memory order, so reduce the standard layout:
    // a transposed view here and its bytes on a worker must agree.
    let d = &*standard(d);
    Ok(match kind {
        Reduction::Sum => Partial::Plain(Block::new(match d {
            BlockData::F64(a) => BlockData::F64(sum_axes(a, axes)),
            BlockData::F32(a) => BlockData::F32(sum_axes(a, axes)),
            BlockData::I64(a) => BlockData::I64(sum_axes(a, axes)),
            BlockData::Bool(a) => BlockData::I64(sum_axes(&a.mapv(i64::from), axes)),
        })),
        Reduction::Mean | Reduction::Var(_) | Reduction::Std(_) => {
            let with_m2 = kind != Reduction::Mean;
            match d {
                BlockData::F64(a) => moments(a, axes, with_m2),
                other => moments(
                    &crate::with_block!(other, |x: T| x.mapv(|v| v.to_f64())),
                    axes,
                    with_m2,
                ),
            }
        }
        Reduction::Min => Partial::Plain(Block::new(crate::with_block!(d, |a: T| T::wrap(
            fold_axes(a, axes, pick_min)?
        )))),
        Reduction::Max => Partial::Plain(Block::new(crate::with_block!(d, |a: T| T::wrap(
            fold_axes(a, axes, pick_max)?
        )))),
        Reduction::ArgMin => crate::with_block!(d, |a: T| arg_partial(a, axes, place, false)?),
        Reduction::ArgMax => crate::with_block!(d, |a: T| arg_partial(a, axes, place, true)?),
        Reduction::Any => {
            Partial::Plain(Block::new(BlockData::Bool(fold_axes(&bool_of(d)?, axes, |x, y| {
                x | y
            })?)))
        }
        Reduction::All => {
            Partial::Plain(Block::new(BlockData::Bool(fold_axes(&bool_of(d)?, axes, |x, y| {
                x & y
            })?)))
        }
    })
}

fn combine_two(a: Partial, b: Partial, kind: Reduction) -> Result<Partial, String> {
    use super::ops::{binary_data, BinOp};
    Ok(match (a, b) {
        (Partial::Plain(x), Partial::Plain(y)) => {
            let op = match kind {
                Reduction::Sum => BinOp::Add,
                Reduction::Min => BinOp::Min,
                Reduction::Max => BinOp::Max,
                Reduction::Any => BinOp::Or,
                Reduction::All => BinOp::And,
                other => return Err(format!("plain partials for {other:?}")),
            };
            Partial::Plain(Block::new(binary_data(x.data(), y.data(), op)?))
        }
        (
            Partial::Moments { n: na, mean: ma, m2: qa },
            Partial::Moments { n: nb, mean: mb, m2: qb },
        ) => {
            let n = na + nb;
            if n == 0.0 {
                return Ok(Partial::Moments { n, mean: ma, m2: qa });
            }
            let mean = Zip::from(&ma).and(&mb).map_collect(|&a, &b| a + (b - a) * nb / n);
            let m2 = Zip::from(&qa)
                .and(&qb)
                .and(&ma)
                .and(&mb)
                .map_collect(|&qa, &qb, &a, &b| qa + qb + (b - a) * (b - a) * na * nb / n);
            Partial::Moments { n, mean, m2 }
        }
        (Partial::Arg { val: va, idx: ia }, Partial::Arg { val: vb, idx: ib }) => {
            let max = kind == Reduction::ArgMax;
            let mut val = va;
            let mut idx = ia;
            Zip::from(&mut val).and(&mut idx).and(&vb).and(&ib).for_each(|v, i, &w, &j| {
                // Ties and NaNs go to the smaller index, as NumPy's first occurrence.
                let take = if *i < 0 {
                    true
                } else if j < 0 {
                    false
                } else if v.is_nan() || w.is_nan() {
                    w.is_nan() && (!v.is_nan() || j < *i)
                } else if w == *v {
                    j < *i
                } else if max {
                    w > *v
                } else {
                    w < *v
                };
                if take {
                    *v = w;
                    *i = j;
                }
            });
            Partial::Arg { val, idx }
        }
        _ => return Err("partials of different kinds".into()),
    })
}

/// Combines partials in order.
pub(crate) fn combine_partials(parts: Vec<Partial>, kind: Reduction) -> Result<Partial, String> {
    let mut it = parts.into_iter();
    let first = it.next().ok_or("no partials to combine")?;
    it.try_fold(first, |acc, p| combine_two(acc, p, kind))
}

fn squeeze<T: Element>(mut a: ArrayD<T>, axes: &[usize], keepdims: bool) -> ArrayD<T> {
    if !keepdims {
        let mut sorted = axes.to_vec();
        sorted.sort_unstable();
        for &ax in sorted.iter().rev() {
            a = a.index_axis_move(Axis(ax), 0);
        }
    }
    a
}

/// The values of a combined partial.
pub(crate) fn finish_partial(
    part: Partial,
    axes: &[usize],
    kind: Reduction,
    keepdims: bool,
) -> Result<Block, String> {
    let data = match (part, kind) {
        (Partial::Plain(b), _) => {
            crate::with_block!(b.into_data(), |a: T| T::wrap(squeeze(a, axes, keepdims)))
        }
        (Partial::Moments { mean, .. }, Reduction::Mean) => {
            BlockData::F64(squeeze(mean, axes, keepdims))
        }
        (Partial::Moments { n, m2, .. }, Reduction::Var(ddof) | Reduction::Std(ddof)) => {
            let d = (n - ddof).max(0.0);
            let var = m2.mapv(|q| q / d);
            let out = if matches!(kind, Reduction::Std(_)) { var.mapv(f64::sqrt) } else { var };
            BlockData::F64(squeeze(out, axes, keepdims))
        }
        (Partial::Arg { idx, .. }, _) => BlockData::I64(squeeze(idx, axes, keepdims)),
        (_, k) => return Err(format!("cannot finish {k:?} from this partial")),
    };
    Ok(Block::new(data))
}

impl<T: Element> Array<T> {
    /// Reduces over `axes` (empty: all axes) with a tree of `split_every`-way
    /// combines; the reduced axes are dropped unless `keepdims`.
    pub fn reduce<U: Element>(
        &self,
        axes: &[usize],
        kind: Reduction,
        split_every: usize,
        keepdims: bool,
    ) -> Result<Array<U>, ArrayError> {
        let ndim = self.ndim();
        let mut axes: Vec<usize> =
            if axes.is_empty() { (0..ndim).collect() } else { axes.to_vec() };
        axes.sort_unstable();
        axes.dedup();
        if let Some(&bad) = axes.iter().find(|&&a| a >= ndim) {
            return Err(ArrayError::Shape {
                array: self.name().into(),
                message: format!("axis {bad} does not exist: the array has {ndim} dimensions"),
            });
        }
        if matches!(kind, Reduction::ArgMin | Reduction::ArgMax)
            && axes.len() != 1
            && axes.len() != ndim
        {
            return Err(ArrayError::Shape {
                array: self.name().into(),
                message: "argmin/argmax take one axis or all axes".into(),
            });
        }
        if split_every < 2 {
            return Err(ArrayError::Shape {
                array: self.name().into(),
                message: format!("split_every {split_every}: it must be at least 2"),
            });
        }
        // Σ(a ± b) = Σa ± Σb (and so for means): reduce each operand, which
        // reads each input once and writes no intermediate blocks.
        match (kind, self.expr.as_deref()) {
            (Reduction::Sum | Reduction::Mean, Some(super::Expr::Linear { op, lhs, rhs })) => {
                let (l, r) = (
                    lhs.reduce::<U>(&axes, kind, split_every, keepdims)?,
                    rhs.reduce::<U>(&axes, kind, split_every, keepdims)?,
                );
                return Ok(l
                    .zip_with(&r, *op)?
                    .named(format!("{kind:?}({})", self.name()).to_lowercase()));
            }
            // A reduction of a transpose is the transpose of the reduction over
            // the source's axes (arg-reductions' indices depend on the layout: not those).
            (
                Reduction::Sum
                | Reduction::Mean
                | Reduction::Var(_)
                | Reduction::Std(_)
                | Reduction::Min
                | Reduction::Max
                | Reduction::Any
                | Reduction::All,
                Some(super::Expr::Transpose { perm, src }),
            ) => {
                let src_axes: Vec<usize> = axes.iter().map(|&a| perm[a]).collect();
                let kept = src.reduce::<U>(&src_axes, kind, split_every, true)?.transpose(perm)?;
                if keepdims {
                    return Ok(kept);
                }
                let sel: Vec<super::index::Sel> = (0..ndim)
                    .map(|ax| {
                        if axes.contains(&ax) {
                            super::index::Sel::Index(0)
                        } else {
                            super::index::Sel::All
                        }
                    })
                    .collect();
                return Ok(kept
                    .slice(&sel)?
                    .named(format!("{kind:?}({})", self.name()).to_lowercase()));
            }
            _ => {}
        }
        let shape = self.shape();
        if shape.iter().enumerate().any(|(ax, &n)| n == 0 && axes.contains(&ax))
            && matches!(
                kind,
                Reduction::Min | Reduction::Max | Reduction::ArgMin | Reduction::ArgMax
            )
        {
            return Err(ArrayError::Shape {
                array: self.name().into(),
                message: format!("{kind:?} of an empty axis has no value"),
            });
        }
        let starts: Vec<Vec<usize>> = self.chunks().iter().map(|c| offsets(c)).collect();
        let grid = self.blocks().shape().to_vec();
        // Output grid: the reduced axes collapse to one block.
        let out_grid: Vec<usize> = grid
            .iter()
            .enumerate()
            .map(|(ax, &g)| if axes.contains(&ax) { 1 } else { g })
            .collect();
        // An elementwise program is reduced where it runs: its blocks are
        // never materialized (arg-reductions take the computed blocks).
        let fused = match &self.fused {
            Some(f) if !matches!(kind, Reduction::ArgMin | Reduction::ArgMax) => {
                Some((f.inputs(self.chunks())?, f.program()))
            }
            _ => None,
        };
        let out_blocks = ArrayD::from_shape_fn(IxDyn(&out_grid), |o| {
            // Partials of every block that maps to this output block.
            let mut parts: Vec<Delayed<Partial>> = Vec::new();
            for (i, b) in self.blocks().indexed_iter() {
                if (0..ndim).all(|ax| axes.contains(&ax) || i[ax] == o[ax]) {
                    let place = Placement {
                        offset: (0..ndim).map(|ax| starts[ax][i[ax]]).collect(),
                        shape: shape.clone(),
                    };
                    parts.push(match &fused {
                        Some((inputs, program)) => fused_reduce_partial(
                            inputs(i.slice()),
                            program.clone(),
                            axes.clone(),
                            kind,
                            place,
                        ),
                        None => reduce_partial(b, axes.clone(), kind, place),
                    });
                }
            }
            while parts.len() > 1 {
                parts =
                    parts
                        .chunks(split_every)
                        .map(|c| {
                            if c.len() == 1 {
                                c[0].clone()
                            } else {
                                reduce_combine(c.to_vec(), kind)
                            }
                        })
                        .collect();
            }
            reduce_finish(parts.pop().expect("at least one block"), axes.clone(), kind, keepdims)
        });
        let mut chunks: Vec<Vec<usize>> = Vec::new();
        for (ax, c) in self.chunks().iter().enumerate() {
            if !axes.contains(&ax) {
                chunks.push(c.clone());
            } else if keepdims {
                chunks.push(vec![1]);
            }
        }
        let blocks = if keepdims {
            out_blocks
        } else {
            let kept: Vec<usize> =
                (0..ndim).filter(|ax| !axes.contains(ax)).map(|ax| out_grid[ax]).collect();
            let flat: Vec<Delayed<Block>> = out_blocks.into_iter().collect();
            ArrayD::from_shape_vec(IxDyn(&kept), flat).expect("same number of blocks")
        };
        Ok(Array::from_blocks(format!("{kind:?}({})", self.name()).to_lowercase(), chunks, blocks))
    }

    /// Sum over `axes` (empty: all). Bool arrays sum to int64 through [`Array::count`].
    pub fn sum(&self, axes: &[usize]) -> Result<Array<T>, ArrayError> {
        if T::NAME == bool::NAME {
            return Err(ArrayError::Shape {
                array: self.name().into(),
                message: "sum of a bool array: use count() (int64)".into(),
            });
        }
        self.reduce(axes, Reduction::Sum, DEFAULT_SPLIT_EVERY, false)
    }

    /// Number of true (non-zero) elements over `axes`.
    pub fn count(&self, axes: &[usize]) -> Result<Array<i64>, ArrayError> {
        // Bool blocks sum to int64 as they are (a fused program stays fused).
        if T::NAME == bool::NAME {
            self.reduce(axes, Reduction::Sum, DEFAULT_SPLIT_EVERY, false)
        } else {
            self.cast::<bool>().reduce(axes, Reduction::Sum, DEFAULT_SPLIT_EVERY, false)
        }
    }

    /// Mean over `axes` (float64).
    pub fn mean(&self, axes: &[usize]) -> Result<Array<f64>, ArrayError> {
        self.reduce(axes, Reduction::Mean, DEFAULT_SPLIT_EVERY, false)
    }

    /// Variance over `axes` with `ddof` delta degrees of freedom (float64).
    pub fn var(&self, axes: &[usize], ddof: f64) -> Result<Array<f64>, ArrayError> {
        self.reduce(axes, Reduction::Var(ddof), DEFAULT_SPLIT_EVERY, false)
    }

    /// Standard deviation over `axes` with `ddof` (float64).
    pub fn std(&self, axes: &[usize], ddof: f64) -> Result<Array<f64>, ArrayError> {
        self.reduce(axes, Reduction::Std(ddof), DEFAULT_SPLIT_EVERY, false)
    }

    /// Minimum over `axes` (NaN propagates).
    pub fn min(&self, axes: &[usize]) -> Result<Array<T>, ArrayError> {
        self.reduce(axes, Reduction::Min, DEFAULT_SPLIT_EVERY, false)
    }

    /// Maximum over `axes` (NaN propagates).
    pub fn max(&self, axes: &[usize]) -> Result<Array<T>, ArrayError> {
        self.reduce(axes, Reduction::Max, DEFAULT_SPLIT_EVERY, false)
    }

    /// Index of the minimum along `axis` (`None`: over the flattened array).
    pub fn argmin(&self, axis: Option<usize>) -> Result<Array<i64>, ArrayError> {
        self.reduce(axis.as_slice(), Reduction::ArgMin, DEFAULT_SPLIT_EVERY, false)
    }

    /// Index of the maximum along `axis` (`None`: over the flattened array).
    pub fn argmax(&self, axis: Option<usize>) -> Result<Array<i64>, ArrayError> {
        self.reduce(axis.as_slice(), Reduction::ArgMax, DEFAULT_SPLIT_EVERY, false)
    }

    /// Whether any element is true (non-zero) over `axes`.
    pub fn any(&self, axes: &[usize]) -> Result<Array<bool>, ArrayError> {
        self.reduce(axes, Reduction::Any, DEFAULT_SPLIT_EVERY, false)
    }

    /// Whether all elements are true (non-zero) over `axes`.
    pub fn all(&self, axes: &[usize]) -> Result<Array<bool>, ArrayError> {
        self.reduce(axes, Reduction::All, DEFAULT_SPLIT_EVERY, false)
    }
}
