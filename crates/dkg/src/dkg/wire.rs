//! The canonical, bounded binary encoding of [`DkgMessage`].
//!
//! ```text
//! message       = version:u8 (= 3) || tag:u8 || session_id:[32] || sender:u32 || body
//! Deal    (1)   = deal_body
//!   deal_body   = count:u32 || count * C:[96] || R:[96] || z:[32]
//! Share   (2)   = recipient:u32 || share:[32]
//! Response (3)  = count:u32 || count * verdict
//!   verdict     = kind:u8 || digest:[32]     kind 0 Valid, 1 BadShare,
//!                                             2 MissingShare, 3 InvalidDeal
//!               | 4:u8                        MissingDeal (no digest)
//! Justification (4) = count:u32 || count * (member:u32 || share:[32])
//!                     || 0:u8 | 1:u8 || deal_body   (the deal, if revealed)
//! Hello   (5)   = attempt:u64 || nonce:[32]
//! ```
//!
//! Integers are big-endian; `sender` is the dealer (Deal, Share,
//! Justification) or the responding or greeting member (Response, Hello).
//! A Hello carries the quorum's base session id, every other message the
//! run's. A deal revealed in a Justification is the dealer's Deal message
//! with the justification's session id and dealer: its hash is that
//! Deal's. Points are
//! *uncompressed* G1, `x || y` (`C` the commitments lowest degree first,
//! `R` the proof's nonce commitment), decoded with
//! [`CommitmentPoint::from_uncompressed`]: canonical, on the curve, not the
//! identity, but *not* subgroup-checked (that would be 2,800 checks for one
//! member of a 64-member quorum; the DKG checks the summed key set
//! instead, see the [`crate::dkg`] docs). Uncompressed because a member
//! decodes thousands of them: a compressed point costs a square root
//! (about 15 us here), an uncompressed one only the curve equation (about
//! 1 us), for 48 more bytes per point. Version 1 of this encoding carried
//! compressed points, version 2 had no Hello and could not reveal a deal;
//! both are refused.
//! Scalars are 32 bytes big-endian and must be below the group order;
//! shares must also be non-zero. Member
//! indices are in `1..=MAX_MEMBERS`; every `count` is in
//! `1..=MAX_MEMBERS` and is checked against the bytes left before anything
//! is allocated; justification members are strictly ascending; the whole
//! message is at most [`MAX_MESSAGE_BYTES`] and nothing may follow it.
//!
//! There is exactly one encoding of each message (`decode` then `encode`
//! gives back the input), which is why these bytes are also what the
//! protocol hashes. The decoder never panics; whether counts match the
//! session's `n` and `threshold` is the state machine's check.

use blstrs::Scalar;

use super::config::SessionId;
use super::error::WireError;
use super::messages::{
    DealMessage, DealerVerdict, Digest, DkgMessage, HelloMessage, JustificationMessage,
    ResponseMessage, ShareMessage,
};
use super::point::{CommitmentPoint, DealCommitments, G1_UNCOMPRESSED_BYTES};
use super::proof::ProofOfKnowledge;
use crate::error::DecodeError;
use crate::keys::{SecretKeyShare, SCALAR_BYTES};

/// The encoding version this code writes and reads.
pub const WIRE_VERSION: u8 = 3;
/// The largest encoded message accepted (4 MiB).
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// Message tag of [`DealMessage`].
pub const TAG_DEAL: u8 = 1;
/// Message tag of [`ShareMessage`].
pub const TAG_SHARE: u8 = 2;
/// Message tag of [`ResponseMessage`].
pub const TAG_RESPONSE: u8 = 3;
/// Message tag of [`JustificationMessage`].
pub const TAG_JUSTIFICATION: u8 = 4;
/// Message tag of [`HelloMessage`].
pub const TAG_HELLO: u8 = 5;

const VERDICT_VALID: u8 = 0;
const VERDICT_BAD_SHARE: u8 = 1;
const VERDICT_MISSING_SHARE: u8 = 2;
const VERDICT_INVALID_DEAL: u8 = 3;
const VERDICT_MISSING_DEAL: u8 = 4;

const HEADER_BYTES: usize = 2 + 32 + 4;
const DIGEST_BYTES: usize = 32;

impl DkgMessage {
    /// The canonical encoding (see the module docs).
    ///
    /// Encoded Share and Justification messages contain secret shares:
    /// send them only over the encrypted transport and never log them.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Deal(m) => encode_deal(m),
            Self::Share(m) => {
                let mut out = header(TAG_SHARE, &m.session_id, m.dealer, 4 + SCALAR_BYTES);
                out.extend_from_slice(&m.share.index().to_be_bytes());
                out.extend_from_slice(&m.share.scalar_bytes()[..]);
                out
            }
            Self::Response(m) => {
                let mut out = header(
                    TAG_RESPONSE,
                    &m.session_id,
                    m.member,
                    4 + m.verdicts.len() * (1 + DIGEST_BYTES),
                );
                put_count(&mut out, m.verdicts.len());
                for verdict in &m.verdicts {
                    let (kind, digest) = match verdict {
                        DealerVerdict::Valid(d) => (VERDICT_VALID, Some(d)),
                        DealerVerdict::BadShare(d) => (VERDICT_BAD_SHARE, Some(d)),
                        DealerVerdict::MissingShare(d) => (VERDICT_MISSING_SHARE, Some(d)),
                        DealerVerdict::InvalidDeal(d) => (VERDICT_INVALID_DEAL, Some(d)),
                        DealerVerdict::MissingDeal => (VERDICT_MISSING_DEAL, None),
                    };
                    out.push(kind);
                    if let Some(d) = digest {
                        out.extend_from_slice(&d.0);
                    }
                }
                out
            }
            Self::Justification(m) => {
                let deal_len = m.deal.as_ref().map_or(0, deal_body_len);
                let mut out = header(
                    TAG_JUSTIFICATION,
                    &m.session_id,
                    m.dealer,
                    4 + m.revealed.len() * (4 + SCALAR_BYTES) + 1 + deal_len,
                );
                put_count(&mut out, m.revealed.len());
                for share in &m.revealed {
                    out.extend_from_slice(&share.index().to_be_bytes());
                    out.extend_from_slice(&share.scalar_bytes()[..]);
                }
                match &m.deal {
                    None => out.push(0),
                    Some(deal) => {
                        out.push(1);
                        put_deal_body(&mut out, deal);
                    }
                }
                out
            }
            Self::Hello(m) => {
                let mut out = header(TAG_HELLO, &m.session_id, m.member, 8 + 32);
                out.extend_from_slice(&m.attempt.to_be_bytes());
                out.extend_from_slice(&m.nonce);
                out
            }
        }
    }

    /// Decodes one message, with every check of the module docs. Never
    /// panics, and allocates at most in proportion to the input.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(WireError::TooLarge {
                len: bytes.len(),
                max: MAX_MESSAGE_BYTES,
            });
        }
        let mut r = Reader { bytes };
        let version = r.u8()?;
        if version != WIRE_VERSION {
            return Err(WireError::UnsupportedVersion(version));
        }
        let tag = r.u8()?;
        if !(TAG_DEAL..=TAG_HELLO).contains(&tag) {
            return Err(WireError::UnknownTag(tag));
        }
        let session_id = SessionId(r.array::<32>()?);
        let sender = r.index()?;
        let message = match tag {
            TAG_DEAL => Self::Deal(r.deal_body(session_id, sender)?),
            TAG_SHARE => {
                let recipient = r.index()?;
                let share = SecretKeyShare::from_bytes(recipient, r.take(SCALAR_BYTES)?)?;
                Self::Share(ShareMessage {
                    session_id,
                    dealer: sender,
                    share,
                })
            }
            TAG_RESPONSE => {
                let count = r.count(1, 0)?;
                let mut verdicts = Vec::with_capacity(count);
                for _ in 0..count {
                    let kind = r.u8()?;
                    let verdict = match kind {
                        VERDICT_MISSING_DEAL => DealerVerdict::MissingDeal,
                        VERDICT_VALID..=VERDICT_INVALID_DEAL => {
                            let d = Digest(r.array::<DIGEST_BYTES>()?);
                            match kind {
                                VERDICT_VALID => DealerVerdict::Valid(d),
                                VERDICT_BAD_SHARE => DealerVerdict::BadShare(d),
                                VERDICT_MISSING_SHARE => DealerVerdict::MissingShare(d),
                                _ => DealerVerdict::InvalidDeal(d),
                            }
                        }
                        other => return Err(WireError::UnknownVerdict(other)),
                    };
                    verdicts.push(verdict);
                }
                Self::Response(ResponseMessage {
                    session_id,
                    member: sender,
                    verdicts,
                })
            }
            TAG_JUSTIFICATION => {
                // The list, then at least the deal flag.
                let count = r.count(4 + SCALAR_BYTES, 1)?;
                let mut revealed: Vec<SecretKeyShare> = Vec::with_capacity(count);
                for _ in 0..count {
                    let member = r.index()?;
                    if revealed.last().is_some_and(|prev| prev.index() >= member) {
                        return Err(WireError::NotAscending);
                    }
                    revealed.push(SecretKeyShare::from_bytes(member, r.take(SCALAR_BYTES)?)?);
                }
                let deal = match r.u8()? {
                    0 => None,
                    1 => Some(r.deal_body(session_id, sender)?),
                    other => return Err(WireError::UnknownFlag(other)),
                };
                Self::Justification(JustificationMessage {
                    session_id,
                    dealer: sender,
                    revealed,
                    deal,
                })
            }
            _ => Self::Hello(HelloMessage {
                session_id,
                member: sender,
                attempt: r.u64()?,
                nonce: r.array::<32>()?,
            }),
        };
        if !r.bytes.is_empty() {
            return Err(WireError::TrailingBytes {
                extra: r.bytes.len(),
            });
        }
        Ok(message)
    }
}

/// The encoding of `DkgMessage::Deal(deal)`, without cloning the deal.
pub(crate) fn encode_deal(deal: &DealMessage) -> Vec<u8> {
    let mut out = header(TAG_DEAL, &deal.session_id, deal.dealer, deal_body_len(deal));
    put_deal_body(&mut out, deal);
    out
}

fn deal_body_len(deal: &DealMessage) -> usize {
    4 + (deal.commitments.points().len() + 1) * G1_UNCOMPRESSED_BYTES + SCALAR_BYTES
}

/// `deal_body`: what follows a Deal's header, and a revealed deal's flag.
fn put_deal_body(out: &mut Vec<u8>, deal: &DealMessage) {
    let commitments = deal.commitments.points();
    put_count(out, commitments.len());
    for c in commitments {
        out.extend_from_slice(&c.to_uncompressed());
    }
    out.extend_from_slice(&deal.proof.commitment.to_uncompressed());
    out.extend_from_slice(&deal.proof.response.to_bytes_be());
}

fn header(tag: u8, session_id: &SessionId, sender: u32, body: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + body);
    out.push(WIRE_VERSION);
    out.push(tag);
    out.extend_from_slice(session_id.as_bytes());
    out.extend_from_slice(&sender.to_be_bytes());
    out
}

/// Writes a list length. A list too long for a `u32` is written as
/// `u32::MAX`, which no decoder accepts: such a message cannot be valid.
fn put_count(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

/// A cursor over the input that fails instead of reading past the end.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], WireError> {
        let (head, tail) = self
            .bytes
            .split_at_checked(len)
            .ok_or(WireError::Truncated)?;
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(u8::from_be_bytes(self.array::<1>()?))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array::<4>()?))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array::<8>()?))
    }

    /// A `deal_body`, as the deal of `dealer` in `session_id`.
    fn deal_body(&mut self, session_id: SessionId, dealer: u32) -> Result<DealMessage, WireError> {
        let count = self.count(G1_UNCOMPRESSED_BYTES, G1_UNCOMPRESSED_BYTES + SCALAR_BYTES)?;
        let mut commitments = Vec::with_capacity(count);
        for _ in 0..count {
            commitments.push(CommitmentPoint::from_uncompressed(
                self.take(G1_UNCOMPRESSED_BYTES)?,
            )?);
        }
        let commitments = DealCommitments::new(commitments)?;
        let commitment = CommitmentPoint::from_uncompressed(self.take(G1_UNCOMPRESSED_BYTES)?)?;
        let response = self.scalar()?;
        Ok(DealMessage {
            session_id,
            dealer,
            commitments,
            proof: ProofOfKnowledge {
                commitment,
                response,
            },
        })
    }

    /// A member index in `1..=MAX_MEMBERS`.
    fn index(&mut self) -> Result<u32, WireError> {
        let index = self.u32()?;
        if index == 0 || index > crate::MAX_MEMBERS {
            return Err(WireError::IndexOutOfRange { index });
        }
        Ok(index)
    }

    /// A list length in `1..=MAX_MEMBERS` whose items, at least
    /// `min_item` bytes each, and the `tail` bytes that follow the list,
    /// fit in what is left of the input.
    fn count(&mut self, min_item: usize, tail: usize) -> Result<usize, WireError> {
        let count = self.u32()?;
        let fits = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(min_item))
            .and_then(|items| items.checked_add(tail))
            .is_some_and(|needed| needed <= self.bytes.len());
        if count == 0 || count > crate::MAX_MEMBERS || !fits {
            return Err(WireError::CountOutOfRange { count });
        }
        usize::try_from(count).map_err(|_| WireError::CountOutOfRange { count })
    }

    /// A canonical scalar (below the group order; zero allowed).
    fn scalar(&mut self) -> Result<Scalar, WireError> {
        let bytes = self.array::<SCALAR_BYTES>()?;
        Option::from(Scalar::from_bytes_be(&bytes))
            .ok_or(WireError::Field(DecodeError::InvalidScalar))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poly::Polynomial;
    use blstrs::G1Projective;
    use group::Group;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    /// A point from the seed; every fourth one outside G1 (the wire
    /// carries those too).
    fn point(seed: u64) -> CommitmentPoint {
        let mut p = G1Projective::generator() * Scalar::from(seed | 1);
        if seed.is_multiple_of(4) {
            p += crate::dkg::point::testing::off_subgroup_point();
        }
        CommitmentPoint::from_point(p).unwrap()
    }

    fn share(index: u32, seed: u64) -> SecretKeyShare {
        SecretKeyShare::new(index, Scalar::from(seed | 1) * Scalar::from(0x1234_5678u64)).unwrap()
    }

    fn digest(seed: u64) -> Digest {
        let mut d = [0u8; 32];
        d[..8].copy_from_slice(&seed.to_be_bytes());
        d[31] = 0xa5;
        Digest(d)
    }

    fn verdict() -> impl Strategy<Value = DealerVerdict> {
        prop_oneof![
            any::<u64>().prop_map(|s| DealerVerdict::Valid(digest(s))),
            any::<u64>().prop_map(|s| DealerVerdict::BadShare(digest(s))),
            any::<u64>().prop_map(|s| DealerVerdict::MissingShare(digest(s))),
            any::<u64>().prop_map(|s| DealerVerdict::InvalidDeal(digest(s))),
            Just(DealerVerdict::MissingDeal),
        ]
    }

    fn index() -> impl Strategy<Value = u32> {
        prop_oneof![1u32..=70, Just(crate::MAX_MEMBERS)]
    }

    /// Every message variant with random (valid) contents.
    fn message() -> impl Strategy<Value = DkgMessage> {
        let session = any::<[u8; 32]>().prop_map(SessionId);
        prop_oneof![
            (session.clone(), index(), 1u64..6, any::<u64>()).prop_map(|(s, dealer, k, seed)| {
                let commitments =
                    DealCommitments::new((0..k).map(|i| point(seed.wrapping_add(i))).collect())
                        .unwrap();
                DkgMessage::Deal(DealMessage {
                    session_id: s,
                    dealer,
                    commitments,
                    proof: ProofOfKnowledge {
                        commitment: point(seed ^ 0xff),
                        response: Scalar::from(seed),
                    },
                })
            }),
            (session.clone(), index(), index(), any::<u64>()).prop_map(
                |(s, dealer, recipient, seed)| {
                    DkgMessage::Share(ShareMessage {
                        session_id: s,
                        dealer,
                        share: share(recipient, seed),
                    })
                }
            ),
            (
                session.clone(),
                index(),
                proptest::collection::vec(verdict(), 1..40)
            )
                .prop_map(|(s, member, verdicts)| {
                    DkgMessage::Response(ResponseMessage {
                        session_id: s,
                        member,
                        verdicts,
                    })
                }),
            (
                session.clone(),
                index(),
                proptest::collection::btree_set(1u32..=500, 1..8),
                any::<u64>(),
                proptest::option::of(1u64..4),
            )
                .prop_map(|(s, dealer, members, seed, with_deal)| {
                    let deal = with_deal.map(|k| DealMessage {
                        session_id: s,
                        dealer,
                        commitments: DealCommitments::new(
                            (0..k).map(|i| point(seed.wrapping_add(i))).collect(),
                        )
                        .unwrap(),
                        proof: ProofOfKnowledge {
                            commitment: point(seed ^ 0xf0),
                            response: Scalar::from(seed),
                        },
                    });
                    DkgMessage::Justification(JustificationMessage {
                        session_id: s,
                        dealer,
                        revealed: members.into_iter().map(|m| share(m, seed)).collect(),
                        deal,
                    })
                }),
            (session, index(), any::<u64>(), any::<[u8; 32]>()).prop_map(
                |(s, member, attempt, nonce)| {
                    DkgMessage::Hello(HelloMessage {
                        session_id: s,
                        member,
                        attempt,
                        nonce,
                    })
                }
            ),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// encode then decode gives back every variant exactly.
        #[test]
        fn round_trip(msg in message()) {
            let bytes = msg.encode();
            prop_assert_eq!(DkgMessage::decode(&bytes), Ok(msg));
        }

        /// Arbitrary bytes never panic the decoder.
        #[test]
        fn arbitrary_bytes_do_not_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = DkgMessage::decode(&bytes);
        }

        /// Valid messages with a byte changed, truncated or extended never
        /// panic the decoder, and whatever still decodes re-encodes to the
        /// very same bytes (the encoding is canonical).
        #[test]
        fn mutated_messages_do_not_panic_and_stay_canonical(
            msg in message(),
            at in any::<prop::sample::Index>(),
            xor in 1u8..=255,
            cut in any::<prop::sample::Index>(),
            extra in proptest::collection::vec(any::<u8>(), 0..4),
        ) {
            let bytes = msg.encode();
            let mut flipped = bytes.clone();
            let i = at.index(flipped.len());
            flipped[i] ^= xor;
            let truncated = &bytes[..cut.index(bytes.len())];
            let mut extended = bytes.clone();
            extended.extend_from_slice(&extra);
            for candidate in [&flipped[..], truncated, &extended[..]] {
                if let Ok(decoded) = DkgMessage::decode(candidate) {
                    prop_assert_eq!(decoded.encode(), candidate.to_vec());
                }
            }
        }
    }

    #[test]
    fn decoder_errors_are_typed() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let poly = Polynomial::random(2, &mut rng);
        let deal = DealMessage::new(SessionId([7; 32]), 3, &poly, &mut rng).unwrap();
        let bytes = DkgMessage::Deal(deal.clone()).encode();
        assert_eq!(bytes, encode_deal(&deal));
        assert_eq!(
            bytes.len(),
            HEADER_BYTES + 4 + 3 * G1_UNCOMPRESSED_BYTES + SCALAR_BYTES
        );
        assert_eq!(DkgMessage::decode(&bytes), Ok(DkgMessage::Deal(deal)));

        assert_eq!(DkgMessage::decode(&[]), Err(WireError::Truncated));
        // Version 1 (compressed deal points), version 2 (no Hello, no
        // revealed deal) and anything newer are refused.
        for version in [1, 2, 4] {
            let mut v = bytes.clone();
            v[0] = version;
            assert_eq!(
                DkgMessage::decode(&v),
                Err(WireError::UnsupportedVersion(version))
            );
        }
        let mut v = bytes.clone();
        v[1] = 9;
        assert_eq!(DkgMessage::decode(&v), Err(WireError::UnknownTag(9)));
        let mut v = bytes.clone();
        v[34..38].copy_from_slice(&0u32.to_be_bytes());
        assert_eq!(
            DkgMessage::decode(&v),
            Err(WireError::IndexOutOfRange { index: 0 })
        );
        // A huge count is refused before any allocation.
        let mut v = bytes.clone();
        v[38..42].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            DkgMessage::decode(&v),
            Err(WireError::CountOutOfRange { count: u32::MAX })
        );
        let mut v = bytes.clone();
        v[38..42].copy_from_slice(&3u32.to_be_bytes());
        assert_eq!(
            DkgMessage::decode(&v),
            Err(WireError::CountOutOfRange { count: 3 })
        );
        let mut v = bytes.clone();
        v.push(0);
        assert_eq!(
            DkgMessage::decode(&v),
            Err(WireError::TrailingBytes { extra: 1 })
        );
        // Flag bits (compression, infinity, sign) in an uncompressed point.
        for flag in [0x80u8, 0x40, 0x20] {
            let mut v = bytes.clone();
            v[42] ^= flag;
            assert!(matches!(DkgMessage::decode(&v), Err(WireError::Field(_))));
        }
        // A coordinate not below p: x with all of its 381 bits set.
        let mut v = bytes.clone();
        v[42..42 + 48].copy_from_slice(&[0x1f; 48]);
        assert!(matches!(DkgMessage::decode(&v), Err(WireError::Field(_))));
        assert_eq!(
            DkgMessage::decode(&vec![0u8; MAX_MESSAGE_BYTES + 1]),
            Err(WireError::TooLarge {
                len: MAX_MESSAGE_BYTES + 1,
                max: MAX_MESSAGE_BYTES
            })
        );

        let justification = DkgMessage::Justification(JustificationMessage {
            session_id: SessionId([7; 32]),
            dealer: 1,
            revealed: vec![share(4, 1), share(2, 2)],
            deal: None,
        });
        assert_eq!(
            DkgMessage::decode(&justification.encode()),
            Err(WireError::NotAscending)
        );
        // The revealed-deal flag is 0 or 1.
        let justification = DkgMessage::Justification(JustificationMessage {
            session_id: SessionId([7; 32]),
            dealer: 1,
            revealed: vec![share(2, 2)],
            deal: None,
        });
        let mut v = justification.encode();
        let last = v.len() - 1;
        v[last] = 2;
        assert_eq!(DkgMessage::decode(&v), Err(WireError::UnknownFlag(2)));
        let response = DkgMessage::Response(ResponseMessage {
            session_id: SessionId([7; 32]),
            member: 1,
            verdicts: vec![DealerVerdict::MissingDeal],
        });
        let mut v = response.encode();
        let last = v.len() - 1;
        v[last] = 5;
        assert_eq!(DkgMessage::decode(&v), Err(WireError::UnknownVerdict(5)));
    }

    /// Deal points must be on the curve (and not the identity), but may be
    /// outside G1: such a deal decodes, re-encodes to the same bytes, and
    /// its point says it is outside the subgroup.
    #[test]
    fn deal_points_are_checked_on_curve_not_in_subgroup() {
        use group::prime::PrimeCurveAffine;
        use group::Curve;
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let poly = Polynomial::random(3, &mut rng);
        let deal = DealMessage::new(SessionId([9; 32]), 1, &poly, &mut rng).unwrap();
        let bytes = encode_deal(&deal);
        let c1 = HEADER_BYTES + 4 + G1_UNCOMPRESSED_BYTES;
        let r_at = HEADER_BYTES + 4 + 3 * G1_UNCOMPRESSED_BYTES;

        // (x, y) with y moved off the curve: y + 1 (canonical, below p).
        let mut off_curve = deal.commitments.points()[1].to_uncompressed();
        let last = G1_UNCOMPRESSED_BYTES - 1;
        off_curve[last] = off_curve[last].wrapping_add(1);
        for at in [c1, r_at] {
            let mut v = bytes.clone();
            v[at..at + G1_UNCOMPRESSED_BYTES].copy_from_slice(&off_curve);
            assert_eq!(
                DkgMessage::decode(&v),
                Err(WireError::Field(DecodeError::InvalidPoint))
            );
            let mut v = bytes.clone();
            v[at..at + G1_UNCOMPRESSED_BYTES]
                .copy_from_slice(&blstrs::G1Affine::identity().to_uncompressed());
            assert_eq!(
                DkgMessage::decode(&v),
                Err(WireError::Field(DecodeError::Identity))
            );
        }

        let torsion = crate::dkg::point::testing::off_subgroup_point();
        let tainted = (deal.commitments.points()[1].point() + torsion).to_affine();
        let tainted_r = (deal.proof.commitment.point() + torsion).to_affine();
        let mut v = bytes.clone();
        v[c1..c1 + G1_UNCOMPRESSED_BYTES].copy_from_slice(&tainted.to_uncompressed());
        v[r_at..r_at + G1_UNCOMPRESSED_BYTES].copy_from_slice(&tainted_r.to_uncompressed());
        let Ok(DkgMessage::Deal(decoded)) = DkgMessage::decode(&v) else {
            panic!("a deal with points outside G1 decodes");
        };
        assert_eq!(DkgMessage::Deal(decoded.clone()).encode(), v);
        assert!(!decoded.commitments.is_in_subgroup());
        assert!(!decoded.proof.commitment.is_in_subgroup());
        assert!(decoded.commitments.points()[0].is_in_subgroup());
        assert_eq!(decoded.commitments.points()[1].affine(), &tainted);
    }
}
