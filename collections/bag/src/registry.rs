//! Built-in bag operations as registered ops, one per element type, so that a
//! cluster's workers (which find ops by name) can run them. A bag method asks
//! [`lookup`] for its element type and falls back to a closure (local
//! schedulers only) for types nobody registered.
//!
//! [`register_bag_type!`](crate::register_bag_type) registers a type: `base`
//! (count, concatenation, take, repartition), `hash` (frequencies, distinct,
//! most common), `ord` (topk), `num` (sum, mean) and `json` (JSON lines into
//! the type: `read_json_as`). The `rask` binary registers `String`, `i64`,
//! `f64`, `u64`, `Json` and `(String, u64)`; a crate with its own element
//! types registers them and runs its own binary as workers.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::OnceLock;

use rask_core::OpEntry;

/// One registered built-in: the element type, the operation, the op.
pub struct TypedOp {
    /// `TypeId::of` the element type.
    pub type_id: fn() -> TypeId,
    /// The operation (`count`, `frequencies`, …).
    pub op: &'static str,
    /// The registered op.
    pub entry: &'static OpEntry,
}
rask_core::inventory::collect!(TypedOp);

/// The registered op of `op` for elements of type `T`, if any.
pub fn lookup<T: 'static>(op: &str) -> Option<&'static OpEntry> {
    type Table = HashMap<TypeId, HashMap<&'static str, &'static OpEntry>>;
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            let mut t: Table = HashMap::new();
            for op in rask_core::inventory::iter::<TypedOp> {
                t.entry((op.type_id)()).or_default().insert(op.op, op.entry);
            }
            t
        })
        .get(&TypeId::of::<T>())?
        .get(op)
        .copied()
}

/// Registers the built-in bag ops for an element type, by capability:
/// `base` (any serde type), `hash` (`Hash + Eq + Ord`), `ord` (`Ord`), `num`
/// (`Into<f64>`-like: `as f64` works), `json` (JSON lines into the type,
/// [`read_json_as`](crate::read_json_as), and back, [`Bag::to_json`](crate::Bag::to_json)).
///
/// ```
/// #[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
/// struct Word(String);
/// rask_bag::register_bag_type!(Word => base hash ord);
///
/// let words = ["b", "a", "b"].map(|w| Word(w.into())).to_vec();
/// let bag = rask_bag::from_sequence(words, 2)?;
/// // `frequencies` now runs as a registered op (a cluster's workers built
/// // from this crate can run it too).
/// assert!(rask_bag::registry::lookup::<Word>("frequencies").is_some());
/// assert_eq!(bag.frequencies().compute()?, [(Word("a".into()), 1), (Word("b".into()), 2)]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[macro_export]
macro_rules! register_bag_type {
    ($t:ty => $($kind:ident)*) => {
        const _: () = {
            $( $crate::__bag_kind!($kind, $t); )*
        };
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __bag_kind {
    (base, $t:ty) => {
        // Lists of partitions are handed to ops item by item (no serde round trip in-process).
        $crate::__rt::list_item!(Vec<$t>);
        $crate::__bag_op!($t, "count", |p: Vec<$t>| -> u64 { p.len() as u64 });
        $crate::__bag_op!($t, "concat", |ps: Vec<Vec<$t>>| -> Vec<$t> {
            $crate::kernels::concat(ps)
        });
        $crate::__bag_op!($t, "take", |p: Vec<$t>, n: u64| -> Vec<$t> {
            $crate::kernels::take(p, n)
        });
        $crate::__bag_op!($t, "piece", |ps: Vec<Vec<$t>>, i: u64, k: u64| -> Vec<$t> {
            $crate::kernels::piece(ps, i, k)
        });
        // Registered element ops applied item by item (`Bag::map_op` and co.).
        $crate::__bag_op!($t, "map_with", raw |p: Vec<$t>, op: String| {
            $crate::element::map_with(p, &op)?
        });
        $crate::__bag_op!($t, "filter_with", |p: Vec<$t>, op: String| -> Vec<$t> {
            $crate::element::filter_with(p, &op)?
        });
        $crate::__bag_op!($t, "fold_with", |p: Vec<$t>, binop: String, initial: Vec<u8>| -> Vec<u8> {
            $crate::element::fold_with(p, &binop, &initial)?
        });
        $crate::__bag_op!($t, "foldby_with", |p: Vec<$t>, key: String, binop: String, initial: Vec<u8>|
            -> Vec<(Vec<u8>, Vec<u8>)> {
            $crate::element::foldby_with(p, &key, &binop, &initial)?
        });
        $crate::__bag_op!($t, "groupby_split", |p: Vec<$t>, key: String, n: u64| -> Vec<Vec<(Vec<u8>, $t)>> {
            $crate::element::groupby_split(p, &key, n)?
        });
        $crate::__rt::list_item!(Vec<Vec<(Vec<u8>, $t)>>);
        $crate::__bag_op!($t, "groupby_collect", raw |splits: Vec<Vec<Vec<(Vec<u8>, $t)>>>, j: u64| {
            $crate::element::groupby_collect(splits, j)?
        });
    };
    (hash, $t:ty) => {
        $crate::__rt::list_item!(Vec<($t, u64)>);
        $crate::__bag_op!($t, "frequencies", |p: Vec<$t>| -> Vec<($t, u64)> {
            $crate::kernels::frequencies(p)
        });
        $crate::__bag_op!($t, "merge_frequencies", |ps: Vec<Vec<($t, u64)>>| -> Vec<($t, u64)> {
            $crate::kernels::merge_frequencies(ps)
        });
        $crate::__bag_op!($t, "distinct", |ps: Vec<Vec<$t>>| -> Vec<$t> {
            $crate::kernels::distinct(ps)
        });
        $crate::__bag_op!($t, "most_common", |ps: Vec<Vec<($t, u64)>>, k: u64| -> Vec<($t, u64)> {
            $crate::kernels::most_common(ps, k)
        });
    };
    (json, $t:ty) => {
        // JSON lines into `$t` (`read_json_as`).
        $crate::__bag_op!($t, "read_json", |path: String, start: u64, end: u64, skip_bad: bool|
            -> (Vec<$t>, u64) {
            $crate::text::read_json_records::<$t>(&path, start, end, skip_bad)
                .map_err($crate::__rt::OpError::failed)?
        });
        $crate::__bag_op!($t, "json_rows", |block: (Vec<$t>, u64)| -> Vec<$t> { block.0 });
        $crate::__bag_op!($t, "json_skipped", |block: (Vec<$t>, u64)| -> u64 { block.1 });
        // And back to JSON values (`Bag::to_json`, `to_dataframe`).
        $crate::__bag_op!($t, "to_json", |p: Vec<$t>| -> Vec<$crate::Json> {
            $crate::kernels::to_json(p).map_err($crate::__rt::OpError::failed)?
        });
    };
    (ord, $t:ty) => {
        $crate::__bag_op!($t, "topk", |ps: Vec<Vec<$t>>, k: u64| -> Vec<$t> {
            $crate::kernels::topk(ps, k)
        });
    };
    (num, $t:ty) => {
        $crate::__bag_op!($t, "sum_count", |p: Vec<$t>| -> (f64, u64) {
            (p.iter().map(|&x| x as f64).sum::<f64>(), p.len() as u64)
        });
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __bag_op {
    (@emit $t:ty, $op:literal, [$($arg:ident : $aty:ty),*], $make:block) => {
        const _: () = {
            fn erased(
                args: Vec<$crate::__rt::Value>,
            ) -> ::std::result::Result<$crate::__rt::Value, $crate::__rt::OpError> {
                const N: usize = [$(stringify!($arg)),*].len();
                if args.len() != N {
                    return Err($crate::__rt::OpError::Arity { expected: N, got: args.len() });
                }
                let mut _it = args.into_iter();
                let mut _pos = 0usize;
                $(
                    let $arg: $aty = $crate::__rt::op::arg(&mut _it, _pos)?;
                    _pos += 1;
                )*
                Ok($make)
            }
            static ENTRY: $crate::__rt::OpEntry = $crate::__rt::OpEntry {
                name: concat!("rask_bag::", $op, "<", stringify!($t), ">"),
                func: erased,
            };
            $crate::__rt::inventory::submit! { $crate::__rt::op::OpSubmit(&ENTRY) }
            $crate::__rt::inventory::submit! {
                $crate::registry::TypedOp {
                    type_id: ::std::any::TypeId::of::<$t>,
                    op: $op,
                    entry: &ENTRY,
                }
            }
        };
    };
    // `raw`: the body makes the `Value` itself (a list of element results).
    ($t:ty, $op:literal, raw |$($arg:ident : $aty:ty),*| $body:block) => {
        $crate::__bag_op!(@emit $t, $op, [$($arg : $aty),*], { $body });
    };
    ($t:ty, $op:literal, |$($arg:ident : $aty:ty),*| -> $out:ty $body:block) => {
        $crate::__bag_op!(@emit $t, $op, [$($arg : $aty),*], {
            let out: $out = $body;
            $crate::__rt::Value::new(out)
        });
    };
}

crate::register_bag_type!(String => base hash ord);
// Word counts of lines, or of a file's byte range, in one pass (see
// `Bag::frequencies`); String only.
crate::__bag_op!(String, "block_word_frequencies", |path: String,
                                                    start: u64,
                                                    end: u64|
 -> Vec<(String, u64)> {
    crate::text::block_word_frequencies(&path, start, end).map_err(crate::__rt::OpError::failed)?
});
crate::__bag_op!(String, "word_frequencies", |lines: Vec<String>| -> Vec<(String, u64)> {
    crate::kernels::word_frequencies(lines)
});
crate::register_bag_type!(i64 => base hash ord num);
crate::register_bag_type!(u64 => base hash ord num);
crate::register_bag_type!(f64 => base num);
crate::register_bag_type!(crate::text::Json => base);
crate::register_bag_type!((String, u64) => base);

// Type-independent steps of the folds by op (registered under `()`).
crate::__bag_op!((), "fold_combine", |parts: Vec<Vec<u8>>,
                                      combine: String,
                                      initial: Vec<u8>|
 -> Vec<u8> {
    crate::element::fold_combine(parts, &combine, &initial)?
});
crate::__bag_op!((), "fold_finish", raw |acc: Vec<u8>| {
    crate::__rt::Value::from_encoded("A", acc)
});
crate::__bag_op!((), "foldby_combine", |parts: Vec<Vec<(Vec<u8>, Vec<u8>)>>,
                                        combine: String|
 -> Vec<(Vec<u8>, Vec<u8>)> {
    crate::element::foldby_combine(parts, &combine)?
});
crate::__bag_op!((), "foldby_finish", raw |pairs: Vec<(Vec<u8>, Vec<u8>)>| {
    let mut pairs = pairs;
    pairs.sort();
    crate::element::pairs_value(pairs)
});
crate::__rt::list_item!(Vec<u8>);
crate::__rt::list_item!(Vec<(Vec<u8>, Vec<u8>)>);
