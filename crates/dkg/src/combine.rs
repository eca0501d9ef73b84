//! Combining signature shares by Lagrange interpolation at zero.

use blstrs::{G2Projective, Scalar};
use ff::Field;

use crate::error::CombineError;
use crate::keys::{Signature, SignatureShare};

/// Lagrange coefficients at `x = 0` for the given distinct, non-zero
/// indices: `lambda_i = prod_{j != i} x_j / (x_j - x_i)`.
///
/// Uses one field inversion for the whole set (Montgomery's trick), so
/// the cost is dominated by the `O(k^2)` multiplications, about 0.1 ms for
/// `k = 67`. Callers guarantee distinctness; a repeated index would make a
/// denominator zero, and then every coefficient comes back zero.
pub fn lagrange_coefficients_at_zero(indices: &[u32]) -> Vec<Scalar> {
    let xs: Vec<Scalar> = indices
        .iter()
        .map(|&i| Scalar::from(u64::from(i)))
        .collect();
    let numerator_all = xs.iter().fold(Scalar::ONE, |acc, x| acc * x);
    // denominators_i = x_i * prod_{j != i} (x_j - x_i), so that
    // lambda_i = numerator_all / denominators_i.
    let denominators: Vec<Scalar> = xs
        .iter()
        .enumerate()
        .map(|(i, xi)| {
            xs.iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .fold(*xi, |acc, (_, xj)| acc * (xj - xi))
        })
        .collect();
    let inverses = batch_invert(&denominators);
    inverses
        .into_iter()
        .map(|inv| numerator_all * inv)
        .collect()
}

/// Inverts every element with one field inversion; zero elements (and, if
/// any element is zero, all of them) come back as zero.
fn batch_invert(values: &[Scalar]) -> Vec<Scalar> {
    let mut prefix = Vec::with_capacity(values.len());
    let mut acc = Scalar::ONE;
    for v in values {
        prefix.push(acc);
        acc *= v;
    }
    let mut inv_acc: Scalar = Option::from(acc.invert()).unwrap_or(Scalar::ZERO);
    let mut out = vec![Scalar::ZERO; values.len()];
    for (i, v) in values.iter().enumerate().rev() {
        out[i] = inv_acc * prefix[i];
        inv_acc *= v;
    }
    out
}

/// Combines signature shares into the quorum's signature.
///
/// Takes the `threshold` shares with the lowest indices (so the result is
/// deterministic whatever order shares arrived in) and interpolates them
/// at zero with one G2 multi-exponentiation. Refuses an index of 0 or above
/// `n`, a repeated index, and fewer than `threshold` shares. It does not
/// verify the shares: check them first (e.g. with [`crate::batch_verify`]),
/// or verify the combined signature under the quorum key after.
pub fn combine_signatures(
    threshold: u32,
    n: u32,
    shares: &[SignatureShare],
) -> Result<Signature, CombineError> {
    let mut sorted: Vec<&SignatureShare> = shares.iter().collect();
    sorted.sort_by_key(|s| s.index);
    for pair in sorted.windows(2) {
        if pair[0].index == pair[1].index {
            return Err(CombineError::DuplicateIndex(pair[0].index));
        }
    }
    if let Some(bad) = sorted.iter().find(|s| s.index == 0 || s.index > n) {
        return Err(CombineError::IndexOutOfRange(bad.index));
    }
    let threshold_len = threshold as usize;
    if threshold == 0 || sorted.len() < threshold_len {
        return Err(CombineError::TooFewShares {
            threshold: threshold_len,
            got: sorted.len(),
        });
    }
    sorted.truncate(threshold_len);
    let indices: Vec<u32> = sorted.iter().map(|s| s.index).collect();
    let coefficients = lagrange_coefficients_at_zero(&indices);
    let points: Vec<G2Projective> = sorted.iter().map(|s| s.signature.point()).collect();
    let combined = G2Projective::multi_exp(&points, &coefficients);
    // The identity can only come from shares that were never valid; report
    // it as too few (valid) shares rather than returning an unusable value.
    Signature::from_point(combined).map_err(|_| CombineError::TooFewShares {
        threshold: threshold_len,
        got: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKeyShare;
    use crate::poly::Polynomial;
    use group::Group;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn shares_for(poly: &Polynomial, n: u32, message: &[u8]) -> Vec<SignatureShare> {
        (1..=n)
            .map(|i| {
                SecretKeyShare::new(i, poly.evaluate(i))
                    .unwrap()
                    .sign(message)
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        /// Any `threshold` of `n` shares combine to the signature of the
        /// secret itself, which verifies under the quorum key; `threshold - 1`
        /// shares interpolate to something that does not; a tampered share
        /// fails its own verification.
        #[test]
        fn any_threshold_subset_combines(
            n in 1u32..=16,
            threshold_seed in any::<u32>(),
            subset_seed in any::<u64>(),
            seed in any::<u64>(),
        ) {
            let threshold = 1 + threshold_seed % n;
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let poly = Polynomial::random(threshold, &mut rng);
            let set = poly.commitments().unwrap();
            let message = b"rdht combine test";
            let all = shares_for(&poly, n, message);
            for share in &all {
                prop_assert!(set.verify_share(message, share));
            }

            // A pseudo-random subset of exactly `threshold` shares.
            let mut pool = all.clone();
            let mut picked = Vec::new();
            let mut s = subset_seed;
            while picked.len() < threshold as usize {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let at = (s >> 33) as usize % pool.len();
                picked.push(pool.swap_remove(at));
            }
            let combined = combine_signatures(threshold, n, &picked).unwrap();
            let direct = SecretKeyShare::new(1, poly.secret()).unwrap().sign(message).signature;
            prop_assert_eq!(combined, direct);
            prop_assert!(set.quorum_key().verify(message, &combined));

            if threshold > 1 {
                let too_few = &picked[..threshold as usize - 1];
                prop_assert_eq!(
                    combine_signatures(threshold, n, too_few),
                    Err(CombineError::TooFewShares { threshold: threshold as usize, got: threshold as usize - 1 })
                );
                // Interpolating the short set as if it were enough gives a
                // signature the quorum key rejects.
                let wrong = combine_signatures(threshold - 1, n, too_few).unwrap();
                prop_assert!(!set.quorum_key().verify(message, &wrong));
            }

            let mut tampered = picked[0];
            tampered.signature = Signature::from_point(tampered.signature.point().double()).unwrap();
            prop_assert!(!set.verify_share(message, &tampered));
        }
    }

    #[test]
    fn combine_refuses_bad_share_sets() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let poly = Polynomial::random(3, &mut rng);
        let shares = shares_for(&poly, 5, b"m");
        let dup = vec![shares[0], shares[1], shares[1]];
        assert_eq!(
            combine_signatures(3, 5, &dup),
            Err(CombineError::DuplicateIndex(2))
        );
        let mut out_of_range = shares[..3].to_vec();
        out_of_range[2].index = 6;
        assert_eq!(
            combine_signatures(3, 5, &out_of_range),
            Err(CombineError::IndexOutOfRange(6))
        );
        out_of_range[2].index = 0;
        assert_eq!(
            combine_signatures(3, 5, &out_of_range),
            Err(CombineError::IndexOutOfRange(0))
        );
        assert_eq!(
            combine_signatures(3, 5, &shares[..2]),
            Err(CombineError::TooFewShares {
                threshold: 3,
                got: 2
            })
        );
        // More than threshold is fine, and the lowest indices are used.
        let from_five = combine_signatures(3, 5, &shares).unwrap();
        let from_three = combine_signatures(3, 5, &shares[..3]).unwrap();
        assert_eq!(from_five, from_three);
    }
}
