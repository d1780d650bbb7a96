//! The agent's answers on its control socket: `aovpn list/status/up/down` requests and the
//! users' key helpers coming and going, checked against the caller's credentials.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use profile::Scope;
use tokio::sync::oneshot;

use super::control_socket::{Caller, ControlEvent};
use super::{Agent, Helper, MAX_HOLDS, save_holds};
use crate::config::user_name;
use crate::connection::Command;
use crate::control::{MAX_USER_PROFILES, ProfileText, ProfileView, Reply, Request};
use crate::supervisor::{Owner, ProfileKey, State};

/// Most certificates, and bytes, in a helper's chain.
const MAX_CHAIN_CERTS: usize = 8;
const MAX_CHAIN_BYTES: usize = 64 * 1024;
/// How long a status request waits for a tunnel's counters.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// A profile name the caller has no profile (or no right to see one) under.
#[derive(Debug, thiserror::Error)]
#[error("no profile named \"{0}\"")]
struct UnknownProfile(String);

impl Agent {
    pub(super) fn on_control(&mut self, event: ControlEvent) {
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
}
