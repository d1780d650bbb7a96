//! rustls glue both roles share: the provider and versions, the description and MSK of a
//! finished handshake (RFC 5216 2.3, RFC 9190 2.3), and our IKE key as a rustls signer.

use std::sync::Arc;

use ipsec_crypto::{HashAlg, KeyType, SignatureScheme as IkeScheme, Signer as IkeSigner};
use rustls::crypto::CryptoProvider;
use rustls::sign::Signer;
use rustls::{SignatureAlgorithm, SignatureScheme};
use zeroize::Zeroizing;

use super::framing::{EapError, TYPE_TLS};

/// RFC 5216 2.3: MSK = first 64 octets of the key material.
const MSK_LEN: usize = 64;
/// RFC 5216 2.3 key derivation (TLS 1.2), which is the RFC 5705 exporter without context.
const MSK_LABEL: &[u8] = b"client EAP encryption";
/// RFC 9190 2.3 key derivation (TLS 1.3): 128 octets, the MSK first, context the type code.
const MSK_LABEL_13: &[u8] = b"EXPORTER_EAP_TLS_Key_Material";
const KEY_MATERIAL_LEN_13: usize = 128;
/// RFC 9190 2.5: the server's commitment message (one octet of application data).
pub(super) const COMMITMENT: u8 = 0x00;

/// `TLS 1.3, TLS13_AES_256_GCM_SHA384`: what a finished handshake used.
pub(super) fn describe<D>(tls: &rustls::ConnectionCommon<D>) -> String {
    let version = match tls.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3".to_owned(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2".to_owned(),
        other => format!("{other:?}"),
    };
    match tls.negotiated_cipher_suite() {
        Some(suite) => format!("{version}, {:?}", suite.suite()),
        None => version,
    }
}

/// The MSK of a finished handshake, by the negotiated version's rule; `pre_rfc9190`: a
/// TLS 1.3 peer that ended without the commitment message, as strongSwan 5.9 does, which
/// derives it with RFC 5216's label through the TLS 1.3 exporter (128 octets, no context).
pub(super) fn derive_msk<D>(
    tls: &rustls::ConnectionCommon<D>,
    pre_rfc9190: bool,
) -> Result<Zeroizing<Vec<u8>>, EapError> {
    let tls13 = tls.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3);
    let (label, context, len) = match (tls13, pre_rfc9190) {
        (true, false) => (MSK_LABEL_13, Some(&[TYPE_TLS][..]), KEY_MATERIAL_LEN_13),
        (true, true) => (MSK_LABEL, None, KEY_MATERIAL_LEN_13),
        (false, _) => (MSK_LABEL, None, MSK_LEN),
    };
    let mut material = tls
        .export_keying_material(Zeroizing::new(vec![0u8; len]), label, context)
        .map_err(|e| EapError::Tls(e.to_string()))?;
    material.truncate(MSK_LEN);
    Ok(material)
}

pub(super) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

pub(super) const VERSIONS_12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
pub(super) const VERSIONS_13: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Our IKE signing key as a rustls key.
#[derive(Debug)]
pub(super) struct TlsKey(pub(super) Arc<dyn IkeSigner>);

fn scheme_pair(s: SignatureScheme) -> Option<IkeScheme> {
    Some(match s {
        SignatureScheme::RSA_PSS_SHA256 => IkeScheme::RsaPss(HashAlg::Sha256),
        SignatureScheme::RSA_PSS_SHA384 => IkeScheme::RsaPss(HashAlg::Sha384),
        SignatureScheme::RSA_PSS_SHA512 => IkeScheme::RsaPss(HashAlg::Sha512),
        SignatureScheme::RSA_PKCS1_SHA256 => IkeScheme::RsaPkcs1(HashAlg::Sha256),
        SignatureScheme::RSA_PKCS1_SHA384 => IkeScheme::RsaPkcs1(HashAlg::Sha384),
        SignatureScheme::RSA_PKCS1_SHA512 => IkeScheme::RsaPkcs1(HashAlg::Sha512),
        SignatureScheme::ECDSA_NISTP256_SHA256 => IkeScheme::EcdsaDer(HashAlg::Sha256),
        SignatureScheme::ECDSA_NISTP384_SHA384 => IkeScheme::EcdsaDer(HashAlg::Sha384),
        _ => return None,
    })
}

impl rustls::sign::SigningKey for TlsKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered.iter().find_map(|s| {
            let ike = scheme_pair(*s).filter(|i| self.0.supports(*i))?;
            Some(Box::new(TlsSigner {
                key: self.0.clone(),
                scheme: *s,
                ike,
            }) as Box<dyn Signer>)
        })
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        match self.0.key_type() {
            KeyType::Rsa => SignatureAlgorithm::RSA,
            KeyType::EcdsaP256 | KeyType::EcdsaP384 => SignatureAlgorithm::ECDSA,
        }
    }
}

#[derive(Debug)]
struct TlsSigner {
    key: Arc<dyn IkeSigner>,
    scheme: SignatureScheme,
    ike: IkeScheme,
}

impl Signer for TlsSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.key
            .sign(self.ike, message)
            .map_err(|e| rustls::Error::General(e.to_string()))
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}
