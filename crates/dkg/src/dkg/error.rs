//! Typed errors of the DKG: bad configuration, rejected messages, bytes
//! that do not decode, and a run that cannot produce a key.

use thiserror::Error;

use super::member::Phase;
use super::messages::MessageKind;
use crate::error::DecodeError;
use crate::keys::KeyShareError;

/// Why a [`DkgConfig`](super::DkgConfig) could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// `n` is 0 or above the supported maximum.
    #[error("member count {n} not in 1..={max}")]
    MemberCount {
        /// The number of members given.
        n: u32,
        /// [`crate::MAX_MEMBERS`].
        max: u32,
    },
    /// The threshold is 0 or above `n`.
    #[error("threshold {threshold} not in 1..={n}")]
    Threshold {
        /// The threshold given.
        threshold: u32,
        /// The number of members.
        n: u32,
    },
    /// This member's index is 0 or above `n`.
    #[error("member index {index} not in 1..={n}")]
    Index {
        /// The index given.
        index: u32,
        /// The number of members.
        n: u32,
    },
    /// Two members have the same identity.
    #[error("member {index} repeats an earlier identity")]
    DuplicateMember {
        /// The later of the two indices.
        index: u32,
    },
    /// A phase timeout of 0 would end every phase before it begins.
    #[error("phase timeout must be positive")]
    ZeroTimeout,
    /// A resharing: this member is neither in the old epoch nor in the new.
    #[error("this member is in neither the old nor the new member list")]
    NotAParticipant,
    /// A resharing: the old epoch's threshold (its key set's commitment
    /// count) is above the number of old members.
    #[error("old threshold {threshold} above the {n} old members")]
    OldThreshold {
        /// The old key set's threshold.
        threshold: u32,
        /// The number of old members.
        n: u32,
    },
    /// A resharing: an old member's key share is missing, is not its own
    /// index's, or belongs to another key set than the old epoch's.
    #[error("the old key share is missing or does not match the old epoch")]
    OldShareMismatch,
}

/// Why an incoming message was rejected. A rejected message changes no
/// state: the member behaves as if it had never arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum MessageError {
    /// The message belongs to another DKG session.
    #[error("message of another session")]
    WrongSession,
    /// The transport-level sender is not a member index (0 or above `n`).
    #[error("sender {from} is not a member")]
    NotAMember {
        /// The sender index given by the transport.
        from: u32,
    },
    /// The message claims to come from this member itself.
    #[error("message from ourselves")]
    FromSelf,
    /// The sender index inside the message is not the transport-level
    /// sender: a member can only speak for itself.
    #[error("message from {from} claims to be from {claimed}")]
    SenderMismatch {
        /// The authenticated sender.
        from: u32,
        /// The index written in the message.
        claimed: u32,
    },
    /// The message belongs to a phase that is over (or the run is finished).
    #[error("{kind:?} message in phase {phase:?}")]
    WrongPhase {
        /// What kind of message it was.
        kind: MessageKind,
        /// The phase this member is in.
        phase: Phase,
    },
    /// A message of this kind from this sender was already accepted.
    #[error("duplicate {kind:?} message from {from}")]
    Duplicate {
        /// What kind of message it was.
        kind: MessageKind,
        /// The sender.
        from: u32,
    },
    /// A deal does not carry exactly `threshold` commitments.
    #[error("deal with {got} commitments, expected {expected}")]
    CommitmentCount {
        /// The threshold.
        expected: u32,
        /// Commitments in the message.
        got: u32,
    },
    /// A share addressed to another member.
    #[error("share addressed to member {recipient}")]
    WrongRecipient {
        /// The recipient written in the message.
        recipient: u32,
    },
    /// A response does not carry exactly one verdict per member.
    #[error("response with {got} verdicts, expected {expected}")]
    VerdictCount {
        /// `n`.
        expected: u32,
        /// Verdicts in the message.
        got: u32,
    },
    /// A justification reveals no share at all.
    #[error("justification reveals no share")]
    EmptyJustification,
    /// A justification names a member index out of `1..=n`.
    #[error("member index {index} out of range")]
    IndexOutOfRange {
        /// The offending index.
        index: u32,
    },
    /// A justification's revealed shares are not in strictly ascending
    /// member order (which also rules out two shares for one member).
    #[error("revealed shares not in strictly ascending order")]
    NotAscending,
    /// A justification reveals a deal of another session or dealer.
    #[error("justification reveals a deal of another session or dealer")]
    ForeignDeal,
    /// A hello of an earlier attempt than this member's.
    #[error("hello of attempt {attempt}, this run is attempt {current}")]
    StaleAttempt {
        /// The hello's attempt.
        attempt: u64,
        /// This member's.
        current: u64,
    },
    /// A message for the run arrived during the hello round, and the
    /// room kept for such messages (four per member) is full.
    #[error("too many messages ahead of the run")]
    EarlyBufferFull,
    /// A resharing: a deal, share or justification sent to an old member
    /// that receives no share (it only needs the responses).
    #[error("{kind:?} message to a member that receives no share")]
    NotAReceiver {
        /// What kind of message it was.
        kind: MessageKind,
    },
}

/// Why a finished DKG produced no key for this member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DkgError {
    /// Fewer than `threshold` dealers qualified: such a key could be
    /// entirely known to a coalition below the threshold, so none is made.
    #[error("only {qualified} dealers qualified, threshold is {threshold}")]
    QualTooSmall {
        /// Dealers in QUAL.
        qualified: u32,
        /// The threshold.
        threshold: u32,
    },
    /// The hello round ended with nonces from fewer than `threshold`
    /// members: only they can be in this run's session, so no key could
    /// come of it.
    #[error("only {got} members said hello, threshold is {threshold}")]
    TooFewHellos {
        /// Members whose hello arrived (this one included).
        got: u32,
        /// The threshold.
        threshold: u32,
    },
    /// The summed secret share is zero (probability about 2^-255).
    #[error("the summed secret share is zero")]
    ZeroShare,
    /// A summed commitment is the identity (probability about 2^-255).
    #[error("a summed commitment is the identity")]
    DegenerateKey,
    /// A qualified dealer's share to this member is missing. The protocol
    /// rules make this unreachable; it is reported rather than trusted.
    #[error("no share from qualified dealer {dealer}")]
    MissingShare {
        /// The dealer.
        dealer: u32,
    },
    /// A resharing's new key set does not have the old quorum key. The
    /// protocol rules (every constant term is checked) make this
    /// unreachable; it is reported rather than trusted.
    #[error("the reshared key set has another quorum key")]
    QuorumKeyChanged,
    /// Asked for the key of a member that receives no share. The state
    /// machine never does; it is reported rather than trusted.
    #[error("this member receives no share")]
    NotAReceiver,
    /// The share and the key set do not agree. The protocol rules make
    /// this unreachable; it is reported rather than trusted.
    #[error("inconsistent key share: {0}")]
    KeyShare(#[from] KeyShareError),
}

/// Why bytes did not decode into a [`DkgMessage`](super::DkgMessage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum WireError {
    /// The input is longer than [`MAX_MESSAGE_BYTES`](super::wire::MAX_MESSAGE_BYTES).
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Input length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The input ends inside a field.
    #[error("truncated message")]
    Truncated,
    /// Bytes remain after the message.
    #[error("{extra} trailing bytes")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// The version byte is not one this code speaks.
    #[error("unsupported version {0}")]
    UnsupportedVersion(u8),
    /// The message tag is unknown.
    #[error("unknown message tag {0}")]
    UnknownTag(u8),
    /// A list length is 0 where a list may not be empty, above
    /// [`crate::MAX_MEMBERS`], or longer than the remaining bytes can hold.
    #[error("list length {count} out of range")]
    CountOutOfRange {
        /// The length prefix read.
        count: u32,
    },
    /// A member index is 0 or above [`crate::MAX_MEMBERS`].
    #[error("member index {index} out of range")]
    IndexOutOfRange {
        /// The index read.
        index: u32,
    },
    /// A verdict byte is unknown.
    #[error("unknown verdict {0}")]
    UnknownVerdict(u8),
    /// Revealed shares are not in strictly ascending member order.
    #[error("revealed shares not in strictly ascending order")]
    NotAscending,
    /// A justification's revealed-deal flag is neither 0 nor 1.
    #[error("unknown flag {0}")]
    UnknownFlag(u8),
    /// A point, scalar or share failed its decoder's checks.
    #[error("field: {0}")]
    Field(#[from] DecodeError),
}
