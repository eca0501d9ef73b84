//! One test per rejection reason of `validate.rs`, each asserting the exact
//! status code. Every bad record is otherwise well formed and, unless the
//! point of the test is the signature, correctly signed by the quorum, so
//! that the check under test is the only one that can fail.

use std::sync::OnceLock;

use dkg::SignatureShare;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rendezvous_proto::records::G2_BYTES;
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::validate::check_namespace_fields;
use rendezvous_proto::{
    check_namespace, check_namespace_update, verify_batch, verify_batch_with, verify_namespace,
    verify_peer, DecodeError, Limits, Multiaddr, NamespaceRecord, PeerId, PeerRecord, PendingPeer,
    QuorumKey, StatusCode, VerifiedNamespace,
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
    quorum_a().namespace(1, Some("farmer"), NOW - HOUR, NOW + HOUR)
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
    verified(&quorum_a().namespace(1, Some("farmer"), NOW - HOUR, NOW + HOUR))
}

fn peer_result(
    record: &PeerRecord,
    ns: &VerifiedNamespace,
    remote: Option<&PeerId>,
) -> Result<(), StatusCode> {
    verify_peer(record, ns, NOW, &L, remote)
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
    let with_members = quorum_a().namespace(7, None, NOW, NOW + 1);
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
    // n members listed (the list is mandatory and must have n entries).
    let with_n = |n: u32| {
        let mut record = namespace_a();
        record.n = n;
        let member = quorum_a().peer_id(1);
        record.members = Some(vec![member; n as usize]);
        sign_namespace(quorum_a(), &mut record);
        record
    };
    assert_eq!(
        ns_result(&with_n(L.max_members + 1)),
        Err(StatusCode::InvalidParameters)
    );
    // The edge itself is allowed.
    assert_eq!(ns_result(&with_n(L.max_members)), Ok(()));
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
fn namespace_without_a_member_list_is_invalid_parameters() {
    // Version 2: the list binds each index to the PeerId whose envelope
    // clients check, so it is mandatory.
    let mut record = quorum_a().namespace_unsigned(1, None, NOW, NOW + HOUR);
    record.members = None;
    sign_namespace(quorum_a(), &mut record);
    assert_eq!(ns_result(&record), Err(StatusCode::InvalidParameters));
}

#[test]
fn namespace_member_list_of_wrong_length_is_invalid_parameters() {
    let q = quorum_a();
    let mut short = q.namespace_unsigned(1, None, NOW, NOW + HOUR);
    short.members.as_mut().unwrap().pop();
    sign_namespace(q, &mut short);
    assert_eq!(ns_result(&short), Err(StatusCode::InvalidParameters));

    let mut long = q.namespace_unsigned(1, None, NOW, NOW + HOUR);
    long.members.as_mut().unwrap().push(quorum_b().peer_id(1));
    sign_namespace(q, &mut long);
    assert_eq!(ns_result(&long), Err(StatusCode::InvalidParameters));

    let mut empty = q.namespace_unsigned(1, None, NOW, NOW + HOUR);
    empty.members = Some(Vec::new());
    sign_namespace(q, &mut empty);
    assert_eq!(ns_result(&empty), Err(StatusCode::InvalidParameters));
}

#[test]
fn namespace_issued_after_expiry_is_invalid_parameters() {
    let q = quorum_a();
    let record = q.namespace(1, None, NOW + HOUR + 1, NOW + HOUR);
    assert_eq!(ns_result(&record), Err(StatusCode::InvalidParameters));
    // Issued at the expiry instant is still consistent.
    let record = q.namespace(1, None, NOW + HOUR, NOW + HOUR);
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
        let record = q.namespace(1, Some(kind), NOW, NOW + HOUR);
        assert_eq!(ns_result(&record), Err(StatusCode::InvalidKind), "{kind:?}");
    }
    let longest = "a".repeat(L.max_kind_bytes);
    for kind in ["farmer", "x-9", longest.as_str()] {
        let record = q.namespace(1, Some(kind), NOW, NOW + HOUR);
        assert_eq!(ns_result(&record), Ok(()), "{kind:?}");
    }
}

// ------------------------------------------------------ namespace: times

#[test]
fn namespace_expired_is_expired() {
    let q = quorum_a();
    for expires in [NOW, NOW - 1, 0] {
        let record = q.namespace(1, None, 0, expires);
        assert_eq!(ns_result(&record), Err(StatusCode::Expired), "{expires}");
    }
}

#[test]
fn namespace_ttl_too_long_is_ttl_too_long() {
    let q = quorum_a();
    let record = q.namespace(1, None, NOW, NOW + L.max_ttl_ms + 1);
    assert_eq!(ns_result(&record), Err(StatusCode::TtlTooLong));
    let record = q.namespace(1, None, NOW, u64::MAX);
    assert_eq!(ns_result(&record), Err(StatusCode::TtlTooLong));
    let record = q.namespace(1, None, NOW, NOW + L.max_ttl_ms);
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

/// A client decodes `C_0` only (PROTOCOL.md 6.3). A record the quorum
/// signed with a junk later commitment passes a client's check, with no
/// key set and no share keys, while a node refuses it (`Decode`). A junk
/// `C_0`, or a later commitment changed after signing, fails the client
/// too; an honest record's key set, decoded on first use, is the node's.
#[test]
fn a_client_decodes_c0_only() {
    let q = quorum_a();
    let mut junk_later = namespace_a();
    let mut bad = [0x22u8; 48];
    bad[0] = 0x02; // compression flag clear
    junk_later.commitments[1] = bad;
    sign_namespace(q, &mut junk_later);
    let checked = check_namespace(&junk_later, NOW, &L).expect("a client accepts it");
    assert!(checked.key_set().is_none());
    assert_eq!(checked.share_key(1), None);
    assert_eq!(checked.threshold(), junk_later.commitments.len() as u32);
    assert_eq!(
        verify_namespace(&junk_later, NOW, &L).err(),
        Some(StatusCode::Decode)
    );

    let mut junk_c0 = namespace_a();
    junk_c0.commitments[0] = bad;
    sign_namespace(q, &mut junk_c0);
    assert_eq!(
        check_namespace(&junk_c0, NOW, &L).err(),
        Some(StatusCode::Decode)
    );
    let mut tampered = namespace_a();
    tampered.commitments[1] = quorum_b().namespace_unsigned(1, None, 0, 0).commitments[1];
    assert_eq!(
        check_namespace(&tampered, NOW, &L).err(),
        Some(StatusCode::InvalidNamespaceSignature)
    );

    let honest = namespace_a();
    let client = check_namespace(&honest, NOW, &L).expect("valid");
    let node = verify_namespace(&honest, NOW, &L).expect("valid");
    assert!(client.key_set().is_some());
    assert_eq!(client.key_set(), node.key_set());
    for index in 1..=q.n() {
        assert_eq!(client.share_key(index), node.share_key(index));
    }
}

// ------------------------------------------------- namespace: signature

#[test]
fn namespace_tampered_after_signing_is_invalid_signature() {
    let original = quorum_a().namespace(1, Some("farmer"), NOW - HOUR, NOW + HOUR);
    let other_point = quorum_b().namespace_unsigned(1, None, 0, 0).commitments[1];
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
    let mut squat = b.namespace_unsigned(1, Some("farmer"), NOW, NOW + HOUR);
    squat.commitments[0] = a.quorum_key().0;
    sign_namespace(b, &mut squat);
    assert_eq!(squat.quorum_key(), Some(a.quorum_key()));
    assert_eq!(
        ns_result(&squat),
        Err(StatusCode::InvalidNamespaceSignature)
    );
    // A's whole key set and parameters, signed by B's members.
    let mut squat = a.namespace_unsigned(2, Some("farmer"), NOW, NOW + HOUR);
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
    let stored = q.namespace(5, None, NOW, NOW + HOUR);
    let older_epoch = q.namespace(4, None, NOW + 10, NOW + HOUR);
    let same = stored.clone();
    let same_epoch_older = q.namespace(5, None, NOW - 1, NOW + HOUR);
    for new in [&older_epoch, &same, &same_epoch_older] {
        assert_eq!(
            check_namespace_update(&stored, new),
            Err(StatusCode::StaleEpoch)
        );
    }
    let same_epoch_newer = q.namespace(5, None, NOW + 1, NOW + HOUR);
    let newer_epoch_issued_earlier = q.namespace(6, None, NOW - HOUR, NOW + HOUR);
    for new in [&same_epoch_newer, &newer_epoch_issued_earlier] {
        assert_eq!(check_namespace_update(&stored, new), Ok(()));
    }
}

// ------------------------------------------------------------------ peers

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
    let record = q.namespace(1, Some(&"k".repeat(256)), NOW, NOW + HOUR);
    assert_eq!(
        ns_result_with(&record, &generous),
        Err(StatusCode::InvalidKind)
    );

    let ns = verify_namespace(&namespace_a(), NOW, &generous).unwrap();
    let with_addrs = |addrs: Vec<Multiaddr>| {
        PeerRecord::sign(q.seat(1, 1), addrs, 1, NOW + HOUR, &q.identities[0])
    };
    let many = (0..65u16)
        .map(|p| format!("/ip4/10.0.0.1/tcp/{p}").parse().unwrap())
        .collect();
    assert_eq!(
        verify_peer(&with_addrs(many), &ns, NOW, &generous, None),
        Err(StatusCode::RecordTooLarge)
    );
    let long: Multiaddr = format!("/dns/{}/tcp/1", "a".repeat(1100)).parse().unwrap();
    assert_eq!(
        verify_peer(&with_addrs(vec![long]), &ns, NOW, &generous, None),
        Err(StatusCode::RecordTooLarge)
    );
}

#[test]
fn seat_signature_not_a_point_is_decode() {
    let ns = verified_a();
    let q = quorum_a();
    for signature in [not_a_point_g2(), identity_g2(), [0xff; G2_BYTES]] {
        let mut seat = q.seat(1, 1);
        seat.signature = signature;
        let record = PeerRecord::sign(seat, vec![], 1, NOW + HOUR, &q.identities[0]);
        assert_eq!(peer_result(&record, &ns, None), Err(StatusCode::Decode));
    }
}

// ------------------------------------------------------------------ batch

#[test]
fn batch_names_exactly_the_bad_record() {
    let q = TestQuorum::deal(16, 11, &mut ChaCha20Rng::seed_from_u64(16));
    let ns = verified(&q.namespace(1, None, NOW, NOW + HOUR));
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    for bad in [0usize, 9, 15] {
        let pending: Vec<PendingPeer> = (1..=16u32)
            .map(|i| {
                let mut seat = q.seat(i, 1);
                if i as usize - 1 == bad {
                    // Signed by the next member's share: a valid point,
                    // the wrong signature.
                    let other = &q.shares[i as usize % 16].secret;
                    seat.signature = other.sign(&seat.signing_bytes()).signature.to_bytes();
                }
                let identity = &q.identities[i as usize - 1];
                let record = PeerRecord::sign(seat, vec![], 1, NOW + HOUR, identity);
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
        // and does stop (at least once per record: after each envelope).
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

/// #13 item 2: a k = n = 1,024 junk record (a genuine `C_0`, 1,023
/// commitments that are not even points, a signature over something
/// else) is refused for its signature, before any other commitment is
/// decoded: it costs a node one pairing, not a thousand decodings.
#[test]
fn expensive_namespace_registration_checks_the_signature_before_other_commitments() {
    let q = quorum_a();
    let mut record = namespace_a();
    let mut junk = [0x22u8; 48];
    junk[0] = 0x02; // compression flag clear: not a point
    let c0 = record.commitments[0];
    record.commitments = std::iter::once(c0)
        .chain(std::iter::repeat_n(junk, 1_023))
        .collect();
    record.n = 1_024;
    record.members = Some(
        (0..1_024)
            .map(|_| rendezvous_proto::PeerId::random())
            .collect(),
    );
    // A valid signature of the quorum, but over another record.
    let mut other = namespace_a();
    other.epoch += 1;
    sign_namespace(q, &mut other);
    record.signature = other.signature;
    assert_eq!(
        ns_result(&record),
        Err(StatusCode::InvalidNamespaceSignature)
    );
    // Signed by the quorum after all, the junk commitments are refused.
    sign_namespace(q, &mut record);
    assert_eq!(ns_result(&record), Err(StatusCode::Decode));
}
