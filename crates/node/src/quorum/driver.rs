//! The `rdht node --quorum` process's event loop: polls the swarm (the
//! member [`Behaviour`] runs the core inside) and turns the core's events
//! into status, metrics, logs and the key share file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use libp2p::futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, Swarm};
use member::Event;
use rendezvous_proto::QuorumKey;
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

use super::{Behaviour, MemberError, MemberStatus};
use crate::behaviour::now_ms;
use crate::metrics::Metrics;

pub(super) struct Driver {
    pub(super) swarm: Swarm<Behaviour>,
    pub(super) index: u32,
    /// The configured rendezvous addresses (to name them in the log).
    pub(super) rendezvous: Vec<Multiaddr>,
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
        loop {
            self.report();
            if self.swarm.behaviour().is_shut_down() {
                // A member that left at a resharing has unregistered.
                info!(index = self.index, "stopping");
                return Ok(());
            }
            tokio::select! {
                event = self.swarm.select_next_some() => {
                    if let SwarmEvent::Behaviour(event) = event {
                        self.on_core_event(event)?;
                    }
                }
                _ = &mut shutdown => {
                    self.unregister().await;
                    return Ok(());
                }
            }
        }
    }

    /// Publishes the member's status and its gauges.
    fn report(&mut self) {
        let next = self.swarm.behaviour().status();
        self.metrics
            .member_registered_at
            .store(next.registered_at as u64, Ordering::Relaxed);
        self.metrics
            .member_rendezvous_dropped
            .store(next.dropped as u64, Ordering::Relaxed);
        self.status.send_if_modified(|s| {
            let changed = *s != next;
            *s = next;
            changed
        });
    }

    fn rendezvous_peer(&self, r: usize) -> String {
        self.rendezvous
            .get(r)
            .and_then(crate::behaviour::split_p2p)
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
                    epoch = self.epoch(),
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
        let epoch = self.epoch();
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

    /// The member's epoch (that of the key share it writes).
    fn epoch(&self) -> u64 {
        self.swarm
            .behaviour()
            .core()
            .map_or(0, |core| core.config().epoch)
    }

    /// Withdraws this member's record from every rendezvous node that
    /// holds it (bounded wait), for a graceful shutdown.
    async fn unregister(&mut self) {
        self.swarm.behaviour_mut().shutdown();
        let wait = async {
            while !self.swarm.behaviour().is_shut_down() {
                if let SwarmEvent::Behaviour(event) = self.swarm.select_next_some().await {
                    // Errors here only report; the member is stopping anyway.
                    let _ = self.on_core_event(event);
                }
            }
        };
        let _ = tokio::time::timeout(UNREGISTER_WAIT, wait).await;
        info!(index = self.index, "stopping");
    }
}
