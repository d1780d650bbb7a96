//! What the engine tells the application: events, with what they carry (IKE SA and Child
//! SA information, close reasons; failures are in `failure.rs`).

use std::net::{IpAddr, SocketAddr};

use ike_wire::{AuthMethod, TrafficSelector};
use ipnet::IpNet;
use ipsec_crypto::SecretBytes;

use crate::failure::Failure;
use crate::identity::IkeId;
use crate::proposal::{EspAlgorithms, IkeAlgorithms};

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
