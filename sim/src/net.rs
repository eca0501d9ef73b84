//! The simulated network: latency, loss, partitions. Crashes are the
//! actors' own state (a crashed actor ignores what reaches it).
//!
//! Every draw comes from the world RNG, in event order, so the network's
//! behaviour is part of the seeded run.

use std::collections::BTreeMap;

use rand_chacha::ChaCha20Rng;
use rand_core::RngCore;

use crate::msg::Addr;

/// How a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Over a long-lived stream between quorum members (DKG, co-signing):
    /// a lost segment is retransmitted, so loss only adds delay.
    Stream,
    /// A request, an answer or a ping: a lost one is gone, and the sender
    /// must notice (retry, or count a missed ping).
    Request,
}

/// Network parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetConfig {
    /// Smallest one-way latency (ms).
    pub latency_min_ms: u64,
    /// Largest one-way latency of the body of the distribution (ms).
    pub latency_max_ms: u64,
    /// Probability that a message takes the slow tail (up to 4x the maximum more).
    pub tail_probability: f64,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Retransmission delay of a lost stream segment (ms).
    pub retransmit_ms: u64,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            latency_min_ms: 5,
            latency_max_ms: 60,
            tail_probability: 0.02,
            loss: 0.0,
            retransmit_ms: 200,
        }
    }
}

/// Why a message was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// Lost on the way.
    Loss,
    /// The two ends are on different sides of a partition.
    Partition,
}

/// The network's state: its parameters and the current partition.
#[derive(Debug, Clone)]
pub struct Net {
    /// Parameters.
    pub config: NetConfig,
    /// Side of each partitioned endpoint while a split is in force.
    sides: BTreeMap<Addr, u8>,
    split: bool,
}

/// A uniform draw in `[0, 1)` (53 bits).
pub fn unit(rng: &mut ChaCha20Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A uniform draw in `[lo, hi]`.
pub fn between(rng: &mut ChaCha20Rng, lo: u64, hi: u64) -> u64 {
    if hi <= lo {
        lo
    } else {
        lo + rng.next_u64() % (hi - lo + 1)
    }
}

impl Net {
    /// A network with no partition.
    pub fn new(config: NetConfig) -> Self {
        Self {
            config,
            sides: BTreeMap::new(),
            split: false,
        }
    }

    /// Splits the network: endpoints on different sides cannot talk.
    /// Quorum members talk to each other whatever their sides (the split
    /// is of the rendezvous network and of who reaches which part of it).
    pub fn partition(&mut self, sides: BTreeMap<Addr, u8>) {
        self.sides = sides;
        self.split = true;
    }

    /// Heals the split.
    pub fn heal(&mut self) {
        self.split = false;
    }

    /// Whether a split is in force.
    pub fn is_split(&self) -> bool {
        self.split
    }

    /// The side of an endpoint, if it has one.
    pub fn side(&self, addr: Addr) -> Option<u8> {
        self.sides.get(&addr).copied()
    }

    /// Whether `a` and `b` can currently talk.
    pub fn reachable(&self, a: Addr, b: Addr) -> bool {
        if !self.split || a == b {
            return true;
        }
        if matches!(a, Addr::Member(_)) && matches!(b, Addr::Member(_)) {
            return true;
        }
        match (self.sides.get(&a), self.sides.get(&b)) {
            (Some(x), Some(y)) => x == y,
            _ => true,
        }
    }

    /// Decides a message's fate: its delay, or why it is dropped.
    pub fn route(
        &self,
        rng: &mut ChaCha20Rng,
        from: Addr,
        to: Addr,
        class: Class,
    ) -> Result<u64, Drop> {
        if from == to {
            return Ok(0);
        }
        if !self.reachable(from, to) {
            return Err(Drop::Partition);
        }
        let c = &self.config;
        let mut delay = between(rng, c.latency_min_ms, c.latency_max_ms);
        if c.tail_probability > 0.0 && unit(rng) < c.tail_probability {
            delay += between(rng, 0, 4 * c.latency_max_ms);
        }
        if c.loss > 0.0 {
            match class {
                Class::Request => {
                    if unit(rng) < c.loss {
                        return Err(Drop::Loss);
                    }
                }
                Class::Stream => {
                    // Retransmit until a copy gets through (bounded so a
                    // loss rate of 1 cannot loop forever).
                    let mut tries = 0;
                    while tries < 16 && unit(rng) < c.loss {
                        delay += c.retransmit_ms;
                        tries += 1;
                    }
                }
            }
        }
        Ok(delay)
    }
}
