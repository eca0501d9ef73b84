//! Typed errors of the threshold layer.

use thiserror::Error;

/// Why bytes or hex could not be decoded into a key, share or signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The input has the wrong length for this type.
    #[error("wrong length: expected {expected} bytes, got {got}")]
    Length {
        /// Bytes the type needs.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// The input is not valid hexadecimal.
    #[error("invalid hex")]
    Hex,
    /// The bytes are not a point on the curve, or not in the prime-order subgroup.
    #[error("not a point of the prime-order subgroup")]
    InvalidPoint,
    /// The point is the identity, which is never a meaningful key or signature.
    #[error("identity point")]
    Identity,
    /// The bytes are not a canonical scalar (>= the group order).
    #[error("non-canonical scalar")]
    InvalidScalar,
    /// The scalar is zero, which is never a meaningful secret.
    #[error("zero scalar")]
    ZeroScalar,
    /// A member index is 0 or above the supported maximum.
    #[error("member index out of range")]
    IndexOutOfRange,
    /// A public key set with no commitment, or more than the supported maximum.
    #[error("invalid number of commitments")]
    CommitmentCount,
}

/// Why signature shares could not be combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CombineError {
    /// Fewer shares than the threshold were given.
    #[error("need {threshold} shares, got {got}")]
    TooFewShares {
        /// Shares needed.
        threshold: usize,
        /// Distinct shares given.
        got: usize,
    },
    /// Two shares carry the same member index.
    #[error("duplicate share for index {0}")]
    DuplicateIndex(u32),
    /// A share's index is 0 or above `n`.
    #[error("share index {0} out of range")]
    IndexOutOfRange(u32),
}
