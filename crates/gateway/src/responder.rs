//! The engine's responder configuration from `gateway.toml`: proposals, lifetimes, limits,
//! and what each client (by policy group, or the defaults) is given: traffic selectors,
//! pushed routes, DNS servers and domains.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ike_wire::{TrafficSelector, TsRange};
use ikev2::{EspProposal, IkeConfig, IkeProposal, PeerPolicy, ResponderConfig};
use ipnet::IpNet;

use crate::client_validation::ClientValidator;
use crate::config::{ConfigError, GatewayConfig, GroupMatch};
use crate::credentials::LoadedCredentials;

/// The responder configuration for the engine.
pub fn responder_config(
    config: &GatewayConfig,
    config_path: &Path,
    credentials: &LoadedCredentials,
    validator: Arc<ClientValidator>,
) -> Result<ResponderConfig, ConfigError> {
    let mut ike = IkeConfig::new(credentials.local.clone(), validator);
    let legacy = config.crypto.allow_legacy;
    // With allow_legacy and no explicit list, the stock Windows set follows our defaults.
    let ike_proposals = configured_proposals(
        &config.crypto.ike_proposals,
        ("crypto.ike_proposals", legacy),
        "aes256-aes128-3des-sha256-sha1-modp2048-modp1024",
        IkeProposal::parse,
        config_path,
    )?;
    let esp_proposals = configured_proposals(
        &config.crypto.esp_proposals,
        ("crypto.esp_proposals", legacy),
        "aes256-aes128-sha1",
        EspProposal::parse,
        config_path,
    )?;
    match ike_proposals {
        Configured::List(list) => ike.ike_proposals = list,
        Configured::Legacy(p) => ike.ike_proposals.push(p),
        Configured::Defaults => {}
    }
    match esp_proposals {
        Configured::List(list) => ike.esp_proposals = list,
        Configured::Legacy(p) => ike.esp_proposals.push(p),
        Configured::Defaults => {}
    }
    ike.fragment_mtu = usize::from(config.crypto.fragment_mtu);
    // Stock Windows announces no RFC 7427 hashes: with an RSA gateway certificate it needs
    // RSA over SHA-1 (AUTH method 1); an ECDSA certificate avoids SHA-1 altogether.
    ike.allow_sha1_signatures = legacy;
    ike.dpd_interval = (config.crypto.dpd_interval_secs > 0)
        .then(|| Duration::from_secs(config.crypto.dpd_interval_secs));
    ike.ike_port = config.listen.ike_port;
    ike.natt_port = config.listen.natt_port;
    // Rekeying (CREATE_CHILD_SA) starts at 80-90 % of these; a client usually rekeys first.
    ike.ike_lifetime = Some(Duration::from_secs(config.crypto.ike_lifetime_secs));
    ike.child_lifetime = Some(Duration::from_secs(config.crypto.child_lifetime_secs));

    let mut responder = ResponderConfig::new(ike);
    responder.eap_pass_through = config.radius.is_some();
    let defaults = network_policy(
        "default",
        &config.network.routes,
        &[IpNet::V4(config.clients.pool_v4)]
            .into_iter()
            .chain(config.clients.pool_v6.map(IpNet::V6))
            .collect::<Vec<_>>(),
        &config.network.dns,
        &config.network.dns_domains,
        config.network.allow_client_to_client,
    );
    responder.local_ts = defaults.local_ts;
    responder.dns_servers = defaults.dns_servers;
    responder.dns_domains = defaults.dns_domains;
    responder.pushed_subnets = defaults.pushed_subnets;
    responder.require_virtual_ip = true;
    responder.mobike = true;
    let limits = &config.limits;
    responder.cookie_threshold = limits.cookie_threshold as usize;
    responder.half_open_limit = limits.half_open_limit as usize;
    responder.half_open_per_source = limits.half_open_per_source as usize;
    responder.max_unauthenticated_datagram = limits.max_unauthenticated_message as usize;
    responder.max_sas_per_identity = limits.max_sas_per_identity as usize;
    Ok(responder)
}

/// What clients of one group (or the defaults) are given: the routes as traffic selectors and
/// pushed subnets (with the pools too when clients may reach each other), DNS servers and
/// internal domains.
fn network_policy(
    group: &str,
    routes: &[IpNet],
    pools: &[IpNet],
    dns: &[IpAddr],
    dns_domains: &[String],
    client_to_client: bool,
) -> PeerPolicy {
    let mut reach = routes.to_vec();
    if client_to_client {
        reach.extend_from_slice(pools);
    }
    PeerPolicy {
        group: group.to_owned(),
        local_ts: reach.iter().map(|n| prefix_ts(*n)).collect(),
        dns_servers: dns.to_vec(),
        dns_domains: dns_domains
            .iter()
            .map(|d| d.strip_suffix('.').unwrap_or(d).to_ascii_lowercase())
            .collect(),
        pushed_subnets: reach,
    }
}

/// Each configured group with what its clients are given.
pub fn group_policies(config: &GatewayConfig) -> Vec<(GroupMatch, Arc<PeerPolicy>)> {
    config
        .groups
        .iter()
        .map(|g| {
            let pools: Vec<IpNet> = std::iter::once(IpNet::V4(g.pool_v4))
                .chain(g.pool_v6.map(IpNet::V6))
                .collect();
            let policy = network_policy(
                &g.name,
                &g.routes,
                &pools,
                &g.dns,
                &g.dns_domains,
                config.network.allow_client_to_client,
            );
            (g.matches.clone(), Arc::new(policy))
        })
        .collect()
}

/// What the config says about one kind of proposal.
enum Configured<P> {
    /// An explicit list replaces the defaults.
    List(Vec<P>),
    /// No list, legacy allowed: the Windows set is added after the defaults.
    Legacy(P),
    Defaults,
}

fn configured_proposals<P, E: std::fmt::Display>(
    list: &[String],
    (field, legacy): (&'static str, bool),
    legacy_set: &str,
    parse: fn(&str, bool) -> Result<P, E>,
    config_path: &Path,
) -> Result<Configured<P>, ConfigError> {
    if !list.is_empty() {
        return list
            .iter()
            .map(|p| parse(p, legacy))
            .collect::<Result<_, _>>()
            .map(Configured::List)
            .map_err(|e| ConfigError::invalid(config_path, field, e.to_string()));
    }
    if !legacy {
        return Ok(Configured::Defaults);
    }
    parse(legacy_set, true)
        .map(Configured::Legacy)
        .map_err(|e| ConfigError::invalid(config_path, "crypto.allow_legacy", e.to_string()))
}

/// The traffic selector covering exactly `net`, all protocols and ports.
pub fn prefix_ts(net: IpNet) -> TrafficSelector {
    match net {
        IpNet::V4(n) => TrafficSelector::Ipv4(TsRange {
            ip_protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
            start: n.network(),
            end: n.broadcast(),
        }),
        IpNet::V6(n) => TrafficSelector::Ipv6(TsRange {
            ip_protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
            start: n.network(),
            end: n.broadcast(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::credentials::load_credentials;
    use crate::credentials::tests::{path, setup};

    fn validator(creds: &LoadedCredentials) -> Arc<ClientValidator> {
        Arc::new(ClientValidator::new(creds.trust.clone()))
    }

    #[test]
    fn responder_config_comes_from_the_config() {
        let f = setup("");
        let creds = load_credentials(&f.config, &path(&f)).unwrap();
        let r = responder_config(&f.config, &path(&f), &creds, validator(&creds)).unwrap();
        assert_eq!(
            r.local_ts,
            vec![
                prefix_ts("10.1.0.0/16".parse().unwrap()),
                prefix_ts("10.2.0.0/24".parse().unwrap())
            ]
        );
        assert_eq!(r.dns_servers, vec!["10.1.0.53".parse::<IpAddr>().unwrap()]);
        assert!(r.require_virtual_ip);
        assert_eq!(r.ike.ike_proposals, IkeProposal::defaults());
        assert!(r.ike.ike_proposals.iter().all(|p| !p.is_legacy()));
        assert_eq!(r.ike.ike_lifetime, Some(Duration::from_secs(28_800)));

        // Client-to-client traffic is opt-in: the pool joins the selectors and pushed routes.
        let mut open = f.config.clone();
        open.network.allow_client_to_client = true;
        let r = responder_config(&open, &path(&f), &creds, validator(&creds)).unwrap();
        let pool: IpNet = "172.16.201.0/24".parse().unwrap();
        assert_eq!(r.local_ts.last(), Some(&prefix_ts(pool)));
        assert_eq!(r.pushed_subnets.last(), Some(&pool));
    }

    #[test]
    fn bad_proposals_name_their_field_unless_legacy_allows_them() {
        let f = setup("[crypto]\nike_proposals = [\"aes256-sha1-modp1024\"]");
        let creds = load_credentials(&f.config, &path(&f)).unwrap();
        let err = responder_config(&f.config, &path(&f), &creds, validator(&creds)).unwrap_err();
        assert_eq!(err.field(), Some("crypto.ike_proposals"), "{err}");

        let f = setup("[crypto]\nallow_legacy = true\nike_proposals = [\"aes256-sha1-modp1024\"]");
        let creds = load_credentials(&f.config, &path(&f)).unwrap();
        let r = responder_config(&f.config, &path(&f), &creds, validator(&creds)).unwrap();
        assert!(r.ike.ike_proposals[0].is_legacy());
    }
}
