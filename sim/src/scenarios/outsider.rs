//! `outsider`: attackers try to get listed under live namespaces with
//! fresh keys, wrong indices (above n, and 0), a corrupted member of
//! another quorum's real share, a stolen PeerId, and a namespace that
//! does not exist; directly, and by pushing forged values as if they were
//! a replica. Not one may be accepted.

use std::sync::Arc;

use dht::NamespaceValue;
use rand_core::RngCore;
use rendezvous_proto::Request;

use super::{check_attack_scenario, schedule_discoveries, Scenario};
use crate::actors::attacker::{fresh_share, peer_record};
use crate::msg::{Addr, Msg};
use crate::world::{lock, World};

/// The outsider scenario.
#[derive(Default)]
pub struct Outsider {
    attempts: u64,
}

impl Outsider {
    fn attack(&mut self, world: &mut World) {
        let n = world.shared.n();
        let quorums = world.quorums.len() as u32;
        let attackers = world.params().adversaries.max(1);
        let now = world.now;
        let ttl = world.shared.config.peer_ttl_ms;
        for q in 0..quorums {
            let Some((key, ns, replicas)) = world.quorums[q as usize].registered() else {
                continue;
            };
            for a in 0..attackers {
                let attacker = Addr::Attacker(a);
                let own = world.shared.attacker_peers[a as usize];
                let own_key = world.attacker_keys[a as usize].clone();
                let index = 1 + (world.rng.next_u64() % u64::from(n)) as u32;
                let mut sends: Vec<(Addr, Msg)> = Vec::new();
                // 1. A fresh key, at a real index.
                if let Some(share) = fresh_share(index, &mut world.rng) {
                    let r = peer_record(key, ns.epoch, own, &own_key, now, now + ttl, &share);
                    sends.push((attacker, Msg::request(0, Request::RegisterPeer(r), own)));
                }
                // 2. Wrong indices: above n, and 0.
                if let Some(share) = fresh_share(n + 1 + a, &mut world.rng) {
                    let r = peer_record(key, ns.epoch, own, &own_key, now, now + ttl, &share);
                    sends.push((
                        attacker,
                        Msg::request(0, Request::RegisterPeer(r.clone()), own),
                    ));
                    let mut zero = r;
                    zero.seat.index = 0;
                    sends.push((attacker, Msg::request(0, Request::RegisterPeer(zero), own)));
                }
                // 3. A corrupted member of another quorum, with its real
                //    share and its real identity (the attacker holds both
                //    keys, so the connection authenticates that PeerId).
                if quorums > 1 {
                    let other = (q + 1 + a % (quorums - 1)) % quorums;
                    let flat = other * n + index - 1;
                    let (share, peer, identity) = {
                        let m = lock(&world.members[flat as usize]);
                        (
                            m.key().map(|k| k.secret.clone()),
                            m.peer_id,
                            m.keypair().clone(),
                        )
                    };
                    if let Some(share) = share {
                        let r = peer_record(key, ns.epoch, peer, &identity, now, now + ttl, &share);
                        sends.push((attacker, Msg::request(0, Request::RegisterPeer(r), peer)));
                    }
                }
                // 4. A stolen PeerId (the victim's), over the attacker's own connection.
                let victim = world.shared.member_peers[(q * n + index - 1) as usize];
                if let Some(share) = fresh_share(index, &mut world.rng) {
                    let r = peer_record(key, ns.epoch, victim, &own_key, now, now + ttl, &share);
                    sends.push((attacker, Msg::request(0, Request::RegisterPeer(r), own)));
                }
                // 5. A namespace nobody registered.
                let (_, unknown) =
                    crate::actors::attacker::fake_namespace(&mut world.rng, now, ttl, &own_key);
                sends.push((
                    attacker,
                    Msg::request(0, Request::RegisterPeer(unknown), own),
                ));
                // 6. Posing as a replica: the live namespace with forged members.
                let mut forged = Vec::new();
                if let Some(share) = fresh_share(index, &mut world.rng) {
                    forged.push(peer_record(
                        key,
                        ns.epoch,
                        own,
                        &own_key,
                        now + 1,
                        now + ttl,
                        &share,
                    ));
                    forged.push(peer_record(
                        key,
                        ns.epoch,
                        victim,
                        &own_key,
                        now + 2,
                        now + ttl,
                        &share,
                    ));
                }
                let value = Arc::new(NamespaceValue {
                    namespace: (*ns).clone(),
                    peers: forged,
                });
                for &r in &replicas {
                    for (from, msg) in &sends {
                        world.send(*from, Addr::Rdv(r), msg.clone());
                        self.attempts += 1;
                    }
                    world.send(attacker, Addr::Rdv(r), Msg::replicate(&value));
                    self.attempts += 1;
                }
            }
        }
    }
}

impl Scenario for Outsider {
    fn configure(&self, config: &mut crate::world::SimConfig) {
        config.duration_ms = 16_000;
    }

    fn setup(&mut self, world: &mut World) {
        world.start(0);
        world.control_at(6_000, 1);
        world.control_at(9_000, 1);
        world.control_at(11_000, 2);
    }

    fn control(&mut self, world: &mut World, step: u32) {
        match step {
            1 => self.attack(world),
            2 => {
                schedule_discoveries(world, 11_000, 2_000, 800);
            }
            _ => {}
        }
    }

    fn finish(&mut self, world: &mut World) {
        check_attack_scenario(world, "attack");
    }

    fn metrics(&self) -> std::collections::BTreeMap<String, f64> {
        std::collections::BTreeMap::from([("attacks_sent".to_owned(), self.attempts as f64)])
    }
}
