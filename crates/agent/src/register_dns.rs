//! RegisterDNS: while a tunnel with it is up, the machine's name in the corporate zone points
//! at its tunnel addresses, so that administrators reach the device by name ("manage out").
//!
//! Done as Windows does on a domain network, with the standard protocol BIND, Windows DNS and
//! PowerDNS accept: an RFC 2136 UPDATE signed with TSIG (RFC 8945, the key from a root-only
//! file in BIND's `key` syntax, what `tsig-keygen` writes), sent through the tunnel from the
//! tunnel address to the gateway's DNS server (or a configured one). Messages and TSIG come
//! from hickory-proto.
//!
//! Ownership: next to the addresses, the name carries a TXT record `aovpn-owner=…` derived
//! from this machine, like ISC DHCP's interim records (RFC 4703 in spirit). A name nobody
//! holds is claimed (prerequisite: name not in use); a name holding our TXT is updated in
//! place (prerequisite: our TXT, exactly); a name held otherwise is left alone and reported.
//! The records go on a clean disconnect (prerequisite: still ours). Failures are retried with
//! backoff and shown in `aovpn status`; the tunnel never waits for DNS.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm, TsigError};
use hickory_proto::rr::rdata::{A, AAAA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigner};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The key file in the system store.
pub const KEY_FILE: &str = "dns-update.key";

/// What Windows gives dynamically registered names.
pub const DEFAULT_TTL: u32 = 1200;

/// Allowed clock difference between us and the DNS server (RFC 8945 recommends 300 s).
const TSIG_FUDGE: u16 = 300;

/// One UPDATE: sent this many times, each waiting this long for the answer.
const TRIES: u32 = 3;
const ANSWER_WAIT: Duration = Duration::from_secs(2);

/// Waits between failed rounds.
const RETRY_FIRST: Duration = Duration::from_secs(5);
const RETRY_CAP: Duration = Duration::from_secs(300);

/// How the agent registers names (`[register_dns]` in agent.toml); each unset field has a
/// default taken from the machine or the tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The TSIG key (BIND `key` syntax), readable by root only.
    pub key_file: PathBuf,
    /// Default: this machine's host name (its first label).
    pub host_name: Option<String>,
    /// Default: the profile's first DNSSuffix, else the gateway's first internal domain.
    pub zone: Option<String>,
    /// Default: the first DNS server the gateway pushes (of a family the tunnel has).
    pub server: Option<IpAddr>,
    pub ttl: u32,
}

/// Why a name is not (or no longer) registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("{path}: {message}")]
    Key { path: String, message: String },
    #[error("{0}")]
    Setup(String),
    #[error("no answer from {0}")]
    NoAnswer(SocketAddr),
    #[error("{name} is held by another host (its records carry no aovpn-owner record of ours)")]
    NameTaken { name: String },
    #[error("{server} refused the update: {reason}")]
    Refused { server: SocketAddr, reason: String },
    #[error("{server}: {reason}")]
    BadAnswer { server: SocketAddr, reason: String },
}

/// What `aovpn status` shows about a tunnel's name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationStatus {
    /// The fully qualified name (without the trailing dot).
    pub name: String,
    /// The server the updates go to.
    pub server: Option<IpAddr>,
    /// `registering`, `registered` or `failed`.
    pub state: String,
    /// Why it failed, and when the next try is.
    pub detail: Option<String>,
}

/// A TSIG key.
pub struct TsigKey {
    name: Name,
    algorithm: TsigAlgorithm,
    secret: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl TsigKey {
    fn signer(&self) -> Result<TSigner, RegisterError> {
        // hickory keeps its own copy of the secret for as long as the signer lives (one update).
        TSigner::new(
            self.secret.to_vec(),
            self.algorithm.clone(),
            self.name.clone(),
            TSIG_FUDGE,
        )
        .map_err(|e| RegisterError::Setup(format!("TSIG: {e}")))
    }
}

/// A TSIG key file that is not a key we can use; the message says what is wrong (the blame is
/// the key file's: local configuration).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeySyntaxError(String);

impl From<&str> for KeySyntaxError {
    fn from(why: &str) -> Self {
        Self(why.to_owned())
    }
}

/// A RegisterDNS name that cannot be registered (a host name that is no DNS label, a bad zone,
/// a tunnel without an address); the message says which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRegistration(String);

impl From<&str> for InvalidRegistration {
    fn from(why: &str) -> Self {
        Self(why.to_owned())
    }
}

/// A key in BIND's syntax (what `tsig-keygen NAME` prints):
///
/// ```text
/// key "dev1-update" {
///     algorithm hmac-sha256;
///     secret "base64…";
/// };
/// ```
pub fn parse_key(text: &str) -> Result<TsigKey, KeySyntaxError> {
    let tokens = Zeroizing::new(key_tokens(text)?);
    let mut it = tokens.iter().map(String::as_str).peekable();
    if it.next() != Some("key") {
        return Err("expected `key \"NAME\" { algorithm …; secret \"…\"; };`".into());
    }
    let name = it.next().ok_or("the key has no name")?;
    let mut name =
        Name::from_ascii(name).map_err(|e| KeySyntaxError(format!("key name {name:?}: {e}")))?;
    name.set_fqdn(true);
    if it.next() != Some("{") {
        return Err("expected `{` after the key name".into());
    }
    let (mut algorithm, mut secret) = (None, None);
    loop {
        match it.next() {
            Some("}") => break,
            Some("algorithm") => {
                let a = it.next().ok_or("algorithm: missing value")?;
                algorithm = Some(match a.to_ascii_lowercase().as_str() {
                    "hmac-sha256" => TsigAlgorithm::HmacSha256,
                    "hmac-sha384" => TsigAlgorithm::HmacSha384,
                    "hmac-sha512" => TsigAlgorithm::HmacSha512,
                    other => {
                        return Err(KeySyntaxError(format!(
                            "algorithm: {other:?} is not supported (hmac-sha256, hmac-sha384 or hmac-sha512)"
                        )));
                    }
                });
            }
            Some("secret") => {
                let s = it.next().ok_or("secret: missing value")?;
                use base64::Engine;
                let bytes = Zeroizing::new(
                    base64::engine::general_purpose::STANDARD
                        .decode(s)
                        .map_err(|_| KeySyntaxError::from("secret: not base64"))?,
                );
                if bytes.len() < 16 {
                    return Err("secret: shorter than 128 bits".into());
                }
                secret = Some(bytes);
            }
            Some(other) => return Err(KeySyntaxError(format!("unexpected {other:?} in the key"))),
            None => return Err("the key is not closed with `};`".into()),
        }
        if it.next() != Some(";") {
            return Err("expected `;` after each statement".into());
        }
    }
    Ok(TsigKey {
        name,
        algorithm: algorithm.ok_or("the key names no algorithm")?,
        secret: secret.ok_or("the key has no secret")?,
    })
}

/// Words, quoted strings and `{ } ;`, without comments (`#`, `//`, `/* */`).
fn key_tokens(text: &str) -> Result<Vec<String>, KeySyntaxError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                loop {
                    let c = chars.next().ok_or("unterminated comment")?;
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            '{' | '}' | ';' => tokens.push(c.to_string()),
            '"' => {
                let mut s = String::new();
                loop {
                    match chars.next().ok_or("unterminated string")? {
                        '"' => break,
                        c => s.push(c),
                    }
                }
                tokens.push(s);
            }
            c => {
                let mut s = c.to_string();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || "{};\"#".contains(c) {
                        break;
                    }
                    s.push(c);
                    chars.next();
                }
                tokens.push(s);
            }
        }
    }
    Ok(tokens)
}

/// The key from its file, which only its owner may read (it lets anyone holding it rewrite
/// names in the zone).
pub fn load_key(path: &Path) -> Result<TsigKey, RegisterError> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let key_error = |message: String| RegisterError::Key {
        path: path.display().to_string(),
        message,
    };
    // The file itself, not what a symlink points at; checked on the open file.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| key_error(e.to_string()))?;
    let meta = file.metadata().map_err(|e| key_error(e.to_string()))?;
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(key_error(format!(
            "owned by uid {}, not by the agent's user: chown it",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(key_error(format!(
            "readable by others (mode {:o}): chmod 600 it",
            meta.mode() & 0o777
        )));
    }
    if meta.len() > 4096 {
        return Err(key_error("larger than a key file".into()));
    }
    let mut text = Zeroizing::new(String::with_capacity(4096));
    file.read_to_string(&mut text)
        .map_err(|e| key_error(e.to_string()))?;
    parse_key(&text).map_err(|e| key_error(e.0))
}

/// What one tunnel registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub name: Name,
    pub zone: Name,
    pub addresses: Vec<IpAddr>,
    /// The TXT value marking the name as ours.
    pub owner: String,
    pub ttl: u32,
}

impl Registration {
    /// `host` under `zone`; the owner mark is derived from `machine` (stable per machine) and
    /// the name, so it tells nothing about the machine to whoever reads the zone.
    pub fn new(
        host: &str,
        zone: &str,
        addresses: Vec<IpAddr>,
        machine: &[u8],
        ttl: u32,
    ) -> Result<Self, InvalidRegistration> {
        let label = host
            .split('.')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let valid_label = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid_label {
            return Err(InvalidRegistration(format!(
                "host name {host:?} is not a DNS label"
            )));
        }
        let zone_name = Name::from_ascii(zone.trim_end_matches('.'))
            .map_err(|e| InvalidRegistration(format!("zone {zone:?}: {e}")))?;
        if zone_name.num_labels() == 0 {
            return Err("the zone is the root".into());
        }
        let mut zone_name = zone_name;
        zone_name.set_fqdn(true);
        let name = Name::from_ascii(&label)
            .and_then(|n| n.append_domain(&zone_name))
            .map_err(|e| InvalidRegistration(format!("{label}.{zone}: {e}")))?;
        if addresses.is_empty() {
            return Err("the tunnel has no address".into());
        }
        let mut hash = Sha256::new();
        hash.update(b"aovpn register-dns\0");
        hash.update(machine);
        hash.update(b"\0");
        hash.update(name.to_ascii().to_ascii_lowercase().as_bytes());
        let digest = hash.finalize();
        let owner = format!(
            "aovpn-owner={}",
            digest[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        Ok(Self {
            name,
            zone: zone_name,
            addresses,
            owner,
            ttl,
        })
    }

    /// The name as shown (no trailing dot).
    pub fn display_name(&self) -> String {
        self.name.to_ascii().trim_end_matches('.').to_owned()
    }
}

/// The three updates, each with its RFC 2136 prerequisite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Name not in use: add the addresses and our owner mark.
    Claim,
    /// Our owner mark, exactly: replace the addresses.
    Replace,
    /// Our owner mark: delete the addresses and the mark (other records of the name stay).
    Remove,
}

fn record(name: &Name, ttl: u32, class: DNSClass, data: RData) -> Record {
    let mut r = Record::from_rdata(name.clone(), ttl, data);
    r.dns_class = class;
    r
}

/// An empty-RDATA record: a prerequisite or a deletion, by class (RFC 2136 2.4, 2.5).
fn empty(name: &Name, class: DNSClass, rr_type: RecordType) -> Record {
    let mut r = Record::update0(name.clone(), 0, rr_type);
    r.dns_class = class;
    r
}

/// The UPDATE for `step` (unsigned).
pub fn update(reg: &Registration, step: Step, id: u16) -> Message {
    let mut m = Message::new(id, MessageType::Query, OpCode::Update);
    let mut zone = Query::new();
    zone.set_name(reg.zone.clone())
        .set_query_class(DNSClass::IN)
        .set_query_type(RecordType::SOA);
    // Update sections: zone = question, prerequisites = answers, updates = authorities.
    m.add_query(zone);
    let ours = record(
        &reg.name,
        0,
        DNSClass::IN,
        RData::TXT(TXT::new(vec![reg.owner.clone()])),
    );
    let addresses = reg.addresses.iter().map(|ip| {
        let data = match ip {
            IpAddr::V4(v4) => RData::A(A(*v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
        };
        record(&reg.name, reg.ttl, DNSClass::IN, data)
    });
    match step {
        Step::Claim => {
            m.add_answer(empty(&reg.name, DNSClass::NONE, RecordType::ANY));
            m.add_authorities(addresses);
            let mut mark = ours;
            mark.ttl = reg.ttl;
            m.add_authority(mark);
        }
        Step::Replace => {
            m.add_answer(ours);
            m.add_authority(empty(&reg.name, DNSClass::ANY, RecordType::A));
            m.add_authority(empty(&reg.name, DNSClass::ANY, RecordType::AAAA));
            m.add_authorities(addresses);
        }
        Step::Remove => {
            let mut mark = ours.clone();
            // RFC 2136 2.5.4: class NONE, TTL 0 deletes exactly this record.
            mark.dns_class = DNSClass::NONE;
            m.add_answer(ours);
            m.add_authority(empty(&reg.name, DNSClass::ANY, RecordType::A));
            m.add_authority(empty(&reg.name, DNSClass::ANY, RecordType::AAAA));
            m.add_authority(mark);
        }
    }
    m
}

/// What the server said to one update (already checked to be signed with our key when it
/// is a success or a failed prerequisite).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Done,
    /// Claim: the name exists.
    NameInUse,
    /// Replace or Remove: the name does not carry our owner mark.
    NotOurs,
    Refused(String),
}

/// The meaning of a response code for `step`.
pub fn answer(step: Step, code: ResponseCode, tsig_error: Option<&TsigError>) -> Answer {
    match (step, code) {
        (_, ResponseCode::NoError) => Answer::Done,
        (Step::Claim, ResponseCode::YXDomain) => Answer::NameInUse,
        (Step::Replace | Step::Remove, ResponseCode::NXRRSet) => Answer::NotOurs,
        (_, ResponseCode::NotAuth) => Answer::Refused(match tsig_error {
            Some(TsigError::BadKey) => "our TSIG key is not known to it (BADKEY)".into(),
            Some(TsigError::BadSig) => "our TSIG signature does not match its key (BADSIG)".into(),
            Some(TsigError::BadTime) => {
                "our clock is too far from its clock for TSIG (BADTIME)".into()
            }
            _ => "it is not authoritative for the zone, or our key may not update it (NOTAUTH)"
                .into(),
        }),
        (_, ResponseCode::Refused) => {
            Answer::Refused("our key may not update this name (REFUSED)".into())
        }
        (_, ResponseCode::NotZone) => {
            Answer::Refused("the name is not in the zone (NOTZONE)".into())
        }
        (_, code) => Answer::Refused(format!("{code}")),
    }
}

/// Where the updates go, and from which tunnel.
#[derive(Debug, Clone)]
pub struct Target {
    pub server: SocketAddr,
    /// The tunnel address of the server's family.
    pub source: IpAddr,
    /// The tunnel interface: the update never leaves by another one.
    pub interface: String,
}

/// Sends one signed update and returns what the server said.
async fn exchange(
    target: &Target,
    key: &TsigKey,
    reg: &Registration,
    step: Step,
) -> Result<Answer, RegisterError> {
    let server = target.server;
    let setup = |what: &str, e: std::io::Error| RegisterError::Setup(format!("{what}: {e}"));
    let socket = tokio::net::UdpSocket::bind(SocketAddr::new(target.source, 0))
        .await
        .map_err(|e| setup("socket", e))?;
    socket
        .bind_device(Some(target.interface.as_bytes()))
        .map_err(|e| setup("binding to the tunnel interface", e))?;
    socket
        .connect(server)
        .await
        .map_err(|e| setup("socket", e))?;
    let mut message = update(reg, step, rand_id());
    let mut verifier = message
        .finalize(&key.signer()?, tunnel::host::unix_now())
        .map_err(|e| RegisterError::Setup(format!("TSIG: {e}")))?
        .ok_or_else(|| RegisterError::Setup("TSIG: no verifier".into()))?;
    let bytes = message
        .to_vec()
        .map_err(|e| RegisterError::Setup(format!("encoding the update: {e}")))?;
    let mut buf = vec![0u8; 4096];
    // An answer that is not provably the server's (unsigned, or failing the TSIG check) does
    // not end the wait: the real one may still come. It is reported only if nothing better
    // does.
    let mut doubtful = None;
    for _ in 0..TRIES {
        socket.send(&bytes).await.map_err(|e| setup("sending", e))?;
        let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
        loop {
            let n = match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) => return Err(setup("receiving", e)),
                Ok(Ok(n)) => n,
            };
            let Ok(response) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            if response.metadata.id != message.metadata.id
                || response.metadata.message_type != MessageType::Response
            {
                continue;
            }
            let code = response.metadata.response_code;
            let tsig_error = response.signature.as_ref().and_then(|s| s.data.error);
            let signed = response
                .signature
                .as_ref()
                .is_some_and(|s| !s.data.mac.is_empty());
            let result = answer(step, code, tsig_error.as_ref());
            if !signed {
                // A server cannot sign with a key it does not accept: its refusal of our key
                // comes unsigned, and is what we report if no signed answer follows.
                doubtful = Some(match result {
                    Answer::Refused(reason) => RegisterError::Refused { server, reason },
                    _ => RegisterError::BadAnswer {
                        server,
                        reason: format!("an answer ({code}) not signed with our key"),
                    },
                });
                continue;
            }
            if let Err(e) = verifier.verify(&buf[..n]) {
                doubtful = Some(RegisterError::BadAnswer {
                    server,
                    reason: format!("the answer fails the TSIG check: {e}"),
                });
                continue;
            }
            return Ok(result);
        }
        if doubtful.is_some() {
            break;
        }
    }
    Err(doubtful.unwrap_or(RegisterError::NoAnswer(server)))
}

fn rand_id() -> u16 {
    // The TSIG MAC protects the exchange; the ID only pairs answers with questions.
    let [a, b] = ipsec_crypto::Provider::system()
        .random_array::<2>()
        .unwrap_or([0x5a, 0xa5]);
    u16::from_be_bytes([a, b])
}

/// Claims the name, or updates it if it is ours.
pub async fn register(
    target: &Target,
    key: &TsigKey,
    reg: &Registration,
) -> Result<(), RegisterError> {
    match exchange(target, key, reg, Step::Claim).await? {
        Answer::Done => Ok(()),
        Answer::NameInUse => match exchange(target, key, reg, Step::Replace).await? {
            Answer::Done => Ok(()),
            Answer::NotOurs | Answer::NameInUse => Err(RegisterError::NameTaken {
                name: reg.display_name(),
            }),
            Answer::Refused(reason) => Err(RegisterError::Refused {
                server: target.server,
                reason,
            }),
        },
        Answer::NotOurs => Err(RegisterError::NameTaken {
            name: reg.display_name(),
        }),
        Answer::Refused(reason) => Err(RegisterError::Refused {
            server: target.server,
            reason,
        }),
    }
}

/// Removes the name's records if they are still ours (a name someone else took over stays).
pub async fn remove(
    target: &Target,
    key: &TsigKey,
    reg: &Registration,
) -> Result<(), RegisterError> {
    match exchange(target, key, reg, Step::Remove).await? {
        Answer::Done | Answer::NotOurs | Answer::NameInUse => Ok(()),
        Answer::Refused(reason) => Err(RegisterError::Refused {
            server: target.server,
            reason,
        }),
    }
}

/// A tunnel's registration, kept by a task of its own: registered, or retried with backoff.
#[derive(Debug)]
pub struct Registrar {
    task: tokio::task::JoinHandle<()>,
    target: Target,
    settings: Settings,
    registration: Registration,
    status: Arc<Mutex<RegistrationStatus>>,
}

impl Registrar {
    /// Starts registering `registration` at `target`.
    pub fn start(settings: Settings, registration: Registration, target: Target) -> Self {
        let status = Arc::new(Mutex::new(RegistrationStatus {
            name: registration.display_name(),
            server: Some(target.server.ip()),
            state: "registering".into(),
            detail: None,
        }));
        let task = tokio::spawn(keep_registered(
            settings.key_file.clone(),
            registration.clone(),
            target.clone(),
            status.clone(),
        ));
        Self {
            task,
            target,
            settings,
            registration,
            status,
        }
    }

    pub fn status(&self) -> RegistrationStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stops retrying and removes the records (the tunnel must still be up).
    pub async fn remove(self) {
        self.task.abort();
        let key = match load_key(&self.settings.key_file) {
            Ok(key) => key,
            Err(e) => {
                tracing::warn!(name = %self.registration.display_name(), "DNS name not removed: {e}");
                return;
            }
        };
        match remove(&self.target, &key, &self.registration).await {
            Ok(()) => tracing::info!(name = %self.registration.display_name(), "DNS name removed"),
            Err(e) => {
                tracing::warn!(name = %self.registration.display_name(), "DNS name not removed: {e}")
            }
        }
    }
}

impl Drop for Registrar {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn keep_registered(
    key_file: PathBuf,
    registration: Registration,
    target: Target,
    status: Arc<Mutex<RegistrationStatus>>,
) {
    let name = registration.display_name();
    let mut wait = RETRY_FIRST;
    loop {
        let result = match load_key(&key_file) {
            Ok(key) => register(&target, &key, &registration).await,
            Err(e) => Err(e),
        };
        let done = result.is_ok();
        if let Ok(mut s) = status.lock() {
            match &result {
                Ok(()) => {
                    s.state = "registered".into();
                    s.detail = None;
                }
                Err(e) => {
                    s.state = "failed".into();
                    s.detail = Some(format!("{e} (next try in {} s)", wait.as_secs()));
                }
            }
        }
        match result {
            Ok(()) => {
                let addresses: Vec<String> = registration
                    .addresses
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                tracing::info!(%name, server = %target.server, addresses = %addresses.join(", "), "DNS name registered");
            }
            Err(e) => {
                tracing::warn!(%name, retry_s = wait.as_secs(), "DNS name not registered: {e}")
            }
        }
        if done {
            return;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RETRY_CAP);
    }
}

/// This machine's identity for the owner mark: systemd's machine ID, else its host name.
pub fn machine_id() -> Vec<u8> {
    std::fs::read("/etc/machine-id")
        .ok()
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| host_name().unwrap_or_default().into_bytes())
}

/// The machine's host name.
pub fn host_name() -> Option<String> {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
