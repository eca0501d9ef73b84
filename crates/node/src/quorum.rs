//! The quorum member's driver.
//!
//! 1. **DKG** (when there is no key share yet): the `dkg` crate's
//!    [`DkgMember`] runs as is; this driver carries its messages as
//!    `Request::Dkg(bytes)` to the other members (addresses from the quorum
//!    file, the sender authenticated by the connection), resends what was
//!    not acknowledged, and calls `handle_timeout` at its deadlines. The run
//!    starts once every other member is connected (or a DKG message
//!    arrives, or the wait runs out), so members started by hand seconds
//!    apart still share their phases. The result is written to
//!    `DIR/key_share.json` (mode 0600, atomically).
//! 2. **Namespace**: a member that finds the namespace missing or past half
//!    its life (asking the rendezvous nodes) waits its turn (`index - 1`
//!    staggers, so the lowest-index online member goes first), builds the
//!    [`NamespaceRecord`], collects `threshold` signature shares with
//!    `Request::SignNamespace` (each share verified), combines them and
//!    registers the record everywhere. A `StaleEpoch` answer means another
//!    member got there first: harmless.
//! 3. **Peer record**: signed with the member's share, `seq` = the clock in
//!    ms (so a restart gets a higher seq), registered at every rendezvous
//!    node and refreshed at half the TTL. A rejection other than the
//!    transient ones ends the member with that code.
//! 4. **Shutdown** unregisters at every rendezvous node.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use dkg::{DkgConfig, DkgMember, DkgMessage, KeyShare, Phase, Signature, SignatureShare};
use libp2p::futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};
use rendezvous_proto::{
    Limits, NamespaceRecord, PeerRecord, QuorumKey, Request, Response, StatusCode,
};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::behaviour::{build_swarm, now_ms, split_p2p, Behaviour, BehaviourEvent, SwarmSettings};
use crate::codec::Frame;
use crate::metrics::Metrics;
use crate::quorum_file::QuorumFile;
use crate::rendezvous::{listen_all, StartError};

/// The key share file's name inside a data directory.
pub const KEY_SHARE_FILE: &str = "key_share.json";

/// How a member runs.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    /// The quorum file.
    pub quorum: QuorumFile,
    /// This member's index; `None` takes its position in the quorum file.
    /// (Tests set it to play an outsider claiming a seat.)
    pub index: Option<u32>,
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
    /// Counters for `--metrics`.
    pub metrics: Arc<Metrics>,
}

impl MemberConfig {
    /// A config with the defaults (TTL 2 h, DKG phases of 10 s).
    pub fn new(quorum: QuorumFile, rendezvous: Vec<Multiaddr>) -> Self {
        Self {
            quorum,
            index: None,
            rendezvous,
            key_share: None,
            key_share_path: None,
            ttl: Duration::from_secs(2 * 3600),
            dkg_phase_timeout: Duration::from_secs(10),
            metrics: Metrics::new(),
        }
    }
}

/// Why a member stopped with an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemberError {
    /// This node's PeerId is not in the quorum file.
    #[error("this node ({0}) is not a member of the quorum file")]
    NotAMember(PeerId),
    /// The DKG failed.
    #[error("DKG failed: {0}")]
    Dkg(String),
    /// A rendezvous node refused a registration.
    #[error("{what} rejected by {rendezvous}: {code}")]
    Rejected {
        /// What was refused (namespace or peer record).
        what: &'static str,
        /// Who refused it.
        rendezvous: PeerId,
        /// The rejection code.
        code: StatusCode,
    },
    /// Anything else (files, configuration).
    #[error("{0}")]
    Other(String),
}

impl MemberError {
    /// The rejection code, if a rendezvous refused something.
    pub fn code(&self) -> Option<StatusCode> {
        match self {
            MemberError::Rejected { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// What a running member reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberStatus {
    /// The quorum key, once the member has a key share.
    pub quorum_key: Option<QuorumKey>,
    /// The key share itself (in-process callers keep it to restart the
    /// member; its `Debug` does not show the secret).
    pub key_share: Option<KeyShare>,
    /// Rendezvous nodes that accepted this member's latest peer record.
    pub registered_at: usize,
    /// Whether this member has seen its namespace registered.
    pub namespace_registered: bool,
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

    /// Waits for the member to stop on its own (a rejection, a DKG failure).
    pub async fn join(self) -> Result<(), MemberError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(MemberError::Other(format!("member task: {e}"))),
        }
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
pub async fn bind(keypair: Keypair, listen: &[Multiaddr]) -> Result<BoundMember, StartError> {
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

impl BoundMember {
    /// Starts the member as a tokio task.
    pub fn start(self, config: MemberConfig) -> Result<MemberHandle, MemberError> {
        let me = match config.index {
            Some(i) => i,
            None => config
                .quorum
                .index_of(&self.peer_id)
                .ok_or(MemberError::NotAMember(self.peer_id))?,
        };
        let (status_tx, status_rx) = watch::channel(MemberStatus::default());
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
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
            return Err(MemberError::Other(
                "no usable --rendezvous address (each must end with /p2p/<peer id>)".into(),
            ));
        }
        let ttl_ms = config.ttl.as_millis().max(2) as u64;
        let member = Member {
            swarm: self.swarm,
            me,
            peer_id: self.peer_id,
            listen_addrs: self.listen_addrs.clone(),
            key_share: config.key_share.clone(),
            rendezvous,
            ttl_ms,
            stagger_ms: (ttl_ms / 8).clamp(1, 2_000),
            metrics: config.metrics.clone(),
            status: status_tx,
            config,
            pending: HashMap::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            connected: BTreeSet::new(),
            dkg: None,
            dkg_wait_until: 0,
            dkg_buffer: Vec::new(),
            ns_check_at: None,
            turn_at: None,
            check: None,
            coordination: None,
            coordination_round: 0,
            peer_refresh_at: None,
            peer_seq: 0,
            unknown_ns_retries: 0,
            registered: BTreeSet::new(),
            fatal: None,
        };
        let task = tokio::spawn(member.run(shutdown_rx));
        Ok(MemberHandle {
            peer_id: self.peer_id,
            listen_addrs: self.listen_addrs,
            status: status_rx,
            shutdown: Some(shutdown_tx),
            task,
        })
    }
}

/// What an outstanding request was for.
#[derive(Debug)]
enum Pending {
    Dkg { to: u32, bytes: Vec<u8> },
    Sign { round: u64, member: u32 },
    Check { rendezvous: usize },
    RegisterNamespace { round: u64, rendezvous: usize },
    RegisterPeer { rendezvous: usize, seq: u64 },
    Unregister,
}

/// Things to do later.
#[derive(Debug)]
enum Timer {
    DkgResend { to: u32, bytes: Vec<u8> },
    SignRetry { round: u64, member: u32 },
    CoordinationTimeout { round: u64 },
    PeerRetry { rendezvous: usize },
}

/// A namespace check in progress: the best verified expiry seen so far.
struct Check {
    outstanding: usize,
    best_expiry: Option<u64>,
    is_turn: bool,
}

/// A namespace registration this member coordinates.
struct Coordination {
    round: u64,
    record: NamespaceRecord,
    message: Vec<u8>,
    shares: BTreeMap<u32, SignatureShare>,
    registering: usize,
    accepted: bool,
}

struct Member {
    swarm: Swarm<Behaviour>,
    config: MemberConfig,
    me: u32,
    peer_id: PeerId,
    listen_addrs: Vec<Multiaddr>,
    key_share: Option<KeyShare>,
    rendezvous: Vec<(PeerId, Multiaddr)>,
    ttl_ms: u64,
    stagger_ms: u64,
    metrics: Arc<Metrics>,
    status: watch::Sender<MemberStatus>,
    pending: HashMap<OutboundRequestId, Pending>,
    timers: BTreeMap<(u64, u64), Timer>,
    timer_seq: u64,
    connected: BTreeSet<PeerId>,
    // DKG
    dkg: Option<DkgMember>,
    dkg_wait_until: u64,
    dkg_buffer: Vec<(u32, DkgMessage)>,
    // namespace
    ns_check_at: Option<u64>,
    turn_at: Option<u64>,
    check: Option<Check>,
    coordination: Option<Coordination>,
    coordination_round: u64,
    // peer record
    peer_refresh_at: Option<u64>,
    peer_seq: u64,
    unknown_ns_retries: u32,
    registered: BTreeSet<usize>,
    /// An error raised inside a handler, ending the run.
    fatal: Option<MemberError>,
}

const RETRY_MS: u64 = 500;
const MAX_UNKNOWN_NAMESPACE_RETRIES: u32 = 60;

impl Member {
    async fn run(mut self, mut shutdown: oneshot::Receiver<()>) -> Result<(), MemberError> {
        let now = now_ms();
        match &self.key_share {
            Some(share) => {
                info!(index = self.me, quorum_key = %QuorumKey::from(share.quorum_key()), "key share loaded: skipping the DKG");
                self.on_key_share();
                self.ns_check_at = Some(now);
            }
            None => {
                info!(
                    index = self.me,
                    n = self.config.quorum.n(),
                    threshold = self.config.quorum.threshold,
                    "no key share: waiting for the other members to run the DKG"
                );
                self.dkg_wait_until = now + 6 * self.config.dkg_phase_timeout.as_millis() as u64;
                self.dial_members();
            }
        }
        loop {
            self.maybe_start_dkg(now_ms())?;
            let wake = self.next_wake();
            let sleep = wake.map_or(Duration::from_secs(3600), |at| {
                Duration::from_millis(at.saturating_sub(now_ms()))
            });
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_event(event)?,
                _ = tokio::time::sleep(sleep) => self.on_timers()?,
                _ = &mut shutdown => {
                    self.unregister().await;
                    return Ok(());
                }
            }
            if let Some(e) = self.fatal.take() {
                return Err(e);
            }
        }
    }

    fn set_timer(&mut self, at: u64, timer: Timer) {
        self.timer_seq += 1;
        self.timers.insert((at, self.timer_seq), timer);
    }

    fn next_wake(&self) -> Option<u64> {
        let mut wake: Option<u64> = None;
        let mut consider = |t: Option<u64>| {
            if let Some(t) = t {
                wake = Some(wake.map_or(t, |w| w.min(t)));
            }
        };
        consider(self.timers.keys().next().map(|(at, _)| *at));
        consider(self.dkg.as_ref().and_then(|d| d.poll_deadline()));
        if self.dkg.is_none() && self.key_share.is_none() {
            // Redial missing members every second until the DKG starts.
            consider(Some(now_ms() + 1000));
        }
        consider(self.ns_check_at);
        consider(self.peer_refresh_at);
        wake
    }

    fn publish_status(&self) {
        let status = MemberStatus {
            quorum_key: self
                .key_share
                .as_ref()
                .map(|k| QuorumKey::from(k.quorum_key())),
            key_share: self.key_share.clone(),
            registered_at: self.registered.len(),
            namespace_registered: self.peer_refresh_at.is_some(),
        };
        self.status.send_replace(status);
    }

    fn send(&mut self, peer: PeerId, addr: Option<Multiaddr>, request: Request, what: Pending) {
        let id = self.swarm.behaviour_mut().rr.send_request_with_addresses(
            &peer,
            Frame::Message(request),
            addr.into_iter().collect(),
        );
        self.pending.insert(id, what);
    }

    fn member_addr(&self, index: u32) -> Option<(PeerId, Multiaddr)> {
        self.config
            .quorum
            .member(index)
            .map(|m| (m.peer_id, m.addr.clone()))
    }

    // ----- DKG ----------------------------------------------------------------

    fn dial_members(&mut self) {
        for index in 1..=self.config.quorum.n() {
            if index == self.me {
                continue;
            }
            let Some((peer, addr)) = self.member_addr(index) else {
                continue;
            };
            if self.connected.contains(&peer) {
                continue;
            }
            let opts = DialOpts::peer_id(peer)
                .addresses(vec![addr])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            let _ = self.swarm.dial(opts);
        }
    }

    fn others_connected(&self) -> bool {
        (1..=self.config.quorum.n())
            .filter(|i| *i != self.me)
            .filter_map(|i| self.config.quorum.member(i))
            .all(|m| self.connected.contains(&m.peer_id))
    }

    fn maybe_start_dkg(&mut self, now: u64) -> Result<(), MemberError> {
        if self.dkg.is_some() || self.key_share.is_some() {
            return Ok(());
        }
        let go =
            self.others_connected() || !self.dkg_buffer.is_empty() || now >= self.dkg_wait_until;
        if !go {
            return Ok(());
        }
        let quorum = &self.config.quorum;
        let members: Vec<Vec<u8>> = quorum
            .members
            .iter()
            .map(|m| m.peer_id.to_bytes())
            .collect();
        // Every member derives the same session from the same file.
        let mut nonce = b"rdht/quorum-file/v1".to_vec();
        nonce.extend_from_slice(quorum.kind.as_deref().unwrap_or("").as_bytes());
        let config = DkgConfig::new(
            &members,
            quorum.threshold,
            &nonce,
            self.me,
            self.config.dkg_phase_timeout.as_millis().max(1) as u64,
        )
        .map_err(|e| MemberError::Dkg(e.to_string()))?;
        info!(index = self.me, "DKG started");
        self.dkg = Some(DkgMember::new(config, now, &mut rand::rngs::OsRng));
        for (from, message) in std::mem::take(&mut self.dkg_buffer) {
            if let Some(dkg) = self.dkg.as_mut() {
                if let Err(e) = dkg.handle_message(now, from, message) {
                    debug!(from, "DKG message refused: {e}");
                }
            }
        }
        self.after_dkg_step(Phase::Deal)
    }

    /// Sends what the DKG queued, counts rounds, and takes the result.
    fn after_dkg_step(&mut self, before: Phase) -> Result<(), MemberError> {
        let Some(dkg) = self.dkg.as_mut() else {
            return Ok(());
        };
        let mut outgoing = Vec::new();
        while let Some(t) = dkg.poll_transmit() {
            outgoing.push(t);
        }
        let after = dkg.phase();
        let rounds = phase_number(after).saturating_sub(phase_number(before));
        self.metrics.dkg_rounds.fetch_add(rounds, Ordering::Relaxed);
        if after != before {
            debug!(index = self.me, ?after, "DKG phase");
        }
        for t in outgoing {
            let bytes = t.message.encode();
            let targets: Vec<u32> = match t.to {
                dkg::Destination::Member(j) => vec![j],
                dkg::Destination::All => (1..=self.config.quorum.n())
                    .filter(|j| *j != self.me)
                    .collect(),
            };
            for j in targets {
                self.send_dkg(j, bytes.clone());
            }
        }
        if after == Phase::Finished {
            let outcome = self.dkg.as_mut().and_then(|d| d.take_outcome());
            match outcome {
                Some(Ok(output)) => {
                    info!(
                        index = self.me,
                        quorum_key = %QuorumKey::from(output.key_share.quorum_key()),
                        qual = ?output.qual,
                        transcript = %hex::encode(output.transcript_hash.0),
                        "DKG finished"
                    );
                    if let Some(path) = &self.config.key_share_path {
                        let json = zeroize::Zeroizing::new(
                            serde_json::to_vec_pretty(&output.key_share)
                                .map_err(|e| MemberError::Other(e.to_string()))?,
                        );
                        crate::identity::write_secret_file(path, &json)
                            .map_err(|e| MemberError::Other(format!("{}: {e}", path.display())))?;
                        info!("key share written to {}", path.display());
                    }
                    self.key_share = Some(output.key_share);
                    self.on_key_share();
                    self.ns_check_at = Some(now_ms());
                }
                Some(Err(e)) => return Err(MemberError::Dkg(e.to_string())),
                None => {}
            }
        }
        Ok(())
    }

    fn send_dkg(&mut self, to: u32, bytes: Vec<u8>) {
        let Some((peer, addr)) = self.member_addr(to) else {
            return;
        };
        self.send(
            peer,
            Some(addr),
            Request::Dkg(bytes.clone()),
            Pending::Dkg { to, bytes },
        );
    }

    fn on_key_share(&mut self) {
        self.publish_status();
    }

    fn on_dkg_request(&mut self, from: u32, bytes: &[u8]) -> Response {
        let message = match DkgMessage::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                debug!(from, "undecodable DKG message: {e}");
                return Response::Rejected(StatusCode::Decode);
            }
        };
        self.metrics.dkg_messages.fetch_add(1, Ordering::Relaxed);
        if self.key_share.is_some() {
            // Done already: a resend whose acknowledgement was lost.
            return Response::DkgAccepted;
        }
        let now = now_ms();
        match self.dkg.as_mut() {
            None => self.dkg_buffer.push((from, message)),
            Some(dkg) => {
                let before = dkg.phase();
                if let Err(e) = dkg.handle_message(now, from, message) {
                    debug!(from, "DKG message refused: {e}");
                }
                if let Err(e) = self.after_dkg_step(before) {
                    warn!("{e}");
                    self.fatal = Some(e);
                }
            }
        }
        Response::DkgAccepted
    }

    // ----- events ----------------------------------------------------------------

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) -> Result<(), MemberError> {
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
                    if let Some(what) = self.pending.remove(&request_id) {
                        let response = match response {
                            Frame::Message(r) => Ok(r),
                            other => Err(format!("unexpected frame {other:?}")),
                        };
                        self.on_response(peer, what, response)?;
                    }
                }
            },
            SwarmEvent::Behaviour(BehaviourEvent::Rr(
                request_response::Event::OutboundFailure {
                    peer,
                    request_id,
                    error,
                    ..
                },
            )) => {
                if let Some(what) = self.pending.remove(&request_id) {
                    self.on_response(peer, what, Err(error.to_string()))?;
                }
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                self.connected.insert(peer_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.connected.remove(&peer_id);
            }
            _ => {}
        }
        Ok(())
    }

    fn on_request(
        &mut self,
        peer: PeerId,
        frame: Frame<Request>,
        channel: ResponseChannel<Frame<Response>>,
    ) {
        let response = match frame {
            Frame::Message(request) => match self.config.quorum.index_of(&peer) {
                // Only fellow members, authenticated by the connection, may
                // talk DKG or ask for signatures.
                None => Response::Rejected(StatusCode::NotAMember),
                Some(from) => match request {
                    Request::Dkg(bytes) => self.on_dkg_request(from, &bytes),
                    Request::SignNamespace(record) => self.on_sign_request(from, &record),
                    _ => Response::Rejected(StatusCode::NotAuthorized),
                },
            },
            Frame::Malformed(code) => Response::Rejected(code),
            Frame::Raw(_) => Response::Rejected(StatusCode::Decode),
        };
        let _ = self
            .swarm
            .behaviour_mut()
            .rr
            .send_response(channel, Frame::Message(response));
    }

    fn on_sign_request(&mut self, from: u32, record: &NamespaceRecord) -> Response {
        let Some(share) = &self.key_share else {
            // Still in the DKG: the coordinator asks again.
            return Response::Rejected(StatusCode::UnknownNamespace);
        };
        if let Err(code) = check_sign_request(
            record,
            share,
            &self.config.quorum,
            now_ms(),
            &Limits::DEFAULT,
        ) {
            warn!(from, %code, "refused to co-sign a namespace record");
            return Response::Rejected(code);
        }
        let signature = share.secret.sign(&record.signing_bytes());
        debug!(from, "co-signed the namespace record");
        // A coordinator is at work: look again soon instead of waiting our
        // turn.
        let soon = now_ms() + 300;
        if self.ns_check_at.is_none_or(|t| t > soon) && self.check.is_none() {
            self.ns_check_at = Some(soon);
        }
        Response::NamespaceShare {
            index: signature.index,
            signature: signature.signature.to_bytes(),
        }
    }

    fn on_response(
        &mut self,
        peer: PeerId,
        what: Pending,
        response: Result<Response, String>,
    ) -> Result<(), MemberError> {
        let now = now_ms();
        match what {
            Pending::Dkg { to, bytes } => match response {
                Ok(Response::DkgAccepted) => {}
                Ok(other) => debug!(to, "DKG message refused: {other:?}"),
                Err(e) => {
                    // Not up yet, or the connection dropped: resend while the
                    // run can still use it.
                    debug!(to, "DKG send failed: {e}");
                    let horizon = 4 * self.config.dkg_phase_timeout.as_millis() as u64;
                    if self.key_share.is_none() || now < self.dkg_wait_until + horizon {
                        self.set_timer(now + RETRY_MS, Timer::DkgResend { to, bytes });
                    }
                }
            },
            Pending::Sign { round, member } => self.on_share(round, member, response),
            Pending::Check { rendezvous } => self.on_check_answer(rendezvous, response),
            Pending::RegisterNamespace { round, rendezvous } => {
                self.on_namespace_registered(peer, round, rendezvous, response)?
            }
            Pending::RegisterPeer { rendezvous, seq } => {
                self.on_peer_registered(peer, rendezvous, seq, response)?
            }
            Pending::Unregister => {}
        }
        Ok(())
    }

    fn on_timers(&mut self) -> Result<(), MemberError> {
        let now = now_ms();
        if let Some(dkg) = self.dkg.as_mut() {
            if dkg.poll_deadline().is_some_and(|d| d <= now) {
                let before = dkg.phase();
                dkg.handle_timeout(now);
                self.after_dkg_step(before)?;
            }
        }
        if self.dkg.is_none() && self.key_share.is_none() {
            self.dial_members();
        }
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let timer = entry.remove();
            match timer {
                Timer::DkgResend { to, bytes } => self.send_dkg(to, bytes),
                Timer::SignRetry { round, member } => {
                    if let Some(c) = &self.coordination {
                        if c.round == round && !c.shares.contains_key(&member) {
                            let record = c.record.clone();
                            self.ask_share(round, member, record);
                        }
                    }
                }
                Timer::CoordinationTimeout { round } => {
                    if self
                        .coordination
                        .as_ref()
                        .is_some_and(|c| c.round == round && !c.accepted)
                    {
                        warn!("could not collect enough signature shares in time; will retry");
                        self.coordination = None;
                        self.ns_check_at = Some(now + self.stagger_ms);
                    }
                }
                Timer::PeerRetry { rendezvous } => self.register_peer_at(rendezvous),
            }
        }
        if self.ns_check_at.is_some_and(|t| t <= now)
            && self.check.is_none()
            && self.coordination.is_none()
        {
            self.ns_check_at = None;
            self.start_check(now);
        }
        if self.peer_refresh_at.is_some_and(|t| t <= now) {
            self.peer_refresh_at = Some(now + self.ttl_ms / 2);
            self.peer_seq = now.max(self.peer_seq + 1);
            for rendezvous in 0..self.rendezvous.len() {
                self.register_peer_at(rendezvous);
            }
        }
        Ok(())
    }

    // ----- namespace -------------------------------------------------------------

    fn start_check(&mut self, now: u64) {
        let Some(share) = &self.key_share else {
            return;
        };
        let quorum_key = QuorumKey::from(share.quorum_key());
        let is_turn = self.turn_at.is_some_and(|t| t <= now) || self.me == 1;
        self.check = Some(Check {
            outstanding: self.rendezvous.len(),
            best_expiry: None,
            is_turn,
        });
        for rendezvous in 0..self.rendezvous.len() {
            let (peer, addr) = self.rendezvous[rendezvous].clone();
            let request = Request::Discover {
                quorum_key,
                limit: 1,
                cookie: None,
            };
            self.send(peer, Some(addr), request, Pending::Check { rendezvous });
        }
    }

    fn on_check_answer(&mut self, rendezvous: usize, response: Result<Response, String>) {
        let now = now_ms();
        let expiry = match (&response, &self.key_share) {
            (Ok(Response::Discovered(answer)), Some(share)) => {
                let ours = answer.namespace.commitments
                    == share
                        .public_key_set
                        .commitments()
                        .iter()
                        .map(|c| c.to_bytes())
                        .collect::<Vec<_>>();
                let valid =
                    rendezvous_proto::verify_namespace(&answer.namespace, now, &Limits::DEFAULT)
                        .is_ok();
                (ours && valid).then_some(answer.namespace.expires_at_ms)
            }
            _ => None,
        };
        if let Err(e) = &response {
            debug!(rendezvous, "namespace check failed: {e}");
        }
        let Some(check) = self.check.as_mut() else {
            return;
        };
        check.best_expiry = check.best_expiry.max(expiry);
        check.outstanding = check.outstanding.saturating_sub(1);
        if check.outstanding > 0 {
            return;
        }
        let Some(check) = self.check.take() else {
            return;
        };
        let fresh_until = check.best_expiry.map(|e| e.saturating_sub(self.ttl_ms / 2));
        match fresh_until {
            Some(t) if t > now => {
                self.turn_at = None;
                self.ns_check_at = Some(t);
                self.namespace_ready();
            }
            _ if check.is_turn => self.coordinate(now),
            _ => {
                let at = now + u64::from(self.me.saturating_sub(1)) * self.stagger_ms;
                self.turn_at = Some(at);
                self.ns_check_at = Some(at);
            }
        }
    }

    fn coordinate(&mut self, now: u64) {
        let Some(share) = &self.key_share else {
            return;
        };
        let quorum = &self.config.quorum;
        let record = NamespaceRecord {
            commitments: share
                .public_key_set
                .commitments()
                .iter()
                .map(|c| c.to_bytes())
                .collect(),
            n: quorum.n(),
            epoch: 0,
            kind: quorum.kind.clone(),
            members: Some(quorum.members.iter().map(|m| m.peer_id).collect()),
            issued_at_ms: now,
            expires_at_ms: now + self.ttl_ms,
            signature: [0; rendezvous_proto::records::G2_BYTES],
        };
        let message = record.signing_bytes();
        let own = share.secret.sign(&message);
        self.coordination_round += 1;
        let round = self.coordination_round;
        info!(
            index = self.me,
            round, "coordinating the namespace registration: collecting signature shares"
        );
        let mut shares = BTreeMap::new();
        shares.insert(own.index, own);
        self.coordination = Some(Coordination {
            round,
            record: record.clone(),
            message,
            shares,
            registering: 0,
            accepted: false,
        });
        let deadline = now + (4 * self.config.dkg_phase_timeout.as_millis() as u64).max(10_000);
        self.set_timer(deadline, Timer::CoordinationTimeout { round });
        for member in 1..=self.config.quorum.n() {
            if member != self.me {
                self.ask_share(round, member, record.clone());
            }
        }
        self.maybe_register_namespace();
    }

    fn ask_share(&mut self, round: u64, member: u32, record: NamespaceRecord) {
        let Some((peer, addr)) = self.member_addr(member) else {
            return;
        };
        self.send(
            peer,
            Some(addr),
            Request::SignNamespace(record),
            Pending::Sign { round, member },
        );
    }

    fn on_share(&mut self, round: u64, member: u32, response: Result<Response, String>) {
        let now = now_ms();
        let Some(c) = self.coordination.as_mut() else {
            return;
        };
        if c.round != round || c.registering > 0 || c.accepted {
            return;
        }
        match response {
            Ok(Response::NamespaceShare { index, signature }) if index == member => {
                let Some(share) = &self.key_share else {
                    return;
                };
                let verified = Signature::from_bytes(&signature)
                    .ok()
                    .map(|signature| SignatureShare { index, signature })
                    .filter(|s| share.public_key_set.verify_share(&c.message, s));
                match verified {
                    Some(s) => {
                        c.shares.insert(index, s);
                    }
                    None => warn!(member, "member sent an invalid signature share"),
                }
            }
            other => {
                debug!(member, "no signature share yet: {other:?}");
                self.set_timer(
                    now + RETRY_MS.max(self.stagger_ms / 2),
                    Timer::SignRetry { round, member },
                );
            }
        }
        self.maybe_register_namespace();
    }

    fn maybe_register_namespace(&mut self) {
        let Some(share) = &self.key_share else {
            return;
        };
        let threshold = share.threshold();
        let Some(c) = self.coordination.as_mut() else {
            return;
        };
        if c.registering > 0 || (c.shares.len() as u32) < threshold {
            return;
        }
        let shares: Vec<SignatureShare> = c.shares.values().copied().collect();
        let signature = match dkg::combine_signatures(threshold, share.n, &shares) {
            Ok(s) => s,
            Err(e) => {
                warn!("combining signature shares: {e}");
                return;
            }
        };
        if !share.quorum_key().verify(&c.message, &signature) {
            warn!("combined namespace signature does not verify; retrying");
            c.shares.retain(|i, _| *i == share.index());
            return;
        }
        c.record.signature = signature.to_bytes();
        c.registering = self.rendezvous.len();
        let round = c.round;
        let record = c.record.clone();
        info!(
            shares = shares.len(),
            threshold, "namespace record signed by the quorum: registering it"
        );
        for rendezvous in 0..self.rendezvous.len() {
            let (peer, addr) = self.rendezvous[rendezvous].clone();
            self.send(
                peer,
                Some(addr),
                Request::RegisterNamespace(record.clone()),
                Pending::RegisterNamespace { round, rendezvous },
            );
        }
    }

    fn on_namespace_registered(
        &mut self,
        peer: PeerId,
        round: u64,
        rendezvous: usize,
        response: Result<Response, String>,
    ) -> Result<(), MemberError> {
        let now = now_ms();
        let Some(c) = self.coordination.as_mut() else {
            return Ok(());
        };
        if c.round != round {
            return Ok(());
        }
        c.registering = c.registering.saturating_sub(1);
        match response {
            Ok(Response::Registered { .. }) => {
                info!(rendezvous = %peer, "namespace registered");
                c.accepted = true;
            }
            // Another member registered a newer record first.
            Ok(Response::Rejected(StatusCode::StaleEpoch)) => c.accepted = true,
            Ok(Response::Rejected(code)) => {
                return Err(MemberError::Rejected {
                    what: "namespace record",
                    rendezvous: peer,
                    code,
                });
            }
            Ok(other) => warn!(rendezvous, "unexpected answer {other:?}"),
            Err(e) => warn!(rendezvous = %peer, "namespace registration not delivered: {e}"),
        }
        if c.registering == 0 {
            let accepted = c.accepted;
            let expires = c.record.expires_at_ms;
            self.coordination = None;
            if accepted {
                self.turn_at = None;
                self.ns_check_at = Some(expires.saturating_sub(self.ttl_ms / 2));
                self.namespace_ready();
            } else {
                self.ns_check_at = Some(now + self.stagger_ms);
            }
        }
        Ok(())
    }

    // ----- peer record ------------------------------------------------------------

    /// The namespace is registered: register (or keep refreshing) this
    /// member's own record.
    fn namespace_ready(&mut self) {
        if self.peer_refresh_at.is_none() {
            self.peer_refresh_at = Some(now_ms());
            self.publish_status();
        }
    }

    fn peer_record(&self) -> Option<PeerRecord> {
        let share = self.key_share.as_ref()?;
        let limits = Limits::DEFAULT;
        let addrs: Vec<Multiaddr> = self
            .listen_addrs
            .iter()
            .filter(|a| a.as_ref().len() <= limits.max_addr_bytes)
            .take(limits.max_addrs)
            .cloned()
            .collect();
        Some(PeerRecord::sign(
            QuorumKey::from(share.quorum_key()),
            0,
            self.peer_id,
            addrs,
            self.peer_seq,
            now_ms() + self.ttl_ms,
            &share.secret,
        ))
    }

    fn register_peer_at(&mut self, rendezvous: usize) {
        let Some(record) = self.peer_record() else {
            return;
        };
        let Some((peer, addr)) = self.rendezvous.get(rendezvous).cloned() else {
            return;
        };
        let seq = record.seq;
        self.send(
            peer,
            Some(addr),
            Request::RegisterPeer(record),
            Pending::RegisterPeer { rendezvous, seq },
        );
    }

    fn on_peer_registered(
        &mut self,
        peer: PeerId,
        rendezvous: usize,
        seq: u64,
        response: Result<Response, String>,
    ) -> Result<(), MemberError> {
        let now = now_ms();
        match response {
            Ok(Response::Registered { ttl_ms }) => {
                if self.registered.insert(rendezvous) {
                    info!(index = self.me, rendezvous = %peer, ttl_ms, "registered");
                } else {
                    debug!(index = self.me, rendezvous = %peer, "registration refreshed");
                }
                self.unknown_ns_retries = 0;
                self.publish_status();
            }
            Ok(Response::Rejected(StatusCode::UnknownNamespace))
                if self.unknown_ns_retries < MAX_UNKNOWN_NAMESPACE_RETRIES =>
            {
                // The namespace has not reached this node yet.
                self.unknown_ns_retries += 1;
                self.set_timer(now + RETRY_MS, Timer::PeerRetry { rendezvous });
            }
            // A newer registration of ours overtook this one.
            Ok(Response::Rejected(StatusCode::StaleSequence)) if seq < self.peer_seq => {}
            Ok(Response::Rejected(code)) => {
                self.registered.remove(&rendezvous);
                self.publish_status();
                warn!(index = self.me, rendezvous = %peer, %code, "registration rejected");
                return Err(MemberError::Rejected {
                    what: "peer record",
                    rendezvous: peer,
                    code,
                });
            }
            Ok(other) => warn!("unexpected answer to a registration: {other:?}"),
            Err(e) => {
                debug!(rendezvous = %peer, "registration not delivered: {e}");
                self.registered.remove(&rendezvous);
                self.publish_status();
                self.set_timer(now + 2 * RETRY_MS, Timer::PeerRetry { rendezvous });
            }
        }
        Ok(())
    }

    /// Withdraws this member's record from every rendezvous node (bounded
    /// wait), for a graceful shutdown.
    async fn unregister(&mut self) {
        let Some(share) = &self.key_share else {
            return;
        };
        let quorum_key = QuorumKey::from(share.quorum_key());
        let mut waiting = BTreeSet::new();
        for (peer, addr) in self.rendezvous.clone() {
            let request = Request::Unregister {
                quorum_key,
                index: self.me,
            };
            let id = self.swarm.behaviour_mut().rr.send_request_with_addresses(
                &peer,
                Frame::Message(request),
                vec![addr],
            );
            self.pending.insert(id, Pending::Unregister);
            waiting.insert(id);
        }
        let wait = async {
            while !waiting.is_empty() {
                match self.swarm.select_next_some().await {
                    SwarmEvent::Behaviour(BehaviourEvent::Rr(
                        request_response::Event::Message {
                            message: request_response::Message::Response { request_id, .. },
                            ..
                        },
                    ))
                    | SwarmEvent::Behaviour(BehaviourEvent::Rr(
                        request_response::Event::OutboundFailure { request_id, .. },
                    )) => {
                        waiting.remove(&request_id);
                    }
                    _ => {}
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(3), wait).await;
        info!(index = self.me, "unregistered; stopping");
    }
}

/// Whether a member may co-sign a namespace record a fellow member asks it
/// to sign: it must describe exactly this quorum (its key set, size, kind,
/// member list), at epoch 0, issued no later than a minute from now and
/// expiring within the protocol's maximum TTL. A member never signs
/// anything else with its share.
pub fn check_sign_request(
    record: &NamespaceRecord,
    share: &KeyShare,
    quorum: &QuorumFile,
    now_ms: u64,
    limits: &Limits,
) -> Result<(), StatusCode> {
    let ours: Vec<[u8; rendezvous_proto::records::G1_BYTES]> = share
        .public_key_set
        .commitments()
        .iter()
        .map(|c| c.to_bytes())
        .collect();
    if record.commitments != ours || record.n != share.n || record.n != quorum.n() {
        return Err(StatusCode::NotAuthorized);
    }
    if record.kind != quorum.kind || record.epoch != 0 {
        return Err(StatusCode::NotAuthorized);
    }
    let members: Vec<PeerId> = quorum.members.iter().map(|m| m.peer_id).collect();
    if record.members.as_ref() != Some(&members) {
        return Err(StatusCode::NotAMember);
    }
    if record.issued_at_ms > now_ms + 60_000 {
        return Err(StatusCode::InvalidParameters);
    }
    rendezvous_proto::validate::check_expiry(record.expires_at_ms, now_ms, limits)
}

fn phase_number(p: Phase) -> u64 {
    match p {
        Phase::Deal => 0,
        Phase::Response => 1,
        Phase::Justification => 2,
        Phase::Finished => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum_file::Member;
    use rand_core::SeedableRng;

    #[test]
    fn members_only_sign_their_own_namespace() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let q = rendezvous_proto::testkit::TestQuorum::deal(3, 2, &mut rng);
        let file = QuorumFile {
            threshold: 2,
            kind: Some("farmer".into()),
            members: (1..=3)
                .map(|i| Member {
                    peer_id: q.peer_id(i),
                    addr: "/ip4/127.0.0.1/tcp/1".parse().unwrap(),
                })
                .collect(),
        };
        let now = 1_000_000;
        let limits = Limits::DEFAULT;
        let share = &q.shares[0];
        let good = q.namespace_unsigned(0, Some("farmer"), true, now, now + 60_000);
        assert_eq!(
            check_sign_request(&good, share, &file, now, &limits),
            Ok(())
        );
        let other = rendezvous_proto::testkit::TestQuorum::deal(3, 2, &mut rng);
        let foreign = other.namespace_unsigned(0, Some("farmer"), true, now, now + 60_000);
        assert_eq!(
            check_sign_request(&foreign, share, &file, now, &limits),
            Err(StatusCode::NotAuthorized)
        );
        let mut wrong_kind = good.clone();
        wrong_kind.kind = Some("harvester".into());
        assert!(check_sign_request(&wrong_kind, share, &file, now, &limits).is_err());
        let mut no_members = good.clone();
        no_members.members = None;
        assert_eq!(
            check_sign_request(&no_members, share, &file, now, &limits),
            Err(StatusCode::NotAMember)
        );
        let mut too_long = good.clone();
        too_long.expires_at_ms = now + limits.max_ttl_ms + 1;
        assert_eq!(
            check_sign_request(&too_long, share, &file, now, &limits),
            Err(StatusCode::TtlTooLong)
        );
    }
}
