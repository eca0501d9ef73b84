//! Co-signing the namespace record: what a member agrees to sign for a
//! fellow member ([`check_sign_request`]), what it accepts as the
//! quorum's record ([`check_namespace`]), and how a coordinator turns
//! signature shares into the threshold signature ([`Cosign`]).

use std::collections::BTreeMap;

use dkg::{combine_signatures, find_invalid, BatchItem, KeyShare, PublicKey, SignatureShare};
use rand_core::RngCore;
use rendezvous_proto::handover::check_handover_fields;
use rendezvous_proto::records::G1_BYTES;
use rendezvous_proto::{HandoverRecord, Limits, NamespaceRecord, QuorumKey, StatusCode};

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

/// Why a member of the old quorum refuses to co-sign a handover (key
/// rotation, [`check_handover_request`]); each is answered with its
/// [`HandoverRefusal::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandoverRefusal {
    /// The handover's old key is not this member's (previous) quorum key
    /// (`NotAuthorized`).
    #[error("the handover retires another quorum key")]
    OtherOldKey,
    /// The handover names the old key as its successor
    /// (`InvalidParameters`).
    #[error("the handover names the old key as the new one")]
    SameKey,
    /// The handover's fields are invalid (its times: the code of
    /// `check_handover_fields`).
    #[error("invalid handover fields: {0}")]
    Fields(StatusCode),
    /// The attached namespace record does not verify (its code of
    /// `verify_namespace`).
    #[error("the new key's namespace record does not verify: {0}")]
    Namespace(StatusCode),
    /// The attached namespace record is of another key than the
    /// handover's new key (`NotAuthorized`).
    #[error("the namespace record is not of the handover's new key")]
    NewKeyMismatch,
    /// The new key's namespace record has another member list than the
    /// one this member was configured with (`NotAMember`).
    #[error("the new key's member list is not the configured one")]
    MemberList,
    /// The new key's namespace record has another threshold, size, kind
    /// or epoch than this member was configured with (`NotAuthorized`).
    #[error("the new key's threshold, size, kind or epoch is not the configured one")]
    OtherQuorum,
}

impl HandoverRefusal {
    /// The status code a member answers with.
    pub fn code(self) -> StatusCode {
        match self {
            HandoverRefusal::OtherOldKey
            | HandoverRefusal::NewKeyMismatch
            | HandoverRefusal::OtherQuorum => StatusCode::NotAuthorized,
            HandoverRefusal::SameKey => StatusCode::InvalidParameters,
            HandoverRefusal::Fields(code) | HandoverRefusal::Namespace(code) => code,
            HandoverRefusal::MemberList => StatusCode::NotAMember,
        }
    }
}

/// Whether a member of the old quorum may co-sign a handover (key
/// rotation, PROTOCOL.md 15.6) with its `previous_share`: the handover
/// retires this share's quorum key and names another, its fields are
/// valid at `now_ms`, and `namespace` (the new key's threshold-signed
/// record) verifies under the handover's new key and describes exactly
/// the quorum this member was configured with for the new epoch
/// (`quorum`, `epoch`). A member signs no other handover.
pub fn check_handover_request(
    handover: &HandoverRecord,
    namespace: &NamespaceRecord,
    previous_share: &KeyShare,
    quorum: &QuorumSpec,
    epoch: u64,
    now_ms: u64,
    limits: &Limits,
) -> Result<(), HandoverRefusal> {
    if handover.old_quorum_key != QuorumKey::from(previous_share.quorum_key()) {
        return Err(HandoverRefusal::OtherOldKey);
    }
    if handover.new_quorum_key == handover.old_quorum_key {
        return Err(HandoverRefusal::SameKey);
    }
    check_handover_fields(handover, now_ms).map_err(HandoverRefusal::Fields)?;
    if namespace.commitments.first().map(|c| QuorumKey(*c)) != Some(handover.new_quorum_key) {
        return Err(HandoverRefusal::NewKeyMismatch);
    }
    let verified = rendezvous_proto::validate::verify_namespace(namespace, now_ms, limits)
        .map_err(HandoverRefusal::Namespace)?;
    if verified.quorum_key() != handover.new_quorum_key {
        return Err(HandoverRefusal::NewKeyMismatch);
    }
    if namespace.members.as_ref() != Some(&quorum.members) {
        return Err(HandoverRefusal::MemberList);
    }
    if verified.threshold() != quorum.threshold
        || verified.n() != quorum.n()
        || namespace.kind != quorum.kind
        || namespace.epoch != epoch
    {
        return Err(HandoverRefusal::OtherQuorum);
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use rendezvous_proto::testkit::TestQuorum;

    const NOW: u64 = 1_700_000_000_000;
    const HOUR: u64 = 3_600_000;

    struct Case {
        old: TestQuorum,
        new: TestQuorum,
        spec: QuorumSpec,
        handover: HandoverRecord,
        namespace: NamespaceRecord,
    }

    fn case() -> Case {
        let mut rng = ChaCha20Rng::seed_from_u64(14);
        let old = TestQuorum::deal(4, 3, &mut rng);
        let new = TestQuorum::deal(4, 3, &mut rng);
        let spec = QuorumSpec {
            members: (1..=4).map(|i| new.peer_id(i)).collect(),
            threshold: 3,
            kind: None,
        };
        let mut handover = old.handover(new.quorum_key(), NOW, NOW + 24 * HOUR);
        handover.signature = [0; rendezvous_proto::records::G2_BYTES];
        let namespace = new.namespace(1, None, NOW, NOW + HOUR);
        Case {
            old,
            new,
            spec,
            handover,
            namespace,
        }
    }

    fn check(
        c: &Case,
        handover: &HandoverRecord,
        namespace: &NamespaceRecord,
    ) -> Result<(), HandoverRefusal> {
        check_handover_request(
            handover,
            namespace,
            &c.old.shares[0],
            &c.spec,
            1,
            NOW,
            &Limits::DEFAULT,
        )
    }

    #[test]
    fn an_old_member_signs_a_handover_to_the_configured_new_quorum() {
        let c = case();
        assert_eq!(check(&c, &c.handover, &c.namespace), Ok(()));
    }

    #[test]
    fn every_handover_refusal_has_its_code() {
        let c = case();
        let mut rng = ChaCha20Rng::seed_from_u64(15);
        let other = TestQuorum::deal(4, 3, &mut rng);

        // Another old key.
        let mut h = c.handover.clone();
        h.old_quorum_key = other.quorum_key();
        let r = check(&c, &h, &c.namespace);
        assert_eq!(r, Err(HandoverRefusal::OtherOldKey));
        assert_eq!(r.unwrap_err().code(), StatusCode::NotAuthorized);

        // A handover to itself.
        let mut h = c.handover.clone();
        h.new_quorum_key = h.old_quorum_key;
        let r = check(&c, &h, &c.namespace);
        assert_eq!(r, Err(HandoverRefusal::SameKey));
        assert_eq!(r.unwrap_err().code(), StatusCode::InvalidParameters);

        // Invalid fields: expired, too long, issued after its expiry.
        let mut h = c.handover.clone();
        h.expires_at_ms = NOW - 1;
        h.issued_at_ms = NOW - 2;
        assert_eq!(
            check(&c, &h, &c.namespace).map_err(HandoverRefusal::code),
            Err(StatusCode::Expired)
        );
        let mut h = c.handover.clone();
        h.expires_at_ms = NOW + rendezvous_proto::handover::MAX_HANDOVER_TTL_MS + 1;
        assert_eq!(
            check(&c, &h, &c.namespace),
            Err(HandoverRefusal::Fields(StatusCode::TtlTooLong))
        );
        let mut h = c.handover.clone();
        h.issued_at_ms = h.expires_at_ms + 1;
        assert_eq!(
            check(&c, &h, &c.namespace),
            Err(HandoverRefusal::Fields(StatusCode::InvalidParameters))
        );

        // A namespace record of another key than the handover's new key.
        let ns = other.namespace(1, None, NOW, NOW + HOUR);
        let r = check(&c, &c.handover, &ns);
        assert_eq!(r, Err(HandoverRefusal::NewKeyMismatch));
        assert_eq!(r.unwrap_err().code(), StatusCode::NotAuthorized);

        // The new key's record, unsigned or altered: does not verify.
        let ns = c.new.namespace_unsigned(1, None, NOW, NOW + HOUR);
        assert!(matches!(
            check(&c, &c.handover, &ns),
            Err(HandoverRefusal::Namespace(_))
        ));
        let mut ns = c.namespace.clone();
        ns.issued_at_ms += 1;
        let r = check(&c, &c.handover, &ns);
        assert_eq!(
            r,
            Err(HandoverRefusal::Namespace(
                StatusCode::InvalidNamespaceSignature
            ))
        );
        assert_eq!(r.unwrap_err().code(), StatusCode::InvalidNamespaceSignature);

        // Another member list than the configured one.
        let mut spec = c.spec.clone();
        spec.members.swap(0, 1);
        let r = check_handover_request(
            &c.handover,
            &c.namespace,
            &c.old.shares[0],
            &spec,
            1,
            NOW,
            &Limits::DEFAULT,
        );
        assert_eq!(r, Err(HandoverRefusal::MemberList));
        assert_eq!(r.unwrap_err().code(), StatusCode::NotAMember);

        // Another threshold, kind or epoch than the configured ones.
        let mut spec = c.spec.clone();
        spec.threshold = 2;
        let r = check_handover_request(
            &c.handover,
            &c.namespace,
            &c.old.shares[0],
            &spec,
            1,
            NOW,
            &Limits::DEFAULT,
        );
        assert_eq!(r, Err(HandoverRefusal::OtherQuorum));
        assert_eq!(r.unwrap_err().code(), StatusCode::NotAuthorized);
        let mut spec = c.spec.clone();
        spec.kind = Some("farmer".into());
        assert_eq!(
            check_handover_request(
                &c.handover,
                &c.namespace,
                &c.old.shares[0],
                &spec,
                1,
                NOW,
                &Limits::DEFAULT,
            ),
            Err(HandoverRefusal::OtherQuorum)
        );
        assert_eq!(
            check_handover_request(
                &c.handover,
                &c.namespace,
                &c.old.shares[0],
                &c.spec,
                2,
                NOW,
                &Limits::DEFAULT,
            ),
            Err(HandoverRefusal::OtherQuorum)
        );
    }
}
