//! Client-side verification of discover and discover-by-kind answers.

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::{
    verify_discover_answer, verify_namespaces_answer, Cookie, DiscoverAnswer, DiscoveredPeer,
    Limits, Response, StatusCode,
};

const NOW: u64 = 1_700_000_000_000;
const HOUR: u64 = 3_600_000;
const L: Limits = Limits::DEFAULT;

fn deal(seed: u64) -> TestQuorum {
    TestQuorum::deal(4, 3, &mut ChaCha20Rng::seed_from_u64(seed))
}

fn found(record: rendezvous_proto::PeerRecord, last_seen_ms: Option<u64>) -> DiscoveredPeer {
    DiscoveredPeer {
        record,
        last_seen_ms,
    }
}

#[test]
fn discover_answer_keeps_valid_peers_and_names_the_rest() {
    let a = deal(1);
    let b = deal(2);
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mut tampered = a.peer(3, 1, 1, NOW + HOUR);
    let mut payload = tampered.envelope.payload.clone();
    payload.seq = 99;
    tampered.envelope.replace_payload_unsigned(payload);
    let answer = DiscoverAnswer {
        namespace: a.namespace(1, Some("farmer"), NOW, NOW + HOUR),
        peers: vec![
            found(a.peer(2, 1, 5, NOW + HOUR), Some(NOW - 10)), // 0: valid
            found(a.peer(1, 1, 1, NOW + HOUR), None),           // 1: valid
            found(tampered, None),                              // 2: altered after signing
            found(b.peer(1, 1, 1, NOW + HOUR), None),           // 3: other namespace
            found(a.peer(2, 1, 4, NOW + HOUR), None),           // 4: older seq of member 2
            found(a.peer(4, 1, 1, NOW - 1), None),              // 5: expired
            found(a.peer(4, 1, 7, NOW + HOUR), None),           // 6: valid
            found(a.peer(4, 1, 8, NOW + HOUR), Some(NOW)),      // 7: newer seq of member 4
        ],
        cookie: Cookie(vec![1, 2, 3]),
    };
    let verified = verify_discover_answer(&answer, &a.quorum_key(), NOW, &L, &mut rng).unwrap();
    assert_eq!(verified.namespace.quorum_key(), a.quorum_key());
    assert_eq!(verified.cookie, Cookie(vec![1, 2, 3]));
    let peers: Vec<(u32, u64, Option<u64>)> = verified
        .peers
        .iter()
        .map(|p| (p.record.index(), p.record.seq(), p.last_seen_ms))
        .collect();
    assert_eq!(
        peers,
        vec![(1, 1, None), (2, 5, Some(NOW - 10)), (4, 8, Some(NOW))]
    );
    let rejected: Vec<(usize, StatusCode)> = verified
        .rejected
        .iter()
        .map(|r| (r.position, r.code))
        .collect();
    assert_eq!(
        rejected,
        vec![
            (2, StatusCode::InvalidEnvelopeSignature),
            (3, StatusCode::UnknownNamespace),
            (4, StatusCode::StaleSequence),
            (5, StatusCode::Expired),
            (6, StatusCode::StaleSequence),
        ]
    );
    for r in &verified.rejected {
        assert_eq!(r.record, answer.peers[r.position].record);
    }
}

#[test]
fn discover_answer_for_another_or_a_forged_namespace_is_refused() {
    let a = deal(1);
    let b = deal(2);
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    // A valid namespace, but not the one asked for.
    let answer = DiscoverAnswer {
        namespace: b.namespace(1, None, NOW, NOW + HOUR),
        peers: vec![found(b.peer(1, 1, 1, NOW + HOUR), None)],
        cookie: Cookie::default(),
    };
    assert_eq!(
        verify_discover_answer(&answer, &a.quorum_key(), NOW, &L, &mut rng).map(|_| ()),
        Err(StatusCode::UnknownNamespace)
    );
    // A's namespace record, altered by the rendezvous.
    let mut forged = a.namespace(1, None, NOW, NOW + HOUR);
    forged.epoch = 2;
    let answer = DiscoverAnswer {
        namespace: forged,
        peers: vec![],
        cookie: Cookie::default(),
    };
    assert_eq!(
        verify_discover_answer(&answer, &a.quorum_key(), NOW, &L, &mut rng).map(|_| ()),
        Err(StatusCode::InvalidNamespaceSignature)
    );
    // An expired namespace.
    let answer = DiscoverAnswer {
        namespace: a.namespace(1, None, NOW - 2 * HOUR, NOW - HOUR),
        peers: vec![],
        cookie: Cookie::default(),
    };
    assert_eq!(
        verify_discover_answer(&answer, &a.quorum_key(), NOW, &L, &mut rng).map(|_| ()),
        Err(StatusCode::Expired)
    );
}

#[test]
fn discover_answer_survives_the_wire() {
    let a = deal(1);
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let answer = DiscoverAnswer {
        namespace: a.namespace(1, None, NOW, NOW + HOUR),
        peers: (1..=4)
            .map(|i| found(a.peer(i, 1, 1, NOW + HOUR), Some(NOW - u64::from(i))))
            .collect(),
        cookie: Cookie(vec![9; 16]),
    };
    let bytes = Response::Discovered(answer.clone()).encode();
    let Ok(Response::Discovered(decoded)) = Response::decode(&bytes) else {
        panic!("did not decode");
    };
    assert_eq!(decoded, answer);
    let verified = verify_discover_answer(&decoded, &a.quorum_key(), NOW, &L, &mut rng).unwrap();
    assert_eq!(verified.peers.len(), 4);
    assert!(verified.rejected.is_empty());
}

#[test]
fn namespaces_answer_keeps_valid_records_of_the_kind() {
    let qs: Vec<TestQuorum> = (10..14).map(deal).collect();
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let mut forged = qs[2].namespace(1, Some("farmer"), NOW, NOW + HOUR);
    forged.epoch = 9;
    let records = vec![
        qs[0].namespace(1, Some("farmer"), NOW, NOW + HOUR), // 0: valid
        qs[1].namespace(1, Some("harvester"), NOW, NOW + HOUR), // 1: other kind
        forged,                                              // 2: bad signature
        qs[3].namespace(2, Some("farmer"), NOW, NOW + HOUR), // 3: valid
        qs[3].namespace(1, Some("farmer"), NOW, NOW + HOUR), // 4: older epoch
        qs[1].namespace(1, None, NOW, NOW + HOUR),           // 5: no kind
        qs[0].namespace(1, Some("farmer"), NOW - HOUR, NOW - 1), // 6: expired
    ];
    let verified = verify_namespaces_answer(&records, "farmer", NOW, &L, &mut rng);
    let mut keys: Vec<_> = verified.namespaces.iter().map(|n| n.quorum_key()).collect();
    let mut expected = vec![qs[0].quorum_key(), qs[3].quorum_key()];
    expected.sort();
    keys.sort();
    assert_eq!(keys, expected);
    let epoch_of_3 = verified
        .namespaces
        .iter()
        .find(|n| n.quorum_key() == qs[3].quorum_key())
        .map(|n| n.record().epoch);
    assert_eq!(epoch_of_3, Some(2));
    let rejected: Vec<(usize, StatusCode)> = verified
        .rejected
        .iter()
        .map(|r| (r.position, r.code))
        .collect();
    assert_eq!(
        rejected,
        vec![
            (1, StatusCode::InvalidKind),
            (2, StatusCode::InvalidNamespaceSignature),
            (4, StatusCode::StaleEpoch),
            (5, StatusCode::InvalidKind),
            (6, StatusCode::Expired),
        ]
    );
}

/// A client follows the cookie only after a page a node may have cut: one
/// whose records reach half the frame cap, or one of `MAX_DISCOVER_LIMIT`
/// records. A small page is the whole rest.
#[test]
fn a_client_follows_the_cookie_only_after_a_page_that_may_have_been_cut() {
    let q = deal(77);
    let record = q.peer(1, 1, 1, NOW + HOUR);
    let page = |count: usize| DiscoverAnswer {
        namespace: q.namespace(1, Some("farmer"), NOW, NOW + HOUR),
        peers: vec![found(record.clone(), None); count],
        cookie: Cookie(Vec::new()),
    };
    assert!(!rendezvous_proto::discover_answer_may_continue(&page(3)));
    let per_peer = record.encode().len() + 9;
    let half = L.max_message_bytes / 2;
    assert!(rendezvous_proto::discover_answer_may_continue(&page(
        half / per_peer + 1
    )));
    assert!(rendezvous_proto::discover_answer_may_continue(&page(
        rendezvous_proto::messages::MAX_DISCOVER_LIMIT as usize
    )));
}
