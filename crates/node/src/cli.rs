//! The command line (clap): `keygen`, `rendezvous`, `quorum`, `discover`,
//! `demo`. The load generators live in the separate `rdht-bench` binary
//! (crates/bench).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use libp2p::Multiaddr;
use rendezvous_proto::QuorumKey;

use crate::duration::parse_duration;
use crate::metrics::Metrics;

/// rdht: a threshold-gated rendezvous DHT.
#[derive(Debug, Parser)]
#[command(name = "rdht", version, about, long_about = None)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make this node's libp2p identity (DIR/identity.key, mode 0600) and print its PeerId.
    Keygen {
        /// Directory that keeps the identity.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
    /// Run a rendezvous node (a Kademlia server that stores and serves quorums' records).
    Rendezvous(RendezvousArgs),
    /// Run a quorum member: DKG (unless DIR has a key share), then register and stay online.
    Quorum(QuorumArgs),
    /// Ask a rendezvous node for a quorum's peers and verify every record.
    Discover(DiscoverArgs),
    /// The whole system on loopback in one command, narrated.
    Demo,
}

/// `rdht rendezvous`.
#[derive(Debug, Args)]
pub struct RendezvousArgs {
    /// Address to listen on.
    #[arg(
        long,
        value_name = "MULTIADDR",
        default_value = "/ip4/0.0.0.0/tcp/4001"
    )]
    pub listen: Vec<Multiaddr>,
    /// Another rendezvous node to join (`.../p2p/<peer id>`); repeatable.
    #[arg(long, value_name = "MULTIADDR_WITH_P2P")]
    pub bootstrap: Vec<Multiaddr>,
    /// Keep the identity and the accepted records (embedded database) here;
    /// without it, the identity is ephemeral and records live in memory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Time between liveness pings of each registered peer (e.g. 500ms, 5s).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub ping_interval: Duration,
    /// Consecutive missed pings after which a peer is no longer listed.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub ping_misses: u32,
    /// Serve Prometheus metrics (text format) on this address, e.g. 127.0.0.1:9100.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Registrations (namespaces and peer records) one remote peer may hold
    /// here at once. The default suits open networks; raise it where one
    /// node is a member of many quorums (or for `rdht-bench`, whose members
    /// each register in many namespaces).
    #[arg(long, value_name = "N", default_value_t = dht::Quotas::default().max_registrations_per_source)]
    pub max_registrations_per_source: usize,
    /// Dial private (and loopback) addresses for liveness checks even when
    /// listening on a global address. Without it, a node dials only the
    /// scopes it listens on itself: global addresses if it has one; private
    /// ones too if its best address is private; loopback ones too if it
    /// listens on loopback only (tests, the demo).
    #[arg(long)]
    pub allow_private_addrs: bool,
    /// Stop when standard input closes (`rdht-bench bench` runs servers
    /// so, and they die with it).
    #[arg(long, hide = true)]
    pub exit_with_stdin: bool,
}

/// `rdht quorum`.
#[derive(Debug, Args)]
pub struct QuorumArgs {
    /// Directory with the identity and (after the DKG) key_share.json.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// The quorum file (TOML: threshold, optional kind, [[member]] peer_id + addr).
    #[arg(long, value_name = "FILE")]
    pub quorum: PathBuf,
    /// Address to listen on (the one the quorum file lists for this member).
    #[arg(
        long,
        value_name = "MULTIADDR",
        default_value = "/ip4/0.0.0.0/tcp/4002"
    )]
    pub listen: Vec<Multiaddr>,
    /// Rendezvous node to register at (`.../p2p/<peer id>`); repeatable.
    #[arg(long, value_name = "MULTIADDR_WITH_P2P", required = true)]
    pub rendezvous: Vec<Multiaddr>,
    /// Lifetime of the registrations; they are refreshed at half of it.
    #[arg(long, value_name = "DURATION", default_value = "2h", value_parser = parse_duration)]
    pub ttl: Duration,
    /// Length of each DKG phase (deal, response, justification).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub dkg_timeout: Duration,
    /// Stop with an error (exit code 2) once no rendezvous node has held a
    /// registration of this member for this long. A rendezvous node's
    /// refusal alone never stops a member.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub give_up_after: Duration,
    /// Serve Prometheus metrics (text format) on this address.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
}

/// `rdht discover`.
#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// The rendezvous node to ask (`.../p2p/<peer id>`).
    #[arg(long, value_name = "MULTIADDR_WITH_P2P")]
    pub rendezvous: Multiaddr,
    /// The quorum key (hex of the 48-byte compressed G1 point).
    #[arg(
        long,
        value_name = "HEX",
        required_unless_present = "kind",
        conflicts_with = "kind"
    )]
    pub quorum_key: Option<QuorumKey>,
    /// List every quorum of this kind instead.
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for the answer. The default leaves room for a
    /// node's own lookup (5 s, `dht::LOOKUP_TIMEOUT_MS`): a node that does
    /// not hold the namespace answers within it, found or `LookupTimedOut`.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Logs to standard error at `default` (or `RUST_LOG`), with kad's
/// warnings about a lone node silenced. Shared by `rdht` and `rdht-bench`.
pub fn init_logs(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // kad warns about bootstrapping a lone node; that is normal here.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!("{default},libp2p_kad=error"))
        });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs `command` to completion on a two-thread tokio runtime (the
/// binaries' entry points).
pub fn block_on(command: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(command)
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    block_on(run(Cli::parse()))
}

/// Prints `error: message` and gives the failure exit code.
pub fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

/// Why a command could not start.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The metrics endpoint could not listen.
    #[error("--metrics {addr}: {source}")]
    Metrics {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The key share file exists but could not be read, or group or
    /// others can access it.
    #[error(transparent)]
    ReadKeyShare(#[from] crate::identity::SecretFileError),
    /// The key share file is not a key share.
    #[error("{path}: key share refused: {source}")]
    KeyShare {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

async fn start_metrics(
    addr: Option<SocketAddr>,
    metrics: &std::sync::Arc<Metrics>,
) -> Result<(), CliError> {
    if let Some(addr) = addr {
        let bound = crate::metrics::serve(addr, metrics.clone())
            .await
            .map_err(|source| CliError::Metrics { addr, source })?;
        tracing::info!("metrics on http://{bound}/metrics");
    }
    Ok(())
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Keygen { data_dir } => match crate::identity::load_or_create(&data_dir) {
            Ok(k) => {
                println!("{}", k.public().to_peer_id());
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Rendezvous(args) => {
            init_logs("info");
            run_rendezvous(args).await
        }
        Command::Quorum(args) => {
            init_logs("info");
            run_quorum(args).await
        }
        Command::Discover(args) => {
            init_logs("warn");
            run_discover(args).await
        }
        Command::Demo => {
            // The narration says what happens; logs only for failures.
            init_logs("error");
            match crate::demo::run().await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
    }
}

async fn run_rendezvous(args: RendezvousArgs) -> ExitCode {
    let keypair = match &args.data_dir {
        Some(dir) => match crate::identity::load_or_create(dir) {
            Ok(k) => k,
            Err(e) => return fail(e),
        },
        None => libp2p::identity::Keypair::generate_ed25519(),
    };
    let metrics = Metrics::new();
    if let Err(e) = start_metrics(args.metrics, &metrics).await {
        return fail(e);
    }
    let mut store = dht::StoreConfig::default();
    store.liveness.ping_interval_ms = args.ping_interval.as_millis().max(1) as u64;
    store.liveness.max_misses = args.ping_misses.max(1);
    store.quotas.max_registrations_per_source = args.max_registrations_per_source.max(1);
    let config = crate::rendezvous::RendezvousConfig {
        listen: args.listen,
        bootstrap: args.bootstrap,
        data_dir: args.data_dir.map(|d| d.join("records")),
        store,
        metrics,
        allow_private_addrs: args.allow_private_addrs,
    };
    let handle = match crate::rendezvous::start(keypair, config).await {
        Ok(h) => h,
        Err(e) => return fail(e),
    };
    for addr in &handle.listen_addrs {
        println!("listening on {addr}/p2p/{}", handle.peer_id);
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("Ctrl-C: stopping");
            handle.shutdown().await;
        }
        _ = terminated() => {
            tracing::info!("SIGTERM: stopping");
            handle.shutdown().await;
        }
        _ = stdin_closed(), if args.exit_with_stdin => {
            handle.shutdown().await;
        }
        _ = wait_forever() => {}
    }
    ExitCode::SUCCESS
}

/// Resolves on SIGTERM (what service managers send to stop a daemon), so
/// the node stops as cleanly as on Ctrl-C; never elsewhere.
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            term.recv().await;
            return;
        }
    }
    wait_forever().await;
}

/// Resolves when standard input reaches its end (or fails): how a server
/// run by a load generator (`--exit-with-stdin`) dies with it.
pub async fn stdin_closed() {
    use tokio::io::AsyncReadExt;
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

async fn wait_forever() {
    std::future::pending::<()>().await
}

/// The key share at `path` and its epoch, if there is one; refused if
/// group or others can access the file (see
/// [`crate::identity::read_secret_file`]).
fn load_key_share(path: &Path) -> Result<Option<crate::quorum::KeyShareFile>, CliError> {
    let Some(bytes) = crate::identity::read_secret_file(path)? else {
        return Ok(None);
    };
    crate::quorum::KeyShareFile::decode(&bytes)
        .map(Some)
        .map_err(|source| CliError::KeyShare {
            path: path.to_owned(),
            source,
        })
}

async fn run_quorum(args: QuorumArgs) -> ExitCode {
    let keypair = match crate::identity::load_or_create(&args.data_dir) {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    let quorum = match crate::quorum_file::QuorumFile::load(&args.quorum) {
        Ok(q) => q,
        Err(e) => return fail(e),
    };
    let peer_id = keypair.public().to_peer_id();
    // At a resharing, a member of the previous epoch only may be leaving.
    let previous = quorum.transition.as_ref().map(|t| {
        let index = t.previous.iter().position(|m| m.peer_id == peer_id);
        (
            index.map(|i| i as u32 + 1),
            t.previous.len() as u32,
            t.previous_threshold,
        )
    });
    let leaving = previous.is_some_and(|(i, _, _)| i.is_some());
    let Some(index) = quorum.index_of(&peer_id).or(leaving.then_some(0)) else {
        return fail(format!(
            "this node ({peer_id}) is not listed in {}",
            args.quorum.display()
        ));
    };
    let share_path = args.data_dir.join(crate::quorum::KEY_SHARE_FILE);
    let key_share = match load_key_share(&share_path) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if let Some(crate::quorum::KeyShareFile { share, epoch }) = &key_share {
        // A share of the file's epoch is checked against its members, one
        // of the epoch before (to reshare) against the previous members.
        let expected = match previous {
            Some((Some(i), n, t)) if epoch.saturating_add(1) == quorum.epoch => Some((i, n, t)),
            _ if *epoch == quorum.epoch => Some((index, quorum.n(), quorum.threshold)),
            _ => None,
        };
        if let Some((i, n, t)) = expected {
            if share.index() != i || share.n != n || share.threshold() != t {
                return fail(format!(
                    "{}: the key share (index {}, n {}, threshold {}, epoch {epoch}) does not match the quorum file (index {i}, n {n}, threshold {t})",
                    share_path.display(), share.index(), share.n, share.threshold()
                ));
            }
        }
    }
    let metrics = Metrics::new();
    if let Err(e) = start_metrics(args.metrics, &metrics).await {
        return fail(e);
    }
    let bound = match crate::quorum::bind(keypair, &args.listen).await {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    for addr in &bound.listen_addrs {
        println!("member {index} listening on {addr}/p2p/{peer_id}");
    }
    let mut config = crate::quorum::MemberConfig::new(quorum, args.rendezvous);
    if let Some(file) = key_share {
        config.epoch = file.epoch;
        config.key_share = Some(file.share);
    }
    config.key_share_path = Some(share_path.clone());
    config.ttl = args.ttl;
    config.dkg_phase_timeout = args.dkg_timeout;
    config.give_up_after = args.give_up_after;
    config.metrics = metrics;
    let handle = match bound.start(config) {
        Ok(h) => h,
        Err(
            e @ crate::quorum::MemberError::Member(member::MemberError::KeyShareMismatch { .. }),
        ) => return fail(format!("{}: {e}", share_path.display())),
        Err(e) => return fail(e),
    };
    let mut status = handle.status.clone();
    let mut announced = false;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("Ctrl-C: unregistering");
                return match handle.shutdown().await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(e),
                };
            }
            changed = status.changed() => {
                if changed.is_err() || handle.is_finished() {
                    break;
                }
                let s = status.borrow().clone();
                if !announced && s.registered_at > 0 {
                    announced = true;
                    if let Some(qk) = s.quorum_key {
                        println!("registered: quorum key {qk}");
                    }
                }
            }
        }
    }
    // The member stopped on its own: a DKG failure, or no rendezvous node
    // accepted it for --give-up-after.
    drop(status);
    let result = handle.join().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run_discover(args: DiscoverArgs) -> ExitCode {
    let mut client = match crate::discover::Client::ephemeral() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    // Handovers followed from the key asked for (a key rotation).
    let mut chain = None;
    let (answers, problems) = match (&args.quorum_key, &args.kind) {
        (Some(qk), _) => match client
            .discover_following(&args.rendezvous, *qk, args.timeout)
            .await
        {
            Ok(followed) => {
                chain = Some(followed.chain);
                (vec![followed.answer], Vec::new())
            }
            Err(e) => return fail(e),
        },
        (None, Some(kind)) => match client
            .discover_kind(&args.rendezvous, kind, args.timeout)
            .await
        {
            Ok(r) => r,
            Err(e) => return fail(e),
        },
        (None, None) => return fail("give --quorum-key or --kind"),
    };
    for p in &problems {
        eprintln!("WARNING: {p}");
    }
    for a in &answers {
        for line in crate::discover::rejected_lines(a) {
            eprintln!("{line}");
        }
    }
    if args.json {
        let json = if args.kind.is_some() {
            serde_json::Value::Array(answers.iter().map(crate::discover::answer_json).collect())
        } else {
            let mut json = answers
                .first()
                .map(crate::discover::answer_json)
                .unwrap_or(serde_json::Value::Null);
            if let (Some(object), Some(chain)) = (json.as_object_mut(), &chain) {
                object.insert("handovers".into(), crate::discover::handovers_json(chain));
            }
            json
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        );
    } else {
        for line in chain.iter().flat_map(crate::discover::handover_lines) {
            println!("{line}");
        }
        if answers.is_empty() {
            println!("no verified quorum found");
        }
        for a in &answers {
            print!("{}", crate::discover::answer_table(a));
        }
        let rejected: usize = answers.iter().map(|a| a.rejected.len()).sum();
        if rejected == 0 && problems.is_empty() {
            println!("every record verified against the quorum key");
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::tests::{set_mode, temp_dir};
    use rand_core::SeedableRng;

    fn share_file(tag: &str) -> (PathBuf, dkg::KeyShare) {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
        let quorum = rendezvous_proto::testkit::TestQuorum::deal(3, 2, &mut rng);
        let share = quorum.shares[1].clone();
        let path = temp_dir(tag).join(crate::quorum::KEY_SHARE_FILE);
        std::fs::write(&path, serde_json::to_vec(&share).unwrap()).unwrap();
        (path, share)
    }

    /// A key share readable by group or others is refused with an error
    /// that names the file and the `chmod` that fixes it.
    #[cfg(unix)]
    #[test]
    fn secrets_on_disk_a_key_share_readable_by_group_or_others_is_refused() {
        let (path, _) = share_file("share-open");
        for loose in [0o644, 0o640, 0o604] {
            set_mode(&path, loose);
            let err = load_key_share(&path).expect_err("a loose key share must be refused");
            let text = err.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(
                text.contains(&format!("chmod 600 {}", path.display())),
                "{text}"
            );
        }
        if let Some(dir) = path.parent() {
            std::fs::remove_dir_all(dir).ok();
        }
    }

    #[test]
    fn secrets_on_disk_a_key_share_with_mode_0600_loads() {
        let (path, share) = share_file("share-tight");
        for tight in [0o600, 0o400] {
            set_mode(&path, tight);
            // Written before epochs: no `epoch` field, read as epoch 0.
            let loaded = load_key_share(&path).unwrap().expect("a share");
            assert_eq!((loaded.share, loaded.epoch), (share.clone(), 0));
        }
        if let Some(dir) = path.parent() {
            assert_eq!(load_key_share(&dir.join("missing.json")).unwrap(), None);
            std::fs::remove_dir_all(dir).ok();
        }
    }

    /// `key_share.json` gains `epoch` beside every field it had: written
    /// and read back, and an old file (no `epoch`) is epoch 0.
    #[test]
    fn key_share_file_epoch_round_trips_beside_the_old_fields() {
        let (path, share) = share_file("share-epoch");
        let bytes = crate::quorum::KeyShareFile::encode(&share, 7).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let old: serde_json::Value = serde_json::to_value(&share).unwrap();
        let mut fields: Vec<String> = json.as_object().unwrap().keys().cloned().collect();
        fields.sort();
        let mut expected: Vec<String> = old.as_object().unwrap().keys().cloned().collect();
        assert!(!expected.contains(&"epoch".to_owned()));
        expected.push("epoch".to_owned());
        expected.sort();
        assert_eq!(fields, expected);
        for (field, value) in old.as_object().unwrap() {
            assert_eq!(&json[field], value, "{field} changed");
        }
        assert_eq!(json["epoch"], 7);
        std::fs::write(&path, &bytes[..]).unwrap();
        set_mode(&path, 0o600);
        let loaded = load_key_share(&path).unwrap().expect("a share");
        assert_eq!(loaded.share, share);
        assert_eq!(loaded.epoch, 7);
        if let Some(dir) = path.parent() {
            std::fs::remove_dir_all(dir).ok();
        }
    }

    /// #16 problem 4: a node's own lookup deadline is at most half the
    /// client's default timeout, so a discover at a node that does not
    /// hold the namespace gets an answer (found, or `LookupTimedOut`),
    /// not the client's "no answer". With both at 10 s (before) it fails.
    #[test]
    fn the_client_default_timeout_leaves_room_for_the_nodes_lookup() {
        use clap::Parser;
        let cli = Cli::try_parse_from([
            "rdht",
            "discover",
            "--rendezvous",
            "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
            "--kind",
            "farmer",
        ])
        .expect("parses");
        let Command::Discover(args) = cli.command else {
            panic!("not a discover");
        };
        let lookup = Duration::from_millis(dht::LOOKUP_TIMEOUT_MS);
        assert!(
            args.timeout >= 2 * lookup,
            "{:?} vs {lookup:?}",
            args.timeout
        );
        assert!(
            crate::behaviour::kad_config_query_timeout() > lookup,
            "the core's deadline must come before kad's own query timeout"
        );
    }
}
