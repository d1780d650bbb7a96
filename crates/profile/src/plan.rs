//! The connection plan: what the agent will do with a valid profile, as plain data.

use std::net::IpAddr;

use crate::model::*;

/// IKEv2 encryption transforms (IANA "Transform Type 1").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encryption {
    TripleDes,
    AesCbc { key_bits: u16 },
    AesGcm16 { key_bits: u16 },
    ChaCha20Poly1305,
}

impl Encryption {
    pub fn iana_id(self) -> u16 {
        match self {
            Encryption::TripleDes => 3,
            Encryption::AesCbc { .. } => 12,
            Encryption::AesGcm16 { .. } => 20,
            Encryption::ChaCha20Poly1305 => 28,
        }
    }

    /// From an IANA transform ID and its Key Length attribute.
    pub fn from_iana(id: u16, key_bits: Option<u16>) -> Option<Encryption> {
        match (id, key_bits) {
            (3, _) => Some(Encryption::TripleDes),
            (12, Some(key_bits)) => Some(Encryption::AesCbc { key_bits }),
            (20, Some(key_bits)) => Some(Encryption::AesGcm16 { key_bits }),
            (28, _) => Some(Encryption::ChaCha20Poly1305),
            _ => None,
        }
    }

    /// The Key Length attribute, where the transform has one.
    pub fn key_bits(self) -> Option<u16> {
        match self {
            Encryption::AesCbc { key_bits } | Encryption::AesGcm16 { key_bits } => Some(key_bits),
            Encryption::TripleDes | Encryption::ChaCha20Poly1305 => None,
        }
    }

    /// AEAD ciphers carry their own integrity.
    pub fn is_aead(self) -> bool {
        matches!(
            self,
            Encryption::AesGcm16 { .. } | Encryption::ChaCha20Poly1305
        )
    }
}

/// Integrity transforms (IANA "Transform Type 3").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Integrity {
    HmacSha1_96,
    HmacSha2_256_128,
    HmacSha2_384_192,
    HmacSha2_512_256,
}

impl Integrity {
    pub fn from_iana(id: u16) -> Option<Integrity> {
        [
            Integrity::HmacSha1_96,
            Integrity::HmacSha2_256_128,
            Integrity::HmacSha2_384_192,
            Integrity::HmacSha2_512_256,
        ]
        .into_iter()
        .find(|i| i.iana_id() == id)
    }

    pub fn iana_id(self) -> u16 {
        match self {
            Integrity::HmacSha1_96 => 2,
            Integrity::HmacSha2_256_128 => 12,
            Integrity::HmacSha2_384_192 => 13,
            Integrity::HmacSha2_512_256 => 14,
        }
    }
}

/// Pseudo-random functions (IANA "Transform Type 2").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prf {
    HmacSha1,
    HmacSha2_256,
    HmacSha2_384,
    HmacSha2_512,
}

impl Prf {
    pub fn from_iana(id: u16) -> Option<Prf> {
        [
            Prf::HmacSha1,
            Prf::HmacSha2_256,
            Prf::HmacSha2_384,
            Prf::HmacSha2_512,
        ]
        .into_iter()
        .find(|p| p.iana_id() == id)
    }

    pub fn iana_id(self) -> u16 {
        match self {
            Prf::HmacSha1 => 2,
            Prf::HmacSha2_256 => 5,
            Prf::HmacSha2_384 => 6,
            Prf::HmacSha2_512 => 7,
        }
    }
}

/// Key exchange groups (IANA "Transform Type 4").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DhGroup {
    Modp1024,
    Modp2048,
    Modp2048S256,
    Ecp256,
    Ecp384,
    Curve25519,
}

impl DhGroup {
    pub fn from_iana(id: u16) -> Option<DhGroup> {
        [
            DhGroup::Modp1024,
            DhGroup::Modp2048,
            DhGroup::Modp2048S256,
            DhGroup::Ecp256,
            DhGroup::Ecp384,
            DhGroup::Curve25519,
        ]
        .into_iter()
        .find(|g| g.iana_id() == id)
    }

    pub fn iana_id(self) -> u16 {
        match self {
            DhGroup::Modp1024 => 2,
            DhGroup::Modp2048 => 14,
            DhGroup::Modp2048S256 => 24,
            DhGroup::Ecp256 => 19,
            DhGroup::Ecp384 => 20,
            DhGroup::Curve25519 => 31,
        }
    }
}

/// One IKE SA proposal. `integrity` is `None` with an AEAD cipher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IkeProposal {
    pub encryption: Encryption,
    pub integrity: Option<Integrity>,
    pub prf: Prf,
    pub dh_group: DhGroup,
}

/// One ESP (Child SA) proposal. `pfs_group` is the key exchange used when rekeying the Child SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EspProposal {
    pub encryption: Encryption,
    pub integrity: Option<Integrity>,
    pub pfs_group: Option<DhGroup>,
}

/// aovpn's IKE proposals when the profile has no CryptographySuite:
/// aes256gcm16-prfsha384-ecp384, aes256gcm16-prfsha256-x25519, aes256-sha256-modp2048.
pub fn default_ike_proposals() -> Vec<IkeProposal> {
    let gcm = Encryption::AesGcm16 { key_bits: 256 };
    vec![
        IkeProposal {
            encryption: gcm,
            integrity: None,
            prf: Prf::HmacSha2_384,
            dh_group: DhGroup::Ecp384,
        },
        IkeProposal {
            encryption: gcm,
            integrity: None,
            prf: Prf::HmacSha2_256,
            dh_group: DhGroup::Curve25519,
        },
        IkeProposal {
            encryption: Encryption::AesCbc { key_bits: 256 },
            integrity: Some(Integrity::HmacSha2_256_128),
            prf: Prf::HmacSha2_256,
            dh_group: DhGroup::Modp2048,
        },
    ]
}

/// aovpn's ESP proposals when the profile has no CryptographySuite: aes256gcm16, aes256-sha256.
pub fn default_esp_proposals() -> Vec<EspProposal> {
    vec![
        EspProposal {
            encryption: Encryption::AesGcm16 { key_bits: 256 },
            integrity: None,
            pfs_group: None,
        },
        EspProposal {
            encryption: Encryption::AesCbc { key_bits: 256 },
            integrity: Some(Integrity::HmacSha2_256_128),
            pfs_group: None,
        },
    ]
}

/// Where the certificate for IKE authentication comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateStore {
    /// The machine store (Windows' Local Machine): device tunnels and `MachineMethod`.
    Machine,
    /// The user's store (Windows' Current User): user tunnels with EAP-TLS.
    User,
}

/// How the client authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// IKEv2 certificate (signature) authentication with the machine certificate.
    MachineCertificate,
    /// EAP with the given method type (13 = EAP-TLS, 25 = PEAP, 26 = MS-CHAPv2) when the
    /// EapHostConfig names one; the raw `<Eap>` element is kept for the EAP engine.
    Eap {
        method_type: Option<u8>,
        config: RawXml,
    },
}

/// Which interface a route points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteVia {
    Tunnel,
    /// The physical interface the tunnel runs over (exclusion routes, the gateway itself).
    Physical,
}

/// A route to install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedRoute {
    pub prefix: Prefix,
    pub via: RouteVia,
    pub metric: Option<u32>,
}

/// Routing: the static part from the profile, and [`RoutePlan::routes`] for the part that depends
/// on what the gateway assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePlan {
    pub policy: RoutingPolicy,
    /// `Route` entries, exclusions pointing at the physical interface.
    pub configured: Vec<PlannedRoute>,
    /// Add the classful route of the assigned address (unless DisableClassBasedDefaultRoute).
    pub class_based_route: bool,
    /// Install the negotiated traffic selectors as routes (PlumbIKEv2TSAsRoutes).
    pub traffic_selectors_as_routes: bool,
    /// Local-subnet traffic bypasses the tunnel even under ForceTunnel (ByPassForLocal).
    pub bypass_for_local: bool,
    pub ipv4_interface_metric: Option<u32>,
    pub ipv6_interface_metric: Option<u32>,
}

impl RoutePlan {
    /// The metric of a route through the tunnel: the route's own Metric plus the interface
    /// metric of its family, as Windows adds them; `None` when the profile sets neither.
    pub fn tunnel_route_metric(&self, r: &PlannedRoute) -> Option<u32> {
        let interface = if r.prefix.addr.is_ipv4() {
            self.ipv4_interface_metric
        } else {
            self.ipv6_interface_metric
        };
        match (r.metric, interface) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
        }
    }

    /// Every route for one connection: ForceTunnel's default routes with the gateway's own address
    /// kept on the physical interface, the configured routes, the traffic selectors when asked
    /// for (except a default route: split tunnels stay split), and the classful route of each
    /// assigned IPv4 address. Duplicates are dropped.
    pub fn routes(
        &self,
        gateway: IpAddr,
        assigned: &[IpAddr],
        traffic_selectors: &[Prefix],
    ) -> Vec<PlannedRoute> {
        let mut out: Vec<PlannedRoute> = Vec::new();
        let mut add = |r: PlannedRoute| {
            if !out.iter().any(|o| o.prefix == r.prefix && o.via == r.via) {
                out.push(r);
            }
        };
        if self.policy == RoutingPolicy::ForceTunnel {
            add(PlannedRoute {
                prefix: Prefix::host(gateway),
                via: RouteVia::Physical,
                metric: None,
            });
            for addr in [IpAddr::from([0u8; 4]), IpAddr::from([0u16; 8])] {
                add(PlannedRoute {
                    prefix: Prefix { addr, len: 0 },
                    via: RouteVia::Tunnel,
                    metric: None,
                });
            }
        }
        for r in &self.configured {
            add(*r);
        }
        if self.traffic_selectors_as_routes {
            for ts in traffic_selectors {
                if ts.len > 0 && !ts.contains(gateway) {
                    add(PlannedRoute {
                        prefix: ts.network(),
                        via: RouteVia::Tunnel,
                        metric: None,
                    });
                }
            }
        }
        if self.class_based_route {
            for a in assigned {
                if let Some(prefix) = classful_prefix(*a) {
                    add(PlannedRoute {
                        prefix,
                        via: RouteVia::Tunnel,
                        metric: None,
                    });
                }
            }
        }
        out
    }
}

/// The classful network of an IPv4 address (class A → /8, B → /16, C → /24), as Windows adds for
/// the address a VPN assigns; `None` for class D/E and IPv6 (Windows adds no IPv6 class route).
pub fn classful_prefix(addr: IpAddr) -> Option<Prefix> {
    let IpAddr::V4(v4) = addr else { return None };
    let len = match v4.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        192..=223 => 24,
        _ => return None,
    };
    Some(Prefix { addr, len }.network())
}

/// One split-DNS rule (from DomainNameInformation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitDns {
    /// FQDN, `.suffix` or `.` (all names).
    pub domain: String,
    pub servers: Vec<IpAddr>,
    pub web_proxy: Option<String>,
    pub auto_trigger: bool,
    /// Keep the rule while the tunnel is down.
    pub persistent: bool,
}

/// DNS settings for the tunnel interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsPlan {
    /// The first is the interface's primary suffix; all go in the search list.
    pub suffixes: Vec<String>,
    pub split: Vec<SplitDns>,
    /// Register the assigned address in DNS (RegisterDNS).
    pub register: bool,
}

/// What the agent does with a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionPlan {
    pub name: String,
    pub scope: Option<Scope>,
    pub device_tunnel: bool,
    /// Servers in the order to try them.
    pub servers: Vec<Server>,
    pub certificate_store: CertificateStore,
    pub credential: Credential,
    /// Exactly the profile's CryptographySuite when set, aovpn's defaults otherwise.
    pub ike_proposals: Vec<IkeProposal>,
    pub esp_proposals: Vec<EspProposal>,
    /// Whether the proposals came from the profile's CryptographySuite.
    pub proposals_from_profile: bool,
    pub routes: RoutePlan,
    pub dns: DnsPlan,
    /// Connection-specific DNS suffixes that mean "on the corporate network: don't connect".
    pub trusted_networks: Vec<String>,
    pub always_on: bool,
    /// No network at all while the tunnel is down (LockDown).
    pub lockdown: bool,
    /// Seconds the network may be gone before the tunnel is dropped (0: no limit).
    pub network_outage_time: Option<u32>,
    pub disable_ike_fragmentation: bool,
    pub traffic_filters: Vec<TrafficFilter>,
    /// The web proxy while the tunnel is up (`Proxy/Manual/Server`, ForceTunnel only).
    pub proxy_server: Option<String>,
}

/// A `Proxy/Manual/Server` value that is safe to export: `host` or `host:port`, host a DNS
/// name or an IPv4 address, or `[IPv6]:port`.
pub fn proxy_server_ok(server: &str) -> bool {
    let (host, port) = if let Some(rest) = server.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, tail)) if h.parse::<std::net::Ipv6Addr>().is_ok() => {
                (h, tail.strip_prefix(':'))
            }
            _ => return false,
        }
    } else {
        match server.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (server, None),
        }
    };
    let host_ok = server.starts_with('[')
        || (!host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            && !host.starts_with('-'));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    host_ok && port_ok
}

/// Build the plan of a profile that passed validation. `None` only for a profile without
/// NativeProfile, which validation refuses.
pub fn plan(name: &str, scope: Option<Scope>, p: &VpnProfile) -> Option<ConnectionPlan> {
    let native = p.native_profile.as_ref()?;
    let device_tunnel = p.is_device_tunnel();
    let auth = &native.authentication;
    let (certificate_store, credential) = match (&auth.eap, auth.machine_method) {
        (Some(eap), None) if !device_tunnel => (
            CertificateStore::User,
            Credential::Eap {
                method_type: eap_method_type(&eap.0),
                config: eap.clone(),
            },
        ),
        _ => (CertificateStore::Machine, Credential::MachineCertificate),
    };
    let (ike_proposals, esp_proposals, proposals_from_profile) =
        match native.cryptography_suite.as_ref().and_then(suite_proposals) {
            Some((ike, esp)) => (vec![ike], vec![esp], true),
            None => (default_ike_proposals(), default_esp_proposals(), false),
        };
    let configured = p
        .routes
        .iter()
        .map(|r| PlannedRoute {
            prefix: r.prefix(),
            via: if r.is_exclusion() {
                RouteVia::Physical
            } else {
                RouteVia::Tunnel
            },
            metric: r.metric,
        })
        .collect();
    Some(ConnectionPlan {
        name: name.to_owned(),
        scope,
        device_tunnel,
        servers: native.servers.clone(),
        certificate_store,
        credential,
        ike_proposals,
        esp_proposals,
        proposals_from_profile,
        routes: RoutePlan {
            policy: native.routing_policy(),
            configured,
            class_based_route: !native.disable_class_based_default_route.unwrap_or(false),
            traffic_selectors_as_routes: native.plumb_ikev2_ts_as_routes.unwrap_or(false),
            bypass_for_local: p.by_pass_for_local.unwrap_or(false),
            ipv4_interface_metric: p.ipv4_interface_metric,
            ipv6_interface_metric: p.ipv6_interface_metric,
        },
        dns: DnsPlan {
            suffixes: p.dns_suffix.clone(),
            split: p
                .domain_name_information
                .iter()
                .map(|d| SplitDns {
                    domain: d.domain_name.clone(),
                    servers: d.dns_servers.clone(),
                    web_proxy: d.web_proxy_servers.clone(),
                    auto_trigger: d.auto_trigger.unwrap_or(false),
                    persistent: d.persistent.unwrap_or(false),
                })
                .collect(),
            register: p.register_dns.unwrap_or(false),
        },
        trusted_networks: p.trusted_network_detection.clone(),
        always_on: p.is_always_on(),
        lockdown: p.lock_down.unwrap_or(false),
        network_outage_time: p.network_outage_time,
        disable_ike_fragmentation: p.disable_ikev2_fragmentation.unwrap_or(false),
        traffic_filters: p.traffic_filters.clone(),
        proxy_server: match native.routing_policy() {
            RoutingPolicy::ForceTunnel => p
                .proxy
                .as_ref()
                .and_then(|x| x.manual_server.clone())
                .filter(|s| proxy_server_ok(s)),
            RoutingPolicy::SplitTunnel => None,
        },
    })
}

/// The single IKE and ESP proposal a complete, supported CryptographySuite stands for.
/// The CryptographySuite that [`suite_proposals`] turns into exactly `ike` and `esp`, when
/// Windows' element can say it (no ChaCha20, SHA-512 or Curve25519 there).
pub fn suite_for(ike: IkeProposal, esp: EspProposal) -> Option<CryptographySuite> {
    let encryption_method = match ike.encryption {
        Encryption::TripleDes => EncryptionMethod::Des3,
        Encryption::AesCbc { key_bits: 128 } => EncryptionMethod::Aes128,
        Encryption::AesCbc { key_bits: 192 } => EncryptionMethod::Aes192,
        Encryption::AesCbc { key_bits: 256 } => EncryptionMethod::Aes256,
        Encryption::AesGcm16 { key_bits: 128 } => EncryptionMethod::AesGcm128,
        Encryption::AesGcm16 { key_bits: 256 } => EncryptionMethod::AesGcm256,
        _ => return None,
    };
    let integrity_check_method = match ike.prf {
        Prf::HmacSha1 => IntegrityCheckMethod::Sha196,
        Prf::HmacSha2_256 => IntegrityCheckMethod::Sha256,
        Prf::HmacSha2_384 => IntegrityCheckMethod::Sha384,
        Prf::HmacSha2_512 => return None,
    };
    let group = |g: DhGroup| match g {
        DhGroup::Modp1024 => Some((DhGroupSetting::Group2, PfsGroupSetting::Pfs2)),
        DhGroup::Modp2048 => Some((DhGroupSetting::Group14, PfsGroupSetting::Pfs2048)),
        DhGroup::Modp2048S256 => Some((DhGroupSetting::Group24, PfsGroupSetting::Pfs24)),
        DhGroup::Ecp256 => Some((DhGroupSetting::Ecp256, PfsGroupSetting::Ecp256)),
        DhGroup::Ecp384 => Some((DhGroupSetting::Ecp384, PfsGroupSetting::Ecp384)),
        DhGroup::Curve25519 => None,
    };
    let dh_group = group(ike.dh_group)?.0;
    let pfs_group = match esp.pfs_group {
        None => PfsGroupSetting::None,
        Some(g) => group(g)?.1,
    };
    let cipher_transform_constants = match esp.encryption {
        Encryption::TripleDes => CipherTransform::Des3,
        Encryption::AesCbc { key_bits: 128 } => CipherTransform::Aes128,
        Encryption::AesCbc { key_bits: 192 } => CipherTransform::Aes192,
        Encryption::AesCbc { key_bits: 256 } => CipherTransform::Aes256,
        Encryption::AesGcm16 { key_bits: 128 } => CipherTransform::GcmAes128,
        Encryption::AesGcm16 { key_bits: 192 } => CipherTransform::GcmAes192,
        Encryption::AesGcm16 { key_bits: 256 } => CipherTransform::GcmAes256,
        _ => return None,
    };
    let authentication_transform_constants = match (esp.integrity, cipher_transform_constants) {
        (Some(Integrity::HmacSha1_96), _) => AuthTransform::Sha196,
        (Some(Integrity::HmacSha2_256_128), _) => AuthTransform::Sha256128,
        (None, CipherTransform::GcmAes128) => AuthTransform::GcmAes128,
        (None, CipherTransform::GcmAes192) => AuthTransform::GcmAes192,
        (None, CipherTransform::GcmAes256) => AuthTransform::GcmAes256,
        _ => return None,
    };
    let suite = CryptographySuite {
        authentication_transform_constants: Some(authentication_transform_constants),
        cipher_transform_constants: Some(cipher_transform_constants),
        pfs_group: Some(pfs_group),
        dh_group: Some(dh_group),
        integrity_check_method: Some(integrity_check_method),
        encryption_method: Some(encryption_method),
    };
    // Only what reads back as the same proposals (an IKE integrity other than the PRF's,
    // say, cannot be said).
    (suite_proposals(&suite) == Some((ike, esp))).then_some(suite)
}

pub fn suite_proposals(s: &CryptographySuite) -> Option<(IkeProposal, EspProposal)> {
    let encryption = match s.encryption_method? {
        EncryptionMethod::Des => return None,
        EncryptionMethod::Des3 => Encryption::TripleDes,
        EncryptionMethod::Aes128 => Encryption::AesCbc { key_bits: 128 },
        EncryptionMethod::Aes192 => Encryption::AesCbc { key_bits: 192 },
        EncryptionMethod::Aes256 => Encryption::AesCbc { key_bits: 256 },
        EncryptionMethod::AesGcm128 => Encryption::AesGcm16 { key_bits: 128 },
        EncryptionMethod::AesGcm256 => Encryption::AesGcm16 { key_bits: 256 },
    };
    let (integ, prf) = match s.integrity_check_method? {
        IntegrityCheckMethod::Md5 => return None,
        IntegrityCheckMethod::Sha196 => (Integrity::HmacSha1_96, Prf::HmacSha1),
        IntegrityCheckMethod::Sha256 => (Integrity::HmacSha2_256_128, Prf::HmacSha2_256),
        IntegrityCheckMethod::Sha384 => (Integrity::HmacSha2_384_192, Prf::HmacSha2_384),
    };
    let dh_group = match s.dh_group? {
        DhGroupSetting::None | DhGroupSetting::Group1 => return None,
        DhGroupSetting::Group2 => DhGroup::Modp1024,
        DhGroupSetting::Group14 => DhGroup::Modp2048,
        DhGroupSetting::Ecp256 => DhGroup::Ecp256,
        DhGroupSetting::Ecp384 => DhGroup::Ecp384,
        DhGroupSetting::Group24 => DhGroup::Modp2048S256,
    };
    let ike = IkeProposal {
        encryption,
        integrity: (!encryption.is_aead()).then_some(integ),
        prf,
        dh_group,
    };
    let esp_encryption = match s.cipher_transform_constants? {
        CipherTransform::Des | CipherTransform::None => return None,
        CipherTransform::Des3 => Encryption::TripleDes,
        CipherTransform::Aes128 => Encryption::AesCbc { key_bits: 128 },
        CipherTransform::Aes192 => Encryption::AesCbc { key_bits: 192 },
        CipherTransform::Aes256 => Encryption::AesCbc { key_bits: 256 },
        CipherTransform::GcmAes128 => Encryption::AesGcm16 { key_bits: 128 },
        CipherTransform::GcmAes192 => Encryption::AesGcm16 { key_bits: 192 },
        CipherTransform::GcmAes256 => Encryption::AesGcm16 { key_bits: 256 },
    };
    let esp_integrity = match s.authentication_transform_constants? {
        AuthTransform::Md596 => return None,
        AuthTransform::Sha196 => Some(Integrity::HmacSha1_96),
        AuthTransform::Sha256128 => Some(Integrity::HmacSha2_256_128),
        AuthTransform::GcmAes128
        | AuthTransform::GcmAes192
        | AuthTransform::GcmAes256
        | AuthTransform::None => None,
    };
    if esp_encryption.is_aead() == esp_integrity.is_some() {
        return None;
    }
    let pfs_group = match s.pfs_group? {
        PfsGroupSetting::None => None,
        PfsGroupSetting::Pfs1 => return None,
        PfsGroupSetting::Pfs2 => Some(DhGroup::Modp1024),
        PfsGroupSetting::Pfs2048 => Some(DhGroup::Modp2048),
        PfsGroupSetting::Ecp256 => Some(DhGroup::Ecp256),
        PfsGroupSetting::Ecp384 => Some(DhGroup::Ecp384),
        PfsGroupSetting::PfsMm => Some(dh_group),
        PfsGroupSetting::Pfs24 => Some(DhGroup::Modp2048S256),
    };
    let esp = EspProposal {
        encryption: esp_encryption,
        integrity: esp_integrity,
        pfs_group,
    };
    Some((ike, esp))
}

/// What an EAP-TLS configuration (EapTlsConnectionPropertiesV1's ServerValidation) says about
/// the server the client may talk to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EapServerValidation {
    /// `ServerNames` (`;`-separated): the server certificate must carry one of them. Empty:
    /// the name dialled.
    pub server_names: Vec<String>,
    /// `TrustedRootCA` elements: SHA-1 thumbprints (lowercase hex) of the roots the server's
    /// chain may end in. Empty: any configured root.
    pub trusted_roots: Vec<String>,
    /// TrustedRootCA values that are not thumbprints (refused by validation).
    pub bad_roots: Vec<String>,
}

/// The ServerValidation of an `<Eap>` element's EapHostConfig.
pub fn eap_server_validation(raw: &str) -> EapServerValidation {
    let mut out = EapServerValidation::default();
    let Ok(doc) = roxmltree::Document::parse(raw) else {
        return out;
    };
    let in_validation = |n: &roxmltree::Node| {
        n.parent_element()
            .is_some_and(|p| p.tag_name().name() == "ServerValidation")
    };
    for n in doc
        .descendants()
        .filter(|n| n.is_element() && in_validation(n))
    {
        let text = n.text().unwrap_or_default();
        match n.tag_name().name() {
            "ServerNames" => out.server_names.extend(
                text.split(';')
                    .map(|s| s.trim().trim_end_matches('.').to_ascii_lowercase())
                    .filter(|s| !s.is_empty()),
            ),
            "TrustedRootCA" => {
                let hex: String = text
                    .chars()
                    .filter(|c| !c.is_whitespace() && *c != ':')
                    .collect::<String>()
                    .to_ascii_lowercase();
                if hex.len() == 40 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    out.trusted_roots.push(hex);
                } else {
                    out.bad_roots.push(text.trim().to_owned());
                }
            }
            _ => {}
        }
    }
    out
}

/// The EAP method type in an `<Eap>` element's EapHostConfig (`EapMethod/Type`), if readable.
pub(crate) fn eap_method_type(raw: &str) -> Option<u8> {
    let doc = roxmltree::Document::parse(raw).ok()?;
    let ty = doc.descendants().find(|n| {
        n.is_element()
            && n.tag_name().name() == "Type"
            && n.parent_element()
                .is_some_and(|p| p.tag_name().name() == "EapMethod")
    })?;
    ty.text()?.trim().parse().ok()
}

impl std::fmt::Display for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Encryption::TripleDes => f.write_str("3des"),
            Encryption::AesCbc { key_bits } => write!(f, "aes{key_bits}"),
            Encryption::AesGcm16 { key_bits } => write!(f, "aes{key_bits}gcm16"),
            Encryption::ChaCha20Poly1305 => f.write_str("chacha20poly1305"),
        }
    }
}

impl std::fmt::Display for Integrity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Integrity::HmacSha1_96 => "sha1",
            Integrity::HmacSha2_256_128 => "sha256",
            Integrity::HmacSha2_384_192 => "sha384",
            Integrity::HmacSha2_512_256 => "sha512",
        })
    }
}

impl std::fmt::Display for Prf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Prf::HmacSha1 => "prfsha1",
            Prf::HmacSha2_256 => "prfsha256",
            Prf::HmacSha2_384 => "prfsha384",
            Prf::HmacSha2_512 => "prfsha512",
        })
    }
}

impl std::fmt::Display for DhGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DhGroup::Modp1024 => "modp1024",
            DhGroup::Modp2048 => "modp2048",
            DhGroup::Modp2048S256 => "modp2048s256",
            DhGroup::Ecp256 => "ecp256",
            DhGroup::Ecp384 => "ecp384",
            DhGroup::Curve25519 => "x25519",
        })
    }
}

/// strongSwan-style notation, e.g. `aes256gcm16-prfsha384-ecp384`, `aes256-sha256-prfsha256-modp2048`.
impl std::fmt::Display for IkeProposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.encryption)?;
        if let Some(i) = self.integrity {
            write!(f, "-{i}")?;
        }
        write!(f, "-{}-{}", self.prf, self.dh_group)
    }
}

/// strongSwan-style notation, e.g. `aes256gcm16`, `aes256-sha256-ecp384` (with PFS).
impl std::fmt::Display for EspProposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.encryption)?;
        if let Some(i) = self.integrity {
            write!(f, "-{i}")?;
        }
        if let Some(g) = self.pfs_group {
            write!(f, "-{g}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
