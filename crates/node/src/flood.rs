//! A Kademlia PUT flooder: what a hostile peer does to stall a rendezvous
//! node through kad (#13 item 1). It speaks kad in client mode to one
//! target and keeps a number of PUTs in flight for a while, optionally
//! under a fresh identity every so many PUTs (a Sybil that starts each
//! identity with a full budget). The hostile-network tests and
//! `rdht-bench put-flood` use it; nothing in a node does.

use std::time::{Duration, Instant};

use dht::{KadStore, NamespaceStore, Server, ServerConfig};
use libp2p::futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::kad;
use libp2p::swarm::SwarmEvent;
use libp2p::Multiaddr;

use crate::behaviour::{build_swarm, now_ms, split_p2p, BehaviourEvent, SwarmError, SwarmSettings};

/// What to flood, how hard, for how long.
#[derive(Debug, Clone)]
pub struct FloodConfig {
    /// The node (with its `/p2p/` suffix).
    pub target: Multiaddr,
    /// How long to keep sending.
    pub duration: Duration,
    /// PUTs kept in flight at once.
    pub in_flight: usize,
    /// A fresh identity (and connection) after this many PUTs (`None`:
    /// one identity throughout).
    pub fresh_identity_every: Option<u64>,
}

/// What a flood did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FloodStats {
    /// PUTs started.
    pub puts_sent: u64,
    /// PUTs the target acknowledged.
    pub puts_acknowledged: u64,
    /// PUTs that failed (refused, timed out, connection closed).
    pub puts_failed: u64,
    /// Bytes of values sent.
    pub bytes_sent: u64,
    /// Identities used.
    pub identities: u64,
    /// Connections the target closed.
    pub disconnects: u64,
}

/// Why a flood could not run.
#[derive(Debug, thiserror::Error)]
pub enum FloodError {
    /// The target has no `/p2p/` suffix.
    #[error("the target address needs a /p2p/ suffix")]
    NoPeerId,
    /// The flooder's swarm could not be built.
    #[error(transparent)]
    Swarm(#[from] SwarmError),
}

/// Floods `config.target` with PUTs of `next_value(i)` (a DHT key and a
/// value) for `config.duration`.
pub async fn flood_puts(
    config: FloodConfig,
    mut next_value: impl FnMut(u64) -> ([u8; 32], Vec<u8>),
) -> Result<FloodStats, FloodError> {
    let (target, target_addr) = split_p2p(&config.target).ok_or(FloodError::NoPeerId)?;
    let end = Instant::now() + config.duration;
    let mut stats = FloodStats::default();
    while Instant::now() < end {
        stats.identities += 1;
        let keypair = Keypair::generate_ed25519();
        let core = Server::new(
            ServerConfig::default(),
            NamespaceStore::new(Default::default(), [0; 32]),
        );
        let settings = SwarmSettings {
            kad: true,
            request_timeout: Duration::from_secs(5),
            ..SwarmSettings::default()
        };
        let mut swarm = build_swarm(
            keypair,
            &settings,
            Some(KadStore::new(core, Box::new(now_ms))),
        )?;
        if let Some(kad) = swarm.behaviour_mut().kad.as_mut() {
            kad.set_mode(Some(kad::Mode::Client));
            kad.add_address(&target, target_addr.clone());
        }
        let mut sent_here = 0u64;
        let mut in_flight = 0usize;
        loop {
            let rotate = |sent: u64| {
                config
                    .fresh_identity_every
                    .is_some_and(|every| sent >= every)
            };
            while in_flight < config.in_flight.max(1) && !rotate(sent_here) && Instant::now() < end
            {
                let (key, value) = next_value(stats.puts_sent);
                stats.bytes_sent += value.len() as u64;
                let record = kad::Record::new(key.to_vec(), value);
                if let Some(kad) = swarm.behaviour_mut().kad.as_mut() {
                    kad.put_record_to(record, std::iter::once(target), kad::Quorum::One);
                }
                stats.puts_sent += 1;
                sent_here += 1;
                in_flight += 1;
            }
            if in_flight == 0 {
                break;
            }
            let wait = end.max(Instant::now()) + Duration::from_secs(5);
            let event = tokio::time::timeout_at(wait.into(), swarm.select_next_some()).await;
            match event {
                Ok(SwarmEvent::Behaviour(BehaviourEvent::Kad(
                    kad::Event::OutboundQueryProgressed {
                        result: kad::QueryResult::PutRecord(result),
                        ..
                    },
                ))) => {
                    in_flight = in_flight.saturating_sub(1);
                    match result {
                        Ok(_) => stats.puts_acknowledged += 1,
                        Err(_) => stats.puts_failed += 1,
                    }
                }
                Ok(SwarmEvent::ConnectionClosed { peer_id, .. }) if peer_id == target => {
                    stats.disconnects += 1;
                }
                Ok(_) => {}
                Err(_) => {
                    // Nothing for 5 s past the end: count what is left as failed.
                    stats.puts_failed += in_flight as u64;
                    break;
                }
            }
        }
    }
    Ok(stats)
}
