//! `aovpn gateway doctor` (and `--check`): the configuration and every file it names, what a
//! valid configuration can still get wrong on this machine (a key others can read, a
//! certificate about to expire, the IKE ports taken, missing capabilities, a clock that is
//! wrong or not synchronized), the pool's size, and whether a given client certificate would
//! be accepted, and if not why, each as a [`Check`] with what to do.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ikev2::{IkeId, PeerRejection, PeerValidator};
use netio::privileges::{Capability, effective_has};
use tunnel::check::{Check, Verdict};

use crate::client_validation::ClientValidator;
use crate::config::{ConfigError, GatewayConfig};
use crate::credentials::load_credentials;
use crate::responder::{group_policies, responder_config};

/// A certificate that expires sooner than this is reported.
const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 86_400);

/// The report for the configuration at `config_path`; a `config` problem first and alone when
/// it does not load. `client_cert`: also whether a client with that certificate is accepted.
pub fn checks(config_path: &Path, client_cert: Option<&Path>) -> Vec<Check> {
    let loaded = GatewayConfig::load(config_path).and_then(|c| {
        let creds = load_credentials(&c, config_path)?;
        let validator = Arc::new(ClientValidator::new(creds.trust.clone()));
        validator.set_accepted(&c.clients.accept);
        validator.set_groups(group_policies(&c));
        responder_config(&c, config_path, &creds, validator.clone())?;
        // What the daemon reads at its start besides: RADIUS secrets and the page's token.
        let invalid = |field, message| ConfigError::Invalid {
            path: config_path.to_owned(),
            field,
            message,
        };
        if let Some(r) = &c.radius {
            r.load_servers().map_err(|(f, m)| invalid(f, m))?;
        }
        if let Some(w) = &c.web {
            crate::web::AdminPage::load(&w.token_file)
                .map_err(|e| invalid("web.token_file", e.to_string()))?;
        }
        Ok((c, validator))
    });
    let (config, validator) = match loaded {
        Ok(v) => v,
        Err(e) => {
            return vec![Check::bad(
                "config",
                Verdict::Problem,
                e.to_string(),
                "fix the field named; the gateway refuses to start until then",
            )];
        }
    };
    let mut out = vec![Check::ok(
        "config",
        format!(
            "{}: valid, every file it names loads",
            config_path.display()
        ),
    )];
    out.extend(files(&config));
    out.push(pool(&config));
    for g in &config.groups {
        let usable = crate::pool::usable_addresses(g.pool_v4);
        out.push(Check::ok(
            &format!("group {}", g.name),
            format!(
                "pool {} ({usable} addresses), routes {}",
                g.pool_v4,
                g.routes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    out.push(Check::ok(
        "revocations",
        format!(
            "{} thumbprint(s) revoked ({} from {}, where aovpn gateway revoke adds them)",
            config.revoked().len(),
            config.clients.revoked_from_file.len(),
            config
                .clients
                .revocation_file
                .as_deref()
                .map_or_else(|| "-".into(), |f| f.display().to_string())
        ),
    ));
    out.extend(ports(&config));
    out.push(capabilities(&config));
    out.extend(clock(&config));
    if let Some(file) = client_cert {
        out.extend(would_accept(&validator, file));
    }
    out
}

/// The key's permissions and the certificate's dates.
fn files(config: &GatewayConfig) -> Vec<Check> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    if let Ok(meta) = std::fs::metadata(&config.identity.key) {
        out.push(if meta.mode() & 0o007 != 0 {
            Check::bad(
                "key",
                Verdict::Warning,
                format!(
                    "{} can be read by every user (mode {:o})",
                    config.identity.key.display(),
                    meta.mode() & 0o777
                ),
                format!(
                    "chmod 640 {}, group aovpn (the service's)",
                    config.identity.key.display()
                ),
            )
        } else {
            Check::ok(
                "key",
                format!("{} is not world-readable", config.identity.key.display()),
            )
        });
    }
    if let Some(leaf) = certificates(&config.identity.certificate).first() {
        let left = leaf
            .not_after()
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        out.push(if left < EXPIRY_WARNING {
            Check::bad(
                "certificate",
                if left.is_zero() {
                    Verdict::Problem
                } else {
                    Verdict::Warning
                },
                format!(
                    "the gateway certificate ({}) expires in {} days",
                    leaf.subject(),
                    left.as_secs() / 86_400
                ),
                "renew it: clients refuse an expired one",
            )
        } else {
            Check::ok(
                "certificate",
                format!("{}: {} days left", leaf.subject(), left.as_secs() / 86_400),
            )
        });
    }
    out
}

fn certificates(path: &Path) -> Vec<pki::Certificate> {
    std::fs::read(path)
        .ok()
        .and_then(|b| pki::load_certificates(&b).ok())
        .unwrap_or_default()
}

/// The pool's size against the sticky leases already recorded (read only: the gateway keeps
/// the files).
fn pool(config: &GatewayConfig) -> Check {
    let usable = crate::pool::usable_addresses(config.clients.pool_v4);
    let leased =
        crate::pool::LeasePool::recorded_bindings(&config.state_dir.join("leases.json")) as u64;
    let detail = format!(
        "{} ({usable} client addresses, {leased} leased to identities)",
        config.clients.pool_v4
    );
    if leased * 10 >= usable * 9 {
        Check::bad(
            "pool",
            Verdict::Warning,
            detail,
            "nearly every address is bound to an identity: new clients take the longest-idle binding, so returning clients may find a new address; a larger clients.pool_v4 keeps addresses stable",
        )
    } else {
        Check::ok("pool", detail)
    }
}

/// UDP 500 and 4500 on every listen address: free to bind (binding here while the gateway
/// runs reports it in use, which is then expected).
fn ports(config: &GatewayConfig) -> Vec<Check> {
    let mut out = Vec::new();
    for address in &config.listen.addresses {
        for port in [config.listen.ike_port, config.listen.natt_port] {
            let addr = std::net::SocketAddr::new(*address, port);
            let check = format!("udp {addr}");
            out.push(match std::net::UdpSocket::bind(addr) {
                Ok(_) => Check::ok(&check, "free to bind"),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Check::bad(
                    &check,
                    Verdict::Warning,
                    "in use (this gateway already running, or another IKE daemon such as strongSwan)",
                    "stop the other one (systemctl stop strongswan), unless it is this gateway",
                ),
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Check::bad(
                    &check,
                    Verdict::Problem,
                    format!("cannot be bound here: {e}"),
                    "ports below 1024 need CAP_NET_BIND_SERVICE (the systemd unit gives it)",
                ),
                Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => Check::bad(
                    &check,
                    Verdict::Problem,
                    format!("{address} is not an address of this machine"),
                    "listen.addresses must name addresses of this machine's interfaces",
                ),
                Err(e) => Check::bad(
                    &check,
                    Verdict::Problem,
                    e.to_string(),
                    "check listen.addresses",
                ),
            });
        }
    }
    out
}

/// What the daemon needs of the kernel and its privileges: the TUN device, CAP_NET_ADMIN
/// (TUN, routes) and CAP_NET_BIND_SERVICE (UDP 500) as this process holds them.
fn capabilities(config: &GatewayConfig) -> Check {
    let mut missing = Vec::new();
    if !effective_has(Capability::CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if config.listen.ike_port < 1024 && !effective_has(Capability::CAP_NET_BIND_SERVICE) {
        missing.push("CAP_NET_BIND_SERVICE");
    }
    if !Path::new("/dev/net/tun").exists() {
        return Check::bad(
            "capabilities",
            Verdict::Problem,
            "/dev/net/tun does not exist: the kernel has no TUN driver, or the container hides it",
            "modprobe tun (or give the container /dev/net/tun)",
        );
    }
    if missing.is_empty() {
        Check::ok(
            "capabilities",
            "/dev/net/tun present; CAP_NET_ADMIN and CAP_NET_BIND_SERVICE held",
        )
    } else {
        Check::bad(
            "capabilities",
            Verdict::Problem,
            format!("this process lacks {}", missing.join(" and ")),
            "run the gateway as root or as aovpn-gateway.service does (AmbientCapabilities=CAP_NET_ADMIN CAP_NET_BIND_SERVICE)",
        )
    }
}

/// The wall clock: synchronized, and not before the certificates' start dates (a clock in the
/// past makes every certificate "not valid yet" on both sides).
fn clock(config: &GatewayConfig) -> Vec<Check> {
    let now = SystemTime::now();
    let mut certs = certificates(&config.identity.certificate);
    for file in &config.clients.root_ca_files {
        certs.extend(certificates(file));
    }
    if let Some(late) = certs.iter().find(|c| c.not_before() > now) {
        return vec![Check::bad(
            "clock",
            Verdict::Problem,
            format!(
                "this machine's clock is before the start of {}'s validity: certificates look not valid yet",
                late.subject()
            ),
            "set the clock (timedatectl set-ntp true, or chrony)",
        )];
    }
    vec![match netio::clock::wall_clock_synchronized() {
        Some(true) => Check::ok("clock", "synchronized, and within the certificates' dates"),
        Some(false) => Check::bad(
            "clock",
            Verdict::Warning,
            "not synchronized (no NTP): certificate checks on both sides depend on it",
            "timedatectl set-ntp true (systemd-timesyncd), or run chrony",
        ),
        None => Check::ok("clock", "within the certificates' dates"),
    }]
}

/// Whether `validator` (the gateway's roots, revocation list and accepted kinds) accepts a
/// client with the certificate in `file`, under each identity it could claim.
fn would_accept(validator: &ClientValidator, file: &Path) -> Vec<Check> {
    let chain = match std::fs::read(file)
        .map_err(|e| e.to_string())
        .and_then(|b| pki::load_certificates(&b).map_err(|e| e.to_string()))
    {
        Ok(c) if !c.is_empty() => c,
        Ok(_) | Err(_) => {
            return vec![Check::bad(
                "client",
                Verdict::Problem,
                format!("{}: no readable certificate", file.display()),
                "a PEM certificate, intermediates after it",
            )];
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
    let mut out = vec![Check::ok(
        "client",
        format!("{} (SHA-1 {})", leaf.subject(), leaf.thumbprint()),
    )];
    for id in &ids {
        let check = format!("client as {id}");
        out.push(match validator.validate(id, leaf.der(), &inter, now) {
            Ok(v) => {
                let path: Vec<String> = v
                    .chain
                    .thumbprints
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                let group = v
                    .policy
                    .as_ref()
                    .map_or("default", |p| p.group.as_str());
                Check::ok(
                    &check,
                    format!(
                        "accepted as {id}, group {group}: path {} (SHA-1, leaf to root)",
                        path.join(" <- ")
                    ),
                )
            }
            Err(e) => {
                let fix = match &e {
                    PeerRejection::Certificate(pki::PkiError::Revoked(_)) => {
                        "remove the thumbprint from clients.revoked_thumbprints (or the revocation file) if it should connect"
                    }
                    PeerRejection::Certificate(
                        pki::PkiError::WrongEku | pki::PkiError::WrongKeyUsage,
                    ) => "issue the certificate with EKU clientAuth (a machine or user certificate)",
                    PeerRejection::KindNotAccepted(_) => "add its kind to clients.accept",
                    PeerRejection::Certificate(
                        pki::PkiError::Expired | pki::PkiError::NotYetValid,
                    ) => "renew the certificate (or check the clocks)",
                    PeerRejection::Certificate(_) => {
                        "add the root that issued it to clients.root_ca_files, and send its intermediates with it"
                    }
                    _ => "the client must send an identity its certificate names",
                };
                // Name what the revoked thumbprint is: the leaf, or a CA above it.
                let whose = chain.iter().enumerate().find_map(|(i, c)| {
                    matches!(&e, PeerRejection::Certificate(pki::PkiError::Revoked(tp)) if *tp == c.thumbprint())
                        .then(|| {
                            if i == 0 {
                                " (the certificate itself)".to_owned()
                            } else {
                                format!(" (the intermediate CA {})", c.subject())
                            }
                        })
                });
                Check::bad(
                    &check,
                    Verdict::Problem,
                    format!("refused: {e}{}", whose.unwrap_or_default()),
                    fix,
                )
            }
        });
    }
    // Accepted under one identity is enough: the others are what a client could also send.
    if out.iter().skip(1).any(|c| c.verdict == Verdict::Ok) {
        for c in out.iter_mut().skip(1) {
            if c.verdict == Verdict::Problem {
                c.verdict = Verdict::Warning;
            }
        }
    }
    out
}
