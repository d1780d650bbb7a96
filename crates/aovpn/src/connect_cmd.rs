//! `aovpn connect`: bring one tunnel up in the foreground, until Ctrl-C or SIGTERM (then it
//! says goodbye to the gateway and removes its routes, addresses, DNS and TUN device). The
//! always-on agent (`aovpn agent`) is what keeps tunnels up; this is for one-off use.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use agent::connection::{
    self, Command, ConnectionOptions, ConnectionStatus, DEFAULT_DPD_INTERVAL, Outcome, Report,
    RoutePolicy, load_credentials,
};
use agent::dns::SharedDns;
use agent::plan::profile_tunnel;
use anyhow::{Context, bail};
use tokio::sync::mpsc;

use crate::runtime::{Capability, block_on_daemon, shutdown_signal};

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

/// The servers to try and the options of one attempt.
fn tunnel(args: &ConnectArgs) -> anyhow::Result<(Vec<String>, ConnectionOptions)> {
    let credentials = load_credentials(&args.cert, &args.key, &args.ca)?;
    match &args.profile_file {
        Some(file) => {
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let name = file.display().to_string();
            let parsed =
                profile::ParsedProfile::parse(&name, &bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
            let scope = parsed.uri.as_ref().and_then(|u| u.scope);
            let warnings = parsed.validate(scope).map_err(|e| anyhow::anyhow!("{e}"))?;
            for w in warnings {
                tracing::warn!("{w}");
            }
            let profile_name = parsed
                .profile
                .profile_name
                .clone()
                .unwrap_or_else(|| name.clone());
            let Some(plan) = profile::plan::plan(&profile_name, scope, &parsed.profile) else {
                bail!("{name}: the profile has no NativeProfile");
            };
            if plan.dns.register {
                tracing::warn!(
                    "RegisterDNS is applied by the agent (aovpn agent, with its TSIG key), not by a one-off connect"
                );
            }
            if plan.lockdown {
                tracing::warn!(
                    "LockDown is applied by the agent (aovpn agent), not by a one-off connect"
                );
            }
            let t = profile_tunnel(&plan, credentials, args.interface.clone())?;
            Ok((t.servers, t.options))
        }
        None => Ok((
            args.server.clone(),
            plain_options(&args.server, credentials, &args.interface),
        )),
    }
}

/// A tunnel to `servers` without a profile: the traffic selectors as routes, the engine's
/// proposals.
pub(crate) fn plain_options(
    servers: &[String],
    credentials: connection::Credentials,
    interface: &str,
) -> ConnectionOptions {
    ConnectionOptions {
        server: servers.first().cloned().unwrap_or_default(),
        credentials,
        interface: interface.to_owned(),
        ike_proposals: Vec::new(),
        esp_proposals: Vec::new(),
        routes: RoutePolicy::TrafficSelectors,
        dns_suffixes: Vec::new(),
        fragmentation: true,
        dpd_interval: DEFAULT_DPD_INTERVAL,
        network_outage: None,
        traffic_filters: Vec::new(),
        split_dns: Vec::new(),
        register_dns: None,
        mtu: agent::connection::TUNNEL_MTU,
        eap_tls: None,
    }
}

fn write_status(path: Option<&Path>, status: &ConnectionStatus) {
    if let Some(path) = path {
        tunnel::host::write_json_atomically(path, status, 0o644);
    }
}

pub fn run(args: ConnectArgs) -> ExitCode {
    block_on_daemon("connect", &[Capability::CAP_NET_ADMIN], async move {
        let (servers, options) = tunnel(&args)?;
        let dns = Arc::new(SharedDns::new(&args.resolv_conf));
        let status_file = args.status_file.as_deref();
        let (stop_tx, mut stop_rx) = mpsc::channel::<()>(1);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop_tx.send(()).await;
        });
        // Servers are tried in order until one brings the tunnel up, as Windows does with a
        // profile's server list; once up, a failure ends the command (the agent reconnects).
        for (i, server) in servers.iter().enumerate() {
            let last = i + 1 == servers.len();
            let mut attempt = options.clone();
            attempt.server = server.clone();
            write_status(
                status_file,
                &ConnectionStatus {
                    state: "connecting".into(),
                    server: server.clone(),
                    interface: options.interface.clone(),
                    ..Default::default()
                },
            );
            let (commands, command_rx) = mpsc::channel(4);
            let (report_tx, mut reports) = mpsc::unbounded_channel();
            // One-off use: the network is not watched (the agent does that).
            let network = Arc::new(tokio::sync::Notify::new());
            let task = tokio::spawn(connection::run(
                attempt,
                dns.clone(),
                "0-connect".into(),
                command_rx,
                network,
                report_tx,
            ));
            let mut stopping = false;
            let outcome = loop {
                tokio::select! {
                    _ = stop_rx.recv(), if !stopping => {
                        stopping = true;
                        let _ = commands.send(Command::Stop).await;
                    }
                    report = reports.recv() => match report {
                        Some(Report::Connected(status)) => write_status(status_file, &status),
                        Some(Report::Installed(_)) => {}
                        Some(Report::Ended(outcome)) => break outcome,
                        None => break Outcome::Stopped,
                    },
                }
            };
            let _ = task.await;
            match outcome {
                Outcome::Stopped => {
                    write_status(
                        status_file,
                        &ConnectionStatus {
                            state: "disconnected".into(),
                            server: server.clone(),
                            ..Default::default()
                        },
                    );
                    return Ok(());
                }
                Outcome::Failed {
                    error,
                    connected: false,
                } if !last && !stopping => {
                    tracing::warn!(%server, "{error}; trying the next server");
                }
                Outcome::Failed { error, .. } => {
                    write_status(
                        status_file,
                        &ConnectionStatus {
                            state: "failed".into(),
                            server: server.clone(),
                            error: Some(error.to_string()),
                            ..Default::default()
                        },
                    );
                    return Err(error.into());
                }
            }
        }
        bail!("no server to connect to")
    })
}
