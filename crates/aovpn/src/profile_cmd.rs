//! `aovpn profile ...`

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ProfileArgs {}

pub fn run(_args: ProfileArgs) -> ExitCode {
    eprintln!("aovpn profile: not built yet");
    ExitCode::from(2)
}
