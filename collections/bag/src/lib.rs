//! Bags: partitioned collections of arbitrary serde values, as `dask.bag`.
//!
//! A [`Bag<T>`] is a list of partitions, each a lazily computed `Vec<T>` (a
//! [`Delayed`]). Operations build task graphs; `compute` runs them on the
//! current default scheduler: Sync, Threads or a cluster.
//!
//! What runs where:
//! - the built-in operations (sources, sinks, `count`, `frequencies`,
//!   `topk`, `distinct`, `sum`, `mean`, `take`, `repartition`, `pluck`,
//!   `split_whitespace`) are registered ops for the element types registered
//!   with [`register_bag_type!`] (the `rask` binary registers `String`, `i64`,
//!   `u64`, `f64`, [`Json`] and `(String, u64)`), so they run on a
//!   cluster's workers;
//! - `map_partitions` takes registered ops (declared with `rask_core::op!`),
//!   which run anywhere;
//! - the operations that take closures (`map`, `filter`, `flat_map`, `fold`,
//!   `reduction`, `foldby`, `groupby`) run on the local schedulers; a cluster
//!   refuses them at submit, naming the closure.
//!
//! Reductions are trees with fan-in [`SPLIT_EVERY`]; `groupby` is a hash
//! shuffle into a chosen number of partitions.

#![warn(missing_docs)]

pub mod element;
pub mod kernels;
pub mod registry;
pub mod text;
mod wordcount;

use std::hash::{Hash, Hasher};

use rask_core::{delayed, ComputeError, Data, Delayed, IntoArg};
use rustc_hash::FxHashMap;

pub use text::{read_json, read_json_as, read_text, read_text_with, Json, JsonLines, TextOptions};

#[doc(hidden)]
pub use rask_core as __rt;

/// Partial results merged per task in tree reductions.
pub const SPLIT_EVERY: usize = 8;

/// What building a bag can fail with (computing one fails with a
/// [`ComputeError`] naming the task).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BagError {
    /// A glob pattern matched no file.
    #[error("no file matches {pattern:?}: check the path (globs: *, ?, [..])")]
    NoFiles {
        /// The pattern.
        pattern: String,
    },
    /// A glob pattern is malformed.
    #[error("bad glob pattern {pattern:?}: {message}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// Why.
        message: String,
    },
    /// A file could not be inspected.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// An invalid parameter.
    #[error("{message}")]
    Invalid {
        /// What and how to fix it.
        message: String,
    },
}

/// A partitioned collection of `T`.
pub struct Bag<T> {
    parts: Vec<Delayed<Vec<T>>>,
    /// When the partitions are the whitespace-separated words of other
    /// partitions (`split_whitespace`): a word count then reads those in one
    /// pass, without making a string per word.
    words_of: Option<WordsOf>,
    /// When the partitions are the lines of these file byte ranges (`read_text`).
    blocks: Option<Vec<(String, u64, u64)>>,
}

/// What a bag of words was split from.
#[derive(Clone)]
enum WordsOf {
    /// Lines of file byte ranges (path, start, end).
    Blocks(Vec<(String, u64, u64)>),
    /// Partitions of lines.
    Lines(Vec<Delayed<Vec<String>>>),
}

impl<T> Clone for Bag<T> {
    fn clone(&self) -> Self {
        Bag {
            parts: self.parts.clone(),
            words_of: self.words_of.clone(),
            blocks: self.blocks.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Bag<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bag<{}>({} partitions)", std::any::type_name::<T>(), self.parts.len())
    }
}

/// A bag of `items` in `npartitions` partitions of near-equal length (at least one).
pub fn from_sequence<T: Data>(items: Vec<T>, npartitions: usize) -> Result<Bag<T>, BagError> {
    if npartitions == 0 {
        return Err(BagError::Invalid {
            message: "from_sequence: npartitions must be at least 1".into(),
        });
    }
    let n = items.len();
    let k = npartitions.min(n.max(1));
    let mut it = items.into_iter();
    let parts = (0..k)
        .map(|i| {
            let len = (n * (i + 1)) / k - (n * i) / k;
            rask_core::value(it.by_ref().take(len).collect::<Vec<T>>())
        })
        .collect();
    Ok(Bag::from_partitions(parts))
}

/// A task of the registered op of `op` for element type `E`, or of the
/// closure `local` (local schedulers only) when `E` has none.
fn builtin<E: 'static, R: Data>(
    op: &str,
    args: Vec<rask_core::DelayedArg>,
    local: impl FnOnce() -> Delayed<R>,
) -> Delayed<R> {
    match registry::lookup::<E>(op) {
        Some(entry) => Delayed::from_op(entry, args),
        None => local(),
    }
}

fn arg<A>(x: impl IntoArg<A>) -> rask_core::DelayedArg {
    x.into_arg()
}

/// Merges `level` in groups of [`SPLIT_EVERY`] until one value is left
/// (`merge` of an empty list gives the identity).
fn tree<A>(
    mut level: Vec<Delayed<A>>,
    merge: impl Fn(Vec<Delayed<A>>) -> Delayed<A>,
) -> Delayed<A> {
    if level.is_empty() {
        return merge(Vec::new());
    }
    while level.len() > 1 {
        level = level.chunks(SPLIT_EVERY).map(|c| merge(c.to_vec())).collect();
    }
    level.pop().expect("one value left")
}

/// A closure over a list of values (local schedulers only).
fn local_list<A: Clone + Send + Sync + 'static, R: Send + Sync + 'static>(
    name: &str,
    items: Vec<Delayed<A>>,
    f: impl Fn(Vec<A>) -> R + Send + Sync + 'static,
) -> Delayed<R> {
    rask_core::collect(items).map(name, f)
}

impl<T: Clone + Send + Sync + 'static> Bag<T> {
    /// A bag of the given partitions (at least one; an empty list gives a bag
    /// whose reductions return their identity).
    pub fn from_partitions(parts: Vec<Delayed<Vec<T>>>) -> Self {
        Bag { parts, words_of: None, blocks: None }
    }

    /// The partitions.
    pub fn partitions(&self) -> &[Delayed<Vec<T>>] {
        &self.parts
    }

    /// How many partitions.
    pub fn npartitions(&self) -> usize {
        self.parts.len()
    }

    /// Applies `f` to every item (a closure: local schedulers).
    pub fn map<U: Clone + Send + Sync + 'static>(
        &self,
        f: impl Fn(T) -> U + Send + Sync + 'static,
    ) -> Bag<U> {
        let f = delayed("bag-map", move |p: Vec<T>| p.into_iter().map(&f).collect::<Vec<U>>());
        Bag::from_partitions(self.parts.iter().map(|p| f.call((p,))).collect())
    }

    /// The items for which `f` holds (a closure: local schedulers).
    pub fn filter(&self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Bag<T> {
        let f =
            delayed("bag-filter", move |p: Vec<T>| p.into_iter().filter(&f).collect::<Vec<T>>());
        Bag::from_partitions(self.parts.iter().map(|p| f.call((p,))).collect())
    }

    /// Applies `f` to every item and flattens the results (a closure: local schedulers).
    pub fn flat_map<U: Clone + Send + Sync + 'static, I: IntoIterator<Item = U>>(
        &self,
        f: impl Fn(T) -> I + Send + Sync + 'static,
    ) -> Bag<U> {
        let f = delayed("bag-flat-map", move |p: Vec<T>| {
            p.into_iter().flat_map(&f).collect::<Vec<U>>()
        });
        Bag::from_partitions(self.parts.iter().map(|p| f.call((p,))).collect())
    }

    /// Applies a partition-level function to every partition: a registered
    /// op (`bag.map_partitions(|p| my_op(p))` for `rask_core::op! { fn
    /// my_op(lines: Vec<String>) -> Vec<String> … }`, runs on a cluster too)
    /// or any function building a `Delayed`.
    pub fn map_partitions<U: Clone + Send + Sync + 'static>(
        &self,
        f: impl Fn(&Delayed<Vec<T>>) -> Delayed<Vec<U>>,
    ) -> Bag<U> {
        Bag::from_partitions(self.parts.iter().map(f).collect())
    }

    /// Folds every partition from `initial` with `binop`, then merges the
    /// partial results with `combine` in a tree (closures: local schedulers).
    pub fn fold<A: Clone + Send + Sync + 'static>(
        &self,
        initial: A,
        binop: impl Fn(A, T) -> A + Send + Sync + 'static,
        combine: impl Fn(A, A) -> A + Send + Sync + 'static,
    ) -> Delayed<A> {
        let first = initial.clone();
        let per = delayed("bag-fold", move |p: Vec<T>| p.into_iter().fold(first.clone(), &binop));
        let combine = std::sync::Arc::new(combine);
        let partials: Vec<Delayed<A>> = self.parts.iter().map(|p| per.call((p,))).collect();
        tree(partials, |items| {
            let (c, init) = (combine.clone(), initial.clone());
            local_list("bag-fold-combine", items, move |xs: Vec<A>| {
                xs.into_iter().reduce(|a, b| c(a, b)).unwrap_or_else(|| init.clone())
            })
        })
    }

    /// `per_partition` on every partition, then `aggregate` on the list of
    /// their results (closures: local schedulers).
    pub fn reduction<A: Clone + Send + Sync + 'static, R: Clone + Send + Sync + 'static>(
        &self,
        per_partition: impl Fn(Vec<T>) -> A + Send + Sync + 'static,
        aggregate: impl Fn(Vec<A>) -> R + Send + Sync + 'static,
    ) -> Delayed<R> {
        let per = delayed("bag-reduction", per_partition);
        let partials: Vec<Delayed<A>> = self.parts.iter().map(|p| per.call((p,))).collect();
        local_list("bag-aggregate", partials, aggregate)
    }

    /// Folds the items of each key (`key`), from `initial` with `binop`,
    /// merging per-partition results with `combine`: one partition of
    /// `(key, value)` pairs, sorted by key (closures: local schedulers).
    pub fn foldby<K, A>(
        &self,
        key: impl Fn(&T) -> K + Send + Sync + 'static,
        initial: A,
        binop: impl Fn(A, T) -> A + Send + Sync + 'static,
        combine: impl Fn(A, A) -> A + Send + Sync + 'static,
    ) -> Bag<(K, A)>
    where
        K: Hash + Eq + Ord + Clone + Send + Sync + 'static,
        A: Clone + Send + Sync + 'static,
    {
        let per = delayed("bag-foldby", move |p: Vec<T>| {
            let mut acc: FxHashMap<K, A> = FxHashMap::default();
            for x in p {
                let k = key(&x);
                let a = acc.remove(&k).unwrap_or_else(|| initial.clone());
                acc.insert(k, binop(a, x));
            }
            acc.into_iter().collect::<Vec<(K, A)>>()
        });
        let combine = std::sync::Arc::new(combine);
        let partials: Vec<Delayed<Vec<(K, A)>>> =
            self.parts.iter().map(|p| per.call((p,))).collect();
        let merged = tree(partials, |items| {
            let c = combine.clone();
            local_list("bag-foldby-combine", items, move |ps: Vec<Vec<(K, A)>>| {
                let mut acc: FxHashMap<K, A> = FxHashMap::default();
                for (k, a) in ps.into_iter().flatten() {
                    let v = match acc.remove(&k) {
                        Some(b) => c(b, a),
                        None => a,
                    };
                    acc.insert(k, v);
                }
                let mut v: Vec<(K, A)> = acc.into_iter().collect();
                v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                v
            })
        });
        Bag::from_partitions(vec![merged])
    }

    /// Groups the items by `key` with a hash shuffle into `npartitions`
    /// partitions: each item goes to the partition of its key's hash, and
    /// each output partition lists its keys (sorted) with their items in
    /// input order (closures: local schedulers).
    pub fn groupby<K>(
        &self,
        key: impl Fn(&T) -> K + Send + Sync + 'static,
        npartitions: usize,
    ) -> Result<Bag<(K, Vec<T>)>, BagError>
    where
        K: Hash + Eq + Ord + Clone + Send + Sync + 'static,
    {
        if npartitions == 0 {
            return Err(BagError::Invalid {
                message: "groupby: npartitions must be at least 1".into(),
            });
        }
        let n = npartitions;
        let split = delayed("bag-groupby-split", move |p: Vec<T>| {
            let mut buckets: Vec<Vec<(K, T)>> = (0..n).map(|_| Vec::new()).collect();
            for x in p {
                let k = key(&x);
                let mut h = rustc_hash::FxHasher::default();
                k.hash(&mut h);
                buckets[(h.finish() % n as u64) as usize].push((k, x));
            }
            buckets
        });
        type Buckets<K, T> = Vec<Vec<(K, T)>>;
        let splits: Vec<Delayed<Buckets<K, T>>> =
            self.parts.iter().map(|p| split.call((p,))).collect();
        let parts = (0..n)
            .map(|j| {
                local_list(
                    "bag-groupby-collect",
                    splits.clone(),
                    move |all: Vec<Vec<Vec<(K, T)>>>| {
                        let mut groups: FxHashMap<K, Vec<T>> = FxHashMap::default();
                        for mut buckets in all {
                            for (k, x) in std::mem::take(&mut buckets[j]) {
                                groups.entry(k).or_default().push(x);
                            }
                        }
                        let mut v: Vec<(K, Vec<T>)> = groups.into_iter().collect();
                        v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                        v
                    },
                )
            })
            .collect();
        Ok(Bag::from_partitions(parts))
    }
}

impl<T: Data> Bag<T> {
    /// All items, in partition order, as one value.
    pub fn to_delayed(&self) -> Delayed<Vec<T>> {
        let parts = self.parts.clone();
        builtin::<T, Vec<T>>("concat", vec![arg::<Vec<Vec<T>>>(self.parts.clone())], move || {
            local_list("bag-concat", parts, kernels::concat)
        })
    }

    /// Computes all items, in partition order, on the default scheduler
    /// (the partitions in one graph, joined here: no registered op needed).
    pub fn compute(&self) -> Result<Vec<T>, ComputeError> {
        let erased: Vec<rask_core::AnyDelayed> = self.parts.iter().map(Delayed::erase).collect();
        let values = rask_core::compute_many(
            &erased,
            &rask_core::default_scheduler(),
            &rask_core::ComputeOptions::default(),
        )?;
        let mut out = Vec::new();
        for (v, p) in values.into_iter().zip(&self.parts) {
            let items = v
                .take_decode::<Vec<T>>()
                .map_err(|source| ComputeError::Output { key: p.key().clone(), source })?;
            out.extend(items);
        }
        Ok(out)
    }

    /// The number of items.
    pub fn count(&self) -> Delayed<u64> {
        let counts: Vec<Delayed<u64>> = self
            .parts
            .iter()
            .map(|p| {
                builtin::<T, u64>("count", vec![arg::<Vec<T>>(p)], || {
                    p.map("bag-count", |p: Vec<T>| p.len() as u64)
                })
            })
            .collect();
        tree(counts, text::sum_counts)
    }

    /// The first `n` items of the first partition (as Dask's `take`: only the
    /// first partition is computed).
    pub fn take(&self, n: usize) -> Delayed<Vec<T>> {
        let Some(first) = self.parts.first() else {
            return rask_core::value(Vec::new());
        };
        builtin::<T, Vec<T>>("take", vec![arg::<Vec<T>>(first), arg::<u64>(n as u64)], || {
            first.map("bag-take", move |p: Vec<T>| kernels::take(p, n as u64))
        })
    }

    /// The same items in `npartitions` partitions: neighbouring partitions
    /// joined, or each partition cut into near-equal pieces.
    pub fn repartition(&self, npartitions: usize) -> Result<Bag<T>, BagError> {
        if npartitions == 0 {
            return Err(BagError::Invalid {
                message: "repartition: npartitions must be at least 1".into(),
            });
        }
        let piece = |inputs: Vec<Delayed<Vec<T>>>, i: u64, k: u64| -> Delayed<Vec<T>> {
            let local_inputs = inputs.clone();
            builtin::<T, Vec<T>>(
                "piece",
                vec![arg::<Vec<Vec<T>>>(inputs), arg::<u64>(i), arg::<u64>(k)],
                move || {
                    local_list("bag-piece", local_inputs, move |ps: Vec<Vec<T>>| {
                        kernels::piece(ps, i, k)
                    })
                },
            )
        };
        let cur = self.parts.len();
        let parts = if cur == 0 {
            (0..npartitions).map(|_| piece(Vec::new(), 0, 1)).collect()
        } else if npartitions <= cur {
            // Join runs of neighbouring partitions.
            (0..npartitions)
                .map(|j| {
                    piece(
                        self.parts[j * cur / npartitions..(j + 1) * cur / npartitions].to_vec(),
                        0,
                        1,
                    )
                })
                .collect()
        } else {
            // Cut partition `i` into `k_i` pieces by position (the k_i sum to
            // `npartitions`; a partition's length is known only once computed).
            (0..cur)
                .flat_map(|i| {
                    let k = npartitions * (i + 1) / cur - npartitions * i / cur;
                    let p = self.parts[i].clone();
                    (0..k).map(move |j| (p.clone(), j as u64, k as u64))
                })
                .map(|(p, j, k)| piece(vec![p], j, k))
                .collect()
        };
        Ok(Bag::from_partitions(parts))
    }
}

impl<T: Data> Bag<T> {
    /// Every item as a JSON value, through its serde form (a struct becomes
    /// an object of its fields): what `to_dataframe` reads. A registered op
    /// for types registered with `json`
    /// ([`register_bag_type!`](crate::register_bag_type)), a closure
    /// otherwise; a bag of [`Json`] is returned as it is.
    pub fn to_json(&self) -> Bag<Json> {
        if let Some(json) = (self as &dyn std::any::Any).downcast_ref::<Bag<Json>>() {
            return json.clone();
        }
        let local = rask_core::try_delayed("bag-to-json", kernels::to_json::<T>);
        Bag::from_partitions(
            self.parts
                .iter()
                .map(|p| {
                    builtin::<T, Vec<Json>>("to_json", vec![arg::<Vec<T>>(p)], || local.call((p,)))
                })
                .collect(),
        )
    }
}

impl<T: Data> Bag<T> {
    /// Applies a registered one-argument op (`&my_op::OP` of a
    /// `rask_core::op!` function) to every item: runs on a cluster too.
    /// `U` is the op's output type (a wrong one fails when the result is decoded).
    pub fn map_op<U: Data>(&self, op: &'static rask_core::OpEntry) -> Result<Bag<U>, BagError> {
        Ok(Bag::from_partitions(self.per_partition("map_with", || vec![op_name(op)])?))
    }

    /// The items for which a registered op returning `bool` holds: runs on a cluster too.
    pub fn filter_op(&self, op: &'static rask_core::OpEntry) -> Result<Bag<T>, BagError> {
        Ok(Bag::from_partitions(self.per_partition("filter_with", || vec![op_name(op)])?))
    }

    /// Applies a registered op returning `Vec<U>` to every item and flattens:
    /// runs on a cluster too (`U` must be a registered bag type).
    pub fn flat_map_op<U: Data>(
        &self,
        op: &'static rask_core::OpEntry,
    ) -> Result<Bag<U>, BagError> {
        let lists: Bag<Vec<U>> = self.map_op(op)?;
        let concat = registered::<U>("concat")?;
        Ok(Bag::from_partitions(
            lists
                .parts
                .iter()
                .map(|p| Delayed::from_op(concat, vec![arg::<Vec<Vec<U>>>(p)]))
                .collect(),
        ))
    }
}

impl<T: Data> Bag<T> {
    /// Folds with registered ops (`binop(acc, item) -> acc` per partition
    /// from `initial`, `combine(a, b) -> a` in a tree): runs on a cluster too.
    pub fn fold_op<A: Data>(
        &self,
        initial: A,
        binop: &'static rask_core::OpEntry,
        combine: &'static rask_core::OpEntry,
    ) -> Result<Delayed<A>, BagError> {
        let (merge, finish) = (registered::<()>("fold_combine")?, registered::<()>("fold_finish")?);
        let init = encode(initial)?;
        let partials: Vec<Delayed<Vec<u8>>> =
            self.per_partition("fold_with", || vec![op_name(binop), arg::<Vec<u8>>(init.clone())])?;
        let merged = tree(partials, |items| {
            Delayed::from_op(
                merge,
                vec![arg::<Vec<Vec<u8>>>(items), op_name(combine), arg::<Vec<u8>>(init.clone())],
            )
        });
        Ok(Delayed::from_op(finish, vec![arg::<Vec<u8>>(merged)]))
    }

    /// [`Bag::foldby`] with registered ops (`key(item) -> K`, `binop`,
    /// `combine`): one partition of `(key, value)` pairs, ordered by the
    /// keys' encodings; runs on a cluster too.
    pub fn foldby_op<K: Data, A: Data>(
        &self,
        key: &'static rask_core::OpEntry,
        initial: A,
        binop: &'static rask_core::OpEntry,
        combine: &'static rask_core::OpEntry,
    ) -> Result<Bag<(K, A)>, BagError> {
        type Partial = Vec<(Vec<u8>, Vec<u8>)>;
        let (merge, finish) =
            (registered::<()>("foldby_combine")?, registered::<()>("foldby_finish")?);
        let init = encode(initial)?;
        let partials: Vec<Delayed<Partial>> = self.per_partition("foldby_with", || {
            vec![op_name(key), op_name(binop), arg::<Vec<u8>>(init.clone())]
        })?;
        let merged = tree(partials, |items| {
            Delayed::from_op(merge, vec![arg::<Vec<Partial>>(items), op_name(combine)])
        });
        Ok(Bag::from_partitions(vec![Delayed::from_op(finish, vec![arg::<Partial>(merged)])]))
    }

    /// [`Bag::groupby`] with a registered key op: a hash shuffle into
    /// `npartitions` partitions, keys ordered by their encodings within each;
    /// runs on a cluster too.
    pub fn groupby_op<K: Data>(
        &self,
        key: &'static rask_core::OpEntry,
        npartitions: usize,
    ) -> Result<Bag<(K, Vec<T>)>, BagError> {
        if npartitions == 0 {
            return Err(BagError::Invalid {
                message: "groupby_op: npartitions must be at least 1".into(),
            });
        }
        type Buckets<T> = Vec<Vec<(Vec<u8>, T)>>;
        let collect = registered::<T>("groupby_collect")?;
        let splits: Vec<Delayed<Buckets<T>>> = self.per_partition("groupby_split", || {
            vec![op_name(key), arg::<u64>(npartitions as u64)]
        })?;
        Ok(Bag::from_partitions(
            (0..npartitions as u64)
                .map(|j| {
                    Delayed::from_op(
                        collect,
                        vec![arg::<Vec<Buckets<T>>>(splits.clone()), arg::<u64>(j)],
                    )
                })
                .collect(),
        ))
    }
}

impl<T: Data> Bag<T> {
    /// One task per partition of `T`'s registered `op`: the partition, then `extra()`.
    fn per_partition<R: Data>(
        &self,
        op: &str,
        extra: impl Fn() -> Vec<rask_core::DelayedArg>,
    ) -> Result<Vec<Delayed<R>>, BagError> {
        let entry = registered::<T>(op)?;
        Ok(self
            .parts
            .iter()
            .map(|p| {
                let mut args = vec![arg::<Vec<T>>(p)];
                args.extend(extra());
                Delayed::from_op(entry, args)
            })
            .collect())
    }
}

/// An element op's name, as the argument of the partition ops that call it.
fn op_name(op: &'static rask_core::OpEntry) -> rask_core::DelayedArg {
    arg::<String>(op.name.to_string())
}

/// A value's encoding (the initial accumulator of the folds by op).
fn encode<A: Data>(v: A) -> Result<Vec<u8>, BagError> {
    rask_core::Value::new(v).encode().map_err(|e| BagError::Invalid { message: e.to_string() })
}

/// The registered op of `op` for `T`, or an error saying how to register `T`.
fn registered<T: 'static>(op: &str) -> Result<&'static rask_core::OpEntry, BagError> {
    registry::lookup::<T>(op).ok_or_else(|| BagError::Invalid {
        message: format!(
            "bag items of type {} have no registered `{op}`: register the type with rask_bag::register_bag_type!({} => base …)",
            std::any::type_name::<T>(),
            std::any::type_name::<T>()
        ),
    })
}

impl<T: Data + Hash + Eq + Ord> Bag<T> {
    /// Each distinct item with its count: one partition, sorted by item.
    ///
    /// Words from [`Bag::split_whitespace`] are counted in one pass over
    /// their lines (`word_frequencies`): the same counts, without a string
    /// per word.
    pub fn frequencies(&self) -> Bag<(T, u64)> {
        // Only `T = String` has the registered word counts, so the lookup
        // is also the type check.
        type Counts<T> = Vec<Delayed<Vec<(T, u64)>>>;
        let fused: Option<Counts<T>> = match &self.words_of {
            Some(WordsOf::Blocks(blocks)) => {
                registry::lookup::<T>("block_word_frequencies").map(|e| {
                    blocks
                        .iter()
                        .map(|(path, start, end)| {
                            Delayed::from_op(
                                e,
                                vec![
                                    arg::<String>(path.clone()),
                                    arg::<u64>(*start),
                                    arg::<u64>(*end),
                                ],
                            )
                        })
                        .collect()
                })
            }
            Some(WordsOf::Lines(lines)) => registry::lookup::<T>("word_frequencies").map(|e| {
                lines.iter().map(|l| Delayed::from_op(e, vec![arg::<Vec<String>>(l)])).collect()
            }),
            None => None,
        };
        let partials: Vec<Delayed<Vec<(T, u64)>>> = match fused {
            Some(partials) => partials,
            None => self
                .parts
                .iter()
                .map(|p| {
                    builtin::<T, Vec<(T, u64)>>("frequencies", vec![arg::<Vec<T>>(p)], || {
                        p.map("bag-frequencies", kernels::frequencies)
                    })
                })
                .collect(),
        };
        let merged = tree(partials, |items| {
            let local = items.clone();
            builtin::<T, Vec<(T, u64)>>(
                "merge_frequencies",
                vec![arg::<Vec<Vec<(T, u64)>>>(items)],
                || local_list("bag-merge-frequencies", local, kernels::merge_frequencies),
            )
        });
        Bag::from_partitions(vec![merged])
    }

    /// The distinct items: one partition, sorted.
    pub fn distinct(&self) -> Bag<T> {
        let step = |items: Vec<Delayed<Vec<T>>>| {
            let local = items.clone();
            builtin::<T, Vec<T>>("distinct", vec![arg::<Vec<Vec<T>>>(items)], || {
                local_list("bag-distinct", local, kernels::distinct)
            })
        };
        let partials: Vec<Delayed<Vec<T>>> =
            self.parts.iter().map(|p| step(vec![p.clone()])).collect();
        Bag::from_partitions(vec![tree(partials, step)])
    }
}

impl<T: Data + Hash + Eq + Ord> Bag<(T, u64)> {
    /// The `k` pairs of highest count, highest first (ties: smaller item
    /// first). For `(item, count)` pairs with distinct items, as
    /// [`Bag::frequencies`] gives.
    pub fn most_common(&self, k: usize) -> Delayed<Vec<(T, u64)>> {
        let step = |items: Vec<Delayed<Vec<(T, u64)>>>| {
            let local = items.clone();
            builtin::<T, Vec<(T, u64)>>(
                "most_common",
                vec![arg::<Vec<Vec<(T, u64)>>>(items), arg::<u64>(k as u64)],
                move || {
                    local_list("bag-most-common", local, move |ps| {
                        kernels::most_common(ps, k as u64)
                    })
                },
            )
        };
        let partials: Vec<_> = self.parts.iter().map(|p| step(vec![p.clone()])).collect();
        tree(partials, step)
    }
}

impl<T: Data + Ord> Bag<T> {
    /// The `k` largest items, largest first.
    pub fn topk(&self, k: usize) -> Delayed<Vec<T>> {
        let step = |items: Vec<Delayed<Vec<T>>>| {
            let local = items.clone();
            builtin::<T, Vec<T>>(
                "topk",
                vec![arg::<Vec<Vec<T>>>(items), arg::<u64>(k as u64)],
                move || local_list("bag-topk", local, move |ps| kernels::topk(ps, k as u64)),
            )
        };
        let partials: Vec<_> = self.parts.iter().map(|p| step(vec![p.clone()])).collect();
        tree(partials, step)
    }
}

/// Numbers a bag can sum (as `f64`).
pub trait Number: Data + Copy {
    /// The value as `f64`.
    fn as_f64(self) -> f64;
}
impl Number for f64 {
    fn as_f64(self) -> f64 {
        self
    }
}
impl Number for i64 {
    fn as_f64(self) -> f64 {
        self as f64
    }
}
impl Number for u64 {
    fn as_f64(self) -> f64 {
        self as f64
    }
}

impl<T: Number> Bag<T> {
    fn sum_count(&self) -> Delayed<(f64, u64)> {
        let partials: Vec<Delayed<(f64, u64)>> = self
            .parts
            .iter()
            .map(|p| {
                builtin::<T, (f64, u64)>("sum_count", vec![arg::<Vec<T>>(p)], || {
                    p.map("bag-sum-count", |p: Vec<T>| {
                        (p.iter().map(|x| x.as_f64()).sum::<f64>(), p.len() as u64)
                    })
                })
            })
            .collect();
        tree(partials, text::merge_sum_count)
    }

    /// The sum of the items, in `f64` (integers beyond 2^53 lose precision).
    pub fn sum(&self) -> Delayed<f64> {
        text::sum_of(self.sum_count())
    }

    /// The mean of the items (an empty bag fails: the mean is undefined).
    pub fn mean(&self) -> Delayed<f64> {
        text::mean_of(self.sum_count())
    }
}
