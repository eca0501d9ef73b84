//! rdht's deterministic simulator.
//!
//! A single-threaded, event-driven simulation (parallel only inside one
//! virtual instant, see [`world`]) of rendezvous nodes, quorums, clients
//! and attackers in one process, driving the very same sans-IO cores the
//! real node uses (`dkg::DkgMember`, `dht::NamespaceStore`,
//! `rendezvous_proto` validation and client verification) with real
//! cryptography. Everything random comes from one seeded RNG, time is
//! virtual, and the order of events never depends on hash-map order or
//! the wall clock: the same seed and parameters give the same run, bit for
//! bit, which the trace digest (SHA-256 over every event in order) shows.
//!
//! Layout: [`world`] (event queue, clock, digest, the parallel instant
//! loop), [`net`] (latency, loss, partitions), [`placement`] (node ids,
//! k closest by XOR), [`actors`] (rendezvous, member, client, attacker),
//! [`scenarios`] (one per scenario, each with its size and invariants),
//! [`invariants`] (verdicts and replay commands), [`report`] (table and
//! JSON), [`plot`] (SVG).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod actors;
pub mod floor;
pub mod invariants;
pub mod msg;
pub mod net;
pub mod placement;
pub mod plot;
pub mod report;
pub mod scenarios;
pub mod world;

use std::time::Instant;

pub use report::Report;
pub use world::{Params, SimConfig, World};

/// Options of a run beyond the parameters.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Take plot samples every this many virtual ms (0: none).
    pub sample_ms: u64,
}

/// Runs one scenario with the given parameters and returns its report.
/// `None` if the scenario name is unknown.
pub fn run(params: Params, options: RunOptions) -> Option<Report> {
    let mut scenario = scenarios::make(&params.scenario)?;
    let mut config = SimConfig::new(params.clone());
    config.sample_ms = options.sample_ms;
    scenario.configure(&mut config);
    let started = Instant::now();
    let mut world = World::new(config);
    scenario.setup(&mut world);
    world.run(scenario.as_mut());
    scenario.finish(&mut world);
    let wall_s = started.elapsed().as_secs_f64();
    let verdict = invariants::Verdict::new(&params, world.violations.clone());
    let s = &world.stats;
    let completeness = if s.expected == 0 {
        1.0
    } else {
        s.found as f64 / s.expected as f64
    };
    Some(Report {
        scenario: params.scenario.clone(),
        adversaries_meaning: scenarios::adversaries_meaning(&params.scenario).to_owned(),
        params,
        passed: verdict.passed,
        virtual_s: world.elapsed_s(),
        wall_s,
        events: s.events,
        events_per_s: if wall_s > 0.0 {
            s.events as f64 / wall_s
        } else {
            0.0
        },
        messages: s.messages,
        lost: s.lost,
        partitioned: s.partitioned,
        sent_by_kind: s.sent.clone(),
        dkg_ok: s.dkg_ok,
        dkg_failed: s.dkg_failed,
        honest: s.honest.clone(),
        adversarial: s.adversarial.clone(),
        replication: s.replication.clone(),
        discoveries: s.discoveries,
        completeness,
        stale_served: s.stale,
        forged_rejected: s.forged_rejected,
        namespace_rejected: s.namespace_rejected,
        forged_accepted: s.forged_accepted,
        metrics: scenario.metrics(),
        violations: verdict.violations,
        replay: verdict.replay,
        digest: hex::encode(world.digest()),
        samples: world.samples.clone(),
    })
}
