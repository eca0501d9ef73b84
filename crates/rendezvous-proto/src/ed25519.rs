//! Ed25519 verification of rdht envelopes under the ZIP-215 rules
//! (PROTOCOL.md 6.4), one at a time or in batches that agree with the
//! single check on every input.
//!
//! Why ZIP-215 and not libp2p's own check: libp2p's
//! (`ed25519-dalek`'s `verify`) is the cofactorless equation
//! `[S]B = R + [k]A` with `R` compared as bytes, and no batch equation
//! agrees with it on every input (a signature whose `R` or `A` carries a
//! torsion component can pass a random linear combination and fail alone,
//! or the reverse, depending on the coefficients drawn). ZIP-215
//! (`ed25519-zebra`, Zcash Foundation) is the cofactored equation
//! `[8][S]B = [8]R + [8][k]A`, with `A` and `R` any encodings of curve
//! points (non-canonical ones included, `k` hashed over the bytes as
//! given) and `S` canonical (`S < l`). Its batch check is
//! `[8](sum z_i (R_i + k_i A_i - S_i B)) = 0` with random 128-bit `z_i`:
//! every term that passes alone is a torsion point that `[8]` clears, and
//! a term that fails alone is a point of the prime-order subgroup after
//! `[8]`, which random coefficients cannot cancel (except with
//! probability about 2^-128). Decoding is the same in both (a key or an
//! `R` that is not a point, or a non-canonical `S`, fails both).
//!
//! Every signature that libp2p's check accepts, this accepts; what this
//! accepts beyond it are signatures only the key's owner can make
//! (an `R` with a torsion component or a non-canonical encoding) and
//! signatures under small-order keys (which libp2p's check accepts as
//! well: nobody holds such a key, so anyone can sign for it).

use ed25519_zebra::{batch, Signature, VerificationKey, VerificationKeyBytes};
use rand_core::RngCore;
use sha2::{Digest, Sha256};

/// Largest batch checked in one multiscalar multiplication when a
/// driver asks to be called back between steps (each step then takes
/// about 16 envelope checks' time, half of it batched).
pub const STEP_ENVELOPES: usize = 16;

/// One Ed25519 signature to check: a 32-byte key, a 64-byte signature
/// and the signed bytes. Keys or signatures of other lengths never
/// verify.
#[derive(Clone, Copy, Debug)]
pub struct Ed25519Item<'a> {
    /// The public key's 32 bytes (any encoding of a curve point).
    pub key: &'a [u8],
    /// `R || S`.
    pub signature: &'a [u8],
    /// The signed bytes.
    pub message: &'a [u8],
}

impl<'a> Ed25519Item<'a> {
    /// The key and signature as fixed-size values, if their lengths fit.
    fn parts(&self) -> Option<(VerificationKeyBytes, Signature)> {
        let key = <[u8; 32]>::try_from(self.key).ok()?;
        let signature = Signature::from_slice(self.signature).ok()?;
        Some((VerificationKeyBytes::from(key), signature))
    }

    /// The item as `ed25519-zebra`'s (its challenge `k` hashed once).
    fn prepared(&self) -> Option<batch::Item> {
        self.parts()
            .map(|(key, signature)| batch::Item::from((key, signature, self.message)))
    }

    /// Whether the signature verifies under ZIP-215's rules, alone.
    pub fn verify(&self) -> bool {
        self.parts().is_some_and(|(key, signature)| {
            VerificationKey::try_from(key)
                .and_then(|key| key.verify(&signature, self.message))
                .is_ok()
        })
    }
}

/// Verifies `items`, one verdict each, in order, equal to
/// [`Ed25519Item::verify`] of each: a batch check first, and only if it
/// fails each signature alone (so the bad ones are named). `seed` is
/// mixed with a hash of every item into the batch's coefficients, so
/// they are unpredictable to whoever chose the items even when `seed` is
/// not secret.
pub fn verify_ed25519_batch(items: &[Ed25519Item<'_>], seed: [u8; 32]) -> Vec<bool> {
    let prepared: Vec<Option<batch::Item>> = items.iter().map(Ed25519Item::prepared).collect();
    let queued: Vec<&batch::Item> = prepared.iter().flatten().collect();
    let all_pass = match queued.as_slice() {
        [] => true,
        [one] => (*one).clone().verify_single().is_ok(),
        many => {
            let mut verifier = batch::Verifier::new();
            for item in many {
                verifier.queue((*item).clone());
            }
            verifier.verify(coefficients(items, seed)).is_ok()
        }
    };
    prepared
        .into_iter()
        .map(|item| match item {
            None => false,
            Some(_) if all_pass => true,
            Some(item) => item.verify_single().is_ok(),
        })
        .collect()
}

/// [`verify_ed25519_batch`] in steps of at most `step` items, calling
/// `checkpoint` after each; the seed of each step is drawn from `rng`.
pub fn verify_ed25519_steps<R: RngCore>(
    items: &[Ed25519Item<'_>],
    rng: &mut R,
    step: usize,
    checkpoint: &mut dyn FnMut(),
) -> Vec<bool> {
    let mut verdicts = Vec::with_capacity(items.len());
    for chunk in items.chunks(step.max(1)) {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        verdicts.extend(verify_ed25519_batch(chunk, seed));
        checkpoint();
    }
    verdicts
}

/// The batch's coefficient generator: ChaCha20 keyed by
/// `sha256(domain || seed || each item's key, signature, message)`.
fn coefficients(items: &[Ed25519Item<'_>], seed: [u8; 32]) -> chacha20::ChaCha20Rng {
    use chacha20::rand_core::SeedableRng;
    let mut h = Sha256::new();
    h.update(b"rdht/ed25519-batch/v1");
    h.update(seed);
    for item in items {
        for part in [item.key, item.signature, item.message] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
    }
    chacha20::ChaCha20Rng::from_seed(h.finalize().into())
}
