//! Stateless IKE_SA_INIT probes: which common suites the gateway takes, and what the path to
//! its UDP 4500 carries.

use std::net::SocketAddr;
use std::time::Duration;

use netio::netlink::Netlink;

use super::{Check, Verdict, bad, local_problem, ok};
use crate::connection::{
    ConnectionOptions, IPV6_MIN_MTU, initiator_config, offered_framing, physical_route_to,
    tunnel_mtu,
};

/// IKE suites common in deployments (Windows' and Azure's defaults, strongSwan's, the RFC 8221
/// recommendations), asked one by one when the gateway refuses ours.
pub(super) const COMMON_SUITES: [&str; 13] = [
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
pub(super) async fn gateway_suites(
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
    // The MTU the agent gives the tunnel: the configured one, lowered to what this machine's
    // route to the gateway carries. Read before the probes below, whose DF datagrams may teach
    // the kernel a path MTU the agent's own traffic would not.
    let route_mtu = match Netlink::new() {
        Ok(netlink) => physical_route_to(&netlink, natt.ip(), None)
            .await
            .ok()
            .and_then(|r| r.mtu),
        Err(_) => None,
    };
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
    let mtu = tunnel_mtu(options.mtu, route_mtu, transform, natt.ip());
    let needed = esp::framing::outer_len(usize::from(mtu), outer, transform);
    let suggested = esp::framing::inner_mtu(largest as usize, outer, transform).unwrap_or(0);
    if largest as usize >= needed {
        out.push(ok(
            "path mtu",
            format!(
                "{crossed} unfragmented{here}; the tunnel's full packets (MTU {mtu}) need {needed}"
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
    let mend = format!(
        "mend the path: it must carry {needed}-byte datagrams, or let ICMP \"fragmentation needed\" and fragments through"
    );
    let fix = if suggested >= usize::from(IPV6_MIN_MTU) {
        format!(
            "set tunnel_mtu = {suggested} in /etc/aovpn/agent.toml (and the gateway's [tunnel] mtu), or {mend}"
        )
    } else {
        // Below 1280 Linux takes IPv6 off the tunnel device: not a fix to hand out blindly.
        format!(
            "{mend}; the agent does not lower the tunnel below 1280 bytes (IPv6's minimum): tunnel_mtu = {suggested} avoids fragments only with a gateway that assigns no IPv6 address (Linux keeps no IPv6 on such a device, and the tunnel would not come up)"
        )
    };
    if fragments_pass {
        out.push(bad(
            "path mtu",
            Verdict::Warning,
            format!(
                "{crossed} unfragmented{here}; the tunnel's full packets (MTU {mtu}) need {needed}: they are fragmented on the way (fragments do pass)"
            ),
            fix,
        ));
    } else {
        out.push(bad(
            "path mtu",
            Verdict::Problem,
            format!(
                "{crossed}{here}; the tunnel's full packets (MTU {mtu}) need {needed}, and neither they nor their fragments arrive: small packets work, large transfers hang (a path MTU black hole)"
            ),
            fix,
        ));
    }
    out
}
