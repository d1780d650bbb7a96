//! The responder's EAP-TLS server: the identity round, the TLS rounds with fragmentation,
//! and the rustls configuration that demands a client certificate.

use std::fmt;
use std::sync::Arc;

use ipsec_crypto::Signer as IkeSigner;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig, ServerConnection};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use zeroize::Zeroizing;

use super::framing::{
    CODE_RESPONSE, EapError, EapPacket, FLAG_LENGTH, FLAG_MORE, FLAG_START, FRAGMENT_LEN,
    MAX_TLS_MESSAGE, TYPE_IDENTITY, TYPE_TLS, TlsFragment, request,
};
use super::tls::{COMMITMENT, TlsKey, VERSIONS_12, VERSIONS_13, derive_msk, describe, provider};

/// Longest EAP identity we keep.
const MAX_IDENTITY: usize = 256;

/// Where the EAP conversation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::sa) enum Phase {
    /// EAP-Request/Identity sent.
    Identity,
    /// EAP-TLS running.
    Tls,
    /// EAP-Success sent; the next IKE_AUTH request carries the MSK-based AUTH.
    AwaitAuth,
}

/// What to answer the peer's EAP-Response with.
#[derive(Debug)]
pub(in crate::sa) enum Step {
    /// Send this EAP-Request.
    Request(Vec<u8>),
    /// The handshake is complete: validate the client certificate, then send EAP-Success.
    Done,
}

/// The responder's EAP-TLS state of one IKE SA.
pub(in crate::sa) struct EapServer {
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
    /// The TLS version and suite, once the handshake is done.
    pub description: Option<String>,
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
        tls13: bool,
        first_request: Vec<ike_wire::Payload>,
        idi: ike_wire::Identification,
        identifier: u8,
    ) -> Result<(Self, Vec<u8>), EapError> {
        let config = server_config(key, chain, tls13)?;
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
            description: None,
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
        if !tls.is_handshaking() && self.msk.is_none() {
            self.msk = Some(derive_msk(tls, false)?);
            self.description = Some(describe(tls));
            if tls.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
                // RFC 9190 2.5: no more handshake messages from us (no tickets either).
                std::io::Write::write_all(&mut tls.writer(), &[COMMITMENT])
                    .map_err(|e| EapError::Tls(e.to_string()))?;
            }
        }
        let mut out = Vec::new();
        while tls.wants_write() {
            tls.write_tls(&mut out)
                .map_err(|e| EapError::Tls(e.to_string()))?;
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

fn server_config(
    key: Arc<dyn IkeSigner>,
    chain: &[Vec<u8>],
    tls13: bool,
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
        .with_protocol_versions(if tls13 { VERSIONS_13 } else { VERSIONS_12 })
        .map_err(|e| EapError::Tls(e.to_string()))?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(Arc::new(FixedCert(Arc::new(certified))));
    // One handshake per IKE SA: no resumption (RFC 5216 allows it, we have no use for it;
    // RFC 9190 wants no tickets before the commitment message).
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
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
