//! The initiator's side of IKE_AUTH: its request, the response (with or without our
//! EAP-TLS client), and establishing the SA.

use std::time::Instant;

use ike_wire::{
    AuthMethod, Authentication, CertEncoding, CfgAttribute, CfgAttributeType, CfgType,
    Configuration, ExchangeType, Notify, NotifyType, Payload, Payloads, SecurityAssociation,
};
use ipsec_crypto::shared_key_auth;
use subtle::ConstantTimeEq;

use crate::config::InitiatorConfig;
use crate::event::Event;
use crate::failure::{AuthFault, ConfigFault, Failure, FailureReason, LocalError, SyntaxError};
use crate::identity::{IkeId, PeerRejection};
use crate::sa::eap::{ClientStep, EapClient};
use crate::sa::error::SaError;
use crate::sa::{IkeSa, IkeSaState, RequestKind, RoleConfig};

impl IkeSa {
    pub(in crate::sa) fn build_auth_request(&mut self) -> Result<Vec<Payload>, SaError> {
        let RoleConfig::Initiator(cfg) = self.cfg.clone() else {
            return Err(SaError::internal("not an initiator"));
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
    pub(in crate::sa) fn process_auth_response(&mut self, now: Instant, payloads: &[Payload]) {
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
                FailureReason::InvalidSyntax(SyntaxError::Invalid("IKE_AUTH response without IDr")),
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
                    remote: self.path.remote,
                    claimed_id: self.peer.claimed.clone(),
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
                FailureReason::Local(LocalError::Internal("EAP finished without MSK")),
                None,
                None,
            );
            return;
        };
        let Some(auth) = payloads.auth() else {
            let received = payloads.error_notify().map(|n| n.notify_type);
            let reason = received.map_or(
                FailureReason::AuthPayload(AuthFault::Missing("no AUTH after EAP-Success")),
                FailureReason::PeerNotify,
            );
            self.fail(reason, None, received);
            return;
        };
        let verified = self.keys.as_ref().map(|k| k.algs.prf).and_then(|prf| {
            let signed = self.signed_octets(false, idr).ok()?;
            let expected = shared_key_auth(prf, msk, &signed);
            Some(
                auth.method == AuthMethod::SHARED_KEY_MIC
                    && bool::from(expected.as_bytes().ct_eq(&auth.data)),
            )
        });
        if verified != Some(true) {
            self.fail(
                FailureReason::AuthPayload(AuthFault::MskMismatch(
                    "the gateway's AUTH from the EAP MSK does not verify",
                )),
                None,
                None,
            );
            return;
        }
        let subject = subject.clone();
        self.peer.eap_tls = client.description.clone();
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
                FailureReason::InvalidSyntax(SyntaxError::Invalid(
                    "IKE_AUTH response without EAP during EAP",
                )),
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
                        FailureReason::Local(LocalError::Internal("EAP-Success without MSK")),
                        None,
                        None,
                    );
                    return;
                };
                let idi = self.cfg.ike().local.id.to_wire();
                let auth = self.keys.as_ref().map(|k| k.algs.prf).and_then(|prf| {
                    let signed = self.signed_octets(true, &idi).ok()?;
                    Some(shared_key_auth(prf, msk, &signed).as_bytes().to_vec())
                });
                let Some(data) = auth else {
                    self.fail(
                        FailureReason::Local(LocalError::Internal("no keys for AUTH")),
                        None,
                        None,
                    );
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
                    None => FailureReason::AuthPayload(AuthFault::Eap(e)),
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
}
