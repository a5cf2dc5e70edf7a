//! Elementwise fusion: a chain of elementwise operations (arithmetic,
//! comparisons, functions, scalar operands, `where`, casts) is one task per
//! output block, which runs a small program over the chain's inputs.
//!
//! The arrays in between are never materialized. Their blocks stay
//! unevaluated nodes that no task depends on. When a block's inputs are
//! contiguous and of its shape, the program runs tile by tile, so
//! intermediate values stay in cache.

use std::borrow::Cow;
use std::sync::Arc;

use ndarray::{ArrayD, Dimension, IxDyn};
use serde::{Deserialize, Serialize};

use super::block::{Block, BlockData, Element, Scalar};
use super::ops::{
    binary_data, cast_data, scalar_data, unary_data, where_data, BinOp, DType, Partial, Placement,
    Reduction, UnOp,
};
use super::reduce::{combine_partials, partial_of};
use super::{Array, ArrayError};
use crate::delayed::Delayed;
use crate::key::Key;

/// One step of a fused program. Operands are indices of earlier steps; the
/// last step is the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Step {
    /// Input block `i`.
    Input(usize),
    /// An elementwise function.
    Unary(UnOp, usize),
    /// `a op b`, broadcasting.
    Binary(BinOp, usize, usize),
    /// `a op value` (`value op a` when `scalar_first`).
    Scalar {
        /// The operation.
        op: BinOp,
        /// The array operand.
        arg: usize,
        /// The scalar operand.
        value: Scalar,
        /// Whether the scalar is the left operand.
        scalar_first: bool,
    },
    /// `where(cond, a, b)`.
    Where(usize, usize, usize),
    /// A conversion to another element type.
    Cast(DType, usize),
}

impl Step {
    fn operands(&self) -> Vec<usize> {
        match *self {
            Step::Input(_) => vec![],
            Step::Unary(_, a) | Step::Scalar { arg: a, .. } | Step::Cast(_, a) => vec![a],
            Step::Binary(_, a, b) => vec![a, b],
            Step::Where(c, a, b) => vec![c, a, b],
        }
    }

    fn remap(&self, at: &[usize]) -> Step {
        match self.clone() {
            Step::Input(i) => Step::Input(i),
            Step::Unary(op, a) => Step::Unary(op, at[a]),
            Step::Binary(op, a, b) => Step::Binary(op, at[a], at[b]),
            Step::Scalar { op, arg, value, scalar_first } => {
                Step::Scalar { op, arg: at[arg], value, scalar_first }
            }
            Step::Where(c, a, b) => Step::Where(at[c], at[a], at[b]),
            Step::Cast(d, a) => Step::Cast(d, at[a]),
        }
    }
}

/// The program of a fused block task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Program(pub Vec<Step>);

/// Elements per tile: 64 KiB of float64, so a program's live tiles fit in L2.
const TILE: usize = 8192;
/// Longer programs take their operands as materialized inputs instead of
/// growing further (every array built on a program runs all of it again).
const MAX_STEPS: usize = 64;

type Operand = Box<dyn Fn(&[usize]) -> Delayed<Block>>;
type MakeOperand = dyn Fn(&[Vec<usize>]) -> Result<Operand, ArrayError> + Send + Sync;

/// An input of a fused expression: an array that is not itself fused.
#[derive(Clone)]
pub(crate) struct Leaf {
    shape: Vec<usize>,
    keys: Arc<Vec<Key>>,
    /// Its blocks aligned with an output chunking (rechunked, broadcast).
    operand: Arc<MakeOperand>,
}

impl Leaf {
    fn of<T: Element>(a: &Array<T>) -> Leaf {
        let me = a.clone();
        Leaf {
            shape: a.shape(),
            keys: Arc::new(a.blocks().iter().map(|d| d.key().clone()).collect()),
            operand: Arc::new(move |chunks: &[Vec<usize>]| {
                me.operand_blocks(chunks).map(|f| Box::new(f) as Operand)
            }),
        }
    }

    fn same(&self, other: &Leaf) -> bool {
        self.shape == other.shape
            && (Arc::ptr_eq(&self.keys, &other.keys) || self.keys == other.keys)
    }
}

/// How an elementwise array is computed from its leaves.
#[derive(Clone)]
pub(crate) struct Fused {
    steps: Vec<Step>,
    leaves: Vec<Leaf>,
}

impl Fused {
    /// `a` as an operand: its own program if it has a short one, else `a` as an input.
    pub(crate) fn of<T: Element>(a: &Array<T>) -> Fused {
        match &a.fused {
            Some(f) if f.steps.len() < MAX_STEPS => (**f).clone(),
            _ => Fused { steps: vec![Step::Input(0)], leaves: vec![Leaf::of(a)] },
        }
    }

    /// The operands' programs one after another (shared inputs and shared
    /// intermediates once), then `last` applied to their results.
    pub(crate) fn join(parts: Vec<Fused>, last: impl FnOnce(&[usize]) -> Step) -> Fused {
        let mut out = Fused { steps: Vec::new(), leaves: Vec::new() };
        let mut results = Vec::with_capacity(parts.len());
        for part in parts {
            let mut at = Vec::with_capacity(part.steps.len());
            for step in &part.steps {
                let step = match step {
                    Step::Input(i) => {
                        let leaf = &part.leaves[*i];
                        let li =
                            out.leaves.iter().position(|l| l.same(leaf)).unwrap_or_else(|| {
                                out.leaves.push(leaf.clone());
                                out.leaves.len() - 1
                            });
                        Step::Input(li)
                    }
                    other => other.remap(&at),
                };
                // A step already in the program (the same input, or the same
                // operation on the same operands) is computed once.
                let idx = out.steps.iter().position(|s| *s == step).unwrap_or_else(|| {
                    out.steps.push(step);
                    out.steps.len() - 1
                });
                at.push(idx);
            }
            results.push(*at.last().expect("a program has at least one step"));
        }
        out.steps.push(last(&results));
        out
    }

    /// The array with output `chunks` (to which every leaf is aligned) that
    /// runs this program per block.
    pub(crate) fn build<R: Element>(
        self,
        name: String,
        chunks: Vec<Vec<usize>>,
    ) -> Result<Array<R>, ArrayError> {
        let inputs = self.inputs(&chunks)?;
        let grid: Vec<usize> = chunks.iter().map(Vec::len).collect();
        let program = self.program();
        let blocks = ArrayD::from_shape_fn(IxDyn(&grid), |i| {
            fused_block(inputs(i.slice()), program.clone())
        });
        let mut out = Array::from_blocks(name, chunks, blocks);
        out.fused = Some(Arc::new(self));
        Ok(out)
    }

    /// The program's inputs for each block of an output chunked as `chunks`.
    pub(crate) fn inputs(
        &self,
        chunks: &[Vec<usize>],
    ) -> Result<impl Fn(&[usize]) -> Vec<Delayed<Block>>, ArrayError> {
        let operands: Vec<Operand> =
            self.leaves.iter().map(|l| (l.operand)(chunks)).collect::<Result<_, _>>()?;
        Ok(move |i: &[usize]| operands.iter().map(|f| f(i)).collect())
    }

    /// The program, as an op argument.
    pub(crate) fn program(&self) -> Program {
        Program(self.steps.clone())
    }
}

/// Runs `steps` with `input(i)` as input `i`, dropping values after their last use.
fn run<'a>(
    steps: &[Step],
    input: impl Fn(usize) -> Cow<'a, BlockData>,
) -> Result<BlockData, String> {
    let mut last_use = vec![usize::MAX; steps.len()];
    for (k, s) in steps.iter().enumerate() {
        if let Some(o) = s.operands().into_iter().find(|&o| o >= k) {
            return Err(format!(
                "fused program: step {k} reads step {o}, which does not come before it"
            ));
        }
        s.operands().into_iter().for_each(|o| last_use[o] = k);
    }
    let mut vals: Vec<Option<Cow<'a, BlockData>>> = vec![None; steps.len()];
    for (k, step) in steps.iter().enumerate() {
        let get = |i: usize| {
            vals[i]
                .as_deref()
                .ok_or_else(|| format!("fused program: step {k} reads step {i}, which was dropped"))
        };
        let v = match step {
            Step::Input(i) => input(*i),
            Step::Unary(op, a) => Cow::Owned(unary_data(get(*a)?, *op)?),
            Step::Binary(op, a, b) => Cow::Owned(binary_data(get(*a)?, get(*b)?, *op)?),
            Step::Scalar { op, arg, value, scalar_first } => {
                Cow::Owned(scalar_data(get(*arg)?, *value, *op, *scalar_first)?)
            }
            Step::Where(c, a, b) => Cow::Owned(where_data(get(*c)?, get(*a)?, get(*b)?)?),
            Step::Cast(d, a) => Cow::Owned(cast_data(get(*a)?, *d)),
        };
        vals[k] = Some(v);
        for o in step.operands() {
            if last_use[o] == k {
                vals[o] = None;
            }
        }
    }
    let result = vals.pop().flatten().ok_or("fused program: empty")?;
    Ok(result.into_owned())
}

fn contiguous(d: &BlockData) -> bool {
    crate::with_block!(d, |x: T| x.is_standard_layout())
}

/// The block itself when it is in standard layout, else a standard-layout copy.
fn standard_layout(b: &Block) -> Block {
    match super::reduce::standard(b.data()) {
        std::borrow::Cow::Borrowed(_) => b.clone(),
        std::borrow::Cow::Owned(d) => Block::new(d),
    }
}

/// Elements `lo..hi` (in memory order) of a contiguous block, as an array of `shape`.
fn piece(d: &BlockData, lo: usize, hi: usize, shape: &[usize]) -> BlockData {
    crate::with_block!(d, |x: T| {
        let flat = x.as_slice().expect("contiguous");
        T::wrap(
            ArrayD::from_shape_vec(IxDyn(shape), flat[lo..hi].to_vec())
                .expect("hi - lo elements fill the shape"),
        )
    })
}

/// The inputs' common shape when they are all contiguous and of one shape
/// (so they can be cut into tiles or slabs at the same offsets).
fn common_contiguous_shape(inputs: &[Block]) -> Option<Vec<usize>> {
    let shape = inputs.first()?.data().shape().to_vec();
    inputs
        .iter()
        .all(|b| b.data().shape() == shape.as_slice() && contiguous(b.data()))
        .then_some(shape)
}

/// The output of a tiled run, filled tile by tile.
enum Buf {
    F64(Vec<f64>),
    F32(Vec<f32>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
}

impl Buf {
    fn push(buf: &mut Option<Buf>, t: BlockData, capacity: usize) -> Result<(), String> {
        let b = buf.get_or_insert_with(|| match &t {
            BlockData::F64(_) => Buf::F64(Vec::with_capacity(capacity)),
            BlockData::F32(_) => Buf::F32(Vec::with_capacity(capacity)),
            BlockData::I64(_) => Buf::I64(Vec::with_capacity(capacity)),
            BlockData::Bool(_) => Buf::Bool(Vec::with_capacity(capacity)),
        });
        match (b, t) {
            (Buf::F64(v), BlockData::F64(t)) => {
                v.extend_from_slice(t.as_slice().expect("a tile is 1-d and contiguous"))
            }
            (Buf::F32(v), BlockData::F32(t)) => {
                v.extend_from_slice(t.as_slice().expect("a tile is 1-d and contiguous"))
            }
            (Buf::I64(v), BlockData::I64(t)) => {
                v.extend_from_slice(t.as_slice().expect("a tile is 1-d and contiguous"))
            }
            (Buf::Bool(v), BlockData::Bool(t)) => {
                v.extend_from_slice(t.as_slice().expect("a tile is 1-d and contiguous"))
            }
            (_, t) => {
                return Err(format!(
                    "fused program: a tile came out as {}, unlike the first one",
                    t.dtype()
                ))
            }
        }
        Ok(())
    }

    fn finish(self, shape: &[usize]) -> Result<BlockData, String> {
        let s = IxDyn(shape);
        let bad = |e: ndarray::ShapeError| {
            format!("fused program: output does not fill shape {shape:?}: {e}")
        };
        Ok(match self {
            Buf::F64(v) => BlockData::F64(ArrayD::from_shape_vec(s, v).map_err(bad)?),
            Buf::F32(v) => BlockData::F32(ArrayD::from_shape_vec(s, v).map_err(bad)?),
            Buf::I64(v) => BlockData::I64(ArrayD::from_shape_vec(s, v).map_err(bad)?),
            Buf::Bool(v) => BlockData::Bool(ArrayD::from_shape_vec(s, v).map_err(bad)?),
        })
    }
}

/// Runs a fused program on one block's inputs: tile by tile when they are
/// contiguous, of one shape, and the program has more than one operation;
/// else on whole blocks (broadcasting as NumPy does).
pub(crate) fn eval(inputs: &[Block], steps: &[Step]) -> Result<BlockData, String> {
    let operations = steps.iter().filter(|s| !matches!(s, Step::Input(_))).count();
    let shape = match common_contiguous_shape(inputs) {
        Some(shape) if operations > 1 && shape.iter().product::<usize>() > TILE => shape,
        _ => return run(steps, |i| Cow::Borrowed(inputs[i].data())),
    };
    let n: usize = shape.iter().product();
    let mut out = None;
    for lo in (0..n).step_by(TILE) {
        let hi = (lo + TILE).min(n);
        let t = run(steps, |i| Cow::Owned(piece(inputs[i].data(), lo, hi, &[hi - lo])))?;
        if t.shape() != [hi - lo] {
            // Only inputs of the block's shape reach here, so this is a bug.
            return Err(format!(
                "fused program: a tile of {} elements gave shape {:?}",
                hi - lo,
                t.shape()
            ));
        }
        Buf::push(&mut out, t, n)?;
    }
    out.ok_or("fused program: no tiles")?.finish(&shape)
}

/// The partial reduction of what a fused program computes for one block,
/// without the block: slabs of rows are computed and reduced one at a time
/// (about a tile each), then their partials are combined (axis 0 reduced)
/// or stacked (axis 0 kept). Arg-reductions, broadcast or strided inputs
/// and one-slab blocks reduce the computed block instead.
pub(crate) fn eval_reduce(
    inputs: &[Block],
    steps: &[Step],
    axes: &[usize],
    kind: Reduction,
    place: &Placement,
) -> Result<Partial, String> {
    // A block's layout depends on where it came from (a transposed view
    // here, bytes off the wire on a worker); the order of summation must not.
    let standard: Vec<Block>;
    let inputs = if inputs.iter().all(|b| contiguous(b.data())) {
        inputs
    } else {
        standard = inputs.iter().map(standard_layout).collect();
        &standard
    };
    let slabs = common_contiguous_shape(inputs)
        .filter(|_| !matches!(kind, Reduction::ArgMin | Reduction::ArgMax))
        .and_then(|shape| {
            let row: usize = shape.iter().skip(1).product();
            let rows = (TILE / row.max(1)).max(1);
            (shape.first().is_some_and(|&len| len > rows)).then_some((shape, row, rows))
        });
    let Some((shape, row, rows)) = slabs else {
        return partial_of(&eval(inputs, steps)?, axes, kind, place);
    };
    let mut parts = Vec::with_capacity(shape[0].div_ceil(rows));
    for lo in (0..shape[0]).step_by(rows) {
        let hi = (lo + rows).min(shape[0]);
        let mut slab_shape = shape.clone();
        slab_shape[0] = hi - lo;
        let values =
            run(steps, |i| Cow::Owned(piece(inputs[i].data(), lo * row, hi * row, &slab_shape)))?;
        parts.push(partial_of(&values, axes, kind, place)?);
    }
    if axes.contains(&0) {
        combine_partials(parts, kind)
    } else {
        stack_partials(parts)
    }
}

/// Partials of consecutive slabs of rows, with axis 0 not reduced: joined along axis 0.
fn stack_partials(parts: Vec<Partial>) -> Result<Partial, String> {
    fn join<T: Clone>(xs: Vec<&ArrayD<T>>) -> Result<ArrayD<T>, String> {
        let views: Vec<_> = xs.iter().map(|x| x.view()).collect();
        ndarray::concatenate(ndarray::Axis(0), &views)
            .map_err(|e| format!("stacking partials: {e}"))
    }
    match parts.first() {
        Some(Partial::Plain(first)) => {
            let datas: Vec<&BlockData> = parts
                .iter()
                .map(|p| match p {
                    Partial::Plain(b) => Ok(b.data()),
                    _ => Err("stacking partials of different kinds".to_string()),
                })
                .collect::<Result<_, _>>()?;
            let out = crate::with_block!(first.data(), |_x: T| {
                let typed: Vec<&ArrayD<T>> = datas
                    .iter()
                    .map(|d| T::view(d).ok_or("stacking partials of different dtypes"))
                    .collect::<Result<_, _>>()?;
                T::wrap(join(typed)?)
            });
            Ok(Partial::Plain(Block::new(out)))
        }
        Some(Partial::Moments { n, .. }) => {
            let n = *n;
            let (mut means, mut m2s) = (Vec::new(), Vec::new());
            for p in &parts {
                match p {
                    Partial::Moments { mean, m2, .. } => {
                        means.push(mean);
                        m2s.push(m2);
                    }
                    _ => return Err("stacking partials of different kinds".into()),
                }
            }
            Ok(Partial::Moments { n, mean: join(means)?, m2: join(m2s)? })
        }
        _ => Err("no partials to stack, or arg-reduction partials".into()),
    }
}

crate::op! {
    /// The partial reduction over `axes` of what a fused program computes for one block.
    pub fn fused_reduce_partial(inputs: Vec<Block>, program: Program, axes: Vec<usize>, kind: Reduction, place: Placement) -> Result<Partial, String> {
        check(&inputs, &program)?;
        eval_reduce(&inputs, &program.0, &axes, kind, &place)
    }

    /// Runs a fused elementwise program over one block of each input.
    pub fn fused_block(inputs: Vec<Block>, program: Program) -> Result<Block, String> {
        check(&inputs, &program)?;
        eval(&inputs, &program.0).map(Block::new)
    }
}

fn check(inputs: &[Block], program: &Program) -> Result<(), String> {
    match program.0.iter().find_map(|s| match s {
        Step::Input(i) if *i >= inputs.len() => Some(*i),
        _ => None,
    }) {
        Some(bad) => Err(format!(
            "fused program reads input {bad}, but the task has {} inputs",
            inputs.len()
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(v: Vec<f64>) -> Block {
        let n = v.len();
        Block::new(BlockData::F64(ArrayD::from_shape_vec(IxDyn(&[n]), v).unwrap()))
    }

    #[test]
    fn reductions_do_not_depend_on_block_layout() {
        // A transposed view (as a local graph holds it) and the same values in
        // standard layout (as a worker receives them) reduce bit for bit alike.
        let (r, c) = (150, 200);
        let v: Vec<f64> = (0..r * c).map(|i| (i as f64 * 0.731).sin() * 1e3 + 0.1).collect();
        let t = ArrayD::from_shape_vec(IxDyn(&[r, c]), v).unwrap().reversed_axes();
        assert!(!t.is_standard_layout());
        let view = Block::new(BlockData::F64(t.clone()));
        let owned = Block::new(BlockData::F64(t.as_standard_layout().into_owned()));
        let place = Placement { offset: vec![0, 0], shape: vec![c, r] };
        let twice = vec![Step::Input(0), Step::Binary(BinOp::Add, 0, 0)];
        for kind in [Reduction::Sum, Reduction::Var(1.0), Reduction::Mean] {
            for axes in [vec![0], vec![1], vec![0, 1]] {
                for steps in [vec![Step::Input(0)], twice.clone()] {
                    let a = eval_reduce(std::slice::from_ref(&view), &steps, &axes, kind, &place)
                        .unwrap();
                    let b = eval_reduce(std::slice::from_ref(&owned), &steps, &axes, kind, &place)
                        .unwrap();
                    assert_eq!(format!("{a:?}"), format!("{b:?}"), "{kind:?} over {axes:?}");
                }
                let a = partial_of(view.data(), &axes, kind, &place).unwrap();
                let b = partial_of(owned.data(), &axes, kind, &place).unwrap();
                assert_eq!(format!("{a:?}"), format!("{b:?}"), "{kind:?} over {axes:?}, unfused");
            }
        }
    }

    #[test]
    fn malformed_programs_are_errors_not_panics() {
        let x = block(vec![1.0, 2.0]);
        let forward = Program(vec![
            Step::Input(0),
            Step::Binary(BinOp::Add, 0, 2),
            Step::Unary(UnOp::Neg, 0),
        ]);
        let e = fused_block::call(vec![x.clone()], forward).unwrap_err();
        assert!(e.contains("does not come before it"), "{e}");
        let e = fused_block::call(vec![x.clone()], Program(vec![Step::Input(3)])).unwrap_err();
        assert!(e.contains("reads input 3") && e.contains("1 inputs"), "{e}");
        let e = fused_block::call(vec![x], Program(vec![])).unwrap_err();
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn joined_programs_share_inputs_and_tiles_match_whole_blocks() {
        // x * x: one input, read twice.
        let a = super::super::create::from_array(&ArrayD::from_elem(IxDyn(&[4]), 1.0), 2).unwrap();
        let sq = Fused::join(vec![Fused::of(&a), Fused::of(&a)], |r| {
            Step::Binary(BinOp::Mul, r[0], r[1])
        });
        assert_eq!(
            (sq.steps, sq.leaves.len()),
            (vec![Step::Input(0), Step::Binary(BinOp::Mul, 0, 0)], 1)
        );
        // t + exp(t) with t = 2a: t is one step, read twice.
        let t = &a * 2.0;
        let shared = (&t + &t.exp()).unwrap();
        let two =
            Step::Scalar { op: BinOp::Mul, arg: 0, value: Scalar::F64(2.0), scalar_first: false };
        let want =
            vec![Step::Input(0), two, Step::Unary(UnOp::Exp, 1), Step::Binary(BinOp::Add, 1, 2)];
        assert_eq!(shared.fused.as_ref().unwrap().steps, want);
        let n = 3 * TILE + 5;
        let xs: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
        let steps = vec![
            Step::Input(0),
            Step::Scalar { op: BinOp::Sub, arg: 0, value: Scalar::F64(0.25), scalar_first: false },
            Step::Unary(UnOp::Exp, 1),
            Step::Binary(BinOp::Mul, 2, 0),
            Step::Scalar { op: BinOp::Gt, arg: 3, value: Scalar::F64(0.0), scalar_first: false },
        ];
        let tiled = eval(&[block(xs.clone())], &steps).unwrap();
        let whole = run(&steps, |_| {
            Cow::Owned(BlockData::F64(ArrayD::from_shape_vec(IxDyn(&[n]), xs.clone()).unwrap()))
        })
        .unwrap();
        assert_eq!(tiled, whole);
        let want: Vec<bool> = xs.iter().map(|&v| (v - 0.25).exp() * v > 0.0).collect();
        assert_eq!(tiled, BlockData::Bool(ArrayD::from_shape_vec(IxDyn(&[n]), want).unwrap()));
    }
}
