//! Chunked N-dimensional arrays: `dask.array` for Rust.
//!
//! An [`Array<T>`] is a grid of blocks, each a task in a graph that yields an
//! ndarray ([`Block`]). Operations build new graphs block by block, with
//! registered ops, so arrays compute on the local schedulers and on a
//! cluster alike; nothing is computed until [`Array::compute`] or
//! [`Array::persist`]. Keys are content tokens: the same expression on the
//! same inputs is the same graph node.
//!
//! * [`block`]: block values and element types;
//! * [`create`]: zeros, ones, full, arange, linspace, eye, from_array, random
//!   (numbers from [`sample`]);
//! * [`elementwise`]: arithmetic, comparisons, functions, `where`, with
//!   NumPy broadcasting, `map_blocks`;
//! * [`fuse`]: chains of elementwise operations as one task per block;
//! * [`reduce`]: tree reductions along any axes;
//! * [`linalg`]: transpose, matmul, tall-and-skinny QR and least squares;
//! * [`index`]: slicing, masks, concatenate, stack, rechunk;
//! * [`npy`]: lazy `.npy` files and folders of chunk files;
//! * [`zarr`]: Zarr v2 and v3 arrays;
//! * `hdf5` (cargo feature `hdf5`): HDF5 datasets.

#[cfg(feature = "blas")]
mod blas;
pub mod block;
pub mod create;
pub mod elementwise;
pub mod fuse;
#[cfg(feature = "hdf5")]
pub mod hdf5;
pub mod index;
pub mod linalg;
pub mod npy;
pub mod ops;
pub mod reduce;
pub mod sample;
pub mod zarr;

use std::marker::PhantomData;
use std::path::Path;

use ndarray::{ArrayD, Dimension, IxDyn};

pub use block::{block_memory, reset_peak, Block, BlockData, BlockMemory, Element, Scalar};

use crate::delayed::{compute_many, graph_of, AnyDelayed, Delayed};
use crate::local::{default_scheduler, ComputeOptions, Scheduler};
use crate::ComputeError;

/// What went wrong building an array expression (errors while computing
/// come back as [`ComputeError`]s naming the op and, for files, the path).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArrayError {
    /// Chunk sizes that do not add up to the shape, or zero-sized chunks.
    #[error("array `{array}`: {message}")]
    Chunks {
        /// The array.
        array: String,
        /// What is wrong.
        message: String,
    },
    /// Shapes that cannot be combined.
    #[error("array `{array}`: {message}")]
    Shape {
        /// The array (or the operation).
        array: String,
        /// What is wrong.
        message: String,
    },
    /// An index or slice outside the array.
    #[error("array `{array}`: index {index} is out of range for axis {axis} of length {len}")]
    OutOfRange {
        /// The array.
        array: String,
        /// The axis.
        axis: usize,
        /// The offending index.
        index: i64,
        /// The axis length.
        len: usize,
    },
    /// A file that cannot be used.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Computing failed.
    #[error(transparent)]
    Compute(Box<ComputeError>),
}

impl From<ComputeError> for ArrayError {
    fn from(e: ComputeError) -> Self {
        ArrayError::Compute(Box::new(e))
    }
}

/// How to chunk each axis.
#[derive(Debug, Clone, PartialEq)]
pub enum ChunkSpec {
    /// The same chunk size on every axis (the last chunk may be smaller).
    Uniform(usize),
    /// A chunk size per axis.
    PerAxis(Vec<usize>),
    /// Explicit chunk sizes per axis (they must add up to the shape).
    Explicit(Vec<Vec<usize>>),
}

impl From<usize> for ChunkSpec {
    fn from(c: usize) -> Self {
        ChunkSpec::Uniform(c)
    }
}

impl From<&[usize]> for ChunkSpec {
    fn from(c: &[usize]) -> Self {
        ChunkSpec::PerAxis(c.to_vec())
    }
}

impl<const N: usize> From<[usize; N]> for ChunkSpec {
    fn from(c: [usize; N]) -> Self {
        ChunkSpec::PerAxis(c.to_vec())
    }
}

impl From<Vec<Vec<usize>>> for ChunkSpec {
    fn from(c: Vec<Vec<usize>>) -> Self {
        ChunkSpec::Explicit(c)
    }
}

/// Regular chunks of `size` covering `len` (the last one may be smaller).
fn regular(len: usize, size: usize) -> Vec<usize> {
    if len == 0 {
        return vec![0];
    }
    let mut out = vec![size; len / size];
    if len % size != 0 {
        out.push(len % size);
    }
    out
}

impl ChunkSpec {
    /// The chunk sizes for `shape`, checked.
    pub fn resolve(&self, array: &str, shape: &[usize]) -> Result<Vec<Vec<usize>>, ArrayError> {
        let bad = |message: String| ArrayError::Chunks { array: array.to_string(), message };
        match self {
            ChunkSpec::Uniform(0) => {
                Err(bad("chunk size 0; chunk sizes must be at least 1".into()))
            }
            ChunkSpec::Uniform(c) => Ok(shape.iter().map(|&n| regular(n, *c)).collect()),
            ChunkSpec::PerAxis(c) if c.len() != shape.len() => Err(bad(format!(
                "{} chunk sizes for {} dimensions (shape {shape:?})",
                c.len(),
                shape.len()
            ))),
            ChunkSpec::PerAxis(c) => match c.iter().position(|&s| s == 0) {
                Some(axis) => {
                    Err(bad(format!("chunk size 0 on axis {axis}; chunk sizes must be at least 1")))
                }
                None => Ok(shape.iter().zip(c).map(|(&n, &s)| regular(n, s)).collect()),
            },
            ChunkSpec::Explicit(c) => {
                if c.len() != shape.len() {
                    return Err(bad(format!(
                        "chunks for {} dimensions, but the shape {shape:?} has {}",
                        c.len(),
                        shape.len()
                    )));
                }
                for (axis, (sizes, &n)) in c.iter().zip(shape).enumerate() {
                    let total: usize = sizes.iter().sum();
                    if total != n {
                        return Err(bad(format!("chunks {sizes:?} on axis {axis} add up to {total}, but the axis has length {n}")));
                    }
                    if n > 0 && sizes.contains(&0) {
                        return Err(bad(format!(
                            "chunks {sizes:?} on axis {axis} contain an empty chunk"
                        )));
                    }
                    if sizes.is_empty() {
                        return Err(bad(format!("no chunks on axis {axis}")));
                    }
                }
                Ok(c.clone())
            }
        }
    }
}

/// Start offsets of chunks.
pub(crate) fn offsets(chunks: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(chunks.len() + 1);
    let mut at = 0;
    out.push(0);
    for c in chunks {
        at += c;
        out.push(at);
    }
    out
}

/// How an array was made, where that lets later operations rewrite the
/// expression (a sum of a sum is a sum of sums: no intermediate blocks).
pub(crate) enum Expr<T: Element> {
    /// `lhs op rhs` of same-shaped operands, for `op` in {Add, Sub}.
    Linear { op: ops::BinOp, lhs: Array<T>, rhs: Array<T> },
    /// `src` with its axes permuted (axis `i` is `src`'s axis `perm[i]`).
    Transpose { perm: Vec<usize>, src: Array<T> },
}

/// Each block's `(start, end)` range on every axis, laid out like the block grid.
pub(crate) fn regions(chunks: &[Vec<usize>]) -> ArrayD<Vec<(usize, usize)>> {
    let grid: Vec<usize> = chunks.iter().map(Vec::len).collect();
    let starts: Vec<Vec<usize>> = chunks.iter().map(|c| offsets(c)).collect();
    ArrayD::from_shape_fn(IxDyn(&grid), |i| {
        (0..grid.len()).map(|ax| (starts[ax][i[ax]], starts[ax][i[ax] + 1])).collect()
    })
}

/// Slice arguments selecting `region`.
pub(crate) fn region_slice(region: &[(usize, usize)]) -> Vec<ndarray::SliceInfoElem> {
    region
        .iter()
        .map(|&(a, b)| ndarray::SliceInfoElem::Slice {
            start: a as isize,
            end: Some(b as isize),
            step: 1,
        })
        .collect()
}

/// A lazy, chunked N-dimensional array of `T`.
pub struct Array<T: Element> {
    name: String,
    chunks: Vec<Vec<usize>>,
    blocks: ArrayD<Delayed<Block>>,
    pub(crate) expr: Option<std::sync::Arc<Expr<T>>>,
    /// The elementwise program this array's blocks run, if it has one.
    pub(crate) fused: Option<std::sync::Arc<fuse::Fused>>,
    _t: PhantomData<fn() -> T>,
}

impl<T: Element> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array {
            name: self.name.clone(),
            chunks: self.chunks.clone(),
            blocks: self.blocks.clone(),
            expr: self.expr.clone(),
            fused: self.fused.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Element> std::fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Array<{}>(`{}`, shape {:?}, chunks {:?})",
            T::NAME,
            self.name,
            self.shape(),
            self.chunks
        )
    }
}

impl<T: Element> Array<T> {
    /// An array from its block tasks (the grid's shape must match `chunks`).
    pub fn from_blocks(
        name: impl Into<String>,
        chunks: Vec<Vec<usize>>,
        blocks: ArrayD<Delayed<Block>>,
    ) -> Self {
        debug_assert_eq!(
            blocks.shape(),
            chunks.iter().map(Vec::len).collect::<Vec<_>>().as_slice()
        );
        Array { name: name.into(), chunks, blocks, expr: None, fused: None, _t: PhantomData }
    }

    /// The name used in errors and keys.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same array under another name (for error messages).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The shape.
    pub fn shape(&self) -> Vec<usize> {
        self.chunks.iter().map(|c| c.iter().sum()).collect()
    }

    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        self.chunks.len()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The dtype name (`float64`, ...).
    pub fn dtype(&self) -> &'static str {
        T::NAME
    }

    /// The chunk sizes along each axis.
    pub fn chunks(&self) -> &[Vec<usize>] {
        &self.chunks
    }

    /// The number of blocks.
    pub fn npartitions(&self) -> usize {
        self.blocks.len()
    }

    /// The grid of block tasks.
    pub fn blocks(&self) -> &ArrayD<Delayed<Block>> {
        &self.blocks
    }

    /// The block at grid index `index`.
    pub fn block(&self, index: &[usize]) -> Result<Delayed<Block>, ArrayError> {
        let grid = self.blocks.shape();
        if index.len() != grid.len() {
            return Err(ArrayError::Shape {
                array: self.name.clone(),
                message: format!(
                    "block index {index:?} has {} entries, the grid {grid:?} has {}",
                    index.len(),
                    grid.len()
                ),
            });
        }
        if let Some(axis) = index.iter().zip(grid).position(|(i, g)| i >= g) {
            return Err(ArrayError::OutOfRange {
                array: self.name.clone(),
                axis,
                index: index[axis] as i64,
                len: grid[axis],
            });
        }
        Ok(self.blocks[IxDyn(index)].clone())
    }

    fn erased(&self) -> Vec<AnyDelayed> {
        self.blocks.iter().map(Delayed::erase).collect()
    }

    /// Computes the whole array on the default scheduler.
    pub fn compute(&self) -> Result<ArrayD<T>, ArrayError> {
        self.compute_with(&default_scheduler(), &ComputeOptions::default())
    }

    /// Computes the whole array on `scheduler`.
    pub fn compute_with(
        &self,
        scheduler: &Scheduler,
        options: &ComputeOptions,
    ) -> Result<ArrayD<T>, ArrayError> {
        let values = compute_many(&self.erased(), scheduler, options)?;
        let mut out = ArrayD::<T>::default(IxDyn(&self.shape()));
        for (((idx, d), region), v) in
            self.blocks.indexed_iter().zip(regions(&self.chunks).iter()).zip(values)
        {
            let block: Block = v
                .take::<Block>()
                .map_err(|source| ComputeError::Output { key: d.key().clone(), source })?;
            let a = block
                .into_array::<T>()
                .map_err(|m| ArrayError::Shape { array: self.name.clone(), message: m })?;
            let mut dst = out.slice_mut(region_slice(region).as_slice());
            if dst.shape() != a.shape() {
                return Err(ArrayError::Shape {
                    array: self.name.clone(),
                    message: format!(
                        "block {:?} has shape {:?}, expected {:?}",
                        idx.slice(),
                        a.shape(),
                        dst.shape()
                    ),
                });
            }
            dst.assign(&a);
        }
        Ok(out)
    }

    /// Computes every block and keeps them in memory (same keys), so later
    /// expressions start from the stored blocks.
    pub fn persist(&self) -> Result<Array<T>, ArrayError> {
        self.persist_with(&default_scheduler(), &ComputeOptions::default())
    }

    /// [`Array::persist`] on `scheduler`.
    pub fn persist_with(
        &self,
        scheduler: &Scheduler,
        options: &ComputeOptions,
    ) -> Result<Array<T>, ArrayError> {
        let flat: Vec<Delayed<Block>> = self.blocks.iter().cloned().collect();
        let kept = crate::delayed::persist_many(&flat, scheduler, options)?;
        let blocks =
            ArrayD::from_shape_vec(self.blocks.raw_dim(), kept).expect("one block per grid cell");
        Ok(Array {
            name: self.name.clone(),
            chunks: self.chunks.clone(),
            blocks,
            expr: None,
            fused: None,
            _t: PhantomData,
        })
    }

    /// Runs one write task per block, `write(block, its region)`, on the default scheduler.
    pub(crate) fn write_blocks(
        &self,
        write: impl Fn(&Delayed<Block>, Vec<(usize, usize)>) -> AnyDelayed,
    ) -> Result<(), ArrayError> {
        let writes: Vec<AnyDelayed> =
            self.blocks.iter().zip(regions(&self.chunks)).map(|(b, r)| write(b, r)).collect();
        compute_many(&writes, &default_scheduler(), &ComputeOptions::default())?;
        Ok(())
    }

    /// The graph computing every block.
    pub fn graph(&self) -> crate::Graph {
        graph_of(&self.erased())
    }

    /// Draws the graph (`.dot`, `.svg`, `.png`; the last two need Graphviz).
    pub fn visualize(&self, path: impl AsRef<Path>) -> Result<(), crate::graph::VisualizeError> {
        crate::graph::visualize(&self.graph(), path)
    }
}
