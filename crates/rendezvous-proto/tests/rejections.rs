//! One test per rejection reason of `validate.rs`, each asserting the exact
//! status code. Every bad record is otherwise well formed and, unless the
//! point of the test is the signature, correctly signed by the quorum, so
//! that the check under test is the only one that can fail.

use std::sync::OnceLock;

use dkg::{Polynomial, SecretKeyShare, SignatureShare};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rendezvous_proto::records::G2_BYTES;
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::validate::check_namespace_fields;
use rendezvous_proto::{
    check_namespace_update, verify_batch, verify_batch_with, verify_namespace, verify_peer,
    DecodeError, Limits, Multiaddr, NamespaceRecord, PeerId, PeerRecord, PendingPeer, QuorumKey,
    StatusCode, VerifiedNamespace,
};

const NOW: u64 = 1_700_000_000_000;
const HOUR: u64 = 3_600_000;
const L: Limits = Limits::DEFAULT;

/// A named change made to a record after it was signed.
type Tamper<T> = Box<dyn Fn(&mut T)>;

/// Quorum A: n = 5, threshold 3.
fn quorum_a() -> &'static TestQuorum {
    static Q: OnceLock<TestQuorum> = OnceLock::new();
    Q.get_or_init(|| TestQuorum::deal(5, 3, &mut ChaCha20Rng::seed_from_u64(0xA)))
}

/// Quorum B: another quorum of the same shape.
fn quorum_b() -> &'static TestQuorum {
    static Q: OnceLock<TestQuorum> = OnceLock::new();
    Q.get_or_init(|| TestQuorum::deal(5, 3, &mut ChaCha20Rng::seed_from_u64(0xB)))
}

/// Signs `record` as `q` would: the first `threshold` shares, combined.
fn sign_namespace(q: &TestQuorum, record: &mut NamespaceRecord) {
    let threshold = q.shares[0].threshold();
    sign_namespace_with(q, record, threshold as usize, threshold);
}

/// Signs with the first `count` shares interpolated as if `threshold`
/// were `as_threshold` (a forger with too few shares).
fn sign_namespace_with(
    q: &TestQuorum,
    record: &mut NamespaceRecord,
    count: usize,
    as_threshold: u32,
) {
    let message = record.signing_bytes();
    let shares: Vec<SignatureShare> = q.shares[..count]
        .iter()
        .map(|s| s.secret.sign(&message))
        .collect();
    record.signature = dkg::combine_signatures(as_threshold, q.n(), &shares)
        .unwrap()
        .to_bytes();
}

fn namespace_a() -> NamespaceRecord {
    quorum_a().namespace(1, Some("farmer"), false, NOW - HOUR, NOW + HOUR)
}

fn ns_result(record: &NamespaceRecord) -> Result<(), StatusCode> {
    ns_result_with(record, &L)
}

fn ns_result_with(record: &NamespaceRecord, limits: &Limits) -> Result<(), StatusCode> {
    verify_namespace(record, NOW, limits).map(|_| ())
}

fn verified(record: &NamespaceRecord) -> VerifiedNamespace {
    verify_namespace(record, NOW, &L).unwrap()
}

fn verified_a() -> VerifiedNamespace {
    verified(&namespace_a())
}

/// A namespace record of A that lists its members.
fn verified_a_with_members() -> VerifiedNamespace {
    verified(&quorum_a().namespace(1, Some("farmer"), true, NOW - HOUR, NOW + HOUR))
}

fn peer_result(
    record: &PeerRecord,
    ns: &VerifiedNamespace,
    remote: Option<&PeerId>,
) -> Result<(), StatusCode> {
    verify_peer(record, ns, NOW, &L, remote)
}

/// Member `index` of A re-signs `record` after the test changed it.
fn resign(record: &mut PeerRecord, q: &TestQuorum, share_index: u32) {
    let share = &q.shares[share_index as usize - 1].secret;
    record.signature = share.sign(&record.signing_bytes()).signature.to_bytes();
}

fn outsider_share(seed: u64, index: u32) -> SecretKeyShare {
    let poly = Polynomial::random(1, &mut ChaCha20Rng::seed_from_u64(seed));
    SecretKeyShare::new(index, poly.evaluate(1)).unwrap()
}

fn not_a_point_g2() -> [u8; G2_BYTES] {
    // The compression flag (top bit) is clear: not a compressed point.
    let mut bytes = [0x11u8; G2_BYTES];
    bytes[0] = 0x01;
    bytes
}

fn identity_g2() -> [u8; G2_BYTES] {
    let mut bytes = [0u8; G2_BYTES];
    bytes[0] = 0xc0;
    bytes
}

// ---------------------------------------------------------------- baseline

#[test]
fn valid_records_are_accepted() {
    assert_eq!(ns_result(&namespace_a()), Ok(()));
    let with_members = quorum_a().namespace(7, None, true, NOW, NOW + 1);
    assert_eq!(ns_result(&with_members), Ok(()));
    let ns = verified_a();
    for i in 1..=5 {
        let peer = quorum_a().peer(i, 1, 3, NOW + HOUR);
        assert_eq!(peer_result(&peer, &ns, None), Ok(()));
        assert_eq!(
            peer_result(&peer, &ns, Some(&quorum_a().peer_id(i))),
            Ok(())
        );
        assert_eq!(peer_result(&peer, &verified_a_with_members(), None), Ok(()));
    }
}

// ------------------------------------------------- namespace: parameters

#[test]
fn namespace_threshold_above_n_is_invalid_parameters() {
    let mut record = namespace_a();
    record.n = 2; // threshold is 3
    sign_namespace(quorum_a(), &mut record);
    assert_eq!(ns_result(&record), Err(StatusCode::InvalidParameters));
}

#[test]
fn namespace_n_zero_is_invalid_parameters() {
    let mut record = namespace_a();
    record.n = 0;
    sign_namespace(quorum_a(), &mut record);
    assert_eq!(ns_result(&record), Err(StatusCode::InvalidParameters));
}

#[test]
fn namespace_threshold_zero_cannot_decode_or_validate() {
    let mut record = namespace_a();
    record.commitments.clear();
    assert_eq!(
        check_namespace_fields(&record, NOW, &L),
        Err(StatusCode::InvalidParameters)
    );
    assert_eq!(
        NamespaceRecord::decode(&record.encode()),
        Err(DecodeError::InvalidValue("commitments"))
    );
}

#[test]
fn namespace_n_above_max_members_is_invalid_parameters() {
    let mut record = namespace_a();
    record.n = L.max_members + 1;
    sign_namespace(quorum_a(), &mut record);
    assert_eq!(ns_result(&record), Err(StatusCode::InvalidParameters));
    // The edge itself is allowed.
    record.n = L.max_members;
    sign_namespace(quorum_a(), &mut record);
    assert_eq!(ns_result(&record), Ok(()));
    // And a node with a lower limit refuses it.
    let small = Limits {
        max_members: 4,
        ..L
    };
    let record = namespace_a();
    assert_eq!(
        ns_result_with(&record, &small),
        Err(StatusCode::InvalidParameters)
    );
}

#[test]
fn namespace_member_list_of_wrong_length_is_invalid_parameters() {
    let q = quorum_a();
    let mut short = q.namespace_unsigned(1, None, true, NOW, NOW + HOUR);
    short.members.as_mut().unwrap().pop();
    sign_namespace(q, &mut short);
    assert_eq!(ns_result(&short), Err(StatusCode::InvalidParameters));

    let mut long = q.namespace_unsigned(1, None, true, NOW, NOW + HOUR);
    long.members.as_mut().unwrap().push(quorum_b().peer_id(1));
    sign_namespace(q, &mut long);
    assert_eq!(ns_result(&long), Err(StatusCode::InvalidParameters));

    let mut empty = q.namespace_unsigned(1, None, false, NOW, NOW + HOUR);
    empty.members = Some(Vec::new());
    sign_namespace(q, &mut empty);
    assert_eq!(ns_result(&empty), Err(StatusCode::InvalidParameters));
}

#[test]
fn namespace_issued_after_expiry_is_invalid_parameters() {
    let q = quorum_a();
    let record = q.namespace(1, None, false, NOW + HOUR + 1, NOW + HOUR);
    assert_eq!(ns_result(&record), Err(StatusCode::InvalidParameters));
    // Issued at the expiry instant is still consistent.
    let record = q.namespace(1, None, false, NOW + HOUR, NOW + HOUR);
    assert_eq!(ns_result(&record), Ok(()));
}

#[test]
fn namespace_bad_kind_is_invalid_kind() {
    let q = quorum_a();
    let too_long = "a".repeat(L.max_kind_bytes + 1);
    for kind in [
        "Farmer",
        "far mer",
        "farmer!",
        "ä",
        "far_mer",
        too_long.as_str(),
    ] {
        let record = q.namespace(1, Some(kind), false, NOW, NOW + HOUR);
        assert_eq!(ns_result(&record), Err(StatusCode::InvalidKind), "{kind:?}");
    }
    let longest = "a".repeat(L.max_kind_bytes);
    for kind in ["farmer", "x-9", longest.as_str()] {
        let record = q.namespace(1, Some(kind), false, NOW, NOW + HOUR);
        assert_eq!(ns_result(&record), Ok(()), "{kind:?}");
    }
}

// ------------------------------------------------------ namespace: times

#[test]
fn namespace_expired_is_expired() {
    let q = quorum_a();
    for expires in [NOW, NOW - 1, 0] {
        let record = q.namespace(1, None, false, 0, expires);
        assert_eq!(ns_result(&record), Err(StatusCode::Expired), "{expires}");
    }
}

#[test]
fn namespace_ttl_too_long_is_ttl_too_long() {
    let q = quorum_a();
    let record = q.namespace(1, None, false, NOW, NOW + L.max_ttl_ms + 1);
    assert_eq!(ns_result(&record), Err(StatusCode::TtlTooLong));
    let record = q.namespace(1, None, false, NOW, u64::MAX);
    assert_eq!(ns_result(&record), Err(StatusCode::TtlTooLong));
    let record = q.namespace(1, None, false, NOW, NOW + L.max_ttl_ms);
    assert_eq!(ns_result(&record), Ok(()));
}

// ----------------------------------------------------- namespace: points

#[test]
fn namespace_signature_not_a_point_is_decode() {
    for signature in [not_a_point_g2(), identity_g2(), [0xff; G2_BYTES]] {
        let mut record = namespace_a();
        record.signature = signature;
        assert_eq!(ns_result(&record), Err(StatusCode::Decode));
    }
}

#[test]
fn namespace_commitment_not_a_point_is_decode() {
    let q = quorum_a();
    for at in [0usize, 1, 2] {
        let mut bad = [0x22u8; 48];
        bad[0] = 0x02; // compression flag clear
        let mut identity = [0u8; 48];
        identity[0] = 0xc0;
        for point in [bad, identity] {
            let mut record = namespace_a();
            record.commitments[at] = point;
            sign_namespace(q, &mut record);
            assert_eq!(ns_result(&record), Err(StatusCode::Decode), "at {at}");
        }
    }
}

// ------------------------------------------------- namespace: signature

#[test]
fn namespace_tampered_after_signing_is_invalid_signature() {
    let original = quorum_a().namespace(1, Some("farmer"), true, NOW - HOUR, NOW + HOUR);
    let other_point = quorum_b()
        .namespace_unsigned(1, None, false, 0, 0)
        .commitments[1];
    let tampers: Vec<(&str, Tamper<NamespaceRecord>)> = vec![
        ("epoch", Box::new(|r| r.epoch += 1)),
        (
            "n",
            Box::new(|r| {
                r.n += 1;
                r.members.as_mut().unwrap().push(quorum_b().peer_id(1));
            }),
        ),
        ("kind", Box::new(|r| r.kind = Some("harvester".into()))),
        ("no kind", Box::new(|r| r.kind = None)),
        (
            "members swapped",
            Box::new(|r| r.members.as_mut().unwrap().swap(0, 1)),
        ),
        (
            "member replaced",
            Box::new(|r| r.members.as_mut().unwrap()[2] = quorum_b().peer_id(3)),
        ),
        ("members dropped", Box::new(|r| r.members = None)),
        ("issued_at", Box::new(|r| r.issued_at_ms += 1)),
        ("expires_at", Box::new(|r| r.expires_at_ms -= 1)),
        (
            "commitment",
            Box::new(move |r| r.commitments[1] = other_point),
        ),
    ];
    for (what, tamper) in tampers {
        let mut record = original.clone();
        tamper(&mut record);
        assert_eq!(
            ns_result(&record),
            Err(StatusCode::InvalidNamespaceSignature),
            "{what}"
        );
    }
}

#[test]
fn namespace_with_fewer_than_threshold_shares_is_invalid_signature() {
    let q = quorum_a();
    // Two shares (threshold 3) interpolated as if two were enough.
    let mut record = namespace_a();
    sign_namespace_with(q, &mut record, 2, 2);
    assert_eq!(
        ns_result(&record),
        Err(StatusCode::InvalidNamespaceSignature)
    );
    // A single member's share presented as the quorum's signature.
    let mut record = namespace_a();
    record.signature = q.shares[0]
        .secret
        .sign(&record.signing_bytes())
        .signature
        .to_bytes();
    assert_eq!(
        ns_result(&record),
        Err(StatusCode::InvalidNamespaceSignature)
    );
}

#[test]
fn namespace_squatting_another_quorum_key_is_invalid_signature() {
    let (a, b) = (quorum_a(), quorum_b());
    // B's own key set with A's C_0 in front, signed by B's members.
    let mut squat = b.namespace_unsigned(1, Some("farmer"), true, NOW, NOW + HOUR);
    squat.commitments[0] = a.quorum_key().0;
    sign_namespace(b, &mut squat);
    assert_eq!(squat.quorum_key(), Some(a.quorum_key()));
    assert_eq!(
        ns_result(&squat),
        Err(StatusCode::InvalidNamespaceSignature)
    );
    // A's whole key set and parameters, signed by B's members.
    let mut squat = a.namespace_unsigned(2, Some("farmer"), false, NOW, NOW + HOUR);
    sign_namespace(b, &mut squat);
    assert_eq!(
        ns_result(&squat),
        Err(StatusCode::InvalidNamespaceSignature)
    );
}

// ------------------------------------------------------ namespace: epoch

#[test]
fn namespace_update_not_newer_is_stale_epoch() {
    let q = quorum_a();
    let stored = q.namespace(5, None, false, NOW, NOW + HOUR);
    let older_epoch = q.namespace(4, None, false, NOW + 10, NOW + HOUR);
    let same = stored.clone();
    let same_epoch_older = q.namespace(5, None, false, NOW - 1, NOW + HOUR);
    for new in [&older_epoch, &same, &same_epoch_older] {
        assert_eq!(
            check_namespace_update(&stored, new),
            Err(StatusCode::StaleEpoch)
        );
    }
    let same_epoch_newer = q.namespace(5, None, false, NOW + 1, NOW + HOUR);
    let newer_epoch_issued_earlier = q.namespace(6, None, false, NOW - HOUR, NOW + HOUR);
    for new in [&same_epoch_newer, &newer_epoch_issued_earlier] {
        assert_eq!(check_namespace_update(&stored, new), Ok(()));
    }
}

// ------------------------------------------------------------------ peers

#[test]
fn peer_of_another_namespace_is_unknown_namespace() {
    let ns = verified_a();
    let theirs = quorum_b().peer(1, 1, 1, NOW + HOUR);
    assert_eq!(
        peer_result(&theirs, &ns, None),
        Err(StatusCode::UnknownNamespace)
    );
    // A's own record with the namespace field pointed elsewhere.
    let mut moved = quorum_a().peer(1, 1, 1, NOW + HOUR);
    moved.quorum_key = quorum_b().quorum_key();
    assert_eq!(
        peer_result(&moved, &ns, None),
        Err(StatusCode::UnknownNamespace)
    );
}

#[test]
fn peer_index_zero_or_above_n_is_index_out_of_range() {
    let ns = verified_a();
    for index in [0, 6, u32::MAX] {
        let mut record = quorum_a().peer(1, 1, 1, NOW + HOUR);
        record.index = index;
        assert_eq!(
            peer_result(&record, &ns, None),
            Err(StatusCode::IndexOutOfRange),
            "{index}"
        );
    }
}

#[test]
fn peer_of_another_epoch_is_epoch_mismatch() {
    let ns = verified_a(); // epoch 1
    for epoch in [0, 2, u64::MAX] {
        let record = quorum_a().peer(2, epoch, 1, NOW + HOUR);
        assert_eq!(
            peer_result(&record, &ns, None),
            Err(StatusCode::EpochMismatch)
        );
    }
}

#[test]
fn peer_with_too_many_or_too_long_addrs_is_record_too_large() {
    let q = quorum_a();
    let ns = verified_a();
    let mut record = q.peer(1, 1, 1, NOW + HOUR);
    record.addrs = (0..=L.max_addrs as u16)
        .map(|p| format!("/ip4/10.0.0.1/tcp/{}", 1000 + p).parse().unwrap())
        .collect();
    resign(&mut record, q, 1);
    assert_eq!(
        peer_result(&record, &ns, None),
        Err(StatusCode::RecordTooLarge)
    );
    record.addrs.pop();
    resign(&mut record, q, 1);
    assert_eq!(peer_result(&record, &ns, None), Ok(()));

    let long: Multiaddr = format!("/dns/{}/tcp/1", "a".repeat(L.max_addr_bytes))
        .parse()
        .unwrap();
    assert!(long.as_ref().len() > L.max_addr_bytes);
    record.addrs = vec![long];
    resign(&mut record, q, 1);
    assert_eq!(
        peer_result(&record, &ns, None),
        Err(StatusCode::RecordTooLarge)
    );
}

#[test]
fn configured_limits_never_exceed_the_wire_caps() {
    // A node configured beyond what the encoding can sign still refuses
    // records the encoding would cut.
    let generous = Limits {
        max_members: 1 << 20,
        max_addrs: 1000,
        max_addr_bytes: 1 << 20,
        max_kind_bytes: 1000,
        ..L
    };
    let q = quorum_a();
    let mut record = namespace_a();
    record.n = u32::from(u16::MAX) + 1;
    sign_namespace(q, &mut record);
    assert_eq!(
        ns_result_with(&record, &generous),
        Err(StatusCode::InvalidParameters)
    );
    let record = q.namespace(1, Some(&"k".repeat(256)), false, NOW, NOW + HOUR);
    assert_eq!(
        ns_result_with(&record, &generous),
        Err(StatusCode::InvalidKind)
    );

    let ns = verify_namespace(&namespace_a(), NOW, &generous).unwrap();
    let mut peer = q.peer(1, 1, 1, NOW + HOUR);
    peer.addrs = (0..65u16)
        .map(|p| format!("/ip4/10.0.0.1/tcp/{p}").parse().unwrap())
        .collect();
    resign(&mut peer, q, 1);
    assert_eq!(
        verify_peer(&peer, &ns, NOW, &generous, None),
        Err(StatusCode::RecordTooLarge)
    );
    let long: Multiaddr = format!("/dns/{}/tcp/1", "a".repeat(1100)).parse().unwrap();
    peer.addrs = vec![long];
    resign(&mut peer, q, 1);
    assert_eq!(
        verify_peer(&peer, &ns, NOW, &generous, None),
        Err(StatusCode::RecordTooLarge)
    );
}

#[test]
fn peer_from_another_connection_is_peer_id_mismatch() {
    let ns = verified_a();
    let record = quorum_a().peer(1, 1, 1, NOW + HOUR);
    for remote in [quorum_a().peer_id(2), quorum_b().peer_id(1)] {
        assert_eq!(
            peer_result(&record, &ns, Some(&remote)),
            Err(StatusCode::PeerIdMismatch)
        );
    }
}

#[test]
fn peer_id_not_listed_at_its_index_is_not_a_member() {
    let q = quorum_a();
    let ns = verified_a_with_members();
    // Member 1's share, but member 2's PeerId; and an outsider's PeerId.
    for peer_id in [q.peer_id(2), quorum_b().peer_id(1)] {
        let mut record = q.peer(1, 1, 1, NOW + HOUR);
        record.peer_id = peer_id;
        resign(&mut record, q, 1);
        assert_eq!(
            peer_result(&record, &ns, Some(&peer_id)),
            Err(StatusCode::NotAMember)
        );
    }
}

#[test]
fn peer_expired_is_expired() {
    let ns = verified_a();
    for expires in [NOW, NOW - 1, 0] {
        let record = quorum_a().peer(1, 1, 1, expires);
        assert_eq!(peer_result(&record, &ns, None), Err(StatusCode::Expired));
    }
}

#[test]
fn peer_ttl_too_long_is_ttl_too_long() {
    let ns = verified_a();
    let record = quorum_a().peer(1, 1, 1, NOW + L.max_ttl_ms + 1);
    assert_eq!(peer_result(&record, &ns, None), Err(StatusCode::TtlTooLong));
    let record = quorum_a().peer(1, 1, 1, NOW + L.max_ttl_ms);
    assert_eq!(peer_result(&record, &ns, None), Ok(()));
}

#[test]
fn peer_signed_by_an_outsider_is_invalid_share_signature() {
    let q = quorum_a();
    let ns = verified_a();
    for index in 1..=5 {
        let record = PeerRecord::sign(
            q.quorum_key(),
            1,
            q.peer_id(index),
            vec!["/ip4/10.9.9.9/tcp/1".parse().unwrap()],
            1,
            NOW + HOUR,
            &outsider_share(100 + u64::from(index), index),
        );
        assert_eq!(
            peer_result(&record, &ns, Some(&q.peer_id(index))),
            Err(StatusCode::InvalidShareSignature)
        );
    }
}

#[test]
fn peer_signed_with_another_quorums_share_is_invalid_share_signature() {
    let (a, b) = (quorum_a(), quorum_b());
    let ns = verified_a();
    let record = PeerRecord::sign(
        a.quorum_key(),
        1,
        a.peer_id(3),
        vec![],
        1,
        NOW + HOUR,
        &b.shares[2].secret,
    );
    assert_eq!(
        peer_result(&record, &ns, None),
        Err(StatusCode::InvalidShareSignature)
    );
}

#[test]
fn peer_record_moved_to_another_index_is_invalid_share_signature() {
    let ns = verified_a();
    let mut record = quorum_a().peer(1, 1, 1, NOW + HOUR);
    record.index = 2;
    assert_eq!(
        peer_result(&record, &ns, None),
        Err(StatusCode::InvalidShareSignature)
    );
    // Moved to the index and PeerId of member 2, with a member list.
    record.peer_id = quorum_a().peer_id(2);
    assert_eq!(
        peer_result(&record, &verified_a_with_members(), None),
        Err(StatusCode::InvalidShareSignature)
    );
}

#[test]
fn peer_tampered_after_signing_is_invalid_share_signature() {
    let ns = verified_a();
    let original = quorum_a().peer(4, 1, 9, NOW + HOUR);
    let tampers: Vec<(&str, Tamper<PeerRecord>)> = vec![
        ("seq", Box::new(|r| r.seq += 1)),
        ("expiry", Box::new(|r| r.expires_at_ms += 1)),
        (
            "addr",
            Box::new(|r| r.addrs = vec!["/ip4/6.6.6.6/tcp/666".parse().unwrap()]),
        ),
        ("no addrs", Box::new(|r| r.addrs.clear())),
        ("peer id", Box::new(|r| r.peer_id = quorum_b().peer_id(4))),
    ];
    for (what, tamper) in tampers {
        let mut record = original.clone();
        tamper(&mut record);
        assert_eq!(
            peer_result(&record, &ns, None),
            Err(StatusCode::InvalidShareSignature),
            "{what}"
        );
    }
}

#[test]
fn peer_signature_not_a_point_is_decode() {
    let ns = verified_a();
    for signature in [not_a_point_g2(), identity_g2(), [0xff; G2_BYTES]] {
        let mut record = quorum_a().peer(1, 1, 1, NOW + HOUR);
        record.signature = signature;
        assert_eq!(peer_result(&record, &ns, None), Err(StatusCode::Decode));
    }
}

// ------------------------------------------------------------------ batch

#[test]
fn batch_names_exactly_the_bad_record() {
    let q = TestQuorum::deal(16, 11, &mut ChaCha20Rng::seed_from_u64(16));
    let ns = verified(&q.namespace(1, None, true, NOW, NOW + HOUR));
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    for bad in [0usize, 9, 15] {
        let pending: Vec<PendingPeer> = (1..=16u32)
            .map(|i| {
                let mut record = q.peer(i, 1, 1, NOW + HOUR);
                if i as usize - 1 == bad {
                    record.seq += 1;
                }
                PendingPeer::prepare(record, &ns, NOW, &L, None).unwrap()
            })
            .collect();
        let results = verify_batch(&pending, &mut rng);
        assert_eq!(results.len(), 16);
        for (i, result) in results.iter().enumerate() {
            let expected = if i == bad {
                Err(StatusCode::InvalidShareSignature)
            } else {
                Ok(())
            };
            assert_eq!(*result, expected, "position {i}, bad {bad}");
            assert_eq!(pending[i].verify(), expected);
        }
        // The node's variant, which stops at checkpoints, judges alike
        // and does stop (at least once per record).
        let mut checkpoints = 0usize;
        let with = verify_batch_with(&pending, &mut rng, &mut || checkpoints += 1);
        assert_eq!(with, results);
        assert!(checkpoints >= pending.len(), "{checkpoints} checkpoints");
    }
    assert!(verify_batch(&[], &mut rng).is_empty());
    assert!(verify_batch_with(&[], &mut rng, &mut || {}).is_empty());
}

#[test]
fn quorum_key_parses_and_checks_points() {
    let key = quorum_a().quorum_key();
    assert_eq!(key.to_hex().parse::<QuorumKey>(), Ok(key));
    assert_eq!(format!("0x{key}").parse::<QuorumKey>(), Ok(key));
    assert!(key.decode().is_ok());
    assert!(QuorumKey([0x01; 48]).decode().is_err());
    assert!("abcd".parse::<QuorumKey>().is_err());
}
