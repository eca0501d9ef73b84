//! What attackers send. Attackers are passive on the receiving side (the
//! rendezvous counts its own verdicts); these functions build their
//! records. Everything an attacker signs is signed with a key it really
//! holds: its own fresh keys, a fake quorum dealt by
//! `rendezvous_proto::testkit::TestQuorum`, or shares of members it has
//! corrupted. Records it "captured" are ones rendezvous nodes serve to
//! anyone.

use blstrs::Scalar;
use dkg::{combine_signatures, KeyShare, SecretKeyShare, SignatureShare};
use ff::Field;
use libp2p_identity::{Keypair, PeerId};
use multiaddr::Multiaddr;
use rand_chacha::ChaCha20Rng;
use rand_core::RngCore;
use rendezvous_proto::seat::Seat;
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::{NamespaceRecord, PeerRecord, QuorumKey};

/// The address attackers advertise.
pub fn evil_addr() -> Multiaddr {
    "/ip4/6.6.6.6/tcp/666"
        .parse()
        .unwrap_or_else(|_| Multiaddr::empty())
}

/// A random secret share at `index` (a key nobody dealt).
pub fn fresh_share(index: u32, rng: &mut ChaCha20Rng) -> Option<SecretKeyShare> {
    SecretKeyShare::new(index, Scalar::random(rng)).ok()
}

/// A peer record for `quorum_key` at `share`'s index: a seat naming
/// `seated` signed with `share`, in an envelope signed by `signer` (an
/// attacker holds only its own identity keys, so `seated` is the signer's
/// PeerId unless it is stealing someone else's).
pub fn peer_record(
    quorum_key: QuorumKey,
    epoch: u64,
    seated: PeerId,
    signer: &Keypair,
    seq: u64,
    expires_at_ms: u64,
    share: &SecretKeyShare,
) -> PeerRecord {
    let seat = Seat::sign(quorum_key, epoch, seated, share);
    PeerRecord::sign(seat, vec![evil_addr()], seq, expires_at_ms, signer)
}

/// Squatting: a record claiming the live quorum key but carrying another
/// (fake) quorum's remaining commitments, signed by that fake quorum, with
/// a higher epoch so that staleness does not stop it first.
pub fn squat(live: &NamespaceRecord, rng: &mut ChaCha20Rng, now: u64) -> NamespaceRecord {
    let threshold = live.threshold().max(1);
    let fake = TestQuorum::deal(live.n.max(threshold), threshold, rng);
    let mut record =
        fake.namespace_unsigned(live.epoch + 1, live.kind.as_deref(), now, now + 3_600_000);
    if let (Some(c), Some(live_key)) = (record.commitments.first_mut(), live.commitments.first()) {
        *c = *live_key;
    }
    let message = record.signing_bytes();
    let shares: Vec<SignatureShare> = fake
        .shares
        .iter()
        .take(threshold as usize)
        .map(|s| s.secret.sign(&message))
        .collect();
    if let Ok(sig) = combine_signatures(threshold, fake.n(), &shares) {
        record.signature = sig.to_bytes();
    }
    record
}

/// Too few shares: `threshold - 1` corrupted members' real shares over a
/// newer record, interpolated as if they were enough.
pub fn too_few_shares(live: &NamespaceRecord, corrupted: &[KeyShare], now: u64) -> NamespaceRecord {
    let mut record = live.clone();
    record.epoch += 1;
    record.issued_at_ms = now;
    record.expires_at_ms = now + 3_600_000;
    let message = record.signing_bytes();
    let shares: Vec<SignatureShare> = corrupted.iter().map(|k| k.secret.sign(&message)).collect();
    let count = shares.len() as u32;
    if count > 0 {
        if let Ok(sig) = combine_signatures(count, live.n, &shares) {
            record.signature = sig.to_bytes();
        }
    }
    record
}

/// Tampered commitments: the live record with a higher epoch and one
/// commitment replaced, the signature kept.
pub fn tampered_commitments(live: &NamespaceRecord, rng: &mut ChaCha20Rng) -> NamespaceRecord {
    let mut record = live.clone();
    record.epoch += 1;
    let fake = TestQuorum::deal(1, 1, rng);
    let replacement = fake.quorum_key().0;
    let last = record.commitments.len() - 1;
    if last > 0 {
        record.commitments[last] = replacement;
    } else {
        record.kind = Some("tampered".to_owned());
    }
    record
}

/// A valid namespace of a fresh single-member fake quorum whose member is
/// `identity`, and that member's valid peer record (what a flooder
/// registers cheaply).
pub fn fake_namespace(
    rng: &mut ChaCha20Rng,
    now: u64,
    ttl_ms: u64,
    identity: &Keypair,
) -> (NamespaceRecord, PeerRecord) {
    let fake = TestQuorum::deal(1, 1, rng);
    let peer_id = identity.public().to_peer_id();
    let mut ns = fake.namespace_unsigned(0, Some("spam"), now, now + ttl_ms);
    ns.members = Some(vec![peer_id]);
    let share = fake.shares[0].secret.sign(&ns.signing_bytes());
    if let Ok(signature) = dkg::combine_signatures(1, 1, &[share]) {
        ns.signature = signature.to_bytes();
    }
    let peer = peer_record(
        fake.quorum_key(),
        0,
        peer_id,
        identity,
        now,
        now + ttl_ms,
        &fake.shares[0].secret,
    );
    (ns, peer)
}

/// Random bytes, sometimes with a plausible header, for the decoder.
pub fn garbage(rng: &mut ChaCha20Rng) -> Vec<u8> {
    let len = 1 + (rng.next_u64() % 300) as usize;
    let mut bytes = vec![0u8; len];
    rng.fill_bytes(&mut bytes);
    if rng.next_u64().is_multiple_of(2) {
        // Version and a real request tag, then noise: deeper into the codec.
        bytes[0] = rendezvous_proto::codec::WIRE_VERSION;
        if len > 1 {
            bytes[1] = 1 + (rng.next_u64() % 7) as u8;
        }
    }
    bytes
}
