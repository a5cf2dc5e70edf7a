//! Linear algebra: transpose, matrix products by blocks, and tall-and-skinny
//! QR (TSQR: a QR per row block, then a QR of the stacked R factors, in a
//! tree) with least squares on top of it.

use ndarray::{s, Array1, Array2, ArrayD, IxDyn};

use super::block::{Block, BlockData, Element};
use super::ops::{binary_block, matmul_block, transpose_block};
use super::{Array, ArrayError, ChunkSpec};
use crate::delayed::Delayed;

impl<T: Element> Array<T> {
    /// Reverses the axes (NumPy's `.T`).
    pub fn t(&self) -> Array<T> {
        let perm: Vec<usize> = (0..self.ndim()).rev().collect();
        self.transpose(&perm).expect("a reversal is a permutation")
    }

    /// Permutes the axes: axis `i` of the result is axis `perm[i]` of `self`.
    pub fn transpose(&self, perm: &[usize]) -> Result<Array<T>, ArrayError> {
        let mut seen = perm.to_vec();
        seen.sort_unstable();
        if seen != (0..self.ndim()).collect::<Vec<_>>() {
            return Err(ArrayError::Shape {
                array: self.name().into(),
                message: format!("{perm:?} is not a permutation of the {} axes", self.ndim()),
            });
        }
        let chunks = perm.iter().map(|&p| self.chunks()[p].clone()).collect();
        let blocks = self
            .blocks()
            .clone()
            .permuted_axes(IxDyn(perm))
            .mapv(|b| transpose_block(b, perm.to_vec()));
        let mut out = Array::from_blocks(format!("{}.T", self.name()), chunks, blocks);
        // Reductions of it reduce `self` instead (no transposed copies of blocks).
        out.expr = Some(std::sync::Arc::new(super::Expr::Transpose {
            perm: perm.to_vec(),
            src: self.clone(),
        }));
        Ok(out)
    }

    /// Matrix product of 2-d arrays; the contracted axis is rechunked to
    /// common boundaries when the two sides differ.
    pub fn matmul(&self, other: &Array<T>) -> Result<Array<T>, ArrayError> {
        let name = format!("matmul({}, {})", self.name(), other.name());
        let (sa, sb) = (self.shape(), other.shape());
        if sa.len() != 2 || sb.len() != 2 {
            return Err(ArrayError::Shape {
                array: name,
                message: format!("matmul needs 2-d arrays, got shapes {sa:?} and {sb:?}"),
            });
        }
        if sa[1] != sb[0] {
            return Err(ArrayError::Shape {
                array: name,
                message: format!(
                    "shapes {sa:?} and {sb:?} are not aligned: {} (axis 1) != {} (axis 0)",
                    sa[1], sb[0]
                ),
            });
        }
        let k = super::elementwise::common_chunks(&self.chunks()[1], &other.chunks()[0]);
        let a = self.rechunk(ChunkSpec::Explicit(vec![self.chunks()[0].clone(), k.clone()]))?;
        let b = other.rechunk(ChunkSpec::Explicit(vec![k, other.chunks()[1].clone()]))?;
        let (ga, gb) = (a.blocks().shape()[0], b.blocks().shape()[1]);
        // A·Aᵀ is symmetric: below the diagonal, blocks are transposes of
        // those above (keys are content tokens, so Aᵀ is recognized by its keys).
        let at = a.t();
        let symmetric = at.chunks() == b.chunks()
            && at.blocks().iter().zip(b.blocks().iter()).all(|(x, y)| x.key() == y.key());
        // Each output block sums its products in groups of two, then adds the
        // groups in a tree: tasks of similar size keep every thread busy
        // even when there are fewer output blocks than threads.
        const GROUP: usize = 2;
        let mut blocks = ArrayD::from_shape_fn(IxDyn(&[ga, gb]), |o| {
            let row: Vec<Delayed<Block>> = a.blocks().slice(s![o[0], ..]).iter().cloned().collect();
            // For A·Aᵀ the right operands are A's own blocks, transposed as
            // views inside the task (no transposed copies; the diagonal's
            // terms x·xᵀ share one block, which BLAS turns into DSYRK).
            let (col, transpose_b): (Vec<Delayed<Block>>, bool) = if symmetric {
                (a.blocks().slice(s![o[1], ..]).iter().cloned().collect(), true)
            } else {
                (b.blocks().slice(s![.., o[1]]).iter().cloned().collect(), false)
            };
            let mut parts: Vec<Delayed<Block>> = row
                .chunks(GROUP)
                .zip(col.chunks(GROUP))
                .map(|(r, c)| matmul_block(r.to_vec(), c.to_vec(), transpose_b))
                .collect();
            while parts.len() > 1 {
                parts = parts
                    .chunks(2)
                    .map(|p| {
                        if p.len() == 2 {
                            binary_block(&p[0], &p[1], super::ops::BinOp::Add)
                        } else {
                            p[0].clone()
                        }
                    })
                    .collect();
            }
            parts.pop().expect("at least one product")
        });
        if symmetric {
            for i in 0..ga {
                for j in 0..i {
                    blocks[[i, j]] = transpose_block(blocks[[j, i]].clone(), vec![1, 0]);
                }
            }
        }
        Ok(Array::from_blocks(name, vec![a.chunks()[0].clone(), b.chunks()[1].clone()], blocks))
    }

    /// Same as [`Array::matmul`].
    pub fn dot(&self, other: &Array<T>) -> Result<Array<T>, ArrayError> {
        self.matmul(other)
    }
}

/// The R factor of a Householder QR of `a` (min(m, n) × n, upper triangular).
pub fn householder_r(a: ndarray::ArrayView2<'_, f64>) -> Array2<f64> {
    let (m, n) = a.dim();
    let mut r = a.to_owned();
    for j in 0..n.min(m) {
        let norm = r.slice(s![j.., j]).dot(&r.slice(s![j.., j])).sqrt();
        if norm == 0.0 {
            continue;
        }
        let alpha = if r[[j, j]] > 0.0 { -norm } else { norm };
        let mut v: Array1<f64> = r.slice(s![j.., j]).to_owned();
        v[0] -= alpha;
        let vv = v.dot(&v);
        if vv == 0.0 {
            continue;
        }
        for c in j..n {
            let f = 2.0 * v.dot(&r.slice(s![j.., c])) / vv;
            r.slice_mut(s![j.., c]).scaled_add(-f, &v);
        }
    }
    let k = m.min(n);
    let mut out = r.slice(s![..k, ..]).to_owned();
    for i in 0..k {
        for j in 0..i.min(n) {
            out[[i, j]] = 0.0;
        }
    }
    out
}

crate::op! {
    /// The R factor of one block (or of stacked R factors).
    pub fn qr_r_block(parts: Vec<Block>) -> Result<Block, String> {
        let mats: Vec<ndarray::Array2<f64>> = parts
            .into_iter()
            .map(|b| match b.into_data() {
                BlockData::F64(a) => a.into_dimensionality::<ndarray::Ix2>().map_err(|e| e.to_string()),
                other => Err(format!("QR needs float64 blocks, got {}", other.dtype())),
            })
            .collect::<Result<_, _>>()?;
        let views: Vec<_> = mats.iter().map(|m| m.view()).collect();
        let stacked = ndarray::concatenate(ndarray::Axis(0), &views).map_err(|e| e.to_string())?;
        Ok(Block::new(BlockData::F64(householder_r(stacked.view()).into_dyn())))
    }

    /// Solves `R[:n, :n] x = R[:n, n]` (the last column of an augmented R is Qᵀb).
    pub fn solve_augmented_r(r: Block) -> Result<Block, String> {
        let r = match r.into_data() {
            BlockData::F64(a) => a.into_dimensionality::<ndarray::Ix2>().map_err(|e| e.to_string())?,
            other => return Err(format!("expected float64, got {}", other.dtype())),
        };
        let n = r.ncols() - 1;
        if r.nrows() < n {
            return Err(format!("least squares needs at least as many rows as columns ({n})"));
        }
        let scale = (0..n).map(|i| r[[i, i]].abs()).fold(0.0, f64::max);
        let mut x = Array1::<f64>::zeros(n);
        for i in (0..n).rev() {
            if r[[i, i]].abs() <= scale * 1e-13 {
                return Err(format!("the matrix is rank deficient (R[{i},{i}] = {:e})", r[[i, i]]));
            }
            let acc: f64 = (i + 1..n).map(|j| r[[i, j]] * x[j]).sum();
            x[i] = (r[[i, n]] - acc) / r[[i, i]];
        }
        Ok(Block::new(BlockData::F64(x.into_dyn())))
    }
}

fn tsqr_tree(leaves: Vec<Delayed<Block>>) -> Delayed<Block> {
    let mut level: Vec<Delayed<Block>> = leaves.into_iter().map(|b| qr_r_block(vec![b])).collect();
    while level.len() > 1 {
        level = level
            .chunks(super::reduce::DEFAULT_SPLIT_EVERY)
            .map(|c| qr_r_block(c.to_vec()))
            .collect();
    }
    level.pop().expect("at least one block")
}

fn tall_skinny(a: &Array<f64>, what: &str) -> Result<Array<f64>, ArrayError> {
    let s = a.shape();
    if s.len() != 2 || s[0] < s[1] {
        return Err(ArrayError::Shape {
            array: a.name().into(),
            message: format!("{what} needs a tall 2-d array (rows >= columns), got shape {s:?}"),
        });
    }
    // One column block: the row blocks are the leaves.
    a.rechunk(ChunkSpec::Explicit(vec![a.chunks()[0].clone(), vec![s[1]]]))
}

/// The R factor of a tall-and-skinny array by TSQR (its signs may differ from LAPACK's row by row).
pub fn tsqr_r(a: &Array<f64>) -> Result<Array<f64>, ArrayError> {
    let a = tall_skinny(a, "QR")?;
    let n = a.shape()[1];
    let r = tsqr_tree(a.blocks().iter().cloned().collect());
    Ok(Array::from_blocks(
        format!("qr_r({})", a.name()),
        vec![vec![n], vec![n]],
        ArrayD::from_elem(IxDyn(&[1, 1]), r),
    ))
}

/// Least squares `argmin_x ‖a x − b‖` for tall-and-skinny `a`, by TSQR of `[a | b]`.
pub fn lstsq(a: &Array<f64>, b: &Array<f64>) -> Result<Array<f64>, ArrayError> {
    let (sa, sb) = (a.shape(), b.shape());
    if sb.len() != 1 || sa.first() != sb.first() {
        return Err(ArrayError::Shape {
            array: format!("lstsq({}, {})", a.name(), b.name()),
            message: format!(
                "a has shape {sa:?} and b {sb:?}: b must be 1-d with a's number of rows"
            ),
        });
    }
    let a = tall_skinny(a, "lstsq")?;
    let n = sa[1];
    let b2 = b.rechunk(ChunkSpec::Explicit(vec![a.chunks()[0].clone()]))?.expand_dims(1)?;
    let aug = super::index::concatenate(&[a, b2], 1)?;
    let aug = aug.rechunk(ChunkSpec::Explicit(vec![aug.chunks()[0].clone(), vec![n + 1]]))?;
    let r = tsqr_tree(aug.blocks().iter().cloned().collect());
    let x = solve_augmented_r(r);
    Ok(Array::from_blocks(
        format!("lstsq({})", aug.name()),
        vec![vec![n]],
        ArrayD::from_elem(IxDyn(&[1]), x),
    ))
}
