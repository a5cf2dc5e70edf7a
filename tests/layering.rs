//! The layering rule of `ARCHITECTURE.md`, checked over the source: crates
//! depend only on the crates below them, and inside `rask-core` and
//! `rask-distributed` a module refers only to modules below it (through
//! `crate::module` paths or the crate root's re-exports).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The modules of `rask-core`, bottom first.
const CORE_LAYERS: &[&str] = &[
    "fastmath",
    "files",
    "key",
    "value",
    "npy",
    "raw_array",
    "op",
    "graph",
    "error",
    "diagnostics",
    "local",
    "delayed",
    "array",
];

/// The modules of `rask-distributed`, bottom first: the pure scheduler at the
/// bottom, the wire edge above it, the processes above that.
const DISTRIBUTED_LAYERS: &[&str] = &[
    "scheduler_file",
    "scheduler",
    "error",
    "protocol",
    "auth",
    "parts",
    "dashboard",
    "worker",
    "server",
    "client",
    "report",
    "ssh",
    "cli",
    "cluster",
];

/// Which Rask crates each member crate may depend on.
const CRATE_DEPS: &[(&str, &[&str])] = &[
    ("core", &[]),
    ("core/distributed", &["rask-core"]),
    ("collections/bag", &["rask-core"]),
    ("collections/dataframe", &["rask-core", "rask-bag"]),
    ("ml", &["rask-core"]),
    ("search", &["rask-core", "rask-ml"]),
    ("glm", &["rask-core", "rask-ml"]),
    ("integrations", &["rask-core", "rask-ml", "rask-distributed"]),
];

/// One reference from a module to a module that is not below it.
#[derive(Debug, PartialEq)]
struct Violation {
    file: String,
    line: usize,
    from: String,
    to: String,
}

/// `crate::name` references in code (comments skipped; `$crate::` is macro hygiene, not a use).
fn crate_paths(source: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in source.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        let mut offset = 0;
        while let Some(at) = rest.find("crate::") {
            let start = offset + at;
            let before = code[..start].chars().next_back();
            let tail = &code[start + "crate::".len()..];
            let name: String =
                tail.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !matches!(before, Some(c) if c == '$' || c == '_' || c.is_ascii_alphanumeric()) {
                if name.is_empty() && tail.starts_with('{') {
                    // `use crate::{a::X, b};`: every first segment inside the braces.
                    let inner = tail[1..].split('}').next().unwrap_or("");
                    for part in inner.split(',') {
                        let seg: String = part
                            .trim()
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        if !seg.is_empty() {
                            out.push((n + 1, seg));
                        }
                    }
                } else if !name.is_empty() {
                    out.push((n + 1, name));
                }
            }
            offset = start + "crate::".len();
            rest = &code[offset..];
        }
    }
    out
}

/// Names re-exported at the crate root (`pub use module::{A, B};`) → their module.
fn root_reexports(lib_rs: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for stmt in lib_rs.split(';') {
        let stmt = stmt.trim();
        let Some(path) = stmt.rsplit("pub use ").next().filter(|_| stmt.contains("pub use "))
        else {
            continue;
        };
        let Some((module, names)) = path.split_once("::") else { continue };
        let names = names.trim().trim_start_matches('{').trim_end_matches('}');
        for name in names.split(',') {
            let name = name.split("::").last().unwrap_or("").split(" as ").last().unwrap_or("");
            let name = name.trim();
            if !name.is_empty() {
                out.insert(name.to_string(), module.trim().to_string());
            }
        }
    }
    out
}

/// The layer a `crate::name` reference lands in, if it is one of `layers`.
fn target_module<'a>(
    name: &str,
    layers: &'a [&'a str],
    reexports: &HashMap<String, String>,
) -> Option<&'a str> {
    // A module's own name wins over a root item of the same name (`crate::value`).
    if let Some(l) = layers.iter().copied().find(|l| *l == name) {
        return Some(l);
    }
    let module = reexports.get(name)?;
    layers.iter().copied().find(|l| l == module)
}

/// Checks one module's source against the layer order.
fn check_module(
    file: &str,
    module: &str,
    source: &str,
    layers: &[&str],
    reexports: &HashMap<String, String>,
) -> Vec<Violation> {
    let Some(own) = layers.iter().position(|l| *l == module) else {
        return vec![Violation {
            file: file.into(),
            line: 0,
            from: module.into(),
            to: "(module not in the layer list: add it to the list in tests/layering.rs)".into(),
        }];
    };
    crate_paths(source)
        .into_iter()
        .filter_map(|(line, name)| {
            let target = target_module(&name, layers, reexports)?;
            let level = layers.iter().position(|l| *l == target)?;
            (level > own).then(|| Violation {
                file: file.into(),
                line,
                from: module.into(),
                to: target.into(),
            })
        })
        .collect()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn check_crate(src: &Path, layers: &[&str]) -> Vec<Violation> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let reexports = root_reexports(&lib);
    let mut out = Vec::new();
    for file in rust_files(src) {
        let rel = file.strip_prefix(src).unwrap();
        let module = rel.components().next().unwrap().as_os_str().to_string_lossy();
        let module = module.trim_end_matches(".rs");
        if module == "lib" {
            continue;
        }
        let source = std::fs::read_to_string(&file).unwrap();
        out.extend(check_module(&file.display().to_string(), module, &source, layers, &reexports));
    }
    out
}

fn report(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}:{}: `{}` refers up to `{}`", v.file, v.line, v.from, v.to))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn core_modules_only_use_lower_layers() {
    let v = check_crate(&Path::new(ROOT).join("core/src"), CORE_LAYERS);
    assert!(v.is_empty(), "layering broken (see ARCHITECTURE.md):\n{}", report(&v));
}

#[test]
fn distributed_modules_only_use_lower_layers() {
    let v = check_crate(&Path::new(ROOT).join("core/distributed/src"), DISTRIBUTED_LAYERS);
    assert!(v.is_empty(), "layering broken (see ARCHITECTURE.md):\n{}", report(&v));
}

#[test]
fn crates_depend_only_on_lower_crates() {
    let all = ["rask-core", "rask-distributed", "rask-ml", "rask-search", "rask-glm"];
    let all: Vec<&str> = all.into_iter().chain(["rask-integrations"]).collect();
    let mut bad = Vec::new();
    for (dir, allowed) in CRATE_DEPS {
        let manifest =
            std::fs::read_to_string(Path::new(ROOT).join(dir).join("Cargo.toml")).unwrap();
        for line in manifest.lines() {
            let name = line.split(['=', '.']).next().unwrap_or("").trim();
            if all.contains(&name) && !allowed.contains(&name) {
                bad.push(format!("{dir}/Cargo.toml depends on {name}"));
            }
        }
    }
    assert!(bad.is_empty(), "crate layering broken (see ARCHITECTURE.md):\n{}", bad.join("\n"));
}

#[test]
fn the_check_catches_an_upward_use() {
    let reexports = root_reexports("pub use delayed::{\n    Delayed, compute_many,\n};\n");
    let upward = "use crate::graph::Graph;\nuse crate::delayed::Delayed;\n";
    let v = check_module("local/mod.rs", "local", upward, CORE_LAYERS, &reexports);
    assert_eq!(
        v,
        vec![Violation {
            file: "local/mod.rs".into(),
            line: 2,
            from: "local".into(),
            to: "delayed".into()
        }]
    );
    // Through a root re-export, in a `use crate::{...}` list, and inline in code.
    for source in [
        "use crate::Delayed;",
        "use crate::{graph::Graph, delayed::external};",
        "let d = crate::compute_many(&x);",
    ] {
        let v = check_module("local/plan.rs", "local", source, CORE_LAYERS, &reexports);
        assert_eq!(v.len(), 1, "{source}: {v:?}");
    }
    // Not uses: comments, `$crate::` in macros, lower layers.
    let fine = "// see crate::delayed\n$crate::delayed::x();\nuse crate::key::Key;\n";
    assert!(check_module("local/mod.rs", "local", fine, CORE_LAYERS, &reexports).is_empty());
}

/// `(name, [what it enables])` of a manifest's `[features]` table (one
/// feature per line, as this workspace writes them).
fn features_of(manifest: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == "[features]";
            continue;
        }
        let Some((name, list)) = line.split_once('=').filter(|_| inside && !line.starts_with('#'))
        else {
            continue;
        };
        let items = list
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
            .map(|s| s.trim().trim_matches('"').to_string())
            .filter(|s| !s.is_empty())
            .collect();
        out.push((name.trim().to_string(), items));
    }
    out
}

/// CI builds and tests with `.ci/features` (every feature but `tch`, which
/// needs libtorch): a feature added anywhere must reach that list.
#[test]
fn ci_features_cover_every_feature_but_tch() {
    let root = Path::new(ROOT);
    let listed: Vec<String> = std::fs::read_to_string(root.join(".ci/features"))
        .unwrap()
        .trim()
        .split(',')
        .map(String::from)
        .collect();
    let read = |dir: &str| std::fs::read_to_string(root.join(dir).join("Cargo.toml")).unwrap();
    let root_features = features_of(&read("."));
    assert!(!root_features.is_empty(), "the root manifest's [features] were not found");
    let mut missing = Vec::new();
    for (name, _) in &root_features {
        if name != "tch" && !listed.contains(&format!("rask/{name}")) {
            missing.push(format!("rask/{name}"));
        }
    }
    // A member's feature is reached through a root feature that names it,
    // or through another feature of the same member.
    let manifest = read(".");
    let members = manifest
        .lines()
        .find(|l| l.starts_with("members"))
        .expect("a members line")
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|m| *m != "xtask")
        .map(String::from)
        .collect::<Vec<_>>();
    assert!(members.len() >= 5, "the members line was not read: {members:?}");
    for m in &members {
        let text = read(m);
        let crate_name = text
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|l| l.strip_suffix('"'))
            .expect("a package name")
            .to_string();
        let own = features_of(&text);
        for (name, _) in &own {
            let from_root = root_features.iter().any(|(root_name, items)| {
                root_name != "tch" && items.contains(&format!("{crate_name}/{name}"))
            });
            let from_sibling =
                own.iter().any(|(other, items)| other != "tch" && items.contains(name));
            if name != "tch" && !from_root && !from_sibling {
                missing.push(format!("{crate_name}/{name}"));
            }
        }
    }
    assert!(missing.is_empty(), "features CI never builds: {missing:?}; add them to .ci/features");
    assert!(!listed.iter().any(|f| f.ends_with("/tch")), "tch needs libtorch, which CI lacks");
}
