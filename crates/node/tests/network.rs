//! Real nodes on 127.0.0.1, in-process: DKG over the network, discovery
//! from every rendezvous, refusals, liveness, replication, persistence.
//! Every test is bounded in time and polls with deadlines.

use std::time::{Duration, Instant};

use libp2p::identity::Keypair;
use node::demo::{
    discover_until, forged_share, register_raw, start_quorum, start_rendezvous_nodes,
};
use node::discover::Client;
use node::quorum::MemberError;
use rendezvous_proto::{Response, StatusCode};

const PING: Duration = Duration::from_millis(300);
const MISSES: u32 = 2;
const TTL: Duration = Duration::from_secs(10);
const DKG_PHASE: Duration = Duration::from_secs(3);
const WAIT: Duration = Duration::from_secs(20);

/// A loopback rendezvous configuration with a fresh data directory.
fn persistent_config(tag: &str) -> (std::path::PathBuf, node::rendezvous::RendezvousConfig) {
    let dir = std::env::temp_dir().join(format!(
        "rdht-{tag}-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let mut config = node::rendezvous::RendezvousConfig {
        listen: vec![node::demo::loopback()],
        data_dir: Some(dir.clone()),
        ..Default::default()
    };
    config.store.liveness.ping_interval_ms = PING.as_millis() as u64;
    config.store.liveness.max_misses = MISSES;
    (dir, config)
}

fn indices(a: &rendezvous_proto::VerifiedAnswer) -> Vec<u32> {
    a.peers.iter().map(|p| p.record.index()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_quorums_three_rendezvous_refusals_liveness_and_failover() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let nodes = start_rendezvous_nodes(3, PING, MISSES).await.unwrap();
        let addrs: Vec<_> = nodes.iter().map(|n| n.addr()).collect();

        // Quorum A registers at R1 only, quorum B at R2 only: both run
        // the DKG over the network.
        let mut a = start_quorum(4, 3, Some("farmer"), vec![addrs[0].clone()], TTL, DKG_PHASE)
            .await
            .unwrap();
        let b = start_quorum(3, 2, None, vec![addrs[1].clone()], TTL, DKG_PHASE)
            .await
            .unwrap();
        let key_a = a.wait_registered(1, WAIT).await.unwrap();
        let key_b = b.wait_registered(1, WAIT).await.unwrap();
        assert_ne!(key_a, key_b);
        // Every member of both holds a share of the same key set.
        for q in [&a, &b] {
            let shares: Vec<_> = (1..=q.file.n()).map(|i| q.key_share(i).unwrap()).collect();
            for s in &shares {
                assert_eq!(s.public_key_set, shares[0].public_key_set);
            }
        }

        // Every member of both quorums, from every rendezvous, verified.
        let mut client = Client::ephemeral().unwrap();
        for at in &addrs {
            for (key, n) in [(key_a, 4u32), (key_b, 3)] {
                let ans =
                    discover_until(&mut client, at, key, WAIT, |x| x.peers.len() == n as usize)
                        .await
                        .unwrap();
                assert!(ans.rejected.is_empty());
                assert_eq!(indices(&ans), (1..=n).collect::<Vec<_>>());
                assert_eq!(ans.namespace.threshold(), if n == 4 { 3 } else { 2 });
                for p in &ans.peers {
                    let file = if n == 4 { &a.file } else { &b.file };
                    assert_eq!(
                        Some(p.record.peer_id()),
                        file.member(p.record.index()).map(|m| m.peer_id)
                    );
                }
            }
        }

        // An outsider with a fresh identity and a made-up share for seat 2,
        // sent by hand (no member software would send it).
        let real2 = a.key_share(2).unwrap();
        let outsider_key = Keypair::generate_ed25519();
        let outsider_id = outsider_key.public().to_peer_id();
        let forged2 = forged_share(&real2, 2).unwrap();
        assert_eq!(
            register_raw(&addrs[0], outsider_key, key_a, &forged2.secret)
                .await
                .unwrap(),
            Response::Rejected(StatusCode::NotAMember)
        );

        // A member whose secret share was altered refuses to start, naming
        // the mismatch, before it asks any rendezvous node...
        let real3 = a.key_share(3).unwrap();
        let altered = forged_share(&real3, 3).unwrap();
        match a
            .start_member_with(a.keypairs[2].clone(), altered.clone())
            .await
        {
            Err(MemberError::Member(member::MemberError::KeyShareMismatch { index: 3 })) => {}
            other => panic!("an altered share was not refused at start: {other:?}"),
        }
        // ...and the same record sent by hand from its own identity is
        // refused by the rendezvous node.
        assert_eq!(
            register_raw(&addrs[0], a.keypairs[2].clone(), key_a, &altered.secret)
                .await
                .unwrap(),
            Response::Rejected(StatusCode::InvalidShareSignature)
        );

        // Neither is ever listed: the honest records are untouched.
        for at in &addrs {
            let ans = discover_until(&mut client, at, key_a, WAIT, |x| x.peers.len() == 4)
                .await
                .unwrap();
            assert!(ans.peers.iter().all(|p| p.record.peer_id() != outsider_id));
            let honest3 = a.file.member(3).unwrap().peer_id;
            let p3 = ans.peers.iter().find(|p| p.record.index() == 3).unwrap();
            assert_eq!(p3.record.peer_id(), honest3);
        }

        // Kill member 4 of A: it disappears everywhere within
        // interval x misses plus a margin.
        a.members[3].take().unwrap().kill();
        let killed = Instant::now();
        let bound = PING * MISSES + Duration::from_secs(3);
        for at in &addrs {
            let left = bound.saturating_sub(killed.elapsed());
            discover_until(&mut client, at, key_a, left, |x| !indices(x).contains(&4))
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "member 4 still listed at {at} after {:?}: {e}",
                        killed.elapsed()
                    )
                });
        }
        assert!(killed.elapsed() <= bound, "took {:?}", killed.elapsed());

        // Kill R1 (where A registered): A's peers stay discoverable from R2, R3.
        nodes[0].kill();
        for at in &addrs[1..] {
            let ans = discover_until(&mut client, at, key_a, WAIT, |x| {
                indices(x) == vec![1, 2, 3]
            })
            .await
            .unwrap();
            assert!(ans.rejected.is_empty());
        }
        // And B (registered at R2) is still served by R3.
        discover_until(&mut client, &addrs[2], key_b, WAIT, |x| x.peers.len() == 3)
            .await
            .unwrap();

        // A member that restarts with its key share is listed again (at R2,
        // which still holds the namespace, after its next registration).
        for m in a.members.iter_mut() {
            if let Some(m) = m.take() {
                m.kill();
            }
        }
        for m in b.members.into_iter().flatten() {
            m.kill();
        }
        for n in nodes.into_iter().skip(1) {
            n.shutdown().await;
        }
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_member_is_listed_again_and_records_survive_a_restart() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let (dir, mut config) = persistent_config("persist");
        let keypair = Keypair::generate_ed25519();
        let r = node::rendezvous::start(keypair.clone(), config.clone())
            .await
            .unwrap();
        let at = r.addr();
        let bound_addr = r.listen_addrs[0].clone();
        let mut q = start_quorum(
            3,
            2,
            Some("harvester"),
            vec![at.clone()],
            Duration::from_secs(60),
            DKG_PHASE,
        )
        .await
        .unwrap();
        let key = q.wait_registered(1, WAIT).await.unwrap();
        let mut client = Client::ephemeral().unwrap();
        discover_until(&mut client, &at, key, WAIT, |x| x.peers.len() == 3)
            .await
            .unwrap();

        // Member 2 crashes, drops out, restarts with its key share: listed again.
        let share2 = q.key_share(2).unwrap();
        q.members[1].take().unwrap().kill();
        discover_until(&mut client, &at, key, WAIT, |x| indices(x) == vec![1, 3])
            .await
            .unwrap();
        q.members[1] = Some(
            q.start_member_with(q.keypairs[1].clone(), share2)
                .await
                .unwrap(),
        );
        discover_until(&mut client, &at, key, WAIT, |x| indices(x) == vec![1, 2, 3])
            .await
            .unwrap();

        // The rendezvous restarts on the same data dir and port: nothing lost.
        let fingerprint_before = r.fingerprint().await.unwrap();
        assert!(!fingerprint_before.is_empty());
        r.shutdown().await;
        config.listen = vec![bound_addr];
        let r2 = node::rendezvous::start(keypair, config).await.unwrap();
        let stats = r2.stats().await.unwrap();
        assert_eq!(stats.namespaces, 1);
        assert_eq!(stats.peer_records, 3);
        let mut fresh = Client::ephemeral().unwrap();
        discover_until(&mut fresh, &r2.addr(), key, WAIT, |x| x.peers.len() == 3)
            .await
            .unwrap();

        for m in q.members.into_iter().flatten() {
            m.kill();
        }
        r2.shutdown().await;
        std::fs::remove_dir_all(&dir).ok();
    })
    .await
    .expect("test timed out");
}

/// #16 problem 1: the first rendezvous node (started without
/// `--bootstrap`), restarted on its data directory, must rejoin the DHT
/// through the rendezvous peers it knew, not serve alone: a namespace
/// registered there after the restart reaches the other node. (Without
/// the saved peers its routing table is empty and nothing replicates.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_first_rendezvous_rejoins_through_its_saved_peers() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let (dir, config) = persistent_config("rejoin");
        let keypair = Keypair::generate_ed25519();
        let a = node::rendezvous::start(keypair.clone(), config.clone())
            .await
            .unwrap();
        let mut b_config = config.clone();
        b_config.data_dir = None;
        b_config.bootstrap = vec![a.addr()];
        let b = node::rendezvous::start(Keypair::generate_ed25519(), b_config)
            .await
            .unwrap();
        // A quorum registered at A reaches B: A and B know each other.
        let q1 = start_quorum(3, 2, None, vec![a.addr()], TTL, DKG_PHASE)
            .await
            .unwrap();
        let key1 = q1.wait_registered(1, WAIT).await.unwrap();
        let mut client = Client::ephemeral().unwrap();
        discover_until(&mut client, &b.addr(), key1, WAIT, |x| x.peers.len() == 3)
            .await
            .unwrap();

        // A restarts on its data dir, on another port, with no --bootstrap.
        a.shutdown().await;
        let a2 = node::rendezvous::start(keypair, config).await.unwrap();
        let q2 = start_quorum(3, 2, None, vec![a2.addr()], TTL, DKG_PHASE)
            .await
            .unwrap();
        let key2 = q2.wait_registered(1, WAIT).await.unwrap();
        let started = Instant::now();
        discover_until(&mut client, &b.addr(), key2, WAIT, |x| x.peers.len() == 3)
            .await
            .expect("a namespace registered at the restarted node reaches the other one");
        println!(
            "restarted rendezvous: new namespace at the other node after {:.2} s",
            started.elapsed().as_secs_f64()
        );

        for m in q1.members.into_iter().chain(q2.members).flatten() {
            m.kill();
        }
        a2.shutdown().await;
        b.shutdown().await;
        std::fs::remove_dir_all(&dir).ok();
    })
    .await
    .expect("test timed out");
}

/// #16: "the metrics agree with the answers". A rendezvous node without
/// a data directory (nothing persisted, so no persistence step to mark
/// its gauges stale) counts in `rdht_peers` and `rdht_reachable_peers`
/// the members its answers list; a member that stops answering leaves
/// the reachable gauge and the answers together, and its record stays
/// stored. (The gauges used to be refreshed only after a persistence
/// step, a replicated value or a listing change: such a node showed 0
/// while it listed every member.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gauges_agree_with_the_answers_without_a_data_dir() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let mut config = node::rendezvous::RendezvousConfig {
            listen: vec![node::demo::loopback()],
            ..Default::default()
        };
        config.store.liveness.ping_interval_ms = PING.as_millis() as u64;
        config.store.liveness.max_misses = MISSES;
        let metrics = config.metrics.clone();
        let r = node::rendezvous::start(Keypair::generate_ed25519(), config)
            .await
            .unwrap();
        let mut q = start_quorum(3, 2, None, vec![r.addr()], TTL, DKG_PHASE)
            .await
            .unwrap();
        let key = q.wait_registered(1, WAIT).await.unwrap();
        let mut client = Client::ephemeral().unwrap();
        for listed in [3u64, 2] {
            if listed == 2 {
                q.members[2].take().unwrap().kill();
            }
            discover_until(&mut client, &r.addr(), key, WAIT, |x| {
                x.peers.len() as u64 == listed
            })
            .await
            .unwrap();
            // A change reaches the gauges within a second.
            let deadline = Instant::now() + Duration::from_secs(3);
            loop {
                let peers = metrics.peers.load(std::sync::atomic::Ordering::Relaxed);
                let reachable = metrics
                    .reachable_peers
                    .load(std::sync::atomic::Ordering::Relaxed);
                if (peers, reachable) == (3, listed) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "rdht_peers {peers}, rdht_reachable_peers {reachable} while the answer \
                     lists {listed} of 3 stored"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        for m in q.members.into_iter().flatten() {
            m.kill();
        }
        r.shutdown().await;
    })
    .await
    .expect("test timed out");
}
