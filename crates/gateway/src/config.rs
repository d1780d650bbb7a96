//! `gateway.toml`: what the gateway listens on, who it is, whom it trusts, what it hands out.
//!
//! Loading is strict: unknown keys, wrong types and values that make no sense refuse the whole
//! file, and every error names the field (`clients.pool_v4`) so an operator can fix it without
//! guessing. Relative paths are taken from the directory of the configuration file.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use pki::Thumbprint;
use serde::Deserialize;

/// Azure accepts at most 20 trusted root certificates per gateway; so do we.
pub const MAX_ROOT_CAS: usize = 20;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    pub listen: Listen,
    pub identity: Identity,
    pub clients: Clients,
    pub network: Network,
    #[serde(default)]
    pub crypto: Crypto,
    #[serde(default)]
    pub tunnel: Tunnel,
    #[serde(default)]
    pub limits: Limits,
    /// Where leases and other state that must survive a restart are kept.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default)]
    pub admin: Admin,
    /// Policy groups, first match first; a client no group matches gets the defaults
    /// (`clients.pool_v4`, `network`).
    #[serde(default)]
    pub groups: Vec<Group>,
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// EAP to RADIUS servers instead of the gateway's own EAP-TLS (Azure's "RADIUS
    /// authentication" for IKEv2); off unless `servers` is set.
    #[serde(default)]
    pub radius: Option<RadiusConfig>,
    /// The admin page; off unless `[web]` is set.
    #[serde(default)]
    pub web: Option<WebConfig>,
}

/// `[web]`: the admin page on a loopback address, for whoever has the token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// A loopback address and port, e.g. `127.0.0.1:9478` (reach it over an SSH tunnel).
    pub listen: std::net::SocketAddr,
    /// A file (mode 0600) whose first line is the token, at least 16 characters.
    pub token_file: PathBuf,
}

/// `[radius]`: the servers EAP is relayed to (RFC 3579), in failover order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadiusConfig {
    pub servers: Vec<RadiusServer>,
    /// Wait this long for an answer before sending again.
    #[serde(default = "default_radius_timeout_ms")]
    pub timeout_ms: u64,
    /// Sends to one server before the next is tried.
    #[serde(default = "default_radius_tries")]
    pub tries: u32,
    /// NAS-Identifier sent with every request.
    #[serde(default = "default_nas_identifier")]
    pub nas_identifier: String,
}

/// One RADIUS server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadiusServer {
    /// `address:port` (1812 is the standard port).
    pub address: std::net::SocketAddr,
    /// A file holding the shared secret (its first line; keep it 0600).
    pub secret_file: PathBuf,
}

fn default_radius_timeout_ms() -> u64 {
    2000
}

fn default_radius_tries() -> u32 {
    3
}

fn default_nas_identifier() -> String {
    "aovpn-gateway".into()
}

impl RadiusConfig {
    fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.servers.is_empty() {
            return Err(("radius.servers", "name at least one server".into()));
        }
        if !(100..=30_000).contains(&self.timeout_ms) {
            return Err(("radius.timeout_ms", "must be between 100 and 30000".into()));
        }
        if !(1..=10).contains(&self.tries) {
            return Err(("radius.tries", "must be between 1 and 10".into()));
        }
        if self.nas_identifier.is_empty() || self.nas_identifier.len() > 253 {
            return Err(("radius.nas_identifier", "1 to 253 bytes".into()));
        }
        // One socket, one address family.
        if self
            .servers
            .iter()
            .any(|s| s.address.is_ipv4() != self.servers[0].address.is_ipv4())
        {
            return Err((
                "radius.servers",
                "all IPv4 or all IPv6 (the gateway asks them from one socket)".into(),
            ));
        }
        // Every server must get its turn before the client's IKE SA gives up (30 s).
        let worst = self.timeout_ms * u64::from(self.tries) * self.servers.len() as u64;
        if worst > 20_000 {
            return Err((
                "radius.timeout_ms",
                format!(
                    "timeout_ms x tries x servers is {worst} ms: at most 20000, or the client gives up before the last server is asked"
                ),
            ));
        }
        Ok(())
    }

    /// The servers with their secrets read from their files.
    pub fn load_servers(&self) -> Result<Vec<radius::Server>, (&'static str, String)> {
        self.servers
            .iter()
            .map(|s| {
                use std::os::unix::fs::MetadataExt as _;
                let meta = std::fs::metadata(&s.secret_file).map_err(|e| {
                    (
                        "radius.servers.secret_file",
                        format!("{}: {e}", s.secret_file.display()),
                    )
                })?;
                // Like the gateway's key: its group (the service's) may read it, nobody else.
                if meta.mode() & 0o007 != 0 {
                    return Err((
                        "radius.servers.secret_file",
                        format!(
                            "{}: readable by every user (mode {:o}): chmod 640 it",
                            s.secret_file.display(),
                            meta.mode() & 0o777
                        ),
                    ));
                }
                let text = zeroize::Zeroizing::new(
                    std::fs::read_to_string(&s.secret_file).map_err(|e| {
                        (
                            "radius.servers.secret_file",
                            format!("{}: {e}", s.secret_file.display()),
                        )
                    })?,
                );
                let secret = text.lines().next().unwrap_or("").trim();
                if secret.is_empty() {
                    return Err((
                        "radius.servers.secret_file",
                        format!("{}: empty", s.secret_file.display()),
                    ));
                }
                Ok(radius::Server {
                    address: s.address,
                    secret: zeroize::Zeroizing::new(secret.as_bytes().to_vec()),
                })
            })
            .collect()
    }
}

/// Prometheus metrics over HTTP (`GET /metrics`); off unless `listen` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// A local address and port, e.g. `127.0.0.1:9477`.
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
}

/// A policy group, as Azure's "user groups and address pools": clients whose certificate
/// matches get its address pool, routes and DNS servers instead of the defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    #[serde(rename = "match")]
    pub matches: GroupMatch,
    pub pool_v4: Ipv4Net,
    #[serde(default)]
    pub pool_v6: Option<Ipv6Net>,
    /// The networks its clients reach (their only traffic selectors and pushed routes).
    pub routes: Vec<IpNet>,
    #[serde(default)]
    pub dns: Vec<IpAddr>,
    #[serde(default)]
    pub dns_domains: Vec<String>,
}

/// What a client certificate must carry to be in a group (every criterion given must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupMatch {
    /// The SHA-1 thumbprint of a CA on the client's validated path (the intermediate that
    /// issued it, or the root), as `aovpn pki thumbprint` prints it: a CA by its key and
    /// signature, not by a name another CA could also carry.
    #[serde(default)]
    pub issuer_thumbprint: Option<String>,
    /// A subject O value (any trusted CA can write any O: combine with issuer_thumbprint
    /// when several CAs are trusted).
    #[serde(default)]
    pub subject_o: Option<String>,
    /// A subject OU value (the same caution).
    #[serde(default)]
    pub subject_ou: Option<String>,
    /// A domain a dNSName ends in (machine certificates).
    #[serde(default)]
    pub dns_suffix: Option<String>,
    /// A domain a UPN or e-mail name ends in (user certificates; the EAP identity of an
    /// EAP-TLS user is the same name).
    #[serde(default)]
    pub upn_suffix: Option<String>,
}

impl GroupMatch {
    /// Whether the client certificate `leaf`, validated through the CAs `path` (their
    /// thumbprints), satisfies every criterion.
    pub fn matches(&self, leaf: &pki::Certificate, path: &[Thumbprint]) -> bool {
        let eq = |a: &str, b: &str| a.trim().eq_ignore_ascii_case(b.trim());
        let under = |name: &str, domain: &str| {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let domain = domain
                .trim_start_matches('.')
                .trim_end_matches('.')
                .to_ascii_lowercase();
            name == domain || name.ends_with(&format!(".{domain}"))
        };
        let domain_of = |user: &str| user.rsplit_once('@').map(|(_, d)| d.to_owned());
        self.issuer_thumbprint
            .as_ref()
            .is_none_or(|t| t.parse::<Thumbprint>().is_ok_and(|t| path.contains(&t)))
            && self
                .subject_o
                .as_ref()
                .is_none_or(|o| leaf.organizations().iter().any(|v| eq(v, o)))
            && self
                .subject_ou
                .as_ref()
                .is_none_or(|o| leaf.organizational_units().iter().any(|v| eq(v, o)))
            && self
                .dns_suffix
                .as_ref()
                .is_none_or(|d| leaf.dns_names().iter().any(|n| under(n, d)))
            && self.upn_suffix.as_ref().is_none_or(|d| {
                leaf.upns()
                    .iter()
                    .chain(leaf.rfc822_names())
                    .filter_map(|u| domain_of(u))
                    .any(|n| under(&n, d))
            })
    }

    fn is_empty(&self) -> bool {
        *self == GroupMatch::default()
    }
}

/// The administration socket (`aovpn gateway sessions|disconnect|revoke|reload`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    #[serde(default = "default_admin_socket")]
    pub socket: PathBuf,
    /// A group (name or gid) whose members may use it besides root.
    #[serde(default)]
    pub group: Option<String>,
    /// `group` resolved.
    #[serde(skip)]
    pub gid: Option<u32>,
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            socket: default_admin_socket(),
            group: None,
            gid: None,
        }
    }
}

fn default_admin_socket() -> PathBuf {
    PathBuf::from("/run/aovpn-gateway/admin.sock")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// Local addresses for IKE (UDP 500) and NAT-T/ESP (UDP 4500).
    pub addresses: Vec<IpAddr>,
    #[serde(default = "default_ike_port")]
    pub ike_port: u16,
    #[serde(default = "default_natt_port")]
    pub natt_port: u16,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// PEM file with the gateway certificate first, then any intermediates.
    pub certificate: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// IKE identity (FQDN); defaults to the certificate's first dNSName.
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clients {
    /// PEM or DER files with trusted root CAs.
    #[serde(default)]
    pub root_ca_files: Vec<PathBuf>,
    /// Root CAs as Azure's portal takes them: the base64 body of the certificate on one line.
    #[serde(default)]
    pub root_ca_data: Vec<String>,
    /// SHA-1 thumbprints of revoked client certificates (hex, any case, ':' or spaces allowed).
    #[serde(default)]
    pub revoked_thumbprints: Vec<String>,
    /// A file of revoked thumbprints, one per line (`#` comments), read with the
    /// configuration; `aovpn gateway revoke` appends to it. Default `STATE_DIR/revoked.txt`
    /// (the gateway may write there); a file that does not exist yet is empty.
    #[serde(default)]
    pub revocation_file: Option<PathBuf>,
    /// The thumbprints read from `revocation_file`.
    #[serde(skip)]
    pub revoked_from_file: Vec<Thumbprint>,
    /// Which client certificates are accepted: `machine` (device tunnels: the certificate
    /// names a host) and `user` (it names a user: an rfc822Name or UPN). Both by default; a
    /// gateway for device tunnels only says `["machine"]`.
    #[serde(default = "default_accept")]
    pub accept: Vec<CertClass>,
    /// Virtual addresses handed to clients.
    pub pool_v4: Ipv4Net,
    #[serde(default)]
    pub pool_v6: Option<Ipv6Net>,
}

/// What a client certificate is for, from the names it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertClass {
    /// Names a host (dNSName, an address, or only a subject): a device tunnel.
    Machine,
    /// Names a user (rfc822Name or Microsoft UPN): a user tunnel.
    User,
}

impl CertClass {
    pub fn of(cert: &pki::Certificate) -> Self {
        if cert.rfc822_names().is_empty() && cert.upns().is_empty() {
            Self::Machine
        } else {
            Self::User
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Machine => "machine",
            Self::User => "user",
        }
    }
}

fn default_accept() -> Vec<CertClass> {
    vec![CertClass::Machine, CertClass::User]
}

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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crypto {
    /// IKE proposals in strongSwan notation, most preferred first; empty = built-in defaults.
    #[serde(default)]
    pub ike_proposals: Vec<String>,
    /// ESP proposals in strongSwan notation; empty = built-in defaults.
    #[serde(default)]
    pub esp_proposals: Vec<String>,
    /// Accept the stock Windows set (3DES/AES-CBC, SHA-1, MODP-1024) when offered.
    #[serde(default)]
    pub allow_legacy: bool,
    /// Azure's defaults: IKE SA 28800 s, IPsec SA 27000 s.
    #[serde(default = "default_ike_lifetime")]
    pub ike_lifetime_secs: u64,
    #[serde(default = "default_child_lifetime")]
    pub child_lifetime_secs: u64,
    /// Liveness check interval; 0 disables it.
    #[serde(default = "default_dpd")]
    pub dpd_interval_secs: u64,
    /// IKE messages larger than this are fragmented (RFC 7383) when the peer supports it.
    #[serde(default = "default_fragment_mtu")]
    pub fragment_mtu: u16,
}

/// What one unauthenticated host, or all of them together, may make the gateway hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Half-open IKE SAs above which every new initiator must echo a COOKIE (0 = always).
    #[serde(default = "default_cookie_threshold")]
    pub cookie_threshold: u32,
    /// Half-open IKE SAs above which new IKE_SA_INIT requests are dropped.
    #[serde(default = "default_half_open_limit")]
    pub half_open_limit: u32,
    /// Half-open IKE SAs one source (IPv4 address, IPv6 /64) may hold before it must echo a
    /// COOKIE, and with one (strongSwan's block_threshold).
    #[serde(default = "default_half_open_per_source")]
    pub half_open_per_source: u32,
    /// Largest datagram taken from a peer before it has authenticated, in bytes.
    #[serde(default = "default_max_unauthenticated_message")]
    pub max_unauthenticated_message: u32,
    /// Established IKE SAs one client identity may hold at once; the oldest is closed when a
    /// new one authenticates beyond this.
    #[serde(default = "default_max_sas_per_identity")]
    pub max_sas_per_identity: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            cookie_threshold: default_cookie_threshold(),
            half_open_limit: default_half_open_limit(),
            half_open_per_source: default_half_open_per_source(),
            max_unauthenticated_message: default_max_unauthenticated_message(),
            max_sas_per_identity: default_max_sas_per_identity(),
        }
    }
}

impl Default for Crypto {
    fn default() -> Self {
        Self {
            ike_proposals: Vec::new(),
            esp_proposals: Vec::new(),
            allow_legacy: false,
            ike_lifetime_secs: default_ike_lifetime(),
            child_lifetime_secs: default_child_lifetime(),
            dpd_interval_secs: default_dpd(),
            fragment_mtu: default_fragment_mtu(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tunnel {
    #[serde(default = "default_interface")]
    pub interface: String,
    /// Inner MTU of the TUN device; derived from the path and ESP overhead when absent.
    #[serde(default)]
    pub mtu: Option<u16>,
}

impl Default for Tunnel {
    fn default() -> Self {
        Self {
            interface: default_interface(),
            mtu: None,
        }
    }
}

fn default_state_dir() -> PathBuf {
    // Its own directory: the gateway runs as user aovpn, the agent's state is root's.
    PathBuf::from("/var/lib/aovpn-gateway")
}
fn default_ike_port() -> u16 {
    500
}
fn default_natt_port() -> u16 {
    4500
}
/// Smallest accepted IKE / Child SA lifetime.
pub const MIN_LIFETIME_SECS: u64 = 10;

/// Longest lifetime or liveness interval accepted: 30 days.
pub const MAX_TIMER_SECS: u64 = 30 * 24 * 3600;

fn default_ike_lifetime() -> u64 {
    28_800
}
fn default_child_lifetime() -> u64 {
    27_000
}
fn default_dpd() -> u64 {
    30
}
fn default_fragment_mtu() -> u16 {
    1280
}
fn default_cookie_threshold() -> u32 {
    10
}
fn default_half_open_limit() -> u32 {
    4096
}
fn default_half_open_per_source() -> u32 {
    5
}
fn default_max_unauthenticated_message() -> u32 {
    10_000
}
fn default_max_sas_per_identity() -> u32 {
    4
}
fn default_interface() -> String {
    "aovpn0".to_owned()
}

/// A configuration that cannot be used, with the field to blame.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Syntax, type and unknown-key errors; toml's message carries line, column and key.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: field `{field}`: {message}")]
    Invalid {
        path: PathBuf,
        field: &'static str,
        message: String,
    },
}

impl ConfigError {
    /// The configuration at `path` refused because of `field`.
    pub(crate) fn invalid(path: &Path, field: &'static str, message: String) -> Self {
        Self::Invalid {
            path: path.to_owned(),
            field,
            message,
        }
    }

    /// The offending field, when the error is about one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl GatewayConfig {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, path, base)
    }

    /// Parses and validates `text`; `path` names it in errors, `base` anchors relative paths.
    pub fn from_toml(text: &str, path: &Path, base: &Path) -> Result<Self, ConfigError> {
        let mut config: GatewayConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', " | "),
        })?;
        config.resolve_paths(base);
        let invalid = |field, message| ConfigError::Invalid {
            path: path.to_owned(),
            field,
            message,
        };
        let file = config
            .clients
            .revocation_file
            .get_or_insert_with(|| config.state_dir.join("revoked.txt"))
            .clone();
        config.clients.revoked_from_file =
            read_revocation_file(&file).map_err(|m| invalid("clients.revocation_file", m))?;
        if let Some(group) = &config.admin.group {
            config.admin.gid = Some(
                group_id(group)
                    .ok_or_else(|| invalid("admin.group", format!("no group named {group:?}")))?,
            );
        }
        config
            .validate()
            .map_err(|(field, message)| ConfigError::Invalid {
                path: path.to_owned(),
                field,
                message,
            })?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        abs(&mut self.identity.certificate);
        abs(&mut self.identity.key);
        self.clients.root_ca_files.iter_mut().for_each(abs);
        abs(&mut self.state_dir);
        abs(&mut self.admin.socket);
        if let Some(r) = &mut self.radius {
            r.servers.iter_mut().for_each(|s| abs(&mut s.secret_file));
        }
        if let Some(w) = &mut self.web {
            abs(&mut w.token_file);
        }
        if let Some(f) = &mut self.clients.revocation_file {
            abs(f);
        }
    }

    /// The settings that differ in `new` but only take effect at a restart (sockets, pools,
    /// the TUN device, where state lives), by field name.
    pub fn needs_restart_for(&self, new: &GatewayConfig) -> Vec<&'static str> {
        let mut changed = Vec::new();
        let mut check = |field: &'static str, differs: bool| {
            if differs {
                changed.push(field);
            }
        };
        check(
            "listen.addresses",
            self.listen.addresses != new.listen.addresses,
        );
        check(
            "listen.ike_port",
            self.listen.ike_port != new.listen.ike_port,
        );
        check(
            "listen.natt_port",
            self.listen.natt_port != new.listen.natt_port,
        );
        check(
            "clients.pool_v4",
            self.clients.pool_v4 != new.clients.pool_v4,
        );
        check(
            "clients.pool_v6",
            self.clients.pool_v6 != new.clients.pool_v6,
        );
        check(
            "tunnel.interface",
            self.tunnel.interface != new.tunnel.interface,
        );
        check("tunnel.mtu", self.tunnel.mtu != new.tunnel.mtu);
        check("state_dir", self.state_dir != new.state_dir);
        check("admin.socket", self.admin.socket != new.admin.socket);
        check("admin.group", self.admin.gid != new.admin.gid);
        check("metrics.listen", self.metrics != new.metrics);
        check("web", self.web != new.web);
        let radius = |c: &GatewayConfig| {
            c.radius.as_ref().map(|r| {
                format!(
                    "{:?}",
                    (&r.servers, r.timeout_ms, r.tries, &r.nas_identifier)
                )
            })
        };
        check("radius", radius(self) != radius(new));
        let pools = |c: &GatewayConfig| -> Vec<(String, Ipv4Net, Option<Ipv6Net>)> {
            c.groups
                .iter()
                .map(|g| (g.name.clone(), g.pool_v4, g.pool_v6))
                .collect()
        };
        check("groups (names and pools)", pools(self) != pools(new));
        changed
    }

    /// The revocation list, normalised: `revoked_thumbprints` and the revocation file.
    pub fn revoked(&self) -> BTreeSet<Thumbprint> {
        self.clients
            .revoked_thumbprints
            .iter()
            .filter_map(|t| t.parse().ok())
            .chain(self.clients.revoked_from_file.iter().copied())
            .collect()
    }

    fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.listen.addresses.is_empty() {
            return Err(("listen.addresses", "at least one address is needed".into()));
        }
        if self.listen.addresses.len() > 1 {
            // One socket pair per daemon for now; a wildcard bind would also listen on
            // addresses nobody listed.
            return Err((
                "listen.addresses",
                "exactly one address for now (run one gateway per address)".into(),
            ));
        }
        if self.listen.ike_port == 0 {
            return Err(("listen.ike_port", "port 0 is not a port".into()));
        }
        if self.listen.natt_port == 0 || self.listen.natt_port == self.listen.ike_port {
            return Err((
                "listen.natt_port",
                "must be non-zero and differ from ike_port".into(),
            ));
        }
        if self
            .identity
            .id
            .as_ref()
            .is_some_and(|id| id.trim().is_empty())
        {
            return Err((
                "identity.id",
                "must not be empty (omit it to use the SAN)".into(),
            ));
        }
        let roots = self.clients.root_ca_files.len() + self.clients.root_ca_data.len();
        if roots == 0 {
            return Err((
                "clients.root_ca_files",
                "no trusted root CA: set root_ca_files or root_ca_data".into(),
            ));
        }
        if roots > MAX_ROOT_CAS {
            return Err((
                "clients.root_ca_files",
                format!("{roots} root CAs configured, at most {MAX_ROOT_CAS} are allowed"),
            ));
        }
        for (i, data) in self.clients.root_ca_data.iter().enumerate() {
            let clean: String = data.chars().filter(|c| !c.is_whitespace()).collect();
            let base64ish = !clean.is_empty()
                && clean
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='));
            if !base64ish {
                return Err((
                    "clients.root_ca_data",
                    format!("entry {} is not base64 certificate data", i + 1),
                ));
            }
        }
        for t in &self.clients.revoked_thumbprints {
            if t.parse::<Thumbprint>().is_err() {
                return Err((
                    "clients.revoked_thumbprints",
                    format!("{t:?} is not a SHA-1 thumbprint (40 hex digits)"),
                ));
            }
        }
        if self.clients.accept.is_empty() {
            return Err((
                "clients.accept",
                "accepts no certificate at all: list \"machine\", \"user\" or both".into(),
            ));
        }
        if self.clients.pool_v4.prefix_len() > 30 {
            return Err((
                "clients.pool_v4",
                format!(
                    "{} leaves no room for clients (use /30 or larger)",
                    self.clients.pool_v4
                ),
            ));
        }
        if self.clients.pool_v4 != self.clients.pool_v4.trunc() {
            return Err((
                "clients.pool_v4",
                format!(
                    "host bits set; did you mean {}?",
                    self.clients.pool_v4.trunc()
                ),
            ));
        }
        let bad_v6 = self
            .clients
            .pool_v6
            .filter(|n| n.prefix_len() > 126 || *n != n.trunc());
        if let Some(v6) = bad_v6 {
            return Err((
                "clients.pool_v6",
                format!("{v6} is not a usable pool prefix"),
            ));
        }
        if self.network.routes.is_empty() {
            return Err((
                "network.routes",
                "no prefix to push: list the networks behind the gateway (0.0.0.0/0 for all)"
                    .into(),
            ));
        }
        if let Some(bad) = self
            .network
            .dns_domains
            .iter()
            .find(|d| !ikev2::dns_domain::is_domain(d.strip_suffix('.').unwrap_or(d)))
        {
            return Err((
                "network.dns_domains",
                format!("{bad:?} is not a DNS name (letters, digits, '-', '_', dots)"),
            ));
        }
        if !self.network.dns_domains.is_empty() && self.network.dns.is_empty() {
            return Err((
                "network.dns_domains",
                "internal domains need DNS servers to resolve them (network.dns)".into(),
            ));
        }
        for route in &self.network.routes {
            if route.contains(&IpNet::V4(self.clients.pool_v4)) && route.prefix_len() > 0 {
                return Err((
                    "network.routes",
                    format!("{route} contains the client pool {}", self.clients.pool_v4),
                ));
            }
        }
        self.validate_groups()?;
        if let Some(r) = &self.radius {
            r.validate()?;
        }
        // Plain HTTP with a token: loopback only (an SSH tunnel brings it to an admin).
        if let Some(w) = &self.web
            && !w.listen.ip().is_loopback()
        {
            return Err((
                "web.listen",
                format!("{} is not a loopback address", w.listen),
            ));
        }
        // Unauthenticated: a scraper on this machine (or a proxy that authenticates).
        if let Some(addr) = self.metrics.listen
            && !addr.ip().is_loopback()
        {
            return Err((
                "metrics.listen",
                format!(
                    "{addr} is not a loopback address: the metrics have no authentication (put an authenticating proxy in front to serve them further)"
                ),
            ));
        }
        // Short lifetimes are for tests; a rekey needs a few round trips of headroom.
        // Upper bounds keep every timer the engine derives far from overflowing `Instant`.
        for (field, value) in [
            ("crypto.ike_lifetime_secs", self.crypto.ike_lifetime_secs),
            (
                "crypto.child_lifetime_secs",
                self.crypto.child_lifetime_secs,
            ),
        ] {
            if !(MIN_LIFETIME_SECS..=MAX_TIMER_SECS).contains(&value) {
                return Err((
                    field,
                    format!("must be between {MIN_LIFETIME_SECS} and {MAX_TIMER_SECS} seconds"),
                ));
            }
        }
        if self.crypto.dpd_interval_secs > MAX_TIMER_SECS {
            return Err((
                "crypto.dpd_interval_secs",
                format!("must be at most {MAX_TIMER_SECS} seconds (0 disables it)"),
            ));
        }
        if !(576..=9000).contains(&self.crypto.fragment_mtu) {
            return Err(("crypto.fragment_mtu", "must be between 576 and 9000".into()));
        }
        let name = &self.tunnel.interface;
        if name.is_empty()
            || name.len() > 15
            || name
                .chars()
                .any(|c| c == '/' || c.is_whitespace() || c == ':')
        {
            return Err((
                "tunnel.interface",
                format!(
                    "{name:?} is not a valid interface name (1-15 chars, no '/', ':' or spaces)"
                ),
            ));
        }
        if self
            .tunnel
            .mtu
            .is_some_and(|mtu| !(576..=9000).contains(&mtu))
        {
            return Err(("tunnel.mtu", "must be between 576 and 9000".into()));
        }
        self.limits.validate()
    }
}

impl GatewayConfig {
    fn validate_groups(&self) -> Result<(), (&'static str, String)> {
        let mut pools: Vec<(String, IpNet)> =
            vec![("clients.pool_v4".into(), IpNet::V4(self.clients.pool_v4))];
        pools.extend(
            self.clients
                .pool_v6
                .map(|p| ("clients.pool_v6".to_owned(), IpNet::V6(p))),
        );
        let mut names = BTreeSet::new();
        for (i, g) in self.groups.iter().enumerate() {
            let at = |what: &str| format!("groups[{i}] ({}): {what}", g.name);
            // Names also name the lease files: two that read the same there are one.
            if g.name.trim().is_empty() || !names.insert(crate::daemon::file_safe(&g.name)) {
                return Err(("groups.name", at("every group needs a name of its own")));
            }
            if g.name.eq_ignore_ascii_case("default") {
                return Err((
                    "groups.name",
                    at("\"default\" names the clients no group matches"),
                ));
            }
            if g.matches.is_empty() {
                return Err((
                    "groups.match",
                    at(
                        "matches nothing: give issuer_thumbprint, subject_o, subject_ou, dns_suffix or upn_suffix",
                    ),
                ));
            }
            if let Some(t) = &g.matches.issuer_thumbprint
                && t.parse::<Thumbprint>().is_err()
            {
                return Err((
                    "groups.match",
                    at(&format!(
                        "issuer_thumbprint {t:?} is not a SHA-1 thumbprint (40 hex digits)"
                    )),
                ));
            }
            if g.routes.is_empty() {
                return Err(("groups.routes", at("its clients would reach nothing")));
            }
            if g.pool_v4.prefix_len() > 30 || g.pool_v4 != g.pool_v4.trunc() {
                return Err((
                    "groups.pool_v4",
                    at(&format!("{} must be a network of /30 or larger", g.pool_v4)),
                ));
            }
            if !g.dns_domains.is_empty() && g.dns.is_empty() {
                return Err((
                    "groups.dns_domains",
                    at("internal domains need DNS servers to resolve them"),
                ));
            }
            let own = std::iter::once(IpNet::V4(g.pool_v4)).chain(g.pool_v6.map(IpNet::V6));
            for net in own {
                if let Some((other, theirs)) = pools
                    .iter()
                    .find(|(_, p)| p.contains(&net) || net.contains(p))
                {
                    return Err((
                        "groups.pool_v4",
                        at(&format!(
                            "{net} overlaps {other} ({theirs}): pools never share addresses"
                        )),
                    ));
                }
                pools.push((format!("groups[{i}] ({})", g.name), net));
            }
        }
        Ok(())
    }
}

impl Limits {
    fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(1..=1_000_000).contains(&self.half_open_limit) {
            return Err((
                "limits.half_open_limit",
                "must be between 1 and 1000000".into(),
            ));
        }
        if self.cookie_threshold > self.half_open_limit {
            return Err((
                "limits.cookie_threshold",
                format!(
                    "{} is above limits.half_open_limit ({}): COOKIEs would never be asked for",
                    self.cookie_threshold, self.half_open_limit
                ),
            ));
        }
        if !(1..=self.half_open_limit).contains(&self.half_open_per_source) {
            return Err((
                "limits.half_open_per_source",
                "must be between 1 and limits.half_open_limit".into(),
            ));
        }
        // An IKE_SA_INIT with RSA-4096 certificate requests and a MODP-8192 KE stays well
        // under 2,000 bytes; IKE_AUTH beyond a few kilobytes is fragmented.
        if !(2_000..=65_535).contains(&self.max_unauthenticated_message) {
            return Err((
                "limits.max_unauthenticated_message",
                "must be between 2000 and 65535 bytes".into(),
            ));
        }
        if !(1..=64).contains(&self.max_sas_per_identity) {
            return Err((
                "limits.max_sas_per_identity",
                "must be between 1 and 64".into(),
            ));
        }
        Ok(())
    }
}

/// The thumbprints in a revocation file, one per line (`#` starts a comment); a file that
/// does not exist yet is empty. A bad line is named with its number.
pub fn read_revocation_file(file: &Path) -> Result<Vec<Thumbprint>, String> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", file.display())),
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or_default().trim();
        if entry.is_empty() {
            continue;
        }
        out.push(entry.parse().map_err(|_| {
            format!(
                "{} line {}: {entry:?} is not a SHA-1 thumbprint (40 hex digits)",
                file.display(),
                n + 1
            )
        })?);
    }
    Ok(out)
}

/// A group by name or number.
fn group_id(group: &str) -> Option<u32> {
    if let Ok(gid) = group.parse() {
        return Some(gid);
    }
    nix::unistd::Group::from_name(group)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
state_dir = "state"
[listen]
addresses = ["203.0.113.1"]
[identity]
certificate = "gw.crt"
key = "/etc/aovpn/gw.key"
[clients]
root_ca_files = ["ca.crt"]
root_ca_data = ["MIIBszCCAVmgAwIBAgIU"]
revoked_thumbprints = ["aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd"]
pool_v4 = "172.16.201.0/24"
[network]
routes = ["10.1.0.0/16"]
dns = ["10.1.0.53"]
"#;

    fn load(text: &str) -> Result<GatewayConfig, ConfigError> {
        GatewayConfig::from_toml(
            text,
            Path::new("/etc/aovpn/gateway.toml"),
            Path::new("/etc/aovpn"),
        )
    }

    fn field_of(text: &str) -> &'static str {
        match load(text) {
            Err(e) => e.field().unwrap_or("<not a field error>"),
            Ok(_) => "<accepted>",
        }
    }

    #[test]
    fn good_config_loads_with_defaults_and_resolved_paths() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.listen.ike_port, 500);
        assert_eq!(c.listen.natt_port, 4500);
        assert_eq!(c.identity.certificate, PathBuf::from("/etc/aovpn/gw.crt"));
        assert_eq!(c.identity.key, PathBuf::from("/etc/aovpn/gw.key"));
        assert_eq!(
            c.clients.root_ca_files,
            vec![PathBuf::from("/etc/aovpn/ca.crt")]
        );
        assert_eq!(c.state_dir, PathBuf::from("/etc/aovpn/state"));
        assert_eq!(c.crypto.ike_lifetime_secs, 28_800);
        assert_eq!(c.crypto.child_lifetime_secs, 27_000);
        assert_eq!(c.tunnel.interface, "aovpn0");
        assert_eq!(c.limits.half_open_per_source, 5);
        assert_eq!(c.limits.max_unauthenticated_message, 10_000);
        let revoked: Vec<_> = c.revoked().into_iter().collect();
        assert_eq!(revoked.len(), 1);
        assert_eq!(
            revoked[0].to_string(),
            "AABBCCDDEEFF00112233445566778899AABBCCDD"
        );
    }

    /// The revocation file: by default in the state directory; its thumbprints join the
    /// list; a bad line is named with its number. The admin group must exist.
    #[test]
    fn revocation_file_and_admin_group() {
        let c = load(GOOD).unwrap();
        assert_eq!(
            c.clients.revocation_file,
            Some(PathBuf::from("/etc/aovpn/state/revoked.txt"))
        );
        assert_eq!(
            c.admin.socket,
            PathBuf::from("/run/aovpn-gateway/admin.sock")
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("revoked.txt");
        std::fs::write(
            &file,
            "# revoked by hand\n0102030405060708090a0b0c0d0e0f1011121314  # laptop 7\n\n",
        )
        .unwrap();
        let text = GOOD.replace(
            "pool_v4 =",
            &format!(
                "revocation_file = {:?}\npool_v4 =",
                file.display().to_string()
            ),
        );
        let c = load(&text).unwrap();
        assert_eq!(c.revoked().len(), 2);
        std::fs::write(&file, "0102030405060708090a0b0c0d0e0f1011121314\nnot-hex\n").unwrap();
        let err = load(&text).unwrap_err().to_string();
        assert!(
            err.contains("clients.revocation_file") && err.contains("line 2"),
            "{err}"
        );
        let text = format!("{GOOD}[metrics]\nlisten = \"0.0.0.0:9477\"\n");
        assert_eq!(field_of(&text), "metrics.listen");
        let text = format!("{GOOD}[metrics]\nlisten = \"127.0.0.1:9477\"\n");
        assert!(load(&text).is_ok());
        let text = format!("{GOOD}[admin]\ngroup = \"no-such-group-aovpn\"\n");
        assert_eq!(field_of(&text), "admin.group");
        let text = format!("{GOOD}[admin]\ngroup = \"4242\"\nsocket = \"admin.sock\"\n");
        let c = load(&text).unwrap();
        assert_eq!(c.admin.gid, Some(4242));
        assert_eq!(c.admin.socket, PathBuf::from("/etc/aovpn/admin.sock"));
    }

    /// Groups: pools that overlap name both; a group that matches nothing, reaches nothing
    /// or shares a name is refused.
    #[test]
    fn groups_are_checked() {
        let group = |pool: &str, m: &str| {
            format!(
                "{GOOD}[[groups]]\nname = \"eng\"\nmatch = {{ {m} }}\npool_v4 = \"{pool}\"\nroutes = [\"10.1.2.0/24\"]\n"
            )
        };
        let c = load(&group(
            "172.16.202.0/24",
            "upn_suffix = \"eng.corp.example\"",
        ))
        .unwrap();
        assert_eq!(c.groups.len(), 1);
        assert_eq!(
            c.groups[0].matches.upn_suffix.as_deref(),
            Some("eng.corp.example")
        );
        let err = load(&group(
            "172.16.201.128/25",
            "upn_suffix = \"eng.corp.example\"",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("groups.pool_v4")
                && err.contains("172.16.201.128/25")
                && err.contains("clients.pool_v4 (172.16.201.0/24)"),
            "{err}"
        );
        assert_eq!(field_of(&group("172.16.202.0/24", "")), "groups.match");
        let twice = format!(
            "{}[[groups]]\nname = \"ENG\"\nmatch = {{ dns_suffix = \"x\" }}\npool_v4 = \"172.16.203.0/24\"\nroutes = [\"10.1.3.0/24\"]\n",
            group("172.16.202.0/24", "dns_suffix = \"y\"")
        );
        assert_eq!(field_of(&twice), "groups.name");
        assert_eq!(
            field_of(&group("172.16.202.0/24", "issuer_thumbprint = \"CN=Eng\"")),
            "groups.match"
        );
        let named_default = group("172.16.202.0/24", "dns_suffix = \"y\"")
            .replace("name = \"eng\"", "name = \"Default\"");
        assert_eq!(field_of(&named_default), "groups.name");
        let old = load(GOOD).unwrap();
        let new = load(&group("172.16.202.0/24", "dns_suffix = \"y\"")).unwrap();
        assert!(
            old.needs_restart_for(&new)
                .iter()
                .any(|r| r.starts_with("groups"))
        );
    }

    /// Each criterion of a group's match against real certificates.
    #[test]
    fn group_matches_by_issuer_names_and_domains() {
        use pki::{CertKind, CertificateAuthority, KeyAlgorithm, Validity};
        let v = Validity::days_from(std::time::SystemTime::now(), 30);
        let root = CertificateAuthority::new_root("Corp Root", KeyAlgorithm::P256, v).unwrap();
        let eng_ca = root
            .issue_intermediate("Engineering CA", KeyAlgorithm::P256, v)
            .unwrap();
        let carol = eng_ca
            .issue(
                CertKind::User,
                "carol@eng.corp.example",
                KeyAlgorithm::P256,
                v,
            )
            .unwrap()
            .chain
            .remove(0);
        let pc = root
            .issue(
                CertKind::Machine,
                "pc7.lab.corp.example",
                KeyAlgorithm::P256,
                v,
            )
            .unwrap()
            .chain
            .remove(0);
        let m = |text: &str| -> GroupMatch { toml::from_str(text).unwrap() };
        // The CAs each was validated through (what the validator hands over).
        let carol_path = [eng_ca.cert().thumbprint(), root.cert().thumbprint()];
        let pc_path = [root.cert().thumbprint()];
        let by_ca = m(&format!(
            "issuer_thumbprint = \"{}\"",
            eng_ca.cert().thumbprint()
        ));
        assert!(by_ca.matches(&carol, &carol_path));
        assert!(!by_ca.matches(&pc, &pc_path));
        // A CA with the same name but another key is not that CA.
        let twin = CertificateAuthority::new_root("Engineering CA", KeyAlgorithm::P256, v).unwrap();
        let impostor = twin
            .issue(
                CertKind::User,
                "mallory@eng.corp.example",
                KeyAlgorithm::P256,
                v,
            )
            .unwrap()
            .chain
            .remove(0);
        assert!(!by_ca.matches(&impostor, &[twin.cert().thumbprint()]));
        assert!(m("upn_suffix = \"corp.example\"").matches(&carol, &carol_path));
        assert!(m("upn_suffix = \"eng.corp.example\"").matches(&carol, &carol_path));
        assert!(!m("upn_suffix = \"ng.corp.example\"").matches(&carol, &carol_path));
        assert!(!m("upn_suffix = \"eng.corp.example\"").matches(&pc, &pc_path));
        assert!(m("dns_suffix = \"lab.corp.example\"").matches(&pc, &pc_path));
        assert!(!m("dns_suffix = \"lab.corp.example\"").matches(&carol, &carol_path));
        // Every criterion must hold.
        let both = format!(
            "dns_suffix = \"lab.corp.example\"\nissuer_thumbprint = \"{}\"",
            eng_ca.cert().thumbprint()
        );
        assert!(!m(&both).matches(&pc, &pc_path));
        assert!(!m("subject_ou = \"Engineering\"").matches(&carol, &carol_path));
    }

    #[test]
    fn unknown_key_is_refused_with_its_name_and_position() {
        let text = GOOD.replace("[network]", "[network]\nroutez = []");
        let err = load(&text).unwrap_err().to_string();
        assert!(err.contains("routez"), "{err}");
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn wrong_type_is_refused_with_the_key() {
        let text = GOOD.replace(
            "pool_v4 = \"172.16.201.0/24\"",
            "pool_v4 = \"172.16.201.0/33\"",
        );
        let err = load(&text).unwrap_err().to_string();
        assert!(err.contains("pool_v4"), "{err}");
    }

    #[test]
    fn lifetimes_down_to_ten_seconds_are_accepted_for_rekey_tests() {
        let text = GOOD.replace(
            "[network]",
            "[crypto]\nike_lifetime_secs = 10\nchild_lifetime_secs = 10\n[network]",
        );
        let c = load(&text).unwrap();
        assert_eq!(
            (c.crypto.ike_lifetime_secs, c.crypto.child_lifetime_secs),
            (10, 10)
        );
        let text = GOOD.replace("[network]", "[crypto]\nchild_lifetime_secs = 9\n[network]");
        assert_eq!(field_of(&text), "crypto.child_lifetime_secs");
        let text = GOOD.replace("[network]", "[crypto]\nike_lifetime_secs = 9\n[network]");
        assert_eq!(field_of(&text), "crypto.ike_lifetime_secs");
    }

    #[test]
    fn what_needs_a_restart_is_named() {
        let old = load(GOOD).unwrap();
        let same = load(&GOOD.replace("10.1.0.53", "10.1.0.54")).unwrap();
        assert!(old.needs_restart_for(&same).is_empty(), "DNS applies live");
        let moved = load(
            &GOOD
                .replace("172.16.201.0/24", "172.16.202.0/24")
                .replace("[listen]", "[listen]\nike_port = 5000"),
        )
        .unwrap();
        assert_eq!(
            old.needs_restart_for(&moved),
            ["listen.ike_port", "clients.pool_v4"]
        );
    }

    #[test]
    fn each_semantic_error_names_its_field() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "addresses = [\"203.0.113.1\"]",
                "addresses = []",
                "listen.addresses",
            ),
            ("[listen]", "[listen]\nnatt_port = 500", "listen.natt_port"),
            ("[listen]", "[listen]\nike_port = 0", "listen.ike_port"),
            (
                "key = \"/etc/aovpn/gw.key\"",
                "key = \"k\"\nid = \" \"",
                "identity.id",
            ),
            (
                "root_ca_data = [\"MIIBszCCAVmgAwIBAgIU\"]",
                "root_ca_data = [\"not base64!\"]",
                "clients.root_ca_data",
            ),
            (
                "revoked_thumbprints = [\"aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd\"]",
                "revoked_thumbprints = [\"abc\"]",
                "clients.revoked_thumbprints",
            ),
            (
                "\"172.16.201.0/24\"",
                "\"172.16.201.0/31\"",
                "clients.pool_v4",
            ),
            (
                "\"172.16.201.0/24\"",
                "\"172.16.201.5/24\"",
                "clients.pool_v4",
            ),
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
            (
                "[network]",
                "[crypto]\nfragment_mtu = 100\n[network]",
                "crypto.fragment_mtu",
            ),
            (
                "[network]",
                "[crypto]\nike_lifetime_secs = 5\n[network]",
                "crypto.ike_lifetime_secs",
            ),
            (
                "[network]",
                "[tunnel]\ninterface = \"a-very-long-interface-name\"\n[network]",
                "tunnel.interface",
            ),
            (
                "[network]",
                "[limits]\nhalf_open_limit = 0\n[network]",
                "limits.half_open_limit",
            ),
            (
                "pool_v4 = \"172.16.201.0/24\"",
                "accept = []\npool_v4 = \"172.16.201.0/24\"",
                "clients.accept",
            ),
            (
                "[network]",
                "[limits]\ncookie_threshold = 5000\n[network]",
                "limits.cookie_threshold",
            ),
            (
                "[network]",
                "[limits]\nhalf_open_per_source = 0\n[network]",
                "limits.half_open_per_source",
            ),
            (
                "[network]",
                "[limits]\nmax_unauthenticated_message = 100\n[network]",
                "limits.max_unauthenticated_message",
            ),
            (
                "[network]",
                "[limits]\nmax_sas_per_identity = 0\n[network]",
                "limits.max_sas_per_identity",
            ),
        ];
        for (from, to, field) in cases {
            assert!(GOOD.contains(from), "test case does not apply: {from}");
            assert_eq!(
                field_of(&GOOD.replacen(from, to, 1)),
                *field,
                "{from} -> {to}"
            );
        }
    }

    #[test]
    fn timers_are_bounded_and_one_listen_address_is_required() {
        let huge = GOOD.replace(
            "[network]",
            "[crypto]\nike_lifetime_secs = 18446744073709551615\n[network]",
        );
        assert_eq!(field_of(&huge), "crypto.ike_lifetime_secs");
        let huge = GOOD.replace(
            "[network]",
            "[crypto]\ndpd_interval_secs = 99999999999\n[network]",
        );
        assert_eq!(field_of(&huge), "crypto.dpd_interval_secs");
        let two = GOOD.replace(
            "addresses = [\"203.0.113.1\"]",
            "addresses = [\"203.0.113.1\", \"198.51.100.1\"]",
        );
        assert_eq!(field_of(&two), "listen.addresses");
    }

    #[test]
    fn no_root_ca_and_too_many_root_cas_are_refused() {
        let none = GOOD
            .replace("root_ca_files = [\"ca.crt\"]\n", "")
            .replace("root_ca_data = [\"MIIBszCCAVmgAwIBAgIU\"]\n", "");
        assert_eq!(field_of(&none), "clients.root_ca_files");
        let many: Vec<String> = (0..21).map(|i| format!("\"ca{i}.crt\"")).collect();
        let text = GOOD
            .replace(
                "root_ca_files = [\"ca.crt\"]",
                &format!("root_ca_files = [{}]", many.join(",")),
            )
            .replace("root_ca_data = [\"MIIBszCCAVmgAwIBAgIU\"]\n", "");
        let err = load(&text).unwrap_err();
        assert_eq!(err.field(), Some("clients.root_ca_files"));
        assert!(err.to_string().contains("21 root CAs"), "{err}");
    }
}
