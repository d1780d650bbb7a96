//! `aovpn connect`: bring one tunnel up in the foreground, until Ctrl-C or SIGTERM (then it
//! says goodbye to the gateway and removes its routes, addresses, DNS and TUN device).

use std::path::PathBuf;
use std::process::ExitCode;

use agent::plan::{CertificateFiles, tunnel_options};
use agent::session::{RoutePolicy, Session, SessionError, TunnelOptions};
use anyhow::{Context, bail};

use crate::runtime::{block_on_daemon, shutdown_signal};

#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// Gateway to dial (name or address, optionally :port); repeat to give fallbacks.
    #[arg(long, required_unless_present = "profile_file")]
    server: Vec<String>,
    /// Take servers, routes, DNS suffixes and proposals from a VPNv2 ProfileXML file.
    #[arg(long, conflicts_with = "server")]
    profile_file: Option<PathBuf>,
    /// Our certificate (PEM, intermediates may follow).
    #[arg(long)]
    cert: PathBuf,
    /// Our private key.
    #[arg(long)]
    key: PathBuf,
    /// Root CA(s) the gateway's certificate must chain to.
    #[arg(long, required = true)]
    ca: Vec<PathBuf>,
    /// Name of the TUN interface.
    #[arg(long, default_value = "aovpn0")]
    interface: String,
    /// resolv.conf to write the pushed DNS servers to when systemd-resolved is not running.
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// Write the tunnel's state here (JSON) on every change.
    #[arg(long)]
    status_file: Option<PathBuf>,
}

fn options(args: ConnectArgs) -> anyhow::Result<TunnelOptions> {
    let mut options = match &args.profile_file {
        Some(file) => {
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let name = file.display().to_string();
            let parsed =
                profile::ParsedProfile::parse(&name, &bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
            let scope = parsed.uri.as_ref().and_then(|u| u.scope);
            parsed.validate(scope).map_err(|e| anyhow::anyhow!("{e}"))?;
            let profile_name = parsed
                .profile
                .profile_name
                .clone()
                .unwrap_or_else(|| name.clone());
            let Some(plan) = profile::plan::plan(&profile_name, scope, &parsed.profile) else {
                bail!("{name}: the profile has no NativeProfile");
            };
            let files = CertificateFiles {
                cert: args.cert,
                key: args.key,
                ca: args.ca,
            };
            tunnel_options(&plan, files, args.interface)?
        }
        None => TunnelOptions {
            servers: args.server,
            cert: args.cert,
            key: args.key,
            ca: args.ca,
            interface: args.interface,
            ike_proposals: Vec::new(),
            esp_proposals: Vec::new(),
            routes: RoutePolicy::TrafficSelectors,
            dns_suffixes: Vec::new(),
            resolv_conf: PathBuf::new(),
            fragmentation: true,
            status_file: None,
        },
    };
    options.resolv_conf = args.resolv_conf;
    options.status_file = args.status_file;
    Ok(options)
}

pub fn run(args: ConnectArgs) -> ExitCode {
    block_on_daemon("connect", async move {
        let options = options(args)?;
        let servers = options.servers.clone();
        // Servers are tried in order until one brings the tunnel up, as Windows does with a
        // profile's server list; once up, a failure ends the command (the agent reconnects).
        for (i, server) in servers.iter().enumerate() {
            let last = i + 1 == servers.len();
            let mut attempt = options.clone();
            attempt.servers = vec![server.clone()];
            if !last {
                // Only the last attempt may report "failed"; earlier ones show "connecting".
                if let Some(path) = &options.status_file {
                    let status = agent::session::TunnelStatus {
                        state: "connecting".into(),
                        server: server.clone(),
                        interface: options.interface.clone(),
                        ..Default::default()
                    };
                    tunnel::host::write_json_atomically(path, &status);
                }
                attempt.status_file = None;
            }
            let session = match Session::start(attempt).await {
                Ok(s) => s,
                Err(e) if !last => {
                    tracing::warn!(%server, "{e}; trying the next server");
                    continue;
                }
                Err(e) => {
                    if let Some(path) = &options.status_file {
                        let status = agent::session::TunnelStatus {
                            state: "failed".into(),
                            error: Some(e.to_string()),
                            ..Default::default()
                        };
                        tunnel::host::write_json_atomically(path, &status);
                    }
                    return Err(e.into());
                }
            };
            match session.run(shutdown_signal()).await {
                Err(SessionError::NeverConnected(e)) if !last => {
                    tracing::warn!(%server, "{e}; trying the next server");
                }
                other => return other.map_err(Into::into),
            }
        }
        anyhow::bail!("no server to connect to")
    })
}
