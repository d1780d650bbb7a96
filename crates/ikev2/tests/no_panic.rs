//! Property tests: proposal notation round-trips, and no input makes the engine panic.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::*;
use ikev2::ipsec_crypto::Provider;
use ikev2::{Endpoint, EspProposal, IkeProposal};
use pki::KeyAlgorithm;
use proptest::prelude::*;

const TOKENS: &[&str] = &[
    "aes128",
    "aes256",
    "aes192",
    "3des",
    "aes128gcm16",
    "aes256gcm16",
    "chacha20poly1305",
    "sha1",
    "sha256",
    "sha384",
    "sha512",
    "prfsha1",
    "prfsha256",
    "prfsha384",
    "prfsha512",
    "modp1024",
    "modp2048",
    "ecp256",
    "ecp384",
    "x25519",
    "esn",
    "noesn",
    "bogus",
    "",
];

proptest! {
    #[test]
    fn proposal_notation_round_trips(picks in prop::collection::vec(0..TOKENS.len(), 0..8)) {
        let s = picks.iter().map(|i| TOKENS[*i]).collect::<Vec<_>>().join("-");
        if let Ok(p) = IkeProposal::parse(&s, true) {
            prop_assert_eq!(IkeProposal::parse(&p.to_string(), true).unwrap(), p);
        }
        if let Ok(p) = EspProposal::parse(&s, true) {
            prop_assert_eq!(EspProposal::parse(&p.to_string(), true).unwrap(), p);
        }
    }

    #[test]
    fn arbitrary_strings_never_panic_the_parser(s in ".{0,60}") {
        let _ = IkeProposal::parse(&s, false);
        let _ = EspProposal::parse(&s, true);
    }
}

/// The four messages of a real exchange, and a responder configuration to replay them to.
fn recorded() -> (Vec<Vec<u8>>, ikev2::ResponderConfig) {
    let setup = Setup::new(KeyAlgorithm::P256);
    let server_cfg = setup.server.clone();
    let mut pair = Pair::new(setup);
    pair.settle();
    (
        pair.wire.iter().map(|f| f.t.bytes.clone()).collect(),
        server_cfg,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn mutated_messages_never_panic_the_responder(
        which in 0usize..4,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        thread_local! {
            static RECORDED: (Vec<Vec<u8>>, ikev2::ResponderConfig) = recorded();
        }
        RECORDED.with(|(wire, cfg)| {
            let mut server = Endpoint::new(
                Arc::new(cfg.clone()),
                Arc::new(Provider::deterministic(b"server seed")),
                Box::new(TestPool::with(&["172.16.201.10"])),
            )
            .unwrap();
            let now = Instant::now();
            // Bring the responder to the state where message `which` is expected.
            if which >= 2 {
                server.handle_datagram(at(now), Path::ike(server_addr(), client_addr()), &wire[0]);
            }
            let mut msg = wire[which].clone();
            for (i, b) in &flips {
                let at = i.index(msg.len());
                msg[at] ^= b;
            }
            if truncate {
                msg.truncate(cut.index(msg.len() + 1));
            }
            server.handle_datagram(at(now), Path::ike(server_addr(), client_addr()), &msg);
            server.handle_timeout(now + std::time::Duration::from_secs(100));
            while server.poll_transmit().is_some() {}
            while server.poll_event().is_some() {}
        });
    }

    #[test]
    fn random_bytes_never_panic_or_create_state(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        thread_local! {
            static CFG: ikev2::ResponderConfig = recorded().1;
        }
        CFG.with(|cfg| {
            let mut server = Endpoint::new(
                Arc::new(cfg.clone()),
                Arc::new(Provider::deterministic(b"x")),
                Box::new(TestPool::default()),
            )
            .unwrap();
            server.handle_datagram(at(Instant::now()), Path::ike(server_addr(), client_addr()), &bytes);
            assert!(server.is_empty());
        });
    }
}
