//! A client: asks one rendezvous node for a quorum's members through
//! `rendezvous_proto::lookup::QuorumLookup`, the state machine `rdht
//! discover` and `node::client::Behaviour` run (real `Request::Discover`
//! pages, every answer verified), and merges what verified across the
//! nodes it asks (`VerifiedAnswer::absorb`: each member once, its highest
//! seq, never two epochs).
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
    Gather, Gathered, LookupError, QuorumKey, QuorumLookup, Request, Response, StatusCode, Step,
    VerifiedAnswer,
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
    /// The lookup at the current entry node.
    lookup: Option<QuorumLookup>,
    /// What verified so far, every node's answer absorbed.
    /// What the nodes asked served that verified, merged (one rule for
    /// every client: `rendezvous_proto::Gathered`).
    gathered: Gathered,
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
                    lookup: None,
                    gathered: Gathered::new(),
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
                if let Some(query) = self.queries.remove(&id) {
                    self.on_answer(ctx, query, (*response).clone());
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
        let (lookup, discover) = QuorumLookup::new(query.key, false);
        query.lookup = Some(lookup);
        self.send(ctx, query, discover);
    }

    /// Sends the lookup's next request to the query's entry node.
    fn send(&mut self, ctx: &mut Ctx<'_>, query: Query, request: Request) {
        self.next_request += 1;
        let id = self.next_request;
        ctx.send(Addr::Rdv(query.entry), Msg::request(id, request, self.peer));
        ctx.timer(
            ctx.now + ctx.shared.config.discover_timeout_ms,
            Timer::DiscoverDeadline { request: id },
        );
        self.queries.insert(id, query);
    }

    fn next_or_finish(&mut self, ctx: &mut Ctx<'_>, mut query: Query) {
        if query.attempts < MAX_ATTEMPTS {
            self.ask(ctx, query, None);
        } else {
            let answer = std::mem::take(&mut query.gathered).finish();
            self.finish(ctx, query, answer.map(|found| found.answer));
        }
    }

    /// Hands the entry node's answer to the lookup: the next page, or the
    /// node's verified answer merged into the query. A node that served
    /// something that does not verify lied (an honest node verifies what
    /// it stores) and is not asked again; a refusal sends the client on.
    fn on_answer(&mut self, ctx: &mut Ctx<'_>, mut query: Query, response: Response) {
        query.replies += 1;
        let Some(mut lookup) = query.lookup.take() else {
            return self.next_or_finish(ctx, query);
        };
        let limits = ctx.shared.config.store.limits;
        match lookup.handle_response(response, ctx.now, &limits, &mut self.rng) {
            Step::Send(request) => {
                query.lookup = Some(lookup);
                self.send(ctx, query, request);
            }
            Step::Done(Ok(found)) => match query.gathered.add(found) {
                Gather::Done(all) => self.finish(ctx, query, Some(all.answer)),
                Gather::Forged(forged) => {
                    self.liars.insert(query.entry);
                    query.rejected.extend(forged);
                    self.next_or_finish(ctx, query);
                }
            },
            Step::Done(Err(LookupError::Unverified(code))) => {
                self.liars.insert(query.entry);
                query.namespace_errors.push(code);
                self.next_or_finish(ctx, query);
            }
            Step::Done(Err(_)) => self.next_or_finish(ctx, query),
        }
    }

    /// Reports the query's result: `answer`, everything that verified.
    fn finish(&mut self, ctx: &mut Ctx<'_>, query: Query, answer: Option<VerifiedAnswer>) {
        // Ground truth check: a verified record must be exactly what the
        // real member signed (its PeerId and address, this namespace).
        let n = ctx.shared.n();
        let best: BTreeMap<u32, &rendezvous_proto::PeerRecord> = answer
            .iter()
            .flat_map(|a| a.peers.iter())
            .map(|p| (p.record.index(), &p.record))
            .collect();
        let epoch = answer.as_ref().map(VerifiedAnswer::epoch);
        let mut forged_accepted = 0;
        for (index, record) in &best {
            let genuine = *index >= 1 && *index <= n && record.quorum_key() == query.key && {
                let flat = (query.quorum * n + index - 1) as usize;
                record.peer_id() == ctx.shared.member_peers[flat]
                    && record.addrs() == [ctx.shared.member_addrs[flat].clone()]
            };
            if !genuine {
                forged_accepted += 1;
            }
        }
        let mixed_epochs = best
            .values()
            .filter(|r| Some(r.seat.epoch) != epoch)
            .count() as u32;
        ctx.note(Note::Discovery(Box::new(DiscoveryResult {
            client: self.index,
            quorum: query.quorum,
            entry: query.entry,
            replies: query.replies,
            found: best.iter().map(|(i, r)| (*i, r.seq())).collect(),
            rejected: query.rejected,
            namespace_errors: query.namespace_errors,
            forged_accepted,
            epoch,
            mixed_epochs,
        })));
    }
}
