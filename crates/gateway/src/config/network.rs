//! `[network]`: what clients outside any policy group reach, and the DNS they are given.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Prefixes behind the gateway, pushed to clients as traffic selectors (Azure's "VNet").
    pub routes: Vec<IpNet>,
    /// DNS servers pushed in the CP reply.
    #[serde(default)]
    pub dns: Vec<IpAddr>,
    /// Internal DNS domains (RFC 8598 INTERNAL_DNS_DOMAIN) pushed with the DNS servers to
    /// clients that ask: names under them go to `dns` (split DNS).
    #[serde(default)]
    pub dns_domains: Vec<String>,
    /// Let clients reach each other's virtual addresses: the pools join the traffic
    /// selectors and pushed routes. Off, a client's packets to another client are dropped
    /// (they are outside its selectors), as on an Azure gateway.
    #[serde(default)]
    pub allow_client_to_client: bool,
}

impl Network {
    /// `client_pool` is `clients.pool_v4`: a route that covers it would send the clients'
    /// own addresses back into the tunnel.
    pub(super) fn validate(&self, client_pool: Ipv4Net) -> Result<(), (&'static str, String)> {
        if self.routes.is_empty() {
            return Err((
                "network.routes",
                "no prefix to push: list the networks behind the gateway (0.0.0.0/0 for all)"
                    .into(),
            ));
        }
        if let Some(bad) = self
            .dns_domains
            .iter()
            .find(|d| !ikev2::dns_domain::is_domain(d.strip_suffix('.').unwrap_or(d)))
        {
            return Err((
                "network.dns_domains",
                format!("{bad:?} is not a DNS name (letters, digits, '-', '_', dots)"),
            ));
        }
        if !self.dns_domains.is_empty() && self.dns.is_empty() {
            return Err((
                "network.dns_domains",
                "internal domains need DNS servers to resolve them (network.dns)".into(),
            ));
        }
        for route in &self.routes {
            if route.contains(&IpNet::V4(client_pool)) && route.prefix_len() > 0 {
                return Err((
                    "network.routes",
                    format!("{route} contains the client pool {client_pool}"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::assert_each_names_its_field;

    #[test]
    fn each_network_error_names_its_field() {
        assert_each_names_its_field(&[
            (
                "routes = [\"10.1.0.0/16\"]",
                "routes = []",
                "network.routes",
            ),
            (
                "routes = [\"10.1.0.0/16\"]",
                "routes = [\"172.16.0.0/12\"]",
                "network.routes",
            ),
            (
                "dns = [\"10.1.0.53\"]",
                "dns = [\"10.1.0.53\"]\ndns_domains = [\"corp example\"]",
                "network.dns_domains",
            ),
            (
                "dns = [\"10.1.0.53\"]",
                "dns = []\ndns_domains = [\"corp.example\"]",
                "network.dns_domains",
            ),
        ]);
    }
}
