//! What a member is configured with.

use libp2p_identity::Keypair;
use rendezvous_proto::{Limits, Multiaddr, PeerId};

use crate::retry::Backoff;

/// The quorum as every member knows it: who is in it (index i is
/// `members[i - 1]`), its threshold and its kind label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumSpec {
    /// Members' PeerIds, by index - 1.
    pub members: Vec<PeerId>,
    /// Shares needed to sign for the quorum.
    pub threshold: u32,
    /// Kind label of the namespace (e.g. `farmer`).
    pub kind: Option<String>,
}

impl QuorumSpec {
    /// Number of members.
    pub fn n(&self) -> u32 {
        self.members.len() as u32
    }

    /// The index (1-based) of a PeerId, if it is a member.
    pub fn index_of(&self, peer: &PeerId) -> Option<u32> {
        self.members
            .iter()
            .position(|p| p == peer)
            .map(|i| i as u32 + 1)
    }

    /// The PeerId of member `index` (1-based).
    pub fn peer(&self, index: u32) -> Option<PeerId> {
        let i = usize::try_from(index.checked_sub(1)?).ok()?;
        self.members.get(i).copied()
    }
}

/// How a member runs. Times are in milliseconds.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    /// The quorum.
    pub quorum: QuorumSpec,
    /// This member's index (1-based).
    pub index: u32,
    /// The epoch of the member's key share: 0 for a share from the DKG,
    /// the next one for each reshare (the quorum key stays, the key set
    /// and members may change). The namespace records it coordinates and
    /// the seats it signs are of this epoch, and it co-signs or adopts a
    /// namespace record of this epoch only (an older one is refused
    /// `StaleEpoch`, a newer one `EpochMismatch`). Kept beside the share
    /// (`key_share.json`'s `epoch` in `rdht quorum`).
    pub epoch: u64,
    /// This member's libp2p identity: its PeerId is what its seat names,
    /// and its key signs the envelope of every refresh.
    pub identity: Keypair,
    /// Addresses its peer records carry (cut to the protocol's limits).
    pub addrs: Vec<Multiaddr>,
    /// How many rendezvous nodes it registers at: they are
    /// [`crate::Peer::Rendezvous`] `0..rendezvous`.
    pub rendezvous: usize,
    /// Lifetime of its peer records; they are refreshed at half of it.
    pub peer_ttl_ms: u64,
    /// Lifetime of the namespace records it coordinates; the next
    /// coordinator renews the record at half of it.
    pub namespace_ttl_ms: u64,
    /// Without a key share: how long to wait for every fellow member to be
    /// connected before the DKG starts anyway.
    pub dkg_wait_ms: u64,
    /// How long a member waits for the coordinator before it is its
    /// turn: member of rank r (its position in the coordinator order)
    /// takes over `r` times this after the namespace is due.
    pub takeover_ms: u64,
    /// How long a coordinator collects signature shares before it gives
    /// the round up.
    pub cosign_timeout_ms: u64,
    /// How long a coordinator waits for the rendezvous nodes to answer its
    /// namespace registration before it tells the members anyway.
    pub ready_wait_ms: u64,
    /// Retry timing for transient failures.
    pub backoff: Backoff,
    /// The member gives up (an error) once no rendezvous node has held
    /// an accepted registration of it for this long.
    pub give_up_after_ms: u64,
    /// The protocol's limits (addresses, TTLs).
    pub limits: Limits,
}

impl MemberConfig {
    /// This member's PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.identity.public().to_peer_id()
    }

    /// A configuration with the defaults: epoch 0 (a key share from the
    /// DKG), records live 2 h, DKG waits 60 s
    /// for the others, takeovers after 5 s, retries from 500 ms up to 30 s,
    /// and the member gives up after 10 minutes without any registration.
    pub fn new(quorum: QuorumSpec, index: u32, identity: Keypair, rendezvous: usize) -> Self {
        Self {
            quorum,
            index,
            epoch: 0,
            identity,
            addrs: Vec::new(),
            rendezvous,
            peer_ttl_ms: 2 * 3_600_000,
            namespace_ttl_ms: 2 * 3_600_000,
            dkg_wait_ms: 60_000,
            takeover_ms: 5_000,
            cosign_timeout_ms: 10_000,
            ready_wait_ms: 2_000,
            backoff: Backoff::DEFAULT,
            give_up_after_ms: 600_000,
            limits: Limits::DEFAULT,
        }
    }
}
