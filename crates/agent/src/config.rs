//! Where the agent keeps and finds things, and `agent.toml`.
//!
//! The system store (root-only writes), by default `/etc/aovpn`:
//!
//! ```text
//! /etc/aovpn/agent.toml                 optional settings (below)
//! /etc/aovpn/profiles/NAME/profile.xml  device-scope profiles (`aovpn profile add --system`)
//! /etc/aovpn/machine/certificate.pem    the machine certificate (then any intermediates)
//! /etc/aovpn/machine/key.pem            its private key (0600, root)
//! /etc/aovpn/ca/*.pem, *.crt            roots the gateway's certificate must chain to
//! /etc/aovpn/dns-update.key             TSIG key for RegisterDNS (BIND syntax, 0600, root)
//! ```
//!
//! ```toml
//! admin_group = "aovpn"      # members control every tunnel (a name or a gid)
//! sessions = "auto"          # who is logged in: "logind", "helpers" or "auto" (logind if it answers)
//! backoff_initial_secs = 1   # first wait after a failed round of servers
//! backoff_cap_secs = 60      # longest wait between rounds
//! boot_wait_secs = 10        # readiness waits this long for the device tunnel at most
//!
//! [register_dns]             # profiles with RegisterDNS (each setting optional)
//! host_name = "dev1"         # default: the machine's host name
//! zone = "corp.example"      # default: the profile's DNSSuffix, else the gateway's domain
//! server = "10.1.0.53"       # default: the first DNS server the gateway pushes
//! ttl_secs = 1200
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::supervisor::Backoff;

/// Longest boot wait for the device tunnel (the unit's start timeout is 30 s).
pub const MAX_BOOT_WAIT_SECS: u64 = 25;

/// Who counts as logged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SessionSource {
    /// logind if the system bus answers, else the helpers.
    #[default]
    Auto,
    /// systemd-logind's sessions.
    Logind,
    /// A user is logged in while their key helper is connected (no logind).
    Helpers,
}

/// Why the agent cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{path}: {field}: {message}")]
    Field {
        path: PathBuf,
        field: &'static str,
        message: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentToml {
    admin_group: Option<String>,
    sessions: Option<SessionSource>,
    backoff_initial_secs: Option<u64>,
    backoff_cap_secs: Option<u64>,
    boot_wait_secs: Option<u64>,
    tunnel_mtu: Option<u16>,
    register_dns: Option<RegisterDnsToml>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterDnsToml {
    host_name: Option<String>,
    zone: Option<String>,
    server: Option<std::net::IpAddr>,
    ttl_secs: Option<u32>,
}

/// Everything the agent runs with.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The system store (see the module docs).
    pub config_dir: PathBuf,
    /// The control socket.
    pub socket: PathBuf,
    /// Runtime state (the record of what tunnels installed); cleared at boot.
    pub run_dir: PathBuf,
    /// Persistent state (which profiles users disconnected).
    pub state_dir: PathBuf,
    /// resolv.conf for DNS when systemd-resolved does not run.
    pub resolv_conf: PathBuf,
    pub sessions: SessionSource,
    /// Group whose members may control every tunnel.
    pub admin_group: Option<u32>,
    pub backoff: Backoff,
    pub boot_wait: Duration,
    /// The MTU of every tunnel interface (`aovpn doctor` says when the path needs a smaller
    /// one).
    pub tunnel_mtu: u16,
    /// How profiles with RegisterDNS register the machine's name.
    pub register_dns: crate::register_dns::Settings,
}

impl AgentConfig {
    /// The defaults for `config_dir`, overridden by its `agent.toml` if there is one.
    pub fn load(config_dir: &Path) -> Result<Self, ConfigError> {
        let path = config_dir.join("agent.toml");
        let file: AgentToml = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| ConfigError::File {
                path: path.clone(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => AgentToml::default(),
            Err(e) => {
                return Err(ConfigError::File {
                    path,
                    message: e.to_string(),
                });
            }
        };
        let field = |field, message: String| ConfigError::Field {
            path: path.clone(),
            field,
            message,
        };
        let admin_group = match &file.admin_group {
            None => None,
            Some(g) => Some(
                group_id(g).ok_or_else(|| field("admin_group", format!("no group named {g:?}")))?,
            ),
        };
        let initial = file.backoff_initial_secs.unwrap_or(1);
        let cap = file.backoff_cap_secs.unwrap_or(60);
        if initial == 0 || cap < initial {
            return Err(field(
                "backoff_cap_secs",
                format!("must be at least backoff_initial_secs ({initial}), and that at least 1"),
            ));
        }
        let boot_wait = file.boot_wait_secs.unwrap_or(10);
        if boot_wait > MAX_BOOT_WAIT_SECS {
            return Err(field(
                "boot_wait_secs",
                format!(
                    "at most {MAX_BOOT_WAIT_SECS} (aovpn-agent.service gives the agent 30 s to start)"
                ),
            ));
        }
        let tunnel_mtu = file.tunnel_mtu.unwrap_or(crate::connection::TUNNEL_MTU);
        if !(crate::connection::MIN_TUNNEL_MTU..=9000).contains(&tunnel_mtu) {
            return Err(field(
                "tunnel_mtu",
                format!(
                    "{tunnel_mtu} is outside {}..=9000 (IPv6 inside the tunnel needs 1280)",
                    crate::connection::MIN_TUNNEL_MTU
                ),
            ));
        }
        let rd = file.register_dns.unwrap_or_default();
        if let Some(host) = &rd.host_name
            && crate::register_dns::Registration::new(
                host,
                "example",
                vec![std::net::Ipv4Addr::LOCALHOST.into()],
                b"",
                1,
            )
            .is_err()
        {
            return Err(field(
                "register_dns.host_name",
                format!("{host:?} is not a DNS label"),
            ));
        }
        let ttl = rd.ttl_secs.unwrap_or(crate::register_dns::DEFAULT_TTL);
        if ttl == 0 {
            return Err(field("register_dns.ttl_secs", "must be at least 1".into()));
        }
        Ok(Self {
            register_dns: crate::register_dns::Settings {
                key_file: config_dir.join(crate::register_dns::KEY_FILE),
                host_name: rd.host_name,
                zone: rd.zone,
                server: rd.server,
                ttl,
            },
            config_dir: config_dir.to_owned(),
            socket: PathBuf::from(crate::control::DEFAULT_SOCKET),
            run_dir: PathBuf::from("/run/aovpn"),
            state_dir: PathBuf::from("/var/lib/aovpn"),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            sessions: file.sessions.unwrap_or_default(),
            admin_group,
            backoff: Backoff {
                initial: Duration::from_secs(initial),
                cap: Duration::from_secs(cap),
            },
            boot_wait: Duration::from_secs(boot_wait),
            tunnel_mtu,
        })
    }

    /// Device-scope profiles.
    pub fn profiles_dir(&self) -> PathBuf {
        self.config_dir.join("profiles")
    }

    /// The machine certificate (chain) and key.
    pub fn machine_files(&self) -> (PathBuf, PathBuf) {
        let dir = self.config_dir.join("machine");
        (dir.join("certificate.pem"), dir.join("key.pem"))
    }

    /// The trusted roots: every `.pem` and `.crt` file in `ca/`, in name order.
    pub fn ca_files(&self) -> Vec<PathBuf> {
        ca_files_in(&self.config_dir.join("ca"))
    }
}

/// The root files the agent reads in a `ca/` directory: `.pem` and `.crt`, in name order.
pub fn ca_files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "pem" || x == "crt"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// A group by name or number.
fn group_id(group: &str) -> Option<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Some(gid);
    }
    nix::unistd::Group::from_name(group)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

/// A user's name for display, or `uid N` without a passwd entry.
pub fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid {uid}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_agent_toml() {
        let dir = tempfile::tempdir().unwrap();
        let c = AgentConfig::load(dir.path()).unwrap();
        assert_eq!(c.sessions, SessionSource::Auto);
        assert_eq!(c.backoff, Backoff::default());
        assert_eq!(c.admin_group, None);
        assert_eq!(c.profiles_dir(), dir.path().join("profiles"));
        assert!(c.ca_files().is_empty());
        assert_eq!(c.tunnel_mtu, crate::connection::TUNNEL_MTU);
    }

    #[test]
    fn settings_and_errors_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("agent.toml");
        std::fs::write(
            &toml,
            "admin_group = \"4242\"\nsessions = \"helpers\"\nbackoff_cap_secs = 8\n",
        )
        .unwrap();
        let c = AgentConfig::load(dir.path()).unwrap();
        assert_eq!(c.admin_group, Some(4242));
        assert_eq!(c.sessions, SessionSource::Helpers);
        assert_eq!(c.backoff.cap, Duration::from_secs(8));

        std::fs::write(&toml, "backoff_cap_secs = 0\n").unwrap();
        let e = AgentConfig::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("backoff_cap_secs"), "{e}");
        std::fs::write(&toml, "admin_group = \"no-such-group-aovpn\"\n").unwrap();
        let e = AgentConfig::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("admin_group"), "{e}");
        std::fs::write(&toml, "boot_wait_secs = 60\n").unwrap();
        let e = AgentConfig::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("boot_wait_secs"), "{e}");
        std::fs::write(&toml, "tunnel_mtu = 1218\n").unwrap();
        assert_eq!(AgentConfig::load(dir.path()).unwrap().tunnel_mtu, 1218);
        std::fs::write(&toml, "tunnel_mtu = 500\n").unwrap();
        let e = AgentConfig::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("tunnel_mtu"), "{e}");
        std::fs::write(&toml, "[register_dns]\nhost_name = \"a b\"\n").unwrap();
        let e = AgentConfig::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("register_dns.host_name"), "{e}");
        std::fs::write(
            &toml,
            "[register_dns]\nhost_name = \"dev1\"\nzone = \"corp.example\"\nserver = \"10.1.0.53\"\n",
        )
        .unwrap();
        let c = AgentConfig::load(dir.path()).unwrap();
        assert_eq!(c.register_dns.host_name.as_deref(), Some("dev1"));
        assert_eq!(c.register_dns.server, Some("10.1.0.53".parse().unwrap()));
        assert_eq!(c.register_dns.key_file, dir.path().join("dns-update.key"));
        std::fs::write(&toml, "sessionz = \"helpers\"\n").unwrap();
        let e = AgentConfig::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("sessionz"), "{e}");
    }
}
