//! `poison`: liveness poisoning (issue #12). Under protocol v1 anyone
//! could make a namespace of their own that seats an honest member's
//! PeerId and publish a record in that PeerId's name with unroutable
//! addresses: replicas then pinged those addresses, counted misses and
//! stopped listing the member in its real quorum; replaying a dead
//! member's PeerId listed it again.
//!
//! Here `--adversaries` attackers do exactly that, through every path,
//! once a second from 9 s to 24 s, against one live and one dead member of
//! every quorum (two members per quorum crash at 7 s and stay down):
//! - their own 1-of-1 quorum whose member list names the victim, its
//!   namespace registered at the victim quorum's replicas, and records
//!   seating the victim there, sent as `RegisterPeer` and `RegisterPeers`
//!   over the attacker's own connections and pushed as Kademlia PUTs;
//! - the victim's real seat (served to anyone) in the attacker's own
//!   envelope, and in an envelope claiming the victim's key but signed by
//!   the attacker, pushed as PUTs of the victim quorum's own namespace;
//! - the dead member's last record, replayed.
//!
//! Invariants, checked every 250 ms from 9 s: no honest replica reports a
//! live honest member unreachable; no dead member, once no replica lists
//! it, is listed again; no replica stores a peer record an attacker sent;
//! honest members stay discoverable.

use std::collections::BTreeMap;

use dht::NamespaceValue;
use rendezvous_proto::seat::Seat;
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::{PeerRecord, Request};

use super::{check_common, check_discovery_complete, schedule_discoveries, Scenario};
use crate::actors::attacker::evil_addr;
use crate::msg::{Addr, Msg, Note, Outcome, RegKind};
use crate::world::{lock, SimConfig, World, T0};

const ATTACK: u32 = 1;
const CHECK: u32 = 2;
const CRASH: u32 = 3;
const DISCOVER: u32 = 4;
const CHECK_PERIOD_MS: u64 = 250;

/// The poison scenario.
#[derive(Default)]
pub struct Poison {
    /// Flat indices of the members that crashed, and whether a replica
    /// stopped listing each (then it must never come back).
    dead: BTreeMap<u32, bool>,
    records_sent: u64,
    peer_records_accepted: u64,
    poisoned_checks: u64,
}

impl Poison {
    /// One round of attacks on every quorum.
    fn attack(&mut self, world: &mut World) {
        let n = world.shared.n();
        let now = world.now;
        let attackers = world.params().adversaries.max(1);
        for q in 0..world.quorums.len() as u32 {
            let Some((key, ns, replicas)) = world.quorums[q as usize].registered() else {
                continue;
            };
            let dead: Vec<u32> = self.dead.keys().copied().filter(|f| f / n == q).collect();
            let live = (0..n)
                .map(|i| q * n + i)
                .find(|f| !self.dead.contains_key(f))
                .unwrap_or(q * n);
            for a in 0..attackers {
                let attacker = Addr::Attacker(a);
                let own_key = world.attacker_keys[a as usize].clone();
                let own = own_key.public().to_peer_id();
                let mut sends: Vec<Msg> = Vec::new();
                let mut puts: Vec<NamespaceValue> = Vec::new();
                for &flat in dead.iter().chain(std::iter::once(&live)) {
                    let victim = world.shared.member_peers[flat as usize];
                    let victim_key = lock(&world.members[flat as usize]).keypair().clone();
                    // 1. The attacker's own quorum seats the victim.
                    let fake = TestQuorum::deal(1, 1, &mut world.rng);
                    let mut fake_ns = fake.namespace_unsigned(0, None, now, now + 3_600_000);
                    fake_ns.members = Some(vec![victim]);
                    let share = fake.shares[0].secret.sign(&fake_ns.signing_bytes());
                    if let Ok(sig) = dkg::combine_signatures(1, 1, &[share]) {
                        fake_ns.signature = sig.to_bytes();
                    }
                    let seat = Seat::sign(fake.quorum_key(), 0, victim, &fake.shares[0].secret);
                    let unroutable = vec![evil_addr()];
                    let by_attacker = PeerRecord::sign(
                        seat.clone(),
                        unroutable.clone(),
                        now,
                        now + 600_000,
                        &own_key,
                    );
                    let mut claimed =
                        PeerRecord::sign(seat, unroutable.clone(), now, now + 600_000, &victim_key);
                    claimed.envelope.signature = by_attacker.envelope.signature.clone();
                    sends.push(Msg::request(
                        0,
                        Request::RegisterNamespace(fake_ns.clone()),
                        own,
                    ));
                    sends.push(Msg::request(
                        0,
                        Request::RegisterPeer(by_attacker.clone()),
                        own,
                    ));
                    sends.push(Msg::request(
                        0,
                        Request::RegisterPeers(vec![by_attacker.clone(), claimed.clone()]),
                        own,
                    ));
                    puts.push(NamespaceValue {
                        namespace: fake_ns,
                        peers: vec![by_attacker, claimed],
                    });
                    // 2. The victim's real seat (served to anyone) in the
                    //    attacker's envelope, and claiming the victim's key.
                    let index = flat % n + 1;
                    let real_seat = Seat::sign(
                        key,
                        ns.epoch,
                        victim,
                        &match lock(&world.members[flat as usize]).key() {
                            Some(k) => k.secret.clone(),
                            None => continue,
                        },
                    );
                    debug_assert_eq!(real_seat.index, index);
                    let wrapped = PeerRecord::sign(
                        real_seat.clone(),
                        unroutable.clone(),
                        now,
                        now + 600_000,
                        &own_key,
                    );
                    let mut forged = PeerRecord::sign(
                        real_seat,
                        unroutable,
                        now + 1,
                        now + 600_000,
                        &victim_key,
                    );
                    forged.envelope.signature = wrapped.envelope.signature.clone();
                    puts.push(NamespaceValue {
                        namespace: (*ns).clone(),
                        peers: vec![wrapped, forged],
                    });
                    // 3. A dead member's last record, replayed.
                    if let Some(Some(last)) = world.records.get(flat as usize) {
                        puts.push(NamespaceValue {
                            namespace: (*ns).clone(),
                            peers: vec![(**last).clone()],
                        });
                    }
                }
                for &r in &replicas {
                    for msg in &sends {
                        world.send(attacker, Addr::Rdv(r), msg.clone());
                    }
                    for value in &puts {
                        world.send(attacker, Addr::Rdv(r), Msg::replicate(value));
                        self.records_sent += value.peers.len() as u64;
                    }
                }
            }
        }
    }

    fn check(&mut self, world: &mut World) {
        let n = world.shared.n();
        let mut problems = Vec::new();
        for q in 0..world.quorums.len() as u32 {
            let replicas = world.quorums[q as usize].replicas.clone();
            for i in 1..=n {
                let flat = q * n + i - 1;
                let peer = world.shared.member_peers[flat as usize];
                let honest_replicas: Vec<u32> = replicas
                    .iter()
                    .copied()
                    .filter(|r| !world.malicious.contains(r) && world.rdv_alive(*r))
                    .collect();
                match self.dead.get(&flat).copied() {
                    None => {
                        self.poisoned_checks += 1;
                        for &r in &honest_replicas {
                            if lock(&world.rdvs[r as usize]).store().is_unreachable(&peer) {
                                problems.push((
                                    "no-live-member-reported-unreachable",
                                    format!("rdv {r} reports live member {flat} unreachable"),
                                ));
                            }
                        }
                    }
                    Some(evicted) => {
                        let serving = honest_replicas
                            .iter()
                            .filter(|&&r| world.served(r, q, i))
                            .count();
                        if serving == 0 {
                            self.dead.insert(flat, true);
                        } else if evicted {
                            problems.push((
                                "no-dead-member-listed-again",
                                format!(
                                    "dead member {flat} is listed again by {serving} replica(s)"
                                ),
                            ));
                        }
                    }
                }
            }
        }
        for (invariant, detail) in problems.into_iter().take(5) {
            world.violate(invariant, detail);
        }
        if world.now + CHECK_PERIOD_MS < T0 + world.shared.config.duration_ms {
            world.control_at(world.now - T0 + CHECK_PERIOD_MS, CHECK);
        }
    }
}

impl Scenario for Poison {
    fn configure(&self, config: &mut SimConfig) {
        config.duration_ms = 30_000;
    }

    fn setup(&mut self, world: &mut World) {
        world.start(0);
        world.control_at(7_000, CRASH);
        for s in 9..=24u64 {
            world.control_at(s * 1_000, ATTACK);
        }
        world.control_at(9_000, CHECK);
        world.control_at(26_000, DISCOVER);
    }

    fn control(&mut self, world: &mut World, step: u32) {
        match step {
            CRASH => {
                // The last two members of every quorum die for good.
                let n = world.shared.n();
                for q in 0..world.quorums.len() as u32 {
                    for i in [n - 1, n - 2] {
                        let flat = q * n + i;
                        world.crash_member(flat);
                        self.dead.insert(flat, false);
                    }
                }
            }
            ATTACK => self.attack(world),
            CHECK => self.check(world),
            DISCOVER => {
                schedule_discoveries(world, 26_000, 2_000, 800);
            }
            _ => {}
        }
    }

    fn note(&mut self, world: &mut World, _from: Addr, note: &Note) {
        match note {
            Note::Registration {
                from,
                kind: RegKind::Peer,
                outcome: Outcome::Accepted,
                ..
            } if world.is_adversary(*from) => self.peer_records_accepted += 1,
            Note::Merge { from, stored, .. } if world.is_adversary(*from) => {
                self.peer_records_accepted += u64::from(*stored);
            }
            _ => {}
        }
    }

    fn finish(&mut self, world: &mut World) {
        check_common(world);
        check_discovery_complete(world, "honest-members-discoverable");
        if self.peer_records_accepted > 0 {
            let detail = format!(
                "{} peer record(s) sent by attackers were stored",
                self.peer_records_accepted
            );
            world.violate("no-poisoned-record-stored", detail);
        }
        if self.records_sent == 0 || world.stats.adversarial.attempted == 0 {
            world.violate(
                "attacks-ran",
                "no poisoned record reached a rendezvous".to_owned(),
            );
        }
        if !self.dead.values().all(|evicted| *evicted) {
            let left = self.dead.values().filter(|e| !**e).count();
            world.violate(
                "dead-members-evicted",
                format!("{left} dead member(s) still listed at the end"),
            );
        }
    }

    fn metrics(&self) -> BTreeMap<String, f64> {
        BTreeMap::from([
            ("poisoned_records_sent".to_owned(), self.records_sent as f64),
            ("liveness_checks".to_owned(), self.poisoned_checks as f64),
        ])
    }
}
