//! Deterministic test vectors for the threshold scheme, so that a second
//! implementation can check ours (`test-vectors/threshold.json`).
//!
//! Regenerate with `cargo run -p dkg --example gen_threshold_vectors >
//! test-vectors/threshold.json`; a test checks the committed file matches.

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde::Serialize;

use crate::{combine_signatures, Polynomial, SecretKeyShare, SignatureShare};

/// The file: a list of cases.
#[derive(Debug, Serialize)]
pub struct ThresholdVectors {
    /// One case per (n, threshold).
    pub cases: Vec<ThresholdCase>,
}

/// One quorum, one message, every member's share and the combination.
#[derive(Debug, Serialize)]
pub struct ThresholdCase {
    /// Quorum size.
    pub n: u32,
    /// Shares needed.
    pub threshold: u32,
    /// `commitments[0]`, compressed G1 hex.
    pub quorum_key: String,
    /// Feldman commitments, compressed G1 hex.
    pub commitments: Vec<String>,
    /// The signed message, hex.
    pub message: String,
    /// Every member's public key share and signature share.
    pub shares: Vec<ShareVector>,
    /// Combined from the shares of the lowest `threshold` indices, compressed G2 hex.
    pub combined_signature: String,
}

/// One member's part of a case.
#[derive(Debug, Serialize)]
pub struct ShareVector {
    /// Member index (1-based).
    pub index: u32,
    /// `PK_i`, compressed G1 hex.
    pub public_key_share: String,
    /// `H(m) * x_i`, compressed G2 hex.
    pub signature_share: String,
}

/// The (n, threshold) pairs covered.
pub const CASES: [(u32, u32); 5] = [(1, 1), (3, 2), (5, 3), (10, 7), (16, 11)];

/// Builds the vectors from fixed seeds (case `k` uses seed `k`).
pub fn threshold_vectors() -> ThresholdVectors {
    let cases = CASES
        .iter()
        .enumerate()
        .map(|(k, &(n, threshold))| {
            let mut rng = ChaCha20Rng::seed_from_u64(k as u64);
            let poly = Polynomial::random(threshold, &mut rng);
            let message = format!("rdht threshold test vector {k}").into_bytes();
            let secrets: Vec<SecretKeyShare> = (1..=n)
                .filter_map(|i| SecretKeyShare::new(i, poly.evaluate(i)).ok())
                .collect();
            let signature_shares: Vec<SignatureShare> =
                secrets.iter().map(|s| s.sign(&message)).collect();
            let combined = combine_signatures(threshold, n, &signature_shares)
                .map(|s| s.to_hex())
                .unwrap_or_default();
            let commitments = poly
                .commitments()
                .map(|set| set.commitments().iter().map(|c| c.to_hex()).collect())
                .unwrap_or_default();
            ThresholdCase {
                n,
                threshold,
                quorum_key: poly
                    .commitments()
                    .map(|set| set.quorum_key().to_hex())
                    .unwrap_or_default(),
                commitments,
                message: hex::encode(&message),
                shares: secrets
                    .iter()
                    .zip(&signature_shares)
                    .map(|(s, sig)| ShareVector {
                        index: s.index(),
                        public_key_share: s.public_key_share().to_hex(),
                        signature_share: sig.signature.to_hex(),
                    })
                    .collect(),
                combined_signature: combined,
            }
        })
        .collect();
    ThresholdVectors { cases }
}
