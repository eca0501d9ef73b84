//! A tiny world for driving several member cores by hand: requests travel
//! between the cores by PeerId, and one rendezvous node played here serves
//! a previous epoch's namespace record (if any), accepts every
//! registration, and checks handovers. Shared by `reshare.rs` and
//! `rotate.rs`.

#![allow(dead_code)] // each test file uses its own part

use member::{Event, Member, Peer};
use rendezvous_proto::{
    HandoverRecord, NamespaceRecord, PeerId, QuorumKey, Request, Response, StatusCode,
};

/// Virtual time starts here (ms since the Unix epoch).
pub const T0: u64 = 1_700_000_000_000;

/// One node: its PeerId, its core and the events it reported.
pub struct Node {
    pub peer_id: PeerId,
    pub member: Member,
    pub events: Vec<Event>,
}

/// The nodes, and what the rendezvous node holds and was asked.
pub struct World {
    pub nodes: Vec<Node>,
    /// What `Discover` answers with (the previous epoch's record).
    pub previous_record: Option<NamespaceRecord>,
    pub handovers: Vec<HandoverRecord>,
    pub registered_namespaces: Vec<NamespaceRecord>,
    pub unregistered: Vec<(QuorumKey, u32)>,
    pub now: u64,
}

impl World {
    /// A world of `nodes` at T0.
    pub fn new(nodes: Vec<Node>, previous_record: Option<NamespaceRecord>) -> Self {
        Self {
            nodes,
            previous_record,
            handovers: Vec::new(),
            registered_namespaces: Vec::new(),
            unregistered: Vec::new(),
            now: T0,
        }
    }

    fn index_of(&self, peer: &PeerId) -> Option<usize> {
        self.nodes.iter().position(|n| n.peer_id == *peer)
    }

    fn rendezvous_answer(&mut self, request: &Request) -> Response {
        match request {
            Request::Discover { .. } => match &self.previous_record {
                Some(record) => Response::Discovered(rendezvous_proto::DiscoverAnswer {
                    namespace: record.clone(),
                    peers: Vec::new(),
                    cookie: Default::default(),
                }),
                None => Response::Rejected(StatusCode::UnknownNamespace),
            },
            Request::PublishHandover(handover) => {
                match rendezvous_proto::verify_handover(handover, self.now) {
                    Ok(()) => {
                        self.handovers.push(handover.clone());
                        Response::Registered { ttl_ms: 60_000 }
                    }
                    Err(code) => Response::Rejected(code),
                }
            }
            Request::RegisterNamespace(record) => {
                self.registered_namespaces.push(record.clone());
                Response::Registered { ttl_ms: 60_000 }
            }
            Request::RegisterPeer(_) => Response::Registered { ttl_ms: 60_000 },
            Request::Unregister { quorum_key, index } => {
                self.unregistered.push((*quorum_key, *index));
                Response::Unregistered
            }
            _ => Response::Rejected(StatusCode::NotAuthorized),
        }
    }

    /// Delivers every request (members' by PeerId, the rendezvous node's
    /// answered here) until none is left, collecting events.
    pub fn pump(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(t) = self.nodes[i].member.poll_transmit() {
                    moved = true;
                    let from = self.nodes[i].peer_id;
                    let target = match t.to {
                        Peer::Member(j) => {
                            let peer = self.nodes[i].member.config().quorum.peer(j);
                            peer.and_then(|p| self.index_of(&p))
                        }
                        Peer::Node(peer) => self.index_of(&peer),
                        Peer::Rendezvous(_) => {
                            let answer = self.rendezvous_answer(&t.request);
                            self.nodes[i]
                                .member
                                .handle_response(self.now, t.id, Ok(answer));
                            continue;
                        }
                    };
                    let answer = match target {
                        Some(j) => Ok(self.nodes[j]
                            .member
                            .handle_request(self.now, &from, t.request)),
                        None => Err(member::TransportError::Unreachable),
                    };
                    self.nodes[i].member.handle_response(self.now, t.id, answer);
                }
            }
            for node in &mut self.nodes {
                while let Some(e) = node.member.poll_event() {
                    node.events.push(e);
                }
            }
            if !moved {
                break;
            }
        }
    }

    /// Runs until `done` or `until` (virtual ms after T0), firing timers.
    pub fn run(&mut self, until: u64, done: impl Fn(&World) -> bool) {
        loop {
            self.pump();
            if done(self) {
                return;
            }
            let next = self
                .nodes
                .iter()
                .filter_map(|n| n.member.poll_timeout())
                .min();
            let Some(next) = next.filter(|t| *t <= T0 + until) else {
                return;
            };
            self.now = self.now.max(next);
            for node in &mut self.nodes {
                node.member.handle_timeout(self.now);
            }
        }
    }
}
