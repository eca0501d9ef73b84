//! A rendezvous node: a real `dht::NamespaceStore` behind simulated
//! messages.
//!
//! - Registrations come straight from the registrant (who sends to each of
//!   the k replicas itself). Peer registrations are queued for a short
//!   window and verified as one batch with `register_peers`, as a busy
//!   server would.
//! - Discovery: the node a client asks (the entry) forwards the lookup to
//!   the namespace's k replicas (the end of a Kademlia lookup), and each
//!   replica answers the client directly with `store.discover`.
//! - Anti-entropy: on a jittered interval each replica pushes the value it
//!   vouches for (`namespace_value`) to the other k-1 replicas of each
//!   namespace it holds, which `merge_value` it (re-verifying everything).
//! - Liveness: the node wakes at `store.poll_timeout()`, expires, and pings
//!   `store.due_pings()`; a pong calls `handle_pong`, and an unanswered
//!   ping becomes a miss inside the store when the next one is due.
//!
//! A malicious node (see [`Malice`]) runs the same store but lies in what
//! it serves and acknowledges. The `broken` switch is the test-only broken
//! validator: what the store refuses is acknowledged as accepted anyway
//! and served from a side table, which the invariants must catch.

use std::collections::BTreeMap;
use std::sync::Arc;

use dht::{NamespaceStore, PeerRegistration, StoreConfig};
use libp2p_identity::PeerId;
use multiaddr::Multiaddr;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rendezvous_proto::messages::DiscoveredPeer;
use rendezvous_proto::{
    DiscoverAnswer, NamespaceRecord, PeerRecord, QuorumKey, Rejection, Request, Response,
    StatusCode,
};

use crate::msg::{Addr, Ctx, EventKind, Msg, Note, Outcome, RegKind, Timer};
use crate::net::between;

/// How a malicious rendezvous lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malice {
    /// Serves altered records (addresses swapped, seq raised, namespace
    /// tampered), and pushes altered values to other replicas.
    Forge,
    /// Acknowledges registrations without storing them, drops lookups,
    /// hides namespaces.
    Drop,
    /// Serves the first version it saw of each record, never a newer one.
    Stale,
    /// Answers every registration with this invented refusal and keeps
    /// nothing.
    Lie(StatusCode),
}

/// One rendezvous node.
pub struct Rendezvous {
    /// Node index.
    pub index: u32,
    /// The real store.
    pub store: NamespaceStore,
    /// Up (false while crashed).
    pub alive: bool,
    /// Lies, for a malicious node.
    pub malice: Option<Malice>,
    /// Until then (virtual ms), every registration is refused with
    /// `QuotaExceeded`: an honest node under load.
    pub busy_until: Option<u64>,
    broken: bool,
    /// Test-only broken validator: records the store refused but this
    /// node acknowledged and serves anyway.
    pub unchecked: Vec<PeerRecord>,
    batch: Vec<(Addr, u64, Arc<PeerRecord>, PeerId)>,
    batch_armed: bool,
    wake_at: Option<u64>,
    first_seen: BTreeMap<(QuorumKey, u32), PeerRecord>,
    replicas: BTreeMap<QuorumKey, Vec<u32>>,
    rng: ChaCha20Rng,
    answers: u64,
}

impl Rendezvous {
    /// A node with an empty store seeded by `seed`.
    pub fn new(index: u32, config: StoreConfig, seed: [u8; 32], broken: bool) -> Self {
        let mut own = seed;
        own[0] ^= 0xa5;
        Self {
            index,
            store: NamespaceStore::new(config, seed),
            alive: true,
            malice: None,
            busy_until: None,
            broken,
            unchecked: Vec::new(),
            batch: Vec::new(),
            batch_armed: false,
            wake_at: None,
            first_seen: BTreeMap::new(),
            replicas: BTreeMap::new(),
            rng: ChaCha20Rng::from_seed(own),
            answers: 0,
        }
    }

    /// Handles one event.
    pub fn handle(&mut self, ctx: &mut Ctx<'_>, event: EventKind) {
        if !self.alive {
            return;
        }
        match event {
            EventKind::Timer(Timer::StoreWake) => {
                // Wake-ups land on the next tick, so `<=`.
                if self.wake_at.is_some_and(|w| w <= ctx.now) {
                    self.wake_at = None;
                    self.store.expire(ctx.now);
                    for target in self.store.due_pings(ctx.now) {
                        if let Some(&addr) = ctx.shared.peer_addr.get(&target.peer_id) {
                            ctx.send(addr, Msg::Ping);
                        }
                    }
                }
            }
            EventKind::Timer(Timer::BatchFlush) => self.flush(ctx),
            EventKind::Timer(Timer::AntiEntropy) => self.anti_entropy(ctx),
            EventKind::Timer(_) => {}
            EventKind::Deliver { from, msg } => self.on_message(ctx, from, msg),
        }
        self.arm(ctx);
    }

    /// Wakes the node when the store next needs it.
    fn arm(&mut self, ctx: &mut Ctx<'_>) {
        let Some(at) = self.store.poll_timeout() else {
            return;
        };
        let at = at.max(ctx.now + 1);
        // A wake-up that already passed was handled (or superseded).
        if self.wake_at.is_none_or(|w| at < w || w <= ctx.now) {
            self.wake_at = Some(at);
            ctx.timer(at, Timer::StoreWake);
        }
    }

    fn replicas_of(&mut self, ctx: &Ctx<'_>, key: &QuorumKey) -> Vec<u32> {
        self.replicas
            .entry(*key)
            .or_insert_with(|| ctx.shared.replicas(key))
            .clone()
    }

    fn note(&self, ctx: &mut Ctx<'_>, from: Addr, kind: RegKind, outcome: Outcome) {
        // A dropping or lying node lies about everything; its verdicts
        // mean nothing.
        if !matches!(self.malice, Some(Malice::Drop) | Some(Malice::Lie(_))) {
            ctx.note(Note::Registration {
                rdv: self.index,
                from,
                kind,
                outcome,
            });
        }
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, from: Addr, msg: Msg) {
        match msg {
            Msg::Request {
                id,
                request,
                remote,
                ..
            } => self.on_request(ctx, from, id, (*request).clone(), remote),
            Msg::Raw { bytes, remote } => self.on_raw(ctx, from, &bytes, remote),
            Msg::Discover {
                quorum_key,
                client,
                request,
            } => {
                if self.malice == Some(Malice::Drop) {
                    return;
                }
                for r in self.replicas_of(ctx, &quorum_key) {
                    ctx.send(
                        Addr::Rdv(r),
                        Msg::DiscoverForward {
                            quorum_key,
                            client,
                            request,
                        },
                    );
                }
            }
            Msg::DiscoverForward {
                quorum_key,
                client,
                request,
            } => {
                let answer = self.answer(ctx, &quorum_key);
                ctx.send(
                    Addr::Client(client),
                    Msg::DiscoverReply {
                        request,
                        answer: answer.map(Arc::new),
                    },
                );
            }
            Msg::Replicate(value) => {
                if self.malice == Some(Malice::Drop) {
                    return;
                }
                let report = self.store.merge_value((*value).clone(), ctx.now);
                let mut rejected: Vec<StatusCode> = report.namespace_rejected.into_iter().collect();
                rejected.extend(report.peers_rejected.iter().map(|(_, c)| *c));
                if self.malice.is_none() {
                    ctx.note(Note::Merge {
                        rdv: self.index,
                        from,
                        stored: report.peers_stored as u32,
                        unchanged: report.peers_unchanged as u32,
                        rejected,
                    });
                }
            }
            Msg::Pong => {
                if let Some(peer) = ctx.shared.peer_of(from) {
                    self.store.handle_pong(&peer, ctx.now);
                }
            }
            _ => {}
        }
    }

    /// A protocol request: registrations of peers wait for the next batch;
    /// the rest is answered at once.
    fn on_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        from: Addr,
        id: u64,
        request: Request,
        remote: PeerId,
    ) {
        let registration = matches!(
            request,
            Request::RegisterNamespace(_) | Request::RegisterPeer(_) | Request::RegisterPeers(_)
        );
        let refusal = match self.malice {
            Some(Malice::Lie(code)) => Some(code),
            _ if self.busy_until.is_some_and(|t| ctx.now < t) => Some(StatusCode::QuotaExceeded),
            _ => None,
        };
        if let (true, Some(code)) = (registration, refusal) {
            let kind = if matches!(request, Request::RegisterNamespace(_)) {
                RegKind::Namespace
            } else {
                RegKind::Peer
            };
            self.note(ctx, from, kind, Outcome::Rejected(code));
            ctx.send(from, Msg::response(id, Response::Rejected(code)));
            return;
        }
        let response = match request {
            Request::RegisterNamespace(record) => {
                match self.register_namespace(ctx, from, &record, remote) {
                    Ok(ttl_ms) => Response::Registered { ttl_ms },
                    Err(code) => Response::Rejected(code),
                }
            }
            Request::RegisterPeer(record) => {
                self.batch.push((from, id, Arc::new(record), remote));
                if !self.batch_armed {
                    self.batch_armed = true;
                    ctx.timer(
                        ctx.now + ctx.shared.config.batch_window_ms,
                        Timer::BatchFlush,
                    );
                }
                return;
            }
            Request::Unregister { quorum_key, index } => {
                if self.malice == Some(Malice::Drop) {
                    Response::Unregistered
                } else {
                    match self.store.unregister(&quorum_key, index, &remote, ctx.now) {
                        Ok(()) => Response::Unregistered,
                        Err(code) => Response::Rejected(code),
                    }
                }
            }
            Request::Discover { quorum_key, .. } => match self.answer(ctx, &quorum_key) {
                Ok(answer) => Response::Discovered(answer),
                Err(code) => Response::Rejected(code),
            },
            _ => Response::Rejected(StatusCode::NotAuthorized),
        };
        ctx.send(from, Msg::response(id, response));
    }

    fn register_namespace(
        &mut self,
        ctx: &mut Ctx<'_>,
        from: Addr,
        record: &NamespaceRecord,
        remote: PeerId,
    ) -> Result<u64, StatusCode> {
        if self.malice == Some(Malice::Drop) {
            return Ok(ctx.shared.config.namespace_ttl_ms);
        }
        let mut result = self
            .store
            .register_namespace(record.clone(), Some(remote), ctx.now);
        if self.broken && result.is_err() {
            result = Ok(record.expires_at_ms.saturating_sub(ctx.now));
        }
        let outcome = match result {
            Ok(_) => Outcome::Accepted,
            // The very same record, already held (e.g. replication got
            // here first): a duplicate, not a refusal.
            Err(StatusCode::StaleEpoch)
                if record
                    .quorum_key()
                    .and_then(|k| self.store.namespace(&k))
                    .map(|v| v.record())
                    == Some(record) =>
            {
                Outcome::Unchanged
            }
            Err(code) => Outcome::Rejected(code),
        };
        self.note(ctx, from, RegKind::Namespace, outcome);
        result
    }

    fn flush(&mut self, ctx: &mut Ctx<'_>) {
        self.batch_armed = false;
        let batch = std::mem::take(&mut self.batch);
        if batch.is_empty() {
            return;
        }
        if self.malice == Some(Malice::Drop) {
            for (from, id, _, _) in batch {
                let ttl_ms = ctx.shared.config.peer_ttl_ms;
                ctx.send(from, Msg::response(id, Response::Registered { ttl_ms }));
            }
            return;
        }
        let registrations: Vec<PeerRegistration> = batch
            .iter()
            .map(|(_, _, record, remote)| PeerRegistration {
                record: (**record).clone(),
                remote: Some(*remote),
            })
            .collect();
        let results = self.store.register_peers(registrations, ctx.now);
        for ((from, id, record, _), mut result) in batch.into_iter().zip(results) {
            if self.broken {
                if let Err(code) = result {
                    if code != StatusCode::StaleSequence {
                        self.unchecked.push((*record).clone());
                        result = Ok(record.expires_at_ms.saturating_sub(ctx.now));
                    }
                }
            }
            if result.is_ok() && self.malice == Some(Malice::Stale) {
                self.first_seen
                    .entry((record.quorum_key, record.index))
                    .or_insert_with(|| (*record).clone());
            }
            let outcome = match result {
                Ok(_) => Outcome::Accepted,
                // The same seq already held (a resend, or replication got
                // here first): a duplicate, not a refusal.
                Err(StatusCode::StaleSequence)
                    if self.store.peer_seq(&record.quorum_key, record.index)
                        == Some(record.seq) =>
                {
                    Outcome::Unchanged
                }
                Err(code) => Outcome::Rejected(code),
            };
            self.note(ctx, from, RegKind::Peer, outcome);
            let response = match result {
                Ok(ttl_ms) => Response::Registered { ttl_ms },
                Err(code) => Response::Rejected(code),
            };
            ctx.send(from, Msg::response(id, response));
        }
    }

    /// Raw bytes go through the real request codec first; what decodes is
    /// handled as the request it is (and counted as raw).
    fn on_raw(&mut self, ctx: &mut Ctx<'_>, from: Addr, bytes: &[u8], remote: PeerId) {
        let limit = ctx.shared.config.store.limits.max_message_bytes;
        let result = match Request::decode_with_limit(bytes, limit) {
            Err(e) => Err(Rejection::Decode(e).code()),
            Ok(Request::RegisterNamespace(record)) => {
                let result = self.register_namespace(ctx, from, &record, remote);
                let response = match result {
                    Ok(ttl_ms) => Response::Registered { ttl_ms },
                    Err(code) => Response::Rejected(code),
                };
                ctx.send(from, Msg::response(0, response));
                return;
            }
            Ok(Request::RegisterPeer(record)) => self
                .store
                .register_peer(
                    PeerRegistration {
                        record,
                        remote: Some(remote),
                    },
                    ctx.now,
                )
                .map(|_| ()),
            Ok(_) => Err(StatusCode::Decode),
        };
        let outcome = match result {
            Ok(()) => Outcome::Accepted,
            Err(code) => Outcome::Rejected(code),
        };
        self.note(ctx, from, RegKind::Raw, outcome);
        let response = match result {
            Ok(()) => Response::Registered { ttl_ms: 0 },
            Err(code) => Response::Rejected(code),
        };
        ctx.send(from, Msg::response(0, response));
    }

    /// What this replica answers a lookup with (lies included).
    fn answer(&mut self, ctx: &Ctx<'_>, key: &QuorumKey) -> Result<DiscoverAnswer, StatusCode> {
        self.answers += 1;
        let mut answer = match self.malice {
            Some(Malice::Drop) => return Err(StatusCode::UnknownNamespace),
            _ => self.store.discover(key, 0, None, ctx.now)?,
        };
        match self.malice {
            Some(Malice::Forge) => forge(&mut answer, self.answers, &mut self.rng),
            Some(Malice::Stale) => {
                for p in &mut answer.peers {
                    if let Some(old) = self.first_seen.get(&(*key, p.record.index)) {
                        p.record = old.clone();
                    }
                }
            }
            _ => {}
        }
        if self.broken {
            answer.peers.extend(
                self.unchecked
                    .iter()
                    .filter(|r| r.quorum_key == *key)
                    .map(|r| DiscoveredPeer {
                        record: r.clone(),
                        last_seen_ms: None,
                    }),
            );
        }
        Ok(answer)
    }

    fn anti_entropy(&mut self, ctx: &mut Ctx<'_>) {
        let interval = ctx.shared.config.anti_entropy_ms;
        let next = ctx.now + between(&mut self.rng, interval * 4 / 5, interval * 6 / 5);
        ctx.timer(next, Timer::AntiEntropy);
        if matches!(self.malice, Some(Malice::Drop) | Some(Malice::Stale)) {
            return;
        }
        for mut value in self.store.values(ctx.now) {
            let Some(key) = value.namespace.quorum_key() else {
                continue;
            };
            if self.malice == Some(Malice::Forge) {
                let evil: Multiaddr = "/ip4/6.6.6.6/tcp/666"
                    .parse()
                    .unwrap_or_else(|_| Multiaddr::empty());
                for p in &mut value.peers {
                    p.addrs = vec![evil.clone()];
                    p.seq += 1_000;
                }
            }
            let value = Arc::new(value);
            for r in self.replicas_of(ctx, &key) {
                if r != self.index {
                    ctx.send(Addr::Rdv(r), Msg::Replicate(value.clone()));
                }
            }
        }
    }
}

/// Alters an answer the way a forging replica would. Signatures are kept
/// (the forger has no key), so every alteration must fail verification.
fn forge(answer: &mut DiscoverAnswer, counter: u64, rng: &mut ChaCha20Rng) {
    let evil: Multiaddr = "/ip4/6.6.6.6/tcp/666"
        .parse()
        .unwrap_or_else(|_| Multiaddr::empty());
    match counter % 3 {
        // Redirect every member to the attacker.
        0 => {
            for p in &mut answer.peers {
                p.record.addrs = vec![evil.clone()];
            }
        }
        // Claim newer registrations (which would win a naive merge).
        1 => {
            for p in &mut answer.peers {
                p.record.seq += 1_000 + between(rng, 0, 1_000);
                p.record.addrs.push(evil.clone());
            }
        }
        // Tamper with the namespace record itself.
        _ => {
            answer.namespace.epoch += 1;
            if answer.namespace.commitments.len() > 1 {
                answer.namespace.commitments.swap(0, 1);
            }
        }
    }
}
