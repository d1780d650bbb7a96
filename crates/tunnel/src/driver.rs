//! The one daemon driver both `aovpn gateway` and the client run: it feeds the sans-IO IKE
//! engine with datagrams and time, installs what the engine negotiates in the data plane, keeps
//! the map from each IKE SA to its Child SAs to their data-plane SAs, and tells the daemon
//! what happened ([`DriverEvent`]). The daemons keep only their policy: which SAs to start or
//! delete, what to do with addresses, routes and DNS, what to report.
//!
//! ```text
//! let mut driver = Driver::start(DriverConfig::new(Side::Gateway, tun.queues, mtu, esp, ike, endpoint))?;
//! loop {
//!     tokio::select! {
//!         event = driver.next_event() => policy.on(event, &mut driver),  // cancel-safe
//!         _ = shutdown => break,
//!     }
//! }
//! driver.shutdown(grace).await;   // Delete sent to every peer, data plane stopped
//! ```
//!
//! - **Inputs**: IKE on port 500 (its own socket) and on port 4500 (from the data plane, on a
//!   channel of its own, so an ESP flood cannot crowd it out); data-plane events (SA limits,
//!   NAT rebinding); the engine's timers; a liveness tick that reads ESP counters.
//! - **Order**: the engine's events are applied to the data plane before the datagrams it
//!   queued are sent, so a Child SA is installed before the answer that lets the peer use it.
//! - **Time**: the suspend-aware clock (`netio::clock`): lifetimes, DPD and retransmissions count
//!   time spent suspended, and a resume runs every timer that passed meanwhile at once.
//! - **Liveness**: ESP from a peer counts as proof of life (dead peer detection only probes
//!   quiet peers). On a client, ESP sent without any coming back for two ticks triggers a
//!   liveness check at once: a gateway that restarted or vanished is found within seconds.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datapath::{
    DEFAULT_REKEY_SEND_FALLBACK, DEFAULT_RETIRE_LINGER, Datapath, DatapathConfig, DatapathEvent,
    DatapathHandle, EspSaId,
};
use ikev2::{CloseReason, Endpoint, Event, Failure, IkeSaId, InitiatorConfig, Now, Transmit};
use ipnet::IpNet;
use netio::clock::{ResumeDetector, SuspendAwareClock};
use netio::tun::TunQueue;
use netio::udp::{UdpConfig, UdpSocket};
use tokio::sync::mpsc;

use crate::child::{self, Side};
use crate::ike_io::IkeIo;
pub use crate::record::{ChildInfo, ChildRecord, IkeSaRecord, Traffic};

/// How often ESP counters are read by default.
pub const DEFAULT_LIVENESS_TICK: Duration = Duration::from_secs(5);

/// Suspends shorter than this are not reported as a resume.
const RESUME_THRESHOLD: Duration = Duration::from_secs(3);

/// Ticks of ESP sent without any received before a client checks the gateway's liveness.
const ONE_WAY_TICKS: u32 = 2;

/// What the driver runs on.
#[derive(Debug)]
pub struct DriverConfig {
    /// Gateway or client: which routes a data-plane SA carries and who sends NAT keepalives.
    pub side: Side,
    /// The TUN device's queues.
    pub tun_queues: Vec<TunQueue>,
    /// The largest MTU the TUN device will have: the data plane sizes its read buffers for
    /// it once, so a device whose MTU may be raised later needs the ceiling here.
    pub mtu: u16,
    /// Where the data plane's socket (ESP and IKE on 4500) binds.
    pub esp_bind: SocketAddr,
    /// Where the IKE socket (port 500) binds.
    pub ike_bind: SocketAddr,
    /// The engine: a responder endpoint (gateway) or an initiator-only one (client).
    pub endpoint: Endpoint,
    /// How often ESP counters are read.
    pub liveness_tick: Duration,
}

impl DriverConfig {
    /// A configuration with the default liveness tick.
    pub fn new(
        side: Side,
        tun_queues: Vec<TunQueue>,
        mtu: u16,
        esp_bind: SocketAddr,
        ike_bind: SocketAddr,
        endpoint: Endpoint,
    ) -> Self {
        Self {
            side,
            tun_queues,
            mtu,
            esp_bind,
            ike_bind,
            endpoint,
            liveness_tick: DEFAULT_LIVENESS_TICK,
        }
    }
}

/// Why the driver could not start.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("binding UDP {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("data plane: {0}")]
    Datapath(#[from] datapath::DatapathError),
}

/// What happened, for the daemon's policy.
#[derive(Debug, Clone)]
pub enum DriverEvent {
    /// An IKE SA authenticated (its record has the info).
    Established { sa: IkeSaId },
    /// A Child SA (not a rekey's replacement) is installed and carries traffic.
    ChildInstalled { sa: IkeSaId, child: ChildInfo },
    /// A Child SA was replaced by a rekey; its traffic moves to the new one.
    ChildRekeyed {
        sa: IkeSaId,
        old_spi_in: u32,
        new_spi_in: u32,
    },
    /// A Child SA was deleted (not as part of a rekey's make-before-break only: `remaining`
    /// counts the Child SAs still installed).
    ChildRemoved {
        sa: IkeSaId,
        spi_in: u32,
        remaining: usize,
    },
    /// The IKE SA was rekeyed (same [`IkeSaId`], new SPIs).
    IkeRekeyed { sa: IkeSaId },
    /// The peer's or our address changed (NAT rebinding, MOBIKE); the data plane follows.
    Moved {
        sa: IkeSaId,
        local: SocketAddr,
        remote: SocketAddr,
    },
    /// An exchange failed while the IKE SA stays up (e.g. a refused rekey).
    ExchangeFailed { sa: IkeSaId, failure: Failure },
    /// The IKE SA is gone; its data-plane SAs are removed. `record` is its last state.
    Closed {
        sa: IkeSaId,
        reason: CloseReason,
        failure: Option<Failure>,
        record: Box<IkeSaRecord>,
    },
    /// The machine was suspended for this long; every timer that passed meanwhile has run.
    Resumed { slept: Duration },
    /// The data plane stopped (its tasks ended): nothing more will arrive.
    DatapathStopped,
    /// Responder relaying EAP: this EAP-Response goes to the authentication server; answer
    /// with [`Driver::eap_answer`].
    EapPassThrough {
        sa: IkeSaId,
        eap: Vec<u8>,
        identity: Vec<u8>,
    },
}

/// The running driver: engine, sockets, data plane and the SA map.
pub struct Driver {
    endpoint: Endpoint,
    io: IkeIo,
    datapath: DatapathHandle,
    dp_events: mpsc::Receiver<DatapathEvent>,
    side: Side,
    sas: BTreeMap<IkeSaId, IkeSaRecord>,
    /// Data-plane SA -> (IKE SA, inbound SPI), for the data plane's events.
    esp_index: HashMap<EspSaId, (IkeSaId, u32)>,
    next_esp_id: EspSaId,
    clock: SuspendAwareClock,
    resume: ResumeDetector,
    liveness: tokio::time::Interval,
    outbox: VecDeque<DriverEvent>,
    /// A datagram taken from the engine whose send was interrupted (cancelled); sent first.
    unsent: Option<Transmit>,
    datapath_gone: bool,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("side", &self.side)
            .field("sas", &self.sas.len())
            .finish_non_exhaustive()
    }
}

/// Socket buffers of the ESP port (the kernel doubles the request). Debian's default (208 KiB)
/// holds 150 full-size datagrams: with one client sending TCP as fast as the gateway decrypts,
/// it overflowed and 6% of the stream was retransmitted; with this, none, for ~3 ms of queue
/// under that load (measured in `aovpn lab`, 2026-12-05). Many clients bursting at once need
/// it more.
const ESP_SOCKET_BUFFER: usize = 1 << 20;

fn unix_now() -> u64 {
    crate::host::unix_now()
}

impl Driver {
    /// Binds the sockets and starts the data plane. Must run inside a tokio runtime.
    pub fn start(config: DriverConfig) -> Result<Driver, DriverError> {
        let bind = |addr: SocketAddr| {
            let config = UdpConfig {
                buffer_size: Some(ESP_SOCKET_BUFFER),
                ..UdpConfig::new(addr)
            };
            UdpSocket::bind(&config).map_err(|source| DriverError::Bind { addr, source })
        };
        let udp = bind(config.esp_bind)?;
        let (datapath, receivers) =
            Datapath::start(DatapathConfig::new(config.tun_queues, config.mtu, udp))?;
        let io =
            IkeIo::bind(config.ike_bind, datapath.clone(), receivers.ike).map_err(|source| {
                DriverError::Bind {
                    addr: config.ike_bind,
                    source,
                }
            })?;
        let mut liveness =
            tokio::time::interval(config.liveness_tick.max(Duration::from_millis(50)));
        liveness.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(Driver {
            endpoint: config.endpoint,
            io,
            datapath,
            dp_events: receivers.events,
            side: config.side,
            sas: BTreeMap::new(),
            esp_index: HashMap::new(),
            next_esp_id: 1,
            clock: SuspendAwareClock::new(),
            resume: ResumeDetector::new(RESUME_THRESHOLD),
            liveness,
            outbox: VecDeque::new(),
            unsent: None,
            datapath_gone: false,
        })
    }

    /// The engine's notion of now (suspend-aware).
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// The data plane (counters, local address).
    pub fn datapath(&self) -> &DatapathHandle {
        &self.datapath
    }

    /// The local address of the port 500 socket.
    pub fn ike_local_addr(&self) -> SocketAddr {
        self.io.local_addr()
    }

    /// The engine, for what the driver does not wrap.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// New IKE SAs are answered with `cfg` (see [`Endpoint::set_responder_config`]).
    pub fn set_responder_config(&mut self, cfg: Arc<ikev2::ResponderConfig>) {
        self.endpoint.set_responder_config(cfg);
    }

    /// New clients that can follow a REDIRECT go to `to` instead (see
    /// [`Endpoint::set_redirect`]); `None` serves them again.
    pub fn set_redirect(&mut self, to: Option<ikev2::GatewayIdentity>) {
        self.endpoint.set_redirect(to);
    }

    /// An IKE SA's record.
    pub fn sa(&self, id: IkeSaId) -> Option<&IkeSaRecord> {
        self.sas.get(&id)
    }

    /// Every IKE SA's record.
    pub fn sas(&self) -> impl Iterator<Item = (IkeSaId, &IkeSaRecord)> {
        self.sas.iter().map(|(id, r)| (*id, r))
    }

    /// Traffic through an IKE SA's Child SAs since it was established.
    pub fn traffic(&self, id: IkeSaId) -> Traffic {
        let Some(record) = self.sas.get(&id) else {
            return Traffic::default();
        };
        let mut total = record.retired_traffic;
        for c in &record.children {
            if let Ok(counters) = self.datapath.sa_counters(c.esp_id) {
                total.add(&counters);
            }
        }
        total
    }

    /// [`Driver::traffic`] of every IKE SA, the data plane's counters read once (looking each
    /// Child SA up on its own made a gateway's session list quadratic in its clients).
    pub fn traffic_of_all(&self) -> HashMap<IkeSaId, Traffic> {
        let counters = self.datapath.all_sa_counters();
        self.sas
            .iter()
            .map(|(id, record)| {
                let mut total = record.retired_traffic;
                for c in &record.children {
                    if let Some(c) = counters.get(&c.esp_id) {
                        total.add(c);
                    }
                }
                (*id, total)
            })
            .collect()
    }

    /// Starts an IKE SA as initiator; its events follow from [`Driver::next_event`].
    pub fn connect(
        &mut self,
        config: Arc<InitiatorConfig>,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<IkeSaId, ikev2::ConnectError> {
        let now = self.now();
        let id = self.endpoint.connect(config, now, local, remote)?;
        self.sas.insert(id, IkeSaRecord::new());
        Ok(id)
    }

    /// The authentication server's answer to a [`DriverEvent::EapPassThrough`].
    pub fn eap_answer(&mut self, id: IkeSaId, answer: ikev2::EapAnswer) {
        let now = self.now();
        self.endpoint.eap_answer(id, now, answer);
    }

    /// Deletes an IKE SA (INFORMATIONAL Delete). Its traffic stops at once: the data-plane SAs
    /// go now, not when (or whether) the peer answers.
    pub fn delete(&mut self, id: IkeSaId) {
        if let Some(record) = self.sas.get_mut(&id) {
            for c in std::mem::take(&mut record.children) {
                if let Ok(counters) = self.datapath.sa_counters(c.esp_id) {
                    record.retired_traffic.add(&counters);
                }
                let _ = self.datapath.remove_sa(c.esp_id);
                self.esp_index.remove(&c.esp_id);
            }
        }
        let now = self.now();
        self.endpoint.delete(id, now);
    }

    /// Asks the peer whether it is alive now (false if not possible at the moment).
    pub fn check_liveness(&mut self, id: IkeSaId) -> bool {
        let now = self.now();
        self.endpoint.send_liveness_check(id, now)
    }

    /// MOBIKE (RFC 4555): our address changed; move the IKE SA and its Child SAs to `local`
    /// (UPDATE_SA_ADDRESSES). False when the peer does not do MOBIKE or the SA is not up.
    pub fn roam(&mut self, id: IkeSaId, local: IpAddr) -> bool {
        let now = self.now();
        self.endpoint.roam(id, now, local)
    }

    /// Tells the engine whether a path to the peer exists: while it does not, dead peer
    /// detection waits instead of declaring the peer dead.
    pub fn set_path_available(&mut self, id: IkeSaId, available: bool) {
        let now = self.now();
        self.endpoint.set_path_available(id, now, available);
    }

    /// The next thing that happened. Cancel-safe: use it in a `select!` next to the daemon's own
    /// inputs, and call the driver's methods between calls.
    pub async fn next_event(&mut self) -> DriverEvent {
        loop {
            if let Some(e) = self.outbox.pop_front() {
                return e;
            }
            self.pump().await;
            if let Some(e) = self.outbox.pop_front() {
                return e;
            }
            if self.datapath_gone {
                return DriverEvent::DatapathStopped;
            }
            self.wait_for_input().await;
        }
    }

    /// Waits for one input and hands it to the engine or the data plane.
    async fn wait_for_input(&mut self) {
        let deadline = self.endpoint.poll_timeout();
        let sleep = self
            .clock
            .until(deadline.unwrap_or_else(|| self.clock.now()));
        tokio::select! {
            received = self.io.recv() => match received {
                Some(Ok(d)) => {
                    let now = Now::new(self.now(), unix_now());
                    self.endpoint.handle_datagram(now, d.path, &d.bytes);
                }
                Some(Err(e)) => tracing::warn!("receiving IKE: {e}"),
                None => self.datapath_gone = true,
            },
            event = self.dp_events.recv() => match event {
                Some(event) => self.on_datapath_event(event),
                None => self.datapath_gone = true,
            },
            () = tokio::time::sleep(sleep), if deadline.is_some() => {
                let now = self.now();
                self.endpoint.handle_timeout(now);
            }
            _ = self.liveness.tick() => self.liveness_tick(),
        }
    }

    /// Applies the engine's events to the data plane, then sends what it queued.
    async fn pump(&mut self) {
        loop {
            let mut progressed = false;
            while let Some((id, event)) = self.endpoint.poll_event() {
                progressed = true;
                self.on_engine_event(id, event);
            }
            if let Some(t) = self.unsent.take() {
                progressed = true;
                self.send(t).await;
            }
            while let Some(t) = self.endpoint.poll_transmit() {
                progressed = true;
                self.send(t).await;
            }
            if !progressed {
                return;
            }
        }
    }

    /// Sends one datagram; if this future is dropped midway the datagram stays in `unsent`
    /// and goes out first on the next pump.
    async fn send(&mut self, t: Transmit) {
        self.unsent = Some(t);
        if let Some(t) = &self.unsent
            && let Err(e) = self.io.send(t).await
        {
            tracing::warn!(to = %t.remote, "sending IKE: {e}");
        }
        self.unsent = None;
    }

    fn on_engine_event(&mut self, id: IkeSaId, event: Event) {
        let now_unix = unix_now();
        match event {
            Event::EapPassThrough { eap, identity } => {
                self.outbox.push_back(DriverEvent::EapPassThrough {
                    sa: id,
                    eap,
                    identity,
                });
            }
            Event::IkeSaEstablished(info) => {
                let record = self.sas.entry(id).or_insert_with(IkeSaRecord::new);
                record.info = Some(info);
                record.established_unix = Some(now_unix);
                self.outbox.push_back(DriverEvent::Established { sa: id });
            }
            Event::ChildSaEstablished(child) => {
                if self.install(id, &child, None).is_some() {
                    self.outbox.push_back(DriverEvent::ChildInstalled {
                        sa: id,
                        child: ChildInfo::of(&child),
                    });
                }
            }
            Event::ChildSaRekeyed {
                old_spi_in, new, ..
            } => {
                // Make before break: the new SA receives now; it sends once the peer is known
                // to receive on it (ChildSaOutboundReady if we initiated the rekey, else the
                // peer's Delete of the old SA); the old one keeps receiving until it is gone.
                let old = self
                    .sas
                    .get(&id)
                    .and_then(|r| r.child_by_spi(old_spi_in))
                    .map(|c| c.esp_id);
                if self.install(id, &new, old).is_some() {
                    if let Some(record) = self.sas.get_mut(&id) {
                        record.last_rekey_unix = Some(now_unix);
                    }
                    self.outbox.push_back(DriverEvent::ChildRekeyed {
                        sa: id,
                        old_spi_in,
                        new_spi_in: new.spi_in,
                    });
                }
            }
            Event::ChildSaOutboundReady { spi_in } => {
                if let Some(c) = self.sas.get(&id).and_then(|r| r.child_by_spi(spi_in)) {
                    let _ = self.datapath.activate_outbound(c.esp_id);
                }
            }
            Event::IkeSaRekeyed { spi_i, spi_r } => {
                if let Some(record) = self.sas.get_mut(&id) {
                    if let Some(info) = &mut record.info {
                        info.spi_i = spi_i;
                        info.spi_r = spi_r;
                    }
                    record.last_rekey_unix = Some(now_unix);
                }
                self.outbox.push_back(DriverEvent::IkeRekeyed { sa: id });
            }
            Event::ChildSaDeleted { spi_in, .. } => {
                let Some(record) = self.sas.get_mut(&id) else {
                    return;
                };
                let Some(pos) = record.children.iter().position(|c| c.info.spi_in == spi_in) else {
                    return;
                };
                let gone = record.children.remove(pos);
                if let Ok(counters) = self.datapath.sa_counters(gone.esp_id) {
                    record.retired_traffic.add(&counters);
                }
                // Its replacement (if any) sends from now on; ESP still in flight on the old
                // SA is accepted for a moment.
                let _ = self.datapath.retire_sa(gone.esp_id, DEFAULT_RETIRE_LINGER);
                self.esp_index.remove(&gone.esp_id);
                let remaining = record.children.len();
                self.outbox.push_back(DriverEvent::ChildRemoved {
                    sa: id,
                    spi_in,
                    remaining,
                });
            }
            Event::AddressesChanged { local, remote } => {
                if let Some(record) = self.sas.get_mut(&id) {
                    if let Some(info) = &mut record.info {
                        info.local = local;
                        info.remote = remote;
                    }
                    let from = (!local.ip().is_unspecified()).then_some(local.ip());
                    for c in &record.children {
                        let _ = self.datapath.update_peer(c.esp_id, remote, from);
                    }
                }
                self.outbox.push_back(DriverEvent::Moved {
                    sa: id,
                    local,
                    remote,
                });
            }
            Event::Failed(failure) => {
                let up = self.endpoint.sa(id).is_some_and(|sa| !sa.is_closed());
                if up {
                    self.outbox
                        .push_back(DriverEvent::ExchangeFailed { sa: id, failure });
                } else {
                    // Also a half-open responder SA the daemon has not heard of: its `Closed`
                    // follows at once and carries the failure (a refused client, say).
                    self.sas.entry(id).or_insert_with(IkeSaRecord::new).failure = Some(failure);
                }
            }
            Event::Closed(reason) => {
                let Some(mut record) = self.sas.remove(&id) else {
                    return;
                };
                for c in std::mem::take(&mut record.children) {
                    if let Ok(counters) = self.datapath.sa_counters(c.esp_id) {
                        record.retired_traffic.add(&counters);
                    }
                    let _ = self.datapath.remove_sa(c.esp_id);
                    self.esp_index.remove(&c.esp_id);
                }
                let failure = record.failure.take();
                self.outbox.push_back(DriverEvent::Closed {
                    sa: id,
                    reason,
                    failure,
                    record: Box::new(record),
                });
            }
        }
    }

    /// Installs a Child SA in the data plane, as the replacement of `replaces` after a rekey;
    /// on failure the IKE SA is deleted.
    fn install(
        &mut self,
        id: IkeSaId,
        child: &ikev2::ChildSa,
        replaces: Option<EspSaId>,
    ) -> Option<EspSaId> {
        let routes: Vec<IpNet> = match self.side {
            Side::Gateway => child
                .virtual_ips
                .iter()
                .map(|ip| IpNet::from(*ip))
                .collect(),
            Side::Client => child
                .ts_remote
                .iter()
                .flat_map(child::ts_prefixes)
                .collect(),
        };
        let esp_id = self.next_esp_id;
        self.next_esp_id += 1;
        let installed = child::datapath_sa(esp_id, child, routes, self.side)
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
        if let Err(e) = installed {
            tracing::error!("{e}; deleting the IKE SA");
            self.delete(id);
            return None;
        }
        self.esp_index.insert(esp_id, (id, child.spi_in));
        self.sas
            .entry(id)
            .or_insert_with(IkeSaRecord::new)
            .children
            .push(ChildRecord {
                info: ChildInfo::of(child),
                esp_id,
                installed_unix: unix_now(),
            });
        Some(esp_id)
    }

    fn on_datapath_event(&mut self, event: DatapathEvent) {
        match event {
            DatapathEvent::PeerAddressChanged { id, seen, .. } => {
                // The packet authenticated under the SA and passed the replay window, so the
                // peer is there now (a NAT rebinding): follow it, as strongSwan does on the
                // kernel's NAT mapping events. A raced copy of a captured packet could point
                // it elsewhere until the peer's next IKE message moves it back.
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
                if let Some(&(ike, spi_in)) = self.esp_index.get(&id) {
                    // Soft limit: rekey; hard limit: the SA is dead, rekey at once if that has
                    // not happened yet (false when it is already being replaced).
                    let now = self.now();
                    self.endpoint.rekey_child_sa(ike, now, spi_in);
                }
            }
            DatapathEvent::UnknownSpi { from, spi } => {
                tracing::debug!(%from, spi = format_args!("{spi:#010x}"), "ESP for an unknown SPI");
            }
        }
    }

    /// Reads every SA's counters once: inbound ESP postpones dead peer detection; on a client,
    /// ESP sent into silence asks the gateway at once whether it is still there.
    fn liveness_tick(&mut self) {
        if let Some(slept) = self.resume.poll() {
            tracing::info!(slept_s = slept.as_secs(), "resumed from suspend");
            let now = self.now();
            self.endpoint.handle_timeout(now);
            self.outbox.push_back(DriverEvent::Resumed { slept });
        }
        let now = self.now();
        let counters = self.datapath.all_sa_counters();
        let mut probe = Vec::new();
        for (id, record) in &mut self.sas {
            let (inbound, outbound) = record
                .children
                .iter()
                .filter_map(|c| counters.get(&c.esp_id))
                .fold((0u64, 0u64), |(i, o), c| {
                    (i + c.inbound.packets, o + c.outbound.packets)
                });
            // Any change counts (a rekey removes an SA and its count with it).
            let heard = inbound != record.inbound_seen;
            let sent = outbound != record.outbound_seen;
            record.inbound_seen = inbound;
            record.outbound_seen = outbound;
            if heard {
                record.one_way_ticks = 0;
                self.endpoint.note_peer_alive(*id, now);
            } else if sent && self.side == Side::Client {
                record.one_way_ticks += 1;
                if record.one_way_ticks >= ONE_WAY_TICKS {
                    record.one_way_ticks = 0;
                    probe.push(*id);
                }
            }
        }
        for id in probe {
            if self.endpoint.send_liveness_check(id, now) {
                tracing::info!("ESP sent but none received: checking that the gateway is alive");
            }
        }
    }

    /// Deletes every IKE SA, waits up to `grace` for the peers' answers (so that they free our
    /// addresses at once instead of after a liveness timeout), then stops the data plane and
    /// returns the TUN queues.
    pub async fn shutdown(&mut self, grace: Duration) -> Vec<TunQueue> {
        let ids: Vec<IkeSaId> = self.sas.keys().copied().collect();
        for id in ids {
            self.delete(id);
        }
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            self.pump().await;
            let open = self
                .sas
                .keys()
                .any(|id| self.endpoint.sa(*id).is_some_and(|sa| !sa.is_closed()));
            if !open || self.datapath_gone {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => break,
                () = self.wait_for_input() => {}
            }
        }
        self.datapath.shutdown().await
    }
}
