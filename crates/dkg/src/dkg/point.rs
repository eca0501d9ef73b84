//! G1 points as DKG messages carry them: on the curve, but not yet known to
//! be in the prime-order subgroup.
//!
//! A deal carries `threshold + 1` points (the commitments and the proof's
//! `R`), so a member of a 64-member quorum with threshold 43 receives about
//! 2,800 of them. Decoding each as a compressed [`PublicKey`] costs a
//! decompression (a square root, about 15 us here) and a subgroup check
//! (about 45 us here). Deals therefore carry points uncompressed, and
//! [`CommitmentPoint`] skips the subgroup check: its decoder checks the
//! length, that the encoding is canonical, that the point is on the curve
//! (the curve equation, about 1 us) and that it is not the identity. The
//! compressed decoder ([`CommitmentPoint::from_bytes`]) exists too; it
//! checks the curve by blst's decompression, which fails when `x^3 + 4`
//! has no square root. It is a type
//! of its own, with no conversion to [`PublicKey`] except through
//! [`CommitmentPoint::to_public_key`], which does the subgroup check.
//!
//! Why deferring the check is sound is in the [`crate::dkg`] module docs:
//! the DKG decides every relation on the points' G1 components, and checks
//! the summed group key set, the only points that leave the DKG, at the
//! end.

use std::fmt;

use blstrs::{G1Affine, G1Projective};
use group::prime::PrimeCurveAffine;
use group::{Curve, Group};

use crate::error::DecodeError;
use crate::keys::{PublicKey, G1_BYTES};
use crate::public_key_set::{evaluate_at, PublicKeySet};

/// Length of an uncompressed G1 point (`x || y`, big-endian).
pub const G1_UNCOMPRESSED_BYTES: usize = 96;

/// The effective G1 cofactor of BLS12-381, `h_eff = 1 - x` with the curve
/// parameter `x = -0xd201000000010000`.
///
/// Every point of `E(Fp)` is `P_1 + T` with `P_1` in G1 (order `r`) and `T`
/// in the torsion part (order dividing the cofactor `h = (x - 1)^2 / 3`);
/// multiplying by `h_eff` maps `E(Fp)` onto G1 (the hash-to-curve
/// standard's `clear_cofactor`), so it kills every `T`, and it is
/// injective on G1 because `r` does not divide it.
pub(crate) const H_EFF: u64 = 0xd201_0000_0001_0001;

/// `point * H_EFF` by double-and-add over the bits of `H_EFF`: 63
/// doublings and 6 additions, about 20 us.
///
/// Deliberately not `point * Scalar::from(H_EFF)`: blst multiplies by a
/// full scalar with the GLV endomorphism, which computes the right G1
/// component but not the right torsion component for a point outside G1.
/// Plain double-and-add is the group law only, exact on the whole curve.
pub(crate) fn clear_torsion(point: &G1Projective) -> G1Projective {
    let mut acc = *point;
    for bit in (0..63).rev() {
        acc = acc.double();
        if (H_EFF >> bit) & 1 == 1 {
            acc += point;
        }
    }
    acc
}

/// Whether the G1 component of `point` is zero, i.e. whether `point` is a
/// torsion point (or the identity).
pub(crate) fn is_torsion(point: &G1Projective) -> bool {
    bool::from(clear_torsion(point).is_identity())
}

/// A point from a DKG message: on the curve and not the identity, but
/// **not** subgroup-checked (see the module docs).
///
/// Keeps the canonical compressed bytes it was decoded from, so hashing a
/// deal or a transcript does not compress the points again.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CommitmentPoint {
    affine: G1Affine,
    bytes: [u8; G1_BYTES],
}

impl CommitmentPoint {
    /// Decodes an uncompressed point (`x || y`, 96 bytes, as DKG deals
    /// carry them), rejecting wrong lengths, non-canonical encodings (flag
    /// bits set, coordinates not below `p`), points off the curve and the
    /// identity. Does **not** check the subgroup.
    ///
    /// About 15 times cheaper than [`CommitmentPoint::from_bytes`]: no
    /// square root, only the curve equation.
    pub fn from_uncompressed(bytes: &[u8]) -> Result<Self, DecodeError> {
        let array: &[u8; G1_UNCOMPRESSED_BYTES] =
            bytes.try_into().map_err(|_| DecodeError::Length {
                expected: G1_UNCOMPRESSED_BYTES,
                got: bytes.len(),
            })?;
        // blst's deserialize: rejects coordinates >= p and points off the
        // curve (it ignores the top three flag bits; the round trip below
        // refuses them).
        let affine: G1Affine = Option::from(G1Affine::from_uncompressed_unchecked(array))
            .ok_or(DecodeError::InvalidPoint)?;
        if bool::from(affine.is_identity()) {
            return Err(DecodeError::Identity);
        }
        if !bool::from(affine.is_on_curve()) || affine.to_uncompressed() != *array {
            return Err(DecodeError::InvalidPoint);
        }
        Ok(Self {
            bytes: affine.to_compressed(),
            affine,
        })
    }

    /// The uncompressed encoding (`x || y`), as DKG deals carry it.
    pub fn to_uncompressed(&self) -> [u8; G1_UNCOMPRESSED_BYTES] {
        self.affine.to_uncompressed()
    }

    /// Decodes a compressed point, rejecting wrong lengths, non-canonical
    /// encodings, points off the curve and the identity. Does **not**
    /// check the subgroup.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let array: &[u8; G1_BYTES] = bytes.try_into().map_err(|_| DecodeError::Length {
            expected: G1_BYTES,
            got: bytes.len(),
        })?;
        // blst's uncompress: rejects x >= p and bad flag bits, and fails
        // unless x^3 + 4 has a square root (checked by squaring it back),
        // so the point it returns is on the curve.
        let affine: G1Affine = Option::from(G1Affine::from_compressed_unchecked(array))
            .ok_or(DecodeError::InvalidPoint)?;
        if bool::from(affine.is_identity()) {
            return Err(DecodeError::Identity);
        }
        // One encoding per point: blst's decoder already guarantees it,
        // this makes it true by construction (about 1% of the decode).
        if affine.to_compressed() != *array {
            return Err(DecodeError::InvalidPoint);
        }
        Ok(Self {
            affine,
            bytes: *array,
        })
    }

    /// Wraps a point, rejecting the identity and (for points built with
    /// blstrs' unchecked constructors) points off the curve. Not
    /// subgroup-checked.
    pub fn from_point(point: G1Projective) -> Result<Self, DecodeError> {
        if bool::from(point.is_identity()) {
            return Err(DecodeError::Identity);
        }
        if !bool::from(point.is_on_curve()) {
            return Err(DecodeError::InvalidPoint);
        }
        let affine = point.to_affine();
        Ok(Self {
            bytes: affine.to_compressed(),
            affine,
        })
    }

    /// The compressed encoding.
    pub fn to_bytes(&self) -> [u8; G1_BYTES] {
        self.bytes
    }

    /// The point (possibly outside G1).
    pub fn point(&self) -> G1Projective {
        self.affine.into()
    }

    /// The affine point (possibly outside G1).
    pub fn affine(&self) -> &G1Affine {
        &self.affine
    }

    /// Whether the point is in the prime-order subgroup G1 (about 47 us).
    pub fn is_in_subgroup(&self) -> bool {
        bool::from(self.affine.is_torsion_free())
    }

    /// The point as a [`PublicKey`], after the subgroup check
    /// ([`DecodeError::InvalidPoint`] outside G1).
    pub fn to_public_key(&self) -> Result<PublicKey, DecodeError> {
        if self.is_in_subgroup() {
            // Not the identity: every constructor refuses it.
            Ok(PublicKey(self.affine))
        } else {
            Err(DecodeError::InvalidPoint)
        }
    }
}

/// A checked key is a valid commitment point.
impl From<PublicKey> for CommitmentPoint {
    fn from(key: PublicKey) -> Self {
        Self {
            affine: key.0,
            bytes: key.to_bytes(),
        }
    }
}

impl fmt::Debug for CommitmentPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CommitmentPoint({}..)", hex::encode(&self.bytes[..8]))
    }
}

/// One dealer's Feldman commitments `C_0..C_{k-1}` as its deal carries
/// them: [`CommitmentPoint`]s, not subgroup-checked.
///
/// The counterpart of [`PublicKeySet`] for unchecked points;
/// [`DealCommitments::to_public_key_set`] checks them all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DealCommitments {
    points: Vec<CommitmentPoint>,
}

impl DealCommitments {
    /// Wraps commitments, lowest degree first. Fails on an empty list or
    /// more than [`crate::MAX_MEMBERS`] commitments.
    pub fn new(points: Vec<CommitmentPoint>) -> Result<Self, DecodeError> {
        if points.is_empty() || points.len() > crate::MAX_MEMBERS as usize {
            return Err(DecodeError::CommitmentCount);
        }
        Ok(Self { points })
    }

    /// The number of commitments (the threshold the dealer used).
    pub fn threshold(&self) -> u32 {
        self.points.len() as u32
    }

    /// `C_0`, the commitment to the dealer's secret.
    pub fn constant(&self) -> &CommitmentPoint {
        // `new` refuses an empty list, so index 0 always exists.
        &self.points[0]
    }

    /// The commitments, lowest degree first.
    pub fn points(&self) -> &[CommitmentPoint] {
        &self.points
    }

    /// `sum_k C_k * index^k` by Horner's rule with short double-and-add
    /// (exact on the whole curve, as [`PublicKeySet::public_key_share`]).
    pub(crate) fn public_key_share_point(&self, index: u32) -> G1Projective {
        evaluate_at(self.points.iter().map(CommitmentPoint::affine), index)
    }

    /// Whether every commitment is in G1 (a subgroup check each).
    pub fn is_in_subgroup(&self) -> bool {
        self.points.iter().all(CommitmentPoint::is_in_subgroup)
    }

    /// The commitments as a [`PublicKeySet`], after a subgroup check of
    /// every one.
    pub fn to_public_key_set(&self) -> Result<PublicKeySet, DecodeError> {
        let keys = self
            .points
            .iter()
            .map(CommitmentPoint::to_public_key)
            .collect::<Result<Vec<_>, _>>()?;
        PublicKeySet::new(keys)
    }
}

impl From<&PublicKeySet> for DealCommitments {
    fn from(set: &PublicKeySet) -> Self {
        Self {
            points: set
                .commitments()
                .iter()
                .map(|&c| CommitmentPoint::from(c))
                .collect(),
        }
    }
}

/// Test helpers shared by the dkg module's unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use blstrs::Scalar;
    use ff::Field;

    /// A point on the curve outside G1: x-coordinates decoded unchecked
    /// until one is not torsion-free.
    pub(crate) fn off_subgroup_point() -> G1Projective {
        let mut bytes = [0u8; G1_BYTES];
        bytes[0] = 0x80;
        for x in 1u8..=255 {
            bytes[G1_BYTES - 1] = x;
            let p: Option<G1Affine> = G1Affine::from_compressed_unchecked(&bytes).into();
            if let Some(p) = p {
                if !bool::from(p.is_torsion_free()) {
                    return p.into();
                }
            }
        }
        panic!("no off-subgroup point found");
    }

    /// A torsion point: `r * P` keeps only `P`'s torsion component, and
    /// is not the identity when `P` is outside G1.
    pub(crate) fn torsion_point() -> G1Projective {
        let p = off_subgroup_point();
        // r = (r - 1) + 1, by the group law only (no GLV): square-and-
        // multiply over the bytes of r - 1.
        let r_minus_1 = (Scalar::ZERO - Scalar::ONE).to_bytes_be();
        let mut acc = G1Projective::identity();
        for byte in r_minus_1 {
            for bit in (0..8).rev() {
                acc = acc.double();
                if (byte >> bit) & 1 == 1 {
                    acc += p;
                }
            }
        }
        acc += p;
        assert!(!bool::from(acc.is_identity()));
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{off_subgroup_point, torsion_point};
    use super::*;
    use blstrs::Scalar;
    use proptest::prelude::*;

    #[test]
    fn clearing_kills_torsion_and_keeps_g1() {
        let t = torsion_point();
        assert!(is_torsion(&t));
        assert!(!bool::from(t.to_affine().is_torsion_free()));
        let g = G1Projective::generator() * Scalar::from(77u64);
        assert!(!is_torsion(&g));
        assert!(!is_torsion(&(g + t)));
        // The G1 component survives intact (times h_eff).
        assert_eq!(clear_torsion(&(g + t)), clear_torsion(&g));
        assert_eq!(clear_torsion(&g), g * Scalar::from(H_EFF));
        assert!(bool::from(
            clear_torsion(&off_subgroup_point())
                .to_affine()
                .is_torsion_free()
        ));
    }

    #[test]
    fn decoder_checks_curve_and_identity_but_not_subgroup() {
        let off = off_subgroup_point();
        let bytes = off.to_affine().to_compressed();
        let point = CommitmentPoint::from_bytes(&bytes).unwrap();
        assert!(!point.is_in_subgroup());
        assert_eq!(point.to_public_key(), Err(DecodeError::InvalidPoint));
        assert_eq!(
            PublicKey::from_bytes(&bytes),
            Err(DecodeError::InvalidPoint)
        );
        assert_eq!(point.to_bytes(), bytes);

        let identity = G1Affine::identity().to_compressed();
        assert_eq!(
            CommitmentPoint::from_bytes(&identity),
            Err(DecodeError::Identity)
        );
        assert_eq!(
            CommitmentPoint::from_bytes(&[0u8; 3]),
            Err(DecodeError::Length {
                expected: G1_BYTES,
                got: 3
            })
        );
        // An x-coordinate with no point on the curve is refused.
        let mut not_on_curve = [0u8; G1_BYTES];
        not_on_curve[0] = 0x80;
        let x = (1u8..=255)
            .find(|&x| {
                not_on_curve[G1_BYTES - 1] = x;
                Option::<G1Affine>::from(G1Affine::from_compressed_unchecked(&not_on_curve))
                    .is_none()
            })
            .expect("half of all x are off the curve");
        not_on_curve[G1_BYTES - 1] = x;
        assert_eq!(
            CommitmentPoint::from_bytes(&not_on_curve),
            Err(DecodeError::InvalidPoint)
        );
        // x >= p, and an uncompressed-flag encoding, are refused.
        assert_eq!(
            CommitmentPoint::from_bytes(&[0xbf; G1_BYTES]),
            Err(DecodeError::InvalidPoint)
        );
        let mut uncompressed_flag = bytes;
        uncompressed_flag[0] &= 0x7f;
        assert_eq!(
            CommitmentPoint::from_bytes(&uncompressed_flag),
            Err(DecodeError::InvalidPoint)
        );

        let key = PublicKey::from_point(G1Projective::generator() * Scalar::from(9u64)).unwrap();
        let checked = CommitmentPoint::from_bytes(&key.to_bytes()).unwrap();
        assert_eq!(checked, CommitmentPoint::from(key));
        assert_eq!(checked.to_public_key(), Ok(key));
        assert_eq!(CommitmentPoint::from_point(key.point()), Ok(checked));
        assert_eq!(
            CommitmentPoint::from_point(G1Projective::identity()),
            Err(DecodeError::Identity)
        );
    }

    #[test]
    fn deal_commitments_check_every_point() {
        let g = G1Projective::generator();
        let keys: Vec<PublicKey> = (1..=3u64)
            .map(|i| PublicKey::from_point(g * Scalar::from(i)).unwrap())
            .collect();
        let set = PublicKeySet::new(keys).unwrap();
        let deal = DealCommitments::from(&set);
        assert!(deal.is_in_subgroup());
        assert_eq!(deal.to_public_key_set(), Ok(set.clone()));
        assert_eq!(deal.constant().to_public_key(), Ok(set.quorum_key()));
        for index in [0, 1, 5, 64] {
            assert_eq!(
                deal.public_key_share_point(index),
                set.public_key_share(index).point()
            );
        }
        let mut points = deal.points().to_vec();
        points[2] = CommitmentPoint::from_point(points[2].point() + off_subgroup_point()).unwrap();
        let tainted = DealCommitments::new(points).unwrap();
        assert!(!tainted.is_in_subgroup());
        assert_eq!(tainted.to_public_key_set(), Err(DecodeError::InvalidPoint));
        assert_eq!(
            DealCommitments::new(Vec::new()),
            Err(DecodeError::CommitmentCount)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever 48 bytes the decoder accepts are the point's one
        /// canonical encoding, and the point is on the curve.
        #[test]
        fn accepted_bytes_are_canonical(
            tail in proptest::collection::vec(any::<u8>(), G1_BYTES - 1),
            flags in 0u8..8,
            top in 0u8..32,
        ) {
            let mut bytes = [0u8; G1_BYTES];
            bytes[0] = (flags << 5) | top;
            bytes[1..].copy_from_slice(&tail);
            let raw: Option<G1Affine> = G1Affine::from_compressed_unchecked(&bytes).into();
            if let Some(raw) = raw {
                prop_assert!(bool::from(raw.is_on_curve()));
                prop_assert_eq!(raw.to_compressed(), bytes);
            }
            if let Ok(point) = CommitmentPoint::from_bytes(&bytes) {
                prop_assert_eq!(point.to_bytes(), bytes);
                prop_assert!(bool::from(point.affine().is_on_curve()));
            }
        }

        /// Points of G1 and points off it both round-trip.
        #[test]
        fn points_round_trip(seed in 1u64.., torsion in any::<bool>()) {
            let mut p = G1Projective::generator() * Scalar::from(seed);
            if torsion {
                p += off_subgroup_point();
            }
            let point = CommitmentPoint::from_point(p).unwrap();
            prop_assert_eq!(point.is_in_subgroup(), !torsion);
            prop_assert_eq!(CommitmentPoint::from_bytes(&point.to_bytes()), Ok(point));
            prop_assert_eq!(
                CommitmentPoint::from_uncompressed(&point.to_uncompressed()),
                Ok(point)
            );
        }

        /// Whatever 96 bytes the uncompressed decoder accepts are the
        /// point's one canonical encoding, on the curve; and a point the
        /// decoder accepts decodes the same from its compressed form.
        #[test]
        fn accepted_uncompressed_bytes_are_canonical(
            seed in 1u64..,
            flip_byte in 0usize..G1_UNCOMPRESSED_BYTES,
            flip in any::<u8>(),
        ) {
            let point = CommitmentPoint::from_point(G1Projective::generator() * Scalar::from(seed)).unwrap();
            let mut bytes = point.to_uncompressed();
            bytes[flip_byte] ^= flip;
            if let Ok(decoded) = CommitmentPoint::from_uncompressed(&bytes) {
                prop_assert_eq!(decoded.to_uncompressed(), bytes);
                prop_assert!(bool::from(decoded.affine().is_on_curve()));
                prop_assert_eq!(CommitmentPoint::from_bytes(&decoded.to_bytes()), Ok(decoded));
            }
            prop_assert_eq!(CommitmentPoint::from_uncompressed(&bytes).is_ok(), flip == 0);
        }
    }
}
