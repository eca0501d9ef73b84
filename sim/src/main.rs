//! `sim`: the command line of the deterministic simulator.

use std::process::ExitCode;

use clap::Parser;
use sim::{scenarios, Report, RunOptions};

/// Deterministic adversarial simulation of rdht: rendezvous nodes,
/// quorums, clients and attackers over a simulated network, driving the
/// real state machines with real cryptography.
#[derive(Parser, Debug)]
#[command(name = "sim", version)]
struct Cli {
    /// Scenario to run (honest, outsider, forged-namespace, replay,
    /// bad-dealer, malicious-rendezvous, churn, partition, flood,
    /// busy-rendezvous, lying-rendezvous, poison, reflection, put-flood),
    /// or all.
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Seed of the world RNG.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Quorums (default: the scenario's).
    #[arg(long)]
    quorums: Option<u32>,
    /// Members per quorum (default: the scenario's).
    #[arg(long)]
    members: Option<u32>,
    /// Threshold (default: the scenario's).
    #[arg(long)]
    threshold: Option<u32>,
    /// Rendezvous nodes (default: the scenario's).
    #[arg(long)]
    rendezvous: Option<u32>,
    /// Adversaries; what they are depends on the scenario (default: the scenario's).
    #[arg(long)]
    adversaries: Option<u32>,
    /// Message loss probability in [0, 1].
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Replication factor k (replicas per namespace).
    #[arg(long, default_value_t = 3)]
    replication: u32,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// After each scenario, also measure the cryptographic floor of its
    /// parameters (the DKG, signatures and checks an honest run cannot do
    /// without, on every core, no simulation) and print it beside the
    /// scenario's wall time. See `sim/src/floor.rs`.
    #[arg(long)]
    floor: bool,
    /// Draw registered and discoverable peers over virtual time into this SVG file.
    #[arg(long)]
    plot: Option<String>,
    /// Test only: rendezvous nodes accept what their store refuses, and
    /// dial without a per-IP cap.
    #[arg(long, hide = true)]
    broken_validator: bool,
    /// Test only: members end on any refusal they do not special-case (the
    /// behaviour before the member core).
    #[arg(long, hide = true)]
    broken_member: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let names: Vec<&str> = if cli.scenario == "all" {
        scenarios::NAMES.to_vec()
    } else {
        vec![cli.scenario.as_str()]
    };
    if !(0.0..=1.0).contains(&cli.loss) {
        eprintln!("--loss must be within [0, 1]");
        return ExitCode::from(2);
    }
    let mut reports: Vec<Report> = Vec::new();
    for name in names {
        let Some(mut params) = scenarios::default_params(name, cli.seed) else {
            eprintln!(
                "unknown scenario {name:?}; known: {} or all",
                scenarios::NAMES.join(", ")
            );
            return ExitCode::from(2);
        };
        if let Some(v) = cli.quorums {
            params.quorums = v;
        }
        if let Some(v) = cli.members {
            params.members = v;
        }
        if let Some(v) = cli.threshold {
            params.threshold = v;
        }
        if let Some(v) = cli.rendezvous {
            params.rendezvous = v;
        }
        if let Some(v) = cli.adversaries {
            params.adversaries = v;
        }
        params.loss = cli.loss;
        params.replication = cli.replication;
        params.broken_validator = cli.broken_validator;
        params.broken_member = cli.broken_member;
        if let Err(e) = validate(&params) {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
        let options = RunOptions {
            sample_ms: if cli.plot.is_some() { 500 } else { 0 },
        };
        let shape = (
            params.quorums,
            params.members,
            params.threshold,
            params.replication,
        );
        let Some(report) = sim::run(params, options) else {
            return ExitCode::from(2);
        };
        if !cli.json {
            print!("{}", report.table());
        }
        if cli.floor {
            let (quorums, members, threshold, replicas) = shape;
            match sim::floor::measure(quorums, members, threshold, replicas, cli.seed) {
                Ok(floor) => print_floor(&floor, report.wall_s, cli.json),
                Err(e) => {
                    eprintln!("floor: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        if !report.passed {
            eprint!(
                "{}",
                sim::invariants::Verdict {
                    passed: false,
                    violations: report.violations.clone(),
                    replay: report.replay.clone(),
                }
                .describe(&report.scenario)
            );
        }
        reports.push(report);
    }
    if cli.json {
        let out = if reports.len() == 1 {
            serde_json::to_string_pretty(&reports[0])
        } else {
            serde_json::to_string_pretty(&reports)
        };
        match out {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("json: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(path) = &cli.plot {
        if let Err(e) = sim::plot::draw(path, &reports) {
            eprintln!("plot: {e}");
            return ExitCode::from(2);
        }
    }
    if reports.iter().all(|r| r.passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Prints the floor beside the scenario's wall time (to stderr with
/// `--json`, whose stdout is the report).
fn print_floor(floor: &sim::floor::Floor, scenario_wall_s: f64, json: bool) {
    let wall = floor.wall.as_secs_f64();
    let p = &floor.parts;
    let line = format!(
        "  crypto floor: wall {wall:.2} s on {} threads (scenario / floor = {:.2}); \
         summed over quorums: dkg {:.1} s, signing {:.1} s, member checks {:.1} s, \
         replica checks {:.1} s, client checks {:.1} s (total {:.1} s)",
        floor.threads,
        if wall > 0.0 {
            scenario_wall_s / wall
        } else {
            0.0
        },
        p.dkg.as_secs_f64(),
        p.signing.as_secs_f64(),
        p.member_checks.as_secs_f64(),
        p.replica_checks.as_secs_f64(),
        p.client_checks.as_secs_f64(),
        p.total().as_secs_f64(),
    );
    if json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

/// Refuses parameters the cores would refuse.
fn validate(p: &sim::Params) -> Result<(), String> {
    if p.quorums == 0 || p.members == 0 || p.rendezvous == 0 {
        return Err("quorums, members and rendezvous must be at least 1".to_owned());
    }
    if p.threshold == 0 || p.threshold > p.members {
        return Err(format!("threshold must be in 1..={}", p.members));
    }
    if p.members > 1024 {
        return Err("members must be at most 1024 (the protocol's limit)".to_owned());
    }
    if p.replication == 0 || p.replication > p.rendezvous {
        return Err(format!("replication must be in 1..={}", p.rendezvous));
    }
    Ok(())
}
