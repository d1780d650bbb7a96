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

use crate::connection::{ConnectionOptions, initiator_config, offered_framing, resolve};

/// How long the handshake with the gateway may take.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(8);
/// A certificate that expires sooner than this is reported.
const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 86_400);

pub use tunnel::check::{Check, Verdict, has_problem};

fn ok(check: &str, detail: impl Into<String>) -> Check {
    Check::ok(check, detail)
}

fn bad(check: &str, verdict: Verdict, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check::bad(check, verdict, detail, fix)
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
    out.push(check_key(&files.key, leaf));
    let mut trust = pki::TrustStore::new();
    let mut roots = Vec::new();
    let mut root_certs = Vec::new();
    for file in &files.ca {
        let certs = std::fs::read(file)
            .map_err(|e| e.to_string())
            .and_then(|b| pki::load_certificates(&b).map_err(|e| e.to_string()));
        match certs {
            Ok(certs) => {
                for c in certs {
                    roots.push(c.subject().to_owned());
                    root_certs.push(c.clone());
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
    for root in &root_certs {
        out.extend(check_root(root, unix_now));
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
    let eku_refused = leaf
        .eku()
        .filter(|e| !e.client_auth && !e.any)
        .map(|e| eku_names(&e));
    // The CA that issued the last certificate of the file: the file must go on to it or a
    // root must be it (checked by name, as path building does).
    let top = chain.last().unwrap_or(leaf);
    let issuer_missing = !top.is_self_issued()
        && !root_certs
            .iter()
            .any(|r| r.subject_der() == top.issuer_der());
    match trust.verify(leaf, &chain[1..], pki::Role::Client, at) {
        Ok(_) => out.push(ok(
            "chain",
            format!("ours chains to a trusted root, client authentication allowed ({})", roots.join("; ")),
        )),
        Err(_) if eku_refused.is_some() => out.push(bad(
            "chain",
            Verdict::Problem,
            format!(
                "our certificate is not for client authentication: its extended key usage is {}",
                eku_refused.unwrap_or_default()
            ),
            "a tunnel needs a certificate with EKU clientAuth (1.3.6.1.5.5.7.3.2): request one from a client-authentication template (aovpn pki issue --kind machine or user), not the gateway's or a web server's",
        )),
        Err(e) if issuer_missing && chain.len() == 1 => out.push(bad(
            "chain",
            Verdict::Problem,
            format!(
                "the CA that issued our certificate ({}) is neither in {} nor among our roots: the intermediate certificate is missing ({e})",
                top.issuer(),
                files.cert.display()
            ),
            format!(
                "append the issuing (intermediate) CA's certificate to {} after ours; the gateway needs it to build the chain",
                files.cert.display()
            ),
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
/// would send; deleted as soon as it is up. `request_address`: ask for virtual addresses as
/// the tunnel does (a gateway with a pool sets up ESP only then); not while the tunnel runs,
/// whose own addresses the gateway would hand the probe (they are sticky per identity) and
/// take back with their routes when the probe goes.
pub async fn check_handshake(
    options: &ConnectionOptions,
    name: &str,
    addr: SocketAddr,
    request_address: bool,
) -> Check {
    let check = format!("ike {name}");
    let config = match initiator_config(options, name, addr.port()) {
        Ok(mut c) => {
            // Not INITIAL_CONTACT: the gateway would take it as our tunnel's restart and drop
            // the tunnel that is up.
            c.initial_contact = false;
            c.request_ipv4 &= request_address;
            c.request_ipv6 &= request_address;
            c
        }
        Err(e) => return local_problem(&check, e),
    };
    let ours = config.ike.ike_proposals.clone();
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
                    // The Child SA's outcome came in the same IKE_AUTH response.
                    let mut esp = Ok("ESP not set up".to_owned());
                    while let Some(event) = sa.poll_event() {
                        match event {
                            Event::ChildSaEstablished(child) => {
                                esp = Ok(format!(
                                    "ESP {}",
                                    tunnel::child::describe_esp(&child.algorithms)
                                ));
                            }
                            Event::Failed(f) => esp = Err(f),
                            _ => {}
                        }
                    }
                    sa.delete(Instant::now());
                    send_all(&mut sa, &socket, addr).await;
                    let via = info
                        .eap_tls
                        .map(|t| format!(", EAP-TLS ({t})"))
                        .unwrap_or_default();
                    let ike = format!(
                        "IKE_SA_INIT answered ({}), the gateway's certificate ({}) chains to our roots and names {name}, ours accepted{via}",
                        info.algorithms, info.peer_subject,
                    );
                    let ms = start.elapsed().as_millis();
                    return match esp {
                        Ok(esp) => ok(&check, format!("{ike}, {esp}; {ms} ms; deleted again")),
                        // The probe asks for no address (it would take the tunnel's own),
                        // and a gateway that hands out addresses may refuse it the Child SA.
                        Err(f)
                            if f.reason == FailureReason::CpRequired
                                || f.notify_received == Some(NotifyType::FAILED_CP_REQUIRED) =>
                        {
                            ok(
                                &check,
                                format!(
                                    "{ike}; ESP not tried (the gateway wants an address request, which this probe does not make); {ms} ms; deleted again"
                                ),
                            )
                        }
                        Err(f) => {
                            let mut refused =
                                explain(&check, &f, true, &ours, Some((true, Vec::new())), addr);
                            refused.detail =
                                format!("{ike}, but the Child SA was refused: {}", refused.detail);
                            refused
                        }
                    };
                }
                Event::Failed(f) => {
                    let suites = if f.reason == FailureReason::NoProposalChosen
                        || f.notify_received == Some(NotifyType::NO_PROPOSAL_CHOSEN)
                    {
                        gateway_suites(&ours, addr).await
                    } else {
                        None
                    };
                    return explain(&check, &f, answered, &ours, suites, addr);
                }
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
            return explain(&check, &timeout, answered, &ours, None, addr);
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
    ours: &[ikev2::IkeProposal],
    suites: Option<(bool, Vec<String>)>,
    addr: SocketAddr,
) -> Check {
    let offered: Vec<String> = ours.iter().map(ToString::to_string).collect();
    let mut fix = failure.advice(true).to_owned();
    let detail = match (&failure.reason, failure.notify_received) {
        (FailureReason::Timeout | FailureReason::EstablishTimeout, _) if !answered => {
            format!("no answer on UDP {} from {addr}", addr.port())
        }
        (FailureReason::Timeout | FailureReason::EstablishTimeout, _) => {
            "the gateway answered IKE_SA_INIT, then went silent".into()
        }
        (FailureReason::NoProposalChosen, _) | (_, Some(NotifyType::NO_PROPOSAL_CHOSEN)) => {
            match suites {
                // Our IKE proposals pass the first exchange: the Child SA's were refused.
                Some((true, _)) => {
                    fix = "offer an ESP proposal the gateway takes (the profile's CryptographySuite: EncryptionMethod, IntegrityCheckMethod, PfsGroup), or add ours to the gateway's crypto.esp_proposals".into();
                    "NO_PROPOSAL_CHOSEN: the gateway takes our IKE proposals but none of our ESP proposals".into()
                }
                Some((false, theirs)) if !theirs.is_empty() => {
                    fix = format!(
                        "offer one the gateway takes (the profile's CryptographySuite), or add one of ours to the gateway's crypto.ike_proposals; it takes {}",
                        theirs.join(", ")
                    );
                    format!(
                        "NO_PROPOSAL_CHOSEN: ours: {}; the gateway's, of {} common suites asked: {}",
                        offered.join(", "),
                        COMMON_SUITES.len(),
                        theirs.join(", ")
                    )
                }
                Some((false, _)) => format!(
                    "NO_PROPOSAL_CHOSEN: ours: {}; the gateway takes none of {} common suites either",
                    offered.join(", "),
                    COMMON_SUITES.len()
                ),
                None => format!(
                    "NO_PROPOSAL_CHOSEN: the gateway takes none of ours ({})",
                    offered.join(", ")
                ),
            }
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

/// IKE suites common in deployments (Windows' and Azure's defaults, strongSwan's, the RFC 8221
/// recommendations), asked one by one when the gateway refuses ours.
const COMMON_SUITES: [&str; 13] = [
    "aes256gcm16-prfsha384-ecp384",
    "aes256gcm16-prfsha256-ecp256",
    "aes128gcm16-prfsha256-ecp256",
    "aes256gcm16-prfsha256-x25519",
    "chacha20poly1305-prfsha256-x25519",
    "aes256-sha384-ecp384",
    "aes256-sha256-ecp256",
    "aes256-sha256-modp2048",
    "aes128-sha256-modp2048",
    "aes256-sha1-modp2048",
    "aes256-sha256-modp1024",
    "aes256-sha1-modp1024",
    "3des-sha1-modp1024",
];
/// How long one round of probes waits for answers.
const PROBE_WAIT: Duration = Duration::from_millis(1200);
/// Rounds: a probe unanswered in the first is sent once more (loss is not a verdict).
const PROBE_ROUNDS: usize = 2;
/// Outer IP packet sizes probed, largest first (Ethernet, PPPoE, common tunnels, IPv6's
/// minimum, and below).
const PROBE_SIZES: [u32; 22] = [
    1500, 1492, 1480, 1472, 1460, 1450, 1440, 1420, 1400, 1380, 1360, 1340, 1320, 1300, 1280, 1260,
    1240, 1200, 1100, 1000, 800, 576,
];

/// What the gateway said to each probe, by initiator SPI; and the probes our own interface
/// refused to send (`EMSGSIZE`: larger than its MTU).
#[derive(Debug, Default)]
struct Answers {
    by_spi: std::collections::HashMap<u64, ikev2::probe::ProbeAnswer>,
    too_big_here: std::collections::HashSet<u64>,
}

/// Sends the probes on `socket` (connected to the gateway; `marker`: the non-ESP marker in
/// front, for UDP 4500), the unanswered ones again after a while, and collects the answers. A
/// responder that demands a COOKIE gets the probe again with it at once (the COOKIE answer
/// already tells that the probe arrived; the second answer tells the rest).
async fn ask(
    socket: &tokio::net::UdpSocket,
    marker: bool,
    probes: &[ikev2::probe::Probe],
) -> Answers {
    use ikev2::probe::ProbeAnswer;
    let mut answers = Answers::default();
    let mut probes = probes.to_vec();
    let mut cookied = std::collections::HashSet::new();
    let send = |p: &ikev2::probe::Probe| {
        let mut bytes = Vec::with_capacity(p.bytes.len() + 4);
        if marker {
            bytes.extend_from_slice(&[0; 4]);
        }
        bytes.extend_from_slice(&p.bytes);
        bytes
    };
    let mut buf = vec![0u8; 65_536];
    for _ in 0..PROBE_ROUNDS {
        let mut outstanding = 0;
        for p in &probes {
            let settled = match answers.by_spi.get(&p.spi_i) {
                Some(ProbeAnswer::Cookie(_)) => false,
                Some(_) => true,
                None => false,
            };
            if settled || answers.too_big_here.contains(&p.spi_i) {
                continue;
            }
            match socket.send(&send(p)).await {
                Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                    answers.too_big_here.insert(p.spi_i);
                }
                _ => outstanding += 1,
            }
        }
        let deadline = tokio::time::Instant::now() + PROBE_WAIT;
        while outstanding > 0 {
            let Ok(Ok(n)) = tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await else {
                break;
            };
            let mut bytes = &buf[..n];
            if marker {
                match bytes.strip_prefix(&[0u8; 4]) {
                    Some(rest) => bytes = rest,
                    None => continue,
                }
            }
            let Some((spi, meaning)) = ikev2::probe::answer(bytes) else {
                continue;
            };
            let Some(i) = probes.iter().position(|p| p.spi_i == spi) else {
                continue;
            };
            match meaning {
                ProbeAnswer::Cookie(cookie) if cookied.insert(spi) => {
                    if let Ok(again) = probes[i].with_cookie(&cookie) {
                        let _ = socket.send(&send(&again)).await;
                        probes[i] = again;
                    }
                    answers.by_spi.insert(spi, ProbeAnswer::Cookie(cookie));
                }
                ProbeAnswer::Cookie(_) => {}
                other => {
                    if answers
                        .by_spi
                        .insert(spi, other)
                        .is_none_or(|prev| matches!(prev, ProbeAnswer::Cookie(_)))
                    {
                        outstanding -= 1;
                    }
                }
            }
        }
        if outstanding == 0 {
            break;
        }
    }
    answers
}

async fn connected_socket(
    remote: SocketAddr,
    dont_fragment: bool,
) -> std::io::Result<tokio::net::UdpSocket> {
    tokio::net::UdpSocket::from_std(netio::udp::path_probe_socket(remote, dont_fragment)?)
}

/// Which of the common IKE suites the gateway at `addr` takes (stateless probes, one suite
/// each), and whether it takes ours; `None` when it does not answer.
async fn gateway_suites(
    ours: &[ikev2::IkeProposal],
    addr: SocketAddr,
) -> Option<(bool, Vec<String>)> {
    let provider = ipsec_crypto::Provider::system();
    let socket = connected_socket(addr, false).await.ok()?;
    let mut asked = Vec::new();
    let mut probes = Vec::new();
    let own = ikev2::probe::probe(ours, 0, &provider).ok()?;
    probes.push(own.clone());
    for suite in COMMON_SUITES {
        if let Ok(p) = ikev2::IkeProposal::parse(suite, true)
            && let Ok(probe) = ikev2::probe::probe(std::slice::from_ref(&p), 0, &provider)
        {
            asked.push((suite, probe.spi_i));
            probes.push(probe);
        }
    }
    let answers = ask(&socket, addr.port() != 500, &probes).await;
    let accepted = |spi| {
        matches!(
            answers.by_spi.get(&spi),
            Some(ikev2::probe::ProbeAnswer::Accepted { .. })
        )
    };
    if answers.by_spi.is_empty() {
        return None;
    }
    // Unauthenticated answers: an attacker on the path could claim the gateway takes only a
    // weak suite, so weak ones are never given as plain advice.
    let theirs = asked
        .iter()
        .filter(|(_, spi)| accepted(*spi))
        .map(|(s, _)| match ikev2::IkeProposal::parse(s, false) {
            Ok(_) => (*s).to_owned(),
            Err(_) => format!("{s} (weak, for old Windows only)"),
        })
        .collect();
    Some((accepted(own.spi_i), theirs))
}

/// The path to the gateway's UDP 4500, where IKE goes after the first exchange and every ESP
/// packet travels: answered at all, and the largest datagram that crosses it unfragmented
/// (probes with DF set, each an IKE_SA_INIT padded to its size, answered statelessly) against
/// what the tunnel's full-size packets need; when they need more, whether fragments pass.
pub async fn check_path(options: &ConnectionOptions, name: &str, addr: SocketAddr) -> Vec<Check> {
    let config = match initiator_config(options, name, addr.port()) {
        Ok(c) => c,
        Err(e) => return vec![local_problem("udp 4500", e)],
    };
    let natt = SocketAddr::new(addr.ip(), config.ike.natt_port);
    let proposals = &config.ike.ike_proposals;
    let (outer, transform) = offered_framing(&config.ike.esp_proposals, natt.ip());
    let ip_and_udp = outer.header_len() + esp::framing::UDP_HEADER_LEN;
    // The IKE message inside: after the IP and UDP headers and the 4-byte non-ESP marker.
    let ike_len = |size: u32| (size as usize).saturating_sub(ip_and_udp + 4);
    let provider = ipsec_crypto::Provider::system();
    let socket = match connected_socket(natt, true).await {
        Ok(s) => s,
        Err(e) => return vec![local_problem("udp 4500", format!("socket: {e}"))],
    };
    let mut sized = Vec::new();
    for size in PROBE_SIZES {
        match ikev2::probe::probe(proposals, ike_len(size), &provider) {
            Ok(p) => sized.push((size, p)),
            Err(e) => return vec![local_problem("udp 4500", e)],
        }
    }
    let probes: Vec<_> = sized.iter().map(|(_, p)| p.clone()).collect();
    let answers = ask(&socket, true, &probes).await;
    let largest = sized
        .iter()
        .filter(|(_, p)| answers.by_spi.contains_key(&p.spi_i))
        .map(|(s, _)| *s)
        .max();
    let Some(largest) = largest else {
        return vec![bad(
            "udp 4500",
            Verdict::Problem,
            format!(
                "no answer on UDP 4500 from {natt} (to datagrams from {} to 576 bytes)",
                PROBE_SIZES[0]
            ),
            "let UDP 4500 through to the gateway and back: IKE after its first exchange and every ESP packet travel there (firewalls on the way, the gateway's own)",
        )];
    };
    let mut out = vec![ok("udp 4500", format!("the gateway answers on {natt}"))];
    let local_limit = sized
        .iter()
        .filter(|(_, p)| answers.too_big_here.contains(&p.spi_i))
        .map(|(s, _)| *s)
        .min();
    let crossed = if largest == PROBE_SIZES[0] {
        format!("{largest} bytes or more cross")
    } else {
        format!("at most {largest} bytes cross")
    };
    let here = local_limit
        .map(|l| format!(" (this machine's interface takes less than {l})"))
        .unwrap_or_default();
    let needed = esp::framing::outer_len(usize::from(options.mtu), outer, transform);
    let suggested = esp::framing::inner_mtu(largest as usize, outer, transform).unwrap_or(0);
    if largest as usize >= needed {
        out.push(ok(
            "path mtu",
            format!(
                "{crossed} unfragmented{here}; the tunnel's full packets (MTU {}) need {needed}",
                options.mtu
            ),
        ));
        return out;
    }
    // Too large for the path: do fragments get through (as our ESP goes, DF clear)?
    let fragments_pass = match (
        connected_socket(natt, false).await,
        u32::try_from(needed)
            .ok()
            .map(|n| ikev2::probe::probe(proposals, ike_len(n), &provider)),
    ) {
        (Ok(s), Some(Ok(p))) => ask(&s, true, std::slice::from_ref(&p))
            .await
            .by_spi
            .contains_key(&p.spi_i),
        _ => false,
    };
    let fix = format!(
        "set tunnel_mtu = {suggested} in /etc/aovpn/agent.toml (and the gateway's [tunnel] mtu), or mend the path: it must carry {needed}-byte datagrams, or let ICMP \"fragmentation needed\" and fragments through"
    );
    if fragments_pass {
        out.push(bad(
            "path mtu",
            Verdict::Warning,
            format!(
                "{crossed} unfragmented{here}; the tunnel's full packets (MTU {}) need {needed}: they are fragmented on the way (fragments do pass)",
                options.mtu
            ),
            fix,
        ));
    } else {
        out.push(bad(
            "path mtu",
            Verdict::Problem,
            format!(
                "{crossed}{here}; the tunnel's full packets (MTU {}) need {needed}, and neither they nor their fragments arrive: small packets work, large transfers hang (a path MTU black hole)",
                options.mtu
            ),
            fix,
        ));
    }
    out
}

/// The key: readable by us, private to its owner, and the certificate's.
fn check_key(path: &Path, leaf: &pki::Certificate) -> Check {
    use std::os::unix::fs::MetadataExt;
    let missing = |e: std::io::Error| {
        bad(
            "key",
            Verdict::Problem,
            format!("{}: {e}", path.display()),
            "install the private key next to the certificate",
        )
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return missing(e),
    };
    let me = nix::unistd::geteuid().as_raw();
    let bytes = match std::fs::read(path) {
        Ok(b) => zeroize::Zeroizing::new(b),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return bad(
                "key",
                Verdict::Problem,
                format!(
                    "{} cannot be read by uid {me} (it belongs to uid {}, mode {:o})",
                    path.display(),
                    meta.uid(),
                    meta.mode() & 0o777
                ),
                format!(
                    "the key must belong to whoever runs the tunnel (root for the device tunnel, the user for her tunnel): chown that user {0}; chmod 600 {0}",
                    path.display()
                ),
            );
        }
        Err(e) => return missing(e),
    };
    if meta.mode() & 0o077 != 0 {
        return bad(
            "key",
            Verdict::Problem,
            format!(
                "{} can be read by others (mode {:o})",
                path.display(),
                meta.mode() & 0o777
            ),
            format!("chmod 600 {}", path.display()),
        );
    }
    let spki = pki::PrivateKey::load(&bytes)
        .map_err(|e| e.to_string())
        .and_then(|k| k.public_key_spki().map_err(|e| e.to_string()));
    match spki {
        Ok(spki) if spki != leaf.spki_der() => bad(
            "key",
            Verdict::Problem,
            "the key does not belong to the certificate",
            "install the key that was issued with this certificate",
        ),
        Ok(_) if meta.uid() != me => bad(
            "key",
            Verdict::Warning,
            format!("{} belongs to uid {}", path.display(), meta.uid()),
            "the key should belong to whoever runs the tunnel (root for the device tunnel)",
        ),
        Ok(_) => ok("key", "matches the certificate, private to its owner"),
        Err(e) => bad(
            "key",
            Verdict::Problem,
            format!("{}: {e}", path.display()),
            "a PEM private key (PKCS#8, PKCS#1 or SEC1) is expected",
        ),
    }
}

/// A root we trust: expired, or about to.
fn check_root(root: &pki::Certificate, unix_now: u64) -> Option<Check> {
    let at = std::time::UNIX_EPOCH + Duration::from_secs(unix_now);
    let left = root
        .not_after()
        .duration_since(at)
        .unwrap_or(Duration::ZERO);
    let day = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() / 86_400)
            .unwrap_or(0)
    };
    if left.is_zero() {
        Some(bad(
            "roots",
            Verdict::Problem,
            format!(
                "the root {} expired {} days ago: nothing chains to it any more",
                root.subject(),
                day(at).saturating_sub(day(root.not_after()))
            ),
            "install the CA's renewed root here and on the gateway, and reissue the certificates under it",
        ))
    } else if left < EXPIRY_WARNING {
        Some(bad(
            "roots",
            Verdict::Warning,
            format!(
                "the root {} expires in {} days",
                root.subject(),
                left.as_secs() / 86_400
            ),
            "renew the CA and distribute its new root before then",
        ))
    } else {
        None
    }
}

/// An EKU extension's purposes, by name.
fn eku_names(eku: &pki::Eku) -> String {
    let mut names = Vec::new();
    if eku.server_auth {
        names.push("serverAuth");
    }
    if eku.client_auth {
        names.push("clientAuth");
    }
    if eku.ike_intermediate {
        names.push("ikeIntermediate");
    }
    if names.is_empty() {
        names.push("none we know");
    }
    names.join(", ")
}

/// Whether the certificate is of the kind the tunnel is: a device tunnel authenticates the
/// machine (a certificate naming a host), a user tunnel its user (a UPN or e-mail name).
/// Gateways that take only machine certificates for device tunnels (`clients.accept`, Azure's
/// device tunnel) refuse the other kind.
pub fn check_kind(cert: &Path, device_tunnel: bool) -> Option<Check> {
    let leaf = std::fs::read(cert)
        .ok()
        .and_then(|b| pki::load_certificates(&b).ok())?
        .into_iter()
        .next()?;
    let names_a_user = !leaf.upns().is_empty() || !leaf.rfc822_names().is_empty();
    Some(match (device_tunnel, names_a_user) {
        (true, true) => bad(
            "certificate kind",
            Verdict::Warning,
            "a device tunnel with a user's certificate (it names a UPN or e-mail address)",
            "the device tunnel uses the machine certificate (Local Computer store on Windows, /etc/aovpn/machine here); gateways that take machine certificates only for it refuse this one",
        ),
        (false, false) => bad(
            "certificate kind",
            Verdict::Warning,
            "a user tunnel with a certificate that names no user (no UPN or e-mail address)",
            "the user tunnel uses the user's own certificate (her UPN in its subjectAltName)",
        ),
        (true, false) => ok(
            "certificate kind",
            "a machine certificate, for the device tunnel",
        ),
        (false, true) => ok(
            "certificate kind",
            "a user certificate, for the user tunnel",
        ),
    })
}
