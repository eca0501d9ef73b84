//! The peer record: signing, registering at every rendezvous node,
//! refreshing, the answers through the retry table, backoff, dropping a
//! node, and giving up.

use super::*;

impl Member {
    /// Signs a new record and registers it at every node still in use.
    pub(super) fn register_everywhere(&mut self, now: u64) {
        let (Some(share), Some(ns)) = (&self.key_share, &self.namespace) else {
            self.refresh_at = None;
            return;
        };
        let limits = &self.config.limits;
        let addrs: Vec<rendezvous_proto::Multiaddr> = self
            .config
            .addrs
            .iter()
            .filter(|a| a.as_ref().len() <= limits.max_addr_bytes)
            .take(limits.max_addrs)
            .cloned()
            .collect();
        let seq = now.max(self.record.as_ref().map_or(0, |r| r.seq() + 1));
        // The seat is signed once per epoch (a pairing at each node, once);
        // every refresh signs only a new envelope (Ed25519).
        let quorum_key = QuorumKey::from(share.quorum_key());
        let seat = match &self.record {
            Some(r) if r.seat.epoch == ns.epoch && r.seat.quorum_key == quorum_key => {
                r.seat.clone()
            }
            _ => Seat::sign(quorum_key, ns.epoch, self.config.peer_id(), &share.secret),
        };
        // With the standard signed peer record of the same seq and
        // addresses (one more Ed25519 signature), so that rendezvous nodes
        // can answer standard `/rendezvous/1.0.0` clients (PROTOCOL.md 16).
        let record = PeerRecord::sign(
            seat,
            addrs,
            seq,
            now + self.config.peer_ttl_ms,
            &self.config.identity,
        )
        .with_standard(&self.config.identity);
        self.events.push_back(Event::PeerSigned(record.clone()));
        self.record = Some(record);
        self.refresh_at = Some(now + self.config.peer_ttl_ms / 2);
        for rendezvous in 0..self.slots.len() {
            if self.slots[rendezvous].shown.dropped.is_none() {
                self.register_at(rendezvous);
            }
        }
    }

    pub(super) fn register_at(&mut self, rendezvous: usize) {
        let Some(record) = self.record.clone() else {
            return;
        };
        let seq = record.seq();
        let id = self.send(
            Peer::Rendezvous(rendezvous),
            Request::RegisterPeer(record),
            Pending::Peer { rendezvous, seq },
        );
        if let Some(slot) = self.slots.get_mut(rendezvous) {
            slot.in_flight = Some(id);
            slot.generation += 1;
        }
    }

    pub(super) fn on_peer_answer(
        &mut self,
        now: u64,
        id: RequestId,
        rendezvous: usize,
        seq: u64,
        response: Result<Response, TransportError>,
    ) {
        let current = self.record.as_ref().map(|r| r.seq());
        let Some(slot) = self.slots.get_mut(rendezvous) else {
            return;
        };
        if slot.in_flight != Some(id) {
            // Overtaken by a newer request to this node.
            return;
        }
        slot.in_flight = None;
        let class = match &response {
            Ok(Response::Registered { .. }) => Class::AlreadyHeld,
            Ok(Response::Rejected(code)) => crate::retry::classify_peer(*code),
            _ => Class::Transient,
        };
        let code = response_code(&response);
        match class {
            Class::AlreadyHeld if Some(seq) == current => {
                let ttl = match response {
                    Ok(Response::Registered { ttl_ms }) => ttl_ms,
                    // Held already (a resend got through first): it holds
                    // until the record expires.
                    _ => self
                        .record
                        .as_ref()
                        .map_or(0, |r| r.expires_at_ms().saturating_sub(now)),
                };
                let first = slot.shown.accepted_seq.is_none();
                slot.shown.accepted_seq = Some(seq);
                slot.shown.accepted_until = now + ttl;
                slot.shown.attempts = 0;
                self.events.push_back(Event::Registered {
                    rendezvous,
                    seq,
                    first,
                });
            }
            Class::AlreadyHeld => {}
            Class::NeedsNamespace => {
                self.refused(rendezvous, code, &response, class);
                match self.namespace.clone() {
                    Some(ns) => {
                        let id = self.send(
                            Peer::Rendezvous(rendezvous),
                            Request::RegisterNamespace(ns),
                            Pending::Namespace {
                                rendezvous,
                                coordinated: false,
                            },
                        );
                        if let Some(slot) = self.slots.get_mut(rendezvous) {
                            slot.in_flight = Some(id);
                        }
                    }
                    None => self.back_off(now, rendezvous),
                }
            }
            Class::Transient => {
                self.refused(rendezvous, code, &response, class);
                self.back_off(now, rendezvous);
            }
            Class::Permanent => {
                self.refused(rendezvous, code, &response, class);
                self.drop_node(rendezvous, code);
            }
        }
    }

    pub(super) fn refused(
        &mut self,
        rendezvous: usize,
        code: Option<StatusCode>,
        response: &Result<Response, TransportError>,
        class: Class,
    ) {
        if let (Some(slot), Some(code)) = (self.slots.get_mut(rendezvous), code) {
            slot.shown.last_code = Some(code);
        }
        if code.is_some() {
            self.last_refusal = code;
        }
        self.events.push_back(Event::Refused {
            rendezvous,
            code,
            transport: response.as_ref().err().copied(),
            class,
        });
    }

    /// Schedules the next attempt at a node after a passing failure.
    pub(super) fn back_off(&mut self, now: u64, rendezvous: usize) {
        let backoff = self.config.backoff;
        let Some(slot) = self.slots.get_mut(rendezvous) else {
            return;
        };
        let delay = backoff.delay(slot.shown.attempts, &mut self.rng);
        slot.shown.attempts = slot.shown.attempts.saturating_add(1);
        slot.generation += 1;
        let generation = slot.generation;
        self.set_timer(
            now + delay,
            Timer::PeerRetry {
                rendezvous,
                generation,
            },
        );
    }

    pub(super) fn drop_node(&mut self, rendezvous: usize, code: Option<StatusCode>) {
        let code = code.unwrap_or(StatusCode::Decode);
        if let Some(slot) = self.slots.get_mut(rendezvous) {
            if slot.shown.dropped.is_none() {
                slot.shown.dropped = Some(code);
                slot.shown.accepted_until = 0;
                slot.in_flight = None;
                self.events
                    .push_back(Event::RendezvousDropped { rendezvous, code });
            }
        }
    }

    /// Until when some node holds (or held) an accepted registration, or
    /// when registering began if none ever did; `None` before that.
    pub(super) fn last_held(&self) -> Option<u64> {
        let since = self.registering_since?;
        let held = self
            .slots
            .iter()
            .map(|s| s.shown.accepted_until)
            .max()
            .unwrap_or(0);
        Some(held.max(since))
    }

    /// When the member gives up if nothing changes.
    pub(super) fn give_up_at(&self) -> Option<u64> {
        self.last_held()
            .map(|t| t.saturating_add(self.config.give_up_after_ms))
    }
}
