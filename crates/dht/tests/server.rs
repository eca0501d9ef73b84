//! The rendezvous server core driven by hand: no sockets, no threads.
//! The test plays the driver: it runs verification jobs itself (in any
//! order it likes, or not at all) and reads the outputs.

use dht::{
    AddressPolicy, JobId, NamespaceStore, Output, ReplyId, Server, ServerConfig, StoreConfig,
    VerifyJob,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rendezvous_proto::testkit::{with_seq_unsigned, TestQuorum};
use rendezvous_proto::{PeerId, QuorumKey, Request, Response, StatusCode};

const NOW: u64 = 1_700_000_000_000;
const HOUR: u64 = 3_600_000;

fn quorum(n: u32, seed: u64) -> TestQuorum {
    TestQuorum::deal(n, n.div_ceil(2), &mut ChaCha20Rng::seed_from_u64(seed))
}

/// The node's defaults, but taking and dialling loopback addresses (test
/// records list 127.0.0.1), as a node listening on loopback does.
fn local() -> ServerConfig {
    ServerConfig {
        dial_policy: AddressPolicy::LOCAL,
        ..ServerConfig::default()
    }
}

/// A server whose batches go out one record at a time (min_batch 1), so
/// each registration is a job of its own.
fn server(config: ServerConfig) -> Server {
    Server::new(config, NamespaceStore::new(StoreConfig::default(), [3; 32]))
}

fn one_per_job() -> ServerConfig {
    ServerConfig {
        min_batch: 1,
        max_batch: 1,
        max_jobs: 8,
        // Test records list loopback addresses.
        dial_policy: AddressPolicy::LOCAL,
        ..ServerConfig::default()
    }
}

/// Drains the outputs: (replies in order, jobs in order, everything else).
fn drain(s: &mut Server) -> (Vec<(ReplyId, Response)>, Vec<VerifyJob>, Vec<Output>) {
    let (mut replies, mut jobs, mut other) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(o) = s.poll_output() {
        match o {
            Output::Reply { to, response } => replies.push((to, response)),
            Output::Verify(job) => jobs.push(job),
            o => other.push(o),
        }
    }
    (replies, jobs, other)
}

/// Plays a driver that runs every job at once: drains the outputs until
/// none is left, returning the replies and everything else (jobs aside).
fn settle(s: &mut Server, now: u64) -> (Vec<(ReplyId, Response)>, Vec<Output>) {
    let (mut replies, mut other) = (Vec::new(), Vec::new());
    loop {
        let (r, jobs, o) = drain(s);
        replies.extend(r);
        other.extend(o);
        if jobs.is_empty() {
            return (replies, other);
        }
        for job in jobs {
            s.handle_verified(now, run(job));
        }
    }
}

/// Hands a value from `from` to the server and settles: the merge report
/// (from [`Output::Merged`]), the replies and the other outputs.
fn feed(
    s: &mut Server,
    now: u64,
    from: Option<PeerId>,
    key: &[u8],
    value: &[u8],
) -> (dht::MergeReport, Vec<(ReplyId, Response)>, Vec<Output>) {
    s.handle_value(now, from, key, value).unwrap();
    let (replies, other) = settle(s, now);
    let report = other
        .iter()
        .find_map(|o| match o {
            Output::Merged { report, .. } => Some(report.clone()),
            _ => None,
        })
        .expect("every value accepted is reported");
    (report, replies, other)
}

/// A server holding `q`'s namespace and member 1's record, outputs drained.
fn with_member_1(q: &TestQuorum) -> Server {
    let mut s = with_namespace(q, one_per_job());
    register(&mut s, q, 1, 1);
    let (_, jobs, _) = drain(&mut s);
    for job in jobs {
        s.handle_verified(NOW, run(job));
    }
    drain(&mut s);
    s
}

fn with_namespace(q: &TestQuorum, config: ServerConfig) -> Server {
    let mut s = server(config);
    let ns = q.namespace(1, Some("farmer"), NOW, NOW + 2 * HOUR);
    s.handle_request(
        NOW,
        q.peer_id(1),
        ReplyId(999),
        Request::RegisterNamespace(ns),
    );
    let (replies, _) = settle(&mut s, NOW);
    assert_eq!(
        replies,
        vec![(ReplyId(999), Response::Registered { ttl_ms: 2 * HOUR })]
    );
    s
}

fn register(s: &mut Server, q: &TestQuorum, index: u32, reply: u64) {
    let record = q.peer(index, 1, 1, NOW + HOUR);
    s.handle_request(
        NOW,
        q.peer_id(index),
        ReplyId(reply),
        Request::RegisterPeer(record),
    );
}

fn run(job: VerifyJob) -> dht::VerifyDone {
    job.run(&mut ChaCha20Rng::seed_from_u64(1), None)
}

#[test]
fn replies_come_in_submission_order_whatever_order_jobs_finish_in() {
    let q = quorum(4, 1);
    let mut s = with_namespace(&q, one_per_job());
    for i in 1..=4 {
        register(&mut s, &q, i, u64::from(i));
    }
    let (replies, mut jobs, _) = drain(&mut s);
    assert!(
        replies.is_empty(),
        "nothing is answered before verification"
    );
    assert_eq!(jobs.len(), 4);
    // The last job finishes first: nothing may be answered yet.
    let last = jobs.pop().unwrap();
    s.handle_verified(NOW, run(last));
    assert!(drain(&mut s).0.is_empty());
    // Then the others, backwards: everything comes out at the end, in order.
    while let Some(job) = jobs.pop() {
        s.handle_verified(NOW, run(job));
    }
    let (replies, _, _) = drain(&mut s);
    let order: Vec<u64> = replies.iter().map(|(r, _)| r.0).collect();
    assert_eq!(order, vec![1, 2, 3, 4]);
    assert!(replies
        .iter()
        .all(|(_, r)| *r == Response::Registered { ttl_ms: HOUR }));
    assert_eq!(s.store().stats().peer_records, 4);
}

#[test]
fn a_failed_job_is_answered_internal_and_the_server_goes_on() {
    let q = quorum(4, 2);
    let mut s = with_namespace(&q, one_per_job());
    register(&mut s, &q, 1, 1);
    register(&mut s, &q, 2, 2);
    let (_, jobs, _) = drain(&mut s);
    let ids: Vec<JobId> = jobs.iter().map(|j| j.id).collect();
    let mut jobs = jobs.into_iter();
    // The first job's thread panicked: the driver reports it failed.
    drop(jobs.next());
    s.handle_job_failed(NOW, ids[0]);
    s.handle_verified(NOW, run(jobs.next().unwrap()));
    let (replies, _, _) = drain(&mut s);
    assert_eq!(
        replies,
        vec![
            (ReplyId(1), Response::Rejected(StatusCode::Internal)),
            (ReplyId(2), Response::Registered { ttl_ms: HOUR }),
        ]
    );
    assert_eq!(s.store().stats().peer_records, 1);
    assert_eq!(s.counters().failed_jobs, 1);
    // The member whose batch failed registers again, fine.
    register(&mut s, &q, 1, 3);
    let (_, jobs, _) = drain(&mut s);
    for job in jobs {
        s.handle_verified(NOW, run(job));
    }
    let (replies, _, _) = drain(&mut s);
    assert_eq!(
        replies,
        vec![(ReplyId(3), Response::Registered { ttl_ms: HOUR })]
    );
}

#[test]
fn a_sender_over_its_cap_is_refused_before_any_verification() {
    let q = quorum(4, 3);
    let config = ServerConfig {
        max_queued_per_peer: 2,
        min_batch: 100,
        max_batch_wait_ms: 1_000,
        ..local()
    };
    let mut s = with_namespace(&q, config);
    let peer = q.peer_id(1);
    for reply in 1..=3 {
        let record = q.peer(1, 1, reply, NOW + HOUR);
        s.handle_request(NOW, peer, ReplyId(reply), Request::RegisterPeer(record));
    }
    let (replies, jobs, _) = drain(&mut s);
    assert_eq!(
        replies,
        vec![(ReplyId(3), Response::Rejected(StatusCode::QuotaExceeded))]
    );
    assert!(jobs.is_empty(), "the batch waits for its window");
    // Another sender still has room.
    register(&mut s, &q, 2, 4);
    assert!(drain(&mut s).0.is_empty());
    // The window passes: one job with the three queued records.
    s.handle_timeout(NOW + 1_000);
    let (_, jobs, _) = drain(&mut s);
    assert_eq!(jobs.iter().map(VerifyJob::len).sum::<usize>(), 3);
}

#[test]
fn register_peers_is_answered_once_with_every_outcome_in_order() {
    let q = quorum(4, 4);
    let mut s = with_namespace(&q, local());
    let good = q.peer(1, 1, 1, NOW + HOUR);
    let bad = with_seq_unsigned(q.peer(1, 1, 2, NOW + HOUR), 3); // the signature no longer covers it
    let foreign = q.peer(2, 1, 1, NOW + HOUR); // not the sender's PeerId
    s.handle_request(
        NOW,
        q.peer_id(1),
        ReplyId(7),
        Request::RegisterPeers(vec![good, bad, foreign]),
    );
    s.flush(NOW);
    let (replies, jobs, _) = drain(&mut s);
    assert!(replies.is_empty());
    for job in jobs {
        s.handle_verified(NOW, run(job));
    }
    let (replies, _, _) = drain(&mut s);
    assert_eq!(
        replies,
        vec![(
            ReplyId(7),
            Response::RegisteredPeers(vec![
                Ok(HOUR),
                Err(StatusCode::InvalidEnvelopeSignature),
                Err(StatusCode::PeerIdMismatch),
            ])
        )]
    );
}

#[test]
fn refreshes_arriving_together_are_checked_in_one_batched_job_and_a_bad_one_is_named() {
    let q = quorum(24, 9);
    let config = ServerConfig {
        min_batch: 100,
        max_batch_wait_ms: 1_000,
        ..local()
    };
    let mut s = with_namespace(&q, config);
    // Round 1 seats the 24 members; in round 2 every member refreshes
    // (envelopes only, batched) and member 7's envelope is tampered.
    for round in 1..=2u64 {
        for i in 1..=24u32 {
            let mut record = q.peer(i, 1, round, NOW + HOUR);
            if i == 7 && round == 2 {
                record = with_seq_unsigned(record, 3);
            }
            let reply = ReplyId(round * 100 + u64::from(i));
            s.handle_request(NOW, q.peer_id(i), reply, Request::RegisterPeer(record));
        }
        s.flush(NOW);
        let (replies, jobs, _) = drain(&mut s);
        assert!(replies.is_empty());
        assert_eq!(
            jobs.len(),
            1,
            "one job for the refreshes that came together"
        );
        let mut checkpoints = 0;
        for job in jobs {
            let mut rng = ChaCha20Rng::seed_from_u64(round);
            let done = job.run(&mut rng, Some(&mut || checkpoints += 1));
            s.handle_verified(NOW, done);
        }
        assert!(checkpoints >= 2, "the envelopes went in steps");
        let (replies, _, _) = drain(&mut s);
        let expected: Vec<(ReplyId, Response)> = (1..=24u32)
            .map(|i| {
                let response = if i == 7 && round == 2 {
                    Response::Rejected(StatusCode::InvalidEnvelopeSignature)
                } else {
                    Response::Registered { ttl_ms: HOUR }
                };
                (ReplyId(round * 100 + u64::from(i)), response)
            })
            .collect();
        assert_eq!(replies, expected, "round {round}");
    }
}

#[test]
fn lookups_for_an_unknown_namespace_are_deduplicated_and_bounded_in_time() {
    let q = quorum(3, 5);
    let mut s = server(local());
    let asker = PeerId::random();
    let discover = Request::Discover {
        quorum_key: q.quorum_key(),
        limit: 0,
        cookie: None,
    };
    s.handle_request(NOW, asker, ReplyId(1), discover.clone());
    s.handle_request(NOW, asker, ReplyId(2), discover.clone());
    let (replies, _, other) = drain(&mut s);
    assert!(replies.is_empty());
    let lookups: Vec<QuorumKey> = other
        .iter()
        .filter_map(|o| match o {
            Output::Lookup { quorum_key, .. } => Some(*quorum_key),
            _ => None,
        })
        .collect();
    assert_eq!(lookups, vec![q.quorum_key()], "one lookup for both askers");
    // The lookup finds the namespace's value at a replica.
    let ns = q.namespace(1, Some("farmer"), NOW, NOW + 2 * HOUR);
    let value = dht::NamespaceValue {
        namespace: ns,
        peers: vec![q.peer(1, 1, 1, NOW + HOUR)],
    };
    let key = dht::namespace_key(&q.quorum_key());
    let (report, replies, other) = feed(&mut s, NOW, None, &key, &value.encode());
    assert_eq!(report.peers_stored, 1);
    // It verified in full: both askers are answered at once, and the
    // driver is told to stop the query.
    assert!(other
        .iter()
        .any(|o| matches!(o, Output::LookupDone { quorum_key } if *quorum_key == q.quorum_key())));
    s.handle_lookup_done(NOW, q.quorum_key());
    assert!(drain(&mut s).0.is_empty(), "answered twice");
    assert_eq!(replies.len(), 2);
    for (_, r) in &replies {
        let Response::Discovered(answer) = r else {
            panic!("{r:?}")
        };
        assert_eq!(answer.peers.len(), 1);
    }
    // A lookup that finds nothing is answered when it times out, with
    // its own status (not found *yet*), within half a client's default
    // timeout, and nothing is remembered: the next asker looks again.
    let other = quorum(3, 6);
    let discover = Request::Discover {
        quorum_key: other.quorum_key(),
        limit: 0,
        cookie: None,
    };
    s.handle_request(NOW, asker, ReplyId(3), discover);
    let deadline = NOW + ServerConfig::default().lookup_timeout_ms;
    assert!(s.poll_timeout().unwrap() <= deadline);
    s.handle_timeout(deadline - 1);
    assert!(drain(&mut s).0.is_empty(), "answered before its deadline");
    assert!(ServerConfig::default().lookup_timeout_ms <= 5_000);
    s.handle_timeout(deadline);
    let (replies, _, _) = drain(&mut s);
    assert_eq!(
        replies,
        vec![(ReplyId(3), Response::Rejected(StatusCode::LookupTimedOut))]
    );
    assert_eq!(s.counters().lookups_timed_out, 1);
    s.handle_request(
        deadline + 1,
        asker,
        ReplyId(4),
        discover_of(other.quorum_key()),
    );
    let (replies, _, outputs) = drain(&mut s);
    assert!(replies.is_empty(), "a timed-out lookup is not remembered");
    assert_eq!(lookups_started(&outputs), vec![other.quorum_key()]);
}

fn discover_of(qk: QuorumKey) -> Request {
    Request::Discover {
        quorum_key: qk,
        limit: 0,
        cookie: None,
    }
}

fn lookups_started(other: &[Output]) -> Vec<QuorumKey> {
    other
        .iter()
        .filter_map(|o| match o {
            Output::Lookup { quorum_key, .. } => Some(*quorum_key),
            _ => None,
        })
        .collect()
}

/// #13 item 4: a discover for an unknown namespace used to start a new
/// Kademlia GET every time once the previous one ended (no cap per
/// asker, none overall, no memory of a GET that found nothing).
#[test]
fn amplified_lookups_are_capped_per_asker_and_overall() {
    let config = ServerConfig {
        max_lookups: 6,
        max_lookups_per_peer: 4,
        max_waiting_per_lookup: 3,
        ..ServerConfig::default()
    };
    let mut s = server(config);
    let keys: Vec<QuorumKey> = (0..10u8).map(|i| QuorumKey([i + 1; 48])).collect();
    // One asker, ten unknown keys: four lookups, six refusals at once.
    let greedy = PeerId::random();
    for (i, qk) in keys.iter().enumerate() {
        s.handle_request(NOW, greedy, ReplyId(i as u64), discover_of(*qk));
    }
    let (replies, _, other) = drain(&mut s);
    assert_eq!(lookups_started(&other), keys[..4].to_vec());
    assert_eq!(replies.len(), 6);
    assert!(replies
        .iter()
        .all(|(_, r)| *r == Response::Rejected(StatusCode::QuotaExceeded)));
    // Others share the running lookups (up to 3 askers each) and start
    // new ones up to 6 in all.
    for (i, qk) in keys[..6].iter().enumerate() {
        s.handle_request(
            NOW,
            PeerId::random(),
            ReplyId(100 + i as u64),
            discover_of(*qk),
        );
    }
    let (replies, _, other) = drain(&mut s);
    assert_eq!(lookups_started(&other), keys[4..6].to_vec());
    assert!(replies.is_empty(), "{replies:?}");
    s.handle_request(NOW, PeerId::random(), ReplyId(200), discover_of(keys[6]));
    s.handle_request(NOW, PeerId::random(), ReplyId(201), discover_of(keys[0]));
    s.handle_request(NOW, PeerId::random(), ReplyId(202), discover_of(keys[0]));
    let (replies, _, other) = drain(&mut s);
    assert!(lookups_started(&other).is_empty(), "over the overall cap");
    assert_eq!(
        replies,
        vec![
            (ReplyId(200), Response::Rejected(StatusCode::QuotaExceeded)),
            (ReplyId(202), Response::Rejected(StatusCode::QuotaExceeded)),
        ],
        "the 7th lookup, and a 4th asker of one lookup, are refused"
    );
    // When the lookups end, their askers' slots are free again.
    s.handle_timeout(NOW + ServerConfig::default().lookup_timeout_ms);
    drain(&mut s);
    s.handle_timeout(NOW + ServerConfig::default().lookup_timeout_ms + 10_000);
    s.handle_request(NOW + 20_000, greedy, ReplyId(300), discover_of(keys[9]));
    let (replies, _, other) = drain(&mut s);
    assert!(replies.is_empty());
    assert_eq!(lookups_started(&other), vec![keys[9]]);
}

/// #13 item 4: a GET that found nothing is remembered for a short time;
/// a namespace registered meanwhile is served all the same.
#[test]
fn amplified_lookups_that_found_nothing_are_remembered_briefly() {
    let q = quorum(3, 9);
    let negative_ttl_ms = ServerConfig::default().negative_ttl_ms;
    let mut s = server(local());
    let asker = PeerId::random();
    s.handle_request(NOW, asker, ReplyId(1), discover_of(q.quorum_key()));
    let (_, _, other) = drain(&mut s);
    assert_eq!(lookups_started(&other), vec![q.quorum_key()]);
    // The Kademlia query ends empty-handed.
    s.handle_lookup_done(NOW + 50, q.quorum_key());
    let (replies, _, _) = drain(&mut s);
    assert_eq!(
        replies,
        vec![(ReplyId(1), Response::Rejected(StatusCode::UnknownNamespace))]
    );
    // A hundred askers in the next seconds: answered at once, no GET.
    for i in 0..100 {
        s.handle_request(
            NOW + 100 + i,
            PeerId::random(),
            ReplyId(10 + i),
            discover_of(q.quorum_key()),
        );
    }
    let (replies, _, other) = drain(&mut s);
    assert!(lookups_started(&other).is_empty());
    assert_eq!(replies.len(), 100);
    assert!(replies
        .iter()
        .all(|(_, r)| *r == Response::Rejected(StatusCode::UnknownNamespace)));
    assert_eq!(s.counters().negative_hits, 100);
    // Once it is forgotten, the next asker starts a GET again.
    let later = NOW + 50 + negative_ttl_ms;
    s.handle_timeout(later);
    s.handle_request(later, asker, ReplyId(500), discover_of(q.quorum_key()));
    let (_, _, other) = drain(&mut s);
    assert_eq!(lookups_started(&other), vec![q.quorum_key()]);
    s.handle_lookup_done(later + 1, q.quorum_key());
    drain(&mut s);
    // Remembered again, but a namespace registered here meanwhile is
    // served: the store is asked before the memory.
    let ns = q.namespace(1, Some("farmer"), NOW, NOW + 2 * HOUR);
    s.handle_request(
        later + 2,
        asker,
        ReplyId(600),
        Request::RegisterNamespace(ns),
    );
    settle(&mut s, later + 2);
    s.handle_request(later + 3, asker, ReplyId(601), discover_of(q.quorum_key()));
    let (replies, _, _) = drain(&mut s);
    assert!(
        matches!(
            replies.last(),
            Some((ReplyId(601), Response::Discovered(_)))
        ),
        "{replies:?}"
    );
}

#[test]
fn a_lookup_is_not_ended_by_a_first_answer_that_does_not_verify() {
    let q = quorum(3, 8);
    let mut s = server(local());
    let discover = Request::Discover {
        quorum_key: q.quorum_key(),
        limit: 0,
        cookie: None,
    };
    s.handle_request(NOW, PeerId::random(), ReplyId(1), discover);
    drain(&mut s);
    let key = dht::namespace_key(&q.quorum_key());
    let ns = q.namespace(1, Some("farmer"), NOW, NOW + 2 * HOUR);
    let genuine = |i| q.peer(i, 1, 1, NOW + HOUR);
    // A liar answers first: the genuine namespace record, one genuine
    // peer record and one redirected to it.
    let mut forged = genuine(2);
    let mut payload = forged.envelope.payload.clone();
    payload.addrs = vec!["/ip4/6.6.6.6/tcp/666".parse().unwrap()];
    forged.envelope.replace_payload_unsigned(payload);
    let lie = dht::NamespaceValue {
        namespace: ns.clone(),
        peers: vec![genuine(1), forged],
    };
    let liar = PeerId::random();
    let (report, replies, other) = feed(&mut s, NOW, Some(liar), &key, &lie.encode());
    assert_eq!(report.peers_rejected.len(), 1);
    assert!(replies.is_empty(), "a lie ended the lookup: {replies:?}");
    assert!(!other.iter().any(|o| matches!(o, Output::LookupDone { .. })));
    // An honest replica answers next: the lookup ends with its records.
    let honest = dht::NamespaceValue {
        namespace: ns,
        peers: vec![genuine(1), genuine(2), genuine(3)],
    };
    let (_, replies, other) = feed(&mut s, NOW, Some(PeerId::random()), &key, &honest.encode());
    assert!(other.iter().any(|o| matches!(o, Output::LookupDone { .. })));
    let [(ReplyId(1), Response::Discovered(answer))] = replies.as_slice() else {
        panic!("{replies:?}")
    };
    assert_eq!(answer.peers.len(), 3);
    assert!(answer
        .peers
        .iter()
        .all(|p| p.record == genuine(p.record.index())));
}

#[test]
fn only_registered_peers_that_are_not_connected_are_dialled() {
    let q = quorum(4, 7);
    let mut s = with_namespace(&q, one_per_job());
    for i in 1..=2 {
        register(&mut s, &q, i, u64::from(i));
    }
    let (_, jobs, _) = drain(&mut s);
    for job in jobs {
        s.handle_verified(NOW, run(job));
    }
    drain(&mut s);
    s.handle_connected(q.peer_id(1));
    let due = NOW + 2 * StoreConfig::default().liveness.ping_interval_ms;
    s.handle_timeout(due);
    let (_, _, other) = drain(&mut s);
    let dialled: Vec<PeerId> = other
        .iter()
        .filter_map(|o| match o {
            Output::Dial { peer, .. } => Some(*peer),
            _ => None,
        })
        .collect();
    assert_eq!(dialled, vec![q.peer_id(2)]);
    assert!(s.counters().pings_due >= 2);
}

/// #13 item 3: records name whatever addresses their signer likes: a
/// victim's, or addresses inside the operator's network. A node listening
/// on a global address used to dial them all, every interval, however
/// many records named one victim.
#[test]
fn reflection_and_scanning_dials_only_allowed_scopes_at_a_capped_rate() {
    use rendezvous_proto::{Multiaddr, PeerRecord};
    let q = TestQuorum::deal(60, 2, &mut ChaCha20Rng::seed_from_u64(21));
    let config = ServerConfig {
        min_batch: 256,
        max_batch: 256,
        dial_policy: AddressPolicy::GLOBAL,
        max_dials_per_ip_per_minute: 10,
        ..ServerConfig::default()
    };
    let mut s = with_namespace(&q, config);
    let addr = |a: &str| -> Multiaddr { a.parse().unwrap() };
    let own = addr("/ip4/1.1.1.1/tcp/4001");
    let internal = [
        addr("/ip4/127.0.0.1/tcp/22"),
        addr("/ip4/10.0.0.5/tcp/5432"),
        addr("/ip4/169.254.169.254/tcp/80"),
        addr("/ip6/fe80::1/tcp/22"),
    ];
    let victim = addr("/ip4/8.8.4.4/tcp/53");
    for i in 1..=60u32 {
        let addrs = if i == 1 {
            internal.iter().cloned().chain([own.clone()]).collect()
        } else if i == 2 {
            internal.to_vec()
        } else {
            vec![victim.clone()]
        };
        let record = PeerRecord::sign(
            q.seat(i, 1),
            addrs,
            1,
            NOW + HOUR,
            &q.identities[i as usize - 1],
        );
        s.handle_request(
            NOW,
            q.peer_id(i),
            ReplyId(u64::from(i)),
            Request::RegisterPeer(record),
        );
    }
    s.flush(NOW);
    let (replies, _) = settle(&mut s, NOW);
    assert_eq!(replies.len(), 60);
    // Member 2 names nothing this node may dial: refused at once.
    assert!(replies.contains(&(ReplyId(2), Response::Rejected(StatusCode::NotAuthorized))));
    let due = NOW + 2 * StoreConfig::default().liveness.ping_interval_ms;
    s.handle_timeout(due);
    let (_, _, other) = drain(&mut s);
    let dials: Vec<(PeerId, Vec<Multiaddr>)> = other
        .iter()
        .filter_map(|o| match o {
            Output::Dial { peer, addrs } => Some((*peer, addrs.clone())),
            _ => None,
        })
        .collect();
    // Member 1 is dialled at its global address only; member 2, with
    // internal addresses only, was never stored; the victim at most 10
    // times.
    assert!(dials.contains(&(q.peer_id(1), vec![own.clone()])));
    assert!(!dials.iter().any(|(p, _)| *p == q.peer_id(2)));
    let at_victim = dials.iter().filter(|(_, a)| a.contains(&victim)).count();
    assert_eq!(at_victim, 10, "{dials:?}");
    assert!(dials
        .iter()
        .all(|(_, a)| a.iter().all(|a| *a == own || *a == victim)));
    let c = s.counters();
    assert_eq!(c.dials_refused, 48);
    assert_eq!(c.addrs_out_of_scope, 4);
    assert_eq!(c.addrs_rate_limited, 48);
}

/// #13 item 1 (first step): one kad PUT of a kind index holding
/// thousands of copies of one junk namespace record (valid points, a
/// wrong signature: free to make) cost a pairing per copy on the event
/// loop. Copies are now checked once, and at most 256 entries of a value
/// are checked at all.
#[test]
fn event_loop_stall_through_kad_kind_values_is_bounded() {
    let q = quorum(3, 31);
    let mut junk = q.namespace(1, Some("farmer"), NOW, NOW + 2 * HOUR);
    let other = q.namespace(2, Some("farmer"), NOW, NOW + 2 * HOUR);
    junk.signature = other.signature; // a valid point, the wrong message
    let key = dht::kind_key("farmer");
    let mut s = server(local());
    let copies = dht::KindValue {
        namespaces: vec![junk.clone(); 2_000],
    };
    let (report, _, _) = feed(&mut s, NOW, None, &key, &copies.encode());
    assert_eq!(report.kind_entries_merged, 1);
    assert_eq!(report.kind_entries_dropped, 1_999);
    assert!(!report.namespace_updated);
    // Distinct junk entries: at most 256 of them are checked.
    let distinct = dht::KindValue {
        namespaces: (0..1_000u64)
            .map(|i| {
                let mut r = junk.clone();
                r.issued_at_ms = NOW - i;
                r
            })
            .collect(),
    };
    let (report, _, _) = feed(&mut s, NOW, None, &key, &distinct.encode());
    assert_eq!(report.kind_entries_merged, dht::MAX_KIND_VALUE_ENTRIES);
    assert_eq!(
        report.kind_entries_dropped,
        1_000 - dht::MAX_KIND_VALUE_ENTRIES
    );
    assert_eq!(s.store().stats().namespaces, 0);
    // A genuine index still merges.
    let genuine = dht::KindValue {
        namespaces: vec![q.namespace(1, Some("farmer"), NOW, NOW + 2 * HOUR)],
    };
    let (report, _, _) = feed(&mut s, NOW, None, &key, &genuine.encode());
    assert!(report.namespace_updated);
    assert_eq!(s.store().stats().namespaces, 1);
}

/// #13 items 2 and 7: a sender that never gets anything stored used to
/// be free to send invalid signatures forever, each costing the node a
/// pairing (and, in a batch, a bisection). Now it is disconnected and
/// refused for a back-off period that doubles at each offence.
#[test]
fn bisection_amplification_a_sender_of_invalid_signatures_is_disconnected_and_refused() {
    let q = quorum(4, 41);
    let config = ServerConfig {
        penalty_ms: 1_000,
        max_penalty_ms: 3_000,
        ..one_per_job()
    };
    let mut s = with_namespace(&q, config);
    let forger = q.peer_id(2);
    // A record of member 2 whose seat is signed by member 3's share.
    let bad = q.peer_seated_by(2, 1, 1, NOW + HOUR, &q.shares[2].secret);
    s.handle_request(NOW, forger, ReplyId(1), Request::RegisterPeer(bad));
    let (_, jobs, _) = drain(&mut s);
    for job in jobs {
        s.handle_verified(NOW, run(job));
    }
    let (replies, _, other) = drain(&mut s);
    assert_eq!(
        replies,
        vec![(
            ReplyId(1),
            Response::Rejected(StatusCode::InvalidShareSignature)
        )]
    );
    // Disconnected a moment later, once its refusal has gone out.
    assert!(!other.iter().any(|o| matches!(o, Output::Disconnect { .. })));
    assert!(s.poll_timeout().is_some_and(|t| t <= NOW + 1_000));
    s.handle_timeout(NOW + 1_000);
    let (_, _, other) = drain(&mut s);
    assert!(other
        .iter()
        .any(|o| matches!(o, Output::Disconnect { peer, .. } if *peer == forger)));
    // Within the penalty: refused at once, no verification job at all,
    // even for a valid record.
    let good = q.peer(2, 1, 2, NOW + HOUR);
    s.handle_request(
        NOW + 999,
        forger,
        ReplyId(2),
        Request::RegisterPeer(good.clone()),
    );
    s.handle_request(
        NOW + 999,
        forger,
        ReplyId(3),
        Request::RegisterPeers(vec![good.clone(), good.clone()]),
    );
    let (replies, jobs, _) = drain(&mut s);
    assert!(jobs.is_empty());
    assert_eq!(
        replies,
        vec![
            (ReplyId(2), Response::Rejected(StatusCode::QuotaExceeded)),
            (
                ReplyId(3),
                Response::RegisteredPeers(vec![Err(StatusCode::QuotaExceeded); 2])
            ),
        ]
    );
    // Others are served meanwhile.
    register(&mut s, &q, 1, 4);
    let (_, jobs, _) = drain(&mut s);
    assert_eq!(jobs.len(), 1);
    for job in jobs {
        s.handle_verified(NOW + 999, run(job));
    }
    drain(&mut s);
    // After the penalty, the sender is heard again.
    s.handle_request(NOW + 1_000, forger, ReplyId(5), Request::RegisterPeer(good));
    let (_, jobs, _) = drain(&mut s);
    assert_eq!(jobs.len(), 1, "heard again after its penalty");
    for job in jobs {
        s.handle_verified(NOW + 1_000, run(job));
    }
    let (replies, _, _) = drain(&mut s);
    assert!(matches!(
        replies[..],
        [(ReplyId(5), Response::Registered { .. })]
    ));
    // A junk namespace (a valid point, the wrong signature) from another
    // sender: refused, and that sender penalized too; a second offence
    // of the first doubles its penalty.
    let stranger = PeerId::random();
    let mut junk = q.namespace(2, Some("farmer"), NOW, NOW + 2 * HOUR);
    junk.signature = q
        .namespace(3, Some("farmer"), NOW, NOW + 2 * HOUR)
        .signature;
    s.handle_request(
        NOW + 1_000,
        stranger,
        ReplyId(6),
        Request::RegisterNamespace(junk),
    );
    let (replies, _) = settle(&mut s, NOW + 1_000);
    assert_eq!(
        replies,
        vec![(
            ReplyId(6),
            Response::Rejected(StatusCode::InvalidNamespaceSignature)
        )]
    );
    s.handle_timeout(NOW + 2_000);
    let (_, _, other) = drain(&mut s);
    assert!(other
        .iter()
        .any(|o| matches!(o, Output::Disconnect { peer, .. } if *peer == stranger)));
    let bad_again = q.peer_seated_by(2, 1, 3, NOW + HOUR, &q.shares[2].secret);
    s.handle_request(
        NOW + 1_500,
        forger,
        ReplyId(7),
        Request::RegisterPeer(bad_again),
    );
    let (_, jobs, _) = drain(&mut s);
    for job in jobs {
        s.handle_verified(NOW + 1_500, run(job));
    }
    drain(&mut s);
    let probe = Request::Discover {
        quorum_key: q.quorum_key(),
        limit: 0,
        cookie: None,
    };
    s.handle_request(NOW + 3_499, forger, ReplyId(8), probe.clone());
    s.handle_request(NOW + 3_500, forger, ReplyId(9), probe);
    let (replies, _, _) = drain(&mut s);
    assert_eq!(
        replies[0],
        (ReplyId(8), Response::Rejected(StatusCode::QuotaExceeded))
    );
    assert!(
        matches!(replies[1], (ReplyId(9), Response::Discovered(_))),
        "{replies:?}"
    );
    let c = s.counters();
    assert_eq!(c.penalties, 3);
    assert_eq!(c.penalized_requests, 3);
}

#[test]
fn changed_namespaces_are_replicated_once_per_period() {
    let q = quorum(4, 8);
    let mut s = server(one_per_job());
    let ns = q.namespace(1, Some("farmer"), NOW, NOW + 2 * HOUR);
    s.handle_request(
        NOW,
        q.peer_id(1),
        ReplyId(9),
        Request::RegisterNamespace(ns),
    );
    // The first change goes out at once.
    let (_, other) = settle(&mut s, NOW);
    let replicated = other
        .iter()
        .filter(|o| matches!(o, Output::Replicate { .. }))
        .count();
    assert_eq!(replicated, 1);
    // Two registrations within one period make one PUT.
    for i in 1..=2 {
        register(&mut s, &q, i, u64::from(i));
    }
    let (_, jobs, _) = drain(&mut s);
    for job in jobs {
        s.handle_verified(NOW + 1, run(job));
    }
    let (_, _, other) = drain(&mut s);
    assert!(other.iter().all(|o| !matches!(o, Output::Replicate { .. })));
    s.handle_timeout(NOW + ServerConfig::default().replication_period_ms);
    let (_, _, other) = drain(&mut s);
    let values: Vec<&Vec<u8>> = other
        .iter()
        .filter_map(|o| match o {
            Output::Replicate { value, .. } => Some(value),
            _ => None,
        })
        .collect();
    assert_eq!(values.len(), 1);
    let limits = rendezvous_proto::Limits::DEFAULT;
    let value = dht::NamespaceValue::decode(values[0], &limits).unwrap();
    assert_eq!(value.peers.len(), 2);
}

#[test]
fn a_peer_that_stops_answering_is_reported_unreachable_once() {
    let q = quorum(3, 9);
    let mut s = with_member_1(&q);
    // Connected (no dials), and silent: every due ping goes unanswered.
    s.handle_connected(q.peer_id(1));
    let mut reports = Vec::new();
    let mut now = NOW;
    for _ in 0..200 {
        let Some(at) = s.poll_timeout() else { break };
        now = at.max(now);
        if now > NOW + 600_000 {
            break;
        }
        s.handle_timeout(now);
        let (_, _, other) = drain(&mut s);
        reports.extend(other.into_iter().filter_map(|o| match o {
            Output::ListingChanged {
                peer,
                listed: false,
            } => Some(peer),
            _ => None,
        }));
    }
    assert!(s.store().is_unreachable(&q.peer_id(1)));
    assert_eq!(reports, vec![q.peer_id(1)], "reported once, by name");
}

/// #16: a partition drops packets silently, so the connection a member
/// came in on stays open, dead, for tens of seconds. The core must not
/// wait for TCP: once a ping is missed over an open connection, the next
/// due check closes it and dials anew, and a pong over the new connection
/// lists the peer again at once, reported as a change of listing.
#[test]
fn a_missed_ping_over_an_open_connection_reconnects_and_a_pong_relists() {
    let q = quorum(3, 19);
    let mut s = with_member_1(&q);
    let peer = q.peer_id(1);
    s.handle_connected(peer);
    let interval = dht::LivenessConfig::default().ping_interval_ms;
    let mut now = NOW;
    let mut reconnects = Vec::new();
    let mut dials = 0;
    let mut changes = Vec::new();
    // Silent (a partition) until it is no longer listed.
    while !s.store().is_unreachable(&peer) {
        now = s.poll_timeout().unwrap().max(now);
        assert!(now < NOW + 60_000, "never unreachable");
        s.handle_timeout(now);
        for o in drain(&mut s).2 {
            match o {
                Output::Reconnect { peer: p, addrs } => {
                    assert_eq!(p, peer);
                    assert!(!addrs.is_empty());
                    reconnects.push(now);
                }
                Output::Dial { .. } => dials += 1,
                Output::ListingChanged { peer: p, listed } => changes.push((p, listed)),
                _ => {}
            }
        }
    }
    // The first miss closed the connection and redialled; the dials
    // that failed after it (partitioned) were plain dials.
    assert_eq!(reconnects.len(), 1, "{reconnects:?}");
    assert!(dials >= 1);
    assert_eq!(changes, vec![(peer, false)]);
    // Still pinged every interval while unreachable (its steady retries),
    // so the heal is noticed within one interval.
    let next = s.poll_timeout().unwrap();
    assert!(next - now <= interval + interval / 10, "{} ms", next - now);
    // The heal: the dial connects, the ping protocol's pong arrives.
    s.handle_connected(peer);
    s.handle_pong(&peer, next);
    let changes: Vec<_> = drain(&mut s)
        .2
        .into_iter()
        .filter_map(|o| match o {
            Output::ListingChanged { peer, listed } => Some((peer, listed)),
            _ => None,
        })
        .collect();
    assert_eq!(changes, vec![(peer, true)]);
    assert!(!s.store().is_unreachable(&peer));
    assert_eq!(s.counters().reconnects, 1);
}

/// A kind index of `count` distinct junk namespace records (valid points,
/// the signature of another record: free to make, a pairing to check).
fn junk_kind_value(q: &TestQuorum, count: u64, salt: u64) -> Vec<u8> {
    let mut junk = q.namespace(2, Some("farmer"), NOW, NOW + 2 * HOUR);
    junk.signature = q
        .namespace(3, Some("farmer"), NOW, NOW + 2 * HOUR)
        .signature;
    dht::KindValue {
        namespaces: (0..count)
            .map(|i| {
                let mut r = junk.clone();
                r.issued_at_ms = NOW - salt * 1_000 - i;
                r
            })
            .collect(),
    }
    .encode()
}

/// #13 item 1: values from kad were verified inside `handle_value`, that
/// is on the node's event loop. Now `handle_value` only decodes and runs
/// the cheap checks; every signature is checked in a job, and nothing is
/// stored until the job's verdicts come back.
#[test]
fn event_loop_stall_through_kad_values_are_verified_in_jobs_not_in_handle_value() {
    let q = quorum(4, 51);
    let mut s = server(local());
    let value = dht::NamespaceValue {
        namespace: q.namespace(1, Some("farmer"), NOW, NOW + 2 * HOUR),
        peers: vec![q.peer(1, 1, 1, NOW + HOUR), q.peer(2, 1, 1, NOW + HOUR)],
    };
    let key = dht::namespace_key(&q.quorum_key());
    let from = Some(PeerId::random());
    s.handle_value(NOW, from, &key, &value.encode()).unwrap();
    let (_, jobs, other) = drain(&mut s);
    assert_eq!(
        s.store().stats().namespaces,
        0,
        "nothing stored before the job"
    );
    assert!(other.iter().all(|o| !matches!(o, Output::Merged { .. })));
    let [job] = <[VerifyJob; 1]>::try_from(jobs).unwrap();
    assert!(job.is_values());
    assert!(s.queued_value_us() > 0);
    s.handle_verified(NOW, run(job));
    let (_, _, other) = drain(&mut s);
    let report = other
        .iter()
        .find_map(|o| match o {
            Output::Merged {
                report, from: f, ..
            } if *f == from => Some(report.clone()),
            _ => None,
        })
        .unwrap();
    assert!(report.namespace_updated);
    assert_eq!(report.peers_stored, 2);
    assert_eq!(s.store().stats().peer_records, 2);
    assert_eq!(s.queued_value_us(), 0);
    // The same value again changes nothing: no job, reported at once.
    s.handle_value(NOW, from, &key, &value.encode()).unwrap();
    let (_, jobs, other) = drain(&mut s);
    assert!(jobs.is_empty());
    assert!(other.iter().any(|o| matches!(
        o,
        Output::Merged { report, .. } if report.peers_unchanged == 2
    )));
}

/// #13 item 1: a node that floods values spends its own budget. Each
/// sender may cause `work_burst_us` of verification at once and
/// `work_us_per_sec` after; what is over it is dropped unchecked, other
/// senders keep theirs, registrations keep a verification slot, and once
/// the flood's first junk is found the sender is penalized: dropped
/// unread, and disconnected.
#[test]
fn event_loop_stall_through_kad_a_flooding_sender_is_cut_at_its_budget() {
    let q = quorum(4, 52);
    let mut s = with_namespace(&q, local());
    let key = dht::kind_key("farmer");
    let flooder = PeerId::random();
    let burst = ServerConfig::default().value_budget.work_burst_us;
    // 256 junk namespaces per value, about 1 ms each: 7 values fit the
    // 2 s burst, the 8th in part, the 9th not at all.
    let mut accepted = 0;
    let mut refused = 0;
    for salt in 0..12 {
        match s.handle_value(NOW, Some(flooder), &key, &junk_kind_value(&q, 256, salt)) {
            Ok(()) => accepted += 1,
            Err(dht::ValueError::OverBudget) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((accepted, refused), (8, 4));
    assert!(s.queued_value_us() <= burst);
    assert!(s.counters().values_over_budget >= 5);
    // Another sender has its own budget.
    let other = PeerId::random();
    s.handle_value(NOW, Some(other), &key, &junk_kind_value(&q, 16, 99))
        .unwrap();
    // A registration gets a verification slot although values wait.
    register(&mut s, &q, 1, 1);
    let (_, mut jobs, _) = drain(&mut s);
    s.handle_timeout(NOW + ServerConfig::default().max_batch_wait_ms);
    jobs.extend(drain(&mut s).1);
    assert!(jobs.iter().any(|j| !j.is_values()), "registrations starved");
    assert!(jobs.iter().filter(|j| j.is_values()).count() < ServerConfig::default().max_jobs);
    for job in jobs {
        s.handle_verified(NOW, run(job));
    }
    let (replies, _) = settle(&mut s, NOW);
    assert!(replies.contains(&(ReplyId(1), Response::Registered { ttl_ms: HOUR })));
    // The junk was found: the flooder is refused unread, and cut off.
    assert_eq!(
        s.handle_value(NOW + 1, Some(flooder), &key, &junk_kind_value(&q, 1, 100)),
        Err(dht::ValueError::Penalized)
    );
    s.handle_timeout(NOW + 2_000);
    let (_, _, other_outputs) = drain(&mut s);
    assert!(other_outputs
        .iter()
        .any(|o| matches!(o, Output::Disconnect { peer, .. } if *peer == flooder)));
    assert_eq!(s.queued_value_us(), 0);
    assert_eq!(s.store().stats().namespaces, 1, "no junk stored");
}

/// #13 item 1: with values verified off the event loop, the end of a
/// lookup's DHT query must not answer its discovers while a value it
/// found is still being verified.
#[test]
fn event_loop_stall_through_kad_a_lookup_waits_for_its_values_in_verification() {
    let q = quorum(3, 53);
    let mut s = server(local());
    s.handle_request(
        NOW,
        PeerId::random(),
        ReplyId(1),
        discover_of(q.quorum_key()),
    );
    drain(&mut s);
    let value = dht::NamespaceValue {
        namespace: q.namespace(1, Some("farmer"), NOW, NOW + 2 * HOUR),
        peers: vec![q.peer(1, 1, 1, NOW + HOUR)],
    };
    let key = dht::namespace_key(&q.quorum_key());
    s.handle_value(NOW, Some(PeerId::random()), &key, &value.encode())
        .unwrap();
    // The query ends before the value's job is back: no answer yet.
    s.handle_lookup_done(NOW + 1, q.quorum_key());
    let (replies, jobs, _) = drain(&mut s);
    assert!(replies.is_empty(), "{replies:?}");
    for job in jobs {
        s.handle_verified(NOW + 2, run(job));
    }
    let (replies, _) = settle(&mut s, NOW + 2);
    let [(ReplyId(1), Response::Discovered(answer))] = replies.as_slice() else {
        panic!("{replies:?}")
    };
    assert_eq!(answer.peers.len(), 1);
}

/// #13 item 1: a penalized sender's connections are refused for its
/// penalty (`Output::Disconnect` says until when, `Output::Unblock` ends
/// it), and its values still queued when it was found out are dropped
/// unchecked.
#[test]
fn event_loop_stall_through_kad_a_penalized_sender_is_blocked_then_unblocked() {
    let q = quorum(4, 54);
    let config = ServerConfig {
        max_jobs: 2,
        ..local()
    };
    let mut s = with_namespace(&q, config);
    let key = dht::kind_key("farmer");
    let flooder = PeerId::random();
    // Three junk values: the first goes to a job (the only value slot),
    // the others wait.
    for salt in 0..3 {
        s.handle_value(NOW, Some(flooder), &key, &junk_kind_value(&q, 8, salt))
            .unwrap();
    }
    let (_, jobs, _) = drain(&mut s);
    assert_eq!(jobs.len(), 1);
    let waiting = s.queued_value_us();
    assert!(waiting > 0);
    for job in jobs {
        s.handle_verified(NOW, run(job));
    }
    // Found out: what still waited is dropped, no new job.
    let (_, jobs, _) = drain(&mut s);
    assert!(jobs.is_empty(), "the queued junk was still checked");
    assert_eq!(s.queued_value_us(), 0);
    assert_eq!(s.counters().values_penalized, 2);
    s.handle_timeout(NOW + 1_000);
    let (_, _, other) = drain(&mut s);
    let until = other
        .iter()
        .find_map(|o| match o {
            Output::Disconnect { peer, until_ms, .. } if *peer == flooder => Some(*until_ms),
            _ => None,
        })
        .expect("disconnected");
    assert_eq!(until, NOW + ServerConfig::default().penalty_ms);
    s.handle_timeout(until - 1);
    assert!(!drain(&mut s)
        .2
        .iter()
        .any(|o| matches!(o, Output::Unblock { .. })));
    assert!(s.poll_timeout().is_some_and(|t| t <= until));
    s.handle_timeout(until);
    assert!(drain(&mut s)
        .2
        .iter()
        .any(|o| matches!(o, Output::Unblock { peer } if *peer == flooder)));
}

/// #13 item 1: a sender over its byte budget used to be read in full
/// (and every PUT echoed back by kad) for as long as it kept sending. Its
/// connections are now refused for a moment; it is not penalized.
#[test]
fn event_loop_stall_through_kad_a_sender_over_its_byte_budget_is_throttled() {
    let mut s = server(local());
    let sender = PeerId::random();
    let junk = vec![0xa5u8; 1 << 20];
    let key = [7u8; 32];
    // 8 MiB of burst: the ninth MiB is over it.
    for _ in 0..8 {
        assert_eq!(
            s.handle_value(NOW, Some(sender), &key, &junk),
            Err(dht::ValueError::Decode)
        );
    }
    assert_eq!(
        s.handle_value(NOW, Some(sender), &key, &junk),
        Err(dht::ValueError::OverBudget)
    );
    let (_, _, other) = drain(&mut s);
    let throttle = ServerConfig::default().value_throttle_ms;
    assert!(other.iter().any(|o| matches!(
        o,
        Output::Disconnect { peer, until_ms, reason: dht::BlockReason::OverByteBudget }
            if *peer == sender && *until_ms == NOW + throttle
    )));
    assert_eq!(s.counters().senders_throttled, 1);
    assert_eq!(s.counters().penalties, 0, "not an offence");
    // Once only while it holds; unblocked when it ends.
    let _ = s.handle_value(NOW + 1, Some(sender), &key, &junk);
    assert!(!drain(&mut s)
        .2
        .iter()
        .any(|o| matches!(o, Output::Disconnect { .. })));
    s.handle_timeout(NOW + throttle);
    assert!(drain(&mut s)
        .2
        .iter()
        .any(|o| matches!(o, Output::Unblock { peer } if *peer == sender)));
    // Its requests are served as anyone's.
    s.handle_request(
        NOW + throttle,
        sender,
        ReplyId(1),
        discover_of(QuorumKey([1; 48])),
    );
    let (replies, _, _) = drain(&mut s);
    assert!(!replies
        .iter()
        .any(|(_, r)| *r == Response::Rejected(StatusCode::QuotaExceeded)));
}

/// #16: a node restarted from its database asks the other replicas for
/// each namespace it reloaded (a lookup nobody waits for), and merges
/// the registrations it missed.
#[test]
fn resync_looks_a_reloaded_namespace_up_and_merges_what_was_missed() {
    let q = quorum(3, 23);
    let mut s = with_namespace(&q, one_per_job());
    s.resync(NOW, q.quorum_key());
    s.resync(NOW, q.quorum_key());
    let (replies, _, other) = drain(&mut s);
    assert!(replies.is_empty());
    assert_eq!(lookups_started(&other), vec![q.quorum_key()], "one lookup");
    let value = dht::NamespaceValue {
        namespace: q.namespace(1, Some("farmer"), NOW, NOW + 2 * HOUR),
        peers: vec![q.peer(2, 1, 1, NOW + HOUR)],
    };
    let key = dht::namespace_key(&q.quorum_key());
    // The first value is this node's own (kad reads its local store
    // first): the lookup goes on for the others'.
    let own = dht::NamespaceValue {
        namespace: q.namespace(1, Some("farmer"), NOW, NOW + 2 * HOUR),
        peers: Vec::new(),
    };
    let (_, _, other) = feed(&mut s, NOW, None, &key, &own.encode());
    assert!(
        !other.iter().any(|o| matches!(o, Output::LookupDone { .. })),
        "a resync ended by the node's own value"
    );
    let (report, replies, _) = feed(&mut s, NOW, None, &key, &value.encode());
    assert_eq!(report.peers_stored, 1);
    assert!(replies.is_empty(), "nobody was waiting");
    assert_eq!(s.store().stats().peer_records, 1);
    // Its deadline answers nobody and remembers nothing.
    s.handle_timeout(NOW + ServerConfig::default().lookup_timeout_ms);
    assert!(drain(&mut s).0.is_empty());
}

/// A peer asking discovers faster than its rate is refused at once
/// (`QuotaExceeded`, standard `E_UNAVAILABLE`), on both protocols and from
/// one budget, while another peer is served; its budget refills with time.
#[test]
fn discovers_over_a_peers_rate_are_refused_and_others_are_served() {
    let mut s = server(ServerConfig {
        discovers_per_sec: 10,
        discover_burst: 3,
        ..local()
    });
    let (flooder, other) = (PeerId::random(), PeerId::random());
    let discover = || Request::Discover {
        quorum_key: quorum(3, 5).quorum_key(),
        limit: 0,
        cookie: None,
    };
    for i in 0..2 {
        s.handle_request(NOW, flooder, ReplyId(i), discover());
    }
    let standard = dht::StandardRequest::Discover {
        namespace: Some("kind:farmer".into()),
        limit: None,
        cookie: None,
    };
    assert!(
        matches!(
            s.handle_standard(NOW, flooder, ReplyId(2), standard.clone()),
            Some(dht::StandardAnswer::Discovered(Ok(_)))
        ),
        "the third discover is within the burst"
    );
    s.handle_request(NOW, flooder, ReplyId(3), discover());
    s.handle_request(NOW, other, ReplyId(4), discover());
    assert!(matches!(
        s.handle_standard(NOW, flooder, ReplyId(5), standard.clone()),
        Some(dht::StandardAnswer::Discovered(Err(
            dht::StandardRefusal::Unavailable(_)
        )))
    ));
    let (replies, _, _) = drain(&mut s);
    let refused: Vec<u64> = replies
        .iter()
        .filter(|(_, r)| *r == Response::Rejected(StatusCode::QuotaExceeded))
        .map(|(id, _)| id.0)
        .collect();
    assert_eq!(refused, vec![3], "only the flooder's fourth rdht discover");
    assert_eq!(s.counters().discovers_throttled, 2);
    // 100 ms later it has earned one more.
    s.handle_request(NOW + 100, flooder, ReplyId(6), discover());
    let (replies, _, _) = drain(&mut s);
    assert!(
        replies
            .iter()
            .all(|(_, r)| *r != Response::Rejected(StatusCode::QuotaExceeded)),
        "{replies:?}"
    );
}
