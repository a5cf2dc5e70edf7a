//! Registered element functions applied item by item, so that `map`,
//! `filter` and `flat_map` with a registered op (declared with
//! `rask_core::op!`, one argument) run on a cluster's workers: the partition
//! op (`map_with<T>`, `filter_with<T>`, registered per element type) looks the
//! element op up by name where it runs.
//!
//! A mapped partition is a list of the op's outputs, which decodes as a
//! `Vec<U>` wherever it goes (in process item by item, between processes
//! through its encoding, which is that of a `Vec<U>`).

use rask_core::{OpEntry, OpError, Value};

fn element_op(name: &str) -> Result<&'static OpEntry, OpError> {
    rask_core::op::lookup(name).ok_or_else(|| {
        OpError::failed(format!(
            "no op named `{name}` is registered in this process: element functions of bags on a cluster are registered ops (`rask_core::op!`) compiled into the workers' binary"
        ))
    })
}

/// `op` applied to every item; the results as a list value.
pub fn map_with<T: serde::Serialize + Send + Sync + 'static>(
    p: Vec<T>,
    op: &str,
) -> Result<Value, OpError> {
    let f = element_op(op)?;
    let out =
        p.into_iter().map(|x| (f.func)(vec![Value::new(x)])).collect::<Result<Vec<Value>, _>>()?;
    Ok(Value::list(out))
}

/// The items for which `op` returns `true`.
pub fn filter_with<T: serde::Serialize + Clone + Send + Sync + 'static>(
    p: Vec<T>,
    op: &str,
) -> Result<Vec<T>, OpError> {
    let f = element_op(op)?;
    let mut out = Vec::with_capacity(p.len());
    for x in p {
        let keep = (f.func)(vec![Value::new(x.clone())])?
            .take_decode::<bool>()
            .map_err(|e| OpError::failed(format!("filter op `{op}` must return bool: {e}")))?;
        if keep {
            out.push(x);
        }
    }
    Ok(out)
}

// ------------------------------------------------ folds and groups by op
//
// Keys and accumulators of registered ops have types this code does not
// know: it holds them as their encodings (equal values encode equally) and
// hands them back to the ops as encoded values, which the ops decode.

/// (key, accumulator) encodings of a fold by key.
pub type KeyedEncodings = Vec<(Vec<u8>, Vec<u8>)>;

/// A value's encoding, for keys and accumulators.
fn encoded(v: &Value, what: &str, op: &str) -> Result<Vec<u8>, OpError> {
    v.encode()
        .map_err(|e| OpError::failed(format!("the {what} of op `{op}` cannot be encoded: {e}")))
}

fn as_value(bytes: &[u8]) -> Value {
    Value::from_encoded("rask_bag::encoded", bytes.to_vec())
}

/// Folds a partition from `initial` (encoded) with `binop(acc, item)`; the
/// accumulator's encoding.
pub fn fold_with<T: serde::Serialize + Send + Sync + 'static>(
    p: Vec<T>,
    binop: &str,
    initial: &[u8],
) -> Result<Vec<u8>, OpError> {
    let f = element_op(binop)?;
    let mut acc = as_value(initial);
    for x in p {
        acc = (f.func)(vec![acc, Value::new(x)])?;
    }
    encoded(&acc, "accumulator", binop)
}

/// Merges encoded accumulators with `combine(a, b)`; `initial` for none.
pub fn fold_combine(
    parts: Vec<Vec<u8>>,
    combine: &str,
    initial: &[u8],
) -> Result<Vec<u8>, OpError> {
    let f = element_op(combine)?;
    let mut it = parts.into_iter();
    let Some(first) = it.next() else { return Ok(initial.to_vec()) };
    let mut acc = as_value(&first);
    for b in it {
        acc = (f.func)(vec![acc, as_value(&b)])?;
    }
    encoded(&acc, "result", combine)
}

/// Per key (`key(item)`), the fold from `initial` with `binop`: (key, accumulator) encodings.
pub fn foldby_with<T: serde::Serialize + Send + Sync + 'static>(
    p: Vec<T>,
    key: &str,
    binop: &str,
    initial: &[u8],
) -> Result<KeyedEncodings, OpError> {
    let (kf, bf) = (element_op(key)?, element_op(binop)?);
    let mut acc: rustc_hash::FxHashMap<Vec<u8>, Value> = Default::default();
    for x in p {
        let x = Value::new(x);
        let k = encoded(&(kf.func)(vec![x.clone()])?, "key", key)?;
        let a = acc.remove(&k).unwrap_or_else(|| as_value(initial));
        acc.insert(k, (bf.func)(vec![a, x])?);
    }
    acc.into_iter().map(|(k, a)| Ok((k, encoded(&a, "accumulator", binop)?))).collect()
}

/// Merges per-key accumulators with `combine`, sorted by key encoding.
pub fn foldby_combine(
    parts: Vec<KeyedEncodings>,
    combine: &str,
) -> Result<KeyedEncodings, OpError> {
    let f = element_op(combine)?;
    let mut acc: std::collections::BTreeMap<Vec<u8>, Value> = Default::default();
    for (k, a) in parts.into_iter().flatten() {
        let v = match acc.remove(&k) {
            Some(b) => (f.func)(vec![b, as_value(&a)])?,
            None => as_value(&a),
        };
        acc.insert(k, v);
    }
    acc.into_iter().map(|(k, a)| Ok((k, encoded(&a, "result", combine)?))).collect()
}

/// The encoding of a `Vec<(K, A)>` from the encodings of its keys and
/// accumulators (a tuple encodes as its fields in turn): typed code decodes it.
pub fn pairs_value(pairs: KeyedEncodings) -> Value {
    let mut out =
        Vec::with_capacity(pairs.iter().map(|(k, a)| k.len() + a.len()).sum::<usize>() + 8);
    rask_core::value::push_varint(&mut out, pairs.len() as u64);
    for (k, a) in pairs {
        out.extend_from_slice(&k);
        out.extend_from_slice(&a);
    }
    Value::from_encoded("Vec<(K, A)>", out)
}

/// Splits a partition into `n` buckets by the hash of each item's key encoding.
#[allow(clippy::type_complexity)]
pub fn groupby_split<T: serde::Serialize + Clone + Send + Sync + 'static>(
    p: Vec<T>,
    key: &str,
    n: u64,
) -> Result<Vec<Vec<(Vec<u8>, T)>>, OpError> {
    use std::hash::{Hash, Hasher};
    let kf = element_op(key)?;
    let mut buckets: Vec<Vec<(Vec<u8>, T)>> = (0..n.max(1)).map(|_| Vec::new()).collect();
    for x in p {
        let k = encoded(&(kf.func)(vec![Value::new(x.clone())])?, "key", key)?;
        let mut h = rustc_hash::FxHasher::default();
        k.hash(&mut h);
        let b = (h.finish() % n.max(1)) as usize;
        buckets[b].push((k, x));
    }
    Ok(buckets)
}

/// Bucket `j` of every split, grouped by key (sorted by key encoding, items
/// in input order): the encoding of a `Vec<(K, Vec<T>)>`.
#[allow(clippy::type_complexity)]
pub fn groupby_collect<T: serde::Serialize + Send + Sync + 'static>(
    splits: Vec<Vec<Vec<(Vec<u8>, T)>>>,
    j: u64,
) -> Result<Value, OpError> {
    let mut groups: std::collections::BTreeMap<Vec<u8>, Vec<T>> = Default::default();
    for mut buckets in splits {
        let Some(bucket) = buckets.get_mut(j as usize) else { continue };
        for (k, x) in std::mem::take(bucket) {
            groups.entry(k).or_default().push(x);
        }
    }
    let mut pairs = Vec::with_capacity(groups.len());
    for (k, items) in groups {
        let items = Value::new(items).encode().map_err(|e| OpError::failed(e.to_string()))?;
        pairs.push((k, items));
    }
    Ok(pairs_value(pairs))
}
