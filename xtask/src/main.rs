//! `cargo xtask`: the project's one setup path.
//!
//! `cargo xtask test [ARGS]` provisions what the test suite needs on this
//! machine, then runs `cargo test --workspace --features F [ARGS]`, where F
//! is every feature but `tch` (`.ci/features`; `tests/layering.rs` checks
//! that no other feature is missing from it), plus `rask/tch` where
//! libtorch is found (`LIBTORCH` or `LIBTORCH_USE_PYTORCH` set):
//!
//! 1. **Debian packages** for the features the suite enables (`hdf5`, `blas`)
//!    and for Graphviz drawings. As root they are installed with `apt-get`;
//!    otherwise the exact `apt-get install` line is printed and nothing runs.
//! 2. **Python**: a virtualenv with pinned NumPy / scikit-learn, which
//!    generates the peers' `clf_small` data set used by reference tests, and
//!    one with TensorFlow for the deep-learning test.
//! 3. **The tests**, with those features.
//!
//! `cargo xtask provision` does steps 1–2 only (CI runs it before the lint
//! gates); `cargo xtask features` prints F (the lint gates' features);
//! `cargo xtask libtorch` assembles a CPU libtorch for the `tch` feature.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// A Debian package the suite needs, and why.
struct DebPackage {
    name: &'static str,
    why: &'static str,
    /// Used where `dpkg-query` does not exist (not Debian): is the thing there?
    present_without_dpkg: fn() -> bool,
}

const DEB_PACKAGES: &[DebPackage] = &[
    DebPackage {
        name: "libhdf5-dev",
        why: "the `hdf5` feature links libhdf5",
        present_without_dpkg: || {
            Path::new("/usr/include/hdf5/serial/hdf5.h").exists()
                || Path::new("/usr/include/hdf5.h").exists()
        },
    },
    DebPackage {
        name: "pkg-config",
        why: "hdf5-metno-sys finds libhdf5 through pkg-config",
        present_without_dpkg: || has_command("pkg-config"),
    },
    DebPackage {
        name: "libopenblas-dev",
        why: "the `blas` feature links OpenBLAS",
        present_without_dpkg: || has_library("libopenblas.so"),
    },
    DebPackage {
        name: "libclang-dev",
        why: "the `xgboost` feature generates XGBoost's C bindings with bindgen",
        present_without_dpkg: || has_library("libclang.so"),
    },
    DebPackage {
        name: "graphviz",
        why: "`dot` draws task graphs (visualize tests)",
        present_without_dpkg: || has_command("dot"),
    },
    DebPackage {
        name: "openssh-server",
        why: "the `rask ssh` test launches a cluster through a real local sshd",
        present_without_dpkg: || Path::new("/usr/sbin/sshd").exists(),
    },
    DebPackage {
        name: "openssh-client",
        why: "`rask ssh` starts remote processes with `ssh`",
        present_without_dpkg: || has_command("ssh"),
    },
    DebPackage {
        name: "chromium",
        why: "the dashboard test drives the page in headless Chromium",
        present_without_dpkg: || Path::new("/usr/bin/chromium").exists(),
    },
    DebPackage {
        name: "chromium-driver",
        why: "the dashboard test speaks WebDriver to chromedriver",
        present_without_dpkg: || Path::new("/usr/bin/chromedriver").exists(),
    },
    DebPackage {
        name: "iproute2",
        why: "`ip netns` builds the multi-host cluster test's network namespaces",
        present_without_dpkg: || has_command("ip"),
    },
];

/// Python packages of the fixtures' virtualenv (the versions the fixtures were made with).
/// `xgboost-cpu` also brings the `libxgboost.so` the `xgboost` feature links.
/// TensorFlow for the deep-learning test (`tests/dl_frameworks.rs`), in a
/// virtualenv of its own: it pins NumPy below the fixtures' 2.4. tf-keras is
/// Keras 2, which trains under MultiWorkerMirroredStrategy (Keras 3 cannot).
const TF_PINS: &[&str] = &["tensorflow-cpu==2.18.0", "tf-keras==2.18.0"];

const PYTHON_PINS: &[&str] = &[
    "numpy==2.4.6",
    "scipy==1.17.1",
    "scikit-learn==1.9.1",
    "threadpoolctl==3.8.0",
    "xgboost-cpu==3.2.0",
];

/// What went wrong, said once, at the top level.
type Failure = String;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => provision().and_then(|()| run_tests(&args[1..])),
        Some("provision") => provision(),
        Some("features") => {
            println!("{}", features());
            Ok(())
        }
        Some("libtorch") => libtorch().map(|dir| {
            println!(
                "libtorch {LIBTORCH_VERSION} (CPU) is in {}; to build and test the `tch` feature:",
                dir.display()
            );
            println!("  export LIBTORCH={0} LD_LIBRARY_PATH={0}/lib", dir.display());
            println!("  cargo xtask test   # adds rask/tch");
        }),
        Some("help" | "-h" | "--help") | None => {
            println!("{}", usage());
            Ok(())
        }
        Some(other) => Err(format!("unknown xtask command `{other}`\n\n{}", usage())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> &'static str {
    "usage: cargo xtask <command>\n\n\
     commands:\n  \
       test [ARGS]  provision, then `cargo test --workspace --features F [ARGS]`\n  \
       features     print F: every feature but `tch`, and `rask/tch` where libtorch is found\n  \
       libtorch     assemble a CPU libtorch from PyPI's wheels in <cache>/libtorch-<version>-cpu\n               \
                    (for the `tch` feature; CI does not: about 1 GB to download)\n  \
       provision    install the Debian packages (as root; otherwise print the apt-get line),\n               \
                    the Python fixtures' virtualenv and the clf_small data set"
}

/// Every feature but `tch` (CI has no libtorch), and `rask/tch` where
/// libtorch is found.
fn features() -> String {
    let mut f = include_str!("../../.ci/features").trim().to_string();
    let libtorch =
        ["LIBTORCH", "LIBTORCH_USE_PYTORCH"].iter().any(|v| std::env::var_os(v).is_some());
    if libtorch {
        f.push_str(",rask/tch");
    }
    f
}

/// The libtorch that tch 0.22 (burn-tch 0.20) needs.
const LIBTORCH_VERSION: &str = "2.9.0";
/// The PyPI wheels it comes from: torch's, and the two CUDA libraries that
/// its `libtorch_cpu.so` links (a few MB; CUDA itself is never used).
const LIBTORCH_WHEELS: &[&str] =
    &["torch==2.9.0", "nvidia-cuda-runtime-cu12==12.8.90", "nvidia-cuda-cupti-cu12==12.8.90"];
/// `(wheel name prefix, member)` copied into the libtorch folder's `lib/`.
const LIBTORCH_LIBS: &[(&str, &str)] = &[
    ("torch-", "torch/lib/libtorch_cpu.so"),
    ("torch-", "torch/lib/libc10.so"),
    ("torch-", "torch/lib/libgomp.so.1"),
    ("nvidia_cuda_runtime", "nvidia/cuda_runtime/lib/libcudart.so.12"),
    ("nvidia_cuda_cupti", "nvidia/cuda_cupti/lib/libcupti.so.12"),
];

/// A CPU libtorch in `<cache>/libtorch-<version>-cpu` (`include/`, `lib/`),
/// the layout tch's build script reads from `LIBTORCH`. PyTorch's own CPU
/// download is not reachable from here, so it is assembled from PyPI's
/// wheel: its headers, `libtorch_cpu.so` and `libc10.so`, and a
/// `libtorch.so` built here that only links `libtorch_cpu.so` (as in
/// PyTorch's CPU builds; the wheel's own also links `libtorch_cuda.so`,
/// whose CUDA libraries are gigabytes).
fn libtorch() -> Result<PathBuf, Failure> {
    let dir = cache_dir().join(format!("libtorch-{LIBTORCH_VERSION}-cpu"));
    if dir.join("build-version").exists() {
        return Ok(dir);
    }
    let work = cache_dir().join("libtorch-wheels");
    std::fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    run(Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--only-binary", ":all:"])
        .args(["--python-version", "3.11"])
        .args(["--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64"])
        .args(LIBTORCH_WHEELS)
        .arg("-d")
        .arg(&work))?;
    let partial = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(partial.join("lib"))
        .map_err(|e| format!("{}: {e}", partial.display()))?;
    let wheel = |prefix: &str| -> Result<PathBuf, Failure> {
        std::fs::read_dir(&work)
            .map_err(|e| format!("{}: {e}", work.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                name.starts_with(prefix) && name.ends_with(".whl")
            })
            .ok_or_else(|| format!("no {prefix}* wheel in {}", work.display()))
    };
    // Python's zipfile: `unzip` is not on every machine.
    let extract = r#"
import sys, zipfile, shutil, os
wheel, out, members = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    for m in members:
        if m.endswith("/"):
            for n in z.namelist():
                if n.startswith(m) and not n.endswith("/"):
                    dest = os.path.join(out, "include", n[len(m):])
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    with z.open(n) as src, open(dest, "wb") as dst:
                        shutil.copyfileobj(src, dst)
        else:
            with z.open(m) as src, open(os.path.join(out, "lib", os.path.basename(m)), "wb") as dst:
                shutil.copyfileobj(src, dst)
"#;
    run(Command::new("python3")
        .args(["-c", extract])
        .arg(wheel("torch-")?)
        .arg(&partial)
        .arg("torch/include/"))?;
    for (prefix, member) in LIBTORCH_LIBS {
        run(Command::new("python3")
            .args(["-c", extract])
            .arg(wheel(prefix)?)
            .arg(&partial)
            .arg(member))?;
    }
    let empty = partial.join("empty.c");
    std::fs::write(&empty, "/* libtorch.so of a CPU build: it only links libtorch_cpu.so */\n")
        .map_err(|e| format!("{}: {e}", empty.display()))?;
    let lib = partial.join("lib");
    run(Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(lib.join("libtorch.so"))
        .arg(&empty)
        .args(["-Wl,-soname,libtorch.so", "-Wl,--no-as-needed"])
        .arg(format!("-L{}", lib.display()))
        .arg("-ltorch_cpu"))?;
    let _ = std::fs::remove_file(&empty);
    std::fs::write(partial.join("build-version"), LIBTORCH_VERSION)
        .map_err(|e| format!("{}: {e}", partial.display()))?;
    std::fs::rename(&partial, &dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(dir)
}

fn workspace_root() -> PathBuf {
    // xtask/ sits one level below the root.
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask has a parent folder").to_path_buf()
}

fn has_command(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
}

fn has_library(file: &str) -> bool {
    ["/usr/lib", "/usr/lib64", "/usr/local/lib"].iter().any(|root| {
        Path::new(root).join(file).exists()
            || std::fs::read_dir(root)
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| e.file_type().is_ok_and(|t| t.is_dir()) && e.path().join(file).exists())
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `Some(installed)` from dpkg, `None` where dpkg is not available.
fn dpkg_installed(package: &str) -> Option<bool> {
    let out =
        Command::new("dpkg-query").args(["-W", "-f=${db:Status-Status}", package]).output().ok()?;
    Some(out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "installed")
}

fn python_has_venv() -> bool {
    Command::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The Debian packages that are missing, with the reason each is needed.
fn missing_packages() -> Vec<(&'static str, &'static str)> {
    let mut missing: Vec<(&str, &str)> = DEB_PACKAGES
        .iter()
        .filter(|p| !dpkg_installed(p.name).unwrap_or_else(|| (p.present_without_dpkg)()))
        .map(|p| (p.name, p.why))
        .collect();
    if !python_has_venv() {
        missing.push(("python3", "the fixtures' virtualenv"));
        missing.push(("python3-venv", "the fixtures' virtualenv"));
    }
    missing
}

fn run(cmd: &mut Command) -> Result<(), Failure> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().map_err(|e| format!("cannot start {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed ({status})"))
    }
}

fn provision() -> Result<(), Failure> {
    install_debian_packages()?;
    let python = python_venv("venv", PYTHON_PINS)?;
    link_xgboost_lib(&python)?;
    provision_data(&python)?;
    python_venv("tf-venv", TF_PINS).map(drop)
}

/// Links the wheel's `lib` folder at `<cache>/xgboost-lib`, where the
/// `xgboost` feature's build scripts look (unless `XGBOOST_LIB_DIR` is set).
fn link_xgboost_lib(python: &Path) -> Result<(), Failure> {
    let out = Command::new(python)
        .args([
            "-c",
            "import os, xgboost; print(os.path.join(os.path.dirname(xgboost.__file__), 'lib'))",
        ])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    let lib = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !out.status.success() || !lib.join("libxgboost.so").is_file() {
        return Err(format!(
            "the virtualenv's xgboost has no lib/libxgboost.so ({}): {}",
            lib.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let link = cache_dir().join("xgboost-lib");
    if std::fs::read_link(&link).is_ok_and(|target| target == lib) {
        return Ok(());
    }
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&lib, &link)
        .map_err(|e| format!("cannot link {} to {}: {e}", link.display(), lib.display()))
}

fn install_debian_packages() -> Result<(), Failure> {
    let missing = missing_packages();
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|(n, _)| *n).collect();
    let reasons: String = missing.iter().map(|(n, why)| format!("\n  {n}: {why}")).collect();
    let line = format!("apt-get install -y --no-install-recommends {}", names.join(" "));
    if !is_root() {
        return Err(format!(
            "the test suite needs Debian packages that are not installed:{reasons}\n\
             install them (as root), then run `cargo xtask test` again:\n  sudo {line}\n\
             nothing was run."
        ));
    }
    eprintln!("xtask: installing Debian packages:{reasons}");
    run(Command::new("apt-get").args(["update", "-qq"]).env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&names)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    let still: Vec<&str> = missing_packages().into_iter().map(|(n, _)| n).collect();
    if still.is_empty() {
        Ok(())
    } else {
        Err(format!("after `{line}`, still missing: {}", still.join(" ")))
    }
}

fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RASK_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("rask")
}

/// Where the peers' generated data is, or will be (`PEERS_DATA` for the tests).
fn peers_data_dir() -> PathBuf {
    let peers_home = std::env::var_os("PEERS_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/rask-peers")));
    match peers_home.map(|h| h.join("data")) {
        Some(d) if d.join("clf_small/X.npy").is_file() => d,
        _ => cache_dir().join("data"),
    }
}

/// A virtualenv (under the cache folder) with pinned packages; recreated
/// when the pins change.
fn python_venv(name: &str, wanted: &[&str]) -> Result<PathBuf, Failure> {
    let venv = cache_dir().join(name);
    let python = venv.join("bin/python");
    let stamp = venv.join("rask-pins.txt");
    let pins = wanted.join("\n");
    if python.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == pins) {
        return Ok(python);
    }
    eprintln!("xtask: creating the virtualenv {} ({})", venv.display(), wanted.join(", "));
    run(Command::new("python3").args(["-m", "venv", "--clear"]).arg(&venv))?;
    run(Command::new(&python).args(["-m", "pip", "install", "-q"]).args(wanted))?;
    std::fs::write(&stamp, pins).map_err(|e| format!("cannot write {}: {e}", stamp.display()))?;
    Ok(python)
}

fn provision_data(python: &Path) -> Result<(), Failure> {
    let data = peers_data_dir();
    if data.join("clf_small/X.npy").is_file() {
        return Ok(());
    }
    let peers = workspace_root().join("../shared/peers");
    if !peers.join("gen_data.py").is_file() {
        let message = format!(
            "{} is missing (shared/ beside the checkout), so the clf_small data set cannot be \
             generated",
            peers.join("gen_data.py").display()
        );
        if std::env::var_os("CI").is_some() {
            return Err(message);
        }
        eprintln!("xtask: {message}; its tests will be skipped");
        return Ok(());
    }
    std::fs::create_dir_all(&data).map_err(|e| format!("cannot create {}: {e}", data.display()))?;
    eprintln!("xtask: generating clf_small into {}", data.display());
    // Generated in its own folder: a partial MANIFEST.json must not land in the peers' one.
    run(Command::new(python)
        .args(["gen_data.py", "--only", "clf_small"])
        .current_dir(&peers)
        .env_remove("OPENBLAS_CORETYPE")
        .env_remove("OPENBLAS_L2_SIZE")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PEERS_DATA", &data))
}

fn run_tests(args: &[String]) -> Result<(), Failure> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args(["test", "--workspace", "--features", &features()])
        .args(args)
        .env("PEERS_DATA", peers_data_dir())
        // The virtualenv the interop tests run Python in.
        .env("RASK_PYTHON", cache_dir().join("venv/bin/python"))
        // TensorFlow's, for the deep-learning test.
        .env("RASK_TF_PYTHON", cache_dir().join("tf-venv/bin/python"));
    // The `tch` feature's test binaries load libtorch from there.
    if let Some(dir) = std::env::var_os("LIBTORCH") {
        let mut paths = vec![PathBuf::from(dir).join("lib")];
        paths.extend(std::env::split_paths(
            &std::env::var_os("LD_LIBRARY_PATH").unwrap_or_default(),
        ));
        let joined = std::env::join_paths(paths).map_err(|e| format!("LD_LIBRARY_PATH: {e}"))?;
        cmd.env("LD_LIBRARY_PATH", joined);
    }
    run(&mut cmd)
}
