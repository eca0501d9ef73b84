//! The command line (clap): `bench`, `bench-discover`, and the hidden
//! `bench-baseline-server` that `bench` runs.
//!
//! The flags, defaults and output are those the `rdht` binary had before
//! the load generators left it (`rdht bench`, `rdht bench-discover`,
//! `rdht bench-baseline-server`), plus `bench --rdht PATH`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use libp2p::Multiaddr;
use node::cli::{block_on, fail, init_logs, stdin_closed};
use node::duration::parse_duration;

/// The name of the production binary `bench` runs `rdht rendezvous` from.
pub const RDHT_BIN: &str = "rdht";

/// rdht-bench: rdht's load generators, beside libp2p's rendezvous server.
#[derive(Debug, Parser)]
#[command(name = "rdht-bench", version, about, long_about = None)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Measure discover latency for a 64-member namespace over loopback.
    BenchDiscover {
        /// Number of discover requests to time.
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// Members in the namespace.
        #[arg(long, default_value_t = 64)]
        members: u32,
        /// Also time the same discover through the standard
        /// `/rendezvous/1.0.0` protocol with libp2p-rendezvous's own client
        /// (which verifies every record it receives).
        #[arg(long)]
        standard: bool,
    },
    /// Registration throughput under load over loopback, beside libp2p's rendezvous server.
    Bench(BenchArgs),
    /// Time from a quorum's DKG until all its members are discoverable, over loopback.
    BenchDiscoverable {
        /// Members in the quorum (each a real member with its own swarm).
        #[arg(long, default_value_t = 16)]
        members: u32,
        /// Rendezvous nodes the members register at.
        #[arg(long, default_value_t = 3)]
        rendezvous: usize,
        /// Give up after this long.
        #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration)]
        timeout: Duration,
        /// Print the figures as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Discover latency and honest refreshes at an `rdht rendezvous` node, without and then with a flood of junk Kademlia PUTs.
    PutFlood {
        /// Length of each phase (quiet, then flood).
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// Members of the quorum that refreshes and is discovered.
        #[arg(long, default_value_t = 16)]
        members: u32,
        /// PUTs the flooder keeps in flight.
        #[arg(long, default_value_t = 8)]
        in_flight: usize,
        /// A fresh flooder identity every this many PUTs (0: one identity throughout).
        #[arg(long, default_value_t = 1)]
        fresh_identity_every: u64,
        /// Print the figures as JSON.
        #[arg(long)]
        json: bool,
        /// The `rdht` binary that runs the node [default: `rdht` next to this executable].
        #[arg(long, value_name = "PATH")]
        rdht: Option<PathBuf>,
    },
    /// rdht's network stack answering at once, for `rdht-bench bench` to measure the floor (prints its address).
    #[command(hide = true)]
    BenchFloorServer {
        /// Address to listen on.
        #[arg(long, value_name = "MULTIADDR", default_value = "/ip4/127.0.0.1/tcp/0")]
        listen: Multiaddr,
        /// Stop when standard input closes.
        #[arg(long)]
        exit_with_stdin: bool,
        /// Check each peer record's envelope signature before answering
        /// (the `floor-v` load).
        #[arg(long)]
        verify_envelopes: bool,
    },
    /// libp2p-rendezvous's server, for `rdht-bench bench` to measure (prints its address).
    #[command(hide = true)]
    BenchBaselineServer {
        /// Address to listen on.
        #[arg(long, value_name = "MULTIADDR", default_value = "/ip4/127.0.0.1/tcp/0")]
        listen: Multiaddr,
        /// Stop when standard input closes.
        #[arg(long)]
        exit_with_stdin: bool,
        /// Registrations one peer may hold (libp2p's default: 32).
        #[arg(long, value_name = "N", default_value_t = crate::bench::BaselineCaps::default().per_peer)]
        max_registrations_per_peer: usize,
        /// Registrations in all (libp2p's default: 10,000).
        #[arg(long, value_name = "N", default_value_t = crate::bench::BaselineCaps::default().total)]
        max_registrations_total: usize,
    },
}

/// `rdht-bench bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Length of the timed phase, per server.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Number of quorums (namespaces).
    #[arg(long, default_value_t = 16)]
    pub quorums: u32,
    /// Members per quorum (each a simulated member with its own identity and connection).
    #[arg(long, default_value_t = 32)]
    pub members: u32,
    /// Threshold of every quorum [default: 2n/3 + 1].
    #[arg(long)]
    pub threshold: Option<u32>,
    /// Records per RegisterPeers request (1: one RegisterPeer per record).
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Most records in flight over all members.
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Records per second to aim at (0: as fast as the server answers).
    #[arg(long, default_value_t = 0)]
    pub rate: u32,
    /// Time between two discover requests of the prober.
    #[arg(long, value_name = "DURATION", default_value = "10ms", value_parser = parse_duration)]
    pub discover_interval: Duration,
    /// Most records to pre-sign per load [default: refreshes for 15,000/s
    /// or 1.2 x --rate; fresh seats for 1.5 x the measured pairing limit].
    #[arg(long)]
    pub max_registrations: Option<usize>,
    /// Records stored at each server before its timed phase: seats
    /// registered through the real validation (ours), registrations
    /// (libp2p's), by the same members.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub stored: usize,
    /// Skip libp2p's rendezvous server.
    #[arg(long)]
    pub no_baseline: bool,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
    /// The `rdht` binary that runs the server under test [default: `rdht`
    /// next to this executable, i.e. in the same target directory].
    #[arg(long, value_name = "PATH")]
    pub rdht: Option<PathBuf>,
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    block_on(run(Cli::parse()))
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::BenchDiscover {
            requests,
            members,
            standard,
        } => {
            init_logs("warn");
            match crate::bench_discover::bench_discover(members, requests, standard).await {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::Bench(args) => {
            init_logs("warn");
            run_bench(args).await
        }
        Command::BenchDiscoverable {
            members,
            rendezvous,
            timeout,
            json,
        } => {
            init_logs("warn");
            match crate::bench_discoverable::bench_discoverable(members, rendezvous, timeout).await
            {
                Ok(d) if json => match serde_json::to_string(&d) {
                    Ok(line) => {
                        println!("{line}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(e),
                },
                Ok(d) => {
                    println!(
                        "{} members (threshold {}), {} rendezvous: DKG {:.3} s, then all discoverable after {:.3} s",
                        d.members, d.threshold, d.rendezvous, d.dkg_s, d.discoverable_after_dkg_s
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::PutFlood {
            duration,
            members,
            in_flight,
            fresh_identity_every,
            json,
            rdht,
        } => {
            init_logs("warn");
            let rdht_exe = match locate_rdht(rdht) {
                Ok(path) => path,
                Err(e) => return fail(e),
            };
            let config = crate::bench_put_flood::PutFloodConfig {
                rdht_exe,
                duration,
                members,
                in_flight,
                fresh_identity_every,
            };
            match crate::bench_put_flood::bench_put_flood(config).await {
                Ok(f) if json => match serde_json::to_string(&f) {
                    Ok(line) => {
                        println!("{line}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(e),
                },
                Ok(f) => {
                    println!("{}", crate::bench_put_flood::to_text(&f));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::BenchFloorServer {
            listen,
            exit_with_stdin,
            verify_envelopes,
        } => {
            init_logs("warn");
            tokio::select! {
                result = crate::bench::run_floor_server(listen, verify_envelopes) => match result {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(e),
                },
                _ = stdin_closed(), if exit_with_stdin => ExitCode::SUCCESS,
            }
        }
        Command::BenchBaselineServer {
            listen,
            exit_with_stdin,
            max_registrations_per_peer,
            max_registrations_total,
        } => {
            init_logs("warn");
            let caps = crate::bench::BaselineCaps {
                per_peer: max_registrations_per_peer,
                total: max_registrations_total,
            };
            tokio::select! {
                result = crate::bench::run_baseline_server(listen, caps) => match result {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(e),
                },
                _ = stdin_closed(), if exit_with_stdin => ExitCode::SUCCESS,
            }
        }
    }
}

/// `rdht` next to `exe` (the same directory, so the same target directory
/// and profile when both come from one cargo build).
pub fn rdht_next_to(exe: &Path) -> PathBuf {
    let name = format!("{RDHT_BIN}{}", std::env::consts::EXE_SUFFIX);
    exe.parent()
        .map_or_else(|| PathBuf::from(&name), |dir| dir.join(&name))
}

/// The `rdht` binary to run: `explicit` (from `--rdht`) if given, else
/// [`rdht_next_to`] this executable. Either must exist; the error names
/// the path and how to build it.
pub fn locate_rdht(explicit: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("--rdht {}: no such file", path.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("locating rdht-bench itself: {e}"))?;
    let rdht = rdht_next_to(&exe);
    if rdht.is_file() {
        Ok(rdht)
    } else {
        Err(format!(
            "{} not found: rdht-bench runs the server under test from the rdht binary next to \
             itself; build it with `cargo build --release -p node` (same profile and target \
             directory as rdht-bench), or pass --rdht PATH",
            rdht.display()
        ))
    }
}

async fn run_bench(args: BenchArgs) -> ExitCode {
    let rdht = match locate_rdht(args.rdht) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return fail(format!("locating the rdht-bench binary: {e}")),
    };
    let mut config = crate::bench::BenchConfig::new(rdht, exe);
    config.duration = args.duration;
    config.quorums = args.quorums;
    config.members = args.members;
    config.threshold = args
        .threshold
        .unwrap_or(args.members.saturating_mul(2) / 3 + 1)
        .min(args.members.max(1));
    config.batch = args.batch;
    config.window = args.window;
    config.rate = args.rate;
    config.discover_interval = args.discover_interval;
    config.max_registrations = args.max_registrations;
    config.stored = args.stored;
    config.baseline = !args.no_baseline;
    config.progress = true;
    let outcome = tokio::select! {
        outcome = crate::bench::run(config) => outcome,
        // Dropping the run kills the servers it started.
        _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
    };
    match outcome {
        Ok(report) => {
            if args.json {
                println!("{}", report.to_json_string());
            } else {
                print!("{}", report.to_text());
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
