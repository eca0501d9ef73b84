//! The committed `test-vectors/threshold.json` and `test-vectors/reshare.json`
//! are what the generators make, and every value in them checks out
//! independently of the generators.

use dkg::{combine_signatures, PublicKey, PublicKeySet, Signature, SignatureShare};
use serde_json::Value;

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../test-vectors/threshold.json"
);
const RESHARE_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../test-vectors/reshare.json"
);

#[test]
fn committed_vectors_match_the_generator() {
    let committed = std::fs::read_to_string(PATH).expect("test-vectors/threshold.json exists");
    let generated = serde_json::to_string_pretty(&dkg::vectors::threshold_vectors()).unwrap();
    assert_eq!(
        committed.trim_end(),
        generated.trim_end(),
        "regenerate with `just vectors`"
    );
}

#[test]
fn committed_vectors_verify() {
    let json: Value = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    let cases = json["cases"].as_array().unwrap();
    assert!(cases.len() >= 4);
    assert!(cases.iter().any(|c| c["threshold"].as_u64().unwrap() >= 7));
    for case in cases {
        check_case(case);
    }
}

#[test]
fn committed_reshare_vectors_match_the_generator() {
    let committed =
        std::fs::read_to_string(RESHARE_PATH).expect("test-vectors/reshare.json exists");
    let generated = serde_json::to_string_pretty(&dkg::vectors::reshare_vectors()).unwrap();
    assert_eq!(
        committed.trim_end(),
        generated.trim_end(),
        "regenerate with `just vectors`"
    );
}

/// Each side is a valid threshold case on its own, the quorum key is the
/// same, the commitments differ, and one case grows the threshold.
#[test]
fn committed_reshare_vectors_verify() {
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(RESHARE_PATH).unwrap()).unwrap();
    let cases = json["cases"].as_array().unwrap();
    assert!(cases.len() >= 3);
    let threshold = |c: &Value| c["threshold"].as_u64().unwrap();
    assert!(cases
        .iter()
        .any(|c| threshold(&c["new"]) > threshold(&c["old"])));
    for case in cases {
        let old = check_case(&case["old"]);
        let new = check_case(&case["new"]);
        assert_eq!(old.quorum_key(), new.quorum_key());
        assert_ne!(old.commitments(), new.commitments());
        assert_eq!(case["old"]["quorum_key"], case["new"]["quorum_key"]);
        assert_ne!(case["old"]["commitments"], case["new"]["commitments"]);
    }
}

/// Checks one threshold case on its own; returns its key set.
fn check_case(case: &Value) -> PublicKeySet {
    let n = case["n"].as_u64().unwrap() as u32;
    let threshold = case["threshold"].as_u64().unwrap() as u32;
    let message = hex::decode(case["message"].as_str().unwrap()).unwrap();
    let commitments: Vec<PublicKey> = case["commitments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| PublicKey::from_hex(c.as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(commitments.len() as u32, threshold);
    let set = PublicKeySet::new(commitments).unwrap();
    let quorum_key = PublicKey::from_hex(case["quorum_key"].as_str().unwrap()).unwrap();
    assert_eq!(set.quorum_key(), quorum_key);
    let shares = case["shares"].as_array().unwrap();
    assert_eq!(shares.len() as u32, n);
    let mut signature_shares = Vec::new();
    for share in shares {
        let index = share["index"].as_u64().unwrap() as u32;
        let pk = PublicKey::from_hex(share["public_key_share"].as_str().unwrap()).unwrap();
        assert_eq!(set.public_key_share(index), pk);
        let signature = Signature::from_hex(share["signature_share"].as_str().unwrap()).unwrap();
        assert!(pk.verify(&message, &signature));
        signature_shares.push(SignatureShare { index, signature });
    }
    let combined = Signature::from_hex(case["combined_signature"].as_str().unwrap()).unwrap();
    assert!(quorum_key.verify(&message, &combined));
    // Any other threshold subset (here: the highest indices) gives the same.
    let top = &signature_shares[(n - threshold) as usize..];
    assert_eq!(combine_signatures(threshold, n, top).unwrap(), combined);
    set
}
