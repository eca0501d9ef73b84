//! rdht's node: tokio + libp2p drivers of the sans-IO cores.
//!
//! - [`rendezvous`]: a rendezvous node: the driver of `dht::Server`
//!   (Kademlia, request-response, pings, the database), with its
//!   [`verifier`] threads.
//! - [`quorum`]: a quorum member: the driver of `member::Member`.
//! - [`client`]: discovery as a `NetworkBehaviour` for any application's
//!   swarm (verified members of a quorum or of a kind).
//! - [`discover`]: the `rdht discover` client, built on [`client`].
//! - [`demo`]: the whole system on loopback, narrated.
//! - [`flood`]: a hostile peer's Kademlia PUT flood, for tests and the
//!   load harness.
//! - [`standard`]: the standard `/rendezvous/1.0.0` messages and codec
//!   (DISCOVER served to stock libp2p clients).
//! - [`behaviour`], [`codec`]: the libp2p plumbing; [`identity`],
//!   [`quorum_file`], [`duration`], [`metrics`], [`persist`]: the rest.
//!
//! Every protocol decision lives in the `dkg`, `rendezvous-proto`, `dht`
//! and `member` crates; this crate moves bytes, keeps time and talks to the OS. The load
//! generators (`rdht-bench`, crates/bench) use this library from outside.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod behaviour;
pub mod cli;
pub mod client;
pub mod codec;
pub mod demo;
pub mod discover;
pub mod duration;
pub mod flood;
pub mod identity;
pub mod metrics;
pub mod persist;
pub mod quorum;
pub mod quorum_file;
pub mod rendezvous;
pub mod standard;
pub mod verifier;
