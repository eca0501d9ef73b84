//! The handover record (#14 item 3): its encoding, every rejection of
//! its validation, the order of two handovers of one key, its frames, and
//! the client's chain rule.

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rendezvous_proto::codec::{request_tag, response_tag, WIRE_VERSION};
use rendezvous_proto::handover::{
    check_handover_fields, HANDOVER_BYTES, HANDOVER_DST, HANDOVER_VERSION, MAX_HANDOVER_TTL_MS,
};
use rendezvous_proto::records::{G1_BYTES, G2_BYTES};
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::{
    follow_handovers, verify_handover, ChainError, DecodeError, HandoverChain, HandoverRecord,
    QuorumKey, Request, Response, StatusCode, MAX_HANDOVER_LINKS,
};

const NOW: u64 = 1_700_000_000_000;
const DAY: u64 = 24 * 3_600_000;

fn deal(seed: u64) -> TestQuorum {
    TestQuorum::deal(4, 3, &mut ChaCha20Rng::seed_from_u64(seed))
}

fn valid(from: &TestQuorum, to: &TestQuorum) -> HandoverRecord {
    from.handover(to.quorum_key(), NOW - 1_000, NOW + DAY)
}

#[test]
fn a_threshold_signed_handover_verifies_and_round_trips() {
    let (a, b) = (deal(1), deal(2));
    let h = valid(&a, &b);
    assert_eq!(verify_handover(&h, NOW), Ok(()));
    let bytes = h.encode();
    assert_eq!(bytes.len(), HANDOVER_BYTES);
    assert_eq!(bytes[0], HANDOVER_VERSION);
    assert_eq!(&bytes[1..1 + G1_BYTES], &a.quorum_key().0);
    assert_eq!(&bytes[1 + G1_BYTES..1 + 2 * G1_BYTES], &b.quorum_key().0);
    assert_eq!(HandoverRecord::decode(&bytes), Ok(h.clone()));
    // Signing bytes: the DST as a bytes8, then the encoding without the
    // signature.
    let signing = h.signing_bytes();
    assert_eq!(
        signing,
        [
            &[HANDOVER_DST.len() as u8][..],
            HANDOVER_DST,
            &bytes[..HANDOVER_BYTES - G2_BYTES]
        ]
        .concat()
    );
    // In frames: a request of its own, and a discover answer.
    let request = Request::PublishHandover(h.clone());
    let frame = request.encode();
    assert_eq!(&frame[..2], &[WIRE_VERSION, request_tag::PUBLISH_HANDOVER]);
    assert_eq!(&frame[2..], &bytes[..]);
    assert_eq!(Request::decode(&frame), Ok(request));
    let response = Response::HandedOver(h.clone());
    let frame = response.encode();
    assert_eq!(
        &frame[..4],
        &[WIRE_VERSION, response_tag::HANDED_OVER, 0x00, 0x00]
    );
    assert_eq!(Response::decode(&frame), Ok(response));
}

#[test]
fn truncated_oversize_and_wrong_version_do_not_decode() {
    let (a, b) = (deal(1), deal(2));
    let bytes = valid(&a, &b).encode();
    for len in 0..bytes.len() {
        assert_eq!(
            HandoverRecord::decode(&bytes[..len]),
            Err(DecodeError::UnexpectedEnd),
            "prefix of {len} bytes"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        HandoverRecord::decode(&longer),
        Err(DecodeError::TrailingBytes)
    );
    let mut v1 = bytes.clone();
    v1[0] = 1;
    assert_eq!(HandoverRecord::decode(&v1), Err(DecodeError::Version(1)));
    // A frame over the cap is refused before parsing.
    let mut frame = Request::PublishHandover(valid(&a, &b)).encode();
    frame.resize(frame.len() + (1 << 20), 0);
    assert_eq!(Request::decode(&frame), Err(DecodeError::TooLarge));
    // A cut answer does not decode either.
    let mut answer = Response::HandedOver(valid(&a, &b)).encode();
    answer.pop();
    assert_eq!(Response::decode(&answer), Err(DecodeError::UnexpectedEnd));
}

#[test]
fn every_rejection_has_its_code() {
    let (a, b, c) = (deal(1), deal(2), deal(3));
    let reject = |h: &HandoverRecord| verify_handover(h, NOW).unwrap_err();

    // Signed by another quorum (b signs "a -> c"): the old key's
    // signature is what authorizes a handover.
    let mut by_b = valid(&a, &c);
    by_b.signature = b.threshold_sign(&by_b.signing_bytes());
    assert_eq!(reject(&by_b), StatusCode::InvalidHandoverSignature);
    // Signed by the new quorum (c signs "a -> c"): still not a's.
    let mut by_new = valid(&a, &c);
    by_new.signature = c.threshold_sign(&by_new.signing_bytes());
    assert_eq!(reject(&by_new), StatusCode::InvalidHandoverSignature);
    // Altered after signing: every field is covered.
    let mut redirected = valid(&a, &b);
    redirected.new_quorum_key = c.quorum_key();
    assert_eq!(reject(&redirected), StatusCode::InvalidHandoverSignature);
    let mut later = valid(&a, &b);
    later.issued_at_ms += 1;
    assert_eq!(reject(&later), StatusCode::InvalidHandoverSignature);
    // Fewer than threshold shares combined do not make a's signature.
    let mut weak = valid(&a, &b);
    let message = weak.signing_bytes();
    let shares: Vec<_> = a.shares[..2]
        .iter()
        .map(|s| s.secret.sign(&message))
        .collect();
    weak.signature = dkg::combine_signatures(2, 4, &shares).unwrap().to_bytes();
    assert_eq!(reject(&weak), StatusCode::InvalidHandoverSignature);
    // Domain separation: a's signature over a namespace record's bytes
    // is no handover signature.
    let mut cross = valid(&a, &b);
    cross.signature = a.namespace(1, None, NOW, NOW + DAY).signature;
    assert_eq!(reject(&cross), StatusCode::InvalidHandoverSignature);

    // A handover to itself is refused before any curve arithmetic, even
    // correctly signed.
    let same = a.handover(a.quorum_key(), NOW - 1, NOW + DAY);
    assert_eq!(reject(&same), StatusCode::InvalidParameters);
    assert_eq!(
        check_handover_fields(&same, NOW),
        Err(StatusCode::InvalidParameters)
    );
    // Issued after it expires.
    let backwards = a.handover(b.quorum_key(), NOW + 2 * DAY, NOW + DAY);
    assert_eq!(reject(&backwards), StatusCode::InvalidParameters);
    // Expired, and too far ahead.
    let expired = a.handover(b.quorum_key(), NOW - DAY, NOW);
    assert_eq!(reject(&expired), StatusCode::Expired);
    let far = a.handover(b.quorum_key(), NOW, NOW + MAX_HANDOVER_TTL_MS + 1);
    assert_eq!(reject(&far), StatusCode::TtlTooLong);
    let furthest = a.handover(b.quorum_key(), NOW, NOW + MAX_HANDOVER_TTL_MS);
    assert_eq!(verify_handover(&furthest, NOW), Ok(()));
    // Points that are not points.
    let mut bad_signature = valid(&a, &b);
    bad_signature.signature = [0xff; G2_BYTES];
    assert_eq!(reject(&bad_signature), StatusCode::Decode);
    let mut bad_old = valid(&a, &b);
    bad_old.old_quorum_key = QuorumKey([0xff; G1_BYTES]);
    assert_eq!(reject(&bad_old), StatusCode::Decode);
    // A new key that is no point, signed by the old quorum: its own
    // mistake, `Decode` after the signature.
    let junk_new = a.handover(QuorumKey([0xff; G1_BYTES]), NOW - 1, NOW + DAY);
    assert_eq!(reject(&junk_new), StatusCode::Decode);
}

#[test]
fn the_order_of_two_handovers_is_total_and_deterministic() {
    let (a, b, c) = (deal(1), deal(2), deal(3));
    let early = a.handover(b.quorum_key(), NOW, NOW + DAY);
    let late = a.handover(c.quorum_key(), NOW + 1, NOW + DAY);
    assert!(late.supersedes(&early));
    assert!(!early.supersedes(&late));
    // Same time: the larger encoding wins, whichever way round.
    let tie_b = a.handover(b.quorum_key(), NOW, NOW + DAY);
    let tie_c = a.handover(c.quorum_key(), NOW, NOW + DAY);
    let (big, small) = if tie_b.encode() > tie_c.encode() {
        (tie_b, tie_c)
    } else {
        (tie_c, tie_b)
    };
    assert!(big.supersedes(&small));
    assert!(!small.supersedes(&big));
    assert!(!big.supersedes(&big.clone()));
}

#[test]
fn a_client_follows_a_two_link_chain() {
    let (a, b, c) = (deal(1), deal(2), deal(3));
    let links = [valid(&a, &b), valid(&b, &c)];
    let chain = follow_handovers(a.quorum_key(), &links, NOW, MAX_HANDOVER_LINKS).unwrap();
    assert_eq!(chain.start(), a.quorum_key());
    assert_eq!(chain.current(), c.quorum_key());
    assert_eq!(
        chain.hops(),
        vec![
            (a.quorum_key(), b.quorum_key()),
            (b.quorum_key(), c.quorum_key())
        ]
    );
    assert_eq!(chain.links(), &links[..]);
    // No link: the key asked for.
    let empty = HandoverChain::new(a.quorum_key());
    assert!(empty.is_empty());
    assert_eq!(empty.current(), a.quorum_key());
}

#[test]
fn a_client_refuses_a_loop() {
    let (a, b, c) = (deal(1), deal(2), deal(3));
    // a -> b -> a
    let back = [valid(&a, &b), valid(&b, &a)];
    assert_eq!(
        follow_handovers(a.quorum_key(), &back, NOW, MAX_HANDOVER_LINKS),
        Err(ChainError::Loop(a.quorum_key()))
    );
    // a -> b -> c -> b
    let inner = [valid(&a, &b), valid(&b, &c), valid(&c, &b)];
    assert_eq!(
        follow_handovers(a.quorum_key(), &inner, NOW, MAX_HANDOVER_LINKS),
        Err(ChainError::Loop(b.quorum_key()))
    );
    // A refused link leaves the chain as it was.
    let mut chain = HandoverChain::new(a.quorum_key());
    chain.follow(&valid(&a, &b), NOW).unwrap();
    assert!(chain.follow(&valid(&b, &a), NOW).is_err());
    assert_eq!(chain.current(), b.quorum_key());
    assert_eq!(chain.links().len(), 1);
}

#[test]
fn a_client_refuses_a_chain_longer_than_the_bound() {
    let quorums: Vec<TestQuorum> = (1..=MAX_HANDOVER_LINKS as u64 + 2).map(deal).collect();
    let links: Vec<HandoverRecord> = quorums.windows(2).map(|w| valid(&w[0], &w[1])).collect();
    assert_eq!(links.len(), MAX_HANDOVER_LINKS + 1);
    // Exactly the bound is followed...
    let chain = follow_handovers(
        quorums[0].quorum_key(),
        &links[..MAX_HANDOVER_LINKS],
        NOW,
        MAX_HANDOVER_LINKS,
    )
    .unwrap();
    assert_eq!(chain.current(), quorums[MAX_HANDOVER_LINKS].quorum_key());
    // ...one more is not.
    assert_eq!(
        follow_handovers(quorums[0].quorum_key(), &links, NOW, MAX_HANDOVER_LINKS),
        Err(ChainError::TooLong(MAX_HANDOVER_LINKS))
    );
    // The bound is the caller's.
    assert_eq!(
        follow_handovers(quorums[0].quorum_key(), &links[..2], NOW, 1),
        Err(ChainError::TooLong(1))
    );
}

#[test]
fn a_client_refuses_a_forged_or_misplaced_link() {
    let (a, b, c, m) = (deal(1), deal(2), deal(3), deal(9));
    // b -> c forged by m (who holds no share of b).
    let mut forged = valid(&b, &c);
    forged.signature = m.threshold_sign(&forged.signing_bytes());
    assert_eq!(
        follow_handovers(a.quorum_key(), &[valid(&a, &b), forged], NOW, 4),
        Err(ChainError::Invalid {
            from: b.quorum_key(),
            to: c.quorum_key(),
            code: StatusCode::InvalidHandoverSignature
        })
    );
    // A link that does not start where the chain is (a node answering
    // about another key): refused, whatever its signature.
    assert_eq!(
        follow_handovers(a.quorum_key(), &[valid(&b, &c)], NOW, 4),
        Err(ChainError::WrongKey {
            asked: a.quorum_key(),
            served: b.quorum_key()
        })
    );
    // An expired link.
    let stale = a.handover(b.quorum_key(), NOW - 2 * DAY, NOW - DAY);
    assert_eq!(
        follow_handovers(a.quorum_key(), &[stale], NOW, 4),
        Err(ChainError::Invalid {
            from: a.quorum_key(),
            to: b.quorum_key(),
            code: StatusCode::Expired
        })
    );
}

#[test]
fn sign_handover_frame_carries_the_handover_then_the_namespace() {
    let (a, b) = (deal(1), deal(2));
    let handover = valid(&a, &b);
    let namespace = b.namespace(0, None, NOW - 1_000, NOW + DAY);
    let request = Request::SignHandover {
        handover: handover.clone(),
        namespace: namespace.clone(),
    };
    let frame = request.encode();
    assert_eq!(&frame[..2], &[WIRE_VERSION, request_tag::SIGN_HANDOVER]);
    assert_eq!(&frame[2..2 + HANDOVER_BYTES], &handover.encode()[..]);
    assert_eq!(&frame[2 + HANDOVER_BYTES..], &namespace.encode()[..]);
    assert_eq!(Request::decode(&frame), Ok(request));
    // Every cut, and a trailing byte, is refused.
    for len in 2..frame.len() {
        assert!(Request::decode(&frame[..len]).is_err(), "{len} bytes");
    }
    let mut longer = frame.clone();
    longer.push(0);
    assert_eq!(Request::decode(&longer), Err(DecodeError::TrailingBytes));
}
