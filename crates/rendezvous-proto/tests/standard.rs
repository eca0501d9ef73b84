//! The standard signed peer record (PROTOCOL.md 16.1) against libp2p-core
//! both ways, carried in a peer record without disturbing records that
//! have none, and bound to the envelope by validation.

use libp2p_identity::Keypair;
use multiaddr::Multiaddr;
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rendezvous_proto::seated::{verify_served, PeerRecord};
use rendezvous_proto::standard::StandardRecord;
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::{Limits, StatusCode};

const NOW: u64 = 1_700_000_000_000;
const HOUR: u64 = 3_600_000;

fn addrs(ports: &[u16]) -> Vec<Multiaddr> {
    ports
        .iter()
        .map(|p| format!("/ip4/127.0.0.1/tcp/{p}").parse().unwrap())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Ours decodes to what libp2p-core reads, and libp2p-core's own
    /// record (re-made with its seq) is byte for byte ours.
    #[test]
    fn agrees_with_libp2p_core_both_ways(seed in any::<[u8; 32]>(), seq in any::<u64>(), ports in proptest::collection::vec(1u16.., 0..5)) {
        let key = Keypair::ed25519_from_bytes(seed).unwrap();
        let ours = StandardRecord::sign(&key, seq, addrs(&ports));
        prop_assert!(ours.verify());
        let envelope = libp2p_core::SignedEnvelope::from_protobuf_encoding(ours.encoded()).unwrap();
        let theirs = libp2p_core::PeerRecord::from_signed_envelope(envelope).unwrap();
        prop_assert_eq!(theirs.peer_id(), key.public().to_peer_id());
        prop_assert_eq!(theirs.seq(), seq);
        prop_assert_eq!(theirs.addresses(), &addrs(&ports)[..]);
        prop_assert_eq!(StandardRecord::decode(ours.encoded()).unwrap(), ours.clone());

        // libp2p-core's record: ours decodes it, verifies it and
        // re-encodes it to the same bytes.
        let made = libp2p_core::PeerRecord::new(&key, addrs(&ports)).unwrap();
        let bytes = made.to_signed_envelope().into_protobuf_encoding();
        let decoded = StandardRecord::decode(&bytes).unwrap();
        prop_assert!(decoded.verify());
        prop_assert_eq!(decoded.encoded(), &bytes[..]);
        prop_assert_eq!(decoded.seq(), made.seq());
        let again = StandardRecord::sign(&key, made.seq(), addrs(&ports));
        prop_assert_eq!(again.encoded(), &bytes[..]);
    }

    /// Garbage and mutations never panic; what decodes is canonical.
    #[test]
    fn mutations_never_panic(seed in any::<[u8; 32]>(), at in any::<prop::sample::Index>(), flip in 1u8..) {
        let key = Keypair::ed25519_from_bytes(seed).unwrap();
        let mut bytes = StandardRecord::sign(&key, 7, addrs(&[4001, 4002])).encoded().to_vec();
        let i = at.index(bytes.len());
        bytes[i] ^= flip;
        if let Ok(r) = StandardRecord::decode(&bytes) {
            prop_assert_eq!(r.encoded(), &bytes[..]);
            prop_assert!(!r.verify() || r.encoded() == StandardRecord::sign(&key, r.seq(), r.addrs().to_vec()).encoded());
        }
        for cut in 0..bytes.len() {
            let _ = StandardRecord::decode(&bytes[..cut]);
        }
    }
}

#[test]
fn carried_in_a_peer_record_and_bound_to_its_envelope() {
    let q = TestQuorum::deal(3, 2, &mut ChaCha20Rng::seed_from_u64(16));
    let ns = q.namespace(1, None, NOW, NOW + 2 * HOUR);
    let l = Limits::DEFAULT;
    let plain = q.peer(2, 1, 5, NOW + HOUR);
    let with = plain.clone().with_standard(&q.identities[1]);
    // Without one, the encoding is what it always was; with one, it
    // round-trips and only grows.
    assert!(with.encode().len() > plain.encode().len());
    assert_eq!(PeerRecord::decode(&plain.encode()).unwrap(), plain);
    assert_eq!(PeerRecord::decode(&with.encode()).unwrap(), with);
    assert_eq!(
        verify_served(&[plain.clone(), with.clone()], &ns, NOW, &l),
        vec![Ok(()), Ok(())]
    );

    let stranger = Keypair::ed25519_from_bytes([9; 32]).unwrap();
    let swap = |standard: StandardRecord| {
        let mut r = with.clone();
        r.standard = Some(Box::new(standard));
        r
    };
    let cases = [
        (
            swap(StandardRecord::sign(
                &q.identities[1],
                6,
                plain.addrs().to_vec(),
            )),
            StatusCode::StandardRecordMismatch,
        ),
        (
            swap(StandardRecord::sign(&q.identities[1], 5, addrs(&[1]))),
            StatusCode::StandardRecordMismatch,
        ),
        (
            swap(StandardRecord::sign(
                &q.identities[2],
                5,
                plain.addrs().to_vec(),
            )),
            StatusCode::StandardRecordMismatch,
        ),
        (
            swap(StandardRecord::sign(&stranger, 5, plain.addrs().to_vec())),
            StatusCode::StandardRecordMismatch,
        ),
    ];
    for (record, code) in cases {
        assert_eq!(verify_served(&[record], &ns, NOW, &l), vec![Err(code)]);
    }
    // A standard record whose signature does not verify.
    let mut bytes = with.standard.as_ref().unwrap().encoded().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let forged = swap(StandardRecord::decode(&bytes).unwrap());
    assert_eq!(
        verify_served(&[forged], &ns, NOW, &l),
        vec![Err(StatusCode::InvalidEnvelopeSignature)]
    );
    // Trailing bytes after the record: not a peer record.
    let mut enc = with.encode();
    enc.push(0);
    assert!(PeerRecord::decode(&enc).is_err());
}
