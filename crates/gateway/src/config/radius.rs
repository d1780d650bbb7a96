//! `[radius]`: the servers EAP is relayed to instead of the gateway's own EAP-TLS.

use std::path::PathBuf;

use serde::Deserialize;

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
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
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
