//! `honest`: no adversary. Every member of every quorum must be
//! discoverable, verified, from every reachable rendezvous.
//!
//! Timeline: DKG at 0 s; co-signing and registration follow at once;
//! verified discoveries from 8 s (through every entry node for every
//! quorum when that is at most 2,000 lookups, else one random entry per
//! quorum, with the structural check standing for the other entries: any
//! lookup ends at the same k replicas); checks at the end.

use std::collections::BTreeMap;

use super::{
    check_common, check_discovery_complete, check_no_adversarial_acceptance,
    check_served_everywhere, honest_refusals, schedule_discoveries, Scenario,
};
use crate::world::{SimConfig, World};

/// The honest scenario.
#[derive(Default)]
pub struct Honest {
    scheduled: u64,
}

impl Scenario for Honest {
    fn configure(&self, config: &mut SimConfig) {
        config.duration_ms = 14_000;
    }

    fn setup(&mut self, world: &mut World) {
        world.start(0);
        world.control_at(8_000, 1);
        world.control_at(13_500, 2);
    }

    fn control(&mut self, world: &mut World, step: u32) {
        match step {
            1 => self.scheduled = schedule_discoveries(world, 8_000, 2_000, 2_000),
            2 => check_served_everywhere(world, "discoverable-from-every-rendezvous"),
            _ => {}
        }
    }

    fn finish(&mut self, world: &mut World) {
        check_common(world);
        check_no_adversarial_acceptance(world);
        check_discovery_complete(world, "discoverable-from-every-rendezvous");
        if world.stats.discoveries < self.scheduled && world.params().loss == 0.0 {
            let detail = format!(
                "{} of {} scheduled discoveries completed",
                world.stats.discoveries, self.scheduled
            );
            world.violate("discoveries-complete", detail);
        }
        // With loss a lost namespace registration makes a member's first
        // try fail (UnknownNamespace) until its fallback re-registers the
        // namespace: only the end state counts then (checked above).
        let refused = honest_refusals(world);
        if refused > 0 && world.params().loss == 0.0 {
            world.violate(
                "honest-registrations-accepted",
                format!(
                    "{refused} honest registration(s) refused: {:?}",
                    world.stats.honest.rejected
                ),
            );
        }
    }

    fn metrics(&self) -> BTreeMap<String, f64> {
        BTreeMap::from([("discoveries_scheduled".to_owned(), self.scheduled as f64)])
    }
}
