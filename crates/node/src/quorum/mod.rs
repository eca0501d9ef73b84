//! The quorum member's driver: the sans-IO [`member::Member`] on a libp2p
//! swarm. Every protocol decision (when the DKG starts, who coordinates
//! the namespace, what a member co-signs, what each rendezvous answer
//! means, when to retry, refresh or give up) is the core's; this module
//! only carries its requests over request-response, hands back answers,
//! connection events and timeouts, writes the key share when the DKG
//! ends (`DIR/key_share.json`, mode 0600, atomically), and reports.
//!
//! This file is the public side (configuration, errors, status, binding
//! and starting a member); `driver.rs` is the event loop.

mod behaviour;
mod driver;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dkg::{DkgConfig, KeyShare};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId, Swarm};
use member::{QuorumSpec, Start};
use rendezvous_proto::QuorumKey;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub use behaviour::Behaviour;

use crate::behaviour::{build_swarm_with, listen_all, SwarmSettings};
use crate::metrics::Metrics;
use crate::quorum_file::QuorumFile;

use driver::Driver;

/// The key share file's name inside a data directory.
pub const KEY_SHARE_FILE: &str = "key_share.json";

/// What `key_share.json` holds: the key share, in `dkg::KeyShare`'s own
/// fields (`index`, `n`, `threshold`, `quorum_key`, `commitments`,
/// `secret_share`), and the share's `epoch` (0 after the DKG, the next
/// for each reshare). A file written before epochs has no `epoch` and is
/// read as epoch 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyShareFile {
    /// The key share.
    pub share: KeyShare,
    /// Its epoch.
    pub epoch: u64,
}

/// The file's form when written: the share's fields, then `epoch`.
#[derive(serde::Serialize)]
struct KeyShareJson<'a> {
    #[serde(flatten)]
    share: &'a KeyShare,
    epoch: u64,
}

/// The epoch alone, read beside the share (whose own reader ignores it).
#[derive(serde::Deserialize)]
struct EpochField {
    #[serde(default)]
    epoch: u64,
}

impl KeyShareFile {
    /// The file's bytes for `share` of `epoch` (pretty JSON; wiped when
    /// dropped, as it holds the secret share).
    pub fn encode(
        share: &KeyShare,
        epoch: u64,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, serde_json::Error> {
        serde_json::to_vec_pretty(&KeyShareJson { share, epoch }).map(zeroize::Zeroizing::new)
    }

    /// Reads the file's bytes: the share (checked as `dkg::KeyShare`
    /// checks it) and its epoch (0 if absent). Read in two passes rather
    /// than through one flattened struct, which would buffer a copy of the
    /// secret that nothing wipes.
    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let share: KeyShare = serde_json::from_slice(bytes)?;
        let EpochField { epoch } = serde_json::from_slice(bytes)?;
        Ok(Self { share, epoch })
    }
}

/// How a member runs.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    /// The quorum file.
    pub quorum: QuorumFile,
    /// Rendezvous nodes to register at (with `/p2p/<id>`).
    pub rendezvous: Vec<Multiaddr>,
    /// The key share, if the DKG already ran.
    pub key_share: Option<KeyShare>,
    /// The key share's epoch (`key_share.json`'s `epoch`; 0 for a DKG).
    pub epoch: u64,
    /// Where to write the key share after the DKG.
    pub key_share_path: Option<PathBuf>,
    /// Lifetime of the records; they are refreshed at half of it.
    pub ttl: Duration,
    /// Length of each DKG phase.
    pub dkg_phase_timeout: Duration,
    /// The member stops with an error once no rendezvous node has held
    /// an accepted registration of it for this long.
    pub give_up_after: Duration,
    /// Counters for `--metrics`.
    pub metrics: Arc<Metrics>,
}

impl MemberConfig {
    /// A config with the defaults (TTL 2 h, DKG phases of 10 s, give up
    /// after 10 minutes without any registration).
    pub fn new(quorum: QuorumFile, rendezvous: Vec<Multiaddr>) -> Self {
        Self {
            quorum,
            rendezvous,
            key_share: None,
            epoch: 0,
            key_share_path: None,
            ttl: Duration::from_secs(2 * 3600),
            dkg_phase_timeout: Duration::from_secs(10),
            give_up_after: Duration::from_secs(600),
            metrics: Metrics::new(),
        }
    }
}

/// Why a member stopped with an error. What a rendezvous node answers is
/// never one of these on its own (see `member::retry`).
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// This node's PeerId is not in the quorum file.
    #[error("this node ({0}) is not a member of the quorum file")]
    NotAMember(PeerId),
    /// No `--rendezvous` address ends with `/p2p/<peer id>`.
    #[error("no usable --rendezvous address (each must end with /p2p/<peer id>)")]
    NoRendezvous,
    /// The quorum file does not give a valid DKG configuration.
    #[error("the quorum file does not make a valid DKG: {0}")]
    DkgConfig(#[from] dkg::ConfigError),
    /// The member core stopped: a damaged key share, a failed DKG, or no
    /// rendezvous node accepting the member for the configured time.
    #[error(transparent)]
    Member(#[from] member::MemberError),
    /// The key share could not be written.
    #[error("writing the key share to {path}: {source}")]
    WriteKeyShare {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key share is of an epoch this quorum file cannot run from: a
    /// newer one than the file's (a member refuses an older epoch than
    /// the one it holds), or one older than the file's previous epoch.
    #[error("the key share is of epoch {held}, the quorum file of epoch {file}{hint}")]
    EpochMismatch {
        /// The key share's epoch.
        held: u64,
        /// The file's epoch.
        file: u64,
        /// What to do about it.
        hint: &'static str,
    },
    /// A member that joins at a resharing has no key share to learn the
    /// quorum key from, and the file does not name it.
    #[error(
        "this node joins the quorum by resharing: the quorum file needs [previous] quorum_key"
    )]
    QuorumKeyNeeded,
    /// [`Behaviour::start`] was called on a member already started.
    #[error("the member is already started")]
    AlreadyStarted,
    /// The member could not listen.
    #[error("listening: {0}")]
    Listen(crate::behaviour::SwarmError),
    /// The member's task ended abnormally (it panicked or was cancelled).
    #[error("member task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// What a running member reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberStatus {
    /// The quorum key, once the member has a key share.
    pub quorum_key: Option<QuorumKey>,
    /// The key share itself (in-process callers keep it to restart the
    /// member; its `Debug` does not show the secret).
    pub key_share: Option<KeyShare>,
    /// Rendezvous nodes holding an unexpired registration of this member.
    pub registered_at: usize,
    /// Whether this member knows its quorum's namespace record.
    pub namespace_registered: bool,
    /// Rendezvous nodes no longer used (they refused for good).
    pub dropped: usize,
}

/// A member bound to its listen addresses, not yet running.
pub struct BoundMember {
    swarm: Swarm<Behaviour>,
    /// Its identity: the swarm authenticates with it, and the member core
    /// signs its envelopes with it.
    identity: Keypair,
    /// Its PeerId.
    pub peer_id: PeerId,
    /// Where it listens (resolved).
    pub listen_addrs: Vec<Multiaddr>,
}

/// A running member.
#[derive(Debug)]
pub struct MemberHandle {
    /// Its PeerId.
    pub peer_id: PeerId,
    /// Where it listens.
    pub listen_addrs: Vec<Multiaddr>,
    /// Its status, updated as it goes.
    pub status: watch::Receiver<MemberStatus>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), MemberError>>,
}

impl MemberHandle {
    /// Asks the member to unregister and stop, and waits for it.
    pub async fn shutdown(mut self) -> Result<(), MemberError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.join().await
    }

    /// Waits for the member to stop on its own (a failed DKG, a damaged
    /// share, or no rendezvous node accepting it for too long).
    pub async fn join(self) -> Result<(), MemberError> {
        self.task.await?
    }

    /// Kills the member at once, as a crash would.
    pub fn kill(&self) {
        self.task.abort();
    }

    /// Whether the member has stopped.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Creates the member's swarm and listens (so that its addresses are
/// known before the quorum file is written, e.g. with `/tcp/0`).
pub async fn bind(
    keypair: Keypair,
    listen: &[Multiaddr],
) -> Result<BoundMember, crate::behaviour::SwarmError> {
    let peer_id = keypair.public().to_peer_id();
    let settings = SwarmSettings {
        kad: false,
        // Keep member connections up through the DKG and between refreshes.
        idle_timeout: Duration::from_secs(120),
        ..SwarmSettings::default()
    };
    let mut swarm = build_swarm_with(keypair.clone(), &settings, |_| Behaviour::new())?;
    let listen_addrs = listen_all(&mut swarm, listen).await?;
    Ok(BoundMember {
        swarm,
        identity: keypair,
        peer_id,
        listen_addrs,
    })
}

/// The core's configuration for a member of `file` at `index`.
pub(super) fn core_config(
    config: &MemberConfig,
    index: u32,
    identity: Keypair,
    addrs: Vec<Multiaddr>,
    rendezvous: usize,
) -> member::MemberConfig {
    let spec = QuorumSpec {
        members: config.quorum.members.iter().map(|m| m.peer_id).collect(),
        threshold: config.quorum.threshold,
        kind: config.quorum.kind.clone(),
    };
    let ttl_ms = (config.ttl.as_millis() as u64).max(2);
    let phase_ms = (config.dkg_phase_timeout.as_millis() as u64).max(1);
    let mut core = member::MemberConfig::new(spec, index, identity, rendezvous);
    // A resharing makes a share of the file's epoch.
    core.epoch = match &config.quorum.transition {
        Some(_) => config.quorum.epoch,
        None => config.epoch,
    };
    core.addrs = addrs;
    core.peer_ttl_ms = ttl_ms;
    core.namespace_ttl_ms = ttl_ms;
    // Members started by hand seconds apart still share the DKG's phases.
    core.dkg_wait_ms = 6 * phase_ms;
    core.cosign_timeout_ms = (4 * phase_ms).max(10_000);
    core.give_up_after_ms = config.give_up_after.as_millis() as u64;
    core
}

/// This node's index in `config.quorum` (0: it only leaves, at a
/// resharing) and how its member core starts: with the key share of the
/// file's epoch, with a DKG (epoch 0, no share), or with a resharing from
/// the previous epoch (its share of that epoch, or none for a newcomer).
pub(super) fn start_of(config: &MemberConfig, me: &PeerId) -> Result<(u32, Start), MemberError> {
    let file = &config.quorum;
    let new_index = file.index_of(me);
    let held = config.key_share.as_ref().map(|_| config.epoch);
    let mismatch = |hint| MemberError::EpochMismatch {
        held: config.epoch,
        file: file.epoch,
        hint,
    };
    if held.is_some_and(|e| e > file.epoch) {
        return Err(mismatch(": a member never goes back to an older epoch"));
    }
    if let (Some(share), Some(e)) = (&config.key_share, held) {
        if e == file.epoch {
            let index = new_index.ok_or(MemberError::NotAMember(*me))?;
            return Ok((index, Start::KeyShare(share.clone())));
        }
    }
    let Some(transition) = &file.transition else {
        if held.is_some() {
            return Err(mismatch(""));
        }
        let index = new_index.ok_or(MemberError::NotAMember(*me))?;
        return Ok((
            index,
            Start::Dkg(dkg_config(file, index, config.dkg_phase_timeout, None)?),
        ));
    };
    if transition.mode == crate::quorum_file::Mode::Rotate {
        return rotate_start(config, file, transition, new_index, held, me);
    }
    if held.is_some_and(|e| e.saturating_add(1) != file.epoch) {
        return Err(mismatch(
            ": a resharing starts from the share of the epoch just before",
        ));
    }
    let in_previous = transition.previous.iter().any(|m| m.peer_id == *me);
    if new_index.is_none() && !(in_previous && config.key_share.is_some()) {
        return Err(MemberError::NotAMember(*me));
    }
    let quorum_key = match (&config.key_share, transition.quorum_key) {
        (Some(share), _) => QuorumKey::from(share.quorum_key()),
        (None, Some(key)) => key,
        (None, None) => return Err(MemberError::QuorumKeyNeeded),
    };
    let start = member::ReshareStart {
        previous_members: transition.previous.iter().map(|m| m.peer_id).collect(),
        previous_threshold: transition.previous_threshold,
        quorum_key,
        previous_share: config.key_share.clone(),
        phase_timeout_ms: (config.dkg_phase_timeout.as_millis() as u64).max(1),
    };
    Ok((new_index.unwrap_or(0), Start::Reshare(Box::new(start))))
}

/// A key rotation (`mode = "rotate"`): a node in the file's member list
/// runs a fresh DKG (its base session binds the file's epoch, so it is not
/// the first DKG's); a node of the previous epoch co-signs the handover
/// with its key share of that epoch (`key_share.json`); one that is only
/// in the previous epoch (index 0) does nothing else, then unregisters and
/// stops. The new key share is written with the file's epoch.
fn rotate_start(
    config: &MemberConfig,
    file: &QuorumFile,
    transition: &crate::quorum_file::Transition,
    new_index: Option<u32>,
    held: Option<u64>,
    me: &PeerId,
) -> Result<(u32, Start), MemberError> {
    if held.is_some_and(|e| e.saturating_add(1) != file.epoch) {
        return Err(MemberError::EpochMismatch {
            held: config.epoch,
            file: file.epoch,
            hint: ": a rotation starts from the share of the epoch just before",
        });
    }
    let in_previous = transition.previous.iter().any(|m| m.peer_id == *me);
    if new_index.is_none() && !(in_previous && config.key_share.is_some()) {
        return Err(MemberError::NotAMember(*me));
    }
    // A share of the previous epoch is only used by a previous member.
    let previous_share = config.key_share.clone().filter(|_| in_previous);
    let previous_quorum_key = match &previous_share {
        Some(share) => Some(QuorumKey::from(share.quorum_key())),
        None => transition.quorum_key,
    };
    let dkg = match new_index {
        Some(index) => Some(dkg_config(
            file,
            index,
            config.dkg_phase_timeout,
            Some(file.epoch),
        )?),
        None => None,
    };
    let start = member::RotateStart {
        previous_members: transition.previous.iter().map(|m| m.peer_id).collect(),
        previous_threshold: transition.previous_threshold,
        previous_share,
        previous_quorum_key,
        dkg,
    };
    Ok((new_index.unwrap_or(0), Start::Rotate(Box::new(start))))
}

/// The DKG's base session, which every member derives from the same
/// quorum file (and, for a key rotation, its epoch: `rotation_epoch`). It is only the start: each run's session id also binds a
/// fresh nonce of every member, agreed in the run's hello round (in the
/// member core, `dkg::DkgMember::with_hello`), so no two runs of the same
/// quorum share one.
fn dkg_config(
    file: &QuorumFile,
    index: u32,
    phase: Duration,
    rotation_epoch: Option<u64>,
) -> Result<DkgConfig, MemberError> {
    let members: Vec<Vec<u8>> = file.members.iter().map(|m| m.peer_id.to_bytes()).collect();
    let mut nonce = b"rdht/quorum-file/v1".to_vec();
    nonce.extend_from_slice(file.kind.as_deref().unwrap_or("").as_bytes());
    if let Some(epoch) = rotation_epoch {
        nonce.extend_from_slice(b"/rotate/epoch/");
        nonce.extend_from_slice(&epoch.to_be_bytes());
    }
    Ok(DkgConfig::new(
        &members,
        file.threshold,
        &nonce,
        index,
        (phase.as_millis() as u64).max(1),
    )?)
}

impl BoundMember {
    /// Starts the member as a tokio task. Fails at once if this node is
    /// not in the quorum file, no rendezvous address is usable, or the key
    /// share does not match its public key set.
    pub fn start(mut self, config: MemberConfig) -> Result<MemberHandle, MemberError> {
        self.swarm.behaviour_mut().start(
            self.identity.clone(),
            &config,
            self.listen_addrs.clone(),
        )?;
        let index = self.swarm.behaviour().index().unwrap_or(0);
        let (status_tx, status_rx) = watch::channel(MemberStatus::default());
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let driver = Driver {
            swarm: self.swarm,
            index,
            metrics: config.metrics.clone(),
            key_share_path: config.key_share_path.clone(),
            rendezvous: config.rendezvous.clone(),
            status: status_tx,
        };
        let task = tokio::spawn(driver.run(shutdown_rx));
        Ok(MemberHandle {
            peer_id: self.peer_id,
            listen_addrs: self.listen_addrs,
            status: status_rx,
            shutdown: Some(shutdown_tx),
            task,
        })
    }
}
