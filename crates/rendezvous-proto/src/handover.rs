//! The handover record (#14 item 3): key rotation without resharing.
//!
//! When a quorum's key must be replaced rather than reshared (a suspected
//! leak of `threshold` shares), the quorum runs a new DKG and signs, with
//! its *old* key (a combined threshold signature under the old `C_0`), a
//! handover naming the new quorum key. A rendezvous node that holds a
//! valid handover for a key serves it instead of that key's namespace
//! ("the namespace is retired"), and a client that discovers by the old
//! key follows it, a bounded chain of verified links
//! ([`crate::client::HandoverChain`]).
//!
//! ```text
//! HandoverRecord =
//!   version         u8 = 0x02
//!   old_quorum_key  [48]     the retired namespace (old C_0)
//!   new_quorum_key  [48]     where its clients go (new C_0)
//!   issued_at_ms    u64
//!   expires_at_ms   u64
//!   signature       [96]     combined signature under old_quorum_key
//! signing_bytes = bytes8("rdht/handover/v2") || everything above but the signature
//! ```
//!
//! A handover is 209 bytes, always: the decoder reads fixed fields only.
//! PROTOCOL.md section 15 specifies it (validation, storage, the chain rule).

use dkg::{PublicKey, Signature};

use crate::error::{DecodeError, StatusCode};
use crate::limits::Limits;
use crate::records::{record_codec, QuorumKey, G1_BYTES, G2_BYTES};
use crate::validate::check_expiry;
use crate::wire::{Reader, Writer};

/// Version byte of the handover record's encoding.
pub const HANDOVER_VERSION: u8 = 2;
/// Domain separation tag of a handover's signing bytes.
pub const HANDOVER_DST: &[u8] = b"rdht/handover/v2";
/// The encoded size of every handover record.
pub const HANDOVER_BYTES: usize = 1 + G1_BYTES + G1_BYTES + 8 + 8 + G2_BYTES;
/// Longest time from now to a handover's expiry: 30 days. Longer than a
/// namespace record's 72 h, because the quorum that signs it is meant to
/// stop using (and may destroy) the old key; it may still sign a later
/// handover, or a series of them with staggered times in advance, to
/// keep its old key's clients redirected for longer.
pub const MAX_HANDOVER_TTL_MS: u64 = 30 * 24 * 3600 * 1000;

/// "The quorum that held `old_quorum_key` now lives at `new_quorum_key`",
/// threshold-signed by the old key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HandoverRecord {
    /// The retired namespace (the old quorum key, `C_0`).
    pub old_quorum_key: QuorumKey,
    /// The quorum key its clients are sent to.
    pub new_quorum_key: QuorumKey,
    /// When the old quorum signed it (ms since the Unix epoch); orders two
    /// different handovers of the same old key.
    pub issued_at_ms: u64,
    /// When it expires (ms since the Unix epoch): the old namespace is
    /// retired until then.
    pub expires_at_ms: u64,
    /// The old quorum's combined threshold signature over
    /// [`HandoverRecord::signing_bytes`].
    pub signature: [u8; G2_BYTES],
}

record_codec!(
    HandoverRecord,
    HANDOVER_DST,
    "the old key's threshold signature"
);

impl HandoverRecord {
    fn encode_body(&self, w: &mut Writer) {
        w.u8(HANDOVER_VERSION);
        w.raw(&self.old_quorum_key.0);
        w.raw(&self.new_quorum_key.0);
        w.u64(self.issued_at_ms);
        w.u64(self.expires_at_ms);
    }

    /// Decodes one handover from `r`. Checks structure only (points stay
    /// raw): [`verify_handover`] does the rest.
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.expect_version(HANDOVER_VERSION)?;
        Ok(Self {
            old_quorum_key: QuorumKey(r.array::<G1_BYTES>()?),
            new_quorum_key: QuorumKey(r.array::<G1_BYTES>()?),
            issued_at_ms: r.u64()?,
            expires_at_ms: r.u64()?,
            signature: r.array::<G2_BYTES>()?,
        })
    }

    /// The deterministic order of two handovers of the same old key (a
    /// state-based CRDT, so replicas converge whatever order they arrive
    /// in): the later `issued_at_ms` wins, equal times are broken by the
    /// larger encoding. True if `self` wins over `other`.
    pub fn supersedes(&self, other: &HandoverRecord) -> bool {
        self.issued_at_ms > other.issued_at_ms
            || (self.issued_at_ms == other.issued_at_ms && self.encode() > other.encode())
    }
}

/// Everything about a handover that needs no curve arithmetic: the new
/// key differs from the old (`InvalidParameters`), `issued_at_ms <=
/// expires_at_ms` (`InvalidParameters`), the expiry is in the future
/// (`Expired`) and at most [`MAX_HANDOVER_TTL_MS`] away (`TtlTooLong`).
pub fn check_handover_fields(record: &HandoverRecord, now_ms: u64) -> Result<(), StatusCode> {
    if record.new_quorum_key == record.old_quorum_key {
        return Err(StatusCode::InvalidParameters);
    }
    if record.issued_at_ms > record.expires_at_ms {
        return Err(StatusCode::InvalidParameters);
    }
    let limits = Limits {
        max_ttl_ms: MAX_HANDOVER_TTL_MS,
        ..Limits::DEFAULT
    };
    check_expiry(record.expires_at_ms, now_ms, &limits)
}

/// Fully validates a handover, in the order of PROTOCOL.md 15.2: the
/// fields, then the signature and the old key decode (`Decode`), the
/// signature verifies under the old key (`InvalidHandoverSignature`), and
/// last the new key decodes to a valid G1 point (`Decode`: signed by the
/// old quorum, so only its own mistake).
pub fn verify_handover(record: &HandoverRecord, now_ms: u64) -> Result<(), StatusCode> {
    check_handover_fields(record, now_ms)?;
    let signature = Signature::from_bytes(&record.signature).map_err(|_| StatusCode::Decode)?;
    let old = PublicKey::from_bytes(&record.old_quorum_key.0).map_err(|_| StatusCode::Decode)?;
    if !old.verify(&record.signing_bytes(), &signature) {
        return Err(StatusCode::InvalidHandoverSignature);
    }
    PublicKey::from_bytes(&record.new_quorum_key.0).map_err(|_| StatusCode::Decode)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_size_is_fixed() {
        let record = HandoverRecord {
            old_quorum_key: QuorumKey([1; G1_BYTES]),
            new_quorum_key: QuorumKey([2; G1_BYTES]),
            issued_at_ms: 5,
            expires_at_ms: 6,
            signature: [3; G2_BYTES],
        };
        let bytes = record.encode();
        assert_eq!(bytes.len(), HANDOVER_BYTES);
        assert_eq!(HandoverRecord::decode(&bytes), Ok(record.clone()));
        let signing = record.signing_bytes();
        assert_eq!(signing[0] as usize, HANDOVER_DST.len());
        assert_eq!(&signing[1..1 + HANDOVER_DST.len()], HANDOVER_DST);
        assert_eq!(
            &signing[1 + HANDOVER_DST.len()..],
            &bytes[..HANDOVER_BYTES - G2_BYTES]
        );
    }
}
