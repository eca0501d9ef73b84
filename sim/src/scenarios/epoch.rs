//! `epoch` (#14): every quorum reshares its key to epoch 1 at 10 s (the
//! same members and threshold, a new key set, the same quorum key) while
//! clients keep discovering, before, through and after the switch. In
//! `--adversaries` quorums one old dealer misbehaves in the resharing
//! (wrong shares to half the members and no justification, or silence)
//! and then does nothing else. Invariants: a client never accepts an
//! answer that mixes epochs (`answers-never-mix-epochs`, checked on every
//! discovery); no replica that holds epoch 1 serves an epoch-0 seat
//! (`no-old-seat-after-switch`, every 250 ms); completeness through the
//! switch at least 0.99 (`discovery-complete-through-switch`); every
//! honest member reshares and keeps the quorum key (`quorum-key-unchanged`),
//! faulty dealers are out of QUAL (`faulty-dealers-excluded`), and every
//! quorum ends at epoch 1 (`epoch-1-everywhere`), with DKG agreement,
//! namespaces and genuine stores as everywhere.

use std::collections::{BTreeMap, BTreeSet};

use rand_core::RngCore;

use super::{check_common, schedule_discoveries, Scenario};
use crate::actors::member::Fault;
use crate::msg::{Addr, Note};
use crate::world::{lock, SimConfig, World, T0};

const RESHARE: u32 = 1;
const CHECK: u32 = 2;
const DISCOVER: u32 = 3;
const RESHARE_AT_MS: u64 = 10_000;
const CHECK_PERIOD_MS: u64 = 250;
/// Discovery rounds (start, spread), in ms after T0: before, through and
/// after the switch.
const ROUNDS: [(u64, u64); 3] = [(7_000, 3_000), (10_000, 8_000), (20_000, 6_000)];
/// The completeness the issue asks for through the switch.
const COMPLETENESS: f64 = 0.99;

/// The epoch scenario.
#[derive(Default)]
pub struct Epoch {
    /// Quorum -> the index of its faulty old dealer.
    faulty: BTreeMap<u32, u32>,
    /// Each quorum's key before the resharing.
    keys: Vec<Option<rendezvous_proto::QuorumKey>>,
    /// (quorum, index) of the members that reshared, and whether their
    /// new key set kept the quorum key.
    reshared: BTreeMap<(u32, u32), bool>,
    /// Replica checks of "no epoch-0 seat once epoch 1 is in".
    replica_checks: u64,
    /// Discoveries before this count were made before the resharing.
    discoveries_before: u64,
}

impl Scenario for Epoch {
    fn configure(&self, config: &mut SimConfig) {
        config.dkg_phase_ms = 2_000;
        config.duration_ms = 28_000;
    }

    fn setup(&mut self, world: &mut World) {
        world.start(0);
        world.control_at(RESHARE_AT_MS, RESHARE);
        world.control_at(RESHARE_AT_MS, CHECK);
        for (k, (at, _)) in ROUNDS.iter().enumerate() {
            world.control_at(*at, DISCOVER + k as u32);
        }
    }

    fn control(&mut self, world: &mut World, step: u32) {
        match step {
            RESHARE => self.reshare(world),
            CHECK => {
                self.check_replicas(world);
                let next = world.now - T0 + CHECK_PERIOD_MS;
                if next < world.shared.config.duration_ms {
                    world.control_at(next, CHECK);
                }
            }
            s if s >= DISCOVER => {
                if let Some((at, spread)) = ROUNDS.get((s - DISCOVER) as usize) {
                    schedule_discoveries(world, *at, *spread, 800);
                }
            }
            _ => {}
        }
    }

    fn note(&mut self, world: &mut World, from: Addr, note: &Note) {
        let Note::DkgDone {
            quorum,
            index,
            result: Ok(summary),
        } = note
        else {
            return;
        };
        if world.now < T0 + RESHARE_AT_MS || !matches!(from, Addr::Member(_)) {
            return;
        }
        let before = self.keys.get(*quorum as usize).copied().flatten();
        let after = summary
            .key_set
            .first()
            .map(|k| rendezvous_proto::QuorumKey(*k));
        self.reshared
            .insert((*quorum, *index), before.is_some() && before == after);
    }

    fn finish(&mut self, world: &mut World) {
        check_common(world);
        let n = world.shared.n();
        // Every honest member reshared and kept the quorum key.
        let mut missing = Vec::new();
        let mut changed = Vec::new();
        for q in 0..world.quorums.len() as u32 {
            for i in 1..=n {
                if self.faulty.get(&q) == Some(&i) {
                    continue;
                }
                match self.reshared.get(&(q, i)) {
                    None => missing.push((q, i)),
                    Some(false) => changed.push((q, i)),
                    Some(true) => {}
                }
            }
        }
        if !missing.is_empty() {
            world.violate(
                "every-honest-member-reshared",
                format!(
                    "{} member(s) got no share of epoch 1, e.g. {:?}",
                    missing.len(),
                    &missing[..missing.len().min(5)]
                ),
            );
        }
        if !changed.is_empty() {
            world.violate(
                "quorum-key-unchanged",
                format!(
                    "{} member(s) hold a key set with another quorum key, e.g. {:?}",
                    changed.len(),
                    &changed[..changed.len().min(5)]
                ),
            );
        }
        // Faulty old dealers are out of the resharing's QUAL.
        for (&q, &bad) in &self.faulty {
            let honest = world.quorums[q as usize]
                .dkg
                .iter()
                .find(|(i, _)| **i != bad)
                .and_then(|(_, r)| r.as_ref().ok());
            if let Some(summary) = honest {
                if summary.qual.contains(&bad) {
                    world.violate(
                        "faulty-dealers-excluded",
                        format!(
                            "quorum {q}: faulty dealer {bad} is in QUAL {:?}",
                            summary.qual
                        ),
                    );
                }
            }
        }
        // Every quorum's namespace is of epoch 1.
        let behind: Vec<usize> = world
            .quorums
            .iter()
            .enumerate()
            .filter(|(_, q)| q.namespace.as_ref().is_none_or(|ns| ns.epoch != 1))
            .map(|(q, _)| q)
            .collect();
        if !behind.is_empty() {
            world.violate(
                "epoch-1-everywhere",
                format!("quorum(s) {behind:?} never signed an epoch-1 namespace record"),
            );
        }
        let s = &world.stats;
        let completeness = if s.expected == 0 {
            0.0
        } else {
            s.found as f64 / s.expected as f64
        };
        if s.discoveries <= self.discoveries_before || completeness < COMPLETENESS {
            let detail = format!(
                "found {} of {} expected members in {} discoveries ({completeness:.4})",
                s.found, s.expected, s.discoveries
            );
            world.violate("discovery-complete-through-switch", detail);
        }
        if self.replica_checks == 0 {
            world.violate(
                "no-old-seat-after-switch",
                "no replica held epoch 1 at any check".to_owned(),
            );
        }
    }

    fn metrics(&self) -> BTreeMap<String, f64> {
        BTreeMap::from([
            ("faulty_old_dealers".to_owned(), self.faulty.len() as f64),
            ("members_reshared".to_owned(), self.reshared.len() as f64),
            (
                "replica_checks_at_epoch_1".to_owned(),
                self.replica_checks as f64,
            ),
        ])
    }
}

impl Epoch {
    /// Every member restarts to reshare; in `--adversaries` quorums one
    /// old dealer misbehaves.
    fn reshare(&mut self, world: &mut World) {
        let n = world.shared.n();
        let quorums = world.quorums.len() as u32;
        self.keys = world.quorums.iter().map(|q| q.key).collect();
        self.discoveries_before = world.stats.discoveries;
        let kinds = [Fault::BadShares, Fault::Silent];
        let mut chosen = BTreeSet::new();
        let count = world.params().adversaries.min(quorums);
        while (chosen.len() as u32) < count {
            chosen.insert((world.rng.next_u64() % u64::from(quorums)) as u32);
        }
        for (k, &q) in chosen.iter().enumerate() {
            let i = 1 + (world.rng.next_u64() % u64::from(n)) as u32;
            world.set_fault(q * n + i - 1, kinds[k % kinds.len()]);
            self.faulty.insert(q, i);
        }
        for flat in 0..quorums * n {
            world.reshare_member(flat, 1);
        }
    }

    /// No replica that holds a quorum's epoch-1 namespace serves one of
    /// its epoch-0 seats.
    fn check_replicas(&mut self, world: &mut World) {
        let now = world.now;
        let mut problems = Vec::new();
        for (q, truth) in world.quorums.iter().enumerate() {
            let Some(key) = truth.key else {
                continue;
            };
            for (r, rdv) in world.rdvs.iter().enumerate() {
                if world.malicious.contains(&(r as u32)) {
                    continue;
                }
                let rdv = lock(rdv);
                let at_epoch_1 = rdv
                    .store()
                    .namespace(&key)
                    .is_some_and(|ns| ns.record().epoch >= 1);
                if !at_epoch_1 {
                    continue;
                }
                self.replica_checks += 1;
                if let Some(value) = rdv.store().namespace_value(&key, now) {
                    for p in value.peers.iter().filter(|p| p.seat.epoch < 1) {
                        problems.push(format!(
                            "rdv {r}: quorum {q} at epoch 1 serves index {}'s epoch-{} seat",
                            p.index(),
                            p.seat.epoch
                        ));
                    }
                }
            }
        }
        for p in problems.into_iter().take(10) {
            world.violate("no-old-seat-after-switch", p);
        }
    }
}
