//! What the operator sees and does on a running gateway: admin-socket requests (sessions,
//! revoke, disconnect, reload), the admin page, the metrics snapshot, and a reload that
//! re-checks every session against the new trust.

use std::sync::{Arc, Mutex};

use ikev2::IkeSaId;
use ipsec_crypto::Provider;

use super::Gateway;
use crate::admin::{self, Session};
use crate::config::{ConfigError, GatewayConfig};
use crate::credentials::load_credentials;
use crate::pool::LeasePool;
use crate::responder::{group_policies, responder_config};

impl Gateway {
    /// A request from the admin socket.
    pub(super) fn on_admin(&mut self, request: admin::Request) -> admin::Reply {
        use admin::{Reply, Request};
        match request {
            Request::Sessions => Reply {
                ok: true,
                sessions: self.sessions(),
                ..Reply::default()
            },
            Request::Disconnect { target } => {
                let ids: Vec<(IkeSaId, String)> = self
                    .driver
                    .sas()
                    .filter_map(|(id, r)| {
                        let s = Session::of(r, tunnel::Traffic::default())?;
                        s.is(&target).then_some((id, s.identity))
                    })
                    .collect();
                if ids.is_empty() {
                    return Reply::error(format!("no session of {target:?}"));
                }
                for (id, identity) in &ids {
                    tracing::info!(peer = %identity, "disconnected by the administrator");
                    self.driver.delete(*id);
                }
                self.status_changed();
                Reply::done(format!(
                    "{} session(s) of {} disconnected (their address stays theirs)",
                    ids.len(),
                    ids[0].1
                ))
            }
            Request::Revoke { thumbprint } => {
                let Ok(tp) = thumbprint.parse::<pki::Thumbprint>() else {
                    return Reply::error(format!(
                        "{thumbprint:?} is not a SHA-1 thumbprint (40 hex digits)"
                    ));
                };
                let Some(file) = self.config.clients.revocation_file.clone() else {
                    return Reply::error("no clients.revocation_file");
                };
                let added = match admin::append_revocation(&file, &tp) {
                    Ok(added) => added,
                    Err(e) => return Reply::error(e.to_string()),
                };
                match self.reload() {
                    Ok(disconnected) => Reply::done(format!(
                        "{tp} {} {}; {disconnected} session(s) disconnected",
                        if added { "added to" } else { "already in" },
                        file.display()
                    )),
                    Err(e) => Reply::error(format!(
                        "{tp} added to {}, but the configuration no longer loads, so it is not in force yet: {e}",
                        file.display()
                    )),
                }
            }
            Request::Drain { to, disconnect } => self.drain(to.as_deref(), disconnect),
            Request::Reload => match self.reload() {
                Ok(disconnected) => Reply::done(format!(
                    "configuration reloaded; {disconnected} session(s) disconnected"
                )),
                Err(e) => Reply::error(format!("kept the old configuration: {e}")),
            },
        }
    }

    /// Redirects new clients that can follow a REDIRECT to `to` (RFC 5685) instead of
    /// serving them; with `disconnect`, also ends the sessions here, so that their clients
    /// reconnect and are redirected in turn (those that cannot follow are served here again).
    /// `None` stops redirecting. A restart ends a drain; a reload keeps it.
    fn drain(&mut self, to: Option<&str>, disconnect: bool) -> admin::Reply {
        let Some(to) = to else {
            self.driver.set_redirect(None);
            tracing::info!("drain ended: new clients are served here again");
            return admin::Reply::done("new clients are served here again");
        };
        let gateway = match to.parse::<std::net::IpAddr>() {
            Ok(ip) if self.config.listen.addresses.contains(&ip) => {
                return admin::Reply::error(format!(
                    "{ip} is this gateway: clients would be sent back here"
                ));
            }
            Ok(ip) => ikev2::GatewayIdentity::from(ip),
            Err(_) => match ikev2::GatewayIdentity::fqdn(to) {
                Some(name) => name,
                None => {
                    return admin::Reply::error(format!(
                        "{to:?} is neither an address nor a host name"
                    ));
                }
            },
        };
        self.driver.set_redirect(Some(gateway.clone()));
        let sessions: Vec<IkeSaId> = self
            .driver
            .sas()
            .filter(|(_, r)| Session::of(r, tunnel::Traffic::default()).is_some())
            .map(|(id, _)| id)
            .collect();
        if disconnect {
            for id in &sessions {
                self.driver.delete(*id);
            }
            self.status_changed();
        }
        tracing::info!(
            to = %gateway,
            sessions = sessions.len(),
            disconnected = disconnect,
            "draining: new clients that follow RFC 5685 redirects go to the other gateway"
        );
        admin::Reply::done(if disconnect {
            format!(
                "new clients that can follow a redirect go to {gateway}; {} session(s) ended: aovpn clients reconnect there, clients that cannot follow are served here again",
                sessions.len()
            )
        } else {
            format!(
                "new clients that can follow a redirect go to {gateway}; {} session(s) stay here until they end (--disconnect ends them)",
                sessions.len()
            )
        })
    }

    /// A request to the admin page.
    pub(super) fn on_web(&mut self, request: &crate::http::Request) -> crate::http::Response {
        use crate::web::{AdminPage, PoolUse, Route};
        let Some((_, page)) = &mut self.web else {
            return crate::http::Response::text("404 Not Found", "no admin page\n");
        };
        let random = || Provider::system().random_array::<16>().unwrap_or_default();
        match page.route(request, tunnel::host::unix_now(), random) {
            Route::Respond(response) => response,
            Route::State => {
                let pools = self
                    .snapshot()
                    .pools
                    .into_iter()
                    .map(|(group, size, leased)| PoolUse {
                        group,
                        size,
                        leased,
                    })
                    .collect();
                let sessions = self.sessions();
                match &self.web {
                    Some((_, page)) => {
                        page.state_response(tunnel::host::unix_now(), sessions, pools)
                    }
                    None => crate::http::Response::text("404 Not Found", "no admin page\n"),
                }
            }
            Route::Disconnect { target } => {
                tracing::info!(%target, "admin page: disconnect");
                let reply = self.on_admin(admin::Request::Disconnect { target });
                AdminPage::disconnect_response(&reply)
            }
        }
    }

    /// The page's throughput chart: every session's bytes each way, now.
    pub(super) fn sample_throughput(&mut self) {
        if self.web.is_none() {
            return;
        }
        let sessions = self.sessions();
        let sample = crate::web::Sample {
            at: tunnel::host::unix_now(),
            bytes_in: sessions.iter().map(|s| s.traffic.bytes_in).sum(),
            bytes_out: sessions.iter().map(|s| s.traffic.bytes_out).sum(),
        };
        if let Some((_, page)) = &mut self.web {
            page.sample(sample);
        }
    }

    /// What a metrics scrape shows besides the counters kept as events come.
    pub(super) fn snapshot(&self) -> crate::metrics::Snapshot {
        let sessions = self.sessions();
        let groups = std::iter::once("default".to_owned())
            .chain(self.config.groups.iter().map(|g| g.name.clone()));
        let tunnels = groups
            .map(|g| {
                let n = sessions.iter().filter(|s| s.group == g).count();
                (g, i64::try_from(n).unwrap_or(i64::MAX))
            })
            .collect();
        let usable = |net| i64::try_from(crate::pool::usable_addresses(net)).unwrap_or(i64::MAX);
        let leased = |pool: &Arc<Mutex<LeasePool>>| {
            pool.lock()
                .map(|p| i64::try_from(p.leases().count()).unwrap_or(i64::MAX))
                .unwrap_or(0)
        };
        let mut pools = vec![(
            "default".to_owned(),
            usable(self.config.clients.pool_v4),
            leased(&self.leases.default),
        )];
        for (g, (name, pool)) in self.config.groups.iter().zip(&self.leases.groups) {
            pools.push((name.clone(), usable(g.pool_v4), leased(pool)));
        }
        let endpoint = self.driver.endpoint();
        crate::metrics::Snapshot {
            tunnels,
            pools,
            half_open: i64::try_from(endpoint.half_open()).unwrap_or(i64::MAX),
            cookie_threshold: i64::from(self.config.limits.cookie_threshold),
            cookies_sent: endpoint.stats().cookies_sent,
            redirected: endpoint.stats().redirected,
            datapath: self.driver.datapath().counters(),
        }
    }

    /// Every authenticated client, by identity.
    pub(super) fn sessions(&self) -> Vec<Session> {
        let traffic = self.driver.traffic_of_all();
        let mut sessions: Vec<Session> = self
            .driver
            .sas()
            .filter_map(|(id, r)| Session::of(r, traffic.get(&id).copied().unwrap_or_default()))
            .collect();
        sessions.sort_by(|a, b| a.identity.cmp(&b.identity));
        sessions
    }

    /// SIGHUP: reread gateway.toml and the files it names. Trust (roots, revocation list),
    /// the gateway's certificate and key, proposals, lifetimes, limits and what is pushed to
    /// clients (routes, DNS) apply at once to new clients; established clients whose
    /// certificate path no longer validates (revoked leaf, intermediate or root, root
    /// removed, expired) are disconnected. What only a restart can change (listen addresses,
    /// pools, the TUN device, the state directory) is named in a warning. A configuration
    /// that no longer loads is refused and the old one kept.
    pub(super) fn reload(&mut self) -> Result<usize, ConfigError> {
        let path = self.config_path.clone();
        let loaded = GatewayConfig::load(&path).and_then(|c| {
            let credentials = load_credentials(&c, &path)?;
            let responder = responder_config(&c, &path, &credentials, self.validator.clone())?;
            Ok((c, credentials, responder))
        });
        let (config, credentials, responder) = match loaded {
            Ok(x) => x,
            Err(e) => {
                tracing::error!("reload: keeping the old configuration: {e}");
                return Err(e);
            }
        };
        self.validator.replace_trust(credentials.trust);
        self.validator.set_accepted(&config.clients.accept);
        let restart = self.config.needs_restart_for(&config);
        // New matches, routes and DNS apply to new clients; new groups or pools need their
        // lease stores, so a restart.
        if !restart.iter().any(|r| r.starts_with("groups")) {
            self.validator.set_groups(group_policies(&config));
        }
        self.driver.set_responder_config(Arc::new(responder));
        let disconnected = self.recheck_sessions();
        if !restart.is_empty() {
            tracing::warn!(
                "SIGHUP: {} changed; that takes a restart (the running values stay)",
                restart.join(", ")
            );
        }
        tracing::info!(
            roots = config.clients.root_ca_files.len() + config.clients.root_ca_data.len(),
            revoked = config.revoked().len(),
            disconnected,
            "configuration reloaded: trust, gateway certificate, proposals, lifetimes, limits, routes and DNS apply to new clients"
        );
        // What takes a restart keeps its running value.
        let mut config = config;
        config.listen = self.config.listen.clone();
        config.tunnel = self.config.tunnel.clone();
        config.state_dir = self.config.state_dir.clone();
        config.admin = self.config.admin.clone();
        config.clients.pool_v4 = self.config.clients.pool_v4;
        config.clients.pool_v6 = self.config.clients.pool_v6;
        if restart.iter().any(|r| r.starts_with("groups")) {
            config.groups = self.config.groups.clone();
        }
        self.config = config;
        Ok(disconnected)
    }

    /// Re-checks every authenticated client's certificate path against the current trust and
    /// the clock; disconnects the ones that fail. Returns how many.
    pub(super) fn recheck_sessions(&mut self) -> usize {
        let failed: Vec<(IkeSaId, String, pki::PkiError)> = self
            .driver
            .sas()
            .filter_map(|(id, r)| {
                let info = r.info.as_ref()?;
                let e = self.recheck(info).err()?;
                Some((id, info.peer_id.to_string(), e))
            })
            .collect();
        for (id, peer, e) in &failed {
            tracing::warn!(%peer, "{e}: disconnecting");
            // Its traffic stops now, not when (or whether) it answers the Delete.
            self.driver.delete(*id);
        }
        failed.len()
    }

    /// A session against today's trust: its certificate's path (revoked, root removed,
    /// expired). A peer a RADIUS server authenticated has no path here: that server decides
    /// (and its Session-Timeout ends the session).
    pub(super) fn recheck(&self, info: &ikev2::IkeSaInfo) -> Result<(), pki::PkiError> {
        if info.peer_chain.thumbprints.is_empty() {
            return Ok(());
        }
        self.validator.recheck(&info.peer_chain)
    }
}
