//! The few blst calls that `blstrs` and blst's safe Rust API do not expose
//! in the form the hot paths need, behind safe functions.
//!
//! Why this module exists (the crate's `unsafe`, with `wipe`'s one
//! volatile write):
//! - scalar multiplication limited to a short bit length: `blstrs` always
//!   multiplies by 255 bits, four times the work for a 64-bit batch
//!   coefficient;
//! - a multi-scalar multiplication and a pairing product on the *calling*
//!   thread: blst's safe `mult` and `verify_multiple_aggregate_signatures`
//!   always fan out over blst's process-wide thread pool, which
//!   oversubscribes the cores when the caller is itself one of several
//!   verification threads (the node) or a rayon task (the simulator).
//!
//! Every function here is property-tested against the library's own
//! arithmetic (see the tests below and `batch.rs`). Each `unsafe` block
//! only passes pointers to live, correctly sized Rust values.

#![allow(unsafe_code)]

use blst::{
    blst_final_exp, blst_fp12, blst_fp12_is_one, blst_fp12_mul, blst_miller_loop_n, blst_p1,
    blst_p1_affine, blst_p1_mult, blst_p1s_mult_pippenger, blst_p1s_mult_pippenger_scratch_sizeof,
    blst_p2, blst_p2_affine, blst_p2s_mult_pippenger, blst_p2s_mult_pippenger_scratch_sizeof,
    limb_t,
};
use blstrs::{G1Affine, G1Projective, G2Affine, G2Projective};
use group::{prime::PrimeCurveAffine, Group};

/// `point * scalar`, where `scalar` is little-endian and only its low
/// `nbits` bits are used (`1..=64`). Cost grows with `nbits`, not 255.
pub(crate) fn g1_mul_short(point: &G1Projective, scalar: u64, nbits: usize) -> G1Projective {
    let nbits = nbits.clamp(1, 64);
    let bytes = scalar.to_le_bytes();
    let mut out = G1Projective::identity();
    let out_raw: &mut blst_p1 = out.as_mut();
    // SAFETY: `out_raw` and the input point are valid `blst_p1`s; blst reads
    // `ceil(nbits / 8) <= 8` bytes from `bytes`, which has 8.
    unsafe { blst_p1_mult(out_raw, point.as_ref(), bytes.as_ptr(), nbits) };
    out
}

/// `sum scalars[i] * points[i]` in G2 with 64-bit scalars, on this thread
/// (Pippenger's bucket method; blst itself switches to a windowed method
/// for one point or a few). Extra points or scalars beyond the shorter
/// slice are ignored; an empty input gives the identity.
pub(crate) fn g2_msm_u64(points: &[G2Affine], scalars: &[u64]) -> G2Projective {
    let n = points.len().min(scalars.len());
    let bytes: Vec<[u8; 8]> = scalars[..n].iter().map(|s| s.to_le_bytes()).collect();
    let mut out = G2Projective::identity();
    if n == 0 {
        return out;
    }
    let point_ptrs: Vec<*const blst_p2_affine> = points[..n]
        .iter()
        .map(|p| p.as_ref() as *const blst_p2_affine)
        .collect();
    let scalar_ptrs: Vec<*const u8> = bytes.iter().map(|b| b.as_ptr()).collect();
    // SAFETY: a pure size query.
    let mut scratch = scratch_for(unsafe { blst_p2s_mult_pippenger_scratch_sizeof(n) });
    let out_raw: &mut blst_p2 = out.as_mut();
    // SAFETY: `n` point pointers and `n` scalar pointers (8 bytes each, 64
    // bits read), all alive for the call; scratch is at least the size blst
    // asked for.
    unsafe {
        blst_p2s_mult_pippenger(
            out_raw,
            point_ptrs.as_ptr(),
            n,
            scalar_ptrs.as_ptr(),
            64,
            scratch.as_mut_ptr(),
        )
    };
    out
}

/// `sum scalars[i] * points[i]` in G1, on this thread, with each scalar
/// given as `N` little-endian bytes of which the low `nbits` are used
/// (`nbits <= 8 * N`; 64-bit coefficients cost a quarter of 255-bit ones).
/// Extra points or scalars beyond the shorter slice are ignored; an empty
/// input gives the identity.
///
/// The bucket method uses only the group law (additions, doublings and
/// negations), so it is exact for any point on the curve, also outside G1.
pub(crate) fn g1_msm<const N: usize>(
    points: &[G1Affine],
    scalars: &[[u8; N]],
    nbits: usize,
) -> G1Projective {
    let n = points.len().min(scalars.len());
    let nbits = nbits.clamp(1, 8 * N);
    let mut out = G1Projective::identity();
    if n == 0 {
        return out;
    }
    let point_ptrs: Vec<*const blst_p1_affine> = points[..n]
        .iter()
        .map(|p| p.as_ref() as *const blst_p1_affine)
        .collect();
    let scalar_ptrs: Vec<*const u8> = scalars[..n].iter().map(|b| b.as_ptr()).collect();
    // SAFETY: a pure size query.
    let mut scratch = scratch_for(unsafe { blst_p1s_mult_pippenger_scratch_sizeof(n) });
    let out_raw: &mut blst_p1 = out.as_mut();
    // SAFETY: `n` point pointers and `n` scalar pointers, each scalar `N`
    // bytes with `ceil(nbits / 8) <= N` read, all alive for the call;
    // scratch is at least the size blst asked for.
    unsafe {
        blst_p1s_mult_pippenger(
            out_raw,
            point_ptrs.as_ptr(),
            n,
            scalar_ptrs.as_ptr(),
            nbits,
            scratch.as_mut_ptr(),
        )
    };
    out
}

/// A zeroed scratch buffer of at least `bytes` bytes for blst's Pippenger.
fn scratch_for(bytes: usize) -> Vec<limb_t> {
    vec![0; bytes.div_ceil(std::mem::size_of::<limb_t>()).max(1)]
}

/// Whether `prod e(p_i, q_i) == 1` (shared Miller loops and one final
/// exponentiation, on this thread). Pairs with a point at infinity
/// contribute 1 and are skipped; an empty product is 1.
///
/// The Miller loop runs over `chunk` pairs at a time (`0`: all at once),
/// calling `checkpoint` after each chunk. A chunk's loop is one blst call
/// that cannot be interrupted, so this bounds how long the thread goes
/// without a checkpoint; each extra chunk costs one more chain of `Fp12`
/// squarings (about a third of one pair's Miller loop).
pub(crate) fn pairing_product_is_one(
    pairs: &[(G1Affine, G2Affine)],
    chunk: usize,
    checkpoint: &mut dyn FnMut(),
) -> bool {
    let live: Vec<&(G1Affine, G2Affine)> = pairs
        .iter()
        .filter(|(p, q)| !bool::from(p.is_identity()) && !bool::from(q.is_identity()))
        .collect();
    if live.is_empty() {
        return true;
    }
    let chunk = if chunk == 0 { live.len() } else { chunk };
    let mut product: Option<blst_fp12> = None;
    for part in live.chunks(chunk) {
        let ps: Vec<*const blst_p1_affine> = part
            .iter()
            .map(|(p, _)| p.as_ref() as *const blst_p1_affine)
            .collect();
        let qs: Vec<*const blst_p2_affine> = part
            .iter()
            .map(|(_, q)| q.as_ref() as *const blst_p2_affine)
            .collect();
        let mut miller = blst_fp12::default();
        // SAFETY: `part.len()` valid, finite affine points on each side,
        // alive for the call; the output is a valid `blst_fp12`.
        unsafe { blst_miller_loop_n(&mut miller, qs.as_ptr(), ps.as_ptr(), part.len()) };
        product = Some(match product {
            None => miller,
            Some(acc) => {
                let mut out = blst_fp12::default();
                // SAFETY: three valid `blst_fp12`s.
                unsafe { blst_fp12_mul(&mut out, &acc, &miller) };
                out
            }
        });
        checkpoint();
    }
    let Some(miller) = product else {
        return true;
    };
    let mut result = blst_fp12::default();
    // SAFETY: valid `blst_fp12`s in and out.
    unsafe {
        blst_final_exp(&mut result, &miller);
        blst_fp12_is_one(&result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blstrs::{Gt, Scalar};
    use group::{Curve, Group};
    use proptest::prelude::*;

    fn g1(seed: u64) -> G1Projective {
        G1Projective::generator() * Scalar::from(seed.wrapping_mul(0x9e37_79b9) | 1)
    }
    fn g2(seed: u64) -> G2Projective {
        G2Projective::generator() * Scalar::from(seed.wrapping_mul(0x85eb_ca6b) | 1)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        #[test]
        fn short_multiplication_matches_the_library(seed in any::<u64>(), k in any::<u64>(), nbits in 1usize..=64) {
            let p = g1(seed);
            let masked = if nbits == 64 { k } else { k & ((1u64 << nbits) - 1) };
            prop_assert_eq!(g1_mul_short(&p, masked, nbits), p * Scalar::from(masked));
        }

        #[test]
        fn msm_matches_the_library(seed in any::<u64>(), scalars in proptest::collection::vec(any::<u64>(), 0..40)) {
            let points: Vec<G2Projective> = (0..scalars.len() as u64).map(|i| g2(seed ^ i)).collect();
            let affine: Vec<G2Affine> = points.iter().map(|p| p.to_affine()).collect();
            let expected = points
                .iter()
                .zip(&scalars)
                .fold(G2Projective::identity(), |acc, (p, s)| acc + p * Scalar::from(*s));
            prop_assert_eq!(g2_msm_u64(&affine, &scalars), expected);
        }

        #[test]
        fn g1_msm_matches_the_library(
            seed in any::<u64>(),
            scalars in proptest::collection::vec(any::<[u8; 32]>(), 0..40),
            short in any::<bool>(),
        ) {
            let points: Vec<G1Projective> = (0..scalars.len() as u64).map(|i| g1(seed ^ i)).collect();
            let affine: Vec<G1Affine> = points.iter().map(|p| p.to_affine()).collect();
            // Full scalars below r (what blst expects), or 64-bit ones.
            let scalars: Vec<[u8; 32]> = scalars
                .iter()
                .map(|b| {
                    let mut s = *b;
                    s[31] &= 0x3f; // below 2^254 < r
                    if short {
                        s[8..].fill(0);
                    }
                    s
                })
                .collect();
            let expected = points.iter().zip(&scalars).fold(G1Projective::identity(), |acc, (p, s)| {
                acc + p * Option::<Scalar>::from(Scalar::from_bytes_le(s)).unwrap()
            });
            let nbits = if short { 64 } else { 255 };
            prop_assert_eq!(g1_msm(&affine, &scalars, nbits), expected);
        }

        #[test]
        fn pairing_product_matches_the_library(a in 1u64.., b in 1u64.., tamper in any::<bool>(), chunk in 0usize..4) {
            // e(aP, bQ) * e(-abP, Q) == 1, and not when tampered.
            let p = G1Projective::generator();
            let q = G2Projective::generator();
            let ab = Scalar::from(a) * Scalar::from(b) + if tamper { Scalar::from(1) } else { Scalar::from(0) };
            let pairs = [
                ((p * Scalar::from(a)).to_affine(), (q * Scalar::from(b)).to_affine()),
                ((-(p * ab)).to_affine(), q.to_affine()),
            ];
            let mut checkpoints = 0;
            prop_assert_eq!(pairing_product_is_one(&pairs, chunk, &mut || checkpoints += 1), !tamper);
            // One checkpoint per chunk of the two pairs.
            prop_assert_eq!(checkpoints, if chunk == 1 { 2 } else { 1 });
            let gt = blstrs::pairing(&pairs[0].0, &pairs[0].1) + blstrs::pairing(&pairs[1].0, &pairs[1].1);
            prop_assert_eq!(gt == Gt::identity(), !tamper);
        }
    }

    #[test]
    fn identities_are_skipped() {
        let one_chunk = &mut || {};
        assert!(pairing_product_is_one(&[], 0, one_chunk));
        assert!(pairing_product_is_one(
            &[(G1Affine::identity(), G2Affine::generator())],
            0,
            one_chunk
        ));
        assert!(!pairing_product_is_one(
            &[(G1Affine::generator(), G2Affine::generator())],
            0,
            one_chunk
        ));
    }
}
