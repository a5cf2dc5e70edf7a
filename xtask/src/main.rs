//! `cargo xtask`: the project's one setup path.
//!
//! `cargo xtask test [ARGS]` provisions what the test suite needs on this
//! machine, then runs `cargo test --workspace --all-features [ARGS]`:
//!
//! 1. **Debian packages** for the features the suite enables (`hdf5`, `blas`)
//!    and for Graphviz drawings. As root they are installed with `apt-get`;
//!    otherwise the exact `apt-get install` line is printed and nothing runs.
//! 2. **Python**: a virtualenv with pinned NumPy / scikit-learn, which
//!    generates the peers' `clf_small` data set used by reference tests, and
//!    one with TensorFlow for the deep-learning test.
//! 3. **The tests**, with every feature.
//!
//! `cargo xtask provision` does steps 1–2 only (CI runs it before the lint gates).

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
       test [ARGS]  provision, then `cargo test --workspace --all-features [ARGS]`\n  \
       provision    install the Debian packages (as root; otherwise print the apt-get line),\n               \
                    the Python fixtures' virtualenv and the clf_small data set"
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
        .args(["test", "--workspace", "--all-features"])
        .args(args)
        .env("PEERS_DATA", peers_data_dir())
        // The virtualenv the interop tests run Python in.
        .env("RASK_PYTHON", cache_dir().join("venv/bin/python"))
        // TensorFlow's, for the deep-learning test.
        .env("RASK_TF_PYTHON", cache_dir().join("tf-venv/bin/python"));
    run(&mut cmd)
}
