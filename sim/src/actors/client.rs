//! A client: asks one rendezvous node for a quorum's members with a real
//! `Request::Discover` (as `rdht discover` does), verifies the answer with
//! `rendezvous_proto::verify_discover_answer`, and keeps the verified
//! records by member index (highest seq).
//!
//! A rendezvous node is not trusted: an answer whose namespace record does
//! not verify, that carries any record that does not verify, or a refusal
//! or silence past the deadline, sends the client to another entry node it
//! has not asked yet, at most five nodes in all. What verified in earlier
//! answers is kept. A node that served something that does not verify
//! lied (an honest node verifies what it stores), so the client does not
//! ask it again.

use std::collections::{BTreeMap, BTreeSet};

use libp2p_identity::PeerId;
use rand_chacha::ChaCha20Rng;
use rand_core::RngCore;
use rendezvous_proto::{
    verify_discover_answer, DiscoverAnswer, PeerRecord, QuorumKey, Request, Response, StatusCode,
};

use crate::msg::{Addr, Ctx, DiscoveryResult, EventKind, Msg, Note, Timer};

/// Entry nodes a client tries for one discovery, at most.
const MAX_ATTEMPTS: u32 = 5;

struct Query {
    quorum: u32,
    key: QuorumKey,
    entry: u32,
    /// The entry nodes asked so far (the last is `entry`).
    asked: Vec<u32>,
    attempts: u32,
    replies: u32,
    best: BTreeMap<u32, PeerRecord>,
    /// The namespace epoch every record in `best` is of: answers are
    /// never mixed across epochs (a later epoch replaces what an earlier
    /// one gave; an earlier one adds nothing).
    epoch: Option<u64>,
    rejected: Vec<StatusCode>,
    namespace_errors: Vec<StatusCode>,
}

/// One client.
pub struct Client {
    /// Client index.
    pub index: u32,
    peer: PeerId,
    rng: ChaCha20Rng,
    next_request: u64,
    queries: BTreeMap<u64, Query>,
    /// Nodes that served records that do not verify.
    liars: BTreeSet<u32>,
}

impl Client {
    /// An idle client that authenticates as `peer`.
    pub fn new(index: u32, peer: PeerId, rng: ChaCha20Rng) -> Self {
        Self {
            index,
            peer,
            rng,
            next_request: 0,
            queries: BTreeMap::new(),
            liars: BTreeSet::new(),
        }
    }

    /// Handles one event.
    pub fn handle(&mut self, ctx: &mut Ctx<'_>, event: EventKind) {
        match event {
            EventKind::Timer(Timer::DiscoverStart { quorum, key, entry }) => {
                let query = Query {
                    quorum,
                    key,
                    entry: 0,
                    asked: Vec::new(),
                    attempts: 0,
                    replies: 0,
                    best: BTreeMap::new(),
                    epoch: None,
                    rejected: Vec::new(),
                    namespace_errors: Vec::new(),
                };
                self.ask(ctx, query, entry);
            }
            EventKind::Timer(Timer::DiscoverDeadline { request }) => {
                if let Some(query) = self.queries.remove(&request) {
                    self.next_or_finish(ctx, query);
                }
            }
            EventKind::Deliver {
                msg: Msg::Response { id, response, .. },
                from: Addr::Rdv(_),
            } => {
                if let Some(mut query) = self.queries.remove(&id) {
                    let trusted = match &*response {
                        Response::Discovered(answer) => self.verify(ctx, &mut query, answer),
                        _ => false,
                    };
                    if trusted {
                        self.finish(ctx, query);
                    } else {
                        self.next_or_finish(ctx, query);
                    }
                }
            }
            _ => {}
        }
    }

    /// Asks `entry`, or (if `None`) a random node not asked yet in this
    /// query that never lied to this client (any node not asked yet, if
    /// none is left).
    fn ask(&mut self, ctx: &mut Ctx<'_>, mut query: Query, entry: Option<u32>) {
        let nodes = ctx.shared.config.params.rendezvous.max(1);
        let fresh: Vec<u32> = (0..nodes).filter(|r| !query.asked.contains(r)).collect();
        let trusted: Vec<u32> = fresh
            .iter()
            .copied()
            .filter(|r| !self.liars.contains(r))
            .collect();
        let pool = if trusted.is_empty() { &fresh } else { &trusted };
        query.entry = match (entry, pool.len() as u64) {
            (Some(e), _) => e,
            (None, 0) => (self.rng.next_u64() % u64::from(nodes)) as u32,
            (None, len) => pool[(self.rng.next_u64() % len) as usize],
        };
        query.asked.push(query.entry);
        query.attempts += 1;
        self.next_request += 1;
        let request = self.next_request;
        let discover = Request::Discover {
            quorum_key: query.key,
            limit: 0,
            cookie: None,
        };
        ctx.send(
            Addr::Rdv(query.entry),
            Msg::request(request, discover, self.peer),
        );
        ctx.timer(
            ctx.now + ctx.shared.config.discover_timeout_ms,
            Timer::DiscoverDeadline { request },
        );
        self.queries.insert(request, query);
    }

    fn next_or_finish(&mut self, ctx: &mut Ctx<'_>, query: Query) {
        if query.attempts < MAX_ATTEMPTS {
            self.ask(ctx, query, None);
        } else {
            self.finish(ctx, query);
        }
    }

    /// Verifies one answer into the query. Returns whether everything in
    /// it verified (the node can be believed to have answered in full).
    fn verify(&mut self, ctx: &Ctx<'_>, query: &mut Query, answer: &DiscoverAnswer) -> bool {
        query.replies += 1;
        let limits = ctx.shared.config.store.limits;
        match verify_discover_answer(answer, &query.key, ctx.now, &limits, &mut self.rng) {
            Ok(verified) => {
                let forged: Vec<StatusCode> = verified
                    .rejected
                    .iter()
                    .map(|r| r.code)
                    .filter(|c| *c != StatusCode::StaleSequence)
                    .collect();
                let clean = forged.is_empty();
                if !clean {
                    self.liars.insert(query.entry);
                }
                query.rejected.extend(forged);
                let epoch = verified.epoch();
                match query.epoch {
                    Some(held) if epoch < held => return clean,
                    Some(held) if epoch > held => query.best.clear(),
                    _ => {}
                }
                query.epoch = Some(epoch);
                for p in verified.peers {
                    let index = p.record.index();
                    let newer = query
                        .best
                        .get(&index)
                        .is_none_or(|b| p.record.seq() > b.seq());
                    if newer {
                        query.best.insert(index, p.record);
                    }
                }
                clean
            }
            Err(code) => {
                self.liars.insert(query.entry);
                query.namespace_errors.push(code);
                false
            }
        }
    }

    fn finish(&mut self, ctx: &mut Ctx<'_>, query: Query) {
        // Ground truth check: a verified record must be exactly what the
        // real member signed (its PeerId and address, this namespace).
        let n = ctx.shared.n();
        let mut forged_accepted = 0;
        for (index, record) in &query.best {
            let genuine = *index >= 1 && *index <= n && record.quorum_key() == query.key && {
                let flat = (query.quorum * n + index - 1) as usize;
                record.peer_id() == ctx.shared.member_peers[flat]
                    && record.addrs() == [ctx.shared.member_addrs[flat].clone()]
            };
            if !genuine {
                forged_accepted += 1;
            }
        }
        let mixed_epochs = query
            .best
            .values()
            .filter(|r| Some(r.seat.epoch) != query.epoch)
            .count() as u32;
        ctx.note(Note::Discovery(Box::new(DiscoveryResult {
            client: self.index,
            quorum: query.quorum,
            entry: query.entry,
            replies: query.replies,
            found: query.best.iter().map(|(i, r)| (*i, r.seq())).collect(),
            rejected: query.rejected,
            namespace_errors: query.namespace_errors,
            forged_accepted,
            epoch: query.epoch,
            mixed_epochs,
        })));
    }
}
