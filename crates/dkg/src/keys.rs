//! Keys, signatures and secret shares, with their compressed encodings.
//!
//! Every decoder checks length first, then that the point is on the curve
//! and in the prime-order subgroup, then that it is not the identity (an
//! identity key or signature is never meaningful here and is the classic
//! way to forge with BLS).

use std::fmt;

use blstrs::{G1Affine, G1Projective, G2Affine, G2Projective, Scalar};
use ff::Field;
use group::{Curve, Group};
use serde::{Deserialize, Serialize};

use crate::encoding::hex_serde;
use crate::error::DecodeError;
use crate::public_key_set::PublicKeySet;

/// Bytes of a compressed G1 point (a public key).
pub const G1_BYTES: usize = 48;
/// Bytes of a compressed G2 point (a signature).
pub const G2_BYTES: usize = 96;
/// Bytes of a scalar (big-endian).
pub const SCALAR_BYTES: usize = 32;

/// Hashes a message to G2 with the crate's ciphersuite.
///
/// Hashing costs about as much as a third of a verification: callers that
/// check many signatures over one message hash it once.
pub fn hash_to_g2(message: &[u8]) -> G2Projective {
    bls_signatures::hash(message)
}

/// A BLS public key (a G1 point that is not the identity): a quorum key, or
/// a member's public key share.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub(crate) G1Affine);

impl PublicKey {
    /// Compressed encoding.
    pub fn to_bytes(&self) -> [u8; G1_BYTES] {
        self.0.to_compressed()
    }

    /// Decodes a compressed point, rejecting wrong lengths, points off the
    /// curve or outside the subgroup, and the identity.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let array: &[u8; G1_BYTES] = bytes.try_into().map_err(|_| DecodeError::Length {
            expected: G1_BYTES,
            got: bytes.len(),
        })?;
        let point: G1Affine =
            Option::from(G1Affine::from_compressed(array)).ok_or(DecodeError::InvalidPoint)?;
        Self::from_point(point.into())
    }

    /// Wraps a point, rejecting the identity.
    pub fn from_point(point: G1Projective) -> Result<Self, DecodeError> {
        if bool::from(point.is_identity()) {
            return Err(DecodeError::Identity);
        }
        Ok(Self(point.to_affine()))
    }

    /// The underlying G1 point.
    pub fn point(&self) -> G1Projective {
        self.0.into()
    }

    /// The underlying affine G1 point.
    pub fn affine(&self) -> &G1Affine {
        &self.0
    }

    /// Checks `signature` on `message` (two pairings, about 0.8 ms).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        bls_signatures::PublicKey::from(self.point())
            .verify(bls_signatures::Signature::from(signature.0), message)
    }
}

hex_serde!(PublicKey, G1_BYTES);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.to_hex();
        write!(f, "PublicKey({}..)", &hex[..16])
    }
}

impl PartialOrd for PublicKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Ordered by compressed encoding, so keys can index `BTreeMap`s.
impl Ord for PublicKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.to_bytes().cmp(&other.to_bytes())
    }
}

/// A BLS signature (a G2 point that is not the identity).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub(crate) G2Affine);

impl Signature {
    /// Compressed encoding.
    pub fn to_bytes(&self) -> [u8; G2_BYTES] {
        self.0.to_compressed()
    }

    /// Decodes a compressed point, rejecting wrong lengths, points off the
    /// curve or outside the subgroup, and the identity.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let array: &[u8; G2_BYTES] = bytes.try_into().map_err(|_| DecodeError::Length {
            expected: G2_BYTES,
            got: bytes.len(),
        })?;
        let point: G2Affine =
            Option::from(G2Affine::from_compressed(array)).ok_or(DecodeError::InvalidPoint)?;
        Self::from_point(point.into())
    }

    /// Wraps a point, rejecting the identity.
    pub fn from_point(point: G2Projective) -> Result<Self, DecodeError> {
        if bool::from(point.is_identity()) {
            return Err(DecodeError::Identity);
        }
        Ok(Self(point.to_affine()))
    }

    /// The underlying G2 point.
    pub fn point(&self) -> G2Projective {
        self.0.into()
    }

    /// The underlying affine G2 point.
    pub fn affine(&self) -> &G2Affine {
        &self.0
    }
}

hex_serde!(Signature, G2_BYTES);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.to_hex();
        write!(f, "Signature({}..)", &hex[..16])
    }
}

/// Member `index`'s signature share over some message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureShare {
    /// The signer's member index (1-based).
    pub index: u32,
    /// `H(m) * x_index`.
    pub signature: Signature,
}

/// Member `index`'s secret key share `x_i = f(i)`.
///
/// `Debug` prints only the index; the scalar is overwritten on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKeyShare {
    index: u32,
    scalar: Scalar,
}

impl SecretKeyShare {
    /// Wraps a scalar as member `index`'s share. Fails on index 0 (the
    /// secret itself lives at 0) or above [`crate::MAX_MEMBERS`], and on a
    /// zero scalar.
    pub fn new(index: u32, scalar: Scalar) -> Result<Self, DecodeError> {
        if index == 0 || index > crate::MAX_MEMBERS {
            return Err(DecodeError::IndexOutOfRange);
        }
        if bool::from(scalar.is_zero()) {
            return Err(DecodeError::ZeroScalar);
        }
        Ok(Self { index, scalar })
    }

    /// The member index.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The secret scalar. Handle with care: never log it.
    pub fn scalar(&self) -> &Scalar {
        &self.scalar
    }

    /// This share's public key share `x_i * G1`.
    pub fn public_key_share(&self) -> PublicKey {
        PublicKey(crate::fixed_base::generator_mul_affine(&self.scalar))
    }

    /// Signs `message` with the share.
    pub fn sign(&self, message: &[u8]) -> SignatureShare {
        let signature = bls_signatures::PrivateKey::from(self.scalar).sign(message);
        SignatureShare {
            index: self.index,
            signature: Signature(signature.into()),
        }
    }

    /// Big-endian bytes of the scalar. Handle with care: never log them.
    pub fn scalar_bytes(&self) -> zeroize::Zeroizing<[u8; SCALAR_BYTES]> {
        zeroize::Zeroizing::new(self.scalar.to_bytes_be())
    }

    /// Decodes member `index`'s share from big-endian bytes, rejecting
    /// non-canonical and zero scalars.
    pub fn from_bytes(index: u32, bytes: &[u8]) -> Result<Self, DecodeError> {
        let array: &[u8; SCALAR_BYTES] = bytes.try_into().map_err(|_| DecodeError::Length {
            expected: SCALAR_BYTES,
            got: bytes.len(),
        })?;
        let scalar: Scalar =
            Option::from(Scalar::from_bytes_be(array)).ok_or(DecodeError::InvalidScalar)?;
        Self::new(index, scalar)
    }
}

impl fmt::Debug for SecretKeyShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SecretKeyShare {{ index: {}, scalar: <redacted> }}",
            self.index
        )
    }
}

impl Drop for SecretKeyShare {
    fn drop(&mut self) {
        // `Scalar` does not implement `Zeroize`: a volatile write, which
        // the compiler may not elide as dead (see `crate::wipe`).
        crate::wipe::scalar(&mut self.scalar);
    }
}

/// Everything a member keeps after the DKG: its index and secret share,
/// and the quorum's public key set.
///
/// Serializes as JSON-friendly hex: `index`, `n`, `threshold`,
/// `quorum_key`, `commitments`, `secret_share`. Deserializing checks that
/// the pieces agree (commitment count = threshold, `commitments[0]` =
/// `quorum_key`, `secret_share * G1 = PK_index`), so a corrupted or edited
/// file is refused on load rather than producing bad signatures later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyShare {
    /// Quorum size.
    pub n: u32,
    /// The quorum's public key set (its threshold is `commitments.len()`).
    pub public_key_set: PublicKeySet,
    /// This member's secret share.
    pub secret: SecretKeyShare,
}

impl KeyShare {
    /// Builds a key share, checking that the pieces agree.
    pub fn new(
        n: u32,
        public_key_set: PublicKeySet,
        secret: SecretKeyShare,
    ) -> Result<Self, KeyShareError> {
        let threshold = public_key_set.threshold();
        if threshold == 0 || threshold > n || n > crate::MAX_MEMBERS {
            return Err(KeyShareError::Parameters);
        }
        if secret.index() > n {
            return Err(KeyShareError::Parameters);
        }
        if public_key_set.public_key_share(secret.index()) != secret.public_key_share() {
            return Err(KeyShareError::ShareMismatch);
        }
        Ok(Self {
            n,
            public_key_set,
            secret,
        })
    }

    /// This member's index.
    pub fn index(&self) -> u32 {
        self.secret.index()
    }

    /// Shares needed to sign.
    pub fn threshold(&self) -> u32 {
        self.public_key_set.threshold()
    }

    /// The quorum key `C_0`.
    pub fn quorum_key(&self) -> PublicKey {
        self.public_key_set.quorum_key()
    }
}

/// Why a [`KeyShare`] is inconsistent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyShareError {
    /// A field failed to decode.
    #[error("decode: {0}")]
    Decode(#[from] DecodeError),
    /// `threshold`, `n` and `index` are not `1 <= threshold <= n`, `1 <= index <= n`.
    #[error("inconsistent n / threshold / index")]
    Parameters,
    /// `commitments[0]` is not the stated quorum key.
    #[error("quorum key does not match commitments[0]")]
    QuorumKeyMismatch,
    /// The secret share does not match the public key share the commitments give.
    #[error("secret share does not match the public key set")]
    ShareMismatch,
}

/// The on-disk form of a [`KeyShare`].
#[derive(Serialize, Deserialize)]
struct KeyShareFile {
    index: u32,
    n: u32,
    threshold: u32,
    quorum_key: PublicKey,
    commitments: Vec<PublicKey>,
    secret_share: zeroize::Zeroizing<String>,
}

impl Serialize for KeyShare {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        KeyShareFile {
            index: self.index(),
            n: self.n,
            threshold: self.threshold(),
            quorum_key: self.quorum_key(),
            commitments: self.public_key_set.commitments().to_vec(),
            secret_share: zeroize::Zeroizing::new(hex::encode(*self.secret.scalar_bytes())),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for KeyShare {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let file = KeyShareFile::deserialize(d)?;
        let to_err = |e: KeyShareError| D::Error::custom(e);
        if file.commitments.len() != file.threshold as usize {
            return Err(to_err(KeyShareError::Parameters));
        }
        if file.commitments.first() != Some(&file.quorum_key) {
            return Err(to_err(KeyShareError::QuorumKeyMismatch));
        }
        let set = PublicKeySet::new(file.commitments).map_err(|e| to_err(e.into()))?;
        let bytes = zeroize::Zeroizing::new(
            crate::encoding::hex_to_array::<SCALAR_BYTES>(&file.secret_share)
                .map_err(|e| to_err(e.into()))?,
        );
        let secret =
            SecretKeyShare::from_bytes(file.index, &bytes[..]).map_err(|e| to_err(e.into()))?;
        KeyShare::new(file.n, set, secret).map_err(to_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `SecretKeyShare::drop` used to overwrite the scalar with a plain
    /// store, which the optimiser may drop as dead; it now goes through
    /// `crate::wipe` (a volatile write). Dead-store elimination cannot be
    /// observed from a test: this checks what can be, that the real
    /// destructor leaves zero where the scalar was.
    #[test]
    #[allow(unsafe_code)]
    fn secrets_on_disk_secret_key_share_drop_wipes_the_scalar() {
        let share = SecretKeyShare::new(3, Scalar::from(0x5ec2e7u64)).unwrap();
        let mut slot = std::mem::ManuallyDrop::new(share);
        // SAFETY: dropped once and never again; afterwards only the
        // plain-data `scalar` field is read, which the destructor leaves
        // holding a valid `Scalar`.
        unsafe { std::mem::ManuallyDrop::drop(&mut slot) };
        assert_eq!(slot.scalar, Scalar::ZERO);
    }

    #[test]
    fn decoders_reject_identity_and_garbage() {
        let identity_g1 = G1Affine::from(G1Projective::identity()).to_compressed();
        assert_eq!(
            PublicKey::from_bytes(&identity_g1),
            Err(DecodeError::Identity)
        );
        assert_eq!(
            PublicKey::from_bytes(&[0xff; G1_BYTES]),
            Err(DecodeError::InvalidPoint)
        );
        assert_eq!(
            PublicKey::from_bytes(&[0; 3]),
            Err(DecodeError::Length {
                expected: G1_BYTES,
                got: 3
            })
        );
        let identity_g2 = G2Affine::from(G2Projective::identity()).to_compressed();
        assert_eq!(
            Signature::from_bytes(&identity_g2),
            Err(DecodeError::Identity)
        );
        assert_eq!(
            Signature::from_bytes(&[0x80; G2_BYTES]),
            Err(DecodeError::InvalidPoint)
        );
        assert_eq!(
            SecretKeyShare::from_bytes(1, &[0; 32]),
            Err(DecodeError::ZeroScalar)
        );
        assert_eq!(
            SecretKeyShare::from_bytes(1, &[0xff; 32]),
            Err(DecodeError::InvalidScalar)
        );
        assert_eq!(
            SecretKeyShare::new(0, Scalar::ONE),
            Err(DecodeError::IndexOutOfRange)
        );
    }

    #[test]
    fn a_point_outside_the_subgroup_is_rejected() {
        // Find a point on the curve but outside the prime-order subgroup:
        // decode x-coordinates unchecked until one lands off the subgroup.
        let mut bytes = [0u8; G1_BYTES];
        bytes[0] = 0x80;
        let mut found = false;
        for x in 1u8..=255 {
            bytes[G1_BYTES - 1] = x;
            let unchecked: Option<G1Affine> = G1Affine::from_compressed_unchecked(&bytes).into();
            if let Some(p) = unchecked {
                if !bool::from(p.is_torsion_free()) {
                    assert_eq!(
                        PublicKey::from_bytes(&bytes),
                        Err(DecodeError::InvalidPoint)
                    );
                    found = true;
                    break;
                }
            }
        }
        assert!(found, "no off-subgroup point found to test with");
    }

    #[test]
    fn hex_round_trip_and_redacted_debug() {
        let share = SecretKeyShare::new(3, Scalar::from(12345u64)).unwrap();
        let pk = share.public_key_share();
        assert_eq!(PublicKey::from_hex(&pk.to_hex()), Ok(pk));
        let sig = share.sign(b"m");
        assert_eq!(
            Signature::from_hex(&sig.signature.to_hex()),
            Ok(sig.signature)
        );
        assert!(pk.verify(b"m", &sig.signature));
        assert!(!pk.verify(b"other", &sig.signature));
        let debug = format!("{share:?}");
        assert!(!debug.contains("12345") && debug.contains("redacted"));
    }
}
