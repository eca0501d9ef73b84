//! Stock libp2p rendezvous clients (`libp2p-rendezvous`'s own
//! `client::Behaviour`, in a swarm of their own) against rdht rendezvous
//! nodes on 127.0.0.1 (PROTOCOL.md 16): they discover a registered quorum
//! by its hex namespace, every record verifies under its PeerId and says
//! what rdht lists; `kind:` pages with cookies; REGISTER is refused.
//! Every wait has a deadline.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use libp2p::futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::rendezvous::{client, Cookie, ErrorCode, Namespace, Registration};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr, PeerId, Swarm};
use node::behaviour::split_p2p;
use node::demo::{discover_until, start_quorum, start_rendezvous_nodes};
use node::discover::Client;

const PING: Duration = Duration::from_millis(300);
const MISSES: u32 = 2;
const TTL: Duration = Duration::from_secs(30);
const DKG_PHASE: Duration = Duration::from_secs(3);
const WAIT: Duration = Duration::from_secs(20);

/// A swarm running only the stock rendezvous client.
fn stock_swarm() -> Swarm<client::Behaviour> {
    libp2p::SwarmBuilder::with_existing_identity(Keypair::generate_ed25519())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|key| client::Behaviour::new(key.clone()))
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

/// Dials `addr` (`.../p2p/<id>`) and waits for the connection.
async fn connect(swarm: &mut Swarm<client::Behaviour>, addr: &Multiaddr) -> PeerId {
    let (peer, _) = split_p2p(addr).expect("a /p2p address");
    swarm.dial(addr.clone()).expect("dial");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .expect("connected in time");
        if let SwarmEvent::ConnectionEstablished { peer_id, .. } = event {
            if peer_id == peer {
                return peer;
            }
        }
    }
}

/// The next event of the stock client.
async fn next_event(swarm: &mut Swarm<client::Behaviour>) -> client::Event {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .expect("an answer in time");
        if let SwarmEvent::Behaviour(e) = event {
            return e;
        }
    }
}

/// One stock DISCOVER, its answer or its error code.
async fn stock_discover(
    swarm: &mut Swarm<client::Behaviour>,
    rendezvous: PeerId,
    namespace: &str,
    cookie: Option<Cookie>,
    limit: Option<u64>,
) -> Result<(Vec<Registration>, Cookie), ErrorCode> {
    let namespace = Namespace::new(namespace.to_owned()).expect("short");
    swarm
        .behaviour_mut()
        .discover(Some(namespace), cookie, limit, rendezvous);
    loop {
        match next_event(swarm).await {
            client::Event::Discovered {
                registrations,
                cookie,
                ..
            } => return Ok((registrations, cookie)),
            client::Event::DiscoverFailed { error, .. } => return Err(error),
            _ => {}
        }
    }
}

/// Checks a registration as an application would: the signed envelope is
/// a valid standard peer record under the PeerId it names.
fn reverify(registration: &Registration) -> libp2p::core::PeerRecord {
    let envelope = registration.record.to_signed_envelope();
    let record = libp2p::core::PeerRecord::from_signed_envelope(envelope)
        .expect("the record verifies under its PeerId");
    assert_eq!(record.peer_id(), registration.record.peer_id());
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_client_discovers_a_quorum_and_every_record_verifies() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let nodes = start_rendezvous_nodes(1, PING, MISSES).await.unwrap();
        let at = nodes[0].addr();
        let quorum = start_quorum(4, 3, Some("farmer"), vec![at.clone()], TTL, DKG_PHASE)
            .await
            .unwrap();
        let key = quorum.wait_registered(1, WAIT).await.unwrap();
        let namespace = key.to_hex();
        // What rdht's own client lists (verified).
        let mut ours = Client::ephemeral().unwrap();
        let listed = discover_until(&mut ours, &at, key, WAIT, |a| a.peers.len() == 4)
            .await
            .unwrap();

        let mut stock = stock_swarm();
        let rendezvous = connect(&mut stock, &at).await;
        let (registrations, cookie) =
            stock_discover(&mut stock, rendezvous, &namespace, None, None)
                .await
                .expect("discovered");
        assert_eq!(registrations.len(), 4, "every member, once");
        let mut seen = BTreeSet::new();
        for r in &registrations {
            let record = reverify(r);
            assert_eq!(r.namespace.to_string(), namespace);
            assert!(r.ttl > 0 && r.ttl <= TTL.as_secs(), "ttl {}", r.ttl);
            let member = listed
                .peers
                .iter()
                .find(|p| p.record.peer_id() == record.peer_id())
                .expect("a member rdht lists");
            assert_eq!(record.addresses(), member.record.addrs());
            assert_eq!(record.seq(), member.record.seq());
            assert_eq!(
                quorum.file.member(member.record.index()).map(|m| m.peer_id),
                Some(record.peer_id())
            );
            assert!(seen.insert(record.peer_id()));
        }
        // The cookie is the spec's: for this namespace, and nothing new
        // behind it.
        assert_eq!(
            cookie.namespace().map(|n| n.to_string()),
            Some(namespace.clone())
        );
        let (again, _) = stock_discover(&mut stock, rendezvous, &namespace, Some(cookie), None)
            .await
            .expect("discovered");
        assert!(
            again.is_empty(),
            "{} registrations behind the cookie",
            again.len()
        );

        // A namespace nobody registered: an empty answer; not a namespace
        // at all: E_INVALID_NAMESPACE.
        let (none, _) = stock_discover(&mut stock, rendezvous, &"00".repeat(48), None, None)
            .await
            .expect("an empty answer");
        assert!(none.is_empty());
        assert_eq!(
            stock_discover(&mut stock, rendezvous, "farmer", None, None)
                .await
                .err(),
            Some(ErrorCode::InvalidNamespace)
        );
    })
    .await
    .expect("test timed out");
}

/// A stock client asking a rendezvous node that does not hold the quorum
/// (it joined the DHT after the quorum registered, so no replica was PUT
/// to it): the node looks the quorum up, as it would for rdht's own
/// discover, and answers with every member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_client_is_answered_by_a_node_that_looks_the_quorum_up() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let first = start_rendezvous_nodes(1, PING, MISSES).await.unwrap();
        let at = first[0].addr();
        let quorum = start_quorum(3, 2, None, vec![at.clone()], TTL, DKG_PHASE)
            .await
            .unwrap();
        let key = quorum.wait_registered(1, WAIT).await.unwrap();
        let mut ours = Client::ephemeral().unwrap();
        discover_until(&mut ours, &at, key, WAIT, |a| a.peers.len() == 3)
            .await
            .unwrap();
        let mut config = node::rendezvous::RendezvousConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            bootstrap: vec![at.clone()],
            ..Default::default()
        };
        config.store.liveness.ping_interval_ms = PING.as_millis() as u64;
        config.store.liveness.max_misses = MISSES;
        let late = node::rendezvous::start(Keypair::generate_ed25519(), config)
            .await
            .unwrap();
        assert_eq!(
            late.stats().await.unwrap().namespaces,
            0,
            "the late node holds nothing yet"
        );
        let mut stock = stock_swarm();
        let rdv = connect(&mut stock, &late.addr()).await;
        // The late node may not know its DHT neighbour for a moment after
        // joining: ask until it answers with every member.
        let deadline = Instant::now() + WAIT;
        let registrations = loop {
            let (registrations, _) = stock_discover(&mut stock, rdv, &key.to_hex(), None, None)
                .await
                .expect("a DISCOVER answer");
            if registrations.len() == 3 {
                break registrations;
            }
            assert!(
                Instant::now() < deadline,
                "never answered with the 3 members"
            );
        };
        for r in &registrations {
            reverify(r);
        }
        assert_eq!(
            late.stats().await.unwrap().namespaces,
            1,
            "the lookup's value was kept"
        );
        late.shutdown().await;
        for n in first {
            n.shutdown().await;
        }
    })
    .await
    .expect("bounded in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_client_pages_a_kind_with_cookies() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let nodes = start_rendezvous_nodes(1, PING, MISSES).await.unwrap();
        let at = nodes[0].addr();
        let a = start_quorum(3, 2, Some("harvester"), vec![at.clone()], TTL, DKG_PHASE)
            .await
            .unwrap();
        let b = start_quorum(2, 2, Some("harvester"), vec![at.clone()], TTL, DKG_PHASE)
            .await
            .unwrap();
        let c = start_quorum(2, 2, Some("farmer"), vec![at.clone()], TTL, DKG_PHASE)
            .await
            .unwrap();
        let key_a = a.wait_registered(1, WAIT).await.unwrap();
        let key_b = b.wait_registered(1, WAIT).await.unwrap();
        c.wait_registered(1, WAIT).await.unwrap();
        let mut ours = Client::ephemeral().unwrap();
        discover_until(&mut ours, &at, key_a, WAIT, |x| x.peers.len() == 3)
            .await
            .unwrap();
        discover_until(&mut ours, &at, key_b, WAIT, |x| x.peers.len() == 2)
            .await
            .unwrap();
        let expected: BTreeSet<PeerId> = [&a, &b]
            .iter()
            .flat_map(|q| (1..=q.file.n()).filter_map(|i| q.file.member(i).map(|m| m.peer_id)))
            .collect();

        let mut stock = stock_swarm();
        let rendezvous = connect(&mut stock, &at).await;
        let mut cookie = None;
        let mut seen = BTreeSet::new();
        let mut pages = 0;
        let deadline = Instant::now() + WAIT;
        loop {
            let (page, next) = stock_discover(
                &mut stock,
                rendezvous,
                "kind:harvester",
                cookie.take(),
                Some(2),
            )
            .await
            .expect("a page");
            assert!(page.len() <= 2, "a page of {}", page.len());
            for r in &page {
                let record = reverify(r);
                let ns = r.namespace.to_string();
                assert!(ns == key_a.to_hex() || ns == key_b.to_hex(), "{ns}");
                assert!(seen.insert(record.peer_id()), "a member twice");
            }
            assert_eq!(
                next.namespace().map(|n| n.to_string()).as_deref(),
                Some("kind:harvester")
            );
            cookie = Some(next);
            if page.is_empty() {
                break;
            }
            pages += 1;
            assert!(Instant::now() < deadline);
        }
        assert_eq!(
            seen, expected,
            "every member of both harvester quorums, none of the farmer's"
        );
        assert!(pages >= 3, "5 members in pages of 2: {pages} pages");

        // A cookie of this kind used for a quorum's namespace: refused.
        assert_eq!(
            stock_discover(&mut stock, rendezvous, &key_a.to_hex(), cookie, None)
                .await
                .err(),
            Some(ErrorCode::InvalidCookie)
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_register_is_refused_and_lists_nobody() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let nodes = start_rendezvous_nodes(1, PING, MISSES).await.unwrap();
        let at = nodes[0].addr();
        let namespace = "ab".repeat(48);
        let mut stock = stock_swarm();
        let rendezvous = connect(&mut stock, &at).await;
        stock.add_external_address("/ip4/127.0.0.1/tcp/4001".parse().unwrap());
        stock
            .behaviour_mut()
            .register(Namespace::new(namespace.clone()).unwrap(), rendezvous, None)
            .expect("the client sends it");
        let refused = loop {
            match next_event(&mut stock).await {
                client::Event::RegisterFailed { error, .. } => break Some(error),
                client::Event::Registered { .. } => break None,
                _ => {}
            }
        };
        assert_eq!(refused, Some(ErrorCode::NotAuthorized));
        // The gate was not bypassed: nothing is listed under it.
        let (listed, _) = stock_discover(&mut stock, rendezvous, &namespace, None, None)
            .await
            .expect("an empty answer");
        assert!(listed.is_empty());
        // UNREGISTER is ignored (no answer, no harm): the node still serves.
        stock
            .behaviour_mut()
            .unregister(Namespace::new(namespace.clone()).unwrap(), rendezvous);
        assert!(
            stock_discover(&mut stock, rendezvous, &namespace, None, None)
                .await
                .is_ok()
        );
    })
    .await
    .expect("test timed out");
}
