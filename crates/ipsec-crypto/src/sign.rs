//! Signatures for the IKE AUTH payload: classic methods 1 (RSA PKCS#1 v1.5 SHA-1), 9 and 10
//! (ECDSA with fixed r ‖ s, RFC 4754) and method 14 (RFC 7427 Digital Signature, with the
//! AlgorithmIdentifier prefix).

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey};
use rsa::pkcs8::DecodePrivateKey;

use crate::CryptoError;
use crate::transforms::HashAlg;

/// A signature algorithm as used in IKEv2 AUTH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureScheme {
    /// RSASSA-PKCS1-v1_5 with the given hash. Auth method 1 is `RsaPkcs1(Sha1)`.
    RsaPkcs1(HashAlg),
    /// RSASSA-PSS with the given hash, MGF1 with the same hash, salt length = hash length
    /// (RFC 7427 / RFC 8247). SHA-1 is not supported.
    RsaPss(HashAlg),
    /// ECDSA P-256 with SHA-256, signature = r ‖ s (auth method 9, RFC 4754).
    EcdsaP256Sha256Fixed,
    /// ECDSA P-384 with SHA-384, signature = r ‖ s (auth method 10, RFC 4754).
    EcdsaP384Sha384Fixed,
    /// ECDSA with the given hash and an ASN.1 DER `Ecdsa-Sig-Value` (RFC 7427); the curve is
    /// the key's. Signing supports P-256/SHA-256 and P-384/SHA-384; verifying also accepts
    /// the other SHA-2 hashes on either curve.
    EcdsaDer(HashAlg),
}

/// IKEv2 Authentication Method numbers (RFC 7296 3.8, RFC 4754, RFC 7427).
pub mod auth_method {
    /// RSA Digital Signature (PKCS#1 v1.5 with SHA-1).
    pub const RSA_DIGITAL_SIGNATURE: u8 = 1;
    /// Shared Key Message Integrity Code.
    pub const SHARED_KEY_MIC: u8 = 2;
    /// ECDSA with SHA-256 on the P-256 curve.
    pub const ECDSA_SHA256_P256: u8 = 9;
    /// ECDSA with SHA-384 on the P-384 curve.
    pub const ECDSA_SHA384_P384: u8 = 10;
    /// Digital Signature (RFC 7427).
    pub const DIGITAL_SIGNATURE: u8 = 14;
}

impl SignatureScheme {
    /// Every scheme, for [`SignatureScheme::from_name`].
    const ALL: [SignatureScheme; 14] = [
        Self::RsaPkcs1(HashAlg::Sha1),
        Self::RsaPkcs1(HashAlg::Sha256),
        Self::RsaPkcs1(HashAlg::Sha384),
        Self::RsaPkcs1(HashAlg::Sha512),
        Self::RsaPss(HashAlg::Sha1),
        Self::RsaPss(HashAlg::Sha256),
        Self::RsaPss(HashAlg::Sha384),
        Self::RsaPss(HashAlg::Sha512),
        Self::EcdsaP256Sha256Fixed,
        Self::EcdsaP384Sha384Fixed,
        Self::EcdsaDer(HashAlg::Sha1),
        Self::EcdsaDer(HashAlg::Sha256),
        Self::EcdsaDer(HashAlg::Sha384),
        Self::EcdsaDer(HashAlg::Sha512),
    ];

    /// A stable name such as `ecdsa-der-sha256`, for requests between processes (a signing
    /// helper is told the scheme by name).
    pub fn name(self) -> &'static str {
        use HashAlg::*;
        match self {
            Self::RsaPkcs1(Sha1) => "rsa-pkcs1-sha1",
            Self::RsaPkcs1(Sha256) => "rsa-pkcs1-sha256",
            Self::RsaPkcs1(Sha384) => "rsa-pkcs1-sha384",
            Self::RsaPkcs1(Sha512) => "rsa-pkcs1-sha512",
            Self::RsaPss(Sha1) => "rsa-pss-sha1",
            Self::RsaPss(Sha256) => "rsa-pss-sha256",
            Self::RsaPss(Sha384) => "rsa-pss-sha384",
            Self::RsaPss(Sha512) => "rsa-pss-sha512",
            Self::EcdsaP256Sha256Fixed => "ecdsa-p256-sha256-fixed",
            Self::EcdsaP384Sha384Fixed => "ecdsa-p384-sha384-fixed",
            Self::EcdsaDer(Sha1) => "ecdsa-der-sha1",
            Self::EcdsaDer(Sha256) => "ecdsa-der-sha256",
            Self::EcdsaDer(Sha384) => "ecdsa-der-sha384",
            Self::EcdsaDer(Sha512) => "ecdsa-der-sha512",
        }
    }

    /// The scheme of a [`SignatureScheme::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The scheme implied by a classic auth method (1, 9, 10); `None` for others (14 carries
    /// its scheme in the AUTH data, see [`split_rfc7427_auth_data`]).
    pub fn for_auth_method(method: u8) -> Option<Self> {
        match method {
            auth_method::RSA_DIGITAL_SIGNATURE => Some(Self::RsaPkcs1(HashAlg::Sha1)),
            auth_method::ECDSA_SHA256_P256 => Some(Self::EcdsaP256Sha256Fixed),
            auth_method::ECDSA_SHA384_P384 => Some(Self::EcdsaP384Sha384Fixed),
            _ => None,
        }
    }

    /// The hash algorithm, e.g. to match against the peer's SIGNATURE_HASH_ALGORITHMS.
    pub fn hash(self) -> HashAlg {
        match self {
            Self::RsaPkcs1(h) | Self::RsaPss(h) | Self::EcdsaDer(h) => h,
            Self::EcdsaP256Sha256Fixed => HashAlg::Sha256,
            Self::EcdsaP384Sha384Fixed => HashAlg::Sha384,
        }
    }

    /// The DER AlgorithmIdentifier that prefixes an auth-method-14 signature, or `None` for
    /// the fixed-form ECDSA schemes and the unsupported combinations (PSS/ECDSA with SHA-1).
    pub fn rfc7427_algorithm_identifier(self) -> Option<&'static [u8]> {
        match self {
            Self::RsaPkcs1(HashAlg::Sha1) => Some(SHA1_WITH_RSA),
            Self::RsaPkcs1(HashAlg::Sha256) => Some(SHA256_WITH_RSA),
            Self::RsaPkcs1(HashAlg::Sha384) => Some(SHA384_WITH_RSA),
            Self::RsaPkcs1(HashAlg::Sha512) => Some(SHA512_WITH_RSA),
            Self::RsaPss(HashAlg::Sha256) => Some(RSA_PSS_SHA256),
            Self::RsaPss(HashAlg::Sha384) => Some(RSA_PSS_SHA384),
            Self::RsaPss(HashAlg::Sha512) => Some(RSA_PSS_SHA512),
            Self::EcdsaDer(HashAlg::Sha256) => Some(ECDSA_WITH_SHA256),
            Self::EcdsaDer(HashAlg::Sha384) => Some(ECDSA_WITH_SHA384),
            Self::EcdsaDer(HashAlg::Sha512) => Some(ECDSA_WITH_SHA512),
            Self::RsaPss(HashAlg::Sha1)
            | Self::EcdsaDer(HashAlg::Sha1)
            | Self::EcdsaP256Sha256Fixed
            | Self::EcdsaP384Sha384Fixed => None,
        }
    }

    /// Parses an RFC 7427 AlgorithmIdentifier. Accepts the encodings we emit, the RFC 7427
    /// A.4.3 RSASSA-PSS form that also spells out the default trailerField, and RSA
    /// identifiers with absent instead of NULL parameters. PSS is accepted only with MGF1
    /// over the same hash and salt length = hash length (what the backend verifies).
    pub fn from_rfc7427_algorithm_identifier(der: &[u8]) -> Option<Self> {
        let (tag, body, rest) = der_tlv(der)?;
        if tag != 0x30 || !rest.is_empty() {
            return None;
        }
        let (tag, oid, params) = der_tlv(body)?;
        if tag != 0x06 {
            return None;
        }
        let rsa_params_ok = params.is_empty() || params == [0x05, 0x00];
        match oid {
            OID_SHA1_WITH_RSA if rsa_params_ok => Some(Self::RsaPkcs1(HashAlg::Sha1)),
            OID_SHA256_WITH_RSA if rsa_params_ok => Some(Self::RsaPkcs1(HashAlg::Sha256)),
            OID_SHA384_WITH_RSA if rsa_params_ok => Some(Self::RsaPkcs1(HashAlg::Sha384)),
            OID_SHA512_WITH_RSA if rsa_params_ok => Some(Self::RsaPkcs1(HashAlg::Sha512)),
            OID_ECDSA_WITH_SHA256 if params.is_empty() => Some(Self::EcdsaDer(HashAlg::Sha256)),
            OID_ECDSA_WITH_SHA384 if params.is_empty() => Some(Self::EcdsaDer(HashAlg::Sha384)),
            OID_ECDSA_WITH_SHA512 if params.is_empty() => Some(Self::EcdsaDer(HashAlg::Sha512)),
            OID_RSASSA_PSS => parse_pss_params(params).map(Self::RsaPss),
            _ => None,
        }
    }
}

/// Splits auth-method-14 AUTH data (RFC 7427 3: 1-byte ASN.1 length ‖ AlgorithmIdentifier ‖
/// signature) into the scheme and the signature value.
pub fn split_rfc7427_auth_data(auth_data: &[u8]) -> Result<(SignatureScheme, &[u8]), CryptoError> {
    let (&len, rest) = auth_data.split_first().ok_or(CryptoError::BadSignature)?;
    let len = usize::from(len);
    if rest.len() < len {
        return Err(CryptoError::BadSignature);
    }
    let (alg_id, signature) = rest.split_at(len);
    let scheme = SignatureScheme::from_rfc7427_algorithm_identifier(alg_id)
        .ok_or(CryptoError::UnsupportedAlgorithmIdentifier)?;
    Ok((scheme, signature))
}

/// Builds auth-method-14 AUTH data: 1-byte length ‖ AlgorithmIdentifier ‖ signature.
pub fn build_rfc7427_auth_data(
    scheme: SignatureScheme,
    signature: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let alg_id = scheme
        .rfc7427_algorithm_identifier()
        .ok_or(CryptoError::SchemeKeyMismatch)?;
    let len = u8::try_from(alg_id.len()).map_err(|_| CryptoError::SchemeKeyMismatch)?;
    let mut out = Vec::with_capacity(1 + alg_id.len() + signature.len());
    out.push(len);
    out.extend_from_slice(alg_id);
    out.extend_from_slice(signature);
    Ok(out)
}

/// The kind of a loaded private key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// RSA (any size aws-lc accepts, 2048-8192 bits for signing).
    Rsa,
    /// ECDSA on P-256.
    EcdsaP256,
    /// ECDSA on P-384.
    EcdsaP384,
}

impl KeyType {
    /// True if a key of this type can sign with `scheme`.
    pub fn supports(self, scheme: SignatureScheme) -> bool {
        use SignatureScheme as S;
        match (self, scheme) {
            (KeyType::Rsa, S::RsaPkcs1(_)) => true,
            (KeyType::Rsa, S::RsaPss(h)) => h != HashAlg::Sha1,
            (KeyType::EcdsaP256, S::EcdsaP256Sha256Fixed | S::EcdsaDer(HashAlg::Sha256)) => true,
            (KeyType::EcdsaP384, S::EcdsaP384Sha384Fixed | S::EcdsaDer(HashAlg::Sha384)) => true,
            _ => false,
        }
    }
}

/// Signs with a private key it may not hand out: a key loaded here ([`SigningKey`]), or one
/// kept by another process (the client's per-user helper holds a user's key and signs on
/// request). Calls may block briefly; an error fails the authentication that asked.
pub trait Signer: Send + Sync + std::fmt::Debug {
    /// The key's type.
    fn key_type(&self) -> KeyType;
    /// True if the key can sign with `scheme`.
    fn supports(&self, scheme: SignatureScheme) -> bool {
        self.key_type().supports(scheme)
    }
    /// Signs `message` (the AUTH signed octets, or a TLS handshake hash input).
    fn sign(&self, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>, CryptoError>;
}

impl Signer for SigningKey {
    fn key_type(&self) -> KeyType {
        SigningKey::key_type(self)
    }
    fn sign(&self, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        SigningKey::sign(self, scheme, message)
    }
}

/// A private key for signing AUTH payloads. Key material lives in aws-lc (which cleanses
/// memory on free) and, for RSA, in the `rsa` crate's key (zeroized on drop) used only for
/// PKCS#1 v1.5 with SHA-1, which aws-lc cannot sign.
pub struct SigningKey {
    inner: KeyInner,
}

enum KeyInner {
    Rsa {
        aws: RsaKeyPair,
        legacy: Box<rsa::PrivateKey>,
    },
    Ecdsa {
        key_type: KeyType,
        fixed: EcdsaKeyPair,
        der: EcdsaKeyPair,
    },
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_type", &self.key_type())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Loads an unencrypted PKCS#8 `PrivateKeyInfo` (RSA, ECDSA P-256 or P-384).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, CryptoError> {
        Self::parse(der, false)
    }

    /// Loads an unencrypted private key in PKCS#8, PKCS#1 `RSAPrivateKey` or SEC1/RFC 5915
    /// `ECPrivateKey` (with named curve) DER — the forms found in PEM files.
    pub fn from_der(der: &[u8]) -> Result<Self, CryptoError> {
        Self::parse(der, true)
    }

    fn parse(der: &[u8], traditional_too: bool) -> Result<Self, CryptoError> {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        let rsa_pair = match RsaKeyPair::from_pkcs8(der) {
            Ok(pair) => Some((pair, rsa::PrivateKey::from_pkcs8_der(der).ok())),
            Err(_) if traditional_too => RsaKeyPair::from_der(der)
                .ok()
                .map(|pair| (pair, rsa::PrivateKey::from_pkcs1_der(der).ok())),
            Err(_) => None,
        };
        if let Some((aws, legacy)) = rsa_pair {
            let legacy = legacy.ok_or(CryptoError::PrivateKey)?;
            return Ok(SigningKey {
                inner: KeyInner::Rsa {
                    aws,
                    legacy: Box::new(legacy),
                },
            });
        }
        let load = |alg: &'static signature::EcdsaSigningAlgorithm| {
            if traditional_too {
                EcdsaKeyPair::from_private_key_der(alg, der)
            } else {
                EcdsaKeyPair::from_pkcs8(alg, der)
            }
        };
        for (key_type, fixed_alg, der_alg) in [
            (
                KeyType::EcdsaP256,
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            ),
            (
                KeyType::EcdsaP384,
                &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            ),
        ] {
            if let Ok(fixed) = load(fixed_alg) {
                let der = load(der_alg).map_err(|_| CryptoError::PrivateKey)?;
                return Ok(SigningKey {
                    inner: KeyInner::Ecdsa {
                        key_type,
                        fixed,
                        der,
                    },
                });
            }
        }
        Err(CryptoError::PrivateKey)
    }

    /// The key's type.
    pub fn key_type(&self) -> KeyType {
        match &self.inner {
            KeyInner::Rsa { .. } => KeyType::Rsa,
            KeyInner::Ecdsa { key_type, .. } => *key_type,
        }
    }

    /// The public key as X.509 SubjectPublicKeyInfo DER.
    pub fn public_key_spki_der(&self) -> Result<Vec<u8>, CryptoError> {
        let der = match &self.inner {
            KeyInner::Rsa { aws, .. } => aws.public_key().as_der().map(|d| d.as_ref().to_vec()),
            KeyInner::Ecdsa { fixed, .. } => {
                fixed.public_key().as_der().map(|d| d.as_ref().to_vec())
            }
        };
        der.map_err(|_| CryptoError::Backend("public key encoding"))
    }

    /// True if this key can sign with `scheme`.
    pub fn supports(&self, scheme: SignatureScheme) -> bool {
        self.key_type().supports(scheme)
    }

    /// Signs `message` (the AUTH signed octets, see [`crate::auth_signed_octets`]).
    pub fn sign(&self, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if !self.supports(scheme) {
            return Err(CryptoError::SchemeKeyMismatch);
        }
        let rng = SystemRandom::new();
        match (&self.inner, scheme) {
            (KeyInner::Rsa { legacy, .. }, SignatureScheme::RsaPkcs1(HashAlg::Sha1)) => {
                let digest = aws_lc_rs::digest::digest(HashAlg::Sha1.digest_algorithm(), message);
                let padding = rsa::Pkcs1v15Sign {
                    hash_len: Some(digest.as_ref().len()),
                    prefix: SHA1_DIGEST_INFO_PREFIX.into(),
                };
                legacy
                    .sign(padding, digest.as_ref())
                    .map_err(|_| CryptoError::Sign)
            }
            (KeyInner::Rsa { aws, .. }, scheme) => {
                let encoding: &'static dyn signature::RsaEncoding = match scheme {
                    SignatureScheme::RsaPkcs1(HashAlg::Sha256) => &signature::RSA_PKCS1_SHA256,
                    SignatureScheme::RsaPkcs1(HashAlg::Sha384) => &signature::RSA_PKCS1_SHA384,
                    SignatureScheme::RsaPkcs1(HashAlg::Sha512) => &signature::RSA_PKCS1_SHA512,
                    SignatureScheme::RsaPss(HashAlg::Sha256) => &signature::RSA_PSS_SHA256,
                    SignatureScheme::RsaPss(HashAlg::Sha384) => &signature::RSA_PSS_SHA384,
                    SignatureScheme::RsaPss(HashAlg::Sha512) => &signature::RSA_PSS_SHA512,
                    _ => return Err(CryptoError::SchemeKeyMismatch),
                };
                let mut sig = vec![0u8; aws.public_modulus_len()];
                aws.sign(encoding, &rng, message, &mut sig)
                    .map_err(|_| CryptoError::Sign)?;
                Ok(sig)
            }
            (KeyInner::Ecdsa { fixed, der, .. }, scheme) => {
                let key = match scheme {
                    SignatureScheme::EcdsaDer(_) => der,
                    _ => fixed,
                };
                let sig = key.sign(&rng, message).map_err(|_| CryptoError::Sign)?;
                Ok(sig.as_ref().to_vec())
            }
        }
    }
}

/// Verifies `signature` over `message` with the peer's public key given as X.509
/// SubjectPublicKeyInfo DER (from its end-entity certificate). RSA keys must be 2048-8192
/// bits.
pub fn verify(
    scheme: SignatureScheme,
    spki_der: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), CryptoError> {
    use SignatureScheme as S;
    use aws_lc_rs::signature as sig;
    let candidates: &[&'static dyn sig::VerificationAlgorithm] = match scheme {
        S::RsaPkcs1(HashAlg::Sha1) => &[&sig::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY],
        S::RsaPkcs1(HashAlg::Sha256) => &[&sig::RSA_PKCS1_2048_8192_SHA256],
        S::RsaPkcs1(HashAlg::Sha384) => &[&sig::RSA_PKCS1_2048_8192_SHA384],
        S::RsaPkcs1(HashAlg::Sha512) => &[&sig::RSA_PKCS1_2048_8192_SHA512],
        S::RsaPss(HashAlg::Sha256) => &[&sig::RSA_PSS_2048_8192_SHA256],
        S::RsaPss(HashAlg::Sha384) => &[&sig::RSA_PSS_2048_8192_SHA384],
        S::RsaPss(HashAlg::Sha512) => &[&sig::RSA_PSS_2048_8192_SHA512],
        S::RsaPss(HashAlg::Sha1) | S::EcdsaDer(HashAlg::Sha1) => {
            return Err(CryptoError::SchemeKeyMismatch);
        }
        S::EcdsaP256Sha256Fixed => &[&sig::ECDSA_P256_SHA256_FIXED],
        S::EcdsaP384Sha384Fixed => &[&sig::ECDSA_P384_SHA384_FIXED],
        S::EcdsaDer(HashAlg::Sha256) => {
            &[&sig::ECDSA_P256_SHA256_ASN1, &sig::ECDSA_P384_SHA256_ASN1]
        }
        S::EcdsaDer(HashAlg::Sha384) => {
            &[&sig::ECDSA_P256_SHA384_ASN1, &sig::ECDSA_P384_SHA384_ASN1]
        }
        S::EcdsaDer(HashAlg::Sha512) => {
            &[&sig::ECDSA_P256_SHA512_ASN1, &sig::ECDSA_P384_SHA512_ASN1]
        }
    };
    for alg in candidates {
        if UnparsedPublicKey::new(*alg, spki_der)
            .verify(message, signature)
            .is_ok()
        {
            return Ok(());
        }
    }
    Err(CryptoError::BadSignature)
}

/// DigestInfo prefix for SHA-1 (RFC 8017 9.2 note 1).
const SHA1_DIGEST_INFO_PREFIX: &[u8] = &[
    0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14,
];

// AlgorithmIdentifier DER blobs. RFC 7427 appendix A.1 (sha*WithRSAEncryption) and A.3
// (ecdsa-with-SHA*).
const SHA1_WITH_RSA: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05, 0x05, 0x00,
];
const SHA256_WITH_RSA: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
];
const SHA384_WITH_RSA: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c, 0x05, 0x00,
];
const SHA512_WITH_RSA: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d, 0x05, 0x00,
];
const ECDSA_WITH_SHA256: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];
const ECDSA_WITH_SHA384: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03,
];
const ECDSA_WITH_SHA512: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04,
];

// RSASSA-PSS (RFC 4055 3.1) with hashAlgorithm = H, maskGenAlgorithm = MGF1(H), saltLength =
// |H|, trailerField omitted because it has the DER default value. This is the canonical form
// OpenSSL and strongSwan produce (RFC 7427 A.4.3 shows the same SHA-256 parameters but also
// spells out trailerField; we accept that form when parsing).
const RSA_PSS_SHA256: &[u8] = &[
    0x30, 0x41, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30, 0x34, 0xa0,
    0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00,
    0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30,
    0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0xa2, 0x03,
    0x02, 0x01, 0x20,
];
const RSA_PSS_SHA384: &[u8] = &[
    0x30, 0x41, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30, 0x34, 0xa0,
    0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00,
    0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30,
    0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0xa2, 0x03,
    0x02, 0x01, 0x30,
];
const RSA_PSS_SHA512: &[u8] = &[
    0x30, 0x41, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30, 0x34, 0xa0,
    0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00,
    0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30,
    0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0xa2, 0x03,
    0x02, 0x01, 0x40,
];

// OID contents (without tag and length).
const OID_SHA1_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05];
const OID_SHA256_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
const OID_SHA384_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
const OID_SHA512_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
const OID_RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
const OID_MGF1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08];
const OID_ECDSA_WITH_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const OID_ECDSA_WITH_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
const OID_ECDSA_WITH_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];
const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const OID_SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
const OID_SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];

/// One DER TLV: (tag, contents, rest). Definite lengths up to 2 length bytes; single-byte tags.
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81 => {
            let (&b, rest) = rest.split_first()?;
            (usize::from(b), rest)
        }
        0x82 => {
            let bytes = rest.get(..2)?;
            (
                usize::from(bytes[0]) << 8 | usize::from(bytes[1]),
                rest.get(2..)?,
            )
        }
        _ => return None,
    };
    let contents = rest.get(..len)?;
    Some((tag, contents, rest.get(len..)?))
}

/// A hash AlgorithmIdentifier: SEQUENCE { OID, [NULL] }.
fn parse_hash_alg_id(der: &[u8]) -> Option<HashAlg> {
    let (tag, body, rest) = der_tlv(der)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let (tag, oid, params) = der_tlv(body)?;
    if tag != 0x06 || !(params.is_empty() || params == [0x05, 0x00]) {
        return None;
    }
    match oid {
        OID_SHA256 => Some(HashAlg::Sha256),
        OID_SHA384 => Some(HashAlg::Sha384),
        OID_SHA512 => Some(HashAlg::Sha512),
        _ => None,
    }
}

/// RSASSA-PSS-params with explicit SHA-2 hash, MGF1 over the same hash, salt = hash length,
/// optional trailerField 1.
fn parse_pss_params(params: &[u8]) -> Option<HashAlg> {
    let (tag, mut body, rest) = der_tlv(params)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let (tag, hash_field, next) = der_tlv(body)?;
    if tag != 0xa0 {
        return None;
    }
    let hash = parse_hash_alg_id(hash_field)?;
    body = next;
    let (tag, mgf_field, next) = der_tlv(body)?;
    if tag != 0xa1 {
        return None;
    }
    let (tag, mgf_seq, mgf_rest) = der_tlv(mgf_field)?;
    if tag != 0x30 || !mgf_rest.is_empty() {
        return None;
    }
    let (tag, mgf_oid, mgf_hash) = der_tlv(mgf_seq)?;
    if tag != 0x06 || mgf_oid != OID_MGF1 || parse_hash_alg_id(mgf_hash)? != hash {
        return None;
    }
    body = next;
    let (tag, salt_field, next) = der_tlv(body)?;
    let expected_salt = u8::try_from(hash.digest_algorithm().output_len).ok()?;
    if tag != 0xa2 || salt_field != [0x02, 0x01, expected_salt] {
        return None;
    }
    if !next.is_empty() {
        let (tag, trailer, rest) = der_tlv(next)?;
        if tag != 0xa3 || trailer != [0x02, 0x01, 0x01] || !rest.is_empty() {
            return None;
        }
    }
    Some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_name_maps_back() {
        for s in SignatureScheme::ALL {
            assert_eq!(SignatureScheme::from_name(s.name()), Some(s));
        }
        assert_eq!(SignatureScheme::from_name("rsa-pkcs1-md5"), None);
    }

    /// RFC 7427 appendix A.4.3, "RSASSA-PSS with SHA-256" (with the explicit default
    /// trailerField).
    const RFC7427_A_4_3: &[u8] = &[
        0x30, 0x46, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30, 0x39,
        0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01,
        0x01, 0x08, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0xa2, 0x03, 0x02, 0x01, 0x20, 0xa3, 0x03, 0x02, 0x01, 0x01,
    ];

    const ALL_7427: [SignatureScheme; 10] = [
        SignatureScheme::RsaPkcs1(HashAlg::Sha1),
        SignatureScheme::RsaPkcs1(HashAlg::Sha256),
        SignatureScheme::RsaPkcs1(HashAlg::Sha384),
        SignatureScheme::RsaPkcs1(HashAlg::Sha512),
        SignatureScheme::RsaPss(HashAlg::Sha256),
        SignatureScheme::RsaPss(HashAlg::Sha384),
        SignatureScheme::RsaPss(HashAlg::Sha512),
        SignatureScheme::EcdsaDer(HashAlg::Sha256),
        SignatureScheme::EcdsaDer(HashAlg::Sha384),
        SignatureScheme::EcdsaDer(HashAlg::Sha512),
    ];

    #[test]
    fn algorithm_identifiers_round_trip_and_are_well_formed_der() {
        for s in ALL_7427 {
            let blob = s.rfc7427_algorithm_identifier().unwrap();
            let (tag, _, rest) = der_tlv(blob).unwrap();
            assert_eq!((tag, rest.len()), (0x30, 0), "{s:?}");
            assert_eq!(
                SignatureScheme::from_rfc7427_algorithm_identifier(blob),
                Some(s)
            );
        }
        assert_eq!(
            SignatureScheme::EcdsaP256Sha256Fixed.rfc7427_algorithm_identifier(),
            None
        );
    }

    #[test]
    fn rfc7427_pss_form_with_trailer_field_is_accepted() {
        assert_eq!(
            SignatureScheme::from_rfc7427_algorithm_identifier(RFC7427_A_4_3),
            Some(SignatureScheme::RsaPss(HashAlg::Sha256))
        );
    }

    #[test]
    fn malformed_or_unsupported_identifiers_are_rejected() {
        // RFC 7427 A.4.1 / A.4.2: PSS with empty / default (SHA-1) parameters.
        let pss_empty = [
            0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a,
        ];
        let pss_default = [
            0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30,
            0x00,
        ];
        for bad in [
            &pss_empty[..],
            &pss_default[..],
            &[],
            &[0x30],
            &RFC7427_A_4_3[..70],
        ] {
            assert_eq!(
                SignatureScheme::from_rfc7427_algorithm_identifier(bad),
                None
            );
        }
        // Salt length 20 with SHA-256 is not what the backend verifies.
        let mut wrong_salt = RSA_PSS_SHA256.to_vec();
        let last = wrong_salt.len() - 1;
        wrong_salt[last] = 20;
        assert_eq!(
            SignatureScheme::from_rfc7427_algorithm_identifier(&wrong_salt),
            None
        );
        // RSA identifier without the NULL is tolerated.
        let no_null = [
            0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b,
        ];
        assert_eq!(
            SignatureScheme::from_rfc7427_algorithm_identifier(&no_null),
            Some(SignatureScheme::RsaPkcs1(HashAlg::Sha256))
        );
    }

    #[test]
    fn auth_data_split_and_build() {
        let s = SignatureScheme::EcdsaDer(HashAlg::Sha384);
        let data = build_rfc7427_auth_data(s, b"SIG").unwrap();
        assert_eq!(data[0] as usize, ECDSA_WITH_SHA384.len());
        assert_eq!(split_rfc7427_auth_data(&data).unwrap(), (s, &b"SIG"[..]));
        assert!(split_rfc7427_auth_data(&[]).is_err());
        assert!(split_rfc7427_auth_data(&data[..5]).is_err());
        assert!(build_rfc7427_auth_data(SignatureScheme::EcdsaP256Sha256Fixed, b"x").is_err());
    }

    #[test]
    fn classic_auth_methods_map_to_schemes() {
        assert_eq!(
            SignatureScheme::for_auth_method(1),
            Some(SignatureScheme::RsaPkcs1(HashAlg::Sha1))
        );
        assert_eq!(
            SignatureScheme::for_auth_method(9),
            Some(SignatureScheme::EcdsaP256Sha256Fixed)
        );
        assert_eq!(
            SignatureScheme::for_auth_method(10),
            Some(SignatureScheme::EcdsaP384Sha384Fixed)
        );
        assert_eq!(SignatureScheme::for_auth_method(14), None);
    }
}
