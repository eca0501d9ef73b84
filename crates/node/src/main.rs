//! `rdht`: see `rdht --help`. Everything lives in the `node` library.

fn main() -> std::process::ExitCode {
    node::cli::main()
}
