//! Heap bytes per stored peer record, counted by a global allocator.
//!
//! Run: `cargo bench -p benches --bench store_memory`. It registers
//! 10,000 peer records (100 namespaces of 100 members) and prints the heap
//! growth divided by the number of records: everything the store keeps per
//! record (the record, its indices, liveness state, version and expiry
//! entries).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use dht::{NamespaceStore, PeerRegistration, StoreConfig};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rendezvous_proto::testkit::TestQuorum;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const NOW: u64 = 1_700_000_000_000;
const HOUR: u64 = 3_600_000;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // useful either way: run the measurement in both cases, it is quick.
    let (quorums, members) = (100u32, 100u32);
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let qs: Vec<TestQuorum> = (0..quorums)
        .map(|_| TestQuorum::deal(members, 3, &mut rng))
        .collect();
    let mut store = NamespaceStore::new(StoreConfig::default(), [2; 32]);
    for q in &qs {
        store
            .register_namespace(
                q.namespace(1, Some("farmer"), NOW, NOW + 2 * HOUR),
                None,
                NOW,
            )
            .unwrap();
    }
    let regs: Vec<Vec<PeerRegistration>> = qs
        .iter()
        .map(|q| {
            (1..=members)
                .map(|i| PeerRegistration {
                    record: q.peer(i, 1, 1, NOW + HOUR),
                    remote: Some(q.peer_id(i)),
                })
                .collect()
        })
        .collect();
    // Derive every PK_i first so the cache is not counted as per-record cost.
    for q in &qs {
        let ns = store.namespace(&q.quorum_key()).unwrap();
        for i in 1..=members {
            ns.share_key(i);
        }
    }
    let before = LIVE.load(Ordering::Relaxed);
    let mut owned_by_inputs = 0isize;
    for batch in regs {
        // The records move into the store; count what they held so that
        // moving them in is not mistaken for growth.
        owned_by_inputs += batch.iter().map(record_heap_bytes).sum::<isize>();
        let results = store.register_peers(batch, NOW);
        assert!(results.iter().all(|r| r.is_ok()));
    }
    let after = LIVE.load(Ordering::Relaxed);
    let records = (quorums * members) as isize;
    let per_record = (after - before + owned_by_inputs) / records;
    println!(
        "store_memory: {} peer records, {} heap bytes per record (records + indices + liveness)",
        records, per_record
    );
}

/// Heap bytes a registration owned before it moved into the store: its
/// addresses, and the envelope's key, payload and signature buffers.
fn record_heap_bytes(r: &PeerRegistration) -> isize {
    let payload = &r.record.envelope.payload;
    let addrs: usize = payload.addrs.iter().map(|a| a.as_ref().len() + 16).sum();
    let envelope = r.record.envelope.key.capacity()
        + r.record.envelope.signature.capacity()
        + payload.encode().len();
    (addrs
        + payload.addrs.capacity() * std::mem::size_of::<rendezvous_proto::Multiaddr>()
        + envelope) as isize
}
