//! `aovpn bench ...`: benchmarks against a peer measured in the same run.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {}

pub fn run(_args: BenchArgs) -> ExitCode {
    eprintln!("aovpn bench: not built yet");
    ExitCode::from(2)
}
