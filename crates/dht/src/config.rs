//! Configuration of a rendezvous node's store: limits, quotas, liveness,
//! admission.

use std::collections::BTreeSet;

use rendezvous_proto::{Limits, QuorumKey};

/// Quotas that keep a node's memory bounded under flooding. Over a quota
/// the node answers `QuotaExceeded` instead of growing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quotas {
    /// Namespaces stored in total. When full, a namespace with no live
    /// peer is dropped to make room before a new one is refused.
    pub max_namespaces: usize,
    /// Peer records stored in total.
    pub max_peer_records: usize,
    /// Registrations (namespaces + peer records) that one remote peer may
    /// hold at once; libp2p rendezvous uses 32.
    pub max_registrations_per_source: usize,
    /// Bytes of records (encoded) stored in total.
    pub max_bytes: usize,
    /// Bytes of records one remote peer may hold through direct
    /// registrations.
    pub max_bytes_per_source: usize,
    /// Bytes of records stored here because one other node replicated them
    /// (a kad PUT or GET answer of it): one node cannot fill the store
    /// with valid records of its own making.
    pub max_replicated_bytes_per_node: usize,
}

impl Default for Quotas {
    /// 100,000 namespaces, 1,000,000 peer records, 64 registrations per
    /// source; 1 GiB of records in all, 4 MiB per source, 128 MiB
    /// replicated by any one node.
    fn default() -> Self {
        Self {
            max_namespaces: 100_000,
            max_peer_records: 1_000_000,
            max_registrations_per_source: 64,
            max_bytes: 1 << 30,
            max_bytes_per_source: 4 << 20,
            max_replicated_bytes_per_node: 128 << 20,
        }
    }
}

/// An optional admission policy for operators who need one: a valid
/// namespace is cheap to make (anyone can run a DKG alone), so a node may
/// choose to serve only some kinds or some quorum keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admission {
    /// If set, only namespaces of these kinds are accepted.
    pub allowed_kinds: Option<BTreeSet<String>>,
    /// If set, only these quorum keys are accepted.
    pub allowed_quorum_keys: Option<BTreeSet<QuorumKey>>,
}

impl Admission {
    /// Whether the policy admits a namespace.
    pub fn admits(&self, quorum_key: &QuorumKey, kind: Option<&str>) -> bool {
        let kind_ok = match &self.allowed_kinds {
            None => true,
            Some(kinds) => kind.is_some_and(|k| kinds.contains(k)),
        };
        let key_ok = match &self.allowed_quorum_keys {
            None => true,
            Some(keys) => keys.contains(quorum_key),
        };
        kind_ok && key_ok
    }
}

/// Liveness parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivenessConfig {
    /// Mean time between pings of one peer (each interval is jittered by
    /// +-10% so that pings of many peers spread out).
    pub ping_interval_ms: u64,
    /// Consecutive misses after which a peer is unreachable.
    pub max_misses: u32,
    /// Longest wait between two pings of an unreachable peer. While a
    /// peer stays unreachable, the wait doubles after each miss (from one
    /// interval) up to this: a node does not keep dialling addresses that
    /// do not answer every few seconds for as long as a record lives.
    pub max_backoff_ms: u64,
    /// Misses beyond `max_misses` during which an unreachable peer is
    /// still pinged every interval, before the backoff starts: a peer cut
    /// off by a partition of up to `steady_retries` intervals is listed
    /// again within one interval of the heal (24 at 5 s: two minutes).
    pub steady_retries: u32,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        Self {
            ping_interval_ms: 5_000,
            max_misses: 3,
            max_backoff_ms: 300_000,
            steady_retries: 24,
        }
    }
}

/// Everything a [`crate::NamespaceStore`] is configured with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreConfig {
    /// Protocol limits (n, TTL, addresses, message size).
    pub limits: Limits,
    /// Quotas.
    pub quotas: Quotas,
    /// Liveness.
    pub liveness: LivenessConfig,
    /// Admission policy.
    pub admission: Admission,
}
