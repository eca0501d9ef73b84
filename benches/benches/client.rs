//! What a client pays to check a discover answer of 64 members, with the
//! version-1 records (one BLS share signature each, batched) and the
//! version-2 ones (the namespace's threshold signature under C_0, then one
//! Ed25519 envelope per member, seats unchecked), beside the floors: one
//! plain BLS verification, one Ed25519 verification (libp2p's, and
//! ZIP-215's which rdht envelopes use) and a batch of 64 Ed25519
//! signatures alone. Everything on one core.
//!
//! Run: `cargo bench -p benches --bench client`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rendezvous_proto::ed25519::{verify_ed25519_batch, Ed25519Item};
use rendezvous_proto::seated::{check_envelope, check_seated_fields, verify_served};
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::validate::check_namespace_signature;
use rendezvous_proto::{
    verify_discover_answer, verify_namespace, Cookie, DiscoverAnswer, DiscoveredPeer, Limits,
};

const NOW: u64 = 1_700_000_000_000;
const HOUR: u64 = 3_600_000;

fn answer_of_64(c: &mut Criterion) {
    let q = TestQuorum::deal(64, 43, &mut ChaCha20Rng::seed_from_u64(64));
    let limits = Limits::DEFAULT;
    let namespace = q.namespace(1, Some("bench"), NOW, NOW + HOUR);
    let answer = DiscoverAnswer {
        namespace: namespace.clone(),
        peers: (1..=64)
            .map(|i| DiscoveredPeer {
                record: q.peer(i, 1, 1, NOW + HOUR),
                last_seen_ms: None,
            })
            .collect(),
        cookie: Cookie::default(),
    };
    let v2: Vec<_> = (1..=64).map(|i| q.peer(i, 1, 1, NOW + HOUR)).collect();
    let key = q.quorum_key();
    let mut g = c.benchmark_group("client_verifies_64_member_answer");
    g.sample_size(20);
    // The whole client path of `rdht discover` and the node's client
    // (`verify_discover_answer`: the namespace record with `C_0` decoded,
    // then the envelopes batched). Until 2026-12-01 this row was named
    // `v1_bls_shares_batched`, after what it measured before protocol v2.
    g.bench_function("verify_discover_answer", |b| {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        b.iter(|| {
            let a =
                verify_discover_answer(black_box(&answer), &key, NOW, &limits, &mut rng).unwrap();
            assert_eq!(a.peers.len(), 64);
        })
    });
    // Version 2, the envelopes one at a time: libp2p's check (the rule
    // before ZIP-215), and ZIP-215's single check.
    g.bench_function("v2_threshold_then_ed25519_single_libp2p_rule", |b| {
        b.iter(|| {
            check_namespace_signature(black_box(&namespace), NOW, &limits).unwrap();
            for r in black_box(&v2) {
                check_seated_fields(r, &namespace, NOW, &limits, None).unwrap();
                let key = r.envelope.public_key().unwrap();
                assert!(key.verify(&r.envelope.signing_bytes(), &r.envelope.signature));
            }
        })
    });
    g.bench_function("v2_threshold_then_ed25519_single_zip215", |b| {
        b.iter(|| {
            check_namespace_signature(black_box(&namespace), NOW, &limits).unwrap();
            for r in black_box(&v2) {
                check_seated_fields(r, &namespace, NOW, &limits, None).unwrap();
                check_envelope(r).unwrap();
            }
        })
    });
    // What a client runs (`verify_served`): the envelopes in one batch.
    g.bench_function("v2_threshold_then_ed25519_batched", |b| {
        b.iter(|| {
            check_namespace_signature(black_box(&namespace), NOW, &limits).unwrap();
            let results = verify_served(black_box(&v2), &namespace, NOW, &limits);
            assert!(results.iter().all(Result::is_ok));
        })
    });
    // The namespace record alone: its fields, 43 commitments decoded and
    // subgroup-checked, its threshold signature.
    g.bench_function("namespace_record_of_43_commitments", |b| {
        b.iter(|| black_box(verify_namespace(black_box(&namespace), NOW, &limits).unwrap()))
    });
    // The floors: one plain BLS verification, and one Ed25519 one.
    let sk = dkg::SecretKeyShare::new(1, blstrs::Scalar::from(12345u64)).unwrap();
    let bls = sk.sign(b"floor");
    let pk = sk.public_key_share();
    g.bench_function("one_plain_bls_verify", |b| {
        b.iter(|| assert!(pk.verify(black_box(b"floor"), &bls.signature)))
    });
    let env = &v2[0].envelope;
    let ed = env.public_key().unwrap();
    let msg = env.signing_bytes();
    g.bench_function("one_ed25519_verify", |b| {
        b.iter(|| assert!(ed.verify(black_box(&msg), &env.signature)))
    });
    let messages: Vec<Vec<u8>> = v2.iter().map(|r| r.envelope.signing_bytes()).collect();
    let items: Vec<Ed25519Item<'_>> = v2
        .iter()
        .zip(&messages)
        .map(|(r, message)| Ed25519Item {
            key: &r.envelope.key,
            signature: &r.envelope.signature,
            message,
        })
        .collect();
    g.bench_function("one_ed25519_verify_zip215", |b| {
        b.iter(|| assert!(black_box(&items[0]).verify()))
    });
    for n in [16, 64] {
        g.bench_function(format!("ed25519_batch_of_{n}_alone"), |b| {
            b.iter(|| {
                let verdicts = verify_ed25519_batch(black_box(&items[..n]), [0; 32]);
                assert!(verdicts.iter().all(|v| *v));
            })
        });
    }
    g.finish();
}

criterion_group!(benches, answer_of_64);
criterion_main!(benches);
