//! The administration socket: what an Azure administrator has in the portal and PowerShell
//! (the connected point-to-site clients with their traffic, disconnecting one, revoking a
//! certificate), over one JSON line per request on a Unix socket that only root and the
//! configured group may use (`aovpn gateway sessions|disconnect|revoke|reload|drain`).
//!
//! The listener checks each caller's credentials as the kernel reports them and hands the
//! request to the gateway's loop, which owns the sessions; the reply comes back the same way.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use tunnel::{IkeSaRecord, Traffic};

/// How long a caller may take to send its request.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 16;

/// What an administrator asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Every connected client.
    Sessions,
    /// End the sessions of a client, named by identity (as `sessions` shows it) or by one of
    /// its virtual addresses: IKE Delete sent, its address kept for its next connection.
    Disconnect { target: String },
    /// Add a certificate's SHA-1 thumbprint to the revocation file; sessions whose chain it
    /// is on end at once.
    Revoke { thumbprint: String },
    /// Reread the configuration and the files it names (as SIGHUP).
    Reload,
    /// Send new clients that can follow a REDIRECT (RFC 5685) to another gateway of the
    /// service (an address or a name); with `disconnect`, end the sessions here too, so that
    /// their clients reconnect and are redirected; `to: None` serves new clients here again.
    Drain {
        to: Option<String>,
        #[serde(default)]
        disconnect: bool,
    },
}

/// The gateway's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<Session>,
}

impl Reply {
    pub fn done(message: impl Into<String>) -> Self {
        Reply {
            ok: true,
            message: Some(message.into()),
            ..Reply::default()
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Reply {
            ok: false,
            error: Some(message.into()),
            ..Reply::default()
        }
    }
}

/// One connected client, as the admin socket, the status file and the lab show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub identity: String,
    pub subject: String,
    /// SHA-1 of the client's certificate, as `revoke` takes it.
    pub thumbprint: String,
    /// Its policy group (`default` when no group matched).
    pub group: String,
    /// The first virtual address (what most tools want), and all of them.
    pub virtual_ip: Option<IpAddr>,
    pub virtual_ips: Vec<IpAddr>,
    /// Its outer address and port, as the gateway sees them (after any NAT).
    pub remote: SocketAddr,
    pub ike: String,
    pub esp: String,
    /// How the client authenticated: `certificate`, or `EAP-TLS (TLS 1.3, ...)`.
    pub auth: String,
    /// Unix times.
    pub connected_since: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rekey: Option<u64>,
    pub traffic: Traffic,
}

impl Session {
    /// The session of an authenticated IKE SA; `None` before it authenticates.
    pub fn of(record: &IkeSaRecord, traffic: Traffic) -> Option<Session> {
        let info = record.info.as_ref()?;
        let child = record.current_child();
        let virtual_ips = child
            .map(|c| c.info.virtual_ips.clone())
            .unwrap_or_default();
        Some(Session {
            identity: info.peer_id.to_string(),
            subject: info.peer_subject.clone(),
            thumbprint: info
                .peer_chain
                .thumbprints
                .first()
                .map(ToString::to_string)
                .unwrap_or_default(),
            group: info.group.clone().unwrap_or_else(|| "default".into()),
            virtual_ip: virtual_ips.first().copied(),
            virtual_ips,
            remote: info.remote,
            ike: info.algorithms.to_string(),
            esp: child
                .map(|c| tunnel::child::describe_esp(&c.info.algorithms))
                .unwrap_or_default(),
            auth: match &info.eap_tls {
                Some(relayed) if relayed == ikev2::EAP_RELAYED => format!("EAP ({relayed})"),
                Some(tls) => format!("EAP-TLS ({tls})"),
                None => "certificate".to_owned(),
            },
            connected_since: record.established_unix.unwrap_or(0),
            last_rekey: record.last_rekey_unix,
            traffic,
        })
    }

    /// Whether `target` names this session: its identity (as shown, or without the
    /// `fqdn:`/`email:`/`dn:` prefix) or one of its virtual addresses.
    pub fn is(&self, target: &str) -> bool {
        let target = target.trim();
        if let Ok(ip) = target.parse::<IpAddr>() {
            return self.virtual_ips.contains(&ip);
        }
        self.identity == target
            || self
                .identity
                .split_once(':')
                .is_some_and(|(_, bare)| bare.eq_ignore_ascii_case(target))
    }
}

/// A request with the way back to its caller.
#[derive(Debug)]
pub struct Command {
    pub request: Request,
    pub reply: oneshot::Sender<Reply>,
}

/// Binds the admin socket and serves it until the receiver of the returned channel is
/// dropped: anyone may connect, only root and members of `group` are served (the kernel's
/// record of the caller decides). Must be called inside a tokio runtime.
pub fn listen(
    socket: &Path,
    group: Option<u32>,
) -> std::io::Result<(mpsc::Receiver<Command>, tokio::task::JoinHandle<()>)> {
    let listener = netio::control::bind(socket, 0o666)?;
    let (tx, rx) = mpsc::channel(MAX_CONNECTIONS);
    let task = tokio::spawn(accept_loop(listener, tx, group));
    Ok((rx, task))
}

async fn accept_loop(listener: UnixListener, commands: mpsc::Sender<Command>, group: Option<u32>) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors, say: not a busy loop.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        if commands.is_closed() {
            return;
        }
        let commands = commands.clone();
        tokio::spawn(async move {
            let _slot = slot;
            serve(stream, commands, group).await;
        });
    }
}

/// One request and its reply; callers other than root and the group's members are told no.
async fn serve(
    stream: tokio::net::UnixStream,
    commands: mpsc::Sender<Command>,
    group: Option<u32>,
) {
    let allowed = netio::peer::peer_credentials(&stream)
        .is_ok_and(|c| c.uid == 0 || group.is_some_and(|g| c.in_group(g)));
    let (read, mut write) = stream.into_split();
    let reply = if allowed {
        let mut line = Vec::new();
        let mut limited = BufReader::new(read).take(netio::control::MAX_LINE as u64 + 1);
        match tokio::time::timeout(REQUEST_TIMEOUT, limited.read_until(b'\n', &mut line)).await {
            Ok(Ok(n)) if n > 0 && n <= netio::control::MAX_LINE => {
                match serde_json::from_slice::<Request>(&line) {
                    Ok(request) => ask(&commands, request).await,
                    Err(e) => Reply::error(format!("not a request: {e}")),
                }
            }
            _ => return,
        }
    } else {
        Reply::error("permission denied: only root and the admin group may use this socket")
    };
    if let Ok(mut text) = serde_json::to_string(&reply) {
        text.push('\n');
        let _ = write.write_all(text.as_bytes()).await;
    }
}

async fn ask(commands: &mpsc::Sender<Command>, request: Request) -> Reply {
    let (tx, rx) = oneshot::channel();
    if commands.send(Command { request, reply: tx }).await.is_err() {
        return Reply::error("the gateway is stopping");
    }
    rx.await
        .unwrap_or_else(|_| Reply::error("the gateway is stopping"))
}

/// Appends `thumbprint` to the revocation file (created 0644 when missing), unless it is
/// already there.
pub fn append_revocation(
    file: &Path,
    thumbprint: &pki::Thumbprint,
) -> Result<bool, crate::config::FileError> {
    let existing = crate::config::read_revocation_file(file)?;
    let io = |source| crate::config::FileError::Io {
        path: file.to_owned(),
        source,
    };
    if existing.contains(thumbprint) {
        return Ok(false);
    }
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .map_err(io)?;
    let at = tunnel::host::unix_now();
    writeln!(
        f,
        "{thumbprint}  # revoked at unix time {at} by aovpn gateway revoke"
    )
    .and_then(|()| f.sync_all())
    .map_err(io)?;
    Ok(true)
}

/// `aovpn gateway ...` side: one request to the socket.
pub fn call(socket: &Path, request: &Request) -> std::io::Result<Reply> {
    netio::control::call(
        socket,
        request,
        "the gateway's admin socket (is the gateway running, and are you root or in its admin group?)",
    )
}

/// Where the admin socket of the configuration at `config` is.
pub fn socket_of(config: &Path) -> Result<PathBuf, crate::config::ConfigError> {
    crate::config::GatewayConfig::load(config).map(|c| c.admin.socket)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_a_stable_wire_form() {
        let r = Request::Disconnect {
            target: "172.16.201.2".into(),
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"op":"disconnect","target":"172.16.201.2"}"#);
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), r);
        assert!(serde_json::from_str::<Request>(r#"{"op":"shutdown"}"#).is_err());
    }

    #[test]
    fn a_session_is_named_by_identity_or_address() {
        let s = Session {
            identity: "fqdn:client1.corp.example".into(),
            subject: "CN=client1.corp.example".into(),
            thumbprint: String::new(),
            group: "default".into(),
            virtual_ip: Some("172.16.201.2".parse().unwrap()),
            virtual_ips: vec!["172.16.201.2".parse().unwrap()],
            remote: "198.51.100.2:4500".parse().unwrap(),
            ike: String::new(),
            esp: String::new(),
            auth: String::new(),
            connected_since: 0,
            last_rekey: None,
            traffic: Traffic::default(),
        };
        assert!(s.is("fqdn:client1.corp.example"));
        assert!(s.is("client1.corp.example"));
        assert!(s.is("CLIENT1.corp.example"));
        assert!(s.is("172.16.201.2"));
        assert!(!s.is("172.16.201.3"));
        assert!(!s.is("client2.corp.example"));
    }

    #[test]
    fn revocations_are_appended_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("revoked.txt");
        let tp: pki::Thumbprint = "aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd"
            .parse()
            .unwrap();
        assert!(append_revocation(&file, &tp).unwrap());
        assert!(!append_revocation(&file, &tp).unwrap());
        assert_eq!(
            crate::config::read_revocation_file(&file).unwrap(),
            vec![tp]
        );
    }
}
