//! The responder endpoint (gateway): demultiplexes datagrams to IKE SAs by SPI, answers
//! IKE_SA_INIT statelessly where it can (COOKIE, INVALID_KE_PAYLOAD, NO_PROPOSAL_CHOSEN,
//! INVALID_MAJOR_VERSION), bounds half-open SAs and hands out virtual IPs.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use ike_wire::{
    Datagram, DecodeError, ExchangeType, Flags, GatewayIdentity, Header, Message, Notify,
    NotifyType, Payload, Payloads,
};
use ipsec_crypto::Provider;
use zeroize::Zeroizing;

use crate::IkeId;
use crate::config::{AddressPool, InitiatorConfig, ResponderConfig};
use crate::datagram::{Now, Path, Transmit};
use crate::event::Event;
use crate::natd::{cookie_matches, make_cookie};
use crate::sa::{ConnectError, IkeSa, IkeSaState, InitOutcome, SpiSet, stateless_reply};

/// Identifies an IKE SA inside an [`Endpoint`]: our SPI when it was created. It stays the
/// same when the IKE SA is rekeyed ([`Event::IkeSaRekeyed`]): the endpoint maps the new SPIs
/// to it, so applications keep one key per peer for the SA's whole life.
pub type IkeSaId = u64;

/// What the endpoint refused or answered without state, since it started (for metrics and
/// tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Datagrams from unauthenticated peers over `max_unauthenticated_datagram`.
    pub oversized: u64,
    /// IKE_SA_INIT requests dropped: their source had `half_open_per_source` half-open SAs
    /// that had proved, with a COOKIE, that the source is really there.
    pub per_source_limit: u64,
    /// IKE_SA_INIT requests dropped: `half_open_limit` half-open SAs in all.
    pub half_open_limit: u64,
    /// COOKIE answers (a request without a valid COOKIE while under load, or from a source
    /// with `half_open_per_source` half-open SAs).
    pub cookies_sent: u64,
    /// INVALID_KE_PAYLOAD answers asking a loaded responder's cheaper group.
    pub cheaper_group_asked: u64,
    /// IKE_SA_INIT requests answered with a REDIRECT (RFC 5685) to another gateway.
    pub redirected: u64,
}

/// Owns many IKE SAs (responder and, via [`Endpoint::connect`], initiator).
///
/// Same loop as [`IkeSa`]: `handle_datagram` / `handle_timeout` in, `poll_transmit`,
/// `poll_event` (tagged with the [`IkeSaId`]) and `poll_timeout` out.
pub struct Endpoint {
    /// `None`: an initiator-only endpoint (a client), which answers no IKE_SA_INIT.
    cfg: Option<Arc<ResponderConfig>>,
    provider: Arc<Provider>,
    pool: Box<dyn AddressPool>,
    sas: HashMap<IkeSaId, IkeSa>,
    /// Our SPIs of rekeyed IKE SAs -> the SA's id.
    aliases: HashMap<u64, IkeSaId>,
    init_index: HashMap<(u64, SocketAddr), IkeSaId>,
    init_keys: HashMap<IkeSaId, HalfOpenKey>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<(IkeSaId, Event)>,
    cookie_secret: Zeroizing<[u8; 32]>,
    cookie_previous: Option<Zeroizing<[u8; 32]>>,
    cookie_version: u8,
    cookie_rotated: Option<Instant>,
    /// Start of the current second and the INVALID_IKE_SPI answers sent in it.
    invalid_spi_window: Option<(Instant, u32)>,
    /// Every SA's next deadline, ordered: finding the earliest costs O(log n), not a scan of
    /// every SA per datagram.
    timers: BTreeSet<(Instant, IkeSaId)>,
    /// The deadline each SA has in `timers`.
    deadline_of: HashMap<IkeSaId, Instant>,
    /// How many SA deadlines were computed (a cost counter for tests).
    deadline_computations: u64,
    /// Half-open SAs per source (an IPv4 address, an IPv6 /64).
    half_open_by_source: HashMap<IpAddr, SourceShare>,
    /// Established responder SAs per (canonical) peer identity, oldest first.
    by_peer: HashMap<IkeId, Vec<IkeSaId>>,
    /// Inbound ESP SPIs held by this endpoint's SAs.
    spis: SpiSet,
    stats: EndpointStats,
    /// Where new clients that can follow a REDIRECT are sent instead of being served.
    redirect_to: Option<GatewayIdentity>,
}

/// What indexes a half-open SA, and whether its source echoed a COOKIE.
#[derive(Debug, Clone, Copy)]
struct HalfOpenKey {
    spi_i: u64,
    remote: SocketAddr,
    cookie_verified: bool,
}

/// A source's half-open SAs: all of them, and those whose requests carried a valid COOKIE.
/// Anyone can send requests in a source's name, so only the second count may refuse it
/// anything; the first only makes it prove it is there.
#[derive(Debug, Clone, Copy, Default)]
struct SourceShare {
    all: usize,
    cookie_verified: usize,
}

/// The stateless REDIRECT answer to an IKE_SA_INIT request whose initiator can follow one:
/// the new gateway and the initiator's nonce (its proof that the answer is to its request).
/// Only for a whole request (SA, KE, Nonce), and never larger than the request: a stateless
/// answer must not make the gateway an amplifier for spoofed sources.
fn redirect_reply(request: &Message, request_len: usize, to: &GatewayIdentity) -> Option<Vec<u8>> {
    let p = &request.payloads;
    let follows = p.notify(NotifyType::REDIRECT_SUPPORTED).is_some()
        || p.notify(NotifyType::REDIRECTED_FROM).is_some();
    if !follows || p.sa().is_none() || p.ke().is_none() {
        return None;
    }
    let nonce = p.nonce().filter(|n| (16..=256).contains(&n.len()))?;
    stateless_reply(&request.header, Notify::redirect(to, Some(nonce)))
        .filter(|reply| reply.len() <= request_len)
}

/// The unit half-open limits count by: one IPv4 address, or one IPv6 /64 (what one
/// subscriber usually gets, and can fill with addresses at will).
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & !((1u128 << 64) - 1))),
    }
}

/// At most this many INVALID_IKE_SPI answers per second.
const MAX_INVALID_SPI_REPLIES_PER_SECOND: u32 = 50;

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("sas", &self.sas.len())
            .field("half_open", &self.half_open())
            .finish_non_exhaustive()
    }
}

/// The pool of an initiator-only endpoint: it never hands out addresses.
struct NoPool;

impl AddressPool for NoPool {
    fn allocate(
        &mut self,
        _: &crate::IkeId,
        _: Option<&str>,
        _: crate::AddressFamily,
    ) -> Option<std::net::IpAddr> {
        None
    }
    fn release(&mut self, _: &crate::IkeId, _: std::net::IpAddr) {}
}

impl Endpoint {
    /// A responder endpoint.
    pub fn new(
        cfg: Arc<ResponderConfig>,
        provider: Arc<Provider>,
        pool: Box<dyn AddressPool>,
    ) -> Result<Self, ConnectError> {
        if cfg.ike.ike_proposals.is_empty() || cfg.ike.esp_proposals.is_empty() {
            return Err(ConnectError::NoProposals);
        }
        Self::build(Some(cfg), provider, pool)
    }

    /// An endpoint that only initiates (a client): IKE SAs come from [`Endpoint::connect`], and
    /// IKE_SA_INIT requests from others are dropped.
    pub fn initiator(provider: Arc<Provider>) -> Result<Self, ConnectError> {
        Self::build(None, provider, Box::new(NoPool))
    }

    fn build(
        cfg: Option<Arc<ResponderConfig>>,
        provider: Arc<Provider>,
        pool: Box<dyn AddressPool>,
    ) -> Result<Self, ConnectError> {
        let secret = provider
            .random_array::<32>()
            .map_err(ConnectError::Crypto)?;
        Ok(Self {
            cfg,
            provider,
            pool,
            sas: HashMap::new(),
            aliases: HashMap::new(),
            init_index: HashMap::new(),
            init_keys: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            cookie_secret: Zeroizing::new(secret),
            cookie_previous: None,
            cookie_version: 0,
            cookie_rotated: None,
            invalid_spi_window: None,
            timers: BTreeSet::new(),
            deadline_of: HashMap::new(),
            deadline_computations: 0,
            half_open_by_source: HashMap::new(),
            by_peer: HashMap::new(),
            spis: SpiSet::default(),
            stats: EndpointStats::default(),
            redirect_to: None,
        })
    }

    /// Number of IKE SAs.
    pub fn len(&self) -> usize {
        self.sas.len()
    }

    /// True without SAs.
    pub fn is_empty(&self) -> bool {
        self.sas.is_empty()
    }

    /// Half-open (responder, not yet authenticated) SAs.
    pub fn half_open(&self) -> usize {
        // Every half-open responder SA is indexed for IKE_SA_INIT retransmissions until it
        // authenticates or closes, so this is O(1) even under an IKE_SA_INIT flood.
        self.init_keys.len()
    }

    /// What was refused or answered without state so far.
    pub fn stats(&self) -> EndpointStats {
        self.stats
    }

    /// An SA by id.
    pub fn sa(&self, id: IkeSaId) -> Option<&IkeSa> {
        self.sas.get(&id)
    }

    /// Rekeys an SA's Child SA with inbound SPI `spi_in` (see [`IkeSa::rekey_child_sa`]).
    pub fn rekey_child_sa(&mut self, id: IkeSaId, now: Instant, spi_in: u32) -> bool {
        let started = self
            .sas
            .get_mut(&id)
            .is_some_and(|sa| sa.rekey_child_sa(now, spi_in));
        self.collect(id, now);
        started
    }

    /// Rekeys an IKE SA (see [`IkeSa::rekey_ike_sa`]); its [`IkeSaId`] stays.
    pub fn rekey_ike_sa(&mut self, id: IkeSaId, now: Instant) -> bool {
        let started = self.sas.get_mut(&id).is_some_and(|sa| sa.rekey_ike_sa(now));
        self.collect(id, now);
        started
    }

    /// Answers new IKE_SA_INIT requests with `cfg` from now on (credentials, proposals,
    /// limits, what is pushed to clients); established SAs keep what they negotiated. No-op
    /// on an initiator-only endpoint.
    pub fn set_responder_config(&mut self, cfg: Arc<ResponderConfig>) {
        if self.cfg.is_some() {
            self.cfg = Some(cfg);
        }
    }

    /// From now on answers each IKE_SA_INIT request that announces REDIRECT_SUPPORTED (or
    /// REDIRECTED_FROM) with a REDIRECT to `to` (RFC 5685 section 4), statelessly; clients
    /// that cannot follow one (stock Windows) are served as before. `None` stops redirecting.
    /// Established SAs are not touched.
    pub fn set_redirect(&mut self, to: Option<GatewayIdentity>) {
        self.redirect_to = to;
    }

    /// Starts an initiator SA owned by this endpoint (e.g. for tests or site-to-site).
    pub fn connect(
        &mut self,
        cfg: Arc<InitiatorConfig>,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<IkeSaId, ConnectError> {
        let mut sa = IkeSa::connect(cfg, self.provider.clone(), now, local, remote)?;
        sa.join_spis(&self.spis).map_err(ConnectError::Crypto)?;
        let id = sa.local_spi();
        self.sas.insert(id, sa);
        self.collect(id, now);
        Ok(id)
    }

    /// The authentication server's answer to the last [`Event::EapPassThrough`] of `id`.
    pub fn eap_answer(&mut self, id: IkeSaId, now: Instant, answer: crate::event::EapAnswer) {
        if let Some(sa) = self.sas.get_mut(&id) {
            sa.eap_answer(answer);
            self.collect(id, now);
        }
    }

    /// Deletes an SA (INFORMATIONAL Delete).
    pub fn delete(&mut self, id: IkeSaId, now: Instant) {
        if let Some(sa) = self.sas.get_mut(&id) {
            sa.delete(now);
            self.collect(id, now);
        }
    }

    /// Sends a liveness check on an SA; false if not possible right now.
    pub fn send_liveness_check(&mut self, id: IkeSaId, now: Instant) -> bool {
        let sent = self
            .sas
            .get_mut(&id)
            .is_some_and(|sa| sa.send_liveness_check(now));
        self.collect(id, now);
        sent
    }

    /// MOBIKE: our address changed (see [`IkeSa::roam`]); false when the SA cannot roam.
    pub fn roam(&mut self, id: IkeSaId, now: Instant, local: std::net::IpAddr) -> bool {
        let started = self.sas.get_mut(&id).is_some_and(|sa| sa.roam(now, local));
        self.collect(id, now);
        started
    }

    /// Whether a path to the SA's peer exists (see [`IkeSa::set_path_available`]).
    pub fn set_path_available(&mut self, id: IkeSaId, now: Instant, available: bool) {
        if let Some(sa) = self.sas.get_mut(&id) {
            sa.set_path_available(now, available);
        }
        self.collect(id, now);
    }

    /// Deletes an SA's Child SA, keeping the IKE SA.
    pub fn delete_child_sa(&mut self, id: IkeSaId, now: Instant) -> bool {
        let sent = self
            .sas
            .get_mut(&id)
            .is_some_and(|sa| sa.delete_child_sa(now));
        self.collect(id, now);
        sent
    }

    /// ESP from this SA's peer arrived: postpones dead peer detection.
    pub fn note_peer_alive(&mut self, id: IkeSaId, now: Instant) {
        if let Some(sa) = self.sas.get_mut(&id) {
            sa.note_peer_alive(now);
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event with the SA it concerns.
    pub fn poll_event(&mut self) -> Option<(IkeSaId, Event)> {
        self.events.pop_front()
    }

    /// The earliest timer of all SAs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let sa_min = self.timers.first().map(|(t, _)| *t);
        let rotate = self
            .cfg
            .as_ref()
            .zip(self.cookie_rotated)
            .map(|(cfg, t)| t + cfg.cookie_secret_lifetime);
        match (sa_min, rotate) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.rotate_cookie_secret(now);
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            self.deadline_of.remove(&id);
            if let Some(sa) = self.sas.get_mut(&id) {
                sa.handle_timeout(now);
            }
            self.collect(id, now);
        }
    }

    /// How many SA deadlines the endpoint has computed so far: it computes one per SA it
    /// How many inbound ESP SPIs the endpoint's SAs hold (each unique).
    pub fn esp_spis_in_use(&self) -> usize {
        self.spis.len()
    }

    /// touched, so a datagram costs O(log n) whatever the number of SAs (tests check this).
    pub fn deadline_computations(&self) -> u64 {
        self.deadline_computations
    }

    /// Files an SA's next deadline (after anything that may have changed it).
    fn reschedule(&mut self, id: IkeSaId) {
        if let Some(old) = self.deadline_of.remove(&id) {
            self.timers.remove(&(old, id));
        }
        let Some(sa) = self.sas.get(&id) else {
            return;
        };
        self.deadline_computations += 1;
        if let Some(at) = sa.poll_timeout() {
            self.timers.insert((at, id));
            self.deadline_of.insert(id, at);
        }
    }

    /// Handles one received IKE datagram (non-ESP marker stripped) that came along `path` at
    /// `now`. Its header is read here, once: the SA it belongs to gets it with the bytes.
    pub fn handle_datagram(&mut self, now: Now, path: Path, bytes: &[u8]) {
        self.rotate_cookie_secret(now.instant);
        let datagram = match Datagram::parse(bytes) {
            Ok(d) => d,
            Err(DecodeError::UnsupportedMajorVersion { header, .. }) => {
                if !header.flags.response() && header.exchange_type == ExchangeType::IKE_SA_INIT {
                    let notify = Notify::new(NotifyType::INVALID_MAJOR_VERSION, Vec::new());
                    if let Some(b) = stateless_reply(&header, notify) {
                        self.stateless_transmit(path, b);
                    }
                }
                return;
            }
            Err(_) => return,
        };
        let h = *datagram.header();
        if h.exchange_type == ExchangeType::IKE_SA_INIT
            && !h.flags.response()
            && h.flags.initiator()
            && h.spi_r == 0
        {
            if let Some(&id) = self.init_index.get(&(h.spi_i, path.remote)) {
                self.dispatch(id, now, path, &datagram);
            } else {
                self.new_init(now.instant, path, &datagram);
            }
            return;
        }
        let ours = if h.flags.initiator() {
            h.spi_r
        } else {
            h.spi_i
        };
        let id = self.aliases.get(&ours).copied().unwrap_or(ours);
        self.dispatch(id, now, path, &datagram);
    }

    fn dispatch(&mut self, id: IkeSaId, now: Now, path: Path, datagram: &Datagram<'_>) {
        let Some(sa) = self.sas.get_mut(&id) else {
            self.answer_unknown_spi(now.instant, path, datagram.header());
            return;
        };
        let cap = self.cfg.as_ref().map(|c| c.max_unauthenticated_datagram);
        if sa.state() == IkeSaState::HalfOpen && cap.is_some_and(|cap| datagram.len() > cap) {
            self.stats.oversized += 1;
            return;
        }
        sa.handle(now, path, datagram, Some(self.pool.as_mut()));
        self.collect(id, now.instant);
    }

    /// A request for an IKE SA we do not have: a client whose gateway restarted. A responder
    /// tells it with an unprotected INVALID_IKE_SPI (RFC 7296 2.21.4), which our client takes
    /// as a hint to give up soon; the answer (36 bytes) is at most a few bytes longer than the
    /// smallest request and the answers are rate-limited, so it is no useful amplifier.
    fn answer_unknown_spi(&mut self, now: Instant, path: Path, h: &Header) {
        if self.cfg.is_none() {
            return;
        }
        if h.flags.response() || h.exchange_type == ExchangeType::IKE_SA_INIT || h.spi_r == 0 {
            return;
        }
        let window = self.invalid_spi_window.get_or_insert((now, 0));
        if now.duration_since(window.0) >= std::time::Duration::from_secs(1) {
            *window = (now, 0);
        }
        if window.1 >= MAX_INVALID_SPI_REPLIES_PER_SECOND {
            return;
        }
        window.1 += 1;
        let flags = if h.flags.initiator() {
            Flags::RESPONSE
        } else {
            Flags::RESPONSE | Flags::INITIATOR
        };
        let reply = Header::new(h.spi_i, h.spi_r, h.exchange_type, flags, h.message_id);
        let notify = Payload::Notify(Notify::new(NotifyType::INVALID_IKE_SPI, Vec::new()));
        if let Ok(b) = Message::new(reply, vec![notify]).encode() {
            self.stateless_transmit(path, b);
        }
    }

    /// An answer without an SA goes back the way its request came.
    fn stateless_transmit(&mut self, path: Path, bytes: Vec<u8>) {
        self.transmits.push_back(Transmit {
            local: path.local,
            remote: path.remote,
            natt: path.natt,
            bytes,
        });
    }

    fn rotate_cookie_secret(&mut self, now: Instant) {
        let Some(lifetime) = self.cfg.as_ref().map(|c| c.cookie_secret_lifetime) else {
            return;
        };
        let Some(at) = self.cookie_rotated else {
            self.cookie_rotated = Some(now);
            return;
        };
        if now < at + lifetime {
            return;
        }
        let Ok(fresh) = self.provider.random_array::<32>() else {
            return;
        };
        let old = std::mem::replace(&mut self.cookie_secret, Zeroizing::new(fresh));
        self.cookie_previous = Some(old);
        self.cookie_version = self.cookie_version.wrapping_add(1);
        self.cookie_rotated = Some(now);
    }

    /// A new IKE_SA_INIT request. Everything that costs the responder nothing comes first:
    /// size, the half-open limits (per source and in all), and under load the COOKIE, checked
    /// on the raw message before it is decoded; only a request that passes all of them is
    /// decoded and may cost a Diffie-Hellman computation.
    fn new_init(&mut self, now: Instant, path: Path, datagram: &Datagram<'_>) {
        let Some(cfg) = self.cfg.clone() else {
            return;
        };
        let (remote, bytes) = (path.remote, datagram.bytes());
        let spi_i = datagram.header().spi_i;
        if bytes.len() > cfg.max_unauthenticated_datagram {
            self.stats.oversized += 1;
            return;
        }
        let share = self
            .half_open_by_source
            .get(&source_key(remote.ip()))
            .copied()
            .unwrap_or_default();
        let half_open = self.half_open();
        if half_open >= cfg.half_open_limit {
            self.stats.half_open_limit += 1;
            return;
        }
        let under_load = half_open >= cfg.cookie_threshold;
        // A busy source must show it is really there; requests spoofed in its name cannot,
        // so they cannot lock it out.
        let cookie_required = under_load || share.all >= cfg.half_open_per_source;
        if cookie_required {
            let Some((cookie, ni)) = raw_cookie_and_nonce(bytes) else {
                return;
            };
            let expected = make_cookie(
                self.cookie_secret.as_slice(),
                self.cookie_version,
                ni,
                remote.ip(),
                spi_i,
            );
            let valid = cookie.is_some_and(|c| {
                cookie_matches(&expected, c)
                    || self.cookie_previous.as_ref().is_some_and(|prev| {
                        let old = make_cookie(
                            prev.as_slice(),
                            self.cookie_version.wrapping_sub(1),
                            ni,
                            remote.ip(),
                            spi_i,
                        );
                        cookie_matches(&old, c)
                    })
            });
            if !valid {
                if let Some(b) =
                    stateless_reply(datagram.header(), Notify::new(NotifyType::COOKIE, expected))
                {
                    self.stats.cookies_sent += 1;
                    self.stateless_transmit(path, b);
                }
                return;
            }
            if share.cookie_verified >= cfg.half_open_per_source {
                self.stats.per_source_limit += 1;
                return;
            }
        }
        let Ok(msg) = datagram.decode() else {
            return;
        };
        if msg.header.message_id != 0 {
            return;
        }
        if let Some(to) = &self.redirect_to
            && let Some(reply) = redirect_reply(&msg, bytes.len(), to)
        {
            self.stats.redirected += 1;
            self.stateless_transmit(path, reply);
            return;
        }
        let spi_r = loop {
            let Ok(b) = self.provider.random_array::<8>() else {
                return;
            };
            let v = u64::from_be_bytes(b);
            if v != 0 && !self.sas.contains_key(&v) && !self.aliases.contains_key(&v) {
                break v;
            }
        };
        match IkeSa::respond_init(
            cfg,
            self.provider.clone(),
            now,
            path,
            &msg,
            bytes,
            spi_r,
            under_load,
        ) {
            InitOutcome::Created(mut sa) => {
                if sa.join_spis(&self.spis).is_err() {
                    return;
                }
                self.init_index.insert((msg.header.spi_i, remote), spi_r);
                self.init_keys.insert(
                    spi_r,
                    HalfOpenKey {
                        spi_i: msg.header.spi_i,
                        remote,
                        cookie_verified: cookie_required,
                    },
                );
                let share = self
                    .half_open_by_source
                    .entry(source_key(remote.ip()))
                    .or_default();
                share.all += 1;
                share.cookie_verified += usize::from(cookie_required);
                self.sas.insert(spi_r, *sa);
                self.collect(spi_r, now);
            }
            InitOutcome::Reply(b) => self.stateless_transmit(path, b),
            InitOutcome::CheaperGroup(b) => {
                self.stats.cheaper_group_asked += 1;
                self.stateless_transmit(path, b);
            }
            InitOutcome::Drop => {}
        }
    }

    /// Indexes a newly established responder SA under its peer identity, then enforces the
    /// identity's share: INITIAL_CONTACT drops every older SA of the identity at once (the
    /// peer says it has lost them, RFC 7296 2.4); beyond `max_sas_per_identity` the oldest
    /// are deleted (the peer is told). Identities are canonical, so spelling an identity
    /// differently (`PC1.Example.`) cannot buy a peer more SAs.
    fn limit_peer_sas(&mut self, id: IkeSaId, peer: IkeId, initial_contact: bool, now: Instant) {
        let max = self
            .cfg
            .as_ref()
            .map_or(usize::MAX, |c| c.max_sas_per_identity.max(1));
        let list = self.by_peer.entry(peer).or_default();
        list.retain(|other| *other != id);
        list.push(id);
        let excess: Vec<IkeSaId> = if initial_contact {
            list.drain(..list.len() - 1).collect()
        } else if list.len() > max {
            list.drain(..list.len() - max).collect()
        } else {
            Vec::new()
        };
        for other in excess {
            if let Some(s) = self.sas.get_mut(&other) {
                if initial_contact {
                    s.close_replaced();
                } else {
                    s.delete(now);
                }
            }
            self.collect(other, now);
        }
    }

    fn forget_peer_sa(&mut self, peer: &IkeId, id: IkeSaId) {
        if let Some(list) = self.by_peer.get_mut(peer) {
            list.retain(|other| *other != id);
            if list.is_empty() {
                self.by_peer.remove(peer);
            }
        }
    }

    /// Moves an SA's outputs to the endpoint queues and drops it once closed.
    fn collect(&mut self, id: IkeSaId, now: Instant) {
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        sa.sweep_spis();
        while let Some(t) = sa.poll_transmit() {
            self.transmits.push_back(t);
        }
        let mut established_peer = None;
        let mut rekeyed = false;
        while let Some(e) = sa.poll_event() {
            rekeyed |= matches!(e, Event::IkeSaRekeyed { .. });
            if let Event::IkeSaEstablished(info) = &e
                && !info.initiator
            {
                established_peer = Some((info.peer_id.clone(), info.initial_contact));
            }
            self.events.push_back((id, e));
        }
        if rekeyed {
            let spi = sa.local_spi();
            // Keep the aliases of the current and the retiring SPIs only.
            self.aliases.retain(|k, v| *v != id || sa.has_local_spi(*k));
            if spi != id {
                self.aliases.insert(spi, id);
            }
        }
        if sa.state() != IkeSaState::HalfOpen
            && let Some(key) = self.init_keys.remove(&id)
        {
            self.init_index.remove(&(key.spi_i, key.remote));
            let source = source_key(key.remote.ip());
            if let Some(share) = self.half_open_by_source.get_mut(&source) {
                share.all = share.all.saturating_sub(1);
                if key.cookie_verified {
                    share.cookie_verified = share.cookie_verified.saturating_sub(1);
                }
                if share.all == 0 {
                    self.half_open_by_source.remove(&source);
                }
            }
        }
        if sa.is_closed() {
            self.aliases.retain(|_, v| *v != id);
        }
        if let Some(sa) = self.sas.get(&id)
            && sa.is_closed()
            && let Some(sa) = self.sas.remove(&id)
            && let Some(peer) = sa.peer_id()
        {
            self.forget_peer_sa(peer, id);
            // One release per allocation, even when the peer's newer SA holds the same
            // (persistent) address again: the pool counts sessions, and skipping this release
            // would pin the lease forever.
            for a in sa.assigned_addresses() {
                self.pool.release(peer, *a);
            }
        }
        self.reschedule(id);
        if let Some((peer, initial_contact)) = established_peer {
            self.limit_peer_sas(id, peer, initial_contact, now);
        }
    }
}

/// The COOKIE notify (if the request starts with one, as RFC 7296 2.6 wants) and the nonce of
/// a raw IKE_SA_INIT request, found by walking the generic payload headers only: checking a
/// COOKIE costs one HMAC and no decoding. `None` when the chain is malformed or has no nonce.
fn raw_cookie_and_nonce(bytes: &[u8]) -> Option<(Option<&[u8]>, &[u8])> {
    const NOTIFY: u8 = 41;
    const NONCE: u8 = 40;
    let mut next = *bytes.get(16)?;
    let mut at = ike_wire::HEADER_LEN;
    let mut cookie = None;
    let mut nonce = None;
    let mut first = true;
    while next != 0 {
        let header = bytes.get(at..at + 4)?;
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let body = bytes.get(at + 4..at.checked_add(len)?)?;
        if len < 4 {
            return None;
        }
        match next {
            // Notify: protocol, SPI size, type, SPI, data.
            NOTIFY if first => {
                let spi_size = usize::from(*body.get(1)?);
                let kind = u16::from_be_bytes([*body.get(2)?, *body.get(3)?]);
                if kind == NotifyType::COOKIE.0 {
                    cookie = Some(body.get(4 + spi_size..)?);
                }
            }
            NONCE => nonce = Some(body),
            _ => {}
        }
        first = false;
        next = header[0];
        at += len;
    }
    Some((cookie, nonce?))
}
