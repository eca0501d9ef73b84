//! Epochs in validation and on the client (#14 item 2): a seat older than
//! its namespace record is `StaleEpoch`, a newer one `EpochMismatch`; a
//! client never accepts an answer that mixes epochs, neither within one
//! answer nor when it combines pages or nodes.

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rendezvous_proto::seated::{check_seat_epoch, check_seated_fields, verify_served};
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::{
    verify_discover_answer, Cookie, DiscoverAnswer, DiscoveredPeer, Limits, PeerRecord, StatusCode,
    VerifiedAnswer,
};

const NOW: u64 = 1_700_000_000_000;
const HOUR: u64 = 3_600_000;
const L: Limits = Limits::DEFAULT;

fn deal(seed: u64) -> TestQuorum {
    TestQuorum::deal(4, 3, &mut ChaCha20Rng::seed_from_u64(seed))
}

fn found(record: PeerRecord) -> DiscoveredPeer {
    DiscoveredPeer {
        record,
        last_seen_ms: None,
    }
}

fn answer(q: &TestQuorum, epoch: u64, issued: u64, peers: Vec<PeerRecord>) -> DiscoverAnswer {
    DiscoverAnswer {
        namespace: q.namespace(epoch, Some("farmer"), issued, NOW + HOUR),
        peers: peers.into_iter().map(found).collect(),
        cookie: Cookie(vec![epoch as u8]),
    }
}

fn verified(q: &TestQuorum, a: &DiscoverAnswer) -> VerifiedAnswer {
    verify_discover_answer(
        a,
        &q.quorum_key(),
        NOW,
        &L,
        &mut ChaCha20Rng::seed_from_u64(1),
    )
    .expect("the namespace verifies")
}

/// (index, epoch, seq) of the peers kept.
fn kept(v: &VerifiedAnswer) -> Vec<(u32, u64, u64)> {
    v.peers
        .iter()
        .map(|p| (p.record.index(), p.record.seat.epoch, p.record.seq()))
        .collect()
}

/// (index, epoch, code) of the peers rejected.
fn refused(v: &VerifiedAnswer) -> Vec<(u32, u64, StatusCode)> {
    let mut out: Vec<_> = v
        .rejected
        .iter()
        .map(|r| (r.record.index(), r.record.seat.epoch, r.code))
        .collect();
    out.sort();
    out
}

#[test]
fn an_older_seat_is_stale_epoch_and_a_newer_one_epoch_mismatch() {
    assert_eq!(check_seat_epoch(4, 4), Ok(()));
    assert_eq!(check_seat_epoch(3, 4), Err(StatusCode::StaleEpoch));
    assert_eq!(check_seat_epoch(0, u64::MAX), Err(StatusCode::StaleEpoch));
    assert_eq!(check_seat_epoch(5, 4), Err(StatusCode::EpochMismatch));
    let q = deal(1);
    let ns = q.namespace(4, None, NOW, NOW + HOUR);
    for (epoch, expected) in [
        (4, Ok(())),
        (3, Err(StatusCode::StaleEpoch)),
        (0, Err(StatusCode::StaleEpoch)),
        (5, Err(StatusCode::EpochMismatch)),
    ] {
        let r = q.peer(2, epoch, 1, NOW + HOUR);
        assert_eq!(
            check_seated_fields(&r, &ns, NOW, &L, Some(&q.peer_id(2))),
            expected,
            "seat of epoch {epoch} under a namespace of epoch 4"
        );
        assert_eq!(verify_served(&[r], &ns, NOW, &L), vec![expected]);
    }
    // The epoch is decided before the fields after it: an old seat of the
    // wrong member is still StaleEpoch (a cheap, stable verdict).
    let mut seat = q.seat(2, 3);
    seat.peer_id = q.peer_id(3);
    let r = PeerRecord::sign(seat, vec![], 1, NOW + HOUR, &q.identities[2]);
    assert_eq!(
        check_seated_fields(&r, &ns, NOW, &L, None),
        Err(StatusCode::StaleEpoch)
    );
}

#[test]
fn a_discover_answer_never_mixes_epochs() {
    let q = deal(2);
    let a = answer(
        &q,
        2,
        NOW,
        vec![
            q.peer(1, 2, 1, NOW + HOUR), // kept
            q.peer(2, 1, 9, NOW + HOUR), // older epoch: a higher seq does not help
            q.peer(3, 3, 1, NOW + HOUR), // later epoch
            q.peer(4, 2, 1, NOW + HOUR), // kept
            q.peer(2, 2, 1, NOW + HOUR), // kept: member 2 of this epoch
        ],
    );
    let v = verified(&q, &a);
    assert_eq!(v.epoch(), 2);
    assert_eq!(kept(&v), vec![(1, 2, 1), (2, 2, 1), (4, 2, 1)]);
    assert_eq!(
        refused(&v),
        vec![
            (2, 1, StatusCode::StaleEpoch),
            (3, 3, StatusCode::EpochMismatch)
        ]
    );
    let positions: Vec<usize> = v.rejected.iter().map(|r| r.position).collect();
    assert_eq!(positions, vec![1, 2]);
    let positions: Vec<usize> = v.peers.iter().map(|p| p.position).collect();
    assert_eq!(positions, vec![0, 4, 3]);
}

/// Two pages (or two nodes' answers) across an epoch switch: whichever
/// comes first, the result holds only the later epoch's namespace and
/// peers, and every peer of the earlier epoch is reported `StaleEpoch`.
#[test]
fn absorbing_answers_of_two_epochs_keeps_only_the_later_epoch() {
    let q = deal(3);
    let old = verified(
        &q,
        &answer(
            &q,
            1,
            NOW,
            vec![q.peer(1, 1, 50, NOW + HOUR), q.peer(2, 1, 50, NOW + HOUR)],
        ),
    );
    let new = verified(
        &q,
        &answer(
            &q,
            2,
            NOW,
            vec![q.peer(2, 2, 1, NOW + HOUR), q.peer(3, 2, 1, NOW + HOUR)],
        ),
    );
    for old_first in [true, false] {
        let (mut all, other) = if old_first {
            (old.clone(), new.clone())
        } else {
            (new.clone(), old.clone())
        };
        let cookie = other.cookie.clone();
        all.absorb(other);
        assert_eq!(all.epoch(), 2, "old first: {old_first}");
        assert_eq!(all.namespace.record().epoch, 2);
        assert_eq!(kept(&all), vec![(2, 2, 1), (3, 2, 1)]);
        assert_eq!(
            refused(&all),
            vec![
                (1, 1, StatusCode::StaleEpoch),
                (2, 1, StatusCode::StaleEpoch)
            ]
        );
        assert_eq!(all.cookie, cookie, "the cookie is the latest page's");
    }
}

/// Within one epoch, absorbing keeps each member's highest seq (pages of
/// one node, or nodes that saw different refreshes) and the later
/// namespace record.
#[test]
fn absorbing_answers_of_one_epoch_keeps_each_members_highest_seq() {
    let q = deal(4);
    let mut all = verified(
        &q,
        &answer(
            &q,
            1,
            NOW,
            vec![q.peer(1, 1, 5, NOW + HOUR), q.peer(2, 1, 5, NOW + HOUR)],
        ),
    );
    let later = verified(
        &q,
        &answer(
            &q,
            1,
            NOW + 10,
            vec![q.peer(2, 1, 7, NOW + HOUR), q.peer(1, 1, 4, NOW + HOUR)],
        ),
    );
    all.absorb(later);
    assert_eq!(all.namespace.record().issued_at_ms, NOW + 10);
    assert_eq!(kept(&all), vec![(1, 1, 5), (2, 1, 7)]);
    assert_eq!(
        refused(&all),
        vec![
            (1, 1, StatusCode::StaleSequence),
            (2, 1, StatusCode::StaleSequence)
        ]
    );
    // Another quorum's answer is never absorbed.
    let other = deal(5);
    let stranger = verified(
        &other,
        &answer(&other, 9, NOW, vec![other.peer(1, 9, 1, NOW + HOUR)]),
    );
    all.absorb(stranger);
    assert_eq!(all.epoch(), 1);
    assert_eq!(kept(&all), vec![(1, 1, 5), (2, 1, 7)]);
    assert!(all
        .rejected
        .iter()
        .any(|r| r.code == StatusCode::UnknownNamespace));
}
