//! The member role as one `NetworkBehaviour`: the sans-IO
//! [`member::Member`] core with `/rdht/rendezvous/2.0.0` (requests to
//! fellow members and rendezvous nodes, answers to fellow members) and
//! ping (rendezvous nodes check a member's liveness by pinging it) under
//! it.
//!
//! Every protocol decision (when the DKG starts, who coordinates the
//! namespace, what a member co-signs, what each rendezvous answer means,
//! when to retry, refresh or give up) is the core's; this behaviour
//! carries its requests, hands back answers, connection events and
//! timeouts, dials fellow members until the DKG starts, and reports the
//! core's [`member::Event`]s as its own. Writing a new key share
//! somewhere safe is the application's part (`Event::DkgFinished`,
//! `Event::ReshareFinished`): the `rdht` binary writes `key_share.json`
//! ([`super::BoundMember::start`]).
//!
//! A member's record carries the addresses it is reached at, known once
//! its swarm listens: the behaviour is created idle ([`Behaviour::new`],
//! answering pings only) and started with them ([`Behaviour::start`]):
//!
//! ```no_run
//! # async fn run(quorum: node::quorum_file::QuorumFile, rendezvous: Vec<libp2p::Multiaddr>, share: dkg::KeyShare)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use libp2p::futures::StreamExt;
//! use node::quorum::{self, MemberConfig};
//!
//! let identity = libp2p::identity::Keypair::generate_ed25519();
//! let mut swarm = node::behaviour::build_swarm_with(
//!     identity.clone(),
//!     &node::behaviour::SwarmSettings::default(),
//!     |_| quorum::Behaviour::new(),
//! )?;
//! let addrs = node::behaviour::listen_all(&mut swarm, &["/ip4/0.0.0.0/tcp/4001".parse()?]).await?;
//! let mut config = MemberConfig::new(quorum, rendezvous);
//! config.key_share = Some(share);
//! swarm.behaviour_mut().start(identity, &config, addrs)?;
//! while let Some(event) = swarm.next().await {
//!     if let libp2p::swarm::SwarmEvent::Behaviour(member::Event::Registered { rendezvous, .. }) = event {
//!         println!("registered at rendezvous node #{rendezvous}");
//!     }
//! }
//! # Ok(()) }
//! ```

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use dkg::KeyShare;
use libp2p::identity::Keypair;
use libp2p::request_response::{
    self, OutboundFailure, OutboundRequestId, ProtocolSupport, ResponseChannel,
};
use libp2p::swarm::dial_opts::PeerCondition;
use libp2p::swarm::{FromSwarm, NetworkBehaviour, THandler, THandlerInEvent, ToSwarm};
use libp2p::{ping, Multiaddr, PeerId};
use member::{Event, Member, Peer, RequestId, TransportError};
use rendezvous_proto::{QuorumKey, Request, Response, StatusCode};
use tracing::{info, warn};

use super::{core_config, start_of, MemberConfig, MemberError, MemberStatus};
use crate::behaviour::{now_ms, poll_inner, split_p2p, Alarm};
use crate::codec::{Frame, RdhtCodec, PROTOCOL};
use crate::metrics::Metrics;
use crate::quorum_file::{Mode, QuorumFile};

/// Rounds of work one `poll` does before it yields (and asks to be polled
/// again at once).
const MAX_ROUNDS_PER_POLL: usize = 64;

/// How often fellow members that are not connected are dialled, until the
/// DKG starts.
const REDIAL_EVERY: Duration = Duration::from_secs(1);

// The derive generates `InnerEvent` without docs.
#[allow(missing_docs)]
mod inner {
    use super::*;

    /// The libp2p behaviours the member role runs on.
    #[derive(NetworkBehaviour)]
    pub struct Inner {
        /// `/rdht/rendezvous/2.0.0`: DKG, co-signing, registration.
        pub rr: request_response::Behaviour<RdhtCodec>,
        /// Answers the rendezvous nodes' liveness pings.
        pub ping: ping::Behaviour,
    }
}

use inner::{Inner, InnerEvent};

/// A started member: the core and where its peers are.
struct Running {
    core: Member,
    index: u32,
    quorum: QuorumFile,
    rendezvous: Vec<(PeerId, Multiaddr)>,
    /// libp2p's ids of the core's requests.
    in_flight: HashMap<OutboundRequestId, RequestId>,
    metrics: Arc<Metrics>,
}

/// The member role (see the module's documentation).
pub struct Behaviour {
    inner: Inner,
    running: Option<Running>,
    /// Open connections per peer.
    connections: HashMap<PeerId, usize>,
    /// Wakes the behaviour at the core's next deadline.
    alarm: Alarm,
    /// Dials fellow members until the DKG starts.
    redial: Pin<Box<futures_timer::Delay>>,
    pending: VecDeque<ToSwarm<Event, THandlerInEvent<Inner>>>,
    waker: Option<Waker>,
}

impl std::fmt::Debug for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("quorum::Behaviour")
            .field("index", &self.running.as_ref().map(|r| r.index))
            .field("connections", &self.connections.len())
            .finish_non_exhaustive()
    }
}

impl Default for Behaviour {
    fn default() -> Self {
        Self::new()
    }
}

impl Behaviour {
    /// An idle member: it answers pings and refuses nothing, but sends
    /// nothing until [`Behaviour::start`].
    pub fn new() -> Self {
        Self {
            inner: Inner {
                rr: request_response::Behaviour::with_codec(
                    RdhtCodec,
                    [(PROTOCOL, ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(10))
                        .with_max_concurrent_streams(256),
                ),
                ping: ping::Behaviour::default(),
            },
            running: None,
            connections: HashMap::new(),
            alarm: Alarm::default(),
            redial: Box::pin(futures_timer::Delay::new(REDIAL_EVERY)),
            pending: VecDeque::new(),
            waker: None,
        }
    }

    /// Starts the member of `config.quorum` whose identity is `identity`
    /// (the swarm's own: its PeerId must be in the quorum file, and the
    /// member core signs its records with it), advertising `addrs`. Fails
    /// at once if this node is not in the quorum file, no rendezvous
    /// address is usable, the key share does not match its public key set,
    /// or the member was started already.
    pub fn start(
        &mut self,
        identity: Keypair,
        config: &MemberConfig,
        addrs: Vec<Multiaddr>,
    ) -> Result<(), MemberError> {
        if self.running.is_some() {
            return Err(MemberError::AlreadyStarted);
        }
        let peer_id = identity.public().to_peer_id();
        let (index, start) = start_of(config, &peer_id)?;
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
        let core_config = core_config(config, index, identity, addrs, rendezvous.len());
        let seed = member::seed_from(&mut rand::rngs::OsRng);
        let mut core = Member::new(core_config, start, now_ms(), seed)?;
        log_start(&core, index, &config.quorum);
        let now = now_ms();
        for peer in self.connections.keys() {
            if let Some(j) = config.quorum.index_of(peer) {
                core.handle_connected(now, j);
            }
        }
        self.running = Some(Running {
            core,
            index,
            quorum: config.quorum.clone(),
            rendezvous,
            in_flight: HashMap::new(),
            metrics: config.metrics.clone(),
        });
        self.wake();
        Ok(())
    }

    /// The core, once started.
    pub fn core(&self) -> Option<&Member> {
        self.running.as_ref().map(|r| &r.core)
    }

    /// This member's index in its quorum file (0: it only leaves, at a
    /// resharing), once started.
    pub fn index(&self) -> Option<u32> {
        self.running.as_ref().map(|r| r.index)
    }

    /// The key share, once there is one (loaded, or made by the DKG).
    pub fn key_share(&self) -> Option<&KeyShare> {
        self.core().and_then(|c| c.key_share())
    }

    /// Where the member stands (all zero before it starts).
    pub fn status(&self) -> MemberStatus {
        let Some(core) = self.core() else {
            return MemberStatus::default();
        };
        let status = core.status(now_ms());
        MemberStatus {
            quorum_key: status.quorum_key,
            key_share: core.key_share().cloned(),
            registered_at: status.registered_at,
            namespace_registered: status.namespace_known,
            dropped: status.dropped,
        }
    }

    /// Withdraws the member's record from every rendezvous node that holds
    /// it; [`Behaviour::is_shut_down`] once they answered (or gave up).
    pub fn shutdown(&mut self) {
        if let Some(r) = &mut self.running {
            r.core.shutdown(now_ms());
        }
        self.wake();
    }

    /// Whether the member has stopped: unregistered after
    /// [`Behaviour::shutdown`], or left at a resharing. An idle member
    /// counts as stopped.
    pub fn is_shut_down(&self) -> bool {
        self.core().is_none_or(|c| c.is_shut_down())
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Sends what the core queued and takes what it reports; true if
    /// anything went out.
    fn flush(&mut self) -> bool {
        let Some(r) = &mut self.running else {
            return false;
        };
        let mut sent = false;
        while let Some(t) = r.core.poll_transmit() {
            let target = match t.to {
                Peer::Member(j) => r.quorum.member(j).map(|m| (m.peer_id, m.addr.clone())),
                Peer::Rendezvous(i) => r.rendezvous.get(i).cloned(),
                Peer::Node(peer) => r.quorum.address_of(&peer).map(|a| (peer, a.clone())),
            };
            let Some((peer, addr)) = target else {
                r.core
                    .handle_response(now_ms(), t.id, Err(TransportError::Unreachable));
                continue;
            };
            if matches!(t.request, Request::Dkg(_)) {
                r.metrics.dkg_messages.fetch_add(1, Ordering::Relaxed);
            }
            let id = self.inner.rr.send_request_with_addresses(
                &peer,
                Frame::Message(t.request),
                vec![addr],
            );
            r.in_flight.insert(id, t.id);
            sent = true;
        }
        while let Some(event) = r.core.poll_event() {
            self.pending.push_back(ToSwarm::GenerateEvent(event));
        }
        sent
    }

    fn on_inner(&mut self, event: InnerEvent) {
        let InnerEvent::Rr(event) = event else {
            return;
        };
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.on_request(peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    let Some(r) = &mut self.running else { return };
                    if let Some(id) = r.in_flight.remove(&request_id) {
                        let response = match response {
                            Frame::Message(response) => Ok(response),
                            _ => Err(TransportError::Protocol),
                        };
                        r.core.handle_response(now_ms(), id, response);
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                let Some(r) = &mut self.running else { return };
                if let Some(id) = r.in_flight.remove(&request_id) {
                    r.core
                        .handle_response(now_ms(), id, Err(transport_error(&error)));
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
        // An idle member answers nothing: the sender's core retries (a
        // DKG message sent before this member started is sent again).
        let Some(r) = &mut self.running else { return };
        let response = match frame {
            Frame::Message(request) => r.core.handle_request(now_ms(), &peer, request),
            Frame::Malformed(code) => Response::Rejected(code),
            Frame::Raw(_) => Response::Rejected(StatusCode::Decode),
        };
        let _ = self
            .inner
            .rr
            .send_response(channel, Frame::Message(response));
    }

    /// Until the DKG starts, dials fellow members that are not connected.
    fn dial_members(&mut self) {
        let Some(r) = &self.running else { return };
        for j in r.core.members_to_connect() {
            let Some(m) = r.quorum.member(j) else {
                continue;
            };
            // From a new port: fellow members dial each other every
            // second, and from the listen port their dials would be one
            // TCP simultaneous open (see `dial_from_new_port`).
            let opts = crate::behaviour::dial_from_new_port(
                m.peer_id,
                vec![m.addr.clone()],
                PeerCondition::DisconnectedAndNotDialing,
            );
            self.pending.push_back(ToSwarm::Dial { opts });
        }
    }

    /// Runs the core's timeouts when due (and re-arms the alarm); true if
    /// they ran.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(r) = &mut self.running else {
            return false;
        };
        if !self.alarm.poll(cx, r.core.poll_timeout()) {
            return false;
        }
        r.core.handle_timeout(now_ms());
        true
    }
}

/// Says how the member starts (a loaded share, a DKG, a resharing or a
/// rotation).
fn log_start(core: &Member, index: u32, quorum: &QuorumFile) {
    match core.key_share() {
        Some(share) => info!(
            index,
            quorum_key = %QuorumKey::from(share.quorum_key()),
            "key share loaded and checked: skipping the DKG"
        ),
        None if quorum
            .transition
            .as_ref()
            .is_some_and(|t| t.mode == Mode::Rotate) =>
        {
            info!(
                index,
                epoch = quorum.epoch,
                n = quorum.n(),
                threshold = quorum.threshold,
                "rotating the quorum key: a new DKG, then the previous members sign the handover"
            )
        }
        None if quorum.transition.is_some() => info!(
            index,
            epoch = quorum.epoch,
            n = quorum.n(),
            threshold = quorum.threshold,
            "resharing the quorum key to the new epoch's members"
        ),
        None => info!(
            index,
            n = quorum.n(),
            threshold = quorum.threshold,
            "no key share: waiting for the other members to run the DKG"
        ),
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

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = THandler<Inner>;
    type ToSwarm = Event;

    crate::behaviour::delegate_connections!(inner);

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.inner.on_swarm_event(event);
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                *self.connections.entry(e.peer_id).or_default() += 1;
                if let Some(r) = &mut self.running {
                    if let Some(j) = r.quorum.index_of(&e.peer_id) {
                        r.core.handle_connected(now_ms(), j);
                    }
                }
            }
            FromSwarm::ConnectionClosed(e) => {
                if e.remaining_established > 0 {
                    if let Some(n) = self.connections.get_mut(&e.peer_id) {
                        *n = e.remaining_established;
                    }
                    return;
                }
                self.connections.remove(&e.peer_id);
                if let Some(r) = &mut self.running {
                    if let Some(j) = r.quorum.index_of(&e.peer_id) {
                        r.core.handle_disconnected(j);
                    }
                }
            }
            _ => return,
        }
        self.wake();
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Event, THandlerInEvent<Self>>> {
        self.waker = Some(cx.waker().clone());
        for _ in 0..MAX_ROUNDS_PER_POLL {
            if let Some(action) = self.pending.pop_front() {
                return Poll::Ready(action);
            }
            let mut progressed = false;
            let (events, polled) = poll_inner(&mut self.inner, cx, &mut self.pending);
            progressed |= polled;
            for event in events {
                self.on_inner(event);
            }
            if self.running.is_some() && self.redial.as_mut().poll(cx).is_ready() {
                self.redial = Box::pin(futures_timer::Delay::new(REDIAL_EVERY));
                self.dial_members();
                progressed = true;
            }
            progressed |= self.poll_timer(cx);
            progressed |= self.flush();
            if !progressed && self.pending.is_empty() {
                return Poll::Pending;
            }
        }
        // Still busy: let the swarm's other work run, and come back at once.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
