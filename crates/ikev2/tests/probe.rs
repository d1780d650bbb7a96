//! Stateless probes against a real responder: it says which proposals it takes, answers
//! probes of any size, and keeps nothing for them (more probes than a source may have
//! half-open SAs are all answered).
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Instant;

use common::*;
use ikev2::ipsec_crypto::Provider;
use ikev2::probe::{Probe, ProbeAnswer, answer, probe};
use ikev2::{Endpoint, IkeProposal};
use pki::KeyAlgorithm;

fn responder_taking(proposals: &str) -> Endpoint {
    let mut cfg = Setup::new(KeyAlgorithm::P256).server;
    cfg.ike.ike_proposals = IkeProposal::parse_list(proposals, true).unwrap();
    responder(cfg)
}

fn ask(ep: &mut Endpoint, p: &Probe) -> ProbeAnswer {
    let from: SocketAddr = "198.51.100.2:4500".parse().unwrap();
    ep.handle_datagram(at(Instant::now()), Path::ike(server_addr(), from), &p.bytes);
    let t = ep.poll_transmit().expect("an answer");
    assert!(ep.poll_transmit().is_none());
    let (spi, meaning) = answer(&t.bytes).unwrap();
    assert_eq!(spi, p.spi_i);
    meaning
}

#[test]
fn a_responder_says_which_proposals_it_takes_and_keeps_nothing() {
    let mut gw = responder_taking("aes256gcm16-prfsha384-ecp384");
    let provider = Provider::deterministic(b"probe");
    let ours = IkeProposal::parse_list("aes256gcm16-prfsha384-ecp384", false).unwrap();
    let p = probe(&ours, 0, &provider).unwrap();
    assert_eq!(ask(&mut gw, &p), ProbeAnswer::Accepted { group: 20 });
    let other = IkeProposal::parse_list("aes128-sha256-modp2048", false).unwrap();
    let p = probe(&other, 0, &provider).unwrap();
    assert_eq!(ask(&mut gw, &p), ProbeAnswer::NoProposalChosen);
    for _ in 0..20 {
        let p = probe(&ours, 0, &provider).unwrap();
        assert!(matches!(ask(&mut gw, &p), ProbeAnswer::Accepted { .. }));
    }
    assert_eq!(gw.len(), 0);
    assert_eq!(gw.half_open(), 0);
}

#[test]
fn a_probe_is_padded_to_the_size_asked_and_still_answered() {
    let mut gw = responder_taking("aes256gcm16-prfsha384-ecp384");
    let provider = Provider::deterministic(b"probe");
    let ours = IkeProposal::parse_list("aes256gcm16-prfsha384-ecp384", false).unwrap();
    for len in [300, 1000, 1436, 1472, 9000] {
        let p = probe(&ours, len, &provider).unwrap();
        assert_eq!(p.bytes.len(), len);
        assert!(matches!(ask(&mut gw, &p), ProbeAnswer::Accepted { .. }));
    }
    // Asked for less than the bare request: the bare request.
    let p = probe(&ours, 10, &provider).unwrap();
    assert!(
        p.bytes.len() > 10 && p.bytes.len() < 300,
        "{}",
        p.bytes.len()
    );
}

/// A responder that demands a COOKIE answers the probe sent again with it (same SPI and
/// nonce, same size), still without keeping anything.
#[test]
fn a_probe_follows_a_cookie() {
    let mut cfg = Setup::new(KeyAlgorithm::P256).server;
    cfg.ike.ike_proposals = IkeProposal::parse_list("aes256gcm16-prfsha384-ecp384", true).unwrap();
    cfg.cookie_threshold = 0;
    let mut gw = responder(cfg);
    let provider = Provider::deterministic(b"probe");
    let ours = IkeProposal::parse_list("aes256gcm16-prfsha384-ecp384", false).unwrap();
    let p = probe(&ours, 1200, &provider).unwrap();
    let ProbeAnswer::Cookie(cookie) = ask(&mut gw, &p) else {
        panic!("no COOKIE demanded");
    };
    let again = p.with_cookie(&cookie).unwrap();
    assert_eq!((again.spi_i, again.bytes.len()), (p.spi_i, 1200));
    assert_eq!(ask(&mut gw, &again), ProbeAnswer::Accepted { group: 20 });
    assert_eq!(gw.half_open(), 0);
}
