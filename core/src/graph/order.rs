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

use super::{Graph, GraphError, Node};
use crate::key::Key;

/// Adjacency lists stored flat (compressed sparse rows): one allocation for all nodes.
pub(crate) struct Csr {
    start: Vec<u32>,
    items: Vec<u32>,
}

impl Csr {
    fn with_capacity(nodes: usize, edges: usize) -> Self {
        let mut start = Vec::with_capacity(nodes + 1);
        start.push(0);
        Csr { start, items: Vec::with_capacity(edges) }
    }

    fn push_row(&mut self, row: impl IntoIterator<Item = u32>) {
        self.items.extend(row);
        self.start.push(self.items.len() as u32);
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[u32] {
        &self.items[self.start[i] as usize..self.start[i + 1] as usize]
    }

    fn row_mut(&mut self, i: usize) -> &mut [u32] {
        &mut self.items[self.start[i] as usize..self.start[i + 1] as usize]
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.start.len() - 1
    }

    /// The transposed relation (row j lists every i whose row contains j), rows sorted.
    pub fn transpose(&self) -> Csr {
        let n = self.len();
        let mut count = vec![0u32; n + 1];
        for &j in &self.items {
            count[j as usize + 1] += 1;
        }
        for i in 0..n {
            count[i + 1] += count[i];
        }
        let mut fill = count.clone();
        let mut items = vec![0u32; self.items.len()];
        for i in 0..n {
            for &j in self.row(i) {
                items[fill[j as usize] as usize] = i as u32;
                fill[j as usize] += 1;
            }
        }
        Csr { start: count, items }
    }
}

/// The reachable part of a graph, numbered in a topological order.
pub(crate) struct Topo<'g> {
    /// Keys by index.
    pub keys: Vec<&'g Key>,
    /// Nodes by index.
    pub nodes: Vec<&'g Node>,
    /// Distinct dependencies by index (all smaller than the node's index).
    pub deps: Csr,
    /// Index of each key.
    pub index: FxHashMap<&'g Key, u32>,
    /// Indices of the requested keys, in request order (repeats kept).
    pub roots: Vec<u32>,
}

/// Marks a key entered but not finished (on the current path).
const ON_PATH: u32 = u32::MAX;

enum Visit<'g> {
    Enter(&'g Key),
    Exit(&'g Key, &'g Node),
}

impl<'g> Topo<'g> {
    /// Numbers the ancestors of `roots` (roots included) in dependency-first order.
    pub fn build(graph: &'g Graph, roots: &[Key]) -> Result<Topo<'g>, GraphError> {
        let mut index: FxHashMap<&'g Key, u32> = FxHashMap::default();
        let mut keys: Vec<&'g Key> = Vec::new();
        let mut nodes: Vec<&'g Node> = Vec::new();
        let mut deps = Csr::with_capacity(graph.len(), graph.len() * 2);
        let mut path: Vec<&'g Key> = Vec::new();
        let mut stack: Vec<Visit<'g>> = Vec::new();
        let mut row: Vec<u32> = Vec::new();

        for root in roots {
            let root = graph
                .nodes
                .get_key_value(root)
                .ok_or_else(|| GraphError::MissingKey { key: root.clone() })?
                .0;
            stack.push(Visit::Enter(root));
            while let Some(visit) = stack.pop() {
                match visit {
                    Visit::Enter(key) => match index.get(key) {
                        Some(&ON_PATH) => {
                            let start = path
                                .iter()
                                .position(|k| *k == key)
                                .expect("on-path keys are on the path");
                            return Err(GraphError::Cycle {
                                keys: path[start..].iter().map(|k| (*k).clone()).collect(),
                            });
                        }
                        Some(_) => {}
                        None => {
                            let node = &graph.nodes[key];
                            index.insert(key, ON_PATH);
                            path.push(key);
                            stack.push(Visit::Exit(key, node));
                            let mut missing = None;
                            // Pushed in reverse so that arguments are entered in order.
                            let mark = stack.len();
                            node.for_each_dependency(&mut |d| match graph.nodes.get_key_value(d) {
                                Some((dk, _)) => stack.push(Visit::Enter(dk)),
                                None => {
                                    if missing.is_none() {
                                        missing = Some(d.clone());
                                    }
                                }
                            });
                            if let Some(missing) = missing {
                                return Err(GraphError::MissingDependency {
                                    key: key.clone(),
                                    missing,
                                });
                            }
                            stack[mark..].reverse();
                        }
                    },
                    Visit::Exit(key, node) => {
                        path.pop();
                        row.clear();
                        node.for_each_dependency(&mut |d| {
                            let i = index[d];
                            if !row.contains(&i) {
                                row.push(i);
                            }
                        });
                        let i = keys.len() as u32;
                        deps.push_row(row.iter().copied());
                        index.insert(key, i);
                        keys.push(key);
                        nodes.push(node);
                    }
                }
            }
        }
        let roots = roots.iter().map(|k| index[k]).collect();
        Ok(Topo { keys, nodes, deps, index, roots })
    }

    /// Height of each node: 1 for a node without dependencies, else 1 + the tallest dependency.
    fn heights(&self) -> Vec<u32> {
        let mut h = vec![0u32; self.keys.len()];
        for i in 0..self.keys.len() {
            h[i] = 1 + self.deps.row(i).iter().map(|&d| h[d as usize]).max().unwrap_or(0);
        }
        h
    }

    /// Priority of each node (0 runs first): see the module docs. Sorts each
    /// node's dependency row tallest first as a side effect.
    pub fn priorities(&mut self) -> Vec<u32> {
        let n = self.keys.len();
        let heights = self.heights();
        for i in 0..n {
            // Tallest first; ties keep argument order (stable sort).
            self.deps.row_mut(i).sort_by(|&a, &b| heights[b as usize].cmp(&heights[a as usize]));
        }
        let mut prio = vec![u32::MAX; n];
        let mut next = 0u32;
        let mut seen = vec![false; n];
        let mut stack: Vec<(u32, usize)> = Vec::new();
        for &root in &self.roots {
            if seen[root as usize] {
                continue;
            }
            seen[root as usize] = true;
            stack.push((root, 0));
            while let Some(frame) = stack.last_mut() {
                let (i, cursor) = *frame;
                let row = self.deps.row(i as usize);
                if cursor < row.len() {
                    frame.1 += 1;
                    let d = row[cursor];
                    if !seen[d as usize] {
                        seen[d as usize] = true;
                        stack.push((d, 0));
                    }
                } else {
                    stack.pop();
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
    let mut topo = Topo::build(graph, &roots)?;
    let prio = topo.priorities();
    Ok(topo.keys.iter().map(|k| (*k).clone()).zip(prio).collect())
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
        Node::Task(super::super::Task {
            op: op(),
            args: deps.iter().map(|k| Arg::Key((*k).clone())).collect(),
        })
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
            assert_eq!(
                prio[&Key::named(&format!("make{k}"))] + 1,
                prio[&Key::named(&format!("acc{k}"))]
            );
        }
    }

    #[test]
    fn cycle_is_reported_with_its_keys() {
        let (a, b, c) = (Key::named("a"), Key::named("b"), Key::named("c"));
        let mut g = Graph::new();
        g.insert(a.clone(), task(&[&b]));
        g.insert(b.clone(), task(&[&c]));
        g.insert(c.clone(), task(&[&a]));
        match Topo::build(&g, std::slice::from_ref(&a)) {
            Err(GraphError::Cycle { keys }) => assert_eq!(keys, vec![a, b, c]),
            other => panic!("expected a cycle, got {:?}", other.err()),
        }
        assert!(matches!(order(&g), Err(GraphError::Cycle { .. })));
    }
}
