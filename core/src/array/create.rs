//! Array creation. Every block is made by its own task, so creating a large
//! array costs nothing until it is computed.

use ndarray::{ArrayD, Dimension};

use super::block::{Block, Element};
use super::ops::{arange_block, eye_block, full_block, random_block, DType, RandomDist};
use super::{region_slice, regions, Array, ArrayError, ChunkSpec};
use crate::delayed::{value, Delayed};

/// One block task per grid cell: `f(grid index, block shape, block start)`.
pub(crate) fn grid_cells<F: FnMut(&[usize], &[usize], &[usize]) -> Delayed<Block>>(
    chunks: &[Vec<usize>],
    mut f: F,
) -> ArrayD<Delayed<Block>> {
    let regions = regions(chunks);
    let cells = regions.indexed_iter().map(|(i, r)| {
        let shape: Vec<usize> = r.iter().map(|(a, b)| b - a).collect();
        let start: Vec<usize> = r.iter().map(|(a, _)| *a).collect();
        f(i.slice(), &shape, &start)
    });
    ArrayD::from_shape_vec(regions.raw_dim(), cells.collect()).expect("one task per cell")
}

/// One block task per grid cell, from the block's region: `f((start, end) per axis)`.
pub(crate) fn region_cells(
    chunks: &[Vec<usize>],
    f: impl Fn(Vec<(usize, usize)>) -> Delayed<Block>,
) -> ArrayD<Delayed<Block>> {
    regions(chunks).map(|r| f(r.clone()))
}

/// An array of `shape` filled with `value`.
pub fn full<T: Element>(
    shape: &[usize],
    chunks: impl Into<ChunkSpec>,
    value: T,
) -> Result<Array<T>, ArrayError> {
    let name = format!("full({value:?})");
    let chunks = chunks.into().resolve(&name, shape)?;
    let blocks = grid_cells(&chunks, |_, s, _| full_block(s.to_vec(), value.scalar()));
    Ok(Array::from_blocks(name, chunks, blocks))
}

/// An array of zeros.
pub fn zeros<T: Element>(
    shape: &[usize],
    chunks: impl Into<ChunkSpec>,
) -> Result<Array<T>, ArrayError> {
    full(shape, chunks, T::from_f64(0.0)).map(|a| a.named("zeros"))
}

/// An array of ones.
pub fn ones<T: Element>(
    shape: &[usize],
    chunks: impl Into<ChunkSpec>,
) -> Result<Array<T>, ArrayError> {
    full(shape, chunks, T::from_f64(1.0)).map(|a| a.named("ones"))
}

/// `start, start + step, ...` below `stop` (as NumPy's `arange`).
pub fn arange<T: Element>(
    start: f64,
    stop: f64,
    step: f64,
    chunk: usize,
) -> Result<Array<T>, ArrayError> {
    let name = format!("arange({start}, {stop}, {step})");
    if step == 0.0 || !step.is_finite() || !start.is_finite() || !stop.is_finite() {
        return Err(ArrayError::Shape {
            array: name,
            message: "start, stop and step must be finite and step non-zero".into(),
        });
    }
    let len = ((stop - start) / step).ceil().max(0.0) as usize;
    let chunks = ChunkSpec::Uniform(chunk).resolve(&name, &[len])?;
    let dtype = DType::of::<T>();
    let blocks =
        grid_cells(&chunks, |_, s, o| arange_block(start + step * o[0] as f64, step, s[0], dtype));
    Ok(Array::from_blocks(name, chunks, blocks))
}

/// `num` evenly spaced values from `start` to `stop` inclusive (as NumPy's `linspace`).
pub fn linspace(start: f64, stop: f64, num: usize, chunk: usize) -> Result<Array<f64>, ArrayError> {
    let name = format!("linspace({start}, {stop}, {num})");
    let step = if num > 1 { (stop - start) / (num - 1) as f64 } else { 0.0 };
    let chunks = ChunkSpec::Uniform(chunk).resolve(&name, &[num])?;
    let blocks = grid_cells(&chunks, |_, s, o| {
        arange_block(start + step * o[0] as f64, step, s[0], DType::F64)
    });
    Ok(Array::from_blocks(name, chunks, blocks))
}

/// An `n × m` matrix with ones on diagonal `k` (as NumPy's `eye`).
pub fn eye<T: Element>(n: usize, m: usize, k: i64, chunk: usize) -> Result<Array<T>, ArrayError> {
    let name = format!("eye({n}, {m}, {k})");
    let chunks = ChunkSpec::Uniform(chunk).resolve(&name, &[n, m])?;
    let dtype = DType::of::<T>();
    let blocks = grid_cells(&chunks, |_, s, o| eye_block(s.to_vec(), o[0], o[1], k, dtype));
    Ok(Array::from_blocks(name, chunks, blocks))
}

/// Random numbers: each block is drawn from a generator seeded by `seed` and
/// the block's grid index, so the values do not depend on the scheduler, the
/// number of threads, or the order blocks run in.
pub fn random(
    seed: u64,
    shape: &[usize],
    chunks: impl Into<ChunkSpec>,
    dist: RandomDist,
) -> Result<Array<f64>, ArrayError> {
    let name = format!("random({seed})");
    match dist {
        RandomDist::Uniform { low, high }
            if !(low < high && low.is_finite() && high.is_finite()) =>
        {
            return Err(ArrayError::Shape {
                array: name,
                message: format!("uniform bounds [{low}, {high}) must be finite with low < high"),
            })
        }
        RandomDist::Normal { mean, std }
            if !(std >= 0.0 && mean.is_finite() && std.is_finite()) =>
        {
            return Err(ArrayError::Shape {
                array: name,
                message: format!("normal(mean {mean}, std {std}) needs a finite mean and std >= 0"),
            })
        }
        _ => {}
    }
    let chunks = chunks.into().resolve(&name, shape)?;
    let blocks = grid_cells(&chunks, |i, s, _| random_block(seed, i.to_vec(), s.to_vec(), dist));
    Ok(Array::from_blocks(name, chunks, blocks))
}

/// Standard normal numbers (see [`random`]).
pub fn standard_normal(
    seed: u64,
    shape: &[usize],
    chunks: impl Into<ChunkSpec>,
) -> Result<Array<f64>, ArrayError> {
    random(seed, shape, chunks, RandomDist::Normal { mean: 0.0, std: 1.0 })
}

/// An array cut from an in-memory ndarray (each block becomes a data node,
/// keyed by its content).
pub fn from_array<T: Element>(
    a: &ArrayD<T>,
    chunks: impl Into<ChunkSpec>,
) -> Result<Array<T>, ArrayError> {
    let name = format!("array{:?}", a.shape());
    let chunks = chunks.into().resolve(&name, a.shape())?;
    let blocks = region_cells(&chunks, |r| {
        value(Block::from_array(a.slice(region_slice(&r).as_slice()).to_owned()))
    });
    Ok(Array::from_blocks(name, chunks, blocks))
}
