//! Key rotation by handover over real connections (#14 item 3): a quorum
//! is registered, its key is handed over to a second quorum, and
//! `discover` by the old key ends at the new quorum's members, at the
//! node that took the handover and at another that only reaches it
//! through the DHT. Registrations under the retired key are refused.

use std::time::{Duration, Instant};

use node::behaviour::now_ms;
use node::demo::start_rendezvous_nodes;
use node::discover::{handover_lines, handovers_json, Client, ClientError};
use rand::SeedableRng;
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::{Multiaddr, Request, Response, StatusCode};

const T: Duration = Duration::from_secs(10);

/// Registers `q`'s namespace and every member's own record at `at`,
/// each over its member's own connection.
async fn register(q: &TestQuorum, at: &Multiaddr, expires: u64) {
    let now = now_ms();
    let mut first = Client::new(q.identities[0].clone()).expect("client");
    let ns = q.namespace(1, None, now, expires);
    let answer = first.request(at, Request::RegisterNamespace(ns), T).await;
    assert!(
        matches!(answer, Ok(Response::Registered { .. })),
        "{answer:?}"
    );
    for i in 1..=q.n() {
        let mut member = Client::new(q.identities[i as usize - 1].clone()).expect("client");
        let answer = member
            .request(at, Request::RegisterPeer(q.peer(i, 1, 1, expires)), T)
            .await;
        assert!(
            matches!(answer, Ok(Response::Registered { .. })),
            "{answer:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_by_a_retired_key_ends_at_the_new_quorums_members() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    let old = TestQuorum::deal(3, 2, &mut rng);
    let new = TestQuorum::deal(4, 3, &mut rng);
    let nodes = start_rendezvous_nodes(2, Duration::from_secs(3600), 3)
        .await
        .expect("rendezvous");
    let (at, elsewhere) = (nodes[0].addr(), nodes[1].addr());
    let now = now_ms();
    let expires = now + 3_600_000;
    register(&old, &at, expires).await;
    register(&new, &at, expires).await;

    let mut client = Client::ephemeral().expect("client");
    // Before the handover: the old quorum, no chain.
    let before = client
        .discover_following(&at, old.quorum_key(), T)
        .await
        .expect("discover");
    assert!(before.chain.is_empty());
    assert_eq!(before.answer.namespace.quorum_key(), old.quorum_key());

    // Anybody may publish the handover (the old key's signature is the
    // authorization): here a stranger's connection.
    let handover = old.handover(new.quorum_key(), now, now + 86_400_000);
    let answer = client
        .request(&at, Request::PublishHandover(handover.clone()), T)
        .await
        .expect("answer");
    assert!(
        matches!(answer, Response::Registered { ttl_ms } if ttl_ms > 86_000_000),
        "{answer:?}"
    );

    // The old key alone is answered with the handover...
    match client.discover(&at, old.quorum_key(), T).await {
        Err(ClientError::HandedOver(h)) => assert_eq!(*h, handover),
        other => panic!("expected the handover, got {other:?}"),
    }
    // ...and followed, it ends at the new quorum's members.
    let followed = client
        .discover_following(&at, old.quorum_key(), T)
        .await
        .expect("discover");
    assert_eq!(followed.answer.namespace.quorum_key(), new.quorum_key());
    let mut indices: Vec<u32> = followed
        .answer
        .peers
        .iter()
        .map(|p| p.record.index())
        .collect();
    indices.sort();
    assert_eq!(indices, vec![1, 2, 3, 4]);
    assert!(followed
        .answer
        .peers
        .iter()
        .all(|p| p.record.peer_id() == new.peer_id(p.record.index())));
    assert_eq!(
        followed.chain.hops(),
        vec![(old.quorum_key(), new.quorum_key())]
    );
    assert_eq!(
        handover_lines(&followed.chain),
        vec![format!(
            "handed over: {} -> {}",
            old.quorum_key(),
            new.quorum_key()
        )]
    );
    let json = handovers_json(&followed.chain);
    assert_eq!(json[0]["from"], old.quorum_key().to_hex());
    assert_eq!(json[0]["to"], new.quorum_key().to_hex());

    // The retired key takes no more registrations.
    let mut member = Client::new(old.identities[0].clone()).expect("client");
    let answer = member
        .request(&at, Request::RegisterPeer(old.peer(1, 1, 2, expires)), T)
        .await
        .expect("answer");
    assert_eq!(answer, Response::Rejected(StatusCode::NamespaceRetired));

    // A node that never saw the handover finds it through the DHT (a
    // lookup, or the replication of the node that took it).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut other = Client::ephemeral().expect("client");
    loop {
        match other
            .discover_following(&elsewhere, old.quorum_key(), T)
            .await
        {
            Ok(f) if f.answer.namespace.quorum_key() == new.quorum_key() => {
                assert_eq!(f.chain.hops(), vec![(old.quorum_key(), new.quorum_key())]);
                break;
            }
            result => {
                assert!(
                    Instant::now() < deadline,
                    "the other node never sent the client on: {result:?}"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// `rdht discover` through the built binary: the handover lines before
/// the member table, and the `handovers` field of `--json` (empty for a
/// key that is not retired), every other field the final key's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdht_discover_prints_where_it_was_sent() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(15);
    let old = TestQuorum::deal(3, 2, &mut rng);
    let new = TestQuorum::deal(2, 2, &mut rng);
    let nodes = start_rendezvous_nodes(1, Duration::from_secs(3600), 3)
        .await
        .expect("rendezvous");
    let at = nodes[0].addr();
    let now = now_ms();
    register(&old, &at, now + 3_600_000).await;
    register(&new, &at, now + 3_600_000).await;
    let rdht = |key: String, json: bool| {
        let at = at.to_string();
        tokio::task::spawn_blocking(move || {
            let mut args = vec!["discover", "--rendezvous", &at, "--quorum-key", &key];
            if json {
                args.push("--json");
            }
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_rdht"))
                .args(&args)
                .output()
                .expect("run rdht");
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).expect("utf-8")
        })
    };
    let plain: serde_json::Value =
        serde_json::from_str(&rdht(new.quorum_key().to_hex(), true).await.unwrap()).unwrap();
    assert_eq!(plain["handovers"], serde_json::json!([]));

    let mut client = Client::ephemeral().expect("client");
    let handover = old.handover(new.quorum_key(), now, now + 86_400_000);
    let answer = client
        .request(&at, Request::PublishHandover(handover), T)
        .await
        .expect("answer");
    assert!(matches!(answer, Response::Registered { .. }), "{answer:?}");

    let json: serde_json::Value =
        serde_json::from_str(&rdht(old.quorum_key().to_hex(), true).await.unwrap()).unwrap();
    assert_eq!(json["quorum_key"], new.quorum_key().to_hex());
    assert_eq!(json["n"], 2);
    assert_eq!(json["peers"].as_array().map(|p| p.len()), Some(2));
    assert!(json["rejected"].as_array().is_some_and(|r| r.is_empty()));
    let hops = json["handovers"].as_array().expect("handovers");
    assert_eq!(hops.len(), 1);
    assert_eq!(hops[0]["from"], old.quorum_key().to_hex());
    assert_eq!(hops[0]["to"], new.quorum_key().to_hex());

    let table = rdht(old.quorum_key().to_hex(), false).await.unwrap();
    let line = format!("handed over: {} -> {}", old.quorum_key(), new.quorum_key());
    let (before, after) = table.split_once(&line).expect("the handover line");
    assert!(before.trim().is_empty(), "{table}");
    assert!(
        after.contains(&format!("quorum {}", new.quorum_key())),
        "{table}"
    );
}

/// A rendezvous with a data directory keeps its handovers across a
/// restart: the old key is still answered with the handover, and its
/// namespace does not come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handover_survives_a_restart() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(16);
    let old = TestQuorum::deal(3, 2, &mut rng);
    let new = TestQuorum::deal(3, 2, &mut rng);
    let dir = std::env::temp_dir().join(format!(
        "rdht-handover-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let keypair = libp2p::identity::Keypair::generate_ed25519();
    let config = node::rendezvous::RendezvousConfig {
        listen: vec![node::demo::loopback()],
        data_dir: Some(dir.clone()),
        ..Default::default()
    };
    let r = node::rendezvous::start(keypair.clone(), config.clone())
        .await
        .expect("rendezvous");
    let at = r.addr();
    let now = now_ms();
    register(&old, &at, now + 3_600_000).await;
    let handover = old.handover(new.quorum_key(), now, now + 86_400_000);
    let mut client = Client::ephemeral().expect("client");
    let answer = client
        .request(&at, Request::PublishHandover(handover.clone()), T)
        .await
        .expect("answer");
    assert!(matches!(answer, Response::Registered { .. }), "{answer:?}");
    r.shutdown().await;

    let r2 = node::rendezvous::start(keypair, config)
        .await
        .expect("restart");
    let stats = r2.stats().await.expect("stats");
    assert_eq!(stats.namespaces, 0);
    assert_eq!(stats.peer_records, 0);
    let mut fresh = Client::ephemeral().expect("client");
    match fresh.discover(&r2.addr(), old.quorum_key(), T).await {
        Err(ClientError::HandedOver(h)) => assert_eq!(*h, handover),
        other => panic!("expected the handover after the restart, got {other:?}"),
    }
    r2.shutdown().await;
    std::fs::remove_dir_all(&dir).ok();
}
