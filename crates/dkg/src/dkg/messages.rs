//! The DKG's messages: plain data, one type per round package.
//!
//! Shares travel in the clear inside [`ShareMessage`] and
//! [`JustificationMessage`]: the node transport (libp2p Noise) encrypts
//! and authenticates every connection, so a share addressed to member `j`
//! is readable only by `j`. A justification reveals shares *publicly* on
//! purpose: only the shares of members who complained, which the dealer
//! had to prove correct. Encoded bytes of these two messages therefore
//! contain secret material and must not be logged.

use std::fmt;

use rand_core::{CryptoRng, RngCore};
use sha2::{Digest as _, Sha256};

use super::config::SessionId;
use super::point::DealCommitments;
use super::proof::ProofOfKnowledge;
use crate::keys::SecretKeyShare;
use crate::poly::Polynomial;

/// Domain separation tag of a deal's hash.
pub const DEAL_HASH_DOMAIN: &[u8] = b"rdht/dkg/deal/v1";

/// A SHA-256 digest (of a deal, or of the whole transcript).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(pub [u8; 32]);

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", hex::encode(self.0))
    }
}

/// The kinds of message, for errors and phase bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MessageKind {
    /// [`HelloMessage`].
    Hello,
    /// [`DealMessage`].
    Deal,
    /// [`ShareMessage`].
    Share,
    /// [`ResponseMessage`].
    Response,
    /// [`JustificationMessage`].
    Justification,
}

/// Hello phase, broadcast: a member's random contribution to the session
/// id of one run (see [`SessionId::for_run`]).
///
/// It carries the quorum's *base* session id (the same for every run of
/// the quorum); every later message carries the run's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelloMessage {
    /// The base session id.
    pub session_id: SessionId,
    /// The sending member's index.
    pub member: u32,
    /// Which run of the quorum this is (members move to the highest one
    /// they hear of, so that retries line up).
    pub attempt: u64,
    /// 32 fresh random bytes.
    pub nonce: [u8; 32],
}

/// Deal phase, broadcast: a dealer's Feldman commitments and its proof of
/// knowledge of the constant term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DealMessage {
    /// The session.
    pub session_id: SessionId,
    /// The dealer's member index.
    pub dealer: u32,
    /// `a_0 * G1 .. a_{k-1} * G1`; exactly `threshold` of them. Decoded
    /// on the curve but not subgroup-checked (the DKG checks the summed
    /// key set instead: see the [`crate::dkg`] docs).
    pub commitments: DealCommitments,
    /// Schnorr proof of knowledge of `a_0`, bound to the session and the
    /// dealer index (against rogue-key attacks).
    pub proof: ProofOfKnowledge,
}

impl DealMessage {
    /// Builds the deal for `polynomial`: commitments and a fresh proof.
    ///
    /// Returns `None` only if a coefficient is zero (never for
    /// [`Polynomial::random`]).
    pub fn new<R: RngCore + CryptoRng>(
        session_id: SessionId,
        dealer: u32,
        polynomial: &Polynomial,
        rng: &mut R,
    ) -> Option<Self> {
        let commitments = DealCommitments::from(&polynomial.commitments()?);
        let proof =
            ProofOfKnowledge::prove(&session_id, dealer, polynomial, commitments.constant(), rng)?;
        Some(Self {
            session_id,
            dealer,
            commitments,
            proof,
        })
    }

    /// `SHA-256(DEAL_HASH_DOMAIN || canonical encoding of the deal)`: what
    /// responses compare to detect a dealer that sent different deals to
    /// different members.
    pub fn hash(&self) -> Digest {
        let mut h = Sha256::new();
        h.update(DEAL_HASH_DOMAIN);
        h.update(super::wire::encode_deal(self));
        Digest(h.finalize().into())
    }
}

/// Deal phase, to one member only: the dealer's share `f(j)` for member
/// `j = share.index()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareMessage {
    /// The session.
    pub session_id: SessionId,
    /// The dealer's member index.
    pub dealer: u32,
    /// `f_dealer(recipient)`; its index is the recipient.
    pub share: SecretKeyShare,
}

/// What a member concluded about one dealer at the end of the deal phase.
///
/// Every verdict except [`DealerVerdict::MissingDeal`] carries the hash of
/// the deal the member received, so that members can tell whether they all
/// saw the same commitments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DealerVerdict {
    /// The deal and the share are valid.
    Valid(Digest),
    /// Complaint: the share does not match the commitments.
    BadShare(Digest),
    /// Complaint: the deal arrived but the share did not.
    MissingShare(Digest),
    /// The deal's proof of knowledge does not verify (every member holding
    /// the same deal sees the same, so no justification is possible).
    InvalidDeal(Digest),
    /// No (well-formed) deal arrived from this dealer.
    MissingDeal,
}

impl DealerVerdict {
    /// The hash of the deal received, if any.
    pub fn digest(&self) -> Option<&Digest> {
        match self {
            Self::Valid(d) | Self::BadShare(d) | Self::MissingShare(d) | Self::InvalidDeal(d) => {
                Some(d)
            }
            Self::MissingDeal => None,
        }
    }

    /// Whether this is a complaint the dealer must answer by revealing the
    /// member's share (and, for [`DealerVerdict::MissingDeal`], its deal).
    pub fn is_complaint(&self) -> bool {
        matches!(
            self,
            Self::BadShare(_) | Self::MissingShare(_) | Self::MissingDeal
        )
    }
}

/// Response phase, broadcast: one verdict per dealer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseMessage {
    /// The session.
    pub session_id: SessionId,
    /// The responding member's index.
    pub member: u32,
    /// `verdicts[d - 1]` is about dealer `d`; exactly `n` entries.
    pub verdicts: Vec<DealerVerdict>,
}

impl ResponseMessage {
    /// The verdict about `dealer` (1-based), if in range.
    pub fn verdict(&self, dealer: u32) -> Option<&DealerVerdict> {
        let position = usize::try_from(dealer).ok()?.checked_sub(1)?;
        self.verdicts.get(position)
    }

    /// Whether every verdict is [`DealerVerdict::Valid`].
    pub fn is_success(&self) -> bool {
        self.verdicts
            .iter()
            .all(|v| matches!(v, DealerVerdict::Valid(_)))
    }
}

/// Justification phase, broadcast: an accused dealer reveals the shares of
/// the members who complained about it, and its deal if one of them
/// reported the deal missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JustificationMessage {
    /// The session.
    pub session_id: SessionId,
    /// The accused dealer's index.
    pub dealer: u32,
    /// `f_dealer(m)` for each complaining member `m` (the share's index),
    /// in strictly ascending member order.
    pub revealed: Vec<SecretKeyShare>,
    /// The dealer's deal, again: present when a member reported it
    /// missing, so that a lost (or falsely denied) deal cannot remove an
    /// honest dealer. Its session and dealer are the justification's own
    /// (on the wire only its body travels).
    pub deal: Option<DealMessage>,
}

/// Any DKG message: what the transport carries (see [`super::wire`] for
/// the bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DkgMessage {
    /// A member's nonce for the run's session id, broadcast.
    Hello(HelloMessage),
    /// Commitments and proof, broadcast.
    Deal(DealMessage),
    /// One member's share, to that member only.
    Share(ShareMessage),
    /// Verdicts on every dealer, broadcast.
    Response(ResponseMessage),
    /// Revealed shares answering complaints, broadcast.
    Justification(JustificationMessage),
}

impl DkgMessage {
    /// The kind of message.
    pub fn kind(&self) -> MessageKind {
        match self {
            Self::Hello(_) => MessageKind::Hello,
            Self::Deal(_) => MessageKind::Deal,
            Self::Share(_) => MessageKind::Share,
            Self::Response(_) => MessageKind::Response,
            Self::Justification(_) => MessageKind::Justification,
        }
    }

    /// The session the message belongs to.
    pub fn session_id(&self) -> &SessionId {
        match self {
            Self::Hello(m) => &m.session_id,
            Self::Deal(m) => &m.session_id,
            Self::Share(m) => &m.session_id,
            Self::Response(m) => &m.session_id,
            Self::Justification(m) => &m.session_id,
        }
    }

    /// The member index the message claims to come from (the dealer, or the
    /// responding or greeting member).
    pub fn sender(&self) -> u32 {
        match self {
            Self::Hello(m) => m.member,
            Self::Deal(m) => m.dealer,
            Self::Share(m) => m.dealer,
            Self::Response(m) => m.member,
            Self::Justification(m) => m.dealer,
        }
    }
}
