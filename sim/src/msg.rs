//! What travels between actors (messages), what actors set for themselves
//! (timers), what they report to the world (notes), and the context a
//! handler runs in.

use std::sync::Arc;

use libp2p_identity::PeerId;
use rendezvous_proto::{NamespaceRecord, PeerRecord, QuorumKey, Request, Response, StatusCode};
use sha2::{Digest, Sha256};

use crate::net::Class;
use crate::world::Shared;

/// An actor's address. The derived order (kind, then index) is the order
/// in which the handlers of one instant are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Addr {
    /// The world itself (scenario control events).
    World,
    /// Rendezvous node `i`.
    Rdv(u32),
    /// Quorum member, by flat index `quorum * n + (index - 1)`.
    Member(u32),
    /// Client `i`.
    Client(u32),
    /// Attacker `i`.
    Attacker(u32),
}

impl Addr {
    fn trace(&self, h: &mut Sha256) {
        let (tag, i) = match self {
            Addr::World => (0u8, 0),
            Addr::Rdv(i) => (1, *i),
            Addr::Member(i) => (2, *i),
            Addr::Client(i) => (3, *i),
            Addr::Attacker(i) => (4, *i),
        };
        h.update([tag]);
        h.update(i.to_be_bytes());
    }
}

/// A message between actors.
#[derive(Debug, Clone)]
pub enum Msg {
    /// A protocol request, exactly as the wire carries it: built with
    /// [`Msg::request`], which encodes it with the real codec and delivers
    /// what decodes (bytes that do not decode travel as [`Msg::Raw`]).
    Request {
        /// The sender's id for it (echoed by the [`Msg::Response`]).
        id: u64,
        /// The decoded request.
        request: Arc<Request>,
        /// The PeerId the connection authenticated (the sender's own, or
        /// one whose key an attacker holds).
        remote: PeerId,
        /// Its encoded length.
        bytes: u32,
    },
    /// The answer to request `id`, through the real codec too.
    Response {
        /// The request's id.
        id: u64,
        /// The decoded response.
        response: Arc<Response>,
        /// Its encoded length.
        bytes: u32,
    },
    /// Raw request bytes (flooding): decoded with the real codec by the
    /// receiver, answered with a [`Msg::Response`] of id 0.
    Raw {
        /// The bytes.
        bytes: Arc<Vec<u8>>,
        /// The PeerId the connection authenticated.
        remote: PeerId,
    },
    /// A rendezvous node's lookup reaches a replica (a Kademlia GET of the
    /// namespace's DHT key: libp2p-kad's own message, as
    /// [`Msg::Replicate`] is its PUT).
    KadGet {
        /// The asker's id for this lookup (echoed by the answer).
        query: u64,
        /// The DHT key.
        key: dht::DhtKey,
    },
    /// A replica's answer to a [`Msg::KadGet`]: the value's wire bytes,
    /// which the asker decodes and re-verifies, or nothing held.
    KadValue {
        /// The lookup's id.
        query: u64,
        /// The encoded [`dht::NamespaceValue`], if the replica holds one.
        value: Option<Arc<Vec<u8>>>,
    },
    /// A replica pushes a namespace's value (a Kademlia PUT): the key and
    /// the value's wire bytes, which the receiver decodes and re-verifies.
    Replicate {
        /// The DHT key it is stored under.
        key: dht::DhtKey,
        /// The encoded [`dht::NamespaceValue`].
        value: Arc<Vec<u8>>,
    },
    /// Liveness ping (over a connection authenticated as the target).
    Ping,
    /// Answer to a ping.
    Pong,
}

impl Msg {
    /// A request as it arrives after the real codec: encoded, then
    /// decoded. What does not decode arrives as the raw bytes.
    pub fn request(id: u64, request: Request, remote: PeerId) -> Msg {
        let wire = request.encode();
        match Request::decode(&wire) {
            Ok(decoded) => Msg::Request {
                id,
                request: Arc::new(decoded),
                remote,
                bytes: wire.len() as u32,
            },
            Err(_) => Msg::Raw {
                bytes: Arc::new(wire),
                remote,
            },
        }
    }

    /// A namespace value pushed to a replica, under the key its namespace
    /// derives (an all-zero key if it has none, which receivers refuse).
    pub fn replicate(value: &dht::NamespaceValue) -> Msg {
        let key = value
            .namespace
            .quorum_key()
            .map_or([0; 32], |qk| dht::namespace_key(&qk));
        Msg::Replicate {
            key,
            value: Arc::new(value.encode()),
        }
    }

    /// A response as it arrives after the real codec. A response that
    /// does not decode (it cannot happen for a well-formed one) arrives as
    /// `Rejected(Decode)`.
    pub fn response(id: u64, response: Response) -> Msg {
        let wire = response.encode();
        let decoded = Response::decode(&wire).unwrap_or(Response::Rejected(StatusCode::Decode));
        Msg::Response {
            id,
            response: Arc::new(decoded),
            bytes: wire.len() as u32,
        }
    }

    /// How the message travels.
    pub fn class(&self) -> Class {
        match self {
            Msg::Request { request, .. } => match **request {
                Request::Dkg(_)
                | Request::SignNamespace(_)
                | Request::NamespaceReady(_)
                | Request::SignHandover { .. } => Class::Stream,
                _ => Class::Request,
            },
            Msg::Response { response, .. } => match **response {
                Response::DkgAccepted | Response::NamespaceShare { .. } | Response::Accepted => {
                    Class::Stream
                }
                _ => Class::Request,
            },
            _ => Class::Request,
        }
    }

    /// A short name, for statistics.
    pub fn name(&self) -> &'static str {
        match self {
            Msg::Request { request, .. } => match **request {
                Request::RegisterNamespace(_) => "register-namespace",
                Request::RegisterPeer(_) => "register-peer",
                Request::RegisterPeers(_) => "register-peers",
                Request::Unregister { .. } => "unregister",
                Request::Discover { .. } => "discover-request",
                Request::DiscoverKind { .. } => "discover-kind",
                Request::Dkg(_) => "dkg",
                Request::SignNamespace(_) => "sign-namespace",
                Request::NamespaceReady(_) => "namespace-ready",
                Request::PublishHandover(_) => "publish-handover",
                Request::SignHandover { .. } => "sign-handover",
            },
            Msg::Response { response, .. } => match **response {
                Response::Rejected(_) => "rejected",
                Response::NamespaceShare { .. } => "namespace-share",
                Response::DkgAccepted | Response::Accepted => "accepted",
                _ => "response",
            },
            Msg::Raw { .. } => "raw",
            Msg::KadGet { .. } => "kad-get",
            Msg::KadValue { .. } => "kad-value",
            Msg::Replicate { .. } => "replicate",
            Msg::Ping => "ping",
            Msg::Pong => "pong",
        }
    }

    /// Feeds a canonical summary of the message into the trace hash:
    /// enough to tell runs apart (keys, indices, seqs, codes), cheap
    /// enough to hash for every event.
    fn trace(&self, h: &mut Sha256) {
        h.update(self.name().as_bytes());
        match self {
            Msg::Request {
                id,
                request,
                remote,
                bytes,
            } => {
                h.update(id.to_be_bytes());
                h.update(bytes.to_be_bytes());
                h.update(remote.to_bytes());
                match &**request {
                    Request::RegisterNamespace(r)
                    | Request::SignNamespace(r)
                    | Request::NamespaceReady(r) => {
                        h.update(r.signature);
                        h.update(r.issued_at_ms.to_be_bytes());
                    }
                    Request::RegisterPeer(r) => {
                        h.update(r.seat.signature);
                        h.update(&r.envelope.signature);
                        h.update(r.seq().to_be_bytes());
                    }
                    Request::Dkg(payload) => h.update(&payload[..payload.len().min(48)]),
                    _ => {}
                }
            }
            Msg::Response {
                id,
                response,
                bytes,
            } => {
                h.update(id.to_be_bytes());
                h.update(bytes.to_be_bytes());
                h.update(response.status().as_u16().to_be_bytes());
                if let Response::Registered { ttl_ms } = **response {
                    h.update(ttl_ms.to_be_bytes());
                }
            }
            Msg::Raw { bytes, .. } => h.update(&bytes[..bytes.len().min(16)]),
            Msg::KadGet { query, key } => {
                h.update(query.to_be_bytes());
                h.update(key);
            }
            Msg::KadValue { query, value } => {
                h.update(query.to_be_bytes());
                if let Some(value) = value {
                    h.update((value.len() as u64).to_be_bytes());
                    h.update(&value[value.len().saturating_sub(32)..]);
                }
            }
            Msg::Replicate { key, value } => {
                h.update(key);
                h.update((value.len() as u64).to_be_bytes());
                h.update(&value[value.len().saturating_sub(32)..]);
            }
            Msg::Ping | Msg::Pong => {}
        }
    }
}

/// A timer an actor sets for itself (or a control event for the world).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Scenario control step `n` (handled by the scenario, sequentially).
    Control(u32),
    /// Member: start (its fellow members are connected: the DKG begins).
    DkgStart,
    /// Member: the core's next timeout.
    MemberWake {
        /// Incarnation that set it.
        incarnation: u32,
    },
    /// Member: requests without an answer by now have timed out.
    RequestTimeouts {
        /// Incarnation that set it.
        incarnation: u32,
    },
    /// Rendezvous: the store's next expiry or due ping.
    StoreWake,
    /// Rendezvous: push values to the other replicas.
    AntiEntropy,
    /// Client: discover quorum `quorum`, through `entry` (or a random node).
    DiscoverStart {
        /// The quorum.
        quorum: u32,
        /// Its quorum key (what a client is given to look up).
        key: QuorumKey,
        /// The entry node, if the scenario picks it.
        entry: Option<u32>,
    },
    /// Member: restarted after a crash: starts again from its key share.
    Restart,
    /// Member: restarted to reshare its key share to `epoch` (the same
    /// members, a new key set, the same quorum key).
    Reshare {
        /// The epoch the resharing makes.
        epoch: u64,
    },
    /// Member: coordinate a new namespace record now (scenarios that make
    /// quorums re-sign).
    RenewNamespace,
    /// Client: stop waiting for answers to a request.
    DiscoverDeadline {
        /// The request id.
        request: u64,
    },
}

impl Timer {
    fn trace(&self, h: &mut Sha256) {
        let mut words = [0u64; 3];
        let tag: u8 = match *self {
            Timer::Control(n) => {
                words[0] = n.into();
                0
            }
            Timer::DkgStart => 1,
            Timer::MemberWake { incarnation } => {
                words[0] = incarnation.into();
                2
            }
            Timer::RequestTimeouts { incarnation } => {
                words[0] = incarnation.into();
                3
            }
            Timer::StoreWake => 7,
            Timer::AntiEntropy => 9,
            Timer::DiscoverStart { quorum, entry, .. } => {
                words = [quorum.into(), entry.map_or(u64::MAX, u64::from), 0];
                10
            }
            Timer::Restart => 12,
            Timer::Reshare { epoch } => {
                words[0] = epoch;
                14
            }
            Timer::RenewNamespace => 13,
            Timer::DiscoverDeadline { request } => {
                words[0] = request;
                11
            }
        };
        h.update([tag]);
        for w in words {
            h.update(w.to_be_bytes());
        }
    }
}

/// What happens to an actor at one instant.
#[derive(Debug, Clone)]
pub enum EventKind {
    /// A message arrives.
    Deliver {
        /// The sender.
        from: Addr,
        /// The message.
        msg: Msg,
    },
    /// A timer fires.
    Timer(Timer),
}

impl EventKind {
    /// Feeds the canonical encoding of an event into the trace hash.
    pub fn trace(&self, at: u64, seq: u64, to: Addr, h: &mut Sha256) {
        h.update(at.to_be_bytes());
        h.update(seq.to_be_bytes());
        to.trace(h);
        match self {
            EventKind::Deliver { from, msg } => {
                h.update([0]);
                from.trace(h);
                msg.trace(h);
            }
            EventKind::Timer(t) => {
                h.update([1]);
                t.trace(h);
            }
        }
    }
}

/// The outcome of one registration at a rendezvous, as the world counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stored.
    Accepted,
    /// Already held (replication of what the replica has, or older).
    Unchanged,
    /// Refused with this code.
    Rejected(StatusCode),
}

/// What a registration was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RegKind {
    /// A namespace record.
    Namespace,
    /// A peer record.
    Peer,
    /// Bytes that had to be decoded first.
    Raw,
}

/// A report from an actor to the world (statistics and invariants).
#[derive(Debug, Clone)]
pub enum Note {
    /// A member's DKG ended.
    DkgDone {
        /// The quorum.
        quorum: u32,
        /// The member index.
        index: u32,
        /// QUAL, the key set's commitments (compressed) and the
        /// transcript hash; or the error.
        result: Result<DkgSummary, String>,
    },
    /// A quorum's namespace record was combined by its collector.
    NamespaceSigned {
        /// The quorum.
        quorum: u32,
        /// The record.
        record: Arc<NamespaceRecord>,
    },
    /// A member signed (and sent) a new peer record.
    PeerSigned {
        /// The flat member index.
        member: u32,
        /// The record.
        record: Arc<PeerRecord>,
    },
    /// A rendezvous decided on a registration (direct, or replicated).
    Registration {
        /// The rendezvous.
        rdv: u32,
        /// Who sent it.
        from: Addr,
        /// What it was.
        kind: RegKind,
        /// The decision.
        outcome: Outcome,
    },
    /// A rendezvous merged a replicated value.
    Merge {
        /// The rendezvous.
        rdv: u32,
        /// Who pushed it.
        from: Addr,
        /// Peer records stored.
        stored: u32,
        /// Peer records already held.
        unchanged: u32,
        /// Refusals (the namespace record's first, if any).
        rejected: Vec<StatusCode>,
    },
    /// A client finished a discovery.
    Discovery(Box<DiscoveryResult>),
    /// A rendezvous's core asked for a liveness dial (after its address
    /// filter and per-IP rate).
    Dial {
        /// The rendezvous.
        rdv: u32,
        /// The addresses it would dial.
        addrs: Vec<rendezvous_proto::Multiaddr>,
    },
}

/// A member's DKG result, as compared across members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkgSummary {
    /// The qualified dealers.
    pub qual: Vec<u32>,
    /// The key set's commitments, compressed.
    pub key_set: Vec<[u8; 48]>,
    /// The transcript hash.
    pub transcript: [u8; 32],
}

/// What one verified discovery found.
#[derive(Debug, Clone)]
pub struct DiscoveryResult {
    /// The client.
    pub client: u32,
    /// The quorum.
    pub quorum: u32,
    /// The entry node used last.
    pub entry: u32,
    /// Replicas that answered.
    pub replies: u32,
    /// Members found, verified, merged by index to the highest seq: (index, seq).
    pub found: Vec<(u32, u64)>,
    /// Records served that failed verification (or were superseded), by code.
    pub rejected: Vec<StatusCode>,
    /// Answers whose namespace record failed verification, by code.
    pub namespace_errors: Vec<StatusCode>,
    /// Verified records that are not what the real member signed: a
    /// forgery got through (must be 0).
    pub forged_accepted: u32,
    /// The namespace epoch of the accepted answer, if any.
    pub epoch: Option<u64>,
    /// Accepted records whose seat is of another epoch than the answer's
    /// namespace record: epochs mixed (must be 0).
    pub mixed_epochs: u32,
}

/// An action a handler asks the world to take.
#[derive(Debug)]
pub enum Out {
    /// Send a message.
    Send(Addr, Msg),
    /// Fire a timer at an absolute virtual time.
    Timer(u64, Timer),
    /// Report to the world.
    Note(Note),
}

/// What a handler sees and produces: the time, its own address, the
/// world's read-only data, and the outputs it queues.
pub struct Ctx<'a> {
    /// Virtual now (ms since the Unix epoch).
    pub now: u64,
    /// The actor's own address.
    pub me: Addr,
    /// Read-only world data.
    pub shared: &'a Shared,
    /// Outputs, applied by the world in order after the handler returns.
    pub out: Vec<Out>,
}

impl<'a> Ctx<'a> {
    /// A fresh context.
    pub fn new(now: u64, me: Addr, shared: &'a Shared) -> Self {
        Self {
            now,
            me,
            shared,
            out: Vec::new(),
        }
    }

    /// Sends a message.
    pub fn send(&mut self, to: Addr, msg: Msg) {
        self.out.push(Out::Send(to, msg));
    }

    /// Sets a timer at absolute time `at` (not before now).
    pub fn timer(&mut self, at: u64, timer: Timer) {
        self.out.push(Out::Timer(at.max(self.now), timer));
    }

    /// Reports to the world.
    pub fn note(&mut self, note: Note) {
        self.out.push(Out::Note(note));
    }
}
