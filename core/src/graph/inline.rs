use rustc_hash::FxHashSet;

use super::{Arg, Graph, Node};
use crate::key::Key;

/// Substitutes `Data` nodes into the arguments of their dependents (as literals)
/// and resolves `Alias` chains, then drops the nodes no longer referenced, except
/// those in `keep` (requested outputs). Data is "cheap" to inline because a
/// [`Value`](crate::Value) is shared by reference count, never copied.
pub fn inline_data(graph: &Graph, keep: &[Key]) -> Graph {
    let resolve = |k: &Key| -> Option<Arg> {
        // Follow alias chains (bounded by the graph size, so a cyclic alias chain stops).
        let mut cur = k.clone();
        for _ in 0..=graph.len() {
            match graph.get(&cur) {
                Some(Node::Alias(target)) => cur = target.clone(),
                Some(Node::Data(v)) => return Some(Arg::Literal(v.clone())),
                _ => break,
            }
        }
        (cur != *k).then_some(Arg::Key(cur))
    };
    let mut out = Graph::with_capacity(graph.len());
    for (k, node) in graph.iter() {
        let mut node = node.clone();
        match &mut node {
            Node::Task(t) => t.args.iter_mut().for_each(|a| a.map_keys(&mut |k| resolve(k))),
            Node::Fused(f) => {
                let internal: FxHashSet<Key> = f.steps.iter().map(|(k, _)| k.clone()).collect();
                for (_, t) in f.steps.iter_mut() {
                    t.args.iter_mut().for_each(|a| {
                        a.map_keys(&mut |k| if internal.contains(k) { None } else { resolve(k) })
                    });
                }
            }
            Node::Data(_) | Node::Alias(_) | Node::External => {}
        }
        out.insert(k.clone(), node);
    }
    // Drop data/alias nodes nobody references any more.
    let mut used: FxHashSet<Key> = keep.iter().cloned().collect();
    for (_, node) in out.iter() {
        if matches!(node, Node::Task(_) | Node::Fused(_)) {
            node.for_each_dependency(&mut |d| {
                used.insert(d.clone());
            });
        }
    }
    let removable: Vec<Key> = out
        .iter()
        .filter(|(k, n)| matches!(n, Node::Data(_) | Node::Alias(_)) && !used.contains(*k))
        .map(|(k, _)| k.clone())
        .collect();
    for k in removable {
        out.remove(&k);
    }
    out
}
