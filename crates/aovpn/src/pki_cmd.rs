//! `aovpn pki ...`

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct PkiArgs {}

pub fn run(_args: PkiArgs) -> ExitCode {
    eprintln!("aovpn pki: not built yet");
    ExitCode::from(2)
}
