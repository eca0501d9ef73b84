//! Discovery as a `NetworkBehaviour` an application composes into its own
//! swarm: ask rendezvous nodes for a quorum's members (or every quorum of
//! a kind) and get back only what verified.
//!
//! ```no_run
//! use libp2p::swarm::NetworkBehaviour;
//!
//! #[derive(NetworkBehaviour)]
//! struct App {
//!     rdht: node::client::Behaviour,
//!     // ... the application's own behaviours ...
//! }
//!
//! # fn demo(app: &mut App, rendezvous: libp2p::Multiaddr, key: rendezvous_proto::QuorumKey) {
//! // `.../p2p/<id>` of any rdht rendezvous node:
//! app.rdht.add_rendezvous_address(rendezvous).unwrap();
//! let query = app.rdht.discover(key);
//! // ... later, from the swarm: AppEvent::Rdht(node::client::Event::Discovered { query, found, .. })
//! # }
//! ```
//!
//! Each query is a [`rendezvous_proto::lookup`] state machine (paging,
//! handover following, verification; the `rdht discover` command runs the
//! same), driven over `/rdht/rendezvous/2.0.0` requests (outbound only: an
//! application's swarm answers no rdht requests by composing this).
//!
//! **Nothing a rendezvous node answers is trusted.** Every namespace
//! record, peer record and handover is verified before it is reported;
//! what a node served that does not verify is reported apart
//! ([`rendezvous_proto::VerifiedAnswer::rejected`]). Verification runs on
//! a thread of the behaviour's own, never inside the swarm's `poll`, so a
//! large answer does not hold the application's event loop. A node that
//! fails (cannot be reached, refuses, serves what does not verify) is not
//! fatal: the query moves on to the next known rendezvous node and fails
//! only when every one did, with each node's reason. What verified at a
//! node that also served forgeries is kept and merged with the next
//! nodes' answers (each member once, its highest seq, never two epochs),
//! as the simulator's clients do.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc as std_mpsc;
use std::task::{Context, Poll};
use std::time::Duration;

use libp2p::futures::channel::mpsc;
use libp2p::futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::{FromSwarm, NetworkBehaviour, THandlerInEvent, ToSwarm};
use libp2p::{Multiaddr, PeerId};
use rendezvous_proto::{
    Found, Gather, Gathered, KindFound, KindLookup, Limits, LookupError, QuorumKey, QuorumLookup,
    Request, Response, Step,
};

use crate::behaviour::{now_ms, split_p2p};
use crate::codec::{Frame, RdhtCodec, PROTOCOL};

/// Identifies a query started with [`Behaviour::discover`] and friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(u64);

/// How the behaviour asks.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long one request may wait for its answer.
    pub request_timeout: Duration,
    /// Whether a retired key's handover is followed to its new key
    /// (PROTOCOL.md 15.5; at most [`rendezvous_proto::MAX_HANDOVER_LINKS`]
    /// links, each verified).
    pub follow_handovers: bool,
    /// Limits the answers are checked against.
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            follow_handovers: true,
            limits: Limits::DEFAULT,
        }
    }
}

/// What the behaviour reports.
// One event per query, moved once: boxing the answers buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Event {
    /// A quorum's verified members.
    Discovered {
        /// The query.
        query: QueryId,
        /// The node that answered.
        rendezvous: PeerId,
        /// The verified answer and the handovers followed to reach it
        /// (`found.answer.namespace.quorum_key()` is where they led).
        found: Found,
    },
    /// Every quorum of a kind, each verified.
    KindDiscovered {
        /// The query.
        query: QueryId,
        /// The node that answered.
        rendezvous: PeerId,
        /// The namespaces and their members, and what did not verify.
        found: KindFound,
    },
    /// No node could answer the query.
    Failed {
        /// The query.
        query: QueryId,
        /// Why.
        error: DiscoverError,
    },
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// No rendezvous node is known for a query that did not name one
    /// ([`Behaviour::add_rendezvous`]).
    #[error("no rendezvous node known")]
    NoRendezvous,
    /// Every node tried failed; each one's reason, in the order tried.
    #[error("every rendezvous node failed: {}", describe(.0))]
    AllFailed(Vec<(PeerId, NodeFailure)>),
}

fn describe(failures: &[(PeerId, NodeFailure)]) -> String {
    failures
        .iter()
        .map(|(peer, why)| format!("{peer}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why one rendezvous node could not answer a query.
#[derive(Debug, thiserror::Error)]
pub enum NodeFailure {
    /// The request failed (unreachable, timed out, connection lost,
    /// protocol not supported).
    #[error("request failed: {0}")]
    Request(#[from] request_response::OutboundFailure),
    /// The node sent a frame that did not decode (the code it would get
    /// for such a frame).
    #[error("undecodable answer: {0}")]
    Malformed(rendezvous_proto::StatusCode),
    /// What the node answered ended the lookup: a refusal, a record that
    /// does not verify, a handover that cannot be followed.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// The node's answer verified, but it also served records that do
    /// not (their codes): an honest node verifies what it stores, so the
    /// next node is asked too and the answers merged.
    #[error("served records that do not verify: {0:?}")]
    Forged(Vec<rendezvous_proto::StatusCode>),
    /// The verification thread is gone (it panicked).
    #[error("verification thread stopped")]
    Verifier,
}

/// Why an address cannot name a rendezvous node.
#[derive(Debug, thiserror::Error)]
#[error("{0}: the address must end with /p2p/<peer id>")]
pub struct NoPeerId(pub Multiaddr);

/// A query's lookup state machine.
#[derive(Debug)]
enum Lookup {
    Quorum(QuorumLookup),
    Kind(KindLookup),
}

/// How a query starts over at another node.
#[derive(Debug, Clone)]
enum Target {
    Quorum {
        key: QuorumKey,
        follow_handovers: bool,
    },
    Kind(String),
}

impl Target {
    fn start(&self) -> (Lookup, Request) {
        match self {
            Target::Quorum {
                key,
                follow_handovers,
            } => {
                let (lookup, request) = QuorumLookup::new(*key, *follow_handovers);
                (Lookup::Quorum(lookup), request)
            }
            Target::Kind(kind) => {
                let (lookup, request) = KindLookup::new(kind);
                (Lookup::Kind(lookup), request)
            }
        }
    }
}

/// One query in flight.
struct Query {
    target: Target,
    /// Nodes still to try after the current one.
    remaining: VecDeque<PeerId>,
    /// The node being asked.
    current: PeerId,
    /// The lookup, while no answer is being verified (`None` while it is
    /// on the verification thread).
    lookup: Option<Lookup>,
    failures: Vec<(PeerId, NodeFailure)>,
    /// What verified at nodes that also served forgeries, merged.
    gathered: Gathered,
}

/// Work for the verification thread: a lookup and the answer to take.
struct Job {
    query: QueryId,
    lookup: Lookup,
    response: Response,
    limits: Limits,
}

/// What the verification thread did with a job.
enum Outcome {
    Quorum(QuorumLookup, Step<Found>),
    Kind(KindLookup, Step<KindFound>),
}

/// The discovery behaviour. See the module docs.
pub struct Behaviour {
    rr: request_response::Behaviour<RdhtCodec>,
    config: Config,
    rendezvous: Vec<PeerId>,
    addresses: HashMap<PeerId, Vec<Multiaddr>>,
    queries: HashMap<QueryId, Query>,
    requests: HashMap<OutboundRequestId, QueryId>,
    next_query: u64,
    jobs: Option<std_mpsc::Sender<Job>>,
    outcomes_tx: mpsc::UnboundedSender<(QueryId, Result<Outcome, ()>)>,
    outcomes_rx: mpsc::UnboundedReceiver<(QueryId, Result<Outcome, ()>)>,
    events: VecDeque<Event>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

impl Behaviour {
    /// A behaviour with this configuration and no rendezvous node known.
    pub fn new(config: Config) -> Self {
        let rr = request_response::Behaviour::with_codec(
            RdhtCodec,
            [(PROTOCOL, ProtocolSupport::Outbound)],
            request_response::Config::default().with_request_timeout(config.request_timeout),
        );
        let (outcomes_tx, outcomes_rx) = mpsc::unbounded();
        Self {
            rr,
            config,
            rendezvous: Vec::new(),
            addresses: HashMap::new(),
            queries: HashMap::new(),
            requests: HashMap::new(),
            next_query: 0,
            jobs: None,
            outcomes_tx,
            outcomes_rx,
            events: VecDeque::new(),
        }
    }

    /// Adds a rendezvous node to ask, with an address to dial it at (more
    /// addresses of the same node are kept too). Nodes are asked in the
    /// order they were added.
    pub fn add_rendezvous(&mut self, peer: PeerId, address: Multiaddr) {
        if !self.rendezvous.contains(&peer) {
            self.rendezvous.push(peer);
        }
        let known = self.addresses.entry(peer).or_default();
        if !known.contains(&address) {
            known.push(address);
        }
    }

    /// [`Behaviour::add_rendezvous`] from a `.../p2p/<peer id>` address.
    pub fn add_rendezvous_address(&mut self, address: Multiaddr) -> Result<PeerId, NoPeerId> {
        let (peer, base) = split_p2p(&address).ok_or(NoPeerId(address))?;
        self.add_rendezvous(peer, base);
        Ok(peer)
    }

    /// The rendezvous nodes known, in the order they are asked.
    pub fn rendezvous(&self) -> &[PeerId] {
        &self.rendezvous
    }

    /// Starts discovering a quorum's members, asking the known rendezvous
    /// nodes in turn until one answers with something that verifies.
    pub fn discover(&mut self, quorum_key: QuorumKey) -> QueryId {
        let nodes = self.rendezvous.clone();
        let follow_handovers = self.config.follow_handovers;
        self.start(
            Target::Quorum {
                key: quorum_key,
                follow_handovers,
            },
            nodes,
        )
    }

    /// Starts discovering a quorum's members at one node only.
    pub fn discover_at(&mut self, rendezvous: PeerId, quorum_key: QuorumKey) -> QueryId {
        let follow_handovers = self.config.follow_handovers;
        self.discover_at_with(rendezvous, quorum_key, follow_handovers)
    }

    /// [`Behaviour::discover_at`], following handovers or not whatever the
    /// configuration says (not following, a retired key's handover ends
    /// the query: [`LookupError::HandedOver`]).
    pub fn discover_at_with(
        &mut self,
        rendezvous: PeerId,
        quorum_key: QuorumKey,
        follow_handovers: bool,
    ) -> QueryId {
        self.start(
            Target::Quorum {
                key: quorum_key,
                follow_handovers,
            },
            vec![rendezvous],
        )
    }

    /// Starts discovering every quorum of `kind` (each namespace record
    /// verified, then each namespace's members), asking the known nodes in
    /// turn.
    pub fn discover_kind(&mut self, kind: &str) -> QueryId {
        let nodes = self.rendezvous.clone();
        self.start(Target::Kind(kind.to_owned()), nodes)
    }

    /// [`Behaviour::discover_kind`] at one node only.
    pub fn discover_kind_at(&mut self, rendezvous: PeerId, kind: &str) -> QueryId {
        self.start(Target::Kind(kind.to_owned()), vec![rendezvous])
    }

    fn start(&mut self, target: Target, nodes: Vec<PeerId>) -> QueryId {
        let query = QueryId(self.next_query);
        self.next_query += 1;
        let mut remaining: VecDeque<PeerId> = nodes.into();
        let Some(first) = remaining.pop_front() else {
            self.events.push_back(Event::Failed {
                query,
                error: DiscoverError::NoRendezvous,
            });
            return query;
        };
        let (lookup, request) = target.start();
        self.queries.insert(
            query,
            Query {
                target,
                remaining,
                current: first,
                lookup: Some(lookup),
                failures: Vec::new(),
                gathered: Gathered::new(),
            },
        );
        self.send(query, first, request);
        query
    }

    fn send(&mut self, query: QueryId, peer: PeerId, request: Request) {
        let addresses = self.addresses.get(&peer).cloned().unwrap_or_default();
        let id = self
            .rr
            .send_request_with_addresses(&peer, Frame::Message(request), addresses);
        self.requests.insert(id, query);
    }

    /// The current node failed: try the next one, or report every failure.
    fn node_failed(&mut self, query_id: QueryId, why: NodeFailure) {
        let Some(query) = self.queries.get_mut(&query_id) else {
            return;
        };
        query.failures.push((query.current, why));
        match query.remaining.pop_front() {
            Some(next) => {
                query.current = next;
                let (lookup, request) = query.target.start();
                query.lookup = Some(lookup);
                self.send(query_id, next, request);
            }
            None => {
                let Some(query) = self.queries.remove(&query_id) else {
                    return;
                };
                // What verified anywhere beats nothing: report it, with
                // the forgeries in `found.answer.rejected`.
                self.events.push_back(match query.gathered.finish() {
                    Some(found) => Event::Discovered {
                        query: query_id,
                        rendezvous: query.current,
                        found,
                    },
                    None => Event::Failed {
                        query: query_id,
                        error: DiscoverError::AllFailed(query.failures),
                    },
                });
            }
        }
    }

    /// Hands an answer to the verification thread.
    fn verify(&mut self, query_id: QueryId, response: Response) {
        let Some(query) = self.queries.get_mut(&query_id) else {
            return;
        };
        let Some(lookup) = query.lookup.take() else {
            // One request at a time per query, so its lookup is here: if
            // not, fail the node rather than leave the query hanging.
            return self.node_failed(query_id, NodeFailure::Verifier);
        };
        let job = Job {
            query: query_id,
            lookup,
            response,
            limits: self.config.limits,
        };
        let sent = match self.jobs.as_ref() {
            Some(jobs) => jobs.send(job).map_err(|e| e.0),
            None => Err(job),
        };
        if let Err(job) = sent {
            // First use, or the thread is gone: start one and retry once.
            let jobs = spawn_verifier(self.outcomes_tx.clone());
            let retried = jobs.send(job);
            self.jobs = Some(jobs);
            if retried.is_err() {
                self.node_failed(query_id, NodeFailure::Verifier);
            }
        }
    }

    /// What the verification thread made of an answer.
    fn on_outcome(&mut self, query_id: QueryId, outcome: Result<Outcome, ()>) {
        let Some(query) = self.queries.get_mut(&query_id) else {
            return;
        };
        let rendezvous = query.current;
        match outcome {
            Err(()) => self.node_failed(query_id, NodeFailure::Verifier),
            Ok(Outcome::Quorum(lookup, Step::Send(request))) => {
                query.lookup = Some(Lookup::Quorum(lookup));
                self.send(query_id, rendezvous, request);
            }
            Ok(Outcome::Kind(lookup, Step::Send(request))) => {
                query.lookup = Some(Lookup::Kind(lookup));
                self.send(query_id, rendezvous, request);
            }
            Ok(Outcome::Quorum(_, Step::Done(Ok(found)))) => match query.gathered.add(found) {
                Gather::Done(found) => {
                    self.queries.remove(&query_id);
                    self.events.push_back(Event::Discovered {
                        query: query_id,
                        rendezvous,
                        found: *found,
                    });
                }
                Gather::Forged(forged) => self.node_failed(query_id, NodeFailure::Forged(forged)),
            },
            Ok(Outcome::Kind(_, Step::Done(Ok(found)))) => {
                self.queries.remove(&query_id);
                self.events.push_back(Event::KindDiscovered {
                    query: query_id,
                    rendezvous,
                    found,
                });
            }
            Ok(Outcome::Quorum(_, Step::Done(Err(e))))
            | Ok(Outcome::Kind(_, Step::Done(Err(e)))) => {
                self.node_failed(query_id, NodeFailure::Lookup(e))
            }
        }
    }

    fn on_request_event(
        &mut self,
        event: request_response::Event<Frame<Request>, Frame<Response>>,
    ) {
        match event {
            request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                let Some(query) = self.requests.remove(&request_id) else {
                    return;
                };
                match response {
                    Frame::Message(response) => self.verify(query, response),
                    Frame::Malformed(code) => self.node_failed(query, NodeFailure::Malformed(code)),
                    Frame::Raw(_) => self.node_failed(
                        query,
                        NodeFailure::Malformed(rendezvous_proto::StatusCode::Decode),
                    ),
                }
            }
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(query) = self.requests.remove(&request_id) {
                    self.node_failed(query, NodeFailure::Request(error));
                }
            }
            // Outbound only: no request arrives, no response is sent.
            request_response::Event::Message { .. }
            | request_response::Event::InboundFailure { .. }
            | request_response::Event::ResponseSent { .. } => {}
        }
    }
}

/// Starts the verification thread: it takes jobs until the behaviour (the
/// sender) is dropped. A job that panics is reported as
/// [`NodeFailure::Verifier`] and the thread goes on.
fn spawn_verifier(
    outcomes: mpsc::UnboundedSender<(QueryId, Result<Outcome, ()>)>,
) -> std_mpsc::Sender<Job> {
    let (jobs, queue) = std_mpsc::channel::<Job>();
    // If the thread cannot start, `queue` is dropped with the closure and
    // every send fails: the queries fail with `NodeFailure::Verifier`.
    let _ = std::thread::Builder::new()
        .name("rdht-client-verify".into())
        .spawn(move || {
            let mut rng = rand::rngs::OsRng;
            while let Ok(job) = queue.recv() {
                let query = job.query;
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_job(job, &mut rng)
                }))
                .map_err(|_| ());
                if outcomes.unbounded_send((query, outcome)).is_err() {
                    break;
                }
            }
        });
    jobs
}

fn run_job(job: Job, rng: &mut rand::rngs::OsRng) -> Outcome {
    let now = now_ms();
    match job.lookup {
        Lookup::Quorum(mut lookup) => {
            let step = lookup.handle_response(job.response, now, &job.limits, rng);
            Outcome::Quorum(lookup, step)
        }
        Lookup::Kind(mut lookup) => {
            let step = lookup.handle_response(job.response, now, &job.limits, rng);
            Outcome::Kind(lookup, step)
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler =
        <request_response::Behaviour<RdhtCodec> as NetworkBehaviour>::ConnectionHandler;
    type ToSwarm = Event;

    crate::behaviour::delegate_connections!(rr);

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.rr.on_swarm_event(event);
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Event, THandlerInEvent<Self>>> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Poll::Ready(ToSwarm::GenerateEvent(event));
            }
            if let Poll::Ready(Some((query, outcome))) = self.outcomes_rx.poll_next_unpin(cx) {
                self.on_outcome(query, outcome);
                continue;
            }
            match self.rr.poll(cx) {
                Poll::Ready(ToSwarm::GenerateEvent(event)) => {
                    self.on_request_event(event);
                    continue;
                }
                Poll::Ready(other) => {
                    return Poll::Ready(
                        other.map_out(|_| unreachable!("GenerateEvent is handled above")),
                    );
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
