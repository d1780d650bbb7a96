//! A tunnel's life: start (resolve, TUN device, IKE_SA_INIT), the event loop (commands, engine
//! events, network changes, MOBIKE), and finish (goodbye, then removing what it installed).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ikev2::{Endpoint, FailureReason, GatewayIdentity};
use ipsec_crypto::Provider;
use netio::netlink::Netlink;
use netio::tun;
use tokio::sync::mpsc;
use tunnel::{Driver, DriverConfig, DriverEvent, Side};

use super::options::initiator_config;
use super::path::{offered_transform, physical_route_to, resolve, tunnel_mtu};
use super::{
    Command, Connection, ConnectionError, ConnectionOptions, ConnectionStatus, IkeFailure,
    InstallRecord, Outcome, Report, setup, unreachable,
};
use crate::dns::SharedDns;

/// How long a goodbye (IKE Delete) may take before we leave anyway.
const DELETE_GRACE: Duration = Duration::from_secs(2);

/// How long removing the registered DNS name may delay a clean disconnect.
const DNS_REMOVE_GRACE: Duration = Duration::from_secs(3);

/// How often ESP counters are read: ESP sent into silence for two ticks makes the client ask
/// the gateway whether it is still there.
const LIVENESS_TICK: Duration = Duration::from_secs(2);

/// Runs one tunnel until told to stop, or until it fails; everything it installed is removed
/// before [`Report::Ended`] goes out. `dns_key` names its DNS settings in `dns` (tunnels
/// sharing one [`SharedDns`] need distinct keys). `network` is notified when the machine's
/// network changed (notifications coalesce: none is lost, however busy the tunnel is).
pub async fn run(
    options: ConnectionOptions,
    dns: Arc<SharedDns>,
    dns_key: String,
    mut commands: mpsc::Receiver<Command>,
    network: Arc<tokio::sync::Notify>,
    reports: mpsc::UnboundedSender<Report>,
) -> Outcome {
    let mut via: Option<Redirect> = None;
    let mut hops = 0;
    let outcome = loop {
        let started = Connection::start(
            options.clone(),
            via.as_ref(),
            dns.clone(),
            &dns_key,
            &reports,
        )
        .await;
        let (outcome, redirect) = match started {
            Ok(mut connection) => {
                let result = connection.run(&mut commands, &network).await;
                let connected = connection.status.virtual_ip.is_some();
                let dialled = connection.server;
                connection.finish(result.is_ok()).await;
                match result {
                    Ok(()) => (Outcome::Stopped, None),
                    Err(error) => {
                        let redirect = redirected_to(&error).map(|to| Redirect {
                            to,
                            from: GatewayIdentity::from(dialled.ip()),
                        });
                        (Outcome::Failed { error, connected }, redirect)
                    }
                }
            }
            Err(error) => (
                Outcome::Failed {
                    error,
                    connected: false,
                },
                None,
            ),
        };
        match redirect {
            Some(redirect) if hops < MAX_REDIRECTS => {
                hops += 1;
                tracing::info!(
                    from = %redirect.from,
                    to = %redirect.to,
                    hops,
                    "the gateway redirected us (RFC 5685): connecting there"
                );
                via = Some(redirect);
            }
            _ => break outcome,
        }
    };
    let _ = reports.send(Report::Ended(outcome.clone()));
    outcome
}

/// Redirects (RFC 5685) one attempt follows before it fails: gateways that send clients to
/// each other in a loop cost a client this many handshakes, then its backoff.
const MAX_REDIRECTS: usize = 3;

/// A gateway's REDIRECT: where to, and the gateway that sent it (named in the next
/// IKE_SA_INIT as REDIRECTED_FROM).
#[derive(Debug, Clone)]
struct Redirect {
    to: GatewayIdentity,
    from: GatewayIdentity,
}

/// The gateway a failed handshake was redirected to.
fn redirected_to(error: &ConnectionError) -> Option<GatewayIdentity> {
    match error {
        ConnectionError::Ike(IkeFailure::Failed(f)) => match &f.reason {
            FailureReason::Redirected(to) => Some(to.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// The address of a gateway a REDIRECT names, on the IKE port we dialled. An address no
/// gateway can have (this host, multicast, link-local, unspecified) is refused: the REDIRECT
/// came before anyone authenticated.
async fn resolve_gateway(
    gateway: &GatewayIdentity,
    port: u16,
) -> Result<SocketAddr, ConnectionError> {
    let addr = match gateway {
        GatewayIdentity::Ipv4(a) => SocketAddr::new(IpAddr::V4(*a), port),
        GatewayIdentity::Ipv6(a) => SocketAddr::new(IpAddr::V6(*a), port),
        GatewayIdentity::Fqdn(name) => resolve(&format!("{name}:{port}")).await?.1,
    };
    if !plausible_gateway(addr.ip()) {
        return Err(unreachable(gateway)(format!(
            "a redirect to {} is refused",
            addr.ip()
        )));
    }
    Ok(addr)
}

fn plausible_gateway(ip: IpAddr) -> bool {
    let link_local = match ip {
        IpAddr::V4(a) => a.is_link_local() || a.is_broadcast(),
        IpAddr::V6(a) => a.is_unicast_link_local(),
    };
    !(ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || link_local)
}

impl Connection {
    /// Creates the TUN device and sockets and sends IKE_SA_INIT. Must run inside a tokio
    /// runtime.
    async fn start(
        options: ConnectionOptions,
        via: Option<&Redirect>,
        dns: Arc<SharedDns>,
        dns_key: &str,
        reports: &mpsc::UnboundedSender<Report>,
    ) -> Result<Connection, ConnectionError> {
        let (server_name, mut server) = resolve(&options.server).await?;
        // A redirect moves the tunnel to another gateway of the service; that gateway must
        // still prove the name dialled (`server_name`), so a REDIRECT cannot hand the tunnel
        // to someone else.
        if let Some(redirect) = via {
            server = resolve_gateway(&redirect.to, server.port()).await?;
        }
        let netlink = Netlink::new().map_err(setup("netlink"))?;
        let physical = physical_route_to(&netlink, server.ip(), None).await?;
        let source = physical
            .source
            .ok_or_else(|| unreachable(server)("no source address"))?;

        let mut initiator = initiator_config(&options, &server_name, server.port())?;
        initiator.follow_redirects = true;
        initiator.redirected_from = via.map(|r| r.from.clone());
        let transform = offered_transform(&initiator.ike.esp_proposals);
        let mtu = tunnel_mtu(options.mtu, physical.mtu, transform, server.ip());
        if mtu < options.mtu {
            tracing::info!(
                configured = options.mtu,
                path_mtu = physical.mtu,
                mtu,
                "tunnel MTU lowered to what the path to the gateway carries"
            );
        }
        let tun = tun::create(&tunnel::host::tun_config(&options.interface, mtu))
            .map_err(setup(format!("TUN {}", options.interface)))?;
        let _ = reports.send(Report::Installed(InstallRecord {
            interface: tun.name.clone(),
            tun_index: tun.index,
            ..InstallRecord::default()
        }));

        // Ephemeral local ports: a device tunnel and user tunnels run side by side on one
        // machine, each with its own sockets (the gateway answers whatever port we use).
        let unspecified = if server.is_ipv4() {
            IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        };
        let endpoint =
            Endpoint::initiator(Arc::new(Provider::system())).map_err(IkeFailure::Start)?;
        // The data plane's buffers are sized for the configured MTU, the most the tunnel will
        // ever be given (it is lowered and raised again with the path, never above it).
        let mut config = DriverConfig::new(
            Side::Client,
            tun.queues,
            options.mtu,
            SocketAddr::new(unspecified, 0),
            SocketAddr::new(unspecified, 0),
            endpoint,
        );
        config.liveness_tick = LIVENESS_TICK;
        let mut driver = Driver::start(config).map_err(setup("tunnel"))?;

        let local = SocketAddr::new(source, driver.ike_local_addr().port());
        let sa = driver
            .connect(Arc::new(initiator), local, server)
            .map_err(IkeFailure::Start)?;

        let status = ConnectionStatus {
            state: "connecting".into(),
            server: format!("{server_name} ({server})"),
            interface: tun.name.clone(),
            since: tunnel::host::unix_now(),
            ..ConnectionStatus::default()
        };
        Ok(Connection {
            options,
            dns,
            dns_key: dns_key.to_owned(),
            server_name,
            server,
            driver,
            sa,
            netlink,
            tun_index: tun.index,
            physical,
            mtu,
            transform,
            up: None,
            status,
            path_lost_since: None,
            reports: reports.clone(),
            registrar: None,
        })
    }

    /// Until a stop command (Ok) or a failure (Err).
    async fn run(
        &mut self,
        commands: &mut mpsc::Receiver<Command>,
        network: &tokio::sync::Notify,
    ) -> Result<(), ConnectionError> {
        loop {
            let outage = self.outage_deadline();
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Stop) | None => return Ok(()),
                    Some(Command::Status(reply)) => {
                        let _ = reply.send(self.fresh_status());
                    }
                },
                () = network.notified() => self.check_path().await?,
                event = self.driver.next_event() => self.on_event(event).await?,
                () = sleep_until_opt(outage) => {
                    let lost = self.path_lost_since.map(|t| t.elapsed().as_secs()).unwrap_or(0);
                    return Err(ConnectionError::Outage(lost));
                }
            }
        }
    }

    fn outage_deadline(&self) -> Option<Instant> {
        Some(self.path_lost_since? + self.options.network_outage?)
    }

    async fn on_event(&mut self, event: DriverEvent) -> Result<(), ConnectionError> {
        match event {
            DriverEvent::Established { sa } => {
                if let Some(info) = self.driver.sa(sa).and_then(|r| r.info.as_ref()) {
                    tracing::info!(gateway = %info.peer_subject, ike = %info.algorithms, eap_tls = ?info.eap_tls, "IKE SA up");
                    self.status.ike = info.algorithms.to_string();
                    self.status.eap_tls = info.eap_tls.clone();
                }
            }
            DriverEvent::ChildInstalled { child, .. } => {
                if self.up.is_none() {
                    self.child_up(&child).await?;
                }
                self.resize_for_transform(&child.algorithms).await;
            }
            DriverEvent::ChildRekeyed {
                old_spi_in,
                new_spi_in,
                ..
            } => {
                tracing::info!(
                    old = format_args!("{old_spi_in:#010x}"),
                    new = format_args!("{new_spi_in:#010x}"),
                    "Child SA rekeyed"
                );
                let algorithms = self
                    .driver
                    .sa(self.sa)
                    .and_then(|r| r.current_child())
                    .map(|c| c.info.algorithms);
                if let Some(algorithms) = algorithms {
                    self.status.esp = tunnel::child::describe_esp(&algorithms);
                    // A rekey may have settled on another transform.
                    self.resize_for_transform(&algorithms).await;
                }
            }
            DriverEvent::IkeRekeyed { .. } => tracing::info!("IKE SA rekeyed"),
            DriverEvent::ChildRemoved {
                remaining, spi_in, ..
            } => {
                tracing::info!(spi = format_args!("{spi_in:#010x}"), "Child SA deleted");
                if remaining == 0 {
                    // Deleted by the gateway or expired without a successful rekey: the IKE SA
                    // alone carries no traffic, so end the tunnel (the agent reconnects).
                    return Err(IkeFailure::NoChildSa.into());
                }
            }
            DriverEvent::Moved { local, remote, .. } => {
                tracing::info!(%local, %remote, "tunnel moved");
                self.status.local = Some(local);
                self.status.remote = Some(remote);
            }
            DriverEvent::ExchangeFailed { failure, .. } => {
                tracing::warn!(reason = %failure.reason, "IKE exchange failed; tunnel stays up");
            }
            DriverEvent::Closed {
                failure, reason, ..
            } => {
                return Err(match failure {
                    Some(f) => IkeFailure::Failed(Box::new(f)).into(),
                    None if reason == ikev2::CloseReason::PeerDelete => {
                        ConnectionError::ClosedByPeer
                    }
                    None => IkeFailure::Closed(reason).into(),
                });
            }
            DriverEvent::Resumed { slept } => {
                tracing::info!(slept_s = slept.as_secs(), "resumed: checking the path");
                self.check_path().await?;
            }
            DriverEvent::DatapathStopped => {
                return Err(IkeFailure::DatapathStopped.into());
            }
            // Only a responder relays EAP.
            DriverEvent::EapPassThrough { .. } => {}
        }
        Ok(())
    }

    /// The network changed (or the machine woke up): find the path to the gateway again. No
    /// path: the tunnel waits (up to NetworkOutageTime). A path, new or back: MOBIKE moves the
    /// IKE SA and its Child SA there (UPDATE_SA_ADDRESSES, which also proves the gateway
    /// alive); without MOBIKE a changed address ends the tunnel so that the agent re-dials.
    async fn check_path(&mut self) -> Result<(), ConnectionError> {
        let lookup = physical_route_to(&self.netlink, self.server.ip(), Some(self.tun_index)).await;
        let Ok(lookup) = lookup else {
            if self.path_lost_since.is_none() {
                tracing::warn!(gateway = %self.server, "no path to the gateway: waiting for the network");
                self.path_lost_since = Some(Instant::now());
                self.status.state = "waiting for network".into();
                self.driver.set_path_available(self.sa, false);
            }
            return Ok(());
        };
        let Some(source) = lookup.source else {
            return Ok(());
        };
        let current = self
            .driver
            .sa(self.sa)
            .and_then(|r| r.info.as_ref())
            .map(|i| i.local.ip());
        let was_lost = self.path_lost_since.take().is_some();
        let changed = current.is_some_and(|c| c != source)
            || lookup.oif != self.physical.oif
            || lookup.gateway != self.physical.gateway;
        let mtu_changed = lookup.mtu != self.physical.mtu;
        if !was_lost && !changed {
            if mtu_changed {
                self.physical = lookup;
                self.resize_to_path().await;
            }
            return Ok(());
        }
        self.physical = lookup;
        self.resize_to_path().await;
        self.driver.set_path_available(self.sa, true);
        if self.up.is_some() {
            self.status.state = "connected".into();
            self.refresh_bypass_routes().await;
        }
        if self.driver.roam(self.sa, source) {
            tracing::info!(%source, "path to the gateway changed: MOBIKE update");
            Ok(())
        } else if current.is_some_and(|c| c != source) {
            Err(ConnectionError::AddressChanged)
        } else {
            // Same address, path back: ask the gateway whether the SA survived.
            self.driver.check_liveness(self.sa);
            Ok(())
        }
    }

    /// Takes the transform the gateway chose (it may frame packets differently from the one
    /// offered first, which the tunnel was created for) and sizes the tunnel for it.
    async fn resize_for_transform(&mut self, negotiated: &ikev2::EspAlgorithms) {
        if let Ok(transform) = tunnel::child::esp_transform(negotiated) {
            self.transform = transform;
        }
        self.resize_to_path().await;
    }

    /// Sets the TUN's MTU to what the current path to the gateway carries with the current
    /// transform (after a move, a new route MTU or a learned path MTU), if that differs.
    async fn resize_to_path(&mut self) {
        let mtu = tunnel_mtu(
            self.options.mtu,
            self.physical.mtu,
            self.transform,
            self.server.ip(),
        );
        if mtu == self.mtu {
            return;
        }
        match self.netlink.set_mtu(self.tun_index, u32::from(mtu)).await {
            Ok(()) => {
                tracing::info!(
                    from = self.mtu,
                    to = mtu,
                    path_mtu = self.physical.mtu,
                    "tunnel MTU resized to the path to the gateway"
                );
                self.mtu = mtu;
            }
            Err(e) => tracing::warn!("setting the tunnel MTU to {mtu}: {e}"),
        }
    }

    /// Says goodbye while the IKE SA is up, then removes DNS, routes, addresses and the TUN.
    /// A clean stop first removes the registered DNS name, through the tunnel.
    async fn finish(mut self, clean: bool) {
        if let Some(registrar) = self.registrar.take()
            && clean
            && tokio::time::timeout(DNS_REMOVE_GRACE, registrar.remove())
                .await
                .is_err()
        {
            tracing::warn!("DNS name not removed: no answer in time");
        }
        let _queues = self.driver.shutdown(DELETE_GRACE).await;
        if let Err(e) = self.dns.remove(&self.dns_key) {
            tracing::warn!("restoring DNS: {e}");
        }
        if let Some(up) = self.up.take() {
            up.remove().await;
        }
        let _ = self
            .reports
            .send(Report::Installed(InstallRecord::default()));
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
