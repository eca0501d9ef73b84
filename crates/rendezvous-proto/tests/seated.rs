//! Protocol version 2's peer record: the seat (share signature, once per
//! epoch) and the envelope (identity signature, every refresh). One test
//! per refusal, each asserting the exact status code; the envelope codec
//! against libp2p's own; and properties: any change to a signed byte is
//! refused, and a record of one PeerId never validates for another.

use std::sync::OnceLock;

use libp2p_identity::Keypair;
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rendezvous_proto::envelope::{PeerEnvelope, PeerPayload, ENVELOPE_DOMAIN, PAYLOAD_TYPE};
use rendezvous_proto::seat::{Seat, SeatHash};
use rendezvous_proto::seated::{verify_seated, PeerRecord};
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::{verify_namespace, Limits, StatusCode, VerifiedNamespace};

const NOW: u64 = 1_700_000_000_000;
const HOUR: u64 = 3_600_000;
const L: Limits = Limits::DEFAULT;

/// n = 5, threshold 3.
fn quorum() -> &'static TestQuorum {
    static Q: OnceLock<TestQuorum> = OnceLock::new();
    Q.get_or_init(|| TestQuorum::deal(5, 3, &mut ChaCha20Rng::seed_from_u64(0x5ea7)))
}

/// Epoch 1, with its member list.
fn namespace() -> &'static VerifiedNamespace {
    static N: OnceLock<VerifiedNamespace> = OnceLock::new();
    N.get_or_init(|| {
        let record = quorum().namespace(1, Some("farmer"), NOW, NOW + 2 * HOUR);
        verify_namespace(&record, NOW, &L).expect("valid namespace")
    })
}

fn good(index: u32) -> PeerRecord {
    quorum().peer(index, 1, 7, NOW + HOUR)
}

fn check(record: &PeerRecord) -> Result<(), StatusCode> {
    verify_seated(record, namespace(), NOW, &L, None, false)
}

fn stranger() -> Keypair {
    Keypair::ed25519_from_bytes([9; 32]).expect("any 32 bytes are a key")
}

#[test]
fn a_seated_record_round_trips_and_validates() {
    let record = good(2);
    let bytes = record.encode();
    assert_eq!(bytes[0], 2, "version 2");
    let decoded = PeerRecord::decode(&bytes).expect("decodes");
    assert_eq!(decoded, record);
    assert_eq!(decoded.encode(), bytes);
    assert_eq!(check(&decoded), Ok(()));
    // On a direct registration, from its own connection.
    let remote = quorum().peer_id(2);
    assert_eq!(
        verify_seated(&record, namespace(), NOW, &L, Some(&remote), false),
        Ok(())
    );
}

#[test]
fn a_refresh_keeps_the_seat_and_signs_only_the_envelope() {
    let first = good(3);
    let refresh = PeerRecord::sign(
        first.seat.clone(),
        vec!["/ip4/10.0.0.3/tcp/4003".parse().unwrap()],
        8,
        NOW + HOUR,
        &quorum().identities[2],
    );
    assert_eq!(refresh.seat.hash(), first.seat.hash());
    // A node that verified the seat checks the envelope only.
    assert_eq!(
        verify_seated(&refresh, namespace(), NOW, &L, None, true),
        Ok(())
    );
    assert_eq!(check(&refresh), Ok(()));
}

#[test]
fn the_envelope_is_a_libp2p_signed_envelope_both_ways() {
    let record = good(1);
    let keypair = &quorum().identities[0];
    // Ours, read by libp2p.
    let theirs = libp2p_core::SignedEnvelope::from_protobuf_encoding(&record.envelope.encode())
        .expect("libp2p decodes it");
    let (payload, key) = theirs
        .payload_and_signing_key(ENVELOPE_DOMAIN.to_owned(), PAYLOAD_TYPE)
        .expect("libp2p verifies it");
    assert_eq!(*key, keypair.public());
    assert_eq!(
        PeerPayload::decode(payload).expect("payload"),
        record.envelope.payload
    );
    // libp2p's, read by us: the same bytes, the same envelope.
    let made = libp2p_core::SignedEnvelope::new(
        keypair,
        ENVELOPE_DOMAIN.to_owned(),
        PAYLOAD_TYPE.to_vec(),
        record.envelope.payload.encode(),
    )
    .expect("signs");
    let bytes = made.into_protobuf_encoding();
    assert_eq!(bytes, record.envelope.encode());
    let ours = PeerEnvelope::decode(&bytes).expect("decodes");
    assert!(ours.verify());
    // The signing bytes are exactly what the signature covers.
    assert!(keypair
        .public()
        .verify(&ours.signing_bytes(), &ours.signature));
}

#[test]
fn each_refusal_has_its_code() {
    let q = quorum();
    let base = good(2);
    let resign = |seat: Seat, keypair: &Keypair| {
        PeerRecord::sign(seat, base.addrs().to_vec(), 7, NOW + HOUR, keypair)
    };
    let mut cases: Vec<(&str, PeerRecord, StatusCode)> = Vec::new();

    // Signed by another key that claims to be the member: the signature
    // does not verify under the member's key.
    let mut other_signer = base.clone();
    let forged = PeerEnvelope::sign(base.envelope.payload.clone(), &stranger());
    other_signer.envelope.signature = forged.signature;
    cases.push((
        "envelope signed by another key",
        other_signer,
        StatusCode::InvalidEnvelopeSignature,
    ));
    // A stranger's own valid envelope around the member's seat.
    cases.push((
        "envelope of another PeerId",
        resign(base.seat.clone(), &stranger()),
        StatusCode::PeerIdMismatch,
    ));
    // The member's seat for another epoch.
    cases.push((
        "seat of another epoch",
        resign(q.seat(2, 2), &q.identities[1]),
        StatusCode::EpochMismatch,
    ));
    // A seat (validly signed with share 2) naming member 3's PeerId.
    let seat_of_3 = Seat::sign(q.quorum_key(), 1, q.peer_id(3), &q.shares[1].secret);
    cases.push((
        "seat of another PeerId",
        resign(seat_of_3, &q.identities[2]),
        StatusCode::NotAMember,
    ));
    // Member 2's seat, signed with member 4's share.
    let wrong_share = Seat::sign(q.quorum_key(), 1, q.peer_id(2), &q.shares[3].secret);
    let mut wrong_share = Seat {
        index: 2,
        ..wrong_share
    };
    // (Re-signed for index 2 with share 4's secret.)
    wrong_share.signature = q.shares[3]
        .secret
        .sign(&wrong_share.signing_bytes())
        .signature
        .to_bytes();
    cases.push((
        "seat signed with another share",
        resign(wrong_share, &q.identities[1]),
        StatusCode::InvalidShareSignature,
    ));
    // An envelope naming another seat.
    let mut other_seat = base.envelope.payload.clone();
    other_seat.seat_hash = SeatHash([7; 32]);
    cases.push((
        "envelope of another seat",
        PeerRecord {
            seat: base.seat.clone(),
            envelope: PeerEnvelope::sign(other_seat, &q.identities[1]),
            standard: None,
        },
        StatusCode::SeatMismatch,
    ));
    // A key type other than Ed25519.
    let mut rsa = base.clone();
    rsa.envelope.key_type = 0;
    cases.push(("not an Ed25519 key", rsa, StatusCode::UnsupportedKeyType));
    // Expired, and too long.
    cases.push(("expired", q.peer(2, 1, 7, NOW), StatusCode::Expired));
    cases.push((
        "ttl too long",
        q.peer(2, 1, 7, NOW + L.max_ttl_ms + 1),
        StatusCode::TtlTooLong,
    ));
    // Index 6 of 5.
    let mut out_of_range = base.clone();
    out_of_range.seat.index = 6;
    cases.push(("index 6 of 5", out_of_range, StatusCode::IndexOutOfRange));
    // Another namespace.
    let other = TestQuorum::deal(5, 3, &mut ChaCha20Rng::seed_from_u64(0xbad));
    cases.push((
        "another quorum's record",
        other.peer(2, 1, 7, NOW + HOUR),
        StatusCode::UnknownNamespace,
    ));
    // Too many addresses.
    let many: Vec<_> = (0..L.max_addrs as u16 + 1)
        .map(|p| format!("/ip4/10.0.0.1/tcp/{}", 1000 + p).parse().unwrap())
        .collect();
    cases.push((
        "too many addresses",
        PeerRecord::sign(base.seat.clone(), many, 7, NOW + HOUR, &q.identities[1]),
        StatusCode::RecordTooLarge,
    ));
    let mut codes = std::collections::BTreeSet::new();
    for (name, record, code) in cases {
        // Every case survives the wire: the refusal is validation's.
        let decoded = PeerRecord::decode(&record.encode())
            .unwrap_or_else(|e| panic!("{name}: does not decode: {e}"));
        assert_eq!(check(&decoded), Err(code), "{name}");
        codes.insert(code);
    }
    assert!(codes.len() >= 6);
}

#[test]
fn a_namespace_without_a_member_list_seats_nobody() {
    use rendezvous_proto::seated::check_seated_fields;
    let mut record = quorum().namespace(1, Some("farmer"), NOW, NOW + 2 * HOUR);
    record.members = None;
    // Such a record is refused itself...
    assert_eq!(
        verify_namespace(&record, NOW, &L).err(),
        Some(StatusCode::InvalidParameters)
    );
    // ...and would seat nobody.
    assert_eq!(
        check_seated_fields(&good(1), &record, NOW, &L, None),
        Err(StatusCode::NotAMember)
    );
}

#[test]
fn a_direct_registration_from_another_connection_is_refused() {
    let remote = quorum().peer_id(4);
    assert_eq!(
        verify_seated(&good(2), namespace(), NOW, &L, Some(&remote), false),
        Err(StatusCode::PeerIdMismatch)
    );
}

#[test]
fn v1_records_and_garbage_do_not_decode() {
    let mut bytes = good(2).encode();
    let mut v1 = bytes.clone();
    v1[0] = 1;
    assert_eq!(
        PeerRecord::decode(&v1),
        Err(rendezvous_proto::DecodeError::Version(1))
    );
    bytes.push(0);
    assert!(PeerRecord::decode(&bytes).is_err(), "trailing byte");
    bytes.truncate(bytes.len() - 2);
    assert!(PeerRecord::decode(&bytes).is_err(), "truncated");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Flipping any bits of any byte of a valid record: it no longer
    /// decodes, or it is refused (every byte is signed, is a length or
    /// tag, or names the key that must match the seat).
    #[test]
    fn any_changed_byte_is_refused(index in 1u32..=5, at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let mut bytes = good(index).encode();
        let i = at.index(bytes.len());
        bytes[i] ^= flip;
        if let Ok(record) = PeerRecord::decode(&bytes) {
            prop_assert!(check(&record).is_err(), "byte {i} changed by {flip:#04x} still validates");
        }
    }

    /// A record made for one member never validates as another member's
    /// (against the other's connection, or seated at the other's index).
    #[test]
    fn a_record_of_one_peer_never_validates_for_another(a in 1u32..=5, b in 1u32..=5) {
        prop_assume!(a != b);
        let record = good(a);
        let remote = quorum().peer_id(b);
        prop_assert_eq!(
            verify_seated(&record, namespace(), NOW, &L, Some(&remote), false),
            Err(StatusCode::PeerIdMismatch)
        );
        let mut moved = record.clone();
        moved.seat.index = b;
        prop_assert!(check(&moved).is_err());
    }
}

#[test]
fn a_client_checks_the_namespace_under_c0_and_then_the_envelopes() {
    use rendezvous_proto::seated::verify_served;
    use rendezvous_proto::validate::check_namespace_signature;
    let q = quorum();
    let record = q.namespace(1, Some("farmer"), NOW, NOW + 2 * HOUR);
    assert_eq!(check_namespace_signature(&record, NOW, &L), Ok(()));
    let mut tampered = record.clone();
    tampered.n = 4;
    tampered.members.as_mut().unwrap().pop();
    assert_eq!(
        check_namespace_signature(&tampered, NOW, &L),
        Err(StatusCode::InvalidNamespaceSignature)
    );
    let mut junk_key = record.clone();
    junk_key.commitments[0] = [0xff; 48];
    assert_eq!(
        check_namespace_signature(&junk_key, NOW, &L),
        Err(StatusCode::Decode)
    );
    // Served records: the good ones verify, a redirected one does not.
    let mut redirected = good(3);
    redirected.envelope = PeerEnvelope::sign(redirected.envelope.payload.clone(), &stranger());
    let served = [good(1), good(2), redirected];
    assert_eq!(
        verify_served(&served, &record, NOW, &L),
        vec![Ok(()), Ok(()), Err(StatusCode::PeerIdMismatch)]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The envelope's signer is compared to a PeerId as bytes, without
    /// decoding the key: it must agree with decoding it and hashing it.
    #[test]
    fn the_signer_compared_as_bytes_agrees_with_the_decoded_key(seed in any::<[u8; 32]>(), other in any::<[u8; 32]>()) {
        let signer = Keypair::ed25519_from_bytes(seed).expect("any 32 bytes are an Ed25519 secret");
        let someone = Keypair::ed25519_from_bytes(other).expect("any 32 bytes are an Ed25519 secret");
        let mut record = good(1);
        record.envelope = PeerEnvelope::sign(record.envelope.payload.clone(), &signer);
        for peer in [signer.public().to_peer_id(), someone.public().to_peer_id(), quorum().peer_id(1)] {
            prop_assert_eq!(
                record.envelope.is_signed_by(&peer),
                record.envelope.signer() == Some(peer)
            );
        }
        prop_assert!(record.envelope.is_signed_by(&signer.public().to_peer_id()));
    }
}
