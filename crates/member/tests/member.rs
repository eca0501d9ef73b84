//! The member core driven by hand: no sockets, no runtime. A tiny
//! in-test "network" carries requests between the members of a dealt
//! quorum, and the tests play the rendezvous nodes themselves, answering
//! each registration as the case needs.

use std::collections::BTreeMap;

use member::{
    Class, Event, Member, MemberConfig, MemberError, Peer, QuorumSpec, Start, Transmit,
    TransportError,
};
use rand_core::SeedableRng;
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::{NamespaceRecord, Request, Response, StatusCode};

const T0: u64 = 1_700_000_000_000;

struct Net {
    quorum: TestQuorum,
    members: Vec<Member>,
    /// Requests to rendezvous nodes, by sender index: (id, node, request).
    to_rendezvous: Vec<(u32, Transmit)>,
}

fn spec(q: &TestQuorum, threshold: u32) -> QuorumSpec {
    QuorumSpec {
        members: (1..=q.n()).map(|i| q.peer_id(i)).collect(),
        threshold,
        kind: Some("farmer".into()),
    }
}

fn net(n: u32, threshold: u32, rendezvous: usize) -> Net {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
    let quorum = TestQuorum::deal(n, threshold, &mut rng);
    let members = (1..=n)
        .map(|i| {
            let mut config = MemberConfig::new(
                spec(&quorum, threshold),
                i,
                quorum.identities[(i - 1) as usize].clone(),
                rendezvous,
            );
            config.addrs = vec![format!("/ip4/127.0.0.1/tcp/{}", 4000 + i).parse().unwrap()];
            let share = quorum.shares[(i - 1) as usize].clone();
            Member::new(config, Start::KeyShare(share), T0, [i as u8; 32]).unwrap()
        })
        .collect();
    Net {
        quorum,
        members,
        to_rendezvous: Vec::new(),
    }
}

impl Net {
    /// Delivers member-to-member requests until none is left; requests to
    /// rendezvous nodes are collected in `to_rendezvous`.
    fn pump(&mut self, now: u64) {
        loop {
            let mut moved = false;
            for i in 0..self.members.len() {
                while let Some(t) = self.members[i].poll_transmit() {
                    moved = true;
                    match t.to {
                        Peer::Member(j) => {
                            let from = self.quorum.peer_id(i as u32 + 1);
                            let response = self.members[(j - 1) as usize].handle_request(
                                now,
                                &from,
                                t.request.clone(),
                            );
                            self.members[i].handle_response(now, t.id, Ok(response));
                        }
                        Peer::Rendezvous(_) => self.to_rendezvous.push((i as u32 + 1, t)),
                        Peer::Node(peer) => panic!("no resharing here, yet a request to {peer}"),
                    }
                }
            }
            if !moved {
                break;
            }
        }
    }

    /// Answers every pending rendezvous request with `answer`.
    fn answer_all(
        &mut self,
        now: u64,
        mut answer: impl FnMut(u32, usize, &Request) -> Result<Response, TransportError>,
    ) {
        for (from, t) in std::mem::take(&mut self.to_rendezvous) {
            let Peer::Rendezvous(r) = t.to else { continue };
            let response = answer(from, r, &t.request);
            self.members[(from - 1) as usize].handle_response(now, t.id, response);
        }
    }

    fn events(&mut self, index: u32) -> Vec<Event> {
        let m = &mut self.members[(index - 1) as usize];
        std::iter::from_fn(|| m.poll_event()).collect()
    }

    fn timeout(&mut self, now: u64) {
        for m in &mut self.members {
            m.handle_timeout(now);
        }
        self.pump(now);
    }
}

/// A rendezvous that knows nothing at first (discover: UnknownNamespace),
/// accepts namespaces, and answers peer records with `peer`.
fn honest(ns: &mut Option<NamespaceRecord>, request: &Request) -> Response {
    match request {
        Request::Discover { .. } => match ns {
            Some(record) => Response::Discovered(rendezvous_proto::DiscoverAnswer {
                namespace: record.clone(),
                peers: Vec::new(),
                cookie: Default::default(),
            }),
            None => Response::Rejected(StatusCode::UnknownNamespace),
        },
        Request::RegisterNamespace(record) => {
            *ns = Some(record.clone());
            Response::Registered { ttl_ms: 1_000 }
        }
        Request::RegisterPeer(_) if ns.is_none() => {
            Response::Rejected(StatusCode::UnknownNamespace)
        }
        Request::RegisterPeer(r) => Response::Registered {
            ttl_ms: r.expires_at_ms() - T0,
        },
        Request::Unregister { .. } => Response::Unregistered,
        _ => Response::Rejected(StatusCode::NotAuthorized),
    }
}

/// Brings a quorum of `n` with 2 rendezvous nodes to the point where the
/// namespace is signed and every member has sent its peer record; returns
/// the network with those registrations pending.
fn to_registration(n: u32, threshold: u32) -> (Net, Vec<Option<NamespaceRecord>>) {
    let mut net = net(n, threshold, 2);
    let mut stores = vec![None, None];
    net.pump(T0);
    // The namespace check: nothing there.
    net.answer_all(T0, |_, r, req| Ok(honest(&mut stores[r].clone(), req)));
    net.pump(T0);
    // Member 1 coordinated at once; the others co-signed; the record is
    // registered at both nodes.
    let pending: Vec<_> = std::mem::take(&mut net.to_rendezvous);
    assert!(
        pending
            .iter()
            .all(|(from, t)| *from == 1 && matches!(t.request, Request::RegisterNamespace(_))),
        "only the coordinator registers the namespace: {pending:?}"
    );
    assert_eq!(pending.len(), 2);
    net.to_rendezvous = pending;
    net.answer_all(T0, |_, r, req| Ok(honest(&mut stores[r], req)));
    net.pump(T0);
    (net, stores)
}

#[test]
fn every_member_registers_within_one_round_after_the_coordinator_announces() {
    let (mut net, mut stores) = to_registration(16, 11);
    // Every member sent its peer record to both nodes at once: nobody
    // waited for a turn.
    let peers: Vec<u32> = net
        .to_rendezvous
        .iter()
        .filter(|(_, t)| matches!(t.request, Request::RegisterPeer(_)))
        .map(|(from, _)| *from)
        .collect();
    assert_eq!(peers.len(), 32, "{peers:?}");
    net.answer_all(T0, |_, r, req| Ok(honest(&mut stores[r], req)));
    for i in 1..=16 {
        assert_eq!(
            net.members[(i - 1) as usize].registered_current(),
            2,
            "member {i}"
        );
        let events = net.events(i);
        assert!(events
            .iter()
            .any(|e| matches!(e, Event::Registered { first: true, .. })));
    }
    // The record carried the namespace's quorum key and every member signed
    // its own.
    let ns = stores[0].clone().unwrap();
    assert_eq!(ns.members.as_ref().map(Vec::len), Some(16));
    assert!(rendezvous_proto::verify_namespace(&ns, T0, &Default::default()).is_ok());
}

#[test]
fn a_transient_refusal_is_retried_with_backoff_and_never_ends_the_member() {
    let (mut net, mut stores) = to_registration(4, 3);
    // Node 0 is busy for a while; node 1 is honest.
    for round in 0..6u64 {
        let now = T0 + round * 60_000;
        net.answer_all(now, |_, r, req| {
            if r == 0 && matches!(req, Request::RegisterPeer(_)) {
                Ok(Response::Rejected(StatusCode::QuotaExceeded))
            } else {
                Ok(honest(&mut stores[r], req))
            }
        });
        net.timeout(now + 59_999);
    }
    for m in &net.members {
        assert!(m.failure().is_none());
        let states: Vec<_> = m.rendezvous().cloned().collect();
        assert!(states[0].attempts >= 3, "{states:?}");
        assert_eq!(states[0].dropped, None);
        assert_eq!(states[0].last_code, Some(StatusCode::QuotaExceeded));
        assert!(states[1].accepted_seq.is_some());
    }
    // The node recovers: the next retry gets through.
    let now = T0 + 10 * 60_000;
    net.timeout(now);
    net.answer_all(now, |_, r, req| Ok(honest(&mut stores[r], req)));
    for m in &net.members {
        assert_eq!(m.registered_current(), 2);
    }
}

#[test]
fn a_permanent_refusal_drops_that_node_only() {
    let (mut net, mut stores) = to_registration(4, 3);
    net.answer_all(T0, |_, r, req| {
        if r == 1 && matches!(req, Request::RegisterPeer(_)) {
            Ok(Response::Rejected(StatusCode::InvalidShareSignature))
        } else {
            Ok(honest(&mut stores[r], req))
        }
    });
    for i in 1..=4 {
        let m = &net.members[(i - 1) as usize];
        assert!(m.failure().is_none());
        let states: Vec<_> = m.rendezvous().cloned().collect();
        assert_eq!(states[1].dropped, Some(StatusCode::InvalidShareSignature));
        assert!(states[0].accepted_seq.is_some());
        let events = net.events(i);
        assert!(events.iter().any(|e| matches!(
            e,
            Event::RendezvousDropped {
                rendezvous: 1,
                code: StatusCode::InvalidShareSignature
            }
        )));
    }
    // The dropped node is not asked again, even at the refresh (where the
    // namespace record is renewed too).
    let refresh = T0 + 3_600_000;
    net.timeout(refresh);
    assert!(net
        .to_rendezvous
        .iter()
        .all(|(_, t)| t.to == Peer::Rendezvous(0)));
    let peers = net
        .to_rendezvous
        .iter()
        .filter(|(_, t)| matches!(t.request, Request::RegisterPeer(_)))
        .count();
    assert_eq!(peers, 4);
}

#[test]
fn a_namespace_missing_on_one_node_is_registered_there_again() {
    let (mut net, mut stores) = to_registration(4, 3);
    // Node 1 lost the namespace (a restart without its database).
    stores[1] = None;
    net.answer_all(T0, |_, r, req| Ok(honest(&mut stores[r], req)));
    net.pump(T0);
    // Each member answered UnknownNamespace by registering the namespace
    // at node 1 itself, then the peer record again.
    let again: Vec<_> = net
        .to_rendezvous
        .iter()
        .map(|(_, t)| (t.to, matches!(t.request, Request::RegisterNamespace(_))))
        .collect();
    assert_eq!(again.len(), 4, "{again:?}");
    assert!(
        again
            .iter()
            .all(|(to, ns)| *to == Peer::Rendezvous(1) && *ns),
        "{again:?}"
    );
    net.answer_all(T0, |_, r, req| Ok(honest(&mut stores[r], req)));
    net.pump(T0);
    net.answer_all(T0, |_, r, req| Ok(honest(&mut stores[r], req)));
    for m in &net.members {
        assert_eq!(m.registered_current(), 2);
    }
    assert!(stores[1].is_some());
}

#[test]
fn lost_answers_are_transient() {
    let (mut net, mut stores) = to_registration(4, 3);
    net.answer_all(T0, |_, r, req| {
        if r == 0 {
            Err(TransportError::Timeout)
        } else {
            Ok(honest(&mut stores[r], req))
        }
    });
    for i in 1..=4 {
        let events = net.events(i);
        assert!(events.iter().any(|e| matches!(
            e,
            Event::Refused {
                rendezvous: 0,
                transport: Some(TransportError::Timeout),
                class: Class::Transient,
                ..
            }
        )));
    }
    net.timeout(T0 + 1_000);
    assert_eq!(net.to_rendezvous.len(), 4, "every member retried node 0");
}

#[test]
fn a_member_gives_up_only_when_no_node_accepted_it_for_the_configured_time() {
    let (mut net, _) = to_registration(4, 3);
    let limit = net.members[0].config().give_up_after_ms;
    let mut now = T0;
    while now < T0 + limit - 1_000 {
        net.answer_all(now, |_, _, _| Ok(Response::Rejected(StatusCode::Internal)));
        now += 1_000;
        net.timeout(now);
    }
    assert!(net.members.iter().all(|m| m.failure().is_none()));
    net.answer_all(now, |_, _, _| Ok(Response::Rejected(StatusCode::Internal)));
    net.timeout(T0 + limit + 1);
    for m in &net.members {
        assert!(matches!(
            m.failure(),
            Some(MemberError::NoRendezvousAccepted {
                last_code: Some(StatusCode::Internal),
                ..
            })
        ));
    }
}

#[test]
fn a_damaged_key_share_is_refused_before_anything_is_sent() {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
    let q = TestQuorum::deal(3, 2, &mut rng);
    let mut share = q.shares[0].clone();
    // Another member's secret under this member's index: the public key
    // set no longer matches.
    share.secret = dkg::SecretKeyShare::new(1, *q.shares[1].secret.scalar()).unwrap();
    let config = MemberConfig::new(spec(&q, 2), 1, q.identities[0].clone(), 1);
    let err = Member::new(config, Start::KeyShare(share), T0, [0; 32]).err();
    assert_eq!(err, Some(MemberError::KeyShareMismatch { index: 1 }));
}

#[test]
fn members_only_sign_and_adopt_their_own_namespace() {
    let mut net = net(3, 2, 1);
    let now = T0;
    let good = net
        .quorum
        .namespace_unsigned(0, Some("farmer"), now, now + 60_000);
    let from = net.quorum.peer_id(2);
    let r = net.members[0].handle_request(now, &from, Request::SignNamespace(good.clone()));
    assert!(matches!(r, Response::NamespaceShare { index: 1, .. }));
    let mut wrong_kind = good.clone();
    wrong_kind.kind = Some("harvester".into());
    assert_eq!(
        net.members[0].handle_request(now, &from, Request::SignNamespace(wrong_kind)),
        Response::Rejected(StatusCode::NotAuthorized)
    );
    let mut no_members = good.clone();
    no_members.members = None;
    assert_eq!(
        net.members[0].handle_request(now, &from, Request::SignNamespace(no_members)),
        Response::Rejected(StatusCode::NotAMember)
    );
    // An outsider may not ask at all.
    let outsider = libp2p_identity::Keypair::generate_ed25519()
        .public()
        .to_peer_id();
    assert_eq!(
        net.members[0].handle_request(now, &outsider, Request::SignNamespace(good.clone())),
        Response::Rejected(StatusCode::NotAMember)
    );
    // A record whose signature does not cover it, announced as ready, is
    // refused; the genuine one is adopted.
    let signed = net.quorum.namespace(0, Some("farmer"), now, now + 60_000);
    let mut altered = signed.clone();
    altered.issued_at_ms += 1;
    assert_eq!(
        net.members[0].handle_request(now, &from, Request::NamespaceReady(altered)),
        Response::Rejected(StatusCode::InvalidNamespaceSignature)
    );
    assert!(net.members[0].namespace().is_none());
    assert_eq!(
        net.members[0].handle_request(now, &from, Request::NamespaceReady(signed.clone())),
        Response::Accepted
    );
    assert_eq!(net.members[0].namespace(), Some(&signed));
}

#[test]
fn the_dkg_runs_through_the_core_and_the_first_member_coordinates() {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(11);
    let q = TestQuorum::deal(4, 3, &mut rng);
    let spec = spec(&q, 3);
    let ids: Vec<Vec<u8>> = spec.members.iter().map(|p| p.to_bytes()).collect();
    let mut members: Vec<Member> = (1..=4)
        .map(|i| {
            let dkg = dkg::DkgConfig::new(&ids, 3, b"test", i, 1_000).unwrap();
            let config =
                MemberConfig::new(spec.clone(), i, q.identities[(i - 1) as usize].clone(), 1);
            Member::new(config, Start::Dkg(dkg), T0, [i as u8; 32]).unwrap()
        })
        .collect();
    for (i, m) in members.iter_mut().enumerate() {
        for j in 1..=4u32 {
            if j != i as u32 + 1 {
                m.handle_connected(T0, j);
            }
        }
    }
    let mut net = Net {
        quorum: q,
        members,
        to_rendezvous: Vec::new(),
    };
    net.pump(T0);
    let mut keys = BTreeMap::new();
    for i in 1..=4 {
        for e in net.events(i) {
            if let Event::DkgFinished(out) = e {
                keys.insert(i, out.key_share.quorum_key());
            }
        }
    }
    assert_eq!(
        keys.len(),
        4,
        "every member finished the DKG without waiting out a phase"
    );
    assert!(keys.values().all(|k| Some(k) == keys.get(&1)));
    // Member 1 coordinated right away: its namespace registration is out.
    assert!(net
        .to_rendezvous
        .iter()
        .any(|(from, t)| *from == 1 && matches!(t.request, Request::RegisterNamespace(_))));
}

// ----- #13 item 8: a failed DKG is retried ------------------------------------

/// Members of `net` that are up; the others neither run nor answer.
fn pump_online(net: &mut Net, online: &[bool], now: u64) {
    loop {
        let mut moved = false;
        for i in 0..net.members.len() {
            if !online[i] {
                continue;
            }
            while let Some(t) = net.members[i].poll_transmit() {
                moved = true;
                let Peer::Member(j) = t.to else {
                    net.to_rendezvous.push((i as u32 + 1, t));
                    continue;
                };
                let to = (j - 1) as usize;
                let response = if online[to] {
                    let from = net.quorum.peer_id(i as u32 + 1);
                    Ok(net.members[to].handle_request(now, &from, t.request.clone()))
                } else {
                    Err(TransportError::Unreachable)
                };
                net.members[i].handle_response(now, t.id, response);
            }
        }
        if !moved {
            return;
        }
    }
}

/// Runs the online members' timers and messages until `done` or `limit`;
/// returns the time reached.
fn run_online(
    net: &mut Net,
    online: &[bool],
    mut now: u64,
    limit: u64,
    mut done: impl FnMut(&mut Net) -> bool,
) -> u64 {
    loop {
        pump_online(net, online, now);
        if done(net) {
            return now;
        }
        let next = (0..net.members.len())
            .filter(|i| online[*i])
            .filter_map(|i| net.members[i].poll_timeout())
            .min();
        let Some(next) = next else { return now };
        assert!(next <= limit, "nothing happened before {limit}");
        now = now.max(next);
        for (member, up) in net.members.iter_mut().zip(online) {
            if *up {
                member.handle_timeout(now);
            }
        }
    }
}

#[test]
fn dkg_retry_a_failed_run_is_retried_with_a_fresh_session_and_then_succeeds() {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(13);
    let q = TestQuorum::deal(3, 3, &mut rng);
    let spec = spec(&q, 3);
    let ids: Vec<Vec<u8>> = spec.members.iter().map(|p| p.to_bytes()).collect();
    let members: Vec<Member> = (1..=3)
        .map(|i| {
            let dkg = dkg::DkgConfig::new(&ids, 3, b"test", i, 1_000).unwrap();
            let mut config =
                MemberConfig::new(spec.clone(), i, q.identities[(i - 1) as usize].clone(), 1);
            config.dkg_wait_ms = 0;
            Member::new(config, Start::Dkg(dkg), T0, [i as u8; 32]).unwrap()
        })
        .collect();
    let mut net = Net {
        quorum: q,
        members,
        to_rendezvous: Vec::new(),
    };
    // Member 3 is down: 1 and 2 cannot reach the threshold of 3.
    let mut online = [true, true, false];
    net.members[0].handle_connected(T0, 2);
    net.members[1].handle_connected(T0, 1);
    let mut failed = BTreeMap::new();
    let now = run_online(&mut net, &online, T0, T0 + 10_000, |net| {
        for i in 1..=2 {
            for e in net.events(i) {
                assert!(!matches!(e, Event::Failed(_)), "a failed DKG ends nothing");
                if let Event::DkgFailed { attempt, error, .. } = e {
                    failed.insert(i, (attempt, error));
                }
            }
        }
        failed.len() == 2
    });
    for (attempt, error) in failed.values() {
        assert_eq!(*attempt, 0);
        assert_eq!(
            *error,
            dkg::DkgError::TooFewHellos {
                got: 2,
                threshold: 3
            }
        );
    }
    assert!(net.members.iter().all(|m| m.failure().is_none()));

    // Member 3 comes up; the retry (after a backoff) brings all three into
    // one run, which succeeds.
    online[2] = true;
    for i in 0..3u32 {
        for j in 1..=3u32 {
            if j != i + 1 {
                net.members[i as usize].handle_connected(now, j);
            }
        }
    }
    let mut keys = BTreeMap::new();
    let mut started = BTreeMap::new();
    run_online(&mut net, &online, now, now + 60_000, |net| {
        for i in 1..=3 {
            for e in net.events(i) {
                match e {
                    Event::DkgStarted { attempt } => {
                        started.insert(i, attempt);
                    }
                    Event::DkgFinished(out) => {
                        keys.insert(i, out.key_share.quorum_key());
                    }
                    Event::DkgFailed { .. } | Event::Failed(_) => panic!("{e:?}"),
                    _ => {}
                }
            }
        }
        keys.len() == 3
    });
    assert!(keys.values().all(|k| Some(k) == keys.get(&1)));
    // Members 1 and 2 retried as attempt 1, and member 3 (which began at
    // attempt 0) moved to it.
    assert_eq!(started.get(&1), Some(&1));
    assert_eq!(started.get(&2), Some(&1));
    assert!(net.members.iter().all(|m| m.key_share().is_some()));
}

/// A restarted member whose namespace check a node refuses for a while
/// (`QuotaExceeded`: a node under load, or one that refuses this sender
/// for a while) asks that node again after its backoff, and registers as
/// soon as the node answers: it does not take the refusal for "no record"
/// and wait for its coordinator turn (`rank x takeover_ms`).
#[test]
fn a_namespace_check_refused_for_a_while_is_asked_again() {
    let mut net = net(4, 3, 1);
    let record = net.quorum.namespace(0, Some("farmer"), T0, T0 + 3_600_000);
    let mut stored = Some(record.clone());
    net.pump(T0);
    net.answer_all(T0, |_, _, req| match req {
        Request::Discover { .. } => Ok(Response::Rejected(StatusCode::QuotaExceeded)),
        _ => Ok(Response::Rejected(StatusCode::Internal)),
    });
    let takeover = net.members[3].config().takeover_ms;
    let retry_at = net.members[3].poll_timeout().expect("a retry is due");
    assert!(
        retry_at < T0 + takeover,
        "asked again after {} ms, not at its coordinator turn",
        retry_at - T0
    );
    // The first retry is drawn from the backoff's first step (at most
    // 500 ms): by 1 s every member has asked again.
    let retry_at = T0 + 1_000;
    assert!(retry_at < T0 + takeover);
    net.timeout(retry_at);
    let asked_again = net
        .to_rendezvous
        .iter()
        .filter(|(_, t)| matches!(t.request, Request::Discover { .. }))
        .count();
    assert_eq!(asked_again, 4, "every member asked again");
    net.answer_all(retry_at, |_, _, req| Ok(honest(&mut stored, req)));
    net.pump(retry_at);
    for index in 1..=4 {
        let events = net.events(index);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::NamespaceAdopted(r) if *r == record)),
            "member {index} adopted the record found on the second ask"
        );
        assert!(events.iter().any(|e| matches!(e, Event::PeerSigned(_))));
    }
    assert!(net
        .to_rendezvous
        .iter()
        .any(|(_, t)| matches!(t.request, Request::RegisterPeer(_))));
}
