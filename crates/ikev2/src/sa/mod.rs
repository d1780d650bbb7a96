//! One IKE SA: the IKE_SA_INIT / IKE_AUTH / INFORMATIONAL state machine for both roles.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use ike_wire::{
    AuthMethod, Delete, ExchangeType, Flags, FragmentPosition, Header, Message, Notify, NotifyType,
    Payload, PayloadType, Payloads, Protection, ReassemblyLimits, decode_chain, encode_chain,
    open_parts, seal_prefix,
};
use ipsec_crypto::{DhGroup, HashAlg, IkeSaKeys, Provider, SkCipher};

use crate::config::{AddressPool, IkeConfig, InitiatorConfig, ResponderConfig};
use crate::event::{CloseReason, Event, Failure, FailureReason, Transmit};
use crate::identity::IkeId;
use crate::proposal::IkeAlgorithms;
use error::{ConfigFault, SaError};
use handshake::Handshake;
use rekey::{ChildState, Rekeying, RetiredSa};
use window::{MessageWindow, Retransmission};

mod auth;
mod eap;
mod eap_relay;
pub use eap_relay::RELAYED as EAP_RELAYED;
mod error;
mod handshake;
mod informational;
mod init;
mod mobike;
mod rekey;
#[cfg(test)]
mod tests;
mod window;

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
pub enum IkeSaState {
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
    /// Delete of the Child SA with this inbound SPI.
    DeleteChild(u32),
    /// CREATE_CHILD_SA; its state is in `IkeSa::rekeying`.
    Rekey,
    /// MOBIKE UPDATE_SA_ADDRESSES; its COOKIE2 is in `IkeSa::update_cookie2`.
    UpdateAddresses,
}

/// Result of a responder's first look at an IKE_SA_INIT request.
#[derive(Debug)]
pub(crate) enum InitOutcome {
    /// A new half-open SA (its response is queued).
    Created(Box<IkeSa>),
    /// A stateless reply (error notify) to send back.
    Reply(Vec<u8>),
    /// INVALID_KE_PAYLOAD naming a cheaper group the initiator offers (we are under load).
    CheaperGroup(Vec<u8>),
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
    /// We are the original initiator of the *current* IKE SA (flips when the peer rekeys an
    /// IKE SA we initiated, or we rekey one we answered: RFC 7296 2.18).
    initiator: bool,
    cfg: RoleConfig,
    provider: Arc<Provider>,
    state: IkeSaState,
    spi_i: u64,
    spi_r: u64,
    local: SocketAddr,
    remote: SocketAddr,
    nat_detected: bool,
    encap: bool,
    /// IKE_SA_INIT and IKE_AUTH in progress; `None` once established.
    handshake: Option<Box<Handshake>>,
    algs: Option<IkeAlgorithms>,
    keys: Option<IkeSaKeys>,
    sk_out: Option<SkCipher>,
    sk_in: Option<SkCipher>,
    peer_frag: bool,
    peer_hashes: Vec<HashAlg>,
    window: MessageWindow,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    child_spi_in: u32,
    /// The endpoint's inbound SPIs in use (a set of its own until the SA joins one).
    spis: SpiSet,
    /// The inbound SPIs this SA allocated and still holds.
    own_spis: Vec<u32>,
    children: Vec<ChildState>,
    rekeying: Option<Rekeying>,
    retired: Option<RetiredSa>,
    ike_rekey_at: Option<Instant>,
    ike_expire_at: Option<Instant>,
    peer_id: Option<IkeId>,
    /// The identity the peer claims, before it is authenticated (for refusal logs).
    claimed_peer: Option<IkeId>,
    peer_chain: Option<pki::ChainRecord>,
    /// The peer's policy group (responder), as the validator chose it.
    peer_policy: Option<Arc<crate::PeerPolicy>>,
    peer_auth_method: Option<AuthMethod>,
    /// When the first IKE_SA_INIT was sent or received (for the handshake's duration).
    started: Option<Instant>,
    unix_time: u64,
    assigned: Vec<IpAddr>,
    last_rx: Option<Instant>,
    peer_initial_contact: bool,
    /// The TLS version and suite an EAP-TLS authentication used.
    eap_tls: Option<String>,
    /// Both sides announced MOBIKE_SUPPORTED (RFC 4555).
    mobike: bool,
    /// The caller says no path to the peer exists (DPD waits, retransmissions don't fail).
    path_lost: bool,
    /// Initiator: UPDATE_SA_ADDRESSES is due once no other request is outstanding.
    roam_requested: Option<Instant>,
    /// The COOKIE2 of our outstanding UPDATE_SA_ADDRESSES.
    update_cookie2: Option<[u8; 16]>,
    /// The peer answered our outstanding request with INVALID_IKE_SPI (a hint only).
    peer_lost_sa: bool,
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
    /// The crypto provider failed (randomness, DH key generation).
    #[error("crypto: {0}")]
    Crypto(#[from] ipsec_crypto::CryptoError),
    /// Encoding the IKE_SA_INIT request failed.
    #[error("encoding: {0}")]
    Encode(#[from] ike_wire::EncodeError),
}

fn nonzero_u64(p: &Provider) -> Result<u64, ipsec_crypto::CryptoError> {
    loop {
        let v = u64::from_be_bytes(p.random_array()?);
        if v != 0 {
            return Ok(v);
        }
    }
}

/// The inbound ESP SPIs in use by every SA of one endpoint: a new one is never one of them
/// (a random pick collides with some installed SA about 1% of the time at 10,000 SAs, and
/// the data plane would then take the newer SA's packets for the older's).
#[derive(Debug, Clone, Default)]
pub(crate) struct SpiSet(Arc<std::sync::Mutex<std::collections::HashSet<u32>>>);

impl SpiSet {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<u32>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A fresh SPI above the reserved range (1-255, RFC 4303), unused in this set.
    fn allocate(&self, p: &Provider) -> Result<u32, ipsec_crypto::CryptoError> {
        loop {
            let v = u32::from_be_bytes(p.random_array()?);
            if v > 255 && self.lock().insert(v) {
                return Ok(v);
            }
        }
    }

    fn release(&self, spi: u32) {
        self.lock().remove(&spi);
    }

    /// How many SPIs are in use (for tests).
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
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

/// The header of a protected message of the IKE SA `spis`; `initiator`: we are its original
/// initiator.
fn header_for(
    spis: (u64, u64),
    initiator: bool,
    exchange: ExchangeType,
    message_id: u32,
    response: bool,
) -> Header {
    let mut flags = Flags(0);
    if initiator {
        flags = flags | Flags::INITIATOR;
    }
    if response {
        flags = flags | Flags::RESPONSE;
    }
    Header::new(spis.0, spis.1, exchange, flags, message_id)
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

impl Drop for IkeSa {
    fn drop(&mut self) {
        for spi in self.own_spis.drain(..) {
            self.spis.release(spi);
        }
    }
}

impl IkeSa {
    /// A fresh inbound SPI for a Child SA, unique in the endpoint.
    pub(super) fn new_child_spi(&mut self) -> Result<u32, ipsec_crypto::CryptoError> {
        let spi = self.spis.allocate(&self.provider)?;
        self.own_spis.push(spi);
        Ok(spi)
    }

    /// The Child SA with inbound `spi` is gone: its SPI may be used again.
    pub(super) fn release_child_spi(&mut self, spi: u32) {
        if let Some(i) = self.own_spis.iter().position(|s| *s == spi) {
            self.own_spis.swap_remove(i);
            self.spis.release(spi);
        }
    }

    /// Moves this SA's SPIs into the endpoint's set; an SPI some other SA already holds (only
    /// possible for an initiator's first Child SA, before IKE_AUTH carries it) is replaced.
    pub(crate) fn join_spis(&mut self, shared: &SpiSet) -> Result<(), ipsec_crypto::CryptoError> {
        let mine = std::mem::take(&mut self.own_spis);
        for spi in &mine {
            self.spis.release(*spi);
        }
        self.spis = shared.clone();
        for spi in mine {
            if self.spis.lock().insert(spi) {
                self.own_spis.push(spi);
            } else if spi == self.child_spi_in
                && matches!(self.state, IkeSaState::HalfOpen | IkeSaState::InitSent)
            {
                // Not sent to the peer yet (it goes in IKE_AUTH): another one will do.
                self.child_spi_in = self.new_child_spi()?;
            }
        }
        Ok(())
    }
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
        let group = ike
            .ike_proposals
            .first()
            .and_then(|p| p.dh.first().copied())
            .ok_or(ConnectError::NoProposals)?;
        let spi_i = nonzero_u64(&provider)?;
        let ni = provider.random_vec(ike.nonce_len.max(16))?;
        let dh = provider.generate_dh(group)?;
        let deadline = now + ike.establish_timeout;
        let mut sa = Self::blank(
            Role::Initiator,
            RoleConfig::Initiator(cfg.clone()),
            provider,
            local,
            remote,
        );
        sa.spi_i = spi_i;
        sa.child_spi_in = sa.new_child_spi()?;
        sa.started = Some(now);
        let request = sa.init_request(&ni, None, &dh)?;
        sa.handshake = Some(Box::new(Handshake {
            ni,
            dh: Some(dh),
            establish_deadline: Some(deadline),
            ..Handshake::default()
        }));
        sa.send_init_request(now, request);
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
            initiator: role == Role::Initiator,
            cfg,
            provider,
            state: match role {
                Role::Initiator => IkeSaState::InitSent,
                Role::Responder => IkeSaState::HalfOpen,
            },
            spi_i: 0,
            spi_r: 0,
            local,
            remote,
            nat_detected: false,
            encap: false,
            handshake: Some(Box::default()),
            algs: None,
            keys: None,
            sk_out: None,
            sk_in: None,
            peer_frag: false,
            peer_hashes: Vec::new(),
            window: MessageWindow::new(ReassemblyLimits::default()),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            child_spi_in: 0,
            spis: SpiSet::default(),
            own_spis: Vec::new(),
            children: Vec::new(),
            rekeying: None,
            retired: None,
            ike_rekey_at: None,
            ike_expire_at: None,
            peer_id: None,
            claimed_peer: None,
            peer_chain: None,
            peer_policy: None,
            peer_auth_method: None,
            started: None,
            unix_time: 0,
            assigned: Vec::new(),
            last_rx: None,
            peer_initial_contact: false,
            eap_tls: None,
            mobike: false,
            path_lost: false,
            roam_requested: None,
            update_cookie2: None,
            peer_lost_sa: false,
        }
    }

    // ---------------------------------------------------------------- public API

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Current state.
    pub fn state(&self) -> IkeSaState {
        self.state
    }

    /// Our SPI (the key an [`crate::Endpoint`] files this SA under).
    /// Changes when the IKE SA is rekeyed ([`Event::IkeSaRekeyed`]).
    pub fn local_spi(&self) -> u64 {
        if self.initiator {
            self.spi_i
        } else {
            self.spi_r
        }
    }

    /// True if `spi` is our SPI of this IKE SA or of the one it replaced and is still
    /// deleting.
    pub fn has_local_spi(&self, spi: u64) -> bool {
        spi == self.local_spi() || self.retired.as_ref().is_some_and(|r| r.local_spi() == spi)
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
        self.state == IkeSaState::Closed
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
        if self.state == IkeSaState::Closed {
            return None;
        }
        let retransmit = self.window.retransmit_deadline();
        let establish = self
            .handshake
            .as_ref()
            .and_then(|hs| hs.establish_deadline)
            .filter(|_| !matches!(self.state, IkeSaState::Established | IkeSaState::Deleting));
        [
            retransmit,
            establish,
            self.dpd_deadline(),
            self.lifetime_deadline(),
            self.roam_deadline(),
            self.retired.as_ref().map(RetiredSa::deadline),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// When the next liveness check is due (established, idle, DPD configured).
    fn dpd_deadline(&self) -> Option<Instant> {
        let interval = self.cfg.ike().dpd_interval?;
        if self.state != IkeSaState::Established
            || self.window.request_outstanding()
            || self.path_lost
        {
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
        let Some(spi_in) = self.children.iter().find(|c| !c.retiring).map(|c| c.spi_in) else {
            return false;
        };
        if self.state != IkeSaState::Established || self.window.request_outstanding() {
            return false;
        }
        self.send_delete_child(now, spi_in)
    }

    fn send_delete_child(&mut self, now: Instant, spi_in: u32) -> bool {
        let sent = self
            .send_request(
                now,
                ExchangeType::INFORMATIONAL,
                RequestKind::DeleteChild(spi_in),
                vec![Payload::Delete(Delete::esp(&[spi_in]))],
            )
            .is_ok();
        if sent && let Some(c) = self.children.iter_mut().find(|c| c.spi_in == spi_in) {
            c.retiring = true;
        }
        sent
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
        if self.state == IkeSaState::Closed {
            return;
        }
        if let Some(d) = self.handshake.as_ref().and_then(|hs| hs.establish_deadline)
            && d <= now
            && !matches!(self.state, IkeSaState::Established | IkeSaState::Deleting)
        {
            self.fail(FailureReason::EstablishTimeout, None, None);
            return;
        }
        self.retired_timeout(now);
        if self.roam_deadline().is_some_and(|d| d <= now) {
            self.send_update_addresses(now);
            return;
        }
        if self.lifetime_deadline().is_some_and(|d| d <= now) {
            self.run_lifetimes(now);
            return;
        }
        if self.dpd_deadline().is_some_and(|d| d <= now) {
            self.send_liveness_check(now);
            return;
        }
        let policy = self.cfg.ike().retransmit;
        // Without a path the peer cannot answer: keep trying until the caller gives up.
        match self
            .window
            .retransmission(now, policy, self.path_lost, self.peer_lost_sa)
        {
            Retransmission::NotDue => {}
            Retransmission::Exhausted(kind) => {
                self.rekeying = None;
                if kind == RequestKind::Delete {
                    self.close(CloseReason::LocalDelete);
                } else if self.peer_lost_sa {
                    let n = NotifyType::INVALID_IKE_SPI;
                    self.fail(FailureReason::PeerNotify(n), None, Some(n));
                } else {
                    self.fail(FailureReason::Timeout, None, None);
                }
            }
            Retransmission::Resend(datagrams) => {
                for d in datagrams {
                    self.push_transmit(d);
                }
            }
        }
    }

    /// Deletes the IKE SA (and its Child SA): sends INFORMATIONAL with Delete and closes when
    /// answered or timed out. Before establishment, or while another request of ours is
    /// outstanding (window size 1), it closes at once without telling the peer.
    pub fn delete(&mut self, now: Instant) {
        match self.state {
            IkeSaState::Established if !self.window.request_outstanding() => {
                if self
                    .send_request(
                        now,
                        ExchangeType::INFORMATIONAL,
                        RequestKind::Delete,
                        vec![Payload::Delete(Delete::ike())],
                    )
                    .is_ok()
                {
                    self.state = IkeSaState::Deleting;
                } else {
                    self.close(CloseReason::LocalDelete);
                }
            }
            IkeSaState::Closed | IkeSaState::Deleting => {}
            _ => self.close(CloseReason::LocalDelete),
        }
    }

    /// Sends an empty INFORMATIONAL (liveness check / DPD). Returns false when another
    /// request is outstanding or the SA is not established. No answer after all
    /// retransmissions fails the SA with [`FailureReason::Timeout`].
    pub fn send_liveness_check(&mut self, now: Instant) -> bool {
        if self.state != IkeSaState::Established || self.window.request_outstanding() {
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
        if self.state == IkeSaState::Closed {
            return;
        }
        let Ok(raw) = Header::parse(bytes) else {
            return;
        };
        if raw.header.exchange_type == ExchangeType::IKE_SA_INIT {
            self.handle_init_plain(now, local, remote, bytes);
        } else if raw.first_payload != PayloadType::SK && raw.first_payload != PayloadType::SKF {
            self.handle_unprotected_response(now, remote, bytes);
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

    /// Drops the SA because a newer one of the same peer replaced it (INITIAL_CONTACT).
    pub(crate) fn close_replaced(&mut self) {
        self.close(CloseReason::Replaced);
    }

    fn close(&mut self, reason: CloseReason) {
        if self.state != IkeSaState::Closed {
            self.state = IkeSaState::Closed;
            self.window.take_request();
            self.rekeying = None;
            self.retired = None;
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
            remote: self.remote,
            claimed_id: self.claimed_peer.clone(),
        }));
        self.close(CloseReason::Failed);
    }

    fn header(&self, exchange: ExchangeType, message_id: u32, response: bool) -> Header {
        header_for(
            (self.spi_i, self.spi_r),
            self.initiator,
            exchange,
            message_id,
            response,
        )
    }

    /// Encrypts `payloads` into one SK message or, if too large and both sides support it,
    /// into SKF fragments (RFC 7383).
    fn protect(
        &self,
        exchange: ExchangeType,
        message_id: u32,
        response: bool,
        payloads: &[Payload],
    ) -> Result<Vec<Vec<u8>>, SaError> {
        let sk = self.sk_out.as_ref().ok_or(SaError::Internal("no keys"))?;
        self.protect_with(sk, self.header(exchange, message_id, response), payloads)
    }

    /// [`IkeSa::protect`] with explicit keys and header (also used for a retired IKE SA).
    fn protect_with(
        &self,
        sk: &SkCipher,
        header: Header,
        payloads: &[Payload],
    ) -> Result<Vec<Vec<u8>>, SaError> {
        let ike = self.cfg.ike();
        let (first, plain) = encode_chain(payloads)?;
        let marker = if self.encap { 4 } else { 0 };
        let ip_udp = if self.remote.is_ipv4() { 28 } else { 48 };
        let budget = ike.fragment_mtu.saturating_sub(ip_udp + marker);
        let whole = ike_wire::HEADER_LEN + 4 + sk.body_len(plain.len());
        let seal = |prot: Protection, chunk: &[u8]| -> Result<Vec<u8>, SaError> {
            let mut msg = seal_prefix(&header, &[], prot, sk.body_len(chunk.len()))?;
            let body = sk.seal(&msg, chunk, &self.provider)?;
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
            .ok_or(ConfigFault::FragmentMtuTooSmall)?;
        let chunks: Vec<&[u8]> = plain.chunks(room).collect();
        let total = u16::try_from(chunks.len()).map_err(|_| ConfigFault::TooManyFragments)?;
        let mut out = Vec::with_capacity(chunks.len());
        for (i, chunk) in chunks.iter().enumerate() {
            let number = u16::try_from(i + 1).map_err(|_| ConfigFault::TooManyFragments)?;
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
    ) -> Result<(), SaError> {
        let id = self.window.next_request_id();
        let datagrams = self.protect(exchange, id, false, &payloads)?;
        self.start_request(now, id, kind, datagrams);
        Ok(())
    }

    /// Sends `datagrams`, our request `id`, and awaits its response.
    fn start_request(&mut self, now: Instant, id: u32, kind: RequestKind, datagrams: Vec<Vec<u8>>) {
        for d in &datagrams {
            self.push_transmit(d.clone());
        }
        let initial = self.cfg.ike().retransmit.initial;
        self.window.start_request(now, id, kind, datagrams, initial);
    }

    fn send_response(&mut self, exchange: ExchangeType, message_id: u32, payloads: &[Payload]) {
        match self.protect(exchange, message_id, true, payloads) {
            Ok(datagrams) => {
                for d in &datagrams {
                    self.push_transmit(d.clone());
                }
                self.window.cache_response(message_id, datagrams);
            }
            Err(e) => self.fail(e.into(), None, None),
        }
    }

    fn resend_cached(&mut self) {
        let datagrams = self
            .window
            .cached_response()
            .map(<[Vec<u8>]>::to_vec)
            .unwrap_or_default();
        for d in datagrams {
            self.push_transmit(d);
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
            if self
                .retired
                .as_ref()
                .is_some_and(|r| r.spis() == (h.spi_i, h.spi_r))
            {
                self.handle_retired(&parts);
            }
            return;
        }
        // The Initiator flag names the original initiator of the sender.
        if h.flags.initiator() == self.initiator {
            return;
        }
        let Some(sk_in) = self.sk_in.as_ref() else {
            return;
        };
        let response = h.flags.response();
        if response {
            if !self.window.awaits(h.message_id) {
                return;
            }
        } else {
            if self.window.has_answered(h.message_id) {
                // A retransmitted request: answer once per retransmission (for fragmented
                // requests on fragment 1), after checking it is genuine.
                let first = parts.fragment.is_none_or(|f| f.number == 1);
                if first && sk_in.open(parts.aad, parts.body).is_ok() {
                    self.resend_cached();
                }
                return;
            }
            if !self.window.expects_request(h.message_id) {
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
                    .window
                    .reassemble(h.message_id, pos, parts.first_payload, &plain)
                {
                    Some(whole) => whole,
                    None => return,
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
            self.peer_lost_sa = false;
            let kind = self.window.take_request();
            match kind {
                Some(RequestKind::Auth) => self.process_auth_response(now, &payloads),
                Some(RequestKind::Delete) => self.close(CloseReason::LocalDelete),
                Some(RequestKind::DeleteChild(spi_in)) => self.child_gone(spi_in),
                Some(RequestKind::Rekey) => self.process_rekey_response(now, &payloads),
                Some(RequestKind::UpdateAddresses) => {
                    self.process_update_response(local, remote, &payloads);
                }
                _ => {}
            }
        } else {
            self.window.accept_request();
            match exchange {
                ExchangeType::IKE_AUTH
                    if self.role == Role::Responder && self.state == IkeSaState::HalfOpen =>
                {
                    self.process_auth_request(now, h.message_id, &payloads, pool);
                }
                ExchangeType::INFORMATIONAL
                    if matches!(self.state, IkeSaState::Established | IkeSaState::Deleting) =>
                {
                    self.process_informational(h.message_id, local, remote, &payloads);
                }
                ExchangeType::CREATE_CHILD_SA if self.state == IkeSaState::Established => {
                    self.process_create_child_request(now, h.message_id, &payloads);
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
        self.window.accept_request();
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
        let natt = self.cfg.ike().natt_port;
        // An initiator's port is the engine's (the NAT-T port, which its driver maps to a
        // socket of any port): only the address it was reached on counts.
        let local = match self.role {
            Role::Initiator if self.encap => SocketAddr::new(local.ip(), self.local.port()),
            _ => local,
        };
        if (local, remote) == (self.local, self.remote) {
            return;
        }
        if !self.nat_detected && local.port() != natt {
            return;
        }
        self.local = local;
        self.remote = remote;
        self.encap = local.port() == natt;
        if self.state == IkeSaState::Established {
            self.events
                .push_back(Event::AddressesChanged { local, remote });
        }
    }
}

/// Fuzzing only (`--cfg fuzzing`, never in a shipped build): what a peer holding this SA's
/// keys could send, so that fuzz input reaches past the integrity check.
#[cfg(fuzzing)]
impl IkeSa {
    /// Sends `payloads` as our next request of `exchange`, protected with this SA's keys.
    pub fn fuzz_request(&mut self, exchange: ExchangeType, payloads: &[Payload]) {
        let id = self.window.take_request_id();
        if let Ok(datagrams) = self.protect(exchange, id, false, payloads) {
            for d in datagrams {
                self.push_transmit(d);
            }
        }
    }
}

/// Fuzzing only: the gateway's EAP-TLS server fed EAP-Responses whose framing is valid and
/// whose TLS bytes are the fuzz input (the identity first), for as many rounds as there are
/// chunks.
#[cfg(fuzzing)]
pub fn fuzz_eap_tls(
    key: Arc<dyn ipsec_crypto::Signer>,
    chain: &[Vec<u8>],
    identity: &[u8],
    chunks: &[&[u8]],
) {
    let idi = ike_wire::Identification {
        id_type: ike_wire::IdType::FQDN,
        data: b"client".to_vec(),
    };
    let Ok((mut server, _)) = eap::EapServer::new(key, chain, true, Vec::new(), idi, 1) else {
        return;
    };
    let response = |id: u8, method: u8, data: &[u8]| {
        let len = u16::try_from(5 + data.len()).unwrap_or(u16::MAX);
        let mut p = vec![2, id];
        p.extend_from_slice(&len.to_be_bytes());
        p.push(method);
        p.extend_from_slice(data);
        p
    };
    if server
        .handle(&response(server.identifier(), 1, identity))
        .is_err()
    {
        return;
    }
    for chunk in chunks {
        // EAP-TLS: flags byte first (no length, no more fragments), then TLS records.
        let mut data = vec![0u8];
        data.extend_from_slice(chunk);
        if server
            .handle(&response(server.identifier(), 13, &data))
            .is_err()
        {
            return;
        }
    }
}

/// EAP-TLS as our client sees it: the gateway's EAP-TLS start, then `chunks` as its
/// requests (each `[0, ...]` wrapped as an EAP-TLS request with its TLS bytes, anything else
/// handed over as a raw EAP packet). Nothing may panic.
#[cfg(fuzzing)]
pub fn fuzz_eap_tls_client(
    key: Arc<dyn ipsec_crypto::Signer>,
    chain: &[Vec<u8>],
    chunks: &[&[u8]],
) {
    let settings = crate::config::EapTlsClient {
        identity: "alice@corp.example".into(),
        server_names: vec![IkeId::Fqdn("gw.example".into())],
        server_validator: Arc::new(crate::identity::PkiValidator {
            trust: pki::TrustStore::new(),
            role: crate::identity::PeerRole::Gateway {
                server_name: "gw.example".into(),
            },
            expected_id: None,
        }),
        tls13: true,
    };
    let Ok(mut client) = eap::EapClient::new(key, chain, &settings, 1_800_000_000) else {
        return;
    };
    let request = |id: u8, data: &[u8]| {
        let len = u16::try_from(6 + data.len()).unwrap_or(u16::MAX);
        let mut p = vec![1, id];
        p.extend_from_slice(&len.to_be_bytes());
        p.push(13);
        p.push(0);
        p.extend_from_slice(data);
        p
    };
    let mut start = request(1, &[]);
    if let Some(flags) = start.get_mut(5) {
        *flags = 0x20;
    }
    if client.handle(&start).is_err() {
        return;
    }
    for (i, chunk) in chunks.iter().enumerate() {
        let id = u8::try_from(i % 250).unwrap_or(0).wrapping_add(2);
        let packet = match chunk.split_first() {
            Some((0, tls)) => request(id, tls),
            _ => chunk.to_vec(),
        };
        if client.handle(&packet).is_err() {
            return;
        }
    }
}
