//! EAP-TLS inside IKE_AUTH (RFC 7296 2.16), both roles: the EAP codec, the in-memory rustls
//! server (responder) and client (initiator), and EAP-TLS fragmentation. TLS 1.2 follows
//! RFC 5216; TLS 1.3 follows RFC 9190 (the server's commitment message, the 1.3 key
//! derivation, no resumption). The IKE side lives in `auth/`.

use std::fmt;
use std::sync::Arc;

use ipsec_crypto::{HashAlg, KeyType, SignatureScheme as IkeScheme, Signer as IkeSigner};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::client::{ClientConfig, ClientConnection};
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
const TYPE_NOTIFICATION: u8 = 2;
const TYPE_NAK: u8 = 3;
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
/// RFC 5216 2.3 key derivation (TLS 1.2), which is the RFC 5705 exporter without context.
const MSK_LABEL: &[u8] = b"client EAP encryption";
/// RFC 9190 2.3 key derivation (TLS 1.3): 128 octets, the MSK first, context the type code.
const MSK_LABEL_13: &[u8] = b"EXPORTER_EAP_TLS_Key_Material";
const KEY_MATERIAL_LEN_13: usize = 128;
/// RFC 9190 2.5: the server's commitment message (one octet of application data).
const COMMITMENT: u8 = 0x00;

/// `TLS 1.3, TLS13_AES_256_GCM_SHA384`: what a finished handshake used.
fn describe<D>(tls: &rustls::ConnectionCommon<D>) -> String {
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
fn derive_msk<D>(
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

/// What the initiator does after an EAP-Request from the gateway.
#[derive(Debug)]
pub(super) enum ClientStep {
    /// Send this EAP-Response.
    Respond(Vec<u8>),
    /// EAP-Success after a complete handshake: the MSK is ready.
    Success,
}

/// The initiator's EAP-TLS conversation of one IKE SA.
pub(super) struct EapClient {
    identity: Vec<u8>,
    config: Arc<ClientConfig>,
    tls: Option<ClientConnection>,
    incoming: Vec<u8>,
    outgoing: Vec<u8>,
    sent: usize,
    /// TLS 1.3: the server's commitment message arrived (RFC 9190 2.5).
    committed: bool,
    pub msk: Option<Zeroizing<Vec<u8>>>,
    /// EAP-Success came and our MSK-based AUTH went out.
    pub succeeded: bool,
    /// The TLS version and suite, once the handshake is done.
    pub description: Option<String>,
    /// IDr and the subject of the responder, authenticated by its certificate in the first
    /// IKE_AUTH response; its final AUTH (from the MSK) covers this IDr.
    pub idr: Option<(ike_wire::Identification, String)>,
    /// What went wrong with the TLS server's certificate, kept for the failure report.
    rejection: Arc<std::sync::Mutex<Option<crate::identity::PeerRejection>>>,
}

impl fmt::Debug for EapClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EapClient")
            .field("started", &self.tls.is_some())
            .field("msk", &self.msk.as_ref().map(|_| "<secret>"))
            .finish_non_exhaustive()
    }
}

impl EapClient {
    /// The TLS client with our chain and key, checking the server's certificate with
    /// `settings`; `unix_time` is when the server's certificate must be valid.
    pub fn new(
        key: Arc<dyn IkeSigner>,
        chain: &[Vec<u8>],
        settings: &crate::config::EapTlsClient,
        unix_time: u64,
    ) -> Result<Self, EapError> {
        let rejection = Arc::new(std::sync::Mutex::new(None));
        let provider = provider();
        let verifier = ServerCertCheck {
            names: settings.server_names.clone(),
            validator: settings.server_validator.clone(),
            unix_time,
            algorithms: provider.signature_verification_algorithms,
            rejection: rejection.clone(),
        };
        let certified = CertifiedKey::new(
            chain
                .iter()
                .map(|d| CertificateDer::from(d.clone()))
                .collect(),
            Arc::new(TlsKey(key)),
        );
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(if settings.tls13 {
                VERSIONS_13
            } else {
                VERSIONS_12
            })
            .map_err(|e| EapError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(FixedClientCert(Arc::new(certified))));
        // The server is checked by certificate, not by the name TLS would send; one handshake
        // per IKE SA.
        config.enable_sni = false;
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Self {
            identity: settings.identity.as_bytes().to_vec(),
            config: Arc::new(config),
            tls: None,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            sent: 0,
            committed: false,
            msk: None,
            succeeded: false,
            description: None,
            idr: None,
            rejection,
        })
    }

    /// Why the server's certificate was refused, if it was.
    pub fn rejection(&self) -> Option<crate::identity::PeerRejection> {
        self.rejection.lock().ok().and_then(|r| r.clone())
    }

    /// Handles the gateway's EAP message (a request, Success or Failure).
    pub fn handle(&mut self, bytes: &[u8]) -> Result<ClientStep, EapError> {
        let packet = EapPacket::parse(bytes)?;
        match packet.code {
            CODE_SUCCESS => {
                // strongSwan 5.9 ends TLS 1.3 with EAP-Success and no commitment message, and
                // keys by an earlier rule. Taken once our handshake is complete: the gateway
                // must still prove the MSK in its last AUTH, and nothing resumes.
                if self.msk.is_none()
                    && self.sent >= self.outgoing.len()
                    && let Some(tls) = self.tls.as_ref().filter(|t| !t.is_handshaking())
                {
                    self.msk = Some(derive_msk(tls, true)?);
                    self.description = Some(format!("{} (no RFC 9190 commitment)", describe(tls)));
                }
                return if self.msk.is_some() && self.sent >= self.outgoing.len() {
                    Ok(ClientStep::Success)
                } else {
                    // RFC 5216 / 9190: success before the handshake (and, with TLS 1.3, the
                    // commitment) is not success.
                    Err(EapError::Unexpected(
                        "EAP-Success before the TLS handshake completed",
                    ))
                };
            }
            CODE_FAILURE => return Err(EapError::Unexpected("EAP-Failure from the gateway")),
            CODE_REQUEST => {}
            _ => return Err(EapError::Unexpected("not a request")),
        }
        let id = packet.identifier;
        match packet.method {
            Some(TYPE_IDENTITY) => Ok(ClientStep::Respond(encode(
                CODE_RESPONSE,
                id,
                Some(TYPE_IDENTITY),
                &self.identity.clone(),
            ))),
            // Notifications are acknowledged with an empty response (RFC 3748 5.2).
            Some(TYPE_NOTIFICATION) => Ok(ClientStep::Respond(encode(
                CODE_RESPONSE,
                id,
                Some(TYPE_NOTIFICATION),
                &[],
            ))),
            Some(TYPE_TLS) => self.handle_tls(id, packet.data),
            // Any other method: Nak, asking for EAP-TLS (RFC 3748 5.3.1).
            Some(_) => Ok(ClientStep::Respond(encode(
                CODE_RESPONSE,
                id,
                Some(TYPE_NAK),
                &[TYPE_TLS],
            ))),
            None => Err(EapError::Malformed),
        }
    }

    fn respond(&self, id: u8, frag: &TlsFragment<'_>) -> ClientStep {
        ClientStep::Respond(encode(CODE_RESPONSE, id, Some(TYPE_TLS), &frag.encode()))
    }

    fn ack(&self, id: u8) -> ClientStep {
        self.respond(
            id,
            &TlsFragment {
                flags: 0,
                total_len: None,
                data: &[],
            },
        )
    }

    fn handle_tls(&mut self, id: u8, type_data: &[u8]) -> Result<ClientStep, EapError> {
        let frag = TlsFragment::parse(type_data)?;
        if frag.flags & FLAG_START != 0 {
            if self.tls.is_some() {
                return Err(EapError::Unexpected("a second EAP-TLS start"));
            }
            let name = rustls::pki_types::ServerName::try_from("eap-tls.invalid")
                .map_err(|e| EapError::Tls(e.to_string()))?;
            let mut tls = ClientConnection::new(self.config.clone(), name)
                .map_err(|e| EapError::Tls(e.to_string()))?;
            let mut hello = Vec::new();
            while tls.wants_write() {
                tls.write_tls(&mut hello)
                    .map_err(|e| EapError::Tls(e.to_string()))?;
            }
            self.tls = Some(tls);
            self.outgoing = hello;
            self.sent = 0;
            return Ok(self.next_fragment(id));
        }
        if self.tls.is_none() {
            return Err(EapError::Unexpected("EAP-TLS data before the start"));
        }
        if self.sent < self.outgoing.len() {
            // The server acknowledges each fragment of ours with an empty request.
            if !frag.data.is_empty() {
                return Err(EapError::Unexpected("data while we send fragments"));
            }
            return Ok(self.next_fragment(id));
        }
        if self.incoming.len() + frag.data.len() > MAX_TLS_MESSAGE
            || frag.total_len.is_some_and(|l| l as usize > MAX_TLS_MESSAGE)
        {
            return Err(EapError::TooLarge);
        }
        self.incoming.extend_from_slice(frag.data);
        if frag.flags & FLAG_MORE != 0 {
            return Ok(self.ack(id));
        }
        let tls = self.tls.as_mut().ok_or(EapError::Unexpected("no TLS"))?;
        let incoming = std::mem::take(&mut self.incoming);
        let mut input = incoming.as_slice();
        while !input.is_empty() {
            let n = tls
                .read_tls(&mut input)
                .map_err(|e| EapError::Tls(e.to_string()))?;
            // A TLS failure ends the IKE SA; the gateway learns of it by the retransmission
            // that is never answered (no alert goes out).
            tls.process_new_packets()
                .map_err(|e| EapError::Tls(e.to_string()))?;
            if n == 0 {
                break;
            }
        }
        // TLS 1.3: the commitment message is the only application data a server sends.
        let mut data = Vec::new();
        let _ = std::io::Read::read_to_end(&mut tls.reader(), &mut data);
        if !data.is_empty() {
            if data != [COMMITMENT] || tls.is_handshaking() || self.committed {
                return Err(EapError::Unexpected(
                    "application data other than the commitment",
                ));
            }
            self.committed = true;
        }
        let mut out = Vec::new();
        while tls.wants_write() {
            tls.write_tls(&mut out)
                .map_err(|e| EapError::Tls(e.to_string()))?;
        }
        let tls13 = tls.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3);
        if !tls.is_handshaking() && self.msk.is_none() && (!tls13 || self.committed) {
            self.msk = Some(derive_msk(tls, false)?);
            self.description = Some(describe(tls));
        }
        if !out.is_empty() {
            self.outgoing = out;
            self.sent = 0;
            return Ok(self.next_fragment(id));
        }
        // Nothing to say: acknowledge (the server's last flight, or its commitment).
        Ok(self.ack(id))
    }

    fn next_fragment(&mut self, id: u8) -> ClientStep {
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
        self.respond(
            id,
            &TlsFragment {
                flags,
                total_len,
                data: &data,
            },
        )
    }
}

/// Checks the EAP-TLS server's certificate the way the profile says (names, roots); the
/// handshake signatures with the provider's algorithms.
#[derive(Debug)]
struct ServerCertCheck {
    names: Vec<crate::identity::IkeId>,
    validator: Arc<dyn crate::identity::PeerValidator>,
    unix_time: u64,
    algorithms: WebPkiSupportedAlgorithms,
    rejection: Arc<std::sync::Mutex<Option<crate::identity::PeerRejection>>>,
}

impl rustls::client::danger::ServerCertVerifier for ServerCertCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let inter: Vec<&[u8]> = intermediates.iter().map(|c| c.as_ref()).collect();
        let mut last = crate::identity::PeerRejection::NoCertificate;
        for name in &self.names {
            match self
                .validator
                .validate(name, end_entity.as_ref(), &inter, self.unix_time)
            {
                Ok(_) => return Ok(rustls::client::danger::ServerCertVerified::assertion()),
                Err(e) => last = e,
            }
        }
        let message = format!("EAP-TLS server certificate: {last}");
        if let Ok(mut r) = self.rejection.lock() {
            *r = Some(last);
        }
        Err(rustls::Error::General(message))
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
struct FixedClientCert(Arc<CertifiedKey>);

impl rustls::client::ResolvesClientCert for FixedClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        // Only if our key can sign one of the schemes the server accepts.
        self.0.key.choose_scheme(sigschemes)?;
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

const VERSIONS_12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
const VERSIONS_13: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

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

    fn client() -> EapClient {
        use crate::identity::{IkeId, PeerRole, PkiValidator};
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_767_225_600);
        let validity = pki::Validity::days_from(at, 30);
        let alg = pki::KeyAlgorithm::P256;
        let ca = pki::CertificateAuthority::new_root("r", alg, validity).unwrap();
        let user = ca
            .issue(pki::CertKind::User, "alice@corp.example", alg, validity)
            .unwrap();
        let key = ipsec_crypto::SigningKey::from_pkcs8_der(user.key.pkcs8_der()).unwrap();
        let settings = crate::config::EapTlsClient {
            identity: "alice@corp.example".into(),
            server_names: vec![IkeId::Fqdn("gw.example".into())],
            server_validator: Arc::new(PkiValidator {
                trust: pki::TrustStore::with_roots([ca.cert().clone()]).unwrap(),
                role: PeerRole::Gateway {
                    server_name: "gw.example".into(),
                },
                expected_id: None,
            }),
            tls13: true,
        };
        let chain = vec![user.chain[0].der().to_vec()];
        EapClient::new(Arc::new(key), &chain, &settings, 1_767_225_600 + 86_400).unwrap()
    }

    #[test]
    fn our_client_answers_identity_and_nak_and_refuses_early_success() {
        let mut c = client();
        let ClientStep::Respond(r) = c.handle(&request(1, TYPE_IDENTITY, &[])).unwrap() else {
            panic!("identity answered")
        };
        assert_eq!(EapPacket::parse(&r).unwrap().data, b"alice@corp.example");
        // Another method (MD5-Challenge): Nak, asking for EAP-TLS.
        let ClientStep::Respond(r) = c.handle(&request(2, 4, &[1, 2])).unwrap() else {
            panic!("Nak")
        };
        let p = EapPacket::parse(&r).unwrap();
        assert_eq!((p.method, p.data), (Some(TYPE_NAK), &[TYPE_TLS][..]));
        // EAP-Success before any TLS: no.
        assert!(c.handle(&success(3)).is_err());
        // TLS data before the start: no.
        assert!(c.handle(&request(4, TYPE_TLS, &[0, 22, 3, 3])).is_err());
        // The start gives a ClientHello; a second start is refused; Failure is a failure.
        let ClientStep::Respond(r) = c.handle(&request(5, TYPE_TLS, &[FLAG_START])).unwrap() else {
            panic!("ClientHello")
        };
        let frag = TlsFragment::parse(EapPacket::parse(&r).unwrap().data).unwrap();
        assert_eq!(frag.data.first(), Some(&22), "a TLS handshake record");
        assert!(c.handle(&request(6, TYPE_TLS, &[FLAG_START])).is_err());
        assert!(c.handle(&success(7)).is_err(), "success mid-handshake");
        assert!(c.handle(&failure(8)).is_err());
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
