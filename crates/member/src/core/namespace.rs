//! The namespace record: checking for it after a restart, adopting it,
//! the coordinator order, co-signing, announcing (`NamespaceReady`), and
//! what a member signs or accepts for a fellow member.

use super::*;

/// How often a node is asked again whether the namespace record is there,
/// after a passing refusal or no answer (with the member's backoff).
const CHECK_RETRIES: u32 = 3;

impl Member {
    /// After a restart: asks every rendezvous node for the namespace.
    pub(super) fn start_check(&mut self) {
        if self.key_share.is_none() {
            return;
        }
        let outstanding: BTreeSet<usize> = (0..self.slots.len()).collect();
        for rendezvous in outstanding.iter().copied() {
            self.ask_for_namespace(rendezvous);
        }
        self.task = NamespaceTask::Checking {
            outstanding,
            best: None,
            retries: BTreeMap::new(),
        };
    }

    /// Asks node `rendezvous` whether the namespace record is there.
    pub(super) fn ask_for_namespace(&mut self, rendezvous: usize) {
        let Some(share) = &self.key_share else {
            return;
        };
        let quorum_key = QuorumKey::from(share.quorum_key());
        self.send(
            Peer::Rendezvous(rendezvous),
            Request::Discover {
                quorum_key,
                limit: 1,
                cookie: None,
            },
            Pending::Check { rendezvous },
        );
    }

    pub(super) fn on_check_answer(
        &mut self,
        now: u64,
        rendezvous: usize,
        response: Result<Response, TransportError>,
    ) {
        let found = match (&response, &self.key_share) {
            (Ok(Response::Discovered(answer)), Some(share)) => check_namespace(
                &answer.namespace,
                share,
                self.config.epoch,
                &self.config.quorum,
                now,
                &self.config.limits,
            )
            .is_ok()
            .then(|| answer.namespace.clone()),
            _ => None,
        };
        // A passing refusal (a node under load, one that refuses this
        // sender for a while) or no answer says nothing about the record:
        // ask that node again, with backoff, a few times, rather than
        // take it for "no record" and wait for a coordinator turn.
        let passing = match &response {
            Err(_) => true,
            Ok(Response::Rejected(code)) => classify(*code) == Class::Transient,
            Ok(_) => false,
        };
        let attempt = match &mut self.task {
            NamespaceTask::Checking { retries, .. } if passing && found.is_none() => {
                let attempt = retries.entry(rendezvous).or_insert(0);
                let current = *attempt;
                *attempt = current.saturating_add(1);
                Some(current).filter(|a| *a < CHECK_RETRIES)
            }
            _ => None,
        };
        if let Some(attempt) = attempt {
            let delay = self.config.backoff.delay(attempt, &mut self.rng);
            self.set_timer(now.saturating_add(delay), Timer::CheckRetry { rendezvous });
            return;
        }
        let NamespaceTask::Checking {
            outstanding, best, ..
        } = &mut self.task
        else {
            return;
        };
        outstanding.remove(&rendezvous);
        if let Some(record) = found {
            if best
                .as_ref()
                .is_none_or(|b| record.expires_at_ms > b.expires_at_ms)
            {
                *best = Some(record);
            }
        }
        if !outstanding.is_empty() {
            return;
        }
        let best = best.take();
        self.schedule_renewal(now);
        if let Some(record) = best {
            self.adopt(now, record);
        }
        if matches!(self.task, NamespaceTask::Waiting { takeover_at } if takeover_at <= now) {
            self.coordinate(now);
        }
    }

    /// Takes a valid record as the quorum's, registers under it, and
    /// schedules its renewal (the coordinator order again, from half its
    /// life).
    pub(super) fn adopt(&mut self, now: u64, record: NamespaceRecord) {
        let newer = self
            .namespace
            .as_ref()
            .is_none_or(|ns| (record.epoch, record.issued_at_ms) > (ns.epoch, ns.issued_at_ms));
        if !newer {
            return;
        }
        self.events
            .push_back(Event::NamespaceAdopted(record.clone()));
        self.namespace = Some(record);
        if !matches!(
            self.task,
            NamespaceTask::Cosigning { .. } | NamespaceTask::Announcing { .. }
        ) {
            self.schedule_renewal(now);
        }
        if self.record.is_none() {
            self.register_everywhere(now);
        }
    }

    /// Waits for the next renewal of the namespace record: from half the
    /// current record's life (at once without one), plus this member's
    /// rank in the coordinator order times `takeover_ms`.
    pub(super) fn schedule_renewal(&mut self, now: u64) {
        let due = self.namespace.as_ref().map_or(now, |ns| {
            let half_life = ns.issued_at_ms + ns.expires_at_ms.saturating_sub(ns.issued_at_ms) / 2;
            half_life.max(now)
        });
        self.task = NamespaceTask::Waiting {
            takeover_at: due + self.rank() * self.config.takeover_ms,
        };
    }

    pub(super) fn coordinate(&mut self, now: u64) {
        let Some(share) = &self.key_share else {
            return;
        };
        let quorum = &self.config.quorum;
        let record = NamespaceRecord {
            commitments: commitment_bytes(share),
            n: quorum.n(),
            epoch: self.config.epoch,
            kind: quorum.kind.clone(),
            members: Some(quorum.members.clone()),
            issued_at_ms: now,
            expires_at_ms: now + self.config.namespace_ttl_ms,
            signature: [0; rendezvous_proto::records::G2_BYTES],
        };
        let cosign = Cosign::new(record.clone(), share);
        self.round += 1;
        let round = self.round;
        self.events.push_back(Event::Coordinating {
            issued_at_ms: record.issued_at_ms,
        });
        self.task = NamespaceTask::Cosigning {
            round,
            cosign,
            deadline: now + self.config.cosign_timeout_ms,
        };
        for member in 1..=self.config.quorum.n() {
            if member != self.config.index {
                self.send(
                    Peer::Member(member),
                    Request::SignNamespace(record.clone()),
                    Pending::Sign { round, member },
                );
            }
        }
        self.try_combine(now);
    }

    pub(super) fn on_share(
        &mut self,
        now: u64,
        round: u64,
        member: u32,
        response: Result<Response, TransportError>,
    ) {
        let NamespaceTask::Cosigning {
            round: r, cosign, ..
        } = &mut self.task
        else {
            return;
        };
        if *r != round {
            return;
        }
        match response {
            Ok(Response::NamespaceShare { index, signature }) if index == member => {
                match Signature::from_bytes(&signature) {
                    Ok(signature) => cosign.add(index, signature),
                    Err(_) => self.events.push_back(Event::InvalidShare { member }),
                }
            }
            // Still in the DKG, busy, or not reachable yet: ask again
            // while the round lasts. A refusal for good is not retried.
            Ok(Response::Rejected(StatusCode::UnknownNamespace)) | Err(_) => {
                self.set_timer(now + RESEND_MS, Timer::SignRetry { round, member });
            }
            Ok(_) => {}
        }
        self.try_combine(now);
    }

    pub(super) fn try_combine(&mut self, now: u64) {
        let (NamespaceTask::Cosigning { cosign, .. }, Some(share)) =
            (&mut self.task, self.key_share.as_ref())
        else {
            return;
        };
        let (record, bad) = cosign.try_combine(share, &mut self.rng);
        for member in bad {
            self.events.push_back(Event::InvalidShare { member });
        }
        let Some(record) = record else {
            return;
        };
        self.events
            .push_back(Event::NamespaceSigned(record.clone()));
        // A key rotation's coordinator: the previous members sign the
        // handover to this key now.
        self.after_namespace_signed(now, &record);
        let waiting: BTreeSet<usize> = (0..self.slots.len())
            .filter(|r| self.slots[*r].shown.dropped.is_none())
            .collect();
        for rendezvous in waiting.iter().copied() {
            self.send(
                Peer::Rendezvous(rendezvous),
                Request::RegisterNamespace(record.clone()),
                Pending::Namespace {
                    rendezvous,
                    coordinated: true,
                },
            );
        }
        self.task = NamespaceTask::Announcing {
            record,
            waiting,
            until: now + self.config.ready_wait_ms,
        };
    }

    /// Tells every member the record is in place, and adopts it.
    pub(super) fn announce(&mut self, now: u64) {
        let NamespaceTask::Announcing { record, .. } =
            std::mem::replace(&mut self.task, NamespaceTask::Idle)
        else {
            return;
        };
        for member in 1..=self.config.quorum.n() {
            if member != self.config.index {
                self.send(
                    Peer::Member(member),
                    Request::NamespaceReady(record.clone()),
                    Pending::Ready,
                );
            }
        }
        self.adopt(now, record);
        if matches!(self.task, NamespaceTask::Idle) {
            self.schedule_renewal(now);
        }
    }

    pub(super) fn on_sign_request(
        &mut self,
        now: u64,
        from: u32,
        record: &NamespaceRecord,
    ) -> Response {
        let Some(share) = &self.key_share else {
            // Still in the DKG: the coordinator asks again.
            return Response::Rejected(StatusCode::UnknownNamespace);
        };
        if let Err(refusal) = check_sign_request(
            record,
            share,
            self.config.epoch,
            &self.config.quorum,
            now,
            &self.config.limits,
        ) {
            let code = refusal.code();
            self.events
                .push_back(Event::SignRefused { member: from, code });
            return Response::Rejected(code);
        }
        let signature = share.secret.sign(&record.signing_bytes());
        // A coordinator is at work: give it time before taking over.
        if let NamespaceTask::Waiting { takeover_at } = &mut self.task {
            let later = now + self.config.cosign_timeout_ms + self.config.takeover_ms;
            *takeover_at = (*takeover_at).max(later);
        }
        Response::NamespaceShare {
            index: signature.index,
            signature: signature.signature.to_bytes(),
        }
    }

    pub(super) fn on_namespace_ready(&mut self, now: u64, record: NamespaceRecord) -> Response {
        let Some(share) = &self.key_share else {
            // Still in the DKG: keep it for the end of the run.
            self.pending_ready = Some(record);
            return Response::Accepted;
        };
        let newer = self
            .namespace
            .as_ref()
            .is_none_or(|ns| (record.epoch, record.issued_at_ms) > (ns.epoch, ns.issued_at_ms));
        if !newer {
            return Response::Accepted;
        }
        if let Err(code) = check_namespace(
            &record,
            share,
            self.config.epoch,
            &self.config.quorum,
            now,
            &self.config.limits,
        ) {
            return Response::Rejected(code);
        }
        // Another coordinator finished first: ours is not needed.
        if matches!(self.task, NamespaceTask::Cosigning { .. }) {
            self.task = NamespaceTask::Idle;
        }
        self.adopt(now, record);
        Response::Accepted
    }

    pub(super) fn on_namespace_answer(
        &mut self,
        now: u64,
        id: RequestId,
        rendezvous: usize,
        coordinated: bool,
        response: Result<Response, TransportError>,
    ) {
        if coordinated {
            if let NamespaceTask::Announcing { waiting, .. } = &mut self.task {
                waiting.remove(&rendezvous);
                if waiting.is_empty() {
                    self.announce(now);
                }
            }
        }
        let class = match &response {
            Ok(Response::Registered { .. }) => Class::AlreadyHeld,
            Ok(Response::Rejected(code)) => classify(*code),
            _ => Class::Transient,
        };
        let code = response_code(&response);
        if class != Class::AlreadyHeld {
            self.refused(rendezvous, code, &response, class);
        }
        if class == Class::Permanent {
            self.drop_node(rendezvous, code);
        }
        // The namespace was registered for a peer registration that needed
        // it: send the peer record again (at once, or after the backoff).
        let awaited = self
            .slots
            .get(rendezvous)
            .is_some_and(|s| s.in_flight == Some(id));
        if !awaited {
            return;
        }
        if let Some(slot) = self.slots.get_mut(rendezvous) {
            slot.in_flight = None;
        }
        match class {
            Class::AlreadyHeld => self.register_at(rendezvous),
            Class::Permanent => {}
            Class::Transient | Class::NeedsNamespace => self.back_off(now, rendezvous),
        }
    }
}
