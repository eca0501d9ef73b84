//! The discover client: asks one rendezvous node for a quorum's peers (or
//! for the namespaces of a kind), verifies every record itself with
//! `rendezvous-proto`'s client verification, and prints what verified. A
//! rendezvous is not trusted: what it served that does not verify is
//! reported, never shown as a peer.

use std::time::Duration;

use libp2p::futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use libp2p::PeerId;
use libp2p::{Multiaddr, Swarm};
use rendezvous_proto::{
    ChainError, HandoverChain, HandoverRecord, LookupError, QuorumKey, Request, Response,
    StatusCode, VerifiedAnswer,
};

use crate::behaviour::{build_swarm, now_ms, split_p2p, Behaviour, BehaviourEvent, SwarmSettings};
use crate::client;
use crate::codec::Frame;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address has no `/p2p/<peer id>`.
    #[error("{0}: the address must end with /p2p/<peer id>")]
    NoPeerId(Multiaddr),
    /// The node could not be reached or did not answer.
    #[error("request failed: {0}")]
    Failed(#[from] request_response::OutboundFailure),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The node refused the request.
    #[error("refused: {0}")]
    Rejected(StatusCode),
    /// The node answered something that is not an answer to the request
    /// (a response of another kind, or a frame that did not decode).
    #[error("unexpected answer: {0:?}")]
    Unexpected(Box<Frame<Response>>),
    /// The namespace record served does not verify.
    #[error("the rendezvous served a namespace record that does not verify: {0}")]
    Unverified(StatusCode),
    /// Setting up the client failed.
    #[error("setting up the client: {0}")]
    Setup(#[from] crate::behaviour::SwarmError),
    /// The key asked for is retired: the node answered with this
    /// handover (not verified yet; [`Client::discover_following`]
    /// verifies and follows it).
    #[error("the quorum key was handed over to {}", .0.new_quorum_key)]
    HandedOver(Box<HandoverRecord>),
    /// A handover could not be followed (forged, expired, a loop, a
    /// chain over the bound).
    #[error("handover not followed: {0}")]
    Chain(#[from] ChainError),
    /// The lookup ended otherwise (an answer of another kind than asked).
    #[error("{0}")]
    Lookup(LookupError),
}

/// A discover that followed the handovers it was answered with.
#[derive(Debug)]
pub struct Followed {
    /// The answer of the key the chain ended at.
    pub answer: VerifiedAnswer,
    /// The handovers followed, each verified under the key it came from
    /// (empty if the key asked for is not retired).
    pub chain: HandoverChain,
}

/// A libp2p client that sends requests to rendezvous nodes (and keeps its
/// connections open between requests).
pub struct Client {
    swarm: Swarm<Behaviour>,
}

impl Client {
    /// A client with this identity.
    pub fn new(keypair: Keypair) -> Result<Self, ClientError> {
        let swarm = build_swarm(keypair, &SwarmSettings::default(), None)?;
        Ok(Self { swarm })
    }

    /// A client with a throwaway identity.
    pub fn ephemeral() -> Result<Self, ClientError> {
        Self::new(Keypair::generate_ed25519())
    }

    /// Sends one frame (possibly garbage, for tests) to the node at
    /// `target` (`.../p2p/<id>`) and waits for its response frame.
    pub async fn send(
        &mut self,
        target: &Multiaddr,
        frame: Frame<Request>,
        timeout: Duration,
    ) -> Result<Frame<Response>, ClientError> {
        let (peer, base) =
            split_p2p(target).ok_or_else(|| ClientError::NoPeerId(target.clone()))?;
        let id =
            self.swarm
                .behaviour_mut()
                .rr
                .send_request_with_addresses(&peer, frame, vec![base]);
        let wait = async {
            response_to(&mut self.swarm, id)
                .await
                .map_err(ClientError::Failed)
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
    }

    /// Sends a request and returns the decoded response (a `Rejected`
    /// response is returned as is, not as an error).
    pub async fn request(
        &mut self,
        target: &Multiaddr,
        request: Request,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        match self.send(target, Frame::Message(request), timeout).await? {
            Frame::Message(r) => Ok(r),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    /// Asks for a namespace and its peers and verifies the answer (every
    /// page): [`crate::client::Behaviour`] at one node, not following
    /// handovers ([`ClientError::HandedOver`]).
    pub async fn discover(
        &mut self,
        target: &Multiaddr,
        quorum_key: QuorumKey,
        timeout: Duration,
    ) -> Result<VerifiedAnswer, ClientError> {
        let peer = self.add_rendezvous(target)?;
        let query = self
            .swarm
            .behaviour_mut()
            .client
            .discover_at_with(peer, quorum_key, false);
        match self.wait(query, timeout).await? {
            client::Event::Discovered { found, .. } => Ok(found.answer),
            other => Err(unexpected_event(other)),
        }
    }

    /// [`Client::discover`], following handovers: a retired key's
    /// handover is verified under that key and its new key discovered
    /// in turn, at most [`rendezvous_proto::MAX_HANDOVER_LINKS`] times,
    /// never twice the same key (PROTOCOL.md 15.5). The answer is the
    /// last key's; [`Followed::chain`] says how it was reached.
    pub async fn discover_following(
        &mut self,
        target: &Multiaddr,
        quorum_key: QuorumKey,
        timeout: Duration,
    ) -> Result<Followed, ClientError> {
        let peer = self.add_rendezvous(target)?;
        let query = self
            .swarm
            .behaviour_mut()
            .client
            .discover_at_with(peer, quorum_key, true);
        match self.wait(query, timeout).await? {
            client::Event::Discovered { found, .. } => Ok(Followed {
                answer: found.answer,
                chain: found.chain,
            }),
            other => Err(unexpected_event(other)),
        }
    }

    /// Lists the namespaces of a kind, then discovers and verifies each.
    /// Namespace records that do not verify, and namespaces whose
    /// discovery failed, are returned apart, one line each.
    pub async fn discover_kind(
        &mut self,
        target: &Multiaddr,
        kind: &str,
        timeout: Duration,
    ) -> Result<(Vec<VerifiedAnswer>, Vec<String>), ClientError> {
        let peer = self.add_rendezvous(target)?;
        let query = self
            .swarm
            .behaviour_mut()
            .client
            .discover_kind_at(peer, kind);
        let found = match self.wait(query, timeout).await? {
            client::Event::KindDiscovered { found, .. } => found,
            other => return Err(unexpected_event(other)),
        };
        let mut problems: Vec<String> = found
            .rejected
            .iter()
            .map(|r| {
                format!(
                    "namespace record #{} ({}) does not verify: {}",
                    r.position,
                    r.quorum_key.map(|k| k.to_hex()).unwrap_or_default(),
                    r.code
                )
            })
            .collect();
        problems.extend(
            found
                .failed
                .iter()
                .map(|(key, e)| format!("{key}: {}", ClientError::from(e.clone()))),
        );
        Ok((found.answers, problems))
    }

    fn add_rendezvous(&mut self, target: &Multiaddr) -> Result<PeerId, ClientError> {
        self.swarm
            .behaviour_mut()
            .client
            .add_rendezvous_address(target.clone())
            .map_err(|e| ClientError::NoPeerId(e.0))
    }

    /// Drives the swarm until `query` ends (or `timeout` passes).
    async fn wait(
        &mut self,
        query: client::QueryId,
        timeout: Duration,
    ) -> Result<client::Event, ClientError> {
        let wait = async {
            loop {
                if let SwarmEvent::Behaviour(BehaviourEvent::Client(event)) =
                    self.swarm.select_next_some().await
                {
                    let id = match &event {
                        client::Event::Discovered { query, .. }
                        | client::Event::KindDiscovered { query, .. }
                        | client::Event::Failed { query, .. } => *query,
                    };
                    if id == query {
                        return event;
                    }
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Err(_) => Err(ClientError::Timeout(timeout)),
            Ok(client::Event::Failed { error, .. }) => Err(ClientError::from(error)),
            Ok(event) => Ok(event),
        }
    }
}

/// An event of another kind than the query asked for (never expected).
fn unexpected_event(event: client::Event) -> ClientError {
    ClientError::Lookup(LookupError::Unexpected(match event {
        client::Event::Discovered { .. } => "Discovered",
        client::Event::KindDiscovered { .. } => "KindDiscovered",
        client::Event::Failed { .. } => "Failed",
    }))
}

impl From<LookupError> for ClientError {
    fn from(e: LookupError) -> Self {
        match e {
            LookupError::Rejected(code) => ClientError::Rejected(code),
            LookupError::Unverified(code) => ClientError::Unverified(code),
            LookupError::HandedOver(h) => ClientError::HandedOver(h),
            LookupError::Chain(e) => ClientError::Chain(e),
            other => ClientError::Lookup(other),
        }
    }
}

impl From<client::DiscoverError> for ClientError {
    /// One node was asked: its failure, as the error of a request to it.
    fn from(e: client::DiscoverError) -> Self {
        match e {
            client::DiscoverError::NoRendezvous => ClientError::Rejected(StatusCode::Internal),
            client::DiscoverError::AllFailed(mut failures) => match failures.pop() {
                Some((_, client::NodeFailure::Request(e))) => ClientError::Failed(e),
                Some((_, client::NodeFailure::Malformed(code))) => {
                    ClientError::Unexpected(Box::new(Frame::Malformed(code)))
                }
                Some((_, client::NodeFailure::Lookup(e))) => ClientError::from(e),
                Some((_, client::NodeFailure::Forged(codes))) => {
                    ClientError::Unverified(codes.first().copied().unwrap_or(StatusCode::Internal))
                }
                Some((_, client::NodeFailure::Verifier)) | None => {
                    ClientError::Rejected(StatusCode::Internal)
                }
            },
        }
    }
}

/// A verified answer as the JSON the CLI prints:
/// `{"quorum_key", "n", "threshold", "kind", "peers": [{"index", "peer_id",
/// "addrs", "last_seen_ms"}], "rejected": [...]}`.
pub fn answer_json(answer: &VerifiedAnswer) -> serde_json::Value {
    let record = answer.namespace.record();
    serde_json::json!({
        "quorum_key": answer.namespace.quorum_key().to_hex(),
        "n": answer.namespace.n(),
        "threshold": answer.namespace.threshold(),
        "epoch": record.epoch,
        "kind": record.kind,
        "expires_at_ms": record.expires_at_ms,
        "peers": answer.peers.iter().map(|p| serde_json::json!({
            "index": p.record.index(),
            "peer_id": p.record.peer_id().to_string(),
            "addrs": p.record.addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "seq": p.record.seq(),
            "last_seen_ms": p.last_seen_ms,
        })).collect::<Vec<_>>(),
        "rejected": answer.rejected.iter().map(|r| serde_json::json!({
            "position": r.position,
            "index": r.record.index(),
            "peer_id": r.record.peer_id().to_string(),
            "code": r.code.name(),
        })).collect::<Vec<_>>(),
    })
}

/// The handovers followed, as the `handovers` field of `rdht discover
/// --json`: `[{"from": <hex>, "to": <hex>, "issued_at_ms", "expires_at_ms"}]`.
pub fn handovers_json(chain: &HandoverChain) -> serde_json::Value {
    serde_json::Value::Array(
        chain
            .links()
            .iter()
            .map(|h| {
                serde_json::json!({
                    "from": h.old_quorum_key.to_hex(),
                    "to": h.new_quorum_key.to_hex(),
                    "issued_at_ms": h.issued_at_ms,
                    "expires_at_ms": h.expires_at_ms,
                })
            })
            .collect(),
    )
}

/// The handovers followed, one `handed over: <old> -> <new>` line each.
pub fn handover_lines(chain: &HandoverChain) -> Vec<String> {
    chain
        .hops()
        .into_iter()
        .map(|(from, to)| format!("handed over: {from} -> {to}"))
        .collect()
}

/// A verified answer as a human-readable table.
pub fn answer_table(answer: &VerifiedAnswer) -> String {
    let record = answer.namespace.record();
    let now = now_ms();
    let mut out = format!(
        "quorum {}\n  n = {}, threshold = {}, kind = {}, epoch = {}\n  {} verified peer(s)\n",
        answer.namespace.quorum_key(),
        answer.namespace.n(),
        answer.namespace.threshold(),
        record.kind.as_deref().unwrap_or("-"),
        record.epoch,
        answer.peers.len(),
    );
    out.push_str(&format!(
        "  {:>5}  {:<52}  {:<12}  {}\n",
        "index", "peer id", "last seen", "addrs"
    ));
    for p in &answer.peers {
        let seen = match p.last_seen_ms {
            Some(t) => format!("{} ms ago", now.saturating_sub(t)),
            None => "not yet".into(),
        };
        let addrs: Vec<String> = p.record.addrs().iter().map(|a| a.to_string()).collect();
        out.push_str(&format!(
            "  {:>5}  {:<52}  {:<12}  {}\n",
            p.record.index(),
            p.record.peer_id(),
            seen,
            addrs.join(" ")
        ));
    }
    out
}

/// What the rendezvous served that did not verify, one line each (empty
/// when everything verified).
pub fn rejected_lines(answer: &VerifiedAnswer) -> Vec<String> {
    answer
        .rejected
        .iter()
        .map(|r| {
            format!(
                "WARNING: the rendezvous served a record for member {} ({}) that does not verify: {}",
                r.record.index(), r.record.peer_id(), r.code
            )
        })
        .collect()
}

/// Most pages one [`Client::discover`] follows.
pub use rendezvous_proto::MAX_DISCOVER_PAGES;

/// Drives `swarm` until the response to request `id` arrives (or the
/// request fails); every other event is dropped. For one-request-at-a-time
/// callers: a client, a load generator's warm-up.
pub async fn response_to(
    swarm: &mut Swarm<Behaviour>,
    id: request_response::OutboundRequestId,
) -> Result<Frame<Response>, request_response::OutboundFailure> {
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::Behaviour(BehaviourEvent::Rr(request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            })) if request_id == id => return Ok(response),
            SwarmEvent::Behaviour(BehaviourEvent::Rr(
                request_response::Event::OutboundFailure {
                    request_id, error, ..
                },
            )) if request_id == id => return Err(error),
            _ => {}
        }
    }
}
