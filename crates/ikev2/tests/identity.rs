//! Peer identities are canonical once authenticated: spellings of one identity are one peer
//! (INITIAL_CONTACT, the per-identity SA limit and the address pool all see the same key),
//! and one identity holds a bounded number of SAs.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use ikev2::ipsec_crypto::Provider;
use ikev2::{CloseReason, Event, IkeId, IkeSa, InitiatorConfig};
use pki::{CertKind, KeyAlgorithm};

/// A new client SA (fresh SPIs and keys) in place of the pair's current one.
fn another_client(pair: &mut Pair, cfg: &Arc<InitiatorConfig>, seed: &[u8]) {
    let c = IkeSa::connect(
        cfg.clone(),
        Arc::new(Provider::deterministic(seed)),
        pair.now,
        client_addr(),
        server_addr(),
    )
    .unwrap();
    pair.client = c;
    pair.collect();
    pair.settle();
}

fn established_ids(pair: &Pair) -> Vec<(ikev2::IkeSaId, IkeId)> {
    pair.server_events
        .iter()
        .filter_map(|(id, e)| match e {
            Event::IkeSaEstablished(info) => Some((*id, info.peer_id.clone())),
            _ => None,
        })
        .collect()
}

fn setup_with_id(client_id: IkeId) -> Setup {
    let pki = Pki::new(KeyAlgorithm::P256);
    let gw = pki.issue(CertKind::Gateway, GATEWAY_NAME, KeyAlgorithm::P256);
    let cl = pki.issue(CertKind::Machine, CLIENT_NAME, KeyAlgorithm::P256);
    let mut setup = Setup::with_identities(&pki, &gw, &cl, client_id);
    setup.pool = TestPool::with(&[
        "172.16.201.10",
        "172.16.201.11",
        "172.16.201.12",
        "172.16.201.13",
    ]);
    setup
}

/// `Client1.Example.Test.` authenticates (the certificate names `client1.example.test`) and
/// is recorded as `client1.example.test`; a second SA spelled differently with INITIAL_CONTACT
/// replaces the first, and both took their address from the same lease key.
#[test]
fn spellings_of_one_identity_are_one_peer() {
    let shouting = format!("{}.", CLIENT_NAME.to_uppercase());
    let setup = setup_with_id(IkeId::Fqdn(shouting));
    let mut second = setup.client.clone();
    let mut pair = Pair::new(setup);
    pair.settle();
    let ids = established_ids(&pair);
    assert_eq!(ids.len(), 1, "{:?}", pair.server_failure());
    assert_eq!(ids[0].1, IkeId::Fqdn(CLIENT_NAME.into()));
    let first = ids[0].0;

    // The same certificate, now spelled `client1.EXAMPLE.test`, says INITIAL_CONTACT.
    second.ike.local.id = IkeId::Fqdn(CLIENT_NAME.replace("example", "EXAMPLE"));
    another_client(&mut pair, &Arc::new(second), b"second spelling");
    let ids = established_ids(&pair);
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[1].1, IkeId::Fqdn(CLIENT_NAME.into()));
    assert!(
        pair.server_events
            .iter()
            .any(|(id, e)| *id == first && matches!(e, Event::Closed(CloseReason::Replaced))),
        "the first spelling's SA was replaced"
    );
    assert_eq!(pair.server.len(), 1);
    let leased = pair.pool.0.lock().unwrap().leased.clone();
    assert_eq!(leased.len(), 1, "{leased:?}");
    assert_eq!(leased[0].0, IkeId::Fqdn(CLIENT_NAME.into()));
}

/// Without INITIAL_CONTACT (several devices may share a certificate), one identity still holds
/// no more than `max_sas_per_identity` SAs: the oldest is deleted, and the peer told.
#[test]
fn one_identity_holds_a_bounded_number_of_sas() {
    let mut setup = setup_with_id(IkeId::Fqdn(CLIENT_NAME.into()));
    setup.client.initial_contact = false;
    setup.server.max_sas_per_identity = 2;
    let cfg = Arc::new(setup.client.clone());
    let mut pair = Pair::new(setup);
    pair.settle();
    another_client(&mut pair, &cfg, b"two");
    assert_eq!(pair.server.len(), 2);
    another_client(&mut pair, &cfg, b"three");
    let ids = established_ids(&pair);
    assert_eq!(ids.len(), 3);
    // The oldest is being deleted (its Delete goes to the first client, gone by now).
    let oldest = ids[0].0;
    assert!(
        pair.server
            .sa(oldest)
            .is_none_or(|sa| sa.state() != ikev2::IkeSaState::Established),
        "the oldest SA is no longer established"
    );
    // Once its Delete times out it is gone; the two newest stay.
    pair.run(true, std::time::Duration::from_secs(120));
    assert!(pair.server.sa(oldest).is_none());
    assert!(pair.server.sa(ids[1].0).is_some());
    assert!(pair.server.sa(ids[2].0).is_some());
    // One inbound ESP SPI per remaining Child SA: the deleted SA's went back.
    assert_eq!(pair.server.esp_spis_in_use(), 2);
}

/// `client1.example.test..` is not a spelling of the certificate's name (a DNS name has one
/// root dot at most): it is refused, so no extra dot can buy a lease or an SA budget of its own.
#[test]
fn extra_trailing_dots_are_not_another_spelling() {
    let setup = setup_with_id(IkeId::Fqdn(format!("{CLIENT_NAME}..")));
    let mut pair = Pair::new(setup);
    pair.settle();
    assert!(
        established_ids(&pair).is_empty(),
        "{:?}",
        established_ids(&pair)
    );
    assert!(matches!(
        pair.server_failure().map(|f| &f.reason),
        Some(ikev2::FailureReason::PeerRejected(
            ikev2::PeerRejection::IdentityMismatch(_)
        ))
    ));
    assert_eq!(pair.pool.leased(), 0);
}
