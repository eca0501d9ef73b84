//! The record test vectors (`test-vectors/records.json`), generated
//! deterministically from fixed seeds and fixed times.
//!
//! Shared by `examples/gen_record_vectors.rs` (which prints them) and
//! `tests/vectors.rs` (which checks the committed file is exactly what this
//! generates). Each case states its expected result by hand; the generator
//! also checks that validation agrees, so a wrong expectation cannot be
//! written into the file.

use dkg::{Polynomial, SecretKeyShare, SignatureShare};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rendezvous_proto::records::{NamespaceRecord, PeerRecord, G2_BYTES};
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::{verify_namespace, verify_peer, Limits, Multiaddr, StatusCode};
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

/// One record and its expected validation result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    /// Unique, descriptive.
    pub name: String,
    /// `namespace` or `peer`.
    #[serde(rename = "type")]
    pub record_type: String,
    /// The record's canonical encoding (hex).
    pub encoded: String,
    /// The bytes its signature covers (hex).
    pub signing_bytes: String,
    /// The key the signature must verify under (hex, compressed G1): the
    /// quorum key `commitments[0]` for a namespace record, `PK_index`
    /// derived from the namespace's commitments for a peer record.
    pub public_key: String,
    /// The record's signature field (hex, compressed G2).
    pub signature: String,
    /// Whether validation accepts it.
    pub valid: bool,
    /// `StatusCode::name()` of the rejection, or null.
    pub error: Option<String>,
    /// Peer records only: the namespace record (hex) to validate against
    /// (it is itself valid at `now_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
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

fn resign_peer(record: &mut PeerRecord, share: &SecretKeyShare) {
    record.signature = share.sign(&record.signing_bytes()).signature.to_bytes();
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
            encoded: hex::encode(record.encode()),
            signing_bytes: hex::encode(record.signing_bytes()),
            public_key: hex::encode(record.commitments[0]),
            signature: hex::encode(record.signature),
            valid: error.is_none(),
            error: error.map(|e| e.name().to_owned()),
            namespace: None,
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
        let public_key = verified.key_set().public_key_share(record.index);
        self.cases.push(Case {
            name: name.to_owned(),
            record_type: "peer".to_owned(),
            encoded: hex::encode(record.encode()),
            signing_bytes: hex::encode(record.signing_bytes()),
            public_key: public_key.to_hex(),
            signature: hex::encode(record.signature),
            valid: error.is_none(),
            error: error.map(|e| e.name().to_owned()),
            namespace: Some(hex::encode(namespace.encode())),
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
    let ns_a = a.namespace(1, Some("farmer"), true, issued, expires);
    v.namespace("namespace/valid-kind-and-members", &ns_a, None);
    let ns_solo = solo.namespace(0, None, false, issued, expires);
    v.namespace("namespace/valid-minimal-1-of-1", &ns_solo, None);

    let mut r = a.namespace_unsigned(1, None, false, issued, expires);
    r.n = 2; // threshold 3
    sign_as_quorum(&a, &mut r);
    v.namespace(
        "namespace/threshold-above-n",
        &r,
        Some(StatusCode::InvalidParameters),
    );

    let mut r = a.namespace_unsigned(1, None, false, issued, expires);
    r.n = L.max_members + 1;
    sign_as_quorum(&a, &mut r);
    v.namespace(
        "namespace/n-above-max-members",
        &r,
        Some(StatusCode::InvalidParameters),
    );

    let mut r = a.namespace_unsigned(1, None, true, issued, expires);
    if let Some(members) = r.members.as_mut() {
        members.pop();
    }
    sign_as_quorum(&a, &mut r);
    v.namespace(
        "namespace/member-list-shorter-than-n",
        &r,
        Some(StatusCode::InvalidParameters),
    );

    let r = a.namespace(1, None, false, expires + 1, expires);
    v.namespace(
        "namespace/issued-after-expiry",
        &r,
        Some(StatusCode::InvalidParameters),
    );

    let r = a.namespace(1, Some("Farmer"), false, issued, expires);
    v.namespace(
        "namespace/kind-not-a-lowercase-label",
        &r,
        Some(StatusCode::InvalidKind),
    );

    let r = a.namespace(1, None, false, NOW_MS - 2 * HOUR, NOW_MS);
    v.namespace("namespace/expired", &r, Some(StatusCode::Expired));

    let r = a.namespace(1, None, false, issued, NOW_MS + L.max_ttl_ms + 1);
    v.namespace("namespace/ttl-too-long", &r, Some(StatusCode::TtlTooLong));

    let mut r = a.namespace(1, None, false, issued, expires);
    r.signature = not_a_point_g2();
    v.namespace(
        "namespace/signature-not-a-point",
        &r,
        Some(StatusCode::Decode),
    );

    let mut r = a.namespace_unsigned(1, None, false, issued, expires);
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

    let mut r = a.namespace_unsigned(1, Some("farmer"), true, issued, expires);
    sign_namespace(&a, &mut r, 2, 2);
    v.namespace(
        "namespace/fewer-than-threshold-shares",
        &r,
        Some(StatusCode::InvalidNamespaceSignature),
    );

    // B's key set with A's quorum key in front, signed by B's members.
    let mut r = b.namespace_unsigned(1, Some("farmer"), true, issued, expires);
    r.commitments[0] = a.quorum_key().0;
    sign_as_quorum(&b, &mut r);
    v.namespace(
        "namespace/squatter-claims-another-quorum-key",
        &r,
        Some(StatusCode::InvalidNamespaceSignature),
    );

    // ---- peer records, against ns_a (epoch 1, n = 5, members listed)
    let peer_expires = NOW_MS + 2 * HOUR;
    v.peer("peer/valid", &a.peer(2, 1, 1, peer_expires), &ns_a, None);
    let mut r = a.peer(5, 1, 42, peer_expires);
    r.addrs = vec![
        "/ip4/192.0.2.5/tcp/4005".parse().expect("addr"),
        "/ip6/2001:db8::5/udp/4005/quic-v1".parse().expect("addr"),
        "/dns/member5.example/tcp/4005".parse().expect("addr"),
    ];
    resign_peer(&mut r, &a.shares[4].secret);
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
        let mut r = a.peer(1, 1, 1, peer_expires);
        r.index = index;
        resign_peer(&mut r, &a.shares[0].secret);
        v.peer(name, &r, &ns_a, Some(StatusCode::IndexOutOfRange));
    }

    v.peer(
        "peer/epoch-mismatch",
        &a.peer(2, 2, 1, peer_expires),
        &ns_a,
        Some(StatusCode::EpochMismatch),
    );

    let mut r = a.peer(3, 1, 1, peer_expires);
    r.addrs = (0..=L.max_addrs as u16)
        .map(|i| {
            format!("/ip4/192.0.2.3/tcp/{}", 5000 + i)
                .parse::<Multiaddr>()
                .expect("addr")
        })
        .collect();
    resign_peer(&mut r, &a.shares[2].secret);
    v.peer(
        "peer/too-many-addrs",
        &r,
        &ns_a,
        Some(StatusCode::RecordTooLarge),
    );

    // Member 1's own share, but member 2's PeerId.
    let mut r = a.peer(1, 1, 1, peer_expires);
    r.peer_id = a.peer_id(2);
    resign_peer(&mut r, &a.shares[0].secret);
    v.peer("peer/not-a-member", &r, &ns_a, Some(StatusCode::NotAMember));

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

    let outsider = Polynomial::random(1, &mut ChaCha20Rng::seed_from_u64(0x5eed_0004));
    let outsider = SecretKeyShare::new(4, outsider.evaluate(1)).expect("outsider share");
    let mut r = a.peer(4, 1, 1, peer_expires);
    resign_peer(&mut r, &outsider);
    v.peer(
        "peer/signed-by-outsider-key",
        &r,
        &ns_a,
        Some(StatusCode::InvalidShareSignature),
    );

    let mut r = a.peer(4, 1, 1, peer_expires);
    resign_peer(&mut r, &b.shares[3].secret);
    v.peer(
        "peer/signed-with-another-quorums-share",
        &r,
        &ns_a,
        Some(StatusCode::InvalidShareSignature),
    );

    // Member 1's record moved to index 2 (with member 2's PeerId, so the
    // member list matches and only the signature can tell).
    let mut r = a.peer(1, 1, 1, peer_expires);
    r.index = 2;
    r.peer_id = a.peer_id(2);
    v.peer(
        "peer/moved-to-another-index",
        &r,
        &ns_a,
        Some(StatusCode::InvalidShareSignature),
    );

    let mut r = a.peer(2, 1, 1, peer_expires);
    r.seq = 2;
    v.peer(
        "peer/seq-changed-after-signing",
        &r,
        &ns_a,
        Some(StatusCode::InvalidShareSignature),
    );

    let mut r = a.peer(2, 1, 1, peer_expires);
    r.signature = not_a_point_g2();
    v.peer(
        "peer/signature-not-a-point",
        &r,
        &ns_a,
        Some(StatusCode::Decode),
    );

    Vectors {
        now_ms: NOW_MS,
        cases: v.cases,
    }
}
