//! Every scenario, at a small size, for several seeds: all invariants hold.

use sim::{scenarios, Params, RunOptions};

fn small(name: &str, seed: u64) -> Params {
    let mut p = scenarios::default_params(name, seed).expect("known scenario");
    p.quorums = 4;
    p.members = 5;
    p.threshold = 3;
    p.rendezvous = 10;
    p.adversaries = match name {
        "bad-dealer" => 2,
        "malicious-rendezvous" => 3,
        "churn" => 4,
        "flood" => 3,
        // Every node busy; three liars among ten nodes.
        "busy-rendezvous" => 10,
        "lying-rendezvous" => 3,
        // Each attacker's junk is checked for real at every node.
        "put-flood" => 1,
        _ => 2,
    };
    p
}

fn run_all_seeds(name: &str) {
    for seed in [1, 2, 3] {
        let params = small(name, seed);
        let report = sim::run(params, RunOptions::default()).expect("scenario runs");
        assert!(
            report.passed,
            "{name} seed {seed} failed:\n{}",
            report.table()
        );
        assert!(report.events > 0);
    }
}

/// #14: every quorum reshares to epoch 1 while clients discover, some
/// with a faulty old dealer: answers never mix epochs, no replica at
/// epoch 1 serves an epoch-0 seat, completeness stays at or above 0.99,
/// every quorum key is unchanged.
#[test]
fn epoch() {
    run_all_seeds("epoch");
}

/// #13 item 1: junk Kademlia values from a flooding sender are checked
/// within its budget (and not at all once it is penalized), and honest
/// members stay discoverable during the flood.
#[test]
fn put_flood() {
    run_all_seeds("put-flood");
}

#[test]
fn honest() {
    run_all_seeds("honest");
}

#[test]
fn outsider() {
    run_all_seeds("outsider");
}

#[test]
fn forged_namespace() {
    run_all_seeds("forged-namespace");
}

#[test]
fn replay() {
    run_all_seeds("replay");
}

#[test]
fn bad_dealer() {
    run_all_seeds("bad-dealer");
}

#[test]
fn malicious_rendezvous() {
    run_all_seeds("malicious-rendezvous");
}

#[test]
fn churn() {
    run_all_seeds("churn");
}

#[test]
fn partition() {
    run_all_seeds("partition");
}

#[test]
fn flood() {
    run_all_seeds("flood");
}

/// Loss only delays or retries: the invariants still hold.
#[test]
fn honest_and_churn_with_loss() {
    for name in ["honest", "churn"] {
        let mut params = small(name, 7);
        params.loss = 0.05;
        let report = sim::run(params, RunOptions::default()).expect("scenario runs");
        assert!(
            report.passed,
            "{name} with loss failed:\n{}",
            report.table()
        );
        assert!(report.lost > 0, "loss was applied");
    }
}

#[test]
fn busy_rendezvous() {
    run_all_seeds("busy-rendezvous");
}

#[test]
fn lying_rendezvous() {
    run_all_seeds("lying-rendezvous");
}

#[test]
fn poison() {
    run_all_seeds("poison");
}

#[test]
fn reflection() {
    run_all_seeds("reflection");
}

/// The reflection scenario's cap invariant catches nodes that dial every
/// address they are given at every interval (the broken validator dials
/// uncapped, as nodes did before #13 item 3).
#[test]
fn reflection_catches_uncapped_dials() {
    assert_broken_validator_caught("reflection", "victim-dials-under-the-cap");
}

/// Runs `scenario` (seed 1, small) with the broken validator: it must fail
/// on `invariant`.
fn assert_broken_validator_caught(scenario: &str, invariant: &str) {
    let mut p = small(scenario, 1);
    p.broken_validator = true;
    let report = sim::run(p, RunOptions::default()).expect("runs");
    assert!(!report.passed);
    assert!(
        report.violations.iter().any(|v| v.invariant == invariant),
        "{scenario}: {invariant} did not fire:\n{}",
        report.table()
    );
}

/// The poison scenario's invariants catch a node that stores what it
/// should refuse (the test-only broken validator stands in for protocol
/// v1, which accepted these records).
#[test]
fn poison_catches_a_validator_that_stores_poisoned_records() {
    assert_broken_validator_caught("poison", "no-poisoned-record-stored");
}
