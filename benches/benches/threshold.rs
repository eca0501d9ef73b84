//! Threshold BLS primitives, with the library baselines side by side.
//!
//! Run: `cargo bench -p benches --bench threshold`.

use std::hint::black_box;

use blstrs::{G1Affine, G1Projective, G2Affine, G2Projective, Scalar};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use dkg::{
    batch_verify, batch_verify_with, combine_signatures, BatchItem, Polynomial, SecretKeyShare,
};
use group::{Curve, Group};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn derive_share_key(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let set = Polynomial::random(67, &mut rng).commitments().unwrap();
    let mut g = c.benchmark_group("derive_pk_i_threshold_67");
    // i = 1000: the largest index of a namespace at the default member
    // cap (1024) has 10 bits. i = 100: the largest of a 100-member quorum,
    // the size a threshold of 67 usually comes with (2n/3 + 1).
    g.bench_function("horner_short_scalars", |b| {
        b.iter(|| black_box(set.public_key_share(black_box(1000))))
    });
    g.bench_function("horner_short_scalars_i_100", |b| {
        b.iter(|| black_box(set.public_key_share(black_box(100))))
    });
    // Baseline: the textbook sum of C_k * i^k with full 255-bit scalars.
    let points: Vec<G1Projective> = set.commitments().iter().map(|c| c.point()).collect();
    g.bench_function("library_full_scalars", |b| {
        b.iter(|| {
            let i = Scalar::from(1000u64);
            let mut power = Scalar::from(1u64);
            let mut acc = G1Projective::identity();
            for p in &points {
                acc += p * power;
                power *= i;
            }
            black_box(acc)
        })
    });
    g.finish();
}

fn combine(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let poly = Polynomial::random(67, &mut rng);
    let shares: Vec<_> = (1..=100)
        .map(|i| SecretKeyShare::new(i, poly.evaluate(i)).unwrap().sign(b"m"))
        .collect();
    c.bench_function("combine_67_shares", |b| {
        b.iter(|| black_box(combine_signatures(67, 100, black_box(&shares[..67])).unwrap()))
    });
}

fn verify(c: &mut Criterion) {
    let triples: Vec<_> = (0..64u64)
        .map(|i| {
            let sk = SecretKeyShare::new(1, Scalar::from(1000 + i)).unwrap();
            let msg = format!("registration {i}").into_bytes();
            let sig = sk.sign(&msg).signature;
            (sk.public_key_share(), msg, sig)
        })
        .collect();
    let items: Vec<BatchItem<'_>> = triples
        .iter()
        .map(|(pk, m, s)| BatchItem {
            public_key: pk,
            message: m,
            signature: s,
        })
        .collect();
    let mut g = c.benchmark_group("verify");
    g.bench_function("plain_1", |b| {
        b.iter(|| black_box(triples[0].0.verify(&triples[0].1, &triples[0].2)))
    });
    // Per-signature cost of a 64-batch = this figure / 64.
    g.bench_function("batch_64", |b| {
        b.iter_batched(
            || ChaCha20Rng::seed_from_u64(3),
            |mut rng| black_box(batch_verify(&items, &mut rng)),
            BatchSize::SmallInput,
        )
    });
    // The same check as the node's verification threads run it: Miller
    // loops over 8 pairs at a time and a `sched_yield` at every checkpoint
    // (the node yields at most every 200 us, so fewer times than here).
    g.bench_function("batch_64_with_checkpoints", |b| {
        b.iter_batched(
            || ChaCha20Rng::seed_from_u64(3),
            |mut rng| {
                black_box(batch_verify_with(&items, &mut rng, &mut || {
                    std::thread::yield_now()
                }))
            },
            BatchSize::SmallInput,
        )
    });
    // Baseline: blst's own safe batch check (the same equation, random
    // 64-bit coefficients, multiplying every signature by its coefficient,
    // fanned out over blst's thread pool). Under `taskset -c 1` the pool
    // has one core to share.
    let blst_pks: Vec<blst::min_pk::PublicKey> = triples
        .iter()
        .map(|t| blst::min_pk::PublicKey::from(*t.0.affine().as_ref()))
        .collect();
    let blst_sigs: Vec<blst::min_pk::Signature> = triples
        .iter()
        .map(|t| blst::min_pk::Signature::from(*t.2.affine().as_ref()))
        .collect();
    let pk_refs: Vec<&blst::min_pk::PublicKey> = blst_pks.iter().collect();
    let sig_refs: Vec<&blst::min_pk::Signature> = blst_sigs.iter().collect();
    let messages: Vec<&[u8]> = triples.iter().map(|t| t.1.as_slice()).collect();
    let rands: Vec<blst::blst_scalar> = (0..triples.len() as u64)
        .map(|i| {
            let mut b = [0u8; 32];
            b[..8].copy_from_slice(&(i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1).to_le_bytes());
            blst::blst_scalar { b }
        })
        .collect();
    g.bench_function("batch_64_blst_pool", |b| {
        b.iter(|| {
            let r = blst::min_pk::Signature::verify_multiple_aggregate_signatures(
                &messages,
                dkg::CIPHERSUITE,
                &pk_refs,
                false,
                &sig_refs,
                false,
                &rands,
                64,
            );
            assert_eq!(r, blst::BLST_ERROR::BLST_SUCCESS);
        })
    });
    // Ours on every core, as the node runs it: one thread per core, each
    // checking its own batch of 64. Per-signature wall cost = this / (64 x
    // cores).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    g.bench_function(format!("batch_64_on_each_of_{cores}_cores"), |b| {
        b.iter(|| {
            std::thread::scope(|scope| {
                for seed in 0..cores as u64 {
                    let items = &items;
                    scope.spawn(move || {
                        let mut rng = ChaCha20Rng::seed_from_u64(seed);
                        assert!(batch_verify(items, &mut rng));
                    });
                }
            })
        })
    });
    g.bench_function("sign_1", |b| {
        let sk = SecretKeyShare::new(1, Scalar::from(77u64)).unwrap();
        b.iter(|| black_box(sk.sign(b"message")))
    });
    g.finish();
}

/// What one signature in a batch cannot avoid, measured on blst itself:
/// the hash of its message to G2, its pair's share of a Miller loop over
/// 65 pairs (a 64-batch plus the signature side), and, when it arrives
/// as bytes, its decompression and subgroup check. Together with the
/// point arithmetic of the group law (`g1_double` and friends, what
/// `PK_i` derivation is made of) these are the floor under the targets.
fn floor(c: &mut Criterion) {
    let mut g = c.benchmark_group("floor");
    let message = [7u8; 300];
    g.bench_function("hash_to_g2", |b| {
        b.iter(|| {
            black_box(G2Projective::hash_to_curve(
                black_box(&message),
                dkg::CIPHERSUITE,
                &[],
            ))
        })
    });
    let q = G2Projective::hash_to_curve(&message, dkg::CIPHERSUITE, &[]);
    let p = G1Projective::generator() * Scalar::from(12_345u64);
    let ps: Vec<G1Affine> = (2..67u64)
        .map(|i| (p * Scalar::from(i)).to_affine())
        .collect();
    let qs: Vec<G2Affine> = (2..67u64)
        .map(|i| (q * Scalar::from(i)).to_affine())
        .collect();
    // Per pair = this / 65.
    g.bench_function("miller_loop_65_pairs", |b| {
        b.iter(|| {
            let pp: Vec<*const blst::blst_p1_affine> =
                ps.iter().map(|p| p.as_ref() as *const _).collect();
            let qq: Vec<*const blst::blst_p2_affine> =
                qs.iter().map(|q| q.as_ref() as *const _).collect();
            let mut f = blst::blst_fp12::default();
            // SAFETY: 65 valid affine points on each side, alive for the call.
            unsafe { blst::blst_miller_loop_n(&mut f, qq.as_ptr(), pp.as_ptr(), pp.len()) };
            black_box(f)
        })
    });
    let compressed = qs[0].to_compressed();
    g.bench_function("g2_decode_with_subgroup_check", |b| {
        b.iter(|| black_box(dkg::Signature::from_bytes(black_box(&compressed)).is_ok()))
    });
    let affine = p.to_affine();
    g.bench_function("g1_double", |b| b.iter(|| black_box(black_box(p).double())));
    // A second point, so that an addition is not a doubling.
    let other = p + G1Projective::generator();
    g.bench_function("g1_add", |b| {
        b.iter(|| black_box(black_box(p) + black_box(other)))
    });
    g.bench_function("g1_add_affine", |b| {
        b.iter(|| black_box(black_box(p) + black_box(affine)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = derive_share_key, combine, verify, floor
}
criterion_main!(benches);
