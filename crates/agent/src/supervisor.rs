//! The Always On policy, sans-IO: which profile's tunnel should be up, when the next attempt is
//! due and on which server. The agent feeds it what happened (profiles, logins, network
//! changes, resumes, trusted networks, tunnels that connected or ended, user commands) with the
//! time, and carries out the [`Action`]s it returns; time only enters as arguments, so every
//! rule is tested with a virtual clock.
//!
//! - The device tunnel is always wanted; an AlwaysOn user tunnel while its user is logged in
//!   (and that user's key helper is there to sign); any tunnel its owner asked for.
//! - Failed attempts walk the profile's server list, starting from the last server that worked;
//!   after a full round they back off exponentially with jitter up to a cap, and never stop
//!   while the tunnel is wanted. A network change or a resume resets the backoff.
//! - A tunnel that drops after it was up a while is re-dialled at once.
//! - TrustedNetworkDetection: on a trusted network AlwaysOn user tunnels stay down (and are
//!   taken down); the device tunnel ignores it, as on Windows.
//! - A user's disconnect of an AlwaysOn tunnel holds until that user connects it again.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// Who a profile belongs to: the machine (device scope) or a user (by uid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Owner {
    Device,
    User(u32),
}

/// A profile of an owner.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProfileKey {
    pub owner: Owner,
    pub name: String,
}

impl std::fmt::Display for ProfileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.owner {
            Owner::Device => write!(f, "{}", self.name),
            Owner::User(uid) => write!(f, "{} (uid {uid})", self.name),
        }
    }
}

/// What the policy needs to know of a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileSpec {
    pub servers: Vec<String>,
    pub always_on: bool,
    pub device_tunnel: bool,
    /// DNS suffixes of trusted networks (lower case).
    pub trusted_networks: Vec<String>,
    /// Why the profile cannot be run at all (it stays listed, never started).
    pub problem: Option<String>,
    /// Changes whenever the profile does: a running tunnel is restarted with the new one.
    pub revision: u64,
}

/// Backoff between failed rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        }
    }
}

/// What the agent must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start the profile's tunnel to this server (an index into its server list).
    Start { key: ProfileKey, server: usize },
    /// Stop the profile's tunnel (it reports its end with [`Supervisor::ended`]).
    Stop { key: ProfileKey },
}

/// Why a profile's tunnel is held down although it could run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    None,
    /// Its owner (or an administrator) disconnected it.
    ByUser,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Run {
    /// Not running, no attempt scheduled.
    Idle,
    /// The next attempt is due then.
    Waiting {
        until: Instant,
    },
    Connecting {
        server: usize,
        since: Instant,
    },
    Connected {
        server: usize,
        since: Instant,
    },
    /// Asked to stop; waits for its end, then does what `then` says.
    Stopping {
        then: AfterStop,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterStop {
    /// Decide again (restart if still wanted).
    Reconsider,
    /// The profile is gone: forget it.
    Forget,
}

#[derive(Debug, Clone)]
struct Slot {
    spec: ProfileSpec,
    run: Run,
    hold: Hold,
    /// The owner asked for it (manual connect of a profile that is not AlwaysOn).
    requested: bool,
    /// Failed attempts since the last success or reset.
    failures: u32,
    /// The server the current round started from, and the next one to try.
    round_start: usize,
    next_server: usize,
    last_good: Option<usize>,
    last_error: Option<String>,
    /// The latest attempts, oldest first (at most [`ATTEMPTS_KEPT`]).
    attempts: VecDeque<Attempt>,
}

/// How many attempts a profile's history keeps.
pub const ATTEMPTS_KEPT: usize = 5;

/// One attempt at bringing a tunnel up: where, when it started, and how it ended (`None`:
/// it came up).
#[derive(Debug, Clone)]
struct Attempt {
    server: usize,
    at: Instant,
    error: Option<String>,
}

/// A profile's recent past, as `aovpn status` and `aovpn doctor` show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct History {
    /// Whole rounds over the servers that failed since the last success (the backoff grows
    /// with them).
    pub failed_rounds: u32,
    /// The latest attempts, newest first.
    pub attempts: Vec<AttemptView>,
    /// The network's DNS suffix that matches the profile's TrustedNetworkDetection (which
    /// holds an AlwaysOn user tunnel down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_network: Option<String>,
}

/// One attempt as shown.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttemptView {
    pub server: String,
    pub ago_secs: u64,
    /// `None`: it came up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn record(slot: &mut Slot, server: usize, at: Instant, error: Option<String>) {
    if slot.attempts.len() == ATTEMPTS_KEPT {
        slot.attempts.pop_front();
    }
    slot.attempts.push_back(Attempt { server, at, error });
}

/// A profile's state as `aovpn list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    Connected {
        server: String,
        since_secs: u64,
    },
    Connecting {
        server: String,
    },
    /// Waiting to retry (or for the first attempt).
    Waiting {
        retry_in_secs: u64,
        last_error: Option<String>,
    },
    DisconnectedByUser,
    TrustedNetwork,
    /// The user is not logged in (or their key helper is not running).
    WaitingForUser,
    /// Not AlwaysOn and not asked for.
    Disconnected {
        last_error: Option<String>,
    },
    Disabled {
        reason: String,
    },
    Stopping,
}

/// One line for a profile's state, as `aovpn list` prints it.
impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connected { server, since_secs } => {
                write!(
                    f,
                    "connected to {server} for {}",
                    human_duration(*since_secs)
                )
            }
            Self::Connecting { server } => write!(f, "connecting to {server}"),
            Self::Waiting {
                retry_in_secs,
                last_error: Some(e),
            } => write!(f, "waiting {retry_in_secs} s to retry: {e}"),
            Self::Waiting {
                retry_in_secs,
                last_error: None,
            } => write!(f, "waiting {retry_in_secs} s to connect"),
            Self::DisconnectedByUser => f.write_str("disconnected by the user"),
            Self::TrustedNetwork => f.write_str("on a trusted network"),
            Self::WaitingForUser => f.write_str("waiting for the user's login"),
            Self::Disconnected {
                last_error: Some(e),
            } => write!(f, "disconnected (last error: {e})"),
            Self::Disconnected { last_error: None } => f.write_str("disconnected"),
            Self::Disabled { reason } => write!(f, "disabled: {reason}"),
            Self::Stopping => f.write_str("disconnecting"),
        }
    }
}

/// A duration in seconds as people read it in a status line: `42s`, `3m07s`, `2h05m`.
pub fn human_duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The Always On policy for every profile on the machine.
#[derive(Debug)]
pub struct Supervisor {
    slots: BTreeMap<ProfileKey, Slot>,
    backoff: Backoff,
    /// Users with a login session.
    sessions: BTreeSet<u32>,
    /// Users whose key helper is connected.
    signers: BTreeSet<u32>,
    /// The network is trusted (TrustedNetworkDetection), with the matching suffix.
    trusted: Vec<String>,
    actions: VecDeque<Action>,
    /// xorshift state for jitter (seeded by the caller).
    rng: u64,
}

/// A tunnel that was up at least this long is re-dialled at once when it drops; one that drops
/// sooner counts as a failed attempt (so that a gateway that takes us in and throws us out does
/// not make us hammer it).
const STABLE_AFTER: Duration = Duration::from_secs(30);

impl Supervisor {
    /// An empty policy; `seed` makes the jitter differ between machines.
    pub fn new(backoff: Backoff, seed: u64) -> Self {
        Self {
            slots: BTreeMap::new(),
            backoff,
            sessions: BTreeSet::new(),
            signers: BTreeSet::new(),
            trusted: Vec::new(),
            actions: VecDeque::new(),
            rng: seed | 1,
        }
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Supervisor::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.slots
            .values()
            .filter_map(|s| match s.run {
                Run::Waiting { until } => Some(until),
                _ => None,
            })
            .min()
    }

    /// Starts the attempts that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<ProfileKey> = self
            .slots
            .iter()
            .filter(|(_, s)| matches!(s.run, Run::Waiting { until } if until <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.start(&key, now);
        }
    }

    /// The profiles `owner` has now (all of them: missing ones are removed).
    pub fn set_profiles(
        &mut self,
        owner: Owner,
        profiles: Vec<(String, ProfileSpec)>,
        now: Instant,
    ) {
        let names: BTreeSet<String> = profiles.iter().map(|(n, _)| n.clone()).collect();
        let gone: Vec<ProfileKey> = self
            .slots
            .keys()
            .filter(|k| k.owner == owner && !names.contains(&k.name))
            .cloned()
            .collect();
        for key in gone {
            self.forget(&key);
        }
        for (name, spec) in profiles {
            let key = ProfileKey { owner, name };
            match self.slots.get_mut(&key) {
                Some(slot) if slot.spec == spec => {}
                Some(slot) => {
                    let changed_servers = slot.spec.servers != spec.servers;
                    slot.spec = spec;
                    if changed_servers {
                        slot.last_good = None;
                        slot.next_server = 0;
                        slot.round_start = 0;
                    }
                    if matches!(slot.run, Run::Connecting { .. } | Run::Connected { .. }) {
                        slot.run = Run::Stopping {
                            then: AfterStop::Reconsider,
                        };
                        self.actions.push_back(Action::Stop { key: key.clone() });
                    } else {
                        self.reconsider(&key, now);
                    }
                }
                None => {
                    self.slots.insert(
                        key.clone(),
                        Slot {
                            spec,
                            run: Run::Idle,
                            hold: Hold::None,
                            requested: false,
                            failures: 0,
                            round_start: 0,
                            next_server: 0,
                            last_good: None,
                            last_error: None,
                            attempts: VecDeque::new(),
                        },
                    );
                    self.reconsider(&key, now);
                }
            }
        }
    }

    /// A user's profiles can come up only while they are logged in.
    pub fn set_session(&mut self, uid: u32, present: bool, now: Instant) {
        let changed = if present {
            self.sessions.insert(uid)
        } else {
            self.sessions.remove(&uid)
        };
        if changed {
            self.reconsider_owner(Owner::User(uid), now);
        }
    }

    /// A user's tunnels sign through their key helper; without it they cannot run.
    pub fn set_signer(&mut self, uid: u32, present: bool, now: Instant) {
        let changed = if present {
            self.signers.insert(uid)
        } else {
            self.signers.remove(&uid)
        };
        if changed {
            self.reconsider_owner(Owner::User(uid), now);
        }
    }

    /// The suffixes of the physical network that match a profile's trusted networks are
    /// computed by the caller per profile; this sets the machine's current suffixes.
    pub fn set_network_suffixes(&mut self, suffixes: Vec<String>, now: Instant) {
        if suffixes == self.trusted {
            return;
        }
        self.trusted = suffixes;
        let keys: Vec<ProfileKey> = self.slots.keys().cloned().collect();
        for key in keys {
            self.reconsider(&key, now);
        }
    }

    /// The network changed, or the machine resumed: waiting tunnels try again now, with a fresh
    /// backoff.
    pub fn network_changed(&mut self, now: Instant) {
        for slot in self.slots.values_mut() {
            slot.failures = 0;
            if matches!(slot.run, Run::Waiting { .. }) {
                slot.run = Run::Waiting { until: now };
            }
        }
    }

    /// The tunnel carries traffic.
    pub fn connected(&mut self, key: &ProfileKey, now: Instant) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if let Run::Connecting { server, since } = slot.run {
            record(slot, server, since, None);
            slot.run = Run::Connected { server, since: now };
            slot.last_good = Some(server);
            slot.failures = 0;
            slot.last_error = None;
        }
    }

    /// The tunnel ended (stopped, failed to come up, or dropped); `error` says why unless it
    /// was asked to stop.
    pub fn ended(&mut self, key: &ProfileKey, error: Option<String>, now: Instant) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if error.is_some() {
            slot.last_error.clone_from(&error);
        }
        if let Run::Connecting { server, since } = slot.run {
            record(
                slot,
                server,
                since,
                Some(error.unwrap_or_else(|| "stopped".into())),
            );
        }
        match std::mem::replace(&mut slot.run, Run::Idle) {
            Run::Stopping {
                then: AfterStop::Forget,
            } => {
                self.slots.remove(key);
            }
            Run::Stopping {
                then: AfterStop::Reconsider,
            } => self.reconsider(key, now),
            Run::Connected { server, since } => {
                slot.requested &= slot.spec.always_on || slot.spec.device_tunnel;
                if now.saturating_duration_since(since) >= STABLE_AFTER {
                    // It worked a while: the same server again, at once.
                    slot.failures = 0;
                    slot.next_server = server;
                    slot.round_start = server;
                    self.reconsider(key, now);
                } else {
                    self.failed(key, server, now);
                }
            }
            Run::Connecting { server, .. } => self.failed(key, server, now),
            Run::Idle | Run::Waiting { .. } => self.reconsider(key, now),
        }
    }

    /// The owner (or an administrator) asks for the tunnel: any hold ends, it starts now.
    pub fn connect(&mut self, key: &ProfileKey, now: Instant) -> bool {
        let Some(slot) = self.slots.get_mut(key) else {
            return false;
        };
        slot.hold = Hold::None;
        slot.requested = true;
        slot.failures = 0;
        if matches!(slot.run, Run::Waiting { .. } | Run::Idle) {
            slot.run = Run::Idle;
        }
        self.reconsider(key, now);
        true
    }

    /// The owner (or an administrator) disconnects the tunnel; an AlwaysOn one stays down until
    /// connected again.
    pub fn disconnect(&mut self, key: &ProfileKey, now: Instant) -> bool {
        let Some(slot) = self.slots.get_mut(key) else {
            return false;
        };
        slot.hold = Hold::ByUser;
        slot.requested = false;
        self.reconsider(key, now);
        true
    }

    /// Holds from before a restart (the profiles a user disconnected).
    pub fn held_by_user(&self) -> Vec<ProfileKey> {
        self.slots
            .iter()
            .filter(|(_, s)| s.hold == Hold::ByUser)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Restores a hold saved before a restart (before the profile is known is fine too: the
    /// caller sets it right after `set_profiles`).
    pub fn restore_hold(&mut self, key: &ProfileKey, now: Instant) {
        if let Some(slot) = self.slots.get_mut(key) {
            slot.hold = Hold::ByUser;
            self.reconsider(key, now);
        }
    }

    /// Every profile with its state.
    pub fn states(&self, now: Instant) -> Vec<(ProfileKey, State)> {
        self.slots
            .iter()
            .map(|(k, s)| (k.clone(), self.state_of(k, s, now)))
            .collect()
    }

    /// The profile's recent attempts, failed rounds and trusted-network match.
    pub fn history(&self, key: &ProfileKey, now: Instant) -> Option<History> {
        let slot = self.slots.get(key)?;
        let server = |i: usize| slot.spec.servers.get(i).cloned().unwrap_or_default();
        Some(History {
            failed_rounds: slot.failures,
            attempts: slot
                .attempts
                .iter()
                .rev()
                .map(|a| AttemptView {
                    server: server(a.server),
                    ago_secs: now.saturating_duration_since(a.at).as_secs(),
                    error: a.error.clone(),
                })
                .collect(),
            trusted_network: self.trusted_match(&slot.spec).map(str::to_owned),
        })
    }

    /// The trusted-network suffix that holds this profile down, if any.
    pub fn trusted_match(&self, spec: &ProfileSpec) -> Option<&str> {
        if spec.device_tunnel {
            return None;
        }
        self.trusted
            .iter()
            .find(|s| spec.trusted_networks.iter().any(|t| t == *s))
            .map(String::as_str)
    }

    fn state_of(&self, key: &ProfileKey, s: &Slot, now: Instant) -> State {
        let server = |i: usize| s.spec.servers.get(i).cloned().unwrap_or_default();
        match &s.run {
            Run::Connected { server: i, since } => State::Connected {
                server: server(*i),
                since_secs: now.saturating_duration_since(*since).as_secs(),
            },
            Run::Connecting { server: i, .. } => State::Connecting { server: server(*i) },
            Run::Stopping { .. } => State::Stopping,
            Run::Waiting { until } => State::Waiting {
                retry_in_secs: until.saturating_duration_since(now).as_secs(),
                last_error: s.last_error.clone(),
            },
            Run::Idle => {
                if let Some(reason) = &s.spec.problem {
                    State::Disabled {
                        reason: reason.clone(),
                    }
                } else if s.hold == Hold::ByUser {
                    State::DisconnectedByUser
                } else if s.spec.always_on && self.trusted_match(&s.spec).is_some() {
                    State::TrustedNetwork
                } else if let Owner::User(uid) = key.owner
                    && !(self.sessions.contains(&uid) && self.signers.contains(&uid))
                {
                    State::WaitingForUser
                } else {
                    State::Disconnected {
                        last_error: s.last_error.clone(),
                    }
                }
            }
        }
    }

    /// Whether the profile's tunnel should be up now.
    fn wanted(&self, key: &ProfileKey, s: &Slot) -> bool {
        if s.spec.problem.is_some() || s.hold == Hold::ByUser || s.spec.servers.is_empty() {
            return false;
        }
        let user_ok = match key.owner {
            Owner::Device => true,
            Owner::User(uid) => self.sessions.contains(&uid) && self.signers.contains(&uid),
        };
        if !user_ok {
            return false;
        }
        if s.spec.device_tunnel {
            return true;
        }
        if s.spec.always_on && self.trusted_match(&s.spec).is_none() {
            return true;
        }
        s.requested
    }

    fn reconsider_owner(&mut self, owner: Owner, now: Instant) {
        let keys: Vec<ProfileKey> = self
            .slots
            .keys()
            .filter(|k| k.owner == owner)
            .cloned()
            .collect();
        for key in keys {
            self.reconsider(&key, now);
        }
    }

    /// Brings the slot in line with whether it is wanted.
    fn reconsider(&mut self, key: &ProfileKey, now: Instant) {
        let Some(slot) = self.slots.get(key) else {
            return;
        };
        let wanted = self.wanted(key, slot);
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        match (&slot.run, wanted) {
            (Run::Idle, true) => {
                slot.run = Run::Waiting { until: now };
                self.handle_timeout(now);
            }
            (Run::Waiting { .. }, false) => slot.run = Run::Idle,
            (Run::Connecting { .. } | Run::Connected { .. }, false) => {
                slot.run = Run::Stopping {
                    then: AfterStop::Reconsider,
                };
                self.actions.push_back(Action::Stop { key: key.clone() });
            }
            _ => {}
        }
    }

    fn start(&mut self, key: &ProfileKey, now: Instant) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let count = slot.spec.servers.len().max(1);
        let server = slot.next_server % count;
        slot.run = Run::Connecting { server, since: now };
        self.actions.push_back(Action::Start {
            key: key.clone(),
            server,
        });
    }

    /// An attempt on `server` failed: the next server now, or after a full round, a backoff.
    fn failed(&mut self, key: &ProfileKey, server: usize, now: Instant) {
        let jitter = self.next_random();
        let backoff = self.backoff;
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let count = slot.spec.servers.len().max(1);
        let next = (server + 1) % count;
        slot.next_server = next;
        slot.run = Run::Idle;
        if next == slot.round_start {
            // A whole round failed: wait, longer each round, with jitter.
            slot.failures = slot.failures.saturating_add(1);
            let exp = backoff
                .initial
                .saturating_mul(1u32 << (slot.failures - 1).min(16))
                .min(backoff.cap);
            // Between half and all of the delay (full jitter would allow retry storms of 0).
            let delay = exp / 2 + exp.mul_f64(0.5 * jitter);
            slot.run = Run::Waiting { until: now + delay };
            // The next round starts where the last success was, if any.
            if let Some(good) = slot.last_good {
                slot.next_server = good;
                slot.round_start = good;
            }
        } else {
            slot.run = Run::Waiting { until: now };
        }
        let wanted = self.slots.get(key).is_some_and(|s| self.wanted(key, s));
        if !wanted && let Some(slot) = self.slots.get_mut(key) {
            slot.run = Run::Idle;
        }
        self.handle_timeout(now);
    }

    fn forget(&mut self, key: &ProfileKey) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        match slot.run {
            Run::Connecting { .. } | Run::Connected { .. } => {
                slot.run = Run::Stopping {
                    then: AfterStop::Forget,
                };
                self.actions.push_back(Action::Stop { key: key.clone() });
            }
            Run::Stopping { .. } => {
                slot.run = Run::Stopping {
                    then: AfterStop::Forget,
                };
            }
            Run::Idle | Run::Waiting { .. } => {
                self.slots.remove(key);
            }
        }
    }

    /// A number in [0, 1) (xorshift64*; quality is irrelevant, spread is all we need).
    fn next_random(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        v as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(servers: &[&str], always_on: bool, device: bool) -> ProfileSpec {
        ProfileSpec {
            servers: servers.iter().map(|s| s.to_string()).collect(),
            always_on,
            device_tunnel: device,
            trusted_networks: vec!["corp.example".into()],
            problem: None,
            revision: 1,
        }
    }

    fn key(owner: Owner, name: &str) -> ProfileKey {
        ProfileKey {
            owner,
            name: name.into(),
        }
    }

    fn actions(s: &mut Supervisor) -> Vec<Action> {
        std::iter::from_fn(|| s.poll_action()).collect()
    }

    fn start(k: &ProfileKey, server: usize) -> Action {
        Action::Start {
            key: k.clone(),
            server,
        }
    }

    /// Runs the supervisor's clock to its next timer; returns the new time.
    fn advance(s: &mut Supervisor, now: Instant) -> Instant {
        let at = s.poll_timeout().unwrap();
        assert!(at >= now);
        s.handle_timeout(at);
        at
    }

    /// The history `aovpn status` and the doctor show: the latest attempts newest first with
    /// their servers and errors, bounded; failed rounds; the trusted-network match.
    #[test]
    fn history_keeps_the_latest_attempts_and_the_failed_rounds() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(Backoff::default(), 7);
        let dev = key(Owner::Device, "Device");
        s.set_profiles(
            Owner::Device,
            vec![("Device".into(), spec(&["a", "b"], true, true))],
            t0,
        );
        let mut now = t0;
        for i in 0..4 {
            actions(&mut s);
            s.ended(&dev, Some(format!("no answer {i}a")), now);
            actions(&mut s);
            s.ended(&dev, Some(format!("no answer {i}b")), now);
            now = advance(&mut s, now);
        }
        let h = s.history(&dev, now + Duration::from_secs(3)).unwrap();
        assert_eq!(h.failed_rounds, 4);
        assert_eq!(h.attempts.len(), ATTEMPTS_KEPT);
        assert_eq!(h.attempts[0].server, "b");
        assert_eq!(h.attempts[0].error.as_deref(), Some("no answer 3b"));
        assert_eq!(h.attempts[1].error.as_deref(), Some("no answer 3a"));
        assert!(h.attempts[0].ago_secs >= 3);
        assert_eq!(h.trusted_network, None);
        // It comes up: recorded without an error, and the rounds start over.
        actions(&mut s);
        s.connected(&dev, now);
        let h = s.history(&dev, now).unwrap();
        assert_eq!((h.failed_rounds, h.attempts[0].error.clone()), (0, None));
        assert_eq!(h.attempts[0].server, "a");
        // A user tunnel on a trusted network says which suffix matched.
        let user = key(Owner::User(1000), "Corp");
        s.set_profiles(
            Owner::User(1000),
            vec![("Corp".into(), spec(&["a"], true, false))],
            now,
        );
        s.set_network_suffixes(vec!["corp.example".into()], now);
        let h = s.history(&user, now).unwrap();
        assert_eq!(h.trusted_network.as_deref(), Some("corp.example"));
    }

    #[test]
    fn the_device_tunnel_starts_at_once_without_anyone_logged_in() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(Backoff::default(), 7);
        let dev = key(Owner::Device, "Device");
        s.set_profiles(
            Owner::Device,
            vec![("Device".into(), spec(&["a"], true, true))],
            t0,
        );
        assert_eq!(actions(&mut s), vec![start(&dev, 0)]);
        s.connected(&dev, t0);
        assert!(matches!(s.states(t0)[0].1, State::Connected { .. }));
    }

    #[test]
    fn user_tunnels_follow_login_and_logout_and_need_the_key_helper() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(Backoff::default(), 7);
        let user = key(Owner::User(1000), "Corp");
        s.set_profiles(
            Owner::User(1000),
            vec![("Corp".into(), spec(&["a"], true, false))],
            t0,
        );
        assert!(actions(&mut s).is_empty());
        assert_eq!(s.states(t0)[0].1, State::WaitingForUser);
        s.set_session(1000, true, t0);
        assert!(actions(&mut s).is_empty(), "no helper yet");
        s.set_signer(1000, true, t0);
        assert_eq!(actions(&mut s), vec![start(&user, 0)]);
        s.connected(&user, t0);
        // Logout: the user tunnel goes; nobody else is touched.
        s.set_session(1000, false, t0);
        assert_eq!(actions(&mut s), vec![Action::Stop { key: user.clone() }]);
        s.ended(&user, None, t0);
        assert!(actions(&mut s).is_empty());
        assert_eq!(s.states(t0)[0].1, State::WaitingForUser);
    }

    #[test]
    fn failures_walk_the_servers_then_back_off_exponentially_up_to_the_cap() {
        let t0 = Instant::now();
        let backoff = Backoff {
            initial: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        };
        let mut s = Supervisor::new(backoff, 42);
        let dev = key(Owner::Device, "Device");
        s.set_profiles(
            Owner::Device,
            vec![("Device".into(), spec(&["a", "b"], true, true))],
            t0,
        );
        assert_eq!(actions(&mut s), vec![start(&dev, 0)]);
        let mut now = t0;
        let mut waits = Vec::new();
        for round in 0..10 {
            // Server a fails: b is tried at once.
            s.ended(&dev, Some("timeout".into()), now);
            assert_eq!(actions(&mut s), vec![start(&dev, 1)], "round {round}");
            // b fails too: a full round, so a wait.
            s.ended(&dev, Some("timeout".into()), now);
            assert!(actions(&mut s).is_empty());
            let State::Waiting { last_error, .. } = &s.states(now)[0].1 else {
                panic!("not waiting");
            };
            assert_eq!(last_error.as_deref(), Some("timeout"));
            let next = advance(&mut s, now);
            waits.push(next - now);
            now = next;
            assert_eq!(actions(&mut s), vec![start(&dev, 0)]);
        }
        // Exponential: each wait lies between half and all of 1, 2, 4, ... s, capped at 60 s.
        for (i, w) in waits.iter().enumerate() {
            let exp = Duration::from_secs(1 << i.min(16)).min(Duration::from_secs(60));
            assert!(*w >= exp / 2 && *w <= exp, "wait {i}: {w:?} for {exp:?}");
        }
        assert!(waits[9] >= Duration::from_secs(30));
        // A network change resets the backoff: the next attempt is now.
        s.ended(&dev, Some("timeout".into()), now);
        assert_eq!(actions(&mut s), vec![start(&dev, 1)]);
        s.ended(&dev, Some("timeout".into()), now);
        assert!(s.poll_timeout().unwrap() > now);
        s.network_changed(now);
        assert_eq!(s.poll_timeout(), Some(now));
        s.handle_timeout(now);
        assert_eq!(actions(&mut s), vec![start(&dev, 0)]);
    }

    #[test]
    fn the_next_round_starts_from_the_last_server_that_worked() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(Backoff::default(), 1);
        let dev = key(Owner::Device, "Device");
        s.set_profiles(
            Owner::Device,
            vec![("Device".into(), spec(&["a", "b", "c"], true, true))],
            t0,
        );
        assert_eq!(actions(&mut s), vec![start(&dev, 0)]);
        s.ended(&dev, Some("down".into()), t0);
        assert_eq!(actions(&mut s), vec![start(&dev, 1)]);
        s.connected(&dev, t0);
        // Up for an hour, then dropped: b again, at once.
        let later = t0 + Duration::from_secs(3600);
        s.ended(&dev, Some("gateway gone".into()), later);
        assert_eq!(actions(&mut s), vec![start(&dev, 1)]);
        // b fails: c, then a, then (a round) wait and start again from b.
        s.ended(&dev, Some("x".into()), later);
        assert_eq!(actions(&mut s), vec![start(&dev, 2)]);
        s.ended(&dev, Some("x".into()), later);
        assert_eq!(actions(&mut s), vec![start(&dev, 0)]);
        s.ended(&dev, Some("x".into()), later);
        assert!(actions(&mut s).is_empty());
        advance(&mut s, later);
        assert_eq!(actions(&mut s), vec![start(&dev, 1)]);
    }

    #[test]
    fn a_tunnel_that_drops_at_once_counts_as_a_failure() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(Backoff::default(), 1);
        let dev = key(Owner::Device, "Device");
        s.set_profiles(
            Owner::Device,
            vec![("Device".into(), spec(&["a"], true, true))],
            t0,
        );
        actions(&mut s);
        s.connected(&dev, t0);
        s.ended(&dev, Some("closed".into()), t0 + Duration::from_secs(1));
        assert!(actions(&mut s).is_empty(), "not re-dialled at once");
        assert!(s.poll_timeout().unwrap() > t0 + Duration::from_secs(1));
    }

    #[test]
    fn trusted_networks_hold_always_on_user_tunnels_but_not_the_device_tunnel() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(Backoff::default(), 1);
        let dev = key(Owner::Device, "Device");
        let user = key(Owner::User(1000), "Corp");
        s.set_profiles(
            Owner::Device,
            vec![("Device".into(), spec(&["a"], true, true))],
            t0,
        );
        s.set_profiles(
            Owner::User(1000),
            vec![("Corp".into(), spec(&["a"], true, false))],
            t0,
        );
        s.set_session(1000, true, t0);
        s.set_signer(1000, true, t0);
        assert_eq!(actions(&mut s), vec![start(&dev, 0), start(&user, 0)]);
        s.connected(&dev, t0);
        s.connected(&user, t0);
        s.set_network_suffixes(vec!["corp.example".into()], t0);
        assert_eq!(actions(&mut s), vec![Action::Stop { key: user.clone() }]);
        s.ended(&user, None, t0);
        let states = s.states(t0);
        assert!(matches!(states[0].1, State::Connected { .. }), "{states:?}");
        assert_eq!(states[1].1, State::TrustedNetwork);
        // Leaving the trusted network brings it back.
        s.set_network_suffixes(vec!["home.example".into()], t0);
        assert_eq!(actions(&mut s), vec![start(&user, 0)]);
    }

    #[test]
    fn a_user_disconnect_holds_until_the_user_connects_again() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(Backoff::default(), 1);
        let user = key(Owner::User(1000), "Corp");
        s.set_profiles(
            Owner::User(1000),
            vec![("Corp".into(), spec(&["a"], true, false))],
            t0,
        );
        s.set_session(1000, true, t0);
        s.set_signer(1000, true, t0);
        actions(&mut s);
        s.connected(&user, t0);
        assert!(s.disconnect(&user, t0));
        assert_eq!(actions(&mut s), vec![Action::Stop { key: user.clone() }]);
        s.ended(&user, None, t0);
        // Network changes and logins do not bring it back.
        s.network_changed(t0);
        s.set_session(1000, false, t0);
        s.set_session(1000, true, t0);
        s.handle_timeout(t0 + Duration::from_secs(3600));
        assert!(actions(&mut s).is_empty());
        assert_eq!(s.states(t0)[0].1, State::DisconnectedByUser);
        assert_eq!(s.held_by_user(), vec![user.clone()]);
        assert!(s.connect(&user, t0));
        assert_eq!(actions(&mut s), vec![start(&user, 0)]);
    }

    #[test]
    fn a_changed_profile_restarts_its_tunnel_and_a_removed_one_stops() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(Backoff::default(), 1);
        let dev = key(Owner::Device, "Device");
        s.set_profiles(
            Owner::Device,
            vec![("Device".into(), spec(&["a"], true, true))],
            t0,
        );
        actions(&mut s);
        s.connected(&dev, t0);
        let mut changed = spec(&["b"], true, true);
        changed.revision = 2;
        s.set_profiles(Owner::Device, vec![("Device".into(), changed)], t0);
        assert_eq!(actions(&mut s), vec![Action::Stop { key: dev.clone() }]);
        s.ended(&dev, None, t0);
        assert_eq!(actions(&mut s), vec![start(&dev, 0)]);
        s.connected(&dev, t0);
        s.set_profiles(Owner::Device, Vec::new(), t0);
        assert_eq!(actions(&mut s), vec![Action::Stop { key: dev.clone() }]);
        s.ended(&dev, None, t0);
        assert!(s.states(t0).is_empty());
        assert!(actions(&mut s).is_empty());
    }

    #[test]
    fn a_manual_profile_connects_when_asked_and_is_not_redialled() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(Backoff::default(), 1);
        let dev = key(Owner::Device, "Lab");
        s.set_profiles(
            Owner::Device,
            vec![("Lab".into(), spec(&["a"], false, false))],
            t0,
        );
        assert!(actions(&mut s).is_empty());
        assert!(matches!(s.states(t0)[0].1, State::Disconnected { .. }));
        s.connect(&dev, t0);
        assert_eq!(actions(&mut s), vec![start(&dev, 0)]);
        s.connected(&dev, t0);
        s.ended(&dev, Some("closed".into()), t0 + Duration::from_secs(100));
        assert!(actions(&mut s).is_empty());
        assert!(s.poll_timeout().is_none());
    }

    #[test]
    fn a_profile_with_a_problem_is_listed_and_never_started() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(Backoff::default(), 1);
        let mut bad = spec(&["a"], true, true);
        bad.problem = Some("EAP method 25 is not supported".into());
        s.set_profiles(Owner::Device, vec![("Device".into(), bad)], t0);
        assert!(actions(&mut s).is_empty());
        assert_eq!(
            s.states(t0)[0].1,
            State::Disabled {
                reason: "EAP method 25 is not supported".into()
            }
        );
    }
}
