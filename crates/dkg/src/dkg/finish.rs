//! Deciding QUAL and assembling the key, from what a member collected.
//!
//! The rules, for each dealer `d`. Each depends only on broadcast data
//! (the responses, the justification, and deals named by hashes that
//! every response agrees on), so honest members that received the same
//! responses and justifications decide the same.
//!
//! A member *complains* about `d` unless its verdict is `Valid(h)` with
//! `h` the hash of `d`'s deal: a bad or missing share, a missing deal,
//! another deal's hash, or an invalid proof are all complaints. If every
//! response that holds a deal names the same `h`, that is `d`'s deal; if
//! they name different ones, or some member lacks the deal, `d` must
//! reveal its deal in its justification and that deal is `d`'s (its hash
//! must be `h` when all holders agree on one). Then:
//!
//! 1. the deal has `threshold` commitments and its proof of knowledge
//!    verifies (holders of a deal checked it in their deal phase; the
//!    others check the revealed one);
//! 2. fewer than `threshold` members complain. A coalition below the
//!    threshold cannot reach that many against an honest dealer, and
//!    answering that many would publish `threshold` points of `d`'s
//!    polynomial, i.e. its secret; so a dealer with that many is out, and
//!    does not answer;
//! 3. every complainer's share is revealed in `d`'s justification and
//!    matches the deal's commitments.
//!
//! QUAL is the sorted list of dealers meeting all three. A complainer
//! takes the revealed share as its share, and the revealed deal as the
//! dealer's if it lacked it or held another. A false complaint (a share,
//! a deal or a hash it denies) therefore cannot remove an honest dealer:
//! the dealer answers it, and only the liar's own share becomes public.
//! A dealer that does not answer by the justification deadline, or
//! answers with a share or deal that fails the checks, is out.
//!
//! Deal points are not subgroup-checked on receipt: relations are decided
//! on G1 components and the summed key set is checked here, with a
//! fallback; the argument is in the [`crate::dkg`] module docs
//! ("Deferred subgroup checks").

use std::collections::BTreeMap;

use blst::MultiPoint;
use blstrs::{G1Affine, Scalar};
use ff::Field;
use group::prime::PrimeCurveAffine;
use rand_core::RngCore;
use sha2::{Digest as _, Sha256};

use super::config::Roles;
use super::error::DkgError;
use super::messages::{DealMessage, DealerVerdict, Digest, JustificationMessage, ResponseMessage};
#[cfg(doc)]
use super::point::CommitmentPoint;
use super::verify::{check_relations, Relation};
use crate::keys::{KeyShare, PublicKey, SecretKeyShare};
use crate::public_key_set::PublicKeySet;

/// Domain separation tag of the transcript hash.
pub const TRANSCRIPT_DOMAIN: &[u8] = b"rdht/dkg/transcript/v1";
/// Domain separation tag of a resharing's transcript hash.
pub const RESHARE_TRANSCRIPT_DOMAIN: &[u8] = b"rdht/reshare/transcript/v1";

/// Why a dealer was left out of QUAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disqualification {
    /// This member has no verdict on the dealer (it never ended its deal
    /// phase; the state machine makes this unreachable).
    NoDeal,
    /// The dealer's proof of knowledge does not verify, or (in a
    /// resharing) its constant term is not its old public key share: it
    /// did not deal the share it holds.
    InvalidProof,
    /// `member` received a different deal than another member did.
    Equivocation {
        /// The first member (ascending) whose deal hash differs.
        member: u32,
    },
    /// `threshold` or more members complained about the dealer: more
    /// than a coalition below the threshold can muster against an honest
    /// one.
    TooManyComplaints {
        /// How many complained.
        complaints: u32,
    },
    /// `member` complained and the dealer revealed no share for it (or
    /// sent no justification at all).
    Unjustified {
        /// The complaining member.
        member: u32,
    },
    /// `member` reported the deal missing and the dealer's justification
    /// did not carry it, or carried a deal with another hash than the one
    /// the responses name, or with the wrong number of commitments.
    DealNotRevealed {
        /// The complaining member.
        member: u32,
    },
    /// The share the dealer revealed for `member` does not match its
    /// commitments.
    BadJustification {
        /// The complaining member.
        member: u32,
    },
    /// A sum of QUAL's commitments was outside G1, and this dealer's
    /// commitments or proof nonce `R` are outside G1 (see the module docs).
    NotInSubgroup,
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
    /// In, unless its justification fails to answer.
    Accused(Accusation),
    /// In.
    Clean,
}

/// What an accused dealer's justification must answer.
pub(crate) struct Accusation {
    /// The deal hash every response that holds a deal names (`None`: the
    /// responses disagree, or none holds the deal).
    digest: Option<Digest>,
    /// A member that lacks the deal or holds another one, if any: the
    /// justification must then carry the deal.
    needs_deal: Option<u32>,
    /// Whether responses name different hashes.
    disputed: Option<u32>,
}

/// Rules 1 and 2 as far as the responses decide them.
///
/// `my_verdict` is this member's own verdict on the dealer (its own
/// response is also among `responses`).
pub(crate) fn standing(
    dealer: u32,
    threshold: u32,
    my_verdict: Option<&DealerVerdict>,
    responses: &BTreeMap<u32, ResponseMessage>,
) -> Standing {
    let Some(my_verdict) = my_verdict else {
        return Standing::Excluded(Disqualification::NoDeal);
    };
    let mut digest: Option<Digest> = None;
    let mut disputed = None;
    let mut needs_deal = None;
    let mut complaints = 0u32;
    for (&member, response) in responses {
        // Response lengths are checked on receipt; a short one says
        // nothing about this dealer.
        let Some(verdict) = response.verdict(dealer) else {
            continue;
        };
        match (verdict.digest(), digest) {
            (None, _) => {
                needs_deal.get_or_insert(member);
            }
            (Some(d), None) => digest = Some(*d),
            (Some(d), Some(first)) if *d != first => {
                disputed.get_or_insert(member);
                needs_deal.get_or_insert(member);
            }
            (Some(_), Some(_)) => {}
        }
        if !matches!(verdict, DealerVerdict::Valid(_)) {
            complaints = complaints.saturating_add(1);
        }
    }
    if disputed.is_some() {
        // Which members complain depends on the deal the dealer reveals.
        return Standing::Accused(Accusation {
            digest: None,
            needs_deal,
            disputed,
        });
    }
    if matches!(my_verdict, DealerVerdict::InvalidDeal(_)) {
        // Every holder of a deal with this hash finds the same proof
        // invalid; a member lacking the deal checks the revealed one.
        return Standing::Excluded(Disqualification::InvalidProof);
    }
    if complaints >= threshold {
        return Standing::Excluded(Disqualification::TooManyComplaints { complaints });
    }
    if complaints == 0 {
        Standing::Clean
    } else {
        Standing::Accused(Accusation {
            digest,
            needs_deal,
            disputed: None,
        })
    }
}

/// The members whose verdict on `dealer` is not `Valid(hash)`: they
/// complained, or hold no deal or another one, and need their share
/// revealed against the deal with that hash.
pub(crate) fn complainers(
    dealer: u32,
    hash: &Digest,
    responses: &BTreeMap<u32, ResponseMessage>,
) -> Vec<u32> {
    responses
        .iter()
        .filter(|(_, r)| {
            r.verdict(dealer)
                .is_some_and(|v| *v != DealerVerdict::Valid(*hash))
        })
        .map(|(&m, _)| m)
        .collect()
}

/// Everything [`conclude`] needs, borrowed from the member.
pub(crate) struct Collected<'a> {
    pub(crate) roles: &'a Roles,
    /// The deal of every dealer whose deal this member holds.
    pub(crate) deals: BTreeMap<u32, &'a DealMessage>,
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
        standing(
            dealer,
            self.roles.threshold,
            self.verdict(dealer),
            self.responses,
        )
    }

    /// Whether every accused dealer still in the running has sent its
    /// justification, so that waiting longer cannot change the result.
    pub(crate) fn justifications_complete(&self) -> bool {
        (1..=self.roles.dealers).all(|d| match self.standing(d) {
            Standing::Accused { .. } => self.justifications.contains_key(&d),
            Standing::Excluded(_) | Standing::Clean => true,
        })
    }
}

/// Applies the rules and builds this member's key share. The dealers left
/// out, and why, come back whatever the outcome (a failed run names them
/// too).
pub(crate) fn conclude<R: RngCore>(
    collected: &Collected<'_>,
    rng: &mut R,
) -> (BTreeMap<u32, Disqualification>, Result<DkgOutput, DkgError>) {
    let mut disqualified = BTreeMap::new();
    let result = decide(collected, &mut disqualified, rng);
    (disqualified, result)
}

/// What a relation of the final batch stands for.
enum Claim {
    /// The share revealed for `member` fits the dealer's commitments.
    Share { dealer: u32, member: u32 },
    /// The proof of a deal this member took from a justification.
    Proof { dealer: u32 },
}

fn decide<R: RngCore>(
    collected: &Collected<'_>,
    disqualified: &mut BTreeMap<u32, Disqualification>,
    rng: &mut R,
) -> Result<DkgOutput, DkgError> {
    let roles = collected.roles;
    let Some(me) = roles.my_receiver else {
        // Only receivers conclude (the state machine never asks others).
        return Err(DkgError::NotAReceiver);
    };
    let mut candidates = Vec::new();
    // Relations to check in one batch, and what each stands for.
    let mut claims = Vec::new();
    let mut relations = Vec::new();
    // The revealed share for this member, per dealer it complained about.
    let mut revealed_to_me: BTreeMap<u32, &SecretKeyShare> = BTreeMap::new();
    // The deals the key is made of: this member's, and the ones it lacked
    // and took from justifications.
    let mut deals = collected.deals.clone();

    for dealer in 1..=roles.dealers {
        let accusation = match collected.standing(dealer) {
            Standing::Excluded(reason) => {
                disqualified.insert(dealer, reason);
                continue;
            }
            Standing::Clean => {
                candidates.push(dealer);
                continue;
            }
            Standing::Accused(accusation) => accusation,
        };
        let justification = collected.justifications.get(&dealer);
        // The deal the complaints are judged against: the revealed one if
        // any member lacks the deal or holds another, else the one every
        // response names. Every member checks a revealed deal the same
        // way, whether it holds it or not: the rule must not depend on
        // what only some members received.
        let deal: &DealMessage = match (accusation.needs_deal, accusation.digest) {
            (Some(member), digest) => {
                let revealed = justification.and_then(|j| j.deal.as_ref()).filter(|deal| {
                    deal.commitments.threshold() == roles.threshold
                        && digest.is_none_or(|d| deal.hash() == d)
                });
                let Some(revealed) = revealed else {
                    let reason = match (justification, accusation.disputed) {
                        (_, Some(member)) => Disqualification::Equivocation { member },
                        (None, None) => Disqualification::Unjustified { member },
                        (Some(_), None) => Disqualification::DealNotRevealed { member },
                    };
                    disqualified.insert(dealer, reason);
                    continue;
                };
                if !roles.constant_term_fits(dealer, &revealed.commitments) {
                    disqualified.insert(dealer, Disqualification::InvalidProof);
                    continue;
                }
                let mine = collected
                    .deals
                    .get(&dealer)
                    .copied()
                    .filter(|d| d.hash() == revealed.hash());
                if mine.is_none() {
                    // Holders of a deal with this hash checked its proof in
                    // their deal phase; this member checks it now.
                    relations.push(revealed.proof.relation(
                        &roles.session_id,
                        dealer,
                        revealed.commitments.constant(),
                    ));
                    claims.push(Claim::Proof { dealer });
                }
                revealed
            }
            (None, _) => match collected.deals.get(&dealer) {
                Some(deal) => deal,
                None => {
                    // Unreachable: a member without the deal reported it
                    // missing, so the deal is needed.
                    disqualified.insert(dealer, Disqualification::DealNotRevealed { member: me });
                    continue;
                }
            },
        };
        let complainers = complainers(dealer, &deal.hash(), collected.responses);
        let complaints = u32::try_from(complainers.len()).unwrap_or(u32::MAX);
        if complaints >= roles.threshold {
            disqualified.insert(dealer, Disqualification::TooManyComplaints { complaints });
            continue;
        }
        let Some(justification) = justification else {
            let member = complainers.first().copied().unwrap_or(me);
            disqualified.insert(dealer, Disqualification::Unjustified { member });
            continue;
        };
        deals.insert(dealer, deal);
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
            let public = deal.commitments.public_key_share_point(member);
            relations.push(Relation::share(share.scalar(), public));
            claims.push(Claim::Share { dealer, member });
            if member == me {
                revealed_to_me.insert(dealer, share);
            }
        }
        if answered {
            candidates.push(dealer);
        }
    }

    for (ok, claim) in check_relations(&relations, rng).iter().zip(&claims) {
        if !ok {
            let (dealer, reason) = match *claim {
                Claim::Share { dealer, member } => {
                    (dealer, Disqualification::BadJustification { member })
                }
                Claim::Proof { dealer } => (dealer, Disqualification::InvalidProof),
            };
            disqualified.entry(dealer).or_insert(reason);
        }
    }
    drop(relations);
    let mut qual: Vec<u32> = candidates
        .into_iter()
        .filter(|d| !disqualified.contains_key(d))
        .collect();
    check_size(&qual, roles)?;

    let public_key_set = match combine_commitments(&qual, &deals, roles) {
        Ok(set) => set,
        Err(SumError::OutsideG1) => {
            // Fallback (see the module docs): only broadcast points decide.
            qual.retain(|dealer| {
                let in_g1 = deals.get(dealer).is_some_and(|deal| {
                    deal.commitments.is_in_subgroup() && deal.proof.commitment.is_in_subgroup()
                });
                if !in_g1 {
                    disqualified.insert(*dealer, Disqualification::NotInSubgroup);
                }
                in_g1
            });
            check_size(&qual, roles)?;
            combine_commitments(&qual, &deals, roles).map_err(|_| DkgError::DegenerateKey)?
        }
        Err(SumError::Missing | SumError::Identity) => return Err(DkgError::DegenerateKey),
    };
    if let Some(old) = &roles.old {
        // Every chosen constant term is its dealer's old PK_d (checked), so
        // the interpolation gives the old quorum key back: reported rather
        // than trusted.
        if public_key_set.quorum_key() != old.public_key_set.quorum_key() {
            return Err(DkgError::QuorumKeyChanged);
        }
    }
    let secret = combine_shares(&qual, &revealed_to_me, collected.shares, me, roles)?;
    let transcript_hash = transcript_hash(roles, &qual, &deals);
    let key_share = KeyShare::new(roles.receivers, public_key_set, secret)?;
    Ok(DkgOutput {
        key_share,
        qual,
        disqualified: disqualified.clone(),
        transcript_hash,
    })
}

/// Fewer than `min_qual` qualified dealers make no key (`threshold` in a
/// fresh DKG, the old threshold in a resharing).
fn check_size(qual: &[u32], roles: &Roles) -> Result<(), DkgError> {
    let qualified = u32::try_from(qual.len()).unwrap_or(u32::MAX);
    if qualified < roles.min_qual {
        return Err(DkgError::QualTooSmall {
            qualified,
            threshold: roles.min_qual,
        });
    }
    Ok(())
}

/// Which qualified dealers the key is made of, and with which weights.
///
/// A fresh DKG sums every QUAL dealer's polynomial (weights one). In a
/// resharing each old dealer `d` dealt `lambda_d f_d`, `lambda_d` its
/// Lagrange coefficient at zero over *all* old members: when every old
/// member qualifies, the plain sum of the deals is the interpolation
/// (`sum lambda_d s_d = s`), as cheap as the DKG's. Otherwise the first
/// `old_threshold` dealers of QUAL (ascending) are combined with their
/// Lagrange coefficients `mu_d` over that set: deal `d` is weighted
/// `mu_d / lambda_d` (a multi-scalar multiplication per commitment, the
/// slow path). Every member picks the same dealers from the same QUAL,
/// so every member gets the same polynomial.
struct Combination {
    dealers: Vec<u32>,
    /// `None`: all one. Else `weights[i]` is `dealers[i]`'s.
    weights: Option<Vec<Scalar>>,
}

impl Combination {
    fn new(qual: &[u32], roles: &Roles) -> Self {
        let everyone = qual.len() == roles.dealers as usize;
        let Some(old) = roles.old.as_ref().filter(|_| !everyone) else {
            return Self {
                dealers: qual.to_vec(),
                weights: None,
            };
        };
        let chosen = qual.len().min(roles.min_qual as usize);
        let dealers = qual.get(..chosen).unwrap_or(qual).to_vec();
        let weights = crate::combine::lagrange_coefficients_at_zero(&dealers)
            .into_iter()
            .zip(&dealers)
            .map(|(mu, dealer)| {
                let lambda = old.weight(*dealer).copied().unwrap_or(Scalar::ZERO);
                // lambda_d is never zero (a product of non-zero factors).
                mu * Option::<Scalar>::from(lambda.invert()).unwrap_or(Scalar::ZERO)
            })
            .collect();
        Self {
            dealers,
            weights: Some(weights),
        }
    }
}

/// Why QUAL's commitments do not sum to a key set.
enum SumError {
    /// A QUAL dealer's deal is missing (the rules make this unreachable).
    Missing,
    /// A sum is outside G1: some QUAL dealer sent points outside G1.
    OutsideG1,
    /// A sum is the identity.
    Identity,
}

/// The group key set: the coefficient-wise sum of QUAL's commitments
/// (weighted, in a resharing: see [`Combination`]), each result
/// subgroup-checked (`threshold` checks, about 2 ms for 43).
///
/// Each coefficient's points are summed with blst's bulk affine addition
/// (Montgomery's batch inversion, 5M + 1S per point instead of 8M + 5S
/// for projective-plus-affine; plain curve arithmetic that handles
/// doubling and inverse points, so exact for points outside G1 too), or,
/// weighted, with a Pippenger multi-scalar multiplication (group law only,
/// exact outside G1 too); the sums are normalised with one shared
/// inversion.
fn combine_commitments(
    qual: &[u32],
    deals: &BTreeMap<u32, &DealMessage>,
    roles: &Roles,
) -> Result<PublicKeySet, SumError> {
    let combination = Combination::new(qual, roles);
    let threshold = roles.threshold;
    let chosen_deals = combination
        .dealers
        .iter()
        .map(|dealer| deals.get(dealer).copied().ok_or(SumError::Missing))
        .collect::<Result<Vec<_>, _>>()?;
    let weights: Option<Vec<[u8; 32]>> = combination
        .weights
        .as_ref()
        .map(|weights| weights.iter().map(Scalar::to_bytes_le).collect());
    let mut column: Vec<blst::blst_p1_affine> = Vec::with_capacity(chosen_deals.len());
    let mut sums: Vec<blst::blst_p1> = Vec::with_capacity(threshold as usize);
    for k in 0..threshold as usize {
        column.clear();
        for deal in &chosen_deals {
            // Deals were checked to carry `threshold` commitments on receipt.
            let point = deal.commitments.points().get(k).ok_or(SumError::Missing)?;
            column.push(*point.affine().as_ref());
        }
        sums.push(match &weights {
            _ if column.is_empty() => blst::blst_p1::default(),
            None => column.as_slice().add(),
            Some(weights) => {
                let points: Vec<G1Affine> = column
                    .iter()
                    .map(|raw| {
                        let mut point = G1Affine::identity();
                        *point.as_mut() = *raw;
                        point
                    })
                    .collect();
                *crate::blst_raw::g1_msm(&points, weights, 255).as_ref()
            }
        });
    }
    let affine = blst::p1_affines::from(&sums);
    let mut keys = Vec::with_capacity(sums.len());
    let mut outside = false;
    let mut identity = false;
    for raw in affine.as_slice() {
        let mut point = G1Affine::identity();
        *point.as_mut() = *raw;
        outside |= !bool::from(point.is_torsion_free());
        identity |= bool::from(point.is_identity());
        keys.push(PublicKey(point));
    }
    if outside {
        return Err(SumError::OutsideG1);
    }
    if identity {
        return Err(SumError::Identity);
    }
    // Every point is in G1 and not the identity: `PublicKey`'s invariant.
    PublicKeySet::new(keys).map_err(|_| SumError::Identity)
}

/// This member's share: the sum over the combined dealers of what each
/// gave it (the revealed share where it complained), weighted as the
/// commitments are.
fn combine_shares(
    qual: &[u32],
    revealed_to_me: &BTreeMap<u32, &SecretKeyShare>,
    shares: &BTreeMap<u32, SecretKeyShare>,
    me: u32,
    roles: &Roles,
) -> Result<SecretKeyShare, DkgError> {
    let combination = Combination::new(qual, roles);
    let mut sum = Scalar::ZERO;
    for (position, dealer) in combination.dealers.iter().enumerate() {
        let share = revealed_to_me
            .get(dealer)
            .copied()
            .or_else(|| shares.get(dealer))
            .ok_or(DkgError::MissingShare { dealer: *dealer })?;
        match combination.weights.as_ref().and_then(|w| w.get(position)) {
            Some(weight) => sum += share.scalar() * weight,
            None => sum += share.scalar(),
        }
    }
    let secret = SecretKeyShare::new(me, sum).map_err(|_| DkgError::ZeroShare);
    // The sum is the secret share itself: do not leave a copy behind.
    crate::wipe::scalar(&mut sum);
    secret
}

/// The transcript hash ([`DkgOutput::transcript_hash`]); a resharing's
/// has its own domain tag, and `n` is the number of receivers.
fn transcript_hash(roles: &Roles, qual: &[u32], deals: &BTreeMap<u32, &DealMessage>) -> Digest {
    let mut h = Sha256::new();
    h.update(match roles.old {
        None => TRANSCRIPT_DOMAIN,
        Some(_) => RESHARE_TRANSCRIPT_DOMAIN,
    });
    h.update(roles.session_id.as_bytes());
    h.update(roles.receivers.to_be_bytes());
    h.update(roles.threshold.to_be_bytes());
    h.update(u32::try_from(qual.len()).unwrap_or(u32::MAX).to_be_bytes());
    for dealer in qual {
        h.update(dealer.to_be_bytes());
        if let Some(deal) = deals.get(dealer) {
            for c in deal.commitments.points() {
                h.update(c.to_bytes());
            }
        }
    }
    Digest(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dkg::config::SessionId;
    use crate::dkg::point::testing::torsion_point;
    use crate::dkg::point::{CommitmentPoint, DealCommitments};
    use crate::dkg::proof::ProofOfKnowledge;
    use blstrs::G1Projective;
    use group::Group;

    fn deal(points: &[G1Projective]) -> DealMessage {
        let g = CommitmentPoint::from_point(G1Projective::generator()).unwrap();
        DealMessage {
            session_id: SessionId([0; 32]),
            dealer: 1,
            commitments: DealCommitments::new(
                points
                    .iter()
                    .map(|&p| CommitmentPoint::from_point(p).unwrap())
                    .collect(),
            )
            .unwrap(),
            proof: ProofOfKnowledge {
                commitment: g,
                response: Scalar::ONE,
            },
        }
    }

    fn sum(deals: &[DealMessage], threshold: u32) -> Result<Vec<G1Projective>, &'static str> {
        let map: BTreeMap<u32, &DealMessage> = (1..).zip(deals).collect();
        let qual: Vec<u32> = map.keys().copied().collect();
        let roles = Roles {
            session_id: SessionId([0; 32]),
            dealers: qual.len() as u32,
            receivers: qual.len() as u32,
            my_dealer: Some(1),
            my_receiver: Some(1),
            threshold,
            min_qual: 1,
            phase_timeout_ms: 1,
            old: None,
        };
        match combine_commitments(&qual, &map, &roles) {
            Ok(set) => Ok(set.commitments().iter().map(PublicKey::point).collect()),
            Err(SumError::OutsideG1) => Err("outside"),
            Err(SumError::Identity) => Err("identity"),
            Err(SumError::Missing) => Err("missing"),
        }
    }

    /// Bulk affine addition gives the plain sums, through doublings,
    /// inverse pairs and torsion components.
    #[test]
    fn sums_match_the_group_law() {
        let g = G1Projective::generator();
        let p = g * Scalar::from(11u64);
        let q = g * Scalar::from(1234u64);
        let t = torsion_point();
        let deals: Vec<DealMessage> = (1..=9u64)
            .map(|i| deal(&[g * Scalar::from(i), q * Scalar::from(i * i), p]))
            .collect();
        let expected: Vec<G1Projective> = (0..3)
            .map(|k| {
                deals
                    .iter()
                    .map(|d| d.commitments.points()[k].point())
                    .fold(G1Projective::identity(), |a, b| a + b)
            })
            .collect();
        assert_eq!(sum(&deals, 3), Ok(expected));
        // The same point nine times in column 2 exercised doubling; now an
        // inverse pair (and a torsion pair that cancels).
        let pair = [deal(&[p, q + t]), deal(&[-p + q, -t + g])];
        assert_eq!(sum(&pair, 2), Ok(vec![q, q + g]));
        assert_eq!(sum(&[deal(&[p, q]), deal(&[-p, q])], 2), Err("identity"));
        assert_eq!(sum(&[deal(&[p, q + t]), deal(&[p, q])], 2), Err("outside"));
        assert_eq!(sum(&[deal(&[p])], 2), Err("missing"));
    }
}
