//! With the test-only broken member (`--broken-member`: a refusal the
//! member does not special-case ends it, as `rdht quorum` did before the
//! member core), the busy-rendezvous and lying-rendezvous invariants must
//! fail; the same runs without the switch pass.

use sim::{scenarios, RunOptions};

fn small(name: &str, broken_member: bool) -> sim::Params {
    let mut p = scenarios::default_params(name, 5).expect("known scenario");
    p.quorums = 4;
    p.members = 5;
    p.threshold = 3;
    p.rendezvous = 10;
    p.adversaries = if name == "busy-rendezvous" { 10 } else { 3 };
    p.broken_member = broken_member;
    p
}

fn invariants(report: &sim::Report) -> Vec<&str> {
    report
        .violations
        .iter()
        .map(|v| v.invariant.as_str())
        .collect()
}

#[test]
fn busy_rendezvous_catches_members_that_give_up() {
    let report = sim::run(small("busy-rendezvous", true), RunOptions::default()).expect("runs");
    assert!(!report.passed, "the old behaviour went unnoticed");
    let names = invariants(&report);
    assert!(names.contains(&"no-member-gave-up"), "{names:?}");
    assert!(
        names.contains(&"registered-everywhere-after-busy"),
        "{names:?}"
    );
    assert!(report.replay.contains("--broken-member"));
    let fixed = sim::run(small("busy-rendezvous", false), RunOptions::default()).expect("runs");
    assert!(fixed.passed, "{}", fixed.table());
}

#[test]
fn lying_rendezvous_catches_members_that_give_up() {
    let report = sim::run(small("lying-rendezvous", true), RunOptions::default()).expect("runs");
    assert!(!report.passed, "the old behaviour went unnoticed");
    let names = invariants(&report);
    assert!(names.contains(&"no-member-gave-up"), "{names:?}");
    let fixed = sim::run(small("lying-rendezvous", false), RunOptions::default()).expect("runs");
    assert!(fixed.passed, "{}", fixed.table());
}
