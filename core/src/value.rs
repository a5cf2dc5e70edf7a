//! Type-erased values that flow between tasks.
//!
//! In a process a [`Value`] is an `Arc` of the typed value: cloning is a reference
//! count, and the last consumer of a value takes it without copying
//! ([`Value::take`]). A value made with [`Value::new`] also knows its serde
//! encoding, so it can leave the process as a versioned binary envelope
//! ([`Value::to_envelope`]) and come back as an *encoded* value that is decoded
//! lazily, by the typed code that knows what it expects ([`Value::take_decode`]).
//! Values made with [`Value::local`] (closure outputs, handles) never leave the
//! process; trying to encode one is an error naming its type.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock, RwLock};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a value could not be converted, encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// The value holds another type than the one asked for.
    #[error("type mismatch: expected a value of type `{expected}`, found `{found}`")]
    TypeMismatch {
        /// The type the caller asked for.
        expected: &'static str,
        /// The type the value holds.
        found: String,
    },
    /// A process-local value (made by `Value::local`, e.g. a closure's output) was asked to leave the process.
    #[error("value of type `{type_name}` is process-local and cannot be serialized; produce it with a registered op (`rask::op!`) or `Value::new` so it has a serde encoding")]
    NotSerializable {
        /// The value's type.
        type_name: &'static str,
    },
    /// serde failed to encode the value.
    #[error("could not encode value of type `{type_name}`: {message}")]
    Encode {
        /// The value's type.
        type_name: &'static str,
        /// The serializer's message.
        message: String,
    },
    /// The bytes do not decode as the requested type.
    #[error("could not decode {len} bytes (sent as `{sent_type}`) as `{expected}`: {message}")]
    Decode {
        /// The type the caller asked for.
        expected: &'static str,
        /// The type name recorded by the sender.
        sent_type: String,
        /// Payload length.
        len: usize,
        /// The deserializer's message.
        message: String,
    },
    /// An envelope is malformed, of another version, or too large.
    #[error("invalid value envelope: {reason}")]
    Envelope {
        /// What is wrong with it.
        reason: String,
    },
}

/// Serializes a value of type `T`.
/// Appends the value's postcard encoding to the given buffer.
type Encoder<T> = fn(&T, Vec<u8>) -> Result<Vec<u8>, postcard::Error>;

/// An in-process value with an optional serde encoder.
struct Holder<T> {
    value: T,
    encode: Option<Encoder<T>>,
}

trait Erased: Send + Sync {
    fn as_any(&self) -> &dyn Any;
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
    fn type_name(&self) -> &'static str;
    fn encode_into(&self, out: Vec<u8>) -> Result<Vec<u8>, ValueError>;
    fn encodable(&self) -> bool;
}

impl<T: Send + Sync + 'static> Erased for Holder<T> {
    fn as_any(&self) -> &dyn Any {
        &self.value
    }
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
    fn encodable(&self) -> bool {
        self.encode.is_some()
    }
    fn encode_into(&self, out: Vec<u8>) -> Result<Vec<u8>, ValueError> {
        let type_name = std::any::type_name::<T>();
        let enc = self.encode.ok_or(ValueError::NotSerializable { type_name })?;
        enc(&self.value, out).map_err(|e| ValueError::Encode { type_name, message: e.to_string() })
    }
}

/// An element type whose lists ops take item by item: a `Vec<U>` argument
/// built from a list of values is assembled from the items themselves, not
/// through a serde round trip of the whole list. Register one with
/// [`list_item!`](crate::list_item) (the array module registers its blocks
/// and reduction partials: a matmul takes a row and a column of blocks).
pub struct ListItem {
    vec_type: fn() -> std::any::TypeId,
    take: TakeList,
}

/// Builds a `Vec<U>` (boxed) from the items of a list.
type TakeList = fn(Vec<Value>) -> Result<Box<dyn Any + Send>, ValueError>;

impl ListItem {
    /// The entry for element type `U`.
    pub const fn of<U: Clone + DeserializeOwned + Send + Sync + 'static>() -> Self {
        fn take<U: Clone + DeserializeOwned + Send + Sync + 'static>(
            items: Vec<Value>,
        ) -> Result<Box<dyn Any + Send>, ValueError> {
            let v: Vec<U> =
                items.into_iter().map(Value::take_decode::<U>).collect::<Result<_, _>>()?;
            Ok(Box::new(v))
        }
        ListItem { vec_type: std::any::TypeId::of::<Vec<U>>, take: take::<U> }
    }
}

inventory::collect!(ListItem);

/// Registers `$t` as a [`ListItem`]: `Vec<$t>` arguments are taken item by item.
#[macro_export]
macro_rules! list_item {
    ($t:ty) => {
        $crate::inventory::submit! { $crate::value::ListItem::of::<$t>() }
    };
}

/// The in-memory size of values of one type (and of `Vec`s of it), close
/// to their encoding's: a worker that knows it keeps such a result as the
/// value and encodes it only when it leaves (a fetch, a spill). Register
/// one with [`size_hint!`](crate::size_hint).
pub struct SizeHint {
    /// The type and its `Vec`.
    pub types: [fn() -> std::any::TypeId; 2],
    /// The size of a value of either type (`None`: another type).
    pub size: fn(&dyn Any) -> Option<usize>,
}

inventory::collect!(SizeHint);

/// Registers the size of `$t` values, by `$f: fn(&$t) -> usize`, for them
/// and `Vec<$t>` (see [`SizeHint`](crate::value::SizeHint)).
#[macro_export]
macro_rules! size_hint {
    ($t:ty, $f:expr) => {
        const _: () = {
            fn size(v: &dyn ::std::any::Any) -> ::std::option::Option<usize> {
                let f: fn(&$t) -> usize = $f;
                if let Some(x) = v.downcast_ref::<$t>() {
                    return Some(f(x));
                }
                v.downcast_ref::<Vec<$t>>().map(|xs| xs.iter().map(f).sum())
            }
            fn one() -> ::std::any::TypeId {
                ::std::any::TypeId::of::<$t>()
            }
            fn many() -> ::std::any::TypeId {
                ::std::any::TypeId::of::<Vec<$t>>()
            }
            $crate::inventory::submit! { $crate::value::SizeHint { types: [one, many], size } }
        };
    };
}

type SizeOf = fn(&dyn Any) -> Option<usize>;

fn size_of_type(id: std::any::TypeId) -> Option<SizeOf> {
    static BY_TYPE: OnceLock<HashMap<std::any::TypeId, SizeOf>> = OnceLock::new();
    BY_TYPE
        .get_or_init(|| {
            inventory::iter::<SizeHint>
                .into_iter()
                .flat_map(|h| h.types.iter().map(move |t| (t(), h.size)))
                .collect()
        })
        .get(&id)
        .copied()
}

/// How to take a list as `T`, when `T` is the `Vec` of a registered [`ListItem`].
fn list_taker<T: 'static>() -> Option<TakeList> {
    static BY_TYPE: OnceLock<HashMap<std::any::TypeId, TakeList>> = OnceLock::new();
    BY_TYPE
        .get_or_init(|| {
            inventory::iter::<ListItem>.into_iter().map(|l| ((l.vec_type)(), l.take)).collect()
        })
        .get(&std::any::TypeId::of::<T>())
        .copied()
}

/// Decodes an encoded value into a `Value` holding a `T`.
type Decoder = fn(&[u8]) -> Result<Value, String>;

fn decoders() -> &'static RwLock<HashMap<std::any::TypeId, Decoder>> {
    static DECODERS: OnceLock<RwLock<HashMap<std::any::TypeId, Decoder>>> = OnceLock::new();
    DECODERS.get_or_init(Default::default)
}

/// Lets [`Value::take`] decode encoded values as `T`: typed code that makes
/// registered tasks of output `T` calls this (`Delayed::from_op`), so that
/// a closure downstream can take a `T` that was assembled from encodings
/// (see [`Value::from_encoded`]) or arrived encoded.
pub fn register_decoder<T: Serialize + DeserializeOwned + Send + Sync + 'static>() {
    fn decode<T: Serialize + DeserializeOwned + Send + Sync + 'static>(
        bytes: &[u8],
    ) -> Result<Value, String> {
        postcard::from_bytes::<T>(bytes).map(Value::new).map_err(|e| e.to_string())
    }
    let id = std::any::TypeId::of::<T>();
    if decoders().read().unwrap_or_else(|p| p.into_inner()).contains_key(&id) {
        return;
    }
    decoders().write().unwrap_or_else(|p| p.into_inner()).insert(id, decode::<T>);
}

fn decoder_of<T: 'static>() -> Option<Decoder> {
    decoders().read().unwrap_or_else(|p| p.into_inner()).get(&std::any::TypeId::of::<T>()).copied()
}

/// A value received from another process, not decoded yet.
struct Encoded {
    type_name: String,
    bytes: Vec<u8>,
}

#[derive(Clone)]
enum Repr {
    Live(Arc<dyn Erased>),
    Encoded(Arc<Encoded>),
    List(Arc<[Value]>),
}

/// A type-erased, cheaply clonable value.
#[derive(Clone)]
pub struct Value(Repr);

fn encode_postcard<T: Serialize>(v: &T, out: Vec<u8>) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_extend(v, out)
}

impl Value {
    /// A value that can also leave the process (it has a serde encoding).
    pub fn new<T: Serialize + Send + Sync + 'static>(value: T) -> Self {
        Value(Repr::Live(Arc::new(Holder { value, encode: Some(encode_postcard::<T>) })))
    }

    /// A process-local value (no encoding needed): closure outputs, handles, caches.
    pub fn local<T: Send + Sync + 'static>(value: T) -> Self {
        Value(Repr::Live(Arc::new(Holder { value, encode: None })))
    }

    /// A list of values (the resolved form of a nested list argument).
    pub fn list(items: Vec<Value>) -> Self {
        Value(Repr::List(items.into()))
    }

    /// A value given by its serde (postcard) encoding, decoded later by typed
    /// code ([`Value::take_decode`]), as if it had arrived from another
    /// process. Lets type-erased code assemble a typed value from the
    /// encodings of its parts (a tuple encodes as its fields one after another).
    pub fn from_encoded(type_name: impl Into<String>, bytes: Vec<u8>) -> Self {
        Value(Repr::Encoded(Arc::new(Encoded { type_name: type_name.into(), bytes })))
    }

    /// The items, when this value is a list made by [`Value::list`].
    pub fn as_list(&self) -> Option<&[Value]> {
        match &self.0 {
            Repr::List(items) => Some(items),
            _ => None,
        }
    }

    /// The Rust type name of the value (as sent, for encoded values).
    pub fn type_name(&self) -> &str {
        match &self.0 {
            Repr::Live(e) => e.type_name(),
            Repr::Encoded(e) => &e.type_name,
            Repr::List(_) => "rask::List",
        }
    }

    /// The size of an in-process value of a type registered with
    /// [`size_hint!`](crate::size_hint) that can be encoded; `None` otherwise.
    pub fn size_hint(&self) -> Option<usize> {
        match &self.0 {
            Repr::Live(e) if e.encodable() => {
                let any = e.as_any();
                size_of_type(any.type_id()).and_then(|f| f(any))
            }
            _ => None,
        }
    }

    /// Whether `self` and `other` are the same value (not an equal copy).
    pub fn same(&self, other: &Value) -> bool {
        match (&self.0, &other.0) {
            (Repr::Live(a), Repr::Live(b)) => Arc::ptr_eq(a, b),
            (Repr::Encoded(a), Repr::Encoded(b)) => Arc::ptr_eq(a, b),
            (Repr::List(a), Repr::List(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Whether the value is still encoded (arrived from another process).
    pub fn is_encoded(&self) -> bool {
        matches!(self.0, Repr::Encoded(_))
    }

    /// Borrows the typed value (in-process values only).
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        match &self.0 {
            Repr::Live(e) => e.as_any().downcast_ref::<T>(),
            _ => None,
        }
    }

    fn mismatch<T>(&self) -> ValueError {
        ValueError::TypeMismatch {
            expected: std::any::type_name::<T>(),
            found: self.type_name().to_string(),
        }
    }

    /// Takes the typed value out: moved when this is the last reference, cloned otherwise.
    pub fn take<T: Clone + Send + Sync + 'static>(self) -> Result<T, ValueError> {
        match self.0 {
            Repr::Live(e) => {
                if e.as_any().downcast_ref::<T>().is_none() {
                    return Err(ValueError::TypeMismatch {
                        expected: std::any::type_name::<T>(),
                        found: e.type_name().to_string(),
                    });
                }
                let holder = e.into_any().downcast::<Holder<T>>().expect("type checked above");
                Ok(match Arc::try_unwrap(holder) {
                    Ok(h) => h.value,
                    Err(shared) => shared.value.clone(),
                })
            }
            Repr::Encoded(ref enc) => match decoder_of::<T>() {
                // A type some typed code registered: decode, then take.
                Some(decode) => decode(&enc.bytes)
                    .map_err(|message| ValueError::Decode {
                        expected: std::any::type_name::<T>(),
                        sent_type: enc.type_name.clone(),
                        len: enc.bytes.len(),
                        message,
                    })?
                    .take(),
                None => Err(self.mismatch::<T>()),
            },
            Repr::List(_) => Err(self.mismatch::<T>()),
        }
    }

    /// Like [`Value::take`], but also decodes a value that arrived encoded.
    pub fn take_decode<T: Clone + DeserializeOwned + Send + Sync + 'static>(
        self,
    ) -> Result<T, ValueError> {
        match &self.0 {
            Repr::Encoded(enc) => {
                postcard::from_bytes(&enc.bytes).map_err(|e| ValueError::Decode {
                    expected: std::any::type_name::<T>(),
                    sent_type: enc.type_name.clone(),
                    len: enc.bytes.len(),
                    message: e.to_string(),
                })
            }
            Repr::List(items) => {
                // Lists of registered item types are taken item by item (moved when unshared).
                if let Some(take) = list_taker::<T>() {
                    let items: Vec<Value> = items.to_vec();
                    drop(self);
                    return Ok(*take(items)?
                        .downcast::<T>()
                        .expect("the taker of Vec<U> builds a Vec<U>"));
                }
                // Other lists become a typed sequence through their serde encoding
                // (a list of `T` encodes exactly as a `Vec<T>`).
                let bytes = self.encode()?;
                postcard::from_bytes(&bytes).map_err(|e| ValueError::Decode {
                    expected: std::any::type_name::<T>(),
                    sent_type: "rask::List".to_string(),
                    len: bytes.len(),
                    message: e.to_string(),
                })
            }
            Repr::Live(_) => self.take(),
        }
    }

    /// The serde (postcard) encoding of the payload.
    pub fn encode(&self) -> Result<Vec<u8>, ValueError> {
        self.encode_into(Vec::new())
    }

    /// Appends the serde (postcard) encoding of the payload to `out`
    /// (written in place: no copy of a large payload).
    pub fn encode_into(&self, mut out: Vec<u8>) -> Result<Vec<u8>, ValueError> {
        match &self.0 {
            Repr::Live(e) => e.encode_into(out),
            Repr::Encoded(e) => {
                out.extend_from_slice(&e.bytes);
                Ok(out)
            }
            Repr::List(items) => {
                // postcard encodes a sequence as a varint length followed by the elements,
                // so the list's encoding is that of a `Vec<T>` of its items.
                push_varint(&mut out, items.len() as u64);
                for item in items.iter() {
                    out = item.encode_into(out)?;
                }
                Ok(out)
            }
        }
    }

    /// The versioned wire envelope: magic, version, type name, payload.
    pub fn to_envelope(&self) -> Result<Vec<u8>, ValueError> {
        let name = match &self.0 {
            Repr::List(items) => {
                format!("rask::List[{}]", items.first().map(|v| v.type_name()).unwrap_or(""))
            }
            _ => self.type_name().to_string(),
        };
        let mut out = Vec::with_capacity(name.len() + 64);
        out.extend_from_slice(ENVELOPE_MAGIC);
        out.push(ENVELOPE_VERSION);
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        // The payload's length is written once the payload is (in place).
        let at = out.len();
        out.extend_from_slice(&0u64.to_le_bytes());
        let mut out = self.encode_into(out)?;
        let len = (out.len() - at - 8) as u64;
        out[at..at + 8].copy_from_slice(&len.to_le_bytes());
        Ok(out)
    }

    /// Reads an envelope made by [`Value::to_envelope`], refusing payloads over `max_len` bytes.
    /// The result is an encoded value; typed code decodes it with [`Value::take_decode`].
    pub fn from_envelope(bytes: &[u8], max_len: usize) -> Result<Value, ValueError> {
        let bad = |reason: String| ValueError::Envelope { reason };
        if bytes.len() < ENVELOPE_MAGIC.len() + 1 || &bytes[..4] != ENVELOPE_MAGIC {
            return Err(bad("missing the `RSKV` magic bytes: not a Rask value".into()));
        }
        let version = bytes[4];
        if version != ENVELOPE_VERSION {
            return Err(bad(format!(
                "envelope version {version} but this build reads version {ENVELOPE_VERSION}; run the same Rask version on both sides"
            )));
        }
        let mut pos: usize = 5;
        let mut read = |n: usize, what: &str| -> Result<&[u8], ValueError> {
            let end = pos.checked_add(n).filter(|&e| e <= bytes.len()).ok_or_else(|| {
                bad(format!(
                    "truncated: {what} needs {n} bytes at offset {pos}, only {} in total",
                    bytes.len()
                ))
            })?;
            let s = &bytes[pos..end];
            pos = end;
            Ok(s)
        };
        let name_len =
            u32::from_le_bytes(read(4, "type-name length")?.try_into().expect("4 bytes")) as usize;
        if name_len > 4096 {
            return Err(bad(format!("type name of {name_len} bytes exceeds 4096")));
        }
        let name = String::from_utf8(read(name_len, "type name")?.to_vec())
            .map_err(|_| bad("type name is not UTF-8".into()))?;
        let len = u64::from_le_bytes(read(8, "payload length")?.try_into().expect("8 bytes"));
        if len > max_len as u64 {
            return Err(bad(format!(
                "payload of {len} bytes exceeds the limit of {max_len} bytes"
            )));
        }
        let payload = read(len as usize, "payload")?.to_vec();
        if pos != bytes.len() {
            return Err(bad(format!("{} trailing bytes after the payload", bytes.len() - pos)));
        }
        Ok(Value(Repr::Encoded(Arc::new(Encoded { type_name: name, bytes: payload }))))
    }
}

const ENVELOPE_MAGIC: &[u8; 4] = b"RSKV";
const ENVELOPE_VERSION: u8 = 1;

/// Appends postcard's encoding of a sequence length (LEB128): a `Vec` of
/// `n` items encodes as this, then each item's encoding.
pub fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Live(e) => write!(f, "Value<{}>", e.type_name()),
            Repr::Encoded(e) => {
                write!(f, "Value<{}, {} bytes encoded>", e.type_name, e.bytes.len())
            }
            Repr::List(items) => f.debug_list().entries(items.iter()).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assembled_encoding_is_taken_once_its_type_is_registered() {
        // (u16, String) encodes as its fields in turn.
        let mut bytes = Value::new(7u16).encode().unwrap();
        bytes.extend(Value::new("seven".to_string()).encode().unwrap());
        type Pair = (u16, String);
        let v = Value::from_encoded("pair", bytes.clone());
        assert!(v.clone().take::<Pair>().is_err(), "no decoder registered yet");
        assert_eq!(v.clone().take_decode::<Pair>().unwrap(), (7, "seven".to_string()));
        register_decoder::<Pair>();
        assert_eq!(v.take::<Pair>().unwrap(), (7, "seven".to_string()));
        let bad = Value::from_encoded("pair", bytes[..2].to_vec()).take::<Pair>().unwrap_err();
        assert!(bad.to_string().contains("pair"), "{bad}");
    }

    /// Lists of it can only be taken item by item: its encoding always fails.
    #[derive(Clone, Debug, PartialEq, serde::Deserialize)]
    struct NoWire(u32);
    impl Serialize for NoWire {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("NoWire has no encoding"))
        }
    }
    crate::list_item!(NoWire);

    #[test]
    fn registered_list_items_are_taken_one_by_one() {
        let list = Value::list(vec![Value::new(NoWire(1)), Value::new(NoWire(2))]);
        assert_eq!(list.take_decode::<Vec<NoWire>>().unwrap(), vec![NoWire(1), NoWire(2)]);
        // An unregistered element type goes through serde.
        let nums = Value::list(vec![Value::new(3u32), Value::new(4u32)]);
        assert_eq!(nums.take_decode::<Vec<u32>>().unwrap(), vec![3, 4]);
    }

    #[test]
    fn take_moves_last_reference_and_clones_shared() {
        let v = Value::new(vec![1u8, 2, 3]);
        let w = v.clone();
        assert_eq!(w.take::<Vec<u8>>().unwrap(), vec![1, 2, 3]);
        assert_eq!(v.take::<Vec<u8>>().unwrap(), vec![1, 2, 3]);
    }

    #[test]
    fn type_mismatch_names_both_types() {
        let err = Value::new(1i64).take::<String>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("alloc::string::String") && msg.contains("i64"), "{msg}");
    }

    #[test]
    fn envelope_round_trip_decodes_lazily() {
        let v = Value::new((3i64, String::from("x")));
        let bytes = v.to_envelope().unwrap();
        let back = Value::from_envelope(&bytes, 1 << 20).unwrap();
        assert!(back.is_encoded());
        assert_eq!(back.take_decode::<(i64, String)>().unwrap(), (3, "x".to_string()));
    }

    #[test]
    fn list_encodes_as_vec() {
        let l = Value::list(vec![Value::new(1.5f64), Value::new(2.5f64)]);
        let back = Value::from_envelope(&l.to_envelope().unwrap(), 1024).unwrap();
        assert_eq!(back.take_decode::<Vec<f64>>().unwrap(), vec![1.5, 2.5]);
    }

    #[test]
    fn bad_envelopes_are_rejected() {
        let good = Value::new(7u32).to_envelope().unwrap();
        assert!(Value::from_envelope(b"nope", 10).unwrap_err().to_string().contains("magic"));
        let mut v2 = good.clone();
        v2[4] = 9;
        assert!(Value::from_envelope(&v2, 10).unwrap_err().to_string().contains("version 9"));
        let trunc = &good[..good.len() - 1];
        assert!(Value::from_envelope(trunc, 10).unwrap_err().to_string().contains("truncated"));
        let big = Value::new(vec![0u8; 100]).to_envelope().unwrap();
        assert!(Value::from_envelope(&big, 10)
            .unwrap_err()
            .to_string()
            .contains("exceeds the limit"));
    }

    #[test]
    fn local_values_refuse_to_encode() {
        struct Handle;
        let err = Value::local(Handle).encode().unwrap_err();
        assert!(matches!(err, ValueError::NotSerializable { .. }));
    }
}
