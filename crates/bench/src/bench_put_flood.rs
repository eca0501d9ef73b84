//! `rdht-bench put-flood`: discover latency and honest refreshes at an
//! `rdht rendezvous` node while a peer floods it with junk Kademlia PUTs
//! (#13 item 1's figure).
//!
//! The node runs as a child process (the production `rdht` binary). A
//! quorum dealt by the testkit registers its namespace and members. Then
//! two phases of `--duration` each, the same load in both: a prober times
//! a discover every 10 ms (on a thread and runtime of its own), and the
//! members refresh their records (a `RegisterPeer` with the next seq,
//! 20 a second in all). In the second phase a flooder
//! ([`node::flood::flood_puts`]) also sends kind indexes of 256 distinct
//! junk namespace records (valid points, another record's signature), as
//! many PUTs in flight as `--in-flight`, under a fresh identity every
//! `--fresh-identity-every` PUTs (a Sybil whose every identity starts
//! with a full budget). Everything but the node runs in this process, on
//! the same machine: the flooder's own CPU is part of the load.
//!
//! A third phase, between the two, measures the machine's floor: the same
//! flood aimed at a second `rdht rendezvous` on this machine, while the
//! prober and the refreshes keep going at the first. Whatever the flood
//! costs the first node beyond that floor is its own doing.

use std::time::{Duration, Instant};

use node::behaviour::now_ms;
use node::discover::Client;
use node::flood::{flood_puts, FloodConfig};
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::{NamespaceRecord, PeerRecord, Request, Response};
use serde::Serialize;

use crate::bench::{percentile, spawn_discover_prober, BenchError, Phase, ServerProcess};

/// What to run.
#[derive(Debug, Clone)]
pub struct PutFloodConfig {
    /// The `rdht` binary.
    pub rdht_exe: std::path::PathBuf,
    /// Length of each phase.
    pub duration: Duration,
    /// Members of the quorum.
    pub members: u32,
    /// PUTs the flooder keeps in flight.
    pub in_flight: usize,
    /// A fresh flooder identity every this many PUTs (0: one identity).
    pub fresh_identity_every: u64,
}

/// The figures of one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PutFloodFigures {
    /// Seconds per phase.
    pub duration_s: f64,
    /// Discover answers timed without the flood, and their p50/p99 (ms).
    pub quiet_discovers: usize,
    /// p50 without the flood (ms).
    pub quiet_p50_ms: f64,
    /// p99 without the flood (ms).
    pub quiet_p99_ms: f64,
    /// Discover answers timed during the flood.
    pub flood_discovers: usize,
    /// p50 during the flood (ms).
    pub flood_p50_ms: f64,
    /// p99 during the flood (ms).
    pub flood_p99_ms: f64,
    /// Slowest answer during the flood (ms).
    pub flood_max_ms: f64,
    /// Discover answers timed while the flood went to another node.
    pub floor_discovers: usize,
    /// p50 while the flood went to another node (ms).
    pub floor_p50_ms: f64,
    /// p99 while the flood went to another node (ms).
    pub floor_p99_ms: f64,
    /// Slowest answer while the flood went to another node (ms).
    pub floor_max_ms: f64,
    /// Refreshes accepted / sent without the flood.
    pub quiet_refreshes_accepted: u64,
    /// Refreshes sent without the flood.
    pub quiet_refreshes_sent: u64,
    /// Refreshes accepted during the flood.
    pub flood_refreshes_accepted: u64,
    /// Refreshes sent during the flood.
    pub flood_refreshes_sent: u64,
    /// Junk PUTs sent, acknowledged by kad, and failed.
    pub puts_sent: u64,
    /// Junk PUTs kad acknowledged (it acknowledges before the node decides).
    pub puts_acknowledged: u64,
    /// Junk namespace records sent.
    pub junk_records_sent: u64,
    /// Bytes of junk values sent.
    pub junk_mb_sent: f64,
    /// Flooder identities used.
    pub identities: u64,
    /// The node's CPU seconds during each phase.
    pub quiet_node_cpu_s: f64,
    /// The node's CPU seconds during the flood.
    pub flood_node_cpu_s: f64,
    /// The probed node's CPU seconds while the flood went to another node.
    pub floor_node_cpu_s: f64,
}

/// Junk namespace records per PUT.
const JUNK_PER_PUT: u64 = 256;
/// Refreshes per second, all members together.
const REFRESH_RATE: u64 = 20;

/// A kind index of [`JUNK_PER_PUT`] distinct junk records, new for each
/// `salt`.
fn junk_value(junk: &NamespaceRecord, salt: u64) -> ([u8; 32], Vec<u8>) {
    let namespaces = (0..JUNK_PER_PUT)
        .map(|i| {
            let mut r = junk.clone();
            r.issued_at_ms = junk.issued_at_ms - salt * JUNK_PER_PUT - i;
            r
        })
        .collect();
    (
        dht::kind_key("bench"),
        dht::KindValue { namespaces }.encode(),
    )
}

/// Refreshes the members' records at [`REFRESH_RATE`] until `deadline`:
/// (accepted, sent).
async fn refresh(
    at: &libp2p::Multiaddr,
    members: &mut [(Client, Vec<PeerRecord>)],
    next: &mut usize,
    deadline: Instant,
) -> (u64, u64) {
    let (mut accepted, mut sent) = (0, 0);
    let every = Duration::from_millis(1_000 / REFRESH_RATE);
    let mut due = Instant::now();
    let count = members.len().max(1);
    while Instant::now() < deadline {
        let m = *next % count;
        let round = *next / count;
        *next += 1;
        let Some((client, records)) = members.get_mut(m) else {
            break;
        };
        let Some(record) = records.get(round).cloned() else {
            break;
        };
        sent += 1;
        let answer = client
            .request(at, Request::RegisterPeer(record), Duration::from_secs(10))
            .await;
        if matches!(answer, Ok(Response::Registered { .. })) {
            accepted += 1;
        }
        due += every;
        tokio::time::sleep_until(due.max(Instant::now()).into()).await;
    }
    (accepted, sent)
}

/// Runs the three phases and returns the figures.
pub async fn bench_put_flood(config: PutFloodConfig) -> Result<PutFloodFigures, BenchError> {
    if config.members == 0 {
        return Err("--members must be at least 1".into());
    }
    let node = || {
        ServerProcess::spawn(
            &config.rdht_exe,
            &[
                "rendezvous",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--exit-with-stdin",
            ],
            "warn,libp2p_kad=error",
        )
    };
    // The probed node, and the one the floor phase floods.
    let server = node()?;
    let at = server.addr.clone();
    let elsewhere = node()?;
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let quorum = TestQuorum::deal(config.members, config.members.div_ceil(2), &mut rng);
    let now = now_ms();
    let expires = now + 3_600_000;
    let mut client = Client::ephemeral().map_err(|e| e.to_string())?;
    let ns = quorum.namespace(0, Some("bench"), now, expires);
    match client
        .request(&at, Request::RegisterNamespace(ns), Duration::from_secs(10))
        .await
    {
        Ok(Response::Registered { .. }) => {}
        other => return Err(format!("namespace registration: {other:?}")),
    }
    // Every refresh of every phase, signed before anything is timed.
    let rounds = (3 * config.duration.as_secs() + 3) * REFRESH_RATE / u64::from(config.members) + 2;
    let mut members = Vec::new();
    for i in 1..=config.members {
        let identity = quorum.identities[i as usize - 1].clone();
        let records: Vec<PeerRecord> = (1..=rounds + 1)
            .map(|seq| quorum.peer(i, 0, seq, expires))
            .collect();
        let mut member = Client::new(identity).map_err(|e| e.to_string())?;
        let first = records.first().cloned().ok_or("no record")?;
        match member
            .request(&at, Request::RegisterPeer(first), Duration::from_secs(10))
            .await
        {
            Ok(Response::Registered { .. }) => {}
            other => return Err(format!("peer registration: {other:?}")),
        }
        members.push((member, records.into_iter().skip(1).collect::<Vec<_>>()));
    }
    let mut junk = quorum.namespace(1, Some("bench"), now, expires);
    junk.signature = quorum.namespace(2, Some("bench"), now, expires).signature;

    let mut figures = PutFloodFigures {
        duration_s: config.duration.as_secs_f64(),
        ..PutFloodFigures::default()
    };
    let mut next_refresh = 0usize;
    #[derive(Clone, Copy, PartialEq)]
    enum Flood {
        None,
        Elsewhere,
        Here,
    }
    for flooding in [Flood::None, Flood::Elsewhere, Flood::Here] {
        let start = Instant::now() + Duration::from_millis(500);
        let phase = Phase {
            start,
            deadline: start + config.duration,
        };
        let probe = spawn_discover_prober(
            phase,
            Duration::from_millis(10),
            at.clone(),
            quorum.quorum_key(),
        );
        tokio::time::sleep_until(start.into()).await;
        let cpu_before = server.cpu_s().unwrap_or(0.0);
        let target = match flooding {
            Flood::None => None,
            Flood::Elsewhere => Some(elsewhere.addr.clone()),
            Flood::Here => Some(at.clone()),
        };
        let flood = target.map(|target| {
            let junk = junk.clone();
            tokio::spawn(flood_puts(
                FloodConfig {
                    target,
                    duration: config.duration,
                    in_flight: config.in_flight,
                    fresh_identity_every: (config.fresh_identity_every > 0)
                        .then_some(config.fresh_identity_every),
                },
                move |salt| junk_value(&junk, salt),
            ))
        });
        let (accepted, sent) = refresh(&at, &mut members, &mut next_refresh, phase.deadline).await;
        let cpu = server.cpu_s().unwrap_or(0.0) - cpu_before;
        let mut latencies = probe.join().map_err(|_| "the prober panicked")?;
        latencies.sort_by(f32::total_cmp);
        if flooding == Flood::Elsewhere {
            if let Some(f) = flood {
                f.await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
            }
            figures.floor_discovers = latencies.len();
            figures.floor_p50_ms = percentile(&latencies, 0.5);
            figures.floor_p99_ms = percentile(&latencies, 0.99);
            figures.floor_max_ms = percentile(&latencies, 1.0);
            figures.floor_node_cpu_s = cpu;
        } else if flooding == Flood::Here {
            let stats = match flood {
                Some(f) => f
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?,
                None => Default::default(),
            };
            figures.flood_discovers = latencies.len();
            figures.flood_p50_ms = percentile(&latencies, 0.5);
            figures.flood_p99_ms = percentile(&latencies, 0.99);
            figures.flood_max_ms = percentile(&latencies, 1.0);
            figures.flood_refreshes_accepted = accepted;
            figures.flood_refreshes_sent = sent;
            figures.flood_node_cpu_s = cpu;
            figures.puts_sent = stats.puts_sent;
            figures.puts_acknowledged = stats.puts_acknowledged;
            figures.junk_records_sent = stats.puts_sent * JUNK_PER_PUT;
            figures.junk_mb_sent = stats.bytes_sent as f64 / 1e6;
            figures.identities = stats.identities;
        } else {
            figures.quiet_discovers = latencies.len();
            figures.quiet_p50_ms = percentile(&latencies, 0.5);
            figures.quiet_p99_ms = percentile(&latencies, 0.99);
            figures.quiet_refreshes_accepted = accepted;
            figures.quiet_refreshes_sent = sent;
            figures.quiet_node_cpu_s = cpu;
        }
    }
    Ok(figures)
}

/// The text report.
pub fn to_text(f: &PutFloodFigures) -> String {
    format!(
        "discover at one rdht rendezvous node, {:.0} s per phase\n  \
         quiet:  {} answers  p50 {:.3} ms  p99 {:.3} ms  refreshes {}/{} accepted  node CPU {:.2} s\n  \
         floor:  {} answers  p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms  (the flood at another node)  node CPU {:.2} s\n  \
         flood:  {} answers  p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms  refreshes {}/{} accepted  node CPU {:.2} s\n  \
         junk:   {} PUTs ({} acknowledged), {} junk namespace records, {:.1} MB, {} identities",
        f.duration_s,
        f.quiet_discovers,
        f.quiet_p50_ms,
        f.quiet_p99_ms,
        f.quiet_refreshes_accepted,
        f.quiet_refreshes_sent,
        f.quiet_node_cpu_s,
        f.floor_discovers,
        f.floor_p50_ms,
        f.floor_p99_ms,
        f.floor_max_ms,
        f.floor_node_cpu_s,
        f.flood_discovers,
        f.flood_p50_ms,
        f.flood_p99_ms,
        f.flood_max_ms,
        f.flood_refreshes_accepted,
        f.flood_refreshes_sent,
        f.flood_node_cpu_s,
        f.puts_sent,
        f.puts_acknowledged,
        f.junk_records_sent,
        f.junk_mb_sent,
        f.identities,
    )
}
