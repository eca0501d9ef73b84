//! Co-signing the namespace record: what a member agrees to sign for a
//! fellow member ([`check_sign_request`]), what it accepts as the
//! quorum's record ([`check_namespace`]), and how a coordinator turns
//! signature shares into the threshold signature ([`Cosign`]).

use std::collections::BTreeMap;

use dkg::{combine_signatures, find_invalid, BatchItem, KeyShare, PublicKey, SignatureShare};
use rand_core::RngCore;
use rendezvous_proto::records::G1_BYTES;
use rendezvous_proto::{Limits, NamespaceRecord, StatusCode};

use crate::config::QuorumSpec;

/// The key set's commitments as a namespace record carries them.
pub(crate) fn commitment_bytes(share: &KeyShare) -> Vec<[u8; G1_BYTES]> {
    share
        .public_key_set
        .commitments()
        .iter()
        .map(PublicKey::to_bytes)
        .collect()
}

/// Why a member refuses to co-sign (or adopt) a namespace record; each
/// is answered with its [`SignRefusal::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignRefusal {
    /// Another quorum key, or this quorum key with another key set, size
    /// or kind than this member's share and quorum file give.
    #[error("not this quorum's key set, size or kind")]
    OtherQuorum,
    /// An epoch older than the member's: the quorum left it, and a
    /// member never signs for an epoch it left (`StaleEpoch`).
    #[error("epoch {asked} is older than this member's epoch {held}")]
    StaleEpoch {
        /// The member's epoch.
        held: u64,
        /// The record's.
        asked: u64,
    },
    /// An epoch newer than the member's: it holds no share of that epoch
    /// (its key share is not yet, or never, the new one's:
    /// `EpochMismatch`).
    #[error("epoch {asked} is newer than this member's epoch {held}")]
    FutureEpoch {
        /// The member's epoch.
        held: u64,
        /// The record's.
        asked: u64,
    },
    /// The member list is not the quorum file's (`NotAMember`).
    #[error("the member list is not the quorum's")]
    MemberList,
    /// Issued more than a minute ahead of the member's clock
    /// (`InvalidParameters`).
    #[error("issued more than a minute ahead")]
    IssuedAhead,
    /// Expired, or expiring beyond the maximum TTL (`Expired`,
    /// `TtlTooLong`).
    #[error("expiry out of range: {0}")]
    Expiry(StatusCode),
}

impl SignRefusal {
    /// The status code a member answers with.
    pub fn code(self) -> StatusCode {
        match self {
            SignRefusal::OtherQuorum => StatusCode::NotAuthorized,
            SignRefusal::StaleEpoch { .. } => StatusCode::StaleEpoch,
            SignRefusal::FutureEpoch { .. } => StatusCode::EpochMismatch,
            SignRefusal::MemberList => StatusCode::NotAMember,
            SignRefusal::IssuedAhead => StatusCode::InvalidParameters,
            SignRefusal::Expiry(code) => code,
        }
    }
}

/// Whether a member may co-sign a namespace record a fellow member asks it
/// to sign: it must be of this quorum key and of exactly the member's own
/// `epoch` (the epoch of its key share: older is
/// [`SignRefusal::StaleEpoch`], newer [`SignRefusal::FutureEpoch`]),
/// describe exactly this quorum (its key set, size, kind, member list), be
/// issued no later than a minute from now and expire within the
/// protocol's maximum TTL. A member never signs anything else with its
/// share.
pub fn check_sign_request(
    record: &NamespaceRecord,
    share: &KeyShare,
    epoch: u64,
    quorum: &QuorumSpec,
    now_ms: u64,
    limits: &Limits,
) -> Result<(), SignRefusal> {
    let ours = commitment_bytes(share);
    if record.commitments.first() != ours.first() {
        return Err(SignRefusal::OtherQuorum);
    }
    // The quorum key is ours: the epoch decides next, so that a record of
    // another epoch (whose key set differs after a reshare) is named so.
    if record.epoch < epoch {
        return Err(SignRefusal::StaleEpoch {
            held: epoch,
            asked: record.epoch,
        });
    }
    if record.epoch > epoch {
        return Err(SignRefusal::FutureEpoch {
            held: epoch,
            asked: record.epoch,
        });
    }
    if record.commitments != ours
        || record.n != share.n
        || record.n != quorum.n()
        || record.kind != quorum.kind
    {
        return Err(SignRefusal::OtherQuorum);
    }
    if record.members.as_ref() != Some(&quorum.members) {
        return Err(SignRefusal::MemberList);
    }
    if record.issued_at_ms > now_ms + 60_000 {
        return Err(SignRefusal::IssuedAhead);
    }
    rendezvous_proto::validate::check_expiry(record.expires_at_ms, now_ms, limits)
        .map_err(SignRefusal::Expiry)
}

/// Whether a signed namespace record (a fellow member's announcement, a
/// rendezvous node's answer) is this quorum's: everything
/// [`check_sign_request`] checks, the record's own field ranges, and its
/// threshold signature. Since the commitments were compared byte for byte
/// with this member's own key set, the signature is checked under the
/// quorum key the member already holds decoded: one pairing, without
/// decoding (and subgroup-checking) every commitment again.
pub(crate) fn check_namespace(
    record: &NamespaceRecord,
    share: &KeyShare,
    epoch: u64,
    quorum: &QuorumSpec,
    now_ms: u64,
    limits: &Limits,
) -> Result<(), StatusCode> {
    check_sign_request(record, share, epoch, quorum, now_ms, limits).map_err(SignRefusal::code)?;
    rendezvous_proto::validate::check_namespace_fields(record, now_ms, limits)?;
    let signature =
        dkg::Signature::from_bytes(&record.signature).map_err(|_| StatusCode::Decode)?;
    if share
        .quorum_key()
        .verify(&record.signing_bytes(), &signature)
    {
        Ok(())
    } else {
        Err(StatusCode::InvalidNamespaceSignature)
    }
}

/// A coordinator's collection of signature shares over one record.
pub(crate) struct Cosign {
    /// The record being signed (its signature is filled in at the end).
    pub record: NamespaceRecord,
    message: Vec<u8>,
    shares: BTreeMap<u32, SignatureShare>,
}

impl Cosign {
    /// Starts a collection with the coordinator's own share.
    pub fn new(record: NamespaceRecord, share: &KeyShare) -> Self {
        let message = record.signing_bytes();
        let own = share.secret.sign(&message);
        let mut shares = BTreeMap::new();
        shares.insert(own.index, own);
        Self {
            record,
            message,
            shares,
        }
    }

    /// Whether member `index`'s share is in.
    pub fn has(&self, index: u32) -> bool {
        self.shares.contains_key(&index)
    }

    /// Takes member `index`'s share (checked only when they are combined).
    pub fn add(&mut self, index: u32, signature: dkg::Signature) {
        self.shares
            .insert(index, SignatureShare { index, signature });
    }

    /// Once `threshold` shares are in: combines them and checks the result
    /// under the quorum key (one pairing for the whole collection instead
    /// of one per share). If it does not verify, the bad shares are named
    /// by batch bisection and dropped, and `None` waits for others. The
    /// returned indices are the members whose shares were bad.
    pub fn try_combine<R: RngCore>(
        &mut self,
        share: &KeyShare,
        rng: &mut R,
    ) -> (Option<NamespaceRecord>, Vec<u32>) {
        let threshold = share.threshold();
        if (self.shares.len() as u32) < threshold {
            return (None, Vec::new());
        }
        let shares: Vec<SignatureShare> = self.shares.values().copied().collect();
        if let Ok(signature) = combine_signatures(threshold, share.n, &shares) {
            if share.quorum_key().verify(&self.message, &signature) {
                let mut record = self.record.clone();
                record.signature = signature.to_bytes();
                return (Some(record), Vec::new());
            }
        }
        let keys: Vec<PublicKey> = shares
            .iter()
            .map(|s| share.public_key_set.public_key_share(s.index))
            .collect();
        let items: Vec<BatchItem<'_>> = shares
            .iter()
            .zip(&keys)
            .map(|(s, public_key)| BatchItem {
                public_key,
                message: &self.message,
                signature: &s.signature,
            })
            .collect();
        let mut bad = Vec::new();
        for position in find_invalid(&items, rng) {
            if let Some(s) = shares.get(position) {
                self.shares.remove(&s.index);
                bad.push(s.index);
            }
        }
        (None, bad)
    }
}
