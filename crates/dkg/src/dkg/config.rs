//! Session identity and the parameters of one DKG run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use sha2::{Digest as _, Sha256};

use super::error::ConfigError;
use blstrs::{G1Affine, G1Projective, Scalar};
use ff::Field;
use rand_core::RngCore;

use super::point::{is_torsion, DealCommitments};
use crate::public_key_set::PublicKeySet;

/// Domain separation tag of the session-id hash.
pub const SESSION_DOMAIN: &[u8] = b"rdht/dkg/session/v1";
/// Domain separation tag of a run's session id ([`SessionId::for_run`]).
pub const RUN_DOMAIN: &[u8] = b"rdht/dkg/run/v1";

/// The 32-byte identifier of one DKG run.
///
/// Every message carries it, and every proof and hash of the protocol is
/// bound to it, so nothing from one run (or from another quorum) can be
/// replayed into another.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub [u8; 32]);

impl SessionId {
    /// `SHA-256(SESSION_DOMAIN || u64 n || for each member (u64 len || bytes)
    /// || u32 threshold || u64 len || nonce)`, integers big-endian.
    ///
    /// `members` are the members' opaque identities (e.g. libp2p PeerId
    /// bytes) in index order: `members[i - 1]` is member `i`. Lengths are
    /// prefixed so that no two different member lists hash the same bytes.
    /// The nonce makes two runs of the same group distinct (use a fresh
    /// random or an epoch counter).
    pub fn new(members: &[Vec<u8>], threshold: u32, nonce: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(SESSION_DOMAIN);
        h.update((members.len() as u64).to_be_bytes());
        for member in members {
            h.update((member.len() as u64).to_be_bytes());
            h.update(member);
        }
        h.update(threshold.to_be_bytes());
        h.update((nonce.len() as u64).to_be_bytes());
        h.update(nonce);
        Self(h.finalize().into())
    }

    /// The session id of one run of the quorum whose base session id is
    /// `self`: `SHA-256(RUN_DOMAIN || base || u64 attempt || u32 count ||
    /// for each member with a nonce, ascending: (u32 index || nonce))`.
    ///
    /// Every member contributes a fresh random nonce in its
    /// [`HelloMessage`](super::HelloMessage), so no two runs share a
    /// session id (and nothing of an earlier run is accepted in a later
    /// one) unless every contributing member repeats its nonce.
    pub fn for_run(&self, attempt: u64, nonces: &BTreeMap<u32, [u8; 32]>) -> Self {
        let mut h = Sha256::new();
        h.update(RUN_DOMAIN);
        h.update(self.0);
        h.update(attempt.to_be_bytes());
        h.update(
            u32::try_from(nonces.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        for (index, nonce) in nonces {
            h.update(index.to_be_bytes());
            h.update(nonce);
        }
        Self(h.finalize().into())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", hex::encode(self.0))
    }
}

/// The validated parameters of one member's DKG run.
///
/// Fields are private so that a `DkgConfig` always satisfies
/// `1 <= threshold <= n <= MAX_MEMBERS`, `1 <= my_index <= n` and a
/// non-zero phase timeout; the state machine relies on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DkgConfig {
    session_id: SessionId,
    n: u32,
    threshold: u32,
    my_index: u32,
    phase_timeout_ms: u64,
}

impl DkgConfig {
    /// Builds a config from the member identities (index order), the
    /// threshold, a session nonce, this member's index and the phase
    /// timeout, deriving the [`SessionId`]. Refuses duplicate identities.
    pub fn new(
        members: &[Vec<u8>],
        threshold: u32,
        nonce: &[u8],
        my_index: u32,
        phase_timeout_ms: u64,
    ) -> Result<Self, ConfigError> {
        let n = u32::try_from(members.len()).unwrap_or(u32::MAX);
        if n == 0 || n > crate::MAX_MEMBERS {
            return Err(ConfigError::MemberCount {
                n,
                max: crate::MAX_MEMBERS,
            });
        }
        let mut seen = BTreeSet::new();
        for (position, member) in members.iter().enumerate() {
            if !seen.insert(member.as_slice()) {
                return Err(ConfigError::DuplicateMember {
                    index: position as u32 + 1,
                });
            }
        }
        Self::from_session(
            SessionId::new(members, threshold, nonce),
            n,
            threshold,
            my_index,
            phase_timeout_ms,
        )
    }

    /// Builds a config from an already agreed session id.
    pub fn from_session(
        session_id: SessionId,
        n: u32,
        threshold: u32,
        my_index: u32,
        phase_timeout_ms: u64,
    ) -> Result<Self, ConfigError> {
        if n == 0 || n > crate::MAX_MEMBERS {
            return Err(ConfigError::MemberCount {
                n,
                max: crate::MAX_MEMBERS,
            });
        }
        if threshold == 0 || threshold > n {
            return Err(ConfigError::Threshold { threshold, n });
        }
        if my_index == 0 || my_index > n {
            return Err(ConfigError::Index { index: my_index, n });
        }
        if phase_timeout_ms == 0 {
            return Err(ConfigError::ZeroTimeout);
        }
        Ok(Self {
            session_id,
            n,
            threshold,
            my_index,
            phase_timeout_ms,
        })
    }

    /// The session id every message must carry (with a hello round: the
    /// base id until the round ends, the run's after).
    pub fn session_id(&self) -> &SessionId {
        &self.session_id
    }

    /// The number of members.
    pub fn n(&self) -> u32 {
        self.n
    }

    /// Shares needed to sign with the resulting key (and the number of
    /// commitments every dealer must publish).
    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// This member's index, `1..=n`.
    pub fn my_index(&self) -> u32 {
        self.my_index
    }

    /// The length of each of the three phases, in milliseconds.
    pub fn phase_timeout_ms(&self) -> u64 {
        self.phase_timeout_ms
    }
}

/// Who deals and who receives in one run, and what it must produce: the
/// one description the state machine runs on, for a fresh DKG and for a
/// resharing alike.
///
/// In a fresh DKG ([`DkgConfig`]) every member is both a dealer and a
/// receiver, under one index. In a resharing
/// ([`ReshareConfig`](super::ReshareConfig)) the dealers are the old
/// epoch's members (old indices) and the receivers the new epoch's (new
/// indices); one node may be either or both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Roles {
    pub(crate) session_id: SessionId,
    /// Dealers are indexed `1..=dealers`.
    pub(crate) dealers: u32,
    /// Receivers are indexed `1..=receivers`.
    pub(crate) receivers: u32,
    /// This member's dealer index, if it deals.
    pub(crate) my_dealer: Option<u32>,
    /// This member's receiver index, if it receives a share.
    pub(crate) my_receiver: Option<u32>,
    /// Commitments per deal (the new threshold), and the complaint count
    /// that excludes a dealer.
    pub(crate) threshold: u32,
    /// The fewest qualified dealers that make a key.
    pub(crate) min_qual: u32,
    pub(crate) phase_timeout_ms: u64,
    /// Set in a resharing: the old epoch, whose public key shares every
    /// dealer's constant term must match.
    pub(crate) old: Option<OldEpoch>,
}

/// What a resharing checks deals against: the old epoch's key set, and
/// the weight each old member deals its share with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OldEpoch {
    pub(crate) public_key_set: PublicKeySet,
    /// `weights[d - 1]` is old member `d`'s Lagrange coefficient at zero
    /// over *all* old members (`lambda_d`, never zero): dealer `d`'s
    /// constant term is `lambda_d s_d`, so that when every old member
    /// qualifies the new polynomial is the plain sum of the deals, as in
    /// the DKG (see [`crate::dkg::reshare`]).
    pub(crate) weights: Vec<Scalar>,
}

impl OldEpoch {
    pub(crate) fn new(public_key_set: PublicKeySet, n: u32) -> Self {
        let indices: Vec<u32> = (1..=n).collect();
        Self {
            weights: crate::combine::lagrange_coefficients_at_zero(&indices),
            public_key_set,
        }
    }

    /// Dealer `dealer`'s weight `lambda_d`.
    pub(crate) fn weight(&self, dealer: u32) -> Option<&Scalar> {
        let position = usize::try_from(dealer).ok()?.checked_sub(1)?;
        self.weights.get(position)
    }

    /// Which of `constants` (dealer, its constant term) fit
    /// ([`OldEpoch::constant_fits`]), in one check when all do: with
    /// random odd 64-bit `rho_d`, `sum rho_d C_{d,0} = sum_k (sum_d rho_d
    /// lambda_d d^k) C_k` on G1 components (the right side is `sum rho_d
    /// lambda_d PK_d` with the sums taken on scalars: one multi-scalar
    /// multiplication over the old commitments instead of one `PK_d` per
    /// dealer). A false batch passes with probability at most 2^-64, and a
    /// failed one falls back to exact individual checks, so every member
    /// reaches the same verdicts.
    pub(crate) fn check_constants<R: RngCore>(
        &self,
        constants: &[(u32, &G1Affine)],
        rng: &mut R,
    ) -> Vec<bool> {
        if constants.len() > 1 && self.batch_fits(constants, rng) {
            return vec![true; constants.len()];
        }
        constants
            .iter()
            .map(|(dealer, constant)| self.constant_fits(*dealer, &G1Projective::from(**constant)))
            .collect()
    }

    fn batch_fits<R: RngCore>(&self, constants: &[(u32, &G1Affine)], rng: &mut R) -> bool {
        let old = self.public_key_set.commitments();
        let mut points = Vec::with_capacity(constants.len());
        let mut rhos: Vec<[u8; 8]> = Vec::with_capacity(constants.len());
        let mut columns = vec![Scalar::ZERO; old.len()];
        for (dealer, constant) in constants {
            let Some(weight) = self.weight(*dealer) else {
                return false;
            };
            let rho = rng.next_u64() | 1;
            points.push(**constant);
            rhos.push(rho.to_le_bytes());
            let x = Scalar::from(u64::from(*dealer));
            let mut term = Scalar::from(rho) * weight;
            for column in columns.iter_mut() {
                *column += term;
                term *= x;
            }
        }
        let old_points: Vec<G1Affine> = old.iter().map(|key| *key.affine()).collect();
        let scalars: Vec<[u8; 32]> = columns.iter().map(Scalar::to_bytes_le).collect();
        let lhs = crate::blst_raw::g1_msm(&points, &rhos, 64);
        let rhs = crate::blst_raw::g1_msm(&old_points, &scalars, 255);
        is_torsion(&(lhs - rhs))
    }

    /// Whether `constant`'s G1 component is `lambda_d PK_d`, dealer
    /// `dealer`'s constant term (one check, about 0.3 ms for `t = 43`;
    /// [`crate::dkg::reshare`] batches them).
    pub(crate) fn constant_fits(&self, dealer: u32, constant: &G1Projective) -> bool {
        let Some(weight) = self.weight(dealer) else {
            return false;
        };
        let expected = self.public_key_set.public_key_share_point(dealer) * weight;
        is_torsion(&(constant - expected))
    }
}

impl Roles {
    /// A fresh DKG: every member deals and receives under its own index.
    pub(crate) fn fresh(config: &DkgConfig) -> Self {
        Self {
            session_id: config.session_id,
            dealers: config.n,
            receivers: config.n,
            my_dealer: Some(config.my_index),
            my_receiver: Some(config.my_index),
            threshold: config.threshold,
            min_qual: config.threshold,
            phase_timeout_ms: config.phase_timeout_ms,
            old: None,
        }
    }

    /// Whether dealer `dealer`'s constant term is what it must be: any
    /// point in a fresh DKG (its proof of knowledge covers it), in a
    /// resharing one whose G1 component is `lambda_d PK_d` (decided on G1
    /// components like every relation of the DKG: a torsion component is
    /// caught by the subgroup check of the sums).
    pub(crate) fn constant_term_fits(&self, dealer: u32, commitments: &DealCommitments) -> bool {
        match &self.old {
            None => true,
            Some(old) => old.constant_fits(dealer, &commitments.constant().point()),
        }
    }

    /// Whether this member is the only participant (nobody to send to).
    pub(crate) fn alone(&self) -> bool {
        self.dealers == 1
            && self.receivers == 1
            && self.my_dealer.is_some()
            && self.my_receiver.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: u32) -> Vec<Vec<u8>> {
        (1..=n).map(|i| format!("peer-{i}").into_bytes()).collect()
    }

    #[test]
    fn session_id_binds_every_input() {
        let base = SessionId::new(&members(3), 2, b"nonce");
        assert_eq!(base, SessionId::new(&members(3), 2, b"nonce"));
        assert_ne!(base, SessionId::new(&members(3), 3, b"nonce"));
        assert_ne!(base, SessionId::new(&members(3), 2, b"other"));
        assert_ne!(base, SessionId::new(&members(4), 2, b"nonce"));
        // Length prefixes keep ["ab", "c"] and ["a", "bc"] apart.
        let split_a = SessionId::new(&[b"ab".to_vec(), b"c".to_vec()], 1, b"");
        let split_b = SessionId::new(&[b"a".to_vec(), b"bc".to_vec()], 1, b"");
        assert_ne!(split_a, split_b);
    }

    #[test]
    fn dkg_session_a_run_id_binds_base_attempt_and_every_nonce() {
        let base = SessionId::new(&members(3), 2, b"nonce");
        let nonces: BTreeMap<u32, [u8; 32]> = (1..=3).map(|i| (i, [i as u8; 32])).collect();
        let run = base.for_run(0, &nonces);
        assert_eq!(run, base.for_run(0, &nonces));
        assert_ne!(run, base);
        assert_ne!(run, base.for_run(1, &nonces));
        assert_ne!(run, SessionId([0; 32]).for_run(0, &nonces));
        let mut changed = nonces.clone();
        changed.insert(2, [9; 32]);
        assert_ne!(run, base.for_run(0, &changed));
        let mut fewer = nonces.clone();
        fewer.remove(&3);
        assert_ne!(run, base.for_run(0, &fewer));
        // The index is bound too: the same nonce from another member.
        let moved: BTreeMap<u32, [u8; 32]> = [(1, [1; 32]), (2, [2; 32]), (4, [3; 32])].into();
        assert_ne!(run, base.for_run(0, &moved));
    }

    #[test]
    fn config_validates_parameters() {
        let m = members(4);
        assert!(DkgConfig::new(&m, 3, b"n", 4, 10).is_ok());
        assert_eq!(
            DkgConfig::new(&m, 0, b"n", 1, 10),
            Err(ConfigError::Threshold { threshold: 0, n: 4 })
        );
        assert_eq!(
            DkgConfig::new(&m, 5, b"n", 1, 10),
            Err(ConfigError::Threshold { threshold: 5, n: 4 })
        );
        assert_eq!(
            DkgConfig::new(&m, 2, b"n", 0, 10),
            Err(ConfigError::Index { index: 0, n: 4 })
        );
        assert_eq!(
            DkgConfig::new(&m, 2, b"n", 5, 10),
            Err(ConfigError::Index { index: 5, n: 4 })
        );
        assert_eq!(
            DkgConfig::new(&m, 2, b"n", 1, 0),
            Err(ConfigError::ZeroTimeout)
        );
        assert_eq!(
            DkgConfig::new(&[], 1, b"n", 1, 10),
            Err(ConfigError::MemberCount {
                n: 0,
                max: crate::MAX_MEMBERS
            })
        );
        let dup = vec![b"a".to_vec(), b"b".to_vec(), b"a".to_vec()];
        assert_eq!(
            DkgConfig::new(&dup, 2, b"n", 1, 10),
            Err(ConfigError::DuplicateMember { index: 3 })
        );
    }
}
