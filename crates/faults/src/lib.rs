//! Faults on a real network (#16): a testbed of Linux network namespaces
//! that runs real `rdht` processes over a link emulator of its own.
//!
//! - [`netem`]: the link emulator (`rdht-netem`), a userspace switch
//!   between TAP devices with per-address-pair delay, jitter, loss and
//!   cuts, changed at run time;
//! - [`testbed`]: namespaces, addresses, the emulator and the processes,
//!   all removed on drop (failures included), stale leftovers swept;
//! - [`net`]: three rendezvous nodes, a quorum of four and a client on
//!   a testbed.
//!
//! The scenarios are this crate's tests (`tests/faults.rs`, `just
//! faults`); they need root and network namespaces, and elsewhere say
//! why they were skipped and pass.

#![deny(missing_docs)]

pub mod net;
pub mod netem;
pub mod testbed;
