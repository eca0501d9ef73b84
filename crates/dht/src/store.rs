//! The namespace store: the one place where accepted records live.
//!
//! Sans-IO: every method takes `now` (ms since the Unix epoch); randomness
//! (batch coefficients, ping jitter, the cookie node tag) comes from a
//! ChaCha RNG seeded by the caller; iteration is over `BTreeMap`s. Every
//! operation is `O(log n)` in the number of stored records (plus the size
//! of what it returns), so a node stays flat from zero to a million
//! registrations.
//!
//! Invariants, checked by the tests:
//! - only records that validate are stored, and a rejected request
//!   changes nothing;
//! - per (namespace, index) at most one peer record, the one with the
//!   highest seq (ties broken by encoding, so merging is commutative);
//! - expired records are never served and are dropped by [`NamespaceStore::expire`];
//! - quotas are never exceeded.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::Arc;

use libp2p_identity::PeerId;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use rendezvous_proto::messages::{Cookie, DiscoverAnswer, DiscoveredPeer, MAX_DISCOVER_LIMIT};
use rendezvous_proto::seat::SeatHash;
use rendezvous_proto::seated::check_seated_fields;
use rendezvous_proto::validate::check_expiry;
use rendezvous_proto::{
    verify_batch, verify_namespace, NamespaceRecord, PeerRecord, PendingPeer, QuorumKey,
    StatusCode, VerifiedNamespace,
};

use crate::config::StoreConfig;
use crate::cookie;
use crate::dial::AddressPolicy;
use crate::keys::{kind_key, namespace_key, DhtKey};
use crate::liveness::{Liveness, PingTarget, Transition};
use crate::value::NamespaceValue;

mod handover;
mod merge;
pub mod standard;
pub use handover::CheckedHandover;
pub use merge::{verify_values, CheckedValue, VerifiedValue};

/// A peer registration as it arrives: the record and, when it came over a
/// direct connection, the connection's authenticated PeerId.
#[derive(Debug, Clone)]
pub struct PeerRegistration {
    /// The record.
    pub record: PeerRecord,
    /// The authenticated remote, or `None` for a replicated record.
    pub remote: Option<PeerId>,
}

/// A peer registration that passed every cheap check of
/// [`NamespaceStore::precheck_peers`] (fields, PeerId binding, membership,
/// expiry, sequence, quotas) and now needs only its pairing. It holds the
/// namespace record it was checked against, so it can be prepared and
/// verified on any thread ([`CheckedPeer::prepare`], then
/// [`rendezvous_proto::verify_batch`]) while the store goes on serving;
/// [`NamespaceStore::apply_peers`] then stores it if it still fits.
#[derive(Debug, Clone)]
pub struct CheckedPeer {
    /// The registration.
    pub registration: PeerRegistration,
    namespace: Arc<VerifiedNamespace>,
    /// This node verified this very seat before: only the envelope is
    /// left to check.
    seat_known: bool,
    /// The record's encoded size (what the byte quotas count), computed
    /// once by the precheck.
    wire_len: usize,
}

impl CheckedPeer {
    /// Decodes the seat's signature and looks up `PK_index` (unless the
    /// seat is known here): the costly half of the preparation (tens of
    /// microseconds), meant for a worker thread. Yields what
    /// [`rendezvous_proto::verify_batch`] checks.
    pub fn prepare(
        &self,
        now_ms: u64,
        limits: &rendezvous_proto::Limits,
    ) -> Result<PendingPeer, StatusCode> {
        PendingPeer::prepare_with(
            self.registration.record.clone(),
            &self.namespace,
            now_ms,
            limits,
            self.registration.remote.as_ref(),
            self.seat_known,
        )
    }

    /// Whether the seat was verified here before (only the envelope is
    /// checked).
    pub fn seat_known(&self) -> bool {
        self.seat_known
    }
}

/// A namespace registration that passed the cheap checks of
/// [`NamespaceStore::precheck_namespace`] and needs only its verification
/// ([`CheckedNamespace::verify`]: the threshold signature under `C_0`,
/// then every commitment decoded), which may run on any thread.
#[derive(Debug, Clone)]
pub struct CheckedNamespace {
    record: NamespaceRecord,
    source: Option<PeerId>,
}

impl CheckedNamespace {
    /// The record.
    pub fn record(&self) -> &NamespaceRecord {
        &self.record
    }

    /// Verifies the record in full (a pairing, and one point decoded per
    /// commitment).
    pub fn verify(
        &self,
        now_ms: u64,
        limits: &rendezvous_proto::Limits,
    ) -> Result<VerifiedNamespace, StatusCode> {
        verify_namespace(&self.record, now_ms, limits)
    }
}

/// What a merge of a replicated value did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeReport {
    /// The namespace record was new or newer and is now stored.
    pub namespace_updated: bool,
    /// Peer records stored (new, or newer than what was held).
    pub peers_stored: usize,
    /// Peer records already held (same or newer here).
    pub peers_unchanged: usize,
    /// Why the namespace record was refused, if it was.
    pub namespace_rejected: Option<StatusCode>,
    /// Peer records rejected (by index), with their codes.
    pub peers_rejected: Vec<(u32, StatusCode)>,
    /// Of a kind index: the entries that were merged (each one a
    /// namespace check at most), after copies and entries beyond the cap
    /// were dropped.
    pub kind_entries_merged: usize,
    /// Of a kind index: the entries dropped unchecked (copies of an entry
    /// already in the value, or beyond [`crate::server::MAX_KIND_VALUE_ENTRIES`]).
    pub kind_entries_dropped: usize,
    /// Of a kind index: why each entry refused was refused.
    pub kind_entries_rejected: Vec<StatusCode>,
    /// Peer records dropped unchecked because the sending node's
    /// verification budget did not cover them (they come again with the
    /// next copy of the value).
    pub peers_over_budget: usize,
    /// Of a handover value: the handover was new (or superseded the one
    /// held) and is now stored; the namespace is retired here.
    pub handover_updated: bool,
    /// Of a handover value: why the handover was refused, if it was.
    pub handover_rejected: Option<StatusCode>,
}

impl MergeReport {
    /// Adds `other`'s counts to these (the first refusal of a namespace
    /// record is kept).
    pub fn absorb(&mut self, other: MergeReport) {
        self.namespace_updated |= other.namespace_updated;
        self.peers_stored += other.peers_stored;
        self.peers_unchanged += other.peers_unchanged;
        if self.namespace_rejected.is_none() {
            self.namespace_rejected = other.namespace_rejected;
        }
        self.peers_rejected.extend(other.peers_rejected);
        self.kind_entries_merged += other.kind_entries_merged;
        self.kind_entries_dropped += other.kind_entries_dropped;
        self.kind_entries_rejected
            .extend(other.kind_entries_rejected);
        self.peers_over_budget += other.peers_over_budget;
        self.handover_updated |= other.handover_updated;
        if self.handover_rejected.is_none() {
            self.handover_rejected = other.handover_rejected;
        }
    }
}

/// Counts of what the store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Namespaces stored.
    pub namespaces: usize,
    /// Peer records stored (reachable or not).
    pub peer_records: usize,
    /// Peer records currently served (not unreachable).
    pub reachable_peer_records: usize,
    /// Distinct peers tracked for liveness.
    pub tracked_peers: usize,
}

#[derive(Debug, Clone)]
struct PeerEntry {
    /// Boxed: B-tree nodes keep room for 11 entries, so a small entry
    /// (here ~110 bytes) wastes far less of a half-full node than the
    /// ~290-byte record inline would.
    record: Box<PeerRecord>,
    /// The record's encoded size, for answers' byte budget (measured once
    /// here, not at every discover).
    wire_len: u32,
    version: u64,
    source: Option<PeerId>,
    /// The node that replicated it here (`None`: a direct registration,
    /// or loaded from disk).
    via: Option<PeerId>,
}

#[derive(Debug, Clone)]
struct NamespaceEntry {
    /// Shared with registrations in flight ([`CheckedPeer`]), so a driver
    /// can verify them on another thread against exactly this record.
    verified: Arc<VerifiedNamespace>,
    /// The namespace record's encoded size (as `PeerEntry::wire_len`).
    wire_len: usize,
    dht_key: DhtKey,
    source: Option<PeerId>,
    /// As `PeerEntry::via`.
    via: Option<PeerId>,
    peers: BTreeMap<u32, PeerEntry>,
    /// version -> index, for cookie paging.
    by_version: BTreeMap<u64, u32>,
    /// index -> seq of a withdrawn record: replication of that seq or older
    /// must not bring it back here.
    withdrawn: BTreeMap<u32, (u64, u64)>,
}

/// Where an expiry belongs: the namespace itself (`index` 0) or a peer.
type ExpiryKey = (u64, QuorumKey, u32);

/// The rendezvous state of one node.
#[derive(Debug)]
pub struct NamespaceStore {
    config: StoreConfig,
    rng: ChaCha20Rng,
    node_tag: [u8; 8],
    namespaces: BTreeMap<QuorumKey, NamespaceEntry>,
    by_dht_key: BTreeMap<DhtKey, QuorumKey>,
    by_kind: BTreeMap<String, BTreeSet<QuorumKey>>,
    kind_keys: BTreeMap<DhtKey, String>,
    expiry: BTreeSet<ExpiryKey>,
    /// When withdrawn seqs may be forgotten (`(expires, namespace, index)`),
    /// so `expire` never walks every namespace.
    withdrawn_expiry: BTreeSet<ExpiryKey>,
    sources: BTreeMap<PeerId, usize>,
    /// Bytes of records stored, in all, per direct source, and per
    /// replicating node.
    bytes: usize,
    source_bytes: BTreeMap<PeerId, usize>,
    via_bytes: BTreeMap<PeerId, usize>,
    liveness: Liveness,
    next_version: u64,
    /// Changes to what [`NamespaceStore::stats`] counts, so far.
    changes: u64,
    peer_records: usize,
    /// Seats this node verified (by hash), so that a refresh costs one
    /// Ed25519 verification, not a pairing; bounded, oldest forgotten
    /// first. A stored record's own seat counts as known too.
    verified_seats: HashSet<SeatHash>,
    seat_order: VecDeque<SeatHash>,
    /// Every change of a peer's listing (`false`: no longer listed, it
    /// became unreachable; `true`: listed again), whatever decided it,
    /// until taken.
    listing_changes: Vec<(PeerId, bool)>,
    /// Which address scopes a peer record must list at least one address
    /// of to be accepted (`None`: any; a server sets its dial policy).
    address_policy: Option<AddressPolicy>,
    /// Handovers by retired key (`store/handover.rs`).
    handovers: handover::Handovers,
}

/// Namespaces looked at (soonest to expire first) for one to evict.
const EVICTION_SCAN: usize = 64;

/// Seats remembered beyond those of stored records: a re-registration
/// after an expiry or an `Unregister` within this many other seats skips
/// its pairing.
const REMEMBERED_SEATS: usize = 65_536;

/// Most bytes of records in one `Discovered` or `Namespaces` answer: the
/// 1 MiB frame cap less room for the frame's own fields (tags, counts,
/// cookie). What does not fit is the next page, behind the cookie, so an
/// answer is never too large to send, whatever `limit` asked for.
pub const ANSWER_BYTES: usize = rendezvous_proto::Limits::DEFAULT.max_message_bytes - 4_096;

impl NamespaceStore {
    /// An empty store. `seed` drives every random choice the store makes.
    pub fn new(config: StoreConfig, seed: [u8; 32]) -> Self {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut node_tag = [0u8; 8];
        rng.fill_bytes(&mut node_tag);
        Self {
            liveness: Liveness::new(config.liveness),
            config,
            rng,
            node_tag,
            namespaces: BTreeMap::new(),
            by_dht_key: BTreeMap::new(),
            by_kind: BTreeMap::new(),
            kind_keys: BTreeMap::new(),
            expiry: BTreeSet::new(),
            withdrawn_expiry: BTreeSet::new(),
            sources: BTreeMap::new(),
            bytes: 0,
            source_bytes: BTreeMap::new(),
            via_bytes: BTreeMap::new(),
            next_version: 1,
            changes: 0,
            peer_records: 0,
            verified_seats: HashSet::new(),
            seat_order: VecDeque::new(),
            listing_changes: Vec::new(),
            address_policy: None,
            handovers: handover::Handovers::default(),
        }
    }

    /// Whether this node verified `record`'s seat before: it is the seat
    /// of the record stored in its slot, or one remembered by hash. Only
    /// for a record whose fields were checked (`check_seated_fields`), so
    /// that the hash its envelope names is its seat's.
    fn seat_known(&self, entry: &NamespaceEntry, record: &PeerRecord) -> bool {
        entry
            .peers
            .get(&record.index())
            .is_some_and(|p| p.record.seat == record.seat)
            || self.verified_seats.contains(&record.checked_seat_hash())
    }

    /// Remembers a seat that verified here (of a record whose fields were
    /// checked, as [`NamespaceStore::seat_known`]).
    fn remember_seat(&mut self, record: &PeerRecord) {
        let hash = record.checked_seat_hash();
        if self.verified_seats.insert(hash) {
            self.seat_order.push_back(hash);
            while self.seat_order.len() > REMEMBERED_SEATS {
                if let Some(old) = self.seat_order.pop_front() {
                    self.verified_seats.remove(&old);
                }
            }
        }
    }

    /// Accept only peer records that list no address or at least one
    /// address `policy` allows (`None`: any). A record whose every
    /// address is outside the scopes this node takes (another network's
    /// private addresses, loopback at a public node, link-local) names
    /// nothing this node may dial: it is refused `NotAuthorized` on every
    /// path (#13 item 3). A record with no address is taken: its member
    /// is pinged over the connection it keeps.
    pub fn set_address_policy(&mut self, policy: Option<AddressPolicy>) {
        self.address_policy = policy;
    }

    /// Whether `record`'s addresses are acceptable (see
    /// [`NamespaceStore::set_address_policy`]).
    pub(crate) fn addrs_acceptable(&self, record: &PeerRecord) -> bool {
        let addrs = record.addrs();
        addrs.is_empty()
            || self
                .address_policy
                .is_none_or(|p| addrs.iter().any(|a| p.allows(a)))
    }

    /// The configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Counts of what is stored.
    pub fn stats(&self) -> StoreStats {
        let reachable = self
            .namespaces
            .values()
            .flat_map(|ns| ns.peers.values())
            .filter(|p| !self.liveness.is_unreachable(&p.record.peer_id()))
            .count();
        StoreStats {
            namespaces: self.namespaces.len(),
            peer_records: self.peer_records,
            reachable_peer_records: reachable,
            tracked_peers: self.liveness.len(),
        }
    }

    /// The verified namespace stored under a quorum key.
    pub fn namespace(&self, quorum_key: &QuorumKey) -> Option<&VerifiedNamespace> {
        self.namespaces.get(quorum_key).map(|e| &*e.verified)
    }

    /// The quorum key whose namespace lives under a DHT key.
    pub fn quorum_key_for(&self, dht_key: &DhtKey) -> Option<QuorumKey> {
        self.by_dht_key.get(dht_key).copied()
    }

    /// The kind whose index lives under a DHT key.
    pub fn kind_for_key(&self, dht_key: &DhtKey) -> Option<String> {
        self.kind_keys.get(dht_key).cloned()
    }

    /// Every kind with at least one stored namespace.
    pub fn kinds(&self) -> Vec<String> {
        self.by_kind.keys().cloned().collect()
    }

    /// Registrations a source currently holds.
    pub fn source_count(&self, source: &PeerId) -> usize {
        self.sources.get(source).copied().unwrap_or(0)
    }

    /// How many times what [`NamespaceStore::stats`] counts may have
    /// changed (a namespace or peer record stored or dropped, a peer's
    /// listing changed), however it happened: a driver that shows the
    /// stats counts them again when this moved.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    fn bump_version(&mut self) -> u64 {
        let v = self.next_version;
        self.next_version += 1;
        v
    }

    /// Counts a stored record of `len` bytes against its holders.
    fn hold(&mut self, source: Option<PeerId>, via: Option<PeerId>, len: usize) {
        self.bytes += len;
        if let Some(s) = source {
            *self.sources.entry(s).or_insert(0) += 1;
            *self.source_bytes.entry(s).or_insert(0) += len;
        }
        if let Some(v) = via {
            *self.via_bytes.entry(v).or_insert(0) += len;
        }
    }

    /// Undoes [`NamespaceStore::hold`].
    fn release(&mut self, source: Option<PeerId>, via: Option<PeerId>, len: usize) {
        fn less(map: &mut BTreeMap<PeerId, usize>, key: PeerId, by: usize) {
            if let Some(v) = map.get_mut(&key) {
                *v = v.saturating_sub(by);
                if *v == 0 {
                    map.remove(&key);
                }
            }
        }
        self.bytes = self.bytes.saturating_sub(len);
        if let Some(s) = source {
            less(&mut self.sources, s, 1);
            less(&mut self.source_bytes, s, len);
        }
        if let Some(v) = via {
            less(&mut self.via_bytes, v, len);
        }
    }

    /// Whether `len` more bytes fit the byte quotas (in all, for the direct
    /// `source`, for the replicating `via`), once `freed` bytes of the same
    /// holders are released (a record being replaced).
    fn bytes_fit(
        &self,
        source: Option<&PeerId>,
        via: Option<&PeerId>,
        len: usize,
        freed: usize,
    ) -> bool {
        let q = &self.config.quotas;
        let grow = len.saturating_sub(freed);
        self.bytes + grow <= q.max_bytes
            && source.is_none_or(|s| {
                self.source_bytes.get(s).copied().unwrap_or(0) + grow <= q.max_bytes_per_source
            })
            && via.is_none_or(|v| {
                self.via_bytes.get(v).copied().unwrap_or(0) + grow
                    <= q.max_replicated_bytes_per_node
            })
    }

    /// Bytes of records stored (encoded).
    pub fn stored_bytes(&self) -> usize {
        self.bytes
    }

    fn source_has_room(&self, source: Option<&PeerId>) -> bool {
        source
            .is_none_or(|s| self.source_count(s) < self.config.quotas.max_registrations_per_source)
    }

    /// Whether a namespace has a peer that is served.
    fn has_live_peer(&self, entry: &NamespaceEntry) -> bool {
        entry
            .peers
            .values()
            .any(|p| !self.liveness.is_unreachable(&p.record.peer_id()))
    }

    /// A namespace that may be dropped to make room: one with no live
    /// peer, among the [`EVICTION_SCAN`] soonest to expire (a bounded
    /// search: a full store of live namespaces refuses a new one rather
    /// than walking every record). Liveness is that of peer records, each
    /// signed by its PeerId's own key (protocol v2): a namespace cannot be
    /// kept by naming someone else's always-online PeerId.
    fn eviction_candidate(&self) -> Option<QuorumKey> {
        self.expiry
            .iter()
            .filter(|(_, _, index)| *index == 0)
            .take(EVICTION_SCAN)
            .map(|(_, qk, _)| qk)
            .find(|qk| {
                self.namespaces
                    .get(*qk)
                    .is_some_and(|e| !self.has_live_peer(e))
            })
            .copied()
    }

    // ----- namespaces -------------------------------------------------------

    /// Registers or updates a namespace record. Returns the TTL granted (ms).
    ///
    /// The same as [`NamespaceStore::precheck_namespace`], then
    /// [`CheckedNamespace::verify`], then
    /// [`NamespaceStore::apply_namespace_verdict`]: a driver that verifies
    /// on another thread calls those three itself.
    pub fn register_namespace(
        &mut self,
        record: NamespaceRecord,
        source: Option<PeerId>,
        now_ms: u64,
    ) -> Result<u64, StatusCode> {
        let checked = self.precheck_namespace(record, source, now_ms)?;
        let verdict = checked.verify(now_ms, &self.config.limits);
        self.apply_namespace_verdict(checked, verdict, now_ms)
    }

    /// The cheap phase of a namespace registration: admission, staleness
    /// against the stored record, quotas (and whether an eviction would
    /// make room). No curve arithmetic; changes nothing but dropping what
    /// expired.
    pub fn precheck_namespace(
        &mut self,
        record: NamespaceRecord,
        source: Option<PeerId>,
        now_ms: u64,
    ) -> Result<CheckedNamespace, StatusCode> {
        self.expire(now_ms);
        self.check_namespace_admission(&record, source.as_ref(), None)?;
        Ok(CheckedNamespace { record, source })
    }

    /// The checks of [`NamespaceStore::precheck_namespace`]; returns the
    /// namespace to evict to make room, if one must go.
    fn check_namespace_admission(
        &self,
        record: &NamespaceRecord,
        source: Option<&PeerId>,
        via: Option<&PeerId>,
    ) -> Result<Option<QuorumKey>, StatusCode> {
        let quorum_key = record.quorum_key().ok_or(StatusCode::Decode)?;
        if self.is_retired(&quorum_key) {
            return Err(StatusCode::NamespaceRetired);
        }
        if !self
            .config
            .admission
            .admits(&quorum_key, record.kind.as_deref())
        {
            return Err(StatusCode::NotAuthorized);
        }
        match self.namespaces.get(&quorum_key) {
            Some(entry) => {
                rendezvous_proto::check_namespace_update(entry.verified.record(), record)?;
                Ok(None)
            }
            None => {
                if !self.source_has_room(source)
                    || !self.bytes_fit(source, via, record.encode().len(), 0)
                {
                    return Err(StatusCode::QuotaExceeded);
                }
                if self.namespaces.len() >= self.config.quotas.max_namespaces {
                    return self
                        .eviction_candidate()
                        .map(Some)
                        .ok_or(StatusCode::QuotaExceeded);
                }
                Ok(None)
            }
        }
    }

    /// The last phase of a namespace registration: with a verdict of
    /// [`CheckedNamespace::verify`], the cheap checks run again (the store
    /// may have changed meanwhile), then possibly one namespace without
    /// live peers is dropped to make room, and peer records of an older
    /// epoch are dropped. Returns the TTL granted (ms).
    pub fn apply_namespace_verdict(
        &mut self,
        checked: CheckedNamespace,
        verdict: Result<VerifiedNamespace, StatusCode>,
        now_ms: u64,
    ) -> Result<u64, StatusCode> {
        let verified = verdict?;
        self.expire(now_ms);
        let evict =
            self.check_namespace_admission(&checked.record, checked.source.as_ref(), None)?;
        if checked.record.expires_at_ms <= now_ms {
            return Err(StatusCode::Expired);
        }
        if let Some(victim) = evict {
            self.remove_namespace(&victim);
        }
        let ttl = checked.record.expires_at_ms.saturating_sub(now_ms);
        self.apply_namespace(Arc::new(verified), checked.source, None);
        Ok(ttl)
    }

    fn apply_namespace(
        &mut self,
        verified: Arc<VerifiedNamespace>,
        source: Option<PeerId>,
        via: Option<PeerId>,
    ) {
        let quorum_key = verified.quorum_key();
        let record = verified.record().clone();
        let wire_len = record.encode().len();
        let epoch = record.epoch;
        let n = record.n;
        match self.namespaces.remove(&quorum_key) {
            Some(mut entry) => {
                self.expiry
                    .remove(&(entry.verified.record().expires_at_ms, quorum_key, 0));
                if let Some(kind) = &entry.verified.record().kind {
                    self.unindex_kind(kind, &quorum_key);
                }
                // Peer records of another epoch, or beyond a smaller n, no
                // longer validate under the new record: they leave the
                // store, liveness, cookies' paging and every value served.
                let stale: Vec<u32> = entry
                    .peers
                    .iter()
                    .filter(|(index, p)| p.record.seat.epoch != epoch || **index > n)
                    .map(|(index, _)| *index)
                    .collect();
                for index in stale {
                    if let Some(dropped) = self.remove_peer_from(&mut entry, index) {
                        if dropped.record.seat.epoch < epoch {
                            // A seat of an epoch the namespace left never
                            // validates again: no need to remember it.
                            self.verified_seats
                                .remove(&dropped.record.checked_seat_hash());
                        }
                    }
                }
                if entry.verified.record().epoch != epoch {
                    // Withdrawn seqs belong to the old epoch's records,
                    // which are refused (`StaleEpoch`) from now on; the
                    // new epoch's seats start afresh.
                    for (&index, &(_, expires)) in &entry.withdrawn {
                        self.withdrawn_expiry.remove(&(expires, quorum_key, index));
                    }
                    entry.withdrawn.clear();
                }
                // The entry's holders now carry the new record's size.
                self.release(entry.source, entry.via, entry.wire_len);
                self.hold(entry.source, entry.via, wire_len);
                entry.verified = verified;
                entry.wire_len = wire_len;
                self.insert_namespace_entry(quorum_key, entry);
            }
            None => {
                let dht_key = namespace_key(&quorum_key);
                self.by_dht_key.insert(dht_key, quorum_key);
                self.hold(source, via, wire_len);
                let entry = NamespaceEntry {
                    verified,
                    wire_len,
                    dht_key,
                    source,
                    via,
                    peers: BTreeMap::new(),
                    by_version: BTreeMap::new(),
                    withdrawn: BTreeMap::new(),
                };
                self.insert_namespace_entry(quorum_key, entry);
            }
        }
    }

    fn insert_namespace_entry(&mut self, quorum_key: QuorumKey, entry: NamespaceEntry) {
        let record = entry.verified.record();
        self.expiry.insert((record.expires_at_ms, quorum_key, 0));
        if let Some(kind) = &record.kind {
            self.kind_keys.insert(kind_key(kind), kind.clone());
            self.by_kind
                .entry(kind.clone())
                .or_default()
                .insert(quorum_key);
        }
        self.namespaces.insert(quorum_key, entry);
        self.changes += 1;
    }

    fn unindex_kind(&mut self, kind: &str, quorum_key: &QuorumKey) {
        if let Some(set) = self.by_kind.get_mut(kind) {
            set.remove(quorum_key);
            if set.is_empty() {
                self.by_kind.remove(kind);
                self.kind_keys.remove(&kind_key(kind));
            }
        }
    }

    fn remove_namespace(&mut self, quorum_key: &QuorumKey) {
        let Some(mut entry) = self.namespaces.remove(quorum_key) else {
            return;
        };
        self.changes += 1;
        let indices: Vec<u32> = entry.peers.keys().copied().collect();
        for index in indices {
            self.remove_peer_from(&mut entry, index);
        }
        self.expiry
            .remove(&(entry.verified.record().expires_at_ms, *quorum_key, 0));
        if let Some(kind) = &entry.verified.record().kind {
            self.unindex_kind(kind, quorum_key);
        }
        self.by_dht_key.remove(&entry.dht_key);
        for (&index, &(_, expires)) in &entry.withdrawn {
            self.withdrawn_expiry.remove(&(expires, *quorum_key, index));
        }
        self.release(entry.source, entry.via, entry.wire_len);
    }

    // ----- peers ------------------------------------------------------------

    fn remove_peer_from(&mut self, entry: &mut NamespaceEntry, index: u32) -> Option<PeerEntry> {
        let peer = entry.peers.remove(&index)?;
        self.changes += 1;
        let quorum_key = entry.verified.quorum_key();
        entry.by_version.remove(&peer.version);
        self.expiry
            .remove(&(peer.record.expires_at_ms(), quorum_key, index));
        self.liveness
            .remove(&peer.record.peer_id(), &(quorum_key, index));
        self.release(peer.source, peer.via, peer.wire_len as usize);
        self.peer_records -= 1;
        Some(peer)
    }

    /// Sequence and quota checks for putting `record`, `len` bytes
    /// encoded, in its slot.
    fn check_slot(
        &self,
        entry: &NamespaceEntry,
        record: &PeerRecord,
        len: usize,
        source: Option<&PeerId>,
    ) -> Result<(), StatusCode> {
        match entry.peers.get(&record.index()) {
            Some(stored) => {
                if record.seq() <= stored.record.seq() {
                    return Err(StatusCode::StaleSequence);
                }
                let same_source = stored.source.as_ref() == source;
                let freed = if same_source {
                    stored.wire_len as usize
                } else {
                    0
                };
                if (!same_source && !self.source_has_room(source))
                    || !self.bytes_fit(source, None, len, freed)
                {
                    return Err(StatusCode::QuotaExceeded);
                }
            }
            None => {
                if let Some(&(seq, _)) = entry.withdrawn.get(&record.index()) {
                    if record.seq() <= seq {
                        return Err(StatusCode::StaleSequence);
                    }
                }
                if self.peer_records >= self.config.quotas.max_peer_records
                    || !self.source_has_room(source)
                    || !self.bytes_fit(source, None, len, 0)
                {
                    return Err(StatusCode::QuotaExceeded);
                }
            }
        }
        Ok(())
    }

    /// Registers one peer record. Returns the TTL granted (ms).
    pub fn register_peer(
        &mut self,
        registration: PeerRegistration,
        now_ms: u64,
    ) -> Result<u64, StatusCode> {
        self.register_peers(vec![registration], now_ms)
            .pop()
            .unwrap_or(Err(StatusCode::Internal))
    }

    /// Registers a burst of peer records: cheap checks on each, one safe
    /// batch verification for all that pass, then the accepted ones are
    /// applied in order (a later record for the same slot must still have
    /// a higher seq). One result per input, in order.
    ///
    /// The same as [`NamespaceStore::precheck_peers`], preparing and
    /// verifying what passed, then [`NamespaceStore::apply_peers`]: a
    /// driver that verifies on another thread calls those two itself.
    pub fn register_peers(
        &mut self,
        registrations: Vec<PeerRegistration>,
        now_ms: u64,
    ) -> Vec<Result<u64, StatusCode>> {
        let limits = self.config.limits;
        let mut results: Vec<Result<u64, StatusCode>> = Vec::with_capacity(registrations.len());
        let mut checked = Vec::new();
        let mut pending = Vec::new();
        let mut positions = Vec::new();
        for (position, outcome) in self
            .precheck_peers(registrations, now_ms)
            .into_iter()
            .enumerate()
        {
            match outcome.and_then(|c| c.prepare(now_ms, &limits).map(|p| (c, p))) {
                Ok((c, p)) => {
                    checked.push(c);
                    pending.push(p);
                    positions.push(position);
                    results.push(Ok(0));
                }
                Err(code) => results.push(Err(code)),
            }
        }
        let verdicts = verify_batch(&pending, &mut self.rng);
        let applied = self.apply_peers(checked.into_iter().zip(verdicts).collect(), now_ms);
        for (position, outcome) in positions.into_iter().zip(applied) {
            if let Some(slot) = results.get_mut(position) {
                *slot = outcome;
            }
        }
        results
    }

    /// The cheap phase of registering a burst: every check but the pairing
    /// (no curve arithmetic at all: the signature is decoded later, by
    /// [`CheckedPeer::prepare`]). Changes nothing but dropping what expired.
    /// One result per input, in order.
    pub fn precheck_peers(
        &mut self,
        registrations: Vec<PeerRegistration>,
        now_ms: u64,
    ) -> Vec<Result<CheckedPeer, StatusCode>> {
        self.expire(now_ms);
        registrations
            .into_iter()
            .map(|reg| self.precheck_one(reg, now_ms))
            .collect()
    }

    fn precheck_one(
        &self,
        registration: PeerRegistration,
        now_ms: u64,
    ) -> Result<CheckedPeer, StatusCode> {
        if self.is_retired(&registration.record.quorum_key()) {
            return Err(StatusCode::NamespaceRetired);
        }
        let entry = self
            .namespaces
            .get(&registration.record.quorum_key())
            .ok_or(StatusCode::UnknownNamespace)?;
        check_seated_fields(
            &registration.record,
            entry.verified.record(),
            now_ms,
            &self.config.limits,
            registration.remote.as_ref(),
        )?;
        let wire_len = registration.record.encode().len();
        self.check_slot(
            entry,
            &registration.record,
            wire_len,
            registration.remote.as_ref(),
        )?;
        if !self.addrs_acceptable(&registration.record) {
            return Err(StatusCode::NotAuthorized);
        }
        Ok(CheckedPeer {
            seat_known: self.seat_known(entry, &registration.record),
            wire_len,
            registration,
            namespace: Arc::clone(&entry.verified),
        })
    }

    /// The last phase of registering a burst: stores, in order, each
    /// checked registration whose signature verified (`Ok(())`), after
    /// checking again what may have changed since
    /// [`NamespaceStore::precheck_peers`]: expiry, sequence and quotas (an
    /// earlier record may have taken the slot), and the namespace record
    /// itself. If the namespace was replaced meanwhile, the record is
    /// verified again, alone, against the new one. A failed verdict is
    /// returned as it is. One result (the TTL granted, ms) per input.
    pub fn apply_peers(
        &mut self,
        verified: Vec<(CheckedPeer, Result<(), StatusCode>)>,
        now_ms: u64,
    ) -> Vec<Result<u64, StatusCode>> {
        self.expire(now_ms);
        verified
            .into_iter()
            .map(|(checked, verdict)| verdict.and_then(|()| self.apply_checked(checked, now_ms)))
            .collect()
    }

    fn apply_checked(&mut self, checked: CheckedPeer, now_ms: u64) -> Result<u64, StatusCode> {
        let PeerRegistration { record, remote } = checked.registration;
        let wire_len = checked.wire_len;
        let entry = self
            .namespaces
            .get(&record.quorum_key())
            .ok_or(StatusCode::UnknownNamespace)?;
        if Arc::ptr_eq(&entry.verified, &checked.namespace) {
            check_seated_fields(
                &record,
                entry.verified.record(),
                now_ms,
                &self.config.limits,
                remote.as_ref(),
            )?;
        } else {
            // The namespace changed between the two phases: what was
            // verified may not hold under the new key set.
            PendingPeer::prepare(
                record.clone(),
                &entry.verified,
                now_ms,
                &self.config.limits,
                remote.as_ref(),
            )?
            .verify()?;
        }
        self.remember_seat(&record);
        self.apply_peer(record, wire_len, remote, now_ms)
    }

    /// Stores a verified record, re-checking its slot (earlier records of
    /// the same batch may have filled it).
    fn apply_peer(
        &mut self,
        record: PeerRecord,
        len: usize,
        source: Option<PeerId>,
        now_ms: u64,
    ) -> Result<u64, StatusCode> {
        let quorum_key = record.quorum_key();
        let Some(mut entry) = self.namespaces.remove(&quorum_key) else {
            return Err(StatusCode::UnknownNamespace);
        };
        let outcome = self
            .check_slot(&entry, &record, len, source.as_ref())
            .map(|()| self.put_peer(&mut entry, record, len, source, None, now_ms));
        self.namespaces.insert(quorum_key, entry);
        outcome
    }

    /// Stores `record` (`len` bytes encoded) in its slot.
    fn put_peer(
        &mut self,
        entry: &mut NamespaceEntry,
        record: PeerRecord,
        len: usize,
        source: Option<PeerId>,
        via: Option<PeerId>,
        now_ms: u64,
    ) -> u64 {
        let quorum_key = entry.verified.quorum_key();
        let index = record.index();
        // Replacing a record forgets the peer's liveness first: an
        // unreachable peer registering anew is listed again, and says so.
        let was_unreachable = self.liveness.is_unreachable(&record.peer_id());
        self.remove_peer_from(entry, index);
        if let Some((_, expires)) = entry.withdrawn.remove(&index) {
            self.withdrawn_expiry.remove(&(expires, quorum_key, index));
        }
        let version = self.bump_version();
        self.changes += 1;
        self.expiry
            .insert((record.expires_at_ms(), quorum_key, index));
        let transition = self.liveness.add(
            record.peer_id(),
            (quorum_key, index),
            record.addrs().to_vec(),
            now_ms,
            &mut self.rng,
        );
        let transition = match transition {
            Transition::None if was_unreachable => Transition::BackAlive,
            t => t,
        };
        self.note_transition(record.peer_id(), transition);
        let wire_len = u32::try_from(len).unwrap_or(u32::MAX);
        self.hold(source, via, wire_len as usize);
        self.peer_records += 1;
        entry.by_version.insert(version, index);
        let ttl = record.expires_at_ms().saturating_sub(now_ms);
        entry.peers.insert(
            index,
            PeerEntry {
                wire_len,
                record: Box::new(record),
                version,
                source,
                via,
            },
        );
        ttl
    }

    /// Removes member `index`'s record, if the authenticated `remote` is
    /// the record's PeerId (else `PeerIdMismatch`). Removing nothing is
    /// not an error. The removed seq is remembered until the record would
    /// have expired, so replication of it cannot bring it back here.
    pub fn unregister(
        &mut self,
        quorum_key: &QuorumKey,
        index: u32,
        remote: &PeerId,
        now_ms: u64,
    ) -> Result<(), StatusCode> {
        self.expire(now_ms);
        let Some(mut entry) = self.namespaces.remove(quorum_key) else {
            return Ok(());
        };
        let outcome = match entry.peers.get(&index) {
            Some(p) if p.record.peer_id() != *remote => Err(StatusCode::PeerIdMismatch),
            Some(_) => {
                if let Some(removed) = self.remove_peer_from(&mut entry, index) {
                    let expires = removed.record.expires_at_ms();
                    if let Some((_, old)) = entry
                        .withdrawn
                        .insert(index, (removed.record.seq(), expires))
                    {
                        self.withdrawn_expiry.remove(&(old, *quorum_key, index));
                    }
                    self.withdrawn_expiry.insert((expires, *quorum_key, index));
                }
                Ok(())
            }
            None => Ok(()),
        };
        self.namespaces.insert(*quorum_key, entry);
        outcome
    }

    // ----- replication (the kad value) ---------------------------------------

    /// The value this node vouches for under a namespace: the namespace
    /// record and its served (reachable, unexpired) peer records.
    pub fn namespace_value(&self, quorum_key: &QuorumKey, now_ms: u64) -> Option<NamespaceValue> {
        let entry = self.namespaces.get(quorum_key)?;
        if entry.verified.record().expires_at_ms <= now_ms {
            return None;
        }
        let peers = entry
            .peers
            .values()
            .filter(|p| self.is_served(p, now_ms))
            .map(|p| (*p.record).clone())
            .collect();
        Some(NamespaceValue {
            namespace: entry.verified.record().clone(),
            peers,
        })
    }

    /// [`NamespaceStore::namespace_value`] cut into values that each
    /// encode to at most `max_bytes` (the namespace record in every one,
    /// the peer records spread over them in index order, none left out
    /// unless a single one does not fit beside the namespace record). A
    /// namespace whose members list long addresses (1,024 members with 16
    /// addresses of 64 bytes: about 1.3 MB) then replicates as several
    /// Kademlia PUTs under its key, which replicas merge like any values.
    pub fn namespace_value_pages(
        &self,
        quorum_key: &QuorumKey,
        now_ms: u64,
        max_bytes: usize,
    ) -> Vec<NamespaceValue> {
        let Some(entry) = self.namespaces.get(quorum_key) else {
            return Vec::new();
        };
        if entry.verified.record().expires_at_ms <= now_ms {
            return Vec::new();
        }
        // version, namespace record, peer count.
        let fixed = 1 + entry.wire_len + 2;
        let room = max_bytes.saturating_sub(fixed);
        let mut pages: Vec<NamespaceValue> = Vec::new();
        let mut page: Vec<PeerRecord> = Vec::new();
        let mut used = 0usize;
        for p in entry.peers.values().filter(|p| self.is_served(p, now_ms)) {
            let len = p.wire_len as usize;
            if len > room {
                continue;
            }
            if used + len > room || page.len() >= u16::MAX as usize {
                pages.push(NamespaceValue {
                    namespace: entry.verified.record().clone(),
                    peers: std::mem::take(&mut page),
                });
                used = 0;
            }
            used += len;
            page.push((*p.record).clone());
        }
        if !page.is_empty() || pages.is_empty() {
            pages.push(NamespaceValue {
                namespace: entry.verified.record().clone(),
                peers: page,
            });
        }
        pages
    }

    /// Every stored namespace's quorum key.
    pub fn quorum_keys(&self) -> Vec<QuorumKey> {
        self.namespaces.keys().copied().collect()
    }

    /// Every namespace's value (for republishing).
    pub fn values(&self, now_ms: u64) -> Vec<NamespaceValue> {
        self.namespaces
            .keys()
            .filter_map(|qk| self.namespace_value(qk, now_ms))
            .collect()
    }

    fn is_served(&self, peer: &PeerEntry, now_ms: u64) -> bool {
        peer.record.expires_at_ms() > now_ms
            && !self.liveness.is_unreachable(&peer.record.peer_id())
    }

    /// Stores a verified record replicated by `via` if it wins its slot
    /// and fits the quotas (`Err(QuotaExceeded)` if it wins but does not).
    fn merge_peer(
        &mut self,
        record: PeerRecord,
        via: Option<PeerId>,
        now_ms: u64,
    ) -> Result<bool, StatusCode> {
        let quorum_key = record.quorum_key();
        let Some(mut entry) = self.namespaces.remove(&quorum_key) else {
            return Ok(false);
        };
        let encoded = record.encode();
        let len = encoded.len();
        let outcome = match entry.peers.get(&record.index()) {
            None => {
                if self.peer_records < self.config.quotas.max_peer_records
                    && self.bytes_fit(None, via.as_ref(), len, 0)
                {
                    Ok(true)
                } else {
                    Err(StatusCode::QuotaExceeded)
                }
            }
            Some(stored) => {
                let wins = (record.seq(), encoded) > (stored.record.seq(), stored.record.encode());
                let freed = if stored.via == via {
                    stored.wire_len as usize
                } else {
                    0
                };
                if !wins {
                    Ok(false)
                } else if self.bytes_fit(None, via.as_ref(), len, freed) {
                    Ok(true)
                } else {
                    Err(StatusCode::QuotaExceeded)
                }
            }
        };
        if outcome == Ok(true) {
            // A replicated record keeps the source of the one it replaces
            // out of the quota: it is owned by no direct client here; it
            // counts against the node that replicated it.
            self.put_peer(&mut entry, record, len, None, via, now_ms);
        }
        self.namespaces.insert(quorum_key, entry);
        outcome
    }

    // ----- discovery --------------------------------------------------------

    /// Answers a discover request: the namespace record and the served peer
    /// records the cookie has not seen, oldest change first, at most
    /// `limit` (0 or above the maximum means the maximum).
    pub fn discover(
        &self,
        quorum_key: &QuorumKey,
        limit: u32,
        cookie: Option<&Cookie>,
        now_ms: u64,
    ) -> Result<DiscoverAnswer, StatusCode> {
        let entry = self
            .namespaces
            .get(quorum_key)
            .filter(|e| e.verified.record().expires_at_ms > now_ms)
            .ok_or(StatusCode::UnknownNamespace)?;
        let after = match cookie {
            Some(c) => cookie::parse_peers_cookie(c, &self.node_tag, &entry.dht_key)?,
            None => 0,
        };
        let limit = effective_limit(limit);
        let mut budget = ANSWER_BYTES.saturating_sub(entry.wire_len);
        let mut peers = Vec::new();
        let mut last = after;
        for (&version, index) in entry.by_version.range(after.saturating_add(1)..) {
            if peers.len() >= limit {
                break;
            }
            let Some(p) = entry.peers.get(index) else {
                last = version;
                continue;
            };
            if !self.is_served(p, now_ms) {
                last = version;
                continue;
            }
            // The record, its last-seen flag and time: over the budget, it
            // starts the next page (the cookie points before it).
            let size = p.wire_len as usize + 9;
            if size > budget {
                break;
            }
            budget -= size;
            last = version;
            peers.push(DiscoveredPeer {
                record: (*p.record).clone(),
                last_seen_ms: self.liveness.last_seen_ms(&p.record.peer_id()),
            });
        }
        Ok(DiscoverAnswer {
            namespace: entry.verified.record().clone(),
            peers,
            cookie: cookie::peers_cookie(&self.node_tag, &entry.dht_key, last),
        })
    }

    /// Lists namespace records of one kind, by quorum key, after the
    /// cookie's position, at most `limit`.
    pub fn discover_kind(
        &self,
        kind: &str,
        limit: u32,
        cookie: Option<&Cookie>,
        now_ms: u64,
    ) -> Result<(Vec<NamespaceRecord>, Cookie), StatusCode> {
        if !rendezvous_proto::validate::is_valid_kind(kind, self.config.limits.max_kind_bytes) {
            return Err(StatusCode::InvalidKind);
        }
        let scope = kind_key(kind);
        let after = match cookie {
            Some(c) => cookie::parse_kind_cookie(c, &self.node_tag, &scope)?,
            None => None,
        };
        let limit = effective_limit(limit);
        let mut budget = ANSWER_BYTES;
        let mut out = Vec::new();
        let mut last = after;
        if let Some(set) = self.by_kind.get(kind) {
            let range = match &after {
                Some(a) => set.range((std::ops::Bound::Excluded(*a), std::ops::Bound::Unbounded)),
                None => set.range(..),
            };
            for qk in range {
                if out.len() >= limit {
                    break;
                }
                if let Some(e) = self.namespaces.get(qk) {
                    let record = e.verified.record();
                    if record.expires_at_ms > now_ms {
                        if e.wire_len > budget {
                            break;
                        }
                        budget -= e.wire_len;
                        out.push(record.clone());
                    }
                }
                last = Some(*qk);
            }
        }
        Ok((
            out,
            cookie::kind_cookie(&self.node_tag, &scope, last.as_ref()),
        ))
    }

    // ----- time ---------------------------------------------------------------

    /// Drops everything that expired at or before `now`. Returns how many
    /// records (namespaces and peers) were dropped.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let mut dropped = 0;
        while let Some(&(at, quorum_key, index)) = self.expiry.first() {
            if at > now_ms {
                break;
            }
            self.expiry.remove(&(at, quorum_key, index));
            if index == 0 {
                if self.namespaces.contains_key(&quorum_key) {
                    dropped += 1 + self
                        .namespaces
                        .get(&quorum_key)
                        .map_or(0, |e| e.peers.len());
                    self.remove_namespace(&quorum_key);
                }
            } else if let Some(mut entry) = self.namespaces.remove(&quorum_key) {
                if self.remove_peer_from(&mut entry, index).is_some() {
                    dropped += 1;
                }
                self.namespaces.insert(quorum_key, entry);
            }
        }
        dropped += self.expire_handovers(now_ms);
        // Withdrawn seqs whose record would have expired: by their own
        // index, not a walk over every namespace.
        while let Some(&(at, quorum_key, index)) = self.withdrawn_expiry.first() {
            if at > now_ms {
                break;
            }
            self.withdrawn_expiry.pop_first();
            if let Some(entry) = self.namespaces.get_mut(&quorum_key) {
                if entry.withdrawn.get(&index).is_some_and(|&(_, e)| e == at) {
                    entry.withdrawn.remove(&index);
                }
            }
        }
        dropped
    }

    /// The next time something changes on its own (an expiry or a due
    /// ping): the driver should call [`NamespaceStore::expire`] and
    /// [`NamespaceStore::due_pings`] then.
    pub fn poll_timeout(&self) -> Option<u64> {
        let expiry = match (
            self.expiry.first().map(|(at, _, _)| *at),
            self.next_handover_expiry(),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match (expiry, self.liveness.next_ping_ms()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ----- liveness ------------------------------------------------------------

    /// Peers due a ping now. A peer whose previous ping is still
    /// unanswered takes a miss first (see [`crate::liveness::Liveness::due_pings`]).
    pub fn due_pings(&mut self, now_ms: u64) -> Vec<PingTarget> {
        let (due, transitions) = self.liveness.due_pings(now_ms, &mut self.rng);
        for (peer, transition) in transitions {
            self.note_transition(peer, transition);
        }
        due
    }

    fn note_transition(&mut self, peer: PeerId, transition: Transition) {
        match transition {
            Transition::None => return,
            Transition::BecameUnreachable => self.listing_changes.push((peer, false)),
            Transition::BackAlive => self.listing_changes.push((peer, true)),
        }
        self.changes += 1;
    }

    /// Every change of a peer's listing since the last call, in order:
    /// `(peer, false)` when it became unreachable (a ping unanswered at
    /// [`NamespaceStore::due_pings`], or failed at
    /// [`NamespaceStore::handle_ping_miss`]) and is no longer listed here,
    /// `(peer, true)` when it is listed again (it answered a ping, or
    /// registered anew). A driver logs and counts each one.
    pub fn take_listing_changes(&mut self) -> Vec<(PeerId, bool)> {
        std::mem::take(&mut self.listing_changes)
    }

    /// A peer answered a ping over a connection authenticated as `peer_id`.
    pub fn handle_pong(&mut self, peer_id: &PeerId, now_ms: u64) {
        if self.liveness.handle_pong(peer_id, now_ms) == Transition::BackAlive {
            self.touch_peer(peer_id);
            self.note_transition(*peer_id, Transition::BackAlive);
        }
    }

    /// A ping to `peer_id` failed. Returns true if the peer just became
    /// unreachable (also reported by [`NamespaceStore::take_listing_changes`]).
    pub fn handle_ping_miss(&mut self, peer_id: &PeerId) -> bool {
        let transition = self.liveness.handle_miss(peer_id);
        self.note_transition(*peer_id, transition);
        transition == Transition::BecameUnreachable
    }

    /// Whether the peer is currently considered unreachable here.
    pub fn is_unreachable(&self, peer_id: &PeerId) -> bool {
        self.liveness.is_unreachable(peer_id)
    }

    /// Gives a peer's records new versions, so cookies that saw them
    /// before they became unreachable see them again.
    fn touch_peer(&mut self, peer_id: &PeerId) {
        for (quorum_key, index) in self.liveness.registrations(peer_id) {
            let version = self.bump_version();
            if let Some(entry) = self.namespaces.get_mut(&quorum_key) {
                if let Some(p) = entry.peers.get_mut(&index) {
                    entry.by_version.remove(&p.version);
                    p.version = version;
                    entry.by_version.insert(version, index);
                }
            }
        }
    }

    /// A canonical dump of everything stored, with bookkeeping (versions,
    /// sources, withdrawn seqs, quota counters): equal fingerprints mean
    /// equal state. Tests use it to show a rejected request changed nothing.
    pub fn fingerprint(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.next_version.to_be_bytes());
        out.extend_from_slice(&(self.peer_records as u64).to_be_bytes());
        for (qk, entry) in &self.namespaces {
            out.extend_from_slice(&qk.0);
            out.extend_from_slice(&entry.verified.record().encode());
            out.extend_from_slice(&format!("{:?}", entry.source).into_bytes());
            for (index, p) in &entry.peers {
                out.extend_from_slice(&index.to_be_bytes());
                out.extend_from_slice(&p.version.to_be_bytes());
                out.extend_from_slice(&p.record.encode());
                out.extend_from_slice(&format!("{:?}", p.source).into_bytes());
            }
            out.extend_from_slice(
                &format!("{:?}{:?}", entry.by_version, entry.withdrawn).into_bytes(),
            );
        }
        out.extend_from_slice(
            &format!("{:?}{:?}{:?}", self.sources, self.by_kind, self.expiry).into_bytes(),
        );
        self.handover_fingerprint(&mut out);
        out
    }

    /// Whether a record still exists for (quorum key, index), and its seq.
    pub fn peer_seq(&self, quorum_key: &QuorumKey, index: u32) -> Option<u64> {
        self.namespaces
            .get(quorum_key)?
            .peers
            .get(&index)
            .map(|p| p.record.seq())
    }

    /// Checks an expiry against this store's limits (for callers that
    /// build records).
    pub fn check_expiry(&self, expires_at_ms: u64, now_ms: u64) -> Result<(), StatusCode> {
        check_expiry(expires_at_ms, now_ms, &self.config.limits)
    }
}

fn effective_limit(limit: u32) -> usize {
    if limit == 0 || limit > MAX_DISCOVER_LIMIT {
        MAX_DISCOVER_LIMIT as usize
    } else {
        limit as usize
    }
}
