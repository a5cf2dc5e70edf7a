use super::order::ancestors;
use super::Graph;
use crate::key::Key;

/// The subgraph of the ancestors of `keys` (the keys included). Keys not in the
/// graph are ignored here; executors report them.
pub fn cull(graph: &Graph, keys: &[Key]) -> Graph {
    let keep = ancestors(graph, keys);
    graph.iter().filter(|(k, _)| keep.contains(*k)).map(|(k, n)| (k.clone(), n.clone())).collect()
}
