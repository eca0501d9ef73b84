//! A rendezvous node: a thin driver of the same sans-IO core as `rdht
//! rendezvous` ([`dht::Server`]) on the simulated network.
//!
//! - Requests arrive as real [`Request`]s through the codec and go to
//!   [`Server::handle_request`]; the core's replies go back as
//!   [`Msg::Response`]. Its verification jobs run inline (one Miller loop
//!   per batch, no thread), so batches follow the core's own policy: a
//!   batch goes out after `batch_window_ms` or once it is full.
//! - The core's replication PUTs go to the namespace's other replicas as
//!   [`Msg::Replicate`] (the value's wire bytes), which they hand to
//!   [`Server::handle_value`]; on a jittered interval each replica also
//!   pushes everything it holds (Kademlia's republication).
//! - Liveness: the core's due dials become pings; a pong is
//!   [`Server::handle_pong`], and an unanswered ping becomes a miss inside
//!   the store when the next one is due.
//! - Discovery: a client's `Request::Discover` goes to the core like any
//!   request. A node that does not hold the namespace gets the core's
//!   [`Output::Lookup`]: it asks the namespace's replicas ([`Msg::KadGet`],
//!   the end of a Kademlia GET), hands their values to
//!   [`Server::handle_value`], and ends the lookup when the core says it
//!   has what it needs ([`Output::LookupDone`]) or every replica answered
//!   ([`Server::handle_lookup_done`]).
//!
//! What this driver adds is adversarial only: a malicious node
//! ([`Malice`]) runs the same core but lies in what it serves and
//! acknowledges; a busy node refuses every registration `QuotaExceeded`
//! for a while; and the `broken` switch is the test-only broken validator:
//! what the core refuses is acknowledged as accepted anyway and served
//! from a side table, liveness dials go out uncapped (as before #13's
//! per-IP rate), and values from other nodes are verified with no budget
//! and no penalty (as before #13 item 1), which the invariants must catch.

use std::collections::BTreeMap;
use std::sync::Arc;

use dht::{NamespaceStore, Output, ReplyId, Server, ServerConfig, StoreConfig, ValueError};
use libp2p_identity::PeerId;
use multiaddr::Multiaddr;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rendezvous_proto::envelope::PeerPayload;
use rendezvous_proto::messages::DiscoveredPeer;
use rendezvous_proto::{
    NamespaceRecord, PeerRecord, QuorumKey, Rejection, Request, Response, StatusCode,
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
    /// The real server core (and its store).
    server: Server,
    /// Up (false while crashed).
    pub alive: bool,
    /// Lies, for a malicious node.
    pub malice: Option<Malice>,
    /// Until then (virtual ms), every registration is refused with
    /// `QuotaExceeded`: an honest node under load.
    pub busy_until: Option<u64>,
    broken: bool,
    /// Test-only broken validator: records the core refused but this
    /// node acknowledged and serves anyway.
    pub unchecked: Vec<PeerRecord>,
    /// Where each of the core's replies goes, and what it answers.
    replies: BTreeMap<u64, Pending>,
    next_reply: u64,
    wake_at: Option<u64>,
    first_seen: BTreeMap<(QuorumKey, u32), PeerRecord>,
    replicas: BTreeMap<QuorumKey, Vec<u32>>,
    /// This node's DHT lookups in flight, by query id.
    lookups: BTreeMap<u64, KadLookup>,
    next_query: u64,
    rng: ChaCha20Rng,
    answers: u64,
}

/// A DHT lookup in flight: which namespace, and how many replicas have
/// not answered yet.
struct KadLookup {
    quorum_key: QuorumKey,
    key: dht::DhtKey,
    unanswered: usize,
}

/// A request the core has not answered yet.
struct Pending {
    to: Addr,
    id: u64,
    what: What,
}

/// What a pending request registers (for the world's tallies).
enum What {
    Namespace(Arc<NamespaceRecord>),
    Peer(Arc<PeerRecord>),
    Raw,
    Other,
}

impl Rendezvous {
    /// A node with an empty store seeded by `seed`; the core verifies a
    /// batch once it is full or `batch_window_ms` after its first record,
    /// and gives a lookup up after `lookup_timeout_ms`.
    pub fn new(
        index: u32,
        config: StoreConfig,
        batch_window_ms: u64,
        lookup_timeout_ms: u64,
        seed: [u8; 32],
        broken: bool,
    ) -> Self {
        let mut own = seed;
        own[0] ^= 0xa5;
        let server_config = ServerConfig {
            max_batch_wait_ms: batch_window_ms,
            max_batch: 64,
            min_batch: 64,
            max_jobs: 1,
            lookup_timeout_ms,
            // Simulated members list loopback addresses.
            dial_policy: dht::AddressPolicy::LOCAL,
            max_dials_per_ip_per_minute: if broken {
                u32::MAX
            } else {
                ServerConfig::default().max_dials_per_ip_per_minute
            },
            ..ServerConfig::default()
        };
        // The broken validator also verifies every value it is sent, as
        // nodes did before #13 item 1: no budget, no penalty.
        let server_config = if broken {
            ServerConfig {
                value_budget: dht::BudgetConfig {
                    work_us_per_sec: u64::MAX / 4,
                    work_burst_us: u64::MAX / 4,
                    bytes_per_sec: u64::MAX / 4,
                    burst_bytes: u64::MAX / 4,
                },
                max_queued_value_us: u64::MAX / 4,
                value_throttle_ms: 0,
                penalty_ms: 0,
                max_penalty_ms: 0,
                ..server_config
            }
        } else {
            server_config
        };
        Self {
            index,
            server: Server::new(server_config, NamespaceStore::new(config, seed)),
            alive: true,
            malice: None,
            busy_until: None,
            broken,
            unchecked: Vec::new(),
            replies: BTreeMap::new(),
            next_reply: 0,
            wake_at: None,
            first_seen: BTreeMap::new(),
            replicas: BTreeMap::new(),
            lookups: BTreeMap::new(),
            next_query: 0,
            rng: ChaCha20Rng::from_seed(own),
            answers: 0,
        }
    }

    /// The store.
    pub fn store(&self) -> &NamespaceStore {
        self.server.store()
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
                    self.server.handle_timeout(ctx.now);
                }
            }
            EventKind::Timer(Timer::AntiEntropy) => self.anti_entropy(ctx),
            EventKind::Timer(_) => {}
            EventKind::Deliver { from, msg } => self.on_message(ctx, from, msg),
        }
        self.pump(ctx);
        self.arm(ctx);
    }

    /// Wakes the node when the core next needs it.
    fn arm(&mut self, ctx: &mut Ctx<'_>) {
        let Some(at) = self.server.poll_timeout() else {
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
            } => self.on_request(ctx, from, id, (*request).clone(), remote, false),
            Msg::Raw { bytes, remote } => {
                let limit = ctx.shared.config.store.limits.max_message_bytes;
                match Request::decode_with_limit(&bytes, limit) {
                    Ok(request) => self.on_request(ctx, from, 0, request, remote, true),
                    Err(e) => {
                        let code = Rejection::Decode(e).code();
                        self.note(ctx, from, RegKind::Raw, Outcome::Rejected(code));
                        ctx.send(from, Msg::response(0, Response::Rejected(code)));
                    }
                }
            }
            Msg::KadGet { query, key } => {
                if self.malice == Some(Malice::Drop) {
                    return;
                }
                let value = self.kad_value(ctx, &key).map(Arc::new);
                ctx.send(from, Msg::KadValue { query, value });
            }
            Msg::KadValue { query, value } => {
                let Some(lookup) = self.lookups.get_mut(&query) else {
                    return;
                };
                lookup.unanswered = lookup.unanswered.saturating_sub(1);
                let (key, quorum_key, last) =
                    (lookup.key, lookup.quorum_key, lookup.unanswered == 0);
                if last {
                    self.lookups.remove(&query);
                }
                if let Some(value) = value {
                    self.merge(ctx, from, &key, &value);
                }
                if last {
                    self.server.handle_lookup_done(ctx.now, quorum_key);
                }
            }
            Msg::Replicate { key, value } => {
                if self.malice == Some(Malice::Drop) {
                    return;
                }
                self.merge(ctx, from, &key, &value);
            }
            Msg::Pong => {
                if let Some(peer) = ctx.shared.peer_of(from) {
                    self.server.handle_pong(&peer, ctx.now);
                }
            }
            _ => {}
        }
    }

    /// A value another replica pushed or served: the core re-verifies it
    /// (in a job, within the sender's budget); what the merge did comes
    /// out of the core as [`Output::Merged`].
    fn merge(&mut self, ctx: &mut Ctx<'_>, from: Addr, key: &dht::DhtKey, value: &[u8]) {
        let sender = ctx.shared.peer_of(from);
        if let Err(e) = self.server.handle_value(ctx.now, sender, key, value) {
            let code = match e {
                ValueError::Key | ValueError::Decode | ValueError::WrongKey => StatusCode::Decode,
                ValueError::Full
                | ValueError::Penalized
                | ValueError::OverBudget
                | ValueError::Busy => StatusCode::QuotaExceeded,
            };
            self.note_merge(ctx, from, 0, 0, vec![code]);
        }
    }

    fn note_merge(
        &self,
        ctx: &mut Ctx<'_>,
        from: Addr,
        stored: usize,
        unchanged: usize,
        rejected: Vec<StatusCode>,
    ) {
        if self.malice.is_none() {
            ctx.note(Note::Merge {
                rdv: self.index,
                from,
                stored: stored as u32,
                unchanged: unchanged as u32,
                rejected,
            });
        }
    }

    /// What this node serves to a Kademlia GET of `key` (lies included):
    /// the namespace's value as wire bytes, if it holds one.
    fn kad_value(&mut self, ctx: &Ctx<'_>, key: &dht::DhtKey) -> Option<Vec<u8>> {
        let quorum_key = self.store().quorum_key_for(key)?;
        let mut value = self.store().namespace_value(&quorum_key, ctx.now)?;
        self.lie(&quorum_key, &mut value.namespace, value.peers.iter_mut());
        if self.broken {
            value.peers.extend(
                self.unchecked
                    .iter()
                    .filter(|r| r.quorum_key() == quorum_key)
                    .cloned(),
            );
        }
        Some(value.encode())
    }

    /// A protocol request (from the wire, or raw bytes that decoded): the
    /// core decides, unless this node is busy or lies.
    fn on_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        from: Addr,
        id: u64,
        request: Request,
        remote: PeerId,
        raw: bool,
    ) {
        let what = match &request {
            _ if raw => What::Raw,
            Request::RegisterNamespace(r) => What::Namespace(Arc::new(r.clone())),
            Request::RegisterPeer(r) => What::Peer(Arc::new(r.clone())),
            _ => What::Other,
        };
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
            let kind = match what {
                What::Namespace(_) => RegKind::Namespace,
                What::Raw => RegKind::Raw,
                _ => RegKind::Peer,
            };
            self.note(ctx, from, kind, Outcome::Rejected(code));
            ctx.send(from, Msg::response(id, Response::Rejected(code)));
            return;
        }
        // A dropping node acknowledges registrations it never keeps.
        if registration && self.malice == Some(Malice::Drop) {
            let ttl_ms = ctx.shared.config.peer_ttl_ms;
            ctx.send(from, Msg::response(id, Response::Registered { ttl_ms }));
            return;
        }
        // A dropping node hides every namespace.
        if matches!(request, Request::Discover { .. }) && self.malice == Some(Malice::Drop) {
            let response = Response::Rejected(StatusCode::UnknownNamespace);
            ctx.send(from, Msg::response(id, response));
            return;
        }
        let reply = self.next_reply;
        self.next_reply += 1;
        self.replies.insert(reply, Pending { to: from, id, what });
        self.server
            .handle_request(ctx.now, remote, ReplyId(reply), request);
    }

    /// Acts on everything the core asked for.
    fn pump(&mut self, ctx: &mut Ctx<'_>) {
        while let Some(output) = self.server.poll_output() {
            match output {
                Output::Reply { to, response } => self.reply(ctx, to, response),
                // The simulated clients speak rdht's own protocol only: no
                // standard request is handed to this core.
                Output::StandardReply { .. } => {}
                Output::Verify(job) => {
                    let done = job.run(&mut self.rng, None);
                    self.server.handle_verified(ctx.now, done);
                }
                Output::Merged {
                    from,
                    quorum_key,
                    report,
                } => {
                    let from = from
                        .and_then(|p| ctx.shared.peer_addr.get(&p).copied())
                        .unwrap_or(Addr::Rdv(self.index));
                    // A kind index reports each entry it refused.
                    let mut rejected: Vec<StatusCode> = match quorum_key {
                        Some(_) => report.namespace_rejected.into_iter().collect(),
                        None => report.kind_entries_rejected.clone(),
                    };
                    rejected.extend(report.peers_rejected.iter().map(|(_, c)| *c));
                    self.note_merge(
                        ctx,
                        from,
                        report.peers_stored,
                        report.peers_unchanged,
                        rejected,
                    );
                }
                Output::Replicate {
                    quorum_key,
                    key,
                    value,
                } => {
                    if matches!(self.malice, Some(Malice::Drop) | Some(Malice::Stale)) {
                        continue;
                    }
                    let value = Arc::new(value);
                    for r in self.replicas_of(ctx, &quorum_key) {
                        if r != self.index {
                            ctx.send(
                                Addr::Rdv(r),
                                Msg::Replicate {
                                    key,
                                    value: value.clone(),
                                },
                            );
                        }
                    }
                }
                Output::Lookup { quorum_key, key } => {
                    let replicas: Vec<u32> = self
                        .replicas_of(ctx, &quorum_key)
                        .into_iter()
                        .filter(|r| *r != self.index)
                        .collect();
                    if replicas.is_empty() {
                        self.server.handle_lookup_done(ctx.now, quorum_key);
                        continue;
                    }
                    self.next_query += 1;
                    let query = self.next_query;
                    for &r in &replicas {
                        ctx.send(Addr::Rdv(r), Msg::KadGet { query, key });
                    }
                    self.lookups.insert(
                        query,
                        KadLookup {
                            quorum_key,
                            key,
                            unanswered: replicas.len(),
                        },
                    );
                }
                Output::LookupDone { quorum_key } => {
                    self.lookups.retain(|_, l| l.quorum_key != quorum_key);
                }
                Output::Dial { peer, addrs } | Output::Reconnect { peer, addrs } => {
                    ctx.note(Note::Dial {
                        rdv: self.index,
                        addrs,
                    });
                    if let Some(&addr) = ctx.shared.peer_addr.get(&peer) {
                        ctx.send(addr, Msg::Ping);
                    }
                }
                // Simulated connections are not modelled: the core refuses
                // a penalized sender's requests all the same.
                Output::Persist(_)
                | Output::PersistHandovers(_)
                | Output::ListingChanged { .. }
                | Output::Disconnect { .. }
                | Output::Unblock { .. } => {}
            }
        }
    }

    /// Sends one of the core's replies (the broken validator turns
    /// refusals into acceptances first) and tallies it.
    fn reply(&mut self, ctx: &mut Ctx<'_>, to: ReplyId, mut response: Response) {
        let Some(pending) = self.replies.remove(&to.0) else {
            return;
        };
        if let Response::Discovered(answer) = &mut response {
            if let Some(key) = answer.namespace.quorum_key() {
                let peers = answer.peers.iter_mut().map(|p| &mut p.record);
                self.lie(&key, &mut answer.namespace, peers);
                if self.broken {
                    self.serve_unchecked(&key, &mut answer.peers);
                }
            }
        }
        if let (true, Response::Rejected(code)) = (self.broken, &response) {
            match &pending.what {
                What::Peer(record) if *code != StatusCode::StaleSequence => {
                    self.unchecked.push((**record).clone());
                    let ttl_ms = record.expires_at_ms().saturating_sub(ctx.now);
                    response = Response::Registered { ttl_ms };
                }
                What::Namespace(record) => {
                    let ttl_ms = record.expires_at_ms.saturating_sub(ctx.now);
                    response = Response::Registered { ttl_ms };
                }
                _ => {}
            }
        }
        let outcome = match &response {
            Response::Registered { .. } => Outcome::Accepted,
            Response::Rejected(code) => Outcome::Rejected(*code),
            _ => Outcome::Accepted,
        };
        match &pending.what {
            What::Namespace(record) => {
                // The very same record, already held (replication got
                // here first): a duplicate, not a refusal.
                let held = record
                    .quorum_key()
                    .and_then(|k| self.store().namespace(&k))
                    .is_some_and(|v| v.record() == &**record);
                let outcome = match outcome {
                    Outcome::Rejected(StatusCode::StaleEpoch) if held => Outcome::Unchanged,
                    o => o,
                };
                self.note(ctx, pending.to, RegKind::Namespace, outcome);
            }
            What::Peer(record) => {
                if outcome == Outcome::Accepted && self.malice == Some(Malice::Stale) {
                    self.first_seen
                        .entry((record.quorum_key(), record.index()))
                        .or_insert_with(|| (**record).clone());
                }
                // The same seq already held (a resend, or replication got
                // here first): a duplicate, not a refusal.
                let held = self.store().peer_seq(&record.quorum_key(), record.index())
                    == Some(record.seq());
                let outcome = match outcome {
                    Outcome::Rejected(StatusCode::StaleSequence) if held => Outcome::Unchanged,
                    o => o,
                };
                self.note(ctx, pending.to, RegKind::Peer, outcome);
            }
            What::Raw => {
                if matches!(
                    response,
                    Response::Registered { .. } | Response::Rejected(_)
                ) {
                    self.note(ctx, pending.to, RegKind::Raw, outcome);
                }
            }
            What::Other => {}
        }
        ctx.send(pending.to, Msg::response(pending.id, response));
    }

    /// Applies this node's lies to what it serves (a discover answer, or
    /// a value a GET asked for): altered records for a forger, the first
    /// version seen for a stale node.
    fn lie<'a>(
        &mut self,
        key: &QuorumKey,
        namespace: &mut NamespaceRecord,
        peers: impl Iterator<Item = &'a mut PeerRecord>,
    ) {
        match self.malice {
            Some(Malice::Forge) => {
                self.answers += 1;
                forge(namespace, peers, self.answers, &mut self.rng);
            }
            Some(Malice::Stale) => {
                for p in peers {
                    if let Some(old) = self.first_seen.get(&(*key, p.index())) {
                        *p = old.clone();
                    }
                }
            }
            _ => {}
        }
    }

    /// The broken validator serves what it acknowledged without checking.
    fn serve_unchecked(&self, key: &QuorumKey, peers: &mut Vec<DiscoveredPeer>) {
        peers.extend(
            self.unchecked
                .iter()
                .filter(|r| r.quorum_key() == *key)
                .map(|r| DiscoveredPeer {
                    record: r.clone(),
                    last_seen_ms: None,
                }),
        );
    }

    fn anti_entropy(&mut self, ctx: &mut Ctx<'_>) {
        let interval = ctx.shared.config.anti_entropy_ms;
        let next = ctx.now + between(&mut self.rng, interval * 4 / 5, interval * 6 / 5);
        ctx.timer(next, Timer::AntiEntropy);
        if matches!(self.malice, Some(Malice::Drop) | Some(Malice::Stale)) {
            return;
        }
        for mut value in self.server.store().values(ctx.now) {
            let Some(quorum_key) = value.namespace.quorum_key() else {
                continue;
            };
            if self.malice == Some(Malice::Forge) {
                let evil: Multiaddr = "/ip4/6.6.6.6/tcp/666"
                    .parse()
                    .unwrap_or_else(|_| Multiaddr::empty());
                for p in &mut value.peers {
                    alter(p, |payload| {
                        payload.addrs = vec![evil.clone()];
                        payload.seq += 1_000;
                    });
                }
            }
            let msg = Msg::replicate(&value);
            for r in self.replicas_of(ctx, &quorum_key) {
                if r != self.index {
                    ctx.send(Addr::Rdv(r), msg.clone());
                }
            }
        }
    }
}

/// Alters what a forging node serves (a discover answer, or a value a GET
/// asked for). Signatures are kept (the forger has no key), so every
/// alteration must fail verification.
fn forge<'a>(
    namespace: &mut NamespaceRecord,
    peers: impl Iterator<Item = &'a mut PeerRecord>,
    counter: u64,
    rng: &mut ChaCha20Rng,
) {
    let evil: Multiaddr = "/ip4/6.6.6.6/tcp/666"
        .parse()
        .unwrap_or_else(|_| Multiaddr::empty());
    match counter % 3 {
        // Redirect every member to the attacker.
        0 => {
            for p in peers {
                alter(p, |payload| payload.addrs = vec![evil.clone()]);
            }
        }
        // Claim newer registrations (which would win a naive merge).
        1 => {
            for p in peers {
                let raise = 1_000 + between(rng, 0, 1_000);
                alter(p, |payload| {
                    payload.seq += raise;
                    payload.addrs.push(evil.clone());
                });
            }
        }
        // Tamper with the namespace record itself.
        _ => {
            namespace.epoch += 1;
            if namespace.commitments.len() > 1 {
                namespace.commitments.swap(0, 1);
            }
        }
    }
}

/// Changes what a record's envelope says, keeping its signature (a forger
/// holds no member's key).
fn alter(record: &mut PeerRecord, change: impl FnOnce(&mut PeerPayload)) {
    let mut payload = record.envelope.payload.clone();
    change(&mut payload);
    record.envelope.replace_payload_unsigned(payload);
}
