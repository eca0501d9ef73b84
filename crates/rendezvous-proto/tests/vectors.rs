//! `test-vectors/records.json` is exactly what the generator produces, and
//! every case validates to its stated result when read back from the file
//! alone.

#[path = "support/record_vectors.rs"]
mod record_vectors;

use std::collections::BTreeSet;

use record_vectors::{Vectors, NOW_MS};
use rendezvous_proto::{
    verify_namespace, verify_peer, Limits, NamespaceRecord, PeerRecord, StatusCode,
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
    assert!(vectors.cases.len() >= 12);
    let mut names = BTreeSet::new();
    let mut codes = BTreeSet::new();
    for case in &vectors.cases {
        assert!(names.insert(case.name.clone()), "duplicate {}", case.name);
        assert_eq!(case.valid, case.error.is_none(), "{}", case.name);
        let public_key = unhex(&case.public_key);
        let encoded = unhex(&case.encoded);
        let result = match case.record_type.as_str() {
            "namespace" => {
                let record = NamespaceRecord::decode(&encoded).expect("decodes");
                assert_eq!(record.encode(), encoded, "{}: canonical", case.name);
                assert_eq!(hex::encode(record.signing_bytes()), case.signing_bytes);
                assert_eq!(hex::encode(record.signature), case.signature);
                assert_eq!(record.commitments[0].to_vec(), public_key, "{}", case.name);
                assert!(case.namespace.is_none());
                verify_namespace(&record, vectors.now_ms, &L).map(|_| ())
            }
            "peer" => {
                let record = PeerRecord::decode(&encoded).expect("decodes");
                assert_eq!(record.encode(), encoded, "{}: canonical", case.name);
                assert_eq!(hex::encode(record.signing_bytes()), case.signing_bytes);
                assert_eq!(hex::encode(record.signature), case.signature);
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
                        .public_key_share(record.index)
                        .to_bytes()
                        .to_vec(),
                    public_key,
                    "{}",
                    case.name
                );
                verify_peer(&record, &namespace, vectors.now_ms, &L, None)
            }
            other => panic!("unknown type {other}"),
        };
        let error = result.err().map(|c| c.name().to_owned());
        assert_eq!(error, case.error, "{}", case.name);
        if case.valid {
            // An independent check of the stated triple, as another
            // implementation would do it.
            let pk = dkg::PublicKey::from_bytes(&public_key).expect("key");
            let sig = dkg::Signature::from_bytes(&unhex(&case.signature)).expect("sig");
            assert!(
                pk.verify(&unhex(&case.signing_bytes), &sig),
                "{}",
                case.name
            );
        }
        if let Some(code) = result.err() {
            codes.insert(code);
        }
    }
    // Every code that a record (and, for a peer record, its namespace)
    // decides alone is covered.
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
        StatusCode::NotAMember,
        StatusCode::EpochMismatch,
    ] {
        assert!(codes.contains(&code), "no case for {code}");
    }
}
