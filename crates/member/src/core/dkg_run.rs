//! Driving the DKG: when it starts, what it sends, and what its end
//! means for the member (a key share, then the namespace).

use super::*;

impl Member {
    pub(super) fn maybe_start_dkg(&mut self, now: u64) {
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
    pub(super) fn after_dkg_step(&mut self, now: u64, before: Phase) {
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
            let bytes = Zeroizing::new(t.message.encode());
            let targets: Vec<u32> = match t.to {
                dkg::Destination::Member(j) => vec![j],
                dkg::Destination::All => (1..=n).filter(|j| *j != self.config.index).collect(),
            };
            for to in targets {
                self.send(
                    Peer::Member(to),
                    Request::Dkg(bytes.to_vec()),
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

    pub(super) fn on_dkg_request(&mut self, now: u64, from: u32, bytes: &[u8]) -> Response {
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
}
