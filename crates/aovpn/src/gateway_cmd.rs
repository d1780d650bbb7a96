//! `aovpn gateway --config FILE`: the IKEv2 responder daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::runtime::{Capability, block_on_daemon, shutdown_signal};

#[derive(Debug, clap::Args)]
pub struct GatewayArgs {
    /// gateway.toml: listen addresses, identity, trusted roots, pool, pushed routes.
    #[arg(long, short = 'c', default_value = "/etc/aovpn/gateway.toml")]
    config: PathBuf,
    /// Write the gateway's state and connected clients here (JSON), on every change.
    #[arg(long)]
    status_file: Option<PathBuf>,
    /// Load and check the configuration and the files it names, then exit.
    #[arg(long)]
    check: bool,
    /// With --check: whether this gateway would accept a client presenting this certificate
    /// (PEM, intermediates after it), and if not, why (chain, EKU, revocation, kind).
    #[arg(long, requires = "check", value_name = "FILE")]
    client_cert: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<GatewayCommand>,
}

#[derive(Debug, clap::Subcommand)]
enum GatewayCommand {
    /// Everything a gateway needs, checked one line at a time (ok / warning / problem, with
    /// what to do): the configuration and its files, the ports, capabilities, the clock, and
    /// with --client-cert whether that client would be accepted.
    Doctor(DoctorArgs),
}

#[derive(Debug, clap::Args)]
struct DoctorArgs {
    /// gateway.toml to check.
    #[arg(long, short = 'c', default_value = "/etc/aovpn/gateway.toml")]
    config: PathBuf,
    /// Whether this gateway would accept a client presenting this certificate (PEM,
    /// intermediates after it), and if not, why (chain, EKU, revocation by leaf or
    /// intermediate, kind).
    #[arg(long, value_name = "FILE")]
    client_cert: Option<PathBuf>,
    /// The report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: GatewayArgs) -> ExitCode {
    if let Some(GatewayCommand::Doctor(d)) = &args.command {
        let checks = gateway::doctor::checks(&d.config, d.client_cert.as_deref());
        if d.json {
            match serde_json::to_string_pretty(&checks) {
                Ok(text) => println!("{text}"),
                Err(e) => {
                    eprintln!("aovpn gateway doctor: {e}");
                    return ExitCode::from(2);
                }
            }
        } else {
            print!("{}", tunnel::check::render(&checks));
        }
        return if tunnel::check::has_problem(&checks) {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        };
    }
    if args.check {
        // What the unit's ExecStartPre runs: only a configuration that does not load stops
        // the start; the rest is printed.
        let checks = gateway::doctor::checks(&args.config, args.client_cert.as_deref());
        if let [only] = checks.as_slice()
            && only.check == "config"
            && only.verdict == tunnel::check::Verdict::Problem
        {
            eprintln!("aovpn gateway: {}", only.detail);
            return ExitCode::from(2);
        }
        print!("{}", tunnel::check::render(&checks));
        let refused = |c: &tunnel::check::Check| c.verdict == tunnel::check::Verdict::Problem;
        return if checks.iter().any(|c| c.check == "config" && refused(c)) {
            ExitCode::from(2)
        } else if checks
            .iter()
            .any(|c| c.check.starts_with("client") && refused(c))
        {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        };
    }
    // TUN, routes and their teardown need CAP_NET_ADMIN for the whole run; binding UDP 500
    // and 4500 needs CAP_NET_BIND_SERVICE (capabilities cannot be dropped later for every
    // thread at once).
    let keep = [Capability::CAP_NET_ADMIN, Capability::CAP_NET_BIND_SERVICE];
    block_on_daemon("gateway", &keep, async move {
        let gw = gateway::daemon::Gateway::start(&args.config, args.status_file).await?;
        gw.run(shutdown_signal()).await?;
        Ok(())
    })
}
