//! Why an exchange failed, typed by who is to blame (the peer, our configuration, our crypto
//! backend), with the notify that went over the wire and what an administrator can do.

use std::net::SocketAddr;

use ike_wire::{AuthMethod, DecodeError, EncodeError, NotifyType, PayloadType};
use ipsec_crypto::CryptoError;

use crate::identity::{IkeId, PeerRejection};
use crate::sa::EapError;

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
    /// The peer's AUTH payload is missing, did not verify or used a method we refuse.
    #[error("AUTH payload: {0}")]
    AuthPayload(#[from] AuthFault),
    /// The peer's KE payload is no valid public value of its group (RFC 6989 checks,
    /// length).
    #[error("the peer's key exchange: {0}")]
    KeyExchange(#[source] CryptoError),
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
    InvalidSyntax(#[from] SyntaxError),
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
    /// Something on our side: the configuration, the crypto backend, the encoder.
    #[error("local error: {0}")]
    Local(#[from] LocalError),
    /// The gateway sent us to another one (RFC 5685); connect there.
    #[error("redirected to {0}")]
    Redirected(ike_wire::GatewayIdentity),
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
            Self::KeyExchange(_) => "key_exchange",
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
            Self::Redirected(_) => "redirected",
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
            (FailureReason::PeerRejected(R::Certificate(pki::PkiError::Revoked(_))), _, false) => {
                "revoked here (clients.revoked_thumbprints or the revocation file)"
            }
            (FailureReason::PeerRejected(R::KindNotAccepted(_)), _, false) => {
                "add its kind to clients.accept, if such certificates should connect"
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
            (FailureReason::Redirected(_), _, _) => {
                "the gateway sends new clients to another gateway of the service (draining, or above its load); the client goes there by itself"
            }
            _ => "the other side's log has its view",
        }
    }
}

/// What is wrong with the peer's authentication.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthFault {
    /// A payload the authentication needs is absent (named in the text).
    #[error("{0}")]
    Missing(&'static str),
    /// Its AUTH payload names a method we do not verify.
    #[error("unsupported AUTH method {0}")]
    UnsupportedMethod(AuthMethod),
    /// Its RFC 7427 AUTH data does not parse or names an algorithm we do not know.
    #[error("RFC 7427 AUTH data: {0}")]
    Rfc7427Data(#[source] CryptoError),
    /// It signed over SHA-1 and `allow_legacy` is off.
    #[error("signature over SHA-1 refused (allow_legacy is off)")]
    Sha1Signature,
    /// It signed over SHA-1 in RFC 7427 form although it announced SHA-2 (RFC 8247 3.2).
    #[error("RFC 7427 signature over SHA-1 from a peer that offers SHA-2 (RFC 8247)")]
    Sha1Downgrade,
    /// Its signature does not verify with its certificate's key.
    #[error("signature check: {0}")]
    Signature(#[source] CryptoError),
    /// The AUTH it derived from the EAP MSK differs from ours: it does not hold the key
    /// the EAP method produced (whose AUTH it was is in the text).
    #[error("{0}")]
    MskMismatch(&'static str),
    /// Its EAP conversation failed (a malformed or unexpected message, or TLS refused its
    /// certificate or handshake).
    #[error("EAP: {0}")]
    Eap(#[source] EapError),
}

/// What is malformed or missing in a peer's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyntaxError {
    /// The payload chain does not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A payload the exchange needs is missing or unusable (named in the text).
    #[error("{0}")]
    Invalid(&'static str),
}

/// A failure on our side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LocalError {
    /// Our configuration rules out what the exchange needs.
    #[error(transparent)]
    Config(#[from] ConfigFault),
    /// The crypto backend failed (randomness, key generation and derivation, signing,
    /// sealing).
    #[error("crypto: {0}")]
    Crypto(#[source] CryptoError),
    /// A message we built does not fit the wire format.
    #[error("encoding: {0}")]
    Encode(#[source] EncodeError),
    /// The SA lacked state a step needs (keys before IKE_SA_INIT ended, an EAP method that
    /// ended without a key): neither the peer's message nor the configuration said so.
    #[error("{0}")]
    Internal(&'static str),
}

/// What our configuration does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigFault {
    /// `auth_method` wants RFC 7427 signatures, and the peer announced no hash our key signs
    /// with.
    #[error("peer supports no hash usable with our key")]
    NoSignatureHash,
    /// Our RSA key would have to sign over SHA-1, which `allow_legacy` forbids.
    #[error(
        "the peer offers no SHA-2 hash for RFC 7427 signatures and an RSA signature over SHA-1 \
         is not allowed (allow_legacy)"
    )]
    Sha1NotAllowed,
    /// `fragment_mtu` leaves no room for any payload in a fragment.
    #[error("fragment MTU too small")]
    FragmentMtuTooSmall,
    /// The message needs more fragments than RFC 7383 can number at `fragment_mtu`.
    #[error("too many fragments")]
    TooManyFragments,
    /// The TLS library refused our EAP-TLS settings (key, chain, versions).
    #[error("EAP-TLS setup: {0}")]
    EapTls(#[source] EapError),
}
