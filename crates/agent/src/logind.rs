//! Login sessions and sleep from systemd-logind (org.freedesktop.login1 on the system bus):
//! which users are logged in (their user tunnels may run), and when the machine resumes (every
//! tunnel checks its path at once). Where logind is absent, the agent counts a user as logged in
//! while that user's key helper is connected (it runs in the user's session), and detects
//! resumes from the suspend-aware clock.

use std::collections::BTreeSet;

use futures::StreamExt;
use tokio::sync::mpsc;
use zbus::OwnedObjectPath;

#[zbus::proxy(
    default_service = "org.freedesktop.login1",
    default_path = "/org/freedesktop/login1",
    interface = "org.freedesktop.login1.Manager"
)]
trait Manager {
    /// (session id, uid, user name, seat id, object path)
    fn list_sessions(&self) -> zbus::Result<Vec<(String, u32, String, String, OwnedObjectPath)>>;

    #[zbus(signal)]
    fn session_new(&self, id: String, path: OwnedObjectPath) -> zbus::Result<()>;

    #[zbus(signal)]
    fn session_removed(&self, id: String, path: OwnedObjectPath) -> zbus::Result<()>;

    #[zbus(signal)]
    fn prepare_for_sleep(&self, start: bool) -> zbus::Result<()>;
}

/// What logind tells the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginEvent {
    /// The users with at least one session now (the whole set).
    Users(BTreeSet<u32>),
    /// The machine woke up.
    Resumed,
}

/// Why logind cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("logind: {0}")]
pub struct LogindError(#[from] zbus::Error);

/// Connects to logind, reports the current users at once, then every change and every resume
/// on `events` until the bus goes away (the returned task ends then).
pub async fn watch(
    events: mpsc::UnboundedSender<LoginEvent>,
) -> Result<tokio::task::JoinHandle<()>, LogindError> {
    let connection = zbus::Connection::system().await?;
    let manager = ManagerProxy::new(&connection).await?;
    let mut new = manager.receive_session_new().await?;
    let mut removed = manager.receive_session_removed().await?;
    let mut sleep = manager.receive_prepare_for_sleep().await?;
    let users = current_users(&manager).await?;
    let _ = events.send(LoginEvent::Users(users));
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                s = new.next() => if s.is_none() { break },
                s = removed.next() => if s.is_none() { break },
                s = sleep.next() => match s {
                    Some(signal) => {
                        if let Ok(args) = signal.args()
                            && !args.start
                        {
                            let _ = events.send(LoginEvent::Resumed);
                        }
                        continue;
                    }
                    None => break,
                },
            }
            match current_users(&manager).await {
                Ok(users) => {
                    if events.send(LoginEvent::Users(users)).is_err() {
                        break;
                    }
                }
                Err(e) => tracing::warn!("logind: listing sessions: {e}"),
            }
        }
        tracing::warn!("logind went away: sessions are no longer followed");
        // Keep connection alive until here.
        drop(connection);
    }))
}

async fn current_users(manager: &ManagerProxy<'_>) -> Result<BTreeSet<u32>, zbus::Error> {
    Ok(manager
        .list_sessions()
        .await?
        .into_iter()
        .map(|(_, uid, ..)| uid)
        .collect())
}
