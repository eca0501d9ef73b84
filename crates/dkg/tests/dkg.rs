//! End-to-end runs of the DKG state machine under a deterministic driver:
//! seeded ChaCha RNGs, virtual time, every message encoded and decoded on
//! the way, and adversaries that rewrite or drop messages in flight.

use std::collections::BTreeMap;

use blstrs::{G1Affine, G1Projective, Scalar};
use dkg::{
    combine_signatures, CommitmentPoint, DealCommitments, DealMessage, DealerVerdict, Destination,
    Disqualification, DkgConfig, DkgError, DkgMember, DkgMessage, DkgOutput, JustificationMessage,
    MessageError, MessageKind, Phase, Polynomial, ProofOfKnowledge, PublicKeySet, ResponseMessage,
    SecretKeyShare, SessionId, ShareMessage,
};
use ff::Field;
use group::{Curve, Group};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// Phase timeout of every test run.
const T: u64 = 1_000;
/// One-way delay of every message.
const LATENCY: u64 = 5;
const NONCE: &[u8] = b"test-nonce";

/// Rewrites (or drops, with `None`) a message from `from` to `to`.
type Tamper = Box<dyn FnMut(u32, u32, DkgMessage) -> Option<DkgMessage>>;

fn identities(n: u32) -> Vec<Vec<u8>> {
    (1..=n).map(|i| format!("peer-{i}").into_bytes()).collect()
}

fn config(n: u32, threshold: u32, me: u32) -> DkgConfig {
    DkgConfig::new(&identities(n), threshold, NONCE, me, T).unwrap()
}

fn session(n: u32, threshold: u32) -> SessionId {
    SessionId::new(&identities(n), threshold, NONCE)
}

/// A network of members on a virtual clock.
struct Net {
    n: u32,
    now: u64,
    members: BTreeMap<u32, DkgMember>,
    /// (delivery time, sequence) -> (from, to, encoded message)
    queue: BTreeMap<(u64, u64), (u32, u32, Vec<u8>)>,
    seq: u64,
    finished_at: BTreeMap<u32, u64>,
    /// Rejections returned by `handle_message` during delivery.
    rejected: Vec<(u32, MessageError)>,
    tamper: Tamper,
    /// Extra delay for messages of one kind on one link.
    extra_delay: BTreeMap<(u32, u32, MessageKind), u64>,
    /// Messages put on the wire (after tampering), per kind.
    sent: BTreeMap<MessageKind, usize>,
}

impl Net {
    /// All members except `silent` (who never send anything) start at 0.
    fn new(n: u32, threshold: u32, seed: u64, silent: &[u32]) -> Self {
        let members = (1..=n)
            .filter(|i| !silent.contains(i))
            .map(|i| {
                let mut rng =
                    ChaCha20Rng::seed_from_u64(seed.wrapping_mul(1000).wrapping_add(u64::from(i)));
                (i, DkgMember::new(config(n, threshold, i), 0, &mut rng))
            })
            .collect();
        let mut net = Self {
            n,
            now: 0,
            members,
            queue: BTreeMap::new(),
            seq: 0,
            finished_at: BTreeMap::new(),
            rejected: Vec::new(),
            tamper: Box::new(|_, _, m| Some(m)),
            extra_delay: BTreeMap::new(),
            sent: BTreeMap::new(),
        };
        net.note_finished();
        net
    }

    /// As [`Net::new`], but every member starts with a hello round, at
    /// the attempt `attempts` gives it.
    fn with_hello(
        n: u32,
        threshold: u32,
        seed: u64,
        silent: &[u32],
        attempts: impl Fn(u32) -> u64,
    ) -> Self {
        let mut net = Self::new(n, threshold, seed, silent);
        net.members = (1..=n)
            .filter(|i| !silent.contains(i))
            .map(|i| {
                let mut rng =
                    ChaCha20Rng::seed_from_u64(seed.wrapping_mul(1000).wrapping_add(u64::from(i)));
                let member =
                    DkgMember::with_hello(config(n, threshold, i), attempts(i), 0, &mut rng);
                (i, member)
            })
            .collect();
        net.finished_at.clear();
        net.note_finished();
        net
    }

    /// The run session ids the members ended their hello round with.
    fn sessions(&self) -> BTreeMap<u32, SessionId> {
        self.members
            .iter()
            .map(|(&i, m)| (i, *m.session_id()))
            .collect()
    }

    fn with_tamper(mut self, tamper: Tamper) -> Self {
        self.tamper = tamper;
        self
    }

    /// Moves every queued transmit onto the wire.
    fn flush(&mut self) {
        let mut sends = Vec::new();
        for (&from, member) in self.members.iter_mut() {
            while let Some(t) = member.poll_transmit() {
                let recipients: Vec<u32> = match t.to {
                    Destination::Member(j) => vec![j],
                    Destination::All => (1..=self.n).filter(|&j| j != from).collect(),
                };
                for to in recipients {
                    sends.push((from, to, t.message.clone()));
                }
            }
        }
        for (from, to, message) in sends {
            if let Some(message) = (self.tamper)(from, to, message) {
                let delay = LATENCY
                    + self
                        .extra_delay
                        .get(&(from, to, message.kind()))
                        .copied()
                        .unwrap_or(0);
                *self.sent.entry(message.kind()).or_default() += 1;
                self.seq += 1;
                self.queue
                    .insert((self.now + delay, self.seq), (from, to, message.encode()));
            }
        }
    }

    fn note_finished(&mut self) {
        for (&i, m) in &self.members {
            if m.phase() == Phase::Finished {
                self.finished_at.entry(i).or_insert(self.now);
            }
        }
    }

    /// Processes the next instant at which something happens; false when
    /// nothing is left to happen.
    fn step(&mut self) -> bool {
        self.flush();
        let next_delivery = self.queue.keys().next().map(|&(t, _)| t);
        let next_deadline = self
            .members
            .values()
            .filter_map(|m| m.poll_deadline())
            .min();
        let Some(next) = next_delivery.into_iter().chain(next_deadline).min() else {
            return false;
        };
        assert!(next < 10 * T, "run does not terminate");
        self.now = self.now.max(next);
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let (from, to, bytes) = entry.remove();
            let message = DkgMessage::decode(&bytes).expect("honest bytes decode");
            assert_eq!(message.encode(), bytes, "encoding is canonical");
            if let Some(member) = self.members.get_mut(&to) {
                if let Err(e) = member.handle_message(self.now, from, message) {
                    self.rejected.push((to, e));
                }
            }
        }
        let now = self.now;
        for member in self.members.values_mut() {
            if member.poll_deadline().is_some_and(|d| d <= now) {
                member.handle_timeout(now);
            }
        }
        self.note_finished();
        true
    }

    fn run(&mut self) {
        while self.step() {}
        self.flush();
        assert!(
            self.members.values().all(|m| m.phase() == Phase::Finished),
            "every member finishes"
        );
    }

    fn run_until(&mut self, mut done: impl FnMut(&Self) -> bool) {
        while !done(self) {
            assert!(self.step(), "condition never reached");
        }
    }

    fn outputs(&self, members: &[u32]) -> Vec<&DkgOutput> {
        members
            .iter()
            .map(|i| match self.members[i].outcome() {
                Some(Ok(out)) => out,
                other => panic!("member {i} did not succeed: {other:?}"),
            })
            .collect()
    }
}

/// All `members` agree on QUAL, key set and transcript; their shares are
/// consistent with the key set; several `threshold`-subsets of them sign.
fn assert_agree(net: &Net, members: &[u32], expected_qual: &[u32]) -> PublicKeySet {
    let outputs = net.outputs(members);
    let first = outputs[0];
    let threshold = first.key_share.threshold();
    for out in &outputs {
        assert_eq!(out.qual, expected_qual);
        assert_eq!(out.key_share.public_key_set, first.key_share.public_key_set);
        assert_eq!(out.transcript_hash, first.transcript_hash);
        assert_eq!(out.key_share.n, net.n);
        assert_eq!(
            out.key_share.secret.public_key_share(),
            first
                .key_share
                .public_key_set
                .public_key_share(out.key_share.index())
        );
    }
    let message = b"rdht dkg test message";
    let signed: Vec<_> = outputs
        .iter()
        .map(|o| o.key_share.secret.sign(message))
        .collect();
    let t = threshold as usize;
    if signed.len() >= t {
        let quorum_key = first.key_share.quorum_key();
        let subsets: Vec<Vec<_>> = vec![
            signed[..t].to_vec(),
            signed[signed.len() - t..].to_vec(),
            signed
                .iter()
                .step_by(2)
                .chain(signed.iter().skip(1).step_by(2))
                .take(t)
                .copied()
                .collect(),
        ];
        for subset in subsets {
            let sig = combine_signatures(threshold, net.n, &subset).unwrap();
            assert!(quorum_key.verify(message, &sig));
        }
        if t > 1 {
            let short = combine_signatures(threshold - 1, net.n, &signed[..t - 1]).unwrap();
            assert!(!quorum_key.verify(message, &short));
        }
    }
    first.key_share.public_key_set.clone()
}

/// The `honest` members agree, QUAL being exactly them, and each left
/// `dealer` out for `reason`.
fn assert_honest_agree_without(net: &Net, honest: &[u32], dealer: u32, reason: Disqualification) {
    assert_agree(net, honest, honest);
    for out in net.outputs(honest) {
        assert_eq!(out.disqualified.get(&dealer), Some(&reason));
    }
}

fn all(n: u32) -> Vec<u32> {
    (1..=n).collect()
}

#[test]
fn honest_runs_finish_by_fast_sync_and_agree() {
    for (n, threshold) in [(1, 1), (3, 2), (4, 3), (7, 5), (16, 11)] {
        let mut net = Net::new(n, threshold, 1, &[]);
        net.run();
        assert!(net.rejected.is_empty(), "{:?}", net.rejected);
        for (&i, &at) in &net.finished_at {
            assert!(at < T, "member {i} of ({n},{threshold}) finished at {at}");
        }
        // Two rounds of messages (deal, response) and no more.
        if n > 1 {
            assert_eq!(net.now, 2 * LATENCY);
            let per_round = (n * (n - 1)) as usize;
            assert_eq!(net.sent.get(&MessageKind::Deal), Some(&per_round));
            assert_eq!(net.sent.get(&MessageKind::Share), Some(&per_round));
            assert_eq!(net.sent.get(&MessageKind::Response), Some(&per_round));
            assert_eq!(net.sent.get(&MessageKind::Justification), None);
        }
        let set = assert_agree(&net, &all(n), &all(n));
        assert_eq!(set.threshold(), threshold);
        for out in net.outputs(&all(n)) {
            assert!(out.disqualified.is_empty());
            // Secrets stay out of logs.
            let debug = format!("{out:?}");
            assert!(debug.contains("redacted"));
        }
    }
}

#[test]
fn runs_are_reproducible_from_seeds() {
    let transcript = |seed| {
        let mut net = Net::new(4, 3, seed, &[]);
        net.run();
        net.outputs(&[1])[0].transcript_hash
    };
    assert_eq!(transcript(5), transcript(5));
    assert_ne!(transcript(5), transcript(6));
}

/// A tamper that replaces dealer `dealer`'s share to each of `victims`
/// with a wrong one.
fn bad_shares(
    dealer: u32,
    victims: &'static [u32],
) -> impl FnMut(u32, u32, DkgMessage) -> Option<DkgMessage> {
    move |from, to, message| match message {
        DkgMessage::Share(mut s) if from == dealer && victims.contains(&to) => {
            s.share = SecretKeyShare::new(to, *s.share.scalar() + Scalar::ONE).unwrap();
            Some(DkgMessage::Share(s))
        }
        other => Some(other),
    }
}

#[test]
fn accused_dealer_with_a_correct_justification_is_kept() {
    let mut net = Net::new(5, 3, 2, &[]).with_tamper(Box::new(bad_shares(2, &[3, 4])));
    net.run();
    assert!(net.rejected.is_empty(), "{:?}", net.rejected);
    // The dealer was accused and answered (one broadcast to 4 members).
    assert_eq!(net.sent.get(&MessageKind::Justification), Some(&4));
    // Every member saw the complaints and the answer: the dealer stays,
    // and the victims use the revealed shares.
    assert_agree(&net, &all(5), &all(5));
    // It took the justification round, but no deadline.
    for &at in net.finished_at.values() {
        assert!(at < T, "finished at {at}");
    }
}

#[test]
fn accused_dealer_revealing_a_bad_share_is_excluded() {
    let mut bad = bad_shares(2, &[3]);
    let tamper = move |from: u32, to: u32, message: DkgMessage| match message {
        DkgMessage::Justification(mut j) if from == 2 => {
            for s in &mut j.revealed {
                *s = SecretKeyShare::new(s.index(), *s.scalar() + Scalar::ONE).unwrap();
            }
            Some(DkgMessage::Justification(j))
        }
        other => bad(from, to, other),
    };
    let mut net = Net::new(5, 3, 3, &[]).with_tamper(Box::new(tamper));
    net.run();
    let honest = [1, 3, 4, 5];
    assert_agree(&net, &honest, &[1, 3, 4, 5]);
    for out in net.outputs(&honest) {
        assert_eq!(
            out.disqualified.get(&2),
            Some(&Disqualification::BadJustification { member: 3 })
        );
    }
}

#[test]
fn accused_dealer_staying_silent_is_excluded() {
    let mut bad = bad_shares(4, &[1, 2]);
    let tamper = move |from: u32, to: u32, message: DkgMessage| match message {
        DkgMessage::Justification(_) if from == 4 => None,
        other => bad(from, to, other),
    };
    let mut net = Net::new(5, 3, 4, &[]).with_tamper(Box::new(tamper));
    net.run();
    let honest = [1, 2, 3, 5];
    assert_agree(&net, &honest, &[1, 2, 3, 5]);
    for out in net.outputs(&honest) {
        assert_eq!(
            out.disqualified.get(&4),
            Some(&Disqualification::Unjustified { member: 1 })
        );
    }
    // The owed justification never came: the justification deadline ended it.
    for i in honest {
        assert_eq!(net.finished_at[&i], 3 * T);
    }
}

#[test]
fn silent_dealer_is_excluded() {
    let mut net = Net::new(5, 3, 5, &[5]);
    net.run();
    let honest = all(4);
    assert_agree(&net, &honest, &honest);
    for out in net.outputs(&honest) {
        // Four members report its deal missing: past the threshold.
        assert_eq!(
            out.disqualified.get(&5),
            Some(&Disqualification::TooManyComplaints { complaints: 4 })
        );
    }
    // Nothing was owed after the responses: the response deadline ended it.
    for i in honest {
        assert_eq!(net.finished_at[&i], 2 * T);
    }
}

#[test]
fn equivocating_dealer_is_excluded() {
    let (n, threshold) = (5, 3);
    let session_id = session(n, threshold);
    let mut rng = ChaCha20Rng::seed_from_u64(77);
    let other = Polynomial::random(threshold, &mut rng);
    let other_deal = DealMessage::new(session_id, 1, &other, &mut rng).unwrap();
    // Members 4 and 5 get a different (self-consistent, validly proven)
    // deal and matching shares; 2 and 3 get the real one. The dealer does
    // not answer the dispute (see the next test for one that does).
    let tamper = move |from: u32, to: u32, message: DkgMessage| match message {
        DkgMessage::Justification(_) if from == 1 => None,
        DkgMessage::Deal(_) if from == 1 && to >= 4 => Some(DkgMessage::Deal(other_deal.clone())),
        DkgMessage::Share(_) if from == 1 && to >= 4 => Some(DkgMessage::Share(ShareMessage {
            session_id,
            dealer: 1,
            share: SecretKeyShare::new(to, other.evaluate(to)).unwrap(),
        })),
        other => Some(other),
    };
    let mut net = Net::new(n, threshold, 6, &[]).with_tamper(Box::new(tamper));
    net.run();
    assert!(net.rejected.is_empty(), "{:?}", net.rejected);
    let honest = [2, 3, 4, 5];
    assert_agree(&net, &honest, &[2, 3, 4, 5]);
    for out in net.outputs(&honest) {
        assert!(matches!(
            out.disqualified.get(&1),
            Some(Disqualification::Equivocation { .. })
        ));
    }
}

#[test]
fn dkg_complaints_an_equivocation_answered_with_one_deal_keeps_the_dealer() {
    // As above, but the dealer answers: it reveals its real deal and the
    // shares of 4 and 5 (who hold the other one), and everyone uses the
    // revealed deal. A member that merely *claims* another hash is
    // answered the same way, so it cannot remove an honest dealer.
    let (n, threshold) = (5, 3);
    let session_id = session(n, threshold);
    let mut rng = ChaCha20Rng::seed_from_u64(78);
    let other = Polynomial::random(threshold, &mut rng);
    let other_deal = DealMessage::new(session_id, 1, &other, &mut rng).unwrap();
    let tamper = move |from: u32, to: u32, message: DkgMessage| match message {
        DkgMessage::Deal(_) if from == 1 && to >= 4 => Some(DkgMessage::Deal(other_deal.clone())),
        DkgMessage::Share(_) if from == 1 && to >= 4 => Some(DkgMessage::Share(ShareMessage {
            session_id,
            dealer: 1,
            share: SecretKeyShare::new(to, other.evaluate(to)).unwrap(),
        })),
        other => Some(other),
    };
    let mut net = Net::new(n, threshold, 6, &[]).with_tamper(Box::new(tamper));
    net.run();
    assert!(net.rejected.is_empty(), "{:?}", net.rejected);
    assert_agree(&net, &all(n), &all(n));
}

#[test]
fn dkg_complaints_a_false_deal_hash_cannot_remove_an_honest_dealer() {
    let tamper = |from: u32, _to: u32, message: DkgMessage| match message {
        DkgMessage::Response(mut r) if from == 3 => {
            r.verdicts[1] = DealerVerdict::Valid(dkg::Digest([0xab; 32]));
            Some(DkgMessage::Response(r))
        }
        other => Some(other),
    };
    let mut net = Net::new(5, 3, 26, &[]).with_tamper(Box::new(tamper));
    net.run();
    assert_agree(&net, &all(5), &all(5));
}

#[test]
fn dealer_with_an_invalid_proof_is_excluded() {
    let tamper = |from: u32, _to: u32, message: DkgMessage| match message {
        DkgMessage::Deal(mut d) if from == 3 => {
            d.proof.response += Scalar::ONE;
            Some(DkgMessage::Deal(d))
        }
        other => Some(other),
    };
    let mut net = Net::new(4, 2, 7, &[]).with_tamper(Box::new(tamper));
    net.run();
    let honest = [1, 2, 4];
    assert_agree(&net, &honest, &[1, 2, 4]);
    for out in net.outputs(&honest) {
        // The dealer's own response names its untampered deal, so the
        // responses disagree; with three complaints of four members
        // (threshold 2) it may not answer, and is out.
        assert!(
            matches!(
                out.disqualified.get(&3),
                Some(Disqualification::InvalidProof | Disqualification::Equivocation { .. })
            ),
            "{:?}",
            out.disqualified
        );
    }
}

#[test]
fn too_few_honest_members_fail_cleanly() {
    let mut net = Net::new(5, 4, 8, &[4, 5]);
    net.run();
    for i in 1..=3 {
        assert_eq!(
            net.members[&i].outcome(),
            Some(&Err(DkgError::QualTooSmall {
                qualified: 3,
                threshold: 4
            }))
        );
        // Three reports of a missing deal are below the threshold: the
        // silent dealers could still have answered them, until the
        // justification deadline.
        assert_eq!(net.finished_at[&i], 3 * T);
        assert_eq!(net.members[&i].poll_deadline(), None);
    }
}

/// The first queued deal from `from` to `to`, decoded.
fn queued_deal(net: &Net, from: u32, to: u32) -> DealMessage {
    net.queue
        .values()
        .find_map(|(f, t, bytes)| match DkgMessage::decode(bytes) {
            Ok(DkgMessage::Deal(d)) if *f == from && *t == to => Some(d),
            _ => None,
        })
        .expect("deal queued")
}

#[test]
fn bad_messages_are_rejected_and_change_nothing() {
    let (n, threshold) = (3, 2);
    let mut net = Net::new(n, threshold, 9, &[]);
    net.flush();
    let deal = queued_deal(&net, 1, 2);
    let now = net.now;
    let member = net.members.get_mut(&2).unwrap();

    let mut other_session = deal.clone();
    other_session.session_id = SessionId([0xee; 32]);
    assert_eq!(
        member.handle_message(now, 1, DkgMessage::Deal(other_session)),
        Err(MessageError::WrongSession)
    );
    let mut outsider = deal.clone();
    outsider.dealer = 9;
    assert_eq!(
        member.handle_message(now, 9, DkgMessage::Deal(outsider)),
        Err(MessageError::NotAMember { from: 9 })
    );
    assert_eq!(
        member.handle_message(now, 0, DkgMessage::Deal(deal.clone())),
        Err(MessageError::NotAMember { from: 0 })
    );
    assert_eq!(
        member.handle_message(now, 3, DkgMessage::Deal(deal.clone())),
        Err(MessageError::SenderMismatch {
            from: 3,
            claimed: 1
        })
    );
    let mut own = deal.clone();
    own.dealer = 2;
    assert_eq!(
        member.handle_message(now, 2, DkgMessage::Deal(own)),
        Err(MessageError::FromSelf)
    );

    // Malformed: a deal with threshold + 1 commitments (validly proven).
    let mut rng = ChaCha20Rng::seed_from_u64(10);
    let too_long = Polynomial::random(threshold + 1, &mut rng);
    let malformed = DealMessage::new(session(n, threshold), 1, &too_long, &mut rng).unwrap();
    assert_eq!(
        member.handle_message(now, 1, DkgMessage::Deal(malformed)),
        Err(MessageError::CommitmentCount {
            expected: threshold,
            got: threshold + 1
        })
    );
    // A share for someone else.
    let misaddressed = ShareMessage {
        session_id: session(n, threshold),
        dealer: 1,
        share: SecretKeyShare::new(3, Scalar::from(5u64)).unwrap(),
    };
    assert_eq!(
        member.handle_message(now, 1, DkgMessage::Share(misaddressed)),
        Err(MessageError::WrongRecipient { recipient: 3 })
    );
    // A response without one verdict per member.
    let short = ResponseMessage {
        session_id: session(n, threshold),
        member: 1,
        verdicts: vec![],
    };
    assert_eq!(
        member.handle_message(now, 1, DkgMessage::Response(short)),
        Err(MessageError::VerdictCount {
            expected: n,
            got: 0
        })
    );
    // Justifications naming a non-member, out of order, or nothing.
    let justification = |indices: &[u32]| {
        DkgMessage::Justification(JustificationMessage {
            session_id: session(n, threshold),
            dealer: 1,
            revealed: indices
                .iter()
                .map(|&i| SecretKeyShare::new(i, Scalar::from(7u64)).unwrap())
                .collect(),
            deal: None,
        })
    };
    assert_eq!(
        member.handle_message(now, 1, justification(&[2, 4])),
        Err(MessageError::IndexOutOfRange { index: 4 })
    );
    assert_eq!(
        member.handle_message(now, 1, justification(&[3, 2])),
        Err(MessageError::NotAscending)
    );
    assert_eq!(
        member.handle_message(now, 1, justification(&[])),
        Err(MessageError::EmptyJustification)
    );

    // None of that counted: the genuine deal is accepted once, then it is
    // a duplicate.
    assert_eq!(
        member.handle_message(now, 1, DkgMessage::Deal(deal.clone())),
        Ok(())
    );
    assert_eq!(
        member.handle_message(now, 1, DkgMessage::Deal(deal.clone())),
        Err(MessageError::Duplicate {
            kind: MessageKind::Deal,
            from: 1
        })
    );
    assert_eq!(member.phase(), Phase::Deal);

    // The queued copy of that deal is now a duplicate too; everything else
    // runs as usual, by fast sync.
    net.run();
    assert_eq!(
        net.rejected,
        vec![(
            2,
            MessageError::Duplicate {
                kind: MessageKind::Deal,
                from: 1
            }
        )]
    );
    assert_agree(&net, &all(n), &all(n));
    for &at in net.finished_at.values() {
        assert!(at < T);
    }
}

#[test]
fn messages_of_a_finished_phase_are_rejected() {
    let (n, threshold) = (4, 3);
    let mut net = Net::new(n, threshold, 11, &[]);
    net.flush();
    let late_deal = queued_deal(&net, 1, 2);
    // Run until member 2 has moved on to the response phase.
    net.run_until(|net| net.members[&2].phase() == Phase::Response);
    let now = net.now;
    let member = net.members.get_mut(&2).unwrap();
    assert_eq!(
        member.handle_message(now, 1, DkgMessage::Deal(late_deal.clone())),
        Err(MessageError::WrongPhase {
            kind: MessageKind::Deal,
            phase: Phase::Response
        })
    );
    net.run();
    assert!(net.rejected.is_empty(), "{:?}", net.rejected);
    assert_agree(&net, &all(n), &all(n));
    // And once finished, nothing is accepted.
    let now = net.now;
    assert_eq!(
        net.members
            .get_mut(&2)
            .unwrap()
            .handle_message(now, 1, DkgMessage::Deal(late_deal)),
        Err(MessageError::WrongPhase {
            kind: MessageKind::Deal,
            phase: Phase::Finished
        })
    );
}

#[test]
fn early_messages_wait_for_their_phase() {
    // Member 3's deal to member 2 is slow: 2 receives the others'
    // responses while still in the deal phase, keeps them, and finishes
    // by fast sync as soon as the deal arrives.
    let mut net = Net::new(3, 2, 12, &[]);
    net.extra_delay.insert((3, 2, MessageKind::Deal), 50);
    net.run();
    assert!(net.rejected.is_empty(), "{:?}", net.rejected);
    assert_agree(&net, &all(3), &all(3));
    assert_eq!(net.finished_at[&2], LATENCY + 50);
    assert_eq!(net.finished_at[&1], 2 * LATENCY + 50);
    assert_eq!(net.finished_at[&3], 2 * LATENCY + 50);
}

#[test]
fn key_share_output_serializes() {
    let mut net = Net::new(3, 2, 13, &[]);
    net.run();
    let out = net.outputs(&[2])[0];
    let json = serde_json::to_string(&out.key_share).unwrap();
    let back: dkg::KeyShare = serde_json::from_str(&json).unwrap();
    assert_eq!(back, out.key_share);
}

/// A torsion point of the curve (on `E(Fp)`, of order dividing the
/// cofactor, not the identity): `r * P` for a point `P` outside G1 found by
/// decoding x-coordinates unchecked, computed with the group law only.
fn torsion_point() -> G1Projective {
    let mut bytes = [0u8; dkg::G1_BYTES];
    bytes[0] = 0x80;
    let p: G1Projective = (1u8..=255)
        .find_map(|x| {
            bytes[dkg::G1_BYTES - 1] = x;
            Option::<G1Affine>::from(G1Affine::from_compressed_unchecked(&bytes))
                .filter(|p| !bool::from(p.is_torsion_free()))
        })
        .expect("a point outside G1")
        .into();
    let r_minus_1 = (Scalar::ZERO - Scalar::ONE).to_bytes_be();
    let mut acc = G1Projective::identity();
    for byte in r_minus_1 {
        for bit in (0..8).rev() {
            acc = acc.double();
            if (byte >> bit) & 1 == 1 {
                acc += p;
            }
        }
    }
    acc += p;
    assert!(!bool::from(acc.is_identity()));
    assert!(!bool::from(acc.to_affine().is_torsion_free()));
    acc
}

/// `dealer`'s deal for `poly` with `torsion` added to commitment
/// `coefficient` (re-proving the constant term if it is 0) and, if
/// `tainted_nonce`, to the proof's `R` (with a proof made for that `R`).
/// The G1 components are `poly`'s, so every share of `poly` verifies.
fn torsion_deal(
    session_id: SessionId,
    dealer: u32,
    poly: &Polynomial,
    coefficient: Option<usize>,
    tainted_nonce: bool,
    torsion: G1Projective,
    rng: &mut ChaCha20Rng,
) -> DealMessage {
    let mut deal = DealMessage::new(session_id, dealer, poly, rng).unwrap();
    if let Some(k) = coefficient {
        let mut points = deal.commitments.points().to_vec();
        points[k] = CommitmentPoint::from_point(points[k].point() + torsion).unwrap();
        assert!(!points[k].is_in_subgroup());
        deal.commitments = DealCommitments::new(points).unwrap();
        deal.proof =
            ProofOfKnowledge::prove(&session_id, dealer, poly, deal.commitments.constant(), rng)
                .unwrap();
    }
    if tainted_nonce {
        let nonce = Scalar::from(0x5eed_u64 + u64::from(dealer));
        let r = CommitmentPoint::from_point(G1Projective::generator() * nonce + torsion).unwrap();
        let c = ProofOfKnowledge::challenge(&session_id, dealer, deal.commitments.constant(), &r);
        deal.proof = ProofOfKnowledge {
            commitment: r,
            response: nonce + c * poly.secret(),
        };
        assert!(!deal.proof.commitment.is_in_subgroup());
    }
    assert!(deal
        .proof
        .verify(&session_id, dealer, deal.commitments.constant()));
    deal
}

/// A tamper under which each dealer in `deals` sends everyone its given
/// deal and the matching shares of its given polynomial (and vouches for
/// that deal in its response, so that it is not an equivocation).
fn replace_deals(session_id: SessionId, deals: Vec<(u32, Polynomial, DealMessage)>) -> Tamper {
    Box::new(move |from, to, message| {
        let Some((_, poly, deal)) = deals.iter().find(|(d, _, _)| *d == from) else {
            return Some(message);
        };
        match message {
            DkgMessage::Deal(_) => Some(DkgMessage::Deal(deal.clone())),
            DkgMessage::Response(mut r) => {
                r.verdicts[from as usize - 1] = DealerVerdict::Valid(deal.hash());
                Some(DkgMessage::Response(r))
            }
            DkgMessage::Share(_) => Some(DkgMessage::Share(ShareMessage {
                session_id,
                dealer: from,
                share: SecretKeyShare::new(to, poly.evaluate(to)).unwrap(),
            })),
            other => Some(other),
        }
    })
}

/// Every key in the set is in G1 (the `PublicKey` invariant, checked
/// again from the bytes).
fn assert_in_g1(set: &PublicKeySet) {
    for key in set.commitments() {
        let affine = Option::<G1Affine>::from(G1Affine::from_compressed(&key.to_bytes()))
            .expect("a key of the set is in G1");
        assert!(bool::from(affine.is_torsion_free()));
    }
}

/// Runs `n`/`threshold` with the given dealers replaced by torsion deals
/// (`(dealer, coefficient, tainted_nonce, torsion multiple)`).
fn torsion_run(
    n: u32,
    threshold: u32,
    seed: u64,
    faulty: &[(u32, Option<usize>, bool, i64)],
) -> Net {
    let session_id = session(n, threshold);
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x7072);
    let torsion = torsion_point();
    let deals = faulty
        .iter()
        .map(|&(dealer, coefficient, tainted_nonce, multiple)| {
            let t = if multiple < 0 { -torsion } else { torsion };
            let t = (1..multiple.unsigned_abs()).fold(t, |acc, _| acc + t);
            let poly = Polynomial::random(threshold, &mut rng);
            let deal = torsion_deal(
                session_id,
                dealer,
                &poly,
                coefficient,
                tainted_nonce,
                t,
                &mut rng,
            );
            (dealer, poly, deal)
        })
        .collect();
    let mut net = Net::new(n, threshold, seed, &[]).with_tamper(replace_deals(session_id, deals));
    net.run();
    net
}

#[test]
fn dealer_with_torsion_in_a_commitment_is_excluded_at_finish() {
    // Torsion in C_1 (the proof stays valid) and in C_0 (re-proved).
    for coefficient in [1, 0] {
        let net = torsion_run(5, 3, 21, &[(2, Some(coefficient), false, 1)]);
        // Nobody rejected anything: the deal decodes, its proof and every
        // share verify (their G1 components are right).
        assert!(net.rejected.is_empty(), "{:?}", net.rejected);
        assert_eq!(net.sent.get(&MessageKind::Justification), None);
        let honest = [1, 3, 4, 5];
        let set = assert_agree(&net, &honest, &[1, 3, 4, 5]);
        assert_in_g1(&set);
        for out in net.outputs(&honest) {
            assert_eq!(
                out.disqualified.get(&2),
                Some(&Disqualification::NotInSubgroup)
            );
            assert_eq!(out.disqualified.len(), 1);
        }
        // Still by fast sync: the fallback costs no round.
        for i in honest {
            assert!(net.finished_at[&i] < T);
        }
    }
}

#[test]
fn torsion_in_the_proof_nonce_alone_is_harmless() {
    // R outside G1, commitments in G1: the proof binds the G1 component
    // of C_0, the sums are in G1, the dealer stays.
    let net = torsion_run(4, 3, 22, &[(3, None, true, 1)]);
    assert!(net.rejected.is_empty(), "{:?}", net.rejected);
    let honest = [1, 2, 4];
    let set = assert_agree(&net, &honest, &[1, 2, 3, 4]);
    assert_in_g1(&set);
}

#[test]
fn cancelling_torsion_of_two_dealers_leaves_a_key_in_g1() {
    // Dealers 1 and 4 add T and -T to C_2: the sum is in G1 and is the
    // sum of the G1 components, which every share matches, so both stay
    // and every honest member's share works (assert_agree signs with it).
    let net = torsion_run(5, 3, 23, &[(1, Some(2), false, 1), (4, Some(2), false, -1)]);
    assert!(net.rejected.is_empty(), "{:?}", net.rejected);
    let honest = [2, 3, 5];
    let set = assert_agree(&net, &honest, &[1, 2, 3, 4, 5]);
    assert_in_g1(&set);
    for out in net.outputs(&honest) {
        assert!(out.disqualified.is_empty());
    }
}

#[test]
fn the_fallback_checks_every_qual_dealer() {
    // Dealers 1 and 4 cancel each other's torsion in C_2, but dealer 5's
    // torsion in C_1 leaves a sum outside G1: the fallback checks every
    // dealer and excludes all three, including the proof-nonce-only
    // dealer 6; 7 - 4 = 3 dealers remain, the threshold.
    let faulty = [
        (1, Some(2), false, 1),
        (4, Some(2), false, -1),
        (5, Some(1), false, 2),
        (6, None, true, 1),
    ];
    let net = torsion_run(7, 3, 24, &faulty);
    assert!(net.rejected.is_empty(), "{:?}", net.rejected);
    let honest = [2, 3, 7];
    let set = assert_agree(&net, &honest, &[2, 3, 7]);
    assert_in_g1(&set);
    for out in net.outputs(&honest) {
        for dealer in [1, 4, 5, 6] {
            assert_eq!(
                out.disqualified.get(&dealer),
                Some(&Disqualification::NotInSubgroup)
            );
        }
    }
}

#[test]
fn a_fallback_leaving_too_few_dealers_fails_cleanly_everywhere() {
    let net = torsion_run(4, 3, 25, &[(1, Some(1), false, 1), (2, Some(2), false, 1)]);
    for i in [3, 4] {
        assert_eq!(
            net.members[&i].outcome(),
            Some(&Err(DkgError::QualTooSmall {
                qualified: 2,
                threshold: 3
            }))
        );
    }
}

/// How the one faulty dealer of a randomized run misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// Bad shares to the victims, then an honest justification.
    BadSharesJustified,
    /// Bad shares to the victims, and the revealed shares are bad too.
    BadSharesBadJustification,
    /// Bad shares to the victims, and no justification.
    BadSharesUnjustified,
    /// Another (valid) deal and matching shares for the victims.
    Equivocate,
    /// A deal whose proof of knowledge does not verify.
    BadProof,
    /// Nothing at all.
    Silent,
    /// Another deal, to everyone, with a torsion component in one
    /// commitment (and a valid proof), and matching shares.
    TorsionCommitment,
    /// Another deal, to everyone, with a torsion component in the proof's
    /// `R` only, and matching shares.
    TorsionNonce,
}

fn faulty_tamper(
    fault: Fault,
    dealer: u32,
    victims: Vec<u32>,
    session_id: SessionId,
    threshold: u32,
    seed: u64,
) -> Tamper {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let other = Polynomial::random(threshold, &mut rng);
    let other_deal = DealMessage::new(session_id, dealer, &other, &mut rng).unwrap();
    let mut torsion_tamper = match fault {
        Fault::TorsionCommitment | Fault::TorsionNonce => {
            let commitment = (fault == Fault::TorsionCommitment)
                .then_some((seed % u64::from(threshold)) as usize);
            let nonce = fault == Fault::TorsionNonce;
            let deal = torsion_deal(
                session_id,
                dealer,
                &other,
                commitment,
                nonce,
                torsion_point(),
                &mut rng,
            );
            Some(replace_deals(
                session_id,
                vec![(dealer, other.clone(), deal)],
            ))
        }
        _ => None,
    };
    Box::new(move |from, to, message| {
        if from != dealer {
            return Some(message);
        }
        if let Some(tamper) = torsion_tamper.as_mut() {
            return tamper(from, to, message);
        }
        let victim = victims.contains(&to);
        match (fault, message) {
            (
                Fault::BadSharesJustified
                | Fault::BadSharesBadJustification
                | Fault::BadSharesUnjustified,
                DkgMessage::Share(mut s),
            ) if victim => {
                s.share = SecretKeyShare::new(to, *s.share.scalar() + Scalar::ONE).unwrap();
                Some(DkgMessage::Share(s))
            }
            (Fault::BadSharesBadJustification, DkgMessage::Justification(mut j)) => {
                for s in &mut j.revealed {
                    *s = SecretKeyShare::new(s.index(), *s.scalar() + Scalar::ONE).unwrap();
                }
                Some(DkgMessage::Justification(j))
            }
            (Fault::BadSharesUnjustified, DkgMessage::Justification(_)) => None,
            (Fault::Equivocate, DkgMessage::Deal(_)) if victim => {
                Some(DkgMessage::Deal(other_deal.clone()))
            }
            (Fault::Equivocate, DkgMessage::Share(_)) if victim => {
                Some(DkgMessage::Share(ShareMessage {
                    session_id,
                    dealer,
                    share: SecretKeyShare::new(to, other.evaluate(to)).unwrap(),
                }))
            }
            (Fault::BadProof, DkgMessage::Deal(mut d)) => {
                d.proof.response += Scalar::ONE;
                Some(DkgMessage::Deal(d))
            }
            (_, message) => Some(message),
        }
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(40))]

    /// With one faulty dealer of any kind, the honest members all end the
    /// same way: the same QUAL, key set and transcript (or all the same
    /// error), and the dealer is out whenever its fault was visible.
    #[test]
    fn honest_members_agree_whatever_one_dealer_does(
        n in 2u32..=6,
        threshold_seed in proptest::prelude::any::<u32>(),
        faulty_seed in proptest::prelude::any::<u32>(),
        victim_mask in proptest::prelude::any::<u8>(),
        fault_index in 0usize..8,
        seed in proptest::prelude::any::<u64>(),
    ) {
        let threshold = 1 + threshold_seed % n;
        let dealer = 1 + faulty_seed % n;
        let fault = [
            Fault::BadSharesJustified,
            Fault::BadSharesBadJustification,
            Fault::BadSharesUnjustified,
            Fault::Equivocate,
            Fault::BadProof,
            Fault::Silent,
            Fault::TorsionCommitment,
            Fault::TorsionNonce,
        ][fault_index];
        let victims: Vec<u32> = (1..=n)
            .filter(|&j| j != dealer && victim_mask >> (j % 8) & 1 == 1)
            .collect();
        let silent: Vec<u32> = match fault {
            Fault::Silent => vec![dealer],
            _ => vec![],
        };
        let tamper = faulty_tamper(fault, dealer, victims.clone(), session(n, threshold), threshold, seed);
        let mut net = Net::new(n, threshold, seed, &silent).with_tamper(tamper);
        net.run();

        let honest: Vec<u32> = (1..=n).filter(|&i| i != dealer).collect();
        let outcomes: Vec<_> = honest.iter().map(|i| net.members[i].outcome().cloned()).collect();
        let first = outcomes[0].clone().expect("finished");
        // `threshold` complaints exclude a dealer whatever it answers.
        let complained = victims.len() as u32 >= threshold;
        // The tampered dealers run the honest state machine, whose own
        // response names the deal it really made: when it sent everyone
        // another (BadProof), the responses disagree, and it answers with
        // its real deal and `n - 1` shares, unless that reaches the
        // threshold. (The torsion tamper rewrites its response too.)
        let answered_to_all = n - 1 < threshold;
        let excluded_expected = match fault {
            Fault::BadSharesJustified | Fault::Equivocate => complained,
            Fault::BadSharesBadJustification | Fault::BadSharesUnjustified => !victims.is_empty(),
            Fault::BadProof => !answered_to_all,
            Fault::Silent | Fault::TorsionCommitment => true,
            Fault::TorsionNonce => false,
        };
        match &first {
            Ok(out) => {
                let expected: Vec<u32> = (1..=n)
                    .filter(|&d| !(excluded_expected && d == dealer))
                    .collect();
                assert_agree(&net, &honest, &expected);
                proptest::prop_assert_eq!(&out.qual, &expected);
            }
            Err(e) => {
                proptest::prop_assert!(excluded_expected && n - 1 < threshold, "{:?}", e);
                for o in &outcomes {
                    proptest::prop_assert_eq!(o.as_ref(), Some(&first));
                }
            }
        }
    }
}

// ----- #13 item 8: answerable MissingDeal complaints ---------------------------

/// Rewrites `liar`'s response so that it reports dealer `dealer`'s deal
/// missing (it did get it).
fn false_missing_deal(
    liar: u32,
    dealer: u32,
) -> impl FnMut(u32, u32, DkgMessage) -> Option<DkgMessage> {
    move |from, _to, message| match message {
        DkgMessage::Response(mut r) if from == liar => {
            r.verdicts[(dealer - 1) as usize] = DealerVerdict::MissingDeal;
            Some(DkgMessage::Response(r))
        }
        other => Some(other),
    }
}

#[test]
fn dkg_complaints_a_false_missing_deal_cannot_remove_an_honest_dealer() {
    // Member 2 lies that dealer 1's deal never reached it. Dealer 1
    // answers with its deal and member 2's share; everyone keeps it.
    let mut net = Net::new(5, 3, 21, &[]).with_tamper(Box::new(false_missing_deal(2, 1)));
    net.run();
    // Only the liar, which does not see its own lie, refuses the (late,
    // for it) justification.
    assert!(
        net.rejected.iter().all(|(to, _)| *to == 2),
        "{:?}",
        net.rejected
    );
    // One justification, broadcast to the 4 others, carrying the deal.
    assert_eq!(net.sent.get(&MessageKind::Justification), Some(&4));
    let honest = all(5);
    assert_agree(&net, &honest, &honest);
    for out in net.outputs(&honest) {
        assert!(out.disqualified.is_empty(), "{:?}", out.disqualified);
    }
    // No deadline was needed: the answer ended the justification phase.
    for &at in net.finished_at.values() {
        assert!(at < T, "finished at {at}");
    }
}

#[test]
fn dkg_complaints_a_member_that_missed_a_deal_takes_it_from_the_justification() {
    // Dealer 1's deal to member 3 is lost (the share arrives). Member 3
    // complains, dealer 1 reveals the deal and member 3's share, and all
    // five agree on QUAL, the key set and the transcript; member 3's
    // share fits the key set (assert_agree checks it).
    let tamper = |from: u32, to: u32, message: DkgMessage| match message {
        DkgMessage::Deal(_) if from == 1 && to == 3 => None,
        other => Some(other),
    };
    let mut net = Net::new(5, 3, 22, &[]).with_tamper(Box::new(tamper));
    net.run();
    assert!(net.rejected.is_empty(), "{:?}", net.rejected);
    let honest = all(5);
    assert_agree(&net, &honest, &honest);
}

#[test]
fn dkg_complaints_a_dealer_that_withheld_its_deal_and_does_not_answer_is_disqualified() {
    // Dealer 4 keeps its deal from member 1 and does not justify.
    let tamper = |from: u32, to: u32, message: DkgMessage| match message {
        DkgMessage::Deal(_) if from == 4 && to == 1 => None,
        DkgMessage::Justification(_) if from == 4 => None,
        other => Some(other),
    };
    let mut net = Net::new(5, 3, 23, &[]).with_tamper(Box::new(tamper));
    net.run();
    assert_honest_agree_without(
        &net,
        &[1, 2, 3, 5],
        4,
        Disqualification::Unjustified { member: 1 },
    );
}

#[test]
fn dkg_complaints_a_justification_revealing_another_deal_disqualifies_the_dealer() {
    // Dealer 2 withholds its deal from member 5, then answers the
    // complaint with a different (validly proven) deal and a share of it.
    let (n, threshold) = (5, 3);
    let session_id = session(n, threshold);
    let mut rng = ChaCha20Rng::seed_from_u64(24);
    let other = Polynomial::random(threshold, &mut rng);
    let other_deal = DealMessage::new(session_id, 2, &other, &mut rng).unwrap();
    let tamper = move |from: u32, to: u32, message: DkgMessage| match message {
        DkgMessage::Deal(_) if from == 2 && to == 5 => None,
        DkgMessage::Justification(mut j) if from == 2 => {
            j.deal = Some(other_deal.clone());
            j.revealed = vec![SecretKeyShare::new(5, other.evaluate(5)).unwrap()];
            Some(DkgMessage::Justification(j))
        }
        other => Some(other),
    };
    let mut net = Net::new(n, threshold, 24, &[]).with_tamper(Box::new(tamper));
    net.run();
    assert_honest_agree_without(
        &net,
        &[1, 3, 4, 5],
        2,
        Disqualification::DealNotRevealed { member: 5 },
    );
}

#[test]
fn dkg_complaints_threshold_many_complaints_disqualify_without_an_answer() {
    // Dealer 3 sends bad shares to 1, 2 and 4: three complaints reach the
    // threshold, which no coalition below it can produce against an
    // honest dealer. The dealer is out at once, and reveals nothing (that
    // would publish `threshold` points of its polynomial).
    let mut net = Net::new(5, 3, 25, &[]).with_tamper(Box::new(bad_shares(3, &[1, 2, 4])));
    net.run();
    assert_eq!(net.sent.get(&MessageKind::Justification), None);
    assert_honest_agree_without(
        &net,
        &[1, 2, 4, 5],
        3,
        Disqualification::TooManyComplaints { complaints: 3 },
    );
}

// ----- #13 item 8: a fresh session per run ------------------------------------

#[test]
fn dkg_session_every_run_has_a_fresh_session_id_that_all_members_agree_on() {
    let (n, threshold) = (4, 3);
    let base = session(n, threshold);
    let mut runs = Vec::new();
    for seed in [31, 32] {
        let mut net = Net::with_hello(n, threshold, seed, &[], |_| 0);
        net.run();
        assert!(net.rejected.is_empty(), "{:?}", net.rejected);
        assert_agree(&net, &all(n), &all(n));
        let sessions = net.sessions();
        let first = sessions[&1];
        assert!(sessions.values().all(|s| *s == first), "{sessions:?}");
        assert_ne!(first, base);
        // One more round trip than without hellos, and still no deadline.
        assert_eq!(net.now, 3 * LATENCY);
        assert_eq!(net.sent.get(&MessageKind::Hello), Some(&12));
        runs.push(first);
    }
    // Same quorum, same base session, two runs: two session ids.
    assert_ne!(runs[0], runs[1]);
}

#[test]
fn dkg_session_a_replayed_message_of_run_1_is_refused_in_run_2() {
    let (n, threshold) = (3, 2);
    let mut run1 = Net::with_hello(n, threshold, 33, &[], |_| 0);
    run1.run_until(|net| net.members[&1].phase() == Phase::Deal);
    run1.flush();
    let old_deal = queued_deal(&run1, 1, 2);
    let old_hello = DkgMessage::Hello(dkg::HelloMessage {
        session_id: session(n, threshold),
        member: 1,
        attempt: 0,
        nonce: [1; 32],
    });

    // Run 2 is attempt 1 of the same quorum.
    let mut run2 = Net::with_hello(n, threshold, 34, &[], |_| 1);
    let now = run2.now;
    assert_eq!(
        run2.members
            .get_mut(&2)
            .unwrap()
            .handle_message(now, 1, old_hello),
        Err(MessageError::StaleAttempt {
            attempt: 0,
            current: 1
        })
    );
    run2.run_until(|net| net.members[&2].phase() == Phase::Deal);
    let now = run2.now;
    assert_eq!(
        run2.members.get_mut(&2).unwrap().handle_message(
            now,
            1,
            DkgMessage::Deal(old_deal.clone())
        ),
        Err(MessageError::WrongSession)
    );
    run2.run();
    assert!(run2.rejected.is_empty(), "{:?}", run2.rejected);
    assert_agree(&run2, &all(n), &all(n));
    assert_ne!(run2.sessions()[&2], old_deal.session_id);
}

#[test]
fn dkg_session_a_silent_member_does_not_block_the_hello_round() {
    let mut net = Net::with_hello(5, 3, 35, &[5], |_| 0);
    net.run();
    let honest = all(4);
    assert_agree(&net, &honest, &honest);
    // The hello round waited its deadline for member 5, then the run went
    // on without it (its deal is reported missing by all four).
    for out in net.outputs(&honest) {
        assert_eq!(
            out.disqualified.get(&5),
            Some(&Disqualification::TooManyComplaints { complaints: 4 })
        );
    }
    for i in honest {
        assert_eq!(net.finished_at[&i], T + 2 * T);
    }
}

#[test]
fn dkg_session_members_move_to_the_highest_attempt_they_hear_of() {
    // Member 4 retried twice more than the others (say it restarted less
    // often): everyone meets at its attempt, in one session.
    let mut net = Net::with_hello(4, 3, 36, &[], |i| if i == 4 { 2 } else { 0 });
    net.run();
    assert_agree(&net, &all(4), &all(4));
    assert!(net.members.values().all(|m| m.attempt() == 2));
    let sessions = net.sessions();
    assert!(sessions.values().all(|s| *s == sessions[&1]));
    // Hellos of attempt 0 that crossed the jump were refused, nothing else.
    assert!(
        net.rejected
            .iter()
            .all(|(_, e)| matches!(e, MessageError::StaleAttempt { .. })),
        "{:?}",
        net.rejected
    );
}

#[test]
fn dkg_session_too_few_hellos_end_the_run_at_the_hello_deadline() {
    let mut net = Net::with_hello(5, 4, 37, &[4, 5], |_| 0);
    net.run();
    for i in 1..=3 {
        assert_eq!(
            net.members[&i].outcome(),
            Some(&Err(DkgError::TooFewHellos {
                got: 3,
                threshold: 4
            }))
        );
        assert_eq!(net.finished_at[&i], T);
    }
    // Nobody dealt: no share was ever put on the wire.
    assert_eq!(net.sent.get(&MessageKind::Share), None);
}
