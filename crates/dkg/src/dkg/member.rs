//! One member's DKG state machine.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, RngCore, SeedableRng};
use zeroize::Zeroize;

use super::config::DkgConfig;
use super::error::{DkgError, MessageError};
use super::finish::{conclude, Collected, DkgOutput};
use super::messages::{
    DealMessage, DealerVerdict, Digest, DkgMessage, JustificationMessage, MessageKind,
    ResponseMessage, ShareMessage,
};
use super::verify::{check_relations, Relation};
use crate::keys::SecretKeyShare;
use crate::poly::Polynomial;

/// The phases of a run, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Dealing: collecting every dealer's deal and share.
    Deal,
    /// Responding: collecting every member's verdicts.
    Response,
    /// Justifying: collecting accused dealers' revealed shares.
    Justification,
    /// Done: [`DkgMember::outcome`] holds the result.
    Finished,
}

/// Where an outgoing message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// To this member only (a share).
    Member(u32),
    /// To every other member.
    All,
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Recipient(s).
    pub to: Destination,
    /// The message ([`DkgMessage::encode`] gives its bytes).
    pub message: DkgMessage,
}

/// A deal as received, with its hash computed once.
struct ReceivedDeal {
    message: DealMessage,
    hash: Digest,
}

/// One member of a Joint-Feldman DKG, as a sans-IO state machine.
///
/// Drive it with [`handle_message`](Self::handle_message) for every
/// message that arrives (with the transport-authenticated sender index)
/// and [`handle_timeout`](Self::handle_timeout) when the time from
/// [`poll_deadline`](Self::poll_deadline) comes; after each call, send
/// what [`poll_transmit`](Self::poll_transmit) yields. When
/// [`phase`](Self::phase) is [`Phase::Finished`], [`outcome`](Self::outcome)
/// holds the key share or the reason there is none.
///
/// The phases have absolute deadlines counted from the start:
/// `start + T` (deal), `start + 2T` (response), `start + 3T`
/// (justification), `T` the configured phase timeout. A phase also ends as
/// soon as nothing more can arrive for it: all deals and shares, all
/// responses, or all the justifications that are owed. When every member
/// reports success, that makes the run finish right after the responses
/// ("fast sync"), with no deadline involved.
pub struct DkgMember {
    config: DkgConfig,
    phase: Phase,
    started_at: u64,
    /// For batch-verification coefficients: only has to be unpredictable
    /// to other members. Seeded from the caller's RNG.
    rng: ChaCha20Rng,
    /// This member's secret polynomial, until the run ends.
    polynomial: Option<Polynomial>,
    deals: BTreeMap<u32, ReceivedDeal>,
    /// Shares dealt to this member, its own included.
    shares: BTreeMap<u32, SecretKeyShare>,
    /// This member's verdicts (set when the deal phase ends).
    verdicts: Vec<DealerVerdict>,
    responses: BTreeMap<u32, ResponseMessage>,
    justifications: BTreeMap<u32, JustificationMessage>,
    outgoing: VecDeque<Transmit>,
    outcome: Option<Result<DkgOutput, DkgError>>,
}

impl DkgMember {
    /// Starts a run at time `now`: draws this member's polynomial, queues
    /// its deal (to all) and shares (one to each member), and processes its
    /// own deal. With `n = 1` the run finishes here.
    pub fn new<R: RngCore + CryptoRng>(config: DkgConfig, now: u64, rng: &mut R) -> Self {
        let n = config.n();
        let me = config.my_index();
        let session_id = *config.session_id();
        // A share of zero cannot be encoded (decoders refuse zero
        // scalars), so redraw in the (2^-255-likely) case one is zero.
        let (polynomial, mut dealt, deal) = loop {
            let polynomial = Polynomial::random(config.threshold(), rng);
            let dealt: Option<Vec<SecretKeyShare>> = (1..=n)
                .map(|j| SecretKeyShare::new(j, polynomial.evaluate(j)).ok())
                .collect();
            let deal = DealMessage::new(session_id, me, &polynomial, rng);
            if let (Some(dealt), Some(deal)) = (dealt, deal) {
                break (polynomial, dealt, deal);
            }
        };
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let inner_rng = ChaCha20Rng::from_seed(seed);
        seed.zeroize();

        let mut member = Self {
            config,
            phase: Phase::Deal,
            started_at: now,
            rng: inner_rng,
            polynomial: Some(polynomial),
            deals: BTreeMap::new(),
            shares: BTreeMap::new(),
            verdicts: Vec::new(),
            responses: BTreeMap::new(),
            justifications: BTreeMap::new(),
            outgoing: VecDeque::new(),
            outcome: None,
        };
        member.broadcast(DkgMessage::Deal(deal.clone()));
        for share in dealt.drain(..) {
            let j = share.index();
            if j == me {
                member.shares.insert(me, share);
            } else {
                member.outgoing.push_back(Transmit {
                    to: Destination::Member(j),
                    message: DkgMessage::Share(ShareMessage {
                        session_id,
                        dealer: me,
                        share,
                    }),
                });
            }
        }
        let hash = deal.hash();
        member.deals.insert(
            me,
            ReceivedDeal {
                message: deal,
                hash,
            },
        );
        member.advance(now);
        member
    }

    /// The configuration.
    pub fn config(&self) -> &DkgConfig {
        &self.config
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The result, once [`Phase::Finished`].
    pub fn outcome(&self) -> Option<&Result<DkgOutput, DkgError>> {
        self.outcome.as_ref()
    }

    /// Takes the result out, once [`Phase::Finished`] (then `None`).
    pub fn take_outcome(&mut self) -> Option<Result<DkgOutput, DkgError>> {
        self.outcome.take()
    }

    /// The next message to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outgoing.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called
    /// (milliseconds, same clock as `now`); `None` once finished.
    pub fn poll_deadline(&self) -> Option<u64> {
        self.deadline(self.phase)
    }

    /// Ends every phase whose deadline is `<= now`.
    pub fn handle_timeout(&mut self, now: u64) {
        self.advance(now);
    }

    /// Handles a message from member `from`, as authenticated by the
    /// transport.
    ///
    /// A rejected message changes nothing. Messages for a later phase
    /// than this member's are kept for when it gets there (members move at
    /// different times); messages for a phase that is over are rejected.
    /// Deadlines that have passed by `now` are handled first.
    pub fn handle_message(
        &mut self,
        now: u64,
        from: u32,
        message: DkgMessage,
    ) -> Result<(), MessageError> {
        self.advance(now);
        self.accept(from, message)?;
        self.advance(now);
        Ok(())
    }

    fn accept(&mut self, from: u32, message: DkgMessage) -> Result<(), MessageError> {
        let n = self.config.n();
        if message.session_id() != self.config.session_id() {
            return Err(MessageError::WrongSession);
        }
        if from == 0 || from > n {
            return Err(MessageError::NotAMember { from });
        }
        if from == self.config.my_index() {
            return Err(MessageError::FromSelf);
        }
        if message.sender() != from {
            return Err(MessageError::SenderMismatch {
                from,
                claimed: message.sender(),
            });
        }
        let kind = message.kind();
        if !self.accepts(kind) {
            return Err(MessageError::WrongPhase {
                kind,
                phase: self.phase,
            });
        }
        let duplicate = MessageError::Duplicate { kind, from };
        match message {
            DkgMessage::Deal(deal) => {
                let got = deal.commitments.threshold();
                if got != self.config.threshold() {
                    return Err(MessageError::CommitmentCount {
                        expected: self.config.threshold(),
                        got,
                    });
                }
                if self.deals.contains_key(&from) {
                    return Err(duplicate);
                }
                let hash = deal.hash();
                self.deals.insert(
                    from,
                    ReceivedDeal {
                        message: deal,
                        hash,
                    },
                );
            }
            DkgMessage::Share(share) => {
                let recipient = share.share.index();
                if recipient != self.config.my_index() {
                    return Err(MessageError::WrongRecipient { recipient });
                }
                if self.shares.contains_key(&from) {
                    return Err(duplicate);
                }
                self.shares.insert(from, share.share);
            }
            DkgMessage::Response(response) => {
                let got = u32::try_from(response.verdicts.len()).unwrap_or(u32::MAX);
                if got != n {
                    return Err(MessageError::VerdictCount { expected: n, got });
                }
                if self.responses.contains_key(&from) {
                    return Err(duplicate);
                }
                self.responses.insert(from, response);
            }
            DkgMessage::Justification(justification) => {
                if justification.revealed.is_empty() {
                    return Err(MessageError::EmptyJustification);
                }
                let mut previous = 0;
                for share in &justification.revealed {
                    let index = share.index();
                    if index == 0 || index > n {
                        return Err(MessageError::IndexOutOfRange { index });
                    }
                    if index <= previous {
                        return Err(MessageError::NotAscending);
                    }
                    previous = index;
                }
                if self.justifications.contains_key(&from) {
                    return Err(duplicate);
                }
                self.justifications.insert(from, justification);
            }
        }
        Ok(())
    }

    /// Whether a message of `kind` can still matter: its phase is the
    /// current one or a later one.
    fn accepts(&self, kind: MessageKind) -> bool {
        let message_phase = match kind {
            MessageKind::Deal | MessageKind::Share => Phase::Deal,
            MessageKind::Response => Phase::Response,
            MessageKind::Justification => Phase::Justification,
        };
        self.phase != Phase::Finished && message_phase >= self.phase
    }

    /// The absolute deadline of `phase`.
    fn deadline(&self, phase: Phase) -> Option<u64> {
        let periods = match phase {
            Phase::Deal => 1,
            Phase::Response => 2,
            Phase::Justification => 3,
            Phase::Finished => return None,
        };
        Some(
            self.started_at
                .saturating_add(self.config.phase_timeout_ms().saturating_mul(periods)),
        )
    }

    fn past_deadline(&self, now: u64) -> bool {
        self.deadline(self.phase).is_some_and(|d| now >= d)
    }

    /// Ends phases for as long as one is complete or out of time.
    fn advance(&mut self, now: u64) {
        loop {
            let n = self.config.n() as usize;
            match self.phase {
                Phase::Deal => {
                    if self.deals.len() == n && self.shares.len() == n || self.past_deadline(now) {
                        self.end_deal_phase();
                    } else {
                        return;
                    }
                }
                Phase::Response => {
                    if self.responses.len() == n || self.past_deadline(now) {
                        self.end_response_phase();
                    } else {
                        return;
                    }
                }
                Phase::Justification => {
                    if self.collected().justifications_complete() || self.past_deadline(now) {
                        self.finish();
                    } else {
                        return;
                    }
                }
                Phase::Finished => return,
            }
        }
    }

    /// Verifies every deal and share received (one batch), then
    /// broadcasts this member's verdicts.
    fn end_deal_phase(&mut self) {
        let me = self.config.my_index();
        let session_id = *self.config.session_id();
        let mut relations = Vec::new();
        // (dealer, whether the relation is the share's rather than the proof's)
        let mut owners = Vec::new();
        for (&dealer, deal) in &self.deals {
            if dealer == me {
                continue;
            }
            let commitments = &deal.message.commitments;
            relations.push(deal.message.proof.relation(
                &session_id,
                dealer,
                commitments.constant(),
            ));
            owners.push((dealer, false));
            if let Some(share) = self.shares.get(&dealer) {
                let public = commitments.public_key_share_point(me);
                relations.push(Relation::share(share.scalar(), public));
                owners.push((dealer, true));
            }
        }
        let results = check_relations(&relations, &mut self.rng);
        drop(relations);
        let mut bad_proof = BTreeSet::new();
        let mut bad_share = BTreeSet::new();
        for (&ok, &(dealer, is_share)) in results.iter().zip(&owners) {
            if !ok {
                if is_share {
                    bad_share.insert(dealer);
                } else {
                    bad_proof.insert(dealer);
                }
            }
        }
        self.verdicts = (1..=self.config.n())
            .map(|dealer| match self.deals.get(&dealer) {
                None => DealerVerdict::MissingDeal,
                Some(deal) if bad_proof.contains(&dealer) => DealerVerdict::InvalidDeal(deal.hash),
                Some(deal) if !self.shares.contains_key(&dealer) => {
                    DealerVerdict::MissingShare(deal.hash)
                }
                Some(deal) if bad_share.contains(&dealer) => DealerVerdict::BadShare(deal.hash),
                Some(deal) => DealerVerdict::Valid(deal.hash),
            })
            .collect();
        let response = ResponseMessage {
            session_id,
            member: me,
            verdicts: self.verdicts.clone(),
        };
        self.broadcast(DkgMessage::Response(response.clone()));
        self.responses.insert(me, response);
        self.phase = Phase::Response;
    }

    /// Answers the complaints against this member's deal by revealing the
    /// complainers' shares.
    fn end_response_phase(&mut self) {
        let me = self.config.my_index();
        self.phase = Phase::Justification;
        let complainers: Vec<u32> = self
            .responses
            .iter()
            .filter(|(_, r)| r.verdict(me).is_some_and(DealerVerdict::is_complaint))
            .map(|(&m, _)| m)
            .collect();
        if complainers.is_empty() {
            return;
        }
        let Some(polynomial) = &self.polynomial else {
            return;
        };
        let revealed: Vec<SecretKeyShare> = complainers
            .iter()
            .filter_map(|&m| SecretKeyShare::new(m, polynomial.evaluate(m)).ok())
            .collect();
        let justification = JustificationMessage {
            session_id: *self.config.session_id(),
            dealer: me,
            revealed,
        };
        self.broadcast(DkgMessage::Justification(justification.clone()));
        self.justifications.insert(me, justification);
    }

    fn collected(&self) -> Collected<'_> {
        Collected {
            config: &self.config,
            deals: self
                .deals
                .iter()
                .map(|(&d, deal)| (d, &deal.message))
                .collect(),
            verdicts: &self.verdicts,
            shares: &self.shares,
            responses: &self.responses,
            justifications: &self.justifications,
        }
    }

    fn finish(&mut self) {
        let mut rng = self.rng.clone();
        let outcome = conclude(&self.collected(), &mut rng);
        self.rng = rng;
        self.outcome = Some(outcome);
        self.phase = Phase::Finished;
        // Secrets are no longer needed: drop (and so overwrite) them, and
        // free what peers sent.
        self.polynomial = None;
        self.shares.clear();
        self.justifications.clear();
        self.deals.clear();
        self.responses.clear();
    }

    fn broadcast(&mut self, message: DkgMessage) {
        // Alone, there is nobody to tell.
        if self.config.n() > 1 {
            self.outgoing.push_back(Transmit {
                to: Destination::All,
                message,
            });
        }
    }
}

impl std::fmt::Debug for DkgMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkgMember")
            .field("config", &self.config)
            .field("phase", &self.phase)
            .field("deals", &self.deals.len())
            .field("shares", &self.shares.len())
            .field("responses", &self.responses.len())
            .field("justifications", &self.justifications.len())
            .finish_non_exhaustive()
    }
}
