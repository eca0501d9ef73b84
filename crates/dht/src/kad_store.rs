//! libp2p-kad's `RecordStore` over the [`NamespaceStore`].
//!
//! Kademlia stores opaque values; ours are self-certifying
//! ([`NamespaceValue`] under a namespace key, [`KindValue`] under a kind
//! key), so `put` is a validating CRDT merge and `get` serves what this
//! node vouches for right now. Run kad with
//! `StoreInserts::FilterBoth` and feed inbound records to
//! [`KadStore::put`] (or [`NamespaceStore::merge_value`] for the report):
//! kad acknowledges a PUT whatever the store decides, so publishers
//! confirm by reading back.
//!
//! The store needs `now` and kad's trait has no parameter for it, so the
//! adapter holds a clock closure: the node passes the system clock, the
//! simulator its virtual one.

use std::borrow::Cow;

use libp2p_identity::PeerId;
use libp2p_kad::store::{Error, RecordStore, Result};
use libp2p_kad::{ProviderRecord, Record, RecordKey};

use crate::keys::{kind_key, DhtKey};
use crate::store::NamespaceStore;
use crate::value::{KindValue, NamespaceValue};

/// A clock giving milliseconds since the Unix epoch.
pub type Clock = Box<dyn Fn() -> u64 + Send>;

/// The adapter kad owns; the node reaches the namespace store through
/// [`KadStore::inner`] / [`KadStore::inner_mut`].
pub struct KadStore {
    inner: NamespaceStore,
    clock: Clock,
}

impl std::fmt::Debug for KadStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KadStore")
            .field("inner", &self.inner)
            .finish()
    }
}

impl KadStore {
    /// Wraps a namespace store with a clock.
    pub fn new(inner: NamespaceStore, clock: Clock) -> Self {
        Self { inner, clock }
    }

    /// The namespace store.
    pub fn inner(&self) -> &NamespaceStore {
        &self.inner
    }

    /// The namespace store, mutably.
    pub fn inner_mut(&mut self) -> &mut NamespaceStore {
        &mut self.inner
    }

    /// The clock's current time.
    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    fn dht_key(k: &RecordKey) -> Option<DhtKey> {
        k.as_ref().try_into().ok()
    }

    fn kind_value(&self, kind: &str, now: u64) -> Option<KindValue> {
        let (namespaces, _) = self.inner.discover_kind(kind, 0, None, now).ok()?;
        (!namespaces.is_empty()).then_some(KindValue { namespaces })
    }

    fn record(key: DhtKey, value: Vec<u8>) -> Record {
        Record {
            key: RecordKey::new(&key),
            value,
            publisher: None,
            expires: None,
        }
    }
}

impl RecordStore for KadStore {
    type RecordsIter<'a> = std::vec::IntoIter<Cow<'a, Record>>;
    type ProvidedIter<'a> = std::vec::IntoIter<Cow<'a, ProviderRecord>>;

    fn get(&self, k: &RecordKey) -> Option<Cow<'_, Record>> {
        let key = Self::dht_key(k)?;
        let now = self.now();
        if let Some(quorum_key) = self.inner.quorum_key_for(&key) {
            let value = self.inner.namespace_value(&quorum_key, now)?;
            return Some(Cow::Owned(Self::record(key, value.encode())));
        }
        let kind = self.inner.kind_for_key(&key)?;
        let value = self.kind_value(&kind, now)?;
        Some(Cow::Owned(Self::record(key, value.encode())))
    }

    /// Merges a namespace or kind value. Values that do not decode, or whose
    /// key is not the one their content derives, are refused as
    /// `ValueTooLarge` (kad's error type has no better variant); a full
    /// store is `MaxRecords`.
    fn put(&mut self, r: Record) -> Result<()> {
        let Some(key) = Self::dht_key(&r.key) else {
            return Err(Error::ValueTooLarge);
        };
        let now = self.now();
        let limits = self.inner.config().limits;
        if let Ok(value) = NamespaceValue::decode(&r.value, &limits) {
            let derived = value
                .namespace
                .quorum_key()
                .map(|qk| crate::namespace_key(&qk));
            if derived != Some(key) {
                return Err(Error::ValueTooLarge);
            }
            let report = self.inner.merge_value(value, now);
            if report
                .peers_rejected
                .iter()
                .any(|(_, c)| *c == rendezvous_proto::StatusCode::QuotaExceeded)
            {
                return Err(Error::MaxRecords);
            }
            return Ok(());
        }
        let value = KindValue::decode(&r.value, &limits).map_err(|_| Error::ValueTooLarge)?;
        for namespace in value.namespaces {
            // Each entry must be of the kind the key names.
            let Some(kind) = namespace.kind.clone() else {
                continue;
            };
            if kind_key(&kind) != key {
                continue;
            }
            let peers = Vec::new();
            self.inner
                .merge_value(NamespaceValue { namespace, peers }, now);
        }
        Ok(())
    }

    fn remove(&mut self, _k: &RecordKey) {
        // Records leave by expiry, liveness or their owner's unregister,
        // never because kad asks: kad removes records it deems expired by
        // its own clock, which is not ours.
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        let now = self.now();
        let mut out: Vec<Cow<'_, Record>> = self
            .inner
            .values(now)
            .into_iter()
            .filter_map(|v| {
                let key = crate::namespace_key(&v.namespace.quorum_key()?);
                Some(Cow::Owned(Self::record(key, v.encode())))
            })
            .collect();
        for kind in self.inner.kinds() {
            if let Some(value) = self.kind_value(&kind, now) {
                out.push(Cow::Owned(Self::record(kind_key(&kind), value.encode())));
            }
        }
        out.into_iter()
    }

    fn add_provider(&mut self, _record: ProviderRecord) -> Result<()> {
        // rdht does not use provider records; refusing them keeps memory
        // bounded against peers that send them anyway.
        Err(Error::MaxProvidedKeys)
    }

    fn providers(&self, _key: &RecordKey) -> Vec<ProviderRecord> {
        Vec::new()
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        Vec::new().into_iter()
    }

    fn remove_provider(&mut self, _k: &RecordKey, _p: &PeerId) {}
}
