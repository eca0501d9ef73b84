//! What travels between actors (messages), what actors set for themselves
//! (timers), what they report to the world (notes), and the context a
//! handler runs in.

use std::sync::Arc;

use dkg::{DkgMessage, SignatureShare};
use libp2p_identity::PeerId;
use rendezvous_proto::{DiscoverAnswer, NamespaceRecord, PeerRecord, QuorumKey, StatusCode};
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

/// What a registration acknowledgement is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    /// A namespace record (the `seq` of the ack is its issued-at).
    Namespace,
    /// A peer record (the `seq` of the ack is the record's seq).
    Peer,
    /// Undecodable bytes.
    Garbage,
}

/// A message between actors.
#[derive(Debug, Clone)]
pub enum Msg {
    /// A DKG message between members of one quorum, decoded from the
    /// canonical wire bytes the sender produced (`bytes` long).
    Dkg {
        /// The decoded message.
        message: Arc<DkgMessage>,
        /// Its encoded length.
        bytes: u32,
    },
    /// The collector asks a fellow member to sign a namespace record.
    SignRequest(Arc<NamespaceRecord>),
    /// A member's signature share over the record with this issued-at.
    SignShare {
        /// The record's issued-at (identifies the request).
        issued_at_ms: u64,
        /// The share.
        share: SignatureShare,
    },
    /// The collector tells members the namespace record is registered.
    NamespaceReady(Arc<NamespaceRecord>),
    /// Create or update a namespace.
    RegisterNamespace {
        /// The record.
        record: Arc<NamespaceRecord>,
        /// The PeerId the connection authenticated (the sender's own, or
        /// one whose key an attacker holds).
        remote: PeerId,
    },
    /// Register one member.
    RegisterPeer {
        /// The record.
        record: Arc<PeerRecord>,
        /// The PeerId the connection authenticated.
        remote: PeerId,
    },
    /// Raw request bytes (flooding): decoded with the real codec.
    Raw {
        /// The bytes.
        bytes: Arc<Vec<u8>>,
        /// The PeerId the connection authenticated.
        remote: PeerId,
    },
    /// A rendezvous answer to a registration.
    Ack {
        /// What was registered.
        kind: AckKind,
        /// Which version (see [`AckKind`]).
        seq: u64,
        /// The TTL granted, or why it was refused.
        result: Result<u64, StatusCode>,
    },
    /// A client asks an entry node for a namespace.
    Discover {
        /// The namespace.
        quorum_key: QuorumKey,
        /// Who asks.
        client: u32,
        /// The client's request id.
        request: u64,
    },
    /// The entry node's lookup reaches a replica.
    DiscoverForward {
        /// The namespace.
        quorum_key: QuorumKey,
        /// Who asks.
        client: u32,
        /// The client's request id.
        request: u64,
    },
    /// A replica answers the client.
    DiscoverReply {
        /// The client's request id.
        request: u64,
        /// The answer.
        answer: Result<Arc<DiscoverAnswer>, StatusCode>,
    },
    /// Anti-entropy: a replica pushes its value of a namespace.
    Replicate(Arc<dht::NamespaceValue>),
    /// Liveness ping (over a connection authenticated as the target).
    Ping,
    /// Answer to a ping.
    Pong,
}

impl Msg {
    /// How the message travels.
    pub fn class(&self) -> Class {
        match self {
            Msg::Dkg { .. }
            | Msg::SignRequest(_)
            | Msg::SignShare { .. }
            | Msg::NamespaceReady(_) => Class::Stream,
            _ => Class::Request,
        }
    }

    /// A short name, for statistics.
    pub fn name(&self) -> &'static str {
        match self {
            Msg::Dkg { .. } => "dkg",
            Msg::SignRequest(_) => "sign-request",
            Msg::SignShare { .. } => "sign-share",
            Msg::NamespaceReady(_) => "namespace-ready",
            Msg::RegisterNamespace { .. } => "register-namespace",
            Msg::RegisterPeer { .. } => "register-peer",
            Msg::Raw { .. } => "raw",
            Msg::Ack { .. } => "ack",
            Msg::Discover { .. } => "discover",
            Msg::DiscoverForward { .. } => "discover-forward",
            Msg::DiscoverReply { .. } => "discover-reply",
            Msg::Replicate(_) => "replicate",
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
            Msg::Dkg { message, bytes } => {
                h.update(message.session_id().as_bytes());
                h.update([message.kind() as u8]);
                h.update(message.sender().to_be_bytes());
                h.update(bytes.to_be_bytes());
            }
            Msg::SignRequest(r) | Msg::NamespaceReady(r) => {
                h.update(r.signature);
                h.update(r.issued_at_ms.to_be_bytes());
            }
            Msg::SignShare {
                issued_at_ms,
                share,
            } => {
                h.update(issued_at_ms.to_be_bytes());
                h.update(share.index.to_be_bytes());
            }
            Msg::RegisterNamespace { record, remote } => {
                h.update(record.signature);
                h.update(remote.to_bytes());
            }
            Msg::RegisterPeer { record, remote } => {
                h.update(record.signature);
                h.update(record.seq.to_be_bytes());
                h.update(remote.to_bytes());
            }
            Msg::Raw { bytes, .. } => h.update(&bytes[..bytes.len().min(16)]),
            Msg::Ack { kind, seq, result } => {
                h.update([*kind as u8]);
                h.update(seq.to_be_bytes());
                match result {
                    Ok(ttl) => h.update(ttl.to_be_bytes()),
                    Err(code) => h.update(code.as_u16().to_be_bytes()),
                }
            }
            Msg::Discover {
                quorum_key,
                client,
                request,
            }
            | Msg::DiscoverForward {
                quorum_key,
                client,
                request,
            } => {
                h.update(quorum_key.0);
                h.update(client.to_be_bytes());
                h.update(request.to_be_bytes());
            }
            Msg::DiscoverReply { request, answer } => {
                h.update(request.to_be_bytes());
                match answer {
                    Ok(a) => {
                        h.update((a.peers.len() as u32).to_be_bytes());
                        for p in &a.peers {
                            h.update(p.record.signature);
                        }
                    }
                    Err(code) => h.update(code.as_u16().to_be_bytes()),
                }
            }
            Msg::Replicate(v) => {
                h.update(v.namespace.signature);
                for p in &v.peers {
                    h.update(p.seq.to_be_bytes());
                }
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
    /// Member: start the DKG.
    DkgStart,
    /// Member: a DKG phase deadline.
    DkgDeadline {
        /// Incarnation that set it.
        incarnation: u32,
    },
    /// Member (collector): start co-signing the namespace for `epoch`.
    Cosign {
        /// The epoch to sign.
        epoch: u64,
    },
    /// Member (collector): stop waiting for namespace acknowledgements.
    NamespaceAckTimeout {
        /// The record's issued-at.
        issued_at_ms: u64,
    },
    /// Member: refresh the peer record.
    Refresh {
        /// Incarnation that set it.
        incarnation: u32,
        /// Refresh generation (older timers are ignored).
        generation: u32,
    },
    /// Member: resend registrations that were not acknowledged.
    RegisterRetry {
        /// Incarnation that set it.
        incarnation: u32,
        /// Retry generation (older timers are ignored).
        generation: u32,
    },
    /// Rendezvous: the store's next expiry or due ping.
    StoreWake,
    /// Rendezvous: verify the queued peer registrations as one batch.
    BatchFlush,
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
    /// Member: restarted after a crash; register again.
    Restart,
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
            Timer::DkgDeadline { incarnation } => {
                words[0] = incarnation.into();
                2
            }
            Timer::Cosign { epoch } => {
                words[0] = epoch;
                3
            }
            Timer::NamespaceAckTimeout { issued_at_ms } => {
                words[0] = issued_at_ms;
                4
            }
            Timer::Refresh {
                incarnation,
                generation,
            } => {
                words = [incarnation.into(), generation.into(), 0];
                5
            }
            Timer::RegisterRetry {
                incarnation,
                generation,
            } => {
                words = [incarnation.into(), generation.into(), 0];
                6
            }
            Timer::StoreWake => 7,
            Timer::BatchFlush => 8,
            Timer::AntiEntropy => 9,
            Timer::DiscoverStart { quorum, entry, .. } => {
                words = [quorum.into(), entry.map_or(u64::MAX, u64::from), 0];
                10
            }
            Timer::Restart => 12,
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
