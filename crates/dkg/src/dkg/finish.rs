//! Deciding QUAL and assembling the key, from what a member collected.
//!
//! The rules, for each dealer `d` (each member applies them to the same
//! broadcast data, so honest members that received the same responses
//! and justifications decide the same):
//!
//! 1. this member holds `d`'s deal and its proof of knowledge verifies;
//! 2. no response reports a missing deal from `d`, and every response's
//!    hash of `d`'s deal equals this member's (else `d` equivocated: it
//!    showed different commitments to different members);
//! 3. every complaint against `d` (bad or missing share) is answered by
//!    `d`'s justification with a share that matches `d`'s commitments.
//!
//! QUAL is the sorted list of dealers meeting all three. A complainer
//! whose complaint was answered takes the revealed share as its share.

use std::collections::BTreeMap;

use blstrs::{G1Projective, Scalar};
use ff::Field;
use group::Group;
use rand_core::RngCore;
use sha2::{Digest as _, Sha256};

use super::config::DkgConfig;
use super::error::DkgError;
use super::messages::{DealerVerdict, Digest, JustificationMessage, ResponseMessage};
use super::verify::{check_relations, Relation};
use crate::keys::{KeyShare, PublicKey, SecretKeyShare};
use crate::public_key_set::PublicKeySet;

/// Domain separation tag of the transcript hash.
pub const TRANSCRIPT_DOMAIN: &[u8] = b"rdht/dkg/transcript/v1";

/// Why a dealer was left out of QUAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disqualification {
    /// This member received no well-formed deal from the dealer.
    NoDeal,
    /// The dealer's proof of knowledge does not verify.
    InvalidProof,
    /// `member` reported that it received no deal from the dealer.
    ReportedMissing {
        /// The reporting member.
        member: u32,
    },
    /// `member` received a different deal than this member did.
    Equivocation {
        /// The member whose deal hash differs.
        member: u32,
    },
    /// `member` complained and the dealer revealed no share for it.
    Unjustified {
        /// The complaining member.
        member: u32,
    },
    /// The share the dealer revealed for `member` does not match its
    /// commitments.
    BadJustification {
        /// The complaining member.
        member: u32,
    },
}

/// What a member ends up with after a successful DKG.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DkgOutput {
    /// This member's secret share and the quorum's public key set.
    pub key_share: KeyShare,
    /// The qualified dealers, ascending.
    pub qual: Vec<u32>,
    /// The dealers left out, and why (as this member saw it).
    pub disqualified: BTreeMap<u32, Disqualification>,
    /// `SHA-256(TRANSCRIPT_DOMAIN || session_id || u32 n || u32 threshold
    /// || u32 |QUAL| || for each d in QUAL: (u32 d || its commitments,
    /// compressed))`: equal for every member that agrees on the result.
    pub transcript_hash: Digest,
}

/// A dealer's position before justifications are weighed.
pub(crate) enum Standing {
    /// Out, for good.
    Excluded(Disqualification),
    /// In, unless a complaint goes unanswered; the complainers, ascending.
    Accused(Vec<u32>),
    /// In.
    Clean,
}

/// Rules 1 and 2, and the list of complaints for rule 3.
///
/// `my_verdict` is this member's own verdict on the dealer (its own
/// response is also among `responses`).
pub(crate) fn standing(
    dealer: u32,
    my_verdict: Option<&DealerVerdict>,
    responses: &BTreeMap<u32, ResponseMessage>,
) -> Standing {
    let my_hash = match my_verdict {
        None | Some(DealerVerdict::MissingDeal) => {
            return Standing::Excluded(Disqualification::NoDeal)
        }
        Some(DealerVerdict::InvalidDeal(_)) => {
            return Standing::Excluded(Disqualification::InvalidProof)
        }
        Some(v) => v.digest(),
    };
    let mut complainers = Vec::new();
    for (&member, response) in responses {
        match response.verdict(dealer) {
            // Response lengths are checked on receipt; a short one says
            // nothing about this dealer.
            None => {}
            Some(DealerVerdict::MissingDeal) => {
                return Standing::Excluded(Disqualification::ReportedMissing { member })
            }
            Some(v) => {
                if v.digest() != my_hash {
                    return Standing::Excluded(Disqualification::Equivocation { member });
                }
                if v.is_complaint() {
                    complainers.push(member);
                }
            }
        }
    }
    if complainers.is_empty() {
        Standing::Clean
    } else {
        Standing::Accused(complainers)
    }
}

/// Everything [`conclude`] needs, borrowed from the member.
pub(crate) struct Collected<'a> {
    pub(crate) config: &'a DkgConfig,
    /// Commitments of every dealer whose deal this member holds.
    pub(crate) commitments: BTreeMap<u32, &'a PublicKeySet>,
    /// This member's verdicts, `verdicts[d - 1]` about dealer `d`.
    pub(crate) verdicts: &'a [DealerVerdict],
    /// Shares dealt to this member.
    pub(crate) shares: &'a BTreeMap<u32, SecretKeyShare>,
    pub(crate) responses: &'a BTreeMap<u32, ResponseMessage>,
    pub(crate) justifications: &'a BTreeMap<u32, JustificationMessage>,
}

impl Collected<'_> {
    fn verdict(&self, dealer: u32) -> Option<&DealerVerdict> {
        let position = usize::try_from(dealer).ok()?.checked_sub(1)?;
        self.verdicts.get(position)
    }

    pub(crate) fn standing(&self, dealer: u32) -> Standing {
        standing(dealer, self.verdict(dealer), self.responses)
    }

    /// Whether every accused dealer still in the running has sent its
    /// justification, so that waiting longer cannot change the result.
    pub(crate) fn justifications_complete(&self) -> bool {
        (1..=self.config.n()).all(|d| match self.standing(d) {
            Standing::Accused(_) => self.justifications.contains_key(&d),
            Standing::Excluded(_) | Standing::Clean => true,
        })
    }
}

/// Applies the rules and builds this member's key share.
pub(crate) fn conclude<R: RngCore>(
    collected: &Collected<'_>,
    rng: &mut R,
) -> Result<DkgOutput, DkgError> {
    let config = collected.config;
    let me = config.my_index();
    let mut disqualified = BTreeMap::new();
    let mut candidates = Vec::new();
    // Revealed shares to check: (dealer, complainer) and the relation.
    let mut owners = Vec::new();
    let mut relations = Vec::new();
    // The revealed share for this member, per dealer it complained about.
    let mut revealed_to_me: BTreeMap<u32, &SecretKeyShare> = BTreeMap::new();

    for dealer in 1..=config.n() {
        match collected.standing(dealer) {
            Standing::Excluded(reason) => {
                disqualified.insert(dealer, reason);
            }
            Standing::Clean => candidates.push(dealer),
            Standing::Accused(complainers) => {
                let (Some(commitments), Some(justification)) = (
                    collected.commitments.get(&dealer),
                    collected.justifications.get(&dealer),
                ) else {
                    let member = complainers.first().copied().unwrap_or(me);
                    disqualified.insert(dealer, Disqualification::Unjustified { member });
                    continue;
                };
                let mut answered = true;
                for &member in &complainers {
                    // Revealed shares are strictly ascending (checked on
                    // receipt), so a binary search finds the member's.
                    let found = justification
                        .revealed
                        .binary_search_by_key(&member, SecretKeyShare::index)
                        .ok()
                        .and_then(|at| justification.revealed.get(at));
                    let Some(share) = found else {
                        disqualified.insert(dealer, Disqualification::Unjustified { member });
                        answered = false;
                        break;
                    };
                    let public = commitments.public_key_share(member).point();
                    relations.push(Relation::share(share.scalar(), public));
                    owners.push((dealer, member));
                    if member == me {
                        revealed_to_me.insert(dealer, share);
                    }
                }
                if answered {
                    candidates.push(dealer);
                }
            }
        }
    }

    for (ok, &(dealer, member)) in check_relations(&relations, rng).iter().zip(&owners) {
        if !ok {
            disqualified
                .entry(dealer)
                .or_insert(Disqualification::BadJustification { member });
        }
    }
    drop(relations);
    let qual: Vec<u32> = candidates
        .into_iter()
        .filter(|d| !disqualified.contains_key(d))
        .collect();

    let qualified = u32::try_from(qual.len()).unwrap_or(u32::MAX);
    if qualified < config.threshold() {
        return Err(DkgError::QualTooSmall {
            qualified,
            threshold: config.threshold(),
        });
    }

    let public_key_set = sum_commitments(&qual, &collected.commitments, config.threshold())?;
    let secret = sum_shares(&qual, &revealed_to_me, collected.shares, me)?;
    let transcript_hash = transcript_hash(config, &qual, &collected.commitments);
    let key_share = KeyShare::new(config.n(), public_key_set, secret)?;
    Ok(DkgOutput {
        key_share,
        qual,
        disqualified,
        transcript_hash,
    })
}

/// The group key: the coefficient-wise sum of QUAL's commitments.
///
/// Summed in projective form and normalised once per coefficient:
/// [`PublicKeySet::checked_add`] would normalise after every dealer, a
/// field inversion per point, ten times the cost of the additions here.
fn sum_commitments(
    qual: &[u32],
    commitments: &BTreeMap<u32, &PublicKeySet>,
    threshold: u32,
) -> Result<PublicKeySet, DkgError> {
    let mut sums = vec![G1Projective::identity(); threshold as usize];
    for dealer in qual {
        let set = commitments.get(dealer).ok_or(DkgError::DegenerateKey)?;
        for (sum, c) in sums.iter_mut().zip(set.commitments()) {
            *sum += c.affine();
        }
    }
    let points = sums
        .into_iter()
        .map(PublicKey::from_point)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| DkgError::DegenerateKey)?;
    PublicKeySet::new(points).map_err(|_| DkgError::DegenerateKey)
}

/// This member's share: the sum over QUAL of what each dealer gave it
/// (the revealed share where it complained).
fn sum_shares(
    qual: &[u32],
    revealed_to_me: &BTreeMap<u32, &SecretKeyShare>,
    shares: &BTreeMap<u32, SecretKeyShare>,
    me: u32,
) -> Result<SecretKeyShare, DkgError> {
    let mut sum = Scalar::ZERO;
    for dealer in qual {
        let share = revealed_to_me
            .get(dealer)
            .copied()
            .or_else(|| shares.get(dealer))
            .ok_or(DkgError::MissingShare { dealer: *dealer })?;
        sum += share.scalar();
    }
    let secret = SecretKeyShare::new(me, sum).map_err(|_| DkgError::ZeroShare);
    // The sum is the secret share itself: do not leave a copy behind.
    sum = Scalar::ZERO;
    std::hint::black_box(&sum);
    secret
}

fn transcript_hash(
    config: &DkgConfig,
    qual: &[u32],
    commitments: &BTreeMap<u32, &PublicKeySet>,
) -> Digest {
    let mut h = Sha256::new();
    h.update(TRANSCRIPT_DOMAIN);
    h.update(config.session_id().as_bytes());
    h.update(config.n().to_be_bytes());
    h.update(config.threshold().to_be_bytes());
    h.update(u32::try_from(qual.len()).unwrap_or(u32::MAX).to_be_bytes());
    for dealer in qual {
        h.update(dealer.to_be_bytes());
        if let Some(set) = commitments.get(dealer) {
            for c in set.commitments() {
                h.update(c.to_bytes());
            }
        }
    }
    Digest(h.finalize().into())
}
