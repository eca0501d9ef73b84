//! A resharing driven through the member core by hand: a dealt quorum of
//! 4 (threshold 3) at epoch 0 reshares to epoch 1, where member 1 leaves
//! and a newcomer joins. Requests travel between the cores by PeerId; the
//! test plays one rendezvous node that holds the epoch-0 namespace record
//! and accepts every registration.

use libp2p_identity::Keypair;
use member::{Event, Member, MemberConfig, MemberError, QuorumSpec, ReshareStart, Start};
use rand_core::SeedableRng;
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::{PeerId, QuorumKey};

mod support;

use support::{Node, World, T0};

const PHASE_MS: u64 = 1_000;

fn new_spec(q: &TestQuorum, newcomer: &Keypair) -> QuorumSpec {
    let mut members: Vec<PeerId> = (2..=4).map(|i| q.peer_id(i)).collect();
    members.push(newcomer.public().to_peer_id());
    QuorumSpec {
        members,
        threshold: 3,
        kind: Some("farmer".into()),
    }
}

fn world(previous_share_of_newcomer: bool) -> (World, TestQuorum) {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(31);
    let q = TestQuorum::deal(4, 3, &mut rng);
    let newcomer = Keypair::generate_ed25519();
    let spec = new_spec(&q, &newcomer);
    let previous_record = q.namespace(0, Some("farmer"), T0, T0 + 3_600_000);
    let start = |share: Option<dkg::KeyShare>| ReshareStart {
        previous_members: (1..=4).map(|i| q.peer_id(i)).collect(),
        previous_threshold: 3,
        quorum_key: q.quorum_key(),
        previous_share: share,
        phase_timeout_ms: PHASE_MS,
    };
    let config = |index: u32, identity: Keypair| {
        let mut c = MemberConfig::new(spec.clone(), index, identity, 1);
        c.epoch = 1;
        c
    };
    let mut nodes = Vec::new();
    // Old member 1 leaves (index 0); 2..4 become new members 1..3.
    for old in 1..=4u32 {
        let identity = q.identities[old as usize - 1].clone();
        let share = q.shares[old as usize - 1].clone();
        let member = Member::new(
            config(old - 1, identity.clone()),
            Start::Reshare(Box::new(start(Some(share)))),
            T0,
            [old as u8; 32],
        )
        .unwrap();
        nodes.push(Node {
            peer_id: identity.public().to_peer_id(),
            member,
            events: Vec::new(),
        });
    }
    let newcomer_share = previous_share_of_newcomer.then(|| q.shares[0].clone());
    let member = Member::new(
        config(4, newcomer.clone()),
        Start::Reshare(Box::new(start(newcomer_share))),
        T0,
        [9; 32],
    );
    if let Ok(member) = member {
        nodes.push(Node {
            peer_id: newcomer.public().to_peer_id(),
            member,
            events: Vec::new(),
        });
    }
    (World::new(nodes, Some(previous_record)), q)
}

fn finished(node: &Node) -> Option<&dkg::DkgOutput> {
    node.events.iter().find_map(|e| match e {
        Event::ReshareFinished(out) => Some(&**out),
        _ => None,
    })
}

#[test]
fn reshare_members_switch_epochs_and_the_leaver_unregisters() {
    let (mut world, q) = world(false);
    assert_eq!(world.nodes.len(), 5);
    // With every message delivered at once, the run needs no deadline: a
    // message that reached the newcomer while it was still fetching the
    // previous key set is kept for the run, not lost.
    world.run(30_000, |w| {
        w.nodes[1..].iter().all(|n| n.member.key_share().is_some())
    });
    assert!(
        world.now < T0 + PHASE_MS,
        "the resharing waited for a deadline: {} ms",
        world.now - T0
    );
    world.run(30_000, |w| {
        w.nodes[1..].iter().all(|n| n.member.namespace().is_some())
            && w.nodes[0].member.is_shut_down()
    });
    // Every new member holds a share of epoch 1 under the same key.
    let outputs: Vec<_> = world.nodes[1..]
        .iter()
        .map(|n| finished(n).expect("a new share"))
        .collect();
    for out in &outputs {
        assert_eq!(QuorumKey::from(out.key_share.quorum_key()), q.quorum_key());
        assert_eq!(
            out.key_share.public_key_set,
            outputs[0].key_share.public_key_set
        );
        assert_eq!(out.key_share.n, 4);
    }
    assert_ne!(
        outputs[0].key_share.public_key_set, q.shares[0].public_key_set,
        "fresh commitments"
    );
    // The newcomer learnt the old key set from the rendezvous node.
    let newcomer = &world.nodes[4];
    assert!(newcomer
        .events
        .iter()
        .any(|e| matches!(e, Event::ReshareStarted { epoch: 1 })));
    // The leaver dealt, then unregistered under its old index, and stops.
    assert!(world.nodes[0]
        .events
        .iter()
        .any(|e| matches!(e, Event::ReshareDealt { previous_index: 1 })));
    assert!(world.unregistered.contains(&(q.quorum_key(), 1)));
    assert!(world.nodes[0].member.is_shut_down());
    assert!(world.nodes[0].member.key_share().is_none());
    // The new epoch's namespace record: epoch 1, the new members, signed
    // by the unchanged quorum key over the new key set.
    let record = world
        .registered_namespaces
        .iter()
        .find(|r| r.epoch == 1)
        .expect("an epoch-1 namespace record was registered");
    let verified = rendezvous_proto::validate::verify_namespace(
        record,
        world.now,
        &rendezvous_proto::Limits::DEFAULT,
    )
    .expect("it verifies");
    assert_eq!(verified.quorum_key(), q.quorum_key());
    assert_eq!(
        verified.key_set(),
        Some(&outputs[0].key_share.public_key_set)
    );
    assert_eq!(
        record.members.as_deref(),
        Some(world.nodes[1].member.config().quorum.members.as_slice())
    );
    // Every member now registers under epoch 1.
    for node in &world.nodes[1..] {
        assert_eq!(node.member.namespace().map(|r| r.epoch), Some(1));
    }
}

#[test]
fn reshare_without_enough_old_dealers_fails_and_says_so() {
    let (mut world, _q) = world(false);
    // Old members 2, 3 and 4 never run: only member 1 deals, below the
    // old threshold of 3.
    world.nodes.drain(1..4);
    world.run(30_000, |w| {
        w.nodes.iter().all(|n| n.member.failure().is_some())
    });
    let newcomer = &world.nodes[1];
    assert!(newcomer
        .events
        .iter()
        .any(|e| matches!(e, Event::ReshareFailed { .. })));
    assert!(matches!(
        newcomer.member.failure(),
        Some(MemberError::Reshare(_))
    ));
    assert!(newcomer.member.key_share().is_none());
    assert!(world.registered_namespaces.is_empty(), "epoch 0 stays");
}

#[test]
fn reshare_start_is_checked_before_anything_is_sent() {
    // A newcomer that brings someone else's share of epoch 0 stops at
    // once, having sent nothing.
    let (mut world, _q) = world(true);
    let newcomer = &mut world.nodes[4];
    assert!(matches!(
        newcomer.member.failure(),
        Some(MemberError::Reshare(_))
    ));
    assert!(newcomer.member.poll_transmit().is_none());
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let q = TestQuorum::deal(3, 2, &mut rng);
    let spec = QuorumSpec {
        members: (1..=3).map(|i| q.peer_id(i)).collect(),
        threshold: 2,
        kind: None,
    };
    let start = ReshareStart {
        previous_members: (1..=3).map(|i| q.peer_id(i)).collect(),
        previous_threshold: 2,
        quorum_key: q.quorum_key(),
        previous_share: Some(q.shares[0].clone()),
        phase_timeout_ms: PHASE_MS,
    };
    // Epoch 0 cannot be made by a resharing.
    let config = MemberConfig::new(spec.clone(), 1, q.identities[0].clone(), 1);
    let refused = Member::new(config, Start::Reshare(Box::new(start.clone())), T0, [0; 32]);
    assert!(matches!(refused, Err(MemberError::Config(_))));
    // A leaver (index 0) needs its previous share.
    let mut config = MemberConfig::new(spec, 0, q.identities[0].clone(), 1);
    config.epoch = 1;
    let mut no_share = start;
    no_share.previous_share = None;
    let refused = Member::new(config, Start::Reshare(Box::new(no_share)), T0, [0; 32]);
    assert!(matches!(refused, Err(MemberError::Config(_))));
}
