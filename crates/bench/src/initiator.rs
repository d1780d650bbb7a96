//! The one initiator both responders are measured with: our sans-IO engine
//! ([`ikev2::IkeSa`]) driven over plain tokio UDP sockets, without TUN or data plane. It runs
//! inside the client namespace (a thread from `Netns::run` with a current-thread runtime).
//!
//! Each slot owns one socket: IKE_SA_INIT goes from it to the responder's port 500, and once the
//! engine floats to NAT-T (our engine fakes NAT-D, as strongSwan's `encap = yes` does) the same
//! socket talks to port 4500 with the non-ESP marker. A client port that stays the same across
//! the float is what a NAT would show, and both responders accept it.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use ikev2::ipsec_crypto::{Provider, SigningKey};
use ikev2::{
    EapTlsClient, EspProposal, Event, IkeConfig, IkeId, IkeProposal, IkeSa, InitiatorConfig,
    LocalCredentials, Now, Path, PeerRole, PkiValidator, RetransmitConfig,
};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::common::{ClientAuth, ESP_PROPOSAL, GATEWAY_NAME};

/// Non-ESP marker in front of IKE on the NAT-T port (RFC 3948 2.2).
const NON_ESP_MARKER: [u8; 4] = [0; 4];
/// The responders' NAT-T port.
const NATT_PORT: u16 = 4500;
/// How long a goodbye (IKE Delete) may take before a slot moves on.
const DELETE_GRACE: Duration = Duration::from_secs(3);

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An initiator configuration for the client certificate `identity` (FQDN `name`), offering
/// exactly `ike_suite` and ESP AES-256-GCM, without INITIAL_CONTACT (several of our slots may
/// share a responder, and INITIAL_CONTACT would make it drop the others).
pub fn initiator_config(
    identity: &pki::Identity,
    name: &str,
    trust: pki::TrustStore,
    ike_suite: &str,
) -> Result<Arc<InitiatorConfig>> {
    initiator_config_with(identity, name, trust, ike_suite, ClientAuth::Certificate)
}

/// `count` initiator configurations, each with a client certificate of its own
/// (`<prefix>-<i>.bench.example`) from `pki`: several SAs of one identity would look like
/// reconnects to a responder.
pub fn distinct_clients(
    pki: &super::common::BenchPki,
    trust: &pki::TrustStore,
    prefix: &str,
    count: usize,
    ike_suite: &str,
) -> Result<Vec<Arc<InitiatorConfig>>> {
    (0..count)
        .map(|i| {
            let name = format!("{prefix}-{i}.bench.example");
            initiator_config(&pki.client(&name)?, &name, trust.clone(), ike_suite)
        })
        .collect()
}

/// [`initiator_config`] authenticating as `auth` says; with EAP-TLS the certificate signs
/// inside TLS 1.2 (strongSwan 5.9's default; its TLS 1.3 predates RFC 9190), `name` is the
/// EAP identity, and the gateway's TLS certificate must carry the gateway's name.
pub fn initiator_config_with(
    identity: &pki::Identity,
    name: &str,
    trust: pki::TrustStore,
    ike_suite: &str,
    auth: ClientAuth,
) -> Result<Arc<InitiatorConfig>> {
    let key = SigningKey::from_pkcs8_der(identity.key.pkcs8_der())
        .map_err(|e| anyhow!("client key: {e}"))?;
    let leaf = identity
        .chain
        .first()
        .ok_or_else(|| anyhow!("client chain is empty"))?;
    let local = LocalCredentials {
        id: IkeId::Fqdn(name.to_owned()),
        key: Arc::new(key),
        chain: vec![leaf.der().as_ref().to_vec()],
    };
    let validator = Arc::new(PkiValidator {
        trust,
        role: PeerRole::Gateway {
            server_name: GATEWAY_NAME.to_owned(),
        },
        expected_id: None,
    });
    let mut ike = IkeConfig::new(local, validator.clone());
    ike.ike_proposals =
        vec![IkeProposal::parse(ike_suite, false).map_err(|e| anyhow!("{ike_suite}: {e}"))?];
    ike.esp_proposals =
        vec![EspProposal::parse(ESP_PROPOSAL, false).map_err(|e| anyhow!("{ESP_PROPOSAL}: {e}"))?];
    ike.establish_timeout = Duration::from_secs(15);
    ike.retransmit = RetransmitConfig::default();
    let mut cfg = InitiatorConfig::new(ike);
    cfg.initial_contact = false;
    if auth == ClientAuth::EapTls {
        cfg.eap_tls = Some(EapTlsClient {
            identity: name.to_owned(),
            server_names: vec![IkeId::Fqdn(GATEWAY_NAME.to_owned())],
            server_validator: validator,
            tls13: false,
        });
    }
    Ok(Arc::new(cfg))
}

/// One slot: a UDP socket bound to a client source address.
pub struct Slot {
    socket: UdpSocket,
    local: SocketAddr,
    buf: Vec<u8>,
}

impl Slot {
    /// Binds an ephemeral port on `source` (call inside the client namespace's runtime).
    pub async fn bind(source: Ipv4Addr) -> Result<Slot> {
        let socket = UdpSocket::bind((source, 0))
            .await
            .with_context(|| format!("binding UDP on {source}"))?;
        let local = socket.local_addr()?;
        Ok(Slot {
            socket,
            local,
            // IKE messages here are a few KB (one certificate, fragments of 1280 bytes); a
            // small buffer matters when ten thousand slots are held.
            buf: vec![0; 16_384],
        })
    }
}

/// What to do once both SAs are up.
pub enum AfterUp<'a> {
    /// Delete the IKE SA right away (handshake-rate loop).
    Delete,
    /// Keep it (answering the responder's liveness checks) until `stop` turns true, then
    /// delete it. `up` is told once when the SAs are established.
    HoldUntil {
        up: Option<tokio::sync::oneshot::Sender<()>>,
        stop: &'a mut watch::Receiver<bool>,
        /// Rekey the Child SA once, `offset` after a storm starts.
        rekey: Option<ChildRekey>,
    },
}

/// A rekey storm as all held SAs see it: one instant, announced once.
#[derive(Debug, Clone)]
pub struct Storm {
    /// When the storm starts (None until it does).
    pub start: watch::Receiver<Option<Instant>>,
    /// Every held SA rekeys its Child SA once within this window after the start, spread
    /// evenly.
    pub window: Duration,
    /// Child SA rekeys we asked for that completed.
    pub rekeyed: Arc<AtomicUsize>,
}

/// One held SA's part of a [`Storm`].
#[derive(Debug)]
pub struct ChildRekey {
    storm: Storm,
    offset: Duration,
    due: Option<Instant>,
    requested: bool,
}

impl ChildRekey {
    /// When this SA's rekey is due, if the storm has started and it is not yet asked for.
    fn due(&mut self) -> Option<Instant> {
        if self.requested {
            return None;
        }
        if self.due.is_none() {
            self.due = (*self.storm.start.borrow()).map(|t| t + self.offset);
        }
        self.due
    }
}

/// Runs one IKE SA from IKE_SA_INIT to its deletion. Ok(time to establish) when IKE SA and
/// Child SA were both established; Err with the failure otherwise.
pub async fn run_sa(
    slot: &mut Slot,
    cfg: &Arc<InitiatorConfig>,
    provider: &Arc<Provider>,
    server: SocketAddr,
    mut after: AfterUp<'_>,
) -> Result<Duration> {
    let started = Instant::now();
    let mut sa = IkeSa::connect(cfg.clone(), provider.clone(), started, slot.local, server)
        .map_err(|e| anyhow!("connect: {e}"))?;
    let mut rekey = match &mut after {
        AfterUp::HoldUntil { rekey, .. } => rekey.take(),
        AfterUp::Delete => None,
    };
    let mut child_spi_in: Option<u32> = None;
    let (mut ike_up, mut child_up) = (false, false);
    let mut established: Option<Duration> = None;
    let mut failure: Option<String> = None;
    let mut delete_deadline: Option<Instant> = None;
    loop {
        while let Some(t) = sa.poll_transmit() {
            let sent = if t.natt {
                let mut d = Vec::with_capacity(NON_ESP_MARKER.len() + t.bytes.len());
                d.extend_from_slice(&NON_ESP_MARKER);
                d.extend_from_slice(&t.bytes);
                slot.socket.send_to(&d, t.remote).await
            } else {
                slot.socket.send_to(&t.bytes, t.remote).await
            };
            if let Err(e) = sent {
                failure.get_or_insert_with(|| format!("send to {}: {e}", t.remote));
            }
        }
        let mut closed = false;
        while let Some(event) = sa.poll_event() {
            match event {
                Event::IkeSaEstablished(_) => ike_up = true,
                Event::ChildSaEstablished(c) => {
                    child_up = true;
                    child_spi_in.get_or_insert(c.spi_in);
                }
                Event::ChildSaRekeyed { new, .. } => {
                    child_spi_in = Some(new.spi_in);
                    if let Some(r) = rekey.as_ref().filter(|r| r.requested) {
                        r.storm.rekeyed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Event::Failed(f) => {
                    failure.get_or_insert_with(|| f.reason.to_string());
                }
                Event::Closed(_) => closed = true,
                _ => {}
            }
        }
        if closed {
            return match established {
                Some(d) => Ok(d),
                None => Err(anyhow!(
                    "{}",
                    failure.unwrap_or_else(|| "closed before establishment".to_owned())
                )),
            };
        }
        let now = Instant::now();
        if ike_up && child_up && established.is_none() {
            established = Some(now - started);
            match &mut after {
                AfterUp::Delete => {
                    sa.delete(now);
                    delete_deadline = Some(now + DELETE_GRACE);
                    continue;
                }
                AfterUp::HoldUntil { up, .. } => {
                    if let Some(tx) = up.take() {
                        let _ = tx.send(());
                    }
                }
            }
        }
        if let Some(d) = delete_deadline
            && now >= d
        {
            // The responder did not answer the Delete in time; the handshake counts anyway.
            return established.ok_or_else(|| anyhow!("delete timed out"));
        }
        let rekey_due = match (&mut rekey, child_spi_in, delete_deadline) {
            (Some(r), Some(_), None) => r.due(),
            _ => None,
        };
        if let (Some(due), Some(spi), Some(r)) = (rekey_due, child_spi_in, rekey.as_mut())
            && now >= due
        {
            r.requested = true;
            sa.rekey_child_sa(now, spi);
            continue;
        }
        let wake = [sa.poll_timeout(), delete_deadline, rekey_due]
            .into_iter()
            .flatten()
            .min();
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let holding = delete_deadline.is_none();
        let storm_started = async {
            match &mut rekey {
                Some(r) if holding && r.due.is_none() && !r.requested => {
                    if r.storm.start.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                _ => std::future::pending().await,
            }
        };
        let stop_signal = async {
            match &mut after {
                AfterUp::HoldUntil { stop, .. } if holding => {
                    while !*stop.borrow_and_update() {
                        if stop.changed().await.is_err() {
                            break;
                        }
                    }
                }
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => sa.handle_timeout(Instant::now()),
            () = storm_started => {}
            _ = stop_signal => {
                let now = Instant::now();
                sa.delete(now);
                delete_deadline = Some(now + DELETE_GRACE);
            }
            received = slot.socket.recv_from(&mut slot.buf) => {
                let (len, from) = received.context("receiving IKE")?;
                let datagram = slot.buf.get(..len).unwrap_or_default();
                if from.port() == NATT_PORT {
                    // Without the marker it would be ESP (or a keepalive): not for us.
                    if let Some(ike) = datagram.strip_prefix(&NON_ESP_MARKER[..]) {
                        let now = Now::new(Instant::now(), unix_now());
                        sa.handle_datagram(now, Path::natt(slot.local, from), ike);
                    }
                } else {
                    let now = Now::new(Instant::now(), unix_now());
                    sa.handle_datagram(now, Path::ike(slot.local, from), datagram);
                }
            }
        }
    }
}

/// The result of a handshake-rate run.
#[derive(Debug, Clone, Default)]
pub struct RateResult {
    /// IKE SA + Child SA establishments.
    pub completions: u64,
    /// Handshakes that failed.
    pub failures: u64,
    /// First few failure messages.
    pub errors: Vec<String>,
    /// Wall time from the first IKE_SA_INIT to the last delete.
    pub elapsed: Duration,
    /// Establishment times.
    pub setup_times: Vec<Duration>,
}

/// Establishes and deletes SAs for `secs`, `configs.len()` slots in flight at once (slot `i`
/// uses `configs[i]` and `sources[i % sources.len()]`).
pub async fn handshake_loop(
    configs: &[Arc<InitiatorConfig>],
    sources: &[Ipv4Addr],
    server: SocketAddr,
    duration: Duration,
) -> Result<RateResult> {
    let provider = Arc::new(Provider::system());
    let mut slots = Vec::with_capacity(configs.len());
    for i in 0..configs.len() {
        let source = sources
            .get(i % sources.len().max(1))
            .copied()
            .ok_or_else(|| anyhow!("no source address"))?;
        slots.push(Slot::bind(source).await?);
    }
    let start = Instant::now();
    let end = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for (slot, cfg) in slots.into_iter().zip(configs.iter().cloned()) {
        let provider = provider.clone();
        tasks.spawn(async move {
            let mut slot = slot;
            let mut r = RateResult::default();
            while Instant::now() < end {
                match run_sa(&mut slot, &cfg, &provider, server, AfterUp::Delete).await {
                    Ok(t) => {
                        r.completions += 1;
                        r.setup_times.push(t);
                    }
                    Err(e) => {
                        r.failures += 1;
                        if r.errors.len() < 3 {
                            r.errors.push(format!("{e:#}"));
                        }
                    }
                }
            }
            r
        });
    }
    let mut total = RateResult::default();
    while let Some(done) = tasks.join_next().await {
        let r = done.map_err(|e| anyhow!("initiator task: {e}"))?;
        total.completions += r.completions;
        total.failures += r.failures;
        total.errors.extend(r.errors);
        total.setup_times.extend(r.setup_times);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

/// A single establish + delete, to check the path works (and to warm both sides up).
pub async fn one_handshake(
    cfg: &Arc<InitiatorConfig>,
    source: Ipv4Addr,
    server: SocketAddr,
) -> Result<Duration> {
    let provider = Arc::new(Provider::system());
    let mut slot = Slot::bind(source).await?;
    run_sa(&mut slot, cfg, &provider, server, AfterUp::Delete).await
}

/// What [`hold_many`] saw.
#[derive(Debug)]
pub struct HoldResult<R> {
    /// What `at_checkpoint` returned at each stage.
    pub readings: Vec<R>,
    /// SAs that came up in all.
    pub up: usize,
    /// Time spent bringing SAs up, checkpoints not counted.
    pub bring_up: Duration,
    /// First few failures.
    pub errors: Vec<String>,
}

/// Brings up one held SA per config (at most `parallel` establishing at once) in stages: the
/// first `checkpoints[0]` configs, then up to `checkpoints[1]`, and so on, awaiting
/// `at_checkpoint(up, last)` with the number of SAs up once each stage's SAs are up (or
/// failed); the last stage is always all of `configs`. The held SAs keep answering their
/// responder (liveness checks) while `at_checkpoint` runs. Then deletes them all.
pub async fn hold_many<R>(
    configs: &[Arc<InitiatorConfig>],
    sources: &[Ipv4Addr],
    server: SocketAddr,
    parallel: usize,
    checkpoints: &[usize],
    storm: Option<Storm>,
    mut at_checkpoint: impl AsyncFnMut(usize, bool) -> R,
) -> Result<HoldResult<R>> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut held = Held {
        tasks: tokio::task::JoinSet::new(),
        sources,
        server,
        provider: Arc::new(Provider::system()),
        permits: Arc::new(tokio::sync::Semaphore::new(parallel.max(1))),
        stop: stop_rx,
        storm,
        total: configs.len(),
    };
    let mut stages: Vec<usize> = checkpoints
        .iter()
        .map(|&c| c.min(configs.len()))
        .chain([configs.len()])
        .collect();
    stages.sort_unstable();
    stages.dedup();
    let mut readings = Vec::with_capacity(stages.len());
    let mut up = 0usize;
    let mut started = 0usize;
    let mut bring_up = Duration::ZERO;
    let last_stage = stages.len().saturating_sub(1);
    for (stage, stage_end) in stages.into_iter().enumerate() {
        let stage_started = Instant::now();
        let mut ups = Vec::with_capacity(stage_end.saturating_sub(started));
        for (i, cfg) in configs.iter().enumerate().take(stage_end).skip(started) {
            ups.push(held.spawn(i, cfg.clone()).await?);
        }
        started = stage_end;
        for rx in ups {
            if rx.await.is_ok() {
                up += 1;
            }
        }
        bring_up += stage_started.elapsed();
        readings.push(at_checkpoint(up, stage == last_stage).await);
    }
    let _ = stop_tx.send(true);
    let deadline = tokio::time::sleep(DELETE_GRACE * 4);
    tokio::pin!(deadline);
    let mut errors = Vec::new();
    loop {
        tokio::select! {
            next = held.tasks.join_next() => match next {
                None => break,
                Some(Ok(Err(e))) if errors.len() < 3 => errors.push(format!("{e:#}")),
                Some(_) => {}
            },
            _ = &mut deadline => {
                held.tasks.abort_all();
                break;
            }
        }
    }
    Ok(HoldResult {
        readings,
        up,
        bring_up,
        errors,
    })
}

/// The SAs [`hold_many`] keeps up, each a task answering its responder until `stop`.
struct Held<'a> {
    tasks: tokio::task::JoinSet<Result<Duration>>,
    sources: &'a [Ipv4Addr],
    server: SocketAddr,
    provider: Arc<Provider>,
    /// Bounds the handshakes in flight.
    permits: Arc<tokio::sync::Semaphore>,
    stop: watch::Receiver<bool>,
    storm: Option<Storm>,
    /// SAs held in all, to spread the storm's rekeys.
    total: usize,
}

impl Held<'_> {
    /// Spawns held SA number `i`; the receiver fires when it is up.
    async fn spawn(
        &mut self,
        i: usize,
        cfg: Arc<InitiatorConfig>,
    ) -> Result<tokio::sync::oneshot::Receiver<()>> {
        let sources = self.sources;
        let server = self.server;
        let source = sources
            .get(i % sources.len().max(1))
            .copied()
            .ok_or_else(|| anyhow!("no source address"))?;
        let mut slot = Slot::bind(source).await?;
        let provider = self.provider.clone();
        let permits = self.permits.clone();
        let mut stop = self.stop.clone();
        let rekey = self.storm.clone().map(|storm| ChildRekey {
            offset: storm.window.mul_f64(i as f64 / self.total.max(1) as f64),
            storm,
            due: None,
            requested: false,
        });
        let (up_tx, up_rx) = tokio::sync::oneshot::channel();
        self.tasks.spawn(async move {
            let permit = permits.acquire_owned().await;
            // The permit is released when the SA is up (the oneshot fires) or has failed.
            let (inner_tx, inner_rx) = tokio::sync::oneshot::channel::<()>();
            let relay = async move {
                if inner_rx.await.is_ok() {
                    let _ = up_tx.send(());
                }
                drop(permit);
            };
            let sa = run_sa(
                &mut slot,
                &cfg,
                &provider,
                server,
                AfterUp::HoldUntil {
                    up: Some(inner_tx),
                    stop: &mut stop,
                    rekey,
                },
            );
            let (result, ()) = tokio::join!(sa, relay);
            result
        });
        Ok(up_rx)
    }
}
