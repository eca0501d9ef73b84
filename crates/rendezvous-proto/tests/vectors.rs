//! `test-vectors/records.json` is exactly what the generator produces, and
//! every case validates to its stated result when read back from the file
//! alone.

#[path = "support/crafted_ed25519.rs"]
mod crafted_ed25519;
#[path = "support/record_vectors.rs"]
mod record_vectors;

use std::collections::BTreeSet;

use record_vectors::{Vectors, NOW_MS};
use rendezvous_proto::{
    verify_handover, verify_namespace, verify_peer, HandoverRecord, Limits, NamespaceRecord,
    PeerRecord, StatusCode,
};

const L: Limits = Limits::DEFAULT;

fn committed_json() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../test-vectors/records.json"
    );
    std::fs::read_to_string(path).expect("test-vectors/records.json exists")
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("hex")
}

#[test]
fn committed_vectors_match_the_generator() {
    let generated = record_vectors::to_json(&record_vectors::generate());
    assert!(
        committed_json() == generated,
        "test-vectors/records.json is stale: run \
         `cargo run -p rendezvous-proto --example gen_record_vectors > test-vectors/records.json`"
    );
}

#[test]
fn every_case_validates_to_its_stated_result() {
    let vectors: Vectors = serde_json::from_str(&committed_json()).expect("valid JSON");
    assert_eq!(vectors.now_ms, NOW_MS);
    assert!(vectors.cases.len() >= 16);
    let mut names = BTreeSet::new();
    let mut codes = BTreeSet::new();
    for case in &vectors.cases {
        assert!(names.insert(case.name.clone()), "duplicate {}", case.name);
        assert_eq!(case.valid, case.error.is_none(), "{}", case.name);
        let encoded = unhex(&case.encoded);
        let result = match case.record_type.as_str() {
            "namespace" => {
                let record = NamespaceRecord::decode(&encoded).expect("decodes");
                assert_eq!(record.encode(), encoded, "{}: canonical", case.name);
                let signing_bytes = case.signing_bytes.as_deref().expect("signing bytes");
                let signature = case.signature.as_deref().expect("signature");
                let public_key = case.public_key.as_deref().expect("public key");
                assert_eq!(hex::encode(record.signing_bytes()), signing_bytes);
                assert_eq!(hex::encode(record.signature), signature);
                assert_eq!(hex::encode(record.commitments[0]), public_key);
                assert!(case.namespace.is_none() && case.seat.is_none());
                if case.valid {
                    assert!(
                        bls_holds(public_key, signing_bytes, signature),
                        "{}",
                        case.name
                    );
                }
                verify_namespace(&record, vectors.now_ms, &L).map(|_| ())
            }
            "peer" => {
                let record = PeerRecord::decode(&encoded).expect("decodes");
                assert_eq!(record.encode(), encoded, "{}: canonical", case.name);
                let seat = case.seat.as_ref().expect("peer cases have a seat");
                let envelope = case.envelope.as_ref().expect("and an envelope");
                assert!(case.signing_bytes.is_none() && case.signature.is_none());
                assert_eq!(hex::encode(record.seat.signing_bytes()), seat.signing_bytes);
                assert_eq!(hex::encode(record.seat.signature), seat.signature);
                assert_eq!(
                    hex::encode(record.envelope.signing_bytes()),
                    envelope.signing_bytes
                );
                assert_eq!(hex::encode(&record.envelope.signature), envelope.signature);
                assert_eq!(hex::encode(&record.envelope.key), envelope.public_key);
                let namespace = case
                    .namespace
                    .as_deref()
                    .expect("peer cases carry a namespace");
                let namespace = NamespaceRecord::decode(&unhex(namespace)).expect("decodes");
                let namespace = verify_namespace(&namespace, vectors.now_ms, &L)
                    .expect("a peer case's namespace is valid");
                assert_eq!(
                    namespace
                        .key_set()
                        .expect("a verified namespace has its key set")
                        .public_key_share(record.index())
                        .to_hex(),
                    seat.public_key,
                    "{}",
                    case.name
                );
                if case.valid {
                    // Independent checks, as another implementation would
                    // make them: both signatures are inside the encoding,
                    // the seat names the PeerId of the envelope's key, and
                    // each stated triple verifies.
                    let hex_encoded = &case.encoded;
                    assert!(hex_encoded.contains(&seat.signature), "{}", case.name);
                    assert!(hex_encoded.contains(&envelope.signature), "{}", case.name);
                    let key = libp2p_identity::ed25519::PublicKey::try_from_bytes(&unhex(
                        &envelope.public_key,
                    ))
                    .expect("an Ed25519 key");
                    let peer_id = libp2p_identity::PublicKey::from(key.clone()).to_peer_id();
                    assert!(seat
                        .signing_bytes
                        .contains(&hex::encode(peer_id.to_bytes())));
                    assert!(bls_holds(
                        &seat.public_key,
                        &seat.signing_bytes,
                        &seat.signature
                    ));
                    // The envelope under ZIP-215 (PROTOCOL.md 6.4), with
                    // ed25519-zebra directly; libp2p's cofactorless check
                    // agrees on every case but the one crafted with a
                    // torsion component in R.
                    let zip215 = ed25519_zebra::VerificationKey::try_from(
                        unhex(&envelope.public_key).as_slice(),
                    )
                    .and_then(|k| {
                        let signature =
                            ed25519_zebra::Signature::from_slice(&unhex(&envelope.signature))
                                .map_err(|_| ed25519_zebra::Error::InvalidSliceLength)?;
                        k.verify(&signature, &unhex(&envelope.signing_bytes))
                    });
                    assert!(zip215.is_ok(), "{}", case.name);
                    assert_eq!(
                        key.verify(&unhex(&envelope.signing_bytes), &unhex(&envelope.signature)),
                        !case.name.contains("torsion"),
                        "{}",
                        case.name
                    );
                }
                if let Some(standard) = &case.standard {
                    let st = record.standard.as_ref().expect("the record carries it");
                    assert_eq!(hex::encode(st.encoded()), standard.encoded);
                    assert_eq!(hex::encode(st.signing_bytes()), standard.signing_bytes);
                    assert_eq!(hex::encode(st.signature()), standard.signature);
                    // What a stock libp2p client makes of it.
                    let stock = libp2p_core::SignedEnvelope::from_protobuf_encoding(&unhex(
                        &standard.encoded,
                    ))
                    .map_err(|e| e.to_string())
                    .and_then(|e| {
                        libp2p_core::PeerRecord::from_signed_envelope(e).map_err(|e| e.to_string())
                    });
                    if case.valid {
                        let stock = stock.expect("a stock client accepts it");
                        assert_eq!(stock.peer_id(), record.peer_id(), "{}", case.name);
                        assert_eq!(stock.addresses(), record.addrs(), "{}", case.name);
                        assert_eq!(stock.seq(), record.seq(), "{}", case.name);
                    }
                }
                verify_peer(&record, &namespace, vectors.now_ms, &L, None)
            }
            "handover" => {
                let record = HandoverRecord::decode(&encoded).expect("decodes");
                assert_eq!(record.encode(), encoded, "{}: canonical", case.name);
                let signing_bytes = case.signing_bytes.as_deref().expect("signing bytes");
                let signature = case.signature.as_deref().expect("signature");
                let public_key = case.public_key.as_deref().expect("public key");
                assert_eq!(hex::encode(record.signing_bytes()), signing_bytes);
                assert_eq!(hex::encode(record.signature), signature);
                assert_eq!(record.old_quorum_key.to_hex(), public_key);
                assert!(case.namespace.is_none() && case.seat.is_none());
                if case.valid {
                    assert!(
                        bls_holds(public_key, signing_bytes, signature),
                        "{}",
                        case.name
                    );
                }
                verify_handover(&record, vectors.now_ms)
            }
            other => panic!("unknown type {other}"),
        };
        let error = result.err().map(|c| c.name().to_owned());
        assert_eq!(error, case.error, "{}", case.name);
        if let Some(code) = result.err() {
            codes.insert(code);
        }
    }
    // Every code that a record (and, for a peer record, its namespace)
    // decides alone is covered, the three peer cases among them.
    for code in [
        StatusCode::Decode,
        StatusCode::RecordTooLarge,
        StatusCode::Expired,
        StatusCode::TtlTooLong,
        StatusCode::UnknownNamespace,
        StatusCode::InvalidNamespaceSignature,
        StatusCode::InvalidParameters,
        StatusCode::InvalidKind,
        StatusCode::IndexOutOfRange,
        StatusCode::InvalidShareSignature,
        StatusCode::PeerIdMismatch,
        StatusCode::NotAMember,
        StatusCode::EpochMismatch,
        StatusCode::StaleEpoch,
        StatusCode::UnsupportedKeyType,
        StatusCode::InvalidEnvelopeSignature,
        StatusCode::SeatMismatch,
        StatusCode::InvalidHandoverSignature,
    ] {
        assert!(codes.contains(&code), "no case for {code}");
    }
    for name in [
        "peer/envelope-signed-by-another-key",
        "peer/seat-of-another-epoch",
        "peer/seat-of-an-older-epoch",
        "peer/seat-of-another-peer-id",
    ] {
        assert!(names.contains(name), "no case {name}");
    }
}

/// A BLS triple as hex: `verify(public_key, signing_bytes, signature)`.
fn bls_holds(public_key: &str, signing_bytes: &str, signature: &str) -> bool {
    let pk = dkg::PublicKey::from_bytes(&unhex(public_key)).expect("key");
    let sig = dkg::Signature::from_bytes(&unhex(signature)).expect("sig");
    pk.verify(&unhex(signing_bytes), &sig)
}
