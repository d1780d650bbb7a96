//! What a tunnel installs on the host once its Child SA is up (traffic filters, addresses,
//! routes, DNS), the record of it kept for crash recovery, and its removal.

use ipnet::IpNet;
use netio::dns::DnsConfig;
use netio::netlink::{IfAddress, Installed, InstalledConfig, Route};
use serde::Serialize;

use super::{Connection, ConnectionError, Report, RoutePolicy, setup};

/// What one tunnel added to the system outside its TUN device's own lifetime.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct InstallRecord {
    pub interface: String,
    pub tun_index: u32,
    pub routes: Vec<Route>,
    pub addresses: Vec<IfAddress>,
    /// DNS settings were applied (under the tunnel's key in
    /// [`SharedDns`](crate::dns::SharedDns)).
    pub dns: bool,
    /// The nftables table holding the tunnel's traffic filters.
    #[serde(default)]
    pub firewall_table: Option<String>,
}

/// A route through the tunnel as installed: a default route becomes its two halves, which win
/// over the machine's default route without clashing with it (same prefix and metric).
fn tunnel_prefixes(net: IpNet) -> Vec<IpNet> {
    if net.prefix_len() != 0 {
        return vec![net];
    }
    let halves = match net {
        IpNet::V4(_) => ["0.0.0.0/1", "128.0.0.0/1"],
        IpNet::V6(_) => ["::/1", "8000::/1"],
    };
    halves.iter().filter_map(|h| h.parse().ok()).collect()
}

/// What a tunnel installed on the host once its first Child SA came up.
pub(super) struct Up {
    installed: InstalledConfig,
    /// Routes to the gateway itself outside the tunnel (they follow the physical path).
    bypass: Vec<IpNet>,
    /// DNS settings were applied under the connection's key.
    dns: bool,
    /// The nftables table of the traffic filters.
    firewall: Option<String>,
}

impl Up {
    /// Routes and addresses, then the traffic filters: the interface never carries unfiltered
    /// traffic.
    pub(super) async fn remove(self) {
        if let Err(e) = self.installed.teardown().await {
            tracing::warn!("removing routes and addresses: {e}");
        }
        if let Some(table) = &self.firewall
            && let Err(e) = netio::firewall::remove(table).await
        {
            tracing::warn!("removing traffic filters: {e}");
        }
    }
}

impl Connection {
    /// Routes to the gateway outside the tunnel follow the physical path after a change.
    pub(super) async fn refresh_bypass_routes(&mut self) {
        let Some(up) = self.up.as_mut() else {
            return;
        };
        if up.bypass.is_empty() {
            return;
        }
        let stale: Vec<Route> = up
            .installed
            .installed()
            .iter()
            .filter_map(|i| match i {
                Installed::Route(r) if r.oif != Some(self.tun_index) => Some(*r),
                _ => None,
            })
            .collect();
        for r in &stale {
            if let Err(e) = up.installed.remove_route(r).await {
                tracing::warn!("removing the old route outside the tunnel: {e}");
            }
        }
        for net in up.bypass.clone() {
            let mut route = Route::via_dev(net.network(), net.prefix_len(), self.physical.oif);
            route.gateway = self.physical.gateway;
            if let Err(e) = up.installed.add_route(route).await {
                tracing::warn!("route {net} outside the tunnel: {e}");
            }
        }
        self.report_installed();
    }

    fn report_installed(&self) {
        let mut record = InstallRecord {
            interface: self.status.interface.clone(),
            tun_index: self.tun_index,
            dns: self.up.as_ref().is_some_and(|up| up.dns),
            firewall_table: self.up.as_ref().and_then(|up| up.firewall.clone()),
            ..InstallRecord::default()
        };
        if let Some(up) = &self.up {
            for item in up.installed.installed() {
                match item {
                    Installed::Route(r) => record.routes.push(*r),
                    Installed::Address(a) => record.addresses.push(*a),
                }
            }
        }
        let _ = self.reports.send(Report::Installed(record));
    }

    pub(super) async fn child_up(
        &mut self,
        child: &tunnel::ChildInfo,
    ) -> Result<(), ConnectionError> {
        // Filters first: the interface never carries unfiltered traffic. A table left by an
        // earlier run on this interface name goes, whether or not this profile has filters.
        let firewall = if self.options.traffic_filters.is_empty() {
            let stale = netio::firewall::table_name(&self.status.interface);
            if let Err(e) = netio::firewall::remove(&stale).await {
                tracing::debug!("no stale traffic filters removed: {e}");
            }
            None
        } else {
            Some(
                netio::firewall::install(&self.status.interface, &self.options.traffic_filters)
                    .await
                    .map_err(setup("traffic filters"))?,
            )
        };
        let result = self.plumb_child(child, firewall.clone()).await;
        if result.is_err()
            && let Some(table) = &firewall
            && let Err(e) = netio::firewall::remove(table).await
        {
            tracing::warn!("removing traffic filters: {e}");
        }
        result
    }

    /// Addresses, routes and DNS of an established Child SA, behind `firewall`'s filters.
    async fn plumb_child(
        &mut self,
        child: &tunnel::ChildInfo,
        firewall: Option<String>,
    ) -> Result<(), ConnectionError> {
        let selectors: Vec<IpNet> = child
            .ts_remote
            .iter()
            .flat_map(tunnel::child::ts_prefixes)
            .collect();
        let mut installed = self.netlink.session();
        let vip = child.virtual_ips.first().copied();
        for ip in &child.virtual_ips {
            let len = if ip.is_ipv4() { 32 } else { 128 };
            installed
                .add_address(IfAddress::new(self.tun_index, *ip, len))
                .await
                .map_err(setup(format!("address {ip}")))?;
        }
        let mut routes = Vec::new();
        match &self.options.routes {
            RoutePolicy::TrafficSelectors => {
                for net in &selectors {
                    if net.contains(&self.server.ip()) {
                        // The gateway itself stays reachable outside the tunnel.
                        let host = IpNet::from(self.server.ip());
                        if !routes.contains(&(host, false, None)) {
                            routes.push((host, false, None));
                        }
                    }
                    for part in tunnel_prefixes(*net) {
                        routes.push((part, true, None));
                    }
                }
            }
            RoutePolicy::Profile(plan) => {
                let ts: Vec<profile::Prefix> = selectors
                    .iter()
                    .map(|n| profile::Prefix {
                        addr: n.network(),
                        len: n.prefix_len(),
                    })
                    .collect();
                for r in plan.routes(self.server.ip(), &child.virtual_ips, &ts) {
                    let net = IpNet::new(r.prefix.addr, r.prefix.len).map_err(setup("route"))?;
                    if r.via == profile::plan::RouteVia::Tunnel {
                        let metric = plan.tunnel_route_metric(&r);
                        // ForceTunnel's default route, too, as two halves.
                        for part in tunnel_prefixes(net) {
                            routes.push((part, true, metric));
                        }
                    } else {
                        routes.push((net, false, r.metric));
                    }
                }
            }
        }
        let mut shown = Vec::new();
        let mut bypass = Vec::new();
        for (net, through_tunnel, metric) in routes {
            let mut route = Route::via_dev(net.network(), net.prefix_len(), self.tun_index);
            route.metric = metric;
            if through_tunnel {
                // A family without a tunnel address has nothing to send through the tunnel,
                // except under ForceTunnel: its default routes stay, so that family is
                // dropped at the tunnel rather than sent around it in clear.
                let source = child
                    .virtual_ips
                    .iter()
                    .find(|v| v.is_ipv4() == net.network().is_ipv4());
                let default_half = net.prefix_len() <= 1;
                if source.is_none() && !child.virtual_ips.is_empty() && !default_half {
                    continue;
                }
                route.source = source.copied();
            } else {
                route.oif = Some(self.physical.oif);
                route.gateway = self.physical.gateway;
                bypass.push(net);
            }
            installed
                .add_route(route)
                .await
                .map_err(setup(format!("route {net}")))?;
            let metric = metric.map(|m| format!(" metric {m}")).unwrap_or_default();
            shown.push(if through_tunnel {
                format!("{net} dev {}{metric}", self.status.interface)
            } else {
                format!("{net} (physical){metric}")
            });
        }
        let mut dns = false;
        // The profile's suffixes apply even when the gateway pushes no server (names then go
        // to the network's own servers with the corporate search list).
        let split = &self.options.split_dns;
        if !split.is_empty() && !self.dns.split_dns_available() {
            tracing::warn!(
                "DomainNameInformation not applied: no systemd-resolved and no split DNS stub (the agent runs one)"
            );
        }
        if !child.dns_servers.is_empty()
            || !self.options.dns_suffixes.is_empty()
            || !split.is_empty()
        {
            // The gateway's internal domains route those names to its servers (resolved:
            // `~domain` on the link; resolv.conf: searched too). A domain the profile's
            // suffixes already name stays a suffix: the profile wins.
            // RFC 8598 domains are for split tunnels: a full tunnel sends every name to the
            // gateway's servers anyway (and tells resolved so).
            let full_tunnel = selectors.iter().any(|n| n.prefix_len() == 0)
                || matches!(&self.options.routes, RoutePolicy::Profile(p)
                    if p.policy == profile::RoutingPolicy::ForceTunnel);
            let routing_domains = if full_tunnel {
                Vec::new()
            } else {
                child
                    .dns_domains
                    .iter()
                    .filter(|d| !self.options.dns_suffixes.contains(d))
                    .cloned()
                    .collect()
            };
            let config = DnsConfig {
                servers: child.dns_servers.clone(),
                search_domains: self.options.dns_suffixes.clone(),
                routing_domains,
                default_route: Some(full_tunnel),
            };
            match self
                .dns
                .apply_split(&self.dns_key, &self.status.interface, &config, split)
            {
                Ok(()) => dns = true,
                Err(e) => tracing::warn!("DNS not applied: {e}"),
            }
        }
        self.up = Some(Up {
            installed,
            bypass,
            dns,
            firewall,
        });
        self.status.state = "connected".into();
        self.status.virtual_ip = vip;
        self.status.virtual_ips = child.virtual_ips.clone();
        self.status.routes = shown;
        self.status.dns = child.dns_servers.clone();
        self.status.dns_suffixes = self.options.dns_suffixes.clone();
        self.status.dns_domains = child.dns_domains.clone();
        self.status.esp = tunnel::child::describe_esp(&child.algorithms);
        self.status.since = tunnel::host::unix_now();
        tracing::info!(
            gateway = %self.server_name,
            vip = ?vip,
            routes = ?self.status.routes,
            esp = %self.status.esp,
            "tunnel up"
        );
        self.report_installed();
        self.start_registration(child);
        let _ = self
            .reports
            .send(Report::Connected(Box::new(self.fresh_status())));
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_default_route_through_the_tunnel_is_two_halves() {
        let n = |s: &str| s.parse::<ipnet::IpNet>().unwrap_or_else(|_| unreachable!());
        assert_eq!(
            tunnel_prefixes(n("0.0.0.0/0")),
            vec![n("0.0.0.0/1"), n("128.0.0.0/1")]
        );
        assert_eq!(tunnel_prefixes(n("::/0")), vec![n("::/1"), n("8000::/1")]);
        assert_eq!(tunnel_prefixes(n("10.1.0.0/16")), vec![n("10.1.0.0/16")]);
    }
}
