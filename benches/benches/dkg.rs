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
//! - `reshare/one_member_n64_t43`: the same for resharing (#14): a quorum
//!   of 64 with threshold 43 reshares to 64 with threshold 43, old member
//!   1 leaving and a newcomer joining. The measured node is `peer-64`,
//!   old member 64 and new member 63: it deals its old share and receives
//!   a new one, as the DKG member deals and receives. Its config (and the
//!   64 old `PK_d` it derives) is built inside the measurement.
//! - `reshare/new_only_member_n64_t43`: the newcomer, which deals nothing.
//! - `reshare/one_member_n64_t43_one_dealer_silent`: `peer-64` again, with
//!   old member 1 silent: QUAL misses one old member, so the new key set
//!   is interpolated from the first 43 of QUAL by multi-scalar
//!   multiplications (the slow path; the fast path is a plain sum, see
//!   `dkg::reshare`). Deadlines pass in virtual time.
//!
//! Criterion reports wall time, and blst runs multi-exponentiations on a
//! thread pool; so before the criterion runs, the process CPU time (all
//! threads, from `/proc/self/task/*/schedstat`) of a few replays is
//! printed too.

use std::collections::VecDeque;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use dkg::{
    CommitmentPoint, Destination, DkgConfig, DkgMember, DkgMessage, KeyShare, Participant, Phase,
    Polynomial, PublicKey, ReshareConfig, ReshareMember, ReshareOutput, SecretKeyShare,
};
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

/// What a resharing node was given, in order.
#[derive(Clone)]
#[allow(clippy::large_enum_variant)] // a bench input list, built once
enum Input {
    Message(Participant, DkgMessage),
    Timeout(u64),
}

/// The resharing's fixed inputs: both member lists and the old epoch.
struct Resharing {
    old_members: Vec<Vec<u8>>,
    new_members: Vec<Vec<u8>>,
    old_shares: Vec<KeyShare>,
}

impl Resharing {
    /// Old: `peer-1..=peer-64`; new: `peer-2..=peer-65`.
    fn new() -> Self {
        let name = |i: u32| format!("peer-{i}").into_bytes();
        let mut rng = ChaCha20Rng::seed_from_u64(4242);
        let polynomial = Polynomial::random(THRESHOLD, &mut rng);
        let key_set = polynomial.commitments().expect("non-zero coefficients");
        let old_shares = (1..=N)
            .map(|i| {
                let secret = SecretKeyShare::new(i, polynomial.evaluate(i)).expect("non-zero");
                KeyShare::new(N, key_set.clone(), secret).expect("consistent")
            })
            .collect();
        Self {
            old_members: (1..=N).map(name).collect(),
            new_members: (2..=N + 1).map(name).collect(),
            old_shares,
        }
    }

    /// Every node: old members, then the newcomer.
    fn nodes(&self) -> Vec<Vec<u8>> {
        let mut nodes = self.old_members.clone();
        nodes.extend(self.new_members.last().cloned());
        nodes
    }

    /// Node `identity`'s member, drawing from a seed of its own.
    fn member(&self, identity: &[u8]) -> ReshareMember {
        let config = ReshareConfig::new(
            &self.old_members,
            &self.old_shares[0].public_key_set,
            &self.new_members,
            THRESHOLD,
            b"bench",
            identity,
            60_000,
        )
        .expect("valid config");
        let old_share = config.me().old.map(|i| &self.old_shares[i as usize - 1]);
        let seed = identity.iter().map(|&b| u64::from(b)).sum::<u64>();
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        ReshareMember::new(config, old_share, 0, &mut rng).expect("own share")
    }

    /// Runs the resharing with instant delivery (and, once nothing is in
    /// flight, virtual time jumping to the next deadline), `silent` never
    /// sending anything; returns what each of `watched` was given, in
    /// order.
    fn record(&self, watched: &[&[u8]], silent: Option<&[u8]>) -> Vec<Vec<Input>> {
        let nodes = self.nodes();
        let mut members: Vec<ReshareMember> = nodes.iter().map(|id| self.member(id)).collect();
        let mut queue: VecDeque<(usize, Vec<u8>, DkgMessage)> = VecDeque::new();
        let mut received = vec![Vec::new(); watched.len()];
        loop {
            for (from, m) in members.iter_mut().enumerate() {
                while let Some(t) = m.poll_transmit() {
                    if Some(nodes[from].as_slice()) == silent {
                        continue;
                    }
                    let to: Vec<&[u8]> = match t.to {
                        Destination::Member(j) => m.config().new_member(j).into_iter().collect(),
                        Destination::All => m.config().others(),
                    };
                    for to in to {
                        queue.push_back((from, to.to_vec(), t.message.clone()));
                    }
                }
            }
            let Some((from, to, message)) = queue.pop_front() else {
                let Some(now) = members.iter().filter_map(|m| m.poll_deadline()).min() else {
                    break;
                };
                for (m, id) in members.iter_mut().zip(&nodes) {
                    if m.poll_deadline().is_some_and(|d| d <= now) {
                        if let Some(w) = watched.iter().position(|w| *w == id.as_slice()) {
                            received[w].push(Input::Timeout(now));
                        }
                        m.handle_timeout(now);
                    }
                }
                continue;
            };
            let to = nodes.iter().position(|id| *id == to).expect("a node");
            let places = members[to]
                .config()
                .participant(&nodes[from])
                .expect("a participant");
            if let Some(w) = watched.iter().position(|id| *id == nodes[to].as_slice()) {
                received[w].push(Input::Message(places, message.clone()));
            }
            // The leaving member refuses what it does not need.
            let _ = members[to].handle_message(0, places, message);
        }
        assert!(members.iter().all(|m| m.phase() == Phase::Finished));
        received
    }

    /// A fresh member `identity` given `inputs`; it must end with a share.
    fn replay(&self, identity: &[u8], inputs: Vec<Input>) -> ReshareMember {
        let mut m = self.member(identity);
        let mut now = 0;
        for input in inputs {
            match input {
                Input::Message(from, message) => m
                    .handle_message(now, from, message)
                    .expect("recorded message accepted"),
                Input::Timeout(at) => {
                    now = at;
                    m.handle_timeout(now);
                }
            }
        }
        while m.poll_transmit().is_some() {}
        assert!(
            matches!(m.take_outcome(), Some(Ok(ReshareOutput::NewShare(_)))),
            "member finished with a share"
        );
        m
    }
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

    let resharing = Resharing::new();
    let stays = format!("peer-{N}").into_bytes();
    let joins = format!("peer-{}", N + 1).into_bytes();
    let mut reshare_received = resharing.record(&[&stays, &joins], None).into_iter();
    let stays_messages = reshare_received.next().expect("watched");
    let joins_messages = reshare_received.next().expect("watched");
    let silent = b"peer-1".to_vec();
    let slow_messages = resharing
        .record(&[&stays], Some(&silent))
        .pop()
        .expect("watched");
    // Same run, side by side: the DKG member, then the resharing ones.
    print_cpu("dkg: one member, handle_* only", 20, || {
        replay(messages.clone());
    });
    print_cpu(
        "reshare: one member (deals and receives), handle_* only",
        20,
        || {
            resharing.replay(&stays, stays_messages.clone());
        },
    );
    print_cpu(
        "reshare: newcomer (receives only), handle_* only",
        20,
        || {
            resharing.replay(&joins, joins_messages.clone());
        },
    );
    print_cpu(
        "reshare: one member, one old dealer silent (slow path)",
        10,
        || {
            resharing.replay(&stays, slow_messages.clone());
        },
    );

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

    let mut group = c.benchmark_group("reshare");
    group.sample_size(20);
    group.bench_function("one_member_n64_t43", |b| {
        b.iter_batched(
            || stays_messages.clone(),
            |m| resharing.replay(&stays, m),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("new_only_member_n64_t43", |b| {
        b.iter_batched(
            || joins_messages.clone(),
            |m| resharing.replay(&joins, m),
            BatchSize::LargeInput,
        )
    });
    group.sample_size(10);
    group.bench_function("one_member_n64_t43_one_dealer_silent", |b| {
        b.iter_batched(
            || slow_messages.clone(),
            |m| resharing.replay(&stays, m),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
