//! `RegisterPeers` over a real connection: one outcome per record, each
//! judged as a lone `RegisterPeer` on that connection would be (the PeerId
//! binding included), one bad record never failing the others.

use std::time::Duration;

use node::behaviour::now_ms;
use node::demo::start_rendezvous_nodes;
use node::discover::Client;
use rand::SeedableRng;
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::{Request, Response, StatusCode};

const T: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_record_is_judged_alone_with_the_peer_id_binding() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let q = TestQuorum::deal(4, 3, &mut rng);
    let nodes = start_rendezvous_nodes(1, Duration::from_secs(3600), 3)
        .await
        .expect("rendezvous");
    let at = nodes[0].addr();
    let now = now_ms();
    let expires = now + 3_600_000;
    let mut member1 = Client::new(q.identities[0].clone()).expect("client");
    let ns = q.namespace(1, None, now, expires);
    assert!(matches!(
        member1
            .request(&at, Request::RegisterNamespace(ns), T)
            .await,
        Ok(Response::Registered { .. })
    ));
    // The signature no longer matches.
    let forged = rendezvous_proto::testkit::with_seq_unsigned(q.peer(1, 1, 5, expires), 6);
    let records = vec![
        q.peer(1, 1, 1, expires),
        // Member 2's valid record, relayed by member 1: refused.
        q.peer(2, 1, 1, expires),
        forged,
        q.peer(1, 1, 2, expires),
        // A replay of seq 1 after seq 2.
        q.peer(1, 1, 1, expires),
    ];
    let before = nodes[0].fingerprint().await;
    let answer = member1
        .request(&at, Request::RegisterPeers(records), T)
        .await
        .expect("answer");
    let Response::RegisteredPeers(outcomes) = answer else {
        panic!("unexpected {answer:?}");
    };
    assert!(matches!(outcomes[0], Ok(ttl) if ttl > 3_500_000));
    assert_eq!(outcomes[1], Err(StatusCode::PeerIdMismatch));
    assert_eq!(outcomes[2], Err(StatusCode::InvalidEnvelopeSignature));
    assert!(outcomes[3].is_ok());
    assert_eq!(outcomes[4], Err(StatusCode::StaleSequence));
    assert_ne!(nodes[0].fingerprint().await, before);

    // Member 2 registers its own record through its own connection.
    let mut member2 = Client::new(q.identities[1].clone()).expect("client");
    let answer = member2
        .request(
            &at,
            Request::RegisterPeers(vec![q.peer(2, 1, 1, expires)]),
            T,
        )
        .await
        .expect("answer");
    assert!(matches!(answer, Response::RegisteredPeers(ref o) if o.len() == 1 && o[0].is_ok()));
    let served = member2
        .discover(&at, q.quorum_key(), T)
        .await
        .expect("discover");
    let mut seqs: Vec<(u32, u64)> = served
        .peers
        .iter()
        .map(|p| (p.record.index(), p.record.seq()))
        .collect();
    seqs.sort();
    assert_eq!(seqs, vec![(1, 2), (2, 1)]);
    for n in nodes {
        n.shutdown().await;
    }
}
