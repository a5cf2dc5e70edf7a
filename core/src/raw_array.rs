//! Serde for ndarray arrays as one raw little-endian buffer plus a shape, for
//! `#[serde(with = "rask_core::raw_array")]` (and [`arc`] for `Arc<Array>`).
//!
//! ndarray's own serde writes one element at a time; through postcard that is
//! a per-element call on both sides. Here the elements are one byte string:
//! a `memcpy` out and a `memcpy` in on little-endian machines, so blocks move
//! between processes at memory speed. Decoding checks that the shape and the
//! byte count agree (no allocation is sized by an unchecked header).

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use ndarray::{Array, Dimension, IxDyn};
use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserializer, Serializer};

/// An element type that has a fixed-size little-endian encoding.
pub trait RawElement: Copy + Send + Sync + 'static {
    /// Bytes per element.
    const SIZE: usize;
    /// NumPy's dtype string (`<f8`, `<i8`, `|b1`, ...).
    const DTYPE: &'static str;
    /// Writes `self` into `out` (exactly `SIZE` bytes).
    fn write_le(self, out: &mut [u8]);
    /// Reads one element; `None` for a byte pattern that is not a value (a bool other than 0/1).
    fn read_le(bytes: &[u8]) -> Option<Self>;
}

macro_rules! raw_number {
    ($($t:ty => $dtype:literal),* $(,)?) => {$(
        impl RawElement for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            const DTYPE: &'static str = $dtype;
            fn write_le(self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_le_bytes());
            }
            fn read_le(bytes: &[u8]) -> Option<Self> {
                Some(<$t>::from_le_bytes(bytes.try_into().ok()?))
            }
        }
    )*};
}

raw_number!(f64 => "<f8", f32 => "<f4", i64 => "<i8", i32 => "<i4", u64 => "<u8", u32 => "<u4", u8 => "|u1");

impl RawElement for bool {
    const SIZE: usize = 1;
    const DTYPE: &'static str = "|b1";
    fn write_le(self, out: &mut [u8]) {
        out[0] = u8::from(self);
    }
    fn read_le(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [0] => Some(false),
            [1] => Some(true),
            _ => None,
        }
    }
}

/// Whether `A`'s in-memory representation is its little-endian encoding, so
/// slices can be copied as bytes (numbers on little-endian targets; not bool,
/// whose decoding must be validated).
fn is_plain<A: RawElement>() -> bool {
    cfg!(target_endian = "little") && std::any::TypeId::of::<A>() != std::any::TypeId::of::<bool>()
}

/// The little-endian bytes of `data`.
pub fn to_le_bytes<A: RawElement>(data: &[A]) -> std::borrow::Cow<'_, [u8]> {
    if is_plain::<A>() {
        // SAFETY: A is a plain number type (no padding, every byte initialized),
        // and the byte slice covers exactly the elements' memory.
        std::borrow::Cow::Borrowed(unsafe {
            std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data))
        })
    } else {
        let mut out = vec![0u8; data.len() * A::SIZE];
        for (v, chunk) in data.iter().zip(out.chunks_exact_mut(A::SIZE)) {
            v.write_le(chunk);
        }
        std::borrow::Cow::Owned(out)
    }
}

/// Elements from little-endian bytes; `None` when the length is not a
/// multiple of the element size or a byte pattern is not a value.
pub fn from_le_bytes<A: RawElement>(bytes: &[u8]) -> Option<Vec<A>> {
    if bytes.len() % A::SIZE != 0 {
        return None;
    }
    let n = bytes.len() / A::SIZE;
    if is_plain::<A>() {
        let mut out: Vec<A> = Vec::with_capacity(n);
        // SAFETY: the capacity is n elements = bytes.len() bytes; every bit
        // pattern is a valid plain number, so the elements are initialized.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                out.as_mut_ptr().cast::<u8>(),
                bytes.len(),
            );
            out.set_len(n);
        }
        Some(out)
    } else {
        bytes.chunks_exact(A::SIZE).map(A::read_le).collect()
    }
}

/// Serializes an array as `(shape, bytes)`.
pub fn serialize<A: RawElement, D: Dimension, S: Serializer>(
    array: &Array<A, D>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let standard;
    let data = match array.as_slice() {
        Some(d) => d,
        None => {
            standard = array.as_standard_layout();
            standard.as_slice().expect("standard layout is contiguous")
        }
    };
    let bytes = to_le_bytes(data);
    let mut t = serializer.serialize_tuple(2)?;
    t.serialize_element(array.shape())?;
    t.serialize_element(&serde_bytes_ref(&bytes))?;
    t.end()
}

/// Deserializes what [`serialize`] wrote, checking the dimension count, the
/// shape against the byte count, and every element's encoding.
pub fn deserialize<'de, A: RawElement, D: Dimension, De: Deserializer<'de>>(
    deserializer: De,
) -> Result<Array<A, D>, De::Error> {
    deserializer.deserialize_tuple(2, ArrayVisitor::<A, D>(PhantomData))
}

/// The same for `Arc<Array>` (values shared between graph nodes without copies).
pub mod arc {
    use super::*;

    /// Serializes the array behind the `Arc`.
    pub fn serialize<A: RawElement, D: Dimension, S: Serializer>(
        array: &Arc<Array<A, D>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        super::serialize(array.as_ref(), serializer)
    }

    /// Deserializes into a new `Arc`.
    pub fn deserialize<'de, A: RawElement, D: Dimension, De: Deserializer<'de>>(
        deserializer: De,
    ) -> Result<Arc<Array<A, D>>, De::Error> {
        super::deserialize(deserializer).map(Arc::new)
    }
}

/// Writes a byte slice with `serialize_bytes` (serde writes `&[u8]` as a sequence otherwise).
fn serde_bytes_ref(bytes: &[u8]) -> impl serde::Serialize + '_ {
    struct B<'a>(&'a [u8]);
    impl serde::Serialize for B<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }
    B(bytes)
}

struct ArrayVisitor<A, D>(PhantomData<(A, D)>);

impl<'de, A: RawElement, D: Dimension> Visitor<'de> for ArrayVisitor<A, D> {
    type Value = Array<A, D>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an array of {} as (shape, little-endian bytes)", A::DTYPE)
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
        let shape: Vec<usize> =
            seq.next_element()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let bytes: ByteBuf =
            seq.next_element()?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
        if let Some(ndim) = D::NDIM {
            if shape.len() != ndim {
                return Err(de::Error::custom(format!(
                    "array has {} dimensions, expected {ndim}",
                    shape.len()
                )));
            }
        }
        let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        match count.and_then(|c| c.checked_mul(A::SIZE)) {
            Some(len) if len == bytes.0.len() => {}
            _ => {
                return Err(de::Error::custom(format!(
                    "array of shape {shape:?} needs {} bytes of {}, got {}",
                    count.map_or("too many".to_string(), |c| (c as u128 * A::SIZE as u128)
                        .to_string()),
                    A::DTYPE,
                    bytes.0.len()
                )))
            }
        }
        let data = from_le_bytes::<A>(&bytes.0).ok_or_else(|| {
            de::Error::custom(format!("invalid {} element in array data", A::DTYPE))
        })?;
        let dyn_array = Array::from_shape_vec(IxDyn(&shape), data).map_err(de::Error::custom)?;
        dyn_array.into_dimensionality::<D>().map_err(de::Error::custom)
    }
}

/// Bytes, borrowed or owned, from any format that has `deserialize_bytes`.
struct ByteBuf(Vec<u8>);

impl<'de> serde::Deserialize<'de> for ByteBuf {
    fn deserialize<De: Deserializer<'de>>(deserializer: De) -> Result<Self, De::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ByteBuf;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v))
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<ByteBuf, S::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(ByteBuf(out))
            }
        }
        deserializer.deserialize_bytes(V)
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{arr2, Array1, Array2, Ix2};
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Holder {
        #[serde(with = "super")]
        a: Array2<f64>,
        #[serde(with = "super")]
        b: Array1<bool>,
        #[serde(with = "super::arc")]
        c: Arc<Array2<i64>>,
    }

    #[test]
    fn round_trips_through_postcard_and_json() {
        let h = Holder {
            a: arr2(&[[1.5, -2.0, f64::INFINITY], [0.0, 4.25, -0.0]]).reversed_axes(),
            b: Array1::from(vec![true, false, true]),
            c: Arc::new(arr2(&[[i64::MIN, 7]])),
        };
        let bytes = postcard::to_stdvec(&h).unwrap();
        assert_eq!(postcard::from_bytes::<Holder>(&bytes).unwrap(), h);
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<Holder>(&json).unwrap(), h);
    }

    type Decoded<A, D> = Result<Array<A, D>, String>;

    fn decode<A: RawElement, D: Dimension>(
        shape: &[usize],
        bytes: &[u8],
    ) -> (Decoded<A, D>, Decoded<A, D>) {
        let header = (shape, serde_bytes_ref(bytes));
        let pc = postcard::to_stdvec(&header).unwrap();
        let json = serde_json::to_string(&header).unwrap();
        (
            deserialize(&mut postcard::Deserializer::from_bytes(&pc)).map_err(|e| e.to_string()),
            deserialize(&mut serde_json::Deserializer::from_str(&json)).map_err(|e| e.to_string()),
        )
    }

    #[test]
    fn rejects_inconsistent_headers() {
        let a = Array2::from_shape_fn((2, 3), |(i, j)| (i * 3 + j) as f64);
        let (pc, json) = decode::<f64, Ix2>(&[2, 3], &to_le_bytes(a.as_slice().unwrap()));
        assert_eq!(pc.unwrap(), a);
        assert_eq!(json.unwrap(), a);
        // (postcard's errors carry no text; JSON's show the message.)
        let (pc, json) = decode::<f64, Ix2>(&[usize::MAX, 3], &[0u8; 48]);
        assert!(pc.is_err());
        assert!(json.unwrap_err().contains("needs too many bytes of <f8, got 48"));
        let (pc, json) = decode::<f64, Ix2>(&[2, 4], &[0u8; 48]);
        assert!(pc.is_err());
        assert!(json.unwrap_err().contains("needs 64 bytes of <f8, got 48"));
        let (pc, json) = decode::<f64, Ix2>(&[2, 3, 1], &[0u8; 48]);
        assert!(pc.is_err());
        assert!(json.unwrap_err().contains("array has 3 dimensions, expected 2"));
        let (pc, json) = decode::<bool, ndarray::Ix1>(&[2], &[1u8, 2]);
        assert!(pc.is_err());
        assert!(json.unwrap_err().contains("invalid |b1 element"));
    }
}
