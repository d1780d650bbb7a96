//! The initiator's EAP-TLS client: identity and Nak answers, the TLS rounds with
//! fragmentation, and the check of the gateway's certificate.

use std::fmt;
use std::sync::Arc;

use ipsec_crypto::Signer as IkeSigner;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::client::{ClientConfig, ClientConnection};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};
use zeroize::Zeroizing;

use super::framing::{
    CODE_FAILURE, CODE_REQUEST, CODE_RESPONSE, CODE_SUCCESS, EapError, EapPacket, FLAG_LENGTH,
    FLAG_MORE, FLAG_START, FRAGMENT_LEN, MAX_TLS_MESSAGE, TYPE_IDENTITY, TYPE_NAK,
    TYPE_NOTIFICATION, TYPE_TLS, TlsFragment, encode,
};
use super::tls::{COMMITMENT, TlsKey, VERSIONS_12, VERSIONS_13, derive_msk, describe, provider};

/// What the initiator does after an EAP-Request from the gateway.
#[derive(Debug)]
pub(in crate::sa) enum ClientStep {
    /// Send this EAP-Response.
    Respond(Vec<u8>),
    /// EAP-Success after a complete handshake: the MSK is ready.
    Success,
}

/// The initiator's EAP-TLS conversation of one IKE SA.
pub(in crate::sa) struct EapClient {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sa::eap::framing::{failure, request, success};

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
}
