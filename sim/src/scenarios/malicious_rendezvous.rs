//! `malicious-rendezvous`: `--adversaries` rendezvous nodes lie, in turn:
//! forging (altered records served and pushed to other replicas),
//! dropping (registrations acknowledged but not kept, lookups dropped,
//! namespaces hidden), or serving stale records. Clients must never accept
//! a forged record, and completeness must stay high for every namespace
//! whose replicas have an honest majority.
//!
//! Peer records live 20 s (refreshed every 10 s) so that stale answers
//! differ from the truth; discoveries run from 22 s, three per quorum from
//! random entry nodes.

use std::collections::BTreeMap;

use super::{check_common, pick_rendezvous, Scenario};
use crate::actors::rendezvous::Malice;
use crate::msg::{Addr, Note};
use crate::world::{SimConfig, World, T0};

/// The malicious-rendezvous scenario.
#[derive(Default)]
pub struct MaliciousRendezvous {
    majority_found: u64,
    majority_expected: u64,
    minority_found: u64,
    minority_expected: u64,
}

impl MaliciousRendezvous {
    fn honest_majority(world: &World, quorum: u32) -> bool {
        let replicas = &world.quorums[quorum as usize].replicas;
        let honest = replicas
            .iter()
            .filter(|r| !world.malicious.contains(r))
            .count();
        2 * honest > replicas.len()
    }
}

impl Scenario for MaliciousRendezvous {
    fn configure(&self, config: &mut SimConfig) {
        config.peer_ttl_ms = 20_000;
        config.duration_ms = 30_000;
    }

    fn setup(&mut self, world: &mut World) {
        let kinds = [Malice::Forge, Malice::Drop, Malice::Stale];
        let chosen = pick_rendezvous(world, world.params().adversaries);
        for (k, r) in chosen.into_iter().enumerate() {
            world.set_malice(r, kinds[k % kinds.len()]);
        }
        world.start(0);
        world.control_at(22_000, 1);
    }

    fn control(&mut self, world: &mut World, step: u32) {
        if step == 1 {
            let clients = world.shared.config.clients.max(1);
            let mut k = 0u64;
            for q in 0..world.quorums.len() as u32 {
                for _ in 0..3 {
                    let at = T0 + 22_000 + (k * 37) % 3_000;
                    world.discover_at(at, (k % u64::from(clients)) as u32, q, None);
                    k += 1;
                }
            }
        }
    }

    fn note(&mut self, world: &mut World, _from: Addr, note: &Note) {
        if let Note::Discovery(d) = note {
            let expected = world.expected_members(d.quorum);
            let found = expected
                .iter()
                .filter(|i| d.found.iter().any(|(f, _)| f == *i))
                .count() as u64;
            if Self::honest_majority(world, d.quorum) {
                self.majority_found += found;
                self.majority_expected += expected.len() as u64;
            } else {
                self.minority_found += found;
                self.minority_expected += expected.len() as u64;
            }
        }
    }

    fn finish(&mut self, world: &mut World) {
        check_common(world);
        // Forged records accepted are flagged as each discovery completes;
        // here the totals must be zero too.
        if world.stats.forged_accepted > 0 {
            let detail = format!("{} forged record(s) accepted", world.stats.forged_accepted);
            world.violate("no-forgery-accepted", detail);
        }
        let completeness = ratio(self.majority_found, self.majority_expected);
        // Lost answers lower completeness by about the loss rate.
        let bound = 0.99 - world.params().loss;
        if self.majority_expected == 0 || completeness < bound {
            world.violate(
                "completeness-with-honest-majority",
                format!(
                    "found {} of {} expected members ({:.3}) in namespaces with an honest majority",
                    self.majority_found, self.majority_expected, completeness
                ),
            );
        }
    }

    fn metrics(&self) -> BTreeMap<String, f64> {
        BTreeMap::from([
            (
                "completeness_honest_majority".to_owned(),
                ratio(self.majority_found, self.majority_expected),
            ),
            (
                "completeness_malicious_majority".to_owned(),
                ratio(self.minority_found, self.minority_expected),
            ),
        ])
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}
