//! The verification threads of a rendezvous node: one per core, each
//! running the server core's [`VerifyJob`]s off the event loop, at the
//! lowest priority, giving its core up at the job's checkpoints
//! ([`Yielder`]). A job that panics is caught and reported by its id.

use std::sync::Arc;
use std::time::Duration;

use dht::{JobId, VerifyDone, VerifyJob};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// What a verification thread hands back: the verdicts, or the id of a
/// job that panicked.
pub type JobResult = Result<VerifyDone, JobId>;

/// Starts `threads` verification threads: each takes jobs, runs them on
/// its own core, and sends the results back. One thread per core keeps
/// every core busy without a second pool underneath (the batch verifier
/// runs on the calling thread). They stop when the driver drops its end.
pub fn spawn_verifiers(
    threads: usize,
) -> (
    std::sync::mpsc::Sender<VerifyJob>,
    mpsc::UnboundedReceiver<JobResult>,
) {
    let (job_tx, job_rx) = std::sync::mpsc::channel::<VerifyJob>();
    let job_rx = Arc::new(std::sync::Mutex::new(job_rx));
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    for _ in 0..threads.max(1) {
        let job_rx = job_rx.clone();
        let done_tx = done_tx.clone();
        let spawned = std::thread::Builder::new()
            .name("rdht-verify".into())
            .spawn(move || {
                use rand::SeedableRng;
                let mut rng = rand::rngs::StdRng::from_entropy();
                lower_priority_of_this_thread();
                loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => break,
                    };
                    let Ok(job) = job else { break };
                    if done_tx.send(run_job(job, &mut rng)).is_err() {
                        break;
                    }
                }
            });
        if let Err(e) = spawned {
            // With none at all, the driver verifies on its own task.
            warn!("no verification thread: {e}");
        }
    }
    (job_tx, done_rx)
}

/// Runs one job, yielding the core at its checkpoints (see [`Yielder`]).
/// A panic inside is caught and reported as the job's failure.
pub fn run_job<R: rand_core::RngCore>(job: VerifyJob, rng: &mut R) -> JobResult {
    let id = job.id;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut yielder = Yielder::new();
        job.run(rng, Some(&mut || yielder.checkpoint()))
    }))
    .map_err(|_| {
        warn!(
            ?id,
            "a verification job panicked: its batch is answered Internal"
        );
        id
    })
}

/// Verification is throughput work; the event loop (discover answers,
/// pings) is latency work. The verification threads therefore run at the
/// lowest priority (`SCHED_IDLE`, or nice 10 where `chrt` fails): when the
/// cores are saturated by pairings, a thread of the event loop that wakes
/// up gets a core at once (and [`Yielder`] covers the case where it was
/// preempted instead). Linux only (a thread is a process for `chrt` and
/// `renice`); elsewhere, or without either, this does nothing.
fn lower_priority_of_this_thread() {
    let Ok(link) = std::fs::read_link("/proc/thread-self") else {
        return;
    };
    let Some(tid) = link.file_name().and_then(|t| t.to_str()) else {
        return;
    };
    let run = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    // SCHED_IDLE: runs only when no ordinary thread wants the core, and is
    // preempted at once when one wakes up; nice 10 is the fallback.
    if !run("chrt", &["--idle", "-p", "0", tid]) && !run("renice", &["-n", "10", "-p", tid]) {
        debug!("verification thread keeps its priority");
    }
}

/// Most time a verification thread computes without giving its core up.
const YIELD_EVERY: Duration = Duration::from_micros(200);

/// Gives the core up (`sched_yield`) at the verification's checkpoints,
/// at most every [`YIELD_EVERY`].
///
/// Why, although the verification threads are `SCHED_IDLE`: Linux's EEVDF
/// scheduler preempts an idle-policy thread at once when an ordinary one
/// *wakes up*, but when an ordinary thread is preempted by another (a
/// tokio worker by the thread it just woke, say) and becomes runnable
/// again, it has just run more than its share and is "not eligible", so
/// the scheduler may hand the core to the idle-policy thread until the
/// next tick: 4 ms at `HZ=250`. Measured with `perf sched` under
/// `rdht bench`, 1% of such waits took over 1 ms (up to 5.2 ms), which
/// was the discover p99. A yield is a scheduling point where the waiting
/// thread, eligible again by then, wins at once.
struct Yielder {
    last: std::time::Instant,
}

impl Yielder {
    fn new() -> Self {
        Self {
            last: std::time::Instant::now(),
        }
    }

    fn checkpoint(&mut self) {
        if self.last.elapsed() >= YIELD_EVERY {
            std::thread::yield_now();
            self.last = std::time::Instant::now();
        }
    }
}
