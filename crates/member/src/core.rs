//! The member state machine.
//!
//! 1. **DKG** (without a key share): starts once every fellow member is
//!    connected, a DKG message arrives, or `dkg_wait_ms` has passed; its
//!    messages travel as `Request::Dkg`, and one that could not be
//!    delivered is sent again while the run can use it.
//! 2. **Namespace**: members take turns in the *coordinator order* (the
//!    qualified dealers by index, then the others; by index after a
//!    restart, when QUAL is not known). After a fresh DKG the first in
//!    that order coordinates at once; after a restart every member first
//!    asks the rendezvous nodes (`Discover`, limit 1) whether a valid
//!    record is there. The coordinator builds the record, collects
//!    `threshold` signature shares (`SignNamespace`), combines them,
//!    registers the record at every rendezvous node and then tells every
//!    member (`NamespaceReady`), who registers at once: the time to be
//!    discoverable does not grow with n. A member of rank r takes over
//!    when no record came `r x takeover_ms` after the namespace was due
//!    (the record is renewed at half its life the same way).
//! 3. **Peer record**: signed with the member's share, `seq` = the clock
//!    (so a restart gets a higher one), registered at every rendezvous
//!    node and refreshed at half its TTL. Each answer goes through the
//!    one table of [`crate::retry`]: a node lacking the namespace is given
//!    it, passing refusals are retried with backoff, and a node that
//!    refuses for good is no longer used; the others carry on.
//! 4. **Shutdown** unregisters at every node that holds the record.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use dkg::{DkgConfig, DkgMember, DkgMessage, DkgOutput, KeyShare, Phase, Signature};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use rendezvous_proto::{
    NamespaceRecord, PeerId, PeerRecord, QuorumKey, Request, Response, StatusCode,
};

use crate::config::MemberConfig;
use crate::cosign::{check_namespace, check_sign_request, commitment_bytes, Cosign};
use crate::error::MemberError;
use crate::retry::{classify, Class};

/// Who a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    /// A fellow member, by index (1-based).
    Member(u32),
    /// Rendezvous node `i` of the configured list (0-based).
    Rendezvous(usize),
}

/// Identifies one outbound request; the driver hands it back with the
/// answer ([`Member::handle_response`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// A request to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Its id.
    pub id: RequestId,
    /// Where it goes.
    pub to: Peer,
    /// What it says.
    pub request: Request,
}

/// Why no answer came to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The peer could not be reached (dial failed, no address).
    #[error("unreachable")]
    Unreachable,
    /// The connection closed before the answer.
    #[error("connection closed")]
    ConnectionClosed,
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// The answer did not decode, or the peer does not speak the protocol.
    #[error("protocol error")]
    Protocol,
}

/// How the member starts.
#[derive(Debug, Clone)]
pub enum Start {
    /// With the key share of an earlier DKG (checked first).
    KeyShare(KeyShare),
    /// With a DKG to run first.
    Dkg(DkgConfig),
}

/// What happened, for the driver's logs, files and metrics.
#[derive(Debug, Clone)]
pub enum Event {
    /// The DKG started.
    DkgStarted,
    /// A DKG phase ended (`rounds` phases were completed by this step).
    DkgProgress {
        /// The phase the DKG is in now.
        phase: Phase,
        /// Phases completed by this step.
        rounds: u64,
    },
    /// The DKG succeeded: the driver keeps the key share.
    DkgFinished(Box<DkgOutput>),
    /// This member coordinates a namespace record.
    Coordinating {
        /// Its issued-at.
        issued_at_ms: u64,
    },
    /// A fellow member sent a signature share that does not verify.
    InvalidShare {
        /// Who.
        member: u32,
    },
    /// This member refused to co-sign what a fellow member asked.
    SignRefused {
        /// Who asked.
        member: u32,
        /// Why.
        code: StatusCode,
    },
    /// The coordinator combined the namespace record.
    NamespaceSigned(NamespaceRecord),
    /// This member took a namespace record as its quorum's (its own, a
    /// coordinator's, or one found at a rendezvous node).
    NamespaceAdopted(NamespaceRecord),
    /// A new peer record was signed and is being registered.
    PeerSigned(PeerRecord),
    /// A rendezvous node accepted the peer record.
    Registered {
        /// The node.
        rendezvous: usize,
        /// The record's seq.
        seq: u64,
        /// Whether this node held no accepted registration before.
        first: bool,
    },
    /// A rendezvous node refused something (a namespace or peer record),
    /// or did not answer; `class` says what the member does about it.
    Refused {
        /// The node.
        rendezvous: usize,
        /// The status code (`None`: no answer, see `transport`).
        code: Option<StatusCode>,
        /// Why no answer came, if none did.
        transport: Option<TransportError>,
        /// What the member does.
        class: Class,
    },
    /// A rendezvous node refused for good: it is no longer used.
    RendezvousDropped {
        /// The node.
        rendezvous: usize,
        /// Its refusal.
        code: StatusCode,
    },
    /// Every node that held the record answered the unregistration (or
    /// failed to).
    Unregistered,
    /// The member cannot go on ([`Member::failure`] says why).
    Failed(MemberError),
}

/// One rendezvous node as this member sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RendezvousState {
    /// The seq of the latest record it accepted.
    pub accepted_seq: Option<u64>,
    /// Until when that acceptance holds (ms).
    pub accepted_until: u64,
    /// Consecutive failed attempts (drives the backoff).
    pub attempts: u32,
    /// Its last refusal.
    pub last_code: Option<StatusCode>,
    /// Set when the node refused for good: it is not used any more.
    pub dropped: Option<StatusCode>,
}

/// A summary for status displays and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// The quorum key, once there is a key share.
    pub quorum_key: Option<QuorumKey>,
    /// Whether a valid namespace record is known.
    pub namespace_known: bool,
    /// Nodes holding an unexpired acceptance of the current record.
    pub registered_at: usize,
    /// Nodes no longer used.
    pub dropped: usize,
}

/// What an outstanding request was for.
#[derive(Debug, Clone)]
enum Pending {
    Dkg {
        to: u32,
        bytes: Vec<u8>,
    },
    Sign {
        round: u64,
        member: u32,
    },
    Check {
        rendezvous: usize,
    },
    Namespace {
        rendezvous: usize,
        coordinated: bool,
    },
    Peer {
        rendezvous: usize,
        seq: u64,
    },
    Ready,
    Unregister,
}

/// Things to do later.
#[derive(Debug, Clone)]
enum Timer {
    DkgResend { to: u32, bytes: Vec<u8> },
    SignRetry { round: u64, member: u32 },
    PeerRetry { rendezvous: usize, generation: u64 },
}

/// Where the namespace stands.
enum NamespaceTask {
    /// No key share yet.
    Idle,
    /// Asking the rendezvous nodes whether a record is there.
    Checking {
        outstanding: BTreeSet<usize>,
        best: Option<NamespaceRecord>,
    },
    /// Waiting for a coordinator; at `takeover_at` this member coordinates.
    Waiting { takeover_at: u64 },
    /// Coordinating: collecting shares until `deadline`.
    Cosigning {
        round: u64,
        cosign: Cosign,
        deadline: u64,
    },
    /// The record is signed; waiting (until `until`) for the rendezvous
    /// nodes' answers before telling the members.
    Announcing {
        record: NamespaceRecord,
        waiting: BTreeSet<usize>,
        until: u64,
    },
}

/// Per-node registration state (what [`RendezvousState`] shows, plus the
/// request in flight).
#[derive(Debug, Clone, Default)]
struct Slot {
    shown: RendezvousState,
    /// The request whose answer counts (later ones replace earlier ones).
    in_flight: Option<RequestId>,
    /// A scheduled retry's generation (older timers are ignored).
    generation: u64,
}

/// The quorum member role. See the module docs for the protocol.
pub struct Member {
    config: MemberConfig,
    rng: ChaCha20Rng,
    next_id: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    pending: BTreeMap<RequestId, Pending>,
    timers: BTreeMap<(u64, u64), Timer>,
    timer_seq: u64,
    failure: Option<MemberError>,
    /// The most recent refusal any rendezvous node answered.
    last_refusal: Option<StatusCode>,
    // DKG
    dkg_config: Option<DkgConfig>,
    dkg: Option<DkgMember>,
    dkg_wait_until: u64,
    dkg_buffer: Vec<(u32, DkgMessage)>,
    connected: BTreeSet<u32>,
    // namespace
    key_share: Option<KeyShare>,
    qual: Vec<u32>,
    namespace: Option<NamespaceRecord>,
    task: NamespaceTask,
    round: u64,
    pending_ready: Option<NamespaceRecord>,
    // peer record
    record: Option<PeerRecord>,
    refresh_at: Option<u64>,
    registering_since: Option<u64>,
    slots: Vec<Slot>,
    shutting_down: Option<BTreeSet<RequestId>>,
}

/// Resend an undelivered DKG message or signature request after this.
const RESEND_MS: u64 = 500;

impl Member {
    /// A member at `now`. With a key share, the share is checked against
    /// its own public key set first (`secret x G1 = PK_index`): a damaged
    /// share is refused here, before any rendezvous node is asked. `seed`
    /// seeds the member's RNG (DKG polynomials, jitter).
    pub fn new(
        config: MemberConfig,
        start: Start,
        now: u64,
        seed: [u8; 32],
    ) -> Result<Self, MemberError> {
        let n = config.quorum.n();
        if config.index == 0 || config.index > n {
            return Err(MemberError::Config("index outside the quorum"));
        }
        if config.rendezvous == 0 {
            return Err(MemberError::Config("no rendezvous node"));
        }
        if config.quorum.peer(config.index) != Some(config.peer_id) {
            return Err(MemberError::Config(
                "this PeerId is not the quorum's member at this index",
            ));
        }
        let (key_share, dkg_config) = match start {
            Start::KeyShare(share) => {
                if share.index() != config.index || share.n != n {
                    return Err(MemberError::Config(
                        "the key share is for another index or quorum size",
                    ));
                }
                if share.threshold() != config.quorum.threshold {
                    return Err(MemberError::Config(
                        "the key share's threshold is not the quorum's",
                    ));
                }
                if share.public_key_set.public_key_share(share.index())
                    != share.secret.public_key_share()
                {
                    return Err(MemberError::KeyShareMismatch {
                        index: share.index(),
                    });
                }
                (Some(share), None)
            }
            Start::Dkg(dkg) => {
                if dkg.my_index() != config.index || dkg.n() != n {
                    return Err(MemberError::Config(
                        "the DKG configuration is for another index or quorum size",
                    ));
                }
                (None, Some(dkg))
            }
        };
        let mut member = Self {
            rng: ChaCha20Rng::from_seed(seed),
            next_id: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            pending: BTreeMap::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            failure: None,
            last_refusal: None,
            dkg_config,
            dkg: None,
            dkg_wait_until: now.saturating_add(config.dkg_wait_ms),
            dkg_buffer: Vec::new(),
            connected: BTreeSet::new(),
            key_share: None,
            qual: Vec::new(),
            namespace: None,
            task: NamespaceTask::Idle,
            round: 0,
            pending_ready: None,
            record: None,
            refresh_at: None,
            registering_since: None,
            slots: vec![Slot::default(); config.rendezvous],
            shutting_down: None,
            config,
        };
        if let Some(share) = key_share {
            member.key_share = Some(share);
            member.registering_since = Some(now);
            member.start_check(now);
        }
        Ok(member)
    }

    // ----- accessors -------------------------------------------------------------

    /// The configuration.
    pub fn config(&self) -> &MemberConfig {
        &self.config
    }

    /// The key share, once there is one.
    pub fn key_share(&self) -> Option<&KeyShare> {
        self.key_share.as_ref()
    }

    /// QUAL, if this member ran the DKG (empty after a restart).
    pub fn qual(&self) -> &[u32] {
        &self.qual
    }

    /// The namespace record this member registers under.
    pub fn namespace(&self) -> Option<&NamespaceRecord> {
        self.namespace.as_ref()
    }

    /// The latest signed peer record.
    pub fn record(&self) -> Option<&PeerRecord> {
        self.record.as_ref()
    }

    /// Each rendezvous node's state, by position.
    pub fn rendezvous(&self) -> impl Iterator<Item = &RendezvousState> {
        self.slots.iter().map(|s| &s.shown)
    }

    /// Why the member cannot go on, once it cannot.
    pub fn failure(&self) -> Option<&MemberError> {
        self.failure.as_ref()
    }

    /// Whether the DKG is still to run or running.
    pub fn in_dkg(&self) -> bool {
        self.key_share.is_none() && self.failure.is_none()
    }

    /// Fellow members the DKG waits for (to be connected); empty once it
    /// started. A driver dials them.
    pub fn members_to_connect(&self) -> Vec<u32> {
        if self.dkg.is_some() || self.key_share.is_some() || self.failure.is_some() {
            return Vec::new();
        }
        (1..=self.config.quorum.n())
            .filter(|i| *i != self.config.index && !self.connected.contains(i))
            .collect()
    }

    /// Whether some node accepted any of this member's records.
    pub fn registered_anywhere(&self) -> bool {
        self.slots.iter().any(|s| s.shown.accepted_seq.is_some())
    }

    /// Nodes that accepted the current record.
    pub fn registered_current(&self) -> usize {
        let Some(seq) = self.record.as_ref().map(|r| r.seq) else {
            return 0;
        };
        self.slots
            .iter()
            .filter(|s| s.shown.accepted_seq == Some(seq))
            .count()
    }

    /// A summary at `now`.
    pub fn status(&self, now: u64) -> Status {
        Status {
            quorum_key: self
                .key_share
                .as_ref()
                .map(|k| QuorumKey::from(k.quorum_key())),
            namespace_known: self.namespace.is_some(),
            registered_at: self
                .slots
                .iter()
                .filter(|s| s.shown.accepted_until > now)
                .count(),
            dropped: self
                .slots
                .iter()
                .filter(|s| s.shown.dropped.is_some())
                .count(),
        }
    }

    /// Whether the unregistration started by [`Member::shutdown`] is over.
    pub fn is_shut_down(&self) -> bool {
        self.shutting_down.as_ref().is_some_and(|w| w.is_empty())
    }

    // ----- outputs ----------------------------------------------------------------

    /// The next request to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Member::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.failure.is_some() || self.shutting_down.is_some() {
            return None;
        }
        let mut wake: Option<u64> = None;
        let mut consider = |t: Option<u64>| {
            if let Some(t) = t {
                wake = Some(wake.map_or(t, |w| w.min(t)));
            }
        };
        consider(self.timers.keys().next().map(|(at, _)| *at));
        consider(self.dkg.as_ref().and_then(|d| d.poll_deadline()));
        if self.dkg.is_none() && self.key_share.is_none() {
            consider(Some(self.dkg_wait_until));
        }
        consider(match &self.task {
            NamespaceTask::Waiting { takeover_at } => Some(*takeover_at),
            NamespaceTask::Cosigning { deadline, .. } => Some(*deadline),
            NamespaceTask::Announcing { until, .. } => Some(*until),
            NamespaceTask::Idle | NamespaceTask::Checking { .. } => None,
        });
        consider(self.refresh_at);
        consider(self.give_up_at());
        wake
    }

    // ----- inputs -----------------------------------------------------------------

    /// A fellow member is connected (the DKG waits for all of them).
    pub fn handle_connected(&mut self, now: u64, member: u32) {
        self.connected.insert(member);
        self.maybe_start_dkg(now);
    }

    /// A fellow member's last connection closed.
    pub fn handle_disconnected(&mut self, member: u32) {
        self.connected.remove(&member);
    }

    /// Time passed: fires whatever is due by `now`.
    pub fn handle_timeout(&mut self, now: u64) {
        if self.failure.is_some() || self.shutting_down.is_some() {
            return;
        }
        self.maybe_start_dkg(now);
        if let Some(dkg) = self.dkg.as_mut() {
            if dkg.poll_deadline().is_some_and(|d| d <= now) {
                let before = dkg.phase();
                dkg.handle_timeout(now);
                self.after_dkg_step(now, before);
            }
        }
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let timer = entry.remove();
            self.fire(timer);
        }
        match &self.task {
            NamespaceTask::Waiting { takeover_at } if *takeover_at <= now => self.coordinate(now),
            NamespaceTask::Cosigning { deadline, .. } if *deadline <= now => {
                // Not enough shares in time: try again later.
                let takeover_at = now + self.config.takeover_ms;
                self.task = NamespaceTask::Waiting { takeover_at };
            }
            NamespaceTask::Announcing { until, .. } if *until <= now => self.announce(now),
            _ => {}
        }
        if self.refresh_at.is_some_and(|t| t <= now) {
            self.register_everywhere(now);
        }
        if self.give_up_at().is_some_and(|t| t <= now) {
            let waited_ms = now.saturating_sub(self.last_registered(now));
            let last_code = self
                .slots
                .iter()
                .filter_map(|s| s.shown.last_code)
                .next_back();
            self.fail(MemberError::NoRendezvousAccepted {
                waited_ms,
                last_code,
            });
        }
    }

    /// A request from `from` (authenticated by the connection), answered
    /// at once. Only fellow members may talk DKG, ask for signature
    /// shares or announce the namespace.
    pub fn handle_request(&mut self, now: u64, from: &PeerId, request: Request) -> Response {
        let Some(member) = self.config.quorum.index_of(from) else {
            return Response::Rejected(StatusCode::NotAMember);
        };
        match request {
            Request::Dkg(bytes) => self.on_dkg_request(now, member, &bytes),
            Request::SignNamespace(record) => self.on_sign_request(now, member, &record),
            Request::NamespaceReady(record) => self.on_namespace_ready(now, record),
            _ => Response::Rejected(StatusCode::NotAuthorized),
        }
    }

    /// The answer to request `id`, or why none came.
    pub fn handle_response(
        &mut self,
        now: u64,
        id: RequestId,
        response: Result<Response, TransportError>,
    ) {
        if let Some(waiting) = self.shutting_down.as_mut() {
            if waiting.remove(&id) && waiting.is_empty() {
                self.events.push_back(Event::Unregistered);
            }
        }
        let Some(what) = self.pending.remove(&id) else {
            return;
        };
        if self.failure.is_some() {
            return;
        }
        match what {
            Pending::Dkg { to, bytes } => {
                if response.is_err() && self.key_share.is_none() && self.failure.is_none() {
                    // Not up yet, or the connection dropped: send it again
                    // while the run can use it.
                    self.set_timer(now + RESEND_MS, Timer::DkgResend { to, bytes });
                }
            }
            Pending::Sign { round, member } => self.on_share(now, round, member, response),
            Pending::Check { rendezvous } => self.on_check_answer(now, rendezvous, response),
            Pending::Namespace {
                rendezvous,
                coordinated,
            } => self.on_namespace_answer(now, id, rendezvous, coordinated, response),
            Pending::Peer { rendezvous, seq } => {
                self.on_peer_answer(now, id, rendezvous, seq, response)
            }
            Pending::Ready | Pending::Unregister => {}
        }
    }

    /// Stops the member: unregisters at every node that accepted it. The
    /// driver sends what [`Member::poll_transmit`] gives, hands back the
    /// answers, and stops once [`Member::is_shut_down`] (or after a bound
    /// of its own).
    pub fn shutdown(&mut self, _now: u64) {
        if self.shutting_down.is_some() {
            return;
        }
        let mut waiting = BTreeSet::new();
        if let Some(share) = &self.key_share {
            let quorum_key = QuorumKey::from(share.quorum_key());
            let targets: Vec<usize> = (0..self.slots.len())
                .filter(|r| {
                    let s = &self.slots[*r].shown;
                    s.accepted_seq.is_some() && s.dropped.is_none()
                })
                .collect();
            for rendezvous in targets {
                let id = self.send(
                    Peer::Rendezvous(rendezvous),
                    Request::Unregister {
                        quorum_key,
                        index: self.config.index,
                    },
                    Pending::Unregister,
                );
                waiting.insert(id);
            }
        }
        if waiting.is_empty() {
            self.events.push_back(Event::Unregistered);
        }
        self.shutting_down = Some(waiting);
    }

    /// Coordinates a new namespace record now (a later issued-at),
    /// whatever this member's rank: for operators and tests that want the
    /// record re-signed at once. Does nothing without a key share, after a
    /// failure, or while a coordination is under way.
    pub fn renew_namespace(&mut self, now: u64) {
        if self.key_share.is_none() || self.failure.is_some() || self.shutting_down.is_some() {
            return;
        }
        if matches!(
            self.task,
            NamespaceTask::Cosigning { .. } | NamespaceTask::Announcing { .. }
        ) {
            return;
        }
        self.coordinate(now);
    }

    // ----- plumbing ---------------------------------------------------------------

    fn send(&mut self, to: Peer, request: Request, what: Pending) -> RequestId {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        self.pending.insert(id, what);
        self.transmits.push_back(Transmit { id, to, request });
        id
    }

    fn set_timer(&mut self, at: u64, timer: Timer) {
        self.timer_seq += 1;
        self.timers.insert((at, self.timer_seq), timer);
    }

    fn fail(&mut self, error: MemberError) {
        if self.failure.is_none() {
            self.failure = Some(error.clone());
            self.events.push_back(Event::Failed(error));
        }
    }

    fn fire(&mut self, timer: Timer) {
        match timer {
            Timer::DkgResend { to, bytes } => {
                if self.key_share.is_none() {
                    self.send(
                        Peer::Member(to),
                        Request::Dkg(bytes.clone()),
                        Pending::Dkg { to, bytes },
                    );
                }
            }
            Timer::SignRetry { round, member } => {
                if let NamespaceTask::Cosigning {
                    round: r, cosign, ..
                } = &self.task
                {
                    if *r == round && !cosign.has(member) {
                        let record = cosign.record.clone();
                        self.send(
                            Peer::Member(member),
                            Request::SignNamespace(record),
                            Pending::Sign { round, member },
                        );
                    }
                }
            }
            Timer::PeerRetry {
                rendezvous,
                generation,
            } => {
                let current = self
                    .slots
                    .get(rendezvous)
                    .is_some_and(|s| s.generation == generation && s.shown.dropped.is_none());
                if current {
                    self.register_at(rendezvous);
                }
            }
        }
    }

    /// The member's rank in the coordinator order: QUAL by index, then
    /// the others; by index when QUAL is not known.
    fn rank(&self) -> u64 {
        let me = self.config.index;
        if self.qual.is_empty() {
            return u64::from(me.saturating_sub(1));
        }
        let mut order: Vec<u32> = self.qual.clone();
        order.extend((1..=self.config.quorum.n()).filter(|i| !self.qual.contains(i)));
        order.iter().position(|i| *i == me).unwrap_or(0) as u64
    }

    // ----- DKG ----------------------------------------------------------------

    fn maybe_start_dkg(&mut self, now: u64) {
        if self.dkg.is_some() || self.key_share.is_some() || self.failure.is_some() {
            return;
        }
        let everyone = self.members_to_connect().is_empty();
        if !(everyone || !self.dkg_buffer.is_empty() || now >= self.dkg_wait_until) {
            return;
        }
        let Some(config) = self.dkg_config.clone() else {
            return;
        };
        self.events.push_back(Event::DkgStarted);
        let mut dkg = DkgMember::new(config, now, &mut self.rng);
        for (from, message) in std::mem::take(&mut self.dkg_buffer) {
            // A refused message changes nothing in the DKG.
            let _ = dkg.handle_message(now, from, message);
        }
        self.dkg = Some(dkg);
        self.after_dkg_step(now, Phase::Deal);
    }

    /// Sends what the DKG queued and takes its outcome.
    fn after_dkg_step(&mut self, now: u64, before: Phase) {
        let Some(dkg) = self.dkg.as_mut() else {
            return;
        };
        let mut outgoing = Vec::new();
        while let Some(t) = dkg.poll_transmit() {
            outgoing.push(t);
        }
        let after = dkg.phase();
        let outcome = if after == Phase::Finished {
            dkg.take_outcome()
        } else {
            None
        };
        if after != before {
            let rounds = phase_number(after).saturating_sub(phase_number(before));
            self.events.push_back(Event::DkgProgress {
                phase: after,
                rounds,
            });
        }
        let n = self.config.quorum.n();
        for t in outgoing {
            let bytes = t.message.encode();
            let targets: Vec<u32> = match t.to {
                dkg::Destination::Member(j) => vec![j],
                dkg::Destination::All => (1..=n).filter(|j| *j != self.config.index).collect(),
            };
            for to in targets {
                self.send(
                    Peer::Member(to),
                    Request::Dkg(bytes.clone()),
                    Pending::Dkg {
                        to,
                        bytes: bytes.clone(),
                    },
                );
            }
        }
        match outcome {
            Some(Ok(output)) => {
                self.dkg = None;
                self.qual = output.qual.clone();
                self.key_share = Some(output.key_share.clone());
                self.events.push_back(Event::DkgFinished(Box::new(output)));
                self.registering_since = Some(now);
                // A fresh key: no namespace can exist yet, so the first in
                // the coordinator order goes at once.
                self.schedule_renewal(now);
                if let Some(record) = self.pending_ready.take() {
                    self.on_namespace_ready(now, record);
                }
                if matches!(self.task, NamespaceTask::Waiting { takeover_at } if takeover_at <= now)
                {
                    self.coordinate(now);
                }
            }
            Some(Err(e)) => {
                self.dkg = None;
                self.fail(MemberError::Dkg(e));
            }
            None => {}
        }
    }

    fn on_dkg_request(&mut self, now: u64, from: u32, bytes: &[u8]) -> Response {
        let Ok(message) = DkgMessage::decode(bytes) else {
            return Response::Rejected(StatusCode::Decode);
        };
        if self.key_share.is_some() {
            // Done already: a resend whose acknowledgement was lost.
            return Response::DkgAccepted;
        }
        match self.dkg.as_mut() {
            None => {
                // Bounded: one message per member and kind is all a run
                // needs; more is a misbehaving member.
                if self.dkg_buffer.len() < 4 * self.config.quorum.n() as usize {
                    self.dkg_buffer.push((from, message));
                }
                self.maybe_start_dkg(now);
            }
            Some(dkg) => {
                let before = dkg.phase();
                let _ = dkg.handle_message(now, from, message);
                self.after_dkg_step(now, before);
            }
        }
        Response::DkgAccepted
    }

    // ----- namespace ------------------------------------------------------------

    /// After a restart: asks every rendezvous node for the namespace.
    fn start_check(&mut self, _now: u64) {
        let Some(share) = &self.key_share else {
            return;
        };
        let quorum_key = QuorumKey::from(share.quorum_key());
        let outstanding: BTreeSet<usize> = (0..self.slots.len()).collect();
        for rendezvous in outstanding.iter().copied() {
            self.send(
                Peer::Rendezvous(rendezvous),
                Request::Discover {
                    quorum_key,
                    limit: 1,
                    cookie: None,
                },
                Pending::Check { rendezvous },
            );
        }
        self.task = NamespaceTask::Checking {
            outstanding,
            best: None,
        };
    }

    fn on_check_answer(
        &mut self,
        now: u64,
        rendezvous: usize,
        response: Result<Response, TransportError>,
    ) {
        let found = match (&response, &self.key_share) {
            (Ok(Response::Discovered(answer)), Some(share)) => check_namespace(
                &answer.namespace,
                share,
                &self.config.quorum,
                now,
                &self.config.limits,
            )
            .is_ok()
            .then(|| answer.namespace.clone()),
            _ => None,
        };
        let NamespaceTask::Checking { outstanding, best } = &mut self.task else {
            return;
        };
        outstanding.remove(&rendezvous);
        if let Some(record) = found {
            if best
                .as_ref()
                .is_none_or(|b| record.expires_at_ms > b.expires_at_ms)
            {
                *best = Some(record);
            }
        }
        if !outstanding.is_empty() {
            return;
        }
        let best = best.take();
        self.schedule_renewal(now);
        if let Some(record) = best {
            self.adopt(now, record);
        }
        if matches!(self.task, NamespaceTask::Waiting { takeover_at } if takeover_at <= now) {
            self.coordinate(now);
        }
    }

    /// Takes a valid record as the quorum's, registers under it, and
    /// schedules its renewal (the coordinator order again, from half its
    /// life).
    fn adopt(&mut self, now: u64, record: NamespaceRecord) {
        let newer = self
            .namespace
            .as_ref()
            .is_none_or(|ns| (record.epoch, record.issued_at_ms) > (ns.epoch, ns.issued_at_ms));
        if !newer {
            return;
        }
        self.events
            .push_back(Event::NamespaceAdopted(record.clone()));
        self.namespace = Some(record);
        if !matches!(
            self.task,
            NamespaceTask::Cosigning { .. } | NamespaceTask::Announcing { .. }
        ) {
            self.schedule_renewal(now);
        }
        if self.record.is_none() {
            self.register_everywhere(now);
        }
    }

    /// Waits for the next renewal of the namespace record: from half the
    /// current record's life (at once without one), plus this member's
    /// rank in the coordinator order times `takeover_ms`.
    fn schedule_renewal(&mut self, now: u64) {
        let due = self.namespace.as_ref().map_or(now, |ns| {
            let half_life = ns.issued_at_ms + ns.expires_at_ms.saturating_sub(ns.issued_at_ms) / 2;
            half_life.max(now)
        });
        self.task = NamespaceTask::Waiting {
            takeover_at: due + self.rank() * self.config.takeover_ms,
        };
    }

    fn coordinate(&mut self, now: u64) {
        let Some(share) = &self.key_share else {
            return;
        };
        let quorum = &self.config.quorum;
        let record = NamespaceRecord {
            commitments: commitment_bytes(share),
            n: quorum.n(),
            epoch: 0,
            kind: quorum.kind.clone(),
            members: Some(quorum.members.clone()),
            issued_at_ms: now,
            expires_at_ms: now + self.config.namespace_ttl_ms,
            signature: [0; rendezvous_proto::records::G2_BYTES],
        };
        let cosign = Cosign::new(record.clone(), share);
        self.round += 1;
        let round = self.round;
        self.events.push_back(Event::Coordinating {
            issued_at_ms: record.issued_at_ms,
        });
        self.task = NamespaceTask::Cosigning {
            round,
            cosign,
            deadline: now + self.config.cosign_timeout_ms,
        };
        for member in 1..=self.config.quorum.n() {
            if member != self.config.index {
                self.send(
                    Peer::Member(member),
                    Request::SignNamespace(record.clone()),
                    Pending::Sign { round, member },
                );
            }
        }
        self.try_combine(now);
    }

    fn on_share(
        &mut self,
        now: u64,
        round: u64,
        member: u32,
        response: Result<Response, TransportError>,
    ) {
        let NamespaceTask::Cosigning {
            round: r, cosign, ..
        } = &mut self.task
        else {
            return;
        };
        if *r != round {
            return;
        }
        match response {
            Ok(Response::NamespaceShare { index, signature }) if index == member => {
                match Signature::from_bytes(&signature) {
                    Ok(signature) => cosign.add(index, signature),
                    Err(_) => self.events.push_back(Event::InvalidShare { member }),
                }
            }
            // Still in the DKG, busy, or not reachable yet: ask again
            // while the round lasts. A refusal for good is not retried.
            Ok(Response::Rejected(StatusCode::UnknownNamespace)) | Err(_) => {
                self.set_timer(now + RESEND_MS, Timer::SignRetry { round, member });
            }
            Ok(_) => {}
        }
        self.try_combine(now);
    }

    fn try_combine(&mut self, now: u64) {
        let (NamespaceTask::Cosigning { cosign, .. }, Some(share)) =
            (&mut self.task, self.key_share.as_ref())
        else {
            return;
        };
        let (record, bad) = cosign.try_combine(share, &mut self.rng);
        for member in bad {
            self.events.push_back(Event::InvalidShare { member });
        }
        let Some(record) = record else {
            return;
        };
        self.events
            .push_back(Event::NamespaceSigned(record.clone()));
        let waiting: BTreeSet<usize> = (0..self.slots.len())
            .filter(|r| self.slots[*r].shown.dropped.is_none())
            .collect();
        for rendezvous in waiting.iter().copied() {
            self.send(
                Peer::Rendezvous(rendezvous),
                Request::RegisterNamespace(record.clone()),
                Pending::Namespace {
                    rendezvous,
                    coordinated: true,
                },
            );
        }
        self.task = NamespaceTask::Announcing {
            record,
            waiting,
            until: now + self.config.ready_wait_ms,
        };
    }

    /// Tells every member the record is in place, and adopts it.
    fn announce(&mut self, now: u64) {
        let NamespaceTask::Announcing { record, .. } =
            std::mem::replace(&mut self.task, NamespaceTask::Idle)
        else {
            return;
        };
        for member in 1..=self.config.quorum.n() {
            if member != self.config.index {
                self.send(
                    Peer::Member(member),
                    Request::NamespaceReady(record.clone()),
                    Pending::Ready,
                );
            }
        }
        self.adopt(now, record);
        if matches!(self.task, NamespaceTask::Idle) {
            self.schedule_renewal(now);
        }
    }

    fn on_sign_request(&mut self, now: u64, from: u32, record: &NamespaceRecord) -> Response {
        let Some(share) = &self.key_share else {
            // Still in the DKG: the coordinator asks again.
            return Response::Rejected(StatusCode::UnknownNamespace);
        };
        if let Err(code) =
            check_sign_request(record, share, &self.config.quorum, now, &self.config.limits)
        {
            self.events
                .push_back(Event::SignRefused { member: from, code });
            return Response::Rejected(code);
        }
        let signature = share.secret.sign(&record.signing_bytes());
        // A coordinator is at work: give it time before taking over.
        if let NamespaceTask::Waiting { takeover_at } = &mut self.task {
            let later = now + self.config.cosign_timeout_ms + self.config.takeover_ms;
            *takeover_at = (*takeover_at).max(later);
        }
        Response::NamespaceShare {
            index: signature.index,
            signature: signature.signature.to_bytes(),
        }
    }

    fn on_namespace_ready(&mut self, now: u64, record: NamespaceRecord) -> Response {
        let Some(share) = &self.key_share else {
            // Still in the DKG: keep it for the end of the run.
            self.pending_ready = Some(record);
            return Response::Accepted;
        };
        let newer = self
            .namespace
            .as_ref()
            .is_none_or(|ns| (record.epoch, record.issued_at_ms) > (ns.epoch, ns.issued_at_ms));
        if !newer {
            return Response::Accepted;
        }
        if let Err(code) = check_namespace(
            &record,
            share,
            &self.config.quorum,
            now,
            &self.config.limits,
        ) {
            return Response::Rejected(code);
        }
        // Another coordinator finished first: ours is not needed.
        if matches!(self.task, NamespaceTask::Cosigning { .. }) {
            self.task = NamespaceTask::Idle;
        }
        self.adopt(now, record);
        Response::Accepted
    }

    fn on_namespace_answer(
        &mut self,
        now: u64,
        id: RequestId,
        rendezvous: usize,
        coordinated: bool,
        response: Result<Response, TransportError>,
    ) {
        if coordinated {
            if let NamespaceTask::Announcing { waiting, .. } = &mut self.task {
                waiting.remove(&rendezvous);
                if waiting.is_empty() {
                    self.announce(now);
                }
            }
        }
        let class = match &response {
            Ok(Response::Registered { .. }) => Class::AlreadyHeld,
            Ok(Response::Rejected(code)) => classify(*code),
            _ => Class::Transient,
        };
        let code = response_code(&response);
        if class != Class::AlreadyHeld {
            self.refused(rendezvous, code, &response, class);
        }
        if class == Class::Permanent {
            self.drop_node(rendezvous, code);
        }
        // The namespace was registered for a peer registration that needed
        // it: send the peer record again (at once, or after the backoff).
        let awaited = self
            .slots
            .get(rendezvous)
            .is_some_and(|s| s.in_flight == Some(id));
        if !awaited {
            return;
        }
        if let Some(slot) = self.slots.get_mut(rendezvous) {
            slot.in_flight = None;
        }
        match class {
            Class::AlreadyHeld => self.register_at(rendezvous),
            Class::Permanent => {}
            Class::Transient | Class::NeedsNamespace => self.back_off(now, rendezvous),
        }
    }

    // ----- peer record ------------------------------------------------------------

    /// Signs a new record and registers it at every node still in use.
    fn register_everywhere(&mut self, now: u64) {
        let (Some(share), Some(ns)) = (&self.key_share, &self.namespace) else {
            self.refresh_at = None;
            return;
        };
        let limits = &self.config.limits;
        let addrs = self
            .config
            .addrs
            .iter()
            .filter(|a| a.as_ref().len() <= limits.max_addr_bytes)
            .take(limits.max_addrs)
            .cloned()
            .collect();
        let seq = now.max(self.record.as_ref().map_or(0, |r| r.seq + 1));
        let record = PeerRecord::sign(
            QuorumKey::from(share.quorum_key()),
            ns.epoch,
            self.config.peer_id,
            addrs,
            seq,
            now + self.config.peer_ttl_ms,
            &share.secret,
        );
        self.events.push_back(Event::PeerSigned(record.clone()));
        self.record = Some(record);
        self.refresh_at = Some(now + self.config.peer_ttl_ms / 2);
        for rendezvous in 0..self.slots.len() {
            if self.slots[rendezvous].shown.dropped.is_none() {
                self.register_at(rendezvous);
            }
        }
    }

    fn register_at(&mut self, rendezvous: usize) {
        let Some(record) = self.record.clone() else {
            return;
        };
        let seq = record.seq;
        let id = self.send(
            Peer::Rendezvous(rendezvous),
            Request::RegisterPeer(record),
            Pending::Peer { rendezvous, seq },
        );
        if let Some(slot) = self.slots.get_mut(rendezvous) {
            slot.in_flight = Some(id);
            slot.generation += 1;
        }
    }

    fn on_peer_answer(
        &mut self,
        now: u64,
        id: RequestId,
        rendezvous: usize,
        seq: u64,
        response: Result<Response, TransportError>,
    ) {
        let current = self.record.as_ref().map(|r| r.seq);
        let Some(slot) = self.slots.get_mut(rendezvous) else {
            return;
        };
        if slot.in_flight != Some(id) {
            // Overtaken by a newer request to this node.
            return;
        }
        slot.in_flight = None;
        let class = match &response {
            Ok(Response::Registered { .. }) => Class::AlreadyHeld,
            Ok(Response::Rejected(code)) => classify(*code),
            _ => Class::Transient,
        };
        let code = response_code(&response);
        match class {
            Class::AlreadyHeld if Some(seq) == current => {
                let ttl = match response {
                    Ok(Response::Registered { ttl_ms }) => ttl_ms,
                    // Held already (a resend got through first): it holds
                    // until the record expires.
                    _ => self
                        .record
                        .as_ref()
                        .map_or(0, |r| r.expires_at_ms.saturating_sub(now)),
                };
                let first = slot.shown.accepted_seq.is_none();
                slot.shown.accepted_seq = Some(seq);
                slot.shown.accepted_until = now + ttl;
                slot.shown.attempts = 0;
                self.events.push_back(Event::Registered {
                    rendezvous,
                    seq,
                    first,
                });
            }
            Class::AlreadyHeld => {}
            Class::NeedsNamespace => {
                self.refused(rendezvous, code, &response, class);
                match self.namespace.clone() {
                    Some(ns) => {
                        let id = self.send(
                            Peer::Rendezvous(rendezvous),
                            Request::RegisterNamespace(ns),
                            Pending::Namespace {
                                rendezvous,
                                coordinated: false,
                            },
                        );
                        if let Some(slot) = self.slots.get_mut(rendezvous) {
                            slot.in_flight = Some(id);
                        }
                    }
                    None => self.back_off(now, rendezvous),
                }
            }
            Class::Transient => {
                self.refused(rendezvous, code, &response, class);
                self.back_off(now, rendezvous);
            }
            Class::Permanent => {
                self.refused(rendezvous, code, &response, class);
                self.drop_node(rendezvous, code);
            }
        }
    }

    fn refused(
        &mut self,
        rendezvous: usize,
        code: Option<StatusCode>,
        response: &Result<Response, TransportError>,
        class: Class,
    ) {
        if let (Some(slot), Some(code)) = (self.slots.get_mut(rendezvous), code) {
            slot.shown.last_code = Some(code);
        }
        if code.is_some() {
            self.last_refusal = code;
        }
        self.events.push_back(Event::Refused {
            rendezvous,
            code,
            transport: response.as_ref().err().copied(),
            class,
        });
    }

    /// Schedules the next attempt at a node after a passing failure.
    fn back_off(&mut self, now: u64, rendezvous: usize) {
        let backoff = self.config.backoff;
        let Some(slot) = self.slots.get_mut(rendezvous) else {
            return;
        };
        let delay = backoff.delay(slot.shown.attempts, &mut self.rng);
        slot.shown.attempts = slot.shown.attempts.saturating_add(1);
        slot.generation += 1;
        let generation = slot.generation;
        self.set_timer(
            now + delay,
            Timer::PeerRetry {
                rendezvous,
                generation,
            },
        );
    }

    fn drop_node(&mut self, rendezvous: usize, code: Option<StatusCode>) {
        let code = code.unwrap_or(StatusCode::Decode);
        if let Some(slot) = self.slots.get_mut(rendezvous) {
            if slot.shown.dropped.is_none() {
                slot.shown.dropped = Some(code);
                slot.shown.accepted_until = 0;
                slot.in_flight = None;
                self.events
                    .push_back(Event::RendezvousDropped { rendezvous, code });
            }
        }
    }

    /// The last time some node held an accepted registration (or when
    /// registering began).
    fn last_registered(&self, now: u64) -> u64 {
        let held = self
            .slots
            .iter()
            .map(|s| s.shown.accepted_until.min(now))
            .max()
            .unwrap_or(0);
        held.max(self.registering_since.unwrap_or(now))
    }

    fn give_up_at(&self) -> Option<u64> {
        let since = self.registering_since?;
        let held = self
            .slots
            .iter()
            .map(|s| s.shown.accepted_until)
            .max()
            .unwrap_or(0);
        Some(held.max(since).saturating_add(self.config.give_up_after_ms))
    }
}

fn response_code(response: &Result<Response, TransportError>) -> Option<StatusCode> {
    match response {
        Ok(r) => Some(r.status()).filter(|c| *c != StatusCode::Ok),
        Err(_) => None,
    }
}

fn phase_number(p: Phase) -> u64 {
    match p {
        Phase::Deal => 0,
        Phase::Response => 1,
        Phase::Justification => 2,
        Phase::Finished => 3,
    }
}

/// A seed for [`Member::new`] from any RNG (the node uses the OS's, the
/// simulator its seeded one).
pub fn seed_from<R: RngCore>(rng: &mut R) -> [u8; 32] {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    seed
}
