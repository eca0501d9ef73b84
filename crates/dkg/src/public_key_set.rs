//! The quorum's public key set: Feldman commitments and `PK_i` derivation.

use blstrs::{G1Affine, G1Projective};
use group::{Curve, Group};

use crate::curve::to_affine_all;
use crate::error::DecodeError;
use crate::keys::{PublicKey, SignatureShare};

/// Feldman commitments `C_0..C_{k-1}` to the quorum's secret polynomial.
///
/// `C_0` is the quorum key; `k` (the number of commitments) is the
/// threshold; member `i`'s public key share is `PK_i = sum_j C_j * i^j`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "Vec<PublicKey>", into = "Vec<PublicKey>")]
pub struct PublicKeySet {
    commitments: Vec<PublicKey>,
}

impl PublicKeySet {
    /// Wraps commitments, lowest degree first. Fails on an empty list or
    /// more than [`crate::MAX_MEMBERS`] commitments.
    pub fn new(commitments: Vec<PublicKey>) -> Result<Self, DecodeError> {
        if commitments.is_empty() || commitments.len() > crate::MAX_MEMBERS as usize {
            return Err(DecodeError::CommitmentCount);
        }
        Ok(Self { commitments })
    }

    /// Shares needed to sign (the number of commitments).
    pub fn threshold(&self) -> u32 {
        self.commitments.len() as u32
    }

    /// The quorum key `C_0`.
    pub fn quorum_key(&self) -> PublicKey {
        // `new` refuses an empty list, so index 0 always exists.
        self.commitments[0]
    }

    /// The commitments, lowest degree first.
    pub fn commitments(&self) -> &[PublicKey] {
        &self.commitments
    }

    /// Member `index`'s public key share `PK_i = sum_j C_j * i^j`.
    ///
    /// Evaluated by Horner's rule with multiplications by the small integer
    /// `i` done as double-and-add over its few bits, instead of 255-bit
    /// scalar multiplications: about 15 group operations per commitment
    /// for `i <= 1024`. `index` 0 gives the quorum key.
    pub fn public_key_share(&self, index: u32) -> PublicKey {
        let point = self.public_key_share_point(index);
        // A share key is the identity only with negligible probability (it
        // would reveal f(i) = 0); map it to the quorum key's affine form
        // anyway instead of panicking, and verification will fail.
        PublicKey(point.to_affine())
    }

    pub(crate) fn public_key_share_point(&self, index: u32) -> G1Projective {
        evaluate_at(self.commitments.iter().map(PublicKey::affine), index)
    }

    /// Public key shares of members `1..=n`, in index order (entry `i - 1`
    /// is `PK_i`). For caching: a rendezvous derives these once per
    /// namespace rather than once per registration.
    pub fn public_key_shares(&self, n: u32) -> Vec<PublicKey> {
        let points: Vec<G1Projective> = (1..=n).map(|i| self.public_key_share_point(i)).collect();
        to_affine_all(&points).into_iter().map(PublicKey).collect()
    }

    /// Verifies one signature share against `PK_index`.
    pub fn verify_share(&self, message: &[u8], share: &SignatureShare) -> bool {
        share.index != 0
            && self
                .public_key_share(share.index)
                .verify(message, &share.signature)
    }

    /// Adds two key sets coefficient-wise (the DKG's group key is the sum of
    /// the qualified dealers' commitments). Sets of different thresholds
    /// cannot be added.
    pub fn checked_add(&self, other: &PublicKeySet) -> Option<PublicKeySet> {
        if self.commitments.len() != other.commitments.len() {
            return None;
        }
        let points = self
            .commitments
            .iter()
            .zip(&other.commitments)
            .map(|(a, b)| PublicKey::from_point(a.point() + b.point()).ok())
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            commitments: points,
        })
    }
}

/// `sum_j points[j] * index^j` (lowest degree first) by Horner's rule, each
/// step a multiplication by the small integer `index` (see [`mul_naf`],
/// its digits computed once) and a mixed addition. Only the group law, so
/// exact for points outside G1 too; no points give the identity.
pub(crate) fn evaluate_at<'a>(
    points: impl DoubleEndedIterator<Item = &'a G1Affine>,
    index: u32,
) -> G1Projective {
    let digits = non_adjacent_form(index);
    let mut points = points.rev();
    let Some(highest) = points.next() else {
        return G1Projective::identity();
    };
    let mut acc = G1Projective::from(*highest);
    for c in points {
        acc = mul_naf(&acc, &digits);
        acc += c;
    }
    acc
}

/// `point * k` for a small non-negative `k` given by its non-adjacent form
/// ([`non_adjacent_form`]), by double-and-add (MSB first): digits in
/// {-1, 0, 1} with no two adjacent non-zero, so about `bits / 3` additions
/// instead of `bits / 2` (for `k = 1000`: 2 instead of 5, next to 10
/// doublings).
fn mul_naf(point: &G1Projective, digits: &[i8]) -> G1Projective {
    let mut acc = G1Projective::identity();
    let mut started = false;
    for &d in digits.iter().rev() {
        if started {
            acc = acc.double();
        }
        match d {
            1 => {
                acc = if started { acc + point } else { *point };
                started = true;
            }
            -1 => acc -= point,
            _ => {}
        }
    }
    acc
}

/// The NAF digits of `k`, least significant first (at most 33 of them).
fn non_adjacent_form(k: u32) -> Vec<i8> {
    let mut digits = Vec::with_capacity(34);
    let mut k = u64::from(k);
    while k > 0 {
        if k & 1 == 1 {
            // 2 - (k mod 4): +1 when k = 1 (mod 4), -1 when k = 3 (mod 4).
            let d: i8 = if k & 3 == 1 { 1 } else { -1 };
            digits.push(d);
            k = if d == 1 { k - 1 } else { k + 1 };
        } else {
            digits.push(0);
        }
        k >>= 1;
    }
    digits
}

impl TryFrom<Vec<PublicKey>> for PublicKeySet {
    type Error = DecodeError;
    fn try_from(v: Vec<PublicKey>) -> Result<Self, Self::Error> {
        Self::new(v)
    }
}

impl From<PublicKeySet> for Vec<PublicKey> {
    fn from(set: PublicKeySet) -> Self {
        set.commitments
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poly::Polynomial;
    use blstrs::Scalar;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// The short-scalar double-and-add agrees with the library's
        /// full scalar multiplication.
        #[test]
        fn mul_naf_matches_library(k in prop_oneof![0u32..100_000, any::<u32>()], seed in any::<u64>()) {
            let p = G1Projective::generator() * Scalar::from(seed | 1);
            prop_assert_eq!(mul_naf(&p, &non_adjacent_form(k)), p * Scalar::from(u64::from(k)));
        }

        /// Horner over the commitments gives `f(i) * G1`.
        #[test]
        fn share_key_is_commitment_of_share(threshold in 1u32..12, index in 1u32..2000, seed in any::<u64>()) {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let poly = Polynomial::random(threshold, &mut rng);
            let set = poly.commitments().unwrap();
            let expected = G1Projective::generator() * poly.evaluate(index);
            prop_assert_eq!(set.public_key_share(index).point(), expected);
            prop_assert_eq!(set.public_key_share(0), set.quorum_key());
        }
    }

    #[test]
    fn cached_shares_match_single_derivation() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let set = Polynomial::random(5, &mut rng).commitments().unwrap();
        let all = set.public_key_shares(9);
        assert_eq!(all.len(), 9);
        for (i, pk) in all.iter().enumerate() {
            assert_eq!(*pk, set.public_key_share(i as u32 + 1));
        }
    }
}
