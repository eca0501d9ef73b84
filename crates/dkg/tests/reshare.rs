//! End-to-end resharing runs under a deterministic driver: seeded ChaCha
//! RNGs, virtual time, every message encoded and decoded on the way,
//! nodes addressed by identity (a node may be an old member, a new one or
//! both), and adversaries that rewrite or drop messages in flight.

use std::collections::BTreeMap;

use blstrs::Scalar;
use dkg::{
    combine_signatures, ConfigError, DealMessage, Destination, Disqualification, DkgError,
    DkgMessage, KeyShare, MessageError, MessageKind, Participant, Phase, Polynomial, PublicKey,
    PublicKeySet, ReshareConfig, ReshareMember, ReshareOutput, SecretKeyShare, ShareMessage,
    SignatureShare,
};
use ff::Field;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// Phase timeout of every test run.
const T: u64 = 1_000;
/// One-way delay of every message.
const LATENCY: u64 = 5;
const NONCE: &[u8] = b"epoch-1";
const MESSAGE: &[u8] = b"rdht reshare test message";

/// Rewrites (or drops, with `None`) a message from node `from` to `to`.
type Tamper = Box<dyn FnMut(&str, &str, DkgMessage) -> Option<DkgMessage>>;

fn id(name: &str) -> Vec<u8> {
    name.as_bytes().to_vec()
}

/// Epoch `e`, made by a trusted dealer (the DKG is tested elsewhere).
struct OldEpoch {
    members: Vec<Vec<u8>>,
    key_set: PublicKeySet,
    shares: Vec<KeyShare>,
}

fn old_epoch(names: &[&str], threshold: u32, seed: u64) -> OldEpoch {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let polynomial = Polynomial::random(threshold, &mut rng);
    let key_set = polynomial.commitments().unwrap();
    let n = names.len() as u32;
    let shares = (1..=n)
        .map(|i| {
            let secret = SecretKeyShare::new(i, polynomial.evaluate(i)).unwrap();
            KeyShare::new(n, key_set.clone(), secret).unwrap()
        })
        .collect();
    OldEpoch {
        members: names.iter().map(|n| id(n)).collect(),
        key_set,
        shares,
    }
}

/// The nodes of one resharing on a virtual clock.
struct Net {
    old: OldEpoch,
    new_members: Vec<Vec<u8>>,
    now: u64,
    nodes: BTreeMap<String, ReshareMember>,
    queue: BTreeMap<(u64, u64), (String, String, Vec<u8>)>,
    seq: u64,
    rejected: Vec<(String, MessageError)>,
    tamper: Tamper,
    sent: BTreeMap<MessageKind, usize>,
    outcomes: BTreeMap<String, Result<ReshareOutput, DkgError>>,
    finished_at: BTreeMap<String, u64>,
}

impl Net {
    /// Every node of either list but the `silent` ones starts at 0.
    fn new(
        old: OldEpoch,
        new_names: &[&str],
        new_threshold: u32,
        seed: u64,
        silent: &[&str],
    ) -> Self {
        let new_members: Vec<Vec<u8>> = new_names.iter().map(|n| id(n)).collect();
        let mut names: Vec<String> = Vec::new();
        for member in old.members.iter().chain(&new_members) {
            let name = String::from_utf8(member.clone()).unwrap();
            if !names.contains(&name) && !silent.contains(&name.as_str()) {
                names.push(name);
            }
        }
        let mut nodes = BTreeMap::new();
        for (k, name) in names.iter().enumerate() {
            let config = ReshareConfig::new(
                &old.members,
                &old.key_set,
                &new_members,
                new_threshold,
                NONCE,
                name.as_bytes(),
                T,
            )
            .unwrap();
            let old_share = config.me().old.map(|i| &old.shares[i as usize - 1]);
            let mut rng = ChaCha20Rng::seed_from_u64(seed * 1000 + k as u64);
            let node = ReshareMember::new(config, old_share, 0, &mut rng).unwrap();
            nodes.insert(name.clone(), node);
        }
        let mut net = Self {
            old,
            new_members,
            now: 0,
            nodes,
            queue: BTreeMap::new(),
            seq: 0,
            rejected: Vec::new(),
            tamper: Box::new(|_, _, m| Some(m)),
            sent: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            finished_at: BTreeMap::new(),
        };
        net.collect();
        net
    }

    fn with_tamper(mut self, tamper: Tamper) -> Self {
        self.tamper = tamper;
        self
    }

    fn flush(&mut self) {
        let mut sends = Vec::new();
        for (from, node) in self.nodes.iter_mut() {
            while let Some(t) = node.poll_transmit() {
                let recipients: Vec<Vec<u8>> = match t.to {
                    Destination::Member(j) => vec![node.config().new_member(j).unwrap().to_vec()],
                    Destination::All => node
                        .config()
                        .others()
                        .into_iter()
                        .map(<[u8]>::to_vec)
                        .collect(),
                };
                for to in recipients {
                    sends.push((
                        from.clone(),
                        String::from_utf8(to).unwrap(),
                        t.message.clone(),
                    ));
                }
            }
        }
        for (from, to, message) in sends {
            if let Some(message) = (self.tamper)(&from, &to, message) {
                *self.sent.entry(message.kind()).or_default() += 1;
                self.seq += 1;
                self.queue
                    .insert((self.now + LATENCY, self.seq), (from, to, message.encode()));
            }
        }
    }

    fn collect(&mut self) {
        for (name, node) in self.nodes.iter_mut() {
            if let Some(outcome) = node.take_outcome() {
                self.finished_at.insert(name.clone(), self.now);
                self.outcomes.insert(name.clone(), outcome);
            }
        }
    }

    fn step(&mut self) -> bool {
        self.flush();
        let next_delivery = self.queue.keys().next().map(|&(t, _)| t);
        let next_deadline = self.nodes.values().filter_map(|m| m.poll_deadline()).min();
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
            if let Some(node) = self.nodes.get_mut(&to) {
                let places = node.config().participant(from.as_bytes()).unwrap();
                match node.handle_message(self.now, places, message) {
                    // Old members that receive nothing drop all but responses.
                    Ok(()) | Err(MessageError::NotAReceiver { .. }) => {}
                    Err(e) => self.rejected.push((to, e)),
                }
            }
        }
        let now = self.now;
        for node in self.nodes.values_mut() {
            if node.poll_deadline().is_some_and(|d| d <= now) {
                node.handle_timeout(now);
            }
        }
        self.collect();
        true
    }

    fn run(&mut self) {
        while self.step() {}
        self.flush();
        assert!(
            self.nodes.values().all(|m| m.phase() == Phase::Finished),
            "every node finishes"
        );
    }

    fn new_share(&self, name: &str) -> &dkg::DkgOutput {
        match self.outcomes.get(name) {
            Some(Ok(ReshareOutput::NewShare(out))) => out,
            other => panic!("{name} got no new share: {other:?}"),
        }
    }
}

/// Every new member in `honest` has a share of the same new key set with
/// the old quorum key, fresh commitments and QUAL `expected_qual`; any
/// `t'` of the new shares sign for the old key, `t' - 1` do not; old
/// shares mixed with new ones do not.
fn assert_reshared(
    net: &Net,
    honest: &[&str],
    new_threshold: u32,
    expected_qual: &[u32],
) -> PublicKeySet {
    let outputs: Vec<_> = honest.iter().map(|name| net.new_share(name)).collect();
    let first = outputs[0];
    let set = first.key_share.public_key_set.clone();
    let n_new = net.new_members.len() as u32;
    assert_eq!(
        set.quorum_key(),
        net.old.key_set.quorum_key(),
        "the quorum key is unchanged"
    );
    assert_eq!(set.threshold(), new_threshold);
    let fresh = set.commitments()[1..]
        .iter()
        .all(|c| !net.old.key_set.commitments().contains(c));
    assert!(fresh, "every other commitment is fresh");
    for out in &outputs {
        assert_eq!(out.qual, expected_qual);
        assert_eq!(out.key_share.public_key_set, set);
        assert_eq!(out.transcript_hash, first.transcript_hash);
        assert_eq!(out.key_share.n, n_new);
    }
    let signed: Vec<SignatureShare> = outputs
        .iter()
        .map(|o| o.key_share.secret.sign(MESSAGE))
        .collect();
    let key: PublicKey = set.quorum_key();
    let t = new_threshold as usize;
    if signed.len() >= t {
        for subset in [&signed[..t], &signed[signed.len() - t..]] {
            let signature = combine_signatures(new_threshold, n_new, subset).unwrap();
            assert!(key.verify(MESSAGE, &signature), "t' new shares sign");
        }
        if t > 1 {
            let short = combine_signatures(new_threshold - 1, n_new, &signed[..t - 1]).unwrap();
            assert!(!key.verify(MESSAGE, &short), "t' - 1 new shares do not");
            // One new share swapped for an old share of another index.
            let used: Vec<u32> = signed[..t - 1].iter().map(|s| s.index).collect();
            if let Some(old) = net.old.shares.iter().find(|s| !used.contains(&s.index())) {
                let mut mixed = signed[..t - 1].to_vec();
                mixed.push(old.secret.sign(MESSAGE));
                let max_n = n_new.max(old.n);
                let signature = combine_signatures(new_threshold, max_n, &mixed).unwrap();
                assert!(
                    !key.verify(MESSAGE, &signature),
                    "old and new shares do not mix"
                );
            }
        }
    }
    set
}

fn names(prefix: &str, n: u32) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}{i}")).collect()
}

fn refs(names: &[String]) -> Vec<&str> {
    names.iter().map(String::as_str).collect()
}

#[test]
fn reshare_keeps_the_quorum_key_across_overlapping_and_disjoint_sets() {
    // (old n, old t, new members as old-index overlap count + fresh count, new t)
    for (old_n, old_t, kept, fresh, new_t) in [
        (4, 3, 3, 1, 3), // one member replaced
        (3, 2, 0, 4, 3), // disjoint, threshold grows
        (5, 4, 5, 2, 2), // everyone stays, two join, threshold shrinks
        (1, 1, 1, 2, 2), // a 1-of-1 quorum grows
        (4, 2, 1, 0, 1), // shrinks to one
    ] {
        let old_names = names("old", old_n);
        let mut new_names: Vec<String> = old_names[old_n as usize - kept as usize..].to_vec();
        new_names.extend(names("new", fresh));
        let old = old_epoch(&refs(&old_names), old_t, 7);
        let mut net = Net::new(old, &refs(&new_names), new_t, 1, &[]);
        net.run();
        assert!(net.rejected.is_empty(), "{:?}", net.rejected);
        let all_dealers: Vec<u32> = (1..=old_n).collect();
        assert_reshared(&net, &refs(&new_names), new_t, &all_dealers);
        for name in &old_names {
            if !new_names.contains(name) {
                assert_eq!(net.outcomes.get(name), Some(&Ok(ReshareOutput::Dealt)));
            }
        }
        // Fast: deals, responses and no more when everyone is honest.
        for (name, &at) in &net.finished_at {
            assert!(at < T, "{name} finished at {at}");
        }
        assert_eq!(net.sent.get(&MessageKind::Justification), None);
    }
}

#[test]
fn reshare_runs_are_reproducible_and_each_gives_fresh_commitments() {
    let run = |seed| {
        let old = old_epoch(&["a", "b", "c"], 2, 3);
        let mut net = Net::new(old, &["b", "c", "d"], 2, seed, &[]);
        net.run();
        net.new_share("d").key_share.public_key_set.clone()
    };
    assert_eq!(run(1), run(1));
    let (first, second) = (run(1), run(2));
    assert_eq!(first.quorum_key(), second.quorum_key());
    assert_ne!(first, second);
}

#[test]
fn reshare_silent_old_dealer_is_excluded() {
    let old = old_epoch(&["a", "b", "c", "d"], 3, 11);
    let mut net = Net::new(old, &["b", "c", "d", "e"], 3, 2, &["a"]);
    net.run();
    let set = assert_reshared(&net, &["b", "c", "d", "e"], 3, &[2, 3, 4]);
    assert_eq!(set.quorum_key(), net.old.key_set.quorum_key());
    for name in ["b", "c", "d", "e"] {
        assert_eq!(
            net.new_share(name).disqualified.get(&1),
            Some(&Disqualification::TooManyComplaints { complaints: 4 })
        );
    }
}

/// A tamper that makes old member `dealer` deal a polynomial whose
/// constant term is not its share: self-consistent deal, proof and
/// shares, for another secret.
fn wrong_secret(
    net: &Net,
    dealer: &'static str,
    seed: u64,
) -> impl FnMut(&str, &str, DkgMessage) -> Option<DkgMessage> {
    let config = net.nodes[dealer].config().clone();
    let index = config.me().old.unwrap();
    let session_id = *config.session_id();
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let polynomial = Polynomial::random(config.new_threshold(), &mut rng);
    let deal = DealMessage::new(session_id, index, &polynomial, &mut rng).unwrap();
    move |from, _to, message| match message {
        DkgMessage::Deal(_) if from == dealer => Some(DkgMessage::Deal(deal.clone())),
        DkgMessage::Share(s) if from == dealer => {
            let j = s.share.index();
            Some(DkgMessage::Share(ShareMessage {
                session_id,
                dealer: index,
                share: SecretKeyShare::new(j, polynomial.evaluate(j)).unwrap(),
            }))
        }
        other => Some(other),
    }
}

#[test]
fn reshare_dealer_of_another_secret_is_excluded() {
    let old = old_epoch(&["a", "b", "c", "d"], 2, 12);
    let net = Net::new(old, &["c", "d", "e"], 2, 3, &[]);
    let tamper = wrong_secret(&net, "b", 99);
    let mut net = net.with_tamper(Box::new(tamper));
    net.run();
    assert_reshared(&net, &["c", "d", "e"], 2, &[1, 3, 4]);
    for name in ["c", "d", "e"] {
        assert_eq!(
            net.new_share(name).disqualified.get(&2),
            Some(&Disqualification::InvalidProof)
        );
    }
}

#[test]
fn reshare_bad_share_dealer_is_excluded_and_a_justified_one_kept() {
    // "a" sends "e" a wrong share and answers the complaint with a wrong
    // share too: out. "b" sends "d" a wrong share and answers correctly:
    // kept, and "d" uses the revealed share.
    let tamper = |from: &str, to: &str, message: DkgMessage| match message {
        DkgMessage::Share(mut s) if (from == "a" && to == "e") || (from == "b" && to == "d") => {
            s.share =
                SecretKeyShare::new(s.share.index(), *s.share.scalar() + Scalar::ONE).unwrap();
            Some(DkgMessage::Share(s))
        }
        DkgMessage::Justification(mut j) if from == "a" => {
            for s in &mut j.revealed {
                *s = SecretKeyShare::new(s.index(), *s.scalar() + Scalar::ONE).unwrap();
            }
            Some(DkgMessage::Justification(j))
        }
        other => Some(other),
    };
    let old = old_epoch(&["a", "b", "c", "d"], 3, 13);
    let mut net =
        Net::new(old, &["b", "c", "d", "e", "f"], 3, 4, &[]).with_tamper(Box::new(tamper));
    net.run();
    assert!(net.rejected.is_empty(), "{:?}", net.rejected);
    assert_reshared(&net, &["b", "c", "d", "e", "f"], 3, &[2, 3, 4]);
    for name in ["b", "c", "d", "e", "f"] {
        assert_eq!(
            net.new_share(name).disqualified.get(&1),
            Some(&Disqualification::BadJustification { member: 4 })
        );
    }
    assert_eq!(net.outcomes.get("a"), Some(&Ok(ReshareOutput::Dealt)));
}

#[test]
fn reshare_equivocating_dealer_is_excluded() {
    let old = old_epoch(&["a", "b", "c"], 2, 14);
    let net = Net::new(old, &["b", "c", "d", "e"], 3, 5, &[]);
    // "a" shows "d" and "e" another deal of its own share (a valid-looking
    // one: right constant term) with matching shares, and does not answer
    // the dispute.
    let config = net.nodes["a"].config().clone();
    let session_id = *config.session_id();
    let share = net.old.shares[0].clone();
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    // Old members deal their share weighted by their Lagrange coefficient
    // over all old members (see `dkg::reshare`).
    let weight = dkg::lagrange_coefficients_at_zero(&[1, 2, 3])[0];
    let other = Polynomial::random_with_secret(&(share.secret.scalar() * weight), 3, &mut rng);
    let other_deal = DealMessage::new(session_id, 1, &other, &mut rng).unwrap();
    let tamper = move |from: &str, to: &str, message: DkgMessage| {
        let victim = to == "d" || to == "e";
        match message {
            DkgMessage::Justification(_) if from == "a" => None,
            DkgMessage::Deal(_) if from == "a" && victim => {
                Some(DkgMessage::Deal(other_deal.clone()))
            }
            DkgMessage::Share(s) if from == "a" && victim => {
                let j = s.share.index();
                Some(DkgMessage::Share(ShareMessage {
                    session_id,
                    dealer: 1,
                    share: SecretKeyShare::new(j, other.evaluate(j)).unwrap(),
                }))
            }
            other => Some(other),
        }
    };
    let mut net = net.with_tamper(Box::new(tamper));
    net.run();
    assert!(net.rejected.is_empty(), "{:?}", net.rejected);
    assert_reshared(&net, &["b", "c", "d", "e"], 3, &[2, 3]);
    for name in ["b", "c", "d", "e"] {
        assert!(matches!(
            net.new_share(name).disqualified.get(&1),
            Some(Disqualification::Equivocation { .. })
        ));
    }
}

#[test]
fn reshare_with_too_few_honest_old_dealers_fails_cleanly() {
    // Old threshold 3, and only two old members deal.
    let old = old_epoch(&["a", "b", "c", "d"], 3, 15);
    let mut net = Net::new(old, &["c", "d", "e"], 2, 6, &["a", "b"]);
    net.run();
    for name in ["c", "d", "e"] {
        assert_eq!(
            net.outcomes.get(name),
            Some(&Err(DkgError::QualTooSmall {
                qualified: 2,
                threshold: 3
            }))
        );
    }
}

#[test]
fn reshare_config_refuses_what_cannot_work() {
    let old = old_epoch(&["a", "b", "c"], 2, 16);
    let new = vec![id("c"), id("d")];
    let config = |me: &str, new_t: u32, new: &[Vec<u8>]| {
        ReshareConfig::new(
            &old.members,
            &old.key_set,
            new,
            new_t,
            NONCE,
            me.as_bytes(),
            T,
        )
    };
    assert_eq!(config("x", 2, &new), Err(ConfigError::NotAParticipant));
    assert_eq!(
        config("c", 3, &new),
        Err(ConfigError::Threshold { threshold: 3, n: 2 })
    );
    assert_eq!(
        config("c", 0, &new),
        Err(ConfigError::Threshold { threshold: 0, n: 2 })
    );
    assert_eq!(
        config("c", 1, &[id("c"), id("c")]),
        Err(ConfigError::DuplicateMember { index: 2 })
    );
    let small = vec![id("a")];
    assert_eq!(
        ReshareConfig::new(&small, &old.key_set, &new, 1, NONCE, b"a", T),
        Err(ConfigError::OldThreshold { threshold: 2, n: 1 })
    );
    let c = config("c", 2, &new).unwrap();
    assert_eq!(
        c.me(),
        Participant {
            old: Some(3),
            new: Some(1)
        }
    );
    assert_eq!(
        c.participant(b"a"),
        Some(Participant {
            old: Some(1),
            new: None
        })
    );
    assert_eq!(
        c.participant(b"d"),
        Some(Participant {
            old: None,
            new: Some(2)
        })
    );
    assert_eq!(c.participant(b"x"), None);
    let mut others = c.others();
    others.sort();
    assert_eq!(others, vec![b"a".as_slice(), b"b", b"d"]);
    // An old member must bring its own share of the old key set.
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let wrong_index = ReshareMember::new(c.clone(), Some(&old.shares[0]), 0, &mut rng);
    assert_eq!(wrong_index.err(), Some(ConfigError::OldShareMismatch));
    let missing = ReshareMember::new(c.clone(), None, 0, &mut rng);
    assert_eq!(missing.err(), Some(ConfigError::OldShareMismatch));
    let other_quorum = old_epoch(&["a", "b", "c"], 2, 17);
    let foreign = ReshareMember::new(c.clone(), Some(&other_quorum.shares[2]), 0, &mut rng);
    assert_eq!(foreign.err(), Some(ConfigError::OldShareMismatch));
    assert!(ReshareMember::new(c, Some(&old.shares[2]), 0, &mut rng).is_ok());
    // A new-only member brings none.
    let d = config("d", 2, &new).unwrap();
    assert_eq!(
        ReshareMember::new(d, Some(&old.shares[0]), 0, &mut rng).err(),
        Some(ConfigError::OldShareMismatch)
    );
}

#[test]
fn reshare_messages_in_the_wrong_role_are_rejected_and_change_nothing() {
    let old = old_epoch(&["a", "b", "c"], 2, 18);
    let mut net = Net::new(old, &["c", "d"], 2, 7, &[]);
    net.flush();
    // A deal from "a" presented as coming from new member "d" (no old
    // index), and as coming from old member 2.
    let (_, (_, _, bytes)) = net
        .queue
        .iter()
        .find(|(_, (from, to, bytes))| {
            from == "a"
                && to == "d"
                && DkgMessage::decode(bytes).unwrap().kind() == MessageKind::Deal
        })
        .map(|(k, v)| (*k, v.clone()))
        .unwrap();
    let deal = DkgMessage::decode(&bytes).unwrap();
    let node = net.nodes.get_mut("d").unwrap();
    let as_new_member = Participant {
        old: None,
        new: Some(2),
    };
    assert_eq!(
        node.handle_message(1, as_new_member, deal.clone()),
        Err(MessageError::NotAMember { from: 0 })
    );
    let as_other_dealer = Participant {
        old: Some(2),
        new: None,
    };
    assert_eq!(
        node.handle_message(1, as_other_dealer, deal.clone()),
        Err(MessageError::SenderMismatch {
            from: 2,
            claimed: 1
        })
    );
    // Old-only member "a" takes no deals.
    let from_b = Participant {
        old: Some(2),
        new: None,
    };
    let mut deal_b = deal.clone();
    if let DkgMessage::Deal(d) = &mut deal_b {
        d.dealer = 2;
    }
    assert_eq!(
        net.nodes
            .get_mut("a")
            .unwrap()
            .handle_message(1, from_b, deal_b),
        Err(MessageError::NotAReceiver {
            kind: MessageKind::Deal
        })
    );
    // The run still completes as if nothing happened.
    net.run();
    assert!(net.rejected.is_empty(), "{:?}", net.rejected);
    assert_reshared(&net, &["c", "d"], 2, &[1, 2, 3]);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
    /// For random (n, t) -> (n', t') and a random overlap, the key is
    /// unchanged, any t' new shares sign for it, t' - 1 do not, and old
    /// shares mixed with new ones do not.
    #[test]
    fn reshare_any_sizes_keep_the_key(
        old_n in 1u32..=6,
        old_t_pick in 0u32..6,
        new_n in 1u32..=6,
        new_t_pick in 0u32..6,
        overlap_pick in 0u32..7,
        seed in 0u64..1_000,
    ) {
        let old_t = 1 + old_t_pick % old_n;
        let new_t = 1 + new_t_pick % new_n;
        let overlap = overlap_pick % (old_n.min(new_n) + 1);
        let old_names = names("old", old_n);
        // The last `overlap` old members stay, in front of the newcomers.
        let mut new_names: Vec<String> = old_names[(old_n - overlap) as usize..].to_vec();
        new_names.extend(names("new", new_n - overlap));
        let old = old_epoch(&refs(&old_names), old_t, seed);
        let mut net = Net::new(old, &refs(&new_names), new_t, seed, &[]);
        net.run();
        proptest::prop_assert!(net.rejected.is_empty());
        let all_dealers: Vec<u32> = (1..=old_n).collect();
        assert_reshared(&net, &refs(&new_names), new_t, &all_dealers);
    }
}
