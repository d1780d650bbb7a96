//! One client tunnel, from nothing to connected and back: resolve the server, authenticate with
//! a certificate, bring up a TUN device with the address the gateway assigned, install routes
//! and DNS, move packets, and on shutdown say goodbye (IKE Delete) and remove everything it
//! installed. `aovpn connect` runs one; the always-on agent runs one per profile.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datapath::{
    DEFAULT_REKEY_SEND_FALLBACK, DEFAULT_RETIRE_LINGER, Datapath, DatapathConfig, DatapathEvent,
    DatapathHandle,
};
use ike_wire::TrafficSelector;
use ikev2::{
    EspProposal, Event, IkeConfig, IkeId, IkeProposal, IkeSa, InitiatorConfig, LocalCredentials,
    PeerRole, PkiValidator, SaState,
};
use ipnet::IpNet;
use ipsec_crypto::{Provider, SigningKey};
use netio::dns::{DnsBackend, DnsConfig, DnsGuard};
use netio::netlink::{IfAddress, InstalledConfig, Netlink, Route};
use netio::tun;
use netio::udp::{UdpConfig, UdpSocket};
use serde::Serialize;
use tunnel::ike_io::{IkeIo, Incoming};

/// Inner MTU of the tunnel interface (1500 minus the worst ESP-in-UDP overhead, rounded).
pub const TUNNEL_MTU: u16 = 1400;

/// Dead peer detection: a quiet gateway is asked after this long whether it is still there.
const DPD_INTERVAL: Duration = Duration::from_secs(30);

/// SA lifetimes (as Windows and Azure use them): rekeyed at 80-90 % of them.
const IKE_LIFETIME: Duration = Duration::from_secs(8 * 3600);
const CHILD_LIFETIME: Duration = Duration::from_secs(3600);

/// How long a goodbye (IKE Delete) may take before we leave anyway.
const DELETE_GRACE: Duration = Duration::from_secs(2);

/// Which routes go where, beyond the negotiated traffic selectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutePolicy {
    /// Route exactly the traffic selectors the gateway granted (plain `aovpn connect`).
    TrafficSelectors,
    /// What a VPNv2 profile asks for (Route entries, ForceTunnel, class-based route, ...).
    Profile(profile::plan::RoutePlan),
}

/// Everything one tunnel needs.
#[derive(Debug, Clone)]
pub struct TunnelOptions {
    /// Gateways to try in order: `host` or `host:port` (IKE port, default 500).
    pub servers: Vec<String>,
    /// PEM: our certificate first, then intermediates.
    pub cert: PathBuf,
    /// Our private key (PEM or DER; PKCS#8, PKCS#1, SEC1).
    pub key: PathBuf,
    /// Trusted roots for the gateway's certificate.
    pub ca: Vec<PathBuf>,
    /// TUN interface name.
    pub interface: String,
    /// IKE and ESP proposals; empty = the engine's defaults.
    pub ike_proposals: Vec<IkeProposal>,
    pub esp_proposals: Vec<EspProposal>,
    pub routes: RoutePolicy,
    /// DNS search suffixes to apply with the pushed servers.
    pub dns_suffixes: Vec<String>,
    /// resolv.conf to use when systemd-resolved does not run.
    pub resolv_conf: PathBuf,
    /// RFC 7383 fragmentation (a profile's DisableIKEv2Fragmentation turns it off).
    pub fragmentation: bool,
    /// Write the tunnel's state here (JSON) on every change.
    pub status_file: Option<PathBuf>,
}

/// Why a tunnel could not be brought up or went down.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{what}: {message}")]
    Setup { what: String, message: String },
    #[error("could not reach any gateway: {0}")]
    Unreachable(String),
    #[error("IKE: {0}")]
    Ike(String),
    #[error("the gateway closed the tunnel")]
    ClosedByPeer,
    /// The tunnel never came up with this gateway (another one may be tried).
    #[error("{0}")]
    NeverConnected(Box<SessionError>),
}

fn setup(what: impl Into<String>) -> impl FnOnce(String) -> SessionError {
    let what = what.into();
    move |message| SessionError::Setup { what, message }
}

/// What the tunnel reports (the lab and `aovpn status` read it).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TunnelStatus {
    pub state: String,
    pub server: String,
    pub interface: String,
    pub virtual_ip: Option<IpAddr>,
    pub routes: Vec<String>,
    pub dns: Vec<IpAddr>,
    pub ike: String,
    pub esp: String,
    pub error: Option<String>,
    pub since: u64,
}

struct Credentials {
    local: LocalCredentials,
    trust: pki::TrustStore,
}

fn load_credentials(o: &TunnelOptions) -> Result<Credentials, SessionError> {
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|e| SessionError::Setup {
            what: p.display().to_string(),
            message: e.to_string(),
        })
    };
    let chain = pki::load_certificates(&read(&o.cert)?)
        .map_err(|e| setup(format!("certificate {}", o.cert.display()))(e.to_string()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| setup(o.cert.display().to_string())("no certificate".into()))?;
    let key = pki::PrivateKey::load(&read(&o.key)?)
        .map_err(|e| setup(format!("key {}", o.key.display()))(e.to_string()))?;
    let key_spki = key
        .public_key_spki()
        .map_err(|e| setup(format!("key {}", o.key.display()))(e.to_string()))?;
    if key_spki != leaf.spki_der() {
        return Err(setup(format!("key {}", o.key.display()))(
            "does not belong to the certificate".into(),
        ));
    }
    let signing = SigningKey::from_pkcs8_der(key.pkcs8_der())
        .map_err(|e| setup(format!("key {}", o.key.display()))(e.to_string()))?;
    // The identity Windows uses for the certificate: a machine's FQDN, a user's UPN/e-mail,
    // otherwise the subject DN.
    let id = if let Some(dns) = leaf.dns_names().first() {
        IkeId::Fqdn(dns.clone())
    } else if let Some(mail) = leaf.rfc822_names().first() {
        IkeId::Rfc822(mail.clone())
    } else {
        IkeId::DerDn(leaf.subject_der().to_vec())
    };
    let mut trust = pki::TrustStore::new();
    for file in &o.ca {
        for cert in pki::load_certificates(&read(file)?)
            .map_err(|e| setup(format!("CA {}", file.display()))(e.to_string()))?
        {
            trust
                .add_root(cert)
                .map_err(|e| setup(format!("CA {}", file.display()))(e.to_string()))?;
        }
    }
    Ok(Credentials {
        local: LocalCredentials {
            id,
            key: Arc::new(signing),
            chain: chain.iter().map(|c| c.der().to_vec()).collect(),
        },
        trust,
    })
}

/// `host`, `host:port`, an IPv6 literal, or `[v6]:port` -> (host, port); the IKE port
/// defaults to 500.
fn split_server(server: &str) -> Option<(String, u16)> {
    if let Some(rest) = server.strip_prefix('[') {
        let (host, tail) = rest.split_once(']')?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if tail.is_empty() => 500,
            None => return None,
        };
        return Some((host.to_owned(), port));
    }
    match server.rsplit_once(':') {
        // More than one colon without brackets: a bare IPv6 address.
        Some((h, _)) if h.contains(':') => Some((server.to_owned(), 500)),
        Some((h, p)) => Some((h.to_owned(), p.parse().ok()?)),
        None => Some((server.to_owned(), 500)),
    }
}

/// `host` or `host:port` -> (name for certificate checks, address).
async fn resolve(server: &str) -> Result<(String, SocketAddr), SessionError> {
    let (host, port) =
        split_server(server).ok_or_else(|| setup(format!("server {server}"))("bad port".into()))?;
    let addrs = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| SessionError::Unreachable(format!("{host}: {e}")))?;
    let mut addrs: Vec<SocketAddr> = addrs.collect();
    addrs.sort_by_key(|a| !a.is_ipv4());
    let addr = addrs
        .first()
        .copied()
        .ok_or_else(|| SessionError::Unreachable(format!("{host}: no address")))?;
    Ok((host, addr))
}

/// A traffic selector's address range as the prefixes that cover it exactly.
pub fn ts_prefixes(ts: &TrafficSelector) -> Vec<IpNet> {
    match ts {
        TrafficSelector::Ipv4(r) => ipnet::Ipv4Subnets::new(r.start, r.end, 0)
            .map(IpNet::V4)
            .collect(),
        TrafficSelector::Ipv6(r) => ipnet::Ipv6Subnets::new(r.start, r.end, 0)
            .map(IpNet::V6)
            .collect(),
        TrafficSelector::Other { .. } => Vec::new(),
    }
}

struct Up {
    installed: InstalledConfig,
    dns: Option<DnsGuard>,
}

/// A tunnel being brought up or running.
pub struct Session {
    options: TunnelOptions,
    server_name: String,
    server: SocketAddr,
    sa: IkeSa,
    io: IkeIo,
    datapath: DatapathHandle,
    netlink: Netlink,
    tun_index: u32,
    physical: netio::netlink::RouteLookup,
    up: Option<Up>,
    status: TunnelStatus,
    inbound_packets: u64,
    /// A Child SA was up at some point.
    connected: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("server", &self.server)
            .field("interface", &self.options.interface)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Creates the TUN device and sockets and sends IKE_SA_INIT to the first server that
    /// resolves. Must run inside a tokio runtime.
    pub async fn start(options: TunnelOptions) -> Result<Session, SessionError> {
        let creds = load_credentials(&options)?;
        let mut last_error = String::from("no server configured");
        let mut target = None;
        for server in &options.servers {
            match resolve(server).await {
                Ok(t) => {
                    target = Some(t);
                    break;
                }
                Err(e) => last_error = e.to_string(),
            }
        }
        let (server_name, server) = target.ok_or(SessionError::Unreachable(last_error))?;

        let netlink = Netlink::new().map_err(|e| setup("netlink")(e.to_string()))?;
        let physical = netlink
            .route_to(server.ip())
            .await
            .map_err(|e| SessionError::Unreachable(format!("no route to {server}: {e}")))?;
        let source = physical
            .source
            .ok_or_else(|| SessionError::Unreachable(format!("no source address for {server}")))?;

        let tun = tun::create(&tunnel::host::tun_config(&options.interface, TUNNEL_MTU))
            .map_err(|e| setup(format!("TUN {}", options.interface))(e.to_string()))?;

        // Ephemeral local ports: a device tunnel and user tunnels run side by side on one
        // machine, each with its own sockets (the gateway answers whatever port we use).
        let unspecified = if server.is_ipv4() {
            IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        };
        let udp = UdpSocket::bind(&UdpConfig::new(SocketAddr::new(unspecified, 0)))
            .map_err(|e| setup("UDP socket for ESP")(e.to_string()))?;
        let (datapath, events) = Datapath::start(DatapathConfig::new(tun.queues, TUNNEL_MTU, udp))
            .map_err(|e| setup("data plane")(e.to_string()))?;
        let io = IkeIo::bind(SocketAddr::new(unspecified, 0), datapath.clone(), events)
            .map_err(|e| setup("UDP socket for IKE")(e.to_string()))?;
        let ike_local_port = io
            .local_port()
            .map_err(|e| setup("UDP socket")(e.to_string()))?;

        let validator = PkiValidator {
            trust: creds.trust,
            role: PeerRole::Gateway {
                server_name: server_name.clone(),
            },
            expected_id: None,
        };
        let mut ike = IkeConfig::new(creds.local, Arc::new(validator));
        if !options.ike_proposals.is_empty() {
            ike.ike_proposals = options.ike_proposals.clone();
        }
        if !options.esp_proposals.is_empty() {
            ike.esp_proposals = options.esp_proposals.clone();
        }
        ike.fragmentation = options.fragmentation;
        ike.dpd_interval = Some(DPD_INTERVAL);
        ike.ike_lifetime = Some(IKE_LIFETIME);
        ike.child_lifetime = Some(CHILD_LIFETIME);
        ike.ike_port = server.port();
        let mut initiator = InitiatorConfig::new(ike);
        initiator.ts_local = vec![TrafficSelector::ANY_V4];
        initiator.ts_remote = vec![TrafficSelector::ANY_V4];

        let mut sa = IkeSa::connect(
            Arc::new(initiator),
            Arc::new(Provider::system()),
            Instant::now(),
            SocketAddr::new(source, ike_local_port),
            server,
        )
        .map_err(|e| SessionError::Ike(e.to_string()))?;
        sa.set_unix_time(tunnel::host::unix_now());

        let status = TunnelStatus {
            state: "connecting".into(),
            server: format!("{server_name} ({server})"),
            interface: tun.name.clone(),
            since: tunnel::host::unix_now(),
            ..TunnelStatus::default()
        };
        let session = Session {
            options,
            server_name,
            server,
            sa,
            io,
            datapath,
            netlink,
            tun_index: tun.index,
            physical,
            up: None,
            status,
            inbound_packets: 0,
            connected: false,
        };
        session.write_status();
        Ok(session)
    }

    /// Runs the tunnel until `shutdown` resolves (then it says goodbye and cleans up) or the
    /// tunnel fails or is closed by the gateway (cleaned up as well, and reported).
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), SessionError> {
        tokio::pin!(shutdown);
        let mut liveness = tokio::time::interval(Duration::from_secs(5));
        let result = loop {
            if let Err(e) = self.pump().await {
                break Err(e);
            }
            if self.sa.is_closed() {
                break Err(SessionError::ClosedByPeer);
            }
            let timeout = self.sa.poll_timeout();
            let sleep = async {
                match timeout {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => break Ok(()),
                _ = sleep => self.sa.handle_timeout(Instant::now()),
                _ = liveness.tick() => {
                    // ESP from the gateway proves it alive; only a quiet gateway gets probed.
                    let packets: u64 = self
                        .datapath
                        .all_sa_counters()
                        .values()
                        .map(|c| c.inbound.packets)
                        .sum();
                    // Any change counts (a rekey removes an SA and its count with it).
                    if packets != self.inbound_packets {
                        self.inbound_packets = packets;
                        self.sa.note_peer_alive(Instant::now());
                    }
                }
                incoming = self.io.recv() => match incoming {
                    Ok(Incoming::Ike { local, remote, bytes }) => {
                        self.sa.set_unix_time(tunnel::host::unix_now());
                        self.sa.handle_datagram(Instant::now(), local, remote, &bytes);
                    }
                    Ok(Incoming::Datapath(event)) => self.on_datapath_event(event),
                    Ok(Incoming::Closed) => break Err(SessionError::Ike("data plane stopped".into())),
                    Err(e) => tracing::warn!("receiving IKE: {e}"),
                },
            }
        };
        // Say goodbye whenever the IKE SA is still up, so the gateway frees our address now.
        if result.is_ok() || self.sa.state() == SaState::Established {
            self.goodbye().await;
        }
        self.status.state = if result.is_ok() {
            "disconnected"
        } else {
            "failed"
        }
        .into();
        self.status.error = result.as_ref().err().map(|e| e.to_string());
        self.teardown().await;
        self.write_status();
        match result {
            Err(e) if !self.connected => Err(SessionError::NeverConnected(Box::new(e))),
            other => other,
        }
    }

    /// Applies the engine's events, then sends what it queued: SAs are installed before the
    /// answer that lets the gateway use them goes out (a CREATE_CHILD_SA response sent first
    /// could bring ESP on the new SA before it is installed).
    async fn pump(&mut self) -> Result<(), SessionError> {
        loop {
            let mut progressed = false;
            let mut result = Ok(());
            while let Some(event) = self.sa.poll_event() {
                progressed = true;
                result = self.on_event(event).await;
                if result.is_err() {
                    break;
                }
            }
            // Also when the session ends: e.g. the answer to the gateway's Delete.
            self.send_queued().await;
            result?;
            if !progressed {
                return Ok(());
            }
        }
    }

    async fn send_queued(&mut self) {
        while let Some(t) = self.sa.poll_transmit() {
            if let Err(e) = self.io.send(&t).await {
                tracing::warn!(to = %t.remote, "sending IKE: {e}");
            }
        }
    }

    async fn on_event(&mut self, event: Event) -> Result<(), SessionError> {
        match event {
            Event::IkeSaEstablished(info) => {
                tracing::info!(gateway = %info.peer_subject, ike = %info.algorithms, "IKE SA up");
                self.status.ike = info.algorithms.to_string();
            }
            Event::ChildSaEstablished(child) => self.child_up(&child).await?,
            Event::ChildSaRekeyed {
                old_spi_in, new, ..
            } => {
                // Make before break: the new SA receives now; it sends once the gateway is known
                // to receive on it (ChildSaOutboundReady if we initiated the rekey, else the
                // gateway's Delete of the old SA); the old one keeps receiving until it is gone.
                // Addresses, routes and DNS stay as they are.
                let selectors: Vec<IpNet> = new.ts_remote.iter().flat_map(ts_prefixes).collect();
                let sa = tunnel::child::datapath_sa(
                    u64::from(new.spi_in),
                    &new,
                    selectors,
                    tunnel::child::Side::Client,
                )
                .map_err(|e| SessionError::Ike(e.to_string()))?;
                self.datapath
                    .install_sa_replacing(sa, u64::from(old_spi_in), DEFAULT_REKEY_SEND_FALLBACK)
                    .map_err(|e| setup("installing the rekeyed Child SA")(e.to_string()))?;
                tracing::info!(
                    old = format_args!("{old_spi_in:#010x}"),
                    new = format_args!("{:#010x}", new.spi_in),
                    "Child SA rekeyed"
                );
                self.status.esp = tunnel::child::describe_esp(&new.algorithms);
                self.write_status();
            }
            Event::IkeSaRekeyed { .. } => tracing::info!("IKE SA rekeyed"),
            Event::ChildSaOutboundReady { spi_in } => {
                let _ = self.datapath.activate_outbound(u64::from(spi_in));
            }
            Event::ChildSaDeleted { spi_in, .. } => {
                tracing::info!(spi = format_args!("{spi_in:#010x}"), "Child SA deleted");
                // Its replacement (if any) sends from now on; ESP still in flight on the old
                // SA is accepted for a moment.
                let _ = self
                    .datapath
                    .retire_sa(u64::from(spi_in), DEFAULT_RETIRE_LINGER);
                if self.sa.child_sa_spis().is_empty() {
                    // Deleted by the gateway or expired without a successful rekey: the IKE SA
                    // alone carries no traffic, so end the session (the agent reconnects).
                    return Err(SessionError::Ike("no Child SA left".into()));
                }
            }
            Event::AddressesChanged { local, remote } => {
                for id in self.datapath.sa_ids() {
                    let _ = self.datapath.update_peer(id, remote, Some(local.ip()));
                }
            }
            // A failed rekey leaves the tunnel up (the SA is retried or expires later).
            Event::Failed(failure) if self.sa.state() == SaState::Established => {
                tracing::warn!(reason = %failure.reason, "IKE exchange failed; tunnel stays up");
            }
            Event::Failed(failure) => {
                return Err(SessionError::Ike(failure.reason.to_string()));
            }
            Event::Closed(_) => return Err(SessionError::ClosedByPeer),
        }
        Ok(())
    }

    async fn child_up(&mut self, child: &ikev2::ChildSa) -> Result<(), SessionError> {
        let selectors: Vec<IpNet> = child.ts_remote.iter().flat_map(ts_prefixes).collect();
        let sa = tunnel::child::datapath_sa(
            u64::from(child.spi_in),
            child,
            selectors.clone(),
            tunnel::child::Side::Client,
        )
        .map_err(|e| SessionError::Ike(e.to_string()))?;
        self.datapath
            .install_sa(sa)
            .map_err(|e| setup("installing the Child SA")(e.to_string()))?;

        let mut installed = self.netlink.session();
        let vip = child.virtual_ips.first().copied();
        for ip in &child.virtual_ips {
            let len = if ip.is_ipv4() { 32 } else { 128 };
            installed
                .add_address(IfAddress::new(self.tun_index, *ip, len))
                .await
                .map_err(|e| setup(format!("address {ip}"))(e.to_string()))?;
        }
        let mut routes = Vec::new();
        match &self.options.routes {
            RoutePolicy::TrafficSelectors => {
                for net in &selectors {
                    if net.contains(&self.server.ip()) {
                        // The gateway itself stays reachable outside the tunnel.
                        let host = IpNet::from(self.server.ip());
                        if !routes.contains(&(host, false)) {
                            routes.push((host, false));
                        }
                    }
                    if net.prefix_len() == 0 {
                        // Two halves instead of a second default route (which would clash
                        // with the existing one); longer prefixes win over the default.
                        let halves = match net {
                            IpNet::V4(_) => ["0.0.0.0/1", "128.0.0.0/1"],
                            IpNet::V6(_) => ["::/1", "8000::/1"],
                        };
                        for h in halves {
                            if let Ok(half) = h.parse::<IpNet>() {
                                routes.push((half, true));
                            }
                        }
                    } else {
                        routes.push((*net, true));
                    }
                }
            }
            RoutePolicy::Profile(plan) => {
                let ts: Vec<profile::Prefix> = selectors
                    .iter()
                    .map(|n| profile::Prefix {
                        addr: n.network(),
                        len: n.prefix_len(),
                    })
                    .collect();
                for r in plan.routes(self.server.ip(), &child.virtual_ips, &ts) {
                    let net = IpNet::new(r.prefix.addr, r.prefix.len)
                        .map_err(|e| setup("route")(e.to_string()))?;
                    routes.push((net, r.via == profile::plan::RouteVia::Tunnel));
                }
            }
        }
        let mut shown = Vec::new();
        for (net, tunnel) in routes {
            let mut route = Route::via_dev(net.network(), net.prefix_len(), self.tun_index);
            if tunnel {
                route.source = vip.filter(|v| v.is_ipv4() == net.network().is_ipv4());
            } else {
                route.oif = Some(self.physical.oif);
                route.gateway = self.physical.gateway;
            }
            installed
                .add_route(route)
                .await
                .map_err(|e| setup(format!("route {net}"))(e.to_string()))?;
            shown.push(if tunnel {
                format!("{net} dev {}", self.options.interface)
            } else {
                format!("{net} (physical)")
            });
        }

        let dns = if child.dns_servers.is_empty() {
            None
        } else {
            let backend = DnsBackend::detect(self.options.resolv_conf.clone());
            let config = DnsConfig {
                servers: child.dns_servers.clone(),
                search_domains: self.options.dns_suffixes.clone(),
                routing_domains: Vec::new(),
            };
            match backend.apply(&self.options.interface, &config) {
                Ok(guard) => Some(guard),
                Err(e) => {
                    tracing::warn!("DNS not applied: {e}");
                    None
                }
            }
        };
        self.up = Some(Up { installed, dns });
        self.status.state = "connected".into();
        self.connected = true;
        self.status.virtual_ip = vip;
        self.status.routes = shown;
        self.status.dns = child.dns_servers.clone();
        self.status.esp = tunnel::child::describe_esp(&child.algorithms);
        self.status.since = tunnel::host::unix_now();
        tracing::info!(
            gateway = %self.server_name,
            vip = ?vip,
            routes = ?self.status.routes,
            esp = %self.status.esp,
            "tunnel up"
        );
        self.write_status();
        Ok(())
    }

    fn on_datapath_event(&mut self, event: DatapathEvent) {
        match event {
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
                // Data-plane ids are the inbound SPIs. False when it is already being replaced.
                if let Ok(spi_in) = u32::try_from(id) {
                    self.sa.rekey_child_sa(Instant::now(), spi_in);
                }
            }
            DatapathEvent::PeerAddressChanged { id, seen, .. } => {
                let _ = self.datapath.update_peer(id, seen, None);
            }
            DatapathEvent::UnknownSpi { .. } | DatapathEvent::Ike { .. } => {}
        }
    }

    /// Sends IKE Delete and waits briefly for the answer, so the gateway frees our address at
    /// once instead of after a liveness timeout.
    async fn goodbye(&mut self) {
        self.sa.delete(Instant::now());
        let deadline = tokio::time::Instant::now() + DELETE_GRACE;
        while !self.sa.is_closed() {
            while let Some(t) = self.sa.poll_transmit() {
                let _ = self.io.send(&t).await;
            }
            let timeout = self.sa.poll_timeout();
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = async {
                    match timeout {
                        Some(at) => tokio::time::sleep_until(at.into()).await,
                        None => std::future::pending().await,
                    }
                } => self.sa.handle_timeout(Instant::now()),
                incoming = self.io.recv() => {
                    if let Ok(Incoming::Ike { local, remote, bytes }) = incoming {
                        self.sa.handle_datagram(Instant::now(), local, remote, &bytes);
                    }
                }
            }
            while self.sa.poll_event().is_some() {}
        }
    }

    async fn teardown(&mut self) {
        let _queues = self.datapath.shutdown().await;
        if let Some(up) = self.up.take() {
            if let Some(dns) = up.dns
                && let Err(e) = dns.restore()
            {
                tracing::warn!("restoring DNS: {e}");
            }
            if let Err(e) = up.installed.teardown().await {
                tracing::warn!("removing routes and addresses: {e}");
            }
        }
    }

    fn write_status(&self) {
        if let Some(path) = &self.options.status_file {
            tunnel::host::write_json_atomically(path, &self.status);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_server;

    #[test]
    fn server_strings_split_into_host_and_port() {
        let s = |x: &str| split_server(x);
        assert_eq!(s("vpn.example.com"), Some(("vpn.example.com".into(), 500)));
        assert_eq!(
            s("vpn.example.com:4501"),
            Some(("vpn.example.com".into(), 4501))
        );
        assert_eq!(s("203.0.113.1"), Some(("203.0.113.1".into(), 500)));
        assert_eq!(s("2001:db8::1"), Some(("2001:db8::1".into(), 500)));
        assert_eq!(s("[2001:db8::1]"), Some(("2001:db8::1".into(), 500)));
        assert_eq!(s("[2001:db8::1]:4500"), Some(("2001:db8::1".into(), 4500)));
        assert_eq!(s("vpn.example.com:x"), None);
        assert_eq!(s("[2001:db8::1]x"), None);
    }
}
