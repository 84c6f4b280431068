//! Link-time facts the host reports (`host --version`), and where a host linked
//! against DuckDB's shared library finds it at run time: beside the binary
//! (`$ORIGIN`, so a copied host travels with its libduckdb.so), then the directory
//! it was linked from (`DUCKDB_LIB_DIR`, the cache tests/setup fills).

fn main() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    println!("cargo:rerun-if-changed=../Cargo.lock");
    let iceberg = locked_version("iceberg").unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=FLOE_ICEBERG_VERSION={iceberg}");
    if std::env::var_os("CARGO_FEATURE_BUNDLED").is_some() {
        return;
    }
    let Some(dir) = std::env::var_os("DUCKDB_LIB_DIR") else {
        panic!(
            "floe links DuckDB 1.5.5's shared library: run tests/setup (it fetches \
             libduckdb.so and builds), or set DUCKDB_LIB_DIR to a directory holding it, \
             or build DuckDB from source with `--features bundled`"
        );
    };
    let dir = std::path::PathBuf::from(dir);
    if !dir.join("libduckdb.so").is_file() {
        panic!("DUCKDB_LIB_DIR={} holds no libduckdb.so", dir.display());
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
}

/// The version of `package` in the workspace's Cargo.lock.
fn locked_version(package: &str) -> Option<String> {
    let lock = std::fs::read_to_string("../Cargo.lock").ok()?;
    let entry = format!("name = \"{package}\"\nversion = \"");
    let start = lock.find(&entry)? + entry.len();
    let end = start + lock[start..].find('"')?;
    Some(lock[start..end].to_string())
}
