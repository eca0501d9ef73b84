//! The rendezvous node's event loop: requests, Kademlia events, pings and
//! verification verdicts go to the core ([`dht::Server`]); its outputs
//! become replies, verification jobs on the verifier threads, Kademlia
//! PUTs and GETs, dials and database writes.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use dht::{BlockReason, Output, ReplyId, Server, VerifyJob};
use libp2p::futures::{FutureExt, StreamExt};
use libp2p::kad;
use libp2p::request_response::{self, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, ping, PeerId, Swarm};
use rendezvous_proto::{QuorumKey, Response, StatusCode};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::Command;
use crate::behaviour::{now_ms, Behaviour, BehaviourEvent, KAD_PROTOCOL};
use crate::codec::Frame;
use crate::metrics::Metrics;
use crate::persist::RecordDb;
use crate::standard;
use crate::verifier::{run_job, JobResult};

type Channel = ResponseChannel<Frame<Response>>;

pub(super) struct Driver {
    pub(super) swarm: Swarm<Behaviour>,
    pub(super) db: Option<RecordDb>,
    pub(super) metrics: Arc<Metrics>,
    /// Where the core's replies go.
    pub(super) replies: HashMap<u64, Channel>,
    pub(super) next_reply: u64,
    /// Kademlia GETs under way, and the namespace each looks up.
    pub(super) lookups: HashMap<kad::QueryId, QuorumKey>,
    /// To the verification threads.
    pub(super) jobs: std::sync::mpsc::Sender<VerifyJob>,
    /// From the verification threads.
    pub(super) verified: mpsc::UnboundedReceiver<JobResult>,
    /// The gauges are refreshed at most once a second (counting is
    /// O(records)), and within a second of any change.
    pub(super) stats_due: std::time::Instant,
    /// Something the gauges count may have changed since they were set.
    pub(super) stats_dirty: bool,
    /// Rendezvous peers saved to the database, with the addresses saved.
    pub(super) saved_peers: HashMap<PeerId, Vec<libp2p::Multiaddr>>,
}

impl Driver {
    fn core(&mut self) -> &mut Server {
        // The rendezvous swarm always has kad (`SwarmSettings::kad`), and
        // kad owns the core through its record store.
        match self.swarm.behaviour_mut().kad.as_mut() {
            Some(kad) => kad.store_mut().inner_mut(),
            None => unreachable!("a rendezvous swarm is built with kad"),
        }
    }

    pub(super) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        loop {
            self.pump();
            let now = now_ms();
            let mut sleep = self
                .core()
                .poll_timeout()
                .map_or(Duration::from_secs(3600), |at| {
                    Duration::from_millis(at.saturating_sub(now))
                });
            if self.stats_dirty {
                let until_stats = self
                    .stats_due
                    .saturating_duration_since(std::time::Instant::now());
                sleep = sleep.min(until_stats);
            }
            let waiting = self.core().has_jobs();
            tokio::select! {
                event = self.swarm.select_next_some() => {
                    self.on_event(event);
                    // Take whatever else is ready, so registrations that
                    // arrived together are verified as one batch.
                    for _ in 0..256 {
                        match self.swarm.next().now_or_never() {
                            Some(Some(event)) => self.on_event(event),
                            _ => break,
                        }
                    }
                }
                done = self.verified.recv(), if waiting => self.on_job(done),
                _ = tokio::time::sleep(sleep) => self.core().handle_timeout(now_ms()),
                command = commands.recv() => match command {
                    None | Some(Command::Shutdown) => {
                        self.drain().await;
                        info!("rendezvous node stopped");
                        return;
                    }
                    Some(Command::Fingerprint(reply)) => {
                        self.drain().await;
                        let _ = reply.send(self.core().store().fingerprint());
                    }
                    Some(Command::Stats(reply)) => {
                        self.drain().await;
                        let _ = reply.send(self.core().store().stats());
                    }
                },
            }
        }
    }

    fn on_job(&mut self, done: Option<JobResult>) {
        let now = now_ms();
        match done {
            Some(Ok(done)) => self.core().handle_verified(now, done),
            Some(Err(id)) => self.core().handle_job_failed(now, id),
            // Every verification thread is gone: nothing will come back.
            None => {
                warn!("the verification threads are gone");
            }
        }
    }

    /// Verifies and applies everything waiting and writes every change
    /// (before answering a question about the state, or stopping).
    async fn drain(&mut self) {
        self.core().flush(now_ms());
        self.pump();
        while self.core().has_jobs() {
            let done = self.verified.recv().await;
            if done.is_none() {
                break;
            }
            self.on_job(done);
            self.pump();
        }
        self.core().flush(now_ms());
        self.pump();
    }

    /// Acts on everything the core asked for, and refreshes the gauges.
    fn pump(&mut self) {
        while let Some(output) = self.core().poll_output() {
            match output {
                Output::Reply { to, response } => self.reply(to, response),
                Output::Verify(job) => {
                    if let Err(std::sync::mpsc::SendError(job)) = self.jobs.send(job) {
                        let done = run_job(job, &mut rand::thread_rng());
                        self.on_job(Some(done));
                    }
                }
                Output::Replicate { key, value, .. } => {
                    // A node that knows no other rendezvous has no one to
                    // PUT to: Kademlia's periodic republication covers
                    // peers that join later, as it would a failed PUT.
                    let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() else {
                        continue;
                    };
                    if kad.kbuckets().all(|b| b.num_entries() == 0) {
                        continue;
                    }
                    let record = kad::Record::new(key.to_vec(), value);
                    if let Err(e) = kad.put_record(record, kad::Quorum::One) {
                        debug!("replication not started: {e}");
                    }
                }
                Output::Lookup { quorum_key, key } => {
                    if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
                        let id = kad.get_record(kad::RecordKey::new(&key));
                        self.lookups.insert(id, quorum_key);
                    }
                }
                Output::LookupDone { quorum_key } => {
                    let ids: Vec<kad::QueryId> = self
                        .lookups
                        .iter()
                        .filter(|(_, qk)| **qk == quorum_key)
                        .map(|(id, _)| *id)
                        .collect();
                    for id in ids {
                        self.lookups.remove(&id);
                        let kad = self.swarm.behaviour_mut().kad.as_mut();
                        if let Some(mut query) = kad.and_then(|k| k.query_mut(&id)) {
                            query.finish();
                        }
                    }
                }
                Output::Dial { peer, addrs } => {
                    // The core dials only peers it holds no connection to;
                    // one it closed (`Output::Reconnect`) may still be
                    // closing in the swarm, so only a dial under way
                    // stops this one.
                    let opts = DialOpts::peer_id(peer)
                        .addresses(addrs)
                        .condition(PeerCondition::NotDialing)
                        .build();
                    if let Err(e) = self.swarm.dial(opts) {
                        debug!(%peer, "ping dial not started: {e}");
                    }
                }
                Output::ListingChanged { peer, listed } => {
                    self.stats_dirty = true;
                    if listed {
                        info!(%peer, "peer answers again: listed again here");
                        self.metrics.relisted.fetch_add(1, Ordering::Relaxed);
                    } else {
                        info!(%peer, "peer unreachable (ping failed or unanswered): no longer listed here");
                        self.metrics.unlisted.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Output::Reconnect { peer, addrs } => {
                    debug!(%peer, "last ping failed: closing its connections, dialling anew");
                    let _ = self.swarm.disconnect_peer_id(peer);
                    if !addrs.is_empty() {
                        let opts = DialOpts::peer_id(peer)
                            .addresses(addrs)
                            .condition(PeerCondition::NotDialing)
                            .build();
                        if let Err(e) = self.swarm.dial(opts) {
                            debug!(%peer, "ping redial not started: {e}");
                        }
                    }
                }
                Output::Merged { from, report, .. } => {
                    self.stats_dirty = true;
                    if report.namespace_rejected.is_some()
                        || report.handover_rejected.is_some()
                        || !report.peers_rejected.is_empty()
                    {
                        debug!(?from, ?report, "replicated value partly refused");
                    }
                }
                Output::Disconnect {
                    peer,
                    until_ms,
                    reason,
                } => {
                    let for_ms = until_ms.saturating_sub(now_ms());
                    match reason {
                        BlockReason::InvalidSignature => info!(
                            %peer,
                            "sent an invalid signature: disconnected, its connections refused for {for_ms} ms"
                        ),
                        BlockReason::OverByteBudget => debug!(
                            %peer,
                            "sent values over its byte budget: disconnected, its connections refused for {for_ms} ms"
                        ),
                    }
                    // Blocking closes its connections and refuses new ones.
                    self.swarm.behaviour_mut().blocked.block_peer(peer);
                }
                Output::Unblock { peer } => {
                    debug!(%peer, "penalty over: connections accepted again");
                    self.swarm.behaviour_mut().blocked.unblock_peer(peer);
                }
                Output::Persist(updates) => {
                    self.stats_dirty = true;
                    if let Some(db) = &self.db {
                        if let Err(e) = db.save(&updates) {
                            warn!("saving records: {e}");
                        }
                    }
                }
                Output::PersistHandovers(handovers) => {
                    if let Some(db) = &self.db {
                        if let Err(e) = db.save_handovers(&handovers) {
                            warn!("saving handovers: {e}");
                        }
                    }
                }
            }
        }
        let c = self.core().counters();
        let queued_value_us = self.core().queued_value_us();
        let m = &self.metrics;
        m.value_work_queued_us
            .store(queued_value_us, Ordering::Relaxed);
        for (metric, value) in [
            (&m.pings_due, c.pings_due),
            (&m.replications_merged, c.merges),
            (&m.lookups, c.lookups),
            (&m.lookup_negative_hits, c.negative_hits),
            (&m.lookups_refused, c.lookups_refused),
            (&m.dials_refused, c.dials_refused),
            (&m.dial_addrs_out_of_scope, c.addrs_out_of_scope),
            (&m.dial_addrs_rate_limited, c.addrs_rate_limited),
            (&m.penalties, c.penalties),
            (&m.penalized_requests, c.penalized_requests),
            (&m.values_queued, c.values_queued),
            (&m.values_unchanged, c.values_unchanged),
            (&m.values_penalized, c.values_penalized),
            (&m.values_over_budget, c.values_over_budget),
            (&m.values_busy, c.values_busy),
            (&m.senders_throttled, c.senders_throttled),
            (&m.reconnects, c.reconnects),
            (&m.lookups_timed_out, c.lookups_timed_out),
        ] {
            metric.store(value, Ordering::Relaxed);
        }
        // Counting is O(records): at most once a second, but a change is
        // never left out of the gauges for longer (`run` wakes up for it),
        // so they agree with what discover answers.
        if self.stats_dirty && std::time::Instant::now() >= self.stats_due {
            self.stats_dirty = false;
            self.stats_due = std::time::Instant::now() + Duration::from_secs(1);
            let stats = self.core().store().stats();
            let m = &self.metrics;
            for (metric, value) in [
                (&m.namespaces, stats.namespaces),
                (&m.peers, stats.peer_records),
                (&m.reachable_peers, stats.reachable_peer_records),
            ] {
                metric.store(value as u64, Ordering::Relaxed);
            }
        }
    }

    fn reply(&mut self, to: ReplyId, response: Response) {
        match &response {
            Response::Rejected(code) => self.metrics.reject(*code),
            Response::Registered { .. } => {
                self.metrics
                    .registrations_accepted
                    .fetch_add(1, Ordering::Relaxed);
            }
            Response::RegisteredPeers(outcomes) => {
                for outcome in outcomes {
                    match outcome {
                        Ok(_) => {
                            self.metrics
                                .registrations_accepted
                                .fetch_add(1, Ordering::Relaxed);
                        }
                        Err(code) => self.metrics.reject(*code),
                    }
                }
            }
            Response::Discovered(_) => {
                self.metrics.discovers.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        let Some(channel) = self.replies.remove(&to.0) else {
            return;
        };
        // The requester may have gone: nothing to do then.
        let _ = self
            .swarm
            .behaviour_mut()
            .rr
            .send_response(channel, Frame::Message(response));
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        let now = now_ms();
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Rr(request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            })) => {
                let reply = ReplyId(self.next_reply);
                self.next_reply += 1;
                self.replies.insert(reply.0, channel);
                match request {
                    Frame::Message(r) => self.core().handle_request(now, peer, reply, r),
                    Frame::Malformed(code) => self.core().handle_malformed(reply, code),
                    Frame::Raw(_) => self.core().handle_malformed(reply, StatusCode::Decode),
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Rr(
                request_response::Event::InboundFailure { peer, error, .. },
            )) => debug!(%peer, "inbound request failed: {error}"),
            SwarmEvent::Behaviour(BehaviourEvent::Standard(request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            })) => self.on_standard(now, peer, request, channel),
            SwarmEvent::Behaviour(BehaviourEvent::Standard(
                request_response::Event::InboundFailure { peer, error, .. },
            )) => debug!(%peer, "inbound /rendezvous/1.0.0 request failed: {error}"),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event { peer, result, .. })) => {
                match result {
                    Ok(_) => {
                        self.core().handle_pong(&peer, now);
                        self.metrics.pongs.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        debug!(%peer, "ping failed: {e}");
                        self.ping_miss(&peer);
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } if !self.swarm.is_connected(&peer) => {
                debug!(%peer, "dial failed: {error}");
                self.ping_miss(&peer);
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                self.core().handle_connected(peer_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => self.core().handle_disconnected(&peer_id),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) if info.protocols.contains(&KAD_PROTOCOL) => {
                if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
                    for addr in &info.listen_addrs {
                        kad.add_address(&peer_id, addr.clone());
                    }
                }
                self.save_peer(peer_id, info.listen_addrs);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.on_kad(now, event),
            _ => {}
        }
    }

    /// A standard `/rendezvous/1.0.0` request: the core answers at once.
    fn on_standard(
        &mut self,
        now: u64,
        peer: PeerId,
        request: standard::Message,
        channel: ResponseChannel<standard::Message>,
    ) {
        let Some(request) = standard::to_request(request) else {
            debug!(%peer, "a /rendezvous/1.0.0 response sent as a request: dropped");
            return;
        };
        let answer = self.core().handle_standard(now, peer, request);
        let c = self.core().counters();
        self.metrics
            .standard_discovers
            .store(c.standard_discovers, Ordering::Relaxed);
        self.metrics
            .standard_registers_refused
            .store(c.standard_registers_refused, Ordering::Relaxed);
        if let Some(message) = standard::to_message(answer) {
            if let Some(rr) = self.swarm.behaviour_mut().standard.as_mut() {
                // The requester may have gone: nothing to do then.
                let _ = rr.send_response(channel, message);
            }
        }
    }

    /// The core logs the listing change, if any (`Output::ListingChanged`).
    fn ping_miss(&mut self, peer: &PeerId) {
        self.core().handle_ping_miss(peer);
        self.metrics.ping_misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Remembers another rendezvous node in the database (if there is
    /// one and what it says changed), so that a restart rejoins the DHT
    /// through it without `--bootstrap`.
    fn save_peer(&mut self, peer: PeerId, mut addrs: Vec<libp2p::Multiaddr>) {
        addrs.sort();
        addrs.dedup();
        let Some(db) = &self.db else { return };
        if addrs.is_empty() || self.saved_peers.get(&peer) == Some(&addrs) {
            return;
        }
        if self.saved_peers.len() >= crate::persist::MAX_KNOWN_PEERS
            && !self.saved_peers.contains_key(&peer)
        {
            return;
        }
        match db.save_peer(&peer, &addrs) {
            Ok(()) => {
                self.saved_peers.insert(peer, addrs);
            }
            Err(e) => warn!("saving rendezvous peer {peer}: {e}"),
        }
    }

    fn on_kad(&mut self, now: u64, event: kad::Event) {
        match event {
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::PutRecord {
                        source,
                        record: Some(record),
                        ..
                    },
            } => self.merge(now, &record, Some(source)),
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } => {
                if let kad::QueryResult::GetRecord(Ok(kad::GetRecordOk::FoundRecord(found))) =
                    &result
                {
                    self.merge(now, &found.record, found.peer);
                }
                if let kad::QueryResult::PutRecord(Err(e)) = &result {
                    debug!("replication incomplete: {e}");
                }
                // The core ends a lookup once a value verifies
                // (`Output::LookupDone`); the query's own end answers
                // whatever did.
                if step.last {
                    if let Some(quorum_key) = self.lookups.remove(&id) {
                        self.core().handle_lookup_done(now, quorum_key);
                    }
                }
            }
            _ => {}
        }
    }

    /// A value another node sent or served: the core re-verifies it, on
    /// the verification threads, within `from`'s budget.
    fn merge(&mut self, now: u64, record: &kad::Record, from: Option<PeerId>) {
        if let Err(e) = self
            .core()
            .handle_value(now, from, record.key.as_ref(), &record.value)
        {
            debug!(?from, "replicated value refused: {e}");
        }
    }
}
