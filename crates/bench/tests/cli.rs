//! The `rdht-bench` binary end to end: `bench --json` and the error for a
//! missing `rdht`. (A separate test binary from `bench.rs`, so the two
//! load runs never share the cores.)

mod support;

use std::process::{Command, Stdio};

use support::{rdht, FIGURE_FIELDS, RDHT_BENCH};

/// The binary end to end: `rdht-bench bench --json --rdht PATH` prints the
/// documented fields (ours only, at the smallest size, for 1 s).
#[test]
fn the_binary_prints_json() {
    let out = Command::new(RDHT_BENCH)
        .args([
            "bench",
            "--duration",
            "1s",
            "--quorums",
            "1",
            "--members",
            "4",
            "--batch",
            "4",
            "--max-registrations",
            "200",
            "--discover-interval",
            "50ms",
            "--no-baseline",
            "--json",
            "--rdht",
        ])
        .arg(rdht())
        .stdin(Stdio::null())
        .output()
        .expect("rdht-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("--json prints JSON");
    let fields: Vec<&str> = FIGURE_FIELDS
        .into_iter()
        .chain([
            "baseline",
            "refresh",
            "seat",
            "stored",
            "floor",
            "floor_batched",
            "floor_verified",
        ])
        .collect();
    let object = json.as_object().expect("a JSON object");
    assert_eq!(object.len(), fields.len(), "{json}");
    // Every field, in the documented order (as printed: serde_json's map
    // may sort them).
    let mut at = 0;
    for field in fields {
        assert!(object.contains_key(field), "{field} missing: {json}");
        let pos = stdout[at..]
            .find(&format!("\"{field}\""))
            .unwrap_or_else(|| panic!("{field} out of order: {stdout}"));
        at += pos;
    }
    assert!(json["baseline"].is_null());
    assert!(
        json["floor"].is_null()
            && json["floor_batched"].is_null()
            && json["floor_verified"].is_null(),
        "the floors are measured with the baseline"
    );
    assert_eq!(json["stored"].as_u64(), Some(0));
    assert!(json["registrations_per_sec"].as_f64().unwrap_or(0.0) > 0.0);
    for field in FIGURE_FIELDS {
        assert!(json["refresh"][field].is_number(), "{json}");
        assert!(json["seat"][field].is_number(), "{json}");
    }
    assert!(json["seat"]["pairing_limit_per_sec"].is_number(), "{json}");
}

/// Without `rdht`, the error names the path it looked at and how to build it.
#[test]
fn a_missing_rdht_is_named() {
    let missing = std::env::temp_dir().join("rdht-bench-test-no-such-rdht");
    let out = Command::new(RDHT_BENCH)
        .args(["bench", "--duration", "1s", "--rdht"])
        .arg(&missing)
        .stdin(Stdio::null())
        .output()
        .expect("rdht-bench runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
    // The default location's message says how to build rdht.
    let message = rdht_bench::cli::locate_rdht(None);
    if let Err(e) = message {
        assert!(e.contains("cargo build --release -p node"), "{e}");
        assert!(e.contains("--rdht PATH"), "{e}");
    }
}
