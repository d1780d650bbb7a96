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
    /// The connected clients (as Get-AzVirtualNetworkGatewayVpnClientConnectionHealth):
    /// identity, certificate and thumbprint, addresses, outer address, since when, last
    /// rekey, algorithms, traffic each way and drops.
    Sessions {
        #[command(flatten)]
        admin: AdminArgs,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// End a client's sessions, named by identity or by a virtual address (as
    /// Disconnect-AzVirtualNetworkGatewayVpnConnection): IKE Delete sent; its address stays
    /// its own for its next connection.
    Disconnect {
        /// An identity as `sessions` shows it (with or without `fqdn:`/`email:`), or an address.
        target: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Revoke a client certificate by SHA-1 thumbprint: added to the revocation file (kept
    /// across restarts), in force at once, its sessions (and those of certificates it issued)
    /// disconnected.
    Revoke {
        thumbprint: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Write the VPN client configuration package (as Azure's "Download VPN client"): the
    /// Generic folder with VpnSettings.xml and the gateway's root, plus ready ProfileXML for a
    /// device and a user tunnel (plain, escaped, SyncML) and a README.
    ClientPackage(crate::client_package_cmd::ClientPackageArgs),
    /// Reread gateway.toml and the files it names (as SIGHUP).
    Reload {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Take this gateway out of service: new clients that can follow an IKE redirect (RFC
    /// 5685: aovpn, strongSwan) are sent to another gateway during IKE_SA_INIT; clients that
    /// cannot (stock Windows) are still served. `--stop` serves everyone here again.
    Drain {
        /// The gateway to send clients to: an address or a host name.
        #[arg(long, value_name = "GATEWAY", required_unless_present = "stop")]
        to: Option<String>,
        /// Also end the sessions here (IKE Delete): aovpn clients reconnect and are redirected;
        /// strongSwan clients reconnect only with close_action = start.
        #[arg(long, requires = "to")]
        disconnect: bool,
        /// End the drain.
        #[arg(long, conflicts_with = "to")]
        stop: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Where the running gateway's admin socket is.
#[derive(Debug, clap::Args)]
struct AdminArgs {
    /// gateway.toml, for its admin.socket.
    #[arg(long, short = 'c', default_value = "/etc/aovpn/gateway.toml")]
    config: PathBuf,
    /// The admin socket itself (default: admin.socket of --config, else
    /// /run/aovpn-gateway/admin.sock).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
}

impl AdminArgs {
    fn socket(&self) -> PathBuf {
        self.socket.clone().unwrap_or_else(|| {
            gateway::admin::socket_of(&self.config)
                .unwrap_or_else(|_| PathBuf::from("/run/aovpn-gateway/admin.sock"))
        })
    }
}

/// One request to the admin socket; its message or error printed.
fn admin(
    admin: &AdminArgs,
    request: &gateway::admin::Request,
) -> Result<gateway::admin::Reply, ExitCode> {
    match gateway::admin::call(&admin.socket(), request) {
        Ok(reply) if reply.ok => {
            if let Some(m) = &reply.message {
                println!("{m}");
            }
            Ok(reply)
        }
        Ok(reply) => {
            eprintln!(
                "aovpn gateway: {}",
                reply.error.unwrap_or_else(|| "refused".into())
            );
            Err(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("aovpn gateway: {e}");
            Err(ExitCode::from(2))
        }
    }
}

fn print_sessions(sessions: &[gateway::admin::Session]) {
    use crate::control_cmd::{bytes, join};
    use agent::supervisor::human_duration;
    let now = tunnel::host::unix_now();
    if sessions.is_empty() {
        println!("no client connected");
    }
    for s in sessions {
        println!(
            "{}  ({}, SHA-1 {}, group {})",
            s.identity, s.subject, s.thumbprint, s.group
        );
        let line = |k: &str, v: String| println!("  {k:<11} {v}");
        line("addresses", join(&s.virtual_ips));
        line("outer", s.remote.to_string());
        line(
            "connected",
            format!(
                "{} ago{}",
                human_duration(now.saturating_sub(s.connected_since)),
                s.last_rekey
                    .map(|r| format!(", rekeyed {} ago", human_duration(now.saturating_sub(r))))
                    .unwrap_or_default()
            ),
        );
        line("ike", format!("{} ({})", s.ike, s.auth));
        line("esp", s.esp.clone());
        let t = &s.traffic;
        line(
            "traffic",
            format!(
                "in {} / {} packets, out {} / {} packets, {} refused in, {} not sent",
                bytes(t.bytes_in),
                t.packets_in,
                bytes(t.bytes_out),
                t.packets_out,
                t.dropped_in,
                t.dropped_out
            ),
        );
    }
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
    use gateway::admin::Request;
    let asked = match &args.command {
        Some(GatewayCommand::Sessions { admin: a, json }) => {
            Some(admin(a, &Request::Sessions).map(|reply| {
                if *json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&reply.sessions).unwrap_or_default()
                    );
                } else {
                    print_sessions(&reply.sessions);
                }
            }))
        }
        Some(GatewayCommand::Disconnect { target, admin: a }) => Some(
            admin(
                a,
                &Request::Disconnect {
                    target: target.clone(),
                },
            )
            .map(drop),
        ),
        Some(GatewayCommand::Revoke {
            thumbprint,
            admin: a,
        }) => Some(
            admin(
                a,
                &Request::Revoke {
                    thumbprint: thumbprint.clone(),
                },
            )
            .map(drop),
        ),
        Some(GatewayCommand::Reload { admin: a }) => Some(admin(a, &Request::Reload).map(drop)),
        Some(GatewayCommand::Drain {
            to,
            disconnect,
            admin: a,
            ..
        }) => Some(
            admin(
                a,
                &Request::Drain {
                    to: to.clone(),
                    disconnect: *disconnect,
                },
            )
            .map(drop),
        ),
        Some(GatewayCommand::ClientPackage(p)) => return crate::client_package_cmd::write(p),
        Some(GatewayCommand::Doctor(_)) | None => None,
    };
    if let Some(result) = asked {
        return result.err().unwrap_or(ExitCode::SUCCESS);
    }
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
