//! `reflection`: rendezvous nodes as a weapon (issue #13 item 3). A
//! record's addresses are its signer's word, and anyone can sign records
//! for PeerIds of their own: here `--adversaries` attackers each make a
//! quorum of 64 identities of their own (a valid namespace: anyone can
//! run a DKG alone) whose records all name one victim's address, and
//! register them at every rendezvous node, directly (each over its own
//! identity's connection, as the attacker holds those keys) and by
//! Kademlia PUT, once at 4 s and again every 5 s.
//!
//! Without a cap, every node dials every such PeerId at every liveness
//! interval: 2 attackers x 64 identities, every 2 s, is about 3,800
//! dials a minute from each node at one address. With it, a node dials
//! one destination IP at most 60 times a minute.
//!
//! Invariants: no node dials the victim more than 60 times in the run
//! (it lasts less than a minute); the attack reached the dialling stage
//! (some dial to the victim was asked for, so the cap is what held);
//! honest members stay discoverable.

use std::collections::BTreeMap;

use dht::NamespaceValue;
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::{Multiaddr, PeerRecord, Request};

use super::{check_common, check_discovery_complete, schedule_discoveries, Scenario};
use crate::msg::{Addr, Msg, Note};
use crate::world::{SimConfig, World};

const ATTACK: u32 = 1;
const DISCOVER: u32 = 2;
/// Identities in each attacker's quorum.
const FAKE_MEMBERS: u32 = 64;
/// The node's cap (`ServerConfig::max_dials_per_ip_per_minute`).
const CAP_PER_MINUTE: u64 = 60;

/// The victim's address: a global IP nobody in the simulation owns.
fn victim() -> Multiaddr {
    "/ip4/8.8.4.4/tcp/53"
        .parse()
        .unwrap_or_else(|_| Multiaddr::empty())
}

/// The reflection scenario.
#[derive(Default)]
pub struct Reflection {
    /// Each attacker's quorum, dealt once.
    fakes: Vec<TestQuorum>,
    /// Dials at the victim, per rendezvous node.
    victim_dials: BTreeMap<u32, u64>,
    /// Dials at anything else.
    other_dials: u64,
    records_sent: u64,
}

impl Reflection {
    fn attack(&mut self, world: &mut World) {
        let now = world.now;
        let attackers = world.params().adversaries.max(1);
        while self.fakes.len() < attackers as usize {
            let fake = TestQuorum::deal(FAKE_MEMBERS, 1, &mut world.rng);
            self.fakes.push(fake);
        }
        let nodes = world.params().rendezvous;
        for (a, fake) in self.fakes.iter().enumerate() {
            let attacker = Addr::Attacker(a as u32);
            let ns = fake.namespace(1, None, now, now + 3_600_000);
            let records: Vec<PeerRecord> = (1..=fake.n())
                .map(|i| {
                    PeerRecord::sign(
                        fake.seat(i, 1),
                        vec![victim()],
                        now,
                        now + 600_000,
                        &fake.identities[i as usize - 1],
                    )
                })
                .collect();
            let put = NamespaceValue {
                namespace: ns.clone(),
                peers: records.clone(),
            };
            for r in 0..nodes {
                world.send(
                    attacker,
                    Addr::Rdv(r),
                    Msg::request(0, Request::RegisterNamespace(ns.clone()), fake.peer_id(1)),
                );
                for record in &records {
                    let own = record.peer_id();
                    world.send(
                        attacker,
                        Addr::Rdv(r),
                        Msg::request(0, Request::RegisterPeer(record.clone()), own),
                    );
                }
                world.send(attacker, Addr::Rdv(r), Msg::replicate(&put));
                self.records_sent += 2 * records.len() as u64;
            }
        }
    }
}

impl Scenario for Reflection {
    fn configure(&self, config: &mut SimConfig) {
        config.duration_ms = 40_000;
    }

    fn setup(&mut self, world: &mut World) {
        world.start(0);
        for s in (4..=34u64).step_by(5) {
            world.control_at(s * 1_000, ATTACK);
        }
        world.control_at(36_000, DISCOVER);
    }

    fn control(&mut self, world: &mut World, step: u32) {
        match step {
            ATTACK => self.attack(world),
            DISCOVER => {
                schedule_discoveries(world, 36_000, 2_000, 800);
            }
            _ => {}
        }
    }

    fn note(&mut self, _world: &mut World, _from: Addr, note: &Note) {
        if let Note::Dial { rdv, addrs } = note {
            if addrs.contains(&victim()) {
                *self.victim_dials.entry(*rdv).or_insert(0) += 1;
            } else {
                self.other_dials += 1;
            }
        }
    }

    fn finish(&mut self, world: &mut World) {
        check_common(world);
        check_discovery_complete(world, "honest-members-discoverable");
        let worst = self.victim_dials.iter().max_by_key(|(_, n)| **n);
        if let Some((&rdv, &dials)) = worst {
            if dials > CAP_PER_MINUTE {
                world.violate(
                    "victim-dials-under-the-cap",
                    format!("rendezvous {rdv} dialled the victim {dials} times in under a minute"),
                );
            }
        }
        if self.victim_dials.is_empty() || self.records_sent == 0 {
            world.violate(
                "attacks-ran",
                "no rendezvous was asked to dial the victim".to_owned(),
            );
        }
    }

    fn metrics(&self) -> BTreeMap<String, f64> {
        let total: u64 = self.victim_dials.values().sum();
        let worst = self.victim_dials.values().copied().max().unwrap_or(0);
        BTreeMap::from([
            ("attack_records_sent".to_owned(), self.records_sent as f64),
            ("victim_dials_total".to_owned(), total as f64),
            ("victim_dials_max_per_rdv".to_owned(), worst as f64),
            ("other_dials".to_owned(), self.other_dials as f64),
        ])
    }
}
