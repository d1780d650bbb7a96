//! The LockDown kept across reboots: saved whenever the agent installs or lifts one, put back
//! by `aovpn agent --restore-lockdown` before the network comes up.

use tokio::sync::mpsc;

/// The LockDown the agent last installed, in its state directory, for
/// [`restore_lockdown`] at the next boot (before the network and the agent are up).
pub const LOCKDOWN_STATE: &str = "lockdown.json";

/// Records `lockdown` (without the tunnel, which a reboot takes) or, with `None`, that there
/// is none.
fn save_lockdown(path: &std::path::Path, lockdown: Option<&netio::firewall::Lockdown>) {
    let result = match lockdown {
        Some(l) => {
            let boot = netio::firewall::Lockdown {
                tunnel_indexes: Vec::new(),
                ..l.clone()
            };
            serde_json::to_vec_pretty(&boot)
                .map_err(std::io::Error::other)
                .and_then(|json| netio::fs::replace_file(path, &json, 0o600, true))
        }
        None => match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    };
    if let Err(e) = result {
        tracing::warn!("{}: {e}", path.display());
    }
}

/// The task that installs or lifts LockDown (`Some`/`None`), one change after the other,
/// and saves what is in force for the next boot.
pub(super) fn lockdown_worker(
    state_dir: std::path::PathBuf,
) -> mpsc::UnboundedSender<Option<netio::firewall::Lockdown>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Option<netio::firewall::Lockdown>>();
    let saved = state_dir.join(LOCKDOWN_STATE);
    tokio::spawn(async move {
        while let Some(change) = rx.recv().await {
            let result = match &change {
                Some(l) => netio::firewall::install_lockdown(l).await,
                None => netio::firewall::remove(netio::firewall::LOCKDOWN_TABLE).await,
            };
            save_lockdown(&saved, change.as_ref());
            match (result, &change) {
                (Ok(()), Some(l)) => tracing::info!(
                    tunnel = ?l.tunnel_indexes,
                    "LockDown: no traffic outside the tunnel"
                ),
                (Ok(()), None) => {}
                (Err(e), Some(_)) => tracing::error!("LockDown could not be installed: {e}"),
                (Err(e), None) => tracing::debug!("no LockDown table removed: {e}"),
            }
        }
    });
    tx
}

/// Installs the LockDown saved in `state_dir` by the last agent, if any (`aovpn agent
/// --restore-lockdown`, run by aovpn-lockdown.service before the network comes up, so that a
/// locked machine is never open between boot and the agent's start). Returns whether one was
/// installed.
pub async fn restore_lockdown(state_dir: &std::path::Path) -> Result<bool, LockdownRestoreError> {
    let path = state_dir.join(LOCKDOWN_STATE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => return Err(LockdownRestoreError::Read { path, source }),
    };
    // A file that cannot be read back still says the machine was locked: lock it with the
    // defaults (IKE on 500/4500 for root) rather than leave it open until the agent starts.
    let (lockdown, unreadable) = match serde_json::from_slice(&bytes) {
        Ok(l) => (l, None),
        Err(e) => (
            netio::firewall::Lockdown {
                tunnel_indexes: Vec::new(),
                ike_ports: vec![500, 4500],
                daemon_uids: vec![0],
            },
            Some(e),
        ),
    };
    netio::firewall::install_lockdown(&lockdown)
        .await
        .map_err(LockdownRestoreError::Install)?;
    match unreadable {
        Some(source) => Err(LockdownRestoreError::Damaged { path, source }),
        None => Ok(true),
    }
}

/// Why the saved LockDown was not put back as saved.
#[derive(Debug, thiserror::Error)]
pub enum LockdownRestoreError {
    /// The saved state could not be read (other than being absent).
    #[error("{}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The saved state is damaged; the machine was locked with the defaults all the same.
    #[error("{}: {source}; locked with the defaults", path.display())]
    Damaged {
        path: std::path::PathBuf,
        source: serde_json::Error,
    },
    /// The firewall refused the rules.
    #[error(transparent)]
    Install(netio::firewall::FirewallError),
}
