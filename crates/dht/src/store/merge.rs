//! Merging values from other nodes in three phases, so that no signature
//! from the network is verified on the event loop (#13 item 1):
//!
//! 1. [`NamespaceStore::precheck_value`] (event loop, no curve arithmetic):
//!    what in the value would change the store, and passes every cheap
//!    check; the rest is decided at once (unchanged, stale, refused).
//! 2. [`verify_values`] (any thread): the namespace records left in one
//!    safe batch, then the peer records left (envelopes, and the seats not
//!    verified here before) in another.
//! 3. [`NamespaceStore::apply_value`] (event loop): stores what verified,
//!    after checking again what may have changed meanwhile.
//!
//! [`NamespaceStore::merge_value`] runs the three in a row (start-up from
//! disk, tests). Each phase has its cost estimate
//! ([`CheckedValue::cost_us`]), which is what a server charges a sending
//! node's budget.

use std::sync::Arc;

use libp2p_identity::PeerId;
use rand_core::RngCore;
use rendezvous_proto::seated::check_seated_fields;
use rendezvous_proto::{
    verify_batch_with, verify_handover, verify_namespaces_with, HandoverRecord, Limits,
    NamespaceRecord, PeerRecord, PendingPeer, QuorumKey, StatusCode, VerifiedNamespace,
};

use super::{MergeReport, NamespaceStore};
use crate::value::NamespaceValue;

/// Estimated cost of verifying one namespace record: its threshold
/// signature under `C_0` (two Miller loops and a final exponentiation,
/// about 1 ms on one core of the 2-core reference machine)...
const NAMESPACE_US: u64 = 1_000;
/// ...plus decoding each further commitment (about 2% of a pairing).
const COMMITMENT_US: u64 = 20;
/// Estimated cost of a seat's signature share in a batch (one Miller
/// loop and its share of the final exponentiation).
const SEAT_US: u64 = 500;
/// Estimated cost of one Ed25519 envelope check.
const ENVELOPE_US: u64 = 100;
/// Estimated cost of a handover: one signature under the old key (as a
/// namespace record's) and one point decoded.
const HANDOVER_US: u64 = NAMESPACE_US + COMMITMENT_US;

/// A value from another node after the cheap checks: what is left to
/// verify. Made by [`NamespaceStore::precheck_value`]; verified by
/// [`verify_values`] on any thread.
#[derive(Debug, Clone)]
pub struct CheckedValue {
    quorum_key: QuorumKey,
    /// The value's namespace record, to verify: it is newer than the one
    /// stored here, or none is stored.
    namespace: Option<NamespaceRecord>,
    /// The stored namespace, which peers are checked against if the
    /// value's own is not newer or does not verify.
    stored: Option<Arc<VerifiedNamespace>>,
    /// Peer records that would change something, each with whether this
    /// node verified its seat before (only its envelope is then checked).
    peers: Vec<(PeerRecord, bool)>,
    /// What the cheap checks decided already.
    report: MergeReport,
    /// Of a handover value: the handover to verify (it would retire the
    /// namespace here).
    handover: Option<HandoverRecord>,
}

impl CheckedValue {
    /// The namespace the value is about.
    pub fn quorum_key(&self) -> QuorumKey {
        self.quorum_key
    }

    /// Whether anything is left to verify.
    pub fn needs_verification(&self) -> bool {
        self.namespace.is_some() || !self.peers.is_empty() || self.handover.is_some()
    }

    /// Estimated CPU time (µs on one core) that verifying what is left
    /// costs: what a server charges the sending node's budget.
    pub fn cost_us(&self) -> u64 {
        self.namespace_cost_us()
            + self
                .peers
                .iter()
                .map(|(_, known)| peer_cost_us(*known))
                .sum::<u64>()
    }

    /// The part of [`CheckedValue::cost_us`] for the namespace record
    /// (or the handover) of the value.
    fn namespace_cost_us(&self) -> u64 {
        self.namespace.as_ref().map_or(0, |r| {
            NAMESPACE_US + COMMITMENT_US * (r.commitments.len().saturating_sub(1) as u64)
        }) + self.handover.as_ref().map_or(0, |_| HANDOVER_US)
    }

    /// Keeps only as many peer records as `budget_us` covers after the
    /// namespace record, dropping the rest (counted in the report as
    /// `peers_over_budget`). Returns the cost left, or `None` if not even
    /// the namespace record fits (then nothing is to be verified).
    pub fn trim_to(&mut self, budget_us: u64) -> Option<u64> {
        let mut left = budget_us.checked_sub(self.namespace_cost_us())?;
        let mut keep = 0;
        for (_, known) in &self.peers {
            let cost = peer_cost_us(*known);
            if cost > left {
                break;
            }
            left -= cost;
            keep += 1;
        }
        self.report.peers_over_budget += self.peers.len() - keep;
        self.peers.truncate(keep);
        Some(self.cost_us())
    }

    /// The report of the cheap checks alone (for a value that is dropped
    /// or has nothing left to verify).
    pub fn report(&self) -> &MergeReport {
        &self.report
    }
}

fn peer_cost_us(seat_known: bool) -> u64 {
    if seat_known {
        ENVELOPE_US
    } else {
        ENVELOPE_US + SEAT_US
    }
}

/// A [`CheckedValue`] after its verification: hand it to
/// [`NamespaceStore::apply_value`].
#[derive(Debug)]
pub struct VerifiedValue {
    quorum_key: QuorumKey,
    /// The verdict on the value's namespace record, if it was checked.
    namespace: Option<Result<Arc<VerifiedNamespace>, StatusCode>>,
    /// The namespace the peers were verified against.
    against: Option<Arc<VerifiedNamespace>>,
    peers: Vec<(PeerRecord, Result<(), StatusCode>)>,
    report: MergeReport,
    /// Of a handover value: the handover and its verdict.
    handover: Option<(HandoverRecord, Result<(), StatusCode>)>,
}

impl VerifiedValue {
    /// The namespace the value is about.
    pub fn quorum_key(&self) -> QuorumKey {
        self.quorum_key
    }
}

/// Verifies checked values: every namespace record left in one safe batch
/// (bisecting on failure), then every peer record left against the
/// namespace it belongs to (the value's own if it verified, else the one
/// stored when it was checked) in another. One result per input, in
/// order. `checkpoint` is called between steps (see
/// [`rendezvous_proto::verify_batch_with`]).
pub fn verify_values<R: RngCore>(
    values: Vec<CheckedValue>,
    now_ms: u64,
    limits: &Limits,
    rng: &mut R,
    checkpoint: &mut dyn FnMut(),
) -> Vec<VerifiedValue> {
    let records: Vec<NamespaceRecord> = values.iter().filter_map(|v| v.namespace.clone()).collect();
    let mut namespace_verdicts =
        verify_namespaces_with(&records, now_ms, limits, rng, checkpoint).into_iter();
    let mut pending: Vec<PendingPeer> = Vec::new();
    let mut staged = Vec::with_capacity(values.len());
    for value in values {
        let namespace = value.namespace.as_ref().map(|_| {
            namespace_verdicts
                .next()
                .unwrap_or(Err(StatusCode::Internal))
                .map(Arc::new)
        });
        let against = match &namespace {
            Some(Ok(verified)) => Some(Arc::clone(verified)),
            _ => value.stored.clone(),
        };
        // Each peer's place in `pending`, or the code its preparation failed with.
        let mut prepared: Vec<(PeerRecord, Result<usize, StatusCode>)> =
            Vec::with_capacity(value.peers.len());
        for (record, seat_known) in value.peers {
            let outcome = match &against {
                None => Err(StatusCode::UnknownNamespace),
                Some(ns) => {
                    PendingPeer::prepare_with(record.clone(), ns, now_ms, limits, None, seat_known)
                        .map(|p| {
                            pending.push(p);
                            pending.len() - 1
                        })
                }
            };
            prepared.push((record, outcome));
        }
        let handover = value.handover.map(|h| {
            let verdict = verify_handover(&h, now_ms);
            (h, verdict)
        });
        checkpoint();
        staged.push((
            value.quorum_key,
            namespace,
            against,
            prepared,
            value.report,
            handover,
        ));
    }
    let verdicts = verify_batch_with(&pending, rng, checkpoint);
    staged
        .into_iter()
        .map(
            |(quorum_key, namespace, against, prepared, report, handover)| VerifiedValue {
                quorum_key,
                namespace,
                against,
                peers: prepared
                    .into_iter()
                    .map(|(record, outcome)| {
                        let verdict = outcome.and_then(|at| {
                            verdicts
                                .get(at)
                                .copied()
                                .unwrap_or(Err(StatusCode::Internal))
                        });
                        (record, verdict)
                    })
                    .collect(),
                report,
                handover,
            },
        )
        .collect()
}

/// The order of namespace records of one quorum: the higher (epoch,
/// issued-at) wins, equal ones are broken by the larger encoding (so that
/// merging is commutative).
fn namespace_is_newer(new: &NamespaceRecord, stored: &NamespaceRecord) -> bool {
    let order = |r: &NamespaceRecord| (r.epoch, r.issued_at_ms);
    order(new) > order(stored) || (order(new) == order(stored) && new.encode() > stored.encode())
}

impl NamespaceStore {
    /// Merges a value received from another replica (a state-based CRDT
    /// merge): the namespace record with the higher (epoch, issued-at)
    /// wins; per index the valid record with the higher seq wins, equal
    /// seqs are broken by the larger encoding. Everything is re-verified;
    /// nothing invalid is stored. A peer this node found unreachable stays
    /// unreachable unless the value carries a newer registration of it.
    ///
    /// [`NamespaceStore::precheck_value`], [`verify_values`] and
    /// [`NamespaceStore::apply_value`] in a row, on the calling thread.
    pub fn merge_value(&mut self, value: NamespaceValue, now_ms: u64) -> MergeReport {
        self.merge_value_from(value, None, now_ms)
    }

    /// [`NamespaceStore::merge_value`] of a value node `via` sent (its
    /// bytes count against that node's replication quota).
    pub fn merge_value_from(
        &mut self,
        value: NamespaceValue,
        via: Option<PeerId>,
        now_ms: u64,
    ) -> MergeReport {
        let checked = self.precheck_value(value, now_ms);
        if !checked.needs_verification() {
            return checked.report;
        }
        let limits = self.config.limits;
        let verified = verify_values(vec![checked], now_ms, &limits, &mut self.rng, &mut || {});
        let mut report = MergeReport::default();
        for v in verified {
            report = self.apply_value(v, via, now_ms);
        }
        report
    }

    /// Merges a handover value from node `via` (`None`: loaded from
    /// disk, tests): [`NamespaceStore::precheck_handover_value`],
    /// [`verify_values`] and [`NamespaceStore::apply_value`] in a row.
    pub fn merge_handover(
        &mut self,
        handover: HandoverRecord,
        via: Option<PeerId>,
        now_ms: u64,
    ) -> MergeReport {
        let checked = self.precheck_handover_value(handover, via.as_ref(), now_ms);
        if !checked.needs_verification() {
            return checked.report;
        }
        let limits = self.config.limits;
        let mut report = MergeReport::default();
        for v in verify_values(vec![checked], now_ms, &limits, &mut self.rng, &mut || {}) {
            report = self.apply_value(v, via, now_ms);
        }
        report
    }

    /// The cheap phase of a merge: decides what it can (peers already held
    /// or older, withdrawn, of a namespace this node refuses, failing a
    /// field check) and keeps what is left to verify. No curve arithmetic;
    /// changes nothing but dropping what expired.
    pub fn precheck_value(&mut self, value: NamespaceValue, now_ms: u64) -> CheckedValue {
        self.expire(now_ms);
        let mut report = MergeReport::default();
        let Some(quorum_key) = value.namespace.quorum_key() else {
            report.namespace_rejected = Some(StatusCode::Decode);
            return CheckedValue {
                quorum_key: rendezvous_proto::QuorumKey([0; rendezvous_proto::records::G1_BYTES]),
                namespace: None,
                stored: None,
                peers: Vec::new(),
                report,
                handover: None,
            };
        };
        let entry = self.namespaces.get(&quorum_key);
        let stored = entry.map(|e| Arc::clone(&e.verified));
        let newer = stored
            .as_ref()
            .is_none_or(|s| namespace_is_newer(&value.namespace, s.record()));
        let mut namespace = None;
        if newer {
            let admitted = if stored.is_some() {
                // A newer record of a held namespace: admission only (the
                // CRDT order, not `check_namespace_update`, decides here).
                if self
                    .config
                    .admission
                    .admits(&quorum_key, value.namespace.kind.as_deref())
                {
                    Ok(())
                } else {
                    Err(StatusCode::NotAuthorized)
                }
            } else {
                self.check_namespace_admission(&value.namespace, None, None)
                    .map(|_| ())
            };
            match admitted {
                Ok(()) => namespace = Some(value.namespace.clone()),
                Err(code) => {
                    report.namespace_rejected = Some(code);
                    if stored.is_none() {
                        return CheckedValue {
                            quorum_key,
                            namespace: None,
                            stored: None,
                            peers: Vec::new(),
                            report,
                            handover: None,
                        };
                    }
                }
            }
        }
        // Peers are checked against the value's namespace if it is to be
        // stored, else against the stored one.
        let against: Option<&NamespaceRecord> = namespace
            .as_ref()
            .or_else(|| stored.as_deref().map(|s| s.record()));
        let mut peers = Vec::new();
        for record in value.peers {
            let index = record.index();
            let Some(against) = against else {
                report
                    .peers_rejected
                    .push((index, StatusCode::UnknownNamespace));
                continue;
            };
            if let Some(entry) = entry {
                // Seqs compare within an epoch only: a record of another
                // epoch than the one held is decided by its epoch below
                // (older: `StaleEpoch`), never counted as held.
                let held = entry.peers.get(&index).is_some_and(|held| {
                    held.record.seat.epoch == record.seat.epoch
                        && (*held.record == record
                            || record.seq() < held.record.seq()
                            || (record.seq() == held.record.seq()
                                && record.encode() <= held.record.encode()))
                });
                // Withdrawn seqs are of the stored namespace's epoch.
                let withdrawn = record.seat.epoch == entry.verified.record().epoch
                    && entry
                        .withdrawn
                        .get(&index)
                        .is_some_and(|&(seq, _)| record.seq() <= seq);
                if held || withdrawn {
                    report.peers_unchanged += 1;
                    continue;
                }
            }
            if let Err(code) =
                check_seated_fields(&record, against, now_ms, &self.config.limits, None)
            {
                report.peers_rejected.push((index, code));
                continue;
            }
            if !self.addrs_acceptable(&record) {
                report
                    .peers_rejected
                    .push((index, StatusCode::NotAuthorized));
                continue;
            }
            let known = match entry {
                Some(entry) => self.seat_known(entry, &record),
                None => self.verified_seats.contains(&record.seat.hash()),
            };
            peers.push((record, known));
        }
        CheckedValue {
            quorum_key,
            namespace,
            stored,
            peers,
            report,
            handover: None,
        }
    }

    /// The cheap phase of merging a handover value (a retired
    /// namespace's value): its fields, admission, the order against a
    /// stored handover, quotas. A handover this node holds already (or
    /// one that loses to it) is left unchanged; one refused is reported
    /// in `handover_rejected`. No curve arithmetic.
    pub fn precheck_handover_value(
        &mut self,
        handover: HandoverRecord,
        via: Option<&PeerId>,
        now_ms: u64,
    ) -> CheckedValue {
        self.expire(now_ms);
        let mut report = MergeReport::default();
        let quorum_key = handover.old_quorum_key;
        let handover = match self.check_handover_admission(&handover, None, via, now_ms) {
            Ok(()) => Some(handover),
            Err(StatusCode::StaleHandover) => None,
            Err(code) => {
                report.handover_rejected = Some(code);
                None
            }
        };
        CheckedValue {
            quorum_key,
            namespace: None,
            stored: None,
            peers: Vec::new(),
            report,
            handover,
        }
    }

    /// The last phase of a merge: stores what verified, checking again
    /// what may have changed since [`NamespaceStore::precheck_value`] (the
    /// namespace may have been replaced, a slot filled by a newer record,
    /// the store filled up). Returns what the whole merge did.
    /// `via` is the node that sent the value (its replicated bytes count
    /// against `Quotas::max_replicated_bytes_per_node`).
    pub fn apply_value(
        &mut self,
        value: VerifiedValue,
        via: Option<PeerId>,
        now_ms: u64,
    ) -> MergeReport {
        self.expire(now_ms);
        let VerifiedValue {
            quorum_key,
            namespace,
            against,
            peers,
            mut report,
            handover,
        } = value;
        match handover {
            Some((record, Ok(()))) => {
                match self.check_handover_admission(&record, None, via.as_ref(), now_ms) {
                    Ok(()) => {
                        self.put_handover(record, None, via);
                        report.handover_updated = true;
                    }
                    Err(StatusCode::StaleHandover) => {}
                    Err(code) => report.handover_rejected = Some(code),
                }
            }
            Some((_, Err(code))) => report.handover_rejected = Some(code),
            None => {}
        }
        match namespace {
            Some(Ok(verified)) => match self.namespaces.get(&quorum_key) {
                Some(entry) if !namespace_is_newer(verified.record(), entry.verified.record()) => {}
                Some(_) => {
                    self.apply_namespace(verified, None, via);
                    report.namespace_updated = true;
                }
                None => match self.check_namespace_admission(verified.record(), None, via.as_ref())
                {
                    Ok(evict) if verified.record().expires_at_ms > now_ms => {
                        if let Some(victim) = evict {
                            self.remove_namespace(&victim);
                        }
                        self.apply_namespace(verified, None, via);
                        report.namespace_updated = true;
                    }
                    Ok(_) => report.namespace_rejected = Some(StatusCode::Expired),
                    Err(code) => report.namespace_rejected = Some(code),
                },
            },
            Some(Err(code)) => report.namespace_rejected = Some(code),
            None => {}
        }
        for (record, verdict) in peers {
            let index = record.index();
            if let Err(code) = verdict {
                report.peers_rejected.push((index, code));
                continue;
            }
            let Some(entry) = self.namespaces.get(&quorum_key) else {
                report
                    .peers_rejected
                    .push((index, StatusCode::UnknownNamespace));
                continue;
            };
            // Verified against another namespace record than the one held
            // now: the verdict stands if that record has the same epoch
            // and key set (a seat signs its epoch, and `PK_i` comes from
            // the commitments); else the record waits for the next copy.
            let same_keys = against.as_ref().is_some_and(|a| {
                Arc::ptr_eq(a, &entry.verified)
                    || (a.record().epoch == entry.verified.record().epoch
                        && a.record().commitments == entry.verified.record().commitments)
            });
            let fields = check_seated_fields(
                &record,
                entry.verified.record(),
                now_ms,
                &self.config.limits,
                None,
            );
            match fields {
                Ok(()) if same_keys => {
                    self.remember_seat(&record);
                    match self.merge_peer(record, via, now_ms) {
                        Ok(true) => report.peers_stored += 1,
                        Ok(false) => report.peers_unchanged += 1,
                        Err(code) => report.peers_rejected.push((index, code)),
                    }
                }
                Ok(()) => report.peers_rejected.push((index, StatusCode::StaleEpoch)),
                Err(code) => report.peers_rejected.push((index, code)),
            }
        }
        report
    }
}
