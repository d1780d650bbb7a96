//! Private keys: always handed out as PKCS#8 DER in a zeroizing buffer, with their type.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair,
};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use zeroize::Zeroizing;

use crate::PkiError;

/// The type of a loaded private key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// ECDSA on NIST P-256 (secp256r1).
    EcdsaP256,
    /// ECDSA on NIST P-384 (secp384r1).
    EcdsaP384,
    /// RSA; the modulus size in bits.
    Rsa(u32),
}

impl KeyType {
    /// True for RSA keys (they also get keyEncipherment in issued certificates).
    pub fn is_rsa(self) -> bool {
        matches!(self, Self::Rsa(_))
    }
}

/// Key algorithm to generate when issuing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum KeyAlgorithm {
    /// ECDSA P-256 with SHA-256 signatures (the default: small, fast, what Windows accepts).
    #[default]
    P256,
    /// ECDSA P-384 with SHA-384 signatures.
    P384,
    /// RSA 2048 with PKCS#1 v1.5 SHA-256 signatures.
    Rsa2048,
    /// RSA 3072 with PKCS#1 v1.5 SHA-256 signatures.
    Rsa3072,
    /// RSA 4096 with PKCS#1 v1.5 SHA-256 signatures.
    Rsa4096,
}

impl KeyAlgorithm {
    /// Every variant, for tests and help texts.
    pub const ALL: [KeyAlgorithm; 5] = [
        Self::P256,
        Self::P384,
        Self::Rsa2048,
        Self::Rsa3072,
        Self::Rsa4096,
    ];

    /// The lowercase name used on the command line (`p256`, `rsa2048`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::P256 => "p256",
            Self::P384 => "p384",
            Self::Rsa2048 => "rsa2048",
            Self::Rsa3072 => "rsa3072",
            Self::Rsa4096 => "rsa4096",
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown key algorithm {s:?} (p256, p384, rsa2048, rsa3072, rsa4096)")
            })
    }
}

/// A private key as unencrypted PKCS#8 DER (what the signing code takes), wiped on drop.
#[derive(Clone)]
pub struct PrivateKey {
    pkcs8: Zeroizing<Vec<u8>>,
    key_type: KeyType,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("key_type", &self.key_type)
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// Takes unencrypted PKCS#8 DER; checks it parses and finds its type.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, PkiError> {
        let key_type = pkcs8_key_type(der)?;
        Ok(Self {
            pkcs8: Zeroizing::new(der.to_vec()),
            key_type,
        })
    }

    /// Loads a private key from PEM (`PRIVATE KEY` = PKCS#8, `RSA PRIVATE KEY` = PKCS#1,
    /// `EC PRIVATE KEY` = SEC1) or from DER in any of those three forms.
    /// Encrypted PEM keys are refused.
    pub fn load(data: &[u8]) -> Result<Self, PkiError> {
        if crate::load::looks_like_pem(data) {
            if contains(data, b"ENCRYPTED PRIVATE KEY") || contains(data, b"Proc-Type: 4,ENCRYPTED")
            {
                return Err(PkiError::UnsupportedKey("encrypted PEM key".into()));
            }
            let key = PrivateKeyDer::from_pem_slice(data).map_err(|e| match e {
                rustls_pki_types::pem::Error::NoItemsFound => PkiError::NoPrivateKey,
                other => PkiError::BadEncoding(format!("PEM: {other:?}")),
            })?;
            return match key {
                PrivateKeyDer::Pkcs8(k) => Self::from_pkcs8_der(k.secret_pkcs8_der()),
                PrivateKeyDer::Pkcs1(k) => Self::from_pkcs1_der(k.secret_pkcs1_der()),
                PrivateKeyDer::Sec1(k) => Self::from_sec1_der(k.secret_sec1_der()),
                _ => Err(PkiError::UnsupportedKey("unknown PEM key form".into())),
            };
        }
        Self::from_pkcs8_der(data)
            .or_else(|_| Self::from_pkcs1_der(data))
            .or_else(|_| Self::from_sec1_der(data))
            .map_err(|_| PkiError::BadEncoding("not a PKCS#8, PKCS#1 or SEC1 private key".into()))
    }

    /// Converts a PKCS#1 `RSAPrivateKey` to PKCS#8.
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self, PkiError> {
        let kp = RsaKeyPair::from_der(der)
            .map_err(|e| PkiError::BadEncoding(format!("PKCS#1 RSA key: {e}")))?;
        let pkcs8 = kp
            .as_der()
            .map_err(|_| PkiError::UnsupportedKey("cannot re-encode RSA key".into()))?;
        Self::from_pkcs8_der(pkcs8.as_ref())
    }

    /// Converts a SEC1 `ECPrivateKey` (P-256 or P-384) to PKCS#8.
    pub fn from_sec1_der(der: &[u8]) -> Result<Self, PkiError> {
        for alg in [
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            &ECDSA_P384_SHA384_ASN1_SIGNING,
        ] {
            if let Ok(kp) = EcdsaKeyPair::from_private_key_der(alg, der) {
                let pkcs8 = kp
                    .to_pkcs8v1()
                    .map_err(|_| PkiError::UnsupportedKey("cannot re-encode EC key".into()))?;
                return Self::from_pkcs8_der(pkcs8.as_ref());
            }
        }
        Err(PkiError::BadEncoding(
            "not a P-256 or P-384 SEC1 EC key".into(),
        ))
    }

    /// The PKCS#8 DER bytes (secret).
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The key's type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// PEM `PRIVATE KEY` text (secret; wiped on drop).
    pub fn to_pem(&self) -> Zeroizing<String> {
        crate::load::pem_encode("PRIVATE KEY", &self.pkcs8)
    }

    /// DER SubjectPublicKeyInfo of the matching public key.
    pub fn public_key_spki(&self) -> Result<Vec<u8>, PkiError> {
        use rcgen::PublicKeyData;
        Ok(self.rcgen_key_pair()?.subject_public_key_info())
    }

    /// The key as an rcgen signer, with the signature algorithm we use for this key type.
    pub(crate) fn rcgen_key_pair(&self) -> Result<rcgen::KeyPair, PkiError> {
        let alg = match self.key_type {
            KeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyType::Rsa(_) => &rcgen::PKCS_RSA_SHA256,
        };
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from(self.pkcs8.as_slice());
        rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, alg).map_err(PkiError::from)
    }

    /// Generates a fresh key with the system RNG (aws-lc).
    pub fn generate(alg: KeyAlgorithm) -> Result<Self, PkiError> {
        let kp = match alg {
            KeyAlgorithm::P256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
            KeyAlgorithm::P384 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?,
            KeyAlgorithm::Rsa2048 => {
                rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)?
            }
            KeyAlgorithm::Rsa3072 => {
                rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_3072)?
            }
            KeyAlgorithm::Rsa4096 => {
                rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_4096)?
            }
        };
        let der = Zeroizing::new(kp.serialize_der());
        Self::from_pkcs8_der(&der)
    }
}

/// Finds the type of a PKCS#8 key by letting aws-lc parse it.
fn pkcs8_key_type(der: &[u8]) -> Result<KeyType, PkiError> {
    if EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der).is_ok() {
        return Ok(KeyType::EcdsaP256);
    }
    if EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, der).is_ok() {
        return Ok(KeyType::EcdsaP384);
    }
    match RsaKeyPair::from_pkcs8(der) {
        Ok(kp) => {
            let bits = u32::try_from(kp.public_modulus_len().saturating_mul(8)).unwrap_or(u32::MAX);
            Ok(KeyType::Rsa(bits))
        }
        Err(e) => Err(PkiError::UnsupportedKey(format!(
            "not a P-256, P-384 or RSA (2048..8192) PKCS#8 key: {e}"
        ))),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
