//! Ready-made quorums and records for tests, benchmarks, fuzz seeds, test
//! vectors and the simulator's fixtures.
//!
//! A [`TestQuorum`] is dealt by a trusted dealer from a seed, which the
//! real system never does (it runs the DKG): it exists so that code above
//! the DKG can be exercised cheaply and reproducibly.

use dkg::{KeyShare, Polynomial, SecretKeyShare, SignatureShare};
use libp2p_identity::{Keypair, PeerId};
use multiaddr::Multiaddr;
use rand_core::{CryptoRng, RngCore};

use crate::handover::HandoverRecord;
use crate::records::{NamespaceRecord, PeerRecord, QuorumKey, G2_BYTES};

/// A quorum dealt from an RNG: key shares and member identities.
pub struct TestQuorum {
    /// Every member's key share, index order (entry `i - 1` is member `i`).
    pub shares: Vec<KeyShare>,
    /// Every member's libp2p identity, index order.
    pub identities: Vec<Keypair>,
}

impl TestQuorum {
    /// Deals a quorum of `n` members with the given threshold.
    pub fn deal<R: RngCore + CryptoRng>(n: u32, threshold: u32, rng: &mut R) -> Self {
        let poly = Polynomial::random(threshold, rng);
        let Some(set) = poly.commitments() else {
            unreachable!("random polynomials have non-zero coefficients")
        };
        let shares = (1..=n)
            .filter_map(|i| {
                let secret = SecretKeyShare::new(i, poly.evaluate(i)).ok()?;
                KeyShare::new(n, set.clone(), secret).ok()
            })
            .collect();
        let identities = (0..n)
            .map(|_| {
                let mut seed = [0u8; 32];
                rng.fill_bytes(&mut seed);
                Keypair::ed25519_from_bytes(seed).unwrap_or_else(|_| Keypair::generate_ed25519())
            })
            .collect();
        Self { shares, identities }
    }

    /// Quorum size.
    pub fn n(&self) -> u32 {
        self.shares.len() as u32
    }

    /// The namespace's name.
    pub fn quorum_key(&self) -> QuorumKey {
        match self.shares.first() {
            Some(s) => QuorumKey::from(s.quorum_key()),
            None => QuorumKey([0; 48]),
        }
    }

    /// Member `index`'s PeerId.
    pub fn peer_id(&self, index: u32) -> PeerId {
        self.identities[index as usize - 1].public().to_peer_id()
    }

    /// An unsigned namespace record for this quorum, listing its members
    /// (signature all zero).
    pub fn namespace_unsigned(
        &self,
        epoch: u64,
        kind: Option<&str>,
        issued_at_ms: u64,
        expires_at_ms: u64,
    ) -> NamespaceRecord {
        let set = &self.shares[0].public_key_set;
        NamespaceRecord {
            commitments: set.commitments().iter().map(|c| c.to_bytes()).collect(),
            n: self.n(),
            epoch,
            kind: kind.map(str::to_owned),
            members: Some((1..=self.n()).map(|i| self.peer_id(i)).collect()),
            issued_at_ms,
            expires_at_ms,
            signature: [0; G2_BYTES],
        }
    }

    /// A namespace record listing the members, signed by the first
    /// `threshold` of them.
    pub fn namespace(
        &self,
        epoch: u64,
        kind: Option<&str>,
        issued_at_ms: u64,
        expires_at_ms: u64,
    ) -> NamespaceRecord {
        let mut record = self.namespace_unsigned(epoch, kind, issued_at_ms, expires_at_ms);
        let threshold = self.shares[0].threshold();
        let message = record.signing_bytes();
        let shares: Vec<SignatureShare> = self.shares[..threshold as usize]
            .iter()
            .map(|s| s.secret.sign(&message))
            .collect();
        if let Ok(sig) = dkg::combine_signatures(threshold, self.n(), &shares) {
            record.signature = sig.to_bytes();
        }
        record
    }

    /// A handover from this quorum's key to `new_quorum_key`, signed by
    /// the first `threshold` members (their shares combined: the same
    /// signature a real quorum's signing ceremony produces).
    pub fn handover(
        &self,
        new_quorum_key: QuorumKey,
        issued_at_ms: u64,
        expires_at_ms: u64,
    ) -> HandoverRecord {
        let mut record = HandoverRecord {
            old_quorum_key: self.quorum_key(),
            new_quorum_key,
            issued_at_ms,
            expires_at_ms,
            signature: [0; G2_BYTES],
        };
        record.signature = self.threshold_sign(&record.signing_bytes());
        record
    }

    /// The quorum's combined signature over `message` (the first
    /// `threshold` members' shares).
    pub fn threshold_sign(&self, message: &[u8]) -> [u8; G2_BYTES] {
        let threshold = self.shares[0].threshold();
        let shares: Vec<SignatureShare> = self.shares[..threshold as usize]
            .iter()
            .map(|s| s.secret.sign(message))
            .collect();
        dkg::combine_signatures(threshold, self.n(), &shares)
            .map(|sig| sig.to_bytes())
            .unwrap_or([0; G2_BYTES])
    }

    /// Member `index`'s seat for `epoch` (protocol version 2).
    pub fn seat(&self, index: u32, epoch: u64) -> crate::seat::Seat {
        crate::seat::Seat::sign(
            self.quorum_key(),
            epoch,
            self.peer_id(index),
            &self.shares[index as usize - 1].secret,
        )
    }

    /// Member `index`'s peer record for `epoch`: its seat, and an
    /// envelope signed with its own identity.
    pub fn peer(&self, index: u32, epoch: u64, seq: u64, expires_at_ms: u64) -> PeerRecord {
        let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", 4000 + index)
            .parse()
            .unwrap_or_else(|_| Multiaddr::empty());
        PeerRecord::sign(
            self.seat(index, epoch),
            vec![addr],
            seq,
            expires_at_ms,
            &self.identities[index as usize - 1],
        )
    }

    /// Member `index`'s record with its seat signed by `share` instead of
    /// its own (the PeerId and envelope are member `index`'s): what an
    /// outsider or a member of another quorum can make.
    pub fn peer_seated_by(
        &self,
        index: u32,
        epoch: u64,
        seq: u64,
        expires_at_ms: u64,
        share: &SecretKeyShare,
    ) -> PeerRecord {
        let mut seat = self.seat(index, epoch);
        seat.signature = share.sign(&seat.signing_bytes()).signature.to_bytes();
        PeerRecord::sign(
            seat,
            vec![],
            seq,
            expires_at_ms,
            &self.identities[index as usize - 1],
        )
    }
}

/// `record` with its seq changed after signing, in the envelope and in
/// the standard record alike (so the two still agree): neither signature
/// verifies any more (`InvalidEnvelopeSignature`).
pub fn with_seq_unsigned(mut record: PeerRecord, seq: u64) -> PeerRecord {
    let mut payload = record.envelope.payload.clone();
    payload.seq = seq;
    record.envelope.replace_payload_unsigned(payload);
    record.standard = record
        .standard
        .map(|standard| Box::new(standard.with_seq_unsigned(seq)));
    record
}

/// A quorum dealt for load generation, whose members are identities the
/// caller already has (one identity may sit in many such quorums).
///
/// Cheaper than [`TestQuorum`] where thousands of quorums are needed: it
/// keeps no [`KeyShare`] (whose consistency check costs a polynomial
/// evaluation in G1 per member) and signs its namespace with the dealt
/// secret itself, which gives the very signature any `threshold` of the
/// members' shares combine to.
pub struct BulkQuorum {
    polynomial: Polynomial,
    record: NamespaceRecord,
    quorum_key: QuorumKey,
}

impl BulkQuorum {
    /// Deals a quorum of `members.len()` members (`members[i - 1]` is
    /// member `i`), and its namespace record for `epoch`. `None` if
    /// `threshold` is 0 or above the member count.
    pub fn deal<R: RngCore + CryptoRng>(
        members: &[PeerId],
        threshold: u32,
        epoch: u64,
        issued_at_ms: u64,
        expires_at_ms: u64,
        rng: &mut R,
    ) -> Option<Self> {
        let n = u32::try_from(members.len()).ok()?;
        if threshold == 0 || threshold > n {
            return None;
        }
        let polynomial = Polynomial::random(threshold, rng);
        let set = polynomial.commitments()?;
        let quorum_key = QuorumKey::from(*set.commitments().first()?);
        let mut record = NamespaceRecord {
            commitments: set.commitments().iter().map(|c| c.to_bytes()).collect(),
            n,
            epoch,
            kind: Some("bench".to_owned()),
            members: Some(members.to_vec()),
            issued_at_ms,
            expires_at_ms,
            signature: [0; G2_BYTES],
        };
        // The dealt secret f(0) as a "share": its signature is the
        // quorum's signature (the index plays no part in signing).
        let secret = SecretKeyShare::new(1, polynomial.secret()).ok()?;
        record.signature = secret.sign(&record.signing_bytes()).signature.to_bytes();
        Some(Self {
            polynomial,
            record,
            quorum_key,
        })
    }

    /// The quorum's signed namespace record.
    pub fn namespace(&self) -> &NamespaceRecord {
        &self.record
    }

    /// The namespace's name.
    pub fn quorum_key(&self) -> QuorumKey {
        self.quorum_key
    }

    /// Member `index`'s record: its seat for the namespace's epoch, and an
    /// envelope signed by `identity` (which must be member `index`'s).
    /// `None` for an index outside 1..=n.
    pub fn peer(
        &self,
        index: u32,
        identity: &Keypair,
        seq: u64,
        expires_at_ms: u64,
    ) -> Option<PeerRecord> {
        if index == 0 || index > self.record.n {
            return None;
        }
        let share = SecretKeyShare::new(index, self.polynomial.evaluate(index)).ok()?;
        let seat = crate::seat::Seat::sign(
            self.quorum_key,
            self.record.epoch,
            identity.public().to_peer_id(),
            &share,
        );
        let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", 4000 + index)
            .parse()
            .unwrap_or_else(|_| Multiaddr::empty());
        Some(PeerRecord::sign(
            seat,
            vec![addr],
            seq,
            expires_at_ms,
            identity,
        ))
    }
}
