//! The member state machine.
//!
//! 1. **DKG** (without a key share): starts once every fellow member is
//!    connected, a DKG message arrives, or `dkg_wait_ms` has passed; its
//!    messages travel as `Request::Dkg`, and one that could not be
//!    delivered is sent again while the run can use it. Each run begins
//!    with a hello round that gives it a session id of its own
//!    ([`dkg::DkgMember::with_hello`]); a failed run is retried with the
//!    member's [`crate::retry::Backoff`] (or at once when a fellow
//!    member's hello of a later run arrives), and [`Event::DkgFailed`]
//!    names the dealers that were left out. The encoded
//!    messages kept for that (a share message holds a secret in clear)
//!    are wiped when dropped; the copy handed to the driver in
//!    `Request::Dkg` is the transport's to handle.
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
//!
//! This file holds the types, the inputs and the outputs; the steps live
//! in `dkg_run.rs` (1), `namespace.rs` (2) and `registration.rs` (3).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use dkg::{
    Disqualification, DkgConfig, DkgError, DkgMember, DkgMessage, DkgOutput, KeyShare, Phase,
    SessionId, Signature,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use rendezvous_proto::{
    NamespaceRecord, PeerId, PeerRecord, QuorumKey, Request, Response, StatusCode,
};
use zeroize::Zeroizing;

use rendezvous_proto::seat::Seat;

use crate::config::MemberConfig;
use crate::cosign::{check_namespace, check_sign_request, commitment_bytes, Cosign};
use crate::error::MemberError;
use crate::retry::{classify, Class};

mod dkg_run;
mod namespace;
mod registration;
mod reshare_run;
mod rotate_run;

pub use reshare_run::ReshareStart;
use reshare_run::Resharing;
use rotate_run::Rotation;
pub use rotate_run::{RotateStart, HANDOVER_TTL_MARGIN_MS};

/// Who a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    /// A fellow member, by index (1-based).
    Member(u32),
    /// Rendezvous node `i` of the configured list (0-based).
    Rendezvous(usize),
    /// A participant of a resharing that is not in this member's quorum
    /// (an old member that leaves; for one that leaves, another such),
    /// by PeerId. Drivers reach it at the address the previous epoch's
    /// member list gives.
    Node(PeerId),
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
    /// With a resharing from the previous epoch to run first
    /// (`MemberConfig::epoch` is the new epoch, `quorum` its members; an
    /// old member that is not in the new epoch has `index` 0: it deals,
    /// then unregisters and stops).
    Reshare(Box<ReshareStart>),
    /// With a key rotation (PROTOCOL.md 15.6): a member of the new quorum
    /// runs a fresh DKG whose key's namespace starts at
    /// `MemberConfig::epoch`, and a previous member co-signs the handover
    /// from the previous key to the new one with its previous share (one
    /// that is not in the new quorum has `index` 0: it co-signs, then
    /// unregisters and stops).
    Rotate(Box<RotateStart>),
}

/// What happened, for the driver's logs, files and metrics.
#[derive(Debug, Clone)]
pub enum Event {
    /// A DKG run started (its hello round).
    DkgStarted {
        /// Which run of the quorum (0 first; members move to the highest
        /// they hear of).
        attempt: u64,
    },
    /// A DKG phase ended (`rounds` phases were completed by this step).
    DkgProgress {
        /// The phase the DKG is in now.
        phase: Phase,
        /// Phases completed by this step.
        rounds: u64,
    },
    /// The DKG succeeded: the driver keeps the key share. The output
    /// names the dealers left out of QUAL, and why.
    DkgFinished(Box<DkgOutput>),
    /// A DKG run failed; the member starts another at `retry_at` (or
    /// sooner, when a fellow member's hello of a later run arrives).
    DkgFailed {
        /// The run that failed.
        attempt: u64,
        /// Why no key came of it.
        error: DkgError,
        /// The dealers this member left out of that run's QUAL, and why
        /// (the members that caused the failure, as far as dealers did).
        disqualified: BTreeMap<u32, Disqualification>,
        /// When the next run starts at the latest (ms).
        retry_at: u64,
    },
    /// A resharing run started (after a newcomer found the previous
    /// epoch's key set).
    ReshareStarted {
        /// The epoch it makes.
        epoch: u64,
    },
    /// The resharing gave this member its share of the new epoch (same
    /// quorum key, new key set): the driver keeps it.
    ReshareFinished(Box<DkgOutput>),
    /// This member leaves: it dealt its share to the new epoch and
    /// answered the complaints against it; it now unregisters and stops.
    ReshareDealt {
        /// Its index in the previous epoch.
        previous_index: u32,
    },
    /// The resharing failed (fewer than the old threshold of honest
    /// dealers): the previous epoch stays; the member stops.
    ReshareFailed {
        /// Why no share came of it.
        error: DkgError,
        /// The old dealers left out, and why.
        disqualified: BTreeMap<u32, Disqualification>,
    },
    /// This previous member gave its share over a handover (key
    /// rotation).
    HandoverCosigned {
        /// Its index under the previous key.
        previous_index: u32,
    },
    /// The coordinator combined the handover from the previous key to the
    /// new one (key rotation): it publishes it at every rendezvous node.
    HandoverSigned(rendezvous_proto::HandoverRecord),
    /// A rendezvous node holds the handover.
    HandoverPublished {
        /// The node.
        rendezvous: usize,
    },
    /// This member coordinated the new key's namespace record but holds no
    /// previous share and was not told the previous key: it cannot make
    /// the handover.
    HandoverUnknownOldKey,
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
    /// An encoded DKG message, kept to be sent again; a share message
    /// holds a secret in clear, so it is wiped when dropped.
    Dkg {
        /// The run it belongs to ([`Member::dkg_run`]).
        run: u64,
        to: Peer,
        bytes: Zeroizing<Vec<u8>>,
    },
    /// A newcomer's question for the previous epoch's namespace record.
    PreviousEpoch {
        rendezvous: usize,
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
    /// A `SignHandover` to a previous member (by previous index).
    HandoverShare {
        previous: u32,
    },
    PublishHandover {
        rendezvous: usize,
    },
}

/// Things to do later.
#[derive(Debug, Clone)]
enum Timer {
    /// Wiped when dropped, as [`Pending::Dkg`].
    DkgResend {
        run: u64,
        to: Peer,
        bytes: Zeroizing<Vec<u8>>,
    },
    SignRetry {
        round: u64,
        member: u32,
    },
    PeerRetry {
        rendezvous: usize,
        generation: u64,
    },
    /// Ask a node again whether the namespace record is there.
    CheckRetry {
        rendezvous: usize,
    },
    /// Ask a previous member again for its handover share.
    HandoverRetry {
        previous: u32,
    },
    /// Publish the handover at a node again.
    PublishRetry {
        rendezvous: usize,
    },
}

/// Where the namespace stands.
enum NamespaceTask {
    /// No key share yet.
    Idle,
    /// Asking the rendezvous nodes whether a record is there.
    Checking {
        outstanding: BTreeSet<usize>,
        best: Option<NamespaceRecord>,
        /// Nodes asked again after a passing refusal or no answer, and
        /// how often.
        retries: BTreeMap<usize, u32>,
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
    /// The attempt the next run starts at.
    dkg_attempt: u64,
    /// Runs failed so far (drives the backoff).
    dkg_failures: u32,
    /// After a failed run: when the next starts at the latest.
    dkg_retry_at: Option<u64>,
    /// Counts runs started, so that resends of an ended run stop.
    dkg_run: u64,
    /// The session of the run that failed last: its late messages are
    /// dropped rather than buffered for the next.
    failed_session: Option<SessionId>,
    connected: BTreeSet<u32>,
    // resharing
    resharing: Option<Resharing>,
    /// A member that leaves at a resharing: the quorum key and its
    /// previous index, to unregister under.
    leaving: Option<(QuorumKey, u32)>,
    // key rotation
    rotation: Option<Rotation>,
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
        // Index 0: an old member leaving at a resharing or a rotation.
        let leaves = config.index == 0 && matches!(start, Start::Reshare(_) | Start::Rotate(_));
        if !leaves && (config.index == 0 || config.index > n) {
            return Err(MemberError::Config("index outside the quorum"));
        }
        if config.rendezvous == 0 {
            return Err(MemberError::Config("no rendezvous node"));
        }
        if !leaves && config.quorum.peer(config.index) != Some(config.peer_id()) {
            return Err(MemberError::Config(
                "this PeerId is not the quorum's member at this index",
            ));
        }
        let mut reshare = None;
        let mut rotation = None;
        let mut leaving = None;
        let (key_share, dkg_config) = match start {
            Start::Rotate(start) => {
                if config.epoch == 0 {
                    return Err(MemberError::Config("a rotation makes an epoch above 0"));
                }
                if start.previous_threshold == 0
                    || start.previous_threshold as usize > start.previous_members.len()
                {
                    return Err(MemberError::Config(
                        "the previous threshold is outside the previous members",
                    ));
                }
                if let Some(share) = &start.previous_share {
                    if share.public_key_set.public_key_share(share.index())
                        != share.secret.public_key_share()
                    {
                        return Err(MemberError::KeyShareMismatch {
                            index: share.index(),
                        });
                    }
                    if share.threshold() != start.previous_threshold
                        || share.n as usize != start.previous_members.len()
                        || start.previous_members.get(share.index() as usize - 1)
                            != Some(&config.peer_id())
                    {
                        return Err(MemberError::Config(
                            "the previous key share is not this node's among the previous members",
                        ));
                    }
                }
                let dkg = if leaves {
                    let Some(share) = &start.previous_share else {
                        return Err(MemberError::Config(
                            "a member that leaves needs its share of the previous key",
                        ));
                    };
                    if start.dkg.is_some() {
                        return Err(MemberError::Config(
                            "a member that leaves takes no part in the new DKG",
                        ));
                    }
                    leaving = Some((QuorumKey::from(share.quorum_key()), share.index()));
                    None
                } else {
                    let Some(dkg) = start.dkg.clone() else {
                        return Err(MemberError::Config(
                            "a member of the new quorum needs the new DKG",
                        ));
                    };
                    if dkg.my_index() != config.index || dkg.n() != n {
                        return Err(MemberError::Config(
                            "the DKG configuration is for another index or quorum size",
                        ));
                    }
                    Some(dkg)
                };
                rotation = Some(Rotation::new(*start));
                (None, dkg)
            }
            Start::Reshare(start) => {
                if config.epoch == 0 {
                    return Err(MemberError::Config("a resharing makes an epoch above 0"));
                }
                if leaves && start.previous_share.is_none() {
                    return Err(MemberError::Config(
                        "a member that leaves needs its share of the previous epoch",
                    ));
                }
                if let Some(share) = &start.previous_share {
                    if QuorumKey::from(share.quorum_key()) != start.quorum_key {
                        return Err(MemberError::Config(
                            "the previous key share is of another quorum",
                        ));
                    }
                    if share.public_key_set.public_key_share(share.index())
                        != share.secret.public_key_share()
                    {
                        return Err(MemberError::KeyShareMismatch {
                            index: share.index(),
                        });
                    }
                }
                reshare = Some(*start);
                (None, None)
            }
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
                if config.epoch != 0 {
                    return Err(MemberError::Config("a DKG makes a key share of epoch 0"));
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
            dkg_attempt: 0,
            dkg_failures: 0,
            dkg_retry_at: None,
            dkg_run: 0,
            failed_session: None,
            connected: BTreeSet::new(),
            resharing: None,
            leaving,
            rotation,
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
            member.start_check();
        }
        if let Some(start) = reshare {
            member.start_reshare(now, start);
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

    /// Fellow members the DKG waits for (to be connected); empty once it
    /// started. A driver dials them.
    pub fn members_to_connect(&self) -> Vec<u32> {
        if self.dkg.is_some()
            || self.key_share.is_some()
            || self.failure.is_some()
            || self.resharing.is_some()
            || self.dkg_config.is_none()
        {
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
        let Some(seq) = self.record.as_ref().map(|r| r.seq()) else {
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
        consider(self.reshare_deadline());
        if self.dkg.is_none() && self.key_share.is_none() && self.dkg_config.is_some() {
            consider(Some(self.dkg_retry_at.unwrap_or(self.dkg_wait_until)));
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
        self.reshare_timeout(now);
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
            let waited_ms = now.saturating_sub(self.last_held().unwrap_or(now));
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
        if let Request::Dkg(bytes) = &request {
            if self.is_reshare_participant(from) {
                return self.on_reshare_request(now, from, bytes);
            }
        }
        let Some(member) = self.config.quorum.index_of(from) else {
            return Response::Rejected(StatusCode::NotAMember);
        };
        match request {
            Request::Dkg(bytes) => self.on_dkg_request(now, member, &bytes),
            Request::SignNamespace(record) => self.on_sign_request(now, member, &record),
            Request::NamespaceReady(record) => self.on_namespace_ready(now, record),
            Request::SignHandover {
                handover,
                namespace,
            } => self.on_sign_handover(now, member, &handover, &namespace),
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
            Pending::Dkg { run, to, bytes } => {
                let live =
                    self.dkg_run_is_live(run) || (run == self.dkg_run && self.reshare_is_live());
                if response.is_err() && live {
                    // Not up yet, or the connection dropped: send it again
                    // while the run can use it.
                    self.set_timer(now + RESEND_MS, Timer::DkgResend { run, to, bytes });
                }
            }
            Pending::Sign { round, member } => self.on_share(now, round, member, response),
            Pending::Check { rendezvous } => self.on_check_answer(now, rendezvous, response),
            Pending::PreviousEpoch { rendezvous } => {
                self.on_previous_epoch(now, rendezvous, response)
            }
            Pending::Namespace {
                rendezvous,
                coordinated,
            } => self.on_namespace_answer(now, id, rendezvous, coordinated, response),
            Pending::Peer { rendezvous, seq } => {
                self.on_peer_answer(now, id, rendezvous, seq, response)
            }
            Pending::HandoverShare { previous } => self.on_handover_share(now, previous, response),
            Pending::PublishHandover { rendezvous } => {
                self.on_publish_answer(now, rendezvous, response)
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
        if let (None, Some((quorum_key, index))) = (&self.key_share, self.leaving) {
            // Leaving at a resharing: this process never registered, so
            // it asks every node to forget its previous epoch's record.
            let targets: Vec<usize> = (0..self.slots.len())
                .filter(|r| self.slots[*r].shown.dropped.is_none())
                .collect();
            for rendezvous in targets {
                let id = self.send(
                    Peer::Rendezvous(rendezvous),
                    Request::Unregister { quorum_key, index },
                    Pending::Unregister,
                );
                waiting.insert(id);
            }
        }
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
            Timer::DkgResend { run, to, bytes } => {
                if self.dkg_run_is_live(run) || (run == self.dkg_run && self.reshare_is_live()) {
                    self.send(
                        to,
                        Request::Dkg(bytes.to_vec()),
                        Pending::Dkg { run, to, bytes },
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
            Timer::CheckRetry { rendezvous } => self.ask_for_namespace(rendezvous),
            Timer::HandoverRetry { previous } => self.retry_handover_share(previous),
            Timer::PublishRetry { rendezvous } => self.retry_publish(rendezvous),
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
}

fn response_code(response: &Result<Response, TransportError>) -> Option<StatusCode> {
    match response {
        Ok(r) => Some(r.status()).filter(|c| *c != StatusCode::Ok),
        Err(_) => None,
    }
}

fn phase_number(p: Phase) -> u64 {
    match p {
        Phase::Hello => 0,
        Phase::Deal => 1,
        Phase::Response => 2,
        Phase::Justification => 3,
        Phase::Finished => 4,
    }
}

/// A seed for [`Member::new`] from any RNG (the node uses the OS's, the
/// simulator its seeded one).
pub fn seed_from<R: RngCore>(rng: &mut R) -> [u8; 32] {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    seed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::QuorumSpec;
    use rendezvous_proto::testkit::TestQuorum;

    /// Compiles only for types that wipe their contents when dropped.
    fn zeroized_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}

    /// A DKG message that could not be delivered is kept to be sent
    /// again; for a share that is the dealer's `f(j)` in clear. Both the
    /// outstanding request and the resend timer must wipe it when they go.
    #[test]
    fn secrets_on_disk_encoded_dkg_shares_kept_for_resends_are_zeroized() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let q = TestQuorum::deal(3, 2, &mut rng);
        let spec = QuorumSpec {
            members: (1..=3).map(|i| q.peer_id(i)).collect(),
            threshold: 2,
            kind: None,
        };
        let ids: Vec<Vec<u8>> = spec.members.iter().map(|p| p.to_bytes()).collect();
        let dkg = DkgConfig::new(&ids, 2, b"test", 1, 1_000).unwrap();
        let base = *dkg.session_id();
        let config = MemberConfig::new(spec, 1, q.identities[0].clone(), 1);
        let mut member = Member::new(config, Start::Dkg(dkg), 0, [1; 32]).unwrap();
        member.handle_connected(0, 2);
        member.handle_connected(0, 3);
        // The others' hellos end the hello round: the deal goes out.
        for i in 2..=3u32 {
            let hello = DkgMessage::Hello(dkg::HelloMessage {
                session_id: base,
                member: i,
                attempt: 0,
                nonce: [i as u8; 32],
            });
            let answer = member.handle_request(0, &q.peer_id(i), Request::Dkg(hello.encode()));
            assert_eq!(answer, Response::DkgAccepted);
        }

        let mut shares = 0;
        while let Some(t) = member.poll_transmit() {
            let Request::Dkg(bytes) = &t.request else {
                continue;
            };
            let is_share = matches!(DkgMessage::decode(bytes), Ok(DkgMessage::Share(_)));
            match member.pending.get(&t.id) {
                Some(Pending::Dkg { bytes: kept, .. }) => {
                    zeroized_on_drop(kept);
                    shares += usize::from(is_share);
                }
                other => panic!("a DKG message without its pending entry: {other:?}"),
            }
            member.handle_response(0, t.id, Err(TransportError::Unreachable));
        }
        assert_eq!(shares, 2, "one share for each other member");
        let mut resends = 0;
        for timer in member.timers.values() {
            if let Timer::DkgResend { bytes, .. } = timer {
                zeroized_on_drop(bytes);
                resends += 1;
            }
        }
        assert!(resends >= 2, "the undelivered shares wait to be resent");
    }
}
