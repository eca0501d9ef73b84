//! Client-side verification of rendezvous answers.
//!
//! A rendezvous node is not trusted: it can hide records but must not be
//! able to forge them. So a client re-verifies everything it is served,
//! with the same validation a rendezvous applies on registration, and
//! keeps what does not verify apart so that it can say so ("rendezvous
//! served N records that do not verify") instead of silently dropping it.

use std::collections::BTreeMap;

use rand_core::RngCore;

use crate::error::StatusCode;
use crate::handover::{verify_handover, HandoverRecord};
use crate::limits::Limits;
use crate::messages::{Cookie, DiscoverAnswer};
use crate::records::{NamespaceRecord, PeerRecord, QuorumKey};
use crate::validate::{
    check_namespace, verify_batch, verify_namespaces, PendingPeer, VerifiedNamespace,
};

/// A peer record of a discover answer that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPeer {
    /// The record.
    pub record: PeerRecord,
    /// When the answering node says it last saw the peer alive (ms since
    /// the Unix epoch). Not covered by any signature: a hint only.
    pub last_seen_ms: Option<u64>,
    /// Its position in the [`DiscoverAnswer::peers`] it came in.
    pub position: usize,
}

/// A peer record of a discover answer that did not verify (or was
/// superseded by another record for the same member in the same answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedPeer {
    /// Its position in [`DiscoverAnswer::peers`].
    pub position: usize,
    /// The record as served.
    pub record: PeerRecord,
    /// Why it was rejected: a validation code, or
    /// [`StatusCode::StaleSequence`] for a valid record that another
    /// valid record of the same member with a higher seq (or the same seq,
    /// served earlier) supersedes.
    pub code: StatusCode,
}

/// A discover answer after verification.
#[derive(Debug, Clone)]
pub struct VerifiedAnswer {
    /// The verified namespace (its quorum key is the one asked for).
    pub namespace: VerifiedNamespace,
    /// The peers whose records verified, at most one per member index, in
    /// ascending index order.
    pub peers: Vec<VerifiedPeer>,
    /// The peer records that did not verify, in answer order.
    pub rejected: Vec<RejectedPeer>,
    /// The cookie to send with the next discover.
    pub cookie: Cookie,
}

impl VerifiedAnswer {
    /// The namespace epoch every peer in [`VerifiedAnswer::peers`] is of.
    pub fn epoch(&self) -> u64 {
        self.namespace.record().epoch
    }

    /// The codes of the records served that did not verify: every
    /// rejection but [`StatusCode::StaleSequence`] (a member's older
    /// record beside its newer one, which an honest node may serve while
    /// a refresh propagates). A node whose answer has any served something
    /// it should have refused: an honest node verifies what it stores.
    pub fn forged_codes(&self) -> impl Iterator<Item = StatusCode> + '_ {
        self.rejected
            .iter()
            .map(|r| r.code)
            .filter(|c| *c != StatusCode::StaleSequence)
    }

    /// Adds `other`, a verified answer about the same namespace (the next
    /// page behind the cookie, or another node's answer), without ever
    /// mixing epochs: the answer keeps the namespace record of the later
    /// epoch, and the peer records of an earlier epoch, from either side,
    /// move to [`VerifiedAnswer::rejected`] as [`StatusCode::StaleEpoch`]
    /// (during a reshare one node may still serve epoch e while another
    /// serves e + 1, or a node may switch between two pages). Of the same
    /// epoch, the later issued-at record is kept and each member keeps its
    /// highest seq (the first served on a tie); the other is rejected as
    /// [`StatusCode::StaleSequence`]. The cookie becomes `other`'s. An
    /// answer about another namespace is not absorbed: its peers are
    /// rejected as [`StatusCode::UnknownNamespace`].
    pub fn absorb(&mut self, other: VerifiedAnswer) {
        let VerifiedAnswer {
            namespace,
            peers,
            rejected,
            cookie,
        } = other;
        self.cookie = cookie;
        self.rejected.extend(rejected);
        let refuse = |peers: Vec<VerifiedPeer>, code: StatusCode| {
            peers.into_iter().map(move |p| RejectedPeer {
                position: p.position,
                record: p.record,
                code,
            })
        };
        if namespace.quorum_key() != self.namespace.quorum_key() {
            self.rejected
                .extend(refuse(peers, StatusCode::UnknownNamespace));
            return;
        }
        let (mine, theirs) = (self.epoch(), namespace.record().epoch);
        if theirs < mine {
            self.rejected.extend(refuse(peers, StatusCode::StaleEpoch));
            return;
        }
        if theirs > mine {
            let old = std::mem::replace(&mut self.peers, peers);
            self.rejected.extend(refuse(old, StatusCode::StaleEpoch));
            self.namespace = namespace;
            return;
        }
        if namespace.record().issued_at_ms > self.namespace.record().issued_at_ms {
            self.namespace = namespace;
        }
        let mut best: BTreeMap<u32, VerifiedPeer> = std::mem::take(&mut self.peers)
            .into_iter()
            .map(|p| (p.record.index(), p))
            .collect();
        for p in peers {
            let index = p.record.index();
            let loser = match best.remove(&index) {
                Some(held) if p.record.seq() > held.record.seq() => {
                    best.insert(index, p);
                    held
                }
                Some(held) => {
                    best.insert(index, held);
                    p
                }
                None => {
                    best.insert(index, p);
                    continue;
                }
            };
            self.rejected
                .extend(refuse(vec![loser], StatusCode::StaleSequence));
        }
        self.peers = best.into_values().collect();
    }
}

/// Whether a node may have cut `answer` short, so that a client should
/// follow its cookie (PROTOCOL.md, Discover): a page cut to fit the frame
/// is at least half the frame cap, and one cut by count holds
/// `MAX_DISCOVER_LIMIT` records. Any other page is the whole rest: no
/// round trip is spent asking for an empty next page.
pub fn discover_answer_may_continue(answer: &DiscoverAnswer) -> bool {
    if answer.peers.len() >= crate::messages::MAX_DISCOVER_LIMIT as usize {
        return true;
    }
    // The records' bytes, counted as a node counts them against its budget
    // (each peer: its record, then its last-seen flag and time).
    let records = answer.namespace.encode().len()
        + answer
            .peers
            .iter()
            .map(|p| p.record.encode().len() + 9)
            .sum::<usize>();
    records >= Limits::DEFAULT.max_message_bytes / 2
}

/// Verifies a discover answer for `expected_quorum_key`.
///
/// The namespace record must carry the expected quorum key (else
/// [`StatusCode::UnknownNamespace`]: the node answered about another
/// namespace) and verify completely (else its code); nothing in the
/// answer can be trusted without it, so that is the only error. Then every
/// peer record is checked against it (no remote PeerId: the records were
/// relayed, not registered over this connection), with the signatures
/// checked in one batch. A member served more than once keeps its highest
/// seq; the others are rejected as [`StatusCode::StaleSequence`].
///
/// An answer never mixes epochs: every peer record kept is of the
/// namespace record's epoch; one of an older epoch is rejected as
/// [`StatusCode::StaleEpoch`], one of a later epoch as
/// [`StatusCode::EpochMismatch`] (both never used). To combine answers
/// (pages, or several nodes), use [`VerifiedAnswer::absorb`].
pub fn verify_discover_answer<R: RngCore>(
    answer: &DiscoverAnswer,
    expected_quorum_key: &QuorumKey,
    now_ms: u64,
    limits: &Limits,
    rng: &mut R,
) -> Result<VerifiedAnswer, StatusCode> {
    if answer.namespace.quorum_key().as_ref() != Some(expected_quorum_key) {
        return Err(StatusCode::UnknownNamespace);
    }
    // A client decodes `C_0` only: it checks envelopes, not seats.
    let namespace = check_namespace(&answer.namespace, now_ms, limits)?;

    let mut rejected = Vec::new();
    let mut pending = Vec::new();
    let mut positions = Vec::new();
    for (position, peer) in answer.peers.iter().enumerate() {
        // Seats are left to rendezvous nodes: the namespace's member list
        // (under the quorum's signature) binds each index to its PeerId,
        // and the envelope proves the PeerId's owner signed the record.
        // The standard peer record (PROTOCOL.md 16) is for standard
        // clients: an rdht client uses the envelope, so it neither checks
        // nor keeps it (one Ed25519 verification per member saved).
        let mut record = peer.record.clone();
        record.standard = None;
        let prepared = PendingPeer::prepare_with(record, &namespace, now_ms, limits, None, true);
        match prepared {
            Ok(p) => {
                pending.push(p);
                positions.push(position);
            }
            Err(code) => rejected.push(RejectedPeer {
                position,
                record: peer.record.clone(),
                code,
            }),
        }
    }

    // Per member index, the position of the best valid record so far.
    let mut best: BTreeMap<u32, usize> = BTreeMap::new();
    let results = verify_batch(&pending, rng);
    for ((p, result), position) in pending.iter().zip(results).zip(positions) {
        if let Err(code) = result {
            rejected.push(RejectedPeer {
                position,
                record: p.record.clone(),
                code,
            });
            continue;
        }
        let index = p.record.index();
        let Some(&held) = best.get(&index) else {
            best.insert(index, position);
            continue;
        };
        let held_seq = answer.peers.get(held).map_or(0, |d| d.record.seq());
        let loser = if p.record.seq() > held_seq {
            best.insert(index, position);
            held
        } else {
            position
        };
        if let Some(d) = answer.peers.get(loser) {
            rejected.push(RejectedPeer {
                position: loser,
                record: d.record.clone(),
                code: StatusCode::StaleSequence,
            });
        }
    }
    rejected.sort_by_key(|r| r.position);

    let peers = best
        .values()
        .filter_map(|&position| {
            answer.peers.get(position).map(|d| VerifiedPeer {
                record: d.record.clone(),
                last_seen_ms: d.last_seen_ms,
                position,
            })
        })
        .collect();
    Ok(VerifiedAnswer {
        namespace,
        peers,
        rejected,
        cookie: answer.cookie.clone(),
    })
}

/// A namespace record of a `Namespaces` answer that did not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedNamespace {
    /// Its position in the answer's list.
    pub position: usize,
    /// Its quorum key as served (`None` if it had no commitments).
    pub quorum_key: Option<QuorumKey>,
    /// Why it was rejected: a validation code, [`StatusCode::InvalidKind`]
    /// for a record of another kind than the one asked for, or
    /// [`StatusCode::StaleEpoch`] for a valid record that a newer record
    /// of the same namespace in the same answer supersedes.
    pub code: StatusCode,
}

/// A `Namespaces` answer after verification.
#[derive(Debug, Clone)]
pub struct VerifiedNamespaces {
    /// The namespaces whose records verified and have the requested kind,
    /// one per quorum key (the newest), in ascending quorum key order.
    pub namespaces: Vec<VerifiedNamespace>,
    /// The records that did not, in answer order.
    pub rejected: Vec<RejectedNamespace>,
}

/// Verifies the records of a [`crate::Response::Namespaces`] answer to a
/// `DiscoverKind { kind, .. }` request: each must verify completely and
/// carry exactly `kind`. Signatures are checked in one batch. A namespace
/// served more than once keeps its newest (epoch, issued-at) record.
pub fn verify_namespaces_answer<R: RngCore>(
    namespaces: &[NamespaceRecord],
    kind: &str,
    now_ms: u64,
    limits: &Limits,
    rng: &mut R,
) -> VerifiedNamespaces {
    let mut rejected = Vec::new();
    let mut of_kind = Vec::new();
    let mut positions = Vec::new();
    for (position, record) in namespaces.iter().enumerate() {
        if record.kind.as_deref() == Some(kind) {
            of_kind.push(record.clone());
            positions.push(position);
        } else {
            rejected.push(RejectedNamespace {
                position,
                quorum_key: record.quorum_key(),
                code: StatusCode::InvalidKind,
            });
        }
    }

    let mut best: BTreeMap<QuorumKey, (usize, VerifiedNamespace)> = BTreeMap::new();
    let results = verify_namespaces(&of_kind, now_ms, limits, rng);
    for ((record, result), position) in of_kind.iter().zip(results).zip(positions) {
        let verified = match result {
            Ok(v) => v,
            Err(code) => {
                rejected.push(RejectedNamespace {
                    position,
                    quorum_key: record.quorum_key(),
                    code,
                });
                continue;
            }
        };
        let key = verified.quorum_key();
        let newer = |v: &VerifiedNamespace, than: &VerifiedNamespace| {
            (v.record().epoch, v.record().issued_at_ms)
                > (than.record().epoch, than.record().issued_at_ms)
        };
        let loser = match best.remove(&key) {
            Some((held_position, held)) if !newer(&verified, &held) => {
                best.insert(key, (held_position, held));
                position
            }
            Some((held_position, _)) => {
                best.insert(key, (position, verified));
                held_position
            }
            None => {
                best.insert(key, (position, verified));
                continue;
            }
        };
        rejected.push(RejectedNamespace {
            position: loser,
            quorum_key: Some(key),
            code: StatusCode::StaleEpoch,
        });
    }
    rejected.sort_by_key(|r| r.position);
    VerifiedNamespaces {
        namespaces: best.into_values().map(|(_, v)| v).collect(),
        rejected,
    }
}

/// Most handovers a client follows from the key it asked for (a chain of
/// key rotations); a longer chain is refused ([`ChainError::TooLong`]).
pub const MAX_HANDOVER_LINKS: usize = 4;

/// Why a client stopped following handovers (PROTOCOL.md 15.5). In every
/// case the client reports the key it asked for as unresolved: it never
/// uses a namespace reached through a link it refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The node answered with a handover of another key than the one
    /// asked for (the handover does not retire it).
    #[error("the handover served retires {served}, not the key asked for ({asked})")]
    WrongKey {
        /// The key asked for.
        asked: QuorumKey,
        /// The key the handover retires.
        served: QuorumKey,
    },
    /// A link does not validate (a forged or expired handover).
    #[error("the handover {from} -> {to} does not verify: {code}")]
    Invalid {
        /// The key it retires.
        from: QuorumKey,
        /// The key it names.
        to: QuorumKey,
        /// Why it does not verify.
        code: StatusCode,
    },
    /// A link leads back to a key of the chain.
    #[error("handover loop: {0} is already in the chain")]
    Loop(QuorumKey),
    /// The chain has more links than the bound.
    #[error("more than {0} handovers in a row")]
    TooLong(usize),
}

/// The handovers a client followed from the key it asked for, each link
/// verified under the key it came from: [`HandoverChain::current`] is
/// where it was sent in the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoverChain {
    start: QuorumKey,
    links: Vec<HandoverRecord>,
    max_links: usize,
}

impl HandoverChain {
    /// A chain that starts at `start`, with no link yet, bounded by
    /// [`MAX_HANDOVER_LINKS`].
    pub fn new(start: QuorumKey) -> Self {
        Self::with_max_links(start, MAX_HANDOVER_LINKS)
    }

    /// A chain bounded by `max_links` links.
    pub fn with_max_links(start: QuorumKey, max_links: usize) -> Self {
        Self {
            start,
            links: Vec::new(),
            max_links,
        }
    }

    /// The key asked for.
    pub fn start(&self) -> QuorumKey {
        self.start
    }

    /// The key the chain leads to so far (the start if no link).
    pub fn current(&self) -> QuorumKey {
        self.links.last().map_or(self.start, |l| l.new_quorum_key)
    }

    /// The links followed, in order.
    pub fn links(&self) -> &[HandoverRecord] {
        &self.links
    }

    /// The links as (from, to) pairs, in order.
    pub fn hops(&self) -> Vec<(QuorumKey, QuorumKey)> {
        self.links
            .iter()
            .map(|l| (l.old_quorum_key, l.new_quorum_key))
            .collect()
    }

    /// Whether no handover was followed.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// Follows one more link: `record` must retire the chain's current
    /// key ([`ChainError::WrongKey`]), fit the bound
    /// ([`ChainError::TooLong`]), verify under the current key at
    /// `now_ms` ([`ChainError::Invalid`], [`crate::handover::verify_handover`])
    /// and name a key not yet in the chain ([`ChainError::Loop`]).
    /// Returns the new current key. A refused link changes nothing.
    pub fn follow(
        &mut self,
        record: &HandoverRecord,
        now_ms: u64,
    ) -> Result<QuorumKey, ChainError> {
        let current = self.current();
        if record.old_quorum_key != current {
            return Err(ChainError::WrongKey {
                asked: current,
                served: record.old_quorum_key,
            });
        }
        if self.links.len() >= self.max_links {
            return Err(ChainError::TooLong(self.max_links));
        }
        verify_handover(record, now_ms).map_err(|code| ChainError::Invalid {
            from: record.old_quorum_key,
            to: record.new_quorum_key,
            code,
        })?;
        let next = record.new_quorum_key;
        if next == self.start || self.links.iter().any(|l| l.new_quorum_key == next) {
            return Err(ChainError::Loop(next));
        }
        self.links.push(record.clone());
        Ok(next)
    }
}

/// Follows `links` in order from `start` (each through
/// [`HandoverChain::follow`], bounded by `max_links`): the chain, or the
/// first link refused.
pub fn follow_handovers(
    start: QuorumKey,
    links: &[HandoverRecord],
    now_ms: u64,
    max_links: usize,
) -> Result<HandoverChain, ChainError> {
    let mut chain = HandoverChain::with_max_links(start, max_links);
    for link in links {
        chain.follow(link, now_ms)?;
    }
    Ok(chain)
}
