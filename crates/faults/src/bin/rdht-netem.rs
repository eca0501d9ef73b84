//! `rdht-netem TAP...`: the testbed's link emulator (see `faults::netem`).
//! Creates one TAP device per name, prints `ready`, then reads rule
//! commands (`link`, `cut`, `heal`, `clear`) on standard input until it
//! closes. `RDHT_NETEM_SEED` seeds loss and jitter.

fn main() -> std::process::ExitCode {
    let taps: Vec<String> = std::env::args().skip(1).collect();
    if taps.is_empty() {
        eprintln!("usage: rdht-netem TAP_NAME...");
        return std::process::ExitCode::from(2);
    }
    let seed = std::env::var("RDHT_NETEM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    let stdin = std::io::stdin().lock();
    match faults::netem::run(&taps, seed, stdin, std::io::stdout()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rdht-netem: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
