//! Each role behaviour in a swarm of its own against another, on
//! loopback, with nothing of the `rdht` binary around them: the
//! rendezvous behaviour serving an application that registers and
//! discovers (with the client behaviour), and the member behaviour
//! registering at a rendezvous behaviour with a key share it was given.

use std::time::Duration;

use libp2p::futures::StreamExt;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, Swarm};
use node::behaviour::{build_swarm_with, listen_all, now_ms, SwarmSettings};
use node::client;
use node::codec::{Frame, RdhtCodec, PROTOCOL};
use node::quorum::{self, MemberConfig};
use node::quorum_file::{self, QuorumFile};
use node::rendezvous;
use rand::SeedableRng;
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::{Request, Response, StatusCode};

/// Every test ends well within this (or fails).
const DEADLINE: Duration = Duration::from_secs(30);

fn loopback() -> Vec<Multiaddr> {
    vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")]
}

/// A rendezvous behaviour's swarm, listening on loopback; its address
/// with `/p2p`.
async fn server() -> (Swarm<rendezvous::Behaviour>, Multiaddr) {
    let identity = libp2p::identity::Keypair::generate_ed25519();
    let store = dht::StoreConfig::default();
    let behaviour = rendezvous::Builder::new(identity.public())
        .store_config(store.clone())
        .verifier_threads(1)
        .build()
        .expect("build");
    let mut swarm = build_swarm_with(identity, &rendezvous::swarm_settings(&store), |_| behaviour)
        .expect("swarm");
    let addrs = listen_all(&mut swarm, &loopback()).await.expect("listen");
    let addr = addrs[0]
        .clone()
        .with_p2p(*swarm.local_peer_id())
        .expect("p2p");
    (swarm, addr)
}

/// An application that registers records itself (request-response) and
/// discovers with rdht's client behaviour.
#[derive(NetworkBehaviour)]
struct App {
    rr: request_response::Behaviour<RdhtCodec>,
    rdht: client::Behaviour,
}

/// Polls both swarms until `done` says the first one's event ends the
/// test; panics at the deadline.
async fn run_until<A, B, T>(
    a: &mut Swarm<A>,
    b: &mut Swarm<B>,
    mut done: impl FnMut(SwarmEvent<A::ToSwarm>) -> Option<T>,
) -> T
where
    A: NetworkBehaviour,
    B: NetworkBehaviour,
{
    let wait = async {
        loop {
            tokio::select! {
                event = a.select_next_some() => if let Some(t) = done(event) { return t },
                _ = b.select_next_some() => {}
            }
        }
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .expect("deadline")
}

/// Sends `request` from the application to the server and waits for the
/// answer (both swarms polled).
async fn request(
    app: &mut Swarm<App>,
    server: &mut Swarm<rendezvous::Behaviour>,
    server_addr: &Multiaddr,
    request: Request,
) -> Response {
    let server_peer = *server.local_peer_id();
    let id = app.behaviour_mut().rr.send_request_with_addresses(
        &server_peer,
        Frame::Message(request),
        vec![server_addr.clone()],
    );
    run_until(app, server, |event| match event {
        SwarmEvent::Behaviour(AppEvent::Rr(request_response::Event::Message {
            message:
                request_response::Message::Response {
                    request_id,
                    response: Frame::Message(response),
                },
            ..
        })) if request_id == id => Some(response),
        SwarmEvent::Behaviour(AppEvent::Rr(request_response::Event::OutboundFailure {
            error,
            ..
        })) => panic!("request failed: {error}"),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendezvous_behaviour_gates_registrations_and_serves_the_client_behaviour() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(41);
    let q = TestQuorum::deal(3, 2, &mut rng);
    let (mut server, server_addr) = server().await;
    let server_peer = *server.local_peer_id();
    let mut app = build_swarm_with(q.identities[0].clone(), &SwarmSettings::default(), |_| {
        App {
            rr: request_response::Behaviour::with_codec(
                RdhtCodec,
                [(PROTOCOL, ProtocolSupport::Outbound)],
                request_response::Config::default(),
            ),
            rdht: client::Behaviour::default(),
        }
    })
    .expect("app");
    let now = now_ms();
    let expires = now + 3_600_000;
    let ns = q.namespace(1, None, now, expires);
    let registered = request(
        &mut app,
        &mut server,
        &server_addr,
        Request::RegisterNamespace(ns),
    )
    .await;
    assert!(
        matches!(registered, Response::Registered { .. }),
        "{registered:?}"
    );
    let outcomes = request(
        &mut app,
        &mut server,
        &server_addr,
        Request::RegisterPeers(vec![q.peer(1, 1, 1, expires)]),
    )
    .await;
    assert!(
        matches!(&outcomes, Response::RegisteredPeers(o) if o.len() == 1 && o[0].is_ok()),
        "{outcomes:?}"
    );
    assert_eq!(server.behaviour_mut().store().stats().peer_records, 1);

    app.behaviour_mut()
        .rdht
        .add_rendezvous(server_peer, server_addr.clone());
    app.behaviour_mut().rdht.discover(q.quorum_key());
    let found = run_until(&mut app, &mut server, |event| match event {
        SwarmEvent::Behaviour(AppEvent::Rdht(client::Event::Discovered { found, .. })) => {
            Some(found)
        }
        SwarmEvent::Behaviour(AppEvent::Rdht(client::Event::Failed { error, .. })) => {
            panic!("discover failed: {error}")
        }
        _ => None,
    })
    .await;
    let peers: Vec<_> = found
        .answer
        .peers
        .iter()
        .map(|p| (p.record.index(), p.record.peer_id()))
        .collect();
    assert_eq!(peers, vec![(1, q.peer_id(1))]);

    // A record whose signature no longer matches: refused with its code,
    // nothing stored, and its sender penalized.
    let forged = rendezvous_proto::testkit::with_seq_unsigned(q.peer(1, 1, 5, expires), 6);
    let before = server.behaviour_mut().store().fingerprint();
    let refused = request(
        &mut app,
        &mut server,
        &server_addr,
        Request::RegisterPeers(vec![forged]),
    )
    .await;
    assert_eq!(
        refused,
        Response::RegisteredPeers(vec![Err(StatusCode::InvalidEnvelopeSignature)])
    );
    let app_peer = *app.local_peer_id();
    let penalized = run_until(&mut server, &mut app, |event| match event {
        SwarmEvent::Behaviour(rendezvous::Event::Penalized { peer, .. }) => Some(peer),
        _ => None,
    })
    .await;
    assert_eq!(penalized, app_peer);
    assert_eq!(server.behaviour_mut().store().fingerprint(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_member_behaviour_registers_its_quorum_at_a_rendezvous_behaviour() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    // Threshold 1: member 1 signs the namespace record alone; member 2
    // never runs (its address refuses connections).
    let q = TestQuorum::deal(2, 1, &mut rng);
    let (mut server, server_addr) = server().await;
    let identity = q.identities[0].clone();
    let mut member = build_swarm_with(identity.clone(), &SwarmSettings::default(), |_| {
        quorum::Behaviour::new()
    })
    .expect("member");
    let addrs = listen_all(&mut member, &loopback()).await.expect("listen");
    let file = QuorumFile::first(
        1,
        None,
        vec![
            quorum_file::Member {
                peer_id: q.peer_id(1),
                addr: addrs[0].clone(),
            },
            quorum_file::Member {
                peer_id: q.peer_id(2),
                addr: "/ip4/127.0.0.1/tcp/1".parse().expect("addr"),
            },
        ],
    );
    let mut config = MemberConfig::new(file, vec![server_addr]);
    config.key_share = Some(q.shares[0].clone());
    assert_eq!(member.behaviour().status(), quorum::MemberStatus::default());
    member
        .behaviour_mut()
        .start(identity.clone(), &config, addrs.clone())
        .expect("start");
    assert!(matches!(
        member.behaviour_mut().start(identity, &config, addrs),
        Err(quorum::MemberError::AlreadyStarted)
    ));
    run_until(&mut member, &mut server, |event| match event {
        SwarmEvent::Behaviour(member::Event::Registered { first: true, .. }) => Some(()),
        SwarmEvent::Behaviour(member::Event::Failed(e)) => panic!("member failed: {e}"),
        _ => None,
    })
    .await;
    let status = member.behaviour().status();
    assert_eq!(status.quorum_key, Some(q.quorum_key()));
    assert!(status.namespace_registered);
    assert_eq!(status.registered_at, 1);
    let stats = server.behaviour_mut().store().stats();
    assert_eq!((stats.namespaces, stats.peer_records), (1, 1));

    // A clean shutdown withdraws the record.
    member.behaviour_mut().shutdown();
    run_until(&mut member, &mut server, |event| match event {
        SwarmEvent::Behaviour(member::Event::Unregistered) => Some(()),
        _ => None,
    })
    .await;
    assert!(member.behaviour().is_shut_down());
    server.behaviour_mut().flush();
    assert_eq!(server.behaviour_mut().store().stats().peer_records, 0);
}
