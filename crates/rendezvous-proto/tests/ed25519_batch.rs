//! Batched Ed25519 verification of envelopes agrees with the single
//! check on every input (PROTOCOL.md 6.4): on honest signatures, on
//! tampered ones, and on the crafted edge cases where Ed25519 rules
//! differ (small-order keys and nonces, torsion components in `R` and
//! `A`, non-canonical encodings of points and of `S`, bytes that are not
//! points). The raw batch equation is checked too, not only the verdicts
//! after the fallback to single checks: a batch passes exactly when every
//! signature in it passes alone.

#[path = "support/crafted_ed25519.rs"]
mod crafted;

use crafted::{pool, resign_with_torsion, Crafted};
use ed25519_zebra::{batch, Signature, VerificationKeyBytes};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rendezvous_proto::ed25519::{verify_ed25519_batch, verify_ed25519_steps, Ed25519Item};
use rendezvous_proto::seated::{check_envelope, verify_served, PeerRecord};
use rendezvous_proto::testkit::{with_seq_unsigned, TestQuorum};
use rendezvous_proto::{verify_batch, verify_batch_with, Limits, PendingPeer, StatusCode};

const NOW: u64 = 1_700_000_000_000;
const HOUR: u64 = 3_600_000;
const MESSAGE: &[u8] = b"rdht envelope edge cases";

fn item(c: &Crafted) -> Ed25519Item<'_> {
    Ed25519Item {
        key: &c.key,
        signature: &c.signature,
        message: &c.message,
    }
}

fn single(c: &Crafted) -> bool {
    item(c).verify()
}

/// libp2p's own check (`ed25519-dalek`'s cofactorless `verify`), the
/// rule before ZIP-215.
fn libp2p_accepts(c: &Crafted) -> bool {
    libp2p_identity::ed25519::PublicKey::try_from_bytes(&c.key)
        .is_ok_and(|k| k.verify(&c.message, &c.signature))
}

/// `ed25519-zebra`'s batch equation alone, no fallback.
fn raw_batch(cases: &[&Crafted], seed: u64) -> bool {
    let mut verifier = batch::Verifier::new();
    for c in cases {
        verifier.queue((
            VerificationKeyBytes::from(c.key),
            Signature::from_bytes(&c.signature),
            &c.message,
        ));
    }
    verifier
        .verify(<chacha20::ChaCha20Rng as chacha20::rand_core::SeedableRng>::seed_from_u64(seed))
        .is_ok()
}

fn the_pool() -> &'static [Crafted] {
    static POOL: std::sync::OnceLock<Vec<Crafted>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| pool(MESSAGE))
}

#[test]
fn the_pool_has_the_verdicts_of_zip215() {
    let mut differ = Vec::new();
    for c in the_pool() {
        let name = c.name.as_str();
        let expected = if name.contains("flipped")
            || name.contains("other message")
            || name.contains("S + l")
            || name.contains("S top bits")
            || name.contains("not a point")
            || name.ends_with("S = 1")
        {
            false
        } else {
            // Honest, torsion in R or A (made by the key's owner),
            // small-order key and R with S = 0.
            true
        };
        assert_eq!(single(c), expected, "{name}");
        // ZIP-215 accepts everything libp2p's check accepts.
        if libp2p_accepts(c) {
            assert!(single(c), "{name}: libp2p accepts, ZIP-215 refuses");
        }
        if libp2p_accepts(c) != single(c) {
            differ.push(name);
        }
        // Honest signatures and every invalid case: both rules agree.
        if name.starts_with("honest") {
            assert_eq!(libp2p_accepts(c), expected, "{name}");
        }
        // A torsion component in R is refused by the cofactorless rule.
        if name.contains("R with torsion") && !name.contains("key and") {
            assert!(!libp2p_accepts(c), "{name}");
        }
    }
    assert!(differ.len() > 20, "{differ:?}");
}

#[test]
fn a_batch_of_the_whole_pool_agrees_with_single_checks() {
    let all: Vec<&Crafted> = the_pool().iter().collect();
    let items: Vec<Ed25519Item<'_>> = all.iter().map(|c| item(c)).collect();
    let singles: Vec<bool> = all.iter().map(|c| single(c)).collect();
    assert_eq!(verify_ed25519_batch(&items, [7; 32]), singles);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    for step in [1, 2, 5, 16, 1000] {
        assert_eq!(
            verify_ed25519_steps(&items, &mut rng, step, &mut || {}),
            singles
        );
    }
    // Every valid case together passes the raw batch equation (the
    // direction where a cofactorless single check and a cofactored batch
    // would disagree) ...
    let valid: Vec<&Crafted> = all.iter().copied().filter(|c| single(c)).collect();
    assert!(valid.len() > 100);
    for seed in 0..4 {
        assert!(raw_batch(&valid, seed));
    }
    // ... and adding any one invalid case fails it.
    for bad in all.iter().copied().filter(|c| !single(c)) {
        let mut with_bad = valid.clone();
        with_bad.insert(with_bad.len() / 2, bad);
        assert!(!raw_batch(&with_bad, 3), "{}", bad.name);
    }
}

#[test]
fn one_bad_signature_is_named() {
    let valid: Vec<&Crafted> = the_pool().iter().filter(|c| single(c)).collect();
    for bad in the_pool().iter().filter(|c| !single(c)).step_by(7) {
        for at in [0, 13, valid.len()] {
            let mut cases = valid.clone();
            cases.insert(at, bad);
            let items: Vec<Ed25519Item<'_>> = cases.iter().map(|c| item(c)).collect();
            let verdicts = verify_ed25519_batch(&items, [1; 32]);
            let expected: Vec<bool> = (0..cases.len()).map(|i| i != at).collect();
            assert_eq!(verdicts, expected, "{}", bad.name);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any mixture of pool cases, in any order, with repeats: the batch's
    /// verdicts are the single ones, and the raw batch equation passes
    /// exactly when all of them pass alone.
    #[test]
    fn any_mixture_agrees(picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..40), seed in any::<[u8; 32]>()) {
        let pool = the_pool();
        let cases: Vec<&Crafted> = picks.iter().map(|i| &pool[i.index(pool.len())]).collect();
        let items: Vec<Ed25519Item<'_>> = cases.iter().map(|c| item(c)).collect();
        let singles: Vec<bool> = cases.iter().map(|c| single(c)).collect();
        prop_assert_eq!(verify_ed25519_batch(&items, seed), singles.clone());
        prop_assert_eq!(raw_batch(&cases, u64::from_le_bytes(seed[..8].try_into().unwrap())), singles.iter().all(|v| *v));
    }

    /// Mixtures of valid cases only (honest, torsion, small order): the
    /// raw batch always passes.
    #[test]
    fn valid_mixtures_pass_the_raw_batch(picks in proptest::collection::vec(any::<prop::sample::Index>(), 1..40), seed in any::<u64>()) {
        let valid: Vec<&Crafted> = the_pool().iter().filter(|c| single(c)).collect();
        let cases: Vec<&Crafted> = picks.iter().map(|i| valid[i.index(valid.len())]).collect();
        prop_assert!(raw_batch(&cases, seed));
    }

    /// Random keys and messages, honest signatures, some of them tampered
    /// (one bit of the key, R, S or message flipped): batch == single,
    /// and an untampered one always verifies.
    #[test]
    fn random_signatures_and_tampering(
        seeds in proptest::collection::vec((any::<[u8; 32]>(), proptest::collection::vec(any::<u8>(), 0..64), proptest::option::of((0usize..4, any::<prop::sample::Index>(), 0u8..8))), 1..24),
        batch_seed in any::<[u8; 32]>(),
    ) {
        let mut cases = Vec::new();
        for (secret, message, tamper) in &seeds {
            let kp = libp2p_identity::Keypair::ed25519_from_bytes(*secret).unwrap();
            let mut key = kp.public().try_into_ed25519().unwrap().to_bytes();
            let mut signature: [u8; 64] = kp.sign(message).unwrap().try_into().unwrap();
            let mut message = message.clone();
            if let Some((part, at, bit)) = tamper {
                match *part {
                    0 => key[at.index(32)] ^= 1u8 << *bit,
                    1 => signature[at.index(32)] ^= 1u8 << *bit,
                    2 => signature[32 + at.index(32)] ^= 1u8 << *bit,
                    _ => message.push(*bit),
                }
            }
            cases.push(Crafted { name: String::new(), key, signature, message });
        }
        let items: Vec<Ed25519Item<'_>> = cases.iter().map(item).collect();
        let singles: Vec<bool> = cases.iter().map(single).collect();
        for ((c, (_, _, tamper)), ok) in cases.iter().zip(&seeds).zip(&singles) {
            if tamper.is_none() {
                prop_assert!(*ok);
            }
            // libp2p's rule agrees on these (no crafted points).
            prop_assert_eq!(libp2p_accepts(c), *ok);
        }
        prop_assert_eq!(verify_ed25519_batch(&items, batch_seed), singles);
    }
}

// Records: the batch inside validation and the client's check.

fn quorum() -> &'static TestQuorum {
    static Q: std::sync::OnceLock<TestQuorum> = std::sync::OnceLock::new();
    Q.get_or_init(|| TestQuorum::deal(24, 3, &mut ChaCha20Rng::seed_from_u64(24)))
}

/// Records 1..=24: valid, except those `bad` names, tampered in turn in
/// several ways; and every third valid one re-signed with a torsion
/// component in R (valid under ZIP-215).
fn records(bad: &[u32]) -> Vec<PeerRecord> {
    let q = quorum();
    (1..=24)
        .map(|i| {
            let mut r = q.peer(i, 1, 1, NOW + HOUR);
            if i % 3 == 0 {
                resign_with_torsion(&mut r.envelope, &q.identities[i as usize - 1], i as usize);
            }
            if bad.contains(&i) {
                match i % 3 {
                    0 => r = with_seq_unsigned(r, 7),
                    1 => r.envelope.signature[10] ^= 0x40,
                    _ => {
                        resign_with_torsion(&mut r.envelope, &q.identities[i as usize - 1], 5);
                        r = with_seq_unsigned(r, 9);
                    }
                }
            }
            r
        })
        .collect()
}

fn pending(records: &[PeerRecord]) -> Vec<PendingPeer> {
    let q = quorum();
    let ns = rendezvous_proto::verify_namespace(
        &q.namespace(1, None, NOW, NOW + HOUR),
        NOW,
        &Limits::DEFAULT,
    )
    .unwrap();
    records
        .iter()
        .map(|r| {
            PendingPeer::prepare_with(r.clone(), &ns, NOW, &Limits::DEFAULT, None, true).unwrap()
        })
        .collect()
}

#[test]
fn a_bad_envelope_in_a_batch_gets_its_own_code_and_nothing_else_changes() {
    let q = quorum();
    let namespace = q.namespace(1, None, NOW, NOW + HOUR);
    for bad in [
        vec![],
        vec![1],
        vec![24],
        vec![3, 4, 5],
        vec![2, 11, 17, 23],
    ] {
        let records = records(&bad);
        let expected: Vec<Result<(), StatusCode>> = (1..=24)
            .map(|i| {
                if bad.contains(&i) {
                    Err(StatusCode::InvalidEnvelopeSignature)
                } else {
                    Ok(())
                }
            })
            .collect();
        // The single check says so ...
        let singles: Vec<_> = records.iter().map(check_envelope).collect();
        assert_eq!(singles, expected, "{bad:?}");
        let pending = pending(&records);
        let alone: Vec<_> = pending.iter().map(PendingPeer::verify).collect();
        assert_eq!(alone, expected);
        // ... and every batched path agrees.
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        assert_eq!(verify_batch(&pending, &mut rng), expected);
        let mut checkpoints = 0;
        assert_eq!(
            verify_batch_with(&pending, &mut rng, &mut || checkpoints += 1),
            expected
        );
        assert!(checkpoints >= 2);
        assert_eq!(
            verify_served(&records, &namespace, NOW, &Limits::DEFAULT),
            expected
        );
    }
}

#[test]
fn torsion_in_r_is_accepted_by_rdht_and_refused_by_libp2p() {
    let q = quorum();
    let mut r = q.peer(4, 1, 1, NOW + HOUR);
    resign_with_torsion(&mut r.envelope, &q.identities[3], 1);
    assert!(r.envelope.verify());
    let libp2p_key = r.envelope.public_key().unwrap();
    assert!(!libp2p_key.verify(&r.envelope.signing_bytes(), &r.envelope.signature));
}
