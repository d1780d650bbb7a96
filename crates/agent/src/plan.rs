//! From a profile's connection plan to the options of its tunnel.

use std::time::Duration;

use ikev2::{EspProposal, IkeProposal};
use ipsec_crypto::{DhGroup, EncrAlg, IntegAlg, PrfAlg};
use netio::firewall::{AddressMatch, Direction, FilterRule};
use profile::plan::{ConnectionPlan, Credential};

use crate::connection::{ConnectionOptions, Credentials, DEFAULT_DPD_INTERVAL, RoutePolicy};

/// Windows' default for how long a tunnel without network is kept (VPN Reconnect).
pub const DEFAULT_NETWORK_OUTAGE: Duration = Duration::from_secs(30 * 60);

/// Why a valid profile still cannot be run here.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("the profile names no server")]
    NoServer,
    #[error(
        "EAP method {0:?} is not supported: aovpn authenticates user tunnels with the user's certificate (EAP-TLS, type 13)"
    )]
    UnsupportedEap(Option<u8>),
    #[error("CryptographySuite uses {0}, which aovpn does not implement")]
    UnsupportedTransform(String),
}

/// Whether aovpn can run `plan` at all (EAP method, servers, algorithms); its proposals if so
/// (empty lists: the engine's defaults).
pub fn check(plan: &ConnectionPlan) -> Result<(Vec<IkeProposal>, Vec<EspProposal>), PlanError> {
    match &plan.credential {
        Credential::MachineCertificate => {}
        Credential::Eap {
            method_type: Some(13),
            ..
        } => {}
        Credential::Eap { method_type, .. } => {
            return Err(PlanError::UnsupportedEap(*method_type));
        }
    }
    if plan.servers.is_empty() {
        return Err(PlanError::NoServer);
    }
    if plan.proposals_from_profile {
        Ok((
            plan.ike_proposals
                .iter()
                .map(ike_proposal)
                .collect::<Result<_, _>>()?,
            plan.esp_proposals
                .iter()
                .map(esp_proposal)
                .collect::<Result<_, _>>()?,
        ))
    } else {
        // No CryptographySuite: the engine's own default lists.
        Ok((Vec::new(), Vec::new()))
    }
}

/// A profile's tunnel: the servers to try, in order, and the options of one attempt (its
/// `server` is the first one; the caller sets the one it tries).
#[derive(Debug, Clone)]
pub struct ProfileTunnel {
    pub servers: Vec<String>,
    pub options: ConnectionOptions,
}

/// The tunnel for `plan`; a profile with UserMethod Eap (EAP-TLS) authenticates with EAP-TLS
/// inside IKE_AUTH, as Windows does, checking the gateway's TLS certificate as its
/// ServerValidation says.
pub fn profile_tunnel(
    plan: &ConnectionPlan,
    credentials: Credentials,
    interface: String,
) -> Result<ProfileTunnel, PlanError> {
    let (ike_proposals, esp_proposals) = check(plan)?;
    let servers: Vec<String> = plan.servers.iter().map(|s| s.host.clone()).collect();
    // NetworkOutageTime 0 means no limit; absent, Windows' default.
    let network_outage = match plan.network_outage_time {
        Some(0) => None,
        Some(secs) => Some(Duration::from_secs(u64::from(secs))),
        None => Some(DEFAULT_NETWORK_OUTAGE),
    };
    let first = servers.first().cloned().ok_or(PlanError::NoServer)?;
    Ok(ProfileTunnel {
        options: ConnectionOptions {
            server: first,
            credentials,
            interface,
            ike_proposals,
            esp_proposals,
            routes: RoutePolicy::Profile(plan.routes.clone()),
            dns_suffixes: plan.dns.suffixes.clone(),
            fragmentation: !plan.disable_ike_fragmentation,
            dpd_interval: DEFAULT_DPD_INTERVAL,
            network_outage,
            traffic_filters: plan.traffic_filters.iter().map(filter_rule).collect(),
            split_dns: plan
                .dns
                .split
                .iter()
                .filter_map(|d| match crate::split_dns::namespace(&d.domain) {
                    Some(namespace) => Some(crate::split_dns::SplitRule {
                        namespace,
                        servers: d.servers.clone(),
                    }),
                    None => {
                        tracing::warn!(domain = %d.domain, "DomainNameInformation name skipped: not a DNS name");
                        None
                    }
                })
                .collect(),
            // The agent adds its settings when the profile asks (it holds the key).
            register_dns: None,
            mtu: crate::connection::TUNNEL_MTU,
            eap_tls: match &plan.credential {
                Credential::Eap { config, .. } => {
                    let v = profile::plan::eap_server_validation(&config.0);
                    Some(crate::connection::EapTlsOptions {
                        server_names: v.server_names,
                        trusted_roots: v.trusted_roots,
                    })
                }
                Credential::MachineCertificate => None,
            },
        },
        servers,
    })
}

/// A profile's TrafficFilter as a firewall rule (App and Claims filters never get here: the
/// profile is refused).
fn filter_rule(f: &profile::TrafficFilter) -> FilterRule {
    let addresses = |ranges: &[profile::AddressRange]| {
        ranges
            .iter()
            .map(|r| match *r {
                profile::AddressRange::Prefix(p) => AddressMatch::Prefix(p.addr, p.len),
                profile::AddressRange::Range(a, b) => AddressMatch::Range(a, b),
            })
            .collect()
    };
    let ports = |ranges: &[profile::PortRange]| ranges.iter().map(|r| (r.first, r.last)).collect();
    FilterRule {
        direction: match f.direction {
            Some(profile::Direction::Inbound) => Direction::Inbound,
            Some(profile::Direction::Outbound) | None => Direction::Outbound,
        },
        protocol: f.protocol,
        local_ports: ports(&f.local_port_ranges),
        remote_ports: ports(&f.remote_port_ranges),
        local_addresses: addresses(&f.local_address_ranges),
        remote_addresses: addresses(&f.remote_address_ranges),
    }
}

fn unsupported(what: impl std::fmt::Debug) -> PlanError {
    PlanError::UnsupportedTransform(format!("{what:?}"))
}

fn encr(e: profile::plan::Encryption) -> Result<EncrAlg, PlanError> {
    EncrAlg::from_iana(e.iana_id(), e.key_bits()).ok_or_else(|| unsupported(e))
}

fn integ(i: Option<profile::plan::Integrity>) -> Result<Vec<IntegAlg>, PlanError> {
    i.map(|i| IntegAlg::from_iana(i.iana_id()).ok_or_else(|| unsupported(i)))
        .into_iter()
        .collect()
}

fn ike_proposal(p: &profile::plan::IkeProposal) -> Result<IkeProposal, PlanError> {
    Ok(IkeProposal {
        encr: vec![encr(p.encryption)?],
        integ: integ(p.integrity)?,
        prf: vec![PrfAlg::from_iana(p.prf.iana_id()).ok_or_else(|| unsupported(p.prf))?],
        dh: vec![DhGroup::from_iana(p.dh_group.iana_id()).ok_or_else(|| unsupported(p.dh_group))?],
    })
}

fn esp_proposal(p: &profile::plan::EspProposal) -> Result<EspProposal, PlanError> {
    let dh = match p.pfs_group {
        Some(g) => vec![DhGroup::from_iana(g.iana_id()).ok_or_else(|| unsupported(g))?],
        None => Vec::new(),
    };
    Ok(EspProposal {
        encr: vec![encr(p.encryption)?],
        integ: integ(p.integrity)?,
        dh,
        esn: vec![false],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use profile::ParsedProfile;

    fn plan_of(xml: &str) -> ConnectionPlan {
        let parsed = ParsedProfile::parse_str("test.xml", xml).unwrap();
        profile::plan::plan("test", None, &parsed.profile).unwrap()
    }

    fn files() -> Credentials {
        use pki::{CertKind, CertificateAuthority, KeyAlgorithm, Validity};
        let validity = Validity::days_from(std::time::SystemTime::now(), 1);
        let ca = CertificateAuthority::new_root("root", KeyAlgorithm::P256, validity).unwrap();
        let id = ca
            .issue(
                CertKind::Machine,
                "pc.example.net",
                KeyAlgorithm::P256,
                validity,
            )
            .unwrap();
        let key = ipsec_crypto::SigningKey::from_pkcs8_der(id.key.pkcs8_der()).unwrap();
        Credentials {
            local: ikev2::LocalCredentials {
                id: crate::connection::identity_of(&id.chain[0]),
                key: std::sync::Arc::new(key),
                chain: vec![id.chain[0].der().to_vec()],
            },
            trust: pki::TrustStore::with_roots([ca.cert().clone()]).unwrap(),
        }
    }

    const DEVICE: &str = r#"<VPNProfile><NativeProfile>
<Servers>vpn.example.net;VPN,backup.example.net</Servers>
<NativeProtocolType>IKEv2</NativeProtocolType>
<Authentication><MachineMethod>Certificate</MachineMethod></Authentication>
<RoutingPolicyType>SplitTunnel</RoutingPolicyType>
<CryptographySuite>
  <AuthenticationTransformConstants>GCMAES256</AuthenticationTransformConstants>
  <CipherTransformConstants>GCMAES256</CipherTransformConstants>
  <EncryptionMethod>AES_GCM_256</EncryptionMethod>
  <IntegrityCheckMethod>SHA384</IntegrityCheckMethod>
  <DHGroup>ECP384</DHGroup>
  <PfsGroup>ECP384</PfsGroup>
</CryptographySuite>
</NativeProfile>
<Route><Address>10.1.0.10</Address><PrefixSize>32</PrefixSize></Route>
<DeviceTunnel>true</DeviceTunnel><AlwaysOn>true</AlwaysOn></VPNProfile>"#;

    #[test]
    fn a_cryptography_suite_becomes_exactly_one_proposal_of_each_kind() {
        let t = profile_tunnel(&plan_of(DEVICE), files(), "aovpn-dev".into()).unwrap();
        assert_eq!(t.servers, vec!["vpn.example.net", "backup.example.net"]);
        assert_eq!(t.options.server, "vpn.example.net");
        assert_eq!(t.options.network_outage, Some(DEFAULT_NETWORK_OUTAGE));
        let o = t.options;
        assert_eq!(
            o.ike_proposals,
            vec![IkeProposal::parse("aes256gcm16-prfsha384-ecp384", false).unwrap()]
        );
        assert_eq!(o.esp_proposals.len(), 1);
        assert_eq!(o.esp_proposals[0].encr, vec![EncrAlg::AesGcm16_256]);
        assert!(o.esp_proposals[0].integ.is_empty());
        assert!(matches!(o.routes, RoutePolicy::Profile(_)));
    }

    #[test]
    fn without_a_suite_the_engine_defaults_apply() {
        let xml = DEVICE
            .split("<CryptographySuite>")
            .next()
            .map(|head| {
                let tail = DEVICE.split("</CryptographySuite>").nth(1).unwrap_or("");
                format!("{head}{tail}")
            })
            .unwrap();
        let o = profile_tunnel(&plan_of(&xml), files(), "aovpn-dev".into())
            .unwrap()
            .options;
        assert!(o.ike_proposals.is_empty() && o.esp_proposals.is_empty());
    }

    #[test]
    fn peap_user_tunnels_are_refused_with_the_reason() {
        let xml = r#"<VPNProfile><NativeProfile><Servers>vpn.example.net</Servers>
<NativeProtocolType>IKEv2</NativeProtocolType>
<Authentication><UserMethod>Eap</UserMethod><Eap><Configuration>
<EapHostConfig xmlns="http://www.microsoft.com/provisioning/EapHostConfig"><EapMethod>
<Type xmlns="http://www.microsoft.com/provisioning/EapCommon">25</Type>
<VendorId xmlns="http://www.microsoft.com/provisioning/EapCommon">0</VendorId>
<VendorType xmlns="http://www.microsoft.com/provisioning/EapCommon">0</VendorType>
<AuthorId xmlns="http://www.microsoft.com/provisioning/EapCommon">0</AuthorId>
</EapMethod></EapHostConfig></Configuration></Eap></Authentication>
<RoutingPolicyType>SplitTunnel</RoutingPolicyType></NativeProfile></VPNProfile>"#;
        let err = profile_tunnel(&plan_of(xml), files(), "aovpn-usr".into()).unwrap_err();
        assert_eq!(err, PlanError::UnsupportedEap(Some(25)));
    }
}
