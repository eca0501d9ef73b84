//! The namespace store: every rejection with its exact code and no state
//! change, quotas at their edges, paging, liveness, expiry, merge laws.

use std::sync::OnceLock;

use dht::{
    Admission, LivenessConfig, NamespaceStore, NamespaceValue, PeerRegistration, Quotas,
    StoreConfig,
};
use libp2p_identity::{Keypair, PeerId};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rendezvous_proto::messages::Cookie;
use rendezvous_proto::testkit::{with_seq_unsigned, TestQuorum};
use rendezvous_proto::{PeerRecord, StatusCode};

const NOW: u64 = 1_700_000_000_000;
const HOUR: u64 = 3_600_000;

fn quorum(n: u32, threshold: u32, seed: u64) -> TestQuorum {
    TestQuorum::deal(n, threshold, &mut ChaCha20Rng::seed_from_u64(seed))
}

fn store_with(config: StoreConfig) -> NamespaceStore {
    NamespaceStore::new(config, [7; 32])
}

fn store() -> NamespaceStore {
    store_with(StoreConfig::default())
}

fn reg(q: &TestQuorum, record: PeerRecord) -> PeerRegistration {
    let remote = Some(q.peer_id(record.index()));
    PeerRegistration { record, remote }
}

/// A store holding `q`'s namespace (epoch 1, members listed) and no peers.
fn with_namespace(q: &TestQuorum) -> NamespaceStore {
    let mut s = store();
    let ns = q.namespace(1, Some("farmer"), NOW, NOW + 2 * HOUR);
    assert_eq!(
        s.register_namespace(ns, Some(q.peer_id(1)), NOW),
        Ok(2 * HOUR)
    );
    s
}

/// Asserts that registering `r` fails with `code` and changes nothing.
fn assert_peer_rejected(s: &mut NamespaceStore, r: PeerRegistration, code: StatusCode) {
    let before = s.fingerprint();
    assert_eq!(s.register_peer(r, NOW), Err(code));
    assert_eq!(s.fingerprint(), before, "state changed after {code}");
}

#[test]
fn honest_members_register_and_are_discovered() {
    let q = quorum(4, 3, 1);
    let mut s = with_namespace(&q);
    let regs = (1..=4)
        .map(|i| reg(&q, q.peer(i, 1, 1, NOW + HOUR)))
        .collect();
    let results = s.register_peers(regs, NOW);
    assert_eq!(results, vec![Ok(HOUR); 4]);
    let answer = s.discover(&q.quorum_key(), 0, None, NOW).unwrap();
    assert_eq!(answer.peers.len(), 4);
    let indices: Vec<u32> = answer.peers.iter().map(|p| p.record.index()).collect();
    assert_eq!(indices, vec![1, 2, 3, 4]);
    assert_eq!(s.stats().peer_records, 4);
}

#[test]
fn every_peer_rejection_has_its_code_and_changes_nothing() {
    let q = quorum(4, 3, 1);
    let other = quorum(4, 3, 2);
    let mut s = with_namespace(&q);
    assert_eq!(
        s.register_peer(reg(&q, q.peer(1, 1, 5, NOW + HOUR)), NOW),
        Ok(HOUR)
    );

    // Another quorum's namespace is not stored here.
    assert_peer_rejected(
        &mut s,
        reg(&other, other.peer(1, 1, 1, NOW + HOUR)),
        StatusCode::UnknownNamespace,
    );

    // Index 0 and n + 1.
    for bad_index in [0u32, 5] {
        let mut seat = q.seat(2, 1);
        seat.index = bad_index;
        let r = PeerRecord::sign(seat, vec![], 1, NOW + HOUR, &q.identities[1]);
        assert_peer_rejected(
            &mut s,
            PeerRegistration {
                record: r,
                remote: Some(q.peer_id(2)),
            },
            StatusCode::IndexOutOfRange,
        );
    }

    // An outsider with a fresh share seating member 2 (its own envelope
    // signed by member 2's key: the worst case, a stolen identity key).
    let fresh = dkg::SecretKeyShare::new(2, blstrs::Scalar::from(424242u64)).unwrap();
    let forged = q.peer_seated_by(2, 1, 1, NOW + HOUR, &fresh);
    assert_peer_rejected(&mut s, reg(&q, forged), StatusCode::InvalidShareSignature);
    // The share of another quorum, re-targeted at this namespace.
    let stolen = q.peer_seated_by(2, 1, 1, NOW + HOUR, &other.shares[1].secret);
    assert_peer_rejected(&mut s, reg(&q, stolen), StatusCode::InvalidShareSignature);
    // A valid seat moved to another index (with that index's PeerId and
    // envelope, so that only the share signature can tell).
    let mut seat = q.seat(3, 1);
    seat.index = 4;
    seat.peer_id = q.peer_id(4);
    let moved = PeerRecord::sign(seat, vec![], 1, NOW + HOUR, &q.identities[3]);
    assert_peer_rejected(&mut s, reg(&q, moved), StatusCode::InvalidShareSignature);
    // A field changed after signing.
    let tampered = with_seq_unsigned(q.peer(3, 1, 1, NOW + HOUR), 2);
    assert_peer_rejected(
        &mut s,
        reg(&q, tampered),
        StatusCode::InvalidEnvelopeSignature,
    );
    // Seat signature bytes that are not a point.
    let mut seat = q.seat(3, 1);
    seat.signature = [0xaa; 96];
    let garbage = PeerRecord::sign(seat, vec![], 1, NOW + HOUR, &q.identities[2]);
    assert_peer_rejected(&mut s, reg(&q, garbage), StatusCode::Decode);

    // Replays: the same seq, and a lower one.
    assert_peer_rejected(
        &mut s,
        reg(&q, q.peer(1, 1, 5, NOW + HOUR)),
        StatusCode::StaleSequence,
    );
    assert_peer_rejected(
        &mut s,
        reg(&q, q.peer(1, 1, 4, NOW + HOUR)),
        StatusCode::StaleSequence,
    );

    // Times.
    assert_peer_rejected(&mut s, reg(&q, q.peer(2, 1, 1, NOW)), StatusCode::Expired);
    assert_peer_rejected(
        &mut s,
        reg(&q, q.peer(2, 1, 1, NOW + 73 * HOUR)),
        StatusCode::TtlTooLong,
    );

    // Authenticated remote differs from the record's PeerId.
    assert_peer_rejected(
        &mut s,
        PeerRegistration {
            record: q.peer(2, 1, 1, NOW + HOUR),
            remote: Some(q.peer_id(3)),
        },
        StatusCode::PeerIdMismatch,
    );

    // The member list names another PeerId at this index.
    let imposter = Keypair::generate_ed25519();
    let seat = rendezvous_proto::seat::Seat::sign(
        q.quorum_key(),
        1,
        imposter.public().to_peer_id(),
        &q.shares[1].secret,
    );
    let r = PeerRecord::sign(seat, vec![], 1, NOW + HOUR, &imposter);
    assert_peer_rejected(
        &mut s,
        PeerRegistration {
            remote: Some(r.peer_id()),
            record: r,
        },
        StatusCode::NotAMember,
    );

    // Another epoch.
    assert_peer_rejected(
        &mut s,
        reg(&q, q.peer(2, 2, 1, NOW + HOUR)),
        StatusCode::EpochMismatch,
    );

    // Too many addresses.
    let addrs: Vec<_> = (0..17)
        .map(|i| format!("/ip4/127.0.0.1/tcp/{}", 5000 + i).parse().unwrap())
        .collect();
    let r = PeerRecord::sign(q.seat(2, 1), addrs, 1, NOW + HOUR, &q.identities[1]);
    assert_peer_rejected(&mut s, reg(&q, r), StatusCode::RecordTooLarge);

    // After all that, only the one honest record is stored.
    assert_eq!(s.stats().peer_records, 1);
}

#[test]
fn namespace_rejections_have_their_codes_and_change_nothing() {
    let q = quorum(4, 3, 1);
    let squatter = quorum(4, 3, 3);
    let mut s = with_namespace(&q);
    let before = s.fingerprint();

    // Same epoch and issued-at again, and an older epoch: stale.
    let again = q.namespace(1, Some("farmer"), NOW, NOW + 2 * HOUR);
    assert_eq!(
        s.register_namespace(again, None, NOW),
        Err(StatusCode::StaleEpoch)
    );
    let older = q.namespace(0, Some("farmer"), NOW + 1, NOW + 2 * HOUR);
    assert_eq!(
        s.register_namespace(older, None, NOW),
        Err(StatusCode::StaleEpoch)
    );

    // A squatter's key set claiming q's quorum key, signed by the squatter.
    let mut squat = squatter.namespace_unsigned(2, Some("farmer"), NOW, NOW + HOUR);
    squat.commitments[0] = q.quorum_key().0;
    let message = squat.signing_bytes();
    let shares: Vec<_> = squatter.shares[..3]
        .iter()
        .map(|s| s.secret.sign(&message))
        .collect();
    squat.signature = dkg::combine_signatures(3, 4, &shares).unwrap().to_bytes();
    assert_eq!(
        s.register_namespace(squat, None, NOW),
        Err(StatusCode::InvalidNamespaceSignature)
    );

    // Too few shares: threshold - 1 interpolated as if enough.
    let mut weak = q.namespace_unsigned(2, Some("farmer"), NOW, NOW + HOUR);
    let message = weak.signing_bytes();
    let shares: Vec<_> = q.shares[..2]
        .iter()
        .map(|s| s.secret.sign(&message))
        .collect();
    weak.signature = dkg::combine_signatures(2, 4, &shares).unwrap().to_bytes();
    assert_eq!(
        s.register_namespace(weak, None, NOW),
        Err(StatusCode::InvalidNamespaceSignature)
    );

    // Tampered commitments after signing.
    let mut tampered = q.namespace(2, Some("farmer"), NOW, NOW + HOUR);
    tampered.commitments[1] = squatter.namespace(1, None, NOW, NOW + HOUR).commitments[1];
    assert_eq!(
        s.register_namespace(tampered, None, NOW),
        Err(StatusCode::InvalidNamespaceSignature)
    );

    // Out-of-range parameters, kind, times.
    let mut bad = q.namespace(2, Some("farmer"), NOW, NOW + HOUR);
    bad.n = 2; // threshold 3 > n 2
    assert_eq!(
        s.register_namespace(bad, None, NOW),
        Err(StatusCode::InvalidParameters)
    );
    let bad_kind = q.namespace(2, Some("Farmer!"), NOW, NOW + HOUR);
    assert_eq!(
        s.register_namespace(bad_kind, None, NOW),
        Err(StatusCode::InvalidKind)
    );
    let expired = q.namespace(2, None, NOW - 2, NOW);
    assert_eq!(
        s.register_namespace(expired, None, NOW),
        Err(StatusCode::Expired)
    );
    let too_long = q.namespace(2, None, NOW, NOW + 73 * HOUR);
    assert_eq!(
        s.register_namespace(too_long, None, NOW),
        Err(StatusCode::TtlTooLong)
    );

    assert_eq!(s.fingerprint(), before);

    // A newer epoch is accepted and drops peer records of the old one.
    s.register_peer(reg(&q, q.peer(1, 1, 1, NOW + HOUR)), NOW)
        .unwrap();
    let newer = q.namespace(2, Some("harvester"), NOW + 5, NOW + 2 * HOUR);
    assert!(s.register_namespace(newer, None, NOW + 5).is_ok());
    assert_eq!(s.stats().peer_records, 0);
    assert_eq!(
        s.discover_kind("farmer", 0, None, NOW + 5).unwrap().0.len(),
        0
    );
    assert_eq!(
        s.discover_kind("harvester", 0, None, NOW + 5)
            .unwrap()
            .0
            .len(),
        1
    );
}

#[test]
fn admission_policy_refuses_with_not_authorized() {
    let q = quorum(3, 2, 1);
    let config = StoreConfig {
        admission: Admission {
            allowed_kinds: Some(["farmer".to_string()].into_iter().collect()),
            allowed_quorum_keys: None,
        },
        ..StoreConfig::default()
    };
    let mut s = store_with(config);
    let ns = q.namespace(1, Some("harvester"), NOW, NOW + HOUR);
    assert_eq!(
        s.register_namespace(ns, None, NOW),
        Err(StatusCode::NotAuthorized)
    );
    let ns = q.namespace(1, Some("farmer"), NOW, NOW + HOUR);
    assert!(s.register_namespace(ns, None, NOW).is_ok());
}

#[test]
fn namespace_quota_edge_and_eviction_of_namespaces_without_live_peers() {
    let config = StoreConfig {
        quotas: Quotas {
            max_namespaces: 2,
            ..Quotas::default()
        },
        ..StoreConfig::default()
    };
    let mut s = store_with(config);
    let qs: Vec<TestQuorum> = (0..4).map(|i| quorum(2, 1, 10 + i)).collect();
    for q in &qs[..2] {
        assert!(s
            .register_namespace(q.namespace(1, None, NOW, NOW + HOUR), None, NOW)
            .is_ok());
        s.register_peer(reg(q, q.peer(1, 1, 1, NOW + HOUR)), NOW)
            .unwrap();
    }
    // Exactly at the cap: both have live peers, so the third is refused.
    let before = s.fingerprint();
    let third = qs[2].namespace(1, None, NOW, NOW + HOUR);
    assert_eq!(
        s.register_namespace(third.clone(), None, NOW),
        Err(StatusCode::QuotaExceeded)
    );
    assert_eq!(s.fingerprint(), before);
    // Once one namespace's only peer is unreachable, it makes room.
    let victim = qs[0].peer_id(1);
    let now = silence(&mut s, &victim, NOW);
    assert!(s.register_namespace(third, None, now).is_ok());
    assert_eq!(s.stats().namespaces, 2);
    assert!(s.namespace(&qs[0].quorum_key()).is_none());
}

#[test]
fn per_source_quota_edge() {
    let config = StoreConfig {
        quotas: Quotas {
            max_registrations_per_source: 3,
            ..Quotas::default()
        },
        ..StoreConfig::default()
    };
    let mut s = store_with(config);
    let source = Keypair::generate_ed25519().public().to_peer_id();
    let qs: Vec<TestQuorum> = (0..4).map(|i| quorum(2, 1, 20 + i)).collect();
    for q in &qs[..3] {
        assert!(s
            .register_namespace(q.namespace(1, None, NOW, NOW + HOUR), Some(source), NOW)
            .is_ok());
    }
    assert_eq!(s.source_count(&source), 3);
    let fourth = qs[3].namespace(1, None, NOW, NOW + HOUR);
    assert_eq!(
        s.register_namespace(fourth.clone(), Some(source), NOW),
        Err(StatusCode::QuotaExceeded)
    );
    // Another source is not affected.
    assert!(s.register_namespace(fourth, None, NOW).is_ok());
}

#[test]
fn peer_record_quota_edge() {
    let config = StoreConfig {
        quotas: Quotas {
            max_peer_records: 2,
            ..Quotas::default()
        },
        ..StoreConfig::default()
    };
    let q = quorum(3, 2, 1);
    let mut s = store_with(config);
    s.register_namespace(q.namespace(1, None, NOW, NOW + HOUR), None, NOW)
        .unwrap();
    assert!(s
        .register_peer(reg(&q, q.peer(1, 1, 1, NOW + HOUR)), NOW)
        .is_ok());
    assert!(s
        .register_peer(reg(&q, q.peer(2, 1, 1, NOW + HOUR)), NOW)
        .is_ok());
    assert_peer_rejected(
        &mut s,
        reg(&q, q.peer(3, 1, 1, NOW + HOUR)),
        StatusCode::QuotaExceeded,
    );
    // Refreshing a stored slot is not growth.
    assert!(s
        .register_peer(reg(&q, q.peer(2, 1, 2, NOW + HOUR)), NOW)
        .is_ok());
}

#[test]
fn one_bad_signature_does_not_fail_its_batch() {
    let q = quorum(8, 5, 4);
    let mut s = with_namespace(&q);
    let mut regs: Vec<PeerRegistration> = (1..=8)
        .map(|i| reg(&q, q.peer(i, 1, 1, NOW + HOUR)))
        .collect();
    // Member 6's seat signed with member 1's share: the one bad pairing
    // of the batch; member 3's envelope altered after signing.
    regs[5].record = q.peer_seated_by(6, 1, 1, NOW + HOUR, &q.shares[0].secret);
    regs[2].record = with_seq_unsigned(regs[2].record.clone(), 2);
    let results = s.register_peers(regs, NOW);
    for (i, r) in results.iter().enumerate() {
        if i == 5 {
            assert_eq!(*r, Err(StatusCode::InvalidShareSignature));
        } else if i == 2 {
            assert_eq!(*r, Err(StatusCode::InvalidEnvelopeSignature));
        } else {
            assert_eq!(*r, Ok(HOUR), "index {}", i + 1);
        }
    }
    // Two records for one slot in one batch: the second needs a higher seq.
    let dup = vec![
        reg(&q, q.peer(6, 1, 3, NOW + HOUR)),
        reg(&q, q.peer(6, 1, 3, NOW + HOUR)),
    ];
    assert_eq!(
        s.register_peers(dup, NOW),
        vec![Ok(HOUR), Err(StatusCode::StaleSequence)]
    );
}

#[test]
fn cookies_page_through_and_return_only_what_is_new() {
    let q = quorum(5, 3, 5);
    let mut s = with_namespace(&q);
    for i in 1..=5 {
        s.register_peer(reg(&q, q.peer(i, 1, 1, NOW + HOUR)), NOW)
            .unwrap();
    }
    let qk = q.quorum_key();
    let page1 = s.discover(&qk, 2, None, NOW).unwrap();
    assert_eq!(
        page1
            .peers
            .iter()
            .map(|p| p.record.index())
            .collect::<Vec<_>>(),
        vec![1, 2]
    );
    let page2 = s.discover(&qk, 2, Some(&page1.cookie), NOW).unwrap();
    assert_eq!(
        page2
            .peers
            .iter()
            .map(|p| p.record.index())
            .collect::<Vec<_>>(),
        vec![3, 4]
    );
    let page3 = s.discover(&qk, 2, Some(&page2.cookie), NOW).unwrap();
    assert_eq!(
        page3
            .peers
            .iter()
            .map(|p| p.record.index())
            .collect::<Vec<_>>(),
        vec![5]
    );
    let empty = s.discover(&qk, 2, Some(&page3.cookie), NOW).unwrap();
    assert!(empty.peers.is_empty());
    // A refresh is new to the cookie.
    s.register_peer(reg(&q, q.peer(2, 1, 2, NOW + HOUR)), NOW)
        .unwrap();
    let fresh = s.discover(&qk, 0, Some(&empty.cookie), NOW).unwrap();
    assert_eq!(
        fresh
            .peers
            .iter()
            .map(|p| (p.record.index(), p.record.seq()))
            .collect::<Vec<_>>(),
        vec![(2, 2)]
    );

    // A cookie is bound to its namespace and to this node.
    let other = quorum(2, 1, 6);
    s.register_namespace(other.namespace(1, None, NOW, NOW + HOUR), None, NOW)
        .unwrap();
    assert_eq!(
        s.discover(&other.quorum_key(), 0, Some(&page1.cookie), NOW),
        Err(StatusCode::InvalidCookie)
    );
    let mut elsewhere = NamespaceStore::new(StoreConfig::default(), [9; 32]);
    elsewhere
        .register_namespace(
            q.namespace(1, Some("farmer"), NOW, NOW + 2 * HOUR),
            None,
            NOW,
        )
        .unwrap();
    assert_eq!(
        elsewhere.discover(&qk, 0, Some(&page1.cookie), NOW),
        Err(StatusCode::InvalidCookie)
    );
    assert_eq!(
        s.discover(&qk, 0, Some(&Cookie(vec![1, 2, 3])), NOW),
        Err(StatusCode::InvalidCookie)
    );
}

#[test]
fn kind_listing_pages_with_cookies() {
    let mut s = store();
    let qs: Vec<TestQuorum> = (0..5).map(|i| quorum(1, 1, 30 + i)).collect();
    for q in &qs {
        s.register_namespace(q.namespace(1, Some("farmer"), NOW, NOW + HOUR), None, NOW)
            .unwrap();
    }
    let (first, cookie) = s.discover_kind("farmer", 3, None, NOW).unwrap();
    let (rest, cookie2) = s.discover_kind("farmer", 3, Some(&cookie), NOW).unwrap();
    assert_eq!(first.len(), 3);
    assert_eq!(rest.len(), 2);
    let (none, _) = s.discover_kind("farmer", 3, Some(&cookie2), NOW).unwrap();
    assert!(none.is_empty());
    assert_eq!(
        s.discover_kind("harvester", 3, Some(&cookie), NOW),
        Err(StatusCode::InvalidCookie)
    );
    assert_eq!(
        s.discover_kind("BAD kind", 3, None, NOW),
        Err(StatusCode::InvalidKind)
    );
}

/// Plays the driver from `now` until `peer` is unreachable: every other
/// peer due a ping answers it, `peer` fails each of its pings. Returns the
/// time reached.
fn silence(s: &mut NamespaceStore, peer: &PeerId, mut now: u64) -> u64 {
    for _ in 0..1_000 {
        if s.is_unreachable(peer) {
            return now;
        }
        now = s.poll_timeout().expect("a ping is due").max(now);
        for t in s.due_pings(now) {
            if t.peer_id == *peer {
                s.handle_ping_miss(peer);
            } else {
                s.handle_pong(&t.peer_id, now);
            }
        }
    }
    panic!("{peer} never became unreachable");
}

#[test]
fn liveness_marks_unreachable_after_misses_and_back_on_pong() {
    let config = StoreConfig {
        liveness: LivenessConfig {
            ping_interval_ms: 1_000,
            max_misses: 3,
            ..LivenessConfig::default()
        },
        ..StoreConfig::default()
    };
    let q = quorum(3, 2, 7);
    let mut s = store_with(config);
    s.register_namespace(q.namespace(1, None, NOW, NOW + HOUR), None, NOW)
        .unwrap();
    for i in 1..=3 {
        s.register_peer(reg(&q, q.peer(i, 1, 1, NOW + HOUR)), NOW)
            .unwrap();
    }
    // Every peer is due a first ping within a tenth of the interval.
    let due = s.due_pings(NOW + 110);
    assert_eq!(due.len(), 3);
    assert!(s.due_pings(NOW + 110).is_empty());
    assert!(s.poll_timeout().unwrap() >= NOW + 110 + 900);
    let dead = q.peer_id(2);
    let mut now = NOW + 110;
    let mut due = due;
    for miss in 1..=3 {
        for t in &due {
            if t.peer_id == dead {
                let became = s.handle_ping_miss(&dead);
                assert_eq!(became, miss == 3);
                // A second failure in the same interval is not a miss.
                assert!(!s.handle_ping_miss(&dead));
            } else {
                s.handle_pong(&t.peer_id, now);
            }
        }
        now += 1_100;
        due = s.due_pings(now);
    }
    let answer = s.discover(&q.quorum_key(), 0, None, now).unwrap();
    assert_eq!(
        answer
            .peers
            .iter()
            .map(|p| p.record.index())
            .collect::<Vec<_>>(),
        vec![1, 3]
    );
    assert!(answer.peers.iter().all(|p| p.last_seen_ms.is_some()));
    // Replication of the same record cannot bring it back...
    let value = NamespaceValue {
        namespace: q.namespace(1, None, NOW, NOW + HOUR),
        peers: vec![q.peer(2, 1, 1, NOW + HOUR)],
    };
    s.merge_value(value, now);
    assert_eq!(
        s.discover(&q.quorum_key(), 0, None, now)
            .unwrap()
            .peers
            .len(),
        2
    );
    // ...a pong does, and the old cookie sees it again.
    let cookie = answer.cookie;
    s.handle_pong(&dead, now);
    let again = s.discover(&q.quorum_key(), 0, Some(&cookie), now).unwrap();
    assert_eq!(
        again
            .peers
            .iter()
            .map(|p| p.record.index())
            .collect::<Vec<_>>(),
        vec![2]
    );
    // A new registration after unreachable lists it at once too.
    let now = silence(&mut s, &dead, now);
    s.register_peer(reg(&q, q.peer(2, 1, 2, NOW + HOUR)), now)
        .unwrap();
    assert!(!s.is_unreachable(&dead));
}

#[test]
fn expiry_drops_records_and_namespaces() {
    let q = quorum(3, 2, 8);
    let mut s = store();
    s.register_namespace(
        q.namespace(1, Some("farmer"), NOW, NOW + 2 * HOUR),
        None,
        NOW,
    )
    .unwrap();
    s.register_peer(reg(&q, q.peer(1, 1, 1, NOW + HOUR)), NOW)
        .unwrap();
    s.register_peer(reg(&q, q.peer(2, 1, 1, NOW + 2 * HOUR)), NOW)
        .unwrap();
    assert_eq!(s.poll_timeout().map(|t| t <= NOW + HOUR), Some(true));
    // Not served once expired, even before expire() runs.
    assert_eq!(
        s.discover(&q.quorum_key(), 0, None, NOW + HOUR)
            .unwrap()
            .peers
            .len(),
        1
    );
    assert_eq!(s.expire(NOW + HOUR), 1);
    assert_eq!(s.stats().peer_records, 1);
    assert_eq!(s.expire(NOW + 2 * HOUR), 2);
    assert_eq!(s.stats(), Default::default());
    assert_eq!(
        s.discover(&q.quorum_key(), 0, None, NOW + 2 * HOUR),
        Err(StatusCode::UnknownNamespace)
    );
    assert!(s
        .discover_kind("farmer", 0, None, NOW + 2 * HOUR)
        .unwrap()
        .0
        .is_empty());
}

#[test]
fn unregister_needs_the_owner_and_survives_replication() {
    let q = quorum(3, 2, 9);
    let mut s = with_namespace(&q);
    s.register_peer(reg(&q, q.peer(1, 1, 4, NOW + HOUR)), NOW)
        .unwrap();
    let before = s.fingerprint();
    assert_eq!(
        s.unregister(&q.quorum_key(), 1, &q.peer_id(2), NOW),
        Err(StatusCode::PeerIdMismatch)
    );
    assert_eq!(s.fingerprint(), before);
    assert_eq!(s.unregister(&q.quorum_key(), 1, &q.peer_id(1), NOW), Ok(()));
    assert_eq!(s.stats().peer_records, 0);
    let value = NamespaceValue {
        namespace: q.namespace(1, Some("farmer"), NOW, NOW + 2 * HOUR),
        peers: vec![q.peer(1, 1, 4, NOW + HOUR)],
    };
    s.merge_value(value, NOW);
    assert_eq!(
        s.stats().peer_records,
        0,
        "a withdrawn record came back through replication"
    );
    // A newer registration is accepted.
    assert!(s
        .register_peer(reg(&q, q.peer(1, 1, 5, NOW + HOUR)), NOW)
        .is_ok());
}

/// A server core over `store` that takes loopback addresses (test records
/// list 127.0.0.1), as a node listening on loopback does.
fn server(store: NamespaceStore) -> dht::Server {
    let config = dht::ServerConfig {
        dial_policy: dht::AddressPolicy::LOCAL,
        ..dht::ServerConfig::default()
    };
    dht::Server::new(config, store)
}

/// Plays a driver: hands a value to the server core and runs its jobs.
fn handle_value(s: &mut dht::Server, key: &libp2p_kad::RecordKey, value: &[u8]) {
    s.handle_value(NOW, None, key.as_ref(), value).unwrap();
    while let Some(output) = s.poll_output() {
        if let dht::Output::Verify(job) = output {
            let done = job.run(&mut ChaCha20Rng::seed_from_u64(1), None);
            s.handle_verified(NOW, done);
        }
    }
}

#[test]
fn kad_store_round_trips_values() {
    use libp2p_kad::store::RecordStore;
    let q = quorum(3, 2, 11);
    let mut a = dht::KadStore::new(server(with_namespace(&q)), Box::new(|| NOW));
    a.inner_mut()
        .store_mut()
        .register_peer(reg(&q, q.peer(1, 1, 1, NOW + HOUR)), NOW)
        .unwrap();
    let key = libp2p_kad::RecordKey::new(&dht::namespace_key(&q.quorum_key()));
    let record = a.get(&key).unwrap().into_owned();
    // Kad's own `put` (a node's publication of what it holds) takes what
    // is held and nothing new: new values are verified off the event loop,
    // through the server core.
    assert!(a.put(record.clone()).is_ok());
    let mut b = dht::KadStore::new(server(store()), Box::new(|| NOW));
    assert!(b.put(record.clone()).is_err(), "verified inside put");
    assert_eq!(b.inner().store().stats().namespaces, 0);
    handle_value(b.inner_mut(), &key, &record.value);
    assert_eq!(b.get(&key).unwrap().into_owned().value, record.value);
    // The kind index is served and replicates the namespace.
    let kind_key = libp2p_kad::RecordKey::new(&dht::kind_key("farmer"));
    let kind_record = a.get(&kind_key).unwrap().into_owned();
    let mut c = dht::KadStore::new(server(store()), Box::new(|| NOW));
    handle_value(c.inner_mut(), &kind_key, &kind_record.value);
    assert_eq!(c.inner().store().stats().namespaces, 1);
    // A value under the wrong key is refused.
    let mut wrong = record;
    wrong.key = libp2p_kad::RecordKey::new(&[0u8; 32]);
    assert!(c.put(wrong.clone()).is_err());
    assert_eq!(
        c.inner_mut()
            .handle_value(NOW, None, wrong.key.as_ref(), &wrong.value),
        Err(dht::ValueError::WrongKey)
    );
    assert_eq!(a.records().count(), 2);
}

// ----- merge laws -------------------------------------------------------------

struct Universe {
    quorum: TestQuorum,
    /// Valid peer records: indices 1..=4, seqs 1..=3, plus an invalid one per index.
    records: Vec<PeerRecord>,
}

fn universe() -> &'static Universe {
    static U: OnceLock<Universe> = OnceLock::new();
    U.get_or_init(|| {
        let quorum = quorum(4, 2, 12);
        let mut records = Vec::new();
        for index in 1..=4 {
            for seq in 1..=3 {
                records.push(quorum.peer(index, 1, seq, NOW + HOUR + seq));
            }
            let bad = with_seq_unsigned(quorum.peer(index, 1, 9, NOW + HOUR), 10);
            records.push(bad); // signature no longer matches
        }
        Universe { quorum, records }
    })
}

fn value_of(picks: &[usize]) -> NamespaceValue {
    let u = universe();
    NamespaceValue {
        namespace: u.quorum.namespace(1, None, NOW, NOW + 2 * HOUR),
        peers: picks
            .iter()
            .map(|&i| u.records[i % u.records.len()].clone())
            .collect(),
    }
}

fn merged(values: &[NamespaceValue]) -> Option<NamespaceValue> {
    let mut s = store();
    for v in values {
        s.merge_value(v.clone(), NOW);
    }
    s.namespace_value(&universe().quorum.quorum_key(), NOW)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Merging is commutative, associative and idempotent, and never
    /// stores a record that does not verify.
    #[test]
    fn merge_is_a_crdt(
        a in proptest::collection::vec(0usize..16, 0..6),
        b in proptest::collection::vec(0usize..16, 0..6),
        c in proptest::collection::vec(0usize..16, 0..6),
    ) {
        let (va, vb, vc) = (value_of(&a), value_of(&b), value_of(&c));
        let abc = merged(&[va.clone(), vb.clone(), vc.clone()]);
        prop_assert_eq!(&abc, &merged(&[vc.clone(), vb.clone(), va.clone()]));
        prop_assert_eq!(&abc, &merged(&[vb.clone(), va.clone(), vc.clone(), va.clone()]));
        prop_assert_eq!(merged(std::slice::from_ref(&va)), merged(&[va.clone(), va.clone()]));
        let value = abc.unwrap();
        for p in &value.peers {
            prop_assert!(p.seq() <= 3, "an invalid record was stored");
        }
        // Per index: the highest valid seq seen in any input.
        for index in 1..=4u32 {
            let best = [&va, &vb, &vc].iter()
                .flat_map(|v| v.peers.iter())
                .filter(|p| p.index() == index && p.seq() <= 3)
                .map(|p| p.seq())
                .max();
            let held = value.peers.iter().find(|p| p.index() == index).map(|p| p.seq());
            prop_assert_eq!(held, best);
        }
    }
}

#[test]
fn peer_id_is_ordered() {
    // The store keys liveness by PeerId in BTreeMaps; make sure ordering is total.
    let a = PeerId::random();
    let b = PeerId::random();
    assert!(a < b || b < a || a == b);
}

#[test]
fn unanswered_pings_count_as_misses_without_a_driver_timer() {
    let config = StoreConfig {
        liveness: LivenessConfig {
            ping_interval_ms: 1_000,
            max_misses: 2,
            ..LivenessConfig::default()
        },
        ..StoreConfig::default()
    };
    let q = quorum(2, 1, 13);
    let mut s = store_with(config);
    s.register_namespace(q.namespace(1, None, NOW, NOW + HOUR), None, NOW)
        .unwrap();
    s.register_peer(reg(&q, q.peer(1, 1, 1, NOW + HOUR)), NOW)
        .unwrap();
    s.register_peer(reg(&q, q.peer(2, 1, 1, NOW + HOUR)), NOW)
        .unwrap();
    let mut now = NOW;
    let silent = q.peer_id(2);
    // Poll like a driver would: at every timeout; answer only member 1.
    while now < NOW + 10_000 {
        now = s.poll_timeout().unwrap().max(now);
        for t in s.due_pings(now) {
            if t.peer_id != silent {
                s.handle_pong(&t.peer_id, now);
            }
        }
        if s.is_unreachable(&silent) {
            break;
        }
    }
    assert!(s.is_unreachable(&silent));
    // First ping within 0.11 s, then two intervals of at most 1.1 s each.
    assert!(now - NOW <= 110 + 2 * 1_100, "took {} ms", now - NOW);
    assert!(!s.is_unreachable(&q.peer_id(1)));
}

#[test]
fn only_misses_of_due_pings_count_and_unreachable_peers_back_off() {
    let (q, mut s) = one_peer_pinged_every_second(0, 14);
    let peer = q.peer_id(1);
    // Failures nobody here asked for (no ping was due) change nothing,
    // however many arrive.
    for _ in 0..50 {
        assert!(!s.handle_ping_miss(&peer));
    }
    assert!(!s.is_unreachable(&peer));
    // Silent from now on: unreachable after two due pings, then pinged
    // ever less often, the wait doubling up to the 8 s cap.
    let mut now = NOW;
    let mut pings = Vec::new();
    while now < NOW + 60_000 {
        now = s.poll_timeout().unwrap().max(now);
        if !s.due_pings(now).is_empty() {
            pings.push(now);
        }
    }
    assert!(s.is_unreachable(&peer));
    let gaps: Vec<u64> = pings.windows(2).map(|w| w[1] - w[0]).collect();
    // 0.9-1.1 s while reachable, then about 2, 4 and 8 s, then 8 s.
    assert!(gaps[0] <= 1_100 && gaps[1] <= 1_100, "{gaps:?}");
    assert!((1_800..=2_200).contains(&gaps[2]), "{gaps:?}");
    assert!((3_600..=4_400).contains(&gaps[3]), "{gaps:?}");
    assert!(
        gaps[4..].iter().all(|g| (7_200..=8_000).contains(g)),
        "{gaps:?}"
    );
    assert!(pings.len() < 15, "{} pings in a minute", pings.len());
    // A pong brings it back, and back to the normal interval.
    s.handle_pong(&peer, now);
    assert!(!s.is_unreachable(&peer));
    let before = now;
    now = s.poll_timeout().unwrap();
    assert!(now - before <= 8_000);
    s.due_pings(now);
    assert!(s.poll_timeout().unwrap() - now <= 1_100);
}

/// The two phases a driver uses to verify off its event loop: precheck
/// (no curve arithmetic), prepare + verify anywhere, apply.
fn verify_checked(
    checked: &[Result<dht::CheckedPeer, StatusCode>],
) -> Vec<(dht::CheckedPeer, Result<(), StatusCode>)> {
    let limits = rendezvous_proto::Limits::DEFAULT;
    let mut out = Vec::new();
    let mut pending = Vec::new();
    let mut passed = Vec::new();
    for c in checked.iter().flatten() {
        match c.prepare(NOW, &limits) {
            Ok(p) => {
                pending.push(p);
                passed.push(c.clone());
            }
            Err(code) => out.push((c.clone(), Err(code))),
        }
    }
    let verdicts = rendezvous_proto::verify_batch(&pending, &mut ChaCha20Rng::seed_from_u64(9));
    out.extend(passed.into_iter().zip(verdicts));
    out
}

#[test]
fn precheck_then_apply_is_register_peers() {
    let q = quorum(6, 4, 21);
    let regs: Vec<PeerRegistration> = (1..=6)
        .map(|i| {
            let mut r = reg(&q, q.peer(i, 1, 1, NOW + HOUR));
            if i == 3 {
                r.record = with_seq_unsigned(r.record.clone(), 9); // bad signature
            }
            if i == 5 {
                r.remote = Some(q.peer_id(1)); // someone else's connection
            }
            r
        })
        .collect();
    let mut one = with_namespace(&q);
    let expected = one.register_peers(regs.clone(), NOW);
    assert_eq!(expected[2], Err(StatusCode::InvalidEnvelopeSignature));
    assert_eq!(expected[4], Err(StatusCode::PeerIdMismatch));

    let mut two = with_namespace(&q);
    let before = two.fingerprint();
    let checked = two.precheck_peers(regs, NOW);
    assert_eq!(two.fingerprint(), before, "precheck changed the store");
    assert_eq!(checked[4].as_ref().err(), Some(&StatusCode::PeerIdMismatch));
    let verified = verify_checked(&checked);
    let applied = two.apply_peers(verified, NOW);
    let mut got: Vec<Result<u64, StatusCode>> = Vec::new();
    let mut applied = applied.into_iter();
    for c in &checked {
        match c {
            Ok(_) => got.push(applied.next().unwrap()),
            Err(code) => got.push(Err(*code)),
        }
    }
    assert_eq!(got, expected);
    assert_eq!(two.fingerprint(), one.fingerprint());
}

#[test]
fn apply_rechecks_what_changed_since_the_precheck() {
    let q = quorum(4, 3, 22);
    let mut s = with_namespace(&q);
    // Two checks of the same slot pass against the same state; whichever
    // is applied second is a replay.
    let a = s.precheck_peers(vec![reg(&q, q.peer(1, 1, 2, NOW + HOUR))], NOW);
    let b = s.precheck_peers(vec![reg(&q, q.peer(1, 1, 2, NOW + HOUR))], NOW);
    assert_eq!(s.apply_peers(verify_checked(&a), NOW), vec![Ok(HOUR)]);
    assert_eq!(
        s.apply_peers(verify_checked(&b), NOW),
        vec![Err(StatusCode::StaleSequence)]
    );
    // The namespace moves to epoch 2 while a record of epoch 1 is being
    // verified: it is checked again against the new record and refused
    // (an older epoch than the namespace's: stale).
    let c = s.precheck_peers(vec![reg(&q, q.peer(2, 1, 1, NOW + HOUR))], NOW);
    let ns2 = q.namespace(2, Some("farmer"), NOW + 1, NOW + 2 * HOUR);
    assert!(s.register_namespace(ns2, Some(q.peer_id(1)), NOW).is_ok());
    let before = s.fingerprint();
    assert_eq!(
        s.apply_peers(verify_checked(&c), NOW),
        vec![Err(StatusCode::StaleEpoch)]
    );
    assert_eq!(s.fingerprint(), before);
    // A record that expired between the phases is refused.
    let d = s.precheck_peers(vec![reg(&q, q.peer(3, 2, 1, NOW + 10))], NOW);
    let verified = verify_checked(&d);
    assert_eq!(
        s.apply_peers(verified, NOW + 10),
        vec![Err(StatusCode::Expired)]
    );
    // A failed verdict is passed through and stores nothing.
    let e = s.precheck_peers(vec![reg(&q, q.peer(4, 2, 1, NOW + HOUR))], NOW);
    let before = s.fingerprint();
    let forced: Vec<_> = e
        .into_iter()
        .flatten()
        .map(|c| (c, Err(StatusCode::InvalidShareSignature)))
        .collect();
    assert_eq!(
        s.apply_peers(forced, NOW),
        vec![Err(StatusCode::InvalidShareSignature)]
    );
    assert_eq!(s.fingerprint(), before);
}

/// The liveness poisoning of protocol v1 (issue #12): anyone could make a
/// namespace of their own that seats a victim's PeerId and replicate a
/// record with unroutable addresses in its name; nodes then pinged those
/// addresses and stopped listing the victim in its real quorum. In v2 the
/// addresses must be signed by the PeerId's own key, so every path
/// refuses the record, and the victim stays listed with its own addresses.
#[test]
fn a_record_naming_someone_elses_peer_id_is_refused_on_every_path() {
    let q = quorum(4, 3, 31);
    let mut s = with_namespace(&q);
    let victim = q.peer_id(2);
    assert_eq!(
        s.register_peer(reg(&q, q.peer(2, 1, 1, NOW + HOUR)), NOW),
        Ok(HOUR)
    );
    // The attacker's 1-of-1 quorum lists the victim as its member, and its
    // share seats the victim's PeerId (all of that is the attacker's own).
    let attacker = TestQuorum::deal(1, 1, &mut ChaCha20Rng::seed_from_u64(32));
    let mut ns = attacker.namespace_unsigned(1, None, NOW, NOW + HOUR);
    ns.members = Some(vec![victim]);
    let message = ns.signing_bytes();
    let share = attacker.shares[0].secret.sign(&message);
    ns.signature = dkg::combine_signatures(1, 1, &[share]).unwrap().to_bytes();
    assert!(s.register_namespace(ns.clone(), None, NOW).is_ok());
    let seat = rendezvous_proto::seat::Seat::sign(
        attacker.quorum_key(),
        1,
        victim,
        &attacker.shares[0].secret,
    );
    let unroutable: Vec<rendezvous_proto::Multiaddr> =
        vec!["/ip4/192.0.2.1/tcp/9".parse().unwrap()];
    // Its envelope signed by the attacker's key: another PeerId.
    let own_key = Keypair::generate_ed25519();
    let by_attacker = PeerRecord::sign(seat.clone(), unroutable.clone(), 9, NOW + HOUR, &own_key);
    // The victim's key named in the envelope, the signature the attacker's.
    let mut claimed = PeerRecord::sign(
        seat.clone(),
        unroutable.clone(),
        9,
        NOW + HOUR,
        &q.identities[1],
    );
    claimed.envelope.signature = by_attacker.envelope.signature.clone();
    for (record, code) in [
        (by_attacker, StatusCode::PeerIdMismatch),
        (claimed, StatusCode::InvalidEnvelopeSignature),
    ] {
        // A kad PUT or GET answer (no connection to compare with)...
        let value = NamespaceValue {
            namespace: ns.clone(),
            peers: vec![record.clone()],
        };
        let report = s.merge_value(value, NOW);
        assert_eq!(report.peers_rejected, vec![(1, code)]);
        // ...and a direct registration, even over the victim's own
        // connection (which the attacker does not have anyway).
        let direct = PeerRegistration {
            record,
            remote: Some(victim),
        };
        assert_eq!(s.register_peer(direct, NOW), Err(code));
    }
    // The victim is still listed in its quorum, with its own address, and
    // pinged there only.
    let answer = s.discover(&q.quorum_key(), 0, None, NOW).unwrap();
    let listed = answer
        .peers
        .iter()
        .find(|p| p.record.peer_id() == victim)
        .expect("the victim is listed");
    assert_eq!(listed.record, q.peer(2, 1, 1, NOW + HOUR));
    let pinged: Vec<_> = s
        .due_pings(NOW + 1_000)
        .into_iter()
        .filter(|t| t.peer_id == victim)
        .collect();
    assert_eq!(pinged.len(), 1);
    assert_eq!(pinged[0].addrs, q.peer(2, 1, 1, NOW + HOUR).addrs());
    assert!(!s.is_unreachable(&victim));
}

/// A refresh of a seat this node verified costs no pairing: its job
/// checks the envelope only. A new seat is checked in full.
#[test]
fn a_known_seat_is_not_verified_again() {
    let q = quorum(4, 3, 33);
    let mut s = with_namespace(&q);
    let first = s.precheck_peers(vec![reg(&q, q.peer(1, 1, 1, NOW + HOUR))], NOW);
    let first = first.into_iter().next().unwrap().unwrap();
    assert!(!first.seat_known());
    assert!(first
        .prepare(NOW, &rendezvous_proto::Limits::DEFAULT)
        .unwrap()
        .checks_seat());
    assert_eq!(
        s.register_peer(reg(&q, q.peer(1, 1, 1, NOW + HOUR)), NOW),
        Ok(HOUR)
    );
    // The refresh: same seat, new envelope.
    let refresh = s.precheck_peers(vec![reg(&q, q.peer(1, 1, 2, NOW + HOUR))], NOW);
    let refresh = refresh.into_iter().next().unwrap().unwrap();
    assert!(refresh.seat_known());
    let pending = refresh
        .prepare(NOW, &rendezvous_proto::Limits::DEFAULT)
        .unwrap();
    assert!(!pending.checks_seat());
    // A known seat does not excuse a bad envelope.
    let bad = with_seq_unsigned(q.peer(1, 1, 3, NOW + HOUR), 4);
    assert_eq!(
        s.register_peer(reg(&q, bad), NOW),
        Err(StatusCode::InvalidEnvelopeSignature)
    );
    // After an Unregister the seat is still remembered (by hash).
    assert!(s.unregister(&q.quorum_key(), 1, &q.peer_id(1), NOW).is_ok());
    let again = s.precheck_peers(vec![reg(&q, q.peer(1, 1, 5, NOW + HOUR))], NOW);
    assert!(again.into_iter().next().unwrap().unwrap().seat_known());
}

/// A store holding a legitimate namespace of 1,024 members, each listing
/// 16 addresses of 64 bytes (about 1.5 MB of records, more than one 1 MiB
/// frame), with every member registered.
fn big_namespace(seed: u8) -> (NamespaceStore, rendezvous_proto::QuorumKey) {
    use rendezvous_proto::testkit::BulkQuorum;
    use rendezvous_proto::Multiaddr;
    let identities: Vec<Keypair> = (0..1_024u32)
        .map(|i| {
            let mut bytes = [seed; 32];
            bytes[..4].copy_from_slice(&i.to_be_bytes());
            Keypair::ed25519_from_bytes(bytes).unwrap()
        })
        .collect();
    let ids: Vec<PeerId> = identities.iter().map(|k| k.public().to_peer_id()).collect();
    let mut rng = ChaCha20Rng::seed_from_u64(u64::from(seed));
    let quorum = BulkQuorum::deal(&ids, 683, 1, NOW, NOW + 2 * HOUR, &mut rng).unwrap();
    let mut s = store();
    s.register_namespace(quorum.namespace().clone(), None, NOW)
        .expect("the namespace is valid");
    let addrs: Vec<Multiaddr> = (0..16)
        .map(|a| {
            // dns4 (1 byte) + length (1) + 59-byte name + tcp (3): 64 bytes.
            let host = format!("{a:02}{}", "h".repeat(45)) + ".example.net";
            format!("/dns4/{host}/tcp/4001").parse().unwrap()
        })
        .collect();
    assert!(addrs.iter().all(|a| a.to_vec().len() == 64));
    let records: Vec<PeerRecord> = identities
        .iter()
        .zip(1u32..)
        .map(|(identity, i)| {
            let seat = quorum.peer(i, identity, 1, NOW + HOUR).unwrap().seat;
            PeerRecord::sign(seat, addrs.clone(), 1, NOW + HOUR, identity)
        })
        .collect();
    let total: usize = records.iter().map(|r| r.encode().len()).sum();
    assert!(total > 1_200_000, "{total} bytes of records");
    for chunk in records.chunks(256) {
        let regs = chunk
            .iter()
            .map(|r| PeerRegistration {
                record: r.clone(),
                remote: None,
            })
            .collect();
        assert!(s.register_peers(regs, NOW).iter().all(Result::is_ok));
    }
    (s, quorum.quorum_key())
}

/// #13 item 5: a legitimate namespace of 1,024 members, each listing 16
/// addresses of 64 bytes, holds about 1.5 MB of records: more than one
/// 1 MiB frame. Every answer is cut to a byte budget that fits the frame
/// cap, with a cookie for the rest; paging through gets every member.
#[test]
fn unbounded_answers_are_paged_to_fit_the_frame_cap() {
    use rendezvous_proto::Response;
    let (s, quorum_key) = big_namespace(7);
    let mut seen = std::collections::BTreeSet::new();
    let mut cookie: Option<Cookie> = None;
    let mut pages = 0;
    loop {
        let answer = s.discover(&quorum_key, 0, cookie.as_ref(), NOW).unwrap();
        let frame = Response::Discovered(answer.clone()).encode();
        assert!(frame.len() <= rendezvous_proto::Limits::DEFAULT.max_message_bytes);
        if answer.peers.is_empty() {
            break;
        }
        pages += 1;
        for p in &answer.peers {
            assert!(
                seen.insert(p.record.index()),
                "index {} twice",
                p.record.index()
            );
        }
        cookie = Some(answer.cookie);
    }
    assert_eq!(seen.len(), 1_024);
    assert!(pages >= 2, "{pages} page(s)");
}

// ----- #13 item 6: store exhaustion ------------------------------------------

/// Quotas used to count entries only: 64 registrations of a source could
/// be 64 records of any size. They now count bytes too (in all and per
/// source), and a refresh frees what it replaces.
#[test]
fn store_exhaustion_quotas_count_bytes() {
    let q = quorum(4, 3, 61);
    let ns = q.namespace(1, Some("farmer"), NOW, NOW + 2 * HOUR);
    let ns_len = ns.encode().len();
    let peer_len = q.peer(1, 1, 1, NOW + HOUR).encode().len();
    let mut config = StoreConfig::default();
    // Member 1 (the namespace's registrant) has room for its namespace
    // and not quite one peer record.
    config.quotas.max_bytes_per_source = ns_len + peer_len - 1;
    let mut s = store_with(config);
    assert!(s.register_namespace(ns, Some(q.peer_id(1)), NOW).is_ok());
    assert_peer_rejected(
        &mut s,
        reg(&q, q.peer(1, 1, 1, NOW + HOUR)),
        StatusCode::QuotaExceeded,
    );
    assert_eq!(s.source_count(&q.peer_id(1)), 1, "entries had room");
    // Others have their own room; a refresh frees what it replaces.
    assert!(s
        .register_peer(reg(&q, q.peer(2, 1, 1, NOW + HOUR)), NOW)
        .is_ok());
    let stored = s.stored_bytes();
    assert_eq!(stored, ns_len + peer_len);
    assert!(s
        .register_peer(reg(&q, q.peer(2, 1, 2, NOW + HOUR)), NOW)
        .is_ok());
    assert_eq!(s.stored_bytes(), stored);
    // The total is a quota too.
    let mut config = StoreConfig::default();
    config.quotas.max_bytes = ns_len + peer_len;
    let mut s = store_with(config);
    let ns = q.namespace(1, Some("farmer"), NOW, NOW + 2 * HOUR);
    assert!(s.register_namespace(ns, Some(q.peer_id(1)), NOW).is_ok());
    assert!(s
        .register_peer(reg(&q, q.peer(2, 1, 1, NOW + HOUR)), NOW)
        .is_ok());
    assert_peer_rejected(
        &mut s,
        reg(&q, q.peer(3, 1, 1, NOW + HOUR)),
        StatusCode::QuotaExceeded,
    );
    // Everything held is released when it goes.
    s.expire(NOW + 3 * HOUR);
    assert_eq!(s.stored_bytes(), 0);
}

/// Replicated records used to count against nothing: any node could fill
/// a store with valid records of its own quorums. What one node
/// replicates now counts against that node.
#[test]
fn store_exhaustion_replicated_data_is_limited_per_sending_node() {
    let q = quorum(4, 3, 62);
    let ns = q.namespace(1, Some("farmer"), NOW, NOW + 2 * HOUR);
    let ns_len = ns.encode().len();
    let peer_len = q.peer(1, 1, 1, NOW + HOUR).encode().len();
    let mut config = StoreConfig::default();
    config.quotas.max_replicated_bytes_per_node = ns_len + 2 * peer_len + peer_len / 2;
    let mut s = store_with(config);
    let value = NamespaceValue {
        namespace: ns,
        peers: (1..=4).map(|i| q.peer(i, 1, 1, NOW + HOUR)).collect(),
    };
    let (a, b) = (PeerId::random(), PeerId::random());
    let report = s.merge_value_from(value.clone(), Some(a), NOW);
    assert!(report.namespace_updated);
    assert_eq!(report.peers_stored, 2);
    assert_eq!(
        report.peers_rejected,
        vec![
            (3, StatusCode::QuotaExceeded),
            (4, StatusCode::QuotaExceeded)
        ]
    );
    // Another node brings the rest.
    let report = s.merge_value_from(value, Some(b), NOW);
    assert_eq!(report.peers_stored, 2);
    assert_eq!(s.stats().peer_records, 4);
}

/// The eviction candidate search could walk every stored namespace (about
/// a million entries) before any verification. It now looks at the 64
/// soonest to expire: a store full of live namespaces refuses a new one
/// without walking the rest.
#[test]
fn store_exhaustion_eviction_search_is_bounded() {
    let mut config = StoreConfig::default();
    config.quotas.max_namespaces = 66;
    let mut s = store_with(config);
    for i in 0..66u64 {
        let q = quorum(1, 1, 1_000 + i);
        // Expiring in registration order; the last one has no live peer.
        let ns = q.namespace(1, None, NOW, NOW + HOUR + i);
        assert!(s.register_namespace(ns, None, NOW).is_ok());
        if i < 65 {
            assert!(s
                .register_peer(reg(&q, q.peer(1, 1, 1, NOW + HOUR)), NOW)
                .is_ok());
        }
    }
    let q = quorum(1, 1, 2_000);
    let before = s.fingerprint();
    assert_eq!(
        s.register_namespace(q.namespace(1, None, NOW, NOW + HOUR), None, NOW),
        Err(StatusCode::QuotaExceeded),
        "the 64 soonest to expire are live: refused"
    );
    assert_eq!(s.fingerprint(), before);
    // Once one of those has no live peer, it makes room.
    let mut config = StoreConfig::default();
    config.quotas.max_namespaces = 2;
    let mut s = store_with(config);
    let (q1, q2) = (quorum(1, 1, 3_000), quorum(1, 1, 3_001));
    assert!(s
        .register_namespace(q1.namespace(1, None, NOW, NOW + HOUR), None, NOW)
        .is_ok());
    assert!(s
        .register_namespace(q2.namespace(1, None, NOW, NOW + HOUR + 1), None, NOW)
        .is_ok());
    assert!(s
        .register_peer(reg(&q2, q2.peer(1, 1, 1, NOW + HOUR)), NOW)
        .is_ok());
    assert!(s
        .register_namespace(q.namespace(1, None, NOW, NOW + HOUR), None, NOW)
        .is_ok());
    assert!(
        s.namespace(&q1.quorum_key()).is_none(),
        "the one without peers went"
    );
}

/// #13 item 5: a legitimate 1,024-member namespace whose members list 16
/// addresses of 64 bytes is about 1.3 MB, over the 1 MiB message cap, so
/// it could not be replicated. Its value now goes as several pages, each
/// under the cap, and a replica that merges them holds every record.
#[test]
fn unbounded_answers_a_namespace_over_the_cap_replicates_in_pages() {
    let (s, quorum_key) = big_namespace(9);
    let cap = rendezvous_proto::Limits::DEFAULT.max_message_bytes;
    let whole = s.namespace_value(&quorum_key, NOW).unwrap().encode();
    assert!(whole.len() > cap, "{} bytes: not over the cap", whole.len());
    let pages = s.namespace_value_pages(&quorum_key, NOW, cap);
    assert!(pages.len() >= 2);
    let mut replica = store();
    for page in &pages {
        let bytes = page.encode();
        assert!(bytes.len() <= cap, "a page of {} bytes", bytes.len());
        let decoded = NamespaceValue::decode(&bytes, &rendezvous_proto::Limits::DEFAULT).unwrap();
        let report = replica.merge_value(decoded, NOW);
        assert!(report.peers_rejected.is_empty(), "{report:?}");
    }
    assert_eq!(replica.stats().peer_records, 1_024);
    // A namespace that fits is one page, as before.
    let small = quorum_with(4);
    assert_eq!(small.0.namespace_value_pages(&small.1, NOW, cap).len(), 1);
}

/// A store holding a 4-member namespace with every member registered.
fn quorum_with(n: u32) -> (NamespaceStore, rendezvous_proto::QuorumKey) {
    let q = quorum(n, n.div_ceil(2), 63);
    let mut s = with_namespace(&q);
    for i in 1..=n {
        assert!(s
            .register_peer(reg(&q, q.peer(i, 1, 1, NOW + HOUR)), NOW)
            .is_ok());
    }
    (s, q.quorum_key())
}

/// #16: an unreachable peer is still pinged every interval for its
/// `steady_retries`, then backs off; every change of listing (silent,
/// answered, silent again, registered anew) is reported once, in order.
#[test]
fn steady_retries_then_backoff_and_every_listing_change_is_reported() {
    let (q, mut s) = one_peer_pinged_every_second(3, 15);
    let peer = q.peer_id(1);
    let mut now = NOW;
    let mut pings = Vec::new();
    while now < NOW + 30_000 {
        now = s.poll_timeout().unwrap().max(now);
        if !s.due_pings(now).is_empty() {
            pings.push(now);
        }
    }
    assert!(s.is_unreachable(&peer));
    assert_eq!(s.take_listing_changes(), vec![(peer, false)]);
    let gaps: Vec<u64> = pings.windows(2).map(|w| w[1] - w[0]).collect();
    // Two intervals to become unreachable, three steady retries, then
    // about 2, 4, 8 s.
    assert!(gaps[..5].iter().all(|g| *g <= 1_100), "{gaps:?}");
    assert!((1_800..=2_200).contains(&gaps[5]), "{gaps:?}");
    assert!((3_600..=4_400).contains(&gaps[6]), "{gaps:?}");
    // It answers: listed again, reported.
    s.handle_pong(&peer, now);
    assert_eq!(s.take_listing_changes(), vec![(peer, true)]);
    // Silent again, then it registers anew while unreachable.
    while !s.is_unreachable(&peer) {
        now = s.poll_timeout().unwrap().max(now);
        s.due_pings(now);
    }
    assert_eq!(s.take_listing_changes(), vec![(peer, false)]);
    s.register_peer(reg(&q, q.peer(1, 1, 2, now + HOUR)), now)
        .unwrap();
    assert!(!s.is_unreachable(&peer));
    assert_eq!(s.take_listing_changes(), vec![(peer, true)]);
    assert!(s.take_listing_changes().is_empty(), "reported once");
}

/// A store holding member 1 of a fresh quorum, pinged every second,
/// unreachable after 2 misses, backing off up to 8 s after `steady`
/// steady retries.
fn one_peer_pinged_every_second(steady: u32, seed: u64) -> (TestQuorum, NamespaceStore) {
    let config = StoreConfig {
        liveness: LivenessConfig {
            ping_interval_ms: 1_000,
            max_misses: 2,
            max_backoff_ms: 8_000,
            steady_retries: steady,
        },
        ..StoreConfig::default()
    };
    let q = quorum(2, 1, seed);
    let mut s = store_with(config);
    s.register_namespace(q.namespace(1, None, NOW, NOW + HOUR), None, NOW)
        .unwrap();
    s.register_peer(reg(&q, q.peer(1, 1, 1, NOW + HOUR)), NOW)
        .unwrap();
    (q, s)
}
