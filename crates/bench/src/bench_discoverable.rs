//! `rdht-bench bench-discoverable`: how long after its DKG a whole quorum
//! is discoverable, on loopback.
//!
//! `--rendezvous` rendezvous nodes and a quorum of `--members` real
//! members (each its own libp2p swarm, in this process) start together;
//! the members run the DKG over the network, then co-sign the namespace
//! and register. Two instants are taken, polling every 5 ms: when every
//! member holds its key share (the DKG's end), and when a discover at the
//! first rendezvous node lists all members (then verified once by the
//! client). The figure is the time between them.

use std::time::{Duration, Instant};

use node::demo::{start_quorum, start_rendezvous_nodes};
use node::discover::Client;
use rendezvous_proto::{Request, Response};

use crate::error::MeasureError;

/// What one run measured (seconds).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Discoverable {
    /// Members in the quorum.
    pub members: u32,
    /// Its threshold.
    pub threshold: u32,
    /// Rendezvous nodes.
    pub rendezvous: usize,
    /// From the start until every member held its key share.
    pub dkg_s: f64,
    /// From the DKG's end until a discover listed every member.
    pub discoverable_after_dkg_s: f64,
}

/// Runs the measurement once.
pub async fn bench_discoverable(
    members: u32,
    rendezvous: usize,
    timeout: Duration,
) -> Result<Discoverable, MeasureError> {
    if members == 0 || rendezvous == 0 {
        return Err(MeasureError::Usage(
            "--members and --rendezvous must be at least 1",
        ));
    }
    let threshold = members * 2 / 3 + 1;
    let nodes = start_rendezvous_nodes(rendezvous, Duration::from_secs(5), 3).await?;
    let addrs: Vec<_> = nodes.iter().map(|n| n.addr()).collect();
    let started = Instant::now();
    let quorum = start_quorum(
        members,
        threshold,
        Some("bench"),
        addrs.clone(),
        Duration::from_secs(2 * 3600),
        Duration::from_secs(10),
    )
    .await?;
    let deadline = started + timeout;
    let poll = Duration::from_millis(5);
    // The DKG's end: every member holds its key share.
    let dkg_done = loop {
        let all = quorum
            .members
            .iter()
            .flatten()
            .all(|m| m.status.borrow().quorum_key.is_some());
        if all {
            break Instant::now();
        }
        if Instant::now() > deadline {
            return Err(MeasureError::Timeout("the DKG's end"));
        }
        tokio::time::sleep(poll).await;
    };
    let quorum_key = quorum
        .members
        .iter()
        .flatten()
        .find_map(|m| m.status.borrow().quorum_key)
        .ok_or(MeasureError::Timeout("a quorum key"))?;
    let mut client = Client::ephemeral()?;
    let discover = Request::Discover {
        quorum_key,
        limit: 0,
        cookie: None,
    };
    let listed = loop {
        let answer = client
            .request(&addrs[0], discover.clone(), Duration::from_secs(5))
            .await?;
        if let Response::Discovered(a) = answer {
            if a.peers.len() == members as usize {
                break Instant::now();
            }
        }
        if Instant::now() > deadline {
            return Err(MeasureError::Timeout("every member discoverable"));
        }
        tokio::time::sleep(poll).await;
    };
    // Verified once, as a client would.
    let verified = client
        .discover(&addrs[0], quorum_key, Duration::from_secs(10))
        .await?;
    if verified.peers.len() != members as usize || !verified.rejected.is_empty() {
        return Err(MeasureError::Incomplete {
            expected: members as usize,
            verified: verified.peers.len(),
            rejected: verified.rejected.len(),
        });
    }
    for m in quorum.members.into_iter().flatten() {
        m.kill();
    }
    for n in nodes {
        n.kill();
    }
    Ok(Discoverable {
        members,
        threshold,
        rendezvous,
        dkg_s: dkg_done.duration_since(started).as_secs_f64(),
        discoverable_after_dkg_s: listed.duration_since(dkg_done).as_secs_f64(),
    })
}
