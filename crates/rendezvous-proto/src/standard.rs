//! The standard libp2p signed peer record a member carries beside its
//! rdht envelope, so that rendezvous nodes can answer the standard
//! `/rendezvous/1.0.0` DISCOVER with records a stock client verifies
//! (PROTOCOL.md 16).
//!
//! It is exactly what `libp2p_core::PeerRecord::new` makes (libp2p RFC
//! 0002, the "legacy" routing-state record that rust-libp2p's rendezvous
//! uses): a signed envelope with domain `libp2p-routing-state`, payload
//! type `/libp2p/routing-state-record` and the protobuf payload
//!
//! ```text
//! PeerRecord  { bytes peer_id = 1; uint64 seq = 2; repeated AddressInfo addresses = 3; }
//! AddressInfo { bytes multiaddr = 1; }
//! ```
//!
//! signed by the member's own identity key. A rendezvous cannot make one
//! (it cannot sign for the member), so the member signs it at every
//! refresh with the same PeerId, seq and addresses as its rdht envelope;
//! validation checks that binding ([`crate::seated::check_seated_fields`])
//! and the signature (in the verification jobs, with the envelope's).
//!
//! Decoding is strict (fields in order, each once, `seq` omitted when 0
//! as proto3 writes it, minimal varints, nothing after): the record has
//! one encoding, the one libp2p-core writes, which the tests check both
//! ways. The encoded bytes are kept as received and served as they are.

use libp2p_identity::{Keypair, PeerId};
use multiaddr::Multiaddr;

use crate::envelope::{
    envelope_signing_bytes, field, read_envelope, read_field, read_varint, write_envelope,
    write_varint, KEY_TYPE_ED25519,
};
use crate::error::DecodeError;
use crate::records::{WIRE_MAX_ADDRS, WIRE_MAX_ADDR_BYTES};
use crate::wire::Reader;

/// The standard record's domain separation string.
pub const STANDARD_DOMAIN: &str = "libp2p-routing-state";
/// The standard record's payload type.
pub const STANDARD_PAYLOAD_TYPE: &[u8] = b"/libp2p/routing-state-record";
/// Longest key field accepted in a standard record (an Ed25519 key's
/// protobuf is 36 bytes; validation accepts only Ed25519).
const MAX_KEY_BYTES: usize = 64;
/// Longest signature (Ed25519's is 64 bytes).
const MAX_SIGNATURE_BYTES: usize = 64;
/// Longest PeerId (an identity multihash of an Ed25519 key is 38 bytes;
/// a sha256 multihash 34).
const MAX_PEER_ID_BYTES: usize = 64;
/// Longest payload: the PeerId, the seq and every address at its cap.
pub const MAX_STANDARD_PAYLOAD_BYTES: usize =
    2 + MAX_PEER_ID_BYTES + 11 + WIRE_MAX_ADDRS * (3 + 3 + WIRE_MAX_ADDR_BYTES);
/// Longest encoded standard record.
pub const MAX_STANDARD_BYTES: usize =
    MAX_STANDARD_PAYLOAD_BYTES + MAX_KEY_BYTES + MAX_SIGNATURE_BYTES + 64;

/// A standard signed peer record, decoded; the signature is checked by
/// [`StandardRecord::verify`], never by decoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StandardRecord {
    /// libp2p's key type number of the signer's key.
    key_type: u64,
    /// The signer's key bytes.
    key: Vec<u8>,
    /// The PeerId the payload names.
    peer_id: PeerId,
    /// The payload's sequence number.
    seq: u64,
    /// The payload's addresses.
    addrs: Vec<Multiaddr>,
    /// The signature.
    signature: Vec<u8>,
    /// The payload exactly as signed.
    payload: Vec<u8>,
    /// The whole envelope, as served to standard clients.
    encoded: Vec<u8>,
}

impl StandardRecord {
    /// Signs a record of `keypair`'s PeerId with this seq and these
    /// addresses.
    pub fn sign(keypair: &Keypair, seq: u64, addrs: Vec<Multiaddr>) -> Self {
        let peer_id = keypair.public().to_peer_id();
        let payload = encode_payload(&peer_id, seq, &addrs);
        let signature = keypair.sign(&signing_bytes(&payload)).unwrap_or_default();
        let (key_type, key) = match keypair.public().try_into_ed25519() {
            Ok(ed) => (KEY_TYPE_ED25519, ed.to_bytes().to_vec()),
            // Only Ed25519 identities register; another type makes a
            // record validation refuses (`UnsupportedKeyType`).
            Err(_) => (0, Vec::new()),
        };
        Self::assemble(key_type, key, peer_id, seq, addrs, signature, payload)
    }

    /// This record with `seq` changed after signing: its signature no
    /// longer verifies (tests).
    #[cfg(feature = "testkit")]
    pub(crate) fn with_seq_unsigned(&self, seq: u64) -> Self {
        let payload = encode_payload(&self.peer_id, seq, &self.addrs);
        Self::assemble(
            self.key_type,
            self.key.clone(),
            self.peer_id,
            seq,
            self.addrs.clone(),
            self.signature.clone(),
            payload,
        )
    }

    fn assemble(
        key_type: u64,
        key: Vec<u8>,
        peer_id: PeerId,
        seq: u64,
        addrs: Vec<Multiaddr>,
        signature: Vec<u8>,
        payload: Vec<u8>,
    ) -> Self {
        let encoded = write_envelope(key_type, &key, STANDARD_PAYLOAD_TYPE, &payload, &signature);
        Self {
            key_type,
            key,
            peer_id,
            seq,
            addrs,
            signature,
            payload,
            encoded,
        }
    }

    /// The PeerId the payload names.
    pub fn peer_id(&self) -> &PeerId {
        &self.peer_id
    }

    /// The payload's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The payload's addresses.
    pub fn addrs(&self) -> &[Multiaddr] {
        &self.addrs
    }

    /// libp2p's key type number of the signer's key.
    pub fn key_type(&self) -> u64 {
        self.key_type
    }

    /// The signer's key bytes.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The signature.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// The encoded signed envelope (what a stock client decodes with
    /// `SignedEnvelope::from_protobuf_encoding`).
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// The exact bytes the signature covers.
    pub fn signing_bytes(&self) -> Vec<u8> {
        signing_bytes(&self.payload)
    }

    /// Whether the signature verifies under the record's Ed25519 key (any
    /// other key type does not verify).
    pub fn verify(&self) -> bool {
        if self.key_type != KEY_TYPE_ED25519 {
            return false;
        }
        libp2p_identity::ed25519::PublicKey::try_from_bytes(&self.key)
            .is_ok_and(|k| k.verify(&self.signing_bytes(), &self.signature))
    }

    /// Decodes a whole buffer strictly (see the module docs).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_STANDARD_BYTES {
            return Err(DecodeError::TooLong("standard record"));
        }
        let mut r = Reader::new(bytes);
        let raw = read_envelope(
            &mut r,
            STANDARD_PAYLOAD_TYPE,
            [
                MAX_KEY_BYTES,
                MAX_STANDARD_PAYLOAD_BYTES,
                MAX_SIGNATURE_BYTES,
            ],
        )?;
        r.finish()?;
        let payload = raw.payload;
        let (peer_id, seq, addrs) = decode_payload(payload)?;
        let record = Self::assemble(
            raw.key_type,
            raw.key,
            peer_id,
            seq,
            addrs,
            raw.signature.to_vec(),
            payload.to_vec(),
        );
        // One encoding only: what was read must be what we would write.
        if record.encoded != bytes {
            return Err(DecodeError::InvalidValue("standard record encoding"));
        }
        Ok(record)
    }
}

/// The protobuf payload, as prost writes it (proto3: `seq` 0 omitted).
fn encode_payload(peer_id: &PeerId, seq: u64, addrs: &[Multiaddr]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + addrs.len() * 24);
    field(&mut out, 1, &peer_id.to_bytes());
    if seq != 0 {
        out.push(2 << 3);
        write_varint(&mut out, seq);
    }
    for a in addrs {
        let mut info = Vec::with_capacity(a.len() + 3);
        field(&mut info, 1, a.as_ref());
        field(&mut out, 3, &info);
    }
    out
}

fn decode_payload(payload: &[u8]) -> Result<(PeerId, u64, Vec<Multiaddr>), DecodeError> {
    let mut r = Reader::new(payload);
    let peer_id = PeerId::from_bytes(read_field(&mut r, 1, MAX_PEER_ID_BYTES, "peer id")?)
        .map_err(|_| DecodeError::InvalidValue("peer id"))?;
    let mut seq = 0;
    let mut addrs = Vec::new();
    while r.remaining() > 0 {
        match r.u8()? {
            0x10 if seq == 0 && addrs.is_empty() => {
                seq = read_varint(&mut r)?;
                if seq == 0 {
                    return Err(DecodeError::InvalidValue("seq"));
                }
            }
            0x1a => {
                if addrs.len() >= WIRE_MAX_ADDRS {
                    return Err(DecodeError::TooLong("addresses"));
                }
                let len = read_varint(&mut r)?;
                if len > (WIRE_MAX_ADDR_BYTES + 3) as u64 {
                    return Err(DecodeError::TooLong("address info"));
                }
                let mut info = Reader::new(r.take(len as usize)?);
                let bytes = read_field(&mut info, 1, WIRE_MAX_ADDR_BYTES, "multiaddr")?;
                info.finish()?;
                let addr = Multiaddr::try_from(bytes.to_vec())
                    .map_err(|_| DecodeError::InvalidValue("multiaddr"))?;
                addrs.push(addr);
            }
            _ => return Err(DecodeError::InvalidValue("standard payload field")),
        }
    }
    Ok((peer_id, seq, addrs))
}

fn signing_bytes(payload: &[u8]) -> Vec<u8> {
    envelope_signing_bytes(STANDARD_DOMAIN, STANDARD_PAYLOAD_TYPE, payload)
}
