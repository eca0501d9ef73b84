//! The quorum member role as a sans-IO state machine.
//!
//! [`Member`] is everything a quorum member decides: when to start the
//! DKG and what to send during it, who coordinates the namespace record
//! and how its signature shares are collected and combined, which fellow
//! requests it co-signs, when its peer record is signed, registered,
//! retried and refreshed, what it makes of every answer a rendezvous node
//! gives ([`retry`]), and when it gives up. It never touches a socket, a
//! clock or the OS RNG: it takes `now` (ms since the Unix epoch) and
//! inputs, and returns outputs, in the style of `quinn-proto`:
//!
//! - inputs: [`Member::handle_request`] (a fellow member's request, answered
//!   at once), [`Member::handle_response`] (the answer to one of its own
//!   requests, or why none came), [`Member::handle_connected`] /
//!   [`Member::handle_disconnected`], [`Member::handle_timeout`],
//!   [`Member::shutdown`];
//! - outputs: [`Member::poll_transmit`] (requests to send),
//!   [`Member::poll_timeout`] (when to call `handle_timeout`),
//!   [`Member::poll_event`] (what happened, for logs, files and metrics).
//!
//! The `rdht quorum` command (crates/node) and the simulator (sim/) both
//! drive this same state machine, with the real wire messages.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod core;
mod cosign;
mod error;
pub mod retry;

pub use crate::config::{MemberConfig, QuorumSpec};
pub use crate::core::{
    seed_from, Event, Member, Peer, RendezvousState, RequestId, ReshareStart, RotateStart, Start,
    Status, Transmit, TransportError, HANDOVER_TTL_MARGIN_MS,
};
pub use crate::cosign::{check_handover_request, check_sign_request, HandoverRefusal, SignRefusal};
pub use crate::error::MemberError;
pub use crate::retry::{classify, classify_peer, Backoff, Class};
