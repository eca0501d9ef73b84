//! The member's event loop: swarm events, answers and timeouts go to the
//! core ([`member::Member`]); its requests go out over request-response;
//! its events become status, metrics, logs and the key share file.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use libp2p::futures::StreamExt;
use libp2p::request_response::{self, OutboundFailure, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};
use member::{Event, Member, Peer, RequestId, TransportError};
use rendezvous_proto::{QuorumKey, Request, Response, StatusCode};
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

use super::{MemberError, MemberStatus};
use crate::behaviour::{now_ms, Behaviour, BehaviourEvent};
use crate::codec::Frame;
use crate::metrics::Metrics;
use crate::quorum_file::QuorumFile;

pub(super) struct Driver {
    pub(super) swarm: Swarm<Behaviour>,
    pub(super) core: Member,
    pub(super) index: u32,
    pub(super) quorum: QuorumFile,
    pub(super) rendezvous: Vec<(PeerId, Multiaddr)>,
    /// libp2p's ids of the core's requests.
    pub(super) in_flight: HashMap<OutboundRequestId, RequestId>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) key_share_path: Option<PathBuf>,
    pub(super) status: watch::Sender<MemberStatus>,
}

/// Longest wait for the rendezvous nodes' answers to the unregistration.
const UNREGISTER_WAIT: Duration = Duration::from_secs(3);

impl Driver {
    pub(super) async fn run(
        mut self,
        mut shutdown: oneshot::Receiver<()>,
    ) -> Result<(), MemberError> {
        let mut redial = tokio::time::interval(Duration::from_secs(1));
        loop {
            self.flush()?;
            if self.core.is_shut_down() {
                // A member that left at a resharing has unregistered.
                info!(index = self.index, "stopping");
                return Ok(());
            }
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
                Peer::Node(peer) => self.quorum.address_of(&peer).map(|a| (peer, a.clone())),
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
            Event::DkgStarted { attempt } => info!(index, attempt, "DKG started"),
            Event::DkgProgress { phase, rounds } => {
                self.metrics.dkg_rounds.fetch_add(rounds, Ordering::Relaxed);
                debug!(index, ?phase, "DKG phase");
            }
            Event::DkgFinished(output) => {
                self.note_disqualified(&output.disqualified);
                info!(
                    index,
                    quorum_key = %QuorumKey::from(output.key_share.quorum_key()),
                    qual = ?output.qual,
                    transcript = %hex::encode(output.transcript_hash.0),
                    "DKG finished"
                );
                self.write_key_share(&output.key_share)?;
            }
            Event::ReshareStarted { epoch } => info!(index, epoch, "resharing started"),
            Event::ReshareFinished(output) => {
                self.note_disqualified(&output.disqualified);
                info!(
                    index,
                    epoch = self.core.config().epoch,
                    quorum_key = %QuorumKey::from(output.key_share.quorum_key()),
                    qual = ?output.qual,
                    transcript = %hex::encode(output.transcript_hash.0),
                    "resharing finished: same quorum key, new share"
                );
                self.write_key_share(&output.key_share)?;
            }
            Event::ReshareDealt { previous_index } => info!(
                previous_index,
                "dealt this member's share to the new epoch: unregistering and stopping"
            ),
            Event::ReshareFailed {
                error,
                disqualified,
            } => {
                self.note_disqualified(&disqualified);
                warn!(index, %error, "resharing failed: the previous epoch stays in force");
            }
            Event::HandoverCosigned { previous_index } => info!(
                index,
                previous_index, "co-signed the handover from the previous quorum key"
            ),
            Event::HandoverSigned(handover) => info!(
                index,
                old = %handover.old_quorum_key,
                new = %handover.new_quorum_key,
                expires_at_ms = handover.expires_at_ms,
                "handover signed by the previous quorum: publishing it"
            ),
            Event::HandoverPublished { rendezvous } => {
                let at = self.rendezvous_peer(rendezvous);
                info!(index, rendezvous = %at, "handover published")
            }
            Event::HandoverUnknownOldKey => warn!(
                index,
                "coordinated the new key's namespace record but the previous quorum key is unknown here (no previous share, no [previous] quorum_key): no handover from this member"
            ),
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
            Event::PeerSigned(record) => debug!(index, seq = record.seq(), "peer record signed"),
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
            Event::DkgFailed {
                attempt,
                error,
                disqualified,
                retry_at,
            } => {
                self.note_disqualified(&disqualified);
                self.metrics.dkg_retries.fetch_add(1, Ordering::Relaxed);
                let retry_in_ms = retry_at.saturating_sub(now_ms());
                warn!(index, attempt, %error, retry_in_ms, "DKG run failed; retrying in a new session");
            }
            Event::Failed(e) => {
                warn!(index, "{e}");
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Writes a new key share (a DKG's or a resharing's) to the data
    /// directory, with the member's epoch, mode 0600.
    fn write_key_share(&self, share: &dkg::KeyShare) -> Result<(), MemberError> {
        let Some(path) = &self.key_share_path else {
            return Ok(());
        };
        let epoch = self.core.config().epoch;
        let json =
            super::KeyShareFile::encode(share, epoch).map_err(|e| MemberError::WriteKeyShare {
                path: path.clone(),
                source: e.into(),
            })?;
        crate::identity::write_secret_file(path, &json).map_err(|source| {
            MemberError::WriteKeyShare {
                path: path.clone(),
                source,
            }
        })?;
        info!(epoch, "key share written to {}", path.display());
        Ok(())
    }

    /// Names each dealer left out of a run's QUAL, and why, in the log and
    /// the metrics: a dealer that misbehaves, or a member whose complaint
    /// went unanswered, is then visible to the operator.
    fn note_disqualified(&self, disqualified: &BTreeMap<u32, dkg::Disqualification>) {
        let index = self.index;
        for (dealer, reason) in disqualified {
            self.metrics
                .dkg_disqualified
                .fetch_add(1, Ordering::Relaxed);
            warn!(index, dealer, ?reason, "DKG dealer disqualified");
        }
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
