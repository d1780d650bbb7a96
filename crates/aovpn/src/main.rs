//! `aovpn`: one binary for the gateway, the agent, profiles, PKI and the lab.
//! Only glue lives here; every subcommand calls into a library crate.

mod lab;
mod pki_cmd;
mod profile_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "aovpn", version, about = "Always On IKEv2/IPsec VPN for Linux")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A complete lab in network namespaces: gateway, device tunnel and user tunnel.
    Lab(lab::LabArgs),
    /// Certificates: root CA, gateway, machine and user certificates, thumbprints.
    Pki(pki_cmd::PkiArgs),
    /// VPNv2 ProfileXML profiles: validate, add, list, show, remove, export.
    Profile(profile_cmd::ProfileArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AOVPN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Lab(args) => lab::run(args),
        Command::Pki(args) => pki_cmd::run(args),
        Command::Profile(args) => profile_cmd::run(args),
    }
}
