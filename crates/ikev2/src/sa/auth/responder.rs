//! The responder's side of IKE_AUTH: the request with AUTH or asking for EAP, our EAP-TLS
//! server's rounds, the MSK-based AUTH, and the response that establishes the SA.

use std::time::Instant;

use ike_wire::{
    AuthMethod, Authentication, ExchangeType, Identification, Notify, NotifyType, Payload,
    Payloads, ReassemblyLimits,
};
use ipsec_crypto::shared_key_auth;
use subtle::ConstantTimeEq;

use crate::config::{AddressPool, ResponderConfig};
use crate::event::Event;
use crate::failure::{AuthFault, ConfigFault, Failure, FailureReason, LocalError, SyntaxError};
use crate::identity::{IkeId, PeerRejection};
use crate::sa::eap::{EapServer, Phase, Step};
use crate::sa::error::SaError;
use crate::sa::{IkeSa, IkeSaState, RoleConfig, eap};

impl IkeSa {
    pub(in crate::sa) fn process_auth_request(
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
                FailureReason::InvalidSyntax(SyntaxError::Invalid("IKE_AUTH without IDi")),
            );
            return;
        };
        self.peer.initial_contact = payloads.notify(NotifyType::INITIAL_CONTACT).is_some();
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
    pub(in crate::sa) fn finish_auth(
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
                remote: self.path.remote,
                claimed_id: self.peer.claimed.clone(),
            })),
        }
    }

    /// IKE_AUTH without AUTH, the initiator's wish for EAP (RFC 7296 2.16): its claimed
    /// identity noted and our AUTH made, which the first EAP request goes out with. `None`:
    /// refused (already answered).
    pub(in crate::sa) fn our_auth_for_eap(
        &mut self,
        message_id: u32,
        cfg: &ResponderConfig,
        idi: &Identification,
    ) -> Option<(Identification, Authentication)> {
        self.peer.claimed = Some(IkeId::from_wire(idi).canonical());
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
            self.peer.eap_tls = eap.description.clone();
            let out = vec![Payload::Auth(ours)];
            self.finish_auth(now, message_id, cfg, &first_request, out, subject, pool);
            return;
        }
        let Some(bytes) = payloads.eap() else {
            self.refuse_auth(
                message_id,
                NotifyType::AUTHENTICATION_FAILED,
                FailureReason::AuthPayload(AuthFault::Missing(
                    "IKE_AUTH without EAP payload during EAP",
                )),
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
                FailureReason::AuthPayload(AuthFault::Eap(e)),
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
            return Err(FailureReason::Local(LocalError::Internal(
                "EAP finished without MSK",
            )));
        };
        self.verify_msk_auth(msk, &eap.idi, peer_id.clone(), validated, payloads, cfg)
    }

    /// Checks the initiator's AUTH made from the EAP MSK, computes ours, and takes the peer
    /// as authenticated (our EAP-TLS server or a relayed one).
    pub(in crate::sa) fn verify_msk_auth(
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
            .ok_or(AuthFault::Missing("missing AUTH after EAP"))?;
        let prf = self.keys()?.algs.prf;
        let theirs = self.signed_octets(false, idi)?;
        let expected = shared_key_auth(prf, msk, &theirs);
        if auth.method != AuthMethod::SHARED_KEY_MIC
            || !bool::from(expected.as_bytes().ct_eq(&auth.data))
        {
            return Err(FailureReason::AuthPayload(AuthFault::MskMismatch(
                "AUTH from the EAP MSK does not verify",
            )));
        }
        let idr = cfg.ike.local.id.to_wire();
        let ours = self.signed_octets(true, &idr)?;
        let data = shared_key_auth(prf, msk, &ours).as_bytes().to_vec();
        self.peer.id = Some(peer_id);
        self.peer.chain = Some(validated.chain.clone());
        self.peer.policy.clone_from(&validated.policy);
        self.peer.auth_method = Some(AuthMethod::SHARED_KEY_MIC);
        Ok((
            Authentication {
                method: AuthMethod::SHARED_KEY_MIC,
                data,
            },
            validated.subject.clone(),
        ))
    }

    pub(in crate::sa) fn refuse_auth(
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
}
