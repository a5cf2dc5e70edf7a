use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Graph, Node};

/// Why a graph could not be drawn.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VisualizeError {
    /// Writing the output file failed.
    #[error("could not write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Graphviz is needed for this format and is missing or failed.
    #[error("rendering {path} needs Graphviz's `dot` ({reason}); install the `graphviz` package or write a `.dot` file instead")]
    Graphviz {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The file extension names no supported format.
    #[error("cannot tell the format of {path}: use a .dot, .svg or .png file name")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The graph in Graphviz DOT: tasks as boxes labelled with their op, data as
/// ellipses, edges from dependency to dependent. Deterministic (sorted keys).
pub fn to_dot(graph: &Graph) -> String {
    let mut s = String::from(
        "digraph rask {\n  rankdir=BT;\n  node [fontname=\"Helvetica\", fontsize=10];\n",
    );
    for key in graph.sorted_keys() {
        let node = &graph.get(&key).expect("sorted_keys come from the graph");
        let shape = match node {
            Node::Task(_) | Node::Fused(_) => "box",
            Node::Data(_) => "ellipse",
            Node::External => "doubleoctagon",
            Node::Alias(_) => "cds",
        };
        s.push_str(&format!(
            "  \"{}\" [label=\"{}\\n{}\", shape={}];\n",
            escape(&key.to_string()),
            escape(&node.label()),
            escape(&key.to_string()),
            shape
        ));
        for dep in node.dependencies() {
            s.push_str(&format!(
                "  \"{}\" -> \"{}\";\n",
                escape(&dep.to_string()),
                escape(&key.to_string())
            ));
        }
    }
    s.push_str("}\n");
    s
}

/// Writes the graph to `path`: DOT for `.dot`/`.gv`, rendered through Graphviz's
/// `dot` for `.svg` and `.png`.
pub fn visualize(graph: &Graph, path: impl AsRef<Path>) -> Result<(), VisualizeError> {
    let path = path.as_ref();
    let dot = to_dot(graph);
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let io = |source| VisualizeError::Io { path: path.to_path_buf(), source };
    match ext.as_str() {
        "dot" | "gv" => std::fs::write(path, dot).map_err(io),
        "svg" | "png" => {
            let gv = |reason: String| VisualizeError::Graphviz { path: path.to_path_buf(), reason };
            let mut child = Command::new("dot")
                .arg(format!("-T{ext}"))
                .arg("-o")
                .arg(path)
                .stdin(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| gv(format!("could not start `dot`: {e}")))?;
            child
                .stdin
                .take()
                .expect("piped")
                .write_all(dot.as_bytes())
                .map_err(|e| gv(e.to_string()))?;
            let out = child.wait_with_output().map_err(|e| gv(e.to_string()))?;
            if !out.status.success() {
                return Err(gv(format!(
                    "`dot` exited with {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
            Ok(())
        }
        _ => Err(VisualizeError::UnknownFormat { path: path.to_path_buf() }),
    }
}
