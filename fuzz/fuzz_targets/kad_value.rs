//! Values from other nodes (a Kademlia PUT or GET answer) into a
//! rendezvous server core: whatever the bytes, `handle_value` and the
//! verification jobs it hands out never panic, and a value it refuses
//! changes nothing.
//!
//! The first byte picks the key the value arrives under: 0 the namespace
//! key of a fixed valid quorum, 1 the kind key `farmer`, anything else the
//! next 32 bytes.

#![no_main]

use dht::{NamespaceStore, Output, Server, ServerConfig, StoreConfig};
use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rendezvous_proto::testkit::TestQuorum;
use std::sync::OnceLock;

const NOW: u64 = 1_700_000_000_000;

fn fixture_key() -> [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    *KEY.get_or_init(|| {
        let q = TestQuorum::deal(5, 3, &mut ChaCha20Rng::seed_from_u64(0xf022_0001));
        dht::namespace_key(&q.quorum_key())
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (key, value): ([u8; 32], &[u8]) = match selector {
        0 => (fixture_key(), rest),
        1 => (dht::kind_key("farmer"), rest),
        _ => match rest.split_first_chunk::<32>() {
            Some((key, value)) => (*key, value),
            None => return,
        },
    };
    let mut server = Server::new(
        ServerConfig {
            dial_policy: dht::AddressPolicy::LOCAL,
            ..ServerConfig::default()
        },
        NamespaceStore::new(StoreConfig::default(), [1; 32]),
    );
    let before = server.store().fingerprint();
    let from = Some(rendezvous_proto::PeerId::from_bytes(&[0, 2, 8, 1]).unwrap_or_else(|_| {
        rendezvous_proto::PeerId::random()
    }));
    if server.handle_value(NOW, from, &key, value).is_err() {
        assert_eq!(server.store().fingerprint(), before, "a refused value changed the store");
    }
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    while let Some(output) = server.poll_output() {
        if let Output::Verify(job) = output {
            let done = job.run(&mut rng, None);
            server.handle_verified(NOW, done);
        }
    }
});
