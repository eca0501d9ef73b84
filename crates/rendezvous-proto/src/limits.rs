//! Protocol limits and their defaults (PROTOCOL.md lists the same values).

/// Bounds every decoder and validator applies.
///
/// Validation also applies the wire caps (65,535 members, 64 addresses of
/// 1,024 bytes, kinds of 255 bytes) whatever these say: beyond them the
/// encoding, and so the signed bytes, could not hold the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest quorum size `n` a namespace may declare.
    pub max_members: u32,
    /// Longest time between now and a record's expiry, in milliseconds.
    pub max_ttl_ms: u64,
    /// Most listen addresses in one peer record.
    pub max_addrs: usize,
    /// Longest encoded multiaddr, in bytes.
    pub max_addr_bytes: usize,
    /// Longest kind label, in bytes.
    pub max_kind_bytes: usize,
    /// Largest encoded message, in bytes.
    pub max_message_bytes: usize,
}

/// Longest encoded PeerId accepted (identity multihash of an Ed25519 key is
/// 38 bytes; SHA-256 multihashes of larger keys are 34).
pub const MAX_PEER_ID_BYTES: usize = 64;

impl Limits {
    /// The defaults: n <= 1024, TTL <= 72 h (libp2p rendezvous's maximum),
    /// 16 addresses of at most 256 bytes, kinds of at most 32 bytes,
    /// messages of at most 1 MiB (libp2p rendezvous's cap; a namespace
    /// record with 1024 members and threshold 683 is about 80 KiB).
    pub const DEFAULT: Limits = Limits {
        max_members: 1024,
        max_ttl_ms: 72 * 3600 * 1000,
        max_addrs: 16,
        max_addr_bytes: 256,
        max_kind_bytes: 32,
        max_message_bytes: 1 << 20,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
