//! RFC 5685 redirect during IKE_SA_INIT: a gateway sends clients that can follow to another
//! gateway, statelessly; clients that cannot are served; a client follows only an answer that
//! carries its own nonce.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::Ipv4Addr;

use common::*;
use ikev2::ike_wire::{
    ExchangeType, Flags, Header, Message, Notify, NotifyType, Payload, Payloads,
};
use ikev2::{FailureReason, GatewayIdentity, IkeSaState};
use pki::KeyAlgorithm;

fn other_gateway() -> GatewayIdentity {
    GatewayIdentity::fqdn("gw2.vpn.example").unwrap()
}

/// A client that follows redirects (not the default).
fn following() -> Setup {
    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.client.follow_redirects = true;
    setup
}

/// The client's first IKE_SA_INIT request, as it went on the wire.
fn first_request(pair: &Pair) -> Message {
    let f = pair.wire.iter().find(|f| f.to_server).unwrap();
    Message::decode(&f.t.bytes).unwrap()
}

#[test]
fn a_redirecting_gateway_sends_a_client_that_can_follow_elsewhere_without_state() {
    let mut pair = Pair::new(following());
    pair.server.set_redirect(Some(other_gateway()));
    pair.settle();
    let request = first_request(&pair);
    assert!(
        request
            .payloads
            .notify(NotifyType::REDIRECT_SUPPORTED)
            .is_some()
    );
    let failure = pair.client_failure().expect("the client stops here");
    assert_eq!(failure.reason, FailureReason::Redirected(other_gateway()));
    assert_eq!(failure.reason.code(), "redirected");
    assert_eq!(pair.client.state(), IkeSaState::Closed);
    assert_eq!(pair.server.stats().redirected, 1);
    assert!(pair.server.is_empty(), "no state for a redirected client");
    assert_eq!(pair.server.half_open(), 0);
    assert_eq!(pair.pool.leased(), 0);
    // The answer carried the client's nonce after the gateway.
    let answer = pair.wire.iter().find(|f| !f.to_server).unwrap();
    let answer = Message::decode(&answer.t.bytes).unwrap();
    let (to, nonce) = answer
        .payloads
        .notify(NotifyType::REDIRECT)
        .unwrap()
        .redirect_target()
        .unwrap();
    assert_eq!(to, other_gateway());
    assert_eq!(nonce, request.payloads.nonce().unwrap());
}

#[test]
fn a_client_that_cannot_follow_is_served() {
    let mut pair = Pair::new(Setup::new(KeyAlgorithm::P256));
    pair.server.set_redirect(Some(other_gateway()));
    pair.settle();
    let request = first_request(&pair);
    assert!(
        request
            .payloads
            .notify(NotifyType::REDIRECT_SUPPORTED)
            .is_none()
    );
    assert!(pair.client_failure().is_none());
    assert_eq!(pair.client.state(), IkeSaState::Established);
    assert_eq!(pair.server.stats().redirected, 0);
}

#[test]
fn a_redirected_client_names_where_it_came_from_and_may_be_sent_on() {
    let from = GatewayIdentity::Ipv4(Ipv4Addr::new(203, 0, 113, 1));
    let mut setup = following();
    setup.client.redirected_from = Some(from.clone());
    let mut pair = Pair::new(setup);
    pair.settle();
    let request = first_request(&pair);
    let named = request
        .payloads
        .notify(NotifyType::REDIRECTED_FROM)
        .unwrap();
    assert_eq!(named.redirected_from_gateway(), Some(from.clone()));
    assert!(
        request
            .payloads
            .notify(NotifyType::REDIRECT_SUPPORTED)
            .is_none()
    );
    assert_eq!(pair.client.state(), IkeSaState::Established, "served here");

    // A gateway that redirects sends such a client on too (the client limits the hops).
    let mut setup = following();
    setup.client.redirected_from = Some(from);
    let mut pair = Pair::new(setup);
    pair.server.set_redirect(Some(other_gateway()));
    pair.settle();
    assert_eq!(
        pair.client_failure().map(|f| f.reason.clone()),
        Some(FailureReason::Redirected(other_gateway()))
    );
}

/// Hands the client a REDIRECT to 198.51.100.66 in answer to its IKE_SA_INIT request, with
/// `nonce` (None: the request's own).
fn answer_with_redirect(pair: &mut Pair, nonce: Option<&[u8]>) {
    let request = pair.in_flight.front().unwrap().clone();
    let sent = Message::decode(&request.t.bytes).unwrap();
    let nonce = nonce.unwrap_or(sent.payloads.nonce().unwrap()).to_vec();
    let forged = Message::new(
        Header::new(
            sent.header.spi_i,
            7,
            ExchangeType::IKE_SA_INIT,
            Flags::RESPONSE,
            0,
        ),
        vec![Payload::Notify(Notify::redirect(
            &GatewayIdentity::Ipv4(Ipv4Addr::new(198, 51, 100, 66)),
            Some(&nonce),
        ))],
    )
    .encode()
    .unwrap();
    let mut reply = request.clone();
    reply.to_server = false;
    reply.t.bytes = forged;
    (reply.t.local, reply.t.remote) = (request.t.remote, request.t.local);
    pair.deliver(&reply);
    pair.collect();
}

/// An attacker who did not see the request cannot know its nonce: a REDIRECT without it is
/// dropped, and the real answer still establishes the SA. The same REDIRECT with the nonce
/// is followed (the control).
#[test]
fn a_redirect_without_the_clients_nonce_is_dropped() {
    let mut pair = Pair::new(following());
    answer_with_redirect(&mut pair, Some(&[0x55; 32]));
    assert!(
        pair.client_failure().is_none(),
        "{:?}",
        pair.client_failure()
    );
    pair.settle();
    assert_eq!(pair.client.state(), IkeSaState::Established);

    let mut pair = Pair::new(following());
    answer_with_redirect(&mut pair, None);
    assert_eq!(
        pair.client_failure().map(|f| f.reason.clone()),
        Some(FailureReason::Redirected(GatewayIdentity::Ipv4(
            Ipv4Addr::new(198, 51, 100, 66)
        )))
    );
}

/// A client that does not follow redirects is not moved by one.
#[test]
fn a_client_that_does_not_follow_is_not_redirected() {
    let mut pair = Pair::new(Setup::new(KeyAlgorithm::P256));
    answer_with_redirect(&mut pair, None);
    assert!(
        !matches!(
            pair.client_failure().map(|f| &f.reason),
            Some(FailureReason::Redirected(_))
        ),
        "{:?}",
        pair.client_failure()
    );
}

/// A stateless answer must not be larger than what provoked it: a request that is no whole
/// IKE_SA_INIT (a nonce and REDIRECT_SUPPORTED only, as from a spoofed source) is not
/// redirected; a whole one is, even to the longest name, in no more bytes than it has.
#[test]
fn a_redirect_is_never_larger_than_the_request() {
    let long_name = GatewayIdentity::fqdn(&format!("{}.example", "g".repeat(240))).unwrap();
    let mut pair = Pair::new(following());
    pair.server.set_redirect(Some(long_name));
    let request = pair.in_flight.front().unwrap().clone();
    let sent = Message::decode(&request.t.bytes).unwrap();
    let bare = Message::new(
        sent.header,
        vec![
            Payload::Nonce(sent.payloads.nonce().unwrap().to_vec()),
            Payload::Notify(Notify::redirect_supported()),
        ],
    )
    .encode()
    .unwrap();
    let mut flight = request.clone();
    flight.t.bytes = bare;
    pair.deliver(&flight);
    assert_eq!(pair.server.stats().redirected, 0);
    // The whole request: answered, in no more bytes than it has.
    pair.settle();
    assert_eq!(pair.server.stats().redirected, 1);
    let asked = pair.wire.iter().find(|f| f.to_server).unwrap();
    let answer = pair.wire.iter().find(|f| !f.to_server).unwrap();
    assert!(
        answer.t.bytes.len() <= asked.t.bytes.len(),
        "{} > {}",
        answer.t.bytes.len(),
        asked.t.bytes.len()
    );
}
