//! Why a step of an exchange could not be carried out, by who is to blame: the peer's
//! authentication or key exchange, or our side (see [`crate::failure`] for the public
//! types it becomes).

use ike_wire::EncodeError;
use ipsec_crypto::CryptoError;

use crate::failure::{AuthFault, ConfigFault, FailureReason, LocalError};

/// A step of an exchange that failed; where it ends the exchange it becomes the
/// [`FailureReason`] of its kind, its source kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum SaError {
    /// The peer's authentication is unacceptable.
    #[error(transparent)]
    Auth(#[from] AuthFault),
    /// The peer's KE value is no valid public value of its group.
    #[error("the peer's key exchange: {0}")]
    KeyExchange(#[source] CryptoError),
    /// Our side failed.
    #[error(transparent)]
    Local(#[from] LocalError),
}

impl SaError {
    /// The SA lacks state the step needs: the engine called it out of turn.
    pub(super) fn internal(what: &'static str) -> Self {
        Self::Local(LocalError::Internal(what))
    }
}

impl From<CryptoError> for SaError {
    fn from(e: CryptoError) -> Self {
        Self::Local(LocalError::Crypto(e))
    }
}

impl From<EncodeError> for SaError {
    fn from(e: EncodeError) -> Self {
        Self::Local(LocalError::Encode(e))
    }
}

impl From<ConfigFault> for SaError {
    fn from(fault: ConfigFault) -> Self {
        Self::Local(LocalError::Config(fault))
    }
}

impl From<SaError> for FailureReason {
    fn from(error: SaError) -> Self {
        match error {
            SaError::Auth(fault) => Self::AuthPayload(fault),
            SaError::KeyExchange(e) => Self::KeyExchange(e),
            SaError::Local(e) => Self::Local(e),
        }
    }
}
