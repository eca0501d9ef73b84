//! The rendezvous node's driver: owns the swarm, hands every request, ping
//! outcome and replicated value to the [`NamespaceStore`], and sends what
//! comes back.
//!
//! - Peer registrations (`RegisterPeer`, and the several records of a
//!   `RegisterPeers`) are verified in batches off the event loop: the store
//!   runs the cheap checks and quotas ([`NamespaceStore::precheck_peers`],
//!   no curve arithmetic), one of the verification threads (one per core)
//!   decodes the signatures and runs one safe batch verification on its
//!   own core ([`rendezvous_proto::verify_batch`], bisecting so one bad
//!   signature never fails the others), and the store applies the verdicts
//!   ([`NamespaceStore::apply_peers`]) in submission order. A batch goes
//!   out once it holds 32 records or its oldest has waited 2 ms, at most
//!   one per verification thread at a time; whatever arrives meanwhile
//!   forms the next, so batches grow with the load (up to 64 records, 30-40
//!   ms of one core) and the event loop keeps answering discovers.
//! - Expiry and due pings come from [`NamespaceStore::poll_timeout`]; a due
//!   peer that is not connected is dialled (by PeerId and its record's
//!   addresses), and the ping protocol pings every connection twice per
//!   interval, so an alive peer answers within every ping window. A pong
//!   from the PeerId is [`NamespaceStore::handle_pong`]; a failed ping or a
//!   failed dial is [`NamespaceStore::handle_ping_miss`]; a ping still
//!   unanswered at the next due time counts as a miss in the store itself.
//! - Accepted changes are replicated with a Kademlia PUT of the namespace's
//!   value to the closest rendezvous nodes; inbound PUTs (FilterBoth) are
//!   merged through the store, which re-verifies everything. A discover for
//!   a namespace this node does not hold falls back to a Kademlia GET.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use dht::{
    namespace_key, CheckedPeer, KadStore, NamespaceStore, NamespaceValue, PeerRegistration,
    StoreConfig,
};
use libp2p::futures::{FutureExt, StreamExt};
use libp2p::identity::Keypair;
use libp2p::kad::{self, store::RecordStore};
use libp2p::request_response::{self, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, ping, Multiaddr, PeerId, Swarm};
use rendezvous_proto::{
    Limits, PendingPeer, QuorumKey, RegisterOutcome, Request, Response, StatusCode,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::behaviour::{
    build_swarm, now_ms, split_p2p, Behaviour, BehaviourEvent, SwarmSettings, KAD_PROTOCOL,
};
use crate::codec::Frame;
use crate::metrics::Metrics;
use crate::persist::RecordDb;

/// Everything a rendezvous node is configured with.
#[derive(Debug, Clone)]
pub struct RendezvousConfig {
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Other rendezvous nodes to join (with `/p2p/<id>`).
    pub bootstrap: Vec<Multiaddr>,
    /// Keep accepted records in an embedded database here.
    pub data_dir: Option<PathBuf>,
    /// Store configuration (its liveness part is what `--ping-interval`
    /// and `--ping-misses` set).
    pub store: StoreConfig,
    /// Counters for `--metrics`.
    pub metrics: Arc<Metrics>,
}

impl Default for RendezvousConfig {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            bootstrap: Vec::new(),
            data_dir: None,
            store: StoreConfig::default(),
            metrics: Metrics::new(),
        }
    }
}

/// Questions a test or the CLI can ask a running node.
#[derive(Debug)]
enum Command {
    Fingerprint(oneshot::Sender<Vec<u8>>),
    Stats(oneshot::Sender<dht::StoreStats>),
    Shutdown,
}

/// A running rendezvous node.
#[derive(Debug)]
pub struct RendezvousHandle {
    /// Its PeerId.
    pub peer_id: PeerId,
    /// Where it listens (resolved, without `/p2p`).
    pub listen_addrs: Vec<Multiaddr>,
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

impl RendezvousHandle {
    /// The first listen address with `/p2p/<id>` appended: what
    /// `--bootstrap` and `--rendezvous` take.
    pub fn addr(&self) -> Multiaddr {
        let base = self
            .listen_addrs
            .first()
            .cloned()
            .unwrap_or_else(Multiaddr::empty);
        base.with(libp2p::multiaddr::Protocol::P2p(self.peer_id))
    }

    /// A canonical dump of the store (equal dumps, equal state).
    pub async fn fingerprint(&self) -> Option<Vec<u8>> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Fingerprint(tx)).await.ok()?;
        rx.await.ok()
    }

    /// The store's counts.
    pub async fn stats(&self) -> Option<dht::StoreStats> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Stats(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Stops the node cleanly (database flushed) and waits for it.
    pub async fn shutdown(self) {
        let _ = self.commands.send(Command::Shutdown).await;
        let _ = self.task.await;
    }

    /// Kills the node at once, as a crash would (connections drop).
    pub fn kill(&self) {
        self.task.abort();
    }

    /// Waits until the node stops.
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// Why a node could not start.
pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// Listens on every address and waits until each listener reports its
/// resolved address (ports of `/tcp/0` are known afterwards).
pub async fn listen_all(
    swarm: &mut Swarm<Behaviour>,
    addrs: &[Multiaddr],
) -> Result<Vec<Multiaddr>, StartError> {
    let mut pending = std::collections::HashSet::new();
    for addr in addrs {
        pending.insert(swarm.listen_on(addr.clone())?);
    }
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !pending.is_empty() {
        let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .map_err(|_| "timed out waiting for listen addresses")?;
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                pending.remove(&listener_id);
                out.push(address);
            }
            SwarmEvent::ListenerError { error, .. } => return Err(Box::new(error)),
            SwarmEvent::ListenerClosed {
                reason: Err(error), ..
            } => return Err(Box::new(error)),
            _ => {}
        }
    }
    // Listeners on 0.0.0.0 report one address per interface; take what is
    // already there without waiting.
    while let Some(Some(SwarmEvent::NewListenAddr { address, .. })) = swarm.next().now_or_never() {
        out.push(address);
    }
    Ok(out)
}

/// Starts a rendezvous node as a tokio task.
pub async fn start(
    keypair: Keypair,
    config: RendezvousConfig,
) -> Result<RendezvousHandle, StartError> {
    let peer_id = keypair.public().to_peer_id();
    let mut store = NamespaceStore::new(config.store.clone(), rand::random());
    let db = match &config.data_dir {
        Some(dir) => Some(RecordDb::open(dir)?),
        None => None,
    };
    let mut loaded = BTreeSet::new();
    if let Some(db) = &db {
        let now = now_ms();
        for bytes in db.load_all()? {
            match NamespaceValue::decode(&bytes, &config.store.limits) {
                Ok(value) => {
                    let qk = value.namespace.quorum_key();
                    let report = store.merge_value(value, now);
                    if let (Some(qk), None) = (qk, report.namespace_rejected) {
                        loaded.insert(qk);
                    }
                }
                Err(e) => warn!("skipping an undecodable stored value: {e}"),
            }
        }
        info!(namespaces = loaded.len(), "reloaded stored records");
    }
    let interval = Duration::from_millis(config.store.liveness.ping_interval_ms.max(2));
    let settings = SwarmSettings {
        kad: true,
        // Twice per interval, so that every window between two due times
        // holds at least one ping of a live peer.
        ping_interval: interval / 2,
        ping_timeout: interval.max(Duration::from_millis(500)),
        idle_timeout: Duration::from_secs(60).max(interval * 4),
        ..SwarmSettings::default()
    };
    let kad_store = KadStore::new(store, Box::new(now_ms));
    let mut swarm = build_swarm(keypair, &settings, Some(kad_store))?;
    let listen_addrs = listen_all(&mut swarm, &config.listen).await?;
    for addr in &listen_addrs {
        info!(%peer_id, "rendezvous listening on {addr}/p2p/{peer_id}");
    }
    let bootstrapping = !config.bootstrap.is_empty();
    for addr in &config.bootstrap {
        let Some((peer, base)) = split_p2p(addr) else {
            warn!("--bootstrap {addr} has no /p2p/<peer id>; skipped");
            continue;
        };
        if let Some(kad) = swarm.behaviour_mut().kad.as_mut() {
            kad.add_address(&peer, base);
        }
        if let Err(e) = swarm.dial(addr.clone()) {
            warn!("dialing bootstrap node {addr}: {e}");
        }
    }
    if bootstrapping {
        if let Some(kad) = swarm.behaviour_mut().kad.as_mut() {
            let _ = kad.bootstrap();
        }
    }
    let (tx, rx) = mpsc::channel(16);
    let depth = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let (jobs, verified) = spawn_verifiers(depth);
    let server = Server {
        swarm,
        db,
        metrics: config.metrics.clone(),
        replicate: loaded.clone(),
        persist: BTreeSet::new(),
        pending_gets: HashMap::new(),
        batch: Vec::new(),
        multi: HashMap::new(),
        next_multi: 0,
        jobs,
        verified,
        in_flight: std::collections::VecDeque::new(),
        finished: std::collections::BTreeMap::new(),
        next_job: 0,
        depth,
        queued_since: None,
        queued_by_peer: HashMap::new(),
        next_replication: std::time::Instant::now(),
        next_persist: std::time::Instant::now(),
        stats_dirty: true,
        last_stats: std::time::Instant::now() - Duration::from_secs(2),
    };
    let task = tokio::spawn(server.run(rx));
    Ok(RendezvousHandle {
        peer_id,
        listen_addrs,
        commands: tx,
        task,
    })
}

type Channel = ResponseChannel<Frame<Response>>;

/// A discover waiting for a Kademlia GET.
struct PendingDiscover {
    channel: Channel,
    quorum_key: QuorumKey,
    limit: u32,
}

/// Where the outcome of one peer registration goes, and who sent it.
enum ReplyTo {
    /// A `RegisterPeer`: its own response.
    One(Channel, PeerId),
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
    channel: Channel,
    outcomes: Vec<Option<RegisterOutcome>>,
    remaining: usize,
}

/// Most peer registrations waiting for verification; beyond it new ones
/// are refused at once (`QuotaExceeded`) instead of queueing.
const MAX_QUEUED_REGISTRATIONS: usize = 16_384;

/// Most peer registrations one connection's PeerId may have waiting or
/// being verified (four full `RegisterPeers`): one sender cannot fill the
/// queue that every other sender shares.
const MAX_QUEUED_PER_PEER: usize = 1_024;

/// Changed namespaces are PUT to replicas at most this often (a burst of
/// registrations to one namespace makes one PUT, not one per batch).
const REPLICATION_PERIOD: Duration = Duration::from_millis(200);

/// Changed namespaces are written to the database at most this often. A
/// write is a redb transaction with an fsync on the event loop: one per
/// verified batch (up to a hundred a second under load) would stall
/// discover answers behind the disk. A crash loses at most this much of
/// the registrations, which members renew anyway; a clean shutdown writes
/// everything.
const PERSIST_PERIOD: Duration = Duration::from_secs(1);

/// A batch is handed to verification once it holds this many records, or
/// once its oldest record has waited [`MAX_BATCH_WAIT`]: small batches
/// waste the fixed cost of a batch check (a final exponentiation, thread
/// hand-offs), which a burst of arrivals can share.
const MIN_BATCH: usize = 32;

/// See [`MIN_BATCH`].
const MAX_BATCH_WAIT: Duration = Duration::from_millis(2);

/// Most records in one verification job (a longer queue makes several, for
/// several threads). One job runs on one core: 64 records are 30-40 ms of
/// pairings here, and the final exponentiation amortized over them is
/// under 2% of the job.
const MAX_BATCH: usize = 64;

/// A batch of checked registrations for the verification threads.
struct VerifyJob {
    id: u64,
    checked: Vec<CheckedPeer>,
    now_ms: u64,
    limits: Limits,
}

/// A verified batch: one verdict per checked registration, in order.
struct VerifyDone {
    id: u64,
    checked: Vec<CheckedPeer>,
    verdicts: Vec<Result<(), StatusCode>>,
}

/// Starts `threads` verification threads: each takes checked batches,
/// decodes the signatures and verifies the batch with one safe batch check
/// on its own core, and sends the verdicts back. One thread per core keeps
/// every core busy without a second pool underneath (the batch verifier
/// runs on the calling thread). They stop when the server drops its end.
fn spawn_verifiers(
    threads: usize,
) -> (
    std::sync::mpsc::Sender<VerifyJob>,
    mpsc::UnboundedReceiver<VerifyDone>,
) {
    let (job_tx, job_rx) = std::sync::mpsc::channel::<VerifyJob>();
    let job_rx = Arc::new(std::sync::Mutex::new(job_rx));
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    for _ in 0..threads.max(1) {
        let job_rx = job_rx.clone();
        let done_tx = done_tx.clone();
        let spawned = std::thread::Builder::new()
            .name("rdht-verify".into())
            .spawn(move || {
                use rand::SeedableRng;
                let mut rng = rand::rngs::StdRng::from_entropy();
                lower_priority_of_this_thread();
                loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => break,
                    };
                    let Ok(job) = job else { break };
                    if done_tx.send(verify_job(job, &mut rng)).is_err() {
                        break;
                    }
                }
            });
        if let Err(e) = spawned {
            // With none at all, the server verifies on its own task (see
            // `Server::submit`).
            warn!("no verification thread: {e}");
        }
    }
    (job_tx, done_rx)
}

/// Verification is throughput work; the event loop (discover answers,
/// pings) is latency work. The verification threads therefore run at the
/// lowest priority (`SCHED_IDLE`, or nice 10 where `chrt` fails): when the
/// cores are saturated by pairings, a thread of the event loop that wakes
/// up gets a core at once (and [`Yielder`] covers the case where it was
/// preempted instead). Linux only (a thread is a process for `chrt` and
/// `renice`); elsewhere, or without either, this does nothing.
fn lower_priority_of_this_thread() {
    let Ok(link) = std::fs::read_link("/proc/thread-self") else {
        return;
    };
    let Some(tid) = link.file_name().and_then(|t| t.to_str()) else {
        return;
    };
    let run = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    // SCHED_IDLE: runs only when no ordinary thread wants the core, and is
    // preempted at once when one wakes up; nice 10 is the fallback.
    if !run("chrt", &["--idle", "-p", "0", tid]) && !run("renice", &["-n", "10", "-p", tid]) {
        debug!("verification thread keeps its priority");
    }
}

/// Most time a verification thread computes without giving its core up.
const YIELD_EVERY: Duration = Duration::from_micros(200);

/// Gives the core up (`sched_yield`) at the verification's checkpoints,
/// at most every [`YIELD_EVERY`].
///
/// Why, although the verification threads are `SCHED_IDLE`: Linux's EEVDF
/// scheduler preempts an idle-policy thread at once when an ordinary one
/// *wakes up*, but when an ordinary thread is preempted by another (a
/// tokio worker by the thread it just woke, say) and becomes runnable
/// again, it has just run more than its share and is "not eligible", so
/// the scheduler may hand the core to the idle-policy thread until the
/// next tick: 4 ms at `HZ=250`. Measured with `perf sched` under
/// `rdht bench`, 1% of such waits took over 1 ms (up to 5.2 ms), which
/// was the discover p99. A yield is a scheduling point where the waiting
/// thread, eligible again by then, wins at once.
struct Yielder {
    last: std::time::Instant,
}

impl Yielder {
    fn new() -> Self {
        Self {
            last: std::time::Instant::now(),
        }
    }

    fn checkpoint(&mut self) {
        if self.last.elapsed() >= YIELD_EVERY {
            std::thread::yield_now();
            self.last = std::time::Instant::now();
        }
    }
}

/// Prepares (signature decoding: tens of microseconds each) and verifies
/// one batch, on this thread, giving the core up at short intervals (see
/// [`Yielder`]).
fn verify_job<R: rand_core::RngCore>(job: VerifyJob, rng: &mut R) -> VerifyDone {
    let VerifyJob {
        id,
        checked,
        now_ms,
        limits,
    } = job;
    let mut yielder = Yielder::new();
    let prepared: Vec<Result<PendingPeer, StatusCode>> = checked
        .iter()
        .map(|c| {
            let p = c.prepare(now_ms, &limits);
            yielder.checkpoint();
            p
        })
        .collect();
    let mut pending = Vec::with_capacity(prepared.len());
    let mut verdicts: Vec<Result<(), StatusCode>> = Vec::with_capacity(prepared.len());
    let mut positions = Vec::with_capacity(prepared.len());
    for (i, p) in prepared.into_iter().enumerate() {
        match p {
            Ok(p) => {
                pending.push(p);
                positions.push(i);
                verdicts.push(Ok(()));
            }
            Err(code) => verdicts.push(Err(code)),
        }
    }
    let results = rendezvous_proto::verify_batch_with(&pending, rng, &mut || yielder.checkpoint());
    for (i, r) in positions.into_iter().zip(results) {
        if let Some(slot) = verdicts.get_mut(i) {
            *slot = r;
        }
    }
    VerifyDone {
        id,
        checked,
        verdicts,
    }
}

struct Server {
    swarm: Swarm<Behaviour>,
    db: Option<RecordDb>,
    metrics: Arc<Metrics>,
    /// Namespaces changed by a direct registration: to PUT to replicas.
    replicate: BTreeSet<QuorumKey>,
    /// Namespaces changed in any way: to write to the database.
    persist: BTreeSet<QuorumKey>,
    pending_gets: HashMap<kad::QueryId, Vec<PendingDiscover>>,
    /// Registrations waiting for the next verification batch.
    batch: Vec<(PeerRegistration, ReplyTo)>,
    /// `RegisterPeers` requests with records still being verified.
    multi: HashMap<u64, MultiReply>,
    next_multi: u64,
    /// To the verification thread.
    jobs: std::sync::mpsc::Sender<VerifyJob>,
    /// From the verification thread.
    verified: mpsc::UnboundedReceiver<VerifyDone>,
    /// Batches being verified, oldest first, and where their outcomes go.
    in_flight: std::collections::VecDeque<(u64, Vec<ReplyTo>)>,
    /// Verified batches waiting for the older ones (applied in order).
    finished: std::collections::BTreeMap<u64, VerifyDone>,
    next_job: u64,
    /// Most batches verified at once (one per verification thread).
    depth: usize,
    /// When the oldest registration in `batch` arrived.
    queued_since: Option<std::time::Instant>,
    /// Registrations waiting or being verified, per sender.
    queued_by_peer: HashMap<PeerId, usize>,
    /// No replication PUTs before this.
    next_replication: std::time::Instant,
    /// No database write before this.
    next_persist: std::time::Instant,
    stats_dirty: bool,
    last_stats: std::time::Instant,
}

fn store_mut(swarm: &mut Swarm<Behaviour>) -> Option<&mut NamespaceStore> {
    swarm
        .behaviour_mut()
        .kad
        .as_mut()
        .map(|k| k.store_mut().inner_mut())
}

impl Server {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        loop {
            let now = now_ms();
            let wake = store_mut(&mut self.swarm).and_then(|s| s.poll_timeout());
            let mut sleep = wake.map_or(Duration::from_secs(3600), |at| {
                Duration::from_millis(at.saturating_sub(now))
            });
            if !self.replicate.is_empty() {
                sleep = sleep.min(
                    self.next_replication
                        .saturating_duration_since(std::time::Instant::now()),
                );
            }
            if !self.persist.is_empty() {
                sleep = sleep.min(
                    self.next_persist
                        .saturating_duration_since(std::time::Instant::now()),
                );
            }
            if let Some(since) = self.queued_since {
                if self.in_flight.len() < self.depth {
                    sleep = sleep.min(
                        (since + MAX_BATCH_WAIT)
                            .saturating_duration_since(std::time::Instant::now()),
                    );
                }
            }
            tokio::select! {
                event = self.swarm.select_next_some() => {
                    self.on_event(event);
                    // Take whatever else is ready, so registrations that
                    // arrived together are verified as one batch.
                    for _ in 0..256 {
                        match self.swarm.next().now_or_never() {
                            Some(Some(event)) => self.on_event(event),
                            _ => break,
                        }
                    }
                }
                done = self.verified.recv(), if !self.in_flight.is_empty() => match done {
                    Some(done) => self.on_verified(done),
                    None => self.abandon_in_flight(),
                },
                _ = tokio::time::sleep(sleep) => self.on_timer(),
                command = commands.recv() => match command {
                    None | Some(Command::Shutdown) => {
                        self.drain().await;
                        self.next_replication = std::time::Instant::now();
                        self.next_persist = std::time::Instant::now();
                        self.flush();
                        info!("rendezvous node stopped");
                        return;
                    }
                    Some(Command::Fingerprint(reply)) => {
                        self.drain().await;
                        self.flush();
                        let fp = store_mut(&mut self.swarm).map(|s| s.fingerprint()).unwrap_or_default();
                        let _ = reply.send(fp);
                    }
                    Some(Command::Stats(reply)) => {
                        self.drain().await;
                        self.flush();
                        if let Some(s) = store_mut(&mut self.swarm) {
                            let _ = reply.send(s.stats());
                        }
                    }
                },
            }
            self.flush();
        }
    }

    fn respond(&mut self, channel: Channel, response: Response) {
        if let Response::Rejected(code) = &response {
            self.metrics.reject(*code);
        }
        // The requester may have gone: nothing to do then.
        let _ = self
            .swarm
            .behaviour_mut()
            .rr
            .send_response(channel, Frame::Message(response));
    }

    fn on_timer(&mut self) {
        let now = now_ms();
        let Some(store) = store_mut(&mut self.swarm) else {
            return;
        };
        store.expire(now);
        let due = store.due_pings(now);
        self.stats_dirty = true;
        for target in due {
            self.metrics.pings_due.fetch_add(1, Ordering::Relaxed);
            if self.swarm.is_connected(&target.peer_id) {
                // The ping protocol pings open connections on its own.
                continue;
            }
            let opts = DialOpts::peer_id(target.peer_id)
                .addresses(target.addrs)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                debug!(peer = %target.peer_id, "ping dial not started: {e}");
            }
        }
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Rr(request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            })) => self.on_request(peer, request, channel),
            SwarmEvent::Behaviour(BehaviourEvent::Rr(
                request_response::Event::InboundFailure { peer, error, .. },
            )) => debug!(%peer, "inbound request failed: {error}"),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event { peer, result, .. })) => {
                let now = now_ms();
                let Some(store) = store_mut(&mut self.swarm) else {
                    return;
                };
                match result {
                    Ok(_) => {
                        store.handle_pong(&peer, now);
                        self.metrics.pongs.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        debug!(%peer, "ping failed: {e}");
                        if store.handle_ping_miss(&peer) {
                            info!(%peer, "peer unreachable: no longer listed here");
                        }
                        self.metrics.ping_misses.fetch_add(1, Ordering::Relaxed);
                    }
                }
                self.stats_dirty = true;
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } => {
                if self.swarm.is_connected(&peer) {
                    return;
                }
                let Some(store) = store_mut(&mut self.swarm) else {
                    return;
                };
                debug!(%peer, "dial failed: {error}");
                if store.handle_ping_miss(&peer) {
                    info!(%peer, "peer unreachable: no longer listed here");
                }
                self.metrics.ping_misses.fetch_add(1, Ordering::Relaxed);
                self.stats_dirty = true;
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) if info.protocols.contains(&KAD_PROTOCOL) => {
                if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
                    for addr in info.listen_addrs {
                        kad.add_address(&peer_id, addr);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.on_kad(event),
            _ => {}
        }
    }

    fn on_kad(&mut self, event: kad::Event) {
        match event {
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::PutRecord {
                        source,
                        record: Some(record),
                        ..
                    },
            } => {
                self.merge_record(&record, Some(source));
            }
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } => {
                if let kad::QueryResult::GetRecord(Ok(kad::GetRecordOk::FoundRecord(found))) =
                    &result
                {
                    self.merge_record(&found.record, found.peer);
                }
                if let kad::QueryResult::PutRecord(Err(e)) = &result {
                    debug!("replication incomplete: {e}");
                }
                let done = step.last
                    || matches!(
                        result,
                        kad::QueryResult::GetRecord(Ok(kad::GetRecordOk::FoundRecord(_)))
                    );
                if done {
                    if let Some(waiting) = self.pending_gets.remove(&id) {
                        if let Some(mut q) = self
                            .swarm
                            .behaviour_mut()
                            .kad
                            .as_mut()
                            .and_then(|k| k.query_mut(&id))
                        {
                            q.finish();
                        }
                        for w in waiting {
                            self.answer_discover(w.channel, w.quorum_key, w.limit);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// Merges a value another node sent or served: the store re-verifies
    /// every record in it.
    fn merge_record(&mut self, record: &kad::Record, from: Option<PeerId>) {
        let now = now_ms();
        let Some(limits) = store_mut(&mut self.swarm).map(|s| s.config().limits) else {
            return;
        };
        let Ok(value) = NamespaceValue::decode(&record.value, &limits) else {
            // Kind indexes (and garbage): the store's own `put` merges the
            // former and refuses the latter.
            if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
                let _ = kad.store_mut().put(record.clone());
            }
            return;
        };
        let Some(store) = store_mut(&mut self.swarm) else {
            return;
        };
        let Some(qk) = value.namespace.quorum_key() else {
            return;
        };
        if record.key.as_ref() != namespace_key(&qk).as_slice() {
            debug!(?from, "refused a value stored under another key");
            return;
        }
        let report = store.merge_value(value, now);
        if report.namespace_updated || report.peers_stored > 0 {
            self.metrics
                .replications_merged
                .fetch_add(1, Ordering::Relaxed);
            self.persist.insert(qk);
            self.stats_dirty = true;
        }
        if report.namespace_rejected.is_some() || !report.peers_rejected.is_empty() {
            debug!(?from, ?report, "replicated value partly refused");
        }
    }

    fn answer_discover(&mut self, channel: Channel, quorum_key: QuorumKey, limit: u32) {
        let now = now_ms();
        let Some(store) = store_mut(&mut self.swarm) else {
            return;
        };
        let response = match store.discover(&quorum_key, limit, None, now) {
            Ok(answer) => Response::Discovered(answer),
            Err(code) => Response::Rejected(code),
        };
        self.metrics.discovers.fetch_add(1, Ordering::Relaxed);
        self.respond(channel, response);
    }

    fn on_request(&mut self, peer: PeerId, frame: Frame<Request>, channel: Channel) {
        let request = match frame {
            Frame::Message(r) => r,
            Frame::Malformed(code) => return self.respond(channel, Response::Rejected(code)),
            Frame::Raw(_) => return self.respond(channel, Response::Rejected(StatusCode::Decode)),
        };
        let now = now_ms();
        let Some(store) = store_mut(&mut self.swarm) else {
            return self.respond(channel, Response::Rejected(StatusCode::Internal));
        };
        let response = match request {
            Request::RegisterPeer(record) => {
                if !self.may_queue(&peer, 1) {
                    return self.respond(channel, Response::Rejected(StatusCode::QuotaExceeded));
                }
                *self.queued_by_peer.entry(peer).or_insert(0) += 1;
                self.queued_since
                    .get_or_insert_with(std::time::Instant::now);
                self.batch.push((
                    PeerRegistration {
                        record,
                        remote: Some(peer),
                    },
                    ReplyTo::One(channel, peer),
                ));
                return;
            }
            Request::RegisterPeers(records) => {
                // Each record is judged as a `RegisterPeer` over this
                // connection would be, PeerId binding included.
                if !self.may_queue(&peer, records.len()) {
                    let outcomes = vec![Err(StatusCode::QuotaExceeded); records.len()];
                    for _ in &outcomes {
                        self.metrics.reject(StatusCode::QuotaExceeded);
                    }
                    return self.respond(channel, Response::RegisteredPeers(outcomes));
                }
                let request = self.next_multi;
                self.next_multi += 1;
                self.queued_since
                    .get_or_insert_with(std::time::Instant::now);
                *self.queued_by_peer.entry(peer).or_insert(0) += records.len();
                self.multi.insert(
                    request,
                    MultiReply {
                        channel,
                        outcomes: vec![None; records.len()],
                        remaining: records.len(),
                    },
                );
                for (position, record) in records.into_iter().enumerate() {
                    self.batch.push((
                        PeerRegistration {
                            record,
                            remote: Some(peer),
                        },
                        ReplyTo::Part {
                            request,
                            position,
                            peer,
                        },
                    ));
                }
                return;
            }
            Request::RegisterNamespace(record) => {
                let qk = record.quorum_key();
                match store.register_namespace(record, Some(peer), now) {
                    Ok(ttl_ms) => {
                        self.metrics
                            .registrations_accepted
                            .fetch_add(1, Ordering::Relaxed);
                        if let Some(qk) = qk {
                            info!(%peer, quorum_key = %qk, "namespace registered");
                            self.replicate.insert(qk);
                            self.persist.insert(qk);
                        }
                        self.stats_dirty = true;
                        Response::Registered { ttl_ms }
                    }
                    Err(code) => {
                        info!(%peer, %code, "namespace registration refused");
                        Response::Rejected(code)
                    }
                }
            }
            Request::Unregister { quorum_key, index } => {
                match store.unregister(&quorum_key, index, &peer, now) {
                    Ok(()) => {
                        self.persist.insert(quorum_key);
                        self.stats_dirty = true;
                        Response::Unregistered
                    }
                    Err(code) => Response::Rejected(code),
                }
            }
            Request::Discover {
                quorum_key,
                limit,
                cookie,
            } => match store.discover(&quorum_key, limit, cookie.as_ref(), now) {
                Ok(answer) => {
                    self.metrics.discovers.fetch_add(1, Ordering::Relaxed);
                    Response::Discovered(answer)
                }
                Err(StatusCode::UnknownNamespace) if cookie.is_none() => {
                    // Not held here: ask the DHT, then answer from what the
                    // store accepted of it.
                    let key = kad::RecordKey::new(&namespace_key(&quorum_key));
                    if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
                        let id = kad.get_record(key);
                        self.pending_gets
                            .entry(id)
                            .or_default()
                            .push(PendingDiscover {
                                channel,
                                quorum_key,
                                limit,
                            });
                        return;
                    }
                    Response::Rejected(StatusCode::UnknownNamespace)
                }
                Err(code) => Response::Rejected(code),
            },
            Request::DiscoverKind {
                kind,
                limit,
                cookie,
            } => match store.discover_kind(&kind, limit, cookie.as_ref(), now) {
                Ok((namespaces, cookie)) => Response::Namespaces { namespaces, cookie },
                Err(code) => Response::Rejected(code),
            },
            // Member-to-member messages have no business here.
            Request::Dkg(_) | Request::SignNamespace(_) | Request::NamespaceReady(_) => {
                Response::Rejected(StatusCode::NotAuthorized)
            }
        };
        self.respond(channel, response);
    }

    /// Runs the cheap checks of the waiting registrations, answers those
    /// they refuse, and hands the rest to the verification thread (or, if
    /// it is gone, verifies them here).
    fn submit(&mut self, now: u64) {
        let batch = if self.batch.len() > MAX_BATCH {
            let rest = self.batch.split_off(MAX_BATCH);
            std::mem::replace(&mut self.batch, rest)
        } else {
            self.queued_since = None;
            std::mem::take(&mut self.batch)
        };
        let (registrations, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let Some(store) = store_mut(&mut self.swarm) else {
            for reply in replies {
                self.answer(reply, Err(StatusCode::Internal));
            }
            return;
        };
        let limits = store.config().limits;
        let prechecked = store.precheck_peers(registrations, now);
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
        let id = self.next_job;
        self.next_job += 1;
        let job = VerifyJob {
            id,
            checked,
            now_ms: now,
            limits,
        };
        self.in_flight.push_back((id, waiting));
        if let Err(std::sync::mpsc::SendError(job)) = self.jobs.send(job) {
            let done = verify_job(job, &mut rand::thread_rng());
            self.on_verified(done);
        }
    }

    /// Whether `count` more registrations from `peer` fit the queue.
    fn may_queue(&self, peer: &PeerId, count: usize) -> bool {
        self.batch.len() + count <= MAX_QUEUED_REGISTRATIONS
            && self.queued_by_peer.get(peer).copied().unwrap_or(0) + count <= MAX_QUEUED_PER_PEER
    }

    /// Whether the waiting registrations should go to verification now.
    fn should_submit(&self) -> bool {
        !self.batch.is_empty()
            && self.in_flight.len() < self.depth
            && (self.batch.len() >= MIN_BATCH
                || self
                    .queued_since
                    .is_none_or(|t| t.elapsed() >= MAX_BATCH_WAIT))
    }

    /// The verification thread died with a batch: its registrations are
    /// answered `Internal` (the next batches are verified on this task).
    fn abandon_in_flight(&mut self) {
        self.finished.clear();
        while let Some((_, replies)) = self.in_flight.pop_front() {
            for reply in replies {
                self.answer(reply, Err(StatusCode::Internal));
            }
        }
    }

    /// Takes a verified batch; applies, in submission order, every batch
    /// whose elders are done.
    fn on_verified(&mut self, done: VerifyDone) {
        self.finished.insert(done.id, done);
        while let Some(&(id, _)) = self.in_flight.front() {
            let Some(done) = self.finished.remove(&id) else {
                break;
            };
            let replies = self
                .in_flight
                .pop_front()
                .map(|(_, r)| r)
                .unwrap_or_default();
            self.apply_verified(done, replies);
        }
    }

    /// Applies a verified batch and answers every registration in it.
    fn apply_verified(&mut self, done: VerifyDone, replies: Vec<ReplyTo>) {
        let now = now_ms();
        let keys: Vec<(QuorumKey, u32, PeerId)> = done
            .checked
            .iter()
            .map(|c| {
                let r = &c.registration.record;
                (r.quorum_key, r.index, r.peer_id)
            })
            .collect();
        let outcomes = match store_mut(&mut self.swarm) {
            Some(store) => {
                store.apply_peers(done.checked.into_iter().zip(done.verdicts).collect(), now)
            }
            None => vec![Err(StatusCode::Internal); keys.len()],
        };
        for ((reply, (qk, index, peer)), outcome) in replies.into_iter().zip(keys).zip(outcomes) {
            match outcome {
                Ok(_) => {
                    debug!(quorum_key = %qk, index, %peer, "peer registered");
                    self.replicate.insert(qk);
                    self.persist.insert(qk);
                    self.stats_dirty = true;
                }
                Err(code) => {
                    debug!(quorum_key = %qk, index, %peer, %code, "peer registration refused")
                }
            }
            self.answer(reply, outcome);
        }
    }

    /// Sends (or, for a record of a `RegisterPeers`, records) the outcome
    /// of one registration.
    fn answer(&mut self, reply: ReplyTo, outcome: RegisterOutcome) {
        let peer = reply.peer();
        if let Some(count) = self.queued_by_peer.get_mut(&peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.queued_by_peer.remove(&peer);
            }
        }
        if outcome.is_ok() {
            self.metrics
                .registrations_accepted
                .fetch_add(1, Ordering::Relaxed);
        }
        match reply {
            ReplyTo::One(channel, _) => {
                let response = match outcome {
                    Ok(ttl_ms) => Response::Registered { ttl_ms },
                    Err(code) => Response::Rejected(code),
                };
                self.respond(channel, response);
            }
            ReplyTo::Part {
                request, position, ..
            } => {
                if let Err(code) = outcome {
                    self.metrics.reject(code);
                }
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
                        let _ = self.swarm.behaviour_mut().rr.send_response(
                            done.channel,
                            Frame::Message(Response::RegisteredPeers(outcomes)),
                        );
                    }
                }
            }
        }
    }

    /// Verifies and applies everything waiting (before answering a
    /// question about the state, or stopping).
    async fn drain(&mut self) {
        loop {
            if !self.in_flight.is_empty() {
                match self.verified.recv().await {
                    Some(done) => self.on_verified(done),
                    None => self.abandon_in_flight(),
                }
            } else if !self.batch.is_empty() {
                self.submit(now_ms());
            } else {
                break;
            }
        }
    }

    /// Submits waiting registrations for verification, replicates and
    /// persists what changed, and refreshes the gauges.
    fn flush(&mut self) {
        let now = now_ms();
        while self.should_submit() {
            self.submit(now);
        }
        if !self.replicate.is_empty() && std::time::Instant::now() >= self.next_replication {
            self.next_replication = std::time::Instant::now() + REPLICATION_PERIOD;
            let keys = std::mem::take(&mut self.replicate);
            // A node that knows no other rendezvous has no one to PUT to
            // (the PUT would fail after merging the value into its own
            // store again): skip the encoding. Kademlia's periodic
            // republication covers peers that join later, as it would
            // after a failed PUT.
            let alone = self
                .swarm
                .behaviour_mut()
                .kad
                .as_mut()
                .is_none_or(|k| k.kbuckets().all(|b| b.num_entries() == 0));
            for qk in keys.into_iter().filter(|_| !alone) {
                let value = store_mut(&mut self.swarm).and_then(|s| s.namespace_value(&qk, now));
                let (Some(value), Some(kad)) = (value, self.swarm.behaviour_mut().kad.as_mut())
                else {
                    continue;
                };
                let record = kad::Record::new(namespace_key(&qk).to_vec(), value.encode());
                if let Err(e) = kad.put_record(record, kad::Quorum::One) {
                    debug!("replication not started: {e}");
                }
            }
        }
        // Without a database nothing is written: drop the keys, so the
        // loop never wakes up to write them.
        if self.db.is_none() {
            self.persist.clear();
        }
        if !self.persist.is_empty() && std::time::Instant::now() >= self.next_persist {
            self.next_persist = std::time::Instant::now() + PERSIST_PERIOD;
            let keys = std::mem::take(&mut self.persist);
            if let Some(db) = &self.db {
                let updates: Vec<(QuorumKey, Option<NamespaceValue>)> = keys
                    .into_iter()
                    .map(|qk| {
                        let v =
                            store_mut(&mut self.swarm).and_then(|s| s.namespace_value(&qk, now));
                        (qk, v)
                    })
                    .collect();
                if let Err(e) = db.save(&updates) {
                    warn!("saving records: {e}");
                }
            }
        }
        // Counting is O(records): at most once a second.
        if self.stats_dirty && self.last_stats.elapsed() >= Duration::from_secs(1) {
            self.stats_dirty = false;
            self.last_stats = std::time::Instant::now();
            if let Some(store) = store_mut(&mut self.swarm) {
                let stats = store.stats();
                self.metrics
                    .namespaces
                    .store(stats.namespaces as u64, Ordering::Relaxed);
                self.metrics
                    .peers
                    .store(stats.peer_records as u64, Ordering::Relaxed);
                self.metrics
                    .reachable_peers
                    .store(stats.reachable_peer_records as u64, Ordering::Relaxed);
            }
        }
    }
}
