//! Validation of records, one function per record, each returning the
//! exact [`StatusCode`] of the first check that fails.
//!
//! Checks run cheapest first: field ranges and times (nanoseconds), then
//! point decompression (tens of microseconds), then pairings (about a
//! millisecond, or a third of that in a batch). Garbage therefore costs
//! microseconds, and nothing here has side effects: a rejected record
//! changes no state anywhere.

use std::sync::OnceLock;

use dkg::{BatchItem, PublicKey, PublicKeySet, Signature};
use libp2p_identity::PeerId;
use multiaddr::Multiaddr;
use rand_core::RngCore;

use crate::ed25519::STEP_ENVELOPES;
use crate::error::StatusCode;
use crate::limits::Limits;
use crate::records::{NamespaceRecord, PeerRecord, QuorumKey, WIRE_MAX_ADDRS, WIRE_MAX_ADDR_BYTES};
use crate::seated::{check_envelope, check_envelopes, check_seated_fields};

/// Whether a kind label is well formed: 1 to `max` bytes of `[a-z0-9-]`.
pub fn is_valid_kind(kind: &str, max: usize) -> bool {
    !kind.is_empty()
        && kind.len() <= max
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// At most `max_addrs` addresses of at most `max_addr_bytes` each, else
/// `RecordTooLarge`. The wire caps bound the configured limits: the
/// encoding (and so the signing bytes) holds at most `WIRE_MAX_ADDRS`
/// addresses of at most `WIRE_MAX_ADDR_BYTES`, so a record beyond them is
/// never acceptable.
pub fn check_addrs(addrs: &[Multiaddr], limits: &Limits) -> Result<(), StatusCode> {
    let max_addrs = limits.max_addrs.min(WIRE_MAX_ADDRS);
    let max_addr_bytes = limits.max_addr_bytes.min(WIRE_MAX_ADDR_BYTES);
    if addrs.len() > max_addrs || addrs.iter().any(|a| a.as_ref().len() > max_addr_bytes) {
        return Err(StatusCode::RecordTooLarge);
    }
    Ok(())
}

/// Checks an expiry against `now` and the maximum TTL.
pub fn check_expiry(expires_at_ms: u64, now_ms: u64, limits: &Limits) -> Result<(), StatusCode> {
    if expires_at_ms <= now_ms {
        return Err(StatusCode::Expired);
    }
    if expires_at_ms - now_ms > limits.max_ttl_ms {
        return Err(StatusCode::TtlTooLong);
    }
    Ok(())
}

/// A namespace record whose fields and threshold signature (under `C_0`)
/// have been verified, with its key set and a cache of member public key
/// shares.
///
/// A node's record ([`verify_namespace`], [`verify_namespaces`]) has every
/// commitment decoded before it is returned, so its key set is always
/// there. A client's ([`check_namespace`]) decodes the commitments after
/// `C_0` only when the key set is first asked for: a client checks
/// envelopes against the member list, not seats, and 42 point decodings
/// cost it about as much as the rest of a 64-member answer (PROTOCOL.md
/// 6.3).
#[derive(Debug)]
pub struct VerifiedNamespace {
    record: NamespaceRecord,
    quorum_key: QuorumKey,
    quorum_pk: PublicKey,
    /// `None` once decoding found a commitment that is not a subgroup
    /// point (possible only for a record from [`check_namespace`]).
    key_set: OnceLock<Option<PublicKeySet>>,
    share_keys: Vec<OnceLock<PublicKey>>,
}

impl VerifiedNamespace {
    /// The verified record.
    pub fn record(&self) -> &NamespaceRecord {
        &self.record
    }

    /// The namespace's name.
    pub fn quorum_key(&self) -> QuorumKey {
        self.quorum_key
    }

    /// The decoded public key set, decoded now if it was not yet; `None`
    /// if a commitment after `C_0` is not a valid point, which only a
    /// record from [`check_namespace`] can have (the quorum signed it, so
    /// it is the quorum's own mistake).
    pub fn key_set(&self) -> Option<&PublicKeySet> {
        self.key_set
            .get_or_init(|| decode_key_set(self.quorum_pk, &self.record).ok())
            .as_ref()
    }

    /// Quorum size.
    pub fn n(&self) -> u32 {
        self.record.n
    }

    /// Shares needed to sign (the number of commitments).
    pub fn threshold(&self) -> u32 {
        self.record.threshold()
    }

    /// Member `index`'s public key share, derived once and cached; `None`
    /// outside `1..=n`, or if the key set does not decode.
    pub fn share_key(&self, index: u32) -> Option<PublicKey> {
        let slot = self.share_keys.get((index as usize).checked_sub(1)?)?;
        if let Some(key) = slot.get() {
            return Some(*key);
        }
        let key = self.key_set()?.public_key_share(index);
        Some(*slot.get_or_init(|| key))
    }
}

impl Clone for VerifiedNamespace {
    fn clone(&self) -> Self {
        Self {
            record: self.record.clone(),
            quorum_key: self.quorum_key,
            quorum_pk: self.quorum_pk,
            key_set: self.key_set.clone(),
            share_keys: self.share_keys.clone(),
        }
    }
}

/// Checks everything about a namespace record that does not need the
/// signature: `1 <= threshold <= n <= max_members`, the member list has n
/// entries, the kind is a label, the expiry is in range.
pub fn check_namespace_fields(
    record: &NamespaceRecord,
    now_ms: u64,
    limits: &Limits,
) -> Result<(), StatusCode> {
    let threshold = record.commitments.len() as u64;
    let n = u64::from(record.n);
    // The encoding counts commitments and members in a u16: past that, the
    // signing bytes would no longer describe the record, whatever a node's
    // configured limit.
    let max_members = u64::from(limits.max_members).min(u64::from(u16::MAX));
    if threshold == 0 || threshold > n || n > max_members {
        return Err(StatusCode::InvalidParameters);
    }
    // Version 2: the member list is mandatory (it binds each index to
    // the PeerId whose envelope a client checks).
    match &record.members {
        Some(members) if members.len() as u64 == n => {}
        _ => return Err(StatusCode::InvalidParameters),
    }
    if let Some(kind) = &record.kind {
        // A kind is a bytes8 on the wire: a longer one would be signed cut.
        if !is_valid_kind(kind, limits.max_kind_bytes.min(u8::MAX as usize)) {
            return Err(StatusCode::InvalidKind);
        }
    }
    if record.issued_at_ms > record.expires_at_ms {
        return Err(StatusCode::InvalidParameters);
    }
    check_expiry(record.expires_at_ms, now_ms, limits)
}

/// Fully validates a namespace record: fields, then the signature and
/// `C_0` decode, then the threshold signature verifies under `C_0`, and
/// only then do the other commitments decode to subgroup points (a junk
/// record costs one pairing, not a thousand decodings first: #13 item 2).
pub fn verify_namespace(
    record: &NamespaceRecord,
    now_ms: u64,
    limits: &Limits,
) -> Result<VerifiedNamespace, StatusCode> {
    PendingNamespace::prepare(record, now_ms, limits)?.verify()
}

/// A client's check of a namespace record: what [`verify_namespace`]
/// checks except the commitments after `C_0`, which decode only if
/// [`VerifiedNamespace::key_set`] is asked for (PROTOCOL.md 6.3: a client
/// checks envelopes against the signed member list, and only nodes derive
/// `PK_i` to check seats). Never use it where seats are checked.
pub fn check_namespace(
    record: &NamespaceRecord,
    now_ms: u64,
    limits: &Limits,
) -> Result<VerifiedNamespace, StatusCode> {
    let pending = PendingNamespace::prepare(record, now_ms, limits)?;
    if !pending.verify_signature() {
        return Err(StatusCode::InvalidNamespaceSignature);
    }
    Ok(pending.into_checked())
}

/// What a client needs of a namespace record in protocol version 2: its
/// fields (6.1 steps 1-5), and its threshold signature under `C_0`
/// (`Decode` if `C_0` or the signature is not a valid point). The other
/// commitments are covered by that signature but not decoded: only nodes
/// derive `PK_i` from them (to check seats); a client checks envelopes,
/// and each decoded G1 point costs about as much as 2% of a pairing.
pub fn check_namespace_signature(
    record: &NamespaceRecord,
    now_ms: u64,
    limits: &Limits,
) -> Result<(), StatusCode> {
    check_namespace(record, now_ms, limits).map(drop)
}

/// Validates many namespace records, checking every signature that gets
/// that far in one safe batch (bisecting on failure): one result per
/// input, in order. One bad record never fails the others.
pub fn verify_namespaces<R: RngCore>(
    records: &[NamespaceRecord],
    now_ms: u64,
    limits: &Limits,
    rng: &mut R,
) -> Vec<Result<VerifiedNamespace, StatusCode>> {
    verify_namespaces_with(records, now_ms, limits, rng, &mut || {})
}

/// [`verify_namespaces`], calling `checkpoint` between the steps of the
/// batch check and after each record's commitments are decoded: for a
/// driver that shares its cores with latency work.
pub fn verify_namespaces_with<R: RngCore>(
    records: &[NamespaceRecord],
    now_ms: u64,
    limits: &Limits,
    rng: &mut R,
    checkpoint: &mut dyn FnMut(),
) -> Vec<Result<VerifiedNamespace, StatusCode>> {
    let prepared: Vec<Result<PendingNamespace, StatusCode>> = records
        .iter()
        .map(|r| PendingNamespace::prepare(r, now_ms, limits))
        .collect();
    let pending: Vec<&PendingNamespace> = prepared.iter().filter_map(|p| p.as_ref().ok()).collect();
    let items: Vec<BatchItem<'_>> = pending.iter().map(|p| p.batch_item()).collect();
    let bad = dkg::find_invalid_with(&items, rng, checkpoint);
    let mut position = 0usize;
    let mut bad = bad.into_iter().peekable();
    prepared
        .into_iter()
        .map(|p| {
            let p = p?;
            let this = position;
            position += 1;
            if bad.next_if_eq(&this).is_some() {
                Err(StatusCode::InvalidNamespaceSignature)
            } else {
                let verified = p.into_verified();
                checkpoint();
                verified
            }
        })
        .collect()
}

/// A namespace record that passed every cheap check and whose signature
/// and `C_0` decoded: what is left is one pairing check, alone or in a
/// batch, and then decoding the other commitments.
struct PendingNamespace {
    record: NamespaceRecord,
    quorum_pk: PublicKey,
    signature: Signature,
    signing_bytes: Vec<u8>,
}

impl PendingNamespace {
    fn prepare(record: &NamespaceRecord, now_ms: u64, limits: &Limits) -> Result<Self, StatusCode> {
        check_namespace_fields(record, now_ms, limits)?;
        let signature = Signature::from_bytes(&record.signature).map_err(|_| StatusCode::Decode)?;
        let quorum_pk = record
            .commitments
            .first()
            .ok_or(StatusCode::InvalidParameters)
            .and_then(|c| PublicKey::from_bytes(c).map_err(|_| StatusCode::Decode))?;
        Ok(Self {
            record: record.clone(),
            quorum_pk,
            signature,
            signing_bytes: record.signing_bytes(),
        })
    }

    fn batch_item(&self) -> BatchItem<'_> {
        BatchItem {
            public_key: &self.quorum_pk,
            message: &self.signing_bytes,
            signature: &self.signature,
        }
    }

    fn verify_signature(&self) -> bool {
        self.quorum_pk.verify(&self.signing_bytes, &self.signature)
    }

    fn verify(self) -> Result<VerifiedNamespace, StatusCode> {
        if !self.verify_signature() {
            return Err(StatusCode::InvalidNamespaceSignature);
        }
        self.into_verified()
    }

    /// Only after the signature was checked: the record with its key set
    /// left to decode on first use (a client's record).
    fn into_checked(self) -> VerifiedNamespace {
        VerifiedNamespace {
            share_keys: (0..self.record.n).map(|_| OnceLock::new()).collect(),
            quorum_key: QuorumKey::from(self.quorum_pk),
            quorum_pk: self.quorum_pk,
            record: self.record,
            key_set: OnceLock::new(),
        }
    }

    /// Only after the signature was checked (alone or in a batch): decodes
    /// the commitments after `C_0`. The quorum signed them, so a point
    /// that does not decode here is the quorum's own mistake (`Decode`).
    fn into_verified(self) -> Result<VerifiedNamespace, StatusCode> {
        let key_set = decode_key_set(self.quorum_pk, &self.record)?;
        let verified = self.into_checked();
        // A fresh OnceLock: this cannot fail.
        let _ = verified.key_set.set(Some(key_set));
        Ok(verified)
    }
}

/// The key set of a record whose `C_0` decoded to `quorum_pk`: every
/// other commitment decoded and subgroup-checked (`Decode` if one is not
/// a valid point).
fn decode_key_set(
    quorum_pk: PublicKey,
    record: &NamespaceRecord,
) -> Result<PublicKeySet, StatusCode> {
    let commitments = std::iter::once(Ok(quorum_pk))
        .chain(
            record
                .commitments
                .iter()
                .skip(1)
                .map(|c| PublicKey::from_bytes(c)),
        )
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| StatusCode::Decode)?;
    PublicKeySet::new(commitments).map_err(|_| StatusCode::InvalidParameters)
}

/// Whether `new` may replace `stored` (same quorum key): its (epoch,
/// issued-at) must be strictly higher, else [`StatusCode::StaleEpoch`].
pub fn check_namespace_update(
    stored: &NamespaceRecord,
    new: &NamespaceRecord,
) -> Result<(), StatusCode> {
    if (new.epoch, new.issued_at_ms) <= (stored.epoch, stored.issued_at_ms) {
        return Err(StatusCode::StaleEpoch);
    }
    Ok(())
}

/// A peer record that passed every cheap check
/// ([`crate::seated::check_seated_fields`]): what is left is its envelope
/// (one Ed25519 verification) and, unless this node verified its seat
/// before, its seat's signature share (a pairing, alone or in a batch).
#[derive(Debug, Clone)]
pub struct PendingPeer {
    /// The record.
    pub record: PeerRecord,
    seat: Option<PendingSeat>,
}

/// A seat whose signature decoded, with the key it must verify under.
#[derive(Debug, Clone)]
struct PendingSeat {
    signing_bytes: Vec<u8>,
    signature: Signature,
    share_key: PublicKey,
}

impl PendingPeer {
    /// Runs the cheap checks, decodes the seat's signature and looks up
    /// `PK_index` (cached in the namespace).
    pub fn prepare(
        record: PeerRecord,
        namespace: &VerifiedNamespace,
        now_ms: u64,
        limits: &Limits,
        remote: Option<&PeerId>,
    ) -> Result<Self, StatusCode> {
        Self::prepare_with(record, namespace, now_ms, limits, remote, false)
    }

    /// [`PendingPeer::prepare`] for a node that may have verified this
    /// very seat before (`seat_known`: its hash is in the node's memory),
    /// in which case only the envelope is left to check.
    pub fn prepare_with(
        record: PeerRecord,
        namespace: &VerifiedNamespace,
        now_ms: u64,
        limits: &Limits,
        remote: Option<&PeerId>,
        seat_known: bool,
    ) -> Result<Self, StatusCode> {
        check_seated_fields(&record, namespace.record(), now_ms, limits, remote)?;
        let seat = if seat_known {
            None
        } else {
            let signature =
                Signature::from_bytes(&record.seat.signature).map_err(|_| StatusCode::Decode)?;
            let share_key = namespace
                .share_key(record.seat.index)
                .ok_or(StatusCode::IndexOutOfRange)?;
            Some(PendingSeat {
                signing_bytes: record.seat.signing_bytes(),
                signature,
                share_key,
            })
        };
        Ok(Self { record, seat })
    }

    /// Whether verifying this record includes its seat (a pairing).
    pub fn checks_seat(&self) -> bool {
        self.seat.is_some()
    }

    /// Verifies the envelope, then the seat if it is to be checked.
    pub fn verify(&self) -> Result<(), StatusCode> {
        check_envelope(&self.record)?;
        match &self.seat {
            Some(seat) if !seat.share_key.verify(&seat.signing_bytes, &seat.signature) => {
                Err(StatusCode::InvalidShareSignature)
            }
            _ => Ok(()),
        }
    }
}

/// Verifies many pending records, returning one result per input in
/// order: the envelopes in one Ed25519 batch (checked one by one only if
/// it fails, to name the bad ones), then the seats left to check in one
/// safe batch (bisecting on failure). One bad signature never fails the
/// others, and every verdict is the one [`PendingPeer::verify`] gives.
pub fn verify_batch<R: RngCore>(
    pending: &[PendingPeer],
    rng: &mut R,
) -> Vec<Result<(), StatusCode>> {
    verify_peers_in_steps(pending, rng, usize::MAX, &mut || {})
}

/// [`verify_batch`], calling `checkpoint` between the steps of the batch
/// check (see [`dkg::batch_verify_with`]) and after each Ed25519 batch of
/// at most [`STEP_ENVELOPES`] envelopes: for a driver that shares its
/// cores with latency work.
pub fn verify_batch_with<R: RngCore>(
    pending: &[PendingPeer],
    rng: &mut R,
    checkpoint: &mut dyn FnMut(),
) -> Vec<Result<(), StatusCode>> {
    verify_peers_in_steps(pending, rng, STEP_ENVELOPES, checkpoint)
}

/// [`verify_batch`] with Ed25519 batches of at most `step` envelopes.
fn verify_peers_in_steps<R: RngCore>(
    pending: &[PendingPeer],
    rng: &mut R,
    step: usize,
    checkpoint: &mut dyn FnMut(),
) -> Vec<Result<(), StatusCode>> {
    let records: Vec<&PeerRecord> = pending.iter().map(|p| &p.record).collect();
    let mut results = check_envelopes(&records, rng, step, checkpoint);
    let mut positions = Vec::new();
    let mut items = Vec::new();
    for (position, (p, result)) in pending.iter().zip(&results).enumerate() {
        if let (Ok(()), Some(seat)) = (result, &p.seat) {
            positions.push(position);
            items.push(BatchItem {
                public_key: &seat.share_key,
                message: &seat.signing_bytes,
                signature: &seat.signature,
            });
        }
    }
    for bad in dkg::find_invalid_with(&items, rng, checkpoint) {
        if let Some(slot) = positions.get(bad).and_then(|&p| results.get_mut(p)) {
            *slot = Err(StatusCode::InvalidShareSignature);
        }
    }
    results
}

/// Verifies one peer record against its namespace completely (its seat
/// included).
pub fn verify_peer(
    record: &PeerRecord,
    namespace: &VerifiedNamespace,
    now_ms: u64,
    limits: &Limits,
    remote: Option<&PeerId>,
) -> Result<(), StatusCode> {
    PendingPeer::prepare(record.clone(), namespace, now_ms, limits, remote)?.verify()
}
