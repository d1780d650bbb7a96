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
mod tests;
