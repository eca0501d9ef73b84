//! The libp2p side of every role: one `NetworkBehaviour` (Kademlia,
//! request-response, ping, identify, a block list, the discovery client)
//! and the swarm that carries it.
//!
//! Translation only: nothing here decides anything about records; the
//! drivers hand events to the sans-IO cores.

use std::num::NonZeroUsize;
use std::time::Duration;

use dht::KadStore;
use libp2p::futures::{FutureExt, StreamExt};
use libp2p::identity::Keypair;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    allow_block_list, identify, kad, noise, ping, request_response, tcp, yamux, Multiaddr,
    StreamProtocol, Swarm,
};

use crate::codec::{RdhtCodec, MAX_FRAME_BYTES, PROTOCOL};
use crate::standard::{StandardCodec, STANDARD_PROTOCOL};

/// Kademlia protocol name of rdht's DHT (kept apart from the public IPFS
/// DHT: our values are only meaningful to rdht nodes).
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/rdht/kad/1.0.0");

/// The identify protocol version string.
pub const IDENTIFY_VERSION: &str = "/rdht/1.0.0";

pub use inner::{Behaviour, BehaviourEvent};

/// The parts of `NetworkBehaviour` a role behaviour hands unchanged to the
/// behaviour it wraps (the field `$inner`): connection set-up and the
/// handlers' events. Each role writes its own `on_swarm_event` and `poll`.
macro_rules! delegate_connections {
    ($inner:ident) => {
        fn handle_pending_inbound_connection(
            &mut self,
            connection_id: libp2p::swarm::ConnectionId,
            local_addr: &libp2p::Multiaddr,
            remote_addr: &libp2p::Multiaddr,
        ) -> Result<(), libp2p::swarm::ConnectionDenied> {
            self.$inner
                .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
        }

        fn handle_established_inbound_connection(
            &mut self,
            connection_id: libp2p::swarm::ConnectionId,
            peer: libp2p::PeerId,
            local_addr: &libp2p::Multiaddr,
            remote_addr: &libp2p::Multiaddr,
        ) -> Result<libp2p::swarm::THandler<Self>, libp2p::swarm::ConnectionDenied> {
            self.$inner.handle_established_inbound_connection(
                connection_id,
                peer,
                local_addr,
                remote_addr,
            )
        }

        fn handle_pending_outbound_connection(
            &mut self,
            connection_id: libp2p::swarm::ConnectionId,
            maybe_peer: Option<libp2p::PeerId>,
            addresses: &[libp2p::Multiaddr],
            effective_role: libp2p::core::Endpoint,
        ) -> Result<Vec<libp2p::Multiaddr>, libp2p::swarm::ConnectionDenied> {
            self.$inner.handle_pending_outbound_connection(
                connection_id,
                maybe_peer,
                addresses,
                effective_role,
            )
        }

        fn handle_established_outbound_connection(
            &mut self,
            connection_id: libp2p::swarm::ConnectionId,
            peer: libp2p::PeerId,
            addr: &libp2p::Multiaddr,
            role_override: libp2p::core::Endpoint,
            port_use: libp2p::core::transport::PortUse,
        ) -> Result<libp2p::swarm::THandler<Self>, libp2p::swarm::ConnectionDenied> {
            self.$inner.handle_established_outbound_connection(
                connection_id,
                peer,
                addr,
                role_override,
                port_use,
            )
        }

        fn on_connection_handler_event(
            &mut self,
            peer: libp2p::PeerId,
            connection_id: libp2p::swarm::ConnectionId,
            event: libp2p::swarm::THandlerOutEvent<Self>,
        ) {
            self.$inner
                .on_connection_handler_event(peer, connection_id, event);
        }
    };
}
pub(crate) use delegate_connections;

/// Wakes a role behaviour at its core's next deadline (Unix ms): one
/// `futures_timer::Delay`, made anew only when the deadline moves.
#[derive(Default)]
pub(crate) struct Alarm {
    armed: Option<(u64, std::pin::Pin<Box<futures_timer::Delay>>)>,
}

impl Alarm {
    /// Arms the alarm for `at` (`None`: nothing due) and says whether
    /// `at` has come (the alarm is then disarmed; the caller runs its
    /// timeouts).
    pub(crate) fn poll(&mut self, cx: &mut std::task::Context<'_>, at: Option<u64>) -> bool {
        use std::future::Future;
        let Some(at) = at else {
            self.armed = None;
            return false;
        };
        let now = now_ms();
        if at <= now {
            self.armed = None;
            return true;
        }
        if self.armed.as_ref().is_none_or(|(armed, _)| *armed != at) {
            let delay = futures_timer::Delay::new(Duration::from_millis(at - now));
            self.armed = Some((at, Box::pin(delay)));
        }
        let fired = self
            .armed
            .as_mut()
            .is_some_and(|(_, delay)| delay.as_mut().poll(cx).is_ready());
        if fired {
            self.armed = None;
        }
        fired
    }
}

/// Polls a role's inner behaviour until it has nothing ready: returns its
/// events (for the role's core), queues the first action of another kind
/// (a dial, a message to a handler) in `pending`, and says whether
/// anything happened. Events are collected rather than handled in place
/// because handling them needs the role, which owns `inner`.
pub(crate) fn poll_inner<B: NetworkBehaviour, E>(
    inner: &mut B,
    cx: &mut std::task::Context<'_>,
    pending: &mut std::collections::VecDeque<
        libp2p::swarm::ToSwarm<E, libp2p::swarm::THandlerInEvent<B>>,
    >,
) -> (Vec<B::ToSwarm>, bool) {
    use libp2p::swarm::ToSwarm;
    use std::task::Poll;
    let mut events = Vec::new();
    loop {
        match inner.poll(cx) {
            Poll::Ready(ToSwarm::GenerateEvent(event)) => events.push(event),
            Poll::Ready(other) => {
                pending.push_back(other.map_out(|_| unreachable!("GenerateEvent is taken above")));
                return (events, true);
            }
            Poll::Pending => {
                let progressed = !events.is_empty();
                return (events, progressed);
            }
        }
    }
}

// The derive generates `BehaviourEvent` without docs.
#[allow(missing_docs)]
mod inner {
    use super::*;

    /// Every behaviour an rdht node runs. Kademlia is on only for rendezvous
    /// nodes: members and clients talk request-response to known nodes.
    #[derive(NetworkBehaviour)]
    pub struct Behaviour {
        /// The DHT, over the validating store (rendezvous nodes only).
        pub kad: Toggle<kad::Behaviour<KadStore>>,
        /// `/rdht/rendezvous/2.0.0`: registration, discovery, DKG and co-signing.
        pub rr: request_response::Behaviour<RdhtCodec>,
        /// `/rendezvous/1.0.0`, inbound only: stock libp2p rendezvous
        /// clients discover quorums (rendezvous nodes only; PROTOCOL.md 16).
        pub standard: Toggle<request_response::Behaviour<StandardCodec>>,
        /// Liveness: a pong proves the peer behind an authenticated connection.
        pub ping: ping::Behaviour,
        /// Listen addresses of peers (fed to Kademlia).
        pub identify: identify::Behaviour,
        /// Peers whose connections are refused: senders of invalid
        /// signatures, for their penalty (`dht::Output::Disconnect`).
        pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
        /// Discovery with verification (outbound `/rdht/rendezvous/2.0.0`
        /// only): what `rdht discover` runs, the same behaviour an
        /// application embeds (`crate::client`).
        pub client: crate::client::Behaviour,
    }
}

/// How to build a swarm.
#[derive(Debug, Clone)]
pub struct SwarmSettings {
    /// Run Kademlia over this store (rendezvous nodes).
    pub kad: bool,
    /// How often each connection is pinged.
    pub ping_interval: Duration,
    /// How long a ping may take before it counts as failed.
    pub ping_timeout: Duration,
    /// How long a request may wait for its response.
    pub request_timeout: Duration,
    /// How long an idle connection is kept open.
    pub idle_timeout: Duration,
    /// How long a dial (and its handshake) may take.
    pub connection_timeout: Duration,
}

impl Default for SwarmSettings {
    fn default() -> Self {
        Self {
            kad: false,
            ping_interval: Duration::from_secs(15),
            ping_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            connection_timeout: Duration::from_secs(10),
        }
    }
}

/// A dial of `peer` at `addrs` under `condition`, from a new local port.
///
/// libp2p dials from the listen port by default (`PortUse::Reuse`), so a
/// dial between two listening nodes uses the same 4-tuple whichever side
/// starts it. Two things then go wrong on a real network (both seen in
/// the faults testbed, #16):
/// - two members that dial each other at the same moment (they redial
///   every second until connected) make a TCP simultaneous open: one
///   connection on which both sides start Noise as the initiator, so the
///   handshake fails (`InvalidData`) every time. Under 50 ms of delay the
///   SYNs crossed in flight on every attempt, and no member connected to
///   any other for the 30 s before the DKG gave up waiting;
/// - after a partition a peer still holds its old connection to us
///   ESTABLISHED, and our SYN for the same 4-tuple gets a challenge ACK:
///   the new connection comes up a SYN retransmission (a second or more)
///   late.
///
/// Nothing of rdht needs the listen port as the source (no hole
/// punching; the peers' listen addresses are known).
pub fn dial_from_new_port(
    peer: libp2p::PeerId,
    addrs: Vec<libp2p::Multiaddr>,
    condition: libp2p::swarm::dial_opts::PeerCondition,
) -> libp2p::swarm::dial_opts::DialOpts {
    libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
        .addresses(addrs)
        .condition(condition)
        .allocate_new_port()
        .build()
}

/// Kademlia's own query timeout. Longer than the rendezvous core's lookup
/// deadline (`dht::LOOKUP_TIMEOUT_MS`, 5 s), which answers the waiting
/// discovers `LookupTimedOut` first: a query that kad ends by timing out
/// would read as "not found" (`UnknownNamespace`, remembered for 5 s).
pub fn kad_config_query_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Kademlia configured for rdht: validating inserts (every replica
/// re-verifies what it stores), packets large enough for a 1 MiB value,
/// short queries.
pub fn kad_config() -> kad::Config {
    let mut cfg = kad::Config::new(KAD_PROTOCOL);
    cfg.set_record_filtering(kad::StoreInserts::FilterBoth)
        .set_max_packet_size(MAX_FRAME_BYTES + 64 * 1024)
        .set_query_timeout(kad_config_query_timeout())
        .set_replication_factor(NonZeroUsize::new(20).unwrap_or(NonZeroUsize::MIN))
        // Our store has no kad-level expiry; we republish what we accept.
        .set_record_ttl(None)
        .set_publication_interval(Some(Duration::from_secs(3600)));
    cfg
}

/// Why a swarm could not be built or could not listen.
#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    /// The Noise handshake could not be configured with this identity.
    #[error("noise: {0}")]
    Noise(#[from] libp2p::noise::Error),
    /// An address could not be listened on.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        source: libp2p::TransportError<std::io::Error>,
    },
    /// A listener failed before reporting its address.
    #[error("listener failed: {0}")]
    Listener(std::io::Error),
    /// Not every listener reported its address within 10 s.
    #[error("timed out waiting for listen addresses")]
    ListenTimeout,
}

/// Builds a swarm (TCP, Noise, Yamux) around the behaviour. `store` is
/// required when `settings.kad` is on.
pub fn build_swarm(
    keypair: Keypair,
    settings: &SwarmSettings,
    store: Option<KadStore>,
) -> Result<Swarm<Behaviour>, SwarmError> {
    let settings_for_behaviour = settings.clone();
    build_swarm_with(keypair, settings, move |key| {
        let settings = settings_for_behaviour;
        let peer_id = key.public().to_peer_id();
        let kad = match (settings.kad, store) {
            (true, Some(store)) => {
                let mut kad = kad::Behaviour::with_config(peer_id, store, kad_config());
                // Loopback and test networks never confirm an external
                // address, so server mode must be set explicitly.
                kad.set_mode(Some(kad::Mode::Server));
                Some(kad)
            }
            _ => None,
        };
        let rr = request_response::Behaviour::with_codec(
            RdhtCodec,
            [(PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(settings.request_timeout)
                .with_max_concurrent_streams(256),
        );
        let standard = settings.kad.then(|| {
            request_response::Behaviour::with_codec(
                StandardCodec,
                [(
                    STANDARD_PROTOCOL,
                    request_response::ProtocolSupport::Inbound,
                )],
                request_response::Config::default()
                    .with_request_timeout(settings.request_timeout)
                    .with_max_concurrent_streams(256),
            )
        });
        let ping = ping::Behaviour::new(
            ping::Config::new()
                .with_interval(settings.ping_interval)
                .with_timeout(settings.ping_timeout),
        );
        let identify = identify::Behaviour::new(identify::Config::new(
            IDENTIFY_VERSION.to_owned(),
            key.public(),
        ));
        let client = crate::client::Behaviour::new(crate::client::Config {
            request_timeout: settings.request_timeout,
            ..crate::client::Config::default()
        });
        Behaviour {
            kad: Toggle::from(kad),
            rr,
            standard: Toggle::from(standard),
            ping,
            identify,
            blocked: allow_block_list::Behaviour::default(),
            client,
        }
    })
}

/// Builds a swarm (TCP, Noise, Yamux, the settings' timeouts) around any
/// behaviour: how the `rdht` binary runs each role's behaviour
/// ([`crate::rendezvous::Behaviour`], [`crate::quorum::Behaviour`],
/// [`crate::client::Behaviour`]), and the shortest way for an
/// application to run one.
pub fn build_swarm_with<B: NetworkBehaviour>(
    keypair: Keypair,
    settings: &SwarmSettings,
    behaviour: impl FnOnce(&Keypair) -> B,
) -> Result<Swarm<B>, SwarmError> {
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|key| behaviour(key))
        .map_err(|never| -> SwarmError { match never {} })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(settings.idle_timeout))
        .with_connection_timeout(settings.connection_timeout)
        .build();
    Ok(swarm)
}

/// Splits `/.../p2p/<id>` into the PeerId and the address without it.
pub fn split_p2p(addr: &libp2p::Multiaddr) -> Option<(libp2p::PeerId, libp2p::Multiaddr)> {
    let mut base = addr.clone();
    match base.pop()? {
        libp2p::multiaddr::Protocol::P2p(peer_id) => Some((peer_id, base)),
        _ => None,
    }
}

/// Milliseconds since the Unix epoch (the cores' clock).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Listens on every address and waits until each listener reports its
/// resolved address (ports of `/tcp/0` are known afterwards).
pub async fn listen_all<B: NetworkBehaviour>(
    swarm: &mut Swarm<B>,
    addrs: &[Multiaddr],
) -> Result<Vec<Multiaddr>, SwarmError> {
    let mut pending = std::collections::HashSet::new();
    for addr in addrs {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|source| SwarmError::Listen {
                addr: addr.clone(),
                source,
            })?;
        pending.insert(id);
    }
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !pending.is_empty() {
        let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .map_err(|_| SwarmError::ListenTimeout)?;
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                pending.remove(&listener_id);
                out.push(address);
            }
            SwarmEvent::ListenerError { error, .. } => return Err(SwarmError::Listener(error)),
            SwarmEvent::ListenerClosed {
                reason: Err(error), ..
            } => return Err(SwarmError::Listener(error)),
            _ => {}
        }
    }
    // Listeners on 0.0.0.0 report one address per interface; take what is
    // already there without waiting.
    while let Some(Some(SwarmEvent::NewListenAddr { address, .. })) = swarm.next().now_or_never() {
        out.push(address);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dial from [`dial_from_new_port`] (liveness, fellow-member and
    /// bootstrap dials) leaves from a new port, not the listen port: the
    /// dialled node sees a source port other than the dialler's listen
    /// port. With libp2p's default (port reuse) it sees the listen port.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dial_from_a_new_port_does_not_leave_from_the_listen_port() {
        use libp2p::futures::StreamExt;
        use libp2p::swarm::{dummy, SwarmEvent};

        let settings = SwarmSettings::default();
        let swarm = |_: &libp2p::identity::Keypair| dummy::Behaviour;
        let build = |settings| {
            let key = libp2p::identity::Keypair::generate_ed25519();
            build_swarm_with(key, settings, swarm).map_err(|e| e.to_string())
        };
        let mut dialler = build(&settings).unwrap();
        let mut member = build(&settings).unwrap();
        let loopback: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().unwrap();
        dialler.listen_on(loopback.clone()).unwrap();
        member.listen_on(loopback).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        // Both listen before the dial (port reuse needs a listener).
        let (mut dialler_addr, mut member_addr) = (None, None);
        while dialler_addr.is_none() || member_addr.is_none() {
            tokio::select! {
                e = dialler.select_next_some() => if let SwarmEvent::NewListenAddr { address, .. } = e {
                    dialler_addr = Some(address);
                },
                e = member.select_next_some() => if let SwarmEvent::NewListenAddr { address, .. } = e {
                    member_addr = Some(address);
                },
                _ = tokio::time::sleep_until(deadline) => panic!("not listening"),
            }
        }
        let port = |a: &Multiaddr| {
            a.iter().find_map(|p| match p {
                libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
                _ => None,
            })
        };
        let dialler_port = dialler_addr.as_ref().and_then(port).unwrap();
        let member_id = *member.local_peer_id();
        dialler
            .dial(dial_from_new_port(
                member_id,
                vec![member_addr.unwrap()],
                libp2p::swarm::dial_opts::PeerCondition::NotDialing,
            ))
            .unwrap();
        let source = loop {
            tokio::select! {
                _ = dialler.select_next_some() => {},
                e = member.select_next_some() => if let SwarmEvent::ConnectionEstablished { endpoint, .. } = e {
                    break endpoint.get_remote_address().clone();
                },
                _ = tokio::time::sleep_until(deadline) => panic!("no connection"),
            }
        };
        assert_ne!(port(&source), Some(dialler_port), "dialled from {source}");
    }
}
