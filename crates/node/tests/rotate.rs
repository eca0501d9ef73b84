//! #14 item 3 over loopback: a running quorum of 4 (threshold 3, kind
//! `farmer`) rotates its key (`mode = "rotate"`): members 1 and 2 stay,
//! two newcomers join, members 3 and 4 leave. The members are restarted
//! with the epoch-1 quorum file (as an operator would run `rdht quorum
//! --quorum next.toml`). Checked: the new members run a fresh DKG (a new
//! key) whose namespace is at epoch 1; the old members sign the handover
//! and it is published; a client that discovers by the OLD key is sent on
//! to the new key's members (`discover_following`); the old key's
//! namespace is retired (registrations refused `NamespaceRetired`); the
//! leavers stop on their own. Bounded in time, 127.0.0.1 only.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use node::demo::{register_raw, start_quorum, start_rendezvous_nodes};
use node::discover::Client;
use rendezvous_proto::{QuorumKey, Response, StatusCode};

const PHASE: Duration = Duration::from_millis(400);
const TTL: Duration = Duration::from_secs(20);
const T: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_a_running_quorum_hands_the_old_key_over_to_the_new_one() {
    tokio::time::timeout(Duration::from_secs(150), async {
        let nodes = start_rendezvous_nodes(1, Duration::from_secs(3600), 3)
            .await
            .unwrap();
        let at = nodes[0].addr();
        let rendezvous = vec![at.clone()];
        let mut old = start_quorum(4, 3, Some("farmer"), rendezvous.clone(), TTL, PHASE)
            .await
            .unwrap();
        let old_key = old
            .wait_registered(1, Duration::from_secs(60))
            .await
            .unwrap();
        let old_shares: Vec<dkg::KeyShare> = (1..=4).map(|i| old.key_share(i).unwrap()).collect();

        let started = Instant::now();
        let (next, leavers) = old
            .rotate(&old_shares, &[1, 2], 2, 3, rendezvous.clone(), PHASE)
            .await
            .unwrap();
        let new_key = next
            .wait_registered(1, Duration::from_secs(60))
            .await
            .unwrap();
        assert_ne!(new_key, old_key, "a rotation makes a new key");
        for i in 1..=4 {
            let share = next.key_share(i).expect("every new member holds a share");
            assert_eq!(QuorumKey::from(share.quorum_key()), new_key);
        }
        let new_peers: BTreeSet<PeerId> = next.file.members.iter().map(|m| m.peer_id).collect();

        // A client that knows the old key only is sent on to the new one.
        let mut client = Client::ephemeral().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let followed = loop {
            match client.discover_following(&at, old_key, T).await {
                Ok(f)
                    if f.answer.namespace.quorum_key() == new_key && f.answer.peers.len() == 4 =>
                {
                    break f;
                }
                result => {
                    assert!(
                        Instant::now() < deadline,
                        "discovery by the old key never reached the new members: {result:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        };
        eprintln!(
            "discovery by the old key reached the new key's 4 members {:?} after the restart",
            started.elapsed()
        );
        assert_eq!(followed.chain.hops(), vec![(old_key, new_key)]);
        assert_eq!(followed.answer.epoch(), 1);
        let listed: BTreeSet<PeerId> = followed
            .answer
            .peers
            .iter()
            .map(|p| p.record.peer_id())
            .collect();
        assert_eq!(listed, new_peers, "the new key's members");

        // The leavers co-signed, unregistered and stopped on their own.
        assert_eq!(leavers.len(), 2);
        for leaver in leavers {
            tokio::time::timeout(Duration::from_secs(20), leaver.join())
                .await
                .expect("a leaving member stops on its own")
                .expect("and without an error");
        }
        // The old key is retired: its shares register nothing any more.
        let answer = register_raw(&at, old.keypairs[2].clone(), old_key, &old_shares[2].secret)
            .await
            .unwrap();
        assert_eq!(answer, Response::Rejected(StatusCode::NamespaceRetired));
        for h in next.members.into_iter().flatten() {
            let _ = h.shutdown().await;
        }
    })
    .await
    .expect("test timed out");
}
