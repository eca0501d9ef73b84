//! The rendezvous role: the sans-IO [`dht::Server`] core as a libp2p
//! `NetworkBehaviour` ([`Behaviour`], built by [`Builder`]; its own
//! documentation says what it carries and how an application runs it),
//! and the `rdht node` process around it ([`start`]: a swarm running that
//! behaviour and nothing else, with a handle to question and stop it).
//!
//! Verification jobs run on the threads of [`crate::verifier`]; a job
//! that panics is reported to the core, which answers its batch
//! `Internal` and goes on.
//!
//! `behaviour.rs` is the behaviour; this file is the process side
//! (configuration, the handle, starting a node); `driver.rs` is the
//! process's event loop.

mod behaviour;
mod driver;

use std::path::PathBuf;
use std::sync::Arc;

use dht::StoreConfig;
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use behaviour::{swarm_settings, Behaviour, BuildError, Builder, Event, PERSIST_PERIOD_MS};

use crate::behaviour::{build_swarm_with, listen_all, split_p2p};
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
    /// Its record database could not be opened.
    #[error("--data-dir: {0}")]
    Db(#[from] crate::persist::DbError),
    /// Its record database could not be read.
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// Starts a rendezvous node as a tokio task: a swarm running the
/// rendezvous [`Behaviour`], and nothing else.
pub async fn start(
    keypair: Keypair,
    config: RendezvousConfig,
) -> Result<RendezvousHandle, StartError> {
    let peer_id = keypair.public().to_peer_id();
    let mut builder = Builder::new(keypair.public())
        .store_config(config.store.clone())
        .metrics(config.metrics.clone())
        .allow_private_addrs(config.allow_private_addrs);
    if let Some(dir) = &config.data_dir {
        builder = builder.database(RecordDb::open(dir)?);
    }
    for addr in &config.bootstrap {
        let Some((peer, base)) = split_p2p(addr) else {
            warn!("--bootstrap {addr} has no /p2p/<peer id>; skipped");
            continue;
        };
        builder = builder.bootstrap(peer, vec![base]);
    }
    let server = builder.build()?;
    let mut swarm = build_swarm_with(keypair, &swarm_settings(&config.store), |_| server)?;
    let listen_addrs = listen_all(&mut swarm, &config.listen).await?;
    for addr in &listen_addrs {
        info!(%peer_id, "rendezvous listening on {addr}/p2p/{peer_id}");
    }
    let (tx, rx) = mpsc::channel(16);
    let task = tokio::spawn(driver::run(swarm, rx));
    Ok(RendezvousHandle {
        peer_id,
        listen_addrs,
        commands: tx,
        task,
    })
}
