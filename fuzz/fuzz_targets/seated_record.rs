//! Protocol version 2's peer record: `SeatedPeerRecord::decode` (and the
//! envelope's strict protobuf decoder inside it) never panics, whatever it
//! accepts is canonical (re-encoding gives back the input), and its
//! validation against a fixed valid namespace never panics either; a
//! record's own PeerId as the connection's changes nothing.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rendezvous_proto::seated::{verify_seated, SeatedPeerRecord};
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::{verify_namespace, Limits, VerifiedNamespace};

/// Validation time; the fixture's records are valid at it.
const NOW: u64 = 1_700_000_000_000;
/// Must equal `FIXTURE_SEED` in rendezvous-proto's `examples/gen_fuzz_seeds.rs`.
const FIXTURE_SEED: u64 = 0xf022_0001;
const L: Limits = Limits::DEFAULT;

fn fixture() -> &'static VerifiedNamespace {
    static FIXTURE: OnceLock<VerifiedNamespace> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let q = TestQuorum::deal(5, 3, &mut ChaCha20Rng::seed_from_u64(FIXTURE_SEED));
        let record = q.namespace(1, Some("farmer"), true, NOW - 3_600_000, NOW + 3_600_000);
        match verify_namespace(&record, NOW, &L) {
            Ok(v) => v,
            Err(code) => panic!("fixture namespace invalid: {code}"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = SeatedPeerRecord::decode(data) {
        let bytes = record.encode();
        assert_eq!(bytes, data, "accepted a non-canonical encoding");
        assert_eq!(SeatedPeerRecord::decode(&bytes).as_ref(), Ok(&record));
        let alone = verify_seated(&record, fixture(), NOW, &L, None, false);
        let own = record.peer_id();
        let connected = verify_seated(&record, fixture(), NOW, &L, Some(&own), false);
        assert_eq!(alone, connected, "the record's own PeerId changed the result");
    }
});
