//! The retry policy: what a member makes of each answer of a rendezvous
//! node, in one table ([`classify`], documented in PROTOCOL.md), and how
//! long it waits before trying again ([`Backoff`]).
//!
//! The rule behind the table: an honest node refuses an honest member's
//! record only for a passing reason (it is busy, it has not seen the
//! namespace yet). Any other refusal means that node disagrees with the
//! protocol or lies; the member stops using *that node* and goes on with
//! the others. Nothing one node answers ends the member.

use rand_core::RngCore;
use rendezvous_proto::StatusCode;

/// What a member does after a refusal (or a failed request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// The node already holds this very record (or a newer one of ours):
    /// as good as accepted.
    AlreadyHeld,
    /// The node lacks the namespace record (or holds an older one):
    /// register the namespace there, then the peer record again.
    NeedsNamespace,
    /// Passing: retry the same node with capped exponential backoff.
    Transient,
    /// Permanent for this node: stop using it, keep the others.
    Permanent,
}

/// The one table: every status code a registration can be answered with,
/// and its class. Timeouts, lost connections and failed dials (no status
/// code at all) are [`Class::Transient`].
pub fn classify(code: StatusCode) -> Class {
    match code {
        StatusCode::Ok
        | StatusCode::StaleSequence
        | StatusCode::StaleEpoch
        | StatusCode::StaleHandover => Class::AlreadyHeld,
        StatusCode::UnknownNamespace | StatusCode::EpochMismatch => Class::NeedsNamespace,
        StatusCode::QuotaExceeded | StatusCode::Internal | StatusCode::LookupTimedOut => {
            Class::Transient
        }
        StatusCode::Decode
        | StatusCode::RecordTooLarge
        | StatusCode::Expired
        | StatusCode::TtlTooLong
        | StatusCode::InvalidCookie
        | StatusCode::UnsupportedVersion
        | StatusCode::InvalidNamespaceSignature
        | StatusCode::InvalidParameters
        | StatusCode::InvalidKind
        | StatusCode::IndexOutOfRange
        | StatusCode::InvalidShareSignature
        | StatusCode::PeerIdMismatch
        | StatusCode::NotAMember
        | StatusCode::UnsupportedKeyType
        | StatusCode::InvalidEnvelopeSignature
        | StatusCode::SeatMismatch
        | StatusCode::StandardRecordMismatch
        | StatusCode::InvalidHandoverSignature
        | StatusCode::NamespaceRetired
        | StatusCode::NotAuthorized => Class::Permanent,
    }
}

/// [`classify`] for the answer to a peer registration (`RegisterPeer`):
/// the same table but for `StaleEpoch`. A node refuses a seat as stale
/// when it holds the quorum's namespace record of a later epoch than the
/// member's key share: the record is not held there (so not
/// `AlreadyHeld`), and the member cannot mend it itself (it needs its
/// share of the new epoch). It is [`Class::Transient`]: retried with
/// backoff, so a member whose share is replaced carries on, and one the
/// quorum left behind gives up after `give_up_after` like any member no
/// node accepts. (A namespace registration refused `StaleEpoch` is still
/// `AlreadyHeld`: the node holds this record or a newer one.)
pub fn classify_peer(code: StatusCode) -> Class {
    match code {
        StatusCode::StaleEpoch => Class::Transient,
        other => classify(other),
    }
}

/// Capped exponential backoff with jitter: attempt `a` (from 0) waits a
/// uniform time in `[d/2, d]`, `d = min(cap, base * 2^a)`. The jitter
/// keeps the members of a quorum that were refused together from coming
/// back together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First delay (ms).
    pub base_ms: u64,
    /// Longest delay (ms).
    pub cap_ms: u64,
}

impl Backoff {
    /// 500 ms, doubling up to 30 s.
    pub const DEFAULT: Backoff = Backoff {
        base_ms: 500,
        cap_ms: 30_000,
    };

    /// The delay before retry number `attempt` (0 for the first retry).
    pub fn delay<R: RngCore>(&self, attempt: u32, rng: &mut R) -> u64 {
        let full = self
            .base_ms
            .max(1)
            .saturating_mul(1u64 << attempt.min(32))
            .min(self.cap_ms.max(1));
        let half = full / 2;
        half + rng.next_u64() % (full - half + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    #[test]
    fn every_code_has_a_class_and_the_passing_ones_are_few() {
        let transient: Vec<StatusCode> = StatusCode::ALL
            .iter()
            .copied()
            .filter(|c| classify(*c) == Class::Transient)
            .collect();
        assert_eq!(
            transient,
            vec![
                StatusCode::Internal,
                StatusCode::QuotaExceeded,
                StatusCode::LookupTimedOut
            ]
        );
        assert_eq!(
            classify(StatusCode::UnknownNamespace),
            Class::NeedsNamespace
        );
        assert_eq!(
            classify(StatusCode::InvalidShareSignature),
            Class::Permanent
        );
        assert_eq!(classify(StatusCode::StaleSequence), Class::AlreadyHeld);
        // A retired key is retired at every node: nothing to retry.
        assert_eq!(classify(StatusCode::NamespaceRetired), Class::Permanent);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter_in_the_upper_half() {
        let b = Backoff {
            base_ms: 100,
            cap_ms: 1_000,
        };
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        for attempt in 0..20 {
            let full = (100u64 << attempt.min(20)).min(1_000);
            for _ in 0..50 {
                let d = b.delay(attempt, &mut rng);
                assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d}");
            }
        }
        let spread: std::collections::BTreeSet<u64> =
            (0..50).map(|_| b.delay(5, &mut rng)).collect();
        assert!(spread.len() > 10, "no jitter: {spread:?}");
    }
}
