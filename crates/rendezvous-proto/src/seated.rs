//! A member's registration in protocol version 2: its [`Seat`] (signed
//! with its key share, valid for the epoch) and its [`PeerEnvelope`]
//! (signed with its libp2p identity key at every refresh).
//!
//! ```text
//! PeerRecord =
//!   seat       Seat                  (starts with the version byte 0x02)
//!   envelope   bytes32               the libp2p signed envelope, <= MAX_ENVELOPE_BYTES,
//!                                    optionally followed (inside the same bytes32) by
//!                                    the protobuf field 7 (tag 0x3a, varint length)
//!                                    holding the member's standard signed peer record
//!                                    (`standard.rs`, PROTOCOL.md 16)
//! ```
//!
//! Validation ([`check_seated_fields`], then the envelope and the seat
//! signatures) accepts a record only if the envelope verifies under the
//! key of the PeerId the seat names, names this seat's hash, and the seat
//! verifies under `PK_index` (or was verified before): so nobody but the
//! PeerId's owner can say where that PeerId listens, and nobody but the
//! holder of share `index` can seat a PeerId at `index`.

use libp2p_identity::{Keypair, PeerId};
use multiaddr::Multiaddr;

use crate::envelope::{PeerEnvelope, PeerPayload, KEY_TYPE_ED25519, MAX_PAYLOAD_BYTES};
use crate::error::{DecodeError, StatusCode};
use crate::limits::Limits;
use crate::records::{NamespaceRecord, QuorumKey};
use crate::seat::Seat;
use crate::standard::{StandardRecord, MAX_STANDARD_BYTES};
use crate::validate::{check_addrs, check_expiry, VerifiedNamespace};
use crate::wire::{Reader, Writer};

/// Longest envelope: the largest payload plus the key, type and
/// signature fields around it.
pub const MAX_ENVELOPE_BYTES: usize = MAX_PAYLOAD_BYTES + 2048;

/// Longest envelope field of a peer record: the envelope and, after it,
/// the standard record's field.
pub const MAX_ENVELOPE_FIELD_BYTES: usize = MAX_ENVELOPE_BYTES + MAX_STANDARD_BYTES + 8;

/// The protobuf tag of the standard record's field after the envelope's
/// (field 7, length-delimited): libp2p decoders of the envelope skip it.
const STANDARD_FIELD: u8 = 7;

/// A member's seat and its signed envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerRecord {
    /// Who sits at which index (signed with the key share).
    pub seat: Seat,
    /// Where it is now (signed with the PeerId's key).
    pub envelope: PeerEnvelope,
    /// The same PeerId, seq and addresses as a standard libp2p signed
    /// peer record, for standard rendezvous clients (optional: records
    /// of members that do not sign one are not served to them). Boxed: a
    /// record without one stays small.
    pub standard: Option<Box<StandardRecord>>,
}

impl PeerRecord {
    /// A record for `seat` with these addresses, seq and expiry, its
    /// envelope signed by `keypair` (which should be the seat's PeerId's).
    pub fn sign(
        seat: Seat,
        addrs: Vec<Multiaddr>,
        seq: u64,
        expires_at_ms: u64,
        keypair: &Keypair,
    ) -> Self {
        let payload = PeerPayload {
            seat_hash: seat.hash(),
            addrs,
            seq,
            expires_at_ms,
        };
        Self {
            envelope: PeerEnvelope::sign(payload, keypair),
            seat,
            standard: None,
        }
    }

    /// The record with a standard signed peer record of the same seq and
    /// addresses, signed by `keypair` (which should be the seat's
    /// PeerId's): what a member registers so that standard rendezvous
    /// clients can discover it.
    pub fn with_standard(mut self, keypair: &Keypair) -> Self {
        self.standard = Some(Box::new(StandardRecord::sign(
            keypair,
            self.seq(),
            self.addrs().to_vec(),
        )));
        self
    }

    /// The namespace.
    pub fn quorum_key(&self) -> QuorumKey {
        self.seat.quorum_key
    }

    /// The member index.
    pub fn index(&self) -> u32 {
        self.seat.index
    }

    /// The member's PeerId (as its seat names it).
    pub fn peer_id(&self) -> PeerId {
        self.seat.peer_id
    }

    /// Where the member listens.
    pub fn addrs(&self) -> &[Multiaddr] {
        &self.envelope.payload.addrs
    }

    /// The refresh's sequence number.
    pub fn seq(&self) -> u64 {
        self.envelope.payload.seq
    }

    /// The seat hash the envelope names. Once [`check_seated_fields`]
    /// passed on this record it equals `self.seat.hash()` (step 10 checks
    /// exactly that), and it costs nothing, where the hash encodes the
    /// seat and runs SHA-256: what a store that checked the record's
    /// fields uses to remember its seat. Before that check it is only a
    /// claim.
    pub fn checked_seat_hash(&self) -> crate::seat::SeatHash {
        self.envelope.payload.seat_hash
    }

    /// When the record expires.
    pub fn expires_at_ms(&self) -> u64 {
        self.envelope.payload.expires_at_ms
    }

    /// Writes the canonical encoding into `w`.
    pub fn encode_into(&self, w: &mut Writer) {
        self.seat.encode_into(w);
        let mut envelope = self.envelope.encode();
        if let Some(standard) = &self.standard {
            crate::envelope::field(&mut envelope, STANDARD_FIELD, standard.encoded());
        }
        w.bytes32(&envelope);
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.encode_into(&mut w);
        w.into_bytes()
    }

    /// Decodes one record from `r`. Checks structure only: validation
    /// does the rest.
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let seat = Seat::decode_from(r)?;
        let mut e = Reader::new(r.bytes32(MAX_ENVELOPE_FIELD_BYTES, "envelope")?);
        let envelope = PeerEnvelope::decode_from(&mut e)?;
        let standard = if e.remaining() > 0 {
            let bytes = crate::envelope::read_field(
                &mut e,
                STANDARD_FIELD,
                MAX_STANDARD_BYTES,
                "standard",
            )?;
            Some(Box::new(StandardRecord::decode(bytes)?))
        } else {
            None
        };
        e.finish()?;
        Ok(Self {
            seat,
            envelope,
            standard,
        })
    }

    /// Decodes a whole buffer strictly.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let record = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(record)
    }
}

/// Every check of a peer record against its (verified) namespace record
/// except the two signatures, cheapest first; the first that fails
/// decides the code:
///
/// 1. the seat's quorum key is the namespace's, else `UnknownNamespace`;
/// 2. `1 <= index <= n`, else `IndexOutOfRange`;
/// 3. the seat's epoch is the namespace's: an older one is
///    `StaleEpoch` (the quorum moved on: a seat of an epoch the
///    namespace left never validates again), a newer one
///    `EpochMismatch` (the node lags behind the quorum: its member
///    brings the namespace record);
/// 4. at most `max_addrs` addresses of at most `max_addr_bytes`, else
///    `RecordTooLarge`;
/// 5. on a direct registration, the connection's PeerId is the seat's,
///    else `PeerIdMismatch`;
/// 6. the namespace's member list names the seat's PeerId at `index`
///    (a namespace without a list seats nobody), else `NotAMember`;
/// 7. the envelope's expiry is in the future and within the maximum TTL,
///    else `Expired` / `TtlTooLong`;
/// 8. the envelope's key is Ed25519, else `UnsupportedKeyType`;
/// 9. the envelope's key is the seat's PeerId's (compared as bytes; a key
///    that is not a curve point then fails its signature check), else
///    `PeerIdMismatch`;
/// 10. the envelope names this seat's hash, else `SeatMismatch`.
pub fn check_seated_fields(
    record: &PeerRecord,
    namespace: &NamespaceRecord,
    now_ms: u64,
    limits: &Limits,
    remote: Option<&PeerId>,
) -> Result<(), StatusCode> {
    let seat = &record.seat;
    if Some(seat.quorum_key) != namespace.quorum_key() {
        return Err(StatusCode::UnknownNamespace);
    }
    if seat.index == 0 || seat.index > namespace.n {
        return Err(StatusCode::IndexOutOfRange);
    }
    check_seat_epoch(seat.epoch, namespace.epoch)?;
    check_addrs(record.addrs(), limits)?;
    if remote.is_some_and(|remote| *remote != seat.peer_id) {
        return Err(StatusCode::PeerIdMismatch);
    }
    let listed = namespace
        .members
        .as_ref()
        .and_then(|m| m.get(seat.index as usize - 1));
    if listed != Some(&seat.peer_id) {
        return Err(StatusCode::NotAMember);
    }
    check_expiry(record.expires_at_ms(), now_ms, limits)?;
    if record.envelope.key_type != KEY_TYPE_ED25519 {
        return Err(StatusCode::UnsupportedKeyType);
    }
    if !record.envelope.is_signed_by(&seat.peer_id) {
        return Err(StatusCode::PeerIdMismatch);
    }
    if record.envelope.payload.seat_hash != seat.hash() {
        return Err(StatusCode::SeatMismatch);
    }
    if let Some(standard) = &record.standard {
        check_standard_fields(record, standard)?;
    }
    Ok(())
}

/// A standard record must say what the envelope says: the same signing
/// key (so the same PeerId, the seat's), the seat's PeerId in its
/// payload, the envelope's seq and exactly its addresses, else
/// `StandardRecordMismatch`. Its signature is checked with the
/// envelope's ([`check_envelope`]).
fn check_standard_fields(record: &PeerRecord, standard: &StandardRecord) -> Result<(), StatusCode> {
    let envelope = &record.envelope;
    if standard.key_type() != envelope.key_type
        || standard.key() != envelope.key
        || *standard.peer_id() != record.seat.peer_id
        || standard.seq() != envelope.payload.seq
        || standard.addrs() != envelope.payload.addrs
    {
        return Err(StatusCode::StandardRecordMismatch);
    }
    Ok(())
}

/// A seat's (or peer record's) epoch against its namespace record's:
/// equal is fine; older is `StaleEpoch` (refused for good once the
/// namespace is of a later epoch), newer is `EpochMismatch` (the
/// namespace record held is the one behind).
pub fn check_seat_epoch(seat_epoch: u64, namespace_epoch: u64) -> Result<(), StatusCode> {
    match seat_epoch.cmp(&namespace_epoch) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Less => Err(StatusCode::StaleEpoch),
        std::cmp::Ordering::Greater => Err(StatusCode::EpochMismatch),
    }
}

/// The envelope's Ed25519 signature (ZIP-215, PROTOCOL.md 6.4), and the
/// standard record's if there is one (libp2p's own check), else
/// `InvalidEnvelopeSignature`.
pub fn check_envelope(record: &PeerRecord) -> Result<(), StatusCode> {
    envelope_verdict(record, record.envelope.verify())
}

/// [`check_envelope`] of each record, in order, the envelopes checked in
/// batches of at most `step` ([`crate::envelope::verify_envelopes`]):
/// the same verdicts, at about half the cost per envelope.
pub fn check_envelopes<R: rand_core::RngCore>(
    records: &[&PeerRecord],
    rng: &mut R,
    step: usize,
    checkpoint: &mut dyn FnMut(),
) -> Vec<Result<(), StatusCode>> {
    let envelopes: Vec<&PeerEnvelope> = records.iter().map(|r| &r.envelope).collect();
    let verdicts = crate::envelope::verify_envelopes(&envelopes, rng, step, checkpoint);
    records
        .iter()
        .zip(verdicts)
        .map(|(record, ok)| {
            let verdict = envelope_verdict(record, ok);
            if record.standard.is_some() {
                checkpoint();
            }
            verdict
        })
        .collect()
}

/// The verdict on a record whose envelope did (`envelope_ok`) or did not
/// verify: its standard record, if any, must verify too.
fn envelope_verdict(record: &PeerRecord, envelope_ok: bool) -> Result<(), StatusCode> {
    if envelope_ok && record.standard.as_ref().is_none_or(|s| s.verify()) {
        Ok(())
    } else {
        Err(StatusCode::InvalidEnvelopeSignature)
    }
}

/// The seat's signature share under `PK_index`: `Decode` if it is not a
/// valid point, else `InvalidShareSignature` if it does not verify.
pub fn check_seat(seat: &Seat, namespace: &VerifiedNamespace) -> Result<(), StatusCode> {
    let signature = dkg::Signature::from_bytes(&seat.signature).map_err(|_| StatusCode::Decode)?;
    let share_key = namespace
        .share_key(seat.index)
        .ok_or(StatusCode::IndexOutOfRange)?;
    if share_key.verify(&seat.signing_bytes(), &signature) {
        Ok(())
    } else {
        Err(StatusCode::InvalidShareSignature)
    }
}

/// A whole peer record, alone: [`check_seated_fields`], the envelope,
/// then the seat (skipped when `seat_known`, i.e. this node verified this
/// very seat before).
pub fn verify_seated(
    record: &PeerRecord,
    namespace: &VerifiedNamespace,
    now_ms: u64,
    limits: &Limits,
    remote: Option<&PeerId>,
    seat_known: bool,
) -> Result<(), StatusCode> {
    check_seated_fields(record, namespace.record(), now_ms, limits, remote)?;
    check_envelope(record)?;
    if !seat_known {
        check_seat(&record.seat, namespace)?;
    }
    Ok(())
}

/// What a client checks of the peer records a node served with
/// `namespace` (whose signature it checked:
/// [`crate::validate::check_namespace_signature`]): each record's fields
/// (no connection to compare with) and its envelope. Seats are not
/// checked: the namespace's member list, under the quorum's signature,
/// already binds each index to its PeerId, and the envelope proves that
/// PeerId's owner signed the addresses. One result per record, in order.
/// The envelopes that pass the field checks are verified in one batch
/// ([`check_envelopes`]), whose coefficients are derived from the records
/// themselves: the verdicts are those of [`check_envelope`].
pub fn verify_served(
    records: &[PeerRecord],
    namespace: &NamespaceRecord,
    now_ms: u64,
    limits: &Limits,
) -> Vec<Result<(), StatusCode>> {
    let mut results: Vec<Result<(), StatusCode>> = records
        .iter()
        .map(|r| check_seated_fields(r, namespace, now_ms, limits, None))
        .collect();
    let (positions, passed): (Vec<usize>, Vec<&PeerRecord>) = records
        .iter()
        .zip(&results)
        .enumerate()
        .filter(|(_, (_, fields))| fields.is_ok())
        .map(|(position, (record, _))| (position, record))
        .unzip();
    let verdicts = check_envelopes(&passed, &mut NoSeed, usize::MAX, &mut || {});
    for (position, verdict) in positions.into_iter().zip(verdicts) {
        if let Some(slot) = results.get_mut(position) {
            *slot = verdict;
        }
    }
    results
}

/// A seed of zeros: the batch's coefficients then come from the hash of
/// what is checked alone (as in a Fiat-Shamir challenge).
struct NoSeed;

impl rand_core::RngCore for NoSeed {
    fn next_u32(&mut self) -> u32 {
        0
    }
    fn next_u64(&mut self) -> u64 {
        0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.fill(0);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        dest.fill(0);
        Ok(())
    }
}
