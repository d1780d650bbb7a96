//! The running gateway: the IKEv2 responder endpoint, the data plane, the TUN device and its
//! routes, the lease store, and the status it reports.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datapath::{
    DEFAULT_REKEY_SEND_FALLBACK, DEFAULT_RETIRE_LINGER, Datapath, DatapathConfig, DatapathEvent,
    DatapathHandle,
};
use ikev2::{Endpoint, Event, IkeSaInfo, SaId};
use ipnet::IpNet;
use ipsec_crypto::Provider;
use netio::netlink::{InstalledConfig, Netlink, Route};
use netio::tun;
use netio::udp::{UdpConfig, UdpSocket};
use serde::Serialize;
use tunnel::ike_io::{IkeIo, Incoming};

use crate::config::GatewayConfig;
use crate::ike::{ClientValidator, SharedPool, load_credentials, responder_config};
use crate::pool::LeasePool;

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
    #[error("{0}")]
    Setup(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
}

fn setup_err(what: &str) -> impl FnOnce(String) -> DaemonError + '_ {
    move |e| DaemonError::Setup(format!("{what}: {e}"))
}

/// One connected client, as `aovpn status` and the lab show it.
#[derive(Debug, Clone, Serialize)]
pub struct ClientStatus {
    pub identity: String,
    pub subject: String,
    pub virtual_ip: Option<IpAddr>,
    pub remote: SocketAddr,
    pub ike: String,
    pub esp: String,
    pub connected_since: u64,
}

#[derive(Debug, Serialize)]
struct StatusFile<'a> {
    state: &'a str,
    interface: &'a str,
    clients: Vec<&'a ClientStatus>,
}

struct Session {
    info: IkeSaInfo,
    client: ClientStatus,
    /// Data-plane SA ids of this IKE SA's Child SAs, with their inbound SPI.
    children: Vec<(datapath::SaId, u32)>,
    /// Inbound ESP packets seen at the last liveness tick.
    inbound_packets: u64,
}

impl Session {
    /// The data-plane id of the Child SA with this inbound SPI.
    fn child_id(&self, spi_in: u32) -> Option<datapath::SaId> {
        self.children
            .iter()
            .find(|(_, spi)| *spi == spi_in)
            .map(|(dp_id, _)| *dp_id)
    }
}

/// How often ESP counters are looked at, so that a client that sends data is not also asked
/// whether it is alive (dead peer detection only probes quiet peers).
const LIVENESS_TICK: Duration = Duration::from_secs(5);

/// The gateway, built from a configuration file and run until `shutdown` resolves.
pub struct Gateway {
    config: GatewayConfig,
    config_path: PathBuf,
    status_file: Option<PathBuf>,
    validator: Arc<ClientValidator>,
    endpoint: Endpoint,
    io: IkeIo,
    datapath: DatapathHandle,
    installed: Option<InstalledConfig>,
    interface: String,
    sessions: HashMap<SaId, Session>,
    next_child: datapath::SaId,
    started: Instant,
    /// The lease store the endpoint allocates from; flushed now and then and on shutdown.
    leases: Arc<Mutex<LeasePool>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("interface", &self.interface)
            .field("sessions", &self.sessions.len())
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
        let mut responder =
            responder_config(&config, config_path, &credentials, validator.clone())?;
        // Rekeying (CREATE_CHILD_SA) starts at 80-90 % of these; a client usually rekeys first.
        responder.ike.ike_lifetime = Some(Duration::from_secs(config.crypto.ike_lifetime_secs));
        responder.ike.child_lifetime = Some(Duration::from_secs(config.crypto.child_lifetime_secs));

        let lease_file = config.state_dir.join("leases.json");
        let (pool, report) = LeasePool::open(
            config.clients.pool_v4,
            config.clients.pool_v6,
            Vec::new(),
            &lease_file,
        )?;
        for dropped in &report.dropped {
            tracing::warn!("lease {dropped} no longer fits the pool; dropped");
        }
        let leases = Arc::new(Mutex::new(pool));
        let pool = SharedPool(leases.clone());

        if std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|v| v.trim() == "0") {
            tracing::warn!(
                "net.ipv4.ip_forward is 0: clients will reach the gateway but not the network behind it"
            );
        }

        let mtu = config.tunnel.mtu.unwrap_or(DEFAULT_TUN_MTU);
        let tun = tun::create(&tunnel::host::tun_config(&config.tunnel.interface, mtu))
            .map_err(io_err(format!("creating TUN {}", config.tunnel.interface)))?;
        let netlink = Netlink::new().map_err(|e| setup_err("netlink")(e.to_string()))?;
        let mut installed = netlink.session();
        let mut pools: Vec<IpNet> = vec![IpNet::V4(config.clients.pool_v4)];
        pools.extend(config.clients.pool_v6.map(IpNet::V6));
        for net in &pools {
            installed
                .add_route(Route::via_dev(net.network(), net.prefix_len(), tun.index))
                .await
                .map_err(|e| setup_err("route to the client pool")(e.to_string()))?;
        }

        let listen = match config.listen.addresses.as_slice() {
            [one] => *one,
            _ => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        };
        let udp = UdpSocket::bind(&UdpConfig::new(SocketAddr::new(
            listen,
            config.listen.natt_port,
        )))
        .map_err(io_err(format!(
            "binding UDP {listen}:{}",
            config.listen.natt_port
        )))?;
        let (datapath, events) = Datapath::start(DatapathConfig::new(tun.queues, mtu, udp))
            .map_err(|e| setup_err("data plane")(e.to_string()))?;
        let io = IkeIo::bind(
            SocketAddr::new(listen, config.listen.ike_port),
            datapath.clone(),
            events,
        )
        .map_err(io_err(format!(
            "binding UDP {listen}:{}",
            config.listen.ike_port
        )))?;

        let endpoint = Endpoint::new(
            Arc::new(responder),
            Arc::new(Provider::system()),
            Box::new(pool),
        )
        .map_err(|e| setup_err("IKE endpoint")(e.to_string()))?;

        tracing::info!(
            interface = %tun.name,
            listen = %listen,
            pool = %config.clients.pool_v4,
            "gateway up"
        );
        let gateway = Gateway {
            interface: tun.name.clone(),
            config,
            config_path: config_path.to_owned(),
            status_file,
            validator,
            endpoint,
            io,
            datapath,
            installed: Some(installed),
            sessions: HashMap::new(),
            next_child: 1,
            started: Instant::now(),
            leases,
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
        let mut liveness = tokio::time::interval(LIVENESS_TICK);
        loop {
            let timeout = self.endpoint.poll_timeout();
            let sleep = async {
                match timeout {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = hangup.recv() => self.reload(),
                _ = liveness.tick() => {
                    self.note_esp_activity();
                    self.flush_leases();
                }
                _ = sleep => self.endpoint.handle_timeout(Instant::now()),
                incoming = self.io.recv() => match incoming {
                    Ok(Incoming::Ike { local, remote, bytes }) => {
                        self.endpoint.set_unix_time(tunnel::host::unix_now());
                        self.endpoint.handle_datagram(Instant::now(), local, remote, &bytes);
                    }
                    Ok(Incoming::Datapath(event)) => self.on_datapath_event(event),
                    Ok(Incoming::Closed) => {
                        failure = Some(DaemonError::Setup("the data plane stopped".into()));
                        break;
                    }
                    Err(e) => tracing::warn!("receiving IKE: {e}"),
                },
            }
            self.pump().await;
        }
        // Whatever ended the loop, clients are told, leases flushed, routes removed and the
        // status file says so.
        let stopped = self.stop().await;
        match failure {
            Some(e) => Err(e),
            None => stopped,
        }
    }

    /// Applies the engine's events, then sends what it queued: SAs are installed before the
    /// answer that lets the client use them goes out (a CREATE_CHILD_SA response sent first
    /// could bring ESP on the new SA before it is installed).
    async fn pump(&mut self) {
        loop {
            let mut progressed = false;
            let mut changed = false;
            while let Some((id, event)) = self.endpoint.poll_event() {
                progressed = true;
                changed |= self.on_event(id, event);
            }
            if changed {
                self.write_status("running");
            }
            while let Some(t) = self.endpoint.poll_transmit() {
                progressed = true;
                if let Err(e) = self.io.send(&t).await {
                    tracing::warn!(to = %t.remote, "sending IKE: {e}");
                }
            }
            if !progressed {
                return;
            }
        }
    }

    fn on_event(&mut self, id: SaId, event: Event) -> bool {
        match event {
            Event::IkeSaEstablished(info) => {
                tracing::info!(peer = %info.peer_id, subject = %info.peer_subject, from = %info.remote, "client authenticated");
                let client = ClientStatus {
                    identity: info.peer_id.to_string(),
                    subject: info.peer_subject.clone(),
                    virtual_ip: None,
                    remote: info.remote,
                    ike: info.algorithms.to_string(),
                    esp: String::new(),
                    connected_since: tunnel::host::unix_now(),
                };
                self.sessions.insert(
                    id,
                    Session {
                        info,
                        client,
                        children: Vec::new(),
                        inbound_packets: 0,
                    },
                );
                true
            }
            Event::ChildSaEstablished(child) => {
                let Some(dp_id) = self.install_child(id, &child, None) else {
                    return false;
                };
                if let Some(s) = self.sessions.get_mut(&id) {
                    s.children.push((dp_id, child.spi_in));
                    s.client.virtual_ip = child.virtual_ips.first().copied();
                    s.client.esp = tunnel::child::describe_esp(&child.algorithms);
                    s.client.remote = child.remote;
                    tracing::info!(
                        peer = %s.info.peer_id,
                        vip = ?s.client.virtual_ip,
                        esp = %s.client.esp,
                        "tunnel up"
                    );
                }
                true
            }
            Event::ChildSaRekeyed {
                old_spi_in, new, ..
            } => {
                // Make before break: the new SA receives now; it sends once the client is known
                // to receive on it (ChildSaOutboundReady if we initiated the rekey, else the
                // client's Delete of the old SA); the old one keeps receiving until it is gone.
                let old = self.sessions.get(&id).and_then(|s| s.child_id(old_spi_in));
                let Some(dp_id) = self.install_child(id, &new, old) else {
                    return false;
                };
                if let Some(s) = self.sessions.get_mut(&id) {
                    s.children.push((dp_id, new.spi_in));
                    s.client.esp = tunnel::child::describe_esp(&new.algorithms);
                    tracing::info!(
                        peer = %s.info.peer_id,
                        old = format_args!("{old_spi_in:#010x}"),
                        new = format_args!("{:#010x}", new.spi_in),
                        "Child SA rekeyed"
                    );
                }
                true
            }
            Event::IkeSaRekeyed { spi_i, spi_r } => {
                if let Some(s) = self.sessions.get_mut(&id) {
                    s.info.spi_i = spi_i;
                    s.info.spi_r = spi_r;
                    tracing::info!(peer = %s.info.peer_id, "IKE SA rekeyed");
                }
                false
            }
            Event::ChildSaOutboundReady { spi_in } => {
                if let Some(dp_id) = self.sessions.get(&id).and_then(|s| s.child_id(spi_in)) {
                    let _ = self.datapath.activate_outbound(dp_id);
                }
                false
            }
            Event::ChildSaDeleted { spi_in, .. } => {
                if let Some(s) = self.sessions.get_mut(&id) {
                    s.children.retain(|(dp_id, spi)| {
                        if *spi == spi_in {
                            // Its replacement (if any) sends from now on; ESP still in flight
                            // on the old SA is accepted for a moment.
                            let _ = self.datapath.retire_sa(*dp_id, DEFAULT_RETIRE_LINGER);
                            false
                        } else {
                            true
                        }
                    });
                }
                true
            }
            Event::AddressesChanged { local, remote } => {
                if let Some(s) = self.sessions.get_mut(&id) {
                    s.client.remote = remote;
                    for (dp_id, _) in &s.children {
                        let _ = self.datapath.update_peer(*dp_id, remote, Some(local.ip()));
                    }
                }
                true
            }
            Event::Failed(failure) => {
                tracing::warn!(
                    reason = %failure.reason,
                    sent = ?failure.notify_sent,
                    received = ?failure.notify_received,
                    "IKE SA failed"
                );
                false
            }
            Event::Closed(reason) => {
                if let Some(s) = self.sessions.remove(&id) {
                    tracing::info!(peer = %s.info.peer_id, ?reason, "client gone");
                    for (dp_id, _) in s.children {
                        let _ = self.datapath.remove_sa(dp_id);
                    }
                }
                true
            }
        }
    }

    /// Installs a Child SA in the data plane (routes: the client's virtual IPs), as the
    /// replacement of the data-plane SA `replaces` after a rekey; on failure the IKE SA is
    /// deleted.
    fn install_child(
        &mut self,
        id: SaId,
        child: &ikev2::ChildSa,
        replaces: Option<datapath::SaId>,
    ) -> Option<datapath::SaId> {
        let routes: Vec<IpNet> = child
            .virtual_ips
            .iter()
            .map(|ip| IpNet::from(*ip))
            .collect();
        let dp_id = self.next_child;
        self.next_child += 1;
        let installed =
            tunnel::child::datapath_sa(dp_id, child, routes, tunnel::child::Side::Gateway)
                .map_err(|e| format!("cannot run the negotiated Child SA: {e}"))
                .and_then(|sa| {
                    match replaces {
                        Some(old) => {
                            self.datapath
                                .install_sa_replacing(sa, old, DEFAULT_REKEY_SEND_FALLBACK)
                        }
                        None => self.datapath.install_sa(sa),
                    }
                    .map_err(|e| format!("installing the Child SA: {e}"))
                });
        match installed {
            Ok(()) => Some(dp_id),
            Err(e) => {
                tracing::error!("{e}; deleting the IKE SA");
                self.endpoint.delete(id, Instant::now());
                None
            }
        }
    }

    /// Tells the engine which clients sent ESP since the last tick.
    fn flush_leases(&self) {
        if let Ok(mut pool) = self.leases.lock()
            && let Err(e) = pool.flush()
        {
            tracing::warn!("lease file: {e}");
        }
    }

    fn note_esp_activity(&mut self) {
        let now = Instant::now();
        let counters = self.datapath.all_sa_counters();
        for (id, s) in &mut self.sessions {
            let packets: u64 = s
                .children
                .iter()
                .filter_map(|(dp_id, _)| counters.get(dp_id))
                .map(|c| c.inbound.packets)
                .sum();
            // Any change counts (a rekey removes an SA and its count with it).
            if packets != s.inbound_packets {
                s.inbound_packets = packets;
                self.endpoint.note_peer_alive(*id, now);
            }
        }
    }

    fn on_datapath_event(&mut self, event: DatapathEvent) {
        match event {
            DatapathEvent::PeerAddressChanged { id, seen, .. } => {
                // The packet authenticated under the SA and passed the replay window, so the
                // client is there now (a NAT rebinding): follow it, as strongSwan does on the
                // kernel's NAT mapping events. A raced copy of a captured packet could point
                // it elsewhere until the client's next IKE message moves it back.
                let _ = self.datapath.update_peer(id, seen, None);
            }
            DatapathEvent::SaLimit {
                id,
                direction,
                event,
            } => {
                tracing::info!(
                    sa = id,
                    ?direction,
                    ?event,
                    "Child SA limit reached: rekeying"
                );
                let owner = self.sessions.iter().find_map(|(ike, s)| {
                    s.children
                        .iter()
                        .find(|(dp_id, _)| *dp_id == id)
                        .map(|(_, spi)| (*ike, *spi))
                });
                if let Some((ike, spi_in)) = owner {
                    // Soft limit: rekey; hard limit: the SA is dead, rekey at once if that has
                    // not happened yet (false when it is already being replaced).
                    self.endpoint.rekey_child_sa(ike, Instant::now(), spi_in);
                }
            }
            DatapathEvent::UnknownSpi { from, spi } => {
                tracing::debug!(%from, spi = format_args!("{spi:#010x}"), "ESP for an unknown SPI");
            }
            DatapathEvent::Ike { .. } => {}
        }
    }

    /// SIGHUP: reread the trusted roots and the revocation list; clients whose certificate is
    /// now revoked are disconnected at once (IKE Delete), new ones are checked against the new
    /// lists. A configuration that no longer loads is refused and the old one kept.
    fn reload(&mut self) {
        let loaded = GatewayConfig::load(&self.config_path)
            .and_then(|c| load_credentials(&c, &self.config_path).map(|creds| (c, creds)));
        let (config, credentials) = match loaded {
            Ok(x) => x,
            Err(e) => {
                tracing::error!("SIGHUP: keeping the old configuration: {e}");
                return;
            }
        };
        self.validator.replace_trust(credentials.trust);
        let revoked: Vec<SaId> = self
            .sessions
            .iter()
            .filter(|(_, s)| self.validator.is_revoked(&s.info.peer_id))
            .map(|(id, _)| *id)
            .collect();
        for id in &revoked {
            if let Some(s) = self.sessions.get(id) {
                tracing::warn!(peer = %s.info.peer_id, "certificate revoked: disconnecting");
                // Its traffic stops now, not when (or whether) it answers the Delete.
                for (dp_id, _) in &s.children {
                    let _ = self.datapath.remove_sa(*dp_id);
                }
            }
            self.endpoint.delete(*id, Instant::now());
        }
        tracing::info!(
            roots = config.clients.root_ca_files.len() + config.clients.root_ca_data.len(),
            revoked_thumbprints = config.clients.revoked_thumbprints.len(),
            disconnected = revoked.len(),
            "configuration reloaded (SIGHUP)"
        );
        self.config = config;
    }

    async fn stop(mut self) -> Result<(), DaemonError> {
        let now = Instant::now();
        let ids: Vec<SaId> = self.sessions.keys().copied().collect();
        for id in ids {
            self.endpoint.delete(id, now);
        }
        while let Some(t) = self.endpoint.poll_transmit() {
            let _ = self.io.send(&t).await;
        }
        self.sessions.clear();
        let _queues = self.datapath.shutdown().await;
        let teardown = match self.installed.take() {
            Some(installed) => installed
                .teardown()
                .await
                .map_err(|e| setup_err("removing routes")(e.to_string())),
            None => Ok(()),
        };
        self.flush_leases();
        self.write_status("stopped");
        tracing::info!(
            uptime_s = self.started.elapsed().as_secs(),
            "gateway stopped"
        );
        teardown
    }

    fn write_status(&self, state: &str) {
        let Some(path) = &self.status_file else {
            return;
        };
        let mut clients: Vec<&ClientStatus> = self.sessions.values().map(|s| &s.client).collect();
        clients.sort_by(|a, b| a.identity.cmp(&b.identity));
        let status = StatusFile {
            state,
            interface: &self.interface,
            clients,
        };
        tunnel::host::write_json_atomically(path, &status);
    }
}
