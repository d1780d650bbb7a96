//! Every refusal goes out with its notify, and both sides report it.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ikev2::ike_wire::{Message, NotifyType, Payload, PayloadType, Payloads, UnknownPayload};
use ikev2::ipsec_crypto::Provider;
use ikev2::{
    CloseReason, Endpoint, EspProposal, Event, FailureReason, IkeId, IkeProposal, PeerRejection,
    PeerRole, PkiValidator,
};
use pki::{CertKind, KeyAlgorithm};

fn closed(events: &[Event]) -> bool {
    events.iter().any(|e| matches!(e, Event::Closed(_)))
}

fn server_closed(pair: &Pair) -> bool {
    pair.server_events
        .iter()
        .any(|(_, e)| matches!(e, Event::Closed(_)))
}

/// Asserts the server sent `notify` and the client received it, and both gave up.
fn assert_auth_refused(pair: &Pair, notify: NotifyType) {
    let s = pair.server_failure().expect("server failure");
    assert_eq!(s.notify_sent, Some(notify));
    let c = pair.client_failure().expect("client failure");
    assert_eq!(c.notify_received, Some(notify));
    assert!(pair.client.is_closed());
    assert!(closed(&pair.client_events));
    assert!(server_closed(pair));
    assert!(pair.server.is_empty());
}

#[test]
fn no_proposal_chosen_for_ike() {
    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.client.ike.ike_proposals =
        vec![IkeProposal::parse("aes128-sha512-modp2048", false).unwrap()];
    let mut pair = Pair::new(setup);
    pair.settle();
    let f = pair.client_failure().unwrap();
    assert_eq!(f.reason, FailureReason::NoProposalChosen);
    assert_eq!(f.notify_received, Some(NotifyType::NO_PROPOSAL_CHOSEN));
    assert!(pair.server.is_empty(), "stateless refusal");
}

#[test]
fn no_proposal_chosen_for_esp_keeps_nothing() {
    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.client.ike.esp_proposals = vec![EspProposal::parse("aes128-sha1", false).unwrap()];
    let mut pair = Pair::new(setup);
    pair.run(true, Duration::from_secs(60));
    // IKE SA came up, the Child SA was refused, the client deleted the IKE SA.
    assert!(pair.established().0.is_some() && pair.established().1.is_some());
    let s = pair.server_failure().unwrap();
    assert_eq!(s.notify_sent, Some(NotifyType::NO_PROPOSAL_CHOSEN));
    let c = pair.client_failure().unwrap();
    assert_eq!(c.notify_received, Some(NotifyType::NO_PROPOSAL_CHOSEN));
    assert!(pair.client_child().is_none() && pair.server_child().is_none());
    assert!(pair.client.is_closed());
    assert!(pair.server.is_empty());
    assert_eq!(pair.pool.leased(), 0, "no address held");
}

#[test]
fn untrusted_client_certificate_is_authentication_failed() {
    let pki = Pki::new(KeyAlgorithm::P256);
    let rogue = Pki::new(KeyAlgorithm::P256);
    let gw = pki.issue(CertKind::Gateway, GATEWAY_NAME, KeyAlgorithm::P256);
    let cl = rogue.issue(CertKind::Machine, CLIENT_NAME, KeyAlgorithm::P256);
    let mut setup = Setup::with_identities(&pki, &gw, &cl, IkeId::Fqdn(CLIENT_NAME.into()));
    // The client still trusts the real gateway.
    setup.client.ike.validator = Arc::new(PkiValidator {
        trust: pki.trust(),
        role: PeerRole::Gateway {
            server_name: GATEWAY_NAME.into(),
        },
        expected_id: None,
    });
    let mut pair = Pair::new(setup);
    pair.settle();
    assert_auth_refused(&pair, NotifyType::AUTHENTICATION_FAILED);
    assert!(matches!(
        pair.server_failure().unwrap().reason,
        FailureReason::PeerRejected(PeerRejection::Certificate(_))
    ));
    assert_eq!(pair.pool.leased(), 0);
}

#[test]
fn revoked_client_certificate_is_authentication_failed() {
    let pki = Pki::new(KeyAlgorithm::P256);
    let gw = pki.issue(CertKind::Gateway, GATEWAY_NAME, KeyAlgorithm::P256);
    let cl = pki.issue(CertKind::Machine, CLIENT_NAME, KeyAlgorithm::P256);
    let mut setup = Setup::with_identities(&pki, &gw, &cl, IkeId::Fqdn(CLIENT_NAME.into()));
    let mut trust = pki.trust();
    trust.revoke(cl.chain[0].thumbprint());
    setup.server.ike.validator = Arc::new(PkiValidator {
        trust,
        role: PeerRole::Client,
        expected_id: None,
    });
    let mut pair = Pair::new(setup);
    pair.settle();
    assert_auth_refused(&pair, NotifyType::AUTHENTICATION_FAILED);
    let revoked = cl.chain[0].thumbprint().to_string();
    assert!(
        matches!(
            &pair.server_failure().unwrap().reason,
            FailureReason::PeerRejected(PeerRejection::Certificate(pki::PkiError::Revoked(t)))
                if t.to_string() == revoked
        ),
        "{:?}",
        pair.server_failure().unwrap().reason
    );
}

#[test]
fn identity_not_in_certificate_is_authentication_failed() {
    let pki = Pki::new(KeyAlgorithm::P256);
    let gw = pki.issue(CertKind::Gateway, GATEWAY_NAME, KeyAlgorithm::P256);
    let cl = pki.issue(CertKind::Machine, CLIENT_NAME, KeyAlgorithm::P256);
    let setup = Setup::with_identities(&pki, &gw, &cl, IkeId::Fqdn("other.example.test".into()));
    let mut pair = Pair::new(setup);
    pair.settle();
    assert_auth_refused(&pair, NotifyType::AUTHENTICATION_FAILED);
    assert!(matches!(
        pair.server_failure().unwrap().reason,
        FailureReason::PeerRejected(PeerRejection::IdentityMismatch(_))
    ));
}

#[test]
fn expired_certificate_is_authentication_failed() {
    let mut pair = Pair::new(Setup::new(KeyAlgorithm::P256));
    pair.server_unix = CERT_START + 20 * 365 * 86_400;
    pair.settle();
    assert_auth_refused(&pair, NotifyType::AUTHENTICATION_FAILED);
    assert!(
        matches!(
            &pair.server_failure().unwrap().reason,
            FailureReason::PeerRejected(PeerRejection::Certificate(pki::PkiError::Expired))
        ),
        "{:?}",
        pair.server_failure().unwrap().reason
    );
}

#[test]
fn client_rejecting_the_gateway_tells_it() {
    let pki = Pki::new(KeyAlgorithm::P256);
    let gw = pki.issue(CertKind::Gateway, GATEWAY_NAME, KeyAlgorithm::P256);
    let cl = pki.issue(CertKind::Machine, CLIENT_NAME, KeyAlgorithm::P256);
    // The client dials a name the gateway certificate does not carry.
    let mut setup = Setup::with_identities(&pki, &gw, &cl, IkeId::Fqdn(CLIENT_NAME.into()));
    setup.client.ike.validator = Arc::new(PkiValidator {
        trust: pki.trust(),
        role: PeerRole::Gateway {
            server_name: "vpn.other.test".into(),
        },
        expected_id: None,
    });
    let mut pair = Pair::new(setup);
    pair.settle();
    let c = pair.client_failure().unwrap();
    assert!(matches!(
        c.reason,
        FailureReason::PeerRejected(PeerRejection::Certificate(_))
    ));
    assert_eq!(c.notify_sent, Some(NotifyType::AUTHENTICATION_FAILED));
    let s = pair.server_failure().unwrap();
    assert_eq!(s.notify_received, Some(NotifyType::AUTHENTICATION_FAILED));
    assert!(pair.server.is_empty());
    assert_eq!(pair.pool.leased(), 0);
}

#[test]
fn ts_unacceptable() {
    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.client.ts_remote = vec![v4_range([192, 168, 0, 0], [192, 168, 0, 255])];
    let mut pair = Pair::new(setup);
    pair.run(true, Duration::from_secs(60));
    assert_eq!(
        pair.server_failure().unwrap().notify_sent,
        Some(NotifyType::TS_UNACCEPTABLE)
    );
    let c = pair.client_failure().unwrap();
    assert_eq!(c.reason, FailureReason::TsUnacceptable);
    assert_eq!(c.notify_received, Some(NotifyType::TS_UNACCEPTABLE));
    assert_eq!(pair.pool.leased(), 0, "address returned");
}

#[test]
fn internal_address_failure_when_the_pool_is_empty() {
    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.pool = TestPool::with(&[]);
    let mut pair = Pair::new(setup);
    pair.run(true, Duration::from_secs(60));
    assert_eq!(
        pair.server_failure().unwrap().notify_sent,
        Some(NotifyType::INTERNAL_ADDRESS_FAILURE)
    );
    let c = pair.client_failure().unwrap();
    assert_eq!(c.reason, FailureReason::AddressPoolExhausted);
    assert_eq!(
        c.notify_received,
        Some(NotifyType::INTERNAL_ADDRESS_FAILURE)
    );
    assert!(matches!(
        pair.client_events.last(),
        Some(Event::Closed(CloseReason::LocalDelete))
    ));
}

#[test]
fn failed_cp_required() {
    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.server.require_virtual_ip = true;
    setup.client.request_ipv4 = false;
    let mut pair = Pair::new(setup);
    pair.run(true, Duration::from_secs(60));
    assert_eq!(
        pair.server_failure().unwrap().notify_sent,
        Some(NotifyType::FAILED_CP_REQUIRED)
    );
    assert_eq!(
        pair.client_failure().unwrap().reason,
        FailureReason::CpRequired
    );
}

/// A fresh responder and the first IKE_SA_INIT request of a real initiator.
fn responder_and_request() -> (Endpoint, Message) {
    let setup = Setup::new(KeyAlgorithm::P256);
    let pair = Pair::new(setup);
    let request = Message::decode(&pair.wire[0].t.bytes).unwrap();
    let setup = Setup::new(KeyAlgorithm::P256);
    let server = Endpoint::new(
        Arc::new(setup.server),
        Arc::new(Provider::deterministic(b"s")),
        Box::new(setup.pool),
    )
    .unwrap();
    (server, request)
}

fn answer(server: &mut Endpoint, bytes: &[u8]) -> Message {
    let from: SocketAddr = client_addr();
    server.handle_datagram(at(Instant::now()), Path::ike(server_addr(), from), bytes);
    let t = server.poll_transmit().expect("a reply");
    assert_eq!(t.remote, from);
    Message::decode(&t.bytes).unwrap()
}

#[test]
fn unsupported_critical_payload_in_ike_sa_init() {
    let (mut server, mut request) = responder_and_request();
    request.payloads.push(Payload::Unknown(UnknownPayload {
        payload_type: PayloadType(200),
        critical: true,
        body: vec![1, 2, 3],
    }));
    let reply = answer(&mut server, &request.encode().unwrap());
    let n = reply
        .payloads
        .notify(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD)
        .unwrap();
    assert_eq!(n.data, [200]);
    assert!(server.is_empty());
}

#[test]
fn unknown_non_critical_payloads_and_status_notifies_are_ignored() {
    let (mut server, mut request) = responder_and_request();
    request.payloads.push(Payload::Unknown(UnknownPayload {
        payload_type: PayloadType(200),
        critical: false,
        body: vec![1, 2, 3],
    }));
    request
        .payloads
        .push(Payload::Notify(ikev2::ike_wire::Notify::new(
            NotifyType(40_000),
            vec![9],
        )));
    let reply = answer(&mut server, &request.encode().unwrap());
    assert!(reply.payloads.sa().is_some());
    assert_eq!(server.half_open(), 1);
}

#[test]
fn invalid_syntax_without_nonce() {
    let (mut server, mut request) = responder_and_request();
    request.payloads.retain(|p| !matches!(p, Payload::Nonce(_)));
    let reply = answer(&mut server, &request.encode().unwrap());
    assert!(reply.payloads.notify(NotifyType::INVALID_SYNTAX).is_some());
    assert!(server.is_empty());
}

#[test]
fn invalid_major_version() {
    let (mut server, request) = responder_and_request();
    let mut bytes = request.encode().unwrap();
    bytes[17] = 0x30; // major version 3
    let reply = answer(&mut server, &bytes);
    assert!(
        reply
            .payloads
            .notify(NotifyType::INVALID_MAJOR_VERSION)
            .is_some()
    );
    assert_eq!(reply.header.spi_i, request.header.spi_i);
}

#[test]
fn garbage_is_dropped_silently() {
    let (mut server, request) = responder_and_request();
    let bytes = request.encode().unwrap();
    for cut in [0, 10, 27, 28, 40, bytes.len() - 1] {
        server.handle_datagram(
            at(Instant::now()),
            Path::ike(server_addr(), client_addr()),
            &bytes[..cut],
        );
        assert!(server.poll_transmit().is_none(), "cut at {cut}");
    }
    assert!(server.is_empty());
}
