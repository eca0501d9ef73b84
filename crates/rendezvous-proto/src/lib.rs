//! rdht's rendezvous protocol (version 2) as data.
//!
//! - [`records`]: the self-certifying [`NamespaceRecord`] (and
//!   [`PeerRecord`], re-exported), canonical encodings and signing bytes.
//! - A member's [`PeerRecord`] is [`seated`]: its [`seat`] (the share
//!   signature over namespace, epoch, index and PeerId, valid for the
//!   epoch) and its [`envelope`] (the libp2p signed envelope of each
//!   refresh, by the PeerId's own key), with their validation.
//! - [`handover`]: the [`HandoverRecord`] of a key rotation (the old
//!   quorum key, threshold-signing, names its successor), its encoding
//!   and validation.
//! - [`validate`]: one validation function per record, cheap checks before
//!   pairings, each failure a [`StatusCode`].
//! - [`error`]: decode errors and the stable wire status codes.
//! - [`limits`]: the protocol's bounds and defaults.
//! - [`wire`]: the primitive canonical reader/writer every codec uses.
//! - [`messages`] and [`codec`]: requests and responses and their
//!   canonical, bounded frames.
//! - [`client`]: verification of what a rendezvous node answers.
//! - `testkit` (cargo feature `testkit`, off by default): quorums dealt by
//!   a trusted dealer and ready-made records, for tests, benchmarks, fuzz
//!   seeds, test vectors and the simulator; never in a production build.
//!
//! PROTOCOL.md at the repository root specifies all of it byte for byte.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod codec;
pub mod ed25519;
pub mod envelope;
pub mod error;
pub mod handover;
pub mod limits;
pub mod lookup;
pub mod messages;
pub mod records;
pub mod seat;
pub mod seated;
pub mod standard;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod validate;
pub mod wire;

pub use client::{
    discover_answer_may_continue, verify_discover_answer, verify_namespaces_answer,
    RejectedNamespace, RejectedPeer, VerifiedAnswer, VerifiedNamespaces, VerifiedPeer,
};
pub use client::{follow_handovers, ChainError, HandoverChain, MAX_HANDOVER_LINKS};
pub use codec::PROTOCOL_ID;
pub use error::{DecodeError, Rejection, StatusCode};
pub use handover::{verify_handover, HandoverRecord};
pub use libp2p_identity::PeerId;
pub use limits::Limits;
pub use lookup::{
    Found, Gather, Gathered, KindFound, KindLookup, LookupError, QuorumLookup, Step,
    MAX_DISCOVER_PAGES,
};
pub use messages::{
    Cookie, DiscoverAnswer, DiscoveredPeer, RegisterOutcome, Request, Response, MAX_REGISTER_BATCH,
};
pub use multiaddr::Multiaddr;
pub use records::{NamespaceRecord, PeerRecord, QuorumKey};
pub use validate::{
    check_namespace, check_namespace_update, verify_batch, verify_batch_with, verify_namespace,
    verify_namespaces, verify_namespaces_with, verify_peer, PendingPeer, VerifiedNamespace,
};
