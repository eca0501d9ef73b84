//! `partition`: from the start the rendezvous network is split in two
//! halves, and every member reaches only one of them (quorum members
//! still talk to each other). Quorums run their DKG and register on the
//! side they reach (a member re-registers the namespace record at a
//! replica that lacks it), and refresh during the split. At 30 s the split
//! heals; anti-entropy and the members' retries must bring every replica
//! of every namespace to the same records, all members included.
//!
//! Convergence is checked every 250 ms after the heal (the first instant
//! at which, for every namespace, every replica's value is identical and
//! complete), and again at the end.

use std::collections::BTreeMap;

use rand_core::RngCore;

use super::{check_common, check_discovery_complete, schedule_discoveries, Scenario};
use crate::msg::{Addr, Note, Outcome, RegKind};
use crate::world::{lock, SimConfig, World, T0};

const SPLIT: u32 = 1;
const HEAL: u32 = 2;
const CHECK: u32 = 3;
const FINAL: u32 = 4;
const DISCOVER: u32 = 5;
const HEAL_AT_MS: u64 = 30_000;
/// Replicas must agree within this after the heal.
const CONVERGENCE_BOUND_MS: u64 = 20_000;

/// The partition scenario.
#[derive(Default)]
pub struct Partition {
    accepted_per_side: [u64; 2],
    healed_at: Option<u64>,
    converged_at: Option<u64>,
}

impl Partition {
    /// Whether every namespace's replicas hold identical, complete values.
    fn converged(world: &World) -> Result<(), String> {
        let n = world.shared.n();
        for (q, truth) in world.quorums.iter().enumerate() {
            let Some(key) = truth.key else {
                return Err(format!("quorum {q} has no namespace"));
            };
            let mut first: Option<Vec<u8>> = None;
            for &r in &truth.replicas {
                let rdv = lock(&world.rdvs[r as usize]);
                let Some(value) = rdv.store().namespace_value(&key, world.now) else {
                    return Err(format!("rdv {r} lacks quorum {q}'s namespace"));
                };
                if value.peers.len() as u32 != n {
                    return Err(format!(
                        "rdv {r} holds {} of {n} members of quorum {q}",
                        value.peers.len()
                    ));
                }
                let bytes = value.encode();
                match &first {
                    None => first = Some(bytes),
                    Some(f) if *f != bytes => {
                        return Err(format!("replicas of quorum {q} hold different records"))
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }
}

impl Scenario for Partition {
    fn configure(&self, config: &mut SimConfig) {
        config.peer_ttl_ms = 40_000;
        config.duration_ms = 58_000;
    }

    fn setup(&mut self, world: &mut World) {
        world.control_at(0, SPLIT);
        world.start(0);
        world.control_at(HEAL_AT_MS, HEAL);
        world.control_at(52_000, DISCOVER);
        world.control_at(57_500, FINAL);
    }

    fn control(&mut self, world: &mut World, step: u32) {
        match step {
            SPLIT => {
                let nodes = world.params().rendezvous;
                let mut order: Vec<u32> = (0..nodes).collect();
                // Fisher-Yates with the world RNG: a random half on each side.
                for i in (1..order.len()).rev() {
                    let j = (world.rng.next_u64() % (i as u64 + 1)) as usize;
                    order.swap(i, j);
                }
                let mut sides = BTreeMap::new();
                for (k, r) in order.into_iter().enumerate() {
                    sides.insert(Addr::Rdv(r), (2 * k as u32 / nodes.max(1)) as u8);
                }
                for m in 0..world.members.len() as u32 {
                    sides.insert(Addr::Member(m), (world.rng.next_u64() % 2) as u8);
                }
                world.net.partition(sides);
            }
            HEAL => {
                world.net.heal();
                self.healed_at = Some(world.now);
                world.control_at(HEAL_AT_MS + 250, CHECK);
            }
            CHECK => {
                if Self::converged(world).is_ok() {
                    self.converged_at = Some(world.now);
                } else if world.now - T0 < HEAL_AT_MS + CONVERGENCE_BOUND_MS {
                    world.control_at(world.now - T0 + 250, CHECK);
                } else if let Err(e) = Self::converged(world) {
                    world.violate(
                        "replicas-converge",
                        format!("not converged 20 s after the heal: {e}"),
                    );
                }
            }
            DISCOVER => {
                schedule_discoveries(world, 52_000, 2_000, 800);
            }
            FINAL => {
                if let Err(e) = Self::converged(world) {
                    world.violate("replicas-converge", format!("at the end: {e}"));
                }
            }
            _ => {}
        }
    }

    fn note(&mut self, world: &mut World, _emitter: Addr, note: &Note) {
        if let Note::Registration {
            rdv,
            from,
            kind: RegKind::Peer,
            outcome: Outcome::Accepted,
        } = note
        {
            if world.net.is_split() && matches!(from, Addr::Member(_)) {
                if let Some(side) = world.net.side(Addr::Rdv(*rdv)) {
                    self.accepted_per_side[usize::from(side.min(1))] += 1;
                }
            }
        }
    }

    fn finish(&mut self, world: &mut World) {
        check_common(world);
        check_discovery_complete(world, "members-discoverable-after-heal");
        if self.accepted_per_side.contains(&0) {
            world.violate(
                "registrations-on-both-sides",
                format!(
                    "accepted during the split per side: {:?}",
                    self.accepted_per_side
                ),
            );
        }
        if self.converged_at.is_none()
            && !world
                .violations
                .iter()
                .any(|v| v.invariant == "replicas-converge")
        {
            world.violate("replicas-converge", "never converged".to_owned());
        }
    }

    fn metrics(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::from([
            (
                "accepted_side_a".to_owned(),
                self.accepted_per_side[0] as f64,
            ),
            (
                "accepted_side_b".to_owned(),
                self.accepted_per_side[1] as f64,
            ),
        ]);
        if let (Some(h), Some(c)) = (self.healed_at, self.converged_at) {
            m.insert("convergence_s".to_owned(), (c - h) as f64 / 1000.0);
        }
        m
    }
}
