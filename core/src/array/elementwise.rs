//! Elementwise operations with NumPy broadcasting. Operands are aligned block
//! by block: axes of length 1 broadcast, other axes must have the same length
//! and are rechunked to common chunk boundaries when their chunks differ.

use ndarray::{ArrayD, Dimension, IxDyn};

use super::block::{Block, Element};
use super::fuse::{Fused, Step};
use super::ops::{BinOp, UnOp};
use super::{Array, ArrayError};
use crate::delayed::Delayed;

/// Common chunks of two chunkings of one axis (the union of their boundaries).
pub(crate) fn common_chunks(a: &[usize], b: &[usize]) -> Vec<usize> {
    let (oa, ob) = (super::offsets(a), super::offsets(b));
    let mut cuts: Vec<usize> = oa.iter().chain(ob.iter()).copied().collect();
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2).map(|w| w[1] - w[0]).collect()
}

/// Chunks and grids of operands broadcast together: for each operand, its
/// rechunked form and, per output axis, whether it broadcasts there.
pub(crate) fn align(
    names: &str,
    shapes: &[(Vec<usize>, Vec<Vec<usize>>)],
) -> Result<Vec<Vec<usize>>, ArrayError> {
    let ndim = shapes.iter().map(|(s, _)| s.len()).max().unwrap_or(0);
    let mut out: Vec<Vec<usize>> = vec![vec![1]; ndim];
    let mut lens = vec![1usize; ndim];
    for (shape, chunks) in shapes {
        let pad = ndim - shape.len();
        for (ax, (&n, c)) in shape.iter().zip(chunks).enumerate() {
            let o = ax + pad;
            if n == 1 {
                continue;
            }
            if lens[o] == 1 {
                lens[o] = n;
                out[o] = c.clone();
            } else if lens[o] == n {
                out[o] = common_chunks(&out[o], c);
            } else {
                let all: Vec<&Vec<usize>> = shapes.iter().map(|(s, _)| s).collect();
                return Err(ArrayError::Shape {
                    array: names.to_string(),
                    message: format!(
                        "shapes {all:?} cannot be broadcast together (axis {o}: {} vs {n})",
                        lens[o]
                    ),
                });
            }
        }
    }
    Ok(out)
}

impl<T: Element> Array<T> {
    /// This array rechunked to `chunks` on the axes where it is not broadcast
    /// (length 1), as an operand of an `ndim`-dimensional result; its blocks
    /// indexed by the output's grid.
    pub(crate) fn operand_blocks(
        &self,
        out_chunks: &[Vec<usize>],
    ) -> Result<impl Fn(&[usize]) -> Delayed<Block>, ArrayError> {
        let ndim = out_chunks.len();
        let pad = ndim - self.ndim();
        let shape = self.shape();
        let target: Vec<Vec<usize>> = shape
            .iter()
            .enumerate()
            .map(|(ax, &n)| if n == 1 { vec![1] } else { out_chunks[ax + pad].clone() })
            .collect();
        let me = if target == self.chunks() {
            self.clone()
        } else {
            self.rechunk(super::ChunkSpec::Explicit(target))?
        };
        let blocks = me.blocks().clone();
        Ok(move |o: &[usize]| {
            let i: Vec<usize> =
                (0..ndim - pad).map(|ax| if shape[ax] == 1 { 0 } else { o[ax + pad] }).collect();
            blocks[IxDyn(&i)].clone()
        })
    }

    fn binary<U: Element, R: Element>(
        &self,
        other: &Array<U>,
        op: BinOp,
    ) -> Result<Array<R>, ArrayError> {
        let name = format!("{op:?}({}, {})", self.name(), other.name()).to_lowercase();
        let chunks = align(
            &name,
            &[(self.shape(), self.chunks().to_vec()), (other.shape(), other.chunks().to_vec())],
        )?;
        Fused::join(vec![Fused::of(self), Fused::of(other)], |r| Step::Binary(op, r[0], r[1]))
            .build(name, chunks)
    }

    /// `step` of this array, fused with the program that makes it (same chunks).
    fn then<R: Element>(&self, name: String, step: impl FnOnce(usize) -> Step) -> Array<R> {
        Fused::join(vec![Fused::of(self)], |r| step(r[0]))
            .build(name, self.chunks().to_vec())
            .expect("the leaves were aligned to these chunks when this array was built")
    }

    /// `self op other`, same element type (broadcasting).
    pub fn zip_with(&self, other: &Array<T>, op: BinOp) -> Result<Array<T>, ArrayError> {
        if op.is_comparison() {
            return Err(ArrayError::Shape {
                array: self.name().into(),
                message: format!("{op:?} gives a bool array: use compare()"),
            });
        }
        let mut out = self.binary(other, op)?;
        if matches!(op, BinOp::Add | BinOp::Sub)
            && self.shape() == other.shape()
            && T::NAME != bool::NAME
        {
            // Remembered so that sums and means of it reduce each side instead.
            out.expr = Some(std::sync::Arc::new(super::Expr::Linear {
                op,
                lhs: self.clone(),
                rhs: other.clone(),
            }));
        }
        Ok(out)
    }

    /// `self op other` for comparisons (bool result).
    pub fn compare(&self, other: &Array<T>, op: BinOp) -> Result<Array<bool>, ArrayError> {
        self.binary(other, op)
    }

    /// `self op s` (or `s op self` when `scalar_first`).
    pub fn scalar_op(&self, s: T, op: BinOp, scalar_first: bool) -> Array<T> {
        let name = format!("{op:?}({}, {s:?})", self.name()).to_lowercase();
        self.then(name, |arg| Step::Scalar { op, arg, value: s.scalar(), scalar_first })
    }

    /// `self op s` compared with a scalar (bool result).
    pub fn compare_scalar(&self, s: T, op: BinOp) -> Array<bool> {
        let name = format!("{op:?}({}, {s:?})", self.name()).to_lowercase();
        self.then(name, |arg| Step::Scalar { op, arg, value: s.scalar(), scalar_first: false })
    }

    /// An elementwise function.
    pub fn map_unary(&self, op: UnOp) -> Array<T> {
        self.then(format!("{op:?}({})", self.name()).to_lowercase(), |a| Step::Unary(op, a))
    }

    /// `self + other`
    pub fn add(&self, other: &Array<T>) -> Result<Array<T>, ArrayError> {
        self.zip_with(other, BinOp::Add)
    }
    /// `self - other`
    pub fn sub(&self, other: &Array<T>) -> Result<Array<T>, ArrayError> {
        self.zip_with(other, BinOp::Sub)
    }
    /// `self * other`
    pub fn mul(&self, other: &Array<T>) -> Result<Array<T>, ArrayError> {
        self.zip_with(other, BinOp::Mul)
    }
    /// `self / other` (floor division for integers)
    pub fn div(&self, other: &Array<T>) -> Result<Array<T>, ArrayError> {
        self.zip_with(other, BinOp::Div)
    }
    /// `self ** other`
    pub fn pow(&self, other: &Array<T>) -> Result<Array<T>, ArrayError> {
        self.zip_with(other, BinOp::Pow)
    }
    /// `self ** p`
    pub fn powf(&self, p: T) -> Array<T> {
        self.scalar_op(p, BinOp::Pow, false)
    }
    /// `e^self`
    pub fn exp(&self) -> Array<T> {
        self.map_unary(UnOp::Exp)
    }
    /// Natural logarithm.
    pub fn log(&self) -> Array<T> {
        self.map_unary(UnOp::Log)
    }
    /// Square root.
    pub fn sqrt(&self) -> Array<T> {
        self.map_unary(UnOp::Sqrt)
    }
    /// Absolute value.
    pub fn abs(&self) -> Array<T> {
        self.map_unary(UnOp::Abs)
    }
    /// `self < other`
    pub fn lt(&self, other: &Array<T>) -> Result<Array<bool>, ArrayError> {
        self.compare(other, BinOp::Lt)
    }
    /// `self > other`
    pub fn gt(&self, other: &Array<T>) -> Result<Array<bool>, ArrayError> {
        self.compare(other, BinOp::Gt)
    }

    /// Converts the elements to `U`.
    pub fn cast<U: Element>(&self) -> Array<U> {
        let dtype = super::ops::DType::of::<U>();
        self.then(format!("{}.as({})", self.name(), U::NAME), |a| Step::Cast(dtype, a))
    }

    /// Applies a registered-op constructor or closure to every block (the
    /// result must keep each block's shape: dask's `map_blocks` with the same chunks).
    pub fn map_blocks<U: Element>(
        &self,
        name: &str,
        f: impl Fn(&Delayed<Block>) -> Delayed<Block>,
    ) -> Array<U> {
        let blocks = self.blocks().map(f);
        Array::from_blocks(format!("{name}({})", self.name()), self.chunks().to_vec(), blocks)
    }

    /// Combines the aligned blocks of `self` and `other` with `f` (a
    /// `blockwise` of two operands with broadcasting; the result keeps the
    /// broadcast chunks).
    pub fn blockwise<U: Element, R: Element>(
        &self,
        other: &Array<U>,
        name: &str,
        f: impl Fn(Delayed<Block>, Delayed<Block>) -> Delayed<Block>,
    ) -> Result<Array<R>, ArrayError> {
        let chunks = align(
            name,
            &[(self.shape(), self.chunks().to_vec()), (other.shape(), other.chunks().to_vec())],
        )?;
        let (a, b) = (self.operand_blocks(&chunks)?, other.operand_blocks(&chunks)?);
        let grid: Vec<usize> = chunks.iter().map(Vec::len).collect();
        let blocks = ArrayD::from_shape_fn(IxDyn(&grid), |i| f(a(i.slice()), b(i.slice())));
        Ok(Array::from_blocks(name, chunks, blocks))
    }
}

/// `where(cond, a, b)`: elements of `a` where `cond` holds, else of `b` (broadcasting).
pub fn where_<T: Element>(
    cond: &Array<bool>,
    a: &Array<T>,
    b: &Array<T>,
) -> Result<Array<T>, ArrayError> {
    let name = format!("where({}, {}, {})", cond.name(), a.name(), b.name());
    let chunks = align(
        &name,
        &[
            (cond.shape(), cond.chunks().to_vec()),
            (a.shape(), a.chunks().to_vec()),
            (b.shape(), b.chunks().to_vec()),
        ],
    )?;
    Fused::join(vec![Fused::of(cond), Fused::of(a), Fused::of(b)], |r| {
        Step::Where(r[0], r[1], r[2])
    })
    .build(name, chunks)
}

macro_rules! operator {
    ($trait:ident, $method:ident, $op:ident) => {
        impl<T: Element> std::ops::$trait<&Array<T>> for &Array<T> {
            type Output = Result<Array<T>, ArrayError>;
            fn $method(self, rhs: &Array<T>) -> Self::Output {
                self.zip_with(rhs, BinOp::$op)
            }
        }
        impl<T: Element> std::ops::$trait<T> for &Array<T> {
            type Output = Array<T>;
            fn $method(self, rhs: T) -> Array<T> {
                self.scalar_op(rhs, BinOp::$op, false)
            }
        }
    };
}

operator!(Add, add, Add);
operator!(Sub, sub, Sub);
operator!(Mul, mul, Mul);
operator!(Div, div, Div);

impl<T: Element> std::ops::Neg for &Array<T> {
    type Output = Array<T>;
    fn neg(self) -> Array<T> {
        self.map_unary(UnOp::Neg)
    }
}
