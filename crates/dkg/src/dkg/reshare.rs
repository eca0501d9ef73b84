//! Resharing: the members of epoch `e` hand the quorum's secret to the
//! members of epoch `e + 1`, without anyone learning it, and the quorum
//! key stays the same.
//!
//! It is the DKG's state machine with other roles (one engine, so both
//! get every fix): the *dealers* are the old members, each dealing its own
//! share `s_d` as the constant term of a fresh random polynomial of degree
//! `t' - 1` (`t'` the new threshold); the *receivers* are the new members.
//! Old and new member sets may overlap or be disjoint, and `n` and the
//! threshold may both change. The phases, deadlines, messages, wire
//! format, complaints and justifications are the DKG's (see [`crate::dkg`]),
//! with three differences:
//!
//! - **The constant term is fixed.** Old member `d` deals `lambda_d s_d`,
//!   with `lambda_d` its Lagrange coefficient at zero over *all* old
//!   indices, and a receiver accepts the deal only if the G1 component of
//!   its constant-term commitment is `lambda_d PK_d` (`PK_d` from the old
//!   [`PublicKeySet`]; all dealers checked in one batch, with a fallback
//!   to one check each); any other deal is invalid, like a deal with a bad
//!   proof of knowledge ([`Disqualification::InvalidProof`]). The proof is
//!   still carried and checked (the same message type).
//! - **QUAL needs the old threshold, and the key is an interpolation.**
//!   Fewer than `t` (the *old* threshold) qualified dealers fail the run
//!   ([`DkgError::QualTooSmall`]), and epoch `e` stays in force. When
//!   every old member qualifies, the deals simply add up, as in the DKG:
//!   `F(x) = sum_d lambda_d f_d(x)`, so `F(0) = sum lambda_d s_d = s`, the
//!   old secret, at the DKG's cost. Otherwise the first `t` of QUAL
//!   (ascending) are combined with their Lagrange coefficients `mu_d` over
//!   that set, deal `d` weighted `mu_d / lambda_d`: `t'` multi-scalar
//!   multiplications of `t` points (the slow path). Either way member
//!   `j`'s new share is `F(j)` and the new key set commits to `F`: its
//!   `C_0` is the old quorum key, every other commitment is fresh.
//! - **Roles.** Deals, shares and justifications come from old members
//!   (old indices), responses from new members (new indices). An old
//!   member that is not in the new epoch deals, answers the complaints
//!   against it, and is done ([`ReshareOutput::Dealt`]); a new member that
//!   was not in the old epoch deals nothing and ends with a share. A
//!   complaint count of `t'` or more excludes a dealer (answering would
//!   publish `t'` points of its polynomial, i.e. its old share).
//!
//! Secrecy: `F`'s coefficients other than `F(0)` are sums of honest
//! dealers' random coefficients (an honest dealer is among any `t`
//! dealers of QUAL unless `t` old members collude, which already breaks
//! epoch `e`); fewer than `t'` new shares say nothing about `s`. Old shares
//! are not made useless by the arithmetic (they still interpolate `s`):
//! the rendezvous network retires them by refusing every seat of an older
//! epoch once the new namespace record is in.
//!
//! Deferred subgroup checks work as in the DKG: constant terms are
//! checked on their G1 components, the (weighted) sums are
//! subgroup-checked with the same fallback, and the new `C_0` must be the
//! old quorum key.

use std::collections::BTreeMap;

use rand_core::{CryptoRng, RngCore};
use sha2::{Digest as _, Sha256};

use super::config::{OldEpoch, Roles, SessionId};
use super::error::{ConfigError, DkgError, MessageError};
use super::finish::{Disqualification, DkgOutput};
use super::member::{DkgMember, Phase, Sender, Transmit};
use super::messages::DkgMessage;
#[cfg(doc)]
use super::Destination;
use crate::keys::{KeyShare, SecretKeyShare};
use crate::public_key_set::PublicKeySet;

/// Domain separation tag of a resharing's session id.
pub const RESHARE_SESSION_DOMAIN: &[u8] = b"rdht/reshare/session/v1";

/// A node's places in a resharing: its index among the old members and
/// among the new ones (either may be absent, not both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Participant {
    /// Its index in epoch `e` (it deals), if it is an old member.
    pub old: Option<u32>,
    /// Its index in epoch `e + 1` (it receives a share), if it is a new
    /// member.
    pub new: Option<u32>,
}

/// The validated parameters of one node's resharing run.
///
/// Built from both member lists, so that a transport identity (e.g. the
/// bytes of a libp2p PeerId) can be mapped to its [`Participant`] places.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReshareConfig {
    old_members: Vec<Vec<u8>>,
    new_members: Vec<Vec<u8>>,
    me: Participant,
    roles: Roles,
}

impl ReshareConfig {
    /// Builds the config of the node with identity `me`.
    ///
    /// `old_members` and `new_members` are the two epochs' identities in
    /// index order (`old_members[d - 1]` is old member `d`); `old_key_set`
    /// is epoch `e`'s public key set (its threshold is the old threshold);
    /// `nonce` makes the run unique (e.g. the new epoch number and an
    /// attempt counter). Refuses duplicate identities within a list, a
    /// node that is in neither list, out-of-range thresholds and a zero
    /// timeout.
    pub fn new(
        old_members: &[Vec<u8>],
        old_key_set: &PublicKeySet,
        new_members: &[Vec<u8>],
        new_threshold: u32,
        nonce: &[u8],
        me: &[u8],
        phase_timeout_ms: u64,
    ) -> Result<Self, ConfigError> {
        let old_n = checked_count(old_members)?;
        let new_n = checked_count(new_members)?;
        let old_threshold = old_key_set.threshold();
        if old_threshold > old_n {
            return Err(ConfigError::OldThreshold {
                threshold: old_threshold,
                n: old_n,
            });
        }
        if new_threshold == 0 || new_threshold > new_n {
            return Err(ConfigError::Threshold {
                threshold: new_threshold,
                n: new_n,
            });
        }
        if phase_timeout_ms == 0 {
            return Err(ConfigError::ZeroTimeout);
        }
        let participant = Participant {
            old: position_of(old_members, me),
            new: position_of(new_members, me),
        };
        if participant.old.is_none() && participant.new.is_none() {
            return Err(ConfigError::NotAParticipant);
        }
        let session_id = session_id(old_members, old_key_set, new_members, new_threshold, nonce);
        let roles = Roles {
            session_id,
            dealers: old_n,
            receivers: new_n,
            my_dealer: participant.old,
            my_receiver: participant.new,
            threshold: new_threshold,
            min_qual: old_threshold,
            phase_timeout_ms,
            old: Some(OldEpoch::new(old_key_set.clone(), old_n)),
        };
        Ok(Self {
            old_members: old_members.to_vec(),
            new_members: new_members.to_vec(),
            me: participant,
            roles,
        })
    }

    /// The session id every message of the run carries:
    /// `SHA-256(RESHARE_SESSION_DOMAIN || u32 t || each old commitment,
    /// compressed || u64 n || each old member (u64 len || bytes) || u64 n'
    /// || each new member (u64 len || bytes) || u32 t' || u64 len || nonce)`.
    pub fn session_id(&self) -> &SessionId {
        &self.roles.session_id
    }

    /// This node's places.
    pub fn me(&self) -> Participant {
        self.me
    }

    /// The places of the node with transport identity `identity`, or
    /// `None` if it takes no part.
    pub fn participant(&self, identity: &[u8]) -> Option<Participant> {
        let participant = Participant {
            old: position_of(&self.old_members, identity),
            new: position_of(&self.new_members, identity),
        };
        (participant.old.is_some() || participant.new.is_some()).then_some(participant)
    }

    /// The identity of new member `index` (where a
    /// [`Destination::Member`] goes).
    pub fn new_member(&self, index: u32) -> Option<&[u8]> {
        let position = usize::try_from(index).ok()?.checked_sub(1)?;
        self.new_members.get(position).map(Vec::as_slice)
    }

    /// Every identity of the run but this node's, old and new, each once
    /// (where a [`Destination::All`] goes).
    pub fn others(&self) -> Vec<&[u8]> {
        let mut others: Vec<&[u8]> = Vec::new();
        for identity in self.old_members.iter().chain(&self.new_members) {
            let mine = self.participant(identity) == Some(self.me);
            if !mine && !others.contains(&identity.as_slice()) {
                others.push(identity);
            }
        }
        others
    }

    /// The number of old members.
    pub fn old_n(&self) -> u32 {
        self.roles.dealers
    }

    /// The old threshold: the fewest honest old dealers that make a new
    /// key set.
    pub fn old_threshold(&self) -> u32 {
        self.roles.min_qual
    }

    /// The number of new members.
    pub fn new_n(&self) -> u32 {
        self.roles.receivers
    }

    /// The new threshold.
    pub fn new_threshold(&self) -> u32 {
        self.roles.threshold
    }

    /// The old epoch's public key set.
    pub fn old_key_set(&self) -> Option<&PublicKeySet> {
        self.roles.old.as_ref().map(|old| &old.public_key_set)
    }

    /// The length of each phase, in milliseconds.
    pub fn phase_timeout_ms(&self) -> u64 {
        self.roles.phase_timeout_ms
    }
}

/// `members.len()` as a member count in `1..=MAX_MEMBERS`, with no
/// identity twice.
fn checked_count(members: &[Vec<u8>]) -> Result<u32, ConfigError> {
    let n = u32::try_from(members.len()).unwrap_or(u32::MAX);
    if n == 0 || n > crate::MAX_MEMBERS {
        return Err(ConfigError::MemberCount {
            n,
            max: crate::MAX_MEMBERS,
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for (position, member) in members.iter().enumerate() {
        if !seen.insert(member.as_slice()) {
            return Err(ConfigError::DuplicateMember {
                index: u32::try_from(position)
                    .unwrap_or(u32::MAX)
                    .saturating_add(1),
            });
        }
    }
    Ok(n)
}

/// The 1-based index of `identity` in `members`.
fn position_of(members: &[Vec<u8>], identity: &[u8]) -> Option<u32> {
    let position = members.iter().position(|m| m.as_slice() == identity)?;
    u32::try_from(position).ok()?.checked_add(1)
}

fn session_id(
    old_members: &[Vec<u8>],
    old_key_set: &PublicKeySet,
    new_members: &[Vec<u8>],
    new_threshold: u32,
    nonce: &[u8],
) -> SessionId {
    let mut h = Sha256::new();
    h.update(RESHARE_SESSION_DOMAIN);
    h.update(old_key_set.threshold().to_be_bytes());
    for commitment in old_key_set.commitments() {
        h.update(commitment.to_bytes());
    }
    for members in [old_members, new_members] {
        h.update((members.len() as u64).to_be_bytes());
        for member in members {
            h.update((member.len() as u64).to_be_bytes());
            h.update(member);
        }
    }
    h.update(new_threshold.to_be_bytes());
    h.update((nonce.len() as u64).to_be_bytes());
    h.update(nonce);
    SessionId(h.finalize().into())
}

/// What a finished resharing leaves a node with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReshareOutput {
    /// A new member's share of epoch `e + 1` (same quorum key, new key
    /// set), with QUAL and the transcript hash as in a DKG.
    NewShare(DkgOutput),
    /// An old member that is not in the new epoch dealt and answered the
    /// complaints against it; it holds nothing new (whether the new epoch
    /// came about is for the new members to show, by signing its
    /// namespace record).
    Dealt,
}

/// One node of a resharing, as a sans-IO state machine.
///
/// Driven like [`DkgMember`]: [`handle_message`](Self::handle_message)
/// for every message (with the sender's [`Participant`] places, from
/// [`ReshareConfig::participant`]), [`handle_timeout`](Self::handle_timeout)
/// at [`poll_deadline`](Self::poll_deadline), and send what
/// [`poll_transmit`](Self::poll_transmit) yields: a
/// [`Destination::Member`] is a *new* member's index
/// ([`ReshareConfig::new_member`]), [`Destination::All`] every other node
/// of either epoch ([`ReshareConfig::others`]).
pub struct ReshareMember {
    config: ReshareConfig,
    engine: DkgMember,
    /// An old-only member's [`ReshareOutput::Dealt`] was taken.
    dealt_taken: bool,
}

impl ReshareMember {
    /// Starts the run at `now`: an old member deals its share of the old
    /// epoch (`old_share`, which must be its own index's share of the old
    /// key set); a node that is only a new member passes `None`.
    pub fn new<R: RngCore + CryptoRng>(
        config: ReshareConfig,
        old_share: Option<&KeyShare>,
        now: u64,
        rng: &mut R,
    ) -> Result<Self, ConfigError> {
        let dealt = match (config.me.old, old_share) {
            (None, None) => None,
            (Some(index), Some(share))
                if share.index() == index
                    && Some(&share.public_key_set) == config.old_key_set() =>
            {
                // Dealt weighted: `lambda_d s_d` (see the module docs).
                let weight = config
                    .roles
                    .old
                    .as_ref()
                    .and_then(|old| old.weight(index))
                    .ok_or(ConfigError::OldShareMismatch)?;
                let mut weighted = share.secret.scalar() * weight;
                let copy = SecretKeyShare::new(index, weighted);
                crate::wipe::scalar(&mut weighted);
                Some(copy.map_err(|_| ConfigError::OldShareMismatch)?)
            }
            _ => return Err(ConfigError::OldShareMismatch),
        };
        let engine = DkgMember::start(config.roles.clone(), dealt, now, rng);
        Ok(Self {
            config,
            engine,
            dealt_taken: false,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ReshareConfig {
        &self.config
    }

    /// The current phase ([`Phase::Hello`] never occurs).
    pub fn phase(&self) -> Phase {
        self.engine.phase()
    }

    /// The next message to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.engine.poll_transmit()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called;
    /// `None` once finished.
    pub fn poll_deadline(&self) -> Option<u64> {
        self.engine.poll_deadline()
    }

    /// Ends every phase whose deadline is `<= now`.
    pub fn handle_timeout(&mut self, now: u64) {
        self.engine.handle_timeout(now);
    }

    /// Handles a message from the node at places `from`, as authenticated
    /// by the transport. A rejected message changes nothing; an old
    /// member that receives no share refuses everything but responses
    /// ([`MessageError::NotAReceiver`]: drop those quietly).
    pub fn handle_message(
        &mut self,
        now: u64,
        from: Participant,
        message: DkgMessage,
    ) -> Result<(), MessageError> {
        let sender = Sender {
            dealer: from.old,
            receiver: from.new,
        };
        self.engine.handle_from(now, sender, message)
    }

    /// The old dealers left out, and why, once finished (a new member's
    /// view; empty for an old member that receives nothing).
    pub fn disqualified(&self) -> &BTreeMap<u32, Disqualification> {
        self.engine.disqualified()
    }

    /// Takes the result out once [`Phase::Finished`] (then `None`). A
    /// failed run (fewer than the old threshold of honest dealers) is an
    /// error, and epoch `e` stays in force.
    pub fn take_outcome(&mut self) -> Option<Result<ReshareOutput, DkgError>> {
        if self.engine.phase() != Phase::Finished {
            return None;
        }
        if self.engine.roles().my_receiver.is_none() {
            // Taken once, like a receiver's outcome.
            let first = !std::mem::replace(&mut self.dealt_taken, true);
            return first.then_some(Ok(ReshareOutput::Dealt));
        }
        self.engine
            .take_outcome()
            .map(|outcome| outcome.map(ReshareOutput::NewShare))
    }
}

impl std::fmt::Debug for ReshareMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReshareMember")
            .field("me", &self.config.me)
            .field("engine", &self.engine)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use blstrs::{G1Affine, G1Projective};
    use group::{Curve, Group};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::OldEpoch;
    use crate::dkg::point::testing::torsion_point;
    use crate::poly::Polynomial;

    /// The batched constant-term check names exactly the dealers whose
    /// constant term is not `lambda_d PK_d`, and decides on G1 components
    /// (a torsion component passes here and is caught by the sums'
    /// subgroup check), whatever the coefficients drawn.
    #[test]
    fn reshare_constant_terms_are_checked_in_one_batch_on_g1_components() {
        let mut rng = ChaCha20Rng::seed_from_u64(21);
        let polynomial = Polynomial::random(3, &mut rng);
        let old = OldEpoch::new(polynomial.commitments().unwrap(), 5);
        let g = G1Projective::generator();
        let right = |d: u32| g * (polynomial.evaluate(d) * old.weight(d).unwrap());
        let affine = |points: &[G1Projective]| -> Vec<G1Affine> {
            points.iter().map(|p| p.to_affine()).collect()
        };
        let honest: Vec<G1Projective> = (1..=5).map(right).collect();
        let mut tampered = honest.clone();
        tampered[1] += g; // dealer 2: another secret
        tampered[3] += torsion_point(); // dealer 4: torsion only
        for seed in 0..8 {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let points = affine(&honest);
            let items: Vec<(u32, &G1Affine)> = (1..=5).zip(&points).collect();
            assert_eq!(old.check_constants(&items, &mut rng), vec![true; 5]);
            let points = affine(&tampered);
            let items: Vec<(u32, &G1Affine)> = (1..=5).zip(&points).collect();
            assert_eq!(
                old.check_constants(&items, &mut rng),
                vec![true, false, true, true, true]
            );
        }
        // The unweighted share is not what a dealer must deal.
        let unweighted = g * polynomial.evaluate(3);
        assert!(!old.constant_fits(3, &unweighted));
        assert!(old.constant_fits(3, &right(3)));
        assert!(!old.constant_fits(6, &right(3)), "no such dealer");
    }
}
