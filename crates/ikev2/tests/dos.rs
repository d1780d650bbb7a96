//! An internet-facing responder under load: what a datagram costs whatever the number of SAs,
//! half-open limits per source, COOKIEs under load, the size of what an unauthenticated peer
//! may make us hold.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ikev2::ipsec_crypto::Provider;
use ikev2::{Endpoint, IkeSa, InitiatorConfig, ResponderConfig};
use pki::KeyAlgorithm;

fn responder(cfg: ResponderConfig) -> Endpoint {
    let mut e = Endpoint::new(
        Arc::new(cfg),
        Arc::new(Provider::deterministic(b"gw")),
        Box::new(TestPool::with(&["172.16.201.10"])),
    )
    .unwrap();
    e.set_unix_time(UNIX_NOW);
    e
}

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
        gw.handle_datagram(now, server_addr(), source(i), &req);
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
        gw.handle_datagram(now, server_addr(), source(9999), &junk);
        assert!(gw.poll_timeout().is_some());
        gw.handle_timeout(now);
    }
    assert_eq!(gw.deadline_computations(), before, "work per SA for foreign datagrams");
    // One SA's datagram costs one deadline.
    let req = init_request(&client, 5, source(5), now);
    gw.handle_datagram(now, server_addr(), source(5), &req);
    assert_eq!(gw.deadline_computations(), before + 1);
    // The half-open SAs still expire on time, all of them.
    let later = now + Duration::from_secs(31);
    assert!(gw.poll_timeout().unwrap() <= later);
    gw.handle_timeout(later);
    assert_eq!(gw.half_open(), 0);
    assert_eq!(gw.len(), 0);
}
