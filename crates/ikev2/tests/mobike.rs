//! MOBIKE (RFC 4555) in both roles, waiting without a path, and a restarted responder's
//! INVALID_IKE_SPI (RFC 7296 2.21.4).
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use ikev2::ike_wire::{ExchangeType, Header, NotifyType};
use ikev2::ipsec_crypto::Provider;
use ikev2::{Endpoint, Event, FailureReason, IkeSaState};
use pki::KeyAlgorithm;

fn exchange(f: &Flight) -> ExchangeType {
    Header::parse(&f.t.bytes).unwrap().header.exchange_type
}

fn established_pair(setup: Setup) -> Pair {
    let mut pair = Pair::new(setup);
    pair.run(true, Duration::from_secs(10));
    assert!(pair.client_child().is_some() && pair.server_child().is_some());
    pair
}

fn dpd_setup() -> Setup {
    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.client.ike.dpd_interval = Some(Duration::from_secs(30));
    setup.server.mobike = true;
    setup
}

fn server_id(pair: &Pair) -> ikev2::IkeSaId {
    pair.server_events[0].0
}

fn moved(events: impl Iterator<Item = Event>) -> Vec<(SocketAddr, SocketAddr)> {
    events
        .filter_map(|e| match e {
            Event::AddressesChanged { local, remote } => Some((local, remote)),
            _ => None,
        })
        .collect()
}

#[test]
fn mobike_is_negotiated_only_when_both_sides_announce_it() {
    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.server.mobike = true;
    let pair = established_pair(setup);
    assert!(pair.client.mobike());
    assert!(pair.server.sa(server_id(&pair)).unwrap().mobike());

    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.server.mobike = false;
    let mut pair = established_pair(setup);
    assert!(!pair.client.mobike());
    let new_ip: IpAddr = "198.51.100.77".parse().unwrap();
    assert!(
        !pair.client.roam(pair.now, new_ip),
        "without MOBIKE the caller must re-dial"
    );

    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.server.mobike = true;
    setup.client.mobike = false;
    let pair = established_pair(setup);
    assert!(!pair.client.mobike());
    assert!(!pair.server.sa(server_id(&pair)).unwrap().mobike());
}

#[test]
fn a_roaming_client_moves_both_ends_with_one_exchange() {
    let mut pair = established_pair(dpd_setup());
    let id = server_id(&pair);
    let before = pair.wire.len();
    let new_ip: IpAddr = "198.51.100.77".parse().unwrap();
    assert!(pair.client.roam(pair.now, new_ip));
    pair.run(true, Duration::from_secs(20));

    // One INFORMATIONAL request from the new address, one answer to it.
    let sent: Vec<&Flight> = pair.wire[before..].iter().collect();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent[0].to_server && exchange(sent[0]) == ExchangeType::INFORMATIONAL);
    assert_eq!(sent[0].t.local.ip(), new_ip);
    assert_eq!(sent[1].t.remote.ip(), new_ip);

    let client_moves = moved(pair.client_events.clone().into_iter());
    let server_moves = moved(
        pair.server_events
            .clone()
            .into_iter()
            .filter(|(sa, _)| *sa == id)
            .map(|(_, e)| e),
    );
    assert_eq!(client_moves.len(), 1, "{client_moves:?}");
    assert_eq!(client_moves[0].0.ip(), new_ip);
    assert_eq!(server_moves.len(), 1, "{server_moves:?}");
    assert_eq!(server_moves[0].1.ip(), new_ip);
    assert_eq!(pair.server.sa(id).unwrap().addresses().1.ip(), new_ip);
    assert_eq!(pair.client.addresses().0.ip(), new_ip);
    assert!(pair.client_failure().is_none() && pair.server_failure().is_none());

    // The SA keeps working from the new address.
    let before = pair.wire.len();
    assert!(pair.client.send_liveness_check(pair.now));
    pair.collect();
    pair.run(false, Duration::ZERO);
    assert_eq!(pair.wire.len(), before + 2);
    assert_eq!(pair.client.state(), IkeSaState::Established);
}

#[test]
fn an_update_waits_for_the_outstanding_request() {
    let mut pair = established_pair(dpd_setup());
    assert!(pair.client.send_liveness_check(pair.now));
    pair.collect();
    // The liveness check is in flight when the address changes.
    let new_ip: IpAddr = "198.51.100.78".parse().unwrap();
    assert!(pair.client.roam(pair.now, new_ip));
    pair.collect();
    assert_eq!(
        pair.in_flight.len(),
        1,
        "one request at a time (window size 1)"
    );
    pair.run(true, Duration::from_secs(20));
    let requests = pair
        .wire
        .iter()
        .filter(|f| f.to_server && exchange(f) == ExchangeType::INFORMATIONAL)
        .count();
    assert_eq!(requests, 2);
    assert_eq!(moved(pair.client_events.clone().into_iter()).len(), 1);
    assert_eq!(pair.client.addresses().0.ip(), new_ip);
}

#[test]
fn without_a_path_the_client_keeps_its_sa_and_retries_when_the_path_is_back() {
    let mut pair = established_pair(dpd_setup());
    // The link is gone: nothing gets through in either direction.
    pair.fate = Box::new(|_, _| Fate::Drop);
    pair.client.set_path_available(pair.now, false);
    assert!(pair.client.send_liveness_check(pair.now));
    pair.collect();
    // Half an hour without a path: the SA waits (NetworkOutageTime is the caller's to enforce).
    let limit = pair.now - pair.start + Duration::from_secs(1800);
    pair.run(true, limit);
    assert!(
        pair.client_failure().is_none(),
        "{:?}",
        pair.client_failure()
    );
    assert_eq!(pair.client.state(), IkeSaState::Established);
    let retransmissions = pair.wire.iter().filter(|f| f.to_server).count();
    assert!(
        retransmissions > 5,
        "kept retransmitting: {retransmissions}"
    );

    // The path is back: the outstanding request gets through and the SA stays.
    pair.fate = Box::new(|_, _| Fate::Deliver);
    pair.client.set_path_available(pair.now, true);
    pair.collect();
    let limit = pair.now - pair.start + Duration::from_secs(5);
    pair.run(true, limit);
    assert!(pair.client_failure().is_none());
    assert_eq!(pair.client.state(), IkeSaState::Established);
}

#[test]
fn with_a_path_an_unanswered_liveness_check_still_fails_the_sa() {
    let mut pair = established_pair(dpd_setup());
    pair.fate = Box::new(|_, _| Fate::Drop);
    assert!(pair.client.send_liveness_check(pair.now));
    pair.collect();
    let limit = pair.now - pair.start + Duration::from_secs(120);
    pair.run(true, limit);
    assert_eq!(
        pair.client_failure().map(|f| f.reason.clone()),
        Some(FailureReason::Timeout)
    );
}

#[test]
fn a_restarted_responder_answers_invalid_ike_spi_and_the_client_fails_within_a_second() {
    let mut pair = established_pair(dpd_setup());
    // The gateway process restarts: a new endpoint without the SA.
    let fresh = Setup::new(KeyAlgorithm::P256);
    pair.server = Endpoint::new(
        Arc::new(fresh.server),
        Arc::new(Provider::deterministic(b"restarted server")),
        Box::new(fresh.pool),
    )
    .unwrap();
    let started = pair.now;
    assert!(pair.client.send_liveness_check(pair.now));
    pair.collect();
    let limit = pair.now - pair.start + Duration::from_secs(30);
    pair.run(true, limit);
    let failure = pair.client_failure().cloned().unwrap();
    assert_eq!(
        failure.reason,
        FailureReason::PeerNotify(NotifyType::INVALID_IKE_SPI)
    );
    assert_eq!(pair.client.state(), IkeSaState::Closed);
    // One short last try instead of the whole backoff (0.5 + 1 + 2 + 4 + 8 s).
    assert!(
        pair.now - started <= Duration::from_millis(1500),
        "{:?}",
        pair.now - started
    );
}

/// INVALID_IKE_SPI is unauthenticated: a forged one only hurries the retransmission, and a
/// peer that still has the SA answers it; nothing fails.
#[test]
fn a_forged_invalid_ike_spi_does_not_close_a_live_sa() {
    let mut pair = established_pair(dpd_setup());
    let fresh = Setup::new(KeyAlgorithm::P256);
    let mut forger = Endpoint::new(
        Arc::new(fresh.server),
        Arc::new(Provider::deterministic(b"forger")),
        Box::new(fresh.pool),
    )
    .unwrap();
    assert!(pair.client.send_liveness_check(pair.now));
    pair.collect();
    // The forger sees the request (on path) and answers first; the real answer is lost.
    let request = pair.in_flight.pop_front().unwrap();
    forger.handle_datagram(at(pair.now), request.t.arrival(), &request.t.bytes);
    let forged = forger.poll_transmit().unwrap();
    pair.client
        .handle_datagram(at(pair.now), forged.arrival(), &forged.bytes);
    pair.collect();
    let limit = pair.now - pair.start + Duration::from_secs(30);
    pair.run(true, limit);
    assert!(
        pair.client_failure().is_none(),
        "{:?}",
        pair.client_failure()
    );
    assert_eq!(pair.client.state(), IkeSaState::Established);
}

#[test]
fn an_invalid_ike_spi_for_another_message_is_ignored() {
    let mut pair = established_pair(dpd_setup());
    let fresh = Setup::new(KeyAlgorithm::P256);
    let mut restarted = Endpoint::new(
        Arc::new(fresh.server),
        Arc::new(Provider::deterministic(b"restarted server")),
        Box::new(fresh.pool),
    )
    .unwrap();
    assert!(pair.client.send_liveness_check(pair.now));
    pair.collect();
    let request = pair.in_flight.pop_front().unwrap();
    // Make the restarted endpoint answer the request, then change the answer's message ID:
    // it no longer matches the outstanding request.
    restarted.handle_datagram(at(pair.now), request.t.arrival(), &request.t.bytes);
    let mut answer = restarted.poll_transmit().unwrap();
    let last = answer.bytes.len().min(24);
    answer.bytes[last - 1] ^= 0x01;
    pair.client
        .handle_datagram(at(pair.now), answer.arrival(), &answer.bytes);
    pair.collect();
    assert!(pair.client_failure().is_none());
    assert_eq!(pair.client.state(), IkeSaState::Established);
}

/// A client's NAT-T socket may have any port: a request from the gateway that
/// reaches it there does not change the engine's port, nor move the SA (nor end its UDP
/// encapsulation, which keeps NAT keepalives going after rekeys).
#[test]
fn a_gateway_request_on_the_clients_real_port_changes_nothing() {
    let mut pair = established_pair(dpd_setup());
    let id = server_id(&pair);
    let (local, _) = pair.client.addresses();
    assert!(pair.server.send_liveness_check(id, pair.now));
    pair.collect();
    let request = pair.in_flight.pop_front().unwrap();
    assert!(!request.to_server);
    let driver_port = SocketAddr::new(request.t.remote.ip(), 40_123);
    pair.client.handle_datagram(
        at(pair.now),
        Path::natt(driver_port, request.t.local),
        &request.t.bytes,
    );
    pair.collect();
    assert_eq!(pair.client.addresses().0, local);
    assert!(moved(pair.client_events.clone().into_iter()).is_empty());
    // And the SA still works.
    pair.run(false, Duration::ZERO);
    assert_eq!(pair.client.state(), IkeSaState::Established);
}

/// A client that floated to NAT-T stays there: a request from the gateway that reaches its
/// IKE socket instead moves nothing, and the answer and everything after still go out on
/// NAT-T with the marker (RFC 7296 2.23), so the Child SAs keep their NAT keepalives.
#[test]
fn a_floated_client_stays_on_nat_t_when_a_request_reaches_its_ike_socket() {
    let mut pair = established_pair(dpd_setup());
    let id = server_id(&pair);
    let before = pair.client.path();
    assert!(before.natt, "the tests' gateway forces encapsulation");
    assert!(pair.server.send_liveness_check(id, pair.now));
    pair.collect();
    let request = pair.in_flight.pop_front().unwrap();
    assert!(!request.to_server);
    pair.client.handle_datagram(
        at(pair.now),
        Path::ike(client_addr(), request.t.local),
        &request.t.bytes,
    );
    pair.collect();
    assert_eq!(pair.client.path(), before);
    assert!(moved(pair.client_events.clone().into_iter()).is_empty());
    let answer = pair.in_flight.back().unwrap();
    assert!(answer.to_server && answer.t.natt, "{answer:?}");
    pair.run(false, Duration::ZERO);
    assert_eq!(pair.client.state(), IkeSaState::Established);
}

/// A retransmitted request is answered where it came from (RFC 7296 2.11: a NAT may have
/// remapped the client meanwhile), and that moves nothing: only a new authenticated request
/// moves the SA.
#[test]
fn a_retransmission_from_a_new_mapping_is_answered_there_without_moving_the_sa() {
    let mut pair = established_pair(dpd_setup());
    let id = server_id(&pair);
    let before = pair.server.sa(id).unwrap().path();
    assert!(pair.client.send_liveness_check(pair.now));
    pair.collect();
    let request = pair.in_flight.pop_front().unwrap();
    assert!(request.to_server);
    pair.deliver(&request);
    pair.collect();
    let first = pair.in_flight.pop_back().unwrap();
    assert_eq!(first.t.remote, request.t.local);
    let remapped = SocketAddr::new(request.t.local.ip(), 41_000);
    let arrival = Path {
        remote: remapped,
        ..request.t.arrival()
    };
    pair.server
        .handle_datagram(at(pair.now), arrival, &request.t.bytes);
    let again = pair.server.poll_transmit().expect("the cached answer");
    assert_eq!(again.remote, remapped);
    assert_eq!(again.bytes, first.t.bytes);
    assert_eq!(pair.server.sa(id).unwrap().path(), before);
}
