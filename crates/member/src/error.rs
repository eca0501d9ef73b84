//! Why a member stops.

use rendezvous_proto::StatusCode;

/// Why a member cannot go on. A rendezvous node's answer alone is never
/// one of these: a rejection is transient or ends the use of that node
/// only ([`crate::retry`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemberError {
    /// The configuration does not hold together (index outside the
    /// quorum, no rendezvous node, a key share of another quorum).
    #[error("invalid member configuration: {0}")]
    Config(&'static str),
    /// The key share does not match its own public key set: its secret
    /// share times the generator is not `PK_index`.
    #[error("the key share does not match its public key set (secret share x G1 != PK_{index})")]
    KeyShareMismatch {
        /// The share's index.
        index: u32,
    },
    /// No rendezvous node held an accepted registration of this member
    /// for the configured time.
    #[error(
        "no rendezvous node accepted this member for {waited_ms} ms (last refusal: {last_code:?})"
    )]
    NoRendezvousAccepted {
        /// How long it waited.
        waited_ms: u64,
        /// The most recent refusal any node answered, if any.
        last_code: Option<StatusCode>,
    },
    /// A resharing could not start or did not give this member a share
    /// (too few honest old dealers): the previous epoch stays in force.
    #[error("resharing failed: {0}")]
    Reshare(String),
}
