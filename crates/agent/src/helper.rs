//! The per-user key helper, both ends. A user's private key never leaves that user: a small
//! helper (`aovpn user-helper`, started by the user's service manager at login) reads the
//! user's certificate, key and profiles with the user's own rights, registers on the agent's
//! socket, and signs what the agent asks for, ssh-agent style. The agent, running as root,
//! never opens a file in a user's home.
//!
//! - Agent side: [`HelperLink`] carries signature requests to the helper and their answers
//!   back; [`RemoteSigner`] is the [`Signer`] a user tunnel authenticates with.
//! - User side: [`run_user_helper`].

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ipsec_crypto::{CryptoError, KeyType, SignatureScheme, Signer, SigningKey};
use tokio::sync::mpsc;

use crate::control::{self, FromHelper, ProfileText, Request, ToHelper};

/// How long a tunnel waits for the helper's signature.
const SIGN_TIMEOUT: Duration = Duration::from_secs(5);

type Pending = HashMap<u64, std::sync::mpsc::SyncSender<Result<Vec<u8>, HelperSignError>>>;

/// Why a signature through a user's key helper did not come back: the helper's own refusal
/// (its message), or the helper gone or silent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HelperSignError(String);

impl From<&str> for HelperSignError {
    fn from(why: &str) -> Self {
        Self(why.to_owned())
    }
}

impl From<String> for HelperSignError {
    fn from(why: String) -> Self {
        Self(why)
    }
}

/// The agent's end of one user's helper connection.
#[derive(Debug)]
pub struct HelperLink {
    to_helper: mpsc::UnboundedSender<ToHelper>,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    /// Set when the agent drops this helper (a newer registration of the same user).
    close: tokio::sync::Notify,
}

impl HelperLink {
    /// A link that sends its requests into `to_helper` (written to the socket by the
    /// connection's task).
    pub fn new(to_helper: mpsc::UnboundedSender<ToHelper>) -> Arc<Self> {
        Arc::new(Self {
            to_helper,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            close: tokio::sync::Notify::new(),
        })
    }

    /// Ends the connection's task (it then reports the helper gone).
    pub fn close(&self) {
        self.close.notify_one();
    }

    /// Resolves once [`HelperLink::close`] was called.
    pub async fn closed(&self) {
        self.close.notified().await;
    }

    /// Fails every signature still waiting (the helper went away): no tunnel waits for the
    /// timeout.
    pub fn fail_pending(&self, why: &str) {
        let waiting: Vec<_> = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect();
        for (_, w) in waiting {
            let _ = w.try_send(Err(why.into()));
        }
    }

    /// The helper answered request `id`.
    pub fn answer(&self, id: u64, result: Result<Vec<u8>, HelperSignError>) {
        let waiter = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        if let Some(w) = waiter {
            let _ = w.try_send(result);
        }
    }

    /// Asks the helper for a signature and waits for it (up to [`SIGN_TIMEOUT`]).
    fn sign(&self, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>, HelperSignError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, tx);
        let request = ToHelper::Sign {
            id,
            scheme: scheme.name().to_owned(),
            data: B64.encode(message),
        };
        if self.to_helper.send(request).is_err() {
            self.answer(id, Err("the key helper is gone".into()));
        }
        let wait = || rx.recv_timeout(SIGN_TIMEOUT);
        // The IKE engine signs synchronously, inside a tunnel's task: free the runtime worker
        // while we wait, so that the task reading the helper's answer can run.
        let received = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        };
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        received.unwrap_or_else(|_| Err("the key helper did not answer in time".into()))
    }
}

/// Signs with a user's key through that user's helper.
#[derive(Debug)]
pub struct RemoteSigner {
    key_type: KeyType,
    link: Arc<HelperLink>,
}

impl RemoteSigner {
    /// For a certificate whose key the helper holds; `None` for a key type we cannot sign
    /// with.
    pub fn new(leaf: &pki::Certificate, link: Arc<HelperLink>) -> Option<Self> {
        let key_type = match leaf.key_type()? {
            pki::KeyType::EcdsaP256 => KeyType::EcdsaP256,
            pki::KeyType::EcdsaP384 => KeyType::EcdsaP384,
            pki::KeyType::Rsa(_) => KeyType::Rsa,
        };
        Some(Self { key_type, link })
    }
}

impl Signer for RemoteSigner {
    fn key_type(&self) -> KeyType {
        self.key_type
    }

    fn sign(&self, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if !self.supports(scheme) {
            return Err(CryptoError::SchemeKeyMismatch);
        }
        self.link
            .sign(scheme, message)
            .map_err(|e| CryptoError::ExternalSigner(e.to_string()))
    }
}

/// Where the user helper finds the user's things.
#[derive(Debug, Clone)]
pub struct UserHelperOptions {
    /// The agent's socket.
    pub socket: PathBuf,
    /// The user's aovpn directory (`$XDG_CONFIG_HOME/aovpn`): `profiles/` (the user profile
    /// store) and `user/certificate.pem` + `user/key.pem`.
    pub config_dir: PathBuf,
    /// How often the profile store is read again.
    pub rescan: Duration,
}

/// Why the helper cannot run.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Agent(String),
}

fn file_err(path: &Path) -> impl FnOnce(String) -> HelperError + '_ {
    move |message| HelperError::File {
        path: path.to_owned(),
        message,
    }
}

/// The user's certificate chain (PEM text) and key.
fn load_identity(dir: &Path) -> Result<(String, SigningKey), HelperError> {
    let cert_path = dir.join("user").join("certificate.pem");
    let key_path = dir.join("user").join("key.pem");
    let chain_pem =
        std::fs::read_to_string(&cert_path).map_err(|e| file_err(&cert_path)(e.to_string()))?;
    let chain = pki::load_certificates(chain_pem.as_bytes())
        .map_err(|e| file_err(&cert_path)(e.to_string()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| file_err(&cert_path)("no certificate".into()))?;
    let key_bytes = std::fs::read(&key_path).map_err(|e| file_err(&key_path)(e.to_string()))?;
    let key = pki::PrivateKey::load(&key_bytes).map_err(|e| file_err(&key_path)(e.to_string()))?;
    let spki = key
        .public_key_spki()
        .map_err(|e| file_err(&key_path)(e.to_string()))?;
    if spki != leaf.spki_der() {
        return Err(file_err(&key_path)(format!(
            "does not belong to the certificate in {}",
            cert_path.display()
        )));
    }
    let signing = SigningKey::from_pkcs8_der(key.pkcs8_der())
        .map_err(|e| file_err(&key_path)(e.to_string()))?;
    Ok((chain_pem, signing))
}

/// The user's profiles as stored (name and ProfileXML text), sorted by name.
fn load_profiles(dir: &Path) -> Vec<ProfileText> {
    let profiles_dir = dir.join("profiles");
    let store = crate::profile_store::Store::new(dir.join(".no-device-profiles"), profiles_dir);
    let mut out = Vec::new();
    match store.list() {
        Ok(list) => {
            for p in list {
                out.push(ProfileText {
                    name: p.name.clone(),
                    xml: p.parsed.profile_xml.clone(),
                });
                if out.len() >= control::MAX_USER_PROFILES {
                    tracing::warn!(
                        "more than {} profiles: the rest are ignored",
                        control::MAX_USER_PROFILES
                    );
                    break;
                }
            }
        }
        Err(e) => tracing::warn!("profile store: {e}"),
    }
    out
}

/// Runs the helper until the process is stopped: registers with the agent (again after the
/// agent restarts), answers signature requests, and hands over the profiles whenever they
/// change. Only a missing or mismatched certificate or key ends it with an error.
pub fn run_user_helper(options: &UserHelperOptions) -> Result<(), HelperError> {
    load_identity(&options.config_dir)?;
    let mut delay = Duration::from_millis(200);
    loop {
        match serve_once(options) {
            Ok(()) => delay = Duration::from_millis(200),
            Err(e @ HelperError::File { .. }) => return Err(e),
            Err(e) => tracing::warn!("{e}; retrying in {} ms", delay.as_millis()),
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Writes one JSON line; the writer is shared by the signing loop and the profile watcher.
fn send_line(writer: &Mutex<UnixStream>, value: &impl serde::Serialize) -> std::io::Result<()> {
    let mut text = serde_json::to_string(value).map_err(std::io::Error::other)?;
    text.push('\n');
    writer
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .write_all(text.as_bytes())
}

/// One registration, until the agent closes the connection.
fn serve_once(options: &UserHelperOptions) -> Result<(), HelperError> {
    let (chain_pem, key) = load_identity(&options.config_dir)?;
    let profiles = load_profiles(&options.config_dir);
    let agent_err =
        |e: std::io::Error| HelperError::Agent(format!("{}: {e}", options.socket.display()));
    let stream = UnixStream::connect(&options.socket).map_err(agent_err)?;
    let writer = Arc::new(Mutex::new(stream.try_clone().map_err(agent_err)?));
    send_line(
        &writer,
        &Request::RegisterHelper {
            chain_pem,
            profiles: profiles.clone(),
        },
    )
    .map_err(agent_err)?;
    let mut reader = BufReader::new(stream);
    let reply = control::read_line(&mut reader).map_err(agent_err)?;
    match reply.as_deref().map(serde_json::from_str::<control::Reply>) {
        Some(Ok(r)) if r.ok => tracing::info!("registered with the agent"),
        Some(Ok(r)) => return Err(HelperError::Agent(r.error.unwrap_or_default())),
        _ => return Err(HelperError::Agent("no answer to the registration".into())),
    }
    let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (writer, closed, dir, every) = (
            writer.clone(),
            closed.clone(),
            options.config_dir.clone(),
            options.rescan,
        );
        std::thread::spawn(move || {
            let mut known = profiles;
            while !closed.load(Ordering::Relaxed) {
                std::thread::sleep(every);
                let now = load_profiles(&dir);
                if now != known {
                    known = now;
                    tracing::info!(count = known.len(), "profiles changed: telling the agent");
                    let update = FromHelper::Profiles {
                        profiles: known.clone(),
                    };
                    if send_line(&writer, &update).is_err() {
                        return;
                    }
                }
            }
        })
    };
    let result = loop {
        let line = match control::read_line(&mut reader) {
            Ok(Some(line)) => line,
            Ok(None) => break Err(HelperError::Agent("the agent closed the connection".into())),
            Err(e) => break Err(agent_err(e)),
        };
        let Ok(ToHelper::Sign { id, scheme, data }) = serde_json::from_str(&line) else {
            tracing::warn!("unexpected message from the agent");
            continue;
        };
        let result = SignatureScheme::from_name(&scheme)
            .ok_or_else(|| format!("unknown scheme {scheme}"))
            .and_then(|s| {
                let data = B64.decode(data).map_err(|e| e.to_string())?;
                key.sign(s, &data).map_err(|e| e.to_string())
            });
        tracing::info!(%scheme, ok = result.is_ok(), "signed for the agent");
        let (signature, error) = match result {
            Ok(sig) => (Some(B64.encode(sig)), None),
            Err(e) => (None, Some(e)),
        };
        let answer = FromHelper::Signature {
            id,
            signature,
            error,
        };
        if let Err(e) = send_line(&writer, &answer) {
            break Err(agent_err(e));
        }
    };
    closed.store(true, Ordering::Relaxed);
    let _ = writer
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .shutdown(std::net::Shutdown::Both);
    let _ = watcher.join();
    result
}
