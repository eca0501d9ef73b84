//! The standard side of `rdht-bench bench-discover --standard`:
//! libp2p-rendezvous's own client (`client::Behaviour`, the one the bench
//! crate links) in a swarm of its own, timing DISCOVERs of one namespace
//! at an rdht rendezvous node over one long-lived connection.

use std::time::{Duration, Instant};

use libp2p::futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::rendezvous::{client, Namespace};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr, Swarm};

use crate::error::MeasureError;

fn stock_swarm() -> Result<Swarm<client::Behaviour>, MeasureError> {
    Ok(
        libp2p::SwarmBuilder::with_existing_identity(Keypair::generate_ed25519())
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|_| MeasureError::Usage("the stock client's transport did not build"))?
            .with_behaviour(|key| client::Behaviour::new(key.clone()))
            .map_err(|_| MeasureError::Usage("the stock client's behaviour did not build"))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
            .build(),
    )
}

/// One DISCOVER of `namespace`: the number of registrations (each already
/// verified by the stock codec).
async fn discover_once(
    swarm: &mut Swarm<client::Behaviour>,
    rendezvous: libp2p::PeerId,
    namespace: &Namespace,
) -> Result<usize, MeasureError> {
    swarm
        .behaviour_mut()
        .discover(Some(namespace.clone()), None, None, rendezvous);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .map_err(|_| MeasureError::Timeout("a standard discover answer"))?;
        match event {
            SwarmEvent::Behaviour(client::Event::Discovered { registrations, .. }) => {
                return Ok(registrations.len())
            }
            SwarmEvent::Behaviour(client::Event::DiscoverFailed { .. }) => {
                return Err(MeasureError::Usage("the standard discover was refused"))
            }
            _ => {}
        }
    }
}

/// Times `requests` standard DISCOVERs of `namespace` at `at`
/// (`.../p2p/<id>`), after 50 to warm the connection; each must list
/// `members` registrations.
pub async fn time_stock_discovers(
    at: &Multiaddr,
    namespace: &str,
    members: u32,
    requests: usize,
) -> Result<Vec<Duration>, MeasureError> {
    let (rendezvous, _) =
        node::behaviour::split_p2p(at).ok_or(MeasureError::Usage("a /p2p address"))?;
    let namespace = Namespace::new(namespace.to_owned())
        .map_err(|_| MeasureError::Usage("namespace too long"))?;
    let mut swarm = stock_swarm()?;
    swarm
        .dial(at.clone())
        .map_err(|_| MeasureError::Usage("the stock client could not dial"))?;
    for _ in 0..50 {
        discover_once(&mut swarm, rendezvous, &namespace).await?;
    }
    let mut times = Vec::with_capacity(requests);
    for _ in 0..requests {
        let t = Instant::now();
        let listed = discover_once(&mut swarm, rendezvous, &namespace).await?;
        times.push(t.elapsed());
        if listed != members as usize {
            return Err(MeasureError::Incomplete {
                expected: members as usize,
                verified: listed,
                rejected: 0,
            });
        }
    }
    Ok(times)
}

/// Times `requests` standard DISCOVERs of `namespace` at `at` through
/// rdht's own codec of the standard protocol (`node::standard`), with no
/// verification of the answer: the round trip alone, to compare with
/// rdht's own round trip (the server's side of both paths).
pub async fn time_raw_standard_discovers(
    at: &Multiaddr,
    namespace: &str,
    members: u32,
    requests: usize,
) -> Result<Vec<Duration>, MeasureError> {
    use libp2p::request_response::{self, ProtocolSupport};
    use node::standard::{Message, StandardCodec, STANDARD_PROTOCOL};

    let (rendezvous, _) =
        node::behaviour::split_p2p(at).ok_or(MeasureError::Usage("a /p2p address"))?;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(Keypair::generate_ed25519())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|_| MeasureError::Usage("the raw client's transport did not build"))?
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                StandardCodec,
                [(STANDARD_PROTOCOL, ProtocolSupport::Outbound)],
                request_response::Config::default(),
            )
        })
        .map_err(|_| MeasureError::Usage("the raw client's behaviour did not build"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    swarm.add_peer_address(rendezvous, at.clone());
    let request = Message::Discover {
        ns: Some(namespace.to_owned()),
        limit: None,
        cookie: None,
    };
    let mut times = Vec::with_capacity(requests);
    for round in 0..requests + 50 {
        let t = Instant::now();
        swarm
            .behaviour_mut()
            .send_request(&rendezvous, request.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let listed = loop {
            let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
                .await
                .map_err(|_| MeasureError::Timeout("a raw standard discover answer"))?;
            match event {
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message:
                        request_response::Message::Response {
                            response: Message::DiscoverResponse { registrations, .. },
                            ..
                        },
                    ..
                }) => break registrations.len(),
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure { .. }) => {
                    return Err(MeasureError::Timeout("a raw standard discover answer"))
                }
                _ => {}
            }
        };
        // The first 50 warm the connection.
        if round >= 50 {
            times.push(t.elapsed());
        }
        if listed != members as usize {
            return Err(MeasureError::Incomplete {
                expected: members as usize,
                verified: listed,
                rejected: 0,
            });
        }
    }
    Ok(times)
}
