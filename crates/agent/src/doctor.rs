//! `aovpn doctor`: the checks a failing tunnel comes down to, in the order an administrator
//! would make them, each with a verdict and what to do: the profile, our certificate and key,
//! each server's name, and a real IKE handshake with the gateway (IKE_SA_INIT answered and
//! what came back, the gateway's certificate against our roots and the dialled name, ours
//! accepted by the gateway), deleted at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ike_wire::NotifyType;
use ikev2::{Event, FailureReason, IkeSa};
use serde::Serialize;

use crate::connection::{ConnectionOptions, initiator_config, resolve};

/// How long the handshake with the gateway may take.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(8);
/// A certificate that expires sooner than this is reported.
const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 86_400);

/// One check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    Warning,
    Problem,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub check: String,
    pub verdict: Verdict,
    pub detail: String,
    /// What to do about a warning or problem.
    pub fix: Option<String>,
}

fn ok(check: &str, detail: impl Into<String>) -> Check {
    Check {
        check: check.into(),
        verdict: Verdict::Ok,
        detail: detail.into(),
        fix: None,
    }
}

fn bad(check: &str, verdict: Verdict, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        check: check.into(),
        verdict,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// What the tunnel would use: its certificate and key files, and the roots.
#[derive(Debug, Clone)]
pub struct Files {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: Vec<PathBuf>,
}

/// Our certificate and key: readable, a pair, the key private to its owner, the chain to the
/// roots with the client role (EKU), revocation and validity, and how long it has left.
pub fn check_credentials(files: &Files, unix_now: u64) -> Vec<Check> {
    let mut out = Vec::new();
    let chain = match std::fs::read(&files.cert)
        .map_err(|e| e.to_string())
        .and_then(|b| pki::load_certificates(&b).map_err(|e| e.to_string()))
    {
        Ok(c) if !c.is_empty() => c,
        Ok(_) | Err(_) => {
            out.push(bad(
                "certificate",
                Verdict::Problem,
                format!("{}: no readable certificate", files.cert.display()),
                "install the certificate (PEM, leaf first) where the profile's tunnel expects it",
            ));
            return out;
        }
    };
    let leaf = &chain[0];
    out.push(ok(
        "certificate",
        format!("{} ({})", leaf.subject(), files.cert.display()),
    ));
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(&files.key) {
        Err(e) => out.push(bad(
            "key",
            Verdict::Problem,
            format!("{}: {e}", files.key.display()),
            "install the private key next to the certificate",
        )),
        Ok(meta) if meta.mode() & 0o077 != 0 => out.push(bad(
            "key",
            Verdict::Problem,
            format!(
                "{} can be read by others (mode {:o})",
                files.key.display(),
                meta.mode() & 0o777
            ),
            format!("chmod 600 {}", files.key.display()),
        )),
        Ok(meta) if meta.uid() != nix::unistd::geteuid().as_raw() => out.push(bad(
            "key",
            Verdict::Warning,
            format!("{} belongs to uid {}", files.key.display(), meta.uid()),
            "the key should belong to whoever runs the tunnel (root for the device tunnel)",
        )),
        Ok(_) => match std::fs::read(&files.key)
            .map_err(|e| e.to_string())
            .and_then(|b| pki::PrivateKey::load(&b).map_err(|e| e.to_string()))
            .and_then(|k| k.public_key_spki().map_err(|e| e.to_string()))
        {
            Ok(spki) if spki == leaf.spki_der() => {
                out.push(ok("key", "matches the certificate, private to its owner"));
            }
            Ok(_) => out.push(bad(
                "key",
                Verdict::Problem,
                "the key does not belong to the certificate",
                "install the key that was issued with this certificate",
            )),
            Err(e) => out.push(bad(
                "key",
                Verdict::Problem,
                format!("{}: {e}", files.key.display()),
                "a PEM private key (PKCS#8, PKCS#1 or SEC1) is expected",
            )),
        },
    }
    let mut trust = pki::TrustStore::new();
    let mut roots = Vec::new();
    for file in &files.ca {
        let certs = std::fs::read(file)
            .map_err(|e| e.to_string())
            .and_then(|b| pki::load_certificates(&b).map_err(|e| e.to_string()));
        match certs {
            Ok(certs) => {
                for c in certs {
                    roots.push(c.subject().to_owned());
                    let _ = trust.add_root(c);
                }
            }
            Err(e) => out.push(bad(
                "roots",
                Verdict::Problem,
                format!("{}: {e}", file.display()),
                "the roots must be PEM certificates",
            )),
        }
    }
    if roots.is_empty() {
        out.push(bad(
            "roots",
            Verdict::Problem,
            "no trusted root configured",
            "install the root that issued the gateway's certificate (/etc/aovpn/ca/*.pem for the device tunnel)",
        ));
        return out;
    }
    let at = std::time::UNIX_EPOCH + Duration::from_secs(unix_now);
    match trust.verify(leaf, &chain[1..], pki::Role::Client, at) {
        Ok(_) => out.push(ok(
            "chain",
            format!("ours chains to a trusted root, client authentication allowed ({})", roots.join("; ")),
        )),
        Err(e) => out.push(bad(
            "chain",
            Verdict::Warning,
            format!("our certificate against our own roots: {e}"),
            "the gateway checks it against its roots; if they are ours too, reissue the certificate for client authentication (EKU clientAuth) from that CA, with its intermediates after it in the file",
        )),
    }
    let left = leaf
        .not_after()
        .duration_since(at)
        .unwrap_or(Duration::ZERO);
    if left.is_zero() {
        out.push(bad(
            "expiry",
            Verdict::Problem,
            "our certificate has expired",
            "renew the certificate",
        ));
    } else if left < EXPIRY_WARNING {
        out.push(bad(
            "expiry",
            Verdict::Warning,
            format!(
                "our certificate expires in {} days",
                left.as_secs() / 86_400
            ),
            "renew the certificate before it expires",
        ));
    } else {
        out.push(ok(
            "expiry",
            format!("{} days left", left.as_secs() / 86_400),
        ));
    }
    out
}

/// Each server's name resolves; the addresses found (in the profile's order).
pub async fn check_servers(servers: &[String]) -> (Vec<Check>, Vec<(String, SocketAddr)>) {
    let mut checks = Vec::new();
    let mut found = Vec::new();
    for server in servers {
        match resolve(server).await {
            Ok((name, addr)) => {
                checks.push(ok(&format!("dns {server}"), addr.to_string()));
                found.push((name, addr));
            }
            Err(e) => checks.push(bad(
                &format!("dns {server}"),
                Verdict::Problem,
                e.to_string(),
                "check the name in the profile's Servers and this machine's DNS",
            )),
        }
    }
    (checks, found)
}

/// A real handshake with the gateway at `addr` (dialled as `name`), with what the tunnel
/// would send; deleted as soon as it is up.
pub async fn check_handshake(options: &ConnectionOptions, name: &str, addr: SocketAddr) -> Check {
    let check = format!("ike {name}");
    let config = match initiator_config(options, name, addr.port()) {
        Ok(mut c) => {
            // Not INITIAL_CONTACT: the gateway would take it as our tunnel's restart and drop
            // the tunnel that is up.
            c.initial_contact = false;
            // Nor a virtual address: the gateway would give the probe the tunnel's own
            // (sticky per identity) and take it back, with its routes, when the probe goes.
            c.request_ipv4 = false;
            c.request_ipv6 = false;
            c
        }
        Err(e) => return local_problem(&check, e),
    };
    let offered: Vec<String> = config
        .ike
        .ike_proposals
        .iter()
        .map(ToString::to_string)
        .collect();
    let socket = match tokio::net::UdpSocket::bind(match addr {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    })
    .await
    {
        Ok(s) => s,
        Err(e) => {
            return bad(
                &check,
                Verdict::Problem,
                format!("socket: {e}"),
                "run as root or as the tunnel's user",
            );
        }
    };
    // Our address as the gateway will see it (before any NAT): the route's source.
    let route_source = std::net::UdpSocket::bind(SocketAddr::new(
        if addr.is_ipv4() {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        },
        0,
    ))
    .and_then(|s| s.connect(addr).and_then(|()| s.local_addr()));
    let local = match (route_source, socket.local_addr()) {
        (Ok(source), Ok(ours)) => SocketAddr::new(source.ip(), ours.port()),
        (Err(e), _) | (_, Err(e)) => {
            return bad(
                &check,
                Verdict::Problem,
                format!("no route to {addr}: {e}"),
                "this machine has no path to the gateway: check its network",
            );
        }
    };
    let provider = Arc::new(ipsec_crypto::Provider::system());
    let start = Instant::now();
    let mut sa = match IkeSa::connect(Arc::new(config), provider, start, local, addr) {
        Ok(sa) => sa,
        Err(e) => return local_problem(&check, e),
    };
    sa.set_unix_time(tunnel::host::unix_now());
    let mut answered = false;
    let mut buf = vec![0u8; 65_536];
    loop {
        send_all(&mut sa, &socket, addr).await;
        while let Some(event) = sa.poll_event() {
            match event {
                Event::IkeSaEstablished(info) => {
                    sa.delete(Instant::now());
                    send_all(&mut sa, &socket, addr).await;
                    let via = info
                        .eap_tls
                        .map(|t| format!(", EAP-TLS ({t})"))
                        .unwrap_or_default();
                    return ok(
                        &check,
                        format!(
                            "IKE_SA_INIT answered ({}), the gateway's certificate ({}) chains to our roots and names {name}, ours accepted{via}; {} ms; deleted again",
                            info.algorithms,
                            info.peer_subject,
                            start.elapsed().as_millis()
                        ),
                    );
                }
                Event::Failed(f) => return explain(&check, &f, answered, &offered, addr),
                _ => {}
            }
        }
        let deadline = sa
            .poll_timeout()
            .map(|t| t.min(start + HANDSHAKE_LIMIT))
            .unwrap_or(start + HANDSHAKE_LIMIT);
        if Instant::now() >= start + HANDSHAKE_LIMIT {
            let timeout = ikev2::Failure {
                reason: FailureReason::Timeout,
                notify_sent: None,
                notify_received: None,
                remote: addr,
                claimed_id: None,
            };
            return explain(&check, &timeout, answered, &offered, addr);
        }
        match tokio::time::timeout_at(deadline.into(), socket.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) if from.ip() == addr.ip() => {
                answered = true;
                let mut bytes = &buf[..n];
                if from.port() != addr.port() {
                    if bytes.starts_with(&[0, 0, 0, 0]) {
                        bytes = &bytes[4..];
                    } else {
                        continue;
                    }
                }
                sa.handle_datagram(Instant::now(), local, from, bytes);
            }
            Ok(_) => {}
            Err(_) => sa.handle_timeout(Instant::now()),
        }
    }
}

fn local_problem(check: &str, e: impl std::fmt::Display) -> Check {
    bad(
        check,
        Verdict::Problem,
        e.to_string(),
        "fix the local setup first",
    )
}

/// Sends what the IKE SA has to send to the gateway at `addr` (IKE port `addr.port()`).
async fn send_all(sa: &mut IkeSa, socket: &tokio::net::UdpSocket, addr: SocketAddr) {
    while let Some(t) = sa.poll_transmit() {
        let mut bytes = t.bytes;
        if t.remote.port() != addr.port() {
            // NAT-T port: IKE carries the non-ESP marker there (RFC 3948).
            bytes.splice(0..0, [0u8; 4]);
        }
        let _ = socket.send_to(&bytes, t.remote).await;
    }
}

/// A failed handshake in the words of the check that failed; what to do is the engine's
/// advice, as `aovpn status` and the gateway's log have it.
fn explain(
    check: &str,
    failure: &ikev2::Failure,
    answered: bool,
    offered: &[String],
    addr: SocketAddr,
) -> Check {
    let fix = failure.advice(true);
    let detail = match (&failure.reason, failure.notify_received) {
        (FailureReason::Timeout | FailureReason::EstablishTimeout, _) if !answered => {
            format!("no answer on UDP {} from {addr}", addr.port())
        }
        (FailureReason::Timeout | FailureReason::EstablishTimeout, _) => {
            "the gateway answered IKE_SA_INIT, then went silent".into()
        }
        (FailureReason::NoProposalChosen, _) | (_, Some(NotifyType::NO_PROPOSAL_CHOSEN)) => {
            format!(
                "NO_PROPOSAL_CHOSEN: the gateway takes none of ours ({})",
                offered.join(", ")
            )
        }
        (FailureReason::InvalidKeGroup(g), _) => {
            format!("INVALID_KE_PAYLOAD: the gateway wants DH group {g}, which we do not offer")
        }
        (FailureReason::PeerRejected(r), _) => format!("the gateway's certificate: {r}"),
        (_, Some(NotifyType::AUTHENTICATION_FAILED)) => {
            "AUTHENTICATION_FAILED: the gateway does not accept our certificate".into()
        }
        (other, _) => other.to_string(),
    };
    bad(check, Verdict::Problem, detail, fix)
}

/// The DNS servers of the profile's DomainNameInformation answer for their namespace (asked
/// for its SOA; through the tunnel while it is up, as the stub or resolved would ask).
pub async fn check_split_dns(rules: &[profile::plan::SplitDns]) -> Vec<Check> {
    let mut out = Vec::new();
    for rule in rules {
        let zone = rule.domain.trim_start_matches('.');
        let zone = if zone.is_empty() { "." } else { zone };
        let Ok(name) =
            hickory_proto::rr::Name::from_ascii(format!("{}.", zone.trim_end_matches('.')))
        else {
            continue;
        };
        for server in &rule.servers {
            let mut query = hickory_proto::op::Message::query();
            query.add_query(hickory_proto::op::Query::query(
                name.clone(),
                hickory_proto::rr::RecordType::SOA,
            ));
            let Ok(bytes) = query.to_vec() else { continue };
            let check = format!("dns {} @{server}", rule.domain);
            let answer = crate::split_dns::ask_udp(&bytes, &[SocketAddr::new(*server, 53)])
                .await
                .and_then(|a| hickory_proto::op::Message::from_vec(&a).ok());
            out.push(match answer {
                Some(a) => ok(&check, format!("answers ({})", a.metadata.response_code)),
                None => bad(
                    &check,
                    Verdict::Problem,
                    "no answer",
                    "the server must be reachable through the tunnel: a Route (or the gateway's pushed routes) must cover it",
                ),
            });
        }
    }
    out
}

/// Whether any check found a problem.
pub fn has_problem(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.verdict == Verdict::Problem)
}

/// The files of a tunnel with the agent's store layout (`config_dir`: machine files, ca/).
pub fn system_files(config_dir: &Path) -> Files {
    let config = crate::config::AgentConfig::load(config_dir).ok();
    let dir = config_dir.join("machine");
    Files {
        cert: dir.join("certificate.pem"),
        key: dir.join("key.pem"),
        ca: config.map(|c| c.ca_files()).unwrap_or_default(),
    }
}
