//! Threshold BLS12-381 and a sans-IO distributed key generation.
//!
//! Public keys live in G1 (48-byte compressed), signatures in G2 (96-byte
//! compressed), messages are hashed with the IETF suite
//! `BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_` (the one `bls-signatures`
//! uses), so a signature made here verifies with any conforming library.
//!
//! Vocabulary used throughout the crate:
//! - `threshold` is the number of shares needed to sign (k of n); the secret
//!   polynomial has degree `threshold - 1`.
//! - members are indexed `1..=n`; member `i` holds the share `f(i)`.
//! - the [`PublicKeySet`] is the list of Feldman commitments `C_0..C_{k-1}`;
//!   `C_0` is the quorum key, and member `i`'s public key share is
//!   `PK_i = sum_j C_j * i^j`.
//!
//! Layout: [`keys`] (keys, signatures, shares and their encodings),
//! [`poly`] (secret polynomials), [`public_key_set`] (commitments and
//! `PK_i` derivation), [`combine`] (Lagrange interpolation of signature
//! shares), [`batch`] (safe batch verification with bisection), [`dkg`]
//! (the Joint-Feldman DKG state machine).

// `deny`, not `forbid`: `blst_raw` and `wipe` are the audited exceptions.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod batch;
mod blst_raw;
pub mod combine;
mod curve;
pub mod dkg;
mod encoding;
pub mod error;
mod fixed_base;
pub mod keys;
pub mod poly;
pub mod public_key_set;
pub mod vectors;
mod wipe;

pub use batch::{batch_verify, batch_verify_with, find_invalid, find_invalid_with, BatchItem};
pub use combine::{combine_signatures, lagrange_coefficients_at_zero};
pub use dkg::{
    CommitmentPoint, ConfigError, DealCommitments, DealMessage, DealerVerdict, Destination, Digest,
    Disqualification, DkgConfig, DkgError, DkgMember, DkgMessage, DkgOutput, HelloMessage,
    JustificationMessage, MessageError, MessageKind, Participant, Phase, ProofOfKnowledge,
    ReshareConfig, ReshareMember, ReshareOutput, ResponseMessage, SessionId, ShareMessage,
    Transmit, WireError, G1_UNCOMPRESSED_BYTES,
};
pub use error::{CombineError, DecodeError};
pub use keys::{
    hash_to_g2, KeyShare, PublicKey, SecretKeyShare, Signature, SignatureShare, G1_BYTES, G2_BYTES,
    SCALAR_BYTES,
};
pub use poly::Polynomial;
pub use public_key_set::PublicKeySet;

/// The BLS ciphersuite every signature in this crate uses.
pub const CIPHERSUITE: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_";

/// The largest member index (and so the largest `n`) the crate accepts.
///
/// Indices are small integers: this keeps `PK_i` derivation on short
/// scalars, and bounds every list a decoder has to allocate.
pub const MAX_MEMBERS: u32 = 1 << 16;
