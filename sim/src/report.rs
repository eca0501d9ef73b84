//! What a run prints: a table per scenario, or the same as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::world::{Params, Sample, Tally, Violation};

/// Everything a run reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Parameters (replay them with [`Report::replay`]).
    pub params: Params,
    /// What `--adversaries` meant here.
    pub adversaries_meaning: String,
    /// Whether every invariant held.
    pub passed: bool,
    /// Virtual seconds simulated.
    pub virtual_s: f64,
    /// Wall-clock seconds (not part of the digest).
    pub wall_s: f64,
    /// Events processed.
    pub events: u64,
    /// Events per wall-clock second.
    pub events_per_s: f64,
    /// Messages sent, lost and dropped by partitions.
    pub messages: u64,
    /// Messages lost.
    pub lost: u64,
    /// Messages dropped by a partition.
    pub partitioned: u64,
    /// Messages sent, by kind.
    pub sent_by_kind: BTreeMap<String, u64>,
    /// Members whose DKG succeeded.
    pub dkg_ok: u64,
    /// Members whose DKG failed.
    pub dkg_failed: u64,
    /// Registrations by honest members.
    pub honest: Tally,
    /// Registrations (and pushed values) by adversaries.
    pub adversarial: Tally,
    /// Records merged by anti-entropy between honest replicas.
    pub replication: Tally,
    /// Verified discoveries.
    pub discoveries: u64,
    /// Expected members found by verified discoveries / expected.
    pub completeness: f64,
    /// Found members served with an older seq than their latest.
    pub stale_served: u64,
    /// Peer records served to clients that failed verification.
    pub forged_rejected: u64,
    /// Namespace records served to clients that failed verification.
    pub namespace_rejected: u64,
    /// Verified records that were not genuine (must be 0).
    pub forged_accepted: u64,
    /// Scenario-specific figures (eviction, convergence, ...), virtual seconds.
    pub metrics: BTreeMap<String, f64>,
    /// Broken invariants.
    pub violations: Vec<Violation>,
    /// The exact command that replays this run.
    pub replay: String,
    /// SHA-256 over every event in order, hex.
    pub digest: String,
    /// Plot samples (registered and discoverable peers over virtual time).
    #[serde(skip)]
    pub samples: Vec<Sample>,
}

fn tally_line(name: &str, t: &Tally) -> String {
    let mut codes = t
        .rejected
        .iter()
        .map(|(c, n)| format!("{c}={n}"))
        .collect::<Vec<_>>()
        .join(" ");
    if codes.is_empty() {
        codes = "-".to_owned();
    }
    format!(
        "  {name:<22} attempted {:>8}  accepted {:>8}  unchanged {:>8}  rejected {:>8}  [{codes}]\n",
        t.attempted,
        t.accepted,
        t.unchanged,
        t.rejected_total()
    )
}

impl Report {
    /// The table for one scenario.
    pub fn table(&self) -> String {
        let p = &self.params;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "== {} ({}) ==",
            self.scenario,
            if self.passed { "PASS" } else { "FAIL" }
        );
        let _ = writeln!(
            s,
            "  seed {}  quorums {} x {} members (threshold {})  rendezvous {}  replication k={}  adversaries {} ({})  loss {}",
            p.seed, p.quorums, p.members, p.threshold, p.rendezvous, p.replication, p.adversaries, self.adversaries_meaning, p.loss
        );
        let _ = writeln!(
            s,
            "  virtual {:.1} s  wall {:.2} s  events {} ({:.0}/s)  messages {} (lost {}, partitioned {})",
            self.virtual_s, self.wall_s, self.events, self.events_per_s, self.messages, self.lost, self.partitioned
        );
        let _ = writeln!(
            s,
            "  dkg: {} members ok, {} failed",
            self.dkg_ok, self.dkg_failed
        );
        s.push_str(&tally_line("honest registrations", &self.honest));
        s.push_str(&tally_line("adversarial", &self.adversarial));
        s.push_str(&tally_line("replication merges", &self.replication));
        let _ = writeln!(
            s,
            "  discovery: {} verified lookups, completeness {:.4}, stale {}, forged served+rejected {} (namespaces {}), forged accepted {}",
            self.discoveries,
            self.completeness,
            self.stale_served,
            self.forged_rejected,
            self.namespace_rejected,
            self.forged_accepted
        );
        if !self.metrics.is_empty() {
            let m = self
                .metrics
                .iter()
                .map(|(k, v)| format!("{k}={v:.3}"))
                .collect::<Vec<_>>()
                .join("  ");
            let _ = writeln!(s, "  metrics: {m}");
        }
        let _ = writeln!(s, "  digest {}", self.digest);
        for v in &self.violations {
            let _ = writeln!(
                s,
                "  VIOLATION {} at t={:.3}s: {}",
                v.invariant, v.at_s, v.detail
            );
        }
        if !self.passed {
            let _ = writeln!(s, "  replay: {}", self.replay);
        }
        s
    }
}
