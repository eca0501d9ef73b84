//! The binaries the tests run. Cargo builds only this package's binaries
//! for its tests; `rdht` is looked up next to `rdht-bench` (`cargo test
//! --workspace` builds it there) and, if absent, built there first with
//! `cargo build -p node --bin rdht` in the same profile.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rdht_bench::cli::rdht_next_to;

/// The figures `--json` reports for one server, in their documented
/// order (the whole report adds `baseline`, `refresh`, `seat` and `floor`
/// with the same fields, and `stored`).
pub const FIGURE_FIELDS: [&str; 7] = [
    "registrations_per_sec",
    "register_p50_ms",
    "register_p99_ms",
    "discover_p50_ms",
    "discover_p99_ms",
    "cpu_s",
    "peak_rss_mb",
];

/// The `rdht-bench` binary under test.
pub const RDHT_BENCH: &str = env!("CARGO_BIN_EXE_rdht-bench");

/// The `rdht` binary beside `rdht-bench`, built first if it is missing.
pub fn rdht() -> PathBuf {
    let bench = Path::new(RDHT_BENCH);
    let rdht = rdht_next_to(bench);
    if rdht.is_file() {
        return rdht;
    }
    // target/<profile>/rdht-bench: build `rdht` in that profile and target
    // directory, so that it lands next to rdht-bench.
    let profile_dir = bench.parent().expect("rdht-bench has a directory");
    let profile = profile_dir
        .file_name()
        .and_then(|p| p.to_str())
        .expect("a profile directory")
        .to_owned();
    let target_dir = profile_dir.parent().expect("a target directory");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "-p", "node", "--bin", "rdht", "--target-dir"])
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null());
    match profile.as_str() {
        "debug" => {}
        "release" => {
            build.arg("--release");
        }
        other => {
            build.args(["--profile", other]);
        }
    }
    eprintln!("{} is missing: building it ({build:?})", rdht.display());
    let status = build.status().expect("cargo runs");
    assert!(status.success(), "building rdht failed: {status}");
    assert!(
        rdht.is_file(),
        "{} still missing after building it (a --target build puts it elsewhere): \
         run `cargo build --release -p node` first",
        rdht.display()
    );
    rdht
}
