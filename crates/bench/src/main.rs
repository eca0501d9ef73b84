//! `rdht-bench`: see `rdht-bench --help`. Everything lives in the
//! `rdht_bench` library.

fn main() -> std::process::ExitCode {
    rdht_bench::cli::main()
}
