//! How an operator reaches the gateway: `[admin]` (the administration socket), `[web]` (the
//! admin page) and `[metrics]` (Prometheus).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

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

/// A group by name or number.
pub(super) fn group_id(group: &str) -> Option<u32> {
    if let Ok(gid) = group.parse() {
        return Some(gid);
    }
    nix::unistd::Group::from_name(group)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

/// `[web]`: the admin page on a loopback address, for whoever has the token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// A loopback address and port, e.g. `127.0.0.1:9478` (reach it over an SSH tunnel).
    pub listen: SocketAddr,
    /// A file (mode 0600) whose first line is the token, at least 16 characters.
    pub token_file: PathBuf,
}

impl WebConfig {
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        // Plain HTTP with a token: loopback only (an SSH tunnel brings it to an admin).
        if !self.listen.ip().is_loopback() {
            return Err((
                "web.listen",
                format!("{} is not a loopback address", self.listen),
            ));
        }
        Ok(())
    }
}

/// Prometheus metrics over HTTP (`GET /metrics`); off unless `listen` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// A local address and port, e.g. `127.0.0.1:9477`.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

impl MetricsConfig {
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        // Unauthenticated: a scraper on this machine (or a proxy that authenticates).
        if let Some(addr) = self.listen
            && !addr.ip().is_loopback()
        {
            return Err((
                "metrics.listen",
                format!(
                    "{addr} is not a loopback address: the metrics have no authentication (put an authenticating proxy in front to serve them further)"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::config::tests::{GOOD, field_of, load};

    /// The admin socket has a default and is taken relative to the config; the admin group
    /// must exist; metrics are served on loopback only.
    #[test]
    fn admin_group_and_metrics_listen() {
        let c = load(GOOD).unwrap();
        assert_eq!(
            c.admin.socket,
            PathBuf::from("/run/aovpn-gateway/admin.sock")
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
}
