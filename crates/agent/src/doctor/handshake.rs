//! A real IKE handshake with the gateway, deleted at once, and a failure in the words of the
//! check that failed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ike_wire::NotifyType;
use ikev2::{Event, FailureReason, IkeSa, Now, Path};

use super::probes::{COMMON_SUITES, gateway_suites};
use super::{Check, Verdict, bad, local_problem, ok};
use crate::connection::{ConnectionOptions, initiator_config};

/// How long the handshake with the gateway may take.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(8);

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
    let mut answered = false;
    let mut buf = vec![0u8; 65_536];
    loop {
        send_all(&mut sa, &socket).await;
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
                    send_all(&mut sa, &socket).await;
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
                // Anything from the gateway's other port is NAT-T: IKE there has the marker.
                let natt = from.port() != addr.port();
                if natt {
                    if bytes.starts_with(&[0, 0, 0, 0]) {
                        bytes = &bytes[4..];
                    } else {
                        continue;
                    }
                }
                let now = Now::new(Instant::now(), tunnel::host::unix_now());
                let path = Path {
                    local,
                    remote: from,
                    natt,
                };
                sa.handle_datagram(now, path, bytes);
            }
            Ok(_) => {}
            Err(_) => sa.handle_timeout(Instant::now()),
        }
    }
}

/// Sends what the IKE SA has to send to the gateway, IKE on the NAT-T port with its marker.
async fn send_all(sa: &mut IkeSa, socket: &tokio::net::UdpSocket) {
    while let Some(t) = sa.poll_transmit() {
        let mut bytes = t.bytes;
        if t.natt {
            // IKE on the NAT-T port carries the non-ESP marker (RFC 3948).
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
