//! The one error type of this crate.

use crate::Thumbprint;

/// Everything that can go wrong loading, validating or issuing certificates.
///
/// Validation failures have one variant each so callers (IKE AUTH failure notifications, logs,
/// tests) can tell them apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// Malformed PEM, base64, DER or X.509 structure.
    #[error("bad encoding: {0}")]
    BadEncoding(String),
    /// The input parsed but held no certificate.
    #[error("no certificate found")]
    NoCertificate,
    /// The input parsed but held no private key.
    #[error("no private key found")]
    NoPrivateKey,
    /// A key of a type or size we do not handle (we do ECDSA P-256/P-384 and RSA 2048..8192).
    #[error("unsupported private key: {0}")]
    UnsupportedKey(String),
    /// The private key does not belong to the certificate it was paired with.
    #[error("private key does not match the certificate")]
    KeyMismatch,
    /// PKCS#12 integrity check or decryption failed: almost always a wrong password.
    #[error("PKCS#12: wrong password (MAC check or decryption failed)")]
    WrongPassword,
    /// Any other PKCS#12 problem (unsupported algorithm, broken structure).
    #[error("PKCS#12: {0}")]
    Pkcs12(String),
    /// More trusted roots than Azure (and we) allow.
    #[error("too many trusted root certificates: {count} (at most {max})")]
    TooManyRoots {
        /// How many were offered.
        count: usize,
        /// The limit, [`crate::MAX_TRUSTED_ROOTS`].
        max: usize,
    },
    /// A certificate given as a trust anchor or issuer is not a CA certificate.
    #[error("not a CA certificate: {0}")]
    NotCa(String),
    /// No chain from the end-entity certificate to a trusted root.
    #[error("certificate issuer is not trusted (no chain to a trusted root)")]
    UnknownIssuer,
    /// A certificate of the chain expired before the validation time.
    #[error("certificate expired")]
    Expired,
    /// A certificate of the chain is not valid yet at the validation time.
    #[error("certificate not valid yet")]
    NotYetValid,
    /// The extended key usage does not allow the role (clientAuth for clients; serverAuth or
    /// IKE-intermediate for gateways).
    #[error("certificate extended key usage does not allow this role")]
    WrongEku,
    /// keyUsage is present but lacks digitalSignature (or a CA lacks keyCertSign).
    #[error("certificate key usage does not allow this use")]
    WrongKeyUsage,
    /// A CA certificate was presented as an end-entity certificate.
    #[error("a CA certificate was presented as an end-entity certificate")]
    CaUsedAsEndEntity,
    /// A signature in the chain did not verify.
    // A root of the same name but another key looks like this too: say what it means.
    #[error("bad signature in certificate chain (not signed by a trusted CA's key)")]
    BadSignature,
    /// An RSA key shorter than [`crate::MIN_RSA_BITS`] (RFC 8247 and NIST: 2048 at least).
    #[error("certificate has an RSA key of {0} bits (at least 2048 are required)")]
    WeakKey(u32),
    /// The certificate's SHA-1 thumbprint is on the revoked list.
    #[error("certificate {0} is revoked")]
    Revoked(Thumbprint),
    /// The gateway certificate does not carry the name the client dialled.
    #[error("certificate is not valid for name {0:?}")]
    NameMismatch(String),
    /// Any other chain validation failure (unsupported algorithm, path length, ...).
    #[error("invalid certificate chain: {0}")]
    InvalidChain(String),
    /// A thumbprint string that is not 20 hex bytes.
    #[error("bad thumbprint {0:?}: want 40 hex digits (':' and spaces allowed)")]
    BadThumbprint(String),
    /// A time outside what X.509 / the validator can represent.
    #[error("time out of range")]
    BadTime,
    /// Certificate generation failed.
    #[error("issuing certificate: {0}")]
    Issue(String),
}

impl From<webpki::Error> for PkiError {
    fn from(e: webpki::Error) -> Self {
        use webpki::Error as W;
        match e {
            W::UnknownIssuer => Self::UnknownIssuer,
            W::CertExpired { .. } => Self::Expired,
            W::CertNotValidYet { .. } => Self::NotYetValid,
            W::RequiredEkuNotFoundContext(_) | W::EmptyEkuExtension => Self::WrongEku,
            #[allow(deprecated)]
            W::RequiredEkuNotFound => Self::WrongEku,
            W::CaUsedAsEndEntity => Self::CaUsedAsEndEntity,
            W::InvalidSignatureForPublicKey => Self::BadSignature,
            W::CertRevoked => Self::InvalidChain("revoked".into()),
            W::BadDer | W::BadDerTime | W::TrailingData(_) => Self::BadEncoding(format!("{e:?}")),
            other => Self::InvalidChain(format!("{other:?}")),
        }
    }
}

impl From<rcgen::Error> for PkiError {
    fn from(e: rcgen::Error) -> Self {
        Self::Issue(e.to_string())
    }
}
