//! `replay`: captured peer records are replayed after the members moved
//! on: a lower seq, an expired record, a record moved to another
//! namespace, and one moved to another index; over the attacker's own
//! connection, over a hijacked connection of the member itself (the
//! attacker holds its identity key but not its share), and pushed as a
//! replica would. Not one may be accepted, and no replica may roll a
//! member back to an older record.
//!
//! Peer records live 20 s and are refreshed every 10 s; records are
//! captured at 5 s (expired by the attack at 25 s) and at 15 s (valid but
//! superseded by the 20 s refresh).

use std::sync::Arc;

use dht::NamespaceValue;
use rendezvous_proto::{PeerRecord, Request};

use super::{check_attack_scenario, schedule_discoveries, Scenario};
use crate::msg::{Addr, Msg};
use crate::world::{lock, SimConfig, World, T0};

/// The replay scenario.
#[derive(Default)]
pub struct Replay {
    early: Vec<Option<Arc<PeerRecord>>>,
    late: Vec<Option<Arc<PeerRecord>>>,
    attempts: u64,
}

impl Replay {
    fn attack(&mut self, world: &mut World) {
        let n = world.shared.n();
        let quorums = world.quorums.len() as u32;
        let attackers = world.params().adversaries.max(1);
        for q in 0..quorums {
            let Some(ns) = world.quorums[q as usize].namespace.clone() else {
                continue;
            };
            let replicas = world.quorums[q as usize].replicas.clone();
            let other_key = world.quorums[((q + 1) % quorums) as usize].key;
            for i in 1..=n {
                let flat = (q * n + i - 1) as usize;
                let a = (flat as u32) % attackers;
                let attacker = Addr::Attacker(a);
                let own = world.shared.attacker_peers[a as usize];
                let mut replays: Vec<PeerRecord> = Vec::new();
                if let Some(Some(r)) = self.early.get(flat) {
                    replays.push((**r).clone()); // expired by now
                }
                if let Some(Some(r)) = self.late.get(flat) {
                    replays.push((**r).clone()); // lower seq than the latest
                    if let Some(key) = other_key {
                        let mut moved = (**r).clone();
                        moved.seat.quorum_key = key; // another namespace
                        replays.push(moved);
                    }
                    let mut shifted = (**r).clone();
                    shifted.seat.index = i % n + 1; // another index
                    replays.push(shifted);
                }
                let value = Arc::new(NamespaceValue {
                    namespace: (*ns).clone(),
                    peers: replays
                        .iter()
                        .filter(|r| r.quorum_key() == ns.quorum_key().unwrap_or(r.quorum_key()))
                        .cloned()
                        .collect(),
                });
                for &r in &replicas {
                    for record in &replays {
                        // Over the attacker's own connection...
                        world.send(
                            attacker,
                            Addr::Rdv(r),
                            Msg::request(0, Request::RegisterPeer(record.clone()), own),
                        );
                        // ...and over a hijacked connection of the member.
                        world.send(
                            attacker,
                            Addr::Rdv(r),
                            Msg::request(
                                0,
                                Request::RegisterPeer(record.clone()),
                                record.peer_id(),
                            ),
                        );
                        self.attempts += 2;
                    }
                    world.send(attacker, Addr::Rdv(r), Msg::replicate(&value));
                    self.attempts += 1;
                }
            }
        }
    }

    fn check_no_rollback(&self, world: &mut World) {
        let n = world.shared.n();
        let mut problems = Vec::new();
        for (q, truth) in world.quorums.iter().enumerate() {
            let Some(key) = truth.key else { continue };
            for i in 1..=n {
                let flat = q * n as usize + i as usize - 1;
                let Some(Some(latest)) = world.records.get(flat) else {
                    continue;
                };
                let _ = latest;
                for &r in &truth.replicas {
                    // A rollback: a replica holds less than what it
                    // acknowledged to the member (with loss, the latest
                    // record may simply not have arrived yet).
                    let acked = lock(&world.members[flat]).acked_seq(r);
                    let seq = lock(&world.rdvs[r as usize]).store().peer_seq(&key, i);
                    if let Some(acked) = acked {
                        if seq.is_none_or(|s| s < acked) {
                            problems.push(format!(
                                "rdv {r}: quorum {q} member {i} holds seq {seq:?} after acknowledging {acked}"
                            ));
                        }
                    }
                }
            }
        }
        for p in problems.into_iter().take(10) {
            world.violate("no-rollback", p);
        }
    }
}

impl Scenario for Replay {
    fn configure(&self, config: &mut SimConfig) {
        config.peer_ttl_ms = 20_000;
        config.duration_ms = 32_000;
    }

    fn setup(&mut self, world: &mut World) {
        world.start(0);
        world.control_at(5_000, 1);
        world.control_at(15_000, 2);
        world.control_at(25_000, 3);
        world.control_at(27_000, 4);
        world.control_at(31_500, 5);
    }

    fn control(&mut self, world: &mut World, step: u32) {
        match step {
            1 => self.early = world.records.clone(),
            2 => self.late = world.records.clone(),
            3 => self.attack(world),
            4 => {
                schedule_discoveries(world, world.now - T0, 2_000, 800);
            }
            5 => self.check_no_rollback(world),
            _ => {}
        }
    }

    fn finish(&mut self, world: &mut World) {
        check_attack_scenario(world, "replay");
    }

    fn metrics(&self) -> std::collections::BTreeMap<String, f64> {
        std::collections::BTreeMap::from([("replays_sent".to_owned(), self.attempts as f64)])
    }
}
