//! Why a step of an exchange could not be carried out, by who is to blame: the peer, our
//! configuration, the crypto backend or the encoder, or the engine's own state.

use ike_wire::{AuthMethod, EncodeError};
use ipsec_crypto::CryptoError;

use super::eap::EapError;
use crate::event::FailureReason;

/// A step of an exchange that failed. Where it ends an exchange it becomes a
/// [`FailureReason`]: a peer's fault as the reason its kind of fault has, everything else as
/// [`FailureReason::Local`] with this error's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum SaError {
    /// The peer's message or choice is unacceptable.
    #[error(transparent)]
    Peer(#[from] PeerFault),
    /// Our configuration rules out what the exchange needs.
    #[error(transparent)]
    Config(#[from] ConfigFault),
    /// The crypto backend failed (randomness, key generation and derivation, signing, sealing).
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
    /// A message we built does not fit the wire format.
    #[error("encoding: {0}")]
    Encode(#[from] EncodeError),
    /// The SA lacks state the step needs (keys before IKE_SA_INIT ended, a Child SA that is
    /// gone): the engine called it out of turn, neither the peer nor the configuration did.
    #[error("{0}")]
    Internal(&'static str),
}

/// What is wrong with what the peer sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum PeerFault {
    /// Its AUTH payload names a method we do not verify.
    #[error("unsupported AUTH method {0}")]
    UnsupportedAuthMethod(AuthMethod),
    /// Its RFC 7427 AUTH data does not parse or names an algorithm we do not know.
    #[error("RFC 7427 AUTH data: {0}")]
    AuthData(#[source] CryptoError),
    /// It signed over SHA-1 and `allow_legacy` is off.
    #[error("signature over SHA-1 refused (allow_legacy is off)")]
    Sha1Signature,
    /// It signed over SHA-1 in RFC 7427 form although it announced SHA-2 (RFC 8247 3.2).
    #[error("RFC 7427 signature over SHA-1 from a peer that offers SHA-2 (RFC 8247)")]
    Sha1Downgrade,
    /// Its signature does not verify with its certificate's key.
    #[error("signature check: {0}")]
    Signature(#[source] CryptoError),
    /// Its KE payload is no valid public value of the group (RFC 6989 checks, length).
    #[error("the peer's key exchange: {0}")]
    KeyExchange(#[source] CryptoError),
}

/// What our configuration does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum ConfigFault {
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

impl From<PeerFault> for FailureReason {
    fn from(fault: PeerFault) -> Self {
        match fault {
            // A bad KE value was reported as a local error before the errors were typed; the
            // reason (and its metrics code) stays, the text now names the peer.
            PeerFault::KeyExchange(_) => Self::Local(fault.to_string()),
            PeerFault::UnsupportedAuthMethod(_)
            | PeerFault::AuthData(_)
            | PeerFault::Sha1Signature
            | PeerFault::Sha1Downgrade
            | PeerFault::Signature(_) => Self::AuthPayload(fault.to_string()),
        }
    }
}

impl From<SaError> for FailureReason {
    fn from(error: SaError) -> Self {
        match error {
            SaError::Peer(fault) => fault.into(),
            SaError::Config(_) | SaError::Crypto(_) | SaError::Encode(_) | SaError::Internal(_) => {
                Self::Local(error.to_string())
            }
        }
    }
}
