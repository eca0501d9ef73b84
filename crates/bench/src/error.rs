//! Why a measurement of `bench-discover` or `bench-discoverable` stopped.

use node::demo::DemoError;
use node::discover::ClientError;
use rendezvous_proto::Response;

/// Why a measurement stopped.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// A flag is out of range.
    #[error("{0}")]
    Usage(&'static str),
    /// The local network (rendezvous nodes, members) did not start.
    #[error(transparent)]
    Setup(#[from] DemoError),
    /// A request failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A node answered something other than what the measurement needs.
    #[error("{what}: unexpected answer {answer:?}")]
    Unexpected {
        /// The request.
        what: &'static str,
        /// The answer.
        answer: Box<Response>,
    },
    /// An answer listed the wrong number of members, or some did not
    /// verify.
    #[error("expected {expected} verified members, got {verified} ({rejected} refused)")]
    Incomplete {
        /// Members in the quorum.
        expected: usize,
        /// Members that verified.
        verified: usize,
        /// Records that did not.
        rejected: usize,
    },
    /// Something did not happen before the deadline.
    #[error("{0} did not happen in time")]
    Timeout(&'static str),
}
