//! One member's CPU for a full DKG with n = 64, threshold = 43.
//!
//! Setup (not measured) runs the whole DKG in process once and records
//! every message member 64 receives. Each iteration then replays them into
//! a fresh member 64 (same RNG seed, so its own deal, and therefore every
//! recorded response, is the same): dealing its polynomial, checking 63
//! deals and shares, 63 responses, and finishing. The target is 50 ms.
//! (Member 64 rather than 1: deriving `PK_i` costs a few doublings per
//! commitment for a large index and nothing for index 1.)
//!
//! - `dkg/one_member_n64_t43`: messages handed over as decoded structs.
//! - `dkg/one_member_n64_t43_with_decode`: the same from bytes, including
//!   `DkgMessage::decode` (63 x 44 uncompressed deal points, checked on the
//!   curve but not for the subgroup: the DKG checks the 43 summed
//!   commitments).
//! - `dkg/deal_points_{checked,unchecked,uncompressed}`: decoding those
//!   2,772 points alone, as `PublicKey::from_bytes` (decompression and
//!   subgroup check: the first DKG decoder), `CommitmentPoint::from_bytes`
//!   (decompression and on-curve: wire version 1) and
//!   `CommitmentPoint::from_uncompressed` (curve equation only: wire
//!   version 2, what deals carry now), for ratios measured in one run.
//!
//! Criterion reports wall time, and blst runs multi-exponentiations on a
//! thread pool; so before the criterion runs, the process CPU time (all
//! threads, from `/proc/self/task/*/schedstat`) of a few replays is
//! printed too.

use std::collections::VecDeque;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use dkg::{CommitmentPoint, Destination, DkgConfig, DkgMember, DkgMessage, Phase, PublicKey};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

const N: u32 = 64;
const THRESHOLD: u32 = 43;
const ME: u32 = 64;

fn config(index: u32) -> DkgConfig {
    let members: Vec<Vec<u8>> = (1..=N).map(|i| format!("peer-{i}").into_bytes()).collect();
    DkgConfig::new(&members, THRESHOLD, b"bench", index, 60_000).expect("valid config")
}

fn member(index: u32) -> DkgMember {
    let mut rng = ChaCha20Rng::seed_from_u64(u64::from(index));
    DkgMember::new(config(index), 0, &mut rng)
}

/// Runs the DKG for all members with instant delivery; returns what
/// member `ME` received, in order.
fn record() -> Vec<(u32, DkgMessage)> {
    let mut members: Vec<DkgMember> = (1..=N).map(member).collect();
    let mut queue: VecDeque<(u32, u32, DkgMessage)> = VecDeque::new();
    let mut received = Vec::new();
    loop {
        for (position, m) in members.iter_mut().enumerate() {
            let from = position as u32 + 1;
            while let Some(t) = m.poll_transmit() {
                match t.to {
                    Destination::Member(to) => queue.push_back((from, to, t.message)),
                    Destination::All => {
                        for to in (1..=N).filter(|&to| to != from) {
                            queue.push_back((from, to, t.message.clone()));
                        }
                    }
                }
            }
        }
        let Some((from, to, message)) = queue.pop_front() else {
            break;
        };
        if to == ME {
            received.push((from, message.clone()));
        }
        members[to as usize - 1]
            .handle_message(0, from, message)
            .expect("honest message accepted");
    }
    assert!(members.iter().all(|m| m.phase() == Phase::Finished));
    received
}

fn replay(messages: Vec<(u32, DkgMessage)>) -> DkgMember {
    let mut m = member(ME);
    for (from, message) in messages {
        m.handle_message(0, from, message)
            .expect("recorded message accepted");
    }
    while m.poll_transmit().is_some() {}
    assert!(matches!(m.outcome(), Some(Ok(_))), "member finished");
    m
}

/// CPU time of every thread of this process so far, in nanoseconds
/// (Linux only; `None` elsewhere).
fn process_cpu_ns() -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

fn print_cpu(label: &str, runs: u32, mut f: impl FnMut()) {
    let Some(before) = process_cpu_ns() else {
        return;
    };
    for _ in 0..runs {
        f();
    }
    if let Some(after) = process_cpu_ns() {
        let ms = (after - before) as f64 / f64::from(runs) / 1e6;
        println!("{label}: {ms:.1} ms CPU (all threads, mean of {runs})");
    }
}

fn decode_all(encoded: &[(u32, Vec<u8>)]) -> Vec<(u32, DkgMessage)> {
    encoded
        .iter()
        .map(|(from, bytes)| (*from, DkgMessage::decode(bytes).expect("decodes")))
        .collect()
}

/// The compressed points (commitments and proof nonce) of every deal
/// member `ME` receives.
fn deal_points(messages: &[(u32, DkgMessage)]) -> Vec<[u8; dkg::G1_BYTES]> {
    messages
        .iter()
        .filter_map(|(_, m)| match m {
            DkgMessage::Deal(deal) => Some(deal),
            _ => None,
        })
        .flat_map(|deal| {
            deal.commitments
                .points()
                .iter()
                .chain([&deal.proof.commitment])
                .map(CommitmentPoint::to_bytes)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn decode_checked(points: &[[u8; dkg::G1_BYTES]]) -> usize {
    points
        .iter()
        .filter(|p| PublicKey::from_bytes(&p[..]).is_ok())
        .count()
}

/// blst's decompression alone, the floor of any decoder of these bytes.
fn decompress_only(points: &[[u8; dkg::G1_BYTES]]) -> usize {
    points
        .iter()
        .filter(|p| {
            Option::<blstrs::G1Affine>::from(blstrs::G1Affine::from_compressed_unchecked(p))
                .is_some()
        })
        .count()
}

fn decode_unchecked(points: &[[u8; dkg::G1_BYTES]]) -> usize {
    points
        .iter()
        .filter(|p| CommitmentPoint::from_bytes(&p[..]).is_ok())
        .count()
}

fn decode_uncompressed(points: &[[u8; dkg::G1_UNCOMPRESSED_BYTES]]) -> usize {
    points
        .iter()
        .filter(|p| CommitmentPoint::from_uncompressed(&p[..]).is_ok())
        .count()
}

fn bench(c: &mut Criterion) {
    let messages = record();
    assert_eq!(messages.len(), 3 * (N as usize - 1));
    let encoded: Vec<(u32, Vec<u8>)> = messages
        .iter()
        .map(|(from, m)| (*from, m.encode()))
        .collect();
    let points = deal_points(&messages);
    assert_eq!(points.len(), (N as usize - 1) * (THRESHOLD as usize + 1));
    assert_eq!(decode_checked(&points), points.len());
    assert_eq!(decode_unchecked(&points), points.len());
    let uncompressed: Vec<[u8; dkg::G1_UNCOMPRESSED_BYTES]> = points
        .iter()
        .map(|p| {
            CommitmentPoint::from_bytes(p)
                .expect("decodes")
                .to_uncompressed()
        })
        .collect();
    assert_eq!(decode_uncompressed(&uncompressed), points.len());

    print_cpu("one member, handle_* only", 20, || {
        replay(messages.clone());
    });
    print_cpu("one member, decode only", 5, || {
        decode_all(&encoded);
    });
    print_cpu("one member, decode + handle_*", 5, || {
        replay(decode_all(&encoded));
    });
    let label = format!("{} deal points, checked decode (before)", points.len());
    print_cpu(&label, 3, || {
        decode_checked(&points);
    });
    let label = format!(
        "{} deal points, unchecked compressed decode (v1)",
        points.len()
    );
    print_cpu(&label, 3, || {
        decode_unchecked(&points);
    });
    let label = format!("{} deal points, uncompressed decode (now)", points.len());
    print_cpu(&label, 3, || {
        decode_uncompressed(&uncompressed);
    });
    let label = format!("{} deal points, blst decompression alone", points.len());
    print_cpu(&label, 3, || {
        decompress_only(&points);
    });

    let mut group = c.benchmark_group("dkg");
    group.sample_size(20);
    group.bench_function("one_member_n64_t43", |b| {
        b.iter_batched(|| messages.clone(), replay, BatchSize::LargeInput)
    });
    group.bench_function("one_member_n64_t43_with_decode", |b| {
        b.iter(|| replay(decode_all(&encoded)))
    });
    group.sample_size(10);
    group.bench_function("deal_points_checked", |b| {
        b.iter(|| decode_checked(&points))
    });
    group.bench_function("deal_points_unchecked", |b| {
        b.iter(|| decode_unchecked(&points))
    });
    group.bench_function("deal_points_uncompressed", |b| {
        b.iter(|| decode_uncompressed(&uncompressed))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
