//! One IKE SA: the IKE_SA_INIT / IKE_AUTH / INFORMATIONAL state machine for both roles.
//!
//! Here: the [`IkeSa`] struct, its construction and how it ends. [`api`] is the caller's side
//! (accessors, polls, timers), [`incoming`] takes datagrams apart and dispatches them by
//! exchange, [`outgoing`] protects and sends, [`spi`] keeps SPIs unique across an endpoint.
//! The exchanges: [`init`], [`auth`] (with [`eap`] and [`eap_relay`]), [`informational`],
//! [`mobike`], [`rekey`].

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use ike_wire::{AuthMethod, NotifyType, ReassemblyLimits};
use ipsec_crypto::{DhGroup, HashAlg, Provider};

use crate::config::{IkeConfig, InitiatorConfig, ResponderConfig};
use crate::datagram::{Path, Transmit};
use crate::event::{CloseReason, Event};
use crate::failure::{Failure, FailureReason};
use crate::identity::IkeId;
use children::{ChildTable, Lifetime};
use handshake::Handshake;
use keys::SaKeys;
use rekey::{Rekeying, RetiredSa};
use spi::nonzero_u64;
use window::MessageWindow;

mod api;
mod auth;
mod children;
mod eap;
mod eap_relay;
pub use eap_relay::RELAYED as EAP_RELAYED;
mod error;
#[cfg(fuzzing)]
mod fuzz;
#[cfg(fuzzing)]
pub use fuzz::{fuzz_eap_tls, fuzz_eap_tls_client};
mod handshake;
mod incoming;
mod informational;
mod init;
mod keys;
mod mobike;
mod outgoing;
pub(crate) use outgoing::stateless_reply;
mod rekey;
mod spi;
pub use eap::EapError;
pub(crate) use spi::SpiSet;
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
    /// Where the SA's IKE messages go and come from, and on which socket; its `natt` is
    /// also whether the Child SAs' ESP is UDP-encapsulated.
    path: Path,
    nat_detected: bool,
    /// IKE_SA_INIT and IKE_AUTH in progress; `None` once established.
    handshake: Option<Box<Handshake>>,
    /// From IKE_SA_INIT on.
    keys: Option<SaKeys>,
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
    children: ChildTable,
    rekeying: Option<Rekeying>,
    retired: Option<RetiredSa>,
    ike_lifetime: Lifetime,
    /// Who the peer claims to be and, once authenticated, what it proved.
    peer: PeerRecord,
    /// When the first IKE_SA_INIT was sent or received (for the handshake's duration).
    started: Option<Instant>,
    /// Wall-clock seconds of the datagram being handled (certificates are checked against
    /// it); set from each datagram's `Now`.
    unix_time: u64,
    assigned: Vec<IpAddr>,
    last_rx: Option<Instant>,
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

/// Who the peer of an IKE SA is: what it claims before it authenticates (for refusal logs),
/// and what it proved once it has.
#[derive(Debug, Default)]
struct PeerRecord {
    claimed: Option<IkeId>,
    id: Option<IkeId>,
    chain: Option<pki::ChainRecord>,
    /// Its policy group (responder), as the validator chose it.
    policy: Option<Arc<crate::PeerPolicy>>,
    auth_method: Option<AuthMethod>,
    /// It sent INITIAL_CONTACT: it has no other IKE SA with us any more.
    initial_contact: bool,
    /// The TLS version and suite an EAP-TLS authentication used.
    eap_tls: Option<String>,
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

fn wire_group(g: DhGroup) -> ike_wire::DhGroup {
    ike_wire::DhGroup(g.iana())
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
            // An initiator starts on the IKE socket and floats to NAT-T when it finds a NAT.
            Path::ike(local, remote),
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

    fn blank(role: Role, cfg: RoleConfig, provider: Arc<Provider>, path: Path) -> Self {
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
            path,
            nat_detected: false,
            handshake: Some(Box::default()),
            keys: None,
            peer_frag: false,
            peer_hashes: Vec::new(),
            window: MessageWindow::new(ReassemblyLimits::default()),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            child_spi_in: 0,
            spis: SpiSet::default(),
            own_spis: Vec::new(),
            children: ChildTable::default(),
            rekeying: None,
            retired: None,
            ike_lifetime: Lifetime::default(),
            peer: PeerRecord::default(),
            started: None,
            unix_time: 0,
            assigned: Vec::new(),
            last_rx: None,
            mobike: false,
            path_lost: false,
            roam_requested: None,
            update_cookie2: None,
            peer_lost_sa: false,
        }
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
            remote: self.path.remote,
            claimed_id: self.peer.claimed.clone(),
        }));
        self.close(CloseReason::Failed);
    }
}
