//! Outputs of the engine: datagrams to send and events for the application.

use std::net::{IpAddr, SocketAddr};

use ike_wire::{AuthMethod, NotifyType, PayloadType, TrafficSelector};
use ipnet::IpNet;
use ipsec_crypto::SecretBytes;

use crate::identity::{IkeId, PeerRejection};
use crate::proposal::{EspAlgorithms, IkeAlgorithms};

/// One IKE datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Source address (the driver picks the socket bound to this port; the IP is the one the
    /// peer's datagram arrived on).
    pub local: SocketAddr,
    /// Destination.
    pub remote: SocketAddr,
    /// The IKE message, WITHOUT the non-ESP marker.
    pub bytes: Vec<u8>,
    /// True when sent from the NAT-T port: the driver must prepend the 4-byte zero non-ESP
    /// marker (RFC 3948 2.2).
    pub non_esp_marker: bool,
}

/// Information about an established IKE SA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IkeSaInfo {
    /// Initiator SPI.
    pub spi_i: u64,
    /// Responder SPI.
    pub spi_r: u64,
    /// True if we initiated.
    pub initiator: bool,
    /// Authenticated peer identity.
    pub peer_id: IkeId,
    /// Subject of the peer's certificate.
    pub peer_subject: String,
    /// The peer's validated certificate path (thumbprints, earliest expiry), for re-checks
    /// when trust changes, at rekeys and at expiry.
    pub peer_chain: pki::ChainRecord,
    /// AUTH method the peer used (1 RSA, 9/10 ECDSA, 14 RFC 7427).
    pub peer_auth_method: AuthMethod,
    /// The peer sent INITIAL_CONTACT: it has no other SA with us, so the gateway should drop
    /// older IKE SAs of the same identity.
    pub initial_contact: bool,
    /// Negotiated algorithms.
    pub algorithms: IkeAlgorithms,
    /// Current local address.
    pub local: SocketAddr,
    /// Current remote address.
    pub remote: SocketAddr,
    /// A NAT (or faked NAT-D) was detected: IKE and ESP use UDP encapsulation.
    pub nat_detected: bool,
    /// With EAP-TLS: the TLS version and cipher suite (`TLS 1.3, TLS13_AES_256_GCM_SHA384`).
    pub eap_tls: Option<String>,
    /// The policy group the responder put the peer in (`None`: its defaults).
    pub group: Option<String>,
    /// From the first IKE_SA_INIT to now (COOKIE and INVALID_KE round trips included).
    pub handshake: std::time::Duration,
}

/// A negotiated Child SA with its keys (RFC 7296 2.17), ready for the ESP data plane.
#[derive(Debug, Clone)]
pub struct ChildSa {
    /// IKE SA it belongs to (our SPI).
    pub ike_spi: u64,
    /// SPI the peer uses when sending to us.
    pub spi_in: u32,
    /// SPI we use when sending to the peer.
    pub spi_out: u32,
    /// Algorithms (wire IDs: `encr.iana()`, `encr.key_length_attr()`, `integ.iana()`).
    pub algorithms: EspAlgorithms,
    /// Encryption key material for inbound packets (AEAD: key ‖ 4-byte salt).
    pub encr_key_in: SecretBytes,
    /// Integrity key for inbound packets (empty for AEAD).
    pub integ_key_in: SecretBytes,
    /// Encryption key material for outbound packets.
    pub encr_key_out: SecretBytes,
    /// Integrity key for outbound packets.
    pub integ_key_out: SecretBytes,
    /// Our traffic selectors (initiator: TSi, responder: TSr), narrowed.
    pub ts_local: Vec<TrafficSelector>,
    /// The peer's traffic selectors.
    pub ts_remote: Vec<TrafficSelector>,
    /// Virtual IPs: assigned to us (initiator) or to the peer (responder).
    pub virtual_ips: Vec<IpAddr>,
    /// DNS servers from the CP reply (initiator) or pushed (responder).
    pub dns_servers: Vec<IpAddr>,
    /// Internal DNS domains (RFC 8598 INTERNAL_DNS_DOMAIN): names under them go to
    /// `dns_servers`.
    pub dns_domains: Vec<String>,
    /// Subnets from INTERNAL_IP4/6_SUBNET.
    pub subnets: Vec<IpNet>,
    /// Local address for ESP (UDP-encapsulated when `udp_encap`).
    pub local: SocketAddr,
    /// Remote address for ESP.
    pub remote: SocketAddr,
    /// ESP in UDP (RFC 3948) on the NAT-T port.
    pub udp_encap: bool,
}

/// Why establishing or running an SA failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FailureReason {
    /// No acceptable proposal.
    #[error("no acceptable proposal")]
    NoProposalChosen,
    /// The responder wants a KE group we do not offer.
    #[error("INVALID_KE_PAYLOAD asking for a group we do not offer ({0})")]
    InvalidKeGroup(u16),
    /// Peer certificate or identity rejected.
    #[error("peer rejected: {0}")]
    PeerRejected(PeerRejection),
    /// The AUTH payload did not verify or used an unsupported method.
    #[error("AUTH payload: {0}")]
    AuthPayload(String),
    /// Traffic selectors do not overlap.
    #[error("traffic selectors unacceptable")]
    TsUnacceptable,
    /// The address pool is exhausted.
    #[error("no virtual address available")]
    AddressPoolExhausted,
    /// A virtual IP is required but none was requested.
    #[error("configuration payload required")]
    CpRequired,
    /// An unknown payload with the critical bit.
    #[error("unsupported critical payload {0}")]
    UnsupportedCritical(PayloadType),
    /// A required payload is missing or malformed.
    #[error("invalid syntax: {0}")]
    InvalidSyntax(String),
    /// The peer answered with an error notify.
    #[error("peer sent {0}")]
    PeerNotify(NotifyType),
    /// No answer after all retransmissions.
    #[error("peer did not answer")]
    Timeout,
    /// Not established in time.
    #[error("establishment timed out")]
    EstablishTimeout,
    /// Too many COOKIE / INVALID_KE round trips.
    #[error("too many IKE_SA_INIT retries")]
    TooManyRetries,
    /// A local error (crypto backend, encoding).
    #[error("local error: {0}")]
    Local(String),
}

impl FailureReason {
    /// A short stable name for the kind of failure (metrics labels, machine-readable logs).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoProposalChosen => "no_proposal_chosen",
            Self::InvalidKeGroup(_) => "invalid_ke_group",
            Self::PeerRejected(crate::identity::PeerRejection::ServerRefused(_)) => {
                "radius_refused"
            }
            Self::PeerRejected(_) => "peer_rejected",
            Self::AuthPayload(_) => "auth_payload",
            Self::TsUnacceptable => "ts_unacceptable",
            Self::AddressPoolExhausted => "address_pool_exhausted",
            Self::CpRequired => "cp_required",
            Self::UnsupportedCritical(_) => "unsupported_critical",
            Self::InvalidSyntax(_) => "invalid_syntax",
            Self::PeerNotify(_) => "peer_notify",
            Self::Timeout => "timeout",
            Self::EstablishTimeout => "establish_timeout",
            Self::TooManyRetries => "too_many_retries",
            Self::Local(_) => "local",
        }
    }
}

/// A failure with the notify that went over the wire (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What happened.
    pub reason: FailureReason,
    /// Error notify we sent.
    pub notify_sent: Option<NotifyType>,
    /// Error notify we received.
    pub notify_received: Option<NotifyType>,
    /// The peer's address when it happened.
    pub remote: SocketAddr,
    /// The identity the peer claimed (IDi or IDr), authenticated or not: for the log line
    /// that tells an administrator who was refused.
    pub claimed_id: Option<IkeId>,
}

impl Failure {
    /// What an administrator can do about it, in the words `aovpn doctor`, `aovpn status`
    /// and the gateway's log share; `initiator`: we are the client.
    pub fn advice(&self, initiator: bool) -> &'static str {
        use crate::identity::PeerRejection as R;
        let notify = self.notify_received.or(self.notify_sent);
        match (&self.reason, notify, initiator) {
            (FailureReason::Timeout | FailureReason::EstablishTimeout, _, true) => {
                "UDP 500 and 4500 must reach the gateway: check firewalls on the way and that the gateway runs"
            }
            (FailureReason::Timeout | FailureReason::EstablishTimeout, _, false) => {
                "the client went silent mid-handshake: UDP 4500 or IP fragments may be blocked on its side"
            }
            (FailureReason::NoProposalChosen, _, true)
            | (_, Some(NotifyType::NO_PROPOSAL_CHOSEN), true) => {
                "align the profile's CryptographySuite with the gateway's proposals"
            }
            (FailureReason::NoProposalChosen, _, false)
            | (_, Some(NotifyType::NO_PROPOSAL_CHOSEN), false) => {
                "the client's proposals and crypto.ike_proposals / esp_proposals share nothing"
            }
            (FailureReason::InvalidKeGroup(_), _, _) => {
                "offer the group the peer asks for (CryptographySuite DHGroup, or crypto.ike_proposals)"
            }
            (FailureReason::PeerRejected(R::IdentityMismatch(_)), _, true) => {
                "the gateway's certificate must carry the name dialled (the profile's Servers) as a DNS name"
            }
            (FailureReason::PeerRejected(R::IdentityMismatch(_)), _, false) => {
                "the client sent an identity its certificate does not name"
            }
            (FailureReason::PeerRejected(R::ServerRefused(m)), _, false)
                if m.starts_with("no RADIUS server") =>
            {
                "no RADIUS server in [radius] servers answered: are they up, reachable from the gateway, and is the gateway a client there with the same secret?"
            }
            (FailureReason::PeerRejected(R::ServerRefused(_)), _, false) => {
                "the RADIUS server refused this user: its log says why"
            }
            (FailureReason::PeerRejected(R::Certificate(m)), _, false) if m.contains("revoked") => {
                "revoked here (clients.revoked_thumbprints or the revocation file)"
            }
            (FailureReason::PeerRejected(_), _, true) => {
                "the gateway's certificate must chain to one of our roots (with its intermediates sent), be valid now and allow server authentication"
            }
            (FailureReason::PeerRejected(_), _, false) => {
                "the client's root must be in clients.root_ca_files, its intermediates sent, EKU clientAuth; `aovpn gateway --check --client-cert FILE` says why"
            }
            (_, Some(NotifyType::AUTHENTICATION_FAILED), true) => {
                "the gateway does not accept our certificate: its roots, revocation list and accepted kinds decide (its log names the reason)"
            }
            (FailureReason::AuthPayload(_), _, false) => {
                "the client's AUTH did not verify: a key that is not the certificate's, or a broken client"
            }
            (FailureReason::AddressPoolExhausted, _, true) => "the gateway's address pool is full",
            (FailureReason::AddressPoolExhausted, _, false) => "clients.pool_v4 is full: widen it",
            (FailureReason::TsUnacceptable, _, _) => {
                "the networks asked for and the gateway's networks do not overlap"
            }
            (FailureReason::CpRequired, _, _) => "the client must ask for a virtual address",
            _ => "the other side's log has its view",
        }
    }
}

/// Why an IKE SA ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// We deleted it ([`crate::IkeSa::delete`]).
    LocalDelete,
    /// The peer deleted it.
    PeerDelete,
    /// It failed (see the preceding [`Event::Failed`]).
    Failed,
    /// A new IKE SA of the same peer identity arrived with INITIAL_CONTACT: the peer lost
    /// this one (reboot, crash), so it was dropped without a Delete (RFC 7296 2.4).
    Replaced,
    /// Its lifetime ran out before a rekey succeeded.
    Expired,
}

/// Events for the application.
#[derive(Debug, Clone)]
pub enum Event {
    /// IKE SA authenticated in both directions.
    IkeSaEstablished(IkeSaInfo),
    /// A Child SA is ready; install it in the data plane.
    ChildSaEstablished(Box<ChildSa>),
    /// A Child SA was rekeyed (RFC 7296 1.3.3): install `new` in the data plane now; the old
    /// one keeps receiving until its `ChildSaDeleted` follows (make-before-break). Which of
    /// the two sends meanwhile: see [`Event::ChildSaOutboundReady`].
    ChildSaRekeyed {
        /// Inbound SPI of the Child SA being replaced.
        old_spi_in: u32,
        /// Outbound SPI of the Child SA being replaced.
        old_spi_out: u32,
        /// The new Child SA (same traffic selectors and virtual IPs, fresh SPIs and keys).
        new: Box<ChildSa>,
    },
    /// Follows [`Event::ChildSaRekeyed`] when we initiated that rekey: the peer installed the
    /// new SA before it answered, so send on it now. When the peer initiated the rekey, this
    /// event does not come: the peer may not receive on the new SA yet, so keep sending on the
    /// old one until its [`Event::ChildSaDeleted`] (the peer deletes it right after our answer)
    /// or a short timeout (RFC 7296 2.8).
    ChildSaOutboundReady {
        /// Inbound SPI of the new Child SA.
        spi_in: u32,
    },
    /// The IKE SA was rekeyed (RFC 7296 1.3.2): new SPIs and keys, its Child SAs moved over.
    /// An [`crate::Endpoint`] keeps reporting it under the same [`crate::IkeSaId`].
    IkeSaRekeyed {
        /// New initiator SPI.
        spi_i: u64,
        /// New responder SPI.
        spi_r: u64,
    },
    /// A Child SA was deleted (remove both SPIs from the data plane).
    ChildSaDeleted {
        /// Inbound SPI.
        spi_in: u32,
        /// Outbound SPI.
        spi_out: u32,
    },
    /// The peer's address or the ports changed (NAT-T float, NAT rebinding): update the ESP
    /// encapsulation addresses.
    AddressesChanged {
        /// New local address.
        local: SocketAddr,
        /// New remote address.
        remote: SocketAddr,
    },
    /// Something failed; the IKE SA closes unless only the Child SA was refused or a rekey
    /// attempt failed (the IKE SA stays up; see [`crate::IkeSa::state`]).
    Failed(Failure),
    /// The IKE SA is gone; drop all its Child SAs.
    Closed(CloseReason),
    /// Responder with [`crate::ResponderConfig::eap_pass_through`]: relay this EAP-Response
    /// to the authentication server and answer with [`crate::Endpoint::eap_answer`].
    EapPassThrough {
        /// The EAP packet as the initiator sent it.
        eap: Vec<u8>,
        /// The EAP identity (EAP-Response/Identity's data), once known.
        identity: Vec<u8>,
    },
}

/// What the authentication server said to a relayed EAP-Response.
pub enum EapAnswer {
    /// Relay this EAP-Request to the initiator.
    Request(Vec<u8>),
    /// Accepted: relay this EAP-Success; the initiator's AUTH is checked with `msk`; `policy`
    /// is the peer's group (the server's Class or Filter-Id), if any. `identity` is who the
    /// server says the peer is (its User-Name), else the EAP identity stands; `until` ends
    /// the session (the server's Session-Timeout).
    Success {
        eap: Vec<u8>,
        msk: zeroize::Zeroizing<Vec<u8>>,
        policy: Option<std::sync::Arc<crate::PeerPolicy>>,
        identity: Option<String>,
        until: Option<std::time::SystemTime>,
    },
    /// Refused, or no server answered: relay the EAP-Failure (if any), answer
    /// AUTHENTICATION_FAILED and close the SA; `reason` says why, for logs.
    Failure {
        eap: Option<Vec<u8>>,
        reason: String,
    },
}

impl std::fmt::Debug for EapAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EapAnswer::Request(r) => f.debug_tuple("Request").field(&r.len()).finish(),
            EapAnswer::Success { policy, .. } => f
                .debug_struct("Success")
                .field("policy", policy)
                .finish_non_exhaustive(),
            EapAnswer::Failure { reason, .. } => f
                .debug_struct("Failure")
                .field("reason", reason)
                .finish_non_exhaustive(),
        }
    }
}
