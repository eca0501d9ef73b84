//! What the rendezvous core costs the swarm's task per refresh: the part
//! of one `RegisterPeer` of a seated member that runs on the event loop
//! (`handle_request`, the batch going out, `handle_verified`, the reply
//! and the other outputs), without the network stack and without the
//! verification job, which a node runs on its verification threads (run
//! here too, outside the timed part). Beside it, in the same run, the
//! job alone: one batch's Ed25519 checks per record.
//!
//! `rdht-bench bench` measures the whole server; this isolates the core,
//! so that a change to the store or the server is measured on one core,
//! away from the load generator and the kernel.
//!
//! Run: `cargo bench -p benches --bench server`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dht::{
    AddressPolicy, NamespaceStore, Output, ReplyId, Server, ServerConfig, StoreConfig, VerifyJob,
};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::{PeerRecord, Request, Response};

const NOW: u64 = 1_700_000_000_000;
const HOUR: u64 = 3_600_000;
const MEMBERS: u32 = 32;
/// Refreshes per member signed ahead (the pool is replayed on a fresh
/// server when it runs out).
const REFRESHES: u64 = 64;
/// Requests handled before each batch is sent out (the batch a node
/// under the `refresh` load of `rdht-bench bench` sends: about 2 ms of
/// requests at a few thousand a second).
const BURST: usize = 8;

struct Fixture {
    quorum: TestQuorum,
    /// Member `i`'s first record (seq 1) at `firsts[i - 1]`.
    firsts: Vec<PeerRecord>,
    /// Refreshes, round-robin over the members, seq increasing.
    refreshes: Vec<PeerRecord>,
}

fn fixture() -> Fixture {
    let quorum = TestQuorum::deal(
        MEMBERS,
        MEMBERS * 2 / 3 + 1,
        &mut ChaCha20Rng::seed_from_u64(7),
    );
    let firsts: Vec<PeerRecord> = (1..=MEMBERS)
        .map(|i| quorum.peer(i, 1, 1, NOW + HOUR))
        .collect();
    let mut refreshes = Vec::new();
    for seq in 2..2 + REFRESHES {
        for first in &firsts {
            let index = first.index() as usize;
            refreshes.push(PeerRecord::sign(
                first.seat.clone(),
                first.addrs().to_vec(),
                seq,
                NOW + HOUR,
                &quorum.identities[index - 1],
            ));
        }
    }
    Fixture {
        quorum,
        firsts,
        refreshes,
    }
}

/// The node's configuration, dialling loopback (the records list
/// 127.0.0.1) and sending a batch once `BURST` records wait.
fn config() -> ServerConfig {
    ServerConfig {
        dial_policy: AddressPolicy::LOCAL,
        min_batch: BURST,
        ..ServerConfig::default()
    }
}

fn run(job: VerifyJob, rng: &mut ChaCha20Rng) -> dht::VerifyDone {
    job.run(rng, None)
}

/// Drains the outputs, counting replies; returns the jobs.
fn drain(s: &mut Server, replies: &mut usize) -> Vec<VerifyJob> {
    let mut jobs = Vec::new();
    while let Some(output) = s.poll_output() {
        match output {
            Output::Verify(job) => jobs.push(job),
            Output::Reply { response, .. } => {
                assert!(
                    matches!(
                        response,
                        Response::Registered { .. } | Response::RegisteredPeers(_)
                    ),
                    "{response:?}"
                );
                *replies += 1;
            }
            _ => {}
        }
    }
    jobs
}

/// A server holding the namespace and every member's first record.
fn seated_server(f: &Fixture, rng: &mut ChaCha20Rng) -> Server {
    let mut s = Server::new(
        config(),
        NamespaceStore::new(StoreConfig::default(), [5; 32]),
    );
    let ns = f
        .quorum
        .namespace(1, Some("bench"), NOW - 1_000, NOW + 2 * HOUR);
    s.handle_request(
        NOW,
        f.quorum.peer_id(1),
        ReplyId(u64::MAX),
        Request::RegisterNamespace(ns),
    );
    let mut replies = 0;
    settle(&mut s, &mut replies, rng);
    for (i, first) in f.firsts.iter().enumerate() {
        s.handle_request(
            NOW,
            first.peer_id(),
            ReplyId(i as u64),
            Request::RegisterPeer(first.clone()),
        );
    }
    settle(&mut s, &mut replies, rng);
    assert_eq!(replies, f.firsts.len() + 1, "the fixture was not accepted");
    s
}

/// Sends everything queued to verification and runs the jobs until no
/// output is left.
fn settle(s: &mut Server, replies: &mut usize, rng: &mut ChaCha20Rng) {
    s.flush(NOW);
    loop {
        let jobs = drain(s, replies);
        if jobs.is_empty() {
            return;
        }
        for job in jobs {
            let done = run(job, rng);
            s.handle_verified(NOW, done);
        }
    }
}

/// Runs `iters` refreshes; returns the time spent in the core (and, if
/// `jobs_time` is given, adds the verification jobs' time to it).
fn refreshes(
    f: &Fixture,
    iters: u64,
    rng: &mut ChaCha20Rng,
    jobs_time: Option<&mut Duration>,
) -> Duration {
    let mut core = Duration::ZERO;
    let mut s = seated_server(f, rng);
    let mut next = 0usize;
    let mut done = 0u64;
    let mut replies = 0usize;
    let mut reply_id = 1_000u64;
    let mut jobs_raw = Duration::ZERO;
    while done < iters {
        if next + BURST > f.refreshes.len() {
            s = seated_server(f, rng);
            next = 0;
        }
        let burst = BURST;
        let records: Vec<PeerRecord> = f.refreshes[next..next + burst].to_vec();
        next += burst;
        let t = Instant::now();
        for record in records {
            reply_id += 1;
            s.handle_request(
                NOW,
                record.peer_id(),
                ReplyId(reply_id),
                Request::RegisterPeer(record),
            );
        }
        // The burst fills a batch, which goes out at once.
        let mut jobs = drain(&mut s, &mut replies);
        core += t.elapsed();
        assert!(!jobs.is_empty(), "a full batch did not go out");
        while !jobs.is_empty() {
            let mut verdicts = Vec::new();
            let j = Instant::now();
            for job in jobs {
                verdicts.push(run(job, rng));
            }
            jobs_raw += j.elapsed();
            let t = Instant::now();
            for verdict in verdicts {
                s.handle_verified(NOW, verdict);
            }
            jobs = drain(&mut s, &mut replies);
            core += t.elapsed();
        }
        done += burst as u64;
    }
    assert_eq!(replies as u64, done, "a refresh was not answered");
    // Whole bursts ran: `done` >= `iters` refreshes.
    let scale = iters as f64 / done as f64;
    if let Some(total) = jobs_time {
        *total += jobs_raw.mul_f64(scale);
    }
    core.mul_f64(scale)
}

fn refresh(c: &mut Criterion) {
    let f = fixture();
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let mut g = c.benchmark_group("server");
    g.throughput(Throughput::Elements(1));
    g.bench_function("refresh_event_loop_part", |b| {
        b.iter_custom(|iters| refreshes(&f, iters, &mut rng, None))
    });
    g.bench_function("refresh_verification_job", |b| {
        b.iter_custom(|iters| {
            let mut jobs = Duration::ZERO;
            refreshes(&f, iters, &mut rng, Some(&mut jobs));
            jobs
        })
    });
    g.finish();
}

criterion_group!(benches, refresh);
criterion_main!(benches);
