//! #14 over loopback: a running quorum of 4 (threshold 3, kind `farmer`)
//! reshares to epoch 1, member 1 leaving and a newcomer joining. The
//! members are restarted with the epoch-1 quorum file (as an operator
//! would run `rdht quorum --quorum next.toml`); a client discovers all
//! along. Checked: the quorum key stays; discovery switches to the new
//! members with no gap (fewer than `threshold` verified members listed)
//! longer than one refresh interval; the leaver unregisters and stops; its
//! old share is refused when it tries to register. Bounded in time,
//! 127.0.0.1 only.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use node::demo::{register_raw, start_quorum, start_rendezvous_nodes};
use node::discover::Client;
use rendezvous_proto::{Response, StatusCode};

const PHASE: Duration = Duration::from_millis(400);
/// Records live 20 s, so members refresh every 10 s: the longest gap
/// allowed.
const TTL: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reshare_a_running_quorum_switches_discovery_to_the_new_members() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let nodes = start_rendezvous_nodes(1, Duration::from_secs(3600), 3)
            .await
            .unwrap();
        let at = nodes[0].addr();
        let rendezvous = vec![at.clone()];
        let mut old = start_quorum(4, 3, Some("farmer"), rendezvous.clone(), TTL, PHASE)
            .await
            .unwrap();
        let quorum_key = old
            .wait_registered(1, Duration::from_secs(60))
            .await
            .unwrap();
        let old_shares: Vec<dkg::KeyShare> = (1..=4).map(|i| old.key_share(i).unwrap()).collect();
        let old_peers: Vec<PeerId> = old.file.members.iter().map(|m| m.peer_id).collect();

        // The client probes all along, from here on.
        let probe = tokio::spawn({
            let at = at.clone();
            async move {
                let mut client = Client::ephemeral().unwrap();
                let mut timeline = Vec::new();
                let until = Instant::now() + Duration::from_secs(100);
                while Instant::now() < until {
                    let seen = match client
                        .discover(&at, quorum_key, Duration::from_secs(2))
                        .await
                    {
                        Ok(a) => Some((
                            a.epoch(),
                            a.peers
                                .iter()
                                .map(|p| p.record.peer_id())
                                .collect::<BTreeSet<_>>(),
                        )),
                        Err(_) => None,
                    };
                    let done = seen.as_ref().is_some_and(|(epoch, _)| *epoch == 1)
                        && timeline.iter().rev().take(20).all(
                            |(_, s): &(Instant, Option<(u64, BTreeSet<PeerId>)>)| {
                                s.as_ref().is_some_and(|(e, p)| *e == 1 && p.len() == 4)
                            },
                        )
                        && timeline.len() > 20;
                    timeline.push((Instant::now(), seen));
                    if done {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                timeline
            }
        });

        // Epoch 1: members 2, 3, 4 stay, a newcomer joins, member 1 leaves.
        // Each old member is restarted (same identity, a new port) with the
        // epoch-1 file; the old processes stop as a crash would, so they do
        // not unregister the epoch-0 records before the new ones are in.
        let (next, mut leavers) = old
            .reshare(&old_shares, &[2, 3, 4], 1, 3, rendezvous.clone())
            .await
            .unwrap();
        let timeline = probe.await.unwrap();
        let new_peers: BTreeSet<PeerId> = next.file.members.iter().map(|m| m.peer_id).collect();
        let last = timeline.last().and_then(|(_, s)| s.clone());
        assert_eq!(
            last,
            Some((1, new_peers.clone())),
            "discovery ends at epoch 1 with exactly the new members"
        );
        // No gap: the longest time without `threshold` verified members.
        let mut gap_start: Option<Instant> = None;
        let mut longest = Duration::ZERO;
        for (at, seen) in &timeline {
            let listed = seen.as_ref().map_or(0, |(_, p)| p.len());
            match (listed >= 3, gap_start) {
                (false, None) => gap_start = Some(*at),
                (true, Some(start)) => {
                    longest = longest.max(*at - start);
                    gap_start = None;
                }
                _ => {}
            }
        }
        let first_epoch_1 = timeline
            .iter()
            .find(|(_, s)| s.as_ref().is_some_and(|(e, p)| *e == 1 && p.len() == 4))
            .map(|(at, _)| *at);
        if let (Some((start, _)), Some(switched)) = (timeline.first(), first_epoch_1) {
            eprintln!(
                "epoch 1 with all 4 new members listed {:?} after the restart; longest gap {longest:?}; {} probes",
                switched - *start,
                timeline.len()
            );
        }
        assert!(gap_start.is_none());
        assert!(
            longest <= TTL / 2,
            "discovery had a gap of {longest:?}, longer than one refresh interval"
        );
        // Answers never mixed epochs: epoch-0 answers list old members only.
        for (_, seen) in &timeline {
            if let Some((0, peers)) = seen {
                assert!(peers.iter().all(|p| old_peers.contains(p)));
            }
        }
        // Same key; the new shares are of a new key set.
        let new_share = next.key_share(1).expect("a new member holds a share");
        assert_eq!(
            rendezvous_proto::QuorumKey::from(new_share.quorum_key()),
            quorum_key
        );
        assert_ne!(new_share.public_key_set, old_shares[0].public_key_set);
        // The leaver dealt, unregistered and stopped on its own.
        let leaver = leavers.pop().expect("member 1 leaves");
        assert!(leavers.is_empty());
        tokio::time::timeout(Duration::from_secs(20), leaver.join())
            .await
            .expect("the leaving member stops on its own")
            .expect("and without an error");
        // Its old share (epoch 0) is refused now that epoch 1 is in.
        let answer = register_raw(
            &at,
            old.keypairs[0].clone(),
            quorum_key,
            &old_shares[0].secret,
        )
        .await
        .unwrap();
        assert_eq!(answer, Response::Rejected(StatusCode::StaleEpoch));
        for h in next.members.into_iter().flatten() {
            let _ = h.shutdown().await;
        }
    })
    .await
    .expect("test timed out");
}
