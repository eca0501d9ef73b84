# Common tasks. Every recipe is a plain cargo command: nothing requires `just`.

default:
    @just --list

# Run every test (the same command as CI and the README).
test:
    cargo test --workspace --release

# Criterion benchmarks (figures go into BENCHMARKS.md).
bench:
    cargo bench -p benches

# Registration throughput under load, beside libp2p's rendezvous server
# (args go to `rdht-bench bench`, e.g. `just bench-load --duration 60s --json`).
bench-load *args:
    cargo build --release -p node -p rdht-bench
    ./target/release/rdht-bench bench {{args}}

# A whole local network on loopback: rendezvous nodes, two quorums, an outsider.
node:
    cargo run --release -p node --bin rdht -- demo

# Faults on a real network: network namespaces, the rdht-netem link
# emulator and real rdht processes (needs root; elsewhere the tests say
# they were skipped). Each scenario prints its figures.
faults:
    cargo build --release -p node --bin rdht
    cargo test --release -p faults -- --nocapture

# The deterministic adversarial simulator (all scenarios).
sim:
    cargo run --release -p sim

# Fuzz every decoder for a while (needs `cargo install cargo-fuzz --locked`).
fuzz seconds="60":
    #!/usr/bin/env bash
    set -euo pipefail
    cd fuzz
    for target in $(RUSTC_BOOTSTRAP=1 cargo fuzz list); do
        RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- -max_total_time={{seconds}}
    done

# Regenerate the test vectors (tests check the committed files match).
vectors:
    cargo run --release -p dkg --example gen_threshold_vectors > test-vectors/threshold.json
    cargo run --release -p dkg --example gen_reshare_vectors > test-vectors/reshare.json
    cargo run --release -p rendezvous-proto --example gen_record_vectors > test-vectors/records.json

# Format, lint, test: what CI runs.
ci:
    bash .ci/run
