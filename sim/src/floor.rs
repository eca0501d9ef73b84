//! The cryptographic floor of a scenario's parameters: the signatures,
//! pairings and DKG arithmetic that an honest run of rdht cannot do
//! without, done back to back with no simulation around them, spread over
//! every core, and timed.
//!
//! The simulator runs thousands of nodes on one machine, so its wall time
//! is mostly their cryptography. This answers "how fast could any
//! simulator of this protocol be here": `sim --floor` prints it beside the
//! scenario's own wall time, measured in the same process on the same
//! cores, so the ratio holds on a noisy machine.
//!
//! Per quorum of n members with threshold t and k replicas, the work an
//! honest run needs at the least (each item with the real library calls):
//! - the DKG: n [`DkgMember`]s, every message through its wire encoding;
//! - the namespace record: n signature shares (the coordinator asks every
//!   member), combined and checked once by the coordinator, checked by
//!   the n - 1 other members before they adopt it, and validated in full
//!   (commitments decoded) by each of the k replicas;
//! - n seats and n envelopes signed, then verified by each of the k
//!   replicas in one batch of n (the best batching a node can get);
//! - one client lookup: a discover answer of n peers verified.
//!
//! Not counted: anything a lossy network, retries, refreshes,
//! replication of already-held records, liveness or the event queue add.
//! The real run does all of those, so its time is above this floor.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use dkg::{Destination, DkgConfig, DkgMember, DkgMessage, KeyShare, SignatureShare};
use libp2p_identity::Keypair;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use rayon::prelude::*;
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::{
    verify_discover_answer, Cookie, DiscoverAnswer, DiscoveredPeer, Limits, PendingPeer,
};

/// Virtual "now" for the records (any fixed time works: nothing expires).
const NOW_MS: u64 = 1_700_000_000_000;
/// The records' lifetime.
const TTL_MS: u64 = 3_600_000;

/// What the floor took.
#[derive(Debug, Clone, Copy, Default)]
pub struct Floor {
    /// Wall time for all quorums on every core.
    pub wall: Duration,
    /// Threads the work was spread over.
    pub threads: usize,
    /// Time spent in each part, summed over quorums (CPU time when the
    /// threads are not preempted).
    pub parts: Parts,
}

/// Time per part of the work, summed over quorums.
#[derive(Debug, Clone, Copy, Default)]
pub struct Parts {
    /// The DKG of every member.
    pub dkg: Duration,
    /// Namespace shares, seats and envelopes signed; the record combined.
    pub signing: Duration,
    /// The namespace record checked by the coordinator and the members.
    pub member_checks: Duration,
    /// Namespace records and peer records validated by the replicas.
    pub replica_checks: Duration,
    /// One discover answer verified by a client.
    pub client_checks: Duration,
}

impl Parts {
    fn add(mut self, other: Parts) -> Parts {
        self.dkg += other.dkg;
        self.signing += other.signing;
        self.member_checks += other.member_checks;
        self.replica_checks += other.replica_checks;
        self.client_checks += other.client_checks;
        self
    }

    /// The sum of the parts.
    pub fn total(&self) -> Duration {
        self.dkg + self.signing + self.member_checks + self.replica_checks + self.client_checks
    }
}

/// Why the floor could not be measured (a bug, never expected).
#[derive(Debug, thiserror::Error)]
pub enum FloorError {
    /// The parameters were refused by the DKG.
    #[error("DKG config: {0}")]
    Config(String),
    /// A DKG did not end with a key share.
    #[error("quorum {0}: the DKG did not produce a key share")]
    Dkg(u32),
    /// An honest record did not verify.
    #[error("quorum {0}: an honest record did not verify ({1})")]
    Verify(u32, String),
}

/// Measures the floor for `quorums` quorums of `members` members with
/// `threshold`, each record held by `replicas` rendezvous nodes.
pub fn measure(
    quorums: u32,
    members: u32,
    threshold: u32,
    replicas: u32,
    seed: u64,
) -> Result<Floor, FloorError> {
    let started = Instant::now();
    let parts = (0..quorums)
        .into_par_iter()
        .with_max_len(1)
        .map(|q| one_quorum(q, members, threshold, replicas, seed))
        .try_reduce(Parts::default, |a, b| Ok(a.add(b)))?;
    Ok(Floor {
        wall: started.elapsed(),
        threads: rayon::current_num_threads(),
        parts,
    })
}

fn one_quorum(
    quorum: u32,
    n: u32,
    threshold: u32,
    replicas: u32,
    seed: u64,
) -> Result<Parts, FloorError> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ (u64::from(quorum) << 20));
    let mut parts = Parts::default();

    let clock = Instant::now();
    let shares = run_dkg(quorum, n, threshold, &mut rng)?;
    parts.dkg = clock.elapsed();

    let identities: Vec<Keypair> = (0..n)
        .map(|_| {
            let mut secret = [0u8; 32];
            rng.fill_bytes(&mut secret);
            Keypair::ed25519_from_bytes(secret)
        })
        .collect::<Result<_, _>>()
        .map_err(|e| FloorError::Verify(quorum, e.to_string()))?;
    let quorum_set = TestQuorum { shares, identities };
    let limits = Limits::default();

    // Namespace: every member signs a share, the coordinator combines.
    let clock = Instant::now();
    let mut namespace = quorum_set.namespace_unsigned(0, None, NOW_MS, NOW_MS + TTL_MS);
    let message = namespace.signing_bytes();
    let signature_shares: Vec<SignatureShare> = quorum_set
        .shares
        .iter()
        .map(|s| s.secret.sign(&message))
        .collect();
    let combined = dkg::combine_signatures(
        threshold,
        n,
        signature_shares.get(..threshold as usize).unwrap_or(&[]),
    )
    .map_err(|e| FloorError::Verify(quorum, e.to_string()))?;
    namespace.signature = combined.to_bytes();
    let records: Vec<_> = (1..=n)
        .map(|i| quorum_set.peer(i, 0, 1, NOW_MS + TTL_MS))
        .collect();
    parts.signing = clock.elapsed();

    // The coordinator, then every other member, checks the record.
    let clock = Instant::now();
    for share in &quorum_set.shares {
        if !share.quorum_key().verify(&message, &combined) {
            return Err(FloorError::Verify(quorum, "namespace".into()));
        }
    }
    parts.member_checks = clock.elapsed();

    // Each replica validates the namespace record, then the n peers in one batch.
    let clock = Instant::now();
    for _ in 0..replicas {
        let verified = rendezvous_proto::verify_namespace(&namespace, NOW_MS, &limits)
            .map_err(|c| FloorError::Verify(quorum, format!("{c:?}")))?;
        let pending: Vec<PendingPeer> = records
            .iter()
            .map(|r| PendingPeer::prepare(r.clone(), &verified, NOW_MS, &limits, None))
            .collect::<Result<_, _>>()
            .map_err(|c| FloorError::Verify(quorum, format!("{c:?}")))?;
        if let Some(Err(code)) = rendezvous_proto::verify_batch(&pending, &mut rng)
            .into_iter()
            .find(Result::is_err)
        {
            return Err(FloorError::Verify(quorum, format!("{code:?}")));
        }
    }
    parts.replica_checks = clock.elapsed();

    // One client lookup.
    let clock = Instant::now();
    let answer = DiscoverAnswer {
        namespace: namespace.clone(),
        peers: records
            .into_iter()
            .map(|record| DiscoveredPeer {
                record,
                last_seen_ms: Some(NOW_MS),
            })
            .collect(),
        cookie: Cookie::default(),
    };
    let verified =
        verify_discover_answer(&answer, &quorum_set.quorum_key(), NOW_MS, &limits, &mut rng)
            .map_err(|c| FloorError::Verify(quorum, format!("{c:?}")))?;
    if verified.peers.len() != n as usize {
        return Err(FloorError::Verify(quorum, "client answer".into()));
    }
    parts.client_checks = clock.elapsed();
    Ok(parts)
}

/// Runs one quorum's DKG in memory, every message through its encoding.
fn run_dkg(
    quorum: u32,
    n: u32,
    threshold: u32,
    rng: &mut ChaCha20Rng,
) -> Result<Vec<KeyShare>, FloorError> {
    let names: Vec<Vec<u8>> = (1..=n)
        .map(|i| format!("q{quorum}-m{i}").into_bytes())
        .collect();
    let mut dkg_members = Vec::with_capacity(n as usize);
    for index in 1..=n {
        let config = DkgConfig::new(&names, threshold, b"floor", index, 60_000)
            .map_err(|e| FloorError::Config(e.to_string()))?;
        dkg_members.push(DkgMember::new(config, 0, rng));
    }
    let mut queue: VecDeque<(u32, u32, Vec<u8>)> = VecDeque::new();
    loop {
        for (position, member) in dkg_members.iter_mut().enumerate() {
            let from = position as u32 + 1;
            while let Some(transmit) = member.poll_transmit() {
                let bytes = transmit.message.encode();
                match transmit.to {
                    Destination::Member(to) => queue.push_back((from, to, bytes)),
                    Destination::All => {
                        for to in (1..=n).filter(|&to| to != from) {
                            queue.push_back((from, to, bytes.clone()));
                        }
                    }
                }
            }
        }
        let Some((from, to, bytes)) = queue.pop_front() else {
            break;
        };
        let message = DkgMessage::decode(&bytes).map_err(|_| FloorError::Dkg(quorum))?;
        if let Some(member) = dkg_members.get_mut(to as usize - 1) {
            member
                .handle_message(0, from, message)
                .map_err(|_| FloorError::Dkg(quorum))?;
        }
    }
    dkg_members
        .iter_mut()
        .map(|m| match m.take_outcome() {
            Some(Ok(output)) => Ok(output.key_share),
            _ => Err(FloorError::Dkg(quorum)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every part runs (each honest record verified, each DKG finished)
    /// and takes time; a broken step is an error, not a fast floor.
    #[test]
    fn the_floor_does_every_part_of_the_work() {
        let floor = measure(3, 4, 3, 3, 7).expect("honest work verifies");
        let p = floor.parts;
        for (name, part) in [
            ("dkg", p.dkg),
            ("signing", p.signing),
            ("member checks", p.member_checks),
            ("replica checks", p.replica_checks),
            ("client checks", p.client_checks),
        ] {
            assert!(part > Duration::ZERO, "{name} took no time");
        }
        assert!(floor.threads >= 1);
    }

    /// A threshold the DKG refuses is an error, not a zero floor.
    #[test]
    fn impossible_parameters_are_an_error() {
        assert!(matches!(measure(1, 4, 5, 3, 7), Err(FloorError::Config(_))));
    }
}
