//! The control socket: who may connect and how many, one task per connection reading
//! newline-delimited JSON, requests handed to the agent's loop as [`ControlEvent`]s.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use super::{AgentError, io_err};
use crate::control::{FromHelper, MAX_LINE, ProfileText, Reply, Request, ToHelper};
use crate::helper::HelperLink;

/// Most control connections of unprivileged users at once, and of one user.
const MAX_CLIENTS: usize = 256;
const MAX_CLIENTS_PER_USER: usize = 8;
/// A control request must arrive within this time.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A helper's profile updates reach the agent at most this often.
const HELPER_UPDATE_GAP: Duration = Duration::from_secs(1);

/// The caller of a control request, as the kernel reports it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Caller {
    pub(super) uid: u32,
    pub(super) admin: bool,
}

/// What the control socket's tasks hand to the main loop.
pub(super) enum ControlEvent {
    Request {
        caller: Caller,
        request: Request,
        reply: oneshot::Sender<Reply>,
    },
    HelperUp {
        uid: u32,
        conn: u64,
        chain_pem: String,
        profiles: Vec<ProfileText>,
        link: Arc<HelperLink>,
        reply: oneshot::Sender<Reply>,
    },
    HelperProfiles {
        uid: u32,
        conn: u64,
        profiles: Vec<ProfileText>,
    },
    HelperGone {
        uid: u32,
        conn: u64,
    },
}

/// Binds the control socket: world-connectable (every request is checked against the
/// caller's credentials), a stale socket of a dead agent replaced.
pub(super) fn bind_socket(path: &std::path::Path) -> Result<UnixListener, AgentError> {
    netio::control::bind(path, 0o666).map_err(io_err(format!("binding {}", path.display())))
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Open control connections per uid: one user cannot take every slot (root and the admin group
/// are not counted).
#[derive(Debug, Default)]
struct ConnectionCounts(std::sync::Mutex<HashMap<u32, usize>>);

/// One counted connection; uncounted when dropped.
struct CountedConnection {
    counts: Arc<ConnectionCounts>,
    uid: u32,
}

impl ConnectionCounts {
    fn admit(self: &Arc<Self>, uid: u32) -> Option<CountedConnection> {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let total: usize = map.values().sum();
        let mine = map.entry(uid).or_insert(0);
        if *mine >= MAX_CLIENTS_PER_USER || total >= MAX_CLIENTS {
            return None;
        }
        *mine += 1;
        Some(CountedConnection {
            counts: self.clone(),
            uid,
        })
    }
}

impl Drop for CountedConnection {
    fn drop(&mut self) {
        let mut map = self
            .counts
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.uid);
            }
        }
    }
}

pub(super) async fn accept_loop(
    listener: UnixListener,
    control: mpsc::Sender<ControlEvent>,
    admin_group: Option<u32>,
) {
    let counts = Arc::new(ConnectionCounts::default());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let Ok(cred) = netio::peer::peer_credentials(&stream) else {
            continue;
        };
        let caller = Caller {
            uid: cred.uid,
            admin: cred.uid == 0 || admin_group.is_some_and(|g| cred.in_group(g)),
        };
        let counted = if caller.admin {
            None
        } else {
            match counts.admit(caller.uid) {
                Some(c) => Some(c),
                None => {
                    tracing::warn!(
                        uid = caller.uid,
                        "too many control connections from this user; refusing one"
                    );
                    continue;
                }
            }
        };
        let control = control.clone();
        tokio::spawn(async move {
            let _counted = counted;
            serve_client(stream, caller, control).await;
        });
    }
}

async fn write_json(
    writer: &mut (impl AsyncWriteExt + Unpin),
    value: &impl serde::Serialize,
) -> bool {
    let Ok(mut text) = serde_json::to_string(value) else {
        return false;
    };
    text.push('\n');
    writer.write_all(text.as_bytes()).await.is_ok()
}

/// Lines of at most [`MAX_LINE`] bytes. Cancel-safe: a line read in part when another branch of
/// a `select!` wins stays in the buffer and is completed by the next call.
struct LineReader<R> {
    reader: BufReader<R>,
    buf: Vec<u8>,
}

impl<R: tokio::io::AsyncRead + Unpin> LineReader<R> {
    fn new(read: R) -> Self {
        Self {
            reader: BufReader::new(read),
            buf: Vec::new(),
        }
    }

    /// The next line; `None` at the end, on an error or an overlong or non-UTF-8 line.
    async fn next(&mut self) -> Option<String> {
        loop {
            let room = (MAX_LINE + 1).saturating_sub(self.buf.len()) as u64;
            let mut limited = tokio::io::AsyncReadExt::take(&mut self.reader, room);
            let n = limited.read_until(b'\n', &mut self.buf).await.ok()?;
            if self.buf.len() > MAX_LINE {
                return None;
            }
            if self.buf.ends_with(b"\n") {
                let line = std::mem::take(&mut self.buf);
                return String::from_utf8(line).ok();
            }
            if n == 0 {
                return None;
            }
        }
    }
}

async fn serve_client(stream: UnixStream, caller: Caller, control: mpsc::Sender<ControlEvent>) {
    let (read, mut write) = stream.into_split();
    let mut reader = LineReader::new(read);
    // A client that says nothing is not kept waiting for: a request within this time, or the
    // connection goes (helpers register at once, then their connection lives on).
    while let Ok(Some(line)) = tokio::time::timeout(REQUEST_TIMEOUT, reader.next()).await {
        let request: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                if !write_json(&mut write, &Reply::error(format!("bad request: {e}"))).await {
                    return;
                }
                continue;
            }
        };
        if let Request::RegisterHelper {
            chain_pem,
            profiles,
        } = request
        {
            serve_helper(caller.uid, chain_pem, profiles, reader, write, control).await;
            return;
        }
        let (tx, rx) = oneshot::channel();
        if control
            .send(ControlEvent::Request {
                caller,
                request,
                reply: tx,
            })
            .await
            .is_err()
        {
            return;
        }
        let Ok(answer) = rx.await else { return };
        if !write_json(&mut write, &answer).await {
            return;
        }
    }
}

/// A key helper's connection: signature requests out, answers and profile updates in. Profile
/// updates reach the agent at most once per [`HELPER_UPDATE_GAP`] (the latest one wins).
async fn serve_helper(
    uid: u32,
    chain_pem: String,
    profiles: Vec<ProfileText>,
    mut reader: LineReader<tokio::net::unix::OwnedReadHalf>,
    mut write: tokio::net::unix::OwnedWriteHalf,
    control: mpsc::Sender<ControlEvent>,
) {
    let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let (to_helper, mut requests) = mpsc::unbounded_channel::<ToHelper>();
    let link = HelperLink::new(to_helper);
    let (tx, rx) = oneshot::channel();
    let up = ControlEvent::HelperUp {
        uid,
        conn,
        chain_pem,
        profiles,
        link: link.clone(),
        reply: tx,
    };
    if control.send(up).await.is_err() {
        return;
    }
    let Ok(answer) = rx.await else { return };
    let accepted = answer.ok;
    if !write_json(&mut write, &answer).await || !accepted {
        return;
    }
    let mut pending_update: Option<Vec<ProfileText>> = None;
    let mut next_update = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = link.closed() => break,
            request = requests.recv() => {
                let Some(request) = request else { break };
                if !write_json(&mut write, &request).await {
                    break;
                }
            }
            () = tokio::time::sleep_until(next_update), if pending_update.is_some() => {
                let Some(profiles) = pending_update.take() else { continue };
                next_update = tokio::time::Instant::now() + HELPER_UPDATE_GAP;
                let event = ControlEvent::HelperProfiles { uid, conn, profiles };
                if control.send(event).await.is_err() {
                    break;
                }
            }
            line = reader.next() => {
                let Some(line) = line else { break };
                match serde_json::from_str::<FromHelper>(&line) {
                    Ok(FromHelper::Signature { id, signature, error }) => {
                        use base64::Engine as _;
                        let result = match (signature, error) {
                            (Some(sig), _) => base64::engine::general_purpose::STANDARD
                                .decode(sig)
                                .map_err(|e| format!("bad signature encoding: {e}").into()),
                            (None, Some(e)) => Err(e.into()),
                            (None, None) => Err("no signature".into()),
                        };
                        link.answer(id, result);
                    }
                    Ok(FromHelper::Profiles { profiles }) => pending_update = Some(profiles),
                    Err(e) => tracing::debug!(uid, "helper sent something else: {e}"),
                }
            }
        }
    }
    link.fail_pending("the key helper is gone");
    let _ = control.send(ControlEvent::HelperGone { uid, conn }).await;
}
