//! rdht's node: the sans-IO cores as libp2p `NetworkBehaviour`s, and the
//! `rdht` binary built from them.
//!
//! Three behaviours an application composes into its own swarm (with
//! `#[derive(NetworkBehaviour)]`), and that the `rdht` binary runs:
//!
//! | role | behaviour | core |
//! | --- | --- | --- |
//! | discover verified members of a quorum or a kind | [`client::Behaviour`] ([`ClientBehaviour`]) | `rendezvous_proto::lookup` |
//! | a quorum member: register, refresh, co-sign, DKG | [`quorum::Behaviour`] ([`MemberBehaviour`]) | `member::Member` |
//! | a rendezvous node, with its verification threads | [`rendezvous::Behaviour`] ([`ServerBehaviour`], built by [`rendezvous::Builder`]) | `dht::Server` |
//!
//! [`behaviour::build_swarm_with`] puts any of them on TCP, Noise and
//! Yamux. The modules:
//!
//! - [`rendezvous`]: the rendezvous behaviour and the `rdht node` process
//!   around it (Kademlia, request-response, pings, the database), with
//!   its [`verifier`] threads.
//! - [`quorum`]: the member behaviour and the `rdht node --quorum`
//!   process around it (status, the key share file).
//! - [`client`]: the discovery behaviour (verified members of a quorum or
//!   of a kind).
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

pub use client::Behaviour as ClientBehaviour;
pub use quorum::Behaviour as MemberBehaviour;
pub use rendezvous::Behaviour as ServerBehaviour;
