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
}

pub fn run(args: GatewayArgs) -> ExitCode {
    if args.check {
        return match gateway::config::GatewayConfig::load(&args.config).and_then(|c| {
            let creds = gateway::ike::load_credentials(&c, &args.config)?;
            let validator =
                std::sync::Arc::new(gateway::ike::ClientValidator::new(creds.trust.clone()));
            gateway::ike::responder_config(&c, &args.config, &creds, validator).map(|_| ())
        }) {
            Ok(()) => {
                println!("{}: OK", args.config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("aovpn gateway: {e}");
                ExitCode::from(2)
            }
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
