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
}

pub fn run(args: GatewayArgs) -> ExitCode {
    if args.check {
        let checked = gateway::config::GatewayConfig::load(&args.config).and_then(|c| {
            let creds = gateway::ike::load_credentials(&c, &args.config)?;
            let validator =
                std::sync::Arc::new(gateway::ike::ClientValidator::new(creds.trust.clone()));
            validator.set_accepted(&c.clients.accept);
            gateway::ike::responder_config(&c, &args.config, &creds, validator.clone())?;
            Ok((c, validator))
        });
        let validator = match checked {
            Ok((config, v)) => {
                println!("{}: OK", args.config.display());
                for line in advisories(&config) {
                    println!("{line}");
                }
                v
            }
            Err(e) => {
                eprintln!("aovpn gateway: {e}");
                return ExitCode::from(2);
            }
        };
        return match &args.client_cert {
            None => ExitCode::SUCCESS,
            Some(file) => would_accept(&validator, file),
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

/// Whether `validator` (the gateway's roots, revocation list and accepted kinds) accepts a
/// client with the certificate in `file`, under each identity it could claim; exit 0 if so.
fn would_accept(validator: &gateway::ike::ClientValidator, file: &std::path::Path) -> ExitCode {
    use ikev2::{IkeId, PeerRejection, PeerValidator};
    let chain = match std::fs::read(file)
        .map_err(|e| e.to_string())
        .and_then(|b| pki::load_certificates(&b).map_err(|e| e.to_string()))
    {
        Ok(c) if !c.is_empty() => c,
        Ok(_) => {
            eprintln!("aovpn gateway: {}: no certificate", file.display());
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("aovpn gateway: {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let leaf = &chain[0];
    let inter: Vec<&[u8]> = chain[1..].iter().map(|c| c.der().as_ref()).collect();
    // Every identity a client with this certificate could send (Windows sends the first
    // DNS name of a machine certificate, a user's UPN or e-mail, else the subject).
    let mut ids: Vec<IkeId> = leaf
        .dns_names()
        .iter()
        .map(|d| IkeId::Fqdn(d.clone()))
        .chain(leaf.rfc822_names().iter().map(|m| IkeId::Rfc822(m.clone())))
        .collect();
    ids.push(IkeId::DerDn(leaf.subject_der().to_vec()));
    let now = tunnel::host::unix_now();
    println!(
        "client certificate: {} (SHA-1 {})",
        leaf.subject(),
        leaf.thumbprint()
    );
    let mut accepted = false;
    for id in &ids {
        match validator.validate(id, leaf.der(), &inter, now) {
            Ok(v) => {
                accepted = true;
                let path: Vec<String> = v
                    .chain
                    .thumbprints
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                println!(
                    "  accepted as {id}: path {} (SHA-1, leaf to root)",
                    path.join(" <- ")
                );
            }
            Err(e) => {
                let fix = match &e {
                    PeerRejection::Certificate(m) if m.contains("revoked") => {
                        "remove the thumbprint from clients.revoked_thumbprints (or the revocation file) if it should connect"
                    }
                    PeerRejection::Certificate(m) if m.contains("key usage") => {
                        "issue the certificate with EKU clientAuth (a machine or user certificate)"
                    }
                    PeerRejection::Certificate(m) if m.contains("this gateway does not accept") => {
                        "add its kind to clients.accept"
                    }
                    PeerRejection::Certificate(m)
                        if m.contains("expired") || m.contains("not valid yet") =>
                    {
                        "renew the certificate (or check the clocks)"
                    }
                    PeerRejection::Certificate(_) => {
                        "add the root that issued it to clients.root_ca_files, and send its intermediates with it"
                    }
                    _ => "the client must send an identity its certificate names",
                };
                println!("  refused as {id}: {e}\n    -> {fix}");
            }
        }
    }
    if accepted {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// What a valid configuration may still get wrong on this machine: a key every user can read,
/// a certificate about to expire, the IKE ports taken by another daemon; and the pool's size.
fn advisories(config: &gateway::config::GatewayConfig) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    if let Ok(meta) = std::fs::metadata(&config.identity.key)
        && meta.mode() & 0o007 != 0
    {
        out.push(format!(
            "warning: {} can be read by every user (mode {:o}) -> chmod 640 it, group aovpn",
            config.identity.key.display(),
            meta.mode() & 0o777
        ));
    }
    if let Ok(chain) = std::fs::read(&config.identity.certificate)
        .map_err(|e| e.to_string())
        .and_then(|b| pki::load_certificates(&b).map_err(|e| e.to_string()))
        && let Some(leaf) = chain.first()
    {
        let left = leaf
            .not_after()
            .duration_since(std::time::SystemTime::now())
            .map(|d| d.as_secs() / 86_400)
            .unwrap_or(0);
        if left < 30 {
            out.push(format!(
                "warning: the gateway certificate expires in {left} days -> renew it (clients refuse an expired one)"
            ));
        }
    }
    let usable = 2u64
        .saturating_pow(32 - u32::from(config.clients.pool_v4.prefix_len()))
        .saturating_sub(2);
    out.push(format!(
        "pool: {} ({usable} client addresses)",
        config.clients.pool_v4
    ));
    for address in &config.listen.addresses {
        for port in [config.listen.ike_port, config.listen.natt_port] {
            let addr = std::net::SocketAddr::new(*address, port);
            if let Err(e) = std::net::UdpSocket::bind(addr)
                && e.kind() == std::io::ErrorKind::AddrInUse
            {
                out.push(format!(
                    "warning: UDP {addr} is in use (this gateway already running, or another IKE daemon such as strongSwan) -> stop the other one"
                ));
            }
        }
    }
    out
}
