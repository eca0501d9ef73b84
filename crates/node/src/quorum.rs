//! The quorum member's driver: the sans-IO [`member::Member`] on a libp2p
//! swarm. Every protocol decision (when the DKG starts, who coordinates
//! the namespace, what a member co-signs, what each rendezvous answer
//! means, when to retry, refresh or give up) is the core's; this file
//! only carries its requests over request-response, hands back answers,
//! connection events and timeouts, writes the key share when the DKG
//! ends (`DIR/key_share.json`, mode 0600, atomically), and reports.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use dkg::{DkgConfig, KeyShare};
use libp2p::futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, OutboundFailure, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};
use member::{Event, Member, Peer, QuorumSpec, RequestId, Start, TransportError};
use rendezvous_proto::{QuorumKey, Request, Response, StatusCode};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::behaviour::listen_all;
use crate::behaviour::{build_swarm, now_ms, split_p2p, Behaviour, BehaviourEvent, SwarmSettings};
use crate::codec::Frame;
use crate::metrics::Metrics;
use crate::quorum_file::QuorumFile;

/// The key share file's name inside a data directory.
pub const KEY_SHARE_FILE: &str = "key_share.json";

/// How a member runs.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    /// The quorum file.
    pub quorum: QuorumFile,
    /// Rendezvous nodes to register at (with `/p2p/<id>`).
    pub rendezvous: Vec<Multiaddr>,
    /// The key share, if the DKG already ran.
    pub key_share: Option<KeyShare>,
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
    let mut swarm = build_swarm(keypair, &settings, None)?;
    let listen_addrs = listen_all(&mut swarm, listen).await?;
    Ok(BoundMember {
        swarm,
        peer_id,
        listen_addrs,
    })
}

/// The core's configuration for a member of `file` at `index`.
fn core_config(
    config: &MemberConfig,
    index: u32,
    peer_id: PeerId,
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
    let mut core = member::MemberConfig::new(spec, index, peer_id, rendezvous);
    core.addrs = addrs;
    core.peer_ttl_ms = ttl_ms;
    core.namespace_ttl_ms = ttl_ms;
    // Members started by hand seconds apart still share the DKG's phases.
    core.dkg_wait_ms = 6 * phase_ms;
    core.cosign_timeout_ms = (4 * phase_ms).max(10_000);
    core.give_up_after_ms = config.give_up_after.as_millis() as u64;
    core
}

/// The DKG session every member derives from the same quorum file.
fn dkg_config(file: &QuorumFile, index: u32, phase: Duration) -> Result<DkgConfig, MemberError> {
    let members: Vec<Vec<u8>> = file.members.iter().map(|m| m.peer_id.to_bytes()).collect();
    let mut nonce = b"rdht/quorum-file/v1".to_vec();
    nonce.extend_from_slice(file.kind.as_deref().unwrap_or("").as_bytes());
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
    pub fn start(self, config: MemberConfig) -> Result<MemberHandle, MemberError> {
        let index = config
            .quorum
            .index_of(&self.peer_id)
            .ok_or(MemberError::NotAMember(self.peer_id))?;
        let rendezvous: Vec<(PeerId, Multiaddr)> = config
            .rendezvous
            .iter()
            .filter_map(|a| {
                let split = split_p2p(a);
                if split.is_none() {
                    warn!("--rendezvous {a} has no /p2p/<peer id>; skipped");
                }
                split
            })
            .collect();
        if rendezvous.is_empty() {
            return Err(MemberError::NoRendezvous);
        }
        let start = match config.key_share.clone() {
            Some(share) => Start::KeyShare(share),
            None => Start::Dkg(dkg_config(&config.quorum, index, config.dkg_phase_timeout)?),
        };
        let core_config = core_config(
            &config,
            index,
            self.peer_id,
            self.listen_addrs.clone(),
            rendezvous.len(),
        );
        let seed = member::seed_from(&mut rand::rngs::OsRng);
        let core = Member::new(core_config, start, now_ms(), seed)?;
        match core.key_share() {
            Some(share) => info!(
                index,
                quorum_key = %QuorumKey::from(share.quorum_key()),
                "key share loaded and checked: skipping the DKG"
            ),
            None => info!(
                index,
                n = config.quorum.n(),
                threshold = config.quorum.threshold,
                "no key share: waiting for the other members to run the DKG"
            ),
        }
        let (status_tx, status_rx) = watch::channel(MemberStatus::default());
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let driver = Driver {
            swarm: self.swarm,
            core,
            index,
            rendezvous,
            in_flight: HashMap::new(),
            metrics: config.metrics.clone(),
            key_share_path: config.key_share_path.clone(),
            quorum: config.quorum,
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

struct Driver {
    swarm: Swarm<Behaviour>,
    core: Member,
    index: u32,
    quorum: QuorumFile,
    rendezvous: Vec<(PeerId, Multiaddr)>,
    /// libp2p's ids of the core's requests.
    in_flight: HashMap<OutboundRequestId, RequestId>,
    metrics: Arc<Metrics>,
    key_share_path: Option<PathBuf>,
    status: watch::Sender<MemberStatus>,
}

/// Longest wait for the rendezvous nodes' answers to the unregistration.
const UNREGISTER_WAIT: Duration = Duration::from_secs(3);

impl Driver {
    async fn run(mut self, mut shutdown: oneshot::Receiver<()>) -> Result<(), MemberError> {
        let mut redial = tokio::time::interval(Duration::from_secs(1));
        loop {
            self.flush()?;
            let now = now_ms();
            let sleep = self
                .core
                .poll_timeout()
                .map_or(Duration::from_secs(3600), |at| {
                    Duration::from_millis(at.saturating_sub(now))
                });
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_event(event),
                _ = tokio::time::sleep(sleep) => self.core.handle_timeout(now_ms()),
                _ = redial.tick() => self.dial_members(),
                _ = &mut shutdown => {
                    self.unregister().await;
                    return Ok(());
                }
            }
        }
    }

    /// Sends what the core queued and acts on what it reports.
    fn flush(&mut self) -> Result<(), MemberError> {
        while let Some(t) = self.core.poll_transmit() {
            let target = match t.to {
                Peer::Member(j) => self.quorum.member(j).map(|m| (m.peer_id, m.addr.clone())),
                Peer::Rendezvous(r) => self.rendezvous.get(r).cloned(),
            };
            let Some((peer, addr)) = target else {
                self.core
                    .handle_response(now_ms(), t.id, Err(TransportError::Unreachable));
                continue;
            };
            if matches!(t.request, Request::Dkg(_)) {
                self.metrics.dkg_messages.fetch_add(1, Ordering::Relaxed);
            }
            let id = self.swarm.behaviour_mut().rr.send_request_with_addresses(
                &peer,
                Frame::Message(t.request),
                vec![addr],
            );
            self.in_flight.insert(id, t.id);
        }
        while let Some(event) = self.core.poll_event() {
            self.on_core_event(event)?;
        }
        let status = self.core.status(now_ms());
        self.metrics
            .member_registered_at
            .store(status.registered_at as u64, Ordering::Relaxed);
        self.metrics
            .member_rendezvous_dropped
            .store(status.dropped as u64, Ordering::Relaxed);
        let next = MemberStatus {
            quorum_key: status.quorum_key,
            key_share: self.core.key_share().cloned(),
            registered_at: status.registered_at,
            namespace_registered: status.namespace_known,
            dropped: status.dropped,
        };
        self.status.send_if_modified(|s| {
            let changed = *s != next;
            *s = next;
            changed
        });
        Ok(())
    }

    fn rendezvous_peer(&self, r: usize) -> String {
        self.rendezvous
            .get(r)
            .map_or_else(|| format!("#{r}"), |(p, _)| p.to_string())
    }

    fn on_core_event(&mut self, event: Event) -> Result<(), MemberError> {
        let index = self.index;
        match event {
            Event::DkgStarted => info!(index, "DKG started"),
            Event::DkgProgress { phase, rounds } => {
                self.metrics.dkg_rounds.fetch_add(rounds, Ordering::Relaxed);
                debug!(index, ?phase, "DKG phase");
            }
            Event::DkgFinished(output) => {
                info!(
                    index,
                    quorum_key = %QuorumKey::from(output.key_share.quorum_key()),
                    qual = ?output.qual,
                    transcript = %hex::encode(output.transcript_hash.0),
                    "DKG finished"
                );
                if let Some(path) = &self.key_share_path {
                    let json = zeroize::Zeroizing::new(
                        serde_json::to_vec_pretty(&output.key_share).map_err(|e| {
                            MemberError::WriteKeyShare {
                                path: path.clone(),
                                source: e.into(),
                            }
                        })?,
                    );
                    crate::identity::write_secret_file(path, &json).map_err(|source| {
                        MemberError::WriteKeyShare {
                            path: path.clone(),
                            source,
                        }
                    })?;
                    info!("key share written to {}", path.display());
                }
            }
            Event::Coordinating { issued_at_ms } => info!(
                index,
                issued_at_ms, "coordinating the namespace record: collecting signature shares"
            ),
            Event::InvalidShare { member } => {
                warn!(index, member, "member sent an invalid signature share")
            }
            Event::SignRefused { member, code } => {
                warn!(index, member, %code, "refused to co-sign a namespace record")
            }
            Event::NamespaceSigned(record) => info!(
                index,
                expires_at_ms = record.expires_at_ms,
                "namespace record signed by the quorum: registering it"
            ),
            Event::NamespaceAdopted(record) => debug!(
                index,
                issued_at_ms = record.issued_at_ms,
                "namespace record in place"
            ),
            Event::PeerSigned(record) => debug!(index, seq = record.seq, "peer record signed"),
            Event::Registered {
                rendezvous,
                seq,
                first,
            } => {
                let at = self.rendezvous_peer(rendezvous);
                if first {
                    info!(index, rendezvous = %at, seq, "registered");
                } else {
                    debug!(index, rendezvous = %at, seq, "registration refreshed");
                }
            }
            Event::Refused {
                rendezvous,
                code,
                transport,
                class,
            } => {
                self.metrics.member_refusals.fetch_add(1, Ordering::Relaxed);
                let at = self.rendezvous_peer(rendezvous);
                debug!(index, rendezvous = %at, ?code, ?transport, ?class, "refused or unanswered");
            }
            Event::RendezvousDropped { rendezvous, code } => {
                let at = self.rendezvous_peer(rendezvous);
                warn!(index, rendezvous = %at, %code, "rendezvous node refused for good: no longer used (the others carry on)");
            }
            Event::Unregistered => info!(index, "unregistered"),
            Event::Failed(e) => {
                warn!(index, "{e}");
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Until the DKG starts, keeps dialling fellow members that are not
    /// connected.
    fn dial_members(&mut self) {
        for j in self.core.members_to_connect() {
            let Some(m) = self.quorum.member(j) else {
                continue;
            };
            let opts = DialOpts::peer_id(m.peer_id)
                .addresses(vec![m.addr.clone()])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            let _ = self.swarm.dial(opts);
        }
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Rr(request_response::Event::Message {
                peer,
                message,
                ..
            })) => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.on_request(peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(id) = self.in_flight.remove(&request_id) {
                        let response = match response {
                            Frame::Message(r) => Ok(r),
                            _ => Err(TransportError::Protocol),
                        };
                        self.core.handle_response(now_ms(), id, response);
                    }
                }
            },
            SwarmEvent::Behaviour(BehaviourEvent::Rr(
                request_response::Event::OutboundFailure {
                    request_id, error, ..
                },
            )) => {
                if let Some(id) = self.in_flight.remove(&request_id) {
                    self.core
                        .handle_response(now_ms(), id, Err(transport_error(&error)));
                }
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                if let Some(j) = self.quorum.index_of(&peer_id) {
                    self.core.handle_connected(now_ms(), j);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                if let Some(j) = self.quorum.index_of(&peer_id) {
                    self.core.handle_disconnected(j);
                }
            }
            _ => {}
        }
    }

    fn on_request(
        &mut self,
        peer: PeerId,
        frame: Frame<Request>,
        channel: ResponseChannel<Frame<Response>>,
    ) {
        let response = match frame {
            Frame::Message(request) => self.core.handle_request(now_ms(), &peer, request),
            Frame::Malformed(code) => Response::Rejected(code),
            Frame::Raw(_) => Response::Rejected(StatusCode::Decode),
        };
        let _ = self
            .swarm
            .behaviour_mut()
            .rr
            .send_response(channel, Frame::Message(response));
    }

    /// Withdraws this member's record from every rendezvous node that
    /// holds it (bounded wait), for a graceful shutdown.
    async fn unregister(&mut self) {
        self.core.shutdown(now_ms());
        let wait = async {
            while !self.core.is_shut_down() {
                // Errors here only report; the member is stopping anyway.
                let _ = self.flush();
                let event = self.swarm.select_next_some().await;
                self.on_event(event);
            }
        };
        let _ = tokio::time::timeout(UNREGISTER_WAIT, wait).await;
        info!(index = self.index, "stopping");
    }
}

fn transport_error(error: &OutboundFailure) -> TransportError {
    match error {
        OutboundFailure::DialFailure => TransportError::Unreachable,
        OutboundFailure::Timeout => TransportError::Timeout,
        OutboundFailure::ConnectionClosed => TransportError::ConnectionClosed,
        OutboundFailure::UnsupportedProtocols | OutboundFailure::Io(_) => TransportError::Protocol,
    }
}
