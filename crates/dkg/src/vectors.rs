//! Deterministic test vectors for the threshold scheme, so that a second
//! implementation can check ours (`test-vectors/threshold.json`).
//!
//! Resharing vectors (`test-vectors/reshare.json`) hold each case's
//! quorum before and after a resharing, in the same format.
//!
//! Regenerate both with `just vectors`; tests check the committed files
//! match.

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde::Serialize;

use crate::dkg::{Destination, ReshareConfig, ReshareMember, ReshareOutput};
use crate::{
    combine_signatures, KeyShare, Polynomial, PublicKeySet, SecretKeyShare, SignatureShare,
};

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
            threshold_case(n, poly.commitments().as_ref(), &secrets, &message)
        })
        .collect();
    ThresholdVectors { cases }
}

/// One case: the quorum (`n`, its key set), every member's secret share,
/// and the message they sign.
fn threshold_case(
    n: u32,
    key_set: Option<&PublicKeySet>,
    secrets: &[SecretKeyShare],
    message: &[u8],
) -> ThresholdCase {
    let threshold = key_set.map_or(0, PublicKeySet::threshold);
    let signature_shares: Vec<SignatureShare> = secrets.iter().map(|s| s.sign(message)).collect();
    let combined = combine_signatures(threshold, n, &signature_shares)
        .map(|s| s.to_hex())
        .unwrap_or_default();
    ThresholdCase {
        n,
        threshold,
        quorum_key: key_set
            .map(|set| set.quorum_key().to_hex())
            .unwrap_or_default(),
        commitments: key_set
            .map(|set| set.commitments().iter().map(|c| c.to_hex()).collect())
            .unwrap_or_default(),
        message: hex::encode(message),
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
}

/// `test-vectors/reshare.json`: one resharing per case.
#[derive(Debug, Serialize)]
pub struct ReshareVectors {
    /// One case per resharing.
    pub cases: Vec<ReshareCase>,
}

/// A quorum before and after a resharing: two threshold cases with the
/// same quorum key and different commitments.
#[derive(Debug, Serialize)]
pub struct ReshareCase {
    /// Epoch `e`.
    pub old: ThresholdCase,
    /// Epoch `e + 1`, made by resharing `old`.
    pub new: ThresholdCase,
}

/// The resharings covered: (old n, old threshold, how many old members
/// stay (the highest old indices, which become the lowest new ones), new
/// n, new threshold).
pub const RESHARE_CASES: [(u32, u32, u32, u32, u32); 4] = [
    (4, 3, 3, 4, 3), // one member replaced
    (3, 2, 2, 5, 4), // the threshold grows
    (3, 2, 0, 4, 3), // disjoint member sets
    (5, 3, 3, 3, 2), // the quorum shrinks
];

/// Builds the resharing vectors from fixed seeds: case `k`'s old epoch
/// comes from a polynomial drawn with seed `100 + k`, and each node of the
/// resharing draws from seed `1000 * (k + 1) + its position`; the run is
/// driven with instant, in-order delivery (every member honest).
pub fn reshare_vectors() -> ReshareVectors {
    let cases = RESHARE_CASES
        .iter()
        .enumerate()
        .filter_map(|(k, &(old_n, old_t, kept, new_n, new_t))| {
            let mut rng = ChaCha20Rng::seed_from_u64(100 + k as u64);
            let poly = Polynomial::random(old_t, &mut rng);
            let old_set = poly.commitments()?;
            let old_secrets: Vec<SecretKeyShare> = (1..=old_n)
                .filter_map(|i| SecretKeyShare::new(i, poly.evaluate(i)).ok())
                .collect();
            let old_members: Vec<Vec<u8>> = (1..=old_n)
                .map(|i| format!("old-{i}").into_bytes())
                .collect();
            let stay = old_members.get((old_n - kept) as usize..).unwrap_or(&[]);
            let new_members: Vec<Vec<u8>> = stay
                .iter()
                .cloned()
                .chain((1..=new_n - kept).map(|i| format!("new-{i}").into_bytes()))
                .collect();
            let old_shares: Vec<KeyShare> = old_secrets
                .iter()
                .filter_map(|s| {
                    let copy = SecretKeyShare::new(s.index(), *s.scalar()).ok()?;
                    KeyShare::new(old_n, old_set.clone(), copy).ok()
                })
                .collect();
            let new_shares = reshare_instantly(
                &old_members,
                &old_shares,
                &new_members,
                new_t,
                1000 * (k as u64 + 1),
            )?;
            let new_set = new_shares.first()?.public_key_set.clone();
            let new_secrets: Vec<SecretKeyShare> = new_shares
                .iter()
                .filter_map(|s| SecretKeyShare::new(s.index(), *s.secret.scalar()).ok())
                .collect();
            let old_message = format!("rdht reshare test vector {k}, epoch 0").into_bytes();
            let new_message = format!("rdht reshare test vector {k}, epoch 1").into_bytes();
            Some(ReshareCase {
                old: threshold_case(old_n, Some(&old_set), &old_secrets, &old_message),
                new: threshold_case(new_n, Some(&new_set), &new_secrets, &new_message),
            })
        })
        .collect();
    ReshareVectors { cases }
}

/// Runs one honest resharing with every message delivered at once, in
/// order; the new members' key shares in new-index order.
fn reshare_instantly(
    old_members: &[Vec<u8>],
    old_shares: &[KeyShare],
    new_members: &[Vec<u8>],
    new_threshold: u32,
    seed: u64,
) -> Option<Vec<KeyShare>> {
    let old_set = &old_shares.first()?.public_key_set;
    let mut identities: Vec<&Vec<u8>> = Vec::new();
    for identity in old_members.iter().chain(new_members) {
        if !identities.contains(&identity) {
            identities.push(identity);
        }
    }
    let mut nodes = Vec::new();
    for (position, identity) in identities.iter().enumerate() {
        let config = ReshareConfig::new(
            old_members,
            old_set,
            new_members,
            new_threshold,
            b"rdht reshare test vector",
            identity,
            1_000,
        )
        .ok()?;
        let old_share = config
            .me()
            .old
            .and_then(|i| old_shares.get(usize::try_from(i).ok()? - 1));
        let mut rng = ChaCha20Rng::seed_from_u64(seed + position as u64);
        nodes.push(ReshareMember::new(config, old_share, 0, &mut rng).ok()?);
    }
    let mut queue = std::collections::VecDeque::new();
    loop {
        for (from, node) in nodes.iter_mut().enumerate() {
            while let Some(transmit) = node.poll_transmit() {
                let to: Vec<&[u8]> = match transmit.to {
                    Destination::Member(j) => node.config().new_member(j).into_iter().collect(),
                    Destination::All => node.config().others(),
                };
                for to in to {
                    queue.push_back((from, to.to_vec(), transmit.message.clone()));
                }
            }
        }
        let Some((from, to, message)) = queue.pop_front() else {
            break;
        };
        let from_identity = identities.get(from)?;
        let to = identities.iter().position(|i| **i == to)?;
        let node = nodes.get_mut(to)?;
        let places = node.config().participant(from_identity)?;
        // Old members that receive nothing refuse all but responses.
        let _ = node.handle_message(0, places, message);
    }
    let mut shares = Vec::new();
    for node in &mut nodes {
        if let Some(Ok(ReshareOutput::NewShare(output))) = node.take_outcome() {
            shares.push(output.key_share);
        }
    }
    shares.sort_by_key(KeyShare::index);
    (shares.len() == new_members.len()).then_some(shares)
}
