//! `forged-namespace`: attackers try to take over or roll back live
//! namespaces: squatting a quorum key with another key set, a record
//! signed by `threshold - 1` corrupted members, tampered commitments, and
//! the quorum's own older record (captured before the quorum renewed it:
//! the rollback a replay would be); directly and as replicated values. Not one may be accepted,
//! and every replica must keep the quorum's own latest record.

use std::sync::Arc;

use dht::NamespaceValue;
use rendezvous_proto::{NamespaceRecord, Request};

use super::{check_attack_scenario, schedule_discoveries, Scenario};
use crate::actors::attacker::{squat, tampered_commitments, too_few_shares};
use crate::msg::{Addr, Msg, Timer};
use crate::world::{lock, World, T0};

/// The forged-namespace scenario.
#[derive(Default)]
pub struct ForgedNamespace {
    captured: Vec<Option<Arc<NamespaceRecord>>>,
    attempts: u64,
}

impl ForgedNamespace {
    fn renew_every_namespace(&mut self, world: &mut World) {
        let n = world.shared.n();
        self.captured = world.quorums.iter().map(|q| q.namespace.clone()).collect();
        for q in 0..world.quorums.len() as u32 {
            let collector = (1..=n).find(|&i| {
                let m = lock(&world.members[(q * n + i - 1) as usize]);
                m.qual().first() == Some(&i) && m.fault.is_none()
            });
            if let Some(i) = collector {
                world.schedule(
                    world.now,
                    Addr::Member(q * n + i - 1),
                    crate::msg::EventKind::Timer(Timer::RenewNamespace),
                );
            }
        }
    }

    fn attack(&mut self, world: &mut World) {
        let n = world.shared.n();
        let attackers = world.params().adversaries.max(1);
        let now = world.now;
        for q in 0..world.quorums.len() as u32 {
            let Some(live) = world.quorums[q as usize].namespace.clone() else {
                continue;
            };
            let replicas = world.quorums[q as usize].replicas.clone();
            let threshold = live.threshold();
            let corrupted: Vec<dkg::KeyShare> = (1..threshold)
                .filter_map(|i| {
                    lock(&world.members[(q * n + i - 1) as usize])
                        .key()
                        .cloned()
                })
                .collect();
            let mut forgeries = vec![
                squat(&live, &mut world.rng, now),
                tampered_commitments(&live, &mut world.rng),
            ];
            if !corrupted.is_empty() {
                forgeries.push(too_few_shares(&live, &corrupted, now));
            }
            if let Some(Some(old)) = self.captured.get(q as usize) {
                if (old.epoch, old.issued_at_ms) < (live.epoch, live.issued_at_ms) {
                    forgeries.push((**old).clone());
                }
            }
            for (k, forged) in forgeries.into_iter().enumerate() {
                let a = (k as u32 + q) % attackers;
                let from = Addr::Attacker(a);
                let remote = world.shared.attacker_peers[a as usize];
                let record = Arc::new(forged);
                let value = Arc::new(NamespaceValue {
                    namespace: (*record).clone(),
                    peers: Vec::new(),
                });
                for &r in &replicas {
                    world.send(
                        from,
                        Addr::Rdv(r),
                        Msg::request(0, Request::RegisterNamespace((*record).clone()), remote),
                    );
                    world.send(from, Addr::Rdv(r), Msg::replicate(&value));
                    self.attempts += 2;
                }
            }
        }
    }

    fn check_latest(&self, world: &mut World) {
        let mut problems = Vec::new();
        for (q, truth) in world.quorums.iter().enumerate() {
            let (Some(key), Some(ns)) = (truth.key, truth.namespace.as_ref()) else {
                continue;
            };
            for &r in &truth.replicas {
                let rdv = lock(&world.rdvs[r as usize]);
                match rdv.store().namespace(&key) {
                    Some(stored) if stored.record() == &**ns => {}
                    Some(stored) => problems.push(format!(
                        "rdv {r}: quorum {q} namespace is epoch {} issued {}, expected epoch {}",
                        stored.record().epoch,
                        stored.record().issued_at_ms,
                        ns.epoch
                    )),
                    None => problems.push(format!("rdv {r}: quorum {q} namespace missing")),
                }
            }
            let captured = self.captured.get(q).and_then(|c| c.as_ref());
            if captured.is_none_or(|old| ns.issued_at_ms <= old.issued_at_ms) {
                problems.push(format!("quorum {q} never renewed its namespace record"));
            }
        }
        for p in problems.into_iter().take(10) {
            world.violate("replicas-keep-genuine-latest-namespace", p);
        }
    }
}

impl Scenario for ForgedNamespace {
    fn configure(&self, config: &mut crate::world::SimConfig) {
        config.duration_ms = 18_000;
    }

    fn setup(&mut self, world: &mut World) {
        world.start(0);
        world.control_at(5_000, 1);
        world.control_at(10_000, 2);
        world.control_at(12_000, 3);
        world.control_at(17_500, 4);
    }

    fn control(&mut self, world: &mut World, step: u32) {
        match step {
            1 => self.renew_every_namespace(world),
            2 => self.attack(world),
            3 => {
                schedule_discoveries(world, world.now - T0, 2_000, 800);
            }
            4 => self.check_latest(world),
            _ => {}
        }
    }

    fn finish(&mut self, world: &mut World) {
        check_attack_scenario(world, "forgery");
    }

    fn metrics(&self) -> std::collections::BTreeMap<String, f64> {
        std::collections::BTreeMap::from([("forgeries_sent".to_owned(), self.attempts as f64)])
    }
}
