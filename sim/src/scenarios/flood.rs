//! `flood`: from 5 s to 25 s every attacker sends a request every 20 ms:
//! garbage bytes through the real request codec, valid namespaces of
//! fresh single-member fake quorums beyond its per-source quota (all at
//! one rendezvous, a replica of honest quorums), and peer registrations
//! under namespaces nobody registered. Meanwhile honest members refresh
//! (every 5 s) and quorums move to a new epoch (at 12 s). Every honest
//! registration must be accepted, and no store may ever exceed its quotas
//! (checked every second).

use std::collections::BTreeMap;
use std::sync::Arc;

use rand_core::RngCore;
use rendezvous_proto::{NamespaceRecord, PeerRecord, Request};

use super::{
    check_common, check_discovery_complete, honest_refusals, schedule_discoveries, Scenario,
};
use crate::actors::attacker::{fake_namespace, garbage};
use crate::msg::{Addr, EventKind, Msg, Timer};
use crate::world::{fork, lock, SimConfig, World, T0};

const TICK: u32 = 1;
const QUOTA_CHECK: u32 = 2;
const EPOCH: u32 = 3;
const DISCOVER: u32 = 4;
const FINAL: u32 = 5;
const TICK_MS: u64 = 20;
const FLOOD_FROM_MS: u64 = 5_000;
const FLOOD_UNTIL_MS: u64 = 25_000;
const POOL: usize = 48;

struct AttackerPool {
    target: u32,
    namespaces: Vec<NamespaceRecord>,
    orphans: Vec<PeerRecord>,
}

/// The flood scenario.
#[derive(Default)]
pub struct Flood {
    pools: Vec<AttackerPool>,
    sent: u64,
    max_namespaces_seen: usize,
    max_peer_records_seen: usize,
    max_per_source_seen: usize,
}

impl Flood {
    fn tick(&mut self, world: &mut World) {
        let now = world.now;
        for (a, pool) in self.pools.iter().enumerate() {
            let a = a as u32;
            let from = Addr::Attacker(a);
            let remote = world.shared.attacker_peers[a as usize];
            let pick = world.rng.next_u64();
            let msg = match pick % 3 {
                0 => Msg::Raw {
                    bytes: Arc::new(garbage(&mut world.rng)),
                    remote,
                },
                1 => {
                    let ns = &pool.namespaces[(pick / 3) as usize % pool.namespaces.len()];
                    Msg::Raw {
                        bytes: Arc::new(Request::RegisterNamespace(ns.clone()).encode()),
                        remote,
                    }
                }
                _ => {
                    let orphan = &pool.orphans[(pick / 3) as usize % pool.orphans.len()];
                    Msg::request(0, Request::RegisterPeer(orphan.clone()), remote)
                }
            };
            world.send(from, Addr::Rdv(pool.target), msg);
            self.sent += 1;
        }
        if now - T0 + TICK_MS < FLOOD_UNTIL_MS {
            world.control_at(now - T0 + TICK_MS, TICK);
        }
    }

    fn check_quotas(&mut self, world: &mut World) {
        let quotas = world.shared.config.store.quotas.clone();
        let mut problems = Vec::new();
        for (r, rdv) in world.rdvs.iter().enumerate() {
            let rdv = lock(rdv);
            let stats = rdv.store().stats();
            self.max_namespaces_seen = self.max_namespaces_seen.max(stats.namespaces);
            self.max_peer_records_seen = self.max_peer_records_seen.max(stats.peer_records);
            if stats.namespaces > quotas.max_namespaces {
                problems.push(format!(
                    "rdv {r}: {} namespaces > {}",
                    stats.namespaces, quotas.max_namespaces
                ));
            }
            if stats.peer_records > quotas.max_peer_records {
                problems.push(format!(
                    "rdv {r}: {} peer records > {}",
                    stats.peer_records, quotas.max_peer_records
                ));
            }
            for peer in &world.shared.attacker_peers {
                let held = rdv.store().source_count(peer);
                self.max_per_source_seen = self.max_per_source_seen.max(held);
                if held > quotas.max_registrations_per_source {
                    problems.push(format!(
                        "rdv {r}: an attacker holds {held} registrations > {}",
                        quotas.max_registrations_per_source
                    ));
                }
            }
        }
        for p in problems.into_iter().take(10) {
            world.violate("stored-state-within-quotas", p);
        }
        let next = world.now - T0 + 1_000;
        if next < world.shared.config.duration_ms {
            world.control_at(next, QUOTA_CHECK);
        }
    }
}

impl Scenario for Flood {
    fn configure(&self, config: &mut SimConfig) {
        config.peer_ttl_ms = 10_000;
        config.duration_ms = 32_000;
        config.store.quotas.max_namespaces = 96;
        config.store.quotas.max_peer_records = 2_048;
        config.store.quotas.max_registrations_per_source = 32;
    }

    fn setup(&mut self, world: &mut World) {
        let attackers = world.params().adversaries;
        let nodes = world.params().rendezvous.max(1);
        let ttl = 3_600_000;
        // Build the attackers' material in parallel, each from its own
        // forked RNG, collected in order: deterministic.
        let seeds: Vec<(u32, rand_chacha::ChaCha20Rng)> =
            (0..attackers).map(|a| (a, fork(&mut world.rng))).collect();
        let keys = world.attacker_keys.clone();
        use rayon::prelude::*;
        let pools: Vec<(Vec<NamespaceRecord>, Vec<PeerRecord>)> = seeds
            .into_par_iter()
            .map(|(a, mut rng)| {
                let key = &keys[a as usize];
                let namespaces = (0..POOL)
                    .map(|_| fake_namespace(&mut rng, T0, ttl, key).0)
                    .collect();
                let orphans = (0..8)
                    .map(|_| fake_namespace(&mut rng, T0, ttl, key).1)
                    .collect();
                (namespaces, orphans)
            })
            .collect();
        for (a, (namespaces, orphans)) in pools.into_iter().enumerate() {
            // Aim at a busy node: the first replica of an honest quorum is
            // only known after the DKG, so pick by index for now and
            // retarget at the first tick.
            self.pools.push(AttackerPool {
                target: a as u32 % nodes,
                namespaces,
                orphans,
            });
        }
        world.start(0);
        world.control_at(FLOOD_FROM_MS, TICK);
        world.control_at(1_000, QUOTA_CHECK);
        world.control_at(12_000, EPOCH);
        world.control_at(27_000, DISCOVER);
        world.control_at(31_500, FINAL);
    }

    fn control(&mut self, world: &mut World, step: u32) {
        match step {
            TICK => {
                if world.now - T0 == FLOOD_FROM_MS {
                    let targets: Vec<u32> = world
                        .quorums
                        .iter()
                        .filter_map(|q| q.replicas.first().copied())
                        .collect();
                    for (a, pool) in self.pools.iter_mut().enumerate() {
                        if let Some(t) = targets.get(a % targets.len().max(1)) {
                            pool.target = *t;
                        }
                    }
                }
                self.tick(world);
            }
            QUOTA_CHECK => self.check_quotas(world),
            EPOCH => {
                let n = world.shared.n();
                for q in 0..world.quorums.len() as u32 {
                    let collector = (1..=n).find(|&i| {
                        let m = lock(&world.members[(q * n + i - 1) as usize]);
                        m.qual().first() == Some(&i)
                    });
                    if let Some(i) = collector {
                        world.schedule(
                            world.now,
                            Addr::Member(q * n + i - 1),
                            EventKind::Timer(Timer::RenewNamespace),
                        );
                    }
                }
            }
            DISCOVER => {
                schedule_discoveries(world, 27_000, 2_000, 800);
            }
            FINAL => {
                // Without loss every replica has acknowledged every
                // member's current record; with loss a refresh may still
                // be waiting for its resend, so one acknowledgement is
                // required (completeness is checked by discovery).
                let k = if world.params().loss == 0.0 {
                    world.params().replication as usize
                } else {
                    1
                };
                let short: Vec<u32> = (0..world.members.len() as u32)
                    .filter(|&f| {
                        let m = lock(&world.members[f as usize]);
                        if k == 1 {
                            !m.acked_anywhere()
                        } else {
                            m.acked_current() < k
                        }
                    })
                    .collect();
                if !short.is_empty() {
                    world.violate(
                        "honest-registrations-accepted",
                        format!(
                            "{} member(s) not acknowledged by all replicas, e.g. {}",
                            short.len(),
                            short[0]
                        ),
                    );
                }
            }
            _ => {}
        }
    }

    fn finish(&mut self, world: &mut World) {
        check_common(world);
        check_discovery_complete(world, "honest-members-discoverable");
        // With loss, a lost namespace update makes some first tries fail
        // until the member's fallback repairs the replica: then only the
        // end state (every member acknowledged everywhere) counts.
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
        if world.stats.adversarial.rejected_total() == 0 {
            world.violate("flood-ran", "no flooding request was refused".to_owned());
        }
    }

    fn metrics(&self) -> BTreeMap<String, f64> {
        BTreeMap::from([
            ("flood_requests".to_owned(), self.sent as f64),
            (
                "max_namespaces_at_a_node".to_owned(),
                self.max_namespaces_seen as f64,
            ),
            (
                "max_peer_records_at_a_node".to_owned(),
                self.max_peer_records_seen as f64,
            ),
            (
                "max_registrations_of_one_attacker".to_owned(),
                self.max_per_source_seen as f64,
            ),
        ])
    }
}
