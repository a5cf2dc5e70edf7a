//! Task graphs: typed nodes keyed by content tokens, and the passes over them.
//!
//! A [`Graph`] maps each [`Key`] to a [`Node`]: a [`Task`] (an op applied to
//! arguments), a piece of `Data`, an `Alias` of another key, or a `Fused` chain
//! of tasks produced by [`fuse`]. Arguments ([`Arg`]) are literals, references to
//! other keys, or nested lists of both. The passes are pure functions
//! `Graph -> Graph` (or `-> priorities`):
//!
//! | pass | module | what it does |
//! |---|---|---|
//! | [`cull`] | `cull` | keeps only the ancestors of the requested keys |
//! | [`fuse`] | `fuse` | merges linear chains (`a -> b` where `b` needs only `a` and only `b` needs `a`) into one node |
//! | [`inline_data`] | `inline` | substitutes data and alias nodes into their dependents' arguments |
//! | [`order`] | `order` | priorities that finish chains before starting new roots |
//! | [`to_dot`] / [`visualize`] | `visualize` | Graphviz output |

mod cull;
mod fuse;
mod inline;
pub(crate) mod order;
mod visualize;

pub use cull::cull;
pub use fuse::fuse;
pub use inline::inline_data;
pub use order::order;
pub use visualize::{to_dot, visualize, VisualizeError};

use std::fmt;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::key::Key;
use crate::op::OpRef;
use crate::value::Value;

/// One argument of a task.
#[derive(Clone, Debug)]
pub enum Arg {
    /// The value of another node.
    Key(Key),
    /// A value given in the graph itself.
    Literal(Value),
    /// A nested list; resolves to [`Value::list`] of its resolved items.
    List(Vec<Arg>),
}

impl Arg {
    /// Calls `f` on every key referenced by this argument, in order.
    pub fn for_each_key<'a>(&'a self, f: &mut impl FnMut(&'a Key)) {
        match self {
            Arg::Key(k) => f(k),
            Arg::Literal(_) => {}
            Arg::List(items) => items.iter().for_each(|a| a.for_each_key(f)),
        }
    }

    /// Rewrites every key reference with `f` (which may replace the whole argument).
    pub(crate) fn map_keys(&mut self, f: &mut impl FnMut(&Key) -> Option<Arg>) {
        match self {
            Arg::Key(k) => {
                if let Some(new) = f(k) {
                    *self = new;
                }
            }
            Arg::Literal(_) => {}
            Arg::List(items) => items.iter_mut().for_each(|a| a.map_keys(f)),
        }
    }
}

/// An op applied to arguments.
#[derive(Clone, Debug)]
pub struct Task {
    /// The function to run.
    pub op: OpRef,
    /// Its arguments.
    pub args: Vec<Arg>,
}

impl Task {
    /// A task running `op` on `args`.
    pub fn new(op: OpRef, args: Vec<Arg>) -> Self {
        Task { op, args }
    }
}

/// Tasks run one after another as one node (made by [`fuse`]). Each step may use
/// the keys of the steps before it; the node's own key is the last step's key.
#[derive(Clone, Debug)]
pub struct FusedTask {
    /// The steps, in execution order, each with the key it had before fusing.
    pub steps: Vec<(Key, Task)>,
}

impl FusedTask {
    /// Position of each step's key (so lookups stay O(1) in long chains).
    pub fn step_index(&self) -> FxHashMap<&Key, usize> {
        self.steps.iter().enumerate().map(|(i, (k, _))| (k, i)).collect()
    }
}

/// A node of the graph.
#[derive(Clone, Debug)]
pub enum Node {
    /// A computation.
    Task(Task),
    /// A value known at graph-construction time (or persisted).
    Data(Value),
    /// Another key's value under this key.
    Alias(Key),
    /// A fused chain of tasks.
    Fused(FusedTask),
    /// A value that another scheduler holds under this key (a cluster
    /// future): a distributed scheduler uses it where it is; local
    /// schedulers refuse a graph that needs one.
    External,
}

impl Node {
    /// Distinct keys this node depends on, in first-use order.
    pub fn dependencies(&self) -> Vec<Key> {
        // Most tasks have a handful of arguments: a linear scan beats hashing there.
        const LINEAR: usize = 16;
        let mut out: Vec<Key> = Vec::new();
        let mut seen: Option<FxHashSet<Key>> = None;
        self.for_each_dependency(&mut |k| {
            if out.len() < LINEAR {
                if !out.contains(k) {
                    out.push(k.clone());
                }
            } else {
                let set = seen.get_or_insert_with(|| out.iter().cloned().collect());
                if set.insert(k.clone()) {
                    out.push(k.clone());
                }
            }
        });
        out
    }

    /// Calls `f` on each key reference (repeats included) this node depends on.
    pub fn for_each_dependency<'a>(&'a self, f: &mut impl FnMut(&'a Key)) {
        match self {
            Node::Task(t) => t.args.iter().for_each(|a| a.for_each_key(f)),
            Node::Data(_) | Node::External => {}
            Node::Alias(k) => f(k),
            Node::Fused(fused) => {
                let steps = fused.step_index();
                for (i, (_, task)) in fused.steps.iter().enumerate() {
                    task.args.iter().for_each(|a| {
                        a.for_each_key(&mut |k| {
                            // A key of an earlier step is internal; anything else is a dependency.
                            if steps.get(k).is_none_or(|&s| s >= i) {
                                f(k)
                            }
                        })
                    });
                }
            }
        }
    }

    /// A short label for display: the op name, `data` or `alias`.
    pub fn label(&self) -> String {
        match self {
            Node::Task(t) => t.op.name().to_string(),
            Node::Data(v) => format!("data<{}>", v.type_name()),
            Node::Alias(_) => "alias".to_string(),
            Node::External => "external".to_string(),
            Node::Fused(f) => {
                f.steps.iter().map(|(_, t)| t.op.name()).collect::<Vec<_>>().join(" → ")
            }
        }
    }
}

/// Structural problems of a graph, found before anything runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// The graph has a dependency cycle.
    #[error("the graph has a cycle: {}; a task cannot depend on its own result", fmt_cycle(.keys))]
    Cycle {
        /// The keys on the cycle, each depending on the next, the last on the first.
        keys: Vec<Key>,
    },
    /// A node refers to a key the graph does not contain.
    #[error("task {key} depends on {missing}, which is not in the graph; add a node for it or fix the reference")]
    MissingDependency {
        /// The node holding the reference.
        key: Key,
        /// The key it refers to.
        missing: Key,
    },
    /// A requested output is not in the graph.
    #[error("requested key {key} is not in the graph")]
    MissingKey {
        /// The key asked for.
        key: Key,
    },
}

fn fmt_cycle(keys: &[Key]) -> String {
    let mut s: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    if let Some(first) = keys.first() {
        s.push(first.to_string());
    }
    s.join(" -> ")
}

/// A task graph: nodes by key.
#[derive(Clone, Default)]
pub struct Graph {
    pub(crate) nodes: FxHashMap<Key, Node>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Graph::default()
    }

    /// An empty graph with room for `n` nodes.
    pub fn with_capacity(n: usize) -> Self {
        Graph { nodes: FxHashMap::with_capacity_and_hasher(n, Default::default()) }
    }

    /// Adds or replaces a node.
    pub fn insert(&mut self, key: Key, node: Node) {
        self.nodes.insert(key, node);
    }

    /// Adds a task node.
    pub fn add_task(&mut self, key: Key, op: OpRef, args: Vec<Arg>) {
        self.insert(key, Node::Task(Task { op, args }));
    }

    /// Adds a data node.
    pub fn add_data(&mut self, key: Key, value: Value) {
        self.insert(key, Node::Data(value));
    }

    /// The node of `key`.
    pub fn get(&self, key: &Key) -> Option<&Node> {
        self.nodes.get(key)
    }

    /// Whether `key` has a node.
    pub fn contains(&self, key: &Key) -> bool {
        self.nodes.contains_key(key)
    }

    /// Removes and returns the node of `key`.
    pub fn remove(&mut self, key: &Key) -> Option<Node> {
        self.nodes.remove(key)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Iterates over `(key, node)` in unspecified order.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Node)> {
        self.nodes.iter()
    }

    /// All keys, sorted (deterministic listings).
    pub fn sorted_keys(&self) -> Vec<Key> {
        let mut keys: Vec<Key> = self.nodes.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Adds every node of `other` (same key = same computation, so duplicates merge).
    pub fn merge(&mut self, other: Graph) {
        for (k, n) in other.nodes {
            self.nodes.entry(k).or_insert(n);
        }
    }

    /// Distinct dependencies of `key`.
    pub fn dependencies(&self, key: &Key) -> Option<Vec<Key>> {
        self.nodes.get(key).map(Node::dependencies)
    }

    /// For each key, the distinct keys that depend on it.
    pub fn dependents(&self) -> FxHashMap<Key, Vec<Key>> {
        let mut out: FxHashMap<Key, Vec<Key>> =
            self.nodes.keys().map(|k| (k.clone(), Vec::new())).collect();
        for (k, node) in &self.nodes {
            for d in node.dependencies() {
                out.entry(d).or_default().push(k.clone());
            }
        }
        out
    }

    /// Keys that nothing else in the graph depends on, sorted.
    pub fn sinks(&self) -> Vec<Key> {
        let mut used = FxHashSet::default();
        for node in self.nodes.values() {
            node.for_each_dependency(&mut |k| {
                used.insert(k);
            });
        }
        let mut sinks: Vec<Key> =
            self.nodes.keys().filter(|k| !used.contains(k)).cloned().collect();
        sinks.sort();
        sinks
    }

    /// Checks that the ancestors of `outputs` exist and form no cycle.
    pub fn validate(&self, outputs: &[Key]) -> Result<(), GraphError> {
        order::Topo::build(self, outputs).map(|_| ())
    }
}

impl fmt::Debug for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for k in self.sorted_keys() {
            m.entry(&k, &self.nodes[&k].label());
        }
        m.finish()
    }
}

impl FromIterator<(Key, Node)> for Graph {
    fn from_iter<I: IntoIterator<Item = (Key, Node)>>(iter: I) -> Self {
        Graph { nodes: iter.into_iter().collect() }
    }
}
