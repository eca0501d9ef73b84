//! Handovers at a rendezvous (#14 item 3, PROTOCOL.md 15): stored under
//! the old key, the old namespace retired (served as the handover,
//! registrations refused `NamespaceRetired`), two handovers of one key
//! converging whatever order they arrive in, and the server's paths:
//! `PublishHandover`, `Discover`, kad values, lookups, replication and
//! persistence.

use dht::{
    AddressPolicy, HandoverValue, KadStore, NamespaceStore, NamespaceValue, Output,
    PeerRegistration, ReplyId, Server, ServerConfig, StoreConfig, ValueError, VerifyJob,
};
use libp2p_kad::store::RecordStore;
use libp2p_kad::RecordKey;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::{HandoverRecord, PeerId, Request, Response, StatusCode};

const NOW: u64 = 1_700_000_000_000;
const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;

fn quorum(seed: u64) -> TestQuorum {
    TestQuorum::deal(4, 3, &mut ChaCha20Rng::seed_from_u64(seed))
}

fn store() -> NamespaceStore {
    NamespaceStore::new(StoreConfig::default(), [7; 32])
}

/// A store holding `q`'s namespace and its four members.
fn with_quorum(q: &TestQuorum) -> NamespaceStore {
    let mut s = store();
    let ns = q.namespace(1, Some("farmer"), NOW, NOW + 2 * HOUR);
    s.register_namespace(ns, Some(q.peer_id(1)), NOW).unwrap();
    for i in 1..=4 {
        let record = q.peer(i, 1, 1, NOW + HOUR);
        let registration = PeerRegistration {
            record,
            remote: Some(q.peer_id(i)),
        };
        s.register_peer(registration, NOW).unwrap();
    }
    s
}

fn handover(from: &TestQuorum, to: &TestQuorum, issued_at_ms: u64) -> HandoverRecord {
    from.handover(to.quorum_key(), issued_at_ms, NOW + DAY)
}

#[test]
fn a_valid_handover_retires_the_old_namespace() {
    let (a, b) = (quorum(1), quorum(2));
    let mut s = with_quorum(&a);
    assert_eq!(s.stats().peer_records, 4);
    let h = handover(&a, &b, NOW);
    assert_eq!(
        s.publish_handover(h.clone(), Some(PeerId::random()), NOW),
        Ok(DAY)
    );
    // Stored under the old key; the old namespace and its peers are gone,
    // and so is its kind entry.
    assert_eq!(s.handover(&a.quorum_key(), NOW), Some(&h));
    assert!(s.is_retired(&a.quorum_key()));
    assert!(s.namespace(&a.quorum_key()).is_none());
    assert_eq!(s.stats().namespaces, 0);
    assert_eq!(s.stats().peer_records, 0);
    assert!(s.kinds().is_empty());
    assert_eq!(
        s.discover(&a.quorum_key(), 0, None, NOW).unwrap_err(),
        StatusCode::UnknownNamespace
    );
    assert_eq!(
        s.handover_key_for(&dht::namespace_key(&a.quorum_key())),
        Some(a.quorum_key())
    );

    // Registrations under the retired key are refused with their own code
    // and change nothing, even correctly signed and newer.
    let before = s.fingerprint();
    let newer = a.namespace(2, Some("farmer"), NOW + 1, NOW + 2 * HOUR);
    assert_eq!(
        s.register_namespace(newer, Some(a.peer_id(1)), NOW),
        Err(StatusCode::NamespaceRetired)
    );
    let peer = PeerRegistration {
        record: a.peer(1, 1, 2, NOW + HOUR),
        remote: Some(a.peer_id(1)),
    };
    assert_eq!(
        s.register_peer(peer, NOW),
        Err(StatusCode::NamespaceRetired)
    );
    // Nor does replication bring the old namespace back.
    let value = NamespaceValue {
        namespace: a.namespace(3, Some("farmer"), NOW + 2, NOW + 2 * HOUR),
        peers: vec![a.peer(1, 3, 1, NOW + HOUR)],
    };
    let report = s.merge_value(value, NOW);
    assert_eq!(
        report.namespace_rejected,
        Some(StatusCode::NamespaceRetired)
    );
    assert_eq!(report.peers_stored, 0);
    assert_eq!(s.fingerprint(), before);

    // The new key is an ordinary namespace.
    let ns_b = b.namespace(1, Some("farmer"), NOW, NOW + 2 * HOUR);
    assert!(s.register_namespace(ns_b, Some(b.peer_id(1)), NOW).is_ok());
}

#[test]
fn invalid_handovers_are_refused_and_change_nothing() {
    let (a, b, m) = (quorum(1), quorum(2), quorum(9));
    let mut s = with_quorum(&a);
    let before = s.fingerprint();
    let mut forged = handover(&a, &b, NOW);
    forged.signature = m.threshold_sign(&forged.signing_bytes());
    assert_eq!(
        s.publish_handover(forged, None, NOW),
        Err(StatusCode::InvalidHandoverSignature)
    );
    let to_itself = a.handover(a.quorum_key(), NOW, NOW + DAY);
    assert_eq!(
        s.publish_handover(to_itself, None, NOW),
        Err(StatusCode::InvalidParameters)
    );
    let expired = a.handover(b.quorum_key(), NOW - 2 * DAY, NOW - DAY);
    assert_eq!(
        s.publish_handover(expired, None, NOW),
        Err(StatusCode::Expired)
    );
    assert_eq!(s.fingerprint(), before);
    assert!(!s.is_retired(&a.quorum_key()));

    // The same handover twice, or one that loses the order: StaleHandover.
    let h = handover(&a, &b, NOW);
    s.publish_handover(h.clone(), None, NOW).unwrap();
    let after = s.fingerprint();
    assert_eq!(
        s.publish_handover(h, None, NOW),
        Err(StatusCode::StaleHandover)
    );
    let older = handover(&a, &quorum(3), NOW - 1);
    assert_eq!(
        s.publish_handover(older, None, NOW),
        Err(StatusCode::StaleHandover)
    );
    assert_eq!(s.fingerprint(), after);
}

#[test]
fn two_handovers_of_one_key_converge_whatever_the_order() {
    let (a, b, c) = (quorum(1), quorum(2), quorum(3));
    // Different times: the later wins. The same time: the larger encoding.
    let pairs = [
        (handover(&a, &b, NOW), handover(&a, &c, NOW + 1)),
        (handover(&a, &b, NOW), handover(&a, &c, NOW)),
    ];
    for (x, y) in pairs {
        let winner = if y.supersedes(&x) { &y } else { &x };
        let mut first = with_quorum(&a);
        let mut second = store();
        // One replica gets them directly, x first; the other replicated
        // (kad values), y first.
        first.publish_handover(x.clone(), None, NOW).unwrap();
        let _ = first.publish_handover(y.clone(), None, NOW);
        let r = second.merge_handover(y.clone(), Some(PeerId::random()), NOW);
        assert!(r.handover_updated);
        let r = second.merge_handover(x.clone(), Some(PeerId::random()), NOW);
        assert_eq!(r.handover_rejected, None);
        assert_eq!(first.handover(&a.quorum_key(), NOW), Some(winner));
        assert_eq!(second.handover(&a.quorum_key(), NOW), Some(winner));
    }
}

#[test]
fn a_retirement_ends_when_its_handover_expires() {
    let (a, b) = (quorum(1), quorum(2));
    let mut s = with_quorum(&a);
    let h = a.handover(b.quorum_key(), NOW, NOW + HOUR);
    s.publish_handover(h, None, NOW).unwrap();
    assert!(s.poll_timeout().is_some_and(|t| t <= NOW + HOUR));
    let later = NOW + HOUR;
    assert!(s.expire(later) >= 1);
    assert!(!s.is_retired(&a.quorum_key()));
    assert_eq!(s.handover(&a.quorum_key(), later), None);
    let ns = a.namespace(1, None, later, later + HOUR);
    assert!(s.register_namespace(ns, None, later).is_ok());
}

#[test]
fn a_handover_takes_a_namespace_slot_unless_it_replaces_one() {
    let (a, b, c, d) = (quorum(1), quorum(2), quorum(3), quorum(4));
    let config = StoreConfig {
        quotas: dht::Quotas {
            max_namespaces: 1,
            max_registrations_per_source: 2,
            ..dht::Quotas::default()
        },
        ..StoreConfig::default()
    };
    let mut s = NamespaceStore::new(config, [7; 32]);
    let ns = a.namespace(1, None, NOW, NOW + HOUR);
    s.register_namespace(ns, None, NOW).unwrap();
    // The store is full: a handover of a key it does not hold is refused...
    let before = s.fingerprint();
    assert_eq!(
        s.publish_handover(handover(&c, &d, NOW), None, NOW),
        Err(StatusCode::QuotaExceeded)
    );
    assert_eq!(s.fingerprint(), before);
    // ...one that retires the namespace it holds takes its slot.
    let publisher = PeerId::random();
    assert!(s
        .publish_handover(handover(&a, &b, NOW), Some(publisher), NOW)
        .is_ok());
    assert_eq!(s.stats().namespaces, 0);
    assert_eq!(s.handover_count(), 1);
    assert_eq!(s.source_count(&publisher), 1);
    // A superseding one replaces it (a new holder, no new slot).
    let other = PeerId::random();
    assert!(s
        .publish_handover(handover(&a, &c, NOW + 1), Some(other), NOW)
        .is_ok());
    assert_eq!(s.handover_count(), 1);
    assert_eq!(s.source_count(&publisher), 0);
    assert_eq!(s.source_count(&other), 1);
}

// ----- the server core ---------------------------------------------------------

fn local() -> ServerConfig {
    ServerConfig {
        dial_policy: AddressPolicy::LOCAL,
        persist_period_ms: 1,
        ..ServerConfig::default()
    }
}

fn run(job: VerifyJob) -> dht::VerifyDone {
    job.run(&mut ChaCha20Rng::seed_from_u64(1), None)
}

/// Runs every job; returns the replies and the other outputs.
fn settle(s: &mut Server, now: u64) -> (Vec<(ReplyId, Response)>, Vec<Output>) {
    let (mut replies, mut other) = (Vec::new(), Vec::new());
    loop {
        let mut jobs = Vec::new();
        while let Some(o) = s.poll_output() {
            match o {
                Output::Reply { to, response } => replies.push((to, response)),
                Output::Verify(job) => jobs.push(job),
                o => other.push(o),
            }
        }
        if jobs.is_empty() {
            return (replies, other);
        }
        for job in jobs {
            s.handle_verified(now, run(job));
        }
    }
}

fn server_with(q: &TestQuorum) -> Server {
    Server::new(local(), with_quorum(q))
}

fn discover(s: &mut Server, q: &TestQuorum, reply: u64) -> Response {
    let request = Request::Discover {
        quorum_key: q.quorum_key(),
        limit: 0,
        cookie: None,
    };
    s.handle_request(NOW, PeerId::random(), ReplyId(reply), request);
    let (replies, _) = settle(s, NOW);
    replies
        .into_iter()
        .find(|(to, _)| *to == ReplyId(reply))
        .map(|(_, r)| r)
        .expect("an answer")
}

#[test]
fn a_published_handover_is_served_replicated_and_persisted() {
    let (a, b) = (quorum(1), quorum(2));
    let mut s = server_with(&a);
    assert!(matches!(discover(&mut s, &a, 1), Response::Discovered(_)));
    let h = handover(&a, &b, NOW);
    // Anybody may publish it: the signature authorizes it.
    s.handle_request(
        NOW,
        PeerId::random(),
        ReplyId(2),
        Request::PublishHandover(h.clone()),
    );
    let (replies, mut other) = settle(&mut s, NOW);
    assert_eq!(
        replies,
        vec![(ReplyId(2), Response::Registered { ttl_ms: DAY })]
    );
    assert_eq!(discover(&mut s, &a, 3), Response::HandedOver(h.clone()));
    // Replicated as the key's kad value, persisted, its namespace removed
    // from disk.
    s.flush(NOW);
    other.extend(settle(&mut s, NOW).1);
    let value = HandoverValue {
        handover: h.clone(),
    }
    .encode();
    assert!(other.iter().any(|o| matches!(o,
        Output::Replicate { quorum_key, value: v, .. }
            if *quorum_key == a.quorum_key() && *v == value)));
    assert!(other.iter().any(|o| matches!(o,
        Output::Persist(updates) if updates.contains(&(a.quorum_key(), None)))));
    assert!(other.iter().any(|o| matches!(o,
        Output::PersistHandovers(hs) if hs == &vec![(a.quorum_key(), h.clone())])));
    // kad serves it under the old key.
    let kad = KadStore::new(s, Box::new(|| NOW));
    let record = kad
        .get(&RecordKey::new(&dht::namespace_key(&a.quorum_key())))
        .expect("the handover is the retired key's value");
    assert_eq!(record.value, value);
    assert!(kad.records().any(|r| r.value == value));
}

#[test]
fn registering_under_a_retired_key_is_refused() {
    let (a, b) = (quorum(1), quorum(2));
    let mut s = server_with(&a);
    s.handle_request(
        NOW,
        PeerId::random(),
        ReplyId(1),
        Request::PublishHandover(handover(&a, &b, NOW)),
    );
    settle(&mut s, NOW);
    let ns = a.namespace(2, Some("farmer"), NOW + 1, NOW + 2 * HOUR);
    s.handle_request(
        NOW,
        a.peer_id(1),
        ReplyId(2),
        Request::RegisterNamespace(ns),
    );
    s.handle_request(
        NOW,
        a.peer_id(2),
        ReplyId(3),
        Request::RegisterPeer(a.peer(2, 1, 5, NOW + HOUR)),
    );
    s.flush(NOW);
    let (mut replies, _) = settle(&mut s, NOW);
    replies.sort_by_key(|(to, _)| *to);
    assert_eq!(
        replies,
        vec![
            (ReplyId(2), Response::Rejected(StatusCode::NamespaceRetired)),
            (ReplyId(3), Response::Rejected(StatusCode::NamespaceRetired)),
        ]
    );
}

#[test]
fn a_forged_handover_is_refused_and_its_sender_penalized() {
    let (a, b, m) = (quorum(1), quorum(2), quorum(9));
    let mut s = server_with(&a);
    let mut forged = handover(&a, &b, NOW);
    forged.signature = m.threshold_sign(&forged.signing_bytes());
    let forger = PeerId::random();
    s.handle_request(NOW, forger, ReplyId(1), Request::PublishHandover(forged));
    let (replies, _) = settle(&mut s, NOW);
    assert_eq!(
        replies,
        vec![(
            ReplyId(1),
            Response::Rejected(StatusCode::InvalidHandoverSignature)
        )]
    );
    assert!(matches!(discover(&mut s, &a, 2), Response::Discovered(_)));
    // Penalized like any sender of an invalid signature.
    s.handle_request(
        NOW,
        forger,
        ReplyId(3),
        Request::PublishHandover(handover(&a, &b, NOW)),
    );
    let (replies, _) = settle(&mut s, NOW);
    assert_eq!(
        replies,
        vec![(ReplyId(3), Response::Rejected(StatusCode::QuotaExceeded))]
    );
}

#[test]
fn a_handover_value_from_another_node_retires_the_key_and_answers_lookups() {
    let (a, b) = (quorum(1), quorum(2));
    let h = handover(&a, &b, NOW);
    let value = HandoverValue {
        handover: h.clone(),
    }
    .encode();
    let key = dht::namespace_key(&a.quorum_key());

    // Under another key than its old key's: refused.
    let mut s = server_with(&a);
    assert_eq!(
        s.handle_value(NOW, None, &dht::namespace_key(&b.quorum_key()), &value),
        Err(ValueError::WrongKey)
    );
    // A node holding the namespace merges it and retires it.
    s.handle_value(NOW, Some(PeerId::random()), &key, &value)
        .unwrap();
    let (_, other) = settle(&mut s, NOW);
    assert!(other.iter().any(|o| matches!(o,
        Output::Merged { report, .. } if report.handover_updated)));
    assert_eq!(discover(&mut s, &a, 1), Response::HandedOver(h.clone()));

    // A node that holds nothing looks the key up; the handover found
    // answers the discover.
    let mut fresh = Server::new(local(), store());
    let request = Request::Discover {
        quorum_key: a.quorum_key(),
        limit: 0,
        cookie: None,
    };
    fresh.handle_request(NOW, PeerId::random(), ReplyId(7), request);
    let (replies, other) = settle(&mut fresh, NOW);
    assert!(replies.is_empty());
    assert!(other.iter().any(|o| matches!(o, Output::Lookup { .. })));
    fresh
        .handle_value(NOW, Some(PeerId::random()), &key, &value)
        .unwrap();
    let (replies, other) = settle(&mut fresh, NOW);
    assert_eq!(replies, vec![(ReplyId(7), Response::HandedOver(h.clone()))]);
    assert!(other.iter().any(|o| matches!(o, Output::LookupDone { .. })));

    // A forged handover value gets its sender penalized.
    let mut forged = handover(&a, &b, NOW + 5);
    forged.signature = quorum(9).threshold_sign(&forged.signing_bytes());
    let liar = PeerId::random();
    let mut t = server_with(&a);
    t.handle_value(
        NOW,
        Some(liar),
        &key,
        &HandoverValue { handover: forged }.encode(),
    )
    .unwrap();
    let (_, other) = settle(&mut t, NOW);
    assert!(other.iter().any(|o| matches!(o,
        Output::Merged { report, .. }
            if report.handover_rejected == Some(StatusCode::InvalidHandoverSignature))));
    assert_eq!(
        t.handle_value(NOW, Some(liar), &key, &value),
        Err(ValueError::Penalized)
    );
    assert!(t.store().namespace(&a.quorum_key()).is_some());
}
