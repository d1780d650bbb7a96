//! From `gateway.toml` to the engine's responder configuration: credentials, trust, proposals,
//! traffic selectors, and the lease store behind the engine's address-pool interface.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ike_wire::{TrafficSelector, TsRange};
use ikev2::{
    AddressFamily, AddressPool, EspProposal, IkeConfig, IkeId, IkeProposal, LocalCredentials,
    PeerPolicy, PeerRejection, PeerRole, PeerValidator, PkiValidator, ResponderConfig,
    ValidatedPeer,
};
use ipnet::IpNet;
use ipsec_crypto::SigningKey;

use crate::config::{CertClass, ConfigError, GatewayConfig, GroupMatch};
use crate::pool::{Family, LeasePool};

/// Everything loaded from the files a configuration names.
#[derive(Debug)]
pub struct LoadedCredentials {
    pub local: LocalCredentials,
    pub trust: pki::TrustStore,
}

fn invalid(config_path: &std::path::Path, field: &'static str, message: String) -> ConfigError {
    ConfigError::Invalid {
        path: config_path.to_owned(),
        field,
        message,
    }
}

fn read(
    config_path: &std::path::Path,
    field: &'static str,
    file: &std::path::Path,
) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(file).map_err(|e| invalid(config_path, field, format!("{}: {e}", file.display())))
}

/// Loads the gateway certificate chain, its key and the trusted roots + revocation list.
pub fn load_credentials(
    config: &GatewayConfig,
    config_path: &std::path::Path,
) -> Result<LoadedCredentials, ConfigError> {
    let chain_pem = read(
        config_path,
        "identity.certificate",
        &config.identity.certificate,
    )?;
    let chain = pki::load_certificates(&chain_pem)
        .map_err(|e| invalid(config_path, "identity.certificate", e.to_string()))?;
    let Some(leaf) = chain.first() else {
        return Err(invalid(
            config_path,
            "identity.certificate",
            "no certificate in the file".into(),
        ));
    };
    let key_pem = read(config_path, "identity.key", &config.identity.key)?;
    let key = pki::PrivateKey::load(&key_pem)
        .map_err(|e| invalid(config_path, "identity.key", e.to_string()))?;
    let leaf_spki = leaf.spki_der().to_vec();
    let key_spki = key
        .public_key_spki()
        .map_err(|e| invalid(config_path, "identity.key", e.to_string()))?;
    if leaf_spki != key_spki {
        return Err(invalid(
            config_path,
            "identity.key",
            "the key does not belong to the certificate in identity.certificate".into(),
        ));
    }
    let signing = SigningKey::from_pkcs8_der(key.pkcs8_der())
        .map_err(|e| invalid(config_path, "identity.key", e.to_string()))?;
    let id = match &config.identity.id {
        Some(id) => parse_id(id),
        // A certificate issued for an address carries it as dNSName and iPAddress: the peer
        // expects ID_IPV4_ADDR then, not an FQDN that happens to look like one.
        None => match (leaf.dns_names().first(), leaf.ip_addrs().first()) {
            (Some(name), _) => parse_id(name),
            (None, Some(ip)) => IkeId::Ip(*ip),
            (None, None) => IkeId::DerDn(leaf.subject_der().to_vec()),
        },
    };

    let mut trust = pki::TrustStore::new();
    for file in &config.clients.root_ca_files {
        let bytes = read(config_path, "clients.root_ca_files", file)?;
        let certs = pki::load_certificates(&bytes).map_err(|e| {
            invalid(
                config_path,
                "clients.root_ca_files",
                format!("{}: {e}", file.display()),
            )
        })?;
        for cert in certs {
            trust
                .add_root(cert)
                .map_err(|e| invalid(config_path, "clients.root_ca_files", e.to_string()))?;
        }
    }
    for (i, data) in config.clients.root_ca_data.iter().enumerate() {
        let cert = pki::load_certificate(data.as_bytes()).map_err(|e| {
            invalid(
                config_path,
                "clients.root_ca_data",
                format!("entry {}: {e}", i + 1),
            )
        })?;
        trust
            .add_root(cert)
            .map_err(|e| invalid(config_path, "clients.root_ca_data", e.to_string()))?;
    }
    trust.set_revoked(config.revoked());

    Ok(LoadedCredentials {
        local: LocalCredentials {
            id,
            key: Arc::new(signing),
            chain: chain.iter().map(|c| c.der().to_vec()).collect(),
        },
        trust,
    })
}

/// An identity as written in a config: an IP literal, `user@domain`, or a host name.
pub fn parse_id(text: &str) -> IkeId {
    if let Ok(ip) = text.parse::<IpAddr>() {
        IkeId::Ip(ip)
    } else if text.contains('@') {
        IkeId::Rfc822(text.to_owned())
    } else {
        IkeId::Fqdn(text.to_owned())
    }
}

/// Client certificate validation against a trust store that SIGHUP can replace in place.
/// It records nothing: an SA's validated path travels with the SA (`IkeSaInfo::peer_chain`)
/// once AUTH has verified, and is re-checked from there.
#[derive(Debug)]
pub struct ClientValidator {
    trust: RwLock<pki::TrustStore>,
    accept: RwLock<Vec<CertClass>>,
    groups: RwLock<Vec<(GroupMatch, Arc<PeerPolicy>)>>,
}

impl ClientValidator {
    /// Accepts machine and user certificates until told otherwise.
    pub fn new(trust: pki::TrustStore) -> Self {
        Self {
            trust: RwLock::new(trust),
            accept: RwLock::new(vec![CertClass::Machine, CertClass::User]),
            groups: RwLock::new(Vec::new()),
        }
    }

    /// The policy groups, first match first, from now on.
    pub fn set_groups(&self, groups: Vec<(GroupMatch, Arc<PeerPolicy>)>) {
        if let Ok(mut g) = self.groups.write() {
            *g = groups;
        }
    }

    /// The group a client certificate validated through the CAs `path` falls in, if any.
    pub fn group_of(
        &self,
        leaf: &pki::Certificate,
        path: &[pki::Thumbprint],
    ) -> Option<Arc<PeerPolicy>> {
        self.groups
            .read()
            .ok()?
            .iter()
            .find(|(m, _)| m.matches(leaf, path))
            .map(|(_, p)| p.clone())
    }

    /// New roots and revocation list for every authentication from now on.
    pub fn replace_trust(&self, trust: pki::TrustStore) {
        if let Ok(mut t) = self.trust.write() {
            *t = trust;
        }
    }

    /// Which kinds of certificate are accepted from now on (`clients.accept`).
    pub fn set_accepted(&self, accept: &[CertClass]) {
        if let Ok(mut a) = self.accept.write() {
            *a = accept.to_vec();
        }
    }

    /// Whether an authenticated session's certificate path is still good now: nothing on it
    /// revoked, its root still trusted, nothing on it expired.
    pub fn recheck(&self, chain: &pki::ChainRecord) -> Result<(), pki::PkiError> {
        let trust = self
            .trust
            .read()
            .map_err(|_| pki::PkiError::InvalidChain("trust store unavailable".into()))?;
        trust.recheck(chain, std::time::SystemTime::now())
    }
}

impl PeerValidator for ClientValidator {
    fn validate(
        &self,
        peer_id: &IkeId,
        end_entity: &[u8],
        intermediates: &[&[u8]],
        unix_time: u64,
    ) -> Result<ValidatedPeer, PeerRejection> {
        let trust = self
            .trust
            .read()
            .map_err(|_| PeerRejection::Certificate("trust store unavailable".into()))?
            .clone();
        let validator = PkiValidator {
            trust,
            role: PeerRole::Client,
            expected_id: None,
        };
        let mut accepted = validator.validate(peer_id, end_entity, intermediates, unix_time)?;
        let leaf = pki::Certificate::from_der(end_entity)
            .map_err(|e| PeerRejection::Certificate(e.to_string()))?;
        let class = CertClass::of(&leaf);
        let allowed = self
            .accept
            .read()
            .map(|a| a.contains(&class))
            .unwrap_or(false);
        if !allowed {
            return Err(PeerRejection::Certificate(format!(
                "a {} certificate, and this gateway does not accept those (clients.accept)",
                class.name()
            )));
        }
        let cas = accepted.chain.thumbprints.get(1..).unwrap_or_default();
        accepted.policy = self.group_of(&leaf, cas);
        Ok(accepted)
    }

    fn ca_key_hashes(&self) -> Vec<[u8; 20]> {
        self.trust
            .read()
            .map(|t| t.ca_key_hashes())
            .unwrap_or_default()
    }
}

/// The responder configuration for the engine.
pub fn responder_config(
    config: &GatewayConfig,
    config_path: &std::path::Path,
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
    config_path: &std::path::Path,
) -> Result<Configured<P>, ConfigError> {
    if !list.is_empty() {
        return list
            .iter()
            .map(|p| parse(p, legacy))
            .collect::<Result<_, _>>()
            .map(Configured::List)
            .map_err(|e| invalid(config_path, field, e.to_string()));
    }
    if !legacy {
        return Ok(Configured::Defaults);
    }
    parse(legacy_set, true)
        .map(Configured::Legacy)
        .map_err(|e| invalid(config_path, "crypto.allow_legacy", e.to_string()))
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

/// A stable lease key for a peer identity (the display form abbreviates DNs).
pub fn lease_key(peer: &IkeId) -> String {
    match peer {
        IkeId::Fqdn(s) => format!("fqdn:{}", s.to_ascii_lowercase()),
        IkeId::Rfc822(s) => format!("rfc822:{}", s.to_ascii_lowercase()),
        IkeId::DerDn(der) => format!("dn:{}", hex::encode(der)),
        IkeId::Ip(a) => format!("ip:{a}"),
        IkeId::Other { id_type, data } => format!("{}:{}", id_type.0, hex::encode(data)),
    }
}

/// The lease stores, the default pool's and one per policy group.
#[derive(Debug, Clone)]
pub struct Pools {
    pub default: Arc<Mutex<LeasePool>>,
    pub groups: Vec<(String, Arc<Mutex<LeasePool>>)>,
}

impl Pools {
    fn of(&self, group: Option<&str>) -> &Arc<Mutex<LeasePool>> {
        group
            .and_then(|g| self.groups.iter().find(|(n, _)| n == g).map(|(_, p)| p))
            .unwrap_or(&self.default)
    }

    /// The pool an address was handed out from.
    fn holding(&self, addr: IpAddr) -> &Arc<Mutex<LeasePool>> {
        self.groups
            .iter()
            .map(|(_, p)| p)
            .find(|p| p.lock().is_ok_and(|p| p.contains(addr)))
            .unwrap_or(&self.default)
    }

    /// Every store, default first.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Mutex<LeasePool>>> {
        std::iter::once(&self.default).chain(self.groups.iter().map(|(_, p)| p))
    }
}

/// The lease stores as the engine's [`AddressPool`]: every address handed out counts one
/// session on the identity's lease in its group's pool, every release ends one.
#[derive(Debug, Clone)]
pub struct SharedPool(pub Pools);

impl SharedPool {
    fn acquire(
        &mut self,
        peer: &IkeId,
        group: Option<&str>,
        family: AddressFamily,
        replaces: bool,
    ) -> Option<IpAddr> {
        let key = lease_key(peer);
        let mut pool = self.0.of(group).lock().ok()?;
        let family = match family {
            AddressFamily::V4 => Family::V4,
            AddressFamily::V6 => Family::V6,
        };
        pool.acquire(&key, family, replaces, tunnel::host::unix_now())
            .unwrap_or_else(|e| {
                tracing::warn!(peer = %peer, "no address: {e}");
                None
            })
    }
}

impl AddressPool for SharedPool {
    fn allocate(
        &mut self,
        peer: &IkeId,
        group: Option<&str>,
        family: AddressFamily,
    ) -> Option<IpAddr> {
        self.acquire(peer, group, family, false)
    }

    fn allocate_replacing(
        &mut self,
        peer: &IkeId,
        group: Option<&str>,
        family: AddressFamily,
    ) -> Option<IpAddr> {
        self.acquire(peer, group, family, true)
    }

    fn release(&mut self, peer: &IkeId, addr: IpAddr) {
        if let Ok(mut pool) = self.0.holding(addr).lock() {
            pool.release(&lease_key(peer), addr, tunnel::host::unix_now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use std::time::SystemTime;

    use pki::{CertKind, CertificateAuthority, KeyAlgorithm, Validity};

    struct Files {
        dir: tempfile::TempDir,
        config: GatewayConfig,
    }

    fn setup(extra: &str) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let validity = Validity::days_from(SystemTime::now() - Duration::from_secs(60), 30);
        let ca = CertificateAuthority::new_root("Test Root", KeyAlgorithm::P256, validity).unwrap();
        let gw = ca
            .issue(
                CertKind::Gateway,
                "vpn.test.example",
                KeyAlgorithm::P256,
                validity,
            )
            .unwrap();
        let other = ca
            .issue(
                CertKind::Machine,
                "pc.test.example",
                KeyAlgorithm::P256,
                validity,
            )
            .unwrap();
        let p = dir.path();
        std::fs::write(p.join("ca.crt"), ca.cert().to_pem()).unwrap();
        std::fs::write(p.join("gw.crt"), gw.chain[0].to_pem()).unwrap();
        std::fs::write(p.join("gw.key"), gw.key.to_pem().as_bytes()).unwrap();
        std::fs::write(p.join("other.key"), other.key.to_pem().as_bytes()).unwrap();
        let text = format!(
            r#"
[listen]
addresses = ["203.0.113.1"]
[identity]
certificate = "gw.crt"
key = "gw.key"
[clients]
root_ca_files = ["ca.crt"]
revoked_thumbprints = ["{}"]
pool_v4 = "172.16.201.0/24"
[network]
routes = ["10.1.0.0/16", "10.2.0.0/24"]
dns = ["10.1.0.53"]
{extra}
"#,
            other.chain[0].thumbprint()
        );
        let config = GatewayConfig::from_toml(&text, &p.join("gateway.toml"), p).unwrap();
        Files { dir, config }
    }

    fn validator(creds: &LoadedCredentials) -> Arc<ClientValidator> {
        Arc::new(ClientValidator::new(creds.trust.clone()))
    }

    fn path(files: &Files) -> std::path::PathBuf {
        files.dir.path().join("gateway.toml")
    }

    #[test]
    fn credentials_trust_and_responder_config_come_from_the_files() {
        let f = setup("");
        let creds = load_credentials(&f.config, &path(&f)).unwrap();
        assert_eq!(creds.local.id, IkeId::Fqdn("vpn.test.example".into()));
        assert_eq!(creds.local.chain.len(), 1);
        assert_eq!(creds.trust.roots().len(), 1);
        let revoked: Vec<_> = f.config.revoked().into_iter().collect();
        assert!(creds.trust.is_revoked(&revoked[0]));

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
    fn a_gateway_certificate_for_an_address_gives_an_ip_identity() {
        let dir = tempfile::tempdir().unwrap();
        let validity = Validity::days_from(SystemTime::now() - Duration::from_secs(60), 30);
        let ca = CertificateAuthority::new_root("Root", KeyAlgorithm::P256, validity).unwrap();
        let gw = ca
            .issue(
                CertKind::Gateway,
                "203.0.113.1",
                KeyAlgorithm::P256,
                validity,
            )
            .unwrap();
        let p = dir.path();
        std::fs::write(p.join("ca.crt"), ca.cert().to_pem()).unwrap();
        std::fs::write(p.join("gw.crt"), gw.chain[0].to_pem()).unwrap();
        std::fs::write(p.join("gw.key"), gw.key.to_pem().as_bytes()).unwrap();
        let text = r#"
[listen]
addresses = ["203.0.113.1"]
[identity]
certificate = "gw.crt"
key = "gw.key"
[clients]
root_ca_files = ["ca.crt"]
pool_v4 = "172.16.201.0/24"
[network]
routes = ["10.1.0.0/16"]
"#;
        let config = GatewayConfig::from_toml(text, &p.join("g.toml"), p).unwrap();
        let creds = load_credentials(&config, &p.join("g.toml")).unwrap();
        assert_eq!(creds.local.id, IkeId::Ip("203.0.113.1".parse().unwrap()));
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_naming_identity_key() {
        let f = setup("");
        let mut config = f.config.clone();
        config.identity.key = f.dir.path().join("other.key");
        let err = load_credentials(&config, &path(&f)).unwrap_err();
        assert_eq!(err.field(), Some("identity.key"), "{err}");
    }

    #[test]
    fn missing_files_and_bad_proposals_name_their_fields() {
        let f = setup("");
        let mut config = f.config.clone();
        config.clients.root_ca_files = vec![Path::new("/nonexistent/ca.crt").to_owned()];
        let err = load_credentials(&config, &path(&f)).unwrap_err();
        assert_eq!(err.field(), Some("clients.root_ca_files"), "{err}");

        let f = setup("[crypto]\nike_proposals = [\"aes256-sha1-modp1024\"]");
        let creds = load_credentials(&f.config, &path(&f)).unwrap();
        let err = responder_config(&f.config, &path(&f), &creds, validator(&creds)).unwrap_err();
        assert_eq!(err.field(), Some("crypto.ike_proposals"), "{err}");

        let f = setup("[crypto]\nallow_legacy = true\nike_proposals = [\"aes256-sha1-modp1024\"]");
        let creds = load_credentials(&f.config, &path(&f)).unwrap();
        let r = responder_config(&f.config, &path(&f), &creds, validator(&creds)).unwrap();
        assert!(r.ike.ike_proposals[0].is_legacy());
    }

    #[test]
    fn a_session_is_rechecked_from_its_path_when_trust_changes() {
        let validity = Validity::days_from(SystemTime::now() - Duration::from_secs(60), 30);
        let ca = CertificateAuthority::new_root("Root", KeyAlgorithm::P256, validity).unwrap();
        let sub = ca
            .issue_intermediate("Issuing", KeyAlgorithm::P256, validity)
            .unwrap();
        let pc = sub
            .issue(
                CertKind::Machine,
                "pc.test.example",
                KeyAlgorithm::P256,
                validity,
            )
            .unwrap();
        let trust = pki::TrustStore::with_roots([ca.cert().clone()]).unwrap();
        let v = ClientValidator::new(trust.clone());
        let id = IkeId::Fqdn("pc.test.example".into());
        let now = tunnel::host::unix_now();
        let inter = [sub.cert().der().as_ref()];
        let chain = v
            .validate(&id, pc.chain[0].der(), &inter, now)
            .unwrap()
            .chain;
        assert_eq!(v.recheck(&chain), Ok(()));

        // Revoking the intermediate takes the session down, and new attempts are refused.
        let mut revoked = trust.clone();
        revoked.revoke(sub.cert().thumbprint());
        v.replace_trust(revoked);
        assert_eq!(
            v.recheck(&chain),
            Err(pki::PkiError::Revoked(sub.cert().thumbprint()))
        );
        assert!(matches!(
            v.validate(&id, pc.chain[0].der(), &inter, now),
            Err(PeerRejection::Certificate(_))
        ));
        // So does removing the root.
        let other = CertificateAuthority::new_root("Other", KeyAlgorithm::P256, validity).unwrap();
        v.replace_trust(pki::TrustStore::with_roots([other.cert().clone()]).unwrap());
        assert_eq!(v.recheck(&chain), Err(pki::PkiError::UnknownIssuer));
        v.replace_trust(trust);
        assert_eq!(v.recheck(&chain), Ok(()));
    }

    #[test]
    fn lease_keys_tell_distinguished_names_of_equal_length_apart() {
        let a = lease_key(&IkeId::DerDn(vec![0x30, 1, 2]));
        let b = lease_key(&IkeId::DerDn(vec![0x30, 1, 3]));
        assert_ne!(a, b);
        assert_eq!(
            lease_key(&IkeId::Fqdn("PC.Corp.Example".into())),
            lease_key(&IkeId::Fqdn("pc.corp.example".into()))
        );
    }

    #[test]
    fn shared_pool_gives_one_address_per_identity_from_its_groups_pool() {
        let pool = |net: &str| {
            Arc::new(Mutex::new(LeasePool::new(
                net.parse().unwrap(),
                None,
                vec![],
            )))
        };
        let mut shared = SharedPool(Pools {
            default: pool("172.16.201.0/24"),
            groups: vec![("eng".into(), pool("172.16.202.0/24"))],
        });
        let alice = IkeId::Rfc822("alice@corp.example".into());
        let bob = IkeId::Rfc822("bob@corp.example".into());
        let carol = IkeId::Rfc822("carol@eng.corp.example".into());
        let a = shared.allocate(&alice, None, AddressFamily::V4).unwrap();
        let b = shared.allocate(&bob, None, AddressFamily::V4).unwrap();
        let c = shared
            .allocate(&carol, Some("eng"), AddressFamily::V4)
            .unwrap();
        assert_ne!(a, b);
        assert!(a.to_string().starts_with("172.16.201."));
        assert!(c.to_string().starts_with("172.16.202."), "{c}");
        shared.release(&alice, a);
        assert_eq!(shared.allocate(&alice, None, AddressFamily::V4), Some(a));
        assert_eq!(shared.allocate(&alice, None, AddressFamily::V6), None);
        // Every allocation is released once, into the pool it came from: nothing stays pinned.
        shared.release(&alice, a);
        shared.release(&bob, b);
        shared.release(&carol, c);
        for p in shared.0.all() {
            assert!(p.lock().unwrap().leases().all(|l| !l.in_use()));
        }
    }
}
