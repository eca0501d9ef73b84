//! Per-sender budgets for values other nodes send (Kademlia PUTs and GET
//! answers): so much estimated verification work and so many bytes per
//! second, with a burst, as token buckets. A node that floods values
//! spends its own budget, not this node's cores (#13 item 1).

use std::collections::BTreeMap;

use libp2p_identity::PeerId;

/// A token bucket: `rate` tokens a second, holding at most `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bucket {
    tokens: u64,
    updated_ms: u64,
}

impl Bucket {
    fn full(burst: u64, now_ms: u64) -> Self {
        Self {
            tokens: burst,
            updated_ms: now_ms,
        }
    }

    fn refill(&mut self, now_ms: u64, rate: u64, burst: u64) {
        let elapsed = now_ms.saturating_sub(self.updated_ms);
        let earned = elapsed.saturating_mul(rate) / 1_000;
        if earned > 0 || self.tokens >= burst {
            self.tokens = self.tokens.saturating_add(earned).min(burst);
            self.updated_ms = now_ms;
        }
    }
}

/// Rates and bursts of a [`Budgets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetConfig {
    /// Estimated verification work a sender may cause, µs per second...
    pub work_us_per_sec: u64,
    /// ...banking at most this much.
    pub work_burst_us: u64,
    /// Bytes of values a sender may send per second...
    pub bytes_per_sec: u64,
    /// ...banking at most this many.
    pub burst_bytes: u64,
}

/// The buckets of every sender (`None`: values whose sender is unknown,
/// which share one budget).
#[derive(Debug)]
pub struct Budgets {
    config: BudgetConfig,
    senders: BTreeMap<Option<PeerId>, (Bucket, Bucket)>,
}

/// Most senders tracked; beyond, new senders share the `None` budget.
const MAX_SENDERS: usize = 65_536;

impl Budgets {
    /// Empty: every sender starts with full buckets.
    pub fn new(config: BudgetConfig) -> Self {
        Self {
            config,
            senders: BTreeMap::new(),
        }
    }

    fn buckets(&mut self, now_ms: u64, sender: Option<PeerId>) -> &mut (Bucket, Bucket) {
        let c = self.config;
        let sender = if self.senders.len() >= MAX_SENDERS && !self.senders.contains_key(&sender) {
            None
        } else {
            sender
        };
        let buckets = self.senders.entry(sender).or_insert((
            Bucket::full(c.work_burst_us, now_ms),
            Bucket::full(c.burst_bytes, now_ms),
        ));
        buckets.0.refill(now_ms, c.work_us_per_sec, c.work_burst_us);
        buckets.1.refill(now_ms, c.bytes_per_sec, c.burst_bytes);
        buckets
    }

    /// Takes `bytes` from the sender's byte budget, if it covers them.
    pub fn take_bytes(&mut self, now_ms: u64, sender: Option<PeerId>, bytes: u64) -> bool {
        let (_, b) = self.buckets(now_ms, sender);
        if b.tokens < bytes {
            return false;
        }
        b.tokens -= bytes;
        true
    }

    /// The verification work the sender may still cause now (µs).
    pub fn work_left(&mut self, now_ms: u64, sender: Option<PeerId>) -> u64 {
        self.buckets(now_ms, sender).0.tokens
    }

    /// Takes `work_us` from the sender's work budget (at most what is left).
    pub fn take_work(&mut self, now_ms: u64, sender: Option<PeerId>, work_us: u64) {
        let (w, _) = self.buckets(now_ms, sender);
        w.tokens = w.tokens.saturating_sub(work_us);
    }

    /// Forgets senders whose buckets are full again (they are as good as
    /// new), so the map holds only recent senders.
    pub fn sweep(&mut self, now_ms: u64) {
        let c = self.config;
        self.senders.retain(|_, (w, b)| {
            w.refill(now_ms, c.work_us_per_sec, c.work_burst_us);
            b.refill(now_ms, c.bytes_per_sec, c.burst_bytes);
            w.tokens < c.work_burst_us || b.tokens < c.burst_bytes
        });
    }

    /// Senders tracked.
    pub fn len(&self) -> usize {
        self.senders.len()
    }

    /// Whether no sender is tracked.
    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }
}

/// A per-peer request rate: `per_sec` requests a second, banking at most
/// `burst`, as one token bucket per peer (discovers, #15: answering one
/// costs the node encoding and encryption, so a flood of them is paid
/// for by its sender's budget, not by every client's latency). Peers
/// beyond the first 65,536 tracked share one bucket.
#[derive(Debug)]
pub struct RequestRate {
    per_sec: u64,
    burst: u64,
    peers: BTreeMap<Option<PeerId>, Bucket>,
}

impl RequestRate {
    /// `per_sec` requests a second per peer, `burst` at once; a `per_sec`
    /// of 0 admits everything.
    pub fn new(per_sec: u64, burst: u64) -> Self {
        Self {
            per_sec,
            burst: burst.max(1),
            peers: BTreeMap::new(),
        }
    }

    /// Whether `peer` may make one more request now (counted if so).
    pub fn admit(&mut self, now_ms: u64, peer: PeerId) -> bool {
        if self.per_sec == 0 {
            return true;
        }
        let key = if self.peers.len() >= MAX_SENDERS && !self.peers.contains_key(&Some(peer)) {
            None
        } else {
            Some(peer)
        };
        let (per_sec, burst) = (self.per_sec, self.burst);
        let bucket = self
            .peers
            .entry(key)
            .or_insert_with(|| Bucket::full(burst, now_ms));
        bucket.refill(now_ms, per_sec, burst);
        if bucket.tokens == 0 {
            return false;
        }
        bucket.tokens -= 1;
        true
    }

    /// Forgets peers whose buckets are full again.
    pub fn sweep(&mut self, now_ms: u64) {
        let (per_sec, burst) = (self.per_sec, self.burst);
        self.peers.retain(|_, b| {
            b.refill(now_ms, per_sec, burst);
            b.tokens < burst
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_spends_its_request_burst_then_earns_at_its_rate() {
        let mut r = RequestRate::new(10, 3);
        let (a, b) = (PeerId::random(), PeerId::random());
        assert!((0..3).all(|_| r.admit(0, a)));
        assert!(!r.admit(0, a), "over the burst");
        assert!(r.admit(0, b), "another peer has its own budget");
        assert!(!r.admit(99, a), "1 token earned after 100 ms, not before");
        assert!(r.admit(100, a));
        assert!(!r.admit(100, a));
        r.sweep(10_000);
        assert!(r.is_empty(), "full buckets are forgotten");
        let mut off = RequestRate::new(0, 0);
        assert!((0..10_000).all(|_| off.admit(0, a)));
    }

    const C: BudgetConfig = BudgetConfig {
        work_us_per_sec: 1_000,
        work_burst_us: 2_000,
        bytes_per_sec: 100,
        burst_bytes: 200,
    };

    #[test]
    fn a_sender_spends_its_burst_then_earns_at_its_rate() {
        let mut b = Budgets::new(C);
        let p = Some(PeerId::random());
        assert_eq!(b.work_left(0, p), 2_000);
        b.take_work(0, p, 2_000);
        assert_eq!(b.work_left(0, p), 0);
        assert_eq!(b.work_left(500, p), 500);
        assert_eq!(b.work_left(10_000, p), 2_000, "never above the burst");
        assert!(b.take_bytes(0, p, 200));
        assert!(!b.take_bytes(0, p, 1));
        assert!(b.take_bytes(1_000, p, 100));
    }

    #[test]
    fn senders_have_their_own_budgets_and_are_forgotten_when_full() {
        let mut b = Budgets::new(C);
        let (p, q) = (Some(PeerId::random()), Some(PeerId::random()));
        b.take_work(0, p, 2_000);
        assert_eq!(b.work_left(0, q), 2_000);
        b.sweep(0);
        assert_eq!(b.len(), 1, "q is full: forgotten");
        b.sweep(2_000);
        assert!(b.is_empty());
    }

    #[test]
    fn refills_of_a_few_ms_are_not_lost_to_rounding() {
        let mut b = Budgets::new(C);
        let p = Some(PeerId::random());
        b.take_bytes(0, p, 200);
        // 100 bytes/s: 1 ms earns 0.1 byte; asking every ms must not
        // reset the clock and lose it.
        for t in 1..=1_000 {
            let _ = b.take_bytes(t, p, 0);
        }
        assert!(b.take_bytes(1_000, p, 100));
    }
}
