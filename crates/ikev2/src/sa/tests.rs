//! Unit tests that drive IKE_AUTH with hand-made payloads.

use std::time::{Duration, UNIX_EPOCH};

use ike_wire::{
    Authentication, CfgAttribute, Datagram, Delete, ExchangeType, Header, KeyExchange, Message,
    Notify, Payload, PayloadType, Payloads, ProtocolId, SecurityAssociation, TrafficSelector,
    UnknownPayload, decode_chain, open_parts,
};
use ipsec_crypto::SigningKey;
use pki::{CertKind, CertificateAuthority, KeyAlgorithm, Validity};

use super::*;
use crate::config::{AddressFamily, AddressPool, LocalCredentials};
use crate::datagram::Now;
use crate::identity::{PeerRejection, PeerRole, PkiValidator};
use crate::ts;

const START: u64 = 1_767_225_600;

/// `now` with a wall clock a day into the test certificates' validity.
pub(crate) fn at(now: Instant) -> Now {
    Now::new(now, START + 86_400)
}

/// `bytes` with its header read, as an endpoint hands it to an SA.
pub(crate) fn dgram(bytes: &[u8]) -> Datagram<'_> {
    Datagram::parse(bytes).expect("an IKE header")
}

/// A client SA and a half-open server SA after IKE_SA_INIT, with the client's keys ready.
fn after_init() -> (IkeSa, IkeSa, Instant) {
    let (mut client, server, now) = init_pair();
    // Discard the client's real IKE_AUTH request: the tests send their own.
    while client.poll_transmit().is_some() {}
    (client, server, now)
}

/// The pair after IKE_SA_INIT, the client's IKE_AUTH request queued.
pub(in crate::sa) fn init_pair() -> (IkeSa, IkeSa, Instant) {
    let validity = Validity::days_from(UNIX_EPOCH + Duration::from_secs(START), 365);
    let ca = CertificateAuthority::new_root("root", KeyAlgorithm::P256, validity).unwrap();
    let creds = |kind, name: &str| {
        let id = ca.issue(kind, name, KeyAlgorithm::P256, validity).unwrap();
        LocalCredentials {
            id: IkeId::Fqdn(name.into()),
            key: Arc::new(SigningKey::from_pkcs8_der(id.key.pkcs8_der()).unwrap()),
            chain: vec![id.chain[0].der().as_ref().to_vec()],
        }
    };
    let trust = pki::TrustStore::with_roots([ca.cert().clone()]).unwrap();
    let client_cfg = InitiatorConfig::new(IkeConfig::new(
        creds(CertKind::Machine, "c.test"),
        Arc::new(PkiValidator {
            trust: trust.clone(),
            role: PeerRole::Gateway {
                server_name: "gw.test".into(),
            },
            expected_id: None,
        }),
    ));
    let server_cfg = ResponderConfig::new(IkeConfig::new(
        creds(CertKind::Gateway, "gw.test"),
        Arc::new(PkiValidator {
            trust,
            role: PeerRole::Client,
            expected_id: None,
        }),
    ));
    let now = Instant::now();
    let (c_addr, s_addr): (SocketAddr, SocketAddr) = (
        "198.51.100.2:500".parse().unwrap(),
        "203.0.113.2:500".parse().unwrap(),
    );
    let mut client = IkeSa::connect(
        Arc::new(client_cfg),
        Arc::new(Provider::deterministic(b"c")),
        now,
        c_addr,
        s_addr,
    )
    .unwrap();
    let req = client.poll_transmit().unwrap();
    let msg = Message::decode(&req.bytes).unwrap();
    let InitOutcome::Created(mut server) = IkeSa::respond_init(
        Arc::new(server_cfg),
        Arc::new(Provider::deterministic(b"s")),
        now,
        Path::ike(s_addr, c_addr),
        &msg,
        &req.bytes,
        7,
        false,
    ) else {
        panic!("no SA");
    };
    let resp = server.poll_transmit().unwrap();
    client.handle_datagram(at(now), Path::ike(c_addr, s_addr), &resp.bytes);
    (client, *server, now)
}

/// Sends `payloads` as the client's IKE_AUTH request; returns the server's reply payloads.
fn auth_with(payloads: &[Payload]) -> (Vec<Payload>, IkeSa) {
    let (client, mut server, now) = after_init();
    let datagrams = client
        .protect(ExchangeType::IKE_AUTH, 1, false, payloads)
        .unwrap();
    let (local, remote) = (client.path.local, client.path.remote);
    for d in datagrams {
        server.handle(at(now), Path::ike(remote, local), &dgram(&d), None);
    }
    let reply = server.poll_transmit().expect("a reply");
    let parts = open_parts(&reply.bytes).unwrap();
    let plain = client
        .keys
        .as_ref()
        .unwrap()
        .sk_in
        .open(parts.aad, parts.body)
        .unwrap();
    (decode_chain(parts.first_payload, &plain).unwrap(), server)
}

fn failure_of(server: &mut IkeSa) -> Failure {
    std::iter::from_fn(|| server.poll_event())
        .find_map(|e| match e {
            Event::Failed(f) => Some(f),
            _ => None,
        })
        .unwrap()
}

#[test]
fn unsupported_critical_payload_inside_sk() {
    let (reply, mut server) = auth_with(&[Payload::Unknown(UnknownPayload {
        payload_type: PayloadType(222),
        critical: true,
        body: vec![0; 4],
    })]);
    let n = reply
        .notify(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD)
        .unwrap();
    assert_eq!(n.data, [222]);
    let f = failure_of(&mut server);
    assert_eq!(
        f.notify_sent,
        Some(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD)
    );
    assert!(server.is_closed());
}

#[test]
fn malformed_inner_chain_is_invalid_syntax() {
    // A "SA payload" whose body is not a proposal.
    let (reply, mut server) = auth_with(&[Payload::Unknown(UnknownPayload {
        payload_type: PayloadType::SA,
        critical: false,
        body: vec![0xff; 3],
    })]);
    assert!(reply.notify(NotifyType::INVALID_SYNTAX).is_some());
    assert!(matches!(
        failure_of(&mut server).reason,
        FailureReason::InvalidSyntax(_)
    ));
}

#[test]
fn ike_auth_without_idi_is_invalid_syntax() {
    let (reply, mut server) = auth_with(&[Payload::Notify(Notify::new(
        NotifyType::INITIAL_CONTACT,
        Vec::new(),
    ))]);
    assert!(reply.notify(NotifyType::INVALID_SYNTAX).is_some());
    assert_eq!(
        failure_of(&mut server).notify_sent,
        Some(NotifyType::INVALID_SYNTAX)
    );
}

#[test]
fn eap_or_psk_instead_of_a_certificate_is_authentication_failed() {
    let id = IkeId::Fqdn("c.test".into()).to_wire();
    let (reply, mut server) = auth_with(&[
        Payload::IdI(id),
        Payload::Auth(Authentication {
            method: AuthMethod::SHARED_KEY_MIC,
            data: vec![0; 32],
        }),
    ]);
    assert!(reply.notify(NotifyType::AUTHENTICATION_FAILED).is_some());
    assert_eq!(
        failure_of(&mut server).reason,
        FailureReason::PeerRejected(PeerRejection::NoCertificate)
    );
}

#[test]
fn tampered_sk_payload_is_dropped_without_answer() {
    let (client, mut server, now) = after_init();
    let mut d = client
        .protect(ExchangeType::IKE_AUTH, 1, false, &[])
        .unwrap()
        .remove(0);
    let last = d.len() - 1;
    d[last] ^= 1;
    server.handle(
        at(now),
        Path::ike(client.path.remote, client.path.local),
        &dgram(&d),
        None,
    );
    assert!(server.poll_transmit().is_none());
    assert_eq!(server.state(), IkeSaState::HalfOpen);
}

/// A CP that asks only for DNS gets no address; where addresses are required that must be a
/// refusal, not a Child SA whose TSi is still 0.0.0.0/0.
#[test]
fn cp_without_an_address_request_is_refused_where_addresses_are_required() {
    let (mut client, mut server, now) = init_pair();
    let RoleConfig::Responder(cfg) = &server.cfg else {
        panic!("responder");
    };
    let mut cfg = (**cfg).clone();
    cfg.require_virtual_ip = true;
    server.cfg = RoleConfig::Responder(Arc::new(cfg));
    // The client's own IKE_AUTH (its AUTH does not cover the CP), with the CP replaced.
    let request = client.poll_transmit().unwrap();
    let parts = open_parts(&request.bytes).unwrap();
    let plain = server
        .keys
        .as_ref()
        .unwrap()
        .sk_in
        .open(parts.aad, parts.body)
        .unwrap();
    let mut payloads = decode_chain(parts.first_payload, &plain).unwrap();
    let cp = payloads
        .iter_mut()
        .find_map(|p| match p {
            Payload::Cp(c) => Some(c),
            _ => None,
        })
        .unwrap();
    cp.attributes = vec![CfgAttribute::InternalIp4Dns(None)];
    let (local, remote) = (client.path.local, client.path.remote);
    for d in client
        .protect(ExchangeType::IKE_AUTH, 1, false, &payloads)
        .unwrap()
    {
        server.handle(
            at(now),
            Path::ike(remote, local),
            &dgram(&d),
            Some(&mut OneAddress),
        );
    }
    let reply = server.poll_transmit().expect("a reply");
    let parts = open_parts(&reply.bytes).unwrap();
    let plain = client
        .keys
        .as_ref()
        .unwrap()
        .sk_in
        .open(parts.aad, parts.body)
        .unwrap();
    let reply = decode_chain(parts.first_payload, &plain).unwrap();
    assert!(reply.notify(NotifyType::FAILED_CP_REQUIRED).is_some());
    assert!(!reply.iter().any(|p| matches!(p, Payload::TsI(_))));
    assert!(server.children.is_empty());
}

// ---------------------------------------------------------------- CREATE_CHILD_SA requests

struct OneAddress;

impl AddressPool for OneAddress {
    fn allocate(&mut self, _: &IkeId, _: Option<&str>, _: AddressFamily) -> Option<IpAddr> {
        "172.16.201.10".parse().ok()
    }
    fn release(&mut self, _: &IkeId, _: IpAddr) {}
}

/// Both sides established with one Child SA.
fn established() -> (IkeSa, IkeSa, Instant) {
    let (mut client, mut server, now) = init_pair();
    let (local, remote) = (client.path.local, client.path.remote);
    while let Some(t) = client.poll_transmit() {
        server.handle(
            at(now),
            Path::ike(remote, local),
            &dgram(&t.bytes),
            Some(&mut OneAddress),
        );
    }
    while let Some(t) = server.poll_transmit() {
        client.handle_datagram(at(now), Path::ike(local, remote), &t.bytes);
    }
    assert_eq!(
        client.state(),
        IkeSaState::Established,
        "{:?}",
        client.events
    );
    assert_eq!(server.state(), IkeSaState::Established);
    assert_eq!(client.children.len(), 1);
    while server.poll_event().is_some() {}
    (client, server, now)
}

/// Sends `payloads` as the client's next CREATE_CHILD_SA request; the server's reply.
fn create_child_request(
    client: &mut IkeSa,
    server: &mut IkeSa,
    now: Instant,
    payloads: &[Payload],
) -> Vec<Payload> {
    let id = client.window.take_request_id();
    let datagrams = client
        .protect(ExchangeType::CREATE_CHILD_SA, id, false, payloads)
        .unwrap();
    for d in datagrams {
        server.handle(
            at(now),
            Path::ike(client.path.remote, client.path.local),
            &dgram(&d),
            None,
        );
    }
    let reply = server.poll_transmit().expect("a reply");
    assert!(server.poll_transmit().is_none());
    let parts = open_parts(&reply.bytes).unwrap();
    assert_eq!(parts.header.message_id, id);
    let plain = client
        .keys
        .as_ref()
        .unwrap()
        .sk_in
        .open(parts.aad, parts.body)
        .unwrap();
    decode_chain(parts.first_payload, &plain).unwrap()
}

fn rekey_notify(spi: &[u8]) -> Payload {
    let mut n = Notify::new(NotifyType::REKEY_SA, Vec::new());
    n.protocol = ProtocolId::ESP;
    n.spi = spi.to_vec();
    Payload::Notify(n)
}

fn esp_sa(spi: u32) -> Payload {
    Payload::Sa(SecurityAssociation {
        proposals: vec![
            crate::EspProposal::parse("aes256gcm16", false)
                .unwrap()
                .to_wire(1, spi, true),
        ],
    })
}

fn child_rekey(client: &IkeSa) -> Vec<Payload> {
    let c = &client.children.iter().next().unwrap();
    vec![
        rekey_notify(&c.spi_in.to_be_bytes()),
        esp_sa(0x1234_5678),
        Payload::Nonce(vec![7; 32]),
        Payload::TsI(c_ts(true)),
        Payload::TsR(c_ts(false)),
    ]
}

/// The client's selectors after narrowing: its virtual IP, anything behind the gateway.
fn c_ts(local: bool) -> Vec<TrafficSelector> {
    if local {
        vec![ts::host("172.16.201.10".parse().unwrap())]
    } else {
        vec![TrafficSelector::ANY_V4]
    }
}

fn notify_of(reply: &[Payload]) -> Option<NotifyType> {
    reply.error_notify().map(|n| n.notify_type)
}

#[test]
fn create_child_sa_refusals_name_the_problem_and_keep_the_sa() {
    let (mut client, mut server, now) = established();
    let good = child_rekey(&client);
    let cases: Vec<(Vec<Payload>, NotifyType)> = vec![
        // No REKEY_SA: an additional Child SA.
        (good[1..].to_vec(), NotifyType::NO_ADDITIONAL_SAS),
        // An SPI the server does not know.
        (
            [vec![rekey_notify(&[1, 2, 3, 4])], good[1..].to_vec()].concat(),
            NotifyType::CHILD_SA_NOT_FOUND,
        ),
        // A 3-byte SPI.
        (
            [vec![rekey_notify(&[1, 2, 3])], good[1..].to_vec()].concat(),
            NotifyType::INVALID_SYNTAX,
        ),
        // No SA payload at all.
        (
            vec![good[0].clone(), good[2].clone()],
            NotifyType::INVALID_SYNTAX,
        ),
        // No nonce.
        (
            [good[..2].to_vec(), good[3..].to_vec()].concat(),
            NotifyType::INVALID_SYNTAX,
        ),
        // Selectors outside the Child SA's.
        (
            [
                good[..3].to_vec(),
                vec![
                    Payload::TsI(vec![ts::host("192.0.2.1".parse().unwrap())]),
                    good[4].clone(),
                ],
            ]
            .concat(),
            NotifyType::TS_UNACCEPTABLE,
        ),
        // Only 3DES offered.
        (
            [
                vec![
                    good[0].clone(),
                    Payload::Sa(SecurityAssociation {
                        proposals: vec![
                            crate::EspProposal::parse("3des-sha1", true)
                                .unwrap()
                                .to_wire(1, 9999, true),
                        ],
                    }),
                ],
                good[2..].to_vec(),
            ]
            .concat(),
            NotifyType::NO_PROPOSAL_CHOSEN,
        ),
        // PFS with a group but no KE payload.
        (
            [
                vec![
                    good[0].clone(),
                    Payload::Sa(SecurityAssociation {
                        proposals: vec![
                            crate::EspProposal::parse("aes256gcm16-ecp384", false)
                                .unwrap()
                                .to_wire(1, 9999, true),
                        ],
                    }),
                ],
                good[2..].to_vec(),
            ]
            .concat(),
            NotifyType::INVALID_KE_PAYLOAD,
        ),
    ];
    for (payloads, want) in cases {
        let reply = create_child_request(&mut client, &mut server, now, &payloads);
        assert_eq!(notify_of(&reply), Some(want), "{payloads:?}");
        assert_eq!(server.state(), IkeSaState::Established);
        assert_eq!(server.children.len(), 1);
        assert!(server.poll_event().is_none_or(|e| matches!(
            e,
            Event::IkeSaEstablished(_) | Event::ChildSaEstablished(_)
        )));
    }
    // INVALID_KE_PAYLOAD names the group we want (RFC 7296 1.3): ECP-384.
    let payloads = [
        vec![
            good[0].clone(),
            Payload::Sa(SecurityAssociation {
                proposals: vec![
                    crate::EspProposal::parse("aes256gcm16-ecp384-x25519", false)
                        .unwrap()
                        .to_wire(1, 9999, true),
                ],
            }),
        ],
        good[2..].to_vec(),
    ]
    .concat();
    let original = server.cfg.clone();
    let RoleConfig::Responder(cfg) = server.cfg.clone() else {
        panic!()
    };
    let mut cfg = (*cfg).clone();
    cfg.ike.esp_proposals = vec![crate::EspProposal::parse("aes256gcm16-x25519", false).unwrap()];
    server.cfg = RoleConfig::Responder(Arc::new(cfg));
    let reply = create_child_request(&mut client, &mut server, now, &payloads);
    let n = reply.error_notify().unwrap();
    assert_eq!(n.notify_type, NotifyType::INVALID_KE_PAYLOAD);
    assert_eq!(n.data, DhGroup::Curve25519.iana().to_be_bytes());
    // Requiring PFS, a request without KE has no acceptable proposal.
    let reply = create_child_request(&mut client, &mut server, now, &good);
    assert_eq!(notify_of(&reply), Some(NotifyType::NO_PROPOSAL_CHOSEN));
    // And the well-formed request works with the original settings.
    server.cfg = original;
    let reply = create_child_request(&mut client, &mut server, now, &good);
    assert!(notify_of(&reply).is_none(), "{reply:?}");
    assert!(reply.sa().is_some() && reply.nonce().is_some());
    assert!(matches!(
        server.poll_event(),
        Some(Event::ChildSaRekeyed { .. })
    ));
    // The old Child SA is now being replaced: another rekey of it must wait.
    let reply = create_child_request(&mut client, &mut server, now, &good);
    assert_eq!(notify_of(&reply), Some(NotifyType::TEMPORARY_FAILURE));
}

#[test]
fn ike_rekey_request_with_an_unwanted_ke_group_gets_invalid_ke_payload() {
    let (mut client, mut server, now) = established();
    let algs = client.keys.as_ref().unwrap().algs;
    let mut proposal = algs.to_wire(1);
    proposal.spi = 42u64.to_be_bytes().to_vec();
    // The proposal says ECP-384, the KE is X25519.
    let ke = client.provider.generate_dh(DhGroup::Curve25519).unwrap();
    let payloads = vec![
        Payload::Sa(SecurityAssociation {
            proposals: vec![proposal.clone()],
        }),
        Payload::Nonce(vec![5; 32]),
        Payload::Ke(KeyExchange {
            group: wire_group(DhGroup::Curve25519),
            data: ke.public_value().to_vec(),
        }),
    ];
    let reply = create_child_request(&mut client, &mut server, now, &payloads);
    let n = reply.error_notify().unwrap();
    assert_eq!(n.notify_type, NotifyType::INVALID_KE_PAYLOAD);
    assert_eq!(n.data, algs.dh.iana().to_be_bytes());
    // Without an SPI in the proposal it is malformed.
    proposal.spi.clear();
    let reply = create_child_request(
        &mut client,
        &mut server,
        now,
        &[
            Payload::Sa(SecurityAssociation {
                proposals: vec![proposal],
            }),
            payloads[1].clone(),
            payloads[2].clone(),
        ],
    );
    assert_eq!(notify_of(&reply), Some(NotifyType::INVALID_SYNTAX));
    assert_eq!(server.spis(), client.spis(), "no rekey happened");
    assert!(server.retired.is_none());
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;

    fn payload() -> impl Strategy<Value = Payload> {
        let spi = prop::collection::vec(any::<u8>(), 0..10);
        let transforms = prop::collection::vec(
            prop_oneof![
                (0u16..40).prop_map(|i| ike_wire::Transform::new(ike_wire::TransformId::Encr(
                    ike_wire::EncrId(i)
                ))),
                (0u16..40).prop_map(|i| ike_wire::Transform::new(ike_wire::TransformId::Ke(
                    ike_wire::DhGroup(i)
                ))),
                (0u16..16).prop_map(|i| ike_wire::Transform::new(ike_wire::TransformId::Integ(
                    ike_wire::IntegId(i)
                ))),
                (0u16..10).prop_map(|i| ike_wire::Transform::new(ike_wire::TransformId::Prf(
                    ike_wire::PrfId(i)
                ))),
                (0u16..2).prop_map(|i| ike_wire::Transform::new(ike_wire::TransformId::Esn(
                    ike_wire::EsnId(i)
                ))),
                Just(
                    crate::EspProposal::parse("aes256gcm16", false)
                        .unwrap()
                        .to_wire(1, 1, false)
                        .transforms[0]
                        .clone()
                ),
            ],
            0..6,
        );
        let proposal = (
            prop_oneof![
                Just(ProtocolId::IKE),
                Just(ProtocolId::ESP),
                Just(ProtocolId::AH)
            ],
            spi.clone(),
            transforms,
        )
            .prop_map(|(protocol, spi, transforms)| ike_wire::Proposal {
                number: 1,
                protocol,
                spi,
                transforms,
            });
        prop_oneof![
            spi.clone().prop_map(|s| rekey_notify(&s)),
            prop::collection::vec(proposal, 0..3)
                .prop_map(|proposals| Payload::Sa(SecurityAssociation { proposals })),
            prop::collection::vec(any::<u8>(), 0..300).prop_map(Payload::Nonce),
            ((0u16..40), prop::collection::vec(any::<u8>(), 0..140)).prop_map(|(g, data)| {
                Payload::Ke(KeyExchange {
                    group: ike_wire::DhGroup(g),
                    data,
                })
            }),
            Just(Payload::TsI(vec![TrafficSelector::ANY_V4])),
            Just(Payload::TsR(vec![TrafficSelector::ANY_V4])),
            Just(Payload::TsI(Vec::new())),
            Just(Payload::Delete(Delete::ike())),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn any_create_child_sa_request_gets_one_answer_and_no_panic(
            payloads in prop::collection::vec(payload(), 0..8),
            keep_real_spi in any::<bool>(),
        ) {
            let (mut client, mut server, now) = established();
            let mut payloads = payloads;
            if keep_real_spi {
                payloads.insert(0, rekey_notify(&client.children.iter().next().unwrap().spi_in.to_be_bytes()));
            }
            let _reply = create_child_request(&mut client, &mut server, now, &payloads);
            prop_assert_eq!(server.state(), IkeSaState::Established);
            server.handle_timeout(now + std::time::Duration::from_secs(3600));
            while server.poll_transmit().is_some() {}
        }
    }
}

#[test]
fn ike_sa_past_its_hard_lifetime_says_goodbye_and_closes_as_expired() {
    let (mut client, _server, now) = established();
    client.ike_lifetime.rekey_at = None;
    client.ike_lifetime.expire_at = Some(now);
    assert_eq!(client.poll_timeout(), Some(now));
    client.handle_timeout(now);
    assert_eq!(client.state(), IkeSaState::Closed);
    let delete = client.poll_transmit().expect("a Delete on the way out");
    assert_eq!(
        Header::parse(&delete.bytes).unwrap().header.exchange_type,
        ExchangeType::INFORMATIONAL
    );
    let events: Vec<Event> = std::iter::from_fn(|| client.poll_event()).collect();
    assert!(matches!(
        events.last(),
        Some(Event::Closed(CloseReason::Expired))
    ));
}

/// A new inbound SPI is never one another SA of the endpoint holds: the allocator draws
/// again. Two generators with the same seed give the same numbers, so the first draw is
/// known and can be taken beforehand.
#[test]
fn a_child_spi_is_never_one_in_use() {
    let set = SpiSet::default();
    let oracle = Provider::deterministic(b"spi");
    let first = loop {
        let v = u32::from_be_bytes(oracle.random_array().unwrap());
        if v > 255 {
            break v;
        }
    };
    assert_eq!(
        set.allocate(&Provider::deterministic(b"spi")).unwrap(),
        first
    );
    let again = set.allocate(&Provider::deterministic(b"spi")).unwrap();
    assert_ne!(again, first, "drawn again instead of reusing {first:#x}");
    assert_eq!(set.len(), 2);
    set.release(first);
    assert_eq!(
        set.allocate(&Provider::deterministic(b"spi")).unwrap(),
        first
    );
}

/// An SA's SPIs go back when its Child SAs or the SA itself are gone.
#[test]
fn spis_are_released_with_their_sas() {
    let (mut client, server, _) = after_init();
    let shared = SpiSet::default();
    client.join_spis(&shared).unwrap();
    assert_eq!(
        shared.len(),
        1,
        "the first Child SA's SPI, negotiated in IKE_AUTH"
    );
    drop(client);
    drop(server);
    assert_eq!(shared.len(), 0);
}

/// An initiator's first inbound ESP SPI that another SA of the endpoint already holds is
/// replaced when the SA joins the endpoint (it has not been sent yet: it goes in IKE_AUTH).
#[test]
fn a_colliding_first_child_spi_is_replaced_before_it_is_sent() {
    let (client, _, _) = init_pair();
    let mut fresh = IkeSa::connect(
        match &client.cfg {
            RoleConfig::Initiator(c) => c.clone(),
            RoleConfig::Responder(_) => panic!("initiator"),
        },
        Arc::new(Provider::deterministic(b"another")),
        Instant::now(),
        client.path.local,
        client.path.remote,
    )
    .unwrap();
    assert_eq!(fresh.state(), IkeSaState::InitSent);
    let taken = fresh.child_spi_in;
    let shared = SpiSet::default();
    shared.lock().insert(taken);
    fresh.join_spis(&shared).unwrap();
    assert_ne!(fresh.child_spi_in, taken);
    assert!(shared.lock().contains(&fresh.child_spi_in));
    assert_eq!(shared.len(), 2);
}
