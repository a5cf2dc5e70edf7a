use rustc_hash::{FxHashMap, FxHashSet};

use super::{FusedTask, Graph, Node, Task};
use crate::key::Key;

/// Fuses linear chains into single nodes: `a -> b` merge when `b`'s only
/// dependency is `a`, `b` is `a`'s only dependent, both are tasks, and `a` is
/// not in `keep` (requested outputs must stay addressable). The fused node keeps
/// the key of the chain's last task, so dependents are unaffected.
pub fn fuse(graph: &Graph, keep: &[Key]) -> Graph {
    let keep: FxHashSet<&Key> = keep.iter().collect();
    let is_task = |k: &Key| matches!(graph.get(k), Some(Node::Task(_)) | Some(Node::Fused(_)));
    let dependents = graph.dependents();
    // child[a] = b when a fuses into b.
    let mut child: FxHashMap<Key, Key> = FxHashMap::default();
    let mut has_parent: FxHashSet<Key> = FxHashSet::default();
    for (b, node) in graph.iter() {
        if !is_task(b) {
            continue;
        }
        let deps = node.dependencies();
        if let [a] = deps.as_slice() {
            let only_dependent = dependents.get(a).is_some_and(|d| d.len() == 1);
            if only_dependent && is_task(a) && !keep.contains(a) {
                child.insert(a.clone(), b.clone());
                has_parent.insert(b.clone());
            }
        }
    }
    let mut out = Graph::with_capacity(graph.len());
    for (k, node) in graph.iter() {
        if child.contains_key(k) {
            continue; // fused into a descendant
        }
        if !has_parent.contains(k) {
            out.insert(k.clone(), node.clone());
        }
    }
    // Build each chain from its top (a fusable node without a fusable parent).
    for top in child.keys().filter(|k| !has_parent.contains(*k)) {
        let mut steps: Vec<(Key, Task)> = Vec::new();
        let mut cur = top.clone();
        loop {
            match graph.get(&cur).expect("fusable keys are in the graph") {
                Node::Task(t) => steps.push((cur.clone(), t.clone())),
                Node::Fused(f) => steps.extend(f.steps.iter().cloned()),
                Node::Data(_) | Node::Alias(_) | Node::External => {
                    unreachable!("only tasks are fused")
                }
            }
            match child.get(&cur) {
                Some(next) => cur = next.clone(),
                None => break,
            }
        }
        out.insert(cur, Node::Fused(FusedTask { steps }));
    }
    out
}
