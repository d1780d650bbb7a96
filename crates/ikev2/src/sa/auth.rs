//! IKE_AUTH for both roles: identities, certificates, AUTH signatures, CP, the first Child
//! SA with TS narrowing and its keys.

use std::net::IpAddr;
use std::time::Instant;

use ike_wire::{
    AuthMethod, Authentication, CertEncoding, CfgAttribute, CfgAttributeType, CfgType,
    Configuration, ExchangeType, Identification, Notify, NotifyType, Payload, Payloads,
    ReassemblyLimits, SecurityAssociation, TrafficSelector,
};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use ipsec_crypto::{
    ChildSaKeys, HashAlg, KeyType, SignatureScheme, auth_signed_octets, build_rfc7427_auth_data,
    shared_key_auth, split_rfc7427_auth_data, verify,
};
use subtle::ConstantTimeEq;

use super::eap::{ClientStep, EapClient, EapServer, Phase, Step};
use super::error::{ConfigFault, PeerFault, SaError};
use super::{IkeSa, IkeSaState, RequestKind, Role, RoleConfig, eap};
use crate::config::{
    AddressFamily, AddressPool, AuthMethodPolicy, InitiatorConfig, ResponderConfig,
};
use crate::event::{ChildSa, Event, Failure, FailureReason, IkeSaInfo};
use crate::identity::{IkeId, PeerRejection};
use crate::proposal::EspAlgorithms;
use crate::ts;

impl IkeSa {
    pub(super) fn sign_auth(&self, signed: &[u8]) -> Result<Authentication, SaError> {
        let ike = self.cfg.ike();
        let key = &ike.local.key;
        let (classic_method, classic_scheme) = match key.key_type() {
            KeyType::Rsa => (
                AuthMethod::RSA_SIG,
                SignatureScheme::RsaPkcs1(HashAlg::Sha1),
            ),
            KeyType::EcdsaP256 => (
                AuthMethod::ECDSA_SHA256_P256,
                SignatureScheme::EcdsaP256Sha256Fixed,
            ),
            KeyType::EcdsaP384 => (
                AuthMethod::ECDSA_SHA384_P384,
                SignatureScheme::EcdsaP384Sha384Fixed,
            ),
        };
        let rfc7427 = [HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512]
            .into_iter()
            .filter(|h| self.peer_hashes.contains(h))
            .flat_map(|h| [SignatureScheme::RsaPkcs1(h), SignatureScheme::EcdsaDer(h)])
            .find(|s| key.supports(*s));
        let use_7427 = match ike.auth_method {
            AuthMethodPolicy::Classic => None,
            AuthMethodPolicy::Auto => rfc7427,
            AuthMethodPolicy::DigitalSignature => {
                Some(rfc7427.ok_or(ConfigFault::NoSignatureHash)?)
            }
        };
        if use_7427.is_none()
            && matches!(classic_scheme, SignatureScheme::RsaPkcs1(HashAlg::Sha1))
            && !ike.allow_sha1_signatures
        {
            return Err(ConfigFault::Sha1NotAllowed.into());
        }
        match use_7427 {
            Some(scheme) => {
                let sig = key.sign(scheme, signed)?;
                Ok(Authentication {
                    method: AuthMethod::DIGITAL_SIGNATURE,
                    data: build_rfc7427_auth_data(scheme, &sig)?,
                })
            }
            None => Ok(Authentication {
                method: classic_method,
                data: key.sign(classic_scheme, signed)?,
            }),
        }
    }

    pub(super) fn signed_octets(
        &self,
        ours: bool,
        id: &Identification,
    ) -> Result<Vec<u8>, SaError> {
        let algs = self.algs.ok_or(SaError::Internal("no algorithms"))?;
        let keys = self.keys.as_ref().ok_or(SaError::Internal("no keys"))?;
        let hs = self.handshake.as_deref().ok_or(SaError::Internal(
            "no IKE_SA_INIT messages after the handshake",
        ))?;
        let initiator_side = (self.role == Role::Initiator) == ours;
        let (message, nonce, sk_p) = if initiator_side {
            (&hs.init_request, &hs.nr, &keys.sk_pi)
        } else {
            (&hs.init_response, &hs.ni, &keys.sk_pr)
        };
        Ok(auth_signed_octets(
            algs.prf,
            message,
            nonce,
            sk_p.as_bytes(),
            &IkeId::auth_octets(id),
        ))
    }

    pub(super) fn cert_payloads(&self) -> Vec<Payload> {
        self.cfg
            .ike()
            .local
            .chain
            .iter()
            .map(|der| {
                Payload::Cert(ike_wire::Certificate {
                    encoding: CertEncoding::X509_SIG,
                    data: der.clone(),
                })
            })
            .collect()
    }

    /// Validates the peer's certificate, identity and AUTH payload.
    pub(super) fn authenticate_peer(
        &mut self,
        payloads: &[Payload],
        id: &Identification,
    ) -> Result<String, FailureReason> {
        let ike = self.cfg.ike();
        // The certificate must name what the peer sent; the canonical form (one spelling per
        // identity) is what is recorded once it does.
        let claimed = IkeId::from_wire(id);
        let peer_id = claimed.canonical();
        self.claimed_peer = Some(peer_id.clone());
        let auth = payloads
            .auth()
            .ok_or_else(|| FailureReason::AuthPayload("missing AUTH payload".into()))?;
        let certs: Vec<&[u8]> = payloads
            .certs()
            .filter(|c| c.encoding == CertEncoding::X509_SIG)
            .map(|c| c.data.as_slice())
            .collect();
        let (ee, inter) = certs
            .split_first()
            .ok_or(FailureReason::PeerRejected(PeerRejection::NoCertificate))?;
        let validated = ike
            .validator
            .validate(&claimed, ee, inter, self.unix_time)
            .map_err(FailureReason::PeerRejected)?;
        let signed = self.signed_octets(false, id)?;
        let sha1 = Sha1Policy {
            allowed: ike.allow_sha1_signatures,
            peer_offers_sha2: self
                .peer_hashes
                .iter()
                .any(|h| matches!(h, HashAlg::Sha256 | HashAlg::Sha384 | HashAlg::Sha512)),
        };
        verify_auth(auth, &validated.spki_der, &signed, sha1)?;
        self.peer_id = Some(peer_id);
        self.peer_chain = Some(validated.chain);
        self.peer_policy = validated.policy;
        self.peer_auth_method = Some(auth.method);
        Ok(validated.subject)
    }

    pub(super) fn build_auth_request(&mut self) -> Result<Vec<Payload>, SaError> {
        let RoleConfig::Initiator(cfg) = self.cfg.clone() else {
            return Err(SaError::Internal("not an initiator"));
        };
        let idi = cfg.ike.local.id.to_wire();
        // With EAP (RFC 7296 2.16) the first IKE_AUTH carries no AUTH: its absence asks for
        // EAP, and our certificate goes inside TLS.
        let auth = match &cfg.eap_tls {
            Some(settings) => {
                let client = EapClient::new(
                    cfg.ike.local.key.clone(),
                    &cfg.ike.local.chain,
                    settings,
                    self.unix_time,
                )
                .map_err(ConfigFault::EapTls)?;
                if let Some(hs) = self.handshake.as_deref_mut() {
                    hs.eap_client = Some(Box::new(client));
                }
                None
            }
            None => Some(self.sign_auth(&self.signed_octets(true, &idi)?)?),
        };
        let mut out = vec![Payload::IdI(idi)];
        if auth.is_some() {
            out.extend(self.cert_payloads());
        }
        if cfg.initial_contact {
            out.push(Payload::Notify(Notify::new(
                NotifyType::INITIAL_CONTACT,
                Vec::new(),
            )));
        }
        let hashes = cfg.ike.validator.ca_key_hashes();
        if !hashes.is_empty() {
            out.push(Payload::CertReq(ike_wire::Certificate {
                encoding: CertEncoding::X509_SIG,
                data: hashes.concat(),
            }));
        }
        if let Some(r) = &cfg.remote_id {
            out.push(Payload::IdR(r.to_wire()));
        }
        out.extend(auth.map(Payload::Auth));
        let mut attrs = Vec::new();
        if cfg.request_ipv4 {
            attrs.push(CfgAttribute::InternalIp4Address(None));
            attrs.push(CfgAttribute::InternalIp4Dns(None));
        }
        if cfg.request_ipv6 {
            attrs.push(CfgAttribute::InternalIp6Address(None));
            attrs.push(CfgAttribute::InternalIp6Dns(None));
        }
        if !attrs.is_empty() {
            // RFC 8598: we take the gateway's internal domains for split DNS.
            attrs.push(CfgAttribute::Other {
                attr_type: CfgAttributeType::INTERNAL_DNS_DOMAIN,
                value: Vec::new(),
            });
        }
        if !attrs.is_empty() {
            out.push(Payload::Cp(Configuration {
                cfg_type: CfgType::CFG_REQUEST,
                attributes: attrs,
            }));
        }
        let proposals = cfg
            .ike
            .esp_proposals
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.to_wire(
                    u8::try_from(i + 1).unwrap_or(u8::MAX),
                    self.child_spi_in,
                    false,
                )
            })
            .collect();
        out.push(Payload::Sa(SecurityAssociation { proposals }));
        out.push(Payload::TsI(cfg.ts_local.clone()));
        out.push(Payload::TsR(cfg.ts_remote.clone()));
        if cfg.mobike {
            out.push(Payload::Notify(Notify::new(
                NotifyType::MOBIKE_SUPPORTED,
                Vec::new(),
            )));
        }
        Ok(out)
    }

    pub(super) fn established_info(&self, subject: String, now: Instant) -> Option<IkeSaInfo> {
        Some(IkeSaInfo {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            initiator: self.role == Role::Initiator,
            peer_id: self.peer_id.clone()?,
            peer_subject: subject,
            peer_chain: self.peer_chain.clone()?,
            peer_auth_method: self.peer_auth_method?,
            initial_contact: self.peer_initial_contact,
            algorithms: self.algs?,
            local: self.local,
            remote: self.remote,
            nat_detected: self.nat_detected,
            eap_tls: self.eap_tls.clone(),
            group: self.peer_policy.as_ref().map(|p| p.group.clone()),
            handshake: self.started.map_or(std::time::Duration::ZERO, |t| {
                now.saturating_duration_since(t)
            }),
        })
    }

    pub(super) fn process_auth_request(
        &mut self,
        now: Instant,
        message_id: u32,
        payloads: &[Payload],
        pool: Option<&mut dyn AddressPool>,
    ) {
        let RoleConfig::Responder(cfg) = self.cfg.clone() else {
            return;
        };
        if let Some(eap) = self.handshake.as_deref_mut().and_then(|hs| hs.eap.take()) {
            self.continue_eap(now, message_id, payloads, pool, &cfg, eap);
            return;
        }
        if let Some(relay) = self
            .handshake
            .as_deref_mut()
            .and_then(|hs| hs.eap_relay.take())
        {
            self.continue_eap_relay(now, message_id, payloads, pool, &cfg, relay);
            return;
        }
        let Some(idi) = payloads.id_i() else {
            self.refuse_auth(
                message_id,
                NotifyType::INVALID_SYNTAX,
                FailureReason::InvalidSyntax("IKE_AUTH without IDi".into()),
            );
            return;
        };
        self.peer_initial_contact = payloads.notify(NotifyType::INITIAL_CONTACT).is_some();
        if payloads.auth().is_none() && cfg.eap_pass_through {
            self.start_eap_relay(message_id, &cfg, payloads, idi);
            return;
        }
        if payloads.auth().is_none() && cfg.eap_tls {
            self.start_eap(message_id, &cfg, payloads, idi);
            return;
        }
        let subject = match self.authenticate_peer(payloads, idi) {
            Ok(s) => s,
            Err(reason) => {
                self.refuse_auth(message_id, NotifyType::AUTHENTICATION_FAILED, reason);
                return;
            }
        };
        let idr = cfg.ike.local.id.to_wire();
        let auth = match self
            .signed_octets(true, &idr)
            .and_then(|s| self.sign_auth(&s))
        {
            Ok(a) => a,
            Err(e) => {
                self.refuse_auth(message_id, NotifyType::AUTHENTICATION_FAILED, e.into());
                return;
            }
        };
        let mut out = vec![Payload::IdR(idr)];
        out.extend(self.cert_payloads());
        out.push(Payload::Auth(auth));
        self.finish_auth(now, message_id, &cfg, payloads, out, subject, pool);
    }

    /// The last IKE_AUTH response of the responder: `out` (identity and AUTH) plus the first
    /// Child SA negotiated from `request` (the IKE_AUTH request that carried SA, TS and CP).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn finish_auth(
        &mut self,
        now: Instant,
        message_id: u32,
        cfg: &ResponderConfig,
        request: &[Payload],
        mut out: Vec<Payload>,
        subject: String,
        pool: Option<&mut dyn AddressPool>,
    ) {
        let payloads = request;
        let child = self.responder_child(cfg, payloads, pool);
        match &child {
            Ok(Some((child_payloads, _))) => out.extend(child_payloads.iter().cloned()),
            Ok(None) => {}
            Err((notify, _)) => out.push(Payload::Notify(Notify::new(*notify, Vec::new()))),
        }
        if cfg.mobike && payloads.notify(NotifyType::MOBIKE_SUPPORTED).is_some() {
            out.push(Payload::Notify(Notify::new(
                NotifyType::MOBIKE_SUPPORTED,
                Vec::new(),
            )));
            self.mobike = true;
        }
        self.send_response(ExchangeType::IKE_AUTH, message_id, &out);
        if self.state == IkeSaState::Closed {
            return;
        }
        self.state = IkeSaState::Established;
        // The first Child SA's keys are made: nothing reads the handshake's nonces, messages
        // or EAP state any more.
        self.handshake = None;
        // Authenticated, the peer may make us hold as much as the default limits allow.
        self.window
            .set_reassembly_limits(ReassemblyLimits::default());
        self.start_ike_lifetime(now);
        if let Some(info) = self.established_info(subject, now) {
            self.events.push_back(Event::IkeSaEstablished(info));
        }
        match child {
            Ok(Some((_, child_sa))) => {
                self.register_child(now, &child_sa);
                self.events.push_back(Event::ChildSaEstablished(child_sa));
            }
            Ok(None) => {}
            Err((notify, reason)) => self.events.push_back(Event::Failed(Failure {
                reason,
                notify_sent: Some(notify),
                notify_received: None,
                remote: self.remote,
                claimed_id: self.claimed_peer.clone(),
            })),
        }
    }

    /// IKE_AUTH without AUTH, the initiator's wish for EAP (RFC 7296 2.16): its claimed
    /// identity noted and our AUTH made, which the first EAP request goes out with. `None`:
    /// refused (already answered).
    pub(super) fn our_auth_for_eap(
        &mut self,
        message_id: u32,
        cfg: &ResponderConfig,
        idi: &Identification,
    ) -> Option<(Identification, Authentication)> {
        self.claimed_peer = Some(IkeId::from_wire(idi).canonical());
        let idr = cfg.ike.local.id.to_wire();
        match self
            .signed_octets(true, &idr)
            .and_then(|s| self.sign_auth(&s))
        {
            Ok(auth) => Some((idr, auth)),
            Err(e) => {
                self.refuse_auth(message_id, NotifyType::AUTHENTICATION_FAILED, e.into());
                None
            }
        }
    }

    /// First IKE_AUTH request without AUTH: the initiator wants EAP (RFC 7296 2.16). We
    /// authenticate ourselves with our certificate and ask for the EAP identity.
    fn start_eap(
        &mut self,
        message_id: u32,
        cfg: &ResponderConfig,
        payloads: &[Payload],
        idi: &Identification,
    ) {
        let Some((idr, auth)) = self.our_auth_for_eap(message_id, cfg, idi) else {
            return;
        };
        let ike = &cfg.ike;
        let identifier = self.provider.random_array::<1>().map_or(1, |[b]| b);
        let started = EapServer::new(
            ike.local.key.clone(),
            &ike.local.chain,
            cfg.eap_tls13,
            payloads.to_vec(),
            idi.clone(),
            identifier,
        );
        let (server, request) = match started {
            Ok(s) => s,
            Err(e) => {
                self.refuse_auth(
                    message_id,
                    NotifyType::AUTHENTICATION_FAILED,
                    SaError::from(ConfigFault::EapTls(e)).into(),
                );
                return;
            }
        };
        let mut out = vec![Payload::IdR(idr)];
        out.extend(self.cert_payloads());
        out.push(Payload::Auth(auth));
        out.push(Payload::Eap(request));
        self.send_response(ExchangeType::IKE_AUTH, message_id, &out);
        if let Some(hs) = self.handshake.as_deref_mut() {
            hs.eap = Some(Box::new(server));
        }
    }

    /// An IKE_AUTH request during EAP: the next EAP-TLS round, or after EAP-Success the
    /// initiator's AUTH computed from the MSK (RFC 7296 2.16).
    fn continue_eap(
        &mut self,
        now: Instant,
        message_id: u32,
        payloads: &[Payload],
        pool: Option<&mut dyn AddressPool>,
        cfg: &ResponderConfig,
        mut eap: Box<EapServer>,
    ) {
        if eap.phase == Phase::AwaitAuth {
            let (ours, subject) = match self.verify_eap_auth(&eap, payloads, cfg) {
                Ok(v) => v,
                Err(reason) => {
                    self.refuse_auth(message_id, NotifyType::AUTHENTICATION_FAILED, reason);
                    return;
                }
            };
            let first_request = std::mem::take(&mut eap.first_request);
            self.eap_tls = eap.description.clone();
            let out = vec![Payload::Auth(ours)];
            self.finish_auth(now, message_id, cfg, &first_request, out, subject, pool);
            return;
        }
        let Some(bytes) = payloads.eap() else {
            self.refuse_auth(
                message_id,
                NotifyType::AUTHENTICATION_FAILED,
                FailureReason::AuthPayload("IKE_AUTH without EAP payload during EAP".into()),
            );
            return;
        };
        match eap.handle(bytes) {
            Ok(Step::Request(request)) => {
                self.send_response(ExchangeType::IKE_AUTH, message_id, &[Payload::Eap(request)]);
                if let Some(hs) = self.handshake.as_deref_mut() {
                    hs.eap = Some(eap);
                }
            }
            Ok(Step::Done) => match self.validate_eap_peer(&eap, cfg) {
                Ok(validated) => {
                    eap.validated = Some(validated);
                    eap.phase = Phase::AwaitAuth;
                    let success = eap::success(eap.identifier());
                    self.send_response(
                        ExchangeType::IKE_AUTH,
                        message_id,
                        &[Payload::Eap(success)],
                    );
                    if let Some(hs) = self.handshake.as_deref_mut() {
                        hs.eap = Some(eap);
                    }
                }
                Err(r) => self.eap_failure(message_id, &eap, FailureReason::PeerRejected(r)),
            },
            Err(e) => self.eap_failure(
                message_id,
                &eap,
                FailureReason::AuthPayload(format!("EAP-TLS: {e}")),
            ),
        }
    }

    fn eap_failure(&mut self, message_id: u32, eap: &EapServer, reason: FailureReason) {
        let failure = eap::failure(eap.identifier());
        self.send_response(ExchangeType::IKE_AUTH, message_id, &[Payload::Eap(failure)]);
        self.fail(reason, None, None);
    }

    /// The TLS client certificate gets the checks of certificate authentication (trust,
    /// EKU clientAuth, revocation); the identity it must name is the EAP identity (Windows
    /// sends its UPN there) or else IDi. Returns that identity and the subject.
    fn validate_eap_peer(
        &self,
        eap: &EapServer,
        cfg: &ResponderConfig,
    ) -> Result<(IkeId, crate::identity::ValidatedPeer), PeerRejection> {
        let chain = eap.peer_chain();
        let (ee, inter) = chain.split_first().ok_or(PeerRejection::NoCertificate)?;
        let inter: Vec<&[u8]> = inter.iter().map(Vec::as_slice).collect();
        let mut candidates = Vec::new();
        if let Ok(text) = std::str::from_utf8(&eap.identity)
            && !text.is_empty()
        {
            candidates.push(if text.contains('@') {
                IkeId::Rfc822(text.to_owned())
            } else {
                IkeId::Fqdn(text.to_owned())
            });
        }
        candidates.push(IkeId::from_wire(&eap.idi));
        let mut last = PeerRejection::NoCertificate;
        for id in candidates {
            match cfg.ike.validator.validate(&id, ee, &inter, self.unix_time) {
                Ok(v) => return Ok((id.canonical(), v)),
                Err(
                    e @ (PeerRejection::IdentityMismatch(_) | PeerRejection::UnexpectedIdentity(_)),
                ) => {
                    last = e;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Checks the initiator's MSK-based AUTH and computes ours; sets the peer identity.
    fn verify_eap_auth(
        &mut self,
        eap: &EapServer,
        payloads: &[Payload],
        cfg: &ResponderConfig,
    ) -> Result<(Authentication, String), FailureReason> {
        let (Some(msk), Some((peer_id, validated))) = (&eap.msk, &eap.validated) else {
            return Err(FailureReason::Local("EAP finished without MSK".into()));
        };
        self.verify_msk_auth(msk, &eap.idi, peer_id.clone(), validated, payloads, cfg)
    }

    /// Checks the initiator's AUTH made from the EAP MSK, computes ours, and takes the peer
    /// as authenticated (our EAP-TLS server or a relayed one).
    pub(super) fn verify_msk_auth(
        &mut self,
        msk: &[u8],
        idi: &Identification,
        peer_id: IkeId,
        validated: &crate::identity::ValidatedPeer,
        payloads: &[Payload],
        cfg: &ResponderConfig,
    ) -> Result<(Authentication, String), FailureReason> {
        let auth = payloads
            .auth()
            .ok_or_else(|| FailureReason::AuthPayload("missing AUTH after EAP".into()))?;
        let prf = self
            .algs
            .ok_or(FailureReason::Local("no algorithms".into()))?
            .prf;
        let theirs = self.signed_octets(false, idi)?;
        let expected = shared_key_auth(prf, msk, &theirs);
        if auth.method != AuthMethod::SHARED_KEY_MIC
            || !bool::from(expected.as_bytes().ct_eq(&auth.data))
        {
            return Err(FailureReason::AuthPayload(
                "AUTH from the EAP MSK does not verify".into(),
            ));
        }
        let idr = cfg.ike.local.id.to_wire();
        let ours = self.signed_octets(true, &idr)?;
        let data = shared_key_auth(prf, msk, &ours).as_bytes().to_vec();
        self.peer_id = Some(peer_id);
        self.peer_chain = Some(validated.chain.clone());
        self.peer_policy.clone_from(&validated.policy);
        self.peer_auth_method = Some(AuthMethod::SHARED_KEY_MIC);
        Ok((
            Authentication {
                method: AuthMethod::SHARED_KEY_MIC,
                data,
            },
            validated.subject.clone(),
        ))
    }

    pub(super) fn refuse_auth(
        &mut self,
        message_id: u32,
        notify: NotifyType,
        reason: FailureReason,
    ) {
        self.send_response(
            ExchangeType::IKE_AUTH,
            message_id,
            &[Payload::Notify(Notify::new(notify, Vec::new()))],
        );
        self.fail(reason, Some(notify), None);
    }

    /// Responder side of the first Child SA: CP, proposal, TS narrowing, keys.
    #[allow(clippy::type_complexity)]
    pub(super) fn responder_child(
        &mut self,
        cfg: &ResponderConfig,
        payloads: &[Payload],
        pool: Option<&mut dyn AddressPool>,
    ) -> Result<Option<(Vec<Payload>, Box<ChildSa>)>, (NotifyType, FailureReason)> {
        let cp = payloads.cp().filter(|c| c.cfg_type == CfgType::CFG_REQUEST);
        let Some(sa) = payloads.sa() else {
            return Ok(None);
        };
        if cp.is_none() && cfg.require_virtual_ip {
            return Err((NotifyType::FAILED_CP_REQUIRED, FailureReason::CpRequired));
        }
        let (Some(tsi), Some(tsr)) = (payloads.ts_i(), payloads.ts_r()) else {
            return Err((NotifyType::TS_UNACCEPTABLE, FailureReason::TsUnacceptable));
        };
        let chosen = cfg.ike.esp_proposals.iter().find_map(|ours| {
            sa.proposals
                .iter()
                .find_map(|peer| ours.select(peer).map(|(a, spi)| (a, spi, peer.number)))
        });
        let Some((algs, spi_out, number)) = chosen else {
            return Err((
                NotifyType::NO_PROPOSAL_CHOSEN,
                FailureReason::NoProposalChosen,
            ));
        };
        let spi_in = self
            .new_child_spi()
            .map_err(|e| (NotifyType::NO_PROPOSAL_CHOSEN, SaError::from(e).into()))?;
        let keys = self
            .child_keys(algs)
            .map_err(|e| (NotifyType::NO_PROPOSAL_CHOSEN, e.into()))?;
        // Virtual IPs.
        let mut pool = pool;
        let mut vips = Vec::new();
        let peer = self.peer_id.clone().unwrap_or(IkeId::Other {
            id_type: ike_wire::IdType(0),
            data: Vec::new(),
        });
        if let Some(cp) = cp {
            let want_v4 = cp
                .attributes
                .iter()
                .any(|a| matches!(a, CfgAttribute::InternalIp4Address(_)));
            let want_v6 = cp
                .attributes
                .iter()
                .any(|a| matches!(a, CfgAttribute::InternalIp6Address(_)));
            if want_v4 || want_v6 {
                if let Some(pool) = pool.as_deref_mut() {
                    for (want, fam) in [(want_v4, AddressFamily::V4), (want_v6, AddressFamily::V6)]
                    {
                        if !want {
                            continue;
                        }
                        let group = self.peer_policy.as_ref().map(|p| p.group.as_str());
                        // INITIAL_CONTACT: the peer's other SAs are about to go; it takes
                        // their address over rather than getting another one.
                        let allocated = if self.peer_initial_contact {
                            pool.allocate_replacing(&peer, group, fam)
                        } else {
                            pool.allocate(&peer, group, fam)
                        };
                        if let Some(a) = allocated {
                            vips.push(a);
                        }
                    }
                }
                if vips.is_empty() {
                    return Err((
                        NotifyType::INTERNAL_ADDRESS_FAILURE,
                        FailureReason::AddressPoolExhausted,
                    ));
                }
            }
        }
        // A gateway that hands out addresses narrows TSi to them; without one (a CP asking
        // only for DNS, or no pool) TSi would stay 0.0.0.0/0 and the client could send from
        // any inner address it likes.
        if vips.is_empty() && cfg.require_virtual_ip {
            return Err((NotifyType::FAILED_CP_REQUIRED, FailureReason::CpRequired));
        }
        let allowed_remote: Vec<TrafficSelector> = if vips.is_empty() {
            vec![TrafficSelector::ANY_V4, TrafficSelector::ANY_V6]
        } else {
            vips.iter().map(|a| ts::host(*a)).collect()
        };
        let tsi_n = ts::narrow(tsi, &allowed_remote);
        // The peer's group, if the validator put it in one, decides what lies behind us.
        let policy = self.peer_policy.clone();
        let local_ts = policy.as_ref().map_or(&cfg.local_ts, |p| &p.local_ts);
        let dns_servers = policy.as_ref().map_or(&cfg.dns_servers, |p| &p.dns_servers);
        let dns_domains = policy.as_ref().map_or(&cfg.dns_domains, |p| &p.dns_domains);
        let pushed_subnets = policy
            .as_ref()
            .map_or(&cfg.pushed_subnets, |p| &p.pushed_subnets);
        let tsr_n = ts::narrow(tsr, local_ts);
        if tsi_n.is_empty() || tsr_n.is_empty() {
            if let Some(pool) = pool {
                for a in vips {
                    pool.release(&peer, a);
                }
            }
            return Err((NotifyType::TS_UNACCEPTABLE, FailureReason::TsUnacceptable));
        }
        self.assigned.extend(vips.iter().copied());
        let mut attrs = Vec::new();
        let mut dns = Vec::new();
        for v in &vips {
            match v {
                IpAddr::V4(a) => attrs.push(CfgAttribute::InternalIp4Address(Some(*a))),
                IpAddr::V6(a) => attrs.push(CfgAttribute::InternalIp6Address(Some((*a, 128)))),
            }
        }
        for d in dns_servers {
            let family_assigned = vips.iter().any(|v| v.is_ipv4() == d.is_ipv4());
            if !family_assigned {
                continue;
            }
            dns.push(*d);
            match d {
                IpAddr::V4(a) => attrs.push(CfgAttribute::InternalIp4Dns(Some(*a))),
                IpAddr::V6(a) => attrs.push(CfgAttribute::InternalIp6Dns(Some(*a))),
            }
        }
        // RFC 8598: domains only to an initiator that asked, and only with DNS servers to
        // resolve them.
        let wants_domains = cp.is_some_and(|c| {
            c.attributes
                .iter()
                .any(|a| a.attr_type() == CfgAttributeType::INTERNAL_DNS_DOMAIN)
        });
        let domains = if wants_domains && !dns.is_empty() {
            dns_domains.clone()
        } else {
            Vec::new()
        };
        for d in &domains {
            attrs.push(crate::dns_domain::attribute(d));
        }
        for net in pushed_subnets {
            match net {
                IpNet::V4(n) => attrs.push(CfgAttribute::InternalIp4Subnet(Some((
                    n.addr(),
                    n.netmask(),
                )))),
                IpNet::V6(n) => attrs.push(CfgAttribute::InternalIp6Subnet(Some((
                    n.addr(),
                    n.prefix_len(),
                )))),
            }
        }
        let mut out = Vec::new();
        if cp.is_some() {
            out.push(Payload::Cp(Configuration {
                cfg_type: CfgType::CFG_REPLY,
                attributes: attrs,
            }));
        }
        out.push(Payload::Sa(SecurityAssociation {
            proposals: vec![algs.to_wire(number, spi_in)],
        }));
        out.push(Payload::TsI(tsi_n.clone()));
        out.push(Payload::TsR(tsr_n.clone()));
        let child = Box::new(ChildSa {
            ike_spi: self.local_spi(),
            spi_in,
            spi_out,
            algorithms: algs,
            encr_key_in: keys.encr_i,
            integ_key_in: keys.integ_i,
            encr_key_out: keys.encr_r,
            integ_key_out: keys.integ_r,
            ts_local: tsr_n,
            ts_remote: tsi_n,
            virtual_ips: vips,
            dns_servers: dns,
            dns_domains: domains,
            subnets: pushed_subnets.clone(),
            local: self.local,
            remote: self.remote,
            udp_encap: self.encap,
        });
        Ok(Some((out, child)))
    }

    pub(super) fn child_keys(&self, algs: EspAlgorithms) -> Result<ChildSaKeys, SaError> {
        let ike = self.algs.ok_or(SaError::Internal("no IKE algorithms"))?;
        let keys = self.keys.as_ref().ok_or(SaError::Internal("no keys"))?;
        let hs = self
            .handshake
            .as_deref()
            .ok_or(SaError::Internal("no nonces after the handshake"))?;
        Ok(ChildSaKeys::derive(
            ike.prf,
            keys.sk_d.as_bytes(),
            None,
            &hs.ni,
            &hs.nr,
            algs.encr.key_material_len(),
            algs.integ.map_or(0, |i| i.key_len()),
        )?)
    }

    pub(super) fn process_auth_response(&mut self, now: Instant, payloads: &[Payload]) {
        let RoleConfig::Initiator(cfg) = self.cfg.clone() else {
            return;
        };
        let mut eap = self
            .handshake
            .as_deref_mut()
            .and_then(|hs| hs.eap_client.take());
        if let Some(client) = eap.take_if(|c| c.idr.is_some()) {
            self.continue_eap_client(now, payloads, &cfg, client);
            return;
        }
        let Some(idr) = payloads.id_r() else {
            let received = payloads.error_notify().map(|n| n.notify_type);
            let reason = received.map_or(
                FailureReason::InvalidSyntax("IKE_AUTH response without IDr".into()),
                FailureReason::PeerNotify,
            );
            self.fail(reason, None, received);
            return;
        };
        if let Some(want) = &cfg.remote_id
            && IkeId::from_wire(idr).canonical() != want.canonical()
        {
            self.fail(
                FailureReason::PeerRejected(PeerRejection::UnexpectedIdentity(
                    IkeId::from_wire(idr).to_string(),
                )),
                None,
                None,
            );
            return;
        }
        // With EAP too, the responder proves itself with its certificate first (RFC 7296
        // 2.16): IDr, CERT and a signature AUTH come with the first EAP request.
        let subject = match self.authenticate_peer(payloads, idr) {
            Ok(s) => s,
            Err(reason) => {
                // Tell the responder, which considers the SA established (RFC 7296 2.21.2);
                // fire and forget, we are closing anyway.
                if eap.is_none() {
                    let notify = [Payload::Notify(Notify::new(
                        NotifyType::AUTHENTICATION_FAILED,
                        Vec::new(),
                    ))];
                    let id = self.window.next_request_id();
                    if let Ok(datagrams) =
                        self.protect(ExchangeType::INFORMATIONAL, id, false, &notify)
                    {
                        for d in datagrams {
                            self.push_transmit(d);
                        }
                    }
                }
                self.fail(reason, Some(NotifyType::AUTHENTICATION_FAILED), None);
                return;
            }
        };
        if let Some(mut client) = eap {
            client.idr = Some((idr.clone(), subject));
            self.eap_round(now, payloads, client);
            return;
        }
        self.establish_initiator(now, &cfg, payloads, subject);
    }

    /// The IKE SA is authenticated both ways: established, with its first Child SA from
    /// `payloads` (the last IKE_AUTH response).
    fn establish_initiator(
        &mut self,
        now: Instant,
        cfg: &InitiatorConfig,
        payloads: &[Payload],
        subject: String,
    ) {
        self.state = IkeSaState::Established;
        self.mobike = cfg.mobike && payloads.notify(NotifyType::MOBIKE_SUPPORTED).is_some();
        self.start_ike_lifetime(now);
        if let Some(info) = self.established_info(subject, now) {
            self.events.push_back(Event::IkeSaEstablished(info));
        }
        let child = self.initiator_child(cfg, payloads);
        // The first Child SA's keys are made: nothing reads the handshake's nonces, messages
        // or EAP state any more.
        self.handshake = None;
        match child {
            Ok(child) => {
                self.register_child(now, &child);
                self.events.push_back(Event::ChildSaEstablished(child));
            }
            Err((reason, received)) => {
                // Without its Child SA the IKE SA is useless to a remote-access client.
                self.events.push_back(Event::Failed(Failure {
                    reason,
                    notify_sent: None,
                    notify_received: received,
                    remote: self.remote,
                    claimed_id: self.claimed_peer.clone(),
                }));
                self.delete(now);
            }
        }
    }

    /// An IKE_AUTH response during our EAP: the next EAP round, or after EAP-Success the
    /// responder's AUTH from the MSK with the first Child SA.
    fn continue_eap_client(
        &mut self,
        now: Instant,
        payloads: &[Payload],
        cfg: &InitiatorConfig,
        client: Box<EapClient>,
    ) {
        if !client.succeeded {
            self.eap_round(now, payloads, client);
            return;
        }
        let (Some(msk), Some((idr, subject))) = (&client.msk, &client.idr) else {
            self.fail(
                FailureReason::Local("EAP finished without MSK".into()),
                None,
                None,
            );
            return;
        };
        let Some(auth) = payloads.auth() else {
            let received = payloads.error_notify().map(|n| n.notify_type);
            let reason = received.map_or(
                FailureReason::AuthPayload("no AUTH after EAP-Success".into()),
                FailureReason::PeerNotify,
            );
            self.fail(reason, None, received);
            return;
        };
        let verified = self.algs.map(|a| a.prf).and_then(|prf| {
            let signed = self.signed_octets(false, idr).ok()?;
            let expected = shared_key_auth(prf, msk, &signed);
            Some(
                auth.method == AuthMethod::SHARED_KEY_MIC
                    && bool::from(expected.as_bytes().ct_eq(&auth.data)),
            )
        });
        if verified != Some(true) {
            self.fail(
                FailureReason::AuthPayload(
                    "the gateway's AUTH from the EAP MSK does not verify".into(),
                ),
                None,
                None,
            );
            return;
        }
        let subject = subject.clone();
        self.eap_tls = client.description.clone();
        self.establish_initiator(now, cfg, payloads, subject);
    }

    /// Hands the EAP message of `payloads` to our EAP-TLS client and sends what it answers;
    /// after EAP-Success, our AUTH from the MSK.
    fn eap_round(&mut self, now: Instant, payloads: &[Payload], mut client: Box<EapClient>) {
        // A refusal may carry the EAP-Failure too; the notify says more (RFC 7296 2.21.2).
        if let Some(n) = payloads.error_notify() {
            self.fail(
                FailureReason::PeerNotify(n.notify_type),
                None,
                Some(n.notify_type),
            );
            return;
        }
        let Some(bytes) = payloads.eap() else {
            let received = payloads.error_notify().map(|n| n.notify_type);
            let reason = received.map_or(
                FailureReason::InvalidSyntax("IKE_AUTH response without EAP during EAP".into()),
                FailureReason::PeerNotify,
            );
            self.fail(reason, None, received);
            return;
        };
        let out = match client.handle(bytes) {
            Ok(ClientStep::Respond(response)) => vec![Payload::Eap(response)],
            Ok(ClientStep::Success) => {
                let Some(msk) = &client.msk else {
                    self.fail(
                        FailureReason::Local("EAP-Success without MSK".into()),
                        None,
                        None,
                    );
                    return;
                };
                let idi = self.cfg.ike().local.id.to_wire();
                let auth = self.algs.map(|a| a.prf).and_then(|prf| {
                    let signed = self.signed_octets(true, &idi).ok()?;
                    Some(shared_key_auth(prf, msk, &signed).as_bytes().to_vec())
                });
                let Some(data) = auth else {
                    self.fail(FailureReason::Local("no keys for AUTH".into()), None, None);
                    return;
                };
                client.succeeded = true;
                vec![Payload::Auth(Authentication {
                    method: AuthMethod::SHARED_KEY_MIC,
                    data,
                })]
            }
            Err(e) => {
                let reason = match client.rejection() {
                    Some(r) => FailureReason::PeerRejected(r),
                    None => FailureReason::AuthPayload(format!("EAP-TLS: {e}")),
                };
                self.fail(reason, None, None);
                return;
            }
        };
        match self.send_request(now, ExchangeType::IKE_AUTH, RequestKind::Auth, out) {
            Ok(()) => {
                if let Some(hs) = self.handshake.as_deref_mut() {
                    hs.eap_client = Some(client);
                }
            }
            Err(e) => self.fail(e.into(), None, None),
        }
    }

    pub(super) fn initiator_child(
        &self,
        cfg: &InitiatorConfig,
        payloads: &[Payload],
    ) -> Result<Box<ChildSa>, (FailureReason, Option<NotifyType>)> {
        if let Some(n) = payloads.error_notify() {
            let reason = match n.notify_type {
                NotifyType::NO_PROPOSAL_CHOSEN => FailureReason::NoProposalChosen,
                NotifyType::TS_UNACCEPTABLE => FailureReason::TsUnacceptable,
                NotifyType::INTERNAL_ADDRESS_FAILURE => FailureReason::AddressPoolExhausted,
                NotifyType::FAILED_CP_REQUIRED => FailureReason::CpRequired,
                t => FailureReason::PeerNotify(t),
            };
            return Err((reason, Some(n.notify_type)));
        }
        let syntax = |s: &str| (FailureReason::InvalidSyntax(s.to_owned()), None);
        let (Some(sa), Some(tsi), Some(tsr)) = (payloads.sa(), payloads.ts_i(), payloads.ts_r())
        else {
            return Err(syntax("no Child SA in IKE_AUTH response"));
        };
        let (algs, spi_out) = match sa.proposals.as_slice() {
            [one] => EspAlgorithms::from_wire(one).ok_or_else(|| syntax("bad ESP proposal"))?,
            _ => return Err(syntax("ESP reply must have one proposal")),
        };
        let acceptable = cfg.ike.esp_proposals.iter().any(|p| {
            p.encr.contains(&algs.encr)
                && algs.integ.is_none_or(|i| p.integ.contains(&i))
                && p.esn.contains(&algs.esn)
        });
        if !acceptable {
            return Err((FailureReason::NoProposalChosen, None));
        }
        if tsi.is_empty()
            || tsr.is_empty()
            || !tsi.iter().all(|t| ts::is_subset(t, &cfg.ts_local))
            || !tsr.iter().all(|t| ts::is_subset(t, &cfg.ts_remote))
        {
            return Err((FailureReason::TsUnacceptable, None));
        }
        let mut vips = Vec::new();
        let mut dns = Vec::new();
        let mut domains = Vec::new();
        let mut subnets = Vec::new();
        if let Some(cp) = payloads.cp().filter(|c| c.cfg_type == CfgType::CFG_REPLY) {
            for a in &cp.attributes {
                if let Some(d) = crate::dns_domain::from_attribute(a)
                    && !domains.contains(&d)
                    && domains.len() < crate::dns_domain::MAX_DOMAINS
                {
                    domains.push(d);
                }
                match a {
                    CfgAttribute::InternalIp4Address(Some(v)) => vips.push(IpAddr::V4(*v)),
                    CfgAttribute::InternalIp6Address(Some((v, _))) => vips.push(IpAddr::V6(*v)),
                    CfgAttribute::InternalIp4Dns(Some(v)) => dns.push(IpAddr::V4(*v)),
                    CfgAttribute::InternalIp6Dns(Some(v)) => dns.push(IpAddr::V6(*v)),
                    CfgAttribute::InternalIp4Subnet(Some((a, m))) => {
                        if let Ok(n) = Ipv4Net::with_netmask(*a, *m) {
                            subnets.push(IpNet::V4(n.trunc()));
                        }
                    }
                    CfgAttribute::InternalIp6Subnet(Some((a, p))) => {
                        if let Ok(n) = Ipv6Net::new(*a, *p) {
                            subnets.push(IpNet::V6(n.trunc()));
                        }
                    }
                    _ => {}
                }
            }
        }
        if (cfg.request_ipv4 || cfg.request_ipv6) && vips.is_empty() {
            return Err((FailureReason::AddressPoolExhausted, None));
        }
        if dns.is_empty() {
            // Nothing to resolve them with (RFC 8598 pairs them with the DNS servers).
            domains.clear();
        }
        let keys = self.child_keys(algs).map_err(|e| (e.into(), None))?;
        Ok(Box::new(ChildSa {
            ike_spi: self.local_spi(),
            spi_in: self.child_spi_in,
            spi_out,
            algorithms: algs,
            encr_key_in: keys.encr_r,
            integ_key_in: keys.integ_r,
            encr_key_out: keys.encr_i,
            integ_key_out: keys.integ_i,
            ts_local: tsi.to_vec(),
            ts_remote: tsr.to_vec(),
            virtual_ips: vips,
            dns_servers: dns,
            dns_domains: domains,
            subnets,
            local: self.local,
            remote: self.remote,
            udp_encap: self.encap,
        }))
    }
}

/// When a peer's SHA-1 signature is acceptable.
#[derive(Debug, Clone, Copy)]
struct Sha1Policy {
    /// `allow_sha1_signatures`.
    allowed: bool,
    /// The peer announced a SHA-2 hash for RFC 7427 signatures.
    peer_offers_sha2: bool,
}

fn verify_auth(
    auth: &Authentication,
    spki: &[u8],
    signed: &[u8],
    sha1: Sha1Policy,
) -> Result<(), PeerFault> {
    let (scheme, sig) = match auth.method {
        AuthMethod::RSA_SIG | AuthMethod::ECDSA_SHA256_P256 | AuthMethod::ECDSA_SHA384_P384 => (
            SignatureScheme::for_auth_method(auth.method.0)
                .ok_or(PeerFault::UnsupportedAuthMethod(auth.method))?,
            auth.data.as_slice(),
        ),
        AuthMethod::DIGITAL_SIGNATURE => {
            split_rfc7427_auth_data(&auth.data).map_err(PeerFault::AuthData)?
        }
        m => return Err(PeerFault::UnsupportedAuthMethod(m)),
    };
    if scheme.hash() == HashAlg::Sha1 {
        if !sha1.allowed {
            return Err(PeerFault::Sha1Signature);
        }
        if auth.method == AuthMethod::DIGITAL_SIGNATURE && sha1.peer_offers_sha2 {
            return Err(PeerFault::Sha1Downgrade);
        }
    }
    verify(scheme, spki, signed, sig).map_err(PeerFault::Signature)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod sha1_tests {
    use super::*;
    use ipsec_crypto::SigningKey;

    fn rsa_key() -> (SigningKey, Vec<u8>) {
        let key = pki::PrivateKey::generate(pki::KeyAlgorithm::Rsa2048).unwrap();
        let signing = SigningKey::from_pkcs8_der(key.pkcs8_der()).unwrap();
        let spki = signing.public_key_spki_der().unwrap();
        (signing, spki)
    }

    fn policy(allowed: bool, peer_offers_sha2: bool) -> Sha1Policy {
        Sha1Policy {
            allowed,
            peer_offers_sha2,
        }
    }

    /// SHA-1 signatures only with allow_legacy; RFC 7427 with SHA-1 never from a peer that
    /// offers SHA-2 (RFC 8247 3.2); SHA-2 signatures always.
    #[test]
    fn sha1_signatures_follow_the_policy() {
        let (key, spki) = rsa_key();
        let signed = b"octets the AUTH covers";
        let sig = key
            .sign(SignatureScheme::RsaPkcs1(HashAlg::Sha1), signed)
            .unwrap();
        let method1 = Authentication {
            method: AuthMethod::RSA_SIG,
            data: sig.clone(),
        };
        let rfc7427_sha1 = Authentication {
            method: AuthMethod::DIGITAL_SIGNATURE,
            data: build_rfc7427_auth_data(SignatureScheme::RsaPkcs1(HashAlg::Sha1), &sig).unwrap(),
        };
        assert!(verify_auth(&method1, &spki, signed, policy(false, false)).is_err());
        assert!(verify_auth(&method1, &spki, signed, policy(true, false)).is_ok());
        assert!(verify_auth(&rfc7427_sha1, &spki, signed, policy(false, false)).is_err());
        assert!(verify_auth(&rfc7427_sha1, &spki, signed, policy(true, false)).is_ok());
        let e = verify_auth(&rfc7427_sha1, &spki, signed, policy(true, true)).unwrap_err();
        assert_eq!(e, PeerFault::Sha1Downgrade);
        assert!(e.to_string().contains("RFC 8247"), "{e}");

        let sha256 = SignatureScheme::RsaPkcs1(HashAlg::Sha256);
        let good = Authentication {
            method: AuthMethod::DIGITAL_SIGNATURE,
            data: build_rfc7427_auth_data(sha256, &key.sign(sha256, signed).unwrap()).unwrap(),
        };
        assert!(verify_auth(&good, &spki, signed, policy(false, true)).is_ok());
    }
}
