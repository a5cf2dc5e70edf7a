//! The value one array block is: an ndarray of one of the supported element
//! types, serialized as a raw little-endian buffer, and counted while alive
//! (so tests and diagnostics can see how many bytes of blocks are resident).

use std::sync::atomic::{AtomicI64, Ordering};

use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};

use crate::raw_array::RawElement;

/// Element types of arrays.
pub trait Element:
    RawElement + PartialOrd + Default + std::fmt::Debug + Serialize + for<'de> Deserialize<'de>
{
    /// The dtype name, as NumPy spells it (`float64`, ...).
    const NAME: &'static str;
    /// Wraps an ndarray as block data.
    fn wrap(a: ArrayD<Self>) -> BlockData;
    /// Unwraps block data of this type.
    fn unwrap(d: BlockData) -> Result<ArrayD<Self>, String>;
    /// Borrows block data of this type.
    fn view(d: &BlockData) -> Option<&ArrayD<Self>>;
    /// Converts from f64 (bool: non-zero is true; integers truncate).
    fn from_f64(v: f64) -> Self;
    /// Converts to f64.
    fn to_f64(self) -> f64;
    /// A scalar of this type.
    fn scalar(self) -> Scalar;
}

/// A scalar operand or fill value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Scalar {
    /// float64
    F64(f64),
    /// float32
    F32(f32),
    /// int64
    I64(i64),
    /// bool
    Bool(bool),
}

/// The data of one block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BlockData {
    /// float64 elements.
    F64(#[serde(with = "crate::raw_array")] ArrayD<f64>),
    /// float32 elements.
    F32(#[serde(with = "crate::raw_array")] ArrayD<f32>),
    /// int64 elements.
    I64(#[serde(with = "crate::raw_array")] ArrayD<i64>),
    /// bool elements.
    Bool(#[serde(with = "crate::raw_array")] ArrayD<bool>),
}

macro_rules! element {
    ($t:ty, $variant:ident, $name:literal, $from:expr, $to:expr) => {
        impl Element for $t {
            const NAME: &'static str = $name;
            fn wrap(a: ArrayD<Self>) -> BlockData {
                BlockData::$variant(a)
            }
            fn unwrap(d: BlockData) -> Result<ArrayD<Self>, String> {
                match d {
                    BlockData::$variant(a) => Ok(a),
                    other => {
                        Err(format!("block holds {} elements, expected {}", other.dtype(), $name))
                    }
                }
            }
            fn view(d: &BlockData) -> Option<&ArrayD<Self>> {
                match d {
                    BlockData::$variant(a) => Some(a),
                    _ => None,
                }
            }
            fn from_f64(v: f64) -> Self {
                let f: fn(f64) -> $t = $from;
                f(v)
            }
            fn to_f64(self) -> f64 {
                let f: fn($t) -> f64 = $to;
                f(self)
            }
            fn scalar(self) -> Scalar {
                Scalar::$variant(self)
            }
        }
    };
}

element!(f64, F64, "float64", |v| v, |v| v);
element!(f32, F32, "float32", |v| v as f32, |v| v as f64);
element!(i64, I64, "int64", |v| v as i64, |v| v as f64);
element!(bool, Bool, "bool", |v| v != 0.0, |v| f64::from(u8::from(v)));

impl BlockData {
    /// The dtype name.
    pub fn dtype(&self) -> &'static str {
        match self {
            BlockData::F64(_) => f64::NAME,
            BlockData::F32(_) => f32::NAME,
            BlockData::I64(_) => i64::NAME,
            BlockData::Bool(_) => bool::NAME,
        }
    }

    /// The block's shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            BlockData::F64(a) => a.shape(),
            BlockData::F32(a) => a.shape(),
            BlockData::I64(a) => a.shape(),
            BlockData::Bool(a) => a.shape(),
        }
    }

    /// Bytes of element data.
    pub fn nbytes(&self) -> usize {
        let n: usize = self.shape().iter().product();
        n * match self {
            BlockData::F64(_) | BlockData::I64(_) => 8,
            BlockData::F32(_) => 4,
            BlockData::Bool(_) => 1,
        }
    }

    /// A block of `shape` filled with `value`.
    pub fn full(shape: &[usize], value: Scalar) -> BlockData {
        let s = IxDyn(shape);
        match value {
            Scalar::F64(v) => BlockData::F64(ArrayD::from_elem(s, v)),
            Scalar::F32(v) => BlockData::F32(ArrayD::from_elem(s, v)),
            Scalar::I64(v) => BlockData::I64(ArrayD::from_elem(s, v)),
            Scalar::Bool(v) => BlockData::Bool(ArrayD::from_elem(s, v)),
        }
    }
}

/// Applies `$body` to the typed ndarray inside a `BlockData` (bound as `$a`),
/// with `$T` the element type; `$body` must produce a `BlockData`-typed value
/// or something generic over the element type.
#[macro_export]
#[doc(hidden)]
macro_rules! with_block {
    ($data:expr, |$a:ident : $T:ident| $body:expr) => {
        match $data {
            $crate::array::BlockData::F64($a) => {
                #[allow(dead_code)]
                type $T = f64;
                $body
            }
            $crate::array::BlockData::F32($a) => {
                #[allow(dead_code)]
                type $T = f32;
                $body
            }
            $crate::array::BlockData::I64($a) => {
                #[allow(dead_code)]
                type $T = i64;
                $body
            }
            $crate::array::BlockData::Bool($a) => {
                #[allow(dead_code)]
                type $T = bool;
                $body
            }
        }
    };
}

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static PEAK_BYTES: AtomicI64 = AtomicI64::new(0);
static LIVE_BLOCKS: AtomicI64 = AtomicI64::new(0);
static PEAK_BLOCKS: AtomicI64 = AtomicI64::new(0);

/// Block memory in this process: what is alive now and the peak since the
/// last [`reset_peak`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockMemory {
    /// Blocks alive now.
    pub live_blocks: i64,
    /// Their element bytes.
    pub live_bytes: i64,
    /// The most blocks alive at once.
    pub peak_blocks: i64,
    /// The most element bytes alive at once.
    pub peak_bytes: i64,
}

/// Current and peak block memory of this process.
pub fn block_memory() -> BlockMemory {
    BlockMemory {
        live_blocks: LIVE_BLOCKS.load(Ordering::Relaxed),
        live_bytes: LIVE_BYTES.load(Ordering::Relaxed),
        peak_blocks: PEAK_BLOCKS.load(Ordering::Relaxed),
        peak_bytes: PEAK_BYTES.load(Ordering::Relaxed),
    }
}

/// Restarts the peaks from what is alive now.
pub fn reset_peak() {
    PEAK_BYTES.store(LIVE_BYTES.load(Ordering::Relaxed), Ordering::Relaxed);
    PEAK_BLOCKS.store(LIVE_BLOCKS.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// Block data counted while alive (once, however many handles share it).
#[derive(Debug)]
struct Counted {
    data: Option<BlockData>,
    bytes: i64,
}

impl Drop for Counted {
    fn drop(&mut self) {
        LIVE_BYTES.fetch_sub(self.bytes, Ordering::Relaxed);
        LIVE_BLOCKS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One block: shared, immutable data (cloning a handle copies nothing, so a
/// persisted block feeds any number of tasks without copies).
#[derive(Debug, Clone)]
pub struct Block(std::sync::Arc<Counted>);

impl PartialEq for Block {
    fn eq(&self, other: &Self) -> bool {
        self.data() == other.data()
    }
}

impl Block {
    /// Wraps block data (and counts it).
    pub fn new(data: BlockData) -> Self {
        let bytes = data.nbytes() as i64;
        let now = LIVE_BYTES.fetch_add(bytes, Ordering::Relaxed) + bytes;
        PEAK_BYTES.fetch_max(now, Ordering::Relaxed);
        let blocks = LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed) + 1;
        PEAK_BLOCKS.fetch_max(blocks, Ordering::Relaxed);
        Block(std::sync::Arc::new(Counted { data: Some(data), bytes }))
    }

    /// Wraps a typed ndarray.
    pub fn from_array<T: Element>(a: ArrayD<T>) -> Self {
        Block::new(T::wrap(a))
    }

    /// The data.
    pub fn data(&self) -> &BlockData {
        self.0.data.as_ref().expect("a block holds data until taken")
    }

    /// Takes the data out: moved when this is the only handle, copied otherwise.
    pub fn into_data(self) -> BlockData {
        match std::sync::Arc::try_unwrap(self.0) {
            Ok(mut c) => c.data.take().expect("a block holds data until taken"),
            Err(shared) => shared.data.clone().expect("a block holds data until taken"),
        }
    }

    /// Takes the typed ndarray out.
    pub fn into_array<T: Element>(self) -> Result<ArrayD<T>, String> {
        T::unwrap(self.into_data())
    }
}

impl Serialize for Block {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.data().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Block {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BlockData::deserialize(d).map(Block::new)
    }
}

// Ops take rows and columns of blocks (`Vec<Block>`) item by item.
crate::list_item!(Block);
