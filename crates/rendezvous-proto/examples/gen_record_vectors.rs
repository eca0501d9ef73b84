//! Prints the record test vectors as JSON:
//!
//! ```text
//! cargo run -p rendezvous-proto --example gen_record_vectors > test-vectors/records.json
//! ```
//!
//! Deterministic (fixed seeds, fixed times); `tests/vectors.rs` checks the
//! committed file is byte for byte what this prints.

#[path = "../tests/support/crafted_ed25519.rs"]
mod crafted_ed25519;
#[path = "../tests/support/record_vectors.rs"]
mod record_vectors;

fn main() {
    print!("{}", record_vectors::to_json(&record_vectors::generate()));
}
