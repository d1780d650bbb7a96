//! Starting the data plane, and the handle the IKE side drives it with.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use esp::{NAT_KEEPALIVE, NON_ESP_MARKER, SaEvent};
use netio::tun::TunQueue;
use netio::udp::{OutDatagrams, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::counters::{DatapathCounters, SharedCounters};
use crate::sa::{EspSa, EspSaId, PeerPath, Registry, SaCounters, SaSlot, Tables, lock};
use crate::worker::Worker;

/// Default interval between NAT keepalives (RFC 3948 section 4 suggests 20 seconds).
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// Default capacity of the event channel.
pub const DEFAULT_EVENT_CAPACITY: usize = 1024;
/// Default capacity of the channel for IKE datagrams that arrive on port 4500.
pub const DEFAULT_IKE_CAPACITY: usize = 512;
/// How long a rekey responder keeps sending on the old SA at most, waiting for the initiator's
/// Delete of it ([`DatapathHandle::install_sa_replacing`]): longer than a retransmitted Delete
/// takes, short enough not to hang on a peer that never deletes.
pub const DEFAULT_REKEY_SEND_FALLBACK: Duration = Duration::from_secs(3);
/// How long a retired SA keeps receiving ([`DatapathHandle::retire_sa`]): ESP the peer sent
/// on it just before switching may arrive after the Delete exchange.
pub const DEFAULT_RETIRE_LINGER: Duration = Duration::from_secs(2);

/// What the data plane runs on. The caller creates and configures the TUN device (addresses,
/// routes, MTU) and the UDP socket, and removes the device's routes/addresses afterwards.
#[derive(Debug)]
pub struct DatapathConfig {
    /// The TUN queues: one worker per queue. Every worker encapsulates its queue's packets (a
    /// multi-queue TUN spreads outbound flows over cores); the first one also receives and
    /// decapsulates everything from the UDP socket, so inbound packets stay in order.
    pub tun_queues: Vec<TunQueue>,
    /// MTU of the TUN device (sizes the read buffers).
    pub mtu: u16,
    /// The UDP socket bound to port 4500 (GSO/GRO as configured when it was bound).
    pub udp: UdpSocket,
    /// Interval for NAT keepalives to SAs installed with `nat_keepalive`; `None` = never.
    pub keepalive_interval: Option<Duration>,
    /// Capacity of the event channel. Unknown-SPI reports beyond it are dropped and counted
    /// (their rate is the sender's choice); SA limit and peer-address events are never dropped
    /// but wait for room.
    pub event_capacity: usize,
    /// Capacity of the IKE datagram channel (its own, so that no flood of ESP or of events
    /// crowds IKE out); datagrams beyond it are dropped and counted in `ike_dropped`.
    pub ike_capacity: usize,
}

impl DatapathConfig {
    /// A configuration with default keepalive interval and event capacity.
    pub fn new(tun_queues: Vec<TunQueue>, mtu: u16, udp: UdpSocket) -> Self {
        Self {
            tun_queues,
            mtu,
            udp,
            keepalive_interval: Some(DEFAULT_KEEPALIVE_INTERVAL),
            event_capacity: DEFAULT_EVENT_CAPACITY,
            ike_capacity: DEFAULT_IKE_CAPACITY,
        }
    }
}

/// Which half of an SA an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Packets we receive.
    Inbound,
    /// Packets we send.
    Outbound,
}

/// An IKE message that arrived on port 4500 (non-ESP marker stripped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IkeDatagram {
    /// Sender.
    pub from: SocketAddr,
    /// Local address and port it was sent to (reply from this address).
    pub to: SocketAddr,
    /// The IKE message.
    pub message: Vec<u8>,
}

/// The receiving ends the IKE side reads: data-plane events, and IKE datagrams on a channel of
/// their own.
#[derive(Debug)]
pub struct DatapathReceivers {
    /// SA limits, unknown SPIs, peer address changes.
    pub events: mpsc::Receiver<DatapathEvent>,
    /// IKE messages that arrived on port 4500.
    pub ike: mpsc::Receiver<IkeDatagram>,
}

/// What the data plane tells the IKE side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatapathEvent {
    /// An SA reached a soft limit (rekey) or a hard limit (delete); from `esp`.
    SaLimit {
        /// The SA.
        id: EspSaId,
        /// Which half.
        direction: Direction,
        /// Soft or hard, and which limit.
        event: SaEvent,
    },
    /// ESP for an SPI we do not have (rate-limited; the IKE side may answer INVALID_SPI).
    UnknownSpi {
        /// Sender.
        from: SocketAddr,
        /// The SPI in the packet.
        spi: u32,
    },
    /// Authenticated ESP for an SA arrived from another address than its peer (NAT rebinding
    /// or a move). Reported once per new address; the SA keeps sending to the old address
    /// until [`DatapathHandle::update_peer`].
    PeerAddressChanged {
        /// The SA.
        id: EspSaId,
        /// The address the SA sends to.
        expected: SocketAddr,
        /// The address the ESP came from.
        seen: SocketAddr,
    },
}

/// Errors of the control API.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// `start` was called outside a tokio runtime.
    #[error("the data plane must be started inside a tokio runtime")]
    NoRuntime,
    /// `start` was given no TUN queue.
    #[error("at least one TUN queue is needed")]
    NoTunQueue,
    /// An SA with this id is already installed.
    #[error("SA {0} is already installed")]
    DuplicateSa(EspSaId),
    /// Another installed SA already receives on this SPI.
    #[error("inbound SPI {0:#010x} is already in use")]
    SpiInUse(u32),
    /// No SA with this id is installed.
    #[error("no SA {0} installed")]
    UnknownSa(EspSaId),
    /// A socket error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// State shared by the handle and the workers.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) udp: UdpSocket,
    pub(crate) local: SocketAddr,
    pub(crate) counters: SharedCounters,
    /// The installed SAs and which of them send (the source of truth; `tables` follows it).
    registry: Mutex<Registry>,
    tables: RwLock<Arc<Tables>>,
    generation: AtomicU64,
    tables_changed: watch::Sender<u64>,
    events: mpsc::Sender<DatapathEvent>,
    ike: mpsc::Sender<IkeDatagram>,
    /// Events that must not be lost (each fires once per SA or address), forwarded into
    /// `events` by the pump task as room appears.
    must_deliver: mpsc::UnboundedSender<DatapathEvent>,
    tasks: Mutex<Vec<JoinHandle<Option<TunQueue>>>>,
    shutdown: watch::Sender<bool>,
    /// Runs the SA timers (fallback activation, delayed removal).
    runtime: tokio::runtime::Handle,
}

impl Shared {
    /// Number of the current tables; changes whenever they are replaced.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn tables(&self) -> (u64, Arc<Tables>) {
        let tables = self.tables.read().unwrap_or_else(PoisonError::into_inner);
        (self.generation(), Arc::clone(&tables))
    }

    pub(crate) fn subscribe_tables(&self) -> watch::Receiver<u64> {
        self.tables_changed.subscribe()
    }

    pub(crate) fn emit(&self, event: DatapathEvent, counts: &mut DatapathCounters) {
        match event {
            DatapathEvent::UnknownSpi { .. } => {
                if self.events.try_send(event).is_err() {
                    counts.events_dropped += 1;
                }
            }
            DatapathEvent::SaLimit { .. } | DatapathEvent::PeerAddressChanged { .. } => {
                // Fails only after shutdown, when nobody listens any more.
                if self.must_deliver.send(event).is_err() {
                    counts.events_dropped += 1;
                }
            }
        }
    }

    pub(crate) fn deliver_ike(&self, datagram: IkeDatagram, counts: &mut DatapathCounters) {
        if self.ike.try_send(datagram).is_err() {
            counts.ike_dropped += 1;
        }
    }

    /// Replaces the tables with a copy that follows the registry's changes (called with the
    /// registry locked, so there is one writer at a time).
    fn publish(&self, registry: &mut Registry) {
        if registry.changes().is_empty() {
            return;
        }
        let (_, current) = self.tables();
        let tables = Arc::new(current.updated(registry, registry.changes()));
        *self.tables.write().unwrap_or_else(PoisonError::into_inner) = tables;
        // Forgotten only once followed: a panic above leaves them for the next publish.
        registry.forget_changes();
        let generation = self.generation.fetch_add(1, Ordering::Release) + 1;
        self.tables_changed.send_replace(generation);
    }

    async fn send(&self, to: SocketAddr, from: Option<IpAddr>, payload: &[u8]) -> io::Result<()> {
        let item = OutDatagrams {
            destination: to,
            source_ip: from,
            contents: payload,
            segment_size: None,
        };
        self.udp.send_batch(std::slice::from_ref(&item)).await?;
        let mut counts = DatapathCounters {
            udp_tx_datagrams: 1,
            ..DatapathCounters::default()
        };
        if payload == NAT_KEEPALIVE {
            counts.keepalives_tx = 1;
        }
        self.counters.add(&counts);
        Ok(())
    }
}

/// The running data plane.
#[derive(Debug)]
pub struct Datapath;

impl Datapath {
    /// Starts one worker task per TUN queue (plus a keepalive task) on the current tokio
    /// runtime. Returns the control handle and the receivers of events and IKE datagrams.
    pub fn start(
        config: DatapathConfig,
    ) -> Result<(DatapathHandle, DatapathReceivers), DatapathError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| DatapathError::NoRuntime)?;
        if config.tun_queues.is_empty() {
            return Err(DatapathError::NoTunQueue);
        }
        let local = config.udp.local_addr()?;
        let (events, events_rx) = mpsc::channel(config.event_capacity.max(1));
        let (ike, ike_rx) = mpsc::channel(config.ike_capacity.max(1));
        let (must_deliver, must_deliver_rx) = mpsc::unbounded_channel();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let pump = event_pump(must_deliver_rx, events.clone(), shutdown_rx.clone());
        let shared = Arc::new(Shared {
            udp: config.udp,
            local,
            counters: SharedCounters::default(),
            registry: Mutex::new(Registry::default()),
            tables: RwLock::new(Arc::new(Tables::default())),
            generation: AtomicU64::new(0),
            tables_changed: watch::channel(0).0,
            events,
            ike,
            must_deliver,
            tasks: Mutex::new(Vec::new()),
            shutdown,
            runtime: runtime.clone(),
        });
        let mtu = usize::from(config.mtu).max(576);
        let mut tasks = vec![runtime.spawn(async move {
            pump.await;
            None
        })];
        for (i, queue) in config.tun_queues.into_iter().enumerate() {
            let receives_udp = i == 0;
            let worker = Worker::new(
                Arc::clone(&shared),
                queue,
                mtu,
                receives_udp,
                shutdown_rx.clone(),
            );
            tasks.push(runtime.spawn(async move { Some(worker.run().await) }));
        }
        if let Some(interval) = config.keepalive_interval {
            let shared = Arc::clone(&shared);
            let shutdown = shutdown_rx.clone();
            tasks.push(runtime.spawn(async move {
                keepalive_loop(&shared, interval, shutdown).await;
                None
            }));
        }
        *lock(&shared.tasks) = tasks;
        Ok((
            DatapathHandle { shared },
            DatapathReceivers {
                events: events_rx,
                ike: ike_rx,
            },
        ))
    }
}

/// Forwards must-deliver events into the bounded event channel, waiting for room.
async fn event_pump(
    mut from: mpsc::UnboundedReceiver<DatapathEvent>,
    to: mpsc::Sender<DatapathEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let event = tokio::select! {
            _ = shutdown.changed() => return,
            event = from.recv() => event,
        };
        let Some(event) = event else { return };
        tokio::select! {
            _ = shutdown.changed() => return,
            sent = to.send(event) => if sent.is_err() { return },
        }
    }
}

async fn keepalive_loop(shared: &Shared, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; the first keepalive is due one interval after start.
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
        }
        // During a rekey two SAs share the peer: one keepalive is enough. The snapshot, not the
        // registry: its lock is the IKE side's, and this walks every SA.
        let (_, tables) = shared.tables();
        let paths: HashSet<PeerPath> = tables
            .by_spi
            .iter()
            .map(|(_, sa)| sa)
            .filter(|sa| sa.nat_keepalive)
            .map(|sa| sa.path())
            .collect();
        for path in paths {
            if let Err(e) = shared.send(path.peer, path.local, &NAT_KEEPALIVE).await {
                tracing::debug!(error = %e, peer = %path.peer, "NAT keepalive failed");
            }
        }
    }
}

/// Controls a running data plane; cheap to clone.
#[derive(Debug, Clone)]
pub struct DatapathHandle {
    shared: Arc<Shared>,
}

impl DatapathHandle {
    /// Installs a Child SA that sends at once: its routes take over from any SA sending with
    /// the same prefixes.
    pub fn install_sa(&self, sa: EspSa) -> Result<(), DatapathError> {
        let mut registry = lock(&self.shared.registry);
        registry.insert(sa, None)?;
        self.shared.publish(&mut registry);
        Ok(())
    }

    /// Installs the Child SA that a rekey made to replace `replaces`. It receives at once, but
    /// `replaces` keeps sending until it stops ([`Self::retire_sa`], [`Self::remove_sa`]), the
    /// new SA is activated ([`Self::activate_outbound`]), or `fallback` has passed; then the new
    /// SA takes over its routes. The rekey initiator activates at once (the peer installed the
    /// new SA before it answered); the responder waits for the initiator's Delete of the old SA,
    /// because the initiator may not receive on the new one before (RFC 7296 2.8). If
    /// `replaces` is not installed, the new SA sends at once.
    pub fn install_sa_replacing(
        &self,
        sa: EspSa,
        replaces: EspSaId,
        fallback: Duration,
    ) -> Result<(), DatapathError> {
        let mut registry = lock(&self.shared.registry);
        let state = registry.insert(sa, Some(replaces))?;
        self.shared.publish(&mut registry);
        drop(registry);
        if !state.sends() {
            self.after(fallback, move |shared| {
                let mut registry = lock(&shared.registry);
                if registry.fallback(&state) {
                    tracing::debug!(sa = state.id, "rekeyed SA sends after the fallback time");
                    shared.publish(&mut registry);
                }
            });
        }
        Ok(())
    }

    /// Makes an SA installed with [`Self::install_sa_replacing`] send now, in place of the SA
    /// it replaces (which keeps receiving). Nothing happens if it sends already.
    pub fn activate_outbound(&self, id: EspSaId) -> Result<(), DatapathError> {
        let mut registry = lock(&self.shared.registry);
        let sa = Arc::clone(registry.find(id).ok_or(DatapathError::UnknownSa(id))?);
        if registry.start_sending(&sa) {
            self.shared.publish(&mut registry);
        }
        Ok(())
    }

    /// Whether outbound traffic may be routed to this SA (of several sending SAs with equal
    /// routes, the one that started sending last gets the traffic).
    pub fn is_sending(&self, id: EspSaId) -> Result<bool, DatapathError> {
        Ok(self.find(id)?.sends())
    }

    /// Stops sending on an SA at once (an SA waiting to replace it takes over) and removes it
    /// after `linger`: until then it still receives, so that ESP the peer sent just before it
    /// switched (in flight, or queued behind the IKE Delete) is not lost.
    pub fn retire_sa(&self, id: EspSaId, linger: Duration) -> Result<(), DatapathError> {
        let mut registry = lock(&self.shared.registry);
        let sa = Arc::clone(registry.find(id).ok_or(DatapathError::UnknownSa(id))?);
        registry.stop_sending(&sa);
        self.shared.publish(&mut registry);
        drop(registry);
        self.after(linger, move |shared| {
            let mut registry = lock(&shared.registry);
            if registry.remove_exact(&sa) {
                shared.publish(&mut registry);
            }
        });
        Ok(())
    }

    /// Removes a Child SA (both halves) now; an SA waiting to replace it takes over sending.
    /// Its keys are dropped (and zeroized by `esp`) once no worker holds the previous tables
    /// any more, i.e. after the workers' current batches.
    pub fn remove_sa(&self, id: EspSaId) -> Result<(), DatapathError> {
        let mut registry = lock(&self.shared.registry);
        registry.remove(id).ok_or(DatapathError::UnknownSa(id))?;
        self.shared.publish(&mut registry);
        Ok(())
    }

    /// Runs `action` after `delay` unless the data plane shuts down first.
    fn after(&self, delay: Duration, action: impl FnOnce(&Shared) + Send + 'static) {
        let shared = Arc::downgrade(&self.shared);
        let mut shutdown = self.shared.shutdown.subscribe();
        if *shutdown.borrow_and_update() {
            return;
        }
        self.shared.runtime.spawn(async move {
            tokio::select! {
                _ = shutdown.changed() => {}
                () = tokio::time::sleep(delay) => {
                    if let Some(shared) = shared.upgrade() {
                        action(&shared);
                    }
                }
            }
        });
    }

    /// Points an SA at a new peer address (NAT rebinding, MOBIKE) and optionally a new local
    /// address to send from.
    pub fn update_peer(
        &self,
        id: EspSaId,
        peer: SocketAddr,
        local: Option<IpAddr>,
    ) -> Result<(), DatapathError> {
        let sa = self.find(id)?;
        *lock(&sa.path) = PeerPath { peer, local };
        *lock(&sa.reported_source) = None;
        Ok(())
    }

    /// Sends an IKE message on port 4500 (the non-ESP marker is prepended), from `from` if given.
    pub async fn send_ike(
        &self,
        to: SocketAddr,
        from: Option<IpAddr>,
        message: &[u8],
    ) -> io::Result<()> {
        let mut datagram = Vec::with_capacity(NON_ESP_MARKER.len() + message.len());
        datagram.extend_from_slice(&NON_ESP_MARKER);
        datagram.extend_from_slice(message);
        self.shared.send(to, from, &datagram).await
    }

    /// Sends one NAT keepalive (0xFF) now.
    pub async fn send_keepalive(&self, to: SocketAddr, from: Option<IpAddr>) -> io::Result<()> {
        self.shared.send(to, from, &NAT_KEEPALIVE).await
    }

    /// The UDP socket's local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// Totals since start (workers add their counts after every batch).
    pub fn counters(&self) -> DatapathCounters {
        self.shared.counters.snapshot()
    }

    /// Counters of one installed SA.
    pub fn sa_counters(&self, id: EspSaId) -> Result<SaCounters, DatapathError> {
        Ok(self.find(id)?.counters())
    }

    /// Every installed SA's counters in one pass (for periodic checks over many SAs; looking
    /// each one up with [`DatapathHandle::sa_counters`] would be quadratic).
    pub fn all_sa_counters(&self) -> std::collections::HashMap<EspSaId, SaCounters> {
        lock(&self.shared.registry)
            .sas()
            .map(|s| (s.id, s.counters()))
            .collect()
    }

    /// Ids of the installed SAs (also those only receiving), in install order.
    pub fn sa_ids(&self) -> Vec<EspSaId> {
        lock(&self.shared.registry).ids_in_install_order()
    }

    fn find(&self, id: EspSaId) -> Result<Arc<SaSlot>, DatapathError> {
        lock(&self.shared.registry)
            .find(id)
            .cloned()
            .ok_or(DatapathError::UnknownSa(id))
    }

    /// Stops every task and waits for them; returns the TUN queues (closing the last queue of a
    /// non-persistent TUN deletes the device with its addresses and routes, so a client that
    /// reconnects may keep them). Installed SAs are dropped. Calling it again returns nothing.
    pub async fn shutdown(&self) -> Vec<TunQueue> {
        self.shared.shutdown.send_replace(true);
        let tasks = std::mem::take(&mut *lock(&self.shared.tasks));
        let mut queues = Vec::new();
        for task in tasks {
            match task.await {
                Ok(Some(queue)) => queues.push(queue),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "datapath task failed"),
            }
        }
        let mut registry = lock(&self.shared.registry);
        registry.clear();
        self.shared.publish(&mut registry);
        queues
    }
}
