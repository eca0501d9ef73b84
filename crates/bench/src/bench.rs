//! `rdht-bench bench`: registration throughput under load, side by side
//! with rust-libp2p's own rendezvous server.
//!
//! One run measures two servers, one after the other, each started as a
//! child process (so that its CPU time and peak memory are its own):
//!
//! - **ours**: `rdht rendezvous` on 127.0.0.1, run from the production
//!   `rdht` binary ([`BenchConfig::rdht_exe`]). `quorums` quorums of
//!   `members` members (dealt from a seed, threshold `threshold`) register
//!   their namespaces; then every member, each with its own libp2p
//!   identity and its own connection, pushes its pre-signed peer records
//!   (increasing `seq`, all signed before the timed phase) in
//!   `RegisterPeers` requests of `batch` records (`batch = 1`: one
//!   `RegisterPeer` per record). At most `window` records are in flight
//!   over all members; with `rate > 0` records are also paced to that rate.
//! - **baseline**: `rdht-bench bench-baseline-server`
//!   ([`BenchConfig::baseline_exe`]: libp2p-rendezvous's server behaviour
//!   over the same TCP + Noise + Yamux stack); the same members
//!   register with libp2p-rendezvous's client (one registration per
//!   request, a fresh Ed25519-signed envelope each time) under their
//!   quorum's namespace name, the same window and rate.
//!
//! Meanwhile a separate client (on its own thread) asks for quorum 0's
//! members every `discover_interval` and times each answer (the round trip:
//! our client does not verify here; libp2p's client checks the envelopes
//! as it decodes them).
//!
//! Reported per server: accepted registrations per second over the timed
//! phase, p50/p99 registration latency (from sending the request carrying
//! a record to receiving its outcome), discover p50/p99, the server's CPU
//! seconds during the timed phase (`/proc/PID/stat` utime + stime) and its
//! peak resident memory (`VmHWM`).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io::BufRead;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, rendezvous, request_response, tcp, yamux, Multiaddr, PeerId, Swarm};
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::{PeerRecord, Request, Response, StatusCode};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant as TokioInstant;

use node::behaviour::{build_swarm, now_ms, split_p2p, BehaviourEvent, SwarmSettings};
use node::codec::Frame;
use node::discover::{response_to, Client};

use crate::population::{deal_bulk, home_records, OurMember, Population, TimedRecords};

/// Errors of the benchmark, as text.
pub type BenchError = String;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The `rdht` binary: runs `rdht rendezvous`, the server under test.
    pub rdht_exe: PathBuf,
    /// The `rdht-bench` binary: runs `rdht-bench bench-baseline-server`,
    /// libp2p-rendezvous's server.
    pub baseline_exe: PathBuf,
    /// Length of each timed phase.
    pub duration: Duration,
    /// Number of quorums (namespaces).
    pub quorums: u32,
    /// Members per quorum; each is one simulated member with its own
    /// identity and connection.
    pub members: u32,
    /// Threshold of every quorum.
    pub threshold: u32,
    /// Records per `RegisterPeers` request (1: `RegisterPeer`).
    pub batch: usize,
    /// Most records in flight over all members.
    pub window: usize,
    /// Records per second to aim at (0: as fast as answers come).
    pub rate: u32,
    /// Time between two discover requests.
    pub discover_interval: Duration,
    /// Also measure libp2p's rendezvous server.
    pub baseline: bool,
    /// Most records to pre-sign per load (default: refreshes enough for
    /// 15,000/s, or 1.2 x the rate, over the duration; fresh seats 1.5 x
    /// the pairing limit measured at the start).
    pub max_registrations: Option<usize>,
    /// Records stored at each server before its timed phase (`--stored`):
    /// seats registered through the real validation, by the same members.
    pub stored: usize,
    /// Print a line per second on stderr.
    pub progress: bool,
}

impl BenchConfig {
    /// The defaults of `rdht-bench bench`, running our server from
    /// `rdht_exe` and libp2p's from `baseline_exe`.
    pub fn new(rdht_exe: PathBuf, baseline_exe: PathBuf) -> Self {
        Self {
            rdht_exe,
            baseline_exe,
            duration: Duration::from_secs(10),
            quorums: 16,
            members: 32,
            threshold: 22,
            batch: 16,
            window: 64,
            rate: 0,
            discover_interval: Duration::from_millis(10),
            baseline: true,
            max_registrations: None,
            stored: 0,
            progress: false,
        }
    }

    fn budget(&self) -> usize {
        self.max_registrations.unwrap_or_else(|| {
            let per_sec = if self.rate > 0 {
                f64::from(self.rate) * 1.2
            } else {
                15_000.0
            };
            (per_sec * self.duration.as_secs_f64()).ceil() as usize
        })
    }
}

/// The figures of one server.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    /// Registrations accepted per second during the timed phase.
    pub registrations_per_sec: f64,
    /// Median registration latency (ms).
    pub register_p50_ms: f64,
    /// 99th percentile registration latency (ms).
    pub register_p99_ms: f64,
    /// Median discover round trip under the load (ms).
    pub discover_p50_ms: f64,
    /// 99th percentile discover round trip under the load (ms).
    pub discover_p99_ms: f64,
    /// CPU seconds (user + system) the server spent in the timed phase.
    pub cpu_s: f64,
    /// The server's peak resident memory (MB, VmHWM).
    pub peak_rss_mb: f64,
    /// CPU seconds of the server's verification threads (`rdht-verify`)
    /// in the timed phase: the rest of `cpu_s` is its event loop and
    /// connections. 0 for a server without them.
    #[serde(skip)]
    pub verify_cpu_s: f64,
    /// CPU seconds of this process (the load generator and the discover
    /// prober) in the timed phase.
    #[serde(skip)]
    pub load_generator_cpu_s: f64,
    /// Registrations accepted in the timed phase.
    #[serde(skip)]
    pub accepted: u64,
    /// Registrations refused in the timed phase, by reason.
    #[serde(skip)]
    pub rejected: BTreeMap<String, u64>,
    /// Requests that failed (no answer, connection lost).
    #[serde(skip)]
    pub failures: u64,
    /// Discover answers timed.
    #[serde(skip)]
    pub discovers: usize,
    /// The server's resident memory (MB), sampled every second.
    #[serde(skip)]
    pub rss_mb: Vec<f64>,
    /// Length of the timed phase (s).
    #[serde(skip)]
    pub seconds: f64,
}

/// Both servers' figures.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// `rdht rendezvous`: members refreshing their seated records,
    /// `batch` records per request.
    pub ours: Figures,
    /// `rdht rendezvous`: the same refreshes, one record per request (as
    /// the baseline sends them). The same run as `ours` when `batch` is 1.
    pub refresh: Figures,
    /// `rdht rendezvous`: first registrations of an epoch (a fresh seat
    /// each, one pairing), `batch` records per request.
    pub seat: Figures,
    /// libp2p-rendezvous's server, if measured.
    pub baseline: Option<Figures>,
    /// The floor of one record per request on this machine (measured with
    /// the baseline): our network stack answering every request at once,
    /// no validation, no store (`rdht-bench bench-floor-server`), under
    /// the `refresh` load.
    pub floor: Option<Figures>,
    /// The same floor under the top-level load (`batch` records per
    /// request, as `ours`): what discover latency is on this machine
    /// under that load when the server does no work at all (measured with
    /// the baseline; the same run as `floor` when `batch` is 1).
    pub floor_batched: Option<Figures>,
    /// The floor of a protocol that must check one Ed25519 signature per
    /// record (measured with the baseline): the `floor` server checking
    /// each record's envelope ([`rendezvous_proto::seated::check_envelope`]) on
    /// its event loop before it answers, as libp2p-rendezvous checks its
    /// signed peer records, under the `refresh` load. Nothing else.
    pub floor_verified: Option<Figures>,
    /// This machine's pairing limit, measured before our server's first
    /// load and after its `seat` load (empty if it could not be measured).
    pub limits: Vec<Limit>,
    /// The configuration, for the text report.
    pub config: BenchConfig,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The JSON of one server, fields in the documented order.
#[derive(Serialize)]
struct JsonFigures {
    registrations_per_sec: f64,
    register_p50_ms: f64,
    register_p99_ms: f64,
    discover_p50_ms: f64,
    discover_p99_ms: f64,
    cpu_s: f64,
    peak_rss_mb: f64,
}

impl From<&Figures> for JsonFigures {
    fn from(f: &Figures) -> Self {
        Self {
            registrations_per_sec: round3(f.registrations_per_sec),
            register_p50_ms: round3(f.register_p50_ms),
            register_p99_ms: round3(f.register_p99_ms),
            discover_p50_ms: round3(f.discover_p50_ms),
            discover_p99_ms: round3(f.discover_p99_ms),
            cpu_s: round3(f.cpu_s),
            peak_rss_mb: round3(f.peak_rss_mb),
        }
    }
}

/// The `seat` object: a server's figures and the pairing limit beside them.
#[derive(Serialize)]
struct JsonSeat {
    #[serde(flatten)]
    figures: JsonFigures,
    pairing_limit_per_sec: f64,
    /// CPU seconds of the server's verification threads.
    verify_cpu_s: f64,
    /// CPU seconds of the load generator (this process).
    load_generator_cpu_s: f64,
    /// What the verification threads could reach with the cores the load
    /// generator and the server's event loop left them at this load.
    pairing_ceiling_per_sec: f64,
}

/// What `rdht-bench bench --json` prints.
#[derive(Serialize)]
struct JsonReport {
    #[serde(flatten)]
    ours: JsonFigures,
    baseline: Option<JsonFigures>,
    refresh: JsonFigures,
    seat: JsonSeat,
    stored: usize,
    floor: Option<JsonFigures>,
    floor_batched: Option<JsonFigures>,
    floor_verified: Option<JsonFigures>,
}

impl BenchReport {
    /// The mean of the pairing limits measured in this run (0 if none).
    pub fn pairing_limit_per_sec(&self) -> f64 {
        if self.limits.is_empty() {
            return 0.0;
        }
        self.limits.iter().map(|l| l.per_sec).sum::<f64>() / self.limits.len() as f64
    }

    /// The `seat` load's ceiling on this machine: the pairing limit
    /// scaled to the share of the cores that neither the load generator
    /// (on the same machine) nor the server's own event loop used during
    /// that load. The verification threads cannot do more than the
    /// limit's work in the cores left to them; at a higher rate the
    /// other two would need more, not less.
    pub fn pairing_ceiling_per_sec(&self) -> f64 {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let seconds = self.seat.seconds.max(f64::EPSILON);
        let others =
            (self.seat.cpu_s - self.seat.verify_cpu_s).max(0.0) + self.seat.load_generator_cpu_s;
        let left = (cores - others / seconds).max(0.0) / cores;
        self.pairing_limit_per_sec() * left
    }

    fn json_report(&self) -> JsonReport {
        JsonReport {
            ours: (&self.ours).into(),
            baseline: self.baseline.as_ref().map(JsonFigures::from),
            refresh: (&self.refresh).into(),
            seat: JsonSeat {
                figures: (&self.seat).into(),
                pairing_limit_per_sec: round3(self.pairing_limit_per_sec()),
                verify_cpu_s: round3(self.seat.verify_cpu_s),
                load_generator_cpu_s: round3(self.seat.load_generator_cpu_s),
                pairing_ceiling_per_sec: round3(self.pairing_ceiling_per_sec()),
            },
            stored: self.config.stored,
            floor: self.floor.as_ref().map(JsonFigures::from),
            floor_batched: self.floor_batched.as_ref().map(JsonFigures::from),
            floor_verified: self.floor_verified.as_ref().map(JsonFigures::from),
        }
    }

    /// `rdht-bench bench --json`: the fields of [`BenchReport::to_json`] in the
    /// documented order, pretty-printed.
    pub fn to_json_string(&self) -> String {
        serde_json::to_string_pretty(&self.json_report()).unwrap_or_default()
    }

    /// `{"registrations_per_sec", ..., "baseline": {the same fields},
    /// "refresh": {the same fields}, "seat": {the same fields,
    /// "pairing_limit_per_sec"}, "stored", "floor": {the same fields},
    /// "floor_batched": {the same fields}, "floor_verified": {the same
    /// fields}}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.json_report()).unwrap_or_default()
    }

    /// A table for people.
    pub fn to_text(&self) -> String {
        let c = &self.config;
        let mut out = format!(
            "{} quorums x {} members (threshold {}), {:?} per load, {} records per request, window {}, rate {}, {} records stored before each load\n",
            c.quorums,
            c.members,
            c.threshold,
            c.duration,
            c.batch,
            c.window,
            if c.rate == 0 { "unpaced".to_string() } else { format!("{}/s", c.rate) },
            c.stored,
        );
        out.push_str(&format!(
            "{:<10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>8} {:>9} {:>9}\n",
            "server",
            "reg/s",
            "reg p50",
            "reg p99",
            "disc p50",
            "disc p99",
            "cpu s",
            "cpu/reg",
            "peak MB"
        ));
        let mut line = |name: &str, f: &Figures| {
            let per_reg_us = if f.accepted > 0 {
                f.cpu_s / f.accepted as f64 * 1e6
            } else {
                0.0
            };
            out.push_str(&format!(
                "{:<10} {:>10.0} {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>8.2} {:>7.0}us {:>9.1}\n",
                name,
                f.registrations_per_sec,
                f.register_p50_ms,
                f.register_p99_ms,
                f.discover_p50_ms,
                f.discover_p99_ms,
                f.cpu_s,
                per_reg_us,
                f.peak_rss_mb
            ));
        };
        line("rdht", &self.ours);
        line("refresh", &self.refresh);
        line("seat", &self.seat);
        if let Some(b) = &self.baseline {
            line("libp2p", b);
        }
        if let Some(f) = &self.floor {
            line("floor", f);
        }
        if let Some(f) = &self.floor_batched {
            line("floor-b", f);
        }
        if let Some(f) = &self.floor_verified {
            line("floor-v", f);
        }
        let detail = |name: &str, f: &Figures| {
            format!(
                "{name}: {} accepted, refused {:?}, {} failed requests, {} discovers, server RSS by second (MB): {:?}\n",
                f.accepted,
                f.rejected,
                f.failures,
                f.discovers,
                f.rss_mb.iter().map(|x| x.round() as u64).collect::<Vec<_>>()
            )
        };
        out.push_str(&detail("rdht", &self.ours));
        out.push_str(&detail("refresh", &self.refresh));
        out.push_str(&detail("seat", &self.seat));
        if !self.limits.is_empty() {
            let each: Vec<String> = self
                .limits
                .iter()
                .map(|l| {
                    format!(
                        "{:.0}/s (batch {:.0} us/signature on all cores, decode {:.0} us)",
                        l.per_sec, l.batch_us, l.decode_us
                    )
                })
                .collect();
            out.push_str(&format!(
                "pairing limit of this machine, before and after rdht's runs: {}; seat reached {:.0}% of their mean\n",
                each.join(", "),
                100.0 * self.seat.registrations_per_sec / self.pairing_limit_per_sec().max(1.0)
            ));
            let seconds = self.seat.seconds.max(f64::EPSILON);
            out.push_str(&format!(
                "during seat: verification threads {:.2} cores, the server's other threads {:.2} cores, load generator {:.2} cores; ceiling {:.0}/s ({:.0}% of the limit), seat reached {:.0}% of it\n",
                self.seat.verify_cpu_s / seconds,
                (self.seat.cpu_s - self.seat.verify_cpu_s).max(0.0) / seconds,
                self.seat.load_generator_cpu_s / seconds,
                self.pairing_ceiling_per_sec(),
                100.0 * self.pairing_ceiling_per_sec() / self.pairing_limit_per_sec().max(1.0),
                100.0 * self.seat.registrations_per_sec / self.pairing_ceiling_per_sec().max(1.0)
            ));
        }
        if let Some(b) = &self.baseline {
            out.push_str(&detail("libp2p", b));
            if b.registrations_per_sec > 0.0 {
                out.push_str(&format!(
                    "ratio rdht / libp2p: {:.2} x the registrations per second; refresh (one record per request, as libp2p) / libp2p: {:.2} x\n",
                    self.ours.registrations_per_sec / b.registrations_per_sec,
                    self.refresh.registrations_per_sec / b.registrations_per_sec
                ));
                if let Some(f) = &self.floor {
                    out.push_str(&format!(
                        "floor (our stack answering at once, one record per request) / libp2p: {:.2} x; refresh reached {:.0}% of the floor\n",
                        f.registrations_per_sec / b.registrations_per_sec,
                        100.0 * self.refresh.registrations_per_sec / f.registrations_per_sec.max(1.0)
                    ));
                }
                if let Some(f) = &self.floor_verified {
                    out.push_str(&format!(
                        "floor with one Ed25519 check per record (our stack, the envelope checked on the event loop, nothing stored) / libp2p: {:.2} x; refresh reached {:.0}% of it\n",
                        f.registrations_per_sec / b.registrations_per_sec,
                        100.0 * self.refresh.registrations_per_sec / f.registrations_per_sec.max(1.0)
                    ));
                }
                if let Some(f) = &self.floor_batched {
                    out.push_str(&format!(
                        "discover p99 under the top-level load: rdht {:.2} ms, the same load against our stack doing no work {:.2} ms\n",
                        self.ours.discover_p99_ms, f.discover_p99_ms
                    ));
                }
            }
        }
        out
    }
}

// ----- the server under test --------------------------------------------------

/// A server running as a child process; killed when dropped.
pub(crate) struct ServerProcess {
    child: Child,
    pub(crate) addr: Multiaddr,
    peer: PeerId,
    clock_ticks: f64,
}

impl ServerProcess {
    /// Starts `exe args`, logging at `log` (`RUST_LOG`), and waits for its
    /// `listening on ADDR/p2p/ID` line.
    pub(crate) fn spawn(exe: &PathBuf, args: &[&str], log: &str) -> Result<Self, BenchError> {
        let mut child = Command::new(exe)
            .args(args)
            .env("RUST_LOG", log)
            // The child stops when this pipe closes: when this process
            // exits, however it exits.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", exe.display()))?;
        let stdout = child.stdout.take();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        // Keeps draining the child's stdout, so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let Some(stdout) = stdout else { return };
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut server = Self {
            child,
            addr: Multiaddr::empty(),
            peer: PeerId::random(),
            clock_ticks: clock_ticks(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .map_err(|_| format!("{} {args:?} printed no listen address", exe.display()))?;
            if let Some(addr) = line.strip_prefix("listening on ") {
                let addr: Multiaddr = addr
                    .trim()
                    .parse()
                    .map_err(|e| format!("listen address {addr}: {e}"))?;
                let (peer, _) =
                    split_p2p(&addr).ok_or_else(|| format!("{addr} has no /p2p/<peer id>"))?;
                server.addr = addr;
                server.peer = peer;
                return Ok(server);
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User + system CPU seconds so far.
    pub(crate) fn cpu_s(&self) -> Option<f64> {
        proc_cpu_s(&self.pid().to_string(), self.clock_ticks)
    }

    /// User + system CPU seconds so far of its verification threads.
    fn verify_cpu_s(&self) -> f64 {
        threads_cpu_s(self.pid(), VERIFY_THREAD, self.clock_ticks)
    }

    /// A `kB` line of /proc/PID/status, in MB.
    fn status_mb(&self, key: &str) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|l| l.starts_with(key))?;
        let kb: f64 = line
            .trim_start_matches(key)
            .trim_start_matches(':')
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(kb / 1024.0)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User + system CPU seconds of a process (`self` for this one).
fn proc_cpu_s(pid: &str, clock_ticks: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_cpu_s(&stat, clock_ticks).map(|(_, cpu)| cpu)
}

/// The name `rdht rendezvous` gives its verification threads.
const VERIFY_THREAD: &str = "rdht-verify";

/// User + system CPU seconds of the threads of `pid` whose name starts
/// with `prefix` (0 if there are none, or /proc cannot be read).
fn threads_cpu_s(pid: u32, prefix: &str, clock_ticks: f64) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("stat")).ok())
        .filter_map(|stat| stat_cpu_s(&stat, clock_ticks))
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|(_, cpu)| cpu)
        .sum()
}

/// The command name and user + system CPU seconds of a `stat` line.
fn stat_cpu_s(stat: &str, clock_ticks: f64) -> Option<(String, f64)> {
    // The name is between the first '(' and the last ')' (it may hold
    // spaces or parentheses); the fields after it start with the state,
    // field 3: utime and stime are fields 14 and 15.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    let rest = stat.get(close + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((name, (utime + stime) / clock_ticks))
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

// ----- shared load-generator plumbing -------------------------------------------

/// When the timed phase runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Phase {
    pub(crate) start: Instant,
    pub(crate) deadline: Instant,
}

/// Paces records to a rate (shared by all members).
struct Pacer {
    rate: u32,
    issued: AtomicU64,
}

impl Pacer {
    /// When the next `count` records may go.
    fn slot(&self, phase: &Phase, count: usize) -> Option<Instant> {
        if self.rate == 0 {
            return None;
        }
        let n = self.issued.fetch_add(count as u64, Ordering::Relaxed);
        Some(phase.start + Duration::from_secs_f64(n as f64 / f64::from(self.rate)))
    }
}

/// What one member saw.
#[derive(Default)]
struct MemberOutcome {
    latencies_ms: Vec<f32>,
    accepted: u64,
    rejected: BTreeMap<String, u64>,
    failures: u64,
}

/// Live counters for the progress line.
#[derive(Default)]
struct Live {
    accepted: AtomicU64,
}

/// What every member of one run shares.
#[derive(Clone)]
struct Load {
    server: Multiaddr,
    server_peer: PeerId,
    window: Arc<Semaphore>,
    /// Most records in flight in the warm-up (the prefill), over all
    /// members: under the server's queue cap.
    warm_window: Arc<Semaphore>,
    pacer: Arc<Pacer>,
    ready: tokio::sync::mpsc::Sender<Result<(), BenchError>>,
    start: tokio::sync::watch::Receiver<Option<Phase>>,
    live: Arc<Live>,
}

/// Records per request in the warm-up.
const WARMUP_BATCH: usize = 64;
/// Most warm-up records in flight over all members: under a second of
/// seat checks, so that no request waits at the server for longer than
/// its request timeout (10 s), after which the server drops it.
const WARMUP_WINDOW: usize = 1_024;
/// How long one member's warm-up may take (a `--stored` prefill included).
const WARMUP_TIMEOUT: Duration = Duration::from_secs(600);

type Acquire =
    Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, tokio::sync::AcquireError>> + Send>>;

fn acquire(window: &Arc<Semaphore>, count: usize) -> Acquire {
    Box::pin(window.clone().acquire_many_owned(count as u32))
}

/// Reports a member's warm-up result, then waits for the timed phase to
/// start, driving the swarm meanwhile so the member keeps answering pings.
/// `None` when the warm-up failed or the run was abandoned.
async fn report_ready_and_wait<B: libp2p::swarm::NetworkBehaviour>(
    swarm: &mut libp2p::Swarm<B>,
    warmed: Result<(), BenchError>,
    ready: &tokio::sync::mpsc::Sender<Result<(), BenchError>>,
    start: &mut tokio::sync::watch::Receiver<Option<Phase>>,
) -> Option<Phase> {
    let failed = warmed.is_err();
    let _ = ready.send(warmed).await;
    if failed {
        return None;
    }
    let phase = loop {
        if let Some(p) = *start.borrow() {
            break p;
        }
        tokio::select! {
            changed = start.changed() => if changed.is_err() { return None; },
            _ = swarm.select_next_some() => {}
        }
    };
    tokio::time::sleep_until(TokioInstant::from_std(phase.start)).await;
    Some(phase)
}

/// The coordinator's end of a load (ours or the baseline's): it learns
/// when every member has warmed up and starts them all together.
struct Coordinator {
    ready: tokio::sync::mpsc::Receiver<Result<(), BenchError>>,
    start: tokio::sync::watch::Sender<Option<Phase>>,
    live: Arc<Live>,
    members: usize,
}

impl Coordinator {
    /// A load on `server` for `members` members: at most `window` records
    /// in flight over all of them, paced to `rate` (0: unpaced). Each
    /// member gets a clone of the returned [`Load`].
    fn new(server: &ServerProcess, window: usize, rate: u32, members: usize) -> (Self, Load) {
        let live = Arc::new(Live::default());
        let (ready_tx, ready) = tokio::sync::mpsc::channel(members.max(1));
        let (start, start_rx) = tokio::sync::watch::channel(None);
        let load = Load {
            server: server.addr.clone(),
            server_peer: server.peer,
            window: Arc::new(Semaphore::new(window)),
            warm_window: Arc::new(Semaphore::new(WARMUP_WINDOW)),
            pacer: Arc::new(Pacer {
                rate,
                issued: AtomicU64::new(0),
            }),
            ready: ready_tx,
            start: start_rx,
            live: live.clone(),
        };
        let coordinator = Self {
            ready,
            start,
            live,
            members,
        };
        (coordinator, load)
    }

    /// Waits until every member has warmed up, then plans the timed phase:
    /// it starts in 0.5 s and lasts `duration`. `who` names the members in
    /// errors.
    async fn wait_ready(&mut self, who: &str, duration: Duration) -> Result<Phase, BenchError> {
        for _ in 0..self.members {
            match self.ready.recv().await {
                Some(Ok(())) => {}
                Some(Err(e)) => return Err(format!("a {who} could not start: {e}")),
                None => return Err(format!("{who}s stopped before the start")),
            }
        }
        let start = Instant::now() + Duration::from_millis(500);
        Ok(Phase {
            start,
            deadline: start + duration,
        })
    }

    /// Lets every member go at `phase.start`.
    fn start(&self, phase: Phase) {
        let _ = self.start.send(Some(phase));
    }
}

pub(crate) fn percentile(sorted: &[f32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)])
}

/// Runs the timed phase against a started server: waits for `start`,
/// samples the server every second, collects what the members and the
/// discover prober saw.
async fn measure(
    server: &ServerProcess,
    phase: Phase,
    members: Vec<tokio::task::JoinHandle<MemberOutcome>>,
    prober: std::thread::JoinHandle<Vec<f32>>,
    live: Arc<Live>,
    progress: Option<&str>,
) -> Result<Figures, BenchError> {
    tokio::time::sleep_until(TokioInstant::from_std(phase.start)).await;
    let cpu0 = server.cpu_s().unwrap_or(0.0);
    let verify0 = server.verify_cpu_s();
    let own0 = proc_cpu_s("self", server.clock_ticks).unwrap_or(0.0);
    let mut rss = Vec::new();
    let mut last_accepted = 0;
    let mut last_cpu = cpu0;
    let mut last_own = proc_cpu_s("self", server.clock_ticks).unwrap_or(0.0);
    let mut tick = phase.start;
    loop {
        tick += Duration::from_secs(1);
        if tick > phase.deadline {
            break;
        }
        tokio::time::sleep_until(TokioInstant::from_std(tick)).await;
        let r = server.status_mb("VmRSS").unwrap_or(0.0);
        rss.push(r);
        if let Some(name) = progress {
            let accepted = live.accepted.load(Ordering::Relaxed);
            let cpu = server.cpu_s().unwrap_or(0.0);
            let own = proc_cpu_s("self", server.clock_ticks).unwrap_or(0.0);
            eprintln!(
                "{name} t={:>3.0}s {:>6} reg/s  server {:.2} cores  rss {:.0} MB  load generator {:.2} cores",
                (tick - phase.start).as_secs_f64(),
                accepted - last_accepted,
                cpu - last_cpu,
                r,
                own - last_own,
            );
            last_accepted = accepted;
            last_cpu = cpu;
            last_own = own;
        }
    }
    tokio::time::sleep_until(TokioInstant::from_std(phase.deadline)).await;
    let cpu1 = server.cpu_s().unwrap_or(0.0);
    let verify1 = server.verify_cpu_s();
    let own1 = proc_cpu_s("self", server.clock_ticks).unwrap_or(0.0);
    let peak = server.status_mb("VmHWM").unwrap_or(0.0);
    let mut latencies = Vec::new();
    let mut figures = Figures::default();
    for m in members {
        let m = m.await.map_err(|e| format!("a member task failed: {e}"))?;
        latencies.extend(m.latencies_ms);
        figures.accepted += m.accepted;
        figures.failures += m.failures;
        for (k, v) in m.rejected {
            *figures.rejected.entry(k).or_insert(0) += v;
        }
    }
    let mut discover = prober
        .join()
        .map_err(|_| "the discover prober panicked".to_string())?;
    latencies.sort_by(f32::total_cmp);
    discover.sort_by(f32::total_cmp);
    let seconds = (phase.deadline - phase.start).as_secs_f64();
    figures.registrations_per_sec = figures.accepted as f64 / seconds;
    figures.register_p50_ms = percentile(&latencies, 0.50);
    figures.register_p99_ms = percentile(&latencies, 0.99);
    figures.discover_p50_ms = percentile(&discover, 0.50);
    figures.discover_p99_ms = percentile(&discover, 0.99);
    figures.discovers = discover.len();
    figures.cpu_s = cpu1 - cpu0;
    figures.verify_cpu_s = verify1 - verify0;
    figures.load_generator_cpu_s = own1 - own0;
    figures.peak_rss_mb = peak;
    figures.rss_mb = rss;
    figures.seconds = seconds;
    Ok(figures)
}

/// Runs `probe` every `interval` from `phase.start` to `phase.deadline` on
/// a thread of its own (its own runtime), after 20 untimed rounds.
pub(crate) fn spawn_prober<S, F, Fut>(
    phase: Phase,
    interval: Duration,
    setup: S,
) -> std::thread::JoinHandle<Vec<f32>>
where
    S: FnOnce() -> Result<F, BenchError> + Send + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return Vec::new();
        };
        runtime.block_on(async move {
            let Ok(mut probe) = setup() else {
                return Vec::new();
            };
            for _ in 0..20 {
                if !probe().await {
                    break;
                }
            }
            tokio::time::sleep_until(TokioInstant::from_std(phase.start)).await;
            let mut out = Vec::new();
            let mut next = phase.start;
            while Instant::now() < phase.deadline {
                let t = Instant::now();
                if probe().await && Instant::now() <= phase.deadline {
                    out.push(t.elapsed().as_secs_f32() * 1e3);
                }
                next += interval;
                let now = Instant::now();
                if next < now {
                    next = now;
                }
                tokio::time::sleep_until(TokioInstant::from_std(next)).await;
            }
            out
        })
    })
}

/// [`spawn_prober`] timing rdht discovers of `quorum_key` at `addr` over
/// one long-lived connection.
pub(crate) fn spawn_discover_prober(
    phase: Phase,
    interval: Duration,
    addr: Multiaddr,
    quorum_key: rendezvous_proto::QuorumKey,
) -> std::thread::JoinHandle<Vec<f32>> {
    spawn_prober(phase, interval, move || {
        let client = Arc::new(tokio::sync::Mutex::new(
            Client::ephemeral().map_err(|e| e.to_string())?,
        ));
        Ok(move || {
            let client = client.clone();
            let addr = addr.clone();
            async move {
                let request = Request::Discover {
                    quorum_key,
                    limit: 0,
                    cookie: None,
                };
                let mut c = client.lock().await;
                matches!(
                    c.request(&addr, request, Duration::from_secs(10)).await,
                    Ok(Response::Discovered(_))
                )
            }
        })
    })
}

// ----- ours -----------------------------------------------------------------------

fn deal(config: &BenchConfig) -> Vec<TestQuorum> {
    use rand::SeedableRng;
    (0..config.quorums)
        .map(|q| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_0000 + u64::from(q));
            TestQuorum::deal(config.members, config.threshold, &mut rng)
        })
        .collect()
}

/// Deals the home quorums and signs every record of every load, on every
/// core, before anything is timed; measures the pairing limit on the way
/// (fresh seats are dealt to 1.5 x what it allows over the duration).
fn populate(
    config: &BenchConfig,
    now: u64,
    expires: u64,
) -> (Population, Option<Calibration>, Option<Limit>) {
    let t = Instant::now();
    let quorums = deal(config);
    let total_members = (config.quorums * config.members) as usize;
    let refreshes = config.budget().div_ceil(total_members.max(1)) + 1;
    let namespaces = quorums
        .iter()
        .map(|q| q.namespace(1, Some("bench"), now, expires))
        .collect();
    let home = home_records(&quorums, refreshes, expires);
    let mut population = Population {
        quorums,
        namespaces,
        identities: Vec::with_capacity(home.len()),
        seats: Vec::with_capacity(home.len()),
        refreshes: Vec::with_capacity(home.len()),
        prefill: deal_bulk(&[], 0, 0, 0, 0, now, expires),
        fresh: deal_bulk(&[], 0, 0, 0, 0, now, expires),
    };
    for (identity, seat, later) in home {
        population.identities.push(identity);
        population.seats.push(seat);
        population.refreshes.push(later);
    }
    let calibration = Calibration::new(
        &population.identities,
        config.members as usize,
        config.threshold,
        now,
    );
    let limit = measure_limit(calibration.as_ref(), "now", config.progress);
    let members = config.members as usize;
    let fresh = config.max_registrations.unwrap_or_else(|| {
        let per_sec = limit.map_or(6_000.0, |l| l.per_sec);
        (1.5 * per_sec * config.duration.as_secs_f64()).ceil() as usize
    });
    population.fresh = deal_bulk(
        &population.identities,
        fresh,
        members,
        config.threshold,
        0xf4e5_0000,
        now,
        expires,
    );
    population.prefill = deal_bulk(
        &population.identities,
        config.stored,
        members,
        config.threshold,
        0x5707_0000,
        now,
        expires,
    );
    if config.progress {
        eprintln!(
            "rdht: signed {} home seats and {} refreshes, {} fresh seats in {} namespaces, {} stored seats in {} namespaces, in {:.1} s",
            population.seats.len(),
            population.refreshes.iter().map(Vec::len).sum::<usize>(),
            population.fresh.len(),
            population.fresh.namespaces.len(),
            population.prefill.len(),
            population.prefill.namespaces.len(),
            t.elapsed().as_secs_f64()
        );
    }
    (population, calibration, limit)
}

/// The physical limit of this machine, measured before and after the run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limit {
    /// Time per signature of safe batch checks of 256 records, with every
    /// core checking its own batches (as the server's verification
    /// threads do): wall time divided by records, so already shared by
    /// the cores.
    pub batch_us: f64,
    /// Decoding one signature (decompression and subgroup check), one core.
    pub decode_us: f64,
    /// What both give on every core: verified registrations per second
    /// if a server did nothing else.
    pub per_sec: f64,
}

/// 256 seats (each its own message, as fresh seats are), with their
/// verified namespaces, ready for [`calibrate`].
struct Calibration {
    /// Each record and the position of its namespace in `namespaces`.
    records: Vec<(PeerRecord, usize)>,
    namespaces: Vec<rendezvous_proto::VerifiedNamespace>,
    now: u64,
}

impl Calibration {
    /// Deals 256 seats of their own over `identities` (bulk quorums of
    /// `members`), as the `seat` load's are.
    fn new(identities: &[Keypair], members: usize, threshold: u32, now: u64) -> Option<Self> {
        let limits = rendezvous_proto::Limits::DEFAULT;
        let bulk = deal_bulk(
            identities,
            256,
            members,
            threshold,
            0xca11_0000,
            now,
            now + 3_600_000,
        );
        let namespaces = bulk
            .namespaces
            .iter()
            .map(|ns| rendezvous_proto::verify_namespace(ns, now, &limits).ok())
            .collect::<Option<Vec<_>>>()?;
        let records: Vec<(PeerRecord, usize)> = bulk
            .records
            .into_iter()
            .zip(bulk.quorums_of)
            .flat_map(|(records, quorums)| records.into_iter().zip(quorums))
            .collect();
        // Share keys are derived once per namespace and index on a server
        // too: not part of what is timed.
        for (r, j) in &records {
            namespaces.get(*j)?.share_key(r.index());
        }
        Some(Self {
            records,
            namespaces,
            now,
        })
    }
}

/// Times the pairing work of the calibration records on every core, as
/// the server's verification threads run it (checkpointed batch checks).
/// Run before the server starts and again after it stops, when the
/// machine is as quiet as it gets; the two figures show how much the
/// machine itself moved during the run.
fn calibrate(c: &Calibration) -> Limit {
    let limits = rendezvous_proto::Limits::DEFAULT;
    let t = Instant::now();
    let pending: Vec<rendezvous_proto::PendingPeer> = c
        .records
        .iter()
        .filter_map(|(r, j)| {
            let namespace = c.namespaces.get(*j)?;
            rendezvous_proto::PendingPeer::prepare(r.clone(), namespace, c.now, &limits, None).ok()
        })
        .collect();
    let decode_us = t.elapsed().as_secs_f64() * 1e6 / pending.len().max(1) as f64;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rounds = 3;
    let verify_once = |rng: &mut rand::rngs::ThreadRng| {
        let _ = rendezvous_proto::verify_batch_with(&pending, rng, &mut || {});
    };
    let verify_all = || {
        let mut rng = rand::thread_rng();
        for _ in 0..rounds {
            verify_once(&mut rng);
        }
    };
    // Warm-up, untimed: the same check as the timed rounds.
    verify_once(&mut rand::thread_rng());
    let t = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..cores {
            scope.spawn(verify_all);
        }
    });
    let checked = (cores * rounds * pending.len()).max(1) as f64;
    let batch_us = t.elapsed().as_secs_f64() * 1e6 / checked;
    Limit {
        batch_us,
        decode_us,
        per_sec: 1e6 / (batch_us + decode_us / cores as f64),
    }
}

fn code_name(code: StatusCode) -> String {
    format!("{code:?}")
}

/// Connects, registers one untimed record, reports ready, then pushes
/// records during the phase.
async fn our_member(mut member: OurMember, batch: usize, load: Load) -> MemberOutcome {
    let Load {
        server,
        server_peer,
        window,
        warm_window,
        pacer,
        ready,
        mut start,
        live,
    } = load;
    let mut out = MemberOutcome::default();
    let settings = SwarmSettings {
        request_timeout: Duration::from_secs(30),
        ..SwarmSettings::default()
    };
    let mut swarm = match build_swarm(member.identity.clone(), &settings, None) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(e.to_string())).await;
            return out;
        }
    };
    // Warm-up, untimed: connect, register the prefill's records this
    // identity holds and then its home seat, a batch at a time.
    let warmup = std::mem::take(&mut member.warmup);
    let warm = async {
        swarm.dial(server.clone()).map_err(|e| e.to_string())?;
        for chunk in warmup.chunks(WARMUP_BATCH) {
            // The swarm is driven while the member waits for its turn:
            // an undriven connection stalls and the server drops it.
            let wait = warm_window.clone().acquire_many_owned(chunk.len() as u32);
            tokio::pin!(wait);
            let _permit = loop {
                tokio::select! {
                    permit = &mut wait => break permit.map_err(|e| e.to_string())?,
                    _ = swarm.select_next_some() => {}
                }
            };
            let id = swarm.behaviour_mut().rr.send_request(
                &server_peer,
                Frame::Message(Request::RegisterPeers(chunk.to_vec())),
            );
            match response_to(&mut swarm, id).await {
                Ok(Frame::Message(Response::RegisteredPeers(outcomes)))
                    if outcomes.iter().all(Result::is_ok) => {}
                Ok(other) => return Err(format!("warm-up registration: {other:?}")),
                Err(error) => return Err(format!("warm-up registration: {error}")),
            }
        }
        Ok(())
    };
    let warmed = tokio::time::timeout(WARMUP_TIMEOUT, warm)
        .await
        .unwrap_or_else(|_| Err("warm-up timed out".into()));
    let Some(phase) = report_ready_and_wait(&mut swarm, warmed, &ready, &mut start).await else {
        return out;
    };
    let deadline = TokioInstant::from_std(phase.deadline);
    let mut in_flight: Option<(
        request_response::OutboundRequestId,
        Instant,
        usize,
        OwnedSemaphorePermit,
    )> = None;
    let next_count = |m: &OurMember| m.records.len().min(batch);
    let mut acquiring: Option<Acquire> = None;
    loop {
        if in_flight.is_none() && acquiring.is_none() {
            let k = next_count(&member);
            if k == 0 {
                break;
            }
            acquiring = Some(acquire(&window, k));
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            permit = async { match acquiring.as_mut() { Some(a) => a.await, None => std::future::pending().await } },
                if acquiring.is_some() => {
                acquiring = None;
                let Ok(permit) = permit else { break };
                let k = next_count(&member);
                if let Some(at) = pacer.slot(&phase, k) {
                    if at >= phase.deadline {
                        break;
                    }
                    tokio::time::sleep_until(TokioInstant::from_std(at)).await;
                }
                let records: Vec<PeerRecord> = member.records.drain(..k).collect();
                let request = match <[PeerRecord; 1]>::try_from(records) {
                    Ok([one]) => Request::RegisterPeer(one),
                    Err(records) => Request::RegisterPeers(records),
                };
                let id = swarm
                    .behaviour_mut()
                    .rr
                    .send_request(&server_peer, Frame::Message(request));
                in_flight = Some((id, Instant::now(), k, permit));
            }
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(BehaviourEvent::Rr(request_response::Event::Message {
                    message: request_response::Message::Response { request_id, response },
                    ..
                })) => {
                    let Some((_, sent, k, _permit)) = in_flight.take_if(|f| f.0 == request_id) else {
                        continue;
                    };
                    let now = Instant::now();
                    let on_time = now <= phase.deadline;
                    let ms = now.duration_since(sent).as_secs_f32() * 1e3;
                    let outcomes: Vec<Result<u64, StatusCode>> = match response {
                        Frame::Message(Response::RegisteredPeers(o)) => o,
                        Frame::Message(Response::Registered { ttl_ms }) => vec![Ok(ttl_ms)],
                        Frame::Message(Response::Rejected(code)) => vec![Err(code); k],
                        _ => vec![Err(StatusCode::Decode); k],
                    };
                    if !on_time {
                        continue;
                    }
                    for o in outcomes {
                        match o {
                            Ok(_) => {
                                out.accepted += 1;
                                out.latencies_ms.push(ms);
                                live.accepted.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(code) => *out.rejected.entry(code_name(code)).or_insert(0) += 1,
                        }
                    }
                }
                SwarmEvent::Behaviour(BehaviourEvent::Rr(request_response::Event::OutboundFailure {
                    request_id, ..
                })) if in_flight.as_ref().is_some_and(|f| f.0 == request_id) => {
                    in_flight = None;
                    out.failures += 1;
                }
                _ => {}
            },
        }
    }
    out
}

/// Registers `namespaces` at `addr` from a few clients side by side
/// (each namespace costs the server a threshold-signature check).
async fn register_namespaces(
    addr: &Multiaddr,
    namespaces: Vec<rendezvous_proto::NamespaceRecord>,
) -> Result<(), BenchError> {
    const CLIENTS: usize = 8;
    let chunk = namespaces.len().div_ceil(CLIENTS).max(1);
    let mut tasks = Vec::new();
    for part in namespaces.chunks(chunk) {
        let part = part.to_vec();
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = Client::ephemeral().map_err(|e| e.to_string())?;
            for ns in part {
                match client
                    .request(
                        &addr,
                        Request::RegisterNamespace(ns),
                        Duration::from_secs(30),
                    )
                    .await
                {
                    Ok(Response::Registered { .. }) => {}
                    other => return Err(format!("registering a namespace: {other:?}")),
                }
            }
            Ok::<(), BenchError>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// The server a load of ours runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// `rdht rendezvous`.
    Rdht,
    /// `rdht-bench bench-floor-server`: the same network stack answering
    /// every request at once, with no validation and no store.
    Floor,
    /// The same, checking each record's envelope signature first.
    FloorVerified,
}

/// One load on a fresh server: the namespaces, the warm-up (prefill and
/// home seats), then `timed` records `batch` per request.
async fn run_ours(
    config: &BenchConfig,
    population: &Population,
    timed: TimedRecords,
    batch: usize,
    target: Target,
    name: &'static str,
) -> Result<Figures, BenchError> {
    let server = match target {
        Target::Rdht => ServerProcess::spawn(
            &config.rdht_exe,
            &[
                "rendezvous",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--exit-with-stdin",
                // Each member holds a seat in many namespaces (the
                // prefill's, the fresh seats'): more than an open network's
                // default.
                "--max-registrations-per-source",
                "1000000",
            ],
            "warn,libp2p_kad=error",
        )?,
        Target::Floor | Target::FloorVerified => {
            let mut args = vec![
                "bench-floor-server",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--exit-with-stdin",
            ];
            if target == Target::FloorVerified {
                args.push("--verify-envelopes");
            }
            ServerProcess::spawn(&config.baseline_exe, &args, "error")?
        }
    };
    let t = Instant::now();
    register_namespaces(&server.addr, population.namespaces(timed)).await?;
    let quorum_key = population
        .quorums
        .first()
        .map(TestQuorum::quorum_key)
        .ok_or("no quorum")?;
    let mut members = population.members(timed);
    if target != Target::Rdht {
        // Nothing is stored there: only the home seat, to connect.
        for m in &mut members {
            let keep = m.warmup.len().saturating_sub(1);
            m.warmup.drain(..keep);
        }
    }
    let (mut coordinator, load) = Coordinator::new(
        &server,
        config.window.max(batch),
        config.rate,
        members.len(),
    );
    let mut tasks = Vec::with_capacity(members.len());
    for member in members {
        tasks.push(tokio::spawn(our_member(member, batch.max(1), load.clone())));
    }
    drop(load);
    let phase = coordinator.wait_ready("member", config.duration).await?;
    if config.progress {
        eprintln!(
            "{name}: namespaces and warm-up ({} records stored) in {:.1} s",
            population.prefill.len() + population.seats.len(),
            t.elapsed().as_secs_f64()
        );
    }
    let prober = spawn_discover_prober(
        phase,
        config.discover_interval,
        server.addr.clone(),
        quorum_key,
    );
    coordinator.start(phase);
    let progress = config.progress.then_some(name);
    measure(&server, phase, tasks, prober, coordinator.live, progress).await
}

/// [`calibrate`] from within the runtime, saying the figure when `progress`.
fn measure_limit(calibration: Option<&Calibration>, when: &str, progress: bool) -> Option<Limit> {
    let calibration = calibration?;
    let l = tokio::task::block_in_place(|| calibrate(calibration));
    if progress {
        eprintln!(
            "rdht: this machine {when}: batch verification {:.0} us per signature on all cores, \
             signature decoding {:.0} us (one core): at most {:.0} verified registrations/s",
            l.batch_us, l.decode_us, l.per_sec
        );
    }
    Some(l)
}

// ----- the baseline: libp2p-rendezvous ------------------------------------------

type BaselineSwarm = Swarm<rendezvous::client::Behaviour>;

fn baseline_swarm(identity: Keypair) -> Result<BaselineSwarm, BenchError> {
    Ok(libp2p::SwarmBuilder::with_existing_identity(identity)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| e.to_string())?
        .with_behaviour(|key| rendezvous::client::Behaviour::new(key.clone()))
        .map_err(|e| e.to_string())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build())
}

fn namespace_of(q: usize) -> Result<rendezvous::Namespace, BenchError> {
    rendezvous::Namespace::new(format!("bench-quorum-{q}")).map_err(|e| e.to_string())
}

/// The baseline's name for prefill quorum `j`.
fn fill_namespace_of(j: usize) -> Result<rendezvous::Namespace, BenchError> {
    rendezvous::Namespace::new(format!("bench-fill-{j}")).map_err(|e| e.to_string())
}

/// Waits for the outcome of the one registration in flight.
fn baseline_outcome(event: &SwarmEvent<rendezvous::client::Event>) -> Option<Result<(), String>> {
    match event {
        SwarmEvent::Behaviour(rendezvous::client::Event::Registered { .. }) => Some(Ok(())),
        SwarmEvent::Behaviour(rendezvous::client::Event::RegisterFailed { error, .. }) => {
            Some(Err(format!("{error:?}")))
        }
        _ => None,
    }
}

/// A baseline member: registers each of `fill` (the prefill) and then
/// `namespace` untimed, then re-registers in `namespace` during the phase.
async fn baseline_member(
    identity: Keypair,
    external: Multiaddr,
    namespace: rendezvous::Namespace,
    fill: Vec<rendezvous::Namespace>,
    count: usize,
    load: Load,
) -> MemberOutcome {
    let Load {
        server,
        server_peer,
        window,
        pacer,
        ready,
        mut start,
        live,
        ..
    } = load;
    let mut out = MemberOutcome::default();
    let mut swarm = match baseline_swarm(identity) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(e)).await;
            return out;
        }
    };
    swarm.add_external_address(external);
    let warm = async {
        swarm.dial(server.clone()).map_err(|e| e.to_string())?;
        loop {
            if let SwarmEvent::ConnectionEstablished { peer_id, .. } =
                swarm.select_next_some().await
            {
                if peer_id == server_peer {
                    break;
                }
            }
        }
        for ns in fill.into_iter().chain([namespace.clone()]) {
            swarm
                .behaviour_mut()
                .register(ns, server_peer, None)
                .map_err(|e| e.to_string())?;
            loop {
                let event = swarm.select_next_some().await;
                if let Some(outcome) = baseline_outcome(&event) {
                    outcome.map_err(|e| format!("warm-up registration: {e}"))?;
                    break;
                }
            }
        }
        Ok(())
    };
    let warmed = tokio::time::timeout(WARMUP_TIMEOUT, warm)
        .await
        .unwrap_or_else(|_| Err("warm-up timed out".into()));
    let Some(phase) = report_ready_and_wait(&mut swarm, warmed, &ready, &mut start).await else {
        return out;
    };
    let deadline = TokioInstant::from_std(phase.deadline);
    let mut left = count;
    let mut in_flight: Option<(Instant, OwnedSemaphorePermit)> = None;
    let mut acquiring: Option<Acquire> = None;
    loop {
        if in_flight.is_none() && acquiring.is_none() {
            if left == 0 {
                break;
            }
            acquiring = Some(acquire(&window, 1));
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            permit = async { match acquiring.as_mut() { Some(a) => a.await, None => std::future::pending().await } },
                if acquiring.is_some() => {
                acquiring = None;
                let Ok(permit) = permit else { break };
                if let Some(at) = pacer.slot(&phase, 1) {
                    if at >= phase.deadline {
                        break;
                    }
                    tokio::time::sleep_until(TokioInstant::from_std(at)).await;
                }
                let sent = Instant::now();
                match swarm.behaviour_mut().register(namespace.clone(), server_peer, None) {
                    Ok(()) => {
                        left -= 1;
                        in_flight = Some((sent, permit));
                    }
                    Err(_) => {
                        out.failures += 1;
                        break;
                    }
                }
            }
            event = swarm.select_next_some() => {
                let Some(outcome) = baseline_outcome(&event) else { continue };
                let Some((sent, _permit)) = in_flight.take() else { continue };
                let now = Instant::now();
                if now > phase.deadline {
                    continue;
                }
                match outcome {
                    Ok(()) => {
                        out.accepted += 1;
                        out.latencies_ms.push(now.duration_since(sent).as_secs_f32() * 1e3);
                        live.accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(code) => *out.rejected.entry(code).or_insert(0) += 1,
                }
            }
        }
    }
    out
}

async fn run_baseline(
    config: &BenchConfig,
    population: &Population,
) -> Result<Figures, BenchError> {
    let total_members = population.identities.len();
    // Nothing to pre-sign here (the client signs each envelope as it
    // registers), so the baseline gets twice the budget: it is never the
    // budget that stops it.
    let per_member = (2 * config.budget()).div_ceil(total_members.max(1));
    let mut args = vec![
        "bench-baseline-server",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--exit-with-stdin",
    ];
    // libp2p's defaults hold 10,000 registrations, 32 per peer: raised to
    // hold the prefill when there is one.
    let cap = (population.prefill.len() + total_members + 1).to_string();
    if config.stored > 0 {
        args.extend([
            "--max-registrations-per-peer",
            &cap,
            "--max-registrations-total",
            &cap,
        ]);
    }
    // It warns about every request cut short when the run ends.
    let server = ServerProcess::spawn(&config.baseline_exe, &args, "error")?;
    let t = Instant::now();
    let (mut coordinator, load) =
        Coordinator::new(&server, config.window.max(1), config.rate, total_members);
    let mut tasks = Vec::with_capacity(total_members);
    let members = config.members as usize;
    for (p, identity) in population.identities.iter().enumerate() {
        let (q, i) = (p / members.max(1), p % members.max(1) + 1);
        let external: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", 4000 + i)
            .parse()
            .map_err(|e| format!("{e}"))?;
        let fill = population
            .prefill
            .quorums_of
            .get(p)
            .map(|js| js.iter().map(|&j| fill_namespace_of(j)).collect())
            .transpose()?
            .unwrap_or_default();
        tasks.push(tokio::spawn(baseline_member(
            identity.clone(),
            external,
            namespace_of(q)?,
            fill,
            per_member,
            load.clone(),
        )));
    }
    drop(load);
    let phase = coordinator
        .wait_ready("baseline member", config.duration)
        .await?;
    if config.progress {
        eprintln!(
            "libp2p: warm-up ({} registrations stored) in {:.1} s",
            population.prefill.len() + total_members,
            t.elapsed().as_secs_f64()
        );
    }
    let addr = server.addr.clone();
    let server_peer = server.peer;
    let namespace = namespace_of(0)?;
    let prober = spawn_prober(phase, config.discover_interval, move || {
        let swarm = Arc::new(tokio::sync::Mutex::new(baseline_swarm(
            Keypair::generate_ed25519(),
        )?));
        let connected = Arc::new(std::sync::atomic::AtomicBool::new(false));
        Ok(move || {
            let swarm = swarm.clone();
            let addr = addr.clone();
            let namespace = namespace.clone();
            let connected = connected.clone();
            async move {
                let mut swarm = swarm.lock().await;
                if !connected.swap(true, Ordering::Relaxed) && swarm.dial(addr).is_err() {
                    return false;
                }
                swarm
                    .behaviour_mut()
                    .discover(Some(namespace), None, None, server_peer);
                let wait = async {
                    loop {
                        match swarm.select_next_some().await {
                            SwarmEvent::Behaviour(rendezvous::client::Event::Discovered {
                                ..
                            }) => return true,
                            SwarmEvent::Behaviour(rendezvous::client::Event::DiscoverFailed {
                                ..
                            }) => return false,
                            _ => {}
                        }
                    }
                };
                tokio::time::timeout(Duration::from_secs(10), wait)
                    .await
                    .unwrap_or(false)
            }
        })
    });
    coordinator.start(phase);
    let progress = config.progress.then_some("libp2p");
    let figures = measure(&server, phase, tasks, prober, coordinator.live, progress).await;
    drop(server);
    figures
}

/// Runs the whole benchmark: our three loads, then (if configured) the
/// baseline.
pub async fn run(config: BenchConfig) -> Result<BenchReport, BenchError> {
    if config.members == 0 || config.quorums == 0 {
        return Err("--quorums and --members must be at least 1".into());
    }
    if config.threshold == 0 || config.threshold > config.members {
        return Err(format!(
            "--threshold must be 1..={} (the number of members)",
            config.members
        ));
    }
    if config.batch == 0 || config.batch > rendezvous_proto::MAX_REGISTER_BATCH {
        return Err(format!(
            "--batch must be 1..={}",
            rendezvous_proto::MAX_REGISTER_BATCH
        ));
    }
    let now = now_ms();
    let expires = now + 2 * 3_600_000;
    let (population, calibration, before) =
        tokio::task::block_in_place(|| populate(&config, now, expires));
    let ours = run_ours(
        &config,
        &population,
        TimedRecords::Refresh,
        config.batch,
        Target::Rdht,
        "rdht   ",
    )
    .await?;
    let refresh = if config.batch == 1 {
        ours.clone()
    } else {
        run_ours(
            &config,
            &population,
            TimedRecords::Refresh,
            1,
            Target::Rdht,
            "refresh",
        )
        .await?
    };
    let seat = run_ours(
        &config,
        &population,
        TimedRecords::Seat,
        config.batch,
        Target::Rdht,
        "seat   ",
    )
    .await?;
    let after = measure_limit(calibration.as_ref(), "after the run", config.progress);
    let (baseline, floor, floor_batched, floor_verified) = if config.baseline {
        let baseline = run_baseline(&config, &population).await?;
        let floor = run_ours(
            &config,
            &population,
            TimedRecords::Refresh,
            1,
            Target::Floor,
            "floor  ",
        )
        .await?;
        let floor_batched = if config.batch == 1 {
            floor.clone()
        } else {
            run_ours(
                &config,
                &population,
                TimedRecords::Refresh,
                config.batch,
                Target::Floor,
                "floor-b",
            )
            .await?
        };
        let floor_verified = run_ours(
            &config,
            &population,
            TimedRecords::Refresh,
            1,
            Target::FloorVerified,
            "floor-v",
        )
        .await?;
        (
            Some(baseline),
            Some(floor),
            Some(floor_batched),
            Some(floor_verified),
        )
    } else {
        (None, None, None, None)
    };
    Ok(BenchReport {
        ours,
        refresh,
        seat,
        baseline,
        floor,
        floor_batched,
        floor_verified,
        limits: before.into_iter().chain(after).collect(),
        config,
    })
}

/// `rdht-bench bench-floor-server`: rdht's network stack (the swarm every
/// rdht node builds, TCP + Noise + Yamux, request-response with the rdht
/// codec) answering every registration `Registered` at once, on the event
/// loop, with no validation: what one record per request costs before any
/// work, the floor under `bench`'s loads. It keeps what it is sent in
/// plain maps (a namespace record per quorum key, the last record per
/// member) and answers a discover with them, so discover latency under a
/// load against it is the floor of the real server's.
///
/// With `verify_envelopes`, each peer record's envelope signature is
/// checked first ([`rendezvous_proto::seated::check_envelope`], on the event
/// loop, as libp2p-rendezvous checks its signed peer records), and a
/// record that fails is answered `InvalidEnvelopeSignature` and not kept:
/// the floor of a protocol that must check one Ed25519 signature per
/// record.
pub async fn run_floor_server(listen: Multiaddr, verify_envelopes: bool) -> Result<(), BenchError> {
    use rendezvous_proto::{Cookie, DiscoverAnswer, DiscoveredPeer, NamespaceRecord, PeerRecord};
    let keypair = Keypair::generate_ed25519();
    let peer_id = keypair.public().to_peer_id();
    let mut swarm =
        build_swarm(keypair, &SwarmSettings::default(), None).map_err(|e| e.to_string())?;
    swarm.listen_on(listen).map_err(|e| e.to_string())?;
    const TTL_MS: u64 = 2 * 3_600_000;
    let mut namespaces: HashMap<rendezvous_proto::QuorumKey, NamespaceRecord> = HashMap::new();
    let mut peers: HashMap<rendezvous_proto::QuorumKey, BTreeMap<u32, PeerRecord>> = HashMap::new();
    let keep = |peers: &mut HashMap<_, BTreeMap<u32, PeerRecord>>, record: PeerRecord| {
        peers
            .entry(record.quorum_key())
            .or_default()
            .insert(record.index(), record);
    };
    let checked = |record: &PeerRecord| {
        if verify_envelopes {
            rendezvous_proto::seated::check_envelope(record)
        } else {
            Ok(())
        }
    };
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => {
                println!("listening on {address}/p2p/{peer_id}");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Rr(request_response::Event::Message {
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            })) => {
                let response = match request {
                    Frame::Message(Request::RegisterPeers(records)) => {
                        let outcomes = records
                            .into_iter()
                            .map(|r| {
                                checked(&r)?;
                                keep(&mut peers, r);
                                Ok(TTL_MS)
                            })
                            .collect();
                        Response::RegisteredPeers(outcomes)
                    }
                    Frame::Message(Request::RegisterPeer(record)) => match checked(&record) {
                        Ok(()) => {
                            keep(&mut peers, record);
                            Response::Registered { ttl_ms: TTL_MS }
                        }
                        Err(code) => Response::Rejected(code),
                    },
                    Frame::Message(Request::RegisterNamespace(record)) => {
                        if let Some(key) = record.quorum_key() {
                            namespaces.insert(key, record);
                        }
                        Response::Registered { ttl_ms: TTL_MS }
                    }
                    Frame::Message(Request::Discover { quorum_key, .. }) => {
                        match namespaces.get(&quorum_key) {
                            Some(namespace) => Response::Discovered(DiscoverAnswer {
                                namespace: namespace.clone(),
                                peers: peers
                                    .get(&quorum_key)
                                    .into_iter()
                                    .flat_map(|m| m.values())
                                    .map(|record| DiscoveredPeer {
                                        record: record.clone(),
                                        last_seen_ms: None,
                                    })
                                    .collect(),
                                cookie: Cookie::default(),
                            }),
                            None => Response::Rejected(StatusCode::UnknownNamespace),
                        }
                    }
                    _ => Response::Rejected(StatusCode::UnknownNamespace),
                };
                let _ = swarm
                    .behaviour_mut()
                    .rr
                    .send_response(channel, Frame::Message(response));
            }
            _ => {}
        }
    }
}

/// The registration caps of libp2p-rendezvous's server (its defaults
/// unless raised, as `bench --stored` does to hold the prefill).
#[derive(Debug, Clone, Copy)]
pub struct BaselineCaps {
    /// Registrations one peer may hold (libp2p's default: 32).
    pub per_peer: usize,
    /// Registrations in all (libp2p's default: 10,000).
    pub total: usize,
}

impl Default for BaselineCaps {
    fn default() -> Self {
        Self {
            per_peer: rendezvous::server::MAX_REGISTRATION_PEER,
            total: rendezvous::server::MAX_REGISTRATIONS_TOTAL,
        }
    }
}

/// `rdht-bench bench-baseline-server`: libp2p-rendezvous's server behaviour
/// (default configuration but for `caps`) over TCP + Noise + Yamux,
/// printing `listening on ADDR/p2p/ID` like `rdht rendezvous`.
pub async fn run_baseline_server(listen: Multiaddr, caps: BaselineCaps) -> Result<(), BenchError> {
    let keypair = Keypair::generate_ed25519();
    let peer_id = keypair.public().to_peer_id();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| e.to_string())?
        .with_behaviour(|_| {
            rendezvous::server::Behaviour::new(
                rendezvous::server::Config::default()
                    .with_max_registration_per_peer(caps.per_peer)
                    .with_max_registration_total(caps.total),
            )
        })
        .map_err(|e| e.to_string())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    swarm.listen_on(listen).map_err(|e| e.to_string())?;
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            println!("listening on {address}/p2p/{peer_id}");
        }
    }
}
