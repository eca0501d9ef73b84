//! The standard side of `rdht-bench bench-discover --standard`: two
//! clients of the standard `/rendezvous/1.0.0` protocol, each in a swarm
//! of its own on one long-lived connection to an rdht rendezvous node,
//! timing one DISCOVER at a time so that the bench can interleave them
//! with rdht's own discovers (same moment, same load):
//!
//! - [`StockClient`]: libp2p-rendezvous's own `client::Behaviour` (the
//!   bench crate links it), which verifies every signed peer record as it
//!   decodes the answer: compare with rdht's round trip + verify;
//! - [`RawClient`]: request-response over rdht's own codec of the
//!   standard protocol (`node::standard`), no verification: compare with
//!   rdht's bare round trip (the server's side of both paths).

use std::time::{Duration, Instant};

use libp2p::futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::rendezvous::{client, Namespace};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{noise, tcp, yamux, Multiaddr, PeerId, Swarm};
use node::standard::{Message, StandardCodec, STANDARD_PROTOCOL};

use crate::error::MeasureError;

/// Requests that warm a connection before anything is timed.
const WARM_UP: usize = 50;

fn swarm<B: NetworkBehaviour>(
    behaviour: impl FnOnce(&Keypair) -> B,
) -> Result<Swarm<B>, MeasureError> {
    Ok(
        libp2p::SwarmBuilder::with_existing_identity(Keypair::generate_ed25519())
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|_| MeasureError::Usage("a standard client's transport did not build"))?
            .with_behaviour(behaviour)
            .map_err(|_| MeasureError::Usage("a standard client's behaviour did not build"))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
            .build(),
    )
}

fn rendezvous_of(at: &Multiaddr) -> Result<PeerId, MeasureError> {
    node::behaviour::split_p2p(at)
        .map(|(peer, _)| peer)
        .ok_or(MeasureError::Usage("a /p2p address"))
}

/// libp2p-rendezvous's own client.
pub struct StockClient {
    swarm: Swarm<client::Behaviour>,
    rendezvous: PeerId,
    namespace: Namespace,
    members: usize,
}

impl StockClient {
    /// Connects to `at` and warms the connection.
    pub async fn connect(
        at: &Multiaddr,
        namespace: &str,
        members: u32,
    ) -> Result<Self, MeasureError> {
        let mut me = Self {
            swarm: swarm(|key| client::Behaviour::new(key.clone()))?,
            rendezvous: rendezvous_of(at)?,
            namespace: Namespace::new(namespace.to_owned())
                .map_err(|_| MeasureError::Usage("namespace too long"))?,
            members: members as usize,
        };
        me.swarm
            .dial(at.clone())
            .map_err(|_| MeasureError::Usage("the stock client could not dial"))?;
        for _ in 0..WARM_UP {
            me.discover().await?;
        }
        Ok(me)
    }

    /// One DISCOVER: its round trip, the stock client's verification of
    /// every record included.
    pub async fn discover(&mut self) -> Result<Duration, MeasureError> {
        let t = Instant::now();
        self.swarm.behaviour_mut().discover(
            Some(self.namespace.clone()),
            None,
            None,
            self.rendezvous,
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let event = tokio::time::timeout_at(deadline, self.swarm.select_next_some())
                .await
                .map_err(|_| MeasureError::Timeout("a standard discover answer"))?;
            match event {
                SwarmEvent::Behaviour(client::Event::Discovered { registrations, .. }) => {
                    return complete(t.elapsed(), registrations.len(), self.members);
                }
                SwarmEvent::Behaviour(client::Event::DiscoverFailed { .. }) => {
                    return Err(MeasureError::Usage("the standard discover was refused"))
                }
                _ => {}
            }
        }
    }
}

/// Request-response over rdht's codec of the standard protocol.
pub struct RawClient {
    swarm: Swarm<request_response::Behaviour<StandardCodec>>,
    rendezvous: PeerId,
    request: Message,
    members: usize,
}

impl RawClient {
    /// Connects to `at` and warms the connection.
    pub async fn connect(
        at: &Multiaddr,
        namespace: &str,
        members: u32,
    ) -> Result<Self, MeasureError> {
        let rendezvous = rendezvous_of(at)?;
        let mut swarm = swarm(|_| {
            request_response::Behaviour::with_codec(
                StandardCodec,
                [(STANDARD_PROTOCOL, ProtocolSupport::Outbound)],
                request_response::Config::default(),
            )
        })?;
        swarm.add_peer_address(rendezvous, at.clone());
        let mut me = Self {
            swarm,
            rendezvous,
            request: Message::Discover {
                ns: Some(namespace.to_owned()),
                limit: None,
                cookie: None,
            },
            members: members as usize,
        };
        for _ in 0..WARM_UP {
            me.discover().await?;
        }
        Ok(me)
    }

    /// One DISCOVER: its round trip, nothing verified.
    pub async fn discover(&mut self) -> Result<Duration, MeasureError> {
        let t = Instant::now();
        self.swarm
            .behaviour_mut()
            .send_request(&self.rendezvous, self.request.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let event = tokio::time::timeout_at(deadline, self.swarm.select_next_some())
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
                }) => {
                    return complete(t.elapsed(), registrations.len(), self.members);
                }
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure { .. }) => {
                    return Err(MeasureError::Timeout("a raw standard discover answer"))
                }
                _ => {}
            }
        }
    }
}

/// A standard answer's round trip, if it listed every member.
fn complete(elapsed: Duration, listed: usize, members: usize) -> Result<Duration, MeasureError> {
    if listed == members {
        Ok(elapsed)
    } else {
        Err(MeasureError::Incomplete {
            expected: members,
            verified: listed,
            rejected: 0,
        })
    }
}
