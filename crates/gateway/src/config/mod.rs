//! `gateway.toml`: what the gateway listens on, who it is, whom it trusts, what it hands out.
//!
//! Loading is strict: unknown keys, wrong types and values that make no sense refuse the whole
//! file, and every error names the field (`clients.pool_v4`) so an operator can fix it without
//! guessing. Relative paths are taken from the directory of the configuration file.
//!
//! Each section lives in a module of its own with its types, defaults and checks; the checks
//! that look across sections (routes against the client pool, group pools against each
//! other and the defaults) are given what they compare with.

mod admin;
mod clients;
mod crypto;
mod groups;
mod identity;
mod limits;
mod listen;
mod network;
mod radius;
mod tunnel;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ipnet::{Ipv4Net, Ipv6Net};
use pki::Thumbprint;
use serde::Deserialize;

pub use admin::{Admin, MetricsConfig, WebConfig};
pub use clients::{CertClass, Clients, MAX_ROOT_CAS, read_revocation_file};
pub use crypto::{Crypto, MAX_TIMER_SECS, MIN_LIFETIME_SECS};
pub use groups::{Group, GroupMatch};
pub use identity::Identity;
pub use limits::Limits;
pub use listen::Listen;
pub use network::Network;
pub use radius::{RadiusConfig, RadiusServer};
pub use tunnel::Tunnel;

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

fn default_state_dir() -> PathBuf {
    // Its own directory: the gateway runs as user aovpn, the agent's state is root's.
    PathBuf::from("/var/lib/aovpn-gateway")
}

/// A file the gateway keeps beside its configuration (the revocation list, the admin page's
/// token) that cannot be read, written or used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Read, but not what it must be; `why` says what is wrong.
    #[error("{}: {why}", path.display())]
    Invalid { path: PathBuf, why: String },
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
        let invalid = |field, message| ConfigError::invalid(path, field, message);
        let file = config
            .clients
            .revocation_file
            .get_or_insert_with(|| config.state_dir.join("revoked.txt"))
            .clone();
        config.clients.revoked_from_file = read_revocation_file(&file)
            .map_err(|e| invalid("clients.revocation_file", e.to_string()))?;
        if let Some(group) = &config.admin.group {
            config.admin.gid = Some(
                admin::group_id(group)
                    .ok_or_else(|| invalid("admin.group", format!("no group named {group:?}")))?,
            );
        }
        config
            .validate()
            .map_err(|(field, message)| invalid(field, message))?;
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

    /// Every section's checks in a fixed order (`sections_are_checked_in_a_fixed_order`):
    /// the first error found is the one reported.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        self.listen.validate()?;
        self.identity.validate()?;
        self.clients.validate()?;
        self.network.validate(self.clients.pool_v4)?;
        groups::validate_groups(&self.groups, &self.clients)?;
        if let Some(radius) = &self.radius {
            radius.validate()?;
        }
        if let Some(web) = &self.web {
            web.validate()?;
        }
        self.metrics.validate()?;
        self.crypto.validate()?;
        self.tunnel.validate()?;
        self.limits.validate()
    }
}
