//! libp2p-kad's `RecordStore` over the rendezvous [`Server`] core and its
//! [`NamespaceStore`].
//!
//! Kademlia stores opaque values; ours are self-certifying
//! ([`NamespaceValue`] under a namespace key, [`KindValue`] under a kind
//! key), so `get` serves what this node vouches for right now, and `put`
//! takes only what this node holds already (kad puts its own
//! publications there). Run kad with `StoreInserts::FilterBoth` and feed
//! inbound records to [`Server::handle_value`], which verifies them off
//! the event loop under per-sender budgets: kad acknowledges a PUT
//! whatever the store decides, so publishers confirm by reading back. Kad owns this adapter,
//! so the node reaches its server core through [`KadStore::inner_mut`].
//!
//! The store needs `now` and kad's trait has no parameter for it, so the
//! adapter holds a clock closure: the node passes the system clock, the
//! simulator its virtual one.

use std::borrow::Cow;

use libp2p_identity::PeerId;
use libp2p_kad::store::{Error, RecordStore, Result};
use libp2p_kad::{ProviderRecord, Record, RecordKey};

use crate::keys::{kind_key, DhtKey};
use crate::server::{precheck_kad_value, Server, ValueError};
use crate::value::{HandoverValue, KindValue};

/// A clock giving milliseconds since the Unix epoch.
pub type Clock = Box<dyn Fn() -> u64 + Send>;

/// The adapter kad owns; the node reaches the server core through
/// [`KadStore::inner`] / [`KadStore::inner_mut`].
pub struct KadStore {
    inner: Server,
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
    /// Wraps a server core with a clock.
    pub fn new(inner: Server, clock: Clock) -> Self {
        Self { inner, clock }
    }

    /// The server core.
    pub fn inner(&self) -> &Server {
        &self.inner
    }

    /// The server core, mutably.
    pub fn inner_mut(&mut self) -> &mut Server {
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
        let (namespaces, _) = self.inner.store().discover_kind(kind, 0, None, now).ok()?;
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
        let store = self.inner.store();
        // A retired namespace's key holds its handover.
        if let Some(h) = store
            .handover_key_for(&key)
            .and_then(|qk| store.handover(&qk, now))
        {
            let value = HandoverValue {
                handover: h.clone(),
            };
            return Some(Cow::Owned(Self::record(key, value.encode())));
        }
        if let Some(quorum_key) = store.quorum_key_for(&key) {
            // One record per key: a value over the message cap is served
            // by its first page (the rest reaches a replica by PUTs).
            let max = store.config().limits.max_message_bytes;
            let value = store
                .namespace_value_pages(&quorum_key, now, max)
                .into_iter()
                .next()?;
            return Some(Cow::Owned(Self::record(key, value.encode())));
        }
        let kind = store.kind_for_key(&key)?;
        let value = self.kind_value(&kind, now)?;
        Some(Cow::Owned(Self::record(key, value.encode())))
    }

    /// Kad calls this only with what this node publishes itself (inbound
    /// PUTs are filtered to [`Server::handle_value`]), which the store
    /// already holds: it is accepted if nothing in it is left to verify.
    /// Anything else is refused rather than verified here, on the event
    /// loop: values that do not decode, or whose key is not the one their
    /// content derives, or that hold anything new, as `ValueTooLarge`
    /// (kad's error type has no better variant); a full store as
    /// `MaxRecords`.
    fn put(&mut self, r: Record) -> Result<()> {
        let now = self.now();
        match precheck_kad_value(self.inner.store_mut(), now, r.key.as_ref(), &r.value) {
            Ok(p) if p.checked.is_empty() => Ok(()),
            Ok(_) => Err(Error::ValueTooLarge),
            Err(ValueError::Full) => Err(Error::MaxRecords),
            Err(_) => Err(Error::ValueTooLarge),
        }
    }

    fn remove(&mut self, _k: &RecordKey) {
        // Records leave by expiry, liveness or their owner's unregister,
        // never because kad asks: kad removes records it deems expired by
        // its own clock, which is not ours.
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        let now = self.now();
        let store = self.inner.store();
        let max = store.config().limits.max_message_bytes;
        let mut out: Vec<Cow<'_, Record>> = store
            .quorum_keys()
            .into_iter()
            .flat_map(|qk| {
                let key = crate::namespace_key(&qk);
                store
                    .namespace_value_pages(&qk, now, max)
                    .into_iter()
                    .map(move |page| Cow::Owned(Self::record(key, page.encode())))
            })
            .collect();
        for qk in store.retired_keys() {
            if let Some(h) = store.handover(&qk, now) {
                let value = HandoverValue {
                    handover: h.clone(),
                };
                out.push(Cow::Owned(Self::record(
                    crate::namespace_key(&qk),
                    value.encode(),
                )));
            }
        }
        for kind in self.inner.store().kinds() {
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
