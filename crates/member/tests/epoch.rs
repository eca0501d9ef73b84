//! The member's epoch (#14 item 2): it comes from the key share (the
//! configuration's `epoch`, not a constant 0), the namespace records a
//! coordinator builds and the seats a member signs are of it, and a member
//! co-signs or adopts a namespace record of exactly its own epoch.

use member::{
    check_sign_request, classify, classify_peer, Class, Event, Member, MemberConfig, MemberError,
    Peer, QuorumSpec, SignRefusal, Start, Transmit,
};
use rand_core::SeedableRng;
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::{Limits, NamespaceRecord, Request, Response, StatusCode};

const T0: u64 = 1_700_000_000_000;
const MINUTE: u64 = 60_000;

fn quorum(seed: u64) -> TestQuorum {
    TestQuorum::deal(3, 2, &mut rand_chacha::ChaCha20Rng::seed_from_u64(seed))
}

fn spec(q: &TestQuorum) -> QuorumSpec {
    QuorumSpec {
        members: (1..=q.n()).map(|i| q.peer_id(i)).collect(),
        threshold: 2,
        kind: Some("farmer".into()),
    }
}

/// Member `index` of `q` with its dealt share, held as of `epoch`.
fn member(q: &TestQuorum, index: u32, epoch: u64) -> Member {
    let mut config = MemberConfig::new(spec(q), index, q.identities[index as usize - 1].clone(), 1);
    config.epoch = epoch;
    let share = q.shares[index as usize - 1].clone();
    Member::new(config, Start::KeyShare(share), T0, [index as u8; 32]).unwrap()
}

fn unsigned(q: &TestQuorum, epoch: u64) -> NamespaceRecord {
    q.namespace_unsigned(epoch, Some("farmer"), T0, T0 + MINUTE)
}

#[test]
fn a_member_cosigns_only_its_own_epoch_with_a_typed_refusal_otherwise() {
    let q = quorum(1);
    let share = &q.shares[0];
    let check = |epoch: u64| {
        check_sign_request(
            &unsigned(&q, epoch),
            share,
            3,
            &spec(&q),
            T0,
            &Limits::DEFAULT,
        )
    };
    assert_eq!(check(3), Ok(()));
    assert_eq!(check(2), Err(SignRefusal::StaleEpoch { held: 3, asked: 2 }));
    assert_eq!(check(0), Err(SignRefusal::StaleEpoch { held: 3, asked: 0 }));
    assert_eq!(
        check(4),
        Err(SignRefusal::FutureEpoch { held: 3, asked: 4 })
    );
    assert_eq!(
        SignRefusal::StaleEpoch { held: 3, asked: 2 }.code(),
        StatusCode::StaleEpoch
    );
    assert_eq!(
        SignRefusal::FutureEpoch { held: 3, asked: 4 }.code(),
        StatusCode::EpochMismatch
    );
    // After a reshare the key set differs but the quorum key stays: the
    // epoch is what a member names first.
    let mut reshared = unsigned(&q, 4);
    reshared.commitments[1] = reshared.commitments[0];
    assert_eq!(
        check_sign_request(&reshared, share, 3, &spec(&q), T0, &Limits::DEFAULT),
        Err(SignRefusal::FutureEpoch { held: 3, asked: 4 })
    );
    // The same key set at the member's epoch: another quorum's doing.
    let mut forged = unsigned(&q, 3);
    forged.commitments[1] = forged.commitments[0];
    assert_eq!(
        check_sign_request(&forged, share, 3, &spec(&q), T0, &Limits::DEFAULT),
        Err(SignRefusal::OtherQuorum)
    );

    // Through the member core, over the wire.
    let mut m = member(&q, 1, 3);
    let from = q.peer_id(2);
    for (epoch, expected) in [
        (2, Some(StatusCode::StaleEpoch)),
        (4, Some(StatusCode::EpochMismatch)),
        (0, Some(StatusCode::StaleEpoch)),
        (3, None),
    ] {
        let answer = m.handle_request(T0, &from, Request::SignNamespace(unsigned(&q, epoch)));
        match expected {
            Some(code) => assert_eq!(answer, Response::Rejected(code), "epoch {epoch}"),
            None => assert!(
                matches!(answer, Response::NamespaceShare { index: 1, .. }),
                "epoch {epoch}: {answer:?}"
            ),
        }
    }
    let refused: Vec<StatusCode> = std::iter::from_fn(|| m.poll_event())
        .filter_map(|e| match e {
            Event::SignRefused { code, .. } => Some(code),
            _ => None,
        })
        .collect();
    assert_eq!(
        refused,
        vec![
            StatusCode::StaleEpoch,
            StatusCode::EpochMismatch,
            StatusCode::StaleEpoch
        ]
    );
}

#[test]
fn a_member_adopts_only_a_namespace_record_of_its_own_epoch() {
    let q = quorum(2);
    let mut m = member(&q, 1, 3);
    let from = q.peer_id(2);
    for (epoch, code) in [(2, StatusCode::StaleEpoch), (4, StatusCode::EpochMismatch)] {
        let signed = q.namespace(epoch, Some("farmer"), T0, T0 + MINUTE);
        assert_eq!(
            m.handle_request(T0, &from, Request::NamespaceReady(signed)),
            Response::Rejected(code)
        );
        assert!(m.namespace().is_none());
    }
    let signed = q.namespace(3, Some("farmer"), T0, T0 + MINUTE);
    assert_eq!(
        m.handle_request(T0, &from, Request::NamespaceReady(signed.clone())),
        Response::Accepted
    );
    assert_eq!(m.namespace(), Some(&signed));
    // Its seat is of that epoch.
    let mut seats = Vec::new();
    while let Some(t) = m.poll_transmit() {
        if let Request::RegisterPeer(r) = t.request {
            seats.push(r.seat.epoch);
        }
    }
    assert_eq!(seats, vec![3]);
}

/// Delivers member-to-member requests; returns those to rendezvous nodes.
fn pump(members: &mut [Member], q: &TestQuorum, now: u64) -> Vec<(u32, Transmit)> {
    let mut out = Vec::new();
    loop {
        let mut moved = false;
        for i in 0..members.len() {
            while let Some(t) = members[i].poll_transmit() {
                moved = true;
                match t.to {
                    Peer::Member(j) => {
                        let from = q.peer_id(i as u32 + 1);
                        let r = members[j as usize - 1].handle_request(now, &from, t.request);
                        members[i].handle_response(now, t.id, Ok(r));
                    }
                    Peer::Rendezvous(_) => out.push((i as u32 + 1, t)),
                }
            }
        }
        if !moved {
            return out;
        }
    }
}

/// A quorum whose key shares are of epoch 5 (after five reshares, say):
/// the coordinator's record is of epoch 5, co-signed by the members of
/// epoch 5, and the seats are of epoch 5. A member still holding epoch 4
/// does not co-sign it.
#[test]
fn the_coordinator_builds_and_members_seat_the_epoch_of_their_key_share() {
    let q = quorum(3);
    let mut members: Vec<Member> = vec![member(&q, 1, 5), member(&q, 2, 5), member(&q, 3, 4)];
    // Each asks its one rendezvous node for the namespace: none there.
    for (from, t) in pump(&mut members, &q, T0) {
        assert!(matches!(t.request, Request::Discover { .. }));
        members[from as usize - 1].handle_response(
            T0,
            t.id,
            Ok(Response::Rejected(StatusCode::UnknownNamespace)),
        );
    }
    // Member 1 coordinates at once; member 2 co-signs, member 3 refuses.
    let out = pump(&mut members, &q, T0);
    let registered: Vec<NamespaceRecord> = out
        .iter()
        .filter_map(|(_, t)| match &t.request {
            Request::RegisterNamespace(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(registered.len(), 1, "{out:?}");
    assert_eq!(registered[0].epoch, 5);
    let verified = rendezvous_proto::verify_namespace(&registered[0], T0, &Limits::DEFAULT);
    assert!(verified.is_ok(), "{verified:?}");
    let refusals: Vec<StatusCode> = std::iter::from_fn(|| members[2].poll_event())
        .filter_map(|e| match e {
            Event::SignRefused { code, .. } => Some(code),
            _ => None,
        })
        .collect();
    assert_eq!(refusals, vec![StatusCode::EpochMismatch]);
    // The node takes it; the coordinator announces it and everyone of
    // epoch 5 registers a seat of epoch 5.
    for (from, t) in out {
        members[from as usize - 1].handle_response(
            T0,
            t.id,
            Ok(Response::Registered { ttl_ms: MINUTE }),
        );
    }
    let out = pump(&mut members, &q, T0);
    let mut seats: Vec<(u32, u64)> = out
        .iter()
        .filter_map(|(from, t)| match &t.request {
            Request::RegisterPeer(r) => Some((*from, r.seat.epoch)),
            _ => None,
        })
        .collect();
    seats.sort();
    assert_eq!(seats, vec![(1, 5), (2, 5)]);
    assert!(members[2].namespace().is_none(), "epoch 4 adopted epoch 5");
}

#[test]
fn a_dkg_gives_epoch_0_only() {
    let q = quorum(4);
    let ids: Vec<Vec<u8>> = (1..=3).map(|i| q.peer_id(i).to_bytes()).collect();
    let dkg = dkg::DkgConfig::new(&ids, 2, b"epoch", 1, 1_000).unwrap();
    let mut config = MemberConfig::new(spec(&q), 1, q.identities[0].clone(), 1);
    config.epoch = 1;
    assert!(matches!(
        Member::new(config.clone(), Start::Dkg(dkg.clone()), T0, [0; 32]),
        Err(MemberError::Config(_))
    ));
    config.epoch = 0;
    assert!(Member::new(config, Start::Dkg(dkg), T0, [0; 32]).is_ok());
}

/// A peer registration refused `StaleEpoch` (the node holds a later
/// epoch than the member's share) is not held there: retried, never
/// counted as accepted. A namespace registration refused so still is.
#[test]
fn a_peer_record_refused_as_stale_epoch_is_retried_not_counted_as_held() {
    assert_eq!(classify_peer(StatusCode::StaleEpoch), Class::Transient);
    assert_eq!(classify(StatusCode::StaleEpoch), Class::AlreadyHeld);
    for code in StatusCode::ALL {
        if code != StatusCode::StaleEpoch {
            assert_eq!(classify_peer(code), classify(code), "{code}");
        }
    }
    let q = quorum(5);
    let mut m = member(&q, 1, 2);
    let signed = q.namespace(2, Some("farmer"), T0, T0 + MINUTE);
    assert_eq!(
        m.handle_request(T0, &q.peer_id(2), Request::NamespaceReady(signed)),
        Response::Accepted
    );
    let mut retried = 0;
    let mut now = T0;
    for _ in 0..3 {
        while let Some(t) = m.poll_transmit() {
            if let Request::RegisterPeer(_) = t.request {
                retried += 1;
                m.handle_response(now, t.id, Ok(Response::Rejected(StatusCode::StaleEpoch)));
            }
        }
        now = m.poll_timeout().expect("a retry is due");
        m.handle_timeout(now);
    }
    assert!(retried >= 3, "retried {retried} times");
    let events: Vec<Event> = std::iter::from_fn(|| m.poll_event()).collect();
    assert!(!events.iter().any(|e| matches!(e, Event::Registered { .. })));
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Refused {
            code: Some(StatusCode::StaleEpoch),
            class: Class::Transient,
            ..
        }
    )));
    assert_eq!(m.status(now).registered_at, 0);
    assert!(m.rendezvous().all(|r| r.dropped.is_none()));
}
