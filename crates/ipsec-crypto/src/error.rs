//! The one error type of this crate.

/// Everything that can go wrong in this crate. Messages never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The random source failed (OS RNG error).
    #[error("random number generator failed")]
    Rng,
    /// A key had the wrong length for its algorithm.
    #[error("{what} key must be {expected} bytes, got {got}")]
    KeyLength {
        /// Which key (e.g. "encryption", "integrity").
        what: &'static str,
        /// Required length in bytes.
        expected: usize,
        /// Length that was supplied.
        got: usize,
    },
    /// The backend refused a key (e.g. a 3DES key with weak DES subkeys).
    #[error("{0} key rejected by the crypto backend")]
    KeyRejected(&'static str),
    /// The peer's DH public value has the wrong length for the group.
    #[error("DH public value must be {expected} bytes, got {got}")]
    DhPublicLength {
        /// Required length in bytes.
        expected: usize,
        /// Length received.
        got: usize,
    },
    /// The peer's DH public value failed the RFC 6989 checks (MODP range, point not on curve).
    #[error("invalid DH public value (RFC 6989 check failed)")]
    DhPublicInvalid,
    /// The DH computation produced a degenerate shared secret (e.g. all-zero X25519 output).
    #[error("degenerate DH shared secret")]
    DhSharedSecretInvalid,
    /// The peer's DH public value is for another group than our private key.
    #[error("DH group mismatch")]
    DhGroupMismatch,
    /// An SK payload body is too short or not a multiple of the cipher block size.
    #[error("SK payload body has invalid length {0}")]
    SkBodyLength(usize),
    /// The ICV of an SK payload did not verify (or AEAD authentication failed).
    #[error("SK payload integrity check failed")]
    IntegrityCheckFailed,
    /// The decrypted SK payload has an impossible pad length.
    #[error("SK payload padding invalid")]
    BadPadding,
    /// The combination of ENCR and INTEG transforms is invalid (AEAD with INTEG, CBC without).
    #[error("invalid transform combination: {0}")]
    TransformCombination(&'static str),
    /// The key-derivation output requested is too long for prf+ (more than 255 blocks).
    #[error("prf+ output of {0} bytes exceeds 255 PRF blocks")]
    PrfPlusTooLong(usize),
    /// A private key could not be parsed from PKCS#8 DER.
    #[error("unsupported or malformed PKCS#8 private key")]
    PrivateKey,
    /// A public key (SubjectPublicKeyInfo) could not be parsed or does not fit the scheme.
    #[error("unsupported or malformed public key")]
    PublicKey,
    /// The signature scheme cannot be used with this key (e.g. ECDSA scheme with an RSA key).
    #[error("signature scheme not usable with this key")]
    SchemeKeyMismatch,
    /// The crypto backend failed unexpectedly.
    #[error("crypto backend failure in {0}")]
    Backend(&'static str),
    /// Signing failed in the backend.
    #[error("signing failed")]
    Sign,
    /// A [`crate::Signer`] that holds its key elsewhere could not sign.
    #[error("the key holder did not sign: {0}")]
    ExternalSigner(String),
    /// The RFC 7427 AlgorithmIdentifier is malformed or names an unsupported algorithm.
    #[error("unsupported RFC 7427 signature AlgorithmIdentifier")]
    UnsupportedAlgorithmIdentifier,
    /// The signature did not verify.
    #[error("signature verification failed")]
    BadSignature,
}
