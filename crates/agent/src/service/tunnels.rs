//! Each profile's tunnel: its credentials (the machine's key, or the user's through their key
//! helper), its interface name, the connection task started for it, and what that task
//! reports back (up, addresses, ended and why).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tracing::Instrument;

use super::{Agent, MAX_USER_TUNNELS, OUR_LINKS_REMEMBERED, Running, dns_key};
use crate::connection::{self, Credentials, Outcome, Report};
use crate::helper::RemoteSigner;
use crate::plan::profile_tunnel;
use crate::supervisor::{Owner, ProfileKey};

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

impl Agent {
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

    pub(super) fn start_tunnel(&mut self, key: ProfileKey, server: usize) {
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

    pub(super) fn on_report(&mut self, key: ProfileKey, generation: u64, report: Report) {
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
}
