//! Where the gateway is and how to reach it: its name and address, the physical path to it
//! (never through one of our tunnels), and the tunnel MTU that path carries.

use std::net::{IpAddr, SocketAddr};

use netio::netlink::{Netlink, Route, RouteLookup};

use super::{ConnectionError, setup, unreachable};

/// `host`, `host:port`, an IPv6 literal, or `[v6]:port` -> (host, port); the IKE port
/// defaults to 500.
pub fn split_server(server: &str) -> Option<(String, u16)> {
    if let Some(rest) = server.strip_prefix('[') {
        let (host, tail) = rest.split_once(']')?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if tail.is_empty() => 500,
            None => return None,
        };
        return Some((host.to_owned(), port));
    }
    match server.rsplit_once(':') {
        // More than one colon without brackets: a bare IPv6 address.
        Some((h, _)) if h.contains(':') => Some((server.to_owned(), 500)),
        Some((h, p)) => Some((h.to_owned(), p.parse().ok()?)),
        None => Some((server.to_owned(), 500)),
    }
}

/// `host` or `host:port` -> (name for certificate checks, address).
pub async fn resolve(server: &str) -> Result<(String, SocketAddr), ConnectionError> {
    let (host, port) =
        split_server(server).ok_or_else(|| setup(format!("server {server}"))("bad port"))?;
    let addrs = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(unreachable(&host))?;
    let mut addrs: Vec<SocketAddr> = addrs.collect();
    addrs.sort_by_key(|a| !a.is_ipv4());
    let addr = addrs
        .first()
        .copied()
        .ok_or_else(|| unreachable(&host)("no address"))?;
    Ok((host, addr))
}

/// Whether an interface is one of aovpn's tunnels (this one's or another's).
async fn is_tunnel(netlink: &Netlink, index: u32, own: Option<u32>) -> bool {
    if Some(index) == own {
        return true;
    }
    netlink
        .link_by_index(index)
        .await
        .is_ok_and(|l| l.name.starts_with("aovpn"))
}

/// The physical path to `dest`: the kernel's route unless it points into one of our tunnels
/// (full-tunnel routes cover the gateway too, and another tunnel's routes may cover it), then
/// the best default route on a link that is no tunnel of ours.
pub(crate) async fn physical_route_to(
    netlink: &Netlink,
    dest: IpAddr,
    tun_index: Option<u32>,
) -> Result<RouteLookup, ConnectionError> {
    let lookup = netlink.route_to(dest).await.map_err(unreachable(dest))?;
    if lookup.source.is_some() && !is_tunnel(netlink, lookup.oif, tun_index).await {
        return Ok(lookup);
    }
    let routes = netlink
        .routes(dest.is_ipv6())
        .await
        .map_err(unreachable(dest))?;
    let mut best: Option<&Route> = None;
    for r in routes
        .iter()
        .filter(|r| r.prefix_len == 0 && r.table.is_none())
    {
        let Some(oif) = r.oif else { continue };
        if is_tunnel(netlink, oif, tun_index).await {
            continue;
        }
        if best.is_none_or(|b| r.metric.unwrap_or(0) < b.metric.unwrap_or(0)) {
            best = Some(r);
        }
    }
    let default = best.ok_or_else(|| unreachable(dest)("no route outside the tunnels"))?;
    let oif = default.oif.unwrap_or(0);
    // Its link's MTU: the tunnel is sized from it (unknown would raise it to the configured).
    let mtu = netlink.link_by_index(oif).await.ok().and_then(|l| l.mtu);
    let source = match default.source {
        Some(s) => Some(s),
        None => netlink
            .addresses(Some(oif))
            .await
            .map_err(unreachable(dest))?
            .into_iter()
            .map(|a| a.local)
            .find(|a| a.is_ipv4() == dest.is_ipv4()),
    };
    Ok(RouteLookup {
        oif,
        gateway: default.gateway,
        source,
        mtu,
    })
}

/// The ESP-in-UDP framing of the tunnel's packets with the first ESP proposal we offer (AES-GCM
/// when that is not one the data plane runs: the negotiation will not pick it either).
pub(crate) fn offered_framing(
    esp_proposals: &[ikev2::EspProposal],
    gateway: IpAddr,
) -> (esp::framing::OuterFamily, esp::Transform) {
    (
        esp::framing::OuterFamily::of(&gateway),
        offered_transform(esp_proposals),
    )
}

/// The transform the first ESP proposal we offer would give: what the tunnel is sized for
/// until the gateway has chosen.
pub(super) fn offered_transform(esp_proposals: &[ikev2::EspProposal]) -> esp::Transform {
    let first = esp_proposals.first();
    let offered = ikev2::EspAlgorithms {
        encr: first
            .and_then(|p| p.encr.first().copied())
            .unwrap_or(ipsec_crypto::EncrAlg::AesGcm16_256),
        integ: first.and_then(|p| p.integ.first().copied()),
        esn: false,
    };
    tunnel::child::esp_transform(&offered)
        .unwrap_or(esp::Transform::AesGcm16(esp::AesKeyLen::Aes256))
}

/// The tunnel interface's MTU: the configured one, lowered to the largest inner packet whose
/// ESP-in-UDP packet fits the MTU of the route to the gateway, so that full-size packets are
/// not fragmented on our own link; but never lowered below [`IPV6_MIN_MTU`]: Linux keeps no
/// IPv6 on a device under 1280 bytes, and the tunnel carries IPv6 (its addresses, and the
/// `::/1` halves of a full tunnel), so on a narrower IPv4 path the outer packets are
/// fragmented instead (they go without DF). Over IPv6 nothing fragments them on the way
/// (the socket sends with DONTFRAG): such a path must carry what a 1280-byte inner packet
/// needs. A configured MTU under 1280 stays as configured. `transform` is the negotiated
/// one once the gateway has chosen, the first offered before.
pub(crate) fn tunnel_mtu(
    configured: u16,
    path_mtu: Option<u32>,
    transform: esp::Transform,
    gateway: IpAddr,
) -> u16 {
    let Some(path_mtu) = path_mtu else {
        return configured;
    };
    let outer = esp::framing::OuterFamily::of(&gateway);
    let fits = esp::framing::inner_mtu(path_mtu as usize, outer, transform).unwrap_or(0);
    let fits = u16::try_from(fits).unwrap_or(u16::MAX);
    configured.min(fits.max(IPV6_MIN_MTU))
}

/// The smallest MTU of a link that carries IPv6 (RFC 8200 section 5).
pub(crate) const IPV6_MIN_MTU: u16 = 1280;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The configured MTU holds on an ordinary 1500-byte path; a smaller route MTU lowers it to
    /// exactly what fits (GCM over IPv4: 60 bytes of framing, 4-byte alignment, 2-byte trailer),
    /// CBC and an IPv6 outer header cost more; nothing is lowered below IPv6's 1280, and a
    /// configured MTU under 1280 is left alone.
    #[test]
    fn the_tunnel_mtu_is_sized_from_the_path() {
        let v4: IpAddr = "203.0.113.1".parse().unwrap();
        let gcm = offered_transform(&[ikev2::EspProposal::parse("aes256gcm16", false).unwrap()]);
        let cbc = offered_transform(&[ikev2::EspProposal::parse("aes256-sha256", false).unwrap()]);
        assert_eq!(tunnel_mtu(1400, Some(1500), gcm, v4), 1400);
        assert_eq!(tunnel_mtu(1400, None, gcm, v4), 1400);
        // 1400 - 60 = 1340, 4-aligned, minus the 2-byte trailer.
        assert_eq!(tunnel_mtu(1400, Some(1400), gcm, v4), 1338);
        // 1400 - (20 + 8 + 8 + 16 IV + 16 ICV) = 1332 -> 83 blocks of 16 = 1328, minus 2.
        assert_eq!(tunnel_mtu(1400, Some(1400), cbc, v4), 1326);
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(tunnel_mtu(1400, Some(1400), gcm, v6), 1318);
        // Narrower than IPv6 allows: 1280, the outer packets fragment.
        assert_eq!(tunnel_mtu(1400, Some(1300), gcm, v4), 1280);
        assert_eq!(tunnel_mtu(1400, Some(1280), gcm, v6), 1280);
        assert_eq!(tunnel_mtu(1400, Some(600), gcm, v4), 1280);
        assert_eq!(tunnel_mtu(1200, Some(600), gcm, v4), 1200);
    }

    #[test]
    fn server_strings_split_into_host_and_port() {
        let s = |x: &str| split_server(x);
        assert_eq!(s("vpn.example.com"), Some(("vpn.example.com".into(), 500)));
        assert_eq!(
            s("vpn.example.com:4501"),
            Some(("vpn.example.com".into(), 4501))
        );
        assert_eq!(s("203.0.113.1"), Some(("203.0.113.1".into(), 500)));
        assert_eq!(s("2001:db8::1"), Some(("2001:db8::1".into(), 500)));
        assert_eq!(s("[2001:db8::1]"), Some(("2001:db8::1".into(), 500)));
        assert_eq!(s("[2001:db8::1]:4500"), Some(("2001:db8::1".into(), 4500)));
        assert_eq!(s("vpn.example.com:x"), None);
        assert_eq!(s("[2001:db8::1]x"), None);
    }
}
