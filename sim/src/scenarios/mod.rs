//! The scenarios. Each declares its default size, sets up the world,
//! steers it with control steps (attacks, crashes, partitions, checks),
//! and checks its invariants during and after the run.

use std::collections::BTreeMap;

use crate::msg::{Addr, Note};
use crate::world::{Params, SimConfig, World};

mod bad_dealer;
mod busy_rendezvous;
mod churn;
mod epoch;
mod flood;
mod forged_namespace;
mod honest;
mod lying_rendezvous;
mod malicious_rendezvous;
mod outsider;
mod partition;
mod poison;
mod put_flood;
mod reflection;
mod replay;

/// A scenario's hooks.
pub trait Scenario {
    /// Adjusts the configuration (durations, TTLs, quotas) before the world is built.
    fn configure(&self, _config: &mut SimConfig) {}
    /// Prepares the world and schedules control steps.
    fn setup(&mut self, world: &mut World);
    /// Runs control step `step` (sequentially, between actor events).
    fn control(&mut self, world: &mut World, step: u32);
    /// Sees every note actors report.
    fn note(&mut self, _world: &mut World, _from: Addr, _note: &Note) {}
    /// Final invariants.
    fn finish(&mut self, world: &mut World);
    /// Scenario-specific figures for the report (name -> value).
    fn metrics(&self) -> BTreeMap<String, f64> {
        BTreeMap::new()
    }
}

/// A scenario's default size.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    /// Quorums.
    pub quorums: u32,
    /// Members per quorum.
    pub members: u32,
    /// Threshold.
    pub threshold: u32,
    /// Rendezvous nodes.
    pub rendezvous: u32,
    /// Adversaries (per-scenario meaning).
    pub adversaries: u32,
}

/// Every scenario, in the order `--scenario all` runs them.
pub const NAMES: [&str; 15] = [
    "honest",
    "outsider",
    "forged-namespace",
    "replay",
    "bad-dealer",
    "malicious-rendezvous",
    "churn",
    "partition",
    "flood",
    "busy-rendezvous",
    "lying-rendezvous",
    "poison",
    "reflection",
    "put-flood",
    "epoch",
];

/// What `--adversaries` means in each scenario.
pub fn adversaries_meaning(name: &str) -> &'static str {
    match name {
        "outsider" | "forged-namespace" | "replay" | "flood" | "poison" | "reflection"
        | "put-flood" => "attackers",
        "bad-dealer" => "faulty dealers per quorum",
        "malicious-rendezvous" => "malicious rendezvous nodes",
        "busy-rendezvous" => "busy rendezvous nodes",
        "lying-rendezvous" => "lying rendezvous nodes",
        "churn" => "members that crash and restart",
        "epoch" => "quorums with a faulty old dealer in the resharing",
        _ => "unused",
    }
}

/// The default size of a scenario (`None` for an unknown name).
pub fn default_size(name: &str) -> Option<Size> {
    let s = |quorums, members, threshold, rendezvous, adversaries| Size {
        quorums,
        members,
        threshold,
        rendezvous,
        adversaries,
    };
    Some(match name {
        "honest" => s(32, 16, 11, 32, 0),
        "outsider" => s(8, 8, 5, 20, 4),
        "forged-namespace" => s(10, 8, 5, 24, 3),
        "replay" => s(10, 8, 5, 24, 3),
        "bad-dealer" => s(10, 10, 6, 24, 3),
        "malicious-rendezvous" => s(20, 8, 5, 30, 6),
        "churn" => s(12, 8, 5, 24, 10),
        "partition" => s(16, 8, 5, 24, 0),
        "flood" => s(10, 8, 5, 16, 4),
        "busy-rendezvous" => s(12, 8, 5, 20, 20),
        "lying-rendezvous" => s(20, 8, 5, 30, 8),
        "poison" => s(10, 8, 5, 20, 3),
        "reflection" => s(8, 8, 5, 12, 2),
        "put-flood" => s(8, 8, 5, 8, 2),
        "epoch" => s(8, 8, 5, 20, 4),
        _ => return None,
    })
}

/// The scenario object for a name.
pub fn make(name: &str) -> Option<Box<dyn Scenario>> {
    Some(match name {
        "honest" => Box::new(honest::Honest::default()),
        "outsider" => Box::new(outsider::Outsider::default()),
        "forged-namespace" => Box::new(forged_namespace::ForgedNamespace::default()),
        "replay" => Box::new(replay::Replay::default()),
        "bad-dealer" => Box::new(bad_dealer::BadDealer::default()),
        "malicious-rendezvous" => Box::new(malicious_rendezvous::MaliciousRendezvous::default()),
        "churn" => Box::new(churn::Churn::default()),
        "partition" => Box::new(partition::Partition::default()),
        "flood" => Box::new(flood::Flood::default()),
        "busy-rendezvous" => Box::new(busy_rendezvous::BusyRendezvous::default()),
        "lying-rendezvous" => Box::new(lying_rendezvous::LyingRendezvous::default()),
        "poison" => Box::new(poison::Poison::default()),
        "reflection" => Box::new(reflection::Reflection::default()),
        "put-flood" => Box::new(put_flood::PutFlood::default()),
        "epoch" => Box::new(epoch::Epoch::default()),
        _ => return None,
    })
}

/// Parameters of a scenario at its default size.
pub fn default_params(name: &str, seed: u64) -> Option<Params> {
    let size = default_size(name)?;
    Some(Params {
        scenario: name.to_owned(),
        seed,
        quorums: size.quorums,
        members: size.members,
        threshold: size.threshold,
        rendezvous: size.rendezvous,
        adversaries: size.adversaries,
        loss: 0.0,
        replication: 3,
        broken_validator: false,
        broken_member: false,
    })
}

// ----- checks shared by scenarios -----------------------------------------------

/// Every honest member of every quorum finished the DKG, and all honest
/// members of a quorum agree on QUAL, the key set and the transcript.
pub fn check_dkg(world: &mut World) {
    let n = world.shared.n();
    let mut problems = Vec::new();
    for (q, truth) in world.quorums.iter().enumerate() {
        let mut first = None;
        for i in 1..=n {
            let flat = q as u32 * n + i - 1;
            if world.is_adversary(Addr::Member(flat)) {
                continue;
            }
            match truth.dkg.get(&i) {
                Some(Ok(summary)) => match &first {
                    None => first = Some(summary.clone()),
                    Some(f) if f != summary => {
                        problems.push(format!("quorum {q}: member {i} disagrees on QUAL/key set"))
                    }
                    Some(_) => {}
                },
                Some(Err(e)) => problems.push(format!("quorum {q}: member {i} DKG failed: {e}")),
                None => problems.push(format!("quorum {q}: member {i} never finished its DKG")),
            }
        }
    }
    for p in problems.into_iter().take(10) {
        world.violate("dkg-agreement", p);
    }
}

/// Every quorum signed and registered its namespace.
pub fn check_namespaces(world: &mut World) {
    let missing: Vec<usize> = world
        .quorums
        .iter()
        .enumerate()
        .filter(|(_, q)| q.namespace.is_none())
        .map(|(i, _)| i)
        .collect();
    if !missing.is_empty() {
        world.violate(
            "namespace-registered",
            format!(
                "{} quorum(s) never signed a namespace record: {:?}",
                missing.len(),
                missing
            ),
        );
    }
}

/// No adversarial registration was ever accepted.
pub fn check_no_adversarial_acceptance(world: &mut World) {
    let accepted = world.stats.adversarial.accepted;
    if accepted > 0 {
        world.violate(
            "zero-adversarial-accepted",
            format!("{accepted} adversarial registration(s) accepted by a rendezvous"),
        );
    }
}

/// The invariants every scenario states: DKG agreement, every quorum's
/// namespace registered, and honest stores holding only genuine records.
pub fn check_common(world: &mut World) {
    check_dkg(world);
    check_namespaces(world);
    check_stores(world);
}

/// The end-of-run invariants every attack scenario shares: the DKG and the
/// namespaces are sound, no attack was accepted, stores hold only genuine
/// records, honest members stay discoverable, and the attacks did run
/// (`what` names them in the violation).
pub fn check_attack_scenario(world: &mut World, what: &str) {
    check_common(world);
    check_no_adversarial_acceptance(world);
    check_discovery_complete(world, "honest-members-discoverable");
    if world.stats.adversarial.attempted == 0 {
        world.violate("attacks-ran", format!("no {what} reached a rendezvous"));
    }
}

/// What honest replicas store is genuine: each quorum's namespace has one
/// of the quorum's own key sets (of any epoch it signed: a node that
/// cached an earlier epoch's record keeps it until it expires), and every
/// peer record under it carries the real member's PeerId and address.
pub fn check_stores(world: &mut World) {
    let n = world.shared.n();
    let now = world.now;
    let mut problems = Vec::new();
    for (q, truth) in world.quorums.iter().enumerate() {
        let (Some(key), Some(ns)) = (truth.key, truth.namespace.as_ref()) else {
            continue;
        };
        for (r, rdv) in world.rdvs.iter().enumerate() {
            if world.malicious.contains(&(r as u32)) {
                continue;
            }
            let rdv = crate::world::lock(rdv);
            if let Some(stored) = rdv.store().namespace(&key) {
                if stored.record().commitments != ns.commitments
                    && !truth.key_sets.contains(&stored.record().commitments)
                {
                    problems.push(format!(
                        "rdv {r}: namespace of quorum {q} has a foreign key set"
                    ));
                }
            }
            if let Some(value) = rdv.store().namespace_value(&key, now) {
                for p in &value.peers {
                    let genuine = p.index() >= 1 && p.index() <= n && {
                        let flat = (q as u32 * n + p.index() - 1) as usize;
                        p.peer_id() == world.shared.member_peers[flat]
                            && p.addrs() == [world.shared.member_addrs[flat].clone()]
                    };
                    if !genuine {
                        problems.push(format!(
                            "rdv {r}: quorum {q} index {} holds a record not signed by the member",
                            p.index()
                        ));
                    }
                }
            }
        }
    }
    for p in problems.into_iter().take(10) {
        world.violate("stores-hold-only-genuine-records", p);
    }
}

/// Every expected member was found by every verified discovery. With
/// message loss a lookup can lose answers (and a member's latest
/// registration may still be waiting for its resend), so the bound is
/// then a completeness of at least `1 - loss`.
pub fn check_discovery_complete(world: &mut World, invariant: &str) {
    let s = &world.stats;
    let loss = world.params().loss;
    let bound = (s.expected as f64 * (1.0 - loss)).ceil() as u64;
    if s.discoveries == 0 {
        world.violate(invariant, "no discovery completed".to_owned());
    } else if s.found < bound.min(s.expected) {
        let detail = format!(
            "verified discoveries found {} of {} expected members ({} discoveries)",
            s.found, s.expected, s.discoveries
        );
        world.violate(invariant, detail);
    }
}

/// Every honest, alive, registered member is served by every honest,
/// reachable replica of its namespace (the structural side of "discoverable
/// from every rendezvous": every lookup ends at these replicas).
pub fn check_served_everywhere(world: &mut World, invariant: &str) {
    let n = world.shared.n();
    let mut missing = 0u64;
    let mut example = None;
    for q in 0..world.quorums.len() as u32 {
        let replicas = world.quorums[q as usize].replicas.clone();
        for i in world.expected_members(q) {
            let flat = q * n + i - 1;
            for &r in &replicas {
                if world.malicious.contains(&r) || !world.rdv_alive(r) {
                    continue;
                }
                if !world.net.reachable(Addr::Rdv(r), Addr::Member(flat)) {
                    continue;
                }
                if !world.served(r, q, i) {
                    missing += 1;
                    example.get_or_insert((q, i, r));
                }
            }
        }
    }
    if let Some((q, i, r)) = example {
        world.violate(
            invariant,
            format!("{missing} (member, replica) pair(s) not served, e.g. quorum {q} member {i} at rdv {r}"),
        );
    }
}

/// Honest registrations refused (duplicates of what a replica already
/// holds count as unchanged, not refused).
pub fn honest_refusals(world: &World) -> u64 {
    world.stats.honest.rejected_total()
}

/// `count` distinct rendezvous nodes (at most all of them), drawn from the
/// world RNG: the nodes a scenario makes busy, malicious or lying.
pub fn pick_rendezvous(world: &mut World, count: u32) -> Vec<u32> {
    use rand_core::RngCore;
    let nodes = world.params().rendezvous;
    let count = count.min(nodes);
    let mut chosen = Vec::new();
    while (chosen.len() as u32) < count {
        let r = (world.rng.next_u64() % u64::from(nodes)) as u32;
        if !chosen.contains(&r) {
            chosen.push(r);
        }
    }
    chosen
}

/// Schedules verified discoveries: from every (entry node, quorum) pair
/// when that is at most `full_limit` discoveries, else one per quorum from
/// a random entry. They are spread over `spread_ms` from `at_ms`.
pub fn schedule_discoveries(world: &mut World, at_ms: u64, spread_ms: u64, full_limit: u64) -> u64 {
    let quorums = world.quorums.len() as u32;
    let nodes = world.params().rendezvous;
    let clients = world.shared.config.clients.max(1);
    let mut plan = Vec::new();
    if u64::from(quorums) * u64::from(nodes) <= full_limit {
        for q in 0..quorums {
            for r in 0..nodes {
                plan.push((q, Some(r)));
            }
        }
    } else {
        for q in 0..quorums {
            plan.push((q, None));
        }
    }
    let total = plan.len() as u64;
    let mut scheduled = 0;
    for (k, (q, entry)) in plan.into_iter().enumerate() {
        let offset = if total > 1 {
            spread_ms * k as u64 / total
        } else {
            0
        };
        let client = k as u32 % clients;
        if world.discover_at(crate::world::T0 + at_ms + offset, client, q, entry) {
            scheduled += 1;
        }
    }
    scheduled
}
