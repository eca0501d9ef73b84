//! `rdht-bench bench-discover`: discover latency for one namespace over
//! loopback, with and without the client's verification.
//!
//! One `rdht rendezvous` node runs in this process (the `node` library's
//! [`start_rendezvous_nodes`]); a quorum dealt by the testkit registers
//! its namespace and every member's record, then one long-lived client
//! connection times `requests` discover round trips and up to 200 more
//! that also verify every record. With `--standard`, the same namespace
//! is then discovered through the standard `/rendezvous/1.0.0` protocol
//! by libp2p-rendezvous's own client (PROTOCOL.md 16), on a long-lived
//! connection of its own swarm, `requests` times; that client verifies
//! every signed peer record as it decodes the answer, so its figure
//! compares with rdht's "round trip + verify".

use std::time::{Duration, Instant};

use node::behaviour::now_ms;
use node::demo::start_rendezvous_nodes;
use node::discover::Client;
use rendezvous_proto::{Request, Response};

use crate::error::MeasureError;

/// Times discover round trips for an `members`-member namespace over
/// loopback (one rendezvous node, one long-lived client connection) and
/// reports p50/p99, with and without the client's verification.
pub async fn bench_discover(
    members: u32,
    requests: usize,
    standard: bool,
) -> Result<String, MeasureError> {
    if members == 0 {
        return Err(MeasureError::Usage("--members must be at least 1"));
    }
    use rand_core::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let quorum =
        rendezvous_proto::testkit::TestQuorum::deal(members, members.div_ceil(2).max(1), &mut rng);
    // No pings during the run: the dealt records carry placeholder addresses.
    let nodes = start_rendezvous_nodes(1, Duration::from_secs(3600), 3).await?;
    let at = nodes[0].addr();
    let now = now_ms();
    let expires = now + 3_600_000;
    let quorum_key = quorum.quorum_key();
    let mut client = Client::ephemeral()?;
    let ns = quorum.namespace(0, Some("bench"), now, expires);
    match client
        .request(&at, Request::RegisterNamespace(ns), Duration::from_secs(10))
        .await?
    {
        Response::Registered { .. } => {}
        answer => {
            return Err(MeasureError::Unexpected {
                what: "namespace registration",
                answer: Box::new(answer),
            })
        }
    }
    for i in 1..=members {
        let identity = quorum.identities[i as usize - 1].clone();
        let mut member = Client::new(identity)?;
        // With the standard signed peer record, as members sign it.
        let identity = quorum.identities[i as usize - 1].clone();
        let record = quorum.peer(i, 0, 1, expires).with_standard(&identity);
        match member
            .request(&at, Request::RegisterPeer(record), Duration::from_secs(10))
            .await?
        {
            Response::Registered { .. } => {}
            answer => {
                return Err(MeasureError::Unexpected {
                    what: "peer registration",
                    answer: Box::new(answer),
                })
            }
        }
    }
    let request = Request::Discover {
        quorum_key,
        limit: 0,
        cookie: None,
    };
    // The standard clients (`--standard`), timed between rdht's requests.
    let namespace = quorum_key.to_hex();
    let mut raw = None;
    let mut stock = None;
    if standard {
        use crate::standard_discover::{RawClient, StockClient};
        raw = Some(RawClient::connect(&at, &namespace, members).await?);
        stock = Some(StockClient::connect(&at, &namespace, members).await?);
    }
    let mut raw_times = Vec::new();
    let mut stock_times = Vec::new();
    // Warm up the connection.
    for _ in 0..50 {
        client
            .request(&at, request.clone(), Duration::from_secs(5))
            .await?;
    }
    let mut round_trips = Vec::with_capacity(requests);
    let mut bytes = 0;
    for i in 0..requests {
        // The standard request goes before rdht's on odd turns, after it
        // on even ones, so that neither always follows the other.
        if let Some(raw) = raw.as_mut().filter(|_| i % 2 == 1) {
            raw_times.push(raw.discover().await?);
        }
        let t = Instant::now();
        let r = client
            .request(&at, request.clone(), Duration::from_secs(5))
            .await?;
        round_trips.push(t.elapsed());
        if let Some(raw) = raw.as_mut().filter(|_| i % 2 == 0) {
            raw_times.push(raw.discover().await?);
        }
        if let Response::Discovered(a) = &r {
            if a.peers.len() != members as usize {
                return Err(MeasureError::Incomplete {
                    expected: members as usize,
                    verified: a.peers.len(),
                    rejected: 0,
                });
            }
            bytes = Response::Discovered(a.clone()).encode().len();
        } else {
            return Err(MeasureError::Unexpected {
                what: "discover",
                answer: Box::new(r),
            });
        }
    }
    let mut verified = Vec::with_capacity(requests.min(200));
    for i in 0..requests.min(200) {
        if let Some(stock) = stock.as_mut().filter(|_| i % 2 == 1) {
            stock_times.push(stock.discover().await?);
        }
        let t = Instant::now();
        let a = client
            .discover(&at, quorum_key, Duration::from_secs(5))
            .await?;
        verified.push(t.elapsed());
        if let Some(stock) = stock.as_mut().filter(|_| i % 2 == 0) {
            stock_times.push(stock.discover().await?);
        }
        if a.peers.len() != members as usize || !a.rejected.is_empty() {
            return Err(MeasureError::Incomplete {
                expected: members as usize,
                verified: a.peers.len(),
                rejected: a.rejected.len(),
            });
        }
    }
    let pct = |v: &mut Vec<Duration>, p: f64| {
        v.sort();
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v.get(i).copied().unwrap_or_default()
    };
    let mut report = format!(
        "discover of a {members}-member namespace over loopback ({requests} requests, answer {bytes} bytes)\n  round trip:            p50 {:.3} ms  p99 {:.3} ms\n  round trip + verify:   p50 {:.3} ms  p99 {:.3} ms ({} requests)",
        pct(&mut round_trips, 0.5).as_secs_f64() * 1e3,
        pct(&mut round_trips, 0.99).as_secs_f64() * 1e3,
        pct(&mut verified, 0.5).as_secs_f64() * 1e3,
        pct(&mut verified, 0.99).as_secs_f64() * 1e3,
        verified.len(),
    );
    if standard {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
        let (r50, r99) = (pct(&mut round_trips, 0.5), pct(&mut round_trips, 0.99));
        let (v50, v99) = (pct(&mut verified, 0.5), pct(&mut verified, 0.99));
        let (s50, s99) = (pct(&mut raw_times, 0.5), pct(&mut raw_times, 0.99));
        let (k50, k99) = (pct(&mut stock_times, 0.5), pct(&mut stock_times, 0.99));
        report.push_str(&format!(
            "\n  standard /rendezvous/1.0.0, rdht's codec, no verify (interleaved with round trip): p50 {:.3} ms  p99 {:.3} ms ({} requests) = {:.2}x / {:.2}x\n  standard, libp2p-rendezvous's client, verifies (interleaved with round trip + verify): p50 {:.3} ms  p99 {:.3} ms ({} requests) = {:.2}x / {:.2}x",
            ms(s50),
            ms(s99),
            raw_times.len(),
            ratio(s50, r50),
            ratio(s99, r99),
            ms(k50),
            ms(k99),
            stock_times.len(),
            ratio(k50, v50),
            ratio(k99, v99),
        ));
    }
    for n in nodes {
        n.shutdown().await;
    }
    Ok(report)
}
