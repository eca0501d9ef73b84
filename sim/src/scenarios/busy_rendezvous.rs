//! `busy-rendezvous`: `--adversaries` rendezvous nodes (all of them by
//! default) answer every registration `QuotaExceeded` for the first 12 s,
//! as an honest node whose queue is full would, and then recover.
//! Members must treat that as passing: retry with backoff, never give up,
//! and end registered at every replica of their namespace.
//!
//! Timeline: DKG at 0 s; the nodes are busy until 12 s (the DKG ends and
//! the namespace is co-signed meanwhile, so both the namespace and every
//! peer registration are refused at first); verified discoveries from
//! 45 s; checks at 58 s and at the end.

use std::collections::BTreeMap;

use rendezvous_proto::StatusCode;

use super::{
    check_common, check_discovery_complete, check_no_adversarial_acceptance, pick_rendezvous,
    schedule_discoveries, Scenario,
};
use crate::world::{lock, SimConfig, World, T0};

/// How long the nodes are busy (ms after start).
const BUSY_UNTIL_MS: u64 = 12_000;

/// The busy-rendezvous scenario.
#[derive(Default)]
pub struct BusyRendezvous {
    busy: Vec<u32>,
}

impl Scenario for BusyRendezvous {
    fn configure(&self, config: &mut SimConfig) {
        config.duration_ms = 60_000;
    }

    fn setup(&mut self, world: &mut World) {
        self.busy = pick_rendezvous(world, world.params().adversaries);
        for &r in &self.busy {
            world.set_busy(r, T0 + BUSY_UNTIL_MS);
        }
        world.start(0);
        world.control_at(45_000, 1);
        world.control_at(58_000, 2);
    }

    fn control(&mut self, world: &mut World, step: u32) {
        match step {
            1 => {
                schedule_discoveries(world, 45_000, 5_000, 0);
            }
            2 => {
                check_no_member_gave_up(world);
                check_registered_everywhere(world);
            }
            _ => {}
        }
    }

    fn finish(&mut self, world: &mut World) {
        check_common(world);
        check_no_adversarial_acceptance(world);
        check_discovery_complete(world, "honest-members-discoverable");
        let busy = world
            .stats
            .honest
            .rejected
            .get(StatusCode::QuotaExceeded.name())
            .copied()
            .unwrap_or(0);
        if busy == 0 && !self.busy.is_empty() {
            world.violate(
                "busy-ran",
                "no honest registration was refused QuotaExceeded".to_owned(),
            );
        }
    }

    fn metrics(&self) -> BTreeMap<String, f64> {
        BTreeMap::from([("busy_nodes".to_owned(), self.busy.len() as f64)])
    }
}

/// No honest member gave up (or, with `--broken-member`, exited).
pub fn check_no_member_gave_up(world: &mut World) {
    let mut problems = Vec::new();
    for (flat, m) in world.members.iter().enumerate() {
        let m = lock(m);
        if m.fault.is_some() {
            continue;
        }
        if let Some(why) = m.gave_up() {
            problems.push(format!("member {flat} (quorum {}): {why}", m.quorum));
        }
    }
    let count = problems.len();
    if let Some(first) = problems.first() {
        world.violate(
            "no-member-gave-up",
            format!("{count} member(s) gave up, e.g. {first}"),
        );
    }
}

/// Every honest member's current record is held by every replica of its
/// namespace that is not malicious.
fn check_registered_everywhere(world: &mut World) {
    let k = world.params().replication as usize;
    let mut short = Vec::new();
    for (flat, m) in world.members.iter().enumerate() {
        let m = lock(m);
        if m.fault.is_none() && m.acked_current() < k {
            short.push((flat, m.acked_current()));
        }
    }
    if let Some((flat, acked)) = short.first() {
        world.violate(
            "registered-everywhere-after-busy",
            format!(
                "{} member(s) not registered at all {k} replicas, e.g. member {flat} at {acked}",
                short.len()
            ),
        );
    }
}
