//! EAP-TLS (RFC 5216, TLS 1.2) inside IKE_AUTH on the responder (RFC 7296 2.16): the EAP
//! codec, the in-memory rustls server and its fragmentation. The IKE side lives in `auth.rs`.

use std::fmt;
use std::sync::Arc;

use ipsec_crypto::{HashAlg, KeyType, SignatureScheme as IkeScheme, Signer as IkeSigner};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig, ServerConnection};
use rustls::sign::{CertifiedKey, Signer};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureAlgorithm, SignatureScheme};
use zeroize::Zeroizing;

const CODE_REQUEST: u8 = 1;
const CODE_RESPONSE: u8 = 2;
const CODE_SUCCESS: u8 = 3;
const CODE_FAILURE: u8 = 4;
/// EAP method types (IANA "Method Types").
pub(super) const TYPE_IDENTITY: u8 = 1;
pub(super) const TYPE_TLS: u8 = 13;

const FLAG_LENGTH: u8 = 0x80;
const FLAG_MORE: u8 = 0x40;
const FLAG_START: u8 = 0x20;

/// TLS bytes per EAP-TLS request, small enough for one unfragmented IKE message.
const FRAGMENT_LEN: usize = 1000;
/// Upper bound of one reassembled TLS flight from the peer (a client certificate flight with a
/// long RSA chain is well below; the peer has not authenticated yet).
const MAX_TLS_MESSAGE: usize = 24 * 1024;
/// Longest EAP identity we keep.
const MAX_IDENTITY: usize = 256;
/// RFC 5216 2.3: MSK = first 64 octets of the key material.
pub(super) const MSK_LEN: usize = 64;
/// RFC 5216 2.3 key derivation, which is the RFC 5705 exporter without context.
const MSK_LABEL: &[u8] = b"client EAP encryption";

/// A malformed or unexpected EAP message, or a TLS failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum EapError {
    #[error("truncated or inconsistent EAP packet")]
    Malformed,
    #[error("unexpected EAP message: {0}")]
    Unexpected(&'static str),
    #[error("EAP-TLS message too large")]
    TooLarge,
    #[error("TLS: {0}")]
    Tls(String),
}

/// A parsed EAP packet (RFC 3748 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct EapPacket<'a> {
    pub code: u8,
    pub identifier: u8,
    /// Method type (requests and responses only).
    pub method: Option<u8>,
    /// Type-Data.
    pub data: &'a [u8],
}

impl<'a> EapPacket<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, EapError> {
        let [code, identifier, l0, l1, rest @ ..] = bytes else {
            return Err(EapError::Malformed);
        };
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        if len != bytes.len() {
            return Err(EapError::Malformed);
        }
        match (*code, rest) {
            (CODE_REQUEST | CODE_RESPONSE, [method, data @ ..]) => Ok(Self {
                code: *code,
                identifier: *identifier,
                method: Some(*method),
                data,
            }),
            (CODE_SUCCESS | CODE_FAILURE, []) => Ok(Self {
                code: *code,
                identifier: *identifier,
                method: None,
                data: &[],
            }),
            _ => Err(EapError::Malformed),
        }
    }
}

fn encode(code: u8, identifier: u8, method: Option<u8>, data: &[u8]) -> Vec<u8> {
    let len = 4 + usize::from(method.is_some()) + data.len();
    let mut out = Vec::with_capacity(len);
    out.push(code);
    out.push(identifier);
    out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
    out.extend(method);
    out.extend_from_slice(data);
    out
}

/// An EAP-Request of `method`.
pub(super) fn request(identifier: u8, method: u8, data: &[u8]) -> Vec<u8> {
    encode(CODE_REQUEST, identifier, Some(method), data)
}

/// EAP-Success.
pub(super) fn success(identifier: u8) -> Vec<u8> {
    encode(CODE_SUCCESS, identifier, None, &[])
}

/// EAP-Failure.
pub(super) fn failure(identifier: u8) -> Vec<u8> {
    encode(CODE_FAILURE, identifier, None, &[])
}

/// An EAP-TLS message (RFC 5216 3.1): flags, optional total length, TLS data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TlsFragment<'a> {
    pub flags: u8,
    pub total_len: Option<u32>,
    pub data: &'a [u8],
}

impl<'a> TlsFragment<'a> {
    pub fn parse(type_data: &'a [u8]) -> Result<Self, EapError> {
        let [flags, rest @ ..] = type_data else {
            return Err(EapError::Malformed);
        };
        if flags & FLAG_LENGTH == 0 {
            return Ok(Self {
                flags: *flags,
                total_len: None,
                data: rest,
            });
        }
        let [a, b, c, d, data @ ..] = rest else {
            return Err(EapError::Malformed);
        };
        Ok(Self {
            flags: *flags,
            total_len: Some(u32::from_be_bytes([*a, *b, *c, *d])),
            data,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.flags];
        if let Some(l) = self.total_len {
            out.extend_from_slice(&l.to_be_bytes());
        }
        out.extend_from_slice(self.data);
        out
    }
}

/// Where the EAP conversation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// EAP-Request/Identity sent.
    Identity,
    /// EAP-TLS running.
    Tls,
    /// EAP-Success sent; the next IKE_AUTH request carries the MSK-based AUTH.
    AwaitAuth,
}

/// What to answer the peer's EAP-Response with.
#[derive(Debug)]
pub(super) enum Step {
    /// Send this EAP-Request.
    Request(Vec<u8>),
    /// The handshake is complete: validate the client certificate, then send EAP-Success.
    Done,
}

/// The responder's EAP-TLS state of one IKE SA.
pub(super) struct EapServer {
    pub phase: Phase,
    identifier: u8,
    tls: Option<ServerConnection>,
    config: Arc<ServerConfig>,
    /// EAP-Response/Identity.
    pub identity: Vec<u8>,
    incoming: Vec<u8>,
    outgoing: Vec<u8>,
    sent: usize,
    /// The payloads of the first IKE_AUTH request (SA, TS, CP, notifies for the Child SA).
    pub first_request: Vec<ike_wire::Payload>,
    /// IDi of the first IKE_AUTH request (its AUTH covers it).
    pub idi: ike_wire::Identification,
    /// Validated peer: identity (canonical) and what the validator said.
    pub validated: Option<(crate::identity::IkeId, crate::identity::ValidatedPeer)>,
    pub msk: Option<Zeroizing<Vec<u8>>>,
}

impl fmt::Debug for EapServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EapServer")
            .field("phase", &self.phase)
            .field("identifier", &self.identifier)
            .field("msk", &self.msk.as_ref().map(|_| "<secret>"))
            .finish_non_exhaustive()
    }
}

impl EapServer {
    /// Prepares the TLS server with our chain and key; returns it with the first EAP
    /// request (Identity).
    pub fn new(
        key: Arc<dyn IkeSigner>,
        chain: &[Vec<u8>],
        first_request: Vec<ike_wire::Payload>,
        idi: ike_wire::Identification,
        identifier: u8,
    ) -> Result<(Self, Vec<u8>), EapError> {
        let config = server_config(key, chain)?;
        let server = Self {
            phase: Phase::Identity,
            identifier,
            tls: None,
            config,
            identity: Vec::new(),
            incoming: Vec::new(),
            outgoing: Vec::new(),
            sent: 0,
            first_request,
            idi,
            validated: None,
            msk: None,
        };
        Ok((server, request(identifier, TYPE_IDENTITY, &[])))
    }

    /// Identifier for the next request (or EAP-Success / Failure, which echo the last one).
    pub fn identifier(&self) -> u8 {
        self.identifier
    }

    fn next_request(&mut self, method: u8, data: &[u8]) -> Vec<u8> {
        self.identifier = self.identifier.wrapping_add(1);
        request(self.identifier, method, data)
    }

    /// Handles the peer's EAP-Response.
    pub fn handle(&mut self, bytes: &[u8]) -> Result<Step, EapError> {
        let packet = EapPacket::parse(bytes)?;
        if packet.code != CODE_RESPONSE || packet.identifier != self.identifier {
            return Err(EapError::Unexpected("not a response to our request"));
        }
        match (self.phase, packet.method) {
            (Phase::Identity, Some(TYPE_IDENTITY)) => {
                if packet.data.len() > MAX_IDENTITY {
                    return Err(EapError::TooLarge);
                }
                self.identity = packet.data.to_vec();
                let tls = ServerConnection::new(self.config.clone())
                    .map_err(|e| EapError::Tls(e.to_string()))?;
                self.tls = Some(tls);
                self.phase = Phase::Tls;
                let start = TlsFragment {
                    flags: FLAG_START,
                    total_len: None,
                    data: &[],
                };
                Ok(Step::Request(self.next_request(TYPE_TLS, &start.encode())))
            }
            (Phase::Tls, Some(TYPE_TLS)) => self.handle_tls(packet.data),
            (_, Some(_)) => Err(EapError::Unexpected("method other than EAP-TLS (Nak?)")),
            (_, None) => Err(EapError::Unexpected("no method")),
        }
    }

    fn handle_tls(&mut self, type_data: &[u8]) -> Result<Step, EapError> {
        let frag = TlsFragment::parse(type_data)?;
        if self.sent < self.outgoing.len() {
            // We are sending a fragmented flight; the peer must acknowledge with an empty message.
            if !frag.data.is_empty() {
                return Err(EapError::Unexpected("data while we send fragments"));
            }
            return Ok(Step::Request(self.next_fragment()));
        }
        if self.incoming.len() + frag.data.len() > MAX_TLS_MESSAGE
            || frag.total_len.is_some_and(|l| l as usize > MAX_TLS_MESSAGE)
        {
            return Err(EapError::TooLarge);
        }
        self.incoming.extend_from_slice(frag.data);
        if frag.flags & FLAG_MORE != 0 {
            let ack = TlsFragment {
                flags: 0,
                total_len: None,
                data: &[],
            };
            return Ok(Step::Request(self.next_request(TYPE_TLS, &ack.encode())));
        }
        let tls = self.tls.as_mut().ok_or(EapError::Unexpected("no TLS"))?;
        let incoming = std::mem::take(&mut self.incoming);
        let mut input = incoming.as_slice();
        while !input.is_empty() {
            let n = tls
                .read_tls(&mut input)
                .map_err(|e| EapError::Tls(e.to_string()))?;
            tls.process_new_packets()
                .map_err(|e| EapError::Tls(e.to_string()))?;
            if n == 0 {
                break;
            }
        }
        let mut out = Vec::new();
        while tls.wants_write() {
            tls.write_tls(&mut out)
                .map_err(|e| EapError::Tls(e.to_string()))?;
        }
        if !tls.is_handshaking() && self.msk.is_none() {
            let mut msk = Zeroizing::new(vec![0u8; MSK_LEN]);
            tls.export_keying_material(msk.as_mut_slice(), MSK_LABEL, None)
                .map_err(|e| EapError::Tls(e.to_string()))?;
            self.msk = Some(msk);
        }
        if !out.is_empty() {
            self.outgoing = out;
            self.sent = 0;
            return Ok(Step::Request(self.next_fragment()));
        }
        if self.msk.is_some() {
            return Ok(Step::Done);
        }
        Err(EapError::Unexpected("TLS stalled"))
    }

    fn next_fragment(&mut self) -> Vec<u8> {
        let total = self.outgoing.len();
        let end = (self.sent + FRAGMENT_LEN).min(total);
        let first = self.sent == 0;
        let more = end < total;
        let mut flags = 0;
        if more {
            flags |= FLAG_MORE;
        }
        let total_len = (first && more).then(|| u32::try_from(total).unwrap_or(u32::MAX));
        if total_len.is_some() {
            flags |= FLAG_LENGTH;
        }
        let data = self
            .outgoing
            .get(self.sent..end)
            .unwrap_or_default()
            .to_vec();
        self.sent = end;
        let frag = TlsFragment {
            flags,
            total_len,
            data: &data,
        };
        self.next_request(TYPE_TLS, &frag.encode())
    }

    /// The client's certificate chain (end entity first) after the handshake.
    pub fn peer_chain(&self) -> Vec<Vec<u8>> {
        self.tls
            .as_ref()
            .and_then(|t| t.peer_certificates())
            .map(|c| c.iter().map(|d| d.as_ref().to_vec()).collect())
            .unwrap_or_default()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn server_config(
    key: Arc<dyn IkeSigner>,
    chain: &[Vec<u8>],
) -> Result<Arc<ServerConfig>, EapError> {
    let provider = provider();
    let verifier = AnyClientCert {
        algorithms: provider.signature_verification_algorithms,
    };
    let certified = CertifiedKey::new(
        chain
            .iter()
            .map(|d| CertificateDer::from(d.clone()))
            .collect(),
        Arc::new(TlsKey(key)),
    );
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .map_err(|e| EapError::Tls(e.to_string()))?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(Arc::new(FixedCert(Arc::new(certified))));
    // One handshake per IKE SA: no resumption (RFC 5216 allows it, we have no use for it).
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(config))
}

/// Demands a client certificate and checks its CertificateVerify signature; the chain,
/// EKU, revocation and identity are checked afterwards by the engine's `PeerValidator`, the
/// same checks as for certificate authentication.
#[derive(Debug)]
struct AnyClientCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[derive(Debug)]
struct FixedCert(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Our IKE signing key as a rustls key.
#[derive(Debug)]
struct TlsKey(Arc<dyn IkeSigner>);

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsers_never_panic_and_requests_round_trip(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            id in any::<u8>(),
            method in any::<u8>(),
        ) {
            let _ = EapPacket::parse(&bytes);
            let _ = TlsFragment::parse(&bytes);
            let r = request(id, method, &bytes);
            let p = EapPacket::parse(&r).unwrap();
            prop_assert_eq!((p.code, p.identifier, p.method, p.data), (1, id, Some(method), &bytes[..]));
        }
    }

    #[test]
    fn eap_codec_round_trips_and_rejects_bad_lengths() {
        let r = request(7, TYPE_TLS, &[FLAG_START]);
        assert_eq!(r, [1, 7, 0, 6, 13, 0x20]);
        let p = EapPacket::parse(&r).unwrap();
        assert_eq!((p.code, p.identifier, p.method), (1, 7, Some(13)));
        assert_eq!(p.data, [0x20]);
        assert_eq!(success(9), [3, 9, 0, 4]);
        assert_eq!(failure(9), [4, 9, 0, 4]);
        assert_eq!(EapPacket::parse(&[2, 1, 0, 9, 1]), Err(EapError::Malformed));
        assert_eq!(EapPacket::parse(&[2, 1, 0]), Err(EapError::Malformed));
        assert_eq!(EapPacket::parse(&[3, 1, 0, 5, 1]), Err(EapError::Malformed));
        assert_eq!(EapPacket::parse(&[2, 1, 0, 4]), Err(EapError::Malformed));
    }

    #[test]
    fn tls_fragment_flags_and_length() {
        let f = TlsFragment::parse(&[0xc0, 0, 0, 7, 208, 1, 2]).unwrap();
        assert_eq!(f.total_len, Some(2000));
        assert_eq!(f.data, [1, 2]);
        assert_eq!(f.encode(), [0xc0, 0, 0, 7, 208, 1, 2]);
        assert_eq!(TlsFragment::parse(&[0x80, 0, 0]), Err(EapError::Malformed));
        assert_eq!(TlsFragment::parse(&[]), Err(EapError::Malformed));
    }
}
