//! Liveness poisoning against real nodes (issue #12). Under protocol v1,
//! one Kademlia PUT of a record naming an honest member's PeerId, from a
//! namespace the attacker made, made every rendezvous node ping the
//! attacker's unroutable addresses and stop listing the member. Here an
//! attacker swarm does it, through a kad PUT and a direct registration;
//! the victim must stay listed, with its own address, well past the
//! liveness bound. Bounded in time, 127.0.0.1 only.

use std::time::{Duration, Instant};

use dht::{namespace_key, KadStore, NamespaceStore, NamespaceValue, Server, ServerConfig};
use libp2p::futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::kad;
use libp2p::swarm::SwarmEvent;
use node::behaviour::{build_swarm, now_ms, split_p2p, BehaviourEvent, SwarmSettings};
use node::demo::{discover_until, start_quorum, start_rendezvous_nodes};
use node::discover::Client;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rendezvous_proto::seat::Seat;
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::{PeerRecord, Request, Response, StatusCode};

const PING: Duration = Duration::from_millis(300);
const MISSES: u32 = 2;
const TTL: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_in_someone_elses_name_is_refused_and_the_victim_stays_listed() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let nodes = start_rendezvous_nodes(1, PING, MISSES).await.unwrap();
        let at = nodes[0].addr();
        let quorum = start_quorum(
            4,
            3,
            Some("farmer"),
            vec![at.clone()],
            TTL,
            Duration::from_secs(3),
        )
        .await
        .unwrap();
        let key = quorum.wait_registered(1, WAIT).await.unwrap();
        let mut client = Client::ephemeral().unwrap();
        let before = discover_until(&mut client, &at, key, WAIT, |a| a.peers.len() == 4)
            .await
            .unwrap();
        let victim = before.peers[1].record.clone();
        let victim_id = victim.peer_id();

        // The attacker's own 1-of-1 quorum, whose member list names the
        // victim, and a record seating the victim with an unroutable
        // address: its envelope signed by the attacker, and a copy
        // claiming the victim's key with the attacker's signature.
        let now = now_ms();
        let fake = TestQuorum::deal(1, 1, &mut ChaCha20Rng::seed_from_u64(7));
        let mut ns = fake.namespace_unsigned(0, None, now, now + 600_000);
        ns.members = Some(vec![victim_id]);
        let share = fake.shares[0].secret.sign(&ns.signing_bytes());
        ns.signature = dkg::combine_signatures(1, 1, &[share]).unwrap().to_bytes();
        let seat = Seat::sign(fake.quorum_key(), 0, victim_id, &fake.shares[0].secret);
        let attacker = Keypair::generate_ed25519();
        let unroutable = vec!["/ip4/192.0.2.1/tcp/9".parse().unwrap()];
        let by_attacker = PeerRecord::sign(seat.clone(), unroutable, now, now + 600_000, &attacker);

        // Path 1: a Kademlia PUT of the whole value, from the attacker's
        // own kad-speaking swarm.
        let mut store = NamespaceStore::new(Default::default(), [1; 32]);
        store.merge_value(
            NamespaceValue {
                namespace: ns.clone(),
                peers: vec![],
            },
            now,
        );
        let core = Server::new(ServerConfig::default(), store);
        let settings = SwarmSettings {
            kad: true,
            ..SwarmSettings::default()
        };
        let mut swarm = build_swarm(
            attacker.clone(),
            &settings,
            Some(KadStore::new(core, Box::new(now_ms))),
        )
        .unwrap();
        let (node_id, node_addr) = split_p2p(&at).unwrap();
        let kad = swarm.behaviour_mut().kad.as_mut().unwrap();
        kad.set_mode(Some(kad::Mode::Client));
        kad.add_address(&node_id, node_addr);
        let value = NamespaceValue {
            namespace: ns.clone(),
            peers: vec![by_attacker.clone()],
        };
        let record = kad::Record::new(namespace_key(&fake.quorum_key()).to_vec(), value.encode());
        kad.put_record_to(record, std::iter::once(node_id), kad::Quorum::One);
        let put_done = Instant::now() + Duration::from_secs(10);
        loop {
            let event = tokio::time::timeout_at(put_done.into(), swarm.select_next_some()).await;
            match event {
                Ok(SwarmEvent::Behaviour(BehaviourEvent::Kad(
                    kad::Event::OutboundQueryProgressed {
                        result: kad::QueryResult::PutRecord(_),
                        ..
                    },
                ))) => break,
                Ok(_) => continue,
                Err(_) => panic!("the kad PUT did not complete in 10 s"),
            }
        }

        // The PUT arrived: the node stored the attacker's (valid)
        // namespace, and not its record.
        let stored_by = Instant::now() + Duration::from_secs(10);
        loop {
            let stats = nodes[0].stats().await.expect("stats");
            if stats.namespaces == 2 {
                assert_eq!(stats.peer_records, 4, "the poisoned record was stored");
                break;
            }
            assert!(Instant::now() < stored_by, "the PUT never reached the node");
        }

        // Path 2: direct registration, over the attacker's connection.
        let mut as_attacker = Client::new(attacker.clone()).unwrap();
        let answer = as_attacker
            .request(
                &at,
                Request::RegisterNamespace(ns.clone()),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert!(
            matches!(
                answer,
                Response::Registered { .. } | Response::Rejected(StatusCode::StaleEpoch)
            ),
            "{answer:?}"
        );
        let answer = as_attacker
            .request(
                &at,
                Request::RegisterPeer(by_attacker),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(answer, Response::Rejected(StatusCode::PeerIdMismatch));

        // The attacker's namespace holds no record; the victim stays listed
        // with its own address for many liveness intervals (v1 dropped it
        // after (misses + 1) intervals).
        let poisoned = client
            .request(
                &at,
                Request::Discover {
                    quorum_key: fake.quorum_key(),
                    limit: 0,
                    cookie: None,
                },
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        match poisoned {
            Response::Discovered(a) => assert!(a.peers.is_empty(), "{a:?}"),
            other => panic!("unexpected {other:?}"),
        }
        let until = Instant::now() + PING * (MISSES + 1) * 5;
        while Instant::now() < until {
            let now = client
                .discover(&at, key, Duration::from_secs(5))
                .await
                .unwrap();
            let listed = now.peers.iter().find(|p| p.record.peer_id() == victim_id);
            let listed = listed.expect("the victim is still listed");
            assert_eq!(listed.record.addrs(), victim.addrs());
        }
        for n in nodes {
            n.shutdown().await;
        }
    })
    .await
    .expect("bounded in time");
}
