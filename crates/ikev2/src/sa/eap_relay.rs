//! Responder EAP pass-through (RFC 3579's model): the gateway asks for the EAP identity itself,
//! then hands every EAP-Response to the daemon ([`Event::EapPassThrough`]), which relays it to
//! an authentication server (RADIUS) and gives back what to answer ([`EapAnswer`]). The IKE
//! request stays unanswered meanwhile; its retransmissions are dropped by the message window.
//! After the server's success the initiator's AUTH is checked with the MSK the server gave.

use std::sync::Arc;
use std::time::Instant;

use ike_wire::{ExchangeType, Identification, Notify, NotifyType, Payload, Payloads};
use zeroize::Zeroizing;

use super::eap::EapError;
use super::{IkeSa, eap};
use crate::config::{AddressPool, ResponderConfig};
use crate::event::{EapAnswer, Event};
use crate::failure::{AuthFault, FailureReason, LocalError, SyntaxError};
use crate::identity::IkeId;

/// What [`crate::IkeSaInfo::eap_tls`] says of a relayed EAP conversation (its method is the
/// server's business).
pub const RELAYED: &str = "relayed to the authentication server";

/// Longest EAP identity taken (RFC 3748 leaves it open; NAIs are at most 253 bytes).
const MAX_IDENTITY: usize = 253;

/// Where the relayed conversation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// An EAP-Response went to the daemon for this IKE_AUTH request; no answer yet.
    Waiting { message_id: u32 },
    /// The server's request went to the initiator; its response is awaited.
    Relaying,
    /// EAP-Success sent: the next IKE_AUTH request carries the MSK-based AUTH.
    AwaitAuth,
}

/// The relayed EAP conversation of one IKE SA.
pub(super) struct EapRelay {
    phase: Phase,
    /// EAP-Response/Identity's data.
    identity: Vec<u8>,
    /// The payloads of the first IKE_AUTH request (SA, TS, CP, notifies for the Child SA).
    first_request: Vec<Payload>,
    idi: ike_wire::Identification,
    msk: Option<Zeroizing<Vec<u8>>>,
    policy: Option<Arc<crate::PeerPolicy>>,
    /// Who the server says the peer is, when it says.
    vouched: Option<String>,
    until: Option<std::time::SystemTime>,
}

impl std::fmt::Debug for EapRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EapRelay")
            .field("phase", &self.phase)
            .field("msk", &self.msk.as_ref().map(|_| "<secret>"))
            .finish_non_exhaustive()
    }
}

impl IkeSa {
    /// IKE_AUTH without AUTH from an initiator that wants EAP: our AUTH and the
    /// EAP-Request/Identity.
    pub(super) fn start_eap_relay(
        &mut self,
        message_id: u32,
        cfg: &ResponderConfig,
        payloads: &[Payload],
        idi: &Identification,
    ) {
        let Some((idr, auth)) = self.our_auth_for_eap(message_id, cfg, idi) else {
            return;
        };
        let identifier = self.provider.random_array::<1>().map_or(1, |[b]| b);
        let mut out = vec![Payload::IdR(idr)];
        out.extend(self.cert_payloads());
        out.push(Payload::Auth(auth));
        out.push(Payload::Eap(eap::request(
            identifier,
            eap::TYPE_IDENTITY,
            &[],
        )));
        self.send_response(ExchangeType::IKE_AUTH, message_id, &out);
        let relay = Box::new(EapRelay {
            phase: Phase::Relaying,
            identity: Vec::new(),
            first_request: payloads.to_vec(),
            idi: idi.clone(),
            msk: None,
            policy: None,
            vouched: None,
            until: None,
        });
        if let Some(hs) = self.handshake.as_deref_mut() {
            hs.eap_relay = Some(relay);
        }
    }

    /// An IKE_AUTH request during a relayed conversation.
    pub(super) fn continue_eap_relay(
        &mut self,
        now: Instant,
        message_id: u32,
        payloads: &[Payload],
        pool: Option<&mut dyn AddressPool>,
        cfg: &ResponderConfig,
        mut relay: Box<EapRelay>,
    ) {
        match relay.phase {
            Phase::AwaitAuth => {
                let Some(msk) = relay.msk.take() else {
                    self.refuse_auth(
                        message_id,
                        NotifyType::AUTHENTICATION_FAILED,
                        FailureReason::Local(LocalError::Internal("EAP finished without MSK")),
                    );
                    return;
                };
                let peer_id = self.relayed_peer_id(&relay);
                let validated = crate::identity::ValidatedPeer {
                    spki_der: Vec::new(),
                    subject: String::from_utf8_lossy(&relay.identity).into_owned(),
                    // The authentication server vouched for the peer; nothing here to re-check
                    // later but the session's own lifetime.
                    chain: pki::ChainRecord {
                        thumbprints: Vec::new(),
                        not_after: relay.until.unwrap_or(
                            std::time::UNIX_EPOCH
                                + std::time::Duration::from_secs(u64::from(u32::MAX)),
                        ),
                    },
                    policy: relay.policy.clone(),
                };
                let (ours, subject) = match self
                    .verify_msk_auth(&msk, &relay.idi, peer_id, &validated, payloads, cfg)
                {
                    Ok(v) => v,
                    Err(reason) => {
                        self.refuse_auth(message_id, NotifyType::AUTHENTICATION_FAILED, reason);
                        return;
                    }
                };
                self.peer.eap_tls = Some(RELAYED.into());
                let first_request = std::mem::take(&mut relay.first_request);
                let out = vec![Payload::Auth(ours)];
                self.finish_auth(now, message_id, cfg, &first_request, out, subject, pool);
            }
            Phase::Waiting { .. } => {
                // The message window lets only a new request through: one while the last
                // is with the server is out of order.
                self.refuse_auth(
                    message_id,
                    NotifyType::INVALID_SYNTAX,
                    FailureReason::InvalidSyntax(SyntaxError::Invalid(
                        "IKE_AUTH request while EAP is relayed",
                    )),
                );
            }
            Phase::Relaying => {
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
                let Ok(packet) = eap::EapPacket::parse(bytes) else {
                    self.refuse_auth(
                        message_id,
                        NotifyType::AUTHENTICATION_FAILED,
                        FailureReason::AuthPayload(AuthFault::Eap(EapError::Malformed)),
                    );
                    return;
                };
                if relay.identity.is_empty() && packet.method == Some(eap::TYPE_IDENTITY) {
                    if packet.data.is_empty() || packet.data.len() > MAX_IDENTITY {
                        self.refuse_auth(
                            message_id,
                            NotifyType::AUTHENTICATION_FAILED,
                            FailureReason::AuthPayload(AuthFault::Eap(EapError::Unexpected(
                                "an empty or too long identity",
                            ))),
                        );
                        return;
                    }
                    relay.identity = packet.data.to_vec();
                }
                relay.phase = Phase::Waiting { message_id };
                self.events.push_back(Event::EapPassThrough {
                    eap: bytes.to_vec(),
                    identity: relay.identity.clone(),
                });
                if let Some(hs) = self.handshake.as_deref_mut() {
                    hs.eap_relay = Some(relay);
                }
            }
        }
    }

    /// The peer's identity: the User-Name the server vouched for, else the EAP identity
    /// (Windows sends its UPN there). Always a user-style (RFC 822) identity: a relayed peer
    /// never takes a machine's (FQDN) identity, its lease or its sessions.
    fn relayed_peer_id(&self, relay: &EapRelay) -> IkeId {
        let claimed = String::from_utf8_lossy(&relay.identity);
        IkeId::Rfc822(
            relay
                .vouched
                .clone()
                .unwrap_or_else(|| claimed.into_owned()),
        )
        .canonical()
    }

    /// What the authentication server said about the response handed out last.
    pub(crate) fn eap_answer(&mut self, answer: EapAnswer) {
        let Some(mut relay) = self
            .handshake
            .as_deref_mut()
            .and_then(|hs| hs.eap_relay.take())
        else {
            return;
        };
        let Phase::Waiting { message_id } = relay.phase else {
            if let Some(hs) = self.handshake.as_deref_mut() {
                hs.eap_relay = Some(relay);
            }
            return;
        };
        match answer {
            EapAnswer::Request(request) => {
                relay.phase = Phase::Relaying;
                self.send_response(ExchangeType::IKE_AUTH, message_id, &[Payload::Eap(request)]);
                if let Some(hs) = self.handshake.as_deref_mut() {
                    hs.eap_relay = Some(relay);
                }
            }
            EapAnswer::Success {
                eap,
                msk,
                policy,
                identity,
                until,
            } => {
                relay.phase = Phase::AwaitAuth;
                relay.msk = Some(msk);
                relay.policy = policy;
                relay.vouched = identity.filter(|i| !i.is_empty());
                relay.until = until;
                self.send_response(ExchangeType::IKE_AUTH, message_id, &[Payload::Eap(eap)]);
                if let Some(hs) = self.handshake.as_deref_mut() {
                    hs.eap_relay = Some(relay);
                }
            }
            EapAnswer::Failure { eap, reason } => {
                let mut out = Vec::new();
                if let Some(eap) = eap {
                    out.push(Payload::Eap(eap));
                }
                out.push(Payload::Notify(Notify::new(
                    NotifyType::AUTHENTICATION_FAILED,
                    Vec::new(),
                )));
                self.send_response(ExchangeType::IKE_AUTH, message_id, &out);
                self.fail(
                    FailureReason::PeerRejected(crate::identity::PeerRejection::ServerRefused(
                        reason,
                    )),
                    Some(NotifyType::AUTHENTICATION_FAILED),
                    None,
                );
            }
        }
    }
}
