//! What an IKE SA needs only while IKE_SA_INIT and IKE_AUTH are in progress: the nonces and
//! messages the AUTH payloads sign, the initiator's DH key and retries, the establishment
//! deadline and the EAP conversations. The SA drops it once established; nothing after that
//! (IKE SA and Child SA rekeys, MOBIKE, INFORMATIONAL) reads any of it.

use std::time::Instant;

use ipsec_crypto::DhPrivateKey;

use super::eap::{EapClient, EapServer};
use super::eap_relay::EapRelay;

/// The exchange in progress until the IKE SA is established.
#[derive(Debug, Default)]
pub(super) struct Handshake {
    /// Ni: the responder's AUTH signs it, and the first Child SA's keys come from it.
    pub(super) ni: Vec<u8>,
    /// Nr: the initiator's AUTH signs it, and the first Child SA's keys come from it.
    pub(super) nr: Vec<u8>,
    /// Initiator: our DH key until the IKE_SA_INIT response.
    pub(super) dh: Option<DhPrivateKey>,
    /// Initiator: the responder's COOKIE, sent back in the next IKE_SA_INIT request.
    pub(super) cookie: Option<Vec<u8>>,
    /// Initiator: COOKIE and INVALID_KE_PAYLOAD round trips so far.
    pub(super) init_retries: u32,
    /// The IKE_SA_INIT request as sent (the last one) and the response: the AUTH payloads
    /// sign them (RFC 7296 2.15).
    pub(super) init_request: Vec<u8>,
    pub(super) init_response: Vec<u8>,
    /// The SA fails unless established by then.
    pub(super) establish_deadline: Option<Instant>,
    /// Responder: the EAP-TLS conversation of IKE_AUTH, if the initiator chose EAP.
    pub(super) eap: Option<Box<EapServer>>,
    /// Responder: the relayed EAP conversation, if EAP goes to an authentication server.
    pub(super) eap_relay: Option<Box<EapRelay>>,
    /// Initiator: our EAP-TLS conversation of IKE_AUTH, if we authenticate with EAP.
    pub(super) eap_client: Option<Box<EapClient>>,
}
