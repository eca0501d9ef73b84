//! The record test vectors (`test-vectors/records.json`), generated
//! deterministically from fixed seeds and fixed times.
//!
//! Shared by `examples/gen_record_vectors.rs` (which prints them) and
//! `tests/vectors.rs` (which checks the committed file is exactly what this
//! generates). Each case states its expected result by hand; the generator
//! also checks that validation agrees, so a wrong expectation cannot be
//! written into the file.

use dkg::{Polynomial, SecretKeyShare, SignatureShare};
use libp2p_identity::Keypair;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rendezvous_proto::records::{NamespaceRecord, PeerRecord, G2_BYTES};
use rendezvous_proto::seat::Seat;
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::{
    verify_handover, verify_namespace, verify_peer, HandoverRecord, Limits, Multiaddr, QuorumKey,
    StatusCode,
};
use serde::{Deserialize, Serialize};

/// The validation time of every case.
pub const NOW_MS: u64 = 1_700_000_000_000;
const HOUR: u64 = 3_600_000;
const L: Limits = Limits::DEFAULT;

/// The file: the validation time and the cases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vectors {
    /// Validate every case at this time (ms since the Unix epoch).
    pub now_ms: u64,
    /// The cases.
    pub cases: Vec<Case>,
}

/// One signature of a case: what it covers, the signature, and the key
/// it must verify under (all hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    /// Exactly the bytes the signature covers.
    pub signing_bytes: String,
    /// The signature.
    pub signature: String,
    /// The key: compressed G1 for BLS (`PK_i` for a seat), the 32-byte
    /// raw key for Ed25519 (an envelope).
    pub public_key: String,
}

/// One record and its expected validation result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandardCase {
    /// The signed envelope as a stock libp2p client receives it.
    pub encoded: String,
    /// What its signature covers.
    pub signing_bytes: String,
    /// The signature.
    pub signature: String,
}

/// One record and its expected result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    /// Unique, descriptive.
    pub name: String,
    /// `namespace`, `peer` or `handover`.
    #[serde(rename = "type")]
    pub record_type: String,
    /// Whether validation accepts it.
    pub valid: bool,
    /// `StatusCode::name()` of the rejection, or null.
    pub error: Option<String>,
    /// The record's canonical encoding (hex).
    pub encoded: String,
    /// Namespace records and handovers: the bytes the threshold signature
    /// covers (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_bytes: Option<String>,
    /// Namespace records and handovers: the signature field (hex,
    /// compressed G2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Namespace records: the quorum key `commitments[0]`; handovers: the
    /// old quorum key (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Peer records: the seat's share signature, under `PK_index`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seat: Option<Signed>,
    /// Peer records: the envelope's Ed25519 signature, under the key the
    /// envelope carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<Signed>,
    /// Peer records only: the namespace record (hex) to validate against
    /// (it is itself valid at `now_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Peer records that carry one: the standard libp2p signed peer
    /// record (its encoded envelope, signing bytes, signature and key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standard: Option<StandardCase>,
}

/// Renders the vectors exactly as committed: pretty JSON, newline-terminated.
pub fn to_json(vectors: &Vectors) -> String {
    let mut s = serde_json::to_string_pretty(vectors).expect("vectors serialize");
    s.push('\n');
    s
}

fn quorum(seed: u64, n: u32, threshold: u32) -> TestQuorum {
    TestQuorum::deal(n, threshold, &mut ChaCha20Rng::seed_from_u64(seed))
}

/// Signs `record` with the first `count` shares of `q`, interpolated as if
/// `as_threshold` shares were enough.
fn sign_namespace(q: &TestQuorum, record: &mut NamespaceRecord, count: usize, as_threshold: u32) {
    let message = record.signing_bytes();
    let shares: Vec<SignatureShare> = q.shares[..count]
        .iter()
        .map(|s| s.secret.sign(&message))
        .collect();
    record.signature = dkg::combine_signatures(as_threshold, q.n(), &shares)
        .expect("shares combine")
        .to_bytes();
}

fn sign_as_quorum(q: &TestQuorum, record: &mut NamespaceRecord) {
    let threshold = q.shares[0].threshold();
    sign_namespace(q, record, threshold as usize, threshold);
}

fn not_a_point_g2() -> [u8; G2_BYTES] {
    // Top (compression) bit clear: not a compressed point.
    let mut bytes = [0x11u8; G2_BYTES];
    bytes[0] = 0x01;
    bytes
}

struct Builder {
    cases: Vec<Case>,
}

impl Builder {
    fn namespace(&mut self, name: &str, record: &NamespaceRecord, error: Option<StatusCode>) {
        let got = verify_namespace(record, NOW_MS, &L).map(|_| ()).err();
        assert_eq!(got, error, "case {name}: validation disagrees");
        self.cases.push(Case {
            name: name.to_owned(),
            record_type: "namespace".to_owned(),
            valid: error.is_none(),
            error: error.map(|e| e.name().to_owned()),
            encoded: hex::encode(record.encode()),
            signing_bytes: Some(hex::encode(record.signing_bytes())),
            signature: Some(hex::encode(record.signature)),
            public_key: Some(hex::encode(record.commitments[0])),
            seat: None,
            envelope: None,
            namespace: None,
            standard: None,
        });
    }

    fn handover(&mut self, name: &str, record: &HandoverRecord, error: Option<StatusCode>) {
        let got = verify_handover(record, NOW_MS).err();
        assert_eq!(got, error, "case {name}: validation disagrees");
        self.cases.push(Case {
            name: name.to_owned(),
            record_type: "handover".to_owned(),
            valid: error.is_none(),
            error: error.map(|e| e.name().to_owned()),
            encoded: hex::encode(record.encode()),
            signing_bytes: Some(hex::encode(record.signing_bytes())),
            signature: Some(hex::encode(record.signature)),
            public_key: Some(record.old_quorum_key.to_hex()),
            seat: None,
            envelope: None,
            namespace: None,
            standard: None,
        });
    }

    fn peer(
        &mut self,
        name: &str,
        record: &PeerRecord,
        namespace: &NamespaceRecord,
        error: Option<StatusCode>,
    ) {
        let verified = verify_namespace(namespace, NOW_MS, &L).expect("case namespace is valid");
        let got = verify_peer(record, &verified, NOW_MS, &L, None).err();
        assert_eq!(got, error, "case {name}: validation disagrees");
        let share_key = verified
            .key_set()
            .expect("a verified namespace has its key set")
            .public_key_share(record.index());
        self.cases.push(Case {
            name: name.to_owned(),
            record_type: "peer".to_owned(),
            valid: error.is_none(),
            error: error.map(|e| e.name().to_owned()),
            encoded: hex::encode(record.encode()),
            signing_bytes: None,
            signature: None,
            public_key: None,
            seat: Some(Signed {
                signing_bytes: hex::encode(record.seat.signing_bytes()),
                signature: hex::encode(record.seat.signature),
                public_key: share_key.to_hex(),
            }),
            envelope: Some(Signed {
                signing_bytes: hex::encode(record.envelope.signing_bytes()),
                signature: hex::encode(&record.envelope.signature),
                public_key: hex::encode(&record.envelope.key),
            }),
            namespace: Some(hex::encode(namespace.encode())),
            standard: record.standard.as_ref().map(|st| StandardCase {
                encoded: hex::encode(st.encoded()),
                signing_bytes: hex::encode(st.signing_bytes()),
                signature: hex::encode(st.signature()),
            }),
        });
    }
}

/// Generates every case. Deterministic: fixed seeds, fixed times.
pub fn generate() -> Vectors {
    let a = quorum(0x5eed_0001, 5, 3);
    let b = quorum(0x5eed_0002, 5, 3);
    let solo = quorum(0x5eed_0003, 1, 1);
    let issued = NOW_MS - HOUR;
    let expires = NOW_MS + 24 * HOUR;
    let mut v = Builder { cases: Vec::new() };

    // ---- namespace records
    let ns_a = a.namespace(1, Some("farmer"), issued, expires);
    v.namespace("namespace/valid-kind-and-members", &ns_a, None);
    let ns_solo = solo.namespace(0, None, issued, expires);
    v.namespace("namespace/valid-minimal-1-of-1", &ns_solo, None);

    let mut r = a.namespace_unsigned(1, Some("farmer"), issued, expires);
    r.members = None;
    sign_as_quorum(&a, &mut r);
    v.namespace(
        "namespace/no-member-list",
        &r,
        Some(StatusCode::InvalidParameters),
    );

    let mut r = a.namespace_unsigned(1, None, issued, expires);
    r.n = 2; // threshold 3
    sign_as_quorum(&a, &mut r);
    v.namespace(
        "namespace/threshold-above-n",
        &r,
        Some(StatusCode::InvalidParameters),
    );

    let mut r = a.namespace_unsigned(1, None, issued, expires);
    r.n = L.max_members + 1;
    sign_as_quorum(&a, &mut r);
    v.namespace(
        "namespace/n-above-max-members",
        &r,
        Some(StatusCode::InvalidParameters),
    );

    let mut r = a.namespace_unsigned(1, None, issued, expires);
    if let Some(members) = r.members.as_mut() {
        members.pop();
    }
    sign_as_quorum(&a, &mut r);
    v.namespace(
        "namespace/member-list-shorter-than-n",
        &r,
        Some(StatusCode::InvalidParameters),
    );

    let r = a.namespace(1, None, expires + 1, expires);
    v.namespace(
        "namespace/issued-after-expiry",
        &r,
        Some(StatusCode::InvalidParameters),
    );

    let r = a.namespace(1, Some("Farmer"), issued, expires);
    v.namespace(
        "namespace/kind-not-a-lowercase-label",
        &r,
        Some(StatusCode::InvalidKind),
    );

    let r = a.namespace(1, None, NOW_MS - 2 * HOUR, NOW_MS);
    v.namespace("namespace/expired", &r, Some(StatusCode::Expired));

    let r = a.namespace(1, None, issued, NOW_MS + L.max_ttl_ms + 1);
    v.namespace("namespace/ttl-too-long", &r, Some(StatusCode::TtlTooLong));

    let mut r = a.namespace(1, None, issued, expires);
    r.signature = not_a_point_g2();
    v.namespace(
        "namespace/signature-not-a-point",
        &r,
        Some(StatusCode::Decode),
    );

    let mut r = a.namespace_unsigned(1, None, issued, expires);
    r.commitments[1] = [0x02; 48];
    sign_as_quorum(&a, &mut r);
    v.namespace(
        "namespace/commitment-not-a-point",
        &r,
        Some(StatusCode::Decode),
    );

    let mut r = ns_a.clone();
    r.epoch += 1;
    v.namespace(
        "namespace/epoch-changed-after-signing",
        &r,
        Some(StatusCode::InvalidNamespaceSignature),
    );

    let mut r = a.namespace_unsigned(1, Some("farmer"), issued, expires);
    sign_namespace(&a, &mut r, 2, 2);
    v.namespace(
        "namespace/fewer-than-threshold-shares",
        &r,
        Some(StatusCode::InvalidNamespaceSignature),
    );

    // B's key set with A's quorum key in front, signed by B's members.
    let mut r = b.namespace_unsigned(1, Some("farmer"), issued, expires);
    r.commitments[0] = a.quorum_key().0;
    sign_as_quorum(&b, &mut r);
    v.namespace(
        "namespace/squatter-claims-another-quorum-key",
        &r,
        Some(StatusCode::InvalidNamespaceSignature),
    );

    // ---- peer records, against ns_a (epoch 1, n = 5, members listed)
    let peer_expires = NOW_MS + 2 * HOUR;
    let stranger = Keypair::ed25519_from_bytes([0x5e; 32]).expect("a key");
    // Member i's record around `seat`, its envelope signed by `signer`.
    let around = |seat: Seat, signer: &Keypair, addrs: Vec<Multiaddr>| {
        PeerRecord::sign(seat, addrs, 1, peer_expires, signer)
    };
    let addr = |i: u32| -> Vec<Multiaddr> {
        vec![format!("/ip4/192.0.2.{i}/tcp/{}", 4000 + i)
            .parse()
            .expect("addr")]
    };
    let id = |q: &TestQuorum, i: u32| q.identities[i as usize - 1].clone();

    v.peer("peer/valid", &a.peer(2, 1, 1, peer_expires), &ns_a, None);
    let three = vec![
        "/ip4/192.0.2.5/tcp/4005".parse().expect("addr"),
        "/ip6/2001:db8::5/udp/4005/quic-v1".parse().expect("addr"),
        "/dns/member5.example/tcp/4005".parse().expect("addr"),
    ];
    let r = PeerRecord::sign(a.seat(5, 1), three, 42, peer_expires, &id(&a, 5));
    v.peer("peer/valid-last-member-three-addrs", &r, &ns_a, None);
    v.peer(
        "peer/valid-solo-quorum",
        &solo.peer(1, 0, 1, peer_expires),
        &ns_solo,
        None,
    );

    v.peer(
        "peer/record-of-another-namespace",
        &b.peer(2, 1, 1, peer_expires),
        &ns_a,
        Some(StatusCode::UnknownNamespace),
    );

    for (name, index) in [("peer/index-zero", 0), ("peer/index-above-n", 6)] {
        let mut seat = a.seat(1, 1);
        seat.index = index;
        seat.signature = a.shares[0]
            .secret
            .sign(&seat.signing_bytes())
            .signature
            .to_bytes();
        let r = around(seat, &id(&a, 1), addr(1));
        v.peer(name, &r, &ns_a, Some(StatusCode::IndexOutOfRange));
    }

    v.peer(
        "peer/seat-of-another-epoch",
        &a.peer(2, 2, 1, peer_expires),
        &ns_a,
        Some(StatusCode::EpochMismatch),
    );
    v.peer(
        "peer/seat-of-an-older-epoch",
        &a.peer(2, 0, 1, peer_expires),
        &ns_a,
        Some(StatusCode::StaleEpoch),
    );

    let many = (0..=L.max_addrs as u16)
        .map(|i| {
            format!("/ip4/192.0.2.3/tcp/{}", 5000 + i)
                .parse::<Multiaddr>()
                .expect("addr")
        })
        .collect();
    v.peer(
        "peer/too-many-addrs",
        &around(a.seat(3, 1), &id(&a, 3), many),
        &ns_a,
        Some(StatusCode::RecordTooLarge),
    );

    // Member 1's share seats member 2's PeerId at index 1; member 2 signs
    // the envelope. The member list says index 1 is member 1.
    let seat = Seat::sign(a.quorum_key(), 1, a.peer_id(2), &a.shares[0].secret);
    v.peer(
        "peer/seat-of-another-peer-id",
        &around(seat, &id(&a, 2), addr(2)),
        &ns_a,
        Some(StatusCode::NotAMember),
    );

    v.peer(
        "peer/expired",
        &a.peer(2, 1, 1, NOW_MS),
        &ns_a,
        Some(StatusCode::Expired),
    );
    v.peer(
        "peer/ttl-too-long",
        &a.peer(2, 1, 1, NOW_MS + L.max_ttl_ms + 1),
        &ns_a,
        Some(StatusCode::TtlTooLong),
    );

    let mut r = a.peer(2, 1, 1, peer_expires);
    r.envelope.key_type = 0;
    v.peer(
        "peer/envelope-key-not-ed25519",
        &r,
        &ns_a,
        Some(StatusCode::UnsupportedKeyType),
    );

    // Member 2's seat in a stranger's own (valid) envelope.
    v.peer(
        "peer/envelope-of-another-peer-id",
        &around(a.seat(2, 1), &stranger, addr(2)),
        &ns_a,
        Some(StatusCode::PeerIdMismatch),
    );

    // Member 2's key in the envelope, the signature a stranger's.
    let mut r = a.peer(2, 1, 1, peer_expires);
    let forged = around(a.seat(2, 1), &stranger, addr(2));
    r.envelope.signature = forged.envelope.signature.clone();
    v.peer(
        "peer/envelope-signed-by-another-key",
        &r,
        &ns_a,
        Some(StatusCode::InvalidEnvelopeSignature),
    );

    let mut r = a.peer(2, 1, 1, peer_expires);
    let mut payload = r.envelope.payload.clone();
    payload.seq = 2;
    r.envelope.replace_payload_unsigned(payload);
    v.peer(
        "peer/seq-changed-after-signing",
        &r,
        &ns_a,
        Some(StatusCode::InvalidEnvelopeSignature),
    );

    // ZIP-215 (PROTOCOL.md 6.4): member 2 signed its envelope with a
    // nonce point that carries a torsion component (order 8). Valid for
    // rdht (cofactored equation); libp2p's cofactorless check refuses it.
    let mut r = a.peer(2, 1, 1, peer_expires);
    crate::crafted_ed25519::resign_with_torsion(&mut r.envelope, &id(&a, 2), 1);
    v.peer("peer/valid-envelope-r-with-torsion", &r, &ns_a, None);

    // The standard libp2p peer record beside the envelope (PROTOCOL.md 16).
    let with_standard = a.peer(2, 1, 1, peer_expires).with_standard(&id(&a, 2));
    v.peer(
        "peer/valid-with-standard-record",
        &with_standard,
        &ns_a,
        None,
    );
    let mut r = with_standard.clone();
    r.standard = Some(Box::new(rendezvous_proto::standard::StandardRecord::sign(
        &id(&a, 2),
        1,
        addr(3),
    )));
    v.peer(
        "peer/standard-record-of-other-addrs",
        &r,
        &ns_a,
        Some(StatusCode::StandardRecordMismatch),
    );
    let mut r = with_standard.clone();
    r.standard = Some(Box::new(rendezvous_proto::standard::StandardRecord::sign(
        &stranger,
        1,
        r.addrs().to_vec(),
    )));
    v.peer(
        "peer/standard-record-of-another-peer-id",
        &r,
        &ns_a,
        Some(StatusCode::StandardRecordMismatch),
    );
    let mut r = with_standard.clone();
    let mut bytes = with_standard
        .standard
        .as_ref()
        .expect("signed")
        .encoded()
        .to_vec();
    // The signature is the last field: 64 bytes.
    let at = bytes.len() - 64;
    bytes[at..].copy_from_slice(&forged.envelope.signature);
    r.standard = Some(Box::new(
        rendezvous_proto::standard::StandardRecord::decode(&bytes).expect("decodes"),
    ));
    v.peer(
        "peer/standard-record-signed-by-another-key",
        &r,
        &ns_a,
        Some(StatusCode::InvalidEnvelopeSignature),
    );

    // An envelope member 2 signed for another of its seats (epoch 2).
    let mut r = a.peer(2, 1, 1, peer_expires);
    r.envelope = a.peer(2, 2, 1, peer_expires).envelope;
    v.peer(
        "peer/envelope-of-another-seat",
        &r,
        &ns_a,
        Some(StatusCode::SeatMismatch),
    );

    let outsider = Polynomial::random(1, &mut ChaCha20Rng::seed_from_u64(0x5eed_0004));
    let outsider = SecretKeyShare::new(4, outsider.evaluate(1)).expect("outsider share");
    v.peer(
        "peer/seat-signed-by-outsider-key",
        &around(
            Seat::sign(a.quorum_key(), 1, a.peer_id(4), &outsider),
            &id(&a, 4),
            addr(4),
        ),
        &ns_a,
        Some(StatusCode::InvalidShareSignature),
    );
    v.peer(
        "peer/seat-signed-with-another-quorums-share",
        &around(
            Seat::sign(a.quorum_key(), 1, a.peer_id(4), &b.shares[3].secret),
            &id(&a, 4),
            addr(4),
        ),
        &ns_a,
        Some(StatusCode::InvalidShareSignature),
    );

    // Member 1's seat moved to index 2 with member 2's PeerId (so the
    // member list matches and only the share signature can tell).
    let mut seat = a.seat(1, 1);
    seat.index = 2;
    seat.peer_id = a.peer_id(2);
    v.peer(
        "peer/seat-moved-to-another-index",
        &around(seat, &id(&a, 2), addr(2)),
        &ns_a,
        Some(StatusCode::InvalidShareSignature),
    );

    let mut seat = a.seat(2, 1);
    seat.signature = not_a_point_g2();
    v.peer(
        "peer/seat-signature-not-a-point",
        &around(seat, &id(&a, 2), addr(2)),
        &ns_a,
        Some(StatusCode::Decode),
    );

    // Handovers (PROTOCOL.md 15): a's key hands over to b's.
    let day = 24 * HOUR;
    let to_b = |issued: u64, expires: u64| a.handover(b.quorum_key(), issued, expires);
    v.handover("handover/valid", &to_b(NOW_MS - HOUR, NOW_MS + day), None);
    let mut by_b = to_b(NOW_MS - HOUR, NOW_MS + day);
    by_b.signature = b.threshold_sign(&by_b.signing_bytes());
    v.handover(
        "handover/signed-by-the-new-key",
        &by_b,
        Some(StatusCode::InvalidHandoverSignature),
    );
    let mut altered = to_b(NOW_MS - HOUR, NOW_MS + day);
    altered.expires_at_ms += 1;
    v.handover(
        "handover/altered-after-signing",
        &altered,
        Some(StatusCode::InvalidHandoverSignature),
    );
    v.handover(
        "handover/to-itself",
        &a.handover(a.quorum_key(), NOW_MS - HOUR, NOW_MS + day),
        Some(StatusCode::InvalidParameters),
    );
    v.handover(
        "handover/issued-after-expiry",
        &to_b(NOW_MS + 2 * day, NOW_MS + day),
        Some(StatusCode::InvalidParameters),
    );
    v.handover(
        "handover/expired",
        &to_b(NOW_MS - day, NOW_MS),
        Some(StatusCode::Expired),
    );
    v.handover(
        "handover/ttl-too-long",
        &to_b(
            NOW_MS,
            NOW_MS + rendezvous_proto::handover::MAX_HANDOVER_TTL_MS + 1,
        ),
        Some(StatusCode::TtlTooLong),
    );
    v.handover(
        "handover/new-key-not-a-point",
        &a.handover(QuorumKey([0x11; 48]), NOW_MS - HOUR, NOW_MS + day),
        Some(StatusCode::Decode),
    );

    Vectors {
        now_ms: NOW_MS,
        cases: v.cases,
    }
}
