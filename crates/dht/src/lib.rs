//! rdht's rendezvous state, sans-IO.
//!
//! - [`store`]: the [`NamespaceStore`], the one place where accepted
//!   records live: validated registration (batch-verified), CRDT merge of
//!   replicated values, expiry, quotas, discover paging.
//! - [`liveness`]: ping scheduling and unreachable bookkeeping.
//! - [`cookie`]: stateless discover cookies.
//! - [`dial`]: which addresses liveness dials go to (scopes), and how
//!   often per destination IP.
//! - [`value`]: the DHT value of a namespace and its encoding.
//! - [`keys`]: DHT key derivation.
//! - [`server`]: the rendezvous server role as a sans-IO core: the
//!   store, the registration queue and its caps, batching, verification
//!   jobs, replies in order, replication, persistence, lookups, liveness
//!   dials.
//! - [`kad_store`]: libp2p-kad's `RecordStore` over the server core.
//! - [`budget`]: per-sender budgets (work and bytes per second) for
//!   values other nodes send.
//! - [`config`]: quotas, liveness and admission settings.
//!
//! Nothing here reads a clock or the OS RNG: callers pass `now` and a
//! seed, which is what lets the simulator run this exact code.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod budget;
pub mod config;
pub mod cookie;
pub mod dial;
pub mod kad_store;
pub mod keys;
pub mod liveness;
pub mod server;
pub mod store;
pub mod value;

pub use budget::BudgetConfig;
pub use config::{Admission, LivenessConfig, Quotas, StoreConfig};
pub use dial::AddressPolicy;
pub use kad_store::KadStore;
pub use keys::{kind_key, namespace_key, DhtKey};
pub use liveness::PingTarget;
pub use server::{
    BlockReason, JobId, Output, ReplyId, Server, ServerConfig, ServerCounters, ValueError,
    VerifyDone, VerifyJob, LOOKUP_TIMEOUT_MS, MAX_KIND_VALUE_ENTRIES,
};
pub use store::standard::{
    StandardAnswer, StandardPage, StandardRefusal, StandardRegistration, StandardRequest,
    StandardScope, MAX_STANDARD_LIMIT, REGISTER_REFUSED,
};
pub use store::{
    verify_values, CheckedHandover, CheckedNamespace, CheckedPeer, CheckedValue, MergeReport,
    NamespaceStore, PeerRegistration, StoreStats, VerifiedValue, ANSWER_BYTES,
};
pub use value::{HandoverValue, KindValue, NamespaceValue};
