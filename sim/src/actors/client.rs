//! A client: asks a random rendezvous node for a quorum's members,
//! collects the k replicas' answers, verifies them with
//! `rendezvous_proto::verify_discover_answer`, and merges the verified
//! records by member index, keeping the highest seq.
//!
//! Answers that carry the same namespace record are verified together
//! (their distinct peer records in one batch: byte-identical records
//! served by several replicas are verified once, which cannot change a
//! verdict). If no replica answered before the deadline, the client tries
//! another entry node, at most twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rand_chacha::ChaCha20Rng;
use rand_core::RngCore;
use rendezvous_proto::messages::DiscoveredPeer;
use rendezvous_proto::{
    verify_discover_answer, Cookie, DiscoverAnswer, NamespaceRecord, PeerRecord, QuorumKey,
    StatusCode,
};

use crate::msg::{Addr, Ctx, DiscoveryResult, EventKind, Msg, Note, Timer};

/// Answers sharing one namespace record: the record, the distinct peer
/// records served with it, and their encodings (for deduplication).
type Group = (NamespaceRecord, Vec<DiscoveredPeer>, BTreeSet<Vec<u8>>);

struct Query {
    quorum: u32,
    key: QuorumKey,
    entry: u32,
    attempts: u32,
    replies: Vec<Result<Arc<DiscoverAnswer>, StatusCode>>,
}

/// One client.
pub struct Client {
    /// Client index.
    pub index: u32,
    rng: ChaCha20Rng,
    next_request: u64,
    queries: BTreeMap<u64, Query>,
}

impl Client {
    /// An idle client.
    pub fn new(index: u32, rng: ChaCha20Rng) -> Self {
        Self {
            index,
            rng,
            next_request: 0,
            queries: BTreeMap::new(),
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
                    attempts: 0,
                    replies: Vec::new(),
                };
                self.ask(ctx, query, entry);
            }
            EventKind::Timer(Timer::DiscoverDeadline { request }) => {
                if let Some(query) = self.queries.remove(&request) {
                    if query.replies.is_empty() && query.attempts < 3 {
                        self.ask(ctx, query, None);
                    } else {
                        self.finish(ctx, query);
                    }
                }
            }
            EventKind::Deliver {
                msg: Msg::DiscoverReply { request, answer },
                from: Addr::Rdv(_),
            } => {
                let k = ctx.shared.config.params.replication as usize;
                let complete = match self.queries.get_mut(&request) {
                    Some(q) => {
                        q.replies.push(answer);
                        q.replies.len() >= k
                    }
                    None => false,
                };
                if complete {
                    if let Some(query) = self.queries.remove(&request) {
                        self.finish(ctx, query);
                    }
                }
            }
            _ => {}
        }
    }

    fn ask(&mut self, ctx: &mut Ctx<'_>, mut query: Query, entry: Option<u32>) {
        let nodes = ctx.shared.config.params.rendezvous.max(1);
        query.entry = entry.unwrap_or_else(|| (self.rng.next_u64() % u64::from(nodes)) as u32);
        query.attempts += 1;
        self.next_request += 1;
        let request = self.next_request;
        ctx.send(
            Addr::Rdv(query.entry),
            Msg::Discover {
                quorum_key: query.key,
                client: self.index,
                request,
            },
        );
        ctx.timer(
            ctx.now + ctx.shared.config.discover_timeout_ms,
            Timer::DiscoverDeadline { request },
        );
        self.queries.insert(request, query);
    }

    fn finish(&mut self, ctx: &mut Ctx<'_>, query: Query) {
        let limits = ctx.shared.config.store.limits;
        let replies = query.replies.iter().filter(|r| r.is_ok()).count() as u32;
        // Group answers by namespace record, deduplicating peer records.
        let mut groups: BTreeMap<Vec<u8>, Group> = BTreeMap::new();
        for answer in query.replies.iter().flatten() {
            let group = groups
                .entry(answer.namespace.encode())
                .or_insert_with(|| (answer.namespace.clone(), Vec::new(), BTreeSet::new()));
            for p in &answer.peers {
                if group.2.insert(p.record.encode()) {
                    group.1.push(p.clone());
                }
            }
        }
        let mut best: BTreeMap<u32, PeerRecord> = BTreeMap::new();
        let mut rejected = Vec::new();
        let mut namespace_errors = Vec::new();
        for (_, (namespace, peers, _)) in groups {
            let answer = DiscoverAnswer {
                namespace,
                peers,
                cookie: Cookie::default(),
            };
            match verify_discover_answer(&answer, &query.key, ctx.now, &limits, &mut self.rng) {
                Ok(verified) => {
                    rejected.extend(
                        verified
                            .rejected
                            .iter()
                            .map(|r| r.code)
                            .filter(|c| *c != StatusCode::StaleSequence),
                    );
                    for p in verified.peers {
                        let index = p.record.index;
                        let newer = best.get(&index).is_none_or(|b| p.record.seq > b.seq);
                        if newer {
                            best.insert(index, p.record);
                        }
                    }
                }
                Err(code) => namespace_errors.push(code),
            }
        }
        // Ground truth check: a verified record must be exactly what the
        // real member signed (its PeerId and address, this namespace).
        let n = ctx.shared.n();
        let mut forged_accepted = 0;
        for (index, record) in &best {
            let genuine = *index >= 1 && *index <= n && record.quorum_key == query.key && {
                let flat = (query.quorum * n + index - 1) as usize;
                record.peer_id == ctx.shared.member_peers[flat]
                    && record.addrs == [ctx.shared.member_addrs[flat].clone()]
            };
            if !genuine {
                forged_accepted += 1;
            }
        }
        ctx.note(Note::Discovery(Box::new(DiscoveryResult {
            client: self.index,
            quorum: query.quorum,
            entry: query.entry,
            replies,
            found: best.iter().map(|(i, r)| (*i, r.seq)).collect(),
            rejected,
            namespace_errors,
            forged_accepted,
        })));
    }
}
