//! Slicing, integer and mask indexing, joining and rechunking. Whole blocks
//! that a selection keeps are reused as they are (no task), so selecting a
//! block-aligned corner of an expression computes only that corner.

use ndarray::{ArrayD, Dimension, IxDyn};

use super::block::{Block, Element};
use super::ops::{assemble_block, expand_block, slice_block, take_block};
use super::{offsets, Array, ArrayError, ChunkSpec};
use crate::delayed::Delayed;

/// One axis of a selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sel {
    /// The whole axis.
    All,
    /// `start..stop` by `step` (negative values count from the end, as in
    /// Python; `None` bounds mean the end in the step's direction).
    Range {
        /// First index (default: the start for positive steps, the end for negative).
        start: Option<i64>,
        /// One past the last index.
        stop: Option<i64>,
        /// Step (non-zero).
        step: i64,
    },
    /// One index (the axis is dropped).
    Index(i64),
}

impl Sel {
    /// `start..stop` with step 1.
    pub fn range(start: i64, stop: i64) -> Sel {
        Sel::Range { start: Some(start), stop: Some(stop), step: 1 }
    }
}

/// A piece of one input chunk along one axis: (input chunk, local start, local end, step).
type Piece = (usize, isize, isize, isize);

/// The selected indices of an axis of length `len`, as Python's slice.indices.
fn resolve(
    name: &str,
    axis: usize,
    len: usize,
    sel: Sel,
) -> Result<(Vec<usize>, bool), ArrayError> {
    let n = len as i64;
    match sel {
        Sel::All => Ok(((0..len).collect(), false)),
        Sel::Index(i) => {
            let j = if i < 0 { i + n } else { i };
            if j < 0 || j >= n {
                return Err(ArrayError::OutOfRange { array: name.into(), axis, index: i, len });
            }
            Ok((vec![j as usize], true))
        }
        Sel::Range { step: 0, .. } => Err(ArrayError::Shape {
            array: name.into(),
            message: format!("slice step 0 on axis {axis}"),
        }),
        Sel::Range { start, stop, step } => {
            let clamp = |v: i64, lo: i64, hi: i64| v.max(lo).min(hi);
            let norm = |v: i64| if v < 0 { v + n } else { v };
            let out: Vec<usize> = if step > 0 {
                let s = clamp(norm(start.unwrap_or(0)), 0, n);
                let e = clamp(norm(stop.unwrap_or(n)), 0, n);
                (s..e).step_by(step as usize).map(|v| v as usize).collect()
            } else {
                let s = clamp(start.map(norm).unwrap_or(n - 1), -1, n - 1);
                let e = stop.map(|v| clamp(norm(v), -1, n - 1)).unwrap_or(-1);
                let mut v = Vec::new();
                let mut i = s;
                while i > e {
                    v.push(i as usize);
                    i += step;
                }
                v
            };
            Ok((out, false))
        }
    }
}

/// Splits selected indices into runs per input chunk: output chunks and the
/// pieces (with a constant step) they come from.
fn plan_axis(chunks: &[usize], idx: &[usize]) -> (Vec<usize>, Vec<Vec<Piece>>) {
    let starts = offsets(chunks);
    let chunk_of = |i: usize| starts.partition_point(|&s| s <= i) - 1;
    let mut out_chunks = Vec::new();
    let mut pieces: Vec<Vec<Piece>> = Vec::new();
    let mut k = 0;
    while k < idx.len() {
        let c = chunk_of(idx[k]);
        let mut run = vec![idx[k]];
        while k + run.len() < idx.len() && chunk_of(idx[k + run.len()]) == c {
            run.push(idx[k + run.len()]);
        }
        let step = if run.len() > 1 { run[1] as isize - run[0] as isize } else { 1 };
        let regular = run.windows(2).all(|w| w[1] as isize - w[0] as isize == step);
        let local = |i: usize| (i - starts[c]) as isize;
        let piece_list: Vec<Piece> = if regular && step > 0 {
            vec![(c, local(run[0]), local(*run.last().expect("non-empty")) + 1, step)]
        } else if regular {
            // ndarray's negative step walks start..end backwards from its end.
            vec![(c, local(*run.last().expect("non-empty")), local(run[0]) + 1, step)]
        } else {
            run.iter().map(|&i| (c, local(i), local(i) + 1, 1)).collect()
        };
        out_chunks.push(run.len());
        pieces.push(piece_list);
        k += run.len();
    }
    if out_chunks.is_empty() {
        out_chunks.push(0);
        pieces.push(vec![(0, 0, 0, 1)]);
    }
    (out_chunks, pieces)
}

impl<T: Element> Array<T> {
    /// Blocks assembled from per-axis piece plans.
    fn gather(
        &self,
        name: String,
        out_chunks: Vec<Vec<usize>>,
        plans: &[Vec<Vec<Piece>>],
        drop: &[usize],
    ) -> Array<T> {
        let grid: Vec<usize> = plans.iter().map(Vec::len).collect();
        let chunks = self.chunks().to_vec();
        let blocks = ArrayD::from_shape_fn(IxDyn(&grid), |o| {
            let per_axis: Vec<&Vec<Piece>> = (0..grid.len()).map(|ax| &plans[ax][o[ax]]).collect();
            let piece_grid: Vec<usize> = per_axis.iter().map(|p| p.len()).collect();
            let pieces: Vec<Delayed<Block>> = ndarray::indices(IxDyn(&piece_grid))
                .into_iter()
                .map(|pi| {
                    let parts: Vec<Piece> =
                        (0..grid.len()).map(|ax| per_axis[ax][pi[ax]]).collect();
                    let src: Vec<usize> = parts.iter().map(|p| p.0).collect();
                    let whole = parts
                        .iter()
                        .enumerate()
                        .all(|(ax, p)| p.1 == 0 && p.2 as usize == chunks[ax][p.0] && p.3 == 1);
                    let b = self.blocks()[IxDyn(&src)].clone();
                    if whole && drop.is_empty() {
                        b
                    } else {
                        slice_block(
                            b,
                            parts.iter().map(|p| (p.1, p.2, p.3)).collect::<Vec<_>>(),
                            Vec::<usize>::new(),
                        )
                    }
                })
                .collect();
            let one = if pieces.len() == 1 {
                pieces.into_iter().next().expect("one")
            } else {
                assemble_block(pieces, piece_grid)
            };
            if drop.is_empty() {
                one
            } else {
                let whole: Vec<(isize, isize, isize)> =
                    (0..grid.len()).map(|ax| (0, out_chunks[ax][o[ax]] as isize, 1)).collect();
                slice_block(one, whole, drop.to_vec())
            }
        });
        // Dropped axes leave the grid.
        let kept: Vec<usize> = (0..grid.len()).filter(|ax| !drop.contains(ax)).collect();
        let out_grid: Vec<usize> = kept.iter().map(|&ax| grid[ax]).collect();
        let blocks = ArrayD::from_shape_vec(IxDyn(&out_grid), blocks.into_iter().collect())
            .expect("dropped axes have one block");
        let out_chunks = kept.iter().map(|&ax| out_chunks[ax].clone()).collect();
        Array::from_blocks(name, out_chunks, blocks)
    }

    /// `self[sel]` with one [`Sel`] per axis (missing trailing axes are `All`).
    pub fn slice(&self, sel: &[Sel]) -> Result<Array<T>, ArrayError> {
        if sel.len() > self.ndim() {
            return Err(ArrayError::Shape {
                array: self.name().into(),
                message: format!(
                    "{} indices for an array of {} dimensions",
                    sel.len(),
                    self.ndim()
                ),
            });
        }
        let shape = self.shape();
        let mut out_chunks = Vec::new();
        let mut plans = Vec::new();
        let mut drop = Vec::new();
        for (ax, &len) in shape.iter().enumerate() {
            let (idx, dropped) =
                resolve(self.name(), ax, len, sel.get(ax).copied().unwrap_or(Sel::All))?;
            if dropped {
                drop.push(ax);
            }
            let (c, p) = plan_axis(&self.chunks()[ax], &idx);
            out_chunks.push(c);
            plans.push(p);
        }
        Ok(self.gather(format!("{}[{sel:?}]", self.name()), out_chunks, &plans, &drop))
    }

    /// The entries of `axis` where `mask` is true (as NumPy's `a[mask]` along an axis).
    pub fn select_mask(&self, axis: usize, mask: &[bool]) -> Result<Array<T>, ArrayError> {
        let shape = self.shape();
        if axis >= self.ndim() {
            return Err(ArrayError::Shape {
                array: self.name().into(),
                message: format!(
                    "axis {axis} does not exist: the array has {} dimensions",
                    self.ndim()
                ),
            });
        }
        if mask.len() != shape[axis] {
            return Err(ArrayError::Shape {
                array: self.name().into(),
                message: format!(
                    "boolean mask of length {} for axis {axis} of length {}",
                    mask.len(),
                    shape[axis]
                ),
            });
        }
        let idx: Vec<usize> = mask.iter().enumerate().filter(|(_, &m)| m).map(|(i, _)| i).collect();
        self.take(axis, &idx)
    }

    /// The entries `idx` of `axis`, in that order.
    pub fn take(&self, axis: usize, idx: &[usize]) -> Result<Array<T>, ArrayError> {
        let shape = self.shape();
        if let Some(&bad) = idx.iter().find(|&&i| i >= shape[axis]) {
            return Err(ArrayError::OutOfRange {
                array: self.name().into(),
                axis,
                index: bad as i64,
                len: shape[axis],
            });
        }
        // Runs within one chunk become one take each.
        let starts = offsets(&self.chunks()[axis]);
        let chunk_of = |i: usize| starts.partition_point(|&s| s <= i) - 1;
        let mut runs: Vec<(usize, Vec<usize>)> = Vec::new();
        for &i in idx {
            let c = chunk_of(i);
            match runs.last_mut() {
                Some((rc, v)) if *rc == c => v.push(i - starts[c]),
                _ => runs.push((c, vec![i - starts[c]])),
            }
        }
        let mut chunks = self.chunks().to_vec();
        chunks[axis] =
            if runs.is_empty() { vec![0] } else { runs.iter().map(|(_, v)| v.len()).collect() };
        let mut grid: Vec<usize> = self.blocks().shape().to_vec();
        grid[axis] = runs.len().max(1);
        let blocks = ArrayD::from_shape_fn(IxDyn(&grid), |o| {
            let mut src = o.slice().to_vec();
            match runs.get(o[axis]) {
                Some((c, local)) => {
                    src[axis] = *c;
                    take_block(&self.blocks()[IxDyn(&src)], axis, local.clone())
                }
                None => {
                    src[axis] = 0;
                    take_block(&self.blocks()[IxDyn(&src)], axis, Vec::<usize>::new())
                }
            }
        });
        Ok(Array::from_blocks(format!("{}.take({axis})", self.name()), chunks, blocks))
    }

    /// The same values with new chunks.
    pub fn rechunk(&self, chunks: impl Into<ChunkSpec>) -> Result<Array<T>, ArrayError> {
        let target = chunks.into().resolve(self.name(), &self.shape())?;
        if target == self.chunks() {
            return Ok(self.clone());
        }
        let plans: Vec<Vec<Vec<Piece>>> = target
            .iter()
            .zip(self.chunks())
            .map(|(t, c)| {
                let starts = offsets(c);
                let mut at = 0;
                t.iter()
                    .map(|&len| {
                        let (lo, hi) = (at, at + len);
                        at = hi;
                        (0..c.len())
                            .filter(|&k| starts[k] < hi && starts[k + 1] > lo && c[k] > 0)
                            .map(|k| {
                                (
                                    k,
                                    (lo.max(starts[k]) - starts[k]) as isize,
                                    (hi.min(starts[k + 1]) - starts[k]) as isize,
                                    1,
                                )
                            })
                            .collect::<Vec<Piece>>()
                    })
                    .map(|p| if p.is_empty() { vec![(0, 0, 0, 1)] } else { p })
                    .collect()
            })
            .collect();
        Ok(self.gather(format!("{}.rechunk", self.name()), target, &plans, &[]))
    }

    /// Inserts a length-1 axis at `axis`.
    pub fn expand_dims(&self, axis: usize) -> Result<Array<T>, ArrayError> {
        if axis > self.ndim() {
            return Err(ArrayError::Shape {
                array: self.name().into(),
                message: format!("axis {axis} for {} dimensions", self.ndim()),
            });
        }
        let mut chunks = self.chunks().to_vec();
        chunks.insert(axis, vec![1]);
        let blocks = self.blocks().mapv(|b| expand_block(b, axis)).insert_axis(ndarray::Axis(axis));
        Ok(Array::from_blocks(self.name(), chunks, blocks))
    }
}

/// Joins arrays along an existing `axis` (other axes must match; their chunks are unified).
pub fn concatenate<T: Element>(arrays: &[Array<T>], axis: usize) -> Result<Array<T>, ArrayError> {
    let first = arrays.first().ok_or_else(|| ArrayError::Shape {
        array: "concatenate".into(),
        message: "no arrays to join".into(),
    })?;
    let name =
        format!("concatenate({})", arrays.iter().map(Array::name).collect::<Vec<_>>().join(", "));
    let ndim = first.ndim();
    if axis >= ndim {
        return Err(ArrayError::Shape {
            array: name,
            message: format!("axis {axis} does not exist: the arrays have {ndim} dimensions"),
        });
    }
    let shape0 = first.shape();
    for a in arrays {
        let s = a.shape();
        if s.len() != ndim || (0..ndim).any(|ax| ax != axis && s[ax] != shape0[ax]) {
            return Err(ArrayError::Shape {
                array: name,
                message: format!("shapes {shape0:?} and {s:?} differ outside axis {axis}"),
            });
        }
    }
    // Common chunks on the other axes.
    let mut common = first.chunks().to_vec();
    for a in arrays {
        for ax in (0..ndim).filter(|&ax| ax != axis) {
            common[ax] = super::elementwise::common_chunks(&common[ax], &a.chunks()[ax]);
        }
    }
    let mut parts = Vec::new();
    for a in arrays {
        let mut target = common.clone();
        target[axis] = a.chunks()[axis].clone();
        parts.push(a.rechunk(ChunkSpec::Explicit(target))?);
    }
    let mut chunks = common;
    chunks[axis] = parts.iter().flat_map(|p| p.chunks()[axis].clone()).collect();
    let views: Vec<_> = parts.iter().map(|p| p.blocks().view()).collect();
    let blocks =
        ndarray::concatenate(ndarray::Axis(axis), &views).expect("grids agree off the axis");
    Ok(Array::from_blocks(name, chunks, blocks))
}

/// Stacks same-shaped arrays along a new `axis`.
pub fn stack<T: Element>(arrays: &[Array<T>], axis: usize) -> Result<Array<T>, ArrayError> {
    let expanded: Vec<Array<T>> =
        arrays.iter().map(|a| a.expand_dims(axis)).collect::<Result<_, _>>()?;
    if let Some(first) = arrays.first() {
        if let Some(other) = arrays.iter().find(|a| a.shape() != first.shape()) {
            return Err(ArrayError::Shape {
                array: format!("stack({}, {})", first.name(), other.name()),
                message: format!("shapes {:?} and {:?} differ", first.shape(), other.shape()),
            });
        }
    }
    concatenate(&expanded, axis)
}
