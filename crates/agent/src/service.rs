//! `aovpn agent`: the one privileged service that owns every tunnel on the machine (the Linux
//! counterpart of Windows' RasMan). It keeps the device tunnel up from boot, each user's
//! AlwaysOn tunnels up while that user is logged in, follows the network (rtnetlink), logins
//! and sleep (logind), answers `aovpn list/status/up/down` on its control socket, and leaves
//! nothing behind, even after being killed.
//!
//! The policy lives in [`crate::supervisor`]; this is its shell: it turns the machine's events
//! into the supervisor's inputs and its actions into running [`crate::connection`]s.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use netio::netlink::{NetEvent, Netlink, NetworkMonitor};
use profile::plan::ConnectionPlan;
use profile::{ParsedProfile, Scope};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::config::{AgentConfig, SessionSource, user_name};
use crate::connection::{self, Command, Credentials, Outcome, Report};
use crate::control::{
    FromHelper, MAX_LINE, MAX_USER_PROFILES, ProfileText, ProfileView, Reply, Request, ToHelper,
};
use crate::dns::SharedDns;
use crate::helper::{HelperLink, RemoteSigner};
use crate::ledger::Ledger;
use crate::logind::{self, LoginEvent};
use crate::plan::profile_tunnel;
use crate::supervisor::{Action, Owner, ProfileKey, ProfileSpec, State, Supervisor};

/// Network events closer together than this count as one change.
const NETWORK_SETTLE: Duration = Duration::from_millis(300);
/// How often the system profile store is read again.
const STORE_RESCAN: Duration = Duration::from_secs(2);
/// How often the trusted-network suffixes are looked at (besides every network change).
const TRUSTED_RECHECK: Duration = Duration::from_secs(5);
/// Most control connections of unprivileged users at once, and of one user.
const MAX_CLIENTS: usize = 256;
const MAX_CLIENTS_PER_USER: usize = 8;
/// A control request must arrive within this time.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A helper's profile updates reach the agent at most this often.
const HELPER_UPDATE_GAP: Duration = Duration::from_secs(1);
/// Most tunnels one user's profiles run at once.
const MAX_USER_TUNNELS: usize = 4;
/// Most certificates, and bytes, in a helper's chain.
const MAX_CHAIN_CERTS: usize = 8;
const MAX_CHAIN_BYTES: usize = 64 * 1024;
/// Most disconnect holds kept.
const MAX_HOLDS: usize = 1024;
/// How long a status request waits for a tunnel's counters.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the agent stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("netlink: {0}")]
    Netlink(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> AgentError {
    let what = what.into();
    move |source| AgentError::Io { what, source }
}

/// The caller of a control request, as the kernel reports it.
#[derive(Debug, Clone, Copy)]
struct Caller {
    uid: u32,
    admin: bool,
}

/// What the control socket's tasks hand to the main loop.
enum ControlEvent {
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
fn lockdown_worker(
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

/// Why a profile's credentials are not there to start its tunnel.
#[derive(Debug, thiserror::Error)]
enum CredentialsError {
    #[error(transparent)]
    Trust(connection::ConnectionError),
    #[error("no trusted root for the gateway in {}", .0.display())]
    NoRoot(std::path::PathBuf),
    #[error("machine certificate: {0}")]
    Machine(#[source] connection::ConnectionError),
    #[error("the user's key helper is not running")]
    NoHelper,
    #[error("the user's certificate has a key type aovpn cannot use")]
    UnusableUserKey,
    #[error(transparent)]
    User(connection::ConnectionError),
}

/// A profile name the caller has no profile (or no right to see one) under.
#[derive(Debug, thiserror::Error)]
#[error("no profile named \"{0}\"")]
struct UnknownProfile(String);

/// A profile as the agent knows it.
#[derive(Debug, Clone)]
struct Loaded {
    spec: ProfileSpec,
    plan: Option<ConnectionPlan>,
    /// The profile says LockDown, usable or not: a LockDown profile that a later aovpn
    /// refuses keeps the machine locked rather than opening it.
    lockdown: bool,
}

/// A user's key helper.
struct Helper {
    conn: u64,
    chain_pem: String,
    leaf: pki::Certificate,
    link: Arc<HelperLink>,
}

/// A tunnel the agent started.
struct Running {
    generation: u64,
    commands: mpsc::Sender<Command>,
    network: Arc<tokio::sync::Notify>,
    interface: String,
    tun_index: Option<u32>,
}

/// The agent. Build it with [`Agent::start`], run it with [`Agent::run`].
pub struct Agent {
    config: AgentConfig,
    sup: Supervisor,
    dns: Arc<SharedDns>,
    ledger: Ledger,
    profiles: BTreeMap<ProfileKey, Loaded>,
    device_fingerprint: u64,
    /// What LockDown was last set to: off (`Some(None)`) or on with these tunnel interface
    /// indexes; `None`: not yet, so a table left by an earlier run is brought in line with the
    /// store at start.
    lockdown: Option<Option<Vec<u32>>>,
    /// Firewall changes are applied one at a time, in order.
    /// LockDown changes, applied one at a time in the order they were made.
    lockdown_changes: mpsc::UnboundedSender<Option<netio::firewall::Lockdown>>,
    helpers: HashMap<u32, Helper>,
    running: HashMap<ProfileKey, Running>,
    holds: BTreeSet<ProfileKey>,
    users_logged_in: BTreeSet<u32>,
    sessions_from_logind: bool,
    generation: u64,
    reports_tx: mpsc::UnboundedSender<(ProfileKey, u64, Report)>,
    reports_rx: mpsc::UnboundedReceiver<(ProfileKey, u64, Report)>,
    control_rx: mpsc::Receiver<ControlEvent>,
    login_rx: mpsc::UnboundedReceiver<LoginEvent>,
    monitor: Option<NetworkMonitor>,
    listener_task: tokio::task::JoinHandle<()>,
    started: Instant,
    ready: bool,
    /// Interface indices of our recent TUN devices: their comings and goings are not network
    /// changes (a failed attempt's TUN vanishing must not reset the backoff).
    our_links: std::collections::VecDeque<u32>,
    /// Routes our tunnels installed outside their TUN devices (gateway bypass, exclusions):
    /// adding and removing them is not a network change either.
    our_routes: std::collections::VecDeque<crate::connection::RecordedRoute>,
}

/// How many of our past TUN devices' indices are remembered.
const OUR_LINKS_REMEMBERED: usize = 64;

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("profiles", &self.profiles.len())
            .field("running", &self.running.len())
            .finish_non_exhaustive()
    }
}

fn dns_key(key: &ProfileKey) -> String {
    match key.owner {
        Owner::Device => format!("0-{}", key.name),
        Owner::User(uid) => format!("1-{uid}-{}", key.name),
    }
}

fn fingerprint(parts: &[(&str, &str)]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

/// A profile's plan and what the supervisor needs of it, or why it cannot run.
fn load_profile(name: &str, scope: Scope, xml: &str) -> Loaded {
    let revision = fingerprint(&[(name, xml)]);
    let parsed = match ParsedProfile::parse(name, xml.as_bytes()) {
        Ok(p) => p,
        Err(e) => return problem(revision, e.to_string(), false),
    };
    let lockdown = parsed.profile.lock_down == Some(true) && scope == Scope::Device;
    match parsed.validate(Some(scope)) {
        Err(e) => return problem(revision, e.to_string(), lockdown),
        // What the profile asks for and this agent does not do is said, never dropped.
        Ok(warnings) => {
            for w in warnings {
                tracing::warn!(profile = %name, "{}: {}", w.element, w.kind);
            }
        }
    }
    let Some(plan) = profile::plan::plan(name, Some(scope), &parsed.profile) else {
        return problem(
            revision,
            "the profile has no NativeProfile".into(),
            lockdown,
        );
    };
    let unsupported = crate::plan::check(&plan).err().map(|e| e.to_string());
    Loaded {
        spec: ProfileSpec {
            servers: plan.servers.iter().map(|s| s.host.clone()).collect(),
            always_on: plan.always_on,
            device_tunnel: plan.device_tunnel,
            trusted_networks: plan
                .trusted_networks
                .iter()
                .map(|t| t.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
            problem: unsupported,
            revision,
        },
        plan: Some(plan),
        lockdown,
    }
}

fn problem(revision: u64, reason: String, lockdown: bool) -> Loaded {
    Loaded {
        spec: ProfileSpec {
            servers: Vec::new(),
            always_on: false,
            device_tunnel: false,
            trusted_networks: Vec::new(),
            problem: Some(reason),
            revision,
        },
        plan: None,
        lockdown,
    }
}

impl Agent {
    /// Removes what a killed predecessor left, binds the control socket, reads the system
    /// store and starts watching the network and logins. Must run inside a tokio runtime.
    /// `stub`: the split DNS stub's sockets, bound while port 53 could still be bound; it
    /// serves only where systemd-resolved does not run.
    pub async fn start(
        config: AgentConfig,
        stub: Option<crate::split_dns::StubSockets>,
    ) -> Result<Agent, AgentError> {
        for dir in [&config.run_dir, &config.state_dir] {
            std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        }
        let netlink = Netlink::new().map_err(|e| AgentError::Netlink(e.to_string()))?;
        let mut shared_dns = SharedDns::new(&config.resolv_conf);
        if let (Some(sockets), netio::dns::DnsBackend::ResolvConf(_)) = (stub, shared_dns.backend())
        {
            let rules = Arc::new(std::sync::RwLock::new(
                crate::split_dns::SplitRules::default(),
            ));
            shared_dns = shared_dns.with_split_stub(rules.clone());
            tokio::spawn(async move {
                if let Err(e) = crate::split_dns::serve(sockets, rules).await {
                    tracing::error!("split DNS stub stopped: {e}");
                }
            });
        }
        let dns = Arc::new(shared_dns);
        // Proxy files of tunnels a killed predecessor had up; the tunnels that come up again
        // write theirs anew.
        match std::fs::remove_dir_all(config.run_dir.join("proxy")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!("removing old proxy files: {e}");
            }
            _ => {}
        }
        let ledger_path = config.run_dir.join("installed.json");
        match Ledger::recover(&ledger_path, &netlink, dns.backend()).await {
            Ok(found) if found != Default::default() => tracing::warn!(
                routes = found.routes,
                addresses = found.addresses,
                dns = found.dns,
                interfaces_still_held_elsewhere = ?found.interfaces_left,
                "removed what a previous agent left behind"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!("{}: {e}", ledger_path.display()),
        }

        let (control_tx, control_rx) = mpsc::channel(256);
        let listener = bind_socket(&config.socket)?;
        let admin_group = config.admin_group;
        let listener_task = tokio::spawn(accept_loop(listener, control_tx, admin_group));

        let (login_tx, login_rx) = mpsc::unbounded_channel();
        let sessions_from_logind = match config.sessions {
            SessionSource::Helpers => false,
            source => match logind::watch(login_tx).await {
                Ok(_task) => true,
                Err(e) if source == SessionSource::Logind => {
                    return Err(AgentError::Io {
                        what: "sessions = \"logind\"".into(),
                        source: std::io::Error::other(e.to_string()),
                    });
                }
                Err(e) => {
                    tracing::info!("{e}: a user counts as logged in while their key helper runs");
                    false
                }
            },
        };
        let monitor = match NetworkMonitor::new() {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!("network changes will not be seen: {e}");
                None
            }
        };
        let seed = std::process::id() as u64 ^ tunnel::host::unix_now();
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        let holds = load_holds(&config.state_dir.join("holds.json"));
        let state_dir_for_lockdown = config.state_dir.clone();
        let mut agent = Agent {
            sup: Supervisor::new(config.backoff, seed),
            config,
            dns,
            ledger: Ledger::new(ledger_path),
            profiles: BTreeMap::new(),
            device_fingerprint: 0,
            lockdown: None,
            lockdown_changes: lockdown_worker(state_dir_for_lockdown),
            helpers: HashMap::new(),
            running: HashMap::new(),
            holds,
            users_logged_in: BTreeSet::new(),
            sessions_from_logind,
            generation: 0,
            reports_tx,
            reports_rx,
            control_rx,
            login_rx,
            monitor,
            listener_task,
            started: Instant::now(),
            ready: false,
            our_links: std::collections::VecDeque::new(),
            our_routes: std::collections::VecDeque::new(),
        };
        agent.rescan_device_store(Instant::now());
        tracing::info!(
            socket = %agent.config.socket.display(),
            profiles = agent.profiles.len(),
            sessions = if agent.sessions_from_logind { "logind" } else { "helpers" },
            "agent up"
        );
        Ok(agent)
    }

    /// Runs until `shutdown` resolves; then every tunnel says goodbye and removes what it
    /// installed.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let watchdog = sd_notify::watchdog_enabled();
        let mut last_watchdog = Instant::now();
        let mut last_rescan = Instant::now();
        let mut last_trusted: Option<Instant> = None;
        let mut network_settles: Option<Instant> = None;
        let mut settling: Vec<NetEvent> = Vec::new();
        let (trusted_tx, mut trusted_rx) = mpsc::channel::<Option<Vec<String>>>(1);
        let mut trusted_busy = false;
        let mut resume = netio::clock::ResumeDetector::new(Duration::from_secs(3));
        self.check_ready();
        loop {
            self.apply_actions();
            let due = self.sup.poll_timeout();
            tokio::select! {
                () = &mut shutdown => break,
                Some(event) = self.control_rx.recv() => self.on_control(event),
                Some((key, generation, report)) = self.reports_rx.recv() => {
                    self.on_report(key, generation, report);
                }
                Some(event) = next_net_event(&mut self.monitor) => {
                    if self.is_ours(&event) {
                        continue;
                    }
                    // Decided when things settle: by then the tunnel that caused an event has
                    // reported what it installed.
                    if settling.len() < 256 {
                        settling.push(event);
                    }
                    network_settles = Some(Instant::now() + NETWORK_SETTLE);
                }
                () = sleep_until(network_settles), if network_settles.is_some() => {
                    network_settles = None;
                    let events = std::mem::take(&mut settling);
                    let theirs: Vec<&NetEvent> = events.iter().filter(|e| !self.is_ours(e)).collect();
                    if !theirs.is_empty() {
                        tracing::info!(events = theirs.len(), "network changed");
                        tracing::debug!(?theirs, "network events");
                        self.network_changed();
                        last_trusted = None;
                    }
                }
                Some(found) = trusted_rx.recv() => {
                    trusted_busy = false;
                    if let Some(suffixes) = found {
                        self.sup.set_network_suffixes(suffixes, Instant::now());
                    }
                }
                Some(event) = self.login_rx.recv() => self.on_login(event),
                () = sleep_until(due), if due.is_some() => {
                    self.sup.handle_timeout(Instant::now());
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    if now.duration_since(last_rescan) >= STORE_RESCAN {
                        last_rescan = now;
                        self.rescan_device_store(now);
                    }
                    if !trusted_busy
                        && last_trusted.is_none_or(|t| now.duration_since(t) >= TRUSTED_RECHECK)
                    {
                        last_trusted = Some(now);
                        trusted_busy = true;
                        self.check_trusted(trusted_tx.clone());
                    }
                    if !self.sessions_from_logind && let Some(slept) = resume.poll() {
                        tracing::info!(slept_s = slept.as_secs(), "resumed from suspend");
                        self.network_changed();
                    }
                    if let Some(period) = watchdog
                        && now.duration_since(last_watchdog) >= period / 2
                    {
                        last_watchdog = now;
                        let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                    }
                    self.check_ready();
                }
            }
        }
        self.stop().await;
    }

    fn is_ours(&self, event: &NetEvent) -> bool {
        let ours = |index: u32| self.our_links.contains(&index);
        match event {
            NetEvent::LinkChanged(l) => l.name.starts_with("aovpn") || ours(l.index),
            NetEvent::LinkRemoved { index } => ours(*index),
            NetEvent::AddressAdded(a) | NetEvent::AddressRemoved(a) => ours(a.index),
            NetEvent::RouteAdded(r) | NetEvent::RouteRemoved(r) => {
                r.oif.is_some_and(ours)
                    || self.our_routes.iter().any(|o| {
                        o.destination == r.destination
                            && o.prefix_len == r.prefix_len
                            && o.oif == r.oif
                            && o.gateway == r.gateway
                    })
            }
        }
    }

    /// Tells systemd the agent is ready once the device tunnel is up, there is none, or the
    /// boot wait is over: boot goes on without a network, and logins wait only that long.
    fn check_ready(&mut self) {
        if self.ready {
            return;
        }
        let now = Instant::now();
        let device_tunnel = self.profiles.iter().find(|(k, l)| {
            k.owner == Owner::Device && l.spec.device_tunnel && l.spec.problem.is_none()
        });
        let up = match device_tunnel {
            None => true,
            Some((key, _)) => self
                .sup
                .states(now)
                .iter()
                .any(|(k, s)| k == key && matches!(s, State::Connected { .. })),
        };
        if up || now.duration_since(self.started) >= self.config.boot_wait {
            self.ready = true;
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
            tracing::info!(device_tunnel_up = up, "ready");
        }
    }

    fn network_changed(&mut self) {
        self.sup.network_changed(Instant::now());
        // A DHCP client may have rewritten resolv.conf: compose ours again from its servers.
        let dns = self.dns.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = dns.refresh() {
                tracing::warn!("DNS settings after a network change: {e}");
            }
        });
        for running in self.running.values() {
            running.network.notify_one();
        }
    }

    /// Looks up the network's DNS suffixes off the main loop (a slow bus must not stall it);
    /// the answer comes back on `reply`.
    fn check_trusted(&self, reply: mpsc::Sender<Option<Vec<String>>>) {
        let ours: Vec<u32> = self.our_links.iter().copied().collect();
        let dns = self.dns.clone();
        tokio::spawn(async move {
            let lookup = crate::trusted::network_suffixes(&dns, &ours);
            let found = tokio::time::timeout(Duration::from_secs(3), lookup)
                .await
                .ok();
            if found.is_none() {
                tracing::warn!("the network's DNS suffixes did not come in time");
            }
            let _ = reply.send(found).await;
        });
    }

    fn on_login(&mut self, event: LoginEvent) {
        let now = Instant::now();
        match event {
            LoginEvent::Users(users) => {
                for uid in self.users_logged_in.union(&users) {
                    self.sup.set_session(*uid, users.contains(uid), now);
                }
                self.users_logged_in = users;
            }
            LoginEvent::Resumed => {
                tracing::info!("resumed from suspend");
                self.network_changed();
            }
        }
    }

    /// Reads the system profile store when it changed.
    fn rescan_device_store(&mut self, now: Instant) {
        let store = crate::profile_store::Store::new(
            self.config.profiles_dir(),
            self.config.config_dir.join(".no-user-profiles"),
        );
        let list = match store.list() {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!("{}: {e}", self.config.profiles_dir().display());
                return;
            }
        };
        let texts: Vec<(String, String)> = list
            .iter()
            .filter(|p| p.scope == Scope::Device)
            .map(|p| (p.name.clone(), p.parsed.profile_xml.clone()))
            .collect();
        let parts: Vec<(&str, &str)> = texts
            .iter()
            .map(|(n, x)| (n.as_str(), x.as_str()))
            .collect();
        let print = fingerprint(&parts);
        if print == self.device_fingerprint && !self.profiles.is_empty() {
            return;
        }
        self.device_fingerprint = print;
        self.set_profiles(Owner::Device, Scope::Device, &texts, now);
        self.apply_lockdown();
    }

    /// Writes (or with `None` removes) `RUN_DIR/proxy/KEY.env`: the proxy of a ForceTunnel
    /// profile while its tunnel is up, as http_proxy/https_proxy for shells and services that
    /// read it (the package's /etc/profile.d/aovpn-proxy.sh does). The value was checked to
    /// be `host[:port]` when the profile was read.
    fn export_proxy(&self, key: &ProfileKey, server: Option<&str>) {
        let dir = self.config.run_dir.join("proxy");
        let path = dir.join(format!("{}.env", dns_key(key)));
        let Some(server) = server else {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    tracing::warn!("{}: {e}", path.display());
                }
                _ => {}
            }
            return;
        };
        let url = format!("http://{server}");
        let text = format!(
            "# aovpn: the proxy of {key} while its tunnel is up\n\
             http_proxy={url}\nhttps_proxy={url}\nHTTP_PROXY={url}\nHTTPS_PROXY={url}\n\
             no_proxy=localhost,127.0.0.1,::1\nNO_PROXY=localhost,127.0.0.1,::1\n"
        );
        let written = std::fs::create_dir_all(&dir)
            .and_then(|()| netio::fs::replace_file(&path, text.as_bytes(), 0o644, true));
        if let Err(e) = written {
            tracing::warn!("{}: {e}", path.display());
        }
    }

    /// Installs LockDown while a device profile asks for it, with the LockDown profile's
    /// tunnel (while it is up) as the one way out, and lifts it when none does. It is not tied
    /// to the tunnel: the machine stays locked while the tunnel is down. Changes are applied
    /// one at a time, in order.
    fn apply_lockdown(&mut self) {
        let mut ike_ports = vec![500u16, 4500];
        let mut tunnel_indexes = Vec::new();
        let mut wanted = false;
        for (key, loaded) in &self.profiles {
            if key.owner != Owner::Device || !loaded.lockdown {
                continue;
            }
            wanted = true;
            if let Some(index) = self.running.get(key).and_then(|r| r.tun_index) {
                tunnel_indexes.push(index);
            }
            for server in loaded.plan.iter().flat_map(|p| &p.servers) {
                if let Some((_, port)) = crate::connection::split_server(&server.host)
                    && !ike_ports.contains(&port)
                {
                    ike_ports.push(port);
                }
            }
        }
        let state = wanted.then(|| tunnel_indexes.clone());
        if self.lockdown.as_ref() == Some(&state) {
            return;
        }
        self.lockdown = Some(state);
        let mut daemon_uids = vec![0];
        if let Ok(Some(resolver)) = nix::unistd::User::from_name("systemd-resolve") {
            daemon_uids.push(resolver.uid.as_raw());
        }
        let lockdown = netio::firewall::Lockdown {
            tunnel_indexes,
            ike_ports,
            daemon_uids,
        };
        let change = wanted.then_some(lockdown);
        if self.lockdown_changes.send(change).is_err() {
            tracing::error!("LockDown worker gone");
        }
    }

    fn set_profiles(
        &mut self,
        owner: Owner,
        scope: Scope,
        texts: &[(String, String)],
        now: Instant,
    ) {
        self.profiles.retain(|k, _| k.owner != owner);
        let mut specs = Vec::new();
        for (name, xml) in texts {
            let loaded = load_profile(name, scope, xml);
            if let Some(reason) = &loaded.spec.problem {
                tracing::warn!(profile = %name, "not usable: {reason}");
            }
            specs.push((name.clone(), loaded.spec.clone()));
            self.profiles.insert(
                ProfileKey {
                    owner,
                    name: name.clone(),
                },
                loaded,
            );
        }
        self.sup.set_profiles(owner, specs, now);
        // Holds of this owner's profiles that are gone go with them.
        let before = self.holds.len();
        let profiles = &self.profiles;
        self.holds
            .retain(|k| k.owner != owner || profiles.contains_key(k));
        if self.holds.len() != before {
            save_holds(&self.config.state_dir.join("holds.json"), &self.holds);
        }
        for key in self.holds.iter().filter(|k| k.owner == owner) {
            self.sup.restore_hold(key, now);
        }
        self.apply_persistent_dns();
    }

    /// The Persistent DomainNameInformation rules of every loaded profile, in force whether
    /// their tunnels are up or not (a rule without servers then sends its names nowhere).
    fn apply_persistent_dns(&self) {
        let mut rules = Vec::new();
        for (key, loaded) in &self.profiles {
            let Some(plan) = &loaded.plan else { continue };
            if key.owner != Owner::Device {
                // Rules that outlive the tunnel steer every user's names: the machine's
                // administrator sets them (device profiles), not one user for all.
                if plan.dns.split.iter().any(|d| d.persistent) {
                    tracing::warn!(profile = %key, "Persistent DomainNameInformation of a user profile not applied: only device profiles may keep rules while their tunnel is down");
                }
                continue;
            }
            for d in plan.dns.split.iter().filter(|d| d.persistent) {
                match crate::split_dns::namespace(&d.domain) {
                    Some(namespace) => rules.push(crate::split_dns::SplitRule {
                        namespace,
                        servers: d.servers.clone(),
                    }),
                    None => {
                        tracing::warn!(profile = %key, domain = %d.domain, "Persistent rule skipped: not a DNS name")
                    }
                }
            }
        }
        let wanted = !rules.is_empty();
        match self.dns.set_persistent(rules) {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                "Persistent DomainNameInformation not applied: it needs the agent's split DNS stub (systemd-resolved keeps no rules for a link that is down)"
            ),
            Err(e) if wanted => tracing::warn!("Persistent DomainNameInformation: {e}"),
            Err(e) => tracing::warn!("removing Persistent DomainNameInformation: {e}"),
        }
    }

    /// Carries out what the supervisor decided.
    fn apply_actions(&mut self) {
        while let Some(action) = self.sup.poll_action() {
            match action {
                Action::Start { key, server } => self.start_tunnel(key, server),
                Action::Stop { key } => {
                    if let Some(r) = self.running.get(&key) {
                        let commands = r.commands.clone();
                        tokio::spawn(async move {
                            let _ = commands.send(Command::Stop).await;
                        });
                    } else {
                        self.sup.ended(&key, None, Instant::now());
                    }
                }
            }
        }
    }

    fn credentials(&self, key: &ProfileKey) -> Result<Credentials, CredentialsError> {
        let trust =
            connection::load_trust(&self.config.ca_files()).map_err(CredentialsError::Trust)?;
        if trust.roots().is_empty() {
            return Err(CredentialsError::NoRoot(self.config.config_dir.join("ca")));
        }
        match key.owner {
            Owner::Device => {
                let (cert, key_file) = self.config.machine_files();
                connection::load_credentials(&cert, &key_file, &self.config.ca_files())
                    .map_err(CredentialsError::Machine)
            }
            Owner::User(uid) => {
                let helper = self.helpers.get(&uid).ok_or(CredentialsError::NoHelper)?;
                let signer = RemoteSigner::new(&helper.leaf, helper.link.clone())
                    .ok_or(CredentialsError::UnusableUserKey)?;
                connection::remote_credentials(helper.chain_pem.as_bytes(), Arc::new(signer), trust)
                    .map_err(CredentialsError::User)
            }
        }
    }

    fn interface_for(&self, key: &ProfileKey) -> String {
        let device_tunnel = self.profiles.get(key).is_some_and(|l| l.spec.device_tunnel);
        if device_tunnel {
            return "aovpn-dev".into();
        }
        let prefix = match key.owner {
            Owner::Device => "aovpn-d",
            Owner::User(_) => "aovpn-u",
        };
        (0..)
            .map(|n| format!("{prefix}{n}"))
            .find(|name| !self.running.values().any(|r| &r.interface == name))
            .unwrap_or_else(|| format!("{prefix}x"))
    }

    fn start_tunnel(&mut self, key: ProfileKey, server: usize) {
        let now = Instant::now();
        if let Owner::User(uid) = key.owner {
            let theirs = self
                .running
                .keys()
                .filter(|k| k.owner == Owner::User(uid))
                .count();
            if theirs >= MAX_USER_TUNNELS {
                let e = format!("this user already runs {theirs} tunnels, the most a user may");
                self.sup.ended(&key, Some(e), now);
                return;
            }
        }
        let Some(plan) = self.profiles.get(&key).and_then(|l| l.plan.clone()) else {
            self.sup
                .ended(&key, Some("the profile is gone".into()), now);
            return;
        };
        let credentials = match self.credentials(&key) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(profile = %key, "cannot start: {e}");
                self.sup.ended(&key, Some(e.to_string()), now);
                return;
            }
        };
        let interface = self.interface_for(&key);
        let mut tunnel = match profile_tunnel(&plan, credentials, interface.clone()) {
            Ok(t) => t,
            Err(e) => {
                self.sup.ended(&key, Some(e.to_string()), now);
                return;
            }
        };
        let Some(server_name) = tunnel.servers.get(server).cloned() else {
            self.sup.ended(&key, Some("no such server".into()), now);
            return;
        };
        tunnel.options.server = server_name.clone();
        tunnel.options.mtu = self.config.tunnel_mtu;
        // One name per machine: the device tunnel registers it when it asks to; a user
        // tunnel only on a machine whose device tunnel does not (two tunnels would take the
        // name from each other, and the first to go would remove it under the other).
        let device_registers = self.profiles.values().any(|l| {
            l.plan
                .as_ref()
                .is_some_and(|p| p.device_tunnel && p.dns.register)
        });
        if plan.dns.register && (plan.device_tunnel || !device_registers) {
            tunnel.options.register_dns = Some(self.config.register_dns.clone());
        }
        self.generation += 1;
        let generation = self.generation;
        let (commands, command_rx) = mpsc::channel(8);
        let (report_tx, mut report_rx) = mpsc::unbounded_channel();
        let forward = self.reports_tx.clone();
        let forward_key = key.clone();
        tokio::spawn(async move {
            while let Some(report) = report_rx.recv().await {
                if forward
                    .send((forward_key.clone(), generation, report))
                    .is_err()
                {
                    break;
                }
            }
        });
        tracing::info!(profile = %key, server = %server_name, %interface, "connecting");
        let span = tracing::info_span!("tunnel", profile = %key);
        let network = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(
            connection::run(
                tunnel.options,
                self.dns.clone(),
                dns_key(&key),
                command_rx,
                network.clone(),
                report_tx,
            )
            .instrument(span),
        );
        self.running.insert(
            key,
            Running {
                generation,
                commands,
                network,
                interface,
                tun_index: None,
            },
        );
    }

    fn on_report(&mut self, key: ProfileKey, generation: u64, report: Report) {
        let now = Instant::now();
        if self.running.get(&key).map(|r| r.generation) != Some(generation) {
            return;
        }
        match report {
            Report::Installed(record) => {
                if let Some(r) = self.running.get_mut(&key)
                    && record.tun_index != 0
                {
                    r.tun_index = Some(record.tun_index);
                    if !self.our_links.contains(&record.tun_index) {
                        if self.our_links.len() >= OUR_LINKS_REMEMBERED {
                            self.our_links.pop_front();
                        }
                        self.our_links.push_back(record.tun_index);
                    }
                }
                for route in &record.routes {
                    if !self.our_routes.contains(route) {
                        if self.our_routes.len() >= 4 * OUR_LINKS_REMEMBERED {
                            self.our_routes.pop_front();
                        }
                        self.our_routes.push_back(*route);
                    }
                }
                if let Err(e) = self.ledger.set(&dns_key(&key), record) {
                    tracing::warn!("recording what the tunnel installed: {e}");
                }
                // The LockDown profile's tunnel (re)appeared: it is the one way out.
                self.apply_lockdown();
            }
            Report::Connected(status) => {
                tracing::info!(profile = %key, vip = ?status.virtual_ip, interface = %status.interface, "connected");
                let proxy = self
                    .profiles
                    .get(&key)
                    .and_then(|l| l.plan.as_ref())
                    .and_then(|p| p.proxy_server.clone());
                if let Some(server) = proxy {
                    self.export_proxy(&key, Some(&server));
                }
                self.sup.connected(&key, now);
                self.check_ready();
            }
            Report::Ended(outcome) => {
                self.running.remove(&key);
                self.export_proxy(&key, None);
                self.apply_lockdown();
                let error = match outcome {
                    Outcome::Stopped => {
                        tracing::info!(profile = %key, "disconnected");
                        None
                    }
                    Outcome::Failed { error, connected } => {
                        tracing::warn!(profile = %key, was_connected = connected, "tunnel ended: {error}");
                        Some(error.to_string())
                    }
                };
                self.sup.ended(&key, error, now);
            }
        }
    }

    fn on_control(&mut self, event: ControlEvent) {
        let now = Instant::now();
        match event {
            ControlEvent::Request {
                caller,
                request,
                reply,
            } => self.on_request(caller, request, reply),
            ControlEvent::HelperUp {
                uid,
                conn,
                chain_pem,
                profiles,
                link,
                reply,
            } => {
                if chain_pem.len() > MAX_CHAIN_BYTES {
                    let _ = reply.send(Reply::error("the certificate chain is too large"));
                    return;
                }
                let leaf = match pki::load_certificates(chain_pem.as_bytes()) {
                    Ok(chain) if chain.len() > MAX_CHAIN_CERTS => {
                        let _ = reply.send(Reply::error("too many certificates in the chain"));
                        return;
                    }
                    Ok(chain) if !chain.is_empty() => chain[0].clone(),
                    Ok(_) => {
                        let _ = reply.send(Reply::error("no certificate in the chain"));
                        return;
                    }
                    Err(e) => {
                        let _ = reply.send(Reply::error(format!("certificate: {e}")));
                        return;
                    }
                };
                if leaf.key_type().is_none() {
                    let _ = reply.send(Reply::error("the certificate's key type is not supported"));
                    return;
                }
                if let Some(old) = self.helpers.get(&uid) {
                    // The newest registration of a user wins; the older connection ends.
                    old.link.close();
                }
                tracing::info!(uid, user = %user_name(uid), subject = %leaf.subject(), profiles = profiles.len(), "key helper registered");
                self.helpers.insert(
                    uid,
                    Helper {
                        conn,
                        chain_pem,
                        leaf,
                        link,
                    },
                );
                self.set_user_profiles(uid, profiles, now);
                self.sup.set_signer(uid, true, now);
                if !self.sessions_from_logind {
                    self.sup.set_session(uid, true, now);
                }
                let _ = reply.send(Reply::ok());
            }
            ControlEvent::HelperProfiles {
                uid,
                conn,
                profiles,
            } => {
                if self.helpers.get(&uid).is_some_and(|h| h.conn == conn) {
                    tracing::info!(uid, profiles = profiles.len(), "user profiles changed");
                    self.set_user_profiles(uid, profiles, now);
                }
            }
            ControlEvent::HelperGone { uid, conn } => {
                if self.helpers.get(&uid).is_some_and(|h| h.conn == conn) {
                    tracing::info!(uid, user = %user_name(uid), "key helper gone");
                    self.helpers.remove(&uid);
                    self.sup.set_signer(uid, false, now);
                    if !self.sessions_from_logind {
                        self.sup.set_session(uid, false, now);
                    }
                }
            }
        }
    }

    fn set_user_profiles(&mut self, uid: u32, profiles: Vec<ProfileText>, now: Instant) {
        let mut texts: Vec<(String, String)> = profiles
            .into_iter()
            .take(MAX_USER_PROFILES)
            .filter(|p| profile::validate::check_profile_name(&p.name).is_ok())
            .map(|p| (p.name, p.xml))
            .collect();
        texts.sort();
        texts.dedup_by(|a, b| a.0 == b.0);
        self.set_profiles(Owner::User(uid), Scope::User, &texts, now);
    }

    /// The profile a caller means by `name` (and, for administrators, `user`).
    fn resolve(
        &self,
        caller: Caller,
        name: &str,
        user: Option<u32>,
    ) -> Result<ProfileKey, UnknownProfile> {
        let not_found = || UnknownProfile(name.to_owned());
        let known = |key: &ProfileKey| self.profiles.contains_key(key);
        if let Some(uid) = user {
            if !caller.admin && uid != caller.uid {
                return Err(not_found());
            }
            let key = ProfileKey {
                owner: Owner::User(uid),
                name: name.to_owned(),
            };
            return if known(&key) {
                Ok(key)
            } else {
                Err(not_found())
            };
        }
        let own = ProfileKey {
            owner: Owner::User(caller.uid),
            name: name.to_owned(),
        };
        if known(&own) {
            return Ok(own);
        }
        let device = ProfileKey {
            owner: Owner::Device,
            name: name.to_owned(),
        };
        if known(&device) {
            return Ok(device);
        }
        if caller.admin {
            let mut matches = self.profiles.keys().filter(|k| k.name == name);
            if let (Some(only), None) = (matches.next(), matches.next()) {
                return Ok(only.clone());
            }
        }
        Err(not_found())
    }

    fn visible(&self, caller: Caller, key: &ProfileKey) -> bool {
        caller.admin || key.owner == Owner::Device || key.owner == Owner::User(caller.uid)
    }

    fn view(&self, key: &ProfileKey, state: &State) -> ProfileView {
        let spec = self.profiles.get(key).map(|l| &l.spec);
        let (owner, uid) = match key.owner {
            Owner::Device => ("device".to_owned(), None),
            Owner::User(uid) => (user_name(uid), Some(uid)),
        };
        ProfileView {
            name: key.name.clone(),
            owner,
            uid,
            device_tunnel: spec.is_some_and(|s| s.device_tunnel),
            always_on: spec.is_some_and(|s| s.always_on),
            state: state.clone(),
            tunnel: None,
            history: None,
        }
    }

    fn on_request(&mut self, caller: Caller, request: Request, reply: oneshot::Sender<Reply>) {
        let now = Instant::now();
        match request {
            Request::List => {
                let profiles = self
                    .sup
                    .states(now)
                    .iter()
                    .filter(|(k, _)| self.visible(caller, k))
                    .map(|(k, s)| self.view(k, s))
                    .collect();
                let _ = reply.send(Reply {
                    ok: true,
                    profiles,
                    ..Reply::default()
                });
            }
            Request::Status { name, user } => {
                let keys: Vec<ProfileKey> = match &name {
                    Some(n) => match self.resolve(caller, n, user) {
                        Ok(k) => vec![k],
                        Err(e) => {
                            let _ = reply.send(Reply::error(e.to_string()));
                            return;
                        }
                    },
                    None => self
                        .profiles
                        .keys()
                        .filter(|k| self.visible(caller, k))
                        .cloned()
                        .collect(),
                };
                let states: BTreeMap<ProfileKey, State> =
                    self.sup.states(now).into_iter().collect();
                let mut pending = Vec::new();
                for key in keys {
                    let Some(state) = states.get(&key) else {
                        continue;
                    };
                    let mut view = self.view(&key, state);
                    view.history = self.sup.history(&key, now);
                    let asked = self.running.get(&key).and_then(|r| {
                        let (tx, rx) = oneshot::channel();
                        r.commands.try_send(Command::Status(tx)).ok().map(|()| rx)
                    });
                    pending.push((view, asked));
                }
                tokio::spawn(async move {
                    let mut profiles = Vec::new();
                    for (mut view, asked) in pending {
                        if let Some(rx) = asked {
                            view.tunnel = tokio::time::timeout(STATUS_TIMEOUT, rx)
                                .await
                                .ok()
                                .and_then(Result::ok);
                        }
                        profiles.push(view);
                    }
                    let _ = reply.send(Reply {
                        ok: true,
                        profiles,
                        ..Reply::default()
                    });
                });
            }
            Request::Connect { name, user } => {
                let _ = reply.send(self.control_profile(caller, &name, user, true, now));
            }
            Request::Disconnect { name, user } => {
                let _ = reply.send(self.control_profile(caller, &name, user, false, now));
            }
            Request::Reload if !caller.admin => {
                let _ = reply.send(Reply::error(
                    "only root or the agent's admin group can make it re-read the system store",
                ));
            }
            Request::Reload => {
                self.device_fingerprint = 0;
                self.rescan_device_store(now);
                let _ = reply.send(Reply::ok());
            }
            Request::RegisterHelper { .. } => {
                let _ = reply.send(Reply::error(
                    "a key helper registers as the first request of its connection",
                ));
            }
        }
    }

    /// `aovpn up` / `aovpn down`: only the owner or an administrator, and a device profile only
    /// an administrator (a user cannot stop the device tunnel).
    fn control_profile(
        &mut self,
        caller: Caller,
        name: &str,
        user: Option<u32>,
        connect: bool,
        now: Instant,
    ) -> Reply {
        let key = match self.resolve(caller, name, user) {
            Ok(k) => k,
            Err(e) => return Reply::error(e.to_string()),
        };
        if key.owner == Owner::Device && !caller.admin {
            return Reply::error(format!(
                "\"{name}\" is a device profile: only root or the agent's admin group can {} it",
                if connect { "connect" } else { "disconnect" }
            ));
        }
        let changed = if connect {
            self.holds.remove(&key);
            self.sup.connect(&key, now)
        } else {
            if self.holds.len() < MAX_HOLDS {
                self.holds.insert(key.clone());
            }
            self.sup.disconnect(&key, now)
        };
        save_holds(&self.config.state_dir.join("holds.json"), &self.holds);
        tracing::info!(profile = %key, by_uid = caller.uid, connect, "user command");
        if changed {
            Reply::ok()
        } else {
            Reply::error(format!("no profile named \"{name}\""))
        }
    }

    /// Says goodbye on every tunnel, waits for them, and restores DNS.
    async fn stop(mut self) {
        self.listener_task.abort();
        let _ = std::fs::remove_file(&self.config.socket);
        for running in self.running.values() {
            let _ = running.commands.send(Command::Stop).await;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !self.running.is_empty() {
            let report = tokio::time::timeout_at(deadline, self.reports_rx.recv()).await;
            match report {
                Ok(Some((key, generation, report))) => {
                    if let Report::Installed(record) = &report {
                        let _ = self.ledger.set(&dns_key(&key), record.clone());
                    }
                    if matches!(report, Report::Ended(_))
                        && self.running.get(&key).map(|r| r.generation) == Some(generation)
                    {
                        self.running.remove(&key);
                    }
                }
                _ => break,
            }
        }
        tracing::info!("agent stopped");
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn next_net_event(monitor: &mut Option<NetworkMonitor>) -> Option<NetEvent> {
    match monitor {
        Some(m) => m.next().await,
        None => std::future::pending().await,
    }
}

fn load_holds(path: &std::path::Path) -> BTreeSet<ProfileKey> {
    let Ok(bytes) = std::fs::read(path) else {
        return BTreeSet::new();
    };
    let list: Vec<(Option<u32>, String)> = serde_json::from_slice(&bytes).unwrap_or_default();
    list.into_iter()
        .map(|(uid, name)| ProfileKey {
            owner: uid.map_or(Owner::Device, Owner::User),
            name,
        })
        .collect()
}

fn save_holds(path: &std::path::Path, holds: &BTreeSet<ProfileKey>) {
    let list: Vec<(Option<u32>, &str)> = holds
        .iter()
        .map(|k| {
            let uid = match k.owner {
                Owner::Device => None,
                Owner::User(uid) => Some(uid),
            };
            (uid, k.name.as_str())
        })
        .collect();
    if let Ok(json) = serde_json::to_vec(&list)
        && netio::fs::replace_file(path, &json, 0o600, true).is_err()
    {
        tracing::warn!("{}: cannot save disconnect holds", path.display());
    }
}

/// Binds the control socket: world-connectable (every request is checked against the
/// caller's credentials), a stale socket of a dead agent replaced.
fn bind_socket(path: &std::path::Path) -> Result<UnixListener, AgentError> {
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

async fn accept_loop(
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
                                .map_err(|e| format!("bad signature encoding: {e}")),
                            (None, Some(e)) => Err(e),
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

/// Runs the agent until SIGTERM/SIGINT (the caller's `shutdown`).
pub async fn run(
    config: AgentConfig,
    stub: Option<crate::split_dns::StubSockets>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    let agent = Agent::start(config, stub).await?;
    agent.run(shutdown).await;
    Ok(())
}
