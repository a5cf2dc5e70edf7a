//! The registered ops that array graphs are made of, and their kernels.
//! Each works on whole blocks; the graph builders in the sibling modules
//! decide which blocks meet.

use ndarray::{ArrayD, Axis, IxDyn, SliceInfoElem, Zip};
use num_traits::Float;
use serde::{Deserialize, Serialize};

use super::block::{Block, BlockData, Element, Scalar};

/// Element types by name (for ops that create blocks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DType {
    /// float64
    F64,
    /// float32
    F32,
    /// int64
    I64,
    /// bool
    Bool,
}

impl DType {
    /// The dtype of `T`.
    pub fn of<T: Element>() -> DType {
        match T::default().scalar() {
            Scalar::F64(_) => DType::F64,
            Scalar::F32(_) => DType::F32,
            Scalar::I64(_) => DType::I64,
            Scalar::Bool(_) => DType::Bool,
        }
    }

    fn cast(self, a: ArrayD<f64>) -> BlockData {
        match self {
            DType::F64 => BlockData::F64(a),
            DType::F32 => BlockData::F32(a.mapv(|v| v as f32)),
            DType::I64 => BlockData::I64(a.mapv(|v| v as i64)),
            DType::Bool => BlockData::Bool(a.mapv(|v| v != 0.0)),
        }
    }
}

/// Binary elementwise operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BinOp {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `a / b` (floor division for integers)
    Div,
    /// `a ** b`
    Pow,
    /// elementwise maximum
    Max,
    /// elementwise minimum
    Min,
    /// `a < b`
    Lt,
    /// `a <= b`
    Le,
    /// `a > b`
    Gt,
    /// `a >= b`
    Ge,
    /// `a == b`
    Eq,
    /// `a != b`
    Ne,
    /// logical and (bool)
    And,
    /// logical or (bool)
    Or,
}

impl BinOp {
    /// Whether the result is bool whatever the operands.
    pub fn is_comparison(self) -> bool {
        matches!(self, BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge | BinOp::Eq | BinOp::Ne)
    }
}

/// Unary elementwise functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnOp {
    /// `-a`
    Neg,
    /// `|a|`
    Abs,
    /// `e^a`
    Exp,
    /// natural logarithm
    Log,
    /// square root
    Sqrt,
    /// sine
    Sin,
    /// cosine
    Cos,
    /// logical not (bool)
    Not,
}

/// Random distributions of [`super::create::random`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum RandomDist {
    /// Uniform on `[low, high)`.
    Uniform {
        /// Lower bound.
        low: f64,
        /// Upper bound.
        high: f64,
    },
    /// Normal with `mean` and `std`.
    Normal {
        /// Mean.
        mean: f64,
        /// Standard deviation.
        std: f64,
    },
}

/// What a reduction computes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Reduction {
    /// Sum.
    Sum,
    /// Mean.
    Mean,
    /// Variance with `ddof` delta degrees of freedom.
    Var(f64),
    /// Standard deviation with `ddof`.
    Std(f64),
    /// Minimum.
    Min,
    /// Maximum.
    Max,
    /// Index of the minimum.
    ArgMin,
    /// Index of the maximum.
    ArgMax,
    /// Any element true.
    Any,
    /// All elements true.
    All,
}

/// A partial result of a reduction, combinable with others.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Partial {
    /// Running sums, minima, maxima, any, all (same dtype as the result).
    Plain(Block),
    /// Count, mean and sum of squared deviations (Chan et al.'s parallel update).
    Moments {
        /// Elements reduced into each output position.
        n: f64,
        /// Means.
        #[serde(with = "crate::raw_array")]
        mean: ArrayD<f64>,
        /// Sums of squared deviations from the mean.
        #[serde(with = "crate::raw_array")]
        m2: ArrayD<f64>,
    },
    /// Best value so far (as f64, NaN first) and its global index.
    Arg {
        /// Values.
        #[serde(with = "crate::raw_array")]
        val: ArrayD<f64>,
        /// Their indices (flat over the reduced axes, in the whole array).
        #[serde(with = "crate::raw_array")]
        idx: ArrayD<i64>,
    },
}

// Combining tasks take their partials (`Vec<Partial>`) item by item.
crate::list_item!(Partial);

/// Where a block sits in the whole array (for arg-reductions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The block's first index on each axis.
    pub offset: Vec<usize>,
    /// The whole array's shape.
    pub shape: Vec<usize>,
}

fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            let x = if i + a.len() >= n { a[i + a.len() - n] } else { 1 };
            let y = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
            match (x, y) {
                (x, y) if x == y => Ok(x),
                (1, y) => Ok(y),
                (x, 1) => Ok(x),
                _ => Err(format!("shapes {a:?} and {b:?} cannot be broadcast together")),
            }
        })
        .collect()
}

fn zip2<A: Copy, B: Copy, R>(
    a: &ArrayD<A>,
    b: &ArrayD<B>,
    f: impl Fn(A, B) -> R,
) -> Result<ArrayD<R>, String> {
    // Contiguous fast paths (slices, which vectorize): equal shapes, or a scalar operand.
    let shaped = |v: Vec<R>, s: &[usize]| {
        ArrayD::from_shape_vec(IxDyn(s), v).expect("one result per element")
    };
    match (a.as_slice(), b.as_slice()) {
        (Some(x), Some(y)) if a.shape() == b.shape() => {
            return Ok(shaped(x.iter().zip(y).map(|(&p, &q)| f(p, q)).collect(), a.shape()))
        }
        (Some(x), Some(&[q])) if b.ndim() == 0 => {
            return Ok(shaped(x.iter().map(|&p| f(p, q)).collect(), a.shape()))
        }
        (Some(&[p]), Some(y)) if a.ndim() == 0 => {
            return Ok(shaped(y.iter().map(|&q| f(p, q)).collect(), b.shape()))
        }
        _ => {}
    }
    let shape = broadcast_shape(a.shape(), b.shape())?;
    let (av, bv) = (
        a.broadcast(IxDyn(&shape)).expect("broadcastable"),
        b.broadcast(IxDyn(&shape)).expect("broadcastable"),
    );
    Ok(Zip::from(&av).and(&bv).map_collect(|&x, &y| f(x, y)))
}

fn float_binary<T: Float + Element>(
    a: &ArrayD<T>,
    b: &ArrayD<T>,
    op: BinOp,
) -> Result<BlockData, String> {
    Ok(match op {
        BinOp::Add => T::wrap(zip2(a, b, |x, y| x + y)?),
        BinOp::Sub => T::wrap(zip2(a, b, |x, y| x - y)?),
        BinOp::Mul => T::wrap(zip2(a, b, |x, y| x * y)?),
        BinOp::Div => T::wrap(zip2(a, b, |x, y| x / y)?),
        BinOp::Pow => T::wrap(zip2(a, b, |x, y| x.powf(y))?),
        BinOp::Max => T::wrap(zip2(a, b, |x, y| if x.is_nan() || x >= y { x } else { y })?),
        BinOp::Min => T::wrap(zip2(a, b, |x, y| if x.is_nan() || x <= y { x } else { y })?),
        BinOp::And | BinOp::Or => return Err(format!("{op:?} needs bool arrays, got {}", T::NAME)),
        cmp => BlockData::Bool(compare(a, b, cmp)?),
    })
}

fn compare<T: Element>(a: &ArrayD<T>, b: &ArrayD<T>, op: BinOp) -> Result<ArrayD<bool>, String> {
    match op {
        BinOp::Lt => zip2(a, b, |x, y| x < y),
        BinOp::Le => zip2(a, b, |x, y| x <= y),
        BinOp::Gt => zip2(a, b, |x, y| x > y),
        BinOp::Ge => zip2(a, b, |x, y| x >= y),
        BinOp::Eq => zip2(a, b, |x, y| x == y),
        BinOp::Ne => zip2(a, b, |x, y| x != y),
        _ => unreachable!("only comparisons"),
    }
}

fn int_binary(a: &ArrayD<i64>, b: &ArrayD<i64>, op: BinOp) -> Result<BlockData, String> {
    if op == BinOp::Div && b.iter().any(|&v| v == 0) {
        return Err("integer division by zero".into());
    }
    if op == BinOp::Pow && b.iter().any(|&v| v < 0) {
        return Err("integers cannot be raised to negative powers".into());
    }
    Ok(match op {
        BinOp::Add => BlockData::I64(zip2(a, b, i64::wrapping_add)?),
        BinOp::Sub => BlockData::I64(zip2(a, b, i64::wrapping_sub)?),
        BinOp::Mul => BlockData::I64(zip2(a, b, i64::wrapping_mul)?),
        BinOp::Div => BlockData::I64(zip2(a, b, i64::div_euclid)?),
        BinOp::Pow => {
            BlockData::I64(zip2(a, b, |x, y| x.wrapping_pow(y.min(u32::MAX as i64) as u32))?)
        }
        BinOp::Max => BlockData::I64(zip2(a, b, i64::max)?),
        BinOp::Min => BlockData::I64(zip2(a, b, i64::min)?),
        BinOp::And | BinOp::Or => return Err(format!("{op:?} needs bool arrays, got int64")),
        cmp => BlockData::Bool(compare(a, b, cmp)?),
    })
}

fn bool_binary(a: &ArrayD<bool>, b: &ArrayD<bool>, op: BinOp) -> Result<BlockData, String> {
    Ok(BlockData::Bool(match op {
        BinOp::And | BinOp::Min | BinOp::Mul => zip2(a, b, |x, y| x & y)?,
        BinOp::Or | BinOp::Max | BinOp::Add => zip2(a, b, |x, y| x | y)?,
        cmp if cmp.is_comparison() => compare(a, b, cmp)?,
        other => return Err(format!("{other:?} is not defined for bool arrays")),
    }))
}

/// `a op b` with NumPy broadcasting.
pub fn binary_data(a: &BlockData, b: &BlockData, op: BinOp) -> Result<BlockData, String> {
    match (a, b) {
        (BlockData::F64(x), BlockData::F64(y)) => float_binary(x, y, op),
        (BlockData::F32(x), BlockData::F32(y)) => float_binary(x, y, op),
        (BlockData::I64(x), BlockData::I64(y)) => int_binary(x, y, op),
        (BlockData::Bool(x), BlockData::Bool(y)) => bool_binary(x, y, op),
        (x, y) => {
            Err(format!("cannot combine {} and {} arrays; cast one first", x.dtype(), y.dtype()))
        }
    }
}

fn scalar_block(s: Scalar) -> BlockData {
    BlockData::full(&[], s)
}

/// `a op s` (or `s op a` when `scalar_first`).
pub fn scalar_data(
    a: &BlockData,
    s: Scalar,
    op: BinOp,
    scalar_first: bool,
) -> Result<BlockData, String> {
    let s = scalar_block(s);
    if scalar_first {
        binary_data(&s, a, op)
    } else {
        binary_data(a, &s, op)
    }
}

/// `a` converted to `dtype`.
pub fn cast_data(a: &BlockData, dtype: DType) -> BlockData {
    let f = crate::with_block!(a, |x: T| x.mapv(|v| v.to_f64()));
    dtype.cast(f)
}

fn float_unary<T: Float + Element>(a: &ArrayD<T>, op: UnOp) -> Result<BlockData, String> {
    let f: fn(T) -> T = match op {
        UnOp::Neg => |x| -x,
        UnOp::Abs => T::abs,
        UnOp::Exp => T::exp,
        UnOp::Log => T::ln,
        UnOp::Sqrt => T::sqrt,
        UnOp::Sin => T::sin,
        UnOp::Cos => T::cos,
        UnOp::Not => return Err(format!("logical not needs a bool array, got {}", T::NAME)),
    };
    Ok(T::wrap(a.mapv(f)))
}

/// An elementwise function of one block.
pub fn unary_data(a: &BlockData, op: UnOp) -> Result<BlockData, String> {
    match a {
        BlockData::F64(x) => float_unary(x, op),
        BlockData::F32(x) => float_unary(x, op),
        BlockData::I64(x) => match op {
            UnOp::Neg => Ok(BlockData::I64(x.mapv(i64::wrapping_neg))),
            UnOp::Abs => Ok(BlockData::I64(x.mapv(i64::wrapping_abs))),
            _ => float_unary(&x.mapv(|v| v as f64), op),
        },
        BlockData::Bool(x) => match op {
            UnOp::Not => Ok(BlockData::Bool(x.mapv(|v| !v))),
            other => Err(format!("{other:?} is not defined for bool arrays")),
        },
    }
}

fn where_typed<T: Element>(
    c: &ArrayD<bool>,
    a: &ArrayD<T>,
    b: &ArrayD<T>,
) -> Result<ArrayD<T>, String> {
    let shape = broadcast_shape(&broadcast_shape(c.shape(), a.shape())?, b.shape())?;
    let s = IxDyn(&shape);
    let (cv, av, bv) = (
        c.broadcast(s.clone()).expect("ok"),
        a.broadcast(s.clone()).expect("ok"),
        b.broadcast(s).expect("ok"),
    );
    Ok(Zip::from(&cv).and(&av).and(&bv).map_collect(|&c, &x, &y| if c { x } else { y }))
}

/// `where(c, a, b)` with broadcasting.
pub fn where_data(c: &BlockData, a: &BlockData, b: &BlockData) -> Result<BlockData, String> {
    let c = match c {
        BlockData::Bool(c) => c,
        other => {
            return Err(format!("the condition of `where` must be bool, got {}", other.dtype()))
        }
    };
    Ok(match (a, b) {
        (BlockData::F64(x), BlockData::F64(y)) => BlockData::F64(where_typed(c, x, y)?),
        (BlockData::F32(x), BlockData::F32(y)) => BlockData::F32(where_typed(c, x, y)?),
        (BlockData::I64(x), BlockData::I64(y)) => BlockData::I64(where_typed(c, x, y)?),
        (BlockData::Bool(x), BlockData::Bool(y)) => BlockData::Bool(where_typed(c, x, y)?),
        (x, y) => {
            return Err(format!("`where` branches have dtypes {} and {}", x.dtype(), y.dtype()))
        }
    })
}

/// The left and right 2-d views of a block product's terms.
type ViewPairs<'a, T> = (Vec<ndarray::ArrayView2<'a, T>>, Vec<ndarray::ArrayView2<'a, T>>);

/// 2-d views of blocks, the right ones transposed when `transpose_b`.
fn views<'a, T: Element>(
    a: &[&'a ArrayD<T>],
    b: &[&'a ArrayD<T>],
    transpose_b: bool,
) -> Result<ViewPairs<'a, T>, String> {
    let two = |x: &&'a ArrayD<T>| {
        x.view().into_dimensionality::<ndarray::Ix2>().map_err(|e| e.to_string())
    };
    let va: Vec<_> = a.iter().map(two).collect::<Result<_, _>>()?;
    let vb: Vec<_> = b
        .iter()
        .map(|y| two(y).map(|v| if transpose_b { v.reversed_axes() } else { v }))
        .collect::<Result<_, _>>()?;
    let (m, n) = (va[0].nrows(), vb[0].ncols());
    for (x, y) in va.iter().zip(&vb) {
        if x.ncols() != y.nrows() || x.nrows() != m || y.ncols() != n {
            return Err(format!("block shapes {:?} and {:?} do not chain", x.shape(), y.shape()));
        }
    }
    Ok((va, vb))
}

/// Sums `a[k] @ b[k]` (or `a[k] @ b[k]ᵀ`) over k, for 2-d blocks.
fn matmul_typed<T: Element + ndarray::LinalgScalar>(
    a: &[&ArrayD<T>],
    b: &[&ArrayD<T>],
    transpose_b: bool,
) -> Result<ArrayD<T>, String> {
    let (va, vb) = views(a, b, transpose_b)?;
    let mut out = ndarray::Array2::<T>::zeros((va[0].nrows(), vb[0].ncols()));
    for (x, y) in va.iter().zip(&vb) {
        ndarray::linalg::general_mat_mul(T::one(), x, y, T::one(), &mut out);
    }
    Ok(out.into_dyn())
}

/// The float64 product: OpenBLAS when built with the `blas` feature (DSYRK
/// when every term is `x·xᵀ` of one block), else the pure-Rust GEMM.
fn matmul_f64(
    a: &[&ArrayD<f64>],
    b: &[&ArrayD<f64>],
    transpose_b: bool,
) -> Result<ArrayD<f64>, String> {
    #[cfg(feature = "blas")]
    {
        let (va, vb) = views(a, b, transpose_b)?;
        if let Some(out) = super::blas::sum_of_products(&va, &vb) {
            return Ok(out.into_dyn());
        }
    }
    matmul_typed(a, b, transpose_b)
}

fn datas(blocks: &[Block]) -> Vec<&BlockData> {
    blocks.iter().map(Block::data).collect()
}

macro_rules! typed_list {
    ($list:expr, $variant:ident) => {
        $list
            .iter()
            .map(|d| match d {
                BlockData::$variant(a) => Ok(a),
                other => Err(format!("mixed dtypes in one product ({})", other.dtype())),
            })
            .collect::<Result<Vec<_>, String>>()
    };
}

fn region(ranges: &[(isize, isize, isize)]) -> Vec<SliceInfoElem> {
    ranges
        .iter()
        .map(|&(start, end, step)| SliceInfoElem::Slice { start, end: Some(end), step })
        .collect()
}

/// Copies `pieces` (laid out in a grid of shape `grid`, C order) into one block.
fn assemble_typed<T: Element>(pieces: &[&ArrayD<T>], grid: &[usize]) -> Result<ArrayD<T>, String> {
    let ndim = grid.len();
    let strides: Vec<usize> = (0..ndim).map(|ax| grid[ax + 1..].iter().product()).collect();
    // Piece sizes along each axis, read off the first piece of each row/column.
    let sizes: Vec<Vec<usize>> = (0..ndim)
        .map(|ax| (0..grid[ax]).map(|i| pieces[i * strides[ax]].shape()[ax]).collect())
        .collect();
    let shape: Vec<usize> = sizes.iter().map(|s| s.iter().sum()).collect();
    let starts: Vec<Vec<usize>> = sizes.iter().map(|s| super::offsets(s)).collect();
    let mut out = ArrayD::<T>::default(IxDyn(&shape));
    for (flat, piece) in pieces.iter().enumerate() {
        let idx: Vec<usize> = (0..ndim).map(|ax| flat / strides[ax] % grid[ax]).collect();
        let r: Vec<SliceInfoElem> = idx
            .iter()
            .enumerate()
            .map(|(ax, &i)| SliceInfoElem::Slice {
                start: starts[ax][i] as isize,
                end: Some(starts[ax][i + 1] as isize),
                step: 1,
            })
            .collect();
        let mut dst = out.slice_mut(r.as_slice());
        if dst.shape() != piece.shape() {
            return Err(format!(
                "piece {idx:?} has shape {:?}, the grid expects {:?}",
                piece.shape(),
                dst.shape()
            ));
        }
        dst.assign(piece);
    }
    Ok(out)
}

/// The seed of block `index` of a random array seeded with `seed`: a
/// function of both only, so each block's numbers do not depend on which
/// worker or thread draws them, or in what order.
fn block_seed(seed: u64, index: &[usize]) -> u64 {
    let mut h = crate::key::TokenHasher::new();
    h.str("rask::array::random").u64(seed);
    index.iter().for_each(|&i| {
        h.u64(i as u64);
    });
    let t = h.finish().0;
    (t as u64) ^ ((t >> 64) as u64)
}

// The rest of the reductions' kernels live in `reduce`; the file kernels in `npy`.
pub(crate) use super::npy::{read_npy_region, write_npy_region, NpyHeader};
pub(crate) use super::reduce::{combine_partials, finish_partial, partial_of};

crate::op! {
    /// A block of `shape` filled with `value`.
    pub fn full_block(shape: Vec<usize>, value: Scalar) -> Block {
        Block::new(BlockData::full(&shape, value))
    }

    /// `len` values `start, start + step, ...` as `dtype`.
    pub fn arange_block(start: f64, step: f64, len: usize, dtype: DType) -> Block {
        Block::new(dtype.cast(ArrayD::from_shape_fn(IxDyn(&[len]), |i| start + step * i[0] as f64)))
    }

    /// Rows `row0..row0+shape[0]`, columns `col0..` of an identity matrix shifted by `k`.
    pub fn eye_block(shape: Vec<usize>, row0: usize, col0: usize, k: i64, dtype: DType) -> Block {
        let a = ArrayD::from_shape_fn(IxDyn(&shape), |i| {
            if (col0 + i[1]) as i64 - (row0 + i[0]) as i64 == k { 1.0 } else { 0.0 }
        });
        Block::new(dtype.cast(a))
    }

    /// Random numbers for block `index` of an array seeded with `seed`.
    pub fn random_block(seed: u64, index: Vec<usize>, shape: Vec<usize>, dist: RandomDist) -> Block {
        let mut rng = crate::array::sample::WyRand::new(block_seed(seed, &index));
        let n = shape.iter().product();
        let data = match dist {
            RandomDist::Uniform { low, high } => crate::array::sample::uniforms(&mut rng, n, low, high),
            RandomDist::Normal { mean, std } => crate::array::sample::normals(&mut rng, n, mean, std),
        };
        Block::new(BlockData::F64(ArrayD::from_shape_vec(IxDyn(&shape), data).expect("n elements")))
    }

    /// `a op b` elementwise, broadcasting.
    pub fn binary_block(a: Block, b: Block, op: BinOp) -> Result<Block, String> {
        binary_data(a.data(), b.data(), op).map(Block::new)
    }

    /// `a op s` (or `s op a` when `scalar_first`).
    pub fn scalar_block_op(a: Block, s: Scalar, op: BinOp, scalar_first: bool) -> Result<Block, String> {
        scalar_data(a.data(), s, op, scalar_first).map(Block::new)
    }

    /// An elementwise function.
    pub fn unary_block(a: Block, op: UnOp) -> Result<Block, String> {
        unary_data(a.data(), op).map(Block::new)
    }

    /// `where(c, a, b)`.
    pub fn where_block(c: Block, a: Block, b: Block) -> Result<Block, String> {
        where_data(c.data(), a.data(), b.data()).map(Block::new)
    }

    /// Casts a block to `dtype`.
    pub fn cast_block(a: Block, dtype: DType) -> Block {
        Block::new(cast_data(a.data(), dtype))
    }

    /// Permutes a block's axes (a view: no copy until the data is written out).
    pub fn transpose_block(a: Block, perm: Vec<usize>) -> Result<Block, String> {
        if perm.len() != a.data().shape().len() {
            return Err(format!("permutation {perm:?} for a block of shape {:?}", a.data().shape()));
        }
        Ok(Block::new(crate::with_block!(a.into_data(), |x: T| T::wrap(x.permuted_axes(IxDyn(&perm))))))
    }

    /// `Σ_k a[k] @ b[k]` for 2-d blocks (`b[k]ᵀ` when `transpose_b`).
    pub fn matmul_block(a: Vec<Block>, b: Vec<Block>, transpose_b: bool) -> Result<Block, String> {
        if a.is_empty() || a.len() != b.len() {
            return Err(format!("{} left and {} right blocks", a.len(), b.len()));
        }
        let (da, db) = (datas(&a), datas(&b));
        let out = match da[0] {
            BlockData::F64(_) => BlockData::F64(matmul_f64(&typed_list!(da, F64)?, &typed_list!(db, F64)?, transpose_b)?),
            BlockData::F32(_) => BlockData::F32(matmul_typed(&typed_list!(da, F32)?, &typed_list!(db, F32)?, transpose_b)?),
            BlockData::I64(_) => BlockData::I64(matmul_typed(&typed_list!(da, I64)?, &typed_list!(db, I64)?, transpose_b)?),
            BlockData::Bool(_) => return Err("matmul is not defined for bool arrays".into()),
        };
        Ok(Block::new(out))
    }

    /// `a[ranges]` (start, end, step per axis; a negative step walks backwards
    /// over `start..end`), then drops the axes in `drop` (integer indexing).
    pub fn slice_block(a: Block, ranges: Vec<(isize, isize, isize)>, drop: Vec<usize>) -> Result<Block, String> {
        if ranges.len() != a.data().shape().len() {
            return Err(format!("{} ranges for a block of shape {:?}", ranges.len(), a.data().shape()));
        }
        let r = region(&ranges);
        let out = crate::with_block!(a.data(), |x: T| {
            let mut v = x.slice(r.as_slice()).to_owned();
            for &ax in drop.iter().rev() {
                v = v.index_axis_move(Axis(ax), 0);
            }
            T::wrap(v)
        });
        Ok(Block::new(out))
    }

    /// The entries `indices` along `axis`.
    pub fn take_block(a: Block, axis: usize, indices: Vec<usize>) -> Result<Block, String> {
        let len = *a.data().shape().get(axis).ok_or_else(|| format!("axis {axis} of a block of shape {:?}", a.data().shape()))?;
        if let Some(bad) = indices.iter().find(|&&i| i >= len) {
            return Err(format!("index {bad} out of range for axis {axis} of length {len}"));
        }
        Ok(Block::new(crate::with_block!(a.data(), |x: T| T::wrap(x.select(Axis(axis), &indices)))))
    }

    /// One block from pieces laid out in a grid of shape `grid` (C order).
    pub fn assemble_block(pieces: Vec<Block>, grid: Vec<usize>) -> Result<Block, String> {
        if pieces.len() != grid.iter().product::<usize>() || pieces.is_empty() {
            return Err(format!("{} pieces for a grid of {grid:?}", pieces.len()));
        }
        let d = datas(&pieces);
        let out = match d[0] {
            BlockData::F64(_) => BlockData::F64(assemble_typed(&typed_list!(d, F64)?, &grid)?),
            BlockData::F32(_) => BlockData::F32(assemble_typed(&typed_list!(d, F32)?, &grid)?),
            BlockData::I64(_) => BlockData::I64(assemble_typed(&typed_list!(d, I64)?, &grid)?),
            BlockData::Bool(_) => BlockData::Bool(assemble_typed(&typed_list!(d, Bool)?, &grid)?),
        };
        Ok(Block::new(out))
    }

    /// Inserts a length-1 axis at `axis` (for `stack`).
    pub fn expand_block(a: Block, axis: usize) -> Result<Block, String> {
        if axis > a.data().shape().len() {
            return Err(format!("axis {axis} for a block of {} dimensions", a.data().shape().len()));
        }
        Ok(Block::new(crate::with_block!(a.into_data(), |x: T| T::wrap(x.insert_axis(Axis(axis))))))
    }

    /// A block's partial reduction over `axes` (kept as length-1 axes).
    pub fn reduce_partial(a: Block, axes: Vec<usize>, kind: Reduction, place: Placement) -> Result<Partial, String> {
        partial_of(a.data(), &axes, kind, &place)
    }

    /// Combines partial reductions.
    pub fn reduce_combine(parts: Vec<Partial>, kind: Reduction) -> Result<Partial, String> {
        combine_partials(parts, kind)
    }

    /// The final values of a reduction; drops the reduced axes unless `keepdims`.
    pub fn reduce_finish(part: Partial, axes: Vec<usize>, kind: Reduction, keepdims: bool) -> Result<Block, String> {
        finish_partial(part, &axes, kind, keepdims)
    }

    /// Reads `region` (start..end per axis) of a `.npy` file.
    pub fn npy_read(path: String, header: NpyHeader, region: Vec<(usize, usize)>) -> Result<Block, String> {
        read_npy_region(&path, &header, &region)
    }

    /// Writes a block into `region` of a `.npy` file whose header is already written.
    pub fn npy_write(block: Block, path: String, header: NpyHeader, region: Vec<(usize, usize)>) -> Result<u64, String> {
        write_npy_region(&path, &header, &region, block.data())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(seed: u64, shape: &[usize]) -> ArrayD<f64> {
        let mut rng = super::super::sample::WyRand::new(seed);
        ArrayD::from_shape_fn(IxDyn(shape), |_| rng.next_f64() - 0.5)
    }

    #[test]
    fn float64_products_agree_with_the_pure_rust_kernel() {
        // Shared blocks (x·xᵀ: DSYRK under `blas`), distinct blocks, and both orientations.
        let (x, y, z) = (block(1, &[7, 5]), block(2, &[7, 5]), block(3, &[5, 6]));
        type Case<'a> = (Vec<&'a ArrayD<f64>>, Vec<&'a ArrayD<f64>>, bool);
        let cases: Vec<Case<'_>> = vec![
            (vec![&x, &y], vec![&x, &y], true),
            (vec![&x, &y], vec![&y, &x], true),
            (vec![&x], vec![&z], false),
        ];
        for (a, b, t) in cases {
            let fast = matmul_f64(&a, &b, t).unwrap();
            let plain = matmul_typed(&a, &b, t).unwrap();
            assert_eq!(fast.shape(), plain.shape());
            for (p, q) in fast.iter().zip(plain.iter()) {
                assert!((p - q).abs() <= 1e-12, "{p} vs {q}");
            }
        }
    }
}
