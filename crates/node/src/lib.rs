//! rdht's node: tokio + libp2p drivers of the sans-IO cores.
//!
//! - [`rendezvous`]: a rendezvous node (Kademlia server, registration,
//!   discovery, liveness pings, replication, persistence).
//! - [`quorum`]: a quorum member (DKG over the network, namespace
//!   co-signing, registration and refresh).
//! - [`discover`]: the client that asks a rendezvous and verifies.
//! - [`demo`]: the whole system on loopback, narrated.
//! - [`behaviour`], [`codec`]: the libp2p plumbing; [`identity`],
//!   [`quorum_file`], [`duration`], [`metrics`], [`persist`]: the rest.
//!
//! Every protocol decision lives in the `dkg`, `rendezvous-proto` and `dht`
//! crates; this crate moves bytes, keeps time and talks to the OS. The load
//! generators (`rdht-bench`, crates/bench) use this library from outside.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod behaviour;
pub mod cli;
pub mod codec;
pub mod demo;
pub mod discover;
pub mod duration;
pub mod identity;
pub mod metrics;
pub mod persist;
pub mod quorum;
pub mod quorum_file;
pub mod rendezvous;
