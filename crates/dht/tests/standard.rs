//! The standard `/rendezvous/1.0.0` DISCOVER decided by the store and the
//! server core (PROTOCOL.md 16): which members, pages, cookies, TTLs;
//! REGISTER refused; nothing a standard request does changes the state.

use dht::{
    NamespaceStore, Output, PeerRegistration, ReplyId, Server, ServerConfig, StandardAnswer,
    StandardRefusal, StandardRequest, StoreConfig,
};
use libp2p_identity::PeerId;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::PeerRecord;

const NOW: u64 = 1_700_000_000_000;
const HOUR: u64 = 3_600_000;

fn quorum(n: u32, seed: u64) -> TestQuorum {
    TestQuorum::deal(n, n.div_ceil(2), &mut ChaCha20Rng::seed_from_u64(seed))
}

/// Member `i`'s record, with its standard record.
fn std_peer(q: &TestQuorum, i: u32, seq: u64) -> PeerRecord {
    q.peer(i, 1, seq, NOW + HOUR)
        .with_standard(&q.identities[i as usize - 1])
}

fn register(s: &mut NamespaceStore, q: &TestQuorum, kind: &str, records: Vec<PeerRecord>) {
    if s.namespace(&q.quorum_key()).is_none() {
        let ns = q.namespace(1, Some(kind), NOW, NOW + 2 * HOUR);
        s.register_namespace(ns, Some(q.peer_id(1)), NOW).unwrap();
    }
    let regs = records
        .into_iter()
        .map(|record| {
            let remote = Some(q.peer_id(record.index()));
            PeerRegistration { record, remote }
        })
        .collect();
    for r in s.register_peers(regs, NOW) {
        r.unwrap();
    }
}

fn peers_of(page: &dht::StandardPage) -> Vec<PeerId> {
    page.registrations
        .iter()
        .map(|r| {
            *rendezvous_proto::standard::StandardRecord::decode(&r.record)
                .unwrap()
                .peer_id()
        })
        .collect()
}

#[test]
fn a_quorum_namespace_lists_its_standard_records_with_ttls_and_cookies() {
    let q = quorum(4, 1);
    let mut s = NamespaceStore::new(StoreConfig::default(), [7; 32]);
    // Members 1-3 sign a standard record; member 4 (older software) not.
    let mut records: Vec<_> = (1..=3).map(|i| std_peer(&q, i, 1)).collect();
    records.push(q.peer(4, 1, 1, NOW + HOUR));
    register(&mut s, &q, "farmer", records.clone());
    let ns = q.quorum_key().to_hex();
    let before = s.fingerprint();

    let page = s.standard_discover(&ns, None, None, NOW + 1_500).unwrap();
    assert_eq!(
        page.registrations.len(),
        3,
        "member 4 has no standard record"
    );
    for (r, record) in page.registrations.iter().zip(&records) {
        assert_eq!(r.namespace, ns);
        assert_eq!(r.record, record.standard.as_ref().unwrap().encoded());
        // Whole seconds left, rounded down.
        assert_eq!(r.ttl_s, (HOUR - 1_500) / 1000);
    }
    // The cookie: 8 bytes, then the namespace (what rust-libp2p reads).
    assert_eq!(page.cookie.len(), 8 + ns.len());
    assert_eq!(&page.cookie[8..], ns.as_bytes());
    // Nothing new behind it; a refresh of member 2 is.
    let empty = s
        .standard_discover(&ns, None, Some(&page.cookie), NOW)
        .unwrap();
    assert!(empty.registrations.is_empty());
    assert_eq!(
        s.fingerprint(),
        before,
        "a standard discover changed the state"
    );
    register(&mut s, &q, "farmer", vec![std_peer(&q, 2, 2)]);
    let delta = s
        .standard_discover(&ns, None, Some(&empty.cookie), NOW)
        .unwrap();
    assert_eq!(peers_of(&delta), vec![q.peer_id(2)]);

    // Limits page; pages never repeat a record.
    let first = s.standard_discover(&ns, Some(2), None, NOW).unwrap();
    assert_eq!(first.registrations.len(), 2);
    let second = s
        .standard_discover(&ns, Some(2), Some(&first.cookie), NOW)
        .unwrap();
    assert_eq!(second.registrations.len(), 1);
    let mut all = peers_of(&first);
    all.extend(peers_of(&second));
    all.sort();
    let mut expected: Vec<_> = (1..=3).map(|i| q.peer_id(i)).collect();
    expected.sort();
    assert_eq!(all, expected);

    // Expired records are not listed; an expired namespace lists nothing.
    assert!(s
        .standard_discover(&ns, None, None, NOW + HOUR)
        .unwrap()
        .registrations
        .is_empty());
    // A namespace not held: an empty answer.
    let other = quorum(2, 9).quorum_key().to_hex();
    assert!(s
        .standard_discover(&other, None, None, NOW)
        .unwrap()
        .registrations
        .is_empty());
}

#[test]
fn unreachable_members_are_not_listed() {
    let q = quorum(3, 2);
    let mut s = NamespaceStore::new(StoreConfig::default(), [7; 32]);
    register(
        &mut s,
        &q,
        "farmer",
        (1..=3).map(|i| std_peer(&q, i, 1)).collect(),
    );
    let ns = q.quorum_key().to_hex();
    // Play the driver: member 1 fails every ping, the others answer.
    let dead = q.peer_id(1);
    let mut now = NOW;
    for _ in 0..1_000 {
        if s.is_unreachable(&dead) {
            break;
        }
        now = s.poll_timeout().expect("a ping is due").max(now);
        for t in s.due_pings(now) {
            if t.peer_id == dead {
                s.handle_ping_miss(&dead);
            } else {
                s.handle_pong(&t.peer_id, now);
            }
        }
    }
    assert!(
        s.is_unreachable(&dead),
        "liveness never gave up on member 1"
    );
    let page = s.standard_discover(&ns, None, None, now).unwrap();
    assert_eq!(peers_of(&page), vec![q.peer_id(2), q.peer_id(3)]);
    // rdht's own discover agrees.
    let ours = s.discover(&q.quorum_key(), 0, None, now).unwrap();
    assert_eq!(ours.peers.len(), 2);
}

#[test]
fn a_kind_lists_every_quorum_of_that_kind_in_pages() {
    let a = quorum(3, 3);
    let b = quorum(2, 4);
    let c = quorum(2, 5);
    let mut s = NamespaceStore::new(StoreConfig::default(), [7; 32]);
    register(
        &mut s,
        &a,
        "farmer",
        (1..=3).map(|i| std_peer(&a, i, 1)).collect(),
    );
    register(
        &mut s,
        &c,
        "harvester",
        (1..=2).map(|i| std_peer(&c, i, 1)).collect(),
    );
    register(
        &mut s,
        &b,
        "farmer",
        (1..=2).map(|i| std_peer(&b, i, 1)).collect(),
    );
    let mut cookie: Option<Vec<u8>> = None;
    let mut seen = Vec::new();
    for _ in 0..10 {
        let page = s
            .standard_discover("kind:farmer", Some(1), cookie.as_deref(), NOW)
            .unwrap();
        assert!(page.registrations.len() <= 1);
        for r in &page.registrations {
            assert!(
                r.namespace == a.quorum_key().to_hex() || r.namespace == b.quorum_key().to_hex()
            );
        }
        if page.registrations.is_empty() {
            break;
        }
        seen.extend(peers_of(&page));
        cookie = Some(page.cookie);
    }
    let mut expected: Vec<_> = (1..=3)
        .map(|i| a.peer_id(i))
        .chain((1..=2).map(|i| b.peer_id(i)))
        .collect();
    // Pages follow registration order: A's, C's skipped, then B's.
    assert_eq!(seen, expected);
    expected.sort();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, expected, "each farmer member once, no harvester");
    // The same cookie for another namespace, another node, or garbage.
    let cookie = cookie.unwrap();
    let other = NamespaceStore::new(StoreConfig::default(), [8; 32]);
    for (store, ns, c) in [
        (&s, a.quorum_key().to_hex(), cookie.clone()),
        (&s, "kind:harvester".to_owned(), cookie.clone()),
        (&other, "kind:farmer".to_owned(), cookie.clone()),
        (&s, "kind:farmer".to_owned(), vec![1, 2, 3]),
        (&s, "kind:farmer".to_owned(), Vec::new()),
    ] {
        assert_eq!(
            store.standard_discover(&ns, None, Some(&c), NOW),
            Err(StandardRefusal::InvalidCookie),
            "{ns}"
        );
    }
    for bad in ["farmer", "kind:", "kind:Farmer!", &"AB".repeat(48)] {
        assert!(matches!(
            s.standard_discover(bad, None, None, NOW),
            Err(StandardRefusal::InvalidNamespace(_))
        ));
    }
}

#[test]
fn the_server_refuses_register_and_answers_discover_without_changing_state() {
    let q = quorum(3, 6);
    let mut store = NamespaceStore::new(StoreConfig::default(), [3; 32]);
    register(
        &mut store,
        &q,
        "farmer",
        (1..=3).map(|i| std_peer(&q, i, 1)).collect(),
    );
    let mut server = Server::new(ServerConfig::default(), store);
    let before = server.store().fingerprint();
    let stranger = PeerId::random();
    let ns = q.quorum_key().to_hex();
    let answer = server.handle_standard(
        NOW,
        stranger,
        ReplyId(1),
        StandardRequest::Register {
            namespace: ns.clone(),
        },
    );
    match answer {
        Some(StandardAnswer::Registered(StandardRefusal::NotAuthorized(reason))) => {
            assert!(reason.contains("/rdht/rendezvous/2.0.0"), "{reason}")
        }
        other => panic!("REGISTER answered {other:?}"),
    }
    assert_eq!(
        server.handle_standard(NOW, stranger, ReplyId(2), StandardRequest::Unregister),
        Some(StandardAnswer::None)
    );
    assert!(matches!(
        server.handle_standard(
            NOW,
            stranger,
            ReplyId(3),
            StandardRequest::Discover {
                namespace: None,
                limit: None,
                cookie: None
            }
        ),
        Some(StandardAnswer::Discovered(Err(
            StandardRefusal::InvalidNamespace(_)
        )))
    ));
    match server.handle_standard(
        NOW,
        stranger,
        ReplyId(4),
        StandardRequest::Discover {
            namespace: Some(ns),
            limit: None,
            cookie: None,
        },
    ) {
        Some(StandardAnswer::Discovered(Ok(page))) => assert_eq!(page.registrations.len(), 3),
        other => panic!("DISCOVER answered {other:?}"),
    }
    assert_eq!(server.store().fingerprint(), before);
    assert!(
        server.poll_output().is_none(),
        "a standard request made output"
    );
    let c = server.counters();
    assert_eq!((c.standard_discovers, c.standard_registers_refused), (2, 1));
}

/// A stock client asking a node that does not hold the quorum: the node
/// looks it up in the DHT as it would for an rdht `Discover`, answers when
/// the value found is verified, and remembers a lookup that found nothing.
#[test]
fn a_standard_discover_of_a_quorum_not_held_waits_for_a_lookup() {
    let q = quorum(3, 7);
    // The value another replica holds (and serves to the lookup).
    let mut replica = NamespaceStore::new(StoreConfig::default(), [4; 32]);
    register(
        &mut replica,
        &q,
        "farmer",
        (1..=3).map(|i| std_peer(&q, i, 1)).collect(),
    );
    let value = replica
        .namespace_value(&q.quorum_key(), NOW)
        .expect("value");
    // The testkit's records list loopback addresses.
    let mut server = Server::new(
        ServerConfig {
            dial_policy: dht::AddressPolicy::LOCAL,
            ..ServerConfig::default()
        },
        NamespaceStore::new(StoreConfig::default(), [5; 32]),
    );
    let stranger = PeerId::random();
    let discover = |ns: &str| StandardRequest::Discover {
        namespace: Some(ns.to_owned()),
        limit: None,
        cookie: None,
    };
    let ns = q.quorum_key().to_hex();
    assert_eq!(
        server.handle_standard(NOW, stranger, ReplyId(7), discover(&ns)),
        None,
        "not held here: the answer waits for the lookup"
    );
    let key = match server.poll_output() {
        Some(Output::Lookup { quorum_key, key }) => {
            assert_eq!(quorum_key, q.quorum_key());
            key
        }
        other => panic!("expected a lookup, got {other:?}"),
    };
    server
        .handle_value(NOW, Some(PeerId::random()), &key, &value.encode())
        .expect("queued");
    server.flush(NOW);
    let mut answered = None;
    for _ in 0..16 {
        while let Some(output) = server.poll_output() {
            match output {
                Output::Verify(job) => {
                    let done = job.run(&mut ChaCha20Rng::seed_from_u64(1), None);
                    server.handle_verified(NOW, done);
                }
                Output::StandardReply { to, answer } => answered = Some((to, answer)),
                _ => {}
            }
        }
        if answered.is_some() {
            break;
        }
        server.handle_lookup_done(NOW, q.quorum_key());
    }
    match answered {
        Some((ReplyId(7), StandardAnswer::Discovered(Ok(page)))) => {
            assert_eq!(page.registrations.len(), 3)
        }
        other => panic!("the waiting DISCOVER was answered {other:?}"),
    }

    // A quorum nobody holds: an empty page once the lookup ends, and the
    // next ask is answered at once from the negative cache.
    let nobody = quorum(3, 8).quorum_key().to_hex();
    assert_eq!(
        server.handle_standard(NOW, stranger, ReplyId(8), discover(&nobody)),
        None
    );
    let unknown = quorum(3, 8).quorum_key();
    server.handle_lookup_done(NOW, unknown);
    let mut empty = false;
    while let Some(output) = server.poll_output() {
        if let Output::StandardReply {
            to: ReplyId(8),
            answer: StandardAnswer::Discovered(Ok(page)),
        } = output
        {
            empty = page.registrations.is_empty();
        }
    }
    assert!(
        empty,
        "the lookup that found nothing answered an empty page"
    );
    assert_eq!(
        server.handle_standard(NOW + 1, stranger, ReplyId(9), discover(&nobody)),
        None
    );
    match server.poll_output() {
        Some(Output::StandardReply {
            to: ReplyId(9),
            answer: StandardAnswer::Discovered(Ok(page)),
        }) => assert!(page.registrations.is_empty()),
        other => panic!("the negative cache did not answer at once: {other:?}"),
    }
    assert!(server.poll_output().is_none(), "a second lookup started");
    assert_eq!(server.counters().negative_hits, 1);
}
