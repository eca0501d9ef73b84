//! The world: the event queue, the virtual clock, the trace digest, the
//! actors, and the loop that drives them.
//!
//! Events are keyed by `(virtual time ms, sequence number)`; the sequence
//! number is assigned when an event is scheduled, so ties are broken by
//! scheduling order and nothing depends on hash-map order or the wall
//! clock. Every event is folded into a SHA-256 trace digest as it is
//! processed.
//!
//! Parallelism without nondeterminism: all events of one instant (up to
//! the next scenario control event) are taken together, grouped by target
//! actor, and the groups run on rayon's pool. A handler touches only its
//! own actor and read-only [`Shared`] data, and returns its outputs
//! (sends, timers, notes) instead of applying them. The world then applies
//! every output sequentially, in the order of the events that produced
//! them: network draws, sequence numbers and statistics come out exactly
//! as in a sequential run, whatever the thread count.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use libp2p_identity::{Keypair, PeerId};
use multiaddr::Multiaddr;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use rayon::prelude::*;
use rendezvous_proto::{NamespaceRecord, PeerRecord, QuorumKey};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::actors::client::Client;
use crate::actors::member::{Fault, Member};
use crate::actors::rendezvous::{Malice, Rendezvous};
use crate::msg::{Addr, DkgSummary, EventKind, Note, Out, Outcome, Timer};
use crate::net::{Drop, Net, NetConfig};
use crate::placement::Placement;
use crate::scenarios::Scenario;

/// Virtual time zero, in ms since the Unix epoch (records carry absolute
/// times, so the clock starts at a plausible date).
pub const T0: u64 = 1_700_000_000_000;

/// Control tag the world handles itself: take a plot sample.
pub const SAMPLE_TAG: u32 = u32::MAX;

/// The command-line parameters of a run (what the replay command repeats).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Params {
    /// Scenario name.
    pub scenario: String,
    /// Seed of the world RNG.
    pub seed: u64,
    /// Quorums.
    pub quorums: u32,
    /// Members per quorum.
    pub members: u32,
    /// Threshold of every quorum.
    pub threshold: u32,
    /// Rendezvous nodes.
    pub rendezvous: u32,
    /// Adversaries (meaning depends on the scenario).
    pub adversaries: u32,
    /// Message loss probability.
    pub loss: f64,
    /// Replication factor k.
    pub replication: u32,
    /// Test-only: rendezvous nodes accept what their store refuses.
    pub broken_validator: bool,
    /// Test-only: members behave as `rdht quorum` did before the member
    /// core: a refusal they do not special-case ends them.
    pub broken_member: bool,
}

impl Params {
    /// The exact command that replays this run.
    pub fn replay_command(&self) -> String {
        let mut cmd = format!(
            "cargo run -p sim --release -- --scenario {} --seed {} --quorums {} --members {} \
             --threshold {} --rendezvous {} --adversaries {} --loss {} --replication {}",
            self.scenario,
            self.seed,
            self.quorums,
            self.members,
            self.threshold,
            self.rendezvous,
            self.adversaries,
            self.loss,
            self.replication
        );
        if self.broken_validator {
            cmd.push_str(" --broken-validator");
        }
        if self.broken_member {
            cmd.push_str(" --broken-member");
        }
        cmd
    }
}

/// Everything that shapes a run besides the parameters.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The parameters.
    pub params: Params,
    /// Network model.
    pub net: NetConfig,
    /// DKG phase timeout (ms).
    pub dkg_phase_ms: u64,
    /// Peer record TTL (ms); members refresh at half of it.
    pub peer_ttl_ms: u64,
    /// Namespace record TTL (ms).
    pub namespace_ttl_ms: u64,
    /// Rendezvous store configuration (quotas, liveness).
    pub store: dht::StoreConfig,
    /// Mean anti-entropy interval (ms), jittered by +-20%.
    pub anti_entropy_ms: u64,
    /// How long a rendezvous collects peer registrations before verifying
    /// them as one batch (ms).
    pub batch_window_ms: u64,
    /// How long a client waits for an entry node's answer (ms). A node's
    /// own lookup gives up after two thirds of it, so that a client gets
    /// an answer (possibly "unknown") rather than a timeout.
    pub discover_timeout_ms: u64,
    /// How long a member waits for the answer to a request before it
    /// counts as timed out (ms), as libp2p's request-response does.
    pub request_timeout_ms: u64,
    /// How long a member waits for the namespace's coordinator before the
    /// next in the coordinator order takes over (ms).
    pub takeover_ms: u64,
    /// Clients.
    pub clients: u32,
    /// Virtual duration of the run (ms after T0).
    pub duration_ms: u64,
    /// Plot sampling period (ms); 0 disables sampling.
    pub sample_ms: u64,
    /// Resolution of virtual time (ms): every event happens on a multiple
    /// of it. Coarser ticks put more independent handlers in one instant,
    /// which is what the parallel instant loop feeds on.
    pub tick_ms: u64,
}

impl SimConfig {
    /// Defaults for the given parameters.
    pub fn new(params: Params) -> Self {
        let mut store = dht::StoreConfig::default();
        store.liveness.ping_interval_ms = 2_000;
        store.liveness.max_misses = 3;
        let net = NetConfig {
            loss: params.loss,
            ..NetConfig::default()
        };
        Self {
            params,
            net,
            dkg_phase_ms: 3_000,
            peer_ttl_ms: 600_000,
            namespace_ttl_ms: 24 * 3_600_000,
            store,
            anti_entropy_ms: 5_000,
            batch_window_ms: 50,
            discover_timeout_ms: 1_500,
            request_timeout_ms: 2_000,
            takeover_ms: 2_000,
            clients: 4,
            duration_ms: 20_000,
            sample_ms: 0,
            tick_ms: 10,
        }
    }

    /// The liveness bound: the longest a dead member may stay listed at a
    /// replica that pings it (the store counts an unanswered ping as a
    /// miss when the next is due, intervals are jittered by +10%), plus
    /// the slow tail of one ping's latency.
    pub fn liveness_bound_ms(&self) -> u64 {
        let l = &self.store.liveness;
        (u64::from(l.max_misses) + 1) * l.ping_interval_ms * 11 / 10 + 5 * self.net.latency_max_ms
    }
}

/// Read-only data every handler may consult.
#[derive(Debug)]
pub struct Shared {
    /// The configuration.
    pub config: SimConfig,
    /// Rendezvous node ids.
    pub placement: Placement,
    /// Every member's PeerId, by flat index.
    pub member_peers: Vec<PeerId>,
    /// Every member's listen address, by flat index.
    pub member_addrs: Vec<Multiaddr>,
    /// Every attacker's PeerId.
    pub attacker_peers: Vec<PeerId>,
    /// Every rendezvous node's PeerId (what a node names the sender of a
    /// value by, for its budget and penalties).
    pub rdv_peers: Vec<PeerId>,
    /// Who holds which PeerId (where a ping goes).
    pub peer_addr: BTreeMap<PeerId, Addr>,
    /// Each quorum's DKG session id.
    pub sessions: Vec<dkg::SessionId>,
}

impl Shared {
    /// Members per quorum.
    pub fn n(&self) -> u32 {
        self.config.params.members
    }

    /// The address of member `index` (1-based) of `quorum`.
    pub fn member(&self, quorum: u32, index: u32) -> Addr {
        Addr::Member(quorum * self.n() + index - 1)
    }

    /// The replicas of a namespace, closest first.
    pub fn replicas(&self, quorum_key: &QuorumKey) -> Vec<u32> {
        self.placement.closest(
            &dht::namespace_key(quorum_key),
            self.config.params.replication as usize,
        )
    }

    /// The PeerId a sender authenticates as on a connection.
    pub fn peer_of(&self, addr: Addr) -> Option<PeerId> {
        match addr {
            Addr::Member(i) => self.member_peers.get(i as usize).copied(),
            Addr::Attacker(i) => self.attacker_peers.get(i as usize).copied(),
            Addr::Rdv(i) => self.rdv_peers.get(i as usize).copied(),
            _ => None,
        }
    }
}

/// Registrations counted by outcome.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    /// Registrations decided.
    pub attempted: u64,
    /// Stored.
    pub accepted: u64,
    /// Already held (replication only).
    pub unchanged: u64,
    /// Refused, by status code name.
    pub rejected: BTreeMap<String, u64>,
}

impl Tally {
    fn add(&mut self, outcome: Outcome) {
        self.attempted += 1;
        match outcome {
            Outcome::Accepted => self.accepted += 1,
            Outcome::Unchanged => self.unchanged += 1,
            Outcome::Rejected(code) => {
                *self.rejected.entry(code.name().to_owned()).or_default() += 1
            }
        }
    }

    /// Refusals in total.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

/// Counters of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Registrations sent by honest members.
    pub honest: Tally,
    /// Registrations (and replicated values) sent by adversaries.
    pub adversarial: Tally,
    /// Replicated records merged between honest replicas.
    pub replication: Tally,
    /// Messages sent, by kind.
    pub sent: BTreeMap<String, u64>,
    /// Messages sent in total.
    pub messages: u64,
    /// Messages lost.
    pub lost: u64,
    /// Messages dropped by a partition.
    pub partitioned: u64,
    /// Events processed.
    pub events: u64,
    /// Members whose DKG succeeded / failed.
    pub dkg_ok: u64,
    /// Members whose DKG failed.
    pub dkg_failed: u64,
    /// Verified discoveries.
    pub discoveries: u64,
    /// Expected members found, summed over discoveries.
    pub found: u64,
    /// Expected members, summed over discoveries.
    pub expected: u64,
    /// Found members served with an older seq than the member's latest.
    pub stale: u64,
    /// Records served to clients that failed verification.
    pub forged_rejected: u64,
    /// Namespace records served to clients that failed verification.
    pub namespace_rejected: u64,
    /// Verified records that were not genuine (must stay 0).
    pub forged_accepted: u64,
}

/// A broken invariant.
#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    /// The invariant.
    pub invariant: String,
    /// What broke.
    pub detail: String,
    /// Virtual time, seconds after start.
    pub at_s: f64,
}

/// One plot sample.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Virtual seconds after start.
    pub t_s: f64,
    /// Honest members registered at one replica or more.
    pub registered: u64,
    /// Honest members served by a replica that pings them successfully.
    pub discoverable: u64,
}

/// What the world knows about a quorum (ground truth, never shown to actors).
#[derive(Debug, Clone, Default)]
pub struct QuorumTruth {
    /// The quorum key, once a namespace record is signed.
    pub key: Option<QuorumKey>,
    /// Its replicas.
    pub replicas: Vec<u32>,
    /// The latest namespace record.
    pub namespace: Option<Arc<NamespaceRecord>>,
    /// The key sets (commitments) of every namespace record the quorum
    /// signed, all epochs: a replica may still hold an earlier epoch's
    /// genuine record.
    pub key_sets: BTreeSet<Vec<[u8; 48]>>,
    /// Every member's DKG result.
    pub dkg: BTreeMap<u32, Result<DkgSummary, String>>,
}

impl QuorumTruth {
    /// Its key, latest namespace record and replicas, once it has a
    /// namespace (what an attacker aiming at it needs).
    pub fn registered(&self) -> Option<(QuorumKey, Arc<NamespaceRecord>, Vec<u32>)> {
        Some((self.key?, self.namespace.clone()?, self.replicas.clone()))
    }
}

/// The simulated world.
pub struct World {
    /// Read-only data for handlers.
    pub shared: Shared,
    /// Virtual now (ms since the Unix epoch).
    pub now: u64,
    queue: BTreeMap<(u64, u64), (Addr, EventKind)>,
    seq: u64,
    hasher: Sha256,
    /// The world RNG: network draws and scenario choices.
    pub rng: ChaCha20Rng,
    /// The network.
    pub net: Net,
    /// Rendezvous nodes.
    pub rdvs: Vec<Mutex<Rendezvous>>,
    /// Quorum members, by flat index.
    pub members: Vec<Mutex<Member>>,
    /// Clients.
    pub clients: Vec<Mutex<Client>>,
    /// Attackers' identities (attackers are passive sinks for answers).
    pub attacker_keys: Vec<Keypair>,
    /// Ground truth per quorum.
    pub quorums: Vec<QuorumTruth>,
    /// Every member's latest signed record.
    pub records: Vec<Option<Arc<PeerRecord>>>,
    /// Malicious rendezvous nodes.
    pub malicious: BTreeSet<u32>,
    /// Counters.
    pub stats: Stats,
    /// Broken invariants.
    pub violations: Vec<Violation>,
    /// Plot samples.
    pub samples: Vec<Sample>,
    end: u64,
}

/// Locks an actor. Handlers never panic while holding a lock on purpose;
/// if one did, the run is already failing, so the poison is ignored.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A keypair from 32 seed bytes.
pub fn keypair(rng: &mut ChaCha20Rng) -> Keypair {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    // An Ed25519 secret is any 32 bytes, so this cannot fail.
    Keypair::ed25519_from_bytes(seed).unwrap_or_else(|_| unreachable!("any 32 bytes are a key"))
}

/// A child RNG drawn from `rng`.
pub fn fork(rng: &mut ChaCha20Rng) -> ChaCha20Rng {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    ChaCha20Rng::from_seed(seed)
}

impl World {
    /// Builds the world: rendezvous nodes, quorum members (identities,
    /// DKG sessions), clients and attackers' identities, all from the seed.
    pub fn new(config: SimConfig) -> Self {
        let p = config.params.clone();
        let mut rng = ChaCha20Rng::seed_from_u64(p.seed);
        let n = p.members;
        let total = p.quorums * n;
        let member_keys: Vec<Keypair> = (0..total).map(|_| keypair(&mut rng)).collect();
        let member_peers: Vec<PeerId> = member_keys
            .iter()
            .map(|k| k.public().to_peer_id())
            .collect();
        let member_addrs: Vec<Multiaddr> = (0..total)
            .map(|i| {
                format!(
                    "/ip4/10.{}.{}.{}/tcp/4001",
                    (i >> 16) & 0xff,
                    (i >> 8) & 0xff,
                    i & 0xff
                )
                .parse()
                .unwrap_or_else(|_| Multiaddr::empty())
            })
            .collect();
        let attacker_keys: Vec<Keypair> = (0..p.adversaries.max(1))
            .map(|_| keypair(&mut rng))
            .collect();
        let attacker_peers: Vec<PeerId> = attacker_keys
            .iter()
            .map(|k| k.public().to_peer_id())
            .collect();
        // Derived from the seed without drawing from `rng`, so adding them
        // changed no other identity of a run.
        let rdv_peers: Vec<PeerId> = (0..p.rendezvous)
            .map(|i| {
                let mut bytes = [0x52u8; 32];
                bytes[..4].copy_from_slice(&i.to_le_bytes());
                bytes[4..12].copy_from_slice(&p.seed.to_le_bytes());
                Keypair::ed25519_from_bytes(bytes)
                    .map(|k| k.public().to_peer_id())
                    .unwrap_or_else(|_| PeerId::random())
            })
            .collect();
        let mut peer_addr = BTreeMap::new();
        for (i, peer) in rdv_peers.iter().enumerate() {
            peer_addr.insert(*peer, Addr::Rdv(i as u32));
        }
        for (i, peer) in member_peers.iter().enumerate() {
            peer_addr.insert(*peer, Addr::Member(i as u32));
        }
        for (i, peer) in attacker_peers.iter().enumerate() {
            peer_addr.insert(*peer, Addr::Attacker(i as u32));
        }
        let mut nonce_rng = fork(&mut rng);
        let sessions = (0..p.quorums)
            .map(|q| {
                let ids: Vec<Vec<u8>> = (0..n)
                    .map(|i| member_peers[(q * n + i) as usize].to_bytes())
                    .collect();
                let mut nonce = [0u8; 16];
                nonce_rng.fill_bytes(&mut nonce);
                dkg::SessionId::new(&ids, p.threshold, &nonce)
            })
            .collect();
        let rdvs = (0..p.rendezvous)
            .map(|i| {
                let mut seed = [0u8; 32];
                rng.fill_bytes(&mut seed);
                Mutex::new(Rendezvous::new(
                    i,
                    config.store.clone(),
                    config.batch_window_ms,
                    config.discover_timeout_ms * 2 / 3,
                    seed,
                    p.broken_validator,
                ))
            })
            .collect();
        let members = member_keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| {
                let i = i as u32;
                Mutex::new(Member::new(i / n, i % n + 1, i, key, fork(&mut rng)))
            })
            .collect();
        let clients = (0..config.clients)
            .map(|i| {
                let peer = keypair(&mut rng).public().to_peer_id();
                Mutex::new(Client::new(i, peer, fork(&mut rng)))
            })
            .collect();
        let net = Net::new(config.net);
        let end = T0 + config.duration_ms;
        let shared = Shared {
            placement: Placement::new(p.seed, p.rendezvous),
            config,
            member_peers,
            member_addrs,
            attacker_peers,
            rdv_peers,
            peer_addr,
            sessions,
        };
        Self {
            shared,
            now: T0,
            queue: BTreeMap::new(),
            seq: 0,
            hasher: Sha256::new(),
            rng,
            net,
            rdvs,
            members,
            clients,
            attacker_keys,
            quorums: vec![QuorumTruth::default(); p.quorums as usize],
            records: vec![None; total as usize],
            malicious: BTreeSet::new(),
            stats: Stats::default(),
            violations: Vec::new(),
            samples: Vec::new(),
            end,
        }
    }

    /// The parameters.
    pub fn params(&self) -> &Params {
        &self.shared.config.params
    }

    /// Virtual seconds since start.
    pub fn elapsed_s(&self) -> f64 {
        (self.now - T0) as f64 / 1000.0
    }

    /// Schedules an event, at the first tick at or after `at` (and not
    /// before now).
    pub fn schedule(&mut self, at: u64, to: Addr, kind: EventKind) {
        let tick = self.shared.config.tick_ms.max(1);
        let at = at.max(self.now);
        let at = T0 + (at - T0).div_ceil(tick) * tick;
        self.seq += 1;
        self.queue.insert((at, self.seq), (to, kind));
    }

    /// Schedules a scenario control step at `ms` after start.
    pub fn control_at(&mut self, ms: u64, step: u32) {
        self.schedule(T0 + ms, Addr::World, EventKind::Timer(Timer::Control(step)));
    }

    /// Starts every quorum's DKG at `ms` after start, and every replica's
    /// anti-entropy (jittered) and the plot sampler.
    pub fn start(&mut self, dkg_at_ms: u64) {
        for i in 0..self.members.len() as u32 {
            self.schedule(
                T0 + dkg_at_ms,
                Addr::Member(i),
                EventKind::Timer(Timer::DkgStart),
            );
        }
        let ae = self.shared.config.anti_entropy_ms;
        for i in 0..self.rdvs.len() as u32 {
            let at = T0 + crate::net::between(&mut self.rng, ae / 2, ae * 3 / 2);
            self.schedule(at, Addr::Rdv(i), EventKind::Timer(Timer::AntiEntropy));
        }
        if self.shared.config.sample_ms > 0 {
            self.control_at(0, SAMPLE_TAG);
        }
    }

    /// Records a broken invariant (at most 100 are kept).
    pub fn violate(&mut self, invariant: &str, detail: String) {
        if self.violations.len() < 100 {
            self.violations.push(Violation {
                invariant: invariant.to_owned(),
                detail,
                at_s: self.elapsed_s(),
            });
        }
    }

    /// The trace digest so far.
    pub fn digest(&self) -> [u8; 32] {
        self.hasher.clone().finalize().into()
    }

    /// Runs until the queue is empty or the duration is over.
    pub fn run(&mut self, scenario: &mut dyn Scenario) {
        while let Some((&(t, _), _)) = self.queue.first_key_value() {
            if t > self.end {
                break;
            }
            self.now = t;
            let mut batch = Vec::new();
            while let Some(entry) = self.queue.first_entry() {
                if entry.key().0 != t {
                    break;
                }
                let ((_, seq), (to, kind)) = entry.remove_entry();
                batch.push((seq, to, kind));
            }
            // Control events run alone and in order; the actor events
            // between them run as parallel segments.
            let mut segment = Vec::new();
            for (seq, to, kind) in batch {
                if to == Addr::World {
                    if !segment.is_empty() {
                        self.run_segment(std::mem::take(&mut segment), scenario);
                    }
                    kind.trace(t, seq, to, &mut self.hasher);
                    self.stats.events += 1;
                    if let EventKind::Timer(Timer::Control(step)) = kind {
                        if step == SAMPLE_TAG {
                            self.sample();
                        } else {
                            scenario.control(self, step);
                        }
                    }
                } else {
                    segment.push((seq, to, kind));
                }
            }
            if !segment.is_empty() {
                self.run_segment(segment, scenario);
            }
        }
        self.now = self.now.max(self.end);
    }

    fn run_segment(&mut self, segment: Vec<(u64, Addr, EventKind)>, scenario: &mut dyn Scenario) {
        let now = self.now;
        for (seq, to, kind) in &segment {
            kind.trace(now, *seq, *to, &mut self.hasher);
        }
        self.stats.events += segment.len() as u64;
        let count = segment.len();
        let sources: Vec<Addr> = segment.iter().map(|e| e.1).collect();
        let mut groups: BTreeMap<Addr, Vec<(usize, EventKind)>> = BTreeMap::new();
        for (position, (_, to, kind)) in segment.into_iter().enumerate() {
            groups.entry(to).or_default().push((position, kind));
        }
        let groups: Vec<(Addr, Vec<(usize, EventKind)>)> = groups.into_iter().collect();
        let shared = &self.shared;
        let rdvs = &self.rdvs;
        let members = &self.members;
        let clients = &self.clients;
        let run_group = |(addr, events): (Addr, Vec<(usize, EventKind)>)| {
            let mut outputs = Vec::with_capacity(events.len());
            for (position, kind) in events {
                let mut ctx = crate::msg::Ctx::new(now, addr, shared);
                match addr {
                    Addr::Rdv(i) => {
                        if let Some(r) = rdvs.get(i as usize) {
                            lock(r).handle(&mut ctx, kind);
                        }
                    }
                    Addr::Member(i) => {
                        if let Some(m) = members.get(i as usize) {
                            lock(m).handle(&mut ctx, kind);
                        }
                    }
                    Addr::Client(i) => {
                        if let Some(c) = clients.get(i as usize) {
                            lock(c).handle(&mut ctx, kind);
                        }
                    }
                    // Attackers only receive answers, which the
                    // rendezvous side already counted.
                    Addr::Attacker(_) | Addr::World => {}
                }
                outputs.push((position, ctx.out));
            }
            outputs
        };
        // One task per actor: rayon must be free to split down to single
        // groups. Heavy handlers cluster by address (the rendezvous nodes
        // that flush a batch, the few clients that verify answers, one
        // quorum's members), and with rayon's default adaptive splitting
        // a whole cluster can land in one sequential chunk that the other
        // threads cannot steal from: those instants then ran serially.
        let results: Vec<Vec<(usize, Vec<Out>)>> = if groups.len() > 1 {
            groups
                .into_par_iter()
                .with_max_len(1)
                .map(run_group)
                .collect()
        } else {
            groups.into_iter().map(run_group).collect()
        };
        let mut by_position: Vec<Vec<Out>> = (0..count).map(|_| Vec::new()).collect();
        for group in results {
            for (position, outs) in group {
                if let Some(slot) = by_position.get_mut(position) {
                    *slot = outs;
                }
            }
        }
        for (position, outs) in by_position.into_iter().enumerate() {
            let from = sources[position];
            for out in outs {
                self.apply(from, out, scenario);
            }
        }
    }

    /// Sends a message from outside any handler (scenario code, attackers).
    pub fn send(&mut self, from: Addr, to: Addr, msg: crate::msg::Msg) {
        self.apply_send(from, to, msg);
    }

    fn apply_send(&mut self, from: Addr, to: Addr, msg: crate::msg::Msg) {
        self.stats.messages += 1;
        *self.stats.sent.entry(msg.name().to_owned()).or_default() += 1;
        match self.net.route(&mut self.rng, from, to, msg.class()) {
            Ok(delay) => self.schedule(self.now + delay, to, EventKind::Deliver { from, msg }),
            Err(Drop::Loss) => self.stats.lost += 1,
            Err(Drop::Partition) => self.stats.partitioned += 1,
        }
    }

    fn apply(&mut self, from: Addr, out: Out, scenario: &mut dyn Scenario) {
        match out {
            Out::Send(to, msg) => self.apply_send(from, to, msg),
            Out::Timer(at, timer) => self.schedule(at, from, EventKind::Timer(timer)),
            Out::Note(note) => {
                self.record_note(&note);
                scenario.note(self, from, &note);
            }
        }
    }

    /// Whether a registration's sender is an adversary.
    pub fn is_adversary(&self, addr: Addr) -> bool {
        match addr {
            Addr::Attacker(_) => true,
            Addr::Rdv(i) => self.malicious.contains(&i),
            Addr::Member(i) => self
                .members
                .get(i as usize)
                .is_some_and(|m| lock(m).fault.is_some()),
            _ => false,
        }
    }

    fn record_note(&mut self, note: &Note) {
        match note {
            Note::DkgDone {
                quorum,
                index,
                result,
            } => {
                if result.is_ok() {
                    self.stats.dkg_ok += 1;
                } else {
                    self.stats.dkg_failed += 1;
                }
                if let Some(q) = self.quorums.get_mut(*quorum as usize) {
                    q.dkg.insert(*index, result.clone());
                }
            }
            Note::NamespaceSigned { quorum, record } => {
                let key = record.quorum_key();
                let replicas = key.map(|k| self.shared.replicas(&k)).unwrap_or_default();
                if let Some(q) = self.quorums.get_mut(*quorum as usize) {
                    q.key = key;
                    q.replicas = replicas;
                    q.key_sets.insert(record.commitments.clone());
                    q.namespace = Some(record.clone());
                }
            }
            Note::PeerSigned { member, record } => {
                if let Some(slot) = self.records.get_mut(*member as usize) {
                    *slot = Some(record.clone());
                }
            }
            Note::Registration { from, outcome, .. } => {
                let adversary = self.is_adversary(*from);
                let tally = if adversary {
                    &mut self.stats.adversarial
                } else if matches!(from, Addr::Rdv(_)) {
                    &mut self.stats.replication
                } else {
                    &mut self.stats.honest
                };
                tally.add(*outcome);
            }
            Note::Merge {
                from,
                stored,
                unchanged,
                rejected,
                ..
            } => {
                let tally = if self.is_adversary(*from) {
                    &mut self.stats.adversarial
                } else {
                    &mut self.stats.replication
                };
                for _ in 0..*stored {
                    tally.add(Outcome::Accepted);
                }
                for _ in 0..*unchanged {
                    tally.add(Outcome::Unchanged);
                }
                for code in rejected {
                    tally.add(Outcome::Rejected(*code));
                }
            }
            Note::Dial { .. } => {}
            Note::Discovery(d) => {
                let expected = self.expected_members(d.quorum);
                let found: BTreeSet<u32> = d.found.iter().map(|(i, _)| *i).collect();
                self.stats.discoveries += 1;
                self.stats.expected += expected.len() as u64;
                self.stats.found += expected.iter().filter(|i| found.contains(i)).count() as u64;
                for (index, seq) in &d.found {
                    let flat = d.quorum * self.shared.n() + index - 1;
                    if let Some(Some(latest)) = self.records.get(flat as usize) {
                        if *seq < latest.seq() {
                            self.stats.stale += 1;
                        }
                    }
                }
                self.stats.forged_rejected += d.rejected.len() as u64;
                self.stats.namespace_rejected += d.namespace_errors.len() as u64;
                self.stats.forged_accepted += u64::from(d.forged_accepted);
                if d.mixed_epochs > 0 {
                    self.violate(
                        "answers-never-mix-epochs",
                        format!(
                            "client {} accepted {} record(s) of another epoch than quorum {}'s namespace epoch {:?}",
                            d.client, d.mixed_epochs, d.quorum, d.epoch
                        ),
                    );
                }
                if d.forged_accepted > 0 {
                    self.violate(
                        "no-forgery-accepted",
                        format!(
                            "client {} accepted {} forged record(s) for quorum {}",
                            d.client, d.forged_accepted, d.quorum
                        ),
                    );
                }
            }
        }
    }

    /// The members of a quorum a discovery should find now: honest,
    /// alive, and with a signed record.
    pub fn expected_members(&self, quorum: u32) -> Vec<u32> {
        let n = self.shared.n();
        (1..=n)
            .filter(|&i| {
                let flat = (quorum * n + i - 1) as usize;
                let m = lock(&self.members[flat]);
                m.fault.is_none() && m.alive && self.records[flat].is_some()
            })
            .collect()
    }

    /// Whether replica `rdv` currently serves member `index` of `quorum`.
    pub fn served(&self, rdv: u32, quorum: u32, index: u32) -> bool {
        let Some(key) = self.quorums.get(quorum as usize).and_then(|q| q.key) else {
            return false;
        };
        let flat = quorum * self.shared.n() + index - 1;
        let peer = self.shared.member_peers[flat as usize];
        let r = lock(&self.rdvs[rdv as usize]);
        r.store().peer_seq(&key, index).is_some() && !r.store().is_unreachable(&peer)
    }

    /// Whether a rendezvous node is up.
    pub fn rdv_alive(&self, rdv: u32) -> bool {
        lock(&self.rdvs[rdv as usize]).alive
    }

    fn sample(&mut self) {
        let n = self.shared.n();
        let mut registered = 0;
        let mut discoverable = 0;
        for q in 0..self.quorums.len() as u32 {
            let replicas = self.quorums[q as usize].replicas.clone();
            for i in 1..=n {
                let flat = (q * n + i - 1) as usize;
                let (honest, acked) = {
                    let m = lock(&self.members[flat]);
                    (m.fault.is_none(), m.acked_anywhere())
                };
                if !honest {
                    continue;
                }
                if acked {
                    registered += 1;
                }
                if replicas
                    .iter()
                    .any(|&r| !self.malicious.contains(&r) && self.served(r, q, i))
                {
                    discoverable += 1;
                }
            }
        }
        self.samples.push(Sample {
            t_s: self.elapsed_s(),
            registered,
            discoverable,
        });
        let period = self.shared.config.sample_ms;
        if period > 0 {
            let next = self.now - T0 + period;
            self.control_at(next, SAMPLE_TAG);
        }
    }

    /// Marks members faulty (DKG adversaries) before the run.
    pub fn set_fault(&mut self, flat: u32, fault: Fault) {
        if let Some(m) = self.members.get_mut(flat as usize) {
            m.get_mut().unwrap_or_else(|e| e.into_inner()).fault = Some(fault);
        }
    }

    /// Makes a rendezvous node answer every registration `QuotaExceeded`
    /// until `until` (absolute virtual time): an honest node under load.
    pub fn set_busy(&mut self, rdv: u32, until: u64) {
        if let Some(r) = self.rdvs.get_mut(rdv as usize) {
            r.get_mut().unwrap_or_else(|e| e.into_inner()).busy_until = Some(until);
        }
    }

    /// Marks a rendezvous node malicious before the run.
    pub fn set_malice(&mut self, rdv: u32, malice: Malice) {
        self.malicious.insert(rdv);
        if let Some(r) = self.rdvs.get_mut(rdv as usize) {
            r.get_mut().unwrap_or_else(|e| e.into_inner()).malice = Some(malice);
        }
    }

    /// Schedules a discovery by client `client` of `quorum` at `at`
    /// (absolute). Returns false if the quorum has no namespace yet.
    pub fn discover_at(&mut self, at: u64, client: u32, quorum: u32, entry: Option<u32>) -> bool {
        let Some(key) = self.quorums.get(quorum as usize).and_then(|q| q.key) else {
            return false;
        };
        self.schedule(
            at,
            Addr::Client(client),
            EventKind::Timer(Timer::DiscoverStart { quorum, key, entry }),
        );
        true
    }

    /// Crashes a member: it ignores everything until restarted.
    pub fn crash_member(&mut self, flat: u32) {
        if let Some(m) = self.members.get(flat as usize) {
            lock(m).alive = false;
        }
    }

    /// Restarts a member to reshare its key share to `epoch` with its
    /// fellow members (the same members and threshold; `dkg_phase_ms`
    /// phases): the new key set replaces the old at the end, the quorum
    /// key stays.
    pub fn reshare_member(&mut self, flat: u32, epoch: u64) {
        if let Some(m) = self.members.get(flat as usize) {
            lock(m).incarnation += 1;
        }
        self.schedule(
            self.now,
            Addr::Member(flat),
            EventKind::Timer(Timer::Reshare { epoch }),
        );
    }

    /// Restarts a member: it keeps its key share and namespace (on disk)
    /// and registers again at once.
    pub fn restart_member(&mut self, flat: u32) {
        if let Some(m) = self.members.get(flat as usize) {
            let mut m = lock(m);
            m.alive = true;
            m.incarnation += 1;
        }
        self.schedule(
            self.now,
            Addr::Member(flat),
            EventKind::Timer(Timer::Restart),
        );
    }
}
