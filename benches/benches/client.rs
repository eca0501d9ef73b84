//! What a client pays to check a discover answer of 64 members, with the
//! version-1 records (one BLS share signature each, batched) and the
//! version-2 ones (the namespace's threshold signature under C_0, then one
//! Ed25519 envelope per member, seats unchecked), beside the floors: one
//! plain BLS verification and one Ed25519 verification. Everything on one
//! core.
//!
//! Run: `cargo bench -p benches --bench client`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rendezvous_proto::seated::verify_served;
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
    let v1 = DiscoverAnswer {
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
    g.bench_function("v1_bls_shares_batched", |b| {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        b.iter(|| {
            let a = verify_discover_answer(black_box(&v1), &key, NOW, &limits, &mut rng).unwrap();
            assert_eq!(a.peers.len(), 64);
        })
    });
    g.bench_function("v2_threshold_then_ed25519_envelopes", |b| {
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
    g.finish();
}

criterion_group!(benches, answer_of_64);
criterion_main!(benches);
