//! The fault scenarios of #16 on a network-namespace testbed: real `rdht`
//! processes (three rendezvous nodes, a quorum of four, a client), each in
//! its own namespace, linked by `rdht-netem`. Each test prints its
//! figures (`cargo test --release -p faults -- --nocapture`, or `just
//! faults`). They need root and network namespaces: elsewhere each says
//! why it was skipped, and passes. Two goals of #16 are measured along
//! the way: after a restart, a new record reaches the other replicas
//! within 5 s (`a_new_record_reaches_the_other_replicas_after_a_restart`),
//! and the metrics agree with the answers (each rendezvous node's
//! `rdht_reachable_peers` equals the members its answer lists, read
//! just before and after it). The scenarios in `UNFINISHED` run
//! only with `RDHT_FAULTS_ALL=1`. `RDHT_FAULTS_KEEP=1` keeps each
//! testbed's logs also when its test passes, and `RDHT_FAULTS_LOG` sets
//! the processes' `RUST_LOG` (`faults::testbed`).

use std::time::{Duration, Instant};

use faults::net::{poll_each, Answer, Net, Sample, Settings};
use faults::testbed::unavailable;

const NETEM: &str = env!("CARGO_BIN_EXE_rdht-netem");
const DKG_WAIT: Duration = Duration::from_secs(90);
const LIST_WAIT: Duration = Duration::from_secs(60);
const ALL: [usize; 3] = [0, 1, 2];

/// Scenarios whose goals are not met yet or whose figures still vary
/// with the machine's load: run only with `RDHT_FAULTS_ALL=1`, so that CI
/// stays green. None now (BENCHMARKS.md, 2026-12-01): "lossy" was here
/// while its DKG took 17-72 s, because fellow members dialled each other
/// from their listen ports and every crossing pair of SYNs became a TCP
/// simultaneous open that Noise cannot use; with dials from new ports its
/// DKG takes about 3 s.
const UNFINISHED: &[&str] = &[];

/// The network of a scenario, or `None` (printed) where it cannot run.
fn network(tag: &str, settings: Settings) -> Option<Net> {
    if UNFINISHED.contains(&tag) && std::env::var_os("RDHT_FAULTS_ALL").is_none() {
        println!("faults {tag}: skipped: unfinished (goal missed or flaky), set RDHT_FAULTS_ALL=1");
        return None;
    }
    if let Some(why) = unavailable() {
        println!("faults {tag}: skipped: {why}");
        return None;
    }
    match Net::new(tag, std::path::Path::new(NETEM), settings) {
        Ok(net) => Some(net),
        Err(e) if e.contains("not built") => {
            println!("faults {tag}: skipped: {e}");
            None
        }
        Err(e) => panic!("testbed {tag}: {e}"),
    }
}

/// Starts the network and waits until every node lists every member.
fn started(net: &mut Net, tag: &str) -> Duration {
    let dkg = net.start(DKG_WAIT).expect("DKG");
    let listed = net
        .wait_listed(&ALL, 4, LIST_WAIT)
        .expect("every node lists the four members");
    println!(
        "faults {tag}: DKG {:.2} s; every node lists all 4 members {:.2} s later",
        dkg.as_secs_f64(),
        listed.as_secs_f64()
    );
    dkg
}

/// Waits until the metrics of every node in `nodes` agree with its
/// discover answer (#16: "the metrics agree with the answers"), within a
/// ping interval and 2 s (a change reaches the gauges within a second);
/// prints and returns the time until the last one did.
fn gauges_agree(net: &Net, tag: &str, when: &str, nodes: &[usize]) -> Duration {
    let deadline = net.settings.ping_interval + Duration::from_secs(2);
    match net.wait_gauges_agree(nodes, deadline) {
        Ok(each) => {
            let last = each.iter().copied().max().unwrap_or_default();
            println!(
                "faults {tag}: {when}: rdht_peers and rdht_reachable_peers agree with the \
                 answers of {} within {:.2} s",
                names(nodes),
                last.as_secs_f64()
            );
            last
        }
        Err(samples) => panic!("{tag}: {when}: the metrics disagree with the answers: {samples:?}"),
    }
}

/// `r1, r2` for `[0, 1]`.
fn names(nodes: &[usize]) -> String {
    let names: Vec<String> = nodes.iter().map(|i| format!("r{}", i + 1)).collect();
    names.join(", ")
}

fn evictions(net: &Net) -> usize {
    ALL.iter().map(|&i| net.unlisted_logged(i)).sum()
}

#[test]
fn baseline() {
    let Some(mut net) = network("base", Settings::default()) else {
        return;
    };
    started(&mut net, "baseline");
    gauges_agree(&net, "baseline", "listed", &ALL);
    let seen = completeness_at(&net, &ALL, Duration::from_secs(10));
    println!(
        "faults baseline: {}/{} discover answers complete, {} evictions; the metrics agreed \
         with {}/{} of them",
        seen.complete,
        seen.answers,
        evictions(&net),
        seen.answers - seen.disagreeing.len(),
        seen.answers
    );
    assert_eq!(seen.complete, seen.answers, "{:?}", seen.bad);
    assert_eq!(evictions(&net), 0);
    // Nothing changes any more: every answer agrees with the gauges
    // read just before and after it.
    assert!(seen.disagreeing.is_empty(), "{:?}", seen.disagreeing);
}

#[test]
fn delay_50ms_jitter_10ms_loss_5_percent() {
    let Some(mut net) = network("lossy", Settings::default()) else {
        return;
    };
    net.tb
        .netem("link * * delay=50 jitter=10 loss=0.05")
        .expect("netem");
    started(&mut net, "50ms+-10ms 5% loss");
    let seen = completeness_at(&net, &ALL, Duration::from_secs(60));
    let evicted = evictions(&net);
    println!(
        "faults 50ms+-10ms 5% loss: over 60 s {}/{} discover answers complete, {evicted} false \
         evictions",
        seen.complete, seen.answers
    );
    assert_eq!(seen.complete, seen.answers, "{:?}", seen.bad);
    assert_eq!(evicted, 0, "false evictions under delay and loss");
}

/// Cuts `r1` (10.99.0.1) from `others` for each duration, heals, and
/// measures the time until every node lists every member again.
fn cut_and_heal(tag: &str, others: &str) {
    let Some(mut net) = network(tag, Settings::default()) else {
        return;
    };
    started(&mut net, tag);
    let interval = net.settings.ping_interval;
    let r1 = net.ip("r1");
    let targets: Vec<String> = match others {
        "rendezvous" => vec![net.ip("r2"), net.ip("r3")],
        _ => vec!["*".to_owned()],
    };
    for secs in [30u64, 90] {
        for t in &targets {
            net.tb.netem(&format!("cut {r1} {t}")).expect("cut");
        }
        // The other nodes answer during the cut, completely.
        let during = completeness_at(&net, &[1, 2], Duration::from_secs(secs));
        for t in &targets {
            net.tb.netem(&format!("heal {r1} {t}")).expect("heal");
        }
        let healed_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let each = net
            .wait_listed_each(&ALL, 4, LIST_WAIT)
            .expect("every node lists every member again after the heal");
        let relisted = each.iter().copied().max().unwrap_or_default();
        gauges_agree(&net, tag, &format!("{secs} s cut healed"), &ALL);
        let each: Vec<String> = each
            .iter()
            .map(|d| format!("{:.2}", d.as_secs_f64()))
            .collect();
        println!(
            "faults {tag} {secs} s: during the cut {}/{} answers of r2 and r3 complete (the \
             metrics agreed with {}); healed at {:.3} (Unix s); every node lists all 4 members \
             again within {:.2} s (r1, r2, r3: {} s; goal: ping interval {:.0} s + 1 s); records \
             lost: 0",
            during.complete,
            during.answers,
            during.answers - during.disagreeing.len(),
            healed_at.as_secs_f64(),
            relisted.as_secs_f64(),
            each.join(", "),
            interval.as_secs_f64()
        );
        assert_eq!(
            during.complete, during.answers,
            "r2/r3 during the cut: {:?}",
            during.bad
        );
        // The goal (one interval + 1 s), and 1 s for the polling: each
        // discover is a new client process with its own handshake.
        assert!(
            relisted <= interval + Duration::from_secs(2),
            "re-listing took {relisted:?}"
        );
    }
}

/// What the discovers of [`completeness_at`] saw.
struct Completeness {
    /// Answers asked for.
    answers: usize,
    /// Answers that listed all four members.
    complete: usize,
    /// The incomplete or failed answers.
    bad: Vec<Answer>,
    /// The answers whose node's gauges, read just before and after,
    /// did not agree with them ([`Sample::agrees`]), with the node.
    disagreeing: Vec<(usize, Sample)>,
}

/// Discovers at `nodes` in turn for `duration`, each between two reads
/// of the node's gauges.
fn completeness_at(net: &Net, nodes: &[usize], duration: Duration) -> Completeness {
    let started = Instant::now();
    let mut seen = Completeness {
        answers: 0,
        complete: 0,
        bad: Vec::new(),
        disagreeing: Vec::new(),
    };
    let mut i = 0;
    while started.elapsed() < duration {
        let node = nodes[i % nodes.len()];
        let sample = net.sample(node, Duration::from_secs(10));
        seen.answers += 1;
        if sample.answer.count() == 4 {
            seen.complete += 1;
        } else {
            seen.bad.push(sample.answer.clone());
        }
        if !sample.agrees() {
            seen.disagreeing.push((node, sample));
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    seen
}

#[test]
fn one_rendezvous_cut_from_the_other_rendezvous_nodes() {
    cut_and_heal("cut-rdv", "rendezvous");
}

#[test]
fn one_rendezvous_cut_from_everyone() {
    cut_and_heal("cut-all", "everyone");
}

/// One round of discovers at every running rendezvous node: whether
/// some node listed all four members, and how many answers failed.
fn round(net: &Net, running: &[bool]) -> (bool, usize) {
    let (mut some, mut failed) = (false, 0);
    for i in ALL.iter().copied().filter(|&i| running[i]) {
        match net.discover(i, Duration::from_secs(10)) {
            Answer::Listed(v) if v.len() == 4 => some = true,
            Answer::Listed(_) => {}
            Answer::Failed(_) => failed += 1,
        }
    }
    (some, failed)
}

#[test]
fn sigkill_and_restart_of_a_rendezvous_and_of_a_member() {
    let Some(mut net) = network("kill", Settings::default()) else {
        return;
    };
    started(&mut net, "kill");
    // r1, the node started without --bootstrap, dies and comes back on
    // its data directory: it serves its records and rejoins the DHT.
    net.stop_rdv(0, libc::SIGKILL).expect("kill r1");
    net.start_rdv(0).expect("restart r1");
    let served = net
        .wait_listed(&[0], 4, LIST_WAIT)
        .expect("r1 serves every member after its restart");
    // Its log since the restart (the first run logged `No known peers`).
    let log = net.log_since("r1", "reloaded stored records");
    println!(
        "faults kill: r1 SIGKILLed and restarted: all 4 members served {:.2} s after the restart",
        served.as_secs_f64()
    );
    assert!(
        log.contains("rejoining through the rendezvous peers known before"),
        "r1 did not rejoin through its saved peers"
    );
    assert!(!log.contains("No known peers"), "r1 restarted alone");
    gauges_agree(&net, "kill", "r1 restarted", &[0]);
    // m2 dies: no longer listed anywhere (a true eviction, logged), then
    // restarts with its key share and is listed again everywhere.
    net.stop_member(1, libc::SIGKILL).expect("kill m2");
    let unlisted = net
        .wait_listed(&ALL, 3, LIST_WAIT)
        .expect("a dead member is no longer listed");
    gauges_agree(&net, "kill", "m2 dead", &ALL);
    net.start_member(1).expect("restart m2");
    let relisted = net
        .wait_listed(&ALL, 4, LIST_WAIT)
        .expect("the restarted member is listed again");
    gauges_agree(&net, "kill", "m2 restarted", &ALL);
    println!(
        "faults kill: m2 SIGKILLed: unlisted everywhere after {:.2} s; restarted: listed \
         everywhere again {:.2} s later",
        unlisted.as_secs_f64(),
        relisted.as_secs_f64()
    );
    assert!(
        evictions(&net) >= 3,
        "the dead member's eviction was not logged"
    );
}

/// Restarts r1, r2, r3 in turn with `signal`; between and during, polls
/// every running node: the quorum must be discoverable from some node
/// in every round.
fn rolling(tag: &str, signal: libc::c_int) {
    let Some(mut net) = network(tag, Settings::default()) else {
        return;
    };
    started(&mut net, tag);
    let (mut rounds, mut undiscoverable, mut failed) = (0, 0, 0);
    let mut longest = Duration::ZERO;
    for i in ALL {
        net.stop_rdv(i, signal).expect("stop");
        let mut running = [true; 3];
        running[i] = false;
        let (some, f) = round(&net, &running);
        rounds += 1;
        undiscoverable += usize::from(!some);
        failed += f;
        let restarted = Instant::now();
        net.start_rdv(i).expect("restart");
        loop {
            let (some, f) = round(&net, &[true; 3]);
            rounds += 1;
            undiscoverable += usize::from(!some);
            failed += f;
            if net.discover(i, Duration::from_secs(10)).count() == 4 {
                break;
            }
            assert!(
                restarted.elapsed() < LIST_WAIT,
                "r{} never served again",
                i + 1
            );
        }
        longest = longest.max(restarted.elapsed());
    }
    println!(
        "faults {tag}: rolling restart of r1, r2, r3: {rounds} rounds, the quorum undiscoverable \
         from every node in {undiscoverable}; {failed} answers failed (restarting node); each \
         node served all 4 again at most {:.2} s after its restart",
        longest.as_secs_f64()
    );
    assert_eq!(undiscoverable, 0);
}

#[test]
fn rolling_restart_with_sigterm() {
    rolling("roll-term", libc::SIGTERM);
}

#[test]
fn rolling_restart_with_sigkill() {
    rolling("roll-kill", libc::SIGKILL);
}

#[test]
fn partition_during_registration() {
    let Some(mut net) = network("reg", Settings::default()) else {
        return;
    };
    // m4 cannot reach r1 while the quorum forms and registers.
    let (r1, m4) = (net.ip("r1"), net.ip("m4"));
    net.tb.netem(&format!("cut {r1} {m4}")).expect("cut");
    let dkg = net.start(DKG_WAIT).expect("DKG");
    let others = net
        .wait_listed(&[1, 2], 4, LIST_WAIT)
        .expect("r2 and r3 list all four");
    std::thread::sleep(Duration::from_secs(20));
    let during = net.discover(0, Duration::from_secs(10));
    net.tb.netem(&format!("heal {r1} {m4}")).expect("heal");
    let healed = net
        .wait_listed(&ALL, 4, LIST_WAIT)
        .expect("every node lists all four after the heal");
    println!(
        "faults registration partition: DKG {:.2} s; r2, r3 list all 4 {:.2} s later; r1 during \
         the cut: {during:?}; after the heal every node lists all 4 within {:.2} s",
        dkg.as_secs_f64(),
        others.as_secs_f64(),
        healed.as_secs_f64()
    );
    let interval = net.settings.ping_interval;
    assert!(healed <= interval + Duration::from_secs(2), "{healed:?}");
}

/// The goal of #16 for restarts: "after any restart, a new record
/// reaches the other replicas within 5 s".
const NEW_RECORD_GOAL: Duration = Duration::from_secs(5);

/// r1, the node started without `--bootstrap`, restarts on its data
/// directory (SIGKILL, then SIGTERM); each time m1 then restarts with r1
/// as its only `--rendezvous` and registers a new record (a new seq),
/// which reaches r2 and r3 only through r1 (replication). Measures the
/// time from m1's start until r2 and r3 answer with the new record. (A
/// cut between m1 and r2, r3 would not do: their liveness pings would
/// fail too. Before the rendezvous peers were saved, r1 came back with
/// an empty routing table and r2, r3 served the old record for 40 s
/// and more.)
#[test]
fn a_new_record_reaches_the_other_replicas_after_a_restart() {
    let tag = "restart";
    let Some(mut net) = network(tag, Settings::default()) else {
        return;
    };
    started(&mut net, tag);
    net.member_rendezvous(0, &[0]).expect("m1 with r1 only");
    for (signal, name) in [(libc::SIGKILL, "SIGKILL"), (libc::SIGTERM, "SIGTERM")] {
        net.stop_rdv(0, signal).expect("stop r1");
        net.start_rdv(0).expect("restart r1");
        let served = net
            .wait_listed(&[0], 4, LIST_WAIT)
            .expect("r1 serves every member after its restart");
        // m1's record as every node holds it now.
        let old = seq_of(&net, &ALL, 1);
        net.stop_member(0, libc::SIGKILL).expect("kill m1");
        net.start_member(0).expect("restart m1 with r1 only");
        // Each node's answer with the new record: (seq, members listed).
        let mut with_new = [(0u64, 0usize); 3];
        let reached = poll_each(&ALL, LIST_WAIT, |i| {
            let listed = net
                .discover_listings(i, Duration::from_secs(10))
                .unwrap_or_default();
            match listed.iter().find(|l| l.index == 1) {
                Some(l) if l.seq > old => {
                    with_new[i] = (l.seq, listed.len());
                    true
                }
                _ => false,
            }
        })
        .unwrap_or_else(|nodes| {
            panic!(
                "{name}: m1's new record never reached {} (old seq {old}): {}",
                names(&nodes),
                nodes
                    .iter()
                    .map(|&i| format!("{:?}", net.discover_listings(i, Duration::from_secs(10))))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        });
        // m1 registered at r1 alone: r2 and r3 had it through r1.
        let registered: Vec<String> = net
            .log_since("m1", "listening on")
            .lines()
            .filter(|l| l.contains("registered"))
            .map(str::to_owned)
            .collect();
        assert!(
            registered.iter().any(|l| l.contains(&net.rdv[0].peer_id))
                && !registered
                    .iter()
                    .any(|l| l.contains(&net.rdv[1].peer_id) || l.contains(&net.rdv[2].peer_id)),
            "{name}: m1 did not register at r1 alone: {registered:?}"
        );
        let others = reached[1].max(reached[2]);
        println!(
            "faults {tag}: r1 {name}ed and restarted (served all 4 members {:.2} s later); m1 \
             restarted with r1 only: its new record (seq {old} -> {}) served by r1 {:.2} s, by r2 \
             {:.2} s, by r3 {:.2} s after m1's start: at the other replicas within {:.2} s \
             (goal {:.0} s); members listed with it (r1, r2, r3): {}, {}, {}",
            served.as_secs_f64(),
            with_new[0].0,
            reached[0].as_secs_f64(),
            reached[1].as_secs_f64(),
            reached[2].as_secs_f64(),
            others.as_secs_f64(),
            NEW_RECORD_GOAL.as_secs_f64(),
            with_new[0].1,
            with_new[1].1,
            with_new[2].1,
        );
        // Records lost: none; the answer with the new record lists the
        // three other members too, at every node.
        assert_eq!(with_new.map(|(_, n)| n), [4; 3], "{name}: records lost");
        assert!(
            others <= NEW_RECORD_GOAL,
            "{name}: the new record took {others:?} to reach r2 and r3"
        );
    }
}

/// The highest seq of member `index`'s record that `nodes` answer with
/// (each must list it).
fn seq_of(net: &Net, nodes: &[usize], index: u64) -> u64 {
    nodes
        .iter()
        .map(|&i| {
            net.discover_listings(i, Duration::from_secs(10))
                .expect("discover")
                .iter()
                .find(|l| l.index == index)
                .map(|l| l.seq)
                .unwrap_or_else(|| panic!("r{} does not list member {index}", i + 1))
        })
        .max()
        .unwrap_or_default()
}
