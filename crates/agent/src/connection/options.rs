//! What one tunnel is told ([`ConnectionOptions`]) and the engine's configuration built from
//! it for each attempt, EAP-TLS's server check included.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ike_wire::TrafficSelector;
use ikev2::{EspProposal, IkeConfig, IkeId, IkeProposal, InitiatorConfig, PeerRole, PkiValidator};

use super::{ConnectionError, Credentials, setup};

/// SA lifetimes (as Windows and Azure use them): rekeyed at 80-90 % of them.
const IKE_LIFETIME: Duration = Duration::from_secs(8 * 3600);
const CHILD_LIFETIME: Duration = Duration::from_secs(3600);

/// Which routes go where, beyond the negotiated traffic selectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutePolicy {
    /// Route exactly the traffic selectors the gateway granted (plain `aovpn connect`).
    TrafficSelectors,
    /// What a VPNv2 profile asks for (Route entries, ForceTunnel, class-based route, ...).
    Profile(profile::plan::RoutePlan),
}

/// Everything one tunnel needs.
#[derive(Debug, Clone)]
pub struct ConnectionOptions {
    /// The gateway: `host` or `host:port` (IKE port, default 500).
    pub server: String,
    pub credentials: Credentials,
    /// TUN interface name.
    pub interface: String,
    /// IKE and ESP proposals; empty = the engine's defaults.
    pub ike_proposals: Vec<IkeProposal>,
    pub esp_proposals: Vec<EspProposal>,
    pub routes: RoutePolicy,
    /// DNS search suffixes to apply with the pushed servers.
    pub dns_suffixes: Vec<String>,
    /// RFC 7383 fragmentation (a profile's DisableIKEv2Fragmentation turns it off).
    pub fragmentation: bool,
    /// Dead peer detection interval.
    pub dpd_interval: Duration,
    /// How long the tunnel is kept while no path to the gateway exists; `None`: no limit.
    pub network_outage: Option<Duration>,
    /// The profile's TrafficFilters; with any, only what they allow crosses the interface.
    pub traffic_filters: Vec<netio::firewall::FilterRule>,
    /// The profile's DomainNameInformation (split DNS).
    pub split_dns: Vec<crate::split_dns::SplitRule>,
    /// RegisterDNS: the machine's name is registered while the tunnel is up.
    pub register_dns: Option<crate::register_dns::Settings>,
    /// Authenticate with EAP-TLS (a profile's UserMethod Eap, type 13) instead of an IKE
    /// certificate signature.
    pub eap_tls: Option<EapTlsOptions>,
    /// The tunnel interface's MTU.
    pub mtu: u16,
}

/// How an EAP-TLS tunnel checks the gateway's TLS certificate (the profile's
/// ServerValidation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EapTlsOptions {
    /// Names the certificate must carry (one of); empty: the name dialled.
    pub server_names: Vec<String>,
    /// SHA-1 thumbprints of the roots the chain may end in; empty: any configured root.
    pub trusted_roots: Vec<String>,
}

/// What the engine is told for one attempt at `server_name` (IKE on `ike_port`): our
/// credentials and the roots for the gateway, proposals, lifetimes, both address families,
/// EAP-TLS when the profile says so. `aovpn doctor` dials with the same.
pub fn initiator_config(
    options: &ConnectionOptions,
    server_name: &str,
    ike_port: u16,
) -> Result<InitiatorConfig, ConnectionError> {
    let validator = PkiValidator {
        trust: options.credentials.trust.clone(),
        role: PeerRole::Gateway {
            server_name: server_name.to_owned(),
        },
        expected_id: None,
    };
    let mut ike = IkeConfig::new(options.credentials.local.clone(), Arc::new(validator));
    if !options.ike_proposals.is_empty() {
        ike.ike_proposals = options.ike_proposals.clone();
    }
    if !options.esp_proposals.is_empty() {
        ike.esp_proposals = options.esp_proposals.clone();
    }
    ike.fragmentation = options.fragmentation;
    // A profile that asks for the legacy Windows set talks to a gateway that may sign with
    // RSA over SHA-1; nothing else may.
    ike.allow_sha1_signatures = ike.ike_proposals.iter().any(|p| p.is_legacy());
    ike.dpd_interval = Some(options.dpd_interval);
    ike.ike_lifetime = Some(IKE_LIFETIME);
    ike.child_lifetime = Some(CHILD_LIFETIME);
    ike.ike_port = ike_port;
    // Both families, as Windows asks: a gateway without an IPv6 pool assigns none and
    // narrows the IPv6 selectors away.
    let mut initiator = InitiatorConfig::new(ike);
    if let Some(eap) = &options.eap_tls {
        initiator.eap_tls = Some(eap_tls_client(eap, &options.credentials, server_name)?);
    }
    initiator.request_ipv6 = true;
    initiator.ts_local = vec![TrafficSelector::ANY_V4, TrafficSelector::ANY_V6];
    initiator.ts_remote = vec![TrafficSelector::ANY_V4, TrafficSelector::ANY_V6];
    Ok(initiator)
}

/// The engine's EAP-TLS settings for `options`, dialling `server_name`.
fn eap_tls_client(
    eap: &EapTlsOptions,
    credentials: &Credentials,
    server_name: &str,
) -> Result<ikev2::EapTlsClient, ConnectionError> {
    let identity = match &credentials.local.id {
        IkeId::Rfc822(s) | IkeId::Fqdn(s) => s.clone(),
        other => other.to_string(),
    };
    let as_id = |name: &str| match name.parse::<IpAddr>() {
        Ok(ip) => IkeId::Ip(ip),
        Err(_) => IkeId::Fqdn(name.to_owned()),
    };
    let server_names = if eap.server_names.is_empty() {
        vec![as_id(server_name)]
    } else {
        eap.server_names.iter().map(|n| as_id(n)).collect()
    };
    let trust = if eap.trusted_roots.is_empty() {
        credentials.trust.clone()
    } else {
        let wanted: Vec<pki::Thumbprint> = eap
            .trusted_roots
            .iter()
            .filter_map(|t| t.parse().ok())
            .collect();
        credentials.trust.only_roots(&wanted).ok_or_else(|| {
            setup("EAP-TLS")(format!(
                "the profile's TrustedRootCA ({}) names none of the configured roots",
                eap.trusted_roots.join(", ")
            ))
        })?
    };
    Ok(ikev2::EapTlsClient {
        identity,
        server_names,
        server_validator: Arc::new(EapServerValidator { trust }),
        tls13: true,
    })
}

/// Checks an EAP-TLS server's certificate for the name asked about (one of the profile's
/// ServerNames, or the name dialled): the chain to the roots, the server's key usage, and
/// that name, which need not be the name dialled (an NPS behind the VPN server).
#[derive(Debug)]
struct EapServerValidator {
    trust: pki::TrustStore,
}

impl ikev2::PeerValidator for EapServerValidator {
    fn validate(
        &self,
        peer_id: &IkeId,
        end_entity: &[u8],
        intermediates: &[&[u8]],
        unix_time: u64,
    ) -> Result<ikev2::ValidatedPeer, ikev2::PeerRejection> {
        let server_name = match peer_id {
            IkeId::Fqdn(name) => name.clone(),
            IkeId::Ip(ip) => ip.to_string(),
            other => other.to_string(),
        };
        PkiValidator {
            trust: self.trust.clone(),
            role: PeerRole::Gateway { server_name },
            expected_id: None,
        }
        .validate(peer_id, end_entity, intermediates, unix_time)
    }

    fn ca_key_hashes(&self) -> Vec<[u8; 20]> {
        self.trust.ca_key_hashes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ikev2::LocalCredentials;
    use ipsec_crypto::SigningKey;

    /// ServerNames replace the name dialled: an EAP server certificate for `nps` is accepted
    /// for a profile naming `nps`, though the gateway dialled is `vpn`; TrustedRootCA narrows
    /// the roots.
    #[test]
    fn eap_server_names_replace_the_dialled_name_and_roots_narrow() {
        use pki::{CertKind, CertificateAuthority, KeyAlgorithm, Validity};
        use std::time::UNIX_EPOCH;
        let start = 1_767_225_600;
        let validity = Validity::days_from(UNIX_EPOCH + Duration::from_secs(start), 3650);
        let alg = KeyAlgorithm::P256;
        let ca = CertificateAuthority::new_root("eap root", alg, validity).unwrap();
        let other = CertificateAuthority::new_root("other root", alg, validity).unwrap();
        let user = ca
            .issue(CertKind::User, "alice@corp.example", alg, validity)
            .unwrap();
        let nps = ca
            .issue(CertKind::Gateway, "nps.corp.example", alg, validity)
            .unwrap();
        let vpn = ca
            .issue(CertKind::Gateway, "vpn.corp.example", alg, validity)
            .unwrap();
        let key = SigningKey::from_pkcs8_der(user.key.pkcs8_der()).unwrap();
        let credentials = Credentials {
            local: LocalCredentials {
                id: IkeId::Rfc822("alice@corp.example".into()),
                key: Arc::new(key),
                chain: vec![user.chain[0].der().to_vec()],
            },
            trust: pki::TrustStore::with_roots([ca.cert().clone(), other.cert().clone()]).unwrap(),
        };
        let now = start + 86_400;
        let check = |eap: &EapTlsOptions, server: &pki::Identity| {
            let client = eap_tls_client(eap, &credentials, "vpn.corp.example").unwrap();
            let ee = server.chain[0].der().to_vec();
            client.server_names.iter().any(|name| {
                client
                    .server_validator
                    .validate(name, &ee, &[], now)
                    .is_ok()
            })
        };
        let dialled = EapTlsOptions::default();
        assert!(check(&dialled, &vpn));
        assert!(!check(&dialled, &nps));
        let named = EapTlsOptions {
            server_names: vec!["nps.corp.example".into()],
            trusted_roots: Vec::new(),
        };
        assert!(check(&named, &nps), "ServerNames, not the name dialled");
        assert!(!check(&named, &vpn));
        let ours = ca.cert().thumbprint().to_string().to_ascii_lowercase();
        let rooted = EapTlsOptions {
            server_names: vec!["nps.corp.example".into()],
            trusted_roots: vec![ours],
        };
        assert!(check(&rooted, &nps));
        let elsewhere = EapTlsOptions {
            server_names: vec!["nps.corp.example".into()],
            trusted_roots: vec![other.cert().thumbprint().to_string()],
        };
        assert!(
            !check(&elsewhere, &nps),
            "the chain ends in a root not named"
        );
        let nowhere = EapTlsOptions {
            server_names: Vec::new(),
            trusted_roots: vec!["00".repeat(20)],
        };
        let e = eap_tls_client(&nowhere, &credentials, "vpn.corp.example").unwrap_err();
        assert!(e.to_string().contains("TrustedRootCA"), "{e}");
    }
}
