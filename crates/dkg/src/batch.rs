//! Safe batch verification of many BLS signatures, with bisection to name
//! the bad ones.
//!
//! A batch checks `e(g1, sum r_i s_i) == prod e(r_i PK_i, H(m_i))` with
//! random 64-bit `r_i`. The random coefficients are what make it safe:
//! without them two invalid signatures can cancel out. Items that share a
//! message share its hash and its Miller loop (`prod_i e(r_i PK_i, H(m))
//! = e(sum_i r_i PK_i, H(m))`), so checking many shares over one message
//! costs one pairing, not one per share.
//!
//! The whole check runs on the calling thread, with no thread pool: the
//! callers that need both cores (the node's verification threads, the
//! simulator's rayon tasks) already run several batches at once, and a
//! nested pool only made them fight over the cores. Per signature it costs
//! one hash to G2, one 64-bit G1 multiplication, a share of a 64-bit G2
//! multi-scalar multiplication and one Miller loop; the final
//! exponentiation is paid once per batch.

use std::collections::HashMap;

use blstrs::{G1Affine, G1Projective, G2Affine, G2Projective};
use group::{prime::PrimeCurveAffine, Curve};
use rand_core::RngCore;

use crate::blst_raw::{g1_mul_short, g2_msm_u64, pairing_product_is_one};
use crate::curve::to_affine_all;
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

/// Pairs per Miller loop in the `_with` variants: a chunk takes about
/// 1.5 ms on the machine we measure on, and the chunks cost 0.6% more
/// than one loop over a batch of 64 (`batch_64_with_checkpoints` in the
/// threshold bench).
const MILLER_CHUNK_PAIRS: usize = 8;

/// Whether every item verifies. An empty batch is valid.
///
/// Keys and signatures were subgroup-checked when decoded (the types
/// guarantee it), so no check is repeated here.
pub fn batch_verify<R: RngCore>(items: &[BatchItem<'_>], rng: &mut R) -> bool {
    check(items, rng, 0, &mut || {})
}

/// [`batch_verify`], calling `checkpoint` between its steps: after each
/// key is weighted and each message hashed, after the multi-scalar
/// multiplication, and after each Miller loop over a few pairs; so the
/// thread never runs more than about 1.5 ms of curve arithmetic without
/// one.
///
/// This is how a driver keeps a long verification from holding a core it
/// shares with latency work: the node's verification threads give the
/// core up at each checkpoint (see `crates/node`), the core itself stays
/// free of any notion of threads or time.
pub fn batch_verify_with<R: RngCore>(
    items: &[BatchItem<'_>],
    rng: &mut R,
    checkpoint: &mut dyn FnMut(),
) -> bool {
    check(items, rng, MILLER_CHUNK_PAIRS, checkpoint)
}

fn check<R: RngCore>(
    items: &[BatchItem<'_>],
    rng: &mut R,
    miller_chunk: usize,
    checkpoint: &mut dyn FnMut(),
) -> bool {
    let hashes = hash_messages(items, checkpoint);
    check_hashed(items, &hashes, rng, miller_chunk, checkpoint)
}

/// `H(m)` of every item's message (`hashes[i]` is item `i`'s), each
/// distinct message hashed once. Hashing is about a third of a
/// verification: bisection reuses these at every level instead of
/// hashing again (#13 item 7).
fn hash_messages(items: &[BatchItem<'_>], checkpoint: &mut dyn FnMut()) -> Vec<G2Affine> {
    let mut hashed: HashMap<&[u8], G2Affine> = HashMap::with_capacity(items.len());
    items
        .iter()
        .map(|item| {
            *hashed.entry(item.message).or_insert_with(|| {
                #[cfg(test)]
                tests::HASHED.with(|n| n.set(n.get() + 1));
                let h = G2Projective::hash_to_curve(item.message, crate::CIPHERSUITE, &[]);
                checkpoint();
                h.to_affine()
            })
        })
        .collect()
}

/// The batch check of `items`, whose messages hash to `hashes` (one per
/// item, in order).
fn check_hashed<R: RngCore>(
    items: &[BatchItem<'_>],
    hashes: &[G2Affine],
    rng: &mut R,
    miller_chunk: usize,
    checkpoint: &mut dyn FnMut(),
) -> bool {
    if items.is_empty() {
        return true;
    }
    // Non-zero 64-bit coefficients.
    let coefficients: Vec<u64> = items.iter().map(|_| rng.next_u64() | 1).collect();

    // Left side: sum r_i s_i, one multi-scalar multiplication.
    let signatures: Vec<G2Affine> = items.iter().map(|i| *i.signature.affine()).collect();
    let weighted_signatures = g2_msm_u64(&signatures, &coefficients);
    checkpoint();

    // Right side: per distinct message m, sum of r_i PK_i over its items.
    let mut slot_of: HashMap<&[u8], usize> = HashMap::with_capacity(items.len());
    let mut message_hashes: Vec<G2Affine> = Vec::with_capacity(items.len());
    let mut weighted_keys: Vec<G1Projective> = Vec::with_capacity(items.len());
    for ((item, r), hash) in items.iter().zip(&coefficients).zip(hashes) {
        let term = g1_mul_short(&item.public_key.point(), *r, 64);
        checkpoint();
        match slot_of.get(item.message) {
            Some(&slot) => {
                if let Some(acc) = weighted_keys.get_mut(slot) {
                    *acc += term;
                }
            }
            None => {
                slot_of.insert(item.message, message_hashes.len());
                message_hashes.push(*hash);
                weighted_keys.push(term);
            }
        }
    }

    // prod e(sum r_i PK_i, H(m)) * e(-g1, sum r_i s_i) == 1.
    let mut pairs: Vec<(G1Affine, G2Affine)> = to_affine_all(&weighted_keys)
        .into_iter()
        .zip(message_hashes)
        .collect();
    pairs.push((-G1Affine::generator(), weighted_signatures.to_affine()));
    #[cfg(test)]
    tests::PAIRS.with(|n| n.set(n.get() + pairs.len()));
    pairing_product_is_one(&pairs, miller_chunk, checkpoint)
}

/// The positions of the items that do not verify, in ascending order
/// (empty when the whole batch is valid).
///
/// Checks the whole batch first, then bisects the failing halves, so one
/// bad signature among `n` costs about `2 log2 n` extra batch checks and
/// never makes the good ones fail.
pub fn find_invalid<R: RngCore>(items: &[BatchItem<'_>], rng: &mut R) -> Vec<usize> {
    find_invalid_chunked(items, rng, 0, &mut || {})
}

/// [`find_invalid`], calling `checkpoint` between steps as
/// [`batch_verify_with`] does.
pub fn find_invalid_with<R: RngCore>(
    items: &[BatchItem<'_>],
    rng: &mut R,
    checkpoint: &mut dyn FnMut(),
) -> Vec<usize> {
    find_invalid_chunked(items, rng, MILLER_CHUNK_PAIRS, checkpoint)
}

/// Hashes every message once, checks the whole batch, and searches a
/// failing one.
fn find_invalid_chunked<R: RngCore>(
    items: &[BatchItem<'_>],
    rng: &mut R,
    miller_chunk: usize,
    checkpoint: &mut dyn FnMut(),
) -> Vec<usize> {
    let hashes = hash_messages(items, checkpoint);
    let mut bad = Vec::new();
    let mut search = Search {
        hashes: &hashes,
        rng,
        miller_chunk,
        checkpoint,
        bad: &mut bad,
    };
    if !search.check(items, 0) {
        search.failed(items, 0);
    }
    bad
}

/// The state of one search for invalid items.
struct Search<'a, R> {
    /// `H(m)` of every item of the whole batch.
    hashes: &'a [G2Affine],
    rng: &'a mut R,
    miller_chunk: usize,
    checkpoint: &'a mut dyn FnMut(),
    /// Positions found invalid, ascending.
    bad: &'a mut Vec<usize>,
}

impl<R: RngCore> Search<'_, R> {
    /// The batch check of `items`, which start at `offset` in the batch.
    fn check(&mut self, items: &[BatchItem<'_>], offset: usize) -> bool {
        let hashes = self
            .hashes
            .get(offset..offset + items.len())
            .unwrap_or_default();
        check_hashed(
            items,
            hashes,
            self.rng,
            self.miller_chunk,
            &mut *self.checkpoint,
        )
    }

    /// `items` (at `offset`) failed their batch check: finds which are
    /// invalid. Bisects while the invalid items look sparse: if the left
    /// half passes, the right one is known to fail and is not checked
    /// again. Once both halves fail (two invalid items at least), they
    /// are dense enough that checking each item alone (about 4 Miller
    /// loops' worth) is cheaper than bisecting further (about 2 per item
    /// and level): an all-invalid batch, which is free to make, costs
    /// about 4 times a valid one instead of about 9 (#13 item 7). An
    /// item is only ever named invalid by its own, exact, check.
    fn failed(&mut self, items: &[BatchItem<'_>], offset: usize) {
        if items.len() <= 2 {
            return self.each(items, offset);
        }
        let mid = items.len() / 2;
        let (left, right) = items.split_at(mid);
        if self.check(left, offset) {
            return self.failed(right, offset + mid);
        }
        if self.check(right, offset + mid) {
            return self.failed(left, offset);
        }
        self.each(items, offset);
    }

    /// Checks every item alone.
    fn each(&mut self, items: &[BatchItem<'_>], offset: usize) {
        for (i, item) in items.iter().enumerate() {
            if !self.check(std::slice::from_ref(item), offset + i) {
                self.bad.push(offset + i);
            }
        }
    }
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

    thread_local! {
        /// Messages hashed to G2 on this thread (tests run one per thread).
        pub(super) static HASHED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
        /// Miller loop pairs run on this thread.
        pub(super) static PAIRS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

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
            prop_assert_eq!(find_invalid(&its, &mut rng), expected.clone());
            // The checkpointed variant gives the same verdicts, and stops
            // at least once per message hashed.
            let mut checkpoints = 0usize;
            prop_assert_eq!(find_invalid_with(&its, &mut rng, &mut || checkpoints += 1), expected);
            let distinct = if same_message { 1 } else { count };
            prop_assert!(checkpoints >= distinct);
        }
    }

    /// #13 item 7: bisection used to hash every message again at every
    /// level (a batch of 64 with one bad signature hashed about 64 x 7
    /// times); now each distinct message is hashed once.
    #[test]
    fn bisection_amplification_hashes_each_message_once() {
        let mut triples = signed(64, false);
        triples[37].2 = Signature::from_point(triples[37].2.point().double()).unwrap();
        let its = items(&triples);
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        HASHED.with(|n| n.set(0));
        assert_eq!(find_invalid(&its, &mut rng), vec![37]);
        assert_eq!(HASHED.with(|n| n.get()), 64);
        HASHED.with(|n| n.set(0));
        assert_eq!(find_invalid_with(&its, &mut rng, &mut || {}), vec![37]);
        assert_eq!(HASHED.with(|n| n.get()), 64);
    }

    /// #13 item 7: an all-invalid batch (free to make) cost about 9 Miller
    /// loops per item in bisection (two checks per item and level); now
    /// about 4 once both halves of a failing batch fail. One bad item
    /// still costs about 2 log2 n batch checks of shrinking size.
    #[test]
    fn bisection_amplification_an_all_invalid_batch_costs_a_few_checks_per_item() {
        let mut triples = signed(256, false);
        for t in &mut triples {
            t.2 = Signature::from_point(t.2.point().double()).unwrap();
        }
        let its = items(&triples);
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        PAIRS.with(|n| n.set(0));
        assert_eq!(find_invalid(&its, &mut rng), (0..256).collect::<Vec<_>>());
        let pairs = PAIRS.with(|n| n.get());
        // 257 + 129 + 129 for the whole batch and its halves, 2 per item.
        assert!(pairs <= 1_100, "{pairs} Miller pairs for 256 invalid items");
        // One bad item among 256: well under the all-invalid cost.
        let mut triples = signed(256, false);
        triples[200].2 = Signature::from_point(triples[200].2.point().double()).unwrap();
        let its = items(&triples);
        PAIRS.with(|n| n.set(0));
        assert_eq!(find_invalid(&its, &mut rng), vec![200]);
        let pairs = PAIRS.with(|n| n.get());
        assert!(
            pairs <= 257 + 2 * 256,
            "{pairs} Miller pairs for one invalid item"
        );
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
