//! The rendezvous node's driver: the sans-IO [`dht::Server`] core on a
//! libp2p swarm. The core decides everything (what is queued or refused,
//! when a batch goes to verification, in which order replies go out, what
//! is replicated, persisted, looked up or dialled); this module carries
//! requests and replies over request-response, runs the core's
//! verification jobs on threads of their own, performs its Kademlia PUTs
//! and GETs, dials, writes the database, and keeps the metrics.
//!
//! Verification jobs run on the threads of [`crate::verifier`]; a job
//! that panics is reported to the core, which answers its batch
//! `Internal` and goes on.
//!
//! This file is the public side (configuration, the handle, starting a
//! node and reloading its records); `driver.rs` is the event loop.

mod driver;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dht::{
    AddressPolicy, KadStore, NamespaceStore, NamespaceValue, Server, ServerConfig, StoreConfig,
};
use libp2p::identity::Keypair;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::behaviour::{build_swarm, listen_all, now_ms, split_p2p, SwarmSettings};
use crate::metrics::Metrics;
use crate::persist::RecordDb;
use crate::verifier::spawn_verifiers;

use driver::Driver;

/// Changed namespaces are written to the database at most this often. A
/// write is a redb transaction with an fsync on the event loop: one per
/// verified batch (up to a hundred a second under load) would stall
/// discover answers behind the disk. A crash loses at most this much of
/// the registrations, which members renew anyway; a clean shutdown writes
/// everything.
const PERSIST_PERIOD_MS: u64 = 1_000;

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
    /// Dial private and loopback addresses for liveness checks even when
    /// the node listens on a global address (`--allow-private-addrs`).
    pub allow_private_addrs: bool,
}

impl Default for RendezvousConfig {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            bootstrap: Vec::new(),
            data_dir: None,
            store: StoreConfig::default(),
            metrics: Metrics::new(),
            allow_private_addrs: false,
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
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Its swarm could not be built or could not listen.
    #[error(transparent)]
    Swarm(#[from] crate::behaviour::SwarmError),
    /// Its record database could not be opened or read.
    #[error("--data-dir: {0}")]
    Db(#[from] crate::persist::DbError),
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
    let mut loaded = Vec::new();
    let mut known_peers = Vec::new();
    if let Some(db) = &db {
        known_peers = db.load_peers()?;
        let now = now_ms();
        for bytes in db.load_all()? {
            match NamespaceValue::decode(&bytes, &config.store.limits) {
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
    }
    let depth = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let server_config = ServerConfig {
        max_jobs: depth,
        persist_period_ms: if db.is_some() { PERSIST_PERIOD_MS } else { 0 },
        ..ServerConfig::default()
    };
    let mut core = Server::new(server_config, store);
    // Offer what was reloaded to the others, and ask them for what this
    // node missed while down (#16: a crash loses the last second of
    // registrations, which members renew only an hour later).
    let now = now_ms();
    for qk in loaded {
        core.republish(qk);
        core.resync(now, qk);
    }
    let interval = Duration::from_millis(config.store.liveness.ping_interval_ms.max(2));
    let settings = SwarmSettings {
        kad: true,
        // Twice per interval, so that every window between two due times
        // holds at least one ping of a live peer.
        ping_interval: interval / 2,
        ping_timeout: interval.max(Duration::from_millis(500)),
        // A liveness dial into a partition gives up before the next one is
        // due, so that each interval tries anew (a SYN lost at the heal
        // would otherwise wait for TCP's own retransmission, seconds on).
        connection_timeout: (interval * 4 / 5)
            .clamp(Duration::from_secs(1), Duration::from_secs(10)),
        idle_timeout: Duration::from_secs(60).max(interval * 4),
        ..SwarmSettings::default()
    };
    let kad_store = KadStore::new(core, Box::new(now_ms));
    let mut swarm = build_swarm(keypair, &settings, Some(kad_store))?;
    let listen_addrs = listen_all(&mut swarm, &config.listen).await?;
    for addr in &listen_addrs {
        info!(%peer_id, "rendezvous listening on {addr}/p2p/{peer_id}");
    }
    // Liveness dials go only to the scopes this node is reachable at
    // itself (#13 item 3): no scanning inside the operator's network.
    let policy = AddressPolicy::for_listen_addrs(&listen_addrs, config.allow_private_addrs);
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
    if let Some(kad) = swarm.behaviour_mut().kad.as_mut() {
        kad.store_mut().inner_mut().set_dial_policy(policy);
    }
    // Rendezvous peers this node met before a restart (its database)
    // rejoin it to the DHT as `--bootstrap` would.
    let mut saved_peers = HashMap::new();
    let mut bootstrap: Vec<(PeerId, Vec<Multiaddr>)> = Vec::new();
    for addr in &config.bootstrap {
        let Some((peer, base)) = split_p2p(addr) else {
            warn!("--bootstrap {addr} has no /p2p/<peer id>; skipped");
            continue;
        };
        bootstrap.push((peer, vec![base]));
    }
    if !known_peers.is_empty() {
        info!(
            peers = known_peers.len(),
            "rejoining through the rendezvous peers known before"
        );
    }
    for (peer, addrs) in known_peers {
        saved_peers.insert(peer, addrs.clone());
        if peer != peer_id {
            bootstrap.push((peer, addrs));
        }
    }
    for (peer, addrs) in &bootstrap {
        if let Some(kad) = swarm.behaviour_mut().kad.as_mut() {
            for addr in addrs {
                kad.add_address(peer, addr.clone());
            }
        }
        let opts = DialOpts::peer_id(*peer).addresses(addrs.clone()).build();
        if let Err(e) = swarm.dial(opts) {
            warn!("dialing rendezvous node {peer}: {e}");
        }
    }
    if !bootstrap.is_empty() {
        if let Some(kad) = swarm.behaviour_mut().kad.as_mut() {
            if let Err(e) = kad.bootstrap() {
                warn!("bootstrap not started: {e}");
            }
        }
    }
    let (tx, rx) = mpsc::channel(16);
    let (jobs, verified) = spawn_verifiers(depth);
    let driver = Driver {
        swarm,
        db,
        metrics: config.metrics.clone(),
        replies: HashMap::new(),
        next_reply: 0,
        lookups: HashMap::new(),
        jobs,
        verified,
        stats_due: std::time::Instant::now(),
        stats_dirty: true,
        saved_peers,
    };
    let task = tokio::spawn(driver.run(rx));
    Ok(RendezvousHandle {
        peer_id,
        listen_addrs,
        commands: tx,
        task,
    })
}
