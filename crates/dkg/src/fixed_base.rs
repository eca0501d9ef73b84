//! Multiplication of the G1 generator by a secret scalar, with a
//! precomputed table.
//!
//! Every dealer computes `threshold` commitments `a_k * G` per DKG, plus
//! its proof nonce: for a 16-member quorum of threshold 11 that is 12
//! generic scalar multiplications per member, the largest single cost of
//! dealing. The base never changes, so a table of `d * 16^j * G` (64
//! windows of 4 bits, 15 non-trivial multiples each, 92 KiB, built once
//! per process) turns each multiplication into 64 mixed additions with no
//! doublings: `k * G = sum_j T[j][k_j]` over the base-16 digits `k_j` of
//! `k`.
//!
//! The scalars are secret (polynomial coefficients, nonces), so the table
//! entry is chosen in constant time: every one of the 16 entries of a
//! window is read and conditionally selected, never indexed by the digit.
//! Property-tested against the library's own multiplication.

use std::sync::OnceLock;

use blstrs::{G1Affine, G1Projective, Scalar};
use group::{prime::PrimeCurveAffine, Curve, Group};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::curve::to_affine_all;

/// Bits per window.
const WINDOW_BITS: usize = 4;
/// Entries per window, including the identity for digit 0.
const ENTRIES: usize = 1 << WINDOW_BITS;
/// Windows covering a 256-bit little-endian scalar.
const WINDOWS: usize = 256 / WINDOW_BITS;

/// `table[j][d] = d * 16^j * G`, affine (`table[j][0]` is the identity).
fn table() -> &'static [[G1Affine; ENTRIES]] {
    static TABLE: OnceLock<Vec<[G1Affine; ENTRIES]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut projective = Vec::with_capacity(WINDOWS * ENTRIES);
        let mut base = G1Projective::generator();
        for _ in 0..WINDOWS {
            let mut multiple = G1Projective::identity();
            for _ in 0..ENTRIES {
                projective.push(multiple);
                multiple += base;
            }
            // 16^(j+1) * G = (16 * 16^j) * G: four doublings.
            for _ in 0..WINDOW_BITS {
                base = base.double();
            }
        }
        to_affine_all(&projective)
            .chunks_exact(ENTRIES)
            .map(|w| {
                let mut row = [G1Affine::identity(); ENTRIES];
                row.copy_from_slice(w);
                row
            })
            .collect()
    })
}

/// `scalar * G1` for the standard generator, in constant time with respect
/// to `scalar`.
pub(crate) fn generator_mul(scalar: &Scalar) -> G1Projective {
    let bytes = scalar.to_bytes_le();
    let mut acc = G1Projective::identity();
    for (j, row) in table().iter().enumerate() {
        let byte = bytes.get(j / 2).copied().unwrap_or(0);
        let digit = if j % 2 == 0 { byte & 0x0f } else { byte >> 4 };
        let mut entry = G1Affine::identity();
        for (d, candidate) in row.iter().enumerate() {
            entry.conditional_assign(candidate, (d as u8).ct_eq(&digit));
        }
        // blst's mixed addition handles the identity (digit 0) and the
        // doubling case without a branch on secret data.
        acc += &entry;
    }
    acc
}

/// `scalar * G1` as an affine point.
pub(crate) fn generator_mul_affine(scalar: &Scalar) -> G1Affine {
    generator_mul(scalar).to_affine()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ff::Field;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn matches_the_library(seed in any::<[u8; 32]>()) {
            let mut bytes = seed;
            bytes[31] &= 0x3f;
            let scalar = Option::<Scalar>::from(Scalar::from_bytes_le(&bytes)).unwrap();
            prop_assert_eq!(generator_mul(&scalar), G1Projective::generator() * scalar);
        }
    }

    #[test]
    fn edge_scalars() {
        for scalar in [
            Scalar::ZERO,
            Scalar::ONE,
            -Scalar::ONE,
            Scalar::from(16u64),
            -Scalar::from(2u64),
        ] {
            assert_eq!(generator_mul(&scalar), G1Projective::generator() * scalar);
        }
    }
}
