//! Lost, duplicated and reordered messages, retransmission, fragmentation, COOKIE,
//! INVALID_KE_PAYLOAD and NAT traversal.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use ikev2::ike_wire::{
    ExchangeType, Header, Message, NotifyType, PayloadType, Payloads, open_parts,
};
use ikev2::ipsec_crypto::DhGroup;
use ikev2::{EspProposal, Event, FailureReason, IkeProposal, IkeSaState};
use pki::KeyAlgorithm;

fn exchange(f: &Flight) -> ExchangeType {
    Header::parse(&f.t.bytes).unwrap().header.exchange_type
}

fn is_fragment(f: &Flight) -> bool {
    exchange(f) != ExchangeType::IKE_SA_INIT && open_parts(&f.t.bytes).unwrap().fragment.is_some()
}

fn count_established(pair: &Pair) -> (usize, usize) {
    let c = pair
        .client_events
        .iter()
        .filter(|e| matches!(e, Event::ChildSaEstablished(_)))
        .count();
    let s = pair
        .server_events
        .iter()
        .filter(|(_, e)| matches!(e, Event::ChildSaEstablished(_)))
        .count();
    (c, s)
}

fn assert_keys_match(pair: &Pair) {
    let cc = pair.client_child().unwrap();
    let sc = pair.server_child().unwrap();
    assert_eq!(cc.encr_key_out.as_bytes(), sc.encr_key_in.as_bytes());
    assert_eq!(cc.encr_key_in.as_bytes(), sc.encr_key_out.as_bytes());
    assert_eq!(cc.spi_in, sc.spi_out);
}

#[test]
fn lost_ike_auth_request_is_retransmitted_after_half_a_second() {
    let mut pair = Pair::new(Setup::new(KeyAlgorithm::P256));
    let mut dropped = false;
    pair.fate = Box::new(move |_, f| {
        if f.to_server && exchange(f) == ExchangeType::IKE_AUTH && !dropped {
            dropped = true;
            return Fate::Drop;
        }
        Fate::Deliver
    });
    pair.run(true, Duration::from_secs(60));
    assert_eq!(count_established(&pair), (1, 1));
    assert_keys_match(&pair);
    let auth_requests = pair
        .wire
        .iter()
        .filter(|f| f.to_server && exchange(f) == ExchangeType::IKE_AUTH)
        .count();
    assert_eq!(auth_requests, 2);
    assert_eq!(pair.now - pair.start, Duration::from_millis(500));
}

#[test]
fn lost_ike_auth_response_is_resent_from_cache_without_reprocessing() {
    let mut pair = Pair::new(Setup::new(KeyAlgorithm::P256));
    let mut dropped = false;
    pair.fate = Box::new(move |_, f| {
        if !f.to_server && exchange(f) == ExchangeType::IKE_AUTH && !dropped {
            dropped = true;
            return Fate::Drop;
        }
        Fate::Deliver
    });
    pair.run(true, Duration::from_secs(60));
    assert_eq!(count_established(&pair), (1, 1));
    assert_keys_match(&pair);
    // One address only: the retransmitted request did not allocate again.
    assert_eq!(pair.pool.leased(), 1);
    let responses: Vec<&Flight> = pair
        .wire
        .iter()
        .filter(|f| !f.to_server && exchange(f) == ExchangeType::IKE_AUTH)
        .collect();
    assert_eq!(responses.len(), 2);
    assert_eq!(
        responses[0].t.bytes, responses[1].t.bytes,
        "cached response"
    );
}

#[test]
fn duplicated_datagrams_change_nothing() {
    let mut pair = Pair::new(Setup::new(KeyAlgorithm::P256));
    pair.fate = Box::new(|_, _| Fate::Duplicate);
    pair.settle();
    assert_eq!(count_established(&pair), (1, 1));
    assert_keys_match(&pair);
    assert_eq!(
        pair.server.len(),
        1,
        "duplicate IKE_SA_INIT made no second SA"
    );
    assert!(pair.client_failure().is_none() && pair.server_failure().is_none());
}

#[test]
fn unanswered_initiator_gives_up_after_five_tries_with_backoff() {
    let mut pair = Pair::new(Setup::new(KeyAlgorithm::P256));
    pair.fate = Box::new(|_, f| {
        if f.to_server {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    pair.run(true, Duration::from_secs(120));
    let sent = pair.wire.iter().filter(|f| f.to_server).count();
    assert_eq!(sent, 5);
    let f = pair.client_failure().unwrap();
    assert_eq!(f.reason, FailureReason::Timeout);
    // 0.5 + 1 + 2 + 4 + 8 seconds.
    assert_eq!(pair.now - pair.start, Duration::from_millis(15_500));
    assert!(pair.client.is_closed());
}

#[test]
fn half_open_sa_expires_on_the_responder() {
    let mut pair = Pair::new(Setup::new(KeyAlgorithm::P256));
    pair.fate = Box::new(|_, f| {
        if f.to_server && exchange(f) == ExchangeType::IKE_AUTH {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    pair.settle();
    assert_eq!(pair.server.half_open(), 1);
    pair.run(true, Duration::from_secs(120));
    assert!(pair.server.is_empty());
    assert_eq!(
        pair.server_failure().unwrap().reason,
        FailureReason::EstablishTimeout
    );
}

fn small_mtu_setup() -> Setup {
    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.client.ike.fragment_mtu = 576;
    setup.server.ike.fragment_mtu = 576;
    setup
}

#[test]
fn ike_auth_is_fragmented_both_ways_and_reassembled() {
    let mut pair = Pair::new(small_mtu_setup());
    pair.settle();
    assert_eq!(count_established(&pair), (1, 1));
    assert_keys_match(&pair);
    let frags_up = pair
        .wire
        .iter()
        .filter(|f| f.to_server && is_fragment(f))
        .count();
    let frags_down = pair
        .wire
        .iter()
        .filter(|f| !f.to_server && is_fragment(f))
        .count();
    assert!(frags_up >= 2, "{frags_up}");
    assert!(frags_down >= 2, "{frags_down}");
    for f in &pair.wire {
        // Every datagram fits: IPv4 + UDP + marker + IKE <= 576.
        assert!(20 + 8 + 4 + f.t.bytes.len() <= 576, "{}", f.t.bytes.len());
    }
    // The first fragment carries the first inner payload type, the others NONE.
    let firsts: Vec<PayloadType> = pair
        .wire
        .iter()
        .filter(|f| f.to_server && is_fragment(f))
        .map(|f| open_parts(&f.t.bytes).unwrap().first_payload)
        .collect();
    assert_eq!(firsts[0], PayloadType::IDI);
    assert!(firsts[1..].iter().all(|t| *t == PayloadType::NONE));
}

#[test]
fn fragments_reordered_and_duplicated_still_reassemble() {
    let mut pair = Pair::new(small_mtu_setup());
    // IKE_SA_INIT both ways.
    assert!(pair.deliver_one());
    assert!(pair.deliver_one());
    let mut frags: Vec<Flight> = pair.in_flight.drain(..).collect();
    assert!(frags.len() >= 2);
    frags.reverse();
    let dup = frags[0].clone();
    frags.insert(1, dup);
    pair.in_flight.extend(frags);
    pair.settle();
    assert_eq!(count_established(&pair), (1, 1));
    assert_keys_match(&pair);
}

#[test]
fn lost_fragment_is_recovered_by_retransmission() {
    let mut pair = Pair::new(small_mtu_setup());
    let mut dropped = false;
    pair.fate = Box::new(move |_, f| {
        if f.to_server && is_fragment(f) && !dropped {
            let pos = open_parts(&f.t.bytes).unwrap().fragment.unwrap();
            if pos.number == 2 {
                dropped = true;
                return Fate::Drop;
            }
        }
        Fate::Deliver
    });
    pair.run(true, Duration::from_secs(60));
    assert_eq!(count_established(&pair), (1, 1));
    assert_keys_match(&pair);
}

#[test]
fn no_fragmentation_when_disabled_on_one_side() {
    let mut setup = small_mtu_setup();
    setup.server.ike.fragmentation = false;
    let mut pair = Pair::new(setup);
    pair.settle();
    assert_eq!(count_established(&pair), (1, 1));
    assert!(!pair.wire.iter().any(is_fragment));
    let init_resp = Message::decode(&pair.wire[1].t.bytes).unwrap();
    assert!(
        init_resp
            .payloads
            .notify(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED)
            .is_none()
    );
}

#[test]
fn cookie_round_trip_when_threshold_is_zero() {
    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.server.cookie_threshold = 0;
    let mut pair = Pair::new(setup);
    pair.settle();
    assert_eq!(count_established(&pair), (1, 1));
    let reply = Message::decode(&pair.wire[1].t.bytes).unwrap();
    assert_eq!(reply.header.spi_r, 0);
    let cookie = reply.payloads.notify(NotifyType::COOKIE).unwrap();
    assert_eq!(cookie.data.len(), ikev2::COOKIE_LEN);
    assert_eq!(reply.payloads.len(), 1);
    let retry = Message::decode(&pair.wire[2].t.bytes).unwrap();
    match &retry.payloads[0] {
        ikev2::ike_wire::Payload::Notify(n) => {
            assert_eq!(n.notify_type, NotifyType::COOKIE);
            assert_eq!(n.data, cookie.data);
        }
        other => panic!("cookie must come first, got {other:?}"),
    }
    // Same SPI and nonce as the first request.
    let first = Message::decode(&pair.wire[0].t.bytes).unwrap();
    assert_eq!(first.header.spi_i, retry.header.spi_i);
    assert_eq!(first.payloads.nonce(), retry.payloads.nonce());
}

#[test]
fn cookie_is_demanded_only_above_the_half_open_threshold() {
    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.server.cookie_threshold = 1;
    let mut pair = Pair::new(setup);
    // First SA becomes half-open (drop its IKE_AUTH).
    pair.fate = Box::new(|_, f| {
        if f.to_server && exchange(f) == ExchangeType::IKE_AUTH {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    pair.settle();
    assert_eq!(pair.server.half_open(), 1);
    let reply = Message::decode(&pair.wire[1].t.bytes).unwrap();
    assert!(reply.payloads.notify(NotifyType::COOKIE).is_none());
    // A second initiator now gets a COOKIE: replay the first request from another port.
    let mut replay = pair.wire[0].clone();
    replay.t.local = "198.51.100.20:500".parse().unwrap();
    pair.deliver(&replay);
    pair.collect();
    let last = pair.in_flight.back().unwrap();
    let m = Message::decode(&last.t.bytes).unwrap();
    assert!(m.payloads.notify(NotifyType::COOKIE).is_some());
    assert_eq!(pair.server.half_open(), 1);
}

#[test]
fn invalid_ke_payload_makes_the_initiator_retry_with_the_wanted_group() {
    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.client.ike.ike_proposals =
        vec![IkeProposal::parse("aes256gcm16-prfsha256-x25519-ecp256", false).unwrap()];
    setup.server.ike.ike_proposals =
        vec![IkeProposal::parse("aes256gcm16-prfsha256-ecp256", false).unwrap()];
    let mut pair = Pair::new(setup);
    pair.settle();
    assert_eq!(count_established(&pair), (1, 1));
    let reply = Message::decode(&pair.wire[1].t.bytes).unwrap();
    let n = reply
        .payloads
        .notify(NotifyType::INVALID_KE_PAYLOAD)
        .unwrap();
    assert_eq!(n.data, 19u16.to_be_bytes());
    let retry = Message::decode(&pair.wire[2].t.bytes).unwrap();
    assert_eq!(retry.payloads.ke().unwrap().group.0, 19);
    assert_eq!(
        pair.established().0.unwrap().algorithms.dh,
        DhGroup::EcpP256
    );
}

#[test]
fn responder_accepts_a_non_preferred_ke_group_without_a_round_trip() {
    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.client.ike.ike_proposals =
        vec![IkeProposal::parse("aes128gcm16-prfsha256-x25519", false).unwrap()];
    let mut pair = Pair::new(setup);
    pair.settle();
    assert_eq!(pair.wire.len(), 4);
    let info = pair.established().1.unwrap();
    assert_eq!(info.algorithms.dh, DhGroup::Curve25519);
}

#[test]
fn cbc_suites_work_for_ike_and_esp() {
    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.client.ike.ike_proposals =
        vec![IkeProposal::parse("aes256-sha256-modp2048", false).unwrap()];
    setup.client.ike.esp_proposals = vec![EspProposal::parse("aes128-sha1", false).unwrap()];
    setup
        .server
        .ike
        .esp_proposals
        .push(EspProposal::parse("aes128-sha1", false).unwrap());
    let mut pair = Pair::new(setup);
    pair.settle();
    assert_eq!(count_established(&pair), (1, 1));
    assert_keys_match(&pair);
    let cc = pair.client_child().unwrap();
    let sc = pair.server_child().unwrap();
    assert_eq!(cc.integ_key_out.as_bytes(), sc.integ_key_in.as_bytes());
    assert_eq!(cc.integ_key_out.len(), 20);
    assert_eq!(cc.encr_key_out.len(), 16);
}

#[test]
fn legacy_windows_suite_needs_allow_legacy() {
    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.client.ike.ike_proposals =
        vec![IkeProposal::parse("aes256-sha1-modp1024", true).unwrap()];
    let mut strict = Pair::new(setup);
    strict.settle();
    assert_eq!(
        strict.client_failure().unwrap().notify_received,
        Some(NotifyType::NO_PROPOSAL_CHOSEN)
    );

    let mut setup = Setup::new(KeyAlgorithm::P256);
    let legacy = IkeProposal::parse("aes256-sha1-modp1024", true).unwrap();
    setup.client.ike.ike_proposals = vec![legacy.clone()];
    setup.server.ike.ike_proposals.push(legacy);
    let mut pair = Pair::new(setup);
    pair.settle();
    assert_eq!(count_established(&pair), (1, 1));
}

#[test]
fn without_nat_and_without_forced_encapsulation_nothing_floats() {
    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.client.ike.force_encap = false;
    setup.server.ike.force_encap = false;
    let mut pair = Pair::new(setup);
    pair.settle();
    let (c, s) = pair.established();
    assert!(!c.unwrap().nat_detected && !s.unwrap().nat_detected);
    assert!(
        pair.wire
            .iter()
            .all(|f| f.t.local.port() == 500 && !f.t.natt)
    );
    assert!(!pair.client_child().unwrap().udp_encap);
}

#[test]
fn real_nat_is_detected_and_the_responder_follows_the_mapping() {
    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.client.ike.force_encap = false;
    setup.server.ike.force_encap = false;
    let mut pair = Pair::new(setup);
    let public: SocketAddr = "198.51.100.1:40000".parse().unwrap();
    pair.nat = Some(public);
    // The first request was queued before the NAT was set: rewrite it like the NAT would.
    for f in pair.in_flight.iter_mut() {
        f.t.local = public;
    }
    pair.settle();
    let (c, s) = pair.established();
    assert!(c.unwrap().nat_detected && s.unwrap().nat_detected);
    let sc = pair.server_child().unwrap();
    assert!(sc.udp_encap);
    assert_eq!(sc.remote, "198.51.100.1:40001".parse().unwrap());
    assert_eq!(sc.local.port(), 4500);

    // NAT rebinding: the mapping changes, an authenticated request from the new port moves
    // the responder, which reports it.
    pair.nat = Some("198.51.100.1:50000".parse().unwrap());
    assert!(pair.client.send_liveness_check(pair.now));
    pair.collect();
    pair.settle();
    let moved = pair.server_events.iter().find_map(|(_, e)| match e {
        Event::AddressesChanged { remote, .. } => Some(*remote),
        _ => None,
    });
    assert_eq!(moved, Some("198.51.100.1:50001".parse().unwrap()));
    assert_eq!(pair.client.state(), IkeSaState::Established);
}

#[test]
fn cookie_secret_rotation_keeps_the_previous_secret_for_one_period() {
    use ikev2::ike_wire::{Notify, Payload};
    use ikev2::ipsec_crypto::Provider;
    use std::sync::Arc;
    use std::time::Instant;

    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.server.cookie_threshold = 0;
    setup.server.cookie_secret_lifetime = Duration::from_secs(300);
    let request =
        Message::decode(&Pair::new(Setup::new(KeyAlgorithm::P256)).wire[0].t.bytes).unwrap();
    let mut server = ikev2::Endpoint::new(
        Arc::new(setup.server),
        Arc::new(Provider::deterministic(b"rotation")),
        Box::new(setup.pool),
    )
    .unwrap();
    let t0 = Instant::now();
    let from = client_addr();
    server.handle_datagram(
        at(t0),
        Path::ike(server_addr(), from),
        &request.encode().unwrap(),
    );
    let reply = Message::decode(&server.poll_transmit().unwrap().bytes).unwrap();
    let cookie = reply
        .payloads
        .notify(NotifyType::COOKIE)
        .unwrap()
        .data
        .clone();
    let mut with_cookie = request.clone();
    with_cookie
        .payloads
        .insert(0, Payload::Notify(Notify::new(NotifyType::COOKIE, cookie)));
    let bytes = with_cookie.encode().unwrap();

    // One rotation later the old cookie is still good.
    let t1 = t0 + Duration::from_secs(301);
    server.handle_timeout(t1);
    server.handle_datagram(at(t1), Path::ike(server_addr(), from), &bytes);
    let reply = Message::decode(&server.poll_transmit().unwrap().bytes).unwrap();
    assert!(reply.payloads.sa().is_some(), "accepted");
    assert_eq!(server.half_open(), 1);

    // Two rotations later it is refused with a fresh cookie.
    let t2 = t1 + Duration::from_secs(301);
    server.handle_timeout(t2);
    let other: SocketAddr = "198.51.100.10:501".parse().unwrap();
    server.handle_datagram(at(t2), Path::ike(server_addr(), other), &bytes);
    let reply = Message::decode(&server.poll_transmit().unwrap().bytes).unwrap();
    let fresh = reply.payloads.notify(NotifyType::COOKIE).unwrap();
    assert_ne!(Some(fresh), with_cookie.payloads.notify(NotifyType::COOKIE));
}

#[test]
fn half_open_limit_drops_new_initiators_silently() {
    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.server.half_open_limit = 1;
    setup.server.cookie_threshold = 10;
    let mut pair = Pair::new(setup);
    pair.fate = Box::new(|_, f| {
        if f.to_server && exchange(f) == ExchangeType::IKE_AUTH {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    pair.settle();
    assert_eq!(pair.server.half_open(), 1);
    let mut replay = pair.wire[0].clone();
    replay.t.local = "198.51.100.20:500".parse().unwrap();
    pair.deliver(&replay);
    assert!(pair.server.poll_transmit().is_none());
    assert_eq!(pair.server.len(), 1);
}

#[test]
fn two_clients_share_one_endpoint() {
    use ikev2::ipsec_crypto::Provider;
    use ikev2::{IkeSa, InitiatorConfig};
    use std::sync::Arc;

    let pki = Pki::new(KeyAlgorithm::P256);
    let gw = pki.issue(pki::CertKind::Gateway, GATEWAY_NAME, KeyAlgorithm::P256);
    let a = pki.issue(pki::CertKind::Machine, "a.example.test", KeyAlgorithm::P256);
    let b = pki.issue(pki::CertKind::Machine, "b.example.test", KeyAlgorithm::P256);
    let sa = Setup::with_identities(&pki, &gw, &a, ikev2::IkeId::Fqdn("a.example.test".into()));
    let sb = Setup::with_identities(&pki, &gw, &b, ikev2::IkeId::Fqdn("b.example.test".into()));
    let pool = sa.pool.clone();
    let mut server = ikev2::Endpoint::new(
        Arc::new(sa.server),
        Arc::new(Provider::deterministic(b"gw")),
        Box::new(pool.clone()),
    )
    .unwrap();
    let now = std::time::Instant::now();
    let addrs: [SocketAddr; 2] = [
        "198.51.100.10:500".parse().unwrap(),
        "198.51.100.11:500".parse().unwrap(),
    ];
    let cfgs: [Arc<InitiatorConfig>; 2] = [Arc::new(sa.client), Arc::new(sb.client)];
    let mut clients: Vec<IkeSa> = (0..2)
        .map(|i| {
            IkeSa::connect(
                cfgs[i].clone(),
                Arc::new(Provider::deterministic(&[i as u8])),
                now,
                addrs[i],
                server_addr(),
            )
            .unwrap()
        })
        .collect();
    let mut client_children = [Vec::new(), Vec::new()];
    for _ in 0..10 {
        for c in clients.iter_mut() {
            while let Some(t) = c.poll_transmit() {
                server.handle_datagram(at(now), t.arrival(), &t.bytes);
            }
        }
        while let Some(t) = server.poll_transmit() {
            let i = addrs.iter().position(|a| a.ip() == t.remote.ip()).unwrap();
            clients[i].handle_datagram(at(now), t.arrival(), &t.bytes);
        }
        for (i, c) in clients.iter_mut().enumerate() {
            while let Some(e) = c.poll_event() {
                if let Event::ChildSaEstablished(ch) = e {
                    client_children[i].push(ch);
                }
            }
        }
    }
    let vips: Vec<_> = client_children
        .iter()
        .map(|v| {
            assert_eq!(v.len(), 1);
            v[0].virtual_ips[0]
        })
        .collect();
    assert_ne!(vips[0], vips[1]);
    assert_eq!(server.len(), 2);
    assert_eq!(pool.leased(), 2);
    let mut ids = Vec::new();
    while let Some((id, e)) = server.poll_event() {
        if let Event::IkeSaEstablished(info) = e {
            ids.push((id, info.peer_id));
        }
    }
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0].0, ids[1].0);
}

#[test]
fn forced_encapsulation_always_blames_the_initiator_side() {
    use ikev2::natd_hash;
    let mut pair = Pair::new(Setup::new(KeyAlgorithm::P256));
    pair.settle();
    let req = Message::decode(&pair.wire[0].t.bytes).unwrap();
    let resp = Message::decode(&pair.wire[1].t.bytes).unwrap();
    let (spi_i, spi_r) = (resp.header.spi_i, resp.header.spi_r);
    let hash = |m: &Message, t| m.payloads.notify(t).unwrap().data.clone();
    // Request: the source hash is fake, the destination hash real.
    assert_ne!(
        hash(&req, NotifyType::NAT_DETECTION_SOURCE_IP),
        natd_hash(spi_i, 0, client_addr())
    );
    assert_eq!(
        hash(&req, NotifyType::NAT_DETECTION_DESTINATION_IP),
        natd_hash(spi_i, 0, server_addr())
    );
    // Response: the gateway's own (source) hash is real, the initiator's is fake.
    assert_eq!(
        hash(&resp, NotifyType::NAT_DETECTION_SOURCE_IP),
        natd_hash(spi_i, spi_r, server_addr())
    );
    assert_ne!(
        hash(&resp, NotifyType::NAT_DETECTION_DESTINATION_IP),
        natd_hash(spi_i, spi_r, client_addr())
    );
}
