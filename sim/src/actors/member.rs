//! A quorum member: a thin driver of the same sans-IO core as `rdht
//! quorum` ([`member::Member`]) on the simulated network.
//!
//! The core's requests travel as [`Msg::Request`] through the real codec,
//! and answers come back as [`Msg::Response`]; a request without an answer
//! after `request_timeout_ms` is handed back as timed out, as libp2p's
//! request-response would. Fellow members count as connected from
//! [`Timer::DkgStart`] on, so the DKG starts then. The core's
//! [`member::Peer::Rendezvous`] `r` is the r-th of the namespace's k
//! replicas (what a Kademlia lookup of the namespace key finds), known once
//! the DKG gave the quorum key.
//!
//! What this driver adds is adversarial only: a faulty dealer ([`Fault`])
//! alters or withholds its DKG messages and does nothing else afterwards.
//! A crash drops the core; a restart builds a new one from the key share
//! (which is on disk), as the binary does.

use std::collections::BTreeMap;
use std::sync::Arc;

use blstrs::Scalar;
use dkg::{
    DealMessage, DkgConfig, DkgMessage, Polynomial, PublicKey, SecretKeyShare, ShareMessage,
};
use ff::Field;
use libp2p_identity::{Keypair, PeerId};
use member::{Event, Peer, QuorumSpec, RequestId, Start, TransportError};
use rand_chacha::ChaCha20Rng;
use rendezvous_proto::{QuorumKey, Request};

use crate::msg::{Addr, Ctx, DkgSummary, EventKind, Msg, Note, Timer};

/// How a faulty dealer misbehaves in the DKG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Sends wrong shares to half the members and never justifies them.
    BadShares,
    /// Sends nothing at all.
    Silent,
    /// Shows one deal (and matching shares) to half the members and
    /// another to the other half, and does not answer the dispute (a
    /// dealer that answers with one deal is as good as honest).
    Equivocate,
}

/// Ids of requests carry the incarnation above this bit, so that answers
/// to an earlier life are never taken for answers to this one.
const INCARNATION_SHIFT: u32 = 40;

/// One quorum member.
pub struct Member {
    /// The quorum.
    pub quorum: u32,
    /// The member index (1-based).
    pub index: u32,
    /// Flat index (its address).
    pub flat: u32,
    /// Its libp2p identity.
    pub peer_id: PeerId,
    #[allow(dead_code)]
    keypair: Keypair,
    /// Up (false while crashed).
    pub alive: bool,
    /// Bumped at each restart: timers of an earlier life are ignored.
    pub incarnation: u32,
    /// DKG misbehaviour, for faulty dealers (who then do nothing else).
    pub fault: Option<Fault>,
    rng: ChaCha20Rng,
    /// An equivocating dealer's other deal, for the run (session) it was
    /// made for.
    alternate: Option<(DealMessage, Polynomial)>,
    core: Option<member::Member>,
    /// The last key share (kept across crashes: it is on disk).
    key: Option<dkg::KeyShare>,
    qual: Vec<u32>,
    replicas: Vec<u32>,
    /// Requests waiting for an answer: id -> deadline.
    outstanding: BTreeMap<u64, u64>,
    wake_at: Option<u64>,
    timeouts_at: Option<u64>,
    /// Test only (`--broken-member`): the refusal that ended this member
    /// the way `rdht quorum` ended before the member core.
    exited: Option<rendezvous_proto::StatusCode>,
}

impl Member {
    /// A member that has not started.
    pub fn new(quorum: u32, index: u32, flat: u32, keypair: Keypair, rng: ChaCha20Rng) -> Self {
        Self {
            quorum,
            index,
            flat,
            peer_id: keypair.public().to_peer_id(),
            keypair,
            alive: true,
            incarnation: 0,
            fault: None,
            rng,
            alternate: None,
            core: None,
            key: None,
            qual: Vec::new(),
            replicas: Vec::new(),
            outstanding: BTreeMap::new(),
            wake_at: None,
            timeouts_at: None,
            exited: None,
        }
    }

    /// Its libp2p identity (an attacker that corrupts it holds this too).
    pub fn keypair(&self) -> &Keypair {
        &self.keypair
    }

    /// The key share, once the DKG gave one.
    pub fn key(&self) -> Option<&dkg::KeyShare> {
        self.key.as_ref()
    }

    /// QUAL as this member saw it.
    pub fn qual(&self) -> &[u32] {
        &self.qual
    }

    /// Whether some replica accepted one of its registrations.
    pub fn acked_anywhere(&self) -> bool {
        self.core
            .as_ref()
            .is_some_and(member::Member::registered_anywhere)
    }

    /// The seq replica `rdv` last accepted.
    pub fn acked_seq(&self, rdv: u32) -> Option<u64> {
        let position = self.replicas.iter().position(|r| *r == rdv)?;
        self.core
            .as_ref()?
            .rendezvous()
            .nth(position)
            .and_then(|s| s.accepted_seq)
    }

    /// The replicas that accepted the current record.
    pub fn acked_current(&self) -> usize {
        self.core
            .as_ref()
            .map_or(0, member::Member::registered_current)
    }

    /// Why the member gave up, if it did (it must never, because of what a
    /// rendezvous node answered).
    pub fn gave_up(&self) -> Option<String> {
        if let Some(code) = self.exited {
            return Some(format!("exited on {code} (--broken-member)"));
        }
        self.core
            .as_ref()
            .and_then(member::Member::failure)
            .map(ToString::to_string)
    }

    /// Rendezvous nodes (replica numbers) this member stopped using.
    pub fn dropped(&self) -> Vec<u32> {
        let Some(core) = &self.core else {
            return Vec::new();
        };
        core.rendezvous()
            .enumerate()
            .filter(|(_, s)| s.dropped.is_some())
            .filter_map(|(r, _)| self.replicas.get(r).copied())
            .collect()
    }

    /// Handles one event.
    pub fn handle(&mut self, ctx: &mut Ctx<'_>, event: EventKind) {
        if !self.alive || self.exited.is_some() {
            return;
        }
        match event {
            EventKind::Timer(Timer::DkgStart) => self.start(ctx),
            EventKind::Timer(Timer::Restart) => self.restart(ctx),
            EventKind::Timer(Timer::Reshare { epoch }) => self.reshare(ctx, epoch),
            EventKind::Timer(Timer::RenewNamespace) => {
                if let Some(core) = self.core.as_mut() {
                    core.renew_namespace(ctx.now);
                }
            }
            EventKind::Timer(Timer::MemberWake { incarnation })
                if incarnation == self.incarnation =>
            {
                self.wake_at = None;
                if let Some(core) = self.core.as_mut() {
                    core.handle_timeout(ctx.now);
                }
            }
            EventKind::Timer(Timer::RequestTimeouts { incarnation })
                if incarnation == self.incarnation =>
            {
                self.timeouts_at = None;
                let due: Vec<u64> = self
                    .outstanding
                    .iter()
                    .filter(|(_, at)| **at <= ctx.now)
                    .map(|(id, _)| *id)
                    .collect();
                for id in due {
                    self.outstanding.remove(&id);
                    if let Some(core) = self.core.as_mut() {
                        core.handle_response(ctx.now, local_id(id), Err(TransportError::Timeout));
                    }
                }
            }
            EventKind::Timer(_) => {}
            EventKind::Deliver { from, msg } => self.on_message(ctx, from, msg),
        }
        self.flush(ctx);
    }

    fn spec(ctx: &Ctx<'_>, quorum: u32) -> QuorumSpec {
        let p = &ctx.shared.config.params;
        QuorumSpec {
            members: (1..=p.members)
                .map(|i| ctx.shared.member_peers[(quorum * p.members + i - 1) as usize])
                .collect(),
            threshold: p.threshold,
            kind: Some("sim".to_owned()),
        }
    }

    fn core_config(&self, ctx: &Ctx<'_>) -> member::MemberConfig {
        let c = &ctx.shared.config;
        let mut config = member::MemberConfig::new(
            Self::spec(ctx, self.quorum),
            self.index,
            self.keypair.clone(),
            c.params.replication as usize,
        );
        config.addrs = vec![ctx.shared.member_addrs[self.flat as usize].clone()];
        config.peer_ttl_ms = c.peer_ttl_ms;
        config.namespace_ttl_ms = c.namespace_ttl_ms;
        config.takeover_ms = c.takeover_ms;
        config.cosign_timeout_ms = 4 * c.dkg_phase_ms;
        config.limits = c.store.limits;
        config
    }

    fn start(&mut self, ctx: &mut Ctx<'_>) {
        if self.core.is_some() {
            return;
        }
        let p = &ctx.shared.config.params;
        let session = ctx.shared.sessions[self.quorum as usize];
        let config = DkgConfig::from_session(
            session,
            p.members,
            p.threshold,
            self.index,
            ctx.shared.config.dkg_phase_ms,
        );
        let config = match config {
            Ok(c) => c,
            Err(e) => {
                ctx.note(Note::DkgDone {
                    quorum: self.quorum,
                    index: self.index,
                    result: Err(e.to_string()),
                });
                return;
            }
        };
        let seed = member::seed_from(&mut self.rng);
        match member::Member::new(self.core_config(ctx), Start::Dkg(config), ctx.now, seed) {
            Ok(mut core) => {
                // Every fellow member is reachable: the DKG starts now.
                for j in (1..=p.members).filter(|j| *j != self.index) {
                    core.handle_connected(ctx.now, j);
                }
                self.core = Some(core);
            }
            Err(e) => ctx.note(Note::DkgDone {
                quorum: self.quorum,
                index: self.index,
                result: Err(e.to_string()),
            }),
        }
    }

    /// After a crash: a new core from the key share on disk.
    fn restart(&mut self, ctx: &mut Ctx<'_>) {
        self.outstanding.clear();
        self.wake_at = None;
        self.timeouts_at = None;
        let Some(key) = self.key.clone() else {
            return;
        };
        let seed = member::seed_from(&mut self.rng);
        self.core =
            member::Member::new(self.core_config(ctx), Start::KeyShare(key), ctx.now, seed).ok();
    }

    /// A new core that reshares the key share to `epoch` with the
    /// quorum's members (the same set, the same threshold), as `rdht
    /// quorum --quorum next.toml` does.
    fn reshare(&mut self, ctx: &mut Ctx<'_>, epoch: u64) {
        self.outstanding.clear();
        self.wake_at = None;
        self.timeouts_at = None;
        let Some(key) = self.key.clone() else {
            return;
        };
        let n = ctx.shared.n();
        let start = member::ReshareStart {
            previous_members: (1..=n)
                .map(|i| ctx.shared.member_peers[(self.quorum * n + i - 1) as usize])
                .collect(),
            previous_threshold: key.threshold(),
            quorum_key: QuorumKey::from(key.quorum_key()),
            previous_share: Some(key),
            phase_timeout_ms: ctx.shared.config.dkg_phase_ms,
        };
        let mut config = self.core_config(ctx);
        config.epoch = epoch;
        let seed = member::seed_from(&mut self.rng);
        self.core =
            member::Member::new(config, Start::Reshare(Box::new(start)), ctx.now, seed).ok();
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, from: Addr, msg: Msg) {
        match msg {
            Msg::Request {
                id,
                request,
                remote,
                ..
            } => {
                // A faulty dealer does nothing but its DKG.
                if self.fault.is_some() && !matches!(*request, Request::Dkg(_)) {
                    return;
                }
                let Some(core) = self.core.as_mut() else {
                    return;
                };
                let response = core.handle_request(ctx.now, &remote, (*request).clone());
                ctx.send(from, Msg::response(id, response));
            }
            Msg::Response { id, response, .. } => {
                if self.outstanding.remove(&id).is_none() {
                    return;
                }
                if let Some(core) = self.core.as_mut() {
                    core.handle_response(ctx.now, local_id(id), Ok((*response).clone()));
                }
            }
            Msg::Ping if matches!(from, Addr::Rdv(_)) => ctx.send(from, Msg::Pong),
            _ => {}
        }
    }

    /// Sends what the core queued, reports its events, arms its timers.
    fn flush(&mut self, ctx: &mut Ctx<'_>) {
        let Some(mut core) = self.core.take() else {
            return;
        };
        while let Some(event) = core.poll_event() {
            self.on_core_event(ctx, event);
        }
        if self.exited.is_some() {
            // Ended (--broken-member): it sends nothing any more.
            self.core = Some(core);
            return;
        }
        if self.replicas.is_empty() {
            if let Some(share) = core.key_share() {
                self.replicas = ctx.shared.replicas(&QuorumKey::from(share.quorum_key()));
            }
        }
        let timeout = ctx.shared.config.request_timeout_ms;
        while let Some(t) = core.poll_transmit() {
            let id = (u64::from(self.incarnation) << INCARNATION_SHIFT) | t.id.0;
            let to = match t.to {
                Peer::Member(j) => Some(ctx.shared.member(self.quorum, j)),
                Peer::Rendezvous(r) => self.replicas.get(r).map(|r| Addr::Rdv(*r)),
                // A resharing participant outside this member's quorum.
                Peer::Node(peer) => ctx.shared.peer_addr.get(&peer).copied(),
            };
            let Some(to) = to else {
                core.handle_response(ctx.now, t.id, Err(TransportError::Unreachable));
                continue;
            };
            let is_dkg = matches!(t.request, Request::Dkg(_));
            if self.fault.is_some() && !is_dkg {
                continue;
            }
            let request = if self.fault.is_some() {
                let threshold = ctx.shared.config.params.threshold;
                match self.tamper(&t.request, t.to, ctx.shared.n(), threshold) {
                    Some(r) => r,
                    None => continue,
                }
            } else {
                t.request
            };
            self.outstanding.insert(id, ctx.now + timeout);
            ctx.send(to, Msg::request(id, request, self.peer_id));
        }
        if let Some(&first) = self.outstanding.values().min() {
            if self.timeouts_at.is_none_or(|t| first < t || t < ctx.now) {
                self.timeouts_at = Some(first);
                ctx.timer(
                    first,
                    Timer::RequestTimeouts {
                        incarnation: self.incarnation,
                    },
                );
            }
        }
        if let Some(at) = core.poll_timeout() {
            let at = at.max(ctx.now + 1);
            if self.wake_at.is_none_or(|w| at < w || w <= ctx.now) {
                self.wake_at = Some(at);
                ctx.timer(
                    at,
                    Timer::MemberWake {
                        incarnation: self.incarnation,
                    },
                );
            }
        }
        self.core = Some(core);
    }

    fn on_core_event(&mut self, ctx: &mut Ctx<'_>, event: Event) {
        match event {
            Event::DkgFinished(out) | Event::ReshareFinished(out) => {
                let summary = DkgSummary {
                    qual: out.qual.clone(),
                    key_set: out
                        .key_share
                        .public_key_set
                        .commitments()
                        .iter()
                        .map(PublicKey::to_bytes)
                        .collect(),
                    transcript: out.transcript_hash.0,
                };
                self.qual = out.qual.clone();
                self.key = Some(out.key_share.clone());
                ctx.note(Note::DkgDone {
                    quorum: self.quorum,
                    index: self.index,
                    result: Ok(summary),
                });
            }
            // A failed run is retried by the core; the note counts it, and
            // a later success replaces it.
            Event::DkgFailed { error, .. } => ctx.note(Note::DkgDone {
                quorum: self.quorum,
                index: self.index,
                result: Err(error.to_string()),
            }),
            Event::NamespaceSigned(record) if self.fault.is_none() => {
                ctx.note(Note::NamespaceSigned {
                    quorum: self.quorum,
                    record: Arc::new(record),
                })
            }
            Event::PeerSigned(record) if self.fault.is_none() => ctx.note(Note::PeerSigned {
                member: self.flat,
                record: Arc::new(record),
            }),
            // The old `rdht quorum`: any refusal it did not special-case
            // (UnknownNamespace, StaleSequence) ended the member.
            Event::Refused {
                code: Some(code),
                class: member::Class::Transient | member::Class::Permanent,
                ..
            } if ctx.shared.config.params.broken_member && self.exited.is_none() => {
                self.exited = Some(code);
            }
            _ => {}
        }
    }

    /// What a faulty dealer sends instead of `request` to `to` (`None`:
    /// nothing).
    fn tamper(&mut self, request: &Request, to: Peer, n: u32, threshold: u32) -> Option<Request> {
        let (Request::Dkg(bytes), Peer::Member(j)) = (request, to) else {
            return Some(request.clone());
        };
        let message = DkgMessage::decode(bytes).ok()?;
        if self.fault == Some(Fault::Equivocate) {
            // The other deal is made for the run's session, known once the
            // hello round is over (the first deal or share carries it).
            let session = *message.session_id();
            let stale = self
                .alternate
                .as_ref()
                .is_none_or(|(deal, _)| deal.session_id != session);
            if stale && matches!(message, DkgMessage::Deal(_) | DkgMessage::Share(_)) {
                let poly = Polynomial::random(threshold, &mut self.rng);
                self.alternate = DealMessage::new(session, self.index, &poly, &mut self.rng)
                    .map(|deal| (deal, poly));
            }
        }
        let upper_half = j > n / 2;
        let altered = match (self.fault, &message) {
            (Some(Fault::Silent), _) => return None,
            (Some(Fault::BadShares), DkgMessage::Share(s)) if j.is_multiple_of(2) => {
                let wrong = SecretKeyShare::new(j, *s.share.scalar() + Scalar::ONE).ok()?;
                DkgMessage::Share(ShareMessage {
                    session_id: s.session_id,
                    dealer: s.dealer,
                    share: wrong,
                })
            }
            (Some(Fault::BadShares | Fault::Equivocate), DkgMessage::Justification(_)) => {
                return None
            }
            (Some(Fault::Equivocate), DkgMessage::Deal(_)) if upper_half => {
                let (deal, _) = self.alternate.as_ref()?;
                DkgMessage::Deal(deal.clone())
            }
            (Some(Fault::Equivocate), DkgMessage::Share(s)) if upper_half => {
                let (_, poly) = self.alternate.as_ref()?;
                DkgMessage::Share(ShareMessage {
                    session_id: s.session_id,
                    dealer: s.dealer,
                    share: SecretKeyShare::new(j, poly.evaluate(j)).ok()?,
                })
            }
            _ => message,
        };
        Some(Request::Dkg(altered.encode()))
    }
}

/// The core's id inside a message id.
fn local_id(id: u64) -> RequestId {
    RequestId(id & ((1u64 << INCARNATION_SHIFT) - 1))
}
