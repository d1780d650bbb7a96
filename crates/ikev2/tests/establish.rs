//! IKE_SA_INIT + IKE_AUTH + first Child SA between our initiator and our responder.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::*;
use ikev2::ike_wire::{AuthMethod, ExchangeType, Header, Message, NotifyType, Payloads};
use ikev2::ipsec_crypto::{EncrAlg, PrfAlg};
use ikev2::{CloseReason, Event, IkeId, IkeProposal, IkeSaState};
use pki::KeyAlgorithm;

fn exchange_of(bytes: &[u8]) -> ExchangeType {
    Header::parse(bytes).unwrap().header.exchange_type
}

#[test]
fn ecdsa_p256_establishes_ike_and_child_sa_with_identical_keys() {
    let mut pair = Pair::new(Setup::new(KeyAlgorithm::P256));
    pair.settle();

    let (c, s) = pair.established();
    let (c, s) = (
        c.expect("client established"),
        s.expect("server established"),
    );
    assert_eq!(c.peer_id, IkeId::Fqdn(GATEWAY_NAME.into()));
    assert_eq!(s.peer_id, IkeId::Fqdn(CLIENT_NAME.into()));
    assert_eq!((c.spi_i, c.spi_r), (s.spi_i, s.spi_r));
    assert_eq!(c.algorithms, s.algorithms);
    // First default proposal.
    assert_eq!(c.algorithms.encr, EncrAlg::AesGcm16_256);
    assert_eq!(c.algorithms.prf, PrfAlg::HmacSha384);
    // Both advertised SIGNATURE_HASH_ALGORITHMS, so RFC 7427 signatures were used.
    assert_eq!(c.peer_auth_method, AuthMethod::DIGITAL_SIGNATURE);
    assert_eq!(s.peer_auth_method, AuthMethod::DIGITAL_SIGNATURE);
    assert!(c.nat_detected && s.nat_detected, "forced encapsulation");
    assert_eq!(pair.client.state(), IkeSaState::Established);

    let cc = pair.client_child().expect("client child");
    let sc = pair.server_child().expect("server child");
    assert_eq!(cc.spi_in, sc.spi_out);
    assert_eq!(cc.spi_out, sc.spi_in);
    assert_eq!(cc.algorithms, sc.algorithms);
    assert_eq!(cc.algorithms.encr, EncrAlg::AesGcm16_256);
    assert_eq!(cc.encr_key_out.as_bytes(), sc.encr_key_in.as_bytes());
    assert_eq!(cc.encr_key_in.as_bytes(), sc.encr_key_out.as_bytes());
    assert_eq!(cc.integ_key_out.as_bytes(), sc.integ_key_in.as_bytes());
    assert_eq!(cc.encr_key_out.len(), 36);
    assert_ne!(cc.encr_key_out.as_bytes(), cc.encr_key_in.as_bytes());

    // CP: the first pool address, the DNS server and the pushed subnet.
    let vip: IpAddr = "172.16.201.10".parse().unwrap();
    assert_eq!(cc.virtual_ips, vec![vip]);
    assert_eq!(sc.virtual_ips, vec![vip]);
    assert_eq!(cc.dns_servers, vec!["10.1.0.53".parse::<IpAddr>().unwrap()]);
    assert_eq!(cc.subnets, vec!["10.1.0.0/16".parse().unwrap()]);
    assert_eq!(pair.pool.leased(), 1);

    // TS narrowing: TSi to the vIP, TSr to the gateway's local network.
    let vip_ts = ikev2::ts::host(vip);
    let lan = v4_range([10, 1, 0, 0], [10, 1, 255, 255]);
    assert_eq!(cc.ts_local, vec![vip_ts.clone()]);
    assert_eq!(cc.ts_remote, vec![lan.clone()]);
    assert_eq!(sc.ts_local, vec![lan]);
    assert_eq!(sc.ts_remote, vec![vip_ts]);

    // Port float: IKE_SA_INIT on 500 without marker, everything after on 4500 with it.
    assert!(cc.udp_encap && sc.udp_encap);
    assert_eq!(cc.remote.port(), 4500);
    assert_eq!(sc.remote.port(), 4500);
    for f in &pair.wire {
        let init = exchange_of(&f.t.bytes) == ExchangeType::IKE_SA_INIT;
        assert_eq!(f.t.local.port(), if init { 500 } else { 4500 });
        assert_eq!(f.t.remote.port(), if init { 500 } else { 4500 });
        assert_eq!(f.t.natt, !init);
    }
    assert_eq!(
        pair.wire.len(),
        4,
        "two round trips, no fragmentation needed"
    );
}

#[test]
fn initiator_offers_what_strongswan_expects_in_ike_sa_init() {
    let pair = Pair::new(Setup::new(KeyAlgorithm::P256));
    let first = &pair.wire[0].t.bytes;
    let msg = Message::decode(first).unwrap();
    let p = &msg.payloads;
    assert!(p.sa().is_some() && p.ke().is_some() && p.nonce().is_some());
    for t in [
        NotifyType::NAT_DETECTION_SOURCE_IP,
        NotifyType::NAT_DETECTION_DESTINATION_IP,
        NotifyType::IKEV2_FRAGMENTATION_SUPPORTED,
        NotifyType::SIGNATURE_HASH_ALGORITHMS,
    ] {
        assert!(p.notify(t).is_some(), "{t}");
    }
    let defaults = IkeProposal::defaults();
    assert_eq!(p.sa().unwrap().proposals.len(), defaults.len());
    // KE for the first group of the first proposal (ecp384: 96 bytes).
    assert_eq!(p.ke().unwrap().data.len(), 96);
}

#[test]
fn rsa_classic_and_digital_signature_methods() {
    use ikev2::AuthMethodPolicy;
    for (policy, want) in [
        (AuthMethodPolicy::Classic, AuthMethod::RSA_SIG),
        (
            AuthMethodPolicy::DigitalSignature,
            AuthMethod::DIGITAL_SIGNATURE,
        ),
    ] {
        let mut setup = Setup::new(KeyAlgorithm::Rsa2048);
        setup.client.ike.auth_method = policy;
        setup.server.ike.auth_method = policy;
        // Method 1 is RSA over SHA-1: legacy only.
        setup.client.ike.allow_sha1_signatures = policy == AuthMethodPolicy::Classic;
        setup.server.ike.allow_sha1_signatures = policy == AuthMethodPolicy::Classic;
        let mut pair = Pair::new(setup);
        pair.settle();
        let (c, s) = pair.established();
        assert_eq!(c.unwrap().peer_auth_method, want);
        assert_eq!(s.unwrap().peer_auth_method, want);
        assert!(pair.client_child().is_some());
    }
}

#[test]
fn ecdsa_classic_methods_9_and_10() {
    use ikev2::AuthMethodPolicy;
    for (alg, want) in [
        (KeyAlgorithm::P256, AuthMethod::ECDSA_SHA256_P256),
        (KeyAlgorithm::P384, AuthMethod::ECDSA_SHA384_P384),
    ] {
        let mut setup = Setup::new(alg);
        setup.client.ike.auth_method = AuthMethodPolicy::Classic;
        setup.server.ike.auth_method = AuthMethodPolicy::Classic;
        let mut pair = Pair::new(setup);
        pair.settle();
        let (c, s) = pair.established();
        assert_eq!(c.unwrap().peer_auth_method, want);
        assert_eq!(s.unwrap().peer_auth_method, want);
    }
}

#[test]
fn der_dn_identity_like_windows_machine_certificates() {
    let pki = Pki::new(KeyAlgorithm::P256);
    let gw = pki.issue(pki::CertKind::Gateway, GATEWAY_NAME, KeyAlgorithm::P256);
    let cl = pki.issue(pki::CertKind::Machine, CLIENT_NAME, KeyAlgorithm::P256);
    let dn = cl.chain[0].subject_der().to_vec();
    let mut pair = Pair::new(Setup::with_identities(
        &pki,
        &gw,
        &cl,
        IkeId::DerDn(dn.clone()),
    ));
    pair.settle();
    assert_eq!(pair.established().1.unwrap().peer_id, IkeId::DerDn(dn));
    assert!(pair.server_child().is_some());
}

#[test]
fn delete_from_client_closes_both_and_releases_the_address() {
    let mut pair = Pair::new(Setup::new(KeyAlgorithm::P256));
    pair.settle();
    assert_eq!(pair.pool.leased(), 1);
    pair.client.delete(pair.now);
    pair.collect();
    pair.settle();
    assert!(pair.client.is_closed());
    assert!(matches!(
        pair.client_events.last(),
        Some(Event::Closed(CloseReason::LocalDelete))
    ));
    assert!(matches!(
        pair.server_events.last(),
        Some((_, Event::Closed(CloseReason::PeerDelete)))
    ));
    assert!(pair.server.is_empty());
    assert_eq!(pair.pool.leased(), 0);
}

#[test]
fn liveness_check_is_answered() {
    let mut pair = Pair::new(Setup::new(KeyAlgorithm::P256));
    pair.settle();
    let before = pair.wire.len();
    assert!(pair.client.send_liveness_check(pair.now));
    assert!(
        !pair.client.send_liveness_check(pair.now),
        "one request at a time"
    );
    pair.collect();
    pair.settle();
    assert_eq!(pair.wire.len(), before + 2);
    // Answered: nothing pending, the next timer is the Child SA rekey (default 1 h lifetime).
    assert!(
        pair.client
            .poll_timeout()
            .is_some_and(|t| t >= pair.now + Duration::from_secs(48 * 60)),
        "answered, nothing pending"
    );
    assert_eq!(pair.client.state(), IkeSaState::Established);
    // Server-initiated liveness check works in the other direction too.
    let id = pair.server_events[0].0;
    assert!(pair.server.send_liveness_check(id, pair.now));
    pair.collect();
    pair.run(true, Duration::from_secs(60));
    assert_eq!(pair.wire.len(), before + 4);
    assert!(pair.client_failure().is_none() && pair.server_failure().is_none());
}

#[test]
fn child_sa_delete_keeps_the_ike_sa() {
    let mut pair = Pair::new(Setup::new(KeyAlgorithm::P256));
    pair.settle();
    let (cin, cout) = {
        let c = pair.client_child().unwrap();
        (c.spi_in, c.spi_out)
    };
    assert!(pair.client.delete_child_sa(pair.now));
    pair.collect();
    pair.settle();
    assert!(pair.client_events.iter().any(|e| matches!(
        e,
        Event::ChildSaDeleted { spi_in, spi_out } if (*spi_in, *spi_out) == (cin, cout)
    )));
    assert!(pair.server_events.iter().any(|(_, e)| matches!(
        e,
        Event::ChildSaDeleted { spi_in, spi_out } if (*spi_in, *spi_out) == (cout, cin)
    )));
    assert_eq!(pair.client.state(), IkeSaState::Established);
    assert!(
        !pair.client.delete_child_sa(pair.now),
        "nothing left to delete"
    );
}

#[test]
fn gateway_can_delete_a_client() {
    let mut pair = Pair::new(Setup::new(KeyAlgorithm::P256));
    pair.settle();
    let id = pair.server_events[0].0;
    pair.server.delete(id, pair.now);
    pair.collect();
    pair.settle();
    assert!(matches!(
        pair.client_events.last(),
        Some(Event::Closed(CloseReason::PeerDelete))
    ));
    assert!(pair.server.is_empty());
    assert_eq!(pair.pool.leased(), 0);
}

#[test]
fn dead_peer_detection_probes_when_idle_and_fails_when_unanswered() {
    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.client.ike.dpd_interval = Some(Duration::from_secs(30));
    let mut pair = Pair::new(setup);
    pair.settle();
    let established_at = pair.now;
    // Idle: a probe goes out after 30 s and is answered.
    pair.run(true, Duration::from_secs(40));
    let probes = pair.wire.len() - 4;
    assert_eq!(probes, 2, "one request, one response");
    assert_eq!(pair.now - established_at, Duration::from_secs(30));
    // ESP traffic postpones the next probe.
    pair.client
        .note_peer_alive(pair.now + Duration::from_secs(20));
    assert_eq!(
        pair.client.poll_timeout(),
        Some(pair.now + Duration::from_secs(50))
    );
    // The gateway vanishes: the next probe goes unanswered and the SA fails.
    pair.fate = Box::new(|_, f| {
        if f.to_server {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    pair.run(true, Duration::from_secs(600));
    assert_eq!(
        pair.client_failure().unwrap().reason,
        ikev2::FailureReason::Timeout
    );
    assert!(pair.client.is_closed());
}

#[test]
fn ipv4_and_ipv6_virtual_addresses() {
    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.client.request_ipv6 = true;
    setup
        .client
        .ts_local
        .push(ikev2::ike_wire::TrafficSelector::ANY_V6);
    setup
        .client
        .ts_remote
        .push(ikev2::ike_wire::TrafficSelector::ANY_V6);
    setup
        .server
        .local_ts
        .push(ikev2::ike_wire::TrafficSelector::ANY_V6);
    setup
        .server
        .dns_servers
        .push("2001:db8::53".parse().unwrap());
    setup.pool = TestPool::with(&["172.16.201.10", "fd00:16:201::10"]);
    let mut pair = Pair::new(setup);
    pair.settle();
    let c = pair.client_child().unwrap();
    let v6: IpAddr = "fd00:16:201::10".parse().unwrap();
    assert_eq!(
        c.virtual_ips,
        vec!["172.16.201.10".parse::<IpAddr>().unwrap(), v6]
    );
    assert_eq!(c.dns_servers.len(), 2);
    assert!(c.ts_local.contains(&ikev2::ts::host(v6)));
    assert_eq!(c.ts_local.len(), 2);
}

#[test]
fn windows_like_rsa_client_without_hash_notify_gets_method_1_both_ways() {
    let mut setup = Setup::new(KeyAlgorithm::Rsa2048);
    setup.client.ike.signature_hash_algorithms = false;
    setup.client.ike.allow_sha1_signatures = true;
    setup.server.ike.allow_sha1_signatures = true;
    let mut pair = Pair::new(setup);
    pair.settle();
    let (c, s) = pair.established();
    // Neither side may use RFC 7427 when the initiator did not announce it.
    assert_eq!(c.unwrap().peer_auth_method, AuthMethod::RSA_SIG);
    assert_eq!(s.unwrap().peer_auth_method, AuthMethod::RSA_SIG);
    let resp = Message::decode(&pair.wire[1].t.bytes).unwrap();
    assert!(
        resp.payloads
            .notify(NotifyType::SIGNATURE_HASH_ALGORITHMS)
            .is_none()
    );
}

#[test]
fn initial_contact_replaces_the_old_sa_of_the_same_identity() {
    use ikev2::ipsec_crypto::Provider;
    use std::sync::Arc;

    let setup = Setup::new(KeyAlgorithm::P256);
    let client_cfg = Arc::new(setup.client.clone());
    let mut pair = Pair::new(setup);
    pair.settle();
    let first = pair.server_events[0].0;
    assert_eq!(pair.pool.leased(), 1);
    // The client "reboots": a new IKE SA with fresh SPIs from the same identity.
    let again = ikev2::IkeSa::connect(
        client_cfg,
        Arc::new(Provider::deterministic(b"after reboot")),
        pair.now,
        client_addr(),
        server_addr(),
    )
    .unwrap();
    pair.client = again;
    pair.collect();
    pair.settle();
    let replaced = pair
        .server_events
        .iter()
        .any(|(id, e)| *id == first && matches!(e, Event::Closed(CloseReason::Replaced)));
    assert!(replaced);
    assert_eq!(pair.server.len(), 1);
    assert!(pair.server.sa(first).is_none());
    assert_eq!(pair.pool.leased(), 1, "old address returned, new one held");
    let children = pair
        .client_events
        .iter()
        .filter(|e| matches!(e, Event::ChildSaEstablished(_)))
        .count();
    assert_eq!(children, 2, "the rebooted client got its Child SA");
}

/// Without allow_legacy neither side signs or accepts RSA over SHA-1: a peer that announces
/// no RFC 7427 hash cannot be answered by an RSA responder, and says why; one that signs with
/// method 1 is refused.
#[test]
fn rsa_over_sha1_takes_allow_legacy_on_each_side() {
    // The responder would have to sign with SHA-1.
    let mut setup = Setup::new(KeyAlgorithm::Rsa2048);
    setup.client.ike.signature_hash_algorithms = false;
    setup.client.ike.allow_sha1_signatures = true;
    let mut pair = Pair::new(setup);
    pair.settle();
    let f = pair.server_failure().expect("the responder refuses");
    assert!(f.reason.to_string().contains("SHA-1"), "{}", f.reason);
    assert!(pair.established().0.is_none());
    // The initiator signs with method 1; the responder (RFC 7427 capable) refuses it.
    let mut setup = Setup::new(KeyAlgorithm::Rsa2048);
    setup.client.ike.auth_method = ikev2::AuthMethodPolicy::Classic;
    setup.client.ike.allow_sha1_signatures = true;
    let mut pair = Pair::new(setup);
    pair.settle();
    let f = pair
        .server_failure()
        .expect("the responder refuses method 1");
    assert!(f.reason.to_string().contains("SHA-1"), "{}", f.reason);
    assert_eq!(f.notify_sent, Some(NotifyType::AUTHENTICATION_FAILED));
}

/// RFC 8598: the client asks for internal domains, the gateway pushes its own with the DNS
/// servers, and the client's Child SA carries them (lower case, no trailing dot).
#[test]
fn internal_dns_domains_reach_the_client() {
    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.server.dns_domains = vec!["corp.example".into(), "apps.corp.example".into()];
    let mut pair = Pair::new(setup);
    pair.settle();
    let c = pair.client_child().expect("client child");
    assert_eq!(c.dns_domains, ["corp.example", "apps.corp.example"]);
    let s = pair.server_child().expect("server child");
    assert_eq!(s.dns_domains, c.dns_domains);
}

/// Without DNS servers to resolve them, no domains are pushed.
#[test]
fn no_internal_domains_without_dns_servers() {
    let mut setup = Setup::new(KeyAlgorithm::P256);
    setup.server.dns_domains = vec!["corp.example".into()];
    setup.server.dns_servers.clear();
    let mut pair = Pair::new(setup);
    pair.settle();
    assert!(
        pair.client_child()
            .expect("client child")
            .dns_domains
            .is_empty()
    );
}
