//! The rendezvous node's driver: owns the swarm, hands every request, ping
//! outcome and replicated value to the [`NamespaceStore`], and sends what
//! comes back.
//!
//! - Registrations that arrive in the same poll iteration are verified as
//!   one batch ([`NamespaceStore::register_peers`]).
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

use dht::{namespace_key, KadStore, NamespaceStore, NamespaceValue, PeerRegistration, StoreConfig};
use libp2p::futures::{FutureExt, StreamExt};
use libp2p::identity::Keypair;
use libp2p::kad::{self, store::RecordStore};
use libp2p::request_response::{self, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, ping, Multiaddr, PeerId, Swarm};
use rendezvous_proto::{QuorumKey, Request, Response, StatusCode};
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
    let server = Server {
        swarm,
        db,
        metrics: config.metrics.clone(),
        replicate: loaded.clone(),
        persist: BTreeSet::new(),
        pending_gets: HashMap::new(),
        batch: Vec::new(),
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

struct Server {
    swarm: Swarm<Behaviour>,
    db: Option<RecordDb>,
    metrics: Arc<Metrics>,
    /// Namespaces changed by a direct registration: to PUT to replicas.
    replicate: BTreeSet<QuorumKey>,
    /// Namespaces changed in any way: to write to the database.
    persist: BTreeSet<QuorumKey>,
    pending_gets: HashMap<kad::QueryId, Vec<PendingDiscover>>,
    batch: Vec<(PeerRegistration, Channel)>,
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
            let sleep = wake.map_or(Duration::from_secs(3600), |at| {
                Duration::from_millis(at.saturating_sub(now))
            });
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
                _ = tokio::time::sleep(sleep) => self.on_timer(),
                command = commands.recv() => match command {
                    None | Some(Command::Shutdown) => {
                        self.flush();
                        info!("rendezvous node stopped");
                        return;
                    }
                    Some(Command::Fingerprint(reply)) => {
                        self.flush();
                        let fp = store_mut(&mut self.swarm).map(|s| s.fingerprint()).unwrap_or_default();
                        let _ = reply.send(fp);
                    }
                    Some(Command::Stats(reply)) => {
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
                self.batch.push((
                    PeerRegistration {
                        record,
                        remote: Some(peer),
                    },
                    channel,
                ));
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
            Request::Dkg(_) | Request::SignNamespace(_) => {
                Response::Rejected(StatusCode::NotAuthorized)
            }
        };
        self.respond(channel, response);
    }

    /// Verifies the batch of peer registrations, replicates and persists
    /// what changed, and refreshes the gauges.
    fn flush(&mut self) {
        let now = now_ms();
        if !self.batch.is_empty() {
            let batch = std::mem::take(&mut self.batch);
            let (registrations, channels): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let keys: Vec<(QuorumKey, u32, PeerId)> = registrations
                .iter()
                .map(|r| (r.record.quorum_key, r.record.index, r.record.peer_id))
                .collect();
            let results = match store_mut(&mut self.swarm) {
                Some(store) => store.register_peers(registrations, now),
                None => Vec::new(),
            };
            for ((channel, (qk, index, peer)), result) in
                channels.into_iter().zip(keys).zip(results)
            {
                let response = match result {
                    Ok(ttl_ms) => {
                        self.metrics
                            .registrations_accepted
                            .fetch_add(1, Ordering::Relaxed);
                        info!(quorum_key = %qk, index, %peer, "peer registered");
                        self.replicate.insert(qk);
                        self.persist.insert(qk);
                        self.stats_dirty = true;
                        Response::Registered { ttl_ms }
                    }
                    Err(code) => {
                        info!(quorum_key = %qk, index, %peer, %code, "peer registration refused");
                        Response::Rejected(code)
                    }
                };
                self.respond(channel, response);
            }
        }
        if !self.replicate.is_empty() {
            let keys = std::mem::take(&mut self.replicate);
            for qk in keys {
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
        if !self.persist.is_empty() {
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
