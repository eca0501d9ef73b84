//! Decodes, then validates: validation never panics either, whatever
//! decoded, and the client's batched verification of a discover answer
//! agrees with verifying each record alone.
//!
//! The first byte picks what the rest is: 0 a namespace record, 1 a peer
//! record (checked against a fixed valid namespace), 2 a response, 3 a
//! request.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::{
    check_namespace_update, verify_discover_answer, verify_namespace, verify_namespaces_answer,
    verify_peer, Limits, NamespaceRecord, PeerRecord, Request, Response, StatusCode,
    VerifiedNamespace,
};

/// Validation time; the fixture's records are valid at it.
const NOW: u64 = 1_700_000_000_000;
/// Must equal `FIXTURE_SEED` in rendezvous-proto's `examples/gen_fuzz_seeds.rs`,
/// so that the seeds' records belong to this fixture's quorum.
const FIXTURE_SEED: u64 = 0xf022_0001;
const L: Limits = Limits::DEFAULT;

fn fixture() -> &'static VerifiedNamespace {
    static FIXTURE: OnceLock<VerifiedNamespace> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let q = TestQuorum::deal(5, 3, &mut ChaCha20Rng::seed_from_u64(FIXTURE_SEED));
        let record = q.namespace(1, Some("farmer"), NOW - 3_600_000, NOW + 3_600_000);
        match verify_namespace(&record, NOW, &L) {
            Ok(v) => v,
            Err(code) => panic!("fixture namespace invalid: {code}"),
        }
    })
}

fn check_namespace(record: &NamespaceRecord) {
    let _ = verify_namespace(record, NOW, &L);
    let _ = check_namespace_update(fixture().record(), record);
}

fn check_peer(record: &PeerRecord) {
    let alone = verify_peer(record, fixture(), NOW, &L, None);
    let connected = verify_peer(record, fixture(), NOW, &L, Some(&record.peer_id()));
    assert_eq!(
        alone, connected,
        "the record's own PeerId changed the result"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut rng = ChaCha20Rng::seed_from_u64(u64::from(mode));
    match mode % 4 {
        0 => {
            if let Ok(record) = NamespaceRecord::decode(rest) {
                check_namespace(&record);
            }
        }
        1 => {
            if let Ok(record) = PeerRecord::decode(rest) {
                check_peer(&record);
            }
        }
        2 => match Response::decode(rest) {
            Ok(Response::Discovered(answer)) => {
                let Some(key) = answer.namespace.quorum_key() else {
                    return;
                };
                let _ = verify_discover_answer(&answer, &fixture().quorum_key(), NOW, &L, &mut rng);
                let Ok(verified) = verify_discover_answer(&answer, &key, NOW, &L, &mut rng) else {
                    return;
                };
                // Batched verification agrees with one-by-one verification.
                for (position, peer) in answer.peers.iter().enumerate() {
                    let alone = verify_peer(&peer.record, &verified.namespace, NOW, &L, None);
                    let rejected = verified.rejected.iter().find(|r| r.position == position);
                    match (alone, rejected) {
                        (Ok(()), None) => {}
                        (Ok(()), Some(r)) => assert_eq!(r.code, StatusCode::StaleSequence),
                        (Err(code), Some(r)) => assert_eq!(r.code, code),
                        (Err(code), None) => panic!("batch accepted a record rejected as {code}"),
                    }
                }
            }
            Ok(Response::Namespaces { namespaces, .. }) => {
                let _ = verify_namespaces_answer(&namespaces, "farmer", NOW, &L, &mut rng);
            }
            _ => {}
        },
        _ => match Request::decode(rest) {
            Ok(
                Request::RegisterNamespace(record)
                | Request::SignNamespace(record)
                | Request::NamespaceReady(record),
            ) => {
                check_namespace(&record);
            }
            Ok(Request::RegisterPeer(record)) => check_peer(&record),
            _ => {}
        },
    }
});
