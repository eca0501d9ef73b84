//! The envelope (protocol version 2): what changes between refreshes of a
//! member's registration (addresses, sequence number, expiry) and the hash
//! of its seat, signed by the member's own libp2p identity key.
//!
//! It is a libp2p signed envelope (libp2p RFC 0002, as
//! `libp2p_core::SignedEnvelope` writes it) with rdht's domain and payload
//! type, so any libp2p implementation can check it. The envelope is the
//! protobuf
//!
//! ```text
//! Envelope  { bytes public_key = 1; bytes payload_type = 2; bytes payload = 3; bytes signature = 5; }
//! PublicKey { KeyType Type = 1; bytes Data = 2; }        (libp2p's keys.proto; Ed25519 = 1)
//! ```
//!
//! and the signature covers
//! `varint(len(domain)) || domain || varint(len(payload_type)) || payload_type
//! || varint(len(payload)) || payload`. The payload is rdht's:
//!
//! ```text
//! PeerPayload =
//!   version        u8 = 0x02
//!   seat_hash      [32]            sha256 of the seat's encoding
//!   addrs          list8<bytes16>  count <= 64; each a multiaddr of <= 1024 bytes
//!   seq            u64
//!   expires_at_ms  u64
//! ```
//!
//! Decoding is strict, as for every rdht encoding: exactly the fields
//! 1, 2, 3, 5 in that order, each once, minimal varints, nothing after, so
//! an envelope has one encoding. That strictness is why this small codec
//! is written here rather than taken from `libp2p-core` (whose decoder
//! accepts any field order and unknown fields); the tests check it
//! against `libp2p-core` both ways.

use libp2p_identity::{Keypair, PeerId, PublicKey};
use multiaddr::Multiaddr;
use rand_core::RngCore;

use crate::ed25519::{verify_ed25519_steps, Ed25519Item};

use crate::error::DecodeError;
use crate::records::{decode_addrs, encode_addrs, WIRE_MAX_ADDRS, WIRE_MAX_ADDR_BYTES};
use crate::seat::{SeatHash, VERSION_2};
use crate::wire::{Reader, Writer};

/// The envelope's domain separation string.
pub const ENVELOPE_DOMAIN: &str = "rdht-peer-record";
/// The envelope's payload type.
pub const PAYLOAD_TYPE: &[u8] = b"/rdht/peer-record/2";
/// libp2p's key type number of Ed25519 (keys.proto).
pub const KEY_TYPE_ED25519: u64 = 1;
/// Longest public key field accepted (an RSA key is the largest libp2p
/// key type; anything longer is not a key).
const MAX_PUBLIC_KEY_BYTES: usize = 1024;
/// Longest signature field accepted (Ed25519's is 64 bytes).
const MAX_SIGNATURE_BYTES: usize = 512;
/// Longest payload: every address at its cap.
pub const MAX_PAYLOAD_BYTES: usize = 1 + 32 + 1 + WIRE_MAX_ADDRS * (2 + WIRE_MAX_ADDR_BYTES) + 16;

/// What an envelope's payload says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerPayload {
    /// The hash of the seat this refresh belongs to.
    pub seat_hash: SeatHash,
    /// Where to reach the member.
    pub addrs: Vec<Multiaddr>,
    /// Monotonic sequence number: a higher one replaces a lower one.
    pub seq: u64,
    /// When it expires (ms since the Unix epoch).
    pub expires_at_ms: u64,
}

impl PeerPayload {
    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(VERSION_2);
        w.raw(&self.seat_hash.0);
        encode_addrs(&mut w, &self.addrs);
        w.u64(self.seq);
        w.u64(self.expires_at_ms);
        w.into_bytes()
    }

    /// Decodes a whole buffer strictly.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        r.expect_version(VERSION_2)?;
        let seat_hash = SeatHash(r.array::<32>()?);
        let addrs = decode_addrs(&mut r)?;
        let seq = r.u64()?;
        let expires_at_ms = r.u64()?;
        r.finish()?;
        Ok(Self {
            seat_hash,
            addrs,
            seq,
            expires_at_ms,
        })
    }
}

/// A decoded envelope: the signer's key (as libp2p encodes it), the
/// payload and the signature. Nothing is verified by decoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerEnvelope {
    /// libp2p's key type number of the signer's key.
    pub key_type: u64,
    /// The signer's key bytes (32 bytes for Ed25519).
    pub key: Vec<u8>,
    /// The decoded payload.
    pub payload: PeerPayload,
    /// The payload's encoding, exactly as signed.
    payload_bytes: Vec<u8>,
    /// The signature.
    pub signature: Vec<u8>,
}

impl PeerEnvelope {
    /// Signs `payload` with `keypair` (any libp2p key type signs; only
    /// Ed25519 envelopes are accepted by validation).
    pub fn sign(payload: PeerPayload, keypair: &Keypair) -> Self {
        let payload_bytes = payload.encode();
        let signature = keypair
            .sign(&signing_bytes(&payload_bytes))
            .unwrap_or_default();
        let (key_type, key) = split_public_key(&keypair.public());
        Self {
            key_type,
            key,
            payload,
            payload_bytes,
            signature,
        }
    }

    /// Replaces the payload and keeps the signature (which then no longer
    /// verifies): what an attacker altering a record in transit makes.
    /// For tests, fuzz seeds and test vectors only.
    #[cfg(feature = "testkit")]
    pub fn replace_payload_unsigned(&mut self, payload: PeerPayload) {
        self.payload_bytes = payload.encode();
        self.payload = payload;
    }

    /// The exact bytes the signature covers.
    pub fn signing_bytes(&self) -> Vec<u8> {
        signing_bytes(&self.payload_bytes)
    }

    /// The signer's key as a libp2p public key, if it decodes.
    pub fn public_key(&self) -> Option<PublicKey> {
        match self.key_type {
            // The only type validation accepts, and the one on every
            // refresh's path: decoded from its 32 bytes directly.
            KEY_TYPE_ED25519 => libp2p_identity::ed25519::PublicKey::try_from_bytes(&self.key)
                .ok()
                .map(PublicKey::from),
            _ => {
                PublicKey::try_decode_protobuf(&public_key_protobuf(self.key_type, &self.key)).ok()
            }
        }
    }

    /// The PeerId of the signer's key, if the key decodes.
    pub fn signer(&self) -> Option<PeerId> {
        self.public_key().map(|k| k.to_peer_id())
    }

    /// Whether the envelope's key is `peer_id`'s.
    ///
    /// An Ed25519 PeerId is the identity multihash of the key's protobuf
    /// encoding, so for Ed25519 this compares bytes and decodes no point
    /// (decompressing it costs as much as a fifth of the signature check,
    /// which decodes it anyway: a key that is not a point fails
    /// [`Self::verify`]). Other key types are decoded and hashed.
    pub fn is_signed_by(&self, peer_id: &PeerId) -> bool {
        if self.key_type != KEY_TYPE_ED25519 {
            return self.signer().as_ref() == Some(peer_id);
        }
        let protobuf = public_key_protobuf(self.key_type, &self.key);
        // Identity multihash: code 0x00, then the length (one varint byte:
        // an Ed25519 key's protobuf is 36 bytes), then the bytes.
        let Ok(len) = u8::try_from(protobuf.len()) else {
            return false;
        };
        if len >= 0x80 {
            return false;
        }
        let expected = [&[0x00, len][..], &protobuf].concat();
        peer_id.to_bytes() == expected
    }

    /// Whether the signature verifies under the envelope's own key: for
    /// an Ed25519 key (the only type validation accepts) under ZIP-215's
    /// rules ([`crate::ed25519`], PROTOCOL.md 6.4), which
    /// [`verify_envelopes`] applies to many at once with the same
    /// verdicts; other key types with libp2p's own check.
    pub fn verify(&self) -> bool {
        let message = self.signing_bytes();
        match self.ed25519_item(&message) {
            Some(item) => item.verify(),
            None => self
                .public_key()
                .is_some_and(|k| k.verify(&message, &self.signature)),
        }
    }

    /// The envelope's signature as an Ed25519 check of `message` (its
    /// [`Self::signing_bytes`]), if its key is of type Ed25519.
    fn ed25519_item<'a>(&'a self, message: &'a [u8]) -> Option<Ed25519Item<'a>> {
        (self.key_type == KEY_TYPE_ED25519).then_some(Ed25519Item {
            key: &self.key,
            signature: &self.signature,
            message,
        })
    }

    /// The canonical protobuf encoding.
    pub fn encode(&self) -> Vec<u8> {
        write_envelope(
            self.key_type,
            &self.key,
            PAYLOAD_TYPE,
            &self.payload_bytes,
            &self.signature,
        )
    }

    /// Decodes a whole buffer strictly (see the module docs).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let envelope = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(envelope)
    }

    /// Decodes the envelope's four fields from `r` and leaves what
    /// follows them (a peer record's optional standard record).
    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let raw = read_envelope(
            r,
            PAYLOAD_TYPE,
            [MAX_PUBLIC_KEY_BYTES, MAX_PAYLOAD_BYTES, MAX_SIGNATURE_BYTES],
        )?;
        Ok(Self {
            key_type: raw.key_type,
            key: raw.key,
            payload: PeerPayload::decode(raw.payload)?,
            payload_bytes: raw.payload.to_vec(),
            signature: raw.signature.to_vec(),
        })
    }
}

/// [`PeerEnvelope::verify`] of each envelope, in order, with the Ed25519
/// signatures checked in batches of at most `step` (calling `checkpoint`
/// after each) that fall back to single checks to name the bad ones: the
/// verdicts are exactly the single checks' ([`crate::ed25519`]). The
/// batches' coefficients are seeded from `rng` and from the envelopes.
pub fn verify_envelopes<R: RngCore>(
    envelopes: &[&PeerEnvelope],
    rng: &mut R,
    step: usize,
    checkpoint: &mut dyn FnMut(),
) -> Vec<bool> {
    let messages: Vec<Vec<u8>> = envelopes.iter().map(|e| e.signing_bytes()).collect();
    let mut verdicts = vec![false; envelopes.len()];
    let mut positions = Vec::with_capacity(envelopes.len());
    let mut items = Vec::with_capacity(envelopes.len());
    for (position, (envelope, message)) in envelopes.iter().zip(&messages).enumerate() {
        match envelope.ed25519_item(message) {
            Some(item) => {
                positions.push(position);
                items.push(item);
            }
            // Not Ed25519 (refused by validation before any signature).
            None => verdicts[position] = envelope.verify(),
        }
    }
    let batched = verify_ed25519_steps(&items, rng, step, checkpoint);
    for (position, ok) in positions.into_iter().zip(batched) {
        verdicts[position] = ok;
    }
    verdicts
}

/// The bytes an rdht envelope's signature covers.
fn signing_bytes(payload: &[u8]) -> Vec<u8> {
    envelope_signing_bytes(ENVELOPE_DOMAIN, PAYLOAD_TYPE, payload)
}

/// The bytes a libp2p signed envelope's signature covers:
/// `varint(len(domain)) || domain || varint(len(payload_type)) ||
/// payload_type || varint(len(payload)) || payload`.
pub(crate) fn envelope_signing_bytes(domain: &str, payload_type: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 64);
    for part in [domain.as_bytes(), payload_type, payload] {
        write_varint(&mut out, part.len() as u64);
        out.extend_from_slice(part);
    }
    out
}

/// A libp2p signed envelope's protobuf (fields 1, 2, 3, 5 in order).
pub(crate) fn write_envelope(
    key_type: u64,
    key: &[u8],
    payload_type: &[u8],
    payload: &[u8],
    signature: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + key.len() + signature.len() + 48);
    field(&mut out, 1, &public_key_protobuf(key_type, key));
    field(&mut out, 2, payload_type);
    field(&mut out, 3, payload);
    field(&mut out, 5, signature);
    out
}

/// A signed envelope's fields as read, nothing verified.
pub(crate) struct RawEnvelope<'a> {
    pub(crate) key_type: u64,
    pub(crate) key: Vec<u8>,
    pub(crate) payload: &'a [u8],
    pub(crate) signature: &'a [u8],
}

/// Reads a signed envelope's four fields from `r`, strictly in order,
/// the payload type exactly `payload_type`, the key, payload and
/// signature within `caps` (in that order).
pub(crate) fn read_envelope<'a>(
    r: &mut Reader<'a>,
    payload_type: &[u8],
    caps: [usize; 3],
) -> Result<RawEnvelope<'a>, DecodeError> {
    let [key_cap, payload_cap, signature_cap] = caps;
    let public_key = read_field(r, 1, key_cap, "public key")?;
    if read_field(r, 2, payload_type.len(), "payload type")? != payload_type {
        return Err(DecodeError::InvalidValue("payload type"));
    }
    let payload = read_field(r, 3, payload_cap, "payload")?;
    let signature = read_field(r, 5, signature_cap, "signature")?;
    let mut k = Reader::new(public_key);
    if k.u8()? != 0x08 {
        return Err(DecodeError::InvalidValue("key type"));
    }
    let key_type = read_varint(&mut k)?;
    let key = read_field(&mut k, 2, key_cap, "key")?.to_vec();
    k.finish()?;
    Ok(RawEnvelope {
        key_type,
        key,
        payload,
        signature,
    })
}

/// A libp2p public key's type number and raw bytes.
fn split_public_key(key: &PublicKey) -> (u64, Vec<u8>) {
    match key.clone().try_into_ed25519() {
        Ok(ed) => (KEY_TYPE_ED25519, ed.to_bytes().to_vec()),
        // Other types: keep libp2p's own encoding apart (only tests sign
        // with them; validation refuses them by type).
        Err(_) => {
            let proto = key.encode_protobuf();
            let mut r = Reader::new(&proto);
            let parsed = (|| {
                r.u8().ok().filter(|b| *b == 0x08)?;
                let key_type = read_varint(&mut r).ok()?;
                let data = read_field(&mut r, 2, MAX_PUBLIC_KEY_BYTES, "key").ok()?;
                Some((key_type, data.to_vec()))
            })();
            parsed.unwrap_or((0, Vec::new()))
        }
    }
}

/// libp2p's protobuf `PublicKey { Type, Data }`.
pub(crate) fn public_key_protobuf(key_type: u64, key: &[u8]) -> Vec<u8> {
    let mut out = vec![0x08];
    write_varint(&mut out, key_type);
    field(&mut out, 2, key);
    out
}

/// A length-delimited protobuf field.
pub(crate) fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
    out.push(number << 3 | 2);
    write_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

pub(crate) fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A minimal varint of at most 10 bytes.
pub(crate) fn read_varint(r: &mut Reader<'_>) -> Result<u64, DecodeError> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let b = r.u8()?;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            // A final zero byte after others is a non-minimal encoding.
            if b == 0 && i > 0 {
                return Err(DecodeError::InvalidValue("varint"));
            }
            return Ok(v);
        }
    }
    Err(DecodeError::InvalidValue("varint"))
}

/// Field `number` (length-delimited), of at most `cap` bytes.
pub(crate) fn read_field<'a>(
    r: &mut Reader<'a>,
    number: u8,
    cap: usize,
    what: &'static str,
) -> Result<&'a [u8], DecodeError> {
    if r.u8()? != (number << 3 | 2) {
        return Err(DecodeError::InvalidValue(what));
    }
    let len = read_varint(r)?;
    if len > cap as u64 {
        return Err(DecodeError::TooLong(what));
    }
    r.take(len as usize)
}
