//! Where a namespace lives: a faithful model of Kademlia placement.
//!
//! Node ids are `sha256("rdht/sim/node" || seed || i)`; a namespace's
//! record is replicated on the `k` nodes whose ids are closest to its DHT
//! key (`dht::namespace_key`) by XOR distance, which is where libp2p-kad's
//! iterative lookups converge in a healthy network. Routing itself is not
//! simulated (the node's integration tests exercise libp2p-kad): a lookup
//! from any node ends at the same `k` replicas.

use sha2::{Digest, Sha256};

/// A node id in the 256-bit key space.
pub type NodeId = [u8; 32];

/// The id of rendezvous node `i` in a run seeded with `seed`.
pub fn node_id(seed: u64, i: u32) -> NodeId {
    let mut h = Sha256::new();
    h.update(b"rdht/sim/node");
    h.update(seed.to_be_bytes());
    h.update(i.to_be_bytes());
    h.finalize().into()
}

/// Every rendezvous node's id, by node index.
#[derive(Debug, Clone)]
pub struct Placement {
    ids: Vec<NodeId>,
}

impl Placement {
    /// Ids for `count` nodes.
    pub fn new(seed: u64, count: u32) -> Self {
        Self {
            ids: (0..count).map(|i| node_id(seed, i)).collect(),
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there is no node.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The `k` nodes closest to `key` by XOR distance, closest first.
    /// Ties are impossible (ids are distinct), so the order is total.
    pub fn closest(&self, key: &[u8; 32], k: usize) -> Vec<u32> {
        let mut by_distance: Vec<(NodeId, u32)> = self
            .ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let mut d = [0u8; 32];
                for (out, (a, b)) in d.iter_mut().zip(id.iter().zip(key.iter())) {
                    *out = a ^ b;
                }
                (d, i as u32)
            })
            .collect();
        let k = k.min(by_distance.len());
        if k < by_distance.len() {
            by_distance.select_nth_unstable(k);
            by_distance.truncate(k);
        }
        by_distance.sort_unstable();
        by_distance.into_iter().map(|(_, i)| i).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_is_sorted_by_xor_distance() {
        let p = Placement::new(7, 50);
        let key = [0x5a; 32];
        let picked = p.closest(&key, 5);
        assert_eq!(picked.len(), 5);
        let dist = |i: u32| {
            let id = node_id(7, i);
            let mut d = [0u8; 32];
            for j in 0..32 {
                d[j] = id[j] ^ key[j];
            }
            d
        };
        for w in picked.windows(2) {
            assert!(dist(w[0]) < dist(w[1]));
        }
        let worst = dist(picked[4]);
        for i in 0..50 {
            if !picked.contains(&i) {
                assert!(dist(i) > worst);
            }
        }
    }
}
