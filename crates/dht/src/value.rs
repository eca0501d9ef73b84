//! The value stored under a namespace's DHT key: the namespace record plus
//! its live peer records. Each part is self-certifying, so any replica can
//! re-verify a value and merging values is a state-based CRDT.

use rendezvous_proto::codec::{MIN_NAMESPACE_RECORD_BYTES, MIN_PEER_RECORD_BYTES};
use rendezvous_proto::wire::{Reader, Writer};
use rendezvous_proto::{DecodeError, HandoverRecord, Limits, NamespaceRecord, PeerRecord};

/// Version byte of the value encoding.
pub const VALUE_VERSION: u8 = 1;

/// A namespace's DHT value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceValue {
    /// The namespace record.
    pub namespace: NamespaceRecord,
    /// Peer records (at most one per index in a well-formed value).
    pub peers: Vec<PeerRecord>,
}

impl NamespaceValue {
    /// Canonical encoding: version, namespace record, u16 count, peer records.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(VALUE_VERSION);
        self.namespace.encode_into(&mut w);
        w.u16(self.peers.len().min(u16::MAX as usize) as u16);
        for p in self.peers.iter().take(u16::MAX as usize) {
            p.encode_into(&mut w);
        }
        w.into_bytes()
    }

    /// Strict, bounded decoding.
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Self, DecodeError> {
        if bytes.len() > limits.max_message_bytes {
            return Err(DecodeError::TooLarge);
        }
        let mut r = Reader::new(bytes);
        r.expect_version(VALUE_VERSION)?;
        let namespace = NamespaceRecord::decode_from(&mut r)?;
        let count = r.list_len16(limits.max_members as usize, MIN_PEER_RECORD_BYTES, "peers")?;
        let mut peers = Vec::with_capacity(count);
        for _ in 0..count {
            peers.push(PeerRecord::decode_from(&mut r)?);
        }
        r.finish()?;
        Ok(Self { namespace, peers })
    }
}

/// The value stored under a kind's DHT key: the namespace records of that
/// kind (each self-certifying, so a replica re-verifies every entry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindValue {
    /// Namespace records of the kind.
    pub namespaces: Vec<NamespaceRecord>,
}

impl KindValue {
    /// Canonical encoding: version, u16 count, namespace records.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(VALUE_VERSION);
        w.u16(self.namespaces.len().min(u16::MAX as usize) as u16);
        for ns in self.namespaces.iter().take(u16::MAX as usize) {
            ns.encode_into(&mut w);
        }
        w.into_bytes()
    }

    /// Strict, bounded decoding.
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Self, DecodeError> {
        if bytes.len() > limits.max_message_bytes {
            return Err(DecodeError::TooLarge);
        }
        let mut r = Reader::new(bytes);
        r.expect_version(VALUE_VERSION)?;
        let count = r.list_len16(u16::MAX as usize, MIN_NAMESPACE_RECORD_BYTES, "namespaces")?;
        let mut namespaces = Vec::with_capacity(count);
        for _ in 0..count {
            namespaces.push(NamespaceRecord::decode_from(&mut r)?);
        }
        r.finish()?;
        Ok(Self { namespaces })
    }
}

/// Version byte of a [`HandoverValue`]: its first byte tells it apart
/// from a [`NamespaceValue`] (version 1) under the same key.
pub const HANDOVER_VALUE_VERSION: u8 = 2;

/// The value stored under a *retired* namespace's DHT key: the handover
/// that retired it (PROTOCOL.md 15.4). Self-certifying like the rest: a
/// replica re-verifies it under the old key before it stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandoverValue {
    /// The handover, threshold-signed by the retired key.
    pub handover: HandoverRecord,
}

impl HandoverValue {
    /// Canonical encoding: version (2), then the handover record.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(HANDOVER_VALUE_VERSION);
        self.handover.encode_into(&mut w);
        w.into_bytes()
    }

    /// Strict decoding (a handover has a fixed size: 210 bytes in all).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        r.expect_version(HANDOVER_VALUE_VERSION)?;
        let handover = HandoverRecord::decode_from(&mut r)?;
        r.finish()?;
        Ok(Self { handover })
    }
}
