//! Who registers what in `rdht-bench bench`: the members, their
//! identities, and every record they send, all signed before anything is
//! timed.
//!
//! - **Home quorums** ([`Population::quorums`]): `quorums` quorums of
//!   `members` members, each member with its own identity. Every member's
//!   first record (its seat, `seq` 1) is registered in the warm-up; the
//!   timed `refresh` loads send its later records (same seat, increasing
//!   `seq`): refreshes, which cost a node one Ed25519 check each.
//! - **Bulk quorums** ([`Bulk`]): as many more quorums as it takes to hold
//!   a number of seats, their members drawn from the same identities (one
//!   identity sits in many quorums, as a node serving many quorums does).
//!   Used twice: the `seat` load (fresh seats, each a first registration
//!   of an epoch: one pairing each) and the `--stored` prefill.

use std::collections::VecDeque;

use libp2p::identity::Keypair;
use libp2p::PeerId;
use rendezvous_proto::testkit::{BulkQuorum, TestQuorum};
use rendezvous_proto::{NamespaceRecord, PeerRecord};

/// One load generator member: an identity, what it registers untimed, and
/// what it sends in the timed phase.
pub struct OurMember {
    /// The member's libp2p identity (its connection's PeerId).
    pub identity: Keypair,
    /// Registered before the timed phase, in order: the prefill's records
    /// this identity holds, then its home seat.
    pub warmup: Vec<PeerRecord>,
    /// Sent during the timed phase.
    pub records: VecDeque<PeerRecord>,
}

/// Many quorums dealt over a pool of identities, and one seated record per
/// member of each.
pub struct Bulk {
    /// The quorums' namespace records (quorum `j` at `j`).
    pub namespaces: Vec<NamespaceRecord>,
    /// Per pool identity, the records it holds (its seat in each bulk
    /// quorum it is a member of, `seq` 1), in quorum order.
    pub records: Vec<Vec<PeerRecord>>,
    /// Per pool identity, the quorums (indexes into `namespaces`) of its
    /// records, in the same order.
    pub quorums_of: Vec<Vec<usize>>,
}

impl Bulk {
    /// Records in all.
    pub fn len(&self) -> usize {
        self.records.iter().map(Vec::len).sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Which pool identity is member `index` (1-based) of bulk quorum `quorum`:
/// consecutive slots over the pool, so every identity holds the same
/// number of seats (give or take one) and no quorum lists one twice
/// (`members <= pool`).
pub fn seat_holder(quorum: usize, index: usize, members: usize, pool: usize) -> usize {
    (quorum * members + index - 1) % pool.max(1)
}

/// Deals enough bulk quorums of `members` members (threshold `threshold`)
/// to hold at least `seats` seats over `pool`, and signs every seat (one
/// BLS signature each) and envelope, on every core. `seed` makes it
/// reproducible.
pub fn deal_bulk(
    pool: &[Keypair],
    seats: usize,
    members: usize,
    threshold: u32,
    seed: u64,
    now_ms: u64,
    expires_at_ms: u64,
) -> Bulk {
    let quorum_count = if members == 0 || pool.len() < members {
        0
    } else {
        seats.div_ceil(members)
    };
    let pool_ids: Vec<PeerId> = pool.iter().map(|k| k.public().to_peer_id()).collect();
    let quorums: Vec<usize> = (0..quorum_count).collect();
    let dealt = on_every_core(&quorums, |&j| {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ j as u64);
        let holders: Vec<usize> = (1..=members)
            .map(|i| seat_holder(j, i, members, pool.len()))
            .collect();
        let ids: Vec<PeerId> = holders.iter().map(|&p| pool_ids[p]).collect();
        let quorum = BulkQuorum::deal(&ids, threshold, 1, now_ms, expires_at_ms, &mut rng)?;
        let records: Vec<PeerRecord> = holders
            .iter()
            .zip(1u32..)
            .filter_map(|(&p, i)| quorum.peer(i, &pool[p], 1, expires_at_ms))
            .collect();
        Some((j, quorum.namespace().clone(), records))
    });
    let mut bulk = Bulk {
        namespaces: Vec::with_capacity(dealt.len()),
        records: vec![Vec::new(); pool.len()],
        quorums_of: vec![Vec::new(); pool.len()],
    };
    for (j, namespace, records) in dealt {
        let position = bulk.namespaces.len();
        bulk.namespaces.push(namespace);
        for (index, record) in (1..).zip(records) {
            let p = seat_holder(j, index, members, pool.len());
            bulk.records[p].push(record);
            bulk.quorums_of[p].push(position);
        }
    }
    bulk
}

/// Everything the load generator sends to our server, signed up front.
pub struct Population {
    /// The home quorums.
    pub quorums: Vec<TestQuorum>,
    /// Their namespace records (epoch 1).
    pub namespaces: Vec<NamespaceRecord>,
    /// Every home member's identity: the pool (quorum by quorum, index
    /// order).
    pub identities: Vec<Keypair>,
    /// Per pool identity, its home seat (`seq` 1): registered in every
    /// warm-up.
    pub seats: Vec<PeerRecord>,
    /// Per pool identity, its refreshes (`seq` 2 and up).
    pub refreshes: Vec<Vec<PeerRecord>>,
    /// The `--stored` prefill (empty without it).
    pub prefill: Bulk,
    /// Fresh seats for the `seat` load.
    pub fresh: Bulk,
}

/// Each home member's seat and `refreshes` later records of it: the seat
/// is signed once (one BLS signature), each record's envelope once
/// (Ed25519), on every core.
pub fn home_records(
    quorums: &[TestQuorum],
    refreshes: usize,
    expires_at_ms: u64,
) -> Vec<(Keypair, PeerRecord, Vec<PeerRecord>)> {
    let slots: Vec<(usize, u32)> = quorums
        .iter()
        .enumerate()
        .flat_map(|(q, quorum)| (1..=quorum.n()).map(move |i| (q, i)))
        .collect();
    on_every_core(&slots, |&(q, i)| {
        let quorum = quorums.get(q)?;
        let identity = quorum.identities.get(i as usize - 1)?.clone();
        let seat = quorum.seat(i, 1);
        let addr: libp2p::Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", 4000 + i).parse().ok()?;
        let sign = |seq| {
            PeerRecord::sign(
                seat.clone(),
                vec![addr.clone()],
                seq,
                expires_at_ms,
                &identity,
            )
        };
        let first = sign(1);
        let later = (2..refreshes as u64 + 2).map(sign).collect();
        Some((identity, first, later))
    })
}

/// `f` over `items` on every core (contiguous chunks, one thread each),
/// results in `items`' order; `None`s are dropped.
fn on_every_core<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> Option<R> + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = items.len().div_ceil(threads).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().filter_map(f).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// What the timed phase of one of our loads sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimedRecords {
    /// Each member's refreshes of its home seat.
    Refresh,
    /// Each identity's fresh seats.
    Seat,
}

impl Population {
    /// The members of one load: every pool identity, with the prefill and
    /// its home seat to register untimed, and `timed` to send.
    pub fn members(&self, timed: TimedRecords) -> Vec<OurMember> {
        self.identities
            .iter()
            .enumerate()
            .map(|(p, identity)| {
                let mut warmup = self.prefill.records.get(p).cloned().unwrap_or_default();
                warmup.extend(self.seats.get(p).cloned());
                let records = match timed {
                    TimedRecords::Refresh => self.refreshes.get(p),
                    TimedRecords::Seat => self.fresh.records.get(p),
                };
                OurMember {
                    identity: identity.clone(),
                    warmup,
                    records: records.cloned().unwrap_or_default().into(),
                }
            })
            .collect()
    }

    /// The namespaces to register before a load: the home quorums', the
    /// prefill's, and (for the `seat` load) the fresh seats'.
    pub fn namespaces(&self, timed: TimedRecords) -> Vec<NamespaceRecord> {
        let mut all = self.namespaces.clone();
        all.extend(self.prefill.namespaces.iter().cloned());
        if timed == TimedRecords::Seat {
            all.extend(self.fresh.namespaces.iter().cloned());
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seat_holders_are_distinct_within_a_quorum_and_spread_evenly() {
        let (members, pool) = (8, 20);
        let mut held = vec![0usize; pool];
        for j in 0..50 {
            let mut seen: Vec<usize> = (1..=members)
                .map(|i| seat_holder(j, i, members, pool))
                .collect();
            for &p in &seen {
                held[p] += 1;
            }
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), members, "quorum {j} lists an identity twice");
        }
        let (min, max) = (held.iter().min(), held.iter().max());
        assert_eq!(min, Some(&20));
        assert_eq!(max, Some(&20));
    }

    #[test]
    fn bulk_seats_verify_under_their_namespace_and_bind_their_holder() {
        let pool: Vec<Keypair> = (0..6).map(|_| Keypair::generate_ed25519()).collect();
        let now = 1_000_000;
        let bulk = deal_bulk(&pool, 10, 4, 3, 42, now, now + 3_600_000);
        assert_eq!(bulk.namespaces.len(), 3);
        assert_eq!(bulk.len(), 12);
        let limits = rendezvous_proto::Limits::DEFAULT;
        for (p, (records, quorums)) in bulk.records.iter().zip(&bulk.quorums_of).enumerate() {
            for (record, &j) in records.iter().zip(quorums) {
                let namespace =
                    rendezvous_proto::verify_namespace(&bulk.namespaces[j], now, &limits)
                        .expect("the bulk namespace verifies");
                let peer = pool[p].public().to_peer_id();
                assert_eq!(record.peer_id(), peer);
                rendezvous_proto::seated::verify_seated(
                    record,
                    &namespace,
                    now,
                    &limits,
                    Some(&peer),
                    false,
                )
                .expect("the bulk seat verifies");
            }
        }
    }
}
