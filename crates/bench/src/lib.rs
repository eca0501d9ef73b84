//! rdht's load generators, out of the production binary.
//!
//! - [`mod@bench`]: `rdht-bench bench`, registration throughput under load:
//!   `rdht rendezvous` (run from the production `rdht` binary) beside
//!   libp2p-rendezvous's server (run as `rdht-bench bench-baseline-server`),
//!   each as a child process.
//! - [`bench_discover`]: `rdht-bench bench-discover`, discover latency for
//!   one namespace over loopback.
//! - [`bench_discoverable`]: `rdht-bench bench-discoverable`, how long
//!   after its DKG a quorum of real members is discoverable.
//! - [`bench_put_flood`]: `rdht-bench put-flood`, discover latency and
//!   honest refreshes at a node flooded with junk Kademlia PUTs.
//! - [`population`]: the load's members and every record they send,
//!   signed before anything is timed.
//! - [`cli`]: the command line; [`error`]: why a measurement stopped.
//!
//! This crate is the only one that links libp2p-rendezvous and enables
//! `rendezvous-proto`'s `testkit`; the `node` crate (the `rdht` binary)
//! does neither.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod bench_discover;
pub mod bench_discoverable;
pub mod bench_put_flood;
pub mod cli;
pub mod error;
pub mod population;
pub mod standard_discover;
