//! Driving a resharing (`Start::Reshare`): getting the previous epoch's
//! key set, running [`dkg::ReshareMember`], and what its end means: a new
//! member (or one that stays) takes its new share and registers the new
//! epoch's namespace; a member that leaves unregisters and stops; a failed
//! run stops the member with the previous epoch still in force.
//!
//! Resharing messages travel as `Request::Dkg`, like the DKG's, and are
//! sent again while the run can use them. Participants are addressed by
//! PeerId: a node of the other epoch that is not in this member's quorum
//! is a [`Peer::Node`].

use dkg::{Participant, ReshareConfig, ReshareMember, ReshareOutput};
use rendezvous_proto::validate::verify_namespace;

use super::*;

/// What a member that takes part in a resharing starts with.
#[derive(Debug, Clone)]
pub struct ReshareStart {
    /// The previous epoch's members, index order.
    pub previous_members: Vec<PeerId>,
    /// The previous epoch's threshold.
    pub previous_threshold: u32,
    /// The quorum key, the same in both epochs.
    pub quorum_key: QuorumKey,
    /// This node's key share of the previous epoch, if it was a member
    /// (it deals it). A newcomer has none, and first fetches the previous
    /// epoch's namespace record from the rendezvous nodes, verified under
    /// `quorum_key`, for the key set the deals are checked against.
    pub previous_share: Option<KeyShare>,
    /// The run's phase timeout.
    pub phase_timeout_ms: u64,
}

/// Where a resharing stands.
pub(super) enum Resharing {
    /// A newcomer asking the rendezvous nodes for the previous epoch's
    /// namespace record (asked again after `retry_at` if none answered
    /// with a valid one).
    Fetching {
        start: Box<ReshareStart>,
        outstanding: BTreeSet<usize>,
        retry_at: u64,
        /// Messages of fellow participants that came meanwhile, for the
        /// run (bounded: five per participant).
        early: Vec<(PeerId, DkgMessage)>,
    },
    /// The run.
    Running(Box<ReshareMember>),
    /// A member that leaves: it dealt; unregistering under its previous
    /// index.
    Left,
}

/// Ask the rendezvous nodes again after this, when none had the previous
/// epoch's record.
const FETCH_RETRY_MS: u64 = 1_000;

impl Member {
    /// Starts a resharing at `now` (from [`Member::new`]).
    pub(super) fn start_reshare(&mut self, now: u64, start: ReshareStart) {
        self.fetch_or_run(now, start, Vec::new());
    }

    /// Starts the run if the previous key set is known (an old member's
    /// share has it), else asks the rendezvous nodes for it; `early`
    /// holds the messages that came before.
    fn fetch_or_run(&mut self, now: u64, start: ReshareStart, early: Vec<(PeerId, DkgMessage)>) {
        match start
            .previous_share
            .as_ref()
            .map(|s| s.public_key_set.clone())
        {
            Some(key_set) => self.run_reshare(now, start, key_set, early),
            None => {
                let outstanding: BTreeSet<usize> = (0..self.slots.len()).collect();
                for rendezvous in outstanding.iter().copied() {
                    self.send(
                        Peer::Rendezvous(rendezvous),
                        Request::Discover {
                            quorum_key: start.quorum_key,
                            limit: 1,
                            cookie: None,
                        },
                        Pending::PreviousEpoch { rendezvous },
                    );
                }
                self.resharing = Some(Resharing::Fetching {
                    start: Box::new(start),
                    outstanding,
                    retry_at: now.saturating_add(FETCH_RETRY_MS),
                    early,
                });
            }
        }
    }

    /// A rendezvous node's answer to a newcomer's question for the
    /// previous epoch's namespace record: the first valid one (the
    /// quorum's key, the epoch before this member's, the previous members
    /// and threshold) starts the run.
    pub(super) fn on_previous_epoch(
        &mut self,
        now: u64,
        rendezvous: usize,
        response: Result<Response, TransportError>,
    ) {
        let Some(Resharing::Fetching {
            start, outstanding, ..
        }) = self.resharing.as_mut()
        else {
            return;
        };
        outstanding.remove(&rendezvous);
        let Ok(Response::Discovered(answer)) = response else {
            return;
        };
        let Ok(verified) = verify_namespace(&answer.namespace, now, &self.config.limits) else {
            return;
        };
        let record = verified.record();
        let fits = verified.quorum_key() == start.quorum_key
            && record.epoch.checked_add(1) == Some(self.config.epoch)
            && verified.threshold() == start.previous_threshold
            && record.members.as_deref() == Some(start.previous_members.as_slice());
        if !fits {
            return;
        }
        // A node-verified record: its key set was decoded with it.
        let Some(key_set) = verified.key_set().cloned() else {
            return;
        };
        let Some(Resharing::Fetching { start, early, .. }) = self.resharing.take() else {
            return;
        };
        self.run_reshare(now, *start, key_set, early);
    }

    /// Builds the run's configuration and starts it.
    fn run_reshare(
        &mut self,
        now: u64,
        start: ReshareStart,
        key_set: dkg::PublicKeySet,
        early: Vec<(PeerId, DkgMessage)>,
    ) {
        let old: Vec<Vec<u8>> = start
            .previous_members
            .iter()
            .map(|p| p.to_bytes())
            .collect();
        let new: Vec<Vec<u8>> = self
            .config
            .quorum
            .members
            .iter()
            .map(|p| p.to_bytes())
            .collect();
        // Every participant derives the same session: the quorum, the new
        // epoch and both member lists (in the config's hash).
        let mut nonce = b"rdht/reshare/epoch/v1".to_vec();
        nonce.extend_from_slice(&self.config.epoch.to_be_bytes());
        let config = ReshareConfig::new(
            &old,
            &key_set,
            &new,
            self.config.quorum.threshold,
            &nonce,
            &self.config.peer_id().to_bytes(),
            start.phase_timeout_ms.max(1),
        );
        let run = config.and_then(|config| {
            ReshareMember::new(config, start.previous_share.as_ref(), now, &mut self.rng)
        });
        match run {
            Ok(mut run) => {
                for (from, message) in early {
                    if let Some(places) = run.config().participant(&from.to_bytes()) {
                        // A refused message changes nothing in the run.
                        let _ = run.handle_message(now, places, message);
                    }
                }
                self.leaving = run
                    .config()
                    .me()
                    .new
                    .is_none()
                    .then(|| (start.quorum_key, run.config().me().old.unwrap_or(0)));
                self.dkg_run += 1;
                self.events.push_back(Event::ReshareStarted {
                    epoch: self.config.epoch,
                });
                self.resharing = Some(Resharing::Running(Box::new(run)));
                self.after_reshare_step(now, Phase::Deal);
            }
            Err(e) => self.fail(MemberError::Reshare(e.to_string())),
        }
    }

    /// Asks again for the previous epoch's record when no node had a
    /// valid one (the newcomer may start before the record is anywhere).
    pub(super) fn reshare_timeout(&mut self, now: u64) {
        match self.resharing.as_mut() {
            Some(Resharing::Fetching {
                start,
                outstanding,
                retry_at,
                early,
            }) if *retry_at <= now && outstanding.is_empty() => {
                let start = (**start).clone();
                let early = std::mem::take(early);
                self.resharing = None;
                self.fetch_or_run(now, start, early);
            }
            Some(Resharing::Running(run)) if run.poll_deadline().is_some_and(|d| d <= now) => {
                let before = run.phase();
                run.handle_timeout(now);
                self.after_reshare_step(now, before);
            }
            _ => {}
        }
    }

    /// When [`Member::reshare_timeout`] is due.
    pub(super) fn reshare_deadline(&self) -> Option<u64> {
        match self.resharing.as_ref()? {
            Resharing::Fetching { retry_at, .. } => Some(*retry_at),
            Resharing::Running(run) => run.poll_deadline(),
            Resharing::Left => None,
        }
    }

    /// Whether the resharing run is under way (its messages may be sent
    /// again).
    pub(super) fn reshare_is_live(&self) -> bool {
        matches!(&self.resharing, Some(Resharing::Running(run)) if run.phase() != Phase::Finished)
    }

    /// A `Request::Dkg` from a participant of the resharing.
    pub(super) fn on_reshare_request(&mut self, now: u64, from: &PeerId, bytes: &[u8]) -> Response {
        let Ok(message) = DkgMessage::decode(bytes) else {
            return Response::Rejected(StatusCode::Decode);
        };
        let participants = self.config.quorum.n() as usize;
        let run = match self.resharing.as_mut() {
            Some(Resharing::Running(run)) => run,
            Some(Resharing::Fetching { start, early, .. }) => {
                // Kept for the run; one message per participant and kind
                // is all it needs, more is a misbehaving participant.
                let bound = 5 * (participants + start.previous_members.len());
                if early.len() < bound {
                    early.push((*from, message));
                }
                return Response::DkgAccepted;
            }
            // Finished here already: a resend whose acknowledgement was
            // lost.
            _ => return Response::DkgAccepted,
        };
        let Some(places) = run.config().participant(&from.to_bytes()) else {
            return Response::Rejected(StatusCode::NotAMember);
        };
        let before = run.phase();
        // A refused message changes nothing in the run.
        let _ = run.handle_message(now, places, message);
        self.after_reshare_step(now, before);
        Response::DkgAccepted
    }

    /// Whether `from` takes part in the resharing under way.
    pub(super) fn is_reshare_participant(&self, from: &PeerId) -> bool {
        match &self.resharing {
            Some(Resharing::Running(run)) => run.config().participant(&from.to_bytes()).is_some(),
            // A newcomer still fetching: its fellow participants' messages
            // are answered (and sent again by them) rather than refused.
            Some(Resharing::Fetching { start, .. }) => {
                start.previous_members.contains(from) || self.config.quorum.index_of(from).is_some()
            }
            _ => false,
        }
    }

    /// Sends what the run queued and takes its outcome.
    fn after_reshare_step(&mut self, now: u64, before: Phase) {
        let Some(Resharing::Running(run)) = self.resharing.as_mut() else {
            return;
        };
        let mut targets: Vec<(PeerId, Zeroizing<Vec<u8>>)> = Vec::new();
        while let Some(t) = run.poll_transmit() {
            let bytes = Zeroizing::new(t.message.encode());
            let to: Vec<&[u8]> = match t.to {
                dkg::Destination::Member(j) => run.config().new_member(j).into_iter().collect(),
                dkg::Destination::All => run.config().others(),
            };
            for identity in to {
                if let Ok(peer) = PeerId::from_bytes(identity) {
                    targets.push((peer, bytes.clone()));
                }
            }
        }
        let after = run.phase();
        let outcome = run.take_outcome();
        let disqualified = run.disqualified().clone();
        let me: Participant = run.config().me();
        if after != before {
            let rounds = phase_number(after).saturating_sub(phase_number(before));
            self.events.push_back(Event::DkgProgress {
                phase: after,
                rounds,
            });
        }
        let run_id = self.dkg_run;
        for (peer, bytes) in targets {
            let to = match self.config.quorum.index_of(&peer) {
                Some(index) => Peer::Member(index),
                None => Peer::Node(peer),
            };
            self.send(
                to,
                Request::Dkg(bytes.to_vec()),
                Pending::Dkg {
                    run: run_id,
                    to,
                    bytes,
                },
            );
        }
        match outcome {
            Some(Ok(ReshareOutput::NewShare(output))) => {
                self.resharing = None;
                self.take_new_share(now, output, Event::ReshareFinished);
            }
            Some(Ok(ReshareOutput::Dealt)) => {
                self.resharing = Some(Resharing::Left);
                self.events.push_back(Event::ReshareDealt {
                    previous_index: me.old.unwrap_or(0),
                });
                // Its part is done: unregister (under its previous index)
                // and stop.
                self.shutdown(now);
            }
            Some(Err(error)) => {
                self.resharing = None;
                self.events.push_back(Event::ReshareFailed {
                    error,
                    disqualified,
                });
                // The previous epoch stays in force; this process cannot
                // serve either epoch (it holds no share of the new one).
                self.fail(MemberError::Reshare(error.to_string()));
            }
            None => {}
        }
    }
}
