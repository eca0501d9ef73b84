//! One member's DKG state machine.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, RngCore, SeedableRng};
use zeroize::Zeroize;

use super::config::{DkgConfig, Roles, SessionId};
use super::error::{DkgError, MessageError};
use super::finish::{conclude, Collected, Disqualification, DkgOutput};
use super::messages::{
    DealMessage, DealerVerdict, Digest, DkgMessage, HelloMessage, JustificationMessage,
    MessageKind, ResponseMessage, ShareMessage,
};
use super::verify::{check_relations, Relation};
use crate::keys::SecretKeyShare;
use crate::poly::Polynomial;

/// The phases of a run, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Greeting: collecting every member's nonce for the run's session id
    /// (only in runs started with [`DkgMember::with_hello`]).
    Hello,
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

/// Who sent a message, as the transport authenticated it: the sender's
/// dealer index and receiver index (equal in a fresh DKG; in a resharing,
/// its old and new index, either absent when it has no such role).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sender {
    pub(crate) dealer: Option<u32>,
    pub(crate) receiver: Option<u32>,
}

impl Sender {
    /// A fresh DKG's member `index`, dealer and receiver alike.
    fn both(index: u32) -> Self {
        Self {
            dealer: Some(index),
            receiver: Some(index),
        }
    }
}

/// A deal as received, with its hash computed once.
struct ReceivedDeal {
    message: DealMessage,
    hash: Digest,
}

/// The hello round's state.
struct HelloRound {
    /// The quorum's base session id, which hellos carry.
    base: SessionId,
    /// When the round ends at the latest.
    deadline: u64,
    /// The nonces of this attempt, this member's included.
    nonces: BTreeMap<u32, [u8; 32]>,
    /// Messages of a run session (which cannot be checked yet) that came
    /// before the round ended here; at most four per member.
    early: Vec<(u32, DkgMessage)>,
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
    /// Who deals and who receives (a fresh DKG: everyone, one index).
    roles: Roles,
    phase: Phase,
    /// When the deal phase started (the phases' deadlines count from it).
    started_at: u64,
    /// Which run of the quorum this is.
    attempt: u64,
    /// Set during the hello round.
    hello: Option<HelloRound>,
    /// The dealers left out once finished, and why.
    disqualified: BTreeMap<u32, Disqualification>,
    /// For batch-verification coefficients: only has to be unpredictable
    /// to other members. Seeded from the caller's RNG.
    rng: ChaCha20Rng,
    /// This member's secret polynomial, until the run ends (a dealer's).
    polynomial: Option<Polynomial>,
    /// In a resharing, the old share this member deals (its polynomial's
    /// constant term), until it has dealt.
    old_share: Option<SecretKeyShare>,
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
    /// Starts a run at time `now` in a session all members already agree
    /// on (`config`'s): draws this member's polynomial, queues its deal (to
    /// all) and shares (one to each member), and processes its own deal.
    /// With `n = 1` the run finishes here.
    pub fn new<R: RngCore + CryptoRng>(config: DkgConfig, now: u64, rng: &mut R) -> Self {
        Self::start(Roles::fresh(&config), None, now, rng)
    }

    /// Starts a run of `roles` at `now` (the deal phase; no hello round).
    /// A resharing dealer passes its old share, the constant term of the
    /// polynomial it deals.
    pub(crate) fn start<R: RngCore + CryptoRng>(
        roles: Roles,
        old_share: Option<SecretKeyShare>,
        now: u64,
        rng: &mut R,
    ) -> Self {
        let mut member = Self::blank(roles, 0, now, rng);
        member.old_share = old_share;
        member.deal(now);
        member.advance(now);
        member
    }

    /// Starts run number `attempt` of the quorum whose *base* session id
    /// is `config`'s, with a hello round first: this member broadcasts a
    /// fresh random nonce, and once every member's nonce is in (or the
    /// phase timeout has passed) the run's session id binds them all
    /// ([`SessionId::for_run`]); then the deal phase starts, as in
    /// [`DkgMember::new`].
    ///
    /// A hello of a higher attempt moves the member to that attempt (with a
    /// new nonce; the round's deadline stays), so that members retrying at
    /// different times meet in one run. Fewer than `threshold` nonces at
    /// the end of the round finish the run with
    /// [`DkgError::TooFewHellos`].
    pub fn with_hello<R: RngCore + CryptoRng>(
        config: DkgConfig,
        attempt: u64,
        now: u64,
        rng: &mut R,
    ) -> Self {
        let mut member = Self::blank(Roles::fresh(&config), attempt, now, rng);
        member.phase = Phase::Hello;
        member.hello = Some(HelloRound {
            base: member.roles.session_id,
            deadline: now.saturating_add(member.roles.phase_timeout_ms),
            nonces: BTreeMap::new(),
            early: Vec::new(),
        });
        member.greet(attempt);
        member.advance(now);
        member
    }

    fn blank<R: RngCore + CryptoRng>(roles: Roles, attempt: u64, now: u64, rng: &mut R) -> Self {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let inner_rng = ChaCha20Rng::from_seed(seed);
        seed.zeroize();
        Self {
            roles,
            phase: Phase::Deal,
            started_at: now,
            attempt,
            hello: None,
            disqualified: BTreeMap::new(),
            rng: inner_rng,
            polynomial: None,
            old_share: None,
            deals: BTreeMap::new(),
            shares: BTreeMap::new(),
            verdicts: Vec::new(),
            responses: BTreeMap::new(),
            justifications: BTreeMap::new(),
            outgoing: VecDeque::new(),
            outcome: None,
        }
    }

    /// Draws a nonce for `attempt` and broadcasts it (forgetting the
    /// nonces of any earlier attempt).
    fn greet(&mut self, attempt: u64) {
        // Hello rounds are fresh DKG runs only, where everyone deals.
        let me = self.roles.my_dealer.unwrap_or(0);
        let mut nonce = [0u8; 32];
        self.rng.fill_bytes(&mut nonce);
        self.attempt = attempt;
        let Some(hello) = self.hello.as_mut() else {
            return;
        };
        hello.nonces.clear();
        hello.nonces.insert(me, nonce);
        let message = DkgMessage::Hello(HelloMessage {
            session_id: hello.base,
            member: me,
            attempt,
            nonce,
        });
        self.broadcast(message);
    }

    /// The deal (a dealer's): draws this member's polynomial, queues its
    /// deal (to all) and shares (one to each receiver), and keeps its own
    /// deal, and its own share if it also receives. The polynomial comes
    /// from the member's own ChaCha20 stream, seeded from the caller's
    /// cryptographic RNG; in a resharing its constant term is the old
    /// share.
    fn deal(&mut self, now: u64) {
        self.phase = Phase::Deal;
        self.started_at = now;
        let Some(me) = self.roles.my_dealer else {
            return;
        };
        let receivers = self.roles.receivers;
        let session_id = self.roles.session_id;
        let old_share = self.old_share.take();
        // A share of zero cannot be encoded (decoders refuse zero
        // scalars), so redraw in the (2^-255-likely) case one is zero.
        let (polynomial, mut dealt, deal) = loop {
            let polynomial = match &old_share {
                Some(old) => Polynomial::random_with_secret(
                    old.scalar(),
                    self.roles.threshold,
                    &mut self.rng,
                ),
                None => Polynomial::random(self.roles.threshold, &mut self.rng),
            };
            let dealt: Option<Vec<SecretKeyShare>> = (1..=receivers)
                .map(|j| SecretKeyShare::new(j, polynomial.evaluate(j)).ok())
                .collect();
            let deal = DealMessage::new(session_id, me, &polynomial, &mut self.rng);
            if let (Some(dealt), Some(deal)) = (dealt, deal) {
                break (polynomial, dealt, deal);
            }
        };
        self.polynomial = Some(polynomial);
        self.broadcast(DkgMessage::Deal(deal.clone()));
        for share in dealt.drain(..) {
            let j = share.index();
            if Some(j) == self.roles.my_receiver {
                self.shares.insert(me, share);
            } else {
                self.outgoing.push_back(Transmit {
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
        self.deals.insert(
            me,
            ReceivedDeal {
                message: deal,
                hash,
            },
        );
    }

    /// Which run of the quorum this is (0 without a hello round).
    pub fn attempt(&self) -> u64 {
        self.attempt
    }

    /// The dealers left out of QUAL and why, once [`Phase::Finished`]
    /// (whether or not a key came of it).
    pub fn disqualified(&self) -> &BTreeMap<u32, Disqualification> {
        &self.disqualified
    }

    /// The session id messages must carry (with a hello round: the base
    /// id until the round ends, the run's after).
    pub fn session_id(&self) -> &SessionId {
        &self.roles.session_id
    }

    /// Who deals and who receives.
    pub(crate) fn roles(&self) -> &Roles {
        &self.roles
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
        self.handle_from(now, Sender::both(from), message)
    }

    /// [`handle_message`](Self::handle_message) with the sender's indices
    /// in both roles (a resharing numbers dealers and receivers apart).
    pub(crate) fn handle_from(
        &mut self,
        now: u64,
        from: Sender,
        message: DkgMessage,
    ) -> Result<(), MessageError> {
        self.advance(now);
        self.accept(from, message)?;
        self.advance(now);
        Ok(())
    }

    fn accept(&mut self, from: Sender, message: DkgMessage) -> Result<(), MessageError> {
        if self.phase == Phase::Hello {
            return self.accept_in_hello(from, message);
        }
        if message.session_id() != &self.roles.session_id {
            return Err(MessageError::WrongSession);
        }
        let from = self.check_sender(from, &message)?;
        let kind = message.kind();
        // A dealer that receives nothing (an old member leaving at a
        // resharing) needs only the responses, to answer complaints.
        if self.roles.my_receiver.is_none() && kind != MessageKind::Response {
            return Err(MessageError::NotAReceiver { kind });
        }
        if !self.accepts(kind) {
            return Err(MessageError::WrongPhase {
                kind,
                phase: self.phase,
            });
        }
        let duplicate = MessageError::Duplicate { kind, from };
        match message {
            // `accepts` refuses hellos outside the hello round.
            DkgMessage::Hello(_) => {
                return Err(MessageError::WrongPhase {
                    kind,
                    phase: self.phase,
                })
            }
            DkgMessage::Deal(deal) => {
                let got = deal.commitments.threshold();
                if got != self.roles.threshold {
                    return Err(MessageError::CommitmentCount {
                        expected: self.roles.threshold,
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
                if Some(recipient) != self.roles.my_receiver {
                    return Err(MessageError::WrongRecipient { recipient });
                }
                if self.shares.contains_key(&from) {
                    return Err(duplicate);
                }
                self.shares.insert(from, share.share);
            }
            DkgMessage::Response(response) => {
                let expected = self.roles.dealers;
                let got = u32::try_from(response.verdicts.len()).unwrap_or(u32::MAX);
                if got != expected {
                    return Err(MessageError::VerdictCount { expected, got });
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
                    if index == 0 || index > self.roles.receivers {
                        return Err(MessageError::IndexOutOfRange { index });
                    }
                    if index <= previous {
                        return Err(MessageError::NotAscending);
                    }
                    previous = index;
                }
                if justification.deal.as_ref().is_some_and(|deal| {
                    deal.dealer != from || deal.session_id != justification.session_id
                }) {
                    return Err(MessageError::ForeignDeal);
                }
                if self.justifications.contains_key(&from) {
                    return Err(duplicate);
                }
                self.justifications.insert(from, justification);
            }
        }
        Ok(())
    }

    /// The transport-authenticated sender is a fellow participant in the
    /// role the message is sent in (a dealer for deals, shares and
    /// justifications, a receiver for responses) and the one the message
    /// names. Returns its index in that role.
    fn check_sender(&self, from: Sender, message: &DkgMessage) -> Result<u32, MessageError> {
        let (index, count, mine) = match message.kind() {
            MessageKind::Response => (from.receiver, self.roles.receivers, self.roles.my_receiver),
            MessageKind::Hello
            | MessageKind::Deal
            | MessageKind::Share
            | MessageKind::Justification => (from.dealer, self.roles.dealers, self.roles.my_dealer),
        };
        let from = index.unwrap_or(0);
        if from == 0 || from > count {
            return Err(MessageError::NotAMember { from });
        }
        if Some(from) == mine {
            return Err(MessageError::FromSelf);
        }
        if message.sender() != from {
            return Err(MessageError::SenderMismatch {
                from,
                claimed: message.sender(),
            });
        }
        Ok(from)
    }

    /// A message during the hello round: a hello of this attempt is
    /// kept, one of a later attempt moves this member to it, and anything
    /// else (which carries a run's session id, not yet known here) waits,
    /// unchecked, for the round to end.
    fn accept_in_hello(&mut self, from: Sender, message: DkgMessage) -> Result<(), MessageError> {
        let n = self.roles.dealers;
        let from = self.check_sender(from, &message)?;
        let attempt = self.attempt;
        let Some(round) = self.hello.as_mut() else {
            return Err(MessageError::WrongPhase {
                kind: message.kind(),
                phase: self.phase,
            });
        };
        let DkgMessage::Hello(hello) = message else {
            // No run uses the base id: such a message is of no session.
            if message.session_id() == &round.base {
                return Err(MessageError::WrongSession);
            }
            if round.early.len() >= 4 * n as usize {
                return Err(MessageError::EarlyBufferFull);
            }
            round.early.push((from, message));
            return Ok(());
        };
        if hello.session_id != round.base {
            return Err(MessageError::WrongSession);
        }
        if hello.attempt < attempt {
            return Err(MessageError::StaleAttempt {
                attempt: hello.attempt,
                current: attempt,
            });
        }
        if hello.attempt > attempt {
            self.greet(hello.attempt);
        }
        let Some(round) = self.hello.as_mut() else {
            return Ok(());
        };
        if round.nonces.contains_key(&from) {
            return Err(MessageError::Duplicate {
                kind: MessageKind::Hello,
                from,
            });
        }
        round.nonces.insert(from, hello.nonce);
        Ok(())
    }

    /// Ends the hello round: fixes the run's session id from the nonces
    /// in, deals, and takes the messages that waited for it.
    fn end_hello_phase(&mut self, now: u64) {
        let Some(round) = self.hello.take() else {
            return;
        };
        let got = u32::try_from(round.nonces.len()).unwrap_or(u32::MAX);
        if got < self.roles.threshold {
            self.outcome = Some(Err(DkgError::TooFewHellos {
                got,
                threshold: self.roles.threshold,
            }));
            self.phase = Phase::Finished;
            return;
        }
        let session = round.base.for_run(self.attempt, &round.nonces);
        self.roles.session_id = session;
        self.deal(now);
        for (from, message) in round.early {
            // A message of another session (an earlier run, or members that
            // ended the round with other nonces) is dropped like any other.
            let _ = self.accept(Sender::both(from), message);
        }
    }

    /// Whether a message of `kind` can still matter: its phase is the
    /// current one or a later one.
    fn accepts(&self, kind: MessageKind) -> bool {
        let message_phase = match kind {
            MessageKind::Hello => Phase::Hello,
            MessageKind::Deal | MessageKind::Share => Phase::Deal,
            MessageKind::Response => Phase::Response,
            MessageKind::Justification => Phase::Justification,
        };
        self.phase != Phase::Finished && message_phase >= self.phase
    }

    /// The absolute deadline of `phase`.
    fn deadline(&self, phase: Phase) -> Option<u64> {
        let periods = match phase {
            Phase::Hello => return self.hello.as_ref().map(|h| h.deadline),
            Phase::Deal => 1,
            Phase::Response => 2,
            Phase::Justification => 3,
            Phase::Finished => return None,
        };
        Some(
            self.started_at
                .saturating_add(self.roles.phase_timeout_ms.saturating_mul(periods)),
        )
    }

    fn past_deadline(&self, now: u64) -> bool {
        self.deadline(self.phase).is_some_and(|d| now >= d)
    }

    /// Ends phases for as long as one is complete or out of time.
    fn advance(&mut self, now: u64) {
        loop {
            let dealers = self.roles.dealers as usize;
            let receivers = self.roles.receivers as usize;
            let receiving = self.roles.my_receiver.is_some();
            match self.phase {
                Phase::Hello => {
                    let all_in = self
                        .hello
                        .as_ref()
                        .is_none_or(|h| h.nonces.len() == dealers);
                    if all_in || self.past_deadline(now) {
                        self.end_hello_phase(now);
                    } else {
                        return;
                    }
                }
                Phase::Deal => {
                    // A dealer that receives nothing has nothing to wait for.
                    let all_in = self.deals.len() == dealers && self.shares.len() == dealers;
                    if !receiving || all_in || self.past_deadline(now) {
                        self.end_deal_phase();
                    } else {
                        return;
                    }
                }
                Phase::Response => {
                    if self.responses.len() == receivers || self.past_deadline(now) {
                        self.end_response_phase();
                    } else {
                        return;
                    }
                }
                Phase::Justification => {
                    // A dealer that receives nothing is done once it has
                    // answered the complaints against it.
                    if !receiving
                        || self.collected().justifications_complete()
                        || self.past_deadline(now)
                    {
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
    /// broadcasts this member's verdicts (a receiver's; a dealer that
    /// receives nothing just moves on).
    fn end_deal_phase(&mut self) {
        self.phase = Phase::Response;
        let Some(me) = self.roles.my_receiver else {
            return;
        };
        let session_id = self.roles.session_id;
        let mut relations = Vec::new();
        // (dealer, whether the relation is the share's rather than the proof's)
        let mut owners = Vec::new();
        let mut bad_proof = BTreeSet::new();
        if let Some(old) = &self.roles.old {
            // A resharing dealer must deal the share it holds (weighted).
            let constants: Vec<(u32, &blstrs::G1Affine)> = self
                .deals
                .iter()
                .filter(|(&dealer, _)| Some(dealer) != self.roles.my_dealer)
                .map(|(&dealer, deal)| (dealer, deal.message.commitments.constant().affine()))
                .collect();
            let fits = old.check_constants(&constants, &mut self.rng);
            for (&(dealer, _), ok) in constants.iter().zip(fits) {
                if !ok {
                    bad_proof.insert(dealer);
                }
            }
        }
        for (&dealer, deal) in &self.deals {
            if Some(dealer) == self.roles.my_dealer || bad_proof.contains(&dealer) {
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
        self.verdicts = (1..=self.roles.dealers)
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
    }

    /// Answers the complaints against this member's deal (a dealer's) by
    /// revealing the complainers' shares (every receiver whose verdict is
    /// not `Valid` with this deal's hash), and the deal itself if one of
    /// them lacks it or names another. With `threshold` complaints or more
    /// it stays silent: it is out anyway, and answering would publish its
    /// polynomial (in a resharing, its old share).
    fn end_response_phase(&mut self) {
        self.phase = Phase::Justification;
        let Some(me) = self.roles.my_dealer else {
            return;
        };
        let Some(hash) = self.deals.get(&me).map(|d| d.hash) else {
            return;
        };
        let complainers = super::finish::complainers(me, &hash, &self.responses);
        let deal_missing = complainers.iter().any(|m| {
            self.responses
                .get(m)
                .and_then(|r| r.verdict(me))
                .is_some_and(|v| v.digest() != Some(&hash))
        });
        let complaints = u32::try_from(complainers.len()).unwrap_or(u32::MAX);
        if complainers.is_empty() || complaints >= self.roles.threshold {
            return;
        }
        let Some(polynomial) = &self.polynomial else {
            return;
        };
        let revealed: Vec<SecretKeyShare> = complainers
            .iter()
            .filter_map(|&m| SecretKeyShare::new(m, polynomial.evaluate(m)).ok())
            .collect();
        let deal = if deal_missing {
            self.deals.get(&me).map(|d| d.message.clone())
        } else {
            None
        };
        let justification = JustificationMessage {
            session_id: self.roles.session_id,
            dealer: me,
            revealed,
            deal,
        };
        self.broadcast(DkgMessage::Justification(justification.clone()));
        self.justifications.insert(me, justification);
    }

    fn collected(&self) -> Collected<'_> {
        Collected {
            roles: &self.roles,
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
        if self.roles.my_receiver.is_some() {
            let mut rng = self.rng.clone();
            let (disqualified, outcome) = conclude(&self.collected(), &mut rng);
            self.rng = rng;
            self.disqualified = disqualified;
            self.outcome = Some(outcome);
        }
        self.phase = Phase::Finished;
        // Secrets are no longer needed: drop (and so overwrite) them, and
        // free what peers sent.
        self.polynomial = None;
        self.old_share = None;
        self.shares.clear();
        self.justifications.clear();
        self.deals.clear();
        self.responses.clear();
    }

    fn broadcast(&mut self, message: DkgMessage) {
        // Alone, there is nobody to tell.
        if !self.roles.alone() {
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
            .field("roles", &self.roles)
            .field("attempt", &self.attempt)
            .field("phase", &self.phase)
            .field("deals", &self.deals.len())
            .field("shares", &self.shares.len())
            .field("responses", &self.responses.len())
            .field("justifications", &self.justifications.len())
            .finish_non_exhaustive()
    }
}
