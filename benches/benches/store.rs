//! The namespace store under a burst of registrations, and the cost of
//! rejecting garbage.
//!
//! Run: `cargo bench -p benches --bench store`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use dht::{NamespaceStore, PeerRegistration, StoreConfig};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::PeerRecord;

const NOW: u64 = 1_700_000_000_000;
const HOUR: u64 = 3_600_000;
const QUORUMS: u32 = 10;
const MEMBERS: u32 = 100;
const THRESHOLD: u32 = 43;

struct Fixture {
    quorums: Vec<TestQuorum>,
    registrations: Vec<PeerRegistration>,
}

fn fixture() -> Fixture {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let quorums: Vec<TestQuorum> = (0..QUORUMS)
        .map(|_| TestQuorum::deal(MEMBERS, THRESHOLD, &mut rng))
        .collect();
    let registrations = quorums
        .iter()
        .flat_map(|q| {
            (1..=MEMBERS).map(move |i| PeerRegistration {
                record: q.peer(i, 1, 1, NOW + HOUR),
                remote: Some(q.peer_id(i)),
            })
        })
        .collect();
    Fixture {
        quorums,
        registrations,
    }
}

fn burst(c: &mut Criterion) {
    let f = fixture();
    let mut g = c.benchmark_group("store");
    g.sample_size(10);
    g.throughput(Throughput::Elements(f.registrations.len() as u64));
    g.bench_function("register_burst_1000_threshold_43", |b| {
        b.iter_batched(
            || (warm_store(&f), f.registrations.clone()),
            |(mut store, regs)| {
                let results = store.register_peers(regs, NOW);
                assert!(results.iter().all(|r| r.is_ok()));
                black_box(store)
            },
            BatchSize::LargeInput,
        )
    });
    // The same records one at a time (one pairing check each), for the ratio.
    g.bench_function("register_one_by_one_1000_threshold_43", |b| {
        b.iter_batched(
            || (warm_store(&f), f.registrations.clone()),
            |(mut store, regs)| {
                for r in regs {
                    assert!(store.register_peer(r, NOW).is_ok());
                }
                black_box(store)
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// A store holding every namespace, with every PK_i derived and cached.
/// The signed namespace records are made once per thread; verifying them
/// again per store is part of the setup, not of the measured burst.
fn warm_store(f: &Fixture) -> NamespaceStore {
    thread_local! {
        static CACHE: std::cell::RefCell<Option<Vec<rendezvous_proto::NamespaceRecord>>> = const { std::cell::RefCell::new(None) };
    }
    let records = CACHE.with(|c| {
        c.borrow_mut()
            .get_or_insert_with(|| {
                f.quorums
                    .iter()
                    .map(|q| q.namespace(1, Some("farmer"), NOW, NOW + 2 * HOUR))
                    .collect()
            })
            .clone()
    });
    let mut store = NamespaceStore::new(StoreConfig::default(), [1; 32]);
    for (q, ns) in f.quorums.iter().zip(records) {
        store.register_namespace(ns, None, NOW).unwrap();
        let verified = store.namespace(&q.quorum_key()).unwrap();
        for i in 1..=MEMBERS {
            verified.share_key(i);
        }
    }
    store
}

fn rejections(c: &mut Criterion) {
    let f = fixture();
    let mut store = warm_store(&f);
    let q = &f.quorums[0];
    let mut g = c.benchmark_group("reject");
    let garbage: Vec<u8> = (0..300u32).map(|i| (i * 7919 % 251) as u8).collect();
    g.bench_function("garbage_bytes_decode", |b| {
        b.iter(|| black_box(PeerRecord::decode(black_box(&garbage)).is_err()))
    });
    let mut out_of_range = q.peer(1, 1, 1, NOW + HOUR);
    out_of_range.seat.index = MEMBERS + 1;
    let reg = PeerRegistration {
        record: out_of_range,
        remote: Some(q.peer_id(1)),
    };
    g.bench_function("out_of_range_registration", |b| {
        b.iter(|| black_box(store.register_peer(reg.clone(), NOW).is_err()))
    });
    let unknown = TestQuorum::deal(3, 2, &mut ChaCha20Rng::seed_from_u64(99));
    let reg = PeerRegistration {
        record: unknown.peer(1, 1, 1, NOW + HOUR),
        remote: Some(unknown.peer_id(1)),
    };
    g.bench_function("unknown_namespace_registration", |b| {
        b.iter(|| black_box(store.register_peer(reg.clone(), NOW).is_err()))
    });
    g.finish();
}

criterion_group!(benches, burst, rejections);
criterion_main!(benches);
