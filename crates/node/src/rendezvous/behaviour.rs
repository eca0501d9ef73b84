//! The rendezvous role as one `NetworkBehaviour`: the sans-IO
//! [`dht::Server`] core with Kademlia, `/rdht/rendezvous/2.0.0`
//! (inbound), standard `/rendezvous/1.0.0` DISCOVER (inbound), ping,
//! identify and a block list under it, and its verification threads
//! started by the [`Builder`].
//!
//! The core decides everything (what is queued or refused, when a batch
//! goes to verification, in which order replies go out, what is
//! replicated, persisted, looked up or dialled); this behaviour carries
//! requests and replies, runs the core's verification jobs on the
//! [`crate::verifier`] threads (never on the swarm's task), performs its
//! Kademlia PUTs and GETs, dials, writes the database and keeps the
//! metrics. The `rdht node` binary runs exactly this behaviour
//! ([`super::start`]); an application runs it in its own swarm:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use libp2p::futures::StreamExt;
//! use node::rendezvous;
//!
//! let keypair = libp2p::identity::Keypair::generate_ed25519();
//! let server = rendezvous::Builder::new(keypair.public()).build()?;
//! let mut swarm = node::behaviour::build_swarm_with(
//!     keypair,
//!     &rendezvous::swarm_settings(&dht::StoreConfig::default()),
//!     |_| server,
//! )?;
//! swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
//! loop {
//!     if let libp2p::swarm::SwarmEvent::Behaviour(event) = swarm.select_next_some().await {
//!         println!("{event:?}");
//!     }
//! }
//! # }
//! ```
//!
//! One process runs one role: the server takes every inbound
//! `/rdht/rendezvous/2.0.0` request, so a member behaviour beside it in the
//! same swarm would never see its own.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use dht::{
    AddressPolicy, BlockReason, KadStore, NamespaceStore, NamespaceValue, Output, ReplyId, Server,
    ServerConfig, StoreConfig, VerifyJob,
};
use libp2p::identity::PublicKey;
use libp2p::request_response::{self, ProtocolSupport, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{
    CloseConnection, DialError, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent, ToSwarm,
};
use libp2p::{allow_block_list, identify, kad, ping, Multiaddr, PeerId};
use rendezvous_proto::{QuorumKey, Response, StatusCode};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::behaviour::{kad_config, now_ms, poll_inner, Alarm, IDENTIFY_VERSION, KAD_PROTOCOL};
use crate::codec::{Frame, RdhtCodec, PROTOCOL};
use crate::metrics::Metrics;
use crate::persist::{DbError, RecordDb};
use crate::standard::{self, StandardCodec, STANDARD_PROTOCOL};
use crate::verifier::{run_job, spawn_verifiers, JobResult};

/// Changed namespaces are written to the database at most this often. A
/// write is a redb transaction with an fsync on the swarm's task: one per
/// verified batch (up to a hundred a second under load) would stall
/// discover answers behind the disk. A crash loses at most this much of
/// the registrations, which members renew anyway (and a restarted node
/// asks the others for, [`Server::resync`]); a clean shutdown writes
/// everything.
pub const PERSIST_PERIOD_MS: u64 = 1_000;

/// Rounds of work one `poll` does before it yields (and asks to be polled
/// again at once): a flood of work never holds the swarm's task.
const MAX_ROUNDS_PER_POLL: usize = 64;

/// What the rendezvous behaviour reports to the application. Everything
/// else (replies, replication, liveness) it does on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A registered peer stopped answering its liveness checks and is no
    /// longer listed here (`listed: false`), or answers again and is
    /// listed again (`listed: true`).
    ListingChanged {
        /// The peer.
        peer: PeerId,
        /// Whether it is listed now.
        listed: bool,
    },
    /// A peer sent something that costs it a penalty: its connections are
    /// closed and refused until `until_ms` (Unix milliseconds).
    Penalized {
        /// The peer.
        peer: PeerId,
        /// What it sent.
        reason: BlockReason,
        /// When its connections are accepted again.
        until_ms: u64,
    },
    /// Everything waiting when [`Behaviour::flush`] was called is
    /// verified, applied and handed to the database.
    Flushed,
}

// The derive generates `InnerEvent` without docs.
#[allow(missing_docs)]
mod inner {
    use super::*;

    /// The libp2p behaviours the rendezvous role runs on.
    #[derive(NetworkBehaviour)]
    pub struct Inner {
        /// The DHT, over the validating store that owns the core.
        pub kad: kad::Behaviour<KadStore>,
        /// `/rdht/rendezvous/2.0.0`, inbound: registration and discovery.
        pub rr: request_response::Behaviour<RdhtCodec>,
        /// `/rendezvous/1.0.0`, inbound: stock clients discover quorums.
        pub standard: request_response::Behaviour<StandardCodec>,
        /// Liveness: a pong proves the peer behind an authenticated connection.
        pub ping: ping::Behaviour,
        /// Listen addresses of other rendezvous nodes (fed to Kademlia).
        pub identify: identify::Behaviour,
        /// Peers whose connections are refused for a penalty.
        pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    }
}

use inner::{Inner, InnerEvent};

/// How a rendezvous behaviour is built: the store's configuration, the
/// database, where to join the DHT, the verification threads.
#[derive(Debug)]
pub struct Builder {
    identity: PublicKey,
    store: StoreConfig,
    db: Option<RecordDb>,
    metrics: Arc<Metrics>,
    bootstrap: Vec<(PeerId, Vec<Multiaddr>)>,
    allow_private_addrs: bool,
    verifier_threads: usize,
    request_timeout: Duration,
}

/// Why a rendezvous behaviour could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Its record database could not be read.
    #[error("--data-dir: {0}")]
    Db(#[from] DbError),
}

impl Builder {
    /// A builder for the node whose identity is `identity` (its public
    /// key: identify announces it). Defaults: `StoreConfig::default()`,
    /// no database, no bootstrap, one verification thread per core (at
    /// most 4), liveness dials to the scopes the node listens on.
    pub fn new(identity: PublicKey) -> Self {
        Self {
            identity,
            store: StoreConfig::default(),
            db: None,
            metrics: Metrics::new(),
            bootstrap: Vec::new(),
            allow_private_addrs: false,
            verifier_threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
            request_timeout: Duration::from_secs(10),
        }
    }

    /// The store's configuration (limits, budgets, liveness).
    pub fn store_config(mut self, store: StoreConfig) -> Self {
        self.store = store;
        self
    }

    /// Keeps accepted records in this database: what it holds is loaded at
    /// [`Builder::build`], offered to the other nodes and resynchronized
    /// from them, and the rendezvous peers it remembers are joined again.
    pub fn database(mut self, db: RecordDb) -> Self {
        self.db = Some(db);
        self
    }

    /// The counters `rdht node --metrics` serves.
    pub fn metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Joins the DHT through this rendezvous node (dialled at once).
    pub fn bootstrap(mut self, peer: PeerId, addrs: Vec<Multiaddr>) -> Self {
        self.bootstrap.push((peer, addrs));
        self
    }

    /// Dials private and loopback addresses for liveness checks even when
    /// the node listens on a global address (`--allow-private-addrs`).
    pub fn allow_private_addrs(mut self, allow: bool) -> Self {
        self.allow_private_addrs = allow;
        self
    }

    /// How many verification threads run the core's jobs (at least one).
    pub fn verifier_threads(mut self, threads: usize) -> Self {
        self.verifier_threads = threads.max(1);
        self
    }

    /// How long an inbound request may wait for its answer.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Loads the database (if any) into the store, starts the verification
    /// threads and builds the behaviour.
    pub fn build(self) -> Result<Behaviour, BuildError> {
        let peer_id = self.identity.to_peer_id();
        let mut store = NamespaceStore::new(self.store.clone(), rand::random());
        let mut loaded = Vec::new();
        let mut known_peers = Vec::new();
        if let Some(db) = &self.db {
            known_peers = db.load_peers()?;
            loaded = reload(db, &mut store, &self.store)?;
        }
        let server_config = ServerConfig {
            max_jobs: self.verifier_threads,
            persist_period_ms: if self.db.is_some() {
                PERSIST_PERIOD_MS
            } else {
                0
            },
            ..ServerConfig::default()
        };
        let mut core = Server::new(server_config, store);
        // Offer what was reloaded to the others, and ask them for what this
        // node missed while down (a crash loses the last second of
        // registrations, which members renew only an hour later).
        let now = now_ms();
        for qk in loaded {
            core.republish(qk);
            core.resync(now, qk);
        }
        let mut kad = kad::Behaviour::with_config(
            peer_id,
            KadStore::new(core, Box::new(now_ms)),
            kad_config(),
        );
        // Loopback and test networks never confirm an external address,
        // so server mode must be set explicitly.
        kad.set_mode(Some(kad::Mode::Server));
        let interval = ping_interval(&self.store);
        let inbound = |codec_timeout: Duration| {
            request_response::Config::default()
                .with_request_timeout(codec_timeout)
                .with_max_concurrent_streams(256)
        };
        let inner = Inner {
            kad,
            rr: request_response::Behaviour::with_codec(
                RdhtCodec,
                [(PROTOCOL, ProtocolSupport::Inbound)],
                inbound(self.request_timeout),
            ),
            standard: request_response::Behaviour::with_codec(
                StandardCodec,
                [(STANDARD_PROTOCOL, ProtocolSupport::Inbound)],
                inbound(self.request_timeout),
            ),
            // Twice per interval, so that every window between two due
            // times holds at least one ping of a live peer.
            ping: ping::Behaviour::new(
                ping::Config::new()
                    .with_interval(interval / 2)
                    .with_timeout(interval.max(Duration::from_millis(500))),
            ),
            identify: identify::Behaviour::new(identify::Config::new(
                IDENTIFY_VERSION.to_owned(),
                self.identity.clone(),
            )),
            blocked: allow_block_list::Behaviour::default(),
        };
        let (jobs, verified) = spawn_verifiers(self.verifier_threads);
        let mut behaviour = Behaviour {
            inner,
            db: self.db,
            metrics: self.metrics,
            replies: HashMap::new(),
            standard_replies: HashMap::new(),
            next_reply: 0,
            lookups: HashMap::new(),
            jobs,
            verified,
            alarm: Alarm::default(),
            stats_due_ms: now_ms(),
            stats_counted: None,
            saved_peers: HashMap::new(),
            connections: HashMap::new(),
            listen_addrs: Vec::new(),
            allow_private_addrs: self.allow_private_addrs,
            pending: VecDeque::new(),
            waker: None,
            flush_requested: false,
            verifiers_gone: false,
        };
        // Rendezvous peers this node met before a restart (its database)
        // rejoin it to the DHT as `--bootstrap` would.
        let mut bootstrap = self.bootstrap;
        if !known_peers.is_empty() {
            info!(
                peers = known_peers.len(),
                "rejoining through the rendezvous peers known before"
            );
        }
        for (peer, addrs) in known_peers {
            behaviour.saved_peers.insert(peer, addrs.clone());
            if peer != peer_id {
                bootstrap.push((peer, addrs));
            }
        }
        for (peer, addrs) in &bootstrap {
            for addr in addrs {
                behaviour.inner.kad.add_address(peer, addr.clone());
            }
            // Rendezvous nodes that restart together dial each other.
            let opts = crate::behaviour::dial_from_new_port(
                *peer,
                addrs.clone(),
                PeerCondition::DisconnectedAndNotDialing,
            );
            behaviour.pending.push_back(ToSwarm::Dial { opts });
        }
        if !bootstrap.is_empty() {
            if let Err(e) = behaviour.inner.kad.bootstrap() {
                warn!("bootstrap not started: {e}");
            }
        }
        Ok(behaviour)
    }
}

/// A liveness dial of `peer` (`Output::Dial`, `Output::Reconnect`), from
/// a new local port ([`crate::behaviour::dial_from_new_port`]).
///
/// Not from the listen port (libp2p's default, `PortUse::Reuse`): a
/// member dials this node from its own listen port, so a liveness dial
/// from ours is the very 4-tuple of the member's connection. After a
/// partition the member still holds that connection, dead but
/// ESTABLISHED (its side never saw the close this node sent into the
/// cut), and our SYN for the same 4-tuple is answered with a challenge
/// ACK instead of a SYN-ACK: the connection only comes up after our RST
/// killed the member's socket and a retransmitted SYN, a second or more
/// after the heal (#16; the testbed's `ss` showed r1 in SYN-SENT
/// 10.99.0.1:4001 -> 10.99.0.5:4002 while m2 held 10.99.0.5:4002 <->
/// 10.99.0.1:4001 ESTABLISHED with unacknowledged data). Only a dial
/// already under way stops this one: the core dials only peers it holds
/// no connection to, and one it closed (`Output::Reconnect`) may still
/// be closing in the swarm.
fn liveness_dial(peer: PeerId, addrs: Vec<Multiaddr>) -> DialOpts {
    crate::behaviour::dial_from_new_port(peer, addrs, PeerCondition::NotDialing)
}

/// The liveness interval of `store` (at least 2 ms).
fn ping_interval(store: &StoreConfig) -> Duration {
    Duration::from_millis(store.liveness.ping_interval_ms.max(2))
}

/// The swarm settings a rendezvous node with this store runs best with:
/// a liveness dial into a partition gives up before the next one is due,
/// so that each interval tries anew (a SYN lost at the heal would
/// otherwise wait for TCP's own retransmission, seconds on), and idle
/// connections outlive several intervals.
pub fn swarm_settings(store: &StoreConfig) -> crate::behaviour::SwarmSettings {
    let interval = ping_interval(store);
    crate::behaviour::SwarmSettings {
        kad: true,
        ping_interval: interval / 2,
        ping_timeout: interval.max(Duration::from_millis(500)),
        connection_timeout: (interval * 4 / 5)
            .clamp(Duration::from_secs(1), Duration::from_secs(10)),
        idle_timeout: Duration::from_secs(60).max(interval * 4),
        ..crate::behaviour::SwarmSettings::default()
    }
}

/// Loads every stored namespace and handover into `store`; returns the
/// quorum keys loaded.
fn reload(
    db: &RecordDb,
    store: &mut NamespaceStore,
    config: &StoreConfig,
) -> Result<Vec<QuorumKey>, DbError> {
    let mut loaded = Vec::new();
    let now = now_ms();
    for bytes in db.load_all()? {
        match NamespaceValue::decode(&bytes, &config.limits) {
            Ok(value) => {
                let qk = value.namespace.quorum_key();
                let report = store.merge_value(value, now);
                if let (Some(qk), None) = (qk, report.namespace_rejected) {
                    loaded.push(qk);
                }
            }
            Err(e) => warn!("skipping an undecodable stored value: {e}"),
        }
    }
    // Handovers after namespaces: each retires (drops) its old key's
    // namespace, reloaded or not.
    let mut handovers = 0;
    for bytes in db.load_handovers()? {
        match rendezvous_proto::HandoverRecord::decode(&bytes) {
            Ok(record) => {
                let qk = record.old_quorum_key;
                if store.merge_handover(record, None, now).handover_updated {
                    handovers += 1;
                    loaded.retain(|k| *k != qk);
                    loaded.push(qk);
                }
            }
            Err(e) => warn!("skipping an undecodable stored handover: {e}"),
        }
    }
    info!(
        namespaces = loaded.len() - handovers,
        handovers, "reloaded stored records"
    );
    Ok(loaded)
}

type Channel = ResponseChannel<Frame<Response>>;

/// The rendezvous role (see the module's documentation). Built by
/// [`Builder`].
pub struct Behaviour {
    inner: Inner,
    db: Option<RecordDb>,
    metrics: Arc<Metrics>,
    /// Where the core's replies go.
    replies: HashMap<u64, Channel>,
    /// Where its answers to standard requests that waited for a lookup go.
    standard_replies: HashMap<u64, ResponseChannel<standard::Message>>,
    next_reply: u64,
    /// Kademlia GETs under way, and the namespace each looks up.
    lookups: HashMap<kad::QueryId, QuorumKey>,
    /// To the verification threads.
    jobs: std::sync::mpsc::Sender<VerifyJob>,
    /// From the verification threads.
    verified: mpsc::UnboundedReceiver<JobResult>,
    /// Wakes the behaviour at the core's next deadline (or to refresh the
    /// gauges).
    alarm: Alarm,
    /// The gauges are refreshed at most once a second (counting is
    /// O(records)), and within a second of any change (Unix ms).
    stats_due_ms: u64,
    /// The store's [`NamespaceStore::changes`] when the gauges were last
    /// counted (`None`: not yet): they are stale while it differs.
    stats_counted: Option<u64>,
    /// Rendezvous peers saved to the database, with the addresses saved.
    saved_peers: HashMap<PeerId, Vec<Multiaddr>>,
    /// Open connections per peer (a failed dial to a connected peer is
    /// not a liveness miss).
    connections: HashMap<PeerId, usize>,
    /// Where the swarm listens: the scopes liveness dials may go to.
    listen_addrs: Vec<Multiaddr>,
    allow_private_addrs: bool,
    /// What goes to the swarm next.
    pending: VecDeque<ToSwarm<Event, THandlerInEvent<Inner>>>,
    /// The swarm's task, woken when a method call queues work.
    waker: Option<Waker>,
    /// [`Behaviour::flush`] was called and [`Event::Flushed`] is owed.
    flush_requested: bool,
    /// Every verification thread has stopped: jobs run on the swarm's
    /// task (`Output::Verify`), and the channel is not polled again.
    verifiers_gone: bool,
}

impl std::fmt::Debug for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("rendezvous::Behaviour")
            .field("replies", &self.replies.len())
            .field("lookups", &self.lookups.len())
            .field("connections", &self.connections.len())
            .finish_non_exhaustive()
    }
}

impl Behaviour {
    /// The core (kad owns it through its record store, which only lends
    /// itself mutably).
    fn core(&mut self) -> &mut Server {
        self.inner.kad.store_mut().inner_mut()
    }

    /// The store: what this node holds and answers.
    pub fn store(&mut self) -> &NamespaceStore {
        self.core().store()
    }

    /// The counters `--metrics` serves (shared with the builder's).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The Kademlia behaviour (to add addresses of other rendezvous nodes,
    /// or bootstrap again).
    pub fn kad_mut(&mut self) -> &mut kad::Behaviour<KadStore> {
        &mut self.inner.kad
    }

    /// Sends everything waiting to verification now, rather than when its
    /// batch fills or ages; once every verdict is in and applied, hands
    /// every change to the database and reports [`Event::Flushed`]. What a
    /// clean shutdown, or a question about the state, waits for.
    pub fn flush(&mut self) {
        self.core().flush(now_ms());
        self.pump();
        self.flush_requested = true;
        self.wake();
    }

    /// Whether verification jobs are out (their verdicts come back as the
    /// swarm is polled).
    pub fn is_verifying(&mut self) -> bool {
        self.core().has_jobs()
    }

    /// After [`Behaviour::flush`], once no job is out: writes what the
    /// verdicts changed and reports it.
    fn finish_flush(&mut self) {
        if !self.flush_requested || self.core().has_jobs() {
            return;
        }
        self.flush_requested = false;
        self.core().flush(now_ms());
        self.pump();
        self.pending
            .push_back(ToSwarm::GenerateEvent(Event::Flushed));
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    fn on_job(&mut self, done: Option<JobResult>) {
        let now = now_ms();
        match done {
            Some(Ok(done)) => self.core().handle_verified(now, done),
            Some(Err(id)) => self.core().handle_job_failed(now, id),
            // Every verification thread is gone: nothing will come back.
            None => warn!("the verification threads are gone"),
        }
    }

    /// Acts on everything the core asked for, and refreshes the gauges.
    fn pump(&mut self) {
        while let Some(output) = self.core().poll_output() {
            self.on_output(output);
        }
        self.store_counters();
    }

    fn on_output(&mut self, output: Output) {
        match output {
            Output::Reply { to, response } => self.reply(to, response),
            Output::StandardReply { to, answer } => {
                if let Some(channel) = self.standard_replies.remove(&to.0) {
                    self.standard_reply(channel, answer);
                }
            }
            Output::Verify(job) => {
                if let Err(std::sync::mpsc::SendError(job)) = self.jobs.send(job) {
                    let done = run_job(job, &mut rand::thread_rng());
                    self.on_job(Some(done));
                }
            }
            Output::Replicate { key, value, .. } => {
                // A node that knows no other rendezvous has no one to PUT
                // to: Kademlia's periodic republication covers peers that
                // join later, as it would a failed PUT.
                let kad = &mut self.inner.kad;
                if kad.kbuckets().all(|b| b.num_entries() == 0) {
                    return;
                }
                let record = kad::Record::new(key.to_vec(), value);
                if let Err(e) = kad.put_record(record, kad::Quorum::One) {
                    debug!("replication not started: {e}");
                }
            }
            Output::Lookup { quorum_key, key } => {
                let id = self.inner.kad.get_record(kad::RecordKey::new(&key));
                self.lookups.insert(id, quorum_key);
            }
            Output::LookupDone { quorum_key } => {
                let ids: Vec<kad::QueryId> = self
                    .lookups
                    .iter()
                    .filter(|(_, qk)| **qk == quorum_key)
                    .map(|(id, _)| *id)
                    .collect();
                for id in ids {
                    self.lookups.remove(&id);
                    if let Some(mut query) = self.inner.kad.query_mut(&id) {
                        query.finish();
                    }
                }
            }
            Output::Dial { peer, addrs } => {
                self.pending.push_back(ToSwarm::Dial {
                    opts: liveness_dial(peer, addrs),
                });
            }
            Output::ListingChanged { peer, listed } => {
                if listed {
                    info!(%peer, "peer answers again: listed again here");
                    self.metrics.relisted.fetch_add(1, Ordering::Relaxed);
                } else {
                    info!(%peer, "peer unreachable (ping failed or unanswered): no longer listed here");
                    self.metrics.unlisted.fetch_add(1, Ordering::Relaxed);
                }
                self.pending
                    .push_back(ToSwarm::GenerateEvent(Event::ListingChanged {
                        peer,
                        listed,
                    }));
            }
            Output::Reconnect { peer, addrs } => {
                debug!(%peer, "last ping failed: closing its connections, dialling anew");
                self.pending.push_back(ToSwarm::CloseConnection {
                    peer_id: peer,
                    connection: CloseConnection::All,
                });
                if !addrs.is_empty() {
                    self.pending.push_back(ToSwarm::Dial {
                        opts: liveness_dial(peer, addrs),
                    });
                }
            }
            Output::Merged { from, report, .. } => {
                if report.namespace_rejected.is_some()
                    || report.handover_rejected.is_some()
                    || !report.peers_rejected.is_empty()
                {
                    debug!(?from, ?report, "replicated value partly refused");
                }
            }
            Output::Disconnect {
                peer,
                until_ms,
                reason,
            } => {
                let for_ms = until_ms.saturating_sub(now_ms());
                match reason {
                    BlockReason::InvalidSignature => info!(
                        %peer,
                        "sent an invalid signature: disconnected, its connections refused for {for_ms} ms"
                    ),
                    BlockReason::OverByteBudget => debug!(
                        %peer,
                        "sent values over its byte budget: disconnected, its connections refused for {for_ms} ms"
                    ),
                }
                // Blocking closes its connections and refuses new ones.
                self.inner.blocked.block_peer(peer);
                self.pending
                    .push_back(ToSwarm::GenerateEvent(Event::Penalized {
                        peer,
                        reason,
                        until_ms,
                    }));
            }
            Output::Unblock { peer } => {
                debug!(%peer, "penalty over: connections accepted again");
                self.inner.blocked.unblock_peer(peer);
            }
            Output::Persist(updates) => {
                if let Some(db) = &self.db {
                    if let Err(e) = db.save(&updates) {
                        warn!("saving records: {e}");
                    }
                }
            }
            Output::PersistHandovers(handovers) => {
                if let Some(db) = &self.db {
                    if let Err(e) = db.save_handovers(&handovers) {
                        warn!("saving handovers: {e}");
                    }
                }
            }
        }
    }

    /// Whether something the gauges count changed since they were
    /// counted: any change of the store, whatever made it (a direct
    /// registration counts even on a node with nothing to persist).
    fn stats_stale(&mut self) -> bool {
        let changes = self.store().changes();
        self.stats_counted != Some(changes)
    }

    /// Copies the core's counters into the metrics; the gauges that count
    /// records at most once a second (counting is O(records)), but a
    /// change is never left out of them for longer (the timer wakes the
    /// behaviour for it), so they agree with what discover answers.
    fn store_counters(&mut self) {
        let c = self.core().counters();
        let queued_value_us = self.core().queued_value_us();
        let m = &self.metrics;
        m.value_work_queued_us
            .store(queued_value_us, Ordering::Relaxed);
        for (metric, value) in [
            (&m.pings_due, c.pings_due),
            (&m.replications_merged, c.merges),
            (&m.lookups, c.lookups),
            (&m.lookup_negative_hits, c.negative_hits),
            (&m.lookups_refused, c.lookups_refused),
            (&m.dials_refused, c.dials_refused),
            (&m.dial_addrs_out_of_scope, c.addrs_out_of_scope),
            (&m.dial_addrs_rate_limited, c.addrs_rate_limited),
            (&m.penalties, c.penalties),
            (&m.penalized_requests, c.penalized_requests),
            (&m.values_queued, c.values_queued),
            (&m.values_unchanged, c.values_unchanged),
            (&m.values_penalized, c.values_penalized),
            (&m.values_over_budget, c.values_over_budget),
            (&m.values_busy, c.values_busy),
            (&m.senders_throttled, c.senders_throttled),
            (&m.reconnects, c.reconnects),
            (&m.lookups_timed_out, c.lookups_timed_out),
            (&m.standard_discovers, c.standard_discovers),
            (&m.standard_registers_refused, c.standard_registers_refused),
            (&m.discovers_throttled, c.discovers_throttled),
        ] {
            metric.store(value, Ordering::Relaxed);
        }
        if self.stats_stale() && now_ms() >= self.stats_due_ms {
            self.stats_counted = Some(self.store().changes());
            self.stats_due_ms = now_ms() + 1_000;
            let stats = self.store().stats();
            let m = &self.metrics;
            for (metric, value) in [
                (&m.namespaces, stats.namespaces),
                (&m.peers, stats.peer_records),
                (&m.reachable_peers, stats.reachable_peer_records),
            ] {
                metric.store(value as u64, Ordering::Relaxed);
            }
        }
    }

    fn reply(&mut self, to: ReplyId, response: Response) {
        match &response {
            Response::Rejected(code) => self.metrics.reject(*code),
            Response::Registered { .. } => {
                self.metrics
                    .registrations_accepted
                    .fetch_add(1, Ordering::Relaxed);
            }
            Response::RegisteredPeers(outcomes) => {
                for outcome in outcomes {
                    match outcome {
                        Ok(_) => {
                            self.metrics
                                .registrations_accepted
                                .fetch_add(1, Ordering::Relaxed);
                        }
                        Err(code) => self.metrics.reject(*code),
                    }
                }
            }
            Response::Discovered(_) => {
                self.metrics.discovers.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        let Some(channel) = self.replies.remove(&to.0) else {
            return;
        };
        // The requester may have gone: nothing to do then.
        let _ = self
            .inner
            .rr
            .send_response(channel, Frame::Message(response));
    }

    fn on_inner(&mut self, event: InnerEvent) {
        let now = now_ms();
        match event {
            InnerEvent::Rr(request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            }) => {
                let reply = ReplyId(self.next_reply);
                self.next_reply += 1;
                self.replies.insert(reply.0, channel);
                match request {
                    Frame::Message(r) => self.core().handle_request(now, peer, reply, r),
                    Frame::Malformed(code) => self.core().handle_malformed(reply, code),
                    Frame::Raw(_) => self.core().handle_malformed(reply, StatusCode::Decode),
                }
            }
            InnerEvent::Rr(request_response::Event::InboundFailure { peer, error, .. }) => {
                debug!(%peer, "inbound request failed: {error}")
            }
            InnerEvent::Standard(request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            }) => self.on_standard(now, peer, request, channel),
            InnerEvent::Standard(request_response::Event::InboundFailure {
                peer, error, ..
            }) => debug!(%peer, "inbound /rendezvous/1.0.0 request failed: {error}"),
            InnerEvent::Ping(ping::Event { peer, result, .. }) => match result {
                Ok(_) => {
                    self.core().handle_pong(&peer, now);
                    self.metrics.pongs.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    debug!(%peer, "ping failed: {e}");
                    self.ping_miss(&peer);
                }
            },
            InnerEvent::Identify(identify::Event::Received { peer_id, info, .. })
                if info.protocols.contains(&KAD_PROTOCOL) =>
            {
                for addr in &info.listen_addrs {
                    self.inner.kad.add_address(&peer_id, addr.clone());
                }
                self.save_peer(peer_id, info.listen_addrs);
            }
            InnerEvent::Kad(event) => self.on_kad(now, event),
            _ => {}
        }
    }

    /// A standard `/rendezvous/1.0.0` request: the core answers at once,
    /// or after a lookup (`Output::StandardReply`).
    fn on_standard(
        &mut self,
        now: u64,
        peer: PeerId,
        request: standard::Message,
        channel: ResponseChannel<standard::Message>,
    ) {
        let Some(request) = standard::to_request(request) else {
            debug!(%peer, "a /rendezvous/1.0.0 response sent as a request: dropped");
            return;
        };
        let reply = ReplyId(self.next_reply);
        self.next_reply += 1;
        match self.core().handle_standard(now, peer, reply, request) {
            Some(answer) => self.standard_reply(channel, answer),
            None => {
                self.standard_replies.insert(reply.0, channel);
            }
        }
    }

    fn standard_reply(
        &mut self,
        channel: ResponseChannel<standard::Message>,
        answer: dht::StandardAnswer,
    ) {
        if let Some(message) = standard::to_message(answer) {
            // The requester may have gone: nothing to do then.
            let _ = self.inner.standard.send_response(channel, message);
        }
    }

    /// The core logs the listing change, if any (`Output::ListingChanged`).
    fn ping_miss(&mut self, peer: &PeerId) {
        self.core().handle_ping_miss(peer);
        self.metrics.ping_misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Remembers another rendezvous node in the database (if there is
    /// one and what it says changed), so that a restart rejoins the DHT
    /// through it without `--bootstrap`.
    fn save_peer(&mut self, peer: PeerId, mut addrs: Vec<Multiaddr>) {
        addrs.sort();
        addrs.dedup();
        let Some(db) = &self.db else { return };
        if addrs.is_empty() || self.saved_peers.get(&peer) == Some(&addrs) {
            return;
        }
        if self.saved_peers.len() >= crate::persist::MAX_KNOWN_PEERS
            && !self.saved_peers.contains_key(&peer)
        {
            return;
        }
        match db.save_peer(&peer, &addrs) {
            Ok(()) => {
                self.saved_peers.insert(peer, addrs);
            }
            Err(e) => warn!("saving rendezvous peer {peer}: {e}"),
        }
    }

    fn on_kad(&mut self, now: u64, event: kad::Event) {
        match event {
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::PutRecord {
                        source,
                        record: Some(record),
                        ..
                    },
            } => self.merge(now, &record, Some(source)),
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } => {
                if let kad::QueryResult::GetRecord(Ok(kad::GetRecordOk::FoundRecord(found))) =
                    &result
                {
                    self.merge(now, &found.record, found.peer);
                }
                if let kad::QueryResult::PutRecord(Err(e)) = &result {
                    debug!("replication incomplete: {e}");
                }
                // The core ends a lookup once a value verifies
                // (`Output::LookupDone`); the query's own end answers
                // whatever did.
                if step.last {
                    if let Some(quorum_key) = self.lookups.remove(&id) {
                        self.core().handle_lookup_done(now, quorum_key);
                    }
                }
            }
            _ => {}
        }
    }

    /// A value another node sent or served: the core re-verifies it, on
    /// the verification threads, within `from`'s budget.
    fn merge(&mut self, now: u64, record: &kad::Record, from: Option<PeerId>) {
        if let Err(e) = self
            .core()
            .handle_value(now, from, record.key.as_ref(), &record.value)
        {
            debug!(?from, "replicated value refused: {e}");
        }
    }

    /// Liveness dials go only to the scopes this node is reachable at
    /// itself: no scanning inside the operator's network.
    fn update_dial_policy(&mut self) {
        let policy = AddressPolicy::for_listen_addrs(&self.listen_addrs, self.allow_private_addrs);
        info!(
            private = policy.private,
            loopback = policy.loopback,
            "liveness dials: global addresses{}",
            match (policy.private, policy.loopback) {
                (true, true) => ", private and loopback ones",
                (true, false) => " and private ones",
                _ => " only",
            }
        );
        self.core().set_dial_policy(policy);
    }

    /// Arms the alarm for the core's next deadline and the gauges'
    /// refresh; true if it fired (the caller runs the core's timeouts).
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> bool {
        let mut at = self.core().poll_timeout();
        if self.stats_stale() {
            at = Some(at.map_or(self.stats_due_ms, |a| a.min(self.stats_due_ms)));
        }
        self.alarm.poll(cx, at)
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = THandler<Inner>;
    type ToSwarm = Event;

    crate::behaviour::delegate_connections!(inner);

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.inner.on_swarm_event(event);
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                *self.connections.entry(e.peer_id).or_default() += 1;
                self.core().handle_connected(e.peer_id);
            }
            FromSwarm::ConnectionClosed(e) => {
                if e.remaining_established == 0 {
                    self.connections.remove(&e.peer_id);
                    self.core().handle_disconnected(&e.peer_id);
                } else if let Some(n) = self.connections.get_mut(&e.peer_id) {
                    *n = n.saturating_sub(1);
                }
            }
            // A dial that really went out and failed (not one the swarm
            // skipped because another is under way) to a peer this node
            // holds no connection to: a liveness miss.
            FromSwarm::DialFailure(e) => {
                let attempted = matches!(
                    e.error,
                    DialError::Transport(_)
                        | DialError::WrongPeerId { .. }
                        | DialError::Aborted
                        | DialError::LocalPeerId { .. }
                );
                if let Some(peer) = e.peer_id {
                    if attempted && !self.connections.contains_key(&peer) {
                        debug!(%peer, "dial failed: {}", e.error);
                        self.ping_miss(&peer);
                    }
                }
            }
            FromSwarm::NewListenAddr(e) if !self.listen_addrs.contains(e.addr) => {
                self.listen_addrs.push(e.addr.clone());
                self.update_dial_policy();
            }
            FromSwarm::ExpiredListenAddr(e) => {
                self.listen_addrs.retain(|a| a != e.addr);
                self.update_dial_policy();
            }
            _ => {}
        }
        self.wake();
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Event, THandlerInEvent<Self>>> {
        self.waker = Some(cx.waker().clone());
        for _ in 0..MAX_ROUNDS_PER_POLL {
            if let Some(action) = self.pending.pop_front() {
                return Poll::Ready(action);
            }
            // Verdicts first: they free job slots for what waits.
            let mut progressed = false;
            while !self.verifiers_gone {
                match self.verified.poll_recv(cx) {
                    Poll::Ready(done) => {
                        self.verifiers_gone = done.is_none();
                        self.on_job(done);
                        progressed = true;
                    }
                    Poll::Pending => break,
                }
            }
            // Take everything the sub-behaviours have ready before acting
            // on the core's outputs, so that registrations that arrived
            // together are verified as one batch.
            let (events, polled) = poll_inner(&mut self.inner, cx, &mut self.pending);
            progressed |= polled;
            for event in events {
                self.on_inner(event);
            }
            if self.poll_timer(cx) {
                self.core().handle_timeout(now_ms());
                progressed = true;
            }
            self.pump();
            self.finish_flush();
            if !progressed && self.pending.is_empty() {
                // Re-arm the timer for the deadlines `pump` may have set.
                if self.poll_timer(cx) {
                    self.core().handle_timeout(now_ms());
                    continue;
                }
                return Poll::Pending;
            }
        }
        // Still busy: let the swarm's other work (and the executor's
        // other tasks) run, and come back at once.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swarm_settings_follow_the_liveness_interval() {
        let mut store = StoreConfig::default();
        store.liveness.ping_interval_ms = 2_000;
        let s = swarm_settings(&store);
        assert_eq!(s.ping_interval, Duration::from_secs(1));
        assert_eq!(s.connection_timeout, Duration::from_millis(1_600));
        assert!(s.kad);
    }
}
