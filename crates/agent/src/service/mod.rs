//! `aovpn agent`: the one privileged service that owns every tunnel on the machine (the Linux
//! counterpart of Windows' RasMan). It keeps the device tunnel up from boot, each user's
//! AlwaysOn tunnels up while that user is logged in, follows the network (rtnetlink), logins
//! and sleep (logind), answers `aovpn list/status/up/down` on its control socket, and leaves
//! nothing behind, even after being killed.
//!
//! The policy lives in [`crate::supervisor`]; this is its shell: it turns the machine's events
//! into the supervisor's inputs and its actions into running [`crate::connection`]s.
//!
//! Here: the agent's state and its event loop (network, logins, store rescans, LockDown,
//! persistent DNS). Beside it: `tunnels` (credentials, starting a profile's connection, its
//! reports), `requests` (what the control socket's callers ask), `control_socket` (accepting
//! and reading connections, checking who is calling), `lockdown` (kept across reboots).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netio::netlink::{NetEvent, Netlink, NetworkMonitor};
use profile::plan::ConnectionPlan;
use profile::{ParsedProfile, Scope};
use tokio::sync::mpsc;

use crate::config::{AgentConfig, SessionSource};
use crate::connection::{Command, Report};
use crate::dns::SharedDns;
use crate::helper::HelperLink;
use crate::ledger::Ledger;
use crate::logind::{self, LoginEvent};
use crate::supervisor::{Action, Owner, ProfileKey, ProfileSpec, State, Supervisor};

mod control_socket;
mod lockdown;
mod requests;
mod tunnels;

use control_socket::{ControlEvent, accept_loop, bind_socket};
use lockdown::lockdown_worker;
pub use lockdown::{LOCKDOWN_STATE, LockdownRestoreError, restore_lockdown};

/// Network events closer together than this count as one change.
const NETWORK_SETTLE: Duration = Duration::from_millis(300);
/// How often the system profile store is read again.
const STORE_RESCAN: Duration = Duration::from_secs(2);
/// How often the trusted-network suffixes are looked at (besides every network change).
const TRUSTED_RECHECK: Duration = Duration::from_secs(5);
/// Most tunnels one user's profiles run at once.
const MAX_USER_TUNNELS: usize = 4;
/// Most disconnect holds kept.
const MAX_HOLDS: usize = 1024;

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
    our_routes: std::collections::VecDeque<netio::netlink::Route>,
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
