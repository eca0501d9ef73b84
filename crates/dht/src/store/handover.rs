//! Handovers (key rotation, #14 item 3; PROTOCOL.md section 15): a valid
//! handover, threshold-signed by a quorum key, *retires* that key's
//! namespace on this node:
//!
//! - the namespace record and its peer records are dropped, and
//!   [`NamespaceStore::handover`] is served instead (the server answers
//!   `Discover` with `HandedOver`);
//! - registrations under the retired key (namespace or peer records,
//!   direct or replicated) are refused `NamespaceRetired`, until the
//!   handover expires;
//! - of two different valid handovers of one key, the one that
//!   [`HandoverRecord::supersedes`] the other is kept (a state-based CRDT:
//!   later issued-at, then larger encoding), whatever order they came in.
//!
//! Like namespace registrations, the cheap checks
//! ([`NamespaceStore::precheck_handover`]) and the apply
//! ([`NamespaceStore::apply_handover_verdict`]) run on the event loop, and
//! the signature check ([`CheckedHandover::verify`]) in a job.

use libp2p_identity::PeerId;
use rendezvous_proto::handover::{check_handover_fields, HANDOVER_BYTES};
use rendezvous_proto::{verify_handover, HandoverRecord, QuorumKey, StatusCode};

use super::NamespaceStore;
use crate::keys::{namespace_key, DhtKey};

/// A stored handover and who holds it (for the quotas).
#[derive(Debug, Clone)]
pub(super) struct HandoverEntry {
    pub(super) record: HandoverRecord,
    source: Option<PeerId>,
    via: Option<PeerId>,
}

/// The handovers a store holds, by retired key.
#[derive(Debug, Default)]
pub(super) struct Handovers {
    pub(super) by_key: std::collections::BTreeMap<QuorumKey, HandoverEntry>,
    by_dht_key: std::collections::BTreeMap<DhtKey, QuorumKey>,
    expiry: std::collections::BTreeSet<(u64, QuorumKey)>,
}

/// A handover that passed the cheap checks of
/// [`NamespaceStore::precheck_handover`] and needs only its signature
/// checked ([`CheckedHandover::verify`], any thread).
#[derive(Debug, Clone)]
pub struct CheckedHandover {
    record: HandoverRecord,
    source: Option<PeerId>,
}

impl CheckedHandover {
    /// The handover.
    pub fn record(&self) -> &HandoverRecord {
        &self.record
    }

    /// Verifies it in full (a pairing under the old key).
    pub fn verify(&self, now_ms: u64) -> Result<(), StatusCode> {
        verify_handover(&self.record, now_ms)
    }
}

impl NamespaceStore {
    /// The unexpired handover that retires `quorum_key`, if one is stored.
    pub fn handover(&self, quorum_key: &QuorumKey, now_ms: u64) -> Option<&HandoverRecord> {
        self.handovers
            .by_key
            .get(quorum_key)
            .map(|e| &e.record)
            .filter(|r| r.expires_at_ms > now_ms)
    }

    /// Whether `quorum_key` is retired here (a handover of it is stored).
    pub fn is_retired(&self, quorum_key: &QuorumKey) -> bool {
        self.handovers.by_key.contains_key(quorum_key)
    }

    /// The retired key whose handover lives under a DHT key.
    pub fn handover_key_for(&self, dht_key: &DhtKey) -> Option<QuorumKey> {
        self.handovers.by_dht_key.get(dht_key).copied()
    }

    /// Every retired key (with a stored handover).
    pub fn retired_keys(&self) -> Vec<QuorumKey> {
        self.handovers.by_key.keys().copied().collect()
    }

    /// Handovers stored.
    pub fn handover_count(&self) -> usize {
        self.handovers.by_key.len()
    }

    /// The cheap phase of publishing a handover: its fields (no curve
    /// arithmetic), admission, the order against a stored handover of the
    /// same key (`StaleHandover` if that one wins or is this very one),
    /// quotas. Changes nothing but dropping what expired.
    pub fn precheck_handover(
        &mut self,
        record: HandoverRecord,
        source: Option<PeerId>,
        now_ms: u64,
    ) -> Result<CheckedHandover, StatusCode> {
        self.expire(now_ms);
        self.check_handover_admission(&record, source.as_ref(), None, now_ms)?;
        Ok(CheckedHandover { record, source })
    }

    /// The last phase of publishing a handover: with the verdict of
    /// [`CheckedHandover::verify`], the cheap checks run again (the store
    /// may have changed meanwhile), then the handover is stored and the
    /// old key's namespace retired. Returns the TTL granted (ms).
    pub fn apply_handover_verdict(
        &mut self,
        checked: CheckedHandover,
        verdict: Result<(), StatusCode>,
        now_ms: u64,
    ) -> Result<u64, StatusCode> {
        verdict?;
        self.expire(now_ms);
        self.check_handover_admission(&checked.record, checked.source.as_ref(), None, now_ms)?;
        let ttl = checked.record.expires_at_ms.saturating_sub(now_ms);
        self.put_handover(checked.record, checked.source, None);
        Ok(ttl)
    }

    /// Publishes a handover at once, its signature checked on the calling
    /// thread (start-up from disk, tests): `Ok(ttl)` if stored.
    pub fn publish_handover(
        &mut self,
        record: HandoverRecord,
        source: Option<PeerId>,
        now_ms: u64,
    ) -> Result<u64, StatusCode> {
        let checked = self.precheck_handover(record, source, now_ms)?;
        let verdict = checked.verify(now_ms);
        self.apply_handover_verdict(checked, verdict, now_ms)
    }

    /// The checks every handover passes before it is stored (but its
    /// signature): fields, admission, the order against the stored one,
    /// quotas. `via` is the node that replicated it.
    pub(super) fn check_handover_admission(
        &self,
        record: &HandoverRecord,
        source: Option<&PeerId>,
        via: Option<&PeerId>,
        now_ms: u64,
    ) -> Result<(), StatusCode> {
        check_handover_fields(record, now_ms)?;
        let old = record.old_quorum_key;
        // A node that admits only some namespaces takes the handover of
        // one it holds, or of a key it admits whatever its kind.
        let admission = &self.config.admission;
        let admitted = self.namespaces.contains_key(&old)
            || (admission.allowed_kinds.is_none()
                && admission
                    .allowed_quorum_keys
                    .as_ref()
                    .is_none_or(|keys| keys.contains(&old)));
        if !admitted {
            return Err(StatusCode::NotAuthorized);
        }
        match self.handovers.by_key.get(&old) {
            Some(stored) if !record.supersedes(&stored.record) => Err(StatusCode::StaleHandover),
            // Replacing a handover takes no new slot; its holders change
            // if it comes from elsewhere.
            Some(stored) => {
                let same = stored.source.as_ref() == source && stored.via.as_ref() == via;
                let freed = if same { HANDOVER_BYTES } else { 0 };
                if (!same && !self.source_has_room(source))
                    || !self.bytes_fit(source, via, HANDOVER_BYTES, freed)
                {
                    return Err(StatusCode::QuotaExceeded);
                }
                Ok(())
            }
            // A handover that replaces a namespace (which it drops) takes
            // no new slot either.
            None => {
                let replaces_namespace = self.namespaces.contains_key(&old);
                let slots = self.namespaces.len() + self.handovers.by_key.len();
                if (!replaces_namespace && slots >= self.config.quotas.max_namespaces)
                    || !self.source_has_room(source)
                    || !self.bytes_fit(source, via, HANDOVER_BYTES, 0)
                {
                    return Err(StatusCode::QuotaExceeded);
                }
                Ok(())
            }
        }
    }

    /// Stores a verified handover that passed
    /// [`NamespaceStore::check_handover_admission`]: retires the old
    /// key's namespace (its record and peer records are dropped) and
    /// replaces a handover of the same key it supersedes.
    pub(super) fn put_handover(
        &mut self,
        record: HandoverRecord,
        source: Option<PeerId>,
        via: Option<PeerId>,
    ) {
        let old = record.old_quorum_key;
        self.remove_namespace(&old);
        self.remove_handover(&old);
        let dht_key = namespace_key(&old);
        self.hold(source, via, HANDOVER_BYTES);
        self.handovers.expiry.insert((record.expires_at_ms, old));
        self.handovers.by_dht_key.insert(dht_key, old);
        self.handovers.by_key.insert(
            old,
            HandoverEntry {
                record,
                source,
                via,
            },
        );
    }

    fn remove_handover(&mut self, quorum_key: &QuorumKey) {
        let Some(entry) = self.handovers.by_key.remove(quorum_key) else {
            return;
        };
        self.handovers
            .expiry
            .remove(&(entry.record.expires_at_ms, *quorum_key));
        self.handovers.by_dht_key.remove(&namespace_key(quorum_key));
        self.release(entry.source, entry.via, HANDOVER_BYTES);
    }

    /// Drops the handovers that expired at or before `now` (their keys
    /// are no longer retired). Returns how many.
    pub(super) fn expire_handovers(&mut self, now_ms: u64) -> usize {
        let mut dropped = 0;
        while let Some(&(at, quorum_key)) = self.handovers.expiry.first() {
            if at > now_ms {
                break;
            }
            self.handovers.expiry.pop_first();
            self.remove_handover(&quorum_key);
            dropped += 1;
        }
        dropped
    }

    /// The next handover expiry.
    pub(super) fn next_handover_expiry(&self) -> Option<u64> {
        self.handovers.expiry.first().map(|(at, _)| *at)
    }

    /// The handovers' part of [`NamespaceStore::fingerprint`].
    pub(super) fn handover_fingerprint(&self, out: &mut Vec<u8>) {
        for (qk, entry) in &self.handovers.by_key {
            out.extend_from_slice(&qk.0);
            out.extend_from_slice(&entry.record.encode());
            out.extend_from_slice(&format!("{:?}{:?}", entry.source, entry.via).into_bytes());
        }
    }
}
