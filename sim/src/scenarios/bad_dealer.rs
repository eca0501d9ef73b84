//! `bad-dealer`: in every quorum, `--adversaries` dealers misbehave in the
//! DKG, in turn: bad shares to half the members with no justification,
//! silence, or equivocation (different deals to the two halves). Honest
//! members must agree on QUAL and the key set, every faulty dealer must be
//! excluded from QUAL, and the quorum must then register and be
//! discoverable (its honest members).

use std::collections::BTreeSet;

use rand_core::RngCore;

use super::{
    check_discovery_complete, check_dkg, check_namespaces, check_no_adversarial_acceptance,
    check_stores, schedule_discoveries, Scenario,
};
use crate::actors::member::Fault;
use crate::msg::Addr;
use crate::world::{SimConfig, World};

/// The bad-dealer scenario.
#[derive(Default)]
pub struct BadDealer {
    faulty: Vec<BTreeSet<u32>>,
}

impl Scenario for BadDealer {
    fn configure(&self, config: &mut SimConfig) {
        config.dkg_phase_ms = 2_000;
        config.duration_ms = 18_000;
    }

    fn setup(&mut self, world: &mut World) {
        let n = world.shared.n();
        let t = world.params().threshold;
        // Faulty dealers beyond n - threshold could leave QUAL below the
        // threshold; that is a failed DKG, not this scenario.
        let count = world.params().adversaries.min(n - t);
        let kinds = [Fault::BadShares, Fault::Silent, Fault::Equivocate];
        for q in 0..world.quorums.len() as u32 {
            let mut chosen = BTreeSet::new();
            while (chosen.len() as u32) < count {
                chosen.insert(1 + (world.rng.next_u64() % u64::from(n)) as u32);
            }
            for (k, &i) in chosen.iter().enumerate() {
                world.set_fault(q * n + i - 1, kinds[(k + q as usize) % kinds.len()]);
            }
            self.faulty.push(chosen);
        }
        world.start(0);
        world.control_at(12_000, 1);
    }

    fn control(&mut self, world: &mut World, step: u32) {
        if step == 1 {
            schedule_discoveries(world, 12_000, 2_000, 800);
        }
    }

    fn finish(&mut self, world: &mut World) {
        check_dkg(world);
        let mut problems = Vec::new();
        for (q, faulty) in self.faulty.iter().enumerate() {
            let Some(Ok(summary)) = world.quorums[q]
                .dkg
                .iter()
                .find(|(i, _)| !faulty.contains(i))
                .map(|(_, r)| r)
            else {
                continue;
            };
            for bad in faulty {
                if summary.qual.contains(bad) {
                    problems.push(format!(
                        "quorum {q}: faulty dealer {bad} is in QUAL {:?}",
                        summary.qual
                    ));
                }
            }
            let expected: Vec<u32> = (1..=world.shared.n())
                .filter(|i| !faulty.contains(i))
                .collect();
            if summary.qual != expected {
                problems.push(format!(
                    "quorum {q}: QUAL {:?}, expected the honest dealers {expected:?}",
                    summary.qual
                ));
            }
        }
        for p in problems.into_iter().take(10) {
            world.violate("faulty-dealers-excluded", p);
        }
        check_namespaces(world);
        check_no_adversarial_acceptance(world);
        check_stores(world);
        check_discovery_complete(world, "honest-members-discoverable");
        let n = world.shared.n();
        let faulty_registered = (0..world.members.len() as u32)
            .filter(|&f| world.is_adversary(Addr::Member(f)))
            .filter(|&f| {
                let q = f / n;
                let i = f % n + 1;
                world.quorums[q as usize]
                    .replicas
                    .clone()
                    .iter()
                    .any(|&r| world.served(r, q, i))
            })
            .count();
        if faulty_registered > 0 {
            world.violate(
                "faulty-dealers-not-listed",
                format!("{faulty_registered} faulty dealer(s) listed"),
            );
        }
    }

    fn metrics(&self) -> std::collections::BTreeMap<String, f64> {
        let total: usize = self.faulty.iter().map(BTreeSet::len).sum();
        std::collections::BTreeMap::from([("faulty_dealers".to_owned(), total as f64)])
    }
}
