//! A key rotation driven through the member core by hand
//! (`Start::Rotate`, PROTOCOL.md 15.6): a dealt quorum of 4 (threshold 3)
//! rotates to a new key held by 4 members, old members 1 and 2 staying
//! (new indices 1 and 2) and two newcomers; old members 3 and 4 leave.
//! The new members run a fresh DKG, sign the new key's namespace record
//! at epoch 1, the coordinator collects the old members' shares over the
//! handover and publishes it; the leavers unregister and stop. The test
//! plays one rendezvous node that accepts every registration and checks
//! handovers.

use dkg::DkgConfig;
use libp2p_identity::Keypair;
use member::{Event, Member, MemberConfig, MemberError, QuorumSpec, RotateStart, Start};
use rand_core::SeedableRng;
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::{
    verify_handover, NamespaceRecord, PeerId, QuorumKey, Request, Response, StatusCode,
};

mod support;

use support::{Node, World, T0};

const PHASE_MS: u64 = 1_000;

struct Setup {
    world: World,
    old: TestQuorum,
}

/// Old members 1 and 2 stay (new 1, 2), two newcomers join (new 3, 4),
/// old members 3 and 4 leave (index 0). The newcomers are told the
/// previous quorum key; `newcomers_first` lists them first in the new
/// quorum, so that one of them (without a previous share) coordinates.
fn setup(newcomers_first: bool) -> Setup {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(41);
    let old = TestQuorum::deal(4, 3, &mut rng);
    let newcomers: Vec<Keypair> = (0..2).map(|_| Keypair::generate_ed25519()).collect();
    let stayers: Vec<PeerId> = (1..=2).map(|i| old.peer_id(i)).collect();
    let joiners: Vec<PeerId> = newcomers.iter().map(|k| k.public().to_peer_id()).collect();
    let members: Vec<PeerId> = if newcomers_first {
        joiners.iter().chain(&stayers).copied().collect()
    } else {
        stayers.iter().chain(&joiners).copied().collect()
    };
    let spec = QuorumSpec {
        members: members.clone(),
        threshold: 3,
        kind: Some("farmer".into()),
    };
    let ids: Vec<Vec<u8>> = members.iter().map(|p| p.to_bytes()).collect();
    let mut nonce = b"rotate-test/epoch".to_vec();
    nonce.extend_from_slice(&1u64.to_be_bytes());
    let start = |share: Option<dkg::KeyShare>, index: u32| RotateStart {
        previous_members: (1..=4).map(|i| old.peer_id(i)).collect(),
        previous_threshold: 3,
        previous_share: share,
        previous_quorum_key: Some(old.quorum_key()),
        dkg: (index > 0)
            .then(|| DkgConfig::new(&ids, 3, &nonce, index, PHASE_MS).expect("a DKG config")),
    };
    let config = |index: u32, identity: Keypair| {
        let mut c = MemberConfig::new(spec.clone(), index, identity, 1);
        c.epoch = 1;
        c.dkg_wait_ms = 0;
        c
    };
    let mut nodes = Vec::new();
    let mut add = |identity: Keypair, share: Option<dkg::KeyShare>, seed: u8| {
        let peer_id = identity.public().to_peer_id();
        let index = spec.index_of(&peer_id).unwrap_or(0);
        let member = Member::new(
            config(index, identity),
            Start::Rotate(Box::new(start(share, index))),
            T0,
            [seed; 32],
        )
        .expect("a valid rotation start");
        nodes.push(Node {
            peer_id,
            member,
            events: Vec::new(),
        });
    };
    for i in 1..=4u32 {
        add(
            old.identities[i as usize - 1].clone(),
            Some(old.shares[i as usize - 1].clone()),
            i as u8,
        );
    }
    for (k, identity) in newcomers.into_iter().enumerate() {
        add(identity, None, 10 + k as u8);
    }
    let world = World::new(nodes, None);
    Setup { world, old }
}

fn rotate(newcomers_first: bool) {
    let Setup { mut world, old } = setup(newcomers_first);
    world.run(120_000, |w| {
        !w.handovers.is_empty()
            && w.nodes[2].member.is_shut_down()
            && w.nodes[3].member.is_shut_down()
    });
    // Nodes 0, 1 (stayers) and 4, 5 (newcomers) hold shares of one new key.
    let new_members = [0usize, 1, 4, 5];
    let shares: Vec<&dkg::KeyShare> = new_members
        .iter()
        .map(|i| world.nodes[*i].member.key_share().expect("a new key share"))
        .collect();
    let new_key = QuorumKey::from(shares[0].quorum_key());
    assert_ne!(new_key, old.quorum_key(), "a fresh key");
    for share in &shares {
        assert_eq!(QuorumKey::from(share.quorum_key()), new_key);
        assert_eq!(share.n, 4);
        assert_eq!(share.threshold(), 3);
    }
    // The new key's namespace record starts at the configured epoch.
    let record = world
        .registered_namespaces
        .iter()
        .find(|r| r.commitments.first() == Some(&new_key.0))
        .expect("the new key's namespace record was registered");
    assert_eq!(record.epoch, 1);
    // The published handover verifies: old key -> new key.
    let handover = &world.handovers[0];
    assert_eq!(verify_handover(handover, world.now), Ok(()));
    assert_eq!(handover.old_quorum_key, old.quorum_key());
    assert_eq!(handover.new_quorum_key, new_key);
    assert!(
        handover.expires_at_ms - handover.issued_at_ms
            <= rendezvous_proto::handover::MAX_HANDOVER_TTL_MS - member::HANDOVER_TTL_MARGIN_MS
    );
    let coordinator = world
        .nodes
        .iter()
        .find(|n| {
            n.events
                .iter()
                .any(|e| matches!(e, Event::HandoverSigned(_)))
        })
        .expect("a coordinator signed the handover");
    let old_peers: Vec<PeerId> = (1..=4).map(|i| old.peer_id(i)).collect();
    assert_eq!(
        !old_peers.contains(&coordinator.peer_id),
        newcomers_first,
        "the coordinator is a newcomer exactly when newcomers come first"
    );
    assert!(coordinator
        .events
        .iter()
        .any(|e| matches!(e, Event::HandoverPublished { rendezvous: 0 })));
    // A renewal, coordinated by another new member, makes no second
    // handover: only the new key's first record does.
    let other = new_members
        .iter()
        .copied()
        .find(|i| {
            !world.nodes[*i]
                .events
                .iter()
                .any(|e| matches!(e, Event::HandoverSigned(_)))
        })
        .expect("a new member that did not coordinate");
    let signed_before = world.registered_namespaces.len();
    let now = world.now + 1_000;
    world.now = now;
    world.nodes[other].member.renew_namespace(now);
    world.run(world.now - T0 + 30_000, |w| {
        w.registered_namespaces.len() > signed_before
    });
    assert!(world.registered_namespaces.len() > signed_before, "renewed");
    world.pump();
    assert_eq!(world.handovers.len(), 1, "one handover");
    assert!(!world.nodes[other]
        .events
        .iter()
        .any(|e| matches!(e, Event::HandoverSigned(_))));
    // The leavers gave their shares, unregistered under their old index
    // and stopped.
    for (node, previous_index) in [(2usize, 3u32), (3, 4)] {
        let n = &world.nodes[node];
        assert!(n.member.is_shut_down());
        assert!(n.member.key_share().is_none());
        assert!(n.events.iter().any(
            |e| matches!(e, Event::HandoverCosigned { previous_index: p } if *p == previous_index)
        ));
        assert!(world
            .unregistered
            .contains(&(old.quorum_key(), previous_index)));
    }
}

#[test]
fn rotate_to_a_new_key_hands_the_old_one_over() {
    rotate(false);
}

#[test]
fn rotate_coordinated_by_a_newcomer_without_a_previous_share() {
    rotate(true);
}

#[test]
fn rotate_start_is_checked() {
    let Setup { world, old } = setup(false);
    let spec = world.nodes[0].member.config().quorum.clone();
    let base = RotateStart {
        previous_members: (1..=4).map(|i| old.peer_id(i)).collect(),
        previous_threshold: 3,
        previous_share: Some(old.shares[2].clone()),
        previous_quorum_key: None,
        dkg: None,
    };
    let config = |index: u32, epoch: u64| {
        let mut c = MemberConfig::new(spec.clone(), index, old.identities[2].clone(), 1);
        c.epoch = epoch;
        c
    };
    let try_start =
        |c: MemberConfig, s: RotateStart| Member::new(c, Start::Rotate(Box::new(s)), T0, [0; 32]);
    // A leaver with its share: fine.
    assert!(try_start(config(0, 1), base.clone()).is_ok());
    // Epoch 0 is not made by a rotation.
    assert!(matches!(
        try_start(config(0, 0), base.clone()),
        Err(MemberError::Config(_))
    ));
    // A leaver without a previous share.
    let mut s = base.clone();
    s.previous_share = None;
    assert!(matches!(
        try_start(config(0, 1), s),
        Err(MemberError::Config(_))
    ));
    // Someone else's previous share.
    let mut s = base.clone();
    s.previous_share = Some(old.shares[0].clone());
    assert!(matches!(
        try_start(config(0, 1), s),
        Err(MemberError::Config(_))
    ));
    // A previous threshold above the previous members.
    let mut s = base.clone();
    s.previous_threshold = 5;
    assert!(matches!(
        try_start(config(0, 1), s),
        Err(MemberError::Config(_))
    ));
}

#[test]
fn a_handover_to_the_old_key_itself_is_refused() {
    let Setup { mut world, old } = setup(false);
    let spec = world.nodes[0].member.config().quorum.clone();
    let from = spec.members[1];
    let handover = old.handover(old.quorum_key(), T0, T0 + 1_000);
    let namespace: NamespaceRecord = old.namespace(1, Some("farmer"), T0, T0 + 1_000);
    // A leaver asked for a handover to its own key refuses it (and stays).
    let answer = world.nodes[2].member.handle_request(
        T0,
        &from,
        Request::SignHandover {
            handover,
            namespace,
        },
    );
    assert_eq!(answer, Response::Rejected(StatusCode::InvalidParameters));
    assert!(!world.nodes[2].member.is_shut_down());
}
