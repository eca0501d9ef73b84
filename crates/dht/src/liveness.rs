//! Liveness bookkeeping, sans-IO: which peer is due a ping, what a pong or a
//! miss does, when a peer becomes unreachable.
//!
//! Tracked per PeerId (one ping answers for every namespace the peer is
//! registered in). Each node decides on its own: nothing another node says
//! can mark a peer unreachable here, and only a ping this node asked for
//! (a due ping, [`Liveness::due_pings`]) can count as a miss: a failure
//! reported for a ping nobody here was waiting for changes nothing, so
//! misses come at most once per interval. An unreachable peer is pinged
//! ever less often (the wait doubles per miss, up to
//! `LivenessConfig::max_backoff_ms`) until it answers or registers anew.

use std::collections::{BTreeMap, BTreeSet};

use libp2p_identity::PeerId;
use rand_core::RngCore;
use rendezvous_proto::{Multiaddr, QuorumKey};

use crate::config::LivenessConfig;

/// A ping the driver should send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingTarget {
    /// Who to ping (over a connection authenticated as this PeerId).
    pub peer_id: PeerId,
    /// Where it said it listens (from its latest record).
    pub addrs: Vec<Multiaddr>,
    /// Its previous ping failed or went unanswered: a connection to it
    /// that is still open is presumably dead (packets dropped silently
    /// keep a TCP connection open for tens of seconds), so the check
    /// should go over a new one.
    pub after_miss: bool,
}

/// What a ping outcome changed, so the store can update what it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing visible changed.
    None,
    /// The peer answered again after being unreachable.
    BackAlive,
    /// The peer missed its last allowed ping.
    BecameUnreachable,
}

#[derive(Debug, Clone)]
struct PeerState {
    /// Usually one entry: a sorted `Vec` costs ~50 bytes where a one-entry
    /// `BTreeSet` allocates a whole ~600-byte node.
    registrations: Vec<(QuorumKey, u32)>,
    addrs: Vec<Multiaddr>,
    last_seen_ms: Option<u64>,
    misses: u32,
    unreachable: bool,
    next_ping_ms: u64,
    /// A ping was sent and neither a pong nor a miss came back yet.
    awaiting: bool,
}

/// Per-peer liveness state and the ping schedule.
#[derive(Debug, Clone)]
pub struct Liveness {
    config: LivenessConfig,
    peers: BTreeMap<PeerId, PeerState>,
    schedule: BTreeSet<(u64, PeerId)>,
}

impl Liveness {
    /// Empty bookkeeping.
    pub fn new(config: LivenessConfig) -> Self {
        Self {
            config,
            peers: BTreeMap::new(),
            schedule: BTreeSet::new(),
        }
    }

    /// The interval with +-10% jitter.
    fn jittered<R: RngCore>(&self, rng: &mut R) -> u64 {
        let base = self.config.ping_interval_ms.max(1);
        let spread = base / 5;
        let offset = if spread == 0 {
            0
        } else {
            rng.next_u64() % (spread + 1)
        };
        base - base / 10 + offset
    }

    /// How long until the next ping of `peer_id`: one jittered interval,
    /// or while it is unreachable and past its `steady_retries`, that
    /// doubled for every further miss, at most `max_backoff_ms`.
    fn wait_after<R: RngCore>(&self, peer_id: &PeerId, rng: &mut R) -> u64 {
        let interval = self.jittered(rng);
        let Some(state) = self.peers.get(peer_id).filter(|s| s.unreachable) else {
            return interval;
        };
        let steady = self
            .config
            .max_misses
            .max(1)
            .saturating_add(self.config.steady_retries);
        if state.misses < steady {
            return interval;
        }
        let doublings = state
            .misses
            .saturating_sub(steady)
            .saturating_add(1)
            .min(32);
        interval
            .saturating_mul(1u64 << doublings)
            .min(self.config.max_backoff_ms.max(interval))
    }

    fn reschedule(&mut self, peer_id: &PeerId, at: u64) {
        if let Some(state) = self.peers.get_mut(peer_id) {
            self.schedule.remove(&(state.next_ping_ms, *peer_id));
            state.next_ping_ms = at;
            self.schedule.insert((at, *peer_id));
        }
    }

    /// Records that `peer_id` holds the registration `(quorum_key, index)`
    /// with these addresses. A peer seen for the first time, or one that
    /// registered anew after being unreachable, is pinged at once (after a
    /// jittered fraction of the interval) and counts as reachable until
    /// it misses: [`Transition::BackAlive`] if it was unreachable.
    pub fn add<R: RngCore>(
        &mut self,
        peer_id: PeerId,
        registration: (QuorumKey, u32),
        addrs: Vec<Multiaddr>,
        now_ms: u64,
        rng: &mut R,
    ) -> Transition {
        let first_ping = now_ms + self.jittered(rng) / 10;
        match self.peers.get_mut(&peer_id) {
            Some(state) => {
                if let Err(at) = state.registrations.binary_search(&registration) {
                    state.registrations.insert(at, registration);
                }
                state.addrs = addrs;
                if state.unreachable {
                    state.unreachable = false;
                    state.misses = 0;
                    self.reschedule(&peer_id, first_ping);
                    return Transition::BackAlive;
                }
                Transition::None
            }
            None => {
                let registrations = vec![registration];
                self.peers.insert(
                    peer_id,
                    PeerState {
                        registrations,
                        addrs,
                        last_seen_ms: None,
                        misses: 0,
                        unreachable: false,
                        next_ping_ms: first_ping,
                        awaiting: false,
                    },
                );
                self.schedule.insert((first_ping, peer_id));
                Transition::None
            }
        }
    }

    /// Forgets one registration; a peer with none left is no longer pinged.
    pub fn remove(&mut self, peer_id: &PeerId, registration: &(QuorumKey, u32)) {
        let empty = match self.peers.get_mut(peer_id) {
            Some(state) => {
                state.registrations.retain(|r| r != registration);
                state.registrations.is_empty()
            }
            None => false,
        };
        if empty {
            if let Some(state) = self.peers.remove(peer_id) {
                self.schedule.remove(&(state.next_ping_ms, *peer_id));
            }
        }
    }

    /// Peers due a ping at `now`; each is rescheduled one jittered interval
    /// later. Its outcome arrives through [`Liveness::handle_pong`] or
    /// [`Liveness::handle_miss`]; a ping still unanswered when the next one
    /// is due counts as a miss here, so a driver that never hears back
    /// (a silent peer, a lost packet) needs no timer of its own. The
    /// transitions that happened are returned beside the targets.
    pub fn due_pings<R: RngCore>(
        &mut self,
        now_ms: u64,
        rng: &mut R,
    ) -> (Vec<PingTarget>, Vec<(PeerId, Transition)>) {
        let mut due = Vec::new();
        let mut transitions = Vec::new();
        while let Some(&(at, peer_id)) = self.schedule.first() {
            if at > now_ms {
                break;
            }
            let unanswered = self.peers.get(&peer_id).is_some_and(|s| s.awaiting);
            if unanswered {
                let t = self.handle_miss(&peer_id);
                if t != Transition::None {
                    transitions.push((peer_id, t));
                }
            }
            let next = now_ms + self.wait_after(&peer_id, rng);
            self.reschedule(&peer_id, next);
            if let Some(state) = self.peers.get_mut(&peer_id) {
                state.awaiting = true;
                due.push(PingTarget {
                    peer_id,
                    addrs: state.addrs.clone(),
                    after_miss: state.misses > 0,
                });
            }
        }
        (due, transitions)
    }

    /// When the next ping is due.
    pub fn next_ping_ms(&self) -> Option<u64> {
        self.schedule.first().map(|(at, _)| *at)
    }

    /// The peer answered a ping over an authenticated connection.
    pub fn handle_pong(&mut self, peer_id: &PeerId, now_ms: u64) -> Transition {
        let Some(state) = self.peers.get_mut(peer_id) else {
            return Transition::None;
        };
        state.last_seen_ms = Some(now_ms);
        state.misses = 0;
        state.awaiting = false;
        if state.unreachable {
            state.unreachable = false;
            Transition::BackAlive
        } else {
            Transition::None
        }
    }

    /// A ping failed (timeout, refused, or answered by another identity).
    /// It counts only if this node was waiting for that peer's answer to a
    /// due ping; anything else (a failure on a connection the node did not
    /// ping for liveness, a second failure in one interval) is ignored.
    pub fn handle_miss(&mut self, peer_id: &PeerId) -> Transition {
        let max = self.config.max_misses.max(1);
        let Some(state) = self.peers.get_mut(peer_id).filter(|s| s.awaiting) else {
            return Transition::None;
        };
        state.misses = state.misses.saturating_add(1);
        state.awaiting = false;
        if !state.unreachable && state.misses >= max {
            state.unreachable = true;
            Transition::BecameUnreachable
        } else {
            Transition::None
        }
    }

    /// Whether the peer is currently considered unreachable.
    pub fn is_unreachable(&self, peer_id: &PeerId) -> bool {
        self.peers.get(peer_id).is_some_and(|s| s.unreachable)
    }

    /// When the peer last answered a ping.
    pub fn last_seen_ms(&self, peer_id: &PeerId) -> Option<u64> {
        self.peers.get(peer_id).and_then(|s| s.last_seen_ms)
    }

    /// The registrations a peer holds.
    pub fn registrations(&self, peer_id: &PeerId) -> Vec<(QuorumKey, u32)> {
        self.peers
            .get(peer_id)
            .map(|s| s.registrations.clone())
            .unwrap_or_default()
    }

    /// Peers tracked.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer is tracked.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}
