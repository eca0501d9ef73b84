//! Safe batch verification of many BLS signatures, with bisection to name
//! the bad ones.
//!
//! A batch checks `e(g1, sum r_i s_i) == prod e(r_i PK_i, H(m_i))` with
//! random 64-bit `r_i` (blst's `verify_multiple_aggregate_signatures`,
//! multithreaded over blst's pool). The random coefficients are what make
//! it safe: without them two invalid signatures can cancel out. Messages
//! need not be distinct, so it also checks many shares over one message.

use rand_core::RngCore;

use crate::keys::{PublicKey, Signature};

/// One (public key, message, signature) triple to verify.
#[derive(Clone, Copy, Debug)]
pub struct BatchItem<'a> {
    /// The key the signature must verify under.
    pub public_key: &'a PublicKey,
    /// The signed message (hashed to G2 with the crate's ciphersuite).
    pub message: &'a [u8],
    /// The signature.
    pub signature: &'a Signature,
}

/// Whether every item verifies. An empty batch is valid.
///
/// Keys and signatures were subgroup-checked when decoded, so blst is told
/// to skip those checks here.
pub fn batch_verify<R: RngCore>(items: &[BatchItem<'_>], rng: &mut R) -> bool {
    if items.is_empty() {
        return true;
    }
    let pks: Vec<blst::min_pk::PublicKey> = items
        .iter()
        .map(|i| blst::min_pk::PublicKey::from(*i.public_key.affine().as_ref()))
        .collect();
    let sigs: Vec<blst::min_pk::Signature> = items
        .iter()
        .map(|i| blst::min_pk::Signature::from(*i.signature.affine().as_ref()))
        .collect();
    let pk_refs: Vec<&blst::min_pk::PublicKey> = pks.iter().collect();
    let sig_refs: Vec<&blst::min_pk::Signature> = sigs.iter().collect();
    let messages: Vec<&[u8]> = items.iter().map(|i| i.message).collect();
    let rands: Vec<blst::blst_scalar> = items
        .iter()
        .map(|_| {
            // A non-zero 64-bit coefficient, little-endian in the low bytes.
            let r = rng.next_u64() | 1;
            let mut b = [0u8; 32];
            b[..8].copy_from_slice(&r.to_le_bytes());
            blst::blst_scalar { b }
        })
        .collect();
    let result = blst::min_pk::Signature::verify_multiple_aggregate_signatures(
        &messages,
        crate::CIPHERSUITE,
        &pk_refs,
        false,
        &sig_refs,
        false,
        &rands,
        64,
    );
    result == blst::BLST_ERROR::BLST_SUCCESS
}

/// The positions of the items that do not verify, in ascending order
/// (empty when the whole batch is valid).
///
/// Checks the whole batch first, then bisects the failing halves, so one
/// bad signature among `n` costs about `2 log2 n` extra batch checks and
/// never makes the good ones fail.
pub fn find_invalid<R: RngCore>(items: &[BatchItem<'_>], rng: &mut R) -> Vec<usize> {
    let mut bad = Vec::new();
    bisect(items, 0, rng, &mut bad);
    bad
}

fn bisect<R: RngCore>(items: &[BatchItem<'_>], offset: usize, rng: &mut R, bad: &mut Vec<usize>) {
    if items.is_empty() || batch_verify(items, rng) {
        return;
    }
    if items.len() == 1 {
        bad.push(offset);
        return;
    }
    let mid = items.len() / 2;
    let (left, right) = items.split_at(mid);
    bisect(left, offset, rng, bad);
    bisect(right, offset + mid, rng, bad);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKeyShare;
    use blstrs::Scalar;
    use group::Group;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn signed(count: usize, same_message: bool) -> Vec<(PublicKey, Vec<u8>, Signature)> {
        (0..count)
            .map(|i| {
                let sk = SecretKeyShare::new(1, Scalar::from(1000 + i as u64)).unwrap();
                let msg = if same_message {
                    b"one message".to_vec()
                } else {
                    format!("message {i}").into_bytes()
                };
                let sig = sk.sign(&msg).signature;
                (sk.public_key_share(), msg, sig)
            })
            .collect()
    }

    fn items(v: &[(PublicKey, Vec<u8>, Signature)]) -> Vec<BatchItem<'_>> {
        v.iter()
            .map(|(pk, m, s)| BatchItem {
                public_key: pk,
                message: m,
                signature: s,
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(8))]

        /// Bisection names exactly the tampered positions, with distinct or
        /// identical messages.
        #[test]
        fn bisection_names_exactly_the_bad_items(
            count in 1usize..24,
            bad_mask in any::<u32>(),
            same_message in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let mut triples = signed(count, same_message);
            let mut expected = Vec::new();
            for (i, t) in triples.iter_mut().enumerate() {
                if bad_mask >> (i % 32) & 1 == 1 && i % 3 == 0 {
                    t.2 = Signature::from_point(t.2.point().double()).unwrap();
                    expected.push(i);
                }
            }
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let its = items(&triples);
            prop_assert_eq!(batch_verify(&its, &mut rng), expected.is_empty());
            prop_assert_eq!(find_invalid(&its, &mut rng), expected);
        }
    }

    /// Two invalid signatures whose errors cancel in an unweighted sum are
    /// still caught: this is what the random coefficients are for.
    #[test]
    fn cancelling_errors_are_caught() {
        let mut triples = signed(4, false);
        let delta = blstrs::G2Projective::generator();
        triples[0].2 = Signature::from_point(triples[0].2.point() + delta).unwrap();
        triples[1].2 = Signature::from_point(triples[1].2.point() - delta).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let its = items(&triples);
        assert!(!batch_verify(&its, &mut rng));
        assert_eq!(find_invalid(&its, &mut rng), vec![0, 1]);
    }
}
