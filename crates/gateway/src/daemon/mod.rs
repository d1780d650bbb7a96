//! The running gateway: the IKEv2 responder endpoint, the data plane, the TUN device and its
//! routes, the lease store, and the status it reports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ikev2::{Endpoint, EndpointStats, IkeSaId};
use ipnet::IpNet;
use ipsec_crypto::Provider;
use netio::netlink::{InstalledConfig, Netlink, Route};
use netio::tun;
use serde::Serialize;
use tunnel::{Driver, DriverConfig, DriverEvent, Side};

use crate::admin::{self, Session};
use crate::client_validation::ClientValidator;
use crate::config::GatewayConfig;
use crate::credentials::load_credentials;
use crate::metrics::Metrics;
use crate::pool::LeasePool;
use crate::pool_adapter::{Pools, SharedPool};
use crate::responder::{group_policies, responder_config};

mod operator;

/// The TUN MTU when the config names none: 1500 on the wire minus the worst ESP-in-UDP
/// overhead (IPv4 20 + UDP 8 + ESP 8 + IV 16 + padding 15 + trailer 2 + ICV 16, rounded up).
pub const DEFAULT_TUN_MTU: u16 = 1400;

/// Why the gateway stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("lease store: {0}")]
    Pool(#[from] crate::pool::PoolError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A step of starting or stopping failed because of `source`.
    #[error("{what}: {source}")]
    Setup {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The data plane's tasks ended under the daemon.
    #[error("the data plane stopped")]
    DatapathStopped,
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
}

fn setup_err<E>(what: &'static str) -> impl FnOnce(E) -> DaemonError
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    move |e| DaemonError::Setup {
        what,
        source: e.into(),
    }
}

#[derive(Debug, Serialize)]
struct StatusFile<'a> {
    state: &'a str,
    interface: &'a str,
    clients: Vec<Session>,
}

/// How often idle times in the lease store are flushed to disk.
const LEASE_FLUSH: Duration = Duration::from_secs(5);

/// With more than [`STATUS_COALESCE_ABOVE`] IKE SAs the status file is rewritten at most this
/// often: it lists every session, so writing it on every client change made a bring-up of N
/// clients cost N² at ten thousand clients. Below that it follows every change at once (what
/// scripts and tests that watch it expect), at a cost that does not matter.
const STATUS_MIN_INTERVAL: Duration = Duration::from_secs(1);
const STATUS_COALESCE_ABOVE: usize = 1000;

/// How long a stopping gateway waits for its clients to answer the IKE Deletes.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// The gateway, built from a configuration file and run until `shutdown` resolves. The driver
/// runs the protocol; this is the gateway's policy: revocation on reload, leases, status.
pub struct Gateway {
    config: GatewayConfig,
    config_path: PathBuf,
    status_file: Option<PathBuf>,
    /// When the status file was last written, and whether a change waits for the next write.
    status_written: Option<Instant>,
    status_pending: bool,
    validator: Arc<ClientValidator>,
    driver: Driver,
    installed: Option<InstalledConfig>,
    interface: String,
    started: Instant,
    /// The lease stores the endpoint allocates from; flushed now and then and on shutdown.
    leases: Pools,
    /// The endpoint's refusal counters when they were last logged.
    logged_refusals: EndpointStats,
    /// Requests from the admin socket, and its listener.
    admin: tokio::sync::mpsc::Receiver<admin::Command>,
    admin_listener: tokio::task::JoinHandle<()>,
    metrics: Metrics,
    /// Requests to the metrics address, when there is one.
    metrics_http: Option<Listener>,
    /// Requests to the admin page, and the page's own state, when there is one.
    web: Option<(Listener, crate::web::AdminPage)>,
    /// EAP relayed to RADIUS servers, when `[radius]` is set.
    radius: Option<crate::radius_relay::RadiusRelay>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("interface", &self.interface)
            .field("driver", &self.driver)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Loads the configuration and everything it names, creates the TUN device with its routes,
    /// binds UDP 500 and 4500 and starts the data plane. Must run inside a tokio runtime.
    pub async fn start(
        config_path: &Path,
        status_file: Option<PathBuf>,
    ) -> Result<Gateway, DaemonError> {
        let config = GatewayConfig::load(config_path)?;
        let credentials = load_credentials(&config, config_path)?;
        let validator = Arc::new(ClientValidator::new(credentials.trust.clone()));
        validator.set_accepted(&config.clients.accept);
        validator.set_groups(group_policies(&config));
        let responder = responder_config(&config, config_path, &credentials, validator.clone())?;

        let default = open_pool(
            config.clients.pool_v4,
            config.clients.pool_v6,
            &config.state_dir.join("leases.json"),
        )?;
        let mut groups = Vec::new();
        for g in &config.groups {
            let file = config
                .state_dir
                .join(format!("leases-{}.json", file_safe(&g.name)));
            groups.push((g.name.clone(), open_pool(g.pool_v4, g.pool_v6, &file)?));
        }
        let leases = Pools { default, groups };
        let pool = SharedPool(leases.clone());

        if std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|v| v.trim() == "0") {
            tracing::warn!(
                "net.ipv4.ip_forward is 0: clients will reach the gateway but not the network behind it"
            );
        }

        let mtu = config.tunnel.mtu.unwrap_or(DEFAULT_TUN_MTU);
        let tun = tun::create(&tunnel::host::tun_config(&config.tunnel.interface, mtu))
            .map_err(io_err(format!("creating TUN {}", config.tunnel.interface)))?;
        let netlink = Netlink::new().map_err(setup_err("netlink"))?;
        let mut installed = netlink.session();
        let mut pools: Vec<IpNet> = vec![IpNet::V4(config.clients.pool_v4)];
        pools.extend(config.clients.pool_v6.map(IpNet::V6));
        for g in &config.groups {
            pools.push(IpNet::V4(g.pool_v4));
            pools.extend(g.pool_v6.map(IpNet::V6));
        }
        for net in &pools {
            installed
                .add_route(Route::via_dev(net.network(), net.prefix_len(), tun.index))
                .await
                .map_err(setup_err("route to the client pool"))?;
        }

        // One address (the configuration refuses more): never a wildcard bind that would
        // also answer on addresses nobody listed.
        let [listen] = config.listen.addresses.as_slice() else {
            return Err(setup_err("listen.addresses")(
                "exactly one address is supported",
            ));
        };
        let listen = *listen;
        let endpoint = Endpoint::new(
            Arc::new(responder),
            Arc::new(Provider::system()),
            Box::new(pool),
        )
        .map_err(setup_err("IKE endpoint"))?;
        let driver = Driver::start(DriverConfig::new(
            Side::Gateway,
            tun.queues,
            mtu,
            SocketAddr::new(listen, config.listen.natt_port),
            SocketAddr::new(listen, config.listen.ike_port),
            endpoint,
        ))
        .map_err(setup_err("starting"))?;

        let (admin, admin_listener) = admin::listen(&config.admin.socket, config.admin.gid)
            .map_err(io_err(format!(
                "admin.socket {}",
                config.admin.socket.display()
            )))?;
        let metrics_http = match config.metrics.listen {
            Some(addr) => Some(
                crate::http::listen(addr)
                    .await
                    .map_err(io_err(format!("metrics.listen {addr}")))?,
            ),
            None => None,
        };
        let web = match &config.web {
            Some(w) => {
                let page = crate::web::AdminPage::load(&w.token_file)
                    .map_err(setup_err("web.token_file"))?
                    .answering_as(w.listen);
                let listener = crate::http::listen(w.listen)
                    .await
                    .map_err(io_err(format!("web.listen {}", w.listen)))?;
                Some((listener, page))
            }
            None => None,
        };
        let radius = match &config.radius {
            Some(r) => {
                let groups = group_policies(&config)
                    .into_iter()
                    .map(|(_, p)| p)
                    .collect();
                Some(
                    crate::radius_relay::RadiusRelay::new(r, groups, listen.to_string())
                        .map_err(setup_err("radius"))?,
                )
            }
            None => None,
        };
        tracing::info!(
            interface = %tun.name,
            listen = %listen,
            radius = ?config.radius.as_ref().map(|r| r.servers.iter().map(|s| s.address).collect::<Vec<_>>()),
            admin = %config.admin.socket.display(),
            metrics = ?config.metrics.listen,
            pool = %config.clients.pool_v4,
            "gateway up"
        );
        let gateway = Gateway {
            interface: tun.name.clone(),
            config,
            config_path: config_path.to_owned(),
            status_file,
            status_written: None,
            status_pending: false,
            validator,
            driver,
            installed: Some(installed),
            started: Instant::now(),
            leases,
            logged_refusals: EndpointStats::default(),
            admin,
            admin_listener,
            metrics: Metrics::new(),
            metrics_http,
            web,
            radius,
        };
        gateway.write_status("running");
        Ok(gateway)
    }

    /// Serves clients until `shutdown` resolves, reloading CAs and the revocation list on
    /// SIGHUP; then deletes every IKE SA (the clients learn at once) and removes what it
    /// installed.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), DaemonError> {
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(io_err("SIGHUP handler"))?;
        tokio::pin!(shutdown);
        let mut failure = None;
        let mut flush = tokio::time::interval(LEASE_FLUSH);
        let mut status_tick = tokio::time::interval(STATUS_MIN_INTERVAL);
        // systemd (Type=notify): ready now; the watchdog is fed from this loop, so a wedged
        // loop gets the gateway restarted.
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        let watchdog = sd_notify::watchdog_enabled();
        let mut feed = tokio::time::interval(watchdog.map_or(Duration::from_secs(3600), |w| {
            (w / 2).max(Duration::from_millis(100))
        }));
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = hangup.recv() => {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
                    let _ = self.reload();
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
                }
                _ = status_tick.tick(), if self.status_pending => {
                    self.status_changed();
                }
                _ = flush.tick() => {
                    self.sample_throughput();
                    self.flush_leases();
                    self.log_refusals();
                    self.close_expired();
                }
                answers = next_radius_answers(&mut self.radius) => {
                    for (sa, answer) in answers {
                        self.driver.eap_answer(sa, answer);
                    }
                }
                Some(exchange) = next_exchange(self.metrics_http.as_mut()) => {
                    let response = crate::metrics::answer(&exchange.request, || {
                        self.metrics.render(&self.snapshot())
                    });
                    let _ = exchange.reply.send(response);
                }
                Some(exchange) = next_exchange(self.web.as_mut().map(|(l, _)| l)) => {
                    let response = self.on_web(&exchange.request);
                    let _ = exchange.reply.send(response);
                }
                Some(command) = self.admin.recv() => {
                    let reply = self.on_admin(command.request);
                    let _ = command.reply.send(reply);
                }
                _ = feed.tick(), if watchdog.is_some() => {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                }
                event = self.driver.next_event() => match event {
                    DriverEvent::DatapathStopped => {
                        failure = Some(DaemonError::DatapathStopped);
                        break;
                    }
                    event => {
                        if self.on_event(event) {
                            self.status_changed();
                        }
                    }
                },
            }
        }
        // Whatever ended the loop, clients are told, leases flushed, routes removed and the
        // status file says so.
        let stopped = self.stop().await;
        match failure {
            Some(e) => Err(e),
            None => stopped,
        }
    }

    /// Logs what happened; true when the status file changes.
    fn on_event(&mut self, event: DriverEvent) -> bool {
        match event {
            DriverEvent::Established { sa } => {
                if let Some(info) = self.driver.sa(sa).and_then(|r| r.info.as_ref()) {
                    self.metrics.setup(info.handshake);
                    tracing::info!(peer = %info.peer_id, subject = %info.peer_subject, from = %info.remote, "client authenticated");
                }
                true
            }
            DriverEvent::ChildInstalled { sa, child } => {
                if let Some(info) = self.driver.sa(sa).and_then(|r| r.info.as_ref()) {
                    tracing::info!(
                        peer = %info.peer_id,
                        vip = ?child.virtual_ips.first(),
                        esp = %tunnel::child::describe_esp(&child.algorithms),
                        "tunnel up"
                    );
                }
                true
            }
            DriverEvent::ChildRekeyed {
                sa,
                old_spi_in,
                new_spi_in,
            } => {
                if let Some(info) = self.driver.sa(sa).and_then(|r| r.info.as_ref()) {
                    tracing::info!(
                        peer = %info.peer_id,
                        old = format_args!("{old_spi_in:#010x}"),
                        new = format_args!("{new_spi_in:#010x}"),
                        "Child SA rekeyed"
                    );
                }
                true
            }
            DriverEvent::IkeRekeyed { sa } => {
                // A rekey is where a long session meets today's trust: a certificate revoked
                // (also through its issuer) or expired since it authenticated ends here.
                let verdict = self
                    .driver
                    .sa(sa)
                    .and_then(|r| r.info.as_ref())
                    .map(|info| (info.peer_id.clone(), self.recheck(info)));
                match verdict {
                    Some((peer, Ok(()))) => tracing::info!(%peer, "IKE SA rekeyed"),
                    Some((peer, Err(e))) => {
                        tracing::warn!(%peer, "IKE SA rekeyed but {e}: disconnecting");
                        self.driver.delete(sa);
                    }
                    None => {}
                }
                false
            }
            DriverEvent::ChildRemoved { .. } => true,
            DriverEvent::Moved { sa, remote, .. } => {
                if let Some(info) = self.driver.sa(sa).and_then(|r| r.info.as_ref()) {
                    tracing::info!(peer = %info.peer_id, to = %remote, "client moved");
                }
                true
            }
            DriverEvent::ExchangeFailed { failure, .. } => {
                tracing::warn!(reason = %failure.reason, "IKE exchange failed; the SA stays up");
                false
            }
            DriverEvent::Closed {
                sa,
                reason,
                failure,
                record,
            } => {
                if let Some(r) = &mut self.radius {
                    r.forget(sa);
                }
                match (&record.info, &failure) {
                    (Some(info), _) => {
                        tracing::info!(peer = %info.peer_id, ?reason, "client gone");
                    }
                    (None, Some(f)) => {
                        self.metrics.failure(&f.reason);
                        if let Some((_, page)) = &mut self.web {
                            page.note_failure(crate::web::FailureRecord {
                                at: tunnel::host::unix_now(),
                                from: f.remote.to_string(),
                                claims: f
                                    .claimed_id
                                    .as_ref()
                                    .map_or_else(|| "-".to_owned(), ToString::to_string),
                                reason: f.reason.to_string(),
                                what_to_do: f.advice(false).to_owned(),
                            });
                        }
                        tracing::warn!(
                        from = %f.remote,
                        claims = %f
                            .claimed_id
                            .as_ref()
                            .map_or_else(|| "-".to_owned(), ToString::to_string),
                        reason = %f.reason,
                        sent = ?f.notify_sent,
                        received = ?f.notify_received,
                        what_to_do = f.advice(false),
                        "IKE SA failed"
                        );
                    }
                    (None, None) => {}
                }
                record.info.is_some()
            }
            DriverEvent::EapPassThrough { sa, eap, identity } => {
                let remote = self.driver.endpoint().sa(sa).map(|s| s.addresses().1);
                match &mut self.radius {
                    Some(r) => r.relay(sa, &eap, &identity, remote),
                    None => self.driver.eap_answer(
                        sa,
                        ikev2::EapAnswer::Failure {
                            eap: None,
                            reason: "EAP relayed without [radius]".into(),
                        },
                    ),
                }
                false
            }
            DriverEvent::Resumed { .. } | DriverEvent::DatapathStopped => false,
        }
    }

    /// Writes the lease store's idle times to disk (they change with every reconnect).
    fn flush_leases(&self) {
        for pool in self.leases.all() {
            if let Ok(mut pool) = pool.lock()
                && let Err(e) = pool.flush()
            {
                tracing::warn!("lease file: {e}");
            }
        }
    }

    /// Azure ends a session when its certificate expires; so do we (the client may come back
    /// with a renewed one). Cheap: one comparison per client.
    fn close_expired(&mut self) {
        let now = std::time::SystemTime::now();
        let expired: Vec<(IkeSaId, String, &str)> = self
            .driver
            .sas()
            .filter_map(|(id, r)| {
                let info = r.info.as_ref()?;
                (now > info.peer_chain.not_after).then(|| {
                    let what = if info.peer_chain.thumbprints.is_empty() {
                        "the RADIUS server's Session-Timeout passed"
                    } else {
                        "certificate expired"
                    };
                    (id, info.peer_id.to_string(), what)
                })
            })
            .collect();
        for (id, peer, what) in expired {
            tracing::warn!(%peer, "{what}: disconnecting");
            self.driver.delete(id);
        }
    }

    /// One line per flush period while unauthenticated peers are being refused or made to
    /// echo COOKIEs: what a flood looks like to the operator, without a line per datagram.
    fn log_refusals(&mut self) {
        let now = self.driver.endpoint().stats();
        let was = self.logged_refusals;
        if now == was {
            return;
        }
        self.logged_refusals = now;
        tracing::warn!(
            half_open = self.driver.endpoint().half_open(),
            cookies_sent = now.cookies_sent - was.cookies_sent,
            over_per_source_limit = now.per_source_limit - was.per_source_limit,
            over_half_open_limit = now.half_open_limit - was.half_open_limit,
            oversized = now.oversized - was.oversized,
            cheaper_group_asked = now.cheaper_group_asked - was.cheaper_group_asked,
            redirected = now.redirected - was.redirected,
            "IKE_SA_INIT refused, challenged or redirected in the last {} s",
            LEASE_FLUSH.as_secs()
        );
    }

    async fn stop(mut self) -> Result<(), DaemonError> {
        self.admin_listener.abort();
        if let Some((_, task)) = &self.metrics_http {
            task.abort();
        }
        if let Some(((_, task), _)) = &self.web {
            task.abort();
        }
        let _ = std::fs::remove_file(&self.config.admin.socket);
        let _queues = self.driver.shutdown(SHUTDOWN_GRACE).await;
        let teardown = match self.installed.take() {
            Some(installed) => installed
                .teardown()
                .await
                .map_err(setup_err("removing routes")),
            None => Ok(()),
        };
        self.flush_leases();
        write_status_file(
            self.status_file.as_deref(),
            "stopped",
            &self.interface,
            Vec::new(),
        );
        tracing::info!(
            uptime_s = self.started.elapsed().as_secs(),
            "gateway stopped"
        );
        teardown
    }

    /// The sessions changed: the status file is rewritten now, or, on a busy gateway that
    /// wrote it a moment ago, at the next status tick.
    pub(super) fn status_changed(&mut self) {
        if self.status_file.is_none() {
            return;
        }
        if self
            .status_written
            .is_some_and(|t| t.elapsed() < STATUS_MIN_INTERVAL)
            && self.driver.sas().nth(STATUS_COALESCE_ABOVE).is_some()
        {
            self.status_pending = true;
            return;
        }
        self.write_status("running");
        self.status_written = Some(Instant::now());
        self.status_pending = false;
    }

    fn write_status(&self, state: &str) {
        // Without a status file nothing is written, and the session list (every session's
        // counters) is not worth making on every client change.
        if self.status_file.is_none() {
            return;
        }
        write_status_file(
            self.status_file.as_deref(),
            state,
            &self.interface,
            self.sessions(),
        );
    }
}

fn write_status_file(path: Option<&Path>, state: &str, interface: &str, clients: Vec<Session>) {
    let Some(path) = path else {
        return;
    };
    let status = StatusFile {
        state,
        interface,
        clients,
    };
    // The session list names every client: its owner and group only, as the admin socket.
    tunnel::host::write_json_atomically(path, &status, 0o640);
}

/// A lease store for `v4`/`v6` in `file`, with what loading it found reported.
fn open_pool(
    v4: ipnet::Ipv4Net,
    v6: Option<ipnet::Ipv6Net>,
    file: &Path,
) -> Result<Arc<Mutex<LeasePool>>, DaemonError> {
    let (pool, report) = LeasePool::open(v4, v6, Vec::new(), file)?;
    for dropped in &report.dropped {
        tracing::warn!("lease {dropped} no longer fits the pool; dropped");
    }
    if report.set_aside.is_none() && report.unreadable > 0 {
        tracing::warn!(
            unreadable = report.unreadable,
            "{}: lease journal entries that did not read were skipped (a write cut short); those clients may get new addresses",
            file.display()
        );
    }
    if let Some(aside) = &report.set_aside {
        tracing::error!(
            kept = report.kept,
            unreadable = report.unreadable,
            "{} was damaged: kept aside as {}, starting with the leases that still read",
            file.display(),
            aside.display()
        );
    }
    Ok(Arc::new(Mutex::new(pool)))
}

/// A group name as part of a file name (lower case, so that names differing in case only are
/// one).
pub(crate) fn file_safe(name: &str) -> String {
    name.to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The RADIUS servers' next answers; never, without `[radius]`.
async fn next_radius_answers(
    radius: &mut Option<crate::radius_relay::RadiusRelay>,
) -> Vec<(IkeSaId, ikev2::EapAnswer)> {
    match radius {
        Some(r) => r.next_answers().await,
        None => std::future::pending().await,
    }
}

/// An HTTP listener's requests and its task.
type Listener = (
    tokio::sync::mpsc::Receiver<crate::http::Exchange>,
    tokio::task::JoinHandle<()>,
);

/// The next request to a listener; never, without one.
async fn next_exchange(listener: Option<&mut Listener>) -> Option<crate::http::Exchange> {
    match listener {
        Some((rx, _)) => rx.recv().await,
        None => std::future::pending().await,
    }
}
