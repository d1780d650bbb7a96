//! One client tunnel to one server, from nothing to connected and back: resolve the server,
//! authenticate with a certificate, bring up a TUN device with the address the gateway
//! assigned, install routes and DNS, move packets, follow the machine across networks (MOBIKE),
//! and on the way out say goodbye (IKE Delete) and remove everything it installed.
//! `aovpn connect` runs one in the foreground; the agent runs one per profile it keeps up.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ike_wire::TrafficSelector;
use ikev2::{
    Endpoint, EspProposal, IkeConfig, IkeId, IkeProposal, IkeSaId, InitiatorConfig,
    LocalCredentials, PeerRole, PkiValidator,
};
use ipnet::IpNet;
use ipsec_crypto::{Provider, Signer, SigningKey};
use netio::dns::DnsConfig;
use netio::netlink::{IfAddress, Installed, InstalledConfig, Netlink, Route, RouteLookup};
use netio::tun;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tunnel::{Driver, DriverConfig, DriverEvent, Side, Traffic};

use crate::dns::SharedDns;
use crate::register_dns::{InvalidRegistration, Registrar, Registration, RegistrationStatus};

/// Inner MTU of the tunnel interface (1500 minus the worst ESP-in-UDP overhead, rounded).
pub const TUNNEL_MTU: u16 = 1400;
/// The smallest tunnel MTU the agent takes (IPv4's minimum reassembly size).
pub const MIN_TUNNEL_MTU: u16 = 576;

/// Dead peer detection: a quiet gateway is asked after this long whether it is still there.
pub const DEFAULT_DPD_INTERVAL: Duration = Duration::from_secs(30);

/// SA lifetimes (as Windows and Azure use them): rekeyed at 80-90 % of them.
const IKE_LIFETIME: Duration = Duration::from_secs(8 * 3600);
const CHILD_LIFETIME: Duration = Duration::from_secs(3600);

/// How long a goodbye (IKE Delete) may take before we leave anyway.
const DELETE_GRACE: Duration = Duration::from_secs(2);

/// How long removing the registered DNS name may delay a clean disconnect.
const DNS_REMOVE_GRACE: Duration = Duration::from_secs(3);

/// How often ESP counters are read: ESP sent into silence for two ticks makes the client ask
/// the gateway whether it is still there.
const LIVENESS_TICK: Duration = Duration::from_secs(2);

/// Which routes go where, beyond the negotiated traffic selectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutePolicy {
    /// Route exactly the traffic selectors the gateway granted (plain `aovpn connect`).
    TrafficSelectors,
    /// What a VPNv2 profile asks for (Route entries, ForceTunnel, class-based route, ...).
    Profile(profile::plan::RoutePlan),
}

/// Our identity and key, and the roots the gateway's certificate must chain to.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub local: LocalCredentials,
    pub trust: pki::TrustStore,
}

/// Why a tunnel could not be brought up, or went down.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectionError {
    #[error("{what}: {message}")]
    Setup { what: String, message: String },
    #[error("cannot reach {0}")]
    Unreachable(String),
    #[error("IKE: {0}")]
    Ike(String),
    #[error("the gateway closed the tunnel")]
    ClosedByPeer,
    #[error("no network for {0} s (NetworkOutageTime)")]
    Outage(u64),
    #[error("the local address changed and the gateway does not do MOBIKE")]
    AddressChanged,
}

fn setup(what: impl Into<String>) -> impl FnOnce(String) -> ConnectionError {
    let what = what.into();
    move |message| ConnectionError::Setup { what, message }
}

/// The identity Windows uses for a certificate: a machine's FQDN, a user's UPN or e-mail,
/// otherwise the subject DN.
pub fn identity_of(leaf: &pki::Certificate) -> IkeId {
    if let Some(dns) = leaf.dns_names().first() {
        IkeId::Fqdn(dns.clone())
    } else if let Some(mail) = leaf.rfc822_names().first() {
        IkeId::Rfc822(mail.clone())
    } else {
        IkeId::DerDn(leaf.subject_der().to_vec())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ConnectionError> {
    std::fs::read(path).map_err(|e| ConnectionError::Setup {
        what: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Roots from PEM files, every certificate in each file.
pub fn load_trust(ca: &[PathBuf]) -> Result<pki::TrustStore, ConnectionError> {
    let mut trust = pki::TrustStore::new();
    for file in ca {
        for cert in pki::load_certificates(&read(file)?)
            .map_err(|e| setup(format!("CA {}", file.display()))(e.to_string()))?
        {
            trust
                .add_root(cert)
                .map_err(|e| setup(format!("CA {}", file.display()))(e.to_string()))?;
        }
    }
    Ok(trust)
}

/// Credentials from files: our chain (leaf first), its key, and the roots for the gateway.
pub fn load_credentials(
    cert: &Path,
    key: &Path,
    ca: &[PathBuf],
) -> Result<Credentials, ConnectionError> {
    let chain = pki::load_certificates(&read(cert)?)
        .map_err(|e| setup(format!("certificate {}", cert.display()))(e.to_string()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| setup(cert.display().to_string())("no certificate".into()))?;
    let private = pki::PrivateKey::load(&read(key)?)
        .map_err(|e| setup(format!("key {}", key.display()))(e.to_string()))?;
    let key_spki = private
        .public_key_spki()
        .map_err(|e| setup(format!("key {}", key.display()))(e.to_string()))?;
    if key_spki != leaf.spki_der() {
        return Err(setup(format!("key {}", key.display()))(
            "does not belong to the certificate".into(),
        ));
    }
    let signing = SigningKey::from_pkcs8_der(private.pkcs8_der())
        .map_err(|e| setup(format!("key {}", key.display()))(e.to_string()))?;
    Ok(Credentials {
        local: LocalCredentials {
            id: identity_of(leaf),
            key: Arc::new(signing),
            chain: chain.iter().map(|c| c.der().to_vec()).collect(),
        },
        trust: load_trust(ca)?,
    })
}

/// Credentials whose key is used through `signer` (the per-user helper's key).
pub fn remote_credentials(
    chain_pem: &[u8],
    signer: Arc<dyn Signer>,
    trust: pki::TrustStore,
) -> Result<Credentials, ConnectionError> {
    let chain =
        pki::load_certificates(chain_pem).map_err(|e| setup("user certificate")(e.to_string()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| setup("user certificate")("no certificate".into()))?;
    Ok(Credentials {
        local: LocalCredentials {
            id: identity_of(leaf),
            key: signer,
            chain: chain.iter().map(|c| c.der().to_vec()).collect(),
        },
        trust,
    })
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
        credentials
            .trust
            .only_roots(&wanted)
            .ok_or_else(|| ConnectionError::Setup {
                what: "EAP-TLS".into(),
                message: format!(
                    "the profile's TrustedRootCA ({}) names none of the configured roots",
                    eap.trusted_roots.join(", ")
                ),
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

/// What the tunnel reports (`aovpn status`, the lab, `aovpn connect --status-file`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct ConnectionStatus {
    pub state: String,
    pub server: String,
    pub interface: String,
    pub virtual_ip: Option<IpAddr>,
    pub virtual_ips: Vec<IpAddr>,
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    pub routes: Vec<String>,
    pub dns: Vec<IpAddr>,
    pub dns_suffixes: Vec<String>,
    /// The gateway's internal domains (RFC 8598), resolved by `dns`.
    #[serde(default)]
    pub dns_domains: Vec<String>,
    pub ike: String,
    pub esp: String,
    pub mobike: bool,
    /// When the IKE SA was established and last rekeyed (seconds since the epoch).
    pub ike_since: Option<u64>,
    pub last_rekey: Option<u64>,
    pub traffic: Traffic,
    pub error: Option<String>,
    pub since: u64,
    /// RegisterDNS: the name and whether it is registered.
    #[serde(default)]
    pub dns_registration: Option<RegistrationStatus>,
    /// With EAP-TLS: the TLS version and suite it used.
    #[serde(default)]
    pub eap_tls: Option<String>,
}

/// What a running tunnel is told.
#[derive(Debug)]
pub enum Command {
    /// Say goodbye and remove everything.
    Stop,
    /// A fresh status, with traffic counters read now.
    Status(oneshot::Sender<ConnectionStatus>),
}

/// What a running tunnel tells its owner, in this order: `Installed` (possibly several times),
/// `Connected`, and last `Ended`.
#[derive(Debug, Clone)]
pub enum Report {
    /// What it added to the system (for crash recovery): interface, routes, addresses, DNS.
    Installed(InstallRecord),
    /// The tunnel carries traffic.
    Connected(Box<ConnectionStatus>),
    /// The tunnel is gone and everything it installed removed.
    Ended(Outcome),
}

/// How a tunnel ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Stopped as asked.
    Stopped,
    /// Failed; `connected` says whether it had carried traffic before.
    Failed {
        error: ConnectionError,
        connected: bool,
    },
}

/// What one tunnel added to the system outside its TUN device's own lifetime.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct InstallRecord {
    pub interface: String,
    pub tun_index: u32,
    pub routes: Vec<RecordedRoute>,
    pub addresses: Vec<RecordedAddress>,
    /// DNS settings were applied (under the tunnel's key in [`SharedDns`]).
    pub dns: bool,
    /// The nftables table holding the tunnel's traffic filters.
    #[serde(default)]
    pub firewall_table: Option<String>,
}

/// A route as recorded (netlink's type is not serialisable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RecordedRoute {
    pub destination: IpAddr,
    pub prefix_len: u8,
    pub oif: Option<u32>,
    pub gateway: Option<IpAddr>,
    pub source: Option<IpAddr>,
    pub metric: Option<u32>,
    pub table: Option<u32>,
}

impl From<Route> for RecordedRoute {
    fn from(r: Route) -> Self {
        Self {
            destination: r.destination,
            prefix_len: r.prefix_len,
            oif: r.oif,
            gateway: r.gateway,
            source: r.source,
            metric: r.metric,
            table: r.table,
        }
    }
}

impl From<RecordedRoute> for Route {
    fn from(r: RecordedRoute) -> Self {
        Route {
            destination: r.destination,
            prefix_len: r.prefix_len,
            oif: r.oif,
            gateway: r.gateway,
            source: r.source,
            metric: r.metric,
            table: r.table,
        }
    }
}

/// An interface address as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RecordedAddress {
    pub index: u32,
    pub local: IpAddr,
    pub prefix_len: u8,
}

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
        split_server(server).ok_or_else(|| setup(format!("server {server}"))("bad port".into()))?;
    let addrs = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| ConnectionError::Unreachable(format!("{host}: {e}")))?;
    let mut addrs: Vec<SocketAddr> = addrs.collect();
    addrs.sort_by_key(|a| !a.is_ipv4());
    let addr = addrs
        .first()
        .copied()
        .ok_or_else(|| ConnectionError::Unreachable(format!("{host}: no address")))?;
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
async fn physical_route_to(
    netlink: &Netlink,
    dest: IpAddr,
    tun_index: Option<u32>,
) -> Result<RouteLookup, ConnectionError> {
    let unreachable = |e: String| ConnectionError::Unreachable(format!("{dest}: {e}"));
    let lookup = netlink
        .route_to(dest)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    if lookup.source.is_some() && !is_tunnel(netlink, lookup.oif, tun_index).await {
        return Ok(lookup);
    }
    let routes = netlink
        .routes(dest.is_ipv6())
        .await
        .map_err(|e| unreachable(e.to_string()))?;
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
    let default = best.ok_or_else(|| unreachable("no route outside the tunnels".into()))?;
    let oif = default.oif.unwrap_or(0);
    let source = match default.source {
        Some(s) => Some(s),
        None => netlink
            .addresses(Some(oif))
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .into_iter()
            .map(|a| a.local)
            .find(|a| a.is_ipv4() == dest.is_ipv4()),
    };
    Ok(RouteLookup {
        oif,
        gateway: default.gateway,
        source,
        mtu: None,
    })
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

struct Up {
    installed: InstalledConfig,
    /// Routes to the gateway itself outside the tunnel (they follow the physical path).
    bypass: Vec<IpNet>,
    /// DNS settings were applied under the connection's key.
    dns: bool,
    /// The nftables table of the traffic filters.
    firewall: Option<String>,
}

/// A tunnel being brought up or running.
struct Connection {
    options: ConnectionOptions,
    dns: Arc<SharedDns>,
    dns_key: String,
    server_name: String,
    server: SocketAddr,
    driver: Driver,
    sa: IkeSaId,
    netlink: Netlink,
    tun_index: u32,
    physical: RouteLookup,
    up: Option<Up>,
    status: ConnectionStatus,
    path_lost_since: Option<Instant>,
    reports: mpsc::UnboundedSender<Report>,
    /// RegisterDNS, once the tunnel is up.
    registrar: Option<Registrar>,
}

/// Runs one tunnel until told to stop, or until it fails; everything it installed is removed
/// before [`Report::Ended`] goes out. `dns_key` names its DNS settings in `dns` (tunnels
/// sharing one [`SharedDns`] need distinct keys). `network` is notified when the machine's
/// network changed (notifications coalesce: none is lost, however busy the tunnel is).
pub async fn run(
    options: ConnectionOptions,
    dns: Arc<SharedDns>,
    dns_key: String,
    mut commands: mpsc::Receiver<Command>,
    network: Arc<tokio::sync::Notify>,
    reports: mpsc::UnboundedSender<Report>,
) -> Outcome {
    let outcome = match Connection::start(options, dns, dns_key, reports.clone()).await {
        Ok(mut connection) => {
            let result = connection.run(&mut commands, &network).await;
            let connected = connection.status.virtual_ip.is_some();
            connection.finish(result.is_ok()).await;
            match result {
                Ok(()) => Outcome::Stopped,
                Err(error) => Outcome::Failed { error, connected },
            }
        }
        Err(error) => Outcome::Failed {
            error,
            connected: false,
        },
    };
    let _ = reports.send(Report::Ended(outcome.clone()));
    outcome
}

/// The ESP-in-UDP framing of the tunnel's packets with the first ESP proposal we offer (AES-GCM
/// when that is not one the data plane runs: the negotiation will not pick it either).
pub(crate) fn offered_framing(
    esp_proposals: &[ikev2::EspProposal],
    gateway: IpAddr,
) -> (esp::framing::OuterFamily, esp::Transform) {
    let first = esp_proposals.first();
    let offered = ikev2::EspAlgorithms {
        encr: first
            .and_then(|p| p.encr.first().copied())
            .unwrap_or(ipsec_crypto::EncrAlg::AesGcm16_256),
        integ: first.and_then(|p| p.integ.first().copied()),
        esn: false,
    };
    let transform = tunnel::child::esp_transform(&offered)
        .unwrap_or(esp::Transform::AesGcm16(esp::AesKeyLen::Aes256));
    (esp::framing::OuterFamily::of(&gateway), transform)
}

/// The tunnel interface's MTU: the configured one, lowered to the largest inner packet whose
/// ESP-in-UDP packet fits the MTU of the route to the gateway, so that full-size packets are
/// not fragmented on our own link; never below [`MIN_TUNNEL_MTU`] (below that, fragments it is).
fn tunnel_mtu(
    configured: u16,
    path_mtu: Option<u32>,
    esp_proposals: &[ikev2::EspProposal],
    gateway: IpAddr,
) -> u16 {
    let Some(path_mtu) = path_mtu else {
        return configured;
    };
    let (outer, transform) = offered_framing(esp_proposals, gateway);
    let fits = esp::framing::inner_mtu(path_mtu as usize, outer, transform).unwrap_or(0);
    let fits = u16::try_from(fits).unwrap_or(u16::MAX);
    configured.min(fits.max(MIN_TUNNEL_MTU))
}

impl Connection {
    /// Creates the TUN device and sockets and sends IKE_SA_INIT. Must run inside a tokio
    /// runtime.
    async fn start(
        options: ConnectionOptions,
        dns: Arc<SharedDns>,
        dns_key: String,
        reports: mpsc::UnboundedSender<Report>,
    ) -> Result<Connection, ConnectionError> {
        let (server_name, server) = resolve(&options.server).await?;
        let netlink = Netlink::new().map_err(|e| setup("netlink")(e.to_string()))?;
        let physical = physical_route_to(&netlink, server.ip(), None).await?;
        let source = physical.source.ok_or_else(|| {
            ConnectionError::Unreachable(format!("no source address for {server}"))
        })?;

        let initiator = initiator_config(&options, &server_name, server.port())?;
        let mtu = tunnel_mtu(
            options.mtu,
            physical.mtu,
            &initiator.ike.esp_proposals,
            server.ip(),
        );
        if mtu < options.mtu {
            tracing::info!(
                configured = options.mtu,
                path_mtu = physical.mtu,
                mtu,
                "tunnel MTU lowered to what the path to the gateway carries"
            );
        }
        let tun = tun::create(&tunnel::host::tun_config(&options.interface, mtu))
            .map_err(|e| setup(format!("TUN {}", options.interface))(e.to_string()))?;
        let _ = reports.send(Report::Installed(InstallRecord {
            interface: tun.name.clone(),
            tun_index: tun.index,
            ..InstallRecord::default()
        }));

        // Ephemeral local ports: a device tunnel and user tunnels run side by side on one
        // machine, each with its own sockets (the gateway answers whatever port we use).
        let unspecified = if server.is_ipv4() {
            IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        };
        let endpoint = Endpoint::initiator(Arc::new(Provider::system()))
            .map_err(|e| ConnectionError::Ike(e.to_string()))?;
        let mut config = DriverConfig::new(
            Side::Client,
            tun.queues,
            mtu,
            SocketAddr::new(unspecified, 0),
            SocketAddr::new(unspecified, 0),
            endpoint,
        );
        config.liveness_tick = LIVENESS_TICK;
        let mut driver = Driver::start(config).map_err(|e| setup("tunnel")(e.to_string()))?;

        let local = SocketAddr::new(source, driver.ike_local_addr().port());
        let sa = driver
            .connect(Arc::new(initiator), local, server)
            .map_err(|e| ConnectionError::Ike(e.to_string()))?;

        let status = ConnectionStatus {
            state: "connecting".into(),
            server: format!("{server_name} ({server})"),
            interface: tun.name.clone(),
            since: tunnel::host::unix_now(),
            ..ConnectionStatus::default()
        };
        Ok(Connection {
            options,
            dns,
            dns_key,
            server_name,
            server,
            driver,
            sa,
            netlink,
            tun_index: tun.index,
            physical,
            up: None,
            status,
            path_lost_since: None,
            reports,
            registrar: None,
        })
    }

    /// Until a stop command (Ok) or a failure (Err).
    async fn run(
        &mut self,
        commands: &mut mpsc::Receiver<Command>,
        network: &tokio::sync::Notify,
    ) -> Result<(), ConnectionError> {
        loop {
            let outage = self.outage_deadline();
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Stop) | None => return Ok(()),
                    Some(Command::Status(reply)) => {
                        let _ = reply.send(self.fresh_status());
                    }
                },
                () = network.notified() => self.check_path().await?,
                event = self.driver.next_event() => self.on_event(event).await?,
                () = sleep_until_opt(outage) => {
                    let lost = self.path_lost_since.map(|t| t.elapsed().as_secs()).unwrap_or(0);
                    return Err(ConnectionError::Outage(lost));
                }
            }
        }
    }

    fn outage_deadline(&self) -> Option<Instant> {
        Some(self.path_lost_since? + self.options.network_outage?)
    }

    fn fresh_status(&self) -> ConnectionStatus {
        let mut status = self.status.clone();
        status.traffic = self.driver.traffic(self.sa);
        if let Some(record) = self.driver.sa(self.sa) {
            status.ike_since = record.established_unix;
            status.last_rekey = record.last_rekey_unix;
            if let Some(info) = &record.info {
                status.local = Some(info.local);
                status.remote = Some(info.remote);
            }
        }
        status.mobike = self
            .driver
            .endpoint()
            .sa(self.sa)
            .is_some_and(|sa| sa.mobike());
        if let Some(registrar) = &self.registrar {
            status.dns_registration = Some(registrar.status());
        }
        status
    }

    async fn on_event(&mut self, event: DriverEvent) -> Result<(), ConnectionError> {
        match event {
            DriverEvent::Established { sa } => {
                if let Some(info) = self.driver.sa(sa).and_then(|r| r.info.as_ref()) {
                    tracing::info!(gateway = %info.peer_subject, ike = %info.algorithms, eap_tls = ?info.eap_tls, "IKE SA up");
                    self.status.ike = info.algorithms.to_string();
                    self.status.eap_tls = info.eap_tls.clone();
                }
            }
            DriverEvent::ChildInstalled { child, .. } => {
                if self.up.is_none() {
                    self.child_up(&child).await?;
                }
            }
            DriverEvent::ChildRekeyed {
                old_spi_in,
                new_spi_in,
                ..
            } => {
                tracing::info!(
                    old = format_args!("{old_spi_in:#010x}"),
                    new = format_args!("{new_spi_in:#010x}"),
                    "Child SA rekeyed"
                );
                if let Some(c) = self.driver.sa(self.sa).and_then(|r| r.current_child()) {
                    self.status.esp = tunnel::child::describe_esp(&c.info.algorithms);
                }
            }
            DriverEvent::IkeRekeyed { .. } => tracing::info!("IKE SA rekeyed"),
            DriverEvent::ChildRemoved {
                remaining, spi_in, ..
            } => {
                tracing::info!(spi = format_args!("{spi_in:#010x}"), "Child SA deleted");
                if remaining == 0 {
                    // Deleted by the gateway or expired without a successful rekey: the IKE SA
                    // alone carries no traffic, so end the tunnel (the agent reconnects).
                    return Err(ConnectionError::Ike("no Child SA left".into()));
                }
            }
            DriverEvent::Moved { local, remote, .. } => {
                tracing::info!(%local, %remote, "tunnel moved");
                self.status.local = Some(local);
                self.status.remote = Some(remote);
            }
            DriverEvent::ExchangeFailed { failure, .. } => {
                tracing::warn!(reason = %failure.reason, "IKE exchange failed; tunnel stays up");
            }
            DriverEvent::Closed {
                failure, reason, ..
            } => {
                return Err(match failure {
                    Some(f) => ConnectionError::Ike(format!(
                        "{} (what to do: {})",
                        f.reason,
                        f.advice(true)
                    )),
                    None if reason == ikev2::CloseReason::PeerDelete => {
                        ConnectionError::ClosedByPeer
                    }
                    None => ConnectionError::Ike(format!("IKE SA closed ({reason:?})")),
                });
            }
            DriverEvent::Resumed { slept } => {
                tracing::info!(slept_s = slept.as_secs(), "resumed: checking the path");
                self.check_path().await?;
            }
            DriverEvent::DatapathStopped => {
                return Err(ConnectionError::Ike("the data plane stopped".into()));
            }
            // Only a responder relays EAP.
            DriverEvent::EapPassThrough { .. } => {}
        }
        Ok(())
    }

    /// The network changed (or the machine woke up): find the path to the gateway again. No
    /// path: the tunnel waits (up to NetworkOutageTime). A path, new or back: MOBIKE moves the
    /// IKE SA and its Child SA there (UPDATE_SA_ADDRESSES, which also proves the gateway
    /// alive); without MOBIKE a changed address ends the tunnel so that the agent re-dials.
    async fn check_path(&mut self) -> Result<(), ConnectionError> {
        let lookup = physical_route_to(&self.netlink, self.server.ip(), Some(self.tun_index)).await;
        let Ok(lookup) = lookup else {
            if self.path_lost_since.is_none() {
                tracing::warn!(gateway = %self.server, "no path to the gateway: waiting for the network");
                self.path_lost_since = Some(Instant::now());
                self.status.state = "waiting for network".into();
                self.driver.set_path_available(self.sa, false);
            }
            return Ok(());
        };
        let Some(source) = lookup.source else {
            return Ok(());
        };
        let current = self
            .driver
            .sa(self.sa)
            .and_then(|r| r.info.as_ref())
            .map(|i| i.local.ip());
        let was_lost = self.path_lost_since.take().is_some();
        let changed = current.is_some_and(|c| c != source)
            || lookup.oif != self.physical.oif
            || lookup.gateway != self.physical.gateway;
        if !was_lost && !changed {
            return Ok(());
        }
        self.physical = lookup;
        self.driver.set_path_available(self.sa, true);
        if self.up.is_some() {
            self.status.state = "connected".into();
            self.refresh_bypass_routes().await;
        }
        if self.driver.roam(self.sa, source) {
            tracing::info!(%source, "path to the gateway changed: MOBIKE update");
            Ok(())
        } else if current.is_some_and(|c| c != source) {
            Err(ConnectionError::AddressChanged)
        } else {
            // Same address, path back: ask the gateway whether the SA survived.
            self.driver.check_liveness(self.sa);
            Ok(())
        }
    }

    /// Routes to the gateway outside the tunnel follow the physical path after a change.
    async fn refresh_bypass_routes(&mut self) {
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
                    Installed::Route(r) => record.routes.push((*r).into()),
                    Installed::Address(a) => record.addresses.push(RecordedAddress {
                        index: a.index,
                        local: a.local,
                        prefix_len: a.prefix_len,
                    }),
                }
            }
        }
        let _ = self.reports.send(Report::Installed(record));
    }

    async fn child_up(&mut self, child: &tunnel::ChildInfo) -> Result<(), ConnectionError> {
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
                    .map_err(|e| setup("traffic filters")(e.to_string()))?,
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
                .map_err(|e| setup(format!("address {ip}"))(e.to_string()))?;
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
                    let net = IpNet::new(r.prefix.addr, r.prefix.len)
                        .map_err(|e| setup("route")(e.to_string()))?;
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
                .map_err(|e| setup(format!("route {net}"))(e.to_string()))?;
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

    /// RegisterDNS: the name under the configured zone, else the profile's first suffix, else
    /// the gateway's first internal domain; sent to the configured server, else the first
    /// pushed one the tunnel has an address for. Without either, the status says so.
    fn start_registration(&mut self, child: &tunnel::ChildInfo) {
        let Some(settings) = self.options.register_dns.clone() else {
            return;
        };
        let zone = settings
            .zone
            .clone()
            .or_else(|| self.options.dns_suffixes.first().cloned())
            .or_else(|| child.dns_domains.first().cloned());
        let host = settings
            .host_name
            .clone()
            .or_else(crate::register_dns::host_name);
        let server = settings.server.or_else(|| {
            child
                .dns_servers
                .iter()
                .find(|s| child.virtual_ips.iter().any(|v| v.is_ipv4() == s.is_ipv4()))
                .copied()
        });
        let planned = (|| {
            let zone = zone.ok_or(
                "no zone: the profile has no DNSSuffix and the gateway pushes no internal domain",
            )?;
            let host = host.ok_or("this machine has no host name")?;
            let server = server.ok_or("no DNS server to send the update to")?;
            let source = child
                .virtual_ips
                .iter()
                .find(|v| v.is_ipv4() == server.is_ipv4())
                .copied()
                .ok_or("the tunnel has no address of the DNS server's family")?;
            let registration = Registration::new(
                &host,
                &zone,
                child.virtual_ips.clone(),
                &crate::register_dns::machine_id(),
                settings.ttl,
            )?;
            Ok::<_, InvalidRegistration>((registration, server, source))
        })();
        match planned {
            Ok((registration, server, source)) => {
                let target = crate::register_dns::Target {
                    server: SocketAddr::new(server, 53),
                    source,
                    interface: self.status.interface.clone(),
                };
                self.registrar = Some(Registrar::start(settings, registration, target));
            }
            Err(why) => {
                tracing::warn!("RegisterDNS not done: {why}");
                self.status.dns_registration = Some(RegistrationStatus {
                    state: "failed".into(),
                    detail: Some(why.to_string()),
                    ..RegistrationStatus::default()
                });
            }
        }
    }

    /// Says goodbye while the IKE SA is up, then removes DNS, routes, addresses and the TUN.
    /// A clean stop first removes the registered DNS name, through the tunnel.
    async fn finish(mut self, clean: bool) {
        if let Some(registrar) = self.registrar.take()
            && clean
            && tokio::time::timeout(DNS_REMOVE_GRACE, registrar.remove())
                .await
                .is_err()
        {
            tracing::warn!("DNS name not removed: no answer in time");
        }
        let _queues = self.driver.shutdown(DELETE_GRACE).await;
        if let Err(e) = self.dns.remove(&self.dns_key) {
            tracing::warn!("restoring DNS: {e}");
        }
        if let Some(up) = self.up.take() {
            if let Err(e) = up.installed.teardown().await {
                tracing::warn!("removing routes and addresses: {e}");
            }
            if let Some(table) = &up.firewall
                && let Err(e) = netio::firewall::remove(table).await
            {
                tracing::warn!("removing traffic filters: {e}");
            }
        }
        let _ = self
            .reports
            .send(Report::Installed(InstallRecord::default()));
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The configured MTU holds on an ordinary 1500-byte path; a smaller route MTU lowers it to
    /// exactly what fits (GCM over IPv4: 60 bytes of framing, 4-byte alignment, 2-byte trailer),
    /// CBC costs more, and nothing goes below the floor.
    #[test]
    fn the_tunnel_mtu_is_sized_from_the_path() {
        let v4: IpAddr = "203.0.113.1".parse().unwrap();
        let gcm = vec![ikev2::EspProposal::parse("aes256gcm16", false).unwrap()];
        let cbc = vec![ikev2::EspProposal::parse("aes256-sha256", false).unwrap()];
        assert_eq!(tunnel_mtu(1400, Some(1500), &gcm, v4), 1400);
        assert_eq!(tunnel_mtu(1400, None, &gcm, v4), 1400);
        assert_eq!(tunnel_mtu(1400, Some(1300), &gcm, v4), 1238);
        // 1300 - (20 + 8 + 8 + 16 IV + 16 ICV) = 1232 -> 77 blocks of 16 = 1232, minus 2.
        assert_eq!(tunnel_mtu(1400, Some(1300), &cbc, v4), 1230);
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(tunnel_mtu(1400, Some(1300), &gcm, v6), 1218);
        assert_eq!(tunnel_mtu(1400, Some(600), &gcm, v4), MIN_TUNNEL_MTU);
    }

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
