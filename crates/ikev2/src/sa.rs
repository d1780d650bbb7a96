//! One IKE SA: the IKE_SA_INIT / IKE_AUTH / INFORMATIONAL state machine for both roles.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use ike_wire::{
    AuthMethod, Authentication, CertEncoding, CfgAttribute, CfgType, Configuration, Delete,
    ExchangeType, Flags, FragmentPosition, Header, Identification, KeyExchange, Message, Notify,
    NotifyType, Payload, PayloadType, Payloads, Protection, ProtocolId, Reassembler,
    ReassemblyLimits, ReassemblyStatus, SecurityAssociation, TrafficSelector, decode_chain,
    encode_chain, open_parts, seal_prefix,
};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use ipsec_crypto::{
    ChildSaKeys, DhGroup, DhPrivateKey, HashAlg, IkeSaKeys, KeyType, Provider, SignatureScheme,
    SkCipher, auth_signed_octets, build_rfc7427_auth_data, split_rfc7427_auth_data, verify,
};

use crate::config::{
    AddressFamily, AddressPool, AuthMethodPolicy, IkeConfig, InitiatorConfig, ResponderConfig,
};
use crate::event::{ChildSa, CloseReason, Event, Failure, FailureReason, IkeSaInfo, Transmit};
use crate::identity::{IkeId, PeerRejection};
use crate::natd::{fake_natd_hash, natd_hash};
use crate::proposal::{EspAlgorithms, IkeAlgorithms};
use crate::ts;

/// Which side of the IKE SA we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Original initiator.
    Initiator,
    /// Original responder.
    Responder,
}

/// Coarse state of an IKE SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaState {
    /// Initiator: IKE_SA_INIT request sent.
    InitSent,
    /// Initiator: IKE_AUTH request sent.
    AuthSent,
    /// Responder: IKE_SA_INIT answered, waiting for IKE_AUTH (half-open).
    HalfOpen,
    /// Authenticated.
    Established,
    /// Our Delete is outstanding.
    Deleting,
    /// Gone; drain outputs and drop it.
    Closed,
}

#[derive(Debug, Clone)]
enum RoleConfig {
    Initiator(Arc<InitiatorConfig>),
    Responder(Arc<ResponderConfig>),
}

impl RoleConfig {
    fn ike(&self) -> &IkeConfig {
        match self {
            Self::Initiator(c) => &c.ike,
            Self::Responder(c) => &c.ike,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestKind {
    Init,
    Auth,
    Delete,
    Liveness,
    DeleteChild,
}

#[derive(Debug)]
struct Pending {
    message_id: u32,
    kind: RequestKind,
    datagrams: Vec<Vec<u8>>,
    sent: u32,
    deadline: Instant,
}

/// Result of a responder's first look at an IKE_SA_INIT request.
#[derive(Debug)]
pub(crate) enum InitOutcome {
    /// A new half-open SA (its response is queued).
    Created(Box<IkeSa>),
    /// A stateless reply (error notify) to send back.
    Reply(Vec<u8>),
    /// Drop silently.
    Drop,
}

/// Maximum COOKIE and INVALID_KE_PAYLOAD round trips of an initiator.
const MAX_INIT_RETRIES: u32 = 4;

/// An IKE SA. Initiators create one with [`IkeSa::connect`] and drive it directly; the
/// responder side lives in an [`crate::Endpoint`].
///
/// Loop: feed [`IkeSa::handle_datagram`] / [`IkeSa::handle_timeout`], then drain
/// [`IkeSa::poll_transmit`] and [`IkeSa::poll_event`], and sleep until [`IkeSa::poll_timeout`].
#[derive(Debug)]
pub struct IkeSa {
    role: Role,
    cfg: RoleConfig,
    provider: Arc<Provider>,
    state: SaState,
    spi_i: u64,
    spi_r: u64,
    local: SocketAddr,
    remote: SocketAddr,
    nat_detected: bool,
    encap: bool,
    ni: Vec<u8>,
    nr: Vec<u8>,
    dh: Option<DhPrivateKey>,
    init_request: Vec<u8>,
    init_response: Vec<u8>,
    algs: Option<IkeAlgorithms>,
    keys: Option<IkeSaKeys>,
    sk_out: Option<SkCipher>,
    sk_in: Option<SkCipher>,
    peer_frag: bool,
    peer_hashes: Vec<HashAlg>,
    next_request_id: u32,
    pending: Option<Pending>,
    expected_request_id: u32,
    cached_response: Option<(u32, Vec<Vec<u8>>)>,
    reassembler: Reassembler,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    child_spi_in: u32,
    child: Option<(u32, u32)>,
    cookie: Option<Vec<u8>>,
    init_retries: u32,
    peer_id: Option<IkeId>,
    peer_auth_method: Option<AuthMethod>,
    establish_deadline: Option<Instant>,
    unix_time: u64,
    assigned: Vec<IpAddr>,
    last_rx: Option<Instant>,
    peer_initial_contact: bool,
}

/// Errors of [`IkeSa::connect`] (local misconfiguration or crypto backend failure).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// No IKE or no ESP proposal configured.
    #[error("no proposals configured")]
    NoProposals,
    /// More than 255 proposals.
    #[error("too many proposals")]
    TooManyProposals,
    /// The crypto provider failed.
    #[error("crypto: {0}")]
    Crypto(String),
    /// Encoding the request failed.
    #[error("encoding: {0}")]
    Encode(String),
}

fn nonzero_u64(p: &Provider) -> Result<u64, ipsec_crypto::CryptoError> {
    loop {
        let v = u64::from_be_bytes(p.random_array()?);
        if v != 0 {
            return Ok(v);
        }
    }
}

/// A random ESP SPI outside the reserved range 0..=255 (RFC 4303 2.1).
fn esp_spi(p: &Provider) -> Result<u32, ipsec_crypto::CryptoError> {
    loop {
        let v = u32::from_be_bytes(p.random_array()?);
        if v > 255 {
            return Ok(v);
        }
    }
}

fn wire_group(g: DhGroup) -> ike_wire::DhGroup {
    ike_wire::DhGroup(g.iana())
}

fn hash_algs_notify() -> Notify {
    let mut data = Vec::new();
    for h in [HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512] {
        data.extend_from_slice(&h.iana().to_be_bytes());
    }
    Notify::new(NotifyType::SIGNATURE_HASH_ALGORITHMS, data)
}

fn parse_hash_algs(payloads: &[Payload]) -> Vec<HashAlg> {
    payloads
        .notify(NotifyType::SIGNATURE_HASH_ALGORITHMS)
        .map(|n| {
            n.data
                .chunks_exact(2)
                .filter_map(|c| HashAlg::from_iana(u16::from_be_bytes([c[0], c[1]])))
                .collect()
        })
        .unwrap_or_default()
}

/// Encodes a stateless IKE_SA_INIT error reply.
pub(crate) fn stateless_reply(request: &Header, notify: Notify) -> Option<Vec<u8>> {
    let h = Header::new(
        request.spi_i,
        0,
        ExchangeType::IKE_SA_INIT,
        Flags::RESPONSE,
        request.message_id,
    );
    Message::new(h, vec![Payload::Notify(notify)]).encode().ok()
}

impl IkeSa {
    /// Starts an initiator: queues the IKE_SA_INIT request (from `local` to `remote`, normally
    /// port 500 on both sides).
    pub fn connect(
        cfg: Arc<InitiatorConfig>,
        provider: Arc<Provider>,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<Self, ConnectError> {
        let ike = &cfg.ike;
        if ike.ike_proposals.is_empty() || ike.esp_proposals.is_empty() {
            return Err(ConnectError::NoProposals);
        }
        if ike.ike_proposals.len() > 255 || ike.esp_proposals.len() > 255 {
            return Err(ConnectError::TooManyProposals);
        }
        let crypto = |e: ipsec_crypto::CryptoError| ConnectError::Crypto(e.to_string());
        let group = ike
            .ike_proposals
            .first()
            .and_then(|p| p.dh.first().copied())
            .ok_or(ConnectError::NoProposals)?;
        let spi_i = nonzero_u64(&provider).map_err(crypto)?;
        let ni = provider.random_vec(ike.nonce_len.max(16)).map_err(crypto)?;
        let dh = provider.generate_dh(group).map_err(crypto)?;
        let child_spi_in = esp_spi(&provider).map_err(crypto)?;
        let deadline = now + ike.establish_timeout;
        let mut sa = Self::blank(
            Role::Initiator,
            RoleConfig::Initiator(cfg.clone()),
            provider,
            local,
            remote,
        );
        sa.spi_i = spi_i;
        sa.ni = ni;
        sa.dh = Some(dh);
        sa.child_spi_in = child_spi_in;
        sa.establish_deadline = Some(deadline);
        sa.send_init_request(now)
            .map_err(|e| ConnectError::Encode(e.to_string()))?;
        Ok(sa)
    }

    fn blank(
        role: Role,
        cfg: RoleConfig,
        provider: Arc<Provider>,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Self {
        Self {
            role,
            cfg,
            provider,
            state: match role {
                Role::Initiator => SaState::InitSent,
                Role::Responder => SaState::HalfOpen,
            },
            spi_i: 0,
            spi_r: 0,
            local,
            remote,
            nat_detected: false,
            encap: false,
            ni: Vec::new(),
            nr: Vec::new(),
            dh: None,
            init_request: Vec::new(),
            init_response: Vec::new(),
            algs: None,
            keys: None,
            sk_out: None,
            sk_in: None,
            peer_frag: false,
            peer_hashes: Vec::new(),
            next_request_id: 0,
            pending: None,
            expected_request_id: 0,
            cached_response: None,
            reassembler: Reassembler::new(ReassemblyLimits::default()),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            child_spi_in: 0,
            child: None,
            cookie: None,
            init_retries: 0,
            peer_id: None,
            peer_auth_method: None,
            establish_deadline: None,
            unix_time: 0,
            assigned: Vec::new(),
            last_rx: None,
            peer_initial_contact: false,
        }
    }

    // ---------------------------------------------------------------- public API

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Current state.
    pub fn state(&self) -> SaState {
        self.state
    }

    /// Our SPI (the key an [`crate::Endpoint`] files this SA under).
    pub fn local_spi(&self) -> u64 {
        match self.role {
            Role::Initiator => self.spi_i,
            Role::Responder => self.spi_r,
        }
    }

    /// (SPIi, SPIr).
    pub fn spis(&self) -> (u64, u64) {
        (self.spi_i, self.spi_r)
    }

    /// Current (local, remote) addresses.
    pub fn addresses(&self) -> (SocketAddr, SocketAddr) {
        (self.local, self.remote)
    }

    /// True once closed: drain its outputs, then drop it.
    pub fn is_closed(&self) -> bool {
        self.state == SaState::Closed
    }

    /// The authenticated peer identity.
    pub fn peer_id(&self) -> Option<&IkeId> {
        self.peer_id.as_ref()
    }

    /// Virtual IPs handed to the peer (responder); release them when the SA is dropped.
    pub fn assigned_addresses(&self) -> &[IpAddr] {
        &self.assigned
    }

    /// Wall-clock time in seconds since the Unix epoch, for certificate validity checks.
    /// Call it before handing in datagrams (the engine reads no clocks).
    pub fn set_unix_time(&mut self, unix_time: u64) {
        self.unix_time = unix_time;
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`IkeSa::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == SaState::Closed {
            return None;
        }
        let retransmit = self.pending.as_ref().map(|p| p.deadline);
        let establish = self
            .establish_deadline
            .filter(|_| !matches!(self.state, SaState::Established | SaState::Deleting));
        [retransmit, establish, self.dpd_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// When the next liveness check is due (established, idle, DPD configured).
    fn dpd_deadline(&self) -> Option<Instant> {
        let interval = self.cfg.ike().dpd_interval?;
        if self.state != SaState::Established || self.pending.is_some() {
            return None;
        }
        Some(self.last_rx? + interval)
    }

    /// Tells the SA that the peer is alive (e.g. ESP arrived), postponing the next DPD check.
    pub fn note_peer_alive(&mut self, now: Instant) {
        self.last_rx = Some(self.last_rx.map_or(now, |t| t.max(now)));
    }

    /// Deletes the Child SA (INFORMATIONAL with Delete of our inbound SPI); the IKE SA stays.
    /// Returns false when there is none or another request is outstanding.
    pub fn delete_child_sa(&mut self, now: Instant) -> bool {
        let Some((spi_in, _)) = self.child else {
            return false;
        };
        if self.state != SaState::Established || self.pending.is_some() {
            return false;
        }
        self.send_request(
            now,
            ExchangeType::INFORMATIONAL,
            RequestKind::DeleteChild,
            vec![Payload::Delete(Delete::esp(&[spi_in]))],
        )
        .is_ok()
    }

    /// Handles a received IKE datagram (non-ESP marker already stripped). `local` is the
    /// address it arrived on, `remote` its source.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
    ) {
        self.handle(now, local, remote, bytes, None);
    }

    /// Runs timers: retransmissions, establishment deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == SaState::Closed {
            return;
        }
        if let Some(d) = self.establish_deadline
            && d <= now
            && !matches!(self.state, SaState::Established | SaState::Deleting)
        {
            self.fail(FailureReason::EstablishTimeout, None, None);
            return;
        }
        if self.dpd_deadline().is_some_and(|d| d <= now) {
            self.send_liveness_check(now);
            return;
        }
        let retransmit = self.cfg.ike().retransmit;
        let Some(p) = self.pending.as_mut() else {
            return;
        };
        if p.deadline > now {
            return;
        }
        if p.sent >= retransmit.tries {
            let kind = p.kind;
            self.pending = None;
            if kind == RequestKind::Delete {
                self.close(CloseReason::LocalDelete);
            } else {
                self.fail(FailureReason::Timeout, None, None);
            }
            return;
        }
        let shift = p.sent.min(16);
        let timeout = retransmit
            .initial
            .saturating_mul(1u32 << shift)
            .min(retransmit.max_timeout);
        p.sent += 1;
        p.deadline = now + timeout;
        let datagrams = p.datagrams.clone();
        for d in datagrams {
            self.push_transmit(d);
        }
    }

    /// Deletes the IKE SA (and its Child SA): sends INFORMATIONAL with Delete and closes when
    /// answered or timed out. Before establishment it just closes.
    pub fn delete(&mut self, now: Instant) {
        match self.state {
            SaState::Established if self.pending.is_none() => {
                if self
                    .send_request(
                        now,
                        ExchangeType::INFORMATIONAL,
                        RequestKind::Delete,
                        vec![Payload::Delete(Delete::ike())],
                    )
                    .is_ok()
                {
                    self.state = SaState::Deleting;
                } else {
                    self.close(CloseReason::LocalDelete);
                }
            }
            SaState::Closed | SaState::Deleting => {}
            _ => self.close(CloseReason::LocalDelete),
        }
    }

    /// Sends an empty INFORMATIONAL (liveness check / DPD). Returns false when another
    /// request is outstanding or the SA is not established. No answer after all
    /// retransmissions fails the SA with [`FailureReason::Timeout`].
    pub fn send_liveness_check(&mut self, now: Instant) -> bool {
        if self.state != SaState::Established || self.pending.is_some() {
            return false;
        }
        self.send_request(
            now,
            ExchangeType::INFORMATIONAL,
            RequestKind::Liveness,
            Vec::new(),
        )
        .is_ok()
    }

    // ---------------------------------------------------------------- plumbing

    pub(crate) fn handle(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
        pool: Option<&mut dyn AddressPool>,
    ) {
        if self.state == SaState::Closed {
            return;
        }
        let Ok(raw) = Header::parse(bytes) else {
            return;
        };
        if raw.header.exchange_type == ExchangeType::IKE_SA_INIT {
            self.handle_init_plain(now, local, remote, bytes);
        } else {
            self.handle_protected(now, local, remote, bytes, pool);
        }
    }

    fn push_transmit(&mut self, bytes: Vec<u8>) {
        let natt = self.cfg.ike().natt_port;
        self.transmits.push_back(Transmit {
            local: self.local,
            remote: self.remote,
            bytes,
            non_esp_marker: self.local.port() == natt,
        });
    }

    fn close(&mut self, reason: CloseReason) {
        if self.state != SaState::Closed {
            self.state = SaState::Closed;
            self.pending = None;
            self.events.push_back(Event::Closed(reason));
        }
    }

    fn fail(
        &mut self,
        reason: FailureReason,
        notify_sent: Option<NotifyType>,
        notify_received: Option<NotifyType>,
    ) {
        self.events.push_back(Event::Failed(Failure {
            reason,
            notify_sent,
            notify_received,
        }));
        self.close(CloseReason::Failed);
    }

    fn header(&self, exchange: ExchangeType, message_id: u32, response: bool) -> Header {
        let mut flags = Flags(0);
        if self.role == Role::Initiator {
            flags = flags | Flags::INITIATOR;
        }
        if response {
            flags = flags | Flags::RESPONSE;
        }
        Header::new(self.spi_i, self.spi_r, exchange, flags, message_id)
    }

    /// Encrypts `payloads` into one SK message or, if too large and both sides support it,
    /// into SKF fragments (RFC 7383).
    fn protect(
        &self,
        exchange: ExchangeType,
        message_id: u32,
        response: bool,
        payloads: &[Payload],
    ) -> Result<Vec<Vec<u8>>, String> {
        let sk = self.sk_out.as_ref().ok_or("no keys")?;
        let ike = self.cfg.ike();
        let header = self.header(exchange, message_id, response);
        let (first, plain) = encode_chain(payloads).map_err(|e| e.to_string())?;
        let marker = if self.encap { 4 } else { 0 };
        let ip_udp = if self.remote.is_ipv4() { 28 } else { 48 };
        let budget = ike.fragment_mtu.saturating_sub(ip_udp + marker);
        let whole = ike_wire::HEADER_LEN + 4 + sk.body_len(plain.len());
        let seal = |prot: Protection, chunk: &[u8]| -> Result<Vec<u8>, String> {
            let mut msg = seal_prefix(&header, &[], prot, sk.body_len(chunk.len()))
                .map_err(|e| e.to_string())?;
            let body = sk
                .seal(&msg, chunk, &self.provider)
                .map_err(|e| e.to_string())?;
            msg.extend_from_slice(&body);
            Ok(msg)
        };
        if !(ike.fragmentation && self.peer_frag) || whole <= budget {
            return Ok(vec![seal(
                Protection::Sk {
                    first_payload: first,
                },
                &plain,
            )?]);
        }
        let room = sk
            .max_plaintext_len(budget.saturating_sub(ike_wire::HEADER_LEN + 8))
            .filter(|n| *n > 0)
            .ok_or("fragment MTU too small")?;
        let chunks: Vec<&[u8]> = plain.chunks(room).collect();
        let total = u16::try_from(chunks.len()).map_err(|_| "too many fragments")?;
        let mut out = Vec::with_capacity(chunks.len());
        for (i, chunk) in chunks.iter().enumerate() {
            let number = u16::try_from(i + 1).map_err(|_| "too many fragments")?;
            out.push(seal(
                Protection::Skf {
                    fragment: FragmentPosition { number, total },
                    first_payload: if number == 1 {
                        first
                    } else {
                        PayloadType::NONE
                    },
                },
                chunk,
            )?);
        }
        Ok(out)
    }

    fn send_request(
        &mut self,
        now: Instant,
        exchange: ExchangeType,
        kind: RequestKind,
        payloads: Vec<Payload>,
    ) -> Result<(), String> {
        let id = self.next_request_id;
        let datagrams = self.protect(exchange, id, false, &payloads)?;
        self.next_request_id = self.next_request_id.wrapping_add(1);
        self.start_pending(now, id, kind, datagrams);
        Ok(())
    }

    fn start_pending(&mut self, now: Instant, id: u32, kind: RequestKind, datagrams: Vec<Vec<u8>>) {
        for d in &datagrams {
            self.push_transmit(d.clone());
        }
        let initial = self.cfg.ike().retransmit.initial;
        self.pending = Some(Pending {
            message_id: id,
            kind,
            datagrams,
            sent: 1,
            deadline: now + initial,
        });
    }

    fn send_response(&mut self, exchange: ExchangeType, message_id: u32, payloads: &[Payload]) {
        match self.protect(exchange, message_id, true, payloads) {
            Ok(datagrams) => {
                for d in &datagrams {
                    self.push_transmit(d.clone());
                }
                self.cached_response = Some((message_id, datagrams));
            }
            Err(e) => self.fail(FailureReason::Local(e), None, None),
        }
    }

    fn resend_cached(&mut self) {
        if let Some((_, datagrams)) = self.cached_response.clone() {
            for d in datagrams {
                self.push_transmit(d);
            }
        }
    }

    // ---------------------------------------------------------------- IKE_SA_INIT

    fn send_init_request(&mut self, now: Instant) -> Result<(), String> {
        let cfg = self.cfg.clone();
        let ike = cfg.ike();
        let dh = self.dh.as_ref().ok_or("no DH key")?;
        let mut payloads = Vec::new();
        if let Some(c) = &self.cookie {
            payloads.push(Payload::Notify(Notify::new(NotifyType::COOKIE, c.clone())));
        }
        let proposals = ike
            .ike_proposals
            .iter()
            .enumerate()
            .map(|(i, p)| p.to_wire(u8::try_from(i + 1).unwrap_or(u8::MAX)))
            .collect();
        payloads.push(Payload::Sa(SecurityAssociation { proposals }));
        payloads.push(Payload::Ke(KeyExchange {
            group: wire_group(dh.group()),
            data: dh.public_value().to_vec(),
        }));
        payloads.push(Payload::Nonce(self.ni.clone()));
        // Forced encapsulation: claim to be behind a NAT (fake source hash), so the responder
        // expects UDP encapsulation from us.
        let src = if ike.force_encap {
            fake_natd_hash(self.spi_i, 0, self.local)
        } else {
            natd_hash(self.spi_i, 0, self.local)
        };
        payloads.push(Payload::Notify(Notify::new(
            NotifyType::NAT_DETECTION_SOURCE_IP,
            src,
        )));
        payloads.push(Payload::Notify(Notify::new(
            NotifyType::NAT_DETECTION_DESTINATION_IP,
            natd_hash(self.spi_i, 0, self.remote),
        )));
        if ike.fragmentation {
            payloads.push(Payload::Notify(Notify::new(
                NotifyType::IKEV2_FRAGMENTATION_SUPPORTED,
                Vec::new(),
            )));
        }
        if ike.signature_hash_algorithms {
            payloads.push(Payload::Notify(hash_algs_notify()));
        }
        let header = self.header(ExchangeType::IKE_SA_INIT, 0, false);
        let bytes = Message::new(header, payloads)
            .encode()
            .map_err(|e| e.to_string())?;
        self.init_request = bytes.clone();
        self.next_request_id = 1;
        self.start_pending(now, 0, RequestKind::Init, vec![bytes]);
        Ok(())
    }

    /// Responder: builds a half-open SA and its IKE_SA_INIT response, or a stateless reply.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn respond_init(
        cfg: Arc<ResponderConfig>,
        provider: Arc<Provider>,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        request: &Message,
        raw: &[u8],
        spi_r: u64,
    ) -> InitOutcome {
        let h = &request.header;
        let reply = |t: NotifyType, data: Vec<u8>| {
            stateless_reply(h, Notify::new(t, data)).map_or(InitOutcome::Drop, InitOutcome::Reply)
        };
        let p = &request.payloads;
        if let Some(t) = p.unsupported_critical() {
            return reply(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, vec![t.0]);
        }
        let (Some(sa), Some(ke), Some(ni)) = (p.sa(), p.ke(), p.nonce()) else {
            return reply(NotifyType::INVALID_SYNTAX, Vec::new());
        };
        if !(16..=256).contains(&ni.len()) {
            return reply(NotifyType::INVALID_SYNTAX, Vec::new());
        }
        let ike = &cfg.ike;
        let chosen = ike.ike_proposals.iter().find_map(|ours| {
            sa.proposals
                .iter()
                .find_map(|peer| ours.select(peer).map(|s| (s, peer.number)))
        });
        let Some(((mut algs, groups), number)) = chosen else {
            return reply(NotifyType::NO_PROPOSAL_CHOSEN, Vec::new());
        };
        match DhGroup::from_iana(ke.group.0).filter(|g| groups.contains(g)) {
            Some(g) => algs.dh = g,
            None => {
                return reply(
                    NotifyType::INVALID_KE_PAYLOAD,
                    algs.dh.iana().to_be_bytes().to_vec(),
                );
            }
        }
        let Ok(dh) = provider.generate_dh(algs.dh) else {
            return InitOutcome::Drop;
        };
        let Ok(shared) = dh.agree(&ke.data) else {
            return reply(NotifyType::INVALID_SYNTAX, Vec::new());
        };
        let Ok(nr) = provider.random_vec(ike.nonce_len.max(16)) else {
            return InitOutcome::Drop;
        };
        let mut sa_state = Self::blank(
            Role::Responder,
            RoleConfig::Responder(cfg.clone()),
            provider.clone(),
            local,
            remote,
        );
        sa_state.spi_i = h.spi_i;
        sa_state.spi_r = spi_r;
        sa_state.ni = ni.to_vec();
        sa_state.nr = nr.clone();
        sa_state.init_request = raw.to_vec();
        sa_state.peer_frag = p
            .notify(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED)
            .is_some();
        sa_state.peer_hashes = parse_hash_algs(p);
        sa_state.establish_deadline = Some(now + ike.establish_timeout);
        sa_state.expected_request_id = 1;
        sa_state.nat_detected = ike.force_encap || natd_mismatch(p, h.spi_i, 0, remote, local);
        if sa_state.derive_keys(algs, shared.as_bytes()).is_err() {
            return InitOutcome::Drop;
        }

        let mut out = vec![
            Payload::Sa(SecurityAssociation {
                proposals: vec![algs.to_wire(number)],
            }),
            Payload::Ke(KeyExchange {
                group: wire_group(algs.dh),
                data: dh.public_value().to_vec(),
            }),
            Payload::Nonce(nr),
        ];
        // Forced encapsulation: make the initiator believe that *it* is behind a NAT (fake
        // destination hash). Every client supports that case (it floats to the NAT-T port and
        // sends keepalives); a faked source hash ("the gateway is behind a NAT", strongSwan's
        // encap=yes) is refused by Windows without a registry change.
        let dst = if ike.force_encap {
            fake_natd_hash(h.spi_i, spi_r, remote)
        } else {
            natd_hash(h.spi_i, spi_r, remote)
        };
        out.push(Payload::Notify(Notify::new(
            NotifyType::NAT_DETECTION_SOURCE_IP,
            natd_hash(h.spi_i, spi_r, local),
        )));
        out.push(Payload::Notify(Notify::new(
            NotifyType::NAT_DETECTION_DESTINATION_IP,
            dst,
        )));
        let hashes = ike.validator.ca_key_hashes();
        if !hashes.is_empty() {
            out.push(Payload::CertReq(ike_wire::Certificate {
                encoding: CertEncoding::X509_SIG,
                data: hashes.concat(),
            }));
        }
        if ike.fragmentation && sa_state.peer_frag {
            out.push(Payload::Notify(Notify::new(
                NotifyType::IKEV2_FRAGMENTATION_SUPPORTED,
                Vec::new(),
            )));
        } else {
            sa_state.peer_frag = false;
        }
        if ike.signature_hash_algorithms && !sa_state.peer_hashes.is_empty() {
            out.push(Payload::Notify(hash_algs_notify()));
        }
        let header = Header::new(
            h.spi_i,
            spi_r,
            ExchangeType::IKE_SA_INIT,
            Flags::RESPONSE,
            0,
        );
        let Ok(bytes) = Message::new(header, out).encode() else {
            return InitOutcome::Drop;
        };
        sa_state.init_response = bytes.clone();
        sa_state.push_transmit(bytes.clone());
        sa_state.cached_response = Some((0, vec![bytes]));
        InitOutcome::Created(Box::new(sa_state))
    }

    fn derive_keys(&mut self, algs: IkeAlgorithms, shared: &[u8]) -> Result<(), String> {
        let suite = algs.suite();
        let keys = IkeSaKeys::derive(
            &suite,
            shared,
            &self.ni,
            &self.nr,
            &self.spi_i.to_be_bytes(),
            &self.spi_r.to_be_bytes(),
        )
        .map_err(|e| e.to_string())?;
        let (out, inb) = keys
            .sk_ciphers(&suite, self.role == Role::Initiator)
            .map_err(|e| e.to_string())?;
        self.algs = Some(algs);
        self.keys = Some(keys);
        self.sk_out = Some(out);
        self.sk_in = Some(inb);
        Ok(())
    }

    fn handle_init_plain(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
    ) {
        let Ok(msg) = Message::decode(bytes) else {
            return;
        };
        let h = msg.header;
        if h.message_id != 0 || h.spi_i != self.spi_i {
            return;
        }
        match (self.role, h.flags.response()) {
            // Retransmitted IKE_SA_INIT request: resend our response while still half-open.
            (Role::Responder, false)
                if self.state == SaState::HalfOpen
                    && self
                        .cached_response
                        .as_ref()
                        .is_some_and(|(id, _)| *id == 0) =>
            {
                self.resend_cached();
            }
            (Role::Initiator, true) if self.state == SaState::InitSent => {
                self.process_init_response(now, local, remote, &msg, bytes);
            }
            _ => {}
        }
    }

    fn process_init_response(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        msg: &Message,
        bytes: &[u8],
    ) {
        let p = &msg.payloads;
        let cfg = self.cfg.clone();
        let ike = cfg.ike();
        if let Some(c) = p.notify(NotifyType::COOKIE) {
            if self.init_retries >= MAX_INIT_RETRIES || c.data.is_empty() || c.data.len() > 64 {
                self.fail(
                    FailureReason::TooManyRetries,
                    None,
                    Some(NotifyType::COOKIE),
                );
                return;
            }
            self.init_retries += 1;
            self.cookie = Some(c.data.clone());
            if let Err(e) = self.send_init_request(now) {
                self.fail(FailureReason::Local(e), None, None);
            }
            return;
        }
        if let Some(n) = p.notify(NotifyType::INVALID_KE_PAYLOAD) {
            let wanted = n
                .data
                .first_chunk::<2>()
                .map(|b| u16::from_be_bytes(*b))
                .unwrap_or(0);
            let offered = DhGroup::from_iana(wanted)
                .filter(|g| ike.ike_proposals.iter().any(|p| p.dh.contains(g)));
            let current = self.dh.as_ref().map(DhPrivateKey::group);
            let (Some(group), true) = (offered, self.init_retries < MAX_INIT_RETRIES) else {
                self.fail(
                    FailureReason::InvalidKeGroup(wanted),
                    None,
                    Some(NotifyType::INVALID_KE_PAYLOAD),
                );
                return;
            };
            if Some(group) == current {
                self.fail(
                    FailureReason::InvalidKeGroup(wanted),
                    None,
                    Some(NotifyType::INVALID_KE_PAYLOAD),
                );
                return;
            }
            self.init_retries += 1;
            match self.provider.generate_dh(group) {
                Ok(dh) => self.dh = Some(dh),
                Err(e) => {
                    self.fail(FailureReason::Local(e.to_string()), None, None);
                    return;
                }
            }
            if let Err(e) = self.send_init_request(now) {
                self.fail(FailureReason::Local(e), None, None);
            }
            return;
        }
        if let Some(n) = p.error_notify() {
            let reason = if n.notify_type == NotifyType::NO_PROPOSAL_CHOSEN {
                FailureReason::NoProposalChosen
            } else {
                FailureReason::PeerNotify(n.notify_type)
            };
            self.fail(reason, None, Some(n.notify_type));
            return;
        }
        let syntax = |s: &str| FailureReason::InvalidSyntax(s.to_owned());
        let (Some(sa), Some(ke), Some(nr)) = (p.sa(), p.ke(), p.nonce()) else {
            self.fail(
                syntax("IKE_SA_INIT response lacks SA, KE or Nonce"),
                None,
                None,
            );
            return;
        };
        if msg.header.spi_r == 0 || !(16..=256).contains(&nr.len()) {
            self.fail(syntax("bad responder SPI or nonce"), None, None);
            return;
        }
        let algs = match sa.proposals.as_slice() {
            [one] => IkeAlgorithms::from_wire(one),
            _ => None,
        };
        let acceptable = algs.filter(|a| {
            ike.ike_proposals.iter().any(|p| {
                p.encr.contains(&a.encr)
                    && p.prf.contains(&a.prf)
                    && p.dh.contains(&a.dh)
                    && a.integ.is_none_or(|i| p.integ.contains(&i))
            })
        });
        let Some(algs) = acceptable else {
            self.fail(FailureReason::NoProposalChosen, None, None);
            return;
        };
        let Some(dh) = self.dh.take() else {
            return;
        };
        if dh.group() != algs.dh || ke.group != wire_group(algs.dh) {
            self.fail(
                syntax("KE group differs from the chosen proposal"),
                None,
                None,
            );
            return;
        }
        let shared = match dh.agree(&ke.data) {
            Ok(s) => s,
            Err(e) => {
                self.fail(FailureReason::Local(e.to_string()), None, None);
                return;
            }
        };
        self.spi_r = msg.header.spi_r;
        self.nr = nr.to_vec();
        self.init_response = bytes.to_vec();
        self.peer_frag = ike.fragmentation
            && p.notify(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED)
                .is_some();
        self.peer_hashes = parse_hash_algs(p);
        if let Err(e) = self.derive_keys(algs, shared.as_bytes()) {
            self.fail(FailureReason::Local(e), None, None);
            return;
        }
        self.pending = None;
        self.nat_detected =
            ike.force_encap || natd_mismatch(p, self.spi_i, self.spi_r, remote, local);
        if self.nat_detected {
            // RFC 7296 2.23: float to the NAT-T port from IKE_AUTH on.
            self.local.set_port(ike.natt_port);
            self.remote.set_port(ike.natt_port);
            self.encap = true;
        }
        let payloads = match self.build_auth_request() {
            Ok(p) => p,
            Err(e) => {
                self.fail(FailureReason::Local(e), None, None);
                return;
            }
        };
        match self.send_request(now, ExchangeType::IKE_AUTH, RequestKind::Auth, payloads) {
            Ok(()) => self.state = SaState::AuthSent,
            Err(e) => self.fail(FailureReason::Local(e), None, None),
        }
    }

    // ---------------------------------------------------------------- protected messages

    fn handle_protected(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
        pool: Option<&mut dyn AddressPool>,
    ) {
        let Ok(parts) = open_parts(bytes) else {
            return;
        };
        let h = parts.header;
        if h.spi_i != self.spi_i || h.spi_r != self.spi_r {
            return;
        }
        // The Initiator flag names the original initiator of the sender.
        if h.flags.initiator() == (self.role == Role::Initiator) {
            return;
        }
        let Some(sk_in) = self.sk_in.as_ref() else {
            return;
        };
        let response = h.flags.response();
        if response {
            if self.pending.as_ref().map(|p| p.message_id) != Some(h.message_id) {
                return;
            }
        } else {
            if self
                .cached_response
                .as_ref()
                .is_some_and(|(id, _)| *id == h.message_id)
            {
                // A retransmitted request: answer once per retransmission (for fragmented
                // requests on fragment 1), after checking it is genuine.
                let first = parts.fragment.is_none_or(|f| f.number == 1);
                if first && sk_in.open(parts.aad, parts.body).is_ok() {
                    self.resend_cached();
                }
                return;
            }
            if h.message_id != self.expected_request_id {
                return;
            }
        }
        let Ok(plain) = sk_in.open(parts.aad, parts.body) else {
            return;
        };
        self.note_peer_alive(now);
        let (first, chain) = match parts.fragment {
            None => (parts.first_payload, plain),
            Some(pos) => {
                if !self.peer_frag {
                    return;
                }
                match self
                    .reassembler
                    .insert(h.message_id, pos, parts.first_payload, &plain)
                {
                    Ok(ReassemblyStatus::Complete(r)) => (r.first_payload, r.chain),
                    _ => return,
                }
            }
        };
        if !response {
            self.update_addresses(local, remote);
        }
        let exchange = h.exchange_type;
        let payloads = match decode_chain(first, &chain) {
            Ok(p) => p,
            Err(e) => {
                if !response {
                    self.refuse_request(
                        exchange,
                        h.message_id,
                        NotifyType::INVALID_SYNTAX,
                        Vec::new(),
                        FailureReason::InvalidSyntax(e.to_string()),
                    );
                } else {
                    self.fail(FailureReason::InvalidSyntax(e.to_string()), None, None);
                }
                return;
            }
        };
        if let Some(t) = payloads.unsupported_critical() {
            if !response {
                self.refuse_request(
                    exchange,
                    h.message_id,
                    NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD,
                    vec![t.0],
                    FailureReason::UnsupportedCritical(t),
                );
            } else {
                self.fail(FailureReason::UnsupportedCritical(t), None, None);
            }
            return;
        }
        if response {
            let kind = self.pending.take().map(|p| p.kind);
            match kind {
                Some(RequestKind::Auth) => self.process_auth_response(now, &payloads),
                Some(RequestKind::Delete) => self.close(CloseReason::LocalDelete),
                Some(RequestKind::DeleteChild) => {
                    if let Some((spi_in, spi_out)) = self.child.take() {
                        self.events
                            .push_back(Event::ChildSaDeleted { spi_in, spi_out });
                    }
                }
                _ => {}
            }
        } else {
            self.expected_request_id = self.expected_request_id.wrapping_add(1);
            match exchange {
                ExchangeType::IKE_AUTH
                    if self.role == Role::Responder && self.state == SaState::HalfOpen =>
                {
                    self.process_auth_request(h.message_id, &payloads, pool);
                }
                ExchangeType::INFORMATIONAL
                    if matches!(self.state, SaState::Established | SaState::Deleting) =>
                {
                    self.process_informational(h.message_id, &payloads);
                }
                ExchangeType::CREATE_CHILD_SA if self.state == SaState::Established => {
                    // Rekeying is not implemented yet: refuse politely, keep the SA.
                    self.send_response(
                        exchange,
                        h.message_id,
                        &[Payload::Notify(Notify::new(
                            NotifyType::NO_ADDITIONAL_SAS,
                            Vec::new(),
                        ))],
                    );
                }
                _ => {
                    self.send_response(
                        exchange,
                        h.message_id,
                        &[Payload::Notify(Notify::new(
                            NotifyType::INVALID_SYNTAX,
                            Vec::new(),
                        ))],
                    );
                }
            }
        }
    }

    /// Answers a request with an error notify; a failed IKE_AUTH also ends the SA.
    fn refuse_request(
        &mut self,
        exchange: ExchangeType,
        message_id: u32,
        notify: NotifyType,
        data: Vec<u8>,
        reason: FailureReason,
    ) {
        self.expected_request_id = self.expected_request_id.wrapping_add(1);
        self.send_response(
            exchange,
            message_id,
            &[Payload::Notify(Notify::new(notify, data))],
        );
        if exchange == ExchangeType::IKE_AUTH {
            self.fail(reason, Some(notify), None);
        }
    }

    /// NAT-T: follow the peer's address on authenticated requests (RFC 7296 2.23).
    fn update_addresses(&mut self, local: SocketAddr, remote: SocketAddr) {
        if (local, remote) == (self.local, self.remote) {
            return;
        }
        let natt = self.cfg.ike().natt_port;
        if !self.nat_detected && local.port() != natt {
            return;
        }
        self.local = local;
        self.remote = remote;
        self.encap = local.port() == natt;
        if self.state == SaState::Established {
            self.events
                .push_back(Event::AddressesChanged { local, remote });
        }
    }

    // ---------------------------------------------------------------- IKE_AUTH

    fn sign_auth(&self, signed: &[u8]) -> Result<Authentication, String> {
        let ike = self.cfg.ike();
        let key = &ike.local.key;
        let (classic_method, classic_scheme) = match key.key_type() {
            KeyType::Rsa => (
                AuthMethod::RSA_SIG,
                SignatureScheme::RsaPkcs1(HashAlg::Sha1),
            ),
            KeyType::EcdsaP256 => (
                AuthMethod::ECDSA_SHA256_P256,
                SignatureScheme::EcdsaP256Sha256Fixed,
            ),
            KeyType::EcdsaP384 => (
                AuthMethod::ECDSA_SHA384_P384,
                SignatureScheme::EcdsaP384Sha384Fixed,
            ),
        };
        let rfc7427 = [HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512]
            .into_iter()
            .filter(|h| self.peer_hashes.contains(h))
            .flat_map(|h| [SignatureScheme::RsaPkcs1(h), SignatureScheme::EcdsaDer(h)])
            .find(|s| key.supports(*s));
        let use_7427 = match ike.auth_method {
            AuthMethodPolicy::Classic => None,
            AuthMethodPolicy::Auto => rfc7427,
            AuthMethodPolicy::DigitalSignature => {
                Some(rfc7427.ok_or("peer supports no hash usable with our key")?)
            }
        };
        match use_7427 {
            Some(scheme) => {
                let sig = key.sign(scheme, signed).map_err(|e| e.to_string())?;
                Ok(Authentication {
                    method: AuthMethod::DIGITAL_SIGNATURE,
                    data: build_rfc7427_auth_data(scheme, &sig).map_err(|e| e.to_string())?,
                })
            }
            None => Ok(Authentication {
                method: classic_method,
                data: key
                    .sign(classic_scheme, signed)
                    .map_err(|e| e.to_string())?,
            }),
        }
    }

    fn signed_octets(&self, ours: bool, id: &Identification) -> Result<Vec<u8>, String> {
        let algs = self.algs.ok_or("no algorithms")?;
        let keys = self.keys.as_ref().ok_or("no keys")?;
        let initiator_side = (self.role == Role::Initiator) == ours;
        let (message, nonce, sk_p) = if initiator_side {
            (&self.init_request, &self.nr, &keys.sk_pi)
        } else {
            (&self.init_response, &self.ni, &keys.sk_pr)
        };
        Ok(auth_signed_octets(
            algs.prf,
            message,
            nonce,
            sk_p.as_bytes(),
            &IkeId::auth_octets(id),
        ))
    }

    fn cert_payloads(&self) -> Vec<Payload> {
        self.cfg
            .ike()
            .local
            .chain
            .iter()
            .map(|der| {
                Payload::Cert(ike_wire::Certificate {
                    encoding: CertEncoding::X509_SIG,
                    data: der.clone(),
                })
            })
            .collect()
    }

    /// Validates the peer's certificate, identity and AUTH payload.
    fn authenticate_peer(
        &mut self,
        payloads: &[Payload],
        id: &Identification,
    ) -> Result<String, FailureReason> {
        let ike = self.cfg.ike();
        let peer_id = IkeId::from_wire(id);
        let auth = payloads
            .auth()
            .ok_or_else(|| FailureReason::AuthPayload("missing AUTH payload".into()))?;
        let certs: Vec<&[u8]> = payloads
            .certs()
            .filter(|c| c.encoding == CertEncoding::X509_SIG)
            .map(|c| c.data.as_slice())
            .collect();
        let (ee, inter) = certs
            .split_first()
            .ok_or(FailureReason::PeerRejected(PeerRejection::NoCertificate))?;
        let validated = ike
            .validator
            .validate(&peer_id, ee, inter, self.unix_time)
            .map_err(FailureReason::PeerRejected)?;
        let signed = self
            .signed_octets(false, id)
            .map_err(FailureReason::Local)?;
        verify_auth(auth, &validated.spki_der, &signed).map_err(FailureReason::AuthPayload)?;
        self.peer_id = Some(peer_id);
        self.peer_auth_method = Some(auth.method);
        Ok(validated.subject)
    }

    fn build_auth_request(&mut self) -> Result<Vec<Payload>, String> {
        let RoleConfig::Initiator(cfg) = self.cfg.clone() else {
            return Err("not an initiator".into());
        };
        let idi = cfg.ike.local.id.to_wire();
        let signed = self.signed_octets(true, &idi)?;
        let auth = self.sign_auth(&signed)?;
        let mut out = vec![Payload::IdI(idi)];
        out.extend(self.cert_payloads());
        if cfg.initial_contact {
            out.push(Payload::Notify(Notify::new(
                NotifyType::INITIAL_CONTACT,
                Vec::new(),
            )));
        }
        let hashes = cfg.ike.validator.ca_key_hashes();
        if !hashes.is_empty() {
            out.push(Payload::CertReq(ike_wire::Certificate {
                encoding: CertEncoding::X509_SIG,
                data: hashes.concat(),
            }));
        }
        if let Some(r) = &cfg.remote_id {
            out.push(Payload::IdR(r.to_wire()));
        }
        out.push(Payload::Auth(auth));
        let mut attrs = Vec::new();
        if cfg.request_ipv4 {
            attrs.push(CfgAttribute::InternalIp4Address(None));
            attrs.push(CfgAttribute::InternalIp4Dns(None));
        }
        if cfg.request_ipv6 {
            attrs.push(CfgAttribute::InternalIp6Address(None));
            attrs.push(CfgAttribute::InternalIp6Dns(None));
        }
        if !attrs.is_empty() {
            out.push(Payload::Cp(Configuration {
                cfg_type: CfgType::CFG_REQUEST,
                attributes: attrs,
            }));
        }
        let proposals = cfg
            .ike
            .esp_proposals
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.to_wire(
                    u8::try_from(i + 1).unwrap_or(u8::MAX),
                    self.child_spi_in,
                    false,
                )
            })
            .collect();
        out.push(Payload::Sa(SecurityAssociation { proposals }));
        out.push(Payload::TsI(cfg.ts_local.clone()));
        out.push(Payload::TsR(cfg.ts_remote.clone()));
        if cfg.mobike {
            out.push(Payload::Notify(Notify::new(
                NotifyType::MOBIKE_SUPPORTED,
                Vec::new(),
            )));
        }
        Ok(out)
    }

    fn established_info(&self, subject: String) -> Option<IkeSaInfo> {
        Some(IkeSaInfo {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            initiator: self.role == Role::Initiator,
            peer_id: self.peer_id.clone()?,
            peer_subject: subject,
            peer_auth_method: self.peer_auth_method?,
            initial_contact: self.peer_initial_contact,
            algorithms: self.algs?,
            local: self.local,
            remote: self.remote,
            nat_detected: self.nat_detected,
        })
    }

    fn process_auth_request(
        &mut self,
        message_id: u32,
        payloads: &[Payload],
        pool: Option<&mut dyn AddressPool>,
    ) {
        let RoleConfig::Responder(cfg) = self.cfg.clone() else {
            return;
        };
        let Some(idi) = payloads.id_i() else {
            self.refuse_auth(
                message_id,
                NotifyType::INVALID_SYNTAX,
                FailureReason::InvalidSyntax("IKE_AUTH without IDi".into()),
            );
            return;
        };
        self.peer_initial_contact = payloads.notify(NotifyType::INITIAL_CONTACT).is_some();
        let subject = match self.authenticate_peer(payloads, idi) {
            Ok(s) => s,
            Err(reason) => {
                self.refuse_auth(message_id, NotifyType::AUTHENTICATION_FAILED, reason);
                return;
            }
        };
        let idr = cfg.ike.local.id.to_wire();
        let auth = match self
            .signed_octets(true, &idr)
            .and_then(|s| self.sign_auth(&s))
        {
            Ok(a) => a,
            Err(e) => {
                self.refuse_auth(
                    message_id,
                    NotifyType::AUTHENTICATION_FAILED,
                    FailureReason::Local(e),
                );
                return;
            }
        };
        let mut out = vec![Payload::IdR(idr)];
        out.extend(self.cert_payloads());
        out.push(Payload::Auth(auth));
        let child = self.responder_child(&cfg, payloads, pool);
        match &child {
            Ok(Some((child_payloads, _))) => out.extend(child_payloads.iter().cloned()),
            Ok(None) => {}
            Err((notify, _)) => out.push(Payload::Notify(Notify::new(*notify, Vec::new()))),
        }
        if cfg.mobike && payloads.notify(NotifyType::MOBIKE_SUPPORTED).is_some() {
            out.push(Payload::Notify(Notify::new(
                NotifyType::MOBIKE_SUPPORTED,
                Vec::new(),
            )));
        }
        self.send_response(ExchangeType::IKE_AUTH, message_id, &out);
        if self.state == SaState::Closed {
            return;
        }
        self.state = SaState::Established;
        if let Some(info) = self.established_info(subject) {
            self.events.push_back(Event::IkeSaEstablished(info));
        }
        match child {
            Ok(Some((_, child_sa))) => {
                self.child = Some((child_sa.spi_in, child_sa.spi_out));
                self.events.push_back(Event::ChildSaEstablished(child_sa));
            }
            Ok(None) => {}
            Err((notify, reason)) => self.events.push_back(Event::Failed(Failure {
                reason,
                notify_sent: Some(notify),
                notify_received: None,
            })),
        }
    }

    fn refuse_auth(&mut self, message_id: u32, notify: NotifyType, reason: FailureReason) {
        self.send_response(
            ExchangeType::IKE_AUTH,
            message_id,
            &[Payload::Notify(Notify::new(notify, Vec::new()))],
        );
        self.fail(reason, Some(notify), None);
    }

    /// Responder side of the first Child SA: CP, proposal, TS narrowing, keys.
    #[allow(clippy::type_complexity)]
    fn responder_child(
        &mut self,
        cfg: &ResponderConfig,
        payloads: &[Payload],
        pool: Option<&mut dyn AddressPool>,
    ) -> Result<Option<(Vec<Payload>, Box<ChildSa>)>, (NotifyType, FailureReason)> {
        let cp = payloads.cp().filter(|c| c.cfg_type == CfgType::CFG_REQUEST);
        let Some(sa) = payloads.sa() else {
            return Ok(None);
        };
        if cp.is_none() && cfg.require_virtual_ip {
            return Err((NotifyType::FAILED_CP_REQUIRED, FailureReason::CpRequired));
        }
        let (Some(tsi), Some(tsr)) = (payloads.ts_i(), payloads.ts_r()) else {
            return Err((NotifyType::TS_UNACCEPTABLE, FailureReason::TsUnacceptable));
        };
        let chosen = cfg.ike.esp_proposals.iter().find_map(|ours| {
            sa.proposals
                .iter()
                .find_map(|peer| ours.select(peer).map(|(a, spi)| (a, spi, peer.number)))
        });
        let Some((algs, spi_out, number)) = chosen else {
            return Err((
                NotifyType::NO_PROPOSAL_CHOSEN,
                FailureReason::NoProposalChosen,
            ));
        };
        let spi_in = esp_spi(&self.provider).map_err(|e| {
            (
                NotifyType::NO_PROPOSAL_CHOSEN,
                FailureReason::Local(e.to_string()),
            )
        })?;
        let keys = self
            .child_keys(algs)
            .map_err(|e| (NotifyType::NO_PROPOSAL_CHOSEN, FailureReason::Local(e)))?;
        // Virtual IPs.
        let mut pool = pool;
        let mut vips = Vec::new();
        let peer = self.peer_id.clone().unwrap_or(IkeId::Other {
            id_type: ike_wire::IdType(0),
            data: Vec::new(),
        });
        if let Some(cp) = cp {
            let want_v4 = cp
                .attributes
                .iter()
                .any(|a| matches!(a, CfgAttribute::InternalIp4Address(_)));
            let want_v6 = cp
                .attributes
                .iter()
                .any(|a| matches!(a, CfgAttribute::InternalIp6Address(_)));
            if want_v4 || want_v6 {
                if let Some(pool) = pool.as_deref_mut() {
                    for (want, fam) in [(want_v4, AddressFamily::V4), (want_v6, AddressFamily::V6)]
                    {
                        if want && let Some(a) = pool.allocate(&peer, fam) {
                            vips.push(a);
                        }
                    }
                }
                if vips.is_empty() {
                    return Err((
                        NotifyType::INTERNAL_ADDRESS_FAILURE,
                        FailureReason::AddressPoolExhausted,
                    ));
                }
            }
        }
        let allowed_remote: Vec<TrafficSelector> = if vips.is_empty() {
            vec![TrafficSelector::ANY_V4, TrafficSelector::ANY_V6]
        } else {
            vips.iter().map(|a| ts::host(*a)).collect()
        };
        let tsi_n = ts::narrow(tsi, &allowed_remote);
        let tsr_n = ts::narrow(tsr, &cfg.local_ts);
        if tsi_n.is_empty() || tsr_n.is_empty() {
            if let Some(pool) = pool {
                for a in vips {
                    pool.release(&peer, a);
                }
            }
            return Err((NotifyType::TS_UNACCEPTABLE, FailureReason::TsUnacceptable));
        }
        self.assigned.extend(vips.iter().copied());
        let mut attrs = Vec::new();
        let mut dns = Vec::new();
        for v in &vips {
            match v {
                IpAddr::V4(a) => attrs.push(CfgAttribute::InternalIp4Address(Some(*a))),
                IpAddr::V6(a) => attrs.push(CfgAttribute::InternalIp6Address(Some((*a, 128)))),
            }
        }
        for d in &cfg.dns_servers {
            let family_assigned = vips.iter().any(|v| v.is_ipv4() == d.is_ipv4());
            if !family_assigned {
                continue;
            }
            dns.push(*d);
            match d {
                IpAddr::V4(a) => attrs.push(CfgAttribute::InternalIp4Dns(Some(*a))),
                IpAddr::V6(a) => attrs.push(CfgAttribute::InternalIp6Dns(Some(*a))),
            }
        }
        for net in &cfg.pushed_subnets {
            match net {
                IpNet::V4(n) => attrs.push(CfgAttribute::InternalIp4Subnet(Some((
                    n.addr(),
                    n.netmask(),
                )))),
                IpNet::V6(n) => attrs.push(CfgAttribute::InternalIp6Subnet(Some((
                    n.addr(),
                    n.prefix_len(),
                )))),
            }
        }
        let mut out = Vec::new();
        if cp.is_some() {
            out.push(Payload::Cp(Configuration {
                cfg_type: CfgType::CFG_REPLY,
                attributes: attrs,
            }));
        }
        out.push(Payload::Sa(SecurityAssociation {
            proposals: vec![algs.to_wire(number, spi_in)],
        }));
        out.push(Payload::TsI(tsi_n.clone()));
        out.push(Payload::TsR(tsr_n.clone()));
        let child = Box::new(ChildSa {
            ike_spi: self.local_spi(),
            spi_in,
            spi_out,
            algorithms: algs,
            encr_key_in: keys.encr_i,
            integ_key_in: keys.integ_i,
            encr_key_out: keys.encr_r,
            integ_key_out: keys.integ_r,
            ts_local: tsr_n,
            ts_remote: tsi_n,
            virtual_ips: vips,
            dns_servers: dns,
            subnets: cfg.pushed_subnets.clone(),
            local: self.local,
            remote: self.remote,
            udp_encap: self.encap,
        });
        Ok(Some((out, child)))
    }

    fn child_keys(&self, algs: EspAlgorithms) -> Result<ChildSaKeys, String> {
        let ike = self.algs.ok_or("no IKE algorithms")?;
        let keys = self.keys.as_ref().ok_or("no keys")?;
        ChildSaKeys::derive(
            ike.prf,
            keys.sk_d.as_bytes(),
            None,
            &self.ni,
            &self.nr,
            algs.encr.key_material_len(),
            algs.integ.map_or(0, |i| i.key_len()),
        )
        .map_err(|e| e.to_string())
    }

    fn process_auth_response(&mut self, now: Instant, payloads: &[Payload]) {
        let RoleConfig::Initiator(cfg) = self.cfg.clone() else {
            return;
        };
        let Some(idr) = payloads.id_r() else {
            let received = payloads.error_notify().map(|n| n.notify_type);
            let reason = received.map_or(
                FailureReason::InvalidSyntax("IKE_AUTH response without IDr".into()),
                FailureReason::PeerNotify,
            );
            self.fail(reason, None, received);
            return;
        };
        if let Some(want) = &cfg.remote_id
            && IkeId::from_wire(idr) != *want
        {
            self.fail(
                FailureReason::PeerRejected(PeerRejection::UnexpectedIdentity(
                    IkeId::from_wire(idr).to_string(),
                )),
                None,
                None,
            );
            return;
        }
        let subject = match self.authenticate_peer(payloads, idr) {
            Ok(s) => s,
            Err(reason) => {
                // Tell the responder, which considers the SA established (RFC 7296 2.21.2);
                // fire and forget, we are closing anyway.
                let notify = [Payload::Notify(Notify::new(
                    NotifyType::AUTHENTICATION_FAILED,
                    Vec::new(),
                ))];
                let id = self.next_request_id;
                if let Ok(datagrams) = self.protect(ExchangeType::INFORMATIONAL, id, false, &notify)
                {
                    for d in datagrams {
                        self.push_transmit(d);
                    }
                }
                self.fail(reason, Some(NotifyType::AUTHENTICATION_FAILED), None);
                return;
            }
        };
        self.state = SaState::Established;
        if let Some(info) = self.established_info(subject) {
            self.events.push_back(Event::IkeSaEstablished(info));
        }
        match self.initiator_child(&cfg, payloads) {
            Ok(child) => {
                self.child = Some((child.spi_in, child.spi_out));
                self.events.push_back(Event::ChildSaEstablished(child));
            }
            Err((reason, received)) => {
                // Without its Child SA the IKE SA is useless to a remote-access client.
                self.events.push_back(Event::Failed(Failure {
                    reason,
                    notify_sent: None,
                    notify_received: received,
                }));
                self.delete(now);
            }
        }
    }

    fn initiator_child(
        &self,
        cfg: &InitiatorConfig,
        payloads: &[Payload],
    ) -> Result<Box<ChildSa>, (FailureReason, Option<NotifyType>)> {
        if let Some(n) = payloads.error_notify() {
            let reason = match n.notify_type {
                NotifyType::NO_PROPOSAL_CHOSEN => FailureReason::NoProposalChosen,
                NotifyType::TS_UNACCEPTABLE => FailureReason::TsUnacceptable,
                NotifyType::INTERNAL_ADDRESS_FAILURE => FailureReason::AddressPoolExhausted,
                NotifyType::FAILED_CP_REQUIRED => FailureReason::CpRequired,
                t => FailureReason::PeerNotify(t),
            };
            return Err((reason, Some(n.notify_type)));
        }
        let syntax = |s: &str| (FailureReason::InvalidSyntax(s.to_owned()), None);
        let (Some(sa), Some(tsi), Some(tsr)) = (payloads.sa(), payloads.ts_i(), payloads.ts_r())
        else {
            return Err(syntax("no Child SA in IKE_AUTH response"));
        };
        let (algs, spi_out) = match sa.proposals.as_slice() {
            [one] => EspAlgorithms::from_wire(one).ok_or_else(|| syntax("bad ESP proposal"))?,
            _ => return Err(syntax("ESP reply must have one proposal")),
        };
        let acceptable = cfg.ike.esp_proposals.iter().any(|p| {
            p.encr.contains(&algs.encr)
                && algs.integ.is_none_or(|i| p.integ.contains(&i))
                && p.esn.contains(&algs.esn)
        });
        if !acceptable {
            return Err((FailureReason::NoProposalChosen, None));
        }
        if tsi.is_empty()
            || tsr.is_empty()
            || !tsi.iter().all(|t| ts::is_subset(t, &cfg.ts_local))
            || !tsr.iter().all(|t| ts::is_subset(t, &cfg.ts_remote))
        {
            return Err((FailureReason::TsUnacceptable, None));
        }
        let mut vips = Vec::new();
        let mut dns = Vec::new();
        let mut subnets = Vec::new();
        if let Some(cp) = payloads.cp().filter(|c| c.cfg_type == CfgType::CFG_REPLY) {
            for a in &cp.attributes {
                match a {
                    CfgAttribute::InternalIp4Address(Some(v)) => vips.push(IpAddr::V4(*v)),
                    CfgAttribute::InternalIp6Address(Some((v, _))) => vips.push(IpAddr::V6(*v)),
                    CfgAttribute::InternalIp4Dns(Some(v)) => dns.push(IpAddr::V4(*v)),
                    CfgAttribute::InternalIp6Dns(Some(v)) => dns.push(IpAddr::V6(*v)),
                    CfgAttribute::InternalIp4Subnet(Some((a, m))) => {
                        if let Ok(n) = Ipv4Net::with_netmask(*a, *m) {
                            subnets.push(IpNet::V4(n.trunc()));
                        }
                    }
                    CfgAttribute::InternalIp6Subnet(Some((a, p))) => {
                        if let Ok(n) = Ipv6Net::new(*a, *p) {
                            subnets.push(IpNet::V6(n.trunc()));
                        }
                    }
                    _ => {}
                }
            }
        }
        if (cfg.request_ipv4 || cfg.request_ipv6) && vips.is_empty() {
            return Err((FailureReason::AddressPoolExhausted, None));
        }
        let keys = self
            .child_keys(algs)
            .map_err(|e| (FailureReason::Local(e), None))?;
        Ok(Box::new(ChildSa {
            ike_spi: self.local_spi(),
            spi_in: self.child_spi_in,
            spi_out,
            algorithms: algs,
            encr_key_in: keys.encr_r,
            integ_key_in: keys.integ_r,
            encr_key_out: keys.encr_i,
            integ_key_out: keys.integ_i,
            ts_local: tsi.to_vec(),
            ts_remote: tsr.to_vec(),
            virtual_ips: vips,
            dns_servers: dns,
            subnets,
            local: self.local,
            remote: self.remote,
            udp_encap: self.encap,
        }))
    }

    // ---------------------------------------------------------------- INFORMATIONAL

    fn process_informational(&mut self, message_id: u32, payloads: &[Payload]) {
        if payloads.notify(NotifyType::AUTHENTICATION_FAILED).is_some() {
            // The initiator did not accept our AUTH.
            self.send_response(ExchangeType::INFORMATIONAL, message_id, &[]);
            let n = NotifyType::AUTHENTICATION_FAILED;
            self.fail(FailureReason::PeerNotify(n), None, Some(n));
            return;
        }
        let mut reply = Vec::new();
        let mut ike_deleted = false;
        for p in payloads {
            let Payload::Delete(d) = p else {
                continue;
            };
            if d.protocol == ProtocolId::IKE {
                ike_deleted = true;
            } else if d.protocol == ProtocolId::ESP
                && let Some((spi_in, spi_out)) = self.child
                && d.spis.iter().any(|s| s.as_slice() == spi_out.to_be_bytes())
            {
                reply.push(Payload::Delete(Delete::esp(&[spi_in])));
                self.child = None;
                self.events
                    .push_back(Event::ChildSaDeleted { spi_in, spi_out });
            }
        }
        if ike_deleted {
            self.send_response(ExchangeType::INFORMATIONAL, message_id, &[]);
            self.close(CloseReason::PeerDelete);
            return;
        }
        self.send_response(ExchangeType::INFORMATIONAL, message_id, &reply);
    }
}

/// True when a NAT_DETECTION_* hash in `payloads` does not match the addresses we see:
/// `peer` is the sender's address as seen by us, `ours` our address.
fn natd_mismatch(
    payloads: &[Payload],
    spi_i: u64,
    spi_r: u64,
    peer: SocketAddr,
    ours: SocketAddr,
) -> bool {
    let src: Vec<&Notify> = payloads
        .notifies()
        .filter(|n| n.notify_type == NotifyType::NAT_DETECTION_SOURCE_IP)
        .collect();
    let dst = payloads.notify(NotifyType::NAT_DETECTION_DESTINATION_IP);
    if src.is_empty() || dst.is_none() {
        // The peer does not do NAT detection.
        return false;
    }
    let peer_hash = natd_hash(spi_i, spi_r, peer);
    let peer_ok = src.iter().any(|n| n.data == peer_hash);
    let ours_ok = dst.is_some_and(|n| n.data == natd_hash(spi_i, spi_r, ours));
    !(peer_ok && ours_ok)
}

fn verify_auth(auth: &Authentication, spki: &[u8], signed: &[u8]) -> Result<(), String> {
    let (scheme, sig) = match auth.method {
        AuthMethod::RSA_SIG | AuthMethod::ECDSA_SHA256_P256 | AuthMethod::ECDSA_SHA384_P384 => (
            SignatureScheme::for_auth_method(auth.method.0).ok_or("unknown method")?,
            auth.data.as_slice(),
        ),
        AuthMethod::DIGITAL_SIGNATURE => {
            split_rfc7427_auth_data(&auth.data).map_err(|e| e.to_string())?
        }
        m => return Err(format!("unsupported AUTH method {m}")),
    };
    verify(scheme, spki, signed, sig).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use ike_wire::UnknownPayload;
    use ipsec_crypto::SigningKey;
    use pki::{CertKind, CertificateAuthority, KeyAlgorithm, Validity};

    use super::*;
    use crate::config::LocalCredentials;
    use crate::identity::{PeerRole, PkiValidator};

    const START: u64 = 1_767_225_600;

    /// A client SA and a half-open server SA after IKE_SA_INIT, with the client's keys ready.
    fn after_init() -> (IkeSa, IkeSa, Instant) {
        let validity = Validity::days_from(UNIX_EPOCH + Duration::from_secs(START), 365);
        let ca = CertificateAuthority::new_root("root", KeyAlgorithm::P256, validity).unwrap();
        let creds = |kind, name: &str| {
            let id = ca.issue(kind, name, KeyAlgorithm::P256, validity).unwrap();
            LocalCredentials {
                id: IkeId::Fqdn(name.into()),
                key: Arc::new(SigningKey::from_pkcs8_der(id.key.pkcs8_der()).unwrap()),
                chain: vec![id.chain[0].der().as_ref().to_vec()],
            }
        };
        let trust = pki::TrustStore::with_roots([ca.cert().clone()]).unwrap();
        let client_cfg = InitiatorConfig::new(IkeConfig::new(
            creds(CertKind::Machine, "c.test"),
            Arc::new(PkiValidator {
                trust: trust.clone(),
                role: PeerRole::Gateway {
                    server_name: "gw.test".into(),
                },
                expected_id: None,
            }),
        ));
        let server_cfg = ResponderConfig::new(IkeConfig::new(
            creds(CertKind::Gateway, "gw.test"),
            Arc::new(PkiValidator {
                trust,
                role: PeerRole::Client,
                expected_id: None,
            }),
        ));
        let now = Instant::now();
        let (c_addr, s_addr): (SocketAddr, SocketAddr) = (
            "198.51.100.2:500".parse().unwrap(),
            "203.0.113.2:500".parse().unwrap(),
        );
        let mut client = IkeSa::connect(
            Arc::new(client_cfg),
            Arc::new(Provider::deterministic(b"c")),
            now,
            c_addr,
            s_addr,
        )
        .unwrap();
        let req = client.poll_transmit().unwrap();
        let msg = Message::decode(&req.bytes).unwrap();
        let InitOutcome::Created(mut server) = IkeSa::respond_init(
            Arc::new(server_cfg),
            Arc::new(Provider::deterministic(b"s")),
            now,
            s_addr,
            c_addr,
            &msg,
            &req.bytes,
            7,
        ) else {
            panic!("no SA");
        };
        let resp = server.poll_transmit().unwrap();
        client.handle_datagram(now, c_addr, s_addr, &resp.bytes);
        // Discard the client's real IKE_AUTH request: the tests send their own.
        while client.poll_transmit().is_some() {}
        (client, *server, now)
    }

    /// Sends `payloads` as the client's IKE_AUTH request; returns the server's reply payloads.
    fn auth_with(payloads: &[Payload]) -> (Vec<Payload>, IkeSa) {
        let (client, mut server, now) = after_init();
        let datagrams = client
            .protect(ExchangeType::IKE_AUTH, 1, false, payloads)
            .unwrap();
        let (local, remote) = (client.local, client.remote);
        for d in datagrams {
            server.handle(now, remote, local, &d, None);
        }
        let reply = server.poll_transmit().expect("a reply");
        let parts = open_parts(&reply.bytes).unwrap();
        let plain = client
            .sk_in
            .as_ref()
            .unwrap()
            .open(parts.aad, parts.body)
            .unwrap();
        (decode_chain(parts.first_payload, &plain).unwrap(), server)
    }

    fn failure_of(server: &mut IkeSa) -> Failure {
        std::iter::from_fn(|| server.poll_event())
            .find_map(|e| match e {
                Event::Failed(f) => Some(f),
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn unsupported_critical_payload_inside_sk() {
        let (reply, mut server) = auth_with(&[Payload::Unknown(UnknownPayload {
            payload_type: PayloadType(222),
            critical: true,
            body: vec![0; 4],
        })]);
        let n = reply
            .notify(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD)
            .unwrap();
        assert_eq!(n.data, [222]);
        let f = failure_of(&mut server);
        assert_eq!(
            f.notify_sent,
            Some(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD)
        );
        assert!(server.is_closed());
    }

    #[test]
    fn malformed_inner_chain_is_invalid_syntax() {
        // A "SA payload" whose body is not a proposal.
        let (reply, mut server) = auth_with(&[Payload::Unknown(UnknownPayload {
            payload_type: PayloadType::SA,
            critical: false,
            body: vec![0xff; 3],
        })]);
        assert!(reply.notify(NotifyType::INVALID_SYNTAX).is_some());
        assert!(matches!(
            failure_of(&mut server).reason,
            FailureReason::InvalidSyntax(_)
        ));
    }

    #[test]
    fn ike_auth_without_idi_is_invalid_syntax() {
        let (reply, mut server) = auth_with(&[Payload::Notify(Notify::new(
            NotifyType::INITIAL_CONTACT,
            Vec::new(),
        ))]);
        assert!(reply.notify(NotifyType::INVALID_SYNTAX).is_some());
        assert_eq!(
            failure_of(&mut server).notify_sent,
            Some(NotifyType::INVALID_SYNTAX)
        );
    }

    #[test]
    fn eap_or_psk_instead_of_a_certificate_is_authentication_failed() {
        let id = IkeId::Fqdn("c.test".into()).to_wire();
        let (reply, mut server) = auth_with(&[
            Payload::IdI(id),
            Payload::Auth(Authentication {
                method: AuthMethod::SHARED_KEY_MIC,
                data: vec![0; 32],
            }),
        ]);
        assert!(reply.notify(NotifyType::AUTHENTICATION_FAILED).is_some());
        assert_eq!(
            failure_of(&mut server).reason,
            FailureReason::PeerRejected(PeerRejection::NoCertificate)
        );
    }

    #[test]
    fn tampered_sk_payload_is_dropped_without_answer() {
        let (client, mut server, now) = after_init();
        let mut d = client
            .protect(ExchangeType::IKE_AUTH, 1, false, &[])
            .unwrap()
            .remove(0);
        let last = d.len() - 1;
        d[last] ^= 1;
        server.handle(now, client.remote, client.local, &d, None);
        assert!(server.poll_transmit().is_none());
        assert_eq!(server.state(), SaState::HalfOpen);
    }
}
