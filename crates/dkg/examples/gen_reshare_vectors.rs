//! Prints `test-vectors/reshare.json` (deterministic from fixed seeds).

fn main() {
    let vectors = dkg::vectors::reshare_vectors();
    match serde_json::to_string_pretty(&vectors) {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("cannot serialize vectors: {e}");
            std::process::exit(1);
        }
    }
}
