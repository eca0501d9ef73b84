//! DHT key derivation (PROTOCOL.md, "DHT keys").

use rendezvous_proto::QuorumKey;
use sha2::{Digest, Sha256};

/// Domain tag of a namespace's DHT key.
pub const NAMESPACE_KEY_TAG: &[u8] = b"rdht/ns/v1";
/// Domain tag of a kind index's DHT key.
pub const KIND_KEY_TAG: &[u8] = b"rdht/kind/v1";

/// A 32-byte DHT key.
pub type DhtKey = [u8; 32];

/// `sha256("rdht/ns/v1" || quorum_key)`: where a namespace's value lives.
pub fn namespace_key(quorum_key: &QuorumKey) -> DhtKey {
    let mut h = Sha256::new();
    h.update(NAMESPACE_KEY_TAG);
    h.update(quorum_key.0);
    h.finalize().into()
}

/// `sha256("rdht/kind/v1" || kind)`: where the index of one kind lives.
pub fn kind_key(kind: &str) -> DhtKey {
    let mut h = Sha256::new();
    h.update(KIND_KEY_TAG);
    h.update(kind.as_bytes());
    h.finalize().into()
}
