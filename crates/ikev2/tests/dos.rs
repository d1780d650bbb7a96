//! An internet-facing responder under load: what a datagram costs whatever the number of SAs,
//! half-open limits per source, COOKIEs under load, the size of what an unauthenticated peer
//! may make us hold.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ikev2::ike_wire::{NotifyType, Payloads as _};
use ikev2::ipsec_crypto::Provider;
use ikev2::{Endpoint, IkeSa, InitiatorConfig};
use pki::KeyAlgorithm;

/// The IKE_SA_INIT request of a fresh initiator at `from`.
fn init_request(cfg: &Arc<InitiatorConfig>, seed: u32, from: SocketAddr, now: Instant) -> Vec<u8> {
    let mut c = IkeSa::connect(
        cfg.clone(),
        Arc::new(Provider::deterministic(&seed.to_be_bytes())),
        now,
        from,
        server_addr(),
    )
    .unwrap();
    c.poll_transmit().unwrap().bytes
}

fn source(i: u32) -> SocketAddr {
    let [_, _, a, b] = i.to_be_bytes();
    SocketAddr::from(([198, 18, a, b], 500))
}

/// A datagram for an SA we do not have, and looking for the next timer, cost nothing per SA:
/// the endpoint keeps its SAs' deadlines ordered (a datagram used to scan every SA).
#[test]
fn a_datagram_costs_the_same_with_many_sas() {
    let setup = Setup::new(KeyAlgorithm::P256);
    let mut cfg = setup.server;
    cfg.cookie_threshold = 10_000;
    cfg.half_open_limit = 10_000;
    let mut gw = responder(cfg);
    let client = Arc::new(setup.client);
    let now = Instant::now();
    for i in 0..300 {
        let req = init_request(&client, i, source(i), now);
        gw.handle_datagram(at(now), Path::ike(server_addr(), source(i)), &req);
    }
    while gw.poll_transmit().is_some() {}
    assert_eq!(gw.half_open(), 300);
    let before = gw.deadline_computations();
    // A flood of datagrams with SPIs nobody has, and the timer look-ups around them.
    for i in 0..1000u64 {
        let mut junk = vec![0u8; 60];
        junk[..8].copy_from_slice(&(i + 1).to_be_bytes());
        junk[8..16].copy_from_slice(&(i + 7).to_be_bytes());
        junk[16] = 46; // SK
        junk[17] = 0x20;
        junk[18] = 37; // INFORMATIONAL
        junk[19] = 0x08; // initiator
        junk[24..28].copy_from_slice(&60u32.to_be_bytes());
        gw.handle_datagram(at(now), Path::ike(server_addr(), source(9999)), &junk);
        assert!(gw.poll_timeout().is_some());
        gw.handle_timeout(now);
    }
    assert_eq!(
        gw.deadline_computations(),
        before,
        "work per SA for foreign datagrams"
    );
    // One SA's datagram costs one deadline.
    let req = init_request(&client, 5, source(5), now);
    gw.handle_datagram(at(now), Path::ike(server_addr(), source(5)), &req);
    assert_eq!(gw.deadline_computations(), before + 1);
    // The half-open SAs still expire on time, all of them.
    let later = now + Duration::from_secs(31);
    assert!(gw.poll_timeout().unwrap() <= later);
    gw.handle_timeout(later);
    assert_eq!(gw.half_open(), 0);
    assert_eq!(gw.len(), 0);
}

fn answers(gw: &mut Endpoint) -> Vec<ikev2::ike_wire::Message> {
    std::iter::from_fn(|| gw.poll_transmit())
        .map(|t| ikev2::ike_wire::Message::decode(&t.bytes).unwrap())
        .collect()
}

/// Drives one initiator at `from` through COOKIE and IKE_SA_INIT against `gw`.
fn init_with_cookie(gw: &mut Endpoint, cfg: &Arc<InitiatorConfig>, seed: u32, from: SocketAddr) {
    let now = Instant::now();
    let mut c = IkeSa::connect(
        cfg.clone(),
        Arc::new(Provider::deterministic(&seed.to_be_bytes())),
        now,
        from,
        server_addr(),
    )
    .unwrap();
    // Request, COOKIE answer, request with the COOKIE.
    for _ in 0..2 {
        while let Some(t) = c.poll_transmit() {
            gw.handle_datagram(at(now), Path::ike(server_addr(), from), &t.bytes);
        }
        while let Some(t) = gw.poll_transmit() {
            c.handle_datagram(at(now), Path::ike(from, server_addr()), &t.bytes);
        }
    }
}

/// One host holds at most `half_open_per_source` half-open SAs without proving it is there,
/// even below the COOKIE threshold; beyond that it is asked for a COOKIE, which costs us no
/// state. Other hosts are not affected.
#[test]
fn one_source_holds_at_most_five_half_open_sas() {
    let setup = Setup::new(KeyAlgorithm::P256);
    let mut cfg = setup.server;
    cfg.cookie_threshold = 1000;
    let mut gw = responder(cfg);
    let client = Arc::new(setup.client);
    let now = Instant::now();
    let host = source(1);
    for i in 0..8 {
        let from = SocketAddr::new(host.ip(), 1000 + i as u16);
        gw.handle_datagram(
            at(now),
            Path::ike(server_addr(), from),
            &init_request(&client, i, from, now),
        );
    }
    assert_eq!(gw.half_open(), 5);
    assert_eq!(gw.stats().cookies_sent, 3);
    let cookies = answers(&mut gw)
        .iter()
        .filter(|m| {
            m.payloads
                .iter()
                .any(|p| matches!(p, ikev2::ike_wire::Payload::Notify(n) if n.notify_type == ikev2::ike_wire::NotifyType::COOKIE))
        })
        .count();
    assert_eq!(cookies, 3);
    let other = source(2);
    gw.handle_datagram(
        at(now),
        Path::ike(server_addr(), other),
        &init_request(&client, 100, other, now),
    );
    assert_eq!(gw.half_open(), 6);
    // The slots come back when the half-open SAs expire.
    gw.handle_timeout(now + Duration::from_secs(31));
    assert_eq!(gw.half_open(), 0);
    let from = SocketAddr::new(host.ip(), 2000);
    gw.handle_datagram(
        at(now),
        Path::ike(server_addr(), from),
        &init_request(&client, 50, from, now),
    );
    assert_eq!(gw.half_open(), 1);
}

/// Requests spoofed in a host's name fill its unproven share; the host itself, which can echo
/// the COOKIE it is then asked for, still gets in (otherwise anyone could lock any client out
/// by sending five datagrams every 30 s with its address).
#[test]
fn requests_spoofed_in_a_hosts_name_do_not_lock_it_out() {
    let setup = Setup::new(KeyAlgorithm::P256);
    let mut cfg = setup.server;
    cfg.cookie_threshold = 1000;
    let mut gw = responder(cfg);
    let client = Arc::new(setup.client);
    let now = Instant::now();
    let victim = source(7);
    for i in 0..20 {
        let from = SocketAddr::new(victim.ip(), 500);
        gw.handle_datagram(
            at(now),
            Path::ike(server_addr(), from),
            &init_request(&client, 1000 + i, from, now),
        );
    }
    while gw.poll_transmit().is_some() {}
    assert_eq!(gw.half_open(), 5);
    init_with_cookie(&mut gw, &client, 7, SocketAddr::new(victim.ip(), 4500));
    assert_eq!(gw.half_open(), 6, "{:?}", gw.stats());
    assert_eq!(gw.stats().per_source_limit, 0);
}

/// An IPv6 host can pick any address in its /64: the per-source share is per /64.
#[test]
fn an_ipv6_source_is_its_64() {
    let setup = Setup::new(KeyAlgorithm::P256);
    let mut cfg = setup.server;
    cfg.cookie_threshold = 1000;
    let mut gw = responder(cfg);
    let client = Arc::new(setup.client);
    let now = Instant::now();
    for i in 0..8u16 {
        let from: SocketAddr = format!("[2001:db8:1:2::{:x}]:500", i + 1).parse().unwrap();
        gw.handle_datagram(
            at(now),
            Path::ike(server_addr(), from),
            &init_request(&client, u32::from(i), from, now),
        );
    }
    assert_eq!(gw.half_open(), 5);
    assert_eq!(gw.stats().cookies_sent, 3);
    let elsewhere: SocketAddr = "[2001:db8:1:3::1]:500".parse().unwrap();
    gw.handle_datagram(
        at(now),
        Path::ike(server_addr(), elsewhere),
        &init_request(&client, 99, elsewhere, now),
    );
    assert_eq!(gw.half_open(), 6);
}

/// Under load every new initiator must echo a COOKIE first; a host that does so still gets no
/// more than its share.
#[test]
fn a_cookie_echoing_host_gets_no_more_than_its_share() {
    let setup = Setup::new(KeyAlgorithm::P256);
    let mut cfg = setup.server;
    cfg.cookie_threshold = 0;
    let mut gw = responder(cfg);
    let client_cfg = Arc::new(setup.client);
    let host = source(3);
    for i in 0..10u32 {
        let from = SocketAddr::new(host.ip(), 3000 + i as u16);
        init_with_cookie(&mut gw, &client_cfg, i, from);
    }
    assert_eq!(gw.half_open(), 5, "{:?}", gw.stats());
    assert_eq!(gw.stats().cookies_sent, 10);
    assert_eq!(gw.stats().per_source_limit, 5);
}

/// Nothing over 10,000 bytes from an unauthenticated peer: neither an IKE_SA_INIT nor a
/// datagram to a half-open SA.
#[test]
fn unauthenticated_datagrams_are_capped_at_ten_thousand_bytes() {
    use ikev2::ike_wire::{Message, Payload};
    let setup = Setup::new(KeyAlgorithm::P256);
    let mut gw = responder(setup.server);
    let client = Arc::new(setup.client);
    let now = Instant::now();
    let from = source(4);
    let mut msg = Message::decode(&init_request(&client, 1, from, now)).unwrap();
    msg.payloads.push(Payload::VendorId(vec![0x42; 10_500]));
    let big = msg.encode().unwrap();
    gw.handle_datagram(at(now), Path::ike(server_addr(), from), &big);
    assert_eq!(gw.half_open(), 0);
    assert!(answers(&mut gw).is_empty());
    assert_eq!(gw.stats().oversized, 1);
    // A normal request makes a half-open SA; an oversized datagram for it is dropped unread.
    let req = init_request(&client, 1, from, now);
    gw.handle_datagram(at(now), Path::ike(server_addr(), from), &req);
    assert_eq!(gw.half_open(), 1);
    let reply = answers(&mut gw);
    let spi_r = reply[0].header.spi_r;
    let mut junk = vec![0u8; 12_000];
    junk[..8].copy_from_slice(&msg.header.spi_i.to_be_bytes());
    junk[8..16].copy_from_slice(&spi_r.to_be_bytes());
    junk[16] = 46;
    junk[17] = 0x20;
    junk[18] = 35; // IKE_AUTH
    junk[19] = 0x08;
    junk[20..24].copy_from_slice(&1u32.to_be_bytes());
    junk[24..28].copy_from_slice(&12_000u32.to_be_bytes());
    gw.handle_datagram(at(now), Path::ike(server_addr(), from), &junk);
    assert_eq!(gw.stats().oversized, 2);
}

/// Under load, an initiator that sent a MODP key exchange but also offers an elliptic-curve
/// group is asked for that (no state, no modular exponentiation); one that offers MODP only
/// (stock Windows) is served with it.
#[test]
fn under_load_a_cheaper_group_is_asked_for() {
    use ikev2::IkeProposal;
    use ikev2::ike_wire::NotifyType;
    use ikev2::ike_wire::Payloads as _;
    use ikev2::ipsec_crypto::DhGroup;
    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.server.cookie_threshold = 0;
    setup.server.ike.ike_proposals =
        vec![IkeProposal::parse("aes256gcm16-prfsha384-modp2048-ecp256", false).unwrap()];
    // The initiator's KE is MODP-2048 (its first group), it also offers ECP-256.
    setup.client.ike.ike_proposals =
        vec![IkeProposal::parse("aes256gcm16-prfsha384-modp2048-ecp256", false).unwrap()];
    let mut gw = responder(setup.server.clone());
    let client = Arc::new(setup.client.clone());
    let now = Instant::now();
    let from = source(5);
    let mut c = IkeSa::connect(
        client.clone(),
        Arc::new(Provider::deterministic(b"m")),
        now,
        from,
        server_addr(),
    )
    .unwrap();
    let mut asked = None;
    for _ in 0..3 {
        while let Some(t) = c.poll_transmit() {
            gw.handle_datagram(at(now), Path::ike(server_addr(), from), &t.bytes);
        }
        while let Some(t) = gw.poll_transmit() {
            let m = ikev2::ike_wire::Message::decode(&t.bytes).unwrap();
            if let Some(n) = m.payloads.notify(NotifyType::INVALID_KE_PAYLOAD) {
                asked = Some(u16::from_be_bytes([n.data[0], n.data[1]]));
            }
            c.handle_datagram(at(now), Path::ike(from, server_addr()), &t.bytes);
        }
    }
    assert_eq!(asked, Some(DhGroup::EcpP256.iana()));
    assert_eq!(gw.stats().cheaper_group_asked, 1);
    assert_eq!(gw.half_open(), 1, "the initiator came back with ECP-256");
    // MODP only: served.
    setup.client.ike.ike_proposals =
        vec![IkeProposal::parse("aes256gcm16-prfsha384-modp2048", false).unwrap()];
    let only_modp = Arc::new(setup.client);
    let from = source(6);
    let mut c = IkeSa::connect(
        only_modp,
        Arc::new(Provider::deterministic(b"w")),
        now,
        from,
        server_addr(),
    )
    .unwrap();
    for _ in 0..2 {
        while let Some(t) = c.poll_transmit() {
            gw.handle_datagram(at(now), Path::ike(server_addr(), from), &t.bytes);
        }
        while let Some(t) = gw.poll_transmit() {
            c.handle_datagram(at(now), Path::ike(from, server_addr()), &t.bytes);
        }
    }
    assert_eq!(gw.stats().cheaper_group_asked, 1);
    assert_eq!(
        gw.half_open(),
        2,
        "COOKIE, then served with MODP: {:?}",
        gw.stats()
    );
}

/// What the responder answers without state goes back on the socket its request came on:
/// a request on the NAT-T socket gets its COOKIE demand there, with the marker; a request
/// with the COOKIE then makes an SA whose IKE stays on NAT-T.
#[test]
fn answers_go_back_on_the_socket_the_request_came_on() {
    let setup = Setup::new(KeyAlgorithm::P256);
    let mut cfg = setup.server;
    cfg.cookie_threshold = 0;
    let mut gw = responder(cfg);
    let client = Arc::new(setup.client);
    let now = Instant::now();
    let from = source(1);
    let gateway_natt = SocketAddr::new(server_addr().ip(), 4500);
    let request = init_request(&client, 1, from, now);
    gw.handle_datagram(at(now), Path::natt(gateway_natt, from), &request);
    let cookie = gw.poll_transmit().expect("a COOKIE demand");
    assert!(cookie.natt && cookie.local == gateway_natt && cookie.remote == from);
    gw.handle_datagram(at(now), Path::ike(server_addr(), from), &request);
    let cookie_500 = gw.poll_transmit().expect("a COOKIE demand");
    assert!(!cookie_500.natt && cookie_500.local == server_addr());

    let demand = ikev2::ike_wire::Message::decode(&cookie.bytes).unwrap();
    let value = demand
        .payloads
        .notify(NotifyType::COOKIE)
        .unwrap()
        .data
        .clone();
    let mut with_cookie = ikev2::ike_wire::Message::decode(&request).unwrap();
    with_cookie.payloads.insert(
        0,
        ikev2::ike_wire::Payload::Notify(ikev2::ike_wire::Notify::new(NotifyType::COOKIE, value)),
    );
    let bytes = with_cookie.encode().unwrap();
    gw.handle_datagram(at(now), Path::natt(gateway_natt, from), &bytes);
    let response = gw.poll_transmit().expect("an IKE_SA_INIT response");
    assert!(
        response.natt && response.local == gateway_natt,
        "{response:?}"
    );
    assert_eq!(gw.half_open(), 1);
}
