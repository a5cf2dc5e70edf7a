//! Topological indexing and static priorities (a small `dask.order`).
//!
//! [`Topo::build`] walks the graph depth-first from the requested keys with an
//! explicit stack (chains of 10⁵ tasks must not overflow the call stack),
//! rejects cycles and dangling references, and numbers the reachable nodes in
//! post-order, so every dependency gets a smaller index than its dependents.
//!
//! [`Topo::priorities`] then runs a second depth-first walk in which a node's
//! dependencies are visited tallest first (height = longest path from a root),
//! numbering nodes in post-order: the priority. Running ready tasks in priority
//! order finishes a chain before starting new roots, and computes the deeper
//! operand of a reduction before the shallow one, so few intermediate results
//! are alive at once (the Sethi–Ullman idea behind dask.order).

use rustc_hash::{FxHashMap, FxHashSet};

use super::{Graph, GraphError};
use crate::key::Key;

/// The reachable part of a graph, numbered in a topological order.
pub(crate) struct Topo {
    /// Keys by index.
    pub keys: Vec<Key>,
    /// Distinct dependencies by index (all smaller than the node's index).
    pub deps: Vec<Vec<u32>>,
    /// Index of each key.
    pub index: FxHashMap<Key, u32>,
    /// Indices of the requested keys, in request order (repeats kept).
    pub roots: Vec<u32>,
}

const VISITING: u32 = u32::MAX;

impl Topo {
    /// Numbers the ancestors of `roots` (roots included) in dependency-first order.
    pub fn build(graph: &Graph, roots: &[Key]) -> Result<Topo, GraphError> {
        let mut index: FxHashMap<Key, u32> = FxHashMap::default();
        let mut keys: Vec<Key> = Vec::new();
        let mut deps: Vec<Vec<u32>> = Vec::new();
        // Frame: (key, its distinct dependencies, next dependency to visit).
        let mut stack: Vec<(Key, Vec<Key>, usize)> = Vec::new();

        for root in roots {
            if index.contains_key(root) {
                continue;
            }
            let node = graph.get(root).ok_or_else(|| GraphError::MissingKey { key: root.clone() })?;
            index.insert(root.clone(), VISITING);
            stack.push((root.clone(), node.dependencies(), 0));
            while let Some(frame) = stack.last_mut() {
                if frame.2 < frame.1.len() {
                    let dep = frame.1[frame.2].clone();
                    frame.2 += 1;
                    match index.get(&dep) {
                        Some(&VISITING) => {
                            let start = stack.iter().position(|f| f.0 == dep).expect("visiting key is on the stack");
                            let keys = stack[start..].iter().map(|f| f.0.clone()).collect();
                            return Err(GraphError::Cycle { keys });
                        }
                        Some(_) => {}
                        None => {
                            let node = graph.get(&dep).ok_or_else(|| GraphError::MissingDependency {
                                key: frame.0.clone(),
                                missing: dep.clone(),
                            })?;
                            index.insert(dep.clone(), VISITING);
                            let d = node.dependencies();
                            stack.push((dep, d, 0));
                        }
                    }
                } else {
                    let (key, dkeys, _) = stack.pop().expect("non-empty");
                    let i = keys.len() as u32;
                    deps.push(dkeys.iter().map(|k| index[k]).collect());
                    index.insert(key.clone(), i);
                    keys.push(key);
                }
            }
        }
        let roots = roots.iter().map(|k| index[k]).collect();
        Ok(Topo { keys, deps, index, roots })
    }

    /// Height of each node: 1 for a node without dependencies, else 1 + the tallest dependency.
    fn heights(&self) -> Vec<u32> {
        let mut h = vec![0u32; self.keys.len()];
        for i in 0..self.keys.len() {
            h[i] = 1 + self.deps[i].iter().map(|&d| h[d as usize]).max().unwrap_or(0);
        }
        h
    }

    /// Priority of each node (0 runs first): see the module docs.
    pub fn priorities(&self) -> Vec<u32> {
        let n = self.keys.len();
        let heights = self.heights();
        let mut prio = vec![u32::MAX; n];
        let mut next = 0u32;
        let mut seen = vec![false; n];
        let mut stack: Vec<(u32, Vec<u32>, usize)> = Vec::new();
        let sorted_deps = |i: u32| {
            let mut d = self.deps[i as usize].clone();
            // Tallest first; ties broken by index (deterministic, follows argument order).
            d.sort_by(|&a, &b| heights[b as usize].cmp(&heights[a as usize]).then(a.cmp(&b)));
            d
        };
        for &root in &self.roots {
            if seen[root as usize] {
                continue;
            }
            seen[root as usize] = true;
            stack.push((root, sorted_deps(root), 0));
            while let Some(frame) = stack.last_mut() {
                if frame.2 < frame.1.len() {
                    let d = frame.1[frame.2];
                    frame.2 += 1;
                    if !seen[d as usize] {
                        seen[d as usize] = true;
                        stack.push((d, sorted_deps(d), 0));
                    }
                } else {
                    let (i, _, _) = stack.pop().expect("non-empty");
                    prio[i as usize] = next;
                    next += 1;
                }
            }
        }
        prio
    }
}

/// Static priorities for every node of `graph` (0 runs first), computed from its
/// sinks in key order. See the module docs for the strategy.
pub fn order(graph: &Graph) -> Result<FxHashMap<Key, u32>, GraphError> {
    let sinks = graph.sinks();
    let roots = if sinks.is_empty() && !graph.is_empty() {
        // Every node has a dependent: the graph is one big cycle. Let Topo report it.
        graph.sorted_keys()
    } else {
        sinks
    };
    let topo = Topo::build(graph, &roots)?;
    let prio = topo.priorities();
    Ok(topo.keys.iter().cloned().zip(prio).collect())
}

/// Keys of `graph` that are ancestors of `keys` (the keys included).
pub(crate) fn ancestors(graph: &Graph, keys: &[Key]) -> FxHashSet<Key> {
    let mut seen: FxHashSet<Key> = FxHashSet::default();
    let mut todo: Vec<Key> = keys.iter().filter(|k| graph.contains(k)).cloned().collect();
    while let Some(k) = todo.pop() {
        if !seen.insert(k.clone()) {
            continue;
        }
        if let Some(node) = graph.get(&k) {
            node.for_each_dependency(&mut |d| {
                if graph.contains(d) && !seen.contains(d) {
                    todo.push(d.clone());
                }
            });
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Arg, Node};
    use crate::op::{ClosureOp, OpRef};
    use crate::value::Value;
    use std::sync::Arc;

    fn op() -> OpRef {
        OpRef::Closure(Arc::new(ClosureOp::new("f", |_| Ok(Value::new(0i64)))))
    }

    fn task(deps: &[&Key]) -> Node {
        Node::Task(super::super::Task { op: op(), args: deps.iter().map(|k| Arg::Key((*k).clone())).collect() })
    }

    #[test]
    fn chains_finish_before_new_roots_start() {
        // Three independent chains of length 4 feeding one sink.
        let mut g = Graph::new();
        let mut tails = Vec::new();
        for c in 0..3 {
            let mut prev: Option<Key> = None;
            for i in 0..4 {
                let k = Key::named(&format!("c{c}-{i}"));
                let node = match &prev {
                    None => task(&[]),
                    Some(p) => task(&[p]),
                };
                g.insert(k.clone(), node);
                prev = Some(k);
            }
            tails.push(prev.unwrap());
        }
        let sink = Key::named("sink");
        g.insert(sink.clone(), task(&tails.iter().collect::<Vec<_>>()));
        let prio = order(&g).unwrap();
        for c in 0..3 {
            let ps: Vec<u32> = (0..4).map(|i| prio[&Key::named(&format!("c{c}-{i}"))]).collect();
            // Consecutive priorities: the chain runs start to end without interruption.
            assert_eq!(ps, (ps[0]..ps[0] + 4).collect::<Vec<_>>());
        }
        assert_eq!(prio[&sink], 12);
    }

    #[test]
    fn deeper_operand_first() {
        // acc_k = f(make_k, acc_{k-1}): the running accumulation must interleave with
        // the makes instead of producing every make_k first.
        let mut g = Graph::new();
        let mut acc = Key::named("acc0");
        g.insert(acc.clone(), task(&[]));
        for k in 1..50 {
            let make = Key::named(&format!("make{k}"));
            g.insert(make.clone(), task(&[]));
            let next = Key::named(&format!("acc{k}"));
            g.insert(next.clone(), task(&[&make, &acc]));
            acc = next;
        }
        let prio = order(&g).unwrap();
        // (k = 1 ties on height with acc0; either order holds one extra value.)
        for k in 2..50 {
            assert_eq!(prio[&Key::named(&format!("make{k}"))] + 1, prio[&Key::named(&format!("acc{k}"))]);
        }
    }

    #[test]
    fn cycle_is_reported_with_its_keys() {
        let (a, b, c) = (Key::named("a"), Key::named("b"), Key::named("c"));
        let mut g = Graph::new();
        g.insert(a.clone(), task(&[&b]));
        g.insert(b.clone(), task(&[&c]));
        g.insert(c.clone(), task(&[&a]));
        match Topo::build(&g, &[a.clone()]) {
            Err(GraphError::Cycle { keys }) => assert_eq!(keys, vec![a, b, c]),
            other => panic!("expected a cycle, got {:?}", other.err()),
        }
        assert!(matches!(order(&g), Err(GraphError::Cycle { .. })));
    }
}
