//! With the test-only broken validator (rendezvous nodes acknowledge and
//! serve what their store refuses), the invariants must catch it, say
//! when, and give the command that replays it.

use sim::{scenarios, RunOptions};

/// A small `outsider` run, seed 4, with or without the broken validator.
fn small_outsider(broken_validator: bool) -> sim::Params {
    let mut p = scenarios::default_params("outsider", 4).expect("known scenario");
    p.quorums = 3;
    p.members = 5;
    p.threshold = 3;
    p.rendezvous = 8;
    p.adversaries = 2;
    p.broken_validator = broken_validator;
    p
}

#[test]
fn broken_validator_is_caught_with_a_replay_command() {
    let report = sim::run(small_outsider(true), RunOptions::default()).expect("runs");
    assert!(!report.passed, "a broken validator went unnoticed");
    let violation = report
        .violations
        .iter()
        .find(|v| v.invariant == "zero-adversarial-accepted")
        .expect("the outsider invariant fires");
    assert!(violation.at_s > 0.0);
    assert!(report.adversarial.accepted > 0);
    assert!(report.replay.contains("--scenario outsider --seed 4"));
    assert!(report.replay.contains("--broken-validator"));
    // Clients still refuse what the broken nodes serve.
    assert_eq!(report.forged_accepted, 0);
    assert!(report
        .table()
        .contains("replay: cargo run -p sim --release -- --scenario outsider"));
}

#[test]
fn the_same_run_without_the_switch_passes() {
    let report = sim::run(small_outsider(false), RunOptions::default()).expect("runs");
    assert!(report.passed, "{}", report.table());
}

#[test]
fn json_has_a_hex_digest_field() {
    let p = scenarios::default_params("honest", 1).map(|mut p| {
        p.quorums = 2;
        p.members = 4;
        p.threshold = 3;
        p.rendezvous = 6;
        p
    });
    let report = sim::run(p.expect("known"), RunOptions::default()).expect("runs");
    let json = serde_json::to_value(&report).expect("serializes");
    let digest = json["digest"].as_str().expect("digest is a string");
    assert_eq!(digest.len(), 64);
    assert!(digest.chars().all(|c| c.is_ascii_hexdigit()));
}
