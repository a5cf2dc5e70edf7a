//! The values that partitions and plans are made of, with their wire forms.
//!
//! - [`Frame`]: one partition, a polars `DataFrame`. Its serde encoding is
//!   the Arrow IPC file format, so a partition moves between workers (and to
//!   a worker's spill file) as Arrow IPC, with no per-row work.
//! - [`Wire`]: a polars plan value (expressions, a schema) in polars' own
//!   binary serialization; postcard cannot carry polars' serde forms.

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

use polars::prelude::*;
use serde::de::{DeserializeOwned, Error as _, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One partition of a [`DataFrame`](crate::DataFrame): a polars `DataFrame`.
#[derive(Clone, Debug, Default)]
pub struct Frame(pub DataFrame);

impl Frame {
    /// The partition's Arrow IPC file bytes.
    pub fn to_ipc(&self) -> PolarsResult<Vec<u8>> {
        // Sized up front: growing by doubling would copy a large frame twice.
        let mut buf = Vec::with_capacity(self.0.estimated_size() + 1024 * (self.0.width() + 1));
        let mut df = self.0.clone();
        IpcWriter::new(&mut buf).finish(&mut df)?;
        Ok(buf)
    }

    /// A partition from Arrow IPC file bytes. Malformed bytes are an error,
    /// never a panic (the bytes may come from another process). Its chunks
    /// are the encoded frame's (not joined into one): polars' float sums
    /// depend on the chunk layout, so a frame sent to another worker must
    /// add up there exactly as it does where it was made.
    pub fn from_ipc(bytes: &[u8]) -> Result<Frame, String> {
        let read = catch_unwind(AssertUnwindSafe(|| {
            IpcReader::new(Cursor::new(bytes)).set_rechunk(false).finish()
        }));
        match read {
            Ok(Ok(df)) => Ok(Frame(df)),
            Ok(Err(e)) => {
                Err(format!("malformed Arrow IPC partition ({} bytes): {e}", bytes.len()))
            }
            Err(_) => Err(format!("malformed Arrow IPC partition ({} bytes)", bytes.len())),
        }
    }
}

// Workers keep frames as values and encode them only when they leave.
rask_core::size_hint!(Frame, |f: &Frame| f.0.estimated_size());

impl PartialEq for Frame {
    fn eq(&self, other: &Self) -> bool {
        self.0.equals_missing(&other.0)
    }
}

impl Serialize for Frame {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bytes = self.to_ipc().map_err(serde::ser::Error::custom)?;
        s.serialize_bytes(&bytes)
    }
}

impl<'de> Deserialize<'de> for Frame {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = d.deserialize_bytes(BytesVisitor)?;
        Frame::from_ipc(&bytes).map_err(D::Error::custom)
    }
}

/// A polars value carried in polars' compact binary serialization.
#[derive(Clone, Debug, PartialEq)]
pub struct Wire<T>(pub T);

impl<T: Serialize> Serialize for Wire<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bytes = polars_utils::pl_serialize::serialize_to_bytes::<_, false>(&self.0)
            .map_err(serde::ser::Error::custom)?;
        s.serialize_bytes(&bytes)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Wire<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = d.deserialize_bytes(BytesVisitor)?;
        let read = catch_unwind(AssertUnwindSafe(|| {
            polars_utils::pl_serialize::deserialize_from_reader::<T, _, false>(bytes.as_slice())
        }));
        match read {
            Ok(Ok(v)) => Ok(Wire(v)),
            Ok(Err(e)) => Err(D::Error::custom(format!("malformed polars plan: {e}"))),
            Err(_) => Err(D::Error::custom("malformed polars plan")),
        }
    }
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("bytes")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(b) = seq.next_element()? {
            out.push(b);
        }
        Ok(out)
    }
}

// Lists of partitions are handed to ops frame by frame, without an IPC round trip in-process.
rask_core::list_item!(Frame);
rask_core::list_item!(Vec<Frame>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_their_encoding() {
        let df =
            df!("a" => [1i64, 2, 3], "b" => ["x", "y", "z"], "c" => [Some(1.5), None, Some(3.0)])
                .unwrap();
        let bytes = postcard::to_stdvec(&Frame(df.clone())).unwrap();
        let back: Frame = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, Frame(df));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let bytes = postcard::to_stdvec(&serde_bytes_of(b"not arrow at all")).unwrap();
        let err = postcard::from_bytes::<Frame>(&bytes).unwrap_err();
        assert!(!err.to_string().is_empty());
        assert!(Frame::from_ipc(b"ARROW1\0\0garbage").unwrap_err().contains("malformed"));
    }

    #[test]
    fn expressions_round_trip() {
        let e = vec![col("a").sum().alias("s"), (col("b") * lit(2)).mean()];
        let bytes = postcard::to_stdvec(&Wire(e.clone())).unwrap();
        let back: Wire<Vec<Expr>> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.0, e);
    }

    fn serde_bytes_of(b: &[u8]) -> Wire2 {
        Wire2(b.to_vec())
    }

    struct Wire2(Vec<u8>);
    impl Serialize for Wire2 {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }
}
