//! The seat (protocol version 2): member `index`'s signature share over
//! (namespace, epoch, index, PeerId). It says "the holder of share `index`
//! of this quorum sits at this PeerId for this epoch", and it stays valid
//! for the whole epoch: a rendezvous node verifies a seat once (one
//! pairing) and, while the seat stays the same, checks only the Ed25519
//! envelope of each refresh ([`crate::envelope`]).
//!
//! ```text
//! Seat =
//!   version      u8 = 0x02
//!   quorum_key   [48]     the namespace (C_0)
//!   epoch        u64      the namespace epoch
//!   index        u32      member index i (1-based)
//!   peer_id      bytes8   <= 64 bytes, canonical PeerId
//!   signature    [96]     member i's signature share over the signing bytes
//! signing_bytes = bytes8("rdht/seat/v2") || everything above but the signature
//! seat_hash     = sha256(encoding)   (signature included)
//! ```

use libp2p_identity::PeerId;
use sha2::{Digest, Sha256};

use crate::error::DecodeError;
use crate::records::{decode_peer_id, record_codec, QuorumKey, G1_BYTES, G2_BYTES};
use crate::wire::{Reader, Writer};

/// Version byte of every version-2 encoding.
pub const VERSION_2: u8 = 2;
/// Domain separation tag of a seat's signing bytes.
pub const SEAT_DST: &[u8] = b"rdht/seat/v2";

/// The SHA-256 of a seat's encoding: what an envelope names, and what a
/// node remembers of a seat it verified.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct SeatHash(pub [u8; 32]);

/// Member `index`'s claim, signed with its key share, to sit at `peer_id`
/// in `epoch` of the namespace `quorum_key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seat {
    /// The namespace (quorum key).
    pub quorum_key: QuorumKey,
    /// The namespace epoch.
    pub epoch: u64,
    /// The member index (1-based).
    pub index: u32,
    /// The member's libp2p identity.
    pub peer_id: PeerId,
    /// Member `index`'s signature share over [`Seat::signing_bytes`].
    pub signature: [u8; G2_BYTES],
}

impl Seat {
    /// Builds and signs the seat of member `share.index()`.
    pub fn sign(
        quorum_key: QuorumKey,
        epoch: u64,
        peer_id: PeerId,
        share: &dkg::SecretKeyShare,
    ) -> Self {
        let mut seat = Self {
            quorum_key,
            epoch,
            index: share.index(),
            peer_id,
            signature: [0; G2_BYTES],
        };
        seat.signature = share.sign(&seat.signing_bytes()).signature.to_bytes();
        seat
    }

    fn encode_body(&self, w: &mut Writer) {
        w.u8(VERSION_2);
        w.raw(&self.quorum_key.0);
        w.u64(self.epoch);
        w.u32(self.index);
        w.bytes8(&self.peer_id.to_bytes());
    }

    /// The seat's hash (over its whole encoding, signature included).
    pub fn hash(&self) -> SeatHash {
        SeatHash(Sha256::digest(self.encode()).into())
    }

    /// Decodes one seat from `r`. Checks structure only (the signature
    /// stays raw): validation does the rest.
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.expect_version(VERSION_2)?;
        let quorum_key = QuorumKey(r.array::<G1_BYTES>()?);
        let epoch = r.u64()?;
        let index = r.u32()?;
        let peer_id = decode_peer_id(r)?;
        let signature = r.array::<G2_BYTES>()?;
        Ok(Self {
            quorum_key,
            epoch,
            index,
            peer_id,
            signature,
        })
    }
}

record_codec!(Seat, SEAT_DST, "the signature share");
