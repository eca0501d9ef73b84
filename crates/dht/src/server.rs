//! The rendezvous server role as a sans-IO state machine.
//!
//! [`Server`] owns the [`NamespaceStore`] and every decision around it:
//! the queue of peer registrations and its caps (in total and per
//! sender), the batching policy, verification as *jobs* that leave the
//! core ([`VerifyJob`], run on any thread, their verdicts handed back with
//! [`Server::handle_verified`]), replies in submission order, which
//! namespaces to replicate and persist (coalesced), deduplicated lookups
//! for namespaces this node does not hold, and whom to dial for liveness.
//!
//! It is driven like `quinn-proto`: inputs are `handle_*` calls with `now`
//! (ms since the Unix epoch); outputs come out of [`Server::poll_output`];
//! [`Server::poll_timeout`] says when to call [`Server::handle_timeout`].
//! The `rdht rendezvous` command (crates/node) and the simulator (sim/)
//! drive this same state machine.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use libp2p_identity::PeerId;
use rand_core::RngCore;
use rendezvous_proto::Multiaddr;
use rendezvous_proto::{
    HandoverRecord, Limits, NamespaceRecord, PendingPeer, QuorumKey, RegisterOutcome, Request,
    Response, StatusCode, VerifiedNamespace,
};

use crate::budget::{BudgetConfig, Budgets, RequestRate};
use crate::dial::{AddressPolicy, DialLimiter};
use crate::keys::{kind_key, namespace_key};
use crate::store::standard::{
    StandardAnswer, StandardRefusal, StandardRequest, StandardScope, REGISTER_REFUSED,
};
use crate::store::{
    verify_values, CheckedHandover, CheckedNamespace, CheckedPeer, CheckedValue, MergeReport,
    NamespaceStore, PeerRegistration, VerifiedValue,
};
use crate::value::{HandoverValue, KindValue, NamespaceValue};

/// How the server queues, batches, replicates and persists. Times in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// Most peer registrations waiting for verification (and being
    /// verified); beyond it new ones are refused at once (`QuotaExceeded`).
    pub max_queued: usize,
    /// Most peer registrations one sender may have waiting or being
    /// verified: one sender cannot fill the queue every sender shares.
    pub max_queued_per_peer: usize,
    /// A batch goes to verification once it holds this many records...
    pub min_batch: usize,
    /// ...or once its oldest record has waited this long. Small batches
    /// waste the fixed cost of a batch check, which a burst can share.
    pub max_batch_wait_ms: u64,
    /// Most records in one verification job (a longer queue makes several).
    pub max_batch: usize,
    /// Most jobs being verified at once (one per verification thread).
    pub max_jobs: usize,
    /// Changed namespaces are replicated at most this often (a burst of
    /// registrations to one namespace makes one PUT, not one per batch).
    pub replication_period_ms: u64,
    /// Changed namespaces are handed out for persistence at most this often
    /// (0: persistence is off and nothing is handed out).
    pub persist_period_ms: u64,
    /// A lookup for a namespace this node does not hold is answered
    /// (from whatever arrived) after this long at the latest.
    pub lookup_timeout_ms: u64,
    /// Most lookups (Kademlia GETs) running at once; a discover that would
    /// start one more is answered `QuotaExceeded`.
    pub max_lookups: usize,
    /// Most discovers one sender may have waiting for lookups at once.
    pub max_lookups_per_peer: usize,
    /// Most discovers waiting for one lookup (askers beyond it are
    /// answered `QuotaExceeded`).
    pub max_waiting_per_lookup: usize,
    /// A lookup that found nothing is remembered this long: discovers of
    /// that key are answered `UnknownNamespace` at once meanwhile, with no
    /// new GET (0: no negative answers are kept).
    pub negative_ttl_ms: u64,
    /// Most negative answers kept (the oldest go first).
    pub max_negative: usize,
    /// Which address scopes liveness dials may go to (see
    /// [`crate::dial`]), and which a peer record must list one address of
    /// to be accepted; a driver sets it from its own listen addresses.
    pub dial_policy: AddressPolicy,
    /// Most liveness dials to one destination IP per minute.
    pub max_dials_per_ip_per_minute: u32,
    /// A direct sender of an invalid signature is disconnected and every
    /// request of it refused (`QuotaExceeded`) for this long, doubled at
    /// each new offence...
    pub penalty_ms: u64,
    /// ...up to this long.
    pub max_penalty_ms: u64,
    /// What each node that sends values (Kademlia PUTs, GET answers) may
    /// make this node verify: estimated µs of one core per second
    /// ([`CheckedValue::cost_us`]) and bytes per second, with bursts.
    /// What is over it is dropped unverified (it comes again with the
    /// next copy).
    pub value_budget: BudgetConfig,
    /// Most estimated verification work (µs) of values waiting or being
    /// verified, from every sender; a value beyond it is dropped.
    pub max_queued_value_us: u64,
    /// Discovers (rdht's `Discover` and `DiscoverKind`, and standard
    /// `DISCOVER`) one peer may make per second, banking at most
    /// `discover_burst`; beyond, they are refused at once
    /// (`QuotaExceeded`, standard `E_UNAVAILABLE`). 0: no limit.
    pub discovers_per_sec: u64,
    /// See `discovers_per_sec`.
    pub discover_burst: u64,
    /// A sender over its byte budget has its connections refused this
    /// long (0: never), so the node does not keep reading what it drops.
    pub value_throttle_ms: u64,
}

impl Default for ServerConfig {
    /// The node's values: 16,384 queued (1,024 per sender), batches of 32
    /// after at most 2 ms, 64 per job, 2 jobs at once, replication every
    /// 200 ms, persistence off, lookups answered within
    /// [`LOOKUP_TIMEOUT_MS`] (5 s); at most 256
    /// lookups at once, 8 per sender, 256 askers per lookup; a lookup
    /// that found nothing remembered for 5 s (at most 4,096 of them);
    /// liveness dials to global addresses only, at most 60 a minute per
    /// destination IP; a sender of an invalid signature refused for 10 s,
    /// doubling up to 10 minutes; each node sending values may cause a
    /// quarter of a core's verification (a 2 s burst) and 4 MiB a second
    /// (8 MiB burst), its connections refused for 2 s when it goes over
    /// that, and at most 4 s of value verification wait in all.
    fn default() -> Self {
        Self {
            max_queued: 16_384,
            max_queued_per_peer: 1_024,
            min_batch: 32,
            max_batch_wait_ms: 2,
            max_batch: 64,
            max_jobs: 2,
            replication_period_ms: 200,
            persist_period_ms: 0,
            lookup_timeout_ms: LOOKUP_TIMEOUT_MS,
            max_lookups: 256,
            max_lookups_per_peer: 8,
            max_waiting_per_lookup: 256,
            negative_ttl_ms: 5_000,
            max_negative: 4_096,
            dial_policy: AddressPolicy::GLOBAL,
            max_dials_per_ip_per_minute: 60,
            penalty_ms: 10_000,
            max_penalty_ms: 600_000,
            value_budget: BudgetConfig {
                work_us_per_sec: 250_000,
                work_burst_us: 2_000_000,
                bytes_per_sec: 4 << 20,
                burst_bytes: 8 << 20,
            },
            max_queued_value_us: 4_000_000,
            // A loopback client asking as fast as it can (about 1 ms a
            // discover of 64 members) stays within it.
            discovers_per_sec: 1_000,
            discover_burst: 2_000,
            value_throttle_ms: 2_000,
        }
    }
}

/// The driver's handle on where a response goes (a response channel, a
/// simulated sender); the core hands it back in [`Output::Reply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplyId(pub u64);

/// Identifies a verification job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub u64);

/// Signature checks to run on any thread: [`VerifyJob::run`] decodes
/// the signatures and runs safe batch checks, and the driver hands the
/// result to [`Server::handle_verified`]. Every signature that came from
/// the network is checked in a job, never on the driver's event loop.
#[derive(Debug)]
pub struct VerifyJob {
    /// Its id.
    pub id: JobId,
    work: Work,
    now_ms: u64,
    limits: Limits,
}

/// What a job checks.
#[derive(Debug)]
enum Work {
    /// Peer registrations (one batch).
    Peers(Vec<CheckedPeer>),
    /// Namespace registrations (one batch).
    Namespaces(Vec<CheckedNamespace>),
    /// Values from other nodes.
    Values(Vec<CheckedValue>),
    /// Published handovers (one batch).
    Handovers(Vec<CheckedHandover>),
}

/// A verified job: its verdicts, in order.
#[derive(Debug)]
pub struct VerifyDone {
    /// The job's id.
    pub id: JobId,
    done: Done,
}

#[derive(Debug)]
enum Done {
    Peers {
        checked: Vec<CheckedPeer>,
        verdicts: Vec<Result<(), StatusCode>>,
    },
    Namespaces(Vec<(CheckedNamespace, Result<VerifiedNamespace, StatusCode>)>),
    Values(Vec<VerifiedValue>),
    Handovers(Vec<(CheckedHandover, Result<(), StatusCode>)>),
}

impl VerifyJob {
    /// How many records (registrations, or values) it holds.
    pub fn len(&self) -> usize {
        match &self.work {
            Work::Peers(c) => c.len(),
            Work::Namespaces(c) => c.len(),
            Work::Values(c) => c.len(),
            Work::Handovers(c) => c.len(),
        }
    }

    /// Whether it holds none (never, as the core makes them).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether it checks values from other nodes (not registrations).
    pub fn is_values(&self) -> bool {
        matches!(self.work, Work::Values(_))
    }

    /// Prepares (signature decoding: tens of microseconds each) and
    /// verifies the batch on the calling thread. With a `checkpoint`, it is
    /// called between steps and Miller loops run in short chunks (a driver
    /// that shares cores with latency work yields there); without, the
    /// batch is one Miller loop (the simulator, which has no latency to
    /// protect).
    pub fn run<R: RngCore>(self, rng: &mut R, checkpoint: Option<&mut dyn FnMut()>) -> VerifyDone {
        let VerifyJob {
            id,
            work,
            now_ms,
            limits,
        } = self;
        let mut noop = || {};
        let done = match work {
            Work::Peers(checked) => {
                let (checked, verdicts) = verify_peers(checked, now_ms, &limits, rng, checkpoint);
                Done::Peers { checked, verdicts }
            }
            Work::Namespaces(checked) => {
                let records: Vec<NamespaceRecord> =
                    checked.iter().map(|c| c.record().clone()).collect();
                let verdicts = rendezvous_proto::verify_namespaces_with(
                    &records,
                    now_ms,
                    &limits,
                    rng,
                    checkpoint.unwrap_or(&mut noop),
                );
                Done::Namespaces(checked.into_iter().zip(verdicts).collect())
            }
            Work::Values(values) => Done::Values(verify_values(
                values,
                now_ms,
                &limits,
                rng,
                checkpoint.unwrap_or(&mut noop),
            )),
            // Rare (a key rotation): each alone.
            Work::Handovers(checked) => Done::Handovers(
                checked
                    .into_iter()
                    .map(|c| {
                        let verdict = c.verify(now_ms);
                        (c, verdict)
                    })
                    .collect(),
            ),
        };
        VerifyDone { id, done }
    }
}

/// Prepares and verifies checked peer registrations: one verdict each.
fn verify_peers<R: RngCore>(
    checked: Vec<CheckedPeer>,
    now_ms: u64,
    limits: &Limits,
    rng: &mut R,
    mut checkpoint: Option<&mut dyn FnMut()>,
) -> (Vec<CheckedPeer>, Vec<Result<(), StatusCode>>) {
    let mut pending: Vec<PendingPeer> = Vec::with_capacity(checked.len());
    let mut positions = Vec::with_capacity(checked.len());
    let mut verdicts: Vec<Result<(), StatusCode>> = Vec::with_capacity(checked.len());
    for (i, c) in checked.iter().enumerate() {
        match c.prepare(now_ms, limits) {
            Ok(p) => {
                pending.push(p);
                positions.push(i);
                verdicts.push(Ok(()));
            }
            Err(code) => verdicts.push(Err(code)),
        }
        if let Some(checkpoint) = checkpoint.as_mut() {
            checkpoint();
        }
    }
    let results = match checkpoint {
        Some(checkpoint) => rendezvous_proto::verify_batch_with(&pending, rng, checkpoint),
        None => rendezvous_proto::verify_batch(&pending, rng),
    };
    for (i, r) in positions.into_iter().zip(results) {
        if let Some(slot) = verdicts.get_mut(i) {
            *slot = r;
        }
    }
    (checked, verdicts)
}

/// Something for the driver to do.
#[derive(Debug)]
pub enum Output {
    /// Send this response.
    Reply {
        /// Where.
        to: ReplyId,
        /// What.
        response: Response,
    },
    /// Send this answer to a standard `/rendezvous/1.0.0` request that
    /// waited for a lookup ([`Server::handle_standard`] returned `None`).
    StandardReply {
        /// Where.
        to: ReplyId,
        /// What.
        answer: StandardAnswer,
    },
    /// Run this job (any thread) and hand its result back.
    Verify(VerifyJob),
    /// Replicate this namespace's value to the replicas (a Kademlia PUT
    /// under `key`).
    Replicate {
        /// The namespace.
        quorum_key: QuorumKey,
        /// The DHT key.
        key: crate::keys::DhtKey,
        /// The value, encoded.
        value: Vec<u8>,
    },
    /// Look the namespace up in the DHT (a Kademlia GET of `key`); hand
    /// the values found to [`Server::handle_value`] and the end of the
    /// query to [`Server::handle_lookup_done`]. The core ends the lookup
    /// itself ([`Output::LookupDone`]) as soon as one value verifies in
    /// full, so a node that answers first with junk cannot make it fail.
    Lookup {
        /// The namespace.
        quorum_key: QuorumKey,
        /// The DHT key.
        key: crate::keys::DhtKey,
    },
    /// The lookup of this namespace has what it needed (a value that
    /// verified in full arrived, and the discovers waiting for it are answered):
    /// stop the DHT query; later answers would change nothing.
    LookupDone {
        /// The namespace.
        quorum_key: QuorumKey,
    },
    /// A registered peer is due a liveness check and is not connected:
    /// dial it (an authenticated connection, which the ping protocol
    /// then pings). A failed dial is [`Server::handle_ping_miss`].
    Dial {
        /// Whom.
        peer: PeerId,
        /// Where its record says it listens.
        addrs: Vec<Multiaddr>,
    },
    /// Write these namespaces (`None`: remove it) to durable storage.
    Persist(Vec<(QuorumKey, Option<NamespaceValue>)>),
    /// Write these handovers (by retired key) to durable storage; on
    /// start they go back through [`NamespaceStore::merge_handover`].
    PersistHandovers(Vec<(QuorumKey, HandoverRecord)>),
    /// `peer` sent an invalid signature (a second ago: its refusal has gone
    /// out): close its connections and refuse new ones until `until_ms`,
    /// the end of its penalty ([`Output::Unblock`] says when it is over).
    /// Its requests and values are refused meanwhile anyway
    /// (`ServerConfig::penalty_ms`); refusing its connections spares the
    /// node even reading them.
    Disconnect {
        /// Whom.
        peer: PeerId,
        /// Until when (ms).
        until_ms: u64,
        /// Why.
        reason: BlockReason,
    },
    /// The penalty of `peer` is over: accept its connections again.
    Unblock {
        /// Whom.
        peer: PeerId,
    },
    /// A value from another node (handed to [`Server::handle_value`]) was
    /// merged: what it changed and what was refused, for the driver's log
    /// and metrics.
    Merged {
        /// The node that sent it, as the driver named it.
        from: Option<PeerId>,
        /// The namespace, for a namespace value (`None`: a kind index).
        quorum_key: Option<QuorumKey>,
        /// What the merge did.
        report: MergeReport,
    },
    /// `peer`'s listing here changed: `listed: false` when it left its
    /// last allowed ping unanswered (or failed) and is no longer listed
    /// (until it answers, registers anew, or its records expire),
    /// `listed: true` when it is listed again. Every change is reported
    /// once, whatever decided it, for the driver's log and metrics.
    ListingChanged {
        /// Who.
        peer: PeerId,
        /// Whether it is listed now.
        listed: bool,
    },
    /// `peer`'s previous ping failed or went unanswered while a connection
    /// to it is open: close its connections (presumably dead: dropped
    /// packets keep TCP connections open for tens of seconds) and dial it
    /// anew, so that its next check goes over a fresh connection and it
    /// is listed again within one ping interval of a heal.
    Reconnect {
        /// Whom.
        peer: PeerId,
        /// Where its record says it listens (the dial policy applied).
        addrs: Vec<Multiaddr>,
    },
}

/// Why a peer's connections are refused for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockReason {
    /// It sent an invalid signature (its penalty).
    InvalidSignature,
    /// It sent values faster than its byte budget: refusing its
    /// connections for a moment spares the node reading (and kad
    /// echoing) what it would drop anyway.
    OverByteBudget,
}

/// Where the outcome of one peer registration goes, and who sent it.
#[derive(Debug, Clone, Copy)]
enum ReplyTo {
    /// A `RegisterPeer`: its own response.
    One(ReplyId, PeerId),
    /// Record `position` of the `RegisterPeers` request `request`.
    Part {
        request: u64,
        position: usize,
        peer: PeerId,
    },
}

impl ReplyTo {
    fn peer(&self) -> PeerId {
        match self {
            ReplyTo::One(_, peer) | ReplyTo::Part { peer, .. } => *peer,
        }
    }
}

/// A `RegisterPeers` request waiting for the outcomes of its records.
struct MultiReply {
    reply: ReplyId,
    outcomes: Vec<Option<RegisterOutcome>>,
    remaining: usize,
}

/// Discovers waiting for a lookup.
struct Lookup {
    /// Who waits, and the asker.
    waiting: Vec<(Waiter, PeerId)>,
    deadline: u64,
    /// Values found for it that are being verified.
    values_in_flight: usize,
    /// The DHT query ended: the discovers are answered once the values in
    /// flight are applied (or at the deadline).
    query_done: bool,
    /// A [`Server::resync`]: it runs to the query's end (or its deadline),
    /// because the first value found is this node's own (kad reads its
    /// local store first) and the point is the others'.
    resync: bool,
}

/// A discover waiting for a lookup: where its answer goes and what it
/// asked.
#[derive(Debug)]
enum Waiter {
    /// An rdht `Discover`, with its limit.
    Rdht { reply: ReplyId, limit: u32 },
    /// A standard `DISCOVER` of one quorum, answered as the standard page
    /// of `namespace` (the key's lowercase hex) the store then gives.
    Standard {
        reply: ReplyId,
        namespace: String,
        limit: Option<u64>,
    },
}

/// A value from another node, waiting for or in verification.
struct IncomingValue {
    from: Option<PeerId>,
    /// The namespace of a namespace value (`None`: a kind index).
    quorum_key: Option<QuorumKey>,
    /// Counted in its lookup's `values_in_flight`.
    awaited: bool,
    cost_us: u64,
    /// What the cheap checks decided (and a kind index's counts).
    report: MergeReport,
    /// What is left to verify (taken out when its job is handed out)...
    checked: Vec<CheckedValue>,
    /// ...and how many of them there were: its verdicts in the job.
    parts: usize,
}

/// Counters a driver can export.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerCounters {
    /// Liveness checks that came due (dialled or pinged over an open connection).
    pub pings_due: u64,
    /// Replicated values that changed the store.
    pub merges: u64,
    /// Lookups started (after deduplication).
    pub lookups: u64,
    /// Discovers answered at once from a remembered negative answer.
    pub negative_hits: u64,
    /// Discovers refused because a lookup cap was reached.
    pub lookups_refused: u64,
    /// Liveness dials not made (no address in an allowed scope, or every
    /// destination IP over its rate); each counts as a missed ping.
    pub dials_refused: u64,
    /// Addresses left out of liveness dials: out of the allowed scopes.
    pub addrs_out_of_scope: u64,
    /// Addresses left out of liveness dials: their IP was over its rate.
    pub addrs_rate_limited: u64,
    /// Senders penalized for an invalid signature (each offence).
    pub penalties: u64,
    /// Requests refused because their sender was penalized.
    pub penalized_requests: u64,
    /// Verification jobs that failed (their batch was answered `Internal`).
    pub failed_jobs: u64,
    /// Values from other nodes queued for verification.
    pub values_queued: u64,
    /// Values from other nodes merged with nothing to verify.
    pub values_unchanged: u64,
    /// Values dropped: their sender was penalized.
    pub values_penalized: u64,
    /// Values dropped (or cut) over their sender's budget.
    pub values_over_budget: u64,
    /// Values dropped because too much value verification was waiting.
    pub values_busy: u64,
    /// Senders whose connections were refused a moment for going over
    /// their byte budget.
    pub senders_throttled: u64,
    /// Standard `/rendezvous/1.0.0` DISCOVERs answered (PROTOCOL.md 16).
    pub standard_discovers: u64,
    /// Standard `/rendezvous/1.0.0` REGISTERs refused.
    pub standard_registers_refused: u64,
    /// Discovers refused because their sender was over its rate
    /// (`ServerConfig::discovers_per_sec`).
    pub discovers_throttled: u64,
    /// Connections closed and redialled because their last ping failed.
    pub reconnects: u64,
    /// Discovers answered `LookupTimedOut` (the lookup's deadline came
    /// before the namespace was found).
    pub lookups_timed_out: u64,
}

/// How long a discover of a namespace this node does not hold waits for
/// its lookup by default: found, or `LookupTimedOut`. Half a client's
/// default timeout (10 s), so that a node answers within the client's
/// budget even when the lookup finds nothing (a partition).
pub const LOOKUP_TIMEOUT_MS: u64 = 5_000;

/// The rendezvous server role. See the module docs.
pub struct Server {
    config: ServerConfig,
    store: NamespaceStore,
    outputs: VecDeque<Output>,
    /// Registrations waiting for the next batch.
    queue: Vec<(PeerRegistration, ReplyTo)>,
    /// When the oldest of them arrived.
    queued_since: Option<u64>,
    /// Registrations waiting or being verified, per sender.
    queued_by_peer: BTreeMap<PeerId, usize>,
    multi: BTreeMap<u64, MultiReply>,
    next_multi: u64,
    /// Jobs being verified, oldest first, and where their outcomes go.
    in_flight: VecDeque<(JobId, Vec<ReplyTo>)>,
    /// Finished jobs waiting for older ones (`None`: the job failed).
    finished: BTreeMap<JobId, Option<VerifyDone>>,
    next_job: u64,
    replicate: BTreeSet<QuorumKey>,
    next_replication: u64,
    persist: BTreeSet<QuorumKey>,
    next_persist: u64,
    lookups: BTreeMap<QuorumKey, Lookup>,
    /// Discovers waiting for lookups, per asker.
    lookups_by_peer: BTreeMap<PeerId, usize>,
    /// Keys whose lookup found nothing, until when (ms).
    negative: BTreeMap<QuorumKey, u64>,
    /// The same, in the order they expire (every entry lives
    /// `negative_ttl_ms`, so insertion order is expiry order).
    negative_order: VecDeque<(u64, QuorumKey)>,
    connected: BTreeSet<PeerId>,
    dial_limiter: DialLimiter,
    /// Senders of invalid signatures: refused until when (ms), and their
    /// offences so far.
    penalized: BTreeMap<PeerId, (u64, u32)>,
    /// Senders whose registrations were just found to carry an invalid
    /// signature, to penalize at the next `drive`.
    offenders: Vec<PeerId>,
    /// Penalized senders to disconnect, and when (a moment after the
    /// penalty, so that the refusal that explains it reaches them first).
    disconnects: VecDeque<(u64, PeerId)>,
    /// Penalties and throttles told to the driver
    /// ([`Output::Disconnect`]), by end: an [`Output::Unblock`] is due at
    /// each (unless a later one still holds).
    penalty_ends: BTreeSet<(u64, PeerId)>,
    /// Senders over their byte budget whose connections are refused, until
    /// when (ms).
    throttled: BTreeMap<PeerId, u64>,
    /// When penalized senders are next swept for ones to forget.
    next_penalty_sweep: u64,
    /// When value senders' budgets are next swept.
    next_budget_sweep: u64,
    /// Namespace registrations waiting for a job.
    namespace_queue: Vec<(CheckedNamespace, ReplyTo)>,
    /// Published handovers waiting for a job.
    handover_queue: Vec<(CheckedHandover, ReplyTo)>,
    /// Values waiting for a job.
    value_queue: VecDeque<IncomingValue>,
    /// Value jobs being verified (applied as they finish, in any order).
    value_jobs: BTreeMap<JobId, Vec<IncomingValue>>,
    /// Estimated work (µs) of the values queued and being verified.
    queued_value_us: u64,
    /// The next free job slot goes to values (both kinds waiting).
    values_next: bool,
    budgets: Budgets,
    /// Each peer's discover rate.
    discover_rate: RequestRate,
    counters: ServerCounters,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .field("queued", &self.queue.len())
            .field("jobs", &self.in_flight.len())
            .finish()
    }
}

impl Server {
    /// A server over `store`.
    pub fn new(config: ServerConfig, mut store: NamespaceStore) -> Self {
        store.set_address_policy(Some(config.dial_policy));
        Self {
            config,
            store,
            outputs: VecDeque::new(),
            queue: Vec::new(),
            queued_since: None,
            queued_by_peer: BTreeMap::new(),
            multi: BTreeMap::new(),
            next_multi: 0,
            in_flight: VecDeque::new(),
            finished: BTreeMap::new(),
            next_job: 0,
            replicate: BTreeSet::new(),
            next_replication: 0,
            persist: BTreeSet::new(),
            next_persist: 0,
            lookups: BTreeMap::new(),
            lookups_by_peer: BTreeMap::new(),
            negative: BTreeMap::new(),
            negative_order: VecDeque::new(),
            connected: BTreeSet::new(),
            dial_limiter: DialLimiter::new(config.max_dials_per_ip_per_minute),
            penalized: BTreeMap::new(),
            offenders: Vec::new(),
            disconnects: VecDeque::new(),
            penalty_ends: BTreeSet::new(),
            throttled: BTreeMap::new(),
            next_penalty_sweep: 0,
            next_budget_sweep: 0,
            namespace_queue: Vec::new(),
            handover_queue: Vec::new(),
            value_queue: VecDeque::new(),
            value_jobs: BTreeMap::new(),
            queued_value_us: 0,
            values_next: false,
            budgets: Budgets::new(config.value_budget),
            discover_rate: RequestRate::new(config.discovers_per_sec, config.discover_burst),
            counters: ServerCounters::default(),
        }
    }

    /// The store.
    pub fn store(&self) -> &NamespaceStore {
        &self.store
    }

    /// The store, mutably (loading from disk, tests).
    pub fn store_mut(&mut self) -> &mut NamespaceStore {
        &mut self.store
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Counters since start.
    pub fn counters(&self) -> ServerCounters {
        self.counters
    }

    /// Registrations queued or being verified.
    pub fn pending_registrations(&self) -> usize {
        self.queue.len()
            + self.namespace_queue.len()
            + self.handover_queue.len()
            + self.in_flight.iter().map(|(_, r)| r.len()).sum::<usize>()
    }

    /// Whether a verification job is out.
    pub fn has_jobs(&self) -> bool {
        !self.in_flight.is_empty() || !self.value_jobs.is_empty()
    }

    /// Estimated verification work (µs) of the values from other nodes
    /// waiting or being verified.
    pub fn queued_value_us(&self) -> u64 {
        self.queued_value_us
    }

    fn jobs_out(&self) -> usize {
        self.in_flight.len() + self.value_jobs.len()
    }

    // ----- outputs ---------------------------------------------------------------

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Server::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<u64> {
        let mut wake = self.store.poll_timeout();
        let mut consider = |t: Option<u64>| {
            if let Some(t) = t {
                wake = Some(wake.map_or(t, |w| w.min(t)));
            }
        };
        if self.jobs_out() < self.config.max_jobs.max(1) {
            consider(self.queued_since.map(|t| t + self.config.max_batch_wait_ms));
        }
        if !self.replicate.is_empty() {
            consider(Some(self.next_replication));
        }
        if !self.persist.is_empty() && self.config.persist_period_ms > 0 {
            consider(Some(self.next_persist));
        }
        consider(self.lookups.values().map(|l| l.deadline).min());
        consider(self.disconnects.front().map(|(at, _)| *at));
        consider(self.penalty_ends.first().map(|(at, _)| *at));
        wake
    }

    // ----- inputs -----------------------------------------------------------------

    /// A request from `from` (authenticated by the connection); its answer
    /// comes out as [`Output::Reply`] to `reply`, at once or after its
    /// verification.
    pub fn handle_request(&mut self, now: u64, from: PeerId, reply: ReplyId, request: Request) {
        if self
            .penalized
            .get(&from)
            .is_some_and(|&(until, _)| until > now)
        {
            // Refused before any work: a sender of invalid signatures pays
            // for its own retries, not this node.
            self.counters.penalized_requests += 1;
            let response = match request {
                Request::RegisterPeers(records) => {
                    Response::RegisteredPeers(vec![Err(StatusCode::QuotaExceeded); records.len()])
                }
                _ => Response::Rejected(StatusCode::QuotaExceeded),
            };
            return self.reply(reply, response);
        }
        if matches!(
            request,
            Request::Discover { .. } | Request::DiscoverKind { .. }
        ) && !self.discover_rate.admit(now, from)
        {
            self.counters.discovers_throttled += 1;
            return self.reply(reply, Response::Rejected(StatusCode::QuotaExceeded));
        }
        match request {
            Request::RegisterPeer(record) => {
                if !self.may_queue(&from, 1) {
                    return self.reply(reply, Response::Rejected(StatusCode::QuotaExceeded));
                }
                self.enqueue(
                    now,
                    PeerRegistration {
                        record,
                        remote: Some(from),
                    },
                    ReplyTo::One(reply, from),
                );
            }
            Request::RegisterPeers(records) => {
                // Each record is judged as a `RegisterPeer` over this
                // connection would be, PeerId binding included.
                if !self.may_queue(&from, records.len()) {
                    let outcomes = vec![Err(StatusCode::QuotaExceeded); records.len()];
                    return self.reply(reply, Response::RegisteredPeers(outcomes));
                }
                let request = self.next_multi;
                self.next_multi += 1;
                self.multi.insert(
                    request,
                    MultiReply {
                        reply,
                        outcomes: vec![None; records.len()],
                        remaining: records.len(),
                    },
                );
                for (position, record) in records.into_iter().enumerate() {
                    self.enqueue(
                        now,
                        PeerRegistration {
                            record,
                            remote: Some(from),
                        },
                        ReplyTo::Part {
                            request,
                            position,
                            peer: from,
                        },
                    );
                }
            }
            Request::RegisterNamespace(record) => {
                // Cheap checks here; the signature in a job.
                if !self.may_queue(&from, 1) {
                    return self.reply(reply, Response::Rejected(StatusCode::QuotaExceeded));
                }
                match self.store.precheck_namespace(record, Some(from), now) {
                    Ok(checked) => {
                        *self.queued_by_peer.entry(from).or_insert(0) += 1;
                        self.namespace_queue
                            .push((checked, ReplyTo::One(reply, from)));
                    }
                    Err(code) => return self.reply(reply, Response::Rejected(code)),
                }
            }
            Request::Unregister { quorum_key, index } => {
                let response = match self.store.unregister(&quorum_key, index, &from, now) {
                    Ok(()) => {
                        self.changed(quorum_key, false);
                        Response::Unregistered
                    }
                    Err(code) => Response::Rejected(code),
                };
                self.reply(reply, response);
            }
            // A retired key is answered with its handover (PROTOCOL.md 15.4).
            Request::Discover { quorum_key, .. }
                if self.store.handover(&quorum_key, now).is_some() =>
            {
                let handover = self.store.handover(&quorum_key, now).cloned();
                if let Some(h) = handover {
                    self.reply(reply, Response::HandedOver(h));
                }
            }
            Request::Discover {
                quorum_key,
                limit,
                cookie,
            } => match self
                .store
                .discover(&quorum_key, limit, cookie.as_ref(), now)
            {
                Ok(answer) => self.reply(reply, Response::Discovered(answer)),
                // Not held here: look it up (once for every asker, within
                // caps, unless it was just looked up in vain), then answer
                // from what the store accepted of it.
                Err(StatusCode::UnknownNamespace) if cookie.is_none() => {
                    self.look_up(now, from, quorum_key, Waiter::Rdht { reply, limit })
                }
                Err(code) => self.reply(reply, Response::Rejected(code)),
            },
            Request::DiscoverKind {
                kind,
                limit,
                cookie,
            } => {
                let response = match self.store.discover_kind(&kind, limit, cookie.as_ref(), now) {
                    Ok((namespaces, cookie)) => Response::Namespaces { namespaces, cookie },
                    Err(code) => Response::Rejected(code),
                };
                self.reply(reply, response);
            }
            Request::PublishHandover(record) => {
                // Cheap checks here; the signature in a job.
                if !self.may_queue(&from, 1) {
                    return self.reply(reply, Response::Rejected(StatusCode::QuotaExceeded));
                }
                match self.store.precheck_handover(record, Some(from), now) {
                    Ok(checked) => {
                        *self.queued_by_peer.entry(from).or_insert(0) += 1;
                        self.handover_queue
                            .push((checked, ReplyTo::One(reply, from)));
                    }
                    Err(code) => return self.reply(reply, Response::Rejected(code)),
                }
            }
            // Member-to-member messages have no business here.
            Request::Dkg(_)
            | Request::SignNamespace(_)
            | Request::NamespaceReady(_)
            | Request::SignHandover { .. } => {
                self.reply(reply, Response::Rejected(StatusCode::NotAuthorized))
            }
        }
        self.drive(now);
    }

    /// A standard `/rendezvous/1.0.0` request from `from` (PROTOCOL.md
    /// 16): `REGISTER` is refused (`E_NOT_AUTHORIZED`: the threshold gate
    /// is never bypassed), `DISCOVER` is answered from the store's verified
    /// records. A `DISCOVER` of one quorum this node does not hold waits
    /// for a lookup, as an rdht `Discover` does (within the same caps):
    /// then this returns `None`, and the answer comes out later as
    /// [`Output::StandardReply`] to `reply`.
    pub fn handle_standard(
        &mut self,
        now: u64,
        from: PeerId,
        reply: ReplyId,
        request: StandardRequest,
    ) -> Option<StandardAnswer> {
        let penalized = self
            .penalized
            .get(&from)
            .is_some_and(|&(until, _)| until > now);
        match request {
            StandardRequest::Register { .. } => {
                self.counters.standard_registers_refused += 1;
                Some(StandardAnswer::Registered(StandardRefusal::NotAuthorized(
                    REGISTER_REFUSED,
                )))
            }
            StandardRequest::Unregister => Some(StandardAnswer::None),
            StandardRequest::Discover { .. } if penalized => {
                self.counters.penalized_requests += 1;
                Some(StandardAnswer::Discovered(Err(
                    StandardRefusal::Unavailable(
                        "this peer sent an invalid signature: refused for a while",
                    ),
                )))
            }
            StandardRequest::Discover { .. } if !self.discover_rate.admit(now, from) => {
                self.counters.discovers_throttled += 1;
                Some(StandardAnswer::Discovered(Err(
                    StandardRefusal::Unavailable("too many discovers from this peer: slow down"),
                )))
            }
            StandardRequest::Discover {
                namespace,
                limit,
                cookie,
            } => {
                self.counters.standard_discovers += 1;
                let Some(namespace) = namespace else {
                    return Some(StandardAnswer::Discovered(Err(
                        StandardRefusal::InvalidNamespace(
                            "a namespace is required: <hex quorum key> or kind:<kind>",
                        ),
                    )));
                };
                let answer =
                    self.store
                        .standard_discover(&namespace, limit, cookie.as_deref(), now);
                // One quorum not held here (and not a page of an earlier
                // answer): look it up. A kind is answered from what this
                // node holds, as an rdht `DiscoverKind` is.
                let max_kind_bytes = self.store.config().limits.max_kind_bytes;
                let quorum_key = match StandardScope::parse(&namespace, max_kind_bytes) {
                    Ok(StandardScope::Quorum(key))
                        if cookie.is_none()
                            && answer.as_ref().is_ok_and(|p| p.registrations.is_empty())
                            && self.store.namespace(&key).is_none() =>
                    {
                        key
                    }
                    _ => return Some(StandardAnswer::Discovered(answer)),
                };
                self.look_up(
                    now,
                    from,
                    quorum_key,
                    Waiter::Standard {
                        reply,
                        namespace,
                        limit,
                    },
                );
                None
            }
        }
    }

    /// Replicates `quorum_key`'s value at the next replication turn (a
    /// node that reloaded it from disk offers it to the others again).
    pub fn republish(&mut self, quorum_key: QuorumKey) {
        self.replicate.insert(quorum_key);
    }

    /// Looks `quorum_key`'s value up at the other replicas (a DHT GET
    /// nobody waits for), so that a node restarted from its database
    /// catches up with what it missed: registrations accepted by the
    /// others while it was down, or by itself after its last write
    /// before a crash (members do not register again for an hour).
    /// Values found are merged like any other. Nothing happens if that
    /// lookup runs already or the lookups are at their cap.
    pub fn resync(&mut self, now: u64, quorum_key: QuorumKey) {
        if self.lookups.contains_key(&quorum_key) || self.lookups.len() >= self.config.max_lookups {
            return;
        }
        self.lookups.insert(
            quorum_key,
            Lookup {
                waiting: Vec::new(),
                deadline: now + self.config.lookup_timeout_ms,
                values_in_flight: 0,
                query_done: false,
                resync: true,
            },
        );
        self.counters.lookups += 1;
        self.outputs.push_back(Output::Lookup {
            quorum_key,
            key: namespace_key(&quorum_key),
        });
    }

    /// A request whose bytes did not decode: answered with `code`.
    pub fn handle_malformed(&mut self, reply: ReplyId, code: StatusCode) {
        self.reply(reply, Response::Rejected(code));
    }

    /// A verification job's result. Batches are applied, and their
    /// registrations answered, in submission order.
    pub fn handle_verified(&mut self, now: u64, done: VerifyDone) {
        if let Done::Values(verified) = done.done {
            self.apply_values(now, done.id, verified);
        } else {
            self.finished.insert(done.id, Some(done));
            self.apply_finished(now);
        }
        self.drive(now);
    }

    /// A verification job failed (its thread panicked or died): its
    /// registrations are answered `Internal`, nothing of it is stored, and
    /// the server goes on.
    pub fn handle_job_failed(&mut self, now: u64, id: JobId) {
        if self.in_flight.iter().any(|(j, _)| *j == id) {
            self.counters.failed_jobs += 1;
            self.finished.insert(id, None);
            self.apply_finished(now);
        }
        if let Some(values) = self.value_jobs.remove(&id) {
            // Nothing of them is stored; their senders are not blamed.
            self.counters.failed_jobs += 1;
            for value in values {
                self.queued_value_us = self.queued_value_us.saturating_sub(value.cost_us);
                let report = value.report;
                self.finish_value(now, value.from, value.quorum_key, value.awaited, report);
            }
        }
        self.drive(now);
    }

    /// Time passed: expiry, due liveness checks, batches, replication,
    /// persistence and lookups that are due by `now`.
    pub fn handle_timeout(&mut self, now: u64) {
        self.store.expire(now);
        for target in self.store.due_pings(now) {
            self.counters.pings_due += 1;
            // The ping protocol pings open connections on its own; one
            // whose last ping failed is replaced by a new one.
            if !self.connected.contains(&target.peer_id) {
                self.dial(now, target, false);
            } else if target.after_miss {
                self.counters.reconnects += 1;
                self.connected.remove(&target.peer_id);
                self.dial(now, target, true);
            }
        }
        let expired: Vec<QuorumKey> = self
            .lookups
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for qk in expired {
            self.answer_lookup(now, qk, true);
        }
        self.expire_negative(now);
        while let Some(&(at, peer)) = self.disconnects.front() {
            if at > now {
                break;
            }
            self.disconnects.pop_front();
            let until_ms = self.penalized.get(&peer).map_or(now, |&(until, _)| until);
            self.outputs.push_back(Output::Disconnect {
                peer,
                until_ms,
                reason: BlockReason::InvalidSignature,
            });
            if self.penalty_ends.len() < 65_536 {
                self.penalty_ends.insert((until_ms, peer));
            }
        }
        while let Some(&(until, peer)) = self.penalty_ends.first() {
            if until > now {
                break;
            }
            self.penalty_ends.pop_first();
            // A later offence (or throttle) set a later end: that entry
            // unblocks it.
            let penalized = self.penalized.get(&peer).is_some_and(|&(u, _)| u > now);
            let throttled = self.throttled.get(&peer).is_some_and(|&u| u > now);
            if !penalized && !throttled {
                self.throttled.remove(&peer);
                self.outputs.push_back(Output::Unblock { peer });
            }
        }
        // A sender is forgotten a maximum penalty after its last one ended.
        // The sweep walks every penalized sender: once a second at most,
        // not at every timeout (those come every few milliseconds under
        // load, and a flood of forgers can leave 65,536 entries).
        if !self.penalized.is_empty() && now >= self.next_penalty_sweep {
            self.next_penalty_sweep = now.saturating_add(PENALTY_SWEEP_MS);
            let keep = self.config.max_penalty_ms;
            self.penalized
                .retain(|_, (until, _)| until.saturating_add(keep) > now);
        }
        if (!self.budgets.is_empty() || !self.discover_rate.is_empty())
            && now >= self.next_budget_sweep
        {
            self.next_budget_sweep = now.saturating_add(PENALTY_SWEEP_MS);
            self.budgets.sweep(now);
            self.discover_rate.sweep(now);
        }
        self.drive(now);
    }

    /// A connection to `peer` is up (its liveness checks go over it).
    pub fn handle_connected(&mut self, peer: PeerId) {
        self.connected.insert(peer);
    }

    /// The last connection to `peer` closed.
    pub fn handle_disconnected(&mut self, peer: &PeerId) {
        self.connected.remove(peer);
    }

    /// `peer` answered a ping.
    pub fn handle_pong(&mut self, peer: &PeerId, now: u64) {
        self.store.handle_pong(peer, now);
        self.take_listing_changes();
    }

    /// A ping of `peer`, or a dial of it, failed. Returns true if the peer
    /// just became unreachable (it is no longer listed here; an
    /// [`Output::ListingChanged`] says so too).
    pub fn handle_ping_miss(&mut self, peer: &PeerId) -> bool {
        let became = self.store.handle_ping_miss(peer);
        self.take_listing_changes();
        became
    }

    /// Turns the store's listing changes into outputs.
    fn take_listing_changes(&mut self) {
        for (peer, listed) in self.store.take_listing_changes() {
            self.outputs
                .push_back(Output::ListingChanged { peer, listed });
        }
    }

    /// A value another node sent (a Kademlia PUT) or served (a GET
    /// answer) under `key`; `from` is that node (`None` if unknown).
    ///
    /// Decoding and the cheap checks run here: what the value would change
    /// and is left to verify is charged to `from`'s budget
    /// ([`ServerConfig::value_budget`]) and verified in a job, never here.
    /// What the merge did comes out as [`Output::Merged`] (at once if
    /// nothing was left to verify). A namespace value is merged (every
    /// record in it re-verified), a kind index adds the namespaces it
    /// vouches for. A sender whose value held an invalid signature is
    /// penalized like a direct sender of one: its values are dropped
    /// unread, and it is disconnected.
    pub fn handle_value(
        &mut self,
        now: u64,
        from: Option<PeerId>,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), ValueError> {
        let outcome = self.admit_value(now, from, key, value);
        self.drive(now);
        outcome
    }

    fn admit_value(
        &mut self,
        now: u64,
        from: Option<PeerId>,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), ValueError> {
        if let Some(peer) = from {
            if self
                .penalized
                .get(&peer)
                .is_some_and(|&(until, _)| until > now)
            {
                self.counters.values_penalized += 1;
                return Err(ValueError::Penalized);
            }
        }
        // Saturated: dropped before it costs even its decoding.
        if self.queued_value_us >= self.config.max_queued_value_us {
            self.counters.values_busy += 1;
            return Err(ValueError::Busy);
        }
        if !self
            .budgets
            .take_bytes(now, from, value.len().try_into().unwrap_or(u64::MAX))
        {
            self.counters.values_over_budget += 1;
            if let Some(peer) = from {
                self.throttle(now, peer);
            }
            return Err(ValueError::OverBudget);
        }
        let Prechecked {
            quorum_key,
            mut report,
            mut checked,
        } = precheck_kad_value(&mut self.store, now, key, value)?;
        if checked.is_empty() {
            self.counters.values_unchanged += 1;
            self.finish_value(now, from, quorum_key, false, report);
            return Ok(());
        }
        // Charge the sender: what its budget does not cover is dropped
        // unchecked (an honest replica's next copy brings it again).
        let mut left = self.budgets.work_left(now, from);
        let mut cost_us = 0;
        let mut kept = Vec::with_capacity(checked.len());
        let mut trimmed = false;
        for mut c in checked.drain(..) {
            let full = c.cost_us();
            match c.trim_to(left) {
                Some(cost) => {
                    trimmed |= cost < full;
                    left -= cost;
                    cost_us += cost;
                    if c.needs_verification() {
                        kept.push(c);
                    } else {
                        report.absorb(c.report().clone());
                    }
                }
                None => {
                    trimmed = true;
                    report.absorb(c.report().clone());
                }
            }
        }
        if trimmed {
            self.counters.values_over_budget += 1;
        }
        if kept.is_empty() {
            self.finish_value(now, from, quorum_key, false, report);
            return Err(ValueError::OverBudget);
        }
        if self.queued_value_us.saturating_add(cost_us) > self.config.max_queued_value_us {
            self.counters.values_busy += 1;
            return Err(ValueError::Busy);
        }
        self.budgets.take_work(now, from, cost_us);
        self.queued_value_us += cost_us;
        self.counters.values_queued += 1;
        let awaited = match quorum_key.and_then(|qk| self.lookups.get_mut(&qk)) {
            Some(lookup) => {
                lookup.values_in_flight += 1;
                true
            }
            None => false,
        };
        self.value_queue.push_back(IncomingValue {
            from,
            quorum_key,
            awaited,
            cost_us,
            report,
            parts: kept.len(),
            checked: kept,
        });
        Ok(())
    }

    /// A value job's verdicts: each value is applied (in any order: values
    /// wait for no reply) and reported.
    fn apply_values(&mut self, now: u64, id: JobId, verified: Vec<VerifiedValue>) {
        let Some(values) = self.value_jobs.remove(&id) else {
            return;
        };
        let mut verified = verified.into_iter();
        for value in values {
            self.queued_value_us = self.queued_value_us.saturating_sub(value.cost_us);
            let mut report = value.report;
            for _ in 0..value.parts {
                let Some(v) = verified.next() else { break };
                let merged = self.store.apply_value(v, value.from, now);
                if value.quorum_key.is_some() {
                    report.absorb(merged);
                } else {
                    // A kind index: whether a namespace changed, and why
                    // entries were refused (the first refusal also stands
                    // as the namespace's, for the penalty).
                    report.namespace_updated |= merged.namespace_updated;
                    if let Some(code) = merged.namespace_rejected {
                        report.namespace_rejected.get_or_insert(code);
                        report.kind_entries_rejected.push(code);
                    }
                }
            }
            self.finish_value(now, value.from, value.quorum_key, value.awaited, report);
        }
    }

    /// The end of a value: the sender of an invalid signature is
    /// penalized, a changed namespace is persisted, its lookup may be
    /// answered, and the report goes out.
    fn finish_value(
        &mut self,
        now: u64,
        from: Option<PeerId>,
        quorum_key: Option<QuorumKey>,
        awaited: bool,
        report: MergeReport,
    ) {
        let forged = report.namespace_rejected.is_some_and(is_forgery)
            || report.handover_rejected.is_some_and(is_forgery)
            || report.peers_rejected.iter().any(|(_, c)| is_forgery(*c));
        if let (true, Some(peer)) = (forged, from) {
            if !self.offenders.contains(&peer) {
                self.offenders.push(peer);
            }
        }
        if let Some(qk) = quorum_key {
            if report.namespace_updated || report.peers_stored > 0 || report.handover_updated {
                self.counters.merges += 1;
                self.changed(qk, false);
            }
            if let Some(lookup) = self.lookups.get_mut(&qk) {
                if awaited {
                    lookup.values_in_flight = lookup.values_in_flight.saturating_sub(1);
                }
                // A lookup is answered by the first value that verified in
                // full, not by the first answer: a node that answers first
                // with junk (or with a genuine namespace and forged peers)
                // only makes the lookup wait for the next.
                let clean = report.namespace_rejected.is_none()
                    && report.peers_rejected.is_empty()
                    && report.handover_rejected.is_none();
                let held =
                    self.store.namespace(&qk).is_some() || self.store.handover(&qk, now).is_some();
                let settled = lookup.query_done && lookup.values_in_flight == 0;
                if clean && held && !lookup.resync {
                    self.answer_lookup(now, qk, false);
                    self.outputs
                        .push_back(Output::LookupDone { quorum_key: qk });
                } else if settled {
                    self.answer_lookup(now, qk, false);
                }
            }
        }
        self.outputs.push_back(Output::Merged {
            from,
            quorum_key,
            report,
        });
    }

    /// The DHT query of `quorum_key` ended: the discovers waiting for it
    /// are answered from the store, once the values it found that are
    /// still being verified are applied.
    pub fn handle_lookup_done(&mut self, now: u64, quorum_key: QuorumKey) {
        if let Some(lookup) = self.lookups.get_mut(&quorum_key) {
            if lookup.values_in_flight > 0 {
                lookup.query_done = true;
                return;
            }
        }
        self.answer_lookup(now, quorum_key, false);
        self.drive(now);
    }

    /// Answers the discovers waiting for the lookup of `quorum_key` from
    /// the store, and ends it. `timed_out`: the lookup's own deadline
    /// came first, so a namespace still not held is answered
    /// `LookupTimedOut` (not found *yet*: nothing is remembered), not
    /// `UnknownNamespace` (the query ended without finding it).
    fn answer_lookup(&mut self, now: u64, quorum_key: QuorumKey, timed_out: bool) {
        let Some(lookup) = self.lookups.remove(&quorum_key) else {
            return;
        };
        let mut found_nothing = false;
        for (waiter, asker) in lookup.waiting {
            if let Some(count) = self.lookups_by_peer.get_mut(&asker) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.lookups_by_peer.remove(&asker);
                }
            }
            let (reply, limit) = match waiter {
                Waiter::Rdht { reply, limit } => (reply, limit),
                Waiter::Standard {
                    reply,
                    namespace,
                    limit,
                } => {
                    // A stock client gets what the store now holds (an
                    // empty page if nothing verified): the standard
                    // protocol has no "not found".
                    let answer = self.store.standard_discover(&namespace, limit, None, now);
                    found_nothing |= self.store.namespace(&quorum_key).is_none();
                    self.outputs.push_back(Output::StandardReply {
                        to: reply,
                        answer: StandardAnswer::Discovered(answer),
                    });
                    continue;
                }
            };
            // A retired key is answered with its handover.
            let response = match self.store.handover(&quorum_key, now) {
                Some(h) => Response::HandedOver(h.clone()),
                None => match self.store.discover(&quorum_key, limit, None, now) {
                    Ok(answer) => Response::Discovered(answer),
                    Err(StatusCode::UnknownNamespace) if timed_out => {
                        self.counters.lookups_timed_out += 1;
                        Response::Rejected(StatusCode::LookupTimedOut)
                    }
                    Err(code) => {
                        found_nothing |= code == StatusCode::UnknownNamespace;
                        Response::Rejected(code)
                    }
                },
            };
            self.reply(reply, response);
        }
        if found_nothing {
            self.remember_negative(now, quorum_key);
        }
    }

    /// Remembers that a lookup of `quorum_key` found nothing.
    fn remember_negative(&mut self, now: u64, quorum_key: QuorumKey) {
        if self.config.negative_ttl_ms == 0 || self.config.max_negative == 0 {
            return;
        }
        while self.negative.len() >= self.config.max_negative {
            let Some((_, oldest)) = self.negative_order.pop_front() else {
                break;
            };
            self.negative.remove(&oldest);
        }
        let until = now + self.config.negative_ttl_ms;
        if self.negative.insert(quorum_key, until).is_some() {
            // Re-remembered: drop its older place in the order.
            self.negative_order.retain(|(_, k)| *k != quorum_key);
        }
        self.negative_order.push_back((until, quorum_key));
    }

    /// Forgets the negative answers that are due by `now`.
    fn expire_negative(&mut self, now: u64) {
        while let Some(&(until, key)) = self.negative_order.front() {
            if until > now {
                break;
            }
            self.negative_order.pop_front();
            self.negative.remove(&key);
        }
    }

    /// Queued registrations to verification now, whatever the batch
    /// policy says (before answering a question about the state, or
    /// stopping), and everything changed to persistence.
    pub fn flush(&mut self, now: u64) {
        if !self.namespace_queue.is_empty() {
            self.submit_namespaces(now);
        }
        if !self.handover_queue.is_empty() {
            self.submit_handovers(now);
        }
        while !self.queue.is_empty() {
            self.submit(now);
        }
        self.next_persist = now;
        self.next_replication = now;
        self.drive(now);
    }

    // ----- internals ----------------------------------------------------------------

    fn reply(&mut self, to: ReplyId, response: Response) {
        self.outputs.push_back(Output::Reply { to, response });
    }

    /// A namespace changed: persist it, and replicate it if the change came
    /// from a direct registration (replicated changes came from a replica).
    fn changed(&mut self, quorum_key: QuorumKey, direct: bool) {
        if direct {
            self.replicate.insert(quorum_key);
        }
        if self.config.persist_period_ms > 0 {
            self.persist.insert(quorum_key);
        }
    }

    fn may_queue(&self, peer: &PeerId, count: usize) -> bool {
        self.pending_registrations() + count <= self.config.max_queued
            && self.queued_by_peer.get(peer).copied().unwrap_or(0) + count
                <= self.config.max_queued_per_peer
    }

    fn enqueue(&mut self, now: u64, registration: PeerRegistration, reply: ReplyTo) {
        *self.queued_by_peer.entry(reply.peer()).or_insert(0) += 1;
        self.queued_since.get_or_insert(now);
        self.queue.push((registration, reply));
    }

    fn look_up(&mut self, now: u64, from: PeerId, quorum_key: QuorumKey, waiter: Waiter) {
        if self
            .negative
            .get(&quorum_key)
            .is_some_and(|&until| until > now)
        {
            self.counters.negative_hits += 1;
            return self.refuse_waiter(now, waiter, StatusCode::UnknownNamespace);
        }
        let asked = self.lookups_by_peer.get(&from).copied().unwrap_or(0);
        let over = match self.lookups.get(&quorum_key) {
            Some(lookup) => lookup.waiting.len() >= self.config.max_waiting_per_lookup,
            None => self.lookups.len() >= self.config.max_lookups,
        };
        if over || asked >= self.config.max_lookups_per_peer {
            self.counters.lookups_refused += 1;
            return self.refuse_waiter(now, waiter, StatusCode::QuotaExceeded);
        }
        *self.lookups_by_peer.entry(from).or_insert(0) += 1;
        let deadline = now + self.config.lookup_timeout_ms;
        let lookup = self.lookups.entry(quorum_key).or_insert_with(|| Lookup {
            waiting: Vec::new(),
            deadline,
            values_in_flight: 0,
            query_done: false,
            resync: false,
        });
        let first = lookup.waiting.is_empty();
        lookup.waiting.push((waiter, from));
        if first {
            self.counters.lookups += 1;
            self.outputs.push_back(Output::Lookup {
                quorum_key,
                key: namespace_key(&quorum_key),
            });
        }
    }

    /// Answers a discover that will not wait for a lookup: `code` for an
    /// rdht one; for a standard one, what the store holds (nothing, the
    /// standard protocol has no "not found") or, over the caps, a refusal.
    fn refuse_waiter(&mut self, now: u64, waiter: Waiter, code: StatusCode) {
        match waiter {
            Waiter::Rdht { reply, .. } => self.reply(reply, Response::Rejected(code)),
            Waiter::Standard {
                reply,
                namespace,
                limit,
            } => {
                let answer = match code {
                    StatusCode::QuotaExceeded => Err(StandardRefusal::Unavailable(
                        "too many lookups under way: try again later",
                    )),
                    _ => self.store.standard_discover(&namespace, limit, None, now),
                };
                self.outputs.push_back(Output::StandardReply {
                    to: reply,
                    answer: StandardAnswer::Discovered(answer),
                });
            }
        }
    }

    /// Disconnects `peer` and refuses its requests for a while: the
    /// penalty doubles at each offence, up to `max_penalty_ms`. At most
    /// 65,536 senders are remembered (those whose penalty ended longest
    /// ago are forgotten first).
    fn penalize(&mut self, now: u64, peer: PeerId) {
        const MAX_PENALIZED: usize = 65_536;
        if self.penalized.len() >= MAX_PENALIZED && !self.penalized.contains_key(&peer) {
            if let Some(oldest) = self
                .penalized
                .iter()
                .min_by_key(|(_, (until, _))| *until)
                .map(|(p, _)| *p)
            {
                self.penalized.remove(&oldest);
            }
        }
        let (until, strikes) = self.penalized.entry(peer).or_insert((now, 0));
        *strikes = strikes.saturating_add(1);
        let shift = (*strikes - 1).min(20);
        let length = self
            .config
            .penalty_ms
            .saturating_mul(1 << shift)
            .min(self.config.max_penalty_ms);
        *until = now.saturating_add(length);
        self.counters.penalties += 1;
        // Its values not yet handed out are dropped: they were charged to
        // a budget it has no more claim to.
        let (dropped, kept): (VecDeque<IncomingValue>, VecDeque<IncomingValue>) =
            std::mem::take(&mut self.value_queue)
                .into_iter()
                .partition(|v| v.from == Some(peer));
        self.value_queue = kept;
        for value in dropped {
            self.counters.values_penalized += 1;
            self.queued_value_us = self.queued_value_us.saturating_sub(value.cost_us);
            let report = value.report;
            self.finish_value(now, value.from, value.quorum_key, value.awaited, report);
        }
        if self.disconnects.len() < 65_536 {
            self.disconnects
                .push_back((now.saturating_add(DISCONNECT_DELAY_MS), peer));
        }
    }

    /// Refuses `peer`'s connections for `ServerConfig::value_throttle_ms`:
    /// it sent values faster than its byte budget. Not an offence (no
    /// penalty, its requests are served once it reconnects).
    fn throttle(&mut self, now: u64, peer: PeerId) {
        if self.config.value_throttle_ms == 0
            || self.throttled.get(&peer).is_some_and(|&u| u > now)
            || self.throttled.len() >= 65_536
            || self.penalty_ends.len() >= 65_536
        {
            return;
        }
        let until_ms = now.saturating_add(self.config.value_throttle_ms);
        self.throttled.insert(peer, until_ms);
        self.penalty_ends.insert((until_ms, peer));
        self.counters.senders_throttled += 1;
        self.outputs.push_back(Output::Disconnect {
            peer,
            until_ms,
            reason: BlockReason::OverByteBudget,
        });
    }

    /// Submits batches, replicates and persists whatever is due.
    fn drive(&mut self, now: u64) {
        self.take_listing_changes();
        for peer in std::mem::take(&mut self.offenders) {
            self.penalize(now, peer);
        }
        self.submit_jobs(now);
        if !self.replicate.is_empty() && now >= self.next_replication {
            self.next_replication = now + self.config.replication_period_ms;
            // A value over the message cap goes as several PUTs (pages)
            // under its key; replicas merge them.
            let max = self.store.config().limits.max_message_bytes;
            for qk in std::mem::take(&mut self.replicate) {
                // A retired key's value is its handover.
                if let Some(h) = self.store.handover(&qk, now) {
                    self.outputs.push_back(Output::Replicate {
                        quorum_key: qk,
                        key: namespace_key(&qk),
                        value: HandoverValue {
                            handover: h.clone(),
                        }
                        .encode(),
                    });
                    continue;
                }
                for value in self.store.namespace_value_pages(&qk, now, max) {
                    self.outputs.push_back(Output::Replicate {
                        quorum_key: qk,
                        key: namespace_key(&qk),
                        value: value.encode(),
                    });
                }
            }
        }
        if !self.persist.is_empty() && now >= self.next_persist {
            self.next_persist = now + self.config.persist_period_ms;
            let keys = std::mem::take(&mut self.persist);
            let handovers: Vec<(QuorumKey, HandoverRecord)> = keys
                .iter()
                .filter_map(|qk| Some((*qk, self.store.handover(qk, now)?.clone())))
                .collect();
            let updates = keys
                .into_iter()
                .map(|qk| (qk, self.store.namespace_value(&qk, now)))
                .collect();
            self.outputs.push_back(Output::Persist(updates));
            if !handovers.is_empty() {
                self.outputs.push_back(Output::PersistHandovers(handovers));
            }
        }
    }

    /// Hands out jobs while there are free slots: namespace
    /// registrations first (rare, and a quorum waits on them), then peer
    /// batches and values in turn. Values never take the last slot, so a
    /// flood of values cannot hold registrations up behind it.
    fn submit_jobs(&mut self, now: u64) {
        let max_jobs = self.config.max_jobs.max(1);
        let max_value_jobs = if max_jobs > 1 { max_jobs - 1 } else { 1 };
        while self.jobs_out() < max_jobs {
            if !self.namespace_queue.is_empty() {
                self.submit_namespaces(now);
                continue;
            }
            if !self.handover_queue.is_empty() {
                self.submit_handovers(now);
                continue;
            }
            let peers = self.should_submit(now);
            let values = !self.value_queue.is_empty() && self.value_jobs.len() < max_value_jobs;
            match (peers, values) {
                (true, true) if self.values_next => self.submit_values(now),
                (true, _) => self.submit(now),
                (false, true) => self.submit_values(now),
                (false, false) => break,
            }
            self.values_next = peers && values && !self.values_next;
        }
    }

    /// Namespace registrations to one job.
    fn submit_namespaces(&mut self, now: u64) {
        let batch = std::mem::take(&mut self.namespace_queue);
        let (checked, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let id = self.push_job(now, Work::Namespaces(checked));
        self.in_flight.push_back((id, replies));
    }

    /// Published handovers to one job.
    fn submit_handovers(&mut self, now: u64) {
        let batch = std::mem::take(&mut self.handover_queue);
        let (checked, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let id = self.push_job(now, Work::Handovers(checked));
        self.in_flight.push_back((id, replies));
    }

    /// Queued values to one job, up to [`MAX_VALUE_JOB_US`] of work.
    fn submit_values(&mut self, now: u64) {
        let mut values = Vec::new();
        let mut work = 0u64;
        while let Some(next) = self.value_queue.front() {
            if !values.is_empty() && work.saturating_add(next.cost_us) > MAX_VALUE_JOB_US {
                break;
            }
            let Some(next) = self.value_queue.pop_front() else {
                break;
            };
            work = work.saturating_add(next.cost_us);
            values.push(next);
        }
        let checked: Vec<CheckedValue> = values
            .iter_mut()
            .flat_map(|v| std::mem::take(&mut v.checked))
            .collect();
        let id = self.push_job(now, Work::Values(checked));
        self.value_jobs.insert(id, values);
    }

    /// Hands `work` out as a job; returns its id.
    fn push_job(&mut self, now: u64, work: Work) -> JobId {
        let id = JobId(self.next_job);
        self.next_job += 1;
        self.outputs.push_back(Output::Verify(VerifyJob {
            id,
            work,
            now_ms: now,
            limits: self.store.config().limits,
        }));
        id
    }

    fn should_submit(&self, now: u64) -> bool {
        !self.queue.is_empty()
            && (self.queue.len() >= self.config.min_batch
                || self
                    .queued_since
                    .is_none_or(|t| now >= t + self.config.max_batch_wait_ms))
    }

    /// Runs the cheap checks of the next batch, answers those they refuse,
    /// and hands the rest out as a job.
    fn submit(&mut self, now: u64) {
        let max = self.config.max_batch.max(1);
        let batch = if self.queue.len() > max {
            let rest = self.queue.split_off(max);
            self.queued_since = Some(now);
            std::mem::replace(&mut self.queue, rest)
        } else {
            self.queued_since = None;
            std::mem::take(&mut self.queue)
        };
        let (registrations, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let prechecked = self.store.precheck_peers(registrations, now);
        let mut checked = Vec::with_capacity(prechecked.len());
        let mut waiting = Vec::with_capacity(prechecked.len());
        for (outcome, reply) in prechecked.into_iter().zip(replies) {
            match outcome {
                Ok(c) => {
                    checked.push(c);
                    waiting.push(reply);
                }
                Err(code) => self.answer(reply, Err(code)),
            }
        }
        if checked.is_empty() {
            return;
        }
        let id = self.push_job(now, Work::Peers(checked));
        self.in_flight.push_back((id, waiting));
    }

    /// Applies, in submission order, every finished job whose elders are
    /// done.
    fn apply_finished(&mut self, now: u64) {
        while let Some(&(id, _)) = self.in_flight.front() {
            let Some(done) = self.finished.remove(&id) else {
                break;
            };
            let replies = self
                .in_flight
                .pop_front()
                .map(|(_, r)| r)
                .unwrap_or_default();
            match done.map(|d| d.done) {
                Some(Done::Peers { checked, verdicts }) => {
                    let keys: Vec<QuorumKey> = checked
                        .iter()
                        .map(|c| c.registration.record.quorum_key())
                        .collect();
                    let outcomes = self
                        .store
                        .apply_peers(checked.into_iter().zip(verdicts).collect(), now);
                    for ((reply, qk), outcome) in replies.into_iter().zip(keys).zip(outcomes) {
                        if outcome.is_ok() {
                            self.changed(qk, true);
                        }
                        self.answer(reply, outcome);
                    }
                }
                Some(Done::Namespaces(verdicts)) => {
                    for (reply, (checked, verdict)) in replies.into_iter().zip(verdicts) {
                        let qk = checked.record().quorum_key();
                        let outcome = self.store.apply_namespace_verdict(checked, verdict, now);
                        if let (Ok(_), Some(qk)) = (&outcome, qk) {
                            self.changed(qk, true);
                        }
                        self.answer(reply, outcome);
                    }
                }
                Some(Done::Handovers(verdicts)) => {
                    for (reply, (checked, verdict)) in replies.into_iter().zip(verdicts) {
                        let qk = checked.record().old_quorum_key;
                        let outcome = self.store.apply_handover_verdict(checked, verdict, now);
                        if outcome.is_ok() {
                            // Replicated as the key's value from now on;
                            // its dropped namespace is removed from disk.
                            self.changed(qk, true);
                        }
                        self.answer(reply, outcome);
                    }
                }
                Some(Done::Values(_)) | None => {
                    for reply in replies {
                        self.answer(reply, Err(StatusCode::Internal));
                    }
                }
            }
        }
    }

    /// A liveness dial of `target`, to the addresses the dial policy and the
    /// per-IP rate allow; with none left, no dial and a missed ping (a
    /// record naming only a victim's or an internal address is then
    /// dropped from the lists, and dialled ever less often).
    /// `reconnect`: its open connections are to be closed first
    /// ([`Output::Reconnect`]).
    fn dial(&mut self, now: u64, target: crate::liveness::PingTarget, reconnect: bool) {
        let policy = self.config.dial_policy;
        let total = target.addrs.len();
        let in_scope: Vec<_> = target
            .addrs
            .into_iter()
            .filter(|a| policy.allows(a))
            .collect();
        self.counters.addrs_out_of_scope += (total - in_scope.len()) as u64;
        let scoped = in_scope.len();
        let addrs = self.dial_limiter.admit(now, in_scope);
        self.counters.addrs_rate_limited += (scoped - addrs.len()) as u64;
        if addrs.is_empty() {
            self.counters.dials_refused += 1;
            self.store.handle_ping_miss(&target.peer_id);
            if reconnect {
                // Nowhere to dial: the dead connection still goes.
                self.outputs.push_back(Output::Reconnect {
                    peer: target.peer_id,
                    addrs,
                });
            }
            return;
        }
        let peer = target.peer_id;
        self.outputs.push_back(if reconnect {
            Output::Reconnect { peer, addrs }
        } else {
            Output::Dial { peer, addrs }
        });
    }

    /// Sets which address scopes liveness dials may go to (a driver calls
    /// it once its listen addresses are known).
    pub fn set_dial_policy(&mut self, policy: AddressPolicy) {
        self.config.dial_policy = policy;
        self.store.set_address_policy(Some(policy));
    }

    /// Sends (or, for a record of a `RegisterPeers`, records) the outcome
    /// of one registration.
    fn answer(&mut self, reply: ReplyTo, outcome: RegisterOutcome) {
        let peer = reply.peer();
        if outcome.is_err_and(is_forgery) && !self.offenders.contains(&peer) {
            self.offenders.push(peer);
        }
        if let Some(count) = self.queued_by_peer.get_mut(&peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.queued_by_peer.remove(&peer);
            }
        }
        match reply {
            ReplyTo::One(to, _) => {
                let response = match outcome {
                    Ok(ttl_ms) => Response::Registered { ttl_ms },
                    Err(code) => Response::Rejected(code),
                };
                self.reply(to, response);
            }
            ReplyTo::Part {
                request, position, ..
            } => {
                let Some(waiting) = self.multi.get_mut(&request) else {
                    return;
                };
                if let Some(slot) = waiting.outcomes.get_mut(position) {
                    if slot.replace(outcome).is_none() {
                        waiting.remaining = waiting.remaining.saturating_sub(1);
                    }
                }
                if waiting.remaining == 0 {
                    if let Some(done) = self.multi.remove(&request) {
                        let outcomes = done
                            .outcomes
                            .into_iter()
                            .map(|o| o.unwrap_or(Err(StatusCode::Internal)))
                            .collect();
                        self.reply(done.reply, Response::RegisteredPeers(outcomes));
                    }
                }
            }
        }
    }
}

/// Why a value from another node was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The key is not a DHT key.
    #[error("not a DHT key")]
    Key,
    /// The value decodes as neither a namespace value nor a kind index.
    #[error("undecodable value")]
    Decode,
    /// A namespace value stored under another key than its own.
    #[error("value stored under another key")]
    WrongKey,
    /// The store is full.
    #[error("store full")]
    Full,
    /// The sender sent an invalid signature a while ago: its values are
    /// dropped unread.
    #[error("sender penalized")]
    Penalized,
    /// The sender's budget does not cover the value (or none of it).
    #[error("over the sender's budget")]
    OverBudget,
    /// Too much verification of values is waiting already.
    #[error("too much value verification waiting")]
    Busy,
}

fn dht_key(key: &[u8]) -> Result<crate::keys::DhtKey, ValueError> {
    key.try_into().map_err(|_| ValueError::Key)
}

/// Most estimated work (µs) of values in one job: a job is a unit the
/// verification threads cannot interleave with other work.
const MAX_VALUE_JOB_US: u64 = 50_000;

/// How often penalized senders are swept for ones to forget.
const PENALTY_SWEEP_MS: u64 = 1_000;

/// How long after its penalty a sender is disconnected: its refusal is
/// sent first (closing at once dropped the very answer that explains it).
const DISCONNECT_DELAY_MS: u64 = 1_000;

/// Whether a refusal means the sender signed something invalid (not
/// merely late, stale or over a quota): what gets a sender penalized.
fn is_forgery(code: StatusCode) -> bool {
    matches!(
        code,
        StatusCode::InvalidShareSignature
            | StatusCode::InvalidEnvelopeSignature
            | StatusCode::InvalidNamespaceSignature
            | StatusCode::InvalidHandoverSignature
    )
}

/// Most entries of one kind index value that are checked; the rest of a
/// larger value is dropped (an honest index of more is paged by
/// `DiscoverKind` and replicated again by its holders).
pub const MAX_KIND_VALUE_ENTRIES: usize = 256;

/// A value from another node after decoding and the cheap checks.
pub(crate) struct Prechecked {
    /// The namespace of a namespace value (`None`: a kind index).
    pub quorum_key: Option<QuorumKey>,
    /// What the cheap checks decided (and a kind index's counts).
    pub report: MergeReport,
    /// What is left to verify (for a kind index, one per namespace).
    pub checked: Vec<CheckedValue>,
}

/// Decodes a value found under `key` and runs the cheap checks of its
/// merge into `store`: the one place that judges values from other nodes
/// (kad PUTs and GET answers go through [`Server::handle_value`], and
/// kad's own `RecordStore::put` through [`crate::KadStore`]). No
/// signature is checked here.
pub(crate) fn precheck_kad_value(
    store: &mut NamespaceStore,
    now: u64,
    key: &[u8],
    value: &[u8],
) -> Result<Prechecked, ValueError> {
    let key = dht_key(key)?;
    let limits = store.config().limits;
    if let Ok(value) = HandoverValue::decode(value) {
        let quorum_key = value.handover.old_quorum_key;
        if namespace_key(&quorum_key) != key {
            return Err(ValueError::WrongKey);
        }
        let checked = store.precheck_handover_value(value.handover, None, now);
        if checked.report().handover_rejected == Some(StatusCode::QuotaExceeded) {
            return Err(ValueError::Full);
        }
        let (report, checked) = if checked.needs_verification() {
            (MergeReport::default(), vec![checked])
        } else {
            (checked.report().clone(), Vec::new())
        };
        return Ok(Prechecked {
            quorum_key: Some(quorum_key),
            report,
            checked,
        });
    }
    if let Ok(value) = NamespaceValue::decode(value, &limits) {
        let quorum_key = value.namespace.quorum_key();
        if quorum_key.map(|qk| namespace_key(&qk)) != Some(key) {
            return Err(ValueError::WrongKey);
        }
        let checked = store.precheck_value(value, now);
        if checked
            .report()
            .peers_rejected
            .iter()
            .any(|(_, c)| *c == StatusCode::QuotaExceeded)
            || checked.report().namespace_rejected == Some(StatusCode::QuotaExceeded)
        {
            return Err(ValueError::Full);
        }
        let (report, checked) = if checked.needs_verification() {
            (MergeReport::default(), vec![checked])
        } else {
            (checked.report().clone(), Vec::new())
        };
        return Ok(Prechecked {
            quorum_key,
            report,
            checked,
        });
    }
    let value = KindValue::decode(value, &limits).map_err(|_| ValueError::Decode)?;
    let mut report = MergeReport::default();
    // Each namespace check is a pairing: exact copies are checked once
    // and at most MAX_KIND_VALUE_ENTRIES entries per value at all (#13
    // item 1: one PUT of thousands of copies of one junk record held a
    // node's event loop for seconds).
    let total = value.namespaces.len();
    let mut seen: BTreeSet<Vec<u8>> = BTreeSet::new();
    let entries: Vec<NamespaceRecord> = value
        .namespaces
        .into_iter()
        .filter(|ns| seen.insert(ns.encode()))
        .take(MAX_KIND_VALUE_ENTRIES)
        .collect();
    report.kind_entries_dropped = total - entries.len();
    let mut checked = Vec::new();
    for namespace in entries {
        // Each entry must be of the kind the key names.
        let Some(kind) = namespace.kind.clone() else {
            continue;
        };
        if kind_key(&kind) != key {
            continue;
        }
        report.kind_entries_merged += 1;
        let c = store.precheck_value(
            NamespaceValue {
                namespace,
                peers: Vec::new(),
            },
            now,
        );
        if c.needs_verification() {
            checked.push(c);
        }
    }
    Ok(Prechecked {
        quorum_key: None,
        report,
        checked,
    })
}
