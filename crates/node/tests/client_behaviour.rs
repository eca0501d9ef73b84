//! The embeddable discovery behaviour (`node::client::Behaviour`) in an
//! application's own swarm, against stand-in rendezvous swarms on
//! loopback that answer what each test scripts: an honest answer, a
//! refusal, a forged namespace record. (The `rdht discover` tests run the
//! same behaviour against real rendezvous nodes.)

use std::time::Duration;

use libp2p::futures::StreamExt;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{noise, tcp, yamux, Multiaddr, PeerId, Swarm};
use node::client::{self, DiscoverError, NodeFailure};
use node::codec::{Frame, RdhtCodec, PROTOCOL};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::{
    Cookie, DiscoverAnswer, DiscoveredPeer, LookupError, Request, Response, StatusCode,
};

const T: Duration = Duration::from_secs(20);

/// An application's swarm: rdht's discovery beside whatever else it runs.
#[derive(NetworkBehaviour)]
struct App {
    rdht: client::Behaviour,
    ping: libp2p::ping::Behaviour,
}

/// A stand-in rendezvous node: answers every request with `answer(request)`.
struct StandIn {
    swarm: Swarm<request_response::Behaviour<RdhtCodec>>,
    answer: Box<dyn FnMut(&Request) -> Response + Send>,
    addr: Multiaddr,
}

fn swarm<B: NetworkBehaviour>(behaviour: B) -> Swarm<B> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|_| behaviour)
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build()
}

async fn listen<B: NetworkBehaviour>(swarm: &mut Swarm<B>) -> Multiaddr {
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
        .expect("listen");
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            return address.with_p2p(*swarm.local_peer_id()).expect("p2p");
        }
    }
}

async fn stand_in(answer: impl FnMut(&Request) -> Response + Send + 'static) -> StandIn {
    let mut swarm = swarm(request_response::Behaviour::with_codec(
        RdhtCodec,
        [(PROTOCOL, ProtocolSupport::Inbound)],
        request_response::Config::default(),
    ));
    let addr = listen(&mut swarm).await;
    StandIn {
        swarm,
        answer: Box::new(answer),
        addr,
    }
}

impl StandIn {
    fn peer(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Answers requests forever (run inside a `select!`).
    async fn serve(&mut self) {
        loop {
            if let SwarmEvent::Behaviour(request_response::Event::Message {
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            }) = self.swarm.select_next_some().await
            {
                let response = match &request {
                    Frame::Message(r) => (self.answer)(r),
                    _ => Response::Rejected(StatusCode::Decode),
                };
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .send_response(channel, Frame::Message(response));
            }
        }
    }
}

/// The member indices of an answer, in order.
fn indices(answer: &rendezvous_proto::VerifiedAnswer) -> Vec<u32> {
    answer.peers.iter().map(|p| p.record.index()).collect()
}

/// An application swarm that knows these rendezvous nodes, in this order.
fn app_knowing(nodes: &[&StandIn]) -> Swarm<App> {
    let mut app = app();
    for node in nodes {
        app.behaviour_mut()
            .rdht
            .add_rendezvous_address(node.addr.clone())
            .expect("p2p address");
    }
    app
}

fn app() -> Swarm<App> {
    swarm(App {
        rdht: client::Behaviour::default(),
        ping: libp2p::ping::Behaviour::default(),
    })
}

/// Drives the app and the stand-ins until the app's discovery reports.
async fn next_event(app: &mut Swarm<App>, nodes: &mut [StandIn]) -> client::Event {
    let drive = async {
        loop {
            if let SwarmEvent::Behaviour(AppEvent::Rdht(event)) = app.select_next_some().await {
                return event;
            }
        }
    };
    // Stand-ins serve forever (with none, `join_all` ends at once: wait).
    let serve = async {
        libp2p::futures::future::join_all(nodes.iter_mut().map(|n| Box::pin(n.serve()))).await;
        std::future::pending::<()>().await
    };
    tokio::select! {
        event = drive => event,
        _ = serve => unreachable!("pending forever"),
        _ = tokio::time::sleep(T) => panic!("no discovery event within {T:?}"),
    }
}

const NOW_SLACK_MS: u64 = 3_600_000;

fn now() -> u64 {
    node::behaviour::now_ms()
}

fn honest_answer(q: &TestQuorum) -> Response {
    let now = now();
    Response::Discovered(DiscoverAnswer {
        namespace: q.namespace(0, Some("demo"), now - 1_000, now + NOW_SLACK_MS),
        peers: (1..=q.n())
            .map(|i| DiscoveredPeer {
                record: q.peer(i, 0, 1, now + NOW_SLACK_MS),
                last_seen_ms: Some(now),
            })
            .collect(),
        cookie: Cookie::default(),
    })
}

fn quorum(seed: u64) -> TestQuorum {
    TestQuorum::deal(4, 3, &mut ChaCha20Rng::seed_from_u64(seed))
}

#[tokio::test]
async fn a_refusing_node_and_a_forging_node_are_passed_over_for_an_honest_one() {
    let q = quorum(1);
    let forger = quorum(2);
    let key = q.quorum_key();
    let refusing = stand_in(|_| Response::Rejected(StatusCode::QuotaExceeded)).await;
    let forged = {
        let now = now();
        let mut record = q.namespace(0, None, now - 1_000, now + NOW_SLACK_MS);
        record.signature = forger.threshold_sign(&record.signing_bytes());
        stand_in(move |_| {
            Response::Discovered(DiscoverAnswer {
                namespace: record.clone(),
                peers: vec![],
                cookie: Cookie::default(),
            })
        })
        .await
    };
    let honest_response = honest_answer(&q);
    let honest = stand_in(move |_| honest_response.clone()).await;
    let honest_peer = honest.peer();

    let mut app = app_knowing(&[&refusing, &forged, &honest]);
    let query = app.behaviour_mut().rdht.discover(key);
    let mut nodes = [refusing, forged, honest];
    match next_event(&mut app, &mut nodes).await {
        client::Event::Discovered {
            query: id,
            rendezvous,
            found,
        } => {
            assert_eq!(id, query);
            assert_eq!(rendezvous, honest_peer, "answered by the honest node");
            assert_eq!(
                indices(&found.answer),
                vec![1, 2, 3, 4],
                "only verified members, each once"
            );
            assert!(found.answer.rejected.is_empty());
            assert!(found.chain.is_empty());
        }
        other => panic!("expected the honest node's members, got {other:?}"),
    }
}

#[tokio::test]
async fn when_every_node_fails_each_ones_reason_is_reported() {
    let q = quorum(3);
    let refusing = stand_in(|_| Response::Rejected(StatusCode::UnknownNamespace)).await;
    let wrong_kind = stand_in(|_| Response::Accepted).await;
    let (first, second) = (refusing.peer(), wrong_kind.peer());
    let mut app = app_knowing(&[&refusing, &wrong_kind]);
    let query = app.behaviour_mut().rdht.discover(q.quorum_key());
    let mut nodes = [refusing, wrong_kind];
    match next_event(&mut app, &mut nodes).await {
        client::Event::Failed {
            query: id,
            error: DiscoverError::AllFailed(failures),
        } => {
            assert_eq!(id, query);
            assert_eq!(failures.len(), 2);
            assert_eq!(failures[0].0, first);
            assert!(matches!(
                failures[0].1,
                NodeFailure::Lookup(LookupError::Rejected(StatusCode::UnknownNamespace))
            ));
            assert_eq!(failures[1].0, second);
            assert!(matches!(
                failures[1].1,
                NodeFailure::Lookup(LookupError::Unexpected("Accepted"))
            ));
        }
        other => panic!("expected both failures, got {other:?}"),
    }
}

#[tokio::test]
async fn no_known_node_is_an_error_not_a_hang() {
    let mut app = app();
    let query = app.behaviour_mut().rdht.discover(quorum(4).quorum_key());
    match next_event(&mut app, &mut []).await {
        client::Event::Failed {
            query: id,
            error: DiscoverError::NoRendezvous,
        } => assert_eq!(id, query),
        other => panic!("expected NoRendezvous, got {other:?}"),
    }
}

#[tokio::test]
async fn a_kind_is_discovered_namespace_by_namespace() {
    let a = quorum(5);
    let b = quorum(6);
    let (answer_a, answer_b) = (honest_answer(&a), honest_answer(&b));
    let (key_a, key_b) = (a.quorum_key(), b.quorum_key());
    let listing = {
        let now = now();
        vec![
            a.namespace(0, Some("demo"), now - 1_000, now + NOW_SLACK_MS),
            b.namespace(0, Some("demo"), now - 1_000, now + NOW_SLACK_MS),
        ]
    };
    let node = stand_in(move |request| match request {
        Request::DiscoverKind { .. } => Response::Namespaces {
            namespaces: listing.clone(),
            cookie: Cookie::default(),
        },
        Request::Discover { quorum_key, .. } if *quorum_key == key_a => answer_a.clone(),
        Request::Discover { quorum_key, .. } if *quorum_key == key_b => answer_b.clone(),
        _ => Response::Rejected(StatusCode::UnknownNamespace),
    })
    .await;
    let mut app = app();
    let peer = app
        .behaviour_mut()
        .rdht
        .add_rendezvous_address(node.addr.clone())
        .expect("p2p address");
    let query = app.behaviour_mut().rdht.discover_kind_at(peer, "demo");
    let mut nodes = [node];
    match next_event(&mut app, &mut nodes).await {
        client::Event::KindDiscovered {
            query: id, found, ..
        } => {
            assert_eq!(id, query);
            let mut keys: Vec<_> = found
                .answers
                .iter()
                .map(|a| a.namespace.quorum_key())
                .collect();
            keys.sort();
            let mut expected = vec![key_a, key_b];
            expected.sort();
            assert_eq!(keys, expected);
            assert!(found.answers.iter().all(|a| a.peers.len() == 4));
            assert!(found.rejected.is_empty() && found.failed.is_empty());
        }
        other => panic!("expected both namespaces, got {other:?}"),
    }
}

#[tokio::test]
async fn what_verified_at_a_forging_node_is_merged_with_the_next_nodes_answer() {
    let q = quorum(7);
    let key = q.quorum_key();
    let now = now();
    let namespace = q.namespace(0, Some("demo"), now - 1_000, now + NOW_SLACK_MS);
    let listed = |members: &[u32], forged: Option<u32>| {
        let mut peers: Vec<DiscoveredPeer> = members
            .iter()
            .map(|&i| DiscoveredPeer {
                record: q.peer(i, 0, 1, now + NOW_SLACK_MS),
                last_seen_ms: Some(now),
            })
            .collect();
        if let Some(i) = forged {
            // Member i's record with its seq changed after signing.
            let record = rendezvous_proto::testkit::with_seq_unsigned(
                q.peer(i, 0, 1, now + NOW_SLACK_MS),
                7,
            );
            peers.push(DiscoveredPeer {
                record,
                last_seen_ms: Some(now),
            });
        }
        Response::Discovered(DiscoverAnswer {
            namespace: namespace.clone(),
            peers,
            cookie: Cookie::default(),
        })
    };
    let (first_answer, second_answer) = (listed(&[1, 2], Some(3)), listed(&[3, 4], None));
    let forging = stand_in(move |_| first_answer.clone()).await;
    let honest = stand_in(move |_| second_answer.clone()).await;
    let honest_peer = honest.peer();

    let mut app = app_knowing(&[&forging, &honest]);
    let query = app.behaviour_mut().rdht.discover(key);
    let mut nodes = [forging, honest];
    match next_event(&mut app, &mut nodes).await {
        client::Event::Discovered {
            query: id,
            rendezvous,
            found,
        } => {
            assert_eq!(id, query);
            assert_eq!(rendezvous, honest_peer);
            assert_eq!(
                indices(&found.answer),
                vec![1, 2, 3, 4],
                "both nodes' verified members, merged"
            );
            assert_eq!(
                found.answer.forged_codes().collect::<Vec<_>>(),
                vec![StatusCode::InvalidEnvelopeSignature],
                "the forgery is reported, not listed"
            );
        }
        other => panic!("expected the merged members, got {other:?}"),
    }
}
