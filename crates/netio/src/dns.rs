//! DNS servers and domains for a tunnel interface.
//!
//! - With systemd-resolved running (its name owned on the system bus) the settings are per
//!   interface, over D-Bus ([`crate::resolved`]): SetLinkDNS, SetLinkDomains (routing-only
//!   domains flagged as such), SetLinkDefaultRoute; teardown is RevertLink, which drops exactly
//!   what was set on that link. Nothing outside the link changes.
//! - Otherwise, fallback: the caller names a resolv.conf path (the daemons use `/etc/resolv.conf`,
//!   tests a temp file). Its previous state (missing, a regular file with its bytes and mode, or
//!   a symlink with its target) is saved, a generated file replaces it atomically (rename), and
//!   teardown puts back exactly the previous state. Routing-only domains cannot be expressed in
//!   resolv.conf: the servers then answer every query, and the domains are added to `search`.
//!   A copy of the original is also kept on disk ([`backup_path`]) so [`recover_stale`] can
//!   undo the change at the next start after a crash (SIGKILL, power loss).

use std::ffi::OsString;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::resolved::Resolved;

/// systemd-resolved's varlink socket: present while resolved runs.
pub const RESOLVED_SOCKET: &str = "/run/systemd/resolve/io.systemd.Resolve";

/// Whether resolved's socket exists (a check that needs no bus and starts no thread).
pub fn resolved_socket_exists() -> bool {
    Path::new(RESOLVED_SOCKET).exists()
}

/// What to configure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsConfig {
    /// Name servers, in order of preference.
    pub servers: Vec<IpAddr>,
    /// Search domains (appended to short names, and routed to these servers).
    pub search_domains: Vec<String>,
    /// Routing-only domains: queries under them go to these servers, no search suffix.
    pub routing_domains: Vec<String>,
    /// systemd-resolved: whether names outside every routing domain may go to this link
    /// (true for a full tunnel, false for a split one); `None` leaves resolved's choice.
    pub default_route: Option<bool>,
}

/// Errors applying or restoring DNS settings.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// File or process I/O failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: io::Error,
    },
    /// systemd-resolved refused a setting or did not answer.
    #[error("systemd-resolved: {what}: {message}")]
    Resolved {
        /// What was being set.
        what: String,
        /// What went wrong.
        message: String,
    },
    /// A domain name contains whitespace or control characters, or starts with `~` or `-`.
    #[error("invalid domain name {0:?}")]
    InvalidDomain(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> DnsError {
    let what = what.into();
    move |source| DnsError::Io { what, source }
}

/// Where DNS settings go.
#[derive(Debug, Clone)]
pub enum DnsBackend {
    /// systemd-resolved, per interface.
    Resolved(Resolved),
    /// A resolv.conf-format file at this path.
    ResolvConf(PathBuf),
}

impl DnsBackend {
    /// resolved if it runs (owns its name on the system bus), otherwise the resolv.conf
    /// `fallback` path.
    pub fn detect(fallback: impl Into<PathBuf>) -> Self {
        match Resolved::connect() {
            Some(resolved) => DnsBackend::Resolved(resolved),
            None => DnsBackend::ResolvConf(fallback.into()),
        }
    }

    /// Applies `config` for interface `ifname`; the returned guard restores on
    /// [`DnsGuard::restore`].
    pub fn apply(&self, ifname: &str, config: &DnsConfig) -> Result<DnsGuard, DnsError> {
        validate(config)?;
        match self {
            DnsBackend::Resolved(resolved) => {
                resolved.apply(ifname, config)?;
                Ok(DnsGuard {
                    restore: Restore::Resolved {
                        ifname: ifname.to_string(),
                        resolved: resolved.clone(),
                    },
                })
            }
            DnsBackend::ResolvConf(path) => {
                // A crashed earlier run may have left its file; start from the real original.
                recover_stale(path)?;
                let previous = Previous::capture(path)?;
                previous.save_backup(path)?;
                let text = resolv_conf_text(ifname, config);
                replace_file(path, text.as_bytes(), previous.mode())?;
                Ok(DnsGuard {
                    restore: Restore::File {
                        path: path.clone(),
                        previous,
                    },
                })
            }
        }
    }
}

fn validate(config: &DnsConfig) -> Result<(), DnsError> {
    for d in config.search_domains.iter().chain(&config.routing_domains) {
        // Nor does a domain start with '-' ('~' is resolvectl's routing-domain marker).
        let bad = d.is_empty()
            || d.starts_with('~')
            || d.starts_with('-')
            || d.chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '#' || c == ';');
        if bad {
            return Err(DnsError::InvalidDomain(d.clone()));
        }
    }
    Ok(())
}

/// First line of every resolv.conf the fallback writes; marks the file as ours.
pub const GENERATED_MARKER: &str = "# Generated by aovpn";

/// On-disk copy of the previous state, next to the file: `<path>.aovpn-backup` (a regular file
/// or a symlink, as the original was; absent when there was no original).
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".aovpn-backup");
    path.with_file_name(name)
}

/// Undoes a fallback configuration left behind by a process that died before restoring
/// (call at daemon start). If `path` is one of our generated files, the backup is moved back
/// (or the file removed when there was no original). A backup next to a file that is not ours
/// (someone rewrote it since) is discarded. Returns whether `path` was restored.
pub fn recover_stale(path: &Path) -> Result<bool, DnsError> {
    let backup = backup_path(path);
    let has_backup = std::fs::symlink_metadata(&backup).is_ok();
    let ours = is_symlink_free_generated(path);
    match (ours, has_backup) {
        (true, true) => {
            std::fs::rename(&backup, path)
                .map_err(io_err(format!("restoring {} from backup", path.display())))?;
            Ok(true)
        }
        (true, false) => {
            std::fs::remove_file(path).map_err(io_err(format!("removing {}", path.display())))?;
            Ok(true)
        }
        (false, true) => {
            std::fs::remove_file(&backup)
                .map_err(io_err(format!("removing stale {}", backup.display())))?;
            Ok(false)
        }
        (false, false) => Ok(false),
    }
}

fn is_symlink_free_generated(path: &Path) -> bool {
    let Ok(md) = std::fs::symlink_metadata(path) else {
        return false;
    };
    if !md.file_type().is_file() {
        return false;
    }
    std::fs::read(path).is_ok_and(|b| b.starts_with(GENERATED_MARKER.as_bytes()))
}

/// The resolv.conf text the fallback writes.
pub fn resolv_conf_text(ifname: &str, config: &DnsConfig) -> String {
    let mut s = format!("{GENERATED_MARKER} for {ifname}; restored when the tunnel goes down.\n");
    for server in &config.servers {
        s.push_str(&format!("nameserver {server}\n"));
    }
    let domains: Vec<&str> = config
        .search_domains
        .iter()
        .chain(&config.routing_domains)
        .map(String::as_str)
        .collect();
    if !domains.is_empty() {
        s.push_str(&format!("search {}\n", domains.join(" ")));
    }
    s
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Previous {
    Missing,
    File { bytes: Vec<u8>, mode: u32 },
    Symlink(PathBuf),
}

impl Previous {
    fn capture(path: &Path) -> Result<Self, DnsError> {
        let what = format!("reading {}", path.display());
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Previous::Missing),
            Err(e) => Err(io_err(what)(e)),
            Ok(md) if md.file_type().is_symlink() => Ok(Previous::Symlink(
                std::fs::read_link(path).map_err(io_err(what))?,
            )),
            Ok(md) => Ok(Previous::File {
                bytes: std::fs::read(path).map_err(io_err(what))?,
                mode: md.permissions().mode() & 0o7777,
            }),
        }
    }

    /// Writes the crash-recovery copy (see [`backup_path`]).
    fn save_backup(&self, path: &Path) -> Result<(), DnsError> {
        let backup = backup_path(path);
        match self {
            Previous::Missing => Ok(()),
            Previous::File { bytes, mode } => replace_file(&backup, bytes, *mode),
            Previous::Symlink(target) => replace_with_symlink(&backup, target),
        }
    }

    fn mode(&self) -> u32 {
        match self {
            Previous::File { mode, .. } => *mode,
            Previous::Missing | Previous::Symlink(_) => 0o644,
        }
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".aovpn-{}", std::process::id()));
    path.with_file_name(name)
}

/// Writes `bytes` to a temp file beside `path` and renames it over `path` (replacing a symlink
/// itself, not its target).
fn replace_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), DnsError> {
    let tmp = temp_path(path);
    let what = format!("writing {}", tmp.display());
    std::fs::write(&tmp, bytes).map_err(io_err(what.clone()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(io_err(what))?;
    std::fs::rename(&tmp, path).map_err(io_err(format!("replacing {}", path.display())))
}

fn replace_with_symlink(path: &Path, target: &Path) -> Result<(), DnsError> {
    let tmp = temp_path(path);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .map_err(io_err(format!("creating symlink {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io_err(format!("replacing {}", path.display())))
}

fn remove_backup(path: &Path) -> Result<(), DnsError> {
    match std::fs::remove_file(backup_path(path)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(format!(
            "removing {}",
            backup_path(path).display()
        ))(e)),
        _ => Ok(()),
    }
}

#[derive(Debug)]
enum Restore {
    Resolved { ifname: String, resolved: Resolved },
    File { path: PathBuf, previous: Previous },
    Done,
}

/// Undoes what [`DnsBackend::apply`] did. Call [`restore`](Self::restore); dropping the guard
/// restores too (synchronously: a file rename or one D-Bus call), logging failures.
#[derive(Debug)]
pub struct DnsGuard {
    restore: Restore,
}

impl DnsGuard {
    /// Restores the previous DNS state.
    pub fn restore(mut self) -> Result<(), DnsError> {
        self.restore_inner()
    }

    fn restore_inner(&mut self) -> Result<(), DnsError> {
        match std::mem::replace(&mut self.restore, Restore::Done) {
            Restore::Done => Ok(()),
            Restore::Resolved { ifname, resolved } => resolved.revert(&ifname),
            // Someone else (a DHCP client, an administrator) wrote the file since: theirs is
            // newer than what we saved, so it stays.
            Restore::File { path, .. } if !is_symlink_free_generated(&path) => {
                tracing::info!(path = %path.display(), "changed by someone else since; left as it is");
                remove_backup(&path)
            }
            Restore::File { path, previous } => match previous {
                Previous::Missing => match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        Err(io_err(format!("removing {}", path.display()))(e))
                    }
                    _ => Ok(()),
                },
                Previous::File { bytes, mode } => {
                    replace_file(&path, &bytes, mode)?;
                    remove_backup(&path)
                }
                Previous::Symlink(target) => {
                    replace_with_symlink(&path, &target)?;
                    remove_backup(&path)
                }
            },
        }
    }
}

impl Drop for DnsGuard {
    fn drop(&mut self) {
        if let Err(e) = self.restore_inner() {
            tracing::warn!(error = %e, "restoring DNS settings failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DnsConfig {
        DnsConfig {
            servers: vec![
                "10.1.0.53".parse().unwrap(),
                "2001:db8::53".parse().unwrap(),
            ],
            search_domains: vec!["corp.example".into()],
            routing_domains: vec!["internal.example".into()],
            default_route: None,
        }
    }

    #[test]
    fn bad_domains_rejected() {
        let mut c = config();
        c.search_domains.push("evil\nnameserver 1.2.3.4".into());
        let mut dash = config();
        dash.search_domains = vec!["--help".into()];
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            DnsBackend::ResolvConf(d.path().join("r")).apply("x", &dash),
            Err(DnsError::InvalidDomain(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        let backend = DnsBackend::ResolvConf(dir.path().join("resolv.conf"));
        assert!(matches!(
            backend.apply("x", &c),
            Err(DnsError::InvalidDomain(_))
        ));
        assert!(!dir.path().join("resolv.conf").exists());
    }

    #[test]
    fn file_fallback_writes_and_restores_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        let original = b"nameserver 192.0.2.1\noptions edns0\n";
        std::fs::write(&path, original).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();

        let guard = DnsBackend::ResolvConf(path.clone())
            .apply("aovpn0", &config())
            .unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            written,
            "# Generated by aovpn for aovpn0; restored when the tunnel goes down.\n\
             nameserver 10.1.0.53\nnameserver 2001:db8::53\n\
             search corp.example internal.example\n"
        );
        guard.restore().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), original);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640);
        // No temp or backup files left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_file_rewritten_by_someone_else_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, "nameserver 192.0.2.1\n").unwrap();
        let guard = DnsBackend::ResolvConf(path.clone())
            .apply("aovpn0", &config())
            .unwrap();
        // A DHCP client moves to another network and writes its own file.
        std::fs::write(&path, "search corp.example\nnameserver 192.0.2.9\n").unwrap();
        guard.restore().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "search corp.example\nnameserver 192.0.2.9\n"
        );
        assert!(!backup_path(&path).exists());
    }

    #[test]
    fn file_fallback_restores_symlink_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("stub-resolv.conf");
        std::fs::write(&target, "nameserver 127.0.0.53\n").unwrap();
        let link = dir.path().join("resolv.conf");
        std::os::unix::fs::symlink(&target, &link).unwrap();

        let guard = DnsBackend::ResolvConf(link.clone())
            .apply("aovpn0", &config())
            .unwrap();
        assert!(
            !std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        // The symlink target was not written through.
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "nameserver 127.0.0.53\n"
        );
        drop(guard); // restore on drop
        assert_eq!(std::fs::read_link(&link).unwrap(), target);
        assert!(std::fs::symlink_metadata(backup_path(&link)).is_err());

        let missing = dir.path().join("absent.conf");
        let guard = DnsBackend::ResolvConf(missing.clone())
            .apply("aovpn0", &config())
            .unwrap();
        assert!(missing.exists());
        guard.restore().unwrap();
        assert!(!missing.exists());
    }

    #[test]
    fn crash_leftovers_are_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        let original = b"nameserver 192.0.2.1\n";
        std::fs::write(&path, original).unwrap();
        let guard = DnsBackend::ResolvConf(path.clone())
            .apply("aovpn0", &config())
            .unwrap();
        // Simulate a crash: the guard never runs.
        std::mem::forget(guard);
        assert!(recover_stale(&path).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), original);
        assert!(!backup_path(&path).exists());
        assert!(!recover_stale(&path).unwrap());

        // A crash with no original: the generated file is removed.
        let missing = dir.path().join("absent.conf");
        std::mem::forget(
            DnsBackend::ResolvConf(missing.clone())
                .apply("x", &config())
                .unwrap(),
        );
        // Applying again first recovers, so the guard still restores the true original.
        let guard = DnsBackend::ResolvConf(missing.clone())
            .apply("x", &config())
            .unwrap();
        guard.restore().unwrap();
        assert!(!missing.exists());

        // Someone replaced our file after the crash: keep theirs, drop the stale backup.
        std::mem::forget(
            DnsBackend::ResolvConf(path.clone())
                .apply("x", &config())
                .unwrap(),
        );
        std::fs::write(&path, b"nameserver 198.51.100.53\n").unwrap();
        assert!(!recover_stale(&path).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"nameserver 198.51.100.53\n");
        assert!(!backup_path(&path).exists());
    }
}
