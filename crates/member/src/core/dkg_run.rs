//! Driving the DKG: when a run starts, what it sends, what its end means
//! for the member (a key share, then the namespace), and the retry of a
//! run that failed.

use super::*;

impl Member {
    pub(super) fn maybe_start_dkg(&mut self, now: u64) {
        if self.dkg.is_some() || self.key_share.is_some() || self.failure.is_some() {
            return;
        }
        let due = match self.dkg_retry_at {
            // After a failure: at the backoff's end, or as soon as a fellow
            // member is in a later run (its hello is waiting here), so that
            // members whose backoffs differ meet in one run.
            Some(retry_at) => now >= retry_at || self.later_hello_waiting(),
            None => {
                let everyone = self.members_to_connect().is_empty();
                everyone || !self.dkg_buffer.is_empty() || now >= self.dkg_wait_until
            }
        };
        if !due {
            return;
        }
        let Some(config) = self.dkg_config.clone() else {
            return;
        };
        self.dkg_retry_at = None;
        self.dkg_run += 1;
        let mut dkg = DkgMember::with_hello(config, self.dkg_attempt, now, &mut self.rng);
        for (from, message) in std::mem::take(&mut self.dkg_buffer) {
            // A refused message changes nothing in the DKG.
            let _ = dkg.handle_message(now, from, message);
        }
        // Buffered hellos may have moved it to a later attempt already.
        self.events.push_back(Event::DkgStarted {
            attempt: dkg.attempt(),
        });
        self.dkg = Some(dkg);
        self.after_dkg_step(now, Phase::Hello);
    }

    /// Whether a buffered hello is of the attempt this member would start
    /// next, or a later one.
    fn later_hello_waiting(&self) -> bool {
        self.dkg_buffer
            .iter()
            .any(|(_, m)| matches!(m, DkgMessage::Hello(h) if h.attempt >= self.dkg_attempt))
    }

    /// Whether messages of run `run` may still be (re)sent: it is the run
    /// under way.
    pub(super) fn dkg_run_is_live(&self, run: u64) -> bool {
        run == self.dkg_run
            && self.dkg.is_some()
            && self.key_share.is_none()
            && self.failure.is_none()
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
        let attempt = dkg.attempt();
        let session = *dkg.session_id();
        let disqualified = dkg.disqualified().clone();
        if after != before {
            let rounds = phase_number(after).saturating_sub(phase_number(before));
            self.events.push_back(Event::DkgProgress {
                phase: after,
                rounds,
            });
        }
        let n = self.config.quorum.n();
        let run = self.dkg_run;
        for t in outgoing {
            let bytes = Zeroizing::new(t.message.encode());
            let targets: Vec<u32> = match t.to {
                dkg::Destination::Member(j) => vec![j],
                dkg::Destination::All => (1..=n).filter(|j| *j != self.config.index).collect(),
            };
            for to in targets.into_iter().map(Peer::Member) {
                self.send(
                    to,
                    Request::Dkg(bytes.to_vec()),
                    Pending::Dkg {
                        run,
                        to,
                        bytes: bytes.clone(),
                    },
                );
            }
        }
        match outcome {
            Some(Ok(output)) => {
                self.dkg = None;
                self.take_new_share(now, output, Event::DkgFinished);
            }
            Some(Err(error)) => {
                // Not fatal: another run, in a session of its own, after a
                // backoff that grows with the failures (capped, jittered,
                // so that members do not all come back at once).
                self.dkg = None;
                let delay = self.config.backoff.delay(self.dkg_failures, &mut self.rng);
                self.dkg_failures = self.dkg_failures.saturating_add(1);
                self.dkg_attempt = attempt.saturating_add(1);
                let retry_at = now.saturating_add(delay);
                self.dkg_retry_at = Some(retry_at);
                self.failed_session = Some(session);
                self.events.push_back(Event::DkgFailed {
                    attempt,
                    error,
                    disqualified,
                    retry_at,
                });
            }
            None => {}
        }
    }

    /// A run (a DKG's or a resharing's) gave this member a new key share:
    /// keep it, report it (`event`: the run's kind of finish), and start
    /// the namespace of its key and epoch. No record of that key and epoch
    /// exists yet, so the first in the coordinator order signs it at once;
    /// a `NamespaceReady` that came early is taken now.
    pub(super) fn take_new_share(
        &mut self,
        now: u64,
        output: DkgOutput,
        event: fn(Box<DkgOutput>) -> Event,
    ) {
        self.qual = output.qual.clone();
        self.key_share = Some(output.key_share.clone());
        self.events.push_back(event(Box::new(output)));
        self.registering_since = Some(now);
        self.schedule_renewal(now);
        if let Some(record) = self.pending_ready.take() {
            self.on_namespace_ready(now, record);
        }
        if matches!(self.task, NamespaceTask::Waiting { takeover_at } if takeover_at <= now) {
            self.coordinate(now);
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
                // Late messages of the run that failed are of no use.
                let stale = match &message {
                    DkgMessage::Hello(h) => h.attempt < self.dkg_attempt,
                    other => Some(other.session_id()) == self.failed_session.as_ref(),
                };
                // Bounded: one message per member and kind is all a run
                // needs; more is a misbehaving member.
                if !stale && self.dkg_buffer.len() < 5 * self.config.quorum.n() as usize {
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
