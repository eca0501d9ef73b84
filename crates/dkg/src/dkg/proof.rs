//! Schnorr proof of knowledge of a dealer's constant term.
//!
//! As in FROST's DKG (and GJKR's rogue-key defence): a dealer proves it
//! knows `a_0` for its `C_0 = a_0 * G1`, so no dealer can pick its
//! commitment as a function of the others' (e.g. `C_0 = X - sum others`)
//! to steer the quorum key. The challenge binds the session id and the
//! dealer's index, so a proof cannot be replayed by another dealer or in
//! another run.
//!
//! `C_0` and `R` come off the wire as [`CommitmentPoint`]s, not
//! subgroup-checked, and the relation is decided on G1 components (see
//! [`crate::dkg`]): its G1 component `z * G1 = R_1 + c * A_0` is a
//! Schnorr proof for `A_0`, the G1 component of `C_0`, with a challenge
//! that hashes the full encodings of `C_0` and `R`. So the proof binds
//! the part of `C_0` that can end up in a key; a torsion component of
//! `C_0` is caught by the check of the summed key set.

use blstrs::Scalar;
use ff::Field;
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest as _, Sha256};

use super::config::SessionId;
use super::point::CommitmentPoint;
use super::verify::Relation;
use crate::keys::PublicKey;
use crate::poly::Polynomial;

/// Domain separation tag of the proof's challenge.
pub const POK_DOMAIN: &[u8] = b"rdht/dkg/pok/v1";

/// A Schnorr proof `(R, z)` with `z * G1 = R + c * C_0`, where `c` is
/// [`ProofOfKnowledge::challenge`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProofOfKnowledge {
    /// `R = k * G1` for the prover's random nonce `k` (not
    /// subgroup-checked when decoded).
    pub commitment: CommitmentPoint,
    /// `z = k + c * a_0`.
    pub response: Scalar,
}

impl ProofOfKnowledge {
    /// Proves knowledge of `polynomial`'s constant term, whose commitment is
    /// `constant` (`C_0`), as `dealer` in `session_id`.
    ///
    /// Returns `None` only if the nonce commitment is the identity, which a
    /// non-zero nonce rules out.
    pub fn prove<R: RngCore + CryptoRng>(
        session_id: &SessionId,
        dealer: u32,
        polynomial: &Polynomial,
        constant: &CommitmentPoint,
        rng: &mut R,
    ) -> Option<Self> {
        let mut nonce = loop {
            let k = Scalar::random(&mut *rng);
            if !bool::from(k.is_zero()) {
                break k;
            }
        };
        let commitment = PublicKey::from_point(crate::fixed_base::generator_mul(&nonce))
            .ok()
            .map(CommitmentPoint::from);
        let mut secret = polynomial.secret();
        let proof = commitment.map(|commitment| {
            let c = Self::challenge(session_id, dealer, constant, &commitment);
            Self {
                commitment,
                response: nonce + c * secret,
            }
        });
        // Scalars are not `Zeroize`; overwrite the nonce and the secret so
        // they do not linger on the stack (a leaked nonce reveals `a_0`).
        crate::wipe::scalar(&mut nonce);
        crate::wipe::scalar(&mut secret);
        proof
    }

    /// Checks the proof for `dealer`'s constant-term commitment `constant`,
    /// on G1 components (see the module docs).
    pub fn verify(&self, session_id: &SessionId, dealer: u32, constant: &CommitmentPoint) -> bool {
        self.relation(session_id, dealer, constant).holds()
    }

    /// The linear relation the proof asserts, for batch verification.
    pub(crate) fn relation(
        &self,
        session_id: &SessionId,
        dealer: u32,
        constant: &CommitmentPoint,
    ) -> Relation {
        let c = Self::challenge(session_id, dealer, constant, &self.commitment);
        Relation {
            g: self.response,
            scaled: vec![(constant.point(), c)],
            plain: vec![self.commitment.point()],
        }
    }

    /// The challenge `c = int(h_0 || h_1) mod r`, where
    /// `h_b = SHA-256(POK_DOMAIN || b || session_id || u32 dealer || C_0 || R)`
    /// (b a single byte, integers big-endian, points compressed).
    ///
    /// 512 bits reduced modulo the 255-bit group order leave a bias of
    /// about 2^-257: the challenge is uniform for all purposes.
    pub fn challenge(
        session_id: &SessionId,
        dealer: u32,
        constant: &CommitmentPoint,
        commitment: &CommitmentPoint,
    ) -> Scalar {
        let mut wide = [0u8; 64];
        for (b, half) in wide.chunks_exact_mut(32).enumerate() {
            let mut h = Sha256::new();
            h.update(POK_DOMAIN);
            h.update([b as u8]);
            h.update(session_id.as_bytes());
            h.update(dealer.to_be_bytes());
            h.update(constant.to_bytes());
            h.update(commitment.to_bytes());
            half.copy_from_slice(&h.finalize());
        }
        scalar_from_wide_be(&wide)
    }
}

/// Reduces a big-endian 512-bit integer modulo the group order, by
/// Horner's rule over 64-bit limbs.
fn scalar_from_wide_be(bytes: &[u8; 64]) -> Scalar {
    let two_64 = Scalar::from(u64::MAX) + Scalar::ONE;
    bytes.chunks_exact(8).fold(Scalar::ZERO, |acc, chunk| {
        let mut limb = [0u8; 8];
        limb.copy_from_slice(chunk);
        acc * two_64 + Scalar::from(u64::from_be_bytes(limb))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use blstrs::G1Projective;
    use ff::PrimeField;
    use group::Group;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn wide_reduction_matches_field_arithmetic() {
        // 2^256 mod r computed two ways.
        let mut bytes = [0u8; 64];
        bytes[31] = 1; // 2^256 in big-endian 512 bits
        let expected = (0..256).fold(Scalar::ONE, |acc, _| acc.double());
        assert_eq!(scalar_from_wide_be(&bytes), expected);
        let mut small = [0u8; 64];
        small[63] = 7;
        assert_eq!(scalar_from_wide_be(&small), Scalar::from(7u64));
        // r itself reduces to zero.
        let mut r_bytes = [0u8; 64];
        let modulus = Scalar::ZERO - Scalar::ONE; // r - 1
        r_bytes[32..].copy_from_slice(&modulus.to_bytes_be());
        assert_eq!(
            scalar_from_wide_be(&r_bytes) + Scalar::ONE,
            Scalar::ZERO,
            "{}",
            Scalar::MODULUS
        );
    }

    #[test]
    fn proof_is_bound_to_session_dealer_and_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let session = SessionId([1; 32]);
        let poly = Polynomial::random(3, &mut rng);
        let c0 = CommitmentPoint::from(poly.commitments().unwrap().quorum_key());
        let proof = ProofOfKnowledge::prove(&session, 2, &poly, &c0, &mut rng).unwrap();
        assert!(proof.verify(&session, 2, &c0));
        assert!(!proof.verify(&session, 3, &c0));
        assert!(!proof.verify(&SessionId([2; 32]), 2, &c0));
        let other = CommitmentPoint::from(
            Polynomial::random(3, &mut rng)
                .commitments()
                .unwrap()
                .quorum_key(),
        );
        assert!(!proof.verify(&session, 2, &other));
        let mut tampered = proof;
        tampered.response += Scalar::ONE;
        assert!(!tampered.verify(&session, 2, &c0));
    }

    /// With `C_0` outside G1 the proof is judged on G1 components: it
    /// verifies when the prover knows the discrete log of `C_0`'s G1
    /// component, and not otherwise.
    #[test]
    fn proof_binds_the_g1_component_of_the_constant() {
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let session = SessionId([3; 32]);
        let poly = Polynomial::random(2, &mut rng);
        let torsion = crate::dkg::point::testing::torsion_point();
        let a0 = G1Projective::generator() * poly.secret();
        let tainted = CommitmentPoint::from_point(a0 + torsion).unwrap();
        let proof = ProofOfKnowledge::prove(&session, 1, &poly, &tainted, &mut rng).unwrap();
        assert!(proof.verify(&session, 1, &tainted));
        // A C_0 whose G1 component is another key does not verify.
        let other = CommitmentPoint::from_point(a0.double() + torsion).unwrap();
        let forged = ProofOfKnowledge::prove(&session, 1, &poly, &other, &mut rng).unwrap();
        assert!(!forged.verify(&session, 1, &other));
    }
}
