// Shared by the build scripts of `rask-integrations` and `rask` (included
// with `include!`): where libxgboost.so is, for the linker and the rpath.

/// `XGBOOST_LIB_DIR`, else the provisioned wheel's library under Rask's cache.
fn xgboost_lib_dir() -> std::path::PathBuf {
    println!("cargo:rerun-if-env-changed=XGBOOST_LIB_DIR");
    println!("cargo:rerun-if-env-changed=RASK_CACHE");
    if let Some(dir) = std::env::var_os("XGBOOST_LIB_DIR") {
        return dir.into();
    }
    let cache = std::env::var_os("RASK_CACHE").map(std::path::PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").unwrap_or_default();
        std::path::PathBuf::from(home).join(".cache/rask")
    });
    cache.join("xgboost-lib")
}

/// With the `xgboost` feature: the linker's search path and an rpath, so
/// binaries find libxgboost.so without LD_LIBRARY_PATH.
fn link_xgboost() {
    if std::env::var_os("CARGO_FEATURE_XGBOOST").is_none() {
        return;
    }
    let dir = xgboost_lib_dir();
    if !dir.join("libxgboost.so").exists() {
        println!(
            "cargo:warning=no libxgboost.so in {} (run `cargo xtask provision`, or set XGBOOST_LIB_DIR to your libxgboost's folder)",
            dir.display()
        );
    }
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
}
